//! The safety rails, as pure functions of the plan and what was read.
//!
//! Two kinds. The directory checks (empty, or far smaller than last time) mean an outage, and
//! stop the whole run before any write ([`rails`]). The deprovisioning caps (per run, per
//! instance, per rolling hour over every run and replica) hold back only the suspensions and
//! deletions they refuse ([`hold_back`]); joiners, role changes and the deprovisions that fit
//! keep flowing, and what was held waits for an operator's release or for room in the window.
//! Deletions on an instance whose tokens outlive its configured `token_lifetime_secs` are held
//! too ([`lifetime_holds`]), whatever the caps say.

use super::{Observed, Plan};
use airlock_core::plan::PlannedOp;
use airlock_core::policy::Policy;
use airlock_core::InstanceName;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Why a run, or some of its operations, were stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The directory returned no one, or far fewer people than the last complete read.
    #[error("directory returned {now} people, fewer than {ratio_pct}% of the {before} seen last time; treating it as an outage (fix the directory, or run with --allow-mass-deprovision if this is real)")]
    DirectoryShrank {
        /// People now.
        now: usize,
        /// People last time.
        before: usize,
        /// The configured threshold, in percent.
        ratio_pct: u32,
    },
    /// The directory returned nobody at all while airlock manages accounts.
    #[error("directory returned no people while airlock manages {managed} accounts; treating it as an outage")]
    DirectoryEmpty {
        /// Managed accounts.
        managed: usize,
    },
    /// More suspensions/deletions than the absolute cap: all of them are held.
    #[error("plan would suspend or delete {count} accounts, more than safety.max_deprovisions = {cap}; held until released (`airlock rails release`) or run with --allow-mass-deprovision")]
    TooManyDeprovisions {
        /// Planned.
        count: usize,
        /// Cap.
        cap: usize,
    },
    /// More than the configured fraction of one instance's managed accounts.
    #[error("plan would suspend or delete {count} of {managed} managed accounts on `{instance}`, more than safety.max_deprovision_fraction = {fraction}; held until released (`airlock rails release`) or run with --allow-mass-deprovision")]
    TooLargeFraction {
        /// Instance.
        instance: String,
        /// Planned.
        count: usize,
        /// Managed there.
        managed: usize,
        /// Cap.
        fraction: f64,
    },
    /// The rolling hour already holds as many deprovisions as allowed.
    #[error("{recent} accounts were suspended or deleted in the last hour and {count} more are planned, more than safety.max_deprovisions_per_hour = {cap}; held until the window has room or they are released (`airlock rails release`)")]
    TooManyPerHour {
        /// Deprovisions in the last hour.
        recent: u64,
        /// Planned now.
        count: usize,
        /// Cap.
        cap: usize,
    },
    /// A saved plan no longer matches the state it was computed from.
    #[error("the state changed since this plan was made (fingerprint {saved} != {now}); run `airlock plan` again")]
    StalePlan {
        /// Saved fingerprint (prefix).
        saved: String,
        /// Current fingerprint (prefix).
        now: String,
    },
    /// A saved plan whose inputs are unchanged but whose operations are not the ones computed
    /// now (an edited file whose digest was recomputed, or another airlock's planner).
    #[error("the saved plan does not match what airlock computes now: {detail}; nothing was applied; run `airlock plan` again")]
    PlanDiffers {
        /// The first difference, one line.
        detail: String,
    },
    /// The instance issues tokens that live longer than its configured `token_lifetime_secs`,
    /// so the deletion grace (checked against the configured lifetime) may be too short.
    #[error("instance `{instance}` issues tokens valid for {observed_secs} s, longer than its token_lifetime_secs = {configured_secs} s: a deleted account's id could be reused while its token is still accepted; deletions there are blocked until instances.{instance}.token_lifetime_secs is at least {observed_secs} (policy.leavers.delete_after_days is then checked against it)")]
    TokenLifetimeLonger {
        /// Instance.
        instance: String,
        /// `token_lifetime_secs`.
        configured_secs: u64,
        /// `exp - iat` of the token airlock was issued.
        observed_secs: u64,
    },
}

impl Refusal {
    /// The rail's name, for the audit trail.
    pub fn rail(&self) -> &'static str {
        match self {
            Refusal::DirectoryShrank { .. } => "min_directory_ratio",
            Refusal::DirectoryEmpty { .. } => "empty_directory",
            Refusal::TooManyDeprovisions { .. } => "max_deprovisions",
            Refusal::TooLargeFraction { .. } => "max_deprovision_fraction",
            Refusal::TooManyPerHour { .. } => "max_deprovisions_per_hour",
            Refusal::StalePlan { .. } => "stale_plan",
            Refusal::PlanDiffers { .. } => "saved_plan_differs",
            Refusal::TokenLifetimeLonger { .. } => "token_lifetime",
        }
    }
}

/// A deprovision a rail held back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOp {
    /// The operation.
    pub op: PlannedOp,
    /// Why.
    pub refusal: Refusal,
}

/// `(instance, lowercase username, op kind)`: how a released hold is matched.
pub type HoldKey = (String, String, String);

/// The key of a deprovision.
pub fn hold_key(op: &PlannedOp) -> HoldKey {
    let username = match &op.op {
        airlock_core::plan::Op::Suspend { username, .. }
        | airlock_core::plan::Op::Delete { username } => username.key().to_string(),
        _ => String::new(),
    };
    (op.instance.to_string(), username, op.op.kind().to_string())
}

