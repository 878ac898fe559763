//! The job queue contract every backend fulfils.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// A message on the jobs queue: the sign-request JSON, plus headers (job id, trace context).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub body: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// A durable queue of sign jobs.
#[async_trait]
pub trait JobQueue: Send + Sync + fmt::Debug {
    /// `embedded`, `amqp` or `nats`.
    fn backend(&self) -> &'static str;
    /// Returns only once the message is durable: a broker confirm or a committed write.
    async fn publish(&self, message: Message) -> Result<(), BusError>;
    /// Starts delivering messages; at most `prefetch` are unsettled at any time.
    /// Deliveries stop when `shutdown` fires; the backend reconnects by itself after
    /// a broker restart.
    async fn consume(
        &self,
        prefetch: usize,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<Delivery>, BusError>;
    /// Messages waiting, when the backend can tell: not yet acked or dead-lettered.
    /// Embedded and NATS count deliveries in progress too; RabbitMQ counts messages
    /// ready in the jobs queue and waiting in its retry delay queues.
    async fn depth(&self) -> Result<Option<u64>, BusError>;
    /// When the oldest message still waiting (or in progress) was enqueued, when the
    /// backend can tell: embedded and NATS can; RabbitMQ does not say without its
    /// management API, so it answers `None`.
    async fn oldest(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, BusError> {
        Ok(None)
    }
    /// Fails when the bus cannot take messages now (readiness).
    async fn check(&self) -> Result<(), BusError>;
    /// Up to `limit` dead letters, for an operator to look at; reading them leaves them
    /// where they are. Which ones a backend returns first when there are more differs:
    /// the newest (embedded), the oldest (RabbitMQ, NATS).
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError>;
}

/// A message the bus gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message as it was published (bookkeeping headers removed).
    pub message: Message,
    /// Why it was given up on: the reason passed to [`Delivery::dead_letter`], or the
    /// broker's when it dead-lettered the message itself.
    pub reason: String,
    /// Deliveries it had, when known.
    pub delivery_count: u32,
}

/// How a backend settles one delivery.
#[async_trait]
pub trait Settle: Send {
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Makes the message available again after `delay`.
    async fn retry(self: Box<Self>, delay: Duration) -> Result<(), BusError>;
    /// Moves the message to the dead letters for good.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), BusError>;
}

/// One delivery of a message. Dropping it unsettled returns the message to the queue
/// (after the lease or when the channel closes), which is what a crash does too.
pub struct Delivery {
    pub message: Message,
    /// 1 on first delivery; counts redeliveries after crashes and retries.
    pub delivery_count: u32,
    /// An id the broker gives the message, the same on every redelivery, so a consumer
    /// can name the work it stands for (the signer derives the job id of an external
    /// producer's message from it). Embedded and NATS always have one (queue row, stream
    /// sequence); RabbitMQ has none of its own and uses the AMQP `message_id` property
    /// when the producer set one.
    pub message_id: Option<String>,
    settle: Box<dyn Settle>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("headers", &self.message.headers)
            .field("delivery_count", &self.delivery_count)
            .field("message_id", &self.message_id)
            .finish()
    }
}

impl Delivery {
    pub fn new(message: Message, delivery_count: u32, settle: Box<dyn Settle>) -> Self {
        Self {
            message,
            delivery_count,
            message_id: None,
            settle,
        }
    }

    /// Sets [`Delivery::message_id`].
    pub fn with_message_id(mut self, id: String) -> Self {
        self.message_id = Some(id);
        self
    }

    pub async fn ack(self) -> Result<(), BusError> {
        self.settle.ack().await
    }

    pub async fn retry(self, delay: Duration) -> Result<(), BusError> {
        self.settle.retry(delay).await
    }

    pub async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        self.settle.dead_letter(reason).await
    }
}

/// Hands `delivery` on, unless it has been delivered more than `max_deliver` times: then
/// it goes to the dead letters here and `None` comes back. A message that kills every
/// worker that takes it never gets settled by one, so only the bus can stop it; the
/// brokers' own delivery limits would drop it or leave it where nobody looks.
pub(crate) async fn enforce_max_deliver(delivery: Delivery, max_deliver: u32) -> Option<Delivery> {
    if delivery.delivery_count <= max_deliver {
        return Some(delivery);
    }
    let count = delivery.delivery_count;
    let reason =
        format!("delivered {count} times without being settled (the limit is {max_deliver})");
    tracing::warn!(deliveries = count, "{reason}; dead-lettering the message");
    if let Err(e) = delivery.dead_letter(&reason).await {
        tracing::warn!(error = %e, "could not dead-letter an over-delivered message; it will come back");
    }
    None
}
