//! Tracing across processes: OpenTelemetry spans exported over OTLP when an endpoint is
//! configured, and W3C trace context (`traceparent`, `tracestate`) carried in HTTP,
//! AMQP and NATS headers and in events, so one trace follows an image from its push to
//! the verifier's cache update.

use std::collections::{BTreeMap, HashMap};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Where spans go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`. Unset: no
    /// export (trace context still travels, so logs carry trace ids).
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled (0.0 to 1.0); a parent's decision is followed.
    pub sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

impl TelemetrySettings {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push("telemetry.sample_ratio: must be between 0.0 and 1.0".into());
        }
        if let Some(e) = &self.otlp_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                problems.push(format!(
                    "telemetry.otlp_endpoint: {e:?} must be an http(s) URL such as http://collector:4318/v1/traces"
                ));
            }
        }
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
pub struct TelemetryError {
    pub endpoint: String,
    pub reason: String,
}

/// Builds the tracer provider for `service`: batch export over OTLP/HTTP when an
/// endpoint is set, none otherwise (spans still get ids, so context propagates).
pub fn tracer_provider(
    service: &str,
    settings: &TelemetrySettings,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler);
    if let Some(endpoint) = &settings.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub fn layer<S>(
    provider: &SdkTracerProvider,
    service: &str,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()))
}

/// Headers (HTTP, AMQP, NATS, event extensions) as a text map.
struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HttpExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the trace context of `span` (`traceparent`, `tracestate`) into `headers`.
pub fn inject(span: &tracing::Span, headers: &mut BTreeMap<String, String>) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut MapInjector(headers));
}

/// The `traceparent` of `span`, for an event or a record.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = BTreeMap::new();
    inject(span, &mut headers);
    headers.remove("traceparent")
}

/// Makes `span` a child of the trace context found in `headers`, if any.
pub fn set_parent(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    let cx = TraceContextPropagator::new().extract(&MapExtractor(headers));
    if has_remote_span(&cx) {
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` a child of the trace context in HTTP request headers, if any.
pub fn set_parent_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = TraceContextPropagator::new().extract(&HttpExtractor(headers));
    if has_remote_span(&cx) {
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` a child of a bare `traceparent` value (from an event).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_owned(), traceparent.to_owned());
    set_parent(span, &headers);
}

/// Links `span` to the span a `traceparent` names (another trace: a later step that
/// relies on earlier work, such as an admission review on a signature). No-op for an
/// invalid value or when spans are not exported.
pub fn link_traceparent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt;
    let mut headers = BTreeMap::new();
    headers.insert("traceparent".to_owned(), traceparent.to_owned());
    let cx = TraceContextPropagator::new().extract(&MapExtractor(&headers));
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

fn has_remote_span(cx: &opentelemetry::Context) -> bool {
    use opentelemetry::trace::TraceContextExt;
    cx.span().span_context().is_valid()
}

/// Converts lowercase header maps from other libraries.
pub fn from_hash_map(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn context_round_trips_through_headers() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(layer(&provider, "test"));
        tracing::subscriber::with_default(subscriber, || {
            let parent = tracing::info_span!("publish");
            let mut headers = BTreeMap::new();
            inject(&parent, &mut headers);
            let tp = headers
                .get("traceparent")
                .cloned()
                .expect("traceparent injected");
            assert!(tp.starts_with("00-") && tp.len() == 55, "{tp}");

            let child = tracing::info_span!("consume");
            set_parent(&child, &headers);
            let parent_trace = parent.context().span().span_context().trace_id();
            let child_trace = child.context().span().span_context().trace_id();
            assert_eq!(parent_trace, child_trace);
            drop(child);
            drop(parent);
        });
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().expect("spans");
        let publish = spans
            .iter()
            .find(|s| s.name == "publish")
            .expect("publish span");
        let consume = spans
            .iter()
            .find(|s| s.name == "consume")
            .expect("consume span");
        assert_eq!(consume.parent_span_id, publish.span_context.span_id());
    }

    /// The exporter as the binaries build it, inside a Tokio runtime as they run it,
    /// exporting to an HTTP receiver on loopback. With the async reqwest client the
    /// batch processor's thread panicked on the first export ("there is no reactor
    /// running") and no span ever left the process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_are_exported_over_otlp_http() {
        use axum::body::Bytes;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Bytes)>();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: http::HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let ct = headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send((ct, body));
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = TelemetrySettings {
            otlp_endpoint: Some(format!("http://{addr}/v1/traces")),
            ..TelemetrySettings::default()
        };
        let provider = tracer_provider("signet-test", &settings).expect("provider");
        let subscriber = tracing_subscriber::registry().with(layer(&provider, "signet-test"));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("exported-span");
            drop(span);
        });
        let flushed = tokio::task::spawn_blocking(move || {
            let r = provider.force_flush();
            let _ = provider.shutdown();
            r
        })
        .await
        .expect("flush thread");
        assert!(flushed.is_ok(), "{flushed:?}");
        let (content_type, body) =
            tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("an export within 10 s")
                .expect("an export");
        assert_eq!(content_type, "application/x-protobuf");
        // The span name is a protobuf string field, so its bytes are in the body as is.
        assert!(
            body.windows(b"exported-span".len())
                .any(|w| w == b"exported-span"),
            "{body:?}"
        );
    }

    #[test]
    fn no_context_leaves_a_root_span() {
        let headers = BTreeMap::new();
        let span = tracing::info_span!("root");
        set_parent(&span, &headers);
        assert_eq!(traceparent(&tracing::Span::none()), None);
    }
}
