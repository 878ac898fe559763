//! Sign jobs on RabbitMQ: confirmed publishes onto the quorum queue, and a consumer
//! that reconnects by itself. Each consumer has its own connection with two channels:
//! one consumes and acks (prefetch = the worker concurrency), the other republishes
//! retries and dead letters with confirms, before the original is acked.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::link::Link;
use super::{
    bucket_for, connect, declare, decode_headers, delivery_count, encode_headers, header_u64,
    now_ms, properties, publish_confirmed, republish_headers, unavailable, Config, BACKEND,
    DELAY_BUCKETS, NOT_BEFORE_HEADER,
};
use crate::queue::{enforce_max_deliver, DeadLetter, Delivery, JobQueue, Message, Settle};
use crate::{reconnect, BusError, DEAD_REASON_HEADER};

const JSON: &str = "application/json";
/// Where the AMQP `message_id` travels through retries; see [`Delivery::message_id`].
const MESSAGE_ID_HEADER: &str = "signet-message-id";

#[derive(Debug)]
pub(crate) struct AmqpJobs {
    cfg: Arc<Config>,
    link: Arc<Link>,
}

impl AmqpJobs {
    pub(crate) fn new(cfg: Arc<Config>, link: Arc<Link>) -> Self {
        Self { cfg, link }
    }

    /// A short-lived channel on the publishing connection, for questions that may close
    /// it (a passive declare of a missing queue does).
    async fn side_channel(&self) -> Result<Channel, BusError> {
        let session = self.link.session()?;
        session
            .conn
            .create_channel()
            .await
            .map_err(|e| unavailable(format!("opening a channel: {e}")))
    }
}

#[async_trait]
impl JobQueue for AmqpJobs {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    #[tracing::instrument(
        name = "bus.publish_job",
        level = "debug",
        skip_all,
        fields(backend = "amqp")
    )]
    async fn publish(&self, message: Message) -> Result<(), BusError> {
        let headers = encode_headers(&message.headers)?;
        self.link
            .publish(
                "",
                &self.cfg.names.jobs(),
                &message.body,
                properties(headers, JSON),
                true,
            )
            .await
    }

    async fn consume(
        &self,
        prefetch: usize,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<Delivery>, BusError> {
        let prefetch = u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX);
        let first = open_consumer(&self.cfg, prefetch).await?;
        let (tx, rx) = mpsc::channel(usize::from(prefetch));
        tokio::spawn(consume_loop(
            self.cfg.clone(),
            prefetch,
            shutdown,
            tx,
            first,
        ));
        Ok(rx)
    }

    async fn depth(&self) -> Result<Option<u64>, BusError> {
        let ch = self.side_channel().await?;
        let names = &self.cfg.names;
        let mut queues = vec![names.jobs()];
        queues.extend(
            DELAY_BUCKETS
                .iter()
                .map(|(label, _)| names.delay_queue(label)),
        );
        let mut total = 0u64;
        for q in queues {
            let declared = ch
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions::durable().passive(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| unavailable(format!("asking for the depth of {q}: {e}")))?;
            total += u64::from(declared.message_count());
        }
        Ok(Some(total))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.link.session().map(|_| ())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let ch = self.side_channel().await?;
        let dead = self.cfg.names.dead();
        let mut out = Vec::new();
        while out.len() < limit {
            let got = ch
                .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| unavailable(format!("reading the dead letters: {e}")))?;
            let Some(got) = got else { break };
            let d = got.delivery;
            let table = d.properties.headers().clone().unwrap_or_default();
            let reason = table
                .inner()
                .get(DEAD_REASON_HEADER)
                .and_then(super::value_text)
                .unwrap_or_else(|| "rejected by RabbitMQ (see the x-death header)".to_owned());
            out.push(DeadLetter {
                message: Message {
                    headers: decode_headers(&table),
                    body: d.data,
                },
                reason,
                // The dead-letter queue's own returns are not deliveries of the job.
                delivery_count: super::header_u32(&table, crate::DELIVERIES_HEADER).unwrap_or(0),
            });
        }
        // Closing the channel without acking puts every peeked message back.
        let _ = ch.close(200, "peeked".into()).await;
        Ok(out)
    }
}

