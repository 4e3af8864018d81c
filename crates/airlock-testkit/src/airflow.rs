//! Real Apache Airflow servers for integration tests, on 127.0.0.1.
//!
//! Two pinned versions come from the virtualenvs `scripts/install-airflow.sh` installs under
//! `${AIRLOCK_CACHE:-$HOME/.cache/airlock}/venvs/`: [`AirflowVersion::V3`] (3.3.2 with the FAB
//! auth manager, provider 3.10.2, JWT tokens from `POST /auth/token`) and
//! [`AirflowVersion::V2`] (2.11.2 with FAB basic auth on the REST API). A missing venv is an
//! error that says to run the script; nothing is skipped.
//!
//! [`shared`] starts one server per version and test binary on first use (blocking std code,
//! so it works from any test, with or without a tokio runtime); [`start`] and
//! [`AirflowServer::builder`] start private servers that stop when dropped. Either way the
//! server cannot outlive the test process: see [`supervisor`] for how.
//!
//! Each server gets a free port, a throw-away `AIRFLOW_HOME` with a SQLite database copied from
//! a cached migrated-and-seeded template (see [`template`]), and an `admin` user in the `Admin`
//! role. What it does not do: run a scheduler, DAG processor or triggerer (the REST API is what
//! airlock talks to), or use any database but SQLite.

pub(crate) mod supervisor;
mod template;

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rand::distributions::Alphanumeric;
use rand::Rng as _;

use self::supervisor::Supervised;

/// The user name of the admin every test server has.
pub const ADMIN_USER: &str = "admin";

/// Environment variable naming the cache root (venvs and templates).
pub const CACHE_ENV: &str = "AIRLOCK_CACHE";

/// How long a server may take to answer its health check after being spawned.
const STARTUP_DEADLINE: Duration = Duration::from_secs(120);

/// How often the health check is polled while a server starts.
const STARTUP_POLL: Duration = Duration::from_millis(250);

/// How many log lines a startup error carries.
const LOG_TAIL_LINES: usize = 40;

/// How many times a start is retried when another process took the free port first.
const PORT_ATTEMPTS: usize = 3;

/// Which pinned Airflow a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AirflowVersion {
    /// Airflow 3.3.2 with `apache-airflow-providers-fab` 3.10.2 as auth manager.
    V3,
    /// Airflow 2.11.2 with the FAB provider's basic-auth API backend.
    V2,
}

impl AirflowVersion {
    /// The Airflow release, as `/api/v{1,2}/version` reports it.
    pub fn airflow_version(self) -> &'static str {
        match self {
            Self::V3 => "3.3.2",
            Self::V2 => "2.11.2",
        }
    }

    /// The health endpoint that answers 200 once the server is up.
    pub fn health_path(self) -> &'static str {
        match self {
            Self::V3 => "/api/v2/monitor/health",
            Self::V2 => "/health",
        }
    }

    fn venv_name(self) -> &'static str {
        match self {
            Self::V3 => "airflow-3.3.2",
            Self::V2 => "airflow-2.11.2",
        }
    }

    /// The argument `scripts/install-airflow.sh` takes to install only this version.
    fn install_arg(self) -> &'static str {
        match self {
            Self::V3 => "3",
            Self::V2 => "2",
        }
    }

    fn server_args(self, port: u16) -> Vec<String> {
        let port = port.to_string();
        let args: [&str; 5] = match self {
            Self::V3 => ["api-server", "--host", "127.0.0.1", "--port", &port],
            Self::V2 => ["webserver", "--hostname", "127.0.0.1", "--port", &port],
        };
        args.iter().map(|s| (*s).to_owned()).collect()
    }
}

impl fmt::Display for AirflowVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "airflow {}", self.airflow_version())
    }
}

/// The cache root: `$AIRLOCK_CACHE`, else `$HOME/.cache/airlock`.
pub fn cache_dir() -> PathBuf {
    let dir = match std::env::var_os(CACHE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache").join("airlock")
        }
    };
    // The path ends up in a sqlite://// URL and in a child's environment: make it absolute.
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The virtualenv of `version`, or an error telling how to install it.
pub fn venv_dir(version: AirflowVersion) -> anyhow::Result<PathBuf> {
    venv_dir_in(&cache_dir(), version)
}

