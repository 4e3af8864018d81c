//! `airlock audit keygen`, `airlock audit checkpoint` and `airlock audit verify --checkpoint`:
//! signed checkpoints of the audit chain (the format and checks are `airlock_audit::checkpoint`,
//! the writing `airlock_engine::checkpoint`).

use crate::cli::{KeygenArgs, LeaversArgs, ReportFormat, VerifyArgs};
use airlock_audit::checkpoint::{check_chain, open_checkpoint};
use airlock_audit::note::{NoteSigner, NoteVerifier};
use airlock_config::Config;
use airlock_engine::checkpoint::Written;
use airlock_store::Store;
use anyhow::{bail, Context as _};
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// Writes a new private key to `args.out` (0600, never replacing a file) and prints the
/// verifier key.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    use rand::RngCore as _;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let signer = NoteSigner::from_seed(&args.name, &seed).context("--name")?;
    seed.fill(0);
    let out = &args.out;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists; refusing to replace a signing key (remove it first, or choose another --out)",
            out.display()
        ),
        _ => anyhow::anyhow!("cannot create key file {}: {e}", out.display()),
    })?;
    let written = file
        .write_all(format!("{}\n", signer.to_private_text()).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(out);
        bail!("cannot write key file {}: {e}", out.display());
    }
    println!("{}", signer.verifier());
    eprintln!(
        "private key written to {} (mode 0600); give the public key above to whoever verifies checkpoints",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Signs and writes a checkpoint now.
pub async fn checkpoint(config: &Config, store: &Store) -> anyhow::Result<ExitCode> {
    let Some(cfg) = &config.audit.checkpoints else {
        bail!("no [audit.checkpoints] configured: set signing_key_file, key_name and a destination (file, directory or url)");
    };
    match airlock_engine::checkpoint::write(store, cfg, false).await? {
        Written::Written { head, .. } | Written::Unchanged { head } => {
            let mut to = Vec::new();
            if let Some(f) = &cfg.file {
                to.push(f.display().to_string());
            }
            if let Some(d) = &cfg.directory {
                to.push(
                    d.join(airlock_engine::checkpoint::directory_file_name(head.seq))
                        .display()
                        .to_string(),
                );
            }
            if let Some(u) = &cfg.url {
                to.push(airlock_engine::checkpoint::shown_url(u));
            }
            println!(
                "checkpoint signed by {}: {} events, head {}; written to {}",
                cfg.signer.name(),
                head.seq,
                head.hash,
                to.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The verifier key given on the command line, or read from the file it names.
fn public_key(arg: &str) -> anyhow::Result<NoteVerifier> {
    if let Ok(key) = arg.parse::<NoteVerifier>() {
        return Ok(key);
    }
    let path = Path::new(arg);
    if !path.exists() {
        bail!("--public-key: not a verifier key (NAME+KEYID+KEY) and no file of that name");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--public-key: cannot read {}", path.display()))?;
    text.parse::<NoteVerifier>()
        .map_err(|e| anyhow::anyhow!("--public-key: {}: {e}", path.display()))
}

/// Verifies the stored chain against a signed checkpoint.
pub async fn verify_checkpoint(store: &Store, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (Some(file), Some(key)) = (args.checkpoint, args.public_key) else {
        bail!("--checkpoint and --public-key go together");
    };
    let verifier = public_key(&key)?;
    let note = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read checkpoint {}", file.display()))?;
    let shown = file.display();
    let checkpoint = match open_checkpoint(&verifier, &note) {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("error: checkpoint {shown} rejected: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let signed = &checkpoint.head;
    let (summary, at_size) = match store.verify_audit_at(signed.seq).await? {
        Ok(found) => found,
        Err(brk) => {
            eprintln!("error: audit trail broken: {brk}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Err(m) = check_chain(&checkpoint, summary.count, at_size.as_ref()) {
        eprintln!("error: audit trail contradicts checkpoint {shown}: {m}");
        return Ok(ExitCode::from(1));
    }
    println!(
        "audit trail intact: {} events, head {}; it extends checkpoint {shown} ({} events, signed by {})",
        summary.count,
        summary.last_hash,
        signed.seq,
        verifier.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// `airlock audit leavers`.
pub async fn leavers(
    config: &Config,
    store: &Store,
    args: LeaversArgs,
) -> anyhow::Result<ExitCode> {
    use airlock_core::{Clock as _, SystemClock};
    use airlock_engine::leavers;
    let now = SystemClock.now();
    if !args.no_refresh {
        let Some((insights, _)) = leavers::insights_for(config)? else {
            bail!("directory.insights: reading leavers needs a JumpCloud directory with insights = true (or --no-refresh to print what is recorded)");
        };
        let policy = config
            .policy
            .as_ref()
            .context("no policy configured: the username rule maps leavers to accounts")?;
        let new = leavers::ingest(store, &insights, &policy.username, &SystemClock).await?;
        leavers::correlate(store, &SystemClock, &new).await?;
    }
    let since = args.since.unwrap_or(now - chrono::Duration::days(30));
    let reports = leavers::report(store, since.timestamp_millis()).await?;
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        ReportFormat::Json => {
            for r in &reports {
                let line = serde_json::json!({
                    "person": r.leaver.person,
                    "username": r.leaver.username,
                    "kind": r.leaver.kind,
                    "provider_at": at(r.leaver.at_ms),
                    "removed": r.removed.iter().map(|(i, t)| (i.clone(), at(*t))).collect::<std::collections::BTreeMap<_, _>>(),
                    "time_to_deprovision_secs": r.time_to_deprovision_ms().map(|ms| ms as f64 / 1000.0),
                });
                writeln!(out, "{line}")?;
            }
        }
        ReportFormat::Text => {
            writeln!(
                out,
                "{:<24} {:<10} {:<21} {:>12}  instances",
                "username", "kind", "in the provider", "deprovision"
            )?;
            for r in &reports {
                let ttd = r.time_to_deprovision_ms().map_or_else(
                    || "pending".to_owned(),
                    |ms| format!("{:.1}s", ms as f64 / 1000.0),
                );
                let per: Vec<String> = (r.removed.iter())
                    .map(|(i, t)| format!("{i} {:.1}s", (t - r.leaver.at_ms) as f64 / 1000.0))
                    .collect();
                writeln!(
                    out,
                    "{:<24} {:<10} {:<21} {:>12}  {}",
                    r.leaver.username.replace(|c: char| c.is_control(), " "),
                    r.leaver.kind,
                    at(r.leaver.at_ms),
                    ttd,
                    per.join(", ")
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
