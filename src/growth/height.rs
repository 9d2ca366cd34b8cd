//! Height-for-age against LMS growth references: WHO 2006 (0–5 y) with WHO 2007
//! (5–19 y), the default, or CDC 2000 (0–20 y).
//!
//! The four LMS tables are embedded verbatim from `tables/` (citations, provenance
//! and checksums in `tables/README.md`) and parsed once. The z-score is the LMS
//! z-score ([`super::lms::z_from_lms`]); the percentile is `100·Φ(z)`.
//!
//! Which LMS row is used at an age (`age_months`, months since birth):
//!
//! - **WHO** (as WHO's own software does):
//!   - the age in days is `age_months × 30.4375` rounded to the nearest whole day
//!     (halves up), as WHO Anthro converts an age given in months. Up to 1826 days
//!     (60 months) the WHO 2006 daily table is read at that day: no interpolation.
//!     The 2006 table is recumbent length up to 730 days and standing height from
//!     731 days ([`HeightForAge::measure`] says which).
//!   - from 61 months to 228 months, the WHO 2007 monthly table; at a fractional age
//!     L, M and S are interpolated linearly between the rows of the whole months
//!     below and above, as WHO AnthroPlus does (`interpolated: true`).
//!   - between 1826 days and 61 months (60.01–60.99 months), which the embedded 2006
//!     table does not reach, the WHO 2007 table is interpolated the same way between
//!     its 60- and 61-month rows (the 60-month row is in WHO's AnthroPlus data file;
//!     AnthroPlus itself starts reporting at 61 months). `interpolated: true`.
//!   - beyond 228 months: not available.
//!
//!   WHO Anthro adds 0.7 cm to a standing height measured before 731 days and
//!   subtracts 0.7 cm from a length measured from 731 days. This service is not told
//!   how a height was measured, so it compares the height as given and applies no
//!   such adjustment; `measure` reports what the reference measured at that age.
//! - **CDC 2000**: the CDC LMS files tabulate each whole-month interval at its
//!   midpoint (row 1.5 stands for 1.0 to < 2.0 months) plus a row at the interval's
//!   boundary where a table starts or ends. An age is read at the row whose interval
//!   contains it, without interpolation:
//!   - below 24 months, the infant length-for-age table (recumbent length): age 0 →
//!     row 0 (birth); `k ≤ age < k + 1` → row `k + 0.5` (0.5 … 23.5);
//!   - 24 to 240 months, the stature-for-age table (standing height): exactly 24 →
//!     row 24; `k ≤ age < k + 1` → row `k + 0.5` (24.5 … 239.5); exactly 240 → row 240;
//!   - beyond 240 months: not available. The infant table's rows from 24.5 to 35.5
//!     months are not used (from 24 months CDC's stature chart applies).
//!
//! Nothing is extrapolated: outside a table the result is [`NotAvailable`] with the
//! reason.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::lms::{percentile_from_z, value_at_z, z_for_percentile, z_from_lms};
use super::series::{CurvePoint, PercentileCurve};
pub use super::NotAvailable;
use crate::Sex;

/// Which height reference to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeightReference {
    /// WHO Child Growth Standards 2006 (0–5 y) and WHO Growth Reference 2007 (5–19 y).
    #[default]
    Who,
    /// CDC 2000 growth charts (length 0–36 months, stature 2–20 y).
    Cdc,
}

/// A height-for-age z-score with the reference values behind it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HeightForAge {
    pub z: f64,
    /// 100 × Φ(z).
    pub percentile: f64,
    /// The table used, e.g. `WHO 2007 height-for-age (5–19 y)`.
    pub reference: &'static str,
    /// L, M, S at the age (as tabulated, or interpolated as the reference's own
    /// method prescribes; `interpolated` says which).
    pub l: f64,
    pub m: f64,
    pub s: f64,
    /// The age the LMS values belong to (months).
    pub lms_age_months: f64,
    pub interpolated: bool,
    /// `recumbent_length` or `standing_height`: what the reference measured at this age.
    pub measure: &'static str,
}

