//! `airlock request` and `airlock requests ...`: just-in-time access from the command line,
//! for an operator who can open the store, acting for the person named with `--as` (both are
//! in the audit trail). The decisions are the engine's (`airlock_engine::access`).

use crate::cli::{DecideArgs, ReportFormat, RequestArgs, RequestsCommand};
use crate::commands::open_store;
use airlock_config::Config;
use airlock_core::access::{self, AccessRequest, Action, Draft, RequestId, State};
use airlock_core::directory::{DirectorySnapshot, Found, PersonId};
use airlock_core::{InstanceName, RoleName, SystemClock};
use airlock_engine::access::Governance;
use airlock_store::{OpenOptions, RequestFilter, Store};
use anyhow::{bail, Context as _};
use chrono::SecondsFormat;
use std::collections::BTreeSet;
use std::process::ExitCode;

/// The person `name` designates ([`DirectorySnapshot::find`]).
fn person(directory: &DirectorySnapshot, name: &str) -> anyhow::Result<PersonId> {
    match directory.find(name) {
        Found::One(p) => Ok(p.id.clone()),
        Found::Nobody => {
            bail!("--as {name:?}: nobody in the directory has that id, email or username")
        }
        Found::Several => {
            bail!("--as {name:?}: several people in the directory match; give their id")
        }
    }
}

struct Context {
    config: Config,
    store: Store,
    directory: DirectorySnapshot,
    via: String,
}

impl Context {
    async fn new(config: Config, actor: &str) -> anyhow::Result<Context> {
        if config
            .policy
            .as_ref()
            .is_none_or(|p| p.access.rules.is_empty())
        {
            bail!("no just-in-time access is configured: add [[access.rules]] to the policy file");
        }
        let store = open_store(&config, OpenOptions::create()).await?;
        let directory = crate::provision::source(&config, &store)?
            .read()
            .await
            .context("read the directory")?;
        Ok(Context {
            config,
            store,
            directory,
            via: format!("named with --as by {actor} on the command line"),
        })
    }

    fn governance(&self) -> Governance<'_> {
        Governance {
            // Checked in `new`.
            policy: self
                .config
                .policy
                .as_ref()
                .map(|p| &p.access)
                .expect("policy"),
            instances: &self.config.instances,
            store: &self.store,
            clock: &SystemClock,
            via: Some(self.via.clone()),
        }
    }
}

/// Instances named, and those carrying every `--label`.
fn instances(
    config: &Config,
    names: &[String],
    labels: &[String],
) -> anyhow::Result<BTreeSet<InstanceName>> {
    let mut wanted = Vec::new();
    for l in labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: write KEY=VALUE"))?;
        wanted.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    airlock_engine::access::select_instances(
        &config.instances,
        names,
        &wanted,
        ("--instance", "--label"),
    )
    .map_err(anyhow::Error::msg)
}

fn duration(text: Option<&str>) -> anyhow::Result<Option<i64>> {
    text.map(|t| airlock_config::parse_duration(t).map_err(|e| anyhow::anyhow!("--for: {e}")))
        .transpose()
}

pub async fn request(config: Config, args: RequestArgs, actor: String) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(config, &actor).await?;
    let who = person(&ctx.directory, &args.person)?;
    let roles = (args.roles.iter())
        .map(|r| RoleName::new(r).with_context(|| format!("--role {r:?}")))
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    let draft = Draft {
        roles,
        instances: instances(&ctx.config, &args.instances, &args.labels)?,
        duration_secs: duration(args.duration.as_deref())?,
        reason: args.reason,
        ticket: args.ticket,
        extends: None,
    };
    let r = ctx
        .governance()
        .request(&ctx.directory, &who, draft, args.idempotency_key.as_deref())
        .await?;
    print_one(&r, args.output)
}

