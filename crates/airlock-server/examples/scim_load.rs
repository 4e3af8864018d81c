//! Load generator for a SCIM 2.0 endpoint (airlock's or any other), for
//! `benches/bench_scim_throughput.sh`:
//!
//! `cargo run --release -p airlock-server --example scim_load -- BASE_URL TOKEN [USERS] [REQUESTS] [CONCURRENCY]`
//!
//! Creates USERS users (default 1000), then sends REQUESTS filtered GETs
//! (`userName eq "<random existing user>"`) and REQUESTS PATCHes (replace `displayName` of a
//! random user) with CONCURRENCY requests in flight, and prints one JSON line with requests per
//! second and latency percentiles for each, and the time to read every user once, paged by 100
//! (`startIndex`/`count`, one page after the other, as identity providers reconcile). Bounded in
//! count; talks only to BASE_URL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run_phase<F, Fut>(
    requests: usize,
    concurrency: usize,
    make: F,
) -> (f64, Vec<Duration>, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (make, next) = (make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                if !make(i).await {
                    errors += 1;
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("worker");
        all.extend(lat);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    (requests as f64 / secs, all, errors)
}

/// Reads every user once, 100 per page, one page after the other: (seconds, users read, pages).
async fn list_all(http: &reqwest::Client, base: &str, token: &str) -> (f64, usize, usize) {
    let started = Instant::now();
    let (mut start, mut read, mut pages) = (1usize, 0usize, 0usize);
    loop {
        let resp = http
            .get(format!("{base}/Users"))
            .query(&[
                ("startIndex", start.to_string()),
                ("count", "100".to_owned()),
            ])
            .bearer_auth(token)
            .send()
            .await
            .expect("list request");
        assert!(
            resp.status().is_success(),
            "list answered {}",
            resp.status()
        );
        let page: serde_json::Value = resp.json().await.expect("list json");
        let got = page["Resources"].as_array().map_or(0, Vec::len);
        let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
        pages += 1;
        read += got;
        start += got;
        if got == 0 || start > total {
            break;
        }
    }
    (started.elapsed().as_secs_f64(), read, pages)
}

#[tokio::main]
async fn main() {
    let base: String = std::env::args()
        .nth(1)
        .expect("usage: scim_load BASE_URL TOKEN [USERS] [REQUESTS] [CONCURRENCY]");
    let token: String = std::env::args().nth(2).expect("TOKEN");
    let users: usize = arg(3, 1000);
    let requests: usize = arg(4, 2000);
    let concurrency: usize = arg(5, 16);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let run = std::process::id();

    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let name = format!("load-{run}-{i:05}@example.com");
        let resp = http
            .post(format!("{base}/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .json(&serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": name, "name": { "givenName": "Load", "familyName": format!("{i}") },
                "emails": [{ "value": name, "primary": true }]
            }))
            .send()
            .await
            .expect("seed request");
        assert!(
            resp.status().is_success(),
            "seeding answered {}",
            resp.status()
        );
        let v: serde_json::Value = resp.json().await.expect("seed json");
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    let ids = Arc::new(ids);

    let (list_secs, listed, pages) = list_all(&http, &base, &token).await;

    let (h, b, t) = (http.clone(), base.clone(), token.clone());
    let (get_rps, get_lat, get_err) = run_phase(requests, concurrency, move |i| {
        let (h, b, t) = (h.clone(), b.clone(), t.clone());
        async move {
            let user = (i * 7919) % users;
            let filter = format!("userName eq \"load-{run}-{user:05}@example.com\"");
            match h
                .get(format!("{b}/Users"))
                .query(&[("filter", filter)])
                .bearer_auth(&t)
                .send()
                .await
            {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    let (h, b, t, ids2) = (http.clone(), base.clone(), token.clone(), ids.clone());
    let (patch_rps, patch_lat, patch_err) = run_phase(requests, concurrency, move |i| {
        let (h, b, t, ids) = (h.clone(), b.clone(), t.clone(), ids2.clone());
        async move {
            let id = &ids[(i * 104_729) % ids.len()];
            let body = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": "displayName", "value": format!("v{i}") }]
            });
            match h
                .patch(format!("{b}/Users/{id}"))
                .bearer_auth(&t)
                .header("content-type", "application/scim+json")
                .json(&body)
                .send()
                .await
            {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    println!(
        "{}",
        serde_json::json!({
            "users": users, "requests": requests, "concurrency": concurrency,
            "filtered_get": { "rps": get_rps.round(), "p50_ms": pct(&get_lat, 0.5), "p99_ms": pct(&get_lat, 0.99), "errors": get_err },
            "patch": { "rps": patch_rps.round(), "p50_ms": pct(&patch_lat, 0.5), "p99_ms": pct(&patch_lat, 0.99), "errors": patch_err },
            "list_all_by_100": { "secs": (list_secs * 1000.0).round() / 1000.0, "users": listed, "pages": pages },
        })
    );
}