/// Name of the WHO 2006 table, as reported in [`HeightForAge::reference`].
pub const WHO2006_REFERENCE: &str = "WHO 2006 length/height-for-age (0–5 y)";
/// Name of the WHO 2007 table.
pub const WHO2007_REFERENCE: &str = "WHO 2007 height-for-age (5–19 y)";
/// Name of the CDC 2000 infant length table.
pub const CDC_LENGTH_REFERENCE: &str = "CDC 2000 length-for-age (0–36 mo)";
/// Name of the CDC 2000 stature table.
pub const CDC_STATURE_REFERENCE: &str = "CDC 2000 stature-for-age (2–20 y)";

/// [`HeightForAge::measure`] values.
pub const RECUMBENT_LENGTH: &str = "recumbent_length";
pub const STANDING_HEIGHT: &str = "standing_height";

/// Days per month, as WHO Anthro converts ages (365.25 / 12).
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// The percentiles of the chart curves.
pub const CHART_PERCENTILES: [f64; 7] = [3.0, 10.0, 25.0, 50.0, 75.0, 90.0, 97.0];

/// Last day of the WHO 2006 table.
const WHO2006_LAST_DAY: usize = 1826;
/// First and last month of the WHO 2007 table.
const WHO2007_FIRST_MONTH: usize = 60;
const WHO2007_LAST_MONTH: usize = 228;
/// CDC: switch from the infant length table to the stature table; end of stature.
const CDC_STATURE_FROM_MONTHS: f64 = 24.0;
const CDC_LAST_MONTHS: f64 = 240.0;

const WHO2006_CSV: &str = include_str!("tables/who2006_length_height_for_age_lms_daily_0_5y.csv");
const WHO2007_CSV: &str = include_str!("tables/who2007_height_for_age_lms_5_19y.csv");
const CDC_LENGTH_CSV: &str = include_str!("tables/cdc2000_length_for_age_lms_0_36mo.csv");
const CDC_STATURE_CSV: &str = include_str!("tables/cdc2000_stature_for_age_lms_2_20y.csv");

/// Height-for-age z-score and percentile of `height_cm` at `age_months`.
///
/// Errors (with the reason): age or height not a valid number, age outside the
/// reference (WHO: 0–228 months; CDC: 0–240 months).
pub fn height_for_age(
    sex: Sex,
    age_months: f64,
    height_cm: f64,
    reference: HeightReference,
) -> Result<HeightForAge, NotAvailable> {
    if !height_cm.is_finite() || height_cm <= 0.0 {
        return Err(NotAvailable::new(format!(
            "height {height_cm} cm is not a valid height"
        )));
    }
    let lms = lms_at(sex, age_months, reference)?;
    let z = z_from_lms(height_cm, lms.l, lms.m, lms.s).ok_or_else(|| {
        NotAvailable::new(format!(
            "no z-score for height {height_cm} cm against {}",
            lms.reference
        ))
    })?;
    Ok(HeightForAge {
        z,
        percentile: percentile_from_z(z),
        reference: lms.reference,
        l: lms.l,
        m: lms.m,
        s: lms.s,
        lms_age_months: lms.age_months,
        interpolated: lms.interpolated,
        measure: lms.measure,
    })
}

/// The height (cm) at z-score `z` and `age_months`; `None` outside the reference's
/// ages or where the LMS formula is undefined.
pub fn height_at(sex: Sex, age_months: f64, z: f64, reference: HeightReference) -> Option<f64> {
    let lms = lms_at(sex, age_months, reference).ok()?;
    value_at_z(z, lms.l, lms.m, lms.s)
}

