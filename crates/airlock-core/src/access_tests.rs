use super::*;
use crate::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0)
        .single()
        .expect("date")
}

fn id(s: &str) -> PersonId {
    PersonId(s.into())
}

fn person(name: &str, groups: &[&str], status: PersonStatus) -> Person {
    Person {
        id: id(name),
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        first_name: None,
        last_name: None,
        status,
        groups: groups.iter().map(|g| GroupName((*g).into())).collect(),
    }
}

fn directory() -> DirectorySnapshot {
    let people = vec![
        person("ada", &["eng"], PersonStatus::Active),
        person("bob", &["eng", "sre"], PersonStatus::Active),
        person("cy", &["sre"], PersonStatus::Active),
        person("dee", &["sre"], PersonStatus::Active),
        person("lead", &[], PersonStatus::Active),
        person("olly", &["eng", "oncall"], PersonStatus::Active),
        person("gov", &["governance"], PersonStatus::Active),
        person("aud", &["audit"], PersonStatus::Active),
        person("sam", &["sre"], PersonStatus::Suspended),
        person("out", &["sales"], PersonStatus::Active),
    ];
    DirectorySnapshot {
        people: people.into_iter().map(|p| (p.id.clone(), p)).collect(),
        groups: BTreeSet::new(),
    }
}

fn names(names: &[&str]) -> BTreeSet<InstanceName> {
    names
        .iter()
        .map(|n| InstanceName::new(*n).expect("valid"))
        .collect()
}

fn roles(names: &[&str]) -> BTreeSet<RoleName> {
    names
        .iter()
        .map(|n| RoleName::new(*n).expect("valid"))
        .collect()
}

fn groups(names: &[&str]) -> BTreeSet<GroupName> {
    names.iter().map(|g| GroupName((*g).into())).collect()
}

/// Admin on prod needs two of sre (or the named lead); Viewer anywhere is approved at once.
fn policy() -> AccessPolicy {
    AccessPolicy {
        expiring_notice_secs: 900,
        rules: vec![
            AccessRule {
                roles: roles(&["Admin", "Op"]),
                instances: InstanceSelector {
                    names: BTreeSet::new(),
                    labels: [("env".to_string(), "prod".to_string())].into(),
                },
                requesters: groups(&["eng"]),
                approvers: Approvers {
                    groups: groups(&["sre"]),
                    people: ["LEAD@example.com".to_string()].into(),
                },
                approvals: 2,
                max_secs: 8 * 3600,
                default_secs: 3600,
                reason_required: true,
                pending_secs: 86_400,
                auto_approve: groups(&["oncall"]),
            },
            AccessRule {
                roles: roles(&["Viewer"]),
                instances: InstanceSelector::default(),
                requesters: BTreeSet::new(),
                approvers: Approvers::default(),
                approvals: 0,
                max_secs: 86_400,
                default_secs: 3600,
                reason_required: false,
                pending_secs: 3600,
                auto_approve: BTreeSet::new(),
            },
        ],
        admins: groups(&["governance"]),
        auditors: groups(&["audit"]),
    }
}

struct World {
    policy: AccessPolicy,
    directory: DirectorySnapshot,
    prod: BTreeMap<String, String>,
    staging: BTreeMap<String, String>,
    names: BTreeSet<InstanceName>,
}

impl World {
    fn new() -> Self {
        Self {
            policy: policy(),
            directory: directory(),
            prod: [("env".to_string(), "prod".to_string())].into(),
            staging: [("env".to_string(), "staging".to_string())].into(),
            names: names(&["prod-eu", "prod-us", "staging"]),
        }
    }

    fn labels(&self) -> Labels<'_> {
        self.names
            .iter()
            .map(|n| {
                let l = if n.as_str() == "staging" {
                    &self.staging
                } else {
                    &self.prod
                };
                (n, l)
            })
            .collect()
    }

    fn open(&self, who: &str, draft: Draft) -> Result<AccessRequest, Refusal> {
        open(
            &self.policy,
            &self.labels(),
            &self.directory,
            &id(who),
            draft,
            RequestId("r1".into()),
            now(),
        )
    }

    fn approve(
        &self,
        r: &AccessRequest,
        who: &str,
        at: DateTime<Utc>,
    ) -> Result<AccessRequest, Refusal> {
        approve(
            &self.policy,
            &self.labels(),
            &self.directory,
            r,
            &id(who),
            None,
            at,
        )
    }

    fn may(&self, who: &str, action: Action<'_>) -> bool {
        authorize(
            &self.policy,
            &self.labels(),
            &self.directory,
            &id(who),
            action,
        )
        .is_ok()
    }
}

fn admin_on_prod() -> Draft {
    Draft {
        roles: roles(&["Admin"]),
        instances: names(&["prod-eu", "prod-us"]),
        duration_secs: Some(7200),
        reason: Some("incident INC-42".into()),
        ticket: Some("INC-42".into()),
        extends: None,
    }
}

