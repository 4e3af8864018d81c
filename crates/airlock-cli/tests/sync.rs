//! `airlock plan`, `apply`, `sync` and `audit` as an operator runs them, against a real
//! Airflow 3.3.2 and a file directory. Each test uses its own email domain and role names so it
//! can share the server with the others; accounts outside its scope are unmanaged to it.

use airlock_testkit::{AirflowServer, AirflowVersion};
use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

fn v3() -> &'static AirflowServer {
    airlock_testkit::airflow::shared(AirflowVersion::V3)
}

struct World {
    dir: tempfile::TempDir,
    domain: String,
    role: String,
    server: &'static AirflowServer,
}

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{}", N.fetch_add(1, Ordering::Relaxed))
}

impl World {
    fn new(safety: &str) -> Self {
        Self::on(v3(), "", safety)
    }

    /// A world on `server`, with `instance` added to `[instances.af3]`.
    fn on(server: &'static AirflowServer, instance: &str, safety: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = unique();
        let w = Self {
            dir,
            domain: format!("t{id}.example.com"),
            role: format!("analyst-{id}"),
            server,
        };
        w.instance(instance);
        std::fs::write(
            w.path("policy.toml"),
            format!(
                "[[grants]]\ngroup = \"eng\"\nroles = [\"Op\"]\n\n[[grants]]\ngroup = \"analytics\"\nroles = [\"{role}\"]\n\n\
                 [roles.{role}]\npermissions = [{{ action = \"can_read\", resource = \"DAGs\" }}]\n\n\
                 [leavers]\ndelete_after_days = 2\n\n{safety}",
                role = w.role
            ),
        )
        .expect("policy");
        w
    }

    /// Rewrites the config with `extra` keys for the instance.
    fn instance(&self, extra: &str) {
        std::fs::write(
            self.path("airlock.toml"),
            format!(
                "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n\
                 [instances.af3]\nurl = \"{}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n{extra}\n",
                self.server.base_url
            ),
        )
        .expect("config");
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn people(&self, people: &[(&str, &str)]) {
        let mut y = String::from("people:\n");
        for (name, group) in people {
            y.push_str(&format!(
                "  - username: {name}\n    email: {name}@{d}\n    first_name: {name}\n    last_name: Test\n    groups: [{group}]\n",
                d = self.domain
            ));
        }
        std::fs::write(self.path("people.yaml"), y).expect("people");
    }

    fn email(&self, name: &str) -> String {
        format!("{name}@{}", self.domain)
    }

    fn airlock(&self) -> Command {
        let mut cmd = Command::cargo_bin("airlock").expect("binary");
        cmd.current_dir(self.dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env("AF3_PW", &self.server.admin_password)
            .arg("--config")
            .arg(self.path("airlock.toml"));
        cmd
    }

    fn stdout(&self, args: &[&str]) -> String {
        let out = self.airlock().args(args).assert().success();
        String::from_utf8_lossy(&out.get_output().stdout).to_string()
    }
}

/// The roles Airflow itself reports for `username`.
fn roles_in_airflow(username: &str) -> Vec<String> {
    roles_in(v3(), username).unwrap_or_default()
}

/// The roles `srv` reports for `username`, `None` when it has no such user.
fn roles_in(srv: &AirflowServer, username: &str) -> Option<Vec<String>> {
    let http = reqwest::blocking::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/auth/token", srv.base_url))
        .json(&serde_json::json!({ "username": srv.admin_user, "password": srv.admin_password }))
        .send()
        .expect("token")
        .json()
        .expect("token json");
    let resp = http
        .get(format!("{}/auth/fab/v1/users/{username}", srv.base_url))
        .bearer_auth(token["access_token"].as_str().expect("token"))
        .send()
        .expect("get user");
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    let user: serde_json::Value = resp.json().expect("user json");
    let mut roles: Vec<String> = user["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    Some(roles)
}

#[test]
fn plan_then_sync_creates_roles_and_accounts_and_a_second_sync_changes_nothing() {
    let w = World::new("");
    w.people(&[("ada", "eng"), ("bob", "analytics")]);
    let plan = w.stdout(&["plan"]);
    assert!(
        plan.contains(&format!("+ role {} (1 permissions)", w.role)),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "+ account {} [Op]    # group eng grants Op",
            w.email("ada")
        )),
        "{plan}"
    );
    assert!(plan.contains("unmanaged account(s) left alone"), "{plan}");
    assert!(
        roles_in_airflow(&w.email("ada")).is_empty(),
        "plan changes nothing"
    );

    let out = w.stdout(&["sync"]);
    assert!(
        out.contains("applied: 2 create_account, 1 create_role"),
        "{out}"
    );
    assert_eq!(roles_in_airflow(&w.email("ada")), vec!["Op"]);
    assert_eq!(roles_in_airflow(&w.email("bob")), vec![w.role.clone()]);

    let again = w.stdout(&["sync", "--stats"]);
    assert!(again.starts_with("in sync: no changes"), "{again}");
}

#[test]
fn a_leaver_is_suspended_and_everything_is_in_a_verifiable_audit_trail() {
    let w = World::new("");
    w.people(&[("cy", "eng"), ("dee", "eng")]);
    w.stdout(&["sync"]);
    w.people(&[("cy", "eng")]);
    let plan = w.stdout(&["plan"]);
    assert!(
        plan.contains(&format!(
            "- account {} suspend (strip [Op], rotate password)",
            w.email("dee")
        )),
        "{plan}"
    );
    assert!(
        plan.contains("leaver: no longer in the directory"),
        "{plan}"
    );
    let out = w.stdout(&["sync"]);
    assert!(out.contains("applied: 1 suspend"), "{out}");
    assert!(roles_in_airflow(&w.email("dee")).is_empty());
    assert_eq!(
        roles_in_airflow(&w.email("cy")),
        vec!["Op"],
        "others untouched"
    );

    let verify = w.stdout(&["audit", "verify"]);
    assert!(verify.starts_with("audit trail intact"), "{verify}");
    let export = w.stdout(&["audit", "export"]);
    let ops: Vec<String> = export
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("jsonl")["operation"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        ops.contains(&"account.create".to_string()) && ops.contains(&"account.suspend".to_string()),
        "{ops:?}"
    );
}

#[test]
fn an_empty_directory_is_refused_as_an_outage_and_nothing_changes() {
    let w = World::new("");
    w.people(&[("eve", "eng")]);
    w.stdout(&["sync"]);
    std::fs::write(w.path("people.yaml"), "people: []\n").expect("empty");
    w.airlock()
        .arg("sync")
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "refused: directory returned no people",
        ));
    assert_eq!(roles_in_airflow(&w.email("eve")), vec!["Op"]);
    let export = w.stdout(&["audit", "export"]);
    assert!(
        export.contains("\"rail.refused\""),
        "the refusal is audited"
    );
}

