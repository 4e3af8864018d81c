//! `[[audit.sinks]]`: where `airlock serve` ships the audit trail, at least once, from a
//! durable cursor per sink. Four kinds:
//!
//! - `syslog`: RFC 5424 messages over TCP (RFC 6587 octet counting), TLS (RFC 5425) or UDP
//!   (RFC 5426), as rsyslog, syslog-ng and most SIEM collectors read them;
//! - `file`: one line per event in a file, rotated by size;
//! - `splunk_hec`: batches to Splunk's HTTP Event Collector, with indexer acknowledgement;
//! - `webhook`: batches POSTed as JSON to any HTTP receiver, optionally signed.
//!
//! Each key applies to some kinds only; a key given to a kind that does not read it is an
//! error, not silently ignored. Tokens and URLs that carry credentials are secrets (`env`,
//! `file` or literal), and no error prints them.

use crate::secret::{SecretSource, SecretString};
use crate::ConfigError;
use airlock_audit::Format;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One `[[audit.sinks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// A name for it (its delivery cursor, lease, metrics and logs use it).
    pub name: String,
    /// `syslog`, `file`, `splunk_hec` or `webhook`.
    pub kind: String,
    /// syslog: `host:port` of the collector.
    pub address: Option<String>,
    /// syslog: `tcp` (default; RFC 6587 octet counting), `tls` (RFC 5425) or `udp`
    /// (RFC 5426: one message a datagram, nothing acknowledged).
    pub transport: Option<String>,
    /// syslog, file: the HOSTNAME field of syslog messages (default: this machine's name).
    pub hostname: Option<String>,
    /// syslog over tls, splunk_hec, webhook: a PEM file of the CA certificates to trust
    /// instead of the system's, relative to this file.
    pub ca_file: Option<PathBuf>,
    /// syslog over tls: the name the collector's certificate must carry (default: the host of
    /// `address`).
    pub server_name: Option<String>,
    /// file: the file written (relative to this file); rotated files are `<path>.1` (newest)
    /// to `<path>.<keep_files>`.
    pub path: Option<PathBuf>,
    /// file: bytes beyond which the file is rotated (default 104857600, 100 MiB; at least
    /// 4096).
    pub rotate_bytes: Option<u64>,
    /// file: rotated files kept (default 10, 1 to 1000).
    pub keep_files: Option<u32>,
    /// file, webhook, splunk_hec: `jsonl`, `ocsf`, `cef` or `syslog` for a file (default
    /// jsonl); `ocsf` or `jsonl` for the HTTP sinks (default ocsf).
    pub format: Option<String>,
    /// splunk_hec: the collector's base URL (`https://splunk.example.com:8088`; `http://`
    /// only to a loopback host). webhook: the URL to POST to, a secret.
    pub url: Option<SecretSource>,
    /// splunk_hec: the HEC token, a secret (sent as `Authorization: Splunk <token>`).
    pub token: Option<SecretSource>,
    /// splunk_hec: the index (default: the token's).
    pub index: Option<String>,
    /// splunk_hec: the source (default `airlock`).
    pub source: Option<String>,
    /// splunk_hec: the sourcetype (default `ocsf:airlock` for OCSF, `airlock:audit` for
    /// jsonl).
    pub sourcetype: Option<String>,
    /// splunk_hec: wait for indexer acknowledgement before moving the cursor (default true;
    /// the token must have it enabled).
    pub ack: Option<bool>,
    /// splunk_hec: the channel (a GUID) of acknowledgements (default: one derived from the
    /// sink's name, stable across restarts).
    pub channel: Option<String>,
    /// splunk_hec: seconds to wait for acknowledgement before sending the batch again
    /// (default 60, 1 to 3600).
    pub ack_timeout_secs: Option<u64>,
    /// splunk_hec, webhook: events per request (default 100, 1 to 1000).
    pub batch_events: Option<u32>,
    /// webhook: signs each body as the notification webhooks do (`X-Airlock-Signature`).
    pub signing_secret: Option<SecretSource>,
    /// Seconds to connect and to send a batch (default 10, 1 to 120).
    pub timeout_secs: Option<u64>,
    /// Audit events not yet shipped beyond which `/healthz` raises an alarm (default 10000).
    /// Nothing is dropped: delivery is at least once.
    pub max_backlog: Option<u64>,
}

