//! The gateway's HTTP API, one module per resource, and its OpenAPI description
//! ([`ApiDoc`], written to `schemas/openapi.json`): each handler carries its
//! `#[utoipa::path]`; [`bodies`] describes the answers handlers build with `json!`.

pub mod bodies;
mod events;
mod health;
mod jobs;
mod kms;
pub(crate) mod policies;
mod records;
mod rules;
mod sessions;
mod sign;
mod tokens;
mod trust;
mod webhooks;
mod witnesses;
mod workloads;

pub use sign::Waiters;

use axum::routing::{get, post};
use axum::Router;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use utoipa::OpenApi;

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
        .route("/v1/attest", post(sign::attest))
        .route("/v1/webhooks/distribution", post(webhooks::distribution))
        .route(
            "/v1/webhooks/distribution/{name}",
            post(webhooks::distribution_named),
        )
        .route("/v1/webhooks/harbor", post(webhooks::harbor))
        .route("/v1/webhooks/harbor/{name}", post(webhooks::harbor_named))
        .route("/v1/webhooks/acr", post(webhooks::acr))
        .route("/v1/webhooks/acr/{secret}", post(webhooks::acr_with_secret))
        .route(
            "/v1/webhooks/acr/{name}/{secret}",
            post(webhooks::acr_named_with_secret),
        )
        .route("/v1/webhooks/generic", post(webhooks::generic))
        .route("/v1/webhooks/generic/{name}", post(webhooks::generic_named))
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
        .route("/v1/attestations", get(records::attestations))
        .route("/v1/signatures/{id}/revoke", post(records::revoke))
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
        .route("/v1/control-plane/key", get(trust::control_plane_key))
        .route("/v1/images", get(trust::images))
        .route(
            "/v1/admission-decisions",
            post(trust::report).get(trust::decisions),
        )
        .route("/v1/inventory", post(workloads::report))
        .route("/v1/workloads", get(workloads::list))
        .route("/v1/sessions", post(sessions::create))
        .route(
            "/v1/sessions/current",
            get(sessions::show).delete(sessions::delete),
        )
        .route("/v1/events/stream", get(events::stream))
        .route("/v1/kms/keys", get(kms::keys))
}

/// The gateway's OpenAPI 3.1 document: every route above, with its roles, bodies and
/// answers. `schemas/openapi.json` is this, generated; a test fails when it is stale.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "signet gateway",
        description = "signet's HTTP API: the pipeline sign API, registry webhook receivers, \
            the control plane (witnesses, security policies, signing rules, jobs, signatures, \
            audit, tokens) and what cluster verifiers read and report. Every answer that is \
            not a success has the body `{\"error\", \"detail\"}` (`Error`)."
    ),
    paths(
        health::healthz,
        health::readyz,
        witnesses::create,
        witnesses::list,
        witnesses::show,
        witnesses::public_key,
        witnesses::rotate,
        witnesses::revoke,
        witnesses::revoke_version,
        sign::sign,
        sign::attest,
        jobs::list,
        jobs::show,
        jobs::retry,
        webhooks::distribution,
        webhooks::distribution_named,
        webhooks::harbor,
        webhooks::harbor_named,
        webhooks::acr,
        webhooks::acr_with_secret,
        webhooks::acr_named_with_secret,
        webhooks::generic,
        webhooks::generic_named,
        webhooks::stats,
        rules::create,
        rules::list,
        rules::show,
        rules::update,
        rules::delete,
        records::signatures,
        records::attestations,
        records::revoke,
        records::audit,
        tokens::create,
        tokens::list,
        tokens::revoke,
        policies::create,
        policies::list,
        policies::show,
        policies::patch,
        policies::delete,
        policies::impact,
        trust::bundle,
        trust::control_plane_key,
        trust::images,
        trust::report,
        trust::decisions,
        workloads::report,
        workloads::list,
        sessions::create,
        sessions::show,
        sessions::delete,
        events::stream,
        kms::keys,
    ),
    modifiers(&CommonAnswers),
    tags(
        (name = "health", description = "Liveness and readiness."),
        (name = "witnesses", description = "Named signing identities bound to a KMS key."),
        (name = "signing", description = "Sign requests and the jobs they become."),
        (name = "webhooks", description = "Registry push notifications (see docs/webhooks.md)."),
        (name = "signing-rules", description = "Which pushed repositories are signed, by which witness."),
        (name = "records", description = "Signature records and the audit log."),
        (name = "tokens", description = "API tokens and their roles."),
        (name = "policies", description = "Security policies: which witnesses must have signed what runs where."),
        (name = "sessions", description = "Console sign-in: a session cookie opened with an API token."),
        (name = "verifiers", description = "What cluster verifiers read (trust bundles, trusted images) and report."),
    )
)]
pub struct ApiDoc;

/// Adds what every operation shares: the bearer scheme, 401 and 403 where a token is
/// needed, and `Error` as the body of any other failure.
struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "An API token (`signet token create`). Its role, admin, signer, verifier or viewer (reads what an admin reads, changes nothing), \
             decides what it may do; admin may do everything."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let error = |description: &str| -> RefOr<Response> {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("Error"))),
                )
                .build()
                .into()
        };
        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let answers = &mut operation.responses.responses;
                let with_token = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                if with_token {
                    answers.entry("401".into()).or_insert_with(|| {
                        error("No bearer token, or one that is unknown or revoked.")
                    });
                    answers
                        .entry("403".into())
                        .or_insert_with(|| error("The token's role may not do this."));
                }
                answers
                    .entry("default".into())
                    .or_insert_with(|| error("Any other failure."));
            }
        }
    }
}