#[test]
fn mass_deprovisioning_stops_before_any_write_unless_allowed() {
    let w = World::new("[safety]\nmax_deprovisions = 1\nmin_directory_ratio = 0.1\n");
    w.people(&[("f1", "eng"), ("f2", "eng"), ("f3", "eng")]);
    w.stdout(&["sync"]);
    w.people(&[("f1", "eng")]);
    w.airlock()
        .arg("sync")
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "more than safety.max_deprovisions = 1",
        ));
    assert_eq!(roles_in_airflow(&w.email("f2")), vec!["Op"]);
    let out = w.stdout(&["sync", "--allow-mass-deprovision"]);
    assert!(out.contains("applied: 2 suspend"), "{out}");
}

/// A cap holds back only the deprovisions it refuses: a joiner in the same run is created.
/// The held ones wait in `airlock rails list` until an operator releases them; the release
/// is audited under the operator's name and the next run applies them. A username with a
/// non-ASCII capital (`Éh2`, kept as spelled: FAB folds only ASCII letters) is held and
/// released like any other.
#[test]
fn held_deprovisions_wait_for_an_operators_release_while_joiners_go_on() {
    let w = World::new(
        "[safety]\nmax_deprovisions = 1\nmin_directory_ratio = 0.1\n\n\
         [usernames]\nlowercase = false\n",
    );
    w.people(&[("h1", "eng"), ("Éh2", "eng"), ("h3", "eng")]);
    w.stdout(&["sync"]);
    w.people(&[("h1", "eng"), ("h4", "eng")]);
    w.airlock()
        .arg("sync")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("held: suspend account"))
        .stderr(predicate::str::contains("airlock rails list"));
    assert_eq!(
        roles_in_airflow(&w.email("h4")),
        vec!["Op"],
        "the joiner went on"
    );
    assert_eq!(
        roles_in_airflow(&w.email("Éh2")),
        vec!["Op"],
        "the leavers are held"
    );
    let list: serde_json::Value =
        serde_json::from_str(&w.stdout(&["rails", "list", "-o", "json"])).expect("json");
    let held = list.as_array().expect("array");
    assert_eq!(held.len(), 2, "{list}");
    assert!(held
        .iter()
        .all(|h| h["status"] == "held" && h["rail"] == "max_deprovisions"));
    // Held again by the next run: still two holds, not four.
    w.airlock().arg("sync").assert().code(3);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&w.stdout(&["rails", "list", "-o", "json"]))
            .expect("json")
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    w.airlock()
        .args(["rails", "release"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nothing to release"));
    let out = w.stdout(&["--actor", "operator:alice", "rails", "release", "--all"]);
    assert_eq!(out.matches("released suspend").count(), 2, "{out}");
    let out = w.stdout(&["sync"]);
    assert!(out.contains("applied: 2 suspend"), "{out}");
    assert!(roles_in_airflow(&w.email("Éh2")).is_empty());
    assert_eq!(w.stdout(&["rails", "list"]).trim(), "no held deprovisions");
    let export = w.stdout(&["audit", "export"]);
    let releases: Vec<serde_json::Value> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["operation"] == "rail.release")
        .collect();
    assert_eq!(releases.len(), 2);
    assert!(releases.iter().all(|e| e["actor"] == "operator:alice"));
    // Each hold was audited once, as a refused suspension.
    let refused = export
        .lines()
        .filter(|l| l.contains("\"account.suspend\"") && l.contains("\"refused\""))
        .count();
    assert_eq!(refused, 2);
}

