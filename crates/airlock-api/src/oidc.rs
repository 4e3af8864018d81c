//! Bearer tokens from the company's OpenID Connect provider: the issuer's discovery document,
//! its JWKS (fetched again when a token names a key it does not hold: key rotation), and the
//! checks every token must pass: an allowed asymmetric algorithm, a signature by one of the
//! issuer's keys of the right type, `iss` exactly, `aud` containing the audience, `exp` and
//! `nbf` against the injected clock with the configured leeway.
//!
//! Never logged or returned: the token, any part of it, or a claim's value. Errors say which
//! check failed.

use airlock_config::OidcConfig;
use airlock_core::Clock;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A token that names a key the verifier does not hold makes it fetch the JWKS again, at most
/// this often (a flood of tokens with made-up key ids must not become a flood of fetches).
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Keys are fetched again after this long even when every token names a known one.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Timeout of a discovery or JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest discovery document or JWKS read.
const MAX_DOCUMENT: usize = 256 * 1024;

/// Why a token was not accepted. The text says which check failed, never what the token held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWS compact serialization with a readable header and payload.
    #[error("the bearer token is not a signed JWT")]
    Malformed,
    /// The header names an algorithm that is not allowed (`none`, HMAC, or one not listed).
    #[error("the token's algorithm {0} is not accepted")]
    Algorithm(String),
    /// No key of the issuer's fits the token's key id and algorithm.
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    Signature,
    /// `iss` is not the configured issuer.
    #[error("the token was issued by another issuer")]
    Issuer,
    /// `aud` does not contain the configured audience.
    #[error("the token is meant for another audience")]
    Audience,
    /// `exp` is past (beyond the leeway), or missing.
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A claim airlock needs is missing or not a string.
    #[error("the token has no usable `{0}` claim")]
    MissingClaim(String),
    /// The groups claim holds none of the required groups.
    #[error("the token's groups include none of those allowed to use the API")]
    NotAssigned,
    /// The provider's discovery document or keys could not be read.
    #[error("the identity provider's keys are unavailable: {0}")]
    Provider(String),
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// The configured person claim's value (matched against the directory).
    pub person: String,
    /// The groups claim, as a list (a single string is one group).
    pub groups: Vec<String>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
}

/// One usable public key of the issuer's.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    /// The algorithms this key may verify (its JWK `alg`, else every one of its type).
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct Keys {
    jwks_uri: Option<url::Url>,
    keys: Vec<Key>,
    fetched_at: Option<DateTime<Utc>>,
}

/// Checks bearer tokens of one OpenID Connect provider.
pub struct OidcVerifier {
    config: OidcConfig,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    keys: tokio::sync::RwLock<Keys>,
    refetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The discovery document's address (OpenID Connect Discovery 1.0 §4: the issuer without a
/// trailing slash, then `/.well-known/openid-configuration`).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The algorithms a JWK may verify, `None` for keys airlock never uses (symmetric `oct`
/// keys, encryption keys, unknown curves).
fn key_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let of_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(of_type),
        Some(ka) => {
            let named = match ka {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            of_type.contains(&named).then(|| vec![named])
        }
    }
}

/// The usable keys of a JWKS document; keys that cannot be used are skipped, not fatal (a
/// provider may publish encryption keys or types airlock does not verify with).
fn parse_jwks(doc: &Value) -> Result<Vec<Key>, TokenError> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| TokenError::Provider("the JWKS has no `keys` list".into()))?;
    Ok(keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter_map(|jwk| {
            let algorithms = key_algorithms(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                algorithms,
                key,
            })
        })
        .collect())
}

