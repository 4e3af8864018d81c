//! The behaviour every backend must share. Each function takes a fresh [`TestDb`]; `main.rs`
//! runs every one of them against SQLite and against PostgreSQL.

use std::collections::BTreeSet;

use airlock_store::{
    supported_schema_version, ManagedOrigin, OpenOptions, SnapshotId, SnapshotMeta, SnapshotStatus,
    Store, StoreError,
};
use anyhow::{ensure, Context as _};

use crate::support::TestDb;

fn meta(users: i64, roles: i64) -> SnapshotMeta {
    SnapshotMeta {
        airflow_version: "2.10.5".to_owned(),
        user_count: users,
        role_count: roles,
    }
}

/// Begins and completes a snapshot of `instance` started at `at`, with `at` in its payload.
async fn complete_at(store: &Store, instance: &str, at: i64) -> anyhow::Result<SnapshotId> {
    let id = store.begin_snapshot(instance, at).await?;
    store
        .complete_snapshot(&id, at + 10, &meta(at, 1), &format!(r#"{{"at":{at}}}"#))
        .await?;
    Ok(id)
}

async fn count_applied_migrations(db: &TestDb) -> anyhow::Result<i64> {
    let pool = db.raw_pool().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(n)
}

pub async fn the_store_reports_which_backend_it_uses(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    assert_eq!(store.backend(), db.backend());
    Ok(())
}

pub async fn a_new_store_is_at_the_newest_schema_version(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    assert!(supported_schema_version() >= 2);
    assert_eq!(store.schema_version().await?, supported_schema_version());
    assert_eq!(
        count_applied_migrations(&db).await?,
        supported_schema_version()
    );
    Ok(())
}

pub async fn reopening_a_store_applies_no_migration_twice_and_keeps_its_data(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let id = complete_at(&store, "prod", 1_000).await?;
    store.record_created_account("prod", "alice", 1_000).await?;
    store.close().await;

    for _ in 0..2 {
        let store = Store::open(db.url(), OpenOptions::existing()).await?;
        assert_eq!(store.schema_version().await?, supported_schema_version());
        let latest = store.latest_complete_snapshots("prod", 5).await?;
        assert_eq!(latest.iter().map(|s| &s.id).collect::<Vec<_>>(), [&id]);
        assert_eq!(
            store.created_accounts("prod").await?,
            BTreeSet::from(["alice".to_owned()])
        );
        store.close().await;
    }
    assert_eq!(
        count_applied_migrations(&db).await?,
        supported_schema_version()
    );
    Ok(())
}

pub async fn a_begun_snapshot_is_running_until_it_finishes(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let id = store.begin_snapshot("prod", 1_000).await?;

    let runs = store.snapshot_runs(Some("prod"), 10).await?;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    assert_eq!(runs[0].instance, "prod");
    assert_eq!(runs[0].status, SnapshotStatus::Running);
    assert_eq!(runs[0].started_at_ms, 1_000);
    assert_eq!(runs[0].finished_at_ms, None);
    assert_eq!(runs[0].error, None);
    assert!(store
        .latest_complete_snapshots("prod", 10)
        .await?
        .is_empty());

    store
        .complete_snapshot(&id, 2_000, &meta(3, 4), "{}")
        .await?;
    let runs = store.snapshot_runs(Some("prod"), 10).await?;
    assert_eq!(runs[0].status, SnapshotStatus::Complete);
    assert_eq!(runs[0].finished_at_ms, Some(2_000));
    Ok(())
}

pub async fn a_completed_snapshot_returns_its_metadata_and_payload_unchanged(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    // Quotes, backslashes, non-ASCII and a size well past any page or packet boundary.
    let users: Vec<String> = (0..5_000)
        .map(|i| format!(r#"{{"username":"user-{i}","name":"Zoë \"Z\" O'Brien \\ 東京"}}"#))
        .collect();
    let payload = format!(r#"{{"users":[{}]}}"#, users.join(","));
    let id = store.begin_snapshot("prod", 1_700_000_000_000).await?;
    store
        .complete_snapshot(&id, 1_700_000_000_500, &meta(5_000, 7), &payload)
        .await?;

    let latest = store.latest_complete_snapshots("prod", 1).await?;
    assert_eq!(latest.len(), 1);
    let snapshot = &latest[0];
    assert_eq!(snapshot.id, id);
    assert_eq!(snapshot.instance, "prod");
    assert_eq!(snapshot.started_at_ms, 1_700_000_000_000);
    assert_eq!(snapshot.finished_at_ms, 1_700_000_000_500);
    assert_eq!(snapshot.meta, meta(5_000, 7));
    assert!(
        snapshot.payload_json == payload,
        "payload changed in storage"
    );
    Ok(())
}

pub async fn failed_snapshot_is_never_returned_as_complete(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let id = store.begin_snapshot("prod", 1_000).await?;
    store
        .fail_snapshot(&id, 1_500, "airflow answered 503")
        .await?;

    assert!(store
        .latest_complete_snapshots("prod", 10)
        .await?
        .is_empty());
    let runs = store.snapshot_runs(Some("prod"), 10).await?;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, SnapshotStatus::Failed);
    assert_eq!(runs[0].finished_at_ms, Some(1_500));
    assert_eq!(runs[0].error.as_deref(), Some("airflow answered 503"));

    // A failed run cannot be turned into a complete one afterwards.
    let err = store
        .complete_snapshot(&id, 2_000, &meta(1, 1), "{}")
        .await
        .expect_err("completing a failed snapshot must be refused");
    assert!(
        matches!(err, StoreError::SnapshotNotRunning { .. }),
        "{err:?}"
    );
    assert!(store
        .latest_complete_snapshots("prod", 10)
        .await?
        .is_empty());
    Ok(())
}

pub async fn a_finished_snapshot_cannot_be_finished_again(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let id = complete_at(&store, "prod", 1_000).await?;

    let err = store
        .complete_snapshot(&id, 3_000, &meta(9, 9), r#"{"rewritten":true}"#)
        .await
        .expect_err("a complete snapshot must not be rewritten");
    assert_eq!(
        err.to_string(),
        format!("could not complete snapshot {id}: no running snapshot has that id (unknown, or already finished)")
    );
    let err = store
        .fail_snapshot(&id, 3_000, "late failure")
        .await
        .expect_err("a complete snapshot must not become failed");
    assert!(
        matches!(err, StoreError::SnapshotNotRunning { .. }),
        "{err:?}"
    );
    let unknown = SnapshotId("not-a-snapshot".to_owned());
    let err = store
        .fail_snapshot(&unknown, 3_000, "x")
        .await
        .expect_err("an unknown snapshot cannot be failed");
    assert!(
        matches!(err, StoreError::SnapshotNotRunning { .. }),
        "{err:?}"
    );

    let latest = store.latest_complete_snapshots("prod", 10).await?;
    assert_eq!(latest[0].payload_json, r#"{"at":1000}"#);
    assert_eq!(latest[0].meta, meta(1_000, 1));
    Ok(())
}

pub async fn latest_complete_snapshots_are_newest_first_and_skip_running_and_failed(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    complete_at(&store, "prod", 1_000).await?;
    let failed = store.begin_snapshot("prod", 2_000).await?;
    store.fail_snapshot(&failed, 2_100, "boom").await?;
    complete_at(&store, "prod", 3_000).await?;
    store.begin_snapshot("prod", 4_000).await?; // still running
    complete_at(&store, "prod", 500).await?; // an older run that finished late

    let starts = |snapshots: Vec<airlock_store::StoredSnapshot>| {
        snapshots
            .iter()
            .map(|s| s.started_at_ms)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        starts(store.latest_complete_snapshots("prod", 10).await?),
        [3_000, 1_000, 500]
    );
    assert_eq!(
        starts(store.latest_complete_snapshots("prod", 2).await?),
        [3_000, 1_000]
    );
    assert!(store.latest_complete_snapshots("prod", 0).await?.is_empty());
    Ok(())
}

pub async fn snapshots_started_in_the_same_millisecond_have_one_stable_order(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(complete_at(&store, "prod", 1_000).await?);
    }
    ids.sort();
    ids.reverse();

    for _ in 0..3 {
        let latest: Vec<SnapshotId> = store
            .latest_complete_snapshots("prod", 10)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(latest, ids, "ties are broken by id, descending");
        let runs: Vec<SnapshotId> = store
            .snapshot_runs(None, 10)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(runs, ids);
    }
    Ok(())
}

pub async fn latest_complete_snapshots_only_return_the_requested_instance(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let prod = complete_at(&store, "prod", 1_000).await?;
    complete_at(&store, "staging", 2_000).await?;
    complete_at(&store, "Prod", 3_000).await?; // instance names are case-sensitive

    let latest = store.latest_complete_snapshots("prod", 10).await?;
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].id, prod);
    assert_eq!(latest[0].instance, "prod");
    assert!(store.latest_complete_snapshots("dev", 10).await?.is_empty());
    Ok(())
}

pub async fn snapshot_runs_list_every_status_newest_first_and_filter_by_instance(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    complete_at(&store, "prod", 1_000).await?;
    let failed = store.begin_snapshot("staging", 2_000).await?;
    store.fail_snapshot(&failed, 2_500, "timeout").await?;
    store.begin_snapshot("prod", 3_000).await?;

    let all = store.snapshot_runs(None, 10).await?;
    let summary: Vec<(&str, SnapshotStatus, i64)> = all
        .iter()
        .map(|r| (r.instance.as_str(), r.status, r.started_at_ms))
        .collect();
    assert_eq!(
        summary,
        [
            ("prod", SnapshotStatus::Running, 3_000),
            ("staging", SnapshotStatus::Failed, 2_000),
            ("prod", SnapshotStatus::Complete, 1_000),
        ]
    );
    assert_eq!(all[1].error.as_deref(), Some("timeout"));
    assert_eq!(all[2].finished_at_ms, Some(1_010));

    let prod = store.snapshot_runs(Some("prod"), 10).await?;
    assert_eq!(
        prod.iter().map(|r| r.started_at_ms).collect::<Vec<_>>(),
        [3_000, 1_000]
    );
    assert_eq!(store.snapshot_runs(None, 2).await?.len(), 2);
    assert!(store.snapshot_runs(Some("dev"), 10).await?.is_empty());
    Ok(())
}

pub async fn recording_a_created_account_twice_is_idempotent(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    store.record_created_account("prod", "alice", 1_000).await?;
    store.record_created_account("prod", "alice", 1_000).await?;
    store.record_created_account("prod", "bob", 2_000).await?;
    assert_eq!(
        store.created_accounts("prod").await?,
        BTreeSet::from(["alice".to_owned(), "bob".to_owned()])
    );
    let pool = db.raw_pool().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM created_accounts")
        .fetch_one(&pool)
        .await?;
    ensure!(rows == 2, "expected 2 rows, found {rows}");
    pool.close().await;
    Ok(())
}

pub async fn created_accounts_compare_usernames_case_insensitively(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    store.record_created_account("prod", "Alice", 1_000).await?;
    store.record_created_account("prod", "ALICE", 2_000).await?;
    assert_eq!(
        store.created_accounts("prod").await?,
        BTreeSet::from(["alice".to_owned()])
    );

    // The spelling airlock used last is kept next to the key.
    let pool = db.raw_pool().await;
    let (spelling, at): (String, i64) = sqlx::query_as(
        "SELECT username, created_at_ms FROM created_accounts WHERE username_key = 'alice'",
    )
    .fetch_one(&pool)
    .await
    .context("read the stored spelling")?;
    pool.close().await;
    assert_eq!((spelling.as_str(), at), ("ALICE", 2_000));

    store.forget_created_account("prod", "aLiCe").await?;
    assert!(store.created_accounts("prod").await?.is_empty());
    Ok(())
}

/// Usernames fold as FAB folds them (ASCII letters only): `ÅSA` and `åsa` are two accounts
/// in Airflow, so two records here, in every table keyed by username; `ÉLODIE` and `Élodie`
/// are one. A store whose keys were folded in full Unicode (before migration 0010) is rekeyed.
pub async fn usernames_fold_ascii_letters_only_as_fab_does(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    for name in ["ÅSA", "åsa", "ÉLODIE", "Élodie"] {
        store.record_created_account("prod", name, 1_000).await?;
        (store.manage_account("prod", name, ManagedOrigin::Created, 1_000)).await?;
    }
    assert_eq!(
        store.created_accounts("prod").await?,
        BTreeSet::from(["Åsa", "åsa", "Élodie"].map(str::to_owned))
    );
    let managed: BTreeSet<String> = (store.managed_accounts("prod").await?)
        .into_iter()
        .map(|m| m.username)
        .collect();
    assert_eq!(
        managed,
        BTreeSet::from(["ÅSA", "åsa", "ÉLODIE"].map(str::to_owned))
    );
    store.forget_managed("prod", "åsa").await?;
    let managed: Vec<String> = (store.managed_accounts("prod").await?)
        .into_iter()
        .map(|m| m.username)
        .collect();
    assert!(managed.contains(&"ÅSA".to_owned()), "{managed:?}");
    store.close().await;

    // A row keyed the old way, and migration 0010 run again over it.
    let pool = db.raw_pool().await;
    sqlx::query(
        "INSERT INTO managed_accounts (instance, username_key, username, origin, since_ms) \
         VALUES ('old', 'öla', 'ÖLA', 'created', 1)",
    )
    .execute(&pool)
    .await
    .context("insert an old-style key")?;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 10")
        .execute(&pool)
        .await
        .context("forget migration 10")?;
    pool.close().await;
    let store = db.open().await;
    store.forget_managed("old", "ÖLA").await?;
    ensure!(
        store.managed_accounts("old").await?.is_empty(),
        "the old row was not rekeyed"
    );
    Ok(())
}

pub async fn forgetting_a_created_account_touches_only_that_instance(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    store.record_created_account("prod", "alice", 1_000).await?;
    store
        .record_created_account("staging", "alice", 1_000)
        .await?;
    store.forget_created_account("prod", "alice").await?;
    // Forgetting what was never recorded is fine.
    store.forget_created_account("prod", "nobody").await?;

    assert!(store.created_accounts("prod").await?.is_empty());
    assert_eq!(
        store.created_accounts("staging").await?,
        BTreeSet::from(["alice".to_owned()])
    );
    Ok(())
}

pub async fn a_store_migrated_by_a_newer_airlock_is_refused_before_migrating(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let location = store.location().to_owned();
    store.close().await;

    let newer = supported_schema_version() + 5;
    let pool = db.raw_pool().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(newer)
    .bind("from a newer airlock")
    .bind(true)
    .bind(vec![0_u8; 48])
    .bind(0_i64)
    .execute(&pool)
    .await?;

    let err = Store::open(db.url(), OpenOptions::existing())
        .await
        .expect_err("a newer schema must be refused");
    match &err {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!(*found, newer);
            assert_eq!(*supported, supported_schema_version());
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "state store at {location} has schema version {newer} but this airlock supports up to {}; upgrade airlock",
            supported_schema_version()
        )
    );

    // Nothing was applied or removed by the refused open.
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await?;
    assert_eq!(rows, supported_schema_version() + 1);
    pool.close().await;
    Ok(())
}

pub async fn clones_of_a_store_write_concurrently_without_losing_rows(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4_i64 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..10_i64 {
                let at = worker * 100 + i;
                complete_at(&store, &format!("instance-{worker}"), at).await?;
                store
                    .record_created_account("shared", &format!("user-{worker}-{i}"), at)
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    assert_eq!(store.snapshot_runs(None, 100).await?.len(), 40);
    assert_eq!(store.created_accounts("shared").await?.len(), 40);
    Ok(())
}
