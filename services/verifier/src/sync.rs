//! Keeping the trust snapshot current: events are applied as they arrive; the trust
//! bundle is fetched at start, when the event stream (re)connects, when a revision gap
//! shows that events were missed, when an event names keys the snapshot lacks, and every
//! `resync_interval` besides. While the control plane is down the verifier keeps its
//! last bundle (also kept on disk when a state dir is set) and its cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use signet_bus::{Event, EventBus};
use signet_core::{
    EventKind, PolicyUpdate, RevokedSignature, SignatureRecord, TrustBundle, Witness,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::control::ControlPlane;
use crate::trust::{apply_policy_update, apply_signature_revoked, apply_witness, backoff, Trust};

/// The longest wait between two failed attempts to reach the bus or the control plane.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Asks the re-sync task for a fresh bundle. Requests made while one is being fetched
/// lead to one more fetch, not one each.
#[derive(Clone, Debug, Default)]
pub struct Resync(Arc<Notify>);

impl Resync {
    pub fn request(&self, why: &str) {
        tracing::debug!(why, "trust bundle re-sync requested");
        self.0.notify_one();
    }
}

/// The file the last bundle is kept in.
pub fn bundle_file(state_dir: &std::path::Path, cluster: &str) -> PathBuf {
    state_dir.join(format!("trust-bundle-{cluster}.json"))
}

/// Loads a kept bundle for `cluster`, if there is a readable one.
pub fn load_kept(path: &std::path::Path, cluster: &str) -> Option<TrustBundle> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice::<TrustBundle>(&bytes) {
        Ok(b) if b.cluster == cluster => Some(b),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "kept trust bundle is unreadable; ignoring it");
            None
        }
    }
}

