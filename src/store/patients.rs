//! Patients, one set per tenant.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use time::Date;

use super::error::is_unique_violation;
use super::{
    check_date, check_text, format_date, now_timestamp, parse_stored_date, parse_stored_sex,
    serialize_date, Store, StoreError, Tenant,
};
use crate::Sex;

/// Longest external id (the hospital's patient number), in characters.
pub const MAX_EXTERNAL_ID: usize = 128;
/// Longest patient name, in characters.
pub const MAX_NAME: usize = 256;

/// A patient to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPatient {
    /// The caller's own patient number; unique within the tenant. 1–128 characters,
    /// no control characters, no leading or trailing white space.
    pub external_id: String,
    pub sex: Sex,
    /// Not before 1900-01-01, not in the future.
    pub birth_date: Date,
    /// Optional; 1–256 characters, no control characters. Never logged.
    pub name: Option<String>,
}

/// A stored patient.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Patient {
    /// Server-assigned id (UUID v4).
    pub id: String,
    /// The caller's own patient number, unique within the tenant.
    pub external_id: String,
    pub sex: Sex,
    /// ISO date `YYYY-MM-DD`.
    #[serde(serialize_with = "serialize_date")]
    #[schema(value_type = String, format = Date)]
    pub birth_date: Date,
    pub name: Option<String>,
    /// UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    pub created_at: String,
}

const PATIENT_COLUMNS: &str = "id, external_id, sex, birth_date, name, created_at";

/// The columns of [`PATIENT_COLUMNS`], as read: id, external_id, sex, birth_date,
/// name, created_at.
type PatientColumns = (String, String, String, String, Option<String>, String);

fn patient_from_row(r: &Row<'_>) -> rusqlite::Result<PatientColumns> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn patient_from_columns(
    (id, external_id, sex, birth_date, name, created_at): PatientColumns,
) -> Result<Patient, StoreError> {
    Ok(Patient {
        id,
        external_id,
        sex: parse_stored_sex(&sex, "patients.sex")?,
        birth_date: parse_stored_date(&birth_date, "patients.birth_date")?,
        name,
        created_at,
    })
}

/// The tenant's patient `id`, inside a transaction; `None` if it does not exist or
/// belongs to another tenant.
pub(super) fn find_patient(
    tx: &rusqlite::Transaction<'_>,
    tenant: &Tenant,
    id: &str,
) -> Result<Option<Patient>, StoreError> {
    let row = tx
        .query_row(
            &format!("SELECT {PATIENT_COLUMNS} FROM patients WHERE tenant_id = ?1 AND id = ?2"),
            params![tenant.id(), id],
            patient_from_row,
        )
        .optional()?;
    row.map(patient_from_columns).transpose()
}

impl Store {
    /// Creates a patient for `tenant`. An `external_id` the tenant already uses is a
    /// [`StoreError::Conflict`] (another tenant may use the same one).
    pub fn create_patient(&self, tenant: &Tenant, p: &NewPatient) -> Result<Patient, StoreError> {
        check_text(&p.external_id, "external_id", MAX_EXTERNAL_ID)?;
        if let Some(name) = &p.name {
            check_text(name, "name", MAX_NAME)?;
        }
        check_date(p.birth_date, "birth_date")?;
        let patient = Patient {
            id: uuid::Uuid::new_v4().to_string(),
            external_id: p.external_id.clone(),
            sex: p.sex,
            birth_date: p.birth_date,
            name: p.name.clone(),
            created_at: now_timestamp()?,
        };
        let birth_date = format_date(p.birth_date)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO patients (id, tenant_id, external_id, sex, birth_date, name, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    patient.id,
                    tenant.id(),
                    patient.external_id,
                    patient.sex.as_str(),
                    birth_date,
                    patient.name,
                    patient.created_at
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("this external_id is already used by a patient".into())
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })?;
        Ok(patient)
    }

    /// The tenant's patient `id`; `None` if there is none (also when the id is another
    /// tenant's patient).
    pub fn get_patient(&self, tenant: &Tenant, id: &str) -> Result<Option<Patient>, StoreError> {
        self.read(|tx| find_patient(tx, tenant, id))
    }

    /// The tenant's patient with this external id; `None` if there is none.
    pub fn find_patient_by_external_id(
        &self,
        tenant: &Tenant,
        external_id: &str,
    ) -> Result<Option<Patient>, StoreError> {
        self.read(|tx| {
            let row = tx
                .query_row(
                    &format!(
                        "SELECT {PATIENT_COLUMNS} FROM patients WHERE tenant_id = ?1 AND external_id = ?2"
                    ),
                    params![tenant.id(), external_id],
                    patient_from_row,
                )
                .optional()?;
            row.map(patient_from_columns).transpose()
        })
    }
}
