//! `[[audit.sinks]]`: where `airlock serve` ships the audit trail, at least once, from a
//! durable cursor per sink. Today: syslog over TCP (RFC 5424 messages, RFC 6587 octet
//! counting), as rsyslog, syslog-ng and most SIEM collectors read it.

use crate::ConfigError;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// One `[[audit.sinks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// A name for it (its delivery cursor, lease, metrics and logs use it).
    pub name: String,
    /// `syslog`.
    pub kind: String,
    /// `host:port` of the collector.
    pub address: String,
    /// `tcp` (default; RFC 6587 octet counting).
    pub transport: Option<String>,
    /// The HOSTNAME field of the messages (default: this machine's name).
    pub hostname: Option<String>,
    /// Seconds to connect and to write a page of events (default 10, 1 to 120).
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
    /// `host:port`.
    pub address: String,
    /// The messages' HOSTNAME (`None`: the machine's).
    pub hostname: Option<String>,
    /// Connect and write timeout.
    pub timeout: Duration,
    /// The backlog beyond which `/healthz` raises an alarm.
    pub max_backlog: u64,
}

pub(crate) fn validate(raw: Vec<RawSink>, errors: &mut Vec<ConfigError>) -> Vec<SinkConfig> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("audit.sinks[{i}].{k}");
        let before = errors.len();
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 64
            && (s.name.chars()).all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            errors.push(ConfigError::new(
                key("name"),
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        } else if !names.insert(s.name.clone()) {
            errors.push(ConfigError::new(
                key("name"),
                format!("`{}` names two sinks", s.name),
            ));
        }
        if s.kind != "syslog" {
            errors.push(ConfigError::new(
                key("kind"),
                format!("`{}`: the only kind is syslog (file, Splunk HEC and webhook sinks are not in yet)", s.kind),
            ));
        }
        match s.transport.as_deref().unwrap_or("tcp") {
            "tcp" => {}
            other => errors.push(ConfigError::new(
                key("transport"),
                format!("`{other}`: the only transport is tcp (RFC 6587 octet counting); tls and udp are not in yet"),
            )),
        }
        let port_ok = s.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            errors.push(ConfigError::new(
                key("address"),
                format!("`{}` is not host:port", s.address),
            ));
        }
        let timeout = s.timeout_secs.unwrap_or(10);
        if !(1..=120).contains(&timeout) {
            errors.push(ConfigError::new(
                key("timeout_secs"),
                "must be between 1 and 120",
            ));
        }
        let max_backlog = s.max_backlog.unwrap_or(10_000);
        if max_backlog == 0 {
            errors.push(ConfigError::new(key("max_backlog"), "must be at least 1"));
        }
        if errors.len() == before {
            out.push(SinkConfig {
                name: s.name,
                address: s.address,
                hostname: s.hostname,
                timeout: Duration::from_secs(timeout),
                max_backlog,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_sink_setting_is_named() {
        let raw: Vec<RawSink> = toml::from_str::<std::collections::BTreeMap<String, Vec<RawSink>>>(
            "[[s]]\nname = \"a\"\nkind = \"splunk\"\naddress = \"nohost\"\ntransport = \"udp\"\ntimeout_secs = 0\nmax_backlog = 0\n\
             [[s]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"127.0.0.1:514\"\n",
        )
        .expect("toml")
        .remove("s")
        .expect("sinks");
        let mut errors = Vec::new();
        let ok = validate(raw, &mut errors);
        let all: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        for want in [
            "audit.sinks[0].kind",
            "audit.sinks[0].address",
            "audit.sinks[0].transport",
            "audit.sinks[0].timeout_secs",
            "audit.sinks[0].max_backlog",
            "audit.sinks[1].name",
        ] {
            assert!(all.iter().any(|e| e.starts_with(want)), "{want}: {all:?}");
        }
        assert!(ok.is_empty());
    }
}
