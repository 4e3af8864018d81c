//! The access policy, validated: which directory groups get which Airflow roles on which
//! instances, how usernames are derived, roles as code, protected and service accounts, what
//! happens to leavers, and the safety rails. Parsing and key-path errors live in
//! `airlock-config`; this is the typed result the planner reads.

use crate::directory::{GroupName, Person};
use crate::model::{InstanceName, Permission, RoleName, Username};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Roles every Airflow ships; they cannot be redefined as code.
pub const BUILTIN_ROLES: &[&str] = &["Admin", "Op", "User", "Viewer", "Public"];

/// Which instances a rule applies to: all when both lists are empty; otherwise an instance
/// matches when its name is listed or when it carries every listed label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSelector {
    /// Instance names.
    pub names: BTreeSet<InstanceName>,
    /// Labels that must all match.
    pub labels: BTreeMap<String, String>,
}

impl InstanceSelector {
    /// Whether the selector picks this instance.
    pub fn matches(&self, name: &InstanceName, labels: &BTreeMap<String, String>) -> bool {
        if self.names.is_empty() && self.labels.is_empty() {
            return true;
        }
        self.names.contains(name)
            || (!self.labels.is_empty()
                && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// How an Airflow username is derived from a person, so that it equals what Airflow's own SSO
/// login produces for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsernameSource {
    /// The full email address.
    Email,
    /// The part of the email before `@`.
    EmailLocalPart,
    /// The directory's username (JumpCloud `username`, LDAP `uid` / `sAMAccountName`).
    DirectoryUsername,
}

/// Username derivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernameRule {
    /// Which attribute.
    pub source: UsernameSource,
    /// Prepended, e.g. `okta_` where Airflow's OAuth login prefixes usernames.
    pub prefix: String,
    /// Lowercase the result.
    pub lowercase: bool,
}

impl UsernameRule {
    /// The Airflow username for `person`, or why none can be derived.
    pub fn derive(&self, person: &Person) -> Result<Username, String> {
        let base = match self.source {
            UsernameSource::Email => person.email.as_deref().ok_or("has no email")?,
            UsernameSource::EmailLocalPart => {
                let email = person.email.as_deref().ok_or("has no email")?;
                email.split('@').next().unwrap_or_default()
            }
            UsernameSource::DirectoryUsername => person.username.as_str(),
        };
        // Usually neither end is blank: no trimming (which decodes characters) needed.
        let bytes = base.as_bytes();
        let unpadded = (bytes.first().zip(bytes.last()))
            .is_some_and(|(a, z)| a.is_ascii_graphic() && z.is_ascii_graphic());
        let base = if unpadded { base } else { base.trim() };
        // Usually the name is the attribute as it is: no copy to build it. (One pass, without
        // an early exit, so that it vectorises.)
        let folds = |bytes: &[u8]| {
            (bytes.iter()).fold(false, |any, &b| any | (b >= 0x80) | b.is_ascii_uppercase())
        };
        let as_is = self.prefix.is_empty() && (!self.lowercase || !folds(base.as_bytes()));
        if as_is {
            return Username::new(base).map_err(|e| e.to_string());
        }
        let mut name = String::with_capacity(self.prefix.len() + base.len());
        name.push_str(&self.prefix);
        name.push_str(base);
        if self.lowercase {
            if name.is_ascii() {
                name.make_ascii_lowercase();
            } else {
                name = name.to_lowercase();
            }
        }
        Username::new(name).map_err(|e| e.to_string())
    }
}

/// Directory group -> Airflow roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Members of this group...
    pub group: GroupName,
    /// ...get these roles...
    pub roles: BTreeSet<RoleName>,
    /// ...on these instances.
    pub instances: InstanceSelector,
}

/// A custom role kept in shape by airlock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    /// Role name (not a built-in one).
    pub name: RoleName,
    /// Exactly these permissions.
    pub permissions: BTreeSet<Permission>,
    /// On these instances.
    pub instances: InstanceSelector,
}

/// A machine user declared in the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// Airflow username.
    pub username: Username,
    /// Email (FAB requires one).
    pub email: String,
    /// Roles.
    pub roles: BTreeSet<RoleName>,
    /// On these instances.
    pub instances: InstanceSelector,
}

/// What happens to accounts whose person left (or was suspended) in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaverRule {
    /// Delete suspended accounts this many seconds after suspension; `None` keeps them.
    /// Validated to exceed every instance's token lifetime.
    pub delete_after_secs: Option<i64>,
}

/// Limits on what a run may do. The directory checks stop a whole run before any write; the
/// deprovisioning caps hold back only the suspensions and deletions they refuse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SafetyRails {
    /// At most this many suspensions + deletions in one run, over all instances.
    pub max_deprovisions: usize,
    /// At most this fraction of one instance's managed accounts suspended or deleted in a run.
    pub max_deprovision_fraction: f64,
    /// At most this many suspensions + deletions in any rolling hour, over all instances,
    /// runs and replicas (`None`: no window).
    #[serde(default)]
    pub max_deprovisions_per_hour: Option<usize>,
    /// A directory read with fewer people than this fraction of the previous complete read is
    /// treated as an outage.
    pub min_directory_ratio: f64,
}

impl Default for SafetyRails {
    fn default() -> Self {
        Self {
            max_deprovisions: 10,
            max_deprovision_fraction: 0.25,
            max_deprovisions_per_hour: Some(50),
            min_directory_ratio: 0.5,
        }
    }
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Username derivation.
    pub username: UsernameRule,
    /// Group grants.
    pub grants: Vec<Grant>,
    /// Groups whose members get an account even without a grant on an instance (with
    /// `default_roles`); members of any granted group are in scope anyway.
    pub scope_groups: Vec<(GroupName, InstanceSelector)>,
    /// Roles for in-scope people that no grant gives a role on an instance.
    pub default_roles: BTreeSet<RoleName>,
    /// Custom roles as code.
    pub roles: Vec<RoleSpec>,
    /// Accounts airlock never changes.
    pub protected: BTreeSet<Username>,
    /// Machine users.
    pub service_accounts: Vec<ServiceAccount>,
    /// Leavers.
    pub leavers: LeaverRule,
    /// Safety rails.
    pub safety: SafetyRails,
    /// Just-in-time access: who may ask for which roles, who approves, for how long.
    #[serde(default)]
    pub access: crate::access::AccessPolicy,
}
