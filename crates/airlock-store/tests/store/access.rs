//! Just-in-time access requests in the store, on both backends: stored with their audit event,
//! changed one at a time (racing approvals apply one after the other), idempotent creation,
//! listing in pages, and what is due.

use airlock_audit::{NewEvent, Outcome, Target, ACCESS_REQUEST_APPROVE, ACCESS_REQUEST_CREATE};
use airlock_store::{ChangeError, Inserted, RequestFilter, StoreError, StoredRequest};
use anyhow::{ensure, Context as _};

use crate::support::TestDb;

on_both_backends!(
    access =>
    a_request_is_stored_with_its_audit_event_and_read_back,
    an_idempotency_key_replays_the_same_request_and_refuses_another,
    racing_changes_of_one_request_apply_one_after_the_other,
    a_refused_change_writes_nothing,
    requests_page_in_creation_order_and_filter_by_state_and_requester,
    due_requests_and_the_next_deadline_follow_the_deadlines,
);

fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).expect("in range")
}

fn request(id: &str, requester: &str, state: &str, deadline_ms: Option<i64>) -> StoredRequest {
    StoredRequest {
        id: id.into(),
        requester: requester.into(),
        state: state.into(),
        created_ms: 1_000,
        updated_ms: 1_000,
        deadline_ms,
        version: 0,
        body_json: format!(r#"{{"id":"{id}","approvals":[]}}"#),
    }
}

fn event(operation: &str, id: &str, actor: &str) -> NewEvent {
    let mut e = NewEvent::new(at(1_000), actor, operation, Outcome::Succeeded);
    e.target = Some(Target::AccessRequest { id: id.into() });
    e
}

async fn a_request_is_stored_with_its_audit_event_and_read_back(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let r = request("r1", "ada", "pending", Some(5_000));
    let inserted = store
        .insert_access_request(&r, None, event(ACCESS_REQUEST_CREATE, "r1", "ada"))
        .await?;
    let Inserted::New(stored) = inserted else {
        anyhow::bail!("expected a new request, got {inserted:?}");
    };
    ensure!(stored.version == 1);
    let read = store.access_request("r1").await?.context("stored")?;
    ensure!(read == stored, "{read:?} != {stored:?}");
    ensure!(store.access_request("nope").await?.is_none());
    let events = store.audit_events(1, 10).await?;
    ensure!(events.len() == 1 && events[0].operation == ACCESS_REQUEST_CREATE);
    ensure!(events[0].target == Some(Target::AccessRequest { id: "r1".into() }));
    ensure!(store.verify_audit().await?.is_ok());
    Ok(())
}

async fn an_idempotency_key_replays_the_same_request_and_refuses_another(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let first = request("r1", "ada", "pending", Some(5_000));
    let key = Some(("k-1", "digest-a"));
    store
        .insert_access_request(&first, key, event(ACCESS_REQUEST_CREATE, "r1", "ada"))
        .await?;
    // A retry (its new id is never stored) returns the first request.
    let retry = request("r2", "ada", "pending", Some(5_000));
    let again = store
        .insert_access_request(&retry, key, event(ACCESS_REQUEST_CREATE, "r2", "ada"))
        .await?;
    ensure!(
        matches!(&again, Inserted::Replayed(r) if r.id == "r1"),
        "{again:?}"
    );
    // The same key for something else is refused, and stores nothing.
    let other = store
        .insert_access_request(
            &retry,
            Some(("k-1", "digest-b")),
            event(ACCESS_REQUEST_CREATE, "r2", "ada"),
        )
        .await;
    ensure!(
        matches!(&other, Err(StoreError::IdempotencyKeyReused { key }) if key == "k-1"),
        "{other:?}"
    );
    // Keys are per requester.
    let bobs = request("r3", "bob", "pending", Some(5_000));
    let bob = store
        .insert_access_request(&bobs, key, event(ACCESS_REQUEST_CREATE, "r3", "bob"))
        .await?;
    ensure!(matches!(bob, Inserted::New(_)));
    ensure!(store.access_request("r2").await?.is_none());
    ensure!(
        store.audit_head().await?.seq == 2,
        "one event per stored request"
    );
    Ok(())
}

async fn racing_changes_of_one_request_apply_one_after_the_other(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    store
        .insert_access_request(
            &request("r1", "ada", "pending", Some(5_000)),
            None,
            event(ACCESS_REQUEST_CREATE, "r1", "ada"),
        )
        .await?;
    // Sixteen approvers at once, each appending their name to what they read: every one of
    // them must be in the result, in some order, and versions must count them.
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .change_access_request("r1", 2_000 + n, |current| {
                    let mut body: serde_json::Value =
                        serde_json::from_str(&current.body_json).expect("json");
                    body["approvals"]
                        .as_array_mut()
                        .expect("array")
                        .push(format!("approver-{n}").into());
                    let next = StoredRequest {
                        body_json: body.to_string(),
                        ..current.clone()
                    };
                    Ok::<_, String>((
                        next,
                        event(ACCESS_REQUEST_APPROVE, "r1", &format!("approver-{n}")),
                    ))
                })
                .await
        }));
    }
    for task in tasks {
        task.await?.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let r = store.access_request("r1").await?.context("stored")?;
    let body: serde_json::Value = serde_json::from_str(&r.body_json)?;
    let mut approvals: Vec<String> = body["approvals"]
        .as_array()
        .context("array")?
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    approvals.sort();
    let mut expected: Vec<String> = (0..16).map(|n| format!("approver-{n}")).collect();
    expected.sort();
    ensure!(approvals == expected, "lost an approval: {approvals:?}");
    ensure!(r.version == 17, "version {}", r.version);
    ensure!(store.audit_head().await?.seq == 17);
    ensure!(store.verify_audit().await?.is_ok());
    Ok(())
}

