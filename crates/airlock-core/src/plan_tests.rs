use super::*;
use crate::directory::{GroupName, Person, PersonStatus};
use crate::policy::BUILTIN_ROLES;
use crate::policy::{
    Grant, InstanceSelector, RoleSpec, SafetyRails, ServiceAccount, UsernameRule, UsernameSource,
};
use chrono::TimeZone;
use proptest::prelude::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .expect("date")
}

fn role(n: &str) -> RoleName {
    RoleName::new(n).expect("valid")
}

fn user(n: &str) -> Username {
    Username::new(n).expect("valid")
}

fn inst() -> InstanceName {
    InstanceName::new("prod").expect("valid")
}

fn policy() -> Policy {
    Policy {
        username: UsernameRule {
            source: UsernameSource::Email,
            prefix: String::new(),
            lowercase: true,
        },
        grants: vec![
            Grant {
                group: GroupName("eng".into()),
                roles: [role("Op")].into(),
                instances: InstanceSelector::default(),
            },
            Grant {
                group: GroupName("analytics".into()),
                roles: [role("marketing-analyst")].into(),
                instances: InstanceSelector::default(),
            },
        ],
        scope_groups: vec![(GroupName("everyone".into()), InstanceSelector::default())],
        default_roles: [role("Viewer")].into(),
        roles: vec![RoleSpec {
            name: role("marketing-analyst"),
            permissions: [
                Permission::new("can_read", "DAG:marketing"),
                Permission::new("can_edit", "DAG:marketing"),
            ]
            .into(),
            instances: InstanceSelector::default(),
        }],
        protected: [user("admin")].into(),
        service_accounts: vec![ServiceAccount {
            username: user("svc-ci"),
            email: "ci@example.com".into(),
            roles: [role("Op")].into(),
            instances: InstanceSelector::default(),
        }],
        leavers: LeaverRule {
            delete_after_secs: Some(7 * 86400),
        },
        safety: SafetyRails::default(),
        access: Default::default(),
    }
}

fn person(id: &str, groups: &[&str], status: PersonStatus) -> Person {
    Person {
        id: PersonId(id.into()),
        username: id.into(),
        email: Some(format!("{id}@example.com")),
        first_name: Some("First".into()),
        last_name: Some(id.into()),
        status,
        groups: groups.iter().map(|g| GroupName((*g).into())).collect(),
    }
}

fn directory(people: Vec<Person>) -> DirectorySnapshot {
    let groups = people
        .iter()
        .flat_map(|p| p.groups.iter().cloned())
        .collect();
    DirectorySnapshot {
        people: people.into_iter().map(|p| (p.id.clone(), p)).collect(),
        groups,
    }
}

fn desired_for(p: &Policy, dir: &DirectorySnapshot) -> (DesiredInstance, Vec<Warning>) {
    let name = inst();
    let labels = BTreeMap::new();
    let (mut d, w) = desired(
        p,
        dir,
        &[InstanceRef {
            name: &name,
            labels: &labels,
            airlock_user: "airlock",
        }],
    );
    (d.remove(&name).expect("instance"), w)
}

fn catalog() -> BTreeSet<Permission> {
    [
        Permission::new("can_read", "DAG:marketing"),
        Permission::new("can_edit", "DAG:marketing"),
        Permission::new("can_read", "DAGs"),
    ]
    .into()
}

fn builtin_roles() -> Vec<Role> {
    BUILTIN_ROLES
        .iter()
        .map(|r| Role {
            name: role(r),
            permissions: BTreeSet::new(),
        })
        .collect()
}

