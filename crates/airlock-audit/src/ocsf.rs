//! How audit events map onto the Open Cybersecurity Schema Framework (OCSF 1.8.0), for shipping
//! to a SIEM: the classification ([`mapping`], [`status_id`]) and the encoder ([`encode`]),
//! checked against the vendored 1.8.0 schema by `tests/ocsf_schema.rs` for every operation.
//!
//! Account operations are OCSF **Account Change** (`class_uid` 3001, category IAM); role
//! operations and role membership are **Group Management** (3006), an Airflow role being the
//! OCSF group; just-in-time grants are **User Access Management** (3005: a grant's start is
//! Assign Privileges, its end Revoke Privileges, the other steps of a request Other); SCIM
//! writes and API token changes are **API Activity** (6003, Create/Update/Delete); logins seen
//! between two snapshots, and the use of a break-glass account (severity High), are
//! **Authentication** (3002, Logon) with the window they fell in as `start_time`/`end_time`
//! (derived, and the `message` says so). Run-level
//! events (`run.*`, `plan.saved`, `rail.refused`, `rail.release`) are airlock's own
//! bookkeeping and have no class here.
//!
//! | airlock | OCSF |
//! |---|---|
//! | `operation` | `class_uid` + `activity_id` (table below); also `metadata.event_code` |
//! | `target` `Account{username}` | `user.name` |
//! | `target` `Role{name}` | `group.name` (`group.type` = "airflow role") |
//! | `actor` | `actor.user.name` (`actor.user.type_id` 3 System for [`crate::ACTOR_AIRLOCK`], 1 User otherwise) |
//! | `instance` | `user.domain` / `group.domain` (the Airflow instance the account or role is defined in), and `device.name` |
//! | `outcome` | `status_id` ([`status_id`]); `Failed{error}` → `status_detail` = error; `Refused{rail}` → `status_detail` = "refused by safety rail {rail}" |
//! | `at` | `time` (epoch milliseconds) |
//! | `id` | `metadata.uid` |
//! | `seq` | `metadata.sequence` |
//! | `run_id` | `metadata.correlation_uid` |
//! | `reason` | `message` |
//! | `before`, `after` | `unmapped.before`, `unmapped.after` (and the source of per-role expansion) |
//! | `prev_hash`, `hash` | `unmapped.prev_hash`, `unmapped.hash` (so the chain can be re-verified from the SIEM) |
//! | (fixed) | `metadata.product.name` = "airlock", `metadata.version` = "1.8.0" |
//!
//! | operation | class | activity |
//! |---|---|---|
//! | `account.create` | 3001 | 1 Create |
//! | `account.reactivate` | 3001 | 2 Enable |
//! | `account.suspend` | 3001 | 5 Disable |
//! | `account.delete` | 3001 | 6 Delete |
//! | `account.update_profile` | 3001 | 99 Other |
//! | `account.set_roles` | 3006 | one event per role: 3 Add User for each role in `after` not in `before`, 4 Remove User for each one dropped |
//! | `role.create` | 3006 | 6 Create |
//! | `role.update` | 3006 | one event per permission: 1 Assign Privileges for each added, 2 Revoke Privileges for each removed |
//! | `role.delete` | 3006 | 5 Delete |
//! | `access_request.approve` completing a grant, `access_request.auto_approve` | 3005 | 1 Assign Privileges |
//! | `access_grant.expire`, `access_grant.revoke` | 3005 | 2 Revoke Privileges |
//! | `access_request.create\|deny\|cancel\|lapse`, a partial approval, `access_grant.expiring` | 3005 | 99 Other |
//! | `account.login`, `break_glass.use` (severity 4 High) | 3002 | 1 Logon (`start_time`/`end_time`: the snapshots' window; `count`: logins, when known; `time`: the last login) |
//! | `scim_user.create`, `scim_group.create`, `scim_token.create`, `api_token.create` | 6003 | 1 Create |
//! | `scim_*.patch`, `scim_*.replace`, `scim_token.rotate` | 6003 | 3 Update |
//! | `scim_*.delete`, `scim_token.revoke`, `api_token.revoke` | 6003 | 4 Delete |
//! | `run.start`, `run.finish`, `rail.refused`, `rail.release`, `plan.saved` | none | |
//!
//! `Planned` events describe changes not made; an encoder should ship them only if asked,
//! with `status_id` 99 Other and `status` "planned".

