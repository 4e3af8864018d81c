//! Just-in-time access requests, end to end: each action checks the pure transition of
//! `airlock_core::access` against the request as stored, under its lock, and stores the result
//! with the audit event that records it (docs/adr/0011). The grants reach Airflow through the
//! planner: [`Engine::observe`](crate::sync::Engine::observe) reads them, and the plan holds
//! their roles until they end.
//!
//! Actors in the audit trail are `person:<directory id>`; time passing is `airlock`.

use airlock_audit::{operation, NewEvent, Outcome, Target, ACTOR_AIRLOCK};
use airlock_config::InstanceConfig;
use airlock_core::access::{
    self, AccessPolicy, AccessRequest, Draft, Labels, Refusal, RequestId, State,
};
use airlock_core::directory::{DirectorySnapshot, PersonId};
use airlock_core::Clock;
use airlock_core::InstanceName;
use airlock_store::{ChangeError, Inserted, RequestFilter, Store, StoreError, StoredRequest};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeSet;

/// Why an access action did not happen; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The policy or the request's state refuses it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No request has the id.
    #[error("no access request has id {0}")]
    NotFound(String),
    /// The state store failed (or refused a reused idempotency key).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored request could not be read back.
    #[error("stored access request {id} is unreadable: {source}")]
    Corrupt {
        /// Its id.
        id: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The audit actor of a person.
pub fn actor(person: &PersonId) -> String {
    format!("person:{person}")
}

/// When something is next due for a request: its lapse while pending, its end while approved.
fn deadline(r: &AccessRequest) -> Option<DateTime<Utc>> {
    match r.state {
        State::Pending => Some(r.pending_until),
        State::Approved { expires_at, .. } => Some(expires_at),
        _ => None,
    }
}

/// The store's form of a request.
pub fn to_stored(r: &AccessRequest) -> StoredRequest {
    StoredRequest {
        id: r.id.0.clone(),
        requester: r.requester.0.clone(),
        state: r.state.name().to_owned(),
        created_ms: r.created_at.timestamp_millis(),
        updated_ms: r.created_at.timestamp_millis(),
        deadline_ms: deadline(r).map(|d| d.timestamp_millis()),
        version: 0,
        // A request always serializes (plain data, string keys).
        body_json: serde_json::to_string(r).unwrap_or_default(),
    }
}

/// A stored request, read back.
pub fn from_stored(s: &StoredRequest) -> Result<AccessRequest, AccessError> {
    serde_json::from_str(&s.body_json).map_err(|source| AccessError::Corrupt {
        id: s.id.clone(),
        source,
    })
}

/// What the audit trail keeps of a request after a change: never more than the request says.
fn event(r: &AccessRequest, actor: String, op: &str, at: DateTime<Utc>) -> NewEvent {
    let mut e = NewEvent::new(at, actor, op, Outcome::Succeeded);
    e.target = Some(Target::AccessRequest { id: r.id.0.clone() });
    e.after = Some(json!({
        "requester": r.requester.0,
        "roles": r.roles,
        "instances": r.instances,
        "duration_secs": r.duration_secs,
        "reason": r.reason,
        "ticket": r.ticket,
        "extends": r.extends,
        "approvals": r.approvals.iter().map(|a| &a.by.0).collect::<Vec<_>>(),
        "state": r.state,
    }));
    e
}

/// Access requests against one store, under one policy and one set of instances.
pub struct Governance<'a> {
    /// The policy's `[access]`.
    pub policy: &'a AccessPolicy,
    /// The configured instances (their labels resolve rule selectors).
    pub instances: &'a [InstanceConfig],
    /// The store.
    pub store: &'a Store,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// How the acting person was established, when it was not by their own sign-in: e.g.
    /// `named by operator:alice on the command line` (the audit events' `reason`).
    pub via: Option<String>,
}

