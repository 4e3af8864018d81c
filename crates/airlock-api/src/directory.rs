//! The directory as the API decides with it: one read shared by every request until it is
//! older than `[api] directory_max_age_secs`, then read again (one read at a time, however
//! many requests wait). If the directory cannot be read and the last read is too old, requests
//! are refused (503): deny by default, never decide with a directory of unknown age.

use crate::ApiError;
use airlock_core::directory::DirectorySnapshot;
use airlock_core::Clock;
use airlock_directory::Source;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The directory, read at most `max_age` ago.
pub struct DirectoryCache {
    source: Arc<Source>,
    max_age: Duration,
    clock: Arc<dyn Clock>,
    held: tokio::sync::RwLock<Option<(Arc<DirectorySnapshot>, DateTime<Utc>)>>,
    reading: tokio::sync::Mutex<()>,
}

impl DirectoryCache {
    /// A cache of `source` that reads it again once `max_age` passed.
    pub fn new(source: Arc<Source>, max_age: Duration, clock: Arc<dyn Clock>) -> DirectoryCache {
        DirectoryCache {
            source,
            max_age,
            clock,
            held: Default::default(),
            reading: Default::default(),
        }
    }

    async fn fresh(&self) -> Option<Arc<DirectorySnapshot>> {
        let now = self.clock.now();
        let held = self.held.read().await;
        held.as_ref()
            .filter(|(_, at)| (now - *at).to_std().is_ok_and(|age| age < self.max_age))
            .map(|(d, _)| d.clone())
    }

    /// The directory, read again first if the last read is too old.
    pub async fn get(&self) -> Result<Arc<DirectorySnapshot>, ApiError> {
        if let Some(d) = self.fresh().await {
            return Ok(d);
        }
        let _one = self.reading.lock().await;
        if let Some(d) = self.fresh().await {
            return Ok(d);
        }
        let at = self.clock.now();
        match self.source.read().await {
            Ok(d) => {
                let d = Arc::new(d);
                *self.held.write().await = Some((d.clone(), at));
                Ok(d)
            }
            Err(e) => {
                tracing::warn!(source = %self.source.describe(), error = %e, "api: cannot read the directory");
                Err(ApiError::Unavailable(
                    "the directory cannot be read now; nothing was changed, retry later".into(),
                ))
            }
        }
    }

    /// Forgets the last read: the next request reads the directory again.
    pub async fn invalidate(&self) {
        *self.held.write().await = None;
    }
}
