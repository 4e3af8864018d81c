//! The file sink through the delivery loop, on a real store: every event in order in each
//! format, rotation that keeps `keep_files` files and neither loses nor repeats an event, a
//! torn last line ended before appending, and a file that cannot be opened holding the cursor
//! with an error that names it.

mod support;

use airlock_audit::Format;
use airlock_config::{FileSink as FileConfig, SinkKind};
use airlock_notify::{FileSink, Outlet as _};
use airlock_store::Store;
use anyhow::ensure;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::{append, deliver, wait_for, Counts};

fn config(path: &Path, format: Format, rotate_bytes: u64, keep_files: u32) -> FileConfig {
    FileConfig {
        path: path.to_owned(),
        format,
        rotate_bytes,
        keep_files,
        hostname: Some("gov1".into()),
    }
}

fn outlet(name: &str, f: &FileConfig) -> Arc<FileSink> {
    let cfg = support::sink(name, SinkKind::File(f.clone()));
    Arc::new(FileSink::new(&cfg, f, "unused"))
}

/// The lines the events after `after` make in `format`, in order.
async fn expected(store: &Store, after: u64, format: Format) -> anyhow::Result<Vec<String>> {
    let events = store.audit_events(after + 1, 100_000).await?;
    Ok(events
        .iter()
        .flat_map(|e| format.lines(e, "gov1"))
        .collect())
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// `path.N` .. `path.1`, then `path`: oldest first.
fn all_lines(path: &Path, keep: u32) -> Vec<String> {
    let mut out = Vec::new();
    for n in (1..=keep).rev() {
        out.extend(lines_of(&rotated(path, n)));
    }
    out.extend(lines_of(path));
    out
}

#[tokio::test]
async fn every_event_is_written_in_order_in_each_format() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;
    let formats = [Format::Jsonl, Format::Ocsf, Format::Cef, Format::Syslog];
    let mut running = Vec::new();
    for f in formats {
        let cfg = config(
            &dir.path().join(format!("audit.{}", f.name())),
            f,
            1 << 30,
            3,
        );
        running.push(deliver(&store, outlet(f.name(), &cfg), Arc::new(Counts::default())).await?);
    }
    let start = store.audit_head().await?.seq;
    // More than a page (200), in several rounds.
    for i in 0..3 {
        append(&store, i * 150, 150).await?;
    }
    for f in formats {
        let path = dir.path().join(format!("audit.{}", f.name()));
        let want = expected(&store, start, f).await?;
        ensure!(want.len() >= 450);
        wait_for(f.name(), || lines_of(&path).len() >= want.len()).await?;
        ensure!(
            lines_of(&path) == want,
            "{}: not the trail, in order",
            f.name()
        );
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        ensure!(mode == 0o600, "{}: mode {mode:o}", f.name());
    }
    for r in running {
        r.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn rotation_keeps_keep_files_and_neither_loses_nor_repeats_an_event() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;
    // One keeps every rotated file, one only two; both rotate at 4096 bytes.
    let all = config(&dir.path().join("all.log"), Format::Jsonl, 4096, 1000);
    let two = config(&dir.path().join("two.log"), Format::Jsonl, 4096, 2);
    let a = deliver(&store, outlet("all", &all), Arc::new(Counts::default())).await?;
    let b = deliver(&store, outlet("two", &two), Arc::new(Counts::default())).await?;
    let start = store.audit_head().await?.seq;
    for i in 0..10 {
        append(&store, i * 25, 25).await?;
    }
    let want = expected(&store, start, Format::Jsonl).await?;
    let last = want.last().cloned();
    wait_for("the last event in both", || {
        lines_of(&all.path).last() == last.as_ref() && lines_of(&two.path).last() == last.as_ref()
    })
    .await?;
    a.stop().await?;
    b.stop().await?;

    let files = (1..)
        .take_while(|n| rotated(&all.path, *n).exists())
        .count() as u32;
    ensure!(files > 5, "rotated only {files} times");
    ensure!(
        all_lines(&all.path, files) == want,
        "lost or repeated across rotations"
    );
    for n in 1..=files {
        let size = std::fs::metadata(rotated(&all.path, n))?.len();
        ensure!(size <= 4096, "{n}: {size} bytes");
    }

    ensure!(rotated(&two.path, 2).exists() && !rotated(&two.path, 3).exists());
    let kept = all_lines(&two.path, 2);
    ensure!(
        want.ends_with(&kept) && kept.len() > 3,
        "the newest files, whole"
    );
    Ok(())
}

#[tokio::test]
async fn a_torn_last_line_is_ended_before_the_next_event() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;
    let path = dir.path().join("audit.log");
    std::fs::write(&path, "{\"seq\":1}\n{\"seq\":2,\"torn")?;
    let cfg = config(&path, Format::Jsonl, 1 << 30, 3);
    let running = deliver(&store, outlet("torn", &cfg), Arc::new(Counts::default())).await?;
    let start = store.audit_head().await?.seq;
    append(&store, 0, 5).await?;
    let want = expected(&store, start, Format::Jsonl).await?;
    wait_for("5 more lines", || lines_of(&path).len() == 7).await?;
    running.stop().await?;
    let mut all = vec!["{\"seq\":1}".to_owned(), "{\"seq\":2,\"torn".to_owned()];
    all.extend(want);
    ensure!(lines_of(&path) == all);
    Ok(())
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_holds_the_cursor_with_an_error_naming_it(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = support::store(dir.path()).await?;
    // A directory that does not exist (yet), and one that is a file.
    let missing = dir.path().join("not-yet").join("audit.log");
    std::fs::write(dir.path().join("plain"), "")?;
    let under_a_file = dir.path().join("plain").join("audit.log");
    let probe = append(&store, 0, 1).await?;
    let event = store
        .audit_events(1, 10)
        .await?
        .into_iter()
        .find(|e| e.id == probe[0])
        .ok_or_else(|| anyhow::anyhow!("the probe event"))?;
    for path in [&missing, &under_a_file] {
        let o = outlet("probe", &config(path, Format::Jsonl, 1 << 20, 3));
        o.send(&event, chrono::Utc::now()).await?;
        let err = o
            .flush()
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("{} was written", path.display()))?;
        let text = err.to_string();
        ensure!(
            text.starts_with(&format!("cannot open {}: ", path.display())),
            "{text}"
        );
    }

    let counts = Arc::new(Counts::default());
    let cfg = config(&missing, Format::Jsonl, 1 << 20, 3);
    let running = deliver(&store, outlet("later", &cfg), counts.clone()).await?;
    let start = store
        .delivery_cursor("sink:later")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no cursor"))?;
    append(&store, 1, 3).await?;
    wait_for("a failed round", || counts.failures() >= 1).await?;
    ensure!(store.delivery_cursor("sink:later").await? == Some(start));

    // Once the directory is there, the retried round writes all three.
    std::fs::create_dir(dir.path().join("not-yet"))?;
    let want = expected(&store, start, Format::Jsonl).await?;
    wait_for("the three events", || lines_of(&missing) == want).await?;
    running.stop().await?;
    Ok(())
}