fn venv_dir_in(cache: &Path, version: AirflowVersion) -> anyhow::Result<PathBuf> {
    let venv = cache.join("venvs").join(version.venv_name());
    if !venv.join("bin").join("airflow").is_file() || !venv.join(".airlock-installed").is_file() {
        bail!(
            "{version} virtualenv is missing or incomplete at {}: run `scripts/install-airflow.sh` \
             (or `scripts/install-airflow.sh {}`) from the repository root",
            venv.display(),
            version.install_arg()
        );
    }
    Ok(venv)
}

/// A running Airflow server on 127.0.0.1; stopped (whole process group) when dropped.
pub struct AirflowServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    /// Always [`ADMIN_USER`].
    pub admin_user: String,
    /// The admin's password (a throw-away test credential).
    pub admin_password: String,
    /// Which Airflow this is.
    pub version: AirflowVersion,
    port: u16,
    venv: PathBuf,
    env: Vec<(String, String)>,
    // Field order matters: the process stops (and its supervisor removes the home) before the
    // TempDir is dropped.
    process: Supervised,
    home: tempfile::TempDir,
}

impl fmt::Debug for AirflowServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AirflowServer")
            .field("base_url", &self.base_url)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"<redacted>")
            .field("version", &self.version)
            .field("airflow_home", &self.home.path())
            .finish_non_exhaustive()
    }
}

static SHARED_V3: OnceLock<Result<AirflowServer, String>> = OnceLock::new();
static SHARED_V2: OnceLock<Result<AirflowServer, String>> = OnceLock::new();

/// One server per test binary and version, started on first use, shared by all tests of the
/// binary. Never dropped: it is stopped when the test process exits (see the module docs).
///
/// Blocks while the server starts; tests calling it concurrently wait for the same start.
///
/// # Panics
/// When the server cannot be started (the message says why, with the server log's tail); every
/// later call panics with the same message instead of trying again.
pub fn shared(version: AirflowVersion) -> &'static AirflowServer {
    let cell = match version {
        AirflowVersion::V3 => &SHARED_V3,
        AirflowVersion::V2 => &SHARED_V2,
    };
    match cell.get_or_init(|| start(version).map_err(|err| format!("{err:#}"))) {
        Ok(server) => server,
        Err(message) => panic!("shared {version} server is unavailable: {message}"),
    }
}

/// A fresh, private server (for tests that must not share), stopped when dropped.
pub fn start(version: AirflowVersion) -> anyhow::Result<AirflowServer> {
    AirflowServer::builder(version).start()
}

/// Options for a private server; see [`AirflowServer::builder`].
#[derive(Debug, Clone)]
pub struct AirflowServerBuilder {
    version: AirflowVersion,
    extra_env: Vec<(String, String)>,
    fresh_database: bool,
}

impl AirflowServerBuilder {
    /// Sets an extra environment variable for the server and its CLI (for example
    /// `AIRFLOW__FAB__CACHE_TTL`); later values win over the kit's defaults.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    /// Migrates and seeds a new database with this server's environment instead of copying
    /// the cached template (7 s slower; for settings that change what `db migrate` does).
    #[must_use]
    pub fn fresh_database(mut self) -> Self {
        self.fresh_database = true;
        self
    }

    /// Starts the server and waits until its health endpoint answers 200.
    pub fn start(self) -> anyhow::Result<AirflowServer> {
        let venv = venv_dir(self.version)?;
        let template = if self.fresh_database {
            None
        } else {
            Some(template::ensure(self.version, &venv, &cache_dir())?)
        };
        let mut attempt = 1;
        loop {
            match self.start_once(&venv, template.as_ref()) {
                Ok(server) => return Ok(server),
                // The free port was only free when we looked: another process may have taken it.
                Err(StartError::PortTaken(err)) if attempt < PORT_ATTEMPTS => {
                    eprintln!("airlock-testkit: retrying {} start: {err:#}", self.version);
                    attempt += 1;
                }
                Err(StartError::PortTaken(err) | StartError::Other(err)) => return Err(err),
            }
        }
    }

