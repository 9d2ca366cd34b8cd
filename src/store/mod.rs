//! Storage: tenants and their bearer tokens, patients, exams and analyses, in one
//! embedded SQLite database, plus a content-addressed folder for the images that a
//! request asked to keep.
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a transaction is on disk
//! when `COMMIT` returns; every write is one `IMMEDIATE` transaction, so a `kill -9`
//! at any moment leaves either the whole write or nothing. An image is written to a
//! temporary file in its final folder, fsynced, renamed into place and the folder
//! fsynced *before* the row that names it is committed, so a committed row never
//! points at a missing image. A crash between the two leaves at worst an unreferenced
//! image file (never a half-written one); the next insert of the same bytes reuses it.
//!
//! # Tenants
//!
//! Every function that reads or writes patient data takes a [`Tenant`] and filters
//! by it in SQL; a [`Tenant`] can only be obtained from the store itself
//! ([`Store::authenticate`] or [`Store::local_tenant`]). Another tenant's record is
//! reported exactly like a record that does not exist ([`StoreError::NotFound`] or
//! `None`). Exams carry a composite foreign key `(tenant_id, patient_id)` to
//! `patients(tenant_id, id)`, so the database itself refuses a cross-tenant link.
//!
//! # Concurrency
//!
//! [`Store`] is `Send + Sync`: one writer connection and one read-only connection,
//! each behind a mutex (WAL lets reads proceed while a write commits). Every call
//! blocks on disk I/O (fsync); from async code call it inside
//! `tokio::task::spawn_blocking`. Several processes may open the same database (the
//! server and `boneage token create`); nothing is cached, so a token created by the
//! CLI is accepted by a running server at once. Images are written under the writer
//! mutex, so exactly one *server* process should write a given image folder.
//!
//! # Schema
//!
//! `tenants`, `tokens` (sha256 of the token only), `patients`, `exams` (the inputs of
//! one radiograph: dates, sex, measurements, image sha256, whether the image was kept,
//! the request's fields and source metadata) and `analyses` (one result of one model
//! on one exam: the full report and the model's name, version and sha256;
//! `UNIQUE(exam_id, model_sha256)`). Re-scoring a kept image with a new model adds an
//! `analyses` row to the existing exam and never overwrites. Parents' heights are
//! stored per exam, as the API receives them per analysis. Versions are tracked in
//! `PRAGMA user_version`; see `schema.rs`. Version 2 adds `rescore_failures` (why a
//! model could not re-analyse an exam, once per exam and model) and `rescore_jobs`
//! (re-scoring jobs started from the API); see `rescore.rs`.

mod analyses;
mod error;
mod images;
mod patients;
mod rescore;
mod schema;
mod tenants;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

pub use analyses::{NewAnalysis, StoredAnalysis};
pub use error::StoreError;
pub use patients::{NewPatient, Patient, MAX_EXTERNAL_ID, MAX_NAME};
pub use rescore::{
    ExamToRescore, Recorded, RescoreFilter, RescoreJob, RescoreOutcome, VersionPair,
};
pub use schema::SCHEMA_VERSION;
pub use tenants::{NewToken, Tenant, TokenInfo, LOCAL_TENANT, TOKEN_PREFIX};

/// The default database path, relative to the working directory.
pub const DEFAULT_DB_PATH: &str = "data/boneage.db";

/// How long a write waits for another process's write before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `YYYY-MM-DD`, the only date form stored.
const DATE_FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// UTC timestamps with a fixed width, so that text order is time order.
const TIMESTAMP_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The embedded database and the image folder. See the module documentation.
pub struct Store {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    db_path: PathBuf,
    images_dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("db_path", &self.db_path)
            .field("images_dir", &self.images_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `db_path`, with images kept in
    /// `<folder of db_path>/images`. Creates missing parent folders, turns on WAL,
    /// foreign keys and `synchronous=FULL`, and runs pending migrations, each in its
    /// own transaction. Refuses a database whose schema is newer than this code
    /// ([`StoreError::TooNew`]).
    pub fn open(db_path: &Path) -> Result<Store, StoreError> {
        let images_dir = match db_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join("images"),
            _ => PathBuf::from("images"),
        };
        Store::open_with_images(db_path, &images_dir)
    }

