//! Observed access (who had access when), on both backends: one interval per change of
//! access, stretched by observations that find it unchanged; late observations kept out; two
//! observers of one instance racing never overlap.

use airlock_store::Recorded;
use anyhow::ensure;

use crate::support::TestDb;

on_both_backends!(
    history =>
    unchanged_observations_stretch_one_interval_and_a_change_starts_the_next,
    an_observation_older_than_the_newest_is_kept_out,
    concurrent_observers_of_one_instance_leave_intervals_that_never_overlap,
);

async fn unchanged_observations_stretch_one_interval_and_a_change_starts_the_next(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let first = store
        .observe_access("prod", 1_000, "snapshot:a", "d1", "{\"s\":1}")
        .await?;
    ensure!(first == Recorded::Started);
    for (n, at) in [2_000, 3_000].into_iter().enumerate() {
        let again = store
            .observe_access("prod", at, &format!("snapshot:b{n}"), "d1", "{\"s\":1}")
            .await?;
        ensure!(again == Recorded::Stretched);
    }
    ensure!(
        store
            .observe_access("prod", 4_000, "snapshot:c", "d2", "{\"s\":2}")
            .await?
            == Recorded::Started
    );
    ensure!(
        store
            .observe_access("stage", 1_500, "snapshot:x", "d9", "{}")
            .await?
            == Recorded::Started
    );
    ensure!(
        store.access_history_size("prod").await?.0 == 2,
        "one row per change"
    );

    let (before, next) = store.access_around("prod", 2_500).await?;
    let before = before.ok_or_else(|| anyhow::anyhow!("an interval before 2500"))?;
    ensure!(before.from_ms == 1_000 && before.to_ms == 3_000 && before.observations == 3);
    ensure!(before.first_source == "snapshot:a" && before.last_source == "snapshot:b1");
    ensure!(before.state_json == "{\"s\":1}");
    ensure!(next.map(|n| n.from_ms) == Some(4_000));

    let (before, next) = store.access_around("prod", 999).await?;
    ensure!(before.is_none() && next.map(|n| n.from_ms) == Some(1_000));
    let (before, next) = store.access_around("prod", 9_000).await?;
    ensure!(before.map(|b| b.digest) == Some("d2".into()) && next.is_none());
    ensure!(store.access_instances().await? == vec!["prod".to_owned(), "stage".to_owned()]);
    Ok(())
}

async fn an_observation_older_than_the_newest_is_kept_out(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    store
        .observe_access("prod", 5_000, "snapshot:a", "d1", "{}")
        .await?;
    ensure!(
        store
            .observe_access("prod", 4_000, "snapshot:late", "d2", "{}")
            .await?
            == Recorded::TooOld
    );
    ensure!(store.access_history_size("prod").await?.0 == 1);
    Ok(())
}

async fn concurrent_observers_of_one_instance_leave_intervals_that_never_overlap(
    db: TestDb,
) -> anyhow::Result<()> {
    let store = db.open().await;
    let other = db.open().await;
    let mut tasks = Vec::new();
    for n in 0..40_i64 {
        let s = if n % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            // Two states, alternating every 5 observations.
            let digest = if (n / 5) % 2 == 0 { "even" } else { "odd" };
            s.observe_access(
                "prod",
                1_000 + n * 10,
                &format!("snapshot:{n}"),
                digest,
                "{}",
            )
            .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    // Walk the intervals from the start: each begins after the previous one ended.
    let (mut at, mut last_to, mut seen) = (0_i64, i64::MIN, 0);
    loop {
        let (_, next) = store.access_around("prod", at).await?;
        let Some(i) = next else { break };
        ensure!(
            i.from_ms > last_to,
            "interval from {} overlaps one ending {last_to}",
            i.from_ms
        );
        ensure!(i.to_ms >= i.from_ms);
        last_to = i.to_ms;
        at = i.from_ms;
        seen += i.observations;
    }
    ensure!(seen > 0 && seen <= 40, "{seen} observations recorded");
    Ok(())
}
