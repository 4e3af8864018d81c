//! Canonical JSON: one byte string for one JSON value, whatever order its object keys were
//! built or parsed in, and whatever serde_json features the build happens to enable.
//!
//! - Object keys sorted by their UTF-16 code units (as RFC 8785 does), no duplicate keys
//!   (a `serde_json::Map` cannot hold any).
//! - No whitespace; `null`, `true`, `false` as usual.
//! - Strings escaped as serde_json escapes them: `"` `\` and control characters only, every
//!   other character as itself in UTF-8.
//! - Integers (anything that fits an `i64` or `u64`) as plain decimal digits; every other
//!   number as the shortest decimal that reads back as the same `f64` (serde_json's `ryu`
//!   output, e.g. `1.0`, `1e+300`). An integer `1` and a float `1.0` stay different.
//!
//! Keys are sorted here rather than relying on `serde_json::Map` being a `BTreeMap`, because
//! another crate in the build enabling serde_json's `preserve_order` would silently change
//! that, and with it every hash. This is not full RFC 8785 (numbers differ from ECMAScript's
//! formatting); it only has to be stable for airlock, and is pinned by a golden hash test.

use serde_json::{Number, Value};

/// The canonical text of `value`.
pub(crate) fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        // `Value::from(f64)` is a Number (JSON numbers are never NaN or infinite), displayed
        // with serde_json's shortest round-trip formatting.
        out.push_str(&Value::from(f).to_string());
    } else {
        // Only reachable with serde_json's arbitrary_precision and a number no f64 holds;
        // its text is then the most faithful form there is.
        out.push_str(&n.to_string());
    }
}

fn write_string(s: &str, out: &mut String) {
    // Display of a string Value is its escaped JSON form, without a fallible serializer.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_keys_are_sorted_at_every_depth_and_whitespace_is_dropped() {
        let value: Value = serde_json::from_str(
            r#"{ "b": 1, "a": { "z": [ 3, {"y": null, "x": true} ], "m": "s" } }"#,
        )
        .expect("valid json");
        assert_eq!(
            to_canonical_string(&value),
            r#"{"a":{"m":"s","z":[3,{"x":true,"y":null}]},"b":1}"#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units_like_rfc_8785() {
        // U+E000 sorts after U+1F600 (a surrogate pair, 0xD83D...) in UTF-16 but before it in
        // UTF-8 / code point order.
        let value = json!({"\u{e000}": 1, "\u{1f600}": 2, "a": 0});
        assert_eq!(
            to_canonical_string(&value),
            "{\"a\":0,\"\u{1f600}\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn integers_and_floats_keep_their_kind_and_shortest_form() {
        assert_eq!(to_canonical_string(&json!(1)), "1");
        assert_eq!(to_canonical_string(&json!(1.0)), "1.0");
        assert_eq!(to_canonical_string(&json!(-7)), "-7");
        assert_eq!(to_canonical_string(&json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(to_canonical_string(&json!(0.1)), "0.1");
        assert_eq!(to_canonical_string(&json!(-0.0)), "-0.0");
        assert_eq!(to_canonical_string(&json!(1e300)), "1e+300");
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        assert_eq!(
            to_canonical_string(&json!("a\"b\\c\n\u{1}é☃")),
            "\"a\\\"b\\\\c\\n\\u0001é☃\""
        );
    }

    #[test]
    fn canonical_text_survives_a_round_trip_through_json_text() {
        let value =
            json!({"f": 0.30000000000000004, "g": 123456.789e-3, "n": [1, -2, 3.5], "s": "x"});
        let text = to_canonical_string(&value);
        let reparsed: Value = serde_json::from_str(&text).expect("canonical text is json");
        assert_eq!(to_canonical_string(&reparsed), text);
    }
}
