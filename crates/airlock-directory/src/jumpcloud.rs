//! JumpCloud directory source: reads people from the v1 API (`GET /api/systemusers`) and groups
//! from the v2 API (`GET /api/v2/usergroups`, `GET /api/v2/usergroups/{group_id}/members`),
//! exactly as JumpCloud's published Swagger descriptions document them.
//!
//! What it does:
//! - pages through every list (`skip`/`limit`, v2 `Link: <...>; rel="next"` when present),
//!   sorted on a unique key where the operation declares `sort`, so pages stay stable;
//! - retries 429 (honouring `Retry-After`, capped), 5xx, timeouts, resets and damaged bodies
//!   with exponential backoff and jitter, up to `max_retries`;
//! - refuses to hand over anything but a complete read: a short page in the middle, a changing
//!   `totalCount`, a member that is not a listed user, a member that is not a user, a duplicate
//!   or a malformed answer is an error, never a smaller snapshot.
//!
//! What it does not do: write to JumpCloud, read devices or applications, or decide what anybody
//! gets in Airflow.
//!
//! Nested groups: JumpCloud user groups hold only users. The spec's
//! `GraphOperation-UserGroup-Member` (the body of `POST /usergroups/{group_id}/members`) allows
//! member type `user` and nothing else, so a user group's direct members are all its members and
//! `/members` (small `GraphConnection` objects) answers the same set as the transitive
//! `/membership` (`GraphObjectWithPaths`). A member of any other type means JumpCloud changed
//! underneath us and fails the read, rather than being guessed at.

pub mod insights;
mod transport;
mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use airlock_core::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};
use futures::{StreamExt, TryStreamExt};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use self::transport::Transport;
use self::wire::{GraphConnection, SystemUser, SystemUsersList, UserGroup};

pub use self::transport::{API_KEY_HEADER, ORG_ID_HEADER};

/// JumpCloud's default (US) console, the base of both APIs.
pub const DEFAULT_BASE_URL: &str = "https://console.jumpcloud.com";
/// JumpCloud's EU data centre.
pub const EU_BASE_URL: &str = "https://console.eu.jumpcloud.com";
/// JumpCloud's India data centre.
pub const INDIA_BASE_URL: &str = "https://console.in.jumpcloud.com";
/// The largest page JumpCloud serves ("Limited to 100").
pub const MAX_PAGE_SIZE: u32 = 100;

/// v1 list of system users.
const USERS_PATH: &[&str] = &["api", "systemusers"];
/// v2 list of user groups.
const GROUPS_PATH: &[&str] = &["api", "v2", "usergroups"];
/// The fields a person needs; v1 `fields` is space separated.
const USER_FIELDS: &str =
    "_id username email firstname lastname state suspended activated account_locked";
/// v1 `sort`: the unique id, so skip/limit pages do not shift.
const USER_SORT: &str = "_id";
/// v2 `fields` is a comma separated array.
const GROUP_FIELDS: &str = "id,name";
/// v2 `sort`: group names are unique in an organisation.
const GROUP_SORT: &str = "name";
/// How many groups' member lists are read at once.
const MEMBER_READS_IN_FLIGHT: usize = 4;

/// A JumpCloud data centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// The default console (US): `https://console.jumpcloud.com`.
    Us,
    /// The EU data centre: `https://console.eu.jumpcloud.com`.
    Eu,
    /// The India data centre: `https://console.in.jumpcloud.com`.
    India,
}

/// The console base URL of a JumpCloud data centre.
pub fn region_base_url(region: Region) -> Url {
    let url = match region {
        Region::Us => DEFAULT_BASE_URL,
        Region::Eu => EU_BASE_URL,
        Region::India => INDIA_BASE_URL,
    };
    Url::parse(url).expect("invariant: region base urls are valid")
}

/// How to reach and read one JumpCloud organisation.
#[derive(Debug, Clone)]
pub struct JumpCloudSettings {
    /// An administrator's API key, sent as `x-api-key`; never logged or printed.
    pub api_key: SecretString,
    /// The organisation id, sent as `x-org-id`; required for multi-tenant administrators.
    pub org_id: Option<String>,
    /// The console base URL ([`region_base_url`]); `https`, or `http` on a loopback address.
    pub base_url: Url,
    /// Limit for one HTTP request, connect to last body byte.
    pub timeout: Duration,
    /// Retries of one request after a transient failure (0: try once).
    pub max_retries: u32,
    /// First backoff delay; doubles on every retry, with jitter, capped at 30 s.
    pub retry_base: Duration,
    /// Items a page, 1 to [`MAX_PAGE_SIZE`].
    pub page_size: u32,
    /// Only these groups (exact names); `None` reads every group.
    pub group_filter: Option<Vec<String>>,
}

