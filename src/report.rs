//! Stage 6: the analysis result as the API returns it. These types are the JSON
//! contract of `POST /v1/analyses` and `boneage analyze`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::decode::SourceFormat;
use crate::dicom::DicomHeader;
use crate::growth::adult_height::AdultHeight;
use crate::growth::height::{HeightForAge, HeightReference};
use crate::growth::BoneAgeSds;
use crate::model::StageBasis;
use crate::quality::{Corrections, Exposure};
use crate::scoring::{Bone, Stage};
use crate::Sex;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnalysisReport {
    /// Unique id of this analysis.
    pub id: String,
    pub model: ModelRef,
    pub sex: Sex,
    pub bone_age: BoneAge,
    /// Chronological age at the exam, in months, when given or derived from dates.
    pub chronological_age_months: Option<f64>,
    /// (bone age − reference mean for the chronological age) / reference SD, by the
    /// Greulich–Pyle Brush Foundation table; null without a chronological age.
    pub bone_age_sds: Option<f64>,
    /// How `bone_age_sds` was computed, or why it is null.
    pub bone_age_sds_detail: SdsDetail,
    pub tw3: Tw3,
    /// The patient this exam is filed under (`POST /v1/analyses` with
    /// `patient_id` or `external_id`); null for an anonymous analysis.
    pub patient_id: Option<String>,
    /// ISO date of the exam, when the request, the DICOM header or the patient
    /// filing gave one.
    pub exam_date: Option<String>,
    /// The measurements given with the exam.
    pub measurements: Measurements,
    /// Height-for-age and predicted adult height for this exam.
    pub growth: ExamGrowth,
    /// The 13 TW3 RUS bones in fixed order.
    pub joints: Vec<Joint>,
    /// Every joint the model locates (the RUS joints and more, e.g. the wrist), in
    /// pixels of the uploaded image; empty when the model locates none.
    pub landmarks: Vec<Landmark>,
    pub input: InputInfo,
    /// Where the patient and exam fields came from, and the DICOM header.
    pub source: SourceInfo,
    /// The quality control behind this result: its scores, and what was corrected.
    pub quality: Quality,
    pub timings_ms: Timings,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quality {
    /// `accepted` (a refused image gets a 422 `not_a_hand` / `poor_exposure` instead).
    pub decision: &'static str,
    pub exposure: Exposure,
    /// The hand-shape check, when the model locates joints and is calibrated for it.
    pub shape: Option<ShapeCheck>,
    pub corrections: Corrections,
    /// Model passes it took (1 for an upright left hand; each correction adds one).
    pub passes: u8,
    /// Further passes over the views the bone age is averaged from (the model's
    /// test-time views, turned to the template's pose).
    pub view_passes: usize,
    /// The hand count behind `multiple_hands` (with quality control).
    pub hands: Option<crate::quality::HandCount>,
    /// `left`, or `right` when the image showed a right hand (mirrored for analysis).
    pub laterality: Option<&'static str>,
}

impl Default for Quality {
    fn default() -> Self {
        Quality {
            decision: "accepted",
            exposure: Exposure {
                p01: 0.0,
                p99: 0.0,
                mean: 0.0,
            },
            shape: None,
            corrections: Corrections::default(),
            passes: 1,
            view_passes: 0,
            hands: None,
            laterality: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShapeCheck {
    /// Share of the template hand shape the located joints leave unexplained (0 = perfect).
    pub residual: f64,
    /// Refused above this (the model's calibration on real radiographs).
    pub max_residual: f64,
    pub sd_months: f64,
    pub max_sd_months: f64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SourceInfo {
    /// One entry per field the analysis used (`sex`, `birth_date`, `exam_date`,
    /// `chronological_age_months`), saying whether the request or the DICOM header
    /// gave it. A request field wins over the header; `conflict` marks where they differ.
    pub fields: Vec<FieldSource>,
    /// The DICOM header fields, for a DICOM upload.
    pub dicom: Option<DicomHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Request,
    Dicom,
    /// The stored patient record (`patient_id` / `external_id` of the request).
    Patient,
    /// The server: the date the exam was filed, when nothing else gave one.
    Server,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldSource {
    pub field: &'static str,
    /// The value used.
    pub value: String,
    pub from: Origin,
    /// The header's value, when the request gave the field and the header has one too.
    pub dicom_value: Option<String>,
    /// The request and the header disagree (the request's value was used).
    pub conflict: bool,
}

impl FieldSource {
    pub fn request(
        field: &'static str,
        value: &str,
        dicom_value: Option<String>,
        conflict: bool,
    ) -> Self {
        FieldSource {
            field,
            value: value.to_string(),
            from: Origin::Request,
            dicom_value,
            conflict,
        }
    }

    pub fn server(field: &'static str, value: &str) -> Self {
        FieldSource {
            field,
            value: value.to_string(),
            from: Origin::Server,
            dicom_value: None,
            conflict: false,
        }
    }

    pub fn dicom(field: &'static str, value: &str) -> Self {
        FieldSource {
            field,
            value: value.to_string(),
            from: Origin::Dicom,
            dicom_value: None,
            conflict: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BoneAge {
    /// Estimated bone age (months), the model's mean.
    pub months: f64,
    /// The model's calibrated standard deviation (months).
    pub sd_months: f64,
    /// 90% interval, mean ± 1.645 SD, lower end not below 0.
    pub interval_90: [f64; 2],
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SdsDetail {
    pub reference: Option<BoneAgeSds>,
    /// Why there is no SDS (no chronological age, or outside the table).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tw3 {
    /// Sum of the 13 joints' `tw3_score`.
    pub rus_score: u32,
    /// TW3 RUS bone age from the published score table; null with a reason outside it.
    pub rus_bone_age_months: Option<f64>,
    pub rus_bone_age_reason: Option<String>,
    /// How the stages summed into this score were obtained: the distinct
    /// `stage_basis` values of the 13 joints.
    pub stage_bases: Vec<StageBasis>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Joint {
    pub bone: Bone,
    pub name: &'static str,
    pub stage: Stage,
    /// Model probability of `stage` (after removing stages the bone does not have).
    pub stage_probability: f64,
    /// TW3 RUS score of `stage` for this bone and sex.
    pub tw3_score: u32,
    /// How the stage was obtained: `joint_region` (from this joint's region only,
    /// trained on the stage typical for the reader's bone age; not validated against
    /// expert staging), `joint_region_supervised` (trained on expert stages), or
    /// `typical_for_bone_age` (from the whole image: restates the global estimate).
    pub stage_basis: StageBasis,
    /// The joint region that holds this bone's epiphysis (a `landmarks` name), when
    /// the model locates it.
    pub region: Option<String>,
    /// Centre of that region in pixels of the uploaded image (origin top left).
    pub location: Option<Point>,
}

/// A point in pixels of the uploaded image, origin at the top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Landmark {
    /// Joint name, e.g. `mcp3` (third metacarpophalangeal joint), `ip1` (thumb
    /// interphalangeal joint), `radius` (distal radius), `wrist`.
    pub name: String,
    #[serde(flatten)]
    pub at: Point,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InputInfo {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    /// sha256 of the uploaded bytes.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Timings {
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub scoring: f64,
    pub total: f64,
}

/// Body measurements and family heights given with an exam; each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Measurements {
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    pub mother_height_cm: Option<f64>,
    pub father_height_cm: Option<f64>,
    /// A TW2 RUS bone age rated by a reader (months): the input of the Tanner 1975
    /// adult-height prediction. The model's own bone age is on the Greulich–Pyle scale.
    pub tw2_rus_bone_age_months: Option<f64>,
    /// Girls: `true` once menarche has occurred (Tanner 1975 splits by it).
    pub menarche: Option<bool>,
}

/// Growth figures of one exam.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExamGrowth {
    pub height_reference: HeightReference,
    /// Height-for-age z-score and percentile; null without a height and an age, or
    /// outside the reference.
    pub height_for_age: Option<HeightForAge>,
    pub height_for_age_reason: Option<String>,
    /// Predicted adult height by every method whose inputs are given, and why the
    /// others could not run.
    pub adult_height: AdultHeight,
}
