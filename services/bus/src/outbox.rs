//! The outbox relay: state changes are written to the store together with the event
//! that announces them; this relay publishes pending events in order and marks them.
//! If the bus is down, events wait in the store; nothing is lost, and a verifier that
//! missed some catches up from the trust bundle's revision. Every event leaves sealed by
//! the control plane's key: verifiers refuse the rest.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use signet_kms::ControlPlaneKey;
use signet_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::event::{Event, EventBus, OutgoingEvent};

const BATCH: u32 = 256;
/// KMS calls in flight while a batch is sealed (a cloud KMS answers in 5-20 ms; order
/// is kept, publishing stays sequential).
const SEALS_IN_FLIGHT: usize = 16;
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How soon a relay looks again while another relay has the turn. That relay goes on
/// while it finds events, so this bounds only the rare event written just after its
/// last read; shorter would add statements every few milliseconds per process.
const BUSY_POLL: Duration = Duration::from_millis(50);

/// Publishes the outbox until `shutdown`. `kick` wakes it right after a write in this
/// process, so in-process events go out without waiting for the poll.
pub async fn run(
    store: Store,
    events: Arc<dyn EventBus>,
    key: Arc<ControlPlaneKey>,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let notified = kick.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match relay_once(&store, events.as_ref(), &key).await {
            Ok(None) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(BUSY_POLL) => {}
                }
            }
            Ok(Some(n)) if n > 0 => {
                backoff = Duration::from_millis(100);
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            Ok(Some(_)) => {
                backoff = Duration::from_millis(100);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = notified => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "outbox relay: cannot publish events");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Publishes one batch; returns how many events went out, or `None` when another
/// relay (another process on the same store) has the turn: each event is sealed and
/// published by one relay, not by every process.
pub async fn relay_once(
    store: &Store,
    events: &dyn EventBus,
    key: &ControlPlaneKey,
) -> Result<Option<usize>, String> {
    // An idle relay reads once and sleeps: the turn is taken only when there is work.
    if store
        .outbox_pending(1)
        .await
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok(Some(0));
    }
    let Some(turn) = store.outbox_turn().await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let relayed = relay_batch(store, events, key).await;
    turn.end().await;
    relayed.map(Some)
}

async fn relay_batch(
    store: &Store,
    events: &dyn EventBus,
    key: &ControlPlaneKey,
) -> Result<usize, String> {
    let pending = store
        .outbox_pending(BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut ready = Vec::with_capacity(pending.len());
    for record in &pending {
        let Some(kind) = signet_core::EventKind::from_cloudevent_type(&record.event.event_type)
        else {
            // An event the relay cannot name would block the outbox forever; it is logged
            // and passed over, since the state it describes is in the store anyway.
            tracing::error!(outbox_id = record.id, event_type = %record.event.event_type, "outbox holds an unknown event type; skipping it");
            ready.push((record.id, None));
            continue;
        };
        let mut event = Event::new(
            kind,
            record.event.subject.clone(),
            record.event.data.clone(),
        );
        // The revision names the event: a re-publish after a relay crash has the same id,
        // so consumers can drop the duplicate.
        event.id = format!("rev-{}", record.id);
        event.time = record.created_at;
        event.revision = Some(record.id);
        // An event written inside a trace (a sign job) is published in a span of that
        // trace, and carries the span's context to its consumers.
        let span = match &record.event.traceparent {
            Some(tp) => {
                let span =
                    tracing::info_span!("event.publish", kind = kind.name(), revision = record.id);
                signet_runtime::telemetry::set_parent_from_traceparent(&span, tp);
                event.traceparent =
                    signet_runtime::telemetry::traceparent(&span).or_else(|| Some(tp.clone()));
                span
            }
            None => tracing::Span::none(),
        };
        let outgoing = OutgoingEvent::encode(&event).map_err(|e| e.to_string())?;
        ready.push((record.id, Some((outgoing, span))));
    }
    // Sealed concurrently, in order; a KMS failure stops the batch before anything of it
    // is published unsealed.
    let sealed: Vec<(i64, Option<(OutgoingEvent, tracing::Span)>)> =
        futures::stream::iter(ready.into_iter().map(|(id, item)| async move {
            match item {
                None => Ok((id, None)),
                Some((outgoing, span)) => {
                    let seal = key
                        .seal(&outgoing.bytes)
                        .await
                        .map_err(|e| format!("cannot seal event {id}: {e}"))?;
                    Ok::<_, String>((id, Some((outgoing.sealed(&seal), span))))
                }
            }
        }))
        .buffered(SEALS_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut published = Vec::with_capacity(sealed.len());
    let mut result = Ok(());
    for (id, item) in sealed {
        if let Some((outgoing, span)) = item {
            // The span moves into the publish and ends with it, as a consumer applying the
            // event may already look for it.
            if let Err(e) = events.publish(&outgoing).instrument(span).await {
                result = Err(e.to_string());
                break;
            }
        }
        published.push(id);
    }
    if !published.is_empty() {
        store
            .outbox_mark_published(&published)
            .await
            .map_err(|e| e.to_string())?;
    }
    result.map(|_| published.len())
}
