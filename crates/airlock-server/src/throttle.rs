//! Throttling of failed SCIM authentication, per peer address: after `limit` failures (401)
//! within `window`, the address is answered 429 with `Retry-After` for `window`, without its
//! token being looked at. Requests that authenticate never count. Time comes from the injected
//! clock; the table holds at most [`MAX_TRACKED`] addresses (when full, addresses that are not
//! blocked make room, oldest first).
//!
//! The decision ([`AuthThrottle::blocked`], [`AuthThrottle::failed`]) is plain code tested with a
//! fixed clock; [`throttle_auth`] is the middleware that applies it.

use airlock_core::Clock;
use airlock_scim::ScimError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The most peer addresses tracked at once.
pub const MAX_TRACKED: usize = 10_000;

/// How many failures, within how long, block an address (and for how long: the window).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failures that block an address.
    pub limit: u32,
    /// The window they are counted in, and how long the block lasts.
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            limit: 10,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When the first failure of the current window happened (unix ms).
    since_ms: i64,
    failures: u32,
    blocked_until_ms: Option<i64>,
}

/// The failed-authentication table.
pub struct AuthThrottle {
    config: ThrottleConfig,
    clock: Arc<dyn Clock>,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl AuthThrottle {
    /// An empty table.
    pub fn new(config: ThrottleConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.config.window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Seconds until `ip` may try again, while it is blocked.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let now = self.clock.now().timestamp_millis();
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let until = table.get(&ip)?.blocked_until_ms.filter(|&t| t > now)?;
        Some(
            u64::try_from((until - now + 999) / 1000)
                .unwrap_or(1)
                .max(1),
        )
    }

    /// Records a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = self.clock.now().timestamp_millis();
        let window = self.window_ms();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.contains_key(&ip) && table.len() >= MAX_TRACKED {
            make_room(&mut table, now, window);
            if table.len() >= MAX_TRACKED {
                return; // every tracked address is blocked: they stay blocked
            }
        }
        let entry = table.entry(ip).or_insert(Entry {
            since_ms: now,
            failures: 0,
            blocked_until_ms: None,
        });
        if entry.blocked_until_ms.is_some_and(|t| t <= now) || now - entry.since_ms >= window {
            *entry = Entry {
                since_ms: now,
                failures: 0,
                blocked_until_ms: None,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.config.limit && entry.blocked_until_ms.is_none() {
            entry.blocked_until_ms = Some(now.saturating_add(window));
            tracing::warn!(peer = %ip, failures = entry.failures, "scim authentication failures from one address; refusing it for a while");
        }
    }

    /// How many addresses the table holds.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Drops expired entries; if the table is still full, the oldest unblocked one.
fn make_room(table: &mut HashMap<IpAddr, Entry>, now: i64, window: i64) {
    table.retain(|_, e| match e.blocked_until_ms {
        Some(until) => until > now,
        None => now - e.since_ms < window,
    });
    if table.len() >= MAX_TRACKED {
        let oldest = table
            .iter()
            .filter(|(_, e)| e.blocked_until_ms.is_none())
            .min_by_key(|(_, e)| e.since_ms)
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            table.remove(&ip);
        }
    }
}

/// Answers 429 to a blocked peer before anything else runs, and counts the 401s of the others.
pub(crate) async fn throttle_auth(
    State(throttle): State<Arc<AuthThrottle>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let Some(ip) = peer else {
        return next.run(request).await;
    };
    if let Some(retry_after) = throttle.blocked(ip) {
        return too_many(retry_after, request.uri().path());
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        throttle.failed(ip);
    }
    response
}

/// 429 in the surface's own error format: a SCIM error body, or an RFC 7807 problem for the
/// governance API.
fn too_many(retry_after: u64, path: &str) -> Response {
    const WHY: &str = "too many failed authentications from this address; retry later";
    let (content_type, body) = if path.starts_with(airlock_api::API_BASE_PATH) {
        let problem = serde_json::json!({
            "type": "https://airlock.invalid/problems/too-many-failed-authentications",
            "title": "Too many failed authentications",
            "status": 429,
            "detail": WHY,
        });
        (airlock_api::problem::PROBLEM_JSON, problem.to_string())
    } else {
        let body = ScimError::new(429, None, WHY).to_json().to_string();
        (crate::scim::SCIM_CONTENT_TYPE, body)
    };
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_core::FixedClock;

    fn throttle(limit: u32) -> (AuthThrottle, Arc<FixedClock>) {
        let clock = Arc::new(FixedClock::new(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("in range"),
        ));
        let config = ThrottleConfig {
            limit,
            window: Duration::from_secs(60),
        };
        (AuthThrottle::new(config, clock.clone()), clock)
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn an_address_is_blocked_after_the_limit_for_the_window_then_free() {
        let (t, clock) = throttle(3);
        t.failed(ip(1));
        t.failed(ip(1));
        assert_eq!(t.blocked(ip(1)), None);
        t.failed(ip(1));
        assert_eq!(t.blocked(ip(1)), Some(60));
        assert_eq!(t.blocked(ip(2)), None, "other addresses are not affected");
        clock.advance(chrono::Duration::seconds(59));
        assert_eq!(t.blocked(ip(1)), Some(1));
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(t.blocked(ip(1)), None);
        t.failed(ip(1));
        assert_eq!(t.blocked(ip(1)), None, "a fresh window after the block");
    }

    #[test]
    fn failures_spread_over_more_than_the_window_never_block() {
        let (t, clock) = throttle(3);
        for _ in 0..10 {
            t.failed(ip(1));
            t.failed(ip(1));
            clock.advance(chrono::Duration::seconds(61));
        }
        assert_eq!(t.blocked(ip(1)), None);
    }

    #[test]
    fn the_table_never_holds_more_than_its_cap_and_blocked_addresses_stay_blocked() {
        let (t, _clock) = throttle(1);
        t.failed(ip(0));
        let (t2, _c2) = throttle(2);
        for n in 0..(MAX_TRACKED as u32 + 500) {
            t.failed(ip(n));
            t2.failed(ip(n));
        }
        assert!(t.tracked() <= MAX_TRACKED);
        assert!(t2.tracked() <= MAX_TRACKED);
        assert!(
            t.blocked(ip(0)).is_some(),
            "a full table does not free a blocked address"
        );
    }
}
