//! The HTTP face: a thin axum router over [`Analyzer`]. CPU work runs on the
//! bounded [`WorkerPool`], never on the async runtime's threads.

pub mod auth;
mod history;
mod metrics;
mod openapi;
mod problem;
mod rescore;
pub mod web;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use auth::AuthMode;
pub use history::preferred_lang;
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use problem::Problem;

use crate::analysis::{Analyzer, RawFields};
use crate::model::ModelInfo;
use crate::pool::WorkerPool;
use crate::report::AnalysisReport;
use crate::store::{NewAnalysis, Store, StoreError};
use auth::Caller;

/// Settings of the HTTP face.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest accepted request body (bytes); larger → 413.
    pub max_body_bytes: usize,
    /// Blocking inference workers.
    pub workers: usize,
    /// Analyses that may wait for a worker before 503.
    pub queue_depth: usize,
    /// Workers of the re-scoring jobs (`POST /v1/rescore-jobs`), beside the pool.
    pub rescore_workers: usize,
    /// How long a refused (503) request is held before its answer: clients that
    /// retry at once, ignoring `Retry-After`, would otherwise spend the CPU the
    /// workers need on a storm of refusals.
    pub shed_delay: std::time::Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 64 * 1024 * 1024,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            queue_depth: 16,
            rescore_workers: 1,
            shed_delay: std::time::Duration::from_millis(100),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    analyzer: Arc<Analyzer>,
    pool: Arc<WorkerPool>,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    auth: AuthMode,
    options: ServerOptions,
    rescore: Arc<crate::rescore::exams::JobRunner>,
    shed_log: Arc<ShedLog>,
}

impl AppState {
    /// The state of a server over `store`; `auth` says how requests map to tenants
    /// (usually [`AuthMode::from_store`]).
    pub fn new(
        analyzer: Arc<Analyzer>,
        store: Arc<Store>,
        auth: AuthMode,
        options: ServerOptions,
    ) -> std::io::Result<Self> {
        let pool = WorkerPool::new(options.workers, options.queue_depth)?;
        let metrics = Metrics::new().map_err(std::io::Error::other)?;
        // Resumes the re-scoring jobs a previous server left unfinished.
        let rescore = crate::rescore::exams::JobRunner::start(
            Arc::clone(&analyzer),
            Arc::clone(&store),
            options.rescore_workers,
        )?;
        Ok(AppState {
            analyzer,
            pool: Arc::new(pool),
            metrics: Arc::new(metrics),
            store,
            auth,
            options,
            rescore: Arc::new(rescore),
            shed_log: Arc::new(ShedLog {
                start: std::time::Instant::now(),
                last_s: AtomicU64::new(0),
                since_last: AtomicU64::new(0),
            }),
        })
    }
}

/// Runs a storage call off the async runtime; storage errors become problems.
pub(crate) async fn db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Problem> {
    let store = Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "a storage task failed",
            )
        })?
        .map_err(Problem::from)
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The full API router.
pub fn router(state: AppState) -> Router {
    let limit = state.options.max_body_bytes;
    Router::new()
        .route("/v1/analyses", post(create_analysis))
        .route("/v1/analyses/{id}", get(history::get_analysis))
        .route("/v1/analyses/{id}/report.html", get(history::analysis_report))
        .route(
            "/v1/patients",
            post(history::create_patient).get(history::find_patients),
        )
        .route("/v1/patients/{id}", get(history::get_patient))
        .route("/v1/patients/{id}/exams", get(history::patient_exams))
        .route("/v1/patients/{id}/growth", get(history::patient_growth))
        .route("/v1/patients/{id}/growth.svg", get(history::patient_growth_svg))
        .route("/v1/rescore-jobs", post(rescore::create_job))
        .route("/v1/rescore-jobs/{id}", get(rescore::get_job))
        .route("/v1/model", get(model_info))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .merge(web::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(limit))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // Path only: query strings and bodies may carry patient data.
                    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_failure(log_failure),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, then finishes
/// the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let res = next.run(req).await;
    let m = &state.metrics;
    m.requests
        .with_label_values(&[route.as_str(), res.status().as_str()])
        .inc();
    m.request_seconds
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    res
}

