//! The JumpCloud source against a fixture on 127.0.0.1, and both checked against JumpCloud's own
//! Swagger descriptions: the fixture serves only documented routes and answers only documented
//! shapes, and the client sends only documented parameters and headers.

#[path = "jumpcloud/fixture.rs"]
mod fixture;
#[path = "jumpcloud/spec.rs"]
mod spec;

use std::collections::BTreeSet;
use std::time::Duration;

use airlock_core::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};
use airlock_directory::jumpcloud::{
    region_base_url, JumpCloudError, JumpCloudSettings, JumpCloudSource, Region,
};
use airlock_directory::{DirectoryError, Source};
use fixture::{Data, Fault, Fixture, Route, API_KEY};
use secrecy::SecretString;
use serde_json::{json, Value};
use spec::Spec;

fn settings_for(fixture: &Fixture) -> JumpCloudSettings {
    let mut settings = JumpCloudSettings::new(SecretString::from(API_KEY.to_owned()));
    settings.base_url = fixture.base_url();
    settings.timeout = Duration::from_secs(3);
    settings.max_retries = 3;
    settings.retry_base = Duration::from_millis(5);
    settings
}

fn source(settings: JumpCloudSettings) -> JumpCloudSource {
    JumpCloudSource::new(settings).expect("valid settings")
}

/// The snapshot `data` describes, by the documented rules, computed without the client.
fn expected(data: &Data) -> DirectorySnapshot {
    let mut snapshot = DirectorySnapshot::default();
    for u in &data.users {
        let flag = |name: &str| u[name].as_bool().unwrap_or(false);
        let text = |name: &str| {
            u[name]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let status = if flag("suspended") || flag("account_locked") {
            PersonStatus::Suspended
        } else {
            match u["state"].as_str() {
                Some("ACTIVATED") => PersonStatus::Active,
                Some("STAGED") => PersonStatus::Staged,
                None if flag("activated") => PersonStatus::Active,
                _ => PersonStatus::Suspended,
            }
        };
        let id = PersonId(
            u["_id"]
                .as_str()
                .expect("fixture users have ids")
                .to_owned(),
        );
        snapshot.people.insert(
            id.clone(),
            Person {
                id,
                username: text("username").expect("fixture users have usernames"),
                email: text("email"),
                first_name: text("firstname"),
                last_name: text("lastname"),
                status,
                groups: BTreeSet::new(),
            },
        );
    }
    for group in &data.groups {
        let name = GroupName(group.name.clone());
        for (member, _) in &group.members {
            snapshot
                .people
                .get_mut(&PersonId(member.clone()))
                .expect("fixture members are users")
                .groups
                .insert(name.clone());
        }
        snapshot.groups.insert(name);
    }
    snapshot
}

/// Requests a full read takes a route with pages of 100 and no faults.
fn baseline(data: &Data, route: Route) -> usize {
    match route {
        Route::Users => data.users.len().div_ceil(100).max(1),
        Route::Groups => data.groups.len() / 100 + 1,
        Route::Members => data.groups.iter().map(|g| g.members.len() / 100 + 1).sum(),
    }
}

fn assert_no_key(err: &JumpCloudError, key: &str) {
    let mut texts = vec![err.to_string(), format!("{err:?}")];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        texts.push(cause.to_string());
        source = cause.source();
    }
    for text in texts {
        assert!(!text.contains(key), "the key leaked into {text:?}");
    }
}

#[tokio::test]
async fn full_read_equals_the_expected_snapshot() {
    let fixture = Fixture::start(Data::standard()).await;
    let source = source(settings_for(&fixture));
    let snapshot = source.read().await.expect("full read");
    let data = fixture.data();
    assert_eq!(snapshot, expected(&data));

    // The dataset covers what it claims to.
    assert_eq!(snapshot.people.len(), 250);
    assert_eq!(snapshot.groups.len(), 106);
    assert!(snapshot.groups.contains(&GroupName("empty-group".into())));
    let statuses: BTreeSet<PersonStatus> = snapshot.people.values().map(|p| p.status).collect();
    assert_eq!(statuses.len(), 3, "active, suspended and staged people");
    let admins = GroupName("airflow-admins".into());
    let in_admins = snapshot
        .people
        .values()
        .filter(|p| p.groups.contains(&admins));
    assert_eq!(
        in_admins.count(),
        150,
        "a group of more than one member page"
    );

    for route in [Route::Users, Route::Groups, Route::Members] {
        assert_eq!(
            fixture.requests_to(route),
            baseline(&data, route),
            "{route:?}"
        );
    }
    assert_eq!(source.calls(), fixture.requests().len() as u64);
}

