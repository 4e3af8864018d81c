//! Validation: turns a [`RawConfig`] into a typed [`Config`], collecting every error with its
//! key path instead of stopping at the first.

use crate::raw::{ApiGeneration, RawConfig, RawInstance};
use crate::secret::SecretString;
use crate::ConfigError;
use airlock_core::InstanceName;
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// A validated configuration. Building clients and stores from it cannot fail for a reason
/// the configuration could have caught.
#[derive(Debug)]
pub struct Config {
    /// The state store.
    pub store: StoreConfig,
    /// Inventory settings.
    pub inventory: InventoryConfig,
    /// Instances, sorted by name.
    pub instances: Vec<InstanceConfig>,
    /// The access policy, if configured.
    pub policy: Option<airlock_core::policy::Policy>,
    /// The directory, if configured.
    pub directory: Option<DirectoryConfig>,
    /// `airlock serve` settings.
    pub serve: ServeConfig,
    /// The audit trail's signed checkpoints.
    pub audit: crate::checkpoints::AuditConfig,
    /// The governance API (`[api]`), when enabled.
    pub api: Option<crate::api::ApiConfig>,
    /// Webhooks for just-in-time access.
    pub webhooks: Vec<crate::notify::WebhookConfig>,
}

/// `airlock serve` settings, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address for SCIM (and health and metrics unless `metrics_listen`).
    pub listen: std::net::SocketAddr,
    /// A separate address for health and metrics.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS certificate chain and key files for `listen` (absolute paths).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Time a client may take to send a request head; idle keep-alive time.
    pub header_read_timeout: Duration,
    /// Connections served at once per listener.
    pub max_connections: usize,
    /// Time shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Failed SCIM authentications from one address that block it.
    pub auth_failure_limit: u32,
    /// Window of those failures, and length of the block.
    pub auth_failure_window: Duration,
    /// Time between syncs of one instance.
    pub sync_interval: Duration,
    /// Random extra time per interval, at most.
    pub sync_jitter: Duration,
    /// Time between attempts to take a lease.
    pub lease_retry: Duration,
    /// Operations in flight per sync.
    pub concurrency: usize,
    /// Time between checks for SCIM changes that another replica received.
    pub scim_poll: Duration,
    /// How long a lease lives without renewal.
    pub lease_ttl: Duration,
    /// Time between the login snapshots of each instance (`None`: off).
    pub login_snapshots: Option<Duration>,
}

/// The directory to read, validated.
#[derive(Debug, Clone)]
pub enum DirectoryConfig {
    /// A YAML or CSV file (absolute path).
    File {
        /// The file.
        path: PathBuf,
    },
    /// JumpCloud's REST API.
    JumpCloud {
        /// API key.
        api_key: SecretString,
        /// Organisation id.
        org_id: Option<String>,
        /// API base URL.
        base_url: Url,
        /// Only these groups.
        groups: Option<Vec<String>>,
        /// Timeout of one call.
        timeout: Duration,
        /// Retries.
        max_retries: u32,
        /// Directory Insights, when read (boxed: it is rare, and large).
        insights: Option<Box<InsightsConfig>>,
    },
    /// An LDAP directory.
    Ldap(Box<LdapConfig>),
    /// The SCIM Users and Groups in the state store.
    Scim,
}

/// JumpCloud Directory Insights, validated.
#[derive(Debug, Clone)]
pub struct InsightsConfig {
    /// Its base URL.
    pub url: Url,
    /// Time between reads in `airlock serve`.
    pub poll: Duration,
}

/// LDAP settings, validated (attribute and filter defaults come from the preset in the
/// directory crate; `None` keeps the preset's value).
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `openldap`, `jumpcloud` or `active_directory`.
    pub preset: String,
    /// Server URL.
    pub url: Option<Url>,
    /// JumpCloud organisation id.
    pub org_id: Option<String>,
    /// AD base DN.
    pub base_dn: Option<String>,
    /// Bind DN.
    pub bind_dn: String,
    /// Bind password.
    pub bind_password: SecretString,
    /// StartTLS.
    pub starttls: bool,
    /// Extra CA certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// People base.
    pub user_base_dn: Option<String>,
    /// Groups base.
    pub group_base_dn: Option<String>,
    /// People filter.
    pub user_filter: Option<String>,
    /// Groups filter.
    pub group_filter: Option<String>,
    /// Username attribute.
    pub username_attr: Option<String>,
    /// Id attribute.
    pub id_attr: Option<String>,
    /// Email attribute.
    pub email_attr: Option<String>,
    /// `member` or `member_of`.
    pub membership: Option<String>,
    /// Disabled marker attribute.
    pub disabled_attr: Option<String>,
    /// Values of it that mean disabled (absent: presence means disabled).
    pub disabled_values: Option<Vec<String>>,
    /// Page size.
    pub page_size: Option<u32>,
    /// Timeout.
    pub timeout: Option<Duration>,
}

impl Config {
    /// The instance called `name`, if configured.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name.as_str() == name)
    }
}

/// Where the state store lives.
#[derive(Debug)]
pub struct StoreConfig {
    /// A `sqlite://` URL with an absolute path, or a `postgres://` URL (may hold a password).
    pub url: SecretString,
    /// Pool size, if configured (see [`StoreConfig::pool_size`]).
    pub max_connections: Option<u32>,
}

impl StoreConfig {
    /// The pool size to use for a process that syncs `instances` instances at once: the
    /// configured size, else 4 plus one per two instances, at most 20 (each instance loop
    /// uses one connection at a time; leases and their renewals have their own).
    pub fn pool_size(&self, instances: usize) -> u32 {
        self.max_connections.unwrap_or_else(|| {
            let n = u32::try_from(instances / 2).unwrap_or(u32::MAX);
            n.saturating_add(4).min(20)
        })
    }
}

/// Inventory settings.
#[derive(Debug, Clone, Copy)]
pub struct InventoryConfig {
    /// Accounts with no login for longer than this are flagged inactive.
    pub inactive_after_days: u32,
}

