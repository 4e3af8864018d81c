//! The configuration file as written: serde structs with `deny_unknown_fields`, so a typo is
//! an error with its key path rather than a silently ignored setting.

use crate::secret::SecretSource;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where airlock keeps snapshots, runs and its audit trail.
    #[serde(default)]
    pub store: RawStore,
    /// Inventory settings.
    #[serde(default)]
    pub inventory: RawInventory,
    /// Airflow instances, keyed by airlock's name for each (`[instances.prod]`).
    #[serde(default)]
    pub instances: BTreeMap<String, RawInstance>,
    /// The access policy file (groups -> roles, roles as code, leavers, safety rails),
    /// relative to this file. Needed by `plan`, `apply` and `sync`.
    pub policy: Option<PathBuf>,
    /// The directory that is the source of truth for people and groups.
    pub directory: Option<RawDirectory>,
    /// `airlock serve`: the long-running service.
    #[serde(default)]
    pub serve: RawServe,
    /// The audit trail: signed checkpoints (`[audit.checkpoints]`).
    #[serde(default)]
    pub audit: crate::checkpoints::RawAudit,
    /// The governance API in `airlock serve` (`[api]`, off when absent).
    pub api: Option<crate::api::RawApi>,
    /// Webhooks for just-in-time access (`[[notifications.webhooks]]`).
    #[serde(default)]
    pub notifications: crate::notify::RawNotifications,
}

/// `[serve]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    /// Address for /scim/v2, and for /healthz, /readyz and /metrics unless `metrics_listen`
    /// is set (default 127.0.0.1:9464).
    pub listen: Option<String>,
    /// A separate address for /healthz, /readyz and /metrics (then `listen` serves only
    /// /scim/v2, the one surface an identity provider needs).
    pub metrics_listen: Option<String>,
    /// Seconds a client may take to send a request's head, also how long an idle keep-alive
    /// connection stays open (default 10, 1 to 300).
    pub header_read_timeout_secs: Option<u64>,
    /// PEM certificate chain to serve `listen` over TLS (with `tls_key_file`), relative to
    /// this file; `metrics_listen` stays plain HTTP.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (keep it mode 0600).
    pub tls_key_file: Option<PathBuf>,
    /// Connections served at once per listener; more wait unserved (default 512, 1 to 65536).
    pub max_connections: Option<usize>,
    /// Seconds shutdown waits for requests in flight before closing their connections
    /// (default 10, 1 to 300).
    pub shutdown_grace_secs: Option<u64>,
    /// Failed SCIM authentications from one address, within `auth_failure_window_secs`, after
    /// which it is answered 429 for that window (default 10, 1 to 10000).
    pub auth_failure_limit: Option<u32>,
    /// The window failed authentications are counted in, and how long a block lasts
    /// (default 60, 1 to 86400).
    pub auth_failure_window_secs: Option<u64>,
    /// Seconds between syncs of one instance (default 300).
    pub sync_interval_secs: Option<u64>,
    /// Up to this many seconds added at random to each interval (default 30).
    pub sync_jitter_secs: Option<u64>,
    /// Seconds between attempts to take an instance's lease (default 5).
    pub lease_retry_secs: Option<u64>,
    /// Operations in flight at once per sync (default 8).
    pub concurrency: Option<usize>,
    /// Milliseconds between checks for SCIM changes received by another replica (default
    /// 1000). Changes received by this replica are applied at once.
    pub scim_poll_ms: Option<u64>,
    /// Seconds an instance's lease lives without a renewal (default 15, 3 to 300): how long
    /// a replica that vanished (killed, frozen, cut off) blocks its instances before another
    /// takes them over. Renewed every third of it.
    pub lease_ttl_secs: Option<u64>,
    /// Seconds between the snapshots of each instance that record logins (default 300; 0
    /// turns them off; else 10 to 86400). Airflow records no logins: airlock reads each
    /// account's `last_login` and `login_count` and records the change between two snapshots
    /// as a login in that window (`account.login`), so this bounds how precisely a login is
    /// placed in time.
    pub login_snapshot_secs: Option<u64>,
}

/// `[directory]`: which directory to read.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawDirectory {
    /// A YAML or CSV file (`kind = "file"`).
    File {
        /// Path, relative to the config file; `.yaml`/`.yml` or `.csv`.
        path: PathBuf,
    },
    /// JumpCloud's REST API (`kind = "jumpcloud"`).
    Jumpcloud {
        /// API key (`x-api-key`); a secret: `{ env = "JUMPCLOUD_API_KEY" }`.
        api_key: SecretSource,
        /// Organisation id, for multi-tenant admins (`x-org-id`).
        org_id: Option<String>,
        /// `us` (default), `eu` or `in`.
        region: Option<String>,
        /// Explicit API base URL (overrides `region`).
        base_url: Option<String>,
        /// Only read these groups (default: all).
        groups: Option<Vec<String>>,
        /// Timeout of one call, in seconds (default 30).
        timeout_secs: Option<u64>,
        /// Retries of transient failures (default 5).
        max_retries: Option<u32>,
        /// Read Directory Insights for people suspended or deleted in JumpCloud, to measure
        /// how long airlock took to remove their access (`airlock audit leavers`, and the
        /// metric `airlock_time_to_deprovision_seconds` from `airlock serve`). Default false.
        insights: Option<bool>,
        /// Directory Insights' base URL (default from `region`: `https://api.jumpcloud.com`,
        /// `https://api.eu.jumpcloud.com`, `https://api.in.jumpcloud.com`).
        insights_url: Option<String>,
        /// `airlock serve`: seconds between reads of Directory Insights (default 60, 10 to
        /// 3600).
        insights_poll_secs: Option<u64>,
    },
    /// An LDAP directory (`kind = "ldap"`): OpenLDAP, JumpCloud LDAP-as-a-Service, AD.
    Ldap(Box<RawLdap>),
    /// The Users and Groups identity providers pushed to airlock's SCIM endpoint
    /// (`kind = "scim"`), kept in the state store. No other keys.
    Scim {},
}

