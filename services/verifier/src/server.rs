//! The webhook's HTTP side: `POST /validate` and `POST /mutate` take AdmissionReview v1
//! (kube-core's types) and answer with one; `/healthz`, `/readyz` (a trust bundle is
//! loaded) and `/metrics` are served on the same HTTPS port for the kubelet and the
//! scraper.
//!
//! Each review is attributed to its sender: a client certificate the TLS handshake
//! verified against the client CA (then [`Sender::Trusted`], rate-limited per
//! certificate), or none (then [`Sender::Unverified`] under `client_auth = "optional"`,
//! rate-limited per peer IP; with client authentication off, everyone is trusted and
//! gets the verified quota, per IP).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube_core::DynamicObject;
use sha2::{Digest as _, Sha256};
use signet_runtime::serve::Peer;
use tracing::Instrument;

use crate::admission::{Admission, Sender};
use crate::config::{ClientAuth, RateLimits};
use crate::trust::Trust;

/// Large enough for the biggest object the API server accepts (3 MiB), twice (an update
/// carries the old object too).
const BODY_LIMIT: usize = 8 << 20;

/// Limiters forget sources idle this long once they hold this many.
const LIMITER_KEYS: usize = 10_000;

#[derive(Clone)]
struct AppState {
    admission: Admission,
    client_auth_off: bool,
    limits: Arc<Limits>,
}

/// Who a review comes from, for the rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    /// The SHA-256 of the verified client certificate.
    Certificate([u8; 32]),
    Address(IpAddr),
}

struct Limits {
    verified: Option<DefaultKeyedRateLimiter<Source>>,
    unverified: Option<DefaultKeyedRateLimiter<Source>>,
}

impl Limits {
    fn new(l: RateLimits) -> Self {
        Self {
            verified: l.verified.map(RateLimiter::keyed),
            unverified: l.unverified.map(RateLimiter::keyed),
        }
    }

    /// Whether `source` may send one more review now. A trusted sender (a verified
    /// certificate, or anyone with client authentication off) gets the verified quota.
    fn admit(&self, sender: Sender, source: &Source) -> bool {
        let limiter = match sender {
            Sender::Trusted => &self.verified,
            Sender::Unverified => &self.unverified,
        };
        let Some(limiter) = limiter else {
            return true;
        };
        if limiter.len() > LIMITER_KEYS {
            limiter.retain_recent();
        }
        limiter.check_key(source).is_ok()
    }
}

/// The sender of a request and its rate-limit key, from what the TLS acceptor and the
/// listener put in the request's extensions. A certificate is only there if the
/// handshake verified it against the client CA.
fn sender(ext: &Extensions, client_auth_off: bool) -> (Sender, Source) {
    let cert = ext
        .get::<Peer>()
        .and_then(|p| p.certificates.first().cloned());
    match cert {
        Some(der) => (
            Sender::Trusted,
            Source::Certificate(Sha256::digest(der).into()),
        ),
        None => {
            let ip = ext
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let sender = if client_auth_off {
                Sender::Trusted
            } else {
                Sender::Unverified
            };
            (sender, Source::Address(ip))
        }
    }
}

fn too_many(source: &Source) -> Response {
    tracing::warn!(?source, "review refused: rate limit");
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(axum::http::header::RETRY_AFTER, "1")],
        "too many reviews from this client\n",
    )
        .into_response()
}

/// Ready once a trust bundle is loaded (from the control plane, or kept on disk):
/// before that, every enforced namespace would be refused.
pub fn readiness(trust: Arc<Trust>) -> signet_runtime::admin::ReadinessCheck {
    Arc::new(move || {
        let trust = trust.clone();
        Box::pin(async move {
            if trust.is_loaded() {
                Ok(())
            } else {
                Err("no trust bundle yet: the control plane has not answered".to_owned())
            }
        })
    })
}

/// The routes. Serve them with `into_make_service_with_connect_info::<SocketAddr>()`
/// so reviews without a client certificate are limited per peer address.
pub fn router(
    admission: Admission,
    trust: Arc<Trust>,
    client_auth: &ClientAuth,
    limits: RateLimits,
) -> Router {
    let ready = readiness(trust);
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .with_state(AppState {
            admission,
            client_auth_off: *client_auth == ClientAuth::Off,
            limits: Arc::new(Limits::new(limits)),
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .merge(signet_runtime::admin::router(ready, None, None))
}

/// Reads an AdmissionReview; a body that is not one gets a 400 naming the problem.
/// Public so the fuzz targets (services/fuzz) read bodies exactly as the webhook does.
#[allow(clippy::result_large_err)]
pub fn review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, Response> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("body is not an admission.k8s.io/v1 AdmissionReview: {e}\n"),
        )
            .into_response()
    })?;
    review.try_into().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "the AdmissionReview carries no request\n",
        )
            .into_response()
    })
}

async fn validate(State(s): State<AppState>, ext: Extensions, body: Bytes) -> Response {
    let (sender, source) = sender(&ext, s.client_auth_off);
    if !s.limits.admit(sender, &source) {
        return too_many(&source);
    }
    let req = match review(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let span = tracing::info_span!("admission.validate", uid = %req.uid, kind = %req.kind.kind, namespace = ?req.namespace, ?sender);
    let response = s.admission.validate(&req, sender).instrument(span).await;
    if !response.allowed {
        tracing::info!(uid = %req.uid, kind = %req.kind.kind, namespace = ?req.namespace, name = %req.name, message = %response.result.message, "admission denied");
    }
    wire(response)
}

async fn mutate(State(s): State<AppState>, ext: Extensions, body: Bytes) -> Response {
    let (sender, source) = sender(&ext, s.client_auth_off);
    if !s.limits.admit(sender, &source) {
        return too_many(&source);
    }
    let req = match review(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    wire(s.admission.mutate(&req).await)
}

/// The review as the API server reads it. kube-core serialises `patch` (a Go `[]byte`)
/// as an array of numbers, but Go's JSON decoding of `[]byte` wants standard base64
/// (kube-rs/kube#1781), so it is re-encoded here.
fn wire(response: AdmissionResponse) -> Response {
    let mut review = match serde_json::to_value(response.into_review()) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an AdmissionReview answer");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Some(patch) = review.pointer_mut("/response/patch") {
        if let Some(bytes) = patch.as_array().map(|a| {
            a.iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Vec<u8>>()
        }) {
            *patch = serde_json::Value::String(STANDARD.encode(bytes));
        }
    }
    Json(review).into_response()
}
