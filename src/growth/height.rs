//! Height-for-age against LMS growth references: WHO 2006 (0–5 y) with WHO 2007
//! (5–19 y), the default, or CDC 2000 (0–20 y).
//!
//! (Helper A implements: LMS tables embedded from `tables/`, z-score, percentile,
//! height at a z-score, with citations in `tables/README.md`.)

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
