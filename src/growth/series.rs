//! A patient's growth over several exams: the series a growth chart needs.
//!
//! [`growth_series`] turns the stored exams of one patient into the patient's
//! points (chronological age, bone age, height), the reference height percentile
//! curves, the ±2 SD bone-age band, bone-age velocity between exams and the
//! predicted adult height. Pure: no storage, no I/O.

use serde::Serialize;
use utoipa::ToSchema;

use super::adult_height::AdultHeight;
use super::height::{HeightForAge, HeightReference};
use crate::Sex;

/// One exam of the patient, as the growth view needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExamPoint {
    /// The analysis id.
    pub analysis_id: String,
    /// ISO date of the exam, when known.
    pub exam_date: Option<String>,
    /// Chronological age at the exam (months), when known.
    pub chronological_age_months: Option<f64>,
    /// The model's bone age (months) and its SD.
    pub bone_age_months: f64,
    pub bone_age_sd_months: f64,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
}

/// Everything [`growth_series`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowthInputs {
    pub sex: Sex,
    /// The exams, in any order (the series sorts them by chronological age).
    pub exams: Vec<ExamPoint>,
    pub mother_height_cm: Option<f64>,
    pub father_height_cm: Option<f64>,
    pub reference: HeightReference,
}

/// The growth JSON of `GET /v1/patients/{id}/growth`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GrowthSeries {
    pub sex: Sex,
    /// Height reference used for z-scores and percentile curves.
    pub height_reference: HeightReference,
    /// One point per exam, sorted by chronological age (exams without one last).
    pub points: Vec<GrowthPoint>,
    /// Reference height-for-age curves at percentiles 3, 10, 25, 50, 75, 90, 97.
    pub height_percentiles: Vec<PercentileCurve>,
    /// Greulich–Pyle (Brush) mean skeletal age ± 2 SD by chronological age, at the
    /// table's own rows (no interpolation).
    pub bone_age_band: Vec<BandPoint>,
    /// Bone-age velocity between consecutive exams with a chronological age.
    pub bone_age_velocity: Vec<Velocity>,
    /// Height velocity (cm/year) between consecutive exams with ages and heights.
    pub height_velocity: Vec<Velocity>,
    /// Predicted adult height at the latest exam that has a height.
    pub adult_height: Option<AdultHeight>,
    /// Why `adult_height` is null.
    pub adult_height_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GrowthPoint {
    pub analysis_id: String,
    pub exam_date: Option<String>,
    pub chronological_age_months: Option<f64>,
    pub bone_age_months: f64,
    pub bone_age_sd_months: f64,
    /// Bone age − chronological age (months).
    pub bone_age_minus_age_months: Option<f64>,
    /// Greulich–Pyle bone-age SDS, null outside the table.
    pub bone_age_sds: Option<f64>,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    /// Height-for-age z-score and percentile, when the height and age are known and
    /// inside the reference.
    pub height_for_age: Option<HeightForAge>,
    /// Why `height_for_age` is null (no height, no age, outside the reference).
    pub height_for_age_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PercentileCurve {
    /// 3, 10, 25, 50, 75, 90 or 97.
    pub percentile: f64,
    /// The z-score of that percentile.
    pub z: f64,
    pub points: Vec<CurvePoint>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct CurvePoint {
    pub age_months: f64,
    pub height_cm: f64,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct BandPoint {
    /// Chronological age (months), a row of the Greulich–Pyle Brush table.
    pub age_months: f64,
    /// Mean skeletal age at that age (months).
    pub mean_months: f64,
    /// Mean − 2 SD and mean + 2 SD (months).
    pub lower_months: f64,
    pub upper_months: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Velocity {
    pub from_analysis_id: String,
    pub to_analysis_id: String,
    /// Chronological ages of the two exams (months).
    pub from_age_months: f64,
    pub to_age_months: f64,
    /// Bone-age velocity: bone-age months per chronological month (1 = tempo of the
    /// reference); height velocity: cm per year.
    pub value: f64,
    pub unit: &'static str,
}
