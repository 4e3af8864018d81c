//! The planner equals the straightforward [`reference`](super::reference) planner on random
//! policies, directories and instances: the same desired state (key spellings included), the
//! same plans and the same warnings. Inputs are drawn from small pools so that collisions the
//! planner must handle (usernames differing only in case, service accounts shadowing people,
//! protected and airlock's own accounts, missing emails, duplicate accounts) are frequent.
//! Plans are also made in several username ranges (as large instances are, on several
//! threads) and must not differ.

use super::*;
use crate::directory::{GroupName, Person, PersonStatus};
use crate::policy::{
    Grant, InstanceSelector, RoleSpec, SafetyRails, ServiceAccount, UsernameRule, UsernameSource,
};
use chrono::TimeZone;
use proptest::prelude::*;

const GROUPS: &[&str] = &["eng", "analytics", "everyone", "ops", "other"];
const ROLES: &[&str] = &[
    "Op",
    "Viewer",
    "Admin",
    "marketing-analyst",
    "custom",
    "Ghost",
];
const INSTANCES: &[&str] = &["prod", "dev", "stage", "prod-2"];
const NAMES: &[&str] = &[
    "ada@example.com",
    "Ada@example.com",
    "bob@example.com",
    "okta_ada@example.com",
    // Shares its first 16 bytes with the one above: sorting must look past them.
    "okta_ada@example.org",
    "svc-ci",
    "admin",
    "airlock",
    "ada",
    "Bob",
    "zz",
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .expect("date")
}

fn pick<T: Clone + std::fmt::Debug + 'static>(v: &[T]) -> impl Strategy<Value = T> {
    prop::sample::select(v.to_vec())
}

fn some_of(v: &'static [&'static str], max: usize) -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set(pick(v).prop_map(str::to_string), 0..=max)
}

fn arb_roles() -> impl Strategy<Value = BTreeSet<RoleName>> {
    some_of(ROLES, 3).prop_map(|s| {
        s.into_iter()
            .map(|r| RoleName::new(r).expect("valid"))
            .collect()
    })
}

fn arb_permissions() -> impl Strategy<Value = BTreeSet<Permission>> {
    proptest::collection::btree_set(
        (
            pick(&["can_read", "can_edit"]),
            pick(&["DAGs", "DAG:marketing"]),
        )
            .prop_map(|(a, r)| Permission::new(a, r)),
        0..3,
    )
}

fn arb_selector() -> impl Strategy<Value = InstanceSelector> {
    (
        some_of(INSTANCES, 2),
        pick(&[None, Some("prod"), Some("dev")]),
    )
        .prop_map(|(names, env)| InstanceSelector {
            names: names
                .into_iter()
                .map(|n| InstanceName::new(n).expect("valid"))
                .collect(),
            labels: env
                .map(|e| ("env".to_string(), e.to_string()))
                .into_iter()
                .collect(),
        })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    let grants = proptest::collection::vec(
        (pick(GROUPS), arb_roles(), arb_selector()).prop_map(|(g, roles, instances)| Grant {
            group: GroupName(g.into()),
            roles,
            instances,
        }),
        0..6,
    );
    let scope = proptest::collection::vec(
        (pick(GROUPS), arb_selector()).prop_map(|(g, s)| (GroupName(g.into()), s)),
        0..3,
    );
    let specs = proptest::collection::vec(
        (
            pick(&["marketing-analyst", "custom"]),
            arb_permissions(),
            arb_selector(),
        )
            .prop_map(|(name, permissions, instances)| RoleSpec {
                name: RoleName::new(name).expect("valid"),
                permissions,
                instances,
            }),
        0..3,
    );
    let service = proptest::collection::vec(
        (
            pick(NAMES),
            pick(&["", "ci@example.com"]),
            arb_roles(),
            arb_selector(),
        )
            .prop_map(|(u, email, roles, instances)| ServiceAccount {
                username: Username::new(u).expect("valid"),
                email: email.into(),
                roles,
                instances,
            }),
        0..3,
    );
    (
        (
            pick(&[
                UsernameSource::Email,
                UsernameSource::EmailLocalPart,
                UsernameSource::DirectoryUsername,
            ]),
            pick(&["", "okta_", " "]),
            any::<bool>(),
        ),
        grants,
        scope,
        some_of(&["Viewer", "Ghost"], 2),
        specs,
        some_of(&["admin", "ada@example.com", "Bob"], 2),
        service,
        any::<bool>(),
    )
        .prop_map(
            |(
                (source, prefix, lowercase),
                grants,
                scope_groups,
                defaults,
                roles,
                protected,
                service_accounts,
                delete,
            )| Policy {
                username: UsernameRule {
                    source,
                    prefix: prefix.into(),
                    lowercase,
                },
                grants,
                scope_groups,
                default_roles: defaults
                    .into_iter()
                    .map(|r| RoleName::new(r).expect("valid"))
                    .collect(),
                roles,
                protected: protected
                    .into_iter()
                    .map(|u| Username::new(u).expect("valid"))
                    .collect(),
                service_accounts,
                leavers: LeaverRule {
                    delete_after_secs: delete.then_some(7 * 86_400),
                },
                safety: SafetyRails::default(),
                access: Default::default(),
            },
        )
}