use crate::event::{AuditEvent, Outcome, Target};
use crate::operation as op;
use crate::operation::{
    ACCOUNT_ADOPT, ACCOUNT_CREATE, ACCOUNT_DELETE, ACCOUNT_REACTIVATE, ACCOUNT_SET_ROLES,
    ACCOUNT_SUSPEND, ACCOUNT_UPDATE_PROFILE, ROLE_CREATE, ROLE_DELETE, ROLE_UPDATE,
};
use serde_json::{json, Map, Value};

/// The OCSF version events are encoded in.
pub const OCSF_VERSION: &str = "1.8.0";
/// OCSF class Account Change.
pub const ACCOUNT_CHANGE: u32 = 3001;
/// OCSF class Authentication.
pub const AUTHENTICATION: u32 = 3002;
/// OCSF class User Access Management.
pub const USER_ACCESS: u32 = 3005;
/// OCSF class Group Management.
pub const GROUP_MANAGEMENT: u32 = 3006;
/// OCSF class API Activity.
pub const API_ACTIVITY: u32 = 6003;
/// OCSF's "Other" activity.
pub const OTHER: u32 = 99;

/// Account Change activity ids used by airlock.
pub mod account_activity {
    /// Create.
    pub const CREATE: u32 = 1;
    /// Enable.
    pub const ENABLE: u32 = 2;
    /// Disable.
    pub const DISABLE: u32 = 5;
    /// Delete.
    pub const DELETE: u32 = 6;
    /// Other.
    pub const OTHER: u32 = 99;
}

/// Group Management activity ids used by airlock.
pub mod group_activity {
    /// Assign Privileges.
    pub const ASSIGN_PRIVILEGES: u32 = 1;
    /// Revoke Privileges.
    pub const REVOKE_PRIVILEGES: u32 = 2;
    /// Add User.
    pub const ADD_USER: u32 = 3;
    /// Remove User.
    pub const REMOVE_USER: u32 = 4;
    /// Delete.
    pub const DELETE: u32 = 5;
    /// Create.
    pub const CREATE: u32 = 6;
}

/// The OCSF event(s) one audit event becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Exactly one event of this class and activity.
    One {
        /// `class_uid`.
        class_uid: u32,
        /// `activity_id`.
        activity_id: u32,
    },
    /// Group Management: Add User per role gained, Remove User per role lost (`before` and
    /// `after` role lists).
    PerRoleMembership,
    /// Group Management: Assign Privileges per permission gained, Revoke Privileges per
    /// permission lost (`before` and `after` permission lists).
    PerRolePrivilege,
    /// User Access Management: Assign Privileges when the approval completes the grant (the
    /// request is approved after it), else Other.
    GrantApproval,
    /// Not an account or group change: not shipped as 3001/3006.
    None,
}

/// How an operation maps onto OCSF.
pub fn mapping(operation: &str) -> Mapping {
    let one = |class_uid, activity_id| Mapping::One {
        class_uid,
        activity_id,
    };
    match operation {
        op::ACCESS_REQUEST_AUTO_APPROVE => one(USER_ACCESS, 1),
        op::ACCESS_REQUEST_APPROVE => Mapping::GrantApproval,
        op::ACCESS_GRANT_EXPIRE | op::ACCESS_GRANT_REVOKE => one(USER_ACCESS, 2),
        op::ACCESS_REQUEST_CREATE
        | op::ACCESS_REQUEST_DENY
        | op::ACCESS_REQUEST_CANCEL
        | op::ACCESS_REQUEST_LAPSE
        | op::ACCESS_GRANT_EXPIRING => one(USER_ACCESS, OTHER),
        op::SCIM_USER_CREATE
        | op::SCIM_GROUP_CREATE
        | op::SCIM_TOKEN_CREATE
        | op::API_TOKEN_CREATE => one(API_ACTIVITY, 1),
        op::SCIM_USER_PATCH
        | op::SCIM_USER_REPLACE
        | op::SCIM_GROUP_PATCH
        | op::SCIM_GROUP_REPLACE
        | op::SCIM_TOKEN_ROTATE => one(API_ACTIVITY, 3),
        op::SCIM_USER_DELETE
        | op::SCIM_GROUP_DELETE
        | op::SCIM_TOKEN_REVOKE
        | op::API_TOKEN_REVOKE => one(API_ACTIVITY, 4),
        op::ACCOUNT_LOGIN | op::BREAK_GLASS_USE => one(AUTHENTICATION, 1),
        ACCOUNT_CREATE => one(ACCOUNT_CHANGE, account_activity::CREATE),
        // Taken under management: no change in Airflow, but a governance decision on the account.
        ACCOUNT_ADOPT => one(ACCOUNT_CHANGE, account_activity::OTHER),
        ACCOUNT_REACTIVATE => one(ACCOUNT_CHANGE, account_activity::ENABLE),
        ACCOUNT_SUSPEND => one(ACCOUNT_CHANGE, account_activity::DISABLE),
        ACCOUNT_DELETE => one(ACCOUNT_CHANGE, account_activity::DELETE),
        ACCOUNT_UPDATE_PROFILE => one(ACCOUNT_CHANGE, account_activity::OTHER),
        ACCOUNT_SET_ROLES => Mapping::PerRoleMembership,
        ROLE_CREATE => one(GROUP_MANAGEMENT, group_activity::CREATE),
        ROLE_UPDATE => Mapping::PerRolePrivilege,
        ROLE_DELETE => one(GROUP_MANAGEMENT, group_activity::DELETE),
        _ => Mapping::None,
    }
}

