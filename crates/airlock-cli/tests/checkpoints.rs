//! Signed checkpoints of the audit chain, with the `airlock` binary against SQLite and
//! PostgreSQL stores: `audit keygen`, `audit checkpoint`, `audit verify --checkpoint`, and the
//! attacks a writer of the database can make that the chain alone does not catch (history
//! rewritten and re-hashed, truncation, reset to genesis), plus forged checkpoints and wrong
//! keys. Events are appended through `airlock-store`, as airlock appends them; tampering is raw
//! SQL, as someone with database access would do it. No Airflow is needed: these commands
//! only read the store.

use airlock_audit::{seal, AuditEvent, NewEvent, Outcome, Target, ACCOUNT_SET_ROLES};
use airlock_store::{OpenOptions, Store};
use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;

const KEY_NAME: &str = "airlock.test/prod";

enum Db {
    Sqlite,
    Postgres(airlock_testkit::postgres::PgTestDb),
}

struct World {
    dir: tempfile::TempDir,
    db: Db,
    rt: tokio::runtime::Runtime,
    /// The verifier key printed by `airlock audit keygen`.
    public_key: String,
}

impl World {
    fn new(postgres: bool) -> World {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let db = if postgres {
            Db::Postgres(
                rt.block_on(airlock_testkit::postgres::fresh_pg_database())
                    .expect("a throw-away PostgreSQL database"),
            )
        } else {
            Db::Sqlite
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = World {
            dir,
            db,
            rt,
            public_key: String::new(),
        };
        w.public_key = w.keygen("signing.key", KEY_NAME);
        w.write_config("file = \"checkpoint\"\ndirectory = \"checkpoints\"\n");
        w
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn store_url(&self) -> String {
        match &self.db {
            Db::Sqlite => format!("sqlite://{}", self.path("airlock.db").display()),
            Db::Postgres(pg) => pg.url().to_owned(),
        }
    }

    /// Writes airlock.toml with `destinations` in [audit.checkpoints].
    fn write_config(&self, destinations: &str) {
        std::fs::write(
            self.path("airlock.toml"),
            format!(
                "[store]\nurl = \"{}\"\n\
                 [instances.af3]\nurl = \"http://127.0.0.1:9\"\nusername = \"admin\"\npassword = \"unused\"\n\
                 [audit.checkpoints]\nsigning_key_file = \"signing.key\"\nkey_name = \"{KEY_NAME}\"\n{destinations}",
                self.store_url()
            ),
        )
        .expect("config");
    }

    fn airlock(&self) -> Command {
        let mut cmd = Command::cargo_bin("airlock").expect("binary");
        cmd.current_dir(self.dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .arg("--config")
            .arg(self.path("airlock.toml"));
        cmd
    }

    /// Runs `airlock audit keygen` and returns the verifier key it printed.
    fn keygen(&self, file: &str, name: &str) -> String {
        let out = Command::cargo_bin("airlock")
            .expect("binary")
            .current_dir(self.dir.path())
            .args(["audit", "keygen", "--out", file, "--name", name])
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout)
            .trim()
            .to_owned()
    }

    fn store(&self) -> Store {
        self.rt
            .block_on(Store::open(&self.store_url(), OpenOptions::create()))
            .expect("open the store")
    }

    /// Appends `n` events the way airlock does.
    fn append(&self, n: usize) {
        let store = self.store();
        self.rt.block_on(async {
            for i in 0..n {
                store.append_audit(vec![event(i)]).await.expect("append");
            }
            store.close().await;
        });
    }

    fn checkpoint(&self) -> String {
        let out = self
            .airlock()
            .args(["audit", "checkpoint"])
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    }

    /// `airlock audit verify --checkpoint FILE --public-key KEY`.
    fn verify_with(&self, checkpoint: &str, key: &str) -> assert_cmd::assert::Assert {
        self.airlock()
            .args([
                "audit",
                "verify",
                "--checkpoint",
                checkpoint,
                "--public-key",
                key,
            ])
            .assert()
    }

    fn verify(&self) -> assert_cmd::assert::Assert {
        self.verify_with("checkpoint", &self.public_key)
    }

    fn sql(&self, statements: &[&str]) {
        self.rt.block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&self.store_url())
                .await
                .expect("raw connection");
            for s in statements {
                sqlx::query(s).execute(&pool).await.expect("tamper");
            }
            pool.close().await;
        });
    }

    /// Rewrites history the way an attacker with database access would: changes events with
    /// `edit`, then re-seals every event after it and moves the head, so that every hash is
    /// consistent again and the chain alone verifies.
    fn rewrite_and_rehash(&self, edit: impl Fn(&mut NewEvent, u64)) {
        let store = self.store();
        let events = self.rt.block_on(async {
            let events = store.audit_events(1, 10_000).await.expect("read");
            store.close().await;
            events
        });
        let mut sealed: Vec<AuditEvent> = Vec::new();
        for e in events {
            let mut new = NewEvent {
                id: e.id,
                at: e.at,
                actor: e.actor,
                run_id: e.run_id,
                instance: e.instance,
                target: e.target,
                operation: e.operation,
                outcome: e.outcome,
                before: e.before,
                after: e.after,
                reason: e.reason,
            };
            edit(&mut new, e.seq);
            sealed.push(seal(sealed.last(), e.seq, new));
        }
        self.rt.block_on(async {
            let pool = sqlx::AnyPool::connect(&self.store_url())
                .await
                .expect("raw connection");
            for e in &sealed {
                sqlx::query(
                    "UPDATE audit_events SET event_json = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                )
                .bind(airlock_audit::to_jsonl_line(e))
                .bind(&e.prev_hash)
                .bind(&e.hash)
                .bind(e.seq as i64)
                .execute(&pool)
                .await
                .expect("rewrite an event");
            }
            let last = sealed.last().expect("events");
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(last.seq as i64)
                .bind(&last.hash)
                .execute(&pool)
                .await
                .expect("move the head");
            pool.close().await;
        });
    }
}

