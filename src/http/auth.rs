//! Who is asking: the tenant behind a request.
//!
//! Two modes, fixed when the server starts ([`AuthMode::from_store`]):
//! - **tokens**: at least one bearer token exists. Every `/v1/` request that reads
//!   or writes analyses or patients carries `Authorization: Bearer <token>`; the
//!   token is hashed and looked up on each request, so a revoked token stops working
//!   at once. Missing or unknown → 401 `unauthorized`.
//! - **local**: no token exists. One implicit tenant (`local`) owns everything, and
//!   the server only listens on loopback (`main.rs` refuses anything else).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{db, AppState, Problem};
use crate::store::{Store, StoreError, Tenant};

/// How requests are mapped to tenants.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Bearer tokens required.
    Tokens,
    /// No tokens configured: everything belongs to this one tenant.
    Local(Tenant),
}

impl AuthMode {
    /// Tokens when the store has any active token, else local mode.
    pub fn from_store(store: &Store) -> Result<AuthMode, StoreError> {
        if store.has_tokens()? {
            Ok(AuthMode::Tokens)
        } else {
            Ok(AuthMode::Local(store.local_tenant()?))
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, AuthMode::Local(_))
    }
}

/// The authenticated tenant of a request (an axum extractor).
pub struct Caller(pub Tenant);

/// A 401 with `WWW-Authenticate: Bearer`.
pub struct Unauthorized(Problem);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut res = self.0.into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"boneage\""),
        );
        res
    }
}

impl From<Problem> for Unauthorized {
    fn from(p: Problem) -> Self {
        Unauthorized(p)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match &state.auth {
            AuthMode::Local(t) => Ok(Caller(t.clone())),
            AuthMode::Tokens => {
                let token = bearer(parts).map_err(|p| Unauthorized(p).into_response())?;
                let found = db(state, move |s| s.authenticate(&token))
                    .await
                    .map_err(IntoResponse::into_response)?;
                match found {
                    Some(t) => Ok(Caller(t)),
                    None => Err(Unauthorized(Problem::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "the bearer token is not valid (unknown or revoked)",
                    ))
                    .into_response()),
                }
            }
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(parts: &Parts) -> Result<String, Problem> {
    let missing = || {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this service requires `Authorization: Bearer <token>` (ask the administrator for a token: `boneage token create --tenant NAME`)",
        )
    };
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 256 {
        return Err(missing());
    }
    Ok(token.to_string())
}