#[tokio::test]
async fn reads_the_same_with_next_links_everywhere_and_with_small_pages() {
    let fixture = Fixture::start(Data::standard()).await;
    fixture.set_links(Route::Members, true);
    let want = expected(&fixture.data());
    let snapshot = source(settings_for(&fixture))
        .read()
        .await
        .expect("read with links");
    assert_eq!(snapshot, want);

    let mut small = settings_for(&fixture);
    small.page_size = 7;
    let snapshot = source(small).read().await.expect("read with pages of 7");
    assert_eq!(snapshot, want);
    fixture.set_links(Route::Groups, false);
    fixture.set_links(Route::Members, false);
    let mut small = settings_for(&fixture);
    small.page_size = 7;
    let snapshot = source(small)
        .read()
        .await
        .expect("read with pages of 7, no links");
    assert_eq!(snapshot, want);
}

#[test]
fn every_fixture_route_exists_in_the_spec_with_its_method() {
    let spec = Spec::load();
    for (method, route) in fixture::ROUTES {
        let op = spec
            .operation(method, route)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format!("{}{}", op.api.base_path, op.template),
            *route,
            "the fixture's route template is the spec's"
        );
        assert!(op.response_schema().is_ok(), "{route} has a 200 schema");
    }
    let ids: Vec<String> = fixture::ROUTES
        .iter()
        .map(|(m, r)| spec.operation(m, r).expect("declared").id().to_owned())
        .collect();
    assert_eq!(ids, ["User_List", "UserGroup_List", "UserGroupMembers_Get"]);
}

#[tokio::test]
async fn client_sends_only_spec_declared_parameters_and_headers() {
    let spec = Spec::load();
    let fixture = Fixture::start_with(Data::standard(), Some("org-5e1f")).await;
    fixture.set_links(Route::Members, true);
    let mut settings = settings_for(&fixture);
    settings.org_id = Some("org-5e1f".into());
    source(settings).read().await.expect("full read");

    let requests = fixture.requests();
    assert!(!requests.is_empty());
    let mut names_by_route: Vec<(Route, BTreeSet<String>)> = Vec::new();
    for request in &requests {
        let op = spec
            .operation(&request.method, &request.path)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut problems = op.check_query(&request.query);
        problems.extend(op.check_headers(&request.headers));
        problems.extend(op.check_field_names(&request.query));
        assert!(problems.is_empty(), "{problems:#?}");

        let limit: u32 = request
            .query
            .iter()
            .find(|(k, _)| k == "limit")
            .map(|(_, v)| v.parse().expect("numeric limit"))
            .expect("every list request sends limit");
        assert!(
            (1..=100).contains(&limit),
            "jumpcloud serves at most 100 a page"
        );
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("accept"), Some("application/json"));
        assert_eq!(header("x-api-key"), Some("<redacted>"));
        assert_eq!(header("x-org-id"), Some("org-5e1f"));
        assert!(op.security_header("x-api-key").is_some());
        assert!(op.documents_org_id());

        let names = request.query.iter().map(|(k, _)| k.clone()).collect();
        names_by_route.push((request.route, names));
    }
    let sent = |route: Route| -> BTreeSet<String> {
        names_by_route
            .iter()
            .filter(|(r, _)| *r == route)
            .flat_map(|(_, n)| n.iter().cloned())
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        sent(Route::Users),
        set(&["fields", "limit", "skip", "sort"])
    );
    assert_eq!(
        sent(Route::Groups),
        set(&["fields", "limit", "skip", "sort"])
    );
    assert_eq!(sent(Route::Members), set(&["limit", "skip"]));
}

