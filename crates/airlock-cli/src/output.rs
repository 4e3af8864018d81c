//! Rendering for people (tables, text) and machines (JSON, CSV). CSV cells that a spreadsheet
//! would run as a formula are neutralised.

use crate::cli::{InventoryFormat, ReportFormat};
use airlock_core::inventory::{Report, SnapshotDiff};
use airlock_engine::doctor::Health;
use airlock_engine::inventory::{DiffOutcome, InventoryOutcome};
use chrono::{DateTime, Utc};
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use std::io::Write;

fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers);
    t
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "never".into())
}

pub fn reports(reports: &[Report], format: InventoryFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        InventoryFormat::Json => {
            serde_json::to_writer_pretty(&mut out, reports)?;
            writeln!(out)?;
        }
        InventoryFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "instance",
                "username",
                "email",
                "first_name",
                "last_name",
                "roles",
                "active",
                "last_login",
                "login_count",
                "flags",
            ])?;
            for r in reports {
                for a in &r.accounts {
                    let acc = &a.account;
                    let roles: Vec<&str> = acc.roles.iter().map(|r| r.as_str()).collect();
                    let flags: Vec<String> = a.flags.iter().map(|f| f.label()).collect();
                    w.write_record([
                        csv_cell(r.instance.as_str()),
                        csv_cell(acc.username.as_str()),
                        csv_cell(&acc.email),
                        csv_cell(&acc.first_name),
                        csv_cell(&acc.last_name),
                        csv_cell(&roles.join(";")),
                        acc.active.to_string(),
                        acc.last_login.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        acc.login_count.map(|c| c.to_string()).unwrap_or_default(),
                        flags.join(";"),
                    ])?;
                }
            }
            w.flush()?;
        }
        InventoryFormat::Table => {
            for r in reports {
                writeln!(
                    out,
                    "== {} (Airflow {}), {}",
                    r.instance,
                    r.airflow_version,
                    r.taken_at.format("%Y-%m-%d %H:%M:%S UTC")
                )?;
                let mut t = table(&["USER", "EMAIL", "ROLES", "LAST LOGIN", "FLAGS"]);
                for a in &r.accounts {
                    let acc = &a.account;
                    let roles: Vec<&str> = acc.roles.iter().map(|r| r.as_str()).collect();
                    let flags: Vec<String> = a.flags.iter().map(|f| f.label()).collect();
                    t.add_row(vec![
                        acc.username.to_string(),
                        acc.email.clone(),
                        roles.join(", "),
                        when(acc.last_login),
                        flags.join(" "),
                    ]);
                }
                writeln!(out, "{t}")?;
                let mut t = table(&["ROLE", "PERMISSIONS", "USERS", "ADMIN"]);
                for role in &r.roles {
                    t.add_row(vec![
                        role.name.to_string(),
                        role.permission_count.to_string(),
                        role.user_count.to_string(),
                        if role.admin {
                            "yes".into()
                        } else {
                            String::new()
                        },
                    ]);
                }
                writeln!(out, "{t}")?;
                let admins = r
                    .accounts
                    .iter()
                    .filter(|a| a.flags.contains(&airlock_core::inventory::Flag::Admin))
                    .count();
                writeln!(
                    out,
                    "{} users ({admins} admin), {} roles\n",
                    r.accounts.len(),
                    r.roles.len()
                )?;
            }
        }
    }
    Ok(())
}

/// Spreadsheets execute cells starting with these; prefix them so they stay text (OWASP).
pub(crate) fn csv_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

pub fn stats(o: &InventoryOutcome) {
    let calls: Vec<String> = o
        .stats
        .calls
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect();
    eprintln!(
        "{}: {} users, {} roles in {:.2}s; {} HTTP calls ({}), {} retries, {:.2}s waiting on Airflow",
        o.report.instance,
        o.report.accounts.len(),
        o.report.roles.len(),
        o.elapsed.as_secs_f64(),
        o.stats.total(),
        calls.join(", "),
        o.stats.retries,
        o.stats.waiting.as_secs_f64(),
    );
}

