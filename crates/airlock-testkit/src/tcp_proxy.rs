//! A byte-forwarding TCP proxy with network faults, to put in front of any TCP server (one per
//! airlock replica in front of PostgreSQL, so that one replica can be cut off alone).
//!
//! [`TcpProxy::start`] listens on 127.0.0.1 (an OS-chosen port) and forwards every accepted
//! connection to one upstream address, bytes unchanged, both ways. Its [`ProxyMode`] can be
//! switched at any time, open connections included:
//!
//! - [`ProxyMode::Pass`] (the start): forward both ways.
//! - [`ProxyMode::Blackhole`]: a host that vanished without closing its sockets. Nothing is
//!   read or forwarded in either direction and no FIN or RST is sent, so clients' reads and
//!   writes just wait (until their own timeouts, or until their send buffers fill). New
//!   connections are accepted (the kernel completes the handshake) and then held the same way,
//!   without contacting the upstream. Not reading also means a client that gives up and closes
//!   is not noticed: its connection counts as open until the mode changes.
//! - [`ProxyMode::Reset`]: every open connection is closed at once with a TCP reset (SO_LINGER
//!   0) on both sides, client and upstream; new connections are accepted and reset at once.
//! - Back to `Pass` ([`TcpProxy::restore`]): like a healed network, **everything resumes**.
//!   Connections held by a blackhole carry on where they stopped (bytes a client wrote meanwhile
//!   are delivered then), and connections accepted during the blackhole now connect to the
//!   upstream. Connections closed by a reset stay closed. A client that must not see old
//!   traffic resume should drop its connections itself.
//!
//! [`TcpProxy::reset_connections`] resets the connections open now without changing the mode
//! (a one-off network blip). A connection whose upstream refuses or fails is reset too, the
//! nearest a proxy can come to "connection refused" after accepting.
//!
//! The proxy runs on **a thread with a tokio runtime of its own**, not on the caller's runtime:
//! every `#[tokio::test]` has its own runtime that ends with the test, a test may block its
//! runtime (the kit's blocking [`crate::PgCluster`] calls, `std::thread::sleep`), and the
//! clients are often other processes (`airlock serve`) that must keep being served whatever the
//! test does. So the API is plain sync code, usable with or without a runtime, and a proxy may
//! live in a static. Dropping it stops the thread; every connection it holds is then closed
//! (FIN, not RST).
//!
//! What it does not do: delays, bandwidth limits, partial (one-direction) faults, TLS, UDP.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// How many bytes one read forwards at most.
const BUFFER_BYTES: usize = 16 * 1024;

/// What the proxy does with traffic; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass,
    /// Accept and hold connections, forward nothing, close nothing.
    Blackhole,
    /// Reset every connection, open or new.
    Reset,
}

/// The mode and the number of one-off resets so far, watched by every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    mode: ProxyMode,
    /// Bumped by [`TcpProxy::reset_connections`]; a connection resets when it differs from the
    /// value it was accepted under.
    resets: u64,
}

/// What the handle and the connection tasks share.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: watch::Sender<State>,
    open: AtomicU64,
    accepted: AtomicU64,
}

/// A running TCP proxy; see the module docs. Stops when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.mode())
            .field("open_connections", &self.open_connections())
            .field("accepted_connections", &self.accepted_connections())
            .finish()
    }
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on 127.0.0.1 in [`ProxyMode::Pass`], on a thread of its own.
    pub fn start(upstream: SocketAddr) -> anyhow::Result<TcpProxy> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("the TCP proxy cannot bind 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("the TCP proxy cannot read its bound address")?;
        listener
            .set_nonblocking(true)
            .context("the TCP proxy cannot make its listener non-blocking")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the TCP proxy cannot build its runtime")?;
        let (state, _) = watch::channel(State {
            mode: ProxyMode::Pass,
            resets: 0,
        });
        let shared = Arc::new(Shared {
            upstream,
            state,
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let (shutdown, stop) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("airlock-tcp-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(err) => {
                            eprintln!("airlock-testkit: TCP proxy on {addr} cannot listen: {err}");
                            return;
                        }
                    };
                    tokio::select! {
                        () = accept_loop(listener, thread_shared) => {}
                        _ = stop => {}
                    }
                });
                // Dropping the runtime here drops every connection task and its sockets.
            })
            .context("the TCP proxy cannot start its thread")?;
        Ok(TcpProxy {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address the proxy listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the proxy listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.shared.state.borrow().mode
    }

    /// Switches to `mode`; open connections follow at once.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.shared.state.send_modify(|state| state.mode = mode);
    }

    /// [`ProxyMode::Blackhole`]: hold every connection, forward nothing, close nothing.
    pub fn blackhole(&self) {
        self.set_mode(ProxyMode::Blackhole);
    }

    /// [`ProxyMode::Reset`]: reset every open connection and every new one.
    pub fn reset(&self) {
        self.set_mode(ProxyMode::Reset);
    }

    /// Back to [`ProxyMode::Pass`]: new connections work, blackholed ones resume.
    pub fn restore(&self) {
        self.set_mode(ProxyMode::Pass);
    }

    /// Resets the connections open now (both sides) without changing the mode.
    pub fn reset_connections(&self) {
        self.shared
            .state
            .send_modify(|state| state.resets = state.resets.wrapping_add(1));
    }

    /// How many client connections the proxy holds now (forwarding or held by a blackhole).
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// How many client connections the proxy has accepted since it started, in any mode.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the thread has already ended.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The thread only drops its runtime after the signal: this is quick.
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let open = OpenGuard::new(&shared);
                tokio::spawn(serve_connection(Arc::clone(&shared), client, open));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Counts a connection as open until dropped (when its task ends, however it ends).
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a forwarding connection ended.
enum Ended {
    /// Both sides closed normally (FIN each way).
    Closed,
    /// A reset was asked for, or one side failed: reset both.
    Reset,
}