/// OCSF `status_id`: 1 Success, 2 Failure (a failed attempt, or a safety rail's refusal),
/// 99 Other (planned, not done).
pub fn status_id(outcome: &Outcome) -> u32 {
    match outcome {
        Outcome::Succeeded => 1,
        Outcome::Failed { .. } | Outcome::Refused { .. } => 2,
        Outcome::Planned => 99,
    }
}

/// `(category_uid, category_name, class_name)` of a class airlock emits.
fn class_of(class_uid: u32) -> (u32, &'static str, &'static str) {
    match class_uid {
        ACCOUNT_CHANGE => (3, "Identity & Access Management", "Account Change"),
        AUTHENTICATION => (3, "Identity & Access Management", "Authentication"),
        USER_ACCESS => (3, "Identity & Access Management", "User Access Management"),
        GROUP_MANAGEMENT => (3, "Identity & Access Management", "Group Management"),
        _ => (6, "Application Activity", "API Activity"),
    }
}

/// The schema's caption of an activity of a class airlock emits.
fn activity_name(class_uid: u32, activity_id: u32) -> &'static str {
    match (class_uid, activity_id) {
        (_, OTHER) => "Other",
        (ACCOUNT_CHANGE, 1) => "Create",
        (AUTHENTICATION, 1) => "Logon",
        (ACCOUNT_CHANGE, 2) => "Enable",
        (ACCOUNT_CHANGE, 5) => "Disable",
        (ACCOUNT_CHANGE, 6) => "Delete",
        (USER_ACCESS | GROUP_MANAGEMENT, 1) => "Assign Privileges",
        (USER_ACCESS | GROUP_MANAGEMENT, 2) => "Revoke Privileges",
        (GROUP_MANAGEMENT, 3) => "Add User",
        (GROUP_MANAGEMENT, 4) => "Remove User",
        (GROUP_MANAGEMENT, 5) => "Delete",
        (GROUP_MANAGEMENT, 6) => "Create",
        (API_ACTIVITY, 1) => "Create",
        (API_ACTIVITY, 3) => "Update",
        (API_ACTIVITY, 4) => "Delete",
        _ => "Unknown",
    }
}

/// The OCSF user object of an audit actor: `airlock` is a system account, `scim:CLIENT` an
/// identity provider's service, anyone else a person.
fn actor(actor: &str) -> Value {
    let (type_id, kind) = if actor == crate::ACTOR_AIRLOCK {
        (3, "System")
    } else if actor.starts_with("scim:") {
        (99, "Service")
    } else {
        (1, "User")
    };
    json!({ "user": { "name": actor, "type_id": type_id, "type": kind } })
}

/// A list of strings in `v[key]` (role names, or permissions as `action on resource`).
fn names(v: Option<&Value>, key: &str) -> Vec<String> {
    let list = v.and_then(|v| v.get(key)).and_then(Value::as_array);
    list.map(|l| {
        l.iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => Some(format!(
                    "{} on {}",
                    o.get("action").and_then(Value::as_str).unwrap_or("?"),
                    o.get("resource").and_then(Value::as_str).unwrap_or("?")
                )),
                _ => None,
            })
            .collect()
    })
    .unwrap_or_default()
}

