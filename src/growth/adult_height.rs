//! Predicted adult height: Bayley–Pinneau (1952), Roche–Wainer–Thissen (1975) and
//! Tanner et al. (1975), each where its inputs are given.
//!
//! [`predict_adult_height`] runs every method and puts each either in
//! `predictions` (with its inputs, the table row used, its stated error when the
//! source states one, and caveats) or in `unavailable` with the precise reason: the
//! missing input, or the table range the input falls outside. The tables are the
//! published ones, embedded verbatim from `tables/` (see `tables/README.md`).
//!
//! - **Bayley–Pinneau 1952**: adult height = height / (% of mature height / 100).
//!   The bone age is read as a Greulich–Pyle skeletal age (the model is trained on
//!   Greulich–Pyle readings). The table is chosen by skeletal age (SA) against
//!   chronological age (CA), reading the paper's table titles as: *average* when SA
//!   is within one year of CA (|SA − CA| < 12 months), *accelerated* when SA is one
//!   year or more ahead (SA − CA ≥ 12 months), *retarded* when one year or more
//!   behind (CA − SA ≥ 12 months). The row is the printed skeletal age nearest to
//!   the bone age (ties to the lower row; rows are 3 months apart, and a few girls'
//!   rows are printed at 10 months of the year, e.g. `6-10`). A bone age up to half
//!   a step (1.5 months) beyond the first or last printed row is read at that row;
//!   further out the method is unavailable (e.g. retarded boys are printed only from
//!   6-0 to 13-0).
//! - **Roche–Wainer–Thissen 1975**: adult stature = β_RL·RL + β_W·W + β_MPS·MPS +
//!   β_SA·SA + β_0 with recumbent length RL (cm), weight W (kg), mid-parent stature
//!   MPS (cm, mean of both parents), Greulich–Pyle skeletal age SA (years); the
//!   coefficients are those of the quarter-year row nearest the chronological age
//!   (ties to the lower row; up to 1.5 months beyond the first/last row read at that
//!   row; boys 1-0 to 16-0, girls 1-0 to 14-0).
//! - **Tanner et al. 1975** (TW Mark II): adult height = a·height + b·CA + c·RUS + d
//!   with the TW2 RUS bone age rated by a reader — never the model's Greulich–Pyle
//!   bone age, so it runs only when `tw2_rus_bone_age_months` is given. The
//!   equations by chronological age (Tables V–VI) are used: the equation is then
//!   selected by an age, not by the rated bone age, and the rated RUS age enters
//!   only as a covariate. The RUS-bone-age-banded equations (Tables VIII–IX) are
//!   embedded for reference but not used. Each equation covers a half-year band
//!   of chronological age starting at its printed age (the first band, printed
//!   `4, 5, 6, 7+` for boys and `4, 5+` for girls, runs to the next printed age;
//!   the last band is half a year like the others). Girls aged 11.0–14.9 need
//!   their menarche status: the paper gives separate equations. The stated error
//!   is the equation's residual SD.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::ToSchema;

use crate::Sex;

/// All adult-height predictions for one exam, and the methods that could not run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdultHeight {
    pub predictions: Vec<AdultHeightPrediction>,
    /// Methods not applied, each with the reason (missing input, outside the table…).
    pub unavailable: Vec<MethodUnavailable>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdultHeightPrediction {
    /// `bayley_pinneau`, `roche_wainer_thissen` or `tanner_1975`.
    pub method: &'static str,
    pub predicted_cm: f64,
    /// The inputs used, by name (e.g. `height_cm`, `bone_age_years`), as numbers.
    pub inputs: Vec<NamedValue>,
    /// The table row / coefficient set used, as printed in the source (e.g.
    /// `average, 11-6` for Bayley–Pinneau).
    pub table: String,
    /// The method's stated error, when its source states one (e.g. the residual SD).
    pub stated_error: Option<StatedError>,
    /// Caveats a clinician must know (e.g. height used in place of recumbent length).
    pub notes: Vec<String>,
    pub citation: &'static str,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamedValue {
    pub name: &'static str,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatedError {
    /// e.g. `residual_sd_cm`.
    pub kind: &'static str,
    pub value_cm: f64,
    pub source: &'static str,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MethodUnavailable {
    pub method: &'static str,
    pub reason: String,
}

/// What the adult-height methods may use. Every field but `sex` is optional; each
/// method says which of them it needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdultHeightInput {
    pub sex: Sex,
    pub chronological_age_months: Option<f64>,
    /// The (Greulich–Pyle) bone age, months.
    pub bone_age_months: Option<f64>,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    pub mother_height_cm: Option<f64>,
    pub father_height_cm: Option<f64>,
    /// A TW2 RUS bone age rated by a reader (months), for Tanner et al. 1975.
    pub tw2_rus_bone_age_months: Option<f64>,
    /// Whether a girl has had her menarche (Tanner et al. 1975, girls 11–14.9 y).
    pub menarche: Option<bool>,
}

/// [`AdultHeightPrediction::method`] values.
pub const BAYLEY_PINNEAU: &str = "bayley_pinneau";
pub const ROCHE_WAINER_THISSEN: &str = "roche_wainer_thissen";
pub const TANNER_1975: &str = "tanner_1975";

/// [`AdultHeightPrediction::citation`] values.
pub const BAYLEY_PINNEAU_CITATION: &str = "Bayley N, Pinneau SR. J Pediatr 1952;40:423–441";
pub const RWT_CITATION: &str = "Roche AF, Wainer H, Thissen D. Pediatrics 1975;56:1026–1033";
pub const TANNER_CITATION: &str =
    "Tanner JM, Whitehouse RH, Marshall WA, Carter BS. Arch Dis Child 1975;50:14–26";

/// Half the 3-month step of the Bayley–Pinneau and RWT tables: how far beyond the
/// first or last printed row an age is still read at that row.
const HALF_STEP_MONTHS: f64 = 1.5;