/// Analyse a radiograph.
///
/// `multipart/form-data` with an `image` file part and text fields, or a raw
/// `application/dicom`, `image/png`, `image/jpeg` or `image/tiff` body with the
/// fields as query parameters. A DICOM header fills the fields the request leaves out.
#[utoipa::path(
    post,
    path = "/v1/analyses",
    params(
        ("sex" = Option<String>, Query, description = "male or female (required here, as a form field, or in the DICOM header)"),
        ("chronological_age_months" = Option<f64>, Query, description = "chronological age in months"),
        ("birth_date" = Option<String>, Query, description = "ISO date; needs exam_date"),
        ("exam_date" = Option<String>, Query, description = "ISO date; needs birth_date"),
        ("patient_id" = Option<String>, Query, description = "file the exam under this patient (sex and birth date come from the record; the exam date from the request, the DICOM header or today)"),
        ("external_id" = Option<String>, Query, description = "the same, by the hospital's patient identifier"),
        ("height_cm" = Option<f64>, Query, description = "height (cm): height-for-age z-score and predicted adult height"),
        ("weight_kg" = Option<f64>, Query, description = "weight (kg)"),
        ("mother_height_cm" = Option<f64>, Query, description = "mother's height (cm)"),
        ("father_height_cm" = Option<f64>, Query, description = "father's height (cm)"),
        ("tw2_rus_bone_age_months" = Option<f64>, Query, description = "a reader's TW2 RUS bone age (months), for the Tanner 1975 prediction"),
        ("menarche" = Option<bool>, Query, description = "girls: menarche has occurred (Tanner 1975)"),
        ("height_reference" = Option<String>, Query, description = "`who` (default) or `cdc`"),
        ("store_image" = Option<bool>, Query, description = "keep the radiograph (content-addressed) so the exam can be re-scored; default false"),
    ),
    request_body(content_type = "multipart/form-data", description = "the radiograph as an `image` part with the fields as form parts; or a raw application/dicom, image/png, image/jpeg or image/tiff body with the fields as query parameters"),
    responses(
        (status = 200, description = "analysis", body = AnalysisReport),
        (status = 400, description = "missing_image, missing_field, invalid_field", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "image_too_large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_format", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "corrupt_image, resolution_too_low, not_a_hand, multiple_hands, poor_exposure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded (with Retry-After)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn create_analysis(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("query string: {}", e.body_text()),
        )
    })?;
    let mut fields = UploadFields::default();
    for (k, v) in query {
        fields.set(&k, v)?;
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let image: Bytes = if ctype.starts_with("multipart/form-data") {
        read_multipart(&state, req, &mut fields).await?
    } else if ctype.starts_with("image/")
        || ctype.starts_with("application/dicom")
        || ctype.starts_with("application/octet-stream")
    {
        let body = Bytes::from_request(req, &state)
            .await
            .map_err(|e| body_problem(e.status(), e.body_text()))?;
        if body.is_empty() {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "missing_image",
                "the request body is empty",
            ));
        }
        body
    } else if ctype.is_empty() {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            "missing Content-Type: send multipart/form-data with an `image` part, or application/dicom, image/png, image/jpeg or image/tiff",
        ));
    } else {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            format!(
                "Content-Type {:?} is not accepted: send multipart/form-data, application/dicom, image/png, image/jpeg or image/tiff",
                ctype.chars().take(80).collect::<String>()
            ),
        ));
    };
    let UploadFields {
        raw: mut fields,
        patient_id,
        external_id,
        store_image,
    } = fields;
    // Fields are checked now; the ones a DICOM header can supply may still be missing.
    fields.precheck()?;
    let patient = match (patient_id, external_id) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "give either patient_id or external_id, not both",
            ))
        }
        (id, ext) => {
            let t = tenant.clone();
            let shown = id.clone().or(ext.clone()).unwrap_or_default();
            let found = db(&state, move |s| match (id, ext) {
                (Some(id), _) => s.get_patient(&t, &id),
                (None, Some(ext)) => s.find_patient_by_external_id(&t, &ext),
                (None, None) => Ok(None),
            })
            .await?;
            let p = found.ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!(
                        "no patient {:?}: create it first with POST /v1/patients",
                        shown.chars().take(64).collect::<String>()
                    ),
                )
            })?;
            file_under_patient(&mut fields, &p)?;
            Some(p)
        }
    };
    if !crate::dicom::is_dicom(&image) && fields.sex.is_none() {
        fields.clone().into_request()?;
    }

    let analyzer = Arc::clone(&state.analyzer);
    let mut inputs = fields.to_json();
    inputs["store_image"] = store_image.into();
    let upload = image.clone();
    let result = on_pool(&state, move || analyzer.analyze_upload(&upload, fields)).await?;
    let mut report = match result {
        Ok(report) => report,
        Err(e) => {
            tracing::info!(code = e.code(), "analysis refused");
            return Err(e.into());
        }
    };
    state.metrics.observe_stages(&report.timings_ms);
    report.patient_id = patient.as_ref().map(|p| p.id.clone());
    // Acknowledged only once stored: the row (and the image, when kept) is durable
    // before the answer leaves.
    let stored = report.clone();
    let kept = store_image.then_some(image);
    let commit = std::time::Instant::now();
    db(&state, move |s| {
        let rec = new_analysis(&stored, inputs, kept.as_deref())?;
        s.insert_analysis(&tenant, &rec)
    })
    .await?;
    state
        .metrics
        .stage_seconds
        .with_label_values(&["store"])
        .observe(commit.elapsed().as_secs_f64());
    tracing::info!(
        analysis_id = %report.id,
        total_ms = report.timings_ms.total,
        "analysis done"
    );
    let location = format!("/v1/analyses/{}", report.id);
    Ok(([(header::LOCATION, location)], Json(report)).into_response())
}