/// One Airflow instance, validated.
#[derive(Debug, Clone)]
pub struct InstanceConfig {
    /// airlock's name for it.
    pub name: InstanceName,
    /// Base URL, without a trailing slash.
    pub url: Url,
    /// Labels for selecting instances.
    pub labels: BTreeMap<String, String>,
    /// The Airflow user airlock logs in as.
    pub username: String,
    /// Its password.
    pub password: SecretString,
    /// API generation to speak.
    pub api: ApiGeneration,
    /// Timeout of one call.
    pub timeout: Duration,
    /// Timeout to establish a connection.
    pub connect_timeout: Duration,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Retries of transient failures.
    pub max_retries: u32,
    /// Extra trusted CA certificates, PEM.
    pub ca_pem: Option<Vec<u8>>,
    /// Lifetime of tokens the instance issues.
    pub token_lifetime: Duration,
    /// How long after expiry the instance still accepts a token (`[api_auth] jwt_leeway`).
    pub jwt_leeway: Duration,
    /// How long the instance's FAB auth manager caches a user (`[fab] cache_ttl`).
    pub fab_cache_ttl: Duration,
}

/// Added to an instance's token lifetime, JWT leeway and FAB user cache before a leaver may be
/// deleted there: covers clock skew between airlock and Airflow and the time a request takes.
pub const ID_REUSE_MARGIN: Duration = Duration::from_secs(60);

/// The shortest `leavers.delete_after_days` (as a duration) that is safe on an instance: a
/// deleted account's id can be given to the next account created, so every token issued to
/// the deleted one (valid for `token_lifetime`, accepted `jwt_leeway` past its expiry) and
/// every cached copy of the user (`fab_cache_ttl`) must be gone first, with a margin.
pub fn min_delete_after(
    token_lifetime: Duration,
    jwt_leeway: Duration,
    fab_cache_ttl: Duration,
) -> Duration {
    token_lifetime
        .saturating_add(jwt_leeway)
        .saturating_add(fab_cache_ttl)
        .saturating_add(ID_REUSE_MARGIN)
}

impl InstanceConfig {
    /// [`min_delete_after`] for this instance's settings.
    pub fn min_delete_after(&self) -> Duration {
        min_delete_after(self.token_lifetime, self.jwt_leeway, self.fab_cache_ttl)
    }
}

/// Whether `url`'s host is a loopback address (127.0.0.0/8, ::1) or `localhost`: the only
/// hosts a password may be sent to in clear without `allow_insecure`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // Hosts of URLs with a scheme the url crate does not know (`ldap://`) stay opaque
        // strings, addresses included.
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

pub(crate) fn validate(
    raw: RawConfig,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut errors = Vec::new();

    let store_url = match raw.store.url {
        None => Some(SecretString::from(format!(
            "sqlite://{}",
            base_dir.join("airlock.db").display()
        ))),
        Some(src) => match src.resolve(base_dir, lookup) {
            Ok(url) => match store_url(url.expose_secret(), base_dir) {
                Ok(u) => Some(SecretString::from(u)),
                Err(m) => {
                    errors.push(ConfigError::new("store.url", m));
                    None
                }
            },
            Err(m) => {
                errors.push(ConfigError::new("store.url", m));
                None
            }
        },
    };

    let inactive_after_days = raw.inventory.inactive_after_days.unwrap_or(90);
    if inactive_after_days == 0 {
        errors.push(ConfigError::new(
            "inventory.inactive_after_days",
            "must be at least 1",
        ));
    }

    if raw.instances.is_empty() {
        errors.push(ConfigError::new(
            "instances",
            "no Airflow instance configured; add an [instances.NAME] table with url, username and password",
        ));
    }
    let mut instances = Vec::new();
    for (name, inst) in raw.instances {
        if let Some(i) = instance(&name, inst, base_dir, lookup, &mut errors) {
            instances.push(i);
        }
    }

    let directory = raw
        .directory
        .and_then(|d| directory(d, base_dir, lookup, &mut errors));
    let serve = serve(&raw.serve, base_dir, &mut errors);
    let policy = raw.policy.and_then(|p| {
        let path = if p.is_absolute() { p } else { base_dir.join(p) };
        crate::policy::load(&path, &instances, &mut errors)
    });

    let audit = crate::checkpoints::validate(raw.audit, base_dir, lookup, &mut errors);
    let api = crate::api::validate(raw.api, &mut errors);
    let webhooks = crate::notify::validate(raw.notifications, base_dir, lookup, &mut errors);

    let max_connections = raw.store.max_connections;
    if let Some(n) = max_connections {
        if !(3..=200).contains(&n) {
            errors.push(ConfigError::new(
                "store.max_connections",
                "must be between 3 and 200 (one for SCIM, one for a sync, one to spare)",
            ));
        } else if (n as usize) < instances.len().min(8) + 2 {
            errors.push(ConfigError::new(
                "store.max_connections",
                format!(
                    "{n} is too few for {} instances: each instance's sync needs a connection while it runs; use at least {} (or leave it unset)",
                    instances.len(),
                    instances.len().min(8) + 2
                ),
            ));
        }
    }
    match (errors.is_empty(), store_url) {
        (true, Some(url)) => Ok(Config {
            store: StoreConfig {
                url,
                max_connections,
            },
            inventory: InventoryConfig {
                inactive_after_days,
            },
            instances,
            policy,
            directory,
            serve,
            audit,
            api,
            webhooks,
        }),
        _ => {
            errors.sort_by(|a, b| a.key.cmp(&b.key));
            Err(errors)
        }
    }
}

