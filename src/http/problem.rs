//! `application/problem+json` (RFC 9457) with a stable machine `code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::AnalysisError;
use crate::store::StoreError;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:boneage:problem:<code>`
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine code, e.g. `unsupported_format`, `overloaded`.
    pub code: String,
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:boneage:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
            retry_after: None,
        }
    }

    pub fn overloaded() -> Self {
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "all workers are busy and the queue is full; retry shortly",
        );
        p.retry_after = Some(1);
        p
    }
}

impl From<AnalysisError> for Problem {
    fn from(e: AnalysisError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Problem::new(status, e.code(), e.to_string())
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Problem::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such record for this tenant",
            ),
            StoreError::Conflict(why) => Problem::new(StatusCode::CONFLICT, "conflict", why),
            StoreError::Invalid(why) => Problem::new(StatusCode::BAD_REQUEST, "invalid_field", why),
            other => {
                // The error names tables and paths, never patient data.
                tracing::error!(error = %other, "storage failed");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_failed",
                    "the record could not be read or written; nothing was acknowledged",
                )
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}
