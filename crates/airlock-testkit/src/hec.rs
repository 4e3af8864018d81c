//! A local Splunk HTTP Event Collector ([`HecReceiver`]) on 127.0.0.1, for the HEC audit sink's
//! tests: there is no Splunk on the test machines, so this one implements the documented
//! request, answer and acknowledgement formats (and is checked against the examples quoted
//! from Splunk's documentation in `crates/airlock-notify/tests/hec_sink.rs`):
//!
//! - `POST /services/collector/event` (also `/services/collector` and `.../event/1.0`): the
//!   token in `Authorization: Splunk <token>` (missing: 401 code 2 `Token is required`; not of
//!   that form: 401 code 3 `Invalid authorization`; wrong: 403 code 4 `Invalid token`); with
//!   acknowledgement on, a channel (a GUID, in `X-Splunk-Request-Channel` or `?channel=`) is
//!   required (400 code 10 `Data channel is missing`, 400 code 11 `Invalid data channel`); the
//!   body is JSON event objects one after another (none: 400 code 5 `No data`; not JSON
//!   objects: 400 code 6 `Invalid data format` with `invalid-event-number`; one without
//!   `event`: 400 code 12, a blank one: 400 code 13). Success is `{"text":"Success","code":0}`,
//!   with acknowledgement on plus `"ackId":N`, N counting from 0 per channel.
//! - `POST /services/collector/ack` with `{"acks":[N,...]}` answers `{"acks":{"N":bool}}`:
//!   `true` once the request is "indexed", and only once (Splunk forgets an id it answered
//!   `true` for); unknown ids are `false`. With acknowledgement off: 400 code 14
//!   `ACK is disabled`.
//!
//! Faults: [`HecFault::Busy`] (503 code 9 `Server is busy`), [`HecFault::Garbage`] (200 with a
//! body that is not JSON), [`HecReceiver::withhold_acks`] (requests accepted, acks stay
//! `false`; releasing them "indexes" what was held), and [`HecReceiver::stop`] /
//! [`HecReceiver::restart`] on the same port: a crash, which loses what was accepted and not
//! yet indexed, and every channel's ackIds (they start from 0 again).
//!
//! It records every envelope it accepted ([`HecReceiver::received`], duplicates included) and
//! those indexed ([`HecReceiver::indexed`]), parsed. Like [`crate::tcp_proxy`], it runs on a
//! thread with a runtime of its own, so its API is sync.
//!
//! What it does not do: TLS, `/services/collector/raw`, health, gzip, indexed fields,
//! token-per-index rules, channel expiry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The channel header.
pub const CHANNEL_HEADER: &str = "x-splunk-request-channel";

/// A fault the receiver answers every request with until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HecFault {
    /// 503 `{"text":"Server is busy","code":9}`.
    Busy,
    /// 200 with a body that is not JSON.
    Garbage,
}

#[derive(Debug, Default)]
struct Channel {
    next: u64,
    /// Accepted, not yet indexed (acks withheld).
    held: BTreeMap<u64, Vec<Value>>,
    /// Indexed and not yet reported `true`.
    done: BTreeSet<u64>,
}

#[derive(Debug)]
struct State {
    token: String,
    ack: bool,
    fault: Option<HecFault>,
    withhold: bool,
    channels: HashMap<String, Channel>,
    received: Vec<Value>,
    indexed: Vec<Value>,
    requests: u64,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    thread: thread::JoinHandle<()>,
}

/// A local HEC; see the module docs. Stops when dropped.
pub struct HecReceiver {
    port: u16,
    state: Arc<Mutex<State>>,
    running: Option<Running>,
}

impl std::fmt::Debug for HecReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HecReceiver")
            .field("port", &self.port)
            .field("running", &self.running.is_some())
            .finish()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HecReceiver {
    /// Starts a receiver on a free port of 127.0.0.1 that accepts `token`, with indexer
    /// acknowledgement on or off.
    pub fn start(token: &str, ack: bool) -> anyhow::Result<HecReceiver> {
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            ack,
            fault: None,
            withhold: false,
            channels: HashMap::new(),
            received: Vec::new(),
            indexed: Vec::new(),
            requests: 0,
        }));
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("the HEC receiver cannot bind 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mut receiver = HecReceiver {
            port,
            state,
            running: None,
        };
        receiver.serve(listener)?;
        Ok(receiver)
    }

    fn serve(&mut self, listener: std::net::TcpListener) -> anyhow::Result<()> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the HEC receiver cannot build its runtime")?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let state = Arc::clone(&self.state);
        let thread = thread::Builder::new()
            .name(format!("airlock-hec-{}", self.port))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new().fallback(handle).with_state(state);
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stop => {}
                    }
                });
                // Dropping the runtime drops every connection: a crash, not a drain.
            })
            .context("the HEC receiver cannot start its thread")?;
        self.running = Some(Running { shutdown, thread });
        Ok(())
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Every envelope accepted so far (in arrival order, duplicates included).
    pub fn received(&self) -> Vec<Value> {
        lock(&self.state).received.clone()
    }

    /// Every envelope indexed so far (acknowledged, or accepted with acknowledgement off).
    pub fn indexed(&self) -> Vec<Value> {
        lock(&self.state).indexed.clone()
    }

    /// HTTP requests answered so far.
    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    /// Answers every request with `fault` (`None`: normally again).
    pub fn set_fault(&self, fault: Option<HecFault>) {
        lock(&self.state).fault = fault;
    }

    /// While `true`, accepted requests are not indexed and their acks stay `false`; `false`
    /// indexes what was held.
    pub fn withhold_acks(&self, withhold: bool) {
        let mut s = lock(&self.state);
        s.withhold = withhold;
        if !withhold {
            let State {
                channels, indexed, ..
            } = &mut *s;
            for ch in channels.values_mut() {
                for (id, envelopes) in std::mem::take(&mut ch.held) {
                    indexed.extend(envelopes);
                    ch.done.insert(id);
                }
            }
        }
    }

    /// Crashes: the port closes, open connections drop, and what was accepted but not indexed
    /// is lost with every channel's ackIds.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.shutdown.send(());
            let _ = running.thread.join();
        }
        lock(&self.state).channels.clear();
    }

    /// Starts again on the same port after [`HecReceiver::stop`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.port))
            .with_context(|| format!("the HEC receiver cannot bind 127.0.0.1:{}", self.port))?;
        self.serve(listener)
    }
}

