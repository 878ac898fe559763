//! signet's bus: one contract for sign-job queues and event streams, with backends
//! chosen by `SIGNET_BUS`: `embedded` (a durable queue in the SQLite store and an
//! in-process broadcast), `amqp://…` (RabbitMQ) or `nats://…` (NATS JetStream).
//!
//! Jobs are at-least-once: a [`Delivery`] is acknowledged only after its work is done,
//! and one that is never settled comes back. Events are CloudEvents 1.0 structured JSON.
//!
//! Layout:
//! - [`queue`]: the [`JobQueue`] contract, [`Message`] and [`Delivery`].
//! - [`event`]: the [`Event`] envelope and the [`EventBus`] contract.
//! - [`embedded`]: the single-process backend behind `signet up`.
//! - [`outbox`]: the relay that publishes the store's outbox to the event bus.

pub mod embedded;
pub mod event;
pub mod outbox;
pub mod queue;

use std::sync::Arc;

pub use event::{Event, EventBus};
pub use queue::{Delivery, JobQueue, Message, Settle};

use signet_store::Store;

/// The queue (and NATS subject) sign jobs travel on.
pub const JOBS_QUEUE: &str = "signet.jobs.sign";
/// Where jobs that will never succeed end up.
pub const JOBS_DEAD: &str = "signet.jobs.dead";
/// Header carrying the job id when the gateway enqueued the job. External producers
/// may leave it out; the signer then creates the job record itself.
pub const JOB_ID_HEADER: &str = "signet-job-id";
/// W3C trace context headers.
pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus URL {0:?} is not understood: use \"embedded\", \"amqp://user:pass@host:5672/vhost\" or \"nats://host:4222\"")]
    BadUrl(String),
    #[error("{backend} bus is unavailable: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("{backend} bus did not confirm the message: {reason}")]
    NotConfirmed {
        backend: &'static str,
        reason: String,
    },
    #[error("event is not a valid signet CloudEvent: {0}")]
    BadEvent(String),
    #[error("the bus is shutting down")]
    Closed,
}

impl BusError {
    /// A broker hiccup is retryable; a malformed URL or event is not.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::NotConfirmed { .. } | Self::Closed
        )
    }
}

/// The bus a process uses: the job queue and the event stream.
#[derive(Clone, Debug)]
pub struct Bus {
    pub jobs: Arc<dyn JobQueue>,
    pub events: Arc<dyn EventBus>,
}

/// Opens the bus named by `url`. The embedded backend keeps its queue in `store`.
pub async fn connect(url: &str, store: &Store) -> Result<Bus, BusError> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        None if url == "embedded" => Ok(embedded::open(store.clone())),
        _ => Err(BusError::BadUrl(url.to_owned())),
    }
}