const BP_CSV: &str = include_str!("tables/bayley_pinneau_1952_pct_mature_height.csv");
const RWT_CSV: &str = include_str!("tables/rwt1975_adult_height_prediction_coefficients.csv");
const TANNER_CA_CSV: &str =
    include_str!("tables/tanner1975_height_prediction_by_chronological_age.csv");

/// Runs every method; each lands in `predictions` or in `unavailable` with its reason.
pub fn predict_adult_height(input: &AdultHeightInput) -> AdultHeight {
    let mut out = AdultHeight {
        predictions: Vec::new(),
        unavailable: Vec::new(),
    };
    for (method, result) in [
        (BAYLEY_PINNEAU, bayley_pinneau(input)),
        (ROCHE_WAINER_THISSEN, roche_wainer_thissen(input)),
        (TANNER_1975, tanner_1975(input)),
    ] {
        match result {
            Ok(p) => out.predictions.push(p),
            Err(reason) => out.unavailable.push(MethodUnavailable { method, reason }),
        }
    }
    out
}

/// Bayley–Pinneau 1952 (see the module documentation); `Err` is the reason it
/// cannot run.
pub fn bayley_pinneau(input: &AdultHeightInput) -> Result<AdultHeightPrediction, String> {
    let [height, ba, ca] = need(
        "Bayley–Pinneau",
        [
            ("height_cm", input.height_cm, Kind::Length),
            ("bone_age_months", input.bone_age_months, Kind::Age),
            (
                "chronological_age_months",
                input.chronological_age_months,
                Kind::Age,
            ),
        ],
    )?;
    let t = tables()?;
    let diff = ba - ca;
    let category = if diff >= 12.0 {
        BpCategory::Accelerated
    } else if diff <= -12.0 {
        BpCategory::Retarded
    } else {
        BpCategory::Average
    };
    let rows: Vec<&BpRow> = t
        .bayley_pinneau
        .iter()
        .filter(|r| r.sex == input.sex && r.category == category)
        .collect();
    let keys: Vec<f64> = rows.iter().map(|r| r.months).collect();
    let row = nearest_row(&keys, ba, HALF_STEP_MONTHS)
        .and_then(|i| rows.get(i))
        .ok_or_else(|| {
            let (first, last) = (rows.first().map(|r| r.label.as_str()), rows.last());
            format!(
                "bone age {} is outside the Bayley–Pinneau {} table for {} ({} to {})",
                years_months(ba),
                category.name(),
                sex_plural(input.sex),
                first.unwrap_or("?"),
                last.map(|r| r.label.as_str()).unwrap_or("?"),
            )
        })?;
    let predicted = height / (row.pct / 100.0);
    let why = match category {
        BpCategory::Average => "within 1 year of",
        BpCategory::Accelerated => "1 year or more ahead of",
        BpCategory::Retarded => "1 year or more behind",
    };
    Ok(AdultHeightPrediction {
        method: BAYLEY_PINNEAU,
        predicted_cm: predicted,
        inputs: vec![
            nv("height_cm", height),
            nv("bone_age_years", ba / 12.0),
            nv("chronological_age_years", ca / 12.0),
            nv("table_skeletal_age_years", row.months / 12.0),
            nv("pct_mature_height", row.pct),
        ],
        table: format!("{}, {}", category.name(), row.label),
        stated_error: None,
        notes: vec![
            format!(
                "{} table (Table {}): the bone age is {why} the chronological age \
                 ({:+.1} months).",
                category.name(),
                row.source_table,
                diff
            ),
            format!(
                "Row {} is the printed skeletal age nearest to the bone age, {}; \
                 {}% of mature height.",
                row.label,
                years_months(ba),
                row.pct
            ),
            "The bone age is read as a Greulich–Pyle skeletal age (the model is trained on \
             Greulich–Pyle readings)."
                .to_string(),
            "The 1952 tables state no error of prediction; none is reported.".to_string(),
        ],
        citation: BAYLEY_PINNEAU_CITATION,
    })
}

/// Roche–Wainer–Thissen 1975 (see the module documentation); `Err` is the reason
/// it cannot run.
pub fn roche_wainer_thissen(input: &AdultHeightInput) -> Result<AdultHeightPrediction, String> {
    let [rl, w, mother, father, sa, ca] = need(
        "Roche–Wainer–Thissen",
        [
            ("height_cm", input.height_cm, Kind::Length),
            ("weight_kg", input.weight_kg, Kind::Weight),
            ("mother_height_cm", input.mother_height_cm, Kind::Length),
            ("father_height_cm", input.father_height_cm, Kind::Length),
            ("bone_age_months", input.bone_age_months, Kind::Age),
            (
                "chronological_age_months",
                input.chronological_age_months,
                Kind::Age,
            ),
        ],
    )?;
    let t = tables()?;
    let rows: Vec<&RwtRow> = t.rwt.iter().filter(|r| r.sex == input.sex).collect();
    let keys: Vec<f64> = rows.iter().map(|r| r.months).collect();
    let row = nearest_row(&keys, ca, HALF_STEP_MONTHS)
        .and_then(|i| rows.get(i))
        .ok_or_else(|| {
            format!(
                "chronological age {} is outside the Roche–Wainer–Thissen table for {} \
                 ({} to {})",
                years_months(ca),
                sex_plural(input.sex),
                rows.first().map(|r| r.label.as_str()).unwrap_or("?"),
                rows.last().map(|r| r.label.as_str()).unwrap_or("?"),
            )
        })?;
    let mps = (mother + father) / 2.0;
    let sa_years = sa / 12.0;
    let predicted = row.beta_rl * rl
        + row.beta_w * w
        + row.beta_mps * mps
        + row.beta_sa * sa_years
        + row.beta_0;
    Ok(AdultHeightPrediction {
        method: ROCHE_WAINER_THISSEN,
        predicted_cm: predicted,
        inputs: vec![
            nv("recumbent_length_cm", rl),
            nv("weight_kg", w),
            nv("mid_parent_stature_cm", mps),
            nv("skeletal_age_years", sa_years),
            nv("chronological_age_years", ca / 12.0),
            nv("table_age_years", row.months / 12.0),
        ],
        table: format!("{}, {}", row.source_table, row.label),
        stated_error: None,
        notes: vec![
            format!(
                "Coefficients of the {} row, the quarter-year age nearest to the \
                 chronological age ({}).",
                row.label,
                years_months(ca)
            ),
            "The method uses recumbent length; the height given was used in its place, \
             without correction."
                .to_string(),
            "The method's skeletal age is the median of the Greulich–Pyle bone-specific \
             skeletal ages; the model's overall Greulich–Pyle bone age was used in its place."
                .to_string(),
            "Mid-parent stature is the mean of the mother's and the father's heights.".to_string(),
            "No error of prediction for this method is in the project's reference tables; \
             none is reported."
                .to_string(),
        ],
        citation: RWT_CITATION,
    })
}

