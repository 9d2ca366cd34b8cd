//! Exams and analyses. [`Store::insert_analysis`] stores one exam (the inputs of one
//! radiograph) and one analysis (one model's result on it) in one transaction, after
//! the image, when it is to be kept, is durably in the image folder.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use time::Date;

use super::images::{self, is_sha256_hex, sha256_hex};
use super::patients::find_patient;
use super::{
    check_date, check_text, format_date, now_timestamp, parse_stored_date, parse_stored_sex,
    serialize_opt_date, Store, StoreError, Tenant,
};
use crate::Sex;

/// Longest analysis id, model name or model version, in characters.
const MAX_LABEL: usize = 128;

/// One analysis to store, with the exam it was made on.
#[derive(Debug, Clone)]
pub struct NewAnalysis<'a> {
    /// The report's id (unique across the store).
    pub id: String,
    /// The tenant's patient this exam belongs to, if any.
    pub patient_id: Option<String>,
    pub exam_date: Option<Date>,
    pub chronological_age_months: Option<f64>,
    pub sex: Sex,
    pub bone_age_months: f64,
    pub bone_age_sd_months: f64,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    pub mother_height_cm: Option<f64>,
    pub father_height_cm: Option<f64>,
    /// Lowercase hex sha256 of the uploaded bytes.
    pub image_sha256: String,
    /// The uploaded bytes, only when the request asked to keep the image
    /// (`store_image=true`). Their sha256 must equal `image_sha256`.
    pub image: Option<&'a [u8]>,
    /// The request's fields and source metadata, as the face received them.
    pub inputs_json: serde_json::Value,
    /// The full report.
    pub result_json: serde_json::Value,
    pub model_name: String,
    pub model_version: String,
    /// Lowercase hex sha256 of the model file.
    pub model_sha256: String,
}

/// A stored analysis with its exam.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAnalysis {
    /// The analysis (report) id.
    pub id: String,
    /// The exam (radiograph and inputs) this analysis was made on; a later
    /// re-scoring adds analyses to the same exam.
    pub exam_id: String,
    pub patient_id: Option<String>,
    #[serde(serialize_with = "serialize_opt_date")]
    pub exam_date: Option<Date>,
    pub chronological_age_months: Option<f64>,
    pub sex: Sex,
    pub bone_age_months: f64,
    pub bone_age_sd_months: f64,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    pub mother_height_cm: Option<f64>,
    pub father_height_cm: Option<f64>,
    pub image_sha256: String,
    /// Whether the image was kept for this exam.
    pub image_stored: bool,
    /// Where the kept image is (`None` unless `image_stored`). Not serialised: a
    /// server path is not for clients.
    #[serde(skip)]
    pub image_path: Option<PathBuf>,
    pub inputs_json: serde_json::Value,
    pub result_json: serde_json::Value,
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    /// When the analysis was stored (UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub created_at: String,
}

fn check_opt_positive(v: Option<f64>, what: &str) -> Result<(), StoreError> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(StoreError::invalid(format!(
            "{what} must be a positive number"
        ))),
        _ => Ok(()),
    }
}

fn check_non_negative(x: f64, what: &str) -> Result<(), StoreError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "{what} must be a finite number ≥ 0"
        )))
    }
}

/// Everything that can be checked without the database.
fn validate(rec: &NewAnalysis<'_>) -> Result<(), StoreError> {
    check_text(&rec.id, "analysis id", MAX_LABEL)?;
    if let Some(pid) = &rec.patient_id {
        check_text(pid, "patient_id", MAX_LABEL)?;
    }
    if let Some(d) = rec.exam_date {
        check_date(d, "exam_date")?;
    }
    if let Some(ca) = rec.chronological_age_months {
        check_non_negative(ca, "chronological_age_months")?;
    }
    check_non_negative(rec.bone_age_months, "bone_age_months")?;
    check_non_negative(rec.bone_age_sd_months, "bone_age_sd_months")?;
    check_opt_positive(rec.height_cm, "height_cm")?;
    check_opt_positive(rec.weight_kg, "weight_kg")?;
    check_opt_positive(rec.mother_height_cm, "mother_height_cm")?;
    check_opt_positive(rec.father_height_cm, "father_height_cm")?;
    if !is_sha256_hex(&rec.image_sha256) {
        return Err(StoreError::invalid(
            "image_sha256 must be 64 lowercase hex digits",
        ));
    }
    if let Some(bytes) = rec.image {
        if sha256_hex(bytes) != rec.image_sha256 {
            return Err(StoreError::invalid(
                "the image's bytes do not have the sha256 given as image_sha256",
            ));
        }
    }
    check_text(&rec.model_name, "model_name", MAX_LABEL)?;
    check_text(&rec.model_version, "model_version", MAX_LABEL)?;
    if !is_sha256_hex(&rec.model_sha256) {
        return Err(StoreError::invalid(
            "model_sha256 must be 64 lowercase hex digits",
        ));
    }
    Ok(())
}

