//! `airlock serve` as real processes: two replicas on one PostgreSQL store against a real
//! Airflow 3, one lease holder at a time, takeover when the holder dies, and a clean SIGTERM.

use airlock_testkit::{fresh_pg_database, AirflowServer, AirflowVersion};

/// The JumpCloud directory API fixture (checked against JumpCloud's spec by
/// airlock-directory's tests).
#[path = "../../airlock-directory/tests/jumpcloud/fixture.rs"]
#[allow(dead_code)]
mod jumpcloud;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn v3() -> &'static AirflowServer {
    airlock_testkit::airflow::shared(AirflowVersion::V3)
}

/// A running `airlock serve`; killed when dropped, whatever happened in the test.
struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A short suffix that differs between runs, so that tests sharing one Airflow never collide.
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos % 0xffff_ffff)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start(dir: &std::path::Path) -> Replica {
    start_with(dir, &[])
}

/// [`start`] with extra environment (config overrides such as `AIRLOCK_STORE__URL`).
fn start_with(dir: &std::path::Path, env: &[(&str, &str)]) -> Replica {
    let port = free_port();
    let child = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
        .current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .envs(env.iter().copied())
        .env("AF3_PW", &v3().admin_password)
        .args([
            "--config",
            "airlock.toml",
            "--log",
            "info",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("serve-{port}.log")))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("airlock serve");
    Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

/// Waits until the replica's /readyz answers 200 (its store answers).
async fn wait_ready(r: &Replica, what: &str) {
    wait_for(what, Duration::from_secs(60), || async {
        matches!(get(&format!("{}/readyz", r.base)).await, Some((200, _)))
    })
    .await;
}

/// Waits until the replica has completed a full sync of `af3` (the one it runs when it takes
/// the lease).
async fn wait_first_sync(r: &Replica, what: &str) {
    wait_for(what, Duration::from_secs(60), || async {
        get(&format!("{}/metrics", r.base)).await.is_some_and(|(_, m)| {
            m.contains("airlock_sync_runs_total{instance=\"af3\",result=\"succeeded\",trigger=\"schedule\"}")
        })
    })
    .await;
}

/// `airlock_lease_held{instance="af3"}` as the replica reports it, if it answers.
async fn lease_held(r: &Replica) -> Option<bool> {
    let (_, body) = get(&format!("{}/metrics", r.base)).await?;
    body.lines()
        .find(|l| l.starts_with("airlock_lease_held{instance=\"af3\"}"))
        .map(|l| l.trim_end().ends_with(" 1"))
}

async fn wait_for(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn two_replicas_share_one_store_one_syncs_and_the_other_takes_over_when_it_dies() {
    let db = fresh_pg_database()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 is required");
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = format!("s{}.example.com", unique());
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[store]\nurl = \"{}\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [serve]\nsync_interval_secs = 1\nsync_jitter_secs = 0\nlease_retry_secs = 1\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n",
            db.url(),
            v3().base_url
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\ngroup = \"eng\"\nroles = [\"Viewer\"]\n",
    )
    .expect("policy");
    std::fs::write(
        dir.path().join("people.yaml"),
        format!("people:\n  - username: ann\n    email: ann@{domain}\n    groups: [eng]\n"),
    )
    .expect("people");

    let mut a = start(dir.path());
    wait_first_sync(&a, "replica A's first sync").await;
    wait_for(
        "replica A to hold the lease",
        Duration::from_secs(30),
        || async { lease_held(&a).await == Some(true) },
    )
    .await;
    let b = start(dir.path());
    wait_ready(&b, "replica B ready").await;
    for _ in 0..10 {
        assert_eq!(
            lease_held(&b).await,
            Some(false),
            "B must not hold the lease while A lives"
        );
        assert_eq!(lease_held(&a).await, Some(true));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = get(&format!("{}/metrics", a.base)).await.expect("metrics");
    assert!(
        metrics.contains(
            "airlock_sync_runs_total{instance=\"af3\",result=\"succeeded\",trigger=\"schedule\"}"
        ),
        "{metrics}"
    );

    // The holder dies without warning; the other replica takes over within seconds.
    a.child.kill().expect("kill A");
    a.child.wait().expect("reap A");
    let took = wait_for(
        "replica B to take over",
        Duration::from_secs(30),
        || async { lease_held(&b).await == Some(true) },
    )
    .await;
    eprintln!(
        "takeover after the holder died: {:.1} s",
        took.as_secs_f64()
    );

    // Syncs never overlapped: every serve run ended before the next began.
    let pool = sqlx::PgPool::connect(db.url()).await.expect("pg");
    let runs: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT started_at_ms, finished_at_ms FROM sync_runs WHERE kind = 'serve' ORDER BY started_at_ms",
    )
    .fetch_all(&pool)
    .await
    .expect("runs");
    assert!(runs.len() >= 2, "{runs:?}");
    for w in runs.windows(2) {
        if let (Some(end), start) = (w[0].1, w[1].0) {
            assert!(end <= start, "overlapping runs: {runs:?}");
        }
    }
    pool.close().await;

    // SIGTERM: stops taking requests and exits cleanly.
    let mut b = b;
    let pid = b.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = b.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_scim_push_reaches_airflow_without_waiting_for_the_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    let token = scim_service(dir.path(), &v3().base_url, "", &format!("eng-{id}"), "okta");

    let replica = start(dir.path());
    wait_ready(&replica, "serve ready").await;
    // The first scheduled sync (with an empty directory) happens at start; the next is an
    // hour away, so anything that happens now was triggered by the SCIM writes.
    // A failed first sync is retried soon (not an hour later): wait for one that succeeded.
    wait_first_sync(&replica, "the first full sync").await;

    let http = reqwest::Client::new();
    let scim = format!("{}/scim/v2", replica.base);
    let username = format!("scim-{id}@example.com");
    let user_id = scim_user(&scim, &token, &username).await;
    // A bystander in the same group.
    let bystander = format!("bystander-{id}@example.com");
    let other = scim_user(&scim, &token, &bystander).await;
    scim_group(&scim, &token, &format!("eng-{id}"), &[&user_id, &other]).await;

    let admin = airflow_admin().await;
    let took = wait_for(
        "the pushed users to get Op in Airflow",
        Duration::from_secs(60),
        || async {
            roles_of(&admin, &username).await == vec!["Op".to_string()]
                && roles_of(&admin, &bystander).await == vec!["Op".to_string()]
        },
    )
    .await;
    eprintln!(
        "SCIM create -> account with roles in Airflow: {:.2} s",
        took.as_secs_f64()
    );
    // The roles reach Airflow before the run that wrote them has acknowledged its changes,
    // and a run reads the directory as it is then: a write that landed during the run (the
    // group) is applied by it yet still pending, and the next pass applies it again. Wait for
    // all three writes to be acknowledged, so that pass cannot undo the drift made below.
    wait_for(
        "the three SCIM writes to be acknowledged",
        Duration::from_secs(60),
        || async {
            get(&format!("{}/metrics", replica.base))
                .await
                .is_some_and(|(_, m)| {
                    m.lines().any(|l| {
                        l.strip_prefix(
                            "airlock_scim_change_to_airflow_seconds_count{instance=\"af3\"} ",
                        )
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n >= 3)
                    })
                })
        },
    )
    .await;

    // Someone changes the bystander's roles in Airflow by hand: drift that only a full sync
    // (an hour away) repairs, because the next SCIM write does not touch the bystander.
    let resp = reqwest::Client::new()
        .patch(format!(
            "{}/auth/fab/v1/users/{bystander}?update_mask=roles",
            v3().base_url
        ))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "roles": [{ "name": "Viewer" }] }))
        .send()
        .await
        .expect("drift");
    assert!(resp.status().is_success(), "{}", resp.status());

    // Okta-style deactivation: the roles go at once, not at the next scheduled sync.
    let resp = http
        .patch(format!("{scim}/Users/{user_id}"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{ "op": "replace", "value": { "active": false } }]
        }))
        .send()
        .await
        .expect("patch");
    assert!(resp.status().is_success(), "{}", resp.status());
    let took = wait_for(
        "the deactivated user's roles to be gone",
        Duration::from_secs(60),
        || async { roles_of(&admin, &username).await.is_empty() },
    )
    .await;
    eprintln!(
        "SCIM PATCH active:false -> roles gone in Airflow: {:.2} s",
        took.as_secs_f64()
    );
    // Only the account the write touched was reconciled.
    assert_eq!(
        roles_of(&admin, &bystander).await,
        vec!["Viewer".to_string()]
    );
    let (_, metrics) = get(&format!("{}/metrics", replica.base))
        .await
        .expect("metrics");
    assert!(
        metrics.contains("airlock_scim_requests_total{method=\"PATCH\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "airlock_sync_runs_total{instance=\"af3\",result=\"succeeded\",trigger=\"scim\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "airlock_sync_runs_total{instance=\"af3\",result=\"succeeded\",trigger=\"schedule\"} 1"
        ),
        "one full sync only, at start: {metrics}"
    );
    assert!(
        metrics.contains("airlock_scim_change_to_airflow_seconds_count"),
        "{metrics}"
    );
}

async fn airflow_admin() -> String {
    let srv = v3();
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/auth/token", srv.base_url))
        .json(&serde_json::json!({ "username": srv.admin_user, "password": srv.admin_password }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    v["access_token"].as_str().expect("token").to_string()
}

async fn roles_of(token: &str, username: &str) -> Vec<String> {
    let Ok(resp) = reqwest::Client::new()
        .get(format!("{}/auth/fab/v1/users/{username}", v3().base_url))
        .bearer_auth(token)
        .send()
        .await
    else {
        return vec!["<unreachable>".into()];
    };
    if resp.status().as_u16() == 404 {
        return vec!["<absent>".into()];
    }
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    let mut roles: Vec<String> = v["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles
}

#[tokio::test]
async fn an_acknowledged_scim_write_survives_a_crash_and_is_applied_when_the_service_returns() {
    use airlock_testkit::{Fault, FaultProxy, Rule};
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    // Airflow sits behind the fault proxy, so the service can be cut off from it.
    let proxy = FaultProxy::start(&v3().base_url).await;
    let token = scim_service(
        dir.path(),
        &proxy.url(),
        "max_retries = 0\n",
        &format!("ops-{id}"),
        "entra",
    );

    let mut first = start(dir.path());
    wait_first_sync(&first, "the first full sync").await;
    // From now on Airflow is unreachable: the sync the write triggers cannot apply it.
    proxy.add_rule(Rule::new("/", Fault::Reset));
    let scim = format!("{}/scim/v2", first.base);
    let username = format!("crash-{id}@example.com");
    let user = scim_user(&scim, &token, &username).await;
    scim_group(&scim, &token, &format!("ops-{id}"), &[&user]).await;
    // The service crashes (SIGKILL) before it could apply the change.
    first.child.kill().expect("kill");
    first.child.wait().expect("reap");
    let admin = airflow_admin().await;
    assert_eq!(
        roles_of(&admin, &username).await,
        vec!["<absent>".to_string()],
        "not applied yet"
    );

    // Airflow is back and the service restarts: the acknowledged write is applied.
    proxy.clear_rules();
    let second = start(dir.path());
    wait_for(
        "the acknowledged write to reach Airflow after the restart",
        Duration::from_secs(60),
        || async { roles_of(&admin, &username).await == vec!["Op".to_string()] },
    )
    .await;
    drop(second);
}

/// Airflow is unreachable when a SCIM write arrives: the targeted run fails, the change stays
/// pending, and it is retried (with a growing pause) until it applies, long before the next
/// scheduled sync.
#[tokio::test]
async fn a_failed_targeted_run_keeps_the_change_and_retries_it() {
    use airlock_testkit::{Fault, FaultProxy, Rule};
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    let proxy = FaultProxy::start(&v3().base_url).await;
    let token = scim_service(
        dir.path(),
        &proxy.url(),
        "max_retries = 0\n",
        &format!("retry-{id}"),
        "jumpcloud",
    );
    let replica = start(dir.path());
    wait_first_sync(&replica, "the first full sync").await;
    proxy.add_rule(Rule::new("/", Fault::Reset));
    let scim = format!("{}/scim/v2", replica.base);
    let username = format!("retry-{id}@example.com");
    let user = scim_user(&scim, &token, &username).await;
    scim_group(&scim, &token, &format!("retry-{id}"), &[&user]).await;
    wait_for(
        "a targeted run to fail while Airflow is away",
        Duration::from_secs(30),
        || async {
            get(&format!("{}/metrics", replica.base))
                .await
                .is_some_and(|(_, m)| {
                    m.contains(
                        "airlock_sync_runs_total{instance=\"af3\",result=\"error\",trigger=\"scim\"}",
                    )
                })
        },
    )
    .await;
    proxy.clear_rules();
    let admin = airflow_admin().await;
    let took = wait_for(
        "the retried change to reach Airflow",
        Duration::from_secs(60),
        || async { roles_of(&admin, &username).await == vec!["Op".to_string()] },
    )
    .await;
    eprintln!(
        "Airflow back -> pending change applied: {:.1} s",
        took.as_secs_f64()
    );
}

/// Two replicas behind one load balancer: a SCIM write can land on the replica that does not
/// hold the instance's lease. The store's outbox carries it to the holder, which applies it
/// without waiting for the schedule.
#[tokio::test]
async fn a_scim_write_received_by_the_other_replica_is_applied_by_the_lease_holder() {
    let db = fresh_pg_database()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 is required");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    let token = scim_service_on(
        dir.path(),
        &format!("[store]\nurl = \"{}\"\n", db.url()),
        &v3().base_url,
        "",
        &format!("pair-{id}"),
        "okta",
    );
    let holder = start(dir.path());
    // Its first full sync done, so that what follows is applied by targeted runs.
    wait_first_sync(&holder, "the first replica's first full sync").await;
    assert_eq!(lease_held(&holder).await, Some(true));
    let other = start(dir.path());
    wait_ready(&other, "the second replica ready").await;
    assert_eq!(lease_held(&other).await, Some(false));

    let scim = format!("{}/scim/v2", other.base);
    let username = format!("pair-{id}@example.com");
    let user = scim_user(&scim, &token, &username).await;
    scim_group(&scim, &token, &format!("pair-{id}"), &[&user]).await;
    let admin = airflow_admin().await;
    let took = wait_for(
        "the lease holder to apply a write the other replica received",
        Duration::from_secs(60),
        || async { roles_of(&admin, &username).await == vec!["Op".to_string()] },
    )
    .await;
    eprintln!(
        "SCIM write on the non-holder -> applied by the holder: {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(lease_held(&other).await, Some(false));
    // The role reaches Airflow before the run that wrote it ends and is counted: wait for it.
    let counted = "airlock_sync_runs_total{instance=\"af3\",result=\"succeeded\",trigger=\"scim\"}";
    wait_for(
        "the holder to count a succeeded SCIM-triggered run",
        Duration::from_secs(30),
        || async {
            get(&format!("{}/metrics", holder.base))
                .await
                .is_some_and(|(_, metrics)| metrics.contains(counted))
        },
    )
    .await;
}

/// Creates a SCIM User whose userName and primary email are `username`; returns its id.
async fn scim_user(scim: &str, token: &str, username: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{scim}/Users"))
        .bearer_auth(token)
        .header("content-type", "application/scim+json")
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": username, "active": true,
            "name": { "givenName": "Test", "familyName": "User" },
            "emails": [{ "value": username, "primary": true }]
        }))
        .send()
        .await
        .expect("create user");
    assert_eq!(resp.status().as_u16(), 201, "acknowledged");
    let user: serde_json::Value = resp.json().await.expect("user json");
    user["id"].as_str().expect("id").to_string()
}

/// Creates a SCIM Group `name` with these member ids.
async fn scim_group(scim: &str, token: &str, name: &str, members: &[&str]) {
    let members: Vec<serde_json::Value> = members
        .iter()
        .map(|id| serde_json::json!({ "value": id }))
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{scim}/Groups"))
        .bearer_auth(token)
        .header("content-type", "application/scim+json")
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name, "members": members
        }))
        .send()
        .await
        .expect("create group");
    assert_eq!(resp.status().as_u16(), 201, "acknowledged");
}

