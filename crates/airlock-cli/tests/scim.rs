//! `airlock scim token ...` as an operator types it: a secret is printed once, on create and
//! rotate, and never by `list`; a revoked token is marked as such.

use assert_cmd::Command;
use predicates::prelude::*;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("airlock.toml"),
            "[store]\nurl = \"sqlite://airlock.db\"\n\n[directory]\nkind = \"scim\"\n\n\
             [instances.af]\nurl = \"http://127.0.0.1:9\"\nusername = \"admin\"\n\
             password = { env = \"AIRLOCK_TEST_AF_PASSWORD\" }\n",
        )
        .expect("write config");
        Setup { dir }
    }

    fn airlock(&self) -> Command {
        let mut cmd = Command::cargo_bin("airlock").expect("binary");
        cmd.current_dir(self.dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env("AIRLOCK_TEST_AF_PASSWORD", "unused")
            .arg("--config")
            .arg(self.dir.path().join("airlock.toml"));
        cmd
    }
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn scim_tokens_are_shown_once_and_list_never_prints_them() {
    let setup = Setup::new();
    let created = setup
        .airlock()
        .args(["scim", "token", "create", "--client", "okta"])
        .assert()
        .success()
        .stderr(predicate::str::contains("store it now"));
    let secret = String::from_utf8(created.get_output().stdout.clone())
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(secret.starts_with("airlock_scim_"), "{secret}");

    setup
        .airlock()
        .args(["scim", "token", "create", "--client", "okta"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already has an active token"));

    let list = stdout(setup.airlock().args(["scim", "token", "list"]));
    assert!(list.contains("okta") && list.contains("active"), "{list}");
    assert!(!list.contains(&secret), "list printed the secret:\n{list}");

    let rotated = stdout(
        setup
            .airlock()
            .args(["scim", "token", "rotate", "--client", "okta"]),
    );
    let rotated = rotated.trim();
    assert!(rotated.starts_with("airlock_scim_") && rotated != secret);

    let revoked = stdout(
        setup
            .airlock()
            .args(["scim", "token", "revoke", "--client", "okta"]),
    );
    assert!(!revoked.contains(rotated), "{revoked}");
    let list = stdout(setup.airlock().args(["scim", "token", "list"]));
    assert!(list.contains("revoked"), "{list}");
    assert!(!list.contains(&secret) && !list.contains(rotated), "{list}");

    setup
        .airlock()
        .args(["scim", "token", "revoke", "--client", "okta"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no active token"));
}

#[test]
fn scim_token_help_explains_that_a_token_is_shown_once() {
    Command::cargo_bin("airlock")
        .expect("binary")
        .args(["scim", "token", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("shown exactly once"))
        .stdout(predicate::str::contains("create"))
        .stdout(predicate::str::contains("revoke"));
}

#[test]
fn tokens_expire_rotate_with_a_grace_carry_a_group_allowance_and_are_audited() {
    let setup = Setup::new();
    // A bad allowance or span changes nothing.
    setup
        .airlock()
        .args([
            "scim", "token", "create", "--client", "hr", "--groups", "eng-*,,x",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--groups"))
        .stderr(predicate::str::contains("group pattern 2 is empty"));
    setup
        .airlock()
        .args([
            "scim",
            "token",
            "create",
            "--client",
            "hr",
            "--expires-in",
            "90",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("has no unit"));
    let list = stdout(setup.airlock().args(["scim", "token", "list"]));
    assert!(list.contains("No SCIM tokens"), "{list}");

    let today = chrono::Utc::now();
    let created = setup
        .airlock()
        .args(["--actor", "operator:tester"])
        .args(["scim", "token", "create", "--client", "hr"])
        .args(["--expires-in", "90d", "--groups", "eng-*, Data-*"])
        .assert()
        .success()
        .stderr(predicate::str::contains("expires at"))
        .stderr(predicate::str::contains("eng-*, data-*"));
    let secret = String::from_utf8(created.get_output().stdout.clone()).expect("utf-8");
    let list = stdout(setup.airlock().args(["scim", "token", "list"]));
    let expiry_days: Vec<String> = [90, 91]
        .iter()
        .map(|d| {
            (today + chrono::Duration::days(*d))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    assert!(
        expiry_days.iter().any(|day| list.contains(day.as_str())),
        "no expiry 90 days out in:\n{list}"
    );
    assert!(
        list.contains("eng-*,data-*") && list.contains("active"),
        "{list}"
    );

    let rotated = setup
        .airlock()
        .args(["--actor", "operator:tester"])
        .args([
            "scim", "token", "rotate", "--client", "hr", "--grace", "24h",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("keeps working until"))
        .stderr(predicate::str::contains("The new token expires at"));
    let rotated = String::from_utf8(rotated.get_output().stdout.clone()).expect("utf-8");
    assert_ne!(rotated.trim(), secret.trim());
    let list = stdout(setup.airlock().args(["scim", "token", "list"]));
    let grace_days: Vec<String> = [1, 2]
        .iter()
        .map(|d| {
            (today + chrono::Duration::days(*d))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    assert!(
        grace_days.iter().any(|day| list.contains(day.as_str())),
        "no old-token grace a day out in:\n{list}"
    );
    assert!(!list.contains(secret.trim()) && !list.contains(rotated.trim()));
    setup
        .airlock()
        .args(["--actor", "operator:tester"])
        .args(["scim", "token", "revoke", "--client", "hr"])
        .assert()
        .success();

    setup.airlock().args(["audit", "verify"]).assert().success();
    let export = stdout(setup.airlock().args(["audit", "export"]));
    let events: Vec<serde_json::Value> = export
        .lines()
        .map(|line| serde_json::from_str(line).expect("jsonl"))
        .collect();
    let ops: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap_or_default(),
                e["actor"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("scim_token.create", "operator:tester"),
            ("scim_token.rotate", "operator:tester"),
            ("scim_token.revoke", "operator:tester"),
        ],
        "{export}"
    );
    assert!(events[0]["target"] == serde_json::json!({"type": "scim_client", "client": "hr"}));
    assert!(!export.contains(secret.trim()) && !export.contains(rotated.trim()));
}
