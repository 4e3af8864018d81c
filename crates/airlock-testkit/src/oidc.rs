//! A real OpenID Connect provider on 127.0.0.1, configured like a JumpCloud OIDC application.
//!
//! [`OidcProvider::start`] (or [`OidcProvider::builder`]) runs npm's `oidc-provider`
//! ([`OIDC_PROVIDER_VERSION`], installed by `scripts/install-oidc-provider.sh` under
//! `${AIRLOCK_CACHE:-$HOME/.cache/airlock}/node/`) with the kit's own server script
//! (`crates/airlock-testkit/oidc/server.mjs`) on a free port, under the same supervisor as the
//! Airflow servers (`airflow/supervisor.rs`): the process group dies when the handle is dropped or
//! the test process ends, however it ends. A missing install is an error that says to run the
//! script; nothing is skipped.
//!
//! Like JumpCloud:
//! - the issuer has a trailing slash, `http://127.0.0.1:PORT/` (JumpCloud's is
//!   `https://oauth.id.jumpcloud.com/`), and discovery is at
//!   `{issuer}.well-known/openid-configuration`;
//! - one confidential client ([`OidcProvider::client_id`], [`OidcProvider::client_secret`],
//!   `client_secret_basic`) with the authorization code flow, PKCE (S256) required, and no consent
//!   screen;
//! - ID tokens signed RS256 (`aud` = the client id) that carry `email`, `email_verified`,
//!   `name`, `preferred_username` (scopes `email` and `profile`) and the group attribute
//!   (`groups` unless [`OidcProviderBuilder::groups_claim`] names it otherwise) as a list or a
//!   single string, as each [`OidcUser`] says ([`Groups`]).
//!
//! Beyond JumpCloud (whose access tokens are opaque): access tokens are JWTs (`typ: at+jwt`,
//! RS256) for one resource server, through the provider's resource indicators feature, with
//! `aud` = [`OidcProvider::audience`] (default [`DEFAULT_AUDIENCE`]) and the same user claims
//! as the ID token, so that an API can be called with either token. An optional second signing
//! key (ES256) is published in the JWKS ([`OidcProviderBuilder::es256_key`]), and
//! [`OidcProvider::rotate_keys`] restarts the provider on the same port with new keys first.
//!
//! [`OidcProvider::sign_in`] goes through the provider's real endpoints as a browser would:
//! `/auth` with PKCE, the login page of the interaction (a form naming the user: there are no
//! passwords), back to `/auth`, the redirect to the client with the code (its `state` and `iss`
//! checked), then `/token` with the client's credentials and the code verifier.
//!
//! What it does not do: TLS, refresh tokens, logout, dynamic client registration, more than one
//! client, or keep sessions and codes over a restart.
//!
//! ```no_run
//! use airlock_testkit::oidc::{jwt_payload, Groups, OidcProvider, OidcUser};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let idp = OidcProvider::start(vec![OidcUser::new("alice", Groups::list(["airflow-admins"]))])?;
//! let tokens = idp.sign_in("alice@example.com").await?;
//! assert_eq!(jwt_payload(&tokens.id_token)?["aud"], idp.client_id());
//! assert_eq!(jwt_payload(&tokens.access_token)?["aud"], idp.audience());
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use url::Url;

use crate::airflow::supervisor::Supervised;
use crate::airflow::{cache_dir, free_port, random_secret};

/// The `oidc-provider` release the kit runs (pinned in `oidc/package-lock.json`).
pub const OIDC_PROVIDER_VERSION: &str = "9.13.3";

/// The access tokens' audience unless [`OidcProviderBuilder::audience`] says otherwise.
pub const DEFAULT_AUDIENCE: &str = "airlock-api";

/// The claim holding a user's groups unless [`OidcProviderBuilder::groups_claim`] says otherwise.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";

/// The scopes [`OidcProvider::sign_in`] asks for (JumpCloud's standard scopes).
pub const SIGN_IN_SCOPE: &str = "openid email profile";

/// The server script, written into each provider's directory.
const SERVER_SCRIPT: &str = include_str!("../oidc/server.mjs");

/// What the script prints once it serves (and has written `discovery.json` and `jwks.json`).
const READY_LINE: &str = "airlock-oidc: ready";

