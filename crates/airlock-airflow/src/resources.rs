//! The operations airlock needs on users, roles and permissions, over both API generations.

use crate::client::{AirflowClient, Generation, Req};
use crate::error::{Call, Error, ErrorClass, ErrorKind};
use crate::wire::{actions_json, roles_json, PermissionWire, RoleNames, RoleWire, UserWire};
use airlock_core::{Account, Permission, Role, RoleName, Username};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

/// The page size airlock asks for; Airflow clamps `limit` to `[api] maximum_page_limit`
/// (100 by default), and airlock pages by what it actually gets back.
pub const PAGE_LIMIT: usize = 100;

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub username: Username,
    /// Email (required and unique in FAB).
    pub email: String,
    /// Given name (required by FAB; must not be empty).
    pub first_name: String,
    /// Family name (required by FAB; must not be empty).
    pub last_name: String,
    /// Roles to hold from the start.
    pub roles: BTreeSet<RoleName>,
    /// `None` for SSO users: a random password is set and immediately forgotten.
    pub password: Option<SecretString>,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// New email.
    pub email: Option<String>,
    /// New given name.
    pub first_name: Option<String>,
    /// New family name.
    pub last_name: Option<String>,
}

/// What `GET /permissions` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermissionCatalog {
    /// Action x resource pairs (FAB provider >= 3.9 on Airflow 3).
    Pairs(BTreeSet<Permission>),
    /// Action names only (Airflow 2).
    Actions(BTreeSet<String>),
}

/// The result of setting a role's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePermissionsOutcome {
    /// The role as Airflow now reports it.
    pub role: Role,
    /// Permissions that should have been removed but remain: Airflow 2's API only adds
    /// permissions to a role, it cannot take any away.
    pub not_removed: BTreeSet<Permission>,
}

/// A random password for accounts whose owners log in through SSO: 40 characters from a
/// CSPRNG, never stored, logged or printed.
pub fn random_password() -> SecretString {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!%+";
    let mut rng = rand::rngs::OsRng;
    let s: String = (0..40)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    SecretString::from(s)
}

