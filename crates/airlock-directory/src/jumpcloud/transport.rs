//! One JumpCloud GET with its headers, classification and retries; knows nothing about paging.
//!
//! Retried: 429 (after `Retry-After` seconds, capped), 5xx, timeouts, failed connections, cut
//! bodies and damaged JSON, with exponential backoff and jitter. Not retried: 401/403 (the key is
//! rejected), other 4xx, redirects (never followed: the key would travel with them) and JSON of
//! the wrong shape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, LINK, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use super::JumpCloudError;

/// The header carrying the administrator's API key (the spec's `x-api-key` security scheme).
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header naming the organisation for multi-tenant administrators.
pub const ORG_ID_HEADER: &str = "x-org-id";
/// The only media type both APIs produce.
const JSON: &str = "application/json";
/// The most read of one response: a page of users or group members is far smaller (pages
/// hold at most 100 entries); more is refused rather than buffered without end.
const MAX_BODY_BYTES: usize = 16 << 20;
/// Longest wait a `Retry-After` can ask for.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// Longest backoff between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest wait for a connection.
const CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(10);

/// A decoded answer and the next page's URL from a `Link: <...>; rel="next"` header.
pub(super) struct Answer<T> {
    pub body: T,
    pub next: Option<Url>,
    /// Directory Insights' paging token (`X-Search_after`: a JSON array), when sent.
    pub search_after: Option<serde_json::Value>,
}

/// Sends GETs with the key, retries what is worth retrying and counts attempts.
pub(super) struct Transport {
    client: reqwest::Client,
    api_key: SecretString,
    org_id: Option<HeaderValue>,
    max_retries: u32,
    retry_base: Duration,
    calls: AtomicU64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("api_key", &self.api_key)
            .field("org_id", &self.org_id)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

/// One failed attempt, and how long the server asked us to wait.
struct Failure {
    error: JumpCloudError,
    retry_after: Option<Duration>,
}

impl From<JumpCloudError> for Failure {
    fn from(error: JumpCloudError) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

/// `GET /api/...`: the method and path of a request, never its query or headers.
pub(super) fn endpoint_of(url: &Url) -> String {
    format!("GET {}", url.path())
}

impl Transport {
    pub(super) fn new(
        api_key: SecretString,
        org_id: Option<&str>,
        timeout: Duration,
        max_retries: u32,
        retry_base: Duration,
    ) -> Result<Self, JumpCloudError> {
        let org_id = org_id.map(HeaderValue::from_str).transpose().map_err(|_| {
            JumpCloudError::InvalidSettings {
                field: "org_id",
                reason: "holds characters an http header cannot carry".to_owned(),
            }
        })?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(CONNECT_TIMEOUT_CAP))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| JumpCloudError::BuildClient { source })?;
        Ok(Self {
            client,
            api_key,
            org_id,
            max_retries,
            retry_base,
            calls: AtomicU64::new(0),
        })
    }

