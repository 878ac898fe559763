//! Sign jobs on NATS JetStream. The consumer pulls no more messages than it has free
//! prefetch slots, so a replica never holds more unsettled deliveries than its
//! concurrency; every settlement waits for the server's answer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    decode_headers, encode_headers, header_u32, jobs_consumer, unavailable, Shared, BACKEND,
};
use crate::queue::{enforce_max_deliver, DeadLetter, Delivery, JobQueue, Message, Settle};
use crate::{reconnect, BusError, DEAD_REASON_HEADER, DELIVERIES_HEADER};

#[derive(Debug)]
pub(crate) struct NatsJobs {
    shared: Arc<Shared>,
}

impl NatsJobs {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl NatsJobs {
    /// The jobs stream's current state (fetched, not cached).
    async fn jobs_state(&self) -> Result<async_nats::jetstream::stream::State, BusError> {
        self.shared.ensure_connected()?;
        let stream = self
            .shared
            .js
            .get_stream(self.shared.names.jobs_stream())
            .await
            .map_err(|e| unavailable(format!("finding the jobs stream: {e}")))?;
        Ok(stream.cached_info().state.clone())
    }
}

#[async_trait]
impl JobQueue for NatsJobs {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    #[tracing::instrument(
        name = "bus.publish_job",
        level = "debug",
        skip_all,
        fields(backend = "nats")
    )]
    async fn publish(&self, message: Message) -> Result<(), BusError> {
        let headers = encode_headers(&message.headers);
        self.shared
            .publish(self.shared.names.jobs(), headers, message.body.into())
            .await
    }

    async fn consume(
        &self,
        prefetch: usize,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        let prefetch = prefetch.max(1);
        self.shared.ensure_connected()?;
        let consumer = jobs_consumer(&self.shared).await?;
        let (tx, rx) = mpsc::channel(prefetch);
        tokio::spawn(pull_loop(
            self.shared.clone(),
            consumer,
            prefetch,
            shutdown,
            tx,
        ));
        Ok(rx)
    }

    async fn depth(&self) -> Result<Option<u64>, BusError> {
        Ok(Some(self.jobs_state().await?.messages))
    }

    async fn oldest(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, BusError> {
        // A work-queue stream drops what is acked: its first message is the oldest job
        // not yet done.
        let state = self.jobs_state().await?;
        if state.messages == 0 {
            return Ok(None);
        }
        let nanos = state.first_timestamp.unix_timestamp_nanos();
        Ok(i64::try_from(nanos)
            .ok()
            .map(chrono::DateTime::from_timestamp_nanos))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.shared.ensure_connected()
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        self.shared.ensure_connected()?;
        let stream = self
            .shared
            .js
            .get_stream(self.shared.names.dead_stream())
            .await
            .map_err(|e| unavailable(format!("finding the dead-letter stream: {e}")))?;
        let state = &stream.cached_info().state;
        let mut out = Vec::new();
        if state.messages == 0 {
            return Ok(out);
        }
        for seq in state.first_sequence..=state.last_sequence {
            if out.len() >= limit {
                break;
            }
            let m = match stream.get_raw_message(seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                    continue
                }
                Err(e) => return Err(unavailable(format!("reading dead letter {seq}: {e}"))),
            };
            let headers = Some(&m.headers);
            out.push(DeadLetter {
                message: Message {
                    body: m.payload.to_vec(),
                    headers: decode_headers(headers),
                },
                reason: m
                    .headers
                    .get(DEAD_REASON_HEADER)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
                delivery_count: header_u32(headers, DELIVERIES_HEADER).unwrap_or(0),
            });
        }
        Ok(out)
    }
}

enum Pulled {
    /// The pull request ended (filled or expired).
    Done,
    /// Shutdown, or nobody is receiving any more.
    Stop,
}

