//! Keeping the trust snapshot current. The one source of keys and policies is the trust
//! bundle, sealed by the control plane's key and checked against the pinned keys; it is
//! fetched at start, when the event stream (re)connects, when a revision gap shows that
//! events were missed, whenever an event says a witness or policy changed, and every
//! `resync_interval` besides. Events are believed only with a valid seal too, and even
//! then witness and policy events are invalidation hints: their bodies are never
//! applied. `signature.published` fills the cache after the signature verifies against
//! the bundle's keys; `signature.revoked` takes effect at once (it only narrows trust).
//! While the control plane is down the verifier keeps its last bundle (also kept on
//! disk, sealed, when a state dir is set) and its cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use signet_bus::{Event, EventBus, ReceivedEvent};
use signet_core::{EventKind, PinnedKeys, RevokedSignature, SignatureRecord, TrustBundle};
use signet_runtime::metrics::{metrics, RefusalLabels};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::control::{ControlPlane, SealedBundle};
use crate::trust::{backoff, Installed, Trust};

/// The longest wait between two failed attempts to reach the bus or the control plane.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The shortest time between two bundle fetches, however many events ask for one: a
/// flood of hints costs the gateway at most this rate per verifier.
const MIN_RESYNC_GAP: Duration = Duration::from_millis(250);
/// How far an event's revision may run ahead of the last bundle's. Events are sealed, so
/// only the control plane can send one; the bound keeps a replayed or broken revision
/// from moving the verifier's notion of "now" out of reach of the next bundle.
pub const MAX_EVENT_AHEAD: i64 = 1_000_000;

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

/// Counts and logs something the verifier would not believe. Every refusal is counted;
/// the log gets the first of each (source, reason) and then at most one line per
/// [`REFUSAL_LOG_EVERY`] with the number left out, so a flood of forged events on the bus
/// (whose publishers may be the attacker) does not become a flood of log lines.
pub fn refused(source: &'static str, reason: &'static str, detail: &dyn std::fmt::Display) {
    metrics()
        .trust_refusals
        .get_or_create(&RefusalLabels {
            source: source.to_owned(),
            reason: reason.to_owned(),
        })
        .inc();
    static THROTTLE: std::sync::OnceLock<std::sync::Mutex<LogThrottle>> =
        std::sync::OnceLock::new();
    let throttle =
        THROTTLE.get_or_init(|| std::sync::Mutex::new(LogThrottle::new(REFUSAL_LOG_EVERY)));
    let verdict = match throttle.lock() {
        Ok(mut t) => t.admit((source, reason), std::time::Instant::now()),
        Err(poisoned) => poisoned
            .into_inner()
            .admit((source, reason), std::time::Instant::now()),
    };
    if let Some(left_out) = verdict {
        tracing::warn!(source, reason, %detail, left_out, "refused: not sealed by a pinned control plane key, or out of range (left_out: like refusals not logged since the last line; signet_trust_refusals_total counts them all)");
    }
}

/// The least time between two log lines about one kind of refusal.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Which refusals get a log line: per key, the first, then one per `every`. Written
/// here because it is a dozen lines; the `tracing` ecosystem has no maintained
/// per-key log sampler.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    /// Per (source, reason): when the last line was written, and how many were left
    /// out since. Bounded by the few sources and reasons that exist (static names, so a
    /// refused event costs no allocation here).
    last: std::collections::HashMap<(&'static str, &'static str), (std::time::Instant, u64)>,
}

impl LogThrottle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: std::collections::HashMap::new(),
        }
    }

    /// `Some(left_out)` when a line is due now (with the count not logged since the
    /// last one), `None` when this one is only counted.
    pub fn admit(
        &mut self,
        key: (&'static str, &'static str),
        now: std::time::Instant,
    ) -> Option<u64> {
        match self.last.get_mut(&key) {
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
            Some((at, left_out)) if now.duration_since(*at) >= self.every => {
                let n = *left_out;
                *at = now;
                *left_out = 0;
                Some(n)
            }
            Some((_, left_out)) => {
                *left_out += 1;
                None
            }
        }
    }
}

