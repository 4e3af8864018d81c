//! Just-in-time access: a person asks for roles on instances for a while, others approve, and
//! the approved request is a grant that the planner adds to the desired state until it expires.
//!
//! Everything here is pure: the rules come from the policy ([`AccessPolicy`]), a request's life
//! is a sequence of checked transitions ([`open`], [`approve`], [`deny`], [`cancel`],
//! [`revoke`], [`lapse`]), and who may do what is one decision function ([`authorize`]). The
//! store keeps requests and applies a transition under the request's lock; the planner reads
//! the active grants ([`crate::plan::with_grants`]).
//!
//! - A request is decided by the first rule, in policy order, that covers every role it asks
//!   for on every instance it names and that lets the requester ask. Rules are read again at
//!   every decision: a policy change applies to pending requests too.
//! - Nobody approves (or denies) their own request; approvals come from distinct people.
//! - A grant's time starts at the approval that completes it; an extension is a new request
//!   (with the same approvals), and grants that overlap add up.

use crate::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};
use crate::model::{InstanceName, RoleName};
use crate::policy::InstanceSelector;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The most characters a reason, a ticket reference or a comment may have.
pub const MAX_TEXT: usize = 1000;

/// Who may ask for which roles where, who approves, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    /// The roles the rule lets people ask for (a request may ask for several).
    pub roles: BTreeSet<RoleName>,
    /// On these instances.
    pub instances: InstanceSelector,
    /// Members of these groups may ask; empty: anyone active in the directory.
    pub requesters: BTreeSet<GroupName>,
    /// Who approves.
    pub approvers: Approvers,
    /// Approvals from distinct approvers that make a request a grant; 0: every request the
    /// rule covers is approved at once (low-risk roles).
    pub approvals: usize,
    /// The longest a grant may last, in seconds.
    pub max_secs: i64,
    /// How long a grant lasts when the request names no duration, in seconds.
    pub default_secs: i64,
    /// A request must give a reason.
    pub reason_required: bool,
    /// A request nobody decided lapses after this many seconds.
    pub pending_secs: i64,
    /// Requests by members of these groups are approved at once (e.g. the on-call group).
    pub auto_approve: BTreeSet<GroupName>,
}

/// The people who may approve under a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvers {
    /// Members of these groups.
    pub groups: BTreeSet<GroupName>,
    /// These people, by email or directory username (compared ignoring ASCII case).
    pub people: BTreeSet<String>,
}

impl Approvers {
    /// Whether `person` is one of them.
    pub fn include(&self, person: &Person) -> bool {
        person.groups.iter().any(|g| self.groups.contains(g))
            || self.people.iter().any(|p| named(person, p))
    }
}

/// Whether `name` is the person's email or directory username (ASCII case ignored).
fn named(person: &Person, name: &str) -> bool {
    person.username.eq_ignore_ascii_case(name)
        || person
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(name))
}

/// The just-in-time part of the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// The rules, in policy order.
    pub rules: Vec<AccessRule>,
    /// Members of these groups administer governance: they see everything and may revoke any
    /// grant (they approve only where a rule names them).
    pub admins: BTreeSet<GroupName>,
    /// Members of these groups may read every request, grant and the audit trail, and change
    /// nothing.
    pub auditors: BTreeSet<GroupName>,
    /// How long before its end a grant is recorded as expiring (`access_grant.expiring`, which
    /// notification webhooks announce), in seconds; 0: never.
    #[serde(default)]
    pub expiring_notice_secs: i64,
}