    fn start_once(
        &self,
        venv: &Path,
        template: Option<&template::Template>,
    ) -> Result<AirflowServer, StartError> {
        let version = self.version;
        let home = tempfile::Builder::new()
            .prefix("airlock-airflow-")
            .tempdir()
            .context("cannot create a temporary AIRFLOW_HOME")?;
        let db = home.path().join("airflow.db");
        let mut env = server_env(version, home.path(), &db);
        env.extend(self.extra_env.iter().cloned());

        let admin_password = match template {
            Some(template) => {
                std::fs::copy(&template.db, &db).with_context(|| {
                    format!(
                        "cannot copy the database template {}",
                        template.db.display()
                    )
                })?;
                template.admin_password.clone()
            }
            None => {
                let password = random_secret(24);
                template::seed_database(venv, &env, &password)?;
                password
            }
        };

        let port = free_port()?;
        let log_path = home.path().join("server.log");
        let started = Instant::now();
        let mut process = Supervised::spawn(
            &venv.join("bin").join("airflow"),
            &version.server_args(port),
            &env,
            home.path(),
            &log_path,
        )?;
        wait_until_healthy(&mut process, version, port)?;
        if std::env::var_os("AIRLOCK_TESTKIT_VERBOSE").is_some() {
            eprintln!(
                "airlock-testkit: {version} up on port {port} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }

        Ok(AirflowServer {
            base_url: format!("http://127.0.0.1:{port}"),
            admin_user: ADMIN_USER.to_owned(),
            admin_password,
            version,
            port,
            venv: venv.to_owned(),
            env,
            process,
            home,
        })
    }
}

impl AirflowServer {
    /// Options for a private server of `version`; finish with [`AirflowServerBuilder::start`].
    pub fn builder(version: AirflowVersion) -> AirflowServerBuilder {
        AirflowServerBuilder {
            version,
            extra_env: Vec::new(),
            fresh_database: false,
        }
    }

    /// The server's throw-away `AIRFLOW_HOME` (holds `airflow.db` and `server.log`).
    pub fn airflow_home(&self) -> &Path {
        self.home.path()
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file the server's stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.home.path().join("server.log")
    }

    /// The last `lines` lines of the server log, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Runs `airflow ARGS...` with this server's environment (same home and database), for
    /// seeding or inspecting; returns its stdout. Blocking (about 3.5 s per call, Python start).
    ///
    /// SQLite allows one writer: a write racing a request that writes may fail with
    /// "database is locked", so seed before the test drives the server.
    pub fn airflow_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        run_airflow(&self.venv, &self.env, args)
    }
}

enum StartError {
    /// The server could not bind its port: worth another try on another port.
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(err: anyhow::Error) -> Self {
        Self::Other(err)
    }
}

fn wait_until_healthy(
    process: &mut Supervised,
    version: AirflowVersion,
    port: u16,
) -> Result<(), StartError> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    let path = version.health_path();
    loop {
        let failure = if let Some(reason) = process.exit_reason() {
            format!("{version} server on port {port} stopped during startup: {reason}")
        } else if http_get_status(port, path) == Some(200) {
            return Ok(());
        } else if Instant::now() >= deadline {
            format!(
                "{version} server on port {port} did not answer 200 on {path} within {} s",
                STARTUP_DEADLINE.as_secs()
            )
        } else {
            thread::sleep(STARTUP_POLL);
            continue;
        };
        let tail = process.log_tail(LOG_TAIL_LINES);
        let err = anyhow::anyhow!("{failure}; last lines of the server log:\n{tail}");
        return Err(
            if tail.to_ascii_lowercase().contains("address already in use") {
                StartError::PortTaken(err)
            } else {
                StartError::Other(err)
            },
        );
    }
}