pub async fn requests(
    config: Config,
    cmd: RequestsCommand,
    actor: String,
) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(config, &actor).await?;
    let gov = ctx.governance();
    let d = &ctx.directory;
    let (r, output) = match cmd {
        RequestsCommand::List {
            state,
            person: who,
            output,
        } => {
            return list(&ctx, state, who.as_deref(), output).await;
        }
        RequestsCommand::Approve(a) => (
            gov.approve(d, &a.id, &person(d, &a.person)?, a.comment)
                .await?,
            a.output,
        ),
        RequestsCommand::Deny(a) => (
            gov.deny(d, &a.id, &person(d, &a.person)?, a.comment)
                .await?,
            a.output,
        ),
        RequestsCommand::Cancel(a) => (gov.cancel(&a.id, &person(d, &a.person)?).await?, a.output),
        RequestsCommand::Revoke(a) => (
            gov.revoke(d, &a.id, &person(d, &a.person)?, a.comment)
                .await?,
            a.output,
        ),
        RequestsCommand::Extend {
            decide:
                DecideArgs {
                    id,
                    person: who,
                    comment,
                    output,
                },
            duration: length,
        } => {
            let who = person(d, &who)?;
            let earlier = gov.get(&id).await?;
            if earlier.requester != who {
                bail!("only the requester of {id} can extend it");
            }
            let draft = Draft {
                roles: earlier.roles.clone(),
                instances: earlier.instances.clone(),
                duration_secs: duration(length.as_deref())?,
                reason: comment.or(earlier.reason.clone()),
                ticket: earlier.ticket.clone(),
                extends: Some(RequestId(id)),
            };
            (gov.request(d, &who, draft, None).await?, output)
        }
    };
    print_one(&r, output)
}

async fn list(
    ctx: &Context,
    state: Option<String>,
    who: Option<&str>,
    output: ReportFormat,
) -> anyhow::Result<ExitCode> {
    const STATES: &[&str] = State::NAMES;
    if let Some(s) = &state {
        if !STATES.contains(&s.as_str()) {
            bail!("--state {s:?}: one of {}", STATES.join(", "));
        }
    }
    let viewer = who.map(|w| person(&ctx.directory, w)).transpose()?;
    let gov = ctx.governance();
    let labels: access::Labels<'_> = ctx
        .config
        .instances
        .iter()
        .map(|i| (&i.name, &i.labels))
        .collect();
    let mut shown = Vec::new();
    let mut after = None;
    loop {
        let page = gov
            .list(&RequestFilter {
                states: state.iter().cloned().collect(),
                requester: None,
                after: after.clone(),
                limit: airlock_store::MAX_PAGE,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.0.clone());
        shown.extend(page.into_iter().filter(|r| {
            viewer.as_ref().is_none_or(|v| {
                access::authorize(gov.policy, &labels, &ctx.directory, v, Action::Read(r)).is_ok()
            })
        }));
    }
    match output {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
        ReportFormat::Text => {
            if shown.is_empty() {
                println!("no access requests");
            }
            for r in &shown {
                println!("{}", line(r));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ID  STATE  REQUESTER  ROLES on INSTANCES  (until/for ...)`, every value as stored: a
/// terminal shows control characters escaped.
fn line(r: &AccessRequest) -> String {
    let when = match &r.state {
        State::Approved { expires_at, .. } => format!(
            "until {}",
            expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        State::Pending => format!(
            "{} of approvals so far, for {} s",
            r.approvals.len(),
            r.duration_secs
        ),
        _ => String::new(),
    };
    format!(
        "{}  {:<9}  {}  {}  {}",
        r.id,
        r.state.name(),
        r.requester.0.escape_debug(),
        access::describe(&r.roles, &r.instances),
        when
    )
}

fn print_one(r: &AccessRequest, output: ReportFormat) -> anyhow::Result<ExitCode> {
    match output {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(r)?),
        ReportFormat::Text => println!("{}", line(r)),
    }
    Ok(ExitCode::SUCCESS)
}
