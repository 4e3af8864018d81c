//! `plan`, `apply`, `sync`, `adopt` and `audit`: the provisioning commands. Each builds the
//! engine from the config and hands results to `output`.

use crate::cli::ServeArgs;
use crate::cli::{
    AdoptArgs, ApplyArgs, AuditCommand, PlanArgs, RailsCommand, ReportFormat, SyncArgs,
};
use crate::commands::{open_store, select};
use crate::output;
use airlock_audit::{NewEvent, Outcome, Target, ACTOR_AIRLOCK};
use airlock_config::{Config, DirectoryConfig};
use airlock_core::{Clock, SystemClock, Username};
use airlock_directory::jumpcloud::{JumpCloudSettings, JumpCloudSource};
use airlock_directory::ldap::{Disabled, LdapSettings, LdapSource, Membership};
use airlock_directory::scim::ScimSource;
use airlock_directory::{file::FileSource, Source};
use airlock_engine::client_for;
use airlock_engine::lease::{holder_id, instance_lease, LeaseKeeper, Taken};
use airlock_engine::sync::{ApplyOptions, Engine, Gate, Plan, Refusal};
use airlock_store::{ManagedOrigin, OpenOptions, Store};
use anyhow::{bail, Context as _};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit code of `sync` when a safety rail refused the run.
const EXIT_REFUSED: u8 = 3;

/// The configured directory; the SCIM source reads `store`.
pub(crate) fn source(config: &Config, store: &Store) -> anyhow::Result<Source> {
    match &config.directory {
        Some(DirectoryConfig::File { path }) => Ok(Source::File(FileSource::new(path.clone()))),
        Some(DirectoryConfig::JumpCloud { api_key, org_id, base_url, groups, timeout, max_retries, .. }) => {
            let mut s = JumpCloudSettings::new(api_key.clone());
            s.org_id = org_id.clone();
            s.base_url = base_url.clone();
            s.group_filter = groups.clone();
            s.timeout = *timeout;
            s.max_retries = *max_retries;
            Ok(Source::JumpCloud(JumpCloudSource::new(s)?))
        }
        Some(DirectoryConfig::Ldap(l)) => Ok(Source::Ldap(LdapSource::new(ldap_settings(l)?))),
        Some(DirectoryConfig::Scim) => Ok(Source::Scim(ScimSource::new(store.clone()))),
        None => bail!("no [directory] configured: add one (kind = \"file\", \"jumpcloud\", \"ldap\" or \"scim\") to the config"),
    }
}

fn ldap_settings(l: &airlock_config::LdapConfig) -> anyhow::Result<LdapSettings> {
    let url = |u: &Option<url::Url>| u.clone().context("directory.url is required");
    let mut s = match l.preset.as_str() {
        "jumpcloud" => {
            let mut s = LdapSettings::jumpcloud(
                l.org_id.as_deref().unwrap_or_default(),
                &l.bind_dn,
                l.bind_password.clone(),
            );
            if let Some(u) = &l.url {
                s.url = u.clone();
            }
            s
        }
        "active_directory" => LdapSettings::active_directory(
            url(&l.url)?,
            l.base_dn.clone().unwrap_or_default(),
            &l.bind_dn,
            l.bind_password.clone(),
        ),
        _ => LdapSettings::new(
            url(&l.url)?,
            &l.bind_dn,
            l.bind_password.clone(),
            l.user_base_dn.clone().unwrap_or_default(),
            l.group_base_dn.clone().unwrap_or_default(),
        ),
    };
    s.starttls = l.starttls;
    s.ca_pem = l.ca_pem.clone();
    let set = |target: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            *target = v.clone();
        }
    };
    set(&mut s.user_base_dn, &l.user_base_dn);
    set(&mut s.group_base_dn, &l.group_base_dn);
    set(&mut s.user_filter, &l.user_filter);
    set(&mut s.group_filter, &l.group_filter);
    set(&mut s.username_attr, &l.username_attr);
    set(&mut s.id_attr, &l.id_attr);
    set(&mut s.email_attr, &l.email_attr);
    match l.membership.as_deref() {
        Some("member_of") => {
            s.membership = Membership::MemberOf {
                attr: "memberOf".into(),
            }
        }
        Some("member") => {
            s.membership = Membership::GroupMember {
                member_attr: "member".into(),
            }
        }
        _ => {}
    }
    match (&l.disabled_attr, &l.disabled_values) {
        (Some(attr), Some(values)) => {
            s.disabled = Disabled::ValueIn {
                attr: attr.clone(),
                values: values.clone(),
            }
        }
        (Some(attr), None) => s.disabled = Disabled::Present { attr: attr.clone() },
        _ => {}
    }
    if let Some(p) = l.page_size {
        s.page_size = p;
    }
    if let Some(t) = l.timeout {
        s.timeout = t;
    }
    let problems = s.problems();
    if !problems.is_empty() {
        bail!("directory: {}", problems.join("; "));
    }
    Ok(s)
}

