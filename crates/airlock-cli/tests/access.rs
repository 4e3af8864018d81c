//! `airlock request` and `airlock requests ...` as an operator runs them: the rules of the
//! policy decide, refusals are one clear line with a non-zero exit and change nothing, and
//! every step is in the audit trail. No Airflow is needed: the grants reach it with the next
//! sync (tested against a real Airflow in airlock-engine's tests).

use assert_cmd::Command;
use serde_json::Value;

struct Setup {
    dir: tempfile::TempDir,
}

const PEOPLE: &str = "people:\n  - username: ada\n    email: ada@example.com\n    groups: [eng]\n  - username: cy\n    email: cy@example.com\n    groups: [sre]\n  - username: dee\n    email: dee@example.com\n    groups: [sre]\n  - username: out\n    email: out@example.com\n    groups: [sales]\n";

const POLICY: &str = "[[grants]]\ngroup = \"eng\"\nroles = [\"Viewer\"]\n\n[access]\nauditors = [\"audit\"]\n\n[[access.rules]]\nroles = [\"Op\", \"Admin\"]\ninstances = { labels = { env = \"prod\" } }\nrequesters = [\"eng\"]\napprovers = { groups = [\"sre\"] }\napprovals = 2\nmax_duration = \"4h\"\n";

impl Setup {
    fn new(policy: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance = |name: &str, env: &str| {
            format!("[instances.{name}]\nurl = \"http://127.0.0.1:9\"\nlabels = {{ env = \"{env}\" }}\nusername = \"airlock\"\npassword = \"unused\"\n")
        };
        let config = format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n{}{}{}",
            instance("prod-eu", "prod"),
            instance("prod-us", "prod"),
            instance("staging", "staging")
        );
        std::fs::write(dir.path().join("airlock.toml"), config).expect("config");
        std::fs::write(dir.path().join("policy.toml"), policy).expect("policy");
        std::fs::write(dir.path().join("people.yaml"), PEOPLE).expect("people");
        Self { dir }
    }

    fn airlock(&self) -> Command {
        let mut cmd = Command::cargo_bin("airlock").expect("binary");
        cmd.current_dir(self.dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env("AIRLOCK_ACTOR", "operator:test")
            .arg("--config")
            .arg(self.dir.path().join("airlock.toml"));
        cmd
    }

    /// Runs `args`, which must fail with `needle` in its one line on stderr.
    fn refused(&self, args: &[&str], needle: &str) {
        let out = self.airlock().args(args).assert().failure();
        let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self
            .airlock()
            .args(args)
            .args(["-o", "json"])
            .assert()
            .success();
        serde_json::from_slice(&out.get_output().stdout).expect("json")
    }
}

