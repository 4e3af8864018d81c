//! Throw-away PostgreSQL clusters of a test's own, to stop, crash and start again under a
//! running airlock.
//!
//! [`PgCluster::start`] (or [`PgCluster::builder`]) runs `initdb` into a fresh temporary
//! directory and starts `postgres` on 127.0.0.1 on a free port, with its Unix socket inside that
//! directory and trust authentication for the superuser [`SUPERUSER`]. Speed settings are safe
//! for process crashes but not for machine crashes: `fsync` and `full_page_writes` are off (the
//! kernel keeps what a killed server wrote), commits stay synchronous, so [`PgCluster::kill`]
//! loses nothing that was committed.
//!
//! The cluster can be stopped (fast shutdown: sessions are ended, the server checkpoints and
//! exits), killed (SIGKILL of the postmaster, a crash: the next start runs crash recovery) and
//! started again on the **same port with the same data**, so clients that reconnect find it
//! again. Dropping the cluster stops it and removes its directory. It cannot outlive the test
//! process however that ends: `postgres` runs under the same supervisor as the kit's Airflow and
//! slapd servers (a shell whose stdin is a pipe from the test process; when the pipe closes it
//! sends SIGINT, a fast shutdown, to the postmaster, SIGKILL to whatever is left after
//! [`STOP_GRACE`], and removes the directory). A deliberate [`PgCluster::stop`] or
//! [`PgCluster::kill`] tells that supervisor to keep the directory for the next start.
//!
//! Binaries come from `$AIRLOCK_TEST_PG_BINDIR` ([`PG_BINDIR_ENV`]), else `pg_config --bindir`,
//! else the newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package, which
//! `scripts/test.sh` installs). A missing binary is an error that says how to install it;
//! nothing is skipped. initdb and postgres refuse to run as root: when the tests run as root,
//! the kit gives the directory to the `postgres` OS user and runs both as that user (`setpriv`).
//!
//! The API is blocking std code: a start takes initdb's 1 to 3 s, a stop or start again well
//! under a second. It works from any test, with or without a tokio runtime, and a
//! [`PgCluster`] is `Send + Sync` (every method takes `&self`), so a test may share it.
//!
//! [`PgClusterBuilder::tls`] turns TLS on with a server certificate from a
//! [`crate::TestCa`] and makes the server refuse plaintext over TCP (`hostssl` lines only in
//! `pg_hba.conf`), so a client that does not use TLS is turned away by the server itself.
//!
//! What it does not do: replication, certificates of its own (the test brings a
//! [`crate::TestCa`]), or move to another port: if another process takes the port while the
//! cluster is stopped, the next start fails and says so.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sqlx::{Connection as _, PgConnection};

use crate::airflow::free_port;
use crate::airflow::supervisor::{log_tail, StopPolicy, Supervised};
use crate::test_ca::IssuedCert;

/// Environment variable naming a directory with `initdb` and `postgres` to use.
pub const PG_BINDIR_ENV: &str = "AIRLOCK_TEST_PG_BINDIR";

/// The superuser every cluster has (trust authentication, no password).
pub const SUPERUSER: &str = "postgres";

/// How long after the fast-shutdown request the supervisor SIGKILLs what is left.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The OS user that runs initdb and postgres when the tests run as root.
const OS_USER: &str = "postgres";

/// What to do when a binary is missing.
const INSTALL_HINT: &str = "install Debian's package with `apt-get install -y postgresql` \
     (scripts/test.sh does), or set AIRLOCK_TEST_PG_BINDIR to a directory holding initdb and \
     postgres";

/// Settings written into `postgresql.conf` before the builder's own.
const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("cluster_name", "airlock-test"),
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("shared_buffers", "32MB"),
    ("max_connections", "100"),
];

/// `pg_hba.conf` of a TLS cluster: TCP only with TLS; no `host` line, so plaintext is refused.
const HOSTSSL_ONLY_HBA: &str = "# Written by airlock-testkit: TLS only over TCP.\n\
    local all all trust\n\
    hostssl all all 127.0.0.1/32 trust\n\
    hostssl all all ::1/128 trust\n";

