//! `airlock serve` under faults, measured: `cargo run --release -p airlock-cli --example
//! bench_serve -- [takeover|connections|latency|recovery|all] [RUNS]`.
//!
//! Builds nothing itself: run `cargo build --release -p airlock-cli` first (the example starts
//! `target/release/airlock serve` processes). Everything runs on 127.0.0.1: a throw-away
//! PostgreSQL cluster (testkit `PgCluster`), one TCP fault proxy per replica in front of it
//! (testkit `TcpProxy`), and for `latency` a private Airflow 3.3.2 (testkit).
//!
//! - `takeover`: two replicas, one instance, default `lease_ttl_secs` (15). RUNS times each
//!   (default 10): kill -9 the holder, SIGSTOP it, cut it off from PostgreSQL (blackhole: no
//!   FIN, no RST); time until the other replica reports holding the lease. A killed process
//!   on the same host is detected (its pid is gone), a frozen or cut-off one is not: its
//!   lease must expire, which is what a vanished host costs.
//! - `connections`: one replica with 1, 12 and 100 instances; the most PostgreSQL sessions
//!   (pg_stat_activity) it holds over 20 s of running.
//! - `latency`: three replicas, twelve instances on one real Airflow; RUNS (default 100) SCIM
//!   deactivations spread over the replicas, each timed from the PATCH to the user's roles
//!   being gone in Airflow (polled every 20 ms). p50 and p99.
//! - `recovery`: PostgreSQL stopped for 10 s and started again, RUNS times (default 5); time
//!   from it answering again to the first successful sync (sync_interval_secs = 5, so a sync
//!   is due; the retry pause after failures is capped by the interval).

