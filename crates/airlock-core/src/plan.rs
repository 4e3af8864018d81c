//! The planner: from the directory and the policy, what every instance *should* hold
//! ([`desired`]); from that and what an instance *does* hold, the operations that reconcile
//! them ([`plan_instance`]).
//!
//! Both are pure, total and deterministic (sorted output); the same functions serve `airlock
//! plan`, `apply`, `sync`, the service and SCIM pushes. Invariants, checked by property tests:
//! planning desired against itself is empty; applying a plan and planning again is empty;
//! protected and unmanaged accounts never appear in a plan.

use crate::directory::{DirectorySnapshot, PersonId};
use crate::model::{Account, InstanceName, Permission, Role, RoleName, Username};
use crate::policy::{LeaverRule, Policy};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod desired;
mod grants;
mod instance;
mod threads;

pub use grants::with_grants;

/// An account an instance should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredAccount {
    /// Airflow username.
    pub username: Username,
    /// The directory person behind it (`None` for service accounts).
    pub person: Option<PersonId>,
    /// Email.
    pub email: Arc<str>,
    /// Given name (never empty: FAB requires one).
    pub first_name: Arc<str>,
    /// Family name (never empty).
    pub last_name: Arc<str>,
    /// Roles. Shared: accounts granted the same roles hold one set, which the operations that
    /// create or move them share too.
    pub roles: Arc<BTreeSet<RoleName>>,
    /// Why: the rules that contributed, joined by `; `, e.g. `group data-eng grants Op; group
    /// oncall grants Admin` (the reason of every operation on this account, which share it).
    pub reason: Arc<str>,
}

/// What one instance should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredInstance {
    /// Accounts by username. Shared: instances that the same grants select share one map (and
    /// an account is shared by every instance that wants the same one); change it with
    /// [`Arc::make_mut`], which copies it only when another instance holds it too.
    pub accounts: Arc<BTreeMap<Username, Arc<DesiredAccount>>>,
    /// Custom roles and their exact permissions.
    pub roles: BTreeMap<RoleName, BTreeSet<Permission>>,
    /// Why known people get no account here (suspended, staged, out of scope), by username
    /// (shared like `accounts`).
    pub excluded: Arc<BTreeMap<Username, String>>,
    /// People in the policy's scope whom the directory marks suspended or not yet activated:
    /// an existing account of theirs is a leaver even if airlock never managed it, because it
    /// matches the policy's scope (shared like `accounts`).
    pub inactive_in_scope: Arc<BTreeSet<Username>>,
    /// Usernames that several active people map to. airlock cannot tell whose account it is,
    /// so it changes nothing for them (no creation, no role change, no suspension of an
    /// existing holder) and reports the conflict until the directory resolves it.
    pub conflicts: Arc<BTreeSet<Username>>,
}

/// Something the plan could not do or had to leave out, reported to the operator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Warning {
    /// Which instance, if it concerns one.
    pub instance: Option<InstanceName>,
    /// What.
    pub message: String,
}

/// An instance as the policy sees it.
#[derive(Debug, Clone)]
pub struct InstanceRef<'a> {
    /// Its name.
    pub name: &'a InstanceName,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The account airlock logs in with: implicitly protected.
    pub airlock_user: &'a str,
}

/// Computes what each instance should hold.
///
/// Work that does not depend on the instance (usernames, grants by group, profiles) is done
/// once for all instances, and instances that the same grants select share their accounts: see
/// `plan/desired.rs`.
pub fn desired(
    policy: &Policy,
    directory: &DirectorySnapshot,
    instances: &[InstanceRef<'_>],
) -> (BTreeMap<InstanceName, DesiredInstance>, Vec<Warning>) {
    desired::desired(policy, directory, instances)
}

fn non_empty(v: Option<&str>, fallback: &str) -> Arc<str> {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() => Arc::from(s),
        _ if fallback.trim().is_empty() => Arc::from("-"),
        _ => Arc::from(fallback),
    }
}

/// What an instance holds, as read just before planning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualInstance {
    /// Accounts.
    pub accounts: Vec<Account>,
    /// Roles with permissions.
    pub roles: Vec<Role>,
    /// Permissions the instance knows; `None` when it cannot say (Airflow 2 lists actions only).
    pub catalog: Option<BTreeSet<Permission>>,
}

/// airlock's record of an account it manages on an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedRecord {
    /// When airlock suspended it, if it is suspended.
    pub suspended_at: Option<DateTime<Utc>>,
}