/// Tanner et al. 1975 (see the module documentation); `Err` is the reason it
/// cannot run.
pub fn tanner_1975(input: &AdultHeightInput) -> Result<AdultHeightPrediction, String> {
    if input.tw2_rus_bone_age_months.is_none() {
        return Err(
            "Tanner et al. 1975 needs a TW2 RUS bone age rated by a reader \
                    (tw2_rus_bone_age_months); this service's TW3 stages are not expert \
                    ratings, and the Greulich–Pyle bone age is a different scale"
                .to_string(),
        );
    }
    let [height, ca, rus] = need(
        "Tanner et al. 1975",
        [
            ("height_cm", input.height_cm, Kind::Length),
            (
                "chronological_age_months",
                input.chronological_age_months,
                Kind::Age,
            ),
            (
                "tw2_rus_bone_age_months",
                input.tw2_rus_bone_age_months,
                Kind::Age,
            ),
        ],
    )?;
    let t = tables()?;
    let ca_years = ca / 12.0;
    let rows: Vec<&TannerRow> = t.tanner.iter().filter(|r| r.sex == input.sex).collect();
    let mut starts: Vec<f64> = rows.iter().map(|r| r.start_years).collect();
    starts.dedup();
    let (first, last) = match (starts.first(), starts.last()) {
        (Some(&f), Some(&l)) => (f, l + 0.5),
        _ => return Err("the Tanner et al. 1975 table has no rows".to_string()),
    };
    if ca_years < first || ca_years >= last {
        return Err(format!(
            "chronological age {ca_years:.2} years is outside the Tanner et al. 1975 \
             equations for {} ({first:.1} to under {last:.1} years)",
            sex_plural(input.sex)
        ));
    }
    // The band: the greatest printed start at or below the age.
    let start = starts
        .iter()
        .copied()
        .filter(|&s| s <= ca_years)
        .fold(first, f64::max);
    let band: Vec<&TannerRow> = rows
        .iter()
        .copied()
        .filter(|r| r.start_years == start)
        .collect();
    let row = match band.as_slice() {
        [only] => *only,
        _ => {
            let wanted = match input.menarche {
                Some(true) => Menarche::Post,
                Some(false) => Menarche::Pre,
                None => {
                    return Err(format!(
                        "Tanner et al. 1975 gives separate equations for pre- and \
                         postmenarcheal girls at {ca_years:.2} years; the menarche status \
                         is needed"
                    ))
                }
            };
            band.iter()
                .copied()
                .find(|r| r.menarche == wanted)
                .ok_or_else(|| {
                    format!("the Tanner et al. 1975 table has no equation for {ca_years:.2} years")
                })?
        }
    };
    let rus_years = rus / 12.0;
    let predicted =
        row.coef_height * height + row.coef_ca * ca_years + row.coef_rus * rus_years + row.constant;
    let status = match row.menarche {
        Menarche::Pre => "premenarcheal, ",
        Menarche::Post => "postmenarcheal, ",
        Menarche::NotSplit | Menarche::All => "",
    };
    Ok(AdultHeightPrediction {
        method: TANNER_1975,
        predicted_cm: predicted,
        inputs: vec![
            nv("height_cm", height),
            nv("chronological_age_years", ca_years),
            nv("tw2_rus_bone_age_years", rus_years),
        ],
        table: format!("{}, {status}{}", sex_plural(input.sex), row.label),
        stated_error: Some(StatedError {
            kind: "residual_sd_cm",
            value_cm: row.residual_sd,
            source: "Tanner et al. 1975, Tables V–VI (residual SD of the equation)",
        }),
        notes: vec![
            format!(
                "Equation for chronological age {}: adult height = {} × height {:+} × age \
                 {:+} × RUS age {:+} cm (height in cm, ages in years); r = {}.",
                row.label, row.coef_height, row.coef_ca, row.coef_rus, row.constant, row.r
            ),
            "Uses the TW2 RUS bone age as rated by a reader (TW Mark II equations), not the \
             model's bone age."
                .to_string(),
        ],
        citation: TANNER_CITATION,
    })
}

/// What an input is, for its validity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An age: finite, ≥ 0.
    Age,
    /// A length (cm) or weight (kg): finite, > 0.
    Length,
    Weight,
}

