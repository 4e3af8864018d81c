//! A real rsyslog (Debian's `rsyslogd`) of a test's own: listening for syslog over TCP
//! (octet-counted or newline-framed, as rsyslog's `imtcp` reads both) on a free port of
//! 127.0.0.1, writing every message it received, as received, one a line, to a file the test
//! reads. It can be stopped and started again on the same port with the same file (a
//! collector restart), and never outlives the test process.

use crate::airflow::supervisor::Supervised;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running rsyslog.
pub struct Rsyslog {
    process: Option<Supervised>,
    home: tempfile::TempDir,
    port: u16,
    generation: u32,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Rsyslog {
    /// Starts one on a free port.
    pub fn start() -> anyhow::Result<Rsyslog> {
        anyhow::ensure!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: install Debian's rsyslog (scripts/test.sh does)"
        );
        let home = tempfile::Builder::new()
            .prefix("airlock-rsyslog-")
            .tempdir()?;
        let mut r = Rsyslog {
            process: None,
            port: free_port()?,
            home,
            generation: 0,
        };
        r.spawn()?;
        Ok(r)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let dir = self.home.path();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{dir}\")\n\
                 module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{out}\" template=\"raw\" flushOnTXEnd=\"on\" asyncWriting=\"off\")\n",
                dir = dir.display(),
                port = self.port,
                out = self.output().display(),
            ),
        )?;
        self.generation += 1;
        let log = dir.join(format!("rsyslogd-{}.log", self.generation));
        let process = Supervised::spawn(
            Path::new(RSYSLOGD),
            &[
                "-n".into(),
                "-f".into(),
                conf.display().to_string(),
                "-i".into(),
                dir.join("rsyslogd.pid").display().to_string(),
            ],
            &[],
            dir,
            &log,
        )?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > STARTUP_DEADLINE {
                anyhow::bail!(
                    "rsyslogd did not listen on 127.0.0.1:{} within {} s: {}",
                    self.port,
                    STARTUP_DEADLINE.as_secs(),
                    process.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
        Ok(())
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file every received message is written to.
    pub fn output(&self) -> PathBuf {
        self.home.path().join("received.log")
    }

    /// The messages received so far, one a line.
    pub fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(self.output())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Stops it (connections are reset; what it wrote stays).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop_keeping_home();
        }
    }

    /// Starts it again on the same port, appending to the same file.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn().context("restart rsyslogd")
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
