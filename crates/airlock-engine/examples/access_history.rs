//! Benchmark of "who had access when" (`benches/README.md`): records DAYS days of hourly
//! observations of ACCOUNTS accounts on one instance (CHANGES role changes a day, at random
//! accounts), then answers `access at` for 200 random moments.
//!
//! `cargo run --release -p airlock-engine --example access_history -- [STORE_URL] [DAYS] [ACCOUNTS] [CHANGES]`
//!
//! STORE_URL defaults to a SQLite file in a temporary directory. Prints one JSON line: time
//! per observation, intervals stored and their size, and p50/p99 of `access at`.

use airlock_core::history::Filter;
use airlock_core::inventory::Snapshot;
use airlock_core::{Account, InstanceName, RoleName, Username};
use airlock_store::{OpenOptions, Store};
use chrono::{Duration, TimeZone as _, Utc};
use std::time::Instant;

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn account(i: usize, role: &str) -> Account {
    Account {
        username: Username::new(format!("user{i:05}")).expect("name"),
        email: format!("user{i:05}@example.com"),
        first_name: "Bench".into(),
        last_name: format!("{i}"),
        roles: [RoleName::new(role).expect("role")].into_iter().collect(),
        active: true,
        last_login: None,
        login_count: None,
        fail_login_count: None,
        created_on: None,
        changed_on: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = std::env::args()
        .nth(1)
        .filter(|u| u != "-")
        .unwrap_or_else(|| format!("sqlite://{}/airlock.db", dir.path().display()));
    let days: i64 = arg(2, 90);
    let accounts: usize = arg(3, 2000);
    let changes: usize = arg(4, 5);
    let store = Store::open(&url, OpenOptions::create()).await?;
    let roles = ["Viewer", "User", "Op", "Admin"];
    let mut held: Vec<usize> = (0..accounts).map(|i| i % roles.len()).collect();
    let start = Utc
        .with_ymd_and_hms(2026, 9, 1, 0, 0, 0)
        .single()
        .expect("time");
    let hours = days * 24;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let instance = InstanceName::new("prod")?;
    let began = Instant::now();
    for h in 0..hours {
        // CHANGES a day, spread over the day's hours.
        if (h as usize * changes) / 24 != ((h as usize + 1) * changes) / 24 {
            let who = (next() as usize) % accounts;
            held[who] = (held[who] + 1) % roles.len();
        }
        let snapshot = Snapshot::new(
            instance.clone(),
            start + Duration::hours(h),
            "3.3.2".into(),
            (0..accounts).map(|i| account(i, roles[held[i]])).collect(),
            Vec::new(),
        );
        airlock_engine::history::observe(&store, &snapshot, &format!("snapshot:{h}")).await?;
    }
    let record_secs = began.elapsed().as_secs_f64();
    let (intervals, bytes) = store.access_history_size("prod").await?;
    let mut lat = Vec::new();
    let mut rows = 0;
    for _ in 0..200 {
        let at = start + Duration::seconds((next() % (hours as u64 * 3600)) as i64);
        let t = Instant::now();
        let answer =
            airlock_engine::history::access_at(&store, at, &[], &Filter::default()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        rows += answer.rows.len();
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "backend": if url.starts_with("postgres") { "postgres" } else { "sqlite" },
            "days": days, "accounts": accounts, "changes_per_day": changes,
            "observations": hours,
            "record_ms_per_observation": (record_secs * 1000.0 / hours as f64 * 100.0).round() / 100.0,
            "intervals": intervals, "state_mb": (bytes as f64 / 1e6 * 10.0).round() / 10.0,
            "access_at_p50_ms": (lat[lat.len() / 2] * 10.0).round() / 10.0,
            "access_at_p99_ms": (lat[lat.len() * 99 / 100] * 10.0).round() / 10.0,
            "rows_per_answer": rows / 200,
        })
    );
    Ok(())
}