    /// As [`Store::open`], with the image folder given.
    pub fn open_with_images(db_path: &Path, images_dir: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = db_path.parent() {
            if !parent.as_os_str().is_empty() {
                images::create_private_dir_all(parent)?;
            }
        }
        images::create_private_dir_all(images_dir)?;
        let existed = db_path.exists();

        let mut writer = Connection::open_with_flags(
            db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        if !existed {
            images::restrict_file(db_path)?;
        }
        configure(&writer)?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::invalid(format!(
                "the database's file system does not support WAL (journal mode is {mode})"
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut writer)?;

        let reader = Connection::open_with_flags(
            db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&reader)?;
        reader.pragma_update(None, "query_only", true)?;

        Ok(Store {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            db_path: db_path.to_path_buf(),
            images_dir: images_dir.to_path_buf(),
        })
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The folder of kept images (`<dir>/<first two hex digits>/<sha256>`).
    pub fn images_dir(&self) -> &Path {
        &self.images_dir
    }

    /// The writer connection. A panic inside a transaction rolls it back on unwind,
    /// so a poisoned mutex still guards a consistent connection.
    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one `IMMEDIATE` transaction on the writer; commits if it returns
    /// `Ok`, rolls back otherwise.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer();
        write_in(&mut conn, f)
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on the reader.
    fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.reader();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.finish()?;
        Ok(out)
    }
}

fn write_in<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    let fk: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    if !fk {
        return Err(StoreError::invalid(
            "this SQLite build cannot enforce foreign keys",
        ));
    }
    // Schema objects never run application-defined SQL functions.
    conn.pragma_update(None, "trusted_schema", false)?;
    Ok(())
}

/// Now, as stored (`2026-12-04T10:11:12.123456Z`).
fn now_timestamp() -> Result<String, StoreError> {
    OffsetDateTime::now_utc()
        .format(TIMESTAMP_FORMAT)
        .map_err(|e| StoreError::invalid(format!("cannot format the current time: {e}")))
}

fn format_date(d: Date) -> Result<String, StoreError> {
    d.format(DATE_FORMAT)
        .map_err(|e| StoreError::invalid(format!("cannot format a date: {e}")))
}

fn parse_stored_date(s: &str, column: &str) -> Result<Date, StoreError> {
    Date::parse(s, DATE_FORMAT)
        .map_err(|_| StoreError::corrupt(format!("{column} is not a YYYY-MM-DD date")))
}

fn parse_stored_sex(s: &str, column: &str) -> Result<crate::Sex, StoreError> {
    match s {
        "male" => Ok(crate::Sex::Male),
        "female" => Ok(crate::Sex::Female),
        _ => Err(StoreError::corrupt(format!("{column} is not male/female"))),
    }
}

/// The latest date accepted as "not in the future": today in UTC plus one day, so a
/// date that is already today in a time zone east of UTC (up to +14 h) is accepted.
fn latest_acceptable_date() -> Date {
    let today = OffsetDateTime::now_utc().date();
    today.next_day().unwrap_or(today)
}

/// The earliest birth or exam date accepted.
const EARLIEST_DATE: Date = time::macros::date!(1900 - 01 - 01);

fn check_date(d: Date, what: &str) -> Result<(), StoreError> {
    if d < EARLIEST_DATE {
        return Err(StoreError::invalid(format!("{what} is before 1900-01-01")));
    }
    if d > latest_acceptable_date() {
        return Err(StoreError::invalid(format!("{what} is in the future")));
    }
    Ok(())
}

/// Checks a free-text identifier: not empty, at most `max` characters, no control
/// characters, no leading or trailing white space. The message names the field, never
/// the value.
fn check_text(value: &str, what: &str, max: usize) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::invalid(format!("{what} is empty")));
    }
    if value.chars().count() > max {
        return Err(StoreError::invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::invalid(format!(
            "{what} contains control characters"
        )));
    }
    if value.trim() != value {
        return Err(StoreError::invalid(format!(
            "{what} has leading or trailing white space"
        )));
    }
    Ok(())
}

/// Serialises a [`Date`] as `YYYY-MM-DD`.
fn serialize_date<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    let text = d.format(DATE_FORMAT).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

fn serialize_opt_date<S: serde::Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serialize_date(d, s),
        None => s.serialize_none(),
    }
}
