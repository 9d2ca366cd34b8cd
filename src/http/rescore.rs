//! `POST /v1/rescore-jobs` and `GET /v1/rescore-jobs/{id}`: re-scoring the caller's
//! tenant's stored exams with the server's model, as a job persisted in the store
//! and run by [`crate::rescore::exams::JobRunner`] beside the analyses' pool.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::{db, AppState, Problem};
use crate::store::{RescoreFilter, RescoreJob};

/// Which of the tenant's exams with a kept image to re-score (all when empty).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescoreJobCreate {
    /// Exams on or after this ISO date.
    pub from: Option<String>,
    /// Exams on or before this ISO date.
    pub to: Option<String>,
    /// Only exams whose latest analysis is by this model version.
    pub only_model_version: Option<String>,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_field", detail)
}

/// Start re-scoring the tenant's stored exams with the server's model.
///
/// Optional JSON body `{from, to, only_model_version}`. Answers 202 with the job;
/// follow it at `Location`. Exams already analysed by this model are skipped;
/// every exam gets at most one analysis per model, whatever is restarted.
#[utoipa::path(
    post,
    path = "/v1/rescore-jobs",
    request_body(content = Option<RescoreJobCreate>, content_type = "application/json"),
    responses(
        (status = 202, description = "job created", body = RescoreJob),
        (status = 400, description = "invalid_field", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_job(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    body: Bytes,
) -> Result<Response, Problem> {
    let req: RescoreJobCreate = if body.iter().all(u8::is_ascii_whitespace) {
        RescoreJobCreate::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| invalid(format!("body: {e}")))?
    };
    let date = |v: &Option<String>, name: &str| -> Result<Option<time::Date>, Problem> {
        v.as_deref()
            .map(|d| {
                crate::analysis::parse_iso_date(d)
                    .ok_or_else(|| invalid(format!("{name}: not an ISO date (YYYY-MM-DD)")))
            })
            .transpose()
    };
    let mut filter = RescoreFilter::tenant(&tenant);
    filter.from = date(&req.from, "from")?;
    filter.to = date(&req.to, "to")?;
    if let Some(v) = &req.only_model_version {
        if v.is_empty() || v.len() > 128 {
            return Err(invalid("only_model_version: 1–128 characters"));
        }
    }
    filter.only_model_version = req.only_model_version;
    let info = state.analyzer.model().info().clone();
    let job = db(&state, move |s| {
        s.create_rescore_job(&tenant, &filter, &info.name, &info.version, &info.sha256)
    })
    .await?;
    if !state.rescore.submit(job.id.clone()) {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the re-scoring runner has stopped; the job will run when the server restarts",
        ));
    }
    tracing::info!(job = %job.id, "re-scoring job queued");
    let location = format!("/v1/rescore-jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

/// A re-scoring job: state, counts (total, done, skipped, failed by code), times.
#[utoipa::path(
    get,
    path = "/v1/rescore-jobs/{id}",
    params(("id" = String, Path, description = "job id")),
    responses(
        (status = 200, description = "the job", body = RescoreJob),
        (status = 404, description = "not_found (also another tenant's job)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    Path(id): Path<String>,
) -> Result<Json<RescoreJob>, Problem> {
    let shown = id.chars().take(64).collect::<String>();
    db(&state, move |s| s.get_rescore_job(&tenant, &id))
        .await?
        .map(Json)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no re-scoring job {shown:?}"),
            )
        })
}
