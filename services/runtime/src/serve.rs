//! The one HTTP serving loop of every signet listener: the gateway's API and webhooks,
//! each admin port and the verifier's HTTPS port. Slow or idle clients cannot hold a
//! listener: headers must arrive within `header_read_timeout` (hyper, with a timer),
//! each piece of a body within `body_read_timeout` and a whole request within
//! `request_timeout` (tower-http), a TLS handshake within `tls_handshake_timeout`, and
//! at most `max_connections` connections are open at once.
//!
//! Why an accept loop of our own: `axum::serve` and axum-server take no timer (so hyper's
//! header timeout never fires), cap no connections and bound no TLS handshake. The loop
//! is hyper-util's documented one (auto HTTP/1 + HTTP/2 builder, graceful shutdown
//! watcher) plus a semaphore; a connection over the cap is closed at once rather than
//! left in the backlog, so a flood is answered quickly and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody, TimeoutLayer};

use crate::metrics::{metrics, ConnectionLabels};
pub use crate::settings::HttpLimits;

/// Who is at the other end of a connection, in every request's extensions (beside axum's
/// `ConnectInfo<SocketAddr>`): the peer address and, on a TLS listener whose config asks
/// for client certificates, the chain the handshake verified (empty otherwise).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    pub certificates: Arc<Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>>,
}

/// A listener to serve: where, what, and with which limits.
pub struct Listener {
    /// For logs and `signet_http_connections_refused_total{listener}`.
    pub name: &'static str,
    pub tcp: TcpListener,
    /// HTTPS when set.
    pub tls: Option<TlsAcceptor>,
    pub limits: HttpLimits,
}

fn refused(listener: &str, reason: &str) {
    metrics()
        .connections_refused
        .get_or_create(&ConnectionLabels {
            listener: listener.to_owned(),
            reason: reason.to_owned(),
        })
        .inc();
}

/// Serves `app` on `listener` until `shutdown`, then stops accepting and lets open
/// connections finish their requests (for at most `request_timeout`).
pub async fn serve(
    listener: Listener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Listener {
        name,
        tcp,
        tls,
        limits,
    } = listener;
    let service = ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .map_request(|req: Request<TimeoutBody<Incoming>>| req.map(Body::new))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .service(app);
    let service = TowerToHyperService::new(service);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: say so, and do not spin.
                tracing::warn!(listener = name, error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(listener = name, %peer, max = limits.max_connections, "connection over the cap closed");
            refused(name, "over_limit");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (builder, service, watcher) = (builder.clone(), service.clone(), graceful.watcher());
        let tls = tls.clone();
        let (handshake, first_request) = (limits.tls_handshake_timeout, limits.header_read_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            // hyper's header timeout starts only once a client has sent something (the
            // auto builder waits for the first bytes to pick HTTP/1 or HTTP/2 without a
            // timer): a connection that never completes a first request within the
            // header timeout is closed here.
            let asked = Arc::new(AtomicBool::new(false));
            let marked =
                |certificates: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>| {
                    let asked = asked.clone();
                    let service = service.clone();
                    let info = Peer {
                        addr: peer,
                        certificates: Arc::new(certificates),
                    };
                    service_fn(move |mut req: Request<Incoming>| {
                        asked.store(true, Ordering::Release);
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(info.addr));
                        req.extensions_mut().insert(info.clone());
                        service.call(req)
                    })
                };
            let idle = async {
                tokio::time::sleep(first_request).await;
                if asked.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
            };
            macro_rules! serve_conn {
                ($io:expr, $certs:expr) => {{
                    let conn = builder.serve_connection($io, marked($certs)).into_owned();
                    tokio::select! {
                        served = watcher.watch(conn) => served,
                        () = idle => {
                            refused(name, "no_request");
                            return;
                        }
                    }
                }};
            }
            let served = match tls {
                None => serve_conn!(TokioIo::new(stream), Vec::new()),
                Some(acceptor) => {
                    let Some(stream) = handshake_within(handshake, &acceptor, stream, name).await
                    else {
                        return;
                    };
                    let certificates = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                        .unwrap_or_default();
                    serve_conn!(TokioIo::new(stream), certificates)
                }
            };
            if let Err(e) = served {
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(tcp);
    if tokio::time::timeout(limits.request_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after the drain period; closing them"
        );
    }
    Ok(())
}

async fn handshake_within(
    limit: Duration,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    name: &'static str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(listener = name, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(listener = name, "TLS handshake timed out");
            refused(name, "tls_handshake_timeout");
            None
        }
    }
}
