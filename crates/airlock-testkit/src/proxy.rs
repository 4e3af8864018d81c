//! A fault-injecting HTTP/1.1 proxy to put in front of a real server.
//!
//! [`FaultProxy::start`] listens on 127.0.0.1 (an OS-chosen port) inside the caller's tokio
//! runtime and forwards to one upstream (`http://host:port`). Each client connection carries one
//! request: the proxy reads it (head with `httparse`, body by `Content-Length`), consults its
//! [`Rule`]s, then either injects a [`Fault`] or forwards the request with `Connection: close`,
//! reads the upstream's whole response until end-of-file and writes it back unchanged except for
//! `connection: close` (chunked bodies pass through as they are). HTTP clients such as reqwest
//! honour `connection: close` and open a new connection for the next request.
//!
//! Every request is counted and logged as (method, path and query) before any rule applies, so a
//! test can count the calls its client made. Header values, `Authorization` included, are
//! forwarded untouched and never logged.
//!
//! What it does not do: TLS, `CONNECT`, chunked request bodies (rejected with 400), keep-alive,
//! or upgrades (websockets). Dropping the proxy stops it and every connection it is serving.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The largest request head the proxy accepts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The largest request body the proxy accepts (it buffers bodies whole).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Request headers that belong to one connection and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
];

/// What the proxy does instead of (or on top of) a plain forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, body and extra headers without contacting the upstream
    /// (`content-length` and `connection` are added; `content-type` defaults to JSON when the
    /// body looks like JSON, else plain text).
    Status {
        /// The HTTP status code.
        status: u16,
        /// The response body.
        body: String,
        /// Extra response headers, for example `("Retry-After", "1")`.
        headers: Vec<(String, String)>,
    },
    /// Wait this long, then forward (to make a client time out; the upstream still gets the
    /// request, as a real slow server would have processed it).
    Delay(Duration),
    /// Forward at once (the upstream processes the request), then hold the answer this long
    /// before sending it: a client killed meanwhile made the change without seeing it.
    HoldResponse(Duration),
    /// Close the client connection abruptly (TCP reset) without answering or forwarding.
    Reset,
    /// Forward, then send the upstream's head (with its original `Content-Length`) and only
    /// the first `keep_body_bytes` bytes of its body, then close.
    Truncate {
        /// How many body bytes (raw, chunk framing included) reach the client.
        keep_body_bytes: usize,
    },
    /// Answer with this status and body, labelled `application/json`, without contacting the
    /// upstream (for malformed JSON).
    Garbage {
        /// The HTTP status code.
        status: u16,
        /// The (malformed) body.
        body: String,
    },
}

impl Fault {
    /// A plain error status with a small JSON body.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            body: format!(r#"{{"detail":"injected by airlock-testkit proxy","status":{status}}}"#),
            headers: Vec::new(),
        }
    }

    /// `429 Too Many Requests` with `Retry-After: <seconds>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::Status {
            status: 429,
            body: r#"{"detail":"rate limited by airlock-testkit proxy","status":429}"#.to_owned(),
            headers: vec![("Retry-After".to_owned(), retry_after_secs.to_string())],
        }
    }
}

/// When to inject a fault. A request matches when its method (if set, case-insensitive), path
/// prefix and query substring (if set) all match.
///
/// Rules are tried in the order they were added and the first matching *active* rule decides:
/// its first `after` matches pass through untouched, the next `times` matches (forever when
/// `None`) get the fault, after which the rule is spent and later rules get their turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Only requests with this method (for example `"GET"`); `None` matches any.
    pub method: Option<String>,
    /// Only requests whose path (without query) starts with this; `""` or `"/"` matches all.
    pub path_prefix: String,
    /// Only requests whose query string contains this.
    pub query_contains: Option<String>,
    /// How many matches get the fault; `None` means every match, forever.
    pub times: Option<u32>,
    /// How many matches pass through before the fault starts.
    pub after: u32,
    /// What to do to a matching request.
    pub fault: Fault,
}

impl Rule {
    /// A rule injecting `fault` into every request under `path_prefix`, from the first on.
    pub fn new(path_prefix: impl Into<String>, fault: Fault) -> Self {
        Self {
            method: None,
            path_prefix: path_prefix.into(),
            query_contains: None,
            times: None,
            after: 0,
            fault,
        }
    }