/// While one process holds an instance's lease, `sync` stops before any write and names it;
/// `plan` (read-only) still works.
#[test]
fn sync_refuses_to_run_while_another_process_holds_the_instance() {
    let w = World::new("");
    w.people(&[("l1", "eng")]);
    w.stdout(&["sync"]);
    // Someone else's lease, alive and unexpired.
    let db = w.path("airlock.db");
    let url = format!("sqlite://{}", db.display());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = airlock_store::Store::open(&url, airlock_store::OpenOptions::existing())
            .await
            .expect("store");
        let far = 4_102_444_800_000; // 2100
        store
            .acquire_lease(
                "instance:af3",
                "airlock serve on elsewhere (pid 1, 0000)",
                far - 1,
                1,
            )
            .await
            .expect("lease");
        store.close().await;
    });
    w.people(&[("l1", "eng"), ("l2", "eng")]);
    w.airlock()
        .arg("sync")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "instance `af3` is being written by airlock serve on elsewhere (pid 1, 0000)",
        ));
    assert!(
        roles_in_airflow(&w.email("l2")).is_empty(),
        "nothing written"
    );
    let out = w.stdout(&["plan"]);
    assert!(out.contains("create_account"), "{out}");
}

#[test]
fn a_saved_plan_is_refused_once_the_state_it_came_from_changed() {
    let w = World::new("");
    w.people(&[("gil", "eng")]);
    let plan_file = w.path("plan.json");
    w.stdout(&["plan", "--out", plan_file.to_str().expect("utf8")]);
    w.people(&[("gil", "eng"), ("hal", "eng")]);
    w.airlock()
        .args([
            "apply",
            "--yes",
            "--plan",
            plan_file.to_str().expect("utf8"),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "the state changed since this plan was made",
        ));
    assert!(
        roles_in_airflow(&w.email("gil")).is_empty(),
        "nothing applied"
    );

    w.stdout(&["plan", "--out", plan_file.to_str().expect("utf8")]);
    let out = w.stdout(&[
        "apply",
        "--yes",
        "--plan",
        plan_file.to_str().expect("utf8"),
    ]);
    assert!(out.contains("applied: 2 create_account"), "{out}");
}

#[test]
fn apply_without_a_terminal_needs_yes() {
    let w = World::new("");
    w.people(&[("ivy", "eng")]);
    w.airlock()
        .arg("apply")
        .write_stdin("")
        .assert()
        .failure()
        .stderr(predicate::str::contains("pass --yes"));
}

