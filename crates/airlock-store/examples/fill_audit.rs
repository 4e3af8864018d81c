//! Fills a store's audit trail with many sealed events, fast, for the audit benchmarks
//! (`benches/bench_audit.py`):
//!
//! ```sh
//! cargo build --release -p airlock-store --example fill_audit
//! target/release/examples/fill_audit sqlite:///tmp/airlock.db 1000000
//! target/release/examples/fill_audit postgres://postgres@127.0.0.1:5432/bench 200000 --batch 5000
//! ```
//!
//! Appends `COUNT` events after the trail's current end (an empty store is created and
//! migrated as `airlock` would), `--batch` events per [`Store::append_audit`] call (default
//! 10,000: one transaction, sealed after the head read under the append lock, so the chain is
//! exactly what `airlock` itself would have written). The events are a realistic mix of what a
//! sync, the SCIM endpoint and the access API record: role changes with their roles before
//! and after, creations, suspensions, SCIM patches, access requests and grants, the runs around
//! them, and some failures and refusals. About one event in 50 carries hostile characters in a
//! value (quotes, `]`, `|`, `=`, backslashes, a newline, ESC, NUL, non-ASCII), so the encoders'
//! escaping is part of what an export costs. Their times run at 100 ms steps up to now.
//!
//! Prints one line at the end: events appended, seconds, events per second, the new head.
//!
//! Not here: measuring anything beyond the append itself (the harness times `verify`,
//! `export` and the delivery to a collector).

use airlock_audit::{operation as op, NewEvent, Outcome, Target, ACTOR_AIRLOCK};
use airlock_store::{OpenOptions, Store};
use anyhow::{bail, Context as _};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::time::Instant;

/// Default events per append (one transaction each).
const DEFAULT_BATCH: usize = 10_000;
/// Time between consecutive events.
const STEP_MS: i64 = 100;
/// Every this many events, one carries hostile characters.
const HOSTILE_EVERY: u64 = 50;
/// Role names of the synthetic Airflow instances.
const ROLES: [&str; 5] = ["Viewer", "User", "Op", "Admin", "data-eng"];
/// Instance names.
const INSTANCES: [&str; 3] = ["prod", "staging", "analytics"];

/// The command line: `STORE_URL COUNT [--batch N]`.
struct Args {
    url: String,
    count: u64,
    batch: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let usage = "usage: fill_audit STORE_URL COUNT [--batch N]";
    let url = it.next().context(usage)?;
    let count: u64 = it.next().context(usage)?.parse().context("COUNT")?;
    let mut batch = DEFAULT_BATCH;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--batch" => batch = it.next().context("--batch N")?.parse().context("--batch")?,
            other => bail!("unknown argument {other}; {usage}"),
        }
    }
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(Args { url, count, batch })
}

/// A username; every [`HOSTILE_EVERY`]th event gets one an Airflow or directory could hold
/// that tries to break out of each export format.
fn username(i: u64) -> String {
    if i % HOSTILE_EVERY == 7 {
        format!("mal\"lory]{i}|x=1\\n\n<13>1 - forged\u{1b}[31m\u{0}é")
    } else {
        format!("user-{:05}", i % 20_000)
    }
}

fn roles(i: u64, n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|k| ROLES[((i as usize) + k * 3) % ROLES.len()])
        .collect()
}