fn arb_person() -> impl Strategy<Value = Person> {
    let opt_name = || pick(&[None, Some(""), Some("  "), Some("Ada")]);
    (
        "[a-f]{1,2}",
        pick(&[
            None,
            Some(""),
            Some("ada@example.com"),
            Some("Ada@example.com"),
            Some("bob@example.com"),
            Some(" bob@example.com "),
            Some("svc-ci"),
            Some("airlock"),
            Some("admin"),
            Some("zz"),
        ]),
        pick(&["ada", "Ada", "bob", "svc-ci", "airlock", "", "zz"]),
        opt_name(),
        opt_name(),
        pick(&[
            PersonStatus::Active,
            PersonStatus::Active,
            PersonStatus::Suspended,
            PersonStatus::Staged,
        ]),
        some_of(GROUPS, 3),
    )
        .prop_map(
            |(id, email, username, first, last, status, groups)| Person {
                id: PersonId(id),
                username: username.into(),
                email: email.map(str::to_string),
                first_name: first.map(str::to_string),
                last_name: last.map(str::to_string),
                status,
                groups: groups.into_iter().map(GroupName).collect(),
            },
        )
}

/// An instance: its name, labels, airlock's login, and what it holds.
type World = (
    InstanceName,
    BTreeMap<String, String>,
    String,
    ActualInstance,
    BTreeMap<Username, ManagedRecord>,
);

fn arb_instance() -> impl Strategy<Value = World> {
    let account = (
        pick(NAMES),
        pick(&["ada@example.com", "x@example.com"]),
        pick(&["Ada", "First"]),
        pick(&["-", "Ada"]),
        arb_roles(),
    )
        .prop_map(|(u, email, first, last, roles)| Account {
            username: Username::new(u).expect("valid"),
            email: email.into(),
            first_name: first.into(),
            last_name: last.into(),
            roles,
            active: true,
            last_login: None,
            login_count: None,
            fail_login_count: None,
            created_on: None,
            changed_on: None,
        });
    let role = (pick(ROLES), arb_permissions()).prop_map(|(r, permissions)| Role {
        name: RoleName::new(r).expect("valid"),
        permissions,
    });
    let managed = proptest::collection::btree_map(
        pick(NAMES).prop_map(|u| Username::new(u).expect("valid")),
        pick(&[None, Some(1), Some(30)]).prop_map(|days| ManagedRecord {
            suspended_at: days.map(|d| now() - chrono::Duration::days(d)),
        }),
        0..5,
    );
    (
        pick(INSTANCES),
        pick(&[None, Some("prod"), Some("dev")]),
        pick(&["airlock", "admin", "Ada@example.com", " bad"]),
        proptest::collection::vec(account, 0..8),
        proptest::collection::vec(role, 0..5),
        prop::option::of(arb_permissions()),
        managed,
    )
        .prop_map(|(name, env, login, accounts, roles, catalog, managed)| {
            (
                InstanceName::new(name).expect("valid"),
                env.map(|e| ("env".to_string(), e.to_string()))
                    .into_iter()
                    .collect(),
                login.to_string(),
                ActualInstance {
                    accounts,
                    roles,
                    catalog,
                },
                managed,
            )
        })
}

