//! One operation, in the parts the write-ahead journal needs: what it is for the audit trail
//! (`describe`), the Airflow calls that make it (`call`), the store records that follow a
//! success (`bookkeep`), and how to tell afterwards whether it reached Airflow (`read_back`),
//! for an intent a crash left open.

use crate::EngineError;
use airlock_airflow::{AirflowClient, NewUser, ProfileUpdate};
use airlock_audit::{operation, Target};
use airlock_core::plan::Op;
use airlock_core::Role;
use airlock_store::{HoldEnd, ManagedOrigin, Store};
use std::collections::BTreeSet;

/// An operation as the audit trail records it.
pub(super) struct Described {
    pub(super) name: &'static str,
    pub(super) target: Target,
    pub(super) before: serde_json::Value,
    pub(super) after: serde_json::Value,
}

fn account(username: &impl ToString) -> Target {
    Target::Account {
        username: username.to_string(),
    }
}

fn role(name: &impl ToString) -> Target {
    Target::Role {
        name: name.to_string(),
    }
}

/// Audit name, target and before/after of `op` (never a secret: operations carry none).
pub(super) fn describe(op: &Op) -> Described {
    use serde_json::{json, Value};
    let (name, target, before, after) = match op {
        Op::CreateRole {
            role: r,
            permissions,
        } => (
            operation::ROLE_CREATE,
            role(r),
            Value::Null,
            json!({ "permissions": permissions }),
        ),
        Op::UpdateRole {
            role: r,
            add,
            remove,
        } => (
            operation::ROLE_UPDATE,
            role(r),
            json!({ "remove": remove }),
            json!({ "add": add }),
        ),
        Op::CreateAccount {
            username,
            email,
            first_name,
            last_name,
            roles,
        } => (
            operation::ACCOUNT_CREATE,
            account(username),
            Value::Null,
            json!({ "email": email, "first_name": first_name, "last_name": last_name, "roles": roles }),
        ),
        Op::SetRoles { username, from, to } => (
            operation::ACCOUNT_SET_ROLES,
            account(username),
            json!({ "roles": from }),
            json!({ "roles": to }),
        ),
        Op::UpdateProfile {
            username,
            email,
            first_name,
            last_name,
        } => (
            operation::ACCOUNT_UPDATE_PROFILE,
            account(username),
            Value::Null,
            json!({ "email": email, "first_name": first_name, "last_name": last_name }),
        ),
        Op::Suspend { username, roles } => (
            operation::ACCOUNT_SUSPEND,
            account(username),
            json!({ "roles": roles }),
            json!({ "roles": [], "password": "rotated" }),
        ),
        Op::Delete { username } => (
            operation::ACCOUNT_DELETE,
            account(username),
            json!({ "exists": true }),
            json!({ "exists": false }),
        ),
    };
    Described {
        name,
        target,
        before,
        after,
    }
}

/// Makes `op` in Airflow; the note says what Airflow could not do (Airflow 2 cannot remove
/// permissions from a role through its API).
pub(super) async fn call(
    client: &AirflowClient,
    op: &Op,
) -> (Result<(), airlock_airflow::Error>, Option<String>) {
    let mut note = None;
    let r = match op {
        Op::CreateRole { role, permissions } => client
            .create_role(&Role {
                name: role.clone(),
                permissions: permissions.clone(),
            })
            .await
            .map(|_| ()),
        Op::UpdateRole { role, add, remove } => match client.get_role(role).await {
            Ok(cur) => {
                let mut want = cur.permissions.clone();
                want.extend(add.iter().cloned());
                want.retain(|x| !remove.contains(x));
                client.set_role_permissions(role, &want).await.map(|o| {
                    if !o.not_removed.is_empty() {
                        let list: Vec<String> =
                            o.not_removed.iter().map(ToString::to_string).collect();
                        note = Some(format!(
                            "Airflow 2 cannot remove permissions through its API; still granted: {}",
                            list.join("; ")
                        ));
                    }
                })
            }
            Err(e) => Err(e),
        },
        Op::CreateAccount {
            username,
            email,
            first_name,
            last_name,
            roles,
        } => client
            .create_user(&NewUser {
                username: username.clone(),
                email: email.to_string(),
                first_name: first_name.to_string(),
                last_name: last_name.to_string(),
                roles: BTreeSet::clone(roles),
                password: None,
            })
            .await
            .map(|_| ()),
        Op::SetRoles { username, to, .. } => client.set_user_roles(username, to).await.map(|_| ()),
        Op::UpdateProfile {
            username,
            email,
            first_name,
            last_name,
        } => {
            let upd = ProfileUpdate {
                email: email.clone(),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
            };
            client.update_profile(username, &upd).await.map(|_| ())
        }
        Op::Suspend { username, .. } => {
            // Roles first: that is what cuts access, including tokens already issued (after
            // Airflow's cache_ttl). Then the password, so no new token can be obtained.
            match client.set_user_roles(username, &BTreeSet::new()).await {
                Ok(_) => client.rotate_password(username).await,
                Err(e) => Err(e),
            }
        }
        Op::Delete { username } => match client.delete_user(username).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        },
    };
    (r, note)
}

