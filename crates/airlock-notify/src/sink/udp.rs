//! [`SyslogUdp`]: every event as one RFC 5424 message in one UDP datagram (RFC 5426), no
//! framing, for collectors that only listen on UDP. **Lossy by nature**: UDP has no
//! acknowledgement, so the cursor moves past a page once every datagram of it was handed to
//! the kernel (`send` returned), whether or not the collector was there to read it. The only
//! sign of loss UDP gives is an ICMP "port unreachable" for an earlier datagram, which fails a
//! later send on the connected socket: that send is a transport error and the page is sent
//! again (at least once from there on, duplicates carry the same `id`). Prefer TCP or TLS
//! whenever the collector speaks them.
//!
//! A message longer than [`MAX_DATAGRAM`] bytes is cut to it at a UTF-8 character boundary
//! (its end is lost; the header and the `seq` and `id` parameters come first, so they stay).
//! RFC 5426 §3.2 obliges receivers to take only 480 (IPv4) or 1180 (IPv6) octets and asks
//! for 2048; rsyslog and syslog-ng take 8192 by default, and an IPv4 datagram can carry at
//! most 65507.

use crate::deliver::{Outlet, Sent};
use crate::webhook::SendError;
use airlock_audit::AuditEvent;
use airlock_config::{SinkConfig, SyslogSink};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::net::UdpSocket;

/// The longest message sent; longer ones are truncated (see the module docs).
pub const MAX_DATAGRAM: usize = 8192;

/// Syslog over UDP, one message a datagram.
pub struct SyslogUdp {
    cfg: SinkConfig,
    address: String,
    cursor: String,
    hostname: String,
    /// Messages since the last flush.
    pending: Mutex<Vec<String>>,
    socket: tokio::sync::Mutex<Option<UdpSocket>>,
}

/// `message` cut to at most `max` bytes, at a character boundary.
pub fn truncate(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl SyslogUdp {
    /// A sink for `cfg`; `default_hostname` names this machine when the config does not.
    pub fn new(cfg: SinkConfig, syslog: &SyslogSink, default_hostname: &str) -> SyslogUdp {
        SyslogUdp {
            cursor: super::cursor_of(&cfg.name),
            address: syslog.address.clone(),
            hostname: syslog
                .hostname
                .clone()
                .unwrap_or_else(|| default_hostname.to_owned()),
            cfg,
            pending: Mutex::new(Vec::new()),
            socket: tokio::sync::Mutex::new(None),
        }
    }

    /// A socket connected to the collector (its address resolved now, so a changed DNS
    /// record is followed after an error).
    async fn connect(&self) -> Result<UdpSocket, SendError> {
        let transport = |m: String| SendError::Transport(m);
        let target: SocketAddr =
            tokio::time::timeout(self.cfg.timeout, tokio::net::lookup_host(&self.address))
                .await
                .map_err(|_| transport(format!("resolving {} timed out", self.address)))?
                .map_err(|e| transport(format!("cannot resolve {}: {e}", self.address)))?
                .next()
                .ok_or_else(|| transport(format!("{} resolves to no address", self.address)))?;
        let local: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| transport(format!("cannot open a udp socket: {e}")))?;
        socket
            .connect(target)
            .await
            .map_err(|e| transport(format!("cannot address {}: {e}", self.address)))?;
        Ok(socket)
    }

    async fn send_all(&self, messages: &[String]) -> Result<(), SendError> {
        let mut socket = self.socket.lock().await;
        if socket.is_none() {
            *socket = Some(self.connect().await?);
        }
        let Some(s) = socket.as_ref() else {
            return Err(SendError::Transport("no socket".into()));
        };
        for m in messages {
            let datagram = truncate(m, MAX_DATAGRAM).as_bytes();
            match tokio::time::timeout(self.cfg.timeout, s.send(datagram)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    *socket = None;
                    return Err(SendError::Transport(format!(
                        "sending to {}: {e}",
                        self.address
                    )));
                }
                Err(_) => {
                    *socket = None;
                    return Err(SendError::Transport(format!(
                        "sending to {} timed out",
                        self.address
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Outlet for SyslogUdp {
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
                .push(message);
            Ok(Sent::Buffered("event"))
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let messages = std::mem::take(
                &mut *self
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if messages.is_empty() {
                return Ok(());
            }
            self.send_all(&messages).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 8), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        // "é" is two bytes: a cut in its middle falls back before it.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
        let long = "€".repeat(MAX_DATAGRAM);
        let cut = truncate(&long, MAX_DATAGRAM);
        assert!(cut.len() <= MAX_DATAGRAM && cut.len() > MAX_DATAGRAM - 3);
        assert!(cut.chars().all(|c| c == '€'));
    }
}
