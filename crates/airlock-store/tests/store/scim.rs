//! SCIM resources and tokens in the store, on both backends: ids and meta are assigned,
//! uniqueness and versions are enforced by the database, and tokens are kept only as hashes.

use airlock_store::{ScimWriteKind, StoreError, SCIM_TOKEN_PREFIX};
use anyhow::{ensure, Context as _};
use serde_json::json;
use sqlx::Row as _;

use crate::support::TestDb;

on_both_backends!(
    scim =>
    a_created_resource_gets_an_id_and_meta_and_reads_back,
    a_duplicate_user_name_is_a_conflict_whatever_its_case,
    a_replace_bumps_the_version_and_refuses_a_stale_expected_version,
    a_replace_onto_a_taken_user_name_is_a_conflict_and_changes_nothing,
    deleting_removes_the_resource_and_an_unknown_id_is_not_found,
    tokens_authenticate_until_revoked_and_only_their_hash_is_stored,
    rotating_a_token_retires_the_old_secret,
    a_client_with_an_active_token_cannot_get_a_second_one,
    replaces_succeed_while_another_store_writes_the_same_database,
    every_write_leaves_a_pending_change_per_consumer_until_acknowledged,
    a_refused_write_leaves_no_pending_change,
    group_names_left_unkeyed_by_the_migration_are_keyed_oldest_first_and_duplicates_kept,
    passwords_an_older_airlock_stored_are_removed_when_the_store_is_opened,
    pages_read_every_resource_once_in_the_order_of_the_full_list,
    external_ids_are_found_exactly_through_their_index,
    a_token_s_last_use_is_written_at_most_once_a_minute,
    concurrent_writes_commit_together_and_a_failing_one_leaves_the_others_whole,
    renames_onto_a_taken_name_fail_alone_among_concurrent_updates,
    concurrent_writes_to_one_resource_all_apply_in_turn,
);

/// Writes arriving together are committed in batches (group commit): 96 concurrent creates, PATCH-like updates and deletes from two store handles on
/// one database, some refused (a taken name, a stale version, an unknown id), leave exactly
/// the successful ones, each with its pending change and its audit event, and a chain that
/// verifies.
async fn concurrent_writes_commit_together_and_a_failing_one_leaves_the_others_whole(
    db: TestDb,
) -> anyhow::Result<()> {
    let first = db.open().await;
    let second = db.open().await;
    first
        .scim_register_consumers(&["prod".to_owned()], 500)
        .await?;
    let before = first
        .verify_audit()
        .await?
        .map_err(|b| anyhow::anyhow!("{b:?}"))?;
    let keep = first
        .scim_create("User", json!({"userName": "keep"}), 1_000, "idp")
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..96usize {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let keep = keep.id.clone();
        tasks.spawn(async move {
            let at = 2_000 + i as i64;
            match i % 4 {
                // A fresh name: succeeds.
                0 | 1 => store
                    .scim_create("User", json!({"userName": format!("u{i}")}), at, "idp")
                    .await
                    .map(|_| "created"),
                // A name every other write of this kind takes as well: one wins per pair.
                2 => store
                    .scim_create(
                        "User",
                        json!({"userName": format!("dup{}", i / 8)}),
                        at,
                        "idp",
                    )
                    .await
                    .map(|_| "created"),
                // An update of a resource that does not exist.
                _ => store
                    .scim_replace(
                        "User",
                        &format!("missing-{keep}-{i}"),
                        json!({"userName": "x"}),
                        None,
                        at,
                        "idp",
                    )
                    .await
                    .map(|_| "replaced"),
            }
        });
    }
    let (mut created, mut conflicts, mut missing) = (0, 0, 0);
    while let Some(result) = tasks.join_next().await {
        match result? {
            Ok("created") => created += 1,
            Ok(other) => anyhow::bail!("unexpected success: {other}"),
            Err(StoreError::ScimConflict { .. }) => conflicts += 1,
            Err(StoreError::ScimNotFound { .. }) => missing += 1,
            Err(err) => anyhow::bail!("unexpected failure: {err}"),
        }
    }
    // 48 fresh names; 24 writes of 12 duplicated names, one of each pair wins.
    ensure!(
        (created, conflicts, missing) == (60, 12, 24),
        "{created} {conflicts} {missing}"
    );
    let users = first.scim_list("User").await?;
    ensure!(users.len() == 61, "{} users", users.len());
    let pending = first.scim_pending_changes("prod", 1_000).await?;
    ensure!(pending.len() == 61, "{} pending changes", pending.len());
    let after = first
        .verify_audit()
        .await?
        .map_err(|b| anyhow::anyhow!("{b:?}"))?;
    ensure!(
        after.count == before.count + 61,
        "{} events after {}",
        after.count,
        before.count
    );
    Ok(())
}