/// A sink, validated.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Its name.
    pub name: String,
    /// What it is and where it ships to.
    pub kind: SinkKind,
    /// Connect and send timeout.
    pub timeout: Duration,
    /// The backlog beyond which `/healthz` raises an alarm.
    pub max_backlog: u64,
}

/// The kinds of sink.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// A syslog collector.
    Syslog(SyslogSink),
    /// A local file.
    File(FileSink),
    /// Splunk's HTTP Event Collector.
    SplunkHec(HecSink),
    /// A generic HTTP receiver.
    Webhook(HttpSink),
}

impl SinkKind {
    /// The kind's name in the config.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Syslog(_) => "syslog",
            SinkKind::File(_) => "file",
            SinkKind::SplunkHec(_) => "splunk_hec",
            SinkKind::Webhook(_) => "webhook",
        }
    }
}

/// `kind = "syslog"`.
#[derive(Debug, Clone)]
pub struct SyslogSink {
    /// `host:port`.
    pub address: String,
    /// How messages travel.
    pub transport: SyslogTransport,
    /// The messages' HOSTNAME (`None`: the machine's).
    pub hostname: Option<String>,
}

/// How syslog messages travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTransport {
    /// TCP with octet counting (RFC 6587 §3.4.1).
    Tcp,
    /// TLS with octet counting (RFC 5425).
    Tls {
        /// CA certificates to trust instead of the system's (absolute).
        ca_file: Option<PathBuf>,
        /// The name the certificate must carry.
        server_name: String,
    },
    /// One message a datagram (RFC 5426).
    Udp,
}

/// `kind = "file"`.
#[derive(Debug, Clone)]
pub struct FileSink {
    /// The file (absolute).
    pub path: PathBuf,
    /// One line per event (OCSF: per OCSF event) in this format.
    pub format: Format,
    /// Rotation size.
    pub rotate_bytes: u64,
    /// Rotated files kept.
    pub keep_files: u32,
    /// syslog's HOSTNAME (`None`: the machine's).
    pub hostname: Option<String>,
}

/// `kind = "splunk_hec"`.
#[derive(Debug, Clone)]
pub struct HecSink {
    /// The collector's base URL (no path, or the path it is mounted under).
    pub url: url::Url,
    /// The HEC token.
    pub token: SecretString,
    /// `ocsf` or `jsonl`.
    pub format: Format,
    /// The index, if not the token's.
    pub index: Option<String>,
    /// The source.
    pub source: String,
    /// The sourcetype.
    pub sourcetype: String,
    /// Whether to wait for indexer acknowledgement.
    pub ack: bool,
    /// The acknowledgement channel (a GUID).
    pub channel: String,
    /// How long to wait for an acknowledgement.
    pub ack_timeout: Duration,
    /// Events per request.
    pub batch_events: u32,
    /// CA certificates to trust instead of the system's (absolute).
    pub ca_file: Option<PathBuf>,
}

/// `kind = "webhook"`.
#[derive(Debug, Clone)]
pub struct HttpSink {
    /// Where to POST (a secret).
    pub url: SecretString,
    /// `ocsf` or `jsonl`.
    pub format: Format,
    /// The HMAC key, if bodies are signed.
    pub signing_secret: Option<SecretString>,
    /// Events per request.
    pub batch_events: u32,
    /// CA certificates to trust instead of the system's (absolute).
    pub ca_file: Option<PathBuf>,
}

const KINDS: &str = "syslog, file, splunk_hec, webhook";