fn event(i: usize) -> NewEvent {
    let mut new = NewEvent::new(
        chrono::Utc::now(),
        "operator:alice",
        ACCOUNT_SET_ROLES,
        Outcome::Succeeded,
    );
    new.instance = Some("af3".to_owned());
    new.target = Some(Target::Account {
        username: format!("user{i}"),
    });
    new.after = Some(serde_json::json!({ "roles": ["Viewer"] }));
    new
}

fn stderr_of(a: assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

macro_rules! on_both_stores {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $( #[test] fn $test() { super::$test(false) } )+
        }
        mod postgres {
            $( #[test] fn $test() { super::$test(true) } )+
        }
    };
}

on_both_stores!(
    a_checkpoint_verifies_and_keeps_verifying_as_the_chain_grows,
    history_rewritten_and_rehashed_passes_the_chain_check_but_not_the_checkpoint,
    a_truncated_chain_contradicts_the_checkpoint,
    a_chain_reset_to_genesis_contradicts_the_checkpoint,
    a_tampered_checkpoint_or_another_key_is_refused,
    airlock_refuses_to_sign_a_chain_that_contradicts_its_last_checkpoint,
);

fn a_checkpoint_verifies_and_keeps_verifying_as_the_chain_grows(postgres: bool) {
    let w = World::new(postgres);
    w.append(4);
    let out = w.checkpoint();
    assert!(
        out.starts_with(&format!("checkpoint signed by {KEY_NAME}: 4 events, head ")),
        "{out}"
    );
    let note = std::fs::read_to_string(w.path("checkpoint")).expect("file destination");
    assert!(note.starts_with(&format!("{KEY_NAME}\n4\n")), "{note}");
    assert!(
        note.contains(&format!("\n\n\u{2014} {KEY_NAME} ")),
        "{note}"
    );
    let in_dir = std::fs::read_to_string(w.path("checkpoints/00000000000000000004.checkpoint"))
        .expect("directory destination, named by size");
    assert_eq!(in_dir, note);

    w.verify()
        .success()
        .stdout(predicate::str::contains("audit trail intact: 4 events"));
    w.append(3);
    w.verify()
        .success()
        .stdout(predicate::str::contains("audit trail intact: 7 events"));
    // The key can also be given as a file holding it.
    std::fs::write(w.path("verifier.pub"), format!("{}\n", w.public_key)).expect("write");
    w.verify_with("checkpoint", "verifier.pub").success();

    // A second checkpoint adds a file to the directory and replaces the file destination.
    w.checkpoint();
    assert!(std::fs::read_to_string(w.path("checkpoint"))
        .expect("file")
        .starts_with(&format!("{KEY_NAME}\n7\n")));
    assert!(w
        .path("checkpoints/00000000000000000004.checkpoint")
        .exists());
    assert!(w
        .path("checkpoints/00000000000000000007.checkpoint")
        .exists());
    w.verify_with("checkpoints/00000000000000000004.checkpoint", &w.public_key)
        .success();
}

fn history_rewritten_and_rehashed_passes_the_chain_check_but_not_the_checkpoint(postgres: bool) {
    let w = World::new(postgres);
    w.append(5);
    w.checkpoint();
    // The attacker hides who was granted what in event 2, and re-hashes everything after it.
    w.rewrite_and_rehash(|e, seq| {
        if seq == 2 {
            e.actor = "airlock".to_owned();
            e.after = Some(serde_json::json!({ "roles": ["Admin"] }));
        }
    });
    w.airlock()
        .args(["audit", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("audit trail intact: 5 events"));
    let err = stderr_of(w.verify().code(1));
    assert_eq!(
        err.trim(),
        "error: audit trail contradicts checkpoint checkpoint: audit event 5 does not match the signed checkpoint: the log up to it was rewritten and re-hashed, or reset",
    );
}

fn a_truncated_chain_contradicts_the_checkpoint(postgres: bool) {
    let w = World::new(postgres);
    w.append(5);
    w.checkpoint();
    // Delete the last two events and move the head back: the chain alone is consistent.
    let store = w.store();
    let head3 = w.rt.block_on(async {
        let e = store.audit_events(3, 1).await.expect("read");
        store.close().await;
        e[0].hash.clone()
    });
    w.sql(&[
        "DELETE FROM audit_events WHERE seq > 3",
        &format!("UPDATE audit_head SET seq = 3, hash = '{head3}' WHERE id = 1"),
    ]);
    w.airlock().args(["audit", "verify"]).assert().success();
    let err = stderr_of(w.verify().code(1));
    assert!(
        err.contains("the audit log holds 3 events but a signed checkpoint records 5: events were deleted from the end, or the log was reset"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn a_chain_reset_to_genesis_contradicts_the_checkpoint(postgres: bool) {
    let w = World::new(postgres);
    w.append(3);
    w.checkpoint();
    // Delete everything and start a fresh chain, shorter and then longer than the checkpoint.
    w.sql(&[
        "DELETE FROM audit_events",
        &format!(
            "UPDATE audit_head SET seq = 0, hash = '{}' WHERE id = 1",
            airlock_audit::GENESIS_HASH
        ),
    ]);
    w.airlock().args(["audit", "verify"]).assert().success();
    let err = stderr_of(w.verify().code(1));
    assert!(
        err.contains("holds 0 events but a signed checkpoint records 3"),
        "{err}"
    );
    w.append(6);
    w.airlock()
        .args(["audit", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("audit trail intact: 6 events"));
    let err = stderr_of(w.verify().code(1));
    assert!(
        err.contains("audit event 3 does not match the signed checkpoint"),
        "{err}"
    );
}

fn a_tampered_checkpoint_or_another_key_is_refused(postgres: bool) {
    let w = World::new(postgres);
    w.append(5);
    w.checkpoint();
    let note = std::fs::read_to_string(w.path("checkpoint")).expect("file");

    // Lowering the size so a truncation would pass breaks the signature.
    std::fs::write(w.path("edited"), note.replacen("\n5\n", "\n2\n", 1)).expect("write");
    let err = stderr_of(w.verify_with("edited", &w.public_key).code(1));
    assert_eq!(
        err.trim(),
        format!("error: checkpoint edited rejected: the signature by key {KEY_NAME} does not verify: the note was changed or forged")
    );

    // A checkpoint forged with the attacker's own key under the same name: not our key id.
    w.keygen("attacker.key", KEY_NAME);
    std::fs::copy(w.path("attacker.key"), w.path("signing.key")).expect("swap the key");
    std::fs::remove_file(w.path("checkpoint")).expect("rm");
    std::fs::remove_dir_all(w.path("checkpoints")).expect("rm");
    w.rewrite_and_rehash(|e, seq| {
        if seq == 1 {
            e.actor = "nobody".to_owned();
        }
    });
    w.checkpoint();
    let err = stderr_of(w.verify().code(1));
    assert!(
        err.contains(&format!(
            "rejected: the note carries no signature by key {KEY_NAME} (key id"
        )),
        "{err}"
    );

    // The right checkpoint, checked with the wrong public key.
    let other = w.keygen("other.key", "someone.else");
    std::fs::write(w.path("original"), &note).expect("write");
    let err = stderr_of(w.verify_with("original", &other).code(1));
    assert!(err.contains("no signature by key someone.else"), "{err}");

    // Not a key at all; a missing checkpoint file.
    let err = stderr_of(w.verify_with("original", "not-a-key").code(1));
    assert!(err.contains("--public-key: not a verifier key"), "{err}");
    let err = stderr_of(w.verify_with("missing", &w.public_key).code(1));
    assert!(err.contains("cannot read checkpoint missing"), "{err}");
}

fn airlock_refuses_to_sign_a_chain_that_contradicts_its_last_checkpoint(postgres: bool) {
    let w = World::new(postgres);
    w.append(4);
    w.checkpoint();
    let before = std::fs::read_to_string(w.path("checkpoint")).expect("file");
    w.rewrite_and_rehash(|e, seq| {
        if seq == 3 {
            e.reason = Some("nothing to see".to_owned());
        }
    });
    w.append(1);
    w.airlock()
        .args(["audit", "checkpoint"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "refusing to sign a checkpoint: audit event 4 does not match the signed checkpoint",
        ));
    assert_eq!(
        std::fs::read_to_string(w.path("checkpoint")).expect("file"),
        before,
        "the last good checkpoint is kept"
    );
    assert!(!w
        .path("checkpoints/00000000000000000005.checkpoint")
        .exists());

    // A chain that does not verify on its own is not signed either.
    w.sql(&[
        "UPDATE audit_events SET event_json = replace(event_json, 'user0', 'user9') WHERE seq = 1",
    ]);
    w.airlock()
        .args(["audit", "checkpoint"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "refusing to sign a checkpoint: audit trail broken: audit event 1 was modified",
        ));
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read_and_prints_only_the_public_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::cargo_bin("airlock")
        .expect("binary")
        .current_dir(dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .args(["audit", "keygen", "--out", "k", "--name", KEY_NAME])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let private = std::fs::read_to_string(dir.path().join("k")).expect("key file");
    assert!(
        private.starts_with(&format!("PRIVATE+KEY+{KEY_NAME}+")),
        "the Go note format"
    );
    let secret = key_data(&private);
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the private key is never printed"
    );
    assert!(stdout.starts_with(&format!("{KEY_NAME}+")), "{stdout}");
    let mode = std::fs::metadata(dir.path().join("k"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // An existing key is never replaced.
    Command::cargo_bin("airlock")
        .expect("binary")
        .current_dir(dir.path())
        .args(["audit", "keygen", "--out", "k", "--name", KEY_NAME])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "k already exists; refusing to replace a signing key",
        ));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("k")).expect("key"),
        private
    );
    // A name the format cannot carry.
    Command::cargo_bin("airlock")
        .expect("binary")
        .current_dir(dir.path())
        .args(["audit", "keygen", "--out", "k2", "--name", "has space"])
        .assert()
        .code(1);
    assert!(!dir.path().join("k2").exists());
}

#[test]
fn a_key_file_others_can_read_or_a_missing_one_stops_the_command_naming_the_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let w = World::new(false);
    let key = w.path("signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = stderr_of(w.airlock().args(["audit", "checkpoint"]).assert().code(2));
    assert_eq!(
        err.trim(),
        format!(
            "error: {}: audit.checkpoints.signing_key_file: signing key file {} is accessible to group or others (mode 0644); run chmod 600 {}",
            w.path("airlock.toml").display(),
            key.display(),
            key.display()
        )
    );
    assert!(!w.path("checkpoint").exists(), "nothing was written");
    std::fs::remove_file(&key).expect("rm");
    let err = stderr_of(w.airlock().args(["config", "check"]).assert().code(2));
    assert!(
        err.contains(&format!(
            "audit.checkpoints.signing_key_file: cannot read signing key file {}",
            key.display()
        )),
        "{err}"
    );
}

#[test]
fn a_checkpoint_is_posted_to_a_url() {
    use std::io::{Read as _, Write as _};
    let w = World::new(false);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    w.write_config(&format!(
        "url = \"http://hook:pa55word@127.0.0.1:{port}/witness?token=s3cret\"\n"
    ));
    w.append(2);
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the headers, then as many body bytes as Content-Length says.
        loop {
            let n = conn.read(&mut buf).expect("read");
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().expect("length"))
                    })
                    .expect("content-length");
                if request.len() >= end + 4 + len {
                    conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .expect("respond");
                    return text;
                }
            }
        }
    });
    let out = w.checkpoint();
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}/witness")),
        "{out}"
    );
    assert!(
        !out.contains("s3cret") && !out.contains("pa55word"),
        "credentials are not shown: {out}"
    );
    let request = receiver.join().expect("receiver");
    assert!(
        request.starts_with("POST /witness?token=s3cret HTTP/1.1"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-type: text/plain; charset=utf-8"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: basic "),
        "credentials in the URL are sent as basic auth: {request}"
    );
    let body = &request[request.find("\r\n\r\n").expect("body") + 4..];
    std::fs::write(w.path("posted"), body).expect("write");
    w.verify_with("posted", &w.public_key).success();
}

