//! Logs: JSON lines where a machine reads them (in a cluster, or whenever stderr is not
//! a terminal), readable text on a terminal. The level can be changed while running
//! through [`LogHandle::set_level`] (the admin endpoint uses it).

use std::io::IsTerminal;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text when it is.
    #[default]
    Auto,
    Json,
    Text,
}

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("log level {0:?} is invalid: use error, warn, info, debug, trace or a filter like \"info,signet_signer=debug\"")]
    BadLevel(String),
    #[error("logging is already initialised in this process")]
    AlreadyInitialised,
    #[error("{0}")]
    Telemetry(String),
}

/// Changes the log filter of a running process.
#[derive(Clone)]
pub struct LogHandle {
    reload: Arc<reload::Handle<EnvFilter, Registry>>,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogHandle")
    }
}

impl LogHandle {
    pub fn set_level(&self, filter: &str) -> Result<(), LoggingError> {
        let f = EnvFilter::try_new(filter).map_err(|_| LoggingError::BadLevel(filter.into()))?;
        self.reload
            .reload(f)
            .map_err(|_| LoggingError::AlreadyInitialised)
    }
}

/// Installs the global subscriber without trace export. Call once, at the top of a
/// binary's `main`.
pub fn init(format: LogFormat, level: &str) -> Result<LogHandle, LoggingError> {
    install(format, level, None)
}

/// Logging plus OpenTelemetry spans for `service`; keep the returned guard alive for the
/// life of the process (dropping it flushes pending spans).
pub fn init_with_tracing(
    format: LogFormat,
    level: &str,
    service: &str,
    telemetry: &crate::telemetry::TelemetrySettings,
) -> Result<(LogHandle, TracingGuard), LoggingError> {
    let provider = crate::telemetry::tracer_provider(service, telemetry)
        .map_err(|e| LoggingError::Telemetry(e.to_string()))?;
    let handle = install(format, level, Some((&provider, service)))?;
    Ok((handle, TracingGuard { provider }))
}

/// Flushes and shuts down span export when dropped.
pub struct TracingGuard {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl std::fmt::Debug for TracingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TracingGuard")
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

fn install(
    format: LogFormat,
    level: &str,
    otel: Option<(&opentelemetry_sdk::trace::SdkTracerProvider, &str)>,
) -> Result<LogHandle, LoggingError> {
    let (subscriber, handle) = subscriber(format, level, otel, std::io::stderr)?;
    subscriber
        .try_init()
        .map_err(|_| LoggingError::AlreadyInitialised)?;
    Ok(handle)
}

/// The subscriber [`init`] installs, writing to `writer`.
pub(crate) fn subscriber<W>(
    format: LogFormat,
    level: &str,
    otel: Option<(&opentelemetry_sdk::trace::SdkTracerProvider, &str)>,
    writer: W,
) -> Result<(impl tracing::Subscriber + Send + Sync, LogHandle), LoggingError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(level).map_err(|_| LoggingError::BadLevel(level.into()))?;
    let (filter, handle) = reload::Layer::new(filter);
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if json {
        // Every enclosing span with its fields, so a line logged deep inside a job (a
        // registry call) still names the job and the request it belongs to.
        Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_writer(writer),
        )
    } else {
        Box::new(tracing_subscriber::fmt::layer().with_writer(writer))
    };
    // The log level filters logs only. Spans keep their own, fixed filter: an operator
    // who turns logging down to `warn` must not cut every trace in two, since trace
    // context is read from the spans that carry it across the bus.
    let otel_layer = otel.map(|(provider, service)| {
        crate::telemetry::layer(provider, service).with_filter(LevelFilter::INFO)
    });
    let subscriber = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel_layer);
    Ok((
        subscriber,
        LogHandle {
            reload: Arc::new(handle),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().expect("lock").clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect()
        }
    }

    #[test]
    fn json_lines_carry_every_enclosing_span_and_the_level_changes_at_run_time() {
        let out = Captured::default();
        let (subscriber, handle) =
            subscriber(LogFormat::Json, "info", None, out.clone()).expect("subscriber");
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("http", request_id = "r-1");
            let _r = request.enter();
            let job = tracing::info_span!("sign_job", job_id = "j-1");
            let _j = job.enter();
            let call = tracing::info_span!("registry.publish_signature");
            let _c = call.enter();
            tracing::info!("published");
            tracing::debug!("not at info");
            handle.set_level("debug").expect("debug is a level");
            tracing::debug!("now at debug");
            assert!(matches!(
                handle.set_level("info,,=[x"),
                Err(LoggingError::BadLevel(_))
            ));
        });
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[0]["fields"]["message"], "published");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["span"]["name"], "registry.publish_signature");
        let spans = lines[0]["spans"].as_array().expect("span list");
        assert_eq!(spans[0]["request_id"], "r-1");
        assert_eq!(spans[1]["job_id"], "j-1");
        assert_eq!(lines[1]["fields"]["message"], "now at debug");
    }

    #[test]
    fn spans_reach_opentelemetry_below_the_log_level() {
        use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let out = Captured::default();
        let (subscriber, _handle) = subscriber(
            LogFormat::Json,
            "error",
            Some((&provider, "test")),
            out.clone(),
        )
        .expect("subscriber");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("sign_job");
            let _e = span.enter();
            tracing::info!("filtered from the logs");
        });
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().expect("spans");
        assert!(spans.iter().any(|s| s.name == "sign_job"), "{spans:?}");
        assert!(out.lines().is_empty());
    }
}
