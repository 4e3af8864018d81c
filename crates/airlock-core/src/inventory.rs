//! Inventory: what one Airflow instance holds at one instant, the flags a reviewer cares
//! about, and what changed between two snapshots.
//!
//! Everything here is computed from data already read; fetching and storing snapshots is the
//! engine's and the store's job.

use crate::model::{Account, InstanceName, Role, RoleName, Username};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Everything read from one instance in one complete inventory run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Which instance.
    pub instance: InstanceName,
    /// When the read completed.
    pub taken_at: DateTime<Utc>,
    /// The version the instance reported.
    pub airflow_version: String,
    /// All accounts, sorted by username.
    pub accounts: Vec<Account>,
    /// All roles, sorted by name.
    pub roles: Vec<Role>,
}

impl Snapshot {
    /// Builds a snapshot, sorting accounts and roles so that equal contents compare equal.
    pub fn new(
        instance: InstanceName,
        taken_at: DateTime<Utc>,
        airflow_version: String,
        mut accounts: Vec<Account>,
        mut roles: Vec<Role>,
    ) -> Self {
        accounts.sort_by(|a, b| a.username.cmp(&b.username));
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            instance,
            taken_at,
            airflow_version,
            accounts,
            roles,
        }
    }
}

/// Something about an account that a reviewer should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "flag")]
pub enum Flag {
    /// Holds `Admin`, or a role that can edit users, roles or permissions.
    Admin,
    /// Has never logged in.
    NeverLoggedIn,
    /// Last logged in more than the configured number of days ago.
    Inactive {
        /// Whole days since the last login.
        days: i64,
    },
    /// Exists in Airflow but was not created by airlock.
    CreatedOutsideAirlock,
    /// FAB marks the account inactive.
    Deactivated,
    /// Holds no role at all (can log in to nothing).
    NoRoles,
}

impl Flag {
    /// Short machine-friendly label, used in tables and CSV.
    pub fn label(&self) -> String {
        match self {
            Flag::Admin => "admin".into(),
            Flag::NeverLoggedIn => "never-logged-in".into(),
            Flag::Inactive { days } => format!("inactive-{days}d"),
            Flag::CreatedOutsideAirlock => "created-outside-airlock".into(),
            Flag::Deactivated => "deactivated".into(),
            Flag::NoRoles => "no-roles".into(),
        }
    }
}

/// Thresholds for flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagRules {
    /// An account whose last login is older than this many days is flagged inactive.
    pub inactive_after_days: u32,
}

impl Default for FlagRules {
    fn default() -> Self {
        Self {
            inactive_after_days: 90,
        }
    }
}

/// An account with its flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    /// The account.
    #[serde(flatten)]
    pub account: Account,
    /// Flags, sorted.
    pub flags: Vec<Flag>,
}

/// A role with counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRow {
    /// Role name.
    pub name: RoleName,
    /// Number of permissions the role grants.
    pub permission_count: usize,
    /// Number of accounts holding the role.
    pub user_count: usize,
    /// Whether the role amounts to administering Airflow.
    pub admin: bool,
}

/// A snapshot prepared for a reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Which instance.
    pub instance: InstanceName,
    /// When the read completed.
    pub taken_at: DateTime<Utc>,
    /// The version the instance reported.
    pub airflow_version: String,
    /// Accounts with flags, sorted by username.
    pub accounts: Vec<AccountRow>,
    /// Roles with counts, sorted by name.
    pub roles: Vec<RoleRow>,
}

/// Computes flags and counts for a snapshot.
///
/// `created_by_airlock` holds the case-folded usernames airlock created on this instance.
pub fn report(
    snapshot: &Snapshot,
    created_by_airlock: &BTreeSet<String>,
    now: DateTime<Utc>,
    rules: FlagRules,
) -> Report {
    let admin_roles: BTreeSet<&RoleName> = snapshot
        .roles
        .iter()
        .filter(|r| r.is_admin())
        .map(|r| &r.name)
        .collect();
    let mut holders: BTreeMap<&RoleName, usize> = BTreeMap::new();
    let accounts = snapshot
        .accounts
        .iter()
        .map(|account| {
            for role in &account.roles {
                *holders.entry(role).or_default() += 1;
            }
            AccountRow {
                flags: flags_for(account, &admin_roles, created_by_airlock, now, rules),
                account: account.clone(),
            }
        })
        .collect();
    let roles = snapshot
        .roles
        .iter()
        .map(|r| RoleRow {
            name: r.name.clone(),
            permission_count: r.permissions.len(),
            user_count: holders.get(&r.name).copied().unwrap_or(0),
            admin: admin_roles.contains(&r.name),
        })
        .collect();
    Report {
        instance: snapshot.instance.clone(),
        taken_at: snapshot.taken_at,
        airflow_version: snapshot.airflow_version.clone(),
        accounts,
        roles,
    }
}