async fn a_refused_change_writes_nothing(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let r = request("r1", "ada", "pending", Some(5_000));
    store
        .insert_access_request(&r, None, event(ACCESS_REQUEST_CREATE, "r1", "ada"))
        .await?;
    let refused = store
        .change_access_request("r1", 2_000, |_| {
            Err::<(StoredRequest, NewEvent), _>("nobody approves their own request")
        })
        .await;
    ensure!(matches!(
        refused,
        Err(ChangeError::Refused("nobody approves their own request"))
    ));
    let missing = store
        .change_access_request("nope", 2_000, |c| {
            Ok::<_, ()>((c.clone(), event(ACCESS_REQUEST_APPROVE, "nope", "x")))
        })
        .await;
    ensure!(matches!(missing, Err(ChangeError::NotFound)));
    let read = store.access_request("r1").await?.context("stored")?;
    ensure!(read.version == 1 && read.state == "pending");
    ensure!(store.audit_head().await?.seq == 1);
    Ok(())
}

async fn requests_page_in_creation_order_and_filter_by_state_and_requester(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    for n in 0..25 {
        let (who, state) = (
            if n % 2 == 0 { "ada" } else { "bob" },
            if n % 5 == 0 { "approved" } else { "pending" },
        );
        let id = format!("r{n:02}");
        store
            .insert_access_request(
                &request(&id, who, state, None),
                None,
                event(ACCESS_REQUEST_CREATE, &id, who),
            )
            .await?;
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .access_requests(&RequestFilter {
                after: after.clone(),
                limit: 10,
                ..Default::default()
            })
            .await?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.id.clone());
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let all: Vec<String> = (0..25).map(|n| format!("r{n:02}")).collect();
    ensure!(seen == all, "{seen:?}");
    let adas_approved = store
        .access_requests(&RequestFilter {
            states: vec!["approved".into()],
            requester: Some("ada".into()),
            limit: 100,
            ..Default::default()
        })
        .await?;
    let ids: Vec<&str> = adas_approved.iter().map(|r| r.id.as_str()).collect();
    ensure!(ids == ["r00", "r10", "r20"], "{ids:?}");
    let approved = store.approved_access_requests().await?;
    ensure!(approved.len() == 5);
    Ok(())
}

async fn due_requests_and_the_next_deadline_follow_the_deadlines(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    ensure!(store.next_access_deadline().await?.is_none());
    for (id, deadline) in [
        ("r1", Some(3_000)),
        ("r2", Some(2_000)),
        ("r3", None),
        ("r4", Some(9_000)),
    ] {
        store
            .insert_access_request(
                &request(id, "ada", "approved", deadline),
                None,
                event(ACCESS_REQUEST_CREATE, id, "ada"),
            )
            .await?;
    }
    ensure!(store.next_access_deadline().await? == Some(2_000));
    let due: Vec<String> = store
        .due_access_requests(3_000, 100)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    ensure!(due == ["r2", "r1"], "{due:?}");
    ensure!(store.due_access_requests(1_999, 100).await?.is_empty());
    // Once expired, nothing more is due for it.
    store
        .change_access_request("r2", 3_000, |c| {
            Ok::<_, ()>((
                StoredRequest {
                    state: "expired".into(),
                    deadline_ms: None,
                    ..c.clone()
                },
                event(airlock_audit::ACCESS_GRANT_EXPIRE, "r2", "airlock"),
            ))
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    ensure!(store.next_access_deadline().await? == Some(3_000));
    ensure!(store.approved_access_requests().await?.len() == 3);
    Ok(())
}
