//! The API's one place that turns failures into responses: RFC 7807 problem details
//! (`application/problem+json`), with a stable `type` per kind of failure, the HTTP status,
//! a title, and a one-line `detail` that names what to fix and never holds a secret.

use airlock_core::access::Refusal;
use airlock_engine::access::AccessError;
use airlock_store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the `type` URIs of airlock's problems point (relative to the API's base: a reader
/// resolves them against the document; `docs/api.md` explains each).
const TYPE_BASE: &str = "https://airlock.invalid/problems/";

/// An RFC 7807 problem details object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (stable; see docs/api.md).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened here, one line, naming what to fix.
    pub detail: String,
}

/// Why an API request failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credentials, or credentials that are not accepted.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing has that id (or the caller may not know it exists).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed: a field, a parameter or the body.
    #[error("{0}")]
    Invalid(String),
    /// The route has no such method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request conflicts with the state: wrong state for the action, reused idempotency key.
    #[error("{0}")]
    Conflict(String),
    /// The policy refuses it as asked (no rule, too long, a reason missing).
    #[error("{0}")]
    Refused(String),
    /// A dependency (the store, the directory, the identity provider) is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed that the caller cannot fix; the server log has more.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::Invalid(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            ),
            ApiError::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflict with the current state",
            ),
            ApiError::Refused(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused-by-policy",
                "Refused by the access policy",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// The problem details of this error.
    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.parts();
        Problem {
            kind: format!("{TYPE_BASE}{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail: self.to_string(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotInDirectory(_) | Refusal::Forbidden(_) => {
                ApiError::Forbidden(r.to_string())
            }
            Refusal::WrongState { .. } => ApiError::Conflict(r.to_string()),
            Refusal::Invalid(_) => ApiError::Invalid(r.to_string()),
            Refusal::NoRule { .. } | Refusal::TooLong { .. } | Refusal::ReasonRequired => {
                ApiError::Refused(r.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyKeyReused { .. } => ApiError::Conflict(e.to_string()),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "api request refused: the state store is unavailable");
                ApiError::Unavailable(
                    "the state store is unavailable; nothing was changed, retry later".into(),
                )
            }
            e => {
                tracing::error!(error = %e, "api request failed in the state store");
                ApiError::Internal("the state store failed; see the server log".into())
            }
        }
    }
}

/// The errors of reading observed access (`airlock_engine::history`).
impl From<airlock_engine::EngineError> for ApiError {
    fn from(e: airlock_engine::EngineError) -> Self {
        match e {
            airlock_engine::EngineError::Store(e) => e.into(),
            airlock_engine::EngineError::Access(e) => e.into(),
            e => {
                tracing::error!(error = %e, "api request failed");
                ApiError::Internal("stored observations are unreadable; see the server log".into())
            }
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Refused(r) => r.into(),
            AccessError::NotFound(id) => {
                ApiError::NotFound(format!("no access request has id {id}"))
            }
            AccessError::Store(e) => e.into(),
            e @ AccessError::Corrupt { .. } => {
                tracing::error!(error = %e, "api request failed: a stored request is unreadable");
                ApiError::Internal(
                    "a stored access request is unreadable; see the server log".into(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&problem).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"airlock-api\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
