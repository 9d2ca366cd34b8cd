//! Renderings for people: the growth chart (SVG) and the printable analysis report
//! (HTML, one A4 page).
//!
//! - [`growth_svg`]: a patient's [`GrowthSeries`] → two panels side by side: bone age
//!   against chronological age (identity line, Greulich–Pyle ±2 SD band, the exams
//!   with their 90% intervals) and height-for-age (percentile lines P3–P97, the
//!   measured heights, the predicted adult heights). Drawn with plotters' SVG
//!   backend; black and grey on white, meaning carried by line style and labels.
//! - [`report_html`]: a stored analysis (the JSON of an
//!   [`AnalysisReport`](crate::report::AnalysisReport)), optionally with the patient
//!   and the growth series → one self-contained HTML page (inline CSS and SVG, no
//!   external resources, no scripts).
//!
//! Every visible string exists in English and simplified Chinese ([`Lang`]). Nothing
//! here computes a clinical number: values are shown as the analysis and the growth
//! series give them, and a missing value is shown with its reason.

mod chart;
mod html;
mod text;

#[cfg(test)]
mod fixtures;

pub use chart::growth_svg;
pub use html::{report_html, ModelCard, MODEL_CARD};

use crate::Sex;

/// The language of the visible text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// Parses a language tag: `en`, `en-GB`, `en_US`, … → [`Lang::En`]; `zh`,
    /// `zh-CN`, `zh-Hans`, `zh_cn`, … → [`Lang::Zh`]. `None` for anything else.
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().to_ascii_lowercase();
        let primary = s.split(['-', '_']).next().unwrap_or("");
        match primary {
            "en" => Some(Lang::En),
            "zh" => Some(Lang::Zh),
            _ => None,
        }
    }

    /// The BCP 47 tag written into the HTML (`en`, `zh-CN`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }
}

/// The patient as the report shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientView {
    /// The service's id of the patient.
    pub id: String,
    /// The id the hospital uses (medical record number).
    pub external_id: String,
    pub name: Option<String>,
    pub sex: Sex,
    /// ISO date (`YYYY-MM-DD`).
    pub birth_date: String,
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The stored JSON is not an analysis report: a required field is missing or
    /// has the wrong type (the reason names it).
    #[error("the stored analysis is not a valid report: {0}")]
    InvalidReport(String),
}

/// Chronological or bone age in whole years and months, rounded to the nearest
/// month: `10 y 4 m` / `10岁4个月`. Negative or non-finite input gives `–`.
pub(crate) fn years_months(months: f64, lang: Lang) -> String {
    if !months.is_finite() || months < 0.0 {
        return "–".to_string();
    }
    let total = months.round() as u64;
    let (y, m) = (total / 12, total % 12);
    match lang {
        Lang::En => format!("{y} y {m} m"),
        Lang::Zh => format!("{y}岁{m}个月"),
    }
}

/// An age in years and months with the months to one decimal:
/// `10 y 4 m (124.3 months)` / `10岁4个月（124.3 个月）`.
pub(crate) fn age_text(months: f64, lang: Lang) -> String {
    match lang {
        Lang::En => format!("{} ({months:.1} months)", years_months(months, lang)),
        Lang::Zh => format!("{}（{months:.1} 个月）", years_months(months, lang)),
    }
}

/// A signed number with `decimals` decimals: `+4.3`, `-0.14`, `0.0` (no sign on a
/// value that rounds to zero).
pub(crate) fn signed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let zero = s
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.');
    if zero {
        s.trim_start_matches('-').to_string()
    } else if v > 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lang_parse() {
        for s in ["en", "EN", "en-GB", "en_US", " en "] {
            assert_eq!(Lang::parse(s), Some(Lang::En), "{s}");
        }
        for s in ["zh", "zh-CN", "zh_cn", "zh-Hans", "ZH-hans-CN"] {
            assert_eq!(Lang::parse(s), Some(Lang::Zh), "{s}");
        }
        for s in ["", "de", "english", "zhx", "-"] {
            assert_eq!(Lang::parse(s), None, "{s}");
        }
        assert_eq!(Lang::default(), Lang::En);
        assert_eq!(Lang::Zh.tag(), "zh-CN");
    }

    #[test]
    fn ages_in_years_and_months() {
        assert_eq!(years_months(124.3, Lang::En), "10 y 4 m");
        // 131.7 rounds to 132 months: 11 y 0 m, never "10 y 12 m"
        assert_eq!(years_months(131.7, Lang::En), "11 y 0 m");
        assert_eq!(years_months(0.2, Lang::En), "0 y 0 m");
        assert_eq!(years_months(119.0, Lang::Zh), "9岁11个月");
        assert_eq!(years_months(-1.0, Lang::En), "–");
        assert_eq!(years_months(f64::NAN, Lang::En), "–");
        assert_eq!(age_text(124.3, Lang::En), "10 y 4 m (124.3 months)");
        assert_eq!(age_text(124.34, Lang::Zh), "10岁4个月（124.3 个月）");
    }

    #[test]
    fn signed_numbers() {
        assert_eq!(signed(4.3, 1), "+4.3");
        assert_eq!(signed(-0.141, 2), "-0.14");
        assert_eq!(signed(-0.001, 2), "0.00");
        assert_eq!(signed(0.0, 1), "0.0");
        assert_eq!(signed(2.0, 2), "+2.00");
    }
}