/// The directory checks: `Some` stops the whole run before any write.
pub fn rails(
    policy: &Policy,
    observed: &Observed,
    last_people: Option<i64>,
    allow_mass: bool,
) -> Option<Refusal> {
    if allow_mass {
        return None;
    }
    let now = observed.directory.people.len();
    let managed_total: usize = observed.managed.values().map(BTreeMap::len).sum();
    if now == 0 && (managed_total > 0 || last_people.unwrap_or(0) > 0) {
        return Some(Refusal::DirectoryEmpty {
            managed: managed_total,
        });
    }
    if let Some(before) = last_people.and_then(|b| usize::try_from(b).ok()) {
        let ratio = policy.safety.min_directory_ratio;
        if before > 0 && (now as f64) < ratio * before as f64 {
            return Some(Refusal::DirectoryShrank {
                now,
                before,
                ratio_pct: (ratio * 100.0).round() as u32,
            });
        }
    }
    None
}

/// The deprovisioning caps: which of the plan's deprovisions to hold back, by their position
/// in `plan.ops()`. `recent` is how many deprovisions reached Airflow in the last hour (every
/// run and replica); `released` are held deprovisions an operator let through, which no cap
/// stops (they still count in the window).
pub fn hold_back(
    policy: &Policy,
    plan: &Plan,
    observed: &Observed,
    recent: u64,
    released: &BTreeSet<HoldKey>,
    allow_mass: bool,
) -> BTreeMap<usize, Refusal> {
    let mut held = BTreeMap::new();
    if allow_mass {
        return held;
    }
    let capped: Vec<(usize, &PlannedOp)> = plan
        .ops()
        .enumerate()
        .filter(|(_, o)| o.op.is_deprovision() && !released.contains(&hold_key(o)))
        .collect();
    let safety = &policy.safety;
    if capped.len() > safety.max_deprovisions {
        // A mass event: hold every one of them, not just the excess.
        let r = Refusal::TooManyDeprovisions {
            count: capped.len(),
            cap: safety.max_deprovisions,
        };
        for (i, _) in &capped {
            held.insert(*i, r.clone());
        }
        return held;
    }
    for name in &plan.instance_names {
        let mine: Vec<usize> = capped
            .iter()
            .filter(|(_, o)| &o.instance == name)
            .map(|(i, _)| *i)
            .collect();
        let managed = observed.managed.get(name).map(BTreeMap::len).unwrap_or(0);
        // Small instances would trip a fraction on a single leaver; the absolute cap covers
        // them.
        let count = mine.len();
        if count > 1
            && managed > 0
            && count as f64 > safety.max_deprovision_fraction * managed as f64
        {
            let r = Refusal::TooLargeFraction {
                instance: name.to_string(),
                count,
                managed,
                fraction: safety.max_deprovision_fraction,
            };
            for i in mine {
                held.insert(i, r.clone());
            }
        }
    }
    if let Some(cap) = safety.max_deprovisions_per_hour {
        let room = (cap as u64).saturating_sub(recent);
        let waiting: Vec<usize> = capped
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !held.contains_key(i))
            .collect();
        let count = waiting.len();
        // The first ones (plan order) fit; the rest wait for the window.
        for i in waiting
            .into_iter()
            .skip(usize::try_from(room).unwrap_or(usize::MAX))
        {
            held.insert(i, Refusal::TooManyPerHour { recent, count, cap });
        }
    }
    held
}

/// The refusal for an instance whose observed token lifetime exceeds the configured one
/// (`None` when it does not, or when nothing was observed: Airflow 2, no token yet).
pub fn lifetime_conflict(
    instance: &str,
    configured: std::time::Duration,
    observed: Option<std::time::Duration>,
) -> Option<Refusal> {
    let observed = observed?;
    (observed > configured).then(|| Refusal::TokenLifetimeLonger {
        instance: instance.to_string(),
        configured_secs: configured.as_secs(),
        observed_secs: observed.as_secs(),
    })
}

/// The deletions to hold back, by position in `plan.ops()`, on instances with a token
/// lifetime conflict. No release and no `--allow-mass-deprovision` lifts these: only a
/// configuration that matches the instance does.
pub fn lifetime_holds(
    plan: &Plan,
    conflicts: &BTreeMap<InstanceName, Refusal>,
) -> BTreeMap<usize, Refusal> {
    plan.ops()
        .enumerate()
        .filter(|(_, o)| matches!(o.op, airlock_core::plan::Op::Delete { .. }))
        .filter_map(|(i, o)| conflicts.get(&o.instance).map(|r| (i, r.clone())))
        .collect()
}

/// `plan` without the operations at the positions in `held`, and those operations.
pub fn split_held(plan: &Plan, held: &BTreeMap<usize, Refusal>) -> (Plan, Vec<HeldOp>) {
    let mut out = plan.clone();
    let mut taken = Vec::new();
    let mut index = 0usize;
    for p in &mut out.instances {
        let ops = std::mem::take(&mut p.ops);
        for op in ops {
            match held.get(&index) {
                Some(r) => taken.push(HeldOp {
                    op,
                    refusal: r.clone(),
                }),
                None => p.ops.push(op),
            }
            index += 1;
        }
    }
    out.held = taken.clone();
    (out, taken)
}