/// `[serve]`.
fn serve(r: &crate::raw::RawServe, base_dir: &Path, errors: &mut Vec<ConfigError>) -> ServeConfig {
    let listen = r.listen.as_deref().unwrap_or("127.0.0.1:9464");
    let listen = listen.parse::<std::net::SocketAddr>().unwrap_or_else(|_| {
        errors.push(ConfigError::new(
            "serve.listen",
            "must be an address such as 127.0.0.1:9464",
        ));
        std::net::SocketAddr::from(([127, 0, 0, 1], 9464))
    });
    let interval = r.sync_interval_secs.unwrap_or(300);
    if interval == 0 {
        errors.push(ConfigError::new(
            "serve.sync_interval_secs",
            "must be at least 1",
        ));
    }
    let lease_retry = r.lease_retry_secs.unwrap_or(5);
    if lease_retry == 0 {
        errors.push(ConfigError::new(
            "serve.lease_retry_secs",
            "must be at least 1",
        ));
    }
    let concurrency = r.concurrency.unwrap_or(8);
    if !(1..=64).contains(&concurrency) {
        errors.push(ConfigError::new(
            "serve.concurrency",
            "must be between 1 and 64",
        ));
    }
    let scim_poll = r.scim_poll_ms.unwrap_or(1000);
    if !(10..=60_000).contains(&scim_poll) {
        errors.push(ConfigError::new(
            "serve.scim_poll_ms",
            "must be between 10 and 60000",
        ));
    }
    let lease_ttl = r.lease_ttl_secs.unwrap_or(15);
    if !(3..=300).contains(&lease_ttl) {
        errors.push(ConfigError::new(
            "serve.lease_ttl_secs",
            "must be between 3 and 300",
        ));
    }
    let login_snapshots = match r.login_snapshot_secs.unwrap_or(300) {
        0 => None,
        n if (10..=86_400).contains(&n) => Some(Duration::from_secs(n)),
        _ => {
            errors.push(ConfigError::new(
                "serve.login_snapshot_secs",
                "must be 0 (off) or between 10 and 86400",
            ));
            None
        }
    };
    let http = serve_http_limits(r, errors);
    let tls = match (&r.tls_cert_file, &r.tls_key_file) {
        (Some(cert), Some(key)) => Some((base_dir.join(cert), base_dir.join(key))),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            errors.push(ConfigError::new(
                "serve.tls_cert_file",
                "set both serve.tls_cert_file and serve.tls_key_file, or neither",
            ));
            None
        }
    };
    ServeConfig {
        listen,
        tls,
        metrics_listen: http.metrics_listen,
        header_read_timeout: http.header_read_timeout,
        max_connections: http.max_connections,
        shutdown_grace: http.shutdown_grace,
        auth_failure_limit: http.auth_failure_limit,
        auth_failure_window: http.auth_failure_window,
        lease_ttl: Duration::from_secs(lease_ttl),
        scim_poll: Duration::from_millis(scim_poll),
        sync_interval: Duration::from_secs(interval),
        sync_jitter: Duration::from_secs(r.sync_jitter_secs.unwrap_or(30)),
        lease_retry: Duration::from_secs(lease_retry),
        concurrency,
        login_snapshots,
    }
}

