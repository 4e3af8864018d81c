//! The fault proxy in front of a real Airflow 3 server, observed by a plain reqwest client.

use std::error::Error as _;
use std::time::{Duration, Instant};

use airlock_testkit::airflow::{self, AirflowServer, AirflowVersion};
use airlock_testkit::proxy::{Fault, FaultProxy, Rule};
use serde_json::Value;

const VERSION_PATH: &str = "/api/v2/version";

fn upstream() -> &'static AirflowServer {
    airflow::shared(AirflowVersion::V3)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

async fn get_status(proxy: &FaultProxy, path: &str) -> u16 {
    client()
        .get(format!("{}{path}", proxy.url()))
        .send()
        .await
        .expect("request through the proxy")
        .status()
        .as_u16()
}

/// The error and every source below it, for asserting on the kind of failure.
fn chain(err: &reqwest::Error) -> String {
    let mut text = format!("{err}");
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[tokio::test]
async fn a_normal_get_passes_through_with_the_upstreams_body() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    let direct: Value = client()
        .get(format!("{}{VERSION_PATH}", upstream().base_url))
        .send()
        .await
        .expect("direct request")
        .json()
        .await
        .expect("direct json");
    let response = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .send()
        .await
        .expect("proxied request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let proxied: Value = response.json().await.expect("proxied json");
    assert_eq!(proxied, direct);
    assert_eq!(proxied["version"], "3.3.2");
}

#[tokio::test]
async fn authorization_and_request_bodies_pass_through_unchanged() {
    let server = upstream();
    let proxy = FaultProxy::start(&server.base_url).await;
    let client = client();
    let token: Value = client
        .post(format!("{}/auth/token", proxy.url()))
        .json(&serde_json::json!({
            "username": server.admin_user,
            "password": server.admin_password,
        }))
        .send()
        .await
        .expect("token request")
        .error_for_status()
        .expect("token status")
        .json()
        .await
        .expect("token json");
    let token = token["access_token"].as_str().expect("access_token");

    let users = format!("{}/auth/fab/v1/users?limit=1", proxy.url());
    let with_token = client
        .get(&users)
        .bearer_auth(token)
        .send()
        .await
        .expect("users request");
    assert_eq!(with_token.status(), 200);
    let body: Value = with_token.json().await.expect("users json");
    assert_eq!(body["users"][0]["username"], "admin");

    let without_token = client.get(&users).send().await.expect("users request");
    assert!(
        matches!(without_token.status().as_u16(), 401 | 403),
        "anonymous request answered {}",
        without_token.status()
    );
}

#[tokio::test]
async fn a_status_fault_answers_without_the_upstream() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new("/api/v2/", Fault::status(503)));
    let response = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json error body");
    assert_eq!(body["status"], 503);

    let custom = Fault::Status {
        status: 500,
        body: "boom".to_owned(),
        headers: vec![("X-Injected".to_owned(), "yes".to_owned())],
    };
    proxy.clear_rules();
    proxy.add_rule(Rule::new("/", custom));
    let response = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["x-injected"], "yes");
    assert_eq!(response.text().await.expect("body"), "boom");
}

#[tokio::test]
async fn status_faults_work_even_when_the_upstream_is_down_and_forwards_get_502() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let proxy = FaultProxy::start(&format!("http://{closed}")).await;
    proxy.add_rule(Rule::new(VERSION_PATH, Fault::status(503)));
    assert_eq!(get_status(&proxy, VERSION_PATH).await, 503);
    assert_eq!(get_status(&proxy, "/elsewhere").await, 502);
}

#[tokio::test]
async fn a_rate_limit_fault_carries_retry_after() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new("/", Fault::rate_limited(1)));
    let response = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[tokio::test]
async fn a_delay_fault_makes_the_client_time_out() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new("/", Fault::Delay(Duration::from_secs(10))));
    let err = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("the delay outlasts the client's timeout");
    assert!(err.is_timeout(), "not a timeout: {}", chain(&err));
}