/// The keys each kind reads (besides name, kind, timeout_secs and max_backlog).
fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "syslog" => &["address", "transport", "hostname", "ca_file", "server_name"],
        "file" => &["path", "rotate_bytes", "keep_files", "format", "hostname"],
        "splunk_hec" => &[
            "url",
            "token",
            "format",
            "index",
            "source",
            "sourcetype",
            "ack",
            "channel",
            "ack_timeout_secs",
            "batch_events",
            "ca_file",
        ],
        "webhook" => &["url", "format", "signing_secret", "batch_events", "ca_file"],
        _ => &[],
    }
}

/// The optional keys that are set.
fn keys_set(s: &RawSink) -> Vec<&'static str> {
    let set = [
        ("address", s.address.is_some()),
        ("transport", s.transport.is_some()),
        ("hostname", s.hostname.is_some()),
        ("ca_file", s.ca_file.is_some()),
        ("server_name", s.server_name.is_some()),
        ("path", s.path.is_some()),
        ("rotate_bytes", s.rotate_bytes.is_some()),
        ("keep_files", s.keep_files.is_some()),
        ("format", s.format.is_some()),
        ("url", s.url.is_some()),
        ("token", s.token.is_some()),
        ("index", s.index.is_some()),
        ("source", s.source.is_some()),
        ("sourcetype", s.sourcetype.is_some()),
        ("ack", s.ack.is_some()),
        ("channel", s.channel.is_some()),
        ("ack_timeout_secs", s.ack_timeout_secs.is_some()),
        ("batch_events", s.batch_events.is_some()),
        ("signing_secret", s.signing_secret.is_some()),
    ];
    set.into_iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| k)
        .collect()
}

/// What the validation of one sink needs.
struct Ctx<'a> {
    i: usize,
    base_dir: &'a Path,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, k: &str, m: impl Into<String>) {
        self.errors
            .push(ConfigError::new(format!("audit.sinks[{}].{k}", self.i), m));
    }

    fn abs(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }

    fn required<T>(&mut self, k: &str, kind: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            self.err(k, format!("required by kind = \"{kind}\""));
        }
        v
    }

    fn secret(&mut self, k: &str, v: Option<SecretSource>) -> Option<SecretString> {
        match v?.resolve(self.base_dir, self.lookup) {
            Ok(s) => Some(s),
            Err(m) => {
                self.err(k, m);
                None
            }
        }
    }

    fn ca_file(&mut self, v: Option<PathBuf>) -> Option<PathBuf> {
        let p = self.abs(v?);
        if !p.is_file() {
            self.err("ca_file", format!("{} is not a readable file", p.display()));
        }
        Some(p)
    }

    fn format(&mut self, v: Option<String>, allowed: &[Format], default: Format) -> Format {
        let Some(name) = v else { return default };
        match Format::parse(&name).filter(|f| allowed.contains(f)) {
            Some(f) => f,
            None => {
                let names: Vec<&str> = allowed.iter().map(|f| f.name()).collect();
                self.err(
                    "format",
                    format!("`{name}`: one of {} for this kind", names.join(", ")),
                );
                default
            }
        }
    }

    fn batch(&mut self, v: Option<u32>) -> u32 {
        let n = v.unwrap_or(100);
        if !(1..=1000).contains(&n) {
            self.err("batch_events", "must be between 1 and 1000");
        }
        n
    }

    /// An `https://` URL, or `http://` to a loopback host; the message never shows it.
    fn http_url(&mut self, k: &str, url: &SecretString) -> Option<url::Url> {
        match url::Url::parse(url.expose_secret()) {
            Ok(u)
                if u.scheme() == "https"
                    || (u.scheme() == "http" && crate::validate::is_loopback(&u)) =>
            {
                Some(u)
            }
            Ok(_) => {
                self.err(
                    k,
                    "must be an https:// URL (http:// only to a loopback host)",
                );
                None
            }
            Err(_) => {
                self.err(k, "is not a URL");
                None
            }
        }
    }
}

fn host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

