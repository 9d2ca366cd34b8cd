//! Patients, stored analyses, growth and the printable report: thin handlers over
//! [`crate::store::Store`], [`crate::growth::series`] and [`crate::render`]. Every
//! query is scoped by the caller's tenant; another tenant's record is a 404,
//! exactly like one that does not exist.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{db, AppState, Problem};
use crate::analysis::{iso_date, parse_iso_date};
use crate::growth::height::HeightReference;
use crate::growth::series::{growth_series, ExamPoint, GrowthInputs, GrowthSeries};
use crate::render::{self, Lang, PatientView};
use crate::store::{NewPatient, Patient, StoredAnalysis};
use crate::Sex;

/// Body of `POST /v1/patients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientCreate {
    /// The hospital's own patient identifier (unique within the tenant).
    pub external_id: String,
    /// `male` or `female`.
    pub sex: String,
    /// ISO date (YYYY-MM-DD).
    pub birth_date: String,
    pub name: Option<String>,
}

/// Create a patient.
#[utoipa::path(
    post,
    path = "/v1/patients",
    request_body = PatientCreate,
    responses(
        (status = 201, description = "created", body = Patient),
        (status = 400, description = "invalid_field, invalid_body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "conflict: the external_id exists", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_patient(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    body: Bytes,
) -> Result<Response, Problem> {
    if body.len() > 16 * 1024 {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_body",
            "a patient record is at most 16 KiB of JSON",
        ));
    }
    let p: PatientCreate = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body must be a JSON patient record: {e}"),
        )
    })?;
    let sex = Sex::parse(&p.sex).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "sex: give `male` or `female`",
        )
    })?;
    let birth_date = parse_iso_date(&p.birth_date).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "birth_date: give an ISO date (YYYY-MM-DD)",
        )
    })?;
    let new = NewPatient {
        external_id: p.external_id,
        sex,
        birth_date,
        name: p.name,
    };
    let patient = db(&state, move |s| s.create_patient(&tenant, &new)).await?;
    let location = format!("/v1/patients/{}", patient.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(patient),
    )
        .into_response())
}

