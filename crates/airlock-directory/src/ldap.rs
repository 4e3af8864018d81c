//! The LDAP source: reads people and groups over LDAP, LDAPS or StartTLS from OpenLDAP,
//! JumpCloud's LDAP-as-a-Service or Active Directory, and turns them into a complete
//! [`DirectorySnapshot`].
//!
//! One read is: connect (TCP, then TLS for `ldaps://` or StartTLS), simple bind, a paged
//! subtree search for people (RFC 2696 Simple Paged Results, [`LdapSettings::page_size`] per
//! page), a paged subtree search for groups, unbind. Membership comes either from the groups'
//! `member` lists ([`Membership::GroupMember`]) or from the people's `memberOf`
//! ([`Membership::MemberOf`]); groups that are members of groups count transitively, cycles
//! included.
//!
//! Completeness is the rule: a size, time or administrative limit, a referral, a page that
//! fails midway or an attribute sent in ranges fails the read ([`ErrorKind::Incomplete`]);
//! nothing here returns fewer people than the directory holds. Transient failures to connect
//! or bind (refused, timed out, busy, unavailable) are retried a few times with a short
//! backoff; searches are not retried (the next run reads again).
//!
//! Security: values airlock puts into a filter are escaped per RFC 4515
//! ([`equality_filter`]) and into a DN per RFC 4514 ([`LdapSettings::jumpcloud`]); configured
//! filters and base DNs are the administrator's own syntax and are only validated. The bind
//! password lives in a [`SecretString`] and appears in no message or log.
//!
//! What it does not do: follow referrals, SASL binds or client certificates, Active Directory
//! range retrieval (use `memberOf` with AD, as [`LdapSettings::active_directory`] does), or
//! writes of any kind.

mod dn;
mod error;
mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use airlock_core::directory::DirectorySnapshot;
use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use self::error::{result_name, ErrorClass, ErrorKind, LdapError, Operation};
use self::snapshot::Entry;

/// The default page size: small enough for every server's limit (AD's is 1000).
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// The default timeout of connecting and of each server response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default number of extra attempts at a transient connect or bind failure.
pub const DEFAULT_RETRIES: u32 = 2;

/// First retry delay; doubles per retry, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// JumpCloud's LDAP-as-a-Service endpoint.
pub const JUMPCLOUD_URL: &str = "ldaps://ldap.jumpcloud.com:636";

/// How membership is recorded in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Groups list their members' DNs (`groupOfNames`/`member`, AD `group`/`member`); a member
    /// that is itself a group contributes its members.
    GroupMember {
        /// The group attribute holding member DNs (`member`; `uniqueMember` for
        /// `groupOfUniqueNames`).
        member_attr: String,
    },
    /// People (and nested groups) list the DNs of the groups they are in (`memberOf`, from the
    /// OpenLDAP memberof overlay, JumpCloud or AD).
    MemberOf {
        /// The attribute holding group DNs (`memberOf`).
        attr: String,
    },
}

impl Default for Membership {
    fn default() -> Self {
        Membership::GroupMember {
            member_attr: "member".into(),
        }
    }
}

/// How to tell that a person is disabled ([`airlock_core::directory::PersonStatus::Suspended`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Disabled {
    /// The directory has no notion of it: everyone read is active.
    #[default]
    Never,
    /// Active Directory: bit 0x2 (ACCOUNTDISABLE) of `userAccountControl`; a value that is not
    /// a number counts as disabled.
    UserAccountControl,
    /// Disabled when the attribute has any value (`pwdAccountLockedTime` of the OpenLDAP
    /// password policy, as JumpCloud and OpenLDAP lock accounts).
    Present {
        /// The attribute.
        attr: String,
    },
    /// Disabled when the attribute has one of these values (case-insensitive), e.g.
    /// `employeeType` in `suspended`, `terminated`.
    ValueIn {
        /// The attribute.
        attr: String,
        /// The values that mean disabled.
        values: Vec<String>,
    },
}

/// How the id attribute's value becomes a [`airlock_core::directory::PersonId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdFormat {
    /// The value as text (`entryUUID`, `uid`, `nsUniqueId`).
    #[default]
    Text,
    /// A 16-byte binary GUID in Microsoft's text form (AD `objectGUID`:
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as PowerShell shows it).
    Guid,
    /// Any binary value as lowercase hex.
    Hex,
}