#[test]
fn a_tampered_audit_trail_is_detected_with_its_location() {
    let w = World::new("");
    w.people(&[("jo", "eng"), ("kim", "eng")]);
    w.stdout(&["sync"]);
    let db = w.path("airlock.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .expect("open db");
        let json: String = sqlx::query_scalar("SELECT event_json FROM audit_events WHERE seq = 2")
            .fetch_one(&mut conn)
            .await
            .expect("event 2");
        let forged = json.replace("\"Op\"", "\"Admin\"");
        assert_ne!(json, forged, "event 2 mentions the Op role");
        sqlx::query("UPDATE audit_events SET event_json = $1 WHERE seq = 2")
            .bind(forged)
            .execute(&mut conn)
            .await
            .expect("tamper");
    });
    w.airlock()
        .args(["audit", "verify"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("event 2"));
}

#[test]
fn an_ldap_directory_with_nested_groups_drives_the_sync() {
    let ldap = airlock_testkit::slapd::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique();
    std::fs::write(
        dir.path().join("airlock.toml"),
        format!(
            "policy = \"policy.toml\"\n[directory]\nkind = \"ldap\"\nurl = \"{url}\"\nstarttls = true\nca_file = \"ca.pem\"\n\
             user_base_dn = \"{base}\"\ngroup_base_dn = \"{base}\"\nbind_dn = \"{bind}\"\nbind_password = {{ env = \"LDAP_PW\" }}\n\
             disabled_attr = \"employeeType\"\ndisabled_values = [\"suspended\"]\n\
             [instances.af3]\nurl = \"{af}\"\nusername = \"admin\"\npassword = {{ env = \"AF3_PW\" }}\n",
            url = ldap.url,
            base = ldap.users_dn,
            bind = ldap.bind_dn,
            af = v3().base_url
        ),
    )
    .expect("config");
    std::fs::write(dir.path().join("ca.pem"), &ldap.ca_pem).expect("ca");
    std::fs::write(
        dir.path().join("policy.toml"),
        format!(
            "[usernames]\nfrom = \"directory_username\"\nprefix = \"l{id}-\"\n\n\
             [[grants]]\ngroup = \"airflow-users\"\nroles = [\"Viewer\"]\n\n[[grants]]\ngroup = \"airflow-admins\"\nroles = [\"Op\"]\n"
        ),
    )
    .expect("policy");
    let mut cmd = Command::cargo_bin("airlock").expect("binary");
    cmd.current_dir(dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .env("AF3_PW", &v3().admin_password)
        .env("LDAP_PW", &ldap.bind_password)
        .args(["--config", "airlock.toml", "sync"]);
    let out = cmd.assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("applied: "), "{stdout}");
    let name = |u: &str| format!("l{id}-{u}");
    // alice is in airflow-admins directly and in airflow-users through engineering (nested).
    assert_eq!(roles_in_airflow(&name("alice")), vec!["Op", "Viewer"]);
    assert_eq!(
        roles_in_airflow(&name("bob")),
        vec!["Viewer"],
        "through data-science"
    );
    assert_eq!(roles_in_airflow(&name("frank")), vec!["Op"]);
    // dave is marked suspended in LDAP (employeeType): no account.
    assert!(roles_in_airflow(&name("dave")).is_empty());
}

/// Creates an account directly in Airflow, as someone would by hand.
fn create_by_hand(username: &str, roles: &[&str]) {
    let http = reqwest::blocking::Client::new();
    let srv = v3();
    let token: serde_json::Value = http
        .post(format!("{}/auth/token", srv.base_url))
        .json(&serde_json::json!({ "username": srv.admin_user, "password": srv.admin_password }))
        .send()
        .expect("token")
        .json()
        .expect("token json");
    let roles: Vec<serde_json::Value> = roles
        .iter()
        .map(|r| serde_json::json!({ "name": r }))
        .collect();
    let resp = http
        .post(format!("{}/auth/fab/v1/users", srv.base_url))
        .bearer_auth(token["access_token"].as_str().expect("token"))
        .json(&serde_json::json!({
            "username": username, "email": username, "first_name": "Hand", "last_name": "Made",
            "roles": roles, "password": "Hand-made-1"
        }))
        .send()
        .expect("create");
    assert!(
        resp.status().is_success(),
        "create by hand: {}",
        resp.status()
    );
}