struct Setup {
    source: Source,
    store: Store,
}

async fn setup(config: &Config, pool: Option<u32>) -> anyhow::Result<Setup> {
    if config.policy.is_none() {
        bail!("no policy configured: set `policy = \"policy.toml\"` in the config (see README, Policy)");
    }
    let opts = OpenOptions {
        max_connections: pool.or(config.store.max_connections),
        ..OpenOptions::create()
    };
    let store = open_store(config, opts).await?;
    Ok(Setup {
        source: source(config, &store)?,
        store,
    })
}

fn engine<'a>(
    config: &'a Config,
    setup: &'a Setup,
    names: &[String],
    concurrency: usize,
    actor: &str,
    leases: Option<&'a LeaseKeeper>,
) -> anyhow::Result<Engine<'a>> {
    let instances = select(config, names)?;
    let mut clients = std::collections::BTreeMap::new();
    for inst in &instances {
        clients.insert(inst.name.clone(), client_for(inst)?);
    }
    Ok(Engine {
        policy: config.policy.as_ref().context("no policy configured")?,
        instances,
        clients,
        source: &setup.source,
        store: &setup.store,
        clock: &SystemClock,
        concurrency,
        actor: actor.to_string(),
        leases,
    })
}

pub async fn plan(config: Config, args: PlanArgs) -> anyhow::Result<ExitCode> {
    let s = setup(&config, None).await?;
    // Read-only: no lease, so `plan` works while `airlock serve` runs.
    let engine = engine(&config, &s, &args.instance, 1, ACTOR_AIRLOCK, None)?;
    let observed = engine.observe().await?;
    let mut plan = airlock_engine::cpu_bound(|| engine.plan(&observed));
    // Sealed so that `apply --plan` can tell an edited file (also for `-o json > FILE`).
    airlock_engine::sync::saved::seal(&mut plan);
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&plan)?;
        // Write beside, then rename: a half-written plan file must never be applied.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut e = NewEvent::new(
            SystemClock.now(),
            ACTOR_AIRLOCK,
            airlock_audit::operation::PLAN_SAVED,
            Outcome::Planned,
        );
        e.target = Some(Target::Run);
        e.reason = Some(format!(
            "plan {} saved to {}",
            &plan.fingerprint[..12],
            path.display()
        ));
        e.after = serde_json::to_value(plan.counts()).ok();
        s.store.append_audit(vec![e]).await?;
    }
    match args.output {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        ReportFormat::Text => output::plan(&plan, args.verbose),
    }
    s.store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn confirm(plan: &Plan) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to apply without confirmation: stdin is not a terminal; pass --yes");
    }
    eprint!(
        "Apply {} operation(s)? Only 'yes' is accepted: ",
        plan.ops().count()
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// Sets the flag on Ctrl-C / SIGTERM so the engine stops launching operations.
fn cancel_on_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("\ninterrupted: finishing operations in flight, starting no new ones");
        f.store(true, Ordering::SeqCst);
    });
    flag
}

fn progress_bar(total: usize) -> Option<Arc<dyn Fn(usize, usize) + Send + Sync>> {
    if !std::io::stderr().is_terminal() || total == 0 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} operations ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(Arc::new(move |done, _total| bar.set_position(done as u64)))
}

enum Flow {
    Confirm,
    Yes,
}

