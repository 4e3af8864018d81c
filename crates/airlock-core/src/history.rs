//! Who had access to what, when.
//!
//! Airflow keeps no history of its users' roles. airlock observes them: every complete
//! inventory snapshot (from `airlock inventory`, and from `airlock serve` on its schedule)
//! yields an [`AccessState`]: every account that holds a role, with its roles. The store keeps
//! the states as intervals ([`Observed`]): one row per *change*, stretched while observations
//! keep finding the same state, so 90 days of snapshots every few minutes cost one row per
//! change of access rather than one per snapshot.
//!
//! [`answer`] says what an instance granted at a moment. The answer is only as exact as the
//! observations: at a moment inside an interval (observed the same before and after) it is
//! certain; in the gap between two intervals the access changed at some point of the gap, and
//! every account whose access differs on either side is marked [`Certainty::ChangedInGap`].

use crate::inventory::Snapshot;
use crate::model::{RoleName, Username};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One account that holds at least one role, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The account's username.
    pub username: Username,
    /// Its email.
    pub email: String,
    /// The roles it holds (never empty).
    pub roles: BTreeSet<RoleName>,
    /// Whether FAB lets it log in.
    pub active: bool,
}

/// The access one instance granted, as one observation saw it: its role holders, sorted by
/// username. Accounts without roles hold no access and are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessState {
    /// The holders, sorted by username.
    pub holders: Vec<Holder>,
}

impl AccessState {
    /// The access a complete snapshot shows.
    pub fn of(snapshot: &Snapshot) -> AccessState {
        AccessState::of_accounts(&snapshot.accounts)
    }

    /// The access every account of an instance, read completely, shows.
    pub fn of_accounts(accounts: &[crate::Account]) -> AccessState {
        let mut holders: Vec<Holder> = (accounts.iter())
            .filter(|a| !a.roles.is_empty())
            .map(|a| Holder {
                username: a.username.clone(),
                email: a.email.clone(),
                roles: a.roles.clone(),
                active: a.active,
            })
            .collect();
        holders.sort_by(|a, b| a.username.cmp(&b.username));
        AccessState { holders }
    }

    fn by_key(&self) -> BTreeMap<&str, &Holder> {
        (self.holders.iter())
            .map(|h| (h.username.key(), h))
            .collect()
    }
}

/// A stretch of time over which every observation of an instance found the same access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The first observation that found it.
    pub from: DateTime<Utc>,
    /// The last observation that found it.
    pub to: DateTime<Utc>,
    /// What made the first observation (`snapshot:<id>`).
    pub first_source: String,
    /// What made the last.
    pub last_source: String,
    /// How many observations found it.
    pub observations: u64,
    /// The access.
    pub state: AccessState,
}

/// How sure an answer is of one account's access at the moment asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    /// Observed with this access before and after the moment (or at it), unchanged between.
    Observed,
    /// Last observed with this access before the moment, and not observed since.
    LastObserved,
    /// The moment falls between two observations that disagree about this account: its
    /// access changed at some point between them. The roles shown are the earlier ones (none
    /// when it held no role then).
    ChangedInGap,
}

/// One account's access on one instance at the moment asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRow {
    /// The instance.
    pub instance: String,
    /// The account.
    pub username: Username,
    /// Its email.
    pub email: String,
    /// The roles it held (as observed before the moment).
    pub roles: BTreeSet<RoleName>,
    /// Whether it could log in.
    pub active: bool,
    /// How sure.
    pub certainty: Certainty,
    /// For [`Certainty::ChangedInGap`]: the roles the next observation found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_roles: Option<BTreeSet<RoleName>>,
}

/// What one instance's answer rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The instance.
    pub instance: String,
    /// The interval at or before the moment (`None`: nothing was observed before it).
    pub before: Option<Span>,
    /// The next interval after the moment, when the moment is not inside `before`.
    pub next: Option<Span>,
}

/// An interval without its state, as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// First observation.
    pub from: DateTime<Utc>,
    /// Last observation.
    pub to: DateTime<Utc>,
    /// What made the first observation.
    pub first_source: String,
    /// What made the last.
    pub last_source: String,
    /// How many observations.
    pub observations: u64,
}

impl From<&Observed> for Span {
    fn from(o: &Observed) -> Self {
        Span {
            from: o.from,
            to: o.to,
            first_source: o.first_source.clone(),
            last_source: o.last_source.clone(),
            observations: o.observations,
        }
    }
}

/// Which accounts an answer is about.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only holders of this role (before or, for a change in the gap, after).
    pub role: Option<RoleName>,
    /// Only this person: a username (compared as FAB does) or an email (ignoring ASCII case).
    pub person: Option<String>,
}

impl Filter {
    fn person_matches(&self, h: &Holder) -> bool {
        self.person.as_deref().is_none_or(|p| {
            h.username.key().eq_ignore_ascii_case(p) || h.email.eq_ignore_ascii_case(p)
        })
    }

    fn role_matches(&self, roles: &BTreeSet<RoleName>) -> bool {
        self.role.as_ref().is_none_or(|r| roles.contains(r))
    }
}