/// The fields of an upload: the analysis's own, and where to file it.
#[derive(Debug, Default)]
struct UploadFields {
    raw: RawFields,
    patient_id: Option<String>,
    external_id: Option<String>,
    store_image: bool,
}

impl UploadFields {
    fn set(&mut self, name: &str, value: String) -> Result<(), Problem> {
        let too_long = |n: &str| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                format!("field `{n}` is longer than 128 bytes"),
            )
        };
        match name {
            "patient_id" | "external_id" => {
                let v = value.trim().to_string();
                if v.len() > 128 {
                    return Err(too_long(name));
                }
                if name == "patient_id" {
                    self.patient_id = Some(v);
                } else {
                    self.external_id = Some(v);
                }
            }
            "store_image" => {
                self.store_image = match value.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(Problem::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_field",
                            "store_image: give `true` or `false`",
                        ))
                    }
                }
            }
            _ => self.raw.set(name, value)?,
        }
        Ok(())
    }
}

/// Fills sex and birth date from the patient record; a request that contradicts
/// the record is refused rather than filed under the wrong child.
fn file_under_patient(fields: &mut RawFields, p: &crate::store::Patient) -> Result<(), Problem> {
    let clash = |what: &str| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("{what} contradicts the patient record; correct the record or the request"),
        )
    };
    if fields.chronological_age_months.is_some() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "an exam filed under a patient takes its age from the birth date and the exam \
             date: give exam_date (or let the DICOM StudyDate or today's date give it), \
             not chronological_age_months",
        ));
    }
    match fields.sex.as_deref().map(crate::Sex::parse) {
        Some(Some(s)) if s != p.sex => return Err(clash("sex")),
        Some(_) => {}
        None => {
            fields.sex = Some(p.sex.as_str().to_string());
            fields.from_patient.push("sex");
        }
    }
    let birth = crate::analysis::iso_date(p.birth_date);
    match fields.birth_date.as_deref() {
        Some(b) if b.trim() != birth => return Err(clash("birth_date")),
        Some(_) => {}
        None => {
            fields.birth_date = Some(birth);
            fields.from_patient.push("birth_date");
        }
    }
    fields.exam_date_fallback = Some(crate::analysis::iso_date(
        time::OffsetDateTime::now_utc().date(),
    ));
    Ok(())
}

fn new_analysis<'a>(
    report: &AnalysisReport,
    mut inputs: serde_json::Value,
    image: Option<&'a [u8]>,
) -> Result<NewAnalysis<'a>, StoreError> {
    let result = serde_json::to_value(report)
        .map_err(|e| StoreError::Corrupt(format!("the report could not be serialised: {e}")))?;
    inputs["source"] = result["source"].clone();
    let exam_date =
        match report.exam_date.as_deref() {
            None => None,
            Some(d) => Some(crate::analysis::parse_iso_date(d).ok_or_else(|| {
                StoreError::Invalid(format!("exam date {d:?} is not an ISO date"))
            })?),
        };
    let m = &report.measurements;
    Ok(NewAnalysis {
        id: report.id.clone(),
        patient_id: report.patient_id.clone(),
        exam_date,
        chronological_age_months: report.chronological_age_months,
        sex: report.sex,
        bone_age_months: report.bone_age.months,
        bone_age_sd_months: report.bone_age.sd_months,
        height_cm: m.height_cm,
        weight_kg: m.weight_kg,
        mother_height_cm: m.mother_height_cm,
        father_height_cm: m.father_height_cm,
        image_sha256: report.input.sha256.clone(),
        image,
        inputs_json: inputs,
        result_json: result,
        model_name: report.model.name.clone(),
        model_version: report.model.version.clone(),
        model_sha256: report.model.sha256.clone(),
    })
}

/// Runs CPU work on the worker pool: 503 `overloaded` at once when workers and
/// queue are full, 500 if the worker dies; the pool gauges follow.
pub(crate) async fn on_pool<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    let rx = match state.pool.try_run(job) {
        Ok(rx) => rx,
        Err(_) => {
            let problem = shed(state);
            tokio::time::sleep(state.options.shed_delay).await;
            return Err(problem);
        }
    };
    update_pool_gauges(state);
    let out = rx.await.map_err(|_| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a worker failed",
        )
    });
    update_pool_gauges(state);
    out
}

