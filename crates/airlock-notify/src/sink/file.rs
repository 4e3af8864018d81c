//! [`FileSink`]: every event's lines ([`airlock_audit::Format::lines`] in the sink's format,
//! one event may make several in OCSF) appended to a local file, for a log shipper (Filebeat,
//! Fluent Bit, Vector, the Splunk forwarder) to pick up, or for keeping.
//!
//! - **Durable before acknowledged**: `send` only buffers; `flush` writes the page's lines and
//!   `fsync`s the file, and only then does the delivery loop move the cursor. A `kill -9` of
//!   airlock loses nothing; a crash between the `fsync` and the cursor's update writes the
//!   page again (a duplicate line carries the same event id, as with every at-least-once
//!   outlet).
//! - **Opened with `O_APPEND`**, created if missing with mode 0600, in a directory that must
//!   exist (it is not created). A file that ends without a newline (a write torn by a crash)
//!   gets one first, so that no line is glued to a partial one.
//! - **Rotated by size**: before a write would take the file past `rotate_bytes`, `<path>.N`
//!   becomes `<path>.N+1` (the oldest, `<path>.<keep_files>`, is overwritten and so dropped),
//!   `<path>` becomes `<path>.1` and a new `<path>` is opened; the directory is `fsync`ed after
//!   the renames. An event's lines are never split across files; an event larger than
//!   `rotate_bytes` gets a file of its own.
//! - A file moved away or deleted by someone else (an external logrotate) is noticed at the
//!   next flush and a new one is opened at `path`.
//!
//! Every error names the file and is retried by the delivery loop with nothing skipped. What
//! it does not do: compress rotated files, rotate by time, or create the directory.

use crate::deliver::{Outlet, Sent};
use crate::webhook::SendError;
use airlock_audit::{AuditEvent, Format};
use airlock_config::SinkConfig;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// A file sink.
pub struct FileSink {
    cursor: String,
    format: Format,
    hostname: String,
    /// Each buffered event's lines, newline-terminated.
    pending: Mutex<Vec<Vec<u8>>>,
    writer: Arc<Mutex<Writer>>,
}

/// The file, and its rotation.
struct Writer {
    path: PathBuf,
    rotate_bytes: u64,
    keep_files: u32,
    open: Option<Open>,
}

struct Open {
    file: File,
    /// Its length (all writes go through this writer).
    len: u64,
    /// Device and inode, to notice that `path` is another file now.
    id: (u64, u64),
}

fn failed(action: &'static str, path: &Path, err: &std::io::Error) -> SendError {
    SendError::FileFailed {
        action,
        path: path.to_owned(),
        reason: err.to_string(),
    }
}

/// `<path>.<n>`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn sync_dir(path: &Path) -> Result<(), SendError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed("sync the directory", dir, &e))
}

