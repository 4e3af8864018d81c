//! The connector against real Airflow servers: 3.3.2 with FAB 3.10.2, and 2.11.2.
//!
//! Each test binary shares one server per version, started with a page limit of 7 so that a
//! few dozen users already span several pages. Tests isolate themselves by unique names.
//! Faults are injected by the test kit's proxy in front of the real server.

use airlock_airflow::{
    AirflowClient, Call, ErrorClass, ErrorKind, Generation, NewUser, PermissionCatalog,
    ProfileUpdate, Settings,
};
use airlock_core::{InstanceName, Permission, Role, RoleName, Username};
use airlock_testkit::{AirflowServer, AirflowVersion, Fault, FaultProxy, Rule};
use secrecy::SecretString;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const PAGE: usize = 7;
const USERS: &str = "/auth/fab/v1/users";
const ROLES: &str = "/auth/fab/v1/roles";

fn server(version: AirflowVersion) -> &'static AirflowServer {
    static V3: OnceLock<AirflowServer> = OnceLock::new();
    static V2: OnceLock<AirflowServer> = OnceLock::new();
    let cell = match version {
        AirflowVersion::V3 => &V3,
        AirflowVersion::V2 => &V2,
    };
    cell.get_or_init(|| {
        AirflowServer::builder(version)
            .env("AIRFLOW__API__MAXIMUM_PAGE_LIMIT", PAGE.to_string())
            .start()
            .unwrap_or_else(|e| panic!("cannot start Airflow {version}: {e:#}"))
    })
}

/// A name no other test (or earlier run against the same server) uses.
fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{nanos:08x}{}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn settings(base_url: &str, user: &str, password: &str) -> Settings {
    let mut s = Settings::new(
        InstanceName::new("test").expect("valid"),
        base_url.parse().expect("url"),
        user,
        SecretString::from(password.to_string()),
    );
    s.retry_base = Duration::from_millis(20);
    s.timeout = Duration::from_secs(20);
    s
}

fn client_for(version: AirflowVersion) -> AirflowClient {
    let srv = server(version);
    AirflowClient::new(settings(
        &srv.base_url,
        &srv.admin_user,
        &srv.admin_password,
    ))
    .expect("client")
}

async fn proxied(
    version: AirflowVersion,
    tweak: impl FnOnce(&mut Settings),
) -> (AirflowClient, FaultProxy) {
    let srv = server(version);
    let proxy = FaultProxy::start(&srv.base_url).await;
    let mut s = settings(&proxy.url(), &srv.admin_user, &srv.admin_password);
    tweak(&mut s);
    (AirflowClient::new(s).expect("client"), proxy)
}

fn user(name: &str, roles: &[&str]) -> NewUser {
    NewUser {
        username: Username::new(name).expect("valid"),
        email: format!("{name}@example.com"),
        first_name: "Test".into(),
        last_name: name.into(),
        roles: roles
            .iter()
            .map(|r| RoleName::new(*r).expect("valid"))
            .collect(),
        password: None,
    }
}

fn roles(names: &[&str]) -> BTreeSet<RoleName> {
    names
        .iter()
        .map(|r| RoleName::new(*r).expect("valid"))
        .collect()
}

/// Can `username` log in with `password`? Asks Airflow itself: the token endpoint on Airflow 3,
/// basic auth on Airflow 2.
async fn can_log_in(version: AirflowVersion, username: &str, password: &str) -> bool {
    let srv = server(version);
    let http = reqwest::Client::new();
    let req = match version {
        AirflowVersion::V3 => http
            .post(format!("{}/auth/token", srv.base_url))
            .json(&serde_json::json!({ "username": username, "password": password })),
        AirflowVersion::V2 => http
            .get(format!("{}/api/v1/dags?limit=1", srv.base_url))
            .basic_auth(username, Some(password)),
    };
    req.send()
        .await
        .expect("login request")
        .status()
        .is_success()
}