async fn serve_connection(shared: Arc<Shared>, client: TcpStream, _open: OpenGuard) {
    let mut state = shared.state.subscribe();
    let resets = state.borrow().resets;
    let wants_reset = move |s: &State| s.mode == ProxyMode::Reset || s.resets != resets;

    // A blackhole holds a new connection here, before the upstream hears of it.
    let go = state
        .wait_for(|s| s.mode == ProxyMode::Pass || wants_reset(s))
        .await
        .map(|s| !wants_reset(&s));
    if !matches!(go, Ok(true)) {
        reset(client);
        return;
    }
    let upstream = tokio::select! {
        connected = TcpStream::connect(shared.upstream) => match connected {
            Ok(upstream) => upstream,
            Err(_) => {
                reset(client);
                return;
            }
        },
        _ = state.wait_for(wants_reset) => {
            reset(client);
            return;
        }
    };
    // Small protocol messages (PostgreSQL's) must not wait for Nagle's algorithm.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let mut client = client;
    let mut upstream = upstream;
    let ended = {
        let (mut client_read, mut client_write) = client.split();
        let (mut upstream_read, mut upstream_write) = upstream.split();
        let to_upstream = pipe(&mut client_read, &mut upstream_write, state.clone());
        let to_client = pipe(&mut upstream_read, &mut client_write, state.clone());
        tokio::pin!(to_upstream, to_client);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                result = &mut to_upstream, if !up_done => {
                    if result.is_err() {
                        break Ended::Reset;
                    }
                    up_done = true;
                }
                result = &mut to_client, if !down_done => {
                    if result.is_err() {
                        break Ended::Reset;
                    }
                    down_done = true;
                }
                _ = state.wait_for(wants_reset) => break Ended::Reset,
            }
            if up_done && down_done {
                break Ended::Closed;
            }
        }
    };
    if matches!(ended, Ended::Reset) {
        reset(client);
        reset(upstream);
    }
}

/// Copies `from` to `to` while the mode is [`ProxyMode::Pass`], pausing (neither reading nor
/// writing) otherwise; at end-of-file it shuts `to` down for writing (forwards the FIN).
async fn pipe<R, W>(from: &mut R, to: &mut W, mut state: watch::Receiver<State>) -> io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0_u8; BUFFER_BYTES];
    loop {
        wait_for_pass(&mut state).await?;
        // Both branches are cancel-safe: a read that loses to a mode change read nothing.
        let read = tokio::select! {
            read = from.read(&mut buf) => read?,
            changed = state.changed() => {
                changed.map_err(|_| gone())?;
                continue;
            }
        };
        if read == 0 {
            return to.shutdown().await;
        }
        let mut written = 0;
        while written < read {
            wait_for_pass(&mut state).await?;
            tokio::select! {
                wrote = to.write(&buf[written..read]) => match wrote? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => written += n,
                },
                changed = state.changed() => changed.map_err(|_| gone())?,
            }
        }
    }
}

async fn wait_for_pass(state: &mut watch::Receiver<State>) -> io::Result<()> {
    state
        .wait_for(|s| s.mode == ProxyMode::Pass)
        .await
        .map(drop)
        .map_err(|_| gone())
}

/// The proxy handle is gone (only while the runtime shuts down).
fn gone() -> io::Error {
    io::Error::other("the TCP proxy stopped")
}

/// Closes `stream` with a TCP reset: SO_LINGER 0 makes close() send RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}
