//! What the API reads and writes: the JSON bodies, with their OpenAPI schemas. Views are built
//! from the core's types and hold nothing the caller may not see (never a secret).

use airlock_core::access::{AccessRequest, Approval, State};
use airlock_core::directory::Person;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A page of items and the cursor of the next one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// Pass as `after` to read the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    /// Who approved (directory id).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Their comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl From<&Approval> for ApprovalView {
    fn from(a: &Approval) -> Self {
        ApprovalView {
            by: a.by.0.clone(),
            at: a.at,
            comment: a.comment.clone(),
        }
    }
}

/// A just-in-time access request, and the grant it became.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    /// Its id.
    pub id: String,
    /// `pending`, `approved`, `denied`, `cancelled`, `lapsed`, `revoked` or `expired`.
    pub state: String,
    /// Who asked (directory id).
    pub requester: String,
    /// The roles asked for.
    pub roles: Vec<String>,
    /// The instances.
    pub instances: Vec<String>,
    /// How long the grant lasts once approved, in seconds.
    pub duration_secs: i64,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A ticket reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The grant this one extends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it lapses if nobody decides.
    pub pending_until: DateTime<Utc>,
    /// Approvals so far.
    pub approvals: Vec<ApprovalView>,
    /// When it became a grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    /// When the grant ends (or ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Approved by its rule, not by people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_approved: Option<bool>,
    /// Who denied or revoked it (absent when a leaver's grant was revoked by airlock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When it was denied, cancelled, lapsed or revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The denial's or revocation's comment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether it is a grant in force now.
    pub active: bool,
}

impl RequestView {
    /// The view of `r` at `now`.
    pub fn of(r: &AccessRequest, now: DateTime<Utc>) -> RequestView {
        let mut v = RequestView {
            id: r.id.0.clone(),
            state: r.state.name().into(),
            requester: r.requester.0.clone(),
            roles: r.roles.iter().map(|x| x.as_str().to_owned()).collect(),
            instances: r.instances.iter().map(|x| x.as_str().to_owned()).collect(),
            duration_secs: r.duration_secs,
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            extends: r.extends.as_ref().map(|e| e.0.clone()),
            created_at: r.created_at,
            pending_until: r.pending_until,
            approvals: r.approvals.iter().map(ApprovalView::from).collect(),
            approved_at: None,
            expires_at: None,
            auto_approved: None,
            decided_by: None,
            ended_at: None,
            comment: None,
            active: r.active_at(now).is_some(),
        };
        match &r.state {
            State::Pending => {}
            State::Approved {
                approved_at,
                expires_at,
                auto,
            } => {
                v.approved_at = Some(*approved_at);
                v.expires_at = Some(*expires_at);
                v.auto_approved = Some(*auto);
            }
            State::Denied { by, at, comment } => {
                v.decided_by = Some(by.0.clone());
                v.ended_at = Some(*at);
                v.comment.clone_from(comment);
            }
            State::Cancelled { at } | State::Lapsed { at } => v.ended_at = Some(*at),
            State::Revoked {
                by,
                at,
                comment,
                approved_at,
            } => {
                v.decided_by = by.as_ref().map(|b| b.0.clone());
                v.ended_at = Some(*at);
                v.comment.clone_from(comment);
                v.approved_at = Some(*approved_at);
            }
            State::Expired {
                approved_at,
                expires_at,
            } => {
                v.approved_at = Some(*approved_at);
                v.expires_at = Some(*expires_at);
            }
        }
        v
    }
}

/// What a person asks for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The roles.
    pub roles: Vec<String>,
    /// Instances by name.
    #[serde(default)]
    pub instances: Vec<String>,
    /// Instances by labels: every instance carrying all of them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// For how long: `30m`, `2h`, `1h30m` (default: the rule's).
    pub duration: Option<String>,
    /// Why (required where the rule says so).
    pub reason: Option<String>,
    /// A ticket reference.
    pub ticket: Option<String>,
}

/// An approver's or revoker's decision.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// A comment for the record.
    pub comment: Option<String>,
}

/// An extension of a grant: a new request for the same roles and instances.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Extension {
    /// For how long (default: the rule's).
    pub duration: Option<String>,
    /// Why (default: the grant's reason).
    pub reason: Option<String>,
}

/// A person in the directory.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonView {
    /// Directory id.
    pub id: String,
    /// Directory username.
    pub username: String,
    /// Email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name (given and family names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `active`, `suspended` or `staged`.
    pub status: String,
    /// Every group, nested ones included.
    pub groups: Vec<String>,
}

