//! Delivery cursors and marks, on both backends: a cursor starts absent and only moves
//! forward; a mark is recorded once.

use anyhow::ensure;

use crate::support::TestDb;

on_both_backends!(
    delivery =>
    a_cursor_only_moves_forward_and_marks_are_recorded_once,
);

async fn a_cursor_only_moves_forward_and_marks_are_recorded_once(db: TestDb) -> anyhow::Result<()> {
    let store = db.open().await;
    ensure!(store.delivery_cursor("hook").await?.is_none());
    store.advance_delivery_cursor("hook", 5, 1_000).await?;
    store.advance_delivery_cursor("hook", 3, 2_000).await?;
    ensure!(
        store.delivery_cursor("hook").await? == Some(5),
        "never backwards"
    );
    store.advance_delivery_cursor("hook", 9, 3_000).await?;
    ensure!(store.delivery_cursor("hook").await? == Some(9));
    ensure!(
        store.delivery_cursor("other").await?.is_none(),
        "one cursor per sink"
    );
    ensure!(!store.delivery_marked("hook", "expiring:r1").await?);
    store.mark_delivered("hook", "expiring:r1", 1_000).await?;
    store.mark_delivered("hook", "expiring:r1", 1_001).await?;
    ensure!(store.delivery_marked("hook", "expiring:r1").await?);
    ensure!(!store.delivery_marked("other", "expiring:r1").await?);
    ensure!(store.forget_delivery_marks("hook", 1_000).await? == 0);
    ensure!(store.forget_delivery_marks("hook", 1_001).await? == 1);
    ensure!(!store.delivery_marked("hook", "expiring:r1").await?);
    Ok(())
}
