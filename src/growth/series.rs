//! A patient's growth over several exams: the series a growth chart needs.
//!
//! [`growth_series`] turns the stored exams of one patient into the patient's
//! points (chronological age, bone age, height), the reference height percentile
//! curves, the ±2 SD bone-age band, bone-age velocity between exams and the
//! predicted adult height. Pure: no storage, no I/O.
//!
//! - Points are sorted by chronological age; exams without one come last, in their
//!   given order (the sort is stable).
//! - `bone_age_sds` is the Greulich–Pyle SDS ([`super::bone_age_sds`]), null outside
//!   its table; `height_for_age` is [`height_for_age`] against the chosen reference,
//!   with the reason when it is null.
//! - Velocities are between consecutive exams (in age order) that have a
//!   chronological age (and, for height velocity, a height). A pair less than
//!   [`MIN_VELOCITY_INTERVAL_MONTHS`] (1 month) apart is skipped: over so short an
//!   interval the measurement error of the bone age or height swamps the change.
//!   Bone-age velocity is Δ bone age / Δ chronological age (months per month);
//!   height velocity is Δ height / Δ age in years (cm per year).
//! - The adult height is predicted at the latest exam (greatest chronological age)
//!   that has a height, with that exam's weight and the parents' heights; when no
//!   exam with a height has an age, at the last exam with a height (the methods then
//!   say that the age is missing).

use serde::Serialize;
use utoipa::ToSchema;

use super::adult_height::{predict_adult_height, AdultHeight, AdultHeightInput};
use super::height::{height_for_age, percentile_curves, HeightForAge, HeightReference};
use super::{bone_age_sds, gp_table};
use crate::Sex;

/// Consecutive exams closer than this (months) give no velocity.
pub const MIN_VELOCITY_INTERVAL_MONTHS: f64 = 1.0;

/// [`Velocity::unit`] of bone-age velocity: bone-age months per chronological month.
pub const BONE_AGE_VELOCITY_UNIT: &str = "months_per_month";
/// [`Velocity::unit`] of height velocity.
pub const HEIGHT_VELOCITY_UNIT: &str = "cm_per_year";

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

