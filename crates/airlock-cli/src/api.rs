//! `airlock api token ...`: tokens for automation calling the governance API. Secrets are
//! printed once, on stdout, when issued; nothing else ever prints one. Issuing and revoking
//! are audited under the command's actor (`--actor`).

use crate::cli::{ApiCommand, ApiTokenCommand};
use crate::commands::open_store;
use crate::scim::when;
use airlock_config::Config;
use airlock_core::access::Scope;
use airlock_core::directory::Found;
use airlock_core::{Clock, SystemClock};
use airlock_store::{ApiToken, NewApiToken, OpenOptions};
use anyhow::{bail, Context as _};
use std::collections::BTreeSet;
use std::process::ExitCode;

const STORE_IT_NOW: &str = "This token is shown only once: store it now (e.g. in a secret \
manager). airlock keeps only its hash.";

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("token name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

/// The scopes named, checked: known, and only read scopes for a token without a person.
fn scopes(names: &[String], person: bool) -> anyhow::Result<BTreeSet<Scope>> {
    let scopes = (names.iter())
        .map(|n| Scope::parse(n.trim()).map_err(|e| anyhow::anyhow!("--scope: {e}")))
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    if let Some(s) = scopes.iter().find(|s| !s.reads_only() && !person) {
        bail!("--scope {s}: a token that changes something acts as a person; add --person");
    }
    Ok(scopes)
}

pub async fn run(config: Config, cmd: ApiCommand, actor: String) -> anyhow::Result<ExitCode> {
    let ApiCommand::Token(cmd) = cmd;
    // Checked before the store is opened: a bad name or scope changes nothing.
    let checked = match &cmd {
        ApiTokenCommand::Create {
            name,
            scopes: names,
            person,
            ..
        } => {
            check_name(name)?;
            Some(scopes(names, person.is_some())?)
        }
        _ => None,
    };
    let store = open_store(&config, OpenOptions::create()).await?;
    let now = SystemClock.now().timestamp_millis();
    match cmd {
        ApiTokenCommand::Create {
            name,
            person,
            expires_in,
            ..
        } => {
            let person = match person {
                Some(p) => {
                    let directory = crate::provision::source(&config, &store)?
                        .read()
                        .await
                        .context("read the directory")?;
                    match directory.find(&p) {
                        Found::One(found) => Some(found.id.0.clone()),
                        Found::Nobody => bail!(
                            "--person {p:?}: nobody in the directory has that id, email or username"
                        ),
                        Found::Several => {
                            bail!("--person {p:?}: several people in the directory match; give their id")
                        }
                    }
                }
                None => None,
            };
            let new = NewApiToken {
                name: name.clone(),
                person,
                scopes: checked
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect(),
                lifetime_ms: expires_in.map(|d| d.num_milliseconds()),
            };
            let (token, secret) = store.issue_api_token(&new, &actor, now).await?;
            let expiry = token
                .expires_ms
                .map_or("it does not expire".to_owned(), |e| {
                    format!("it expires at {}", when(Some(e)))
                });
            let acting = token
                .person
                .as_deref()
                .map_or("acting as no person (read only)".to_owned(), |p| {
                    format!("acting as {p}")
                });
            eprintln!(
                "Issued API token {name}, {acting}, scopes {}; {expiry}.",
                token.scopes.join(",")
            );
            eprintln!("{STORE_IT_NOW}");
            println!("{secret}");
        }
        ApiTokenCommand::Revoke { name } => {
            store.revoke_api_token(&name, &actor, now).await?;
            println!("Revoked API token {name}.");
        }
        ApiTokenCommand::List => {
            let tokens = store.api_tokens().await?;
            if tokens.is_empty() {
                println!(
                    "No API tokens. Issue one with `airlock api token create NAME --scope SCOPE`."
                );
            } else {
                println!("{}", table(tokens, now));
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn table(tokens: Vec<ApiToken>, now: i64) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "NAME",
        "STATUS",
        "PERSON",
        "SCOPES",
        "ISSUED",
        "BY",
        "EXPIRES",
        "LAST USED",
        "REVOKED",
    ]);
    for t in tokens {
        let status = if t.revoked_ms.is_some() {
            "revoked"
        } else if t.expires_ms.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        table.add_row([
            t.name.escape_debug().to_string(),
            status.to_owned(),
            t.person
                .as_deref()
                .map_or("-".into(), |p| p.escape_debug().to_string()),
            t.scopes.join(","),
            when(Some(t.created_ms)),
            t.created_by.escape_debug().to_string(),
            when(t.expires_ms),
            when(t.last_used_ms),
            when(t.revoked_ms),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes_are_checked_before_anything_is_stored() {
        check_name("ticket-bot.v2_1").expect("valid");
        for bad in ["", "a b", "x;y", &"n".repeat(65), "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let s = scopes(&["requests:read".into(), "audit:read".into()], false).expect("reads");
        assert_eq!(s.len(), 2);
        let err = scopes(&["requests:decide".into()], false).expect_err("no person");
        assert!(err.to_string().contains("--person"), "{err}");
        scopes(&["requests:decide".into()], true).expect("with a person");
        let err = scopes(&["admin".into()], true).expect_err("unknown");
        assert!(err.to_string().contains("requests:read"), "{err}");
    }
}
