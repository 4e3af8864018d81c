//! `airlock scim token ...`: bearer tokens for the SCIM endpoint. Secrets are printed once, on
//! stdout, when created or rotated; nothing else ever prints one. Issuing, rotating and
//! revoking are audited under the command's actor (`--actor`).

use crate::cli::{ScimCommand, ScimTokenCommand};
use crate::commands::open_store;
use airlock_config::Config;
use airlock_core::{Clock, SystemClock};
use airlock_scim::GroupAllowance;
use airlock_store::{OpenOptions, ScimToken, ScimTokenOptions};
use chrono::{DateTime, SecondsFormat};
use std::process::ExitCode;

const STORE_IT_NOW: &str = "This token is shown only once: store it now (e.g. in the identity \
provider's provisioning settings or a secret manager). airlock keeps only its hash.";

/// A span such as `90d`, `24h`, `30m`, `45s` or `2w`: a positive whole number and one unit.
pub(crate) fn parse_span(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' has no unit: write e.g. 90d, 24h, 30m or 45s"))?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("'{text}' must start with a whole number, e.g. 90d"))?;
    if n <= 0 {
        return Err(format!("'{text}' must be longer than zero"));
    }
    let span = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        "w" => chrono::Duration::try_weeks(n),
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{unit}': use s, m, h, d or w"
            ))
        }
    };
    span.ok_or_else(|| format!("'{text}' is too long"))
}

pub async fn run(config: Config, cmd: ScimCommand, actor: String) -> anyhow::Result<ExitCode> {
    let ScimCommand::Token(cmd) = cmd;
    // Checked before the store is opened: a bad pattern changes nothing.
    let allowance = match &cmd {
        ScimTokenCommand::Create {
            groups: Some(list), ..
        } => Some(GroupAllowance::parse(list).map_err(|err| anyhow::anyhow!("--groups: {err}"))?),
        _ => None,
    };
    let store = open_store(&config, OpenOptions::create()).await?;
    let now = SystemClock.now().timestamp_millis();
    match cmd {
        ScimTokenCommand::Create {
            client, expires_in, ..
        } => {
            let options = ScimTokenOptions {
                lifetime_ms: expires_in.map(|d| d.num_milliseconds()),
                groups: allowance.map(|a| a.patterns().to_vec()),
            };
            let (_, secret) = store
                .issue_scim_token(&client, &options, &actor, now)
                .await?;
            let expiry = options
                .lifetime_ms
                .map_or("it does not expire".to_owned(), |l| {
                    format!("it expires at {}", when(Some(now.saturating_add(l))))
                });
            eprintln!("Created a SCIM token for client {client}; {expiry}.");
            if let Some(groups) = &options.groups {
                eprintln!(
                    "It may only create or change groups matching: {}",
                    groups.join(", ")
                );
            }
            eprintln!("{STORE_IT_NOW}");
            println!("{secret}");
        }
        ScimTokenCommand::Rotate {
            client,
            grace,
            expires_in,
        } => {
            let rotation = store
                .rotate_scim_token_with(
                    &client,
                    grace.map_or(0, |g| g.num_milliseconds()),
                    expires_in.map(|d| d.num_milliseconds()),
                    &actor,
                    now,
                )
                .await?;
            match rotation.previous_valid_until_ms {
                Some(until) => eprintln!(
                    "Rotated the SCIM token of client {client}; the old token keeps working until {}.",
                    when(Some(until))
                ),
                None => eprintln!(
                    "Rotated the SCIM token of client {client}; the old token no longer works."
                ),
            }
            if rotation.expires_ms.is_some() {
                eprintln!("The new token expires at {}.", when(rotation.expires_ms));
            }
            eprintln!("{STORE_IT_NOW}");
            println!("{}", rotation.secret);
        }
        ScimTokenCommand::Revoke { client } => {
            store.revoke_scim_token_by(&client, &actor, now).await?;
            println!("Revoked the SCIM token of client {client}.");
        }
        ScimTokenCommand::List => {
            let tokens = store.list_scim_tokens().await?;
            if tokens.is_empty() {
                println!(
                    "No SCIM tokens. Issue one with `airlock scim token create --client NAME`."
                );
            } else {
                println!("{}", token_table(tokens, now));
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn token_table(tokens: Vec<ScimToken>, now: i64) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "CLIENT",
        "STATUS",
        "ISSUED",
        "EXPIRES",
        "LAST USED",
        "REVOKED",
        "OLD TOKEN UNTIL",
        "GROUPS",
    ]);
    for t in tokens {
        let status = if t.revoked_ms.is_some() {
            "revoked"
        } else if t.expires_ms.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        let previous = t.previous_expires_ms.filter(|until| *until > now);
        table.add_row([
            t.client,
            status.to_owned(),
            when(Some(t.created_ms)),
            when(t.expires_ms),
            when(t.last_used_ms),
            when(t.revoked_ms),
            when(previous),
            t.groups.map_or("any".to_owned(), |g| g.join(",")),
        ]);
    }
    table
}

pub(crate) fn when(ms: Option<i64>) -> String {
    ms.and_then(DateTime::from_timestamp_millis).map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_take_one_unit_and_a_positive_whole_number() {
        assert_eq!(parse_span("90d"), Ok(chrono::Duration::days(90)));
        assert_eq!(parse_span("24h"), Ok(chrono::Duration::hours(24)));
        assert_eq!(parse_span("30m"), Ok(chrono::Duration::minutes(30)));
        assert_eq!(parse_span("45s"), Ok(chrono::Duration::seconds(45)));
        assert_eq!(parse_span("2w"), Ok(chrono::Duration::weeks(2)));
        for bad in [
            "",
            "90",
            "d",
            "0d",
            "-1d",
            "1.5h",
            "3y",
            "99999999999999999999d",
        ] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