/// Server errors in the log, one line each, except the 503s of shedding: those come
/// in floods exactly when the machine is busiest, so [`shed`] summarises them.
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass as Class;
    match class {
        Class::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {}
        other => tracing::error!(
            failure = %other,
            latency_ms = latency.as_millis() as u64,
            "response failed"
        ),
    }
}

/// The 503 of a full pool. The log says so at most every [`SHED_LOG_EVERY_S`]
/// seconds with the count since its last line (one line per refusal would flood the
/// log exactly when the machine is busiest); the metrics count every one.
fn shed(state: &AppState) -> Problem {
    let log = &state.shed_log;
    log.since_last.fetch_add(1, Ordering::Relaxed);
    let now = log.start.elapsed().as_secs();
    let last = log.last_s.load(Ordering::Relaxed);
    let due = last == 0 || now >= last + SHED_LOG_EVERY_S;
    if due
        && log
            .last_s
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let count = log.since_last.swap(0, Ordering::Relaxed);
        tracing::warn!(
            shed = count,
            "queue full: shedding requests with 503 (count since the last such line)"
        );
    }
    Problem::overloaded()
}

const SHED_LOG_EVERY_S: u64 = 10;

/// State of the rate-limited shedding log line.
struct ShedLog {
    start: std::time::Instant,
    /// Seconds after `start` of the last line (0: none yet).
    last_s: AtomicU64,
    since_last: AtomicU64,
}

fn update_pool_gauges(state: &AppState) {
    let s = state.pool.stats();
    let in_flight = s.in_flight.load(Ordering::Relaxed) as i64;
    let running = s.running.load(Ordering::Relaxed) as i64;
    state.metrics.in_flight.set(in_flight);
    state.metrics.queued.set((in_flight - running).max(0));
}

async fn read_multipart(
    state: &AppState,
    req: Request,
    fields: &mut UploadFields,
) -> Result<Bytes, Problem> {
    let mut mp = axum::extract::Multipart::from_request(req, state)
        .await
        .map_err(|e| body_problem(e.status(), e.body_text()))?;
    let mut image: Option<Bytes> = None;
    let mut parts = 0usize;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| body_problem(e.status(), e.body_text()))?
    {
        parts += 1;
        if parts > 32 {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "too many form parts (max 32)",
            ));
        }
        let name = field.name().unwrap_or("").to_string();
        if name == "image" {
            if image.is_some() {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "more than one `image` part",
                ));
            }
            image = Some(
                field
                    .bytes()
                    .await
                    .map_err(|e| body_problem(e.status(), e.body_text()))?,
            );
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| body_problem(e.status(), e.body_text()))?;
            fields.set(&name, text)?;
        }
    }
    match image {
        Some(b) if !b.is_empty() => Ok(b),
        Some(_) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "missing_image",
            "the `image` part is empty",
        )),
        None => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "missing_image",
            "no `image` part in the form: attach the radiograph as `image`",
        )),
    }
}

fn body_problem(status: StatusCode, text: String) -> Problem {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            status,
            "image_too_large",
            "the request body exceeds the configured limit",
        )
    } else {
        Problem::new(status, "invalid_body", text)
    }
}

/// The loaded model.
#[utoipa::path(get, path = "/v1/model", responses((status = 200, body = ModelInfo)))]
async fn model_info(State(state): State<AppState>) -> Json<ModelInfo> {
    Json(state.analyzer.model().info().clone())
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the model is loaded and the pool has capacity.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "saturated")))]
async fn readyz(State(state): State<AppState>) -> Response {
    let info = state.analyzer.model().info();
    let s = state.pool.stats();
    let saturated =
        s.in_flight.load(Ordering::Relaxed) >= state.pool.workers() + state.pool.queue_depth();
    let body = serde_json::json!({
        "status": if saturated { "saturated" } else { "ready" },
        "model": {"name": info.name, "version": info.version, "sha256": info.sha256},
        "workers": state.pool.workers(),
        "queue_depth": state.pool.queue_depth(),
    });
    let status = if saturated {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> Response {
    update_pool_gauges(&state);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi;
    Json(ApiDoc::openapi())
}

async fn not_found(req: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {} {}",
            req.method(),
            req.uri().path().chars().take(120).collect::<String>()
        ),
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
    // Give the log line a moment; in-flight requests are awaited by axum.
    tokio::time::sleep(Duration::from_millis(10)).await;
}