/// Applies a plan to an in-memory instance the way the engine applies it to Airflow.
fn apply(
    actual: &mut ActualInstance,
    managed: &mut BTreeMap<Username, ManagedRecord>,
    plan: &InstancePlan,
    at: DateTime<Utc>,
) {
    for p in &plan.ops {
        match &p.op {
            Op::CreateRole { role, permissions } => actual.roles.push(Role {
                name: role.clone(),
                permissions: permissions.clone(),
            }),
            Op::UpdateRole { role, add, remove } => {
                let r = actual
                    .roles
                    .iter_mut()
                    .find(|r| &r.name == role)
                    .expect("role exists");
                r.permissions.extend(add.iter().cloned());
                r.permissions.retain(|p| !remove.contains(p));
            }
            Op::CreateAccount {
                username,
                email,
                first_name,
                last_name,
                roles,
            } => actual.accounts.push(Account {
                username: username.clone(),
                email: email.to_string(),
                first_name: first_name.to_string(),
                last_name: last_name.to_string(),
                roles: BTreeSet::clone(roles),
                active: true,
                last_login: None,
                login_count: None,
                fail_login_count: None,
                created_on: None,
                changed_on: None,
            }),
            Op::SetRoles { username, to, .. } => {
                let a = actual
                    .accounts
                    .iter_mut()
                    .find(|a| &a.username == username)
                    .expect("account");
                a.roles = BTreeSet::clone(to);
                managed.entry(username.clone()).or_default().suspended_at = None;
            }
            Op::UpdateProfile {
                username,
                email,
                first_name,
                last_name,
            } => {
                let a = actual
                    .accounts
                    .iter_mut()
                    .find(|a| &a.username == username)
                    .expect("account");
                if let Some(e) = email {
                    a.email = e.clone();
                }
                if let Some(f) = first_name {
                    a.first_name = f.clone();
                }
                if let Some(l) = last_name {
                    a.last_name = l.clone();
                }
            }
            Op::Suspend { username, .. } => {
                let a = actual
                    .accounts
                    .iter_mut()
                    .find(|a| &a.username == username)
                    .expect("account");
                a.roles.clear();
                managed.entry(username.clone()).or_default().suspended_at = Some(at);
            }
            Op::Delete { username } => {
                actual.accounts.retain(|a| &a.username != username);
                managed.remove(username);
            }
        }
    }
    for u in &plan.managed {
        managed.entry(u.clone()).or_default();
    }
}

fn plan_of(
    d: &DesiredInstance,
    a: &ActualInstance,
    m: &BTreeMap<Username, ManagedRecord>,
    p: &Policy,
    at: DateTime<Utc>,
) -> InstancePlan {
    let name = inst();
    plan_instance(&PlanInput {
        instance: &name,
        desired: d,
        actual: a,
        managed: m,
        protected: &p.protected,
        leavers: p.leavers,
        now: at,
    })
}

#[test]
fn a_first_sync_creates_roles_then_accounts_with_reasons() {
    let p = policy();
    let dir = directory(vec![
        person("ada", &["eng"], PersonStatus::Active),
        person("bob", &["analytics"], PersonStatus::Active),
        person("cy", &["everyone"], PersonStatus::Active),
        person("dee", &["eng"], PersonStatus::Suspended),
        person("eve", &[], PersonStatus::Active),
    ]);
    let (d, _) = desired_for(&p, &dir);
    let actual = ActualInstance {
        accounts: vec![],
        roles: builtin_roles(),
        catalog: Some(catalog()),
    };
    let plan = plan_of(&d, &actual, &BTreeMap::new(), &p, now());
    let kinds: Vec<(&str, String)> = plan
        .ops
        .iter()
        .map(|o| (o.op.kind(), o.op.target()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("create_role", "role marketing-analyst".to_string()),
            ("create_account", "account ada@example.com".to_string()),
            ("create_account", "account bob@example.com".to_string()),
            ("create_account", "account cy@example.com".to_string()),
            ("create_account", "account svc-ci".to_string()),
        ]
    );
    assert_eq!(&*plan.ops[1].reason, "group eng grants Op");
    assert_eq!(&*plan.ops[3].reason, "in scope: default roles");
}

#[test]
fn a_leaver_is_suspended_at_once_and_deleted_only_after_the_grace_period() {
    let p = policy();
    let (d, _) = desired_for(
        &p,
        &directory(vec![person("dee", &["eng"], PersonStatus::Suspended)]),
    );
    let mut actual = ActualInstance {
        accounts: vec![],
        roles: builtin_roles(),
        catalog: Some(catalog()),
    };
    let mut managed = BTreeMap::new();
    let (before, _) = desired_for(
        &p,
        &directory(vec![person("dee", &["eng"], PersonStatus::Active)]),
    );
    let first = plan_of(&before, &actual, &managed, &p, now());
    apply(&mut actual, &mut managed, &first, now());

    let plan = plan_of(&d, &actual, &managed, &p, now());
    let suspend = plan
        .ops
        .iter()
        .find(|o| o.op.kind() == "suspend")
        .expect("suspend planned");
    assert_eq!(&*suspend.reason, "leaver: suspended in the directory");
    apply(&mut actual, &mut managed, &plan, now());
    assert!(
        plan_of(&d, &actual, &managed, &p, now() + chrono::Duration::days(6))
            .ops
            .is_empty()
    );
    let later = plan_of(&d, &actual, &managed, &p, now() + chrono::Duration::days(7));
    assert_eq!(later.ops.len(), 1);
    assert_eq!(later.ops[0].op.kind(), "delete");
}