/// The cache directory `scripts/install-oidc-provider.sh` installs into, under the cache root.
const INSTALL_DIR: &str = "oidc-provider-9.13.3";

/// What to do when the provider is not installed.
const INSTALL_HINT: &str = "run `scripts/install-oidc-provider.sh` from the repository root";

/// How long the provider may take to print its ready line after being spawned.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// How often the log is polled while the provider starts.
const STARTUP_POLL: Duration = Duration::from_millis(20);

/// How many log lines a startup error carries.
const LOG_TAIL_LINES: usize = 30;

/// How many times a start is retried when another process took the free port first.
const PORT_ATTEMPTS: usize = 3;

/// How long one HTTP request of a sign-in may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many requests a sign-in may make before the token request (a loop guard).
const MAX_SIGN_IN_STEPS: usize = 10;

/// A user the provider knows, given at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcUser {
    /// The subject (`sub`), unique; JumpCloud's are 24 hex digits.
    pub sub: String,
    /// `email`, unique (ignoring case).
    pub email: String,
    /// `preferred_username`.
    pub username: String,
    /// `name`.
    pub name: String,
    /// The group attribute.
    pub groups: Groups,
}

impl OidcUser {
    /// A user with a random JumpCloud-shaped `sub`, email `<username>@example.com` and a name
    /// made from the username.
    pub fn new(username: &str, groups: Groups) -> Self {
        let mut name: Vec<char> = username.chars().collect();
        if let Some(first) = name.first_mut() {
            *first = first.to_ascii_uppercase();
        }
        Self {
            sub: uuid::Uuid::new_v4().simple().to_string()[..24].to_owned(),
            email: format!("{username}@example.com"),
            username: username.to_owned(),
            name: format!("{} Example", name.into_iter().collect::<String>()),
            groups,
        }
    }
}

/// The group attribute of a user, as it appears in tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Groups {
    /// A JSON array of strings (also when it has one element or none).
    List(Vec<String>),
    /// A single JSON string (what some providers send for one group).
    One(String),
    /// No group claim at all.
    None,
}

impl Groups {
    /// [`Groups::List`] of `groups`.
    pub fn list<I, S>(groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::List(groups.into_iter().map(Into::into).collect())
    }

    /// [`Groups::One`] of `group`.
    pub fn one(group: impl Into<String>) -> Self {
        Self::One(group.into())
    }

    fn to_json(&self) -> Value {
        match self {
            Self::List(groups) => json!(groups),
            Self::One(group) => json!(group),
            Self::None => Value::Null,
        }
    }
}

/// The token response of a sign-in.
#[derive(Clone)]
pub struct Tokens {
    /// The ID token (RS256, `aud` = the client id).
    pub id_token: String,
    /// The JWT access token (RS256, `typ: at+jwt`, `aud` = the audience).
    pub access_token: String,
    /// The access token's lifetime in seconds, as the provider said.
    pub expires_in: u64,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("id_token", &"<redacted>")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Options of a provider before it starts; see [`OidcProvider::builder`].
#[derive(Debug, Clone)]
pub struct OidcProviderBuilder {
    users: Vec<OidcUser>,
    audience: String,
    redirect_uri: String,
    id_token_ttl: Duration,
    access_token_ttl: Duration,
    es256_key: bool,
    groups_claim: String,
}

impl OidcProviderBuilder {
    /// The access tokens' `aud` (default [`DEFAULT_AUDIENCE`]). It is also the resource
    /// indicator when it is an absolute URI; see [`OidcProvider::resource`].
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The client's one redirect URI (default `http://127.0.0.1/oidc/callback`: nothing needs to
    /// listen there, [`OidcProvider::sign_in`] stops at the redirect).
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = uri.into();
        self
    }

    /// The ID tokens' lifetime (default one hour; whole seconds, at least one).
    pub fn id_token_ttl(mut self, ttl: Duration) -> Self {
        self.id_token_ttl = ttl;
        self
    }