/// A request's id (a UUID, from the store).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub String);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a person asks for, before any check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// Roles.
    pub roles: BTreeSet<RoleName>,
    /// Instances, by name (the caller resolves labels to names against the configuration).
    pub instances: BTreeSet<InstanceName>,
    /// For how long, in seconds; `None`: the rule's default.
    pub duration_secs: Option<i64>,
    /// Why.
    pub reason: Option<String>,
    /// A ticket reference.
    pub ticket: Option<String>,
    /// The grant this request extends, if any (for the record: grants that overlap add up).
    pub extends: Option<RequestId>,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub by: PersonId,
    /// When.
    pub at: DateTime<Utc>,
    /// Their comment.
    pub comment: Option<String>,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Waiting for approvals.
    Pending,
    /// Approved: a grant, from `approved_at` until `expires_at` (past that, it is over, even
    /// before the service records it as expired).
    Approved {
        /// When the last needed approval came (or the auto-approval).
        approved_at: DateTime<Utc>,
        /// When the grant ends.
        expires_at: DateTime<Utc>,
        /// Approved by the rule itself (no approvals needed, or the requester is in one of its
        /// `auto_approve` groups), not by people.
        auto: bool,
    },
    /// Denied by an approver.
    Denied {
        /// Who.
        by: PersonId,
        /// When.
        at: DateTime<Utc>,
        /// Why.
        comment: Option<String>,
    },
    /// Withdrawn by the requester before a decision.
    Cancelled {
        /// When.
        at: DateTime<Utc>,
    },
    /// Nobody decided within the rule's pending time.
    Lapsed {
        /// When that was noticed.
        at: DateTime<Utc>,
    },
    /// Ended before its time by an approver, an admin, the requester, or because the person
    /// left the directory (`by: None`).
    Revoked {
        /// Who, if a person.
        by: Option<PersonId>,
        /// When.
        at: DateTime<Utc>,
        /// Why.
        comment: Option<String>,
        /// The grant's approval time (history).
        approved_at: DateTime<Utc>,
    },
    /// Ran its time.
    Expired {
        /// When it was approved.
        approved_at: DateTime<Utc>,
        /// When it ended.
        expires_at: DateTime<Utc>,
    },
}

impl State {
    /// Every state's name, in the order of a request's life.
    pub const NAMES: &'static [&'static str] = &[
        "pending",
        "approved",
        "denied",
        "cancelled",
        "lapsed",
        "revoked",
        "expired",
    ];

    /// The state's name, as stored and shown.
    pub fn name(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved { .. } => "approved",
            State::Denied { .. } => "denied",
            State::Cancelled { .. } => "cancelled",
            State::Lapsed { .. } => "lapsed",
            State::Revoked { .. } => "revoked",
            State::Expired { .. } => "expired",
        }
    }
}

/// A request and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Its id.
    pub id: RequestId,
    /// Who asked.
    pub requester: PersonId,
    /// Roles.
    pub roles: BTreeSet<RoleName>,
    /// Instances.
    pub instances: BTreeSet<InstanceName>,
    /// For how long a grant lasts once approved, in seconds.
    pub duration_secs: i64,
    /// Why.
    pub reason: Option<String>,
    /// Ticket reference.
    pub ticket: Option<String>,
    /// The grant it extends.
    pub extends: Option<RequestId>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it lapses if undecided.
    pub pending_until: DateTime<Utc>,
    /// Approvals so far (distinct people).
    pub approvals: Vec<Approval>,
    /// Where it stands.
    pub state: State,
    /// When the grant was recorded as about to end ([`note_expiring`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_noted_at: Option<DateTime<Utc>>,
}

impl AccessRequest {
    /// The grant it is at `now`, if it is one: approved and not yet expired.
    pub fn active_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.state {
            State::Approved { expires_at, .. } if expires_at > now => Some(expires_at),
            _ => None,
        }
    }
}

/// Why an action is refused. Every variant names what to fix; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The actor is not an active person in the directory.
    #[error("{0} is not an active person in the directory")]
    NotInDirectory(PersonId),
    /// The draft is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No rule lets this person ask for this.
    #[error("no access rule lets {person} request {what}")]
    NoRule {
        /// Who asked.
        person: PersonId,
        /// What, e.g. `Admin on prod-eu`.
        what: String,
    },
    /// The duration is beyond the rule's maximum.
    #[error("{asked} s is longer than the {max} s the rule allows")]
    TooLong {
        /// Asked for.
        asked: i64,
        /// Allowed.
        max: i64,
    },
    /// The rule wants a reason.
    #[error("a reason is required for this request")]
    ReasonRequired,
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request is not in a state that allows it.
    #[error("request {id} is {state}: {what}")]
    WrongState {
        /// The request.
        id: RequestId,
        /// Its state.
        state: &'static str,
        /// What was attempted.
        what: &'static str,
    },
}