/// The file the last bundle is kept in.
pub fn bundle_file(state_dir: &std::path::Path, cluster: &str) -> PathBuf {
    state_dir.join(format!("trust-bundle-{cluster}.json"))
}

/// The file the incremental bundles received since the kept one are kept in, in order,
/// each with its seal: together with the kept bundle they are the state, and each is
/// checked again when loaded.
fn deltas_file(path: &std::path::Path) -> PathBuf {
    path.with_extension("deltas.json")
}

/// After this many incremental bundles in a row the next fetch asks for the whole one,
/// which starts the chain kept on disk again.
pub const MAX_DELTAS: usize = 32;

/// Loads a kept bundle for `cluster` whose seal still verifies under `keys`, with the
/// incremental bundles kept after it applied in order (a chain that does not verify or
/// follow on is cut there). Returns how many were applied too.
pub fn load_kept(
    path: &std::path::Path,
    cluster: &str,
    keys: &PinnedKeys,
) -> Option<(TrustBundle, usize)> {
    let bytes = std::fs::read(path).ok()?;
    let sealed = match serde_json::from_slice::<SealedBundle>(&bytes) {
        Ok(s) => s,
        Err(e) => {
            refused("kept", "unreadable", &format!("{}: {e}", path.display()));
            return None;
        }
    };
    let mut bundle = match sealed.open(keys) {
        Ok(b) if b.cluster == cluster && b.since.is_none() => b,
        Ok(_) => return None,
        Err(e) => {
            refused("kept", e.reason(), &format!("{}: {e}", path.display()));
            return None;
        }
    };
    let mut applied = 0;
    for delta in read_deltas(path) {
        let next = delta
            .open(keys)
            .map_err(|e| e.to_string())
            .and_then(|d| bundle.apply(d, bundle.revision));
        match next {
            Ok(b) => {
                bundle = b;
                applied += 1;
            }
            Err(e) => {
                refused(
                    "kept",
                    "delta",
                    &format!("{}: {e}", deltas_file(path).display()),
                );
                break;
            }
        }
    }
    Some((bundle, applied))
}