/// Takes the lease of each instance the run writes to, for as long as `keeper` lives (its
/// heartbeat renews them); fails, naming the holder, if another process has one.
async fn take_leases(
    keeper: &LeaseKeeper,
    instances: &[&airlock_config::InstanceConfig],
) -> anyhow::Result<()> {
    for inst in instances {
        match keeper.acquire(&instance_lease(inst.name.as_str())).await? {
            Taken::Granted(_) => {}
            Taken::Held(row) => {
                keeper.release_all().await;
                let left = (row.expires_ms - SystemClock.now().timestamp_millis()).max(0) / 1000;
                bail!(
                    "instance `{}` is being written by {} (its lease runs {left} s more unless renewed); nothing was changed: stop that process or let it finish, and retry",
                    inst.name,
                    row.holder
                );
            }
        }
    }
    Ok(())
}

/// How a run was asked for.
struct RunRequest<'a> {
    actor: &'a str,
    names: &'a [String],
    concurrency: usize,
    allow_mass: bool,
    saved: Option<Plan>,
    /// Where `saved` was read from, for messages.
    plan_file: Option<&'a std::path::Path>,
    flow: Flow,
    kind: &'static str,
    stats: bool,
}

async fn run_apply(config: &Config, s: &Setup, req: RunRequest<'_>) -> anyhow::Result<ExitCode> {
    let RunRequest {
        actor,
        names,
        concurrency,
        allow_mass,
        saved,
        plan_file,
        flow,
        kind,
        stats,
    } = req;
    let keeper = LeaseKeeper::new(
        s.store.clone(),
        holder_id(&format!("airlock {kind} by {actor}")),
        config.serve.lease_ttl,
        Arc::new(SystemClock),
    );
    take_leases(&keeper, &select(config, names)?).await?;
    let (stop_heartbeat, stop_rx) = tokio::sync::watch::channel(false);
    let heartbeat = keeper.spawn_heartbeat(stop_rx);
    let engine = engine(config, s, names, concurrency, actor, Some(&keeper))?;
    let code = run_prepared(&engine, kind, saved, plan_file, allow_mass, flow, stats).await;
    let _ = stop_heartbeat.send(true);
    let _ = heartbeat.await;
    keeper.release_all().await;
    code
}

