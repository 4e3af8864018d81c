//! Walking a chain and saying where and how it was broken.
//!
//! Events are checked in the order they are stored (their *position*: 1, 2, 3, ... for an
//! iterator or a file, the store's `seq` column for the store). In an untouched chain every
//! event is intact (its hash matches its contents), its `seq` equals its position, and its
//! `prev_hash` is the hash of the event before (the genesis hash for the first). The first
//! position where that fails is classified:
//!
//! | found | break |
//! |---|---|
//! | hash does not match contents (or a stored copy cannot be read) | [`ChainBreak::Modified`] |
//! | right `seq`, wrong `prev_hash` (a re-sealed or forged event) | [`ChainBreak::Unlinked`] |
//! | a `seq` already seen | [`ChainBreak::Inserted`] |
//! | a `seq` ahead of its position, and the skipped ones appear later | [`ChainBreak::Reordered`] |
//! | a `seq` ahead of its position, and the skipped ones never appear | [`ChainBreak::Deleted`] |
//! | right `seq`, stored at another position | [`ChainBreak::Reordered`] |
//! | fewer events than the head records | [`ChainBreak::Truncated`] |
//! | more events than the head records | [`ChainBreak::BeyondHead`] |
//! | as many, but the last hash is not the head's | [`ChainBreak::HeadMismatch`] |
//!
//! Telling a deletion from a reordering needs the rest of the chain, so after a forward jump
//! the verifier keeps reading (in constant memory) until it sees a skipped `seq` or the end.
//!
//! Verifying without a head cannot notice events removed from the end, or forged events
//! appended after it with correct hashes: pass the store's head, read in the same snapshot as
//! the events, or one recorded earlier.

use crate::chain::GENESIS_HASH;
use crate::event::{AuditEvent, Head};

/// What a verified chain ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySummary {
    /// How many events the chain holds.
    pub count: u64,
    /// The last event's hash ([`GENESIS_HASH`] for an empty chain).
    pub last_hash: String,
}

impl VerifySummary {
    /// The head of the verified chain.
    pub fn head(&self) -> Head {
        Head {
            seq: self.count,
            hash: self.last_hash.clone(),
        }
    }
}

/// Where and how a chain was found broken. Event numbers are positions in the chain as it
/// should be (the `seq` an untouched event there would have).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The event's hash does not match its contents: a field was changed (or, in a store, the
    /// event can no longer be read, or its columns disagree with it).
    #[error("audit event {seq} was modified: its hash does not match its contents")]
    Modified {
        /// The event's position.
        seq: u64,
    },
    /// The event is intact and in its place but does not link to the event before it: one of
    /// the two was replaced by a re-sealed or forged event.
    #[error("{}", unlinked_message(*.seq))]
    Unlinked {
        /// The event whose `prev_hash` does not match.
        seq: u64,
    },
    /// Events are missing from the middle (or start) of the chain.
    #[error("{}", deleted_message(*.after_seq, *.missing))]
    Deleted {
        /// The last event before the hole (0: the hole starts at event 1).
        after_seq: u64,
        /// How many events are missing.
        missing: u64,
    },
    /// An event is not where its `seq` says it belongs.
    #[error("audit event {seq} is out of order: it was found at position {position}")]
    Reordered {
        /// The `seq` of the misplaced event.
        seq: u64,
        /// Where it was found.
        position: u64,
    },
    /// An event with a `seq` the chain already had was found: an event was inserted (or
    /// copied) before it.
    #[error("an audit event was inserted: event {seq} appears again at position {position}")]
    Inserted {
        /// The repeated `seq`.
        seq: u64,
        /// Where it appeared again.
        position: u64,
    },
    /// Events were removed from the end: the chain is shorter than its recorded head.
    #[error("{}", truncated_message(*.expected_count, *.found))]
    Truncated {
        /// How many events the head records.
        expected_count: u64,
        /// How many the chain holds.
        found: u64,
    },
    /// Events follow the recorded head: they were appended without going through airlock.
    #[error("audit event {seq} was inserted after the recorded head (event {head_seq}): airlock did not append it")]
    BeyondHead {
        /// The first event past the head.
        seq: u64,
        /// The head's `seq`.
        head_seq: u64,
    },
    /// The chain has as many events as its head records, but ends with a different hash:
    /// the last event was replaced, or the head was changed.
    #[error("{}", head_mismatch_message(*.seq))]
    HeadMismatch {
        /// The last event (0: an empty chain whose head is not the genesis).
        seq: u64,
    },
    /// The store's record of the head is gone.
    #[error("the recorded audit head is missing: it was deleted")]
    HeadMissing,
}