fn directory(
    raw: crate::raw::RawDirectory,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<DirectoryConfig> {
    use crate::raw::RawDirectory;
    match raw {
        RawDirectory::Ldap(l) => {
            let key = |f: &str| format!("directory.{f}");
            let preset = l.preset.unwrap_or_else(|| "openldap".into());
            if !matches!(
                preset.as_str(),
                "openldap" | "jumpcloud" | "active_directory"
            ) {
                errors.push(ConfigError::new(
                    key("preset"),
                    "must be openldap, jumpcloud or active_directory",
                ));
            }
            let url = l.url.as_deref().and_then(|u| match Url::parse(u) {
                Ok(u) if matches!(u.scheme(), "ldap" | "ldaps") => Some(u),
                Ok(_) => {
                    errors.push(ConfigError::new(
                        key("url"),
                        "must be an ldap:// or ldaps:// URL",
                    ));
                    None
                }
                Err(e) => {
                    errors.push(ConfigError::new(
                        key("url"),
                        format!("not a valid URL: {e}"),
                    ));
                    None
                }
            });
            if let Some(u) = &url {
                if u.scheme() == "ldap" && !l.starttls && !is_loopback(u) && !l.allow_insecure {
                    errors.push(ConfigError::new(
                        key("url"),
                        "ldap:// without StartTLS to a host that is not loopback sends the bind password in clear; use ldaps://, set directory.starttls = true, or accept the risk with directory.allow_insecure = true",
                    ));
                }
            }
            match preset.as_str() {
                "jumpcloud" if l.org_id.is_none() => errors.push(ConfigError::new(
                    key("org_id"),
                    "the jumpcloud preset needs org_id",
                )),
                "active_directory" if l.base_dn.is_none() || url.is_none() => {
                    errors.push(ConfigError::new(
                        key("base_dn"),
                        "the active_directory preset needs url and base_dn",
                    ))
                }
                "openldap"
                    if url.is_none() || l.user_base_dn.is_none() || l.group_base_dn.is_none() =>
                {
                    errors.push(ConfigError::new(
                        key("url"),
                        "the openldap preset needs url, user_base_dn and group_base_dn",
                    ))
                }
                _ => {}
            }
            if let Some(m) = &l.membership {
                if !matches!(m.as_str(), "member" | "member_of") {
                    errors.push(ConfigError::new(
                        key("membership"),
                        "must be member or member_of",
                    ));
                }
            }
            let bind_password = l
                .bind_password
                .resolve(base_dir, lookup)
                .map_err(|m| errors.push(ConfigError::new(key("bind_password"), m)))
                .ok();
            let ca_pem = l.ca_file.and_then(|p| {
                let p = if p.is_absolute() { p } else { base_dir.join(p) };
                crate::files::read(&p)
                    .map_err(|e| {
                        errors.push(ConfigError::new(
                            key("ca_file"),
                            format!("cannot read {}: {e}", p.display()),
                        ))
                    })
                    .ok()
            });
            Some(DirectoryConfig::Ldap(Box::new(LdapConfig {
                preset,
                url,
                org_id: l.org_id,
                base_dn: l.base_dn,
                bind_dn: l.bind_dn,
                bind_password: bind_password?,
                starttls: l.starttls,
                ca_pem,
                user_base_dn: l.user_base_dn,
                group_base_dn: l.group_base_dn,
                user_filter: l.user_filter,
                group_filter: l.group_filter,
                username_attr: l.username_attr,
                id_attr: l.id_attr,
                email_attr: l.email_attr,
                membership: l.membership,
                disabled_attr: l.disabled_attr,
                disabled_values: l.disabled_values,
                page_size: l.page_size,
                timeout: l.timeout_secs.map(Duration::from_secs),
            })))
        }
        RawDirectory::Scim {} => Some(DirectoryConfig::Scim),
        RawDirectory::File { path } => {
            let path = if path.is_absolute() {
                path
            } else {
                base_dir.join(path)
            };
            Some(DirectoryConfig::File { path })
        }
        j @ RawDirectory::Jumpcloud { .. } => jumpcloud(j, base_dir, lookup, errors),
    }
}

/// `[directory] kind = "jumpcloud"`.
fn jumpcloud(
    raw: crate::raw::RawDirectory,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<DirectoryConfig> {
    use crate::raw::RawDirectory;
    let RawDirectory::Jumpcloud {
        api_key,
        org_id,
        region,
        base_url,
        groups,
        timeout_secs,
        max_retries,
        insights,
        insights_url,
        insights_poll_secs,
    } = raw
    else {
        return None;
    };
    let insights = jumpcloud_insights(
        insights.unwrap_or(false),
        insights_url,
        insights_poll_secs,
        region.as_deref(),
        errors,
    );
    let api_key = api_key
        .resolve(base_dir, lookup)
        .map_err(|m| errors.push(ConfigError::new("directory.api_key", m)))
        .ok();
    let base = match (base_url, region.as_deref()) {
        (Some(u), _) => u,
        (None, None | Some("us")) => "https://console.jumpcloud.com".to_string(),
        (None, Some("eu")) => "https://console.eu.jumpcloud.com".to_string(),
        (None, Some("in")) => "https://console.in.jumpcloud.com".to_string(),
        (None, Some(other)) => {
            errors.push(ConfigError::new(
                "directory.region",
                format!("unknown region `{other}` (us, eu or in)"),
            ));
            return None;
        }
    };
    let base_url = match Url::parse(&base) {
        Ok(u) if u.scheme() == "http" && !is_loopback(&u) => {
            // The directory crate refuses it too; say so before anything is built.
            errors.push(ConfigError::new(
                    "directory.base_url",
                    "must use https:// (the api key travels in a header); http:// is allowed only to a loopback host",
                ));
            None
        }
        Ok(u) => Some(u),
        Err(e) => {
            errors.push(ConfigError::new(
                "directory.base_url",
                format!("not a valid URL: {e}"),
            ));
            None
        }
    };
    let timeout = Duration::from_secs(timeout_secs.unwrap_or(30));
    if timeout.is_zero() {
        errors.push(ConfigError::new(
            "directory.timeout_secs",
            "must be at least 1",
        ));
    }
    Some(DirectoryConfig::JumpCloud {
        api_key: api_key?,
        org_id,
        base_url: base_url?,
        groups,
        timeout,
        max_retries: max_retries.unwrap_or(5),
        insights,
    })
}

fn jumpcloud_insights(
    on: bool,
    url: Option<String>,
    poll_secs: Option<u64>,
    region: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> Option<Box<InsightsConfig>> {
    if !on {
        for (set, key) in [
            (url.is_some(), "directory.insights_url"),
            (poll_secs.is_some(), "directory.insights_poll_secs"),
        ] {
            if set {
                errors.push(ConfigError::new(key, "only read with insights = true"));
            }
        }
        return None;
    }
    let base = url.unwrap_or_else(|| {
        match region {
            Some("eu") => "https://api.eu.jumpcloud.com",
            Some("in") => "https://api.in.jumpcloud.com",
            _ => "https://api.jumpcloud.com",
        }
        .to_owned()
    });
    let poll = poll_secs.unwrap_or(60);
    if !(10..=3600).contains(&poll) {
        errors.push(ConfigError::new(
            "directory.insights_poll_secs",
            "must be between 10 and 3600",
        ));
    }
    match Url::parse(&base) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {
            Some(Box::new(InsightsConfig {
                url: u,
                poll: Duration::from_secs(poll),
            }))
        }
        Ok(_) => {
            errors.push(ConfigError::new(
                "directory.insights_url",
                "must use https:// (the api key travels in a header); http:// is allowed only to a loopback host",
            ));
            None
        }
        Err(e) => {
            errors.push(ConfigError::new(
                "directory.insights_url",
                format!("not a valid URL: {e}"),
            ));
            None
        }
    }
}

fn store_url(url: &str, base_dir: &Path) -> Result<String, String> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err("sqlite URL has no path; use sqlite://airlock.db".into());
        }
        let p = PathBuf::from(path);
        let abs = if p.is_absolute() { p } else { base_dir.join(p) };
        return Ok(format!("sqlite://{}", abs.display()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let parsed = crate::pg_url::PgUrl::parse(url).map_err(|e| e.to_string())?;
        for (param, path) in parsed.files() {
            readable_pem(param, path)?;
        }
        return Ok(url.to_string());
    }
    Err("must start with sqlite:// or postgres://".into())
}

/// Checks that the file a PostgreSQL URL names in `param` can be read and holds PEM, so a
/// typo is reported by `config check` rather than at the first connection.
fn readable_pem(param: &str, path: &Path) -> Result<(), String> {
    let text = crate::files::read(path)
        .map_err(|e| format!("{param} {} cannot be read: {e}", path.display()))?;
    if !text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{param} {} holds no PEM data", path.display()));
    }
    Ok(())
}

/// An instance's URL: http(s), no credentials, query or fragment, and plain http only to a
/// loopback host unless `allow_insecure`.
fn instance_url(
    name: &str,
    raw: &str,
    allow_insecure: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Url> {
    let key = |field: &str| format!("instances.{name}.{field}");
    match Url::parse(raw.trim()) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            errors.push(ConfigError::new(
                key("url"),
                "must be an http:// or https:// URL",
            ));
            None
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            errors.push(ConfigError::new(
                key("url"),
                "must not carry credentials; use username and password instead",
            ));
            None
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            errors.push(ConfigError::new(
                key("url"),
                "must not have a query or fragment",
            ));
            None
        }
        Ok(u) if u.scheme() == "http" && !is_loopback(&u) && !allow_insecure => {
            errors.push(ConfigError::new(
                key("url"),
                format!(
                    "http:// to a host that is not loopback sends airlock's password in clear; use https://, or accept the risk with instances.{name}.allow_insecure = true"
                ),
            ));
            None
        }
        Ok(mut u) => {
            let path = u.path().trim_end_matches('/').to_string();
            u.set_path(&path);
            Some(u)
        }
        Err(e) => {
            errors.push(ConfigError::new(
                key("url"),
                format!("not a valid URL: {e}"),
            ));
            None
        }
    }
}

