//! The planner as it was before it was made to share work between instances: straightforward,
//! slow, and the definition the real planner is tested against (same desired state, same
//! plans, same warnings, key spellings included). Test-only.

use super::{
    DesiredAccount, DesiredInstance, InstancePlan, InstanceRef, ManagedRecord, Op, PlanInput,
    PlannedOp, Warning,
};
use crate::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};
use crate::model::{Account, InstanceName, Permission, Role, RoleName, Username};
use crate::policy::{Policy, BUILTIN_ROLES};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Computes what each instance should hold.
pub(super) fn desired(
    policy: &Policy,
    directory: &DirectorySnapshot,
    instances: &[InstanceRef<'_>],
) -> (BTreeMap<InstanceName, DesiredInstance>, Vec<Warning>) {
    let mut warnings = BTreeSet::new();
    // Derive every person's username once, not once per instance.
    let people: Vec<(&Person, Result<Username, String>)> = directory
        .people
        .values()
        .map(|p| (p, policy.username.derive(p)))
        .collect();
    let mut out = BTreeMap::new();
    for inst in instances {
        // The grants that apply here, indexed by group, each with its reason rendered once:
        // per person only their own (few) groups are looked up.
        let mut grants: BTreeMap<&GroupName, Vec<(&BTreeSet<RoleName>, String)>> = BTreeMap::new();
        for g in policy
            .grants
            .iter()
            .filter(|g| g.instances.matches(inst.name, inst.labels))
        {
            let names: Vec<&str> = g.roles.iter().map(RoleName::as_str).collect();
            grants.entry(&g.group).or_default().push((
                &g.roles,
                format!("group {} grants {}", g.group, names.join(", ")),
            ));
        }
        let scope: BTreeSet<&GroupName> = policy
            .scope_groups
            .iter()
            .filter(|(_, sel)| sel.matches(inst.name, inst.labels))
            .map(|(g, _)| g)
            .collect();
        let mut d = DesiredInstance::default();
        let mut claimed: BTreeMap<Username, Vec<PersonId>> = BTreeMap::new();
        for (person, derived) in &people {
            let granted: Vec<&(&BTreeSet<RoleName>, String)> = person
                .groups
                .iter()
                .filter_map(|g| grants.get(g))
                .flatten()
                .collect();
            let in_scope = !granted.is_empty() || person.groups.iter().any(|g| scope.contains(g));
            let username = match derived {
                Ok(u) => u.clone(),
                Err(why) => {
                    if in_scope && person.status == PersonStatus::Active {
                        warnings.insert(Warning {
                            instance: Some(inst.name.clone()),
                            message: format!("person {} gets no account: {why}", person.id),
                        });
                    }
                    continue;
                }
            };
            let why_not = match (person.status, in_scope) {
                (PersonStatus::Suspended, _) => Some("suspended in the directory"),
                (PersonStatus::Staged, _) => Some("not yet activated in the directory"),
                (PersonStatus::Active, false) => Some("in no group with access to this instance"),
                (PersonStatus::Active, true) => None,
            };
            if let Some(why) = why_not {
                if in_scope {
                    Arc::make_mut(&mut d.inactive_in_scope).insert(username.clone());
                }
                Arc::make_mut(&mut d.excluded).insert(username, why.to_string());
                continue;
            }
            let mut roles = BTreeSet::new();
            let mut reasons = Vec::with_capacity(granted.len());
            for (granted_roles, reason) in granted {
                roles.extend(granted_roles.iter().cloned());
                reasons.push(reason.clone());
            }
            if roles.is_empty() && !policy.default_roles.is_empty() {
                roles.extend(policy.default_roles.iter().cloned());
                reasons.push("in scope: default roles".to_string());
            }
            claimed
                .entry(username.clone())
                .or_default()
                .push(person.id.clone());
            let local = username
                .as_str()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string();
            Arc::make_mut(&mut d.accounts).insert(
                username.clone(),
                Arc::new(DesiredAccount {
                    username,
                    person: Some(person.id.clone()),
                    email: person.email.clone().unwrap_or_default().into(),
                    first_name: non_empty(person.first_name.as_deref(), &local).into(),
                    last_name: non_empty(person.last_name.as_deref(), "-").into(),
                    roles: Arc::new(roles),
                    reason: reasons.join("; ").into(),
                }),
            );
        }
        for (username, ids) in claimed {
            if ids.len() > 1 {
                Arc::make_mut(&mut d.accounts).remove(&username);
                let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                warnings.insert(Warning {
                    instance: Some(inst.name.clone()),
                    message: super::desired::conflict_message(&ids, &username),
                });
                Arc::make_mut(&mut d.conflicts).insert(username);
            }
        }
        let no_email: Vec<Username> = d
            .accounts
            .values()
            .filter(|a| a.email.is_empty())
            .map(|a| a.username.clone())
            .collect();
        for u in no_email {
            Arc::make_mut(&mut d.accounts).remove(&u);
            warnings.insert(Warning {
                instance: Some(inst.name.clone()),
                message: format!("{u} has no email in the directory; Airflow requires one"),
            });
        }
        for sa in policy
            .service_accounts
            .iter()
            .filter(|s| s.instances.matches(inst.name, inst.labels))
        {
            if d.accounts.contains_key(&sa.username) {
                warnings.insert(Warning {
                    instance: Some(inst.name.clone()),
                    message: format!(
                        "service account {} shadows a person with the same username",
                        sa.username
                    ),
                });
            }
            Arc::make_mut(&mut d.excluded).remove(&sa.username);
            Arc::make_mut(&mut d.inactive_in_scope).remove(&sa.username);
            Arc::make_mut(&mut d.conflicts).remove(&sa.username);
            Arc::make_mut(&mut d.accounts).insert(
                sa.username.clone(),
                Arc::new(DesiredAccount {
                    username: sa.username.clone(),
                    person: None,
                    email: sa.email.as_str().into(),
                    first_name: sa.username.as_str().into(),
                    last_name: "service account".into(),
                    roles: Arc::new(sa.roles.clone()),
                    reason: "service account in policy".into(),
                }),
            );
        }
        for spec in policy
            .roles
            .iter()
            .filter(|r| r.instances.matches(inst.name, inst.labels))
        {
            d.roles.insert(spec.name.clone(), spec.permissions.clone());
        }
        let airlock = Username::new(inst.airlock_user).ok();
        for protected in policy.protected.iter().chain(airlock.iter()) {
            if Arc::make_mut(&mut d.accounts).remove(protected).is_some() {
                warnings.insert(Warning {
                    instance: Some(inst.name.clone()),
                    message: format!("{protected} is protected; airlock leaves it as it is"),
                });
            }
            Arc::make_mut(&mut d.excluded).remove(protected);
            Arc::make_mut(&mut d.inactive_in_scope).remove(protected);
            Arc::make_mut(&mut d.conflicts).remove(protected);
        }
        out.insert(inst.name.clone(), d);
    }
    (out, warnings.into_iter().collect())
}

fn non_empty(v: Option<&str>, fallback: &str) -> String {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ if fallback.trim().is_empty() => "-".to_string(),
        _ => fallback.to_string(),
    }
}

