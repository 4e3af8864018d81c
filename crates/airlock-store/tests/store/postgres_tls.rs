//! TLS to PostgreSQL (docs/adr/0007) against a real cluster of the test's own that serves TLS
//! only: `ssl = on` with a certificate from a throw-away CA naming `localhost` alone, and a
//! `pg_hba.conf` with `hostssl` lines only, so the server itself turns plaintext away.
//!
//! Each test checks what the server saw (`pg_stat_ssl`) or the error the store gives, and that
//! the password in the URL appears in no rendering of that error.

use std::sync::OnceLock;

use airlock_store::{OpenOptions, Store, StoreError};
use airlock_testkit::{PgCluster, TestCa};
use anyhow::{ensure, Context as _};
use sqlx::{Connection as _, PgConnection};

const PASSWORD: &str = "s3cr3t-tls";

/// One TLS-only cluster per test binary, with the CA that signed its certificate and another.
struct Fixture {
    ca: TestCa,
    other_ca: TestCa,
    cluster: PgCluster,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = TestCa::new("airlock test CA").expect("openssl makes a CA");
        let other_ca = TestCa::new("some other CA").expect("openssl makes a CA");
        // Only `localhost`: connecting by 127.0.0.1 is then a host name mismatch.
        let cert = ca
            .issue_server(&["localhost"])
            .expect("the CA issues a certificate");
        let cluster = PgCluster::builder()
            .tls(&cert)
            .start()
            .expect("PostgreSQL binaries are required (apt-get install -y postgresql)");
        Fixture {
            ca,
            other_ca,
            cluster,
        }
    })
}

/// A fresh database; returns its name.
fn fresh_database(fx: &Fixture) -> String {
    let url = fx.cluster.fresh_database().expect("create a database");
    url.rsplit('/').next().expect("a database name").to_owned()
}

/// The store URL of database `db` on `host`, with a password and `query`.
fn store_url(fx: &Fixture, host: &str, db: &str, query: &str) -> String {
    format!(
        "postgres://postgres:{PASSWORD}@{host}:{}/{db}?{query}",
        fx.cluster.port()
    )
}

/// The error as every surface could print it: message, chain and debug form.
fn every_rendering(err: &StoreError) -> String {
    let mut text = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!("\n{cause}\n{cause:?}"));
        source = cause.source();
    }
    text
}

/// (sessions, sessions with TLS) the server has open on database `db`, as `pg_stat_ssl` says.
async fn sessions_on(fx: &Fixture, db: &str) -> anyhow::Result<(i64, i64)> {
    let admin = format!("{}?sslmode=require", fx.cluster.admin_url());
    let mut conn = PgConnection::connect(&admin)
        .await
        .context("admin connection")?;
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = $1",
    )
    .bind(db)
    .fetch_one(&mut conn)
    .await?;
    conn.close().await.ok();
    Ok(counts)
}

