//! Small helpers over `serde_json` values that the rest of the crate shares: case-insensitive
//! key lookup (RFC 7643 §2.1: attribute names are case-insensitive), "present" as RFC 7644
//! defines it for `pr`, and the lenient boolean reading real clients need.
//!
//! Nothing here knows the schema.

use serde_json::{Map, Value};

/// The value under `name`, preferring an exact key, else any key equal ignoring ASCII case.
pub(crate) fn get_ci<'v>(map: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// Mutable [`get_ci`].
pub(crate) fn get_ci_mut<'v>(map: &'v mut Map<String, Value>, name: &str) -> Option<&'v mut Value> {
    let key = key_ci(map, name)?;
    map.get_mut(&key)
}

/// The key actually used for `name` in `map`, if any.
pub(crate) fn key_ci(map: &Map<String, Value>, name: &str) -> Option<String> {
    if map.contains_key(name) {
        return Some(name.to_owned());
    }
    map.keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}

/// Removes every key equal to `name` ignoring case and returns the value of the exact key if
/// there was one, else of the last one removed. Removing all spellings is what keeps a
/// resource from ending up with both `userName` and `username`.
pub(crate) fn remove_ci(map: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let keys: Vec<String> = map
        .keys()
        .filter(|key| key.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    let mut found = None;
    for key in keys {
        let value = map.remove(&key);
        if key == name || found.is_none() {
            found = value;
        }
    }
    found
}

/// Whether a value counts as present for `pr` (RFC 7644 §3.4.2.2): not null, not an empty
/// string, array or object, and for arrays and objects, holding something present.
pub(crate) fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(map) => map.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// A boolean, also accepting the strings `"true"`/`"false"` in any case, which Microsoft Entra
/// ID sends (`"active": "False"`).
pub(crate) fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("test value is an object"),
        }
    }

    #[test]
    fn lookups_prefer_the_exact_key_then_any_case() {
        let m = map(json!({"UserName": "a", "userName": "b"}));
        assert_eq!(get_ci(&m, "userName"), Some(&json!("b")));
        assert_eq!(get_ci(&m, "USERNAME").map(|v| v.is_string()), Some(true));
        assert_eq!(key_ci(&m, "username").as_deref(), Some("UserName"));
    }

    #[test]
    fn remove_ci_removes_every_spelling() {
        let mut m = map(json!({"UserName": "a", "userName": "b", "x": 1}));
        assert_eq!(remove_ci(&mut m, "userName"), Some(json!("b")));
        assert_eq!(m, map(json!({"x": 1})));
    }

    #[test]
    fn empty_things_are_not_present() {
        for absent in [
            json!(null),
            json!(""),
            json!([]),
            json!({}),
            json!([null, ""]),
            json!({"a": null}),
        ] {
            assert!(!is_present(&absent), "{absent}");
        }
        for present in [json!(false), json!(0), json!("x"), json!([{"value": "x"}])] {
            assert!(is_present(&present), "{present}");
        }
    }

    #[test]
    fn string_booleans_are_read_in_any_case() {
        assert_eq!(lenient_bool(&json!("False")), Some(false));
        assert_eq!(lenient_bool(&json!("TRUE")), Some(true));
        assert_eq!(lenient_bool(&json!("yes")), None);
        assert_eq!(lenient_bool(&json!(1)), None);
    }
}
