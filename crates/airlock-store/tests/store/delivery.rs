//! Delivery cursors, on both backends: a cursor starts absent and only moves forward.

use anyhow::ensure;

use crate::support::TestDb;

on_both_backends!(
    delivery =>
    a_cursor_only_moves_forward,
);

async fn a_cursor_only_moves_forward(db: TestDb) -> anyhow::Result<()> {
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
    Ok(())
}
