//! The checks behind each fuzz target (`fuzz_targets/*.rs` only call these), so that a crash
//! found by libFuzzer can be replayed as an ordinary test and the same oracles are used by
//! every target. A failed check panics: libFuzzer reports the panic as a crash and saves the
//! input under `fuzz/artifacts/<target>/`.
//!
//! The same properties, with grammar-aware generators, run in the test suite as
//! `crates/airlock-scim/tests/fuzz_props.rs` and `crates/airlock-config/tests/fuzz_props.rs`.

use std::path::Path;
use std::sync::OnceLock;

use airlock_config::pg_url::PgUrl;
use airlock_config::{load_str, LoadError};
use airlock_scim::body::parse_json;
use airlock_scim::{
    apply_patch, apply_patch_in_place, replace_resource, validate_resource, Filter, ListQuery,
    PatchRequest, Path as ScimPath, ResourceType, ScimError, ScimType,
};
use serde_json::{json, Value};

/// A failure a client caused: 4xx, with a `scimType` where the status is 400.
fn assert_client_error(err: &ScimError, what: &str) {
    assert!(
        (400..500).contains(&err.status),
        "{what}: not a client error: {err:?}"
    );
    if err.status == 400 {
        assert!(
            err.scim_type.is_some(),
            "{what}: 400 without scimType: {err:?}"
        );
    }
}

fn user() -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "userName": "ada",
        "externalId": "ext-1",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "displayName": "Ada",
        "active": true,
        "emails": [
            {"value": "ada@work.example", "type": "work", "primary": true},
            {"value": "ada@home.example", "type": "home"}
        ],
        "phoneNumbers": [{"value": "+1 555", "type": "mobile"}],
        "roles": [{"value": "Viewer", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "Research",
            "manager": {"value": "u0"}
        }
    })
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Airflow Admins",
        "members": [{"value": "u1", "display": "Ada"}, {"value": "u2"}]
    })
}

/// The stored User and Group every target works on: valid bodies in normal form, with the
/// `id`, `meta` and `groups` the server adds.
fn resources() -> &'static [(ResourceType, Value); 2] {
    static RESOURCES: OnceLock<[(ResourceType, Value); 2]> = OnceLock::new();
    RESOURCES.get_or_init(stored_resources)
}

fn stored_resources() -> [(ResourceType, Value); 2] {
    let mut user =
        validate_resource(ResourceType::User, &user()).expect("invariant: the fixture is valid");
    user["id"] = json!("u1");
    user["meta"] = json!({"resourceType": "User", "version": "3"});
    user["groups"] = json!([{"value": "g1", "display": "Admins"}]);
    let mut group =
        validate_resource(ResourceType::Group, &group()).expect("invariant: the fixture is valid");
    group["id"] = json!("g1");
    group["meta"] = json!({"resourceType": "Group", "version": "1"});
    [(ResourceType::User, user), (ResourceType::Group, group)]
}

/// The filter parser: any text parses to a filter that prints back to itself, compiles and
/// evaluates (or fails to compile) for both resource types; or it is `400 invalidFilter`.
pub fn scim_filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = ScimPath::parse(&text);
    let filter = match Filter::parse(&text) {
        Ok(filter) => filter,
        Err(err) => {
            assert_eq!(
                (err.status, err.scim_type),
                (400, Some(ScimType::InvalidFilter)),
                "{err:?}"
            );
            return;
        }
    };
    let printed = filter.to_string();
    assert_eq!(
        Filter::parse(&printed).as_ref(),
        Ok(&filter),
        "{text:?} printed as {printed:?}"
    );
    for (rt, resource) in resources() {
        match filter.compile(*rt) {
            Ok(compiled) => {
                let matched = compiled.matches(resource);
                if let Ok(negated) = Filter::Not(Box::new(filter.clone())).compile(*rt) {
                    assert_eq!(negated.matches(resource), !matched, "{printed}");
                }
            }
            Err(err) => assert_client_error(&err, "compile"),
        }
    }
}

/// Applies one PATCH request body to `resource`: a 4xx that leaves it unchanged, or a resource
/// in the normal form that still validates, keeps its `id` and holds no password.
fn patch_one(rt: ResourceType, resource: &Value, body: &Value) {
    let request = match PatchRequest::from_json(body) {
        Ok(request) => request,
        Err(err) => return assert_client_error(&err, "PatchRequest::from_json"),
    };
    match apply_patch(rt, resource, &request) {
        Ok(patched) => {
            match validate_resource(rt, &patched) {
                // In the normal form: validating again drops only what the server assigns.
                Ok(again) => {
                    let mut expected = patched.clone();
                    if let Some(map) = expected.as_object_mut() {
                        map.remove("id");
                        map.remove("meta");
                        map.remove("groups");
                    }
                    assert_eq!(again, expected, "not in normal form");
                }
                Err(err) => panic!("the patched resource no longer validates: {err:?}\n{patched}"),
            }
            assert_eq!(patched["id"], resource["id"], "id changed: {patched}");
            assert!(
                !patched
                    .to_string()
                    .to_ascii_lowercase()
                    .contains("\"password\""),
                "a password was stored: {patched}"
            );
        }
        Err(err) => {
            assert_client_error(&err, "apply_patch");
            let mut in_place = resource.clone();
            assert!(apply_patch_in_place(rt, &mut in_place, &request).is_err());
            assert_eq!(&in_place, resource, "a failed PATCH changed the resource");
        }
    }
}

