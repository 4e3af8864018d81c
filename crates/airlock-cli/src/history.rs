//! `airlock access at`: who had access to what, when (`airlock_engine::history`).

use crate::cli::{AccessAtArgs, AtTime, InventoryFormat};
use crate::commands::open_store;
use crate::output::csv_cell;
use airlock_config::Config;
use airlock_core::history::{AccessRow, Certainty, Filter, Span};
use airlock_core::{Clock as _, RoleName, SystemClock};
use airlock_engine::history::{self, AccessAt};
use airlock_store::OpenOptions;
use anyhow::Context as _;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::ExitCode;

/// Exit code when no asked instance was observed at or before the moment.
const NOT_OBSERVED: u8 = 4;

pub async fn access_at(config: Config, args: AccessAtArgs) -> anyhow::Result<ExitCode> {
    let at = match args.at {
        AtTime::Now => SystemClock.now(),
        AtTime::At(t) => t,
    };
    let role = (args.role.as_deref())
        .map(RoleName::new)
        .transpose()
        .context("--role")?;
    // An instance no longer configured is still answered from what was observed of it.
    let store = open_store(&config, OpenOptions::existing()).await?;
    let filter = Filter {
        role,
        person: args.person.clone(),
    };
    let answer = history::access_at(&store, at, &args.instance, &filter).await?;
    print(&answer, args.output)?;
    let observed = answer.evidence.iter().any(|e| e.before.is_some());
    Ok(if observed {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: no observation of {} at or before {}: run `airlock inventory` (or `airlock serve`) to start recording",
            if args.instance.is_empty() { "any instance".to_owned() } else { args.instance.join(", ") },
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        ExitCode::from(NOT_OBSERVED)
    })
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn roles(r: &BTreeSet<RoleName>) -> String {
    r.iter().map(RoleName::as_str).collect::<Vec<_>>().join(",")
}

fn certainty(c: Certainty) -> &'static str {
    match c {
        Certainty::Observed => "observed",
        Certainty::LastObserved => "last_observed",
        Certainty::ChangedInGap => "changed_in_gap",
    }
}

/// A value from Airflow on one line of text: control characters become spaces.
fn plain(s: &str) -> String {
    s.replace(|c: char| c.is_control(), " ")
}

fn span(s: &Span) -> String {
    format!(
        "{} .. {} ({} observations, {} .. {})",
        time(s.from),
        time(s.to),
        s.observations,
        s.first_source,
        s.last_source
    )
}

fn print(answer: &AccessAt, format: InventoryFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let before: BTreeMap<&str, Option<&Span>> = (answer.evidence.iter())
        .map(|e| (e.instance.as_str(), e.before.as_ref()))
        .collect();
    match format {
        InventoryFormat::Json => writeln!(out, "{}", serde_json::to_string(answer)?)?,
        InventoryFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "instance",
                "username",
                "email",
                "roles",
                "active",
                "certainty",
                "next_roles",
                "observed_from",
                "observed_to",
            ])?;
            for r in &answer.rows {
                let span = before.get(r.instance.as_str()).copied().flatten();
                w.write_record([
                    csv_cell(&r.instance),
                    csv_cell(r.username.as_str()),
                    csv_cell(&r.email),
                    csv_cell(&roles(&r.roles)),
                    r.active.to_string(),
                    certainty(r.certainty).to_owned(),
                    r.next_roles.as_ref().map(roles).unwrap_or_default(),
                    span.map(|s| time(s.from)).unwrap_or_default(),
                    span.map(|s| time(s.to)).unwrap_or_default(),
                ])?;
            }
            w.flush()?;
        }
        InventoryFormat::Table => {
            writeln!(out, "access at {}", time(answer.at))?;
            for e in &answer.evidence {
                match (&e.before, &e.next) {
                    (None, _) => writeln!(out, "  {}: not observed at or before then", e.instance)?,
                    (Some(b), None) => writeln!(out, "  {}: {}", e.instance, span(b))?,
                    (Some(b), Some(n)) => writeln!(
                        out,
                        "  {}: {}; changed before {}",
                        e.instance,
                        span(b),
                        time(n.from)
                    )?,
                }
            }
            writeln!(
                out,
                "{:<16} {:<28} {:<32} {:<24} {:<6} certainty",
                "instance", "username", "email", "roles", "active"
            )?;
            for r in &answer.rows {
                row(&mut out, r)?;
            }
        }
    }
    Ok(())
}

fn row(out: &mut impl std::io::Write, r: &AccessRow) -> std::io::Result<()> {
    let certainty = match &r.next_roles {
        Some(next) => format!("{} (then: {})", certainty(r.certainty), roles(next)),
        None => certainty(r.certainty).to_owned(),
    };
    writeln!(
        out,
        "{:<16} {:<28} {:<32} {:<24} {:<6} {}",
        plain(&r.instance),
        plain(r.username.as_str()),
        plain(&r.email),
        roles(&r.roles),
        if r.active { "yes" } else { "no" },
        certainty
    )
}