fn unlinked_message(seq: u64) -> String {
    if seq <= 1 {
        format!("audit event {seq} does not start the chain: its prev_hash is not the genesis hash, so it was replaced by a forged event")
    } else {
        format!(
            "audit event {seq} does not follow event {}: its prev_hash is not that event's hash, so one of them was replaced by a forged event",
            seq - 1
        )
    }
}

fn deleted_message(after_seq: u64, missing: u64) -> String {
    let first = after_seq + 1;
    let last = after_seq + missing;
    if missing == 1 {
        format!(
            "audit event {first} was deleted: the log skips from event {after_seq} to event {}",
            last + 1
        )
    } else {
        format!("audit events {first} to {last} were deleted: the log skips from event {after_seq} to event {}", last + 1)
    }
}

fn truncated_message(expected_count: u64, found: u64) -> String {
    let first = found + 1;
    if expected_count == first {
        format!("audit event {first} was deleted from the end: the log ends at event {found} but its head records event {expected_count}")
    } else {
        format!("audit events {first} to {expected_count} were deleted from the end: the log ends at event {found} but its head records event {expected_count}")
    }
}

fn head_mismatch_message(seq: u64) -> String {
    if seq == 0 {
        "the recorded audit head of the empty log is not the genesis hash: the head was changed"
            .to_owned()
    } else {
        format!("audit event {seq} does not match the recorded head: the last event or the head was replaced")
    }
}

/// Checks a chain one event at a time, in stored order, in constant memory.
///
/// Feed every event with [`Verifier::push`] (or [`Verifier::push_stored`] when the events
/// have storage positions of their own), then call [`Verifier::finish`]. A push that returns
/// an error has found a definite break; later pushes return it again, so a caller may stop
/// reading. A push may return `Ok` after a suspicious jump while the verifier reads on to
/// tell a deletion from a reordering.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// Events pushed so far (the position of the last one).
    pushed: u64,
    /// The hash the next event must link to.
    prev_hash: String,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    /// Everything so far is intact and linked.
    Linked,
    /// Event `seq` was found at `position`, after `after_seq`: either events
    /// `after_seq + 1 .. seq` were deleted, or they turn up later (reordered).
    Jumped {
        after_seq: u64,
        seq: u64,
        position: u64,
    },
    Broken(ChainBreak),
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier at the start of a chain.
    pub fn new() -> Verifier {
        Verifier {
            pushed: 0,
            prev_hash: GENESIS_HASH.to_owned(),
            state: State::Linked,
        }
    }

    /// Checks the next event; its position is one more than the previous event's.
    pub fn push(&mut self, event: &AuditEvent) -> Result<(), ChainBreak> {
        let position = self.pushed + 1;
        self.push_stored(position, event)
    }

    /// Checks the next event, found at storage position `position` (a store's key for it;
    /// in an untouched chain, its `seq`).
    pub fn push_stored(&mut self, position: u64, event: &AuditEvent) -> Result<(), ChainBreak> {
        self.pushed += 1;
        let expected = self.pushed;
        match &self.state {
            State::Broken(found) => return Err(found.clone()),
            State::Jumped {
                after_seq,
                seq,
                position: jumped_at,
            } => {
                if event.seq > *after_seq && event.seq < *seq {
                    return self.break_with(ChainBreak::Reordered {
                        seq: *seq,
                        position: *jumped_at,
                    });
                }
                return Ok(());
            }
            State::Linked => {}
        }

        if !event.is_intact() {
            return self.break_with(ChainBreak::Modified { seq: expected });
        }
        if event.seq < expected {
            return self.break_with(ChainBreak::Inserted {
                seq: event.seq,
                position,
            });
        }
        if event.seq > expected {
            self.state = State::Jumped {
                after_seq: expected - 1,
                seq: event.seq,
                position,
            };
            return Ok(());
        }
        if position != expected {
            // In its place in the order, but stored under another key.
            return self.break_with(ChainBreak::Reordered {
                seq: event.seq,
                position,
            });
        }
        if event.prev_hash != self.prev_hash {
            return self.break_with(ChainBreak::Unlinked { seq: expected });
        }
        self.prev_hash.clone_from(&event.hash);
        Ok(())
    }

    /// Records that the next stored event could not be read, or that a store's other copy of
    /// its fields (its columns) disagrees with it: a modification at this position.
    pub fn push_corrupt(&mut self) -> Result<(), ChainBreak> {
        self.pushed += 1;
        match &self.state {
            State::Broken(found) => Err(found.clone()),
            // An unreadable event cannot tell a deletion from a reordering; keep reading.
            State::Jumped { .. } => Ok(()),
            State::Linked => self.break_with(ChainBreak::Modified { seq: self.pushed }),
        }
    }

    /// The verdict once every event was pushed. With a `head` (the chain's recorded end),
    /// events removed from or appended to the end are noticed too.
    pub fn finish(self, head: Option<&Head>) -> Result<VerifySummary, ChainBreak> {
        match self.state {
            State::Broken(found) => return Err(found),
            State::Jumped { after_seq, seq, .. } => {
                return Err(ChainBreak::Deleted {
                    after_seq,
                    missing: seq - after_seq - 1,
                })
            }
            State::Linked => {}
        }
        let count = self.pushed;
        if let Some(head) = head {
            if head.seq > count {
                return Err(ChainBreak::Truncated {
                    expected_count: head.seq,
                    found: count,
                });
            }
            if head.seq < count {
                return Err(ChainBreak::BeyondHead {
                    seq: head.seq + 1,
                    head_seq: head.seq,
                });
            }
            if head.hash != self.prev_hash {
                return Err(ChainBreak::HeadMismatch { seq: count });
            }
        }
        Ok(VerifySummary {
            count,
            last_hash: self.prev_hash,
        })
    }

    fn break_with(&mut self, found: ChainBreak) -> Result<(), ChainBreak> {
        self.state = State::Broken(found.clone());
        Err(found)
    }
}

