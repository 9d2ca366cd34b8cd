//! Versioned migrations. The schema version is SQLite's `PRAGMA user_version`:
//! migration `n` (1-based) takes the database from version `n - 1` to `n`, in one
//! transaction that also sets the version, so a crash mid-migration leaves the old
//! version intact. Migrations are append-only: never edit a released one.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: tenants, tokens, patients, exams, analyses.
    r#"
    CREATE TABLE tenants (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL
    ) STRICT;

    -- Only the sha256 of a token is kept; `id` is a public handle for listing and
    -- revoking.
    CREATE TABLE tokens (
        id            TEXT PRIMARY KEY,
        tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
        token_sha256  TEXT NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
        created_at    TEXT NOT NULL,
        revoked_at    TEXT
    ) STRICT;

    CREATE TABLE patients (
        id           TEXT PRIMARY KEY,
        tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
        external_id  TEXT NOT NULL,
        sex          TEXT NOT NULL CHECK (sex IN ('male', 'female')),
        birth_date   TEXT NOT NULL,
        name         TEXT,
        created_at   TEXT NOT NULL,
        UNIQUE (tenant_id, external_id),
        UNIQUE (tenant_id, id)
    ) STRICT;

    -- One radiograph and the inputs it was analysed with. The composite foreign key
    -- makes a link to another tenant's patient impossible.
    CREATE TABLE exams (
        id                        TEXT PRIMARY KEY,
        tenant_id                 INTEGER NOT NULL REFERENCES tenants(id),
        patient_id                TEXT,
        exam_date                 TEXT,
        chronological_age_months  REAL,
        sex                       TEXT NOT NULL CHECK (sex IN ('male', 'female')),
        height_cm                 REAL,
        weight_kg                 REAL,
        mother_height_cm          REAL,
        father_height_cm          REAL,
        image_sha256              TEXT NOT NULL CHECK (length(image_sha256) = 64),
        image_stored              INTEGER NOT NULL CHECK (image_stored IN (0, 1)),
        inputs_json               TEXT NOT NULL,
        created_at                TEXT NOT NULL,
        FOREIGN KEY (tenant_id, patient_id) REFERENCES patients(tenant_id, id)
    ) STRICT;
    CREATE INDEX exams_by_patient ON exams(tenant_id, patient_id, exam_date);
    CREATE INDEX exams_by_kept_image ON exams(image_sha256) WHERE image_stored = 1;

    -- One model's result on one exam. Re-scoring adds rows; nothing is overwritten.
    CREATE TABLE analyses (
        id                  TEXT PRIMARY KEY,
        exam_id             TEXT NOT NULL REFERENCES exams(id),
        bone_age_months     REAL NOT NULL,
        bone_age_sd_months  REAL NOT NULL,
        result_json         TEXT NOT NULL,
        model_name          TEXT NOT NULL,
        model_version       TEXT NOT NULL,
        model_sha256        TEXT NOT NULL,
        created_at          TEXT NOT NULL,
        UNIQUE (exam_id, model_sha256)
    ) STRICT;
    "#,
    // 2: batch re-scoring. A re-scoring that cannot analyse an exam's kept image
    // records why, once per (exam, model), so a rerun neither retries nor loses it;
    // jobs started from the API persist so that a restarted server resumes them.
    r#"
    CREATE TABLE rescore_failures (
        exam_id       TEXT NOT NULL REFERENCES exams(id),
        model_sha256  TEXT NOT NULL CHECK (length(model_sha256) = 64),
        code          TEXT NOT NULL,
        reason        TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        PRIMARY KEY (exam_id, model_sha256)
    ) STRICT;

    CREATE TABLE rescore_jobs (
        id              TEXT PRIMARY KEY,
        tenant_id       INTEGER NOT NULL REFERENCES tenants(id),
        filter_json     TEXT NOT NULL,
        model_name      TEXT NOT NULL,
        model_version   TEXT NOT NULL,
        model_sha256    TEXT NOT NULL CHECK (length(model_sha256) = 64),
        state           TEXT NOT NULL
                        CHECK (state IN ('queued', 'running', 'finished', 'failed')),
        total           INTEGER NOT NULL DEFAULT 0,
        done            INTEGER NOT NULL DEFAULT 0,
        skipped         INTEGER NOT NULL DEFAULT 0,
        failed          INTEGER NOT NULL DEFAULT 0,
        failed_by_code  TEXT NOT NULL DEFAULT '{}',
        error           TEXT,
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT
    ) STRICT;
    CREATE INDEX rescore_jobs_unfinished ON rescore_jobs(state)
        WHERE state IN ('queued', 'running');
    CREATE INDEX analyses_by_model ON analyses(model_version, exam_id);
    "#,
];

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's schema version.
pub(super) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings the database to [`SCHEMA_VERSION`], one transaction per migration. Each
/// transaction re-reads the version under the write lock, so two processes opening
/// the same new database at once apply each migration exactly once.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = version(&tx)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < 0 {
            return Err(StoreError::corrupt(format!(
                "schema version {found} is negative"
            )));
        }
        if found == SCHEMA_VERSION {
            tx.commit()?;
            return Ok(());
        }
        let next = found + 1;
        let sql = usize::try_from(found)
            .ok()
            .and_then(|i| MIGRATIONS.get(i))
            .ok_or_else(|| StoreError::corrupt(format!("no migration from version {found}")))?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", next)?;
        tx.commit()?;
    }
}