/// Reference height curves at percentiles 3, 10, 25, 50, 75, 90 and 97, one point
/// per whole month over the reference's range (WHO 0–228 months; CDC 0–240 months,
/// the stature table from 24 months). Each point is [`height_at`] at that age, so a
/// child exactly on a curve gets that curve's percentile from [`height_for_age`].
pub fn percentile_curves(sex: Sex, reference: HeightReference) -> Vec<PercentileCurve> {
    let last_month: u32 = match reference {
        HeightReference::Who => 228,
        HeightReference::Cdc => 240,
    };
    CHART_PERCENTILES
        .iter()
        .filter_map(|&percentile| {
            let z = z_for_percentile(percentile)?;
            let points = (0..=last_month)
                .filter_map(|month| {
                    let age_months = f64::from(month);
                    height_at(sex, age_months, z, reference).map(|height_cm| CurvePoint {
                        age_months,
                        height_cm,
                    })
                })
                .collect();
            Some(PercentileCurve {
                percentile,
                z,
                points,
            })
        })
        .collect()
}

/// The LMS values at an age, and where they came from.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Lms {
    l: f64,
    m: f64,
    s: f64,
    age_months: f64,
    interpolated: bool,
    reference: &'static str,
    measure: &'static str,
}

fn lms_at(sex: Sex, age_months: f64, reference: HeightReference) -> Result<Lms, NotAvailable> {
    let age = age_months;
    if !age.is_finite() || age < 0.0 {
        return Err(NotAvailable::new(format!(
            "age {age} months is not a valid age"
        )));
    }
    let t = tables()?;
    let i = sex_index(sex);
    match reference {
        HeightReference::Who => who_lms(&t.who2006[i], &t.who2007[i], age),
        HeightReference::Cdc => cdc_lms(&t.cdc_length[i], &t.cdc_stature[i], age),
    }
}

fn who_lms(who2006: &[LmsRow], who2007: &[LmsRow], age: f64) -> Result<Lms, NotAvailable> {
    let days = (age * DAYS_PER_MONTH).round();
    if days <= WHO2006_LAST_DAY as f64 {
        let row = who2006
            .get(days as usize)
            .ok_or_else(|| table_gap(WHO2006_REFERENCE, age))?;
        return Ok(Lms {
            l: row.l,
            m: row.m,
            s: row.s,
            age_months: row.age / DAYS_PER_MONTH,
            interpolated: false,
            reference: WHO2006_REFERENCE,
            measure: row.measure,
        });
    }
    if age > WHO2007_LAST_MONTH as f64 {
        return Err(NotAvailable::new(format!(
            "age {age:.1} months is beyond the WHO 2007 height-for-age reference, which \
             ends at {WHO2007_LAST_MONTH} months (19 years)"
        )));
    }
    let lower = age.floor();
    let frac = age - lower;
    let i = (lower as usize)
        .checked_sub(WHO2007_FIRST_MONTH)
        .ok_or_else(|| table_gap(WHO2007_REFERENCE, age))?;
    let lo = who2007
        .get(i)
        .ok_or_else(|| table_gap(WHO2007_REFERENCE, age))?;
    if frac == 0.0 {
        return Ok(Lms {
            l: lo.l,
            m: lo.m,
            s: lo.s,
            age_months: lo.age,
            interpolated: false,
            reference: WHO2007_REFERENCE,
            measure: lo.measure,
        });
    }
    let hi = who2007
        .get(i + 1)
        .ok_or_else(|| table_gap(WHO2007_REFERENCE, age))?;
    let lerp = |a: f64, b: f64| a + frac * (b - a);
    Ok(Lms {
        l: lerp(lo.l, hi.l),
        m: lerp(lo.m, hi.m),
        s: lerp(lo.s, hi.s),
        age_months: age,
        interpolated: true,
        reference: WHO2007_REFERENCE,
        measure: lo.measure,
    })
}

