//! Errors of the storage layer.

use thiserror::Error;

/// Why a storage operation failed. Messages never contain patient data (no names,
/// no external ids, no tokens); they are safe to log and to show.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The record does not exist *for this tenant*. Another tenant's record gives
    /// exactly this, so its existence never leaks.
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken (an external id already used by this tenant, an
    /// analysis id already stored, a sex that contradicts the patient's).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An input that the store refuses (too long, out of range, malformed).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The file system failed (database folder, image folder, fsync).
    #[error("storage i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value that the code cannot read back (unparsable JSON, unknown sex,
    /// malformed date): the database was changed outside this code.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database was written by a newer version of boneage; this one refuses to
    /// open it rather than misread it.
    #[error("database schema version {found} is newer than this program supports ({supported}); upgrade boneage")]
    TooNew { found: i64, supported: i64 },
}

impl StoreError {
    /// Stable machine-readable code, in the style of [`crate::error::AnalysisError::code`].
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound => "not_found",
            StoreError::Conflict(_) => "conflict",
            StoreError::Invalid(_) => "invalid_field",
            StoreError::Io(_)
            | StoreError::Sqlite(_)
            | StoreError::Corrupt(_)
            | StoreError::TooNew { .. } => "storage_failed",
        }
    }

    /// HTTP status for this error: 404, 409, 400, or 500 for a storage failure.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::NotFound => 404,
            StoreError::Conflict(_) => 409,
            StoreError::Invalid(_) => 400,
            StoreError::Io(_)
            | StoreError::Sqlite(_)
            | StoreError::Corrupt(_)
            | StoreError::TooNew { .. } => 500,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> StoreError {
        StoreError::Invalid(reason.into())
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt(reason.into())
    }
}

/// `true` if a SQLite error is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        }
        _ => false,
    }
}
