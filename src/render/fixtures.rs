//! Hand-built inputs for the render tests: one boy, two exams a year apart, and the
//! stored report of the second exam. Reference values are copied from the published
//! tables (row by row, cited below); derived values are computed by hand in the
//! comments.

use serde_json::{json, Value};

use crate::growth::adult_height::{
    AdultHeight, AdultHeightPrediction, MethodUnavailable, NamedValue, StatedError,
};
use crate::growth::height::HeightReference;
use crate::growth::series::{BandPoint, CurvePoint, GrowthPoint, GrowthSeries, PercentileCurve};
use crate::render::PatientView;
use crate::Sex;

pub(crate) const ANALYSIS_1: &str = "7d1c0f7e-5b0e-4a53-9a51-2f3c1a9e0b11";
pub(crate) const ANALYSIS_2: &str = "0b6a2f1e-3c1d-4e5f-8a9b-1c2d3e4f5a6b";

/// WHO 2007 height-for-age, boys, (age months, L, M, S) at whole years, copied from
/// `who2007_height_for_age_lms_5_19y.csv` (WHO anthroplus `hfawho2007.txt`); L = 1
/// throughout, so the height at z is M (1 + S z).
const WHO2007_BOYS: [(f64, f64, f64); 15] = [
    (61.0, 110.2647, 0.04164),
    (72.0, 115.9509, 0.04249),
    (84.0, 121.7338, 0.04342),
    (96.0, 127.2651, 0.04438),
    (108.0, 132.5652, 0.04535),
    (120.0, 137.7795, 0.04626),
    (132.0, 143.1126, 0.04703),
    (144.0, 149.0807, 0.04753),
    (156.0, 156.0426, 0.04760),
    (168.0, 163.1816, 0.04714),
    (180.0, 168.9580, 0.04619),
    (192.0, 172.8967, 0.04495),
    (204.0, 175.1609, 0.04364),
    (216.0, 176.1449, 0.04241),
    (228.0, 176.5432, 0.04134),
];

/// Percentiles and their z (Φ⁻¹(p/100), to 6 decimals).
const PERCENTILES: [(f64, f64); 7] = [
    (3.0, -1.880794),
    (10.0, -1.281552),
    (25.0, -0.674490),
    (50.0, 0.0),
    (75.0, 0.674490),
    (90.0, 1.281552),
    (97.0, 1.880794),
];

/// Greulich–Pyle (Brush Foundation) boys: (chronological age, mean, SD), months,
/// copied from `src/growth/tables/greulich_pyle_brush_skeletal_age_mean_sd.csv`.
const GP_BOYS: [(f64, f64, f64); 24] = [
    (3.0, 3.01, 0.69),
    (6.0, 6.09, 1.13),
    (9.0, 9.56, 1.43),
    (12.0, 12.74, 1.97),
    (18.0, 19.36, 3.52),
    (24.0, 25.97, 3.92),
    (30.0, 32.40, 4.52),
    (36.0, 38.21, 5.08),
    (42.0, 43.89, 5.40),
    (48.0, 49.04, 6.66),
    (54.0, 56.00, 8.36),
    (60.0, 62.43, 8.79),
    (72.0, 75.46, 9.17),
    (84.0, 88.20, 8.91),
    (96.0, 101.38, 9.10),
    (108.0, 113.90, 9.00),
    (120.0, 125.68, 9.79),
    (132.0, 137.32, 10.09),
    (144.0, 148.82, 10.38),
    (156.0, 158.39, 10.44),
    (168.0, 170.02, 10.72),
    (180.0, 182.72, 11.32),
    (192.0, 195.32, 12.86),
    (204.0, 206.21, 13.05),
];

pub(crate) fn bayley_pinneau() -> AdultHeightPrediction {
    // Bayley & Pinneau 1952, Table IIA (boys, average), skeletal age 10-3: 79.1% of
    // mature height; 139.6 / 0.791 = 176.49 cm.
    AdultHeightPrediction {
        method: "bayley_pinneau",
        predicted_cm: 139.6 / 0.791,
        inputs: vec![
            NamedValue {
                name: "height_cm",
                value: 139.6,
            },
            NamedValue {
                name: "bone_age_years",
                value: 124.3 / 12.0,
            },
        ],
        table: "IIA, average, 10-3".to_string(),
        stated_error: None,
        notes: vec!["bone age from the model, not a Greulich–Pyle atlas reading".to_string()],
        citation: "Bayley N, Pinneau SR. J Pediatr 1952;40:423–441",
    }
}

pub(crate) fn tanner() -> AdultHeightPrediction {
    // Tanner et al. 1975, boys, RUS bone age band 10.5-: 1.15 × 139.6 − 5.2 × 10.5 +
    // 70 = 175.94 cm, residual SD 3.5 cm.
    AdultHeightPrediction {
        method: "tanner_1975",
        predicted_cm: 1.15 * 139.6 - 5.2 * 10.5 + 70.0,
        inputs: vec![
            NamedValue {
                name: "height_cm",
                value: 139.6,
            },
            NamedValue {
                name: "chronological_age_years",
                value: 10.5,
            },
            NamedValue {
                name: "rus_bone_age_years",
                value: 10.5,
            },
        ],
        table: "boys, RUS bone age 10.5-".to_string(),
        stated_error: Some(StatedError {
            kind: "residual_sd_cm",
            value_cm: 3.5,
            source: "Tanner et al. 1975, Table 1",
        }),
        notes: vec![],
        citation: "Tanner JM et al. Arch Dis Child 1975;50:14–26",
    }
}

