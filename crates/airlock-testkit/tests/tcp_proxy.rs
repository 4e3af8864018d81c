//! The TCP fault proxy in front of a real PostgreSQL cluster, observed by plain sqlx clients.

use std::time::{Duration, Instant};

use airlock_testkit::{PgCluster, ProxyMode, TcpProxy};
use sqlx::{Connection as _, PgConnection};

/// How long a blackholed request is given to (wrongly) answer.
const SILENCE: Duration = Duration::from_secs(2);

/// Upper bound for anything that should finish (not a timing assertion: only against hangs).
const PATIENCE: Duration = Duration::from_secs(30);

fn cluster_and_proxy() -> (PgCluster, TcpProxy, String) {
    let cluster = PgCluster::start().expect("cluster starts");
    let proxy = TcpProxy::start(cluster.addr()).expect("proxy starts");
    let url = cluster.url_via(proxy.port(), "postgres");
    (cluster, proxy, url)
}

async fn connect(url: &str) -> PgConnection {
    tokio::time::timeout(PATIENCE, PgConnection::connect(url))
        .await
        .expect("connecting ends")
        .expect("connects through the proxy")
}

async fn select_one(conn: &mut PgConnection) -> sqlx::Result<i32> {
    sqlx::query_scalar("SELECT 1").fetch_one(conn).await
}

/// Polls `condition` until it holds, failing after [`PATIENCE`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn queries_pass_through_and_the_counters_follow_the_connections() {
    let (_cluster, proxy, url) = cluster_and_proxy();
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    let mut first = connect(&url).await;
    let mut second = connect(&url).await;
    assert_eq!(select_one(&mut first).await.expect("query"), 1);
    assert_eq!(select_one(&mut second).await.expect("query"), 1);
    assert_eq!(proxy.accepted_connections(), 2);
    assert_eq!(proxy.open_connections(), 2);

    first.close().await.expect("close");
    eventually("one connection is open", || proxy.open_connections() == 1).await;
    assert_eq!(proxy.accepted_connections(), 2);
}

#[tokio::test]
async fn a_blackhole_silences_open_and_new_connections_and_restore_lets_new_ones_work() {
    let (_cluster, proxy, url) = cluster_and_proxy();
    let mut open = connect(&url).await;
    assert_eq!(select_one(&mut open).await.expect("query"), 1);

    proxy.blackhole();
    let silent = tokio::time::timeout(SILENCE, select_one(&mut open)).await;
    assert!(silent.is_err(), "answered through a blackhole: {silent:?}");
    let new = tokio::time::timeout(SILENCE, PgConnection::connect(&url)).await;
    assert!(new.is_err(), "connected through a blackhole");
    // The new connection was accepted and held, not refused.
    assert_eq!(proxy.accepted_connections(), 2);

    proxy.restore();
    let mut fresh = connect(&url).await;
    assert_eq!(
        select_one(&mut fresh).await.expect("query after restore"),
        1
    );
}

#[tokio::test]
async fn a_connection_held_by_a_blackhole_resumes_after_restore() {
    let (_cluster, proxy, url) = cluster_and_proxy();
    proxy.blackhole();
    let held = tokio::spawn(async move {
        let mut conn = PgConnection::connect(&url).await?;
        select_one(&mut conn).await
    });
    eventually("the proxy holds the connection", || {
        proxy.open_connections() == 1
    })
    .await;
    assert!(!held.is_finished(), "the handshake got through a blackhole");

    proxy.restore();
    let answer = tokio::time::timeout(PATIENCE, held)
        .await
        .expect("the held connection finishes after restore")
        .expect("task");
    assert_eq!(answer.expect("query on the resumed connection"), 1);
}

#[tokio::test]
async fn reset_fails_open_connections_promptly_and_new_ones_until_restore() {
    let (_cluster, proxy, url) = cluster_and_proxy();
    let mut open = connect(&url).await;
    assert_eq!(select_one(&mut open).await.expect("query"), 1);

    proxy.reset();
    let failed = tokio::time::timeout(PATIENCE, select_one(&mut open))
        .await
        .expect("a reset connection fails instead of hanging");
    assert!(failed.is_err(), "answered after a reset: {failed:?}");
    let refused = tokio::time::timeout(PATIENCE, PgConnection::connect(&url))
        .await
        .expect("a new connection fails instead of hanging");
    assert!(refused.is_err(), "connected through a reset proxy");
    eventually("no connection is open", || proxy.open_connections() == 0).await;

    proxy.restore();
    let mut fresh = connect(&url).await;
    assert_eq!(
        select_one(&mut fresh).await.expect("query after restore"),
        1
    );
}

#[tokio::test]
async fn reset_connections_drops_the_open_ones_and_keeps_passing_new_ones() {
    let (_cluster, proxy, url) = cluster_and_proxy();
    let mut open = connect(&url).await;
    assert_eq!(select_one(&mut open).await.expect("query"), 1);

    proxy.reset_connections();
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    let failed = tokio::time::timeout(PATIENCE, select_one(&mut open))
        .await
        .expect("a reset connection fails instead of hanging");
    assert!(failed.is_err(), "answered after a reset: {failed:?}");
    let mut fresh = connect(&url).await;
    assert_eq!(select_one(&mut fresh).await.expect("query"), 1);
}

#[tokio::test]
async fn the_proxy_follows_its_upstream_through_a_restart() {
    let (cluster, proxy, url) = cluster_and_proxy();
    let mut before = connect(&url).await;
    assert_eq!(select_one(&mut before).await.expect("query"), 1);
    cluster.restart().expect("restart");
    // The old session ended with the server; a new one through the same proxy works.
    assert!(select_one(&mut before).await.is_err());
    let mut after = connect(&url).await;
    assert_eq!(
        select_one(&mut after).await.expect("query after restart"),
        1
    );
    assert_eq!(proxy.accepted_connections(), 2);
}