/// The person `id`, if the directory lists them as active: the first check of every decision
/// (a person it does not list as active may do nothing).
pub fn active<'a>(directory: &'a DirectorySnapshot, id: &PersonId) -> Result<&'a Person, Refusal> {
    match directory.people.get(id) {
        Some(p) if p.status == PersonStatus::Active => Ok(p),
        _ => Err(Refusal::NotInDirectory(id.clone())),
    }
}

/// The instances' labels, to resolve rule selectors.
pub type Labels<'a> = BTreeMap<&'a InstanceName, &'a BTreeMap<String, String>>;

/// The first rule that covers every role of the request on every instance it names and that
/// lets `requester` ask.
pub fn rule_for<'p>(
    policy: &'p AccessPolicy,
    labels: &Labels<'_>,
    requester: &Person,
    roles: &BTreeSet<RoleName>,
    instances: &BTreeSet<InstanceName>,
) -> Option<&'p AccessRule> {
    policy.rules.iter().find(|rule| {
        (rule.requesters.is_empty() || requester.groups.iter().any(|g| rule.requesters.contains(g)))
            && roles.iter().all(|r| rule.roles.contains(r))
            && instances
                .iter()
                .all(|i| labels.get(i).is_some_and(|l| rule.instances.matches(i, l)))
    })
}

fn text(what: &str, value: Option<String>) -> Result<Option<String>, Refusal> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_TEXT {
        return Err(Refusal::Invalid(format!(
            "the {what} is longer than {MAX_TEXT} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Refusal::Invalid(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(Some(value))
}

/// Checks a draft and makes it a request (`id` from the store), approved at once when the
/// requester is in one of the rule's `auto_approve` groups.
pub fn open(
    policy: &AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    requester: &PersonId,
    draft: Draft,
    id: RequestId,
    now: DateTime<Utc>,
) -> Result<AccessRequest, Refusal> {
    let person = active(directory, requester)?;
    if draft.roles.is_empty() {
        return Err(Refusal::Invalid("name at least one role".into()));
    }
    if draft.instances.is_empty() {
        return Err(Refusal::Invalid("name at least one instance".into()));
    }
    if let Some(unknown) = draft.instances.iter().find(|i| !labels.contains_key(i)) {
        return Err(Refusal::Invalid(format!(
            "no instance is named `{unknown}`"
        )));
    }
    let rule =
        rule_for(policy, labels, person, &draft.roles, &draft.instances).ok_or_else(|| {
            Refusal::NoRule {
                person: requester.clone(),
                what: describe(&draft.roles, &draft.instances),
            }
        })?;
    let duration_secs = draft.duration_secs.unwrap_or(rule.default_secs);
    if duration_secs <= 0 {
        return Err(Refusal::Invalid("the duration must be positive".into()));
    }
    if duration_secs > rule.max_secs {
        return Err(Refusal::TooLong {
            asked: duration_secs,
            max: rule.max_secs,
        });
    }
    let reason = text("reason", draft.reason)?;
    if rule.reason_required && reason.is_none() {
        return Err(Refusal::ReasonRequired);
    }
    let auto = rule.approvals == 0 || person.groups.iter().any(|g| rule.auto_approve.contains(g));
    let state = if auto {
        State::Approved {
            approved_at: now,
            expires_at: now + Duration::seconds(duration_secs),
            auto: true,
        }
    } else {
        State::Pending
    };
    Ok(AccessRequest {
        id,
        requester: requester.clone(),
        roles: draft.roles,
        instances: draft.instances,
        duration_secs,
        reason,
        ticket: text("ticket reference", draft.ticket)?,
        extends: draft.extends,
        created_at: now,
        pending_until: now + Duration::seconds(rule.pending_secs),
        approvals: Vec::new(),
        state,
        expiring_noted_at: None,
    })
}

/// `Admin, Op on prod-eu, prod-us`.
pub fn describe(roles: &BTreeSet<RoleName>, instances: &BTreeSet<InstanceName>) -> String {
    let roles: Vec<&str> = roles.iter().map(RoleName::as_str).collect();
    let instances: Vec<&str> = instances.iter().map(InstanceName::as_str).collect();
    format!("{} on {}", roles.join(", "), instances.join(", "))
}

fn pending(request: &AccessRequest, what: &'static str, now: DateTime<Utc>) -> Result<(), Refusal> {
    match request.state {
        State::Pending if now < request.pending_until => Ok(()),
        _ => Err(Refusal::WrongState {
            id: request.id.clone(),
            state: if request.state == State::Pending {
                "lapsed"
            } else {
                request.state.name()
            },
            what,
        }),
    }
}

/// The rule that governs a stored request now, for the people the decision is about.
fn governing<'p>(
    policy: &'p AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    request: &AccessRequest,
) -> Result<&'p AccessRule, Refusal> {
    let requester = active(directory, &request.requester)?;
    rule_for(
        policy,
        labels,
        requester,
        &request.roles,
        &request.instances,
    )
    .ok_or_else(|| Refusal::NoRule {
        person: request.requester.clone(),
        what: describe(&request.roles, &request.instances),
    })
}

/// Checks that `approver` may decide `request` under the current policy.
fn may_decide<'p>(
    policy: &'p AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    request: &AccessRequest,
    approver: &PersonId,
) -> Result<&'p AccessRule, Refusal> {
    let person = active(directory, approver)?;
    if *approver == request.requester {
        return Err(Refusal::Forbidden(
            "nobody approves or denies their own request".into(),
        ));
    }
    let rule = governing(policy, labels, directory, request)?;
    if !rule.approvers.include(person) {
        return Err(Refusal::Forbidden(format!(
            "{approver} is not an approver of {}",
            describe(&request.roles, &request.instances)
        )));
    }
    Ok(rule)
}

