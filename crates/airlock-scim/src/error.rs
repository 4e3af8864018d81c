//! The one error type of the SCIM core and its RFC 7644 §3.12 JSON body.
//!
//! Every failure in this crate is a [`ScimError`]: an HTTP status, an optional `scimType` and a
//! human-readable detail. The HTTP layer only has to call [`ScimError::to_json`] and use
//! [`ScimError::status`]; it never needs to inspect the detail.
//!
//! Details name attributes, operations and positions, never values taken from a request: a
//! PATCH may carry a `password`, a filter may compare one, and an error body ends up in client
//! logs. This module does not decide *which* error a situation deserves; the modules that detect
//! the failure do.

use std::fmt;

use serde_json::{Map, Value};

use crate::schema::ERROR_MESSAGE;

/// The `scimType` keywords of RFC 7644 §3.12, table 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid, or the attribute and comparison are not supported together.
    InvalidFilter,
    /// The filter yields more results than the server is willing to process.
    TooMany,
    /// One or more attribute values are already in use or reserved.
    Uniqueness,
    /// The change is incompatible with an attribute's mutability.
    Mutability,
    /// The request body structure was invalid.
    InvalidSyntax,
    /// The PATCH `path` was invalid or malformed.
    InvalidPath,
    /// The PATCH `path` did not select anything to operate on.
    NoTarget,
    /// A required value was missing or a value had the wrong type.
    InvalidValue,
    /// The protocol version is not supported.
    InvalidVers,
    /// Sensitive information was passed in a request URI.
    Sensitive,
}

impl ScimType {
    /// The keyword exactly as RFC 7644 spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SCIM failure, ready to become an error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    /// The HTTP status code (400, 404, 409, ...).
    pub status: u16,
    /// The RFC 7644 `scimType`, where one applies.
    pub scim_type: Option<ScimType>,
    /// What went wrong, lowercase, naming attributes but never request values.
    pub detail: String,
}

impl ScimError {
    /// An error with any status and type.
    pub fn new(status: u16, scim_type: Option<ScimType>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// A 400 with the given `scimType`: the shape of almost every error this crate produces.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    /// 400 `invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }

    /// 400 `invalidPath`.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }

    /// 400 `invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// 400 `invalidSyntax`.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// 400 `mutability`.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }

    /// 400 `noTarget`.
    pub fn no_target(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::NoTarget, detail)
    }

    /// 409 `uniqueness`, for the storage layer when a `userName` or `displayName` is taken.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(409, Some(ScimType::Uniqueness), detail)
    }

    /// The same error with `context: ` in front of the detail (e.g. which PATCH operation).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.detail = format!("{context}: {}", self.detail);
        self
    }

    /// The RFC 7644 §3.12 error body. `status` is a string there, not a number.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "schemas".to_owned(),
            Value::Array(vec![Value::String(ERROR_MESSAGE.to_owned())]),
        );
        body.insert("status".to_owned(), Value::String(self.status.to_string()));
        if let Some(scim_type) = self.scim_type {
            body.insert(
                "scimType".to_owned(),
                Value::String(scim_type.as_str().to_owned()),
            );
        }
        body.insert("detail".to_owned(), Value::String(self.detail.clone()));
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_body_has_the_rfc_shape_with_status_as_a_string() {
        let err = ScimError::invalid_filter("expected an operator at position 10");
        assert_eq!(
            err.to_json(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                "status": "400",
                "scimType": "invalidFilter",
                "detail": "expected an operator at position 10",
            })
        );
    }

    #[test]
    fn error_body_omits_scim_type_when_there_is_none() {
        let body = ScimError::new(404, None, "resource not found").to_json();
        assert_eq!(body["status"], "404");
        assert!(body.get("scimType").is_none());
    }

    #[test]
    fn context_is_prefixed_to_the_detail() {
        let err = ScimError::no_target("nothing matched").context("Operations[2]");
        assert_eq!(err.detail, "Operations[2]: nothing matched");
        assert_eq!(err.to_string(), "Operations[2]: nothing matched");
    }

    #[test]
    fn every_scim_type_is_spelled_as_in_the_rfc() {
        let all = [
            (ScimType::InvalidFilter, "invalidFilter"),
            (ScimType::TooMany, "tooMany"),
            (ScimType::Uniqueness, "uniqueness"),
            (ScimType::Mutability, "mutability"),
            (ScimType::InvalidSyntax, "invalidSyntax"),
            (ScimType::InvalidPath, "invalidPath"),
            (ScimType::NoTarget, "noTarget"),
            (ScimType::InvalidValue, "invalidValue"),
            (ScimType::InvalidVers, "invalidVers"),
            (ScimType::Sensitive, "sensitive"),
        ];
        for (scim_type, text) in all {
            assert_eq!(scim_type.to_string(), text);
        }
    }
}