impl JumpCloudSettings {
    /// Settings for the default console with sensible limits: 30 s timeout, 5 retries from
    /// 500 ms, pages of 100, every group.
    pub fn new(api_key: SecretString) -> Self {
        Self {
            api_key,
            org_id: None,
            base_url: region_base_url(Region::Us),
            timeout: Duration::from_secs(30),
            max_retries: 5,
            retry_base: Duration::from_millis(500),
            page_size: MAX_PAGE_SIZE,
            group_filter: None,
        }
    }
}

/// A failed JumpCloud read. Messages name the endpoint (a path, never a key), what failed and
/// whether trying again later can help.
#[derive(Debug, thiserror::Error)]
pub enum JumpCloudError {
    /// A setting cannot work.
    #[error("jumpcloud settings: {field}: {reason}")]
    InvalidSettings {
        /// The setting.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS roots).
    #[error("jumpcloud: building the http client failed")]
    BuildClient {
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// JumpCloud answered 401 or 403: the key (or org id) is wrong or lacks rights.
    #[error("jumpcloud {endpoint}: api key rejected (http {status}, permanent)")]
    KeyRejected {
        /// Method and path.
        endpoint: String,
        /// 401 or 403.
        status: u16,
    },
    /// The request did not complete: timeout, refused or reset connection, cut body.
    #[error("jumpcloud {endpoint}: {cause} after {attempts} attempt(s) ({})", class(*.transient))]
    RequestFailed {
        /// Method and path.
        endpoint: String,
        /// What went wrong, in a few words.
        cause: &'static str,
        /// Attempts made.
        attempts: u32,
        /// Whether trying later can help.
        transient: bool,
        /// The transport error (without the URL).
        #[source]
        source: reqwest::Error,
    },
    /// JumpCloud answered an error status (429 and 5xx are transient).
    #[error("jumpcloud {endpoint}: server answered http {status} after {attempts} attempt(s) ({})",
        class(status_is_transient(*.status)))]
    BadStatus {
        /// Method and path.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The body was not the JSON the API documents.
    #[error("jumpcloud {endpoint}: malformed answer after {attempts} attempt(s): {detail} ({})",
        class(*.transient))]
    MalformedBody {
        /// Method and path.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The parser's complaint.
        detail: String,
        /// Damaged JSON (transient) or the wrong shape (permanent).
        transient: bool,
    },
    /// The directory changed or paging went wrong while reading; a later read can succeed.
    #[error("jumpcloud {endpoint}: incomplete read: {reason} (transient)")]
    IncompleteRead {
        /// Method and path.
        endpoint: String,
        /// What did not add up.
        reason: String,
    },
    /// JumpCloud answered something this source does not understand.
    #[error("jumpcloud {endpoint}: unexpected answer: {reason} (permanent)")]
    UnexpectedAnswer {
        /// Method and path.
        endpoint: String,
        /// What was unexpected.
        reason: String,
    },
}

impl JumpCloudError {
    /// Whether the same read may succeed later (timeouts, 429, 5xx, a directory changing
    /// mid-read); `false` for rejected keys, bad settings and answers this source does not
    /// understand.
    pub fn is_transient(&self) -> bool {
        match self {
            JumpCloudError::InvalidSettings { .. }
            | JumpCloudError::BuildClient { .. }
            | JumpCloudError::KeyRejected { .. }
            | JumpCloudError::UnexpectedAnswer { .. } => false,
            JumpCloudError::RequestFailed { transient, .. }
            | JumpCloudError::MalformedBody { transient, .. } => *transient,
            JumpCloudError::BadStatus { status, .. } => status_is_transient(*status),
            JumpCloudError::IncompleteRead { .. } => true,
        }
    }
}

fn class(transient: bool) -> &'static str {
    if transient {
        "transient"
    } else {
        "permanent"
    }
}

