//! Who is calling: `Authorization: Bearer <token>`, where the token is either an airlock API
//! token (it starts with `airlock_api_`; checked by its SHA-256 in the store) or a JWT of the
//! configured OpenID Connect provider ([`crate::oidc`]), whose person claim must designate
//! exactly one person in the directory. Anything else is 401, with a problem that says which
//! check failed and never echoes the token.
//!
//! Authentication says who; what they may do is `airlock_core::access::authorize_caller`'s.

use crate::routes::Shared;
use crate::{ApiError, TokenError};
use airlock_core::access::{Caller, Scope};
use airlock_core::directory::{DirectorySnapshot, Found, PersonId};
use airlock_store::API_TOKEN_PREFIX;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::collections::BTreeSet;
use std::sync::Arc;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person, by a token of the identity provider.
    Person {
        /// Their directory id.
        id: PersonId,
        /// The token's `sub`.
        subject: String,
        /// The token's groups claim.
        groups: Vec<String>,
    },
    /// An airlock API token.
    Token {
        /// Its name.
        name: String,
        /// The person it acts as.
        person: Option<PersonId>,
        /// Its scopes.
        scopes: BTreeSet<Scope>,
    },
}

impl Principal {
    /// The caller, for the decision function.
    pub fn caller(&self) -> Caller<'_> {
        match self {
            Principal::Person { id, .. } => Caller::Person(id),
            Principal::Token { person, scopes, .. } => Caller::Token {
                person: person.as_ref(),
                scopes,
            },
        }
    }

    /// The person acting, if any.
    pub fn person(&self) -> Option<&PersonId> {
        match self {
            Principal::Person { id, .. } => Some(id),
            Principal::Token { person, .. } => person.as_ref(),
        }
    }

    /// How the acting person was established, when not by their own sign-in (the audit
    /// events' `reason`).
    pub fn via(&self) -> Option<String> {
        match self {
            Principal::Person { .. } => None,
            Principal::Token { name, .. } => Some(format!("through the API with the token {name}")),
        }
    }
}

/// The bearer token of a request, if it sent one.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthenticated("send Authorization: Bearer <token>".into()))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("the Authorization header is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthenticated(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// The person an identity provider's person claim designates.
fn person_of(directory: &DirectorySnapshot, claim: &str, name: &str) -> Result<PersonId, ApiError> {
    match directory.find(name) {
        Found::One(p) => Ok(p.id.clone()),
        Found::Nobody => Err(ApiError::Forbidden(format!(
            "the token's `{claim}` claim names nobody in the directory"
        ))),
        Found::Several => Err(ApiError::Forbidden(format!(
            "the token's `{claim}` claim names several people in the directory"
        ))),
    }
}

/// Authenticates a request's bearer token.
pub(crate) async fn authenticate(api: &crate::Api, parts: &Parts) -> Result<Principal, ApiError> {
    let token = bearer(parts)?;
    if token.starts_with(API_TOKEN_PREFIX) {
        let now = api.clock.now().timestamp_millis();
        let stored = api
            .store
            .authenticate_api_token(token, now)
            .await?
            .ok_or_else(|| {
                ApiError::Unauthenticated("the API token is unknown, revoked or expired".into())
            })?;
        // Scopes were checked when the token was issued; a name this build does not know
        // grants nothing.
        let scopes = stored
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s).ok())
            .collect();
        return Ok(Principal::Token {
            name: stored.name,
            person: stored.person.map(PersonId),
            scopes,
        });
    }
    let verifier = api.oidc.as_ref().ok_or_else(|| {
        ApiError::Unauthenticated(
            "no identity provider is configured ([api.oidc]); use an airlock API token".into(),
        )
    })?;
    let identity = verifier.verify(token).await.map_err(|e| match e {
        TokenError::Provider(_) => {
            tracing::warn!(error = %e, "api: cannot check a bearer token");
            ApiError::Unavailable(
                "the identity provider's keys cannot be read now; retry later".into(),
            )
        }
        TokenError::NotAssigned => ApiError::Forbidden(e.to_string()),
        e => ApiError::Unauthenticated(e.to_string()),
    })?;
    let directory = api.directory.get().await?;
    Ok(Principal::Person {
        id: person_of(&directory, verifier.person_claim(), &identity.person)?,
        subject: identity.subject,
        groups: identity.groups,
    })
}

/// An authenticated request: extracting it authenticates, or answers the problem.
pub(crate) struct Authed(pub(crate) Principal);

impl FromRequestParts<Shared> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Shared) -> Result<Self, Self::Rejection> {
        authenticate(Arc::as_ref(api), parts).await.map(Authed)
    }
}
