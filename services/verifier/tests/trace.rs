//! One trace from a push to the verifier's trust cache: the spans of every service go to
//! an in-memory OpenTelemetry exporter, and the test follows their parent links across
//! the bus (job message headers), the store's outbox and the event stream, on every
//! backend. Each hop that crosses a process boundary in production must be a *remote*
//! parent: the context travelled in a header, not in this process's memory.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use common::{poll, Backend, ControlPlane, Verifier, VerifierOptions};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use reqwest::Method;
use serde_json::json;
use signet_gateway::webhooks::auth::Guard;
use signet_gateway::webhooks::receivers::Receiver;
use signet_gateway::webhooks::{ReceiverKind, Receivers};
use signet_testkit::image::TestImage;
use signet_testkit::registry::{NotificationEndpoint, TestRegistry};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

/// The exporter every test of this binary shares; tests tell their spans apart by trace.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            // The level the services' own subscriber gives spans (logging.rs).
            let subscriber = tracing_subscriber::registry().with(
                signet_runtime::telemetry::layer(&provider, "signet-test")
                    .with_filter(LevelFilter::INFO),
            );
            tracing::subscriber::set_global_default(subscriber)
                .expect("the only subscriber of this test binary");
            (exporter, provider)
        })
        .0
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The finished spans of one trace.
struct Trace {
    spans: Vec<SpanData>,
}

impl Trace {
    fn of(trace: TraceId) -> Self {
        let spans = exporter()
            .get_finished_spans()
            .expect("finished spans")
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        Self { spans }
    }

    fn named(&self, name: &str) -> Vec<&SpanData> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    fn one(&self, name: &str) -> &SpanData {
        let found = self.named(name);
        assert_eq!(found.len(), 1, "{name} spans: {}", self.describe());
        found[0]
    }

    /// True when `ancestor` is `span`'s parent, or its parent's, and so on.
    fn descends(&self, span: &SpanData, ancestor: &SpanData) -> bool {
        let by_id: HashMap<SpanId, &SpanData> = self
            .spans
            .iter()
            .map(|s| (s.span_context.span_id(), s))
            .collect();
        let mut parent = span.parent_span_id;
        let target = ancestor.span_context.span_id();
        for _ in 0..64 {
            if parent == target {
                return true;
            }
            match by_id.get(&parent) {
                Some(p) => parent = p.parent_span_id,
                None => return false,
            }
        }
        false
    }

    fn assert_descends(&self, span: &SpanData, ancestor: &SpanData) {
        assert!(
            self.descends(span, ancestor),
            "{} is not under {} in {}",
            span.name,
            ancestor.name,
            self.describe()
        );
    }

    fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} parent={} remote={}",
                    s.span_context.span_id(),
                    s.name,
                    s.parent_span_id,
                    s.parent_span_is_remote
                )
            })
            .collect();
        lines.sort();
        format!("\n{}", lines.join("\n"))
    }

    /// The hops every signature takes once its job is on the bus: the job's span
    /// continues the enqueuer's trace from the message headers, signs with the KMS and
    /// publishes to the registry within it; the outbox relay publishes the event in the
    /// same trace, and the verifier's cache update continues it from the event.
    fn assert_sign_to_cache(&self, enqueued_by: &SpanData) {
        let job = self.one("sign_job");
        assert!(
            job.parent_span_is_remote,
            "the job's parent came from the message headers: {}",
            self.describe()
        );
        self.assert_descends(job, enqueued_by);
        let kms = self.one("kms.sign");
        self.assert_descends(kms, job);
        assert_eq!(attr(kms, "provider").as_deref(), Some("local"));
        let publish = self.one("registry.publish_signature");
        self.assert_descends(publish, job);
        let relayed = self.one("event.publish");
        assert!(
            relayed.parent_span_is_remote,
            "the relay's parent came from the outbox row: {}",
            self.describe()
        );
        self.assert_descends(relayed, job);
        assert_eq!(
            attr(relayed, "kind").as_deref(),
            Some("signature.published")
        );
        let applied = self
            .named("trust_cache.apply_event")
            .into_iter()
            .find(|s| attr(s, "kind").as_deref() == Some("signature.published"))
            .unwrap_or_else(|| panic!("no cache update in {}", self.describe()));
        assert!(
            applied.parent_span_is_remote,
            "the verifier's parent came from the event: {}",
            self.describe()
        );
        self.assert_descends(applied, relayed);
    }
}