fn status_is_transient(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// A configured JumpCloud organisation, ready to read.
#[derive(Debug)]
pub struct JumpCloudSource {
    base_url: Url,
    org_id: Option<String>,
    page_size: u32,
    group_filter: Option<BTreeSet<String>>,
    /// Boxed: the client, key and counters; keeps `Source` small.
    transport: Box<Transport>,
}

impl JumpCloudSource {
    /// Checks the settings and builds the HTTP client; contacts nothing.
    pub fn new(settings: JumpCloudSettings) -> Result<Self, JumpCloudError> {
        let invalid = |field, reason: &str| JumpCloudError::InvalidSettings {
            field,
            reason: reason.to_owned(),
        };
        if settings.page_size == 0 || settings.page_size > MAX_PAGE_SIZE {
            return Err(invalid(
                "page_size",
                "must be between 1 and 100 (jumpcloud serves at most 100 items a page)",
            ));
        }
        if settings.timeout.is_zero() {
            return Err(invalid("timeout", "must be longer than zero"));
        }
        let key = settings.api_key.expose_secret();
        if key.trim().is_empty() {
            return Err(invalid(
                "api_key",
                "is empty; set the administrator's api key",
            ));
        }
        if reqwest::header::HeaderValue::from_str(key).is_err() {
            return Err(invalid(
                "api_key",
                "holds characters an http header cannot carry",
            ));
        }
        if let Some(org) = &settings.org_id {
            if org.trim().is_empty() || reqwest::header::HeaderValue::from_str(org).is_err() {
                return Err(invalid(
                    "org_id",
                    "must be a non-empty organisation id; leave it unset for single-tenant keys",
                ));
            }
        }
        let base_url = check_base_url(settings.base_url)?;
        let group_filter = match settings.group_filter {
            Some(names) if names.is_empty() => {
                return Err(invalid(
                    "group_filter",
                    "is empty; list group names, or leave it unset to read every group",
                ))
            }
            Some(names) => Some(names.into_iter().collect()),
            None => None,
        };
        let transport = Box::new(Transport::new(
            settings.api_key,
            settings.org_id.as_deref(),
            settings.timeout,
            settings.max_retries,
            settings.retry_base,
        )?);
        Ok(Self {
            base_url,
            org_id: settings.org_id,
            page_size: settings.page_size,
            group_filter,
            transport,
        })
    }

    /// A short description for messages (`jumpcloud https://console.jumpcloud.com`).
    pub fn describe(&self) -> String {
        let base = self.base_url.as_str().trim_end_matches('/');
        match &self.org_id {
            Some(org) => format!("jumpcloud {base} (org {org})"),
            None => format!("jumpcloud {base}"),
        }
    }

    /// HTTP requests made so far (every attempt counts), for measurements.
    pub fn calls(&self) -> u64 {
        self.transport.calls()
    }

    /// Reads every person and every (selected) group with its members; all or nothing.
    pub async fn read(&self) -> Result<DirectorySnapshot, JumpCloudError> {
        let (users, groups) = tokio::try_join!(self.list_users(), self.list_groups())?;
        let groups = self.select_groups(groups);
        let memberships: Vec<(UserGroup, Vec<String>)> = futures::stream::iter(groups)
            .map(|group| async move {
                let members = self.list_members(&group).await?;
                Ok::<_, JumpCloudError>((group, members))
            })
            .buffer_unordered(MEMBER_READS_IN_FLIGHT)
            .try_collect()
            .await?;
        self.assemble(users, memberships)
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)], skip: u64) -> Url {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("invariant: base url checked to be a base")
            .pop_if_empty()
            .extend(segments);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("limit", &self.page_size.to_string());
            pairs.append_pair("skip", &skip.to_string());
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        url
    }

    /// `GET /api/systemusers`: pages until `totalCount`, which must not move.
    async fn list_users(&self) -> Result<Vec<SystemUser>, JumpCloudError> {
        let limit = u64::from(self.page_size);
        let query = [("sort", USER_SORT), ("fields", USER_FIELDS)];
        let endpoint = transport::endpoint_of(&self.url(USERS_PATH, &[], 0));
        let incomplete = |reason: String| JumpCloudError::IncompleteRead {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut users: Vec<SystemUser> = Vec::new();
        let mut first_total: Option<u64> = None;
        let mut skip = 0u64;
        loop {
            let url = self.url(USERS_PATH, &query, skip);
            let page: SystemUsersList = self.transport.get(&url).await?.body;
            if let Some(before) = first_total.filter(|t| *t != page.total_count) {
                return Err(incomplete(format!(
                    "totalCount changed from {before} to {} while paging",
                    page.total_count
                )));
            }
            let total = *first_total.get_or_insert(page.total_count);
            let got = page.results.len() as u64;
            if got > limit {
                return Err(JumpCloudError::UnexpectedAnswer {
                    endpoint: endpoint.clone(),
                    reason: format!("page of {got} users exceeds limit {limit}"),
                });
            }
            users.extend(page.results);
            skip += got;
            if skip > total {
                return Err(incomplete(format!(
                    "{skip} users listed but totalCount is {total}"
                )));
            }
            if skip == total {
                break;
            }
            if got < limit {
                return Err(incomplete(format!(
                    "short page: {got} of {limit} users at skip {} with totalCount {total}",
                    skip - got
                )));
            }
        }
        Ok(users)
    }

    /// `GET /api/v2/usergroups`: every group, sorted by name.
    async fn list_groups(&self) -> Result<Vec<UserGroup>, JumpCloudError> {
        let query = [("sort", GROUP_SORT), ("fields", GROUP_FIELDS)];
        let groups: Vec<UserGroup> = self.list_v2(GROUPS_PATH, &query).await?;
        let endpoint = transport::endpoint_of(&self.url(GROUPS_PATH, &[], 0));
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for group in &groups {
            if !ids.insert(group.id.as_str()) {
                return Err(JumpCloudError::IncompleteRead {
                    endpoint,
                    reason: format!("group {} listed twice (pages shifted)", group.id),
                });
            }
            if !names.insert(group.name.as_str()) {
                return Err(JumpCloudError::UnexpectedAnswer {
                    endpoint,
                    reason: format!("two groups are named {:?}", group.name),
                });
            }
        }
        Ok(groups)
    }

    /// `GET /api/v2/usergroups/{group_id}/members`: the user ids of one group.
    async fn list_members(&self, group: &UserGroup) -> Result<Vec<String>, JumpCloudError> {
        let path = ["api", "v2", "usergroups", group.id.as_str(), "members"];
        let endpoint = transport::endpoint_of(&self.url(&path, &[], 0));
        let members: Vec<GraphConnection> = match self.list_v2(&path, &[]).await {
            Err(JumpCloudError::BadStatus { status: 404, .. }) => {
                return Err(JumpCloudError::IncompleteRead {
                    endpoint,
                    reason: format!("group {:?} disappeared while reading", group.name),
                })
            }
            other => other?,
        };
        let mut seen = HashSet::new();
        let mut ids = Vec::with_capacity(members.len());
        for member in members {
            if member.to.kind != "user" {
                return Err(JumpCloudError::UnexpectedAnswer {
                    endpoint,
                    reason: format!(
                        "group {:?} has a member of type {:?}; user groups hold only users",
                        group.name, member.to.kind
                    ),
                });
            }
            if !seen.insert(member.to.id.clone()) {
                return Err(JumpCloudError::IncompleteRead {
                    endpoint,
                    reason: format!(
                        "member {} of group {:?} listed twice (pages shifted)",
                        member.to.id, group.name
                    ),
                });
            }
            ids.push(member.to.id);
        }
        Ok(ids)
    }

    /// Pages a v2 list: follows `Link: rel="next"` when present, else asks for the next
    /// `skip` until a short page.
    async fn list_v2<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, JumpCloudError> {
        let limit = u64::from(self.page_size);
        let mut url = self.url(segments, query, 0);
        let endpoint = transport::endpoint_of(&url);
        let mut followed = HashSet::new();
        let mut items = Vec::new();
        let mut skip = 0u64;
        loop {
            let answer = self.transport.get::<Vec<T>>(&url).await?;
            let got = answer.body.len() as u64;
            if got > limit {
                return Err(JumpCloudError::UnexpectedAnswer {
                    endpoint,
                    reason: format!("page of {got} items exceeds limit {limit}"),
                });
            }
            items.extend(answer.body);
            skip += got;
            match answer.next {
                Some(next) => {
                    if got < limit {
                        return Err(JumpCloudError::IncompleteRead {
                            endpoint,
                            reason: format!(
                                "short page: {got} of {limit} items at skip {} although a next \
                                 page is linked",
                                skip - got
                            ),
                        });
                    }
                    self.check_next_link(&endpoint, &url, &next, skip)?;
                    if !followed.insert(next.clone()) {
                        return Err(JumpCloudError::UnexpectedAnswer {
                            endpoint,
                            reason: "next links go round in a loop".to_owned(),
                        });
                    }
                    url = next;
                }
                None if got < limit => return Ok(items),
                None => url = self.url(segments, query, skip),
            }
        }
    }

    /// A next link must stay on the same origin and path (the key goes with it) and continue
    /// where this page ended.
    fn check_next_link(
        &self,
        endpoint: &str,
        current: &Url,
        next: &Url,
        skip: u64,
    ) -> Result<(), JumpCloudError> {
        let same_place = next.scheme() == current.scheme()
            && next.host_str() == current.host_str()
            && next.port_or_known_default() == current.port_or_known_default()
            && next.path() == current.path();
        if !same_place {
            return Err(JumpCloudError::UnexpectedAnswer {
                endpoint: endpoint.to_owned(),
                reason: format!(
                    "next link leaves the endpoint (to {}{})",
                    next.origin().ascii_serialization(),
                    next.path()
                ),
            });
        }
        let linked_skip = next
            .query_pairs()
            .find(|(name, _)| name == "skip")
            .map(|(_, value)| value.parse::<u64>());
        match linked_skip {
            Some(Ok(linked)) if linked != skip => Err(JumpCloudError::IncompleteRead {
                endpoint: endpoint.to_owned(),
                reason: format!("next link continues at skip {linked}, expected {skip}"),
            }),
            Some(Err(_)) => Err(JumpCloudError::UnexpectedAnswer {
                endpoint: endpoint.to_owned(),
                reason: "next link has a non-numeric skip".to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Keeps the groups named in `group_filter` (all when unset).
    fn select_groups(&self, groups: Vec<UserGroup>) -> Vec<UserGroup> {
        let Some(wanted) = &self.group_filter else {
            return groups;
        };
        let selected: Vec<UserGroup> = groups
            .into_iter()
            .filter(|g| wanted.contains(&g.name))
            .collect();
        let found: HashSet<&str> = selected.iter().map(|g| g.name.as_str()).collect();
        for missing in wanted.iter().filter(|w| !found.contains(w.as_str())) {
            tracing::warn!(
                source = %self.describe(),
                group = %missing,
                "group named in group_filter does not exist in jumpcloud"
            );
        }
        selected
    }

    fn assemble(
        &self,
        users: Vec<SystemUser>,
        memberships: Vec<(UserGroup, Vec<String>)>,
    ) -> Result<DirectorySnapshot, JumpCloudError> {
        let users_endpoint = transport::endpoint_of(&self.url(USERS_PATH, &[], 0));
        let mut people = BTreeMap::new();
        for user in users {
            let person = person_of(user).map_err(|reason| JumpCloudError::UnexpectedAnswer {
                endpoint: users_endpoint.clone(),
                reason,
            })?;
            let id = person.id.clone();
            if people.insert(id.clone(), person).is_some() {
                return Err(JumpCloudError::IncompleteRead {
                    endpoint: users_endpoint,
                    reason: format!("user {id} listed twice (pages shifted)"),
                });
            }
        }
        let mut groups = BTreeSet::new();
        let mut index: HashMap<String, PersonId> = HashMap::new();
        for id in people.keys() {
            index.insert(id.0.clone(), id.clone());
        }
        for (group, members) in memberships {
            let name = GroupName(group.name);
            for member in members {
                let person = index
                    .get(&member)
                    .and_then(|id| people.get_mut(id))
                    .ok_or_else(|| JumpCloudError::IncompleteRead {
                        endpoint: transport::endpoint_of(&self.url(
                            &["api", "v2", "usergroups", &group.id, "members"],
                            &[],
                            0,
                        )),
                        reason: format!(
                            "member {member} of group {:?} is not among the listed users",
                            name.0
                        ),
                    })?;
                person.groups.insert(name.clone());
            }
            groups.insert(name);
        }
        Ok(DirectorySnapshot { people, groups })
    }
}

/// `https` anywhere; plain `http` only to a loopback address (tests, local proxies).
pub(crate) fn check_base_url(mut url: Url) -> Result<Url, JumpCloudError> {
    let invalid = |reason: &str| JumpCloudError::InvalidSettings {
        field: "base_url",
        reason: reason.to_owned(),
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                "must use https (the api key travels in a header); http is allowed only for \
                 loopback addresses",
            ))
        }
        _ => {
            return Err(invalid(
                "must be an https url such as https://console.jumpcloud.com",
            ))
        }
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid(
            "must be an https url such as https://console.jumpcloud.com",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials; set api_key instead"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Maps one system user; `Err` names what cannot be understood.
fn person_of(user: SystemUser) -> Result<Person, String> {
    if user.username.trim().is_empty() {
        return Err(format!("user {} has no username", user.id));
    }
    let status = status_of(&user)?;
    let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    Ok(Person {
        id: PersonId(user.id),
        username: user.username,
        email: non_empty(user.email),
        first_name: non_empty(user.firstname),
        last_name: non_empty(user.lastname),
        status,
        groups: BTreeSet::new(),
    })
}

/// Active only when activated (state `ACTIVATED`, or no state and `activated`) and neither
/// suspended nor locked; `STAGED` is staged; everything else is suspended.
fn status_of(user: &SystemUser) -> Result<PersonStatus, String> {
    let suspended = user.suspended.unwrap_or(false);
    let locked = user.account_locked.unwrap_or(false);
    let activated = match user.state.as_deref() {
        Some("ACTIVATED") => true,
        Some("SUSPENDED") => false,
        Some("STAGED") if !suspended && !locked => return Ok(PersonStatus::Staged),
        Some("STAGED") => false,
        Some(other) => {
            return Err(format!("user {} has unknown state {other:?}", user.id));
        }
        None => user.activated.unwrap_or(false),
    };
    if activated && !suspended && !locked {
        Ok(PersonStatus::Active)
    } else {
        Ok(PersonStatus::Suspended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(state: Option<&str>, suspended: bool, activated: bool, locked: bool) -> SystemUser {
        SystemUser {
            id: "u1".to_owned(),
            username: "ada".to_owned(),
            email: None,
            firstname: None,
            lastname: None,
            state: state.map(str::to_owned),
            suspended: Some(suspended),
            activated: Some(activated),
            account_locked: Some(locked),
        }
    }

    #[test]
    fn status_is_active_only_when_activated_and_neither_suspended_nor_locked() {
        use PersonStatus::*;
        let cases = [
            (Some("ACTIVATED"), false, true, false, Active),
            (Some("ACTIVATED"), true, true, false, Suspended),
            (Some("ACTIVATED"), false, true, true, Suspended),
            (Some("SUSPENDED"), true, true, false, Suspended),
            (Some("SUSPENDED"), false, true, false, Suspended),
            (Some("STAGED"), false, false, false, Staged),
            (Some("STAGED"), false, false, true, Suspended),
            (None, false, true, false, Active),
            (None, false, false, false, Suspended),
            (None, false, true, true, Suspended),
        ];
        for (state, suspended, activated, locked, want) in cases {
            let got =
                status_of(&user(state, suspended, activated, locked)).expect("test input is valid");
            assert_eq!(
                got, want,
                "{state:?} suspended={suspended} activated={activated} locked={locked}"
            );
        }
        assert!(status_of(&user(Some("ARCHIVED"), false, true, false)).is_err());
    }

    #[test]
    fn base_url_must_be_https_unless_loopback() {
        let ok = |s: &str| check_base_url(Url::parse(s).expect("test input is valid"));
        assert_eq!(
            ok("https://console.jumpcloud.com")
                .expect("test input is valid")
                .as_str(),
            "https://console.jumpcloud.com/"
        );
        assert_eq!(
            ok("http://127.0.0.1:8080/jc")
                .expect("test input is valid")
                .as_str(),
            "http://127.0.0.1:8080/jc/"
        );
        assert!(ok("http://console.jumpcloud.com").is_err());
        assert!(ok("https://user:pw@console.jumpcloud.com").is_err());
        assert!(ok("https://console.jumpcloud.com/?x=1").is_err());
        assert!(ok("ftp://console.jumpcloud.com").is_err());
    }

    #[test]
    fn region_presets_name_the_data_centres() {
        assert_eq!(
            region_base_url(Region::Us).as_str(),
            "https://console.jumpcloud.com/"
        );
        assert_eq!(
            region_base_url(Region::Eu).as_str(),
            "https://console.eu.jumpcloud.com/"
        );
        assert_eq!(
            region_base_url(Region::India).as_str(),
            "https://console.in.jumpcloud.com/"
        );
    }

    #[test]
    fn urls_carry_paging_and_a_percent_encoded_group_id() {
        let mut settings = JumpCloudSettings::new(SecretString::from("k".to_owned()));
        settings.base_url = Url::parse("http://127.0.0.1:9/prefix").expect("test input is valid");
        settings.page_size = 50;
        let source = JumpCloudSource::new(settings).expect("test input is valid");
        let url = source.url(&["api", "v2", "usergroups", "a/b", "members"], &[], 100);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/api/v2/usergroups/a%2Fb/members?limit=50&skip=100"
        );
        let url = source.url(USERS_PATH, &[("fields", "_id username")], 0);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/prefix/api/systemusers?limit=50&skip=0&fields=_id+username"
        );
    }
}