/// The store's records after `op` succeeded on `instance` at `now_ms`. Idempotent, so an
/// intent recovered after a crash can run it again.
pub(super) async fn bookkeep(
    store: &Store,
    instance: &str,
    op: &Op,
    now_ms: i64,
) -> Result<(), EngineError> {
    match op {
        Op::CreateAccount { username, .. } => {
            store
                .manage_account(instance, username.as_str(), ManagedOrigin::Created, now_ms)
                .await?;
            store
                .record_created_account(instance, username.as_str(), now_ms)
                .await?;
        }
        Op::SetRoles { username, .. } => {
            store
                .manage_account(instance, username.as_str(), ManagedOrigin::Scope, now_ms)
                .await?;
            store
                .set_suspended(instance, username.as_str(), None)
                .await?;
        }
        Op::Suspend { username, .. } => {
            // An in-scope leaver airlock never managed becomes managed here, so the
            // suspension time is kept and the grace period can run.
            store
                .manage_account(instance, username.as_str(), ManagedOrigin::Scope, now_ms)
                .await?;
            store
                .set_suspended(instance, username.as_str(), Some(now_ms))
                .await?;
            store
                .end_hold(
                    instance,
                    username.as_str(),
                    op_kind(op),
                    HoldEnd::Applied,
                    now_ms,
                )
                .await?;
        }
        Op::Delete { username } => {
            store.forget_managed(instance, username.as_str()).await?;
            store
                .end_hold(
                    instance,
                    username.as_str(),
                    op_kind(op),
                    HoldEnd::Applied,
                    now_ms,
                )
                .await?;
        }
        Op::CreateRole { .. } | Op::UpdateRole { .. } | Op::UpdateProfile { .. } => {}
    }
    Ok(())
}

fn op_kind(op: &Op) -> &'static str {
    op.kind()
}

/// Whether `op`'s effect is what Airflow holds now: how an open intent is resolved. A suspension
/// whose roles are gone is finished here (the password rotated again, harmless if it was), so
/// that "applied" always means both steps happened.
pub(super) async fn read_back(
    client: &AirflowClient,
    op: &Op,
) -> Result<bool, airlock_airflow::Error> {
    let user = |u| async move {
        match client.get_user(u).await {
            Ok(a) => Ok(Some(a)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    };
    Ok(match op {
        Op::CreateRole { role, .. } => match client.get_role(role).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e),
        },
        Op::UpdateRole { role, add, remove } => {
            let r = client.get_role(role).await?;
            add.is_subset(&r.permissions) && remove.is_disjoint(&r.permissions)
        }
        Op::CreateAccount { username, .. } => user(username).await?.is_some(),
        Op::SetRoles { username, to, .. } => user(username).await?.is_some_and(|a| a.roles == **to),
        Op::UpdateProfile {
            username,
            email,
            first_name,
            last_name,
        } => user(username).await?.is_some_and(|a| {
            email
                .as_ref()
                .is_none_or(|e| e.eq_ignore_ascii_case(&a.email))
                && first_name.as_ref().is_none_or(|f| f == &a.first_name)
                && last_name.as_ref().is_none_or(|l| l == &a.last_name)
        }),
        Op::Suspend { username, .. } => match user(username).await? {
            Some(a) if a.roles.is_empty() => {
                client.rotate_password(username).await?;
                true
            }
            Some(_) => false,
            // Gone altogether: nobody can use it.
            None => true,
        },
        Op::Delete { username } => user(username).await?.is_none(),
    })
}
