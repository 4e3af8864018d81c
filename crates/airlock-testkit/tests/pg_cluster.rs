//! A PostgreSQL cluster of the test's own: stopped, killed and started again with its data.

use std::net::TcpStream;
use std::time::Duration;

use airlock_testkit::PgCluster;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// Upper bound for anything that should finish (not a timing assertion: only against hangs).
const PATIENCE: Duration = Duration::from_secs(30);

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .expect("pool connects")
}

async fn seed(pool: &PgPool, note: &str) {
    sqlx::query("CREATE TABLE IF NOT EXISTS kept (id serial PRIMARY KEY, note text NOT NULL)")
        .execute(pool)
        .await
        .expect("create table");
    sqlx::query("INSERT INTO kept (note) VALUES ($1)")
        .bind(note)
        .execute(pool)
        .await
        .expect("insert row");
}

async fn notes(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    let query = sqlx::query_scalar("SELECT note FROM kept ORDER BY id").fetch_all(pool);
    tokio::time::timeout(PATIENCE, query)
        .await
        .expect("the query ends one way or the other")
}

#[tokio::test]
async fn a_stopped_cluster_fails_queries_and_starts_again_on_the_same_port_with_its_data() {
    let cluster = PgCluster::start().expect("cluster starts");
    let url = cluster.fresh_database().expect("fresh database");
    let pool = pool(&url).await;
    seed(&pool, "survives a stop").await;
    let port = cluster.port();

    cluster.stop().expect("stop");
    assert!(!cluster.is_running());
    let failed = notes(&pool).await;
    assert!(failed.is_err(), "a stopped cluster answered: {failed:?}");
    // Stopping twice is harmless.
    cluster.stop().expect("second stop");

    cluster.start_again().expect("start again");
    assert!(cluster.is_running());
    assert_eq!(cluster.port(), port);
    assert_eq!(
        cluster.url("x"),
        format!("postgres://postgres@127.0.0.1:{port}/x")
    );
    // The same pool (same URL) reconnects and finds the row.
    assert_eq!(
        notes(&pool).await.expect("query after the start"),
        ["survives a stop"]
    );
}

#[tokio::test]
async fn a_killed_cluster_recovers_its_committed_rows_when_started_again() {
    let cluster = PgCluster::start().expect("cluster starts");
    let url = cluster.fresh_database().expect("fresh database");
    let pool = pool(&url).await;
    seed(&pool, "committed before the crash").await;

    cluster.kill().expect("kill");
    assert!(!cluster.is_running());
    assert!(notes(&pool).await.is_err(), "a killed cluster answered");

    cluster.start_again().expect("start again after the crash");
    assert_eq!(
        notes(&pool).await.expect("query after recovery"),
        ["committed before the crash"]
    );
    let log = cluster.log_tail(200);
    assert!(
        log.contains("not properly shut down"),
        "the start after a kill should run crash recovery; log:\n{log}"
    );
}

#[tokio::test]
async fn restart_keeps_the_data_and_a_running_cluster_cannot_be_started_twice() {
    let cluster = PgCluster::start().expect("cluster starts");
    let err = cluster.start_again().expect_err("already running");
    assert!(format!("{err:#}").contains("is running"), "{err:#}");

    let url = cluster
        .create_database("kept_across_restarts")
        .expect("create");
    assert!(url.ends_with("/kept_across_restarts"), "{url}");
    let pool = pool(&url).await;
    seed(&pool, "one").await;
    cluster.restart().expect("restart");
    seed(&pool, "two").await;
    assert_eq!(notes(&pool).await.expect("query"), ["one", "two"]);
}

#[tokio::test]
async fn builder_settings_files_and_hooks_reach_the_server() {
    let cluster = PgCluster::builder()
        .setting("max_connections", "37")
        .setting("application_name", "it's quoted")
        .file("airlock/note.txt", "from the builder")
        .before_start(|data| {
            std::fs::write(data.join("hook.txt"), "from the hook")?;
            Ok(())
        })
        .start()
        .expect("cluster starts");
    let pool = pool(&cluster.admin_url()).await;
    let show = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {name}"))
                .fetch_one(&pool)
                .await
                .expect("show")
        }
    };
    assert_eq!(show("max_connections").await, "37");
    assert_eq!(show("listen_addresses").await, "127.0.0.1");
    assert_eq!(show("port").await, cluster.port().to_string());
    // The server itself can read what the builder and the hook wrote (so a key would do too).
    for (file, expected) in [
        ("airlock/note.txt", "from the builder"),
        ("hook.txt", "from the hook"),
    ] {
        let text: String = sqlx::query_scalar("SELECT pg_read_file($1)")
            .bind(file)
            .fetch_one(&pool)
            .await
            .expect("pg_read_file");
        assert_eq!(text, expected);
    }
}

#[test]
fn bad_setting_names_and_escaping_file_paths_are_rejected_before_initdb() {
    let err = PgCluster::builder()
        .setting("ssl = on; x", "1")
        .start()
        .expect_err("bad name");
    assert!(format!("{err:#}").contains("not a PostgreSQL setting name"));
    let err = PgCluster::builder()
        .file("../outside", "x")
        .start()
        .expect_err("escaping path");
    assert!(format!("{err:#}").contains("inside the data directory"));
}

#[test]
fn dropping_a_cluster_stops_it_and_removes_its_directory() {
    let cluster = PgCluster::start().expect("cluster starts");
    let data = cluster.data_dir().to_owned();
    let addr = cluster.addr();
    assert!(data.join("PG_VERSION").is_file());
    assert!(TcpStream::connect(addr).is_ok());
    drop(cluster);
    assert!(!data.exists(), "{} is still there", data.display());
    assert!(TcpStream::connect(addr).is_err(), "{addr} still accepts");
}