/// A patient.
#[utoipa::path(
    get,
    path = "/v1/patients/{id}",
    params(("id" = String, Path, description = "patient id")),
    responses(
        (status = 200, body = Patient),
        (status = 404, description = "not_found (also for another tenant's patient)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_patient(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> Result<Json<Patient>, Problem> {
    Ok(Json(patient_or_404(&state, tenant, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PatientQuery {
    /// The hospital's patient identifier.
    pub external_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatientList {
    pub patients: Vec<Patient>,
}

/// Find a patient by the hospital's identifier.
#[utoipa::path(
    get,
    path = "/v1/patients",
    params(PatientQuery),
    responses((status = 200, description = "zero or one patient", body = PatientList)),
    security(("bearer" = []))
)]
pub async fn find_patients(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    query: Result<Query<PatientQuery>, QueryRejection>,
) -> Result<Json<PatientList>, Problem> {
    let Query(q) = query.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("query: {} (give `external_id`)", e.body_text()),
        )
    })?;
    let found = db(&state, move |s| {
        s.find_patient_by_external_id(&tenant, &q.external_id)
    })
    .await?;
    Ok(Json(PatientList {
        patients: found.into_iter().collect(),
    }))
}

/// A stored analysis: the full JSON the analysis returned.
#[utoipa::path(
    get,
    path = "/v1/analyses/{id}",
    params(("id" = String, Path, description = "analysis id")),
    responses(
        (status = 200, description = "the stored analysis report", body = crate::report::AnalysisReport),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_analysis(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let a = analysis_or_404(&state, tenant, id).await?;
    Ok(Json(a.result_json))
}

/// One exam in a patient's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExamSummary {
    pub analysis_id: String,
    pub exam_date: Option<String>,
    pub created_at: String,
    pub chronological_age_months: Option<f64>,
    pub bone_age_months: f64,
    pub bone_age_sd_months: f64,
    /// The 90% interval of the bone age, as the analysis reported it.
    pub interval_90: Option<[f64; 2]>,
    pub bone_age_sds: Option<f64>,
    pub tw3_rus_score: Option<u32>,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    pub model: ModelSummary,
    /// The radiograph was kept (`store_image=true`), so the exam can be re-scored.
    pub image_stored: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExamList {
    pub patient: Patient,
    /// Oldest first.
    pub exams: Vec<ExamSummary>,
}

/// A patient's exams, oldest first.
#[utoipa::path(
    get,
    path = "/v1/patients/{id}/exams",
    params(("id" = String, Path, description = "patient id")),
    responses((status = 200, body = ExamList), (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn patient_exams(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> Result<Json<ExamList>, Problem> {
    let (patient, exams) = history(&state, tenant, id).await?;
    let exams = exams.iter().map(summary).collect();
    Ok(Json(ExamList { patient, exams }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// Height reference: `who` (WHO 2006/2007, default) or `cdc` (CDC 2000).
    pub reference: Option<HeightReference>,
    /// Language of charts and reports: `en` or `zh` (default: from Accept-Language, else `en`).
    pub lang: Option<String>,
}

/// A patient's growth: points, reference percentiles, bone-age band, velocities and
/// predicted adult height.
#[utoipa::path(
    get,
    path = "/v1/patients/{id}/growth",
    params(("id" = String, Path, description = "patient id"), ViewQuery),
    responses((status = 200, body = GrowthSeries), (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn patient_growth(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Result<Json<GrowthSeries>, Problem> {
    let q = view_query(query)?;
    let (patient, exams) = history(&state, tenant, id).await?;
    Ok(Json(series_of(
        &patient,
        &exams,
        q.reference.unwrap_or_default(),
    )))
}

/// The growth chart: bone age vs age and height-for-age, as SVG.
#[utoipa::path(
    get,
    path = "/v1/patients/{id}/growth.svg",
    params(("id" = String, Path, description = "patient id"), ViewQuery),
    responses((status = 200, description = "SVG chart", content_type = "image/svg+xml"), (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn patient_growth_svg(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = view_query(query)?;
    let lang = lang_of(&q, &headers);
    let (patient, exams) = history(&state, tenant, id).await?;
    let series = series_of(&patient, &exams, q.reference.unwrap_or_default());
    Ok(document(
        "image/svg+xml; charset=utf-8",
        render::growth_svg(&series, lang),
    ))
}

/// The printable one-page report of an analysis (with the patient's growth chart
/// when the analysis is filed under a patient).
#[utoipa::path(
    get,
    path = "/v1/analyses/{id}/report.html",
    params(("id" = String, Path, description = "analysis id"), ViewQuery),
    responses((status = 200, description = "HTML report", content_type = "text/html"), (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn analysis_report(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ViewQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = view_query(query)?;
    let lang = lang_of(&q, &headers);
    let reference = q.reference.unwrap_or_default();
    let t = tenant.clone();
    let analysis = analysis_or_404(&state, t, id).await?;
    let (patient, growth) = match analysis.patient_id.clone() {
        None => (None, None),
        Some(pid) => {
            let (p, exams) = history(&state, tenant, pid).await?;
            let g = series_of(&p, &exams, reference);
            (Some(view(&p)), Some(g))
        }
    };
    let html = render::report_html(
        &analysis.result_json,
        patient.as_ref(),
        growth.as_ref(),
        lang,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "stored analysis could not be rendered");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the stored analysis could not be rendered",
        )
    })?;
    Ok(document("text/html; charset=utf-8", html))
}

/// A rendered document about a patient: never cached by browsers or proxies.
fn document(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn view_query(query: Result<Query<ViewQuery>, QueryRejection>) -> Result<ViewQuery, Problem> {
    query.map(|Query(q)| q).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("query: {}", e.body_text()),
        )
    })
}

/// `?lang=` wins; else Chinese when the browser prefers it; else English.
fn lang_of(q: &ViewQuery, headers: &HeaderMap) -> Lang {
    if let Some(l) = q.lang.as_deref().and_then(Lang::parse) {
        return l;
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    preferred_lang(accept)
}

/// The first language of an Accept-Language header this service speaks.
pub fn preferred_lang(accept: &str) -> Lang {
    let mut best: Option<(f32, Lang)> = None;
    for part in accept.split(',').take(16) {
        let mut it = part.split(';');
        let tag = it.next().unwrap_or("").trim();
        let q = it
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        if let Some(l) = Lang::parse(tag) {
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, l));
            }
        }
    }
    best.map_or(Lang::En, |(_, l)| l)
}

async fn patient_or_404(
    state: &AppState,
    tenant: crate::store::Tenant,
    id: String,
) -> Result<Patient, Problem> {
    let shown = id.chars().take(64).collect::<String>();
    db(state, move |s| s.get_patient(&tenant, &id))
        .await?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no patient {shown:?}"),
            )
        })
}

async fn analysis_or_404(
    state: &AppState,
    tenant: crate::store::Tenant,
    id: String,
) -> Result<StoredAnalysis, Problem> {
    let shown = id.chars().take(64).collect::<String>();
    db(state, move |s| s.get_analysis(&tenant, &id))
        .await?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no analysis {shown:?}"),
            )
        })
}

/// The patient and all their stored analyses, oldest first.
async fn history(
    state: &AppState,
    tenant: crate::store::Tenant,
    id: String,
) -> Result<(Patient, Vec<StoredAnalysis>), Problem> {
    let t = tenant.clone();
    let patient = patient_or_404(state, t, id).await?;
    let pid = patient.id.clone();
    let exams = db(state, move |s| s.patient_analyses(&tenant, &pid)).await?;
    Ok((patient, exams))
}

fn summary(a: &StoredAnalysis) -> ExamSummary {
    let r = &a.result_json;
    let interval = r["bone_age"]["interval_90"]
        .as_array()
        .and_then(|v| Some([v.first()?.as_f64()?, v.get(1)?.as_f64()?]));
    ExamSummary {
        analysis_id: a.id.clone(),
        exam_date: a.exam_date.map(iso_date),
        created_at: a.created_at.clone(),
        chronological_age_months: a.chronological_age_months,
        bone_age_months: a.bone_age_months,
        bone_age_sd_months: a.bone_age_sd_months,
        interval_90: interval,
        bone_age_sds: r["bone_age_sds"].as_f64(),
        tw3_rus_score: r["tw3"]["rus_score"].as_u64().map(|v| v as u32),
        height_cm: a.height_cm,
        weight_kg: a.weight_kg,
        model: ModelSummary {
            name: a.model_name.clone(),
            version: a.model_version.clone(),
            sha256: a.model_sha256.clone(),
        },
        image_stored: a.image_stored,
    }
}

/// The growth series of a patient's stored exams. Parents' heights: the latest
/// exam that gives each.
pub fn series_of(
    patient: &Patient,
    exams: &[StoredAnalysis],
    reference: HeightReference,
) -> GrowthSeries {
    let latest = |f: fn(&StoredAnalysis) -> Option<f64>| exams.iter().rev().find_map(f);
    let inputs = GrowthInputs {
        sex: patient.sex,
        exams: exams
            .iter()
            .map(|a| ExamPoint {
                analysis_id: a.id.clone(),
                exam_date: a.exam_date.map(iso_date),
                chronological_age_months: a.chronological_age_months,
                bone_age_months: a.bone_age_months,
                bone_age_sd_months: a.bone_age_sd_months,
                height_cm: a.height_cm,
                weight_kg: a.weight_kg,
            })
            .collect(),
        mother_height_cm: latest(|a| a.mother_height_cm),
        father_height_cm: latest(|a| a.father_height_cm),
        reference,
    };
    growth_series(&inputs)
}

fn view(p: &Patient) -> PatientView {
    PatientView {
        id: p.id.clone(),
        external_id: p.external_id.clone(),
        name: p.name.clone(),
        sex: p.sex,
        birth_date: iso_date(p.birth_date),
    }
}
