//! The `airlock` binary as a user runs it, against real Airflow 3.3.2 and 2.11.2 servers.

use airlock_testkit::{AirflowServer, AirflowVersion};
use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};

fn v3() -> &'static AirflowServer {
    airlock_testkit::airflow::shared(AirflowVersion::V3)
}

fn v2() -> &'static AirflowServer {
    airlock_testkit::airflow::shared(AirflowVersion::V2)
}

/// A config directory with the admin passwords in env vars, as an operator would set it up.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("airlock.toml"), config).expect("write config");
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("airlock.toml")
    }

    fn airlock(&self) -> Command {
        let mut cmd = Command::cargo_bin("airlock").expect("binary");
        cmd.current_dir(self.dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env("AIRLOCK_V3_PASSWORD", &v3().admin_password)
            .env("AIRLOCK_V2_PASSWORD", &v2().admin_password)
            .arg("--config")
            .arg(self.path());
        cmd
    }
}

fn instance(name: &str, url: &str, password_env: &str) -> String {
    format!(
        "[instances.{name}]\nurl = \"{url}\"\nlabels = {{ env = \"test\" }}\nusername = \"admin\"\npassword = {{ env = \"{password_env}\" }}\nmax_retries = 1\n"
    )
}

fn both() -> String {
    instance("af3", &v3().base_url, "AIRLOCK_V3_PASSWORD")
        + &instance("af2", &v2().base_url, "AIRLOCK_V2_PASSWORD")
}

fn assert_no_secret(output: &[u8], secret: &str) {
    let text = String::from_utf8_lossy(output);
    assert!(!text.contains(secret), "secret leaked into output:\n{text}");
}

#[test]
fn help_teaches_the_commands() {
    Command::cargo_bin("airlock")
        .expect("binary")
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("inventory").and(predicate::str::contains("instances")))
        .stdout(predicate::str::contains("config"));
    Command::cargo_bin("airlock")
        .expect("binary")
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("airlock "));
}

#[test]
fn config_check_accepts_a_valid_file_without_touching_the_network() {
    let s = Setup::new(&instance(
        "nowhere",
        "http://127.0.0.1:9",
        "AIRLOCK_V3_PASSWORD",
    ));
    s.airlock()
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok (1 instance: nowhere)"));
}

#[test]
fn config_check_lists_every_error_with_its_key_and_hides_secrets() {
    let s = Setup::new(
        "[instances.prod]\nurl = \"ftp://x\"\nusername = \"admin\"\npassword = \"Literal-Secret-9\"\nmax_concurrency = 0\n\
         [instances.dev]\nurl = \"http://127.0.0.1:8080\"\nusername = \"a\"\npassword = { env = \"AIRLOCK_UNSET_VAR\" }\n",
    );
    let out = s
        .airlock()
        .args(["config", "check"])
        .env_remove("AIRLOCK_UNSET_VAR")
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for needle in [
        "instances.prod.url",
        "instances.prod.max_concurrency",
        "instances.dev.password: environment variable AIRLOCK_UNSET_VAR is not set",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(
        stderr.lines().all(|l| l.starts_with("error: ")),
        "one line per error:\n{stderr}"
    );
    assert_no_secret(&out.get_output().stderr, "Literal-Secret-9");
}

/// A secret "file" that is a device or a directory is refused at once, naming the field,
/// instead of being read forever (`/dev/zero`) or failing obscurely.
#[test]
fn config_check_refuses_a_secret_file_that_is_not_a_regular_file() {
    let s = Setup::new(
        "[instances.prod]\nurl = \"http://127.0.0.1:9\"\nusername = \"admin\"\npassword = { file = \"/dev/zero\" }\n\
         [instances.dev]\nurl = \"http://127.0.0.1:9\"\nusername = \"admin\"\npassword = { file = \"/\" }\n",
    );
    s.airlock()
        .args(["config", "check"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(
                "instances.prod.password: cannot read secret file /dev/zero: not a regular file",
            )
            .and(predicate::str::contains(
                "instances.dev.password: cannot read secret file /: not a regular file",
            )),
        );
}

#[test]
fn config_check_names_an_unknown_key() {
    let s = Setup::new(&format!(
        "{}timeout = 5\n",
        instance("a", "http://127.0.0.1:9", "X")
    ));
    s.airlock()
        .args(["config", "check"])
        .env("X", "x")
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("instances.a")
                .and(predicate::str::contains("unknown field `timeout`")),
        );
}

#[test]
fn a_missing_config_file_says_how_to_give_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    Command::cargo_bin("airlock")
        .expect("binary")
        .current_dir(dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .arg("inventory")
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("airlock.toml does not exist")
                .and(predicate::str::contains("--config")),
        );
}

