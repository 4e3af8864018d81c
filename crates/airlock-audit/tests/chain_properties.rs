//! Property tests of the audit chain: an untouched chain (also after a trip through the JSON
//! Lines export) verifies, and any single tampering (changing one field of one event,
//! deleting one event, inserting a forged one, swapping or moving events) is detected at the
//! right place.

use airlock_audit::{
    from_jsonl_line, seal, to_jsonl_line, verify, AuditEvent, ChainBreak, Head, NewEvent, Outcome,
    Target, VerifySummary, OPERATIONS,
};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::Value;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite floats only: JSON has no NaN or infinity.
        (-1e300f64..1e300).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A state for `before`/`after`: absent, or any JSON value but `null` (sealing treats
/// `Some(null)` as absent).
fn arb_state() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(arb_json().prop_filter("not null", |v| !v.is_null()))
}

fn arb_target() -> impl Strategy<Value = Option<Target>> {
    prop::option::of(prop_oneof![
        "\\PC{1,10}".prop_map(|username| Target::Account { username }),
        "\\PC{1,10}".prop_map(|name| Target::Role { name }),
        Just(Target::Run),
        Just(Target::Directory),
        ("\\PC{1,10}", "\\PC{1,10}")
            .prop_map(|(resource_type, id)| Target::ScimResource { resource_type, id }),
        "\\PC{1,10}".prop_map(|client| Target::ScimClient { client }),
        "\\PC{1,10}".prop_map(|id| Target::AccessRequest { id }),
        "\\PC{1,10}".prop_map(|name| Target::ApiToken { name }),
    ])
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Succeeded),
        "\\PC{0,10}".prop_map(|error| Outcome::Failed { error }),
        "\\PC{0,10}".prop_map(|rail| Outcome::Refused { rail }),
        Just(Outcome::Planned),
    ]
}

fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000_000).prop_map(|ms| DateTime::from_timestamp_millis(ms).expect("in range"))
}

fn arb_new_event() -> impl Strategy<Value = NewEvent> {
    (
        (
            "[0-9a-f]{8}",
            arb_time(),
            "\\PC{1,10}",
            prop::option::of("[a-z0-9-]{1,8}"),
            prop::option::of("\\PC{1,8}"),
        ),
        (
            arb_target(),
            prop::sample::select(OPERATIONS),
            arb_outcome(),
            arb_state(),
            arb_state(),
            prop::option::of("\\PC{0,16}"),
        ),
    )
        .prop_map(
            |((id, at, actor, run_id, instance), (target, op, outcome, before, after, reason))| {
                NewEvent {
                    id,
                    at,
                    actor,
                    run_id,
                    instance,
                    target,
                    operation: op.to_owned(),
                    outcome,
                    before,
                    after,
                    reason,
                }
            },
        )
}

fn sealed(news: Vec<NewEvent>) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = Vec::with_capacity(news.len());
    for (i, new) in news.into_iter().enumerate() {
        let event = seal(events.last(), i as u64 + 1, new);
        events.push(event);
    }
    events
}

fn arb_chain(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<AuditEvent>> {
    prop::collection::vec(arb_new_event(), len).prop_map(sealed)
}

fn head_of(events: &[AuditEvent]) -> Head {
    events.last().map_or_else(Head::genesis, AuditEvent::head)
}

/// One field of an event changed to a different value.
#[derive(Debug, Clone)]
enum Change {
    Seq(u64),
    Id(String),
    AtNanos(i64),
    Actor(String),
    RunId(Option<String>),
    Instance(Option<String>),
    Target(Option<Target>),
    Operation(String),
    Outcome(Outcome),
    Before(Option<Value>),
    After(Option<Value>),
    Reason(Option<String>),
    PrevHash(String),
    Hash(String),
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (1u64..50).prop_map(Change::Seq),
        "\\PC{0,10}".prop_map(Change::Id),
        prop_oneof![-1_000_000_000i64..-1, 1i64..1_000_000_000].prop_map(Change::AtNanos),
        "\\PC{0,10}".prop_map(Change::Actor),
        prop::option::of("\\PC{0,8}").prop_map(Change::RunId),
        prop::option::of("\\PC{0,8}").prop_map(Change::Instance),
        arb_target().prop_map(Change::Target),
        "\\PC{0,10}".prop_map(Change::Operation),
        arb_outcome().prop_map(Change::Outcome),
        arb_state().prop_map(Change::Before),
        arb_state().prop_map(Change::After),
        prop::option::of("\\PC{0,16}").prop_map(Change::Reason),
        "[0-9a-f]{64}".prop_map(Change::PrevHash),
        "[0-9a-f]{64}".prop_map(Change::Hash),
    ]
}