#[test]
fn two_distinct_approvers_make_a_grant_that_starts_at_the_last_approval() {
    let w = World::new();
    let r = w.open("ada", admin_on_prod()).expect("opened");
    assert_eq!(r.state, State::Pending);
    assert_eq!(r.pending_until, now() + Duration::hours(24));
    let later = now() + Duration::minutes(10);
    let r = w.approve(&r, "cy", now()).expect("first approval");
    assert_eq!(r.state, State::Pending, "one of two approvals");
    assert_eq!(
        w.approve(&r, "cy", later),
        Err(Refusal::Forbidden(
            "cy has already approved request r1".into()
        ))
    );
    // The named approver matches by email, ignoring case.
    let r = w.approve(&r, "lead", later).expect("second approval");
    assert_eq!(
        r.state,
        State::Approved {
            approved_at: later,
            expires_at: later + Duration::seconds(7200),
            auto: false
        }
    );
    assert_eq!(r.active_at(later), Some(later + Duration::seconds(7200)));
    assert_eq!(r.active_at(later + Duration::seconds(7200)), None);
    assert!(matches!(
        w.approve(&r, "dee", later),
        Err(Refusal::WrongState {
            state: "approved",
            ..
        })
    ));
}

#[test]
fn nobody_approves_their_own_request_nor_one_they_are_not_approver_of() {
    let w = World::new();
    // bob is an sre and may request (eng): his own request needs two others.
    let r = w.open("bob", admin_on_prod()).expect("opened");
    assert_eq!(
        w.approve(&r, "bob", now()),
        Err(Refusal::Forbidden(
            "nobody approves or denies their own request".into()
        ))
    );
    assert!(matches!(
        w.approve(&r, "ada", now()),
        Err(Refusal::Forbidden(_))
    ));
    assert!(
        matches!(w.approve(&r, "gov", now()), Err(Refusal::Forbidden(_))),
        "admins approve only where a rule names them"
    );
    assert_eq!(
        w.approve(&r, "sam", now()),
        Err(Refusal::NotInDirectory(id("sam"))),
        "a suspended approver"
    );
    assert_eq!(
        w.approve(&r, "ghost", now()),
        Err(Refusal::NotInDirectory(id("ghost")))
    );
    assert!(!w.may("bob", Action::Decide(&r)));
    assert!(w.may("cy", Action::Decide(&r)));
}

