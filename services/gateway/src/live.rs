//! What the console shows live: signet's events and the admission decisions verifiers
//! report, fanned out to every `GET /v1/events/stream` (server-sent events).
//!
//! One subscription to the event bus per gateway process, opened when the first stream
//! is, feeds a broadcast channel that each stream reads. Events are believed only when
//! the control plane's own key sealed them, as verifiers do. Admission decisions are not
//! bus events: the replica that receives a verifier's report announces them to its own
//! streams ([`Live::decisions`]); a console connected to another replica sees them at
//! its next read of the page.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use signet_bus::EventBus;
use signet_core::{PinnedKeys, PublicKey};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many messages a slow stream may fall behind before it skips ahead (and the
/// console re-reads its page anyway).
const BUFFER: usize = 256;

/// One message of the stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveMessage {
    /// `signature.published`, …, or `admission.decision`.
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub data: serde_json::Value,
}

/// The gateway's fan-out of live messages.
#[derive(Debug)]
pub struct Live {
    tx: broadcast::Sender<LiveMessage>,
    /// Set once the bus subscription is running.
    following: OnceLock<()>,
    shutdown: CancellationToken,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BUFFER).0,
            following: OnceLock::new(),
            shutdown: CancellationToken::new(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Live {
    /// A new stream's receiver; the first one starts following `events`, believing only
    /// what `key` sealed.
    pub fn subscribe(
        self: &Arc<Self>,
        events: Arc<dyn EventBus>,
        key: &PublicKey,
    ) -> broadcast::Receiver<LiveMessage> {
        let rx = self.tx.subscribe();
        if self.following.set(()).is_ok() {
            let keys = PinnedKeys::new([key.clone()]);
            tokio::spawn(follow(self.tx.clone(), events, keys, self.shutdown.clone()));
        }
        rx
    }

    /// Ends every stream and the bus subscription: the gateway is shutting down, and an
    /// open console must not hold its graceful shutdown.
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    /// Fires when [`Live::close`] is called.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.shutdown.clone().cancelled_owned()
    }

    /// Announces admission decisions a verifier reported to this replica.
    pub fn decisions(&self, decisions: &[signet_core::AdmissionDecision]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for d in decisions {
            let _ = self.tx.send(LiveMessage {
                kind: "admission.decision".into(),
                subject: format!("{}/{}/{}", d.namespace, d.kind, d.name),
                time: d.at,
                data: serde_json::to_value(d).unwrap_or_default(),
            });
        }
    }
}

async fn follow(
    tx: broadcast::Sender<LiveMessage>,
    events: Arc<dyn EventBus>,
    keys: PinnedKeys,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let mut rx = match events.subscribe(shutdown.clone()).await {
            Ok(rx) => rx,
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = Duration::from_secs(u64::from(failures.min(30)));
                tracing::warn!(error = %e, retry_in = ?delay, "console stream cannot subscribe to events");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        failures = 0;
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = rx.recv() => r,
            };
            let Some(received) = received else { break };
            match received.open(&keys) {
                Ok(event) => {
                    let _ = tx.send(LiveMessage {
                        kind: event.kind.name().to_owned(),
                        subject: event.subject,
                        time: event.time,
                        data: event.data,
                    });
                }
                Err(e) => {
                    tracing::warn!(reason = e.reason(), "console stream refused an event");
                }
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}
