//! `airlock access at` against a real Airflow 3.3.2: inventories observe an account's roles,
//! the store keeps one interval per change, and a moment is answered with how sure it is.

use airlock_testkit::{AirflowServer, AirflowVersion};
use assert_cmd::Command;
use predicates::prelude::*;
use std::time::Duration;

fn v3() -> &'static AirflowServer {
    airlock_testkit::airflow::shared(AirflowVersion::V3)
}

fn token() -> String {
    let srv = v3();
    let v: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/auth/token", srv.base_url))
        .json(&serde_json::json!({ "username": srv.admin_user, "password": srv.admin_password }))
        .send()
        .expect("token")
        .json()
        .expect("token json");
    v["access_token"].as_str().expect("token").to_owned()
}

fn airlock(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("airlock").expect("binary");
    cmd.current_dir(dir)
        .env_remove("AIRLOCK_CONFIG")
        .env("AF3_PW", &v3().admin_password)
        .arg("--config")
        .arg(dir.join("airlock.toml"));
    cmd
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn answer(dir: &std::path::Path, at: &str, person: &str) -> serde_json::Value {
    let out = airlock(dir)
        .args(["access", "at", at, "--person", person, "-o", "json"])
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).expect("json")
}

#[test]
fn access_at_answers_from_observed_roles_and_says_how_sure_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
             [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n",
            v3().base_url
        ),
    )
    .expect("config");
    // A directory whose one person no grant covers: a sync here changes nothing in Airflow
    // (no account is airlock's), it only reads every account.
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[grants]]\ngroup = \"nobody-here\"\nroles = [\"Viewer\"]\n",
    )
    .expect("policy");
    std::fs::write(
        dir.path().join("people.yaml"),
        "people:\n  - username: zed\n    email: zed@example.com\n    groups: [elsewhere]\n",
    )
    .expect("people");
    let name = format!("hist{}", std::process::id());
    let http = reqwest::blocking::Client::new();
    let admin = token();
    let created = http
        .post(format!("{}/auth/fab/v1/users", v3().base_url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "username": name, "email": format!("{name}@example.com"),
            "first_name": "His", "last_name": "Tory", "roles": [{"name": "Viewer"}],
            "password": "History-pw-1",
        }))
        .send()
        .expect("create");
    assert!(created.status().is_success(), "{}", created.status());

    // Before anything was recorded: one line saying how to start.
    airlock(dir.path())
        .args(["access", "at", "now"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("airlock inventory"));

    let inventory = || {
        airlock(dir.path())
            .args(["inventory", "-o", "json"])
            .assert()
            .success();
    };
    inventory();
    std::thread::sleep(Duration::from_millis(1100));
    let between_unchanged = now();
    std::thread::sleep(Duration::from_millis(1100));
    inventory();

    let v = answer(dir.path(), &between_unchanged, &name);
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["roles"], serde_json::json!(["Viewer"]));
    assert_eq!(rows[0]["certainty"], "observed", "{v}");
    assert!(v["evidence"][0]["before"]["first_source"]
        .as_str()
        .is_some_and(|s| s.starts_with("snapshot:")));

    // Viewer -> Op in Airflow, then observed.
    let changed = http
        .patch(format!("{}/auth/fab/v1/users/{name}", v3().base_url))
        .query(&[("update_mask", "roles")])
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "roles": [{"name": "Op"}] }))
        .send()
        .expect("change roles");
    assert!(changed.status().is_success(), "{}", changed.status());
    std::thread::sleep(Duration::from_millis(1100));
    let in_gap = now();
    std::thread::sleep(Duration::from_millis(1100));
    inventory();

    let v = answer(dir.path(), &in_gap, &name);
    let row = &v["rows"][0];
    assert_eq!(row["certainty"], "changed_in_gap", "{v}");
    assert_eq!(row["roles"], serde_json::json!(["Viewer"]));
    assert_eq!(row["next_roles"], serde_json::json!(["Op"]));
    assert!(v["evidence"][0]["next"]["from"].is_string(), "{v}");

    let later = answer(dir.path(), "now", &name);
    assert_eq!(later["rows"][0]["roles"], serde_json::json!(["Op"]));
    assert_eq!(later["rows"][0]["certainty"], "last_observed");

    // A full sync reads every account: it is an observation too (stretching the last interval,
    // or starting one if another test changed an account of the shared Airflow meanwhile).
    airlock(dir.path()).args(["sync"]).assert().success();
    let synced = answer(dir.path(), "now", &name);
    assert_eq!(synced["rows"][0]["roles"], serde_json::json!(["Op"]));
    let last = synced["evidence"][0]["before"]["last_source"]
        .as_str()
        .unwrap_or_default();
    assert!(last.starts_with("sync:"), "{synced}");

    // Filters, CSV and the table.
    airlock(dir.path())
        .args([
            "access", "at", "now", "--role", "Op", "--person", &name, "-o", "csv",
        ])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "instance,username,email,roles,active,certainty,next_roles,observed_from,observed_to",
        ))
        .stdout(predicate::str::contains(format!(
            "af3,{name},{name}@example.com,Op,true,last_observed"
        )));
    airlock(dir.path())
        .args(["access", "at", "now", "--role", "Viewer", "--person", &name])
        .assert()
        .success()
        .stdout(predicate::str::contains(&name).not())
        .stdout(predicate::str::contains("af3: "));

    // Before the first observation, and bad input.
    airlock(dir.path())
        .args(["access", "at", "2000-01-01T00:00:00Z"])
        .assert()
        .code(4);
    airlock(dir.path())
        .args(["access", "at", "yesterday"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("RFC 3339"));
    airlock(dir.path())
        .args(["access", "at", "now", "--role", ""])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--role"));
}
