//! The Airflow servers the kit starts are real, reachable with the admin credentials, and gone
//! when their owner is.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_testkit::airflow::{self, AirflowServer, AirflowVersion};
use serde_json::Value;

/// Set in the environment of the re-executed test binary to make it act as the "test process
/// that exits without cleanup".
const ORPHAN_CHILD_ENV: &str = "AIRLOCK_TESTKIT_ORPHAN_CHILD";

/// The line prefix the child prints its server ports with.
const PORT_LINE: &str = "AIRLOCK_TESTKIT_PORT ";

fn port_answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Polls until `port` refuses connections; panics after `deadline`.
fn assert_port_closes_within(port: u16, deadline: Duration) {
    let start = Instant::now();
    while port_answers(port) {
        assert!(
            start.elapsed() < deadline,
            "port {port} still answers {} s after its server should have stopped",
            deadline.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn shared_v3_server_reports_airflow_3_3_2() {
    let server = airflow::shared(AirflowVersion::V3);
    let version: Value = reqwest::get(format!("{}/api/v2/version", server.base_url))
        .await
        .expect("request")
        .error_for_status()
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(version["version"], "3.3.2");
}

#[tokio::test]
async fn shared_v2_server_reports_airflow_2_11_2() {
    let server = airflow::shared(AirflowVersion::V2);
    let version: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/version", server.base_url))
        .basic_auth(&server.admin_user, Some(&server.admin_password))
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(version["version"], "2.11.2");
}

#[tokio::test]
async fn v3_admin_obtains_a_jwt_that_the_api_accepts() {
    let server = airflow::shared(AirflowVersion::V3);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/auth/token", server.base_url))
        .json(&serde_json::json!({
            "username": server.admin_user,
            "password": server.admin_password,
        }))
        .send()
        .await
        .expect("request");
    assert!(
        response.status().is_success(),
        "token request answered {}",
        response.status()
    );
    let body: Value = response.json().await.expect("json");
    let token = body["access_token"].as_str().expect("access_token in body");
    assert!(!token.is_empty());

    let me = client
        .get(format!("{}/auth/fab/v1/users?limit=1", server.base_url))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200, "FAB users API with the admin's token");
}

#[tokio::test]
async fn v3_rejects_a_wrong_admin_password() {
    let server = airflow::shared(AirflowVersion::V3);
    let response = reqwest::Client::new()
        .post(format!("{}/auth/token", server.base_url))
        .json(&serde_json::json!({ "username": server.admin_user, "password": "wrong" }))
        .send()
        .await
        .expect("request");
    assert!(
        response.status().is_client_error(),
        "answered {}",
        response.status()
    );
}

#[tokio::test]
async fn v2_basic_auth_lists_users_through_the_fab_api() {
    let server = airflow::shared(AirflowVersion::V2);
    let client = reqwest::Client::new();
    let url = format!("{}/auth/fab/v1/users?limit=1", server.base_url);
    let body: Value = client
        .get(&url)
        .basic_auth(&server.admin_user, Some(&server.admin_password))
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(body["users"][0]["username"], "admin");

    let denied = client
        .get(&url)
        .basic_auth(&server.admin_user, Some("wrong"))
        .send()
        .await
        .expect("request");
    // Airflow 2.11's FAB API answers a bad password with 403 (not 401).
    assert!(
        matches!(denied.status().as_u16(), 401 | 403),
        "bad password answered {}",
        denied.status()
    );
}

#[test]
fn airflow_cli_runs_against_the_servers_own_database() {
    let server = airflow::shared(AirflowVersion::V2);
    let users = server
        .airflow_cli(&["users", "list", "--output", "json"])
        .expect("airflow users list");
    let users: Value = serde_json::from_str(&users).expect("json user list");
    assert!(
        users
            .as_array()
            .expect("array")
            .iter()
            .any(|u| u["username"] == "admin"),
        "{users}"
    );
    assert!(server.airflow_home().join("airflow.db").is_file());
}

#[test]
fn builder_env_reaches_the_servers_cli() {
    let server = AirflowServer::builder(AirflowVersion::V3)
        .env("AIRFLOW__FAB__CACHE_TTL", "7")
        .start()
        .expect("private server");
    let value = server
        .airflow_cli(&["config", "get-value", "fab", "cache_ttl"])
        .expect("airflow config get-value");
    assert_eq!(value.trim(), "7");
}

#[test]
fn dropping_a_private_server_releases_its_port_and_home() {
    for version in [AirflowVersion::V3, AirflowVersion::V2] {
        let server = airflow::start(version).expect("private server");
        let port = server.port();
        let home = server.airflow_home().to_owned();
        assert!(port_answers(port));
        assert_ne!(
            port,
            airflow::shared(version).port(),
            "private means not shared"
        );
        drop(server);
        // Drop waits for the whole process group, so the port is closed right away; the
        // deadline only bounds a failure.
        assert_port_closes_within(port, Duration::from_secs(5));
        assert!(!home.exists(), "{} left behind", home.display());
    }
}

#[test]
fn servers_die_when_their_test_process_exits_without_cleanup() {
    if std::env::var_os(ORPHAN_CHILD_ENV).is_some() {
        // Child mode: start servers the way tests do (shared statics are never dropped, and a
        // private one is leaked here on purpose), report the ports, exit without any cleanup.
        let private = airflow::start(AirflowVersion::V2).expect("private V2 server");
        let shared = airflow::shared(AirflowVersion::V3);
        println!("{PORT_LINE}{}", private.port());
        println!("{PORT_LINE}{}", shared.port());
        std::mem::forget(private);
        std::process::exit(0);
    }

    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "servers_die_when_their_test_process_exits_without_cleanup",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ORPHAN_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process");
    let stdout = child.stdout.take().expect("child stdout");
    let ports: Vec<u16> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // The harness prints "test NAME ... " without a newline before the test's own output.
        .filter_map(|line| {
            let (_, port) = line.split_once(PORT_LINE)?;
            port.trim().parse().ok()
        })
        .collect();
    let status = child.wait().expect("wait for child");
    assert!(status.success(), "child test process failed: {status}");
    assert_eq!(ports.len(), 2, "child reported ports {ports:?}");

    for port in ports {
        // The supervisor sends SIGKILL 1 s after SIGTERM; the deadline only bounds a failure.
        assert_port_closes_within(port, Duration::from_secs(30));
    }
}