/// Waits for the verifier's cache update of the trace that `find` picks out.
async fn trace_until_cache_update(mut find: impl FnMut() -> Option<TraceId>) -> Trace {
    poll("the verifier's cache update to end the trace", || {
        let found = find();
        async move {
            let trace = Trace::of(found?);
            // The relay's publish span ends when the broker has the event, which can be
            // after the verifier applied it: the trace is whole once both have ended.
            let applied = trace
                .named("trust_cache.apply_event")
                .iter()
                .any(|s| attr(s, "kind").as_deref() == Some("signature.published"));
            (applied && !trace.named("event.publish").is_empty()).then_some(trace)
        }
    })
    .await
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A registry push, through docker-registry's notification to the gateway's webhook
/// receiver, a signing rule, the bus, the signer, the KMS, the registry, the outbox
/// and the event stream, to the verifier's trust cache: one trace.
async fn a_push_is_one_trace_to_the_verifier_cache(backend: Backend) {
    let _ = exporter();
    // An open receiver built in code: settings would bind it to the registry's host,
    // which is not known before the gateway (its notification target) runs; built this
    // way it signs on the host the events name.
    let receivers =
        Receivers::default().with(Receiver::new(ReceiverKind::Distribution, Guard::Open));
    let cp = ControlPlane::start_with(backend, Arc::new(receivers)).await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let registry = TestRegistry::builder()
        .notify(
            NotificationEndpoint::new(format!("{}/v1/webhooks/distribution", cp.url))
                .timeout(std::time::Duration::from_secs(10))
                .threshold(3)
                .backoff(std::time::Duration::from_millis(200)),
        )
        .start()
        .await
        .unwrap_or_else(|e| panic!("docker-registry is needed for this test: {e:#}"));
    let host = registry.host();
    let repo = format!("trace/app-{}", unique());
    cp.ok(
        Method::POST,
        "/v1/signing-rules",
        Some(json!({
            "name": "traced", "repositories": [format!("{host}/{repo}")],
            "tag_pattern": "*", "witness": "release", "enabled": true,
        })),
    )
    .await;
    let verifier = Verifier::start(&cp, VerifierOptions::default()).await;

    TestImage::random()
        .push(&host, &repo, "v1")
        .await
        .expect("push a test image");

    let trace = trace_until_cache_update(|| {
        exporter()
            .get_finished_spans()
            .ok()?
            .into_iter()
            .find(|s| s.name == "sign_job" && attr(s, "image").is_some_and(|i| i.contains(&repo)))
            .map(|s| s.span_context.trace_id())
    })
    .await;
    // The trace starts where the push reached signet: the webhook request.
    let root = trace
        .named("http")
        .into_iter()
        .find(|s| attr(s, "path").as_deref() == Some("/v1/webhooks/distribution"))
        .unwrap_or_else(|| panic!("no webhook request span in {}", trace.describe()));
    assert_eq!(
        root.parent_span_id,
        SpanId::INVALID,
        "the webhook request starts the trace"
    );
    trace.assert_sign_to_cache(root);
    let trust = verifier
        .running
        .as_ref()
        .expect("running verifier")
        .trust()
        .clone();
    // The cache counts its entries lazily.
    trust.run_pending_tasks().await;
    assert!(
        trust.entries() >= 1,
        "the event put the signature in the cache"
    );
}

/// A pipeline that traces its own steps sends `traceparent`: signet's spans join the
/// pipeline's trace, from the sign request to the verifier's cache.
async fn a_traced_sign_request_continues_the_callers_trace(backend: Backend) {
    let _ = exporter();
    let cp = ControlPlane::start(backend).await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let _verifier = Verifier::start(&cp, VerifierOptions::default()).await;
    let registry = TestRegistry::start()
        .await
        .unwrap_or_else(|e| panic!("docker-registry is needed for this test: {e:#}"));
    let host = registry.host();
    let repo = format!("trace/api-{}", unique());
    let digest = TestImage::random()
        .push(&host, &repo, "v1")
        .await
        .expect("push a test image");

    let trace_id = TraceId::from_hex(&uuid::Uuid::new_v4().simple().to_string()).expect("hex");
    let caller = SpanId::from_hex("00f067aa0ba902b7").expect("hex");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sign?wait=60", cp.url))
        .bearer_auth(&cp.admin)
        .header("traceparent", format!("00-{trace_id}-{caller}-01"))
        .json(&json!({"image": format!("{host}/{repo}@{digest}"), "witness": "release"}))
        .send()
        .await
        .expect("sign request");
    assert_eq!(resp.status(), reqwest::StatusCode::OK);

    let trace = trace_until_cache_update(|| Some(trace_id)).await;
    let request = trace
        .named("http")
        .into_iter()
        .find(|s| attr(s, "path").as_deref() == Some("/v1/sign"))
        .unwrap_or_else(|| panic!("no sign request span in {}", trace.describe()));
    assert_eq!(
        request.parent_span_id, caller,
        "the request continues the caller's span"
    );
    assert!(request.parent_span_is_remote);
    trace.assert_sign_to_cache(request);
}

on_every_bus!(
    a_push_is_one_trace_to_the_verifier_cache,
    a_traced_sign_request_continues_the_callers_trace,
);
