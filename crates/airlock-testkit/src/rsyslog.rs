//! A real rsyslog (Debian's `rsyslogd`) of a test's own, listening on a free port of 127.0.0.1
//! for syslog over one [`Listen`]:
//!
//! - TCP ([`Rsyslog::start`]), octet-counted or newline-framed, as rsyslog's `imtcp` reads
//!   both;
//! - TLS ([`Rsyslog::start_tls`], RFC 5425): `imtcp` with the `gtls` stream driver (Debian's
//!   `rsyslog-gnutls`), presenting a certificate the test gives (from [`crate::TestCa`]), no
//!   client certificate asked for (`anon`);
//! - UDP ([`Rsyslog::start_udp`], RFC 5426): `imudp`, one message a datagram.
//!
//! It writes every message it received, as received, one a line, to a file the test reads.
//! It can be stopped and started again on the same port with the same file (a collector
//! restart), and never outlives the test process. Messages up to 64 KiB are taken whole.

use crate::airflow::supervisor::Supervised;
use crate::IssuedCert;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
/// The TLS stream driver, from Debian's `rsyslog-gnutls`, in `/usr/lib/<multiarch>/rsyslog/`.
const GTLS_DRIVER: &str = "rsyslog/lmnsd_gtls.so";

/// Whether Debian's `rsyslog-gnutls` is installed (for any architecture's directory).
fn gtls_installed() -> bool {
    std::fs::read_dir("/usr/lib")
        .map(|dirs| dirs.flatten().any(|d| d.path().join(GTLS_DRIVER).exists()))
        .unwrap_or(false)
}
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// What an rsyslog listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP, with the certificate and key written in its home.
    Tls,
    /// UDP.
    Udp,
}

/// A running rsyslog.
pub struct Rsyslog {
    process: Option<Supervised>,
    home: tempfile::TempDir,
    port: u16,
    listen: Listen,
    generation: u32,
}

fn free_port(listen: Listen) -> anyhow::Result<u16> {
    Ok(match listen {
        Listen::Udp => std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        Listen::Tcp | Listen::Tls => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    })
}

/// Whether something is bound to UDP 127.0.0.1:`port` (Linux's socket table).
fn udp_bound(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(wanted.as_str()))
}

impl Rsyslog {
    /// Starts one listening on TCP on a free port.
    pub fn start() -> anyhow::Result<Rsyslog> {
        Self::start_with(Listen::Tcp, |_| Ok(()))
    }

    /// Starts one listening on TLS on a free port, presenting `cert` (whose issuer is
    /// `ca_file`).
    pub fn start_tls(cert: &IssuedCert, ca_file: &Path) -> anyhow::Result<Rsyslog> {
        anyhow::ensure!(
            gtls_installed(),
            "/usr/lib/*/{GTLS_DRIVER} is missing: install Debian's rsyslog-gnutls \
             (scripts/test.sh does)"
        );
        Self::start_with(Listen::Tls, |home| {
            std::fs::copy(ca_file, home.join("ca.pem")).context("copy the CA certificate")?;
            std::fs::write(home.join("server.pem"), &cert.cert_pem)?;
            let key = home.join("server.key");
            std::fs::write(&key, &cert.key_pem)?;
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            Ok(())
        })
    }

    /// Starts one listening on UDP on a free port.
    pub fn start_udp() -> anyhow::Result<Rsyslog> {
        Self::start_with(Listen::Udp, |_| Ok(()))
    }

    fn start_with(
        listen: Listen,
        prepare: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<Rsyslog> {
        anyhow::ensure!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: install Debian's rsyslog (scripts/test.sh does)"
        );
        let home = tempfile::Builder::new()
            .prefix("airlock-rsyslog-")
            .tempdir()?;
        prepare(home.path())?;
        let mut r = Rsyslog {
            process: None,
            port: free_port(listen)?,
            listen,
            home,
            generation: 0,
        };
        r.spawn()?;
        Ok(r)
    }

    /// What it listens on.
    pub fn listen(&self) -> Listen {
        self.listen
    }

    fn config(&self) -> String {
        let dir = self.home.path().display();
        let port = self.port;
        let input = match self.listen {
            Listen::Tcp => format!(
                "module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n"
            ),
            Listen::Tls => format!(
                "global(DefaultNetstreamDriverCAFile=\"{dir}/ca.pem\" \
                 DefaultNetstreamDriverCertFile=\"{dir}/server.pem\" \
                 DefaultNetstreamDriverKeyFile=\"{dir}/server.key\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" \
                 StreamDriver.AuthMode=\"anon\")\n\
                 input(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n"
            ),
            Listen::Udp => format!(
                "module(load=\"imudp\")\n\
                 input(type=\"imudp\" port=\"{port}\" address=\"127.0.0.1\" rcvBufSize=\"8m\")\n"
            ),
        };
        format!(
            "global(workDirectory=\"{dir}\" maxMessageSize=\"64k\")\n\
             {input}\
             template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{out}\" template=\"raw\" flushOnTXEnd=\"on\" asyncWriting=\"off\")\n",
            out = self.output().display(),
        )
    }

    /// Whether it listens yet.
    fn listening(&self) -> bool {
        match self.listen {
            Listen::Udp => udp_bound(self.port),
            Listen::Tcp | Listen::Tls => {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            }
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let dir = self.home.path();
        let conf = dir.join("rsyslog.conf");
        std::fs::write(&conf, self.config())?;
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
        while !self.listening() {
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