    /// The access tokens' lifetime (default one hour; whole seconds, at least one).
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = ttl;
        self
    }

    /// Also publish an ES256 key in the JWKS, after the RS256 one (default no). Tokens are still
    /// signed RS256.
    pub fn es256_key(mut self, yes: bool) -> Self {
        self.es256_key = yes;
        self
    }

    /// The name of the group claim (default [`DEFAULT_GROUPS_CLAIM`]; JumpCloud lets an admin
    /// name it).
    pub fn groups_claim(mut self, claim: impl Into<String>) -> Self {
        self.groups_claim = claim.into();
        self
    }

    /// Starts the provider; blocking (like the other servers of the kit).
    pub fn start(self) -> anyhow::Result<OidcProvider> {
        self.validate()?;
        let node =
            find_program("node").with_context(|| format!("cannot find node; {INSTALL_HINT}"))?;
        let openssl = find_program("openssl").context(
            "cannot find openssl (for PKCE); install Debian's package: apt-get install -y openssl",
        )?;
        let modules = installed_modules(&cache_dir())?;

        let home = tempfile::Builder::new()
            .prefix("airlock-oidc-")
            .tempdir()
            .context("cannot create a temporary directory for the OIDC provider")?;
        let dir = home.path();
        write_file(&dir.join("server.mjs"), SERVER_SCRIPT.as_bytes())?;
        std::os::unix::fs::symlink(&modules, dir.join("node_modules"))
            .with_context(|| format!("cannot link {} into {}", modules.display(), dir.display()))?;

        let settings = Settings {
            client_id: uuid::Uuid::new_v4().to_string(),
            client_secret: random_secret(40),
            resource: resource_indicator(&self.audience),
            cookie_key: random_secret(32),
            builder: self,
        };
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let config = dir.join("config.json");
            write_file(&config, settings.config_json(port).to_string().as_bytes())?;
            match spawn_and_wait(&node, dir, 1) {
                Ok(process) => {
                    let (discovery, jwks) = read_published(dir)?;
                    let endpoint = |name: &str| {
                        discovery[name]
                            .as_str()
                            .map(str::to_owned)
                            .with_context(|| format!("the discovery document has no {name}"))
                    };
                    return Ok(OidcProvider {
                        port,
                        issuer: issuer_for(port),
                        authorization_endpoint: endpoint("authorization_endpoint")?,
                        token_endpoint: endpoint("token_endpoint")?,
                        jwks,
                        settings,
                        node,
                        openssl,
                        generation: 1,
                        process,
                        home,
                    });
                }
                Err(StartError::PortTaken(err)) if attempt < PORT_ATTEMPTS => {
                    eprintln!("airlock-testkit: retrying OIDC provider start: {err:#}");
                    attempt += 1;
                }
                Err(StartError::PortTaken(err) | StartError::Other(err)) => return Err(err),
            }
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let mut subs = HashSet::new();
        let mut emails = HashSet::new();
        for user in &self.users {
            if user.sub.is_empty() {
                bail!("an OIDC user has an empty sub (email {:?})", user.email);
            }
            if !subs.insert(user.sub.as_str()) {
                bail!("two OIDC users have the sub {:?}", user.sub);
            }
            if !emails.insert(user.email.to_lowercase()) {
                bail!("two OIDC users have the email {:?}", user.email);
            }
        }
        if self.audience.is_empty() {
            bail!("the OIDC audience must not be empty");
        }
        if self.groups_claim.is_empty() {
            bail!("the OIDC groups claim must have a name");
        }
        let redirect = Url::parse(&self.redirect_uri)
            .with_context(|| format!("the redirect URI {:?} is not a URL", self.redirect_uri))?;
        if !matches!(redirect.scheme(), "http" | "https") || redirect.fragment().is_some() {
            bail!(
                "the redirect URI {:?} must be http(s) without a fragment",
                self.redirect_uri
            );
        }
        for (what, ttl) in [
            ("ID token", self.id_token_ttl),
            ("access token", self.access_token_ttl),
        ] {
            if ttl.as_secs() == 0 || ttl.subsec_nanos() != 0 {
                bail!("the {what} lifetime must be whole seconds, at least one; got {ttl:?}");
            }
        }
        Ok(())
    }
}

/// Everything the server script's configuration is made of, but the port.
struct Settings {
    builder: OidcProviderBuilder,
    client_id: String,
    client_secret: String,
    resource: String,
    cookie_key: String,
}

