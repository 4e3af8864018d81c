//! Governance API tokens in the store, on both backends: only the hash is kept, a token works
//! until it expires or is revoked, a name is refused while its token is active, and issuing and
//! revoking commit with their audit events.

use airlock_audit::Target;
use airlock_store::{NewApiToken, StoreError, API_TOKEN_PREFIX};
use anyhow::{ensure, Context as _};

use crate::support::TestDb;

on_both_backends!(
    api_tokens =>
    a_token_works_until_it_expires_or_is_revoked_and_only_its_hash_is_kept,
    an_active_name_is_refused_and_a_revoked_one_reissued,
);

fn new(name: &str, lifetime_ms: Option<i64>) -> NewApiToken {
    NewApiToken {
        name: name.into(),
        person: Some("ada".into()),
        scopes: vec!["requests:read".into(), "requests:write".into()],
        lifetime_ms,
    }
}

async fn a_token_works_until_it_expires_or_is_revoked_and_only_its_hash_is_kept(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let (token, secret) = store
        .issue_api_token(&new("bot", Some(60_000)), "operator:t", 1_000)
        .await?;
    ensure!(secret.starts_with(API_TOKEN_PREFIX) && secret.len() > 40);
    ensure!(token.expires_ms == Some(61_000) && token.created_by == "operator:t");
    let found = store
        .authenticate_api_token(&secret, 2_000)
        .await?
        .context("works")?;
    ensure!(found.name == "bot" && found.person.as_deref() == Some("ada"));
    ensure!(found.scopes == ["requests:read", "requests:write"]);
    ensure!(
        store
            .authenticate_api_token(&secret, 61_000)
            .await?
            .is_none(),
        "expired"
    );
    ensure!(store
        .authenticate_api_token(&format!("{secret}x"), 2_000)
        .await?
        .is_none());
    ensure!(store
        .authenticate_api_token("not-ours", 2_000)
        .await?
        .is_none());
    let listed = store.api_tokens().await?;
    ensure!(
        listed.len() == 1 && listed[0].last_used_ms == Some(2_000),
        "{listed:?}"
    );
    // Only the hash is stored, and no event holds the secret.
    let trail = store.audit_events(1, 100).await?;
    let text = format!("{trail:?}");
    ensure!(
        !text.contains(&secret[API_TOKEN_PREFIX.len()..]),
        "secret in the trail"
    );
    ensure!(trail.len() == 1 && trail[0].target == Some(Target::ApiToken { name: "bot".into() }));

    let (_, forever) = store
        .issue_api_token(&new("forever", None), "operator:t", 1_000)
        .await?;
    ensure!(store
        .authenticate_api_token(&forever, i64::MAX / 2)
        .await?
        .is_some());
    store
        .revoke_api_token("forever", "operator:u", 3_000)
        .await?;
    ensure!(
        store
            .authenticate_api_token(&forever, 3_001)
            .await?
            .is_none(),
        "revoked"
    );
    let err = store.revoke_api_token("forever", "operator:u", 3_002).await;
    ensure!(
        matches!(err, Err(StoreError::ApiTokenMissing { .. })),
        "{err:?}"
    );
    let trail = store.audit_events(1, 100).await?;
    ensure!(trail
        .last()
        .is_some_and(|e| e.operation == "api_token.revoke" && e.actor == "operator:u"));
    ensure!(store.verify_audit().await?.is_ok());
    Ok(())
}

async fn an_active_name_is_refused_and_a_revoked_one_reissued(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let (_, first) = store
        .issue_api_token(&new("bot", None), "operator:t", 1_000)
        .await?;
    let err = store
        .issue_api_token(&new("bot", None), "operator:t", 1_001)
        .await;
    ensure!(
        matches!(err, Err(StoreError::ApiTokenExists { .. })),
        "{err:?}"
    );
    ensure!(
        store.audit_events(1, 100).await?.len() == 1,
        "a refusal writes nothing"
    );
    store.revoke_api_token("bot", "operator:t", 2_000).await?;
    let (_, second) = store
        .issue_api_token(&new("bot", None), "operator:t", 3_000)
        .await?;
    ensure!(store.authenticate_api_token(&first, 3_001).await?.is_none());
    ensure!(store
        .authenticate_api_token(&second, 3_001)
        .await?
        .is_some());
    Ok(())
}
