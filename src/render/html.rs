//! The printable report of one analysis: one A4 page of self-contained HTML.
//!
//! The input is the stored JSON of an [`AnalysisReport`](crate::report::AnalysisReport)
//! (that type is serialise-only), read through [`ReportView`], a deserialisable view
//! of just the fields shown. Fields every analysis has (`id`, `model`, `sex`,
//! `bone_age`, `tw3`, `joints`, `quality`) are required: a stored report without one
//! is a [`RenderError`], not a panic. Everything else is optional and shown as "not
//! given" or with its stated reason when absent.
//!
//! The page has no external resources (no fonts, stylesheets, images or scripts):
//! CSS is inline, the chart is inline SVG. maud escapes every value.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use serde_json::Value;

use super::chart::{growth_svg_sized, REPORT_HEIGHT};
use super::text::{bone_name, method_names, sex_word, text, Words};
use super::{age_text, signed, years_months, Lang, PatientView, RenderError};
use crate::growth::adult_height::AdultHeight;
use crate::growth::series::{GrowthPoint, GrowthSeries};
use crate::Sex;

/// What the model card (`models/README.md`) states about a model's validation: the
/// one place to update when a model is retrained. The report states these figures
/// only for the model it names (`name` and `version` must match the analysis's
/// `model`); for any other model it says that no validation is stated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCard {
    pub name: &'static str,
    pub version: &'static str,
    /// Mean absolute error of the bone age against the RSNA radiologists' readings
    /// (months), on the fixed validation split, through the service's own path.
    pub validation_mae_months: f64,
    /// Radiographs of that split that were analysed.
    pub validation_images: u32,
    /// Share of those whose reading fell inside the 90% interval.
    pub interval_coverage_90: f64,
    /// Mean absolute error of the TW3 RUS bone age summed from the per-joint stages
    /// against the same readings (months).
    pub tw3_rus_mae_months: f64,
}

/// The default model, `models/boneage-default.onnx` (model card: sq100 validation
/// split, service path).
pub const MODEL_CARD: ModelCard = ModelCard {
    name: "boneage-resnet-sq100",
    version: "0.8.0",
    validation_mae_months: 8.87,
    validation_images: 1226,
    interval_coverage_90: 0.90,
    tw3_rus_mae_months: 22.2,
};

// ---------------------------------------------------------------------------
// The deserialisable view of a stored report.

#[derive(Debug, Deserialize)]
struct ReportView {
    id: String,
    model: ModelView,
    sex: Sex,
    bone_age: BoneAgeView,
    #[serde(default)]
    chronological_age_months: Option<f64>,
    #[serde(default)]
    bone_age_sds: Option<f64>,
    #[serde(default)]
    bone_age_sds_detail: Option<SdsDetailView>,
    tw3: Tw3View,
    joints: Vec<JointView>,
    quality: QualityView,
    #[serde(default)]
    input: Option<InputView>,
    #[serde(default)]
    source: Option<SourceView>,
    #[serde(default)]
    patient_id: Option<String>,
    #[serde(default)]
    exam_date: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    height_cm: Option<f64>,
    #[serde(default)]
    weight_kg: Option<f64>,
    #[serde(default)]
    measurements: Option<MeasurementsView>,
    #[serde(default)]
    growth: Option<ExamGrowthView>,
}

#[derive(Debug, Deserialize)]
struct ModelView {
    name: String,
    version: String,
    sha256: String,
}

#[derive(Debug, Deserialize)]
struct BoneAgeView {
    months: f64,
    interval_90: [f64; 2],
}