impl Settings {
    fn config_json(&self, port: u16) -> Value {
        let b = &self.builder;
        json!({
            "port": port,
            "issuer": issuer_for(port),
            "users": b.users.iter().map(|u| json!({
                "sub": u.sub,
                "email": u.email,
                "preferred_username": u.username,
                "name": u.name,
                "groups": u.groups.to_json(),
            })).collect::<Vec<_>>(),
            "client": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uris": [b.redirect_uri],
            },
            "audience": b.audience,
            "resource": self.resource,
            "groups_claim": b.groups_claim,
            "id_token_ttl": b.id_token_ttl.as_secs(),
            "access_token_ttl": b.access_token_ttl.as_secs(),
            "es256": b.es256_key,
            "cookie_keys": [self.cookie_key],
        })
    }
}

/// A running `oidc-provider` on 127.0.0.1; stopped (whole process group) when dropped.
pub struct OidcProvider {
    port: u16,
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks: Value,
    settings: Settings,
    node: PathBuf,
    openssl: PathBuf,
    /// How many times the provider was started (a log file each).
    generation: u32,
    // Field order matters: the process stops (and its supervisor removes the home) before the
    // TempDir is dropped.
    process: Supervised,
    home: tempfile::TempDir,
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer)
            .field("client_id", &self.settings.client_id)
            .field("client_secret", &"<redacted>")
            .field("audience", &self.settings.builder.audience)
            .field("users", &self.settings.builder.users.len())
            .field("home", &self.home.path())
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// A provider knowing `users`, with the defaults of [`OidcProvider::builder`]; blocking.
    pub fn start(users: Vec<OidcUser>) -> anyhow::Result<Self> {
        Self::builder(users).start()
    }

    /// Options: audience, token lifetimes, redirect URI, an ES256 key, the groups claim's name.
    pub fn builder(users: Vec<OidcUser>) -> OidcProviderBuilder {
        OidcProviderBuilder {
            users,
            audience: DEFAULT_AUDIENCE.to_owned(),
            redirect_uri: "http://127.0.0.1/oidc/callback".to_owned(),
            id_token_ttl: Duration::from_secs(3600),
            access_token_ttl: Duration::from_secs(3600),
            es256_key: false,
            groups_claim: DEFAULT_GROUPS_CLAIM.to_owned(),
        }
    }

    /// The issuer, `http://127.0.0.1:PORT/`, with its trailing slash.
    pub fn issuer(&self) -> String {
        self.issuer.clone()
    }

    /// `{issuer}.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}.well-known/openid-configuration", self.issuer)
    }

    /// The port on 127.0.0.1 (the same after [`OidcProvider::rotate_keys`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The client's id (a UUID), the ID tokens' `aud`.
    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    /// The client's secret (`client_secret_basic`), a throw-away test credential.
    pub fn client_secret(&self) -> &str {
        &self.settings.client_secret
    }

    /// The client's one redirect URI.
    pub fn redirect_uri(&self) -> &str {
        &self.settings.builder.redirect_uri
    }

    /// The access tokens' `aud`.
    pub fn audience(&self) -> &str {
        &self.settings.builder.audience
    }

    /// The resource indicator (RFC 8707) of the access tokens' resource server: the audience
    /// when it is an absolute URI, else `urn:airlock-testkit:resource:<audience>`. The
    /// provider uses it by default; a client need not send it.
    pub fn resource(&self) -> &str {
        &self.settings.resource
    }

    /// The name of the group claim.
    pub fn groups_claim(&self) -> &str {
        &self.settings.builder.groups_claim
    }

    /// The users the provider knows.
    pub fn users(&self) -> &[OidcUser] {
        &self.settings.builder.users
    }

    /// The public JWKS exactly as the provider serves it at its `jwks_uri` (read back by the
    /// server at start), signing key first.
    pub fn jwks(&self) -> Value {
        self.jwks.clone()
    }

    /// The provider's throw-away directory (configuration, keys, logs).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The last `lines` lines of the current provider process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Signs the user named by `login` (their sub, email or username) in to the client through
    /// the provider's authorization code flow with PKCE (S256), like a browser with a cookie
    /// jar: `/auth`, the interaction's login page and form, back to `/auth`, the redirect to the
    /// client (whose `state` and `iss` are checked), then `/token` with the client's secret and
    /// the code verifier. Returns the ID token (its `nonce` checked) and the JWT access token.
    pub async fn sign_in(&self, login: &str) -> anyhow::Result<Tokens> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        let verifier = random_secret(64);
        let challenge = pkce_challenge(&self.openssl, &verifier).await?;
        let state = random_secret(24);
        let nonce = random_secret(24);
        let mut auth = Url::parse(&self.authorization_endpoint)
            .context("the authorization endpoint is not a URL")?;
        auth.query_pairs_mut()
            .append_pair("client_id", self.client_id())
            .append_pair("redirect_uri", self.redirect_uri())
            .append_pair("response_type", "code")
            .append_pair("scope", SIGN_IN_SCOPE)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");

        let callback = self.authorize(&http, auth, login).await?;
        let param = |name: &str| {
            callback
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(error) = param("error") {
            bail!(
                "the provider refused to sign {login:?} in: {error}: {}",
                param("error_description").unwrap_or_default()
            );
        }
        if param("state").as_deref() != Some(state.as_str()) {
            bail!("the provider's redirect has the wrong state");
        }
        if param("iss").as_deref() != Some(self.issuer.as_str()) {
            bail!(
                "the provider's redirect has iss {:?}, want {:?}",
                param("iss"),
                self.issuer
            );
        }
        let code = param("code").context("the provider's redirect has no code")?;

        let response = http
            .post(&self.token_endpoint)
            .basic_auth(self.client_id(), Some(self.client_secret()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", self.redirect_uri()),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .with_context(|| format!("cannot reach the token endpoint {}", self.token_endpoint))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("the token endpoint's answer is not JSON")?;
        if !status.is_success() {
            bail!(
                "the token endpoint refused the code of {login:?} ({status}): {} {}",
                body["error"],
                body["error_description"]
            );
        }
        let field = |name: &str| {
            body[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("the token response has no {name}"))
        };
        let tokens = Tokens {
            id_token: field("id_token")?,
            access_token: field("access_token")?,
            expires_in: body["expires_in"]
                .as_u64()
                .context("the token response has no expires_in")?,
        };
        if jwt_payload(&tokens.id_token)?["nonce"] != nonce.as_str() {
            bail!("the ID token has the wrong nonce");
        }
        Ok(tokens)
    }

    /// The front-channel part of a sign-in: from `/auth` to the redirect to the client, whose
    /// URL it returns.
    async fn authorize(
        &self,
        http: &reqwest::Client,
        auth: Url,
        login: &str,
    ) -> anyhow::Result<Url> {
        let redirect = Url::parse(self.redirect_uri()).context("the redirect URI is not a URL")?;
        let mut jar = CookieJar::default();
        let mut url = auth;
        let mut form: Option<Vec<(&str, &str)>> = None;
        let mut submitted = false;
        for _ in 0..MAX_SIGN_IN_STEPS {
            let mut request = match &form {
                Some(fields) => http.post(url.clone()).form(fields),
                None => http.get(url.clone()),
            };
            if let Some(cookies) = jar.header_for(&url) {
                request = request.header(COOKIE, cookies);
            }
            let method = if form.is_some() { "POST" } else { "GET" };
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot {method} {url}"))?;
            jar.store(&url, response.headers());
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .with_context(|| format!("{status} from {method} {url} without a Location"))?;
                let target = url
                    .join(location)
                    .with_context(|| format!("bad Location {location:?} from {url}"))?;
                if same_endpoint(&target, &redirect) {
                    return Ok(target);
                }
                url = target;
                form = None;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            if status == reqwest::StatusCode::UNAUTHORIZED && submitted {
                bail!("the provider at {} knows no user {login:?}", self.issuer);
            }
            if status.is_success() && !submitted {
                if let Some(action) = form_action(&body) {
                    url = url
                        .join(&action)
                        .with_context(|| format!("bad form action {action:?} at {url}"))?;
                    form = Some(vec![("login", login)]);
                    submitted = true;
                    continue;
                }
            }
            let excerpt: String = body.chars().take(500).collect();
            bail!("unexpected {status} from {method} {url} while signing {login:?} in: {excerpt}");
        }
        bail!("signing {login:?} in took more than {MAX_SIGN_IN_STEPS} requests")
    }

    /// Restarts the provider on the same port, with the same users and client, and new signing
    /// keys (RS256, and ES256 when configured) first in its JWKS; with `keep_old` the previous
    /// keys stay published after them, otherwise they are gone. Sessions and unused codes are
    /// lost. Blocking.
    pub fn rotate_keys(&mut self, keep_old: bool) -> anyhow::Result<()> {
        let dir = self.home.path().to_owned();
        // The supervisor must not remove the directory: the keys and configuration stay.
        self.process.stop_keeping_home();
        let output = Command::new(&self.node)
            .arg(dir.join("server.mjs"))
            .arg("rotate-keys")
            .arg(dir.join("config.json"))
            .arg(if keep_old { "keep" } else { "drop" })
            .stdin(Stdio::null())
            .output()
            .context("cannot run node to rotate the OIDC keys")?;
        if !output.status.success() {
            bail!(
                "rotating the OIDC keys failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let generation = self.generation + 1;
        let process = spawn_and_wait(&self.node, &dir, generation).map_err(|err| match err {
            StartError::PortTaken(err) | StartError::Other(err) => err.context(format!(
                "cannot restart the OIDC provider on port {}",
                self.port
            )),
        })?;
        let (_, jwks) = read_published(&dir)?;
        self.process = process;
        self.generation = generation;
        self.jwks = jwks;
        Ok(())
    }
}

/// The header of the JWT `token` (not verified).
pub fn jwt_header(token: &str) -> anyhow::Result<Value> {
    jwt_part(token, 0)
}

/// The payload of the JWT `token` (not verified).
pub fn jwt_payload(token: &str) -> anyhow::Result<Value> {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, index: usize) -> anyhow::Result<Value> {
    let part = token
        .split('.')
        .nth(index)
        .context("not a JWT: too few parts")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .context("not a JWT: a part is not base64url")?;
    serde_json::from_slice(&bytes).context("not a JWT: a part is not JSON")
}

fn issuer_for(port: u16) -> String {
    format!("http://127.0.0.1:{port}/")
}

/// The resource indicator for `audience` (RFC 8707 wants an absolute URI without fragment).
fn resource_indicator(audience: &str) -> String {
    match Url::parse(audience) {
        Ok(url) if url.fragment().is_none() => audience.to_owned(),
        _ => format!("urn:airlock-testkit:resource:{audience}"),
    }
}

/// The installed `node_modules`, or an error saying to run the install script.
fn installed_modules(cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache.join("node").join(INSTALL_DIR);
    let package = dir
        .join("node_modules")
        .join("oidc-provider")
        .join("package.json");
    let version = std::fs::read(&package)
        .ok()
        .filter(|_| dir.join(".airlock-installed").is_file())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|p| p["version"].as_str().map(str::to_owned));
    match version {
        Some(version) if version == OIDC_PROVIDER_VERSION => Ok(dir.join("node_modules")),
        Some(version) => bail!(
            "{} holds oidc-provider {version}, want {OIDC_PROVIDER_VERSION}; {INSTALL_HINT}",
            dir.display()
        ),
        None => bail!(
            "oidc-provider {OIDC_PROVIDER_VERSION} is missing or incomplete at {}; {INSTALL_HINT}",
            dir.display()
        ),
    }
}

enum StartError {
    /// The port was taken: worth another try on another port.
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(err: anyhow::Error) -> Self {
        Self::Other(err)
    }
}

/// Starts `node server.mjs serve config.json` in `dir` and waits for its ready line.
fn spawn_and_wait(node: &Path, dir: &Path, generation: u32) -> Result<Supervised, StartError> {
    let log = dir.join(format!("provider-{generation}.log"));
    let mut env = vec![("NODE_ENV".to_owned(), "development".to_owned())];
    if std::env::var_os("AIRLOCK_TESTKIT_VERBOSE").is_some() {
        env.push(("DEBUG".to_owned(), "oidc-provider:*".to_owned()));
    }
    let started = Instant::now();
    let mut process = Supervised::spawn(
        node,
        &[
            dir.join("server.mjs").display().to_string(),
            "serve".to_owned(),
            dir.join("config.json").display().to_string(),
        ],
        &env,
        dir,
        &log,
    )?;
    let deadline = started + STARTUP_DEADLINE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let failure = if text.lines().any(|line| line.starts_with(READY_LINE)) {
            if std::env::var_os("AIRLOCK_TESTKIT_VERBOSE").is_some() {
                eprintln!(
                    "airlock-testkit: oidc-provider up in {:.2} s ({})",
                    started.elapsed().as_secs_f64(),
                    dir.display()
                );
            }
            return Ok(process);
        } else if let Some(reason) = process.exit_reason() {
            format!("the OIDC provider stopped during startup: {reason}")
        } else if Instant::now() >= deadline {
            format!(
                "the OIDC provider was not ready within {} s",
                STARTUP_DEADLINE.as_secs()
            )
        } else {
            thread::sleep(STARTUP_POLL);
            continue;
        };
        // Leave the directory for a retry (same keys) or the TempDir's own cleanup.
        process.stop_keeping_home();
        let tail = process.log_tail(LOG_TAIL_LINES);
        let err = anyhow::anyhow!("{failure}; last lines of its log:\n{tail}");
        return Err(if tail.contains("EADDRINUSE") {
            StartError::PortTaken(err)
        } else {
            StartError::Other(err)
        });
    }
}

/// The discovery document and JWKS the server read back from itself before its ready line.
fn read_published(dir: &Path) -> anyhow::Result<(Value, Value)> {
    let read = |name: &str| -> anyhow::Result<Value> {
        let path = dir.join(name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
    };
    Ok((read("discovery.json")?, read("jwks.json")?))
}

/// base64url(SHA-256(verifier)), with the `openssl` command (the kit has no hash crate).
async fn pkce_challenge(openssl: &Path, verifier: &str) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new(openssl)
        .args(["dgst", "-sha256", "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", openssl.display()))?;
    let mut stdin = child
        .stdin
        .take()
        .expect("invariant: stdin was configured as a pipe");
    let written = stdin.write_all(verifier.as_bytes()).await;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .context("cannot wait for openssl")?;
    written.context("cannot write to openssl")?;
    if !output.status.success() || output.stdout.len() != 32 {
        bail!(
            "`openssl dgst -sha256` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(output.stdout))
}

/// Whether `a` and `b` are the same URL but for query and fragment.
fn same_endpoint(a: &Url, b: &Url) -> bool {
    let strip = |u: &Url| {
        let mut u = u.clone();
        u.set_query(None);
        u.set_fragment(None);
        u
    };
    strip(a) == strip(b)
}

/// The `action` of the first `<form>` in `html` (the kit's own login page: plain attributes).
fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    let form = &form[..form.find('>')?];
    let start = form.find("action=\"")? + "action=\"".len();
    let end = start + form[start..].find('"')?;
    Some(form[start..end].replace("&amp;", "&"))
}

/// The cookies of one sign-in: one host, matched by path (RFC 6265 §5.1.4), dropped when the
/// server clears them. Enough for the provider's `_interaction`, `_interaction_resume` and
/// `_session` cookies; not a general cookie store.
#[derive(Debug, Default)]
struct CookieJar {
    cookies: Vec<Cookie>,
}

#[derive(Debug)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

impl CookieJar {
    fn store(&mut self, url: &Url, headers: &HeaderMap) {
        for header in headers.get_all(SET_COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            let mut path = default_cookie_path(url.path());
            let mut cleared = value.is_empty();
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                match key.trim().to_ascii_lowercase().as_str() {
                    "path" if val.trim().starts_with('/') => val.trim().clone_into(&mut path),
                    "max-age" => cleared |= val.trim().parse::<i64>().is_ok_and(|s| s <= 0),
                    "expires" => cleared |= val.contains("1970"),
                    _ => {}
                }
            }
            self.cookies.retain(|c| !(c.name == name && c.path == path));
            if !cleared {
                self.cookies.push(Cookie {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    path,
                });
            }
        }
    }

    fn header_for(&self, url: &Url) -> Option<String> {
        let request_path = url.path();
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| path_matches(&c.path, request_path))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }
}