fn flags_for(
    account: &Account,
    admin_roles: &BTreeSet<&RoleName>,
    created_by_airlock: &BTreeSet<String>,
    now: DateTime<Utc>,
    rules: FlagRules,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    // A role missing from the role list (deleted concurrently) still counts if it is `Admin`.
    if account
        .roles
        .iter()
        .any(|r| r.is_admin() || admin_roles.contains(r))
    {
        flags.push(Flag::Admin);
    }
    match account.last_login {
        None => flags.push(Flag::NeverLoggedIn),
        Some(at) => {
            let days = (now - at).num_days();
            if days > i64::from(rules.inactive_after_days) {
                flags.push(Flag::Inactive { days });
            }
        }
    }
    if !created_by_airlock.contains(account.username.key()) {
        flags.push(Flag::CreatedOutsideAirlock);
    }
    if !account.active {
        flags.push(Flag::Deactivated);
    }
    if account.roles.is_empty() {
        flags.push(Flag::NoRoles);
    }
    flags.sort();
    flags
}

/// How one account's roles changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// Whose roles.
    pub username: Username,
    /// Roles gained.
    pub added: BTreeSet<RoleName>,
    /// Roles lost.
    pub removed: BTreeSet<RoleName>,
}

/// Logins observed between two snapshots through `last_login` / `login_count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSeen {
    /// Who logged in.
    pub username: Username,
    /// The latest login time now reported.
    pub last_login: Option<DateTime<Utc>>,
    /// How many logins FAB counted in between, when both counts are known.
    pub logins: Option<u64>,
}

/// How one role's permissions changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolePermissionChange {
    /// Which role.
    pub role: RoleName,
    /// Permissions gained.
    pub added: usize,
    /// Permissions lost.
    pub removed: usize,
}

/// What changed between two snapshots of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDiff {
    /// Accounts that appeared.
    pub accounts_added: Vec<Username>,
    /// Accounts that disappeared.
    pub accounts_removed: Vec<Username>,
    /// Accounts whose roles changed.
    pub role_changes: Vec<RoleChange>,
    /// Accounts that logged in.
    pub logins: Vec<LoginSeen>,
    /// Roles that appeared.
    pub roles_added: Vec<RoleName>,
    /// Roles that disappeared.
    pub roles_removed: Vec<RoleName>,
    /// Roles whose permissions changed.
    pub role_permission_changes: Vec<RolePermissionChange>,
}

impl SnapshotDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self == &SnapshotDiff::default()
    }
}

