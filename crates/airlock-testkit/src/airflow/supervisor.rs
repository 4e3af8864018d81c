//! Runs a server process tree so that it cannot outlive the test process that started it.
//!
//! The server runs in its own session and process group (`setsid`) under a tiny `sh`
//! supervisor. The supervisor's stdin is a pipe whose only writer is the test process (std
//! creates its pipes close-on-exec, so no other child inherits it). When that pipe closes —
//! because the server handle was dropped, or because the test process exited, panicked, was
//! killed or never ran its destructors (statics are never dropped) — the supervisor's `read`
//! returns, and it sends SIGTERM to the whole process group (Airflow forks gunicorn/uvicorn
//! workers, so one pid is not enough), SIGKILL after a short grace period, and removes the
//! server's home directory.
//!
//! The server's stdout/stderr is a pipe that a thread copies into a log file. Every process of
//! the server holds that pipe, so end-of-file on it means the whole server is gone: that is how
//! startup notices a crash, and how a drop waits until the port is really released.
//!
//! What it does not do: survive SIGKILL of the supervisor itself (nothing can), or follow a
//! process that leaves the group and closes its stdout.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The supervisor, run as `sh -c SCRIPT airlock-supervisor HOME PROGRAM ARGS...`.
///
/// - `setsid` gives the server its own session and process group (pgid = `$child`, because a
///   background job of a non-interactive shell is not a group leader, so `setsid` does not fork),
///   which also keeps a terminal's Ctrl-C or hang-up away from it.
/// - After starting the server the supervisor lets go of the log pipe (so its end-of-file only
///   depends on the server) and ignores the signals that could kill it before it has cleaned up.
/// - `read` returns at end-of-file on stdin: the test process closed the pipe or is gone.
/// - `kill -0 -PGID` is true while any process of the group exists; dash reaps its own child
///   while it waits for `sleep`, so the loop ends as soon as the group is empty.
/// - The grace period between SIGTERM and SIGKILL is short (1 s): a test server holds nothing
///   worth a clean shutdown, and Airflow's interpreter takes about 2 s to exit after SIGTERM,
///   which every drop of a private server would otherwise pay.
const SUPERVISOR_SCRIPT: &str = r#"home=$1
shift
setsid "$@" </dev/null 2>&1 &
child=$!
exec >/dev/null 2>&1
trap '' HUP INT TERM PIPE
read -r _ignored
kill -TERM -"$child"
i=0
while [ "$i" -lt 10 ] && kill -0 -"$child"; do
  sleep 0.1
  i=$((i + 1))
done
kill -KILL -"$child"
wait "$child"
rm -rf -- "$home"
"#;

/// How long a stop waits for the server's processes to close their output: longer than the
/// supervisor's own TERM-to-KILL grace period (1 s), so a normal stop always finishes.
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
}

impl Supervised {
    /// Starts `program args` with `env` under a supervisor that removes `home` after stopping
    /// it; the output goes to `log_path`.
    pub(crate) fn spawn(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        home: &Path,
        log_path: &Path,
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
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(supervisor_stderr))
            // Its own process group, so a Ctrl-C aimed at the test run cannot kill the
            // supervisor before it has stopped the server.
            .process_group(0);
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
            };
            supervised.stop();
            return Err(err).context("cannot start the server log thread");
        }

        Ok(Self {
            child,
            lifeline,
            output_closed,
            log_path: log_path.to_owned(),
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

    fn is_output_closed(&self) -> bool {
        let (closed, _) = &*self.output_closed;
        *closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the server tree and waits (bounded) until it is gone and the supervisor exited.
    pub(crate) fn stop(&mut self) {
        // Closing the pipe is the whole protocol: the supervisor does the killing.
        drop(self.lifeline.take());

        let (closed, condvar) = &*self.output_closed;
        let guard = closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, timeout) = condvar
            .wait_timeout_while(guard, OUTPUT_CLOSE_TIMEOUT, |closed| !*closed)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(guard);
        if timeout.timed_out() {
            eprintln!(
                "airlock-testkit: server processes still hold their output {} s after the stop \
                 request; log: {}",
                OUTPUT_CLOSE_TIMEOUT.as_secs(),
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
