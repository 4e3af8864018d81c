//! Sealing events into the chain, and the hash format.
//!
//! # What is hashed
//!
//! `hash = lowercase_hex(SHA-256(DOMAIN || canonical_json(body)))` where `DOMAIN` is the
//! bytes `airlock-audit-event-v1\n` and `body` is this JSON object, with every key always
//! present (`null` for an absent optional field):
//!
//! | key | value |
//! |---|---|
//! | `seq` | the position, an integer |
//! | `id` | string |
//! | `at` | RFC 3339 UTC with exactly nine fractional digits and `Z`: `2025-01-02T03:04:05.678000000Z` |
//! | `actor` | string |
//! | `run_id`, `instance`, `reason` | string or `null` |
//! | `target` | `{"type":"account","username":…}`, `{"type":"role","name":…}`, `{"type":"run"}`, `{"type":"directory"}` or `null` |
//! | `operation` | string |
//! | `outcome` | `{"status":"succeeded"}`, `{"status":"failed","error":…}`, `{"status":"refused","rail":…}` or `{"status":"planned"}` |
//! | `before`, `after` | any JSON value, or `null` when absent |
//! | `prev_hash` | string |
//!
//! `canonical_json` sorts object keys at every depth, drops whitespace and writes each number
//! and string one way only (see the `canonical` module), so the same event always hashes the
//! same, however its JSON was produced or re-read; JSON is self-delimiting, so no two
//! different bodies share an encoding (no "ab"+"c" = "a"+"bc" ambiguity). The domain prefix
//! names the format version: a future format gets a new prefix, and old events keep theirs.
//!
//! The body is built by hand here, not through serde, so that renaming a field of the Rust
//! types cannot silently change the hash of every stored event; a golden test pins it.
//!
//! Two consequences: `before: Some(null)` is the same as `None` (sealing stores it as `None`),
//! and `at` is truncated to whole milliseconds when sealed (the store keeps milliseconds).

use chrono::{DateTime, SecondsFormat, Timelike as _, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::canonical::to_canonical_string;
use crate::event::{AuditEvent, Head, NewEvent, Outcome, Target};

/// The `prev_hash` of the first event: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The prefix that names the hash format version.
const DOMAIN: &[u8] = b"airlock-audit-event-v1\n";

/// Seals `new` as event `seq`, following `prev` (`None`: the first event, after the genesis).
///
/// The caller keeps the chain: `seq` should be `prev.seq + 1` (or 1). [`seal_after`] does
/// that from a stored head.
pub fn seal(prev: Option<&AuditEvent>, seq: u64, new: NewEvent) -> AuditEvent {
    let prev_hash = prev.map_or_else(|| GENESIS_HASH.to_owned(), |p| p.hash.clone());
    seal_with(seq, prev_hash, new)
}

/// Seals `new` as the event after `head`: position `head.seq + 1`, linked to `head.hash`.
pub fn seal_after(head: &Head, new: NewEvent) -> AuditEvent {
    seal_with(head.seq.saturating_add(1), head.hash.clone(), new)
}

fn seal_with(seq: u64, prev_hash: String, new: NewEvent) -> AuditEvent {
    let mut event = AuditEvent {
        seq,
        id: new.id,
        at: whole_millis(new.at),
        actor: new.actor,
        run_id: new.run_id,
        instance: new.instance,
        target: new.target,
        operation: new.operation,
        outcome: new.outcome,
        // `null` and absent hash alike and read back alike; keep one of them.
        before: new.before.filter(|v| !v.is_null()),
        after: new.after.filter(|v| !v.is_null()),
        reason: new.reason,
        prev_hash,
        hash: String::new(),
    };
    event.hash = event_hash(&event);
    event
}

fn whole_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = at.nanosecond() / 1_000_000 * 1_000_000;
    at.with_nanosecond(nanos).unwrap_or(at)
}

/// The hash `event`'s contents call for, ignoring its `hash` field.
pub(crate) fn event_hash(event: &AuditEvent) -> String {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(to_canonical_string(&hashed_body(event)).as_bytes());
    format!("{:x}", hasher.finalize())
}

fn hashed_body(e: &AuditEvent) -> Value {
    json!({
        "seq": e.seq,
        "id": e.id,
        "at": e.at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "actor": e.actor,
        "run_id": e.run_id,
        "instance": e.instance,
        "target": e.target.as_ref().map(target_body),
        "operation": e.operation,
        "outcome": outcome_body(&e.outcome),
        "before": e.before,
        "after": e.after,
        "reason": e.reason,
        "prev_hash": e.prev_hash,
    })
}