fn adult_height() -> AdultHeight {
    AdultHeight {
        predictions: vec![bayley_pinneau(), tanner()],
        unavailable: vec![MethodUnavailable {
            method: "roche_wainer_thissen",
            reason: "needs the mid-parent height (mother's and father's heights)".to_string(),
        }],
    }
}

fn point(
    id: &str,
    date: &str,
    ca: f64,
    ba: f64,
    sds: f64,
    height: f64,
    weight: f64,
) -> GrowthPoint {
    GrowthPoint {
        analysis_id: id.to_string(),
        exam_date: Some(date.to_string()),
        chronological_age_months: Some(ca),
        bone_age_months: ba,
        bone_age_sd_months: 8.6,
        bone_age_minus_age_months: Some(ba - ca),
        bone_age_sds: Some(sds),
        height_cm: Some(height),
        weight_kg: Some(weight),
        height_for_age: None,
        height_for_age_reason: Some("not computed in this fixture".to_string()),
    }
}

/// A boy seen at 9 y 6 m and 10 y 6 m, WHO 2007 curves from 5 to 19 y, the GP band
/// and two adult-height predictions.
pub(crate) fn two_exam_series() -> GrowthSeries {
    GrowthSeries {
        sex: Sex::Male,
        height_reference: HeightReference::Who,
        points: vec![
            // SDS by hand: CA 114 is between the 108 and 120 rows: mean 119.79, SD
            // 9.395; (110.2 − 119.79) / 9.395 = −1.02
            point(ANALYSIS_1, "2025-07-15", 114.0, 110.2, -1.02, 134.0, 28.5),
            // CA 126: mean 131.5, SD 9.94; (124.3 − 131.5) / 9.94 = −0.72
            point(ANALYSIS_2, "2026-07-15", 126.0, 124.3, -0.72, 139.6, 32.0),
        ],
        height_percentiles: PERCENTILES
            .iter()
            .map(|&(p, z)| PercentileCurve {
                percentile: p,
                z,
                points: WHO2007_BOYS
                    .iter()
                    .map(|&(age, m, s)| CurvePoint {
                        age_months: age,
                        height_cm: m * (1.0 + s * z),
                    })
                    .collect(),
            })
            .collect(),
        bone_age_band: GP_BOYS
            .iter()
            .map(|&(age, mean, sd)| BandPoint {
                age_months: age,
                mean_months: mean,
                lower_months: mean - 2.0 * sd,
                upper_months: mean + 2.0 * sd,
            })
            .collect(),
        bone_age_velocity: vec![],
        height_velocity: vec![],
        adult_height: Some(adult_height()),
        adult_height_reason: None,
    }
}

/// No exams, no curves, no band: what a new patient without history gives.
pub(crate) fn empty_series() -> GrowthSeries {
    GrowthSeries {
        sex: Sex::Female,
        height_reference: HeightReference::Cdc,
        points: vec![],
        height_percentiles: vec![],
        bone_age_band: vec![],
        bone_age_velocity: vec![],
        height_velocity: vec![],
        adult_height: None,
        adult_height_reason: Some("no exam with a height".to_string()),
    }
}

pub(crate) fn patient() -> PatientView {
    PatientView {
        id: "p-0001".to_string(),
        external_id: "MRN-20160115-07".to_string(),
        name: Some("Li Wei 李伟".to_string()),
        sex: Sex::Male,
        birth_date: "2016-01-15".to_string(),
    }
}

/// (bone id, name, stage, probability, TW3 RUS score for boys, basis, region),
/// scores from `src/scoring/tables/tw3_rus_stage_scores.csv` (boys); they sum to 339,
/// which the boys' score table gives as 10.5 y (the row 10.5 = 339): 126.0 months.
pub(crate) type JointRow = (
    &'static str,
    &'static str,
    &'static str,
    f64,
    u32,
    &'static str,
    Option<&'static str>,
);

