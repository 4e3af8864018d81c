//! Planner benchmark on synthetic data: `cargo run --release -p airlock-core --example
//! bench_planner -- [PEOPLE] [GROUPS] [INSTANCES]` (defaults 100000 1000 10).
//!
//! Builds a directory of PEOPLE people spread over GROUPS groups (each person in 1-3 groups)
//! and a policy granting each group a role on a label-selected subset of INSTANCES instances;
//! times `desired` for all instances, then, per instance, builds an actual state where 90% of
//! its desired accounts already exist (a third of them with drifted roles) and times
//! `plan_instance` on it. Only `desired` and `plan_instance` are timed; building inputs is not.
//! Reports peak memory (VmHWM) of the whole process, inputs included.

use airlock_core::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};
use airlock_core::plan::{
    desired, plan_instance, ActualInstance, DesiredInstance, InstanceRef, ManagedRecord, PlanInput,
};
use airlock_core::policy::{
    Grant, InstanceSelector, LeaverRule, Policy, SafetyRails, UsernameRule, UsernameSource,
};
use airlock_core::{Account, InstanceName, RoleName, Username};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let (n_people, n_groups, n_instances) = (arg(1, 100_000), arg(2, 1_000), arg(3, 10));
    let roles = ["Viewer", "User", "Op"];
    // Deterministic pseudo-random numbers (no dependency, reproducible runs).
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let t0 = Instant::now();
    let mut dir = DirectorySnapshot::default();
    for g in 0..n_groups {
        dir.groups.insert(GroupName(format!("group-{g:04}")));
    }
    for p in 0..n_people {
        let k = 1 + (next() % 3) as usize;
        let groups = (0..k)
            .map(|_| GroupName(format!("group-{:04}", next() % n_groups as u64)))
            .collect();
        let status = if next() % 50 == 0 {
            PersonStatus::Suspended
        } else {
            PersonStatus::Active
        };
        let id = PersonId(format!("p{p:06}"));
        dir.people.insert(
            id.clone(),
            Person {
                id,
                username: format!("user{p:06}"),
                email: Some(format!("user{p:06}@example.com")),
                first_name: Some("First".into()),
                last_name: Some(format!("Last{p}")),
                status,
                groups,
            },
        );
    }
    let instances: Vec<(InstanceName, BTreeMap<String, String>)> = (0..n_instances)
        .map(|i| {
            let env = if i % 2 == 0 { "prod" } else { "dev" };
            (
                InstanceName::new(format!("airflow-{i:02}")).expect("valid"),
                [("env".to_string(), env.to_string())].into(),
            )
        })
        .collect();
    let policy = Policy {
        username: UsernameRule {
            source: UsernameSource::Email,
            prefix: String::new(),
            lowercase: true,
        },
        grants: (0..n_groups)
            .map(|g| Grant {
                group: GroupName(format!("group-{g:04}")),
                roles: [RoleName::new(roles[g % 3]).expect("valid")].into(),
                instances: if g % 4 == 0 {
                    InstanceSelector {
                        names: BTreeSet::new(),
                        labels: [("env".to_string(), "prod".to_string())].into(),
                    }
                } else {
                    InstanceSelector::default()
                },
            })
            .collect(),
        scope_groups: vec![],
        default_roles: BTreeSet::new(),
        roles: vec![],
        protected: BTreeSet::new(),
        service_accounts: vec![],
        leavers: LeaverRule {
            delete_after_secs: Some(7 * 86_400),
        },
        safety: SafetyRails::default(),
        access: Default::default(),
    };
    let built = t0.elapsed();

    let t1 = Instant::now();
    let refs: Vec<InstanceRef<'_>> = instances
        .iter()
        .map(|(n, l)| InstanceRef {
            name: n,
            labels: l,
            airlock_user: "airlock",
        })
        .collect();
    let (want, _warnings) = desired(&policy, &dir, &refs);
    let desired_time = t1.elapsed();

    let now = Utc::now();
    let protected = BTreeSet::new();
    let mut ops = 0;
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    let mut plan_time = Duration::ZERO;
    for (name, _) in &instances {
        // Each instance's actual state is built just before it is planned and dropped after,
        // outside the timed part: an engine reads one instance's accounts at a time too, and
        // holding all of them at once made this input, not the planner, the peak of memory.
        let (actual, managed) = actual_state(&want[name]);
        let t = Instant::now();
        let p = plan_instance(&PlanInput {
            instance: name,
            desired: &want[name],
            actual: &actual,
            managed: &managed,
            protected: &protected,
            leavers: policy.leavers,
            now,
        });
        plan_time += t.elapsed();
        ops += p.ops.len();
        for o in &p.ops {
            *by_kind.entry(o.op.kind()).or_default() += 1;
        }
    }
    let accounts: usize = want.values().map(|d| d.accounts.len()).sum();
    println!(
        "planner: {n_people} people, {n_groups} groups, {n_instances} instances -> {accounts} desired accounts, {ops} ops {by_kind:?}"
    );
    println!(
        "time: build inputs {:.0} ms, desired state {:.0} ms, plan {:.0} ms (desired+plan {:.0} ms); peak RSS {:.0} MiB",
        built.as_secs_f64() * 1e3,
        desired_time.as_secs_f64() * 1e3,
        plan_time.as_secs_f64() * 1e3,
        (desired_time + plan_time).as_secs_f64() * 1e3,
        peak_rss_mib()
    );
}

