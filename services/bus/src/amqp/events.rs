//! Events on RabbitMQ: persistent, confirmed publishes to the `signet.events` topic
//! exchange with routing key `<noun>.<verb>`; each subscriber gets an exclusive,
//! auto-deleted queue bound with `#` on a connection of its own, redeclared after a
//! reconnect (events published meanwhile are missed; subscribers see the revision gap).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ExchangeKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::link::Link;
use super::{connect, properties, unavailable, Config, BACKEND};
use bytes::Bytes;
use signet_core::SEAL_HEADER;

use crate::event::{EventBus, OutgoingEvent, ReceivedEvent};
use crate::{reconnect, BusError};

const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// Events a subscriber may hold unacked; bounds its memory when it falls behind.
const SUBSCRIBER_PREFETCH: u16 = 256;
const EVENT_BUFFER: usize = 1024;

#[derive(Debug)]
pub(crate) struct AmqpEvents {
    cfg: Arc<Config>,
    link: Arc<Link>,
}

impl AmqpEvents {
    pub(crate) fn new(cfg: Arc<Config>, link: Arc<Link>) -> Self {
        Self { cfg, link }
    }
}

#[async_trait]
impl EventBus for AmqpEvents {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    #[tracing::instrument(name = "bus.publish_event", level = "debug", skip_all, fields(backend = "amqp", kind = event.kind.name()))]
    async fn publish(&self, event: &OutgoingEvent) -> Result<(), BusError> {
        // The context is in the CloudEvent too; in the header, tools that do not read
        // CloudEvents see it.
        let mut headers = FieldTable::default();
        if let Some(tp) = &event.traceparent {
            headers.insert(crate::TRACEPARENT_HEADER.into(), super::long_string(tp));
        }
        if let Some(seal) = &event.seal {
            headers.insert(SEAL_HEADER.into(), super::long_string(seal));
        }
        let props = properties(headers, CLOUDEVENTS_JSON).with_message_id(
            ShortString::try_new(event.id.as_str())
                .map_err(|e| BusError::BadEvent(format!("event id: {e}")))?,
        );
        // Not mandatory: an event nobody is subscribed to is not an error.
        self.link
            .publish(
                &self.cfg.names.events_exchange(),
                event.kind.name(),
                &event.bytes,
                props,
                false,
            )
            .await
    }

    async fn subscribe(
        &self,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<ReceivedEvent>, BusError> {
        let first = open_subscription(&self.cfg).await?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(subscription_loop(self.cfg.clone(), shutdown, tx, first));
        Ok(rx)
    }
}

async fn open_subscription(cfg: &Config) -> Result<(Connection, lapin::Consumer), BusError> {
    let conn = connect(cfg, "event subscriber").await?;
    let setup = async {
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| unavailable(format!("opening a channel: {e}")))?;
        let exchange = cfg.names.events_exchange();
        ch.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| unavailable(format!("declaring the events exchange: {e}")))?;
        let queue = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions::exclusive().auto_delete(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| unavailable(format!("declaring a subscriber queue: {e}")))?;
        ch.queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| unavailable(format!("binding a subscriber queue: {e}")))?;
        ch.basic_qos(SUBSCRIBER_PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| unavailable(format!("setting the prefetch: {e}")))?;
        ch.basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| unavailable(format!("starting to consume events: {e}")))
    };
    let consumer = tokio::time::timeout(cfg.options.connect_timeout, setup)
        .await
        .map_err(|_| unavailable("RabbitMQ did not answer while setting up a subscription"))??;
    Ok((conn, consumer))
}

async fn subscription_loop(
    cfg: Arc<Config>,
    shutdown: CancellationToken,
    tx: mpsc::Sender<ReceivedEvent>,
    first: (Connection, lapin::Consumer),
) {
    let (mut _conn, mut consumer) = first;
    loop {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = consumer.next() => n,
            };
            let d = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "lost the RabbitMQ event subscription; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!("RabbitMQ ended the event subscription; reconnecting");
                    break;
                }
            };
            let seal = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(SEAL_HEADER))
                .and_then(super::value_text);
            let received = ReceivedEvent {
                bytes: Bytes::from(d.data.clone()),
                seal,
            };
            if tx.send(received).await.is_err() {
                return;
            }
            // The queue is this subscriber's alone; the ack only paces the broker.
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
        let max = cfg.options.reconnect_max_delay;
        let mut backoff = reconnect::backoff(max);
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = open_subscription(&cfg) => a,
            };
            match attempt {
                Ok((c, s)) => {
                    (_conn, consumer) = (c, s);
                    tracing::warn!(broker = %cfg.redacted, "reconnected the RabbitMQ event subscription");
                    break;
                }
                Err(e) => {
                    let delay = reconnect::next(&mut backoff, max);
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot reconnect the RabbitMQ event subscription");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}
