//! The NATS JetStream backend (async-nats). What it declares, idempotently, at start:
//!
//! - `SIGNET_JOBS`: a file-backed work-queue stream on subject `signet.jobs.sign` (a
//!   message leaves it when acked), with the durable pull consumer `signet-signer`
//!   (explicit ack, `ack_wait`) every signer replica pulls from.
//! - `SIGNET_DEAD`: a file-backed stream (limits retention) on `signet.jobs.dead`.
//! - `SIGNET_EVENTS`: a file-backed stream (limits retention, one day) on
//!   `signet.events.>`, so publishing an event is acknowledged; subscribers read it
//!   through ordered consumers that start at new events.
//!
//! The client reconnects by itself (each disconnect and reconnect is logged at warn);
//! pulls and subscriptions resume after it. The bus enforces `max_deliver` itself and
//! the consumer has no limit of its own: JetStream stops redelivering at its limit but
//! keeps the message in the work queue, where nobody would see it.
//!
//! Layout:
//! - this module: connecting, streams, header encoding.
//! - `jobs`: the [`JobQueue`](crate::JobQueue) and its pull loop.
//! - `events`: the [`EventBus`](crate::EventBus).

mod events;
mod jobs;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{Client, HeaderMap};

use crate::{Bus, BusError, BusOptions, Names, DEAD_REASON_HEADER, DELIVERIES_HEADER};

pub(crate) const BACKEND: &str = "nats";

/// How long events stay in `SIGNET_EVENTS`: a verifier that was away longer re-syncs
/// from the trust bundle anyway.
const EVENTS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Dead letters kept; the oldest go first beyond this.
const DEAD_MAX_MESSAGES: i64 = 100_000;
/// Unacked messages the durable consumer allows across all replicas; each replica's own
/// prefetch bounds what it holds.
const MAX_ACK_PENDING: i64 = 10_000;

pub(crate) struct Shared {
    client: Client,
    js: Context,
    /// May hold credentials: never logged; `redacted` is.
    redacted: String,
    names: Names,
    options: BusOptions,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("url", &self.redacted)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unavailable(reason: impl Into<String>) -> BusError {
    BusError::Unavailable {
        backend: BACKEND,
        reason: reason.into(),
    }
}

fn not_confirmed(reason: impl Into<String>) -> BusError {
    BusError::NotConfirmed {
        backend: BACKEND,
        reason: reason.into(),
    }
}

/// Connects and declares the streams and the jobs consumer.
pub(crate) async fn open(url: &str, names: Names, options: BusOptions) -> Result<Bus, BusError> {
    let redacted = crate::redact(url);
    let max = options.reconnect_max_delay;
    let was_connected = Arc::new(AtomicBool::new(false));
    let log_url = redacted.clone();
    let connect = async_nats::ConnectOptions::new()
        .name("signet")
        .connection_timeout(options.connect_timeout)
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max))
        .event_callback(move |event| {
            let (url, was_connected) = (log_url.clone(), was_connected.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        if was_connected.swap(true, Ordering::SeqCst) {
                            tracing::warn!(broker = %url, "reconnected to NATS");
                        }
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(broker = %url, "lost the NATS connection; reconnecting");
                    }
                    other => tracing::debug!(broker = %url, event = %other, "NATS client event"),
                }
            }
        })
        .connect(url);
    let client = match tokio::time::timeout(options.connect_timeout, connect).await {
        Err(_) => {
            return Err(unavailable(format!(
                "NATS at {redacted} did not accept a connection within {:?}",
                options.connect_timeout
            )))
        }
        Ok(Err(e)) => {
            return Err(unavailable(format!(
                "cannot connect to NATS at {redacted}: {e}"
            )))
        }
        Ok(Ok(c)) => c,
    };
    let js = jetstream::ContextBuilder::new()
        .timeout(options.publish_timeout)
        .build(client.clone());
    let shared = Arc::new(Shared {
        client,
        js,
        redacted,
        names,
        options,
    });
    tokio::time::timeout(shared.options.connect_timeout, declare(&shared))
        .await
        .map_err(|_| unavailable("NATS did not answer while declaring the streams"))??;
    Ok(Bus {
        jobs: Arc::new(jobs::NatsJobs::new(shared.clone())),
        events: Arc::new(events::NatsEvents::new(shared)),
    })
}

/// 100ms doubling to `max`: a dropped connection is retried at once, a long outage
/// without hammering the server.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    let exp = u32::try_from(attempts.min(16)).unwrap_or(16);
    Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(exp))
        .min(max)
}

