//! Time to deprovision: how long after the identity provider suspended or deleted a person
//! airlock removed their access from each Airflow.
//!
//! - [`ingest`] reads the provider's leavers (JumpCloud Directory Insights: `user_suspended`,
//!   `user_delete`) since the last read, again over the last [`OVERLAP`] because the event log
//!   indexes events late, and records each once (`idp_leavers`), with the Airflow username the
//!   policy's username rule derives from the event's username and email.
//! - [`correlate`] reads the audit trail for airlock's removals of access (`account.suspend`,
//!   `account.delete`, or `account.set_roles` to no role; succeeded) of those usernames, from
//!   [`EARLY`] before each leaver's event (clocks differ, and a SCIM push can beat the event
//!   log) up to [`HORIZON`] after, and records the first per leaver and instance
//!   (`idp_deprovisions`). Each poll reads only the events appended since the last one, except
//!   after new leavers, when it reads again from the earliest of them.
//!
//! The figure per leaver and instance is `removed - suspended`; per leaver, the largest of
//! them (the moment the last instance was done). Both clocks are the sources' own: the
//! provider's event time and airlock's audit time.

use crate::EngineError;
use airlock_audit::{operation as op, AuditEvent, Outcome, Target};
use airlock_core::directory::{Person, PersonId, PersonStatus};
use airlock_core::policy::UsernameRule;
use airlock_core::Clock;
use airlock_directory::jumpcloud::insights::{Insights, InsightsSettings, LeaverEvent};
use airlock_store::{Deprovision, Leaver, Store};
use std::collections::{BTreeMap, BTreeSet};

/// How far back each read of the event log looks again.
pub const OVERLAP: chrono::Duration = chrono::Duration::minutes(15);
/// How long after a leaver's event removals are still looked for.
pub const HORIZON: chrono::Duration = chrono::Duration::days(7);
/// How long before a leaver's event a removal still counts as theirs.
pub const EARLY: chrono::Duration = chrono::Duration::minutes(10);
/// The first read looks this far back.
pub const FIRST_READ: chrono::Duration = chrono::Duration::hours(1);
/// The cursor (in `delivery_cursors`, unix ms) of the event log reads.
pub const INSIGHTS_CURSOR: &str = "insights:jumpcloud";
/// The cursor (in `delivery_cursors`, an audit seq) of the trail reads.
pub const SCAN_CURSOR: &str = "deprovisions:scan";
/// Audit events read a page.
const PAGE: u32 = 500;

/// The Directory Insights reader of a JumpCloud directory configured with `insights = true`
/// (with its poll interval); `None` otherwise.
pub fn insights_for(
    config: &airlock_config::Config,
) -> Result<Option<(Insights, std::time::Duration)>, EngineError> {
    let Some(airlock_config::DirectoryConfig::JumpCloud {
        api_key,
        org_id,
        timeout,
        max_retries,
        insights: Some(i),
        ..
    }) = &config.directory
    else {
        return Ok(None);
    };
    let reader = Insights::new(InsightsSettings {
        api_key: api_key.clone(),
        org_id: org_id.clone(),
        base_url: i.url.clone(),
        timeout: *timeout,
        max_retries: *max_retries,
        retry_base: std::time::Duration::from_millis(500),
    })
    .map_err(|e| EngineError::Directory(e.into()))?;
    Ok(Some((reader, i.poll)))
}

/// The Airflow username of a leaver, as the policy derives it from what the event carries.
pub fn username_of(e: &LeaverEvent, rule: &UsernameRule) -> Option<String> {
    let person = Person {
        id: PersonId(e.user_id.clone()),
        username: e.username.clone().unwrap_or_default(),
        email: e.email.clone(),
        first_name: None,
        last_name: None,
        status: PersonStatus::Suspended,
        groups: BTreeSet::new(),
    };
    rule.derive(&person).ok().map(|u| u.to_string())
}

/// Reads the provider's leavers since the last read and records the new ones (oldest first).
pub async fn ingest(
    store: &Store,
    insights: &Insights,
    rule: &UsernameRule,
    clock: &dyn Clock,
) -> Result<Vec<Leaver>, EngineError> {
    let now = clock.now();
    let start = match store.delivery_cursor(INSIGHTS_CURSOR).await? {
        Some(ms) => {
            chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
                .unwrap_or(now)
                .min(now)
                - OVERLAP
        }
        None => now - FIRST_READ,
    };
    let events = insights
        .leavers(start, now)
        .await
        .map_err(|e| EngineError::Directory(e.into()))?;
    let mut new = Vec::new();
    for e in &events {
        let Some(username) = username_of(e, rule) else {
            tracing::warn!(event = %e.id, person = %e.user_id, "a leaver without the attribute the username rule needs; not tracked");
            continue;
        };
        let leaver = Leaver {
            id: e.id.clone(),
            provider: "jumpcloud".into(),
            kind: e.kind.as_str().into(),
            at_ms: e.at.timestamp_millis(),
            person: e.user_id.clone(),
            username,
        };
        if store.record_leaver(&leaver, now.timestamp_millis()).await? {
            new.push(leaver);
        }
    }
    store
        .advance_delivery_cursor(
            INSIGHTS_CURSOR,
            u64::try_from(now.timestamp_millis()).unwrap_or(0),
            now.timestamp_millis(),
        )
        .await?;
    Ok(new)
}

