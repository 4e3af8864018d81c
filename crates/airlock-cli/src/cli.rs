//! Command-line surface: what a user can type, with help that teaches.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// airlock keeps the users and roles of your Apache Airflow instances in step with your
/// identity provider, and proves it.
///
/// Start with `airlock config check`, then `airlock instances` to see that airlock can reach
/// and log in to every Airflow, and `airlock inventory` to see who has access to what. Then
/// `airlock plan` shows what the directory and the policy say should change, `airlock apply`
/// makes it so, and `airlock sync` (from cron) or `airlock serve` keeps it so.
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

    /// Who is running this command, for the audit trail [default: the OS user, as
    /// `operator:NAME`]. Recorded on every change `apply`, `sync`, `adopt` and `rails release`
    /// make.
    #[arg(long, global = true, env = "AIRLOCK_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
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
    /// Also reports as a problem an instance whose tokens live longer than its
    /// token_lifetime_secs (deletions there are held back until the config matches). Exits
    /// non-zero if any instance fails a check or has a problem.
    #[command(visible_alias = "doctor")]
    Instances(InstancesArgs),

    /// List who has access to what on each instance, with flags for reviewers, and store a
    /// snapshot. `airlock inventory diff` shows what changed since the previous snapshot.
    ///
    /// Flags: admin (Admin role or a role that can edit users/roles), never-logged-in,
    /// inactive-<N>d (no login for longer than inventory.inactive_after_days),
    /// created-outside-airlock, deactivated, no-roles.
    Inventory(InventoryArgs),

    /// Show what a sync would change: read the directory and every instance, apply the policy,
    /// print a sorted diff with a reason for each operation. Changes nothing in Airflow.
    ///
    /// `--out plan.json` saves the plan (with a digest of its operations) for
    /// `airlock apply --plan plan.json`, which refuses it if the file was edited, or if
    /// anything it was computed from has changed since.
    Plan(PlanArgs),

    /// Compute the plan (or load a saved one), check the safety rails, ask for confirmation,
    /// and apply it with bounded concurrency. Every change and refusal goes to the audit trail.
    ///
    /// With --plan, what is applied is always the freshly computed plan; the file is refused
    /// (exit 3, nothing applied) if it was edited, names an unknown instance, is stale, or its
    /// operations differ from the fresh ones.
    Apply(ApplyArgs),

    /// Plan and apply without asking, for cron and CI; prints one summary line.
    ///
    /// Like `apply`, it takes the lease of every instance it writes to, so it never runs at
    /// the same time as `airlock serve` (or another `sync`) on the same instance: if one holds
    /// it, `sync` stops before any write and names the holder.
    ///
    /// Exit codes: 0 in sync (or changes applied), 1 an error or a failed operation,
    /// 3 refused by a safety rail (nothing was changed), or some deprovisions held back by
    /// one (everything else was applied; see `airlock rails list`).
    Sync(SyncArgs),

    /// Put existing Airflow accounts under airlock's management, so that they are suspended
    /// when their person leaves the directory.
    Adopt(AdoptArgs),

    /// Check or export the tamper-evident audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Review and release the suspensions and deletions a safety rail held back.
    ///
    /// A deprovisioning cap (safety.max_deprovisions per run, max_deprovision_fraction per
    /// instance, max_deprovisions_per_hour over every run and replica) holds back only the
    /// operations it refuses; the rest of the run goes on. Held operations wait here until
    /// an operator releases them, the hourly window has room again, or the person no longer
    /// needs deprovisioning. A release is audited under the operator's name (`--actor`), and
    /// the next run (`airlock serve` picks it up within seconds) applies it.
    #[command(subcommand)]
    Rails(RailsCommand),

    /// Ask for roles on instances for a while (just-in-time access, `[access]` in the policy).
    ///
    /// The first `[[access.rules]]` entry that covers every role on every instance decides who
    /// may ask, who approves (`airlock requests approve`), how many approvals, and the longest
    /// and default duration. Once approved the grant is part of what syncs provision, until it
    /// ends by itself; roles the person also has from the directory stay.
    ///
    /// On the command line the person is named with `--as` (email, directory username or id)
    /// by an operator who can open the store: the audit trail records both.
    Request(RequestArgs),

    /// List, approve, deny, cancel, revoke and extend just-in-time access requests.
    #[command(subcommand)]
    Requests(RequestsCommand),

    /// Who had access to what, when: answered from what airlock observed.
    ///
    /// Every complete inventory snapshot (`airlock inventory`, and `airlock serve` every
    /// serve.login_snapshot_secs) and every full sync (`sync`, `apply`, the service's
    /// scheduled runs) is an observation of each account's roles. The store keeps
    /// one row per change of access, stretched while observations find it unchanged.
    #[command(subcommand)]
    Access(AccessCommand),

    /// Run as a service: scheduled syncs per instance (the same engine as `sync`), with
    /// /healthz (JSON, per instance), /readyz (ready while the store answers) and Prometheus /metrics.
    ///
    /// It also serves the SCIM 2.0 endpoint at /scim/v2 (see `airlock scim`). With `[directory]
    /// kind = "scim"`, every SCIM write is applied at once to just the accounts it touched (the
    /// user, or the members a group gained or lost), through the same plan, rails and audit;
    /// the scheduled full syncs repair everything else.
    ///
    /// With a PostgreSQL store, several replicas can run: each instance is synced by the one
    /// replica holding its lease, and another takes over within `serve.lease_ttl_secs` plus
    /// `serve.lease_retry_secs` (15 + 5 s) when it dies, freezes or loses the store; one that lost a lease
    /// stops before its next write. A SCIM write taken by another replica reaches the holder
    /// within `serve.scim_poll_ms`. Instances are independent: one unreachable Airflow delays
    /// only its own syncs. On SQLite only one `serve` may use the store at a time.
    ///
    /// /healthz answers JSON with each instance's lease holder, last sync, last error class
    /// and pending SCIM changes; /readyz fails while the store is unreachable. SIGTERM stops
    /// new syncs, lets operations in flight finish, records the run and exits.
    Serve(ServeArgs),

    /// Manage the SCIM 2.0 endpoint that `airlock serve` offers at /scim/v2, where Entra ID,
    /// Okta or JumpCloud push users and groups in real time.
    ///
    /// Each identity provider (a "client") gets its own bearer token: create one, paste it into
    /// the provider's provisioning settings with the base URL https://<host>/scim/v2, and set
    /// `[directory] kind = "scim"` so that syncs read what the providers pushed.
    #[command(subcommand)]
    Scim(ScimCommand),

    /// The governance API of `airlock serve` ([api]): issue, list and revoke its tokens.
    #[command(subcommand)]
    Api(ApiCommand),
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Who asks: an email, directory username or directory id.
    #[arg(long = "as", value_name = "PERSON")]
    pub person: String,
    /// A role to ask for (repeat for several).
    #[arg(long = "role", value_name = "ROLE", required = true)]
    pub roles: Vec<String>,
    /// An instance, by name (repeat for several).
    #[arg(long = "instance", value_name = "NAME")]
    pub instances: Vec<String>,
    /// Every instance carrying this label, as KEY=VALUE (repeat: all must match).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// For how long once approved, e.g. 30m, 2h, 1d [default: the rule's].
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why (the rule may require one).
    #[arg(long)]
    pub reason: Option<String>,
    /// A ticket reference.
    #[arg(long)]
    pub ticket: Option<String>,
    /// Makes a retry safe: the same key with the same request returns the first one.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests, oldest first (with --as, only those the person may see).
    List {
        /// Only in this state: pending, approved, denied, cancelled, lapsed, revoked, expired.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// Only those this person may see (see `airlock request --as`).
        #[arg(long = "as", value_name = "PERSON")]
        person: Option<String>,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Approve a pending request (the approval that completes the count starts the grant).
    Approve(DecideArgs),
    /// Deny a pending request.
    Deny(DecideArgs),
    /// Withdraw your own pending request.
    Cancel(DecideArgs),
    /// End an active grant now (its requester, an approver, or a governance admin).
    Revoke(DecideArgs),
    /// Ask for the same access again, to follow on from a grant: a new request, through the
    /// same approvals.
    Extend {
        #[command(flatten)]
        decide: DecideArgs,
        /// For how long [default: the rule's].
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The request's id (from `airlock requests list`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Who acts: an email, directory username or directory id.
    #[arg(long = "as", value_name = "PERSON")]
    pub person: String,
    /// A comment (for extend: the reason).
    #[arg(long)]
    pub comment: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Subcommand)]
