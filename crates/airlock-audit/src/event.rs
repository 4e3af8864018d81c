//! The audit event and its parts: who did what to which object in which Airflow, with what
//! outcome, and where the event sits in the chain.
//!
//! The serde form of these types is the export format and the store's format (see
//! [`crate::to_jsonl_line`]); the hashed form is separate and frozen (see [`crate::chain`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::GENESIS_HASH;

/// The actor of events airlock performs on its own (a scheduled sync, a SCIM push it applies).
pub const ACTOR_AIRLOCK: &str = "airlock";

/// One sealed link of the audit chain.
///
/// Every field but `hash` is covered by `hash`; `prev_hash` is the `hash` of the event before
/// (or [`GENESIS_HASH`] for the first), so changing, removing, adding or moving any event
/// breaks the chain where it happened. Build one with [`crate::seal`] or
/// [`crate::seal_after`], never by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// The event's 1-based position in the chain.
    pub seq: u64,
    /// A uuid v7 (it sorts by creation time), unique across all events.
    pub id: String,
    /// When it happened, UTC, whole milliseconds (sealing truncates).
    pub at: DateTime<Utc>,
    /// Who: [`ACTOR_AIRLOCK`] for airlock's own runs, or the person or service that asked.
    pub actor: String,
    /// The run this event belongs to, when it belongs to one.
    pub run_id: Option<String>,
    /// The Airflow instance changed, when the event is about one.
    pub instance: Option<String>,
    /// What object was changed, when there is one.
    pub target: Option<Target>,
    /// What was done: one of the names in [`crate::operation`].
    pub operation: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The object's state before, as airlock read it (never a secret).
    pub before: Option<Value>,
    /// The object's state after, as airlock wrote or planned it (never a secret).
    pub after: Option<Value>,
    /// Why airlock did it (the directory change or policy rule behind it), in words.
    pub reason: Option<String>,
    /// The `hash` of the previous event, lowercase hex; [`GENESIS_HASH`] for event 1.
    pub prev_hash: String,
    /// SHA-256 of this event's contents and `prev_hash`, lowercase hex (see [`crate::chain`]).
    pub hash: String,
}

impl AuditEvent {
    /// The head of a chain that ends with this event.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }

    /// The hash this event's contents call for (what `hash` holds if nothing was changed).
    pub fn compute_hash(&self) -> String {
        crate::chain::event_hash(self)
    }

    /// True when `hash` matches the event's contents.
    pub fn is_intact(&self) -> bool {
        self.compute_hash() == self.hash
    }
}

/// An event before it is sealed into the chain: everything but its position and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// A uuid v7; [`NewEvent::new`] makes one from `at`.
    pub id: String,
    /// When it happened (the injected clock's time); sealing keeps whole milliseconds.
    pub at: DateTime<Utc>,
    /// Who: [`ACTOR_AIRLOCK`] or the person or service that asked.
    pub actor: String,
    /// The run this event belongs to.
    pub run_id: Option<String>,
    /// The Airflow instance changed.
    pub instance: Option<String>,
    /// What object was changed.
    pub target: Option<Target>,
    /// What was done: one of the names in [`crate::operation`].
    pub operation: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The object's state before (never a secret).
    pub before: Option<Value>,
    /// The object's state after (never a secret).
    pub after: Option<Value>,
    /// Why, in words.
    pub reason: Option<String>,
}

impl NewEvent {
    /// An event with only the required parts; set the optional ones on the returned value.
    /// The id is a uuid v7 whose time part is `at` (its random part comes from the uuid crate).
    pub fn new(
        at: DateTime<Utc>,
        actor: impl Into<String>,
        operation: impl Into<String>,
        outcome: Outcome,
    ) -> NewEvent {
        NewEvent {
            id: uuid_v7_at(at),
            at,
            actor: actor.into(),
            run_id: None,
            instance: None,
            target: None,
            operation: operation.into(),
            outcome,
            before: None,
            after: None,
            reason: None,
        }
    }
}

fn uuid_v7_at(at: DateTime<Utc>) -> String {
    // Times before 1970 cannot be a v7 timestamp; they only happen with a broken clock.
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, at.timestamp_subsec_nanos());
    uuid::Uuid::new_v7(ts).to_string()
}

/// The object an event changed.
///
/// Serialized with a `type` tag: `{"type":"account","username":"alice"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A user account in an Airflow instance.
    Account {
        /// The username as airlock spelled it.
        username: String,
    },
    /// A role in an Airflow instance.
    Role {
        /// The role name.
        name: String,
    },
    /// The run itself (`run.start`, `run.finish`, `rail.refused`).
    Run,
    /// The directory airlock reads people and groups from.
    Directory,
    /// A User or Group stored by the SCIM endpoint.
    ScimResource {
        /// `User` or `Group`.
        resource_type: String,
        /// The resource's SCIM id.
        id: String,
    },
    /// A SCIM client (its bearer token).
    ScimClient {
        /// The client's name.
        client: String,
    },
    /// A just-in-time access request (and the grant it became).
    AccessRequest {
        /// The request's id.
        id: String,
    },
    /// A governance API token.
    ApiToken {
        /// The token's name.
        name: String,
    },
}

/// How an event's operation ended.
///
/// Serialized with a `status` tag: `{"status":"failed","error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// The change was made.
    Succeeded,
    /// The change was attempted and failed.
    Failed {
        /// The error, as one line (never a secret).
        error: String,
    },
    /// A safety rail stopped the change before it was attempted.
    Refused {
        /// The rail's name (`max_deletes`, `first_read_incomplete`, ...).
        rail: String,
    },
    /// The change was planned, not made (`airlock plan`, a dry run).
    Planned,
}

/// The end of a chain: the position and hash of its last event, kept by the store next to
/// the events so that removing events from the end is noticed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    /// How many events the chain holds (the last event's `seq`); 0 when empty.
    pub seq: u64,
    /// The last event's hash; [`GENESIS_HASH`] when empty.
    pub hash: String,
}

impl Head {
    /// The head of the empty chain.
    pub fn genesis() -> Head {
        Head {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.seq, self.hash)
    }
}