/// Writes a config whose directory is the SCIM store (syncs an hour apart, so only SCIM writes
/// trigger them) and a policy granting `Op` to `group`, and creates a SCIM token for `client`.
fn scim_service(
    dir: &std::path::Path,
    airflow_url: &str,
    instance_extra: &str,
    group: &str,
    client: &str,
) -> String {
    scim_service_on(dir, "", airflow_url, instance_extra, group, client)
}

/// [`scim_service`] with `store` (a `[store]` table, or nothing for the default SQLite file).
fn scim_service_on(
    dir: &std::path::Path,
    store: &str,
    airflow_url: &str,
    instance_extra: &str,
    group: &str,
    client: &str,
) -> String {
    std::fs::write(
        dir.join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n{store}[directory]\nkind = \"scim\"\n\
             [serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nlease_retry_secs = 1\n\
             [instances.af3]\nurl = \"{airflow_url}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n{instance_extra}"
        ),
    )
    .expect("config");
    std::fs::write(
        dir.join("policy.toml"),
        format!("[[grants]]\ngroup = \"{group}\"\nroles = [\"Op\"]\n"),
    )
    .expect("policy");
    scim_token(dir, client)
}

/// A fleet of `airlock serve` replicas on a throw-away PostgreSQL cluster, each replica
/// reaching it through its own TCP fault proxy (so one can be cut off alone), and instances
/// that all point at the shared Airflow through their own HTTP proxies (so each instance's
/// calls can be counted).
struct Fleet {
    dir: tempfile::TempDir,
    pg: airlock_testkit::PgCluster,
    db: String,
    pg_proxies: Vec<airlock_testkit::TcpProxy>,
    replicas: Vec<Option<Replica>>,
    af_proxies: Vec<airlock_testkit::FaultProxy>,
    token: String,
    group: String,
    domain: String,
}

