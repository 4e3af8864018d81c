//! Runs a server process tree so that it cannot outlive the test process that started it.
//!
//! The server runs in its own session and process group (`setsid`) under a tiny `sh`
//! supervisor. The supervisor's stdin is a pipe whose only writer is the test process (std
//! creates its pipes close-on-exec, so no other child inherits it). When that pipe closes —
//! because the server handle was dropped, or because the test process exited, panicked, was
//! killed or never ran its destructors (statics are never dropped) — the supervisor's `read`
//! returns, and by default it sends SIGTERM to the whole process group (Airflow forks
//! gunicorn/uvicorn workers, so one pid is not enough), SIGKILL after a short grace period, and
//! removes the server's home directory.
//!
//! The server's stdout/stderr is a pipe that a thread copies into a log file. Every process of
//! the server holds that pipe, so end-of-file on it means the whole server is gone: that is how
//! startup notices a crash, and how a drop waits until the port is really released.
//!
//! A [`StopPolicy`] says which signal goes first and to whom (PostgreSQL wants SIGINT, a fast
//! shutdown, sent to the postmaster alone). A deliberate [`Supervised::stop_keeping_home`]
//! writes `keep` down the pipe before closing it, and the supervisor then leaves the home
//! directory in place (a PostgreSQL data directory that is started again later); plain
//! end-of-file (a drop, or the test process gone) always removes it.
//!
//! What it does not do: survive SIGKILL of the supervisor itself (nothing can), or follow a
//! process that leaves the group and closes its stdout.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write as _};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The supervisor, run as `sh -c SCRIPT airlock-supervisor HOME SIGNAL TARGET GRACE PROGRAM
/// ARGS...` (see [`StopPolicy`] for the middle three).
///
/// - `setsid` gives the server its own session and process group (pgid = `$child`, because a
///   background job of a non-interactive shell is not a group leader, so `setsid` does not fork),
///   which also keeps a terminal's Ctrl-C or hang-up away from it.
/// - After starting the server the supervisor lets go of the log pipe (so its end-of-file only
///   depends on the server) and ignores the signals that could kill it before it has cleaned up.
/// - `read` returns at end-of-file on stdin (the test process closed the pipe or is gone) or
///   when a line arrives; only the line `keep` spares the home directory.
/// - The first signal (`$2`) goes to the process group when `$3` is `-`, else to the server
///   process alone; `$4` is the grace period in tenths of a second.
/// - `kill -0 -PGID` is true while any process of the group exists; dash reaps its own child
///   while it waits for `sleep`, so the loop ends as soon as the group is empty.
/// - The default grace period between SIGTERM and SIGKILL is short (1 s): a test server holds
///   nothing worth a clean shutdown, and Airflow's interpreter takes about 2 s to exit after
///   SIGTERM, which every drop of a private server would otherwise pay.
const SUPERVISOR_SCRIPT: &str = r#"home=$1
signal=$2
target=$3
grace=$4
shift 4
setsid "$@" </dev/null 2>&1 &
child=$!
exec >/dev/null 2>&1
trap '' HUP INT TERM PIPE
read -r command
kill -"$signal" "$target$child"
i=0
while [ "$i" -lt "$grace" ] && kill -0 -"$child"; do
  sleep 0.1
  i=$((i + 1))
done
kill -KILL -"$child"
wait "$child"
[ "$command" = keep ] || rm -rf -- "$home"
"#;

/// How the supervisor stops the server once the test process lets go of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StopPolicy {
    /// The first signal, by name without `SIG` (`TERM`, `INT`).
    pub(crate) signal: &'static str,
    /// Whether the first signal goes to the whole process group (else to the server process
    /// alone, for servers that stop their own children, like PostgreSQL's postmaster).
    pub(crate) whole_group: bool,
    /// How long after the first signal whatever is left of the group gets SIGKILL.
    pub(crate) grace: Duration,
}

impl StopPolicy {
    /// SIGTERM to the whole group, SIGKILL 1 s later: see [`SUPERVISOR_SCRIPT`] for why 1 s.
    pub(crate) const TERM_GROUP: Self = Self {
        signal: "TERM",
        whole_group: true,
        grace: Duration::from_secs(1),
    };
}

/// How long a stop waits for the server's processes to close their output, on top of the
/// policy's grace period, so a normal stop always finishes.
const OUTPUT_CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a stop waits for the supervisor to finish removing the home directory.
const SUPERVISOR_EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// A server process tree under a supervisor; dropping it stops the tree and waits for it.
pub(crate) struct Supervised {
    child: Child,
    /// The write end of the supervisor's stdin: closing it is the stop signal.
    lifeline: Option<ChildStdin>,
    /// Set when every holder of the server's stdout has closed it (the server is gone).
    output_closed: Arc<(Mutex<bool>, Condvar)>,
    log_path: PathBuf,
    policy: StopPolicy,
}

