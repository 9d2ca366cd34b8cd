//! The content-addressed image folder: `<images>/<ab>/<abcdef…>` where the name is
//! the lowercase hex sha256 of the file's bytes. Files are written so that a crash
//! never leaves a partial file under its final name.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::StoreError;

/// Lowercase hex sha256 of `bytes`.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `true` for 64 lowercase hex digits.
pub(super) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where the image with this sha256 lives (whether or not it exists). `sha` must be
/// 64 lowercase hex digits (checked by the callers).
pub(super) fn image_path(images_dir: &Path, sha: &str) -> PathBuf {
    images_dir.join(sha.get(..2).unwrap_or("__")).join(sha)
}

/// Writes `bytes` as the image `sha` unless a complete copy is already there.
/// Returns whether this call created the file. Durable when it returns: the file and
/// the directory entries leading to it are fsynced.
pub(super) fn put(images_dir: &Path, sha: &str, bytes: &[u8]) -> Result<bool, StoreError> {
    let path = image_path(images_dir, sha);
    let Some(dir) = path.parent() else {
        return Err(StoreError::invalid("image path has no folder"));
    };
    match fs::metadata(&path) {
        // Files only ever appear by rename after fsync, so an existing file of the
        // right length is complete.
        Ok(m) if m.is_file() && m.len() == bytes.len() as u64 => return Ok(false),
        Ok(_) | Err(_) => {}
    }
    if !dir.is_dir() {
        create_private_dir_all(dir)?;
    }
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    sync_dir(dir)?;
    Ok(true)
}

/// Removes the image `sha` (used to undo a [`put`] whose row was not committed).
pub(super) fn remove(images_dir: &Path, sha: &str) -> Result<(), StoreError> {
    let path = image_path(images_dir, sha);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Creates `dir` and its missing parents (mode 0700 on Unix: medical data), and
/// fsyncs the parent of every folder it created so the new entries are durable.
pub(super) fn create_private_dir_all(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_private_dir_all(parent)?;
        }
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {}
        // Another thread or process made it first.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// Makes a newly created database file readable by its owner only (Unix).
pub(super) fn restrict_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// fsyncs a directory, so that entries created or renamed in it survive a crash.
/// (Unix only; elsewhere directories cannot be opened for syncing.)
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
