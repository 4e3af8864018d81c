//! `[api]`: the governance API under `/api/v1` in `airlock serve` (off unless the table is
//! present), and `[api.oidc]`: the company's OpenID Connect provider whose tokens it accepts.
//!
//! Validation checks what can be checked without the network: the issuer is an `https://` URL
//! (`http://` only to a loopback host, or with `allow_insecure`), the audience is set, and the
//! algorithm allow-list names only asymmetric algorithms (an HMAC key would be a secret shared
//! with every client; `none` is no signature at all).

use crate::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// How old the directory read that decides a request may be, in seconds (default 30,
    /// 1 to 3600): a leaver loses API access at most this long after the directory says so.
    pub directory_max_age_secs: Option<u64>,
    /// The identity provider whose tokens people call the API with.
    pub oidc: Option<RawOidc>,
}

/// `[api.oidc]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// The issuer, exactly as the provider's tokens and discovery document spell it (JumpCloud:
    /// `https://oauth.id.jumpcloud.com/`, with its trailing slash).
    pub issuer: String,
    /// What a token's `aud` must contain: the API's resource identifier, or the client id of
    /// the application whose ID tokens are sent.
    pub audience: String,
    /// The signature algorithms accepted (default `["RS256", "ES256"]`; RS/PS/ES only).
    pub algorithms: Option<Vec<String>>,
    /// The claim that names the directory person, matched against their directory id,
    /// username and email (default `email`).
    pub person_claim: Option<String>,
    /// The claim holding the caller's groups, as a string or a list (default `groups`).
    pub groups_claim: Option<String>,
    /// When set, a token is accepted only if its groups claim holds one of these groups (the
    /// provider's application assignment); rights still come from the directory.
    pub required_groups: Option<Vec<String>>,
    /// Seconds of clock difference allowed on `exp` and `nbf` (default 30, at most 300).
    pub leeway_secs: Option<u64>,
    /// Accept an `http://` issuer that is not loopback (tokens and keys could be forged on
    /// the way).
    #[serde(default)]
    pub allow_insecure: bool,
}

/// `[api]`, validated.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How old the directory read that decides a request may be.
    pub directory_max_age: Duration,
    /// The accepted identity provider; `None`: only airlock API tokens.
    pub oidc: Option<OidcConfig>,
}

/// `[api.oidc]`, validated.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer, exactly as configured (compared with tokens' `iss` as written: a URL
    /// parser would add a slash to a bare host).
    pub issuer: String,
    /// The required audience.
    pub audience: String,
    /// Accepted algorithms (JOSE names).
    pub algorithms: Vec<String>,
    /// The claim naming the person.
    pub person_claim: String,
    /// The claim holding groups.
    pub groups_claim: String,
    /// Groups of which a token must name one, if any.
    pub required_groups: Option<Vec<String>>,
    /// Allowed clock difference.
    pub leeway: Duration,
}

/// The asymmetric JOSE algorithms airlock verifies.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

const KEY: &str = "api";

pub(crate) fn validate(raw: Option<RawApi>, errors: &mut Vec<ConfigError>) -> Option<ApiConfig> {
    let raw = raw?;
    let age = raw.directory_max_age_secs.unwrap_or(30);
    if !(1..=3600).contains(&age) {
        errors.push(ConfigError::new(
            format!("{KEY}.directory_max_age_secs"),
            "must be between 1 and 3600",
        ));
    }
    let oidc = raw.oidc.and_then(|o| oidc(o, errors));
    Some(ApiConfig {
        directory_max_age: Duration::from_secs(age),
        oidc,
    })
}

