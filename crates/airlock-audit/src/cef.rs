//! ArcSight Common Event Format (CEF, revision 25) lines of audit events:
//!
//! `CEF:0|airlock|airlock|VERSION|OPERATION|NAME|SEVERITY|EXTENSIONS`
//!
//! Header fields escape `\` and `|`; extension values escape `\` and `=`, and newlines as
//! `\n`/`\r`; every other control character becomes a space, so that no value from a directory
//! or Airflow can end a field, forge a key or start a new line. Keys are fixed: `rt` (ms),
//! `externalId` (the event id), `suser` (actor), `duser` (target account), `act` (operation),
//! `outcome`, `reason`, `msg`, `cs1` instance, `cs2` target, `cs3` run id, `cs4` hash, `cn1`
//! sequence number.

use crate::event::{AuditEvent, Outcome, Target};
use crate::siem_text::clean;

/// Escapes a header field.
pub fn escape_header(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c => out.push(clean(c)),
        }
    }
    out
}

/// Escapes an extension value.
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(clean(c)),
        }
    }
    out
}

/// CEF severity (0-10): a break-glass account used 9, failures and refusals 7, removals of
/// access 5, the rest 3.
fn severity(e: &AuditEvent) -> u8 {
    match e.outcome {
        _ if e.operation == crate::operation::BREAK_GLASS_USE => 9,
        Outcome::Failed { .. } | Outcome::Refused { .. } => 7,
        _ if e.operation.ends_with(".suspend")
            || e.operation.ends_with(".delete")
            || e.operation.ends_with(".revoke") =>
        {
            5
        }
        _ => 3,
    }
}

/// One CEF line (no trailing newline).
pub fn encode(e: &AuditEvent) -> String {
    let (outcome, reason) = match &e.outcome {
        Outcome::Succeeded => ("success", None),
        Outcome::Failed { error } => ("failure", Some(error.clone())),
        Outcome::Refused { rail } => ("failure", Some(format!("refused by safety rail {rail}"))),
        Outcome::Planned => ("planned", None),
    };
    let target = e
        .target
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .map(|v| v.to_string());
    let duser = match &e.target {
        Some(Target::Account { username }) => Some(username.clone()),
        _ => None,
    };
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", e.at.timestamp_millis().to_string()),
        ("externalId", e.id.clone()),
        ("suser", e.actor.clone()),
        ("act", e.operation.clone()),
        ("outcome", outcome.to_owned()),
        ("cn1Label", "seq".into()),
        ("cn1", e.seq.to_string()),
        ("cs4Label", "hash".into()),
        ("cs4", e.hash.clone()),
    ];
    let optional = [
        ("duser", duser),
        (
            "cs1Label",
            e.instance.as_ref().map(|_| "instance".to_owned()),
        ),
        ("cs1", e.instance.clone()),
        ("cs2Label", target.as_ref().map(|_| "target".to_owned())),
        ("cs2", target),
        ("cs3Label", e.run_id.as_ref().map(|_| "run".to_owned())),
        ("cs3", e.run_id.clone()),
        ("reason", reason),
        ("msg", e.reason.clone()),
    ];
    ext.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    let extension: Vec<String> = ext
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_value(v)))
        .collect();
    format!(
        "CEF:0|airlock|airlock|{}|{}|{}|{}|{}",
        escape_header(env!("CARGO_PKG_VERSION")),
        escape_header(&e.operation),
        escape_header(&e.operation.replace(['.', '_'], " ")),
        severity(e),
        extension.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{seal, NewEvent};

    #[test]
    fn separators_in_values_are_escaped_and_lines_cannot_be_forged() {
        let mut e = NewEvent::new(
            chrono::Utc::now(),
            "person:a|b=c\\d",
            "account.suspend",
            Outcome::Succeeded,
        );
        e.target = Some(Target::Account {
            username: "eve\nCEF:0|forged|x|1|y|z|10|".into(),
        });
        e.reason = Some("left\r\nthe company = yes\u{0}".into());
        let line = encode(&seal(None, 1, e));
        assert!(
            !line.contains('\n') && !line.contains('\r') && !line.contains('\u{0}'),
            "{line}"
        );
        assert!(line.starts_with("CEF:0|airlock|airlock|"), "{line}");
        assert!(line.contains("suser=person:a|b\\=c\\\\d"), "{line}");
        assert!(
            line.contains("duser=eve\\nCEF:0|forged|x|1|y|z|10|"),
            "{line}"
        );
        assert!(
            line.contains("msg=left\\r\\nthe company \\= yes "),
            "{line}"
        );
        assert_eq!(escape_header("a|b\\c\nd"), "a\\|b\\\\c d");
    }
}
