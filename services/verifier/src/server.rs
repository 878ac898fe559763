//! The webhook's HTTP side: `POST /validate` and `POST /mutate` take AdmissionReview v1
//! (kube-core's types) and answer with one; `/healthz`, `/readyz` (a trust bundle is
//! loaded) and `/metrics` are served on the same HTTPS port for the kubelet and the
//! scraper.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube_core::DynamicObject;
use tracing::Instrument;

use crate::admission::Admission;
use crate::trust::Trust;

/// Large enough for the biggest object the API server accepts (3 MiB), twice (an update
/// carries the old object too).
const BODY_LIMIT: usize = 8 << 20;

#[derive(Clone)]
struct AppState {
    admission: Admission,
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

pub fn router(admission: Admission, trust: Arc<Trust>) -> Router {
    let ready = readiness(trust);
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .with_state(AppState { admission })
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

async fn validate(State(s): State<AppState>, body: Bytes) -> Response {
    let req = match review(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let span = tracing::debug_span!("admission.validate", uid = %req.uid, kind = %req.kind.kind, namespace = ?req.namespace);
    let response = s.admission.validate(&req).instrument(span).await;
    if !response.allowed {
        tracing::info!(uid = %req.uid, kind = %req.kind.kind, namespace = ?req.namespace, name = %req.name, message = %response.result.message, "admission denied");
    }
    wire(response)
}

async fn mutate(State(s): State<AppState>, body: Bytes) -> Response {
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