fn cdc_lms(length: &[LmsRow], stature: &[LmsRow], age: f64) -> Result<Lms, NotAvailable> {
    let (rows, reference, key) = if age < CDC_STATURE_FROM_MONTHS {
        let key = if age == 0.0 { 0.0 } else { age.floor() + 0.5 };
        (length, CDC_LENGTH_REFERENCE, key)
    } else if age <= CDC_LAST_MONTHS {
        let key = if age == CDC_STATURE_FROM_MONTHS || age == CDC_LAST_MONTHS {
            age
        } else {
            age.floor() + 0.5
        };
        (stature, CDC_STATURE_REFERENCE, key)
    } else {
        return Err(NotAvailable::new(format!(
            "age {age:.1} months is beyond the CDC 2000 stature-for-age reference, which \
             ends at 240 months (20 years)"
        )));
    };
    let row = rows
        .iter()
        .find(|r| r.age == key)
        .ok_or_else(|| table_gap(reference, age))?;
    Ok(Lms {
        l: row.l,
        m: row.m,
        s: row.s,
        age_months: row.age,
        interpolated: false,
        reference,
        measure: row.measure,
    })
}

fn table_gap(reference: &str, age: f64) -> NotAvailable {
    NotAvailable::new(format!(
        "the {reference} table has no row for age {age:.2} months"
    ))
}

fn sex_index(sex: Sex) -> usize {
    match sex {
        Sex::Male => 0,
        Sex::Female => 1,
    }
}

/// One row of an LMS table; `age` in the table's own unit (days for WHO 2006,
/// months otherwise).
#[derive(Debug, Clone, Copy, PartialEq)]
struct LmsRow {
    age: f64,
    l: f64,
    m: f64,
    s: f64,
    measure: &'static str,
}

/// `[boys, girls]` per table.
struct Tables {
    /// Index = age in days (0..=1826).
    who2006: [Vec<LmsRow>; 2],
    /// Index = age in months − 60 (60..=228).
    who2007: [Vec<LmsRow>; 2],
    cdc_length: [Vec<LmsRow>; 2],
    cdc_stature: [Vec<LmsRow>; 2],
}

/// The parsed tables. A malformed embedded table (a build defect, caught by the unit
/// tests) becomes a [`NotAvailable`] on every call rather than a panic.
fn tables() -> Result<&'static Tables, NotAvailable> {
    static TABLES: OnceLock<Result<Tables, String>> = OnceLock::new();
    match TABLES.get_or_init(parse_tables) {
        Ok(t) => Ok(t),
        Err(e) => Err(NotAvailable::new(format!(
            "the embedded height reference tables are invalid: {e}"
        ))),
    }
}

fn parse_tables() -> Result<Tables, String> {
    let who2006 = parse_lms(
        WHO2006_CSV,
        "who2006_length_height_for_age_lms_daily_0_5y.csv",
        "sex,age_days,L,M,S,measure",
        None,
    )?;
    let who2007 = parse_lms(
        WHO2007_CSV,
        "who2007_height_for_age_lms_5_19y.csv",
        "sex,age_months,L,M,S",
        Some(STANDING_HEIGHT),
    )?;
    let cdc_length = parse_lms(
        CDC_LENGTH_CSV,
        "cdc2000_length_for_age_lms_0_36mo.csv",
        "sex,age_months,L,M,S",
        Some(RECUMBENT_LENGTH),
    )?;
    let cdc_stature = parse_lms(
        CDC_STATURE_CSV,
        "cdc2000_stature_for_age_lms_2_20y.csv",
        "sex,age_months,L,M,S",
        Some(STANDING_HEIGHT),
    )?;
    // The WHO lookups index by position: each row must sit at its own age.
    for rows in &who2006 {
        check_contiguous(rows, 0, WHO2006_LAST_DAY, "WHO 2006")?;
    }
    for rows in &who2007 {
        check_contiguous(rows, WHO2007_FIRST_MONTH, WHO2007_LAST_MONTH, "WHO 2007")?;
    }
    Ok(Tables {
        who2006,
        who2007,
        cdc_length,
        cdc_stature,
    })
}

fn check_contiguous(rows: &[LmsRow], first: usize, last: usize, name: &str) -> Result<(), String> {
    let ok = rows.len() == last - first + 1
        && rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.age == (first + i) as f64);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name}: rows are not one per unit of age from {first} to {last}"
        ))
    }
}

