//! Request bodies: the bytes a client sent, read as the JSON value the rest of this crate
//! works on, or the SCIM error for anything else.
//!
//! This is the pure part of the HTTP layer's body reader, kept here so that it can be tested
//! and fuzzed without a server: the HTTP layer checks the media type and the size cap, then
//! calls [`parse_json`]. The error never quotes the body (it may hold a password).
//!
//! Nesting is bounded by `serde_json`'s recursion limit (128 levels), so neither parsing nor
//! the recursive walks over the value that follow (PATCH, normal form) can exhaust the stack.

use serde_json::Value;

use crate::error::ScimError;

/// Parses a request body as JSON. Anything that is not one JSON value (invalid UTF-8 in a
/// string, trailing bytes, nesting deeper than 128 levels, an empty body) is `400
/// invalidSyntax`.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(bytes)
        .map_err(|_| ScimError::invalid_syntax("the request body is not valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;

    fn refused(bytes: &[u8]) -> bool {
        matches!(
            parse_json(bytes),
            Err(ScimError {
                status: 400,
                scim_type: Some(ScimType::InvalidSyntax),
                ..
            })
        )
    }

    #[test]
    fn a_json_object_is_read() {
        assert_eq!(
            parse_json(br#"{"userName": "ada"}"#).ok(),
            Some(serde_json::json!({"userName": "ada"}))
        );
    }

    #[test]
    fn what_is_not_one_json_value_is_invalid_syntax() {
        for bytes in [
            &b""[..],
            b"{",
            b"{} {}",
            b"\xff",
            b"\"\xc3\"",
            br#""\ud800""#,
            b"nul",
        ] {
            assert!(refused(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(refused(deep.as_bytes()));
        let deep = "{\"a\":".repeat(100_000);
        assert!(refused(deep.as_bytes()));
    }

    #[test]
    fn the_error_never_quotes_the_body() {
        let err = parse_json(br#"{"password": "hunter2""#).expect_err("truncated");
        assert!(!err.detail.contains("hunter2"), "{}", err.detail);
    }
}
