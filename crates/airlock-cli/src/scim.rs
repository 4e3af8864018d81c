//! `airlock scim token ...`: bearer tokens for the SCIM endpoint. Secrets are printed once, on
//! stdout, when created or rotated; nothing else ever prints one.

use crate::cli::{ScimCommand, ScimTokenCommand};
use crate::commands::open_store;
use airlock_config::Config;
use airlock_core::{Clock, SystemClock};
use airlock_store::OpenOptions;
use chrono::{DateTime, SecondsFormat};
use std::process::ExitCode;

const STORE_IT_NOW: &str = "This token is shown only once: store it now (e.g. in the identity \
provider's provisioning settings or a secret manager). airlock keeps only its hash.";

pub async fn run(config: Config, cmd: ScimCommand) -> anyhow::Result<ExitCode> {
    let ScimCommand::Token(cmd) = cmd;
    let store = open_store(&config, OpenOptions::create()).await?;
    let now = SystemClock.now().timestamp_millis();
    match cmd {
        ScimTokenCommand::Create { client } => {
            let (_, secret) = store.create_scim_token(&client, now).await?;
            eprintln!("Created a SCIM token for client {client}.");
            eprintln!("{STORE_IT_NOW}");
            println!("{secret}");
        }
        ScimTokenCommand::Rotate { client } => {
            let secret = store.rotate_scim_token(&client, now).await?;
            eprintln!("Rotated the SCIM token of client {client}; the old token no longer works.");
            eprintln!("{STORE_IT_NOW}");
            println!("{secret}");
        }
        ScimTokenCommand::Revoke { client } => {
            store.revoke_scim_token(&client, now).await?;
            println!("Revoked the SCIM token of client {client}.");
        }
        ScimTokenCommand::List => {
            let tokens = store.list_scim_tokens().await?;
            if tokens.is_empty() {
                println!(
                    "No SCIM tokens. Issue one with `airlock scim token create --client NAME`."
                );
            } else {
                let mut table = comfy_table::Table::new();
                table.load_preset(comfy_table::presets::NOTHING);
                table.set_header(["CLIENT", "STATUS", "ISSUED", "LAST USED", "REVOKED"]);
                for t in tokens {
                    table.add_row([
                        t.client,
                        if t.revoked_ms.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                        .to_owned(),
                        when(Some(t.created_ms)),
                        when(t.last_used_ms),
                        when(t.revoked_ms),
                    ]);
                }
                println!("{table}");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(DateTime::from_timestamp_millis).map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}
