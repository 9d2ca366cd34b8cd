//! Growth science over published reference tables (all in `tables/`, copied
//! verbatim, with citations, provenance and checksums in `tables/README.md`):
//!
//! - this module: the bone-age SDS against Greulich–Pyle (below);
//! - [`lms`]: the LMS z-score formula, its inverse, and percentiles;
//! - [`height`]: height-for-age z-score and percentile (WHO 2006/2007 or CDC 2000)
//!   and the reference percentile curves;
//! - [`adult_height`]: predicted adult height (Bayley–Pinneau, Roche–Wainer–Thissen,
//!   Tanner et al. 1975);
//! - [`series`]: a patient's growth over several exams, for the growth chart.
//!
//! # Bone-age SDS against the Greulich–Pyle reference
//!
//! The reference is the Brush Foundation table of mean skeletal age and its SD by
//! chronological age (Greulich & Pyle 1959; see `tables/README.md`), embedded at
//! compile time and parsed once.
//!
//! SDS = (bone age − mean skeletal age at the chronological age) / SD at that age.
//! At a tabulated chronological age the row is used as is; between two rows the
//! mean and SD are interpolated linearly and the result says so
//! ([`BoneAgeSds::interpolated`]). Outside the table there is no SDS: the function
//! returns an error with a reason, never an extrapolated number.

pub mod adult_height;
pub mod height;
pub mod lms;
pub mod series;

use std::sync::OnceLock;

use serde::Serialize;

use crate::Sex;

const GP_CSV: &str = include_str!("tables/greulich_pyle_brush_skeletal_age_mean_sd.csv");

/// Name of the reference, as reported in [`BoneAgeSds::reference`].
pub const GP_REFERENCE: &str = "Greulich & Pyle 1959, Brush Foundation";

/// A bone-age SDS and the reference values it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BoneAgeSds {
    /// (bone age − reference mean) / reference SD. Positive: advanced; negative: delayed.
    pub sds: f64,
    /// Reference mean skeletal age at the chronological age, in months.
    pub reference_mean_months: f64,
    /// Reference SD of skeletal age at the chronological age, in months.
    pub reference_sd_months: f64,
    /// `true` if the chronological age fell between two table rows and the mean and
    /// SD were interpolated linearly between them; `false` at a tabulated age.
    pub interpolated: bool,
    /// The reference table used.
    pub reference: &'static str,
}

/// Why no SDS could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, utoipa::ToSchema)]
#[error("{reason}")]
pub struct SdsUnavailable {
    /// Human-readable reason, e.g. the age is outside the reference table.
    pub reason: String,
}

/// Why a growth value (a height z-score, a reference value) could not be given:
/// the input is missing or invalid, or falls outside the published table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, utoipa::ToSchema)]
#[error("{reason}")]
pub struct NotAvailable {
    /// Human-readable reason.
    pub reason: String,
}

impl NotAvailable {
    pub(crate) fn new(reason: impl Into<String>) -> NotAvailable {
        NotAvailable {
            reason: reason.into(),
        }
    }
}

impl SdsUnavailable {
    fn new(reason: String) -> SdsUnavailable {
        SdsUnavailable { reason }
    }
}