#[test]
fn a_request_needs_two_distinct_approvers_and_every_step_is_audited() {
    let s = Setup::new(POLICY);
    let r = s.json(&[
        "request",
        "--as",
        "ada@example.com",
        "--role",
        "Op",
        "--label",
        "env=prod",
        "--for",
        "2h",
        "--reason",
        "backfill INC-7",
        "--idempotency-key",
        "k1",
    ]);
    assert_eq!(r["state"]["state"], "pending");
    assert_eq!(r["instances"], serde_json::json!(["prod-eu", "prod-us"]));
    assert_eq!(r["duration_secs"], 7200);
    let id = r["id"].as_str().expect("id").to_owned();

    // A retry with the same key is the same request; the same key for another is refused.
    let again = s.json(&[
        "request",
        "--as",
        "ada",
        "--role",
        "Op",
        "--label",
        "env=prod",
        "--for",
        "2h",
        "--reason",
        "backfill INC-7",
        "--idempotency-key",
        "k1",
    ]);
    assert_eq!(again["id"], id.as_str());
    s.refused(
        &[
            "request",
            "--as",
            "ada",
            "--role",
            "Admin",
            "--label",
            "env=prod",
            "--reason",
            "x",
            "--idempotency-key",
            "k1",
        ],
        "idempotency key \"k1\" was already used for a different request",
    );

    s.refused(
        &["requests", "approve", &id, "--as", "ada"],
        "nobody approves or denies their own request",
    );
    s.refused(
        &["requests", "approve", &id, "--as", "out@example.com"],
        "is not an approver of Op on prod-eu, prod-us",
    );
    let one = s.json(&["requests", "approve", &id, "--as", "cy", "--comment", "ok"]);
    assert_eq!(one["state"]["state"], "pending", "one of two");
    s.refused(
        &["requests", "approve", &id, "--as", "cy"],
        "cy has already approved",
    );
    let two = s.json(&["requests", "approve", &id, "--as", "dee"]);
    assert_eq!(two["state"]["state"], "approved");

    // The requester sees it; someone else does not.
    let listed = s.json(&["requests", "list", "--as", "ada"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let hidden = s.json(&["requests", "list", "--as", "out"]);
    assert_eq!(hidden.as_array().map(Vec::len), Some(0));
    let text = s
        .airlock()
        .args(["requests", "list", "--state", "approved"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).into_owned();
    assert!(
        text.contains(&id) && text.contains("approved") && text.contains("until "),
        "{text}"
    );

    let revoked = s.json(&[
        "requests",
        "revoke",
        &id,
        "--as",
        "ada",
        "--comment",
        "done early",
    ]);
    assert_eq!(revoked["state"]["state"], "revoked");

    let audit = s.airlock().args(["audit", "export"]).assert().success();
    let lines: Vec<Value> = String::from_utf8_lossy(&audit.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    let ops: Vec<(&str, &str)> = lines
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("access_request.create", "person:ada"),
            ("access_request.approve", "person:cy"),
            ("access_request.approve", "person:dee"),
            ("access_grant.revoke", "person:ada"),
        ]
    );
    assert_eq!(
        lines[0]["reason"],
        "named with --as by operator:test on the command line"
    );
    s.airlock().args(["audit", "verify"]).assert().success();
}

#[test]
fn requests_beyond_the_rules_are_refused_with_one_line_and_nothing_stored() {
    let s = Setup::new(POLICY);
    for (args, needle) in [
        (
            vec![
                "--as", "ada", "--role", "Op", "--label", "env=prod", "--for", "5h", "--reason",
                "x",
            ],
            "18000 s is longer than the 14400 s the rule allows",
        ),
        (
            vec![
                "--as",
                "ada",
                "--role",
                "Op",
                "--instance",
                "staging",
                "--reason",
                "x",
            ],
            "no access rule lets ada request Op on staging",
        ),
        (
            vec![
                "--as",
                "out",
                "--role",
                "Op",
                "--instance",
                "prod-eu",
                "--reason",
                "x",
            ],
            "no access rule lets out request Op on prod-eu",
        ),
        (
            vec!["--as", "ada", "--role", "Op", "--instance", "prod-eu"],
            "a reason is required",
        ),
        (
            vec![
                "--as",
                "ada",
                "--role",
                "Op",
                "--instance",
                "nowhere",
                "--reason",
                "x",
            ],
            "--instance: no instance named `nowhere` is configured",
        ),
        (
            vec![
                "--as",
                "ada",
                "--role",
                "Op",
                "--instance",
                "prod-eu",
                "--for",
                "soon",
                "--reason",
                "x",
            ],
            "--for: `soon` is not a duration",
        ),
        (
            vec![
                "--as",
                "nobody",
                "--role",
                "Op",
                "--instance",
                "prod-eu",
                "--reason",
                "x",
            ],
            "--as \"nobody\": nobody in the directory",
        ),
    ] {
        let args: Vec<&str> = ["request"].into_iter().chain(args).collect();
        s.refused(&args, needle);
    }
    let listed = s.json(&["requests", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0));
}

#[test]
fn without_access_rules_the_commands_say_how_to_configure_them() {
    let s = Setup::new("[[grants]]\ngroup = \"eng\"\nroles = [\"Viewer\"]\n");
    s.refused(
        &["requests", "list"],
        "add [[access.rules]] to the policy file",
    );
}

#[test]
fn the_trail_exports_as_ocsf_cef_and_syslog_and_since_filters_by_time() {
    let s = Setup::new(POLICY);
    let r = s.json(&[
        "request",
        "--as",
        "ada",
        "--role",
        "Op",
        "--label",
        "env=prod",
        "--reason",
        "x|y=z\nforged",
    ]);
    let id = r["id"].as_str().expect("id").to_owned();
    s.json(&["requests", "approve", &id, "--as", "cy"]);
    let out = |args: &[&str]| {
        let o = s.airlock().args(args).assert().success();
        String::from_utf8_lossy(&o.get_output().stdout).into_owned()
    };
    let ocsf = out(&["audit", "export", "--format", "ocsf"]);
    let events: Vec<Value> = ocsf
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(events.len(), 2, "{ocsf}");
    for e in &events {
        assert_eq!(e["class_uid"], 3005, "{e}");
        assert_eq!(e["metadata"]["version"], "1.8.0");
        assert_eq!(e["user"]["name"], "ada");
    }
    // Two approvals are needed: the first is not yet a grant (Other).
    assert_eq!(events[1]["activity_id"], 99);
    assert_eq!(
        events[0]["privileges"],
        serde_json::json!(["Op on prod-eu", "Op on prod-us"])
    );
    let cef = out(&["audit", "export", "--format", "cef"]);
    assert_eq!(cef.lines().count(), 2, "{cef}");
    assert!(
        cef.lines().all(|l| l.starts_with("CEF:0|airlock|airlock|")),
        "{cef}"
    );
    let syslog = out(&[
        "audit",
        "export",
        "--format",
        "syslog",
        "--hostname",
        "gov1",
    ]);
    assert_eq!(syslog.lines().count(), 2, "one message a line: {syslog}");
    assert!(
        syslog
            .lines()
            .all(|l| l.starts_with("<85>1 ") && l.contains(" gov1 airlock - access_request.")),
        "{syslog}"
    );
    let later = out(&["audit", "export", "--since", "2999-01-01T00:00:00Z"]);
    assert!(later.is_empty(), "{later}");
    let bad = s
        .airlock()
        .args(["audit", "export", "--since", "yesterday"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&bad.get_output().stderr).into_owned();
    assert!(err.contains("'yesterday' is not an RFC 3339 time"), "{err}");
}