fn default_cookie_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => request_path[..i].to_owned(),
    }
}

fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}

/// `name` on `PATH`, or in `/usr/local/bin` and `/usr/bin`.
fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("`{name}` is not installed"))
}

fn write_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn set_cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(SET_COOKIE, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    #[test]
    fn the_jar_sends_cookies_only_under_their_path_and_forgets_cleared_ones() {
        let mut jar = CookieJar::default();
        let auth = Url::parse("http://127.0.0.1:1/auth?x=1").expect("url");
        jar.store(
            &auth,
            &set_cookies(&[
                "_interaction=abc; path=/interaction/abc; samesite=lax; httponly",
                "_interaction_resume=abc; path=/auth/abc; httponly",
                "_session=s1; path=/; httponly",
            ]),
        );
        let at = |jar: &CookieJar, path: &str| {
            jar.header_for(&Url::parse(&format!("http://127.0.0.1:1{path}")).expect("url"))
                .unwrap_or_default()
        };
        assert_eq!(
            at(&jar, "/interaction/abc"),
            "_interaction=abc; _session=s1"
        );
        assert_eq!(
            at(&jar, "/interaction/abc/login"),
            "_interaction=abc; _session=s1"
        );
        assert_eq!(at(&jar, "/interaction/abcd"), "_session=s1");
        assert_eq!(
            at(&jar, "/auth/abc"),
            "_interaction_resume=abc; _session=s1"
        );

        jar.store(
            &auth,
            &set_cookies(&[
                "_interaction_resume=; path=/auth/abc; expires=Thu, 01 Jan 1970 00:00:00 GMT",
            ]),
        );
        assert_eq!(at(&jar, "/auth/abc"), "_session=s1");
    }

    #[test]
    fn the_default_cookie_path_is_the_request_directory() {
        assert_eq!(default_cookie_path("/auth"), "/");
        assert_eq!(
            default_cookie_path("/interaction/abc/login"),
            "/interaction/abc"
        );
    }

    #[test]
    fn the_login_form_action_is_found() {
        let html = r#"<h1>x</h1><form id="login" method="post" action="/interaction/u1/login">"#;
        assert_eq!(form_action(html).as_deref(), Some("/interaction/u1/login"));
        assert_eq!(form_action("<p>no form</p>"), None);
    }

    #[test]
    fn a_redirect_to_the_client_is_recognised_whatever_its_query() {
        let redirect = Url::parse("http://127.0.0.1/oidc/callback").expect("url");
        let hit = Url::parse("http://127.0.0.1/oidc/callback?code=x&state=y").expect("url");
        let miss = Url::parse("http://127.0.0.1:80/oidc/callbackx?code=x").expect("url");
        assert!(same_endpoint(&hit, &redirect));
        assert!(!same_endpoint(&miss, &redirect));
    }

    #[test]
    fn a_plain_audience_gets_a_urn_as_resource_indicator() {
        assert_eq!(
            resource_indicator("airlock-api"),
            "urn:airlock-testkit:resource:airlock-api"
        );
        assert_eq!(
            resource_indicator("https://api.example.com/airlock"),
            "https://api.example.com/airlock"
        );
    }

    #[test]
    fn a_missing_install_is_an_error_that_names_the_install_script() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = installed_modules(empty.path()).expect_err("nothing installed there");
        let message = format!("{err:#}");
        assert!(
            message.contains("scripts/install-oidc-provider.sh"),
            "{message}"
        );
        assert!(message.contains(INSTALL_DIR), "{message}");
    }

    #[test]
    fn duplicate_users_are_refused_before_anything_starts() {
        let alice = OidcUser::new("alice", Groups::None);
        let mut twin = OidcUser::new("alice2", Groups::None);
        twin.email = "ALICE@example.com".to_owned();
        let err = OidcProvider::builder(vec![alice, twin])
            .start()
            .expect_err("same email twice");
        assert!(format!("{err:#}").contains("email"), "{err:#}");
    }

    #[test]
    fn jwt_parts_decode_without_verification() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.sig";
        assert_eq!(jwt_header(token).expect("header")["alg"], "RS256");
        assert_eq!(jwt_payload(token).expect("payload")["aud"], "x");
        assert!(jwt_payload("nope").is_err());
    }
}