/// One change to one instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create a custom role with its permissions.
    CreateRole {
        /// Role.
        role: RoleName,
        /// Permissions.
        permissions: BTreeSet<Permission>,
    },
    /// Bring a custom role's permissions to the policy's set.
    UpdateRole {
        /// Role.
        role: RoleName,
        /// Permissions to add.
        add: BTreeSet<Permission>,
        /// Permissions to remove.
        remove: BTreeSet<Permission>,
    },
    /// Create an account (SSO users get a random password nobody knows).
    CreateAccount {
        /// Username.
        username: Username,
        /// Email.
        email: Arc<str>,
        /// Given name.
        first_name: Arc<str>,
        /// Family name.
        last_name: Arc<str>,
        /// Roles (shared with the desired account, see [`DesiredAccount::roles`]).
        roles: Arc<BTreeSet<RoleName>>,
    },
    /// Replace an account's roles.
    SetRoles {
        /// Username.
        username: Username,
        /// Roles now (accounts that hold the same share one set).
        from: Arc<BTreeSet<RoleName>>,
        /// Roles after (shared with the desired account, see [`DesiredAccount::roles`]).
        to: Arc<BTreeSet<RoleName>>,
    },
    /// Change profile fields; `None` leaves one alone.
    UpdateProfile {
        /// Username.
        username: Username,
        /// New email.
        email: Option<String>,
        /// New given name.
        first_name: Option<String>,
        /// New family name.
        last_name: Option<String>,
    },
    /// Strip every role and rotate the password (ADR 0002).
    Suspend {
        /// Username.
        username: Username,
        /// Roles being stripped (accounts that hold the same share one set).
        roles: Arc<BTreeSet<RoleName>>,
    },
    /// Delete a suspended account whose grace period has passed.
    Delete {
        /// Username.
        username: Username,
    },
}

impl Op {
    /// Execution phase: roles first, then creates, changes, suspensions, deletions. Applying
    /// phase by phase means an account never references a role that does not exist yet.
    pub fn phase(&self) -> u8 {
        match self {
            Op::CreateRole { .. } | Op::UpdateRole { .. } => 0,
            Op::CreateAccount { .. } => 1,
            // Profile and roles of one account are separate PATCHes; separate phases keep
            // them from running at the same time.
            Op::UpdateProfile { .. } => 2,
            Op::SetRoles { .. } => 3,
            Op::Suspend { .. } => 4,
            Op::Delete { .. } => 5,
        }
    }

    /// Whether the operation removes someone's access.
    pub fn is_deprovision(&self) -> bool {
        matches!(self, Op::Suspend { .. } | Op::Delete { .. })
    }

    /// The account or role the operation targets.
    pub fn target(&self) -> String {
        match self {
            Op::CreateRole { .. } | Op::UpdateRole { .. } => format!("role {}", self.target_name()),
            _ => format!("account {}", self.target_name()),
        }
    }

    /// The target's name (role name or username as spelled), without its kind.
    fn target_name(&self) -> &str {
        match self {
            Op::CreateRole { role, .. } | Op::UpdateRole { role, .. } => role.as_str(),
            Op::CreateAccount { username, .. }
            | Op::SetRoles { username, .. }
            | Op::UpdateProfile { username, .. }
            | Op::Suspend { username, .. }
            | Op::Delete { username } => username.as_str(),
        }
    }

    /// The account the operation targets; `None` for role operations.
    fn username(&self) -> Option<&Username> {
        match self {
            Op::CreateRole { .. } | Op::UpdateRole { .. } => None,
            Op::CreateAccount { username, .. }
            | Op::SetRoles { username, .. }
            | Op::UpdateProfile { username, .. }
            | Op::Suspend { username, .. }
            | Op::Delete { username } => Some(username),
        }
    }

    /// Short kind name (`create_account`, ...), for metrics and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateRole { .. } => "create_role",
            Op::UpdateRole { .. } => "update_role",
            Op::CreateAccount { .. } => "create_account",
            Op::SetRoles { .. } => "set_roles",
            Op::UpdateProfile { .. } => "update_profile",
            Op::Suspend { .. } => "suspend",
            Op::Delete { .. } => "delete",
        }
    }
}

/// An operation with its instance and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedOp {
    /// Instance.
    pub instance: InstanceName,
    /// What to do.
    pub op: Op,
    /// Why: the group and rule, or the leaver (shared with the desired account's reason).
    pub reason: Arc<str>,
}

/// The plan for one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePlan {
    /// Operations, sorted by phase then target.
    pub ops: Vec<PlannedOp>,
    /// What could not be planned.
    pub warnings: Vec<Warning>,
    /// Accounts airlock does not manage and leaves alone.
    pub unmanaged: Vec<Username>,
    /// Managed accounts, after this plan: what the engine records. Sorted by username, each
    /// once.
    pub managed: Vec<Username>,
}

/// Inputs to [`plan_instance`].
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// Instance.
    pub instance: &'a InstanceName,
    /// What it should hold.
    pub desired: &'a DesiredInstance,
    /// What it holds.
    pub actual: &'a ActualInstance,
    /// Accounts airlock manages there (created, adopted or previously in scope).
    pub managed: &'a BTreeMap<Username, ManagedRecord>,
    /// Accounts never to touch.
    pub protected: &'a BTreeSet<Username>,
    /// Leaver handling.
    pub leavers: LeaverRule,
    /// Now, for grace periods.
    pub now: DateTime<Utc>,
}

/// Plans one instance.
///
/// One merge-join of the desired accounts with the instance's (sorted once): see
/// `plan/instance.rs`.
pub fn plan_instance(input: &PlanInput<'_>) -> InstancePlan {
    instance::plan_instance(input)
}

#[cfg(test)]
mod equivalence_tests;
#[cfg(test)]
mod reference;
#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