#[test]
fn a_suspended_person_in_scope_loses_an_account_airlock_never_managed() {
    let p = policy();
    let (d, _) = desired_for(
        &p,
        &directory(vec![person(
            "hedy",
            &["analytics"],
            PersonStatus::Suspended,
        )]),
    );
    let hand_made = Account {
        username: user("hedy@example.com"),
        email: "hedy@example.com".into(),
        first_name: "Hedy".into(),
        last_name: "L".into(),
        roles: [role("Viewer")].into(),
        active: true,
        last_login: None,
        login_count: None,
        fail_login_count: None,
        created_on: None,
        changed_on: None,
    };
    let actual = ActualInstance {
        accounts: vec![hand_made],
        roles: builtin_roles(),
        catalog: None,
    };
    let plan = plan_of(&d, &actual, &BTreeMap::new(), &p, now());
    let suspend = plan
        .ops
        .iter()
        .find(|o| o.op.kind() == "suspend")
        .expect("suspended");
    assert_eq!(&*suspend.reason, "leaver: suspended in the directory");
    assert!(plan.unmanaged.is_empty());
}

#[test]
fn unmanaged_and_protected_accounts_are_reported_not_touched() {
    let p = policy();
    let (d, _) = desired_for(&p, &directory(vec![]));
    let stray = |n: &str| Account {
        username: user(n),
        email: format!("{n}@x"),
        first_name: "a".into(),
        last_name: "b".into(),
        roles: [role("Admin")].into(),
        active: true,
        last_login: None,
        login_count: None,
        fail_login_count: None,
        created_on: None,
        changed_on: None,
    };
    let actual = ActualInstance {
        accounts: vec![stray("admin"), stray("hand-made")],
        roles: builtin_roles(),
        catalog: None,
    };
    let plan = plan_of(&d, &actual, &BTreeMap::new(), &p, now());
    assert!(plan
        .ops
        .iter()
        .all(|o| o.op.kind() == "create_role" || o.op.target() == "account svc-ci"));
    assert_eq!(plan.unmanaged, vec![user("hand-made")]);
}