pub enum RailsCommand {
    /// List held deprovisions (open ones; `--all` for released, applied and cleared too).
    List {
        /// Only this instance.
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
        /// Include holds that ended.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
        output: ReportFormat,
    },
    /// Release held deprovisions by id (from `airlock rails list`), or every open one of an
    /// instance with `--instance NAME --all`. Released operations pass every cap on the
    /// next run.
    Release {
        /// Hold ids.
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// With `--all`: only this instance's holds.
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
        /// Release every held deprovision (of `--instance`, if given).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScimCommand {
    /// Issue, list, rotate and revoke the bearer tokens SCIM clients authenticate with.
    ///
    /// A token is shown exactly once, when it is created or rotated; the store keeps only its
    /// SHA-256 hash, so a lost token cannot be recovered, only rotated.
    #[command(subcommand)]
    Token(ScimTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum ScimTokenCommand {
    /// Issue a token to a new client and print it once.
    ///
    /// Example: `airlock scim token create --client okta --expires-in 90d`. Refused if the
    /// client already has a token that is not revoked (rotate it instead). With `--groups`
    /// the client may only create or change groups whose displayName matches one of the
    /// patterns (case-insensitive, `*` matches anything), e.g. `--groups 'eng-*,data-*'` for
    /// a second identity provider that must never create `Admins`; its other group writes
    /// answer 403 and are audited as refused. Issuing is audited under `--actor`.
    Create {
        /// A name for the identity provider using the token (e.g. okta, entra, jumpcloud).
        #[arg(long, value_name = "NAME")]
        client: String,
        /// How long the token works (e.g. 90d, 12h, 30m; units s, m, h, d, w); rotation
        /// renews it for as long again. Without it the token works until revoked.
        #[arg(long, value_name = "SPAN", value_parser = crate::scim::parse_span)]
        expires_in: Option<chrono::Duration>,
        /// Comma-separated patterns of the group displayNames this client may create or
        /// change (e.g. 'eng-*,data-*'). Without it the client may write any group.
        #[arg(long, value_name = "PATTERNS")]
        groups: Option<String>,
    },
    /// List clients: status, when their tokens were issued, expire, were last used and
    /// revoked, until when a rotated token still works, and their group allowance. Never
    /// prints a token.
    List,
    /// Replace a client's token with a new one, printed once.
    ///
    /// With `--grace 24h` the old token keeps working for that long (never past its own
    /// expiry), so the identity provider can be updated; without it the old token stops at
    /// once. A token rotated earlier and still in its grace stops now. The new token keeps
    /// the client's lifetime (or `--expires-in`) and group allowance. Audited under `--actor`.
    Rotate {
        /// The client whose token to replace.
        #[arg(long, value_name = "NAME")]
        client: String,
        /// How long the old token keeps working (e.g. 24h); default: it stops at once.
        #[arg(long, value_name = "SPAN", value_parser = crate::scim::parse_span)]
        grace: Option<chrono::Duration>,
        /// How long the new token works (default: as long as the client's tokens were
        /// issued for).
        #[arg(long, value_name = "SPAN", value_parser = crate::scim::parse_span)]
        expires_in: Option<chrono::Duration>,
    },
    /// Revoke a client's token (and a rotated one still in its grace): its requests are
    /// refused from now on. `create` can issue the client a new one later. Audited under
    /// `--actor`.
    Revoke {
        /// The client whose token to revoke.
        #[arg(long, value_name = "NAME")]
        client: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Issue, list and revoke airlock API tokens: for automation calling /api/v1 (people
    /// use their identity provider's tokens).
    ///
    /// A token is shown exactly once; the store keeps only its SHA-256 hash. It may act as a
    /// directory person (`--person`: it can then do what that person may, no more, and only
    /// while they are active in the directory) and only within its scopes; without a person
    /// it may only read. Issuing and revoking are audited under `--actor`.
    #[command(subcommand)]
    Token(ApiTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Issue a token and print it once.
    ///
    /// Example: `airlock api token create ticket-bot --scope requests:read --scope
    /// requests:write --person bot@example.com --expires-in 90d`. Scopes: requests:read,
    /// requests:write (ask, cancel), requests:decide (approve, deny, revoke),
    /// directory:read, audit:read.
    Create {
        /// The token's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// What it may be used for (repeat, or comma-separate).
        #[arg(
            long = "scope",
            value_name = "SCOPE",
            value_delimiter = ',',
            required = true
        )]
        scopes: Vec<String>,
        /// The directory person it acts as (id, email or username); needed for any scope
        /// that changes something.
        #[arg(long, value_name = "PERSON")]
        person: Option<String>,
        /// How long it works (e.g. 90d, 12h; units s, m, h, d, w). Without it, until revoked.
        #[arg(long, value_name = "SPAN", value_parser = crate::scim::parse_span)]
        expires_in: Option<chrono::Duration>,
    },
    /// List tokens: person, scopes, when issued, expiring, last used, revoked. Never prints
    /// a token.
    List,
    /// Revoke a token: refused from now on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for /scim/v2, and health and metrics unless serve.metrics_listen (overrides serve.listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Only this instance (repeatable).
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
    /// Save the plan as JSON to this file, for `airlock apply --plan`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// List unmanaged accounts too.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Only this instance (repeatable); must match the saved plan's instances if --plan is given.
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Vec<String>,
    /// Apply this saved plan (refused if it was edited, or the state changed since it was made).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Lift the caps on suspensions and deletions, and the directory-shrink check.
    #[arg(long)]
    pub allow_mass_deprovision: bool,
    /// Operations in flight at once (over all instances).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this instance (repeatable).
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Vec<String>,
    /// Lift the caps on suspensions and deletions, and the directory-shrink check.
    #[arg(long)]
    pub allow_mass_deprovision: bool,
    /// Operations in flight at once (over all instances).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Print HTTP calls by kind and time spent waiting on Airflow, per instance, on stderr.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The instance.
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: String,
    /// Usernames to adopt (they must exist in Airflow).
    #[arg(required = true, value_name = "USERNAME")]
    pub usernames: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; report the first modified, deleted, inserted or reordered
    /// event (with --checkpoint: also check it against a signed checkpoint).
    ///
    /// With --checkpoint and --public-key, also check the chain against a signed checkpoint
    /// kept outside the database: its signature, that the chain holds at least its number of
    /// events, and that the chain's event at that size has the signed hash. This catches a
    /// history rewritten and re-hashed, a truncated log and a log reset to genesis, which the
    /// chain alone cannot.
    Verify(VerifyArgs),
    /// Stream the audit trail, one event (or OCSF event) a line, for a SIEM or an auditor.
    ///
    /// Formats: `jsonl` (the events as stored, with their hashes), `ocsf` (OCSF 1.8.0 JSON:
    /// Account Change, Group Management (one event per role or permission changed), User
    /// Access Management for just-in-time grants, API Activity for SCIM and API token changes;
    /// airlock's own run bookkeeping has no OCSF class and is left out), `cef` (ArcSight CEF)
    /// and `syslog` (RFC 5424 messages, facility authpriv, structured data `airlock@32473`).
    /// Every value is escaped for its format: nothing from a directory or Airflow can forge a
    /// field or a line.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only events at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// The HOSTNAME of syslog messages (default: this machine's name).
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
    },
    /// Sign a checkpoint of the audit chain now and write it to the destinations of
    /// [audit.checkpoints] (`airlock serve` writes one every interval_secs when the chain grew).
    ///
    /// The chain is verified first, and must extend the newest checkpoint already at the file
    /// or directory destination: a rewritten history is never signed.
    Checkpoint,
    /// How long airlock took to remove the access of each person the identity provider
    /// suspended or deleted ("time to deprovision").
    ///
    /// Needs a JumpCloud directory with `insights = true`: reads Directory Insights for
    /// `user_suspended` and `user_delete` events since the last read (`airlock serve` does the
    /// same every `directory.insights_poll_secs`), matches them with airlock's removals of
    /// access in the audit trail (a suspension, a deletion, or roles set to none), and prints
    /// per leaver when the provider recorded it and, per instance, when airlock removed the
    /// access. A leaver whose access is not removed yet shows `pending`.
    Leavers(LeaversArgs),
    /// Generate an Ed25519 signing key for checkpoints: writes the private key to --out
    /// (mode 0600, never printed; an existing file is not replaced) and prints the public
    /// verifier key (`NAME+KEYID+KEY`) to give to whoever verifies. Needs no config.
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A signed checkpoint (C2SP signed note) written by `airlock audit checkpoint` or
    /// `airlock serve`.
    #[arg(long, value_name = "FILE", requires = "public_key")]
    pub checkpoint: Option<PathBuf>,
    /// The verifier key of the checkpoint's signer, as printed by `airlock audit keygen`
    /// (`NAME+KEYID+KEY`), or a file holding it.
    #[arg(long, value_name = "KEY", requires = "checkpoint")]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct LeaversArgs {
    /// Only leavers the provider recorded at or after this time (RFC 3339; default: 30 days
    /// ago).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Print what is recorded without reading Directory Insights and the trail first.
    #[arg(long)]
    pub no_refresh: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (created with mode 0600; must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The key's name, which is also the log's name in every checkpoint: set the same
    /// `key_name` in [audit.checkpoints]. E.g. `airlock.example.com/prod`.
    #[arg(long, value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// The events as stored (JSON Lines).
    Jsonl,
    /// OCSF 1.8.0 events (JSON Lines).
    Ocsf,
    /// ArcSight Common Event Format lines.
    Cef,
    /// RFC 5424 syslog messages, one a line.
    Syslog,
}

impl ExportFormat {
    /// The encoder.
    pub fn encoding(self) -> airlock_audit::Format {
        match self {
            ExportFormat::Jsonl => airlock_audit::Format::Jsonl,
            ExportFormat::Ocsf => airlock_audit::Format::Ocsf,
            ExportFormat::Cef => airlock_audit::Format::Cef,
            ExportFormat::Syslog => airlock_audit::Format::Syslog,
        }
    }
}

/// An RFC 3339 time.
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("'{text}' is not an RFC 3339 time such as 2026-12-01T00:00:00Z: {e}"))
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Every account that held a role at TIME, per instance, and what the answer rests on.
    ///
    /// Inside a stretch of observations that found the same access the answer is
    /// `observed`. After the newest observation it is `last_observed`. Between two
    /// observations that differ, the access changed at some point between them: each account
    /// whose roles differ is `changed_in_gap`, with its roles on both sides. Before the first
    /// observation of an instance there is no answer for it.
    ///
    /// Exit codes: 0 answered (even with no rows), 1 an error, 4 no observation of any asked
    /// instance at or before TIME.
    At(AccessAtArgs),
}

#[derive(Debug, Args)]
pub struct AccessAtArgs {
    /// The moment, RFC 3339 (e.g. 2026-09-30T23:59:59Z), or `now`.
    #[arg(value_name = "TIME", value_parser = parse_time_or_now)]
    pub at: AtTime,
    /// Only this instance (repeatable; default: every instance ever observed).
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Vec<String>,
    /// Only holders of this role (exact name, e.g. Admin).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Only this person: an Airflow username or an email.
    #[arg(long, value_name = "PERSON")]
    pub person: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = InventoryFormat::Table)]
    pub output: InventoryFormat,
}

/// A moment on the command line: a time, or `now` (read from the clock when the command runs).
#[derive(Debug, Clone, Copy)]
pub enum AtTime {
    /// The clock's now.
    Now,
    /// This time.
    At(chrono::DateTime<chrono::Utc>),
}

fn parse_time_or_now(text: &str) -> Result<AtTime, String> {
    if text.eq_ignore_ascii_case("now") {
        return Ok(AtTime::Now);
    }
    parse_time(text).map(AtTime::At)
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