/// Verifies a whole chain given in stored order, against its recorded `head` if there is one.
/// Stops reading at the first definite break.
pub fn verify(
    events: impl IntoIterator<Item = AuditEvent>,
    head: Option<Head>,
) -> Result<VerifySummary, ChainBreak> {
    let mut verifier = Verifier::new();
    for event in events {
        verifier.push(&event)?;
    }
    verifier.finish(head.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::seal;
    use crate::event::{NewEvent, Outcome};
    use crate::operation::RUN_START;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = Vec::new();
        for seq in 1..=n {
            let new = NewEvent {
                id: format!("id-{seq}"),
                ..NewEvent::new(
                    chrono::DateTime::from_timestamp_millis(seq as i64 * 1000).expect("in range"),
                    "airlock",
                    RUN_START,
                    Outcome::Succeeded,
                )
            };
            let event = seal(events.last(), seq, new);
            events.push(event);
        }
        events
    }

    fn head_of(events: &[AuditEvent]) -> Head {
        events.last().map_or_else(Head::genesis, AuditEvent::head)
    }

    #[test]
    fn an_empty_chain_verifies_against_the_genesis_head() {
        let summary = verify(Vec::new(), Some(Head::genesis())).expect("empty is fine");
        assert_eq!(summary.count, 0);
        assert_eq!(summary.last_hash, GENESIS_HASH);
        assert_eq!(
            verify(
                Vec::new(),
                Some(Head {
                    seq: 0,
                    hash: "ff".repeat(32)
                })
            ),
            Err(ChainBreak::HeadMismatch { seq: 0 })
        );
    }

    #[test]
    fn an_untouched_chain_verifies_and_reports_its_head() {
        let events = chain(5);
        let head = head_of(&events);
        let summary = verify(events, Some(head.clone())).expect("untouched");
        assert_eq!(summary.head(), head);
    }

    #[test]
    fn a_modified_field_is_reported_as_a_modification_of_that_event() {
        let mut events = chain(5);
        events[2].actor = "mallory".to_owned();
        let err = verify(events, None).expect_err("modified");
        assert_eq!(err, ChainBreak::Modified { seq: 3 });
        assert_eq!(
            err.to_string(),
            "audit event 3 was modified: its hash does not match its contents"
        );
    }

    #[test]
    fn a_deleted_middle_event_is_reported_with_the_hole() {
        let mut events = chain(5);
        events.remove(1);
        let err = verify(events, None).expect_err("deleted");
        assert_eq!(
            err,
            ChainBreak::Deleted {
                after_seq: 1,
                missing: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "audit event 2 was deleted: the log skips from event 1 to event 3"
        );

        let mut events = chain(6);
        events.drain(0..3);
        let err = verify(events, None).expect_err("deleted");
        assert_eq!(
            err.to_string(),
            "audit events 1 to 3 were deleted: the log skips from event 0 to event 4"
        );
    }

    #[test]
    fn a_swap_is_reported_as_a_reordering_not_a_deletion() {
        let mut events = chain(5);
        events.swap(1, 3);
        let err = verify(events, None).expect_err("swapped");
        assert_eq!(
            err,
            ChainBreak::Reordered {
                seq: 4,
                position: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "audit event 4 is out of order: it was found at position 2"
        );
    }

    #[test]
    fn deleting_the_last_event_is_only_seen_against_the_head() {
        let mut events = chain(4);
        let head = head_of(&events);
        events.pop();
        assert!(verify(events.clone(), None).is_ok());
        let err = verify(events, Some(head)).expect_err("truncated");
        assert_eq!(
            err,
            ChainBreak::Truncated {
                expected_count: 4,
                found: 3
            }
        );
        assert_eq!(
            err.to_string(),
            "audit event 4 was deleted from the end: the log ends at event 3 but its head records event 4"
        );
    }

    #[test]
    fn a_forged_event_appended_after_the_head_is_reported() {
        let mut events = chain(3);
        let head = head_of(&events);
        let forged = seal(
            events.last(),
            4,
            NewEvent::new(
                chrono::DateTime::UNIX_EPOCH,
                "mallory",
                RUN_START,
                Outcome::Succeeded,
            ),
        );
        events.push(forged);
        let err = verify(events, Some(head)).expect_err("forged");
        assert_eq!(
            err,
            ChainBreak::BeyondHead {
                seq: 4,
                head_seq: 3
            }
        );
    }

    #[test]
    fn a_re_sealed_replacement_is_reported_at_the_next_link() {
        let mut events = chain(4);
        let forged = seal(
            events.first(),
            2,
            NewEvent::new(
                chrono::DateTime::UNIX_EPOCH,
                "mallory",
                RUN_START,
                Outcome::Succeeded,
            ),
        );
        events[1] = forged;
        let err = verify(events, None).expect_err("replaced");
        assert_eq!(err, ChainBreak::Unlinked { seq: 3 });
        assert_eq!(
            err.to_string(),
            "audit event 3 does not follow event 2: its prev_hash is not that event's hash, so one of them was replaced by a forged event"
        );
    }

    #[test]
    fn an_event_stored_under_another_key_is_out_of_order() {
        let events = chain(2);
        let mut verifier = Verifier::new();
        verifier.push_stored(1, &events[0]).expect("in place");
        assert_eq!(
            verifier.push_stored(12, &events[1]),
            Err(ChainBreak::Reordered {
                seq: 2,
                position: 12
            })
        );
    }

    #[test]
    fn a_corrupt_stored_event_is_a_modification_and_breaks_stay_broken() {
        let events = chain(3);
        let mut verifier = Verifier::new();
        verifier.push(&events[0]).expect("intact");
        assert_eq!(
            verifier.push_corrupt(),
            Err(ChainBreak::Modified { seq: 2 })
        );
        assert_eq!(
            verifier.push(&events[2]),
            Err(ChainBreak::Modified { seq: 2 })
        );
        assert_eq!(verifier.finish(None), Err(ChainBreak::Modified { seq: 2 }));
    }

    #[test]
    fn every_message_is_one_lowercase_line() {
        let breaks = [
            ChainBreak::Modified { seq: 1 },
            ChainBreak::Unlinked { seq: 1 },
            ChainBreak::Unlinked { seq: 9 },
            ChainBreak::Deleted {
                after_seq: 3,
                missing: 2,
            },
            ChainBreak::Reordered {
                seq: 4,
                position: 2,
            },
            ChainBreak::Inserted {
                seq: 3,
                position: 4,
            },
            ChainBreak::Truncated {
                expected_count: 9,
                found: 5,
            },
            ChainBreak::BeyondHead {
                seq: 6,
                head_seq: 5,
            },
            ChainBreak::HeadMismatch { seq: 0 },
            ChainBreak::HeadMismatch { seq: 5 },
            ChainBreak::HeadMissing,
        ];
        for found in breaks {
            let message = found.to_string();
            assert!(!message.contains('\n'), "{message}");
            assert!(!message.ends_with('.'), "{message}");
            assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        }
    }
}