/// Parses an LMS CSV into `[boys, girls]`. `measure`: the measure of every row, or
/// `None` to read it from the file's `measure` column.
fn parse_lms(
    text: &str,
    file: &str,
    header: &str,
    measure: Option<&'static str>,
) -> Result<[Vec<LmsRow>; 2], String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let got = reader
        .headers()
        .map_err(|e| format!("{file}: {e}"))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if got != header {
        return Err(format!("{file}: header {got:?}, expected {header:?}"));
    }
    let mut out: [Vec<LmsRow>; 2] = [Vec::new(), Vec::new()];
    for record in reader.records() {
        let record = record.map_err(|e| format!("{file}: {e}"))?;
        let field = |i: usize| record.get(i).unwrap_or("");
        let num = |i: usize| -> Result<f64, String> {
            field(i)
                .parse::<f64>()
                .map_err(|e| format!("{file}: {:?} in {record:?}: {e}", field(i)))
        };
        let row_measure = match measure {
            Some(m) => m,
            None => match field(5) {
                "recumbent_length" => RECUMBENT_LENGTH,
                "standing_height" => STANDING_HEIGHT,
                other => return Err(format!("{file}: unknown measure {other:?}")),
            },
        };
        let row = LmsRow {
            age: num(1)?,
            l: num(2)?,
            m: num(3)?,
            s: num(4)?,
            measure: row_measure,
        };
        if !(row.age.is_finite() && row.age >= 0.0 && row.l.is_finite())
            || !(row.m.is_finite() && row.m > 0.0 && row.s.is_finite() && row.s > 0.0)
        {
            return Err(format!("{file}: bad values in {record:?}"));
        }
        let sex = match field(0) {
            "male" => 0,
            "female" => 1,
            other => return Err(format!("{file}: unknown sex {other:?}")),
        };
        out[sex].push(row);
    }
    for rows in &out {
        if rows.is_empty() {
            return Err(format!("{file}: a sex has no rows"));
        }
        if !rows.windows(2).all(|w| w[0].age < w[1].age) {
            return Err(format!("{file}: ages not strictly increasing"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    const WHO: HeightReference = HeightReference::Who;
    const CDC: HeightReference = HeightReference::Cdc;

    #[test]
    fn tables_parse_with_expected_shapes() {
        let t = parse_tables().unwrap();
        for i in 0..2 {
            assert_eq!(t.who2006[i].len(), 1827);
            assert_eq!(t.who2007[i].len(), 169);
            assert_eq!(t.cdc_length[i].len(), 37);
            assert_eq!(t.cdc_stature[i].len(), 218);
            assert_eq!(t.cdc_length[i][0].age, 0.0);
            assert_eq!(t.cdc_length[i][1].age, 0.5);
            assert_eq!(t.cdc_length[i][36].age, 35.5);
            assert_eq!(t.cdc_stature[i][0].age, 24.0);
            assert_eq!(t.cdc_stature[i][1].age, 24.5);
            assert_eq!(t.cdc_stature[i][216].age, 239.5);
            assert_eq!(t.cdc_stature[i][217].age, 240.0);
            // recumbent length to day 730, standing height from 731
            assert_eq!(t.who2006[i][730].measure, RECUMBENT_LENGTH);
            assert_eq!(t.who2006[i][731].measure, STANDING_HEIGHT);
        }
        // a few rows verbatim
        assert_eq!(
            t.who2006[0][1826],
            LmsRow {
                age: 1826.0,
                l: 1.0,
                m: 109.9593,
                s: 0.04214,
                measure: STANDING_HEIGHT
            }
        );
        assert_eq!(t.who2007[1][120 - 60].m, 138.6363);
        assert_eq!(t.cdc_stature[0][193].age, 216.5);
        assert!(tables().is_ok());
    }

    #[test]
    fn who2007_boys_120_months() {
        // WHO 2007 boys 120 months: L = 1, M = 137.7795, S = 0.04626.
        let r = height_for_age(Sex::Male, 120.0, 137.7795, WHO).unwrap();
        assert_eq!(r.reference, "WHO 2007 height-for-age (5–19 y)");
        assert_eq!((r.l, r.m, r.s), (1.0, 137.7795, 0.04626));
        assert_eq!(r.lms_age_months, 120.0);
        assert!(!r.interpolated);
        assert_eq!(r.measure, STANDING_HEIGHT);
        assert!(close(r.z, 0.0, 1e-12));
        assert!(close(r.percentile, 50.0, 1e-9));
        // +2 SD: M(1 + 2S) = 137.7795 × 1.09252 = 150.52686; −2 SD: × 0.90748 = 125.03214
        let r = height_for_age(Sex::Male, 120.0, 150.52686, WHO).unwrap();
        assert!(close(r.z, 2.0, 1e-5), "{}", r.z);
        assert!(close(r.percentile, 97.724987, 1e-4), "{}", r.percentile);
        let r = height_for_age(Sex::Male, 120.0, 125.03214, WHO).unwrap();
        assert!(close(r.z, -2.0, 1e-5), "{}", r.z);
        // 130 cm: (130/137.7795 − 1)/0.04626 = −0.0564635/0.04626 = −1.220567
        let r = height_for_age(Sex::Male, 120.0, 130.0, WHO).unwrap();
        assert!(close(r.z, -1.220567, 1e-6), "{}", r.z);
    }

    #[test]
    fn who2007_fractional_month_is_interpolated() {
        // Girls 120 → 121 months: M 138.6363 → 139.1575, S 0.04614 → 0.04612.
        // At 120.5: M = 138.8969, S = 0.04613; height = M gives z = 0.
        let r = height_for_age(Sex::Female, 120.5, 138.8969, WHO).unwrap();
        assert!(r.interpolated);
        assert_eq!(r.lms_age_months, 120.5);
        assert!(close(r.m, 138.8969, 1e-9));
        assert!(close(r.s, 0.04613, 1e-12));
        assert!(close(r.z, 0.0, 1e-9));
        // A quarter of the way: M = 138.6363 + 0.25 × 0.5212 = 138.7666,
        // S = 0.046135; 145 cm: (145/138.7666 − 1)/0.046135 = 0.0449200/0.046135 = 0.973665
        let r = height_for_age(Sex::Female, 120.25, 145.0, WHO).unwrap();
        assert!(close(r.m, 138.7666, 1e-9));
        assert!(close(r.z, 0.973665, 1e-6), "{}", r.z);
    }

    #[test]
    fn who2006_daily_table_by_rounded_day() {
        // 12 months = 365.25 days → day 365 (girls: M = 74.0049, S = 0.03479, L = 1).
        let r = height_for_age(Sex::Female, 12.0, 74.0049, WHO).unwrap();
        assert_eq!(r.reference, "WHO 2006 length/height-for-age (0–5 y)");
        assert_eq!((r.m, r.s), (74.0049, 0.03479));
        assert!(close(r.lms_age_months, 365.0 / 30.4375, 1e-12));
        assert!(!r.interpolated);
        assert_eq!(r.measure, RECUMBENT_LENGTH);
        assert!(close(r.z, 0.0, 1e-12));
        // birth, boys: M = 49.8842, S = 0.03795; +2 SD = 49.8842 × 1.0759 = 53.67041
        let r = height_for_age(Sex::Male, 0.0, 53.67041, WHO).unwrap();
        assert!(close(r.z, 2.0, 1e-5), "{}", r.z);
        // 24 months = 730.5 days → rounds up to day 731, standing height.
        let r = height_for_age(Sex::Male, 24.0, 87.1303, WHO).unwrap();
        assert_eq!(r.measure, STANDING_HEIGHT);
        assert_eq!(r.m, 87.1303);
        // 23.99 months = 730.2 days → day 730, still recumbent length (M = 87.8018).
        let r = height_for_age(Sex::Male, 23.99, 87.8018, WHO).unwrap();
        assert_eq!(r.measure, RECUMBENT_LENGTH);
        assert!(close(r.z, 0.0, 1e-12));
        // 60 months = 1826.25 days → day 1826 (boys M = 109.9593)
        let r = height_for_age(Sex::Male, 60.0, 109.9593, WHO).unwrap();
        assert_eq!(r.reference, WHO2006_REFERENCE);
        assert!(close(r.z, 0.0, 1e-12));
    }

    #[test]
    fn who_between_day_1826_and_61_months() {
        // 60.5 months = 1841.5 days: past the 2006 table; WHO 2007 between its 60- and
        // 61-month rows (boys M 109.7265 → 110.2647): M = 109.9956.
        let r = height_for_age(Sex::Male, 60.5, 109.9956, WHO).unwrap();
        assert_eq!(r.reference, WHO2007_REFERENCE);
        assert!(r.interpolated);
        assert!(close(r.m, 109.9956, 1e-9));
        assert!(close(r.z, 0.0, 1e-9));
        // 61 months exactly: the 61-month row
        let r = height_for_age(Sex::Male, 61.0, 110.2647, WHO).unwrap();
        assert!(!r.interpolated);
        assert_eq!(r.lms_age_months, 61.0);
    }

    #[test]
    fn who_range_ends() {
        let r = height_for_age(Sex::Female, 228.0, 163.1548, WHO).unwrap();
        assert!(!r.interpolated);
        assert!(close(r.z, 0.0, 1e-12));
        let e = height_for_age(Sex::Female, 228.5, 160.0, WHO).unwrap_err();
        assert!(e.reason.contains("ends at 228 months"), "{}", e.reason);
        assert_eq!(height_at(Sex::Male, 229.0, 0.0, WHO), None);
        assert!(height_for_age(Sex::Male, -1.0, 50.0, WHO).is_err());
        assert!(height_for_age(Sex::Male, f64::NAN, 50.0, WHO).is_err());
        let e = height_for_age(Sex::Male, 120.0, 0.0, WHO).unwrap_err();
        assert!(e.reason.contains("not a valid height"));
        assert!(height_for_age(Sex::Male, 120.0, f64::INFINITY, WHO).is_err());
    }

    #[test]
    fn cdc_stature_with_l_not_one() {
        // CDC 2000 stature, boys, row 120.5 (ages 120 to < 121 months):
        // L = 0.505564115, M = 138.8234114, S = 0.047610108. Height 130 cm:
        // (130/M)^L = exp(0.505564115 × ln 0.9364415) = exp(0.505564115 × −0.0656683)
        //           = exp(−0.0331995) = 0.9673455
        // z = (0.9673455 − 1)/(L·S) = −0.0326545/0.0240700 = −1.356648
        let r = height_for_age(Sex::Male, 120.0, 130.0, CDC).unwrap();
        assert_eq!(r.reference, "CDC 2000 stature-for-age (2–20 y)");
        assert_eq!(r.lms_age_months, 120.5);
        assert_eq!((r.l, r.m, r.s), (0.505564115, 138.8234114, 0.047610108));
        assert!(!r.interpolated);
        assert_eq!(r.measure, STANDING_HEIGHT);
        assert!(close(r.z, -1.356648, 1e-6), "{}", r.z);
        // the same row for any age in [120, 121)
        let r2 = height_for_age(Sex::Male, 120.99, 130.0, CDC).unwrap();
        assert_eq!(r2.lms_age_months, 120.5);
        assert_eq!(r2.z, r.z);
        // 121 months: row 121.5
        assert_eq!(
            height_for_age(Sex::Male, 121.0, 130.0, CDC)
                .unwrap()
                .lms_age_months,
            121.5
        );
        // the median gives z = 0; M·(1 + L·S·2)^(1/L) gives z = 2
        let m = 138.8234114;
        assert!(close(
            height_for_age(Sex::Male, 120.2, m, CDC).unwrap().z,
            0.0,
            1e-12
        ));
        let x2 = m * (1.0_f64 + 0.505564115 * 0.047610108 * 2.0).powf(1.0 / 0.505564115);
        assert!(close(
            height_for_age(Sex::Male, 120.2, x2, CDC).unwrap().z,
            2.0,
            1e-9
        ));
    }

    #[test]
    fn cdc_row_choice_at_boundaries() {
        // birth → row 0; (0, 1) → row 0.5; 23.9 → 23.5, all recumbent length
        let at = |age: f64| height_for_age(Sex::Female, age, 60.0, CDC).unwrap();
        assert_eq!(at(0.0).lms_age_months, 0.0);
        assert_eq!(at(0.0).reference, CDC_LENGTH_REFERENCE);
        assert_eq!(at(0.0).measure, RECUMBENT_LENGTH);
        assert_eq!(at(0.2).lms_age_months, 0.5);
        assert_eq!(at(1.0).lms_age_months, 1.5);
        assert_eq!(at(23.9).lms_age_months, 23.5);
        assert_eq!(at(23.9).reference, CDC_LENGTH_REFERENCE);
        // from 24 months the stature table: 24 → row 24; 24.3 → 24.5; 240 → 240
        assert_eq!(at(24.0).lms_age_months, 24.0);
        assert_eq!(at(24.0).reference, CDC_STATURE_REFERENCE);
        assert_eq!(at(24.0).measure, STANDING_HEIGHT);
        assert_eq!(at(24.3).lms_age_months, 24.5);
        assert_eq!(at(239.9).lms_age_months, 239.5);
        assert_eq!(at(240.0).lms_age_months, 240.0);
        let e = height_for_age(Sex::Female, 240.1, 160.0, CDC).unwrap_err();
        assert!(e.reason.contains("ends at 240 months"), "{}", e.reason);
        // girls at birth, L = −1.295960857: hand-computed in lms.rs, z(52 cm) = 1.033764
        let r = height_for_age(Sex::Female, 0.0, 52.0, CDC).unwrap();
        assert!(close(r.z, 1.033764, 1e-6), "{}", r.z);
    }

    #[test]
    fn height_at_inverts_height_for_age() {
        for reference in [WHO, CDC] {
            for sex in [Sex::Male, Sex::Female] {
                for age in [0.0, 3.3, 12.0, 30.0, 60.0, 60.5, 97.25, 150.0, 228.0] {
                    for z in [-2.5, -1.0, 0.0, 1.880794] {
                        let h = height_at(sex, age, z, reference).unwrap();
                        let back = height_for_age(sex, age, h, reference).unwrap();
                        assert!(close(back.z, z, 1e-9), "{reference:?} {age} {z}");
                    }
                }
            }
        }
    }

    #[test]
    fn curves_cover_the_reference_range() {
        let curves = percentile_curves(Sex::Male, WHO);
        assert_eq!(curves.len(), 7);
        let ps: Vec<f64> = curves.iter().map(|c| c.percentile).collect();
        assert_eq!(ps, vec![3.0, 10.0, 25.0, 50.0, 75.0, 90.0, 97.0]);
        for c in &curves {
            assert_eq!(c.points.len(), 229);
            assert_eq!(c.points[0].age_months, 0.0);
            assert_eq!(c.points[228].age_months, 228.0);
        }
        let p50 = &curves[3];
        assert!(close(p50.z, 0.0, 1e-12));
        // the median at 120 months is M; the 97th at 120 months is M(1 + 1.880794 S)
        assert!(close(p50.points[120].height_cm, 137.7795, 1e-9));
        let p97 = &curves[6];
        assert!(close(p97.z, 1.880794, 1e-6));
        assert!(close(
            p97.points[120].height_cm,
            137.7795 * (1.0 + p97.z * 0.04626),
            1e-9
        ));
        // the curves are ordered at every age
        for k in 0..229 {
            for w in curves.windows(2) {
                assert!(w[0].points[k].height_cm < w[1].points[k].height_cm);
            }
        }
        let cdc = percentile_curves(Sex::Female, CDC);
        assert_eq!(cdc.len(), 7);
        for c in &cdc {
            assert_eq!(c.points.len(), 241);
        }
        // CDC median at 24 months is the stature table's row 24: M = 84.97555512
        assert!(close(cdc[3].points[24].height_cm, 84.97555512, 1e-9));
    }
}