/// Everything needed to read one LDAP directory.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// The server: `ldap://host[:389]` or `ldaps://host[:636]`, no credentials or path.
    pub url: Url,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// Extra CA certificates (PEM) to trust besides the system's, for `ldaps://` and StartTLS.
    pub ca_pem: Option<Vec<u8>>,
    /// The DN to bind as (a read-only service account).
    pub bind_dn: String,
    /// Its password.
    pub bind_password: SecretString,
    /// Timeout of connecting (TLS included) and of each server response.
    pub timeout: Duration,
    /// Extra attempts at a transient connect or bind failure (refused, timed out, busy).
    pub retries: u32,
    /// Entries per page of the paged searches (RFC 2696).
    pub page_size: u32,
    /// Where people are searched (subtree).
    pub user_base_dn: String,
    /// Which entries are people (RFC 4515 filter).
    pub user_filter: String,
    /// The attribute with a person's stable id (`entryUUID`; AD `objectGUID`).
    pub id_attr: String,
    /// How the id attribute's value is turned into text.
    pub id_format: IdFormat,
    /// The attribute with the username (`uid`; AD `sAMAccountName`). People without one are
    /// skipped with a warning.
    pub username_attr: String,
    /// The attribute with the email address (`mail`).
    pub email_attr: String,
    /// The attribute with the given name (`givenName`).
    pub first_name_attr: String,
    /// The attribute with the family name (`sn`).
    pub last_name_attr: String,
    /// How to tell that a person is disabled.
    pub disabled: Disabled,
    /// Where groups are searched (subtree).
    pub group_base_dn: String,
    /// Which entries are groups (RFC 4515 filter).
    pub group_filter: String,
    /// The attribute with a group's name (`cn`).
    pub group_name_attr: String,
    /// How membership is recorded.
    pub membership: Membership,
    /// Skip search continuation references (parts of the tree on other servers) instead of
    /// failing. Off by default: a referral not followed may hide people. Active Directory
    /// answers a search of a domain's root with references to its DNS and configuration
    /// partitions, which hold no people, so [`LdapSettings::active_directory`] turns it on.
    pub ignore_referrals: bool,
}

impl LdapSettings {
    /// Settings for an OpenLDAP-style directory (`inetOrgPerson` people with `entryUUID`,
    /// `groupOfNames` groups with `member`), with defaults for everything but the essentials.
    pub fn new(
        url: Url,
        bind_dn: impl Into<String>,
        bind_password: SecretString,
        user_base_dn: impl Into<String>,
        group_base_dn: impl Into<String>,
    ) -> Self {
        Self {
            url,
            starttls: false,
            ca_pem: None,
            bind_dn: bind_dn.into(),
            bind_password,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            page_size: DEFAULT_PAGE_SIZE,
            user_base_dn: user_base_dn.into(),
            user_filter: "(objectClass=inetOrgPerson)".into(),
            id_attr: "entryUUID".into(),
            id_format: IdFormat::Text,
            username_attr: "uid".into(),
            email_attr: "mail".into(),
            first_name_attr: "givenName".into(),
            last_name_attr: "sn".into(),
            disabled: Disabled::Never,
            group_base_dn: group_base_dn.into(),
            group_filter: "(objectClass=groupOfNames)".into(),
            group_name_attr: "cn".into(),
            membership: Membership::default(),
            ignore_referrals: false,
        }
    }

    /// JumpCloud's LDAP-as-a-Service for organisation `org_id`: `ldaps://ldap.jumpcloud.com:636`,
    /// people (`inetOrgPerson`) and groups (`groupOfNames`) both under
    /// `ou=Users,o=<org_id>,dc=jumpcloud,dc=com`, `uid` as username and id (JumpCloud enforces
    /// unique usernames; `entryUUID` is not documented there), `member` lists, and a lock
    /// (`pwdAccountLockedTime`) as disabled. The bind DN is usually
    /// `uid=<binding user>,ou=Users,o=<org_id>,dc=jumpcloud,dc=com`.
    pub fn jumpcloud(
        org_id: &str,
        bind_dn: impl Into<String>,
        bind_password: SecretString,
    ) -> Self {
        let base = jumpcloud_users_dn(org_id);
        let mut settings = Self::new(
            Url::parse(JUMPCLOUD_URL).expect("invariant: a valid constant URL"),
            bind_dn,
            bind_password,
            base.clone(),
            base,
        );
        settings.id_attr = "uid".into();
        settings.disabled = Disabled::Present {
            attr: "pwdAccountLockedTime".into(),
        };
        settings
    }