#[test]
fn a_suspended_person_s_hand_made_account_is_suspended_once_and_then_left_in_sync() {
    let w = World::new("");
    w.people(&[("lee", "eng")]);
    create_by_hand(&w.email("lee"), &["Admin"]);
    let y = std::fs::read_to_string(w.path("people.yaml")).expect("people");
    std::fs::write(
        w.path("people.yaml"),
        y.replace(
            "    groups: [eng]",
            "    status: suspended\n    groups: [eng]",
        ),
    )
    .expect("suspend in directory");
    let out = w.stdout(&["sync"]);
    assert!(out.contains("applied: 1 create_role, 1 suspend"), "{out}");
    assert!(roles_in_airflow(&w.email("lee")).is_empty());
    let again = w.stdout(&["sync"]);
    assert!(again.starts_with("in sync: no changes"), "{again}");
}

#[test]
fn a_directory_that_cannot_be_read_aborts_before_any_write() {
    let w = World::new("");
    w.people(&[("max", "eng")]);
    w.stdout(&["sync"]);
    std::fs::write(
        w.path("people.yaml"),
        "people:\n  - username: max\n    status: gone\n",
    )
    .expect("broken");
    w.airlock().arg("sync").assert().code(1).stderr(
        predicate::str::contains("directory file")
            .and(predicate::str::contains("unknown status `gone`")),
    );
    assert_eq!(
        roles_in_airflow(&w.email("max")),
        vec!["Op"],
        "an unreadable directory is not an empty one"
    );
}

/// Creates an account directly in Airflow, outside airlock (unmanaged to every test).
fn create_in_airflow(username: &str, role: &str) {
    let http = reqwest::blocking::Client::new();
    let srv = v3();
    let token: serde_json::Value = http
        .post(format!("{}/auth/token", srv.base_url))
        .json(&serde_json::json!({ "username": srv.admin_user, "password": srv.admin_password }))
        .send()
        .expect("token")
        .json()
        .expect("token json");
    let resp = http
        .post(format!("{}/auth/fab/v1/users", srv.base_url))
        .bearer_auth(token["access_token"].as_str().expect("token"))
        .json(&serde_json::json!({
            "username": username,
            "email": username,
            "first_name": "Un",
            "last_name": "Managed",
            "roles": [{ "name": role }],
            "password": "Unmanaged-pw-1",
        }))
        .send()
        .expect("create user");
    assert!(resp.status().is_success(), "create user: {}", resp.status());
}

mod tampered {
    //! Hand-edited saved plans: each is refused with one line naming the file and what is
    //! wrong (exit 3), and nothing reaches Airflow.

    use super::*;
    use airlock_core::plan::{Op, PlannedOp};
    use airlock_core::{InstanceName, RoleName, Username};
    use airlock_engine::sync::{saved, Plan};

    fn user(name: &str) -> Username {
        Username::new(name).expect("valid")
    }

    fn role(name: &str) -> RoleName {
        RoleName::new(name).expect("valid")
    }

    fn planned(op: Op) -> PlannedOp {
        PlannedOp {
            instance: InstanceName::new("af3").expect("valid"),
            op,
            reason: "operator".into(),
        }
    }