impl OidcVerifier {
    /// A verifier for `config`'s provider; nothing is fetched until the first token.
    pub fn new(config: OidcConfig, clock: Arc<dyn Clock>) -> Result<OidcVerifier, TokenError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| algorithm(a).ok_or_else(|| TokenError::Algorithm(a.clone())))
            .collect::<Result<_, _>>()?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TokenError::Provider(format!("cannot build an HTTP client: {e}")))?;
        Ok(OidcVerifier {
            config,
            algorithms,
            http,
            clock,
            keys: Default::default(),
            refetch: Default::default(),
        })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The claim that names the directory person.
    pub fn person_claim(&self) -> &str {
        &self.config.person_claim
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<Value, TokenError> {
        let fail = |m: String| TokenError::Provider(format!("{what} at {url}: {m}"));
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status().as_u16())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if body.len() > MAX_DOCUMENT {
            return Err(fail(format!("larger than {MAX_DOCUMENT} bytes")));
        }
        serde_json::from_slice(&body).map_err(|_| fail("not JSON".into()))
    }

    /// Reads the discovery document (once) and the JWKS (every time).
    async fn fetch(&self) -> Result<(), TokenError> {
        let jwks_uri = match self.keys.read().await.jwks_uri.clone() {
            Some(u) => u,
            None => {
                let url = discovery_url(&self.config.issuer);
                let doc = self.get_json(&url, "discovery document").await?;
                if doc.get("issuer").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
                    return Err(TokenError::Provider(format!(
                        "the discovery document at {url} names another issuer than the configured `{}` (check the trailing slash)",
                        self.config.issuer
                    )));
                }
                let uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .and_then(|u| url::Url::parse(u).ok())
                    .ok_or_else(|| {
                        TokenError::Provider(format!(
                            "the discovery document at {url} has no jwks_uri"
                        ))
                    })?;
                let issuer_scheme = url::Url::parse(&self.config.issuer)
                    .map(|u| u.scheme().to_owned())
                    .unwrap_or_default();
                if uri.scheme() != "https" && uri.scheme() != issuer_scheme {
                    return Err(TokenError::Provider(format!(
                        "the jwks_uri of {url} is not https://"
                    )));
                }
                uri
            }
        };
        let doc = self.get_json(jwks_uri.as_str(), "JWKS").await?;
        let keys = parse_jwks(&doc)?;
        tracing::info!(issuer = %self.config.issuer, keys = keys.len(), "read the identity provider's signing keys");
        let mut held = self.keys.write().await;
        *held = Keys {
            jwks_uri: Some(jwks_uri),
            keys,
            fetched_at: Some(self.clock.now()),
        };
        Ok(())
    }

    fn find(keys: &Keys, kid: Option<&str>, alg: Algorithm) -> Option<Key> {
        keys.keys
            .iter()
            .filter(|k| k.algorithms.contains(&alg))
            .find(|k| match kid {
                Some(kid) => k.kid.as_deref() == Some(kid),
                // Without a key id: the first key of the type (a provider with one key may
                // send none).
                None => true,
            })
            .cloned()
    }

    /// The key for `kid`/`alg`, fetching the JWKS when none is held, when the keys are old, or
    /// (at most every [`MIN_REFETCH`]) when the token names a key not held.
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Key, TokenError> {
        let now = self.clock.now();
        let age = |k: &Keys| k.fetched_at.map(|t| (now - t).to_std().unwrap_or_default());
        {
            let keys = self.keys.read().await;
            let fresh = age(&keys).is_some_and(|a| a < MAX_KEY_AGE);
            if let (true, Some(key)) = (fresh, Self::find(&keys, kid, alg)) {
                return Ok(key);
            }
        }
        let _one = self.refetch.lock().await;
        {
            // Another caller may have fetched while this one waited.
            let keys = self.keys.read().await;
            let held = Self::find(&keys, kid, alg);
            match (age(&keys), held) {
                (Some(a), Some(key)) if a < MAX_KEY_AGE => return Ok(key),
                (Some(a), None) if a < MIN_REFETCH => return Err(TokenError::UnknownKey),
                _ => {}
            }
        }
        match self.fetch().await {
            Ok(()) => {}
            Err(e) => {
                // Old keys keep working while the provider is briefly unreachable.
                let keys = self.keys.read().await;
                tracing::warn!(issuer = %self.config.issuer, error = %e, "could not refresh the identity provider's keys");
                return Self::find(&keys, kid, alg).ok_or(e);
            }
        }
        let keys = self.keys.read().await;
        Self::find(&keys, kid, alg).ok_or(TokenError::UnknownKey)
    }

    /// Verifies `token` and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // `alg: none` and other names jsonwebtoken does not know fail here: say which.
            match header_alg(token) {
                Some(alg) => TokenError::Algorithm(alg),
                None => TokenError::Malformed,
            }
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::Signature,
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                        TokenError::Algorithm(format!("{:?}", header.alg))
                    }
                    _ => TokenError::Malformed,
                })?;
        self.check_claims(&data.claims)
    }

    fn check_claims(
        &self,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<Identity, TokenError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err(TokenError::Issuer);
        }
        let audience = self.config.audience.as_str();
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(TokenError::Audience);
        }
        let now = self.clock.now().timestamp();
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(300);
        let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t as i64);
        let exp = time("exp").ok_or(TokenError::Expired)?;
        if exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        for name in ["nbf", "iat"] {
            if time(name).is_some_and(|t| t > now.saturating_add(leeway)) {
                return Err(TokenError::NotYetValid);
            }
        }
        let string = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| TokenError::MissingClaim(name.to_owned()))
        };
        let subject = string("sub")?;
        let person = string(&self.config.person_claim)?;
        let groups = groups(claims.get(&self.config.groups_claim));
        if let Some(required) = &self.config.required_groups {
            if !groups.iter().any(|g| required.contains(g)) {
                return Err(TokenError::NotAssigned);
            }
        }
        Ok(Identity {
            subject,
            person,
            groups,
            expires_at: DateTime::from_timestamp(exp, 0).unwrap_or_default(),
        })
    }
}

