//! The service's HTTP listener under attack, over real TCP on 127.0.0.1 with the SCIM endpoint
//! on a real SQLite file: a slowloris client is disconnected, an oversized head or body is
//! refused, connections beyond the cap wait unserved, shutdown finishes with a slow client
//! connected, and brute-forced bearer tokens are throttled (time from an injected clock).

use std::sync::Arc;
use std::time::Duration;

use airlock_core::FixedClock;
use airlock_server::listener::{serve, HttpLimits};
use airlock_server::{AuthThrottle, ThrottleConfig};
use airlock_store::{OpenOptions, Store};
use anyhow::{ensure, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The bound on anything a test waits for; never a measurement.
const BOUND: Duration = Duration::from_secs(60);

struct Server {
    addr: std::net::SocketAddr,
    token: String,
    clock: Arc<FixedClock>,
    open: prometheus::IntGauge,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(limits: HttpLimits, throttle: ThrottleConfig) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
        let store = Store::open(&url, OpenOptions::create()).await?;
        let (_, token) = store.create_scim_token("idp", 1).await?;
        let clock = Arc::new(FixedClock::new(
            chrono::DateTime::from_timestamp(1_800_000_000, 0).context("time")?,
        ));
        let throttle = Arc::new(AuthThrottle::new(throttle, clock.clone()));
        let app = airlock_server::scim_router_throttled(store, clock.clone(), throttle);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let open = prometheus::IntGauge::new("open", "open connections")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, app, limits, Some(open.clone()), async {
            let _ = stopped.await;
        }));
        Ok(Server {
            addr,
            token,
            clock,
            open,
            stop: Some(stop),
            served,
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/scim/v2{path}", self.addr)
    }

    async fn get(&self, token: &str) -> anyhow::Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .get(self.url("/Users"))
            .bearer_auth(token)
            .timeout(BOUND)
            .send()
            .await?)
    }
}