#[derive(Debug, Deserialize)]
struct SdsDetailView {
    #[serde(default)]
    reference: Option<SdsReferenceView>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SdsReferenceView {
    reference_mean_months: f64,
    reference_sd_months: f64,
    #[serde(default)]
    interpolated: bool,
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Tw3View {
    rus_score: u32,
    #[serde(default)]
    rus_bone_age_months: Option<f64>,
    #[serde(default)]
    rus_bone_age_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JointView {
    bone: String,
    stage: String,
    stage_probability: f64,
    tw3_score: u32,
    stage_basis: String,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QualityView {
    decision: String,
    #[serde(default)]
    exposure: Option<ExposureView>,
    #[serde(default)]
    shape: Option<ShapeView>,
    #[serde(default)]
    corrections: Option<CorrectionsView>,
    #[serde(default)]
    passes: Option<u32>,
    #[serde(default)]
    laterality: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ExposureView {
    p01: f64,
    p99: f64,
    mean: f64,
}

#[derive(Debug, Deserialize)]
struct ShapeView {
    residual: f64,
    max_residual: f64,
    sd_months: f64,
    max_sd_months: f64,
}

#[derive(Debug, Default, Deserialize)]
struct CorrectionsView {
    #[serde(default)]
    inverted: bool,
    #[serde(default)]
    mirrored: bool,
    #[serde(default)]
    rotation_deg: f64,
}

#[derive(Debug, Deserialize)]
struct InputView {
    format: String,
    width: u32,
    height: u32,
    bit_depth: u32,
}

#[derive(Debug, Deserialize)]
struct SourceView {
    #[serde(default)]
    fields: Vec<FieldView>,
}

#[derive(Debug, Deserialize)]
struct FieldView {
    field: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct MeasurementsView {
    #[serde(default)]
    height_cm: Option<f64>,
    #[serde(default)]
    weight_kg: Option<f64>,
}

/// The growth section of one exam (height-for-age and adult-height predictions).
#[derive(Debug, Default, Deserialize)]
struct ExamGrowthView {
    #[serde(default)]
    height_for_age: Option<HeightForAgeView>,
    #[serde(default)]
    height_for_age_reason: Option<String>,
    #[serde(default)]
    adult_height: Option<AdultHeightView>,
    #[serde(default)]
    adult_height_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HeightForAgeView {
    z: f64,
    percentile: f64,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    interpolated: bool,
}

#[derive(Debug, Default, Deserialize)]
struct AdultHeightView {
    #[serde(default)]
    predictions: Vec<PredictionView>,
    #[serde(default)]
    unavailable: Vec<UnavailableView>,
}

#[derive(Debug, Deserialize)]
struct PredictionView {
    method: String,
    predicted_cm: f64,
    #[serde(default)]
    inputs: Vec<NamedValueView>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    stated_error: Option<StatedErrorView>,
    #[serde(default)]
    notes: Vec<String>,
    #[serde(default)]
    citation: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedValueView {
    name: String,
    value: f64,
}

#[derive(Debug, Deserialize)]
struct StatedErrorView {
    kind: String,
    value_cm: f64,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UnavailableView {
    method: String,
    reason: String,
}

impl From<&AdultHeight> for AdultHeightView {
    fn from(a: &AdultHeight) -> Self {
        AdultHeightView {
            predictions: a
                .predictions
                .iter()
                .map(|p| PredictionView {
                    method: p.method.to_string(),
                    predicted_cm: p.predicted_cm,
                    inputs: p
                        .inputs
                        .iter()
                        .map(|v| NamedValueView {
                            name: v.name.to_string(),
                            value: v.value,
                        })
                        .collect(),
                    table: Some(p.table.clone()),
                    stated_error: p.stated_error.as_ref().map(|e| StatedErrorView {
                        kind: e.kind.to_string(),
                        value_cm: e.value_cm,
                        source: Some(e.source.to_string()),
                    }),
                    notes: p.notes.clone(),
                    citation: Some(p.citation.to_string()),
                })
                .collect(),
            unavailable: a
                .unavailable
                .iter()
                .map(|u| UnavailableView {
                    method: u.method.to_string(),
                    reason: u.reason.clone(),
                })
                .collect(),
        }
    }
}

impl ReportView {
    fn field(&self, name: &str) -> Option<&str> {
        self.source
            .as_ref()?
            .fields
            .iter()
            .find(|f| f.field == name)
            .map(|f| f.value.as_str())
    }
}

// ---------------------------------------------------------------------------

const CSS: &str = "\
@page { size: A4; margin: 12mm }
* { box-sizing: border-box }
html { background: #fff }
body { font-family: 'Helvetica Neue', Arial, 'Noto Sans CJK SC', 'Source Han Sans SC', \
'PingFang SC', 'Microsoft YaHei', sans-serif; font-size: 8pt; line-height: 1.2; color: #000; margin: 0 }
@media screen { body { max-width: 186mm; margin: 8mm auto } }
header { display: flex; justify-content: space-between; align-items: flex-end; \
border-bottom: 1.5pt solid #000; padding-bottom: 2pt }
h1 { font-size: 13pt; margin: 0 }
h2 { font-size: 9.5pt; margin: 5pt 0 2pt; padding-bottom: 1pt; border-bottom: 0.5pt solid #777 }
.meta { text-align: right }
.cols { display: flex; gap: 5mm }
.cols > section { flex: 1; min-width: 0 }
table { border-collapse: collapse; width: 100% }
th, td { text-align: left; padding: 0.6pt 3pt; vertical-align: top }
.kv th { font-weight: normal; color: #333; white-space: nowrap; width: 1% }
.cols > table { flex: 1 }
.top > section:nth-child(2) { flex: 1.3 }
.top > section:nth-child(3) { flex: 1.2 }
.top .kv th { white-space: normal; width: 42% }
td.note { font-size: 7pt }
.grid th { border-bottom: 0.75pt solid #000; font-weight: bold }
.grid td { border-bottom: 0.4pt solid #bbb }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap }
.main { font-size: 11pt; font-weight: bold }
.note, .key { font-size: 7.5pt; color: #222 }
.key { margin: 2pt 0 0; padding-left: 10pt }
.key li { margin: 0 }
.joints th, .joints td { text-align: center; padding: 0.6pt 1pt }
.joints th:first-child { text-align: left; white-space: nowrap }
.joints tr:first-child th { font-size: 7pt }
.joints tr + tr th { border-bottom: 0.4pt solid #bbb }
.joints td.stage { font-weight: bold }
figure { margin: 3pt 0 0 }
figure svg { width: 100%; height: auto; display: block }
.statement { border: 1pt solid #000; padding: 3pt 5pt; margin-top: 5pt }
.statement p { margin: 2pt 0 0 }
footer { margin-top: 3pt; font-size: 7.5pt }
.mono { font-family: 'DejaVu Sans Mono', Consolas, monospace; font-size: 7.5pt }
section, figure, .statement { break-inside: avoid }
";

/// The printable report of one analysis.
///
/// `report` is the stored JSON of the analysis; `patient` the patient it belongs to
/// (`None` for an anonymous analysis); `growth` the patient's growth series (the
/// chart is drawn only when it is given). Errors only when `report` lacks a field
/// every analysis has or has one of the wrong type.
pub fn report_html(
    report: &Value,
    patient: Option<&PatientView>,
    growth: Option<&GrowthSeries>,
    lang: Lang,
) -> Result<String, RenderError> {
    let r: ReportView =
        ReportView::deserialize(report).map_err(|e| RenderError::InvalidReport(e.to_string()))?;
    let t = text(lang);
    let today = time::OffsetDateTime::now_utc().date().to_string();
    // The series' point for this exam, if the series holds it.
    let own_point: Option<&GrowthPoint> =
        growth.and_then(|g| g.points.iter().find(|p| p.analysis_id == r.id));
    let chart = growth.map(|g| growth_svg_sized(g, lang, (1000, REPORT_HEIGHT)));

    let page = html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                title { (t.doc_title) " · " (r.id) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "boneage · " (t.doc_title) }
                    div.meta {
                        (t.report_date) ": " (today) br;
                        (t.analysis_id) ": " span.mono { (r.id) }
                        @if let Some(at) = &r.created_at { br; (t.analysed_at) ": " (at) }
                    }
                }
                div.cols.top {
                    section { h2 { (t.patient) } (patient_section(&r, patient, t, lang)) }
                    section { h2 { (t.exam) } (exam_section(&r, own_point, t, lang)) }
                    section { h2 { (t.quality) } (quality_section(&r.quality, t, lang)) }
                }
                section { h2 { (t.result) } (result_section(&r, t, lang)) }
                section { h2 { (t.joints) } (joints_section(&r.joints, t, lang)) }
                @if let Some(svg) = &chart {
                    figure { h2 { (t.chart) } (PreEscaped(svg)) }
                }
                section { h2 { (t.adult_height) } (adult_section(&r, growth, t, lang)) }
                section.statement {
                    strong { (t.model) ": " }
                    (r.model.name) " " (r.model.version) ", sha256 "
                    span.mono { (short_hash(&r.model.sha256)) }
                    p { strong { (t.validated_for) ": " } (validation_statement(&r.model, lang)) }
                }
                footer { (t.not_a_device) " boneage " (env!("CARGO_PKG_VERSION")) "." }
            }
        }
    };
    Ok(page.into_string())
}

fn short_hash(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

fn months_word(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "months",
        Lang::Zh => "个月",
    }
}

fn patient_section(r: &ReportView, patient: Option<&PatientView>, t: &Words, lang: Lang) -> Markup {
    match patient {
        Some(p) => html! {
            table.kv {
                tr { th { (t.external_id) } td { (p.external_id) } }
                tr { th { (t.name) } td { (p.name.as_deref().unwrap_or(t.not_given)) } }
                tr { th { (t.sex) } td { (sex_word(p.sex, lang)) } }
                tr { th { (t.birth_date) } td { (p.birth_date) } }
            }
        },
        None => html! {
            p { (if r.patient_id.is_some() { t.patient_not_loaded } else { t.no_patient }) }
            table.kv {
                tr { th { (t.sex) } td { (sex_word(r.sex, lang)) } }
                @if let Some(b) = r.field("birth_date") {
                    tr { th { (t.birth_date) } td { (b) } }
                }
            }
        },
    }
}

fn exam_section(r: &ReportView, own: Option<&GrowthPoint>, t: &Words, lang: Lang) -> Markup {
    let exam_date = r
        .exam_date
        .as_deref()
        .or_else(|| r.field("exam_date"))
        .or_else(|| own.and_then(|p| p.exam_date.as_deref()));
    let measured = |top: Option<f64>, nested: Option<f64>, series: Option<f64>| {
        top.or(nested).or(series).filter(|v| v.is_finite())
    };
    let m = r.measurements.as_ref();
    let height = measured(
        r.height_cm,
        m.and_then(|m| m.height_cm),
        own.and_then(|p| p.height_cm),
    );
    let weight = measured(
        r.weight_kg,
        m.and_then(|m| m.weight_kg),
        own.and_then(|p| p.weight_kg),
    );
    // Height-for-age: the report's own growth section, else the series' point.
    let hfa: Option<(f64, f64, Option<String>, bool)> = r
        .growth
        .as_ref()
        .and_then(|g| g.height_for_age.as_ref())
        .map(|h| (h.z, h.percentile, h.reference.clone(), h.interpolated))
        .or_else(|| {
            own.and_then(|p| p.height_for_age.as_ref()).map(|h| {
                (
                    h.z,
                    h.percentile,
                    Some(h.reference.to_string()),
                    h.interpolated,
                )
            })
        });
    let hfa_reason = r
        .growth
        .as_ref()
        .and_then(|g| g.height_for_age_reason.clone())
        .or_else(|| own.and_then(|p| p.height_for_age_reason.clone()));
    html! {
        table.kv {
            tr { th { (t.exam_date) } td { (exam_date.unwrap_or(t.not_given)) } }
            tr {
                th { (t.chronological_age) }
                td { @match r.chronological_age_months.filter(|v| v.is_finite()) {
                    Some(ca) => (age_text(ca, lang)),
                    None => (t.not_given),
                } }
            }
            tr {
                th { (t.height) }
                td { @match height { Some(h) => { (format!("{h:.1} cm")) }, None => (t.not_given) } }
            }
            @if height.is_some() {
                tr {
                    th { (t.height_for_age) }
                    td {
                        @if let Some((z, p, reference, interpolated)) = &hfa {
                            "z " (signed(*z, 2)) ", P" (format!("{p:.0}"))
                            @if let Some(reference) = reference { br; span.note { (reference) } }
                            @if *interpolated { "; " (t.interpolated) }
                        } @else if let Some(reason) = &hfa_reason {
                            (reason)
                        } @else {
                            (t.not_given)
                        }
                    }
                }
            }
            tr {
                th { (t.weight) }
                td { @match weight { Some(w) => { (format!("{w:.1} kg")) }, None => (t.not_given) } }
            }
            @if let Some(i) = &r.input {
                tr {
                    th { (t.image) }
                    td { (i.format.to_uppercase()) ", " (i.width) " × " (i.height) ", " (i.bit_depth) " bit" }
                }
            }
        }
    }
}

fn result_section(r: &ReportView, t: &Words, lang: Lang) -> Markup {
    let ba = &r.bone_age;
    let mw = months_word(lang);
    let [lo, hi] = ba.interval_90;
    let ca = r.chronological_age_months.filter(|v| v.is_finite());
    let sds_detail = r.bone_age_sds_detail.as_ref();
    let sds_reason = sds_detail
        .and_then(|d| d.reason.clone())
        .unwrap_or_else(|| t.no_ca.to_string());
    html! {
        div.cols { table.kv {
            tr { th { (t.bone_age) } td.main { (age_text(ba.months, lang)) } }
            tr {
                th { (t.interval_90) }
                td {
                    (format!("{lo:.1}–{hi:.1} {mw}")) " "
                    span.note { "(" (years_months(lo, lang)) " – " (years_months(hi, lang)) ")" }
                }
            }
            tr {
                th { (t.chronological_age) }
                td { @match ca { Some(ca) => (age_text(ca, lang)), None => (t.not_given) } }
            }
            tr {
                th { (t.ba_minus_ca) }
                td { @match ca {
                    Some(ca) => { (signed(ba.months - ca, 1)) " " (mw) },
                    None => (t.not_given),
                } }
            }
        }
        table.kv {
            tr {
                th { (t.gp_sds) }
                td {
                    @match r.bone_age_sds.filter(|v| v.is_finite()) {
                        Some(sds) => {
                            strong { (signed(sds, 2)) }
                            @if let Some(rf) = sds_detail.and_then(|d| d.reference.as_ref()) {
                                br;
                                span.note {
                                    (rf.reference.as_deref().unwrap_or("Greulich–Pyle"))
                                    ": " (format!("{:.1} ± {:.1} {mw}", rf.reference_mean_months, rf.reference_sd_months))
                                    "; " (if rf.interpolated { t.interpolated } else { t.at_table_row })
                                }
                            }
                        },
                        None => (sds_reason),
                    }
                }
            }
            tr { th { (t.tw3_score) } td { strong { (r.tw3.rus_score) } } }
            tr {
                th { (t.tw3_bone_age) }
                td {
                    @match (r.tw3.rus_bone_age_months.filter(|v| v.is_finite()), &r.tw3.rus_bone_age_reason) {
                        (Some(m), _) => (age_text(m, lang)),
                        (None, Some(reason)) => (reason),
                        (None, None) => (t.not_given),
                    }
                }
            }
        } }
    }
}

/// Short and long words for a stage basis.
fn basis_words<'a>(basis: &str, t: &'a Words) -> (&'a str, &'a str) {
    match basis {
        "joint_region" => (t.basis_joint_region, t.basis_joint_region_long),
        "joint_region_supervised" => (t.basis_supervised, t.basis_supervised_long),
        "typical_for_bone_age" => (t.basis_typical, t.basis_typical_long),
        _ => ("", t.basis_unknown_long),
    }
}

fn joints_section(joints: &[JointView], t: &Words, lang: Lang) -> Markup {
    let mut bases: Vec<&str> = joints.iter().map(|j| j.stage_basis.as_str()).collect();
    bases.sort_unstable();
    bases.dedup();
    let basis_word = |b: &str| match basis_words(b, t).0 {
        "" => b.to_string(),
        w => w.to_string(),
    };
    // One column per bone (13 narrow columns keep the page to one sheet).
    html! {
        table.grid.joints {
            tr {
                th { (t.col_bone) }
                @for j in joints { th { (bone_name(&j.bone, lang)) br; span.note { (j.bone) } } }
            }
            tr { th { (t.col_stage) } @for j in joints { td.stage { (j.stage) } } }
            tr {
                th { (t.col_probability) }
                @for j in joints { td { (format!("{:.0}%", 100.0 * j.stage_probability)) } }
            }
            tr { th { (t.col_score) } @for j in joints { td { (j.tw3_score) } } }
            tr { th { (t.col_basis) } @for j in joints { td { (basis_word(&j.stage_basis)) } } }
            tr {
                th { (t.col_region) }
                @for j in joints { td { (j.region.as_deref().unwrap_or("–")) } }
            }
        }
        ul.key {
            @for b in &bases {
                li { strong { (basis_word(b)) } " (" (b) "): " (basis_words(b, t).1) }
            }
            li { (t.tw3_caveat) }
            @if !t.bone_key.is_empty() { li { (t.bone_key) } }
        }
    }
}

fn quality_section(q: &QualityView, t: &Words, lang: Lang) -> Markup {
    let c = q.corrections.as_ref();
    let mut corrections: Vec<String> = Vec::new();
    if c.is_some_and(|c| c.inverted) {
        corrections.push(t.inverted.to_string());
    }
    if c.is_some_and(|c| c.mirrored) {
        corrections.push(t.mirrored.to_string());
    }
    if let Some(deg) = c
        .map(|c| c.rotation_deg)
        .filter(|d| d.is_finite() && *d != 0.0)
    {
        corrections.push(match lang {
            Lang::En => format!("rotated {deg:.0}°"),
            Lang::Zh => format!("旋转 {deg:.0}°"),
        });
    }
    let sep = match lang {
        Lang::En => ", ",
        Lang::Zh => "，",
    };
    html! {
        table.kv {
            tr {
                th { (t.decision) }
                td { strong { (if q.decision == "accepted" { t.accepted } else { q.decision.as_str() }) } }
            }
            tr {
                th { (t.exposure) }
                td { @match &q.exposure {
                    Some(e) => (format!("{:.2} / {:.2} / {:.2}", e.p01, e.p99, e.mean)),
                    None => (t.not_given),
                } }
            }
            tr {
                th { (t.shape_residual) }
                td { @match &q.shape {
                    Some(s) => (format!("{:.3} (≤ {:.3})", s.residual, s.max_residual)),
                    None => (t.not_checked),
                } }
            }
            @if let Some(s) = &q.shape {
                tr {
                    th { (t.model_sd) }
                    td { (format!("{:.1} {} (≤ {:.1})", s.sd_months, months_word(lang), s.max_sd_months)) }
                }
            }
            tr {
                th { (t.corrections) }
                td { (if corrections.is_empty() { t.none.to_string() } else { corrections.join(sep) }) }
            }
            @if let Some(n) = q.passes { tr { th { (t.passes) } td { (n) } } }
            tr {
                th { (t.laterality) }
                td { @match q.laterality.as_deref() {
                    Some("left") => (t.left),
                    Some("right") => (t.right),
                    Some(other) => (other),
                    None => (t.not_given),
                } }
            }
        }
    }
}

fn input_name(name: &str, lang: Lang) -> &str {
    let (en, zh) = match name {
        "height_cm" => ("height (cm)", "身高（cm）"),
        "weight_kg" => ("weight (kg)", "体重（kg）"),
        "bone_age_years" => ("bone age (y)", "骨龄（岁）"),
        "rus_bone_age_years" => ("TW3 RUS bone age (y)", "TW3 RUS 骨龄（岁）"),
        "chronological_age_years" => ("age (y)", "年龄（岁）"),
        "mid_parent_height_cm" => ("mid-parent height (cm)", "父母平均身高（cm）"),
        "mother_height_cm" => ("mother's height (cm)", "母亲身高（cm）"),
        "father_height_cm" => ("father's height (cm)", "父亲身高（cm）"),
        other => (other, other),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

fn adult_section(r: &ReportView, growth: Option<&GrowthSeries>, t: &Words, lang: Lang) -> Markup {
    // The report's own predictions for this exam; else the series' (its latest exam
    // with a height), said so.
    let own = r.growth.as_ref().and_then(|g| g.adult_height.as_ref());
    let from_series: Option<AdultHeightView> = match own {
        Some(_) => None,
        None => growth
            .and_then(|g| g.adult_height.as_ref())
            .map(AdultHeightView::from),
    };
    let view = own.or(from_series.as_ref());
    let reason = r
        .growth
        .as_ref()
        .and_then(|g| g.adult_height_reason.clone())
        .or_else(|| growth.and_then(|g| g.adult_height_reason.clone()));
    let Some(a) = view else {
        return html! { p { (t.no_adult_height) @if let Some(reason) = reason { ": " (reason) } } };
    };
    html! {
        @if from_series.is_some() { p.note { (t.adult_from_series) "." } }
        @if !a.predictions.is_empty() {
            table.grid {
                tr {
                    th { (t.col_method) } th.num { (t.col_predicted) } th { (t.col_inputs) }
                    th { (t.col_table) } th { (t.col_error) } th { (t.col_notes) }
                }
                @for p in &a.predictions {
                    tr {
                        td { (method_names(&p.method, lang).1) " " span.note { "(" (method_names(&p.method, lang).0) ")" } }
                        td.num { strong { (format!("{:.1} cm", p.predicted_cm)) } }
                        td {
                            @for (i, v) in p.inputs.iter().enumerate() {
                                @if i > 0 { "; " }
                                (input_name(&v.name, lang)) " " (format!("{:.2}", v.value))
                            }
                        }
                        td { (p.table.as_deref().unwrap_or("–")) }
                        td {
                            @match &p.stated_error {
                                Some(e) => {
                                    (format!("± {:.1} cm", e.value_cm)) " "
                                    span.note { (error_kind(&e.kind, lang)) @if let Some(s) = &e.source { ", " (s) } }
                                },
                                None => "–",
                            }
                        }
                        td.note { @for (i, n) in p.notes.iter().enumerate() { @if i > 0 { "; " } (n) } }
                    }
                }
            }
        }
        p.note {
            @if !a.unavailable.is_empty() {
                (t.not_applied) ": "
                @for (i, u) in a.unavailable.iter().enumerate() {
                    @if i > 0 { "; " }
                    (method_names(&u.method, lang).1) " — " (u.reason)
                }
                ". "
            }
            @for p in a.predictions.iter().filter(|p| p.citation.is_some()) {
                (method_names(&p.method, lang).0) ": " (p.citation.as_deref().unwrap_or("")) ". "
            }
        }
    }
}

fn error_kind(kind: &str, lang: Lang) -> &str {
    match (kind, lang) {
        ("residual_sd_cm", Lang::En) => "residual SD",
        ("residual_sd_cm", Lang::Zh) => "残差标准差",
        (other, _) => other,
    }
}

/// What the model is validated for: the model card's figures when the analysis names
/// the model of [`MODEL_CARD`], else a statement that no validation is stated.
fn validation_statement(m: &ModelView, lang: Lang) -> String {
    let c = MODEL_CARD;
    let known = m.name == c.name && m.version == c.version;
    match (known, lang) {
        (true, Lang::En) => format!(
            "{name} {version} is a research model, trained on the RSNA Pediatric Bone Age \
             Challenge 2017 radiographs: radiologists' Greulich–Pyle readings of \
             North-American children. On the fixed RSNA validation split ({n} radiographs) \
             its bone age differs from the readings by {mae:.2} months on average (mean \
             absolute error), and the 90% interval held the reading in {cov:.0}% of them. \
             It is not validated for clinical use, nor for other populations, devices or \
             age ranges. The per-joint stages are not validated against expert TW3 \
             staging; the TW3 RUS bone age summed from them differs from the readings by \
             {tw3:.1} months on average.",
            name = m.name,
            version = m.version,
            n = c.validation_images,
            mae = c.validation_mae_months,
            cov = 100.0 * c.interval_coverage_90,
            tw3 = c.tw3_rus_mae_months,
        ),
        (true, Lang::Zh) => format!(
            "{name} {version} 为研究用模型，以 RSNA 2017 儿童骨龄挑战赛的手部 X 线片训练，\
             标签为放射科医师对北美儿童的 Greulich–Pyle 读片结果。在固定的 RSNA 验证集\
             （{n} 张）上，其骨龄与读片结果的平均绝对误差为 {mae:.2} 个月，\
             90% 区间包含读片结果的比例为 {cov:.0}%。本模型未经临床使用验证，\
             也未在其他人群、设备或年龄段验证。各关节分期未经专家 TW3 分期验证；\
             由其累加的 TW3 RUS 骨龄与读片结果平均相差 {tw3:.1} 个月。",
            name = m.name,
            version = m.version,
            n = c.validation_images,
            mae = c.validation_mae_months,
            cov = 100.0 * c.interval_coverage_90,
            tw3 = c.tw3_rus_mae_months,
        ),
        (false, Lang::En) => format!(
            "this report has no model card for {} {}, so its validation is not stated here. \
             Treat it as a research model, not validated for clinical use; per-joint stages \
             are not validated against expert TW3 staging unless their basis says \
             expert-trained.",
            m.name, m.version
        ),
        (false, Lang::Zh) => format!(
            "本报告未收录 {} {} 的模型卡，此处不陈述其验证情况。请视为研究用模型，\
             未经临床使用验证；除非分期来源标明为专家标注训练，各关节分期均未经专家 TW3 分期验证。",
            m.name, m.version
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{patient, report_json, two_exam_series, ANALYSIS_2, JOINTS};

    fn en(report: &Value) -> String {
        report_html(report, Some(&patient()), Some(&two_exam_series()), Lang::En).unwrap()
    }

    /// The page as text, tags removed and entities decoded (enough for these tests).
    fn visible(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        let out = out
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"");
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn shows_the_numbers_of_the_report() {
        let html = en(&report_json());
        let text = visible(&html);
        for s in [
            // bone age, years + months and months; 90% interval; SD
            "10 y 4 m (124.3 months)",
            "110.2–138.4 months",
            "9 y 2 m – 11 y 6 m",
            // chronological age, BA − CA, GP SDS (124.3 − 131.5) / 9.94 = −0.72
            "10 y 6 m (126.0 months)",
            "-1.7 months",
            "-0.72",
            "131.5 ± 9.9 months",
            "interpolated between table rows",
            // TW3: 339 → 10.5 y
            "339",
            "10 y 6 m (126.0 months)",
            // exam
            "2026-07-15",
            "139.6 cm",
            "32.0 kg",
            "z -0.12, P45 WHO 2007 height-for-age (5–19 y)",
            "DICOM, 2000 × 2500, 12 bit",
            // patient
            "MRN-20160115-07",
            "2016-01-15",
            "male",
            // quality
            "0.031 (≤ 0.085)",
            "0.02 / 0.94 / 0.37",
            "mirrored (right hand)",
            "8.6 months (≤ 21.0)",
            // adult height: 139.6 / 0.791 and 1.15 × 139.6 − 5.2 × 10.5 + 70
            "176.5 cm",
            "175.9 cm",
            "± 3.5 cm residual SD, Tanner et al. 1975, Table 1",
            "TW: Tanner JM et al. Arch Dis Child 1975;50:14–26.",
            "Roche–Wainer–Thissen (1975) — needs the mid-parent height",
            // model
            "boneage-resnet-sq100 0.8.0",
            "b3e7987e72ed",
            "8.87 months on average",
            "not validated for clinical use",
            "not validated against expert TW3 staging",
        ] {
            assert!(text.contains(s), "missing {s:?} in\n{text}");
        }
        assert!(text.contains(ANALYSIS_2));
        // every joint's bone, with its stage, probability and score
        for (bone, _, _, p, score, _, _) in JOINTS {
            let abbrev = crate::render::text::bone_name(bone, Lang::En);
            assert!(text.contains(&format!("{abbrev} {bone}")), "{bone}");
            assert!(text.contains(&format!("{:.0}%", 100.0 * p)), "{bone} {p}");
            assert!(text.contains(&format!(" {score} ")), "{bone} {score}");
        }
        // the stage bases are explained in words
        assert!(
            text.contains("regional maturity estimate, not validated against expert TW3 staging")
        );
        assert!(text.contains("restates the global bone-age estimate"));
        // the chart is inline
        assert_eq!(html.matches("<svg").count(), 1);
        assert!(text.contains("Height-for-age (boys, WHO 2006/2007)"));
    }

    #[test]
    fn a4_page_without_external_resources() {
        let html = en(&report_json());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("@page { size: A4; margin: 12mm }"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("<link"));
        assert!(!html.contains("@import") && !html.contains("url("));
        // no src= or href= attribute anywhere (inline SVG's xmlns is a name, not a fetch)
        let lower = html.to_ascii_lowercase();
        for attr in ["src=", "href=", "srcset="] {
            assert!(!lower.contains(attr), "{attr}");
        }
        for scheme in ["http://", "https://"] {
            for hit in lower.match_indices(scheme) {
                let before = &lower[..hit.0];
                assert!(
                    before.ends_with("xmlns=\""),
                    "external reference at {}",
                    hit.0
                );
            }
        }
    }

    #[test]
    fn escapes_a_hostile_name() {
        let mut p = patient();
        p.name = Some("<script>alert('x')</script>".to_string());
        p.external_id = "\"><img src=x onerror=alert(1)>".to_string();
        let html = report_html(&report_json(), Some(&p), None, Lang::En).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert("));
        assert!(html.contains("&quot;&gt;&lt;img src=x"));
        // hostile strings inside the stored report are escaped too
        let mut r = report_json();
        r["joints"][0]["region"] = Value::from("<b>radius</b>");
        r["quality"]["laterality"] = Value::from("<i>");
        let html = report_html(&r, None, None, Lang::En).unwrap();
        assert!(html.contains("&lt;b&gt;radius&lt;/b&gt;") && !html.contains("<b>radius"));
        assert!(!html.contains("<i>"));
    }

    #[test]
    fn chinese_report() {
        let html = report_html(
            &report_json(),
            Some(&patient()),
            Some(&two_exam_series()),
            Lang::Zh,
        )
        .unwrap();
        assert!(html.contains("<html lang=\"zh-CN\">"));
        let text = visible(&html);
        for s in [
            "骨龄评估报告",
            "骨龄（模型）",
            "10岁4个月（124.3 个月）",
            "生活年龄",
            "身高",
            "预测成年身高",
            "百分位线 P3–P97（P50 加粗）",
            "桡骨",
            "第五远节指骨",
            "由整幅图像得出",
            "质量控制",
            "镜像（右手）",
            "性别",
            "男",
            "未经临床使用验证",
            "平均绝对误差为 8.87 个月",
            "Bayley–Pinneau (1952) 法",
        ] {
            assert!(text.contains(s), "missing {s:?}");
        }
        // no English label leaks into the Chinese page
        for s in [
            "Bone age (model)",
            "Quality control",
            "Chronological age",
            "not given",
        ] {
            assert!(!text.contains(s), "{s}");
        }
    }

    #[test]
    fn anonymous_analysis_without_growth() {
        let mut r = report_json();
        let obj = r.as_object_mut().unwrap();
        for k in [
            "patient_id",
            "height_cm",
            "weight_kg",
            "growth",
            "chronological_age_months",
            "bone_age_sds",
            "input",
            "source",
        ] {
            obj.remove(k);
        }
        r["bone_age_sds_detail"] = serde_json::json!({"reference": null, "reason": null});
        r["tw3"]["rus_bone_age_months"] = Value::Null;
        r["tw3"]["rus_bone_age_reason"] =
            Value::from("TW3 RUS score 20 is below the published table (boys: score 42 = 2.0 y)");
        r["quality"]["shape"] = Value::Null;
        let html = report_html(&r, None, None, Lang::En).unwrap();
        let text = visible(&html);
        assert!(text.contains("No patient: anonymous analysis"));
        assert!(text.contains("no chronological age"));
        assert!(text.contains("TW3 RUS score 20 is below the published table"));
        assert!(text.contains("No prediction"));
        assert!(text.contains("not checked"));
        assert!(!html.contains("<svg"));
        assert!(!text.contains("NaN"));
    }

    #[test]
    fn adult_height_from_the_series_is_labelled() {
        let mut r = report_json();
        r.as_object_mut().unwrap().remove("growth");
        let text = visible(&en(&r));
        assert!(text.contains("From the patient's growth series"));
        assert!(text.contains("176.5 cm"));
        // height-for-age falls back to the series' point: none there, so its reason
        assert!(text.contains("not computed in this fixture"));
    }

    #[test]
    fn unknown_model_gets_no_figures() {
        let mut r = report_json();
        r["model"]["version"] = Value::from("9.9.9");
        let text = visible(&en(&r));
        assert!(text.contains("no model card for boneage-resnet-sq100 9.9.9"));
        assert!(!text.contains("8.87 months on average"));
    }

    #[test]
    fn missing_or_wrong_fields_are_errors() {
        for field in ["id", "bone_age", "joints", "tw3", "quality", "model", "sex"] {
            let mut r = report_json();
            r.as_object_mut().unwrap().remove(field);
            let e = report_html(&r, None, None, Lang::En).unwrap_err();
            let RenderError::InvalidReport(reason) = &e;
            assert!(reason.contains(field), "{field}: {reason}");
        }
        let mut r = report_json();
        r["bone_age"]["months"] = Value::from("ten");
        assert!(report_html(&r, None, None, Lang::En).is_err());
        assert!(report_html(&Value::Null, None, None, Lang::En).is_err());
        assert!(report_html(&serde_json::json!([1, 2]), None, None, Lang::En).is_err());
    }

    #[test]
    fn model_card_matches_the_model_readme() {
        let card = include_str!("../../models/README.md");
        assert!(card.contains(&format!("`{}` {}", MODEL_CARD.name, MODEL_CARD.version)));
        assert!(card.contains(&format!("**{:.2}**", MODEL_CARD.validation_mae_months)));
        let n = MODEL_CARD.validation_images;
        assert!(card.contains(&format!("| {},{:03} |", n / 1000, n % 1000)));
        assert!(card.contains(&format!("| {:.2} |", MODEL_CARD.interval_coverage_90)));
        assert!(card.contains(&format!("MAE {:.1} months", MODEL_CARD.tw3_rus_mae_months)));
    }
}
