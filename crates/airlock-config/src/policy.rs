//! The access policy file: parsed with `deny_unknown_fields`, validated against the configured
//! instances, every problem reported with its key path (prefixed `policy.`).
//!
//! ```toml
//! [usernames]
//! from = "email"                 # email | email_local_part | directory_username
//!
//! [[grants]]
//! group = "data-engineers"
//! roles = ["Op"]
//! instances = { labels = { env = "prod" } }
//!
//! [roles.marketing-analyst]      # roles as code: "read and trigger only the marketing DAGs"
//! dags = { read = ["marketing_daily"], trigger = ["marketing_daily"] }
//! ```

use crate::validate::InstanceConfig;
use crate::ConfigError;
use airlock_core::directory::GroupName;
use airlock_core::policy::{
    Grant, InstanceSelector, LeaverRule, Policy, RoleSpec, SafetyRails, ServiceAccount,
    UsernameRule, UsernameSource, BUILTIN_ROLES,
};
use airlock_core::{InstanceName, Permission, RoleName, Username};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// How Airflow usernames are derived from people.
    #[serde(default)]
    usernames: RawUsernames,
    /// Group -> roles rules.
    #[serde(default)]
    grants: Vec<RawGrant>,
    /// Who gets an account even without a grant, and with which default roles.
    #[serde(default)]
    scope: RawScope,
    /// Custom roles kept in shape by airlock, by name.
    #[serde(default)]
    roles: BTreeMap<String, RawRole>,
    /// Accounts airlock never changes.
    #[serde(default)]
    protected: RawProtected,
    /// Machine users.
    #[serde(default)]
    service_accounts: Vec<RawServiceAccount>,
    /// Leaver handling.
    #[serde(default)]
    leavers: RawLeavers,
    /// Safety rails.
    #[serde(default)]
    safety: RawSafety,
    /// Just-in-time access.
    #[serde(default)]
    access: crate::access::RawAccess,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsernames {
    /// `email` (default), `email_local_part` or `directory_username`.
    #[serde(default = "default_from")]
    from: UsernameSource,
    /// Prefix added in front, e.g. `okta_`.
    #[serde(default)]
    prefix: String,
    /// Lowercase usernames (default true).
    #[serde(default = "yes")]
    lowercase: bool,
}

impl Default for RawUsernames {
    fn default() -> Self {
        Self {
            from: default_from(),
            prefix: String::new(),
            lowercase: true,
        }
    }
}