/// What every event of `e` shares, for class `class_uid` and activity `activity_id`.
fn base(e: &AuditEvent, class_uid: u32, activity_id: u32) -> Map<String, Value> {
    let (category_uid, category_name, class_name) = class_of(class_uid);
    let activity = activity_name(class_uid, activity_id);
    let (status, severity_id, severity) = match e.outcome {
        Outcome::Succeeded if e.operation == op::BREAK_GLASS_USE => ("Success", 4, "High"),
        Outcome::Succeeded => ("Success", 1, "Informational"),
        Outcome::Failed { .. } | Outcome::Refused { .. } => ("Failure", 3, "Medium"),
        Outcome::Planned => ("Other", 1, "Informational"),
    };
    let mut metadata = json!({
        "product": { "name": "airlock", "vendor_name": "airlock", "version": env!("CARGO_PKG_VERSION") },
        "version": OCSF_VERSION,
        "uid": e.id,
        "sequence": e.seq,
        "event_code": e.operation,
        "log_name": "airlock audit trail",
    });
    if let Some(run) = &e.run_id {
        metadata["correlation_uid"] = json!(run);
    }
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    put("class_uid", json!(class_uid));
    put("class_name", json!(class_name));
    put("category_uid", json!(category_uid));
    put("category_name", json!(category_name));
    put("activity_id", json!(activity_id));
    put("activity_name", json!(activity));
    put(
        "type_uid",
        json!(u64::from(class_uid) * 100 + u64::from(activity_id)),
    );
    put("type_name", json!(format!("{class_name}: {activity}")));
    put("time", json!(e.at.timestamp_millis()));
    put("severity_id", json!(severity_id));
    put("severity", json!(severity));
    put("status_id", json!(status_id(&e.outcome)));
    put("status", json!(status));
    match &e.outcome {
        Outcome::Failed { error } => put("status_detail", json!(error)),
        Outcome::Refused { rail } => put(
            "status_detail",
            json!(format!("refused by safety rail {rail}")),
        ),
        Outcome::Planned => put("status_detail", json!("planned, not made")),
        Outcome::Succeeded => {}
    }
    if let Some(reason) = &e.reason {
        put("message", json!(reason));
    }
    put("metadata", metadata);
    put("actor", actor(&e.actor));
    let mut unmapped = json!({ "prev_hash": e.prev_hash, "hash": e.hash });
    for (k, v) in [
        ("instance", e.instance.as_ref().map(|i| json!(i))),
        (
            "target",
            e.target.as_ref().and_then(|t| serde_json::to_value(t).ok()),
        ),
        ("before", e.before.clone()),
        ("after", e.after.clone()),
    ] {
        if let Some(v) = v {
            unmapped[k] = v;
        }
    }
    put("unmapped", unmapped);
    out
}

fn account_name(e: &AuditEvent) -> String {
    match &e.target {
        Some(Target::Account { username }) => username.clone(),
        _ => "unknown".into(),
    }
}

fn role_name(e: &AuditEvent) -> String {
    match &e.target {
        Some(Target::Role { name }) => name.clone(),
        _ => "unknown".into(),
    }
}

fn with_domain(mut v: Value, e: &AuditEvent) -> Value {
    if let Some(i) = &e.instance {
        v["domain"] = json!(i);
    }
    v
}

/// The OCSF events of one audit event: none for airlock's own bookkeeping (`run.*`,
/// `rail.*`, `plan.saved`); one per role gained or lost for `account.set_roles`, one per
/// permission for `role.update`; one otherwise.
pub fn encode(e: &AuditEvent) -> Vec<Value> {
    let user = || with_domain(json!({ "name": account_name(e) }), e);
    let group = || with_domain(json!({ "name": role_name(e), "type": "Airflow role" }), e);
    let finish = |mut m: Map<String, Value>, extra: Vec<(&str, Value)>| {
        for (k, v) in extra {
            m.insert(k.to_owned(), v);
        }
        Value::Object(m)
    };
    match mapping(&e.operation) {
        Mapping::None => Vec::new(),
        Mapping::One {
            class_uid,
            activity_id,
        } => {
            let m = base(e, class_uid, activity_id);
            let extra = match class_uid {
                ACCOUNT_CHANGE => vec![("user", user())],
                AUTHENTICATION => authentication(e, user()),
                GROUP_MANAGEMENT => vec![("group", group())],
                USER_ACCESS => user_access(e),
                _ => api_activity(e),
            };
            vec![finish(m, extra)]
        }
        Mapping::GrantApproval => {
            let completed = e
                .after
                .as_ref()
                .and_then(|a| a.pointer("/state/state"))
                .and_then(Value::as_str)
                == Some("approved");
            let m = base(e, USER_ACCESS, if completed { 1 } else { OTHER });
            vec![finish(m, user_access(e))]
        }
        Mapping::PerRoleMembership => {
            let before = names(e.before.as_ref(), "roles");
            let after = names(e.after.as_ref(), "roles");
            let gained = after.iter().filter(|r| !before.contains(r)).map(|r| (3, r));
            let lost = before.iter().filter(|r| !after.contains(r)).map(|r| (4, r));
            gained
                .chain(lost)
                .map(|(activity, r)| {
                    let g = with_domain(json!({ "name": r, "type": "Airflow role" }), e);
                    finish(
                        base(e, GROUP_MANAGEMENT, activity),
                        vec![("group", g), ("user", user())],
                    )
                })
                .collect()
        }
        Mapping::PerRolePrivilege => {
            let added = names(e.after.as_ref(), "add").into_iter().map(|p| (1, p));
            let removed = names(e.before.as_ref(), "remove")
                .into_iter()
                .map(|p| (2, p));
            added
                .chain(removed)
                .map(|(activity, p)| {
                    finish(
                        base(e, GROUP_MANAGEMENT, activity),
                        vec![("group", group()), ("privileges", json!([p]))],
                    )
                })
                .collect()
        }
    }
}

