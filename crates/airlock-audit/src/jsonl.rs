//! The export format: one event as one line of JSON ([JSON Lines](https://jsonlines.org)),
//! fields in declaration order, absent optional fields as `null`. The store keeps each event
//! in the same form, so an export is the stored events verbatim and can be verified on its own
//! (parse every line, then [`crate::verify`]).
//!
//! This form is for people and tools; the hash is computed over a separate canonical form
//! (see [`crate::chain`]), so re-formatting an export does not break its chain.

use crate::event::AuditEvent;

/// `event` as one line of JSON, without the trailing newline (the text never contains one).
pub fn to_jsonl_line(event: &AuditEvent) -> String {
    serde_json::to_string(event)
        .expect("invariant: an audit event serializes (strings, integers and JSON values only)")
}

/// Reads one line written by [`to_jsonl_line`]. Unknown fields are refused, so an event
/// with additions is not silently read as the original.
pub fn from_jsonl_line(line: &str) -> Result<AuditEvent, serde_json::Error> {
    serde_json::from_str(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::seal;
    use crate::event::{NewEvent, Outcome, Target};
    use crate::operation::ACCOUNT_SUSPEND;
    use serde_json::json;

    fn event() -> AuditEvent {
        let mut new = NewEvent::new(
            chrono::DateTime::from_timestamp_millis(1_720_000_000_123).expect("in range"),
            "ops@example.com",
            ACCOUNT_SUSPEND,
            Outcome::Refused {
                rail: "max_suspensions".to_owned(),
            },
        );
        new.id = "0190b2d4-8a00-7000-8000-000000000001".to_owned();
        new.instance = Some("prod".to_owned());
        new.target = Some(Target::Account {
            username: "bob\nsmith".to_owned(),
        });
        new.before = Some(json!({"active": true, "score": 0.1}));
        seal(None, 1, new)
    }

    #[test]
    fn a_line_is_one_json_object_in_field_order() {
        let line = to_jsonl_line(&event());
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with(
                r#"{"seq":1,"id":"0190b2d4-8a00-7000-8000-000000000001","at":"2024-07-03T09:46:40.123Z","actor":"ops@example.com","run_id":null,"instance":"prod","target":{"type":"account","username":"bob\nsmith"},"operation":"account.suspend","outcome":{"status":"refused","rail":"max_suspensions"},"#
            ),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(r#""hash":"{}"}}"#, event().hash)),
            "{line}"
        );
    }

    #[test]
    fn a_line_reads_back_as_the_same_intact_event() {
        let original = event();
        let read = from_jsonl_line(&to_jsonl_line(&original)).expect("reads back");
        assert_eq!(read, original);
        assert!(read.is_intact());
    }

    #[test]
    fn a_line_with_an_extra_field_is_refused() {
        let line = to_jsonl_line(&event()).replacen('{', r#"{"approved_by":"mallory","#, 1);
        assert!(from_jsonl_line(&line).is_err());
        let line = to_jsonl_line(&event()).replace(
            r#""rail":"max_suspensions""#,
            r#""rail":"max_suspensions","why":"x""#,
        );
        assert!(from_jsonl_line(&line).is_err(), "nested additions too");
    }
}