/// One consumer connection.
struct ConsumerSession {
    /// Kept so the connection lives as long as the deliveries that need it.
    _conn: Connection,
    channel: Channel,
    /// In confirm mode: retries and dead letters are republished here.
    publisher: Channel,
    cfg: Arc<Config>,
}

async fn open_consumer(
    cfg: &Arc<Config>,
    prefetch: u16,
) -> Result<(Arc<ConsumerSession>, lapin::Consumer), BusError> {
    let conn = connect(cfg, "job consumer").await?;
    let setup = async {
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| unavailable(format!("opening a channel: {e}")))?;
        declare(&channel, &cfg.names).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| unavailable(format!("setting the prefetch: {e}")))?;
        let publisher = conn
            .create_channel()
            .await
            .map_err(|e| unavailable(format!("opening a channel: {e}")))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| unavailable(format!("enabling publisher confirms: {e}")))?;
        let consumer = channel
            .basic_consume(
                cfg.names.jobs().as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable(format!("starting to consume: {e}")))?;
        Ok::<_, BusError>((channel, publisher, consumer))
    };
    let (channel, publisher, consumer) = tokio::time::timeout(cfg.options.connect_timeout, setup)
        .await
        .map_err(|_| unavailable("RabbitMQ did not answer while setting up the consumer"))??;
    let session = Arc::new(ConsumerSession {
        _conn: conn,
        channel,
        publisher,
        cfg: cfg.clone(),
    });
    Ok((session, consumer))
}

enum Ended {
    /// Shutdown, or nobody is receiving any more.
    Stop,
    /// The connection or consumer went away.
    Lost(String),
}

async fn consume_loop(
    cfg: Arc<Config>,
    prefetch: u16,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Delivery>,
    first: (Arc<ConsumerSession>, lapin::Consumer),
) {
    let (mut session, mut consumer) = first;
    loop {
        match forward(&cfg, &shutdown, &tx, &session, &mut consumer).await {
            Ended::Stop => {
                // Stop deliveries; in-flight ones keep the session open until settled,
                // and unforwarded ones go back when it closes.
                let _ = session
                    .channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await;
                return;
            }
            Ended::Lost(reason) => {
                tracing::warn!(broker = %cfg.redacted, %reason, "lost the RabbitMQ job consumer; reconnecting");
            }
        }
        let max = cfg.options.reconnect_max_delay;
        let mut backoff = reconnect::backoff(max);
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = open_consumer(&cfg, prefetch) => a,
            };
            match attempt {
                Ok((s, c)) => {
                    (session, consumer) = (s, c);
                    tracing::warn!(broker = %cfg.redacted, "reconnected the RabbitMQ job consumer");
                    break;
                }
                Err(e) => {
                    let delay = reconnect::next(&mut backoff, max);
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot reconnect the RabbitMQ job consumer");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

async fn forward(
    cfg: &Config,
    shutdown: &CancellationToken,
    tx: &mpsc::Sender<Delivery>,
    session: &Arc<ConsumerSession>,
    consumer: &mut lapin::Consumer,
) -> Ended {
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Stop,
            n = consumer.next() => n,
        };
        let d = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Ended::Lost(e.to_string()),
            None => return Ended::Lost("RabbitMQ ended the consumer".to_owned()),
        };
        let Some(delivery) = to_delivery(session, d).await else {
            continue;
        };
        let Some(delivery) = enforce_max_deliver(delivery, cfg.options.max_deliver).await else {
            continue;
        };
        if tx.send(delivery).await.is_err() {
            return Ended::Stop;
        }
    }
}

