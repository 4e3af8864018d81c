//! Typed errors of the Airflow connector.
//!
//! Every error says which instance, which call and which object, and classifies itself
//! ([`ErrorClass`]) so that callers decide on retries from the class, never from the text.
//! Messages never carry credentials: request bodies are not echoed, and FastAPI validation
//! errors are reduced to their `loc` and `msg` because their `input` field would repeat the
//! request body, password included.

use airlock_core::InstanceName;
use std::fmt;
use std::time::Duration;

/// What the connector was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    /// `GET /api/v2/version` or `/api/v1/version`.
    Version,
    /// `POST /auth/token`.
    Token,
    /// List users (one page).
    ListUsers,
    /// Get one user.
    GetUser,
    /// Create a user.
    CreateUser,
    /// Change a user (roles, profile, password).
    UpdateUser,
    /// Delete a user.
    DeleteUser,
    /// List roles (one page).
    ListRoles,
    /// Get one role.
    GetRole,
    /// Create a role.
    CreateRole,
    /// Change a role's permissions.
    UpdateRole,
    /// Delete a role.
    DeleteRole,
    /// List permissions (one page).
    ListPermissions,
}

impl Call {
    /// Every call kind, for reporting.
    pub const ALL: [Call; 13] = [
        Call::Version,
        Call::Token,
        Call::ListUsers,
        Call::GetUser,
        Call::CreateUser,
        Call::UpdateUser,
        Call::DeleteUser,
        Call::ListRoles,
        Call::GetRole,
        Call::CreateRole,
        Call::UpdateRole,
        Call::DeleteRole,
        Call::ListPermissions,
    ];

    /// Human name, used in messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Version => "get version",
            Call::Token => "get token",
            Call::ListUsers => "list users",
            Call::GetUser => "get user",
            Call::CreateUser => "create user",
            Call::UpdateUser => "update user",
            Call::DeleteUser => "delete user",
            Call::ListRoles => "list roles",
            Call::GetRole => "get role",
            Call::CreateRole => "create role",
            Call::UpdateRole => "update role",
            Call::DeleteRole => "delete role",
            Call::ListPermissions => "list permissions",
        }
    }

    /// Whether the call changes anything in Airflow.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Call::CreateUser
                | Call::UpdateUser
                | Call::DeleteUser
                | Call::CreateRole
                | Call::UpdateRole
                | Call::DeleteRole
        )
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether and how a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// May succeed if tried again: 5xx, timeouts, resets, refused connections.
    Transient,
    /// The server asked us to slow down; retry after the given delay if known.
    RateLimited(Option<Duration>),
    /// Will fail again until something changes: 4xx, bad credentials, TLS, not Airflow.
    Permanent,
    /// The object already exists or changed concurrently (409).
    Conflict,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// No TCP connection could be made.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// The call did not finish within its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke mid-call (reset, truncated body).
    #[error("connection failed mid-call: {0}")]
    Interrupted(String),
    /// The TLS handshake failed (certificate not trusted, wrong host, ...).
    #[error("TLS error: {0}")]
    Tls(String),
    /// The server answered 5xx.
    #[error("server error {status}{}", detail_suffix(detail))]
    Server {
        /// HTTP status.
        status: u16,
        /// Error detail from the body.
        detail: Option<String>,
    },
    /// 429 Too Many Requests.
    #[error("rate limited{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// Delay asked by `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The credentials were rejected.
    #[error("credentials rejected ({status}){}", detail_suffix(detail))]
    Unauthorized {
        /// 401, or 403 where Airflow 2 answers bad basic auth that way.
        status: u16,
        /// Error detail from the body.
        detail: Option<String>,
    },
    /// Authenticated, but not allowed.
    #[error("permission denied (403){}", detail_suffix(detail))]
    Forbidden {
        /// Error detail from the body.
        detail: Option<String>,
    },
    /// The object does not exist.
    #[error("not found (404){}", detail_suffix(detail))]
    NotFound {
        /// Error detail from the body.
        detail: Option<String>,
    },
    /// The object already exists or conflicts (409).
    #[error("conflict (409){}", detail_suffix(detail))]
    Conflict {
        /// Error detail from the body.
        detail: Option<String>,
    },
    /// Any other 4xx.
    #[error("rejected ({status}){}", detail_suffix(detail))]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Error detail from the body.
        detail: Option<String>,
    },
    /// The server answered something other than the expected JSON.
    #[error("unexpected response: {0}")]
    Malformed(String),
    /// An HTML page came back where JSON was expected.
    #[error("answered {status} with an HTML page where JSON was expected")]
    UnexpectedHtml {
        /// HTTP status.
        status: u16,
    },
    /// The URL does not serve an Airflow REST API.
    #[error("not an Airflow API: {0}")]
    NotAirflow(String),
    /// Airflow runs another auth manager than FAB (SimpleAuthManager, Keycloak, ...).
    #[error("Airflow {version} does not run the FAB auth manager (no /auth/fab/v1 API); set AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager")]
    NoFabAuthManager {
        /// The version Airflow reported.
        version: String,
    },
    /// A listing changed or came back short while it was being paged.
    #[error("incomplete listing: {0}")]
    Incomplete(String),
    /// The request could not be built (a bug or a bad name).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