/// Plans one instance.
pub(super) fn plan_instance(input: &PlanInput<'_>) -> InstancePlan {
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
    for (username, want) in input.desired.accounts.iter() {
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
        let reason = want.reason.clone();
        managed.insert(username.clone());
        match actual.get(username) {
            None => ops.push(PlannedOp {
                instance: inst.clone(),
                op: Op::CreateAccount {
                    username: username.clone(),
                    email: want.email.clone(),
                    first_name: want.first_name.clone(),
                    last_name: want.last_name.clone(),
                    roles: Arc::new(roles),
                },
                reason,
            }),
            Some(have) => {
                if have.roles != roles {
                    let roles = Arc::new(roles);
                    let returning = input
                        .managed
                        .get(username)
                        .is_some_and(|m| m.suspended_at.is_some());
                    ops.push(PlannedOp {
                        instance: inst.clone(),
                        op: Op::SetRoles {
                            username: username.clone(),
                            from: Arc::new(have.roles.clone()),
                            to: roles,
                        },
                        reason: if returning {
                            format!("returning: {reason}").into()
                        } else {
                            reason.clone()
                        },
                    });
                }
                let email =
                    (!have.email.eq_ignore_ascii_case(&want.email)).then(|| want.email.to_string());
                let first_name =
                    (*have.first_name != *want.first_name).then(|| want.first_name.to_string());
                let last_name =
                    (*have.last_name != *want.last_name).then(|| want.last_name.to_string());
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
        if input.desired.accounts.contains_key(*username)
            || input.protected.contains(*username)
            || input.desired.conflicts.contains(*username)
        {
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
                            )
                            .into(),
                        });
                        managed.remove(*username);
                    }
                }
            }
            _ => ops.push(PlannedOp {
                instance: inst.clone(),
                op: Op::Suspend {
                    username: (*username).clone(),
                    roles: Arc::new(have.roles.clone()),
                },
                reason: format!("leaver: {why}").into(),
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
        managed: managed.into_iter().collect(),
    }
}