impl Supervised {
    /// Starts `program args` with `env` under a supervisor that removes `home` after stopping
    /// it ([`StopPolicy::TERM_GROUP`]); the output goes to `log_path`.
    pub(crate) fn spawn(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        home: &Path,
        log_path: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_with(
            program,
            args,
            env,
            home,
            log_path,
            StopPolicy::TERM_GROUP,
            None,
        )
    }

    /// [`Self::spawn`] with its own way of stopping the server and, when given, its own working
    /// directory (a server that runs as another user may not be able to enter the test's).
    pub(crate) fn spawn_with(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        home: &Path,
        log_path: &Path,
        policy: StopPolicy,
        current_dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("cannot open server log {}", log_path.display()))?;
        let supervisor_stderr = log
            .try_clone()
            .context("cannot duplicate the server log handle")?;

        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISOR_SCRIPT)
            .arg("airlock-supervisor")
            .arg(home)
            .arg(policy.signal)
            .arg(if policy.whole_group { "-" } else { "" })
            .arg(policy.grace.as_millis().div_ceil(100).to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(supervisor_stderr))
            // Its own process group, so a Ctrl-C aimed at the test run cannot kill the
            // supervisor before it has stopped the server.
            .process_group(0);
        if let Some(dir) = current_dir {
            command.current_dir(dir);
        }
        apply_env(&mut command, env);
        let mut child = command
            .spawn()
            .context("cannot spawn the server supervisor (sh)")?;

        let lifeline = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .expect("invariant: stdout was configured as a pipe");
        let output_closed = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&output_closed);
        let pump = thread::Builder::new()
            .name("airlock-server-log".to_owned())
            .spawn(move || pump_output(stdout, log, &signal));
        if let Err(err) = pump {
            // Without the pump the server would block on a full pipe; stop it right away.
            let mut supervised = Self {
                child,
                lifeline,
                output_closed,
                log_path: log_path.to_owned(),
                policy,
            };
            supervised.stop();
            return Err(err).context("cannot start the server log thread");
        }

        Ok(Self {
            child,
            lifeline,
            output_closed,
            log_path: log_path.to_owned(),
            policy,
        })
    }

    /// Why the server is no longer running, if it is not: used while waiting for it to start.
    pub(crate) fn exit_reason(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => return Some(format!("its supervisor exited ({status})")),
            Ok(None) => {}
            Err(err) => return Some(format!("its supervisor cannot be waited for ({err})")),
        }
        if self.is_output_closed() {
            return Some("the server process exited".to_owned());
        }
        None
    }

    /// The last `lines` lines of the server log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Whether every process of the server has exited (or at least closed its output).
    pub(crate) fn has_exited(&self) -> bool {
        self.is_output_closed()
    }

    fn is_output_closed(&self) -> bool {
        let (closed, _) = &*self.output_closed;
        *closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the server tree like [`Self::stop`] but leaves the home directory in place.
    pub(crate) fn stop_keeping_home(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            // If the write fails the supervisor is already gone (or going): nothing to spare.
            let _ = lifeline.write_all(b"keep\n");
        }
        self.stop();
    }

    /// Stops the server tree and waits (bounded) until it is gone and the supervisor exited.
    pub(crate) fn stop(&mut self) {
        // Closing the pipe is the whole protocol: the supervisor does the killing.
        drop(self.lifeline.take());

        let output_timeout = self.policy.grace + OUTPUT_CLOSE_TIMEOUT;
        let (closed, condvar) = &*self.output_closed;
        let guard = closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, timeout) = condvar
            .wait_timeout_while(guard, output_timeout, |closed| !*closed)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(guard);
        if timeout.timed_out() {
            eprintln!(
                "airlock-testkit: server processes still hold their output {} s after the stop \
                 request; log: {}",
                output_timeout.as_secs(),
                self.log_path.display()
            );
        }

        let deadline = Instant::now() + SUPERVISOR_EXIT_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    // Only our own direct child, by its handle; the server group was already
                    // signalled by the supervisor.
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets `env` on `command`, after removing every inherited `AIRFLOW*` variable so that a
/// developer's own Airflow settings cannot leak into a test server.
pub(crate) fn apply_env(command: &mut Command, env: &[(String, String)]) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AIRFLOW") {
            command.env_remove(&key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

fn pump_output(mut from: impl io::Read, mut to: File, closed: &(Mutex<bool>, Condvar)) {
    // Errors end the copy either way; what matters is signalling that it ended.
    let _ = io::copy(&mut from, &mut to);
    // A write error (disk full, log removed) must not leave the server blocked on a full pipe:
    // keep draining until end-of-file.
    let _ = io::copy(&mut from, &mut io::sink());
    let (flag, condvar) = closed;
    *flag
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
    condvar.notify_all();
}

/// The last `lines` lines of the file at `path` (reads at most the last 64 KiB).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let all: Vec<String> = BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .map(|line| String::from_utf8_lossy(&line).into_owned())
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
