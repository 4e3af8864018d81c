//! One function per command: load what it needs, call the engine, hand results to `output`.

use crate::cli::{
    Cli, Command, ConfigCommand, DiffArgs, InstancesArgs, InventoryArgs, InventoryCommand,
};
use crate::output;
use airlock_config::{Config, InstanceConfig, CONFIG_ENV, DEFAULT_CONFIG_FILE};
use airlock_core::inventory::FlagRules;
use airlock_core::SystemClock;
use airlock_engine::{client_for, doctor, inventory};
use airlock_store::{OpenOptions, Store};
use anyhow::{bail, Context as _};
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::process::ExitCode;

/// The audit actor of this command: `--actor`, else `operator:` and the OS user.
pub(crate) fn actor(global: &crate::cli::Global) -> String {
    if let Some(a) = global.actor.as_deref().filter(|a| !a.trim().is_empty()) {
        return a.trim().to_string();
    }
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("operator:{user}")
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = cli.global.config.clone();
    let actor = actor(&cli.global);
    match cli.command {
        Command::Config(ConfigCommand::Check) => config_check(config_path),
        Command::Instances(args) => instances(load(config_path)?, args).await,
        Command::Inventory(InventoryArgs {
            command: Some(InventoryCommand::Diff(args)),
            ..
        }) => diff(load(config_path)?, args).await,
        Command::Inventory(args) => run_inventory(load(config_path)?, args).await,
        Command::Plan(args) => crate::provision::plan(load(config_path)?, args).await,
        Command::Apply(args) => crate::provision::apply(load(config_path)?, args, actor).await,
        Command::Sync(args) => crate::provision::sync(load(config_path)?, args, actor).await,
        Command::Adopt(args) => crate::provision::adopt(load(config_path)?, args, actor).await,
        Command::Rails(cmd) => crate::provision::rails(load(config_path)?, cmd, actor).await,
        Command::Request(args) => crate::access::request(load(config_path)?, args, actor).await,
        Command::Access(crate::cli::AccessCommand::At(args)) => {
            crate::history::access_at(load(config_path)?, args).await
        }
        Command::Requests(cmd) => crate::access::requests(load(config_path)?, cmd, actor).await,
        // Needs no config: the key is made before anything is configured to use it.
        Command::Audit(crate::cli::AuditCommand::Keygen(args)) => crate::audit::keygen(args),
        Command::Audit(cmd) => crate::provision::audit(load(config_path)?, cmd).await,
        Command::Serve(args) => crate::provision::serve(load(config_path)?, args).await,
        Command::Scim(cmd) => crate::scim::run(load(config_path)?, cmd, actor).await,
        Command::Api(cmd) => crate::api::run(load(config_path)?, cmd, actor).await,
    }
}

fn config_file(path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = path {
        return Ok(p);
    }
    let default = PathBuf::from(DEFAULT_CONFIG_FILE);
    if !default.exists() {
        bail!("no config file: {DEFAULT_CONFIG_FILE} does not exist here; pass --config FILE or set {CONFIG_ENV}");
    }
    Ok(default)
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let path = config_file(path)?;
    // Relative paths in the config are relative to the config file, so anchor it.
    let path = std::path::absolute(&path).unwrap_or(path);
    Ok(airlock_config::load(&path)?)
}

fn config_check(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = config_file(path)?;
    let config = load(Some(path.clone()))?;
    println!(
        "{}: ok ({} instance{}: {})",
        path.display(),
        config.instances.len(),
        if config.instances.len() == 1 { "" } else { "s" },
        config
            .instances
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// The instances named with `--instance`, or all of them.
pub(crate) fn select<'a>(
    config: &'a Config,
    names: &[String],
) -> anyhow::Result<Vec<&'a InstanceConfig>> {
    if names.is_empty() {
        return Ok(config.instances.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            config.instance(n).with_context(|| {
                let known: Vec<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();
                format!("unknown instance `{n}` (configured: {})", known.join(", "))
            })
        })
        .collect()
}

pub(crate) async fn open_store(config: &Config, opts: OpenOptions) -> anyhow::Result<Store> {
    Ok(Store::open(config.store.url.expose_secret(), opts).await?)
}

async fn instances(config: Config, args: InstancesArgs) -> anyhow::Result<ExitCode> {
    let selected = select(&config, &args.instance)?;
    let checks = selected.iter().map(|inst| async move {
        match client_for(inst) {
            Ok(client) => {
                let mut h = doctor::check(&client, inst.url.as_str(), &inst.username).await;
                h.check_token_lifetime(&client, inst.token_lifetime);
                h
            }
            Err(e) => doctor::Health::failed(inst.name.as_str(), inst.url.as_str(), e.to_string()),
        }
    });
    let results = futures::future::join_all(checks).await;
    output::health(&results, args.output)?;
    Ok(if results.iter().all(doctor::Health::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn run_inventory(config: Config, args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let selected = select(&config, &args.instance)?;
    let store = open_store(&config, OpenOptions::create()).await?;
    let rules = FlagRules {
        inactive_after_days: config.inventory.inactive_after_days,
    };
    let protected = (config.policy.as_ref())
        .map(|p| p.protected.clone())
        .unwrap_or_default();
    let runs = selected.iter().map(|inst| {
        let store = store.clone();
        let watch = inventory::LoginWatch::new(inst, protected.clone());
        async move {
            let client = client_for(inst)?;
            inventory::run(&client, &store, &SystemClock, rules, &watch).await
        }
    });
    let results = futures::future::join_all(runs).await;
    let mut reports = Vec::new();
    let mut failed = 0;
    for result in results {
        match result {
            Ok(outcome) => {
                if args.stats {
                    output::stats(&outcome);
                }
                reports.push(outcome.report);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    output::reports(&reports, args.output)?;
    store.close().await;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn diff(config: Config, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let selected = select(&config, &args.instance)?;
    let store = open_store(&config, OpenOptions::existing()).await?;
    let mut diffs = Vec::new();
    for inst in selected {
        diffs.push((
            inst.name.to_string(),
            inventory::latest_diff(&store, inst.name.as_str()).await?,
        ));
    }
    store.close().await;
    output::diffs(&diffs, args.output)?;
    Ok(ExitCode::SUCCESS)
}