macro_rules! suite {
    ($module:ident, $version:expr) => {
        mod $module {
            use super::*;
            const V: AirflowVersion = $version;

            #[tokio::test]
            async fn detects_the_version_and_api_generation() {
                let c = client_for(V);
                let info = c.server().await.expect("detect").clone();
                let want = match V {
                    AirflowVersion::V3 => (Generation::V3, "3.3.2"),
                    AirflowVersion::V2 => (Generation::V2, "2.11.2"),
                };
                assert_eq!((info.generation, info.version.as_str()), want);
            }

            #[tokio::test]
            async fn lists_every_user_across_pages_with_one_call_per_page() {
                let c = client_for(V);
                let prefix = unique("page");
                for i in 0..(PAGE * 2 + 3) {
                    c.create_user(&user(&format!("{prefix}-{i:02}"), &["Viewer"]))
                        .await
                        .expect("create");
                }
                let fresh = client_for(V);
                fresh.server().await.expect("detect");
                fresh.list_roles().await.expect("settle the API base");
                let before = fresh.stats();
                let all = fresh.list_users().await.expect("list");
                let ours = all
                    .iter()
                    .filter(|a| a.username.as_str().starts_with(&prefix))
                    .count();
                assert_eq!(ours, PAGE * 2 + 3);
                let pages = all.len().div_ceil(PAGE) as u64;
                // One call per page. Other tests create users on this Airflow meanwhile: a
                // listing that saw them arrive while paging is read again from the start (at
                // most 3 more times), and a page that timed out is retried (counted apart).
                let made = fresh.stats().since(&before);
                let calls = made.of(Call::ListUsers) - made.retries;
                assert!(
                    (pages..=4 * pages).contains(&calls),
                    "{calls} calls for {pages} pages"
                );
            }

            #[tokio::test]
            async fn creates_an_sso_user_with_roles_found_by_any_case_of_its_name() {
                let c = client_for(V);
                let name = unique("sso");
                let created = c
                    .create_user(&user(&name, &["Viewer", "Op"]))
                    .await
                    .expect("create");
                assert_eq!(created.roles, roles(&["Op", "Viewer"]));
                let upper = Username::new(name.to_uppercase()).expect("valid");
                let read = c.get_user(&upper).await.expect("get");
                assert_eq!(read.email, format!("{name}@example.com"));
                assert!(read.active);
            }

            #[tokio::test]
            async fn a_duplicate_user_is_a_conflict_naming_the_user() {
                let c = client_for(V);
                let u = user(&unique("dup"), &[]);
                c.create_user(&u).await.expect("create");
                let err = c.create_user(&u).await.expect_err("duplicate");
                assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
                assert!(err.to_string().contains(u.username.as_str()), "{err}");
            }

            #[tokio::test]
            async fn setting_roles_replaces_them_and_an_empty_set_strips_all() {
                let c = client_for(V);
                let name = Username::new(unique("roles")).expect("valid");
                c.create_user(&user(name.as_str(), &["Viewer"]))
                    .await
                    .expect("create");
                let a = c
                    .set_user_roles(&name, &roles(&["Op", "User"]))
                    .await
                    .expect("set");
                assert_eq!(a.roles, roles(&["Op", "User"]));
                let a = c
                    .set_user_roles(&name, &BTreeSet::new())
                    .await
                    .expect("strip");
                assert!(a.roles.is_empty());
                assert!(c.get_user(&name).await.expect("get").roles.is_empty());
            }

            #[tokio::test]
            async fn updating_the_profile_changes_only_the_given_fields() {
                let c = client_for(V);
                let name = Username::new(unique("prof")).expect("valid");
                c.create_user(&user(name.as_str(), &["Viewer"]))
                    .await
                    .expect("create");
                let upd = ProfileUpdate {
                    first_name: Some("Ada".into()),
                    ..Default::default()
                };
                let a = c.update_profile(&name, &upd).await.expect("update");
                assert_eq!(
                    (a.first_name.as_str(), a.last_name.as_str()),
                    ("Ada", name.as_str())
                );
                assert_eq!(a.roles, roles(&["Viewer"]));
            }

            #[tokio::test]
            async fn rotating_the_password_locks_out_the_old_one() {
                let c = client_for(V);
                let name = unique("rot");
                let mut u = user(&name, &["Viewer"]);
                u.password = Some(SecretString::from("Old-password-1".to_string()));
                c.create_user(&u).await.expect("create");
                assert!(can_log_in(V, &name, "Old-password-1").await);
                c.rotate_password(&u.username).await.expect("rotate");
                assert!(!can_log_in(V, &name, "Old-password-1").await);
            }

            #[tokio::test]
            async fn deleting_a_user_makes_it_not_found() {
                let c = client_for(V);
                let name = Username::new(unique("del")).expect("valid");
                c.create_user(&user(name.as_str(), &[]))
                    .await
                    .expect("create");
                c.delete_user(&name).await.expect("delete");
                let err = c.get_user(&name).await.expect_err("gone");
                assert!(err.is_not_found(), "{err}");
                assert_eq!(err.class(), ErrorClass::Permanent);
            }

            #[tokio::test]
            async fn roles_are_created_given_permissions_and_deleted() {
                let c = client_for(V);
                let name = RoleName::new(unique("role")).expect("valid");
                let read_dags = Permission::new("can_read", "DAGs");
                let edit_vars = Permission::new("can_edit", "Variables");
                let role = Role {
                    name: name.clone(),
                    permissions: [read_dags.clone()].into(),
                };
                let created = c.create_role(&role).await.expect("create role");
                assert_eq!(created.permissions, role.permissions);

                let out = c
                    .set_role_permissions(&name, &[edit_vars.clone()].into())
                    .await
                    .expect("set perms");
                match V {
                    // FAB >= 3.9 replaces the set.
                    AirflowVersion::V3 => {
                        assert_eq!(out.role.permissions, [edit_vars.clone()].into());
                        assert!(out.not_removed.is_empty());
                    }
                    // Airflow 2 only adds; what stayed is reported.
                    AirflowVersion::V2 => {
                        assert!(out.role.permissions.contains(&edit_vars));
                        assert_eq!(out.not_removed, [read_dags.clone()].into());
                    }
                }
                let listed = c.list_roles().await.expect("list roles");
                assert!(listed.iter().any(|r| r.name == name));
                c.delete_role(&name).await.expect("delete role");
                assert!(c.get_role(&name).await.expect_err("gone").is_not_found());
            }

            #[tokio::test]
            async fn permissions_are_listed_in_the_instance_s_shape() {
                let c = client_for(V);
                match (V, c.list_permissions().await.expect("list")) {
                    (AirflowVersion::V3, PermissionCatalog::Pairs(p)) => {
                        assert!(p.contains(&Permission::new("can_read", "DAGs")));
                    }
                    (AirflowVersion::V2, PermissionCatalog::Actions(a)) => {
                        assert!(a.contains("can_read"))
                    }
                    (v, other) => panic!("{v}: unexpected catalog {other:?}"),
                }
            }

            #[tokio::test]
            async fn a_wrong_password_is_permanent_names_the_instance_and_hides_the_password() {
                let srv = server(V);
                let c =
                    AirflowClient::new(settings(&srv.base_url, &srv.admin_user, "Wrong-Pass-123"))
                        .expect("client");
                let err = c.list_users().await.expect_err("rejected");
                assert!(matches!(err.kind, ErrorKind::Unauthorized { .. }), "{err}");
                assert!(!err.is_retryable());
                let text = err.to_string();
                assert!(text.starts_with("airflow `test`:"), "{text}");
                assert!(!text.contains("Wrong-Pass-123"), "{text}");
            }

            #[tokio::test]
            async fn a_500_in_the_middle_of_paging_fails_the_whole_listing() {
                let (c, proxy) = proxied(V, |_| {}).await;
                for i in 0..=PAGE {
                    c.create_user(&user(&unique(&format!("mid{i}")), &[]))
                        .await
                        .expect("seed");
                }
                proxy.add_rule(
                    Rule::new(USERS, Fault::status(500))
                        .method("GET")
                        .query_contains(format!("offset={PAGE}")),
                );
                let before = c.stats().retries;
                let err = c.list_users().await.expect_err("must fail");
                assert!(
                    matches!(err.kind, ErrorKind::Server { status: 500, .. }),
                    "{err}"
                );
                assert_eq!(
                    err.object.as_deref(),
                    Some(format!("offset {PAGE}").as_str())
                );
                assert_eq!(c.stats().retries - before, 4, "retried max_retries times");
            }

            #[tokio::test]
            async fn transient_faults_are_retried_until_the_listing_succeeds() {
                let (c, proxy) = proxied(V, |s| s.timeout = Duration::from_secs(2)).await;
                c.list_roles().await.expect("settle detection and API base");
                let p = USERS;
                proxy.add_rule(Rule::new(p, Fault::status(503)).method("GET").times(1));
                proxy.add_rule(Rule::new(p, Fault::Reset).method("GET").times(1));
                proxy.add_rule(
                    Rule::new(
                        p,
                        Fault::Truncate {
                            keep_body_bytes: 40,
                        },
                    )
                    .method("GET")
                    .times(1),
                );
                proxy.add_rule(
                    Rule::new(p, Fault::Delay(Duration::from_secs(4)))
                        .method("GET")
                        .times(1),
                );
                let got = c.list_users().await.expect("retried to success");
                let direct = client_for(V).list_users().await.expect("direct list");
                assert!(got.len() <= direct.len() && !got.is_empty());
                assert!(c.stats().retries >= 4, "{:?}", c.stats());
            }

            #[tokio::test]
            async fn rate_limiting_waits_for_retry_after() {
                let (c, proxy) = proxied(V, |_| {}).await;
                c.server().await.expect("detect");
                proxy.add_rule(
                    Rule::new(ROLES, Fault::rate_limited(1))
                        .method("GET")
                        .times(2),
                );
                c.list_roles().await.expect("succeeds after waiting");
                assert_eq!(c.stats().retries, 2);
            }

            #[tokio::test]
            async fn persistent_timeouts_end_in_a_transient_timeout_error() {
                // A timeout well above what a busy machine needs to answer detection, and a
                // delay well above the timeout.
                let (c, proxy) = proxied(V, |s| {
                    s.timeout = Duration::from_secs(3);
                    s.max_retries = 1;
                })
                .await;
                c.server().await.expect("detect");
                proxy.add_rule(Rule::new(ROLES, Fault::Delay(Duration::from_secs(8))));
                let err = c.list_roles().await.expect_err("times out");
                assert!(matches!(err.kind, ErrorKind::Timeout(_)), "{err}");
                assert_eq!(err.class(), ErrorClass::Transient);
            }

            #[tokio::test]
            async fn malformed_json_is_a_permanent_error_without_retries() {
                let (c, proxy) = proxied(V, |_| {}).await;
                c.server().await.expect("detect");
                let garbage = Fault::Garbage {
                    status: 200,
                    body: "{\"roles\": [".into(),
                };
                proxy.add_rule(Rule::new(ROLES, garbage));
                let err = c.list_roles().await.expect_err("malformed");
                assert!(matches!(err.kind, ErrorKind::Malformed(_)), "{err}");
                assert_eq!(c.stats().retries, 0);
            }

            #[tokio::test]
            async fn an_endless_response_body_is_refused_not_buffered() {
                let (c, proxy) = proxied(V, |_| {}).await;
                c.server().await.expect("detect");
                // 33 MiB of valid-looking JSON: more than airlock reads of one response.
                let mut body = String::with_capacity(33 << 20);
                body.push_str("{\"roles\": [");
                while body.len() < 33 << 20 {
                    body.push_str("{\"name\": \"x\", \"actions\": []},");
                }
                body.push_str("{}]}");
                let huge = Fault::Garbage { status: 200, body };
                proxy.add_rule(Rule::new(ROLES, huge));
                let err = c.list_roles().await.expect_err("too large");
                assert!(matches!(err.kind, ErrorKind::Malformed(_)), "{err}");
                assert!(err.to_string().contains("larger than 32 MiB"), "{err}");
                assert_eq!(c.stats().retries, 0);
            }

            #[tokio::test]
            async fn a_create_whose_first_attempt_timed_out_is_not_duplicated() {
                let (c, proxy) = proxied(V, |s| s.timeout = Duration::from_secs(2)).await;
                c.list_roles().await.expect("settle detection and API base");
                // The proxy forwards after the delay, so Airflow creates the user while the
                // client has given up; the retry meets 409 and reads the account back.
                proxy.add_rule(
                    Rule::new(USERS, Fault::Delay(Duration::from_secs(4)))
                        .method("POST")
                        .times(1),
                );
                let u = user(&unique("amb"), &["Viewer"]);
                let created = c.create_user(&u).await.expect("converges");
                assert_eq!(created.username, u.username);
                // FAB keeps usernames unique, so one readable account with our email means
                // the retry converged on the first attempt's account rather than failing.
                let read = client_for(V).get_user(&u.username).await.expect("exists");
                assert_eq!(read.email, u.email);
                let posts = proxy
                    .requests_log()
                    .iter()
                    .filter(|(m, p)| m == "POST" && p.starts_with(USERS))
                    .count();
                assert_eq!(posts, 2, "the timed-out attempt and one retry");
            }
        }
    };
}

