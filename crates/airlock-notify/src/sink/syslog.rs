//! [`Syslog`]: every event as an RFC 5424 message (`airlock_audit::syslog`), framed by octet
//! counting (RFC 6587 §3.4.1: `LEN SP MSG`) over TCP, or over TLS (RFC 5425, the same framing),
//! a page of events written and flushed together; the cursor moves past the page once the
//! write completed. A broken connection is dropped and the page sent again on a new one (at
//! least once: a collector may see a message twice, with the same `id`), and a connection the
//! collector closed (a restart) is noticed before a page is written into it: over TCP its FIN
//! is readable, over TLS its `close_notify` or FIN (the collector never sends data, so
//! anything readable is read through the TLS layer, never from under it). A failed TLS
//! handshake (a certificate signed by a CA not trusted, or not valid for `server_name`) is a
//! transport error like a refused connection: retried, nothing skipped. Neither TCP nor TLS
//! has an application acknowledgement: a collector that accepted bytes and then crashed before
//! writing them loses them (RELP or HEC acks are the remedy: the `splunk_hec` sink has them, RELP is not in yet). UDP is
//! [`super::udp`].

use super::tls;
use crate::deliver::{Outlet, Sent};
use crate::webhook::SendError;
use airlock_audit::AuditEvent;
use airlock_config::{SinkConfig, SyslogSink, SyslogTransport};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// Syslog over TCP or TLS with octet counting.
pub struct Syslog {
    cfg: SinkConfig,
    address: String,
    cursor: String,
    hostname: String,
    /// `None`: plain TCP.
    tls: Option<Tls>,
    /// Frames written since the last flush.
    pending: Mutex<Vec<u8>>,
    conn: tokio::sync::Mutex<Option<Stream>>,
}

/// The name this outlet had when it spoke TCP only.
pub type SyslogTcp = Syslog;

struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    /// As configured, for messages.
    server_name: String,
}

/// A connection to the collector.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the collector has not closed it. It never sends anything, so readable means
    /// closed or reset; through TLS a record that is not application data (a session ticket)
    /// is consumed by rustls and reading goes on until it would block.
    fn open(&mut self) -> bool {
        match self {
            Stream::Tcp(s) => {
                let mut byte = [0u8; 1];
                match s.try_read(&mut byte) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                }
            }
            Stream::Tls(s) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                let waker = futures::task::noop_waker();
                let mut cx = std::task::Context::from_waker(&waker);
                match Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf) {
                    Poll::Pending => true,
                    Poll::Ready(Ok(())) => !buf.filled().is_empty(),
                    Poll::Ready(Err(_)) => false,
                }
            }
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

/// `LEN SP MSG` (RFC 6587 §3.4.1).
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

impl Syslog {
    /// A sink for `cfg`; `default_hostname` names this machine when the config does not.
    /// Fails when the TLS settings cannot be used (a `ca_file` without certificates, a
    /// `server_name` that is no name); `syslog.transport` must be TCP or TLS.
    pub fn new(
        cfg: SinkConfig,
        syslog: &SyslogSink,
        default_hostname: &str,
    ) -> Result<Syslog, SendError> {
        let tls = match &syslog.transport {
            SyslogTransport::Tcp => None,
            SyslogTransport::Tls {
                ca_file,
                server_name,
            } => {
                let (connector, name) = tls::connector(ca_file.as_deref(), server_name)?;
                Some(Tls {
                    connector,
                    name,
                    server_name: server_name.clone(),
                })
            }
            SyslogTransport::Udp => {
                return Err(SendError::Setup(
                    "syslog over udp is a datagram outlet, not a stream".into(),
                ))
            }
        };
        Ok(Syslog {
            cursor: super::cursor_of(&cfg.name),
            address: syslog.address.clone(),
            hostname: syslog
                .hostname
                .clone()
                .unwrap_or_else(|| default_hostname.to_owned()),
            tls,
            cfg,
            pending: Mutex::new(Vec::new()),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    fn take_pending(&self) -> Vec<u8> {
        std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// A new connection, TLS handshake included, within the timeout.
    async fn connect(&self) -> Result<Stream, SendError> {
        let timed_out =
            |what: &str| SendError::Transport(format!("{what} {} timed out", self.address));
        let tcp = tokio::time::timeout(self.cfg.timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| timed_out("connecting to"))?
            .map_err(|e| {
                SendError::Transport(format!("cannot connect to {}: {e}", self.address))
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Stream::Tcp(tcp));
        };
        let stream = tokio::time::timeout(
            self.cfg.timeout,
            tls.connector.connect(tls.name.clone(), tcp),
        )
        .await
        .map_err(|_| timed_out("the tls handshake with"))?
        .map_err(|e| tls::handshake_failed(&self.address, &tls.server_name, &e))?;
        Ok(Stream::Tls(Box::new(stream)))
    }

    async fn write(&self, bytes: &[u8]) -> Result<(), SendError> {
        let mut conn = self.conn.lock().await;
        // A collector that closed the connection (a restart) is noticed before writing: a
        // write into a connection the peer closed succeeds locally and is lost.
        if conn.as_mut().is_some_and(|c| !c.open()) {
            *conn = None;
        }
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let Some(stream) = conn.as_mut() else {
            return Err(SendError::Transport("no connection".into()));
        };
        let written = tokio::time::timeout(self.cfg.timeout, stream.write_all(bytes)).await;
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

impl Outlet for Syslog {
    fn cursor(&self) -> &str {
        &self.cursor
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