    /// Writes `plan` (resealed when `reseal`, as a forger who knows the digest would) to a
    /// file, applies it, and returns the single stderr line after checking the exit code.
    fn refused(w: &World, name: &str, mut plan: Plan, reseal: bool) -> String {
        if reseal {
            saved::seal(&mut plan);
        }
        let file = w.path(name);
        std::fs::write(&file, serde_json::to_string_pretty(&plan).expect("json")).expect("write");
        let out = w
            .airlock()
            .args(["apply", "--yes", "--plan", file.to_str().expect("utf8")])
            .assert()
            .code(3);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: one line: {stderr}");
        assert!(
            lines[0].starts_with(&format!("error: plan {} refused: ", file.display())),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        lines[0].to_string()
    }

    #[test]
    fn a_hand_edited_saved_plan_is_refused_and_nothing_is_applied() {
        let w = World::new("");
        let (eve, fay) = (w.email("eve"), w.email("fay"));
        w.people(&[("eve", "eng"), ("fay", "eng")]);
        w.stdout(&["sync"]);
        let stranger = format!("stranger@{}", w.domain);
        create_in_airflow(&stranger, "Viewer");
        // fay leaves: the reviewed plan suspends her, nothing else.
        w.people(&[("eve", "eng")]);
        let file = w.path("plan.json");
        w.stdout(&["plan", "--out", file.to_str().expect("utf8")]);
        let good: Plan =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("plan");
        let ops: Vec<&PlannedOp> = good.ops().collect();
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert!(matches!(ops[0].op, Op::Suspend { .. }), "{ops:?}");

        // Grant Admin, as a naive edit: the digest no longer matches.
        let mut p = good.clone();
        p.instances[0].ops.push(planned(Op::SetRoles {
            username: user(&eve),
            from: std::sync::Arc::new([role("Op")].into()),
            to: std::sync::Arc::new([role("Admin")].into()),
        }));
        let line = refused(&w, "admin-naive.json", p.clone(), false);
        assert!(
            line.contains("its digest does not match its contents"),
            "{line}"
        );
        assert!(line.ends_with("nothing was applied"), "{line}");
        // The same with a recomputed digest: not what airlock computes now.
        let line = refused(&w, "admin.json", p, true);
        assert!(
            line.contains(&format!(
                "operation 2 (set_roles account {eve} on af3 [Op] -> [Admin]) is not among what airlock computes now"
            )),
            "{line}"
        );

        // Delete early: the suspension becomes a deletion.
        let mut p = good.clone();
        p.instances[0].ops[0].op = Op::Delete {
            username: user(&fay),
        };
        let line = refused(&w, "delete-early.json", p, true);
        assert!(
            line.contains(&format!(
                "operation 1 (delete account {fay} on af3) differs from what airlock computes now (suspend account {fay} on af3 (strip [Op]))"
            )),
            "{line}"
        );

        // Touch the protected account airlock logs in as, and an unmanaged one.
        for (name, target) in [
            ("protected.json", v3().admin_user.clone()),
            ("unmanaged.json", stranger.clone()),
        ] {
            let mut p = good.clone();
            p.instances[0].ops.push(planned(Op::Suspend {
                username: user(&target),
                roles: Default::default(),
            }));
            let line = refused(&w, name, p, true);
            assert!(
                line.contains(&format!(
                    "operation 2 (suspend account {target} on af3 (strip []))"
                )),
                "{line}"
            );
        }

        // An instance the configuration does not have.
        let mut p = good.clone();
        p.instances[0].ops[0].instance = InstanceName::new("elsewhere").expect("valid");
        let line = refused(&w, "unknown.json", p, true);
        assert!(
            line.contains("operation 1 names instance `elsewhere`, which is not configured"),
            "{line}"
        );
        let mut p = good.clone();
        p.instance_names = vec![InstanceName::new("elsewhere").expect("valid")];
        let line = refused(&w, "unknown-list.json", p, true);
        assert!(
            line.contains("instance_names[0] names instance `elsewhere`"),
            "{line}"
        );

        // A changed fingerprint: edited, and when resealed, stale.
        let mut p = good.clone();
        p.fingerprint = "0".repeat(64);
        let line = refused(&w, "fingerprint-naive.json", p.clone(), false);
        assert!(line.contains("its digest does not match"), "{line}");
        let line = refused(&w, "fingerprint.json", p, true);
        assert!(
            line.contains("the state changed since this plan was made"),
            "{line}"
        );

        // Not a plan at all (an operation kind airlock does not have): one line, no panic.
        let text = std::fs::read_to_string(&file)
            .expect("read")
            .replace("\"suspend\"", "\"grant_admin\"");
        let bad = w.path("garbage.json");
        std::fs::write(&bad, text).expect("write");
        let out = w
            .airlock()
            .args(["apply", "--yes", "--plan", bad.to_str().expect("utf8")])
            .assert()
            .code(1);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("is not an airlock plan"), "{stderr}");

        // Airflow is exactly as before.
        assert_eq!(roles_in_airflow(&eve), vec!["Op"]);
        assert_eq!(
            roles_in_airflow(&fay),
            vec!["Op"],
            "not suspended, not deleted"
        );
        assert_eq!(roles_in_airflow(&stranger), vec!["Viewer"]);
        assert_eq!(roles_in_airflow(&v3().admin_user), vec!["Admin"]);
        // Refusals are audited.
        let export = w.stdout(&["audit", "export"]);
        assert!(
            export.contains("saved_plan_differs") && export.contains("stale_plan"),
            "{export}"
        );

        // The untouched file still applies.
        let out = w.stdout(&["apply", "--yes", "--plan", file.to_str().expect("utf8")]);
        assert!(out.contains("applied: 1 suspend"), "{out}");
        assert!(roles_in_airflow(&fay).is_empty());
    }
}