    /// Restricts the rule to one method.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Restricts the rule to requests whose query string contains `needle`.
    #[must_use]
    pub fn query_contains(mut self, needle: impl Into<String>) -> Self {
        self.query_contains = Some(needle.into());
        self
    }

    /// Injects the fault only `times` times.
    #[must_use]
    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    /// Lets the first `after` matching requests pass first.
    #[must_use]
    pub fn after(mut self, after: u32) -> Self {
        self.after = after;
        self
    }

    fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.starts_with(&self.path_prefix)
            && self
                .query_contains
                .as_deref()
                .is_none_or(|needle| query.contains(needle))
    }
}

/// A rule and how many requests it has matched so far.
#[derive(Debug)]
struct RuleState {
    rule: Rule,
    matched: u32,
}

impl RuleState {
    fn is_spent(&self) -> bool {
        self.rule
            .times
            .is_some_and(|times| self.matched >= self.rule.after.saturating_add(times))
    }
}

/// Applies the first matching active rule: `Some(fault)` to inject, `None` to forward.
fn decide(rules: &mut [RuleState], method: &str, target: &str) -> Option<Fault> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let state = rules
        .iter_mut()
        .find(|s| !s.is_spent() && s.rule.matches(method, path, query))?;
    state.matched = state.matched.saturating_add(1);
    (state.matched > state.rule.after).then(|| state.rule.fault.clone())
}

/// State shared between the handle and the connection tasks.
#[derive(Debug)]
struct Shared {
    upstream_host: String,
    upstream_port: u16,
    rules: Mutex<Vec<RuleState>>,
    seen: AtomicU64,
    log: Mutex<Vec<(String, String)>>,
}