pub(crate) const JOINTS: [JointRow; 13] = [
    (
        "radius",
        "radius",
        "F",
        0.71,
        59,
        "joint_region",
        Some("radius"),
    ),
    ("ulna", "ulna", "E", 0.64, 40, "joint_region", Some("ulna")),
    (
        "mc1",
        "metacarpal I",
        "F",
        0.58,
        26,
        "typical_for_bone_age",
        None,
    ),
    (
        "mc3",
        "metacarpal III",
        "F",
        0.66,
        19,
        "joint_region",
        Some("mcp3"),
    ),
    (
        "mc5",
        "metacarpal V",
        "F",
        0.52,
        18,
        "joint_region",
        Some("mcp5"),
    ),
    (
        "pp1",
        "proximal phalanx I",
        "F",
        0.61,
        26,
        "joint_region",
        Some("mcp1"),
    ),
    (
        "pp3",
        "proximal phalanx III",
        "F",
        0.69,
        23,
        "joint_region",
        Some("mcp3"),
    ),
    (
        "pp5",
        "proximal phalanx V",
        "F",
        0.57,
        21,
        "joint_region",
        Some("mcp5"),
    ),
    (
        "mp3",
        "middle phalanx III",
        "F",
        0.63,
        22,
        "joint_region",
        Some("pip3"),
    ),
    (
        "mp5",
        "middle phalanx V",
        "F",
        0.49,
        23,
        "joint_region",
        Some("pip5"),
    ),
    (
        "dp1",
        "distal phalanx I",
        "F",
        0.55,
        26,
        "joint_region",
        Some("ip1"),
    ),
    (
        "dp3",
        "distal phalanx III",
        "F",
        0.6,
        18,
        "joint_region",
        Some("dip3"),
    ),
    (
        "dp5",
        "distal phalanx V",
        "F",
        0.47,
        18,
        "joint_region",
        Some("dip5"),
    ),
];

/// The stored report of the second exam, as `POST /v1/analyses` answers (plus the
/// optional patient, measurement and growth fields the store adds).
pub(crate) fn report_json() -> Value {
    let joints: Vec<Value> = JOINTS
        .iter()
        .enumerate()
        .map(|(i, &(bone, name, stage, p, score, basis, region))| {
            json!({
                "bone": bone, "name": name, "stage": stage, "stage_probability": p,
                "tw3_score": score, "stage_basis": basis, "region": region,
                "location": region.map(|_| json!({"x": 400.0 + 50.0 * i as f64, "y": 900.0})),
            })
        })
        .collect();
    json!({
        "id": ANALYSIS_2,
        "model": {
            "name": "boneage-resnet-sq100",
            "version": "0.8.0",
            "sha256": "b3e7987e72ed7a1ffe4fa042d80c17c163aff24880f6018f9b7686ab2f1a001a"
        },
        "sex": "male",
        // 124.3 ± 1.645 × 8.6 = 124.3 ± 14.147
        "bone_age": {"months": 124.3, "sd_months": 8.6, "interval_90": [110.153, 138.447]},
        "chronological_age_months": 126.0,
        // (124.3 − 131.5) / 9.94
        "bone_age_sds": (124.3 - 131.5) / 9.94,
        "bone_age_sds_detail": {
            "reference": {
                "sds": (124.3 - 131.5) / 9.94,
                "reference_mean_months": 131.5,
                "reference_sd_months": 9.94,
                "interpolated": true,
                "reference": "Greulich & Pyle 1959, Brush Foundation"
            },
            "reason": null
        },
        "tw3": {
            "rus_score": 339,
            "rus_bone_age_months": 126.0,
            "rus_bone_age_reason": null,
            "stage_bases": ["typical_for_bone_age", "joint_region"]
        },
        "joints": joints,
        "landmarks": [],
        "input": {"format": "dicom", "width": 2000, "height": 2500, "bit_depth": 12,
                  "sha256": "5f1e0c3a9d2b7e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5f7b9d1f3a5c7e9b0d"},
        "source": {
            "fields": [
                {"field": "sex", "value": "male", "from": "dicom", "dicom_value": null, "conflict": false},
                {"field": "birth_date", "value": "2016-01-15", "from": "request", "dicom_value": null, "conflict": false},
                {"field": "exam_date", "value": "2026-07-15", "from": "request", "dicom_value": "20260716", "conflict": true}
            ],
            "dicom": null
        },
        "quality": {
            "decision": "accepted",
            "exposure": {"p01": 0.021, "p99": 0.943, "mean": 0.372},
            "shape": {"residual": 0.031, "max_residual": 0.085, "sd_months": 8.6, "max_sd_months": 21.0},
            "corrections": {"inverted": false, "mirrored": true, "rotation_deg": 0.0},
            "passes": 2,
            "laterality": "right"
        },
        "timings_ms": {"decode": 40.1, "preprocess": 3.2, "inference": 8.3, "scoring": 0.1, "total": 52.0},
        "patient_id": "p-0001",
        "height_cm": 139.6,
        "weight_kg": 32.0,
        "growth": {
            // WHO 2007 boys at 126 months: L 1, M 140.3948, S 0.04667;
            // z = (139.6 / 140.3948 − 1) / 0.04667 = −0.121, Φ(z) = 45.2%
            "height_for_age": {
                "z": -0.1213, "percentile": 45.17, "reference": "WHO 2007 height-for-age (5–19 y)",
                "l": 1.0, "m": 140.3948, "s": 0.04667, "lms_age_months": 126.0,
                "interpolated": false, "measure": "standing_height"
            },
            "height_for_age_reason": null,
            "adult_height": serde_json::to_value(adult_height()).unwrap_or(Value::Null),
            "adult_height_reason": null
        }
    })
}
