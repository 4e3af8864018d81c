//! Leases, the fenced write-ahead journal and held deprovisions, on both backends: one holder
//! at a time, takeover only after expiry with a new epoch, an intent refused once its lease
//! is gone, and holds that stay until released.

use airlock_audit::{NewEvent, Outcome};
use airlock_store::{Acquire, Fencing, HoldEnd, Intent, JournalState, StoreError};
use anyhow::{bail, ensure};
use chrono::{TimeZone, Utc};

use crate::support::TestDb;

on_both_backends!(
    leases =>
    a_lease_has_one_holder_until_it_expires_and_a_new_holder_gets_a_new_epoch,
    racing_takers_of_a_free_lease_get_it_exactly_once,
    renewal_keeps_a_lease_and_reports_the_ones_taken_over,
    an_intent_is_recorded_only_under_the_current_lease,
    closing_an_intent_appends_its_audit_event_and_counts_recent_deprovisions,
    runs_of_a_process_without_leases_are_closed_as_interrupted,
    a_held_deprovision_stays_held_until_released_then_ends,
);

fn granted(a: Acquire) -> anyhow::Result<airlock_store::LeaseGrant> {
    match a {
        Acquire::Granted(g) => Ok(g),
        Acquire::Held(row) => bail!("expected a grant, held by {row:?}"),
    }
}

async fn a_lease_has_one_holder_until_it_expires_and_a_new_holder_gets_a_new_epoch(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let a = granted(
        store
            .acquire_lease("instance:prod", "a", 1_000, 15_000)
            .await?,
    )?;
    ensure!(a.epoch == 1 && a.expires_ms == 16_000, "{a:?}");
    // Someone else, before expiry: told who holds it and until when.
    match store
        .acquire_lease("instance:prod", "b", 10_000, 15_000)
        .await?
    {
        Acquire::Held(row) => ensure!(row.holder == "a" && row.expires_ms == 16_000),
        other => bail!("{other:?}"),
    }
    // The holder again: renewed under the same epoch.
    let again = granted(
        store
            .acquire_lease("instance:prod", "a", 12_000, 15_000)
            .await?,
    )?;
    ensure!(again.epoch == 1 && again.expires_ms == 27_000);
    // After expiry another holder takes it with the next epoch.
    let b = granted(
        store
            .acquire_lease("instance:prod", "b", 27_000, 15_000)
            .await?,
    )?;
    ensure!(b.epoch == 2, "{b:?}");
    ensure!(
        !store
            .lease_is_current("instance:prod", "a", 1, 27_001)
            .await?
    );
    ensure!(
        store
            .lease_is_current("instance:prod", "b", 2, 27_001)
            .await?
    );
    // Released: free at once, and the next taker's epoch grows again.
    store.release_lease("instance:prod", "b", 2).await?;
    let c = granted(
        store
            .acquire_lease("instance:prod", "c", 27_002, 15_000)
            .await?,
    )?;
    ensure!(c.epoch == 3);
    let rows = store.leases().await?;
    ensure!(rows.len() == 1 && rows[0].holder == "c");
    Ok(())
}

async fn racing_takers_of_a_free_lease_get_it_exactly_once(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = db.open().await;
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("instance:race", &format!("h{i}"), 5_000, 15_000)
                .await
        }));
    }
    let mut grants = 0;
    for t in tasks {
        if let Acquire::Granted(_) = t.await?? {
            grants += 1;
        }
    }
    ensure!(grants == 1, "{grants} holders");
    ensure!(store.leases().await?.len() == 1);
    Ok(())
}

async fn renewal_keeps_a_lease_and_reports_the_ones_taken_over(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    for name in ["instance:a", "instance:b"] {
        granted(store.acquire_lease(name, "r1", 0, 1_000).await?)?;
    }
    let renewed = store.renew_leases("r1", 500, 1_000).await?;
    ensure!(renewed == [("instance:a".into(), 1), ("instance:b".into(), 1)]);
    // r1 froze; b expired and r2 took it.
    granted(
        store
            .acquire_lease("instance:b", "r2", 1_600, 1_000)
            .await?,
    )?;
    let renewed = store.renew_leases("r1", 1_700, 1_000).await?;
    ensure!(renewed == [("instance:a".to_string(), 1)], "{renewed:?}");
    Ok(())
}

fn intent(id: &str, kind: &str, at: i64) -> Intent {
    Intent {
        id: id.into(),
        run_id: "run-1".into(),
        instance: "prod".into(),
        op_kind: kind.into(),
        target: "account ann".into(),
        op_json: "{}".into(),
        actor: "airlock".into(),
        started_ms: at,
    }
}