/// How long a start may take until the server accepts connections (crash recovery included).
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// How often the server is polled while it starts.
const STARTUP_POLL: Duration = Duration::from_millis(25);

/// How long connecting to the cluster may take (for [`PgCluster::create_database`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many log lines an error carries.
const LOG_TAIL_LINES: usize = 30;

/// How many times a first start is retried when another process took the free port first.
const PORT_ATTEMPTS: usize = 3;

/// A hook that may write into the data directory before the first start.
type Hook = Box<dyn FnOnce(&Path) -> anyhow::Result<()> + Send>;

/// Options for a cluster; see [`PgCluster::builder`].
#[derive(Default)]
pub struct PgClusterBuilder {
    settings: Vec<(String, String)>,
    files: Vec<(PathBuf, Vec<u8>)>,
    hooks: Vec<Hook>,
}

impl fmt::Debug for PgClusterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgClusterBuilder")
            .field("settings", &self.settings)
            .field(
                "files",
                &self.files.iter().map(|(path, _)| path).collect::<Vec<_>>(),
            )
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl PgClusterBuilder {
    /// Adds `name = 'value'` to `postgresql.conf` (after the kit's speed defaults, so it wins
    /// over them), for example `.setting("ssl", "on")`. `listen_addresses`, `port` and
    /// `unix_socket_directories` are the kit's: they are given on the command line, which wins.
    #[must_use]
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Writes `contents` to `path` (relative, inside the data directory; parents are created)
    /// before the first start, readable by the server only (mode 0600, owned by the user that
    /// runs postgres), as a server key must be.
    #[must_use]
    pub fn file(mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), contents.into()));
        self
    }

    /// Serves TLS with `cert` (from [`crate::TestCa::issue_server`]) and refuses plaintext over
    /// TCP: `ssl = on` with `server.crt` and `server.key` in the data directory, and a
    /// `pg_hba.conf` whose only TCP lines are `hostssl` (trust, as everywhere in the kit). The
    /// Unix socket keeps trust without TLS.
    #[must_use]
    pub fn tls(self, cert: &IssuedCert) -> Self {
        self.file("server.crt", cert.cert_pem.clone())
            .file("server.key", cert.key_pem.clone())
            .file("pg_hba.conf", HOSTSSL_ONLY_HBA)
            .setting("ssl", "on")
            .setting("ssl_cert_file", "server.crt")
            .setting("ssl_key_file", "server.key")
    }

    /// Runs `hook` with the data directory after initdb, the settings and the files, before the
    /// first start. What it writes is handed to the postgres OS user afterwards (when root).
    #[must_use]
    pub fn before_start(
        mut self,
        hook: impl FnOnce(&Path) -> anyhow::Result<()> + Send + 'static,
    ) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Creates the cluster and starts it; returns once it accepts connections.
    pub fn start(self) -> anyhow::Result<PgCluster> {
        for (name, _) in &self.settings {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                bail!("{name:?} is not a PostgreSQL setting name");
            }
        }
        for (path, _) in &self.files {
            if !is_plain_relative(path) {
                bail!(
                    "file path {} must be relative and stay inside the data directory",
                    path.display()
                );
            }
        }
        let bindir = find_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("airlock-pg-")
            .tempdir()
            .context("cannot create a temporary directory for PostgreSQL")?;
        let home = dir.path().to_owned();
        // A fresh directory is owned by whoever we run as: that is the cheapest root check.
        let as_root = std::fs::metadata(&home)
            .context("cannot read the temporary directory's owner")?
            .uid()
            == 0;
        let setpriv = if as_root { Some(find_setpriv()?) } else { None };
        let data = home.join("data");
        let socket_dir = home.join("socket");
        std::fs::create_dir(&socket_dir).context("cannot create the socket directory")?;
        if as_root {
            give_to_os_user(&home)?;
        }

        run_initdb(&bindir.join("initdb"), setpriv.as_deref(), &home, &data)?;
        write_settings(&data, &self.settings)?;
        for (path, contents) in &self.files {
            write_private_file(&data.join(path), contents)?;
        }
        for hook in self.hooks {
            hook(&data).context("the before_start hook failed")?;
        }
        if as_root {
            give_to_os_user(&home)?;
        }

        let launch = Launch {
            setpriv,
            postgres: bindir.join("postgres"),
            home: home.clone(),
            data,
            socket_dir,
            log: home.join("postgres.log"),
        };
        let mut attempt = 1;
        let (port, running) = loop {
            let port = free_port()?;
            match launch.spawn(port, None) {
                Ok(running) => break (port, running),
                // The free port was only free when we looked: another process may have taken it.
                Err(StartError::PortTaken(err)) if attempt < PORT_ATTEMPTS => {
                    eprintln!("airlock-testkit: retrying PostgreSQL start: {err:#}");
                    attempt += 1;
                }
                Err(StartError::PortTaken(err) | StartError::Other(err)) => return Err(err),
            }
        };
        Ok(PgCluster {
            port,
            launch,
            state: Mutex::new(State {
                last: Some(running.postmaster.clone()),
                running: Some(running),
            }),
            dir,
        })
    }
}

