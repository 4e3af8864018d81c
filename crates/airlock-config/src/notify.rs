//! `[[notifications.webhooks]]`: where `airlock serve` posts what happens to just-in-time
//! access (a request waiting for approval, a decision, a grant about to end or ended), as
//! generic JSON or as a Slack-compatible message.
//!
//! A webhook's URL is a secret (a Slack incoming webhook's URL is its credential): it may come
//! from the environment or a file, and no error ever prints it.

use crate::secret::{SecretSource, SecretString};
use crate::ConfigError;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// The kinds of notice a webhook can receive.
pub const NOTICE_KINDS: &[&str] = &[
    "request.waiting",
    "request.approved",
    "request.denied",
    "request.cancelled",
    "request.lapsed",
    "grant.expiring",
    "grant.expired",
    "grant.revoked",
    "break_glass.used",
];

/// `[notifications]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// The webhooks.
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

/// One `[[notifications.webhooks]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// A name for it (its delivery cursor, metrics and logs use it).
    pub name: String,
    /// Where to POST: `https://` (`http://` only to a loopback host). A secret.
    pub url: SecretSource,
    /// `json` (default) or `slack`.
    pub format: Option<String>,
    /// The kinds of notice to send (default: all).
    pub events: Option<Vec<String>>,
    /// Signs each body: `X-Airlock-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`
    /// with `X-Airlock-Timestamp`. A secret.
    pub signing_secret: Option<SecretSource>,
    /// Seconds a POST may take (default 10, 1 to 120).
    pub timeout_secs: Option<u64>,
}

/// How a webhook's bodies look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// airlock's JSON: the notice's id, kind, time, actor, request and a line of text.
    Json,
    /// A Slack incoming-webhook message (`{"text": ...}`, mrkdwn escaped).
    Slack,
}

/// A webhook, validated.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Its name.
    pub name: String,
    /// Where to POST (a secret).
    pub url: SecretString,
    /// Body format.
    pub format: WebhookFormat,
    /// The kinds it receives.
    pub events: BTreeSet<String>,
    /// The HMAC key, if bodies are signed.
    pub signing_secret: Option<SecretString>,
    /// POST timeout.
    pub timeout: Duration,
}

const KEY: &str = "notifications.webhooks";

pub(crate) fn validate(
    raw: RawNotifications,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<WebhookConfig> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (i, w) in raw.webhooks.into_iter().enumerate() {
        let key = |k: &str| format!("{KEY}[{i}].{k}");
        let before = errors.len();
        let name_ok = !w.name.is_empty()
            && w.name.len() <= 64
            && (w.name.chars()).all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            errors.push(ConfigError::new(
                key("name"),
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        } else if !names.insert(w.name.clone()) {
            errors.push(ConfigError::new(
                key("name"),
                format!("`{}` names two webhooks", w.name),
            ));
        }
        let url = match w.url.resolve(base_dir, lookup) {
            Ok(u) => match url::Url::parse(u.expose_secret()) {
                Ok(parsed)
                    if parsed.scheme() == "https"
                        || (parsed.scheme() == "http" && crate::validate::is_loopback(&parsed)) =>
                {
                    Some(u)
                }
                // The URL is a secret: say what is wrong, never what it is.
                Ok(_) => {
                    errors.push(ConfigError::new(
                        key("url"),
                        "must be an https:// URL (http:// only to a loopback host)",
                    ));
                    None
                }
                Err(_) => {
                    errors.push(ConfigError::new(key("url"), "is not a URL"));
                    None
                }
            },
            Err(m) => {
                errors.push(ConfigError::new(key("url"), m));
                None
            }
        };
        let format = match w.format.as_deref().unwrap_or("json") {
            "json" => WebhookFormat::Json,
            "slack" => WebhookFormat::Slack,
            other => {
                errors.push(ConfigError::new(
                    key("format"),
                    format!("`{other}`: one of json, slack"),
                ));
                WebhookFormat::Json
            }
        };
        let events: BTreeSet<String> = match w.events {
            None => NOTICE_KINDS.iter().map(|k| (*k).to_owned()).collect(),
            Some(list) => {
                for e in &list {
                    if !NOTICE_KINDS.contains(&e.as_str()) {
                        errors.push(ConfigError::new(
                            key("events"),
                            format!("`{e}`: the kinds are {}", NOTICE_KINDS.join(", ")),
                        ));
                    }
                }
                if list.is_empty() {
                    errors.push(ConfigError::new(
                        key("events"),
                        "an empty list sends nothing; remove the webhook or the key",
                    ));
                }
                list.into_iter().collect()
            }
        };
        let signing_secret = w
            .signing_secret
            .and_then(|s| match s.resolve(base_dir, lookup) {
                Ok(s) if s.expose_secret().len() >= 16 => Some(s),
                Ok(_) => {
                    errors.push(ConfigError::new(
                        key("signing_secret"),
                        "must be at least 16 characters",
                    ));
                    None
                }
                Err(m) => {
                    errors.push(ConfigError::new(key("signing_secret"), m));
                    None
                }
            });
        let timeout = w.timeout_secs.unwrap_or(10);
        if !(1..=120).contains(&timeout) {
            errors.push(ConfigError::new(
                key("timeout_secs"),
                "must be between 1 and 120",
            ));
        }
        if errors.len() > before {
            continue;
        }
        if let Some(url) = url {
            out.push(WebhookConfig {
                name: w.name,
                url,
                format,
                events,
                signing_secret,
                timeout: Duration::from_secs(timeout),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str, env: &[(&str, &str)]) -> Result<Vec<WebhookConfig>, Vec<String>> {
        let raw: RawNotifications = toml::from_str(toml_text).expect("toml");
        let mut errors = Vec::new();
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let out = validate(raw, Path::new("/"), &lookup, &mut errors);
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors
                .into_iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect())
        }
    }

    #[test]
    fn a_slack_webhook_from_the_environment_with_defaults() {
        let w = check(
            "[[webhooks]]\nname = \"approvers\"\nurl = { env = \"HOOK\" }\nformat = \"slack\"\n",
            &[("HOOK", "https://hooks.slack.example/services/T/B/secret")],
        )
        .expect("valid");
        assert_eq!(w[0].format, WebhookFormat::Slack);
        assert_eq!(w[0].events.len(), NOTICE_KINDS.len());
    }

    #[test]
    fn errors_name_the_key_and_never_print_the_url() {
        let errs = check(
            "[[webhooks]]\nname = \"a\"\nurl = \"http://hooks.example.com/T/secret-path\"\nevents = [\"grant.expiring\", \"everything\"]\n\
             [[webhooks]]\nname = \"a\"\nurl = \"https://x.example\"\nformat = \"xml\"\nsigning_secret = \"short\"\n",
            &[],
        )
        .expect_err("invalid");
        let all = errs.join("\n");
        for want in [
            "notifications.webhooks[0].url: must be an https://",
            "notifications.webhooks[0].events: `everything`",
            "notifications.webhooks[1].name: `a` names two webhooks",
            "notifications.webhooks[1].format",
            "notifications.webhooks[1].signing_secret",
        ] {
            assert!(all.contains(want), "{want} in {all}");
        }
        assert!(!all.contains("secret-path"), "{all}");
    }
}