/// Records `approver`'s approval; the approval that completes the rule's count makes the
/// request a grant from `now`.
pub fn approve(
    policy: &AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    request: &AccessRequest,
    approver: &PersonId,
    comment: Option<String>,
    now: DateTime<Utc>,
) -> Result<AccessRequest, Refusal> {
    pending(request, "only a pending request can be approved", now)?;
    let rule = may_decide(policy, labels, directory, request, approver)?;
    if request.approvals.iter().any(|a| a.by == *approver) {
        return Err(Refusal::Forbidden(format!(
            "{approver} has already approved request {}",
            request.id
        )));
    }
    let mut next = request.clone();
    next.approvals.push(Approval {
        by: approver.clone(),
        at: now,
        comment: text("comment", comment)?,
    });
    if next.approvals.len() >= rule.approvals {
        next.state = State::Approved {
            approved_at: now,
            expires_at: now + Duration::seconds(request.duration_secs),
            auto: false,
        };
    }
    Ok(next)
}

/// Denies a pending request.
pub fn deny(
    policy: &AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    request: &AccessRequest,
    approver: &PersonId,
    comment: Option<String>,
    now: DateTime<Utc>,
) -> Result<AccessRequest, Refusal> {
    pending(request, "only a pending request can be denied", now)?;
    may_decide(policy, labels, directory, request, approver)?;
    let mut next = request.clone();
    next.state = State::Denied {
        by: approver.clone(),
        at: now,
        comment: text("comment", comment)?,
    };
    Ok(next)
}

/// Withdraws a pending request; only its requester may.
pub fn cancel(
    request: &AccessRequest,
    actor: &PersonId,
    now: DateTime<Utc>,
) -> Result<AccessRequest, Refusal> {
    if *actor != request.requester {
        return Err(Refusal::Forbidden(
            "only the requester can cancel a request".into(),
        ));
    }
    pending(request, "only a pending request can be cancelled", now)?;
    let mut next = request.clone();
    next.state = State::Cancelled { at: now };
    Ok(next)
}