/// A failed call to one Airflow instance.
#[derive(Debug, thiserror::Error)]
#[error("airflow `{instance}`: {call}{}: {kind}", object.as_deref().map(|o| format!(" `{o}`")).unwrap_or_default())]
pub struct Error {
    /// Which instance.
    pub instance: InstanceName,
    /// Which call.
    pub call: Call,
    /// Which object (username, role, page), if any.
    pub object: Option<String>,
    /// What went wrong.
    #[source]
    pub kind: ErrorKind,
    /// Whether an earlier attempt of this call failed in a way that may have reached the
    /// server (timeout, reset, 5xx): a 409 after such a retry may be our own first attempt.
    pub after_ambiguous_attempt: bool,
}

impl Error {
    /// How a retry could help.
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::Unreachable(_)
            | ErrorKind::Timeout(_)
            | ErrorKind::Interrupted(_)
            | ErrorKind::Server { .. } => ErrorClass::Transient,
            ErrorKind::RateLimited { retry_after } => ErrorClass::RateLimited(*retry_after),
            ErrorKind::Conflict { .. } => ErrorClass::Conflict,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether the same call might succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Transient | ErrorClass::RateLimited(_)
        )
    }

    /// Whether this is a 404 for the object asked for.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound { .. })
    }
}

/// Extracts a readable detail from an Airflow error body: FastAPI's `{"detail": "..."}` or
/// `{"detail": [{"loc": [...], "msg": "..."}]}`, and Airflow 2's RFC 7807 problem documents
/// (`{"title", "detail", "status", "type"}`). Never echoes request input.
pub(crate) fn parse_error_body(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let detail = match obj.get("detail") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|i| {
                    let msg = i.get("msg")?.as_str()?;
                    let loc = i
                        .get("loc")
                        .and_then(|l| l.as_array())
                        .map(|l| {
                            l.iter()
                                .map(|p| {
                                    p.as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| p.to_string())
                                })
                                .collect::<Vec<_>>()
                                .join(".")
                        })
                        .unwrap_or_default();
                    Some(if loc.is_empty() {
                        msg.to_string()
                    } else {
                        format!("{loc}: {msg}")
                    })
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        _ => None,
    };
    let title = obj.get("title").and_then(|t| t.as_str());
    let text = match (title, detail) {
        (Some(t), Some(d)) if !d.is_empty() => format!("{t}: {d}"),
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d,
        (None, None) => return None,
    };
    Some(truncate(&text, 300))
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}...", one_line.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastapi_validation_errors_keep_location_and_message_but_not_input() {
        let body = br#"{"detail":[{"type":"missing","loc":["body","email"],"msg":"Field required","input":{"password":"hunter2"}}]}"#;
        let d = parse_error_body(body).expect("parsed");
        assert_eq!(d, "body.email: Field required");
        assert!(!d.contains("hunter2"));
    }

    #[test]
    fn rfc7807_problem_documents_are_parsed() {
        let body = br#"{"detail": null, "status": 403, "title": "Forbidden", "type": "https://x"}"#;
        assert_eq!(parse_error_body(body).as_deref(), Some("Forbidden"));
        let body = br#"{"detail": "Role with name 'x' was not found", "status": 404, "title": "Role not found"}"#;
        assert_eq!(
            parse_error_body(body).as_deref(),
            Some("Role not found: Role with name 'x' was not found")
        );
    }

    #[test]
    fn bodies_that_are_not_json_yield_no_detail() {
        assert_eq!(parse_error_body(b"<html>502 Bad Gateway</html>"), None);
    }
}