impl Writer {
    /// Opens (or creates) `path` for appending; a torn last line is ended first.
    fn open_file(&self) -> Result<Open, SendError> {
        let path = &self.path;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| failed("open", path, &e))?;
        let meta = file.metadata().map_err(|e| failed("open", path, &e))?;
        let mut open = Open {
            len: meta.len(),
            id: (meta.dev(), meta.ino()),
            file,
        };
        if open.len > 0 {
            let mut last = [0u8; 1];
            open.file
                .read_at(&mut last, open.len - 1)
                .map_err(|e| failed("read the end of", path, &e))?;
            if last[0] != b'\n' {
                open.file
                    .write_all(b"\n")
                    .map_err(|e| failed("write to", path, &e))?;
                open.len += 1;
            }
        }
        // A file just created must survive a crash as well as its lines.
        sync_dir(path)?;
        Ok(open)
    }

    /// The open file, reopened if `path` is no longer it (moved or deleted by someone else).
    fn current(&mut self) -> Result<&mut Open, SendError> {
        let same = match (&self.open, std::fs::metadata(&self.path)) {
            (Some(o), Ok(m)) => o.id == (m.dev(), m.ino()),
            _ => false,
        };
        if !same {
            self.open = None;
            self.open = Some(self.open_file()?);
        }
        self.open
            .as_mut()
            .ok_or_else(|| failed("open", &self.path, &std::io::ErrorKind::NotFound.into()))
    }

    /// Appends `bytes` and `fsync`s; on failure the file is reopened next time.
    fn append(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let path = self.path.clone();
        let open = self.current()?;
        let done = open
            .file
            .write_all(bytes)
            .map_err(|e| failed("write to", &path, &e))
            .and_then(|()| open.file.sync_data().map_err(|e| failed("sync", &path, &e)));
        match done {
            Ok(()) => {
                open.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.open = None;
                Err(e)
            }
        }
    }

    /// `<path>.N` -> `<path>.N+1` (down to `<path>.1`), `<path>` -> `<path>.1`, a new `<path>`.
    fn rotate(&mut self) -> Result<(), SendError> {
        self.open = None;
        let keep = self.keep_files.max(1);
        for n in (1..keep).rev() {
            let from = rotated(&self.path, n);
            match std::fs::rename(&from, rotated(&self.path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(failed("rotate", &from, &e)),
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
            .map_err(|e| failed("rotate", &self.path, &e))?;
        sync_dir(&self.path)?;
        self.open = Some(self.open_file()?);
        Ok(())
    }

    /// Writes `events` (each one's lines), rotating before a write would pass the size.
    fn write(&mut self, events: &[Vec<u8>]) -> Result<(), SendError> {
        let mut written = self.current()?.len;
        let mut batch: Vec<u8> = Vec::new();
        for lines in events {
            let len = written + batch.len() as u64;
            if len > 0 && len + lines.len() as u64 > self.rotate_bytes {
                if !batch.is_empty() {
                    self.append(&batch)?;
                    batch.clear();
                }
                self.rotate()?;
                written = self.open.as_ref().map_or(0, |o| o.len);
            }
            batch.extend_from_slice(lines);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.append(&batch)
    }
}

impl FileSink {
    /// A sink for `cfg` writing as `file` says; `default_hostname` is syslog's HOSTNAME
    /// when the config does not set one. The file is opened at the first flush.
    pub fn new(
        cfg: &SinkConfig,
        file: &airlock_config::FileSink,
        default_hostname: &str,
    ) -> FileSink {
        FileSink {
            cursor: super::cursor_of(&cfg.name),
            format: file.format,
            hostname: file
                .hostname
                .clone()
                .unwrap_or_else(|| default_hostname.to_owned()),
            pending: Mutex::new(Vec::new()),
            writer: Arc::new(Mutex::new(Writer {
                path: file.path.clone(),
                rotate_bytes: file.rotate_bytes,
                keep_files: file.keep_files,
                open: None,
            })),
        }
    }
}

impl Outlet for FileSink {
    fn cursor(&self) -> &str {
        &self.cursor
    }

    fn send<'a>(
        &'a self,
        event: &'a AuditEvent,
        _now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let mut lines = Vec::new();
            for line in self.format.lines(event, &self.hostname) {
                lines.extend_from_slice(line.as_bytes());
                lines.push(b'\n');
            }
            if lines.is_empty() {
                return Ok(Sent::Nothing);
            }
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(lines);
            Ok(Sent::Buffered("event"))
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let events =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
            if events.is_empty() {
                return Ok(());
            }
            let writer = self.writer.clone();
            // Writes and fsyncs block: off the runtime's workers.
            tokio::task::spawn_blocking(move || {
                writer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write(&events)
            })
            .await
            .map_err(|e| SendError::FileFailed {
                action: "write to",
                path: self.path(),
                reason: format!("the writing thread failed: {e}"),
            })?
        })
    }
}

impl FileSink {
    fn path(&self) -> PathBuf {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .path
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(dir: &Path, rotate_bytes: u64, keep_files: u32) -> Writer {
        Writer {
            path: dir.join("audit.log"),
            rotate_bytes,
            keep_files,
            open: None,
        }
    }

    #[test]
    fn rotation_keeps_the_newest_files_and_never_splits_an_event() {
        let dir = tempfile::tempdir().expect("dir");
        let mut w = writer(dir.path(), 10, 2);
        let events: Vec<Vec<u8>> = (0..5).map(|i| format!("event{i}\n").into_bytes()).collect();
        w.write(&events).expect("write");
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(dir.path().join("audit.log")), "event4\n");
        assert_eq!(read(rotated(&w.path, 1)), "event3\n");
        assert_eq!(read(rotated(&w.path, 2)), "event2\n");
        assert!(!rotated(&w.path, 3).exists());
    }

    #[test]
    fn a_torn_last_line_is_ended_before_anything_is_appended() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "{\"whole\":1}\n{\"torn").expect("seed");
        let mut w = writer(dir.path(), 1 << 20, 3);
        w.write(&[b"{\"next\":2}\n".to_vec()]).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"whole\":1}\n{\"torn\n{\"next\":2}\n"
        );
    }

    #[test]
    fn a_file_moved_away_is_followed_by_a_new_one() {
        let dir = tempfile::tempdir().expect("dir");
        let mut w = writer(dir.path(), 1 << 20, 3);
        w.write(&[b"a\n".to_vec()]).expect("write");
        std::fs::rename(&w.path, dir.path().join("moved")).expect("move");
        w.write(&[b"b\n".to_vec()]).expect("write");
        assert_eq!(std::fs::read_to_string(&w.path).expect("read"), "b\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("moved")).expect("read"),
            "a\n"
        );
    }
}
