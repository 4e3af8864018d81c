//! `airlock-dev`: a developer tool built on the test kit.
//!
//! `airlock-dev airflow-up --version 3 --sample` starts a private Airflow on 127.0.0.1 (a
//! throw-away `AIRFLOW_HOME`, killed when this process exits however it exits), seeds it through
//! the REST API ([`seed`]), writes an airlock config pointing at it ([`files`]), says so, and then
//! waits for SIGINT, SIGTERM or the end of its stdin. `scripts/quickstart.sh` and
//! `scripts/bench-inventory.sh` drive it.
//!
//! What it does not do: reuse or keep an Airflow across runs (every run is a fresh database), or
//! talk to anything but the server it started.

mod files;
mod seed;

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use airlock_testkit::{AirflowServer, AirflowVersion};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::oneshot;

/// How often the server's health is checked while the tool waits.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// Consecutive failed health checks after which the server counts as dead.
const HEALTH_FAILURES: u32 = 3;

/// How many lines of the server log an error carries.
const LOG_TAIL_LINES: usize = 30;

/// Developer tools around a local Apache Airflow, built on airlock's test kit.
#[derive(Debug, Parser)]
#[command(name = "airlock-dev", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a private Airflow on 127.0.0.1, seed it, write an airlock config for it, and keep
    /// it running until Ctrl-C, SIGTERM or the end of stdin (Ctrl-D).
    ///
    /// The server is a fresh throw-away instance each time (its database starts from a cached
    /// template with one `admin` user) and is killed when this process exits, however it exits.
    AirflowUp(AirflowUpArgs),
}

#[derive(Debug, Args)]
struct AirflowUpArgs {
    /// Airflow major version: 3 (3.3.2, FAB auth manager) or 2 (2.11.2).
    #[arg(long, value_enum)]
    version: VersionArg,

    /// Create this many synthetic users (user-00001, ...) with a mix of Viewer, User and Op.
    #[arg(long, default_value_t = 0, value_name = "N")]
    users: usize,

    /// Create a handful of realistic sample users and a custom role.
    #[arg(long)]
    sample: bool,

    /// Requests in flight while seeding.
    #[arg(long, default_value_t = 6, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,

    /// Where to write the airlock config; the admin password goes into
    /// `airflow-admin.password` next to it (mode 0600).
    #[arg(long, default_value = "airlock.toml", value_name = "PATH")]
    config_out: PathBuf,

    /// A file to create once the server is up and seeded (it holds the server's URL); removed
    /// again when the tool stops.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,