impl Governance<'_> {
    fn event(&self, r: &AccessRequest, actor: String, op: &str, at: DateTime<Utc>) -> NewEvent {
        let mut e = event(r, actor, op, at);
        e.reason.clone_from(&self.via);
        e
    }

    fn labels(&self) -> Labels<'_> {
        self.instances
            .iter()
            .map(|i| (&i.name, &i.labels))
            .collect()
    }

    /// Opens a request (approved at once where the rule says so). With an idempotency key, a
    /// retry with the same draft returns the first request; another draft is refused.
    pub async fn request(
        &self,
        directory: &DirectorySnapshot,
        requester: &PersonId,
        draft: Draft,
        idempotency_key: Option<&str>,
    ) -> Result<AccessRequest, AccessError> {
        let now = self.clock.now();
        let digest =
            airlock_store::request_digest(&serde_json::to_string(&draft).unwrap_or_default());
        let id = RequestId(uuid::Uuid::now_v7().to_string());
        let r = access::open(
            self.policy,
            &self.labels(),
            directory,
            requester,
            draft,
            id,
            now,
        )?;
        let op = if matches!(r.state, State::Approved { .. }) {
            operation::ACCESS_REQUEST_AUTO_APPROVE
        } else {
            operation::ACCESS_REQUEST_CREATE
        };
        let key = idempotency_key.map(|k| (k, digest.as_str()));
        match self
            .store
            .insert_access_request(
                &to_stored(&r),
                key,
                self.event(&r, actor(requester), op, now),
            )
            .await?
        {
            Inserted::New(_) => Ok(r),
            Inserted::Replayed(first) => from_stored(&first),
        }
    }

    /// Applies `step` to the stored request `id` under its lock, recording `op` by `by`.
    async fn change(
        &self,
        id: &str,
        by: String,
        op: &'static str,
        step: impl FnOnce(&AccessRequest, DateTime<Utc>) -> Result<AccessRequest, Refusal>,
    ) -> Result<AccessRequest, AccessError> {
        let now = self.clock.now();
        let stored = self
            .store
            .change_access_request(id, now.timestamp_millis(), |current| {
                let r = from_stored(current)?;
                let next = step(&r, now)?;
                Ok((to_stored(&next), self.event(&next, by, op, now)))
            })
            .await
            .map_err(|err| match err {
                ChangeError::NotFound => AccessError::NotFound(id.to_owned()),
                ChangeError::Store(err) => AccessError::Store(err),
                ChangeError::Refused(err) => err,
            })?;
        from_stored(&stored)
    }

    /// Approves (the last needed approval makes it a grant from now).
    pub async fn approve(
        &self,
        directory: &DirectorySnapshot,
        id: &str,
        approver: &PersonId,
        comment: Option<String>,
    ) -> Result<AccessRequest, AccessError> {
        let labels = self.labels();
        self.change(
            id,
            actor(approver),
            operation::ACCESS_REQUEST_APPROVE,
            |r, now| access::approve(self.policy, &labels, directory, r, approver, comment, now),
        )
        .await
    }

    /// Denies.
    pub async fn deny(
        &self,
        directory: &DirectorySnapshot,
        id: &str,
        approver: &PersonId,
        comment: Option<String>,
    ) -> Result<AccessRequest, AccessError> {
        let labels = self.labels();
        self.change(
            id,
            actor(approver),
            operation::ACCESS_REQUEST_DENY,
            |r, now| access::deny(self.policy, &labels, directory, r, approver, comment, now),
        )
        .await
    }

    /// Withdraws a pending request (its requester only).
    pub async fn cancel(
        &self,
        id: &str,
        requester: &PersonId,
    ) -> Result<AccessRequest, AccessError> {
        self.change(
            id,
            actor(requester),
            operation::ACCESS_REQUEST_CANCEL,
            |r, now| access::cancel(r, requester, now),
        )
        .await
    }

    /// Ends an active grant early.
    pub async fn revoke(
        &self,
        directory: &DirectorySnapshot,
        id: &str,
        by: &PersonId,
        comment: Option<String>,
    ) -> Result<AccessRequest, AccessError> {
        let labels = self.labels();
        self.change(id, actor(by), operation::ACCESS_GRANT_REVOKE, |r, now| {
            access::revoke(self.policy, &labels, directory, r, by, comment, now)
        })
        .await
    }

    /// One request.
    pub async fn get(&self, id: &str) -> Result<AccessRequest, AccessError> {
        let stored = self.store.access_request(id).await?;
        from_stored(&stored.ok_or_else(|| AccessError::NotFound(id.to_owned()))?)
    }

    /// A page of requests.
    pub async fn list(&self, filter: &RequestFilter) -> Result<Vec<AccessRequest>, AccessError> {
        let page = self.store.access_requests(filter).await?;
        page.iter().map(from_stored).collect()
    }
}

