//! The embedded durable queue behind `signet up`'s bus: messages live in the database, so
//! they survive a restart. A lease is a visibility timeout: leasing pushes a message's
//! `available_at` forward, an ack deletes it, and a consumer that dies simply lets the lease
//! run out, after which the message is delivered again (at-least-once).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use crate::codec::{self, col};
use crate::error::{db, StoreError};
use crate::{Backend, Store};

/// A leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The handle for [`Store::queue_ack`], [`Store::queue_retry`] and
    /// [`Store::queue_dead_letter`]; never reused.
    pub id: i64,
    pub queue: String,
    pub body: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    /// How many times it has been leased, this lease included.
    pub deliveries: u32,
    pub enqueued_at: DateTime<Utc>,
}

/// A message given up on, kept for an operator to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    /// The id the message had on its queue.
    pub message_id: i64,
    pub queue: String,
    pub body: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub deliveries: u32,
    pub reason: String,
    pub enqueued_at: DateTime<Utc>,
    pub dead_at: DateTime<Utc>,
}

/// Picks the oldest available message and leases it in one statement. SQLite runs one
/// writer at a time, so the subselect and the update cannot interleave with another
/// consumer. On PostgreSQL two consumers could pick the same row and both update it one
/// after the other; `FOR UPDATE SKIP LOCKED` makes the second skip to the next row.
const LEASE_HEAD: &str =
    "UPDATE queue_messages SET available_at = $3, deliveries = deliveries + 1 \
     WHERE id = (SELECT id FROM queue_messages WHERE queue = $1 AND available_at <= $2 \
     ORDER BY id LIMIT 1";
const LEASE_TAIL: &str = ") RETURNING id, queue, body, headers, deliveries, enqueued_at";

