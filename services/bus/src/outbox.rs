//! The outbox relay: state changes are written to the store together with the event
//! that announces them; this relay publishes pending events in order and marks them.
//! If the bus is down, events wait in the store; nothing is lost, and a verifier that
//! missed some catches up from the trust bundle's revision.

use std::sync::Arc;
use std::time::Duration;

use signet_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::event::{Event, EventBus};

const BATCH: u32 = 256;
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Publishes the outbox until `shutdown`. `kick` wakes it right after a write in this
/// process, so in-process events go out without waiting for the poll.
pub async fn run(
    store: Store,
    events: Arc<dyn EventBus>,
    kick: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let notified = kick.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match relay_once(&store, events.as_ref()).await {
            Ok(n) if n > 0 => {
                backoff = Duration::from_millis(100);
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            Ok(_) => {
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

/// Publishes one batch; returns how many events went out.
pub async fn relay_once(store: &Store, events: &dyn EventBus) -> Result<usize, String> {
    let pending = store
        .outbox_pending(BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let mut published = Vec::with_capacity(pending.len());
    let mut result = Ok(());
    for record in &pending {
        let Some(kind) = signet_core::EventKind::from_cloudevent_type(&record.event.event_type)
        else {
            // An event the relay cannot name would block the outbox forever; it is logged
            // and passed over, since the state it describes is in the store anyway.
            tracing::error!(outbox_id = record.id, event_type = %record.event.event_type, "outbox holds an unknown event type; skipping it");
            published.push(record.id);
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
        if let Err(e) = events.publish(&event).instrument(span).await {
            result = Err(e.to_string());
            break;
        }
        published.push(record.id);
    }
    if !published.is_empty() {
        store
            .outbox_mark_published(&published)
            .await
            .map_err(|e| e.to_string())?;
    }
    result.map(|_| published.len())
}
