//! The `airlock` binary with a PostgreSQL store over TLS (docs/adr/0007), against a real
//! cluster of the test's own that serves TLS only (`hostssl`), with a certificate from a
//! throw-away CA that names `localhost`.

use std::sync::OnceLock;

use airlock_testkit::{PgCluster, TestCa};
use assert_cmd::Command;

const PASSWORD: &str = "Url-Password-7";

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

/// A config whose store URL comes from `AIRLOCK_TEST_STORE_URL`, with one instance that is
/// never contacted.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("airlock.toml"),
        "[store]\nurl = { env = \"AIRLOCK_TEST_STORE_URL\" }\n\
         [instances.nowhere]\nurl = \"http://127.0.0.1:9\"\nusername = \"admin\"\npassword = \"x\"\n",
    )
    .expect("write config");
    dir
}

fn airlock(dir: &tempfile::TempDir, store_url: &str, args: &[&str]) -> std::process::Output {
    airlock_with(dir, store_url, args, None)
}

fn airlock_with(
    dir: &tempfile::TempDir,
    store_url: &str,
    args: &[&str],
    pgsslmode: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::cargo_bin("airlock").expect("binary");
    match pgsslmode {
        Some(mode) => cmd.env("PGSSLMODE", mode),
        None => cmd.env_remove("PGSSLMODE"),
    };
    cmd.current_dir(dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .env("AIRLOCK_TEST_STORE_URL", store_url)
        .arg("--config")
        .arg(dir.path().join("airlock.toml"))
        .args(args)
        .output()
        .expect("run airlock")
}

fn verify_full_url(fx: &Fixture, db_url: &str, ca: &TestCa) -> String {
    let db = db_url.rsplit('/').next().expect("a database name");
    format!(
        "postgres://postgres:{PASSWORD}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
        fx.cluster.port(),
        ca.cert_path().display()
    )
}

#[test]
fn audit_verify_reads_a_postgres_store_over_verified_tls() {
    let fx = fixture();
    let db = fx.cluster.fresh_database().expect("create a database");
    let dir = setup();
    let out = airlock(
        &dir,
        &verify_full_url(fx, &db, &fx.ca),
        &["audit", "verify"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("audit trail intact: 0 events"),
        "{stdout}"
    );
}

#[test]
fn a_store_server_signed_by_another_ca_is_refused_in_one_line_without_the_password() {
    let fx = fixture();
    let db = fx.cluster.fresh_database().expect("create a database");
    let dir = setup();
    let out = airlock(
        &dir,
        &verify_full_url(fx, &db, &fx.other_ca),
        &["audit", "verify"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr
            .starts_with("error: could not open state store at postgres://postgres:***@localhost:"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("tls: the server's certificate is not signed by a CA that sslrootcert names"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
}

#[test]
fn config_check_refuses_plaintext_to_a_remote_store_and_a_missing_ca_file() {
    let dir = setup();
    for (url, needle) in [
        (
            format!("postgres://postgres:{PASSWORD}@db.example.invalid/airlock"),
            "store.url: no sslmode (the default, prefer, falls back to plaintext) may send the password",
        ),
        (
            format!(
                "postgres://postgres:{PASSWORD}@db.example.invalid/airlock?sslmode=verify-full&sslrootcert={}",
                dir.path().join("missing-ca.pem").display()
            ),
            "store.url: sslrootcert ",
        ),
        (
            format!("postgres://postgres:{PASSWORD}@db.example.invalid/airlock?sslmode=verify_full"),
            "store.url: sslmode verify_full is not one of",
        ),
    ] {
        let out = airlock(&dir, &url, &["config", "check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
}

#[test]
fn pgsslmode_in_the_environment_does_not_turn_tls_off() {
    let fx = fixture();
    let db = fx.cluster.fresh_database().expect("create a database");
    let dir = setup();
    // No sslmode in the URL: airlock writes out prefer, so the driver's PGSSLMODE=disable
    // never applies; had it applied, the hostssl-only server would refuse the connection.
    let out = airlock_with(&dir, &db, &["audit", "verify"], Some("disable"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The same server, told plainly to use no TLS, does refuse: the check above can fail.
    let out = airlock(&dir, &format!("{db}?sslmode=disable"), &["audit", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "plaintext was accepted");
    assert!(stderr.contains("no encryption"), "{stderr}");
}
