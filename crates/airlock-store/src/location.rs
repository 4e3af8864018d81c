//! Where a store lives: parsing a store URL into a SQLite file path or a PostgreSQL URL, and
//! redacting secrets from anything that gets shown to a person.
//!
//! This module does no I/O; checking that a file or directory exists is done by the opener.
//! Redaction errs on the side of hiding too much: an odd URL may come out over-redacted, never
//! with its password visible.

use std::path::{Path, PathBuf};

/// What [`redact_url`] puts where a secret was.
pub const REDACTED: &str = "***";

/// Query parameters that carry a secret in a PostgreSQL URL (libpq accepts both).
const SECRET_QUERY_KEYS: [&str; 2] = ["password", "sslpassword"];

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An SQLite file, as written in the URL (maybe relative to the working directory).
    Sqlite { path: PathBuf },
    /// A PostgreSQL server, with the URL passed to the driver unchanged.
    Postgres { url: String },
}

/// Why a store URL was rejected; the opener wraps it with the redacted URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlProblem(pub(crate) &'static str);

/// Parses `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite:relative.db` and
/// `postgres://…` / `postgresql://…`.
pub(crate) fn parse_target(url: &str) -> Result<Target, UrlProblem> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres {
            url: url.to_owned(),
        });
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(UrlProblem(
            "expected a url starting with sqlite:// or postgres://",
        ));
    };
    // `sqlite:///abs` keeps its leading slash, `sqlite://rel.db` and `sqlite:rel.db` are relative.
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.contains('?') || path.contains('#') {
        // sqlx would read `?mode=ro` and friends; the store decides the open mode itself, and a
        // silently ignored parameter is worse than a clear refusal.
        return Err(UrlProblem(
            "sqlite store urls take no query parameters (percent-encode `?` or `#` in the file name)",
        ));
    }
    if path.is_empty() {
        return Err(UrlProblem("the sqlite url names no file"));
    }
    if path == ":memory:" {
        // Every pooled connection would get its own empty database, so state would vanish.
        return Err(UrlProblem(
            "in-memory sqlite is not supported; use a file (a temporary directory works for tests)",
        ));
    }
    let decoded = percent_decode(path).ok_or(UrlProblem(
        "the sqlite file name is not valid percent-encoded utf-8",
    ))?;
    Ok(Target::Sqlite {
        path: PathBuf::from(decoded),
    })
}

/// The directory an SQLite file would be created in (`.` for a bare relative file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Returns `url` with the password of its userinfo and any `password=` query value replaced by
/// `***`, for error messages and logs.
///
/// Works on text, not on a parsed URL, so that a URL the parser would reject (and which is
/// therefore about to appear in an error message) is redacted too. The userinfo is taken to
/// end at the LAST `@`, because a password may itself contain an unencoded `@` or `/`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let after_scheme = scheme_end + 3;
    let rest = &url[after_scheme..];

    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..after_scheme]);
    let remainder = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            &rest[at..]
        }
        None => rest,
    };

    match remainder.split_once('?') {
        Some((before_query, query)) => {
            out.push_str(before_query);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(remainder),
    }
    out
}

/// Every secret spelled in `url` (raw and percent-decoded), so that text from elsewhere (a
/// driver's error message) can be scrubbed of them with [`scrub`].
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.rfind('@') {
            if let Some((_, password)) = rest[..at].split_once(':') {
                secrets.push(password.to_owned());
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=') {
                if SECRET_QUERY_KEYS.contains(&key) {
                    secrets.push(value.to_owned());
                }
            }
        }
    }
    let decoded: Vec<String> = secrets.iter().filter_map(|s| percent_decode(s)).collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    secrets.sort();
    secrets.dedup();
    secrets
}

/// Replaces every occurrence of each secret in `text` with `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    // Longest first, so a secret that contains another is replaced whole.
    let mut ordered: Vec<&String> = secrets.iter().collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
    ordered.into_iter().fold(text.to_owned(), |acc, secret| {
        acc.replace(secret.as_str(), REDACTED)
    })
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if SECRET_QUERY_KEYS.contains(&key) => format!("{key}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_the_userinfo_password() {
        assert_eq!(
            redact_url("postgres://postgres:s3cr3t@127.0.0.1:5432/db"),
            "postgres://postgres:***@127.0.0.1:5432/db"
        );
    }

    #[test]
    fn redact_url_leaves_urls_without_a_password_alone() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://127.0.0.1/db",
            "sqlite:///var/lib/airlock/airlock.db",
            "sqlite://relative.db",
            "not a url",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn redact_url_hides_passwords_containing_at_signs_and_slashes() {
        let redacted = redact_url("postgres://u:p@ss/w@rd@db.example:5432/airlock");
        assert_eq!(redacted, "postgres://u:***@db.example:5432/airlock");
        assert!(!redacted.contains("ss/w"));
    }

    #[test]
    fn redact_url_hides_password_query_parameters() {
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=hunter2&sslpassword=x"),
            "postgres://u@h/db?sslmode=require&password=***&sslpassword=***"
        );
    }

    #[test]
    fn redact_url_hides_a_password_even_when_the_url_does_not_parse() {
        let redacted = redact_url("postgres://u:s3cr3t@host:notaport/db");
        assert!(!redacted.contains("s3cr3t"), "{redacted}");
    }

    #[test]
    fn url_secrets_finds_raw_and_decoded_passwords() {
        let secrets = url_secrets("postgres://u:a%40b@h/db?password=q");
        assert!(secrets.contains(&"a%40b".to_owned()));
        assert!(secrets.contains(&"a@b".to_owned()));
        assert!(secrets.contains(&"q".to_owned()));
    }

    #[test]
    fn scrub_replaces_every_secret() {
        let secrets = vec!["s3cr3t".to_owned()];
        assert_eq!(
            scrub("auth with s3cr3t failed (s3cr3t)", &secrets),
            "auth with *** failed (***)"
        );
    }

    #[test]
    fn sqlite_urls_parse_to_absolute_and_relative_paths() {
        let cases = [
            ("sqlite:///abs/path/airlock.db", "/abs/path/airlock.db"),
            ("sqlite://relative.db", "relative.db"),
            ("sqlite:relative.db", "relative.db"),
            ("sqlite:///with%20space/a.db", "/with space/a.db"),
        ];
        for (url, path) in cases {
            assert_eq!(
                parse_target(url),
                Ok(Target::Sqlite {
                    path: PathBuf::from(path)
                }),
                "{url}"
            );
        }
    }

    #[test]
    fn postgres_urls_pass_through_unchanged() {
        for url in [
            "postgres://u@h:5432/db",
            "postgresql://u:p@h/db?sslmode=require",
        ] {
            assert_eq!(
                parse_target(url),
                Ok(Target::Postgres {
                    url: url.to_owned()
                })
            );
        }
    }

    #[test]
    fn unsupported_urls_are_rejected() {
        for url in [
            "mysql://h/db",
            "sqlite::memory:",
            "sqlite://",
            "sqlite:///a.db?mode=ro",
            "/just/a/path.db",
        ] {
            assert!(parse_target(url).is_err(), "{url}");
        }
    }

    #[test]
    fn a_bare_file_name_lives_in_the_working_directory() {
        assert_eq!(parent_dir(Path::new("airlock.db")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/x/airlock.db")), Path::new("/x"));
    }
}