fn target_body(target: &Target) -> Value {
    let mut body = Map::new();
    let kind = match target {
        Target::Account { username } => {
            body.insert("username".into(), username.as_str().into());
            "account"
        }
        Target::Role { name } => {
            body.insert("name".into(), name.as_str().into());
            "role"
        }
        Target::Run => "run",
        Target::Directory => "directory",
        Target::ScimResource { resource_type, id } => {
            body.insert("resource_type".into(), resource_type.as_str().into());
            body.insert("id".into(), id.as_str().into());
            "scim_resource"
        }
        Target::ScimClient { client } => {
            body.insert("client".into(), client.as_str().into());
            "scim_client"
        }
        Target::AccessRequest { id } => {
            body.insert("id".into(), id.as_str().into());
            "access_request"
        }
        Target::ApiToken { name } => {
            body.insert("name".into(), name.as_str().into());
            "api_token"
        }
    };
    body.insert("type".into(), kind.into());
    Value::Object(body)
}

fn outcome_body(outcome: &Outcome) -> Value {
    let mut body = Map::new();
    let status = match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed { error } => {
            body.insert("error".into(), error.as_str().into());
            "failed"
        }
        Outcome::Refused { rail } => {
            body.insert("rail".into(), rail.as_str().into());
            "refused"
        }
        Outcome::Planned => "planned",
    };
    body.insert("status".into(), status.into());
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{ACCOUNT_CREATE, ACCOUNT_SET_ROLES};

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).expect("in range")
    }

    fn fixed_event() -> NewEvent {
        NewEvent {
            id: "0190b2d4-8a00-7000-8000-000000000001".to_owned(),
            at: at(1_720_000_000_123),
            actor: "airlock".to_owned(),
            run_id: Some("run-1".to_owned()),
            instance: Some("prod".to_owned()),
            target: Some(Target::Account {
                username: "alice".to_owned(),
            }),
            operation: ACCOUNT_SET_ROLES.to_owned(),
            outcome: Outcome::Succeeded,
            before: Some(json!({"roles": ["Viewer"]})),
            after: Some(json!({"roles": ["Op", "Viewer"]})),
            reason: Some("joined group data-eng".to_owned()),
        }
    }

    /// Pins the hash format: if this changes, every stored chain stops verifying. Change the
    /// domain prefix (a new format version) instead of this value.
    #[test]
    fn the_hash_format_is_stable() {
        let event = seal(None, 1, fixed_event());
        assert_eq!(
            to_canonical_string(&hashed_body(&event)),
            concat!(
                r#"{"actor":"airlock","after":{"roles":["Op","Viewer"]},"#,
                r#""at":"2024-07-03T09:46:40.123000000Z","before":{"roles":["Viewer"]},"#,
                r#""id":"0190b2d4-8a00-7000-8000-000000000001","instance":"prod","#,
                r#""operation":"account.set_roles","outcome":{"status":"succeeded"},"#,
                r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
                r#""reason":"joined group data-eng","run_id":"run-1","seq":1,"#,
                r#""target":{"type":"account","username":"alice"}}"#
            )
        );
        assert_eq!(
            event.hash,
            "03e360a4b1a4b13c7a0075f72ae4ddf7ec362a2b3eb48ae2aa7765b8bccc21ef"
        );
    }

    #[test]
    fn the_hand_built_bodies_match_the_serde_form() {
        for target in [
            Target::Account {
                username: "a".into(),
            },
            Target::Role { name: "r".into() },
            Target::Run,
            Target::Directory,
            Target::AccessRequest { id: "r".into() },
            Target::ApiToken { name: "t".into() },
        ] {
            assert_eq!(
                target_body(&target),
                serde_json::to_value(&target).expect("serializes")
            );
        }
        for outcome in [
            Outcome::Succeeded,
            Outcome::Failed { error: "e".into() },
            Outcome::Refused { rail: "r".into() },
            Outcome::Planned,
        ] {
            assert_eq!(
                outcome_body(&outcome),
                serde_json::to_value(&outcome).expect("serializes")
            );
        }
    }

    #[test]
    fn the_first_event_follows_the_genesis_and_the_next_follows_it() {
        let first = seal(None, 1, fixed_event());
        assert_eq!(first.prev_hash, GENESIS_HASH);
        assert_eq!(first.hash.len(), 64);
        assert!(first
            .hash
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(first.is_intact());

        let mut new = fixed_event();
        new.id = "0190b2d4-8a00-7000-8000-000000000002".to_owned();
        let second = seal(Some(&first), 2, new.clone());
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(seal_after(&first.head(), new), second);
        assert_eq!(
            seal_after(&Head::genesis(), fixed_event()),
            first,
            "sealing after the genesis head is sealing the first event"
        );
    }

    #[test]
    fn sealing_keeps_whole_milliseconds_and_drops_null_states() {
        let mut new = NewEvent::new(
            at(1_000).with_nanosecond(999_999).expect("valid"),
            "airlock",
            ACCOUNT_CREATE,
            Outcome::Succeeded,
        );
        new.before = Some(Value::Null);
        let event = seal(None, 1, new);
        assert_eq!(event.at, at(1_000));
        assert_eq!(event.before, None);
    }

    #[test]
    fn new_events_get_a_v7_id_from_their_time() {
        let new = NewEvent::new(
            at(1_720_000_000_123),
            "airlock",
            ACCOUNT_CREATE,
            Outcome::Planned,
        );
        let id = uuid::Uuid::parse_str(&new.id).expect("a uuid");
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_720_000_000, 123));
    }
}
