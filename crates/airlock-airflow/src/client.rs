//! The HTTP machinery shared by every call: detection of the API generation, authentication
//! (JWT for Airflow 3, basic auth for Airflow 2), timeouts, bounded concurrency, retries with
//! backoff and jitter, and classification of failures.

use crate::error::{parse_error_body, truncate, Call, Error, ErrorKind};
use crate::stats::{CallStats, StatsRecorder};
use airlock_core::InstanceName;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OnceCell, Semaphore};
use url::Url;

/// Which API generation to speak to an instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ApiPreference {
    /// Detect: `GET /api/v2/version`, else `GET /api/v1/version`.
    #[default]
    Auto,
    /// Airflow 3 (JWT from `/auth/token`).
    V3,
    /// Airflow 2 (basic auth).
    V2,
}

/// The API generation an instance speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Airflow 3.x: JWT bearer tokens, FAB API under `/auth/fab/v1`.
    V3,
    /// Airflow 2.x: basic auth, FAB API under `/auth/fab/v1` (or `/api/v1` before FAB 1.x).
    V2,
}

/// What an instance said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// API generation.
    pub generation: Generation,
    /// Version string, e.g. `3.3.2`.
    pub version: String,
}

/// Everything needed to talk to one instance.
#[derive(Clone)]
pub struct Settings {
    /// airlock's name for the instance (appears in every error).
    pub instance: InstanceName,
    /// Base URL (API server for Airflow 3, webserver for Airflow 2).
    pub base_url: Url,
    /// Airflow user to log in as.
    pub username: String,
    /// Its password.
    pub password: SecretString,
    /// API generation.
    pub api: ApiPreference,
    /// Timeout of one HTTP call.
    pub timeout: Duration,
    /// Timeout to connect.
    pub connect_timeout: Duration,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Retries of a transient failure.
    pub max_retries: u32,
    /// First backoff delay; doubles with each retry, with jitter, capped at 10 s.
    pub retry_base: Duration,
    /// Extra CA certificates (PEM) to trust.
    pub ca_pem: Option<Vec<u8>>,
}

impl Settings {
    /// Settings with defaults for everything but the essentials.
    pub fn new(
        instance: InstanceName,
        base_url: Url,
        username: impl Into<String>,
        password: SecretString,
    ) -> Self {
        Self {
            instance,
            base_url,
            username: username.into(),
            password,
            api: ApiPreference::Auto,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_concurrency: 4,
            max_retries: 4,
            retry_base: Duration::from_millis(250),
            ca_pem: None,
        }
    }
}

/// How one attempt authenticates.
enum Auth {
    None,
    Bearer(SecretString),
    Basic,
}

struct Token {
    value: SecretString,
    renew_at: Instant,
}

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    http: reqwest::Client,
    server: OnceCell<ServerInfo>,
    /// `/auth/fab/v1` normally; `/api/v1` on an Airflow 2 without the FAB provider's API.
    pub(crate) fab_base: OnceCell<&'static str>,
    token: Mutex<Option<Token>>,
    /// Lifetime (`exp - iat`) of the last token Airflow issued, in seconds; 0 until one was
    /// issued that carries both claims.
    observed_lifetime: AtomicU64,
    permits: Semaphore,
    pub(crate) stats: StatsRecorder,
}

/// A connection to one Airflow instance. Cheap to clone; clones share the token, the
/// concurrency limit and the call statistics.
#[derive(Clone)]
pub struct AirflowClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for AirflowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirflowClient")
            .field("instance", &self.inner.settings.instance)
            .field("base_url", &self.inner.settings.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// One request as the pipeline sends it.
pub(crate) struct Req<'a> {
    pub call: Call,
    pub object: Option<String>,
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'a str, String)>,
    pub body: Option<serde_json::Value>,
    pub auth: bool,
}