/// The growth series of one patient (see the module documentation).
pub fn growth_series(inputs: &GrowthInputs) -> GrowthSeries {
    let sex = inputs.sex;
    let reference = inputs.reference;
    let mut exams: Vec<&ExamPoint> = inputs.exams.iter().collect();
    exams.sort_by(|a, b| match (age_of(a), age_of(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });

    let points = exams.iter().map(|e| point(sex, reference, e)).collect();

    let bone_age_band = gp_table(sex)
        .iter()
        .map(|r| BandPoint {
            age_months: r.ca,
            mean_months: r.mean,
            lower_months: r.mean - 2.0 * r.sd,
            upper_months: r.mean + 2.0 * r.sd,
        })
        .collect();

    let aged: Vec<(&ExamPoint, f64)> = exams
        .iter()
        .filter_map(|e| age_of(e).map(|a| (*e, a)))
        .collect();
    let bone_age_velocity = velocities(&aged, BONE_AGE_VELOCITY_UNIT, 1.0, |e| {
        Some(e.bone_age_months).filter(|v| v.is_finite())
    });
    let with_height: Vec<(&ExamPoint, f64)> = aged
        .iter()
        .copied()
        .filter(|(e, _)| height_of(e).is_some())
        .collect();
    let height_velocity = velocities(&with_height, HEIGHT_VELOCITY_UNIT, 12.0, height_of);

    let latest_with_height = with_height
        .last()
        .map(|(e, _)| *e)
        .or_else(|| exams.iter().rev().copied().find(|e| height_of(e).is_some()));
    let (adult_height, adult_height_reason) = match latest_with_height {
        Some(e) => (
            Some(predict_adult_height(&AdultHeightInput {
                sex,
                chronological_age_months: age_of(e),
                bone_age_months: Some(e.bone_age_months),
                height_cm: height_of(e),
                weight_kg: e.weight_kg,
                mother_height_cm: inputs.mother_height_cm,
                father_height_cm: inputs.father_height_cm,
                tw2_rus_bone_age_months: None,
                menarche: None,
            })),
            None,
        ),
        None => (
            None,
            Some("no exam has a height; adult height prediction needs one".to_string()),
        ),
    };

    GrowthSeries {
        sex,
        height_reference: reference,
        points,
        height_percentiles: percentile_curves(sex, reference),
        bone_age_band,
        bone_age_velocity,
        height_velocity,
        adult_height,
        adult_height_reason,
    }
}

fn point(sex: Sex, reference: HeightReference, e: &ExamPoint) -> GrowthPoint {
    let age = age_of(e);
    // The raw height: an invalid one gets height_for_age's own reason.
    let height = e.height_cm;
    let (height_for_age, height_for_age_reason) = match (age, height) {
        (_, None) => (None, Some("no height recorded at this exam".to_string())),
        (None, Some(_)) => (
            None,
            Some("no chronological age known for this exam".to_string()),
        ),
        (Some(a), Some(h)) => match height_for_age(sex, a, h, reference) {
            Ok(v) => (Some(v), None),
            Err(err) => (None, Some(err.reason)),
        },
    };
    GrowthPoint {
        analysis_id: e.analysis_id.clone(),
        exam_date: e.exam_date.clone(),
        chronological_age_months: age,
        bone_age_months: e.bone_age_months,
        bone_age_sd_months: e.bone_age_sd_months,
        bone_age_minus_age_months: age.map(|a| e.bone_age_months - a),
        bone_age_sds: age.and_then(|a| bone_age_sds(sex, a, e.bone_age_months).ok().map(|s| s.sds)),
        height_cm: e.height_cm,
        weight_kg: e.weight_kg,
        height_for_age,
        height_for_age_reason,
    }
}

/// Velocities between consecutive `(exam, age)` pairs (ages ascending) of `value`,
/// per `per_months` months of chronological age (1: per month, 12: per year).
fn velocities(
    exams: &[(&ExamPoint, f64)],
    unit: &'static str,
    per_months: f64,
    value: impl Fn(&ExamPoint) -> Option<f64>,
) -> Vec<Velocity> {
    exams
        .windows(2)
        .filter_map(|w| {
            let ((from, a0), (to, a1)) = (w[0], w[1]);
            let dt = a1 - a0;
            if dt < MIN_VELOCITY_INTERVAL_MONTHS {
                return None;
            }
            let dv = value(to)? - value(from)?;
            Some(Velocity {
                from_analysis_id: from.analysis_id.clone(),
                to_analysis_id: to.analysis_id.clone(),
                from_age_months: a0,
                to_age_months: a1,
                value: dv / (dt / per_months),
                unit,
            })
        })
        .collect()
}

/// The exam's chronological age, when known and a valid number.
fn age_of(e: &ExamPoint) -> Option<f64> {
    e.chronological_age_months
        .filter(|a| a.is_finite() && *a >= 0.0)
}

/// The exam's height, when known and a valid number.
fn height_of(e: &ExamPoint) -> Option<f64> {
    e.height_cm.filter(|h| h.is_finite() && *h > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn exam(
        id: &str,
        ca: Option<f64>,
        ba: f64,
        height: Option<f64>,
        weight: Option<f64>,
    ) -> ExamPoint {
        ExamPoint {
            analysis_id: id.to_string(),
            exam_date: None,
            chronological_age_months: ca,
            bone_age_months: ba,
            bone_age_sd_months: 7.0,
            height_cm: height,
            weight_kg: weight,
        }
    }

    #[test]
    fn two_exams_a_year_apart() {
        // Given out of order: the series sorts by chronological age.
        let inputs = GrowthInputs {
            sex: Sex::Male,
            exams: vec![
                exam("b", Some(132.0), 141.0, Some(146.0), Some(36.0)),
                exam("a", Some(120.0), 126.0, Some(140.0), Some(32.0)),
            ],
            mother_height_cm: Some(165.0),
            father_height_cm: Some(178.0),
            reference: HeightReference::Who,
        };
        let g = growth_series(&inputs);
        let ids: Vec<&str> = g.points.iter().map(|p| p.analysis_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b"]);
        let (a, b) = (&g.points[0], &g.points[1]);

        // bone age − age: 126 − 120 = 6; 141 − 132 = 9
        assert_eq!(a.bone_age_minus_age_months, Some(6.0));
        assert_eq!(b.bone_age_minus_age_months, Some(9.0));
        // GP SDS, boys 120: (126 − 125.68)/9.79 = 0.032686; 132: (141 − 137.32)/10.09 = 0.364718
        assert!(close(a.bone_age_sds.unwrap(), 0.032686, 1e-6));
        assert!(close(b.bone_age_sds.unwrap(), 0.364718, 1e-6));
        // height z, WHO 2007 boys: 120 mo (M 137.7795, S 0.04626):
        // (140/137.7795 − 1)/0.04626 = 0.0161163/0.04626 = 0.348386
        // 132 mo (M 143.1126, S 0.04703): (146/143.1126 − 1)/0.04703 = 0.0201757/0.04703 = 0.428997
        let ha = a.height_for_age.as_ref().unwrap();
        let hb = b.height_for_age.as_ref().unwrap();
        assert!(close(ha.z, 0.348386, 1e-6), "{}", ha.z);
        assert!(close(hb.z, 0.428997, 1e-6), "{}", hb.z);
        assert_eq!(hb.reference, "WHO 2007 height-for-age (5–19 y)");
        assert!(a.height_for_age_reason.is_none());

        // velocities over 12 months: bone age (141 − 126)/12 = 1.25 months per month;
        // height (146 − 140)/1 y = 6 cm per year
        assert_eq!(g.bone_age_velocity.len(), 1);
        let v = &g.bone_age_velocity[0];
        assert_eq!(
            (v.from_analysis_id.as_str(), v.to_analysis_id.as_str()),
            ("a", "b")
        );
        assert_eq!((v.from_age_months, v.to_age_months), (120.0, 132.0));
        assert!(close(v.value, 1.25, 1e-12));
        assert_eq!(v.unit, "months_per_month");
        assert_eq!(g.height_velocity.len(), 1);
        assert!(close(g.height_velocity[0].value, 6.0, 1e-12));
        assert_eq!(g.height_velocity[0].unit, "cm_per_year");

        // adult height at exam b (132 mo, BA 141 = 11-9, 146 cm, 36 kg):
        // Bayley–Pinneau average 11-9 = 82.7 % → 146/0.827 = 176.5417 cm;
        // RWT boys 11-0: 0.960×146 − 0.231×36 + 0.378×171.5 − 1.094×11.75 − 5.010 = 178.8065
        let ah = g.adult_height.as_ref().unwrap();
        assert!(g.adult_height_reason.is_none());
        assert_eq!(ah.predictions.len(), 2);
        assert_eq!(ah.predictions[0].table, "average, 11-9");
        assert!(close(ah.predictions[0].predicted_cm, 176.5417, 1e-4));
        assert!(close(ah.predictions[1].predicted_cm, 178.8065, 1e-9));
        assert_eq!(ah.unavailable.len(), 1);
        assert_eq!(ah.unavailable[0].method, "tanner_1975");

        // the GP band at the table's own rows: boys 3 months, 3.01 ± 2×0.69
        assert_eq!(g.bone_age_band.len(), 24);
        let first = g.bone_age_band[0];
        assert_eq!(first.age_months, 3.0);
        assert!(close(first.lower_months, 1.63, 1e-12));
        assert!(close(first.upper_months, 4.39, 1e-12));
        let at120 = g
            .bone_age_band
            .iter()
            .find(|p| p.age_months == 120.0)
            .unwrap();
        assert!(close(at120.lower_months, 125.68 - 19.58, 1e-9));

        assert_eq!(g.height_percentiles.len(), 7);
        assert!(g.height_percentiles.iter().all(|c| c.points.len() == 229));
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(json["height_reference"], "who");
        assert_eq!(
            json["points"][1]["height_for_age"]["measure"],
            "standing_height"
        );
    }

    #[test]
    fn missing_values_and_close_exams() {
        let inputs = GrowthInputs {
            sex: Sex::Female,
            exams: vec![
                exam("no-age", None, 100.0, Some(120.0), None),
                exam("x", Some(100.0), 95.0, None, None),
                exam("y", Some(100.5), 96.0, None, None),
                exam("z", Some(250.0), 200.0, None, None),
            ],
            mother_height_cm: None,
            father_height_cm: None,
            reference: HeightReference::Cdc,
        };
        let g = growth_series(&inputs);
        let ids: Vec<&str> = g.points.iter().map(|p| p.analysis_id.as_str()).collect();
        assert_eq!(ids, vec!["x", "y", "z", "no-age"]);
        assert_eq!(
            g.points[0].height_for_age_reason.as_deref(),
            Some("no height recorded at this exam")
        );
        assert_eq!(
            g.points[3].height_for_age_reason.as_deref(),
            Some("no chronological age known for this exam")
        );
        assert_eq!(g.points[3].bone_age_minus_age_months, None);
        assert_eq!(g.points[3].bone_age_sds, None);
        // 250 months is past the girls' GP table (≤ 192): no SDS
        assert_eq!(g.points[2].bone_age_sds, None);
        assert_eq!(g.points[2].bone_age_minus_age_months, Some(-50.0));
        // x→y is half a month apart: skipped; y→z: (200 − 96)/(250 − 100.5)
        assert_eq!(g.bone_age_velocity.len(), 1);
        assert_eq!(g.bone_age_velocity[0].from_analysis_id, "y");
        assert!(close(g.bone_age_velocity[0].value, 104.0 / 149.5, 1e-12));
        assert!(g.height_velocity.is_empty());
        // the only height is on the exam without an age: the methods say so
        let ah = g.adult_height.as_ref().unwrap();
        assert!(ah.predictions.is_empty());
        assert!(ah.unavailable[0]
            .reason
            .contains("chronological_age_months"));
        assert_eq!(g.height_percentiles[0].points.len(), 241);
        assert_eq!(g.bone_age_band.len(), 23);

        let none = growth_series(&GrowthInputs {
            exams: vec![exam("x", Some(100.0), 95.0, None, None)],
            ..inputs
        });
        assert!(none.adult_height.is_none());
        assert!(none
            .adult_height_reason
            .unwrap()
            .contains("no exam has a height"));
    }

    #[test]
    fn height_outside_reference_has_a_reason() {
        let g = growth_series(&GrowthInputs {
            sex: Sex::Male,
            exams: vec![exam("old", Some(230.0), 216.0, Some(178.0), Some(70.0))],
            mother_height_cm: None,
            father_height_cm: None,
            reference: HeightReference::Who,
        });
        let p = &g.points[0];
        assert!(p.height_for_age.is_none());
        assert!(p
            .height_for_age_reason
            .as_ref()
            .unwrap()
            .contains("228 months"));
    }
}