fn keep(path: &std::path::Path, bundle: &TrustBundle) -> std::io::Result<()> {
    let json = serde_json::to_vec(bundle).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Fetches and installs bundles until `shutdown`.
pub async fn resync_loop(
    trust: Arc<Trust>,
    control: ControlPlane,
    resync: Resync,
    interval: Duration,
    kept: Option<PathBuf>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        // Registered before fetching, so a request made during the fetch is not lost.
        let requested = resync.0.notified();
        tokio::pin!(requested);
        requested.as_mut().enable();
        let wait = match control.bundle().await {
            Ok(bundle) => {
                failures = 0;
                let revision = bundle.revision;
                let policies = bundle.policies.len();
                let to_keep = kept.as_ref().map(|p| (p.clone(), bundle.clone()));
                if trust.install(bundle) {
                    tracing::debug!(revision, policies, "trust bundle installed");
                    if let Some((path, bundle)) = to_keep {
                        let written =
                            tokio::task::spawn_blocking(move || keep(&path, &bundle)).await;
                        if let Ok(Err(e)) = written {
                            tracing::warn!(error = %e, "cannot keep the trust bundle on disk");
                        }
                    }
                }
                interval
            }
            Err(e) => {
                failures += 1;
                let delay = backoff(failures, MAX_BACKOFF);
                tracing::warn!(error = %e, retry_in = ?delay, revision = trust.snapshot().revision(), "cannot fetch the trust bundle; deciding from the last one");
                delay
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut requested => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Follows the event stream until `shutdown`.
pub async fn event_loop(
    trust: Arc<Trust>,
    events: Arc<dyn EventBus>,
    resync: Resync,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let mut rx = match events.subscribe(shutdown.clone()).await {
            Ok(rx) => rx,
            Err(e) => {
                failures += 1;
                let delay = backoff(failures, MAX_BACKOFF);
                tracing::warn!(error = %e, retry_in = ?delay, "cannot subscribe to events; the trust cache is fed by the registry meanwhile");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        failures = 0;
        tracing::info!(backend = events.backend(), "following signet events");
        // Whatever happened while not subscribed is in the bundle.
        resync.request("subscribed to events");
        let mut last_seen: Option<i64> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = rx.recv() => e,
            };
            let Some(event) = event else {
                break;
            };
            if let Some(r) = event.revision {
                let expected = last_seen.unwrap_or(0).max(trust.snapshot().revision());
                if expected > 0 && r > expected + 1 {
                    resync.request("revision gap");
                }
                last_seen = Some(last_seen.map_or(r, |l| l.max(r)));
            }
            // Applying an event continues the trace that caused it (a sign job's), so
            // one trace runs from a push to this cache update.
            let span = tracing::info_span!(
                "trust_cache.apply_event",
                kind = event.kind.name(),
                revision = event.revision,
            );
            if let Some(tp) = &event.traceparent {
                signet_runtime::telemetry::set_parent_from_traceparent(&span, tp);
            }
            handle(&trust, &resync, &event).instrument(span).await;
            if let Some(r) = event.revision {
                trust.note_event(r);
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        tracing::warn!("event subscription ended; subscribing again");
    }
}

async fn handle(trust: &Trust, resync: &Resync, event: &Event) {
    let lag = (Utc::now() - event.time).num_microseconds().unwrap_or(0) as f64 / 1e6;
    signet_runtime::metrics::metrics()
        .event_lag
        .observe(lag.max(0.0));
    match event.kind {
        EventKind::SignaturePublished => {
            let Ok(record) = serde_json::from_value::<SignatureRecord>(event.data.clone()) else {
                tracing::warn!(event = %event.id, "signature.published event without a signature record; ignoring it");
                return;
            };
            match trust.learn(&record).await {
                Ok(()) => {
                    tracing::debug!(digest = %record.digest, witness = %record.witness, "signature learned from an event");
                }
                Err(why) => {
                    // Most often a witness no policy of this cluster names.
                    tracing::debug!(digest = %record.digest, witness = %record.witness, %why, "signature event not used");
                    if trust.snapshot().names_witness(&record.witness) {
                        resync.request("signature by an unknown key of a policy witness");
                    }
                }
            }
        }
        EventKind::SignatureRevoked => {
            let Ok(record) = serde_json::from_value::<SignatureRecord>(event.data.clone()) else {
                resync.request("unreadable signature.revoked event");
                return;
            };
            // The store writes the revocation into the event; without it, only the bundle
            // says what was revoked.
            match (RevokedSignature::of(&record), event.revision) {
                (Some(revoked), Some(r)) => {
                    if trust.apply(r, |b| apply_signature_revoked(b, &revoked)) {
                        tracing::info!(digest = %record.digest, witness = %record.witness, revision = r, "signature revocation applied");
                    }
                }
                (None, _) => resync.request("signature.revoked event without its revocation"),
                (_, None) => resync.request("signature.revoked event without a revision"),
            }
            trust.forget(&record).await;
        }
        EventKind::WitnessCreated
        | EventKind::WitnessRotated
        | EventKind::WitnessKeyRevoked
        | EventKind::WitnessRevoked => {
            let Ok(witness) = serde_json::from_value::<Witness>(event.data.clone()) else {
                resync.request("unreadable witness event");
                return;
            };
            match event.revision {
                Some(r) => {
                    if trust.apply(r, |b| apply_witness(b, &witness)) {
                        tracing::info!(witness = %witness.name, kind = %event.kind, revision = r, "witness change applied");
                    }
                }
                None => resync.request("witness event without a revision"),
            }
        }
        EventKind::PolicyUpdated => {
            let Ok(update) = serde_json::from_value::<PolicyUpdate>(event.data.clone()) else {
                resync.request("unreadable policy event");
                return;
            };
            let Some(r) = event.revision else {
                resync.request("policy event without a revision");
                return;
            };
            let mut lacks_keys = false;
            let applied = trust.apply(r, |b| lacks_keys = apply_policy_update(b, &update));
            if applied {
                tracing::info!(policy = %update.policy.name, action = update.action.as_str(), revision = r, "policy change applied");
            }
            if lacks_keys {
                resync.request("a policy names a witness whose keys are not here yet");
            }
        }
        EventKind::SignatureFailed | EventKind::AdmissionBreakGlass => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheConfig;
    use crate::testing::{bundle, no_registry, policy, TestKey};
    use async_trait::async_trait;
    use futures::FutureExt;
    use signet_bus::BusError;
    use signet_core::{Digest, PolicyAction, PolicyMode};
    use tokio::sync::{mpsc, Mutex};

    /// An event bus whose one subscription the test feeds by hand.
    #[derive(Debug)]
    struct HandFed(Mutex<Option<mpsc::Receiver<Event>>>);

    #[async_trait]
    impl EventBus for HandFed {
        fn backend(&self) -> &'static str {
            "test"
        }
        async fn publish(&self, _: &Event) -> Result<(), BusError> {
            Ok(())
        }
        async fn subscribe(&self, _: CancellationToken) -> Result<mpsc::Receiver<Event>, BusError> {
            self.0.lock().await.take().ok_or(BusError::Closed)
        }
    }

    fn event(kind: EventKind, revision: i64, data: serde_json::Value) -> Event {
        let mut e = Event::new(kind, "x", data);
        e.revision = Some(revision);
        e
    }

    async fn next_request(resync: &Resync) {
        tokio::time::timeout(Duration::from_secs(10), resync.0.notified())
            .await
            .expect("a re-sync request");
    }

    async fn seen(trust: &Trust, revision: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while trust.seen_revision() < revision {
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {revision} not handled"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn events_apply_and_gaps_ask_for_a_resync() {
        let key = TestKey::new();
        let trust = Arc::new(Trust::new("c1", no_registry(), CacheConfig::default()));
        trust.install(bundle(
            5,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![key.trusted("w", "1")],
        ));
        let (tx, rx) = mpsc::channel(16);
        let bus = Arc::new(HandFed(Mutex::new(Some(rx))));
        let resync = Resync::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(event_loop(
            trust.clone(),
            bus,
            resync.clone(),
            shutdown.clone(),
        ));
        next_request(&resync).await; // subscribing asks for one

        // The next revision in sequence: a signature, learned; no re-sync.
        let digest = Digest::of(b"img");
        let record = key.record("w", "reg.local/team/app", &digest);
        tx.send(event(
            EventKind::SignaturePublished,
            6,
            serde_json::to_value(&record).expect("json"),
        ))
        .await
        .expect("send");
        seen(&trust, 6).await;
        assert_eq!(trust.entries_now().await, 1);
        assert!(
            resync.0.notified().now_or_never().is_none(),
            "no gap, no re-sync"
        );

        // A policy change, applied from the event itself.
        let mut off = policy("p", &["w"], "prod", PolicyMode::Enforce);
        off.enabled = false;
        tx.send(event(
            EventKind::PolicyUpdated,
            7,
            serde_json::to_value(PolicyUpdate {
                action: PolicyAction::Disabled,
                policy: off,
            })
            .expect("json"),
        ))
        .await
        .expect("send");
        seen(&trust, 7).await;
        assert!(!trust.snapshot().policies[0].policy.enabled);
        assert!(resync.0.notified().now_or_never().is_none());

        // Revisions 8 and 9 never arrive: a gap.
        tx.send(event(EventKind::SignatureFailed, 10, serde_json::json!({})))
            .await
            .expect("send");
        next_request(&resync).await;
        shutdown.cancel();
        task.await.expect("event loop ends");
    }
}