fn read_deltas(path: &std::path::Path) -> Vec<SealedBundle> {
    std::fs::read(deltas_file(path))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_atomically(path: &std::path::Path, json: Vec<u8>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Keeps a whole bundle, and starts the chain of incremental ones again.
fn keep(path: &std::path::Path, bundle: &SealedBundle) -> std::io::Result<()> {
    write_atomically(
        path,
        serde_json::to_vec(bundle).map_err(std::io::Error::other)?,
    )?;
    match std::fs::remove_file(deltas_file(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Adds an incremental bundle to the kept chain.
fn keep_delta(path: &std::path::Path, delta: &SealedBundle) -> std::io::Result<()> {
    let mut chain = read_deltas(path);
    chain.push(delta.clone());
    write_atomically(
        &deltas_file(path),
        serde_json::to_vec(&chain).map_err(std::io::Error::other)?,
    )
}

/// Fetches and installs bundles until `shutdown`.
pub async fn resync_loop(
    trust: Arc<Trust>,
    control: ControlPlane,
    resync: Resync,
    interval: Duration,
    kept: Option<PathBuf>,
    chained: usize,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    // Incremental bundles installed since the last whole one.
    let mut chained = chained;
    loop {
        // Registered before fetching, so a request made during the fetch is not lost.
        let requested = resync.0.notified();
        tokio::pin!(requested);
        requested.as_mut().enable();
        // Only what changed since the bundle held (the revoked signatures are most of a
        // bundle, and they only grow); the whole one at first, and every MAX_DELTAS.
        let base = trust.bundle_revision();
        let since = (trust.is_loaded() && base >= 0 && chained < MAX_DELTAS).then_some(base);
        let fetched = control
            .bundle_since(since)
            .await
            .and_then(|(bundle, sealed)| {
                if bundle.since.is_none() {
                    return Ok((bundle, sealed, true));
                }
                trust
                    .snapshot()
                    .bundle
                    .apply(bundle, base)
                    .map(|whole| (whole, sealed, false))
                    .map_err(crate::ControlPlaneError::Decode)
            });
        let wait = match fetched {
            Ok((bundle, sealed, whole)) => {
                failures = 0;
                chained = if whole { 0 } else { chained + 1 };
                let revision = bundle.revision;
                let policies = bundle.policies.len();
                match trust.install(bundle) {
                    Installed::Current => {
                        tracing::debug!(revision, policies, "trust bundle installed")
                    }
                    Installed::Behind => {
                        // Events newer than the bundle were applied while it was on its
                        // way; the bundle wins, and the next one brings them back.
                        tracing::info!(
                            revision,
                            "trust bundle older than the events already applied; fetching again"
                        );
                        resync.request("bundle behind the events");
                    }
                    Installed::Rollback { previous } => {
                        metrics().trust_rollbacks.inc();
                        tracing::error!(revision, previous, "ALERT: the control plane's trust bundle went back in revision; installed it as authoritative (a restored store, or local state that came from elsewhere)");
                    }
                }
                if let Some(path) = kept.clone() {
                    let written = tokio::task::spawn_blocking(move || {
                        if whole {
                            keep(&path, &sealed)
                        } else {
                            keep_delta(&path, &sealed)
                        }
                    })
                    .await;
                    if let Ok(Err(e)) = written {
                        tracing::warn!(error = %e, "cannot keep the trust bundle on disk");
                    }
                }
                interval
            }
            Err(e) => {
                // The next fetch asks for the whole bundle.
                chained = MAX_DELTAS;
                if let crate::ControlPlaneError::Unsealed { reason, .. } = &e {
                    refused("bundle", reason.reason(), &e);
                }
                failures += 1;
                let delay = backoff(failures, MAX_BACKOFF);
                tracing::warn!(error = %e, retry_in = ?delay, revision = trust.snapshot().revision(), "cannot fetch the trust bundle; deciding from the last one");
                delay
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MIN_RESYNC_GAP) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = &mut requested => {}
            _ = tokio::time::sleep(wait.saturating_sub(MIN_RESYNC_GAP)) => {}
        }
    }
}

/// Follows the event stream until `shutdown`, believing only events sealed by `keys`.
pub async fn event_loop(
    trust: Arc<Trust>,
    events: Arc<dyn EventBus>,
    keys: PinnedKeys,
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
        let mut pending = PendingBundle::default();
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = rx.recv() => e,
            };
            let Some(received) = received else {
                break;
            };
            let Some(event) = open(&trust, &keys, &received) else {
                continue;
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
            let applied = handle(&trust, &resync, &mut pending, &event)
                .instrument(span)
                .await;
            // A hint is reflected only once the bundle it asked for is installed (that
            // bundle's revision then counts), so "seen" never runs ahead of the state.
            if let (true, Some(r)) = (applied, event.revision) {
                trust.note_event(r);
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
        tracing::warn!("event subscription ended; subscribing again");
    }
}

/// The event, if its seal verifies and its revision is within reach of the bundle's.
fn open(trust: &Trust, keys: &PinnedKeys, received: &ReceivedEvent) -> Option<Event> {
    let event = match received.open(keys) {
        Ok(e) => e,
        Err(e) => {
            refused("event", e.reason(), &e);
            return None;
        }
    };
    if let Some(r) = event.revision {
        let bundle = trust.bundle_revision();
        if r < 0 || r > bundle.max(0).saturating_add(MAX_EVENT_AHEAD) {
            refused(
                "event",
                "revision_out_of_range",
                &format!(
                    "event {} has revision {r}, the last trust bundle {bundle}",
                    event.id
                ),
            );
            return None;
        }
    }
    Some(event)
}

/// The bundle revision that reflects the latest witness or policy change seen on the bus;
/// the event loop's own state.
#[derive(Debug, Default)]
pub(crate) struct PendingBundle {
    awaited: Option<i64>,
}

/// The longest a signature event waits for a bundle that is being fetched.
const PENDING_BUNDLE_WAIT: Duration = Duration::from_secs(5);

impl PendingBundle {
    fn await_bundle(&mut self, revision: Option<i64>) {
        if let Some(r) = revision {
            self.awaited = Some(self.awaited.map_or(r, |a| a.max(r)));
        }
    }

    /// Waits (at most [`PENDING_BUNDLE_WAIT`]) for the awaited bundle; true when it was
    /// outstanding and is now installed.
    async fn wait(&mut self, trust: &Trust) -> bool {
        let Some(awaited) = self.awaited else {
            return false;
        };
        if trust.bundle_revision() >= awaited {
            self.awaited = None;
            return false;
        }
        let deadline = tokio::time::Instant::now() + PENDING_BUNDLE_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if trust.bundle_revision() >= awaited {
                self.awaited = None;
                return true;
            }
        }
        // Not coming soon (the gateway is unreachable): stop holding events up for it.
        // The resync keeps trying; until then a miss is looked up in the registry.
        self.awaited = None;
        false
    }
}

/// Handles one sealed event; false when it was only a hint to fetch the bundle.
async fn handle(
    trust: &Trust,
    resync: &Resync,
    pending: &mut PendingBundle,
    event: &Event,
) -> bool {
    let lag = (Utc::now() - event.time).num_microseconds().unwrap_or(0) as f64 / 1e6;
    metrics().event_lag.observe(lag.max(0.0));
    match event.kind {
        EventKind::SignaturePublished => {
            let Ok(record) = serde_json::from_value::<SignatureRecord>(event.data.clone()) else {
                tracing::warn!(event = %event.id, "signature.published event without a signature record; ignoring it");
                return true;
            };
            let mut learned = trust.learn(&record).await;
            // A witness or policy change that this verifier is still fetching the bundle
            // for may be what makes the key known (a policy enabled, then an image signed
            // at once): wait for that bundle, briefly, and try once more rather than
            // leave the first admission to a registry fetch.
            if learned.is_err() && pending.wait(trust).await {
                learned = trust.learn(&record).await;
            }
            match learned {
                Ok(()) => {
                    tracing::debug!(digest = %record.digest, witness = %record.witness, "signature learned from an event");
                    if let Some(tp) = &event.traceparent {
                        trust.note_trace(&record.digest, tp).await;
                    }
                }
                Err(why) => {
                    // Most often a witness no policy of this cluster names.
                    tracing::debug!(digest = %record.digest, witness = %record.witness, %why, "signature event not used");
                    if trust.snapshot().names_witness(&record.witness) {
                        resync.request("signature by an unknown key of a policy witness");
                    }
                }
            }
            true
        }
        EventKind::SignatureRevoked => {
            let Ok(record) = serde_json::from_value::<SignatureRecord>(event.data.clone()) else {
                resync.request("unreadable signature.revoked event");
                return false;
            };
            // The store writes the revocation into the event; without it, only the bundle
            // says what was revoked. Either way the bundle is fetched to confirm it.
            trust.forget(&record).await;
            match (RevokedSignature::of(&record), event.revision) {
                (Some(revoked), Some(r)) => {
                    if trust.revoke(r, &revoked) {
                        tracing::info!(digest = %record.digest, witness = %record.witness, revision = r, "signature revocation applied");
                    }
                    true
                }
                (None, _) => {
                    resync.request("signature.revoked event without its revocation");
                    false
                }
                (_, None) => {
                    resync.request("signature.revoked event without a revision");
                    false
                }
            }
        }
        // Keys and policies come from the bundle only: the event says that something
        // changed, the bundle says what.
        EventKind::WitnessCreated
        | EventKind::WitnessRotated
        | EventKind::WitnessKeyRevoked
        | EventKind::WitnessRevoked => {
            tracing::info!(witness = %event.subject, kind = %event.kind, revision = event.revision, "witness changed; fetching the trust bundle");
            pending.await_bundle(event.revision);
            resync.request("witness event");
            false
        }
        EventKind::PolicyUpdated => {
            tracing::info!(policy = %event.subject, revision = event.revision, "policy changed; fetching the trust bundle");
            pending.await_bundle(event.revision);
            resync.request("policy event");
            false
        }
        EventKind::AttestationPublished => {
            match serde_json::from_value::<signet_core::AttestationRecord>(event.data.clone()) {
                Ok(record) => match trust.learn_attestation(&record).await {
                    Ok(()) => {
                        tracing::debug!(digest = %record.digest, witness = %record.witness, predicate_type = %record.predicate_type, "attestation learned from an event")
                    }
                    // A witness no policy of this cluster names, most often; a review
                    // that needs it reads the registry.
                    Err(why) => {
                        tracing::debug!(digest = %record.digest, witness = %record.witness, %why, "attestation event not used")
                    }
                },
                Err(_) => {
                    tracing::warn!(event = %event.id, "attestation.published event without an attestation record; ignoring it")
                }
            }
            true
        }
        EventKind::SignatureFailed
        | EventKind::AdmissionBreakGlass
        | EventKind::WorkloadUntrusted => true,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_flood_of_refusals_is_counted_but_logged_once_per_window() {
        let mut t = LogThrottle::new(Duration::from_secs(10));
        let start = std::time::Instant::now();
        assert_eq!(t.admit(("event", "unsealed"), start), Some(0));
        for i in 1..=10_000u64 {
            assert_eq!(
                t.admit(("event", "unsealed"), start + Duration::from_micros(i)),
                None
            );
        }
        // Another reason is logged at once.
        assert_eq!(t.admit(("event", "unknown_key"), start), Some(0));
        // The next window logs one line with the count of what was left out.
        assert_eq!(
            t.admit(("event", "unsealed"), start + Duration::from_secs(10)),
            Some(10_000)
        );
        assert_eq!(
            t.admit(("event", "unsealed"), start + Duration::from_secs(11)),
            None
        );
    }

    use super::*;
    use crate::config::CacheConfig;
    use crate::testing::{bundle, no_registry, policy, TestKey};
    use async_trait::async_trait;
    use futures::FutureExt;
    use signet_bus::{BusError, OutgoingEvent};
    use signet_core::{Digest, PolicyMode, WitnessState};
    use tokio::sync::{mpsc, Mutex};

    /// An event bus whose one subscription the test feeds by hand.
    #[derive(Debug)]
    struct HandFed(Mutex<Option<mpsc::Receiver<ReceivedEvent>>>);

    #[async_trait]
    impl EventBus for HandFed {
        fn backend(&self) -> &'static str {
            "test"
        }
        async fn publish(&self, _: &OutgoingEvent) -> Result<(), BusError> {
            Ok(())
        }
        async fn subscribe(
            &self,
            _: CancellationToken,
        ) -> Result<mpsc::Receiver<ReceivedEvent>, BusError> {
            self.0.lock().await.take().ok_or(BusError::Closed)
        }
    }

    /// An event as the control plane's relay sends it: encoded and sealed by `by`.
    fn sealed(
        by: &TestKey,
        kind: EventKind,
        revision: i64,
        data: serde_json::Value,
    ) -> ReceivedEvent {
        let mut e = Event::new(kind, "x", data);
        e.revision = Some(revision);
        let out = OutgoingEvent::encode(&e).expect("encode");
        let seal = by.seal(&out.bytes);
        ReceivedEvent::from(&out.sealed(&seal))
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

    struct Harness {
        control: TestKey,
        witness: TestKey,
        trust: Arc<Trust>,
        tx: mpsc::Sender<ReceivedEvent>,
        resync: Resync,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn harness() -> Harness {
        let control = TestKey::new();
        let witness = TestKey::new();
        let trust = Arc::new(Trust::new("c1", no_registry(), CacheConfig::default()));
        trust.install(bundle(
            5,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![witness.trusted("w", "1")],
        ));
        let (tx, rx) = mpsc::channel(16);
        let bus = Arc::new(HandFed(Mutex::new(Some(rx))));
        let resync = Resync::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(event_loop(
            trust.clone(),
            bus,
            PinnedKeys::new([control.public.clone()]),
            resync.clone(),
            shutdown.clone(),
        ));
        next_request(&resync).await; // subscribing asks for one
        Harness {
            control,
            witness,
            trust,
            tx,
            resync,
            shutdown,
            task,
        }
    }

    impl Harness {
        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.expect("event loop ends");
        }
    }

    /// A policy is enabled for a new witness and an image is signed at once: the
    /// signature event arrives before the bundle that makes the witness's key known.
    /// It waits for that bundle instead of being dropped (which left the first admission
    /// of the image to a registry fetch).
    #[tokio::test]
    async fn a_signature_waits_for_the_bundle_a_policy_change_is_fetching() {
        let h = harness().await;
        let newcomer = TestKey::new();
        h.tx.send(sealed(
            &h.control,
            EventKind::PolicyUpdated,
            6,
            serde_json::json!({}),
        ))
        .await
        .expect("send");
        next_request(&h.resync).await;
        let digest = Digest::of(b"signed right after the policy");
        let record = newcomer.record("w2", "reg.local/team/new", &digest);
        h.tx.send(sealed(
            &h.control,
            EventKind::SignaturePublished,
            7,
            serde_json::to_value(&record).expect("json"),
        ))
        .await
        .expect("send");
        // The bundle the policy event asked for arrives a moment later.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            h.trust.entries_now().await,
            0,
            "not learned before its key is known"
        );
        h.trust.install(bundle(
            6,
            vec![
                policy("p", &["w"], "prod", PolicyMode::Enforce),
                policy("p2", &["w2"], "prod", PolicyMode::Enforce),
            ],
            vec![h.witness.trusted("w", "1"), newcomer.trusted("w2", "1")],
        ));
        seen(&h.trust, 7).await;
        assert_eq!(
            h.trust.entries_now().await,
            1,
            "learned once the bundle came"
        );

        h.stop().await;
    }

    /// Waiting happens only while a bundle is awaited, and gives up (for good) when it
    /// does not come: an unreachable gateway does not slow every later event down.
    #[tokio::test(start_paused = true)]
    async fn the_wait_for_a_pending_bundle_is_bounded_and_given_up() {
        let trust = Trust::new("c1", no_registry(), CacheConfig::default());
        trust.install(bundle(5, vec![], vec![]));
        let mut pending = PendingBundle::default();
        assert!(!pending.wait(&trust).await, "nothing awaited");
        pending.await_bundle(Some(4));
        assert!(!pending.wait(&trust).await, "already installed");
        assert_eq!(pending.awaited, None);
        pending.await_bundle(Some(9));
        let started = tokio::time::Instant::now();
        assert!(!pending.wait(&trust).await, "never installed");
        assert_eq!(started.elapsed(), PENDING_BUNDLE_WAIT);
        assert_eq!(pending.awaited, None, "given up");
        assert!(!pending.wait(&trust).await);
        assert_eq!(started.elapsed(), PENDING_BUNDLE_WAIT, "no second wait");
    }

    #[tokio::test]
    async fn sealed_events_apply_and_gaps_ask_for_a_resync() {
        let h = harness().await;
        // The next revision in sequence: a signature, learned; no re-sync.
        let digest = Digest::of(b"img");
        let record = h.witness.record("w", "reg.local/team/app", &digest);
        let data = serde_json::to_value(&record).expect("json");
        h.tx.send(sealed(&h.control, EventKind::SignaturePublished, 6, data))
            .await
            .expect("send");
        seen(&h.trust, 6).await;
        assert_eq!(h.trust.entries_now().await, 1);
        assert!(
            h.resync.0.notified().now_or_never().is_none(),
            "no gap, no re-sync"
        );

        // Revisions 7 and 8 never arrive: a gap.
        h.tx.send(sealed(
            &h.control,
            EventKind::SignatureFailed,
            9,
            serde_json::json!({}),
        ))
        .await
        .expect("send");
        next_request(&h.resync).await;

        // Revision 7 turns up late: a revocation. It counts at once (review L8: it used to
        // wait for the next bundle).
        let mut revoked = record.clone();
        revoked.revoked = Some(signet_core::Revocation {
            at: Utc::now(),
            by: "admin".into(),
            reason: "leaked".into(),
        });
        let data = serde_json::to_value(&revoked).expect("json");
        h.tx.send(sealed(&h.control, EventKind::SignatureRevoked, 7, data))
            .await
            .expect("send");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while h.trust.snapshot().bundle.revoked_signatures.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "late revocation not applied"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(h.trust.entries_now().await, 0, "its verdict is gone");
        h.stop().await;
    }

    /// The attack of the 2026-12 review (C1): a bus publisher with no signet credential
    /// puts their own key into witness `w` and freezes the verifier with a huge revision.
    #[tokio::test]
    async fn a_bus_publisher_cannot_install_keys_or_freeze_the_verifier() {
        let h = harness().await;
        let attacker = TestKey::new();
        let evil = Digest::of(b"cryptominer");
        let forged_witness =
            serde_json::to_value(attacker.witness("w", WitnessState::Active)).expect("json");
        let forged_signature =
            serde_json::to_value(attacker.record("w", "attacker.example/miner", &evil))
                .expect("json");
        let huge = 1_000_000_000_000_000;
        // Unsealed, sealed by the attacker's own key, and sealed by the attacker's key
        // while naming the pinned one.
        let mut lying = sealed(
            &attacker,
            EventKind::WitnessRotated,
            huge,
            forged_witness.clone(),
        );
        if let Some(seal) = &lying.seal {
            let mut parsed = signet_core::Seal::parse(seal).expect("seal");
            parsed.key = h.control.public.fingerprint();
            lying.seal = Some(parsed.to_header());
        }
        let unsealed = ReceivedEvent {
            seal: None,
            ..sealed(
                &attacker,
                EventKind::WitnessRotated,
                huge,
                forged_witness.clone(),
            )
        };
        for forged in [
            unsealed,
            sealed(
                &attacker,
                EventKind::WitnessRotated,
                huge,
                forged_witness.clone(),
            ),
            lying,
            sealed(
                &attacker,
                EventKind::SignaturePublished,
                huge + 1,
                forged_signature.clone(),
            ),
        ] {
            h.tx.send(forged).await.expect("send");
        }
        // A genuine event after them is handled: the loop is not stuck.
        h.tx.send(sealed(
            &h.control,
            EventKind::SignatureFailed,
            6,
            serde_json::json!({}),
        ))
        .await
        .expect("send");
        seen(&h.trust, 6).await;
        assert_eq!(h.trust.seen_revision(), 6, "no forged revision was taken");
        let snapshot = h.trust.snapshot();
        assert!(
            snapshot
                .keys
                .keys()
                .all(|k| *k != crate::trust::key_id(&attacker.public.fingerprint()).expect("id")),
            "the attacker's key is not trusted"
        );
        assert_eq!(
            h.trust.entries_now().await,
            0,
            "the forged signature is not cached"
        );

        // Even sealed by the control plane, a witness event is only a hint: its body is
        // not applied, and a far-off revision is refused.
        h.tx.send(sealed(
            &h.control,
            EventKind::WitnessRotated,
            7,
            forged_witness.clone(),
        ))
        .await
        .expect("send");
        next_request(&h.resync).await;
        assert_eq!(
            h.trust.seen_revision(),
            6,
            "a hint counts once its bundle is in"
        );
        assert_eq!(h.trust.snapshot().keys.len(), 1);
        assert!(h
            .trust
            .snapshot()
            .keys
            .values()
            .all(|k| k.public_key == h.witness.public));
        h.tx.send(sealed(
            &h.control,
            EventKind::SignatureFailed,
            5 + MAX_EVENT_AHEAD + 1,
            serde_json::json!({}),
        ))
        .await
        .expect("send");
        h.tx.send(sealed(
            &h.control,
            EventKind::SignatureFailed,
            8,
            serde_json::json!({}),
        ))
        .await
        .expect("send");
        seen(&h.trust, 8).await;
        assert_eq!(h.trust.seen_revision(), 8);
        h.stop().await;
    }
}
