//! [`SyslogTcp`]: every event as an RFC 5424 message (`airlock_audit::syslog`), framed by
//! octet counting (RFC 6587 §3.4.1: `LEN SP MSG`), a page of events written and flushed
//! together; the cursor moves past the page once the write completed. A broken connection is
//! dropped and the page sent again on a new one (at least once: a collector may see a message
//! twice, with the same `id`), and a connection the collector closed (a restart) is noticed
//! before a page is written into it. Plain TCP has no application acknowledgement: a collector
//! that accepted bytes and then crashed before writing them loses them (RELP or HEC acks are
//! the remedy: the `splunk_hec` sink has them, RELP is not in yet).

use crate::deliver::{Outlet, Sent};
use crate::webhook::SendError;
use airlock_audit::AuditEvent;
use airlock_config::{SinkConfig, SyslogSink};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Syslog over TCP with octet counting.
pub struct SyslogTcp {
    cfg: SinkConfig,
    address: String,
    cursor: String,
    hostname: String,
    /// Frames written since the last flush.
    pending: Mutex<Vec<u8>>,
    conn: tokio::sync::Mutex<Option<TcpStream>>,
}

/// `LEN SP MSG` (RFC 6587 §3.4.1).
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

/// Whether the collector has not closed `stream` (it never sends anything, so readable means
/// closed or reset).
fn open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

impl SyslogTcp {
    /// A sink for `cfg`; `default_hostname` names this machine when the config does not.
    pub fn new(cfg: SinkConfig, syslog: &SyslogSink, default_hostname: &str) -> SyslogTcp {
        SyslogTcp {
            cursor: super::cursor_of(&cfg.name),
            address: syslog.address.clone(),
            hostname: syslog
                .hostname
                .clone()
                .unwrap_or_else(|| default_hostname.to_owned()),
            cfg,
            pending: Mutex::new(Vec::new()),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    fn take_pending(&self) -> Vec<u8> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    async fn write(&self, bytes: &[u8]) -> Result<(), SendError> {
        let mut conn = self.conn.lock().await;
        // A collector that closed the connection (a restart) is noticed before writing: a
        // write into a connection the peer closed succeeds locally and is lost.
        if conn.as_ref().is_some_and(|c| !open(c)) {
            *conn = None;
        }
        if conn.is_none() {
            let stream = tokio::time::timeout(self.cfg.timeout, TcpStream::connect(&self.address))
                .await
                .map_err(|_| {
                    SendError::Transport(format!("connecting to {} timed out", self.address))
                })?
                .map_err(|e| {
                    SendError::Transport(format!("cannot connect to {}: {e}", self.address))
                })?;
            let _ = stream.set_nodelay(true);
            *conn = Some(stream);
        }
        let Some(stream) = conn.as_mut() else {
            return Err(SendError::Transport("no connection".into()));
        };
        let written = tokio::time::timeout(self.cfg.timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *conn = None;
                Err(SendError::Transport(format!(
                    "writing to {}: {e}",
                    self.address
                )))
            }
            Err(_) => {
                *conn = None;
                Err(SendError::Transport(format!(
                    "writing to {} timed out",
                    self.address
                )))
            }
        }
    }
}

impl Outlet for SyslogTcp {
    fn cursor(&self) -> &str {
        &self.cursor
    }

    fn lease(&self) -> String {
        self.cursor.clone()
    }

    fn send<'a>(
        &'a self,
        event: &'a AuditEvent,
        _now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let message = airlock_audit::syslog::encode(event, &self.hostname);
            self.pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(frame(&message));
            Ok(Sent::Buffered("event"))
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let bytes = self.take_pending();
            if bytes.is_empty() {
                return Ok(());
            }
            self.write(&bytes).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_count_octets_not_characters() {
        assert_eq!(frame("<85>1 é"), b"8 <85>1 \xc3\xa9".to_vec());
    }
}
