//! Re-scoring image files: a folder or a manifest in, one CSV or JSON Lines row
//! per image out, resumable.
//!
//! # Resume and idempotency
//!
//! Every row carries the item's key — `path` (relative to the folder, or as the
//! manifest names it) and `image_sha256` — and the `model_sha256` it was made
//! with. A run starts by reading the output it appends to: a last line without its
//! newline (the process was killed while writing it) is cut off, every other line
//! must parse, and the keys finished by the current model are skipped. Rows are
//! written whole with one `write` each and the file is fsynced every
//! [`FileOptions::fsync_every`] rows and at the end, so a kill at any moment loses
//! at most the rows not yet synced — which the next run redoes — and never leaves a
//! duplicate. A key met twice in one run (a manifest naming a file twice) is
//! analysed once.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{pipeline, RescoreError, Shard, Summary};
use crate::analysis::{Analyzer, RawFields};
use crate::error::AnalysisError;
use crate::report::AnalysisReport;

/// Extensions read from a folder (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "tif", "tiff", "dcm", "dicom"];

/// Output format, from the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    /// JSON Lines: one JSON object per line.
    Jsonl,
}

impl Format {
    /// `.csv` → CSV; `.jsonl` or `.ndjson` → JSON Lines.
    pub fn from_path(path: &Path) -> Result<Format, RescoreError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl") | Some("ndjson") => Ok(Format::Jsonl),
            _ => Err(RescoreError::Invalid(format!(
                "{}: the output must end in .csv or .jsonl",
                path.display()
            ))),
        }
    }
}

/// One image file to analyse.
#[derive(Debug, Clone, PartialEq)]
pub struct FileItem {
    /// The manifest's id, or the relative path for a folder.
    pub id: String,
    /// The path as the key uses it: relative to the folder (with `/`), or as the
    /// manifest writes it.
    pub rel: String,
    /// Where the file is.
    pub path: PathBuf,
    /// `male`/`female` when the manifest gives it.
    pub sex: Option<String>,
}

/// One output row: an analysed image, or one that was refused or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub id: String,
    pub path: String,
    /// Empty when the file could not be read.
    pub image_sha256: String,
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    /// `accepted`, `rejected` (the image was refused: quality control, format) or
    /// `failed` (missing or invalid fields, unreadable file, inference failure).
    pub outcome: String,
    /// The error code (as the API's), when not accepted.
    pub error_code: Option<String>,
    /// The error's reason, when not accepted (never patient data).
    pub error_reason: Option<String>,
    pub sex: Option<String>,
    pub chronological_age_months: Option<f64>,
    pub bone_age_months: Option<f64>,
    pub bone_age_sd_months: Option<f64>,
    pub interval_90_lo: Option<f64>,
    pub interval_90_hi: Option<f64>,
    pub bone_age_sds: Option<f64>,
    pub tw3_rus_score: Option<u32>,
    pub tw3_rus_bone_age_months: Option<f64>,
    pub quality_passes: Option<u8>,
    pub laterality: Option<String>,
    /// The analysis id of the report behind this row.
    pub analysis_id: Option<String>,
}

/// The CSV header, in [`ResultRow`] field order.
pub const COLUMNS: [&str; 21] = [
    "id",
    "path",
    "image_sha256",
    "model_name",
    "model_version",
    "model_sha256",
    "outcome",
    "error_code",
    "error_reason",
    "sex",
    "chronological_age_months",
    "bone_age_months",
    "bone_age_sd_months",
    "interval_90_lo",
    "interval_90_hi",
    "bone_age_sds",
    "tw3_rus_score",
    "tw3_rus_bone_age_months",
    "quality_passes",
    "laterality",
    "analysis_id",
];

/// Codes that mean the image itself was refused (rather than the request).
const REJECTED: [&str; 7] = [
    "not_a_hand",
    "multiple_hands",
    "poor_exposure",
    "corrupt_image",
    "resolution_too_low",
    "unsupported_format",
    "image_too_large",
];

impl ResultRow {
    fn base(item: &FileItem, sha: &str, analyzer: &Analyzer) -> ResultRow {
        let info = analyzer.model().info();
        ResultRow {
            id: item.id.clone(),
            path: item.rel.clone(),
            image_sha256: sha.to_string(),
            model_name: info.name.clone(),
            model_version: info.version.clone(),
            model_sha256: info.sha256.clone(),
            outcome: String::new(),
            error_code: None,
            error_reason: None,
            sex: None,
            chronological_age_months: None,
            bone_age_months: None,
            bone_age_sd_months: None,
            interval_90_lo: None,
            interval_90_hi: None,
            bone_age_sds: None,
            tw3_rus_score: None,
            tw3_rus_bone_age_months: None,
            quality_passes: None,
            laterality: None,
            analysis_id: None,
        }
    }