/// Epoch milliseconds of an RFC 3339 time at `pointer` in `after`.
fn after_time(e: &AuditEvent, pointer: &str) -> Option<i64> {
    let text = e.after.as_ref()?.pointer(pointer)?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Authentication's user, service (the Airflow instance), the window the logins fell in,
/// their count, and the last login as the event's time.
fn authentication(e: &AuditEvent, user: Value) -> Vec<(&'static str, Value)> {
    let mut service = json!({ "name": "Apache Airflow" });
    if let Some(i) = &e.instance {
        service["uid"] = json!(i);
    }
    let mut out = vec![("user", user), ("service", service)];
    if let Some(t) = after_time(e, "/window/from") {
        out.push(("start_time", json!(t)));
    }
    if let Some(t) = after_time(e, "/window/to") {
        out.push(("end_time", json!(t)));
    }
    if let Some(t) = after_time(e, "/last_login") {
        out.push(("time", json!(t)));
    }
    if let Some(n) = e
        .after
        .as_ref()
        .and_then(|a| a.get("logins"))
        .and_then(Value::as_u64)
    {
        out.push(("count", json!(n)));
    }
    out
}

/// User Access Management's user (the requester) and privileges (each role on each instance).
fn user_access(e: &AuditEvent) -> Vec<(&'static str, Value)> {
    let after = e.after.as_ref();
    let requester = after
        .and_then(|a| a.get("requester"))
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let roles = names(after, "roles");
    let instances = names(after, "instances");
    let privileges: Vec<String> = roles
        .iter()
        .flat_map(|r| instances.iter().map(move |i| format!("{r} on {i}")))
        .collect();
    vec![
        ("user", json!({ "uid": requester, "name": requester })),
        ("privileges", json!(privileges)),
    ]
}

/// API Activity's api (the operation), actor, and source: the SCIM client or the operator.
fn api_activity(e: &AuditEvent) -> Vec<(&'static str, Value)> {
    let service = if e.operation.starts_with("scim_") {
        "airlock SCIM"
    } else {
        "airlock governance API"
    };
    let mut out = vec![
        (
            "api",
            json!({ "operation": e.operation, "service": { "name": service } }),
        ),
        ("src_endpoint", json!({ "name": e.actor })),
    ];
    match &e.target {
        Some(Target::ScimResource { resource_type, id }) => {
            out.push(("resources", json!([{ "uid": id, "type": resource_type }])));
        }
        Some(Target::ScimClient { client }) => {
            out.push((
                "resources",
                json!([{ "name": client, "type": "SCIM client token" }]),
            ));
        }
        Some(Target::ApiToken { name }) => {
            out.push(("resources", json!([{ "name": name, "type": "API token" }])));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::OPERATIONS;

    #[test]
    fn every_change_has_an_ocsf_mapping_and_run_events_have_none() {
        for op in OPERATIONS {
            let mapped = mapping(op) != Mapping::None;
            let bookkeeping =
                op.starts_with("run.") || op.starts_with("rail.") || op.starts_with("plan.");
            assert_eq!(mapped, !bookkeeping, "{op}");
        }
        assert_eq!(
            mapping(ACCOUNT_SUSPEND),
            Mapping::One {
                class_uid: 3001,
                activity_id: 5
            }
        );
        assert_eq!(
            mapping(ROLE_CREATE),
            Mapping::One {
                class_uid: 3006,
                activity_id: 6
            }
        );
        assert_eq!(mapping("no.such_op"), Mapping::None);
    }

    #[test]
    fn refusals_and_failures_are_failures_and_plans_are_other() {
        assert_eq!(status_id(&Outcome::Succeeded), 1);
        assert_eq!(status_id(&Outcome::Failed { error: "x".into() }), 2);
        assert_eq!(status_id(&Outcome::Refused { rail: "x".into() }), 2);
        assert_eq!(status_id(&Outcome::Planned), 99);
    }
}
