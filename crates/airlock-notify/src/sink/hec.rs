//! [`SplunkHec`]: the trail to Splunk's HTTP Event Collector, as its JSON event protocol
//! describes (<https://help.splunk.com/en/splunk-enterprise/get-data-in/collect-http-event-data/format-events-for-http-event-collector>):
//!
//! `POST <url>/services/collector/event` with `Authorization: Splunk <token>` and
//! `X-Splunk-Request-Channel: <channel>`; the body is one JSON envelope per OCSF event (or per
//! jsonl line), concatenated: `{"time": <epoch seconds.millis>, "host", "source",
//! "sourcetype", "index" (when set), "event": <the object>}`, at most `batch_events` audit
//! events per request. `send` only buffers; `flush` (at the end of each page the delivery loop
//! reads) posts.
//!
//! With `ack = true` (indexer acknowledgement,
//! <https://help.splunk.com/splunk-enterprise/get-data-in/collect-http-event-data/about-http-event-collector-indexer-acknowledgment>)
//! each answer `{"text":"Success","code":0,"ackId":N}` is then confirmed by polling
//! `POST <url>/services/collector/ack` on the same channel with `{"acks":[N,...]}` until every
//! id answers `true`; only then does the flush succeed and the delivery loop move its cursor.
//! Not all acknowledged within `ack_timeout` is [`SendError::Unacknowledged`]: the loop sends
//! the page again (at least once; every OCSF event carries the audit event's id as
//! `metadata.uid`, every jsonl object as `id`, so Splunk searches can drop duplicates). With
//! `ack = false` a 200 with code 0 is the acknowledgement (Splunk then only promises it parsed
//! the events).
//!
//! Errors name the HEC status code in airlock's words (the collector's text is never
//! echoed), and never hold the token or the URL. No redirects are followed.

use super::batch::{self, Encoded, Pending};
use crate::deliver::{Outlet, Sent};
use crate::webhook::SendError;
use airlock_audit::AuditEvent;
use airlock_config::{HecSink, SinkConfig};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The header that names the channel of a request (indexer acknowledgement needs one).
pub const CHANNEL_HEADER: &str = "x-splunk-request-channel";
/// The first pause between two acknowledgement queries; it doubles up to [`MAX_ACK_PAUSE`].
const FIRST_ACK_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause between two acknowledgement queries.
const MAX_ACK_PAUSE: Duration = Duration::from_secs(1);

/// The HEC status codes (Splunk's table in "Troubleshoot HTTP Event Collector"), in airlock's
/// words, with what to do where the sender can do something.
pub fn status_code(code: i64) -> Option<&'static str> {
    Some(match code {
        0 => "success",
        1 => "token disabled (enable the HEC token in Splunk)",
        2 => "token is required",
        3 => "invalid authorization",
        4 => "invalid token (check the sink's token)",
        5 => "no data",
        6 => "invalid data format",
        7 => "incorrect index (the token does not allow the sink's index)",
        8 => "internal server error",
        9 => "server is busy",
        10 => "data channel is missing",
        11 => "invalid data channel",
        12 => "event field is required",
        13 => "event field cannot be blank",
        14 => "ACK is disabled (enable indexer acknowledgement on the token, or set ack = false)",
        15 => "error in handling indexed fields",
        16 => "query string authorization is not enabled",
        17 => "HEC is healthy",
        18 => "HEC is unhealthy, queues are full",
        19 => "HEC is unhealthy, ack service unavailable",
        20 => "HEC is unhealthy, queues are full, ack service unavailable",
        _ => return None,
    })
}

/// An answer of `/services/collector/event`.
#[derive(Debug, Deserialize)]
struct EventAnswer {
    code: Option<i64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

/// An answer of `/services/collector/ack`.
#[derive(Debug, Deserialize)]
struct AckAnswer {
    acks: BTreeMap<String, bool>,
}

/// Splunk HTTP Event Collector.
pub struct SplunkHec {
    cursor: String,
    hec: HecSink,
    host: String,
    event_url: String,
    ack_url: String,
    auth: HeaderValue,
    http: reqwest::Client,
    pending: Pending,
}

impl SplunkHec {
    /// A sink for `cfg`; `hostname` is the events' `host`. Fails when the CA file cannot be
    /// read or the token cannot be a header.
    pub fn new(cfg: &SinkConfig, hec: &HecSink, hostname: &str) -> Result<SplunkHec, SendError> {
        let base = hec.url.as_str().trim_end_matches('/');
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", hec.token.expose_secret()))
            .map_err(|_| SendError::Setup("the HEC token cannot be sent in a header".into()))?;
        auth.set_sensitive(true);
        Ok(SplunkHec {
            cursor: super::cursor_of(&cfg.name),
            event_url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack"),
            auth,
            http: batch::client(cfg.timeout, hec.ca_file.as_deref())?,
            host: hostname.to_owned(),
            hec: hec.clone(),
            pending: Pending::default(),
        })
    }

