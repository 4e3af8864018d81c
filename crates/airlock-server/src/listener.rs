//! The HTTP/1 listener the service's routers are served on, with limits an untrusted network
//! cannot exhaust: a header read timeout (which also closes idle keep-alive connections and
//! slowloris clients sending a byte at a time), a cap on header size and count, a cap on
//! connections open at once (further clients wait in the kernel's backlog, unserved), and a
//! shutdown that finishes in bounded time: it stops accepting, lets requests in flight finish
//! for at most the shutdown grace, then closes whatever is still open.
//!
//! Every request carries its peer address as [`ConnectInfo`] (failed-authentication throttling
//! keys on it). Not here: request bodies (the SCIM router caps and times them) and routing.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The largest request head (request line and headers) read; larger ones are answered 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most headers one request may carry; more are answered 431.
pub const MAX_HEADERS: usize = 100;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a client may take to send a request's head, counted from the moment the
    /// connection waits for it (so an idle keep-alive connection is closed after it too).
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait, unaccepted, until one closes.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before closing their connections.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then stops in
/// bounded time (see the module doc). `open` counts the connections being served.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    open: Option<prometheus::IntGauge>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_tls(listener, None, app, limits, open, shutdown).await;
}

/// [`serve`], over TLS when `tls` is given (the handshake must finish within the header read
/// timeout).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: HttpLimits,
    open: Option<prometheus::IntGauge>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let open = Open::new(permit, open.clone());
        let (app, stop, timeout) = (app.clone(), stop_rx.clone(), limits.header_read_timeout);
        match tls.clone() {
            None => connections.spawn(connection(stream, peer, app, timeout, stop, open)),
            Some(tls) => connections.spawn(async move {
                match tokio::time::timeout(timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => connection(stream, peer, app, timeout, stop, open).await,
                    Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "tls handshake failed"),
                    Err(_) => tracing::debug!(peer = %peer, "tls handshake timed out"),
                }
            }),
        };
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "connections still open after the shutdown grace; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// A connection being served: holds its permit and its place in the gauge until dropped.
struct Open {
    _permit: OwnedSemaphorePermit,
    gauge: Option<prometheus::IntGauge>,
}

impl Open {
    fn new(permit: OwnedSemaphorePermit, gauge: Option<prometheus::IntGauge>) -> Self {
        if let Some(g) = &gauge {
            g.inc();
        }
        Self {
            _permit: permit,
            gauge,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(g) = &self.gauge {
            g.dec();
        }
    }
}

async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _open: Open,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        tower_service::Service::call(&mut app, request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stopped => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(peer = %peer, error = %e, "http connection ended with an error");
    }
}

/// Why a TLS certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain file could not be read or holds no certificate.
    #[error("cannot read the TLS certificate chain {path}: {reason}")]
    Cert {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("cannot read the TLS private key {path}: {reason}")]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// Why (never the key).
        reason: String,
    },
    /// rustls refused the pair.
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(#[source] tokio_rustls::rustls::Error),
}

/// A TLS acceptor for the PEM certificate chain and private key at these paths.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            reason: "no certificate in it".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Config)?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .map_err(TlsError::Config)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
