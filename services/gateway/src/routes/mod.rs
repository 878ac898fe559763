//! The gateway's HTTP API, one module per resource.

mod health;
mod jobs;
mod policies;
mod records;
mod rules;
mod sign;
mod tokens;
mod trust;
mod webhooks;
mod witnesses;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/v1/witnesses",
            post(witnesses::create).get(witnesses::list),
        )
        .route("/v1/witnesses/{name}", get(witnesses::show))
        .route(
            "/v1/witnesses/{name}/public-key",
            get(witnesses::public_key),
        )
        .route("/v1/witnesses/{name}/rotate", post(witnesses::rotate))
        .route("/v1/witnesses/{name}/revoke", post(witnesses::revoke))
        .route(
            "/v1/witnesses/{name}/versions/{version}/revoke",
            post(witnesses::revoke_version),
        )
        .route("/v1/sign", post(sign::sign))
        .route("/v1/webhooks/distribution", post(webhooks::distribution))
        .route("/v1/webhooks/harbor", post(webhooks::harbor))
        .route("/v1/webhooks/acr", post(webhooks::acr))
        .route("/v1/webhooks/acr/{secret}", post(webhooks::acr_with_secret))
        .route("/v1/webhooks/generic", post(webhooks::generic))
        .route("/v1/webhooks/stats", get(webhooks::stats))
        .route("/v1/signing-rules", post(rules::create).get(rules::list))
        .route(
            "/v1/signing-rules/{name}",
            get(rules::show).patch(rules::update).delete(rules::delete),
        )
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/signatures", get(records::signatures))
        .route("/v1/audit", get(records::audit))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{name}", axum::routing::delete(tokens::revoke))
        .route("/v1/policies", post(policies::create).get(policies::list))
        .route(
            "/v1/policies/{name}",
            get(policies::show)
                .patch(policies::patch)
                .delete(policies::delete),
        )
        .route("/v1/policies/{name}/impact", get(policies::impact))
        .route("/v1/trust-bundle", get(trust::bundle))
        .route("/v1/images", get(trust::images))
        .route(
            "/v1/admission-decisions",
            post(trust::report).get(trust::decisions),
        )
}