/// Concurrent updates share batches; those that rename a user onto a taken name fail with a
/// conflict (on PostgreSQL a failed statement would spoil the whole transaction without its
/// savepoint), the others commit, and only the successful ones leave a pending change (with
/// the resource as it was) and an audit event.
async fn renames_onto_a_taken_name_fail_alone_among_concurrent_updates(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    store
        .scim_register_consumers(&["prod".to_owned(), "stage".to_owned()], 500)
        .await?;
    store
        .scim_create("User", json!({"userName": "taken"}), 1_000, "idp")
        .await?;
    let mut ids = Vec::new();
    for i in 0..32 {
        let user = store
            .scim_create("User", json!({"userName": format!("u{i}")}), 1_000, "idp")
            .await?;
        ids.push(user.id);
    }
    let acked: Vec<String> = store
        .scim_pending_changes("prod", 1_000)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    store.scim_ack_changes("prod", &acked).await?;
    let before = store
        .verify_audit()
        .await?
        .map_err(|b| anyhow::anyhow!("{b:?}"))?;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().cloned().enumerate() {
        let store = store.clone();
        tasks.spawn(async move {
            let name = if i % 2 == 0 {
                "TAKEN".to_owned()
            } else {
                format!("u{i}")
            };
            store
                .scim_replace(
                    "User",
                    &id,
                    json!({"userName": name, "active": false}),
                    None,
                    2_000,
                    "idp",
                )
                .await
        });
    }
    let (mut replaced, mut conflicts) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result? {
            Ok(_) => replaced += 1,
            Err(StoreError::ScimConflict { .. }) => conflicts += 1,
            Err(err) => anyhow::bail!("unexpected failure: {err}"),
        }
    }
    ensure!((replaced, conflicts) == (16, 16), "{replaced} {conflicts}");
    for (i, id) in ids.iter().enumerate() {
        let user = store.scim_get("User", id).await?.context("user")?;
        let (version, active) = (i64::from(i % 2 == 1) + 1, i % 2 == 0);
        ensure!(
            user.version == version && user.resource["active"].as_bool().unwrap_or(true) == active,
            "user {i}: {:?}",
            user.resource
        );
    }
    for consumer in ["prod", "stage"] {
        let pending = store.scim_pending_changes(consumer, 1_000).await?;
        let updates: Vec<_> = pending.iter().filter(|c| c.previous.is_some()).collect();
        ensure!(updates.len() == 16, "{consumer}: {} updates", updates.len());
        for change in updates {
            let previous = change.previous.as_ref().context("previous")?;
            ensure!(
                previous["meta"]["version"] == json!("W/\"1\"") && previous.get("active").is_none(),
                "{consumer}: previous {previous}"
            );
        }
    }
    let after = store
        .verify_audit()
        .await?
        .map_err(|b| anyhow::anyhow!("{b:?}"))?;
    ensure!(
        after.count == before.count + 16,
        "{} after {}",
        after.count,
        before.count
    );
    Ok(())
}

