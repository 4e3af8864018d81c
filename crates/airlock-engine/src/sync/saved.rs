//! Saved plans (`airlock plan --out FILE`, `airlock apply --plan FILE`): sealing a plan with a
//! digest, checking a file before anything else runs, and comparing its operations with the
//! ones computed now.
//!
//! A saved plan is only evidence of what the operator reviewed: what is applied is always the
//! freshly computed plan. A file is refused when it was edited (the digest over its format,
//! fingerprint, instances and operations no longer matches), when it names an instance the
//! configuration does not have, when the inputs changed (the fingerprint, see
//! [`super::fingerprint`]), or when its operations differ from the fresh ones. The digest is
//! unkeyed, so it catches edits, not a forger who recomputes it; the comparison with the fresh
//! operations is what makes a forged file harmless.

use super::Plan;
use airlock_core::plan::{Op, PlannedOp};
use airlock_core::{InstanceName, RoleName};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The format of plans this version saves and accepts.
pub const PLAN_FORMAT: u32 = 2;

/// Why a saved plan file is refused before anything is read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedPlanError {
    /// Saved by another version of airlock.
    #[error(
        "has format {0}, this airlock reads format {PLAN_FORMAT}; run `airlock plan --out` again"
    )]
    Format(u32),
    /// The digest does not match the contents.
    #[error("its digest does not match its contents: the file was edited after `airlock plan` saved it; run `airlock plan --out` again")]
    Digest,
    /// The plan's instance list and its per-instance plans disagree.
    #[error("lists {names} instance(s) but holds {plans} instance plan(s)")]
    Shape {
        /// Entries of `instance_names`.
        names: usize,
        /// Entries of `instances`.
        plans: usize,
    },
    /// An instance the configuration does not have.
    #[error("{at} names instance `{instance}`, which is not configured")]
    UnknownInstance {
        /// `instance_names[N]` or `operation N`.
        at: String,
        /// The name in the file.
        instance: String,
    },
}

#[derive(Serialize)]
struct Sealed<'a> {
    format: u32,
    fingerprint: &'a str,
    directory_people: usize,
    instance_names: &'a [InstanceName],
    ops: Vec<&'a [PlannedOp]>,
}

