//! What a directory says about people: a complete snapshot of people and their (transitive)
//! group memberships, as read by any source (JumpCloud, LDAP, SCIM, file).
//!
//! Sources must only ever hand over *complete* snapshots: a partial read is an error, never a
//! smaller snapshot, because a person missing from a snapshot is treated as a leaver.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A directory group's name, compared exactly (sources normalise nothing).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupName(pub String);

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's stable id in the source (JumpCloud `_id`, LDAP `entryUUID` or DN, SCIM `id`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PersonId(pub String);

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the directory lets a person work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    /// Active: gets access.
    Active,
    /// Suspended, locked or disabled: treated like a leaver.
    Suspended,
    /// Created but not yet activated (JumpCloud "staged"): gets no access yet.
    Staged,
}

/// One person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Stable id in the source.
    pub id: PersonId,
    /// Directory username (JumpCloud `username`, LDAP `uid`/`sAMAccountName`).
    pub username: String,
    /// Primary email, if any.
    pub email: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Status in the directory.
    pub status: PersonStatus,
    /// Every group the person belongs to, directly or through nested groups.
    pub groups: BTreeSet<GroupName>,
}

/// A complete read of one directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorySnapshot {
    /// People by id.
    pub people: BTreeMap<PersonId, Person>,
    /// Every group the source knows, including empty ones.
    pub groups: BTreeSet<GroupName>,
}

/// Who a name designates in a directory ([`DirectorySnapshot::find`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// Exactly this person.
    One(&'a Person),
    /// Nobody.
    Nobody,
    /// Several people (by email or username): the name designates no one for sure.
    Several,
}

impl DirectorySnapshot {
    /// The person `name` designates: their directory id, else their email or directory
    /// username (ASCII case ignored), active or not; several matches are [`Found::Several`].
    pub fn find(&self, name: &str) -> Found<'_> {
        if let Some(p) = self.people.get(&PersonId(name.to_owned())) {
            return Found::One(p);
        }
        let mut matches = self.people.values().filter(|p| {
            p.username.eq_ignore_ascii_case(name)
                || p.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(name))
        });
        match (matches.next(), matches.next()) {
            (Some(p), None) => Found::One(p),
            (None, _) => Found::Nobody,
            (Some(_), Some(_)) => Found::Several,
        }
    }

    /// People whose status grants access.
    pub fn active(&self) -> impl Iterator<Item = &Person> {
        self.people
            .values()
            .filter(|p| p.status == PersonStatus::Active)
    }
}

/// The people a batch of directory changes touched (SCIM pushes), so that a reconcile can plan
/// only their accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// People whose current entry matters, looked up in a fresh snapshot (absent there: gone).
    pub ids: BTreeSet<PersonId>,
    /// Entries as they were before a change (a deleted or renamed person), so that the
    /// account they had is found too.
    pub previous: Vec<Person>,
}

impl Touched {
    /// Whether nobody was touched.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.previous.is_empty()
    }
}