    /// The body of one request: an envelope per object of each event, concatenated.
    pub fn body(&self, events: &[Encoded]) -> Vec<u8> {
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut meta = format!(
            ",\"host\":{},\"source\":{},\"sourcetype\":{}",
            quoted(&self.host),
            quoted(&self.hec.source),
            quoted(&self.hec.sourcetype)
        );
        if let Some(index) = &self.hec.index {
            meta.push_str(&format!(",\"index\":{}", quoted(index)));
        }
        let mut out = Vec::new();
        for e in events {
            // Whole milliseconds: the nearest double prints as `seconds.mmm` (or shorter).
            let time = serde_json::Number::from_f64(e.at.timestamp_millis() as f64 / 1000.0)
                .map_or_else(|| e.at.timestamp().to_string(), |n| n.to_string());
            for object in &e.objects {
                out.extend_from_slice(b"{\"time\":");
                out.extend_from_slice(time.as_bytes());
                out.extend_from_slice(meta.as_bytes());
                out.extend_from_slice(b",\"event\":");
                out.extend_from_slice(object.as_bytes());
                out.extend_from_slice(b"}");
            }
        }
        out
    }

    fn request(&self, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL_HEADER, &self.hec.channel)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// Posts one batch; its `ackId` when the collector gave one.
    async fn post(&self, body: Vec<u8>) -> Result<Option<u64>, SendError> {
        let resp = self
            .request(&self.event_url, body)
            .send()
            .await
            .map_err(batch::transport)?;
        let status = resp.status().as_u16();
        let text = resp.bytes().await.map_err(batch::transport)?;
        let answer = serde_json::from_slice::<EventAnswer>(&text).ok();
        let code = answer.as_ref().and_then(|a| a.code);
        if !(200..300).contains(&status) {
            return Err(rejected(status, code));
        }
        match (answer, code) {
            (Some(a), Some(0)) => {
                if self.hec.ack && a.ack_id.is_none() {
                    return Err(SendError::Unacknowledged(
                        "the collector gave no ackId: indexer acknowledgement is not enabled \
                         for the token (enable it, or set ack = false)"
                            .into(),
                    ));
                }
                Ok(a.ack_id)
            }
            (Some(_), Some(code)) => Err(SendError::Unacknowledged(describe(code))),
            _ => Err(SendError::Unacknowledged(format!(
                "HTTP {status} without a HEC answer"
            ))),
        }
    }

