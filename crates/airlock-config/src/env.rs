//! `AIRLOCK_*` environment overrides, applied to the parsed TOML before it is typed.
//!
//! `AIRLOCK_STORE__URL=postgres://...` sets `store.url`; `AIRLOCK_INSTANCES__PROD_EU__URL`
//! sets `instances.prod-eu.url` (a `_` in a segment matches a `-` in an existing key, since
//! env var names cannot hold `-`). Only names with a `__` separator are overrides, so
//! `AIRLOCK_CONFIG` and `AIRLOCK_LOG` are not mistaken for keys.

use crate::{ConfigError, ENV_PREFIX};
use toml::{Table, Value};

/// Keys whose override value is a number; every other override is a string, so that a
/// password such as `123456` is not turned into an integer.
const NUMERIC_KEYS: &[&str] = &[
    "inactive_after_days",
    "timeout_secs",
    "connect_timeout_secs",
    "max_concurrency",
    "max_retries",
    "token_lifetime_secs",
    "jwt_leeway_secs",
    "fab_cache_ttl_secs",
    "sync_interval_secs",
    "sync_jitter_secs",
    "lease_retry_secs",
    "concurrency",
    "scim_poll_ms",
];

pub(crate) fn apply_overrides(
    root: &mut Table,
    vars: &[(String, String)],
) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut vars: Vec<&(String, String)> = vars
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            errors.push(ConfigError::new(
                name.clone(),
                "empty key segment in override name",
            ));
            continue;
        }
        if let Err(message) = set_path(root, &segments, raw) {
            errors.push(ConfigError::new(name.clone(), message));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn set_path(table: &mut Table, segments: &[String], raw: &str) -> Result<(), String> {
    let (first, rest) = segments.split_first().ok_or("empty override name")?;
    // Prefer an existing key whose spelling matches once `-` is read as `_`.
    let key = table
        .keys()
        .find(|k| k.to_ascii_lowercase().replace('-', "_") == *first)
        .cloned()
        .unwrap_or_else(|| first.clone());
    if rest.is_empty() {
        table.insert(key.clone(), leaf_value(&key, raw)?);
        return Ok(());
    }
    let entry = table
        .entry(key.clone())
        .or_insert_with(|| Value::Table(Table::new()));
    match entry {
        Value::Table(t) => set_path(t, rest, raw),
        _ => Err(format!(
            "`{key}` is not a table, so it has no key `{}`",
            rest.join(".")
        )),
    }
}

/// Keys whose override value is a boolean (`true` or `false`).
const BOOL_KEYS: &[&str] = &["allow_insecure", "starttls"];

fn leaf_value(key: &str, raw: &str) -> Result<Value, String> {
    if BOOL_KEYS.contains(&key) {
        return match raw.trim() {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err(format!("`{key}` must be true or false")),
        };
    }
    if NUMERIC_KEYS.contains(&key) {
        return raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("`{key}` must be a whole number"));
    }
    if key == "labels" {
        // Labels are a table: accept an inline TOML table, `{ env = "prod" }`.
        let parsed: Table = toml::from_str(&format!("v = {raw}"))
            .map_err(|_| "labels must be an inline table such as { env = \"prod\" }".to_string())?;
        return parsed
            .get("v")
            .cloned()
            .ok_or_else(|| "labels missing".to_string());
    }
    Ok(Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn overrides_reach_nested_keys_and_match_dashed_names() {
        let mut t: Table = toml::from_str("[instances.prod-eu]\nurl = \"http://a\"").expect("toml");
        apply_overrides(
            &mut t,
            &vars(&[
                ("AIRLOCK_INSTANCES__PROD_EU__URL", "http://b"),
                ("AIRLOCK_INSTANCES__PROD_EU__MAX_RETRIES", "2"),
                ("AIRLOCK_INSTANCES__PROD_EU__PASSWORD", "123456"),
                ("AIRLOCK_CONFIG", "/etc/airlock.toml"),
            ]),
        )
        .expect("applies");
        let inst = &t["instances"]["prod-eu"];
        assert_eq!(inst["url"].as_str(), Some("http://b"));
        assert_eq!(inst["max_retries"].as_integer(), Some(2));
        assert_eq!(inst["password"].as_str(), Some("123456"));
        assert!(t.get("config").is_none());
    }

    #[test]
    fn a_non_numeric_value_for_a_numeric_key_names_the_variable() {
        let mut t = Table::new();
        let errs = apply_overrides(
            &mut t,
            &vars(&[("AIRLOCK_INVENTORY__INACTIVE_AFTER_DAYS", "soon")]),
        )
        .expect_err("must fail");
        assert_eq!(errs[0].key, "AIRLOCK_INVENTORY__INACTIVE_AFTER_DAYS");
    }
}