/// Bone-age SDS against the Greulich–Pyle Brush Foundation reference.
///
/// `SDS = (bone_age − mean(CA)) / SD(CA)`, with `mean` and `SD` read from the row
/// at the chronological age `CA`, or interpolated linearly between the two
/// neighbouring rows (then `interpolated` is `true`).
///
/// Errors (never an extrapolated number):
/// - either age is not finite, or is negative;
/// - the chronological age is outside the table (boys 3–204 months, girls 3–192
///   months).
pub fn bone_age_sds(
    sex: Sex,
    chronological_age_months: f64,
    bone_age_months: f64,
) -> Result<BoneAgeSds, SdsUnavailable> {
    let ca = chronological_age_months;
    let ba = bone_age_months;
    if !ca.is_finite() || ca < 0.0 {
        return Err(SdsUnavailable::new(format!(
            "chronological age {ca} months is not a valid age"
        )));
    }
    if !ba.is_finite() || ba < 0.0 {
        return Err(SdsUnavailable::new(format!(
            "bone age {ba} months is not a valid age"
        )));
    }
    let rows = gp_table(sex);
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => {
            return Err(SdsUnavailable::new(
                "the Greulich–Pyle reference table is empty".to_string(),
            ))
        }
    };
    if ca < first.ca || ca > last.ca {
        let who = match sex {
            Sex::Male => "boys",
            Sex::Female => "girls",
        };
        return Err(SdsUnavailable::new(format!(
            "chronological age {ca:.1} months is outside the Greulich–Pyle Brush Foundation \
             table ({}–{} months for {who})",
            first.ca, last.ca
        )));
    }
    // First row with ca >= the chronological age; exists because ca <= last.ca.
    let i = rows.partition_point(|r| r.ca < ca);
    let below = i.checked_sub(1).and_then(|j| rows.get(j));
    let (mean, sd, interpolated) = match (below, rows.get(i)) {
        (_, Some(hi)) if hi.ca == ca => (hi.mean, hi.sd, false),
        (Some(lo), Some(hi)) => {
            let t = (ca - lo.ca) / (hi.ca - lo.ca);
            (
                lo.mean + t * (hi.mean - lo.mean),
                lo.sd + t * (hi.sd - lo.sd),
                true,
            )
        }
        _ => {
            return Err(SdsUnavailable::new(format!(
                "chronological age {ca:.1} months could not be placed in the Greulich–Pyle table"
            )))
        }
    };
    Ok(BoneAgeSds {
        sds: (ba - mean) / sd,
        reference_mean_months: mean,
        reference_sd_months: sd,
        interpolated,
        reference: GP_REFERENCE,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct GpRow {
    /// Chronological age, months.
    ca: f64,
    /// Mean skeletal age, months.
    mean: f64,
    /// SD of skeletal age, months.
    sd: f64,
}

fn gp_table(sex: Sex) -> &'static [GpRow] {
    static TABLE: OnceLock<[Vec<GpRow>; 2]> = OnceLock::new();
    let [boys, girls] = TABLE.get_or_init(|| parse_gp(GP_CSV));
    match sex {
        Sex::Male => boys,
        Sex::Female => girls,
    }
}

/// Parses the embedded CSV into `[boys, girls]`. Panics on a malformed table: it is
/// compiled in, so that is a bug, caught by the unit tests.
fn parse_gp(csv: &str) -> [Vec<GpRow>; 2] {
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().map(str::trim),
        Some("sex,chronological_age_months,mean_skeletal_age_months,sd_skeletal_age_months"),
        "greulich_pyle_brush_skeletal_age_mean_sd.csv: unexpected header"
    );
    let mut boys = Vec::new();
    let mut girls = Vec::new();
    for line in lines.map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 4, "G&P table: bad row {line:?}");
        let num = |s: &str| -> f64 { s.parse().expect("G&P table: bad number") };
        let row = GpRow {
            ca: num(f[1]),
            mean: num(f[2]),
            sd: num(f[3]),
        };
        assert!(
            row.ca.is_finite() && row.mean.is_finite() && row.sd.is_finite() && row.sd > 0.0,
            "G&P table: bad values in {line:?}"
        );
        match f[0] {
            "male" => boys.push(row),
            "female" => girls.push(row),
            other => panic!("G&P table: bad sex {other:?}"),
        }
    }
    for rows in [&boys, &girls] {
        assert!(!rows.is_empty(), "G&P table: a sex has no rows");
        assert!(
            rows.windows(2).all(|w| w[0].ca < w[1].ca),
            "G&P table: chronological ages not strictly increasing"
        );
    }
    [boys, girls]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn table_shape() {
        let b = gp_table(Sex::Male);
        let g = gp_table(Sex::Female);
        assert_eq!(b.len(), 24);
        assert_eq!(g.len(), 23);
        assert_eq!((b[0].ca, b[b.len() - 1].ca), (3.0, 204.0));
        assert_eq!((g[0].ca, g[g.len() - 1].ca), (3.0, 192.0));
    }

    #[test]
    fn exact_rows() {
        let r = bone_age_sds(Sex::Male, 12.0, 12.74).unwrap();
        assert_eq!(r.reference_mean_months, 12.74);
        assert_eq!(r.reference_sd_months, 1.97);
        assert!(!r.interpolated);
        assert!(close(r.sds, 0.0));
        assert_eq!(r.reference, "Greulich & Pyle 1959, Brush Foundation");

        let r = bone_age_sds(Sex::Male, 120.0, 125.68 + 2.0 * 9.79).unwrap();
        assert_eq!(r.reference_mean_months, 125.68);
        assert_eq!(r.reference_sd_months, 9.79);
        assert!(close(r.sds, 2.0));

        let r = bone_age_sds(Sex::Female, 120.0, 125.66).unwrap();
        assert_eq!(r.reference_mean_months, 125.66);
        assert_eq!(r.reference_sd_months, 11.73);
        assert!(!r.interpolated);

        // table end points are inside the range
        let r = bone_age_sds(Sex::Male, 3.0, 3.01).unwrap();
        assert_eq!(r.reference_sd_months, 0.69);
        let r = bone_age_sds(Sex::Male, 204.0, 206.21).unwrap();
        assert_eq!(r.reference_sd_months, 13.05);
        let r = bone_age_sds(Sex::Female, 192.0, 189.44).unwrap();
        assert_eq!(r.reference_sd_months, 7.31);
    }

    #[test]
    fn interpolation_midpoint() {
        // boys 120: 125.68 / 9.79; 132: 137.32 / 10.09
        let r = bone_age_sds(Sex::Male, 126.0, 131.5).unwrap();
        assert!(r.interpolated);
        assert!(close(r.reference_mean_months, (125.68 + 137.32) / 2.0));
        assert!(close(r.reference_sd_months, (9.79 + 10.09) / 2.0));
        assert!(close(r.sds, (131.5 - 131.5) / 9.94));
        // girls 12: 12.04 / 1.77; 18: 18.22 / 3.49, a quarter of the way
        let r = bone_age_sds(Sex::Female, 13.5, 20.0).unwrap();
        assert!(r.interpolated);
        let mean = 12.04 + 0.25 * (18.22 - 12.04);
        let sd = 1.77 + 0.25 * (3.49 - 1.77);
        assert!(close(r.reference_mean_months, mean));
        assert!(close(r.reference_sd_months, sd));
        assert!(close(r.sds, (20.0 - mean) / sd));
    }

    #[test]
    fn sds_sign() {
        let adv = bone_age_sds(Sex::Male, 120.0, 140.0).unwrap();
        assert!(adv.sds > 0.0);
        let del = bone_age_sds(Sex::Male, 120.0, 100.0).unwrap();
        assert!(del.sds < 0.0);
        let del = bone_age_sds(Sex::Female, 96.0, 80.0).unwrap();
        assert!(del.sds < 0.0);
        assert!(close(del.sds, (80.0 - 100.66) / 10.23));
    }

    #[test]
    fn out_of_range_boys() {
        let e = bone_age_sds(Sex::Male, 2.0, 2.0).unwrap_err();
        assert_eq!(
            e.reason,
            "chronological age 2.0 months is outside the Greulich–Pyle Brush Foundation \
             table (3–204 months for boys)"
        );
        assert_eq!(e.to_string(), e.reason);
        assert!(bone_age_sds(Sex::Male, 204.5, 200.0).is_err());
        assert!(bone_age_sds(Sex::Male, 0.0, 0.0).is_err());
    }

    #[test]
    fn out_of_range_girls() {
        let e = bone_age_sds(Sex::Female, 193.0, 190.0).unwrap_err();
        assert!(e.reason.contains("3–192 months for girls"), "{}", e.reason);
        assert!(bone_age_sds(Sex::Female, 200.0, 190.0).is_err());
        assert!(bone_age_sds(Sex::Female, 2.9, 3.0).is_err());
        // 200 months is in range for boys only
        assert!(bone_age_sds(Sex::Male, 200.0, 190.0).is_ok());
    }

    #[test]
    fn invalid_inputs() {
        for (ca, ba) in [
            (f64::NAN, 100.0),
            (f64::INFINITY, 100.0),
            (-1.0, 100.0),
            (120.0, f64::NAN),
            (120.0, f64::NEG_INFINITY),
            (120.0, -0.5),
        ] {
            assert!(bone_age_sds(Sex::Male, ca, ba).is_err(), "{ca} {ba}");
        }
        // bone age 0 is a valid (very delayed) value
        assert!(bone_age_sds(Sex::Male, 12.0, 0.0).unwrap().sds < 0.0);
    }

    /// Every embedded table is byte-identical to the file whose sha256 the README
    /// lists (and so to `/work/shared/reference`), and the README lists every table.
    #[test]
    fn tables_match_readme_checksums() {
        use sha2::{Digest, Sha256};
        let readme = include_str!("tables/README.md");
        let tables: [(&str, &str); 9] = [
            ("greulich_pyle_brush_skeletal_age_mean_sd.csv", GP_CSV),
            (
                "who2006_length_height_for_age_lms_daily_0_5y.csv",
                include_str!("tables/who2006_length_height_for_age_lms_daily_0_5y.csv"),
            ),
            (
                "who2007_height_for_age_lms_5_19y.csv",
                include_str!("tables/who2007_height_for_age_lms_5_19y.csv"),
            ),
            (
                "cdc2000_length_for_age_lms_0_36mo.csv",
                include_str!("tables/cdc2000_length_for_age_lms_0_36mo.csv"),
            ),
            (
                "cdc2000_stature_for_age_lms_2_20y.csv",
                include_str!("tables/cdc2000_stature_for_age_lms_2_20y.csv"),
            ),
            (
                "bayley_pinneau_1952_pct_mature_height.csv",
                include_str!("tables/bayley_pinneau_1952_pct_mature_height.csv"),
            ),
            (
                "rwt1975_adult_height_prediction_coefficients.csv",
                include_str!("tables/rwt1975_adult_height_prediction_coefficients.csv"),
            ),
            (
                "tanner1975_height_prediction_by_chronological_age.csv",
                include_str!("tables/tanner1975_height_prediction_by_chronological_age.csv"),
            ),
            (
                "tanner1975_height_prediction_by_rus_bone_age.csv",
                include_str!("tables/tanner1975_height_prediction_by_rus_bone_age.csv"),
            ),
        ];
        let listed = readme
            .lines()
            .filter(|l| l.ends_with(".csv") && l.len() > 66 && l.as_bytes()[64] == b' ')
            .count();
        assert_eq!(
            listed,
            tables.len(),
            "README checksum list and tables differ"
        );
        for (file, text) in tables {
            let hash = hex::encode(Sha256::digest(text.as_bytes()));
            let line = format!("{hash}  {file}");
            assert!(
                readme.lines().any(|l| l == line),
                "{file}: sha256 {hash} is not the one in tables/README.md"
            );
        }
    }

    #[test]
    fn serialises() {
        let v = serde_json::to_value(bone_age_sds(Sex::Male, 12.0, 12.74).unwrap()).unwrap();
        assert_eq!(v["interpolated"], false);
        assert_eq!(v["reference"], GP_REFERENCE);
        let e = serde_json::to_value(bone_age_sds(Sex::Male, 1.0, 1.0).unwrap_err()).unwrap();
        assert!(e["reason"].as_str().unwrap().contains("outside"));
    }
}
