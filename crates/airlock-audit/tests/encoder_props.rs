//! Property tests of the SIEM encoders: whatever a directory or Airflow puts in a value
//! (newlines, `|`, `=`, `]`, `"`, `\`, NUL, any Unicode), a CEF line stays one line with
//! exactly its header fields and keys, a syslog message stays one message whose structured
//! data holds exactly its parameters, and each OCSF event is one JSON line.

use airlock_audit::{seal, AuditEvent, NewEvent, Outcome, Target, OPERATIONS};
use proptest::prelude::*;

const NUL: char = '\u{0}';

/// Text that tries to break out: separators, escapes, controls, and any character.
fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("\n".to_owned()),
            Just("\r".to_owned()),
            Just("\u{0}".to_owned()),
            Just("|".to_owned()),
            Just("=".to_owned()),
            Just("]".to_owned()),
            Just("[".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just(" ".to_owned()),
            Just("CEF:0|".to_owned()),
            Just("<13>1 ".to_owned()),
            "\\PC{1,3}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn event() -> impl Strategy<Value = AuditEvent> {
    (
        prop::sample::select(OPERATIONS.to_vec()),
        hostile(),
        hostile(),
        prop::option::of(hostile()),
        prop::option::of(hostile()),
        prop::option::of(hostile()),
        any::<bool>(),
    )
        .prop_map(|(op, actor, name, instance, reason, run, failed)| {
            let outcome = if failed {
                Outcome::Failed {
                    error: name.clone(),
                }
            } else {
                Outcome::Succeeded
            };
            let mut e = NewEvent::new(chrono::Utc::now(), actor, op, outcome);
            e.target = Some(if op.starts_with("role.") {
                Target::Role { name }
            } else {
                Target::Account { username: name }
            });
            e.instance = instance;
            e.reason = reason;
            e.run_id = run;
            seal(None, 1, e)
        })
}

/// Positions of `sep` not escaped by a backslash.
fn unescaped(text: &str, sep: char) -> Vec<usize> {
    let mut out = Vec::new();
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(i);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_cef_line_has_its_seven_separators_and_its_keys_only(e in event()) {
        let line = airlock_audit::cef::encode(&e);
        prop_assert!(!line.contains(['\n', '\r', NUL]), "{}", line);
        let pipes = unescaped(&line, '|');
        prop_assert!(pipes.len() >= 7, "{line}");
        let extension = &line[pipes[6] + 1..];
        let optional = [
            matches!(e.target, Some(Target::Account { .. })),
            e.instance.is_some(),
            e.instance.is_some(),
            e.target.is_some(),
            e.target.is_some(),
            e.run_id.is_some(),
            e.run_id.is_some(),
            matches!(e.outcome, Outcome::Failed { .. }),
            e.reason.is_some(),
        ];
        let keys = 9 + optional.iter().filter(|x| **x).count();
        prop_assert_eq!(unescaped(extension, '=').len(), keys, "{}", line);
        // Header fields: nothing but the seven separators is an unescaped pipe before them.
        prop_assert_eq!(unescaped(&line[..pipes[6]], '|').len(), 6);
    }

    #[test]
    fn a_syslog_message_is_one_line_with_exactly_its_parameters(e in event()) {
        let msg = airlock_audit::syslog::encode(&e, "host\n name");
        prop_assert!(!msg.contains(['\n', '\r', NUL]), "{}", msg);
        let start = msg.find("[airlock@32473").expect("the element");
        let end = start + unescaped(&msg[start..], ']')[0];
        let quotes = unescaped(&msg[start..end], '"').len();
        let params = 5 + [e.instance.is_some(), e.target.is_some(), e.run_id.is_some(), matches!(e.outcome, Outcome::Failed { .. })]
            .iter()
            .filter(|x| **x)
            .count();
        prop_assert_eq!(quotes, 2 * params, "{}", msg);
        // Header: PRI+VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID, single spaces.
        let head: Vec<&str> = msg[..start].split(' ').collect();
        prop_assert_eq!(head.len(), 7, "{}", msg);
    }

    #[test]
    fn each_ocsf_event_is_one_json_line_naming_its_class(e in event()) {
        for o in airlock_audit::ocsf::encode(&e) {
            let line = o.to_string();
            prop_assert!(!line.contains('\n'));
            let back: serde_json::Value = serde_json::from_str(&line).expect("json");
            let class = back["class_uid"].as_u64().expect("class");
            let activity = back["activity_id"].as_u64().expect("activity");
            prop_assert_eq!(back["type_uid"].as_u64(), Some(class * 100 + activity));
        }
    }
}