/// Applies `change`; false when it would leave the event as it was.
fn apply(event: &mut AuditEvent, change: Change) -> bool {
    let before = event.clone();
    match change {
        Change::Seq(seq) => event.seq = seq,
        Change::Id(id) => event.id = id,
        Change::AtNanos(nanos) => event.at += TimeDelta::nanoseconds(nanos),
        Change::Actor(actor) => event.actor = actor,
        Change::RunId(run_id) => event.run_id = run_id,
        Change::Instance(instance) => event.instance = instance,
        Change::Target(target) => event.target = target,
        Change::Operation(op) => event.operation = op,
        Change::Outcome(outcome) => event.outcome = outcome,
        Change::Before(state) => event.before = state,
        Change::After(state) => event.after = state,
        Change::Reason(reason) => event.reason = reason,
        Change::PrevHash(hash) => event.prev_hash = hash,
        Change::Hash(hash) => event.hash = hash,
    }
    *event != before
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_untouched_chain_verifies_also_after_an_export_round_trip(events in arb_chain(0..12)) {
        let head = head_of(&events);
        let expected = VerifySummary { count: events.len() as u64, last_hash: head.hash.clone() };
        prop_assert_eq!(verify(events.clone(), Some(head.clone())), Ok(expected.clone()));
        prop_assert_eq!(verify(events.clone(), None), Ok(expected.clone()));

        let reread: Vec<AuditEvent> = events
            .iter()
            .map(|e| from_jsonl_line(&to_jsonl_line(e)).expect("an exported line reads back"))
            .collect();
        prop_assert_eq!(&reread, &events);
        prop_assert_eq!(verify(reread, Some(head)), Ok(expected));
    }

    #[test]
    fn any_single_field_modification_is_detected_at_that_event(
        (events, index) in arb_chain(1..10).prop_flat_map(|e| { let n = e.len(); (Just(e), 0..n) }),
        change in arb_change(),
    ) {
        let head = head_of(&events);
        let mut tampered = events;
        prop_assume!(apply(&mut tampered[index], change));
        let seq = index as u64 + 1;
        prop_assert_eq!(verify(tampered.clone(), None), Err(ChainBreak::Modified { seq }));
        prop_assert_eq!(verify(tampered, Some(head)), Err(ChainBreak::Modified { seq }));
    }

    #[test]
    fn deleting_any_event_is_detected_and_the_last_one_against_the_head(
        (events, index) in arb_chain(1..10).prop_flat_map(|e| { let n = e.len(); (Just(e), 0..n) }),
    ) {
        let n = events.len() as u64;
        let head = head_of(&events);
        let mut tampered = events;
        tampered.remove(index);
        if index as u64 + 1 == n {
            prop_assert!(verify(tampered.clone(), None).is_ok(), "without a head the tail is unknowable");
            prop_assert_eq!(
                verify(tampered, Some(head)),
                Err(ChainBreak::Truncated { expected_count: n, found: n - 1 })
            );
        } else {
            let expected = Err(ChainBreak::Deleted { after_seq: index as u64, missing: 1 });
            prop_assert_eq!(verify(tampered.clone(), None), expected.clone());
            prop_assert_eq!(verify(tampered, Some(head)), expected);
        }
    }

    #[test]
    fn a_correctly_sealed_forgery_inserted_anywhere_is_detected(
        (events, index) in arb_chain(0..10).prop_flat_map(|e| { let n = e.len(); (Just(e), 0..=n) }),
        forged in arb_new_event(),
    ) {
        // The forger knows the algorithm: the forged event links to the one before it and
        // takes its place's seq. Only the events after it (or the head) give it away.
        let n = events.len();
        let head = head_of(&events);
        let forged = seal(index.checked_sub(1).map(|i| &events[i]), index as u64 + 1, forged);
        let mut tampered = events;
        tampered.insert(index, forged);
        if index == n {
            prop_assert!(verify(tampered.clone(), None).is_ok(), "without a head an append is unknowable");
            prop_assert_eq!(
                verify(tampered, Some(head)),
                Err(ChainBreak::BeyondHead { seq: n as u64 + 1, head_seq: n as u64 })
            );
        } else {
            prop_assert_eq!(
                verify(tampered, Some(head)),
                Err(ChainBreak::Inserted { seq: index as u64 + 1, position: index as u64 + 2 })
            );
        }
    }

    #[test]
    fn a_forgery_with_any_seq_and_prev_hash_inserted_anywhere_is_detected(
        (events, index) in arb_chain(0..10).prop_flat_map(|e| { let n = e.len(); (Just(e), 0..=n) }),
        forged in arb_new_event(),
        seq in 0u64..14,
        prev_hash in "[0-9a-f]{64}",
    ) {
        let head = head_of(&events);
        let forged = airlock_audit::seal_after(&Head { seq: seq.saturating_sub(1), hash: prev_hash }, forged);
        let mut tampered = events;
        tampered.insert(index, forged);
        prop_assert!(verify(tampered, Some(head)).is_err());
    }

    #[test]
    fn swapping_two_events_is_reported_as_a_reordering(
        (events, i, j) in arb_chain(2..10).prop_flat_map(|e| {
            let n = e.len();
            (Just(e), 0..n, 0..n)
        }).prop_filter("two different events", |(_, i, j)| i != j),
    ) {
        let head = head_of(&events);
        let mut tampered = events;
        tampered.swap(i, j);
        let (first, second) = (i.min(j) as u64 + 1, i.max(j) as u64 + 1);
        prop_assert_eq!(
            verify(tampered, Some(head)),
            Err(ChainBreak::Reordered { seq: second, position: first })
        );
    }

    #[test]
    fn moving_an_event_elsewhere_is_detected(
        (events, from, to) in arb_chain(2..10).prop_flat_map(|e| {
            let n = e.len();
            (Just(e), 0..n, 0..n)
        }).prop_filter("a real move", |(_, from, to)| from != to),
    ) {
        let head = head_of(&events);
        let mut tampered = events;
        let moved = tampered.remove(from);
        tampered.insert(to, moved);
        let found = verify(tampered, Some(head));
        prop_assert!(
            matches!(found, Err(ChainBreak::Reordered { .. })),
            "{:?}", found
        );
    }
}
