//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Alive: the process answers",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")),
)]
/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Ready: the store and the bus both answer",
    description = "A gateway that cannot enqueue must not take webhooks, or the registry \
        would think they were delivered.",
    responses(
        (status = 200, description = "Ready", body = super::bodies::Readiness),
        (status = 503, description = "The store or the bus does not answer", body = super::bodies::Readiness),
    ),
)]
/// Ready: the store and the bus both answer. A gateway that cannot enqueue must not
/// take webhooks, or the registry would think they were delivered.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.store.ping().await.err().map(|e| e.to_string());
    let bus = state.bus.jobs.check().await.err().map(|e| e.to_string());
    let ok = store.is_none() && bus.is_none();
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(json!({
            "ready": ok,
            "store": store.unwrap_or_else(|| "ok".into()),
            "bus": bus.unwrap_or_else(|| "ok".into()),
        })),
    )
}