    fn accepted(mut self, r: &AnalysisReport) -> ResultRow {
        self.outcome = "accepted".into();
        self.sex = Some(r.sex.as_str().to_string());
        self.chronological_age_months = r.chronological_age_months;
        self.bone_age_months = Some(r.bone_age.months);
        self.bone_age_sd_months = Some(r.bone_age.sd_months);
        self.interval_90_lo = Some(r.bone_age.interval_90[0]);
        self.interval_90_hi = Some(r.bone_age.interval_90[1]);
        self.bone_age_sds = r.bone_age_sds;
        self.tw3_rus_score = Some(r.tw3.rus_score);
        self.tw3_rus_bone_age_months = r.tw3.rus_bone_age_months;
        self.quality_passes = Some(r.quality.passes);
        self.laterality = r.quality.laterality.map(str::to_string);
        self.analysis_id = Some(r.id.clone());
        self
    }

    fn refused(mut self, code: &str, reason: &str) -> ResultRow {
        self.outcome = if REJECTED.contains(&code) {
            "rejected"
        } else {
            "failed"
        }
        .into();
        self.error_code = Some(code.to_string());
        self.error_reason = Some(one_line(reason));
        self
    }

    /// The key that makes a row finished: (path, image sha256).
    pub fn key(&self) -> (String, String) {
        (self.path.clone(), self.image_sha256.clone())
    }
}

/// A reason on one line, at most 300 characters (rows are lines).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// Every image file under `dir` (recursively, by extension), in path order.
pub fn items_from_dir(dir: &Path) -> Result<Vec<FileItem>, RescoreError> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| RescoreError::io(&d, e))?;
        for e in entries {
            let e = e.map_err(|e| RescoreError::io(&d, e))?;
            let p = e.path();
            let ft = e.file_type().map_err(|e| RescoreError::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
            {
                paths.push(p);
            }
        }
    }
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            FileItem {
                id: rel.clone(),
                rel,
                path: p,
                sex: None,
            }
        })
        .collect())
}

/// The rows of a manifest in the `boneage eval` layout (`id,image,…,male`): `image`
/// is required; `id` defaults to the image path; sex comes from `male` (1/0) or
/// a `sex` column, and may be empty (that row is then recorded as
/// `missing_field`, unless `--sex` or a DICOM header gives it). Image paths are
/// relative to `images`, else to the manifest's folder.
pub fn items_from_manifest(
    path: &Path,
    images: Option<&Path>,
) -> Result<Vec<FileItem>, RescoreError> {
    let err = |reason: String| RescoreError::Input {
        path: path.display().to_string(),
        reason,
    };
    let base = match images {
        Some(d) => d.to_path_buf(),
        None => path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| err(e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let ci = col("id");
    let cim = col("image").ok_or_else(|| err("no column `image`".into()))?;
    let cm = col("male");
    let cs = col("sex");
    let mut items = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let line = n + 2;
        let field = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("").trim();
        let rel = field(Some(cim)).to_string();
        if rel.is_empty() {
            return Err(err(format!("line {line}: empty image path")));
        }
        let sex = match (field(cm), field(cs)) {
            ("1" | "true" | "True", _) => Some("male".to_string()),
            ("0" | "false" | "False", _) => Some("female".to_string()),
            ("", "") => None,
            ("", s) => Some(s.to_string()),
            (other, _) => {
                return Err(err(format!(
                    "line {line}: male must be 0, 1 or empty, not {other:?}"
                )))
            }
        };
        let id = match field(ci) {
            "" => rel.clone(),
            id => id.to_string(),
        };
        items.push(FileItem {
            id,
            path: base.join(&rel),
            rel,
            sex,
        });
    }
    Ok(items)
}

/// Settings of a file run.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub workers: usize,
    pub shard: Shard,
    /// Sex for items that give none (a folder of PNGs); a DICOM header is used
    /// when neither does.
    pub sex: Option<String>,
    /// fsync the output every this many rows (and at the end).
    pub fsync_every: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            workers: super::default_workers(),
            shard: Shard::default(),
            sex: None,
            fsync_every: 64,
        }
    }
}

