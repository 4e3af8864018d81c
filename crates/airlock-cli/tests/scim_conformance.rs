//! An independent SCIM conformance checker, run against a real `airlock serve`: scim2-tester
//! (the python-scim project's RFC 7643/7644 checker, from PyPI, installed by
//! `scripts/install-scim-tester.sh`) drives the SCIM endpoint on 127.0.0.1 over HTTP, and every
//! one of its checks must pass. The instance points at a port nobody listens on: the checker
//! exercises only the SCIM endpoint, never Airflow.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The checker's virtualenv, as `scripts/install-scim-tester.sh` installs it.
fn checker_python() -> PathBuf {
    let cache = std::env::var_os("AIRLOCK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/airlock")))
        .expect("HOME or AIRLOCK_CACHE is set");
    let python = cache.join("venvs/scim2-tester-0.5.2/bin/python");
    assert!(
        python.exists(),
        "the SCIM conformance checker is missing at {}: run scripts/install-scim-tester.sh",
        python.display()
    );
    python
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

fn airlock(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("airlock"));
    cmd.current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("AIRLOCK_TEST_AF_PASSWORD", "unused")
        .args(["--config", "airlock.toml"]);
    cmd
}

#[test]
fn scim2_tester_reports_no_failure_against_airlock_serve() {
    let python = checker_python();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("airlock.toml"),
        "policy = \"policy.toml\"\n[store]\nurl = \"sqlite://airlock.db\"\n\
         [directory]\nkind = \"scim\"\n\
         [serve]\nsync_interval_secs = 3600\nsync_jitter_secs = 0\n\
         [instances.af]\nurl = \"http://127.0.0.1:9\"\nusername = \"admin\"\n\
         password = { env = \"AIRLOCK_TEST_AF_PASSWORD\" }\n",
    )
    .expect("config");
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\ngroup = \"ops\"\nroles = [\"Op\"]\n",
    )
    .expect("policy");
    let created = airlock(dir.path())
        .args(["scim", "token", "create", "--client", "scim2-tester"])
        .output()
        .expect("airlock scim token create");
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8(created.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let port = free_port();
    let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
    let _serve = Serve(
        airlock(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("airlock serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !reqwest::blocking::get(format!("{base}/readyz")).is_ok_and(|r| r.status() == 200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "airlock serve did not become ready: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let runner =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/scim-conformance.py");
    let run = Command::new(python)
        .arg(runner)
        .arg(format!("{base}/scim/v2"))
        .arg(&token)
        .output()
        .expect("the conformance checker runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let totals: Value = stdout
        .lines()
        .next()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no totals from the checker:\n{stdout}\n{stderr}"));
    eprintln!("scim2-tester totals: {totals}");
    assert_eq!(totals["failures"], 0, "checks failed:\n{stdout}\n{stderr}");
    assert!(run.status.success(), "{stdout}\n{stderr}");
    // 0.5.2 ran 135 checks against airlock when this test was written; far fewer means the
    // checker stopped early (discovery failed) rather than that airlock conforms.
    let passed = totals["SUCCESS"].as_u64().unwrap_or(0);
    assert!(
        passed >= 130,
        "only {passed} checks passed: {totals}\n{stdout}"
    );
}