/// SHA-256 (hex) over what a saved plan claims: its format, fingerprint, instances and
/// operations (with their reasons).
pub fn digest(plan: &Plan) -> String {
    let sealed = Sealed {
        format: plan.format,
        fingerprint: &plan.fingerprint,
        directory_people: plan.directory_people,
        instance_names: &plan.instance_names,
        ops: plan.instances.iter().map(|p| p.ops.as_slice()).collect(),
    };
    // Serializing plain data (strings, numbers, sorted sets) cannot fail.
    let json = serde_json::to_vec(&sealed).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Marks `plan` as saved: sets the format and the digest.
pub fn seal(plan: &mut Plan) {
    plan.format = PLAN_FORMAT;
    plan.digest = digest(plan);
}

/// Checks a plan read from a file, before any lease is taken or anything is read: its format
/// and digest, its shape, and that every instance it names is in `configured`.
pub fn check_file(plan: &Plan, configured: &BTreeSet<&str>) -> Result<(), SavedPlanError> {
    if plan.format != PLAN_FORMAT {
        return Err(SavedPlanError::Format(plan.format));
    }
    if plan.digest != digest(plan) {
        return Err(SavedPlanError::Digest);
    }
    if plan.instance_names.len() != plan.instances.len() {
        return Err(SavedPlanError::Shape {
            names: plan.instance_names.len(),
            plans: plan.instances.len(),
        });
    }
    for (i, name) in plan.instance_names.iter().enumerate() {
        if !configured.contains(name.as_str()) {
            return Err(SavedPlanError::UnknownInstance {
                at: format!("instance_names[{i}]"),
                instance: name.to_string(),
            });
        }
    }
    for (i, op) in plan.ops().enumerate() {
        if !configured.contains(op.instance.as_str()) {
            return Err(SavedPlanError::UnknownInstance {
                at: format!("operation {}", i + 1),
                instance: op.instance.to_string(),
            });
        }
    }
    Ok(())
}

/// The first difference between a saved plan's operations and the fresh plan's, as one line
/// (`None`: they are the same). Operations are compared per instance, in order, by instance
/// and content; reasons are not compared (the fresh ones are what is recorded). Operation
/// numbers count from 1 over the whole saved file, as `airlock plan -o json` lists them.
pub fn first_difference(saved: &Plan, fresh: &Plan) -> Option<String> {
    let mut numbered: BTreeMap<&InstanceName, Vec<(usize, &PlannedOp)>> = BTreeMap::new();
    let mut n = 0usize;
    for (name, p) in saved.instance_names.iter().zip(&saved.instances) {
        let list = numbered.entry(name).or_default();
        for op in &p.ops {
            n += 1;
            list.push((n, op));
        }
    }
    for name in saved.instance_names.iter().skip(saved.instances.len()) {
        numbered.entry(name).or_default();
    }
    // Operations of instances this run does not plan: nothing of them would be applied, but
    // the file does not describe this run.
    for (name, ops) in &numbered {
        if !fresh.instance_names.contains(name) {
            if let Some((i, op)) = ops.first() {
                return Some(format!(
                    "operation {i} ({}) is on an instance this run does not cover",
                    describe(op)
                ));
            }
        }
    }
    let none = Vec::new();
    for (name, p) in fresh.instance_names.iter().zip(&fresh.instances) {
        let saved_ops = numbered.get(name).unwrap_or(&none);
        for (k, fresh_op) in p.ops.iter().enumerate() {
            match saved_ops.get(k) {
                Some((_, s)) if same(s, fresh_op) => {}
                Some((i, s)) => {
                    return Some(format!(
                        "operation {i} ({}) differs from what airlock computes now ({})",
                        describe(s),
                        describe(fresh_op)
                    ))
                }
                None => {
                    return Some(format!(
                        "airlock now also plans {}, which the file does not have",
                        describe(fresh_op)
                    ))
                }
            }
        }
        if let Some((i, s)) = saved_ops.get(p.ops.len()) {
            return Some(format!(
                "operation {i} ({}) is not among what airlock computes now",
                describe(s)
            ));
        }
    }
    None
}

fn same(a: &PlannedOp, b: &PlannedOp) -> bool {
    a.instance == b.instance && a.op == b.op
}

fn roles(set: &BTreeSet<RoleName>) -> String {
    let names: Vec<&str> = set.iter().map(RoleName::as_str).collect();
    format!("[{}]", names.join(", "))
}

/// `set_roles account ada on prod [Op] -> [Admin]`: enough to see what an operation does.
pub fn describe(p: &PlannedOp) -> String {
    let detail = match &p.op {
        Op::CreateRole { permissions, .. } => format!(" ({} permissions)", permissions.len()),
        Op::UpdateRole { add, remove, .. } => {
            format!(" (+{} -{} permissions)", add.len(), remove.len())
        }
        Op::CreateAccount { roles: r, .. } => format!(" {}", roles(r)),
        Op::SetRoles { from, to, .. } => format!(" {} -> {}", roles(from), roles(to)),
        Op::UpdateProfile { .. } => " (profile)".to_string(),
        Op::Suspend { roles: r, .. } => format!(" (strip {})", roles(r)),
        Op::Delete { .. } => String::new(),
    };
    format!(
        "{} {} on {}{detail}",
        p.op.kind(),
        p.op.target(),
        p.instance
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::plan::InstancePlan;
    use airlock_core::Username;

    fn op(instance: &str, user: &str, role: &str) -> PlannedOp {
        PlannedOp {
            instance: InstanceName::new(instance).expect("valid"),
            op: Op::CreateAccount {
                username: Username::new(user).expect("valid"),
                email: format!("{user}@example.com").into(),
                first_name: user.into(),
                last_name: "T".into(),
                roles: std::sync::Arc::new([RoleName::new(role).expect("valid")].into()),
            },
            reason: "group eng grants Op".into(),
        }
    }

    fn plan(ops: Vec<PlannedOp>) -> Plan {
        let name = InstanceName::new("prod").expect("valid");
        let mut p = Plan {
            format: 0,
            created_at: chrono::Utc::now(),
            fingerprint: "f".repeat(64),
            digest: String::new(),
            directory_people: 2,
            instances: vec![InstancePlan {
                ops,
                ..Default::default()
            }],
            instance_names: vec![name],
            warnings: vec![],
            held: vec![],
        };
        seal(&mut p);
        p
    }

    fn configured() -> BTreeSet<&'static str> {
        ["prod", "dev"].into()
    }

    #[test]
    fn a_sealed_plan_passes_and_survives_a_round_trip_through_json() {
        let p = plan(vec![op("prod", "ada", "Op")]);
        let back: Plan =
            serde_json::from_str(&serde_json::to_string_pretty(&p).expect("json")).expect("parse");
        assert_eq!(check_file(&back, &configured()), Ok(()));
        assert_eq!(first_difference(&back, &p), None);
    }

    #[test]
    fn any_edit_of_operations_or_fingerprint_breaks_the_digest() {
        let good = plan(vec![op("prod", "ada", "Op")]);
        let mut p = good.clone();
        p.instances[0].ops[0] = op("prod", "ada", "Admin");
        assert_eq!(check_file(&p, &configured()), Err(SavedPlanError::Digest));
        let mut p = good.clone();
        p.fingerprint = "0".repeat(64);
        assert_eq!(check_file(&p, &configured()), Err(SavedPlanError::Digest));
        let mut p = good.clone();
        p.instances[0].ops[0].reason = "trust me".into();
        assert_eq!(check_file(&p, &configured()), Err(SavedPlanError::Digest));
        let mut p = good.clone();
        p.digest.clear();
        assert_eq!(check_file(&p, &configured()), Err(SavedPlanError::Digest));
        let mut p = good;
        p.format = 1;
        assert_eq!(
            check_file(&p, &configured()),
            Err(SavedPlanError::Format(1))
        );
    }

    #[test]
    fn an_unknown_instance_is_named_even_with_a_recomputed_digest() {
        let mut p = plan(vec![op("prod", "ada", "Op"), op("staging", "bob", "Op")]);
        seal(&mut p);
        assert_eq!(
            check_file(&p, &configured()),
            Err(SavedPlanError::UnknownInstance {
                at: "operation 2".into(),
                instance: "staging".into()
            })
        );
        let mut p = plan(vec![]);
        p.instance_names = vec![InstanceName::new("nowhere").expect("valid")];
        seal(&mut p);
        assert!(matches!(
            check_file(&p, &configured()),
            Err(SavedPlanError::UnknownInstance { .. })
        ));
        let mut p = plan(vec![]);
        p.instances.clear();
        seal(&mut p);
        assert_eq!(
            check_file(&p, &configured()),
            Err(SavedPlanError::Shape { names: 1, plans: 0 })
        );
    }

    #[test]
    fn the_first_difference_names_the_operation_and_both_versions() {
        let fresh = plan(vec![op("prod", "ada", "Op"), op("prod", "bob", "Op")]);
        let forged = plan(vec![op("prod", "ada", "Op"), op("prod", "bob", "Admin")]);
        assert_eq!(
            first_difference(&forged, &fresh).as_deref(),
            Some("operation 2 (create_account account bob on prod [Admin]) differs from what airlock computes now (create_account account bob on prod [Op])")
        );
        let extra = plan(vec![
            op("prod", "ada", "Op"),
            op("prod", "bob", "Op"),
            op("prod", "eve", "Admin"),
        ]);
        assert_eq!(
            first_difference(&extra, &fresh).as_deref(),
            Some("operation 3 (create_account account eve on prod [Admin]) is not among what airlock computes now")
        );
        let fewer = plan(vec![op("prod", "ada", "Op")]);
        assert!(first_difference(&fewer, &fresh)
            .expect("differs")
            .starts_with("airlock now also plans create_account account bob"));
        let mut moved = fresh.clone();
        moved.instances[0].ops[1].instance = InstanceName::new("dev").expect("valid");
        assert!(first_difference(&moved, &fresh)
            .expect("differs")
            .starts_with("operation 2 (create_account account bob on dev [Op]) differs"));
        let mut reworded = fresh.clone();
        reworded.instances[0].ops[0].reason = "other words".into();
        assert_eq!(first_difference(&reworded, &fresh), None);
    }
}
