//! RFC 5424 syslog messages of audit events:
//!
//! `<PRI>1 TIMESTAMP HOSTNAME airlock - OPERATION [airlock@32473 ...] MESSAGE`
//!
//! Facility authpriv (10); severity notice (5) for changes, warning (4) for failures and
//! refusals, info (6) for airlock's own bookkeeping, critical (2) for the use of a
//! break-glass account. The structured data carries the event's
//! fields; PARAM-VALUEs escape `"`, `\` and `]` (RFC 5424 §6.3.3), and every control
//! character, in a value or the message, becomes a space, so that no value can close the
//! element, forge a parameter or start a new message on a stream transport. The SD-ID uses
//! the enterprise number 32473, reserved for documentation (RFC 5612): a receiver keys on
//! `airlock@32473`.
//!
//! Framing for a transport (RFC 6587 octet counting, RFC 5425 TLS) is the sink's, not here.

use crate::event::{AuditEvent, Outcome};
use crate::siem_text::clean;

/// The structured data element's id.
pub const SD_ID: &str = "airlock@32473";
const FACILITY_AUTHPRIV: u8 = 10;

/// Escapes a PARAM-VALUE.
pub fn escape_param(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(clean(c)),
        }
    }
    out
}

/// A header field (HOSTNAME, MSGID): printable US-ASCII without spaces, at most `max`
/// characters, `-` when empty.
fn header(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn severity(e: &AuditEvent) -> u8 {
    match e.outcome {
        _ if e.operation == crate::operation::BREAK_GLASS_USE => 2,
        Outcome::Failed { .. } | Outcome::Refused { .. } => 4,
        _ if e.operation.starts_with("run.") || e.operation.starts_with("plan.") => 6,
        _ => 5,
    }
}

/// One RFC 5424 message from `hostname` (no trailing newline, no framing).
pub fn encode(e: &AuditEvent, hostname: &str) -> String {
    let pri = FACILITY_AUTHPRIV * 8 + severity(e);
    let (outcome, detail) = match &e.outcome {
        Outcome::Succeeded => ("succeeded", None),
        Outcome::Failed { error } => ("failed", Some(error.clone())),
        Outcome::Refused { rail } => ("refused", Some(rail.clone())),
        Outcome::Planned => ("planned", None),
    };
    let target = e
        .target
        .as_ref()
        .and_then(|t| serde_json::to_value(t).ok())
        .map(|v| v.to_string());
    let mut params: Vec<(&str, String)> = vec![
        ("seq", e.seq.to_string()),
        ("id", e.id.clone()),
        ("actor", e.actor.clone()),
        ("outcome", outcome.into()),
        ("hash", e.hash.clone()),
    ];
    for (k, v) in [
        ("instance", e.instance.clone()),
        ("target", target),
        ("run", e.run_id.clone()),
        ("detail", detail),
    ] {
        if let Some(v) = v {
            params.push((k, v));
        }
    }
    let sd: String = params
        .iter()
        .map(|(k, v)| format!(" {k}=\"{}\"", escape_param(v)))
        .collect();
    let message: String = e
        .reason
        .clone()
        .unwrap_or_else(|| format!("{} by {}", e.operation, e.actor))
        .chars()
        .map(clean)
        .collect();
    format!(
        "<{pri}>1 {} {} airlock - {} [{SD_ID}{sd}] {message}",
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        header(hostname, 255),
        header(&e.operation, 32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{seal, NewEvent, Target};

    #[test]
    fn values_cannot_close_the_element_or_start_a_new_message() {
        let mut e = NewEvent::new(
            chrono::Utc::now(),
            "person:\"x\"]",
            "account.suspend",
            Outcome::Succeeded,
        );
        e.instance = Some("prod\\eu".into());
        e.target = Some(Target::Account {
            username: "eve] [forged@1 a=\"b\"]\n<13>1 - - - - - forged".into(),
        });
        e.reason = Some("left\nthe company".into());
        let msg = encode(&seal(None, 1, e), "airlock host");
        assert!(msg.starts_with("<85>1 "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.contains(" airlockhost airlock - account.suspend [airlock@32473 seq=\"1\""),
            "{msg}"
        );
        assert!(msg.contains("actor=\"person:\\\"x\\\"\\]\""), "{msg}");
        assert!(msg.contains("instance=\"prod\\\\eu\""), "{msg}");
        // The only unescaped `]` closes airlock's element.
        let sd_end = msg
            .find("] left")
            .expect("the element ends before the message");
        assert_eq!(
            msg[..sd_end].matches(']').count(),
            msg[..sd_end].matches("\\]").count()
        );
        assert!(msg.ends_with("] left the company"), "{msg}");
    }
}