fn seg(s: &str) -> String {
    // Usernames and role names go into a path segment; encode everything but unreserved chars.
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl AirflowClient {
    async fn fab_base(&self) -> Result<&'static str, Error> {
        // Single-flight: concurrent first calls (users and roles are listed together) share
        // one probe.
        let base = self
            .inner
            .fab_base
            .get_or_try_init(|| self.probe_fab_base())
            .await?;
        Ok(base)
    }

    async fn probe_fab_base(&self) -> Result<&'static str, Error> {
        Ok(match self.server().await?.generation {
            Generation::V3 => "/auth/fab/v1",
            Generation::V2 => {
                // Airflow 2.9+ serves the FAB provider's API under /auth/fab/v1; older ones only
                // under /api/v1. One probe tells which.
                let probe = Req::new(Call::ListRoles, Method::GET, "/auth/fab/v1/roles")
                    .query("limit", "1");
                match self.send(probe).await {
                    Ok(_) => "/auth/fab/v1",
                    Err(e) if e.is_not_found() => "/api/v1",
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// Maps a 404 on a collection to "this Airflow has no FAB API".
    async fn collection_error(&self, e: Error) -> Error {
        if let Ok(info) = self.server().await {
            let missing = e.is_not_found() || matches!(e.kind, ErrorKind::UnexpectedHtml { .. });
            if missing && info.generation == Generation::V3 {
                return Error {
                    kind: ErrorKind::NoFabAuthManager {
                        version: info.version.clone(),
                    },
                    ..e
                };
            }
        }
        e
    }

    /// Reads every page of a collection. Pages after the first are fetched concurrently
    /// (within the client's concurrency limit). The listing fails, rather than returning a
    /// partial result, if a page is short or the total changes while paging.
    async fn list_all<W: DeserializeOwned>(
        &self,
        call: Call,
        resource: &str,
        field: &str,
    ) -> Result<Vec<W>, Error> {
        // A listing that changed under us (accounts created or deleted while paging) is read
        // again from the start, a few times, before giving up.
        let mut attempt = 0;
        loop {
            match self.list_all_once(call, resource, field).await {
                Err(e) if matches!(e.kind, ErrorKind::Incomplete(_)) && attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(crate::client::backoff(
                        self.inner.settings.retry_base,
                        attempt,
                    ))
                    .await;
                    tracing::debug!(instance = %self.instance(), %call, error = %e, "listing changed while paging; reading again");
                }
                other => return other,
            }
        }
    }

    async fn list_all_once<W: DeserializeOwned>(
        &self,
        call: Call,
        resource: &str,
        field: &str,
    ) -> Result<Vec<W>, Error> {
        let base = self.fab_base().await?;
        let path = format!("{base}/{resource}");
        let page = |offset: usize| {
            let req = Req::new(call, Method::GET, path.clone())
                .object(format!("offset {offset}"))
                .query("limit", PAGE_LIMIT.to_string())
                .query("offset", offset.to_string());
            async move {
                let v: serde_json::Value = self.json(req).await?;
                let bad = |m: &str| {
                    self.err(
                        call,
                        Some(format!("offset {offset}")),
                        ErrorKind::Malformed(m.to_string()),
                    )
                };
                let total = v
                    .get("total_entries")
                    .and_then(|t| t.as_u64())
                    .ok_or_else(|| bad("no total_entries"))?;
                let items = v
                    .get(field)
                    .and_then(|i| i.as_array())
                    .ok_or_else(|| bad(&format!("no `{field}` array")))?;
                let items: Vec<W> = items
                    .iter()
                    .map(|i| serde_json::from_value(i.clone()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&format!("unexpected item: {e}")))?;
                Ok::<_, Error>((usize::try_from(total).unwrap_or(usize::MAX), items))
            }
        };
        let (total, mut all) = match page(0).await {
            Ok(p) => p,
            Err(e) => return Err(self.collection_error(e).await),
        };
        let page_size = all.len();
        if total > page_size {
            if page_size == 0 {
                return Err(self.err(
                    call,
                    None,
                    ErrorKind::Incomplete(format!("first page empty but {total} reported")),
                ));
            }
            let offsets: Vec<usize> = (page_size..total).step_by(page_size).collect();
            let pages: Vec<(usize, Vec<W>)> = futures::stream::iter(offsets.into_iter().map(page))
                .buffered(self.inner.settings.max_concurrency.max(1))
                .try_collect()
                .await?;
            for (i, (t, items)) in pages.into_iter().enumerate() {
                if t != total {
                    return Err(self.err(
                        call,
                        None,
                        ErrorKind::Incomplete(format!(
                            "total changed from {total} to {t} while paging; try again"
                        )),
                    ));
                }
                let expected = (total - page_size * (i + 1)).min(page_size);
                if items.len() != expected {
                    return Err(self.err(
                        call,
                        Some(format!("offset {}", page_size * (i + 1))),
                        ErrorKind::Incomplete(format!(
                            "page has {} items, expected {expected}",
                            items.len()
                        )),
                    ));
                }
                all.extend(items);
            }
        }
        Ok(all)
    }

    /// Every user, with roles. Fails rather than return a partial list.
    pub async fn list_users(&self) -> Result<Vec<Account>, Error> {
        let mut attempt = 0;
        loop {
            let wires: Vec<UserWire> = self.list_all(Call::ListUsers, "users", "users").await?;
            match self.distinct_accounts(wires) {
                Err(e) if matches!(e.kind, ErrorKind::Incomplete(_)) && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    fn distinct_accounts(&self, wires: Vec<UserWire>) -> Result<Vec<Account>, Error> {
        let mut by_name: BTreeMap<Username, Account> = BTreeMap::new();
        let mut names = RoleNames::default();
        for w in wires {
            let account = w
                .into_account_sharing(&mut names)
                .map_err(|k| self.err(Call::ListUsers, None, k))?;
            if let Some(dup) = by_name.insert(account.username.clone(), account) {
                // Offsets shift if users are created or deleted while paging.
                return Err(self.err(
                    Call::ListUsers,
                    Some(dup.username.to_string()),
                    ErrorKind::Incomplete("user listed twice: users changed while paging".into()),
                ));
            }
        }
        Ok(by_name.into_values().collect())
    }

    /// One user, or a `NotFound` error.
    pub async fn get_user(&self, username: &Username) -> Result<Account, Error> {
        let base = self.fab_base().await?;
        let req = Req::new(
            Call::GetUser,
            Method::GET,
            format!("{base}/users/{}", seg(username.as_str())),
        )
        .object(username.as_str());
        let w: UserWire = self.json(req).await?;
        w.into_account()
            .map_err(|k| self.err(Call::GetUser, Some(username.to_string()), k))
    }

    /// Creates a user. If a retried create meets a 409 after an earlier attempt may have
    /// reached Airflow, the existing account is read back and returned when it matches.
    pub async fn create_user(&self, user: &NewUser) -> Result<Account, Error> {
        let object = user.username.to_string();
        for (field, value) in [
            ("first_name", &user.first_name),
            ("last_name", &user.last_name),
            ("email", &user.email),
        ] {
            if value.trim().is_empty() {
                return Err(self.err(
                    Call::CreateUser,
                    Some(object),
                    ErrorKind::InvalidRequest(format!("{field} must not be empty")),
                ));
            }
        }
        let password = user.password.clone().unwrap_or_else(random_password);
        let base = self.fab_base().await?;
        // FAB gives a user created without roles its "default registration role"; Airflow 3
        // has none configured and answers 500, Airflow 2 hands out `Public`. Create with the
        // permissionless `Public` role and strip it right after, so "no roles" means none.
        let strip_after = user.roles.is_empty();
        let public = BTreeSet::from([RoleName::new("Public").map_err(|e| {
            self.err(
                Call::CreateUser,
                Some(object.clone()),
                ErrorKind::InvalidRequest(e.to_string()),
            )
        })?]);
        let initial_roles = if strip_after { &public } else { &user.roles };
        let body = serde_json::json!({
            "username": user.username.as_str(),
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "roles": roles_json(initial_roles),
            "password": password.expose_secret(),
        });
        let req = Req::new(Call::CreateUser, Method::POST, format!("{base}/users"))
            .object(object)
            .json(body);
        match self.json::<UserWire>(req).await {
            Ok(w) => w
                .into_account()
                .map_err(|k| self.err(Call::CreateUser, Some(user.username.to_string()), k)),
            Err(e) if e.class() == ErrorClass::Conflict && e.after_ambiguous_attempt => {
                let existing = self.get_user(&user.username).await?;
                if existing.email.eq_ignore_ascii_case(&user.email) {
                    Ok(existing)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// PATCHes a user with only `fields` changed. Airflow 2 validates PATCH bodies as whole
    /// users, so there the current profile is read first and sent along.
    async fn patch_user(
        &self,
        username: &Username,
        mask: &[&str],
        mut body: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Account, Error> {
        let base = self.fab_base().await?;
        if self.server().await?.generation == Generation::V2 {
            let current = self.get_user(username).await?;
            for (k, v) in [
                ("username", current.username.as_str().to_string()),
                ("email", current.email),
                ("first_name", current.first_name),
                ("last_name", current.last_name),
            ] {
                body.entry(k).or_insert(serde_json::Value::String(v));
            }
        }
        let req = Req::new(
            Call::UpdateUser,
            Method::PATCH,
            format!("{base}/users/{}", seg(username.as_str())),
        )
        .object(username.as_str())
        .query("update_mask", mask.join(","))
        .json(serde_json::Value::Object(body));
        let w: UserWire = self.json(req).await?;
        w.into_account()
            .map_err(|k| self.err(Call::UpdateUser, Some(username.to_string()), k))
    }

    /// Replaces a user's roles with exactly `roles` (empty strips every role).
    pub async fn set_user_roles(
        &self,
        username: &Username,
        roles: &BTreeSet<RoleName>,
    ) -> Result<Account, Error> {
        let mut body = serde_json::Map::new();
        body.insert("roles".into(), roles_json(roles));
        self.patch_user(username, &["roles"], body).await
    }

    /// Changes profile fields.
    pub async fn update_profile(
        &self,
        username: &Username,
        update: &ProfileUpdate,
    ) -> Result<Account, Error> {
        let mut body = serde_json::Map::new();
        let mut mask = Vec::new();
        for (k, v) in [
            ("email", &update.email),
            ("first_name", &update.first_name),
            ("last_name", &update.last_name),
        ] {
            if let Some(v) = v {
                if v.trim().is_empty() {
                    return Err(self.err(
                        Call::UpdateUser,
                        Some(username.to_string()),
                        ErrorKind::InvalidRequest(format!("{k} must not be empty")),
                    ));
                }
                body.insert(k.into(), serde_json::Value::String(v.clone()));
                mask.push(k);
            }
        }
        if mask.is_empty() {
            return self.get_user(username).await;
        }
        self.patch_user(username, &mask, body).await
    }

    /// Sets a new random password that nobody knows, cutting off password logins and basic
    /// auth. Tokens already issued stay valid until they expire (see ADR 0002).
    pub async fn rotate_password(&self, username: &Username) -> Result<(), Error> {
        let mut body = serde_json::Map::new();
        body.insert(
            "password".into(),
            serde_json::Value::String(random_password().expose_secret().to_string()),
        );
        self.patch_user(username, &["password"], body)
            .await
            .map(|_| ())
    }

    /// Deletes a user. Never the first step of deprovisioning: on SQLite-backed Airflow a new
    /// user can reuse the numeric id, and the deleted user's token then acts as the new one.
    pub async fn delete_user(&self, username: &Username) -> Result<(), Error> {
        let base = self.fab_base().await?;
        let req = Req::new(
            Call::DeleteUser,
            Method::DELETE,
            format!("{base}/users/{}", seg(username.as_str())),
        )
        .object(username.as_str());
        self.send(req).await.map(|_| ())
    }

    /// Every role with its permissions.
    pub async fn list_roles(&self) -> Result<Vec<Role>, Error> {
        let wires: Vec<RoleWire> = self.list_all(Call::ListRoles, "roles", "roles").await?;
        let mut roles: Vec<Role> = wires
            .into_iter()
            .map(|w| {
                w.into_role()
                    .map_err(|k| self.err(Call::ListRoles, None, k))
            })
            .collect::<Result<_, _>>()?;
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(roles)
    }

    /// One role, or a `NotFound` error.
    pub async fn get_role(&self, name: &RoleName) -> Result<Role, Error> {
        let base = self.fab_base().await?;
        let req = Req::new(
            Call::GetRole,
            Method::GET,
            format!("{base}/roles/{}", seg(name.as_str())),
        )
        .object(name.as_str());
        let w: RoleWire = self.json(req).await?;
        w.into_role()
            .map_err(|k| self.err(Call::GetRole, Some(name.to_string()), k))
    }

    /// Creates a role with its permissions.
    pub async fn create_role(&self, role: &Role) -> Result<Role, Error> {
        let base = self.fab_base().await?;
        let body = serde_json::json!({ "name": role.name.as_str(), "actions": actions_json(&role.permissions) });
        let req = Req::new(Call::CreateRole, Method::POST, format!("{base}/roles"))
            .object(role.name.as_str())
            .json(body);
        let resp = match self.send(req).await {
            Ok(r) => r,
            Err(e) if e.class() == ErrorClass::Conflict && e.after_ambiguous_attempt => {
                return self.get_role(&role.name).await
            }
            Err(e) => return Err(e),
        };
        match self.server().await?.generation {
            Generation::V3 => serde_json::from_slice::<RoleWire>(&resp.body)
                .map_err(|e| ErrorKind::Malformed(e.to_string()))
                .and_then(RoleWire::into_role)
                .map_err(|k| self.err(Call::CreateRole, Some(role.name.to_string()), k)),
            // Airflow 2 answers with the role as looked up before it was created (`{}`).
            Generation::V2 => self.get_role(&role.name).await,
        }
    }

    /// Makes a role's permissions exactly `permissions` where the API allows it. FAB >= 3.9
    /// replaces the set; Airflow 2 only adds, so what could not be removed is reported.
    pub async fn set_role_permissions(
        &self,
        name: &RoleName,
        permissions: &BTreeSet<Permission>,
    ) -> Result<RolePermissionsOutcome, Error> {
        let base = self.fab_base().await?;
        let body =
            serde_json::json!({ "name": name.as_str(), "actions": actions_json(permissions) });
        let req = Req::new(
            Call::UpdateRole,
            Method::PATCH,
            format!("{base}/roles/{}", seg(name.as_str())),
        )
        .object(name.as_str())
        .query("update_mask", "actions")
        .json(body);
        let w: RoleWire = self.json(req).await?;
        let role = match self.server().await?.generation {
            Generation::V3 => w
                .into_role()
                .map_err(|k| self.err(Call::UpdateRole, Some(name.to_string()), k))?,
            // Airflow 2 answers with the role as loaded before the sync; read it back.
            Generation::V2 => self.get_role(name).await?,
        };
        let not_removed = role.permissions.difference(permissions).cloned().collect();
        Ok(RolePermissionsOutcome { role, not_removed })
    }

    /// Deletes a role (users holding it lose it).
    pub async fn delete_role(&self, name: &RoleName) -> Result<(), Error> {
        let base = self.fab_base().await?;
        let req = Req::new(
            Call::DeleteRole,
            Method::DELETE,
            format!("{base}/roles/{}", seg(name.as_str())),
        )
        .object(name.as_str());
        self.send(req).await.map(|_| ())
    }

    /// The permissions this instance knows.
    pub async fn list_permissions(&self) -> Result<PermissionCatalog, Error> {
        let wires: Vec<PermissionWire> = self
            .list_all(Call::ListPermissions, "permissions", "actions")
            .await?;
        let mut pairs = BTreeSet::new();
        let mut actions = BTreeSet::new();
        for w in wires {
            match w {
                PermissionWire::Pair(p) => {
                    pairs.insert(Permission::new(p.action.name, p.resource.name));
                }
                PermissionWire::Action(a) => {
                    actions.insert(a.name);
                }
            }
        }
        Ok(if pairs.is_empty() && !actions.is_empty() {
            PermissionCatalog::Actions(actions)
        } else {
            PermissionCatalog::Pairs(pairs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password();
        let b = random_password();
        assert_eq!(a.expose_secret().len(), 40);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("ada@example.com"), "ada%40example.com");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