/// `[directory]` with `kind = "ldap"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLdap {
    /// `openldap` (default), `jumpcloud` or `active_directory`: sensible attributes and filters.
    pub preset: Option<String>,
    /// `ldap://` or `ldaps://` URL (the JumpCloud preset defaults to ldaps://ldap.jumpcloud.com:636).
    pub url: Option<String>,
    /// JumpCloud organisation id (JumpCloud preset).
    pub org_id: Option<String>,
    /// Base DN (Active Directory preset: both people and groups under it).
    pub base_dn: Option<String>,
    /// DN airlock binds as.
    pub bind_dn: String,
    /// Its password; a secret.
    pub bind_password: SecretSource,
    /// Upgrade an ldap:// connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Allow `ldap://` without StartTLS to a host that is not loopback (the bind password
    /// then travels in clear). Default false: such a directory is refused.
    #[serde(default)]
    pub allow_insecure: bool,
    /// PEM file with extra CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Where people are.
    pub user_base_dn: Option<String>,
    /// Where groups are.
    pub group_base_dn: Option<String>,
    /// Filter selecting people.
    pub user_filter: Option<String>,
    /// Filter selecting groups.
    pub group_filter: Option<String>,
    /// Attribute holding the username.
    pub username_attr: Option<String>,
    /// Attribute holding the stable id.
    pub id_attr: Option<String>,
    /// Attribute holding the email.
    pub email_attr: Option<String>,
    /// `member` (groups list members, nested groups resolved) or `member_of` (people list groups).
    pub membership: Option<String>,
    /// An attribute that marks a person disabled: present (e.g. `pwdAccountLockedTime`), or,
    /// with `disabled_values`, holding one of those values (e.g. `employeeType`).
    pub disabled_attr: Option<String>,
    /// Values of `disabled_attr` that mean disabled.
    pub disabled_values: Option<Vec<String>>,
    /// Paged-results page size (default 500).
    pub page_size: Option<u32>,
    /// Timeout of one operation, in seconds (default 30).
    pub timeout_secs: Option<u64>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite://airlock.db` (relative to the config file; the default) or
    /// `postgres://user@host/db?sslmode=verify-full&sslrootcert=/abs/ca.pem` (plaintext modes
    /// only to loopback; see `pg_url`). A secret, since a PostgreSQL URL may carry a password.
    pub url: Option<SecretSource>,
    /// Connections in the store's pool (3 to 200; default: 5 for commands, and for
    /// `airlock serve` 4 plus one per two instances, at most 20). Leases never hold one.
    pub max_connections: Option<u32>,
}

/// `[inventory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// Flag accounts whose last login is older than this many days (default 90).
    pub inactive_after_days: Option<u32>,
}

/// Which Airflow REST API generation to speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiGeneration {
    /// Detect from `/api/v2/version`, then `/api/v1/version` (the default).
    #[default]
    Auto,
    /// Airflow 3: JWT from `/auth/token`.
    V3,
    /// Airflow 2: HTTP basic auth.
    V2,
}

/// `[instances.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstance {
    /// Base URL of the Airflow API server (Airflow 3) or webserver (Airflow 2).
    pub url: String,
    /// Free-form labels used to select instances (`env = "prod"`, `team = "data"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The Airflow user airlock logs in as.
    pub username: String,
    /// That user's password.
    pub password: SecretSource,
    /// API generation; `auto` detects it.
    #[serde(default)]
    pub api: ApiGeneration,
    /// Timeout of one HTTP call, in seconds (default 30).
    pub timeout_secs: Option<u64>,
    /// Connect timeout, in seconds (default 10).
    pub connect_timeout_secs: Option<u64>,
    /// At most this many calls in flight to this instance (default 4).
    pub max_concurrency: Option<usize>,
    /// Retries of a transient failure before giving up (default 4).
    pub max_retries: Option<u32>,
    /// PEM file with extra CA certificates to trust for this instance's TLS.
    pub ca_file: Option<PathBuf>,
    /// Lifetime of the tokens this Airflow issues, in seconds (Airflow's
    /// `[api_auth] jwt_expiration_time`, default 86400). Leavers are deleted only after it
    /// (plus `jwt_leeway_secs`, `fab_cache_ttl_secs` and a margin).
    pub token_lifetime_secs: Option<u64>,
    /// Airflow's `[api_auth] jwt_leeway`: seconds a token is still accepted after it expires
    /// (default 10).
    pub jwt_leeway_secs: Option<u64>,
    /// Airflow's `[fab] cache_ttl`: seconds the FAB auth manager caches a user after a lookup
    /// (default 30).
    pub fab_cache_ttl_secs: Option<u64>,
    /// Allow `http://` to a host that is not loopback (airlock's password then travels in
    /// clear: basic auth on every Airflow 2 call, the token request on Airflow 3). Default
    /// false: such an instance is refused.
    #[serde(default)]
    pub allow_insecure: bool,
}
