//! The names of the operations an audit event records (`AuditEvent::operation`).
//!
//! Names are `noun.verb`, lowercase, stable: they are part of the hashed contents of every
//! event, appear in exports and are what a SIEM filters on, so an operation is never renamed
//! (a new behaviour gets a new name). [`crate::ocsf::mapping`] says which OCSF activity each
//! one becomes.
//!
//! A safety rail that refuses a single operation is recorded under that operation's own name
//! with [`crate::Outcome::Refused`]; [`RAIL_REFUSED`] is for a refusal that stops a whole run
//! (for example "a directory source has not been read completely yet, so nothing that removes
//! access may run").

/// A person's just-in-time grant was revoked before its end (actor: who; `airlock` when the
/// person left the directory).
pub const ACCESS_GRANT_REVOKE: &str = "access_grant.revoke";
/// A just-in-time grant ran its time; the next plan removes what it added.
pub const ACCESS_GRANT_EXPIRE: &str = "access_grant.expire";
/// A just-in-time grant is about to end (`[access] expiring_notice` before it); webhooks
/// announce it.
pub const ACCESS_GRANT_EXPIRING: &str = "access_grant.expiring";
/// An approver approved a just-in-time access request (`after`: the approvals so far, and the
/// grant's end once the last needed approval came).
pub const ACCESS_REQUEST_APPROVE: &str = "access_request.approve";
/// A request was approved by its rule at once (`reason`: which: no approvals needed, or the
/// requester's auto-approve group).
pub const ACCESS_REQUEST_AUTO_APPROVE: &str = "access_request.auto_approve";
/// The requester withdrew a pending request.
pub const ACCESS_REQUEST_CANCEL: &str = "access_request.cancel";
/// A person asked for roles on instances for a while (`after`: what, for how long, why).
pub const ACCESS_REQUEST_CREATE: &str = "access_request.create";
/// An approver denied a request.
pub const ACCESS_REQUEST_DENY: &str = "access_request.deny";
/// Nobody decided a request within its rule's pending time.
pub const ACCESS_REQUEST_LAPSE: &str = "access_request.lapse";
/// An operator issued a governance API token (`after`: its scopes, person and expiry; never
/// the token).
pub const API_TOKEN_CREATE: &str = "api_token.create";
/// An operator revoked a governance API token.
pub const API_TOKEN_REVOKE: &str = "api_token.revoke";
/// An operator put an existing account under airlock's management (`airlock adopt`); nothing
/// changed in Airflow.
pub const ACCOUNT_ADOPT: &str = "account.adopt";
/// airlock created an account in an Airflow instance.
pub const ACCOUNT_CREATE: &str = "account.create";
/// airlock replaced the roles of an account (`before`/`after` hold the role lists).
pub const ACCOUNT_SET_ROLES: &str = "account.set_roles";
/// airlock changed an account's profile: first/last name, email.
pub const ACCOUNT_UPDATE_PROFILE: &str = "account.update_profile";
/// airlock suspended an account: it can no longer log in, but still exists.
pub const ACCOUNT_SUSPEND: &str = "account.suspend";
/// airlock lifted a suspension: the account can log in again.
pub const ACCOUNT_REACTIVATE: &str = "account.reactivate";
/// airlock deleted an account.
pub const ACCOUNT_DELETE: &str = "account.delete";
/// Logins to an account, derived from two snapshots of its instance (Airflow records none):
/// its `last_login` or `login_count` grew between them. `after`: `window` (`from`, `to`: the
/// two snapshots' times; the logins fell in between), `last_login` (the latest, as Airflow
/// reports it), `logins` (how many, when Airflow counts them) and `derived: true`.
pub const ACCOUNT_LOGIN: &str = "account.login";
/// airlock created a role.
pub const ROLE_CREATE: &str = "role.create";
/// airlock changed a role's permissions (`before`/`after` hold the permission lists).
pub const ROLE_UPDATE: &str = "role.update";
/// airlock deleted a role.
pub const ROLE_DELETE: &str = "role.delete";
/// A run (sync, apply, SCIM push) started.
pub const RUN_START: &str = "run.start";
/// A run finished; its outcome says how.
pub const RUN_FINISH: &str = "run.finish";
/// A safety rail refused to let a whole run go on.
pub const RAIL_REFUSED: &str = "rail.refused";
/// An operator released a deprovision a safety rail had held back (`airlock rails release`);
/// the actor is the operator, the target the account.
pub const RAIL_RELEASE: &str = "rail.release";
/// A protected (break-glass) account was used: a login to it was seen between two
/// snapshots (`after` as for [`ACCOUNT_LOGIN`]). High severity; notification webhooks
/// announce it (`break_glass.used`).
pub const BREAK_GLASS_USE: &str = "break_glass.use";
/// A plan was saved for later review or apply.
pub const PLAN_SAVED: &str = "plan.saved";