async fn pull_loop(
    shared: Arc<Shared>,
    consumer: PullConsumer,
    prefetch: usize,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Delivery>,
) {
    let slots = Arc::new(Semaphore::new(prefetch));
    let mut consumer = Some(consumer);
    let max = shared.options.reconnect_max_delay;
    let mut backoff = reconnect::backoff(max);
    let mut failing = false;
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let mut permits = vec![first];
        while permits.len() < prefetch {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        match pull_once(&shared, &mut consumer, permits, &shutdown, &tx).await {
            Ok(Pulled::Stop) => return,
            Ok(Pulled::Done) => {
                if failing {
                    tracing::warn!(broker = %shared.redacted, "the NATS job consumer is pulling again");
                    failing = false;
                    backoff = reconnect::backoff(max);
                }
            }
            Err(e) => {
                // Declared again on the next pull: the server may have lost it.
                consumer = None;
                let delay = reconnect::next(&mut backoff, max);
                if failing {
                    tracing::debug!(error = %e, retry_in = ?delay, "NATS job consumer still cannot pull");
                } else {
                    tracing::warn!(error = %e, retry_in = ?delay, "NATS job consumer cannot pull; retrying");
                    failing = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// One pull request for as many messages as there are `permits`; each delivery takes
/// one, and the rest are released when the request ends.
async fn pull_once(
    shared: &Arc<Shared>,
    consumer: &mut Option<PullConsumer>,
    mut permits: Vec<OwnedSemaphorePermit>,
    shutdown: &CancellationToken,
    tx: &mpsc::Sender<Delivery>,
) -> Result<Pulled, BusError> {
    shared.ensure_connected()?;
    let c = match consumer {
        Some(c) => c,
        None => consumer.insert(jobs_consumer(shared).await?),
    };
    let mut batch = c
        .batch()
        .max_messages(permits.len())
        .expires(shared.options.poll_interval)
        .messages()
        .await
        .map_err(|e| unavailable(format!("asking for jobs: {e}")))?;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(Pulled::Stop),
            n = batch.next() => n,
        };
        let msg = match next {
            None => return Ok(Pulled::Done),
            Some(Err(e)) => return Err(unavailable(format!("receiving jobs: {e}"))),
            Some(Ok(msg)) => msg,
        };
        let Some(permit) = permits.pop() else {
            // The server sent more than was asked for; let it come again.
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            continue;
        };
        let delivery = to_delivery(shared, msg, permit);
        let Some(delivery) = enforce_max_deliver(delivery, shared.options.max_deliver).await else {
            continue;
        };
        if tx.send(delivery).await.is_err() {
            return Ok(Pulled::Stop);
        }
    }
}

fn to_delivery(
    shared: &Arc<Shared>,
    msg: jetstream::Message,
    permit: OwnedSemaphorePermit,
) -> Delivery {
    let count = msg
        .info()
        .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let message = Message {
        body: msg.message.payload.to_vec(),
        headers: decode_headers(msg.message.headers.as_ref()),
    };
    // The stream sequence stays with the message through redeliveries; the time it was
    // stored tells apart the messages of a stream that was recreated.
    let id = msg.info().ok().map(|info| {
        format!(
            "nats:{}:{}:{}",
            info.stream,
            info.stream_sequence,
            info.published.unix_timestamp_nanos()
        )
    });
    let progress = keep_alive(shared, &msg);
    let settle = NatsSettle {
        shared: shared.clone(),
        msg,
        count,
        progress,
        settled: false,
        _permit: permit,
    };
    let delivery = Delivery::new(message, count, Box::new(settle));
    match id {
        Some(id) => delivery.with_message_id(id),
        None => delivery,
    }
}

/// Tells the server, every third of `ack_wait`, that the delivery is still being worked
/// on, so a slow job is not handed to a second worker. Stops when the delivery is
/// settled or dropped; a dead process stops it too, and the message comes back.
fn keep_alive(shared: &Arc<Shared>, msg: &jetstream::Message) -> Option<JoinHandle<()>> {
    let reply = msg.message.reply.clone()?;
    let client = shared.client.clone();
    let every = shared.options.ack_wait / 3;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            if let Err(e) = client
                .publish(reply.clone(), Bytes::from(AckKind::Progress))
                .await
            {
                tracing::debug!(error = %e, "could not extend a delivery's ack wait");
            }
        }
    }))
}

struct NatsSettle {
    shared: Arc<Shared>,
    msg: jetstream::Message,
    count: u32,
    progress: Option<JoinHandle<()>>,
    settled: bool,
    /// Held until settled, so no more than `prefetch` deliveries are outstanding.
    _permit: OwnedSemaphorePermit,
}

impl NatsSettle {
    /// Sends `kind` and waits for the server to confirm it.
    async fn answer(&mut self, kind: AckKind, what: &str) -> Result<(), BusError> {
        self.settled = true;
        if let Some(p) = self.progress.take() {
            p.abort();
        }
        self.msg.double_ack_with(kind).await.map_err(|e| {
            unavailable(format!(
                "the server did not confirm the {what} ({e}); it delivers the message again after ack_wait"
            ))
        })
    }
}

#[async_trait]
impl Settle for NatsSettle {
    #[tracing::instrument(name = "bus.ack", level = "debug", skip_all, fields(backend = "nats"))]
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.answer(AckKind::Ack, "ack").await
    }

    #[tracing::instrument(
        name = "bus.retry",
        level = "debug",
        skip_all,
        fields(backend = "nats")
    )]
    async fn retry(mut self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.answer(AckKind::Nak(delay), "retry (nak)").await
    }

    #[tracing::instrument(
        name = "bus.dead_letter",
        level = "debug",
        skip_all,
        fields(backend = "nats")
    )]
    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), BusError> {
        let mut headers = decode_headers(self.msg.message.headers.as_ref());
        headers.insert(
            DEAD_REASON_HEADER.to_owned(),
            reason.replace(['\r', '\n'], " "),
        );
        headers.insert(DELIVERIES_HEADER.to_owned(), self.count.to_string());
        let body = self.msg.message.payload.to_vec();
        self.shared
            .publish(
                self.shared.names.dead(),
                encode_headers(&headers),
                body.into(),
            )
            .await?;
        self.answer(AckKind::Ack, "ack after dead-lettering").await
    }
}

impl Drop for NatsSettle {
    /// A delivery dropped unsettled in a live process (a worker that panicked) is
    /// offered again now rather than after `ack_wait`.
    fn drop(&mut self) {
        if let Some(p) = self.progress.take() {
            p.abort();
        }
        if self.settled {
            return;
        }
        let Some(reply) = self.msg.message.reply.clone() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.shared.client.clone();
        rt.spawn(async move {
            if let Err(e) = client.publish(reply, Bytes::from(AckKind::Nak(None))).await {
                tracing::debug!(error = %e, "could not return a dropped delivery; it comes back after ack_wait");
            }
        });
    }
}
