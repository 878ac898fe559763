//! Events on NATS: published into the `SIGNET_EVENTS` stream on
//! `signet.events.<noun>.<verb>` and acknowledged by it; the event id is the JetStream
//! message id, so the outbox relay re-publishing after a crash is deduplicated. Each
//! subscriber reads through an ordered consumer that starts at new events and, after an
//! outage, resumes right after the last event it saw.

use std::sync::Arc;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::HeaderMap;
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{unavailable, Shared, BACKEND};
use signet_core::SEAL_HEADER;

use crate::event::{EventBus, OutgoingEvent, ReceivedEvent};
use crate::{reconnect, BusError};

const EVENT_BUFFER: usize = 1024;

#[derive(Debug)]
pub(crate) struct NatsEvents {
    shared: Arc<Shared>,
}

impl NatsEvents {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl EventBus for NatsEvents {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    #[tracing::instrument(name = "bus.publish_event", level = "debug", skip_all, fields(backend = "nats", kind = event.kind.name()))]
    async fn publish(&self, event: &OutgoingEvent) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        if let Some(seal) = &event.seal {
            headers.insert(SEAL_HEADER, seal.as_str());
        }
        headers.insert("Nats-Msg-Id", event.id.as_str());
        headers.insert("Content-Type", "application/cloudevents+json");
        // The context is in the CloudEvent too; in the header, tools that do not read
        // CloudEvents see it.
        if let Some(tp) = &event.traceparent {
            headers.insert(crate::TRACEPARENT_HEADER, tp.as_str());
        }
        self.shared
            .publish(
                self.shared.names.event_subject(event.kind),
                headers,
                event.bytes.clone(),
            )
            .await
    }

    async fn subscribe(
        &self,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<ReceivedEvent>, BusError> {
        self.shared.ensure_connected()?;
        let first = ordered(&self.shared, DeliverPolicy::New).await?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(subscription_loop(self.shared.clone(), shutdown, tx, first));
        Ok(rx)
    }
}

async fn ordered(shared: &Shared, start: DeliverPolicy) -> Result<pull::Ordered, BusError> {
    let stream = shared
        .js
        .get_stream(shared.names.events_stream())
        .await
        .map_err(|e| unavailable(format!("finding the events stream: {e}")))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: shared.names.event_subjects(),
            deliver_policy: start,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("creating an event subscription: {e}")))?;
    consumer
        .messages()
        .await
        .map_err(|e| unavailable(format!("starting an event subscription: {e}")))
}

async fn subscription_loop(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tx: mpsc::Sender<ReceivedEvent>,
    first: pull::Ordered,
) {
    let mut messages = first;
    // The stream sequence of the last event seen, to resume after it.
    let mut last_seen: Option<u64> = None;
    let max = shared.options.reconnect_max_delay;
    loop {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = messages.next() => n,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // The ordered consumer recreates itself after most failures; it
                    // reports the ones it could not get past.
                    tracing::warn!(error = %e, "NATS event subscription failed; resubscribing");
                    break;
                }
                None => {
                    tracing::warn!("NATS event subscription ended; resubscribing");
                    break;
                }
            };
            if let Ok(info) = msg.info() {
                last_seen = Some(info.stream_sequence);
            }
            let seal = msg
                .message
                .headers
                .as_ref()
                .and_then(|h| h.get(SEAL_HEADER))
                .map(|v| v.as_str().to_owned());
            let received = ReceivedEvent {
                bytes: msg.message.payload.clone(),
                seal,
            };
            if tx.send(received).await.is_err() {
                return;
            }
        }
        let mut backoff = reconnect::backoff(max);
        loop {
            let start = match last_seen {
                Some(seq) => DeliverPolicy::ByStartSequence {
                    start_sequence: seq + 1,
                },
                None => DeliverPolicy::New,
            };
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = ordered(&shared, start) => a,
            };
            match attempt {
                Ok(m) => {
                    messages = m;
                    tracing::warn!(broker = %shared.redacted, "resubscribed to NATS events");
                    break;
                }
                Err(e) => {
                    let delay = reconnect::next(&mut backoff, max);
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot resubscribe to NATS events");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}
