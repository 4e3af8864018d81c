//! JSON shapes of the FAB API, identical on Airflow 3 (`/auth/fab/v1`, FastAPI) and Airflow 2
//! (`/auth/fab/v1` or `/api/v1`, connexion) except where noted, and their conversion into
//! the core model.

use crate::error::ErrorKind;
use airlock_core::{Account, Permission, Role, RoleName, Username};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct NameRef {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserWire {
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<NameRef>>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub last_login: Option<String>,
    #[serde(default)]
    pub login_count: Option<u64>,
    #[serde(default)]
    pub fail_login_count: Option<u64>,
    #[serde(default)]
    pub created_on: Option<String>,
    #[serde(default)]
    pub changed_on: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct ActionResource {
    pub action: NameRef,
    pub resource: NameRef,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RoleWire {
    pub name: String,
    #[serde(default)]
    pub actions: Vec<ActionResource>,
}

/// An item of `GET /permissions`: a pair on FAB >= 3.9, a bare action name on Airflow 2.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PermissionWire {
    Pair(ActionResource),
    Action(NameRef),
}

/// Airflow reports naive timestamps in UTC; accept RFC 3339 too.
fn timestamp(s: &Option<String>) -> Option<DateTime<Utc>> {
    let s = s.as_deref()?;
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// The role names read so far, so that the accounts of one listing share one text per role
/// (an instance has a few roles and thousands of accounts; the planner compares them often).
#[derive(Default)]
pub(crate) struct RoleNames(Vec<RoleName>);

impl RoleNames {
    /// Beyond this many distinct names, new ones are not kept (only sharing is lost).
    const MAX: usize = 256;

    fn get(&mut self, name: String) -> Result<RoleName, airlock_core::NameError> {
        if let Some(known) = self.0.iter().find(|r| r.as_str() == name) {
            return Ok(known.clone());
        }
        let role = RoleName::new(name)?;
        if self.0.len() < Self::MAX {
            self.0.push(role.clone());
        }
        Ok(role)
    }
}

impl UserWire {
    pub(crate) fn into_account(self) -> Result<Account, ErrorKind> {
        self.into_account_sharing(&mut RoleNames::default())
    }

    /// As [`UserWire::into_account`], with role names shared through `names`.
    pub(crate) fn into_account_sharing(self, names: &mut RoleNames) -> Result<Account, ErrorKind> {
        let username = Username::new(&self.username)
            .map_err(|e| ErrorKind::Malformed(format!("user with unusable username: {e}")))?;
        let roles = self
            .roles
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                (names.get(r.name))
                    .map_err(|e| ErrorKind::Malformed(format!("user `{username}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Account {
            email: self.email.unwrap_or_default(),
            first_name: self.first_name.unwrap_or_default(),
            last_name: self.last_name.unwrap_or_default(),
            roles,
            active: self.active.unwrap_or(true),
            last_login: timestamp(&self.last_login),
            login_count: self.login_count,
            fail_login_count: self.fail_login_count,
            created_on: timestamp(&self.created_on),
            changed_on: timestamp(&self.changed_on),
            username,
        })
    }
}

impl RoleWire {
    pub(crate) fn into_role(self) -> Result<Role, ErrorKind> {
        let name = RoleName::new(self.name).map_err(|e| ErrorKind::Malformed(e.to_string()))?;
        let permissions = self
            .actions
            .into_iter()
            .map(|a| Permission::new(a.action.name, a.resource.name))
            .collect();
        Ok(Role { name, permissions })
    }
}

pub(crate) fn actions_json<'a>(
    perms: impl IntoIterator<Item = &'a Permission>,
) -> serde_json::Value {
    serde_json::Value::Array(
        perms
            .into_iter()
            .map(|p| serde_json::json!({ "action": { "name": p.action }, "resource": { "name": p.resource } }))
            .collect(),
    )
}

pub(crate) fn roles_json<'a>(roles: impl IntoIterator<Item = &'a RoleName>) -> serde_json::Value {
    serde_json::Value::Array(
        roles
            .into_iter()
            .map(|r| serde_json::json!({ "name": r.as_str() }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, roles: &[&str]) -> UserWire {
        serde_json::from_value(serde_json::json!({
            "username": name,
            "email": format!("{name}@example.com"),
            "roles": roles.iter().map(|r| serde_json::json!({ "name": r })).collect::<Vec<_>>(),
        }))
        .expect("valid user")
    }

    #[test]
    fn accounts_of_one_listing_share_role_names() {
        let mut names = RoleNames::default();
        let a = user("a", &["Op", "Viewer"]).into_account_sharing(&mut names);
        let b = user("b", &["Viewer"]).into_account_sharing(&mut names);
        let (a, b) = (a.expect("valid"), b.expect("valid"));
        let viewer = |x: &Account| {
            let r = x
                .roles
                .iter()
                .find(|r| r.as_str() == "Viewer")
                .expect("has Viewer");
            r.as_str().as_ptr()
        };
        assert_eq!(viewer(&a), viewer(&b), "one text for Viewer");
        assert_eq!(a.roles.len(), 2);
        // An invalid name is still refused, with the user named.
        let err = user("c", &[" "]).into_account_sharing(&mut names);
        assert!(
            matches!(&err, Err(ErrorKind::Malformed(m)) if m.contains("user `c`")),
            "{:?}",
            err.map(|a| a.username)
        );
    }
}
