//! Writing signed checkpoints of the audit chain to the destinations the operator configured
//! (`[audit.checkpoints]`): a file replaced atomically, a directory with one file per
//! checkpoint (named by its size), a URL the checkpoint is POSTed to.
//!
//! A checkpoint is signed only for a chain that verifies and that extends the newest
//! checkpoint already at a file or directory destination (its event at that size has the
//! signed hash): airlock never signs a rewritten history, so a checkpoint cannot launder
//! tampering that happened since the last one.
//!
//! Not here: the note format and the checks (`airlock_audit::checkpoint`), the schedule
//! (`airlock serve`), printing (the CLI).

use airlock_audit::checkpoint::{
    check_chain, open_checkpoint, sign_checkpoint, CheckpointError as FormatError,
    CheckpointMismatch,
};
use airlock_audit::{ChainBreak, Head};
use airlock_config::CheckpointConfig;
use airlock_store::{Store, StoreError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What [`write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A checkpoint of `head` was written to every destination.
    Written {
        /// The signed head.
        head: Head,
        /// The signed note.
        note: String,
    },
    /// The chain has not grown since the newest checkpoint; nothing was written.
    Unchanged {
        /// The head already signed.
        head: Head,
    },
}

/// Why no checkpoint was written (or not everywhere). Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored chain does not verify.
    #[error("refusing to sign a checkpoint: audit trail broken: {0}")]
    Broken(#[source] ChainBreak),
    /// The chain contradicts the newest checkpoint already written.
    #[error("refusing to sign a checkpoint: {source} (checkpoint {})", path.display())]
    Diverged {
        /// The checkpoint it contradicts.
        path: PathBuf,
        /// How.
        #[source]
        source: CheckpointMismatch,
    },
    /// A checkpoint at a destination does not verify with this key.
    #[error("checkpoint {} does not verify with the signing key: {source}; move it away if it is not airlock's", path.display())]
    Unverifiable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: FormatError,
    },
    /// The head could not be signed (a store holding an odd hash).
    #[error("cannot sign the checkpoint: {0}")]
    Sign(#[source] FormatError),
    /// A destination could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint of that size with another head is already in the directory.
    #[error("refusing to replace checkpoint {}: it signs another head of the same size", path.display())]
    Conflict {
        /// The file.
        path: PathBuf,
    },
    /// The POST to the URL failed.
    #[error("cannot post the checkpoint to {url}: {reason}")]
    Post {
        /// The URL without credentials or query.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The name of the directory destination's file for a checkpoint of `size` events: zero
/// padded, so that names sort by size.
pub fn directory_file_name(size: u64) -> String {
    format!("{size:020}.checkpoint")
}

/// Verifies the chain, and unless `only_if_grown` finds it unchanged since the newest
/// checkpoint at a file or directory destination, signs its head and writes the checkpoint
/// to every destination.
pub async fn write(
    store: &Store,
    cfg: &CheckpointConfig,
    only_if_grown: bool,
) -> Result<Written, CheckpointError> {
    let previous = newest_written(cfg)?;
    let size = previous.as_ref().map_or(0, |(_, cp)| cp.seq);
    let (summary, at_size) = store
        .verify_audit_at(size)
        .await?
        .map_err(CheckpointError::Broken)?;
    if let Some((path, signed)) = &previous {
        let signed = airlock_audit::checkpoint::Checkpoint {
            origin: cfg.signer.name().to_owned(),
            head: signed.clone(),
        };
        check_chain(&signed, summary.count, at_size.as_ref()).map_err(|source| {
            CheckpointError::Diverged {
                path: path.clone(),
                source,
            }
        })?;
        if only_if_grown && summary.count == signed.head.seq {
            return Ok(Written::Unchanged { head: signed.head });
        }
    }
    let head = summary.head();
    let note = sign_checkpoint(&cfg.signer, &head).map_err(CheckpointError::Sign)?;
    let mut failures = Vec::new();
    if let Some(path) = &cfg.file {
        failures.extend(replace_file(path, &note).err());
    }
    if let Some(dir) = &cfg.directory {
        failures.extend(add_to_directory(dir, head.seq, &note).err());
    }
    if let Some(url) = &cfg.url {
        failures.extend(post(url, cfg.timeout, &note).await.err());
    }
    match failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(Written::Written { head, note }),
    }
}

/// The newest checkpoint at the file and directory destinations, verified with the key.
fn newest_written(cfg: &CheckpointConfig) -> Result<Option<(PathBuf, Head)>, CheckpointError> {
    let mut candidates = Vec::new();
    if let Some(path) = &cfg.file {
        candidates.push(path.clone());
    }
    if let Some(dir) = &cfg.directory {
        candidates.extend(newest_in_directory(dir)?);
    }
    let verifier = cfg.signer.verifier();
    let mut newest: Option<(PathBuf, Head)> = None;
    for path in candidates {
        let note = match std::fs::read_to_string(&path) {
            Ok(note) => note,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CheckpointError::Io {
                    action: "read checkpoint",
                    path,
                    source,
                })
            }
        };
        let head = open_checkpoint(&verifier, &note)
            .map_err(|source| CheckpointError::Unverifiable {
                path: path.clone(),
                source,
            })?
            .head;
        if newest.as_ref().is_none_or(|(_, n)| head.seq > n.seq) {
            newest = Some((path, head));
        }
    }
    Ok(newest)
}

fn newest_in_directory(dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                action: "read checkpoint directory",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let newest = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 31 && n.ends_with(".checkpoint") && n.as_bytes()[0].is_ascii_digit())
        .max();
    Ok(newest.map(|n| dir.join(n)))
}

/// Writes `note` next to `path` and renames it over `path`, so readers see the old or the
/// new checkpoint, never half of one.
fn replace_file(path: &Path, note: &str) -> Result<(), CheckpointError> {
    let io = |action, source| CheckpointError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(note.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write checkpoint file", e));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Adds the checkpoint of `size` events to `dir` (created if missing). The same checkpoint
/// again is a no-op; another head of the same size is refused.
fn add_to_directory(dir: &Path, size: u64, note: &str) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
        action: "create checkpoint directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(directory_file_name(size));
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == note => return Ok(()),
        Ok(_) => return Err(CheckpointError::Conflict { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(CheckpointError::Io {
                action: "read checkpoint",
                path,
                source,
            })
        }
    }
    replace_file(&path, note)
}

/// `url` as it may be shown: without credentials, query or fragment (they may hold a token).
pub fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

async fn post(
    url: &url::Url,
    timeout: std::time::Duration,
    note: &str,
) -> Result<(), CheckpointError> {
    let fail = |reason: String| CheckpointError::Post {
        url: shown_url(url),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| fail(e.without_url().to_string()))?;
    let resp = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(note.to_owned())
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    Ok(())
}