/// Event `i` of the synthetic trail, at `at`.
fn event(i: u64, at: DateTime<Utc>, run: &str) -> NewEvent {
    let instance = INSTANCES[(i % INSTANCES.len() as u64) as usize];
    let user = username(i);
    let account = Target::Account {
        username: user.clone(),
    };
    let hostile = i % HOSTILE_EVERY == 7;
    let reason = |text: &str| {
        if hostile {
            format!("{text}; directory said \"ops]\" | cn=x=y\r\nINJECTED\t\u{7f}")
        } else {
            text.to_owned()
        }
    };
    // A realistic mix: most events are role changes and SCIM writes.
    let mut e = match i % 20 {
        0 => NewEvent::new(at, ACTOR_AIRLOCK, op::RUN_START, Outcome::Succeeded),
        1..=6 => {
            let mut e = NewEvent::new(at, ACTOR_AIRLOCK, op::ACCOUNT_SET_ROLES, Outcome::Succeeded);
            e.target = Some(account);
            e.before = Some(json!({ "roles": roles(i, 1) }));
            e.after = Some(json!({ "roles": roles(i + 1, 2) }));
            e.reason = Some(reason("group eng maps to User, Op (policy grant 2)"));
            e
        }
        7 => {
            let mut e = NewEvent::new(at, ACTOR_AIRLOCK, op::ACCOUNT_CREATE, Outcome::Succeeded);
            e.target = Some(account);
            e.after = Some(json!({
                "email": format!("{user}@example.com"),
                "first_name": "Ann",
                "last_name": if hostile { "O'Brien \"the\" ]admin[" } else { "Lee" },
                "roles": roles(i, 1),
            }));
            e.reason = Some(reason("joined group eng"));
            e
        }
        8 => {
            let mut e = NewEvent::new(at, ACTOR_AIRLOCK, op::ACCOUNT_SUSPEND, Outcome::Succeeded);
            e.target = Some(account);
            e.before = Some(json!({ "roles": roles(i, 2) }));
            e.after = Some(json!({ "roles": [], "password": "rotated" }));
            e.reason = Some(reason("left the directory"));
            e
        }
        9 => {
            let mut e = NewEvent::new(
                at,
                ACTOR_AIRLOCK,
                op::ACCOUNT_SET_ROLES,
                Outcome::Failed {
                    error: "Airflow answered 503 Service Unavailable".into(),
                },
            );
            e.target = Some(account);
            e.before = Some(json!({ "roles": roles(i, 1) }));
            e.after = Some(json!({ "roles": roles(i, 2) }));
            e
        }
        10..=14 => {
            let mut e = NewEvent::new(at, "scim:okta", op::SCIM_USER_PATCH, Outcome::Succeeded);
            e.target = Some(Target::ScimResource {
                resource_type: "User".into(),
                id: format!("0190b5a8-{i:012x}"),
            });
            e.before = Some(json!({ "userName": user, "active": true }));
            e.after = Some(json!({ "userName": user, "active": i % 2 == 0 }));
            e
        }
        15 => {
            let mut e = NewEvent::new(at, "scim:okta", op::SCIM_USER_CREATE, Outcome::Succeeded);
            e.target = Some(Target::ScimResource {
                resource_type: "User".into(),
                id: format!("0190b5a8-{i:012x}"),
            });
            e.after = Some(json!({ "userName": user, "active": true }));
            e
        }
        16 => {
            let mut e = NewEvent::new(at, &user, op::ACCESS_REQUEST_CREATE, Outcome::Succeeded);
            e.target = Some(Target::AccessRequest {
                id: format!("0190b5a9-{i:012x}"),
            });
            e.after = Some(json!({
                "roles": ["Op"], "instances": [instance], "duration": "1h", "state": "pending",
            }));
            e.reason = Some(reason("INC-4242: backfill the orders DAG"));
            e
        }
        17 => {
            let mut e = NewEvent::new(at, "sid", op::ACCESS_REQUEST_APPROVE, Outcome::Succeeded);
            e.target = Some(Target::AccessRequest {
                id: format!("0190b5a9-{:012x}", i - 1),
            });
            e.before = Some(json!({ "state": "pending" }));
            e.after = Some(
                json!({ "state": "approved", "ends_at": (at + Duration::hours(1)).to_rfc3339() }),
            );
            e
        }
        18 => {
            let mut e = NewEvent::new(
                at,
                ACTOR_AIRLOCK,
                op::RAIL_REFUSED,
                Outcome::Refused {
                    rail: "max_deletes".into(),
                },
            );
            e.target = Some(Target::Run);
            e.reason = Some(reason("42 suspensions planned, at most 10 allowed"));
            e
        }
        _ => {
            let mut e = NewEvent::new(at, ACTOR_AIRLOCK, op::RUN_FINISH, Outcome::Succeeded);
            e.target = Some(Target::Run);
            e.after = Some(json!({ "applied": 16, "failed": 1, "refused": 1 }));
            e
        }
    };
    e.run_id = Some(run.to_owned());
    if e.operation != op::RUN_START && e.operation != op::RUN_FINISH {
        e.instance = Some(instance.to_owned());
    }
    e
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let store = Store::open(&args.url, OpenOptions::create())
        .await
        .context("open the store")?;
    let start = Utc::now() - Duration::milliseconds(STEP_MS.saturating_mul(args.count as i64));
    let began = Instant::now();
    let mut run = String::new();
    let mut done = 0u64;
    let mut head = 0u64;
    while done < args.count {
        let n = (args.count - done).min(args.batch as u64);
        let mut batch = Vec::with_capacity(n as usize);
        for i in done..done + n {
            if i % 20 == 0 {
                run = format!("run-{:08}", i / 20);
            }
            let at = start + Duration::milliseconds(STEP_MS.saturating_mul(i as i64));
            batch.push(event(i, at, &run));
        }
        let sealed = store.append_audit(batch).await.context("append")?;
        head = sealed.last().map_or(head, |e| e.seq);
        done += n;
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "appended {done} events in {secs:.2} s ({:.0} events/s); head seq {head}",
        done as f64 / secs.max(1e-9)
    );
    Ok(())
}
