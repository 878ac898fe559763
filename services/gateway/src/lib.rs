//! signet's gateway: the HTTP front door. Pipelines call the sign API, registries send
//! push webhooks, operators manage witnesses and tokens, and everything is audited.
//! Sign requests become jobs on the bus; the gateway answers only once a job is durably
//! enqueued.
//!
//! Layout:
//! - [`routes`]: one module per resource (witnesses, sign and jobs, signatures and audit,
//!   tokens, policies, trust bundles, health), and the OpenAPI document of them all.
//! - [`webhooks`]: registry webhook payloads, filtering, signing rules and receiver auth
//!   (no I/O); their routes are in `routes::webhooks` and `routes::rules`.
//! - [`auth`]: bearer API tokens and roles.
//! - [`session`]: console sessions (cookie, CSRF); [`console`]: the console's files;
//!   [`live`]: the events the console follows.
//! - [`scope`]: repository globs that bound where a token or a receiver may sign.
//! - [`error`]: the JSON error answer every handler uses.
//! - [`schemas`]: the documents in `schemas/` (event, sign request, trust bundle and
//!   webhook JSON Schemas, and the OpenAPI document), generated from the types.

pub mod auth;
pub mod console;
pub mod error;
pub mod live;
pub mod routes;
pub mod schemas;
pub mod scope;
pub mod session;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, Request};
use axum::Router;
use signet_bus::Bus;
use signet_kms::{ControlPlaneKey, Kms};
use signet_registry::RegistryClient;
use signet_runtime::serve::Listener;
use signet_runtime::settings::{GatewaySettings, HttpLimits};
use signet_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub bus: Bus,
    pub kms: Arc<Kms>,
    pub registry: RegistryClient,
    pub settings: Arc<GatewaySettings>,
    /// Wakes this process's outbox relay after a write that carries an event.
    pub outbox_kick: Arc<Notify>,
    /// The registry webhook receivers, with their secrets and counters.
    pub webhooks: Arc<webhooks::Receivers>,
    /// Seals trust bundles (the outbox relay seals events with the same key).
    pub control_key: Arc<ControlPlaneKey>,
    /// `POST /v1/sign?wait=` requests waiting now, per token (capped).
    pub waiters: Arc<routes::Waiters>,
    /// Events and admission decisions for `GET /v1/events/stream`.
    pub live: Arc<live::Live>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The gateway's routes with request ids, tracing and the body limit.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.body_limit_bytes;
    routes::router()
        .merge(console::router())
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let path = logged_path(req.uri().path());
                let span = tracing::info_span!("http", method = %req.method(), path = %path, request_id = %id);
                // A caller's `traceparent` (a pipeline step, a registry) starts the trace.
                signet_runtime::telemetry::set_parent_from_http(&span, req.headers());
                span
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// The path as logged: the ACR receiver's URL carries its secret, which must not be.
fn logged_path(path: &str) -> &str {
    match path.strip_prefix("/v1/webhooks/acr/") {
        Some(rest) if !rest.is_empty() => "/v1/webhooks/acr/<secret>",
        _ => path,
    }
}

/// HTTPS for the gateway when `gateway.tls_cert` and `gateway.tls_key` are set: the
/// certificate is re-read every `tls_reload_interval` until `shutdown` (cert-manager
/// renews it in place). `None` means plain HTTP.
pub fn tls_acceptor(
    settings: &GatewaySettings,
    shutdown: &CancellationToken,
) -> Result<Option<TlsAcceptor>, signet_runtime::tls::TlsError> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(None);
    };
    let files = signet_runtime::tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    let provider = signet_runtime::tls::provider();
    let cert = Arc::new(signet_runtime::tls::ReloadingCert::load(
        files,
        provider.clone(),
    )?);
    tokio::spawn(
        cert.clone()
            .watch(settings.tls_reload_interval, shutdown.clone()),
    );
    let config = signet_runtime::tls::server_config(cert, provider, None)?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Serves until `shutdown`, then lets in-flight requests finish, with the listener
/// limits of `limits` (timeouts, connection cap), over HTTPS when `tls` is given (see
/// [`tls_acceptor`]). A request may run for `max_wait` plus a margin when that is
/// longer than `request_timeout`, so `POST /v1/sign?wait=` is not cut short.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "gateway listening");
    let mut limits = limits;
    limits.request_timeout = limits
        .request_timeout
        .max(state.settings.max_wait + WAIT_MARGIN);
    // Open event streams end when shutdown begins, or they would hold it.
    let (live, stopping) = (state.live.clone(), shutdown.clone());
    tokio::spawn(async move {
        stopping.cancelled().await;
        live.close();
    });
    let listener = Listener {
        name: "gateway",
        tcp: listener,
        tls,
        limits,
    };
    signet_runtime::serve::serve(listener, router(state), shutdown).await
}

/// Past `max_wait`, the time a `?wait=` request still needs to answer.
const WAIT_MARGIN: Duration = Duration::from_secs(10);

/// Upper bound for `?wait=`; also what a client waits when it asks for more.
pub fn clamp_wait(settings: &GatewaySettings, asked: Duration) -> Duration {
    asked.min(settings.max_wait)
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_secrets_are_not_logged() {
        assert_eq!(
            super::logged_path("/v1/webhooks/acr/hunter2"),
            "/v1/webhooks/acr/<secret>"
        );
        assert_eq!(super::logged_path("/v1/webhooks/acr"), "/v1/webhooks/acr");
        assert_eq!(super::logged_path("/v1/jobs"), "/v1/jobs");
    }
}