    /// Keep running when stdin ends; stop only on SIGINT or SIGTERM. For running in the
    /// background with stdin at /dev/null.
    #[arg(long)]
    ignore_stdin: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VersionArg {
    /// Airflow 3.3.2 with the FAB auth manager.
    #[value(name = "3")]
    V3,
    /// Airflow 2.11.2.
    #[value(name = "2")]
    V2,
}

impl From<VersionArg> for AirflowVersion {
    fn from(v: VersionArg) -> Self {
        match v {
            VersionArg::V3 => AirflowVersion::V3,
            VersionArg::V2 => AirflowVersion::V2,
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::AirflowUp(args) => airflow_up(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("airlock-dev: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn airflow_up(args: &AirflowUpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Handlers first: from here on SIGINT/SIGTERM end the run through the normal path, so
        // the ready file is removed and the server is stopped before exiting.
        let stop = StopSignal::install(!args.ignore_stdin)?;
        if let Some(ready) = &args.ready_file {
            files::remove_if_exists(ready)?;
        }
        let version = AirflowVersion::from(args.version);
        let (server, stop) = start(version, stop).await?;
        let outcome = run(&server, args, stop).await;
        if let Some(ready) = &args.ready_file {
            if let Err(err) = files::remove_if_exists(ready) {
                eprintln!("airlock-dev: {err:#}");
            }
        }
        eprintln!("airlock-dev: stopping {version}");
        // Dropping the server kills its process group and removes its home (blocking, a
        // second or two).
        tokio::task::block_in_place(|| drop(server));
        outcome
    })
}

/// Starts the server on a thread of its own (the kit's start is blocking), unless asked to stop
/// first. Stopping then returns at once: when this process exits, the kit's supervisor kills
/// whatever the start had got to.
async fn start(
    version: AirflowVersion,
    mut stop: StopSignal,
) -> anyhow::Result<(AirflowServer, StopSignal)> {
    eprintln!("airlock-dev: starting {version} on 127.0.0.1 ...");
    let started = Instant::now();
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("airlock-dev-start".to_owned())
        .spawn(move || {
            let _ = tx.send(AirflowServer::builder(version).start());
        })
        .context("cannot start a thread")?;
    let server = tokio::select! {
        server = rx => server.context("the start thread ended without an answer")??,
        reason = stop.wait() => anyhow::bail!("stopped by {reason} while {version} was starting"),
    };
    eprintln!(
        "airlock-dev: {version} up at {} in {:.1} s (AIRFLOW_HOME {})",
        server.base_url,
        started.elapsed().as_secs_f64(),
        server.airflow_home().display()
    );
    Ok((server, stop))
}

async fn run(
    server: &AirflowServer,
    args: &AirflowUpArgs,
    mut stop: StopSignal,
) -> anyhow::Result<()> {
    let seeding = async {
        let seeder = seed::Seeder::connect(server).await?;
        if args.sample {
            let started = Instant::now();
            let count = seeder.create_sample(usize::from(args.parallel)).await?;
            eprintln!(
                "airlock-dev: created {count} sample users and 1 custom role in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        if args.users > 0 {
            let started = Instant::now();
            seeder
                .create_synthetic(args.users, usize::from(args.parallel))
                .await?;
            let took = started.elapsed().as_secs_f64();
            eprintln!(
                "airlock-dev: created {} synthetic users in {took:.1} s ({:.1} users/s)",
                args.users,
                args.users as f64 / took.max(0.001)
            );
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = seeding => result.with_context(|| {
            format!(
                "cannot seed {}; last lines of the server log:\n{}",
                server.version,
                server.log_tail(LOG_TAIL_LINES)
            )
        })?,
        reason = stop.wait() => anyhow::bail!("stopped by {reason} while seeding"),
    }

    let config = files::write_config(&args.config_out, server)?;
    if let Some(ready) = &args.ready_file {
        files::write_ready(ready, &server.base_url)?;
    }
    println!(
        "{} ready at {}; config at {}",
        server.version,
        server.base_url,
        config.display()
    );
    let how = if args.ignore_stdin {
        "Ctrl-C or SIGTERM"
    } else if std::io::stdin().is_terminal() {
        "Ctrl-C or Ctrl-D"
    } else {
        "SIGINT, SIGTERM or closing stdin"
    };
    eprintln!("airlock-dev: running until {how}");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("cannot build an HTTP client")?;
    let health = format!("{}{}", server.base_url, server.version.health_path());
    let mut failures = 0;
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    loop {
        tokio::select! {
            reason = stop.wait() => {
                eprintln!("airlock-dev: {reason}");
                return Ok(());
            }
            _ = tick.tick() => {
                let ok = http
                    .get(&health)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                failures = if ok { 0 } else { failures + 1 };
                if failures >= HEALTH_FAILURES {
                    anyhow::bail!(
                        "{} at {} stopped answering {}; last lines of its log:\n{}",
                        server.version,
                        server.base_url,
                        server.version.health_path(),
                        server.log_tail(LOG_TAIL_LINES)
                    );
                }
            }
        }
    }
}

/// SIGINT, SIGTERM, and (optionally) the end of stdin, as one awaitable.
struct StopSignal {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    stdin_closed: Option<oneshot::Receiver<()>>,
}

impl StopSignal {
    /// Installs the handlers; must run inside the runtime.
    fn install(watch_stdin: bool) -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let stdin_closed = if watch_stdin {
            let (tx, rx) = oneshot::channel();
            // A plain thread, not tokio's stdin: a blocked read must not hold up the runtime's
            // shutdown. The thread is detached and dies with the process.
            std::thread::Builder::new()
                .name("airlock-dev-stdin".to_owned())
                .spawn(move || {
                    let mut buf = [0_u8; 256];
                    let mut stdin = std::io::stdin().lock();
                    // Input is ignored; only end-of-file (or an error) matters.
                    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
                    let _ = tx.send(());
                })
                .context("cannot start the stdin watcher")?;
            Some(rx)
        } else {
            None
        };
        Ok(Self {
            interrupt,
            terminate,
            stdin_closed,
        })
    }

    /// Resolves with a description of what asked to stop.
    async fn wait(&mut self) -> &'static str {
        let stdin = async {
            match self.stdin_closed.as_mut() {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            () = stdin => "end of stdin",
        }
    }
}