/// Ends an active grant early: by its requester, an approver under the current policy, or a
/// governance admin.
pub fn revoke(
    policy: &AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    request: &AccessRequest,
    actor: &PersonId,
    comment: Option<String>,
    now: DateTime<Utc>,
) -> Result<AccessRequest, Refusal> {
    let Some(_) = request.active_at(now) else {
        return Err(Refusal::WrongState {
            id: request.id.clone(),
            state: request.state.name(),
            what: "only an active grant can be revoked",
        });
    };
    let person = active(directory, actor)?;
    let allowed = *actor == request.requester
        || is_admin(policy, person)
        || governing(policy, labels, directory, request)
            .is_ok_and(|rule| rule.approvers.include(person));
    if !allowed {
        return Err(Refusal::Forbidden(format!(
            "{actor} may not revoke request {}",
            request.id
        )));
    }
    revoked(request, Some(actor.clone()), text("comment", comment)?, now)
}

fn revoked(
    request: &AccessRequest,
    by: Option<PersonId>,
    comment: Option<String>,
    now: DateTime<Utc>,
) -> Result<AccessRequest, Refusal> {
    let State::Approved { approved_at, .. } = request.state else {
        return Err(Refusal::WrongState {
            id: request.id.clone(),
            state: request.state.name(),
            what: "only an active grant can be revoked",
        });
    };
    let mut next = request.clone();
    next.state = State::Revoked {
        by,
        at: now,
        comment,
        approved_at,
    };
    Ok(next)
}

/// What time has made of a request at `now`, if anything: a pending request past its pending
/// time lapses, a grant past its end expires, and a grant whose requester is no longer active
/// in the directory is revoked (`by: None`). `None`: unchanged.
pub fn lapse(
    directory: &DirectorySnapshot,
    request: &AccessRequest,
    now: DateTime<Utc>,
) -> Option<AccessRequest> {
    let mut next = request.clone();
    match request.state {
        State::Pending if now >= request.pending_until => {
            next.state = State::Lapsed { at: now };
        }
        State::Approved {
            approved_at,
            expires_at,
            ..
        } if now >= expires_at => {
            next.state = State::Expired {
                approved_at,
                expires_at,
            };
        }
        State::Approved { .. } if active(directory, &request.requester).is_err() => {
            return revoked(
                request,
                None,
                Some("the person is no longer active in the directory".into()),
                now,
            )
            .ok();
        }
        _ => return None,
    }
    Some(next)
}

/// A grant that ends within the policy's `expiring_notice_secs` of `now` and was not noted
/// yet, noted now; `None`: nothing to note.
pub fn note_expiring(
    policy: &AccessPolicy,
    request: &AccessRequest,
    now: DateTime<Utc>,
) -> Option<AccessRequest> {
    if policy.expiring_notice_secs <= 0 || request.expiring_noted_at.is_some() {
        return None;
    }
    let ends = request.active_at(now)?;
    if ends - now > Duration::seconds(policy.expiring_notice_secs) {
        return None;
    }
    let mut next = request.clone();
    next.expiring_noted_at = Some(now);
    Some(next)
}

fn is_admin(policy: &AccessPolicy, person: &Person) -> bool {
    person.groups.iter().any(|g| policy.admins.contains(g))
}

fn is_auditor(policy: &AccessPolicy, person: &Person) -> bool {
    person.groups.iter().any(|g| policy.auditors.contains(g))
}