pub fn health(results: &[Health], format: ReportFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == ReportFormat::Json {
        serde_json::to_writer_pretty(&mut out, results)?;
        writeln!(out)?;
        return Ok(());
    }
    let mut t = table(&[
        "INSTANCE",
        "URL",
        "REACHABLE",
        "VERSION",
        "AUTH",
        "CREDENTIALS",
        "PERMISSIONS",
    ]);
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "ok".to_string(),
        Some(false) => "FAILED".to_string(),
        None => "-".to_string(),
    };
    for h in results {
        let perms = if h.credentials_ok != Some(true)
            || (h.error.is_some() && h.missing_permissions.is_empty())
        {
            "-".to_string()
        } else if h.missing_permissions.is_empty() {
            "ok".to_string()
        } else {
            format!("missing {}", h.missing_permissions.len())
        };
        t.add_row(vec![
            h.instance.clone(),
            h.url.clone(),
            if h.reachable {
                "yes".into()
            } else {
                "NO".into()
            },
            h.version
                .clone()
                .map(|v| format!("{v} ({})", h.api.unwrap_or("?")))
                .unwrap_or_else(|| "-".into()),
            h.auth_manager.unwrap_or("-").to_string(),
            yes_no(h.credentials_ok),
            perms,
        ]);
    }
    writeln!(out, "{t}")?;
    for h in results {
        if let Some(e) = &h.error {
            writeln!(out, "{}: {e}", h.instance)?;
        }
        if !h.missing_permissions.is_empty() {
            let list: Vec<String> = h
                .missing_permissions
                .iter()
                .map(ToString::to_string)
                .collect();
            writeln!(
                out,
                "{}: airlock's account lacks {}",
                h.instance,
                list.join(", ")
            )?;
        }
        for p in &h.problems {
            writeln!(out, "{}: problem: {p}", h.instance)?;
        }
    }
    Ok(())
}