async fn declare(shared: &Shared) -> Result<(), BusError> {
    let names = &shared.names;
    let js = &shared.js;
    let stream_err = |what: &'static str| {
        move |e: jetstream::context::CreateStreamError| {
            unavailable(format!("declaring the {what} stream: {e}"))
        }
    };
    js.get_or_create_stream(stream::Config {
        name: names.jobs_stream(),
        subjects: vec![names.jobs()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        description: Some("signet sign jobs".to_owned()),
        ..Default::default()
    })
    .await
    .map_err(stream_err("jobs"))?;
    js.get_or_create_stream(stream::Config {
        name: names.dead_stream(),
        subjects: vec![names.dead()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_messages: DEAD_MAX_MESSAGES,
        discard: DiscardPolicy::Old,
        description: Some("signet sign jobs given up on".to_owned()),
        ..Default::default()
    })
    .await
    .map_err(stream_err("dead-letter"))?;
    js.get_or_create_stream(stream::Config {
        name: names.events_stream(),
        subjects: vec![names.event_subjects()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_age: EVENTS_MAX_AGE,
        description: Some("signet events (CloudEvents JSON)".to_owned()),
        ..Default::default()
    })
    .await
    .map_err(stream_err("events"))?;
    jobs_consumer(shared).await?;
    Ok(())
}

/// The durable pull consumer on the jobs stream, created when missing.
async fn jobs_consumer(shared: &Shared) -> Result<PullConsumer, BusError> {
    let names = &shared.names;
    let stream = shared
        .js
        .get_stream(names.jobs_stream())
        .await
        .map_err(|e| unavailable(format!("finding the jobs stream: {e}")))?;
    stream
        .get_or_create_consumer(
            names.jobs_consumer(),
            pull::Config {
                durable_name: Some(names.jobs_consumer().to_owned()),
                description: Some("signet signers".to_owned()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: shared.options.ack_wait,
                max_deliver: -1,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| unavailable(format!("declaring the jobs consumer: {e}")))
}

impl Shared {
    /// Fails at once while the client is not connected, rather than letting a publish
    /// wait in the client's buffer for the server to come back.
    fn ensure_connected(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(unavailable(format!(
                "not connected to NATS at {} ({state:?}); reconnecting",
                self.redacted
            ))),
        }
    }

    /// Publishes to JetStream and waits for the stream's acknowledgement.
    async fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Result<(), BusError> {
        self.ensure_connected()?;
        let timeout = self.options.publish_timeout;
        let acked = tokio::time::timeout(timeout, async {
            self.js
                .publish_with_headers(subject, headers, body.clone())
                .await
                .map_err(|e| unavailable(format!("publishing failed: {e}")))?
                .await
                .map_err(|e| not_confirmed(e.to_string()))
        })
        .await;
        match acked {
            Err(_) => Err(not_confirmed(format!(
                "no acknowledgement within {timeout:?}"
            ))),
            Ok(result) => result.map(|_| ()),
        }
    }
}

fn encode_headers(headers: &BTreeMap<String, String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(k.as_str(), v.as_str());
    }
    map
}

/// Whether a header is bookkeeping (the server's `Nats-…` or the bus's own) rather
/// than something the producer set.
fn is_bookkeeping(name: &str) -> bool {
    name.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
        || name == DELIVERIES_HEADER
        || name == DEAD_REASON_HEADER
}

fn decode_headers(headers: Option<&HeaderMap>) -> BTreeMap<String, String> {
    let Some(headers) = headers else {
        return BTreeMap::new();
    };
    headers
        .iter()
        .filter(|(k, _)| !is_bookkeeping(k.as_ref()))
        .filter_map(|(k, values)| {
            values
                .first()
                .map(|v| (AsRef::<str>::as_ref(k).to_owned(), v.as_str().to_owned()))
        })
        .collect()
}

fn header_u32(headers: Option<&HeaderMap>, name: &str) -> Option<u32> {
    headers?.get(name)?.as_str().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_grows_to_the_cap() {
        let max = Duration::from_secs(3);
        assert_eq!(reconnect_delay(0, max), Duration::from_millis(100));
        assert_eq!(reconnect_delay(2, max), Duration::from_millis(400));
        assert_eq!(reconnect_delay(40, max), max);
    }

    #[test]
    fn headers_round_trip_without_bookkeeping() {
        let mut h = BTreeMap::new();
        h.insert("signet-job-id".to_owned(), "abc".to_owned());
        h.insert("traceparent".to_owned(), "00-1-2-01".to_owned());
        let mut map = encode_headers(&h);
        map.insert("Nats-Msg-Id", "x");
        map.insert(DELIVERIES_HEADER, "3");
        assert_eq!(decode_headers(Some(&map)), h);
        assert_eq!(header_u32(Some(&map), DELIVERIES_HEADER), Some(3));
        assert!(decode_headers(None).is_empty());
    }
}
