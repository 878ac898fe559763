//! The admin port every service opens: `/metrics` (Prometheus text), `/healthz`
//! (alive), `/readyz` (the service's dependencies answer) and `PUT /log-level` (change
//! the log filter while running). The port is for the cluster's scrapers and probes;
//! changing the log level needs the admin token when one is configured, and is refused
//! otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::logging::LogHandle;
use crate::metrics::metrics;

/// Answers whether the service can do its work now; `Err` says what is missing.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct AdminState {
    ready: ReadinessCheck,
    log: Option<LogHandle>,
    token: Option<Arc<SecretString>>,
}

/// The admin routes.
pub fn router(
    ready: ReadinessCheck,
    log: Option<LogHandle>,
    token: Option<SecretString>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/log-level", put(set_log_level))
        .with_state(AdminState {
            ready,
            log,
            token: token.map(Arc::new),
        })
}

/// Serves the admin routes until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ready: ReadinessCheck,
    log: Option<LogHandle>,
    token: Option<SecretString>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "admin port listening (/metrics, /healthz, /readyz)");
    axum::serve(listener, router(ready, log, token))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics_text() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics().encode(),
    )
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, String) {
    match (s.ready)().await {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn set_log_level(
    State(s): State<AdminState>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let Some(expected) = &s.token else {
        return (
            StatusCode::FORBIDDEN,
            "changing the log level is disabled: set admin_token_file to enable it\n".into(),
        );
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let ok: bool = presented
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <admin token>\n".into(),
        );
    }
    let Some(log) = &s.log else {
        return (
            StatusCode::CONFLICT,
            "this process has no adjustable logger\n".into(),
        );
    };
    let filter = body.trim();
    match log.set_level(filter) {
        Ok(()) => {
            tracing::warn!(filter, "log level changed");
            (StatusCode::OK, format!("log level is now {filter}\n"))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// A readiness check that always passes (for processes with nothing to check).
pub fn always_ready() -> ReadinessCheck {
    Arc::new(|| Box::pin(async { Ok(()) }))
}
