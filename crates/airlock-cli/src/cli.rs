//! Command-line surface: what a user can type, with help that teaches.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// airlock keeps the users and roles of your Apache Airflow instances in step with your
/// identity provider, and proves it.
///
/// Start with `airlock config check`, then `airlock instances` to see that airlock can reach
/// and log in to every Airflow, then `airlock inventory` to see who has access to what.
#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file [default: ./airlock.toml]. Keys can be overridden with AIRLOCK_<SECTION>__<KEY>
    /// env vars, e.g. AIRLOCK_STORE__URL or AIRLOCK_INSTANCES__PROD__URL.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "AIRLOCK_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Log filter for stderr (error, warn, info, debug, trace, or a tracing directive).
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_LOG",
        default_value = "warn",
        value_name = "FILTER"
    )]
    pub log: String,

    /// Log format on stderr.
    #[arg(long, global = true, env = "AIRLOCK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Check every configured Airflow: reachable, version, auth manager, credentials, permissions.
    ///
    /// Exits non-zero if any instance fails a check.
    #[command(visible_alias = "doctor")]
    Instances(InstancesArgs),

    /// List who has access to what on each instance, with flags for reviewers, and store a
    /// snapshot. `airlock inventory diff` shows what changed since the previous snapshot.
    ///
    /// Flags: admin (Admin role or a role that can edit users/roles), never-logged-in,
    /// inactive-<N>d (no login for longer than inventory.inactive_after_days),
    /// created-outside-airlock, deactivated, no-roles.
    Inventory(InventoryArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config without touching the network; reports every error with its key path.
    Check,
}

#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// Only this instance (repeatable).
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InventoryArgs {
    #[command(subcommand)]
    pub command: Option<InventoryCommand>,
    /// Only this instance (repeatable).
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = InventoryFormat::Table)]
    pub output: InventoryFormat,
    /// Print the HTTP calls made and the time taken per instance on stderr.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Show what changed between the last two inventory snapshots: accounts added and removed,
    /// role changes, logins seen, roles added, removed or changed.
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Only this instance (repeatable).
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InventoryFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

pub fn init_logging(g: &Global) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&g.log).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match g.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