impl From<&Person> for PersonView {
    fn from(p: &Person) -> Self {
        let name = [p.first_name.as_deref(), p.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        PersonView {
            id: p.id.0.clone(),
            username: p.username.clone(),
            email: p.email.clone(),
            name: (!name.is_empty()).then_some(name),
            status: serde_json::to_value(p.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            groups: p.groups.iter().map(|g| g.0.clone()).collect(),
        }
    }
}

/// Who the caller is and what they may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// `person` (signed in with the identity provider) or `token` (an airlock API token).
    pub kind: String,
    /// The person acting, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<PersonView>,
    /// The API token's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The API token's scopes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The groups the identity provider's token claims (rights come from the directory).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_groups: Vec<String>,
    /// May read every request and grant.
    pub reads_all_requests: bool,
    /// May read people, accounts and instances.
    pub reads_directory: bool,
    /// May read the audit trail.
    pub reads_audit: bool,
}

/// A configured Airflow instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView {
    /// airlock's name for it.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// When its last complete inventory was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_inventory_at: Option<DateTime<Utc>>,
    /// Accounts in that inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<usize>,
    /// The Airflow version it reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub airflow_version: Option<String>,
}

/// An Airflow account, as its instance's last complete inventory saw it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Whether FAB lets it sign in.
    pub active: bool,
    /// Last sign-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login: Option<DateTime<Utc>>,
}

/// A page of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Events in chain order, as stored (each as `airlock audit export --format jsonl` writes it).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// Pass as `after` to read on; absent at the end of the trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What one instance's answer to "who had access then" rests on: observations of its roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpanView {
    /// The first observation that found this access.
    pub from: DateTime<Utc>,
    /// The last one.
    pub to: DateTime<Utc>,
    /// How many observations found it.
    pub observations: u64,
    /// What made the first (`snapshot:<id>`).
    pub first_source: String,
    /// What made the last.
    pub last_source: String,
}

impl From<&airlock_core::history::Span> for SpanView {
    fn from(s: &airlock_core::history::Span) -> Self {
        SpanView {
            from: s.from,
            to: s.to,
            observations: s.observations,
            first_source: s.first_source.clone(),
            last_source: s.last_source.clone(),
        }
    }
}

/// One instance's evidence.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceView {
    /// The instance.
    pub instance: String,
    /// The observations at or before the moment; absent when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<SpanView>,
    /// The next observations, when the moment falls between two that differ (or after the
    /// last one of `before` and before these).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<SpanView>,
}

/// One account's access on one instance at the moment asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRowView {
    /// The instance.
    pub instance: String,
    /// The Airflow username.
    pub username: String,
    /// Its email.
    pub email: String,
    /// The roles held (as observed at or before the moment).
    pub roles: Vec<String>,
    /// Whether it could log in.
    pub active: bool,
    /// `observed` (seen so before and after, or at, the moment), `last_observed` (after the
    /// newest observation) or `changed_in_gap` (the observations either side differ).
    pub certainty: String,
    /// For `changed_in_gap`: the roles the next observation found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_roles: Option<Vec<String>>,
}

/// Who had access at a moment.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessAtView {
    /// The moment.
    pub at: DateTime<Utc>,
    /// Per instance, what the answer rests on.
    pub evidence: Vec<EvidenceView>,
    /// Every account that held a role, or whose access changed in a gap.
    pub items: Vec<AccessRowView>,
}

impl From<&airlock_engine::history::AccessAt> for AccessAtView {
    fn from(a: &airlock_engine::history::AccessAt) -> Self {
        use airlock_core::history::Certainty;
        let names = |r: &std::collections::BTreeSet<airlock_core::RoleName>| {
            r.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>()
        };
        AccessAtView {
            at: a.at,
            evidence: (a.evidence.iter())
                .map(|e| EvidenceView {
                    instance: e.instance.clone(),
                    before: e.before.as_ref().map(SpanView::from),
                    next: e.next.as_ref().map(SpanView::from),
                })
                .collect(),
            items: (a.rows.iter())
                .map(|r| AccessRowView {
                    instance: r.instance.clone(),
                    username: r.username.as_str().to_owned(),
                    email: r.email.clone(),
                    roles: names(&r.roles),
                    active: r.active,
                    certainty: match r.certainty {
                        Certainty::Observed => "observed",
                        Certainty::LastObserved => "last_observed",
                        Certainty::ChangedInGap => "changed_in_gap",
                    }
                    .to_owned(),
                    next_roles: r.next_roles.as_ref().map(names),
                })
                .collect(),
        }
    }
}
