//! Webhook delivery ids seen within a replay window. A receiver that authenticates senders
//! by an HMAC over the body remembers each delivery id it accepted, so the same signed
//! request sent again within the window is refused. Ids older than the window are pruned
//! as new ones arrive.

use std::time::Duration;

use crate::codec;
use crate::error::{db, StoreError};
use crate::Store;

impl Store {
    /// Records `delivery_id` for `receiver`. True if it is new (or was last seen longer ago
    /// than `window`), false if it was seen within the window: a replay.
    #[tracing::instrument(name = "store.remember_delivery", level = "debug", skip_all, fields(receiver = %receiver))]
    pub async fn remember_delivery(
        &self,
        receiver: &str,
        delivery_id: &str,
        window: Duration,
    ) -> Result<bool, StoreError> {
        const OP: &str = "remembering a webhook delivery";
        let now = codec::now_millis();
        let cutoff = now.saturating_sub(codec::duration_millis(window));
        let mut tx = self.begin_write(OP).await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE receiver = $1 AND seen_at <= $2")
            .bind(receiver)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (receiver, delivery_id, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (receiver, delivery_id) DO NOTHING",
        )
        .bind(receiver)
        .bind(delivery_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        tx.commit().await.map_err(db(OP))?;
        Ok(inserted == 1)
    }

    /// Forgets a delivery id, so that the sender's retry of a delivery that failed on our
    /// side (say, the bus was down) is not mistaken for a replay.
    #[tracing::instrument(name = "store.forget_delivery", level = "debug", skip_all, fields(receiver = %receiver))]
    pub async fn forget_delivery(
        &self,
        receiver: &str,
        delivery_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_deliveries WHERE receiver = $1 AND delivery_id = $2")
            .bind(receiver)
            .bind(delivery_id)
            .execute(&self.write)
            .await
            .map_err(db("forgetting a webhook delivery"))?;
        Ok(())
    }
}
