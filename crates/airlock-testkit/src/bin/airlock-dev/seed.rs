//! Seeds a server through the FAB REST API (`/auth/fab/v1`), the way an administrator's script
//! would: a JWT from `POST /auth/token` on Airflow 3, HTTP basic auth on Airflow 2.
//!
//! The API is much faster than `airflow users create` (a Python start per user), and creates
//! run concurrently; the server's password hashing is what bounds the rate. Transient failures
//! (connection errors, 5xx, 429 — SQLite's "database is locked" shows up as a 500) are retried
//! with backoff; a create whose retry answers 409 had succeeded the first time.
//!
//! What it does not do: set login times or other fields the API does not accept, or delete
//! anything.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_testkit::{AirflowServer, AirflowVersion};
use anyhow::{bail, Context as _};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Attempts per request (the first one included).
const ATTEMPTS: u32 = 6;

/// Backoff before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The role Airflow gives a user created without roles (its registration role).
const PLACEHOLDER_ROLE: &str = "Public";

/// The custom role `--sample` creates, and its permissions (action, resource).
pub const SAMPLE_ROLE: &str = "marketing-analyst";
const SAMPLE_ROLE_PERMISSIONS: &[(&str, &str)] = &[("can_read", "DAGs"), ("can_read", "DAG Runs")];

/// The `--sample` users: username, first name, last name, roles.
const SAMPLE_USERS: &[(&str, &str, &str, &[&str])] = &[
    ("ada.lovelace", "Ada", "Lovelace", &["Admin"]),
    ("grace.hopper", "Grace", "Hopper", &["Op"]),
    ("alan.turing", "Alan", "Turing", &["User"]),
    ("katherine.johnson", "Katherine", "Johnson", &["Viewer"]),
    ("edsger.dijkstra", "Edsger", "Dijkstra", &["Viewer", "User"]),
    ("hedy.lamarr", "Hedy", "Lamarr", &["Viewer", SAMPLE_ROLE]),
    ("barbara.liskov", "Barbara", "Liskov", &[]),
];

/// One user to create.
#[derive(Debug, Clone)]
struct UserSpec {
    username: String,
    first_name: String,
    last_name: String,
    roles: Vec<String>,
}

impl UserSpec {
    fn email(&self) -> String {
        format!("{}@example.com", self.username)
    }

    /// The synthetic user number `n` (1-based): 60 % Viewer, 30 % User, 10 % Op.
    fn synthetic(n: usize) -> Self {
        let role = match n % 10 {
            0 => "Op",
            7..=9 => "User",
            _ => "Viewer",
        };
        Self {
            username: format!("user-{n:05}"),
            first_name: "Synthetic".to_owned(),
            last_name: format!("User {n:05}"),
            roles: vec![role.to_owned()],
        }
    }
}

enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
}

/// A client for one server's FAB API, logged in as its admin.
pub struct Seeder {
    http: reqwest::Client,
    base_url: String,
    version: AirflowVersion,
    auth: Auth,
    /// The password every created user gets (random per run, never printed).
    user_password: String,
}

impl Seeder {
    /// Logs in as the server's admin.
    pub async fn connect(server: &AirflowServer) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        let auth = match server.version {
            AirflowVersion::V3 => {
                let url = format!("{}/auth/token", server.base_url);
                let response = http
                    .post(&url)
                    .json(&json!({
                        "username": server.admin_user,
                        "password": server.admin_password,
                    }))
                    .send()
                    .await
                    .context("cannot reach POST /auth/token")?;
                let status = response.status();
                if !status.is_success() {
                    bail!("POST /auth/token answered {status}");
                }
                let body: Value = response
                    .json()
                    .await
                    .context("POST /auth/token answered something that is not JSON")?;
                let token = body["access_token"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .context("POST /auth/token answered no access_token")?;
                Auth::Bearer(token.to_owned())
            }
            AirflowVersion::V2 => Auth::Basic {
                user: server.admin_user.clone(),
                password: server.admin_password.clone(),
            },
        };
        let user_password: String = {
            use rand::Rng as _;
            rand::thread_rng()
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(20)
                .map(char::from)
                .collect()
        };
        Ok(Arc::new(Self {
            http,
            base_url: server.base_url.clone(),
            version: server.version,
            auth,
            user_password,
        }))
    }

    /// Creates the sample role and users; returns how many users.
    pub async fn create_sample(self: &Arc<Self>, parallel: usize) -> anyhow::Result<usize> {
        let actions: Vec<Value> = SAMPLE_ROLE_PERMISSIONS
            .iter()
            .map(|(action, resource)| {
                json!({ "action": { "name": action }, "resource": { "name": resource } })
            })
            .collect();
        self.send(
            Method::POST,
            "/auth/fab/v1/roles",
            &json!({ "name": SAMPLE_ROLE, "actions": actions }),
        )
        .await
        .with_context(|| format!("cannot create role {SAMPLE_ROLE}"))?;

        let users: Vec<UserSpec> = SAMPLE_USERS
            .iter()
            .map(|(username, first, last, roles)| UserSpec {
                username: (*username).to_owned(),
                first_name: (*first).to_owned(),
                last_name: (*last).to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            })
            .collect();
        let count = users.len();
        self.create_all(users, parallel, None).await?;
        Ok(count)
    }

    /// Creates `count` synthetic users, `parallel` at a time, with progress on stderr.
    pub async fn create_synthetic(
        self: &Arc<Self>,
        count: usize,
        parallel: usize,
    ) -> anyhow::Result<()> {
        let users = (1..=count).map(UserSpec::synthetic);
        self.create_all(
            users,
            parallel,
            Some(Progress::new("synthetic users", count)),
        )
        .await
    }

