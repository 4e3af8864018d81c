//! The formats the trail is exported and shipped in, in one place: `airlock audit export`, the
//! file sink and the HTTP sinks all encode through [`Format::lines`].

use crate::AuditEvent;

/// An export or shipping format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// airlock's own JSON lines (the stored form; `airlock audit verify` reads it back).
    Jsonl,
    /// OCSF 1.8.0 JSON, one object per line (an event may make more than one).
    Ocsf,
    /// ArcSight CEF, one line per event.
    Cef,
    /// RFC 5424 syslog, one line per event.
    Syslog,
}

impl Format {
    /// Every format, by its name in the config and on the command line.
    pub const NAMES: &'static [(&'static str, Format)] = &[
        ("jsonl", Format::Jsonl),
        ("ocsf", Format::Ocsf),
        ("cef", Format::Cef),
        ("syslog", Format::Syslog),
    ];

    /// The format named `name`.
    pub fn parse(name: &str) -> Option<Format> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("jsonl", |(n, _)| n)
    }

    /// What `event` makes in this format: lines without their line ending, none of which
    /// holds a line break (`hostname` is syslog's HOSTNAME field).
    pub fn lines(self, event: &AuditEvent, hostname: &str) -> Vec<String> {
        match self {
            Format::Jsonl => vec![crate::to_jsonl_line(event)],
            Format::Ocsf => crate::ocsf::encode(event)
                .into_iter()
                .map(|o| o.to_string())
                .collect(),
            Format::Cef => vec![crate::cef::encode(event)],
            Format::Syslog => vec![crate::syslog::encode(event, hostname)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (n, f) in Format::NAMES {
            assert_eq!(Format::parse(n), Some(*f));
            assert_eq!(f.name(), *n);
        }
        assert_eq!(Format::parse("xml"), None);
    }
}
