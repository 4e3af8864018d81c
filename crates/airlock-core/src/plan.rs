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
use crate::policy::{LeaverRule, Policy, BUILTIN_ROLES};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod desired;

/// An account an instance should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredAccount {
    /// Airflow username.
    pub username: Username,
    /// The directory person behind it (`None` for service accounts).
    pub person: Option<PersonId>,
    /// Email.
    pub email: String,
    /// Given name (never empty: FAB requires one).
    pub first_name: String,
    /// Family name (never empty).
    pub last_name: String,
    /// Roles.
    pub roles: BTreeSet<RoleName>,
    /// Why: one entry per rule that contributed, e.g. `group data-eng grants Op`.
    pub reasons: Vec<String>,
}

/// What one instance should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredInstance {
    /// Accounts by username; an account is shared by every instance that wants the same one.
    pub accounts: BTreeMap<Username, Arc<DesiredAccount>>,
    /// Custom roles and their exact permissions.
    pub roles: BTreeMap<RoleName, BTreeSet<Permission>>,
    /// Why known people get no account here (suspended, staged, out of scope), by username.
    pub excluded: BTreeMap<Username, String>,
    /// People in the policy's scope whom the directory marks suspended or not yet activated:
    /// an existing account of theirs is a leaver even if airlock never managed it, because it
    /// matches the policy's scope.
    pub inactive_in_scope: BTreeSet<Username>,
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

