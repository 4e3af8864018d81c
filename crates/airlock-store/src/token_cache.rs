//! SCIM bearer tokens this store handle accepted, remembered for a second.
//!
//! Every SCIM request authenticates, and a lookup in `scim_tokens` for each one was half the
//! database round trips of a filtered GET (and of a PATCH, more than its write, which a group
//! commit shares). A token accepted here is accepted again without a lookup until
//! [`TOKEN_CACHE_MS`] after that lookup, or until it expires, whichever is first.
//!
//! - Revocation: a token revoked or rotated through this handle is forgotten at once; one
//!   revoked elsewhere (`airlock scim token revoke` is another process, and replicas share the
//!   database) stops working here within [`TOKEN_CACHE_MS`].
//! - Only acceptances are kept, keyed by the token's SHA-256 (never the token): a refused token
//!   is looked up every time, so guessing fills nothing, and a caller cannot make an unknown
//!   token look valid.
//! - Time is the caller's (the injected clock): an entry is used only at or after the time it
//!   was checked, so a clock stepping back never stretches it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::ScimClient;

/// How long an accepted token is accepted again without a lookup, at most.
pub const TOKEN_CACHE_MS: i64 = 1_000;

/// More distinct tokens than any deployment has (one or two per identity provider): past it,
/// everything is forgotten rather than anything grown.
const MAX_CACHED: usize = 256;

struct Cached {
    client: ScimClient,
    checked_ms: i64,
    until_ms: i64,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl TokenCache {
    /// The client of the token whose hash is `hash`, if it was accepted less than
    /// [`TOKEN_CACHE_MS`] before `now_ms` and has not expired since.
    pub(crate) fn get(&self, hash: &str, now_ms: i64) -> Option<ScimClient> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = entries.get(hash)?;
        (cached.checked_ms <= now_ms && now_ms < cached.until_ms).then(|| cached.client.clone())
    }

    /// Remembers that the token whose hash is `hash` was accepted at `now_ms`, for `client`;
    /// `expires_ms` is when it must be looked up again at the latest (its expiry, the end of a
    /// rotated token's grace, the time its last use is due to be written), if ever.
    pub(crate) fn put(
        &self,
        hash: String,
        client: ScimClient,
        now_ms: i64,
        expires_ms: Option<i64>,
    ) {
        let until_ms = now_ms
            .saturating_add(TOKEN_CACHE_MS)
            .min(expires_ms.unwrap_or(i64::MAX));
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED && !entries.contains_key(&hash) {
            entries.clear();
        }
        entries.insert(
            hash,
            Cached {
                client,
                checked_ms: now_ms,
                until_ms,
            },
        );
    }

    /// Forgets every token: one was issued, rotated or revoked.
    pub(crate) fn forget_all(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ScimClient {
        ScimClient {
            name: "okta".into(),
            groups: None,
        }
    }

    #[test]
    fn an_accepted_token_is_remembered_for_a_second_at_most() {
        let cache = TokenCache::default();
        cache.put("h".into(), client(), 10_000, None);
        assert_eq!(cache.get("h", 10_000), Some(client()));
        assert_eq!(cache.get("h", 10_999), Some(client()));
        assert_eq!(cache.get("h", 11_000), None);
        assert_eq!(cache.get("other", 10_500), None);
    }

    #[test]
    fn never_past_the_token_s_expiry_nor_before_it_was_checked() {
        let cache = TokenCache::default();
        cache.put("h".into(), client(), 10_000, Some(10_300));
        assert_eq!(cache.get("h", 10_299), Some(client()));
        assert_eq!(cache.get("h", 10_300), None);
        // A clock that stepped back does not stretch the entry.
        assert_eq!(cache.get("h", 9_999), None);
    }

    #[test]
    fn forgetting_and_overflow_drop_entries() {
        let cache = TokenCache::default();
        cache.put("h".into(), client(), 0, None);
        cache.forget_all();
        assert_eq!(cache.get("h", 1), None);
        for n in 0..=MAX_CACHED {
            cache.put(n.to_string(), client(), 0, None);
        }
        let kept = cache.entries.lock().expect("not poisoned").len();
        assert!(kept <= MAX_CACHED, "{kept}");
    }
}