fn oidc(raw: RawOidc, errors: &mut Vec<ConfigError>) -> Option<OidcConfig> {
    let key = |k: &str| format!("{KEY}.oidc.{k}");
    let before = errors.len();
    let issuer = match url::Url::parse(&raw.issuer) {
        Ok(u) if u.scheme() == "https" => Some(u),
        Ok(u)
            if u.scheme() == "http" && (crate::validate::is_loopback(&u) || raw.allow_insecure) =>
        {
            Some(u)
        }
        Ok(_) => {
            errors.push(ConfigError::new(
                key("issuer"),
                "must be an https:// URL (http:// only to a loopback host, or with api.oidc.allow_insecure = true)",
            ));
            None
        }
        Err(e) => {
            errors.push(ConfigError::new(key("issuer"), format!("not a URL: {e}")));
            None
        }
    };
    if issuer
        .as_ref()
        .is_some_and(|u| u.query().is_some() || u.fragment().is_some())
    {
        errors.push(ConfigError::new(
            key("issuer"),
            "an issuer has no query or fragment",
        ));
    }
    if raw.audience.trim().is_empty() {
        errors.push(ConfigError::new(key("audience"), "must not be empty"));
    }
    let algorithms = raw
        .algorithms
        .unwrap_or_else(|| vec!["RS256".into(), "ES256".into()]);
    if algorithms.is_empty() {
        errors.push(ConfigError::new(
            key("algorithms"),
            "name at least one algorithm",
        ));
    }
    for alg in &algorithms {
        if !ASYMMETRIC_ALGORITHMS.contains(&alg.as_str()) {
            errors.push(ConfigError::new(
                key("algorithms"),
                format!(
                    "`{alg}` is not accepted: only asymmetric signatures can be checked without sharing a secret with every client ({})",
                    ASYMMETRIC_ALGORITHMS.join(", ")
                ),
            ));
        }
    }
    let claim = |k: &str, v: Option<String>, default: &str, errors: &mut Vec<ConfigError>| {
        let v = v.unwrap_or_else(|| default.into());
        if v.trim().is_empty() {
            errors.push(ConfigError::new(key(k), "must not be empty"));
        }
        v
    };
    let person_claim = claim("person_claim", raw.person_claim, "email", errors);
    let groups_claim = claim("groups_claim", raw.groups_claim, "groups", errors);
    if raw.required_groups.as_ref().is_some_and(Vec::is_empty) {
        errors.push(ConfigError::new(
            key("required_groups"),
            "an empty list would refuse every token; remove the key to accept any group",
        ));
    }
    let leeway = raw.leeway_secs.unwrap_or(30);
    if leeway > 300 {
        errors.push(ConfigError::new(key("leeway_secs"), "must be at most 300"));
    }
    if errors.len() > before {
        return None;
    }
    Some(OidcConfig {
        issuer: issuer.map(|_| raw.issuer)?,
        audience: raw.audience,
        algorithms,
        person_claim,
        groups_claim,
        required_groups: raw.required_groups,
        leeway: Duration::from_secs(leeway),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(issuer: &str) -> RawOidc {
        RawOidc {
            issuer: issuer.into(),
            audience: "airlock-api".into(),
            algorithms: None,
            person_claim: None,
            groups_claim: None,
            required_groups: None,
            leeway_secs: None,
            allow_insecure: false,
        }
    }

    fn check(o: RawOidc) -> Result<OidcConfig, Vec<String>> {
        let mut errors = Vec::new();
        let api = validate(
            Some(RawApi {
                directory_max_age_secs: None,
                oidc: Some(o),
            }),
            &mut errors,
        );
        if errors.is_empty() {
            Ok(api.and_then(|a| a.oidc).expect("validated"))
        } else {
            Err(errors
                .into_iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect())
        }
    }

    #[test]
    fn a_jumpcloud_issuer_keeps_its_trailing_slash_and_gets_safe_defaults() {
        let o = check(raw("https://oauth.id.jumpcloud.com/")).expect("valid");
        assert_eq!(o.issuer, "https://oauth.id.jumpcloud.com/");
        let bare = check(raw("https://accounts.example.com")).expect("valid");
        assert_eq!(
            bare.issuer, "https://accounts.example.com",
            "no slash added"
        );
        assert_eq!(o.algorithms, ["RS256", "ES256"]);
        assert_eq!(
            (o.person_claim.as_str(), o.groups_claim.as_str()),
            ("email", "groups")
        );
        assert_eq!(o.leeway, Duration::from_secs(30));
    }

    #[test]
    fn symmetric_and_absent_signatures_are_refused_by_name() {
        for alg in ["HS256", "none", "HS512", "rs256"] {
            let mut o = raw("https://idp.example.com");
            o.algorithms = Some(vec!["RS256".into(), alg.into()]);
            let errs = check(o).expect_err(alg);
            assert!(
                errs.iter()
                    .any(|e| e.starts_with("api.oidc.algorithms") && e.contains(alg)),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn a_plain_http_issuer_is_refused_unless_loopback_or_allowed() {
        let errs = check(raw("http://idp.example.com/")).expect_err("plain http");
        assert!(errs[0].starts_with("api.oidc.issuer"), "{errs:?}");
        check(raw("http://127.0.0.1:8080/")).expect("loopback");
        let mut o = raw("http://idp.example.com/");
        o.allow_insecure = true;
        check(o).expect("allowed");
    }

    #[test]
    fn empty_settings_are_named() {
        let mut o = raw("https://idp.example.com/");
        o.audience = " ".into();
        o.required_groups = Some(vec![]);
        o.leeway_secs = Some(301);
        let errs = check(o).expect_err("bad");
        for k in ["audience", "required_groups", "leeway_secs"] {
            assert!(
                errs.iter().any(|e| e.starts_with(&format!("api.oidc.{k}"))),
                "{k}: {errs:?}"
            );
        }
    }
}