fn syslog(c: &mut Ctx<'_>, s: &mut RawSink) -> Option<SinkKind> {
    let address = c.required("address", "syslog", s.address.take())?;
    let Some((host, _)) = host_port(&address) else {
        c.err("address", format!("`{address}` is not host:port"));
        return None;
    };
    let transport = match s.transport.as_deref().unwrap_or("tcp") {
        "tcp" => SyslogTransport::Tcp,
        "udp" => SyslogTransport::Udp,
        "tls" => SyslogTransport::Tls {
            ca_file: c.ca_file(s.ca_file.take()),
            server_name: s.server_name.take().unwrap_or_else(|| host.to_owned()),
        },
        other => {
            c.err("transport", format!("`{other}`: one of tcp, tls, udp"));
            return None;
        }
    };
    // With tls both were taken above: what is left was given to tcp or udp.
    if s.ca_file.is_some() || s.server_name.is_some() {
        let k = if s.ca_file.is_some() {
            "ca_file"
        } else {
            "server_name"
        };
        c.err(k, "only read with transport = \"tls\"");
    }
    Some(SinkKind::Syslog(SyslogSink {
        address,
        transport,
        hostname: s.hostname.take(),
    }))
}

fn file(c: &mut Ctx<'_>, s: &mut RawSink) -> Option<SinkKind> {
    let path = c.required("path", "file", s.path.take()).map(|p| c.abs(p));
    let format = c.format(
        s.format.take(),
        &[Format::Jsonl, Format::Ocsf, Format::Cef, Format::Syslog],
        Format::Jsonl,
    );
    let rotate_bytes = s.rotate_bytes.unwrap_or(100 * 1024 * 1024);
    if rotate_bytes < 4096 {
        c.err("rotate_bytes", "must be at least 4096");
    }
    let keep_files = s.keep_files.unwrap_or(10);
    if !(1..=1000).contains(&keep_files) {
        c.err("keep_files", "must be between 1 and 1000");
    }
    if let Some(p) = &path {
        match p.parent() {
            Some(dir) if dir.is_dir() => {}
            _ => c.err(
                "path",
                format!("the directory of {} does not exist", p.display()),
            ),
        }
    }
    Some(SinkKind::File(FileSink {
        path: path?,
        format,
        rotate_bytes,
        keep_files,
        hostname: s.hostname.take(),
    }))
}