#[test]
fn permissions_missing_on_the_instance_are_reported_and_left_out() {
    let p = policy();
    let (d, _) = desired_for(&p, &directory(vec![]));
    let actual = ActualInstance {
        accounts: vec![],
        roles: builtin_roles(),
        catalog: Some([Permission::new("can_read", "DAG:marketing")].into()),
    };
    let plan = plan_of(&d, &actual, &BTreeMap::new(), &p, now());
    match &plan.ops[0].op {
        Op::CreateRole { permissions, .. } => assert_eq!(permissions.len(), 1),
        other => panic!("expected create_role, got {other:?}"),
    }
    assert!(
        plan.warnings[0]
            .message
            .contains("can_edit on DAG:marketing"),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn two_people_with_one_username_get_no_account_and_a_warning() {
    let p = policy();
    let mut a = person("ada", &["eng"], PersonStatus::Active);
    let mut b = person("ada2", &["eng"], PersonStatus::Active);
    a.email = Some("Ada@example.com".into());
    b.email = Some("ada@example.com".into());
    let (d, w) = desired_for(&p, &directory(vec![a, b]));
    assert!(!d.accounts.contains_key(&user("ada@example.com")));
    assert!(d.conflicts.contains(&user("ada@example.com")));
    assert!(w.iter().any(|w| w.message.contains("all map to username")));
}

/// The attack: a person who can edit their own email sets it to someone else's. The holder
/// must keep their account and roles (no suspension as a "leaver"), and nothing is created or
/// changed for the contested username until the directory is fixed.
#[test]
fn claiming_someone_elses_username_changes_nothing_for_it() {
    let p = policy();
    let mut ada = person("ada", &["eng"], PersonStatus::Active);
    ada.email = Some("ada@example.com".into());
    let mut actual = ActualInstance {
        accounts: vec![],
        roles: builtin_roles(),
        catalog: Some(catalog()),
    };
    let mut managed = BTreeMap::new();
    let (before, _) = desired_for(&p, &directory(vec![ada.clone()]));
    let first = plan_of(&before, &actual, &managed, &p, now());
    apply(&mut actual, &mut managed, &first, now());
    let held = actual.accounts[0].roles.clone();
    assert!(!held.is_empty());

    let mut mallory = person("mallory", &["eng"], PersonStatus::Active);
    mallory.email = Some("ADA@example.com".into());
    let (d, w) = desired_for(&p, &directory(vec![ada, mallory]));
    let plan = plan_of(&d, &actual, &managed, &p, now());
    assert!(plan.ops.is_empty(), "{:?}", plan.ops);
    assert!(w.iter().any(|w| w.message.contains("changes nothing for")));
    apply(&mut actual, &mut managed, &plan, now());
    assert_eq!(actual.accounts[0].roles, held);
}

// ---- properties ----

fn arb_person() -> impl Strategy<Value = Person> {
    (
        "[a-f]{1,3}",
        proptest::collection::btree_set(
            prop::sample::select(vec!["eng", "analytics", "everyone", "other"]),
            0..3,
        ),
        prop::sample::select(vec![
            PersonStatus::Active,
            PersonStatus::Active,
            PersonStatus::Suspended,
            PersonStatus::Staged,
        ]),
        prop::bool::ANY,
    )
        .prop_map(|(id, groups, status, renamed)| {
            let mut p = person(&id, &groups.into_iter().collect::<Vec<_>>(), status);
            if renamed {
                p.last_name = Some(format!("{id}-renamed"));
            }
            p
        })
}

fn arb_account() -> impl Strategy<Value = Account> {
    (
        prop::sample::select(vec!["a", "b", "c", "d", "e", "admin", "svc-ci", "zz"]),
        prop::bool::ANY,
        proptest::collection::btree_set(
            prop::sample::select(vec!["Op", "Viewer", "Admin", "marketing-analyst"]),
            0..3,
        ),
    )
        .prop_map(|(n, as_email, roles)| {
            let name = if as_email && n.len() == 1 {
                format!("{n}@example.com")
            } else {
                n.to_string()
            };
            Account {
                username: user(&name),
                email: format!("{name}-x@example.com"),
                first_name: "First".into(),
                last_name: "Old".into(),
                roles: roles.into_iter().map(role).collect(),
                active: true,
                last_login: None,
                login_count: None,
                fail_login_count: None,
                created_on: None,
                changed_on: None,
            }
        })
}

fn arb_world() -> impl Strategy<
    Value = (
        DirectorySnapshot,
        ActualInstance,
        BTreeMap<Username, ManagedRecord>,
    ),
> {
    (
        proptest::collection::vec(arb_person(), 0..8),
        proptest::collection::vec(arb_account(), 0..8),
        proptest::collection::btree_set(
            prop::sample::select(vec![
                "a@example.com",
                "b",
                "c@example.com",
                "zz",
                "admin",
                "e",
            ]),
            0..4,
        ),
        prop::bool::ANY,
    )
        .prop_map(|(people, accounts, managed, suspended)| {
            let mut dedup: BTreeMap<Username, Account> = BTreeMap::new();
            for a in accounts {
                dedup.insert(a.username.clone(), a);
            }
            let mut roles = builtin_roles();
            roles.push(Role {
                name: role("marketing-analyst"),
                permissions: [Permission::new("can_read", "DAGs")].into(),
            });
            let managed = managed
                .into_iter()
                .map(|u| {
                    (
                        user(u),
                        ManagedRecord {
                            suspended_at: suspended.then(|| now() - chrono::Duration::days(30)),
                        },
                    )
                })
                .collect();
            (
                directory(people),
                ActualInstance {
                    accounts: dedup.into_values().collect(),
                    roles,
                    catalog: Some(catalog()),
                },
                managed,
            )
        })
}

proptest! {
    #[test]
    fn planning_the_desired_state_against_itself_is_empty((dir, _, _) in arb_world()) {
        let p = policy();
        let (d, _) = desired_for(&p, &dir);
        let mut actual = ActualInstance { accounts: vec![], roles: builtin_roles(), catalog: Some(catalog()) };
        let mut managed = BTreeMap::new();
        let first = plan_of(&d, &actual, &managed, &p, now());
        apply(&mut actual, &mut managed, &first, now());
        prop_assert!(plan_of(&d, &actual, &managed, &p, now()).ops.is_empty());
    }

    #[test]
    fn applying_a_plan_and_planning_again_is_empty((dir, actual, managed) in arb_world()) {
        let p = policy();
        let (d, _) = desired_for(&p, &dir);
        let (mut actual, mut managed) = (actual, managed);
        let plan = plan_of(&d, &actual, &managed, &p, now());
        apply(&mut actual, &mut managed, &plan, now());
        let again = plan_of(&d, &actual, &managed, &p, now());
        prop_assert!(again.ops.is_empty(), "second plan: {:?}", again.ops);
    }

    #[test]
    fn protected_and_unmanaged_accounts_never_appear_in_a_plan((dir, actual, managed) in arb_world()) {
        let p = policy();
        let (d, _) = desired_for(&p, &dir);
        let plan = plan_of(&d, &actual, &managed, &p, now() + chrono::Duration::days(365));
        for op in &plan.ops {
            let target = op.op.target();
            for protected in &p.protected {
                prop_assert_ne!(&target, &format!("account {protected}"));
            }
            prop_assert_ne!(&target, "account airlock");
            if let Some(name) = target.strip_prefix("account ") {
                let u = user(name);
                prop_assert!(
                    d.accounts.contains_key(&u) || managed.contains_key(&u) || d.inactive_in_scope.contains(&u),
                    "{} touched but unmanaged", u
                );
            }
        }
        for u in &plan.unmanaged {
            prop_assert!(!managed.contains_key(u) && !d.accounts.contains_key(u) && !d.inactive_in_scope.contains(u));
        }
    }

    #[test]
    fn plans_are_deterministic((dir, actual, managed) in arb_world()) {
        let p = policy();
        let (d, _) = desired_for(&p, &dir);
        let mut shuffled = actual.clone();
        shuffled.accounts.reverse();
        shuffled.roles.reverse();
        prop_assert_eq!(plan_of(&d, &actual, &managed, &p, now()), plan_of(&d, &shuffled, &managed, &p, now()));
    }
}

/// An approved grant of `roles` to `who` on `prod`, from `now()` for `secs`.
fn grant(id: &str, who: &str, roles: &[&str], secs: i64) -> crate::access::AccessRequest {
    use crate::access::{AccessRequest, RequestId, State};
    AccessRequest {
        id: RequestId(id.into()),
        requester: PersonId(who.into()),
        roles: roles.iter().map(|r| role(r)).collect(),
        instances: [inst()].into(),
        duration_secs: secs,
        reason: Some("incident".into()),
        ticket: None,
        extends: None,
        created_at: now(),
        pending_until: now() + chrono::Duration::hours(24),
        approvals: vec![],
        state: State::Approved {
            approved_at: now(),
            expires_at: now() + chrono::Duration::seconds(secs),
            auto: false,
        },
        expiring_noted_at: None,
    }
}

fn desired_with_grants(
    p: &Policy,
    dir: &DirectorySnapshot,
    grants: &[crate::access::AccessRequest],
    at: DateTime<Utc>,
) -> (DesiredInstance, Vec<Warning>) {
    let name = inst();
    let labels = BTreeMap::new();
    let refs = [InstanceRef {
        name: &name,
        labels: &labels,
        airlock_user: "airlock",
    }];
    let (mut d, _) = desired(p, dir, &refs);
    let w = with_grants(p, dir, &refs, grants, at, &mut d);
    (d.remove(&name).expect("instance"), w)
}

#[test]
fn a_grant_adds_its_roles_until_it_expires_and_expiry_removes_exactly_those() {
    let p = policy();
    let dir = directory(vec![
        person("ada", &["eng"], PersonStatus::Active),
        person("eve", &[], PersonStatus::Active),
    ]);
    // ada has Op from her group; her grant adds Admin and repeats Op. eve has no access but
    // her grant's.
    let grants = [
        grant("g1", "ada", &["Admin", "Op"], 3600),
        grant("g2", "eve", &["Op"], 1800),
    ];
    let (d, warnings) = desired_with_grants(&p, &dir, &grants, now());
    assert!(warnings.is_empty(), "{warnings:?}");
    let ada = &d.accounts[&user("ada@example.com")];
    assert_eq!(*ada.roles, [role("Admin"), role("Op")].into());
    assert_eq!(
        &*ada.reason,
        "group eng grants Op; access grant g1 (Admin, Op) until 2026-11-01T13:00:00Z"
    );
    let eve = &d.accounts[&user("eve@example.com")];
    assert_eq!(*eve.roles, [role("Op")].into());
    assert!(!d.excluded.contains_key(&user("eve@example.com")));

    // Provision it, then plan at each expiry.
    let mut actual = ActualInstance {
        accounts: vec![],
        roles: builtin_roles(),
        catalog: Some(catalog()),
    };
    let mut managed = BTreeMap::new();
    let plan = plan_of(&d, &actual, &managed, &p, now());
    apply(&mut actual, &mut managed, &plan, now());
    assert!(plan_of(&d, &actual, &managed, &p, now()).ops.is_empty());

    // At eve's expiry her account, which only the grant wanted, is suspended; ada keeps Admin.
    let at = now() + chrono::Duration::seconds(1800);
    let (d, _) = desired_with_grants(&p, &dir, &grants, at);
    let plan = plan_of(&d, &actual, &managed, &p, at);
    let ops: Vec<(&str, String)> = plan
        .ops
        .iter()
        .map(|o| (o.op.kind(), o.op.target()))
        .collect();
    assert_eq!(
        ops,
        vec![("suspend", "account eve@example.com".to_string())]
    );
    apply(&mut actual, &mut managed, &plan, at);

    // At ada's, Admin goes and the Op her group gives stays.
    let at = now() + chrono::Duration::seconds(3600);
    let (d, _) = desired_with_grants(&p, &dir, &grants, at);
    let plan = plan_of(&d, &actual, &managed, &p, at);
    assert_eq!(plan.ops.len(), 1, "{:?}", plan.ops);
    match &plan.ops[0].op {
        Op::SetRoles { username, from, to } => {
            assert_eq!(username, &user("ada@example.com"));
            assert_eq!(**from, [role("Admin"), role("Op")].into());
            assert_eq!(**to, [role("Op")].into());
        }
        other => panic!("expected set_roles, got {other:?}"),
    }
}

#[test]
fn grants_never_reach_protected_service_or_contested_accounts_nor_leavers() {
    let mut p = policy();
    p.username.source = UsernameSource::DirectoryUsername;
    let mut twin = person("ada2", &["eng"], PersonStatus::Active);
    twin.username = "ada".into();
    let dir = directory(vec![
        person("admin", &[], PersonStatus::Active),
        person("airlock", &[], PersonStatus::Active),
        person("svc-ci", &[], PersonStatus::Active),
        person("ada", &["eng"], PersonStatus::Active),
        twin,
        person("dee", &["eng"], PersonStatus::Suspended),
    ]);
    let grants: Vec<_> = ["admin", "airlock", "svc-ci", "ada", "dee", "nobody"]
        .iter()
        .map(|who| grant(&format!("g-{who}"), who, &["Admin"], 3600))
        .collect();
    let (plain, _) = desired_for(&p, &dir);
    let (d, warnings) = desired_with_grants(&p, &dir, &grants, now());
    assert_eq!(d, plain, "no grant may change anything here");
    let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "access grant g-ada is not applied to ada: several people map to this username",
            "access grant g-admin is not applied to admin: it is protected",
            "access grant g-airlock is not applied to airlock: it is protected",
            "access grant g-svc-ci is not applied to svc-ci: it is a service account",
        ]
    );
}

#[test]
fn grants_that_are_over_or_elsewhere_change_nothing() {
    let p = policy();
    let dir = directory(vec![person("eve", &[], PersonStatus::Active)]);
    let mut denied = grant("g1", "eve", &["Admin"], 3600);
    denied.state = crate::access::State::Denied {
        by: PersonId("boss".into()),
        at: now(),
        comment: None,
    };
    let mut elsewhere = grant("g2", "eve", &["Admin"], 3600);
    elsewhere.instances = [InstanceName::new("staging").expect("valid")].into();
    let expired = grant("g3", "eve", &["Admin"], 60);
    let at = now() + chrono::Duration::seconds(60);
    let (plain, _) = desired_for(&p, &dir);
    let (d, warnings) = desired_with_grants(&p, &dir, &[denied, elsewhere, expired], at);
    assert_eq!(d, plain);
    assert!(warnings.is_empty());
}