    /// Active Directory: people `(&(objectCategory=person)(objectClass=user))` with
    /// `sAMAccountName` and the binary `objectGUID` as id, groups `(objectClass=group)`,
    /// membership from `memberOf` (nested groups through the groups' own `memberOf`; a
    /// person's primary group, usually Domain Users, is not in `memberOf`), disabled from
    /// `userAccountControl`, continuation references to other partitions skipped.
    pub fn active_directory(
        url: Url,
        base_dn: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password: SecretString,
    ) -> Self {
        let base = base_dn.into();
        let mut settings = Self::new(url, bind_dn, bind_password, base.clone(), base);
        settings.user_filter = "(&(objectCategory=person)(objectClass=user))".into();
        settings.id_attr = "objectGUID".into();
        settings.id_format = IdFormat::Guid;
        settings.username_attr = "sAMAccountName".into();
        settings.disabled = Disabled::UserAccountControl;
        settings.group_filter = "(objectClass=group)".into();
        settings.membership = Membership::MemberOf {
            attr: "memberOf".into(),
        };
        settings.ignore_referrals = true;
        settings
    }

    /// Narrows the people read to direct members of the group `group_dn` (by their
    /// `memberOf`), the value escaped per RFC 4515.
    #[must_use]
    pub fn only_members_of(mut self, group_dn: &str) -> Self {
        self.user_filter = format!(
            "(&{}{})",
            self.user_filter,
            equality_filter("memberOf", group_dn)
        );
        self
    }

    /// Every problem with the settings, each naming its field; empty when they can work.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem =
            |field: &str, message: String| problems.push(format!("{field}: {message}"));

        match self.url.scheme() {
            "ldap" | "ldaps" => {}
            other => problem("url", format!("scheme `{other}` is not ldap or ldaps")),
        }
        if self.url.host_str().is_none_or(str::is_empty) {
            problem("url", "has no host".into());
        }
        if !self.url.username().is_empty() || self.url.password().is_some() {
            problem(
                "url",
                "must not carry credentials; use bind_dn and bind_password".into(),
            );
        }
        if !matches!(self.url.path(), "" | "/") || self.url.query().is_some() {
            problem(
                "url",
                "must be only scheme://host:port (search settings have their own fields)".into(),
            );
        }
        if self.starttls && self.url.scheme() == "ldaps" {
            problem(
                "starttls",
                "cannot be combined with an ldaps:// url, which is TLS already".into(),
            );
        }
        if let Some(pem) = &self.ca_pem {
            if let Err(err) = parse_ca_pem(pem) {
                problem("ca_pem", err);
            }
        }
        if self.bind_dn.trim().is_empty() {
            problem(
                "bind_dn",
                "must not be empty (airlock does not bind anonymously)".into(),
            );
        } else if !dn::is_valid(&self.bind_dn) {
            problem("bind_dn", "is not a valid DN".into());
        }
        if self.bind_password.expose_secret().is_empty() {
            problem(
                "bind_password",
                "must not be empty (a bind without password is anonymous)".into(),
            );
        }
        if self.timeout.is_zero() {
            problem("timeout", "must be more than zero".into());
        }
        if self.page_size == 0 || i32::try_from(self.page_size).is_err() {
            problem("page_size", "must be between 1 and 2147483647".into());
        }
        for (field, dn) in [
            ("user_base_dn", &self.user_base_dn),
            ("group_base_dn", &self.group_base_dn),
        ] {
            if dn.trim().is_empty() || !dn::is_valid(dn) {
                problem(field, format!("`{dn}` is not a valid DN"));
            }
        }
        for (field, filter) in [
            ("user_filter", &self.user_filter),
            ("group_filter", &self.group_filter),
        ] {
            if !(filter.starts_with('(') && filter.ends_with(')'))
                || ldap3::parse_filter(filter).is_err()
            {
                problem(field, format!("`{filter}` is not a valid RFC 4515 filter"));
            }
        }
        let mut attrs = vec![
            ("id_attr", &self.id_attr),
            ("username_attr", &self.username_attr),
            ("email_attr", &self.email_attr),
            ("first_name_attr", &self.first_name_attr),
            ("last_name_attr", &self.last_name_attr),
            ("group_name_attr", &self.group_name_attr),
        ];
        match &self.membership {
            Membership::GroupMember { member_attr } => {
                attrs.push(("membership.member_attr", member_attr))
            }
            Membership::MemberOf { attr } => attrs.push(("membership.attr", attr)),
        }
        match &self.disabled {
            Disabled::Present { attr } | Disabled::ValueIn { attr, .. } => {
                attrs.push(("disabled.attr", attr))
            }
            Disabled::Never | Disabled::UserAccountControl => {}
        }
        for (field, attr) in attrs {
            if !is_attribute_name(attr) {
                problem(
                    field,
                    format!("`{attr}` is not an attribute name (letters, digits, hyphens)"),
                );
            }
        }
        if let Disabled::ValueIn { values, .. } = &self.disabled {
            if values.is_empty() {
                problem("disabled.values", "must list at least one value".into());
            }
        }
        problems
    }
}