/// A running proxy; see the module docs. Stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`, no path) on 127.0.0.1, serving on the
    /// current tokio runtime.
    ///
    /// # Panics
    /// When `upstream` is not such a URL or no port can be bound (test set-up errors), or when
    /// called outside a tokio runtime.
    pub async fn start(upstream: &str) -> FaultProxy {
        let url = url::Url::parse(upstream)
            .unwrap_or_else(|err| panic!("proxy upstream {upstream:?} is not a URL: {err}"));
        assert!(
            url.scheme() == "http" && matches!(url.path(), "" | "/") && url.query().is_none(),
            "proxy upstream {upstream:?} must be http://host:port without a path"
        );
        let upstream_host = url
            .host_str()
            .unwrap_or_else(|| panic!("proxy upstream {upstream:?} has no host"))
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let upstream_port = url
            .port_or_known_default()
            .expect("invariant: http URLs have a known default port");

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|err| panic!("proxy cannot bind 127.0.0.1:0: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("proxy cannot read its bound address: {err}"));
        let shared = Arc::new(Shared {
            upstream_host,
            upstream_port,
            rules: Mutex::new(Vec::new()),
            seen: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FaultProxy { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`, to use as a client's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a rule after the existing ones.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(RuleState { rule, matched: 0 });
    }

    /// Removes every rule: from now on all requests are forwarded.
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// How many requests the proxy has read (faulted or forwarded).
    pub fn requests_seen(&self) -> u64 {
        self.shared.seen.load(Ordering::SeqCst)
    }

    /// Every request read so far, in arrival order, as (method, path and query).
    pub fn requests_log(&self) -> Vec<(String, String)> {
        lock(&self.shared.log).clone()
    }

    /// Zeroes [`Self::requests_seen`] and empties [`Self::requests_log`] (rules keep their counts).
    pub fn reset_counters(&self) {
        let mut log = lock(&self.shared.log);
        log.clear();
        self.shared.seen.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connection tasks: aborting it aborts them too.
        self.task.abort();
    }
}

/// Locks a mutex, ignoring poisoning: the guarded data stays consistent across a panic here.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(Arc::clone(&shared), stream));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow for the proxy's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One parsed client request.
struct Request {
    method: String,
    /// Path and query, as the client sent them.
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

enum ReadOutcome {
    Request(Request),
    /// The client closed the connection before sending a whole request.
    Closed,
    /// The request cannot be proxied: answer with this status and message.
    Rejected(u16, &'static str),
}

async fn serve_connection(shared: Arc<Shared>, mut client: TcpStream) {
    let request = match read_request(&mut client).await {
        Ok(ReadOutcome::Request(request)) => request,
        Ok(ReadOutcome::Closed) | Err(_) => return,
        Ok(ReadOutcome::Rejected(status, message)) => {
            let _ = reply(&mut client, &simple_response(status, message, &[])).await;
            return;
        }
    };
    shared.seen.fetch_add(1, Ordering::SeqCst);
    lock(&shared.log).push((request.method.clone(), request.target.clone()));
    let fault = decide(&mut lock(&shared.rules), &request.method, &request.target);

    // Errors writing to the client mean it went away (for example after its own timeout);
    // there is nobody left to tell.
    let _ = match fault {
        None => forward_and_reply(&shared, &mut client, &request, None).await,
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            forward_and_reply(&shared, &mut client, &request, None).await
        }
        Some(Fault::Truncate { keep_body_bytes }) => {
            forward_and_reply(&shared, &mut client, &request, Some(keep_body_bytes)).await
        }
        Some(Fault::HoldResponse(hold)) => {
            forward_and_reply_after(&shared, &mut client, &request, None, hold).await
        }
        Some(Fault::Status {
            status,
            body,
            headers,
        }) => reply(&mut client, &simple_response(status, &body, &headers)).await,
        Some(Fault::Garbage { status, body }) => {
            let headers = [("content-type".to_owned(), "application/json".to_owned())];
            reply(&mut client, &simple_response(status, &body, &headers)).await
        }
        Some(Fault::Reset) => {
            reset(client);
            Ok(())
        }
    };
}

/// Reads one request: head, then a `Content-Length` body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<ReadOutcome> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or_default().to_owned();
                let target = parsed.path.unwrap_or_default().to_owned();
                let headers: Vec<(String, Vec<u8>)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect();
                return finish_request(client, buf.split_off(head_len), method, target, headers)
                    .await;
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Ok(ReadOutcome::Rejected(431, "request head too large"));
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Ok(ReadOutcome::Rejected(431, "too many request headers"));
            }
            Err(_) => return Ok(ReadOutcome::Rejected(400, "malformed request")),
        }
        if client.read_buf(&mut buf).await? == 0 {
            return Ok(ReadOutcome::Closed);
        }
    }
}

async fn finish_request(
    client: &mut TcpStream,
    mut body: Vec<u8>,
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
) -> std::io::Result<ReadOutcome> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_owned())
    };
    if header("transfer-encoding").is_some() {
        return Ok(ReadOutcome::Rejected(
            400,
            "chunked request bodies are not supported by the test proxy",
        ));
    }
    let length = match header("content-length").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(length)) if length <= MAX_BODY_BYTES => length,
        Some(Ok(_)) => return Ok(ReadOutcome::Rejected(413, "request body too large")),
        Some(Err(_)) => return Ok(ReadOutcome::Rejected(400, "bad content-length")),
    };
    while body.len() < length {
        if client.read_buf(&mut body).await? == 0 {
            return Ok(ReadOutcome::Closed);
        }
    }
    // Anything past the body would be a pipelined request; one request per connection.
    body.truncate(length);
    Ok(ReadOutcome::Request(Request {
        method,
        target,
        headers,
        body,
    }))
}

/// Forwards `request` and writes the response back, cut after `keep_body_bytes` body bytes
/// when given.
async fn forward_and_reply(
    shared: &Shared,
    client: &mut TcpStream,
    request: &Request,
    keep_body_bytes: Option<usize>,
) -> std::io::Result<()> {
    forward_and_reply_after(shared, client, request, keep_body_bytes, Duration::ZERO).await
}

/// [`forward_and_reply`], holding the upstream's answer for `hold` before replying.
async fn forward_and_reply_after(
    shared: &Shared,
    client: &mut TcpStream,
    request: &Request,
    keep_body_bytes: Option<usize>,
    hold: Duration,
) -> std::io::Result<()> {
    let response = forward(shared, request).await;
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            let message = format!("test proxy cannot reach the upstream: {err}");
            return reply(client, &simple_response(502, &message, &[])).await;
        }
    };
    let Some(head_end) = find(&response, b"\r\n\r\n").map(|i| i + 4) else {
        // Not HTTP: pass the bytes on as they are, the client will make of them what it can.
        return reply(client, &response).await;
    };
    let mut out = rewrite_response_head(&response[..head_end]);
    let body = &response[head_end..];
    let keep = keep_body_bytes.map_or(body.len(), |keep| keep.min(body.len()));
    out.extend_from_slice(&body[..keep]);
    reply(client, &out).await
}

/// Sends `request` upstream with `Connection: close` and reads the response until end-of-file.
async fn forward(shared: &Shared, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut upstream =
        TcpStream::connect((shared.upstream_host.as_str(), shared.upstream_port)).await?;
    let mut out = Vec::with_capacity(512 + request.body.len());
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", request.method, request.target).as_bytes());
    for (name, value) in &request.headers {
        if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&request.body);
    upstream.write_all(&out).await?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await?;
    Ok(response)
}

/// The response head with its `connection`/`keep-alive` headers replaced by `connection: close`.
fn rewrite_response_head(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(head.len() + 32);
    for (i, line) in text.split("\r\n").filter(|l| !l.is_empty()).enumerate() {
        let name = line.split(':').next().unwrap_or_default().trim();
        if i > 0
            && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    out.into_bytes()
}

/// A complete response with a body and `connection: close`.
fn simple_response(status: u16, body: &str, headers: &[(String, String)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    let has_content_type = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if !has_content_type {
        let trimmed = body.trim_start();
        let content_type = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        out.push_str(&format!("content-type: {content_type}\r\n"));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// Writes `bytes` and closes the connection gracefully (FIN after the data).
async fn reply(client: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await?;
    client.shutdown().await
}

/// Closes `client` with a TCP reset: SO_LINGER 0 makes close() send RST instead of FIN.
fn reset(client: TcpStream) {
    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
    drop(client);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(rules: Vec<Rule>) -> Vec<RuleState> {
        rules
            .into_iter()
            .map(|rule| RuleState { rule, matched: 0 })
            .collect()
    }

    #[test]
    fn after_lets_the_first_matches_pass_and_times_limits_the_faults() {
        let mut rules = states(vec![Rule::new("/api", Fault::Reset).after(2).times(2)]);
        let outcomes: Vec<bool> = (0..6)
            .map(|_| decide(&mut rules, "GET", "/api/v2/dags").is_some())
            .collect();
        assert_eq!(outcomes, [false, false, true, true, false, false]);
    }

    #[test]
    fn first_active_rule_wins_and_spent_rules_give_way() {
        let mut rules = states(vec![
            Rule::new("/", Fault::status(500)).times(1),
            Rule::new("/", Fault::status(503)),
        ]);
        assert_eq!(decide(&mut rules, "GET", "/x"), Some(Fault::status(500)));
        assert_eq!(decide(&mut rules, "GET", "/x"), Some(Fault::status(503)));
        assert_eq!(decide(&mut rules, "GET", "/x"), Some(Fault::status(503)));
    }

    #[test]
    fn method_path_and_query_must_all_match() {
        let mut rules = states(vec![Rule::new("/api/v2/users", Fault::Reset)
            .method("get")
            .query_contains("offset=100")]);
        assert_eq!(decide(&mut rules, "POST", "/api/v2/users?offset=100"), None);
        assert_eq!(decide(&mut rules, "GET", "/api/v2/roles?offset=100"), None);
        assert_eq!(decide(&mut rules, "GET", "/api/v2/users?offset=0"), None);
        assert_eq!(decide(&mut rules, "GET", "/api/v2/users"), None);
        assert_eq!(
            decide(&mut rules, "GET", "/api/v2/users?limit=100&offset=100"),
            Some(Fault::Reset)
        );
    }

    #[test]
    fn query_text_is_not_part_of_the_path_prefix() {
        let mut rules = states(vec![Rule::new("/a?b", Fault::Reset)]);
        assert_eq!(decide(&mut rules, "GET", "/a?b=1"), None);
    }

    #[test]
    fn response_head_gets_connection_close_instead_of_keep_alive() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n";
        let out = String::from_utf8(rewrite_response_head(head)).expect("utf-8");
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn injected_responses_carry_length_type_and_extra_headers() {
        let out = String::from_utf8(simple_response(
            429,
            "{}",
            &[("Retry-After".to_owned(), "1".to_owned())],
        ))
        .expect("utf-8");
        assert_eq!(
            out,
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nRetry-After: 1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
        );
    }
}