fn instance(
    name: &str,
    raw: RawInstance,
    base_dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<InstanceConfig> {
    let key = |field: &str| format!("instances.{name}.{field}");
    let before = errors.len();
    let iname = InstanceName::new(name)
        .map_err(|e| errors.push(ConfigError::new(format!("instances.{name}"), e.to_string())))
        .ok();
    let url = instance_url(name, &raw.url, raw.allow_insecure, errors);
    for label in raw.labels.keys() {
        let ok = !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !ok {
            errors.push(ConfigError::new(
                format!("instances.{name}.labels.{label}"),
                "label names may only contain lowercase letters, digits, `-`, `_` and `.`",
            ));
        }
    }
    if raw.username.trim().is_empty() {
        errors.push(ConfigError::new(key("username"), "must not be empty"));
    }
    let password = raw
        .password
        .resolve(base_dir, lookup)
        .map_err(|m| errors.push(ConfigError::new(key("password"), m)))
        .ok();
    let mut secs = |field: &str, v: Option<u64>, default: u64| {
        let v = v.unwrap_or(default);
        if v == 0 || v > 600 {
            errors.push(ConfigError::new(
                key(field),
                "must be between 1 and 600 seconds",
            ));
        }
        Duration::from_secs(v)
    };
    let timeout = secs("timeout_secs", raw.timeout_secs, 30);
    let connect_timeout = secs("connect_timeout_secs", raw.connect_timeout_secs, 10);
    let max_concurrency = raw.max_concurrency.unwrap_or(4);
    if !(1..=64).contains(&max_concurrency) {
        errors.push(ConfigError::new(
            key("max_concurrency"),
            "must be between 1 and 64",
        ));
    }
    let max_retries = raw.max_retries.unwrap_or(4);
    if max_retries > 10 {
        errors.push(ConfigError::new(key("max_retries"), "must be at most 10"));
    }
    let ca_pem = raw.ca_file.and_then(|p| {
        let p = if p.is_absolute() { p } else { base_dir.join(p) };
        match crate::files::read(&p) {
            Ok(bytes)
                if String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") =>
            {
                Some(bytes)
            }
            Ok(_) => {
                errors.push(ConfigError::new(
                    key("ca_file"),
                    format!("{} holds no PEM certificate", p.display()),
                ));
                None
            }
            Err(e) => {
                errors.push(ConfigError::new(
                    key("ca_file"),
                    format!("cannot read {}: {e}", p.display()),
                ));
                None
            }
        }
    });
    let token_lifetime = Duration::from_secs(raw.token_lifetime_secs.unwrap_or(86_400));
    if token_lifetime.is_zero() {
        errors.push(ConfigError::new(
            key("token_lifetime_secs"),
            "must be at least 1",
        ));
    }
    let jwt_leeway = Duration::from_secs(raw.jwt_leeway_secs.unwrap_or(10));
    if jwt_leeway > Duration::from_secs(86_400) {
        errors.push(ConfigError::new(
            key("jwt_leeway_secs"),
            "must be at most 86400 seconds",
        ));
    }
    let fab_cache_ttl = Duration::from_secs(raw.fab_cache_ttl_secs.unwrap_or(30));
    if fab_cache_ttl > Duration::from_secs(86_400) {
        errors.push(ConfigError::new(
            key("fab_cache_ttl_secs"),
            "must be at most 86400 seconds",
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(InstanceConfig {
        name: iname?,
        url: url?,
        labels: raw.labels,
        username: raw.username,
        password: password?,
        api: raw.api,
        timeout,
        connect_timeout,
        max_concurrency,
        max_retries,
        ca_pem,
        token_lifetime,
        jwt_leeway,
        fab_cache_ttl,
    })
}

/// The `[serve]` keys of the HTTP listeners, validated (only those fields of the result are
/// meaningful).
struct ServeHttp {
    metrics_listen: Option<std::net::SocketAddr>,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown_grace: Duration,
    auth_failure_limit: u32,
    auth_failure_window: Duration,
}

fn serve_http_limits(r: &crate::raw::RawServe, errors: &mut Vec<ConfigError>) -> ServeHttp {
    let mut in_range = |key: &'static str, value: u64, lo: u64, hi: u64| {
        if !(lo..=hi).contains(&value) {
            errors.push(ConfigError::new(
                key,
                format!("must be between {lo} and {hi}"),
            ));
        }
        value
    };
    let header_read_timeout = in_range(
        "serve.header_read_timeout_secs",
        r.header_read_timeout_secs.unwrap_or(10),
        1,
        300,
    );
    let max_connections = in_range(
        "serve.max_connections",
        r.max_connections.unwrap_or(512) as u64,
        1,
        65_536,
    );
    let shutdown_grace = in_range(
        "serve.shutdown_grace_secs",
        r.shutdown_grace_secs.unwrap_or(10),
        1,
        300,
    );
    let auth_failure_limit = in_range(
        "serve.auth_failure_limit",
        u64::from(r.auth_failure_limit.unwrap_or(10)),
        1,
        10_000,
    );
    let auth_failure_window = in_range(
        "serve.auth_failure_window_secs",
        r.auth_failure_window_secs.unwrap_or(60),
        1,
        86_400,
    );
    let metrics_listen = r.metrics_listen.as_deref().and_then(|addr| {
        let parsed = addr.parse::<std::net::SocketAddr>().ok();
        if parsed.is_none() {
            errors.push(ConfigError::new(
                "serve.metrics_listen",
                "must be an address such as 127.0.0.1:9465",
            ));
        }
        parsed
    });
    ServeHttp {
        metrics_listen,
        header_read_timeout: Duration::from_secs(header_read_timeout),
        max_connections: usize::try_from(max_connections).unwrap_or(1),
        shutdown_grace: Duration::from_secs(shutdown_grace),
        auth_failure_limit: u32::try_from(auth_failure_limit).unwrap_or(1),
        auth_failure_window: Duration::from_secs(auth_failure_window),
    }
}

#[cfg(test)]
mod tests {
    use crate::{load_str, LoadError};
    use secrecy::ExposeSecret;
    use std::path::Path;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<crate::Config, Vec<String>> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        load_str(text, Path::new("/etc/airlock/airlock.toml"), &vars).map_err(|e| match e {
            LoadError::Invalid { errors, .. } => errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        })
    }

    const GOOD: &str = r#"
[instances.prod]
url = "https://airflow.example.com/"
labels = { env = "prod", team = "data" }
username = "airlock"
password = { env = "PROD_PW" }
"#;

    #[test]
    fn a_minimal_config_gets_sane_defaults() {
        let c = load(GOOD, &[("PROD_PW", "hunter2")]).expect("valid");
        let i = &c.instances[0];
        assert_eq!(i.url.as_str(), "https://airflow.example.com/");
        assert_eq!(i.password.expose_secret(), "hunter2");
        assert_eq!(i.labels["env"], "prod");
        assert_eq!(
            c.store.url.expose_secret(),
            "sqlite:///etc/airlock/airlock.db"
        );
        assert_eq!(c.inventory.inactive_after_days, 90);
    }

    #[test]
    fn a_scim_directory_takes_no_other_keys() {
        let c = load(
            &format!("{GOOD}\n[directory]\nkind = \"scim\"\n"),
            &[("PROD_PW", "x")],
        )
        .expect("valid");
        assert!(matches!(c.directory, Some(crate::DirectoryConfig::Scim)));
        let errs = load(
            &format!("{GOOD}\n[directory]\nkind = \"scim\"\npath = \"x\"\n"),
            &[("PROD_PW", "x")],
        )
        .expect_err("unknown key refused");
        assert!(errs.join("\n").contains("path"), "{errs:?}");
    }

    #[test]
    fn the_scim_poll_interval_defaults_to_a_second_and_is_bounded() {
        let c = load(GOOD, &[("PROD_PW", "x")]).expect("valid");
        assert_eq!(c.serve.scim_poll, std::time::Duration::from_millis(1000));
        let c = load(
            GOOD,
            &[("PROD_PW", "x"), ("AIRLOCK_SERVE__SCIM_POLL_MS", "250")],
        )
        .expect("valid");
        assert_eq!(c.serve.scim_poll, std::time::Duration::from_millis(250));
        let errs = load(
            &format!("{GOOD}\n[serve]\nscim_poll_ms = 0\n"),
            &[("PROD_PW", "x")],
        )
        .expect_err("out of range");
        assert_eq!(
            errs,
            ["serve.scim_poll_ms: must be between 10 and 60000".to_string()]
        );
    }

    #[test]
    fn the_http_limits_have_defaults_and_every_bad_one_is_reported() {
        let c = load(GOOD, &[("PROD_PW", "x")]).expect("valid");
        assert_eq!(
            c.serve.header_read_timeout,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(c.serve.max_connections, 512);
        assert_eq!(c.serve.shutdown_grace, std::time::Duration::from_secs(10));
        assert_eq!(c.serve.auth_failure_limit, 10);
        assert_eq!(
            c.serve.auth_failure_window,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(c.serve.metrics_listen, None);
        let c = load(
            &format!("{GOOD}\n[serve]\nmetrics_listen = \"127.0.0.1:9465\"\n"),
            &[("PROD_PW", "x")],
        )
        .expect("valid");
        assert_eq!(c.serve.metrics_listen, "127.0.0.1:9465".parse().ok());
        let errs = load(
            &format!(
                "{GOOD}\n[serve]\nmetrics_listen = \"nowhere\"\nheader_read_timeout_secs = 0\n\
                 max_connections = 0\nshutdown_grace_secs = 301\nauth_failure_limit = 0\n\
                 auth_failure_window_secs = 0\n"
            ),
            &[("PROD_PW", "x")],
        )
        .expect_err("out of range");
        assert_eq!(
            errs,
            [
                "serve.auth_failure_limit: must be between 1 and 10000",
                "serve.auth_failure_window_secs: must be between 1 and 86400",
                "serve.header_read_timeout_secs: must be between 1 and 300",
                "serve.max_connections: must be between 1 and 65536",
                "serve.metrics_listen: must be an address such as 127.0.0.1:9465",
                "serve.shutdown_grace_secs: must be between 1 and 300",
            ]
            .map(String::from)
        );
        let errs = load(
            &format!("{GOOD}\n[serve]\ntls_cert_file = \"cert.pem\"\n"),
            &[("PROD_PW", "x")],
        )
        .expect_err("a certificate without its key");
        assert_eq!(
            errs,
            ["serve.tls_cert_file: set both serve.tls_cert_file and serve.tls_key_file, or neither".to_string()]
        );
    }

    #[test]
    fn the_lease_ttl_and_pool_size_have_defaults_and_are_checked() {
        let c = load(GOOD, &[("PROD_PW", "x")]).expect("valid");
        assert_eq!(c.serve.lease_ttl, std::time::Duration::from_secs(15));
        assert_eq!(c.store.pool_size(1), 4);
        assert_eq!(c.store.pool_size(12), 10);
        assert_eq!(c.store.pool_size(100), 20);
        let errs = load(
            &format!("{GOOD}\n[serve]\nlease_ttl_secs = 1\n"),
            &[("PROD_PW", "x")],
        )
        .expect_err("out of range");
        assert_eq!(
            errs,
            ["serve.lease_ttl_secs: must be between 3 and 300".to_string()]
        );
        let errs = load(
            &format!("[store]\nmax_connections = 1\n{GOOD}"),
            &[("PROD_PW", "x")],
        )
        .expect_err("too small");
        assert!(
            errs[0].starts_with("store.max_connections: must be between 3"),
            "{errs:?}"
        );
        let c = load(
            &format!("[store]\nmax_connections = 7\n{GOOD}"),
            &[("PROD_PW", "x")],
        )
        .expect("valid");
        assert_eq!(c.store.pool_size(100), 7);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let errs =
            load(&format!("{GOOD}\npasword = \"x\""), &[("PROD_PW", "x")]).expect_err("invalid");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].contains("instances.prod") && errs[0].contains("pasword"),
            "{errs:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_without_secret_values() {
        let text = r#"
[store]
url = "mysql://x"
[instances.Prod]
url = "ftp://x"
username = ""
password = "s3cr3t-literal"
max_concurrency = 0
[instances.dev]
url = "http://127.0.0.1:8080"
username = "airlock"
password = { env = "MISSING_VAR" }
"#;
        let errs = load(text, &[]).expect_err("invalid");
        let joined = errs.join("\n");
        for needle in [
            "store.url: must start with",
            "instances.Prod: instance name",
            "instances.Prod.url",
            "instances.Prod.username",
            "instances.Prod.max_concurrency",
            "instances.dev.password: environment variable MISSING_VAR is not set",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
        }
        assert!(!joined.contains("s3cr3t-literal"));
    }

    #[test]
    fn env_overrides_beat_the_file() {
        let c = load(
            GOOD,
            &[
                ("PROD_PW", "x"),
                ("AIRLOCK_INSTANCES__PROD__URL", "http://127.0.0.1:9"),
                ("AIRLOCK_STORE__URL", "postgres://u@h/db?sslmode=require"),
            ],
        )
        .expect("valid");
        assert_eq!(c.instances[0].url.as_str(), "http://127.0.0.1:9/");
        assert_eq!(
            c.store.url.expose_secret(),
            "postgres://u@h/db?sslmode=require"
        );
    }

    /// The store URL errors of `url` (a PostgreSQL URL with a password).
    fn store_url_errors(url: &str) -> Vec<String> {
        let errs = load(GOOD, &[("PROD_PW", "x"), ("AIRLOCK_STORE__URL", url)])
            .expect_err("invalid store url");
        for e in &errs {
            assert!(!e.contains("s3cr3t"), "the password leaked: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        errs
    }

    #[test]
    fn a_postgres_url_with_a_bad_sslmode_is_refused_naming_the_key() {
        let errs = store_url_errors("postgres://u:s3cr3t@db.example.com/a?sslmode=verify_full");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("store.url: sslmode verify_full is not one of"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_postgres_url_that_may_be_plaintext_to_a_remote_host_is_refused() {
        for url in [
            "postgres://u:s3cr3t@db.example.com/a",
            "postgres://u:s3cr3t@db.example.com/a?sslmode=prefer",
            "postgres://u:s3cr3t@10.0.0.7/a?sslmode=disable",
        ] {
            let errs = store_url_errors(url);
            assert!(errs[0].starts_with("store.url: "), "{errs:?}");
            assert!(errs[0].contains("plaintext"), "{errs:?}");
        }
        let c = load(
            GOOD,
            &[
                ("PROD_PW", "x"),
                (
                    "AIRLOCK_STORE__URL",
                    "postgres://u@127.0.0.1/a?sslmode=disable",
                ),
            ],
        );
        assert!(c.is_ok(), "loopback may be plaintext: {c:?}");
    }

    #[test]
    fn a_missing_or_unreadable_ca_file_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let errs = store_url_errors(&format!(
            "postgres://u:s3cr3t@db.example.com/a?sslmode=verify-full&sslrootcert={}",
            missing.display()
        ));
        assert_eq!(
            errs,
            vec![format!(
                "store.url: sslrootcert {} cannot be read: No such file or directory (os error 2)",
                missing.display()
            )]
        );
        // A directory cannot be read as a file, even by root (mode bits would not stop root).
        let errs = store_url_errors(&format!(
            "postgres://u:s3cr3t@db.example.com/a?sslmode=verify-full&sslrootcert={}",
            dir.path().display()
        ));
        assert!(errs[0].starts_with("store.url: sslrootcert "), "{errs:?}");
        assert!(errs[0].contains("cannot be read"), "{errs:?}");
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "not a certificate").expect("write");
        let errs = store_url_errors(&format!(
            "postgres://u:s3cr3t@db.example.com/a?sslmode=verify-full&sslrootcert={}",
            not_pem.display()
        ));
        assert!(errs[0].ends_with("holds no PEM data"), "{errs:?}");
    }

    #[test]
    fn a_readable_ca_file_with_verify_full_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let url = format!(
            "postgres://u:s3cr3t@db.example.com/a?sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        let c = load(GOOD, &[("PROD_PW", "x"), ("AIRLOCK_STORE__URL", &url)]).expect("valid");
        assert_eq!(c.store.url.expose_secret(), url);
    }

    #[test]
    fn secrets_can_come_from_files_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "from-file\n").expect("write");
        let text = GOOD.replace("{ env = \"PROD_PW\" }", "{ file = \"pw\" }");
        let vars: Vec<(String, String)> = vec![];
        let c = load_str(&text, &dir.path().join("airlock.toml"), &vars).expect("valid");
        assert_eq!(c.instances[0].password.expose_secret(), "from-file");
    }

    #[test]
    fn url_credentials_are_refused() {
        let text = GOOD.replace(
            "https://airflow.example.com/",
            "https://u:p@airflow.example.com/",
        );
        let errs = load(&text, &[("PROD_PW", "x")]).expect_err("invalid");
        assert!(errs[0].contains("must not carry credentials"), "{errs:?}");
        assert!(!errs[0].contains("u:p"));
    }

    #[test]
    fn a_secret_table_with_both_env_and_file_is_refused() {
        let text = GOOD.replace("{ env = \"PROD_PW\" }", "{ env = \"A\", file = \"b\" }");
        let errs = load(&text, &[]).expect_err("invalid");
        assert!(errs[0].starts_with("instances.prod.password"), "{errs:?}");
    }

    fn with_url(url: &str, extra: &str) -> Result<crate::Config, Vec<String>> {
        let text = GOOD.replace("https://airflow.example.com/", url);
        load(&format!("{text}{extra}\n"), &[("PROD_PW", "hunter2")])
    }

    #[test]
    fn plain_http_is_allowed_only_to_loopback_hosts() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:8080",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://LOCALHOST:8080/airflow",
            "https://airflow.example.com",
            "https://10.0.0.5",
        ] {
            with_url(url, "").unwrap_or_else(|e| panic!("{url} refused: {e:?}"));
        }
        for url in [
            "http://airflow.example.com",
            "http://10.0.0.5:8080",
            "http://128.0.0.1",
            "http://[::2]:8080",
            "http://localhost.example.com",
            "http://0.0.0.0:8080",
        ] {
            let errs = with_url(url, "").expect_err(url);
            assert_eq!(errs.len(), 1, "{url}: {errs:?}");
            assert!(
                errs[0].starts_with("instances.prod.url: http:// to a host that is not loopback sends airlock's password in clear"),
                "{url}: {errs:?}"
            );
            assert!(
                errs[0].contains("instances.prod.allow_insecure = true"),
                "{errs:?}"
            );
            assert!(!errs[0].contains("hunter2"));
        }
    }

    #[test]
    fn allow_insecure_accepts_plain_http_for_that_instance_only() {
        let c = with_url("http://airflow.internal:8080", "allow_insecure = true").expect("allowed");
        assert_eq!(c.instances[0].url.as_str(), "http://airflow.internal:8080/");
        let errs = load(
            &format!(
                "{}allow_insecure = true\n[instances.other]\nurl = \"http://other.internal\"\nusername = \"a\"\npassword = \"p\"\n",
                GOOD.replace("https://airflow.example.com/", "http://airflow.internal")
            ),
            &[("PROD_PW", "x")],
        )
        .expect_err("other instance still refused");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("instances.other.url: http://"),
            "{errs:?}"
        );
        // From the environment too.
        let c = load(
            &GOOD.replace("https://airflow.example.com/", "http://airflow.internal"),
            &[
                ("PROD_PW", "x"),
                ("AIRLOCK_INSTANCES__PROD__ALLOW_INSECURE", "true"),
            ],
        )
        .expect("allowed by env");
        assert_eq!(c.instances[0].url.scheme(), "http");
        let errs = load(
            GOOD,
            &[
                ("PROD_PW", "x"),
                ("AIRLOCK_INSTANCES__PROD__ALLOW_INSECURE", "yes"),
            ],
        )
        .expect_err("not a boolean");
        assert!(errs[0].contains("must be true or false"), "{errs:?}");
    }

    fn ldap(url: &str, extra: &str) -> Result<crate::Config, Vec<String>> {
        load(
            &format!(
                "{GOOD}\n[directory]\nkind = \"ldap\"\nurl = \"{url}\"\nbind_dn = \"cn=airlock,dc=example,dc=com\"\nbind_password = {{ env = \"BIND_PW\" }}\nuser_base_dn = \"ou=people,dc=example,dc=com\"\ngroup_base_dn = \"ou=groups,dc=example,dc=com\"\n{extra}\n"
            ),
            &[("PROD_PW", "x"), ("BIND_PW", "bind-s3cret")],
        )
    }

    #[test]
    fn plain_ldap_is_allowed_only_to_loopback_with_starttls_or_when_insecure_is_allowed() {
        for (url, extra) in [
            ("ldap://127.0.0.1:3389", ""),
            ("ldap://localhost", ""),
            ("ldap://[::1]:389", ""),
            ("ldaps://ldap.example.com", ""),
            ("ldap://ldap.example.com", "starttls = true"),
            ("ldap://ldap.example.com", "allow_insecure = true"),
        ] {
            ldap(url, extra).unwrap_or_else(|e| panic!("{url} {extra}: {e:?}"));
        }
        for (url, extra) in [
            ("ldap://ldap.example.com", ""),
            ("ldap://10.1.2.3:389", "starttls = false"),
            ("ldap://ldap.example.com", "allow_insecure = false"),
        ] {
            let errs = ldap(url, extra).expect_err(url);
            assert_eq!(errs.len(), 1, "{url}: {errs:?}");
            assert!(
                errs[0].starts_with("directory.url: ldap:// without StartTLS to a host that is not loopback sends the bind password in clear"),
                "{errs:?}"
            );
            assert!(!errs[0].contains("bind-s3cret"));
        }
    }

    #[test]
    fn a_jumpcloud_base_url_over_plain_http_is_refused_unless_loopback() {
        let jc = |base: &str| {
            load(
                &format!("{GOOD}\n[directory]\nkind = \"jumpcloud\"\napi_key = \"k\"\nbase_url = \"{base}\"\n"),
                &[("PROD_PW", "x")],
            )
        };
        jc("http://127.0.0.1:9000").expect("loopback");
        jc("https://console.jumpcloud.com").expect("https");
        let errs = jc("http://console.jumpcloud.com").expect_err("plain http");
        assert!(
            errs[0].starts_with("directory.base_url: must use https://"),
            "{errs:?}"
        );
    }

    #[test]
    fn directory_insights_follow_the_region_and_need_insights_on() {
        let jc = |extra: &str| {
            load(
                &format!("{GOOD}\n[directory]\nkind = \"jumpcloud\"\napi_key = \"k\"\n{extra}\n"),
                &[("PROD_PW", "x")],
            )
        };
        let url_of = |c: crate::Config| match c.directory {
            Some(crate::DirectoryConfig::JumpCloud { insights, .. }) => {
                insights.map(|i| (i.url.to_string(), i.poll.as_secs()))
            }
            _ => None,
        };
        assert_eq!(url_of(jc("").expect("off")), None);
        assert_eq!(
            url_of(jc("insights = true").expect("on")),
            Some(("https://api.jumpcloud.com/".into(), 60))
        );
        assert_eq!(
            url_of(jc("insights = true\nregion = \"eu\"\ninsights_poll_secs = 30").expect("eu")),
            Some(("https://api.eu.jumpcloud.com/".into(), 30))
        );
        for (extra, want) in [
            (
                "insights_url = \"https://x.example\"",
                "directory.insights_url: only read with insights = true",
            ),
            (
                "insights = true\ninsights_url = \"http://x.example\"",
                "directory.insights_url: must use https://",
            ),
            (
                "insights = true\ninsights_poll_secs = 1",
                "directory.insights_poll_secs: must be between 10 and 3600",
            ),
        ] {
            let errs = jc(extra).expect_err(extra);
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "{extra}: {errs:?}"
            );
        }
    }

    #[test]
    fn broken_toml_gives_one_line() {
        let errs = load("[instances\nurl=", &[]).expect_err("invalid");
        assert_eq!(errs.len(), 1);
        assert!(!errs[0].contains('\n'));
    }
}