impl Drop for HecReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

type Answer = (StatusCode, HeaderMap, String);

fn answer(status: StatusCode, body: Value) -> Answer {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    (status, headers, body.to_string())
}

fn error(status: StatusCode, code: u32, text: &str) -> Answer {
    answer(status, json!({ "text": text, "code": code }))
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<State>>>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let mut s = lock(&state);
    s.requests += 1;
    let path = uri.path().trim_end_matches('/');
    let ack_path = path == "/services/collector/ack";
    let event_path = matches!(
        path,
        "/services/collector" | "/services/collector/event" | "/services/collector/event/1.0"
    );
    if method != axum::http::Method::POST || !(ack_path || event_path) {
        return error(
            StatusCode::NOT_FOUND,
            404,
            "The requested URL was not found",
        );
    }
    match s.fault {
        Some(HecFault::Busy) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, 9, "Server is busy");
        }
        Some(HecFault::Garbage) => {
            return (
                StatusCode::OK,
                HeaderMap::new(),
                "<html><body>502 upstream\u{0}".into(),
            )
        }
        None => {}
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.map(|a| a.strip_prefix("Splunk ")) {
        None => return error(StatusCode::UNAUTHORIZED, 2, "Token is required"),
        Some(None) => return error(StatusCode::UNAUTHORIZED, 3, "Invalid authorization"),
        Some(Some(t)) if t != s.token => {
            return error(StatusCode::FORBIDDEN, 4, "Invalid token");
        }
        Some(Some(_)) => {}
    }
    let channel = headers
        .get(CHANNEL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(&uri, "channel"));
    if ack_path {
        return acks(&mut s, channel, &body);
    }
    let channel = match (s.ack, channel) {
        (true, None) => return error(StatusCode::BAD_REQUEST, 10, "Data channel is missing"),
        (_, Some(c)) if !is_guid(&c) => {
            return error(StatusCode::BAD_REQUEST, 11, "Invalid data channel")
        }
        (_, c) => c,
    };
    let envelopes = match parse_events(&body) {
        Ok(e) => e,
        Err(a) => return *a,
    };
    s.received.extend(envelopes.iter().cloned());
    let Some(channel) = channel.filter(|_| s.ack) else {
        s.indexed.extend(envelopes);
        return answer(StatusCode::OK, json!({ "text": "Success", "code": 0 }));
    };
    let withhold = s.withhold;
    let State {
        channels, indexed, ..
    } = &mut *s;
    let ch = channels.entry(channel.to_ascii_lowercase()).or_default();
    let id = ch.next;
    ch.next += 1;
    if withhold {
        ch.held.insert(id, envelopes);
    } else {
        indexed.extend(envelopes);
        ch.done.insert(id);
    }
    answer(
        StatusCode::OK,
        json!({ "text": "Success", "code": 0, "ackId": id }),
    )
}

/// The event objects of a body, or the documented error.
fn parse_events(body: &[u8]) -> Result<Vec<Value>, Box<Answer>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error(StatusCode::BAD_REQUEST, 5, "No data")));
    }
    let mut out = Vec::new();
    for (n, item) in serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .enumerate()
    {
        let invalid = |code: u32, text: &str| {
            Box::new(answer(
                StatusCode::BAD_REQUEST,
                json!({ "text": text, "code": code, "invalid-event-number": n }),
            ))
        };
        let item = match item {
            Ok(Value::Object(o)) => o,
            _ => return Err(invalid(6, "Invalid data format")),
        };
        match item.get("event") {
            None => return Err(invalid(12, "Event field is required")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(invalid(13, "Event field cannot be blank"))
            }
            Some(_) => {}
        }
        out.push(Value::Object(item));
    }
    Ok(out)
}

fn acks(s: &mut State, channel: Option<String>, body: &[u8]) -> Answer {
    if !s.ack {
        return error(StatusCode::BAD_REQUEST, 14, "ACK is disabled");
    }
    let Some(channel) = channel else {
        return error(StatusCode::BAD_REQUEST, 10, "Data channel is missing");
    };
    if !is_guid(&channel) {
        return error(StatusCode::BAD_REQUEST, 11, "Invalid data channel");
    }
    let ids: Option<Vec<u64>> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("acks").cloned())
        .and_then(|a| serde_json::from_value(a).ok());
    let Some(ids) = ids else {
        return error(StatusCode::BAD_REQUEST, 6, "Invalid data format");
    };
    let ch = s.channels.entry(channel.to_ascii_lowercase()).or_default();
    let statuses: serde_json::Map<String, Value> = ids
        .into_iter()
        .map(|id| (id.to_string(), Value::Bool(ch.done.remove(&id))))
        .collect();
    answer(StatusCode::OK, json!({ "acks": statuses }))
}