async fn an_intent_is_recorded_only_under_the_current_lease(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let g = granted(store.acquire_lease("instance:prod", "r1", 0, 1_000).await?)?;
    let fence = Fencing {
        lease: "instance:prod",
        holder: "r1",
        epoch: g.epoch,
    };
    store
        .journal_intent(&intent("i1", "suspend", 10), fence, 10)
        .await?;
    // Expired: refused, nothing written.
    let late = store
        .journal_intent(&intent("i2", "suspend", 1_500), fence, 1_500)
        .await;
    ensure!(
        matches!(late, Err(StoreError::LeaseLost { epoch: 1, .. })),
        "{late:?}"
    );
    // Taken over: the old epoch is refused even though the new tenure is live.
    granted(
        store
            .acquire_lease("instance:prod", "r2", 1_600, 1_000)
            .await?,
    )?;
    let stale = store
        .journal_intent(&intent("i3", "suspend", 1_700), fence, 1_700)
        .await;
    ensure!(
        matches!(stale, Err(StoreError::LeaseLost { .. })),
        "{stale:?}"
    );
    let open = store.journal_open("prod").await?;
    ensure!(open.len() == 1 && open[0].intent.id == "i1" && open[0].epoch == 1);
    ensure!(open[0].holder == "r1");
    Ok(())
}

async fn closing_an_intent_appends_its_audit_event_and_counts_recent_deprovisions(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let g = granted(
        store
            .acquire_lease("instance:prod", "r1", 0, 100_000)
            .await?,
    )?;
    let fence = Fencing {
        lease: "instance:prod",
        holder: "r1",
        epoch: g.epoch,
    };
    for (id, kind) in [
        ("i1", "suspend"),
        ("i2", "suspend"),
        ("i3", "create_account"),
    ] {
        store
            .journal_intent(&intent(id, kind, 10), fence, 10)
            .await?;
    }
    let at = Utc.timestamp_millis_opt(20).single().expect("time");
    let ev = NewEvent::new(at, "airlock", "account.suspend", Outcome::Succeeded);
    let sealed = store
        .journal_close("i1", JournalState::Succeeded, 20, vec![ev])
        .await?;
    ensure!(sealed.len() == 1 && store.audit_head().await?.seq == 1);
    store
        .journal_close("i2", JournalState::Failed, 30, vec![])
        .await?;
    store
        .journal_close("i3", JournalState::Succeeded, 30, vec![])
        .await?;
    ensure!(store.deprovisions_since(0).await? == 1);
    ensure!(store.deprovisions_since(21).await? == 0);
    ensure!(store.journal_open("prod").await?.is_empty());
    // Closing twice changes nothing.
    store
        .journal_close("i1", JournalState::Failed, 40, vec![])
        .await?;
    ensure!(store.deprovisions_since(0).await? == 1);
    ensure!(store.prune_journal(35).await? == 3);
    Ok(())
}

async fn runs_of_a_process_without_leases_are_closed_as_interrupted(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    granted(
        store
            .acquire_lease("instance:prod", "alive", 0, 10_000)
            .await?,
    )?;
    granted(
        store
            .acquire_lease("instance:dev", "dead", 0, 1_000)
            .await?,
    )?;
    store
        .begin_run("r-alive", "serve", 10, Some("alive"))
        .await?;
    store.begin_run("r-dead", "serve", 10, Some("dead")).await?;
    store.begin_run("r-plan", "plan", 10, None).await?;
    ensure!(store.close_orphaned_runs(5_000, 0).await? == 1);
    ensure!(store.close_orphaned_runs(5_000, 20).await? == 1);
    ensure!(store.close_orphaned_runs(5_000, 20).await? == 0);
    Ok(())
}

async fn a_held_deprovision_stays_held_until_released_then_ends(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    let (h, new) = store
        .hold_deprovision("prod", "Ann", "suspend", "max_deprovisions", "too many", 1)
        .await?;
    ensure!(new && h.status == "held" && h.username == "Ann");
    // Held again by the next run: the same hold, not a new one.
    let (again, new) = store
        .hold_deprovision("prod", "ann", "suspend", "max_deprovisions", "too many", 2)
        .await?;
    ensure!(!new && again.id == h.id && again.last_held_ms == 2);
    store
        .hold_deprovision(
            "dev",
            "bob",
            "suspend",
            "max_deprovisions_per_hour",
            "window",
            3,
        )
        .await?;
    ensure!(store.rail_holds(None, true).await?.len() == 2);
    ensure!(store.rail_holds(Some("prod"), true).await?.len() == 1);
    let released = store
        .release_holds(&[h.id.clone(), "unknown".into()], "operator:alice", 5)
        .await?;
    ensure!(released.len() == 1 && released[0].released_by.as_deref() == Some("operator:alice"));
    // Releasing again does nothing.
    ensure!(store
        .release_holds(std::slice::from_ref(&h.id), "mallory", 6)
        .await?
        .is_empty());
    store
        .end_hold("prod", "ANN", "suspend", HoldEnd::Applied, 7)
        .await?;
    let all = store.rail_holds(Some("prod"), false).await?;
    ensure!(all.len() == 1 && all[0].status == "applied");
    ensure!(store.rail_holds(Some("prod"), true).await?.is_empty());
    Ok(())
}
