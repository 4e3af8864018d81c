//! airlock's audit trail: every change airlock makes to an Airflow, and every refusal by a
//! safety rail, as an append-only chain of [`AuditEvent`]s in which each event carries the
//! SHA-256 hash of its own contents and of the event before it.
//!
//! - [`seal`] / [`seal_after`] turn a [`NewEvent`] into the next link of the chain.
//! - [`verify`] (or a [`Verifier`] fed one event at a time) walks a chain and reports the first
//!   place it was modified, deleted from, inserted into, reordered or cut short, as a
//!   [`ChainBreak`] whose message is one line naming the event.
//! - [`to_jsonl_line`] / [`from_jsonl_line`] are the export format (one JSON object per line),
//!   which is also the form the store keeps each event in.
//! - [`checkpoint`] signs the chain's head and size as a C2SP checkpoint (a [`note`] signed
//!   with Ed25519), and checks a stored chain against one: a rewritten, truncated or reset
//!   chain contradicts a checkpoint kept outside the database.
//! - [`ocsf`], [`cef`] and [`syslog`] encode events for a SIEM; [`Format`] names the export
//!   and shipping formats and encodes through them.
//!
//! The hash format (what exactly is hashed, and how) is described in [`chain`]; the store of
//! the events is `airlock-store`, which serializes appends across processes.
//!
//! This crate is pure: no I/O, no async, no clock (callers pass the time in). The only impurity
//! is [`NewEvent::new`], which draws the random part of a uuid v7 id.
//!
//! What a hash chain does not do: stop someone who can write to the store from rewriting the
//! whole chain (or its tail) and recomputing every hash, since no secret is involved. Verifying
//! against a head recorded somewhere else catches that: a signed [`checkpoint`], a SIEM.
#![warn(missing_docs)]

mod canonical;
pub mod cef;
pub mod chain;
pub mod checkpoint;
mod event;
mod format;
mod jsonl;
pub mod note;
pub mod ocsf;
pub mod operation;
mod siem_text;
pub mod syslog;
mod verify;

pub use chain::{seal, seal_after, GENESIS_HASH};
pub use event::{AuditEvent, Head, NewEvent, Outcome, Target, ACTOR_AIRLOCK};
pub use format::Format;
pub use jsonl::{from_jsonl_line, to_jsonl_line};
pub use operation::{
    ACCESS_GRANT_EXPIRE, ACCESS_GRANT_REVOKE, ACCESS_REQUEST_APPROVE, ACCESS_REQUEST_AUTO_APPROVE,
    ACCESS_REQUEST_CANCEL, ACCESS_REQUEST_CREATE, ACCESS_REQUEST_DENY, ACCESS_REQUEST_LAPSE,
    ACCOUNT_ADOPT, ACCOUNT_CREATE, ACCOUNT_DELETE, ACCOUNT_REACTIVATE, ACCOUNT_SET_ROLES,
    ACCOUNT_SUSPEND, ACCOUNT_UPDATE_PROFILE, OPERATIONS, PLAN_SAVED, RAIL_REFUSED, RAIL_RELEASE,
    ROLE_CREATE, ROLE_DELETE, ROLE_UPDATE, RUN_FINISH, RUN_START,
};
pub use verify::{verify, ChainBreak, Verifier, VerifySummary};