/// What an instance holds: 90% of its desired accounts (a third of those with drifted roles)
/// plus 20 managed leavers, all managed by airlock.
fn actual_state(d: &DesiredInstance) -> (ActualInstance, BTreeMap<Username, ManagedRecord>) {
    let account = |username: Username, email: String, first: String, last: String, roles| Account {
        username,
        email,
        first_name: first,
        last_name: last,
        roles,
        active: true,
        last_login: None,
        login_count: None,
        fail_login_count: None,
        created_on: None,
        changed_on: None,
    };
    let mut accounts = Vec::new();
    let mut managed = BTreeMap::new();
    // Fresh copies, as read from Airflow and the store: nothing shares the desired state's
    // (shared) names, which would make comparing them unrealistically cheap. Role names are
    // fresh too, but one text per role for the whole instance, as the Airflow client reads
    // them (`RoleNames` in airlock-airflow).
    let fresh_user = |u: &Username| Username::new(u.as_str()).expect("valid");
    let read_roles: Vec<RoleName> = ["Viewer", "User", "Op"]
        .into_iter()
        .map(|r| RoleName::new(r).expect("valid"))
        .collect();
    let read = |r: &RoleName| {
        (read_roles.iter().find(|known| *known == r))
            .expect("the bench grants only these")
            .clone()
    };
    let fresh_roles = |roles: &BTreeSet<RoleName>| roles.iter().map(read).collect();
    for (i, (u, a)) in d.accounts.iter().enumerate() {
        if i % 10 == 9 {
            continue;
        }
        let roles = if i % 3 == 0 {
            [read_roles[0].clone()].into()
        } else {
            fresh_roles(&a.roles)
        };
        accounts.push(account(
            fresh_user(u),
            a.email.to_string(),
            a.first_name.to_string(),
            a.last_name.to_string(),
            roles,
        ));
        managed.insert(fresh_user(u), ManagedRecord::default());
    }
    for l in 0..20 {
        let u = Username::new(format!("leaver{l}@example.com")).expect("valid");
        accounts.push(account(
            u.clone(),
            format!("leaver{l}@example.com"),
            "L".into(),
            "L".into(),
            [read_roles[2].clone()].into(),
        ));
        managed.insert(u, ManagedRecord::default());
    }
    // As the Airflow client lists them: sorted by username.
    accounts.sort_by(|a, b| a.username.cmp(&b.username));
    let actual = ActualInstance {
        accounts,
        roles: vec![],
        catalog: None,
    };
    (actual, managed)
}
