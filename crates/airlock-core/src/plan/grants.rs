//! Just-in-time grants in the desired state ([`with_grants`]): an active grant adds its roles
//! to its person's account on the instances it names, creating the account when the directory
//! alone would give none. Once the grant is over, the next plan no longer has those roles, so
//! the plan removes exactly what the grant added: roles the person also has from a directory
//! group stay, and an account that only the grant wanted is suspended like a leaver's.

use super::{non_empty, DesiredAccount, DesiredInstance, InstanceRef, Warning};
use crate::access::AccessRequest;
use crate::directory::{DirectorySnapshot, PersonStatus};
use crate::model::{InstanceName, Username};
use crate::policy::Policy;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Adds the grants active at `now` to `desired` (as [`super::desired`] computed it for the same
/// policy, directory and instances). A grant never touches a protected account, airlock's own,
/// a service account or a username several people claim, and never a person the directory
/// does not list as active (a leaver loses their grants with everything else).
pub fn with_grants(
    policy: &Policy,
    directory: &DirectorySnapshot,
    instances: &[InstanceRef<'_>],
    grants: &[AccessRequest],
    now: DateTime<Utc>,
    desired: &mut BTreeMap<InstanceName, DesiredInstance>,
) -> Vec<Warning> {
    let mut warnings = BTreeSet::new();
    for grant in grants {
        let Some(expires_at) = grant.active_at(now) else {
            continue;
        };
        let Some(person) =
            (directory.people.get(&grant.requester)).filter(|p| p.status == PersonStatus::Active)
        else {
            continue;
        };
        let username = match policy.username.derive(person) {
            Ok(username) => username,
            Err(why) => {
                warnings.insert(Warning {
                    instance: None,
                    message: format!(
                        "access grant {} is not applied: no username for {}: {why}",
                        grant.id, person.id
                    ),
                });
                continue;
            }
        };
        let reason: Arc<str> = Arc::from(format!(
            "access grant {} ({}) until {}",
            grant.id,
            grant
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
        for inst in instances
            .iter()
            .filter(|i| grant.instances.contains(i.name))
        {
            let Some(d) = desired.get_mut(inst.name) else {
                continue;
            };
            if let Some(why) = untouchable(policy, inst, d, &username) {
                warnings.insert(Warning {
                    instance: Some(inst.name.clone()),
                    message: format!(
                        "access grant {} is not applied to {username}: {why}",
                        grant.id
                    ),
                });
                continue;
            }
            let account = match d.accounts.get(&username) {
                Some(existing) => {
                    let mut roles = (*existing.roles).clone();
                    roles.extend(grant.roles.iter().cloned());
                    DesiredAccount {
                        roles: Arc::new(roles),
                        reason: Arc::from(format!("{}; {reason}", existing.reason)),
                        ..(**existing).clone()
                    }
                }
                None => {
                    let local = username.as_str().split('@').next().unwrap_or_default();
                    DesiredAccount {
                        username: username.clone(),
                        person: Some(person.id.clone()),
                        email: Arc::from(person.email.as_deref().unwrap_or_default()),
                        first_name: non_empty(person.first_name.as_deref(), local),
                        last_name: non_empty(person.last_name.as_deref(), "-"),
                        roles: Arc::new(grant.roles.clone()),
                        reason: Arc::clone(&reason),
                    }
                }
            };
            if d.excluded.contains_key(&username) {
                Arc::make_mut(&mut d.excluded).remove(&username);
            }
            Arc::make_mut(&mut d.accounts).insert(username.clone(), Arc::new(account));
        }
    }
    warnings.into_iter().collect()
}

/// Why a grant may not change `username` on this instance, if it may not.
fn untouchable(
    policy: &Policy,
    inst: &InstanceRef<'_>,
    d: &DesiredInstance,
    username: &Username,
) -> Option<&'static str> {
    if policy.protected.contains(username)
        || Username::new(inst.airlock_user).is_ok_and(|own| own == *username)
    {
        Some("it is protected")
    } else if (policy.service_accounts.iter())
        .any(|sa| sa.username == *username && sa.instances.matches(inst.name, inst.labels))
    {
        Some("it is a service account")
    } else if d.conflicts.contains(username) {
        Some("several people map to this username")
    } else {
        None
    }
}