/// A PostgreSQL cluster of its own on 127.0.0.1; see the module docs. Stopped and removed when
/// dropped.
pub struct PgCluster {
    port: u16,
    launch: Launch,
    // Field order matters: the server stops (and its supervisor removes the directory) before
    // the TempDir is dropped.
    state: Mutex<State>,
    dir: tempfile::TempDir,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

/// What changes while the cluster stops and starts.
struct State {
    running: Option<Running>,
    /// The postmaster of the last start, whose `postmaster.pid` may still be there (after a
    /// kill or a crash) saying "ready".
    last: Option<Postmaster>,
}

/// Who a `postmaster.pid` file names: the pid and the start time (pids can be reused).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Postmaster {
    pid: u32,
    started: String,
}

/// A started postmaster.
struct Running {
    process: Supervised,
    postmaster: Postmaster,
}

impl PgCluster {
    /// A cluster with the kit's defaults, started.
    pub fn start() -> anyhow::Result<PgCluster> {
        Self::builder().start()
    }

    /// Options for a cluster; finish with [`PgClusterBuilder::start`].
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// The TCP port on 127.0.0.1; the same for the cluster's whole life.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for example as the upstream of a [`crate::TcpProxy`].
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        self.url_via(self.port, db)
    }

    /// The URL of database `db` reached through another port on 127.0.0.1, such as a
    /// [`crate::TcpProxy`] in front of this cluster.
    pub fn url_via(&self, port: u16, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{db}")
    }

    /// The URL of the `postgres` database, as the superuser.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The data directory (`postgresql.conf`, `pg_hba.conf`, ...).
    pub fn data_dir(&self) -> &Path {
        &self.launch.data
    }

    /// The file the server's log goes to (appended to across restarts).
    pub fn log_path(&self) -> &Path {
        &self.launch.log
    }

    /// The last `lines` lines of the server log, for a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.launch.log, lines)
    }

    /// Creates database `name` (ASCII letters, digits and `_`) and returns its URL. Blocking.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        if name.is_empty()
            || name.len() > 63
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!("database name {name:?} must be 1 to 63 ASCII letters, digits or `_`");
        }
        run_admin_sql(self.admin_url(), format!(r#"CREATE DATABASE "{name}""#))
            .with_context(|| format!("cannot create database {name} on port {}", self.port))?;
        Ok(self.url(name))
    }

    /// Creates a database named `airlock_test_<uuid>` and returns its URL. Blocking.
    pub fn fresh_database(&self) -> anyhow::Result<String> {
        self.create_database(&format!("airlock_test_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Whether the server is up (started and not stopped, killed or crashed).
    pub fn is_running(&self) -> bool {
        self.lock()
            .running
            .as_ref()
            .is_some_and(|running| !running.process.has_exited())
    }

    /// Fast shutdown: ends every session, checkpoints, and returns once every server process
    /// has exited. Clients see their connections closed; new connections are refused. Does
    /// nothing when the server is not running.
    pub fn stop(&self) -> anyhow::Result<()> {
        let Some(mut running) = self.lock().running.take() else {
            return Ok(());
        };
        // The supervisor sends the fast-shutdown signal, waits and keeps the directory.
        running.process.stop_keeping_home();
        self.ensure_gone(&running)
    }

    /// Crashes the server: SIGKILL to the postmaster, as if it died. Its backends notice and
    /// exit by themselves (whatever is left after [`STOP_GRACE`] is SIGKILLed too); returns once
    /// every server process has gone. The next [`Self::start_again`] runs crash recovery.
    /// Does nothing when the server is not running.
    pub fn kill(&self) -> anyhow::Result<()> {
        let Some(mut running) = self.lock().running.take() else {
            return Ok(());
        };
        let killed = if running.process.has_exited() {
            Ok(())
        } else {
            send_signal(running.postmaster.pid, "KILL")
        };
        // Even if the signal failed, reap the server the ordinary way.
        running.process.stop_keeping_home();
        killed?;
        self.ensure_gone(&running)
    }

    /// Starts the stopped (or killed, or crashed) server again with the same data on the same
    /// port; returns once it accepts connections. An error when it is running.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let mut state = self.lock();
        if let Some(mut running) = state.running.take() {
            if !running.process.has_exited() {
                state.running = Some(running);
                bail!("the PostgreSQL cluster on port {} is running", self.port);
            }
            // It died by itself: let its supervisor finish without removing the directory.
            running.process.stop_keeping_home();
        }
        let running =
            self.launch
                .spawn(self.port, state.last.as_ref())
                .map_err(|err| match err {
                    StartError::PortTaken(err) => err.context(format!(
                        "another process took port {} while the cluster was stopped",
                        self.port
                    )),
                    StartError::Other(err) => err,
                })?;
        state.last = Some(running.postmaster.clone());
        state.running = Some(running);
        Ok(())
    }

    /// [`Self::stop`], then [`Self::start_again`].
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop()?;
        self.start_again()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ensure_gone(&self, running: &Running) -> anyhow::Result<()> {
        if running.process.has_exited() {
            Ok(())
        } else {
            bail!(
                "PostgreSQL processes of the cluster on port {} are still running after the \
                 stop; last lines of its log:\n{}",
                self.port,
                self.log_tail(LOG_TAIL_LINES)
            )
        }
    }
}

/// How to start the postmaster of one cluster.
struct Launch {
    /// `setpriv` when the tests run as root (postgres then runs as [`OS_USER`]).
    setpriv: Option<PathBuf>,
    postgres: PathBuf,
    /// The temporary directory: removed by the supervisor unless told to keep it.
    home: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
}

enum StartError {
    /// postgres could not bind its port.
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(err: anyhow::Error) -> Self {
        Self::Other(err)
    }
}

impl Launch {
    /// Starts the postmaster on `port` and waits until it accepts connections. `stale` is an
    /// earlier postmaster whose `postmaster.pid` may still say "ready".
    fn spawn(&self, port: u16, stale: Option<&Postmaster>) -> Result<Running, StartError> {
        let mut args: Vec<String> = Vec::new();
        let program = match &self.setpriv {
            Some(setpriv) => {
                args.extend(as_os_user_args());
                args.push(self.postgres.display().to_string());
                setpriv.clone()
            }
            None => self.postgres.clone(),
        };
        args.extend([
            "-D".to_owned(),
            self.data.display().to_string(),
            "-c".to_owned(),
            "listen_addresses=127.0.0.1".to_owned(),
            "-c".to_owned(),
            format!("port={port}"),
            "-c".to_owned(),
            format!("unix_socket_directories={}", self.socket_dir.display()),
        ]);
        let log_offset = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let mut process = Supervised::spawn_with(
            &program,
            &args,
            &[("LC_MESSAGES".to_owned(), "C".to_owned())],
            &self.home,
            &self.log,
            StopPolicy {
                signal: "INT",
                whole_group: false,
                grace: STOP_GRACE,
            },
            // The postgres OS user may not be able to enter the test's working directory.
            Some(&self.home),
        )?;
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let failure = loop {
            if let Some(reason) = process.exit_reason() {
                break format!("PostgreSQL on port {port} stopped during startup: {reason}");
            }
            if let Some(postmaster) = ready_postmaster(&self.data).filter(|p| Some(p) != stale) {
                if accepts(port) {
                    return Ok(Running {
                        process,
                        postmaster,
                    });
                }
            }
            if Instant::now() >= deadline {
                break format!(
                    "PostgreSQL did not accept connections on port {port} within {} s",
                    STARTUP_DEADLINE.as_secs()
                );
            }
            thread::sleep(STARTUP_POLL);
        };
        // Stop what may be left before reading the log, and keep the data for a retry.
        process.stop_keeping_home();
        let log = log_since(&self.log, log_offset);
        let err = anyhow::anyhow!("{failure}; its log since this start:\n{log}");
        Err(if log.contains("Address already in use") {
            StartError::PortTaken(err)
        } else {
            StartError::Other(err)
        })
    }
}

/// `setpriv` arguments that run the rest of the command line as [`OS_USER`].
fn as_os_user_args() -> [String; 4] {
    [
        format!("--reuid={OS_USER}"),
        format!("--regid={OS_USER}"),
        "--init-groups".to_owned(),
        "--".to_owned(),
    ]
}

/// The postmaster named by `postmaster.pid` once that file says it is ready for connections.
///
/// Lines of that file: pid, data directory, start time, port, socket directory, listen address,
/// shared memory key, status (`starting`, `ready`, `stopping`, `standby`).
fn ready_postmaster(data: &Path) -> Option<Postmaster> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.get(7).map(|status| status.trim()) != Some("ready") {
        return None;
    }
    Some(Postmaster {
        pid: lines.first()?.trim().parse().ok()?,
        started: lines.get(2)?.trim().to_owned(),
    })
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Sends `signal` (a name such as `KILL`) to `pid` with the shell's `kill`.
fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"kill -"$1" "$2""#)
        .arg("airlock-kill")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .context("cannot run sh to send a signal")?;
    if !output.status.success() {
        bail!(
            "kill -{signal} {pid} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The log written since `offset`, at most its last [`LOG_TAIL_LINES`] lines.
fn log_since(path: &Path, offset: u64) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return format!("(no log at {})", path.display());
    };
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// The directory with `initdb` and `postgres`: [`PG_BINDIR_ENV`], `pg_config --bindir`, or
/// the newest `/usr/lib/postgresql/*/bin`.
fn find_bindir() -> anyhow::Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os(PG_BINDIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !has_both(&dir) {
            bail!(
                "{PG_BINDIR_ENV} is {} but initdb and postgres are not both there",
                dir.display()
            );
        }
        return Ok(dir);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_both(dir)) {
        return Ok(dir);
    }
    let mut debian: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| {
            let version = entry
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect();
            (version, entry.path().join("bin"))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    debian.sort();
    match debian.pop() {
        Some((_, dir)) => Ok(dir),
        None => bail!(
            "PostgreSQL's server binaries (initdb, postgres) are not installed: neither \
             `pg_config --bindir` nor /usr/lib/postgresql/*/bin has them; {INSTALL_HINT}"
        ),
    }
}

fn find_setpriv() -> anyhow::Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join("setpriv"))
        .find(|candidate| candidate.is_file())
        .context(
            "the tests run as root, and initdb and postgres refuse to: `setpriv` (Debian's \
             util-linux) is needed to run them as the postgres OS user",
        )
}

/// Hands `dir` and everything in it to [`OS_USER`] (only called when running as root).
fn give_to_os_user(dir: &Path) -> anyhow::Result<()> {
    let output = Command::new("chown")
        .arg("-R")
        .arg(format!("{OS_USER}:"))
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run chown")?;
    if !output.status.success() {
        bail!(
            "the tests run as root, so PostgreSQL must run as the `{OS_USER}` OS user, but \
             `chown -R {OS_USER}: {}` failed ({}): {}; {INSTALL_HINT}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn run_initdb(
    initdb: &Path,
    setpriv: Option<&Path>,
    home: &Path,
    data: &Path,
) -> anyhow::Result<()> {
    let mut command = match setpriv {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(as_os_user_args()).arg(initdb);
            command
        }
        None => Command::new(initdb),
    };
    command
        .arg("-D")
        .arg(data)
        .arg(format!("--username={SUPERUSER}"))
        .args([
            "--auth=trust",
            "--no-sync",
            "--no-locale",
            "--encoding=UTF8",
        ])
        // The postgres OS user may not be able to enter the test's working directory.
        .current_dir(home)
        .env("LC_MESSAGES", "C")
        .stdin(Stdio::null());
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", initdb.display()))?;
    if !output.status.success() {
        let combined = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = combined.lines().collect();
        bail!(
            "initdb failed ({}); last lines of its output:\n{}",
            output.status,
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        );
    }
    Ok(())
}

/// Appends the kit's defaults and then `settings` to `postgresql.conf` (later lines win).
fn write_settings(data: &Path, settings: &[(String, String)]) -> anyhow::Result<()> {
    let path = data.join("postgresql.conf");
    let mut conf = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    conf.push_str("\n# Added by airlock-testkit.\n");
    for (name, value) in DEFAULT_SETTINGS {
        conf.push_str(&conf_line(name, value));
    }
    for (name, value) in settings {
        conf.push_str(&conf_line(name, value));
    }
    std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))
}

