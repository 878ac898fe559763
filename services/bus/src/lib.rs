//! signet's bus: one contract for sign-job queues and event streams, with backends
//! chosen by `SIGNET_BUS`: `embedded` (a durable queue in the SQLite store and an
//! in-process broadcast), `amqp://…`/`amqps://…` (RabbitMQ) or `nats://…` (NATS JetStream).
//!
//! Jobs are at-least-once: a [`Delivery`] is acknowledged only after its work is done,
//! and one that is never settled comes back. Events are CloudEvents 1.0 structured JSON.
//! Broker connections reconnect by themselves with backoff; while one is down, publishing
//! fails at once with [`BusError::Unavailable`] so callers can answer 503.
//!
//! # External producers
//!
//! Anything that can put the sign-request JSON (the body of `POST /v1/sign`) on the jobs
//! queue can ask for a signature; no headers are needed:
//!
//! ```text
//! # RabbitMQ: default exchange, routing key = the queue name, persistent (amqp-tools)
//! amqp-publish --url='amqp://guest:guest@127.0.0.1:5672/%2f' -r signet.jobs.sign -p \
//!     -C application/json -b '{"image":"registry.example/app@sha256:<64 hex>","witness":"prod"}'
//! # or, with the management plugin enabled:
//! rabbitmqadmin publish exchange=amq.default routing_key=signet.jobs.sign \
//!     properties='{"delivery_mode":2}' \
//!     payload='{"image":"registry.example/app@sha256:<64 hex>","witness":"prod"}'
//! # NATS (natscli): a plain publish; the SIGNET_JOBS stream captures the subject
//! nats --server nats://127.0.0.1:4222 pub signet.jobs.sign \
//!     '{"image":"registry.example/app@sha256:<64 hex>","witness":"prod"}'
//! ```
//!
//! Layout:
//! - [`queue`]: the [`JobQueue`] contract, [`Message`], [`Delivery`] and [`DeadLetter`].
//! - [`event`]: the [`Event`] envelope and the [`EventBus`] contract.
//! - [`options`]: [`BusOptions`] and the broker object names they imply ([`Names`]);
//!   `BusOptions::from_settings` reads them from signet's settings.
//! - [`embedded`]: the single-process backend behind `signet up`.
//! - [`amqp`]: RabbitMQ (quorum queue, delay queues, dead-letter exchange, topic exchange).
//! - [`nats`]: NATS JetStream (work-queue stream, durable pull consumer, event stream).
//! - [`outbox`]: the relay that publishes the store's outbox to the event bus.

pub mod amqp;
pub mod embedded;
pub mod event;
pub mod nats;
pub mod options;
pub mod outbox;
pub mod queue;
mod reconnect;
mod settings;

use std::sync::Arc;

pub use event::{Event, EventBus, EventRefused, OutgoingEvent, ReceivedEvent};
pub use options::{BusOptions, Names};
pub use queue::{DeadLetter, Delivery, JobQueue, Message, Settle};

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
/// Header a dead letter carries on RabbitMQ and NATS: why the message was given up on.
pub const DEAD_REASON_HEADER: &str = "signet-dead-reason";
/// Header carrying how many deliveries a message had before it was republished (retry
/// delay queues, dead letters), so [`Delivery::delivery_count`] keeps counting.
pub const DELIVERIES_HEADER: &str = "signet-deliveries";

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus URL {0:?} is not understood: use \"embedded\", \"amqp://user:pass@host:5672/vhost\" or \"nats://host:4222\"")]
    BadUrl(String),
    #[error("bus options are not valid: {0}")]
    BadOptions(String),
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
    #[error("message cannot be put on the bus: {0}")]
    BadMessage(String),
    #[error("the bus is shutting down")]
    Closed,
}

impl BusError {
    /// A broker hiccup is retryable; a malformed URL, option, event or message is not.
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

/// The readiness check of a process that works through the store and the bus: both
/// must answer. A process that cannot enqueue or settle must not take work.
pub fn readiness(store: Store, bus: Bus) -> signet_runtime::admin::ReadinessCheck {
    Arc::new(move || {
        let (store, bus) = (store.clone(), bus.clone());
        Box::pin(async move {
            let mut missing = Vec::new();
            if let Err(e) = store.ping().await {
                missing.push(format!("store: {e}"));
            }
            if let Err(e) = bus.jobs.check().await {
                missing.push(format!("bus: {e}"));
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing.join("; "))
            }
        })
    })
}

/// Opens the bus named by `url` with production defaults. The embedded backend keeps its
/// queue in `store`; the broker backends connect (and declare what they need) before
/// this returns, so a wrong URL or an unreachable broker is reported at start.
pub async fn connect(url: &str, store: &Store) -> Result<Bus, BusError> {
    connect_with(url, store, BusOptions::default()).await
}

/// [`connect`] with explicit [`BusOptions`].
pub async fn connect_with(url: &str, store: &Store, options: BusOptions) -> Result<Bus, BusError> {
    options.validate()?;
    let names = Names::new(options.namespace.as_deref())?;
    match url.split_once("://").map(|(scheme, _)| scheme) {
        None if url == "embedded" => Ok(embedded::open_with(store.clone(), names, options)),
        Some("amqp" | "amqps") => amqp::open(url, names, options).await,
        Some("nats") => nats::open(url, names, options).await,
        _ => Err(BusError::BadUrl(redact(url))),
    }
}

/// The URL with any password replaced, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Only fails for URLs that cannot have a password, which this one has.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) if url.contains('@') => "<unparsable URL with credentials>".to_owned(),
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert!(!redact("amqp://u:p@[bad").contains("p@"));
    }

    #[tokio::test]
    async fn refuses_unknown_schemes_without_leaking_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .expect("store");
        let err = connect("kafka://user:hunter2@host:9092", &store)
            .await
            .expect_err("kafka is not a bus");
        assert!(matches!(err, BusError::BadUrl(_)));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