/// A GUID derived from the sink's name: the same channel across restarts and replicas.
fn channel_of(name: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(format!("airlock hec channel {name}").as_bytes());
    let x: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn hec(c: &mut Ctx<'_>, s: &mut RawSink) -> Option<SinkKind> {
    let url = c.required("url", "splunk_hec", s.url.take());
    let url = c.secret("url", url);
    let url = url.and_then(|u| c.http_url("url", &u));
    let token = c.required("token", "splunk_hec", s.token.take());
    let token = c.secret("token", token);
    if token
        .as_ref()
        .is_some_and(|t| t.expose_secret().trim().is_empty())
    {
        c.err("token", "is empty");
    }
    let format = c.format(
        s.format.take(),
        &[Format::Ocsf, Format::Jsonl],
        Format::Ocsf,
    );
    let channel = match s.channel.take() {
        Some(ch) if is_guid(&ch) => ch,
        Some(_) => {
            c.err(
                "channel",
                "must be a GUID such as 0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba",
            );
            String::new()
        }
        None => channel_of(&s.name),
    };
    let ack_timeout = s.ack_timeout_secs.unwrap_or(60);
    if !(1..=3600).contains(&ack_timeout) {
        c.err("ack_timeout_secs", "must be between 1 and 3600");
    }
    let batch_events = c.batch(s.batch_events);
    let ca_file = c.ca_file(s.ca_file.take());
    let sourcetype = s.sourcetype.take().unwrap_or_else(|| {
        if format == Format::Ocsf {
            "ocsf:airlock".into()
        } else {
            "airlock:audit".into()
        }
    });
    Some(SinkKind::SplunkHec(HecSink {
        url: url?,
        token: token?,
        format,
        index: s.index.take(),
        source: s.source.take().unwrap_or_else(|| "airlock".into()),
        sourcetype,
        ack: s.ack.unwrap_or(true),
        channel,
        ack_timeout: Duration::from_secs(ack_timeout),
        batch_events,
        ca_file,
    }))
}

fn webhook(c: &mut Ctx<'_>, s: &mut RawSink) -> Option<SinkKind> {
    let url = c.required("url", "webhook", s.url.take());
    let url = c.secret("url", url);
    let checked = url.as_ref().and_then(|u| c.http_url("url", u));
    let format = c.format(
        s.format.take(),
        &[Format::Ocsf, Format::Jsonl],
        Format::Ocsf,
    );
    let signing_secret = c.secret("signing_secret", s.signing_secret.take());
    if signing_secret
        .as_ref()
        .is_some_and(|k| k.expose_secret().len() < 16)
    {
        c.err("signing_secret", "must be at least 16 characters");
    }
    let batch_events = c.batch(s.batch_events);
    let ca_file = c.ca_file(s.ca_file.take());
    checked?;
    Some(SinkKind::Webhook(HttpSink {
        url: url?,
        format,
        signing_secret,
        batch_events,
        ca_file,
    }))
}

pub(crate) fn validate(
    raw: Vec<RawSink>,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<SinkConfig> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, mut s) in raw.into_iter().enumerate() {
        let before = errors.len();
        let mut c = Ctx {
            i,
            base_dir,
            lookup,
            errors,
        };
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 64
            && (s.name.chars()).all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            c.err("name", "1 to 64 letters, digits, '-', '_' or '.'");
        } else if !names.insert(s.name.clone()) {
            c.err("name", format!("`{}` names two sinks", s.name));
        }
        let timeout = s.timeout_secs.unwrap_or(10);
        if !(1..=120).contains(&timeout) {
            c.err("timeout_secs", "must be between 1 and 120");
        }
        let max_backlog = s.max_backlog.unwrap_or(10_000);
        if max_backlog == 0 {
            c.err("max_backlog", "must be at least 1");
        }
        let known = keys_of(&s.kind);
        if known.is_empty() {
            c.err("kind", format!("`{}`: one of {KINDS}", s.kind));
            continue;
        }
        for k in keys_set(&s) {
            if !known.contains(&k) {
                c.err(k, format!("not read by kind = \"{}\"", s.kind));
            }
        }
        let kind = match s.kind.as_str() {
            "syslog" => syslog(&mut c, &mut s),
            "file" => file(&mut c, &mut s),
            "splunk_hec" => hec(&mut c, &mut s),
            _ => webhook(&mut c, &mut s),
        };
        if errors.len() == before {
            if let Some(kind) = kind {
                out.push(SinkConfig {
                    name: s.name,
                    kind,
                    timeout: Duration::from_secs(timeout),
                    max_backlog,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Vec<RawSink> {
        toml::from_str::<std::collections::BTreeMap<String, Vec<RawSink>>>(toml_text)
            .expect("toml")
            .remove("s")
            .expect("sinks")
    }

    fn messages(toml_text: &str) -> (Vec<SinkConfig>, Vec<String>) {
        let dir = std::env::temp_dir();
        let mut errors = Vec::new();
        let lookup = |k: &str| (k == "HEC_TOKEN").then(|| "s3cr3t-token".to_owned());
        let ok = validate(parse(toml_text), &dir, &lookup, &mut errors);
        let all = errors
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        (ok, all)
    }

    #[test]
    fn each_bad_sink_setting_is_named() {
        let (ok, all) = messages(
            "[[s]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"nohost\"\ntimeout_secs = 0\nmax_backlog = 0\n\
             [[s]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\ntransport = \"quic\"\n\
             [[s]]\nname = \"b\"\nkind = \"splunk\"\n\
             [[s]]\nname = \"c\"\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\npath = \"x\"\nca_file = \"y\"\n\
             [[s]]\nname = \"d\"\nkind = \"file\"\npath = \"/nonexistent/dir/f\"\nformat = \"xml\"\nrotate_bytes = 10\nkeep_files = 0\n\
             [[s]]\nname = \"e\"\nkind = \"splunk_hec\"\nurl = \"http://splunk.example.com:8088\"\nchannel = \"x\"\nformat = \"cef\"\nbatch_events = 0\n\
             [[s]]\nname = \"f\"\nkind = \"webhook\"\nurl = \"https://h.example/x\"\nsigning_secret = \"short\"\n",
        );
        for want in [
            "audit.sinks[0].address",
            "audit.sinks[0].timeout_secs",
            "audit.sinks[0].max_backlog",
            "audit.sinks[1].name",
            "audit.sinks[1].transport",
            "audit.sinks[2].kind: `splunk`: one of syslog, file, splunk_hec, webhook",
            "audit.sinks[3].path: not read by kind = \"syslog\"",
            "audit.sinks[3].ca_file: only read with transport = \"tls\"",
            "audit.sinks[4].path: the directory of /nonexistent/dir/f does not exist",
            "audit.sinks[4].format: `xml`",
            "audit.sinks[4].rotate_bytes",
            "audit.sinks[4].keep_files",
            "audit.sinks[5].url: must be an https:// URL",
            "audit.sinks[5].token: required",
            "audit.sinks[5].channel: must be a GUID",
            "audit.sinks[5].format: `cef`: one of ocsf, jsonl for this kind",
            "audit.sinks[5].batch_events",
            "audit.sinks[6].signing_secret: must be at least 16",
        ] {
            assert!(all.iter().any(|e| e.starts_with(want)), "{want}: {all:#?}");
        }
        assert!(ok.is_empty());
    }

    #[test]
    fn every_kind_with_its_defaults() {
        let (ok, all) = messages(
            "[[s]]\nname = \"tcp\"\nkind = \"syslog\"\naddress = \"siem.example.com:6514\"\ntransport = \"tls\"\n\
             [[s]]\nname = \"udp\"\nkind = \"syslog\"\naddress = \"[::1]:514\"\ntransport = \"udp\"\n\
             [[s]]\nname = \"f\"\nkind = \"file\"\npath = \"audit.log\"\n\
             [[s]]\nname = \"hec\"\nkind = \"splunk_hec\"\nurl = \"https://splunk.example.com:8088\"\ntoken = { env = \"HEC_TOKEN\" }\n\
             [[s]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\nformat = \"jsonl\"\n",
        );
        assert!(all.is_empty(), "{all:?}");
        assert_eq!(ok.len(), 5);
        let SinkKind::Syslog(s) = &ok[0].kind else {
            panic!()
        };
        assert_eq!(
            s.transport,
            SyslogTransport::Tls {
                ca_file: None,
                server_name: "siem.example.com".into()
            }
        );
        let SinkKind::Syslog(s) = &ok[1].kind else {
            panic!()
        };
        assert_eq!(s.transport, SyslogTransport::Udp);
        let SinkKind::File(f) = &ok[2].kind else {
            panic!()
        };
        assert_eq!(f.path, std::env::temp_dir().join("audit.log"));
        assert_eq!(
            (f.format, f.rotate_bytes, f.keep_files),
            (Format::Jsonl, 100 << 20, 10)
        );
        let SinkKind::SplunkHec(h) = &ok[3].kind else {
            panic!()
        };
        assert_eq!(h.token.expose_secret(), "s3cr3t-token");
        assert!(h.ack && h.format == Format::Ocsf && h.batch_events == 100);
        assert_eq!(h.sourcetype, "ocsf:airlock");
        assert!(is_guid(&h.channel), "{}", h.channel);
        assert_eq!(h.channel, channel_of("hec"), "stable across restarts");
        let SinkKind::Webhook(w) = &ok[4].kind else {
            panic!()
        };
        assert_eq!(w.format, Format::Jsonl);
    }

    #[test]
    fn a_secret_never_reaches_an_error() {
        let (_, all) = messages(
            "[[s]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"ftp://user:hunter2hunter2@h/x\"\n",
        );
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(!all[0].contains("hunter2"), "{all:?}");
    }
}
