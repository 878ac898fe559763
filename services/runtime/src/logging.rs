//! Logs: JSON lines where a machine reads them (in a cluster, or whenever stderr is not
//! a terminal), readable text on a terminal. The level can be changed while running
//! through [`LogHandle::set_level`] (the admin endpoint uses it).

use std::io::IsTerminal;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

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
    let filter = EnvFilter::try_new(level).map_err(|_| LoggingError::BadLevel(level.into()))?;
    let (filter, handle) = reload::Layer::new(filter);
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let otel_layer = otel.map(|(provider, service)| crate::telemetry::layer(provider, service));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    result.map_err(|_| LoggingError::AlreadyInitialised)?;
    Ok(LogHandle {
        reload: Arc::new(handle),
    })
}
