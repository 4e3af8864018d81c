//! One POST of one notice: the body in the webhook's format, `X-Airlock-Delivery` (the
//! notice's id: a receiver drops what it already has), `X-Airlock-Event` (its kind), and with a
//! signing secret `X-Airlock-Timestamp` and `X-Airlock-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of `"<timestamp>.<body>"`. No redirects are followed (the URL is a credential and
//! the body goes nowhere else); errors never hold the URL.

use crate::deliver::{Outlet, Sent};
use crate::notice::{from_event, json_body, slack_body, Notice};
use airlock_audit::AuditEvent;
use airlock_config::{WebhookConfig, WebhookFormat};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use sha2::Sha256;

/// Why an outlet did not deliver (a POST, a syslog write, a file write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The receiver could not be reached, or did not answer in time.
    #[error("the receiver could not be reached: {0}")]
    Transport(String),
    /// The receiver answered, but not with 2xx.
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    /// The receiver answered, not with 2xx, and said why (e.g. a Splunk HEC status code);
    /// `reason` is airlock's wording of it, never the receiver's text or a credential.
    #[error("the receiver answered HTTP {status}: {reason}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// What it means.
        reason: String,
    },
    /// The receiver answered something that does not acknowledge the events (a malformed
    /// body, an acknowledgement that never came).
    #[error("the receiver did not acknowledge: {0}")]
    Unacknowledged(String),
    /// The outlet cannot be set up (a CA file that does not parse, a file that cannot be
    /// opened).
    #[error("{0}")]
    Setup(String),
    /// A file sink's file could not be opened, written, synced or rotated.
    #[error("cannot {action} {}: {reason}", path.display())]
    FileFailed {
        /// What was being done (`open`, `write to`, `sync`, `rotate`).
        action: &'static str,
        /// The file (or directory) involved.
        path: std::path::PathBuf,
        /// The operating system's reason.
        reason: String,
    },
}

/// The HMAC-SHA256 signature header value of `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A webhook, ready to post.
pub struct Webhook {
    cfg: WebhookConfig,
    http: reqwest::Client,
}

impl Webhook {
    /// A sender for `cfg`.
    pub fn new(cfg: WebhookConfig) -> Result<Webhook, SendError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::Transport(e.without_url().to_string()))?;
        Ok(Webhook { cfg, http })
    }

    /// Its configuration.
    pub fn config(&self) -> &WebhookConfig {
        &self.cfg
    }

    /// The body of `n` in this webhook's format.
    pub fn body(&self, n: &Notice) -> Vec<u8> {
        let value = match self.cfg.format {
            WebhookFormat::Json => json_body(n),
            WebhookFormat::Slack => slack_body(n),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// Posts `n`; `Ok` only on a 2xx answer.
    pub async fn send(&self, n: &Notice, now: DateTime<Utc>) -> Result<(), SendError> {
        let body = self.body(n);
        let mut req = self
            .http
            .post(self.cfg.url.expose_secret())
            .header("content-type", "application/json")
            .header("x-airlock-delivery", &n.id)
            .header("x-airlock-event", n.kind);
        if let Some(secret) = &self.cfg.signing_secret {
            let ts = now.timestamp();
            req = req.header("x-airlock-timestamp", ts.to_string()).header(
                "x-airlock-signature",
                signature(secret.expose_secret().as_bytes(), ts, &body),
            );
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }
}

/// A webhook is an outlet of the notices the audit trail makes, under the lease
/// `notify:<name>`, each acknowledged by its 2xx.
impl Outlet for Webhook {
    fn cursor(&self) -> &str {
        &self.cfg.name
    }

    fn lease(&self) -> String {
        format!("notify:{}", self.cfg.name)
    }

    fn send<'a>(
        &'a self,
        event: &'a AuditEvent,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            match from_event(event).filter(|n| self.cfg.events.contains(n.kind)) {
                None => Ok(Sent::Nothing),
                Some(n) => {
                    Webhook::send(self, &n, now).await?;
                    Ok(Sent::Acked(n.kind))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_and_the_body() {
        // Computed independently: python3 -c 'import hmac, hashlib;
        // print(hmac.new(b"0123456789abcdef", b"1700000000.{}", hashlib.sha256).hexdigest())'
        let sig = signature(b"0123456789abcdef", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "sha256=e4f8e2ecae2295b2ddb2f0b5584c8275e226c0ebe9b3b819e70156bb67122e3e"
        );
        assert_ne!(sig, signature(b"0123456789abcdef", 1_700_000_001, b"{}"));
        assert_ne!(sig, signature(b"0123456789abcdeF", 1_700_000_000, b"{}"));
    }
}