/// The instances a request names: those named (each must be configured), and those carrying
/// every `label` (`key`, `value`). The error names what to fix, for the flag or field
/// `names_key` / `labels_key` it came from.
pub fn select_instances(
    instances: &[InstanceConfig],
    names: &[String],
    labels: &[(String, String)],
    (names_key, labels_key): (&str, &str),
) -> Result<BTreeSet<InstanceName>, String> {
    let mut out = BTreeSet::new();
    for n in names {
        let inst = (instances.iter())
            .find(|i| i.name.as_str() == n)
            .ok_or_else(|| format!("{names_key}: no instance named `{n}` is configured"))?;
        out.insert(inst.name.clone());
    }
    if !labels.is_empty() {
        let before = out.len();
        for inst in instances {
            if (labels.iter()).all(|(k, v)| inst.labels.get(k).is_some_and(|x| x == v)) {
                out.insert(inst.name.clone());
            }
        }
        if out.len() == before && names.is_empty() {
            let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(format!(
                "{labels_key}: no configured instance carries {}",
                wanted.join(", ")
            ));
        }
    }
    if out.is_empty() {
        return Err(format!("name the instances: {names_key} or {labels_key}"));
    }
    Ok(out)
}

/// Every approved request as stored (the planner keeps those still active at its time).
pub async fn grants(store: &Store) -> Result<Vec<AccessRequest>, AccessError> {
    let stored = store.approved_access_requests().await?;
    stored.iter().map(from_stored).collect()
}

/// Records the grants about to end (within the policy's `expiring_notice_secs`) as expiring
/// (`access_grant.expiring`, once per grant: each is decided again under the request's lock,
/// so replicas racing record it once). Returns the grants noted.
pub async fn note_expiring(
    store: &Store,
    clock: &dyn Clock,
    policy: &AccessPolicy,
) -> Result<Vec<AccessRequest>, AccessError> {
    if policy.expiring_notice_secs <= 0 {
        return Ok(Vec::new());
    }
    let now = clock.now();
    let mut noted = Vec::new();
    for candidate in store.approved_access_requests().await? {
        let r = from_stored(&candidate)?;
        if access::note_expiring(policy, &r, now).is_none() {
            continue;
        }
        let result = store
            .change_access_request(&candidate.id, now.timestamp_millis(), |current| {
                let r = from_stored(current).map_err(Some)?;
                let next = access::note_expiring(policy, &r, now).ok_or(None)?;
                let e = event(
                    &next,
                    ACTOR_AIRLOCK.to_owned(),
                    operation::ACCESS_GRANT_EXPIRING,
                    now,
                );
                Ok((to_stored(&next), e))
            })
            .await;
        match result {
            Ok(stored) => noted.push(from_stored(&stored)?),
            Err(ChangeError::Refused(None) | ChangeError::NotFound) => {}
            Err(ChangeError::Refused(Some(err))) => return Err(err),
            Err(ChangeError::Store(err)) => return Err(err.into()),
        }
    }
    Ok(noted)
}

/// Records what time (and the directory) did to requests: pending ones past their pending
/// time lapse, grants past their end expire, grants of people no longer active are revoked.
/// Returns the requests changed. Safe to run on every replica at once: each change is
/// decided again under the request's lock, and one already recorded is left alone.
pub async fn settle(
    store: &Store,
    clock: &dyn Clock,
    directory: &DirectorySnapshot,
) -> Result<Vec<AccessRequest>, AccessError> {
    let now = clock.now();
    let mut candidates = store
        .due_access_requests(now.timestamp_millis(), airlock_store::MAX_PAGE)
        .await?;
    // Grants of people who left are not due by time: look at every grant.
    for grant in store.approved_access_requests().await? {
        if (directory.people.get(&PersonId(grant.requester.clone())))
            .is_none_or(|p| p.status != airlock_core::directory::PersonStatus::Active)
            && candidates.iter().all(|c| c.id != grant.id)
        {
            candidates.push(grant);
        }
    }
    let mut changed = Vec::new();
    for candidate in candidates {
        let result = store
            .change_access_request(&candidate.id, now.timestamp_millis(), |current| {
                let r = from_stored(current).map_err(Some)?;
                // Already settled by another replica: nothing to record.
                let next = access::lapse(directory, &r, now).ok_or(None)?;
                let op = match next.state {
                    State::Lapsed { .. } => operation::ACCESS_REQUEST_LAPSE,
                    State::Expired { .. } => operation::ACCESS_GRANT_EXPIRE,
                    _ => operation::ACCESS_GRANT_REVOKE,
                };
                Ok((
                    to_stored(&next),
                    event(&next, ACTOR_AIRLOCK.to_owned(), op, now),
                ))
            })
            .await;
        match result {
            Ok(stored) => changed.push(from_stored(&stored)?),
            Err(ChangeError::Refused(None) | ChangeError::NotFound) => {}
            Err(ChangeError::Refused(Some(err))) => return Err(err),
            Err(ChangeError::Store(err)) => return Err(err.into()),
        }
    }
    Ok(changed)
}
