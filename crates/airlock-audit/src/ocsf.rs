//! How audit events map onto the Open Cybersecurity Schema Framework (OCSF 1.1), for shipping
//! to a SIEM. Only the classification lives here ([`mapping`], [`status_id`]); the encoder and
//! the sinks come later.
//!
//! Account operations are OCSF **Account Change** (`class_uid` 3001, category IAM); role
//! operations and role membership are **Group Management** (3006), an Airflow role being the
//! OCSF group. Run-level events (`run.*`, `plan.saved`, `rail.refused`, `rail.release`) are airlock's own
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
//! | (fixed) | `metadata.product.name` = "airlock", `metadata.version` = "1.1.0" |
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
//! | `run.start`, `run.finish`, `rail.refused`, `rail.release`, `plan.saved` | none | |
//!
//! `Planned` events describe changes not made; an encoder should ship them only if asked,
//! with `status_id` 99 Other and `status` "planned".

use crate::event::Outcome;
use crate::operation::{
    ACCOUNT_ADOPT, ACCOUNT_CREATE, ACCOUNT_DELETE, ACCOUNT_REACTIVATE, ACCOUNT_SET_ROLES,
    ACCOUNT_SUSPEND, ACCOUNT_UPDATE_PROFILE, ROLE_CREATE, ROLE_DELETE, ROLE_UPDATE,
};

/// OCSF class Account Change.
pub const ACCOUNT_CHANGE: u32 = 3001;
/// OCSF class Group Management.
pub const GROUP_MANAGEMENT: u32 = 3006;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::OPERATIONS;

    #[test]
    fn every_account_and_role_operation_has_an_ocsf_mapping_and_run_events_have_none() {
        for op in OPERATIONS {
            let mapped = mapping(op) != Mapping::None;
            let is_change = op.starts_with("account.") || op.starts_with("role.");
            assert_eq!(mapped, is_change, "{op}");
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
