//! Rates shared by every process on one store: a generic cell rate algorithm (GCRA) whose
//! only state is one row per key, the theoretical arrival time (TAT) of the next call.
//! Each caller reserves the next slot in one atomic statement and waits for it, so three
//! signer replicas together stay under one KMS quota instead of each under its own.
//!
//! Written here rather than with a crate: the rate-limiting crates (governor, ...) keep
//! their state in process memory, which is exactly what must be shared.

use std::time::Duration;

use chrono::Utc;

use crate::error::{db, StoreError};
use crate::Store;

/// A reserved slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSlot {
    /// The key's new theoretical arrival time, in microseconds since the epoch: slots of
    /// one key are at least one interval apart, whoever reserved them.
    pub tat_us: i64,
    /// How far ahead of the reservation's clock that is. A caller allowed a burst of
    /// `burst` waits `ahead - burst` (nothing when that is negative).
    pub ahead: Duration,
}

impl Store {
    /// Reserves the next slot of `key` for a rate of one call per `interval`: the TAT
    /// becomes `max(TAT, now) + interval`, atomically on both backends. The clock is this
    /// process's (replicas are expected to keep NTP time; a skew of a few milliseconds
    /// shifts slots by as much, it does not add any).
    #[tracing::instrument(name = "store.reserve_rate_slot", level = "debug", skip_all, fields(key = %key))]
    pub async fn reserve_rate_slot(
        &self,
        key: &str,
        interval: Duration,
    ) -> Result<RateSlot, StoreError> {
        let now = Utc::now().timestamp_micros();
        let step = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX / 4);
        let row: (i64,) = sqlx::query_as(
            "INSERT INTO rate_slots (rate_key, tat_us) VALUES ($1, $2) \
             ON CONFLICT (rate_key) DO UPDATE SET tat_us = CASE \
               WHEN rate_slots.tat_us > $3 THEN rate_slots.tat_us + $4 \
               ELSE excluded.tat_us END \
             RETURNING tat_us",
        )
        .bind(key)
        .bind(now.saturating_add(step))
        .bind(now)
        .bind(step)
        .fetch_one(&self.write)
        .await
        .map_err(db("reserving a rate slot"))?;
        let tat_us = row.0;
        let ahead = u64::try_from(tat_us.saturating_sub(now)).unwrap_or(0);
        Ok(RateSlot {
            tat_us,
            ahead: Duration::from_micros(ahead),
        })
    }
}