/// A SCIM client created a Group (actor `scim:CLIENT`, target the SCIM resource).
pub const SCIM_GROUP_CREATE: &str = "scim_group.create";
/// A SCIM client deleted a Group.
pub const SCIM_GROUP_DELETE: &str = "scim_group.delete";
/// A SCIM client patched a Group (`before`/`after`: name and members added or removed).
pub const SCIM_GROUP_PATCH: &str = "scim_group.patch";
/// A SCIM client replaced a Group (PUT).
pub const SCIM_GROUP_REPLACE: &str = "scim_group.replace";
/// An operator issued a SCIM token to a client (`after`: expiry and group allowance).
pub const SCIM_TOKEN_CREATE: &str = "scim_token.create";
/// An operator revoked a client's SCIM token.
pub const SCIM_TOKEN_REVOKE: &str = "scim_token.revoke";
/// An operator rotated a client's SCIM token (`after`: until when the old one still works).
pub const SCIM_TOKEN_ROTATE: &str = "scim_token.rotate";
/// A SCIM client created a User.
pub const SCIM_USER_CREATE: &str = "scim_user.create";
/// A SCIM client deleted a User.
pub const SCIM_USER_DELETE: &str = "scim_user.delete";
/// A SCIM client patched a User.
pub const SCIM_USER_PATCH: &str = "scim_user.patch";
/// A SCIM client replaced a User (PUT).
pub const SCIM_USER_REPLACE: &str = "scim_user.replace";

/// Every operation name this build knows, sorted.
pub const OPERATIONS: &[&str] = &[
    ACCESS_GRANT_EXPIRE,
    ACCESS_GRANT_EXPIRING,
    ACCESS_GRANT_REVOKE,
    ACCESS_REQUEST_APPROVE,
    ACCESS_REQUEST_AUTO_APPROVE,
    ACCESS_REQUEST_CANCEL,
    ACCESS_REQUEST_CREATE,
    ACCESS_REQUEST_DENY,
    ACCESS_REQUEST_LAPSE,
    ACCOUNT_ADOPT,
    ACCOUNT_CREATE,
    ACCOUNT_DELETE,
    ACCOUNT_LOGIN,
    ACCOUNT_REACTIVATE,
    ACCOUNT_SET_ROLES,
    ACCOUNT_SUSPEND,
    ACCOUNT_UPDATE_PROFILE,
    API_TOKEN_CREATE,
    API_TOKEN_REVOKE,
    BREAK_GLASS_USE,
    PLAN_SAVED,
    RAIL_REFUSED,
    RAIL_RELEASE,
    ROLE_CREATE,
    ROLE_DELETE,
    ROLE_UPDATE,
    RUN_FINISH,
    RUN_START,
    SCIM_GROUP_CREATE,
    SCIM_GROUP_DELETE,
    SCIM_GROUP_PATCH,
    SCIM_GROUP_REPLACE,
    SCIM_TOKEN_CREATE,
    SCIM_TOKEN_REVOKE,
    SCIM_TOKEN_ROTATE,
    SCIM_USER_CREATE,
    SCIM_USER_DELETE,
    SCIM_USER_PATCH,
    SCIM_USER_REPLACE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_sorted_unique_and_dotted_lowercase() {
        let mut sorted = OPERATIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, OPERATIONS);
        for op in OPERATIONS {
            let (noun, verb) = op.split_once('.').expect("noun.verb");
            assert!(!noun.is_empty() && !verb.is_empty(), "{op}");
            assert!(
                op.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{op}"
            );
        }
    }
}
