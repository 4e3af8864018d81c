//! Durable delivery cursors for the senders that ship the audit trail outside airlock (see
//! migration 0013). A cursor only moves forward: two replicas racing to advance it
//! leave the larger `seq`.

use crate::{Store, StoreError};

impl Store {
    /// The `seq` of the last audit event `sink` delivered; `None` when it never delivered.
    pub async fn delivery_cursor(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM delivery_cursors WHERE sink = $1")
                .bind(sink)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.ctx.query_failed("read a delivery cursor", e))?;
        Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    /// Moves `sink`'s cursor to `seq` (never backwards).
    pub async fn advance_delivery_cursor(
        &self,
        sink: &str,
        seq: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO delivery_cursors (sink, seq, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms \
             WHERE delivery_cursors.seq < excluded.seq",
        )
        .bind(sink)
        .bind(seq)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.ctx.query_failed("advance a delivery cursor", e))?;
        Ok(())
    }
}