/// What an existing output holds.
#[derive(Debug, Default)]
pub struct Finished {
    /// Keys (path, image sha256) finished by the model asked about.
    pub keys: HashSet<(String, String)>,
    /// Rows in the file (all models).
    pub rows: usize,
    /// Bytes of a torn last line that were cut off.
    pub cut_bytes: u64,
}

/// Cuts a torn last line off `out` (if it exists), then reads the keys finished by
/// `model_sha256`. A line that does not parse anywhere else means the file is not
/// (only) a re-scoring output, and is refused.
pub fn prepare_output(
    out: &Path,
    format: Format,
    model_sha256: &str,
) -> Result<Finished, RescoreError> {
    let mut finished = Finished::default();
    let mut file = match OpenOptions::new().read(true).write(true).open(out) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(finished),
        Err(e) => return Err(RescoreError::io(out, e)),
    };
    let io = |e| RescoreError::io(out, e);
    let len = file.metadata().map_err(io)?.len();
    let keep = complete_length(&mut file, len).map_err(io)?;
    if keep < len {
        file.set_len(keep).map_err(io)?;
        file.sync_all().map_err(io)?;
        finished.cut_bytes = len - keep;
    }
    if keep == 0 {
        return Ok(finished);
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let bad = |reason: String| RescoreError::Output {
        path: out.display().to_string(),
        reason,
    };
    let mut add = |row: ResultRow| {
        finished.rows += 1;
        if row.model_sha256 == model_sha256 {
            finished.keys.insert(row.key());
        }
    };
    match format {
        Format::Csv => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(BufReader::new(file));
            let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
            if !headers.iter().eq(COLUMNS.iter().copied()) {
                return Err(bad(format!(
                    "its header is not a re-scoring output's ({})",
                    COLUMNS.join(",")
                )));
            }
            for (n, row) in rdr.deserialize::<ResultRow>().enumerate() {
                add(row.map_err(|e| bad(format!("row {}: {e}", n + 1)))?);
            }
        }
        Format::Jsonl => {
            let mut text = String::new();
            BufReader::new(file)
                .read_to_string(&mut text)
                .map_err(|e| bad(e.to_string()))?;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                add(serde_json::from_str(line).map_err(|e| bad(format!("line {}: {e}", n + 1)))?);
            }
        }
    }
    Ok(finished)
}