async fn run_prepared(
    engine: &Engine<'_>,
    kind: &str,
    saved: Option<Plan>,
    plan_file: Option<&std::path::Path>,
    allow_mass: bool,
    flow: Flow,
    stats: bool,
) -> anyhow::Result<ExitCode> {
    let (run_id, gate) = engine.prepare(kind, saved, allow_mass).await?;
    let plan = match gate {
        Gate::Refused(r @ (Refusal::StalePlan { .. } | Refusal::PlanDiffers { .. })) => {
            let file = plan_file
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            eprintln!("error: plan {file} refused: {r}");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        Gate::Refused(r) => {
            eprintln!("refused: {r}");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        Gate::Proceed(plan) => plan,
    };
    if matches!(flow, Flow::Yes) {
        // `sync` and `apply --yes` print no plan; warnings still matter (missing roles or
        // permissions, people who get no account).
        for w in plan
            .warnings
            .iter()
            .chain(plan.instances.iter().flat_map(|p| p.warnings.iter()))
        {
            let at = w
                .instance
                .as_ref()
                .map(|i| format!("{i}: "))
                .unwrap_or_default();
            eprintln!("warning: {at}{}", w.message);
        }
    }
    for h in &plan.held {
        eprintln!(
            "held: {} {} on {}: {}",
            h.op.op.kind(),
            h.op.op.target(),
            h.op.instance,
            h.refusal
        );
    }
    let held_code = |ok: ExitCode| {
        if plan.held.is_empty() {
            ok
        } else {
            eprintln!(
                "{} deprovision(s) held back by a safety rail; review with `airlock rails list`",
                plan.held.len()
            );
            ExitCode::from(EXIT_REFUSED)
        }
    };
    if plan.is_empty() {
        // Applying an empty plan still records scope matches as managed.
        engine
            .execute(&run_id, &plan, &ApplyOptions::default())
            .await?;
        if stats {
            output::call_stats(&total_stats(engine));
        }
        println!(
            "in sync: no changes ({} people, {} instance(s))",
            plan.directory_people,
            plan.instances.len()
        );
        return Ok(held_code(ExitCode::SUCCESS));
    }
    if matches!(flow, Flow::Confirm) {
        output::plan(&plan, false);
        if !confirm(&plan)? {
            engine.abandon(&run_id, &plan).await?;
            println!("not applied");
            return Ok(ExitCode::from(1));
        }
    }
    let opts = ApplyOptions {
        allow_mass_deprovision: allow_mass,
        cancel: cancel_on_signal(),
        progress: progress_bar(plan.ops().count()),
    };
    let report = engine.execute(&run_id, &plan, &opts).await?;
    output::apply_report(&report);
    if stats {
        output::call_stats(&total_stats(engine));
    }
    let interrupted = opts.cancel.load(Ordering::SeqCst);
    Ok(if report.failed() > 0 || interrupted {
        ExitCode::from(1)
    } else {
        held_code(ExitCode::SUCCESS)
    })
}

/// Calls over the whole run: the clients are created per run.
fn total_stats(
    engine: &Engine<'_>,
) -> std::collections::BTreeMap<airlock_core::InstanceName, airlock_airflow::CallStats> {
    engine
        .clients
        .iter()
        .map(|(k, c)| (k.clone(), c.stats()))
        .collect()
}

pub async fn apply(config: Config, args: ApplyArgs, actor: String) -> anyhow::Result<ExitCode> {
    let saved = match &args.plan {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read plan {}", path.display()))?;
            let plan: Plan = match serde_json::from_str(&text) {
                Ok(p) => p,
                Err(e) => bail!("{} is not an airlock plan: {e}", path.display()),
            };
            // Before any lease, read or write: an edited file, or one naming an instance
            // this configuration does not have, is refused outright.
            let configured = config.instances.iter().map(|i| i.name.as_str()).collect();
            if let Err(e) = airlock_engine::sync::saved::check_file(&plan, &configured) {
                eprintln!(
                    "error: plan {} refused: {e}; nothing was applied",
                    path.display()
                );
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
            Some(plan)
        }
    };
    let names: Vec<String> = match (&saved, args.instance.is_empty()) {
        (Some(p), true) => p.instance_names.iter().map(ToString::to_string).collect(),
        _ => args.instance.clone(),
    };
    let s = setup(&config, None).await?;
    let flow = if args.yes { Flow::Yes } else { Flow::Confirm };
    let req = RunRequest {
        actor: &actor,
        names: &names,
        concurrency: args.concurrency,
        allow_mass: args.allow_mass_deprovision,
        saved,
        plan_file: args.plan.as_deref(),
        flow,
        kind: "apply",
        stats: false,
    };
    let code = run_apply(&config, &s, req).await;
    s.store.close().await;
    code
}

pub async fn sync(config: Config, args: SyncArgs, actor: String) -> anyhow::Result<ExitCode> {
    let s = setup(&config, None).await?;
    let req = RunRequest {
        actor: &actor,
        names: &args.instance,
        concurrency: args.concurrency,
        allow_mass: args.allow_mass_deprovision,
        saved: None,
        plan_file: None,
        flow: Flow::Yes,
        kind: "sync",
        stats: args.stats,
    };
    let code = run_apply(&config, &s, req).await;
    s.store.close().await;
    code
}

pub async fn adopt(config: Config, args: AdoptArgs, actor: String) -> anyhow::Result<ExitCode> {
    let inst = select(&config, std::slice::from_ref(&args.instance))?[0];
    let client = client_for(inst)?;
    let store = open_store(&config, OpenOptions::create()).await?;
    for name in &args.usernames {
        let username = Username::new(name.clone())?;
        let account = client.get_user(&username).await?;
        store
            .manage_account(
                inst.name.as_str(),
                account.username.as_str(),
                ManagedOrigin::Adopted,
                SystemClock.now().timestamp_millis(),
            )
            .await?;
        let mut e = NewEvent::new(
            SystemClock.now(),
            actor.clone(),
            airlock_audit::operation::ACCOUNT_ADOPT,
            Outcome::Succeeded,
        );
        e.instance = Some(inst.name.to_string());
        e.target = Some(Target::Account {
            username: account.username.to_string(),
        });
        e.reason = Some("adopted by an operator".into());
        e.before = serde_json::to_value(&account.roles)
            .ok()
            .map(|r| serde_json::json!({ "roles": r }));
        store.append_audit(vec![e]).await?;
        println!("adopted {} on {}", account.username, inst.name);
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(config: Config, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(&config, OpenOptions::existing()).await?;
    let code = match cmd {
        AuditCommand::Verify(args) if args.checkpoint.is_some() => {
            crate::audit::verify_checkpoint(&store, args).await?
        }
        AuditCommand::Checkpoint => crate::audit::checkpoint(&config, &store).await?,
        AuditCommand::Keygen(args) => crate::audit::keygen(args)?,
        AuditCommand::Leavers(args) => crate::audit::leavers(&config, &store, args).await?,
        AuditCommand::Verify(_) => match store.verify_audit().await? {
            Ok(summary) => {
                println!(
                    "audit trail intact: {} events, head {}",
                    summary.count, summary.last_hash
                );
                ExitCode::SUCCESS
            }
            Err(brk) => {
                eprintln!("error: audit trail broken: {brk}");
                ExitCode::from(1)
            }
        },
        AuditCommand::Export {
            format,
            after,
            since,
            hostname,
        } => {
            let hostname = hostname.unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_default()
            });
            let mut pages = store.audit_pages(after + 1, 500);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while let Some(page) = pages.next_page().await? {
                for e in page.iter().filter(|e| since.is_none_or(|t| e.at >= t)) {
                    for line in format.encoding().lines(e, &hostname) {
                        writeln!(out, "{line}")?;
                    }
                }
            }
            out.flush()?;
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

pub async fn serve(config: Config, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let pool = config.store.pool_size(config.instances.len());
    let s = setup(&config, Some(pool)).await?;
    let opts = airlock_server::ServeOptions {
        listen: args.listen.unwrap_or(config.serve.listen),
        metrics_listen: config.serve.metrics_listen,
        tls: config.serve.tls.clone(),
        http: airlock_server::HttpLimits {
            header_read_timeout: config.serve.header_read_timeout,
            max_connections: config.serve.max_connections,
            shutdown_grace: config.serve.shutdown_grace,
        },
        throttle: airlock_server::ThrottleConfig {
            limit: config.serve.auth_failure_limit,
            window: config.serve.auth_failure_window,
        },
        interval: config.serve.sync_interval,
        jitter: config.serve.sync_jitter,
        lease_retry: config.serve.lease_retry,
        scim_poll: config.serve.scim_poll,
        concurrency: config.serve.concurrency,
        lease_ttl: config.serve.lease_ttl,
    };
    let shutdown = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    };
    airlock_server::run(config, s.source, s.store, opts, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn rails(config: Config, cmd: RailsCommand, actor: String) -> anyhow::Result<ExitCode> {
    let store = open_store(&config, OpenOptions::existing()).await?;
    let code = match cmd {
        RailsCommand::List {
            instance,
            all,
            output: format,
        } => {
            let holds = store.rail_holds(instance.as_deref(), !all).await?;
            output::rail_holds(&holds, format)?;
            ExitCode::SUCCESS
        }
        RailsCommand::Release { ids, instance, all } => {
            let ids = match (all, ids.is_empty()) {
                (true, true) => store
                    .rail_holds(instance.as_deref(), true)
                    .await?
                    .into_iter()
                    .filter(|h| h.status == "held")
                    .map(|h| h.id)
                    .collect(),
                (false, false) => ids,
                (true, false) => bail!("give hold ids or --all, not both"),
                (false, true) => {
                    bail!("nothing to release: give hold ids (see `airlock rails list`) or --all")
                }
            };
            let now = SystemClock.now();
            let released = store
                .release_holds(&ids, &actor, now.timestamp_millis())
                .await?;
            let mut events = Vec::new();
            for h in &released {
                let mut e = NewEvent::new(
                    now,
                    actor.clone(),
                    airlock_audit::operation::RAIL_RELEASE,
                    Outcome::Succeeded,
                );
                e.instance = Some(h.instance.clone());
                e.target = Some(Target::Account {
                    username: h.username.clone(),
                });
                e.reason = Some(format!(
                    "released held {} (hold {}, rail {}): {}",
                    h.op_kind, h.id, h.rail, h.reason
                ));
                events.push(e);
            }
            store.append_audit(events).await?;
            for h in &released {
                println!(
                    "released {} {} on {} ({})",
                    h.op_kind, h.username, h.instance, h.id
                );
            }
            let missing = ids.len() - released.len();
            if missing > 0 {
                eprintln!("{missing} id(s) were not held (unknown, or already released or ended)");
            }
            if released.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    };
    store.close().await;
    Ok(code)
}
