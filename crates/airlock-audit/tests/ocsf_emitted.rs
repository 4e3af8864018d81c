//! Every OCSF event airlock can emit validates against the vendored OCSF 1.8.0 schema
//! (`tests/ocsf/schema.rs`): each operation kind, with each outcome, with the `before`/`after`
//! and target the engine, the store and the SCIM endpoint record for it, and with hostile text
//! in every value.

#[path = "ocsf/schema.rs"]
mod schema;

use airlock_audit::{ocsf, operation as op, seal, NewEvent, Outcome, Target, OPERATIONS};
use serde_json::{json, Value};

/// What airlock records for `operation`: its target, before and after.
fn recorded(operation: &str, text: &str) -> (Option<Target>, Option<Value>, Option<Value>) {
    let account = || {
        Some(Target::Account {
            username: format!("ann{text}"),
        })
    };
    let role = || {
        Some(Target::Role {
            name: format!("Op{text}"),
        })
    };
    let perm = |a: &str| json!({ "action": a, "resource": format!("DAG:etl{text}") });
    let request = |state: Value| {
        Some(json!({
            "requester": format!("ann{text}"), "roles": ["Op", format!("R{text}")],
            "instances": ["prod", format!("i{text}")], "duration_secs": 3600,
            "reason": text, "ticket": null, "extends": null, "approvals": ["sid"], "state": state,
        }))
    };
    let approved = json!({"state": "approved", "approved_at": "2026-12-04T10:00:00Z",
                          "expires_at": "2026-12-04T11:00:00Z", "auto": false});
    let scim = |t: &str| {
        Some(Target::ScimResource {
            resource_type: t.into(),
            id: format!("id{text}"),
        })
    };
    match operation {
        op::ACCOUNT_SET_ROLES => (
            account(),
            Some(json!({"roles": ["Viewer", "Op"]})),
            Some(json!({"roles": ["Viewer", format!("Admin{text}")]})),
        ),
        op::ACCOUNT_CREATE => (
            account(),
            None,
            Some(json!({"email": text, "roles": ["Viewer"]})),
        ),
        op::ACCOUNT_SUSPEND => (
            account(),
            Some(json!({"roles": ["Op"]})),
            Some(json!({"roles": [], "password": "rotated"})),
        ),
        op::ACCOUNT_LOGIN | op::BREAK_GLASS_USE => (
            account(),
            None,
            Some(
                json!({"window": {"from": "2026-12-04T10:00:00Z", "to": "2026-12-04T10:05:00.250Z"},
                        "last_login": "2026-12-04T10:03:00Z", "logins": 2, "derived": true}),
            ),
        ),
        o if o.starts_with("account.") => (account(), None, None),
        op::ROLE_UPDATE => (
            role(),
            Some(json!({"remove": [perm("can_edit")]})),
            Some(json!({"add": [perm("can_read"), perm("can_delete")]})),
        ),
        op::ROLE_CREATE => (
            role(),
            None,
            Some(json!({"permissions": [perm("can_read")]})),
        ),
        op::ROLE_DELETE => (role(), None, None),
        op::ACCESS_REQUEST_APPROVE
        | op::ACCESS_REQUEST_AUTO_APPROVE
        | op::ACCESS_GRANT_EXPIRING => (
            Some(Target::AccessRequest {
                id: format!("r{text}"),
            }),
            None,
            request(approved),
        ),
        o if o.starts_with("access_") => (
            Some(Target::AccessRequest {
                id: format!("r{text}"),
            }),
            None,
            request(json!({"state": "pending"})),
        ),
        o if o.starts_with("scim_user.") => (scim("User"), None, Some(json!({"userName": text}))),
        o if o.starts_with("scim_group.") => {
            (scim("Group"), None, Some(json!({"displayName": text})))
        }
        o if o.starts_with("scim_token.") => (
            Some(Target::ScimClient {
                client: format!("okta{text}"),
            }),
            None,
            None,
        ),
        o if o.starts_with("api_token.") => (
            Some(Target::ApiToken {
                name: format!("bot{text}"),
            }),
            None,
            Some(json!({"scopes": ["audit:read"]})),
        ),
        _ => (Some(Target::Run), None, None),
    }
}

#[test]
fn every_event_airlock_can_emit_is_valid_ocsf_1_8_0() {
    let schema = schema::Schema::load();
    let outcomes = [
        Outcome::Succeeded,
        Outcome::Failed {
            error: "HTTP 500 \"x\"\n".into(),
        },
        Outcome::Refused {
            rail: "max_deprovisions".into(),
        },
        Outcome::Planned,
    ];
    let mut emitted = 0;
    let mut classes = std::collections::BTreeSet::new();
    for operation in OPERATIONS {
        for text in ["", "|=]\"\\\n\u{0}<script>é"] {
            for outcome in &outcomes {
                for actor in ["airlock", "person:sid", "scim:okta", "operator:root"] {
                    let (target, before, after) = recorded(operation, text);
                    let mut e =
                        NewEvent::new(chrono::Utc::now(), actor, *operation, outcome.clone());
                    e.target = target;
                    e.before = before;
                    e.after = after;
                    e.instance = Some(format!("prod{text}"));
                    e.reason = Some(format!("because{text}"));
                    e.run_id = Some("run-1".into());
                    let event = seal(None, 7, e);
                    for o in ocsf::encode(&event) {
                        let problems = schema.validate(&o);
                        assert!(
                            problems.is_empty(),
                            "{operation} ({outcome:?}): {problems:#?}\n{o:#}"
                        );
                        classes.insert(o["class_uid"].as_u64().unwrap_or(0));
                        emitted += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        classes.into_iter().collect::<Vec<_>>(),
        [3001, 3002, 3005, 3006, 6003],
        "the classes airlock emits"
    );
    assert!(emitted > 500, "{emitted}");
}

#[test]
fn set_roles_and_role_updates_become_one_event_per_role_and_permission() {
    let e = |operation: &str| {
        let (target, before, after) = recorded(operation, "");
        let mut n = NewEvent::new(chrono::Utc::now(), "airlock", operation, Outcome::Succeeded);
        n.target = target;
        n.before = before;
        n.after = after;
        seal(None, 1, n)
    };
    let roles = ocsf::encode(&e(op::ACCOUNT_SET_ROLES));
    let got: Vec<(u64, &str)> = roles
        .iter()
        .map(|o| {
            (
                o["activity_id"].as_u64().unwrap_or(0),
                o["group"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(got, [(3, "Admin"), (4, "Op")], "Admin added, Op removed");
    let perms = ocsf::encode(&e(op::ROLE_UPDATE));
    let got: Vec<(u64, Value)> = perms
        .iter()
        .map(|o| {
            (
                o["activity_id"].as_u64().unwrap_or(0),
                o["privileges"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, json!(["can_read on DAG:etl"])),
            (1, json!(["can_delete on DAG:etl"])),
            (2, json!(["can_edit on DAG:etl"]))
        ]
    );
    assert!(
        ocsf::encode(&e(op::RUN_START)).is_empty(),
        "bookkeeping is not shipped"
    );
}
