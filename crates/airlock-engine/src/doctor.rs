//! `airlock instances`: for one instance, is it reachable, which version and API generation,
//! does it run the FAB auth manager, do airlock's credentials work, and does airlock's own
//! account hold the permissions airlock needs.

use airlock_airflow::{AirflowClient, ErrorKind, Generation};
use airlock_core::{Permission, Username};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// Permissions airlock needs to inventory and manage users and roles through the FAB API.
pub fn required_permissions() -> BTreeSet<Permission> {
    ["Users", "Roles"]
        .iter()
        .flat_map(|res| {
            ["can_read", "can_create", "can_edit", "can_delete"]
                .iter()
                .map(move |a| Permission::new(*a, *res))
        })
        .collect()
}

/// The outcome of each check, in order; later checks are skipped once one fails.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Instance name.
    pub instance: String,
    /// Base URL.
    pub url: String,
    /// Whether `/api/v2/version` or `/api/v1/version` answered.
    pub reachable: bool,
    /// Reported version.
    pub version: Option<String>,
    /// `v3` or `v2`.
    pub api: Option<&'static str>,
    /// `fab` when the FAB API answered.
    pub auth_manager: Option<&'static str>,
    /// Whether airlock's credentials were accepted.
    pub credentials_ok: Option<bool>,
    /// Required permissions airlock's account lacks (empty = all present).
    pub missing_permissions: Vec<Permission>,
    /// What works but is unsafe, one line each (e.g. tokens that outlive the configured
    /// `token_lifetime_secs`, which blocks deletions there).
    pub problems: Vec<String>,
    /// The first failure, as one line.
    pub error: Option<String>,
}

impl Health {
    /// A report with no check run yet.
    pub fn new(instance: &str, url: &str) -> Self {
        Health {
            instance: instance.to_string(),
            url: url.to_string(),
            reachable: false,
            version: None,
            api: None,
            auth_manager: None,
            credentials_ok: None,
            missing_permissions: Vec::new(),
            problems: Vec::new(),
            error: None,
        }
    }

    /// A report that failed before any check ran (e.g. the client could not be built).
    pub fn failed(instance: &str, url: &str, error: String) -> Self {
        Health {
            error: Some(error),
            ..Self::new(instance, url)
        }
    }

    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.missing_permissions.is_empty() && self.problems.is_empty()
    }

    /// Adds a problem when `client`'s last token (obtained by [`check`]) lives longer than
    /// the configured `token_lifetime_secs`: `sync` then holds back deletions there.
    pub fn check_token_lifetime(&mut self, client: &AirflowClient, configured: Duration) {
        if let Some(r) = crate::sync::lifetime_conflict(
            client.instance().as_str(),
            configured,
            client.observed_token_lifetime(),
        ) {
            self.problems.push(r.to_string());
        }
    }
}

/// Runs the checks against one instance.
pub async fn check(client: &AirflowClient, url: &str, username: &str) -> Health {
    let mut h = Health::new(client.instance().as_str(), url);
    let info = match client.server().await {
        Ok(i) => i.clone(),
        Err(e) => {
            h.reachable = !matches!(
                e.kind,
                ErrorKind::Unreachable(_) | ErrorKind::Timeout(_) | ErrorKind::Tls(_)
            );
            h.error = Some(e.to_string());
            return h;
        }
    };
    h.reachable = true;
    h.version = Some(info.version.clone());
    h.api = Some(match info.generation {
        Generation::V3 => "v3",
        Generation::V2 => "v2",
    });
    let roles = match client.list_roles().await {
        Ok(r) => r,
        Err(e) => {
            match e.kind {
                ErrorKind::Unauthorized { .. } => h.credentials_ok = Some(false),
                ErrorKind::NoFabAuthManager { .. } => {}
                _ => h.auth_manager = Some("fab"),
            }
            h.error = Some(e.to_string());
            return h;
        }
    };
    h.auth_manager = Some("fab");
    h.credentials_ok = Some(true);
    let me = match Username::new(username) {
        Ok(u) => u,
        Err(e) => {
            h.error = Some(e.to_string());
            return h;
        }
    };
    match client.get_user(&me).await {
        Ok(account) => {
            let held: BTreeSet<&Permission> = roles
                .iter()
                .filter(|r| account.roles.contains(&r.name))
                .flat_map(|r| r.permissions.iter())
                .collect();
            h.missing_permissions = required_permissions()
                .into_iter()
                .filter(|p| !held.contains(p))
                .collect();
        }
        Err(e) => h.error = Some(e.to_string()),
    }
    h
}