fn arb_input() -> impl Strategy<Value = (Policy, DirectorySnapshot, Vec<World>)> {
    (
        arb_policy(),
        proptest::collection::vec(arb_person(), 0..10),
        proptest::collection::vec(arb_instance(), 1..4),
    )
        .prop_map(|(policy, people, mut worlds)| {
            worlds.sort_by(|a, b| a.0.cmp(&b.0));
            worlds.dedup_by(|a, b| a.0 == b.0);
            let directory = DirectorySnapshot {
                groups: people.iter().flat_map(|p| p.groups.clone()).collect(),
                people: people.into_iter().map(|p| (p.id.clone(), p)).collect(),
            };
            (policy, directory, worlds)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_planner_plans_exactly_what_the_reference_planner_plans(
        (policy, directory, worlds) in arb_input()
    ) {
        let refs: Vec<InstanceRef<'_>> = worlds
            .iter()
            .map(|(name, labels, login, _, _)| InstanceRef { name, labels, airlock_user: login })
            .collect();
        let (want, warnings) = desired(&policy, &directory, &refs);
        let (want_ref, warnings_ref) = reference::desired(&policy, &directory, &refs);
        // Debug shows each username's spelling, which `==` (case-insensitive) does not compare.
        prop_assert_eq!(format!("{want:?}"), format!("{want_ref:?}"));
        prop_assert_eq!(format!("{warnings:?}"), format!("{warnings_ref:?}"));
        // Built in username ranges on several threads, as large directories are.
        for parts in [2, 3, 5] {
            let (split, split_warnings) = desired::desired_in_parts(&policy, &directory, &refs, parts);
            prop_assert_eq!(format!("{split:?}"), format!("{want_ref:?}"));
            prop_assert_eq!(format!("{split_warnings:?}"), format!("{warnings_ref:?}"));
        }
        for (name, _, login, actual, managed) in &worlds {
            let mut protected = policy.protected.clone();
            protected.extend(Username::new(login.clone()).ok());
            for later in [now(), now() + chrono::Duration::days(10)] {
                let input = PlanInput {
                    instance: name,
                    desired: &want[name],
                    actual,
                    managed,
                    protected: &protected,
                    leavers: policy.leavers,
                    now: later,
                };
                let plan = plan_instance(&input);
                let plan_ref = reference::plan_instance(&input);
                prop_assert_eq!(format!("{plan:?}"), format!("{plan_ref:?}"));
                // Planned in username ranges on several threads, as large instances are.
                for parts in [2, 3, 5] {
                    let split = instance::plan_in_parts(&input, parts);
                    prop_assert_eq!(format!("{split:?}"), format!("{plan_ref:?}"));
                }
                // Listed as the Airflow client lists accounts: sorted, each username once
                // (the last listed kept), which skips the planner's own sort; and the same
                // list rotated, so that each part's accounts may be in order while the list
                // is not (where two parts meet).
                let mut by_name: BTreeMap<&Username, &Account> = BTreeMap::new();
                for a in &actual.accounts {
                    by_name.insert(&a.username, a);
                }
                let sorted: Vec<Account> = by_name.into_values().cloned().collect();
                let mut rotated = sorted.clone();
                rotated.rotate_left(sorted.len() / 2);
                for accounts in [sorted, rotated] {
                    let listed = ActualInstance { accounts, ..actual.clone() };
                    let input = PlanInput { actual: &listed, ..input };
                    let plan_listed = plan_instance(&input);
                    prop_assert_eq!(format!("{plan_listed:?}"), format!("{plan_ref:?}"));
                    for parts in [2, 3, 5] {
                        let split = instance::plan_in_parts(&input, parts);
                        prop_assert_eq!(format!("{split:?}"), format!("{plan_ref:?}"));
                    }
                }
            }
        }
    }
}

#[test]
fn people_sharing_a_username_keep_the_first_spelling_and_the_last_reason() {
    let person = |id: &str, email: &str, status, groups: &[&str]| Person {
        id: PersonId(id.into()),
        username: id.into(),
        email: Some(email.into()),
        first_name: None,
        last_name: None,
        status,
        groups: groups.iter().map(|g| GroupName((*g).into())).collect(),
    };
    let people = vec![
        person("a", "Ada@example.com", PersonStatus::Suspended, &["eng"]),
        person("b", "ADA@example.com", PersonStatus::Staged, &["eng"]),
        person("c", "ada@example.com", PersonStatus::Active, &[]),
        person("d", "Bob@example.com", PersonStatus::Active, &["eng"]),
        person("e", "bob@example.com", PersonStatus::Active, &["eng"]),
        person("f", "BOB@example.com", PersonStatus::Suspended, &[]),
    ];
    let directory = DirectorySnapshot {
        groups: [GroupName("eng".into())].into(),
        people: people.into_iter().map(|p| (p.id.clone(), p)).collect(),
    };
    let policy = Policy {
        username: UsernameRule {
            source: UsernameSource::Email,
            prefix: String::new(),
            lowercase: false,
        },
        grants: vec![Grant {
            group: GroupName("eng".into()),
            roles: [RoleName::new("Op").expect("valid")].into(),
            instances: InstanceSelector::default(),
        }],
        scope_groups: vec![],
        default_roles: BTreeSet::new(),
        roles: vec![],
        protected: BTreeSet::new(),
        service_accounts: vec![],
        leavers: LeaverRule {
            delete_after_secs: None,
        },
        safety: SafetyRails::default(),
        access: Default::default(),
    };
    let (name, labels) = (InstanceName::new("prod").expect("valid"), BTreeMap::new());
    let refs = [InstanceRef {
        name: &name,
        labels: &labels,
        airlock_user: "airlock",
    }];
    let (want, warnings) = desired(&policy, &directory, &refs);
    let (want_ref, warnings_ref) = reference::desired(&policy, &directory, &refs);
    assert_eq!(format!("{want:?}"), format!("{want_ref:?}"));
    assert_eq!(format!("{warnings:?}"), format!("{warnings_ref:?}"));
    let d = &want[&name];
    let spelled = |u: Option<&Username>| u.map(|u| u.as_str().to_string());
    let excluded: Vec<(&str, &str)> = (d.excluded.iter())
        .map(|(u, why)| (u.as_str(), why.as_str()))
        .collect();
    assert_eq!(
        excluded,
        vec![
            (
                "Ada@example.com",
                "in no group with access to this instance"
            ),
            ("BOB@example.com", "suspended in the directory"),
        ]
    );
    assert_eq!(
        spelled(d.inactive_in_scope.iter().next()),
        Some("Ada@example.com".into())
    );
    assert!(d.accounts.is_empty());
    assert!(warnings
        .iter()
        .any(|w| w.message
            == "people d, e all map to username Bob@example.com; airlock changes nothing for Bob@example.com until the directory resolves the conflict"));
}