    async fn create_all(
        self: &Arc<Self>,
        users: impl IntoIterator<Item = UserSpec>,
        parallel: usize,
        mut progress: Option<Progress>,
    ) -> anyhow::Result<()> {
        let mut users = users.into_iter();
        let mut in_flight = JoinSet::new();
        loop {
            while in_flight.len() < parallel.max(1) {
                let Some(user) = users.next() else { break };
                let this = Arc::clone(self);
                in_flight.spawn(async move { this.create_user(&user).await });
            }
            let Some(done) = in_flight.join_next().await else {
                break;
            };
            // On the first failure the JoinSet is dropped, which aborts the other creates.
            done.context("a user-creating task failed")??;
            if let Some(progress) = progress.as_mut() {
                progress.one_done();
            }
        }
        if let Some(progress) = progress.as_mut() {
            progress.finish();
        }
        Ok(())
    }

    async fn create_user(&self, user: &UserSpec) -> anyhow::Result<()> {
        let no_roles = user.roles.is_empty();
        // Airflow 3 refuses a user without roles when no registration role is configured, and
        // Airflow 2 would give it the registration role: create it with a placeholder role and
        // take that away afterwards.
        let roles: Vec<&str> = if no_roles {
            vec![PLACEHOLDER_ROLE]
        } else {
            user.roles.iter().map(String::as_str).collect()
        };
        let mut body = json!({
            "username": user.username,
            "email": user.email(),
            "first_name": user.first_name,
            "last_name": user.last_name,
            "roles": roles.iter().map(|r| json!({ "name": r })).collect::<Vec<_>>(),
        });
        body["password"] = json!(self.user_password);
        self.send(Method::POST, "/auth/fab/v1/users", &body)
            .await
            .with_context(|| format!("cannot create user {}", user.username))?;
        if no_roles {
            // Airflow 2 validates the whole user body even with an update mask; Airflow 3
            // accepts it too, so both get the same request.
            let patch = json!({
                "username": user.username,
                "email": user.email(),
                "first_name": user.first_name,
                "last_name": user.last_name,
                "roles": [],
            });
            let path = format!("/auth/fab/v1/users/{}?update_mask=roles", user.username);
            self.send(Method::PATCH, &path, &patch)
                .await
                .with_context(|| format!("cannot remove the roles of user {}", user.username))?;
        }
        Ok(())
    }

    /// Sends `method path` with a JSON body, retrying transient failures.
    async fn send(&self, method: Method, path: &str, body: &Value) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base_url);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut request = self.http.request(method.clone(), &url).json(body);
            request = match &self.auth {
                Auth::Bearer(token) => request.bearer_auth(token),
                Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            };
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Ok(());
                    }
                    // A retried create that answers 409 had gone through the first time.
                    if status == StatusCode::CONFLICT && attempt > 1 && method == Method::POST {
                        return Ok(());
                    }
                    let text = response.text().await.unwrap_or_default();
                    let message = format!(
                        "{method} {path} answered {status}: {}",
                        self.redacted(&text)
                    );
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        bail!("{message} ({})", self.version);
                    }
                    message
                }
                Err(err) => format!("{method} {path} failed: {err}"),
            };
            if attempt >= ATTEMPTS {
                bail!("{failure} (gave up after {ATTEMPTS} attempts)");
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// An error body, shortened, with the users' password taken out (a validation error may
    /// echo the request).
    fn redacted(&self, text: &str) -> String {
        let text = text.replace(&self.user_password, "<redacted>");
        let text = text.trim();
        match text.char_indices().nth(300) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

/// A progress line on stderr: rewritten in place on a terminal, a line every few seconds
/// otherwise (a log file).
struct Progress {
    what: &'static str,
    total: usize,
    done: usize,
    started: Instant,
    last_shown: Instant,
    terminal: bool,
}

impl Progress {
    fn new(what: &'static str, total: usize) -> Self {
        let now = Instant::now();
        Self {
            what,
            total,
            done: 0,
            started: now,
            last_shown: now,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn one_done(&mut self) {
        self.done += 1;
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last_shown.elapsed() >= every {
            self.show();
        }
    }

    fn finish(&mut self) {
        self.show();
        if self.terminal {
            eprintln!();
        }
    }

    fn show(&mut self) {
        self.last_shown = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = self.done as f64 / secs.max(0.001);
        let line = format!(
            "airlock-dev: {}: {}/{} ({rate:.1}/s, {secs:.0} s)",
            self.what, self.done, self.total
        );
        if self.terminal {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_users_are_numbered_and_mostly_viewers() {
        let users: Vec<UserSpec> = (1..=100).map(UserSpec::synthetic).collect();
        assert_eq!(users[0].username, "user-00001");
        assert_eq!(users[99].username, "user-00100");
        let count = |role: &str| users.iter().filter(|u| u.roles == [role]).count();
        assert_eq!(count("Viewer"), 60);
        assert_eq!(count("User"), 30);
        assert_eq!(count("Op"), 10);
    }

    #[test]
    fn sample_users_include_one_without_roles_and_one_with_the_custom_role() {
        assert!(SAMPLE_USERS.iter().any(|(_, _, _, roles)| roles.is_empty()));
        assert!(SAMPLE_USERS
            .iter()
            .any(|(_, _, _, roles)| roles.contains(&SAMPLE_ROLE)));
    }
}