#[test]
fn requests_beyond_the_rules_are_refused_with_what_to_fix() {
    let w = World::new();
    let with = |f: fn(&mut Draft)| {
        let mut d = admin_on_prod();
        f(&mut d);
        d
    };
    assert!(
        matches!(w.open("out", admin_on_prod()), Err(Refusal::NoRule { .. })),
        "not a requester"
    );
    assert!(
        matches!(
            w.open(
                "ada",
                with(|d| d.instances = names(&["prod-eu", "staging"]))
            ),
            Err(Refusal::NoRule { .. })
        ),
        "Admin on staging is nobody's to ask for"
    );
    assert!(
        matches!(
            w.open("ada", with(|d| d.roles = roles(&["Admin", "Viewer"]))),
            Err(Refusal::NoRule { .. })
        ),
        "no one rule covers both"
    );
    assert_eq!(
        w.open("ada", with(|d| d.duration_secs = Some(8 * 3600 + 1))),
        Err(Refusal::TooLong {
            asked: 8 * 3600 + 1,
            max: 8 * 3600
        })
    );
    assert!(matches!(
        w.open("ada", with(|d| d.duration_secs = Some(0))),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(
        w.open("ada", with(|d| d.reason = Some("   ".into()))),
        Err(Refusal::ReasonRequired)
    );
    assert!(matches!(
        w.open("ada", with(|d| d.reason = Some("a\u{1b}[2Jb".into()))),
        Err(Refusal::Invalid(_))
    ));
    assert!(matches!(
        w.open("ada", with(|d| d.reason = Some("x".repeat(MAX_TEXT + 1)))),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(
        w.open("ada", with(|d| d.instances = names(&["nowhere"]))),
        Err(Refusal::Invalid("no instance is named `nowhere`".into()))
    );
    assert!(matches!(
        w.open("ada", with(|d| d.roles.clear())),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(
        w.open("sam", admin_on_prod()),
        Err(Refusal::NotInDirectory(id("sam")))
    );
    // The default duration applies when none is named.
    let r = w
        .open("ada", with(|d| d.duration_secs = None))
        .expect("opened");
    assert_eq!(r.duration_secs, 3600);
}

#[test]
fn on_call_members_and_low_risk_roles_are_approved_at_once() {
    let w = World::new();
    let r = w.open("olly", admin_on_prod()).expect("opened");
    assert_eq!(
        r.state,
        State::Approved {
            approved_at: now(),
            expires_at: now() + Duration::seconds(7200),
            auto: true
        }
    );
    let viewer = Draft {
        roles: roles(&["Viewer"]),
        instances: names(&["staging"]),
        ..Draft::default()
    };
    let r = w.open("out", viewer).expect("opened");
    assert!(matches!(r.state, State::Approved { auto: true, .. }));
}

#[test]
fn time_lapses_pending_requests_and_expires_grants_and_leavers_lose_theirs() {
    let mut w = World::new();
    let r = w.open("ada", admin_on_prod()).expect("opened");
    let day = now() + Duration::hours(24);
    assert_eq!(lapse(&w.directory, &r, day - Duration::seconds(1)), None);
    assert!(
        matches!(
            w.approve(&r, "cy", day),
            Err(Refusal::WrongState {
                state: "lapsed",
                ..
            })
        ),
        "approving a request past its pending time"
    );
    assert_eq!(
        lapse(&w.directory, &r, day).map(|r| r.state),
        Some(State::Lapsed { at: day })
    );

    let r = w
        .approve(&r, "cy", now())
        .and_then(|r| w.approve(&r, "dee", now()))
        .expect("granted");
    let end = now() + Duration::seconds(7200);
    assert_eq!(lapse(&w.directory, &r, end - Duration::seconds(1)), None);
    assert_eq!(
        lapse(&w.directory, &r, end).map(|r| r.state),
        Some(State::Expired {
            approved_at: now(),
            expires_at: end
        })
    );
    // A grant that expired while nobody looked is expired when next looked at, however late.
    assert!(matches!(
        lapse(&w.directory, &r, end + Duration::days(3)).map(|r| r.state),
        Some(State::Expired { .. })
    ));

    w.directory.people.get_mut(&id("ada")).expect("ada").status = PersonStatus::Suspended;
    let later = now() + Duration::minutes(5);
    assert!(matches!(
        lapse(&w.directory, &r, later).map(|r| r.state),
        Some(State::Revoked { by: None, .. })
    ));
}

#[test]
fn deny_cancel_and_revoke_each_have_their_people() {
    let w = World::new();
    let (l, d) = (w.labels(), &w.directory);
    let r = w.open("ada", admin_on_prod()).expect("opened");
    assert!(matches!(
        cancel(&r, &id("cy"), now()),
        Err(Refusal::Forbidden(_))
    ));
    let cancelled = cancel(&r, &id("ada"), now()).expect("cancelled");
    assert_eq!(cancelled.state, State::Cancelled { at: now() });
    assert!(matches!(
        cancel(&cancelled, &id("ada"), now()),
        Err(Refusal::WrongState { .. })
    ));

    assert!(matches!(
        deny(&w.policy, &l, d, &r, &id("ada"), None, now()),
        Err(Refusal::Forbidden(_))
    ));
    let denied = deny(
        &w.policy,
        &l,
        d,
        &r,
        &id("cy"),
        Some("use staging".into()),
        now(),
    )
    .expect("denied");
    assert_eq!(
        denied.state,
        State::Denied {
            by: id("cy"),
            at: now(),
            comment: Some("use staging".into())
        }
    );
    assert!(matches!(
        w.approve(&denied, "dee", now()),
        Err(Refusal::WrongState {
            state: "denied",
            ..
        })
    ));

    let granted = w
        .approve(&r, "cy", now())
        .and_then(|r| w.approve(&r, "dee", now()))
        .expect("granted");
    for (who, allowed) in [
        ("ada", true),
        ("bob", true),
        ("gov", true),
        ("aud", false),
        ("out", false),
    ] {
        let revoked = revoke(&w.policy, &l, d, &granted, &id(who), None, now());
        assert_eq!(revoked.is_ok(), allowed, "{who}");
        assert_eq!(w.may(who, Action::Revoke(&granted)), allowed, "{who}");
    }
    let revoked = revoke(&w.policy, &l, d, &granted, &id("gov"), None, now()).expect("revoked");
    assert!(
        matches!(revoked.state, State::Revoked { by: Some(_), approved_at, .. } if approved_at == now())
    );
    assert!(matches!(
        revoke(&w.policy, &l, d, &revoked, &id("gov"), None, now()),
        Err(Refusal::WrongState { .. })
    ));
}

#[test]
fn reading_is_for_the_requester_their_approvers_auditors_and_admins() {
    let w = World::new();
    let r = w.open("ada", admin_on_prod()).expect("opened");
    for (who, read, all) in [
        ("ada", true, false),
        ("cy", true, false),
        ("lead", true, false),
        ("gov", true, true),
        ("aud", true, true),
        ("out", false, false),
        ("sam", false, false),
        ("ghost", false, false),
    ] {
        assert_eq!(w.may(who, Action::Read(&r)), read, "{who} reads");
        assert_eq!(w.may(who, Action::ReadAll), all, "{who} reads all");
        assert_eq!(w.may(who, Action::ReadAudit), all, "{who} reads the trail");
        assert_eq!(w.may(who, Action::ReadDirectory), all, "{who} reads people");
    }
    assert!(w.may("out", Action::Request));
    assert!(
        !w.may("sam", Action::Request),
        "deny by default: not active"
    );
    assert!(!w.may("aud", Action::Decide(&r)));
    assert!(!w.may("aud", Action::Cancel(&r)));
    assert!(w.may("ada", Action::Cancel(&r)));
}

#[test]
fn a_policy_change_applies_to_pending_requests() {
    let mut w = World::new();
    let r = w.open("ada", admin_on_prod()).expect("opened");
    w.policy.rules[0].approvers.groups.clear();
    assert!(matches!(
        w.approve(&r, "cy", now()),
        Err(Refusal::Forbidden(_))
    ));
    w.policy.rules.remove(0);
    assert!(matches!(
        w.approve(&r, "lead", now()),
        Err(Refusal::NoRule { .. })
    ));
}

#[test]
fn a_token_acts_within_its_scopes_and_never_beyond_its_person() {
    let w = World::new();
    let r = w.open("ada", admin_on_prod()).expect("opened");
    let labels = w.labels();
    let may = |person: Option<&str>, scopes: &[Scope], action: Action<'_>| {
        let who = person.map(id);
        let scopes: BTreeSet<Scope> = scopes.iter().copied().collect();
        authorize_caller(
            &w.policy,
            &labels,
            &w.directory,
            Caller::Token {
                person: who.as_ref(),
                scopes: &scopes,
            },
            action,
        )
        .is_ok()
    };
    // The person's rights, cut to the scopes.
    assert!(may(Some("cy"), &[Scope::Decide], Action::Decide(&r)));
    assert!(!may(Some("cy"), &[Scope::ReadRequests], Action::Decide(&r)));
    assert!(
        !may(Some("out"), &[Scope::Decide], Action::Decide(&r)),
        "not an approver"
    );
    assert!(
        !may(Some("ada"), &Scope::ALL, Action::Decide(&r)),
        "own request"
    );
    assert!(
        !may(Some("sam"), &Scope::ALL, Action::Request),
        "inactive person"
    );
    assert!(
        !may(Some("ghost"), &Scope::ALL, Action::Read(&r)),
        "unknown person"
    );
    assert!(may(Some("gov"), &[Scope::ReadAudit], Action::ReadAudit));
    assert!(!may(Some("out"), &[Scope::ReadAudit], Action::ReadAudit));
    // No person: reads what its scopes say, changes nothing.
    assert!(may(None, &[Scope::ReadRequests], Action::ReadAll));
    assert!(may(None, &[Scope::ReadDirectory], Action::ReadDirectory));
    assert!(!may(None, &[Scope::ReadRequests], Action::ReadAudit));
    for action in [
        Action::Request,
        Action::Decide(&r),
        Action::Cancel(&r),
        Action::Revoke(&r),
    ] {
        assert!(!may(None, &Scope::ALL, action), "{action:?}");
    }
}

#[test]
fn scopes_round_trip_by_name_and_unknown_ones_are_named() {
    for s in Scope::ALL {
        assert_eq!(Scope::parse(s.name()), Ok(s));
        assert_eq!(
            serde_json::to_value(s).expect("serializes"),
            serde_json::json!(s.name())
        );
    }
    let err = Scope::parse("requests:*").expect_err("unknown");
    assert!(
        err.contains("requests:*") && err.contains("audit:read"),
        "{err}"
    );
}

#[test]
fn a_grant_is_noted_as_expiring_once_within_the_notice() {
    let w = World::new();
    let r = w.open("ada", admin_on_prod()).expect("opened");
    let r = w.approve(&r, "cy", now()).expect("one");
    let r = w.approve(&r, "lead", now()).expect("approved");
    let State::Approved { expires_at, .. } = r.state else {
        panic!("approved: {:?}", r.state);
    };
    let early = expires_at - Duration::minutes(16);
    assert!(note_expiring(&w.policy, &r, early).is_none(), "not yet");
    let at = expires_at - Duration::minutes(15);
    let noted = note_expiring(&w.policy, &r, at).expect("noted");
    assert_eq!(noted.expiring_noted_at, Some(at));
    assert!(
        note_expiring(&w.policy, &noted, at + Duration::minutes(1)).is_none(),
        "once"
    );
    assert!(
        note_expiring(&w.policy, &r, expires_at).is_none(),
        "ended: nothing to note"
    );
    let mut off = w.policy.clone();
    off.expiring_notice_secs = 0;
    assert!(note_expiring(&off, &r, at).is_none(), "off");
}