/// Many writes to one resource at once share batches: each applies to what the one before
/// left (in the batch's view, before anything but the renames reaches the table), none is
/// lost, renames run between deferred updates, and a delete at the end leaves nothing to
/// update. Every write leaves its change, with the version it replaced, and its event.
async fn concurrent_writes_to_one_resource_all_apply_in_turn(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    store
        .scim_register_consumers(&["prod".to_owned()], 500)
        .await?;
    let user = store
        .scim_create("User", json!({"userName": "ada", "count": 0}), 1_000, "idp")
        .await?;
    let other = store
        .scim_create("User", json!({"userName": "bob", "count": 0}), 1_000, "idp")
        .await?;
    let before = store
        .verify_audit()
        .await?
        .map_err(|b| anyhow::anyhow!("{b:?}"))?;
    const WRITES: usize = 48;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..WRITES {
        let store = store.clone();
        let id = if i % 3 == 2 { &other.id } else { &user.id }.clone();
        tasks.spawn(async move {
            store
                .scim_update(
                    "User",
                    &id,
                    None,
                    ScimWriteKind::Patch,
                    2_000,
                    "idp",
                    move |stored| {
                        let mut resource = stored.resource.clone();
                        let count = resource["count"].as_i64().unwrap_or(-1000);
                        resource["count"] = json!(count + 1);
                        if i % 8 == 0 {
                            // A rename: its own statement, between deferred updates.
                            let name = resource["userName"].as_str().unwrap_or("").to_owned();
                            resource["userName"] = json!(format!("{name}-{i}"));
                        }
                        Ok::<_, std::convert::Infallible>(resource)
                    },
                )
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let (ada_writes, bob_writes) = (WRITES - WRITES / 3, WRITES / 3);
    for (id, writes) in [(&user.id, ada_writes), (&other.id, bob_writes)] {
        let stored = store.scim_get("User", id).await?.context("stored")?;
        ensure!(
            stored.resource["count"] == json!(writes) && stored.version == 1 + writes as i64,
            "{writes} writes: version {} {}",
            stored.version,
            stored.resource
        );
        // The stored row is what a fresh read returns, index columns included.
        let name = stored.resource["userName"].as_str().context("name")?;
        let found = store.scim_find_unique("User", &name.to_uppercase()).await?;
        ensure!(found.len() == 1 && found[0] == stored.resource, "{found:?}");
    }
    let pending = store.scim_pending_changes("prod", 1_000).await?;
    let mut replaced: Vec<i64> = pending
        .iter()
        .filter(|c| c.resource_id == user.id && c.previous.is_some())
        .map(|c| {
            c.previous
                .as_ref()
                .map_or(-1, |p| p["count"].as_i64().unwrap_or(-1))
        })
        .collect();
    replaced.sort_unstable();
    ensure!(
        replaced == (0..ada_writes as i64).collect::<Vec<_>>(),
        "{replaced:?}"
    );
    // A delete after updates in the same batch leaves nothing behind.
    let (a, b) = tokio::join!(
        store.scim_update(
            "User",
            &other.id,
            None,
            ScimWriteKind::Patch,
            3_000,
            "idp",
            |s| { Ok::<_, std::convert::Infallible>(s.resource.clone()) }
        ),
        store.scim_delete("User", &other.id, None, 3_000, "idp"),
    );
    ensure!(b.is_ok(), "{b:?}");
    ensure!(
        a.is_ok()
            || matches!(
                a,
                Err(airlock_store::ScimWriteError::Store(
                    StoreError::ScimNotFound { .. }
                ))
            ),
        "{a:?}"
    );
    ensure!(store.scim_get("User", &other.id).await?.is_none());
    let after = store
        .verify_audit()
        .await?
        .map_err(|b| anyhow::anyhow!("{b:?}"))?;
    ensure!(
        after.count > before.count + WRITES as u64,
        "{} after {}",
        after.count,
        before.count
    );
    Ok(())
}

/// Paging through every user reads each one exactly once, in the order of the full list,
/// and every page knows the total; past the end and a zero count give no resources.
async fn pages_read_every_resource_once_in_the_order_of_the_full_list(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    // Several per millisecond, so the order's tie-break (the id) is exercised too.
    for i in 0..23 {
        let at = 1_000 + i / 3;
        store
            .scim_create("User", json!({"userName": format!("u{i:02}")}), at, "idp")
            .await?;
    }
    store
        .scim_create("Group", json!({"displayName": "g"}), 1_000, "idp")
        .await?;
    let all = store.scim_list("User").await?;
    let mut paged = Vec::new();
    for offset in (0..30).step_by(5) {
        let page = store.scim_page("User", offset, 5).await?;
        ensure!(page.total == 23, "total {}", page.total);
        ensure!(page.resources.len() == 5.min(23usize.saturating_sub(offset)));
        paged.extend(page.resources);
    }
    ensure!(paged == all, "pages differ from the full list");
    let counted = store.scim_page("User", 0, 0).await?;
    ensure!(counted.total == 23 && counted.resources.is_empty());
    let groups = store.scim_page("Group", 0, 100).await?;
    ensure!(groups.total == 1 && groups.resources.len() == 1);
    Ok(())
}

async fn external_ids_are_found_exactly_through_their_index(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let ada = store
        .scim_create(
            "User",
            json!({"userName": "ada", "externalId": "00u1AbC"}),
            1_000,
            "idp",
        )
        .await?;
    store
        .scim_create(
            "User",
            json!({"userName": "bob", "externalId": "00u1abc"}),
            1_000,
            "idp",
        )
        .await?;
    let found = store.scim_find_external_id("User", "00u1AbC").await?;
    ensure!(found == vec![ada.resource.clone()], "{found:?}");
    ensure!(store
        .scim_find_external_id("Group", "00u1AbC")
        .await?
        .is_empty());
    ensure!(store
        .scim_find_external_id("User", "00U1ABC")
        .await?
        .is_empty());
    // A replace moves the indexed value with the resource.
    store
        .scim_replace(
            "User",
            &ada.id,
            json!({"userName": "ada", "externalId": "moved"}),
            None,
            2_000,
            "idp",
        )
        .await?;
    ensure!(store
        .scim_find_external_id("User", "00u1AbC")
        .await?
        .is_empty());
    ensure!(store.scim_find_external_id("User", "moved").await?.len() == 1);
    Ok(())
}

/// Reads must not be writes: a token used all the time records its last use at most once a
/// minute.
async fn a_token_s_last_use_is_written_at_most_once_a_minute(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let (_, secret) = store.create_scim_token("okta", 1_000).await?;
    let last_used = || async { anyhow::Ok(store.list_scim_tokens().await?[0].last_used_ms) };
    ensure!(store
        .authenticate_scim_token(&secret, 10_000)
        .await?
        .is_some());
    ensure!(last_used().await? == Some(10_000));
    ensure!(store
        .authenticate_scim_token(&secret, 69_999)
        .await?
        .is_some());
    ensure!(
        last_used().await? == Some(10_000),
        "written again within the minute"
    );
    ensure!(store
        .authenticate_scim_token(&secret, 70_000)
        .await?
        .is_some());
    ensure!(last_used().await? == Some(70_000));
    Ok(())
}

/// Before airlock dropped SCIM passwords it stored them, in the resource and in the outbox's
/// copy of the resource as it was. Opening the store removes them, and nothing else.
async fn passwords_an_older_airlock_stored_are_removed_when_the_store_is_opened(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    store
        .scim_register_consumers(&["prod".to_owned()], 1)
        .await?;
    let ada = store
        .scim_create(
            "User",
            json!({"userName": "ada", "title": "password expert"}),
            10,
            "idp",
        )
        .await?;
    let raw = db.raw_pool().await;
    let mut old = ada.resource.clone();
    old["Password"] = json!("Old-Secret-9zz");
    sqlx::query("UPDATE scim_resources SET resource_json = $1 WHERE id = $2")
        .bind(old.to_string())
        .bind(&ada.id)
        .execute(&raw)
        .await?;
    sqlx::query(
        "INSERT INTO scim_changes (id, consumer, resource_type, resource_id, previous_json, \
         changed_ms, client) VALUES ('c-old', 'prod', 'User', $1, $2, 20, 'idp')",
    )
    .bind(&ada.id)
    .bind(old.to_string())
    .execute(&raw)
    .await?;
    store.close().await;
    let store = db.open().await;
    let mut texts: Vec<String> = Vec::new();
    for sql in [
        "SELECT resource_json FROM scim_resources",
        "SELECT COALESCE(previous_json, '') FROM scim_changes",
    ] {
        for row in sqlx::query(sql).fetch_all(&raw).await? {
            texts.push(row.try_get(0)?);
        }
    }
    ensure!(texts.len() == 3, "{texts:?}");
    for text in &texts {
        ensure!(
            !text.contains("Old-Secret-9zz"),
            "a password is still stored: {text}"
        );
    }
    let stored = store.scim_get("User", &ada.id).await?.context("ada")?;
    ensure!(stored.version == 1 && stored.resource["title"] == "password expert");
    ensure!(stored.resource == ada.resource, "{}", stored.resource);
    let pending = store.scim_pending_changes("prod", 10).await?;
    ensure!(pending.len() == 2, "{pending:?}");
    Ok(())
}

/// Migration 8 clears every Group's key (they were exact, now folded); opening the store sets
/// them again. Two groups that differ only in case (allowed before) must both survive: the
/// older one gets the key, the younger keeps none, and the name stays taken.
async fn group_names_left_unkeyed_by_the_migration_are_keyed_oldest_first_and_duplicates_kept(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let raw = db.raw_pool().await;
    for (id, name, created) in [
        ("g-young", "OPS", 200_i64),
        ("g-old", "Ops", 100),
        ("g-dev", "Dev", 300),
    ] {
        let resource = json!({"id": id, "displayName": name, "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]});
        sqlx::query(
            "INSERT INTO scim_resources (resource_type, id, unique_key, external_id, version, \
             created_ms, modified_ms, resource_json) VALUES ('Group', $1, NULL, NULL, 1, $2, $2, $3)",
        )
        .bind(id)
        .bind(created)
        .bind(resource.to_string())
        .execute(&raw)
        .await?;
    }
    store.close().await;
    let store = db.open().await;
    let keys: Vec<(String, Option<String>)> = sqlx::query(
        "SELECT id, unique_key FROM scim_resources WHERE resource_type = 'Group' ORDER BY id",
    )
    .fetch_all(&raw)
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()?;
    ensure!(
        keys == vec![
            ("g-dev".to_owned(), Some("dev".to_owned())),
            ("g-old".to_owned(), Some("ops".to_owned())),
            ("g-young".to_owned(), None),
        ],
        "{keys:?}"
    );
    ensure!(
        store.scim_list("Group").await?.len() == 3,
        "nothing is dropped"
    );
    let found = store.scim_find_unique("Group", "oPS").await?;
    ensure!(found.len() == 1 && found[0]["id"] == "g-old", "{found:?}");
    let err = store
        .scim_create("Group", json!({"displayName": "ops"}), 400, "idp")
        .await
        .expect_err("the name is taken");
    ensure!(matches!(err, StoreError::ScimConflict { .. }), "{err}");
    // Reopening changes nothing more.
    store.close().await;
    let store = db.open().await;
    ensure!(store.scim_find_unique("Group", "ops").await?.len() == 1);
    Ok(())
}

/// The outbox that drives targeted reconciles: written with the resource, one row per
/// consumer, carrying the resource as it was before the write.
async fn every_write_leaves_a_pending_change_per_consumer_until_acknowledged(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let both = ["prod".to_owned(), "dev".to_owned()];
    store.scim_register_consumers(&both, 500).await?;
    let ada = store
        .scim_create("User", json!({"userName": "ada"}), 1_000, "idp")
        .await?;
    store
        .scim_replace(
            "User",
            &ada.id,
            json!({"userName": "ada", "active": false}),
            None,
            2_000,
            "idp",
        )
        .await?;
    store
        .scim_delete("User", &ada.id, None, 3_000, "idp")
        .await?;
    let prod = store.scim_pending_changes("prod", 100).await?;
    ensure!(prod.len() == 3, "{prod:?}");
    ensure!(prod
        .iter()
        .all(|c| c.resource_type == "User" && c.resource_id == ada.id));
    ensure!(prod.iter().map(|c| c.changed_ms).collect::<Vec<_>>() == [1_000, 2_000, 3_000]);
    ensure!(prod[0].previous.is_none());
    ensure!(prod[1].previous.as_ref().map(|p| &p["active"]) == Some(&json!(null)));
    ensure!(prod[2].previous.as_ref().map(|p| &p["active"]) == Some(&json!(false)));
    ensure!(prod.iter().all(|c| c.client.as_deref() == Some("idp")));
    ensure!(store.scim_pending_changes("dev", 100).await?.len() == 3);
    ensure!(store.scim_pending_changes("prod", 2).await?[..] == prod[..2]);

    // Acknowledging removes only that consumer's rows, only those named.
    store
        .scim_ack_changes("prod", &[prod[0].id.clone(), prod[1].id.clone()])
        .await?;
    ensure!(store.scim_pending_changes("prod", 100).await? == prod[2..]);
    ensure!(store.scim_pending_changes("dev", 100).await?.len() == 3);
    let summary = store.scim_pending_summary().await?;
    ensure!(summary.len() == 2 && summary[0].consumer == "dev" && summary[0].count == 3);
    ensure!(summary[0].oldest_ms == Some(1_000) && summary[1].oldest_ms == Some(3_000));

    // A consumer nobody served for the retention period is dropped with its changes; one
    // that was seen recently is kept, whatever another replica's config says.
    store.scim_register_consumers(&both[..1], 10_000).await?;
    ensure!(store.scim_retire_consumers(5_000).await? == ["dev"]);
    ensure!(store.scim_pending_changes("dev", 100).await?.is_empty());
    ensure!(store.scim_pending_changes("prod", 100).await?.len() == 1);
    store
        .scim_create("User", json!({"userName": "bob"}), 11_000, "idp")
        .await?;
    ensure!(store.scim_pending_changes("dev", 100).await?.is_empty());
    ensure!(store.scim_pending_changes("prod", 100).await?.len() == 2);
    Ok(())
}

async fn a_refused_write_leaves_no_pending_change(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let ada = store
        .scim_create("User", json!({"userName": "ada"}), 1, "idp")
        .await?;
    store
        .scim_register_consumers(&["prod".to_owned()], 1)
        .await?;
    store
        .scim_create("User", json!({"userName": "ADA"}), 2, "idp")
        .await
        .expect_err("duplicate refused");
    store
        .scim_replace(
            "User",
            &ada.id,
            json!({"userName": "ada"}),
            Some(9),
            3,
            "idp",
        )
        .await
        .expect_err("stale version refused");
    store
        .scim_delete("User", "nope", None, 4, "idp")
        .await
        .expect_err("unknown id");
    ensure!(store.scim_pending_changes("prod", 100).await?.is_empty());
    Ok(())
}

/// The service writes audit events and run records while identity providers push SCIM
/// changes: on SQLite a read-then-write transaction used to fail at once with "locked" when
/// another connection committed in between.
async fn replaces_succeed_while_another_store_writes_the_same_database(
    db: TestDb,
) -> anyhow::Result<()> {
    let scim = db.open().await;
    let other = db.open().await;
    let created = scim
        .scim_create("User", json!({"userName": "busy"}), 1_000, "idp")
        .await?;
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            let id = format!("run-{i}");
            other.begin_run(&id, "sync", i, None).await?;
            other
                .finish_run(&id, airlock_store::RunStatus::Succeeded, i + 1, None, "{}")
                .await?;
        }
        anyhow::Ok(())
    });
    for i in 0..100 {
        scim.scim_replace(
            "User",
            &created.id,
            json!({"userName": "busy", "displayName": format!("v{i}")}),
            None,
            2_000 + i,
            "idp",
        )
        .await?;
    }
    writer.await??;
    Ok(())
}

async fn a_created_resource_gets_an_id_and_meta_and_reads_back(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let created = store
        .scim_create(
            "User",
            json!({"userName": "ada", "id": "forged"}),
            1_700_000_000_000,
            "idp",
        )
        .await?;
    ensure!(created.id != "forged" && created.version == 1);
    let meta = &created.resource["meta"];
    ensure!(meta["resourceType"] == "User", "{meta}");
    ensure!(meta["version"] == "W/\"1\"", "{meta}");
    ensure!(meta["created"] == "2023-11-14T22:13:20.000Z", "{meta}");
    ensure!(meta["location"] == format!("/scim/v2/Users/{}", created.id));
    let read = store
        .scim_get("User", &created.id)
        .await?
        .context("created user is readable")?;
    ensure!(read == created);
    ensure!(store.scim_get("Group", &created.id).await?.is_none());
    ensure!(store.scim_list("User").await? == vec![created.resource]);
    ensure!(store.scim_list("Group").await?.is_empty());
    Ok(())
}

async fn a_duplicate_user_name_is_a_conflict_whatever_its_case(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    store
        .scim_create("User", json!({"userName": "Ada@Example.com"}), 1, "idp")
        .await?;
    let err = store
        .scim_create("User", json!({"userName": "ada@example.COM"}), 2, "idp")
        .await
        .expect_err("duplicate refused");
    ensure!(matches!(err, StoreError::ScimConflict { .. }), "{err}");
    // The same name as a Group is a different resource type.
    store
        .scim_create("Group", json!({"displayName": "ada@example.com"}), 3, "idp")
        .await?;
    ensure!(store.scim_list("User").await?.len() == 1);
    Ok(())
}

async fn a_replace_bumps_the_version_and_refuses_a_stale_expected_version(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let created = store
        .scim_create("User", json!({"userName": "ada"}), 1_000, "idp")
        .await?;
    let replaced = store
        .scim_replace(
            "User",
            &created.id,
            json!({"userName": "ada", "active": false}),
            Some(1),
            2_000,
            "idp",
        )
        .await?;
    ensure!(replaced.version == 2);
    ensure!(replaced.resource["meta"]["version"] == "W/\"2\"");
    ensure!(replaced.resource["meta"]["created"] == created.resource["meta"]["created"]);
    ensure!(replaced.resource["active"] == false);
    let err = store
        .scim_replace(
            "User",
            &created.id,
            json!({"userName": "ada"}),
            Some(1),
            3_000,
            "idp",
        )
        .await
        .expect_err("stale version refused");
    ensure!(
        matches!(
            err,
            StoreError::ScimPreconditionFailed {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    let unknown = store
        .scim_replace("User", "nope", json!({"userName": "x"}), None, 3_000, "idp")
        .await
        .expect_err("unknown id");
    ensure!(
        matches!(unknown, StoreError::ScimNotFound { .. }),
        "{unknown}"
    );
    ensure!(store.scim_get("User", &created.id).await? == Some(replaced));
    Ok(())
}

async fn a_replace_onto_a_taken_user_name_is_a_conflict_and_changes_nothing(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    store
        .scim_create("User", json!({"userName": "ada"}), 1, "idp")
        .await?;
    let grace = store
        .scim_create("User", json!({"userName": "grace"}), 1, "idp")
        .await?;
    let err = store
        .scim_replace(
            "User",
            &grace.id,
            json!({"userName": "ADA"}),
            None,
            2,
            "idp",
        )
        .await
        .expect_err("taken name refused");
    ensure!(matches!(err, StoreError::ScimConflict { .. }), "{err}");
    ensure!(store.scim_get("User", &grace.id).await? == Some(grace));
    Ok(())
}

async fn deleting_removes_the_resource_and_an_unknown_id_is_not_found(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let group = store
        .scim_create("Group", json!({"displayName": "eng"}), 1, "idp")
        .await?;
    let stale = store
        .scim_delete("Group", &group.id, Some(7), 9_000, "idp")
        .await
        .expect_err("stale version refused");
    ensure!(
        matches!(stale, StoreError::ScimPreconditionFailed { .. }),
        "{stale}"
    );
    store
        .scim_delete("Group", &group.id, Some(1), 9_000, "idp")
        .await?;
    ensure!(store.scim_get("Group", &group.id).await?.is_none());
    let err = store
        .scim_delete("Group", &group.id, None, 9_000, "idp")
        .await
        .expect_err("already gone");
    ensure!(matches!(err, StoreError::ScimNotFound { .. }), "{err}");
    // The name is free again.
    store
        .scim_create("Group", json!({"displayName": "eng"}), 2, "idp")
        .await?;
    Ok(())
}

async fn tokens_authenticate_until_revoked_and_only_their_hash_is_stored(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let (id, secret) = store.create_scim_token("okta", 1_000).await?;
    ensure!(secret.starts_with(SCIM_TOKEN_PREFIX));
    ensure!(store.authenticate_scim_token(&secret, 2_000).await? == Some("okta".to_owned()));
    ensure!(store
        .authenticate_scim_token("airlock_scim_wrong", 2_000)
        .await?
        .is_none());
    let tokens = store.list_scim_tokens().await?;
    ensure!(tokens.len() == 1 && tokens[0].id == id && tokens[0].last_used_ms == Some(2_000));

    let raw = db.raw_pool().await;
    let rows = sqlx::query("SELECT id, client, token_sha256 FROM scim_tokens")
        .fetch_all(&raw)
        .await?;
    for row in rows {
        for column in 0..3 {
            let value: String = row.try_get(column)?;
            ensure!(
                !value.contains(&secret),
                "the secret is stored in column {column}"
            );
        }
    }

    store.revoke_scim_token("okta", 3_000).await?;
    ensure!(store
        .authenticate_scim_token(&secret, 4_000)
        .await?
        .is_none());
    ensure!(store.list_scim_tokens().await?[0].revoked_ms == Some(3_000));
    let again = store
        .revoke_scim_token("okta", 4_000)
        .await
        .expect_err("no active token");
    ensure!(
        matches!(again, StoreError::ScimTokenMissing { .. }),
        "{again}"
    );
    // A revoked client can be issued a fresh token.
    let (_, fresh) = store.create_scim_token("okta", 5_000).await?;
    ensure!(store.authenticate_scim_token(&fresh, 6_000).await? == Some("okta".to_owned()));
    Ok(())
}

async fn rotating_a_token_retires_the_old_secret(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let (_, old) = store.create_scim_token("entra", 1).await?;
    let new = store.rotate_scim_token("entra", 2).await?;
    ensure!(new != old);
    ensure!(store.authenticate_scim_token(&old, 3).await?.is_none());
    ensure!(store.authenticate_scim_token(&new, 3).await? == Some("entra".to_owned()));
    let err = store
        .rotate_scim_token("nobody", 4)
        .await
        .expect_err("unknown client");
    ensure!(matches!(err, StoreError::ScimTokenMissing { .. }), "{err}");
    Ok(())
}

async fn a_client_with_an_active_token_cannot_get_a_second_one(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    store.create_scim_token("jumpcloud", 1).await?;
    let err = store
        .create_scim_token("jumpcloud", 2)
        .await
        .expect_err("second active token refused");
    ensure!(matches!(err, StoreError::ScimTokenExists { .. }), "{err}");
    ensure!(store.list_scim_tokens().await?.len() == 1);
    Ok(())
}
