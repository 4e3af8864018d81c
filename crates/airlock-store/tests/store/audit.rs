//! The audit log in the store, on both backends: appends read back as one verified chain,
//! concurrent appenders (two pools on one database, many tasks) still build one chain, and
//! tampering done with raw SQL, the way someone with database access would, is detected at
//! the right place.

use std::collections::BTreeSet;

use airlock_audit::{
    AuditEvent, ChainBreak, Head, NewEvent, Outcome, Target, VerifySummary, ACCOUNT_CREATE,
    ACCOUNT_SET_ROLES, GENESIS_HASH,
};
use airlock_store::{OpenOptions, Store, StoreError};
use anyhow::{ensure, Context as _};
use serde_json::json;

use crate::support::TestDb;

on_both_backends!(
    audit =>
    appended_audit_events_read_back_as_one_verified_chain,
    an_empty_audit_log_verifies_at_the_genesis_head,
    a_failed_audit_append_stores_none_of_its_events,
    a_reopened_store_continues_the_audit_chain,
    an_edited_event_json_is_reported_as_modified,
    a_deleted_middle_event_is_reported_as_deleted,
    a_deleted_last_event_is_reported_as_truncated,
    a_forged_event_appended_without_the_head_is_reported,
    a_forged_event_inserted_in_the_middle_is_reported,
    swapped_event_seqs_are_reported_as_reordered,
    a_column_that_disagrees_with_its_event_is_reported_as_modified,
    an_unreadable_event_is_modified_for_verify_and_an_error_for_readers,
    a_deleted_head_is_reported_and_stops_appends,
    two_stores_appending_concurrently_build_one_chain,
    verifying_while_others_append_never_reports_a_break,
    the_head_at_a_size_is_read_with_the_verdict,
);

fn at(millis: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(millis).expect("in range")
}

/// A distinct event: `n` shows in its time, username and payload.
fn new_event(n: i64) -> NewEvent {
    let mut new = NewEvent::new(
        at(1_700_000_000_000 + n),
        "airlock",
        ACCOUNT_SET_ROLES,
        Outcome::Succeeded,
    );
    new.run_id = Some("run-1".to_owned());
    new.instance = Some("prod".to_owned());
    new.target = Some(Target::Account {
        username: format!("user-{n}"),
    });
    new.before = Some(json!({"roles": ["Viewer"], "n": n}));
    new.after = Some(json!({"roles": ["Op", "Viewer"], "ratio": 0.1, "name": "Zoë \"Z\" 東京"}));
    new.reason = Some(format!("joined group data-eng ({n})"));
    new
}

/// A store with events 1..=n appended one by one.
async fn store_with(db: &TestDb, n: i64) -> anyhow::Result<(Store, Vec<AuditEvent>)> {
    let store = db.open().await;
    let mut events = Vec::new();
    for i in 1..=n {
        events.extend(store.append_audit(vec![new_event(i)]).await?);
    }
    Ok((store, events))
}

async fn verdict(store: &Store) -> anyhow::Result<Result<VerifySummary, ChainBreak>> {
    Ok(store.verify_audit().await?)
}

/// Runs each statement on a connection that bypasses the store.
async fn raw_sql(db: &TestDb, statements: &[&str]) -> anyhow::Result<()> {
    let pool = db.raw_pool().await;
    for sql in statements {
        sqlx::query(sql)
            .execute(&pool)
            .await
            .with_context(|| format!("tamper: {sql}"))?;
    }
    pool.close().await;
    Ok(())
}

