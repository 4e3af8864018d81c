//! Who had access to what, when (`airlock access at`, `GET /api/v1/access`): every complete
//! inventory snapshot, and the complete read of every instance a full sync makes (`sync`,
//! `apply`, `airlock serve`'s scheduled runs), is recorded as an observation of the
//! instance's access (stretching the
//! newest interval when nothing changed), and a moment is answered from the interval at or
//! before it and the one after (`airlock_core::history`).

use crate::EngineError;
use airlock_core::history::{self, AccessRow, AccessState, Evidence, Filter, Observed};
use airlock_core::inventory::Snapshot;
use airlock_core::Account;
use airlock_store::{AccessInterval, Recorded, Store};
use chrono::{DateTime, TimeZone as _, Utc};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Records what `snapshot` shows of its instance's access, observed by `source`.
pub async fn observe(
    store: &Store,
    snapshot: &Snapshot,
    source: &str,
) -> Result<Recorded, EngineError> {
    observe_accounts(
        store,
        snapshot.instance.as_str(),
        snapshot.taken_at,
        &snapshot.accounts,
        source,
    )
    .await
}

/// Records the access that every account of `instance`, read completely at `at`, shows.
pub async fn observe_accounts(
    store: &Store,
    instance: &str,
    at: DateTime<Utc>,
    accounts: &[Account],
    source: &str,
) -> Result<Recorded, EngineError> {
    // Encoding thousands of accounts and hashing them is CPU work: off the worker when large.
    let (text, digest) = crate::cpu::cpu_bound_when(accounts.len() > 500, || {
        let state = AccessState::of_accounts(accounts);
        let text = serde_json::to_string(&state)?;
        let digest: String = (Sha256::digest(text.as_bytes()).iter())
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok::<_, serde_json::Error>((text, digest))
    })
    .map_err(|source| EngineError::CorruptHistory {
        instance: instance.to_owned(),
        from: at.to_rfc3339(),
        source,
    })?;
    Ok(store
        .observe_access(instance, at.timestamp_millis(), source, &digest, &text)
        .await?)
}

/// The answer to "who had access at `at`".
#[derive(Debug, Clone, Serialize)]
pub struct AccessAt {
    /// The moment asked about.
    pub at: DateTime<Utc>,
    /// What each instance's answer rests on.
    pub evidence: Vec<Evidence>,
    /// Every account that held a role (or, in a gap, whose access changed), by instance and
    /// username.
    pub rows: Vec<AccessRow>,
}

fn ms(t: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t).single().unwrap_or_default()
}

fn decode(i: &AccessInterval) -> Result<Observed, EngineError> {
    let state: AccessState =
        serde_json::from_str(&i.state_json).map_err(|source| EngineError::CorruptHistory {
            instance: i.instance.clone(),
            from: ms(i.from_ms).to_rfc3339(),
            source,
        })?;
    Ok(Observed {
        from: ms(i.from_ms),
        to: ms(i.to_ms),
        first_source: i.first_source.clone(),
        last_source: i.last_source.clone(),
        observations: u64::try_from(i.observations).unwrap_or(0),
        state,
    })
}

/// Who had access at `at` on `instances` (none: every instance ever observed), filtered.
pub async fn access_at(
    store: &Store,
    at: DateTime<Utc>,
    instances: &[String],
    filter: &Filter,
) -> Result<AccessAt, EngineError> {
    let instances = if instances.is_empty() {
        store.access_instances().await?
    } else {
        instances.to_vec()
    };
    let mut evidence = Vec::with_capacity(instances.len());
    let mut rows = Vec::new();
    for instance in &instances {
        let (before, next) = store.access_around(instance, at.timestamp_millis()).await?;
        let before = before.as_ref().map(decode).transpose()?;
        let next = next.as_ref().map(decode).transpose()?;
        let (ev, found) = history::answer(instance, at, before.as_ref(), next.as_ref(), filter);
        evidence.push(ev);
        rows.extend(found);
    }
    Ok(AccessAt { at, evidence, rows })
}