/// A groups claim as a list: a list of strings, or one string (JumpCloud and others send a
/// single group as a string); anything else is no groups.
pub fn groups(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::String(g)) if !g.is_empty() => vec![g.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The `alg` a token's header names, read without trusting anything else in it (for the
/// error of a header jsonwebtoken refuses, such as `alg: none`); only short, plain names.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let alg = value.get("alg")?.as_str()?;
    (alg.len() <= 16 && alg.chars().all(|c| c.is_ascii_alphanumeric())).then(|| alg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn discovery_follows_the_issuer_with_or_without_its_trailing_slash() {
        assert_eq!(
            discovery_url("https://oauth.id.jumpcloud.com/"),
            "https://oauth.id.jumpcloud.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://login.example.com/tenant/v2.0"),
            "https://login.example.com/tenant/v2.0/.well-known/openid-configuration"
        );
    }

    #[test]
    fn a_groups_claim_is_a_list_or_one_string() {
        assert_eq!(groups(Some(&json!(["a", "b", 3, ""]))), ["a", "b"]);
        assert_eq!(groups(Some(&json!("admins"))), ["admins"]);
        assert!(groups(Some(&json!({"a": 1}))).is_empty());
        assert!(groups(None).is_empty());
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_used() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "RSA", "use": "enc", "kid": "e", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "use": "sig", "kid": "s", "alg": "RS256", "n": "sXch", "e": "AQAB"},
            {"kty": "weird"}
        ]});
        let keys = parse_jwks(&doc).expect("parsed");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("s"));
        assert_eq!(keys[0].algorithms, [Algorithm::RS256]);
    }

    #[test]
    fn the_header_alg_of_an_unsigned_token_is_named_but_nothing_else_is_echoed() {
        use base64::Engine as _;
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            enc(json!({"alg": "none"})),
            enc(json!({"sub": "x"}))
        );
        assert_eq!(header_alg(&none).as_deref(), Some("none"));
        let evil = format!("{}.e30.", enc(json!({"alg": "<script>\nx"})));
        assert_eq!(header_alg(&evil), None);
    }
}