/// The environment every process of a server gets (server and CLI alike).
pub(crate) fn server_env(version: AirflowVersion, home: &Path, db: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("AIRFLOW_HOME".into(), home.display().to_string()),
        ("AIRFLOW__CORE__LOAD_EXAMPLES".into(), "False".into()),
        (
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN".into(),
            format!("sqlite:///{}", db.display()),
        ),
        // Empty: connections and variables are stored unencrypted, fine for throw-away data.
        ("AIRFLOW__CORE__FERNET_KEY".into(), String::new()),
        ("AIRFLOW__WEBSERVER__SECRET_KEY".into(), random_secret(40)),
    ];
    match version {
        AirflowVersion::V3 => env.extend([
            (
                "AIRFLOW__CORE__AUTH_MANAGER".into(),
                "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager".into(),
            ),
            ("AIRFLOW__API_AUTH__JWT_SECRET".into(), random_secret(40)),
            ("AIRFLOW__API__SECRET_KEY".into(), random_secret(40)),
        ]),
        AirflowVersion::V2 => env.extend([
            (
                "AIRFLOW__API__AUTH_BACKENDS".into(),
                "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth".into(),
            ),
            ("AIRFLOW__WEBSERVER__WORKERS".into(), "1".into()),
        ]),
    }
    env
}

/// Runs the venv's `airflow` CLI with `env`; returns stdout, or an error with the output's tail.
pub(crate) fn run_airflow(
    venv: &Path,
    env: &[(String, String)],
    args: &[&str],
) -> anyhow::Result<String> {
    // Name the command by its leading words only: later arguments may be passwords.
    let name: Vec<&str> = args
        .iter()
        .copied()
        .take_while(|a| !a.starts_with('-'))
        .collect();
    let name = format!("airflow {}", name.join(" "));
    let mut command = Command::new(venv.join("bin").join("airflow"));
    command.args(args).stdin(Stdio::null());
    supervisor::apply_env(&mut command, env);
    let output = command
        .output()
        .with_context(|| format!("cannot run `{name}` from {}", venv.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let combined = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let lines: Vec<&str> = combined.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        bail!(
            "`{name}` failed ({}); last lines of its output:\n{tail}",
            output.status
        );
    }
    Ok(stdout)
}

/// A random alphanumeric string for secrets and throw-away passwords.
pub(crate) fn random_secret(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A port that was free on 127.0.0.1 a moment ago (the OS picks it; we release it for the server).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("cannot read the bound port")?
        .port())
}

/// The status of `GET path` on 127.0.0.1:`port`, or `None` when nothing answers properly.
///
/// Plain std so that it works without any async runtime.
pub(crate) fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // The status line is all we need; it comes in the first bytes.
    let mut head = [0_u8; 64];
    let mut filled = 0;
    while filled < head.len() {
        match stream.read(&mut head[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
        if head[..filled].contains(&b'\n') {
            break;
        }
    }
    let line = std::str::from_utf8(&head[..filled]).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_alphanumeric() {
        let a = random_secret(40);
        let b = random_secret(40);
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn sqlite_url_has_four_slashes_for_an_absolute_path() {
        let env = server_env(
            AirflowVersion::V3,
            Path::new("/h"),
            Path::new("/h/airflow.db"),
        );
        let conn = env
            .iter()
            .find(|(k, _)| k == "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
            .map(|(_, v)| v.as_str());
        assert_eq!(conn, Some("sqlite:////h/airflow.db"));
    }

    #[test]
    fn a_missing_venv_is_an_error_that_names_the_install_script() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = venv_dir_in(empty.path(), AirflowVersion::V2).expect_err("no venv there");
        let message = format!("{err:#}");
        assert!(
            message.contains("scripts/install-airflow.sh 2"),
            "{message}"
        );
        assert!(message.contains("airflow-2.11.2"), "{message}");
    }

    #[test]
    fn status_probe_sees_nothing_on_a_closed_port() {
        let port = free_port().expect("free port");
        assert_eq!(http_get_status(port, "/health"), None);
    }
}