#[tokio::test]
async fn a_short_delay_still_forwards_the_request() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new("/", Fault::Delay(Duration::from_millis(200))));
    assert_eq!(get_status(&proxy, VERSION_PATH).await, 200);
}

#[tokio::test]
async fn a_reset_fault_is_a_connection_error_not_a_response() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new("/", Fault::Reset));
    let err = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .send()
        .await
        .expect_err("a reset connection has no response");
    let text = chain(&err).to_lowercase();
    assert!(!err.is_timeout() && err.status().is_none(), "{text}");
    assert!(
        text.contains("reset") || text.contains("connection closed"),
        "unexpected error: {text}"
    );
}

#[tokio::test]
async fn a_truncated_body_fails_to_read_after_a_good_status() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new(
        VERSION_PATH,
        Fault::Truncate { keep_body_bytes: 5 },
    ));
    let response = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .send()
        .await
        .expect("the head arrives whole");
    assert_eq!(response.status(), 200);
    let err = response
        .bytes()
        .await
        .expect_err("the body is shorter than its content-length");
    assert!(
        err.is_body() || err.is_decode(),
        "unexpected error: {}",
        chain(&err)
    );
}

#[tokio::test]
async fn a_garbage_fault_is_a_json_decode_error() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new(
        "/",
        Fault::Garbage {
            status: 200,
            body: r#"{"version": "3.3.2", "#.to_owned(),
        },
    ));
    let response = client()
        .get(format!("{}{VERSION_PATH}", proxy.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let err = response.json::<Value>().await.expect_err("malformed json");
    assert!(err.is_decode(), "unexpected error: {}", chain(&err));
}

#[tokio::test]
async fn after_lets_requests_pass_and_times_limits_the_faults() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(
        Rule::new(VERSION_PATH, Fault::status(500))
            .after(1)
            .times(2),
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get_status(&proxy, VERSION_PATH).await);
    }
    assert_eq!(statuses, [200, 500, 500, 200]);
}

#[tokio::test]
async fn rules_filter_by_method_and_query_and_clear_rules_removes_them() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new("/api/v2/", Fault::status(500)).method("POST"));
    proxy.add_rule(Rule::new("/api/v2/", Fault::status(503)).query_contains("boom=1"));
    assert_eq!(get_status(&proxy, VERSION_PATH).await, 200);
    assert_eq!(
        get_status(&proxy, &format!("{VERSION_PATH}?boom=1")).await,
        503
    );
    proxy.clear_rules();
    assert_eq!(
        get_status(&proxy, &format!("{VERSION_PATH}?boom=1")).await,
        200
    );
}

#[tokio::test]
async fn the_proxy_counts_and_logs_every_request_faulted_or_not() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    proxy.add_rule(Rule::new("/api/v2/monitor", Fault::status(500)));
    get_status(&proxy, VERSION_PATH).await;
    get_status(&proxy, "/api/v2/monitor/health").await;
    get_status(&proxy, &format!("{VERSION_PATH}?x=1")).await;
    assert_eq!(proxy.requests_seen(), 3);
    assert_eq!(
        proxy.requests_log(),
        [
            ("GET".to_owned(), VERSION_PATH.to_owned()),
            ("GET".to_owned(), "/api/v2/monitor/health".to_owned()),
            ("GET".to_owned(), format!("{VERSION_PATH}?x=1")),
        ]
    );
    proxy.reset_counters();
    assert_eq!(proxy.requests_seen(), 0);
    assert!(proxy.requests_log().is_empty());
}

#[tokio::test]
async fn a_dropped_proxy_stops_listening() {
    let proxy = FaultProxy::start(&upstream().base_url).await;
    let addr = proxy.addr();
    assert_eq!(get_status(&proxy, VERSION_PATH).await, 200);
    drop(proxy);
    // The abort takes effect when the runtime next polls the task: poll with a deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "proxy still listening on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