use airlock_testkit::{AirflowVersion, PgCluster, TcpProxy};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn airlock() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("target/release/airlock")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start(dir: &Path, store_url: &str, env: &[(&str, &str)]) -> Replica {
    let port = free_port();
    let child = Command::new(airlock())
        .current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("AIRLOCK_STORE__URL", store_url)
        .env("AF_PW", "unused")
        .envs(env.iter().copied())
        .args([
            "--config",
            "airlock.toml",
            "--log",
            "warn",
            "serve",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run target/release/airlock (cargo build --release -p airlock-cli)");
    Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn get(url: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// How many instances `r` holds, from its metrics.
async fn held(r: &Replica) -> usize {
    get(&format!("{}/metrics", r.base))
        .await
        .map(|m| {
            m.lines()
                .filter(|l| l.starts_with("airlock_lease_held{") && l.trim_end().ends_with(" 1"))
                .count()
        })
        .unwrap_or(0)
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Duration {
    let t0 = Instant::now();
    while !check().await {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| ms(v[((v.len() as f64 - 1.0) * p).round() as usize]);
    println!(
        "{name}: n={} p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        v.len(),
        pct(0.5),
        pct(0.99),
        ms(*v.last().expect("runs"))
    );
}

fn config(dir: &Path, instances: &[String], extra_serve: &str, directory: &str) {
    let mut c = format!(
        "policy = \"policy.toml\"\n{directory}\n[serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\n\
         lease_retry_secs = 1\nscim_poll_ms = 200\n{extra_serve}\n"
    );
    for (i, url) in instances.iter().enumerate() {
        c.push_str(&format!(
            "[instances.af{i:03}]\nurl = \"{url}\"\nusername = \"admin\"\npassword = {{ env = \"AF_PW\" }}\nmax_retries = 0\ntimeout_secs = 5\n"
        ));
    }
    std::fs::write(dir.join("airlock.toml"), c).expect("config");
    std::fs::write(
        dir.join("policy.toml"),
        "[[grants]]\ngroup = \"bench\"\nroles = [\"Viewer\"]\n[safety]\nmax_deprovisions_per_hour = 0\nmax_deprovision_fraction = 1.0\n",
    )
    .expect("policy");
    std::fs::write(dir.join("people.yaml"), "people: []\n").expect("people");
}

fn nowhere(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect()
}

async fn takeover(runs: usize) {
    let pg = PgCluster::start().expect("postgres");
    let url = pg.fresh_database().expect("db");
    let db = url.rsplit('/').next().expect("db").to_string();
    let dir = tempfile::tempdir().expect("tmp");
    config(
        dir.path(),
        &nowhere(1),
        "",
        "[directory]\nkind = \"file\"\npath = \"people.yaml\"",
    );
    for fault in ["kill -9", "SIGSTOP", "network cut"] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let pa = TcpProxy::start(pg.addr()).expect("proxy");
            let pb = TcpProxy::start(pg.addr()).expect("proxy");
            let mut a = start(dir.path(), &pg.url_via(pa.port(), &db), &[]);
            wait_until("A holds the lease", Duration::from_secs(60), || async {
                held(&a).await == 1
            })
            .await;
            let b = start(dir.path(), &pg.url_via(pb.port(), &db), &[]);
            wait_until("B answers", Duration::from_secs(30), || async {
                get(&format!("{}/readyz", b.base)).await.is_some()
            })
            .await;
            let t0 = Instant::now();
            match fault {
                "kill -9" => {
                    let _ = a.child.kill();
                    let _ = a.child.wait();
                }
                "SIGSTOP" => {
                    let _ = Command::new("kill")
                        .args(["-STOP", &a.child.id().to_string()])
                        .status();
                }
                _ => pa.blackhole(),
            }
            wait_until("B to take over", Duration::from_secs(120), || async {
                held(&b).await == 1
            })
            .await;
            times.push(t0.elapsed());
            drop(a);
            drop(b);
            // Let B's lease go before the next run.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let pool = sqlx::PgPool::connect(&pg.url(&db)).await.expect("pg");
            sqlx::query("DELETE FROM leases")
                .execute(&pool)
                .await
                .expect("reset");
            pool.close().await;
        }
        summary(&format!("takeover after {fault}"), times);
    }
}

async fn connections() {
    let pg = PgCluster::start().expect("postgres");
    for n in [1usize, 12, 100] {
        let url = pg.fresh_database().expect("db");
        let db = url.rsplit('/').next().expect("db").to_string();
        let dir = tempfile::tempdir().expect("tmp");
        config(dir.path(), &nowhere(n), "", "[directory]\nkind = \"scim\"");
        let r = start(dir.path(), &url, &[]);
        let pool = sqlx::PgPool::connect(&pg.url("postgres"))
            .await
            .expect("pg");
        let t0 = Instant::now();
        let mut most = 0i64;
        while t0.elapsed() < Duration::from_secs(20) {
            let c: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&db)
                    .fetch_one(&pool)
                    .await
                    .expect("count");
            most = most.max(c);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let holding = held(&r).await;
        println!("one replica, {n} instances: at most {most} PostgreSQL sessions over 20 s (holding {holding} leases)");
        pool.close().await;
    }
}

async fn scim(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(r) = reqwest::Client::new()
            .request(method.clone(), format!("{base}/scim/v2{path}"))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .json(&body)
            .send()
            .await
        {
            if r.status().is_success() {
                return r.json().await.unwrap_or_default();
            }
            last = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{method} {path} failed: {last}");
}

async fn roles(af: &airlock_testkit::AirflowServer, token: &str, user: &str) -> Option<usize> {
    let r = reqwest::Client::new()
        .get(format!("{}/auth/fab/v1/users/{user}", af.base_url))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let v: serde_json::Value = r.json().await.ok()?;
    v["roles"].as_array().map(Vec::len)
}

async fn latency(runs: usize) {
    let af = airlock_testkit::airflow::start(AirflowVersion::V3).expect("airflow");
    let pg = PgCluster::start().expect("postgres");
    let url = pg.fresh_database().expect("db");
    let dir = tempfile::tempdir().expect("tmp");
    let urls: Vec<String> = (0..12).map(|_| af.base_url.clone()).collect();
    config(dir.path(), &urls, "", "[directory]\nkind = \"scim\"");
    let out = Command::new(airlock())
        .current_dir(dir.path())
        .env("AIRLOCK_STORE__URL", &url)
        .env("AF_PW", &af.admin_password)
        .args([
            "--config",
            "airlock.toml",
            "scim",
            "token",
            "create",
            "--client",
            "okta",
        ])
        .output()
        .expect("token");
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    let env = [("AF_PW", af.admin_password.as_str())];
    let replicas: Vec<Replica> = (0..3).map(|_| start(dir.path(), &url, &env)).collect();
    let af_token: String = {
        let v: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/auth/token", af.base_url))
            .json(&serde_json::json!({"username": af.admin_user, "password": af.admin_password}))
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        v["access_token"].as_str().expect("token").to_string()
    };
    wait_until("12 leases held", Duration::from_secs(120), || async {
        let mut n = 0;
        for r in &replicas {
            n += held(r).await;
        }
        n == 12
    })
    .await;
    let group = scim(&replicas[0].base, &token, reqwest::Method::POST, "/Groups", serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "bench", "members": []
    })).await;
    let gid = group["id"].as_str().expect("id").to_string();
    let mut times = Vec::new();
    for k in 0..runs {
        let base = &replicas[k % 3].base;
        let user = format!("lat{k}@example.com");
        let u = scim(base, &token, reqwest::Method::POST, "/Users", serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user, "active": true,
            "emails": [{"value": user, "primary": true}]
        })).await;
        let id = u["id"].as_str().expect("id").to_string();
        scim(
            base,
            &token,
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]
            }),
        )
        .await;
        wait_until("provisioned", Duration::from_secs(60), || async {
            roles(&af, &af_token, &user).await == Some(1)
        })
        .await;
        let t0 = Instant::now();
        scim(
            &replicas[(k + 1) % 3].base,
            &token,
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]
            }),
        )
        .await;
        wait_until("roles gone", Duration::from_secs(60), || async {
            roles(&af, &af_token, &user).await == Some(0)
        })
        .await;
        times.push(t0.elapsed());
    }
    summary(
        "12 instances on 3 replicas: SCIM deactivation -> roles gone",
        times,
    );
}