/// The values of the named inputs, or the reason naming every missing or invalid one.
fn need<const N: usize>(
    method: &str,
    inputs: [(&'static str, Option<f64>, Kind); N],
) -> Result<[f64; N], String> {
    let mut out = [0.0; N];
    let mut missing = Vec::new();
    let mut invalid = Vec::new();
    for (slot, (name, value, kind)) in out.iter_mut().zip(inputs) {
        match value {
            None => missing.push(name),
            Some(v) => {
                let ok = v.is_finite()
                    && match kind {
                        Kind::Age => v >= 0.0,
                        Kind::Length | Kind::Weight => v > 0.0,
                    };
                if ok {
                    *slot = v;
                } else {
                    invalid.push(format!("{name} = {v}"));
                }
            }
        }
    }
    let mut reasons = Vec::new();
    if !missing.is_empty() {
        reasons.push(format!("missing {}", missing.join(", ")));
    }
    if !invalid.is_empty() {
        reasons.push(format!("not a valid value: {}", invalid.join(", ")));
    }
    if reasons.is_empty() {
        Ok(out)
    } else {
        Err(format!("{method} needs {}", reasons.join("; ")))
    }
}

/// Index of the key nearest `x` in ascending `keys`, ties to the lower one; `None`
/// when `x` lies more than `tolerance` beyond the first or last key.
fn nearest_row(keys: &[f64], x: f64, tolerance: f64) -> Option<usize> {
    let (&first, &last) = (keys.first()?, keys.last()?);
    if !x.is_finite() || x < first - tolerance || x > last + tolerance {
        return None;
    }
    let i = keys.partition_point(|&k| k < x);
    if i == 0 {
        return Some(0);
    }
    if i == keys.len() {
        return Some(keys.len() - 1);
    }
    if x - keys[i - 1] <= keys[i] - x {
        Some(i - 1)
    } else {
        Some(i)
    }
}

fn nv(name: &'static str, value: f64) -> NamedValue {
    NamedValue { name, value }
}

fn sex_plural(sex: Sex) -> &'static str {
    match sex {
        Sex::Male => "boys",
        Sex::Female => "girls",
    }
}

/// `138.0` months → `138.0 months (11 y 6 mo)`.
fn years_months(months: f64) -> String {
    let whole = months.floor();
    format!(
        "{months:.1} months ({} y {} mo)",
        (whole / 12.0).floor(),
        whole % 12.0
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BpCategory {
    Average,
    Accelerated,
    Retarded,
}

impl BpCategory {
    fn name(self) -> &'static str {
        match self {
            BpCategory::Average => "average",
            BpCategory::Accelerated => "accelerated",
            BpCategory::Retarded => "retarded",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct BpRow {
    sex: Sex,
    category: BpCategory,
    source_table: String,
    /// As printed, e.g. `11-6`.
    label: String,
    /// Skeletal age of the row in months, from the label.
    months: f64,
    pct: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct RwtRow {
    sex: Sex,
    /// `years-months`, e.g. `11-0`.
    label: String,
    months: f64,
    beta_rl: f64,
    beta_w: f64,
    beta_mps: f64,
    beta_sa: f64,
    beta_0: f64,
    source_table: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Menarche {
    /// Below 11 years, and boys: one equation.
    NotSplit,
    Pre,
    Post,
    /// Girls from 15 years: one equation for all.
    All,
}

#[derive(Debug, Clone, PartialEq)]
struct TannerRow {
    sex: Sex,
    menarche: Menarche,
    start_years: f64,
    label: String,
    coef_height: f64,
    coef_ca: f64,
    coef_rus: f64,
    constant: f64,
    residual_sd: f64,
    r: f64,
}

struct Tables {
    bayley_pinneau: Vec<BpRow>,
    rwt: Vec<RwtRow>,
    tanner: Vec<TannerRow>,
}

/// The parsed tables. A malformed embedded table (a build defect, caught by the unit
/// tests) makes every method unavailable with the reason instead of panicking.
fn tables() -> Result<&'static Tables, String> {
    static TABLES: OnceLock<Result<Tables, String>> = OnceLock::new();
    match TABLES.get_or_init(parse_tables) {
        Ok(t) => Ok(t),
        Err(e) => Err(format!("the embedded adult-height tables are invalid: {e}")),
    }
}

fn parse_tables() -> Result<Tables, String> {
    let mut bayley_pinneau = Vec::new();
    for f in records(
        BP_CSV,
        "bayley_pinneau_1952_pct_mature_height.csv",
        "sex,category,source_table,skeletal_age_label,skeletal_age_years,pct_mature_height",
    )? {
        let months = label_months(&f[3])?;
        let years = num(&f[4])?;
        if (months / 12.0 - years).abs() > 1e-3 {
            return Err(format!("Bayley–Pinneau: label {} ≠ {} years", f[3], f[4]));
        }
        let category = match f[1].as_str() {
            "average" => BpCategory::Average,
            "accelerated" => BpCategory::Accelerated,
            "retarded" => BpCategory::Retarded,
            other => return Err(format!("Bayley–Pinneau: category {other:?}")),
        };
        let pct = num(&f[5])?;
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(format!("Bayley–Pinneau: percentage {pct}"));
        }
        bayley_pinneau.push(BpRow {
            sex: sex(&f[0])?,
            category,
            source_table: f[2].clone(),
            label: f[3].clone(),
            months,
            pct,
        });
    }
    for sx in [Sex::Male, Sex::Female] {
        for c in [
            BpCategory::Average,
            BpCategory::Accelerated,
            BpCategory::Retarded,
        ] {
            let m: Vec<f64> = bayley_pinneau
                .iter()
                .filter(|r| r.sex == sx && r.category == c)
                .map(|r| r.months)
                .collect();
            if m.is_empty() || !m.windows(2).all(|w| w[0] < w[1]) {
                return Err(format!(
                    "Bayley–Pinneau {sx:?} {c:?}: rows missing or unordered"
                ));
            }
        }
    }

    let mut rwt = Vec::new();
    for f in records(
        RWT_CSV,
        "rwt1975_adult_height_prediction_coefficients.csv",
        "sex,age_years,age_months,chronological_age_years,beta_rl,beta_w,beta_mps,beta_sa,\
         beta_0,source_table,source_page",
    )? {
        let months = num(&f[1])? * 12.0 + num(&f[2])?;
        if (months / 12.0 - num(&f[3])?).abs() > 1e-3 {
            return Err(format!("RWT: age {}-{} ≠ {} years", f[1], f[2], f[3]));
        }
        rwt.push(RwtRow {
            sex: sex(&f[0])?,
            label: format!("{}-{}", f[1], f[2]),
            months,
            beta_rl: num(&f[4])?,
            beta_w: num(&f[5])?,
            beta_mps: num(&f[6])?,
            beta_sa: num(&f[7])?,
            beta_0: num(&f[8])?,
            source_table: f[9].clone(),
        });
    }
    for sx in [Sex::Male, Sex::Female] {
        let m: Vec<f64> = rwt
            .iter()
            .filter(|r| r.sex == sx)
            .map(|r| r.months)
            .collect();
        if m.is_empty() || !m.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("RWT {sx:?}: rows missing or unordered"));
        }
    }

    let mut tanner = Vec::new();
    for f in records(
        TANNER_CA_CSV,
        "tanner1975_height_prediction_by_chronological_age.csv",
        "sex,menarche_status,age_band_start_years,age_label,coef_height_cm,\
         coef_chronological_age_yr,coef_rus_bone_age_yr,constant_cm,residual_sd_cm,r",
    )? {
        let menarche = match f[1].as_str() {
            "" => Menarche::NotSplit,
            "premenarcheal" => Menarche::Pre,
            "postmenarcheal" => Menarche::Post,
            "all" => Menarche::All,
            other => return Err(format!("Tanner: menarche status {other:?}")),
        };
        tanner.push(TannerRow {
            sex: sex(&f[0])?,
            menarche,
            start_years: num(&f[2])?,
            label: f[3].clone(),
            coef_height: num(&f[4])?,
            coef_ca: num(&f[5])?,
            coef_rus: num(&f[6])?,
            constant: num(&f[7])?,
            residual_sd: num(&f[8])?,
            r: num(&f[9])?,
        });
    }
    // Rows of one sex, sorted by band start (the file lists the premenarcheal
    // series before the postmenarcheal one; the sort is stable).
    tanner.sort_by(|a, b| {
        sex_order(a.sex)
            .cmp(&sex_order(b.sex))
            .then(a.start_years.total_cmp(&b.start_years))
    });
    // Each band has one equation, or exactly a premenarcheal and a postmenarcheal one.
    for sx in [Sex::Male, Sex::Female] {
        let rows: Vec<&TannerRow> = tanner.iter().filter(|r| r.sex == sx).collect();
        if rows.is_empty() {
            return Err(format!("Tanner {sx:?}: no rows"));
        }
        for band in rows.chunk_by(|a, b| a.start_years == b.start_years) {
            let ok = match band {
                [one] => matches!(one.menarche, Menarche::NotSplit | Menarche::All),
                [a, b] => a.menarche == Menarche::Pre && b.menarche == Menarche::Post,
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "Tanner {sx:?}: band {} is neither one equation nor a pre/post pair",
                    band[0].start_years
                ));
            }
        }
    }
    Ok(Tables {
        bayley_pinneau,
        rwt,
        tanner,
    })
}

fn sex_order(sex: Sex) -> u8 {
    match sex {
        Sex::Male => 0,
        Sex::Female => 1,
    }
}

/// The records of an embedded CSV as strings, after checking the header.
fn records(text: &str, file: &str, header: &str) -> Result<Vec<Vec<String>>, String> {
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
    reader
        .records()
        .map(|r| {
            r.map(|rec| rec.iter().map(str::to_string).collect())
                .map_err(|e| format!("{file}: {e}"))
        })
        .collect()
}

fn num(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("not a number: {s:?}"))
}