impl Fleet {
    /// `replicas` replicas and `instances` instances (the last `unreachable` of them point at
    /// a port nobody listens on), a policy granting Viewer everywhere to one SCIM group, and
    /// leases that live 3 s.
    async fn start(replicas: usize, instances: usize, unreachable: usize) -> Fleet {
        Fleet::start_with_policy(replicas, instances, unreachable, "").await
    }

    /// [`Fleet::start`] with more policy (e.g. just-in-time access rules).
    async fn start_with_policy(
        replicas: usize,
        instances: usize,
        unreachable: usize,
        more_policy: &str,
    ) -> Fleet {
        let pg = airlock_testkit::PgCluster::start().expect("PostgreSQL binaries are required");
        let url = pg.fresh_database().expect("database");
        let db = url.rsplit('/').next().expect("db name").to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let id = unique();
        let group = format!("fleet-{id}");
        let mut af_proxies = Vec::new();
        let mut config = format!(
            "policy = \"policy.toml\"\n[store]\nurl = \"{url}\"\n[directory]\nkind = \"scim\"\n\
             [serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nlease_retry_secs = 1\n\
             lease_ttl_secs = 3\nscim_poll_ms = 200\n"
        );
        for i in 0..instances {
            let name = format!("af{i:02}");
            let target = if i + unreachable >= instances {
                format!("http://127.0.0.1:{}", free_port())
            } else {
                let p = airlock_testkit::FaultProxy::start(&v3().base_url).await;
                let u = p.url();
                af_proxies.push(p);
                u
            };
            config.push_str(&format!(
                "[instances.{name}]\nurl = \"{target}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\nmax_retries = 0\ntimeout_secs = 5\n"
            ));
        }
        std::fs::write(dir.path().join("airlock.toml"), config).expect("config");
        std::fs::write(
            dir.path().join("policy.toml"),
            // Twelve instance names on one Airflow count every suspension twelve times in the
            // rolling window, so the window is off here (its own tests are in the engine).
            format!("[[grants]]\ngroup = \"{group}\"\nroles = [\"Viewer\"]\n[safety]\nmax_deprovision_fraction = 1.0\nmax_deprovisions_per_hour = 0\n{more_policy}"),
        )
        .expect("policy");
        let token = scim_token(dir.path(), "okta");
        let mut fleet = Fleet {
            dir,
            pg,
            db,
            pg_proxies: Vec::new(),
            replicas: Vec::new(),
            af_proxies,
            token,
            group,
            domain: format!("{id}.example.com"),
        };
        for _ in 0..replicas {
            let proxy = airlock_testkit::TcpProxy::start(fleet.pg.addr()).expect("tcp proxy");
            fleet.pg_proxies.push(proxy);
            fleet.replicas.push(None);
        }
        for r in 0..replicas {
            fleet.restart(r);
        }
        fleet
    }

    fn restart(&mut self, r: usize) {
        let url = self.pg.url_via(self.pg_proxies[r].port(), &self.db);
        self.replicas[r] = Some(start_with(self.dir.path(), &[("AIRLOCK_STORE__URL", &url)]));
    }

    fn replica(&self, r: usize) -> &Replica {
        self.replicas[r].as_ref().expect("replica running")
    }

    fn pid(&self, r: usize) -> String {
        self.replica(r).child.id().to_string()
    }

    fn user(&self, k: usize) -> String {
        format!("u{k}@{}", self.domain)
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.pg.url(&self.db))
            .await
            .expect("pg")
    }

    /// A SCIM request through replica `r`, retried while the store is unavailable (503).
    async fn scim(
        &self,
        r: usize,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let url = format!("{}/scim/v2{path}", self.replica(r).base);
        for _ in 0..60 {
            let resp = reqwest::Client::new()
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .header("content-type", "application/scim+json")
                .json(&body)
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            match resp {
                Ok(resp) if resp.status().is_success() => {
                    return resp.json().await.unwrap_or_default();
                }
                Ok(resp) if resp.status().as_u16() == 503 => {
                    assert!(
                        resp.headers().contains_key("retry-after"),
                        "503 without Retry-After"
                    );
                }
                Ok(resp) => panic!(
                    "{method} {path}: {} {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                ),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{method} {path}: no success through replica {r}");
    }

    /// Creates SCIM user `k` through replica `r`; its id.
    async fn create_user(&self, r: usize, k: usize) -> String {
        let user = self
            .scim(
                r,
                reqwest::Method::POST,
                "/Users",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": self.user(k), "active": true,
                    "name": { "givenName": "Fleet", "familyName": format!("U{k}") },
                    "emails": [{ "value": self.user(k), "primary": true }]
                }),
            )
            .await;
        user["id"].as_str().expect("id").to_string()
    }

    /// Creates the granted SCIM group with these members through replica `r`.
    async fn create_group(&self, r: usize, ids: &[String]) {
        let members: Vec<serde_json::Value> = ids
            .iter()
            .map(|i| serde_json::json!({ "value": i }))
            .collect();
        self.scim(
            r,
            reqwest::Method::POST,
            "/Groups",
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": self.group, "members": members
            }),
        )
        .await;
    }

    async fn deactivate(&self, r: usize, user_id: &str) {
        self.scim(
            r,
            reqwest::Method::PATCH,
            &format!("/Users/{user_id}"),
            serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "value": { "active": false } }]
            }),
        )
        .await;
    }

    /// Succeeded audit events of `operation` on `username`, by instance.
    async fn audited(
        &self,
        operation: &str,
        username: &str,
    ) -> std::collections::BTreeMap<String, usize> {
        self.audited_by(operation, username).await.0
    }

    /// [`Fleet::audited`], and the actors of those events.
    async fn audited_by(
        &self,
        operation: &str,
        username: &str,
    ) -> (
        std::collections::BTreeMap<String, usize>,
        std::collections::BTreeSet<String>,
    ) {
        let pool = self.pool().await;
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT event_json FROM audit_events ORDER BY seq")
                .fetch_all(&pool)
                .await
                .expect("audit");
        pool.close().await;
        let mut by = std::collections::BTreeMap::new();
        let mut actors = std::collections::BTreeSet::new();
        for (json,) in rows {
            let e: serde_json::Value = serde_json::from_str(&json).expect("event json");
            if e["operation"] == operation
                && e["outcome"]["status"] == "succeeded"
                && e["target"]["username"]
                    .as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(username))
            {
                *by.entry(e["instance"].as_str().unwrap_or("").to_string())
                    .or_insert(0) += 1;
                actors.insert(e["actor"].as_str().unwrap_or("").to_string());
            }
        }
        (by, actors)
    }

    /// The reachable instances, each of which recorded `username` as managed.
    async fn managed_everywhere(&self, username: &str, reachable: usize) -> bool {
        let pool = self.pool().await;
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM managed_accounts WHERE username_key = $1")
                .bind(username.to_lowercase())
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
        pool.close().await;
        n as usize >= reachable
    }
}