suite!(airflow3, AirflowVersion::V3);
suite!(airflow2, AirflowVersion::V2);

#[tokio::test]
async fn a_rejected_token_is_renewed_once_and_the_call_retried() {
    let (c, proxy) = proxied(AirflowVersion::V3, |_| {}).await;
    c.list_roles().await.expect("first call gets a token");
    proxy.add_rule(Rule::new(ROLES, Fault::status(401)).times(1));
    c.list_roles().await.expect("renews and retries");
    assert_eq!(c.stats().of(Call::Token), 2);
}

#[tokio::test]
async fn an_airflow_3_without_the_fab_auth_manager_is_named_as_such() {
    let srv = AirflowServer::builder(AirflowVersion::V3)
        .env(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        .env("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
        .start()
        .expect("an Airflow 3 with the simple auth manager");
    let c = AirflowClient::new(settings(&srv.base_url, "admin", "whatever")).expect("client");
    let err = c.list_users().await.expect_err("no FAB");
    assert!(
        matches!(err.kind, ErrorKind::NoFabAuthManager { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("FabAuthManager"),
        "the message says how to fix it: {err}"
    );
}

#[tokio::test]
async fn a_url_that_is_not_airflow_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    wait_for_port(port).await;
    let c = AirflowClient::new(settings(&format!("http://127.0.0.1:{port}"), "a", "b"))
        .expect("client");
    let err = c.list_users().await.expect_err("not airflow");
    let _ = child.kill();
    let _ = child.wait();
    assert!(matches!(err.kind, ErrorKind::NotAirflow(_)), "{err}");
}

#[tokio::test]
async fn an_unreachable_instance_is_a_transient_connect_error() {
    let port = free_port();
    let mut s = settings(&format!("http://127.0.0.1:{port}"), "a", "b");
    s.max_retries = 1;
    let err = AirflowClient::new(s)
        .expect("client")
        .list_users()
        .await
        .expect_err("down");
    assert!(matches!(err.kind, ErrorKind::Unreachable(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error_and_a_trusted_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    let d = dir.path().display();
    // A throw-away CA and a server certificate for 127.0.0.1 signed by it.
    let script = format!(
        "set -e; cd {d}; \
         openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=airlock-test-ca -keyout ca.key -out ca.pem; \
         openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr; \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf; \
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem"
    );
    let ok = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success(), "openssl certificate generation failed");
    let port = free_port();
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-quiet",
        ])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    wait_for_port(port).await;
    let mut s = settings(&format!("https://127.0.0.1:{port}"), "a", "b");
    s.max_retries = 0;
    let err = AirflowClient::new(s.clone())
        .expect("client")
        .list_users()
        .await
        .expect_err("tls");
    assert!(matches!(err.kind, ErrorKind::Tls(_)), "{err}");
    s.ca_pem = Some(std::fs::read(&ca).expect("ca"));
    let err = AirflowClient::new(s)
        .expect("client")
        .list_users()
        .await
        .expect_err("not airflow");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !matches!(err.kind, ErrorKind::Tls(_)),
        "a trusted CA passes TLS: {err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