/// Whether `e` removed an account's access: a suspension, a deletion, or roles set to none.
pub fn is_removal(e: &AuditEvent) -> bool {
    if e.outcome != Outcome::Succeeded {
        return false;
    }
    match e.operation.as_str() {
        op::ACCOUNT_SUSPEND | op::ACCOUNT_DELETE => true,
        op::ACCOUNT_SET_ROLES => e
            .after
            .as_ref()
            .and_then(|a| a.get("roles"))
            .and_then(serde_json::Value::as_array)
            .is_some_and(Vec::is_empty),
        _ => false,
    }
}

/// Records the first removal per leaver and instance seen in the trail since the last call
/// (since `EARLY` before the earliest of `new` leavers when there are any); returns what it
/// recorded, with its leaver.
pub async fn correlate(
    store: &Store,
    clock: &dyn Clock,
    new: &[Leaver],
) -> Result<Vec<(Leaver, Deprovision)>, EngineError> {
    let now = clock.now();
    let since = (now - HORIZON).timestamp_millis();
    let leavers = store.leavers(since).await?;
    let head = store.audit_head().await?.seq;
    let scanned = store.delivery_cursor(SCAN_CURSOR).await?;
    let mut from = scanned.map_or(1, |s| s + 1);
    if let Some(earliest) = new.iter().map(|l| l.at_ms).min() {
        let at = earliest - EARLY.num_milliseconds();
        from = from.min(store.audit_seq_at(at).await?.unwrap_or(head + 1));
    }
    if scanned.is_none() {
        // The first scan starts at the earliest leaver still looked after.
        let at = leavers.iter().map(|l| l.at_ms).min().unwrap_or(i64::MAX);
        from = store
            .audit_seq_at(at - EARLY.num_milliseconds())
            .await?
            .unwrap_or(head + 1);
    }
    let mut done: BTreeSet<(String, String)> = (store.deprovisions(since).await?.into_iter())
        .map(|d| (d.leaver, d.instance))
        .collect();
    let mut by_name: BTreeMap<String, Vec<&Leaver>> = BTreeMap::new();
    for l in &leavers {
        by_name
            .entry(l.username.to_lowercase())
            .or_default()
            .push(l);
    }
    let mut out = Vec::new();
    let mut seq = from;
    while seq <= head && !by_name.is_empty() {
        let page = store.audit_events(seq, PAGE).await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in page.iter().filter(|e| e.seq <= head && is_removal(e)) {
            let (Some(Target::Account { username }), Some(instance)) = (&e.target, &e.instance)
            else {
                continue;
            };
            let at = e.at.timestamp_millis();
            for l in by_name.get(&username.to_lowercase()).into_iter().flatten() {
                let key = (l.id.clone(), instance.clone());
                if at < l.at_ms - EARLY.num_milliseconds() || done.contains(&key) {
                    continue;
                }
                let d = Deprovision {
                    leaver: l.id.clone(),
                    instance: instance.clone(),
                    removed_ms: at,
                    audit_seq: e.seq,
                };
                if store.record_deprovision(&d).await? {
                    out.push(((*l).clone(), d));
                }
                done.insert(key);
            }
        }
        seq = last + 1;
    }
    store
        .advance_delivery_cursor(SCAN_CURSOR, head, now.timestamp_millis())
        .await?;
    Ok(out)
}

/// One leaver's figures: when the provider recorded them, and per instance when airlock
/// removed their access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaverReport {
    /// The leaver.
    pub leaver: Leaver,
    /// Per instance: removal time (unix ms).
    pub removed: BTreeMap<String, i64>,
}

impl LeaverReport {
    /// Milliseconds from the provider's event to the last instance's removal (`None`: no
    /// removal seen yet). May be negative when airlock acted before the provider logged it.
    pub fn time_to_deprovision_ms(&self) -> Option<i64> {
        self.removed.values().max().map(|t| t - self.leaver.at_ms)
    }
}

/// The leavers since `since_ms` with their removals (oldest first).
pub async fn report(store: &Store, since_ms: i64) -> Result<Vec<LeaverReport>, EngineError> {
    let mut removed: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for d in store.deprovisions(since_ms).await? {
        removed
            .entry(d.leaver)
            .or_default()
            .insert(d.instance, d.removed_ms);
    }
    Ok(store
        .leavers(since_ms)
        .await?
        .into_iter()
        .map(|l| LeaverReport {
            removed: removed.remove(&l.id).unwrap_or_default(),
            leaver: l,
        })
        .collect())
}
