//! The event outbox. Every state change a verifier cares about is written here in the
//! transaction that makes it; a relay publishes pending events to the bus and marks them.
//! Ids are gap-free and appear in commit order, so an id doubles as the trust bundle's
//! revision: a verifier that has seen revision N has seen every event up to N.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signet_core::EventKind;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::audit::next_id;
use crate::codec::{self, col};
use crate::error::{db, StoreError};
use crate::{Backend, Store};

/// The PostgreSQL advisory lock that makes one relay at a time publish the outbox
/// ("signet" and 1, as a 64-bit key).
const RELAY_LOCK: i64 = 0x7369_676e_6574_0001;

/// One relay's turn at publishing the outbox ([`Store::outbox_turn`]). Ending it (or
/// dropping it) lets another relay take the next one.
#[derive(Debug)]
pub struct OutboxTurn {
    /// PostgreSQL: the transaction that holds the advisory lock; nothing is written in it.
    tx: Option<Transaction<'static, Any>>,
}

impl OutboxTurn {
    /// Ends the turn now rather than when the pool gets the connection back.
    pub async fn end(self) {
        if let Some(tx) = self.tx {
            if let Err(e) = tx.rollback().await {
                tracing::debug!(error = %e, "ending the outbox turn");
            }
        }
    }
}

/// An event to publish once the change it announces has committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// The CloudEvents type, `dev.signet.<noun>.<verb>.v1` ([`EventKind::cloudevent_type`]).
    pub event_type: String,
    /// What it is about: a witness name, an image digest.
    pub subject: String,
    pub data: serde_json::Value,
    /// The W3C `traceparent` of the work that wrote the event, so the trace continues
    /// through the relay to the event's consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl OutboxEvent {
    pub fn new(kind: EventKind, subject: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            event_type: kind.cloudevent_type(),
            subject: subject.into(),
            data,
            traceparent: None,
        }
    }

    /// The event, carrying the trace context `traceparent` (none when `None`).
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }
}

/// A stored event. `id` is its revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub id: i64,
    pub event: OutboxEvent,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// The relay's turn at the outbox, or `None` while another relay has it. On
    /// PostgreSQL every gateway and signer process runs a relay; without turns each would
    /// seal (a KMS call) and publish every pending event, once per process. The turn is a
    /// transaction-scoped advisory lock, so a relay that dies gives it up with its
    /// connection. On SQLite (one process, one relay) the turn is always granted.
    #[tracing::instrument(name = "store.outbox_turn", level = "debug", skip_all)]
    pub async fn outbox_turn(&self) -> Result<Option<OutboxTurn>, StoreError> {
        const OP: &str = "taking the outbox relay's turn";
        if self.backend == Backend::Sqlite {
            return Ok(Some(OutboxTurn { tx: None }));
        }
        let mut tx = self.write.begin().await.map_err(db(OP))?;
        let row = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OP))?;
        let granted: bool = row.try_get(0).map_err(db(OP))?;
        if granted {
            return Ok(Some(OutboxTurn { tx: Some(tx) }));
        }
        tx.rollback().await.map_err(db(OP))?;
        Ok(None)
    }

    /// Unpublished events, oldest first.
    #[tracing::instrument(name = "store.outbox_pending", level = "debug", skip_all)]
    pub async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_type, subject, data, traceparent, created_at FROM outbox \
             WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db("reading pending events"))?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// Marks events as published. Marking one twice, or an unknown id, is harmless: a relay
    /// that crashed between publishing and marking publishes again (at-least-once).
    #[tracing::instrument(name = "store.outbox_mark_published", level = "debug", skip_all, fields(count = ids.len()))]
    pub async fn outbox_mark_published(&self, ids: &[i64]) -> Result<(), StoreError> {
        const OP: &str = "marking events published";
        if ids.is_empty() {
            return Ok(());
        }
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        // Bounded IN lists: SQLite caps a statement at 32766 parameters.
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE outbox SET published_at = $1 WHERE published_at IS NULL AND id IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await.map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    /// The highest event id written so far (0 when there is none).
    #[tracing::instrument(name = "store.outbox_revision", level = "debug", skip_all)]
    pub async fn outbox_revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'outbox'")
            .fetch_optional(&self.read)
            .await
            .map_err(db("reading the outbox revision"))?
            .ok_or_else(|| StoreError::corrupt("counters", "counter \"outbox\" is missing"))?;
        col(&row, "counters", "value")
    }
}

/// Writes one event inside the caller's transaction; returns its id.
pub(crate) async fn insert_outbox(
    conn: &mut AnyConnection,
    event: &OutboxEvent,
    at: i64,
) -> Result<i64, StoreError> {
    const OP: &str = "writing an event to the outbox";
    let id = next_id(conn, "outbox", OP).await?;
    let data = codec::json_text("event data", &event.data)?;
    sqlx::query(
        "INSERT INTO outbox (id, event_type, subject, data, traceparent, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(event.event_type.as_str())
    .bind(event.subject.as_str())
    .bind(data)
    .bind(event.traceparent.as_deref())
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(db(OP))?;
    Ok(id)
}

fn outbox_from_row(row: &AnyRow) -> Result<OutboxRecord, StoreError> {
    let id: i64 = col(row, "outbox event", "id")?;
    let what = format!("outbox event {id}");
    let data: String = col(row, &what, "data")?;
    Ok(OutboxRecord {
        id,
        event: OutboxEvent {
            event_type: col(row, &what, "event_type")?,
            subject: col(row, &what, "subject")?,
            data: codec::from_json(&what, &data)?,
            traceparent: col(row, &what, "traceparent")?,
        },
        created_at: codec::time(&what, col(row, &what, "created_at")?)?,
    })
}
