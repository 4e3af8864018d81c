//! `airlock serve` as a real process, its HTTP surface under attack: SCIM and health/metrics
//! on separate addresses, callers with random methods and paths create no metric series, and
//! SIGTERM exits while a slowloris client holds a connection. No Airflow is needed: the one
//! instance points at a port nobody listens on.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `airlock serve`; killed when dropped, whatever happened in the test.
struct Service {
    child: Child,
    scim: String,
    ops: String,
    main_addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn airlock(dir: &std::path::Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("airlock"));
    c.current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("AF_PW", "unused")
        .args(["--config", "airlock.toml"]);
    c
}

/// Starts a service with `serve_extra` in its `[serve]` table, SCIM on one address and
/// health/metrics on another.
fn start(serve_extra: &str) -> Service {
    let dir = tempfile::tempdir().expect("tempdir");
    let (main, ops, nobody) = (free_port(), free_port(), free_port());
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"scim\"\n\
             [serve]\nlisten = \"127.0.0.1:{main}\"\nmetrics_listen = \"127.0.0.1:{ops}\"\n\
             sync_interval_secs = 3600\nsync_jitter_secs = 0\n{serve_extra}\n\
             [instances.af]\nurl = \"http://127.0.0.1:{nobody}\"\nusername = \"admin\"\npassword = {{ env = \"AF_PW\" }}\n"
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\ngroup = \"ops\"\nroles = [\"Op\"]\n",
    )
    .expect("policy");
    let out = airlock(dir.path())
        .args(["scim", "token", "create", "--client", "idp"])
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    let child = airlock(dir.path())
        .args(["--log", "info", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.path().join("serve.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("airlock serve");
    Service {
        child,
        scim: format!("http://127.0.0.1:{main}/scim/v2"),
        ops: format!("http://127.0.0.1:{ops}"),
        main_addr: format!("127.0.0.1:{main}"),
        token,
        _dir: dir,
    }
}

async fn status(req: reqwest::RequestBuilder) -> Option<(u16, String)> {
    let resp = req.timeout(Duration::from_secs(10)).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

async fn get(url: &str) -> Option<(u16, String)> {
    status(reqwest::Client::new().get(url)).await
}

async fn wait_ready(s: &Service) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(get(&format!("{}/readyz", s.ops)).await, Some((200, _))) {
        assert!(Instant::now() < deadline, "serve did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn scim_series(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("airlock_scim_requests_total{"))
        .collect()
}

#[tokio::test]
async fn scim_and_health_are_served_on_separate_addresses() {
    let s = start("");
    wait_ready(&s).await;
    let http = reqwest::Client::new();
    let spc = format!("{}/ServiceProviderConfig", s.scim);
    assert_eq!(
        status(http.get(&spc).bearer_auth(&s.token))
            .await
            .map(|r| r.0),
        Some(200)
    );
    let main = s.scim.trim_end_matches("/scim/v2");
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            get(&format!("{main}{path}")).await.map(|r| r.0),
            Some(404),
            "{path} on the SCIM address"
        );
        assert_eq!(
            get(&format!("{}{path}", s.ops)).await.map(|r| r.0),
            Some(200),
            "{path} on the metrics address"
        );
    }
    assert_eq!(
        status(
            http.get(format!("{}/scim/v2/ServiceProviderConfig", s.ops))
                .bearer_auth(&s.token)
        )
        .await
        .map(|r| r.0),
        Some(404),
        "no SCIM on the metrics address"
    );
}

#[tokio::test]
async fn random_methods_and_paths_create_no_metric_series() {
    let s = start("auth_failure_limit = 10000");
    wait_ready(&s).await;
    let http = reqwest::Client::new();
    // Known methods and statuses, once each, so the series they need exist.
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let _ = status(http.request(m, format!("{}/Users/x", s.scim))).await;
    }
    for path in ["/Users", "/Users/a/b"] {
        let m = reqwest::Method::from_bytes(b"FIRST").expect("method");
        let _ = status(http.request(m, format!("{}{path}", s.scim))).await;
    }
    let (_, before) = get(&format!("{}/metrics", s.ops)).await.expect("metrics");
    let before = scim_series(&before).len();
    for n in 0..40 {
        let m = reqwest::Method::from_bytes(format!("M{n}X").as_bytes()).expect("method");
        let _ = status(
            http.request(m, format!("{}/Users/{n}/p{n}?q={n}", s.scim))
                .bearer_auth(format!("t{n}")),
        )
        .await;
        let _ = status(http.get(format!("{}/x{n}/y{n}", s.scim))).await;
    }
    let (_, after) = get(&format!("{}/metrics", s.ops)).await.expect("metrics");
    let series = scim_series(&after);
    assert_eq!(series.len(), before, "{series:#?}");
    assert!(
        series
            .iter()
            .all(|l| !l.contains("M1X") && !l.contains("/x1")),
        "{series:#?}"
    );
    assert!(
        series.iter().any(|l| l.contains("method=\"other\"")),
        "{series:#?}"
    );
}

#[tokio::test]
async fn sigterm_exits_while_a_slowloris_client_holds_a_connection() {
    // A header timeout far beyond the test's bound: only the shutdown can end the connection.
    let mut s = start("header_read_timeout_secs = 300\nshutdown_grace_secs = 2");
    wait_ready(&s).await;
    let mut slow = TcpStream::connect(&s.main_addr).expect("connect");
    slow.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // One header byte a second until the service has stopped.
    let feeder = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if slow.write_all(b"a").is_err() {
                return true;
            }
            slow.set_read_timeout(Some(Duration::from_secs(1))).ok();
            let mut buf = [0u8; 256];
            match slow.read(&mut buf) {
                Ok(0) => return true,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
                Ok(_) => {}
            }
        }
        false
    });
    // The slow client is being served before the signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = get(&format!("{}/metrics", s.ops)).await.expect("metrics");
        if m.contains("airlock_http_connections{listener=\"main\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow client was never served: {m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = s.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop on SIGTERM with a slow client connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        feeder.join().expect("feeder"),
        "the slow client was not disconnected"
    );
}
