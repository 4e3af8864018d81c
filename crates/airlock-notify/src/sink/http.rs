//! [`WebhookSink`] (`kind = "webhook"`): the trail POSTed to any HTTP receiver as JSON arrays
//! of at most `batch_events` audit events' objects (OCSF, or jsonl objects), `Content-Type:
//! application/json`, with `X-Airlock-Delivery: <first id>..<last id>` (the audit ids of the
//! batch: a receiver that already has them drops them), `X-Airlock-Event: audit`, and with a
//! signing secret `X-Airlock-Timestamp` and `X-Airlock-Signature: sha256=<hex>` exactly as the
//! notification webhooks sign ([`crate::webhook::signature`]). A 2xx acknowledges the batch;
//! anything else stops the flush, and the delivery loop sends the page again from its cursor
//! (same ids). `send` only buffers; `flush` posts. The URL is a secret: no error or log holds
//! it, and no redirect is followed.

use super::batch::{self, Encoded, Pending};
use crate::deliver::{Outlet, Sent};
use crate::webhook::{signature, SendError};
use airlock_audit::AuditEvent;
use airlock_config::{HttpSink, SinkConfig};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use secrecy::ExposeSecret as _;

/// A generic HTTP receiver of batches.
pub struct WebhookSink {
    cursor: String,
    sink: HttpSink,
    http: reqwest::Client,
    pending: Pending,
}

/// The JSON array of the objects of `events`.
pub fn body(events: &[Encoded]) -> Vec<u8> {
    let mut out = vec![b'['];
    let mut first = true;
    for object in events.iter().flat_map(|e| &e.objects) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(object.as_bytes());
    }
    out.push(b']');
    out
}

impl WebhookSink {
    /// A sink for `cfg`. Fails when the CA file cannot be read.
    pub fn new(cfg: &SinkConfig, sink: &HttpSink) -> Result<WebhookSink, SendError> {
        Ok(WebhookSink {
            cursor: super::cursor_of(&cfg.name),
            http: batch::client(cfg.timeout, sink.ca_file.as_deref())?,
            sink: sink.clone(),
            pending: Pending::default(),
        })
    }

    async fn post(&self, events: &[Encoded], now: DateTime<Utc>) -> Result<(), SendError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let body = body(events);
        let mut req = self
            .http
            .post(self.sink.url.expose_secret())
            .header("content-type", "application/json")
            .header("x-airlock-delivery", format!("{}..{}", first.id, last.id))
            .header("x-airlock-event", "audit");
        if let Some(secret) = &self.sink.signing_secret {
            let ts = now.timestamp();
            req = req.header("x-airlock-timestamp", ts.to_string()).header(
                "x-airlock-signature",
                signature(secret.expose_secret().as_bytes(), ts, &body),
            );
        }
        let resp = req.body(body).send().await.map_err(batch::transport)?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }

    async fn flush_all(&self) -> Result<(), SendError> {
        let (events, now) = self.pending.take();
        let now = now.unwrap_or_else(Utc::now);
        let per_request = usize::try_from(self.sink.batch_events.max(1)).unwrap_or(100);
        for chunk in events.chunks(per_request) {
            self.post(chunk, now).await?;
        }
        Ok(())
    }
}

impl Outlet for WebhookSink {
    fn cursor(&self) -> &str {
        &self.cursor
    }

    fn send<'a>(
        &'a self,
        event: &'a AuditEvent,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            self.pending
                .push(Encoded::new(event, self.sink.format), now);
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

    #[test]
    fn a_batch_is_one_json_array_of_every_object() {
        let e = |id: &str, objects: &[&str]| Encoded {
            seq: 1,
            id: id.into(),
            at: Utc::now(),
            objects: objects.iter().map(|s| (*s).to_owned()).collect(),
        };
        let b = body(&[
            e("a", &[r#"{"x":1}"#, r#"{"x":2}"#]),
            e("b", &[r#"{"x":3}"#]),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v, serde_json::json!([{"x":1},{"x":2},{"x":3}]));
        assert_eq!(body(&[]), b"[]");
    }
}