impl<'a> Req<'a> {
    pub fn new(call: Call, method: Method, path: impl Into<String>) -> Self {
        Self {
            call,
            object: None,
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            auth: true,
        }
    }
    pub fn object(mut self, o: impl Into<String>) -> Self {
        self.object = Some(o.into());
        self
    }
    pub fn query(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.query.push((k, v.into()));
        self
    }
    pub fn json(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }
    pub fn anonymous(mut self) -> Self {
        self.auth = false;
        self
    }
}

/// A successful response.
pub(crate) struct Resp {
    pub status: StatusCode,
    pub body: bytes::Bytes,
}

impl AirflowClient {
    /// Builds a client. Fails only if the TLS settings are unusable.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls();
        if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error {
                instance: settings.instance.clone(),
                call: Call::Version,
                object: None,
                kind: ErrorKind::Tls(format!("cannot load ca_file: {e}")),
                after_ambiguous_attempt: false,
            })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().map_err(|e| Error {
            instance: settings.instance.clone(),
            call: Call::Version,
            object: None,
            kind: ErrorKind::Tls(format!("cannot build HTTP client: {e}")),
            after_ambiguous_attempt: false,
        })?;
        let permits = Semaphore::new(settings.max_concurrency.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                http,
                server: OnceCell::new(),
                fab_base: OnceCell::new(),
                token: Mutex::new(None),
                observed_lifetime: AtomicU64::new(0),
                permits,
                stats: StatsRecorder::default(),
            }),
        })
    }

    /// The instance's name.
    pub fn instance(&self) -> &InstanceName {
        &self.inner.settings.instance
    }

    /// The lifetime of the tokens this instance issues, as read from the `iat` and `exp`
    /// claims of the last token airlock obtained (Airflow 3); `None` before the first token,
    /// on Airflow 2 (basic auth, no tokens), or when a token lacks either claim.
    pub fn observed_token_lifetime(&self) -> Option<Duration> {
        match self.inner.observed_lifetime.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        }
    }

    /// Calls made so far, by kind, with retries and time spent waiting on Airflow.
    pub fn stats(&self) -> CallStats {
        self.inner.stats.snapshot()
    }

    pub(crate) fn err(&self, call: Call, object: Option<String>, kind: ErrorKind) -> Error {
        Error {
            instance: self.inner.settings.instance.clone(),
            call,
            object,
            kind,
            after_ambiguous_attempt: false,
        }
    }

    /// Detects the API generation and version (once; the answer is cached).
    pub async fn server(&self) -> Result<&ServerInfo, Error> {
        self.inner.server.get_or_try_init(|| self.detect()).await
    }

    async fn detect(&self) -> Result<ServerInfo, Error> {
        #[derive(serde::Deserialize)]
        struct Version {
            version: String,
        }
        let pref = self.inner.settings.api;
        let try_path = |path: &'static str| async move {
            let resp = self
                .send_detected(Req::new(Call::Version, Method::GET, path).anonymous())
                .await;
            match resp {
                Ok(r) => match serde_json::from_slice::<Version>(&r.body) {
                    Ok(v) => Ok(Some(v.version)),
                    Err(_) => Err(self.err(
                        Call::Version,
                        None,
                        ErrorKind::NotAirflow(format!(
                            "{path} did not return Airflow's version document"
                        )),
                    )),
                },
                Err(e)
                    if matches!(
                        e.kind,
                        ErrorKind::NotFound { .. }
                            | ErrorKind::Unauthorized { .. }
                            | ErrorKind::Forbidden { .. }
                            | ErrorKind::Rejected { .. }
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        if pref != ApiPreference::V2 {
            if let Some(version) = try_path("/api/v2/version").await? {
                return Ok(ServerInfo {
                    generation: Generation::V3,
                    version,
                });
            }
        }
        if pref != ApiPreference::V3 {
            if let Some(version) = try_path("/api/v1/version").await? {
                return Ok(ServerInfo {
                    generation: Generation::V2,
                    version,
                });
            }
        }
        Err(self.err(
            Call::Version,
            None,
            ErrorKind::NotAirflow(format!(
                "{} answers neither /api/v2/version nor /api/v1/version",
                self.inner.settings.base_url
            )),
        ))
    }

    /// Sends a request through the full pipeline and returns the parsed JSON body.
    pub(crate) async fn json<T: DeserializeOwned>(&self, req: Req<'_>) -> Result<T, Error> {
        let (call, object) = (req.call, req.object.clone());
        let resp = self.send(req).await?;
        if resp.body.trim_ascii_start().starts_with(b"<") {
            // Airflow 3's UI answers unknown paths with its HTML page (200), e.g. /auth/fab/v1
            // when another auth manager is configured.
            return Err(self.err(
                call,
                object,
                ErrorKind::UnexpectedHtml {
                    status: resp.status.as_u16(),
                },
            ));
        }
        serde_json::from_slice(&resp.body).map_err(|e| {
            self.err(
                call,
                object,
                ErrorKind::Malformed(format!(
                    "invalid JSON ({}): {}",
                    resp.status,
                    truncate(&e.to_string(), 120)
                )),
            )
        })
    }

    /// Sends a request: waits for a permit, authenticates, retries what is worth retrying.
    pub(crate) async fn send(&self, req: Req<'_>) -> Result<Resp, Error> {
        // Detect before taking a permit: detection sends requests of its own.
        if req.auth {
            self.server().await?;
        }
        self.send_detected(req).await
    }

    /// `send` once detection is done (detection itself sends anonymous requests through here).
    async fn send_detected(&self, req: Req<'_>) -> Result<Resp, Error> {
        let _permit = self.inner.permits.acquire().await.map_err(|_| {
            self.err(
                req.call,
                req.object.clone(),
                ErrorKind::InvalidRequest("client shut down".into()),
            )
        })?;
        let settings = &self.inner.settings;
        let mut attempt = 0u32;
        let mut ambiguous = false;
        let mut reauthenticated = false;
        loop {
            let auth = match (req.auth, self.generation_if_known()) {
                (false, _) => Auth::None,
                (true, Some(Generation::V3)) => Auth::Bearer(self.bearer().await?),
                (true, Some(Generation::V2)) => Auth::Basic,
                (true, None) => {
                    return Err(self.err(
                        req.call,
                        req.object.clone(),
                        ErrorKind::InvalidRequest("API generation not detected".into()),
                    ))
                }
            };
            let result = self.attempt(&req, auth).await;
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            // One fresh token on a 401: the token may have expired or been revoked early.
            if matches!(err.kind, ErrorKind::Unauthorized { status: 401, .. })
                && req.auth
                && !reauthenticated
                && self.generation_if_known() == Some(Generation::V3)
            {
                reauthenticated = true;
                self.invalidate_token().await;
                continue;
            }
            let class_retry = err.is_retryable();
            if !class_retry || attempt >= settings.max_retries {
                return Err(Error {
                    after_ambiguous_attempt: ambiguous,
                    ..err
                });
            }
            // A write that failed after it may have reached Airflow makes a later 409 ours.
            if req.call.is_write()
                && !matches!(
                    err.kind,
                    ErrorKind::Unreachable(_) | ErrorKind::RateLimited { .. }
                )
            {
                ambiguous = true;
            }
            let delay = match err.kind {
                ErrorKind::RateLimited {
                    retry_after: Some(d),
                } => d.min(Duration::from_secs(60)),
                _ => backoff(settings.retry_base, attempt),
            };
            tracing::debug!(instance = %settings.instance, call = %req.call, attempt, ?delay, error = %err, "retrying");
            self.inner.stats.retry();
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn generation_if_known(&self) -> Option<Generation> {
        self.inner.server.get().map(|s| s.generation)
    }

    async fn attempt(&self, req: &Req<'_>, auth: Auth) -> Result<Resp, Error> {
        let settings = &self.inner.settings;
        let fail = |kind| self.err(req.call, req.object.clone(), kind);
        let mut url = settings.base_url.clone();
        {
            let base = url.path().trim_end_matches('/').to_string();
            url.set_path(&format!("{base}{}", req.path));
        }
        if !req.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(req.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut builder = self.inner.http.request(req.method.clone(), url);
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        builder = match auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.bearer_auth(token.expose_secret()),
            Auth::Basic => {
                builder.basic_auth(&settings.username, Some(settings.password.expose_secret()))
            }
        };
        let started = Instant::now();
        let sent = builder.send().await;
        let result = match sent {
            Err(e) => Err(fail(transport_kind(&e, settings.timeout))),
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match read_capped(resp, MAX_BODY_BYTES).await {
                    Err(BodyError::Transport(e)) => Err(fail(transport_kind(&e, settings.timeout))),
                    Err(BodyError::TooLarge) => Err(fail(ErrorKind::Malformed(format!(
                        "response body larger than {} MiB",
                        MAX_BODY_BYTES >> 20
                    )))),
                    Ok(body) if status.is_success() => Ok(Resp { status, body }),
                    Ok(body) => Err(fail(status_kind(
                        status,
                        retry_after,
                        &body,
                        self.generation_if_known(),
                    ))),
                }
            }
        };
        self.inner.stats.record(req.call, started.elapsed());
        result
    }

    async fn bearer(&self) -> Result<SecretString, Error> {
        let mut guard = self.inner.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.renew_at {
                return Ok(t.value.clone());
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenResp {
            access_token: SecretString,
        }
        let s = &self.inner.settings;
        let body =
            serde_json::json!({ "username": s.username, "password": s.password.expose_secret() });
        // Token requests go through `attempt` directly: `send` would wait for a permit held by
        // the caller, and a 401 here means bad credentials, not an expired token.
        let req = Req::new(Call::Token, Method::POST, "/auth/token")
            .json(body)
            .anonymous();
        let mut tries = 0;
        let resp: TokenResp = loop {
            match self.attempt(&req, Auth::None).await {
                Ok(r) => {
                    break serde_json::from_slice(&r.body).map_err(|_| {
                        self.err(
                            Call::Token,
                            None,
                            ErrorKind::Malformed("token response has no access_token".into()),
                        )
                    })?
                }
                Err(e) if e.is_retryable() && tries < s.max_retries => {
                    tries += 1;
                    self.inner.stats.retry();
                    tokio::time::sleep(backoff(s.retry_base, tries)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let observed = token_claims_lifetime(resp.access_token.expose_secret());
        self.inner.observed_lifetime.store(
            observed.map(|d| d.as_secs()).unwrap_or(0),
            Ordering::Relaxed,
        );
        let lifetime =
            token_lifetime(resp.access_token.expose_secret()).unwrap_or(Duration::from_secs(300));
        // Renew once 80% of the lifetime has passed (at most a minute early for long tokens),
        // so a call never starts with a token about to expire.
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        let value = resp.access_token;
        *guard = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(value)
    }

    async fn invalidate_token(&self) {
        *self.inner.token.lock().await = None;
    }
}

/// Exponential backoff with equal jitter: half the delay fixed, half random.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.min(16))
        .min(Duration::from_secs(10));
    let half = exp / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Lifetime of a JWT from its `iat` and `exp` claims (not verified: airlock only uses it to
/// decide when to renew; Airflow verifies it).
/// The most airlock reads of one Airflow response. A page of 100 users or every role with its
/// permissions is far smaller; a server (or something in between) sending more is refused
/// rather than buffered without end.
const MAX_BODY_BYTES: usize = 32 << 20;

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// Reads a response body, refusing one longer than `max` bytes (by its `Content-Length`
/// before reading, and by what arrives while reading).
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn token_lifetime(jwt: &str) -> Option<Duration> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    let iat = claims
        .get("iat")
        .and_then(|v| v.as_i64())
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    u64::try_from(exp - iat).ok().map(Duration::from_secs)
}

/// Lifetime of a JWT from its `iat` and `exp` claims, only when it has both (what Airflow
/// actually grants, compared with `token_lifetime_secs`).
fn token_claims_lifetime(jwt: &str) -> Option<Duration> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    let iat = claims.get("iat")?.as_i64()?;
    u64::try_from(exp.checked_sub(iat)?)
        .ok()
        .map(Duration::from_secs)
}

fn transport_kind(e: &reqwest::Error, timeout: Duration) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout(timeout);
    }
    let chain = error_chain(e);
    if is_tls(e) {
        return ErrorKind::Tls(chain);
    }
    if e.is_connect() {
        return ErrorKind::Unreachable(chain);
    }
    if e.is_decode() || e.is_body() || e.is_request() {
        return ErrorKind::Interrupted(chain);
    }
    ErrorKind::Interrupted(chain)
}

fn is_tls(e: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        src = s.source();
    }
    // Some connector layers wrap the rustls error in a way that hides it from `source()`;
    // rustls's own Display prefixes are stable, so fall back to them.
    let text = error_chain(e);
    [
        "invalid peer certificate",
        "received fatal alert",
        "peer is incompatible",
        "InvalidCertificate",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The innermost causes, joined: reqwest's own message ("error sending request") says little.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    // URLs in reqwest messages carry no credentials (we never put them there), but keep the
    // message short and on one line.
    truncate(&parts.join(": "), 200)
}

fn status_kind(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    gen: Option<Generation>,
) -> ErrorKind {
    let detail = parse_error_body(body);
    match status.as_u16() {
        401 => ErrorKind::Unauthorized {
            status: 401,
            detail,
        },
        // Airflow 2 answers a wrong basic-auth password with 403 and no detail.
        403 if gen == Some(Generation::V2)
            && detail.as_deref().is_none_or(|d| d == "Forbidden") =>
        {
            ErrorKind::Unauthorized {
                status: 403,
                detail: Some("credentials rejected or lacking permission".into()),
            }
        }
        403 => ErrorKind::Forbidden { detail },
        404 => ErrorKind::NotFound { detail },
        409 => ErrorKind::Conflict { detail },
        429 => ErrorKind::RateLimited { retry_after },
        s if s >= 500 => ErrorKind::Server { status: s, detail },
        s => ErrorKind::Rejected { status: s, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        let base = Duration::from_millis(100);
        for attempt in 0..20 {
            let d = backoff(base, attempt);
            let exp = base
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(10));
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn the_observed_lifetime_needs_both_claims() {
        let jwt = |claims: &str| {
            format!(
                "h.{}.s",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims)
            )
        };
        assert_eq!(
            token_claims_lifetime(&jwt(r#"{"iat":1000,"exp":8200}"#)),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(token_claims_lifetime(&jwt(r#"{"exp":8200}"#)), None);
        assert_eq!(
            token_claims_lifetime(&jwt(r#"{"iat":9000,"exp":8200}"#)),
            None
        );
        assert_eq!(token_claims_lifetime("not-a-jwt"), None);
    }

    #[test]
    fn token_lifetime_comes_from_the_jwt_claims() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"1","iat":1000,"exp":87400}"#);
        let jwt = format!("eyJhbGciOiJIUzUxMiJ9.{payload}.sig");
        assert_eq!(token_lifetime(&jwt), Some(Duration::from_secs(86400)));
        assert_eq!(token_lifetime("not-a-jwt"), None);
    }

    #[test]
    fn statuses_map_to_classes() {
        assert!(matches!(
            status_kind(StatusCode::BAD_GATEWAY, None, b"", None),
            ErrorKind::Server { status: 502, .. }
        ));
        assert!(matches!(
            status_kind(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(3)),
                b"",
                None
            ),
            ErrorKind::RateLimited {
                retry_after: Some(_)
            }
        ));
        assert!(matches!(
            status_kind(StatusCode::FORBIDDEN, None, b"{}", Some(Generation::V3)),
            ErrorKind::Forbidden { .. }
        ));
        assert!(matches!(
            status_kind(StatusCode::FORBIDDEN, None, b"{}", Some(Generation::V2)),
            ErrorKind::Unauthorized { .. }
        ));
        assert!(matches!(
            status_kind(StatusCode::UNPROCESSABLE_ENTITY, None, b"{}", None),
            ErrorKind::Rejected { status: 422, .. }
        ));
    }
}
