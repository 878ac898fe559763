//! Prometheus metrics, one registry per process ([`metrics()`]), served as text on the
//! admin port's `/metrics`. Every service records into the same families; a family a
//! process never touches shows no series.
//!
//! Label values are bounded sets (outcomes, reasons, providers, operations, policy names,
//! modes), never image names or digests, so series do not grow without limit.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets from 250 µs to 30 s, for calls that span a local signature check to a
/// slow KMS or registry.
const LATENCY_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Finer buckets for admission reviews, whose target is a p99 of one millisecond: from
/// 100 µs, a few per millisecond up to 3 ms, then the latency buckets' tail.
const ADMISSION_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `succeeded`, `retried`, `failed`, `duplicate`.
    pub outcome: String,
    /// A short reason (`unknown_witness`, `kms_unavailable`, ...), or `none`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
    /// `ok`, `throttled`, `unavailable` (timeout, 5xx: retried), `error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// `resolve`, `manifest`, `publish`, `fetch_signatures`.
    pub operation: String,
    /// `ok`, `not_found`, `unavailable` (timeout, 5xx, connection: retried), `error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `allowed`, `denied`, `warned`, `would_deny` (dry-run), `break_glass`
    /// (signet-core's `AdmissionOutcome`; exempt images count as allowed).
    pub outcome: String,
    pub policy: String,
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `trust`, `tag`, `negative`.
    pub cache: String,
    /// `hit`, `miss`, `eviction`.
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub receiver: String,
    /// The counters of `GET /v1/webhooks/stats`, under the same names. Per request:
    /// `deliveries` (authenticated), `unauthenticated`, `replays`, `malformed`,
    /// `unavailable` (answered 503). Per event in a delivery: `events`, `ignored` (not a
    /// signable push), `unmatched` (no signing rule), `jobs` (sign jobs enqueued).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `bundle` (fetched from the gateway), `kept` (the copy on disk), `event`.
    pub source: String,
    /// `unsealed`, `malformed`, `unknown_key`, `bad_signature`, `unreadable`,
    /// `revision_out_of_range`.
    pub reason: String,
}

/// Every series signet exposes.
/// Why a listener closed a connection before it served a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `gateway`, `admin`, `verifier`.
    pub listener: String,
    /// `over_limit` (the connection cap), `tls_handshake_timeout`.
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    /// Sign jobs by outcome and reason.
    pub jobs: Family<JobLabels, Counter>,
    /// Seconds from enqueue to the signature being published and recorded.
    pub sign_latency: Histogram,
    pub kms_calls: Family<ProviderLabels, Counter>,
    pub kms_latency: Family<ProviderLabel, Histogram>,
    pub registry_calls: Family<OperationLabels, Counter>,
    pub registry_latency: Family<OperationLabel, Histogram>,
    pub admission_decisions: Family<AdmissionLabels, Counter>,
    pub admission_latency: Histogram,
    pub cache: Family<CacheLabels, Counter>,
    /// Jobs waiting on the queue, sampled.
    pub queue_depth: Gauge,
    /// Seconds the oldest waiting job has waited, sampled (where the backend can tell).
    pub queue_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Seconds from an event's publication to a verifier applying it.
    pub event_lag: Histogram,
    pub webhooks: Family<WebhookLabels, Counter>,
    /// Trust bundles and events a verifier refused: not sealed by a pinned control plane
    /// key, or out of range.
    pub trust_refusals: Family<RefusalLabels, Counter>,
    /// Trust bundles installed with a lower revision than the verifier's previous one:
    /// the control plane went back (a restored store), or local state had come from
    /// elsewhere. Alert on any.
    pub trust_rollbacks: Counter,
    pub connections_refused: Family<ConnectionLabels, Counter>,
    /// The running containers a verifier's inventory holds, by standing.
    pub running_containers: Family<StandingLabels, Gauge>,
}