async fn recovery(runs: usize) {
    let pg = PgCluster::start().expect("postgres");
    let url = pg.fresh_database().expect("db");
    let dir = tempfile::tempdir().expect("tmp");
    let af = airlock_testkit::airflow::start(AirflowVersion::V3).expect("airflow");
    config(
        dir.path(),
        std::slice::from_ref(&af.base_url),
        "",
        "[directory]\nkind = \"file\"\npath = \"people.yaml\"",
    );
    let cfg = std::fs::read_to_string(dir.path().join("airlock.toml")).expect("cfg");
    std::fs::write(
        dir.path().join("airlock.toml"),
        cfg.replace("sync_interval_secs = 3600", "sync_interval_secs = 5"),
    )
    .expect("cfg");
    let r = start(dir.path(), &url, &[("AF_PW", af.admin_password.as_str())]);
    let ok = |r: &Replica| {
        let base = r.base.clone();
        async move {
            get(&format!("{base}/metrics"))
                .await
                .and_then(|m| {
                    m.lines()
                        .find(|l| l.starts_with("airlock_sync_runs_total{instance=\"af000\",result=\"succeeded\",trigger=\"schedule\"}"))
                        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                })
                .unwrap_or(0.0)
        }
    };
    wait_until("a first sync", Duration::from_secs(60), || async {
        ok(&r).await >= 1.0
    })
    .await;
    let mut times = Vec::new();
    for _ in 0..runs {
        pg.stop().expect("stop");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let before = ok(&r).await;
        pg.start_again().expect("start");
        let t0 = Instant::now();
        wait_until(
            "a sync after PostgreSQL returned",
            Duration::from_secs(120),
            || async { ok(&r).await > before },
        )
        .await;
        times.push(t0.elapsed());
    }
    summary(
        "PostgreSQL back after 10 s down -> first successful sync",
        times,
    );
}

#[tokio::main]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let runs: Option<usize> = std::env::args().nth(2).and_then(|r| r.parse().ok());
    if what == "takeover" || what == "all" {
        takeover(runs.unwrap_or(10)).await;
    }
    if what == "connections" || what == "all" {
        connections().await;
    }
    if what == "latency" || what == "all" {
        latency(runs.unwrap_or(100)).await;
    }
    if what == "recovery" || what == "all" {
        recovery(runs.unwrap_or(5)).await;
    }
}