/// The length of `file` up to and including its last newline.
fn complete_length(file: &mut File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Appends rows to the output, whole, one `write` each; fsyncs every `every`.
struct RowWriter {
    file: File,
    path: PathBuf,
    format: Format,
    unsynced: usize,
    every: usize,
}

impl RowWriter {
    fn open(path: &Path, format: Format, every: usize) -> Result<RowWriter, RescoreError> {
        let io = |e| RescoreError::io(path, e);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if file.metadata().map_err(io)?.len() == 0 && format == Format::Csv {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(COLUMNS).map_err(|e| RescoreError::Output {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let bytes = w.into_inner().map_err(|e| RescoreError::Output {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(RowWriter {
            file,
            path: path.to_path_buf(),
            format,
            unsynced: 0,
            every: every.max(1),
        })
    }

    fn write(&mut self, row: &ResultRow) -> Result<(), RescoreError> {
        let bad = |reason: String| RescoreError::Output {
            path: self.path.display().to_string(),
            reason,
        };
        let bytes = match self.format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(Vec::new());
                w.serialize(row).map_err(|e| bad(e.to_string()))?;
                w.into_inner().map_err(|e| bad(e.to_string()))?
            }
            Format::Jsonl => {
                let mut v = serde_json::to_vec(row).map_err(|e| bad(e.to_string()))?;
                v.push(b'\n');
                v
            }
        };
        self.file
            .write_all(&bytes)
            .map_err(|e| RescoreError::io(&self.path, e))?;
        self.unsynced += 1;
        if self.unsynced >= self.every {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), RescoreError> {
        if self.unsynced > 0 {
            self.file
                .sync_data()
                .map_err(|e| RescoreError::io(&self.path, e))?;
            self.unsynced = 0;
        }
        Ok(())
    }
}

/// A worker's answer for one item.
enum Done {
    Row(Box<ResultRow>),
    Skipped,
}

/// Analyses `items` (this shard's) with `analyzer` and appends one row per image
/// not yet finished by its model to `out` (`.csv` or `.jsonl`). See the module
/// documentation for resuming.
pub fn run_files(
    analyzer: &Analyzer,
    items: Vec<FileItem>,
    out: &Path,
    opts: &FileOptions,
    bar: &indicatif::ProgressBar,
) -> Result<Summary, RescoreError> {
    let start = Instant::now();
    let format = Format::from_path(out)?;
    let model_sha = analyzer.model().info().sha256.clone();
    let finished = prepare_output(out, format, &model_sha)?;
    if finished.cut_bytes > 0 {
        tracing::warn!(
            bytes = finished.cut_bytes,
            "cut a torn last line off the output"
        );
    }
    let items: Vec<FileItem> = items
        .into_iter()
        .filter(|i| opts.shard.contains(&i.rel))
        .collect();
    let mut summary = Summary::new(analyzer, opts.workers.max(1), opts.shard);
    summary.total = items.len() as u64;
    bar.set_length(summary.total);
    let mut writer = RowWriter::open(out, format, opts.fsync_every)?;
    let claimed: Mutex<HashSet<(String, String)>> = Mutex::new(HashSet::new());

    let work = |(item, bytes): (FileItem, std::io::Result<Vec<u8>>)| -> Done {
        let (sha, bytes) = match bytes {
            Ok(b) => (hex::encode(Sha256::digest(&b)), Some(b)),
            Err(_) => (String::new(), None),
        };
        let key = (item.rel.clone(), sha.clone());
        if finished.keys.contains(&key) {
            return Done::Skipped;
        }
        match claimed.lock() {
            Ok(mut c) => {
                if !c.insert(key) {
                    return Done::Skipped;
                }
            }
            Err(_) => return Done::Skipped,
        }
        let row = ResultRow::base(&item, &sha, analyzer);
        let Some(bytes) = bytes else {
            return Done::Row(Box::new(
                row.refused("file_not_readable", "the file could not be read"),
            ));
        };
        let fields = RawFields {
            sex: item.sex.clone().or_else(|| opts.sex.clone()),
            ..Default::default()
        };
        Done::Row(Box::new(match analyzer.analyze_upload(&bytes, fields) {
            Ok(report) => row.accepted(&report),
            Err(e) => refused(row, &e),
        }))
    };
    let read = |send: &dyn Fn((FileItem, std::io::Result<Vec<u8>>)) -> bool| {
        for item in items {
            let bytes = std::fs::read(&item.path);
            if !send((item, bytes)) {
                break;
            }
        }
        Ok(())
    };
    let mut last_sync = Instant::now();
    let write = |done: Option<Done>| -> Result<(), RescoreError> {
        match done {
            Some(Done::Row(row)) => {
                writer.write(&row)?;
                match &row.error_code {
                    None => summary.analysed += 1,
                    Some(code) => summary.failure(code),
                }
                bar.inc(1);
            }
            Some(Done::Skipped) => {
                summary.skipped += 1;
                bar.inc(1);
            }
            None => {}
        }
        if last_sync.elapsed() > Duration::from_secs(2) {
            writer.sync()?;
            last_sync = Instant::now();
        }
        Ok(())
    };
    pipeline(opts.workers, Duration::from_millis(500), read, work, write)?;
    writer.sync()?;
    writer
        .file
        .sync_all()
        .map_err(|e| RescoreError::io(out, e))?;
    summary.finish(start.elapsed());
    Ok(summary)
}

fn refused(row: ResultRow, e: &AnalysisError) -> ResultRow {
    row.refused(e.code(), &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir() -> Dir {
        let d = std::env::temp_dir().join(format!("boneage-files-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn row(path: &str, sha: &str, model: &str) -> ResultRow {
        ResultRow {
            id: path.into(),
            path: path.into(),
            image_sha256: sha.into(),
            model_name: "m".into(),
            model_version: "1".into(),
            model_sha256: model.into(),
            outcome: "accepted".into(),
            error_code: None,
            error_reason: None,
            sex: Some("male".into()),
            chronological_age_months: None,
            bone_age_months: Some(120.5),
            bone_age_sd_months: Some(7.0),
            interval_90_lo: Some(109.0),
            interval_90_hi: Some(132.0),
            bone_age_sds: None,
            tw3_rus_score: Some(400),
            tw3_rus_bone_age_months: Some(118.0),
            quality_passes: Some(1),
            laterality: Some("left".into()),
            analysis_id: Some("x".into()),
        }
    }

    #[test]
    fn columns_are_the_row_fields_in_order() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(row("a", "b", "c")).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
    }

    /// Writes rows, then a torn half row; resuming cuts it, keeps the rest, and
    /// only the current model's keys count as finished.
    fn torn_tail(format: Format, name: &str) {
        let d = dir();
        let out = d.0.join(name);
        let mut w = RowWriter::open(&out, format, 1).unwrap();
        w.write(&row("a.png", "11", "M1")).unwrap();
        let mut failed = row("b, \"odd\".png", "22", "M1").refused("not_a_hand", "no\nhand");
        failed.bone_age_months = None;
        w.write(&failed).unwrap();
        w.write(&row("a.png", "11", "M2")).unwrap();
        drop(w);
        let whole = std::fs::read(&out).unwrap();
        // A fourth row, torn mid-way.
        let mut w = RowWriter::open(&out, format, 1).unwrap();
        w.write(&row("c.png", "33", "M1")).unwrap();
        drop(w);
        let full = std::fs::read(&out).unwrap();
        let torn = &full[..whole.len() + (full.len() - whole.len()) / 2];
        std::fs::write(&out, torn).unwrap();

        let f = prepare_output(&out, format, "M1").unwrap();
        assert_eq!(f.rows, 3);
        assert!(f.cut_bytes > 0);
        let want: HashSet<(String, String)> = [
            ("a.png".to_string(), "11".to_string()),
            ("b, \"odd\".png".to_string(), "22".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(f.keys, want);
        assert_eq!(std::fs::read(&out).unwrap(), whole);
        // The failed row reads back with its code and a one-line reason.
        let again = prepare_output(&out, format, "M2").unwrap();
        assert_eq!(again.cut_bytes, 0);
        assert_eq!(again.keys.len(), 1);
        // Appending after the cut gives well-formed lines.
        let mut w = RowWriter::open(&out, format, 1).unwrap();
        w.write(&row("c.png", "33", "M1")).unwrap();
        drop(w);
        assert_eq!(prepare_output(&out, format, "M1").unwrap().keys.len(), 3);
    }

    #[test]
    fn a_torn_last_csv_line_is_cut_and_the_rest_resumed() {
        torn_tail(Format::Csv, "out.csv");
    }

    #[test]
    fn a_torn_last_jsonl_line_is_cut_and_the_rest_resumed() {
        torn_tail(Format::Jsonl, "out.jsonl");
    }

    #[test]
    fn a_torn_header_restarts_the_file_and_a_foreign_file_is_refused() {
        let d = dir();
        let out = d.0.join("r.csv");
        std::fs::write(&out, "id,pa").unwrap();
        let f = prepare_output(&out, Format::Csv, "M").unwrap();
        assert_eq!((f.rows, f.cut_bytes), (0, 5));
        assert_eq!(std::fs::read(&out).unwrap().len(), 0);
        std::fs::write(&out, "name,age\nx,1\n").unwrap();
        assert!(matches!(
            prepare_output(&out, Format::Csv, "M"),
            Err(RescoreError::Output { .. })
        ));
        let j = d.0.join("r.jsonl");
        std::fs::write(&j, "{\"not\": \"a row\"}\n").unwrap();
        assert!(prepare_output(&j, Format::Jsonl, "M").is_err());
        assert!(prepare_output(&d.0.join("none.csv"), Format::Csv, "M")
            .unwrap()
            .keys
            .is_empty());
    }

    #[test]
    fn manifest_rows_give_sex_or_none_and_folders_are_walked_in_order() {
        let d = dir();
        let m = d.0.join("labels.csv");
        std::fs::write(
            &m,
            "id,image,boneage_months,male\n1,images/1.png,57,1\n2,images/2.png,24,0\n3,images/3.png,,\n",
        )
        .unwrap();
        let items = items_from_manifest(&m, None).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].sex.as_deref(), Some("male"));
        assert_eq!(items[1].sex.as_deref(), Some("female"));
        assert_eq!(items[2].sex, None);
        assert_eq!(items[2].rel, "images/3.png");
        assert_eq!(items[2].path, d.0.join("images/3.png"));
        std::fs::write(&m, "id,image,male\n1,a.png,2\n").unwrap();
        assert!(items_from_manifest(&m, None).is_err());

        std::fs::create_dir_all(d.0.join("x/y")).unwrap();
        for p in ["x/y/b.PNG", "x/a.dcm", "c.jpg", "notes.txt"] {
            std::fs::write(d.0.join(p), b"1").unwrap();
        }
        let found: Vec<String> = items_from_dir(&d.0)
            .unwrap()
            .into_iter()
            .map(|i| i.rel)
            .collect();
        assert_eq!(found, vec!["c.jpg", "x/a.dcm", "x/y/b.PNG"]);
    }
}