/// Compares two snapshots of the same instance, `old` first. Output is sorted.
pub fn diff(old: &Snapshot, new: &Snapshot) -> SnapshotDiff {
    let before: BTreeMap<&Username, &Account> =
        old.accounts.iter().map(|a| (&a.username, a)).collect();
    let after: BTreeMap<&Username, &Account> =
        new.accounts.iter().map(|a| (&a.username, a)).collect();
    let mut d = SnapshotDiff::default();
    for (name, a) in &after {
        let Some(b) = before.get(name) else {
            d.accounts_added.push((*name).clone());
            continue;
        };
        if a.roles != b.roles {
            d.role_changes.push(RoleChange {
                username: (*name).clone(),
                added: a.roles.difference(&b.roles).cloned().collect(),
                removed: b.roles.difference(&a.roles).cloned().collect(),
            });
        }
        let newer_login = match (b.last_login, a.last_login) {
            (None, Some(_)) => true,
            (Some(x), Some(y)) => y > x,
            _ => false,
        };
        let more_logins = matches!((b.login_count, a.login_count), (Some(x), Some(y)) if y > x)
            || matches!((b.login_count, a.login_count), (None, Some(y)) if y > 0);
        if newer_login || more_logins {
            d.logins.push(LoginSeen {
                username: (*name).clone(),
                last_login: a.last_login,
                logins: a
                    .login_count
                    .map(|y| y.saturating_sub(b.login_count.unwrap_or(0))),
            });
        }
    }
    d.accounts_removed = before
        .keys()
        .filter(|n| !after.contains_key(*n))
        .map(|n| (*n).clone())
        .collect();

    let rb: BTreeMap<&RoleName, &Role> = old.roles.iter().map(|r| (&r.name, r)).collect();
    let ra: BTreeMap<&RoleName, &Role> = new.roles.iter().map(|r| (&r.name, r)).collect();
    for (name, a) in &ra {
        match rb.get(name) {
            None => d.roles_added.push((*name).clone()),
            Some(b) if a.permissions != b.permissions => {
                d.role_permission_changes.push(RolePermissionChange {
                    role: (*name).clone(),
                    added: a.permissions.difference(&b.permissions).count(),
                    removed: b.permissions.difference(&a.permissions).count(),
                })
            }
            Some(_) => {}
        }
    }
    d.roles_removed = rb
        .keys()
        .filter(|n| !ra.contains_key(*n))
        .map(|n| (*n).clone())
        .collect();
    d
}