fn default_from() -> UsernameSource {
    UsernameSource::Email
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSelector {
    /// Instance names.
    #[serde(default)]
    names: Vec<String>,
    /// Labels that must all match.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    /// Directory group.
    group: String,
    /// Airflow roles its members get.
    roles: Vec<String>,
    /// Instances (default: all).
    #[serde(default)]
    instances: RawSelector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    /// Members of these groups get an account everywhere (with `default_roles` where no grant
    /// gives them a role).
    #[serde(default)]
    groups: Vec<String>,
    /// Roles for in-scope people without any granted role.
    #[serde(default)]
    default_roles: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDags {
    /// Can see these DAGs and their runs.
    #[serde(default)]
    read: Vec<String>,
    /// Can trigger runs of these DAGs.
    #[serde(default)]
    trigger: Vec<String>,
    /// Can edit (pause, clear) these DAGs.
    #[serde(default)]
    edit: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermission {
    action: String,
    resource: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    /// Per-DAG shorthand.
    #[serde(default)]
    dags: RawDags,
    /// Any other permissions.
    #[serde(default)]
    permissions: Vec<RawPermission>,
    /// Instances (default: all).
    #[serde(default)]
    instances: RawSelector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtected {
    /// Usernames never changed (break-glass admins; airlock's own account is always protected).
    #[serde(default)]
    usernames: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceAccount {
    username: String,
    email: String,
    roles: Vec<String>,
    #[serde(default)]
    instances: RawSelector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeavers {
    /// Delete suspended accounts after this many days (must exceed every instance's token
    /// lifetime); absent: never delete.
    delete_after_days: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    max_deprovisions: Option<usize>,
    max_deprovision_fraction: Option<f64>,
    /// A number, or 0 for no rolling window.
    max_deprovisions_per_hour: Option<usize>,
    min_directory_ratio: Option<f64>,
}

/// The permissions behind the per-DAG shorthand. Airflow 3's FAB auth manager checks
/// `DAG:<id>` for the DAG and `DAG Run:<id>` for its runs.
fn dag_permissions(dags: &RawDags) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for d in &dags.read {
        out.insert(Permission::new("can_read", format!("DAG:{d}")));
        out.insert(Permission::new("can_read", format!("DAG Run:{d}")));
    }
    for d in &dags.trigger {
        out.insert(Permission::new("can_read", format!("DAG:{d}")));
        out.insert(Permission::new("can_create", format!("DAG Run:{d}")));
    }
    for d in &dags.edit {
        out.insert(Permission::new("can_edit", format!("DAG:{d}")));
    }
    out
}

pub(crate) fn load(
    path: &Path,
    instances: &[InstanceConfig],
    errors: &mut Vec<ConfigError>,
) -> Option<Policy> {
    let text = match crate::files::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::new(
                "policy",
                format!("cannot read {}: {e}", path.display()),
            ));
            return None;
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            let mut err = crate::toml_error(&text, &e);
            err.key = "policy".into();
            err.message = format!("{}: {}", path.display(), err.message);
            errors.push(err);
            return None;
        }
    };
    let raw: RawPolicy = match serde_path_to_error::deserialize(toml::Value::Table(table)) {
        Ok(r) => r,
        Err(e) => {
            errors.push(ConfigError::new(
                format!("policy.{}", e.path()),
                e.into_inner().message().to_string(),
            ));
            return None;
        }
    };
    validate(raw, instances, errors)
}

/// An instance selector whose names are all configured instances.
pub(crate) fn selector(
    known: &BTreeSet<&str>,
    key: String,
    s: RawSelector,
    errors: &mut Vec<ConfigError>,
) -> InstanceSelector {
    let mut names = BTreeSet::new();
    for n in s.names {
        match InstanceName::new(n.clone()) {
            Ok(name) if known.contains(name.as_str()) => {
                names.insert(name);
            }
            _ => errors.push(ConfigError::new(
                format!("{key}.names"),
                format!("no instance named `{n}` is configured"),
            )),
        }
    }
    InstanceSelector {
        names,
        labels: s.labels,
    }
}

fn validate(
    raw: RawPolicy,
    instances: &[InstanceConfig],
    errors: &mut Vec<ConfigError>,
) -> Option<Policy> {
    let before = errors.len();
    let known: BTreeSet<&str> = instances.iter().map(|i| i.name.as_str()).collect();
    let role = |key: &str, r: &str, errors: &mut Vec<ConfigError>| match RoleName::new(r) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(ConfigError::new(key.to_string(), e.to_string()));
            None
        }
    };

    let mut grants = Vec::new();
    for (i, g) in raw.grants.into_iter().enumerate() {
        let key = format!("policy.grants[{i}]");
        if g.group.trim().is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.group"),
                "must not be empty",
            ));
        }
        if g.roles.is_empty() {
            errors.push(ConfigError::new(
                format!("{key}.roles"),
                "give at least one role",
            ));
        }
        let roles = g
            .roles
            .iter()
            .filter_map(|r| role(&format!("{key}.roles"), r, errors))
            .collect();
        let instances = selector(&known, format!("{key}.instances"), g.instances, errors);
        grants.push(Grant {
            group: GroupName(g.group),
            roles,
            instances,
        });
    }
    let scope_groups = raw
        .scope
        .groups
        .into_iter()
        .map(|g| (GroupName(g), InstanceSelector::default()))
        .collect();
    let default_roles = raw
        .scope
        .default_roles
        .iter()
        .filter_map(|r| role("policy.scope.default_roles", r, errors))
        .collect();

    let mut roles = Vec::new();
    for (name, r) in raw.roles {
        let key = format!("policy.roles.{name}");
        if BUILTIN_ROLES.contains(&name.as_str()) {
            errors.push(ConfigError::new(
                key.clone(),
                "is a built-in Airflow role; define custom roles only",
            ));
            continue;
        }
        let Some(role_name) = role(&key, &name, errors) else {
            continue;
        };
        let mut permissions = dag_permissions(&r.dags);
        for (i, p) in r.permissions.into_iter().enumerate() {
            if p.action.trim().is_empty() || p.resource.trim().is_empty() {
                errors.push(ConfigError::new(
                    format!("{key}.permissions[{i}]"),
                    "action and resource must not be empty",
                ));
            }
            permissions.insert(Permission::new(p.action, p.resource));
        }
        if permissions.is_empty() {
            errors.push(ConfigError::new(
                key.clone(),
                "grants no permission; add `dags` or `permissions`",
            ));
        }
        let instances = selector(&known, format!("{key}.instances"), r.instances, errors);
        roles.push(RoleSpec {
            name: role_name,
            permissions,
            instances,
        });
    }

    let mut protected = BTreeSet::new();
    for u in raw.protected.usernames {
        match Username::new(u) {
            Ok(u) => {
                protected.insert(u);
            }
            Err(e) => errors.push(ConfigError::new(
                "policy.protected.usernames",
                e.to_string(),
            )),
        }
    }

    let mut service_accounts = Vec::new();
    for (i, s) in raw.service_accounts.into_iter().enumerate() {
        let key = format!("policy.service_accounts[{i}]");
        let username = Username::new(s.username)
            .map_err(|e| errors.push(ConfigError::new(format!("{key}.username"), e.to_string())))
            .ok();
        if !s.email.contains('@') {
            errors.push(ConfigError::new(
                format!("{key}.email"),
                "must be an email address (Airflow requires one)",
            ));
        }
        let roles = s
            .roles
            .iter()
            .filter_map(|r| role(&format!("{key}.roles"), r, errors))
            .collect();
        let instances = selector(&known, format!("{key}.instances"), s.instances, errors);
        if let Some(username) = username {
            if protected.contains(&username) {
                errors.push(ConfigError::new(
                    format!("{key}.username"),
                    "is also protected; pick one",
                ));
            }
            service_accounts.push(ServiceAccount {
                username,
                email: s.email,
                roles,
                instances,
            });
        }
    }

    let delete_after_secs = match raw.leavers.delete_after_days {
        None => None,
        Some(days) if days.is_nan() || days <= 0.0 || !days.is_finite() => {
            errors.push(ConfigError::new(
                "policy.leavers.delete_after_days",
                "must be a positive number of days",
            ));
            None
        }
        Some(days) => {
            let secs = (days * 86_400.0).round() as i64;
            for inst in instances {
                let min = i64::try_from(inst.min_delete_after().as_secs()).unwrap_or(i64::MAX);
                if secs < min {
                    errors.push(ConfigError::new(
                        "policy.leavers.delete_after_days",
                        format!(
                            "must be at least {min} s on instance `{}` (token lifetime {} s + jwt leeway {} s + fab cache ttl {} s + margin {} s): a deleted user's id can be reused while its token is still accepted",
                            inst.name,
                            inst.token_lifetime.as_secs(),
                            inst.jwt_leeway.as_secs(),
                            inst.fab_cache_ttl.as_secs(),
                            crate::ID_REUSE_MARGIN.as_secs(),
                        ),
                    ));
                }
            }
            Some(secs)
        }
    };

    let access = crate::access::validate(raw.access, &known, errors);

    let d = SafetyRails::default();
    let safety = SafetyRails {
        max_deprovisions: raw.safety.max_deprovisions.unwrap_or(d.max_deprovisions),
        max_deprovision_fraction: raw
            .safety
            .max_deprovision_fraction
            .unwrap_or(d.max_deprovision_fraction),
        max_deprovisions_per_hour: match raw.safety.max_deprovisions_per_hour {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_deprovisions_per_hour,
        },
        min_directory_ratio: raw
            .safety
            .min_directory_ratio
            .unwrap_or(d.min_directory_ratio),
    };
    for (k, v) in [
        ("max_deprovision_fraction", safety.max_deprovision_fraction),
        ("min_directory_ratio", safety.min_directory_ratio),
    ] {
        if !(0.0..=1.0).contains(&v) {
            errors.push(ConfigError::new(
                format!("policy.safety.{k}"),
                "must be between 0 and 1",
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Policy {
        username: UsernameRule {
            source: raw.usernames.from,
            prefix: raw.usernames.prefix,
            lowercase: raw.usernames.lowercase,
        },
        grants,
        scope_groups,
        default_roles,
        roles,
        protected,
        service_accounts,
        leavers: LeaverRule { delete_after_secs },
        safety,
        access,
    })
}

#[cfg(test)]
mod tests {
    use crate::{load_str, LoadError};
    use airlock_core::Permission;
    use std::path::Path;

    fn load(config: &str, policy: &str) -> Result<crate::Config, Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("policy.toml"), policy).expect("write");
        let vars = vec![("PW".to_string(), "x".to_string())];
        load_str(config, &dir.path().join("airlock.toml"), &vars).map_err(|e| match e {
            LoadError::Invalid { errors, .. } => errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        })
    }

    const CONFIG: &str = "policy = \"policy.toml\"\n[instances.prod]\nurl = \"http://127.0.0.1:1\"\nusername = \"airlock\"\npassword = { env = \"PW\" }\nlabels = { env = \"prod\" }\n";

    #[test]
    fn the_dag_shorthand_expands_to_per_dag_permissions() {
        let c = load(
            CONFIG,
            "[roles.marketing]\ndags = { read = [\"m1\"], trigger = [\"m1\"] }\n",
        )
        .expect("valid");
        let p = c.policy.expect("policy");
        assert_eq!(
            p.roles[0].permissions,
            [
                Permission::new("can_read", "DAG:m1"),
                Permission::new("can_read", "DAG Run:m1"),
                Permission::new("can_create", "DAG Run:m1"),
            ]
            .into()
        );
    }

    #[test]
    fn policy_errors_carry_their_key_paths() {
        let errs = load(
            CONFIG,
            "[[grants]]\ngroup = \"g\"\nroles = []\ninstances = { names = [\"nope\"] }\n[roles.Admin]\npermissions = []\n[leavers]\ndelete_after_days = 0.5\n[safety]\nmin_directory_ratio = 2.0\n",
        )
        .expect_err("invalid");
        let joined = errs.join("\n");
        for needle in [
            "policy.grants[0].roles: give at least one role",
            "policy.grants[0].instances.names: no instance named `nope`",
            "policy.roles.Admin: is a built-in Airflow role",
            "policy.leavers.delete_after_days: must be at least 86500 s on instance `prod` (token lifetime 86400 s + jwt leeway 10 s + fab cache ttl 30 s + margin 60 s)",
            "policy.safety.min_directory_ratio",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
    }

    #[test]
    fn access_rules_load_with_their_defaults() {
        let c = load(
            CONFIG,
            "[access]\nadmins = [\"gov\"]\n[[access.rules]]\nroles = [\"Admin\"]\ninstances = { labels = { env = \"prod\" } }\napprovers = { groups = [\"sre\"] }\nmax_duration = \"4h\"\n[[access.rules]]\nroles = [\"Viewer\"]\napprovals = 0\nmax_duration = \"30m\"\nreason_required = false\n",
        )
        .expect("valid");
        let access = c.policy.expect("policy").access;
        assert_eq!(access.admins.len(), 1);
        let (admin, viewer) = (&access.rules[0], &access.rules[1]);
        assert_eq!(
            (admin.approvals, admin.max_secs, admin.default_secs),
            (1, 14_400, 3600)
        );
        assert_eq!((admin.pending_secs, admin.reason_required), (86_400, true));
        assert!(admin.requesters.is_empty(), "anyone may ask by default");
        assert_eq!(
            (viewer.approvals, viewer.max_secs, viewer.default_secs),
            (0, 1800, 1800)
        );
    }

    #[test]
    fn access_rule_errors_carry_their_key_paths() {
        let errs = load(
            CONFIG,
            "[[access.rules]]\nroles = []\ninstances = { names = [\"nope\"] }\n[[access.rules]]\nroles = [\"Op\"]\nmax_duration = \"1h\"\ndefault_duration = \"2h\"\npending_for = \"soon\"\napprovers = { groups = [\"\"] }\n[[access.rules]]\nroles = [\"Op\"]\nmax_duration = \"32d\"\napprovers = { people = [\"lead@example.com\"] }\napprovals = 11\n",
        )
        .expect_err("invalid");
        let joined = errs.join("\n");
        for needle in [
            "policy.access.rules[0].roles: give at least one role",
            "policy.access.rules[0].instances.names: no instance named `nope`",
            "policy.access.rules[0].approvers: name the groups or people who approve",
            "policy.access.rules[1].default_duration: must not be longer than max_duration",
            "policy.access.rules[1].pending_for: `soon` is not a duration",
            "policy.access.rules[1].approvers.groups: group names must not be empty",
            "policy.access.rules[2].max_duration: must be at most 31d",
            "policy.access.rules[2].approvals: must be at most 10",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        let unknown = load(
            CONFIG,
            "[[access.rules]]\nroles = [\"Op\"]\napprover = \"x\"\n",
        )
        .expect_err("unknown key");
        assert!(
            unknown.join("\n").contains("policy.access.rules[0]"),
            "{unknown:?}"
        );
    }

    fn with_instance(extra: &str) -> String {
        format!("policy = \"policy.toml\"\n[instances.prod]\nurl = \"http://127.0.0.1:1\"\nusername = \"airlock\"\npassword = {{ env = \"PW\" }}\n{extra}\n")
    }

    #[test]
    fn deletion_waits_for_token_lifetime_leeway_cache_and_margin() {
        // 86300 + 10 + 30 + 60 = 86400 s: one day is exactly enough.
        let c = with_instance("token_lifetime_secs = 86300");
        let p = load(&c, "[leavers]\ndelete_after_days = 1\n").expect("exactly the minimum");
        assert_eq!(
            p.policy.expect("policy").leavers.delete_after_secs,
            Some(86_400)
        );
        assert_eq!(
            p.instances[0].min_delete_after(),
            std::time::Duration::from_secs(86_400)
        );
        // One more second of leeway, or of cache, and one day is too short.
        for extra in [
            "token_lifetime_secs = 86300\njwt_leeway_secs = 11",
            "token_lifetime_secs = 86300\nfab_cache_ttl_secs = 31",
            "token_lifetime_secs = 86301",
        ] {
            let errs =
                load(&with_instance(extra), "[leavers]\ndelete_after_days = 1\n").expect_err(extra);
            assert!(
                errs.iter().any(|e| e.starts_with(
                    "policy.leavers.delete_after_days: must be at least 86401 s on instance `prod`"
                )),
                "{extra}: {errs:?}"
            );
        }
        // What the old check allowed (lifetime + 1 s) is refused now.
        let errs = load(
            &with_instance("token_lifetime_secs = 86399"),
            "[leavers]\ndelete_after_days = 1\n",
        )
        .expect_err("lifetime + 1 s");
        assert!(errs[0].contains("must be at least 86499 s"), "{errs:?}");
    }

    #[test]
    fn min_delete_after_adds_every_window_and_the_margin() {
        use std::time::Duration as D;
        assert_eq!(
            crate::min_delete_after(D::from_secs(3600), D::from_secs(10), D::from_secs(30)),
            D::from_secs(3700)
        );
        assert_eq!(
            crate::min_delete_after(D::from_secs(1), D::ZERO, D::ZERO),
            D::from_secs(1) + crate::ID_REUSE_MARGIN
        );
        assert_eq!(
            crate::min_delete_after(D::MAX, D::from_secs(10), D::from_secs(30)),
            D::MAX,
            "saturates"
        );
    }

    #[test]
    fn an_unknown_policy_key_is_named() {
        let errs =
            load(CONFIG, "[[grants]]\ngroup = \"g\"\nrole = [\"Op\"]\n").expect_err("invalid");
        assert!(
            errs[0].contains("policy.grants[0]") && errs[0].contains("unknown field `role`"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_missing_policy_file_is_reported() {
        let vars: Vec<(String, String)> = vec![("PW".into(), "x".into())];
        let errs =
            load_str(CONFIG, Path::new("/nonexistent/airlock.toml"), &vars).expect_err("invalid");
        assert!(
            errs.to_string()
                .contains("policy: cannot read /nonexistent/policy.toml"),
            "{errs}"
        );
    }
}