/// Inserts a row the way a forger would, with columns that agree with its JSON.
async fn insert_raw(db: &TestDb, seq: i64, event: &AuditEvent) -> anyhow::Result<()> {
    let pool = db.raw_pool().await;
    sqlx::query(
        "INSERT INTO audit_events (seq, id, at_ms, event_json, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(&event.id)
    .bind(event.at.timestamp_millis())
    .bind(airlock_audit::to_jsonl_line(event))
    .bind(&event.prev_hash)
    .bind(&event.hash)
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}

fn forged(n: i64) -> NewEvent {
    let mut new = NewEvent::new(
        at(1_700_000_000_000 + n),
        "mallory",
        ACCOUNT_CREATE,
        Outcome::Succeeded,
    );
    new.instance = Some("prod".to_owned());
    new.target = Some(Target::Account {
        username: "backdoor".to_owned(),
    });
    new
}

pub async fn appended_audit_events_read_back_as_one_verified_chain(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let mut appended = store
        .append_audit(vec![new_event(1), new_event(2), new_event(3)])
        .await?;
    appended.extend(store.append_audit(vec![new_event(4), new_event(5)]).await?);
    assert_eq!(
        appended.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(appended[0].prev_hash, GENESIS_HASH);
    for pair in appended.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }

    // Read back unchanged, floats and non-ASCII included.
    assert_eq!(store.audit_events(1, 100).await?, appended);
    assert_eq!(store.audit_events(3, 2).await?, appended[2..4]);
    assert!(store.audit_events(6, 10).await?.is_empty());
    assert!(store.audit_events(1, 0).await?.is_empty());

    let head = store.audit_head().await?;
    assert_eq!(head, appended[4].head());
    assert_eq!(
        verdict(&store).await?,
        Ok(VerifySummary {
            count: 5,
            last_hash: appended[4].hash.clone()
        })
    );

    // Paging reads everything once, in order.
    let mut pages = store.audit_pages(1, 2);
    let mut sizes = Vec::new();
    let mut paged = Vec::new();
    while let Some(page) = pages.next_page().await? {
        sizes.push(page.len());
        paged.extend(page);
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(paged, appended);
    assert!(pages.next_page().await?.is_none(), "stays finished");
    let mut from_four = store.audit_pages(4, 10);
    assert_eq!(from_four.next_page().await?, Some(appended[3..].to_vec()));
    assert_eq!(from_four.next_page().await?, None);
    Ok(())
}

pub async fn an_empty_audit_log_verifies_at_the_genesis_head(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    assert_eq!(store.audit_head().await?, Head::genesis());
    assert!(store.append_audit(Vec::new()).await?.is_empty());
    assert_eq!(store.audit_head().await?, Head::genesis());
    assert_eq!(
        verdict(&store).await?,
        Ok(VerifySummary {
            count: 0,
            last_hash: GENESIS_HASH.to_owned()
        })
    );
    assert_eq!(store.audit_pages(1, 10).next_page().await?, None);
    Ok(())
}

pub async fn a_failed_audit_append_stores_none_of_its_events(db: TestDb) -> anyhow::Result<()> {
    let (store, events) = store_with(&db, 2).await?;
    // The second event reuses an id: the insert fails, and the first must not stay behind.
    let mut duplicate = new_event(4);
    duplicate.id = events[0].id.clone();
    let err = store
        .append_audit(vec![new_event(3), duplicate])
        .await
        .expect_err("ids are unique");
    assert!(matches!(err, StoreError::QueryFailed { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("could not append to the audit log in state store at "),
        "{err}"
    );

    assert_eq!(store.audit_head().await?, events[1].head());
    assert_eq!(store.audit_events(1, 10).await?, events);
    assert!(verdict(&store).await?.is_ok());
    let next = store.append_audit(vec![new_event(5)]).await?;
    assert_eq!(next[0].seq, 3);
    assert_eq!(next[0].prev_hash, events[1].hash);
    Ok(())
}

pub async fn a_reopened_store_continues_the_audit_chain(db: TestDb) -> anyhow::Result<()> {
    let (store, events) = store_with(&db, 2).await?;
    store.close().await;
    let store = Store::open(db.url(), OpenOptions::existing()).await?;
    let next = store.append_audit(vec![new_event(3)]).await?;
    assert_eq!(
        (next[0].seq, next[0].prev_hash.as_str()),
        (3, events[1].hash.as_str())
    );
    assert_eq!(verdict(&store).await?.map(|s| s.count), Ok(3));
    Ok(())
}

pub async fn an_edited_event_json_is_reported_as_modified(db: TestDb) -> anyhow::Result<()> {
    let (store, _) = store_with(&db, 5).await?;
    let pool = db.raw_pool().await;
    let json: String = sqlx::query_scalar("SELECT event_json FROM audit_events WHERE seq = 3")
        .fetch_one(&pool)
        .await?;
    let mut event: serde_json::Value = serde_json::from_str(&json)?;
    event["outcome"] = json!({"status": "failed", "error": "nothing happened here"});
    sqlx::query("UPDATE audit_events SET event_json = $1 WHERE seq = 3")
        .bind(event.to_string())
        .execute(&pool)
        .await?;
    pool.close().await;

    let found = verdict(&store).await?;
    assert_eq!(found, Err(ChainBreak::Modified { seq: 3 }));
    let message = found.expect_err("modified").to_string();
    assert_eq!(
        message,
        "audit event 3 was modified: its hash does not match its contents"
    );
    // Readers still get what is stored; only verification judges it.
    let read = store.audit_events(3, 1).await?;
    ensure!(
        !read[0].is_intact(),
        "the stored event no longer matches its hash"
    );
    Ok(())
}

pub async fn a_deleted_middle_event_is_reported_as_deleted(db: TestDb) -> anyhow::Result<()> {
    let (store, _) = store_with(&db, 5).await?;
    raw_sql(&db, &["DELETE FROM audit_events WHERE seq = 3"]).await?;
    let found = verdict(&store).await?;
    assert_eq!(
        found,
        Err(ChainBreak::Deleted {
            after_seq: 2,
            missing: 1
        })
    );
    assert_eq!(
        found.expect_err("deleted").to_string(),
        "audit event 3 was deleted: the log skips from event 2 to event 4"
    );
    Ok(())
}

pub async fn a_deleted_last_event_is_reported_as_truncated(db: TestDb) -> anyhow::Result<()> {
    let (store, _) = store_with(&db, 5).await?;
    raw_sql(&db, &["DELETE FROM audit_events WHERE seq = 5"]).await?;
    let found = verdict(&store).await?;
    assert_eq!(
        found,
        Err(ChainBreak::Truncated {
            expected_count: 5,
            found: 4
        })
    );
    assert_eq!(
        found.expect_err("truncated").to_string(),
        "audit event 5 was deleted from the end: the log ends at event 4 but its head records event 5"
    );
    Ok(())
}

pub async fn a_forged_event_appended_without_the_head_is_reported(
    db: TestDb,
) -> anyhow::Result<()> {
    let (store, events) = store_with(&db, 5).await?;
    // A forger who knows the hash format links the forgery to the real last event.
    let forgery = airlock_audit::seal(events.last(), 6, forged(6));
    insert_raw(&db, 6, &forgery).await?;
    let found = verdict(&store).await?;
    assert_eq!(
        found,
        Err(ChainBreak::BeyondHead {
            seq: 6,
            head_seq: 5
        })
    );
    assert_eq!(
        found.expect_err("forged").to_string(),
        "audit event 6 was inserted after the recorded head (event 5): airlock did not append it"
    );
    Ok(())
}

pub async fn a_forged_event_inserted_in_the_middle_is_reported(db: TestDb) -> anyhow::Result<()> {
    let (store, events) = store_with(&db, 5).await?;
    // Make room at 3 (in two steps: the primary key may not collide mid-statement), then
    // insert a forgery that links correctly to event 2 and claims seq 3.
    raw_sql(
        &db,
        &[
            "UPDATE audit_events SET seq = -seq WHERE seq >= 3",
            "UPDATE audit_events SET seq = 1 - seq WHERE seq < 0",
        ],
    )
    .await?;
    let forgery = airlock_audit::seal(Some(&events[1]), 3, forged(3));
    insert_raw(&db, 3, &forgery).await?;

    let found = verdict(&store).await?;
    assert_eq!(
        found,
        Err(ChainBreak::Inserted {
            seq: 3,
            position: 4
        })
    );
    assert_eq!(
        found.expect_err("inserted").to_string(),
        "an audit event was inserted: event 3 appears again at position 4"
    );

    // A careless forgery (made up hashes) is caught at its own position.
    let db2 = TestDb::new(db.backend()).await;
    let (store2, events2) = store_with(&db2, 3).await?;
    let mut careless = airlock_audit::seal(events2.last(), 4, forged(4));
    careless.hash = "ab".repeat(32);
    insert_raw(&db2, 4, &careless).await?;
    assert_eq!(
        verdict(&store2).await?,
        Err(ChainBreak::Modified { seq: 4 })
    );
    Ok(())
}

pub async fn swapped_event_seqs_are_reported_as_reordered(db: TestDb) -> anyhow::Result<()> {
    let (store, _) = store_with(&db, 5).await?;
    raw_sql(
        &db,
        &[
            "UPDATE audit_events SET seq = -1 WHERE seq = 2",
            "UPDATE audit_events SET seq = 2 WHERE seq = 4",
            "UPDATE audit_events SET seq = 4 WHERE seq = -1",
        ],
    )
    .await?;
    let found = verdict(&store).await?;
    assert_eq!(
        found,
        Err(ChainBreak::Reordered {
            seq: 4,
            position: 2
        })
    );
    assert_eq!(
        found.expect_err("reordered").to_string(),
        "audit event 4 is out of order: it was found at position 2"
    );

    // Moving every row up (order kept) is caught too: the first event is not where it says.
    let db2 = TestDb::new(db.backend()).await;
    let (store2, _) = store_with(&db2, 3).await?;
    raw_sql(&db2, &["UPDATE audit_events SET seq = seq + 10"]).await?;
    assert_eq!(
        verdict(&store2).await?,
        Err(ChainBreak::Reordered {
            seq: 1,
            position: 11
        })
    );
    Ok(())
}

pub async fn a_column_that_disagrees_with_its_event_is_reported_as_modified(
    db: TestDb,
) -> anyhow::Result<()> {
    let (store, events) = store_with(&db, 4).await?;
    for (column, value) in [
        ("hash", "cd".repeat(32)),
        ("prev_hash", "cd".repeat(32)),
        ("id", "0190b2d4-8a00-7000-8000-00000000ffff".to_owned()),
    ] {
        let pool = db.raw_pool().await;
        let original: String =
            sqlx::query_scalar(&format!("SELECT {column} FROM audit_events WHERE seq = 2"))
                .fetch_one(&pool)
                .await?;
        sqlx::query(&format!(
            "UPDATE audit_events SET {column} = $1 WHERE seq = 2"
        ))
        .bind(&value)
        .execute(&pool)
        .await?;
        assert_eq!(
            verdict(&store).await?,
            Err(ChainBreak::Modified { seq: 2 }),
            "column {column}"
        );
        sqlx::query(&format!(
            "UPDATE audit_events SET {column} = $1 WHERE seq = 2"
        ))
        .bind(&original)
        .execute(&pool)
        .await?;
        pool.close().await;
        assert!(verdict(&store).await?.is_ok(), "restored {column}");
    }
    raw_sql(
        &db,
        &["UPDATE audit_events SET at_ms = at_ms + 1 WHERE seq = 2"],
    )
    .await?;
    assert_eq!(verdict(&store).await?, Err(ChainBreak::Modified { seq: 2 }));
    assert_eq!(
        store.audit_events(2, 1).await?,
        events[1..2],
        "readers see the event"
    );
    Ok(())
}

pub async fn an_unreadable_event_is_modified_for_verify_and_an_error_for_readers(
    db: TestDb,
) -> anyhow::Result<()> {
    let (store, _) = store_with(&db, 4).await?;
    raw_sql(
        &db,
        &["UPDATE audit_events SET event_json = 'not json' WHERE seq = 3"],
    )
    .await?;
    assert_eq!(verdict(&store).await?, Err(ChainBreak::Modified { seq: 3 }));

    let err = store
        .audit_events(1, 10)
        .await
        .expect_err("event 3 cannot be read");
    assert!(
        matches!(err, StoreError::AuditEventUnreadable { seq: 3, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("could not read audit event 3 in state store at "),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    assert_eq!(
        store.audit_events(1, 2).await?.len(),
        2,
        "others still read"
    );

    // An added field is refused too, rather than read as the original event.
    raw_sql(
        &db,
        &["UPDATE audit_events SET event_json = replace(event_json, '{\"seq\":2,', '{\"approved\":true,\"seq\":2,') WHERE seq = 2"],
    )
    .await?;
    assert_eq!(verdict(&store).await?, Err(ChainBreak::Modified { seq: 2 }));
    Ok(())
}

pub async fn a_deleted_head_is_reported_and_stops_appends(db: TestDb) -> anyhow::Result<()> {
    let (store, _) = store_with(&db, 2).await?;
    raw_sql(&db, &["DELETE FROM audit_head"]).await?;
    assert_eq!(verdict(&store).await?, Err(ChainBreak::HeadMissing));

    let err = store
        .append_audit(vec![new_event(3)])
        .await
        .expect_err("no head, no append");
    assert!(
        matches!(err, StoreError::AuditHeadMissing { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the audit log's head record is missing"),
        "{err}"
    );
    assert!(matches!(
        store.audit_head().await,
        Err(StoreError::AuditHeadMissing { .. })
    ));
    assert_eq!(
        store.audit_events(1, 10).await?.len(),
        2,
        "nothing appended"
    );
    Ok(())
}

pub async fn two_stores_appending_concurrently_build_one_chain(db: TestDb) -> anyhow::Result<()> {
    const TASKS_PER_STORE: i64 = 3;
    const APPENDS_PER_TASK: i64 = 8;
    // Two pools on one database: two airlock processes, or two replicas.
    let first = db.open().await;
    let second = Store::open(db.url(), OpenOptions::existing()).await?;

    let mut tasks = tokio::task::JoinSet::new();
    for (s, store) in [first.clone(), second.clone()].into_iter().enumerate() {
        for t in 0..TASKS_PER_STORE {
            let store = store.clone();
            let worker = s as i64 * TASKS_PER_STORE + t;
            tasks.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..APPENDS_PER_TASK {
                    let n = worker * 1_000 + i;
                    // Batches of one and two events.
                    let batch = if i % 2 == 0 {
                        vec![new_event(n)]
                    } else {
                        vec![new_event(n), new_event(n + 500)]
                    };
                    let sealed = store.append_audit(batch).await?;
                    ensure!(
                        sealed.windows(2).all(|w| w[1].seq == w[0].seq + 1),
                        "a batch is contiguous"
                    );
                    seqs.extend(sealed.iter().map(|e| e.seq));
                }
                anyhow::Ok(seqs)
            });
        }
    }
    let mut all_seqs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let seqs = joined??;
        ensure!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one task's appends come in its order: {seqs:?}"
        );
        all_seqs.extend(seqs);
    }

    let total = (2 * TASKS_PER_STORE * APPENDS_PER_TASK * 3 / 2) as u64;
    all_seqs.sort_unstable();
    assert_eq!(
        all_seqs,
        (1..=total).collect::<Vec<_>>(),
        "no seq twice, none skipped"
    );

    for store in [&first, &second] {
        assert_eq!(verdict(store).await?.map(|s| s.count), Ok(total));
    }
    let events = first.audit_events(1, 1_000).await?;
    let ids: BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len() as u64, total);
    assert_eq!(second.audit_head().await?, events[events.len() - 1].head());
    Ok(())
}

pub async fn verifying_while_others_append_never_reports_a_break(db: TestDb) -> anyhow::Result<()> {
    const APPENDS: i64 = 40;
    let store = db.open().await;
    let appender = {
        let other = Store::open(db.url(), OpenOptions::existing()).await?;
        tokio::spawn(async move {
            for i in 0..APPENDS {
                other
                    .append_audit(vec![new_event(i), new_event(i + 100)])
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let mut verified = 0;
    while !appender.is_finished() {
        let found = verdict(&store).await?;
        ensure!(
            found.is_ok(),
            "a consistent snapshot never breaks: {found:?}"
        );
        verified += 1;
    }
    appender.await??;
    assert_eq!(
        verdict(&store).await?.map(|s| s.count),
        Ok(2 * APPENDS as u64)
    );
    ensure!(verified > 0, "verified at least once while appending");
    Ok(())
}

pub async fn the_head_at_a_size_is_read_with_the_verdict(db: TestDb) -> anyhow::Result<()> {
    let (store, events) = store_with(&db, 5).await?;
    let (summary, at) = store.verify_audit_at(3).await?.expect("intact");
    assert_eq!(summary.count, 5);
    assert_eq!(at, Some(events[2].head()));
    let (_, at) = store.verify_audit_at(0).await?.expect("intact");
    assert_eq!(at, Some(Head::genesis()));
    let (_, at) = store.verify_audit_at(6).await?.expect("intact");
    assert_eq!(at, None, "the chain is shorter than 6");
    // A broken chain has no head worth comparing.
    raw_sql(&db, &["DELETE FROM audit_events WHERE seq = 5"]).await?;
    ensure!(store.verify_audit_at(3).await?.is_err());
    Ok(())
}
