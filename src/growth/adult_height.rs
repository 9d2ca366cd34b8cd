//! Predicted adult height: Bayley–Pinneau (1952), Roche–Wainer–Thissen (1975) and
//! Tanner et al. (1975), each where its inputs are given.
//!
//! (Helper A implements the methods over the published tables in `tables/`.)

use serde::Serialize;
use utoipa::ToSchema;

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