/// Something a person wants to do through the governance API or the CLI.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Ask for access (what exactly is checked by [`open`]).
    Request,
    /// Read one request.
    Read(&'a AccessRequest),
    /// List every request, grant, person, account and instance.
    ReadAll,
    /// Read the audit trail.
    ReadAudit,
    /// Read the people, accounts and instances airlock knows.
    ReadDirectory,
    /// Approve or deny this request (checked in full by [`approve`] and [`deny`]).
    Decide(&'a AccessRequest),
    /// Cancel this request.
    Cancel(&'a AccessRequest),
    /// Revoke this grant (checked in full by [`revoke`]).
    Revoke(&'a AccessRequest),
}

/// The one decision of who may do what: anyone active in the directory may ask and read their
/// own requests; approvers read and decide the requests their rules give them; auditors read
/// everything and change nothing; admins read everything and may revoke any grant. Deny by
/// default: a person the directory does not list as active may do nothing.
pub fn authorize(
    policy: &AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    actor: &PersonId,
    action: Action<'_>,
) -> Result<(), Refusal> {
    let person = active(directory, actor)?;
    let approver_of = |request: &AccessRequest| {
        governing(policy, labels, directory, request)
            .is_ok_and(|rule| rule.approvers.include(person))
    };
    let allowed = match action {
        Action::Request => true,
        Action::Read(request) => {
            request.requester == *actor
                || is_admin(policy, person)
                || is_auditor(policy, person)
                || approver_of(request)
        }
        Action::ReadAll | Action::ReadAudit | Action::ReadDirectory => {
            is_admin(policy, person) || is_auditor(policy, person)
        }
        Action::Decide(request) => request.requester != *actor && approver_of(request),
        Action::Cancel(request) => request.requester == *actor,
        Action::Revoke(request) => {
            request.requester == *actor || is_admin(policy, person) || approver_of(request)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!("{actor} may not do this")))
    }
}

/// What a governance API token may be used for; a token carries one or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Read requests and grants.
    #[serde(rename = "requests:read")]
    ReadRequests,
    /// Ask for access and cancel requests, as the token's person.
    #[serde(rename = "requests:write")]
    WriteRequests,
    /// Approve, deny and revoke, as the token's person.
    #[serde(rename = "requests:decide")]
    Decide,
    /// Read people, accounts and instances.
    #[serde(rename = "directory:read")]
    ReadDirectory,
    /// Read the audit trail.
    #[serde(rename = "audit:read")]
    ReadAudit,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 5] = [
        Scope::ReadRequests,
        Scope::WriteRequests,
        Scope::Decide,
        Scope::ReadDirectory,
        Scope::ReadAudit,
    ];

    /// The scope's name (`requests:read`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Scope::ReadRequests => "requests:read",
            Scope::WriteRequests => "requests:write",
            Scope::Decide => "requests:decide",
            Scope::ReadDirectory => "directory:read",
            Scope::ReadAudit => "audit:read",
        }
    }

    /// The scope named `name`.
    pub fn parse(name: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown scope `{name}`; scopes are {}",
                    Scope::ALL.map(Scope::name).join(", ")
                )
            })
    }

    /// Whether the scope only reads.
    pub fn reads_only(self) -> bool {
        matches!(
            self,
            Scope::ReadRequests | Scope::ReadDirectory | Scope::ReadAudit
        )
    }

    /// The scope an action needs.
    pub fn needed_for(action: &Action<'_>) -> Scope {
        match action {
            Action::Request | Action::Cancel(_) => Scope::WriteRequests,
            Action::Read(_) | Action::ReadAll => Scope::ReadRequests,
            Action::Decide(_) | Action::Revoke(_) => Scope::Decide,
            Action::ReadDirectory => Scope::ReadDirectory,
            Action::ReadAudit => Scope::ReadAudit,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is calling the governance API.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A person, signed in with the company's identity provider.
    Person(&'a PersonId),
    /// An airlock API token: acting as its person (if it has one), limited to its scopes.
    Token {
        /// The person it acts as; `None`: an automation token that may only read.
        person: Option<&'a PersonId>,
        /// What it may be used for.
        scopes: &'a BTreeSet<Scope>,
    },
}

/// [`authorize`] for any caller: a person as [`authorize`] decides; a token only within its
/// scopes, and, when it acts as a person, only as far as that person may (who must still be
/// active in the directory); a token without a person may read what its scopes say and
/// change nothing. Deny by default.
pub fn authorize_caller(
    policy: &AccessPolicy,
    labels: &Labels<'_>,
    directory: &DirectorySnapshot,
    caller: Caller<'_>,
    action: Action<'_>,
) -> Result<(), Refusal> {
    match caller {
        Caller::Person(person) => authorize(policy, labels, directory, person, action),
        Caller::Token { person, scopes } => {
            let needed = Scope::needed_for(&action);
            if !scopes.contains(&needed) {
                return Err(Refusal::Forbidden(format!(
                    "this token lacks the scope {needed}"
                )));
            }
            match person {
                Some(person) => authorize(policy, labels, directory, person, action),
                None if needed.reads_only() => Ok(()),
                None => Err(Refusal::Forbidden(
                    "a token that acts as no person may only read".into(),
                )),
            }
        }
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