/// Wraps a RabbitMQ delivery; `None` when it was parked again because its not-before
/// time (a retry delay longer than the largest bucket) has not come yet.
async fn to_delivery(
    session: &Arc<ConsumerSession>,
    d: lapin::message::Delivery,
) -> Option<Delivery> {
    let mut table = d.properties.headers().clone().unwrap_or_default();
    if let Some(id) = d.properties.message_id() {
        // Kept in the headers too: retries republished through the delay queues carry
        // the headers, not the properties.
        table.insert(
            MESSAGE_ID_HEADER.into(),
            lapin::types::AMQPValue::LongString(id.as_str().into()),
        );
    }
    let count = delivery_count(&table, d.redelivered);
    let mut settle = AmqpSettle {
        session: session.clone(),
        acker: d.acker,
        body: d.data,
        table,
        count,
        settled: false,
    };
    if let Some(not_before) = header_u64(&settle.table, NOT_BEFORE_HEADER) {
        let now = now_ms();
        if not_before > now {
            let remaining = Duration::from_millis(not_before - now);
            // Parking again is not a delivery to a worker: it does not count.
            let before = count.saturating_sub(1);
            if let Err(e) = settle.park(remaining, before, Some(not_before)).await {
                tracing::warn!(error = %e, "could not park a delayed job again; it comes back");
            }
            return None;
        }
    }
    let mut headers = decode_headers(&settle.table);
    let id = headers
        .remove(MESSAGE_ID_HEADER)
        .map(|id| format!("amqp:{id}"));
    let message = Message {
        headers,
        body: settle.body.clone(),
    };
    let delivery = Delivery::new(message, count, Box::new(settle));
    Some(match id {
        Some(id) => delivery.with_message_id(id),
        None => delivery,
    })
}

struct AmqpSettle {
    session: Arc<ConsumerSession>,
    acker: Acker,
    body: Vec<u8>,
    /// The headers as delivered, for republishing.
    table: FieldTable,
    count: u32,
    settled: bool,
}

impl AmqpSettle {
    async fn ack_now(&mut self) -> Result<(), BusError> {
        self.settled = true;
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(unavailable(
                "the delivery's channel closed before the ack; RabbitMQ delivers the message again",
            )),
            Err(e) => Err(unavailable(format!(
                "acking failed ({e}); RabbitMQ delivers the message again"
            ))),
        }
    }

    /// Republishes (confirmed) into the delay queue for `delay`, then acks.
    async fn park(
        &mut self,
        delay: Duration,
        deliveries: u32,
        not_before: Option<u64>,
    ) -> Result<(), BusError> {
        let cfg = &self.session.cfg;
        let (queue, not_before) = if delay.is_zero() {
            (cfg.names.jobs(), None)
        } else {
            let (label, ttl) = bucket_for(delay);
            // A delay longer than the largest bucket takes several rounds through it.
            let not_before = (ttl < delay).then(|| {
                not_before.unwrap_or_else(|| {
                    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    now_ms().saturating_add(ms)
                })
            });
            (cfg.names.delay_queue(label), not_before)
        };
        let headers = republish_headers(&self.table, deliveries, not_before, None);
        publish_confirmed(
            &self.session.publisher,
            "",
            &queue,
            &self.body,
            properties(headers, JSON),
            true,
            cfg.options.publish_timeout,
        )
        .await?;
        self.ack_now().await
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    #[tracing::instrument(name = "bus.ack", level = "debug", skip_all, fields(backend = "amqp"))]
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.ack_now().await
    }

    #[tracing::instrument(
        name = "bus.retry",
        level = "debug",
        skip_all,
        fields(backend = "amqp")
    )]
    async fn retry(mut self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        let count = self.count;
        self.park(delay, count, None).await
    }

    #[tracing::instrument(
        name = "bus.dead_letter",
        level = "debug",
        skip_all,
        fields(backend = "amqp")
    )]
    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), BusError> {
        let cfg = self.session.cfg.clone();
        let headers = republish_headers(&self.table, self.count, None, Some(reason));
        publish_confirmed(
            &self.session.publisher,
            &cfg.names.dead(),
            &cfg.names.jobs(),
            &self.body,
            properties(headers, JSON),
            true,
            cfg.options.publish_timeout,
        )
        .await?;
        self.ack_now().await
    }
}

impl Drop for AmqpSettle {
    /// A delivery dropped unsettled in a live process (a worker that panicked) goes
    /// back to the queue now; otherwise it would wait for the connection to close.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let acker = self.acker.clone();
        let session = self.session.clone();
        rt.spawn(async move {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(e) = acker.nack(requeue).await {
                tracing::debug!(error = %e, "could not return a dropped delivery; it comes back when its channel closes");
            }
            drop(session);
        });
    }
}