/// Stores the exam and analysis rows inside `tx`; the image, if any, is already on
/// disk.
fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    tenant: &Tenant,
    rec: &NewAnalysis<'_>,
    exam_id: &str,
    created_at: &str,
) -> Result<(), StoreError> {
    if let Some(pid) = &rec.patient_id {
        let patient = find_patient(tx, tenant, pid)?.ok_or(StoreError::NotFound)?;
        if patient.sex != rec.sex {
            return Err(StoreError::Conflict(format!(
                "the analysis is for a {} but the patient is recorded as {}",
                rec.sex.as_str(),
                patient.sex.as_str()
            )));
        }
        if let Some(d) = rec.exam_date {
            if d < patient.birth_date {
                return Err(StoreError::invalid(
                    "exam_date is before the patient's birth date",
                ));
            }
        }
    }
    let exam_date = rec.exam_date.map(format_date).transpose()?;
    let inputs = serde_json::to_string(&rec.inputs_json)
        .map_err(|e| StoreError::invalid(format!("inputs_json: {e}")))?;
    let result = serde_json::to_string(&rec.result_json)
        .map_err(|e| StoreError::invalid(format!("result_json: {e}")))?;
    tx.execute(
        "INSERT INTO exams (id, tenant_id, patient_id, exam_date, chronological_age_months, sex,
                            height_cm, weight_kg, mother_height_cm, father_height_cm,
                            image_sha256, image_stored, inputs_json, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            exam_id,
            tenant.id(),
            rec.patient_id,
            exam_date,
            rec.chronological_age_months,
            rec.sex.as_str(),
            rec.height_cm,
            rec.weight_kg,
            rec.mother_height_cm,
            rec.father_height_cm,
            rec.image_sha256,
            rec.image.is_some(),
            inputs,
            created_at
        ],
    )?;
    tx.execute(
        "INSERT INTO analyses (id, exam_id, bone_age_months, bone_age_sd_months, result_json,
                               model_name, model_version, model_sha256, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            rec.id,
            exam_id,
            rec.bone_age_months,
            rec.bone_age_sd_months,
            result,
            rec.model_name,
            rec.model_version,
            rec.model_sha256,
            created_at
        ],
    )
    .map_err(|e| {
        if super::error::is_unique_violation(&e) {
            StoreError::Conflict("an analysis with this id is already stored".into())
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// The SELECT list shared by the analysis queries, over `analyses a JOIN exams e`.
const ANALYSIS_SELECT: &str = "
    SELECT a.id, a.exam_id, e.patient_id, e.exam_date, e.chronological_age_months, e.sex,
           a.bone_age_months, a.bone_age_sd_months, e.height_cm, e.weight_kg,
           e.mother_height_cm, e.father_height_cm, e.image_sha256, e.image_stored,
           e.inputs_json, a.result_json, a.model_name, a.model_version, a.model_sha256,
           a.created_at
    FROM analyses a JOIN exams e ON e.id = a.exam_id";

/// One row of [`ANALYSIS_SELECT`] as read, before the text columns are parsed.
struct RawAnalysis {
    id: String,
    exam_id: String,
    patient_id: Option<String>,
    exam_date: Option<String>,
    chronological_age_months: Option<f64>,
    sex: String,
    bone_age_months: f64,
    bone_age_sd_months: f64,
    height_cm: Option<f64>,
    weight_kg: Option<f64>,
    mother_height_cm: Option<f64>,
    father_height_cm: Option<f64>,
    image_sha256: String,
    image_stored: bool,
    inputs_json: String,
    result_json: String,
    model_name: String,
    model_version: String,
    model_sha256: String,
    created_at: String,
}

fn raw_from_row(r: &Row<'_>) -> rusqlite::Result<RawAnalysis> {
    Ok(RawAnalysis {
        id: r.get(0)?,
        exam_id: r.get(1)?,
        patient_id: r.get(2)?,
        exam_date: r.get(3)?,
        chronological_age_months: r.get(4)?,
        sex: r.get(5)?,
        bone_age_months: r.get(6)?,
        bone_age_sd_months: r.get(7)?,
        height_cm: r.get(8)?,
        weight_kg: r.get(9)?,
        mother_height_cm: r.get(10)?,
        father_height_cm: r.get(11)?,
        image_sha256: r.get(12)?,
        image_stored: r.get(13)?,
        inputs_json: r.get(14)?,
        result_json: r.get(15)?,
        model_name: r.get(16)?,
        model_version: r.get(17)?,
        model_sha256: r.get(18)?,
        created_at: r.get(19)?,
    })
}

impl Store {
    fn parse_analysis(&self, raw: RawAnalysis) -> Result<StoredAnalysis, StoreError> {
        let exam_date = raw
            .exam_date
            .as_deref()
            .map(|d| parse_stored_date(d, "exams.exam_date"))
            .transpose()?;
        if !is_sha256_hex(&raw.image_sha256) {
            return Err(StoreError::corrupt("exams.image_sha256 is not a sha256"));
        }
        let image_path = raw
            .image_stored
            .then(|| images::image_path(&self.images_dir, &raw.image_sha256));
        Ok(StoredAnalysis {
            sex: parse_stored_sex(&raw.sex, "exams.sex")?,
            inputs_json: serde_json::from_str(&raw.inputs_json)
                .map_err(|_| StoreError::corrupt("exams.inputs_json is not JSON"))?,
            result_json: serde_json::from_str(&raw.result_json)
                .map_err(|_| StoreError::corrupt("analyses.result_json is not JSON"))?,
            id: raw.id,
            exam_id: raw.exam_id,
            patient_id: raw.patient_id,
            exam_date,
            chronological_age_months: raw.chronological_age_months,
            bone_age_months: raw.bone_age_months,
            bone_age_sd_months: raw.bone_age_sd_months,
            height_cm: raw.height_cm,
            weight_kg: raw.weight_kg,
            mother_height_cm: raw.mother_height_cm,
            father_height_cm: raw.father_height_cm,
            image_sha256: raw.image_sha256,
            image_stored: raw.image_stored,
            image_path,
            model_name: raw.model_name,
            model_version: raw.model_version,
            model_sha256: raw.model_sha256,
            created_at: raw.created_at,
        })
    }

    /// Stores an analysis and its exam for `tenant`, atomically.
    ///
    /// Order of work: the record is validated (lengths, finite numbers, sha256 of
    /// the image bytes); then, under the write lock, the image (when given) is made
    /// durable in the image folder, and the exam and analysis rows are inserted in
    /// one transaction. If the transaction fails, an image file this call created is
    /// removed again.
    ///
    /// Errors: [`StoreError::NotFound`] if `patient_id` is not one of the tenant's
    /// patients (exactly as for an id that does not exist);
    /// [`StoreError::Conflict`] if the id is already stored or the sex contradicts
    /// the patient's; [`StoreError::Invalid`] for a malformed record or an exam date
    /// before the patient's birth.
    pub fn insert_analysis(
        &self,
        tenant: &Tenant,
        rec: &NewAnalysis<'_>,
    ) -> Result<StoredAnalysis, StoreError> {
        validate(rec)?;
        let exam_id = uuid::Uuid::new_v4().to_string();
        let created_at = now_timestamp()?;

        let mut conn = self.writer();
        let created_file = match rec.image {
            Some(bytes) => images::put(&self.images_dir, &rec.image_sha256, bytes)?,
            None => false,
        };
        let stored = super::write_in(&mut conn, |tx| {
            insert_rows(tx, tenant, rec, &exam_id, &created_at)
        });
        if let Err(e) = stored {
            if created_file {
                // No committed row names this file: it did not exist before this
                // call, and every image write holds the writer lock.
                let _ = images::remove(&self.images_dir, &rec.image_sha256);
            }
            return Err(e);
        }
        drop(conn);

        Ok(StoredAnalysis {
            id: rec.id.clone(),
            exam_id,
            patient_id: rec.patient_id.clone(),
            exam_date: rec.exam_date,
            chronological_age_months: rec.chronological_age_months,
            sex: rec.sex,
            bone_age_months: rec.bone_age_months,
            bone_age_sd_months: rec.bone_age_sd_months,
            height_cm: rec.height_cm,
            weight_kg: rec.weight_kg,
            mother_height_cm: rec.mother_height_cm,
            father_height_cm: rec.father_height_cm,
            image_sha256: rec.image_sha256.clone(),
            image_stored: rec.image.is_some(),
            image_path: rec
                .image
                .map(|_| images::image_path(&self.images_dir, &rec.image_sha256)),
            inputs_json: rec.inputs_json.clone(),
            result_json: rec.result_json.clone(),
            model_name: rec.model_name.clone(),
            model_version: rec.model_version.clone(),
            model_sha256: rec.model_sha256.clone(),
            created_at,
        })
    }

    /// The tenant's analysis `id`; `None` if there is none (also when it is another
    /// tenant's).
    pub fn get_analysis(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<Option<StoredAnalysis>, StoreError> {
        let raw = self.read(|tx| {
            Ok(tx
                .query_row(
                    &format!("{ANALYSIS_SELECT} WHERE e.tenant_id = ?1 AND a.id = ?2"),
                    params![tenant.id(), id],
                    raw_from_row,
                )
                .optional()?)
        })?;
        raw.map(|r| self.parse_analysis(r)).transpose()
    }

    /// Every analysis of the tenant's patient `patient_id`, by exam date (exams
    /// without a date last), then in the order they were stored. An empty list for a
    /// patient without analyses; [`StoreError::NotFound`] if the patient is not the
    /// tenant's.
    pub fn patient_analyses(
        &self,
        tenant: &Tenant,
        patient_id: &str,
    ) -> Result<Vec<StoredAnalysis>, StoreError> {
        let raws = self.read(|tx| {
            if find_patient(tx, tenant, patient_id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            let mut stmt = tx.prepare(&format!(
                "{ANALYSIS_SELECT} WHERE e.tenant_id = ?1 AND e.patient_id = ?2
                 ORDER BY e.exam_date IS NULL, e.exam_date, a.created_at, a.rowid"
            ))?;
            let rows = stmt.query_map(params![tenant.id(), patient_id], raw_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        raws.into_iter().map(|r| self.parse_analysis(r)).collect()
    }
}