impl Store {
    /// Appends a message; it is available at once. Returns its id.
    #[tracing::instrument(
        name = "store.queue_push",
        level = "debug",
        skip_all,
        fields(queue = %queue),
    )]
    pub async fn queue_push(
        &self,
        queue: &str,
        body: &[u8],
        headers: &BTreeMap<String, String>,
    ) -> Result<i64, StoreError> {
        let headers = codec::json_text("message headers", headers)?;
        let now = codec::now_millis();
        let row = sqlx::query(
            "INSERT INTO queue_messages (queue, body, headers, deliveries, available_at, enqueued_at) \
             VALUES ($1, $2, $3, 0, $4, $4) RETURNING id",
        )
        .bind(queue)
        .bind(body.to_vec())
        .bind(headers)
        .bind(now)
        .fetch_one(&self.write)
        .await
        .map_err(db("queueing a message"))?;
        col(&row, "queued message", "id")
    }

    /// Leases the oldest available message for `lease` and counts the delivery; `None` if
    /// none is available. Safe with any number of concurrent consumers.
    #[tracing::instrument(
        name = "store.queue_lease",
        level = "debug",
        skip_all,
        fields(queue = %queue),
    )]
    pub async fn queue_lease(
        &self,
        queue: &str,
        lease: Duration,
    ) -> Result<Option<QueuedMessage>, StoreError> {
        let now = codec::now_millis();
        let until = now.saturating_add(codec::duration_millis(lease));
        let sql = match self.backend {
            Backend::Sqlite => format!("{LEASE_HEAD}{LEASE_TAIL}"),
            Backend::Postgres => format!("{LEASE_HEAD} FOR UPDATE SKIP LOCKED{LEASE_TAIL}"),
        };
        let row = sqlx::query(&sql)
            .bind(queue)
            .bind(now)
            .bind(until)
            .fetch_optional(&self.write)
            .await
            .map_err(db("leasing a message"))?;
        row.as_ref().map(message_from_row).transpose()
    }

    /// Done with a message: deletes it. Acking a message that is already gone is not an
    /// error: after a lease ran out, two consumers may both finish the same message.
    #[tracing::instrument(
        name = "store.queue_ack",
        level = "debug",
        skip_all,
        fields(id = id),
    )]
    pub async fn queue_ack(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM queue_messages WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db("acknowledging a message"))?;
        Ok(())
    }

    /// Ends the lease; the message becomes available again after `delay`.
    #[tracing::instrument(
        name = "store.queue_retry",
        level = "debug",
        skip_all,
        fields(id = id),
    )]
    pub async fn queue_retry(&self, id: i64, delay: Duration) -> Result<(), StoreError> {
        let at = codec::now_millis().saturating_add(codec::duration_millis(delay));
        let updated = sqlx::query("UPDATE queue_messages SET available_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.write)
            .await
            .map_err(db("scheduling a message retry"))?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("queued message {id}")));
        }
        Ok(())
    }

    /// Moves a message to its queue's dead letters, with the reason.
    #[tracing::instrument(
        name = "store.queue_dead_letter",
        level = "debug",
        skip_all,
        fields(id = id, reason = %reason),
    )]
    pub async fn queue_dead_letter(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        const OP: &str = "dead-lettering a message";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let moved = sqlx::query(
            "INSERT INTO queue_dead_letters \
             (message_id, queue, body, headers, deliveries, reason, enqueued_at, dead_at) \
             SELECT id, queue, body, headers, deliveries, $2, enqueued_at, $3 \
             FROM queue_messages WHERE id = $1",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if moved == 0 {
            return Err(StoreError::NotFound(format!("queued message {id}")));
        }
        sqlx::query("DELETE FROM queue_messages WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    /// Messages on the queue not yet acked or dead-lettered, leased ones included.
    #[tracing::instrument(
        name = "store.queue_depth",
        level = "debug",
        skip_all,
        fields(queue = %queue),
    )]
    pub async fn queue_depth(&self, queue: &str) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM queue_messages WHERE queue = $1")
            .bind(queue)
            .fetch_one(&self.read)
            .await
            .map_err(db("measuring a queue"))?;
        codec::count("queue depth", col(&row, "queue depth", "n")?)
    }

    /// When the oldest message on the queue (leased ones included) was enqueued; `None`
    /// when the queue is empty. A retried message keeps its first enqueue time, so the
    /// age of this is how long the oldest unfinished job has waited.
    #[tracing::instrument(
        name = "store.queue_oldest",
        level = "debug",
        skip_all,
        fields(queue = %queue),
    )]
    pub async fn queue_oldest(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row =
            sqlx::query("SELECT MIN(enqueued_at) AS oldest FROM queue_messages WHERE queue = $1")
                .bind(queue)
                .fetch_one(&self.read)
                .await
                .map_err(db("measuring a queue"))?;
        let oldest: Option<i64> = col(&row, "queue age", "oldest")?;
        oldest.map(|ms| codec::time("queue age", ms)).transpose()
    }

    /// The queue's dead letters, newest first.
    #[tracing::instrument(
        name = "store.queue_dead",
        level = "debug",
        skip_all,
        fields(queue = %queue),
    )]
    pub async fn queue_dead(&self, queue: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, message_id, queue, body, headers, deliveries, reason, enqueued_at, dead_at \
             FROM queue_dead_letters WHERE queue = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(queue)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db("listing dead letters"))?;
        rows.iter().map(dead_letter_from_row).collect()
    }
}

fn deliveries(what: &str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::corrupt(what, format!("delivery count {n}")))
}

fn message_from_row(row: &AnyRow) -> Result<QueuedMessage, StoreError> {
    let id: i64 = col(row, "queued message", "id")?;
    let what = format!("queued message {id}");
    let headers: String = col(row, &what, "headers")?;
    Ok(QueuedMessage {
        id,
        queue: col(row, &what, "queue")?,
        body: col(row, &what, "body")?,
        headers: codec::from_json(&what, &headers)?,
        deliveries: deliveries(&what, col(row, &what, "deliveries")?)?,
        enqueued_at: codec::time(&what, col(row, &what, "enqueued_at")?)?,
    })
}

fn dead_letter_from_row(row: &AnyRow) -> Result<DeadLetter, StoreError> {
    let id: i64 = col(row, "dead letter", "id")?;
    let what = format!("dead letter {id}");
    let headers: String = col(row, &what, "headers")?;
    Ok(DeadLetter {
        id,
        message_id: col(row, &what, "message_id")?,
        queue: col(row, &what, "queue")?,
        body: col(row, &what, "body")?,
        headers: codec::from_json(&what, &headers)?,
        deliveries: deliveries(&what, col(row, &what, "deliveries")?)?,
        reason: col(row, &what, "reason")?,
        enqueued_at: codec::time(&what, col(row, &what, "enqueued_at")?)?,
        dead_at: codec::time(&what, col(row, &what, "dead_at")?)?,
    })
}