/// A private Airflow 3.3.2 whose tokens live two hours (`[api_auth] jwt_expiration_time`).
fn two_hour_tokens() -> &'static AirflowServer {
    static SERVER: std::sync::OnceLock<AirflowServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        AirflowServer::builder(AirflowVersion::V3)
            .env("AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME", "7200")
            .start()
            .expect("start Airflow 3.3.2 with two-hour tokens")
    })
}

#[test]
fn deletions_are_held_where_tokens_outlive_the_configured_lifetime() {
    let srv = two_hour_tokens();
    // Configured: one hour. Observed on airlock's own token: two.
    let w = World::on(srv, "token_lifetime_secs = 3600", "");
    let (gus, hal, ivy) = (w.email("gus"), w.email("hal"), w.email("ivy"));
    w.people(&[("gus", "eng"), ("hal", "eng")]);
    w.stdout(&["sync"]);
    w.people(&[("gus", "eng")]);
    let out = w.stdout(&["sync"]);
    assert!(
        out.contains("applied: 1 suspend"),
        "suspensions are not blocked: {out}"
    );
    // hal was suspended three days ago: past delete_after_days = 2.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(w.path("airlock.db"))
            .connect()
            .await
            .expect("open db");
        let three_days_ago = chrono::Utc::now().timestamp_millis() - 3 * 86_400_000;
        let n =
            sqlx::query("UPDATE managed_accounts SET suspended_at_ms = $1 WHERE username_key = $2")
                .bind(three_days_ago)
                .bind(hal.to_lowercase())
                .execute(&mut conn)
                .await
                .expect("backdate")
                .rows_affected();
        assert_eq!(n, 1);
    });
    w.people(&[("gus", "eng"), ("ivy", "eng")]);
    let out = w.airlock().arg("sync").assert().code(3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains(&format!(
            "held: delete account {hal} on af3: instance `af3` issues tokens valid for 7200 s, longer than its token_lifetime_secs = 3600 s"
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains("applied: 1 create_account"),
        "the joiner still flows: {stdout}"
    );
    assert_eq!(roles_in(srv, &ivy), Some(vec!["Op".to_string()]));
    assert_eq!(roles_in(srv, &hal), Some(vec![]), "held, not deleted");
    assert_eq!(roles_in(srv, &gus), Some(vec!["Op".to_string()]));
    // --allow-mass-deprovision does not lift it.
    w.airlock()
        .args(["sync", "--allow-mass-deprovision"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("issues tokens valid for 7200 s"));
    assert_eq!(roles_in(srv, &hal), Some(vec![]), "still there");
    // Nor does an operator's release: only a matching configuration does.
    let listed = w.stdout(&["rails", "list"]);
    assert!(listed.contains("token_lifetime"), "{listed}");
    w.stdout(&["rails", "release", "--all"]);
    w.airlock()
        .arg("sync")
        .assert()
        .code(3)
        .stderr(predicate::str::contains("issues tokens valid for 7200 s"));
    assert_eq!(
        roles_in(srv, &hal),
        Some(vec![]),
        "still there after a release"
    );

    // `airlock instances` reports it as a problem of that instance.
    let out = w.airlock().arg("instances").assert().code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("af3: problem: instance `af3` issues tokens valid for 7200 s, longer than its token_lifetime_secs = 3600 s"),
        "{stdout}"
    );
    let out = w
        .airlock()
        .args(["instances", "-o", "json"])
        .assert()
        .code(1);
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).expect("json");
    assert_eq!(
        json[0]["problems"].as_array().map(Vec::len),
        Some(1),
        "{json}"
    );

    // Configured as Airflow issues them: the deletion goes through.
    w.instance("token_lifetime_secs = 7200");
    let out = w.stdout(&["instances"]);
    assert!(!out.contains("problem"), "{out}");
    let out = w.stdout(&["sync"]);
    assert!(out.contains("applied: 1 delete"), "{out}");
    assert_eq!(roles_in(srv, &hal), None, "deleted");
}