#[test]
fn instances_checks_both_airflow_generations_and_flags_an_unreachable_one() {
    let s = Setup::new(&(both() + &instance("down", "http://127.0.0.1:9", "AIRLOCK_V3_PASSWORD")));
    let out = s
        .airlock()
        .args(["instances", "-o", "json"])
        .assert()
        .code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    let by_name = |n: &str| {
        v.as_array()
            .expect("array")
            .iter()
            .find(|h| h["instance"] == n)
            .expect("row")
            .clone()
    };
    assert_eq!(by_name("af3")["version"], "3.3.2");
    assert_eq!(by_name("af3")["credentials_ok"], true);
    assert_eq!(by_name("af3")["missing_permissions"], serde_json::json!([]));
    assert_eq!(by_name("af2")["version"], "2.11.2");
    assert_eq!(by_name("af2")["api"], "v2");
    assert_eq!(by_name("down")["reachable"], false);
    assert!(by_name("down")["error"]
        .as_str()
        .expect("error")
        .contains("airflow `down`"));
}

#[test]
fn inventory_prints_json_and_csv_and_diff_shows_what_changed() {
    let s = Setup::new(&both());
    let out = s
        .airlock()
        .args(["inventory", "-o", "json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    let reports = v.as_array().expect("array");
    assert_eq!(reports.len(), 2);
    for r in reports {
        let admin = r["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .find(|a| a["username"] == "admin")
            .expect("admin");
        let flags: Vec<&str> = admin["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(|f| f["flag"].as_str())
            .collect();
        assert!(
            flags.contains(&"admin") && flags.contains(&"created_outside_airlock"),
            "{flags:?}"
        );
    }
    assert!(
        s.dir.path().join("airlock.db").exists(),
        "snapshot stored beside the config"
    );

    s.airlock()
        .args(["inventory", "-o", "csv", "-i", "af2"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("instance,username,email,"))
        .stdout(predicate::str::contains("af2,admin,"));

    let diff = s
        .airlock()
        .args(["inventory", "diff", "-i", "af2"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&diff.get_output().stdout).to_string();
    assert!(text.starts_with("== af2:"), "{text}");
    assert!(
        text.contains("no changes") || text.contains("* login admin"),
        "{text}"
    );
}

#[test]
fn inventory_diff_without_a_store_says_so() {
    let s = Setup::new(&both());
    s.airlock()
        .args(["inventory", "diff"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("state store not found"));
}

#[test]
fn a_wrong_password_fails_with_one_line_naming_the_instance_and_no_secret() {
    let s = Setup::new(
        &(instance("af3", &v3().base_url, "BAD_PW")
            + &instance("af2", &v2().base_url, "AIRLOCK_V2_PASSWORD")),
    );
    let out = s
        .airlock()
        .args(["--log", "debug", "inventory", "-o", "json"])
        .env("BAD_PW", "Bad-Secret-Password-7")
        .assert()
        .code(1);
    let o = out.get_output();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        stderr.contains("error: airflow `af3`: get token: credentials rejected"),
        "{stderr}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("the healthy instance is still reported");
    assert_eq!(v.as_array().expect("array").len(), 1);
    assert_no_secret(&o.stderr, "Bad-Secret-Password-7");
    assert_no_secret(&o.stdout, "Bad-Secret-Password-7");
    assert_no_secret(&o.stderr, &v2().admin_password);
}

#[test]
fn an_unknown_instance_name_lists_the_configured_ones() {
    let s = Setup::new(&both());
    s.airlock()
        .args(["inventory", "-i", "nope"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "unknown instance `nope` (configured: af2, af3)",
        ));
}

#[test]
fn a_store_in_a_missing_directory_is_a_clear_error() {
    let s = Setup::new(&format!(
        "[store]\nurl = \"sqlite://no/such/dir/airlock.db\"\n{}",
        both()
    ));
    s.airlock()
        .args(["inventory"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no/such/dir"));
    assert!(!Path::new(&s.dir.path().join("no")).exists());
}

#[test]
fn env_overrides_reach_the_config() {
    let s = Setup::new(&instance(
        "af3",
        "http://127.0.0.1:9",
        "AIRLOCK_V3_PASSWORD",
    ));
    s.airlock()
        .args(["instances"])
        .env("AIRLOCK_INSTANCES__AF3__URL", &v3().base_url)
        .assert()
        .success()
        .stdout(predicate::str::contains("3.3.2 (v3)"));
}