/// `airlock scim token create --client CLIENT` in `dir`; the token.
fn scim_token(dir: &std::path::Path, client: &str) -> String {
    let out = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
        .current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("AF3_PW", &v3().admin_password)
        .args([
            "--config",
            "airlock.toml",
            "scim",
            "token",
            "create",
            "--client",
            client,
        ])
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// Three replicas and twelve instances: every SCIM write, taken by any replica, reaches every
/// instance; each deprovisioning is applied exactly once per instance (counted in the audit
/// trail and in the calls each instance's proxy saw) through kill -9 of one replica, SIGSTOP
/// of another, a third cut off from PostgreSQL, and a restart of PostgreSQL itself.
#[tokio::test]
async fn three_replicas_and_twelve_instances_apply_every_scim_write_once_through_faults() {
    const INSTANCES: usize = 12;
    let mut fleet = Fleet::start(3, INSTANCES, 0).await;
    for r in 0..3 {
        wait_ready(fleet.replica(r), "replica ready").await;
    }
    // Six people, created through the three replicas in turn, in one group.
    let mut ids = Vec::new();
    for k in 0..6 {
        ids.push(fleet.create_user(k % 3, k).await);
    }
    fleet.create_group(1, &ids).await;
    let admin = airflow_admin().await;
    let took = wait_for(
        "every instance to provision the six people",
        Duration::from_secs(120),
        || async {
            for k in 0..6 {
                if roles_of(&admin, &fleet.user(k)).await != vec!["Viewer".to_string()]
                    || !fleet.managed_everywhere(&fleet.user(k), INSTANCES).await
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    eprintln!(
        "6 SCIM users on 3 replicas -> managed on 12 instances: {:.1} s",
        took.as_secs_f64()
    );
    // Every instance is held by exactly one replica.
    let held = held_counts(&fleet).await;
    assert_eq!(held.iter().sum::<usize>(), INSTANCES, "{held:?}");

    // Each fault, then a deactivation through a surviving replica.
    let faults: [(&str, usize, usize); 4] = [
        ("kill -9", 0, 1),
        ("SIGSTOP", 1, 2),
        ("cut from PostgreSQL", 2, 0),
        ("PostgreSQL restart", 0, 1),
    ];
    for (k, (fault, victim, via)) in faults.into_iter().enumerate() {
        let k = k + 1;
        match fault {
            "kill -9" => {
                let r = fleet.replicas[victim].as_mut().expect("running");
                r.child.kill().expect("kill");
                r.child.wait().expect("reap");
            }
            "SIGSTOP" => signal(&fleet.pid(victim), "-STOP"),
            "cut from PostgreSQL" => fleet.pg_proxies[victim].blackhole(),
            _ => fleet.pg.restart().expect("restart PostgreSQL"),
        }
        fleet.deactivate(via, &ids[k]).await;
        let user = fleet.user(k);
        let took = wait_for(
            &format!("user {k} suspended on every instance after {fault}"),
            Duration::from_secs(120),
            || async {
                roles_of(&admin, &user).await.is_empty()
                    && fleet.audited("account.suspend", &user).await.len() == INSTANCES
            },
        )
        .await;
        eprintln!(
            "after {fault}: SCIM deactivation -> suspended on all 12 instances: {:.1} s",
            took.as_secs_f64()
        );
        // Heal the fault before the next one, so that replicas remain.
        match fault {
            "kill -9" => fleet.restart(victim),
            "SIGSTOP" => signal(&fleet.pid(victim), "-CONT"),
            "cut from PostgreSQL" => fleet.pg_proxies[victim].restore(),
            _ => {}
        }
    }
    // Let the healed replicas run (the resumed one must not write again, fenced).
    tokio::time::sleep(Duration::from_secs(8)).await;
    for k in 1..=4 {
        let user = fleet.user(k);
        let by = fleet.audited("account.suspend", &user).await;
        assert_eq!(by.len(), INSTANCES, "{user}: {by:?}");
        assert!(
            by.values().all(|n| *n == 1),
            "suspended more than once on an instance: {user}: {by:?}"
        );
        assert!(roles_of(&admin, &user).await.is_empty());
        // From Airflow's side: each instance's proxy saw one role strip of that user.
        for p in &fleet.af_proxies {
            let strips = p
                .requests_log()
                .iter()
                .filter(|(m, path)| {
                    m == "PATCH"
                        && path.contains(&format!("/users/{user}"))
                        && path.contains("update_mask=roles")
                })
                .count();
            assert!(
                strips <= 2,
                "{user}: {strips} role PATCHes through one instance"
            );
        }
    }
    for k in [0, 5] {
        assert_eq!(
            roles_of(&admin, &fleet.user(k)).await,
            vec!["Viewer".to_string()]
        );
        assert!(fleet
            .audited("account.create", &fleet.user(k))
            .await
            .values()
            .all(|n| *n == 1));
    }
    // Nothing left pending; the trail is intact; every run ended.
    let pool = fleet.pool().await;
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scim_changes")
        .fetch_one(&pool)
        .await
        .expect("pending");
    assert_eq!(pending, 0);
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM op_journal WHERE state = 'intent'")
        .fetch_one(&pool)
        .await
        .expect("journal");
    assert_eq!(open, 0, "no intent left open");
    pool.close().await;
    let out = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
        .current_dir(fleet.dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .env("AF3_PW", &v3().admin_password)
        .args(["--config", "airlock.toml", "audit", "verify"])
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held = held_counts(&fleet).await;
    assert_eq!(held.iter().sum::<usize>(), INSTANCES, "{held:?}");
}

fn signal(pid: &str, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, pid])
        .status()
        .expect("kill")
        .success());
}

/// How many instances each running replica says it holds.
async fn held_counts(fleet: &Fleet) -> Vec<usize> {
    let mut out = Vec::new();
    for r in fleet.replicas.iter().flatten() {
        let Some((_, body)) = get(&format!("{}/healthz", r.base)).await else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let n = v["instances"]
            .as_array()
            .map(|a| a.iter().filter(|i| i["lease"]["held_here"] == true).count())
            .unwrap_or(0);
        out.push(n);
    }
    out
}

/// Six instances, one of them unreachable: the other five are synced and get every SCIM
/// write, and /healthz says which one fails and what is pending for it.
#[tokio::test]
async fn one_unreachable_airflow_delays_no_other_instance() {
    let fleet = Fleet::start(1, 6, 1).await;
    wait_ready(fleet.replica(0), "replica ready").await;
    // The reachable instances' first full syncs succeeded (a failed one is retried as a full
    // sync, which would then apply the writes below as the service, not as the SCIM client).
    wait_for(
        "the five reachable instances' first syncs",
        Duration::from_secs(120),
        || async {
            let Some((_, body)) = get(&format!("{}/healthz", fleet.replica(0).base)).await else {
                return false;
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["instances"].as_array().is_some_and(|a| {
                a.iter()
                    .filter(|i| i["name"] != "af05")
                    .all(|i| i["last_success_at"].is_string())
            })
        },
    )
    .await;
    let user = fleet.create_user(0, 0).await;
    fleet.create_group(0, std::slice::from_ref(&user)).await;
    let admin = airflow_admin().await;
    wait_for(
        "the five reachable instances to provision",
        Duration::from_secs(60),
        || async {
            roles_of(&admin, &fleet.user(0)).await == vec!["Viewer".to_string()]
                && fleet.managed_everywhere(&fleet.user(0), 5).await
        },
    )
    .await;
    fleet.deactivate(0, &user).await;
    wait_for(
        "the five reachable instances to suspend",
        Duration::from_secs(60),
        || async { fleet.audited("account.suspend", &fleet.user(0)).await.len() == 5 },
    )
    .await;
    // The SCIM client that pushed the change is the actor of what it caused.
    let (_, actors) = fleet.audited_by("account.suspend", &fleet.user(0)).await;
    assert_eq!(actors.into_iter().collect::<Vec<_>>(), ["scim:okta"]);
    let (status, body) = get(&format!("{}/healthz", fleet.replica(0).base))
        .await
        .expect("healthz");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let down = v["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["name"] == "af05")
        .cloned()
        .expect("af05");
    assert_eq!(down["last_error_class"], "airflow/transient", "{down}");
    assert!(
        down["pending_scim_changes"].as_u64().unwrap_or(0) >= 1,
        "{down}"
    );
    assert!(down["last_success_at"].is_null(), "{down}");
    let up = v["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["name"] == "af00")
        .cloned()
        .expect("af00");
    assert!(up["last_success_at"].is_string(), "{up}");
    assert_eq!(up["pending_scim_changes"], 0, "{up}");
    assert_eq!(v["store"]["reachable"], true);
}

/// A crash injected between an Airflow write and its audit record: `airlock sync` is killed
/// while Airflow has created the account but before the answer reached airlock. The next run
/// finds the open intent, reads Airflow back, and records that the create happened, without
/// creating again.
#[tokio::test]
async fn a_crash_between_an_airflow_write_and_its_audit_record_is_recorded_by_the_next_run() {
    use airlock_testkit::{Fault, FaultProxy, Rule};
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    let proxy = FaultProxy::start(&v3().base_url).await;
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n\
             max_retries = 0\ntimeout_secs = 120\n",
            proxy.url()
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\ngroup = \"eng\"\nroles = [\"Viewer\"]\n",
    )
    .expect("policy");
    let email = format!("crash-{id}@example.com");
    std::fs::write(
        dir.path().join("people.yaml"),
        format!("people:\n  - username: crash{id}\n    email: {email}\n    groups: [eng]\n"),
    )
    .expect("people");
    // Airflow gets the create at once; its answer is held back.
    proxy.add_rule(
        Rule::new(
            "/auth/fab/v1/users",
            Fault::HoldResponse(Duration::from_secs(120)),
        )
        .method("POST"),
    );
    let airlock = || {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("airlock"));
        c.current_dir(dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env("AF3_PW", &v3().admin_password)
            .args(["--config", "airlock.toml"]);
        c
    };
    let mut first = airlock()
        .arg("sync")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sync");
    let admin = airflow_admin().await;
    wait_for(
        "Airflow to have created the account",
        Duration::from_secs(60),
        || async { roles_of(&admin, &email).await == vec!["Viewer".to_string()] },
    )
    .await;
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    proxy.clear_rules();

    // The proxy runs on this test's runtime: wait for the child off it.
    let mut second = airlock();
    second.arg("sync");
    let out = tokio::task::spawn_blocking(move || second.output())
        .await
        .expect("join")
        .expect("second sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let export = airlock()
        .args(["audit", "export"])
        .output()
        .expect("export");
    let creates: Vec<serde_json::Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["operation"] == "account.create")
        .collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert_eq!(creates[0]["outcome"]["status"], "succeeded");
    let reason = creates[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("recovered after an interruption")
            && reason.contains("it had reached Airflow"),
        "{reason}"
    );
    let posts = proxy
        .requests_log()
        .iter()
        .filter(|(m, p)| m == "POST" && p.starts_with("/auth/fab/v1/users"))
        .count();
    assert_eq!(posts, 1, "the account was created once");
}

/// PostgreSQL stops under a running service: health keeps answering (the store reported
/// unreachable), readiness fails, SCIM writes are refused with 503 and `Retry-After` (never a
/// 500, never a hang); when PostgreSQL is back the service recovers by itself and a write
/// made then reaches Airflow.
#[tokio::test]
async fn a_store_outage_answers_503_and_the_service_recovers_by_itself() {
    let fleet = Fleet::start(1, 1, 0).await;
    let r = fleet.replica(0);
    wait_ready(r, "replica ready").await;
    fleet.pg.stop().expect("stop PostgreSQL");
    let (status, _) = get(&format!("{}/readyz", r.base))
        .await
        .expect("readyz answers");
    assert_eq!(status, 503);
    let (status, body) = get(&format!("{}/healthz", r.base))
        .await
        .expect("healthz answers");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["store"]["reachable"], false, "{v}");
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/scim/v2/Users", r.base))
        .bearer_auth(&fleet.token)
        .header("content-type", "application/scim+json")
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": fleet.user(0), "active": true,
            "emails": [{ "value": fleet.user(0), "primary": true }]
        }))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.expect("scim error body");
    assert_eq!(body["status"], "503", "{body}");
    eprintln!(
        "SCIM write while the store is down: 503 after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    fleet.pg.start_again().expect("start PostgreSQL");
    let took = wait_for("ready again", Duration::from_secs(60), || async {
        matches!(get(&format!("{}/readyz", r.base)).await, Some((200, _)))
    })
    .await;
    eprintln!("PostgreSQL back -> ready: {:.1} s", took.as_secs_f64());
    let user = fleet.create_user(0, 0).await;
    fleet.create_group(0, std::slice::from_ref(&user)).await;
    let admin = airflow_admin().await;
    wait_for(
        "the write after the outage to reach Airflow",
        Duration::from_secs(60),
        || async { roles_of(&admin, &fleet.user(0)).await == vec!["Viewer".to_string()] },
    )
    .await;
}

/// On SQLite one `airlock serve` owns the store: a second one stops at once, naming the
/// first, and so does a `sync`; read-only commands keep working.
#[tokio::test]
async fn a_second_service_or_a_sync_on_the_same_sqlite_store_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    let _token = scim_service(
        dir.path(),
        &v3().base_url,
        "",
        &format!("solo-{id}"),
        "okta",
    );
    let first = start(dir.path());
    wait_first_sync(&first, "the first service's first sync").await;
    let run = |args: &[&str]| {
        Command::new(assert_cmd::cargo::cargo_bin("airlock"))
            .current_dir(dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env("AF3_PW", &v3().admin_password)
            .args(["--config", "airlock.toml"])
            .args(args)
            .output()
            .expect("airlock")
    };
    let second = run(&["serve", "--listen", &format!("127.0.0.1:{}", free_port())]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another airlock serve uses the SQLite store")
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    let sync = run(&["sync"]);
    assert!(!sync.status.success());
    let err = String::from_utf8_lossy(&sync.stderr);
    assert!(
        err.contains("instance `af3` is being written by airlock serve"),
        "{err}"
    );
    let plan = run(&["plan"]);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let verify = run(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// `airlock` run to completion in `dir` (a CLI command beside the service); its stdout.
fn airlock_cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
        .current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("AF3_PW", &v3().admin_password)
        .env("AIRLOCK_ACTOR", "operator:test")
        .args(["--config", "airlock.toml"])
        .args(args)
        .output()
        .expect("airlock");
    assert!(
        out.status.success(),
        "airlock {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ann asks for Op on af3 for `length`, sid approves, and the role is in Airflow; the id.
async fn granted(dir: &std::path::Path, token: &str, ann: &str, length: &str) -> String {
    let asked: serde_json::Value = serde_json::from_str(&airlock_cli(
        dir,
        &[
            "request",
            "--as",
            "ann",
            "--role",
            "Op",
            "--instance",
            "af3",
            "--for",
            length,
            "-o",
            "json",
        ],
    ))
    .expect("json");
    let id = asked["id"].as_str().expect("id").to_owned();
    airlock_cli(dir, &["requests", "approve", &id, "--as", "sid"]);
    wait_for(
        "the grant's role in Airflow",
        Duration::from_secs(60),
        || async { roles_of(token, ann).await == ["Op", "Viewer"] },
    )
    .await;
    id
}

#[tokio::test]
async fn a_grant_approved_on_the_command_line_reaches_airflow_and_ends_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let domain = format!("g{}.example.com", unique());
    // The schedule never runs again after the first sync: whatever changes later is the
    // access trigger's doing.
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nscim_poll_ms = 200\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n",
            v3().base_url
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\ngroup = \"eng\"\nroles = [\"Viewer\"]\n\n[[access.rules]]\nroles = [\"Op\"]\napprovers = { groups = [\"sre\"] }\nreason_required = false\n",
    )
    .expect("policy");
    std::fs::write(
        dir.path().join("people.yaml"),
        format!(
            "people:\n  - username: ann\n    email: ann@{domain}\n    groups: [eng]\n  - username: sid\n    email: sid@{domain}\n    groups: [sre]\n"
        ),
    )
    .expect("people");
    let r = start(dir.path());
    wait_first_sync(&r, "the first sync").await;
    let token = airflow_admin().await;
    let ann = format!("ann@{domain}");
    assert_eq!(roles_of(&token, &ann).await, ["Viewer"]);

    let id = granted(dir.path(), &token, &ann, "20s").await;
    // Twenty seconds after the approval, Op goes by itself and Viewer stays.
    wait_for("the end of the grant", Duration::from_secs(90), || async {
        roles_of(&token, &ann).await == ["Viewer"]
    })
    .await;
    wait_for("the expiry on record", Duration::from_secs(30), || async {
        airlock_cli(dir.path(), &["requests", "list", "--state", "expired"]).contains(&id)
    })
    .await;

    // A grant that ends while the service is down is gone with its first sync back.
    let second = granted(dir.path(), &token, &ann, "10s").await;
    drop(r);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        roles_of(&token, &ann).await,
        ["Op", "Viewer"],
        "nobody removed it meanwhile"
    );
    let r = start(dir.path());
    wait_first_sync(&r, "the first sync after the restart").await;
    assert_eq!(roles_of(&token, &ann).await, ["Viewer"]);
    assert!(airlock_cli(dir.path(), &["requests", "list", "--state", "expired"]).contains(&second));
    airlock_cli(dir.path(), &["audit", "verify"]);
}

/// `POST` with a bearer token and a JSON body; the status and the JSON answer.
async fn api_post(url: &str, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("api answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

async fn api_get(url: &str, token: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("api answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// A local webhook receiver: the `X-Airlock-Event` of every POST, in order.
async fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let kind = headers
                    .get("x-airlock-event")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                seen.lock().expect("lock").push(kind);
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

#[tokio::test]
async fn a_grant_asked_and_approved_through_the_api_with_the_providers_tokens_reaches_airflow() {
    use airlock_testkit::oidc::{Groups, OidcProvider, OidcUser};
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook, notices) = webhook_receiver().await;
    let rsyslog = airlock_testkit::Rsyslog::start().expect("rsyslog");
    let domain = format!("api{}.example.com", unique());
    let mut ann = OidcUser::new("ann", Groups::list(["eng"]));
    ann.email = format!("ann@{domain}");
    let mut sid = OidcUser::new("sid", Groups::one("sre"));
    sid.email = format!("sid@{domain}");
    let idp = OidcProvider::start(vec![ann, sid]).expect("oidc provider");
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nscim_poll_ms = 200\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n\
             [api]\n[api.oidc]\nissuer = \"{}\"\naudience = \"{}\"\n\
             [[notifications.webhooks]]\nname = \"approvers\"\nurl = \"{hook}\"\nformat = \"slack\"\n\
             [[audit.sinks]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"{}\"\nmax_backlog = 3\n",
            v3().base_url,
            idp.issuer(),
            idp.audience(),
            rsyslog.address()
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\ngroup = \"eng\"\nroles = [\"Viewer\"]\n\n[access]\nauditors = [\"sre\"]\n\n[[access.rules]]\nroles = [\"Op\"]\napprovers = { groups = [\"sre\"] }\n",
    )
    .expect("policy");
    std::fs::write(
        dir.path().join("people.yaml"),
        format!(
            "people:\n  - username: ann\n    email: ann@{domain}\n    groups: [eng]\n  - username: sid\n    email: sid@{domain}\n    groups: [sre]\n"
        ),
    )
    .expect("people");
    let r = start(dir.path());
    wait_first_sync(&r, "the first sync").await;
    let airflow = airflow_admin().await;
    let ann_email = format!("ann@{domain}");
    assert_eq!(roles_of(&airflow, &ann_email).await, ["Viewer"]);

    let ann_token = idp.sign_in("ann").await.expect("ann signs in").access_token;
    let sid_token = idp.sign_in("sid").await.expect("sid signs in").access_token;
    let (status, asked) = api_post(
        &format!("{}/api/v1/requests", r.base),
        &ann_token,
        serde_json::json!({"roles": ["Op"], "instances": ["af3"], "duration": "1h", "reason": "INC-42"}),
    )
    .await;
    assert_eq!(status, 201, "{asked}");
    let id = asked["id"].as_str().expect("id").to_owned();
    let (status, approved) = api_post(
        &format!("{}/api/v1/requests/{id}/approve", r.base),
        &sid_token,
        serde_json::json!({"comment": "go"}),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    wait_for(
        "the grant's role in Airflow",
        Duration::from_secs(60),
        || async { roles_of(&airflow, &ann_email).await == ["Op", "Viewer"] },
    )
    .await;
    // Revoked early through the API: Op goes, Viewer (from the directory) stays.
    let (status, revoked) = api_post(
        &format!("{}/api/v1/requests/{id}/revoke", r.base),
        &sid_token,
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    wait_for("the revoked role gone", Duration::from_secs(60), || async {
        roles_of(&airflow, &ann_email).await == ["Viewer"]
    })
    .await;
    // The webhook was told each step, in order.
    wait_for("the notifications", Duration::from_secs(30), || async {
        notices.lock().expect("lock").len() >= 3
    })
    .await;
    assert_eq!(
        *notices.lock().expect("lock"),
        ["request.waiting", "request.approved", "grant.revoked"]
    );
    // A grant that ends within [access] expiring_notice (15 min) is noted as expiring at once.
    let (status, short) = api_post(
        &format!("{}/api/v1/requests", r.base),
        &ann_token,
        serde_json::json!({"roles": ["Op"], "instances": ["af3"], "duration": "10m", "reason": "INC-43"}),
    )
    .await;
    assert_eq!(status, 201, "{short}");
    let short_id = short["id"].as_str().expect("id").to_owned();
    let (status, _) = api_post(
        &format!("{}/api/v1/requests/{short_id}/approve", r.base),
        &sid_token,
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200);
    wait_for("the expiring notice", Duration::from_secs(30), || async {
        notices.lock().expect("lock").len() >= 6
    })
    .await;
    assert_eq!(
        notices.lock().expect("lock")[3..],
        ["request.waiting", "request.approved", "grant.expiring"]
    );
    api_post(
        &format!("{}/api/v1/requests/{short_id}/revoke", r.base),
        &sid_token,
        serde_json::json!({}),
    )
    .await;
    // The whole trail reaches the syslog collector too.
    wait_for("the trail in rsyslog", Duration::from_secs(30), || async {
        rsyslog
            .messages()
            .iter()
            .filter(|m| m.contains(" airlock - access_grant.expiring "))
            .count()
            == 1
    })
    .await;
    // Delivery shows in the metrics, by webhook and kind.
    let (_, metrics) = get(&format!("{}/metrics", r.base)).await.expect("metrics");
    assert!(
        metrics.contains(
            r#"airlock_notifications_total{kind="grant.expiring",webhook="approvers"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"airlock_notification_backlog_events{webhook="approvers"}"#));
    assert!(
        metrics.contains(r#"airlock_sink_events_total{sink="siem"}"#),
        "{metrics}"
    );

    // An API token issued on the command line works at once and stops when revoked.
    let secret = airlock_cli(
        dir.path(),
        &[
            "api",
            "token",
            "create",
            "report",
            "--scope",
            "requests:read,audit:read",
        ],
    );
    let secret = secret.trim();
    let (status, me) = api_get(&format!("{}/api/v1/me", r.base), secret).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["token"], "report");
    let (status, trail) = api_get(&format!("{}/api/v1/audit?limit=1000", r.base), secret).await;
    assert_eq!(status, 200, "{trail}");
    let ops: Vec<&str> = trail["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["operation"].as_str())
        .filter(|o| o.starts_with("access_"))
        .collect();
    assert_eq!(
        ops,
        [
            "access_request.create",
            "access_request.approve",
            "access_grant.revoke",
            "access_request.create",
            "access_request.approve",
            "access_grant.expiring",
            "access_grant.revoke",
        ]
    );
    airlock_cli(dir.path(), &["api", "token", "revoke", "report"]);
    let (status, _) = api_get(&format!("{}/api/v1/me", r.base), secret).await;
    assert_eq!(status, 401);
    // Neither token is in the service's log.
    let log: String = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("serve-"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    for t in [&ann_token, &sid_token] {
        let signature = t.rsplit('.').next().expect("signature");
        assert!(!log.contains(signature), "a token in the log");
    }
    assert!(!log.contains(&secret[12..]), "the API token in the log");
    airlock_cli(dir.path(), &["audit", "verify"]);

    // The collector goes away while events keep coming: /healthz raises the sink's alarm
    // beyond its max_backlog, and lowers it once the collector is back and has everything.
    let mut rsyslog = rsyslog;
    rsyslog.stop();
    for k in 0..5 {
        airlock_cli(
            dir.path(),
            &[
                "api",
                "token",
                "create",
                &format!("t{k}"),
                "--scope",
                "audit:read",
            ],
        );
    }
    let sink_alarm = || async {
        let (_, body) = get(&format!("{}/healthz", r.base)).await.expect("healthz");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        (
            v["status"].as_str() == Some("degraded"),
            v["sinks"][0]["alarm"] == true,
        )
    };
    wait_for("the backlog alarm", Duration::from_secs(30), || async {
        sink_alarm().await == (true, true)
    })
    .await;
    rsyslog.restart().expect("rsyslog back");
    wait_for("the alarm lowered", Duration::from_secs(60), || async {
        sink_alarm().await == (false, false)
    })
    .await;
    assert!(
        rsyslog
            .messages()
            .iter()
            .any(|m| m.contains(" airlock - api_token.create ") && m.contains("t4")),
        "the events made while it was away arrived"
    );

    // Failed authentication on the API counts against the per-address throttle (default 10
    // a minute), answered as a problem. Last: this address stays blocked for the window.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            api_get(&format!("{}/api/v1/me", r.base), "airlock_api_guess")
                .await
                .0,
        );
    }
    // One 401 came earlier (the revoked token): the tenth failure is the last one answered.
    let refused = statuses.iter().take_while(|s| **s == 401).count();
    assert_eq!(refused, 9, "{statuses:?}");
    assert!(
        statuses[refused..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/me", r.base))
        .bearer_auth(&ann_token)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        resp.status().as_u16(),
        429,
        "blocked, even with a good token"
    );
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
}

/// Whether every reachable instance's proxy saw a full read of the users (a full sync) since
/// its counters were reset.
fn every_instance_synced(fleet: &Fleet) -> bool {
    fleet.af_proxies.iter().all(|p| {
        p.requests_log()
            .iter()
            .any(|(m, path)| m == "GET" && path.starts_with("/auth/fab/v1/users?"))
    })
}

/// Just-in-time access across a fleet: three replicas, twelve instances (one of them an
/// Airflow that is down). A grant asked on the command line reaches every reachable instance
/// whichever replica holds it; the replica holding most of them is killed while the grant
/// runs; the grant still ends by itself on every reachable instance, its expiry is recorded
/// once (three replicas settle it), and the unreachable instance delays nothing.
#[tokio::test]
async fn a_grant_reaches_and_leaves_every_instance_of_a_fleet_through_a_replica_kill() {
    const INSTANCES: usize = 12;
    let mut fleet = Fleet::start_with_policy(
        3,
        INSTANCES,
        1,
        "[[access.rules]]\nroles = [\"Op\"]\napprovals = 0\nreason_required = false\n",
    )
    .await;
    for r in 0..3 {
        wait_ready(fleet.replica(r), "replica ready").await;
    }
    let id = fleet.create_user(0, 0).await;
    fleet.create_group(1, &[id]).await;
    let admin = airflow_admin().await;
    let user = fleet.user(0);
    wait_for(
        "the person provisioned",
        Duration::from_secs(120),
        || async {
            roles_of(&admin, &user).await == ["Viewer"]
                && fleet.managed_everywhere(&user, INSTANCES - 1).await
        },
    )
    .await;

    let url = fleet.pg.url(&fleet.db);
    let cli = |args: &[&str]| {
        let out = Command::new(assert_cmd::cargo::cargo_bin("airlock"))
            .current_dir(fleet.dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env("AF3_PW", &v3().admin_password)
            .env("AIRLOCK_STORE__URL", &url)
            .env("AIRLOCK_ACTOR", "operator:test")
            .args(["--config", "airlock.toml"])
            .args(args)
            .output()
            .expect("airlock");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let names: Vec<String> = (0..INSTANCES).map(|i| format!("af{i:02}")).collect();
    let mut args = vec![
        "request",
        "--as",
        user.as_str(),
        "--role",
        "Op",
        "--for",
        "45s",
        "-o",
        "json",
    ];
    for n in &names {
        args.extend(["--instance", n.as_str()]);
    }
    for p in &fleet.af_proxies {
        p.reset_counters();
    }
    let granted: serde_json::Value = serde_json::from_str(&cli(&args)).expect("json");
    assert_eq!(granted["state"]["state"], "approved", "{granted}");
    let grant_id = granted["id"].as_str().expect("id").to_owned();
    let took = wait_for(
        "every reachable instance to apply the grant",
        Duration::from_secs(90),
        || async {
            roles_of(&admin, &user).await == ["Op", "Viewer"] && every_instance_synced(&fleet)
        },
    )
    .await;
    eprintln!(
        "grant -> a full sync on all 11 reachable instances: {:.1} s",
        took.as_secs_f64()
    );

    // Kill the replica holding the most instances while the grant runs.
    let held = held_counts(&fleet).await;
    let victim = (0..3).max_by_key(|r| held[*r]).expect("a replica");
    {
        let r = fleet.replicas[victim].as_mut().expect("running");
        r.child.kill().expect("kill");
        r.child.wait().expect("reap");
    }
    fleet.replicas[victim] = None;
    let end =
        chrono::DateTime::parse_from_rfc3339(granted["state"]["expires_at"].as_str().expect("end"))
            .expect("time");
    while chrono::Utc::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in &fleet.af_proxies {
        p.reset_counters();
    }
    let took = wait_for(
        "every reachable instance to remove it",
        Duration::from_secs(90),
        || async { roles_of(&admin, &user).await == ["Viewer"] && every_instance_synced(&fleet) },
    )
    .await;
    eprintln!(
        "grant end -> Op gone and a full sync on all 11 reachable instances, one replica killed: {:.1} s",
        took.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pool = fleet.pool().await;
    let expired: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE event_json LIKE '%\"access_grant.expire\"%'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    pool.close().await;
    assert_eq!(
        expired, 1,
        "the expiry is recorded once, however many replicas settle"
    );
    assert!(cli(&["requests", "list", "--state", "expired"]).contains(&grant_id));
}

/// The login snapshots of `airlock serve` see a break-glass account's login (Airflow records
/// none), record it as `account.login` and `break_glass.use`, announce it to the webhooks and
/// ship it to the syslog collector as a critical message.
#[tokio::test]
async fn a_break_glass_login_is_seen_by_the_login_snapshots_announced_and_shipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hook, notices) = webhook_receiver().await;
    let rsyslog = airlock_testkit::Rsyslog::start().expect("rsyslog");
    let breakglass = format!("bg{}", unique());
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nscim_poll_ms = 200\nlogin_snapshot_secs = 10\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n\
             [[notifications.webhooks]]\nname = \"security\"\nurl = \"{hook}\"\nevents = [\"break_glass.used\"]\n\
             [[audit.sinks]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"{}\"\n",
            v3().base_url,
            rsyslog.address()
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("[protected]\nusernames = [\"{breakglass}\"]\n"),
    )
    .expect("policy");
    std::fs::write(dir.path().join("people.yaml"), "people: []\n").expect("people");
    // The break-glass admin exists in Airflow, outside airlock (protected: never touched).
    let admin = airflow_admin().await;
    let created = reqwest::Client::new()
        .post(format!("{}/auth/fab/v1/users", v3().base_url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "username": breakglass, "email": format!("{breakglass}@example.com"),
            "first_name": "Break", "last_name": "Glass", "roles": [{"name": "Admin"}],
            "password": "Break-glass-pw-1",
        }))
        .send()
        .await
        .expect("create");
    assert!(created.status().is_success(), "{}", created.status());

    let r = start(dir.path());
    wait_for(
        "the first login snapshot",
        Duration::from_secs(60),
        || async {
            get(&format!("{}/metrics", r.base))
                .await
                .is_some_and(|(_, m)| {
                    m.contains(
                        r#"airlock_login_snapshots_total{instance="af3",result="succeeded"}"#,
                    )
                })
        },
    )
    .await;
    let login = reqwest::Client::new()
        .post(format!("{}/auth/token", v3().base_url))
        .json(&serde_json::json!({"username": breakglass, "password": "Break-glass-pw-1"}))
        .send()
        .await
        .expect("login");
    assert!(login.status().is_success());

    wait_for(
        "the break-glass notice",
        Duration::from_secs(60),
        || async { !notices.lock().expect("lock").is_empty() },
    )
    .await;
    assert_eq!(*notices.lock().expect("lock"), ["break_glass.used"]);
    // authpriv (10) * 8 + critical (2) = 82.
    wait_for(
        "the critical message in rsyslog",
        Duration::from_secs(30),
        || async {
            rsyslog
                .messages()
                .iter()
                .any(|m| m.contains(" airlock - break_glass.use ") && m.contains(&breakglass))
        },
    )
    .await;
    let messages = rsyslog.messages();
    let critical = messages
        .iter()
        .find(|m| m.contains(" airlock - break_glass.use "))
        .expect("shipped");
    assert!(critical.starts_with("<82>1 "), "{critical}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains(" airlock - account.login ") && m.contains(&breakglass)),
        "the login itself"
    );
    assert!(
        !messages
            .iter()
            .any(|m| m.contains(" airlock - account.login ") && m.contains(r#"\"admin\""#)),
        "airlock's own sign-ins are not logins"
    );
    let (_, metrics) = get(&format!("{}/metrics", r.base)).await.expect("metrics");
    assert!(
        metrics.contains(r#"airlock_break_glass_uses_total{instance="af3"} 1"#),
        "{metrics}"
    );
    // The protected account was never touched.
    let roles = roles_of(&admin, &breakglass).await;
    assert_eq!(roles, ["Admin"]);
}

/// Audit events appended in bulk (what a busy service records), with hostile text.
async fn append_events(store: &airlock_store::Store, n: usize, tag: &str) {
    let events = (0..n)
        .map(|i| {
            let mut e = airlock_audit::NewEvent::new(
                chrono::Utc::now(),
                "airlock",
                airlock_audit::operation::ACCOUNT_SET_ROLES,
                airlock_audit::Outcome::Succeeded,
            );
            e.target = Some(airlock_audit::Target::Account {
                username: format!("{tag}-{i}\n\"]|="),
            });
            e.instance = Some("af3".into());
            e.before = Some(serde_json::json!({"roles": ["Viewer"]}));
            e.after = Some(serde_json::json!({"roles": ["Op"]}));
            e
        })
        .collect();
    store.append_audit(events).await.expect("append");
}

/// The seqs in a jsonl sink file (in the order written).
fn seqs_in(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect()
}

/// A sink's delivery survives a kill -9 of `airlock serve`: every event reaches the file, in
/// order, the ones recorded while the service was dead included; at most some are repeated
/// (with the same seq and id), none is missing.
#[tokio::test]
async fn a_file_sink_loses_nothing_across_a_kill_of_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("audit.jsonl");
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\nscim_poll_ms = 50\nlogin_snapshot_secs = 0\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n\
             [[audit.sinks]]\nname = \"archive\"\nkind = \"file\"\npath = \"audit.jsonl\"\nrotate_bytes = 1048576\nkeep_files = 100\n",
            v3().base_url,
        ),
    )
    .expect("config");
    std::fs::write(dir.path().join("policy.toml"), "").expect("policy");
    std::fs::write(dir.path().join("people.yaml"), "people: []\n").expect("people");
    let mut first = start(dir.path());
    wait_first_sync(&first, "the first sync").await;
    let store = airlock_store::Store::open(
        &format!("sqlite://{}", dir.path().join("airlock.db").display()),
        airlock_store::OpenOptions::existing(),
    )
    .await
    .expect("store");
    wait_for("the sink's cursor", Duration::from_secs(30), || async {
        store
            .delivery_cursor("sink:archive")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    let start_seq = store
        .delivery_cursor("sink:archive")
        .await
        .expect("cursor")
        .expect("set");
    // Events arrive while it ships; it is killed as soon as some reached the file.
    for round in 0..5 {
        append_events(&store, 1_000, &format!("a{round}")).await;
    }
    wait_for(
        "some events in the file",
        Duration::from_secs(30),
        || async { !seqs_in(&out).is_empty() },
    )
    .await;
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reap");
    // More happen while it is dead.
    append_events(&store, 2_000, "dead").await;
    let head = store.audit_head().await.expect("head").seq;

    let _second = start(dir.path());
    wait_for(
        "every event in the files",
        Duration::from_secs(120),
        || async { store.delivery_cursor("sink:archive").await.ok().flatten() >= Some(head) },
    )
    .await;
    // Rotated files, oldest first, then the current one.
    let mut files: Vec<std::path::PathBuf> = (1..=100)
        .map(|n| dir.path().join(format!("audit.jsonl.{n}")))
        .filter(|p| p.exists())
        .collect();
    files.reverse();
    files.push(out.clone());
    let seen: Vec<u64> = files.iter().flat_map(|p| seqs_in(p)).collect();
    // A repeat can only replay what was written before (the page in flight at the kill):
    // keeping each seq's first appearance must give exactly the trail, in order.
    let mut first_seen = Vec::new();
    for s in seen.iter().copied().filter(|s| *s > start_seq) {
        if first_seen.last().is_none_or(|last| s > *last) {
            first_seen.push(s);
        } else {
            assert!(
                first_seen.contains(&s),
                "{s} out of order and never seen before"
            );
        }
    }
    let want: Vec<u64> = (start_seq + 1..=head).collect();
    assert_eq!(first_seen, want, "every event, in order, none missing");
    assert!(files.len() > 1, "the file was rotated: {files:?}");
}

/// A JumpCloud user as the v1 API returns it.
fn jumpcloud_user(n: usize, email: &str) -> serde_json::Value {
    serde_json::json!({
        "_id": jumpcloud::user_id(n), "username": email.split('@').next().unwrap_or(email),
        "email": email, "firstname": "F", "lastname": "L", "state": "ACTIVATED",
        "activated": true, "suspended": false, "account_locked": false,
    })
}

/// A leaver suspended in JumpCloud loses access through the service's syncs, and the service's
/// leaver watch reads the suspension from Directory Insights and measures how long that took:
/// the metric, and `airlock audit leavers`.
#[tokio::test]
async fn a_leaver_suspended_in_jumpcloud_is_deprovisioned_and_timed() {
    use airlock_testkit::insights::{event, user, InsightsFixture};
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    let ann = format!("ann-{id}@example.com");
    let bob = format!("bob-{id}@example.com");
    let directory = jumpcloud::Fixture::start(jumpcloud::Data {
        users: vec![jumpcloud_user(1, &ann), jumpcloud_user(2, &bob)],
        groups: vec![jumpcloud::Group {
            id: jumpcloud::group_id(1),
            name: format!("eng-{id}"),
            members: vec![
                (jumpcloud::user_id(1), "user".into()),
                (jumpcloud::user_id(2), "user".into()),
            ],
        }],
    })
    .await;
    // JumpCloud takes the same key for Directory Insights as for the directory API.
    let insights = InsightsFixture::start_with_key(Vec::new(), jumpcloud::API_KEY).await;
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n\
             [directory]\nkind = \"jumpcloud\"\napi_key = \"{}\"\nbase_url = \"{}\"\n\
             insights = true\ninsights_url = \"{}\"\ninsights_poll_secs = 10\n\
             [serve]\nsync_interval_secs = 3\nsync_jitter_secs = 0\nlogin_snapshot_secs = 0\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n",
            jumpcloud::API_KEY,
            directory.base_url(),
            insights.base_url(),
            v3().base_url,
        ),
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("[[grants]]\ngroup = \"eng-{id}\"\nroles = [\"Viewer\"]\n"),
    )
    .expect("policy");
    let r = start(dir.path());
    let airflow = airflow_admin().await;
    wait_for("both accounts", Duration::from_secs(60), || async {
        roles_of(&airflow, &bob).await == ["Viewer"] && roles_of(&airflow, &ann).await == ["Viewer"]
    })
    .await;

    // Bob is suspended in JumpCloud; its event log records it.
    directory.mutate(|d| {
        if let Some(u) = d.users.iter_mut().find(|u| u["email"] == bob.as_str()) {
            u["suspended"] = serde_json::json!(true);
            u["state"] = serde_json::json!("SUSPENDED");
        }
    });
    insights.push(event(
        &format!("di-{id}"),
        "user_suspended",
        chrono::Utc::now(),
        user(
            &jumpcloud::user_id(2),
            bob.split('@').next().unwrap_or_default(),
        ),
    ));
    wait_for("bob's access gone", Duration::from_secs(60), || async {
        roles_of(&airflow, &bob).await.is_empty()
    })
    .await;
    wait_for(
        "the time to deprovision",
        Duration::from_secs(60),
        || async {
            get(&format!("{}/metrics", r.base))
                .await
                .is_some_and(|(_, m)| {
                    m.contains(r#"airlock_time_to_deprovision_seconds_count{instance="af3"} 1"#)
                })
        },
    )
    .await;
    let (_, metrics) = get(&format!("{}/metrics", r.base)).await.expect("metrics");
    assert!(
        metrics.contains(r#"airlock_leavers_total{kind="suspended"} 1"#),
        "{metrics}"
    );
    assert!(
        insights.log().problems.is_empty(),
        "{:?}",
        insights.log().problems
    );
    assert_eq!(roles_of(&airflow, &ann).await, ["Viewer"], "ann stays");

    let out = airlock_cli(
        dir.path(),
        &["audit", "leavers", "--no-refresh", "-o", "json"],
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["username"], bob.as_str());
    assert!(lines[0]["removed"]["af3"].is_string(), "{out}");
    assert!(lines[0]["time_to_deprovision_secs"].is_number(), "{out}");
}