/// Opens the store at `url`, uses both of its pools (a query, a lease) and checks that every
/// session the server has on `db` is encrypted.
async fn assert_every_session_is_tls(fx: &Fixture, url: &str, db: &str) -> anyhow::Result<()> {
    let store = Store::open(url, OpenOptions::create())
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    store.schema_version().await?;
    store
        .acquire_lease("instance:tls", "holder", 1_000, 15_000)
        .await?;
    let (open, idle) = store.pool_connections();
    ensure!(
        open >= 2,
        "both pools hold a connection: {open} open, {idle} idle"
    );
    let (sessions, encrypted) = sessions_on(fx, db).await?;
    ensure!(
        sessions >= 2 && encrypted == sessions,
        "{encrypted} of {sessions} sessions on {db} use TLS"
    );
    store.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_every_store_session() -> anyhow::Result<()> {
    let fx = fixture();
    let db = fresh_database(fx);
    let url = store_url(fx, "127.0.0.1", &db, "sslmode=require");
    assert_every_session_is_tls(fx, &url, &db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_and_host_name_connects_over_tls() -> anyhow::Result<()> {
    let fx = fixture();
    let db = fresh_database(fx);
    let query = format!(
        "sslmode=verify-full&sslrootcert={}",
        fx.ca.cert_path().display()
    );
    let url = store_url(fx, "localhost", &db, &query);
    assert_every_session_is_tls(fx, &url, &db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sslmode_on_loopback_still_uses_tls_when_the_server_offers_it() -> anyhow::Result<()> {
    let fx = fixture();
    let db = fresh_database(fx);
    let url = format!("postgres://postgres@127.0.0.1:{}/{db}", fx.cluster.port());
    assert_every_session_is_tls(fx, &url, &db).await
}

/// Opens `url`, expecting a connect failure whose message contains `needle`.
async fn assert_refused(url: &str, needle: &str) -> anyhow::Result<()> {
    let err = Store::open(url, OpenOptions::create())
        .await
        .err()
        .context("the store opened although it must not")?;
    let message = err.to_string();
    ensure!(
        matches!(err, StoreError::ConnectFailed { .. }),
        "{message} / {err:?}"
    );
    ensure!(
        message.starts_with("could not open state store at postgres://postgres:***@"),
        "{message}"
    );
    ensure!(message.contains(needle), "{needle:?} not in {message}");
    ensure!(!message.contains('\n'), "one line: {message}");
    ensure!(
        !every_rendering(&err).contains(PASSWORD),
        "the password leaked: {err:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_another_ca_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let fx = fixture();
    let db = fresh_database(fx);
    let query = format!(
        "sslmode=verify-full&sslrootcert={}",
        fx.other_ca.cert_path().display()
    );
    assert_refused(
        &store_url(fx, "localhost", &db, &query),
        "tls: the server's certificate is not signed by a CA that sslrootcert names",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_only_the_public_cas_refuses_a_private_certificate() -> anyhow::Result<()>
{
    let fx = fixture();
    let db = fresh_database(fx);
    assert_refused(
        &store_url(
            fx,
            "localhost",
            &db,
            "sslmode=verify-full&sslrootcert=system",
        ),
        "not signed by a CA",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_to_a_host_name_the_certificate_does_not_list_is_refused() -> anyhow::Result<()>
{
    let fx = fixture();
    let db = fresh_database(fx);
    let query = format!(
        "sslmode=verify-full&sslrootcert={}",
        fx.ca.cert_path().display()
    );
    // The certificate names localhost only; 127.0.0.1 is the same server under another name.
    assert_refused(
        &store_url(fx, "127.0.0.1", &db, &query),
        "tls: the server's certificate is not valid for the host in the url (host name mismatch",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_tls_only_server_is_refused_by_the_server() -> anyhow::Result<()> {
    let fx = fixture();
    let db = fresh_database(fx);
    assert_refused(
        &store_url(fx, "127.0.0.1", &db, "sslmode=disable"),
        "no encryption",
    )
    .await
}

#[tokio::test]
async fn a_remote_host_without_tls_is_refused_before_any_connection() {
    for url in [
        format!("postgres://postgres:{PASSWORD}@db.example.invalid/airlock"),
        format!("postgres://postgres:{PASSWORD}@db.example.invalid/airlock?sslmode=prefer"),
        format!("postgres://postgres:{PASSWORD}@192.0.2.1/airlock?sslmode=disable"),
    ] {
        let err = Store::open(&url, OpenOptions::existing())
            .await
            .expect_err("plaintext to a remote host");
        assert!(
            matches!(err, StoreError::RefusedPostgresUrl { .. }),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("plaintext"), "{message}");
        assert!(message.contains("postgres:***@"), "{message}");
        assert!(!every_rendering(&err).contains(PASSWORD), "{err:?}");
    }
}

#[tokio::test]
async fn a_missing_ca_file_is_reported_before_any_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("ca.pem");
    let url = format!(
        "postgres://postgres:{PASSWORD}@db.example.invalid/airlock?sslmode=verify-full&sslrootcert={}",
        missing.display()
    );
    let err = Store::open(&url, OpenOptions::existing())
        .await
        .expect_err("the CA file does not exist");
    assert!(
        matches!(
            err,
            StoreError::TlsFileUnreadable {
                param: "sslrootcert",
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("sslrootcert {} cannot be read", missing.display())),
        "{message}"
    );
    assert!(!every_rendering(&err).contains(PASSWORD), "{err:?}");
}
