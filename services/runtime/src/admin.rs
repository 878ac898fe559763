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
use crate::serve::{HttpLimits, Listener};

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

/// Serves the admin routes until `shutdown`, with the listener limits of `limits`.
pub async fn serve(
    listener: TcpListener,
    ready: ReadinessCheck,
    log: Option<LogHandle>,
    token: Option<SecretString>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "admin port listening (/metrics, /healthz, /readyz)");
    let listener = Listener {
        name: "admin",
        tcp: listener,
        tls: None,
        limits,
    };
    crate::serve::serve(listener, router(ready, log, token), shutdown).await
}

/// Binds `addr` (the setting named `setting`) and serves the admin routes on it until
/// `shutdown`; returns the bound address (for port 0) and the serving task.
pub async fn spawn(
    setting: &str,
    addr: &str,
    ready: ReadinessCheck,
    log: Option<LogHandle>,
    token: Option<SecretString>,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{setting}: cannot listen on {addr} for the admin port: {e}"),
        )
    })?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, ready, log, token, limits.clone(), shutdown));
    Ok((bound, task))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    async fn call(
        app: &Router,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("answer");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn failing() -> ReadinessCheck {
        Arc::new(|| Box::pin(async { Err("store: connection refused".to_owned()) }))
    }

    #[tokio::test]
    async fn metrics_health_and_readiness() {
        metrics().job("succeeded", "none");
        let app = router(always_ready(), None, None);
        let (s, text) = call(&app, Method::GET, "/metrics", None, "").await;
        assert_eq!(s, StatusCode::OK);
        assert!(text.contains("# TYPE signet_jobs counter"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            call(&app, Method::GET, "/healthz", None, "").await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, Method::GET, "/readyz", None, "").await.0,
            StatusCode::OK
        );

        let down = router(failing(), None, None);
        let (s, text) = call(&down, Method::GET, "/readyz", None, "").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(text, "not ready: store: connection refused\n");
        assert_eq!(
            call(&down, Method::GET, "/healthz", None, "").await.0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn log_level_needs_the_admin_token() {
        let (_subscriber, handle) =
            crate::logging::subscriber(crate::LogFormat::Text, "info", None, std::io::sink)
                .expect("subscriber");

        let disabled = router(always_ready(), Some(handle.clone()), None);
        let (s, text) = call(
            &disabled,
            Method::PUT,
            "/log-level",
            Some("anything"),
            "debug",
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(text.contains("admin_token_file"), "{text}");

        let app = router(
            always_ready(),
            Some(handle),
            Some(SecretString::from("t0ken".to_owned())),
        );
        let (s, _) = call(&app, Method::PUT, "/log-level", None, "debug").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = call(&app, Method::PUT, "/log-level", Some("t0ke"), "debug").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, text) = call(&app, Method::PUT, "/log-level", Some("t0ken"), "debug\n").await;
        assert_eq!(s, StatusCode::OK, "{text}");
        assert_eq!(text, "log level is now debug\n");
        let (s, text) = call(&app, Method::PUT, "/log-level", Some("t0ken"), "info,,=[x").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
        assert!(!text.contains("t0ken"));
    }
}