fn non_empty(v: Option<&str>, fallback: &str) -> String {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ if fallback.trim().is_empty() => "-".to_string(),
        _ => fallback.to_string(),
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
        email: String,
        /// Given name.
        first_name: String,
        /// Family name.
        last_name: String,
        /// Roles.
        roles: BTreeSet<RoleName>,
    },
    /// Replace an account's roles.
    SetRoles {
        /// Username.
        username: Username,
        /// Roles now.
        from: BTreeSet<RoleName>,
        /// Roles after.
        to: BTreeSet<RoleName>,
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
        /// Roles being stripped.
        roles: BTreeSet<RoleName>,
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
            Op::CreateRole { role, .. } | Op::UpdateRole { role, .. } => format!("role {role}"),
            Op::CreateAccount { username, .. }
            | Op::SetRoles { username, .. }
            | Op::UpdateProfile { username, .. }
            | Op::Suspend { username, .. }
            | Op::Delete { username } => format!("account {username}"),
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
    /// Why: the group and rule, or the leaver.
    pub reason: String,
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
    /// Managed accounts, after this plan: what the engine records.
    pub managed: BTreeSet<Username>,
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
pub fn plan_instance(input: &PlanInput<'_>) -> InstancePlan {
    let inst = input.instance;
    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    let warn = |warnings: &mut Vec<Warning>, message: String| {
        warnings.push(Warning {
            instance: Some(inst.clone()),
            message,
        })
    };

    // Roles as code.
    let actual_roles: BTreeMap<&RoleName, &Role> =
        input.actual.roles.iter().map(|r| (&r.name, r)).collect();
    let mut available: BTreeSet<RoleName> = actual_roles.keys().map(|r| (*r).clone()).collect();
    for (name, wanted) in &input.desired.roles {
        let wanted: BTreeSet<Permission> = match &input.actual.catalog {
            Some(catalog) => {
                let missing: Vec<String> = wanted
                    .difference(catalog)
                    .map(ToString::to_string)
                    .collect();
                if !missing.is_empty() {
                    warn(
                        &mut warnings,
                        format!(
                            "role {name}: permissions not (yet) on this instance, left out: {}",
                            missing.join("; ")
                        ),
                    );
                }
                wanted.intersection(catalog).cloned().collect()
            }
            None => wanted.clone(),
        };
        available.insert(name.clone());
        match actual_roles.get(name) {
            None => ops.push(PlannedOp {
                instance: inst.clone(),
                op: Op::CreateRole {
                    role: name.clone(),
                    permissions: wanted,
                },
                reason: "role defined in policy".into(),
            }),
            Some(role) if role.permissions != wanted => ops.push(PlannedOp {
                instance: inst.clone(),
                op: Op::UpdateRole {
                    role: name.clone(),
                    add: wanted.difference(&role.permissions).cloned().collect(),
                    remove: role.permissions.difference(&wanted).cloned().collect(),
                },
                reason: "role drifted from policy".into(),
            }),
            Some(_) => {}
        }
    }
    for b in BUILTIN_ROLES {
        if let Ok(r) = RoleName::new(*b) {
            available.insert(r);
        }
    }

    // Accounts.
    let actual: BTreeMap<&Username, &Account> = input
        .actual
        .accounts
        .iter()
        .map(|a| (&a.username, a))
        .collect();
    let mut managed: BTreeSet<Username> = BTreeSet::new();
    for (username, want) in &input.desired.accounts {
        if input.protected.contains(username) {
            continue;
        }
        let missing: Vec<&str> = want
            .roles
            .iter()
            .filter(|r| !available.contains(*r))
            .map(RoleName::as_str)
            .collect();
        if !missing.is_empty() {
            warn(
                &mut warnings,
                format!(
                    "{username}: role(s) {} do not exist on this instance, left out",
                    missing.join(", ")
                ),
            );
        }
        let roles: BTreeSet<RoleName> = want
            .roles
            .iter()
            .filter(|r| available.contains(*r))
            .cloned()
            .collect();
        let reason = want.reasons.join("; ");
        managed.insert(username.clone());
        match actual.get(username) {
            None => ops.push(PlannedOp {
                instance: inst.clone(),
                op: Op::CreateAccount {
                    username: username.clone(),
                    email: want.email.clone(),
                    first_name: want.first_name.clone(),
                    last_name: want.last_name.clone(),
                    roles,
                },
                reason,
            }),
            Some(have) => {
                if have.roles != roles {
                    let returning = input
                        .managed
                        .get(username)
                        .is_some_and(|m| m.suspended_at.is_some());
                    ops.push(PlannedOp {
                        instance: inst.clone(),
                        op: Op::SetRoles {
                            username: username.clone(),
                            from: have.roles.clone(),
                            to: roles,
                        },
                        reason: if returning {
                            format!("returning: {reason}")
                        } else {
                            reason.clone()
                        },
                    });
                }
                let email =
                    (!have.email.eq_ignore_ascii_case(&want.email)).then(|| want.email.clone());
                let first_name =
                    (have.first_name != want.first_name).then(|| want.first_name.clone());
                let last_name = (have.last_name != want.last_name).then(|| want.last_name.clone());
                if email.is_some() || first_name.is_some() || last_name.is_some() {
                    ops.push(PlannedOp {
                        instance: inst.clone(),
                        op: Op::UpdateProfile {
                            username: username.clone(),
                            email,
                            first_name,
                            last_name,
                        },
                        reason: "profile changed in the directory".into(),
                    });
                }
            }
        }
    }

    // Leavers and unmanaged accounts.
    let mut unmanaged = Vec::new();
    for (username, have) in &actual {
        if input.desired.accounts.contains_key(*username) || input.protected.contains(*username) {
            continue;
        }
        let in_scope_leaver = input.desired.inactive_in_scope.contains(*username);
        let record = match input.managed.get(*username) {
            Some(r) => r.clone(),
            None if in_scope_leaver => ManagedRecord::default(),
            None => {
                unmanaged.push((*username).clone());
                continue;
            }
        };
        managed.insert((*username).clone());
        let why = input
            .desired
            .excluded
            .get(*username)
            .cloned()
            .unwrap_or_else(|| "no longer in the directory".to_string());
        match record.suspended_at {
            Some(at) if have.roles.is_empty() => {
                if let Some(after) = input.leavers.delete_after_secs {
                    if (input.now - at).num_seconds() >= after {
                        ops.push(PlannedOp {
                            instance: inst.clone(),
                            op: Op::Delete {
                                username: (*username).clone(),
                            },
                            reason: format!(
                                "leaver ({why}), suspended since {}",
                                at.format("%Y-%m-%d %H:%M UTC")
                            ),
                        });
                        managed.remove(*username);
                    }
                }
            }
            _ => ops.push(PlannedOp {
                instance: inst.clone(),
                op: Op::Suspend {
                    username: (*username).clone(),
                    roles: have.roles.clone(),
                },
                reason: format!("leaver: {why}"),
            }),
        }
    }

    ops.sort_by(|a, b| {
        (a.op.phase(), a.op.target(), &a.op).cmp(&(b.op.phase(), b.op.target(), &b.op))
    });
    warnings.sort();
    InstancePlan {
        ops,
        warnings,
        unmanaged,
        managed,
    }
}

#[cfg(test)]
mod equivalence_tests;
#[cfg(test)]
mod reference;
#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