fn sex(s: &str) -> Result<Sex, String> {
    match s {
        "male" => Ok(Sex::Male),
        "female" => Ok(Sex::Female),
        other => Err(format!("unknown sex {other:?}")),
    }
}

/// `11-6` → 138 months.
fn label_months(label: &str) -> Result<f64, String> {
    let (y, m) = label
        .split_once('-')
        .ok_or_else(|| format!("bad age label {label:?}"))?;
    let y: u32 = y.parse().map_err(|_| format!("bad age label {label:?}"))?;
    let m: u32 = m.parse().map_err(|_| format!("bad age label {label:?}"))?;
    if m >= 12 {
        return Err(format!("bad age label {label:?}"));
    }
    Ok(f64::from(y * 12 + m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn input(sex: Sex) -> AdultHeightInput {
        AdultHeightInput {
            sex,
            chronological_age_months: None,
            bone_age_months: None,
            height_cm: None,
            weight_kg: None,
            mother_height_cm: None,
            father_height_cm: None,
            tw2_rus_bone_age_months: None,
            menarche: None,
        }
    }

    fn bp(sex: Sex, ca: f64, ba: f64, height: f64) -> Result<AdultHeightPrediction, String> {
        bayley_pinneau(&AdultHeightInput {
            chronological_age_months: Some(ca),
            bone_age_months: Some(ba),
            height_cm: Some(height),
            ..input(sex)
        })
    }

    fn value(p: &AdultHeightPrediction, name: &str) -> f64 {
        p.inputs
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value)
            .unwrap()
    }

    #[test]
    fn tables_parse() {
        let t = parse_tables().unwrap();
        assert_eq!(t.bayley_pinneau.len(), 251);
        assert_eq!(t.rwt.len(), 114);
        assert_eq!(t.tanner.len(), 50);
        assert!(tables().is_ok());
        assert_eq!(label_months("6-10").unwrap(), 82.0);
        assert!(label_months("6-12").is_err());
    }

    #[test]
    fn bayley_pinneau_average_boy() {
        // Boy, CA 11-0 (132 mo), BA 11-6 (138 mo): 6 months ahead → average (Table IIA).
        // Row 11-6: 81.8 % → 145 / 0.818 = 177.2616 cm.
        let p = bp(Sex::Male, 132.0, 138.0, 145.0).unwrap();
        assert_eq!(p.method, "bayley_pinneau");
        assert_eq!(p.table, "average, 11-6");
        assert!(close(p.predicted_cm, 177.2616, 1e-4), "{}", p.predicted_cm);
        assert_eq!(value(&p, "pct_mature_height"), 81.8);
        assert_eq!(value(&p, "bone_age_years"), 11.5);
        assert_eq!(value(&p, "chronological_age_years"), 11.0);
        assert!(p.stated_error.is_none());
        assert!(p.notes.iter().any(|n| n.contains("state no error")));
        assert_eq!(
            p.notes[0],
            "average table (Table IIA): the bone age is within 1 year of the chronological \
             age (+6.0 months)."
        );
        assert_eq!(
            p.notes[1],
            "Row 11-6 is the printed skeletal age nearest to the bone age, 138.0 months \
             (11 y 6 mo); 81.8% of mature height."
        );
        assert_eq!(
            p.citation,
            "Bayley N, Pinneau SR. J Pediatr 1952;40:423–441"
        );
    }

    #[test]
    fn bayley_pinneau_category_boundaries() {
        // Exactly 12 months ahead → accelerated. Boy CA 120, BA 132 (11-0):
        // Table IIC 11-0 = 76.7 % → 140 / 0.767 = 182.5293 cm.
        let p = bp(Sex::Male, 120.0, 132.0, 140.0).unwrap();
        assert_eq!(p.table, "accelerated, 11-0");
        assert!(close(p.predicted_cm, 182.5293, 1e-4));
        // 11.9 months ahead → average (IIA 11-0 = 80.4 %)
        let p = bp(Sex::Male, 120.1, 132.0, 140.0).unwrap();
        assert_eq!(p.table, "average, 11-0");
        // Exactly 12 months behind → retarded. Boy CA 132, BA 120 (10-0):
        // Table IIE 10-0 = 81.2 % → 130 / 0.812 = 160.0985 cm.
        let p = bp(Sex::Male, 132.0, 120.0, 130.0).unwrap();
        assert_eq!(p.table, "retarded, 10-0");
        assert!(close(p.predicted_cm, 160.0985, 1e-4));
        // Girl CA 120, BA 136 (11-4) → accelerated; nearest row 11-3 (135 mo, 1 month
        // away; 11-6 is 2 away): Table IIIC 11-3 = 88.7 % → 140 / 0.887 = 157.8354 cm.
        let p = bp(Sex::Female, 120.0, 136.0, 140.0).unwrap();
        assert_eq!(p.table, "accelerated, 11-3");
        assert!(close(p.predicted_cm, 157.8354, 1e-4));
    }

    #[test]
    fn bayley_pinneau_row_choice() {
        // Tie between 11-6 (138) and 11-9 (141) at 139.5 → the lower row.
        let p = bp(Sex::Male, 139.5, 139.5, 145.0).unwrap();
        assert_eq!(p.table, "average, 11-6");
        // 139.6 → 11-9 (82.7 %)
        let p = bp(Sex::Male, 139.6, 139.6, 145.0).unwrap();
        assert_eq!(p.table, "average, 11-9");
        // Girls' rows printed at 6-10: BA 82 → row 6-10 (75.1 %): 100 / 0.751 = 133.1558.
        let p = bp(Sex::Female, 82.0, 82.0, 100.0).unwrap();
        assert_eq!(p.table, "average, 6-10");
        assert!(close(p.predicted_cm, 133.1558, 1e-4));
        // BA 80 is 2 months from 6-6 and from 6-10 → the lower, 6-6 (73.8 %).
        let p = bp(Sex::Female, 80.0, 80.0, 100.0).unwrap();
        assert_eq!(p.table, "average, 6-6");
        assert!(close(p.predicted_cm, 100.0 / 0.738, 1e-9));
        // Mature: girls average 18-0 = 100 % → the height itself.
        let p = bp(Sex::Female, 216.0, 216.0, 163.0).unwrap();
        assert_eq!(p.table, "average, 18-0");
        assert!(close(p.predicted_cm, 163.0, 1e-12));
    }

    #[test]
    fn bayley_pinneau_outside_the_tables() {
        // Retarded boys are printed 6-0 to 13-0 (72–156 months).
        // BA 157 (1 month past 13-0) → row 13-0 (88.0 %): 120 / 0.88 = 136.3636.
        let p = bp(Sex::Male, 180.0, 157.0, 120.0).unwrap();
        assert_eq!(p.table, "retarded, 13-0");
        assert!(close(p.predicted_cm, 136.3636, 1e-4));
        // BA 160 (13-4) is beyond half a step → unavailable, with the range.
        let e = bp(Sex::Male, 180.0, 160.0, 120.0).unwrap_err();
        assert!(
            e.contains("outside the Bayley–Pinneau retarded table for boys (6-0 to 13-0)"),
            "{e}"
        );
        assert!(
            e.starts_with("bone age 160.0 months (13 y 4 mo) is outside"),
            "{e}"
        );
        // Average boys start at 7-0: BA 5 y
        let e = bp(Sex::Male, 60.0, 60.0, 110.0).unwrap_err();
        assert!(e.contains("(7-0 to 18-6)"), "{e}");
    }

    #[test]
    fn bayley_pinneau_missing_inputs() {
        let e = bayley_pinneau(&AdultHeightInput {
            bone_age_months: Some(120.0),
            ..input(Sex::Male)
        })
        .unwrap_err();
        assert_eq!(
            e,
            "Bayley–Pinneau needs missing height_cm, chronological_age_months"
        );
        let e = bp(Sex::Male, 120.0, 120.0, -3.0).unwrap_err();
        assert!(e.contains("not a valid value: height_cm = -3"), "{e}");
        assert!(bp(Sex::Male, f64::NAN, 120.0, 140.0).is_err());
    }

    fn rwt_input(sex: Sex, ca: f64) -> AdultHeightInput {
        AdultHeightInput {
            chronological_age_months: Some(ca),
            bone_age_months: Some(141.0),
            height_cm: Some(146.0),
            weight_kg: Some(36.0),
            mother_height_cm: Some(165.0),
            father_height_cm: Some(178.0),
            ..input(sex)
        }
    }

    #[test]
    fn rwt_hand_computed() {
        // Boy 11-0 (Table I row 11-0: β_RL 0.960, β_W −0.231, β_MPS 0.378, β_SA −1.094,
        // β_0 −5.010); RL 146, W 36, MPS (165 + 178)/2 = 171.5, SA 141/12 = 11.75:
        // 0.960×146 − 0.231×36 + 0.378×171.5 − 1.094×11.75 − 5.010
        // = 140.16 − 8.316 + 64.827 − 12.8545 − 5.010 = 178.8065 cm
        let p = roche_wainer_thissen(&rwt_input(Sex::Male, 132.0)).unwrap();
        assert_eq!(p.method, "roche_wainer_thissen");
        assert_eq!(p.table, "Table I, 11-0");
        assert!(close(p.predicted_cm, 178.8065, 1e-9), "{}", p.predicted_cm);
        assert_eq!(value(&p, "mid_parent_stature_cm"), 171.5);
        assert_eq!(value(&p, "skeletal_age_years"), 11.75);
        assert!(p.notes.iter().any(|n| n.contains("recumbent length")));
        assert!(p.stated_error.is_none());
        assert_eq!(
            p.citation,
            "Roche AF, Wainer H, Thissen D. Pediatrics 1975;56:1026–1033"
        );
        // 11.1 y (133.2 months) → nearest quarter-year row is still 11-0
        let p = roche_wainer_thissen(&rwt_input(Sex::Male, 133.2)).unwrap();
        assert_eq!(p.table, "Table I, 11-0");
        // 133.5 months: tie between 11-0 and 11-3 → 11-0; 133.6 → 11-3
        let p = roche_wainer_thissen(&rwt_input(Sex::Male, 133.5)).unwrap();
        assert_eq!(p.table, "Table I, 11-0");
        let p = roche_wainer_thissen(&rwt_input(Sex::Male, 133.6)).unwrap();
        assert_eq!(p.table, "Table I, 11-3");
        // Girls use Table II
        let p = roche_wainer_thissen(&rwt_input(Sex::Female, 132.0)).unwrap();
        assert_eq!(p.table, "Table II, 11-0");
        // 0.736×146 − 0.190×36 + 0.216×171.5 − 3.029×11.75 + 61.841
        let want = 0.736 * 146.0 - 0.190 * 36.0 + 0.216 * 171.5 - 3.029 * 11.75 + 61.841;
        assert!(close(p.predicted_cm, want, 1e-9));
    }

    #[test]
    fn rwt_range_and_inputs() {
        // boys 1-0 to 16-0; girls 1-0 to 14-0
        assert_eq!(
            roche_wainer_thissen(&rwt_input(Sex::Male, 193.0))
                .unwrap()
                .table,
            "Table I, 16-0"
        );
        let e = roche_wainer_thissen(&rwt_input(Sex::Female, 180.0)).unwrap_err();
        assert!(
            e.contains("outside the Roche–Wainer–Thissen table for girls (1-0 to 14-0)"),
            "{e}"
        );
        assert!(roche_wainer_thissen(&rwt_input(Sex::Male, 6.0)).is_err());
        let e = roche_wainer_thissen(&AdultHeightInput {
            father_height_cm: None,
            weight_kg: None,
            ..rwt_input(Sex::Male, 132.0)
        })
        .unwrap_err();
        assert_eq!(
            e,
            "Roche–Wainer–Thissen needs missing weight_kg, father_height_cm"
        );
    }

    fn tanner_input(sex: Sex, ca: f64, height: f64, rus: f64) -> AdultHeightInput {
        AdultHeightInput {
            chronological_age_months: Some(ca),
            height_cm: Some(height),
            tw2_rus_bone_age_months: Some(rus),
            ..input(sex)
        }
    }

    #[test]
    fn tanner_boys() {
        // Boy 12.2 y (146.4 mo), 150 cm, RUS 12.0 y: band 12.0- (1.08, −4.2, −2.6, 98, RSD 3.5):
        // 1.08×150 − 4.2×12.2 − 2.6×12.0 + 98 = 162 − 51.24 − 31.2 + 98 = 177.56 cm
        let p = tanner_1975(&tanner_input(Sex::Male, 146.4, 150.0, 144.0)).unwrap();
        assert_eq!(p.method, "tanner_1975");
        assert_eq!(p.table, "boys, 12.0-");
        assert!(close(p.predicted_cm, 177.56, 1e-9), "{}", p.predicted_cm);
        let err = p.stated_error.as_ref().unwrap();
        assert_eq!((err.kind, err.value_cm), ("residual_sd_cm", 3.5));
        assert_eq!(
            p.notes[0],
            "Equation for chronological age 12.0-: adult height = 1.08 × height -4.2 × age \
             -2.6 × RUS age +98 cm (height in cm, ages in years); r = 0.88."
        );
        assert_eq!(
            p.citation,
            "Tanner JM, Whitehouse RH, Marshall WA, Carter BS. Arch Dis Child 1975;50:14–26"
        );
        // Boy 5 y, 110 cm: band "4, 5, 6, 7+" (1.20, −7.3, 0, 82, RSD 4.0):
        // 1.20×110 − 7.3×5 + 0 + 82 = 132 − 36.5 + 82 = 177.5 cm
        let p = tanner_1975(&tanner_input(Sex::Male, 60.0, 110.0, 60.0)).unwrap();
        assert_eq!(p.table, "boys, 4, 5, 6, 7+");
        assert!(close(p.predicted_cm, 177.5, 1e-9));
        // 7.99 y is still in the first band; 8.0 is the next
        let p = tanner_1975(&tanner_input(Sex::Male, 95.9, 125.0, 96.0)).unwrap();
        assert_eq!(p.table, "boys, 4, 5, 6, 7+");
        let p = tanner_1975(&tanner_input(Sex::Male, 96.0, 125.0, 96.0)).unwrap();
        assert_eq!(p.table, "boys, 8.0-");
        // range: 4 to under 18 years
        let e = tanner_1975(&tanner_input(Sex::Male, 216.0, 175.0, 200.0)).unwrap_err();
        assert!(e.contains("4.0 to under 18.0 years"), "{e}");
        assert!(tanner_1975(&tanner_input(Sex::Male, 47.0, 100.0, 48.0)).is_err());
        assert!(tanner_1975(&tanner_input(Sex::Male, 215.9, 175.0, 200.0)).is_ok());
    }

    #[test]
    fn tanner_girls_menarche() {
        let mut i = tanner_input(Sex::Female, 150.0, 150.0, 150.0);
        // 12.5 y: separate equations; without menarche status → unavailable
        let e = tanner_1975(&i).unwrap_err();
        assert!(e.contains("menarche"), "{e}");
        // premenarcheal 12.5- (0.83, −2.3, −3.3, 108, RSD 2.7):
        // 0.83×150 − 2.3×12.5 − 3.3×12.5 + 108 = 124.5 − 28.75 − 41.25 + 108 = 162.5 cm
        i.menarche = Some(false);
        let p = tanner_1975(&i).unwrap();
        assert_eq!(p.table, "girls, premenarcheal, 12.5-");
        assert!(close(p.predicted_cm, 162.5, 1e-9), "{}", p.predicted_cm);
        assert_eq!(p.stated_error.as_ref().unwrap().value_cm, 2.7);
        // postmenarcheal 12.5- (0.93, −1.0, −2.7, 67, RSD 2.1):
        // 0.93×150 − 1.0×12.5 − 2.7×12.5 + 67 = 139.5 − 12.5 − 33.75 + 67 = 160.25 cm
        i.menarche = Some(true);
        let p = tanner_1975(&i).unwrap();
        assert_eq!(p.table, "girls, postmenarcheal, 12.5-");
        assert!(close(p.predicted_cm, 160.25, 1e-9));
        assert_eq!(p.stated_error.as_ref().unwrap().value_cm, 2.1);
        // 15.67 y (188 mo), "all" band 15.5- (0.99, −0.4, −0.7, 20): no menarche needed
        let p = tanner_1975(&tanner_input(Sex::Female, 188.0, 160.0, 186.0)).unwrap();
        assert_eq!(p.table, "girls, 15.5-");
        let want = 0.99 * 160.0 - 0.4 * (188.0 / 12.0) - 0.7 * 15.5 + 20.0;
        assert!(close(p.predicted_cm, want, 1e-9));
        // 10 y: one equation, menarche not needed
        assert!(tanner_1975(&tanner_input(Sex::Female, 120.0, 140.0, 120.0)).is_ok());
        // girls end under 16
        assert!(tanner_1975(&tanner_input(Sex::Female, 192.0, 160.0, 190.0)).is_err());
    }

    #[test]
    fn tanner_needs_a_rated_rus_age() {
        let e = tanner_1975(&AdultHeightInput {
            chronological_age_months: Some(146.0),
            bone_age_months: Some(150.0),
            height_cm: Some(150.0),
            ..input(Sex::Male)
        })
        .unwrap_err();
        assert!(e.contains("TW2 RUS bone age rated by a reader"), "{e}");
        assert!(e.contains("not expert"), "{e}");
    }

    #[test]
    fn predict_runs_every_method() {
        let full = AdultHeightInput {
            chronological_age_months: Some(132.0),
            bone_age_months: Some(141.0),
            height_cm: Some(146.0),
            weight_kg: Some(36.0),
            mother_height_cm: Some(165.0),
            father_height_cm: Some(178.0),
            tw2_rus_bone_age_months: Some(138.0),
            menarche: None,
            sex: Sex::Male,
        };
        let a = predict_adult_height(&full);
        let methods: Vec<&str> = a.predictions.iter().map(|p| p.method).collect();
        assert_eq!(
            methods,
            vec!["bayley_pinneau", "roche_wainer_thissen", "tanner_1975"]
        );
        assert!(a.unavailable.is_empty());
        // BA 141 (11-9), CA 132: 9 months ahead → average 11-9 (82.7 %): 146/0.827
        assert!(close(a.predictions[0].predicted_cm, 146.0 / 0.827, 1e-9));
        assert!(close(a.predictions[1].predicted_cm, 178.8065, 1e-9));
        // Tanner boys 11.0- (1.16, −5.5, −1.6, 89): 1.16×146 − 5.5×11 − 1.6×11.5 + 89
        // = 169.36 − 60.5 − 18.4 + 89 = 179.46 cm
        assert!(close(a.predictions[2].predicted_cm, 179.46, 1e-9));

        let only_height = AdultHeightInput {
            height_cm: Some(146.0),
            ..input(Sex::Female)
        };
        let a = predict_adult_height(&only_height);
        assert!(a.predictions.is_empty());
        let reasons: Vec<(&str, &str)> = a
            .unavailable
            .iter()
            .map(|u| (u.method, u.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3);
        assert_eq!(
            reasons[0],
            (
                "bayley_pinneau",
                "Bayley–Pinneau needs missing bone_age_months, chronological_age_months"
            )
        );
        assert_eq!(reasons[1].0, "roche_wainer_thissen");
        assert_eq!(reasons[2].0, "tanner_1975");
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["unavailable"][2]["method"], "tanner_1975");
    }

    #[test]
    fn nearest_row_rules() {
        let keys = [72.0, 75.0, 78.0, 82.0];
        assert_eq!(nearest_row(&keys, 70.5, 1.5), Some(0));
        assert_eq!(nearest_row(&keys, 70.4, 1.5), None);
        assert_eq!(nearest_row(&keys, 73.5, 1.5), Some(0));
        assert_eq!(nearest_row(&keys, 73.6, 1.5), Some(1));
        assert_eq!(nearest_row(&keys, 80.0, 1.5), Some(2));
        assert_eq!(nearest_row(&keys, 83.5, 1.5), Some(3));
        assert_eq!(nearest_row(&keys, 83.6, 1.5), None);
        assert_eq!(nearest_row(&keys, f64::NAN, 1.5), None);
        assert_eq!(nearest_row(&[], 1.0, 1.5), None);
    }
}
