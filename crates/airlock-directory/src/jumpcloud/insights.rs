//! JumpCloud Directory Insights: the directory's own event log, read for one thing, when the
//! identity provider suspended or deleted a person (`user_suspended`, `user_delete`), so that
//! airlock can say how long it took to remove their access from every Airflow ("time to
//! deprovision").
//!
//! One documented endpoint: `POST /insights/directory/v1/events` on `https://api.jumpcloud.com`
//! (EU: `https://api.eu.jumpcloud.com`) with the same `x-api-key` (and `x-org-id`) as the
//! directory API, a body `{"service": ["directory"], "start_time", "end_time", "sort": "ASC",
//! "limit", "fields"}`, an array of events in return, and paging by sending the answer's
//! `X-Search_after` header back as `search_after` with the same query. The events are filtered
//! here (`event_type`), not with a search term, so the query stays within what the spec
//! describes plainly.

use super::transport::Transport;
use super::JumpCloudError;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use url::Url;

/// Directory Insights in JumpCloud's default (US) region.
pub const DEFAULT_INSIGHTS_URL: &str = "https://api.jumpcloud.com";
/// The events path under the base URL.
const EVENTS_PATH: &[&str] = &["insights", "directory", "v1", "events"];
/// Events a page (the API's `limit`).
const PAGE: u64 = 1000;
/// The most pages one read follows (a million events): a paging loop always ends.
const MAX_PAGES: usize = 1000;
/// The fields read of each event.
const FIELDS: &[&str] = &["id", "event_type", "timestamp", "resource"];

/// What the identity provider did to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaverKind {
    /// `user_suspended`.
    Suspended,
    /// `user_delete`.
    Deleted,
}

impl LeaverKind {
    /// `suspended` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaverKind::Suspended => "suspended",
            LeaverKind::Deleted => "deleted",
        }
    }
}

/// A person suspended or deleted in JumpCloud, as Directory Insights recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaverEvent {
    /// The event's id.
    pub id: String,
    /// Suspended or deleted.
    pub kind: LeaverKind,
    /// When JumpCloud recorded it.
    pub at: DateTime<Utc>,
    /// The user's JumpCloud id.
    pub user_id: String,
    /// The user's JumpCloud username, when the event carries it.
    pub username: Option<String>,
    /// The user's email, when the event carries it.
    pub email: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    id: Option<String>,
    event_type: Option<String>,
    timestamp: Option<String>,
    resource: Option<RawResource>,
}

#[derive(Deserialize)]
struct RawResource {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    username: Option<String>,
    email: Option<String>,
}

/// How to reach Directory Insights.
#[derive(Debug, Clone)]
pub struct InsightsSettings {
    /// The administrator's API key (the directory's).
    pub api_key: SecretString,
    /// The organisation id, for multi-tenant administrators.
    pub org_id: Option<String>,
    /// `https://api.jumpcloud.com`, or the region's; `http` only on a loopback address.
    pub base_url: Url,
    /// Limit for one request.
    pub timeout: Duration,
    /// Retries of a transient failure.
    pub max_retries: u32,
    /// First backoff delay.
    pub retry_base: Duration,
}

/// A Directory Insights reader.
#[derive(Debug)]
pub struct Insights {
    events_url: Url,
    transport: Transport,
}

impl Insights {
    /// Checks the settings and builds the client; contacts nothing.
    pub fn new(settings: InsightsSettings) -> Result<Insights, JumpCloudError> {
        let base = super::check_base_url(settings.base_url)?;
        let mut events_url = base;
        events_url
            .path_segments_mut()
            .map_err(|()| JumpCloudError::InvalidSettings {
                field: "insights_url",
                reason: "cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .extend(EVENTS_PATH);
        let transport = Transport::new(
            settings.api_key,
            settings.org_id.as_deref(),
            settings.timeout,
            settings.max_retries,
            settings.retry_base,
        )?;
        Ok(Insights {
            events_url,
            transport,
        })
    }

    /// The people suspended or deleted from `start` (inclusive) to `end`, oldest first.
    pub async fn leavers(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<LeaverEvent>, JumpCloudError> {
        let endpoint = format!("POST {}", self.events_url.path());
        let mut query = json!({
            "service": ["directory"],
            "start_time": start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "end_time": end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "sort": "ASC",
            "limit": PAGE,
            "fields": FIELDS,
        });
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let answer = self
                .transport
                .post::<Vec<RawEvent>>(&self.events_url, &query)
                .await?;
            let full = answer.body.len() as u64 >= PAGE;
            out.extend(answer.body.into_iter().filter_map(leaver));
            match answer.search_after {
                Some(next) if full => query["search_after"] = next,
                _ => return Ok(out),
            }
        }
        Err(JumpCloudError::IncompleteRead {
            endpoint,
            reason: format!("more than {MAX_PAGES} pages of events; read a shorter window"),
        })
    }
}

/// A leaver, if the event is one (a user's suspension or deletion with an id and a time).
fn leaver(e: RawEvent) -> Option<LeaverEvent> {
    let kind = match e.event_type.as_deref()? {
        "user_suspended" => LeaverKind::Suspended,
        "user_delete" => LeaverKind::Deleted,
        _ => return None,
    };
    let resource = e.resource?;
    if resource.kind.as_deref().is_some_and(|k| k != "user") {
        return None;
    }
    let at = DateTime::parse_from_rfc3339(e.timestamp.as_deref()?)
        .ok()?
        .with_timezone(&Utc);
    Some(LeaverEvent {
        id: e.id?,
        kind,
        at,
        user_id: resource.id?,
        username: resource.username,
        email: resource.email,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: serde_json::Value) -> RawEvent {
        serde_json::from_value(v).expect("event")
    }

    #[test]
    fn only_user_suspensions_and_deletions_with_an_id_and_a_time_are_leavers() {
        let ok = raw(json!({"id": "e1", "event_type": "user_suspended",
            "timestamp": "2026-12-04T10:00:00.123Z",
            "resource": {"type": "user", "id": "u1", "username": "ann", "email": "ann@example.com"}}));
        let l = leaver(ok).expect("a leaver");
        assert_eq!((l.kind, l.user_id.as_str()), (LeaverKind::Suspended, "u1"));
        assert_eq!(l.at.timestamp_millis() % 1000, 123);
        for other in [
            json!({"id": "e2", "event_type": "user_update", "timestamp": "2026-12-04T10:00:00Z",
                   "resource": {"type": "user", "id": "u1"}}),
            json!({"id": "e3", "event_type": "user_delete", "timestamp": "2026-12-04T10:00:00Z",
                   "resource": {"type": "admin", "id": "a1"}}),
            json!({"id": "e4", "event_type": "user_delete", "timestamp": "yesterday",
                   "resource": {"type": "user", "id": "u1"}}),
            json!({"event_type": "user_delete", "timestamp": "2026-12-04T10:00:00Z",
                   "resource": {"type": "user", "id": "u1"}}),
        ] {
            assert_eq!(leaver(raw(other.clone())), None, "{other}");
        }
    }
}