#[tokio::test]
async fn fixture_answers_validate_against_the_spec_response_schemas() {
    let spec = Spec::load();
    let fixture = Fixture::start(Data::standard()).await;
    fixture.set_links(Route::Members, true);
    source(settings_for(&fixture))
        .read()
        .await
        .expect("full read");

    // Also the unprojected objects, fetched without `fields`.
    let client = reqwest::Client::new();
    let group = fixture::group_id(0);
    for (path, whole) in [
        ("/api/systemusers".to_owned(), "department"),
        ("/api/v2/usergroups".to_owned(), "description"),
        (format!("/api/v2/usergroups/{group}/members"), "to"),
    ] {
        let url = fixture.base_url().join(&path).expect("url");
        let response = client
            .get(url)
            .query(&[("limit", "100"), ("skip", "0")])
            .header("x-api-key", API_KEY)
            .header("accept", "application/json")
            .send()
            .await
            .expect("fixture answers");
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.expect("json");
        let first = &body.get("results").unwrap_or(&body)[0];
        assert!(first.get(whole).is_some(), "{path} answers whole objects");
    }

    let served = fixture.served();
    for route in [Route::Users, Route::Groups, Route::Members] {
        assert!(served.iter().any(|s| s.route == route), "{route:?} served");
    }
    for answer in served {
        let op = spec
            .operation("get", answer.route.template())
            .expect("declared");
        let problems = op.check_response(&answer.body);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

#[test]
fn spec_checks_catch_invented_missing_mistyped_and_undeclared_things() {
    let spec = Spec::load();
    let users = spec.operation("get", "/api/systemusers").expect("declared");
    let good = json!({"results": [{"_id": "a", "username": "ada", "state": "ACTIVATED"}], "totalCount": 1});
    assert!(users.check_response(&good).is_empty());
    let invented = json!({"results": [{"_id": "a", "nickname": "x"}], "totalCount": 1});
    assert!(users.check_response(&invented)[0].contains("nickname"));
    let mistyped = json!({"results": [{"_id": "a"}], "totalCount": "1"});
    assert!(users.check_response(&mistyped)[0].contains("totalCount"));
    let bad_enum = json!({"results": [{"_id": "a", "state": "ARCHIVED"}], "totalCount": 1});
    assert!(users.check_response(&bad_enum)[0].contains("ARCHIVED"));
    let not_nullable = json!({"results": [{"_id": null}], "totalCount": 1});
    assert!(!users.check_response(&not_nullable).is_empty());
    let nullable = json!({"results": [{"_id": "a", "account_locked_date": null}], "totalCount": 1});
    assert!(users.check_response(&nullable).is_empty());

    let members = spec
        .operation("get", "/api/v2/usergroups/abc/members")
        .expect("declared");
    assert_eq!(members.template, "/usergroups/{group_id}/members");
    let missing = json!([{"to": {"id": "u1"}}]);
    assert!(members.check_response(&missing)[0].contains("\"type\""));
    let open_attributes = json!([{"to": {"id": "u1", "type": "user"}, "attributes": {"any": 1}}]);
    assert!(members.check_response(&open_attributes).is_empty());
    let groups = spec
        .operation("get", "/api/v2/usergroups")
        .expect("declared");
    let wrong_type = json!([{"id": "g", "name": "n", "type": "system_group"}]);
    assert!(!groups.check_response(&wrong_type).is_empty());

    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(members
        .check_query(&q(&[("limit", "10"), ("skip", "0")]))
        .is_empty());
    assert!(
        !members.check_query(&q(&[("sort", "id")])).is_empty(),
        "members has no sort"
    );
    let groups_skip = q(&[("skip", "-1")]);
    assert!(
        !groups.check_query(&groups_skip).is_empty(),
        "v2 skip has minimum 0"
    );
    assert!(!users.check_query(&q(&[("limit", "ten")])).is_empty());
    assert!(!users.check_query(&q(&[("page", "2")])).is_empty());
    assert!(!users.check_headers(&q(&[("x-tenant", "1")])).is_empty());
    assert!(!users
        .check_headers(&q(&[("accept", "text/html")]))
        .is_empty());
    let unknown_field = q(&[("fields", "_id nickname"), ("sort", "-_id")]);
    assert_eq!(users.check_field_names(&unknown_field).len(), 1);
    assert!(groups
        .check_field_names(&q(&[("sort", "name"), ("fields", "id,name")]))
        .is_empty());
    assert!(spec
        .operation("get", "/api/v2/usergroups/abc/nonsense")
        .is_err());
    assert!(spec.operation("delete", "/api/systemusers").is_err());
}

#[tokio::test]
async fn transient_faults_are_retried_to_success() {
    let cases = [
        (Route::Users, Fault::Status(500), 2),
        (Route::Groups, Fault::Status(503), 2),
        (Route::Members, Fault::Status(502), 3),
        (
            Route::Groups,
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            1,
        ),
        (Route::Users, Fault::TruncatedBody, 2),
        (Route::Members, Fault::TruncatedBody, 2),
        (Route::Groups, Fault::MalformedJson, 2),
        (Route::Members, Fault::MalformedJson, 1),
        (Route::Users, Fault::Hang(Duration::from_millis(1500)), 1),
        (Route::Members, Fault::Hang(Duration::from_millis(1500)), 1),
    ];
    for (route, fault, times) in cases {
        let fixture = Fixture::start(Data::standard()).await;
        let data = fixture.data();
        fixture.inject(route, fault, times);
        let mut settings = settings_for(&fixture);
        settings.timeout = Duration::from_millis(700);
        let source = source(settings);
        let snapshot = source
            .read()
            .await
            .unwrap_or_else(|e| panic!("{fault:?} on {route:?}: {e}"));
        assert_eq!(snapshot, expected(&data), "{fault:?} on {route:?}");
        assert_eq!(
            fixture.requests_to(route),
            baseline(&data, route) + times,
            "{fault:?} on {route:?}: each fault costs one retry"
        );
        assert_eq!(source.calls(), fixture.requests().len() as u64);
    }
}

#[tokio::test]
async fn persistent_failures_fail_the_read_after_bounded_retries() {
    let fixture = Fixture::start(Data::standard()).await;
    fixture.inject_always(Route::Users, Fault::Status(500));
    let mut settings = settings_for(&fixture);
    settings.max_retries = 2;
    let err = source(settings).read().await.expect_err("no snapshot");
    assert!(
        matches!(
            err,
            JumpCloudError::BadStatus {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "jumpcloud GET /api/systemusers: server answered http 500 after 3 attempt(s) (transient)"
    );
    assert_eq!(fixture.requests_to(Route::Users), 3);

    let fixture = Fixture::start(Data::standard()).await;
    fixture.inject_always(Route::Groups, Fault::Hang(Duration::from_secs(2)));
    let mut settings = settings_for(&fixture);
    settings.max_retries = 1;
    settings.timeout = Duration::from_millis(300);
    let err = source(settings).read().await.expect_err("no snapshot");
    assert!(
        matches!(err, JumpCloudError::RequestFailed { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(fixture.requests_to(Route::Groups), 2);
}

#[tokio::test]
async fn answers_of_the_wrong_shape_are_permanent_and_not_retried() {
    let fixture = Fixture::start(Data::standard()).await;
    fixture.inject(Route::Users, Fault::WrongShape, 1);
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("no snapshot");
    assert!(
        matches!(err, JumpCloudError::MalformedBody { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(fixture.requests_to(Route::Users), 1);
}

#[tokio::test]
async fn an_endless_answer_is_refused_not_buffered() {
    let fixture = Fixture::start(Data::standard()).await;
    fixture.inject(Route::Users, Fault::Huge(40 << 20), 1);
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("no snapshot");
    assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
    assert!(!err.is_transient());
    assert_eq!(fixture.requests_to(Route::Users), 1);
}

#[tokio::test]
async fn a_rejected_key_is_permanent_and_never_printed() {
    let fixture = Fixture::start(Data::standard()).await;
    let wrong = "jc-wrong-key-93b1c0de";
    let mut settings = settings_for(&fixture);
    settings.api_key = SecretString::from(wrong.to_owned());
    let source = source(settings);
    assert!(!format!("{source:?}").contains(wrong));
    let err = source.read().await.expect_err("no snapshot");
    assert!(
        matches!(err, JumpCloudError::KeyRejected { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("api key rejected"), "{err}");
    assert!(err.to_string().ends_with("(http 401, permanent)"), "{err}");
    assert_no_key(&err, wrong);
    assert!(fixture.requests_to(Route::Users) <= 1, "not retried");
    assert!(fixture.requests_to(Route::Groups) <= 1, "not retried");
}

#[tokio::test]
async fn the_org_id_is_sent_when_set_and_its_absence_is_rejected() {
    let fixture = Fixture::start_with(Data::standard(), Some("org-77")).await;
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("no org id");
    assert!(matches!(err, JumpCloudError::KeyRejected { .. }), "{err:?}");
    let mut with_org = settings_for(&fixture);
    with_org.org_id = Some("org-77".into());
    let snapshot = source(with_org).read().await.expect("read with org id");
    assert_eq!(snapshot, expected(&fixture.data()));
}

#[tokio::test]
async fn a_total_count_change_mid_paging_is_an_error() {
    let fixture = Fixture::start(Data::standard()).await;
    fixture.mutate_after(Route::Users, 1, |data| {
        let mut extra = data.users[0].clone();
        extra["_id"] = json!(fixture::user_id(900));
        extra["username"] = json!("newcomer");
        data.users.push(extra);
    });
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("no snapshot");
    assert!(
        matches!(err, JumpCloudError::IncompleteRead { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("totalCount changed from 250 to 251"),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn short_pages_in_the_middle_are_errors() {
    let fixture = Fixture::start(Data::standard()).await;
    fixture.inject(Route::Users, Fault::ShortPage, 1);
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("v1 short page");
    assert!(
        err.to_string().contains("short page: 99 of 100 users"),
        "{err}"
    );

    let fixture = Fixture::start(Data::standard()).await;
    fixture.inject(Route::Groups, Fault::ShortPage, 1);
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("v2 short page");
    assert!(
        err.to_string().contains("although a next page is linked"),
        "{err}"
    );

    let fixture = Fixture::start(Data::standard()).await;
    fixture.set_links(Route::Members, true);
    fixture.inject(Route::Members, Fault::ShortPage, 1);
    let mut settings = settings_for(&fixture);
    settings.group_filter = Some(vec!["airflow-admins".into()]);
    let err = source(settings)
        .read()
        .await
        .expect_err("member short page");
    assert!(
        matches!(err, JumpCloudError::IncompleteRead { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_member_that_is_not_a_listed_user_is_an_error() {
    let fixture = Fixture::start(Data::standard()).await;
    let stranger = fixture::user_id(4000);
    let id = stranger.clone();
    fixture.mutate(|data| {
        let group = data.groups.iter_mut().find(|g| g.name == "data-eng");
        let group = group.expect("data-eng exists");
        group.members.push((id, "user".into()));
    });
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("no snapshot");
    assert!(
        matches!(err, JumpCloudError::IncompleteRead { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&stranger), "{err}");
}

#[tokio::test]
async fn a_member_that_is_a_group_is_refused() {
    // JumpCloud user groups hold only users (GraphOperation-UserGroup-Member allows `user`).
    let fixture = Fixture::start(Data::standard()).await;
    fixture.mutate(|data| {
        let nested = fixture::group_id(3);
        let group = data.groups.iter_mut().find(|g| g.name == "data-eng");
        group
            .expect("data-eng exists")
            .members
            .push((nested, "user_group".into()));
    });
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("no snapshot");
    assert!(
        matches!(err, JumpCloudError::UnexpectedAnswer { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("\"user_group\""), "{err}");
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_refused() {
    let fixture = Fixture::start(Data::standard()).await;
    // Another port on 127.0.0.1, so even a wrong client could only knock on loopback.
    fixture.set_link_base("http://127.0.0.1:1");
    let err = source(settings_for(&fixture))
        .read()
        .await
        .expect_err("no snapshot");
    assert!(
        err.to_string().contains("next link leaves the endpoint"),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(fixture.requests_to(Route::Groups), 1);
}

#[tokio::test]
async fn the_group_filter_reads_only_the_named_groups() {
    let fixture = Fixture::start(Data::standard()).await;
    let mut settings = settings_for(&fixture);
    settings.group_filter = Some(vec![
        "airflow-admins".into(),
        "empty-group".into(),
        "no-such-group".into(),
    ]);
    let snapshot = source(settings).read().await.expect("filtered read");
    let mut want = expected(&fixture.data());
    let keep = |g: &GroupName| g.0 == "airflow-admins" || g.0 == "empty-group";
    want.groups.retain(keep);
    for person in want.people.values_mut() {
        person.groups.retain(keep);
    }
    assert_eq!(snapshot, want);
    assert_eq!(
        fixture.requests_to(Route::Members),
        2 + 1,
        "admins (2 pages), empty (1)"
    );
}

#[test]
fn region_presets_point_at_the_eu_and_india_consoles() {
    assert_eq!(
        region_base_url(Region::Us).as_str(),
        "https://console.jumpcloud.com/"
    );
    assert_eq!(
        region_base_url(Region::Eu).as_str(),
        "https://console.eu.jumpcloud.com/"
    );
    assert_eq!(
        region_base_url(Region::India).as_str(),
        "https://console.in.jumpcloud.com/"
    );
    // Built but never read: nothing here contacts JumpCloud.
    let key = SecretString::from("k".to_owned());
    let source = JumpCloudSource::new(JumpCloudSettings::new(key.clone())).expect("defaults");
    assert_eq!(source.describe(), "jumpcloud https://console.jumpcloud.com");
    let mut eu = JumpCloudSettings::new(key);
    eu.base_url = region_base_url(Region::Eu);
    eu.org_id = Some("org-1".into());
    let source = JumpCloudSource::new(eu).expect("eu");
    assert_eq!(
        source.describe(),
        "jumpcloud https://console.eu.jumpcloud.com (org org-1)"
    );
    assert_eq!(source.calls(), 0);
}

#[test]
fn unusable_settings_are_refused_before_anything_is_sent() {
    let base = || JumpCloudSettings::new(SecretString::from("k".to_owned()));
    let refused = |s: JumpCloudSettings, field: &str| {
        let err = JumpCloudSource::new(s).expect_err("refused");
        assert!(
            matches!(&err, JumpCloudError::InvalidSettings { field: f, .. } if *f == field),
            "{err:?}"
        );
        assert!(!err.is_transient());
    };
    let mut s = base();
    s.page_size = 101;
    refused(s, "page_size");
    let mut s = base();
    s.page_size = 0;
    refused(s, "page_size");
    let mut s = base();
    s.base_url = url::Url::parse("http://console.jumpcloud.com").expect("url");
    refused(s, "base_url");
    let mut s = base();
    s.api_key = SecretString::from(String::new());
    refused(s, "api_key");
    let mut s = base();
    s.org_id = Some(String::new());
    refused(s, "org_id");
    let mut s = base();
    s.group_filter = Some(Vec::new());
    refused(s, "group_filter");
}

#[tokio::test]
async fn the_source_enum_reads_and_describes_jumpcloud() {
    let fixture = Fixture::start(Data::standard()).await;
    let source = Source::JumpCloud(source(settings_for(&fixture)));
    assert!(source.describe().starts_with("jumpcloud http://127.0.0.1:"));
    let snapshot = source.read().await.expect("read through Source");
    assert_eq!(snapshot, expected(&fixture.data()));

    fixture.inject_always(Route::Users, Fault::Status(403));
    let err = source.read().await.expect_err("rejected");
    assert!(matches!(
        err,
        DirectoryError::JumpCloud(JumpCloudError::KeyRejected { status: 403, .. })
    ));
}

#[tokio::test]
async fn each_fault_is_classified_when_retries_are_off() {
    let cases: [(Fault, &str, bool); 6] = [
        (Fault::Status(500), "server answered http 500", true),
        (
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
            "server answered http 429",
            true,
        ),
        (Fault::TruncatedBody, "reading the body failed", true),
        (Fault::MalformedJson, "malformed answer", true),
        (Fault::WrongShape, "malformed answer", false),
        (
            Fault::Hang(Duration::from_millis(1500)),
            "request timed out",
            true,
        ),
    ];
    for (fault, says, transient) in cases {
        let fixture = Fixture::start(Data::standard()).await;
        fixture.inject(Route::Users, fault, 1);
        let mut settings = settings_for(&fixture);
        settings.max_retries = 0;
        settings.timeout = Duration::from_millis(500);
        let err = source(settings).read().await.expect_err("no snapshot");
        let text = err.to_string();
        assert!(
            text.starts_with("jumpcloud GET /api/systemusers: ") && text.contains(says),
            "{fault:?}: {text}"
        );
        assert_eq!(err.is_transient(), transient, "{fault:?}: {text}");
        assert!(text.contains("after 1 attempt(s)"), "{fault:?}: {text}");
        assert_eq!(text.lines().count(), 1);
        assert_eq!(
            text.replacen("GET", "get", 1),
            text.to_lowercase(),
            "lowercase but the method"
        );
    }
}

#[test]
fn the_vendored_specs_match_the_team_copy_when_it_is_present() {
    let shared = spec::shared_spec_dir();
    if !shared.join("JumpCloud.SDK.V2.json").exists() {
        // A clone without the team's shared/ folder beside it: the vendored copy is all there is.
        return;
    }
    for file in ["JumpCloud.SDK.V1.json", "JumpCloud.SDK.V2.json"] {
        let a = std::fs::read(shared.join(file)).expect("team copy");
        let b = std::fs::read(spec::vendored_spec_dir().join(file)).expect("vendored copy");
        assert!(
            a == b,
            "{file}: the vendored copy differs from ../shared/specs/jumpcloud; copy it again"
        );
    }
}