/// PATCH: the input is either a whole JSON body (first byte `{`), or one operation written as
/// `op NUL path NUL value-json`, applied to the stored User and Group.
pub fn scim_patch(data: &[u8]) {
    let bodies: Vec<Value> = if data.first() == Some(&b'{') {
        match serde_json::from_slice(data) {
            Ok(body) => vec![body],
            Err(_) => return,
        }
    } else {
        let mut parts = data.splitn(3, |&b| b == 0);
        let op = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let path = parts
            .next()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let value = parts
            .next()
            .and_then(|v| serde_json::from_slice::<Value>(v).ok());
        let mut operation = json!({"op": op});
        if let Some(path) = path {
            operation["path"] = Value::String(path);
        }
        if let Some(value) = value {
            operation["value"] = value;
        }
        vec![json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [operation],
        })]
    };
    for (rt, resource) in resources() {
        for body in &bodies {
            patch_one(*rt, resource, body);
        }
    }
}

/// The request body reader: any bytes are a JSON value or `400 invalidSyntax`; the value then
/// goes where the endpoint sends bodies (POST, PUT, PATCH, `.search`) for both types, and each
/// ends in a value or a 4xx.
pub fn scim_body(data: &[u8]) {
    let body = match parse_json(data) {
        Ok(body) => body,
        Err(err) => {
            assert_eq!(
                (err.status, err.scim_type),
                (400, Some(ScimType::InvalidSyntax)),
                "{err:?}"
            );
            return;
        }
    };
    for &(rt, ref existing) in resources() {
        match validate_resource(rt, &body) {
            Ok(valid) => match validate_resource(rt, &valid) {
                Ok(again) => assert_eq!(again, valid, "the normal form is not a fixed point"),
                Err(err) => panic!("a created resource no longer validates: {err:?}\n{valid}"),
            },
            Err(err) => assert_client_error(&err, "validate_resource"),
        }
        match replace_resource(rt, existing, &body) {
            Ok(replaced) => {
                assert_eq!(replaced["id"], existing["id"]);
                if let Err(err) = validate_resource(rt, &replaced) {
                    panic!("a replaced resource no longer validates: {err:?}\n{replaced}");
                }
            }
            Err(err) => assert_client_error(&err, "replace_resource"),
        }
        if let Err(err) = ListQuery::from_search_request(rt, &body) {
            assert_client_error(&err, "from_search_request");
        }
        patch_one(rt, existing, &body);
    }
}

/// Where fuzzed configs claim to live: nowhere, so relative file names resolve to nothing.
const NOWHERE: &str = "/nonexistent-airlock-fuzz/airlock.toml";

/// Whether a string names a file the loader must not be pointed at while fuzzing: a device
/// (`/dev/zero` never ends, `/dev/stdin` blocks) or a pseudo-file.
fn unsafe_path(text: &str) -> bool {
    ["/dev", "/proc", "/sys", "/run"]
        .iter()
        .any(|prefix| text.contains(prefix))
}

fn any_unsafe_string(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => unsafe_path(s),
        toml::Value::Array(items) => items.iter().any(any_unsafe_string),
        toml::Value::Table(table) => table
            .iter()
            .any(|(k, v)| unsafe_path(k) || any_unsafe_string(v)),
        _ => false,
    }
}

/// The secret values a config text holds in plain sight (literal `password`, `api_key` and
/// `bind_password` strings, and store URL passwords) that appear only once in the text, so that
/// finding one in an error can only mean it was echoed.
fn secrets(table: &toml::Table, text: &str) -> Vec<String> {
    fn walk(table: &toml::Table, out: &mut Vec<String>) {
        for (key, value) in table {
            match value {
                toml::Value::Table(inner) => walk(inner, out),
                toml::Value::String(s)
                    if matches!(key.as_str(), "password" | "api_key" | "bind_password") =>
                {
                    out.push(s.clone());
                }
                toml::Value::String(s) if key == "url" => {
                    if let Some(password) = s
                        .split_once("://")
                        .and_then(|(_, rest)| rest.split_once('@'))
                        .and_then(|(userinfo, _)| userinfo.split_once(':'))
                        .map(|(_, password)| password)
                    {
                        out.push(password.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(table, &mut out);
    out.retain(|s| {
        s.len() >= 10
            && s.chars().all(|c| c.is_ascii_alphanumeric())
            && text.matches(s.as_str()).count() == 1
    });
    out
}

/// The config loader: any text (up to a NUL), with the `NAME=value` lines after it as the
/// environment, loads or is a `LoadError` whose messages are one line each and never show a
/// secret written in the text; the same text, and each variable's value, given to
/// `PgUrl::parse`, is a URL or a `PgUrlError`.
pub fn config_load(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (text, env) = text.split_once('\0').unwrap_or((&text, ""));
    let vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for candidate in std::iter::once(text).chain(vars.iter().map(|(_, v)| v.as_str())) {
        if let Err(err) = PgUrl::parse(candidate) {
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }
    // Never let the loader read a device: skip inputs that could name one.
    if vars.iter().any(|(k, v)| unsafe_path(k) || unsafe_path(v)) {
        return;
    }
    let table = match toml::from_str::<toml::Table>(text) {
        Ok(table) => {
            if any_unsafe_string(&toml::Value::Table(table.clone())) {
                return;
            }
            Some(table)
        }
        // Unparsable: the loader stops at the TOML error, before any file is named.
        Err(_) => None,
    };
    match load_str(text, Path::new(NOWHERE), &vars) {
        Ok(_) => {}
        Err(LoadError::Invalid { errors, .. }) => {
            assert!(!errors.is_empty(), "an invalid config with no error");
            let shown = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            for e in &errors {
                assert!(!e.to_string().contains('\n'), "not one line: {e}");
            }
            for secret in table.as_ref().map(|t| secrets(t, text)).unwrap_or_default() {
                assert!(
                    !shown.contains(&secret),
                    "a secret is shown: {secret}\n{shown}"
                );
            }
        }
        Err(other) => panic!("load_str never reads the config file: {other}"),
    }
}
