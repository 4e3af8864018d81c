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