/// `ou=Users,o=<org_id>,dc=jumpcloud,dc=com`, the org id escaped per RFC 4514.
pub fn jumpcloud_users_dn(org_id: &str) -> String {
    format!(
        "ou=Users,o={},dc=jumpcloud,dc=com",
        ldap3::dn_escape(org_id)
    )
}

/// `(attr=value)` with the value escaped per RFC 4515, so that `*`, `(`, `)`, `\` and NUL in
/// it are matched literally and cannot change the filter.
pub fn equality_filter(attr: &str, value: &str) -> String {
    format!("({attr}={})", ldap3::ldap_escape(value))
}

/// An attribute description airlock accepts: a name (a letter, then letters, digits and
/// hyphens) or a numeric OID.
fn is_attribute_name(attr: &str) -> bool {
    let mut chars = attr.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
        }
        Some(first) if first.is_ascii_digit() => attr
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit())),
        _ => false,
    }
}

/// A configured LDAP directory, ready to read.
#[derive(Debug)]
pub struct LdapSource {
    // Boxed: the settings are large next to the other sources in [`crate::Source`].
    settings: Box<LdapSettings>,
    server: String,
}

impl LdapSource {
    /// A source with these settings; they are checked by each [`LdapSource::read`] (and by
    /// [`LdapSettings::problems`] whenever the caller wants).
    pub fn new(settings: LdapSettings) -> Self {
        let server = server_label(&settings.url);
        Self {
            settings: Box::new(settings),
            server,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    /// A short description for messages: `ldap ldaps://ldap.jumpcloud.com:636` (scheme, host
    /// and port only).
    pub fn describe(&self) -> String {
        format!("ldap {}", self.server)
    }

    /// Reads a complete snapshot, or fails.
    pub async fn read(&self) -> Result<DirectorySnapshot, LdapError> {
        let problems = self.settings.problems();
        if !problems.is_empty() {
            return Err(self.error(
                Operation::CheckSettings,
                ErrorKind::InvalidSettings(problems),
            ));
        }
        let mut ldap = self.connect_and_bind().await?;
        let result = self.search_and_build(&mut ldap).await;
        // Courtesy only: the read is decided already.
        let _ = tokio::time::timeout(self.settings.timeout, ldap.unbind()).await;
        result
    }

    async fn search_and_build(&self, ldap: &mut Ldap) -> Result<DirectorySnapshot, LdapError> {
        let s = &self.settings;
        let mut people_attrs = vec![
            s.id_attr.clone(),
            s.username_attr.clone(),
            s.email_attr.clone(),
            s.first_name_attr.clone(),
            s.last_name_attr.clone(),
        ];
        match &s.disabled {
            Disabled::Never => {}
            Disabled::UserAccountControl => people_attrs.push("userAccountControl".into()),
            Disabled::Present { attr } | Disabled::ValueIn { attr, .. } => {
                people_attrs.push(attr.clone())
            }
        }
        let mut group_attrs = vec![s.group_name_attr.clone()];
        match &s.membership {
            Membership::GroupMember { member_attr } => group_attrs.push(member_attr.clone()),
            Membership::MemberOf { attr } => {
                people_attrs.push(attr.clone());
                group_attrs.push(attr.clone());
            }
        }

        let people_op = Operation::SearchPeople {
            base: s.user_base_dn.clone(),
        };
        let people = self
            .search_all(ldap, &s.user_base_dn, &s.user_filter, people_attrs)
            .await
            .map_err(|kind| self.error(people_op, kind))?;
        let groups_op = Operation::SearchGroups {
            base: s.group_base_dn.clone(),
        };
        let groups = self
            .search_all(ldap, &s.group_base_dn, &s.group_filter, group_attrs)
            .await
            .map_err(|kind| self.error(groups_op, kind))?;
        tracing::debug!(
            server = %self.server,
            people = people.len(),
            groups = groups.len(),
            "ldap entries read"
        );
        snapshot::build(s, &people, &groups)
            .map_err(|kind| self.error(Operation::BuildSnapshot, kind))
    }

    /// Connects and binds, retrying transient failures with a short doubling backoff.
    async fn connect_and_bind(&self) -> Result<Ldap, LdapError> {
        let tls = if self.settings.url.scheme() == "ldaps" || self.settings.starttls {
            let config = tls_config(self.settings.ca_pem.as_deref())
                .map_err(|message| self.error(Operation::Connect, ErrorKind::Tls(message)))?;
            Some(config)
        } else {
            None
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.connect_and_bind_once(tls.clone()).await {
                Ok(ldap) => return Ok(ldap),
                Err(err) if err.is_transient() && attempt <= self.settings.retries => {
                    tracing::warn!(
                        error = %err,
                        attempt,
                        retry_in_ms = backoff.as_millis() as u64,
                        "ldap connect or bind failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn connect_and_bind_once(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Ldap, LdapError> {
        let s = &self.settings;
        let password = s.bind_password.expose_secret();
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(s.timeout)
            .set_starttls(s.starttls);
        if let Some(config) = tls {
            conn_settings = conn_settings.set_config(config);
        }
        let (conn, mut ldap) = LdapConnAsync::from_url_with_settings(conn_settings, &s.url)
            .await
            .map_err(|err| {
                let kind = match error::kind_from(err, s.timeout, password) {
                    // The only LDAP result while connecting is the answer to StartTLS.
                    ErrorKind::Server { code, text } => ErrorKind::Tls(format!(
                        "the server refused StartTLS: {} ({code}){}",
                        result_name(code),
                        if text.is_empty() {
                            String::new()
                        } else {
                            format!(": {text}")
                        }
                    )),
                    other => other,
                };
                self.error(Operation::Connect, kind)
            })?;
        let server = self.server.clone();
        tokio::spawn(async move {
            if let Err(err) = conn.drive().await {
                tracing::debug!(server = %server, error = %err, "ldap connection ended");
            }
        });
        let bind_op = || Operation::Bind {
            dn: s.bind_dn.clone(),
        };
        let result = ldap
            .with_timeout(s.timeout)
            .simple_bind(&s.bind_dn, password)
            .await
            .map_err(|err| self.error(bind_op(), error::kind_from(err, s.timeout, password)))?;
        if result.rc != 0 {
            return Err(self.error(
                bind_op(),
                ErrorKind::Server {
                    code: result.rc,
                    text: error::scrub(&result.text, password),
                },
            ));
        }
        Ok(ldap)
    }

    /// Every entry of a subtree search, page by page; anything short of a complete answer
    /// is an error.
    async fn search_all(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
    ) -> Result<Vec<Entry>, ErrorKind> {
        let s = &self.settings;
        let page_size = i32::try_from(s.page_size).unwrap_or(i32::MAX);
        let mut entries: Vec<Entry> = Vec::new();
        let mut cookie: Vec<u8> = Vec::new();
        let mut pages = 0_u64;
        loop {
            pages += 1;
            let control = PagedResults {
                size: page_size,
                cookie: cookie.clone(),
            };
            let ldap3::SearchResult(page, result) = ldap
                .with_controls(control)
                .with_timeout(s.timeout)
                .search(base, Scope::Subtree, filter, attrs.clone())
                .await
                .map_err(|err| error::kind_from(err, s.timeout, ""))?;
            let received = entries.len() + page.len();
            match result.rc {
                0 => {}
                3 | 4 | 11 => {
                    return Err(ErrorKind::Incomplete(format!(
                        "the server stopped after {received} entries (page {pages}): {} ({}); \
                         raise the limit for the bind user",
                        result_name(result.rc),
                        result.rc
                    )))
                }
                10 => {
                    return Err(ErrorKind::Incomplete(format!(
                        "the server referred the search to {}, which airlock does not follow",
                        result.refs.join(", ")
                    )))
                }
                code => {
                    return Err(ErrorKind::Server {
                        code,
                        text: result.text,
                    })
                }
            }
            if !result.refs.is_empty() {
                if s.ignore_referrals {
                    tracing::debug!(
                        server = %self.server,
                        base,
                        referrals = ?result.refs,
                        "ldap continuation references skipped"
                    );
                } else {
                    return Err(ErrorKind::Incomplete(format!(
                        "part of the tree is on other servers ({}), which airlock does not \
                         follow; narrow the base DN or set ignore_referrals",
                        result.refs.join(", ")
                    )));
                }
            }
            let page_was_empty = page.is_empty();
            entries.extend(
                page.into_iter()
                    .map(|e| Entry::from(SearchEntry::construct(e))),
            );
            let next = result.ctrls.iter().find_map(|control| match control {
                Control(Some(ControlType::PagedResults), raw) => Some(raw.parse::<PagedResults>()),
                _ => None,
            });
            match next {
                Some(next) if !next.cookie.is_empty() => {
                    if page_was_empty && next.cookie == cookie {
                        return Err(ErrorKind::Incomplete(format!(
                            "paging made no progress at page {pages} (the server repeated its \
                             cookie)"
                        )));
                    }
                    cookie = next.cookie;
                }
                // Last page, or a server that ignored the (non-critical) control and sent all.
                _ => return Ok(entries),
            }
        }
    }

    fn error(&self, operation: Operation, kind: ErrorKind) -> LdapError {
        LdapError {
            server: self.server.clone(),
            operation,
            kind,
        }
    }
}

/// `scheme://host:port` of `url`, with the default port filled in; never credentials.
fn server_label(url: &Url) -> String {
    let scheme = url.scheme();
    let default_port = if scheme == "ldaps" { 636 } else { 389 };
    let host = url.host_str().unwrap_or("");
    format!("{scheme}://{host}:{}", url.port().unwrap_or(default_port))
}

/// The certificates in `pem`; an error when there are none or one does not parse.
fn parse_ca_pem(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("cannot read the PEM certificates: {err}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// A rustls client configuration trusting the system's roots plus `ca_pem`.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates only shrink the trust store; `ca_pem` may be all we need.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        for cert in parse_ca_pem(pem).map_err(|err| format!("ca_pem {err}"))? {
            roots
                .add(cert)
                .map_err(|err| format!("ca_pem holds an unusable certificate: {err}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot set up tls: {err}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LdapSettings {
        LdapSettings::new(
            Url::parse("ldap://127.0.0.1:389").expect("url"),
            "cn=reader,dc=example,dc=com",
            SecretString::from("s3cret-pw"),
            "ou=people,dc=example,dc=com",
            "ou=groups,dc=example,dc=com",
        )
    }

    #[test]
    fn a_filter_injection_in_a_value_is_escaped() {
        let filter = equality_filter("uid", "*)(uid=*");
        assert_eq!(filter, "(uid=\\2a\\29\\28uid=\\2a)");
        // Still one equality assertion: the value cannot open or close a clause.
        assert!(ldap3::parse_filter(&filter).is_ok());
        assert_eq!(filter.matches('(').count(), 1);

        let narrowed = settings().only_members_of("*)(objectClass=*");
        assert_eq!(
            narrowed.user_filter,
            "(&(objectClass=inetOrgPerson)(memberOf=\\2a\\29\\28objectClass=\\2a))"
        );
        assert!(narrowed.problems().is_empty(), "{:?}", narrowed.problems());
    }

    #[test]
    fn a_dn_injection_in_the_jumpcloud_org_id_is_escaped() {
        let s = LdapSettings::jumpcloud(
            "x,dc=evil+cn=*",
            "uid=bind,ou=Users,o=x,dc=jumpcloud,dc=com",
            SecretString::from("pw"),
        );
        assert_eq!(
            s.user_base_dn,
            "ou=Users,o=x\\2cdc\\3devil\\2bcn\\3d*,dc=jumpcloud,dc=com"
        );
        // Still exactly four RDNs, the org id one of them.
        assert_eq!(
            dn::DnKey::new(&s.user_base_dn),
            dn::DnKey::new("ou=Users,o=x\\,dc\\=evil\\+cn\\=*,dc=jumpcloud,dc=com")
        );
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }

    #[test]
    fn presets_follow_their_directories() {
        let jc = LdapSettings::jumpcloud(
            "5f0c1a2b3c4d5e6f70819203",
            "uid=bind,ou=Users,o=5f0c1a2b3c4d5e6f70819203,dc=jumpcloud,dc=com",
            SecretString::from("pw"),
        );
        assert_eq!(jc.url.as_str(), JUMPCLOUD_URL);
        assert_eq!(
            jc.user_base_dn,
            "ou=Users,o=5f0c1a2b3c4d5e6f70819203,dc=jumpcloud,dc=com"
        );
        assert_eq!(jc.group_base_dn, jc.user_base_dn);
        assert_eq!(jc.username_attr, "uid");
        assert_eq!(jc.group_filter, "(objectClass=groupOfNames)");

        let ad = LdapSettings::active_directory(
            Url::parse("ldaps://dc1.corp.example.com").expect("url"),
            "DC=corp,DC=example,DC=com",
            "CN=airlock,OU=Service,DC=corp,DC=example,DC=com",
            SecretString::from("pw"),
        );
        assert_eq!(ad.username_attr, "sAMAccountName");
        assert_eq!(ad.id_attr, "objectGUID");
        assert_eq!(ad.id_format, IdFormat::Guid);
        assert_eq!(ad.disabled, Disabled::UserAccountControl);
        assert_eq!(
            ad.membership,
            Membership::MemberOf {
                attr: "memberOf".into()
            }
        );
        assert!(ad.problems().is_empty(), "{:?}", ad.problems());
        assert_eq!(
            LdapSource::new(ad).describe(),
            "ldap ldaps://dc1.corp.example.com:636"
        );
    }

    #[test]
    fn problems_name_every_wrong_field() {
        let mut s = settings();
        s.url = Url::parse("http://user:pw@host/path").expect("url");
        s.bind_password = SecretString::from("");
        s.page_size = 0;
        s.user_base_dn = "not a dn".into();
        s.user_filter = "objectClass=person".into();
        s.group_filter = "(objectClass=group".into();
        s.username_attr = "*)(uid=*".into();
        s.membership = Membership::MemberOf {
            attr: "member of".into(),
        };
        let problems = s.problems();
        for field in [
            "url: scheme",
            "url: must not carry credentials",
            "url: must be only",
            "bind_password:",
            "page_size:",
            "user_base_dn:",
            "user_filter:",
            "group_filter:",
            "username_attr:",
            "membership.attr:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "no `{field}` in {problems:#?}"
            );
        }
        assert!(!problems.iter().any(|p| p.contains("s3cret")));
        assert!(
            settings().problems().is_empty(),
            "{:?}",
            settings().problems()
        );
    }

    #[test]
    fn starttls_over_ldaps_and_an_empty_ca_are_rejected() {
        let mut s = settings();
        s.url = Url::parse("ldaps://127.0.0.1").expect("url");
        s.starttls = true;
        s.ca_pem = Some(b"not a certificate".to_vec());
        let problems = s.problems();
        assert!(
            problems.iter().any(|p| p.starts_with("starttls:")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("ca_pem:")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_description_never_shows_credentials() {
        let mut s = settings();
        s.url = Url::parse("ldap://admin:hunter2@ldap.example.com").expect("url");
        let source = LdapSource::new(s);
        assert_eq!(source.describe(), "ldap ldap://ldap.example.com:389");
        assert!(!format!("{source:?}").contains("s3cret-pw"));
    }

    #[test]
    fn attribute_names_are_names_or_oids() {
        for ok in ["uid", "entryUUID", "x-custom-1", "2.5.4.3"] {
            assert!(is_attribute_name(ok), "{ok}");
        }
        for bad in ["", "*", "uid)", "1uid", "2.5..3", "cn;lang-en", "mail "] {
            assert!(!is_attribute_name(bad), "{bad}");
        }
    }
}