/// `name = 'value'` with the value quoted as `postgresql.conf` wants (any setting may be).
fn conf_line(name: &str, value: &str) -> String {
    let quoted = value.replace('\\', "\\\\").replace('\'', "''");
    format!("{name} = '{quoted}'\n")
}

fn is_plain_relative(path: &Path) -> bool {
    path.components().next().is_some()
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
}

fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))
}

/// Runs `sql` as the superuser on a thread with a runtime of its own, so that it works from
/// sync code and from inside a tokio runtime alike.
fn run_admin_sql(admin_url: String, sql: String) -> anyhow::Result<()> {
    thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build a runtime for an admin statement")?;
        runtime.block_on(async {
            let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&admin_url))
                .await
                .with_context(|| {
                    format!("connecting timed out after {} s", CONNECT_TIMEOUT.as_secs())
                })?
                .context("cannot connect as the superuser")?;
            sqlx::query(&sql).execute(&mut conn).await?;
            let _ = conn.close().await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the admin statement's thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_values_are_quoted_for_postgresql_conf() {
        assert_eq!(conf_line("ssl", "on"), "ssl = 'on'\n");
        assert_eq!(
            conf_line("search_path", r"it's a\path"),
            "search_path = 'it''s a\\\\path'\n"
        );
    }

    #[test]
    fn file_paths_must_stay_inside_the_data_directory() {
        assert!(is_plain_relative(Path::new("server.key")));
        assert!(is_plain_relative(Path::new("tls/ca.pem")));
        assert!(!is_plain_relative(Path::new("")));
        assert!(!is_plain_relative(Path::new("/etc/passwd")));
        assert!(!is_plain_relative(Path::new("../outside")));
        assert!(!is_plain_relative(Path::new("./x")));
    }

    #[test]
    fn only_a_ready_status_yields_the_postmaster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |status: &str| {
            std::fs::write(
                dir.path().join("postmaster.pid"),
                format!("4242\n/d\n1\n5432\n/s\n127.0.0.1\n  1 2\n{status}\n"),
            )
            .expect("write pid file");
        };
        assert_eq!(ready_postmaster(dir.path()), None);
        write("starting");
        assert_eq!(ready_postmaster(dir.path()), None);
        write("ready   ");
        assert_eq!(
            ready_postmaster(dir.path()),
            Some(Postmaster {
                pid: 4242,
                started: "1".to_owned()
            })
        );
    }

    #[test]
    fn a_cluster_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PgCluster>();
    }
}