    pub(super) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// GETs `url` and decodes its JSON, retrying transient failures.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        url: &Url,
    ) -> Result<Answer<T>, JumpCloudError> {
        self.call(url, None).await
    }

    /// POSTs `body` as JSON to `url` and decodes the JSON answer, retrying transient failures
    /// (Directory Insights queries are reads: repeating one is harmless).
    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &serde_json::Value,
    ) -> Result<Answer<T>, JumpCloudError> {
        self.call(url, Some(body)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer<T>, JumpCloudError> {
        let endpoint = match body {
            None => endpoint_of(url),
            Some(_) => format!("POST {}", url.path()),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let failure = match self.attempt(url, body, &endpoint, attempt).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            if !failure.error.is_transient() || attempt > self.max_retries {
                return Err(failure.error);
            }
            let delay = match failure.retry_after {
                Some(wait) => wait.min(RETRY_AFTER_CAP),
                None => backoff(self.retry_base, attempt),
            };
            tracing::warn!(
                endpoint = %endpoint,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "jumpcloud request failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: Option<&serde_json::Value>,
        endpoint: &str,
        attempt: u32,
    ) -> Result<Answer<T>, Failure> {
        let mut key = HeaderValue::from_str(self.api_key.expose_secret()).map_err(|_| {
            JumpCloudError::InvalidSettings {
                field: "api_key",
                reason: "holds characters an http header cannot carry".to_owned(),
            }
        })?;
        key.set_sensitive(true);
        let request = match body {
            None => self.client.get(url.clone()),
            Some(b) => self.client.post(url.clone()).json(b),
        };
        let mut request = request.header(ACCEPT, JSON).header(API_KEY_HEADER, key);
        if let Some(org) = &self.org_id {
            request = request.header(ORG_ID_HEADER, org.clone());
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = request
            .send()
            .await
            .map_err(|e| request_failed(endpoint, attempt, e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(JumpCloudError::KeyRejected {
                endpoint: endpoint.to_owned(),
                status: status.as_u16(),
            }
            .into());
        }
        if !status.is_success() {
            let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
                retry_after(response.headers())
            } else {
                None
            };
            return Err(Failure {
                error: JumpCloudError::BadStatus {
                    endpoint: endpoint.to_owned(),
                    status: status.as_u16(),
                    attempts: attempt,
                },
                retry_after,
            });
        }
        let next = next_link(response.headers(), url).map_err(|reason| {
            JumpCloudError::UnexpectedAnswer {
                endpoint: endpoint.to_owned(),
                reason,
            }
        })?;
        let search_after = match response.headers().get("x-search_after") {
            None => None,
            Some(v) => Some(
                (v.to_str().ok())
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                    .filter(serde_json::Value::is_array)
                    .ok_or_else(|| JumpCloudError::UnexpectedAnswer {
                        endpoint: endpoint.to_owned(),
                        reason: "X-Search_after is not a JSON array".into(),
                    })?,
            ),
        };
        let too_large = || JumpCloudError::UnexpectedAnswer {
            endpoint: endpoint.to_owned(),
            reason: format!("response body larger than {} MiB", MAX_BODY_BYTES >> 20),
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(Failure {
                error: too_large(),
                retry_after: None,
            });
        }
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| request_failed(endpoint, attempt, e))?
        {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Failure {
                    error: too_large(),
                    retry_after: None,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = serde_json::from_slice::<T>(&bytes).map_err(|e| {
            use serde_json::error::Category;
            JumpCloudError::MalformedBody {
                endpoint: endpoint.to_owned(),
                attempts: attempt,
                transient: matches!(
                    e.classify(),
                    Category::Eof | Category::Syntax | Category::Io
                ),
                detail: e.to_string(),
            }
        })?;
        Ok(Answer {
            body,
            next,
            search_after,
        })
    }
}

fn request_failed(endpoint: &str, attempt: u32, error: reqwest::Error) -> Failure {
    let (cause, transient) = if error.is_timeout() {
        ("request timed out", true)
    } else if error.is_connect() {
        ("connecting failed", true)
    } else if error.is_body() || error.is_decode() {
        ("reading the body failed", true)
    } else if error.is_builder() {
        ("building the request failed", false)
    } else {
        ("request failed", true)
    };
    JumpCloudError::RequestFailed {
        endpoint: endpoint.to_owned(),
        cause,
        attempts: attempt,
        transient,
        source: error.without_url(),
    }
    .into()
}

/// `Retry-After` in seconds (the HTTP-date form falls back to backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// `base * 2^(attempt-1)`, capped, then a random half to full of it.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = doubled.min(BACKOFF_CAP);
    capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// The `rel="next"` target of the `Link` headers, resolved against the request URL.
fn next_link(headers: &HeaderMap, request: &Url) -> Result<Option<Url>, String> {
    for value in headers.get_all(LINK) {
        let value = value
            .to_str()
            .map_err(|_| "link header is not text".to_owned())?;
        if let Some(target) = find_next(value) {
            return request
                .join(target)
                .map(Some)
                .map_err(|e| format!("next link is not a url: {e}"));
        }
    }
    Ok(None)
}

/// Finds `<target>; rel="next"` in one RFC 8288 `Link` value (targets may hold commas).
fn find_next(value: &str) -> Option<&str> {
    let mut rest = value;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        rest = &rest[close + 1..];
        let params_end = rest.find('<').unwrap_or(rest.len());
        let is_next = rest[..params_end].split(';').any(|param| {
            param.split_once('=').is_some_and(|(name, relations)| {
                name.trim().eq_ignore_ascii_case("rel")
                    && relations
                        .trim()
                        .trim_end_matches(',')
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|relation| relation.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target);
        }
        rest = &rest[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link_among_others_and_with_commas_in_it() {
        assert_eq!(
            find_next(r#"<https://h/api/v2/usergroups?limit=100&skip=100>; rel="next""#),
            Some("https://h/api/v2/usergroups?limit=100&skip=100")
        );
        assert_eq!(
            find_next(
                r#"</a?fields=id,name&skip=0>; rel="prev", </a?fields=id,name&skip=200>; rel="next""#
            ),
            Some("/a?fields=id,name&skip=200")
        );
        assert_eq!(find_next(r#"<https://h/x>; rel="prev last""#), None);
        assert_eq!(find_next(r#"<https://h/x>; rel=next"#), Some("https://h/x"));
        assert_eq!(find_next(""), None);
    }

    #[test]
    fn relative_next_links_resolve_against_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"</api/v2/usergroups?skip=10>; rel="next""#),
        );
        let request =
            Url::parse("http://127.0.0.1:1/api/v2/usergroups?skip=0").expect("test input is valid");
        let next = next_link(&headers, &request)
            .expect("a valid link")
            .expect("a next link");
        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:1/api/v2/usergroups?skip=10"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..=40 {
            let ceiling = base
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(BACKOFF_CAP);
            let delay = backoff(base, attempt);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