/// The logins between two snapshots of one instance, `old` first: accounts whose
/// `last_login` or `login_count` grew, and accounts created in between that already logged in
/// (after `old` was taken). Sorted by username. Airflow reports only the latest login and a
/// count, so this says that (and how many, when counted) logins happened in the window, not
/// exactly when, except for the last.
pub fn logins_between(old: &Snapshot, new: &Snapshot) -> Vec<LoginSeen> {
    let mut seen = diff(old, new).logins;
    let before: BTreeSet<&Username> = old.accounts.iter().map(|a| &a.username).collect();
    for a in new
        .accounts
        .iter()
        .filter(|a| !before.contains(&a.username))
    {
        let logged_in =
            a.last_login.is_some_and(|t| t > old.taken_at) || a.login_count.is_some_and(|n| n > 0);
        if logged_in {
            seen.push(LoginSeen {
                username: a.username.clone(),
                last_login: a.last_login,
                logins: a.login_count,
            });
        }
    }
    seen.sort_by(|a, b| a.username.cmp(&b.username));
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Permission;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date")
            + chrono::Duration::days(i64::from(day))
    }

    fn account(name: &str, roles: &[&str], last_login: Option<u32>, count: Option<u64>) -> Account {
        Account {
            username: Username::new(name).expect("valid"),
            email: format!("{name}@example.com"),
            first_name: "F".into(),
            last_name: "L".into(),
            roles: roles
                .iter()
                .map(|r| RoleName::new(*r).expect("valid"))
                .collect(),
            active: true,
            last_login: last_login.map(at),
            login_count: count,
            fail_login_count: Some(0),
            created_on: Some(at(0)),
            changed_on: Some(at(0)),
        }
    }

    fn role(name: &str, perms: &[(&str, &str)]) -> Role {
        Role {
            name: RoleName::new(name).expect("valid"),
            permissions: perms.iter().map(|(a, r)| Permission::new(*a, *r)).collect(),
        }
    }

    fn snap(accounts: Vec<Account>, roles: Vec<Role>) -> Snapshot {
        Snapshot::new(
            InstanceName::new("prod").expect("valid"),
            at(200),
            "3.3.2".into(),
            accounts,
            roles,
        )
    }

    #[test]
    fn flags_name_admins_dormant_accounts_and_accounts_made_by_hand() {
        let s = snap(
            vec![
                account("root", &["Admin"], Some(199), Some(5)),
                account("ghost", &["Viewer"], None, None),
                account("old", &["Helpdesk"], Some(10), Some(1)),
                account("managed", &["Viewer"], Some(199), Some(3)),
            ],
            vec![
                role("Admin", &[]),
                role("Viewer", &[("can_read", "DAGs")]),
                role("Helpdesk", &[("can_edit", "Users")]),
            ],
        );
        let created: BTreeSet<String> = ["managed".to_string()].into();
        let r = report(
            &s,
            &created,
            at(200),
            FlagRules {
                inactive_after_days: 90,
            },
        );
        let flags: BTreeMap<&str, &Vec<Flag>> = r
            .accounts
            .iter()
            .map(|a| (a.account.username.as_str(), &a.flags))
            .collect();
        assert_eq!(
            flags["root"],
            &vec![Flag::Admin, Flag::CreatedOutsideAirlock]
        );
        assert_eq!(
            flags["ghost"],
            &vec![Flag::NeverLoggedIn, Flag::CreatedOutsideAirlock]
        );
        assert_eq!(
            flags["old"],
            &vec![
                Flag::Admin,
                Flag::Inactive { days: 190 },
                Flag::CreatedOutsideAirlock
            ]
        );
        assert_eq!(flags["managed"], &Vec::<Flag>::new());
        let viewer = r
            .roles
            .iter()
            .find(|x| x.name.as_str() == "Viewer")
            .expect("viewer row");
        assert_eq!(
            (viewer.permission_count, viewer.user_count, viewer.admin),
            (1, 2, false)
        );
    }

    #[test]
    fn diff_reports_joiners_leavers_role_moves_and_logins() {
        let old = snap(
            vec![
                account("a", &["Viewer"], None, None),
                account("b", &["Viewer"], Some(1), Some(1)),
            ],
            vec![role("Viewer", &[("can_read", "DAGs")])],
        );
        let new = snap(
            vec![
                account("b", &["Op"], Some(5), Some(3)),
                account("c", &[], None, None),
            ],
            vec![role("Viewer", &[]), role("Op", &[])],
        );
        let d = diff(&old, &new);
        assert_eq!(d.accounts_added, vec![Username::new("c").expect("valid")]);
        assert_eq!(d.accounts_removed, vec![Username::new("a").expect("valid")]);
        assert_eq!(d.role_changes.len(), 1);
        assert_eq!(d.logins[0].logins, Some(2));
        assert_eq!(d.roles_added, vec![RoleName::new("Op").expect("valid")]);
        assert_eq!(d.role_permission_changes[0].removed, 1);
    }

    proptest! {
        #[test]
        fn a_snapshot_never_differs_from_itself(
            names in proptest::collection::btree_set("[a-z]{1,8}", 0..20),
            roles in proptest::collection::vec(proptest::sample::select(vec!["Admin", "Op", "Viewer"]), 0..3),
        ) {
            let accounts = names.iter().map(|n| account(n, &roles, Some(3), Some(2))).collect();
            let s = snap(accounts, vec![role("Viewer", &[("can_read", "DAGs")])]);
            prop_assert!(diff(&s, &s).is_empty());
        }
    }

    #[test]
    fn logins_between_snapshots_include_new_accounts_that_logged_in() {
        let mut old = Snapshot::new(
            InstanceName::new("prod").expect("valid"),
            at(10),
            "3.3.2".into(),
            vec![
                account("ann", &["Op"], Some(5), Some(3)),
                account("bob", &["Op"], Some(5), Some(3)),
                account("cid", &["Op"], None, None),
            ],
            Vec::new(),
        );
        old.taken_at = at(10);
        let new = Snapshot::new(
            InstanceName::new("prod").expect("valid"),
            at(11),
            "3.3.2".into(),
            vec![
                account("ann", &["Op"], Some(11), Some(5)),
                account("bob", &["Op"], Some(5), Some(3)),
                account("cid", &["Op"], Some(11), None),
                account("dan", &["Op"], Some(11), Some(1)),
                account("eve", &["Op"], None, Some(0)),
            ],
            Vec::new(),
        );
        let seen = logins_between(&old, &new);
        let names: Vec<&str> = seen.iter().map(|l| l.username.as_str()).collect();
        assert_eq!(names, ["ann", "cid", "dan"]);
        assert_eq!(seen[0].logins, Some(2));
        assert_eq!(seen[1].logins, None);
        assert_eq!(seen[2].logins, Some(1));
        assert!(logins_between(&new, &new).is_empty());
    }
}