/// Kills the service when the test ends, however it ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The largest checkpoint size in the directory destination.
fn newest_in(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".checkpoint")
                .and_then(|n| n.parse().ok())
        })
        .max()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn serve_writes_a_checkpoint_on_schedule_when_the_chain_grew_and_survives_a_failed_write() {
    let w = World::new(false);
    w.write_config("directory = \"checkpoints\"\ninterval_secs = 1\n");
    let mut config = std::fs::read_to_string(w.path("airlock.toml")).expect("config");
    config.insert_str(
        0,
        "policy = \"policy.toml\"\n[directory]\nkind = \"file\"\npath = \"people.yaml\"\n",
    );
    std::fs::write(w.path("airlock.toml"), config).expect("config");
    std::fs::write(
        w.path("policy.toml"),
        "[[grants]]\ngroup = \"eng\"\nroles = [\"Op\"]\n",
    )
    .expect("policy");
    std::fs::write(w.path("people.yaml"), "people: []\n").expect("people");
    w.append(3);
    // The destination is unusable at first: the task logs it and tries again later.
    std::fs::write(w.path("checkpoints"), "not a directory").expect("block the destination");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let log = w.path("serve.log");
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("airlock"))
        .current_dir(w.dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .args([
            "--config",
            "airlock.toml",
            "--log",
            "debug",
            "serve",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("airlock serve");
    let _serve = Serve(child);
    let dir = w.path("checkpoints");
    wait_for("a logged failure", || {
        std::fs::read_to_string(&log).is_ok_and(|l| {
            l.contains("audit checkpoint not written; retrying at the next interval")
        })
    });
    std::fs::remove_file(&dir).expect("unblock the destination");
    wait_for("the first checkpoint", || {
        newest_in(&dir).is_some_and(|n| n >= 3)
    });
    let first = newest_in(&dir).expect("a checkpoint");
    w.append(2);
    wait_for("a checkpoint of the grown chain", || {
        newest_in(&dir).is_some_and(|n| n >= first + 2)
    });
    let newest = dir.join(format!(
        "{:020}.checkpoint",
        newest_in(&dir).expect("newest")
    ));
    w.verify_with(newest.to_str().expect("utf-8"), &w.public_key)
        .success();
    let private = std::fs::read_to_string(w.path("signing.key")).expect("key");
    let secret = key_data(&private);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("audit checkpoint written"), "{logged}");
    assert!(!logged.contains(secret), "the key is never logged");
}

/// The base64 key data of a signer key's text (`PRIVATE+KEY+<name>+<id>+<data>`): after the
/// fourth `+`, since base64 itself may hold `+`.
fn key_data(private: &str) -> &str {
    private.trim().splitn(5, '+').nth(4).expect("key data")
}