pub fn diffs(diffs: &[(String, Option<DiffOutcome>)], format: ReportFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == ReportFormat::Json {
        let v: Vec<serde_json::Value> = diffs
            .iter()
            .map(|(name, d)| match d {
                None => serde_json::json!({ "instance": name, "diff": null }),
                Some(d) => serde_json::json!({ "instance": name, "from": d.from, "to": d.to, "diff": d.diff }),
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    for (name, d) in diffs {
        match d {
            None => writeln!(
                out,
                "{name}: fewer than two complete snapshots; run `airlock inventory` again later"
            )?,
            Some(d) => {
                writeln!(
                    out,
                    "== {name}: {} -> {}",
                    d.from.format("%Y-%m-%d %H:%M:%S"),
                    d.to.format("%Y-%m-%d %H:%M:%S")
                )?;
                write_diff(&mut out, &d.diff)?;
            }
        }
    }
    Ok(())
}

fn write_diff(out: &mut impl Write, d: &SnapshotDiff) -> std::io::Result<()> {
    if d.is_empty() {
        return writeln!(out, "no changes");
    }
    for u in &d.accounts_added {
        writeln!(out, "+ account {u}")?;
    }
    for u in &d.accounts_removed {
        writeln!(out, "- account {u}")?;
    }
    for c in &d.role_changes {
        let add: Vec<String> = c.added.iter().map(|r| format!("+{r}")).collect();
        let rem: Vec<String> = c.removed.iter().map(|r| format!("-{r}")).collect();
        writeln!(
            out,
            "~ account {} roles {}",
            c.username,
            [add, rem].concat().join(" ")
        )?;
    }
    for l in &d.logins {
        let n = l
            .logins
            .map(|n| format!(" ({n} login{})", if n == 1 { "" } else { "s" }))
            .unwrap_or_default();
        writeln!(out, "* login {} at {}{n}", l.username, when(l.last_login))?;
    }
    for r in &d.roles_added {
        writeln!(out, "+ role {r}")?;
    }
    for r in &d.roles_removed {
        writeln!(out, "- role {r}")?;
    }
    for c in &d.role_permission_changes {
        writeln!(
            out,
            "~ role {} permissions +{} -{}",
            c.role, c.added, c.removed
        )?;
    }
    Ok(())
}

fn roles_list(roles: &std::collections::BTreeSet<airlock_core::RoleName>) -> String {
    let v: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    format!("[{}]", v.join(", "))
}

/// One line per operation, terraform-style: `+` create, `~` change, `-` suspend, `x` delete.
pub fn plan_lines(plan: &airlock_engine::sync::Plan) -> Vec<String> {
    use airlock_core::plan::Op;
    let mut lines = Vec::new();
    for (name, p) in plan.instance_names.iter().zip(&plan.instances) {
        let counts = {
            let mut m: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for o in &p.ops {
                *m.entry(o.op.kind()).or_default() += 1;
            }
            m.iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        lines.push(format!(
            "== {name}: {}",
            if p.ops.is_empty() {
                "no changes".to_string()
            } else {
                counts
            }
        ));
        for o in &p.ops {
            let text = match &o.op {
                Op::CreateRole { role, permissions } => {
                    format!("+ role {role} ({} permissions)", permissions.len())
                }
                Op::UpdateRole { role, add, remove } => format!(
                    "~ role {role} (+{} -{} permissions)",
                    add.len(),
                    remove.len()
                ),
                Op::CreateAccount {
                    username, roles, ..
                } => format!("+ account {username} {}", roles_list(roles)),
                Op::SetRoles { username, from, to } => format!(
                    "~ account {username} {} -> {}",
                    roles_list(from),
                    roles_list(to)
                ),
                Op::UpdateProfile {
                    username,
                    email,
                    first_name,
                    last_name,
                } => {
                    let mut f = Vec::new();
                    if let Some(e) = email {
                        f.push(format!("email -> {e}"));
                    }
                    if let Some(n) = first_name {
                        f.push(format!("first name -> {n}"));
                    }
                    if let Some(n) = last_name {
                        f.push(format!("last name -> {n}"));
                    }
                    format!("~ account {username} {}", f.join(", "))
                }
                Op::Suspend { username, roles } => format!(
                    "- account {username} suspend (strip {}, rotate password)",
                    roles_list(roles)
                ),
                Op::Delete { username } => format!("x account {username} delete"),
            };
            lines.push(format!("  {text}    # {}", o.reason));
        }
        for w in &p.warnings {
            lines.push(format!("  ! {}", w.message));
        }
    }
    lines
}

pub fn plan(plan: &airlock_engine::sync::Plan, verbose: bool) {
    for l in plan_lines(plan) {
        println!("{l}");
    }
    for w in &plan.warnings {
        let at = w
            .instance
            .as_ref()
            .map(|i| format!("{i}: "))
            .unwrap_or_default();
        println!("! {at}{}", w.message);
    }
    for (name, p) in plan.instance_names.iter().zip(&plan.instances) {
        if p.unmanaged.is_empty() {
            continue;
        }
        if verbose {
            let list: Vec<&str> = p.unmanaged.iter().map(|u| u.as_str()).collect();
            println!("{name}: unmanaged (left alone): {}", list.join(", "));
        } else {
            println!("{name}: {} unmanaged account(s) left alone (-v lists them; `airlock adopt` manages them)", p.unmanaged.len());
        }
    }
    let counts: Vec<String> = plan
        .counts()
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    println!(
        "plan {}: {} ({} people in the directory)",
        &plan.fingerprint[..12],
        if counts.is_empty() {
            "no changes".to_string()
        } else {
            counts.join(", ")
        },
        plan.directory_people
    );
}

pub fn apply_report(r: &airlock_engine::sync::ApplyReport) {
    for res in &r.results {
        if let Some(e) = &res.error {
            eprintln!(
                "error: {} {} on {}: {e}",
                res.op.op.kind(),
                res.op.op.target(),
                res.op.instance
            );
        }
        if let Some(n) = &res.note {
            eprintln!("note: {} {}: {n}", res.op.op.kind(), res.op.op.target());
        }
    }
    let mut by_kind: std::collections::BTreeMap<&str, (usize, usize)> =
        std::collections::BTreeMap::new();
    for res in &r.results {
        let e = by_kind.entry(res.op.op.kind()).or_default();
        if res.error.is_some() {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }
    let parts: Vec<String> = by_kind
        .iter()
        .map(|(k, (ok, failed))| {
            if *failed > 0 {
                format!("{ok} {k} ({failed} failed)")
            } else {
                format!("{ok} {k}")
            }
        })
        .collect();
    let skipped = if r.skipped > 0 {
        format!(", {} not started (interrupted)", r.skipped)
    } else {
        String::new()
    };
    println!(
        "applied: {}{skipped} in {:.1}s (run {})",
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(", ")
        },
        r.elapsed.as_secs_f64(),
        r.run_id
    );
}

pub fn call_stats(
    stats: &std::collections::BTreeMap<airlock_core::InstanceName, airlock_airflow::CallStats>,
) {
    for (name, s) in stats {
        let calls: Vec<String> = s.calls.iter().map(|(c, n)| format!("{c}={n}")).collect();
        eprintln!(
            "{name}: {} HTTP calls ({}), {} retries, {:.2}s waiting on Airflow",
            s.total(),
            calls.join(", "),
            s.retries,
            s.waiting.as_secs_f64()
        );
    }
}

/// Held deprovisions (`airlock rails list`).
pub fn rail_holds(holds: &[airlock_store::RailHold], format: ReportFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let at = |ms: i64| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    if format == ReportFormat::Json {
        let rows: Vec<serde_json::Value> = holds
            .iter()
            .map(|h| {
                serde_json::json!({
                    "id": h.id, "instance": h.instance, "username": h.username,
                    "operation": h.op_kind, "rail": h.rail, "reason": h.reason,
                    "status": h.status, "first_held_at": at(h.first_held_ms),
                    "last_held_at": at(h.last_held_ms), "released_by": h.released_by,
                    "released_at": h.released_ms.map(at),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(());
    }
    if holds.is_empty() {
        writeln!(out, "no held deprovisions")?;
        return Ok(());
    }
    let mut t = table(&[
        "ID",
        "INSTANCE",
        "ACCOUNT",
        "OPERATION",
        "RAIL",
        "STATUS",
        "HELD SINCE",
        "RELEASED BY",
    ]);
    for h in holds {
        t.add_row(vec![
            h.id.clone(),
            h.instance.clone(),
            h.username.clone(),
            h.op_kind.clone(),
            h.rail.clone(),
            h.status.clone(),
            at(h.first_held_ms),
            h.released_by.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    writeln!(out, "{t}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralised() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("ada@example.com"), "ada@example.com");
    }
}