fn limits(header_read_timeout: Duration, max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_read_timeout,
        max_connections,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// Sends `head` one byte a second (then keeps sending) until the server closes the
/// connection; true if it did within [`BOUND`].
async fn slowloris(mut stream: TcpStream, head: &[u8]) -> bool {
    let mut buf = [0u8; 1024];
    let mut bytes = head.iter().chain(std::iter::repeat(&b'a'));
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return false,
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => {} // a 408 or similar before the close
            },
            _ = tick.tick() => {
                let byte = bytes.next().copied().unwrap_or(b'a');
                if stream.write_all(&[byte]).await.is_err() {
                    return true;
                }
            }
        }
    }
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !check() {
        ensure!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_by_the_header_read_timeout() -> anyhow::Result<()> {
    let server = Server::start(
        limits(Duration::from_secs(2), 16),
        ThrottleConfig::default(),
    )
    .await?;
    let stream = TcpStream::connect(server.addr).await?;
    ensure!(
        slowloris(
            stream,
            b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Slow: "
        )
        .await,
        "a client sending a byte a second kept its connection"
    );
    // An idle keep-alive connection that never sends anything is closed too.
    let mut idle = TcpStream::connect(server.addr).await?;
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(BOUND, idle.read(&mut buf)).await;
    ensure!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "an idle connection stayed open"
    );
    // The server still serves others.
    ensure!(server.get(&server.token).await?.status() == 200);
    Ok(())
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_and_the_server_keeps_serving() -> anyhow::Result<()> {
    let server = Server::start(
        limits(Duration::from_secs(10), 16),
        ThrottleConfig::default(),
    )
    .await?;
    let mut stream = TcpStream::connect(server.addr).await?;
    let big = "a".repeat(airlock_server::listener::MAX_HEADER_BYTES + 1024);
    let head = format!(
        "GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Big: {big}\r\n\r\n",
        server.token
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(BOUND, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    // Either a 431, or (if the close raced the answer) nothing at all: never served.
    ensure!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "an oversized head was answered: {answer}"
    );
    ensure!(server.get(&server.token).await?.status() == 200);
    Ok(())
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_with_a_scim_error() -> anyhow::Result<()> {
    let server = Server::start(
        limits(Duration::from_secs(10), 16),
        ThrottleConfig::default(),
    )
    .await?;
    let body = format!(
        "{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"{}\"}}",
        "a".repeat(airlock_server::scim::MAX_BODY_BYTES + 1)
    );
    let resp = reqwest::Client::new()
        .post(server.url("/Users"))
        .bearer_auth(&server.token)
        .header("content-type", "application/scim+json")
        .body(body)
        .timeout(BOUND)
        .send()
        .await?;
    ensure!(resp.status() == 413, "status {}", resp.status());
    let body: serde_json::Value = resp.json().await?;
    ensure!(body["schemas"][0] == ERROR, "{body}");
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_unserved_until_one_closes() -> anyhow::Result<()> {
    let server = Server::start(
        limits(Duration::from_secs(120), 2),
        ThrottleConfig::default(),
    )
    .await?;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(server.addr).await?;
        s.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n")
            .await?;
        held.push(s);
    }
    until("both held connections are served", || {
        server.open.get() == 2
    })
    .await?;
    let mut third = TcpStream::connect(server.addr).await?;
    let request = format!(
        "GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        server.token
    );
    third.write_all(request.as_bytes()).await?;
    // While the cap is reached, nothing answers the third client.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut buf = [0u8; 64];
    ensure!(
        matches!(third.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection beyond the cap was answered"
    );
    ensure!(server.open.get() == 2, "open: {}", server.open.get());
    drop(held);
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, third.read_to_end(&mut answer)).await??;
    ensure!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_finishes_while_a_slow_client_holds_a_connection() -> anyhow::Result<()> {
    let mut server = Server::start(
        limits(Duration::from_secs(300), 16),
        ThrottleConfig::default(),
    )
    .await?;
    let stream = TcpStream::connect(server.addr).await?;
    let client = tokio::spawn(slowloris(
        stream,
        b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n",
    ));
    until("the slow client is served", || server.open.get() == 1).await?;
    if let Some(stop) = server.stop.take() {
        let _ = stop.send(());
    }
    tokio::time::timeout(BOUND, &mut server.served)
        .await
        .context("the listener did not stop with a slow client connected")??;
    ensure!(client.await?, "the slow client was not disconnected");
    ensure!(server.open.get() == 0);
    Ok(())
}

#[tokio::test]
async fn brute_forced_tokens_from_one_address_are_throttled_without_checking_them(
) -> anyhow::Result<()> {
    let throttle = ThrottleConfig {
        limit: 5,
        window: Duration::from_secs(60),
    };
    let server = Server::start(limits(Duration::from_secs(10), 16), throttle).await?;
    // Successes never count.
    for _ in 0..20 {
        ensure!(server.get(&server.token).await?.status() == 200);
    }
    for n in 0..5 {
        let resp = server.get(&format!("guess-{n}")).await?;
        ensure!(resp.status() == 401, "guess {n}: {}", resp.status());
    }
    let guess = "guess-the-sixth";
    let resp = server.get(guess).await?;
    ensure!(resp.status() == 429, "status {}", resp.status());
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .context("Retry-After")?
        .to_str()?
        .parse()?;
    ensure!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body = resp.text().await?;
    ensure!(body.contains(ERROR) && !body.contains(guess), "{body}");
    // Blocked: even the right token is not looked at.
    ensure!(server.get(&server.token).await?.status() == 429);
    // After the window, the address may try again.
    server.clock.advance(chrono::Duration::seconds(61));
    ensure!(server.get(&server.token).await?.status() == 200);
    ensure!(server.get("guess-again").await?.status() == 401);
    Ok(())
}

#[tokio::test]
async fn the_tls_listener_serves_scim_to_a_client_trusting_its_ca_and_refuses_plain_http(
) -> anyhow::Result<()> {
    let ca = airlock_testkit::TestCa::new("airlock test CA")?;
    let issued = ca.issue_server(&["localhost"])?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &issued.cert_pem)?;
    std::fs::write(&key, &issued.key_pem)?;
    let tls = airlock_server::listener::tls_acceptor(&cert, &key)?;

    let db = dir.path().join("airlock.db");
    let store = Store::open(&format!("sqlite://{}", db.display()), OpenOptions::create()).await?;
    let (_, token) = store.create_scim_token("idp", 1).await?;
    let app = airlock_server::scim_router(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(airlock_server::listener::serve_tls(
        listener,
        Some(tls),
        app,
        limits(Duration::from_secs(10), 16),
        None,
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            ca.cert_path(),
        )?)?)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(BOUND)
        .build()?;
    let resp = client
        .get(format!("https://localhost:{port}/scim/v2/Users"))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(resp.status() == 200, "status {}", resp.status());
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/scim/v2/Users"))
        .bearer_auth(&token)
        .timeout(BOUND)
        .send()
        .await;
    ensure!(
        plain.is_err(),
        "plain http was answered: {:?}",
        plain.map(|r| r.status())
    );
    // A client that does not trust the CA fails the handshake.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(BOUND)
        .build()?;
    ensure!(untrusting
        .get(format!("https://localhost:{port}/scim/v2/Users"))
        .send()
        .await
        .is_err());
    Ok(())
}
