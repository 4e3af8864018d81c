//! `[access]` in the policy file: just-in-time access rules, and the groups that administer
//! and audit governance.
//!
//! ```toml
//! [access]
//! admins = ["governance-admins"]     # see everything, may revoke any grant
//! auditors = ["auditors"]            # read everything, change nothing
//! expiring_notice = "15m"            # grants are noted (and announced) as expiring this long before their end
//!
//! [[access.rules]]
//! roles = ["Admin", "Op"]
//! instances = { labels = { env = "prod" } }
//! requesters = ["data-engineers"]    # default: anyone active in the directory
//! approvers = { groups = ["sre"], people = ["lead@example.com"] }
//! approvals = 2                      # distinct approvers (default 1; 0: approved at once)
//! max_duration = "8h"                # default 8h, at most 31d
//! default_duration = "1h"            # default 1h (or max_duration if shorter)
//! reason_required = true             # default true
//! pending_for = "24h"                # undecided requests lapse after this (default 24h)
//! auto_approve = ["oncall"]          # members' requests are approved at once
//! ```

use crate::policy::{selector, RawSelector};
use crate::ConfigError;
use airlock_core::access::{AccessPolicy, AccessRule, Approvers};
use airlock_core::directory::GroupName;
use airlock_core::RoleName;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The longest grant a rule may allow.
const LONGEST_SECS: i64 = 31 * 86_400;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    auditors: Vec<String>,
    expiring_notice: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    roles: Vec<String>,
    #[serde(default)]
    instances: RawSelector,
    #[serde(default)]
    requesters: Vec<String>,
    #[serde(default)]
    approvers: RawApprovers,
    approvals: Option<usize>,
    max_duration: Option<String>,
    default_duration: Option<String>,
    reason_required: Option<bool>,
    pending_for: Option<String>,
    #[serde(default)]
    auto_approve: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovers {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    people: Vec<String>,
}

/// Parses `90s`, `30m`, `8h`, `2d` or a sum such as `1h30m` into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a duration such as 30m, 8h, 2d or 1h30m");
    let (mut total, mut digits) = (0i64, String::new());
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

fn groups(key: &str, names: Vec<String>, errors: &mut Vec<ConfigError>) -> BTreeSet<GroupName> {
    let mut out = BTreeSet::new();
    for name in names {
        if name.trim().is_empty() {
            errors.push(ConfigError::new(key, "group names must not be empty"));
        } else {
            out.insert(GroupName(name));
        }
    }
    out
}

fn duration(
    key: &str,
    text: Option<&str>,
    default: i64,
    errors: &mut Vec<ConfigError>,
) -> Option<i64> {
    let Some(text) = text else {
        return Some(default);
    };
    match parse_duration(text) {
        Ok(secs) if secs <= LONGEST_SECS => Some(secs),
        Ok(_) => {
            errors.push(ConfigError::new(key, "must be at most 31d"));
            None
        }
        Err(e) => {
            errors.push(ConfigError::new(key, e));
            None
        }
    }
}

/// Validates `[access]`; `known` are the configured instances' names.
pub(crate) fn validate(
    raw: RawAccess,
    known: &BTreeSet<&str>,
    errors: &mut Vec<ConfigError>,
) -> AccessPolicy {
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = format!("policy.access.rules[{i}]");
        if r.roles.is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.roles"),
                "give at least one role",
            ));
        }
        let roles = (r.roles.iter())
            .filter_map(|role| match RoleName::new(role) {
                Ok(role) => Some(role),
                Err(e) => {
                    errors.push(ConfigError::new(format!("{key}.roles"), e.to_string()));
                    None
                }
            })
            .collect();
        let instances = selector(known, format!("{key}.instances"), r.instances, errors);
        let approvals = r.approvals.unwrap_or(1);
        let people: BTreeSet<String> = (r.approvers.people.into_iter())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let approvers = Approvers {
            groups: groups(
                &format!("{key}.approvers.groups"),
                r.approvers.groups,
                errors,
            ),
            people,
        };
        if approvals > 0 && approvers.groups.is_empty() && approvers.people.is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.approvers"),
                format!("name the groups or people who approve ({approvals} approval(s) needed), or set approvals = 0"),
            ));
        }
        if approvals > 10 {
            errors.push(ConfigError::new(
                format!("{key}.approvals"),
                "must be at most 10",
            ));
        }
        let max = duration(
            &format!("{key}.max_duration"),
            r.max_duration.as_deref(),
            8 * 3600,
            errors,
        );
        let default = duration(
            &format!("{key}.default_duration"),
            r.default_duration.as_deref(),
            max.unwrap_or(3600).min(3600),
            errors,
        );
        let pending = duration(
            &format!("{key}.pending_for"),
            r.pending_for.as_deref(),
            86_400,
            errors,
        );
        if let (Some(max), Some(default)) = (max, default) {
            if default > max {
                errors.push(ConfigError::new(
                    format!("{key}.default_duration"),
                    "must not be longer than max_duration",
                ));
            }
        }
        rules.push(AccessRule {
            roles,
            instances,
            requesters: groups(&format!("{key}.requesters"), r.requesters, errors),
            approvers,
            approvals,
            max_secs: max.unwrap_or(0),
            default_secs: default.unwrap_or(0),
            reason_required: r.reason_required.unwrap_or(true),
            pending_secs: pending.unwrap_or(0),
            auto_approve: groups(&format!("{key}.auto_approve"), r.auto_approve, errors),
        });
    }
    let expiring_notice_secs = match raw.expiring_notice.as_deref().map(parse_duration) {
        None => 900,
        Some(Ok(secs)) if secs == 0 || (60..=86_400).contains(&secs) => secs,
        Some(Ok(_)) => {
            errors.push(ConfigError::new(
                "policy.access.expiring_notice",
                "must be between 1m and 24h (or 0s: never)",
            ));
            900
        }
        Some(Err(m)) => {
            errors.push(ConfigError::new("policy.access.expiring_notice", m));
            900
        }
    };
    AccessPolicy {
        rules,
        admins: groups("policy.access.admins", raw.admins, errors),
        auditors: groups("policy.access.auditors", raw.auditors, errors),
        expiring_notice_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("8h"), Ok(28_800));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert_eq!(parse_duration(" 1h30m "), Ok(5400));
        for bad in [
            "",
            "0m",
            "8",
            "h",
            "8x",
            "1.5h",
            "-1h",
            "1h 30m",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} was accepted");
        }
    }
}
