//! The governance API under `/api/v1`, served by `airlock serve`: just-in-time access requests,
//! approvals and grants, and read access to people, accounts, instances and the audit trail.
//! JSON in and out; every failure is an RFC 7807 problem ([`problem`]); lists are paged with
//! an opaque `after` cursor; `POST /requests` takes an `Idempotency-Key`; the OpenAPI 3.1
//! document is generated from this code ([`openapi`]) and served at `/api/v1/openapi.json`.
//!
//! Callers authenticate with a bearer token ([`auth`]): a token of the company's OpenID
//! Connect provider ([`oidc`]), mapped to a directory person, or an airlock API token (stored
//! as a hash, scoped, expiring, audited). What a caller may do is decided by one pure
//! function, `airlock_core::access::authorize_caller`, against the directory as read at most
//! `[api] directory_max_age_secs` ago ([`directory`]); the changes themselves are the engine's
//! (`airlock_engine::access::Governance`), audited with the acting person.

pub mod auth;
pub mod directory;
pub mod oidc;
pub mod openapi;
pub mod problem;
mod routes;
pub mod views;

pub use auth::Principal;
pub use directory::DirectoryCache;
pub use oidc::{Identity, OidcVerifier, TokenError};
pub use problem::{ApiError, Problem};

use airlock_config::{ApiConfig, Config, InstanceConfig};
use airlock_core::access::AccessPolicy;
use airlock_core::Clock;
use airlock_directory::Source;
use airlock_store::Store;
use std::sync::Arc;

/// Where the API is mounted.
pub const API_BASE_PATH: &str = "/api/v1";
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Items per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// The most items one page holds.
pub const MAX_PAGE: usize = 1000;

/// What the API serves from.
pub struct Api {
    pub(crate) policy: AccessPolicy,
    pub(crate) instances: Vec<InstanceConfig>,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) directory: DirectoryCache,
    pub(crate) oidc: Option<OidcVerifier>,
}

/// Why the API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration has no `[api]`.
    #[error("the governance API is not configured: add an [api] table")]
    NotConfigured,
    /// The OIDC settings cannot be used.
    #[error("api.oidc: {0}")]
    Oidc(#[from] TokenError),
}

impl Api {
    /// The API of `config` (its `[api]`, its policy's `[access]`, its instances), reading the
    /// directory from `source` and the time from `clock`.
    pub fn new(
        config: &Config,
        source: Arc<Source>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Api, SetupError> {
        let api: &ApiConfig = config.api.as_ref().ok_or(SetupError::NotConfigured)?;
        let oidc = api
            .oidc
            .clone()
            .map(|o| OidcVerifier::new(o, clock.clone()))
            .transpose()?;
        Ok(Api {
            policy: config
                .policy
                .as_ref()
                .map(|p| p.access.clone())
                .unwrap_or_default(),
            instances: config.instances.clone(),
            store,
            directory: DirectoryCache::new(source, api.directory_max_age, clock.clone()),
            clock,
            oidc,
        })
    }
}

/// The API's routes under [`API_BASE_PATH`].
pub fn router(api: Api) -> axum::Router {
    routes::router(Arc::new(api))
}