/// What `instance` granted at `at`, from the interval at or before `at` and the one after it
/// (see the module's documentation), filtered. Rows are sorted by username.
pub fn answer(
    instance: &str,
    at: DateTime<Utc>,
    before: Option<&Observed>,
    next: Option<&Observed>,
    filter: &Filter,
) -> (Evidence, Vec<AccessRow>) {
    let inside = before.is_some_and(|b| at <= b.to);
    let next = if inside { None } else { next };
    let evidence = Evidence {
        instance: instance.to_owned(),
        before: before.map(Span::from),
        next: next.map(Span::from),
    };
    let Some(before) = before else {
        return (evidence, Vec::new());
    };
    let after = next.map(|n| n.state.by_key());
    let mut rows = Vec::new();
    for h in &before.state.holders {
        let later = after.as_ref().map(|a| a.get(h.username.key()).copied());
        let (certainty, next_roles) = match later {
            None if inside => (Certainty::Observed, None),
            None => (Certainty::LastObserved, None),
            Some(Some(n)) if n.roles == h.roles && n.active == h.active => {
                (Certainty::Observed, None)
            }
            Some(n) => (
                Certainty::ChangedInGap,
                Some(n.map(|n| n.roles.clone()).unwrap_or_default()),
            ),
        };
        let role_ok = filter.role_matches(&h.roles)
            || next_roles.as_ref().is_some_and(|r| filter.role_matches(r));
        if role_ok && filter.person_matches(h) {
            rows.push(AccessRow {
                instance: instance.to_owned(),
                username: h.username.clone(),
                email: h.email.clone(),
                roles: h.roles.clone(),
                active: h.active,
                certainty,
                next_roles,
            });
        }
    }
    // Accounts that held nothing before the gap and something after it.
    if let Some(next) = next {
        let earlier = before.state.by_key();
        for n in &next.state.holders {
            if earlier.contains_key(n.username.key()) {
                continue;
            }
            if filter.role_matches(&n.roles) && filter.person_matches(n) {
                rows.push(AccessRow {
                    instance: instance.to_owned(),
                    username: n.username.clone(),
                    email: n.email.clone(),
                    roles: BTreeSet::new(),
                    active: n.active,
                    certainty: Certainty::ChangedInGap,
                    next_roles: Some(n.roles.clone()),
                });
            }
        }
        rows.sort_by(|a, b| a.username.cmp(&b.username));
    }
    (evidence, rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn holder(name: &str, roles: &[&str]) -> Holder {
        Holder {
            username: Username::new(name).unwrap(),
            email: format!("{name}@example.com"),
            roles: roles.iter().map(|r| RoleName::new(*r).unwrap()).collect(),
            active: true,
        }
    }

    fn t(min: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + min * 60, 0).unwrap()
    }

    fn observed(from: i64, to: i64, holders: Vec<Holder>) -> Observed {
        Observed {
            from: t(from),
            to: t(to),
            first_source: format!("snapshot:{from}"),
            last_source: format!("snapshot:{to}"),
            observations: 2,
            state: AccessState { holders },
        }
    }

    #[test]
    fn inside_an_interval_every_holder_is_observed() {
        let b = observed(
            0,
            60,
            vec![holder("ann", &["Admin"]), holder("bob", &["Viewer"])],
        );
        let (ev, rows) = answer("prod", t(30), Some(&b), None, &Filter::default());
        assert!(ev.next.is_none());
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.certainty == Certainty::Observed));
    }

    #[test]
    fn in_a_gap_only_the_accounts_that_changed_are_uncertain() {
        let b = observed(
            0,
            60,
            vec![holder("ann", &["Admin"]), holder("bob", &["Viewer"])],
        );
        let n = observed(
            90,
            120,
            vec![holder("bob", &["Viewer"]), holder("cy", &["Op"])],
        );
        let (ev, rows) = answer("prod", t(75), Some(&b), Some(&n), &Filter::default());
        assert_eq!(ev.next.as_ref().map(|s| s.from), Some(t(90)));
        let by: BTreeMap<&str, &AccessRow> = rows.iter().map(|r| (r.username.key(), r)).collect();
        assert_eq!(by["ann"].certainty, Certainty::ChangedInGap);
        assert_eq!(by["ann"].next_roles, Some(BTreeSet::new()));
        assert_eq!(by["bob"].certainty, Certainty::Observed);
        assert_eq!(by["cy"].certainty, Certainty::ChangedInGap);
        assert!(by["cy"].roles.is_empty());
    }

    #[test]
    fn after_the_last_observation_access_is_last_observed_and_before_the_first_none() {
        let b = observed(0, 60, vec![holder("ann", &["Admin"])]);
        let (_, rows) = answer("prod", t(600), Some(&b), None, &Filter::default());
        assert_eq!(rows[0].certainty, Certainty::LastObserved);
        let (ev, rows) = answer("prod", t(-5), None, Some(&b), &Filter::default());
        assert!(rows.is_empty() && ev.before.is_none());
    }

    #[test]
    fn filters_by_role_and_by_person_name_or_email_ignoring_case() {
        let b = observed(
            0,
            60,
            vec![holder("ann", &["Admin"]), holder("bob", &["Viewer"])],
        );
        let admins = Filter {
            role: Some(RoleName::new("Admin").unwrap()),
            person: None,
        };
        let (_, rows) = answer("prod", t(1), Some(&b), None, &admins);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].username.key(), "ann");
        let bob = Filter {
            role: None,
            person: Some("BOB@example.com".into()),
        };
        let (_, rows) = answer("prod", t(1), Some(&b), None, &bob);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].username.key(), "bob");
    }

    #[test]
    fn equal_states_give_equal_texts_and_accounts_without_roles_hold_nothing() {
        let a = AccessState {
            holders: vec![holder("ann", &["Admin", "Op"])],
        };
        let b = AccessState {
            holders: vec![holder("ann", &["Op", "Admin"])],
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }
}