    /// Queries `waiting` until all are acknowledged, or `ack_timeout` has passed.
    async fn await_acks(&self, mut waiting: BTreeSet<u64>) -> Result<(), SendError> {
        let asked = waiting.len();
        let deadline = tokio::time::Instant::now() + self.hec.ack_timeout;
        let mut pause = FIRST_ACK_PAUSE;
        while !waiting.is_empty() {
            let body =
                serde_json::to_vec(&serde_json::json!({ "acks": waiting })).unwrap_or_default();
            let resp = self
                .request(&self.ack_url, body)
                .send()
                .await
                .map_err(batch::transport)?;
            let status = resp.status().as_u16();
            let text = resp.bytes().await.map_err(batch::transport)?;
            if !(200..300).contains(&status) {
                let code = serde_json::from_slice::<EventAnswer>(&text)
                    .ok()
                    .and_then(|a| a.code);
                return Err(rejected(status, code));
            }
            let answer = serde_json::from_slice::<AckAnswer>(&text).map_err(|_| {
                SendError::Unacknowledged(format!(
                    "HTTP {status} without an acknowledgement answer"
                ))
            })?;
            // Splunk forgets an id once it answered true for it: only the others are asked
            // again.
            for (id, done) in answer.acks {
                if let (true, Ok(id)) = (done, id.parse::<u64>()) {
                    waiting.remove(&id);
                }
            }
            if waiting.is_empty() {
                break;
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(SendError::Unacknowledged(format!(
                    "{} of {asked} requests not acknowledged by the indexers within {} s; \
                     they will be sent again",
                    waiting.len(),
                    self.hec.ack_timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_ACK_PAUSE);
        }
        Ok(())
    }

    async fn flush_all(&self) -> Result<(), SendError> {
        let (events, _) = self.pending.take();
        let per_request = usize::try_from(self.hec.batch_events.max(1)).unwrap_or(100);
        let mut ack_ids = BTreeSet::new();
        let mut last = None;
        for chunk in events.chunks(per_request) {
            let Some(id) = self.post(self.body(chunk)).await? else {
                continue;
            };
            // ackIds grow per channel: one that goes back means the collector restarted and
            // forgot the earlier ones, which are then not to be trusted.
            if last.is_some_and(|l| id <= l) {
                return Err(SendError::Unacknowledged(
                    "the collector's ackIds went back (did it restart?); sending again".into(),
                ));
            }
            last = Some(id);
            ack_ids.insert(id);
        }
        if self.hec.ack && !ack_ids.is_empty() {
            self.await_acks(ack_ids).await?;
        }
        Ok(())
    }
}

fn describe(code: i64) -> String {
    match status_code(code) {
        Some(what) => format!("HEC code {code}, {what}"),
        None => format!("HEC code {code}"),
    }
}

fn rejected(status: u16, code: Option<i64>) -> SendError {
    match code {
        Some(code) => SendError::Rejected {
            status,
            reason: describe(code),
        },
        None => SendError::Status(status),
    }
}

impl Outlet for SplunkHec {
    fn cursor(&self) -> &str {
        &self.cursor
    }

    fn send<'a>(
        &'a self,
        event: &'a AuditEvent,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            self.pending.push(Encoded::new(event, self.hec.format), now);
            Ok(Sent::Buffered("event"))
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(self.flush_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_audit::Format;

    fn sink(index: Option<&str>) -> SplunkHec {
        let hec = HecSink {
            url: url::Url::parse("https://splunk.example.com:8088/").expect("url"),
            token: "t0ken-s3cret".to_owned().into(),
            format: Format::Ocsf,
            index: index.map(str::to_owned),
            source: "airlock".into(),
            sourcetype: "ocsf:airlock".into(),
            ack: true,
            channel: "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba".into(),
            ack_timeout: Duration::from_secs(5),
            batch_events: 100,
            ca_file: None,
        };
        let cfg = SinkConfig {
            name: "splunk".into(),
            kind: airlock_config::SinkKind::SplunkHec(hec.clone()),
            timeout: Duration::from_secs(5),
            max_backlog: 10,
        };
        SplunkHec::new(&cfg, &hec, "gov \"1\"").expect("sink")
    }

    fn encoded(objects: &[&str]) -> Encoded {
        Encoded {
            seq: 1,
            id: "e1".into(),
            at: DateTime::parse_from_rfc3339("2024-07-03T09:46:40.123Z")
                .expect("time")
                .with_timezone(&Utc),
            objects: objects.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn each_object_gets_an_envelope_with_the_time_in_seconds_and_milliseconds() {
        let s = sink(Some("audit"));
        let body = s.body(&[encoded(&[r#"{"a":1}"#, r#"{"b":2}"#])]);
        let text = String::from_utf8(body).expect("utf8");
        let envelopes: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("concatenated JSON");
        assert_eq!(envelopes.len(), 2);
        assert!(text.starts_with(r#"{"time":1720000000.123,"host":"gov \"1\"","#));
        assert_eq!(envelopes[0]["index"], "audit");
        assert_eq!(envelopes[0]["sourcetype"], "ocsf:airlock");
        assert_eq!(envelopes[1]["event"]["b"], 2);
        let no_index = String::from_utf8(sink(None).body(&[encoded(&["{}"])])).expect("utf8");
        assert!(!no_index.contains("index"), "{no_index}");
    }

    #[test]
    fn the_urls_follow_the_base_and_the_token_is_a_sensitive_header() {
        let s = sink(None);
        assert_eq!(
            s.event_url,
            "https://splunk.example.com:8088/services/collector/event"
        );
        assert!(s.auth.is_sensitive());
        assert_eq!(
            describe(4),
            "HEC code 4, invalid token (check the sink's token)"
        );
    }
}