/// A running container's standing: `trusted`, `exempt`, `untrusted`, `break_glass`,
/// `revoked`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StandingLabels {
    pub standing: String,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("signet");
        let m = Self {
            jobs: Family::default(),
            sign_latency: latency(),
            kms_calls: Family::default(),
            kms_latency: Family::new_with_constructor(latency),
            registry_calls: Family::default(),
            registry_latency: Family::new_with_constructor(latency),
            admission_decisions: Family::default(),
            admission_latency: Histogram::new(ADMISSION_BUCKETS),
            cache: Family::default(),
            queue_depth: Gauge::default(),
            queue_lag_seconds: Gauge::default(),
            event_lag: latency(),
            webhooks: Family::default(),
            trust_refusals: Family::default(),
            trust_rollbacks: Counter::default(),
            connections_refused: Family::default(),
            running_containers: Family::default(),
            registry: Registry::default(),
        };
        registry.register("jobs", "Sign jobs by outcome and reason", m.jobs.clone());
        registry.register(
            "http_connections_refused",
            "Connections a listener closed unserved, by listener and reason",
            m.connections_refused.clone(),
        );
        registry.register(
            "sign_latency_seconds",
            "Seconds from enqueue to a published and recorded signature",
            m.sign_latency.clone(),
        );
        registry.register(
            "kms_calls",
            "KMS calls by provider and outcome",
            m.kms_calls.clone(),
        );
        registry.register(
            "kms_call_duration_seconds",
            "KMS call latency by provider",
            m.kms_latency.clone(),
        );
        registry.register(
            "registry_requests",
            "Registry operations by operation and outcome",
            m.registry_calls.clone(),
        );
        registry.register(
            "registry_request_duration_seconds",
            "Registry operation latency",
            m.registry_latency.clone(),
        );
        registry.register(
            "admission_decisions",
            "Admission decisions by outcome, policy and mode",
            m.admission_decisions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an AdmissionReview",
            m.admission_latency.clone(),
        );
        registry.register(
            "cache_events",
            "Verifier cache hits, misses and evictions",
            m.cache.clone(),
        );
        registry.register(
            "queue_depth",
            "Sign jobs waiting on the queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "queue_lag_seconds",
            "Seconds the oldest waiting sign job has waited",
            m.queue_lag_seconds.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "Seconds from an event's publication to a verifier applying it",
            m.event_lag.clone(),
        );
        registry.register(
            "webhook_events",
            "Registry webhook deliveries and events by receiver and outcome (the counters of GET /v1/webhooks/stats)",
            m.webhooks.clone(),
        );
        registry.register(
            "running_containers",
            "Running containers a verifier watches, by standing",
            m.running_containers.clone(),
        );
        registry.register(
            "trust_refusals",
            "Trust bundles and events refused by a verifier, by source and reason",
            m.trust_refusals.clone(),
        );
        registry.register(
            "trust_bundle_rollbacks",
            "Trust bundles installed with a lower revision than the previous one",
            m.trust_rollbacks.clone(),
        );
        Self { registry, ..m }
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn job(&self, outcome: &str, reason: &str) {
        self.jobs
            .get_or_create(&JobLabels {
                outcome: outcome.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn kms_call(&self, provider: &str, outcome: &str, seconds: f64) {
        self.kms_calls
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.kms_latency
            .get_or_create(&ProviderLabel {
                provider: provider.to_owned(),
            })
            .observe(seconds);
    }

    pub fn registry_call(&self, operation: &str, outcome: &str, seconds: f64) {
        self.registry_calls
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.registry_latency
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .observe(seconds);
    }

    pub fn admission(&self, outcome: &str, policy: &str, mode: &str) {
        self.admission_decisions
            .get_or_create(&AdmissionLabels {
                outcome: outcome.to_owned(),
                policy: policy.to_owned(),
                mode: mode.to_owned(),
            })
            .inc();
    }

    pub fn cache_event(&self, cache: &str, event: &str) {
        self.cache
            .get_or_create(&CacheLabels {
                cache: cache.to_owned(),
                event: event.to_owned(),
            })
            .inc();
    }

    /// Adds `n` to a webhook receiver's `outcome` counter.
    pub fn webhook(&self, receiver: &str, outcome: &str, n: u64) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                receiver: receiver.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc_by(n);
    }

    /// One sample of the job queue: messages waiting, and how long the oldest has waited
    /// (left alone when the backend cannot tell).
    pub fn queue(&self, depth: u64, lag: Option<std::time::Duration>) {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        if let Some(lag) = lag {
            self.queue_lag_seconds.set(lag.as_secs_f64());
        }
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_recorded_series() {
        let m = metrics();
        m.job("succeeded", "none");
        m.kms_call("local", "ok", 0.001);
        m.admission("denied", "prod", "enforce");
        m.cache_event("trust", "hit");
        let text = m.encode();
        assert!(
            text.contains("signet_jobs_total{outcome=\"succeeded\",reason=\"none\"}"),
            "{text}"
        );
        assert!(
            text.contains(
                "signet_kms_call_duration_seconds_bucket{le=\"0.001\",provider=\"local\"}"
            ),
            "{text}"
        );
        assert!(text.contains("signet_admission_decisions_total{outcome=\"denied\",policy=\"prod\",mode=\"enforce\"}"), "{text}");
        assert!(text.contains("# TYPE signet_queue_depth gauge"), "{text}");
        m.queue(7, Some(std::time::Duration::from_millis(1500)));
        m.webhook("harbor", "jobs", 3);
        let text = m.encode();
        assert!(text.contains("signet_queue_depth 7\n"), "{text}");
        assert!(text.contains("signet_queue_lag_seconds 1.5\n"), "{text}");
        assert!(
            text.contains("signet_webhook_events_total{receiver=\"harbor\",outcome=\"jobs\"} 3"),
            "{text}"
        );
    }
}
