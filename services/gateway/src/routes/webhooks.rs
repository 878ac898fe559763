//! `POST /v1/webhooks/{distribution,harbor,acr,generic}`: registries report pushes, and
//! each push that a signing rule matches becomes one sign job per witness.
//!
//! A delivery is answered 2xx only once every job it yields is durably on the bus; when
//! the bus refuses one, the answer is 503 and the registry sends the delivery again.
//! Job ids are derived from the event, so the retry finds the jobs it already made
//! instead of making more. Events signet does not sign (pulls, blobs, untagged
//! manifests, signatures) and pushes no rule matches are acknowledged and counted.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use signet_core::digest::is_attachment_tag;
use signet_core::{ImageRef, SignRequest};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::routes::sign::enqueue_as;
use crate::webhooks::filter::{self, Verdict};
use crate::webhooks::receivers::Receiver;
use crate::webhooks::rules::Rules;
use crate::webhooks::{acr, distribution, harbor, parse_sign_request, ReceiverKind, ReceiverStats};
use crate::AppState;

/// The namespace of webhook job ids (UUIDv5 over receiver, event, image and witness).
const JOB_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_4e07_5b3d_4f8e_9c21_d0a7_35e6_b812);

/// What every registry webhook receiver answers, for the API document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // describes answers the handlers build; never constructed
enum RegistryWebhookAnswers {
    #[response(
        status = 200,
        description = "Nothing to sign: what was ignored or unmatched, and why"
    )]
    NothingToSign(Report),
    #[response(
        status = 202,
        description = "Every job the delivery yields is on the bus"
    )]
    Enqueued(Report),
    #[response(status = 400, description = "The body is not what the registry sends")]
    Malformed(crate::error::ErrorBody),
    #[response(status = 401, description = "The sender could not be authenticated")]
    Unauthenticated(crate::error::ErrorBody),
    #[response(status = 404, description = "The receiver is not enabled")]
    NotEnabled(crate::error::ErrorBody),
    #[response(status = 409, description = "A replayed delivery id")]
    Replayed(crate::error::ErrorBody),
    #[response(status = 413, description = "The body is too large")]
    TooLarge(crate::error::ErrorBody),
    #[response(
        status = 422,
        description = "A push names an image that cannot be signed"
    )]
    Unsignable(crate::error::ErrorBody),
    #[response(
        status = 503,
        description = "The bus did not take a job; the registry sends the delivery again"
    )]
    Unavailable(crate::error::ErrorBody),
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/distribution",
    tag = "webhooks",
    summary = "CNCF distribution (docker-registry) notifications",
    description = "Manifest pushes with a tag that a signing rule matches become one job per \
        witness. Authenticated as configured for the receiver (a static token header, or HMAC-SHA256 with a delivery id), not with an API token.",
    request_body(content(
        (crate::webhooks::distribution::Envelope = "application/vnd.docker.distribution.events.v1+json"),
        (crate::webhooks::distribution::Envelope = "application/json"),
    )),
    responses(RegistryWebhookAnswers),
)]
pub async fn distribution(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(&state, ReceiverKind::Distribution, &headers, None, body).await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/harbor",
    tag = "webhooks",
    summary = "Harbor webhooks, Default or CloudEvents format",
    description = "A body with `specversion` is read as the CloudEvents format, any other as the \
        Default format. Artifact pushes with a tag that a signing rule matches become one job \
        per witness. Authenticated as configured for the receiver (a static token header, or HMAC-SHA256 with a delivery id), not with an API token.",
    request_body(content = crate::webhooks::harbor::Payload),
    responses(RegistryWebhookAnswers),
)]
pub async fn harbor(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(&state, ReceiverKind::Harbor, &headers, None, body).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretQuery {
    /// The receiver's URL secret.
    pub secret: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/acr",
    tag = "webhooks",
    summary = "Alibaba Cloud Container Registry triggers, secret in the query",
    description = "ACR sends no custom headers, so the receiver's secret is in the URL.",
    params(SecretQuery),
    request_body = crate::webhooks::acr::Notification,
    responses(RegistryWebhookAnswers),
)]
/// ACR with the secret in the query: `/v1/webhooks/acr?secret=SECRET`.
pub async fn acr(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<SecretQuery>,
    body: Body,
) -> ApiResult<Response> {
    receive(
        &state,
        ReceiverKind::Acr,
        &headers,
        q.secret.as_deref(),
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/acr/{secret}",
    tag = "webhooks",
    summary = "Alibaba Cloud Container Registry triggers, secret in the path",
    description = "ACR sends no custom headers, so the receiver's secret is in the URL.",
    params(("secret" = String, Path, description = "The receiver's URL secret")),
    request_body = crate::webhooks::acr::Notification,
    responses(RegistryWebhookAnswers),
)]
/// ACR with the secret in the path: `/v1/webhooks/acr/SECRET`.
pub async fn acr_with_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(secret): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    receive(&state, ReceiverKind::Acr, &headers, Some(&secret), body).await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/generic",
    tag = "webhooks",
    summary = "A sign request from anything that can send a webhook",
    description = "The body is a sign request, witness included; no signing rules apply. Authenticated as configured for the receiver (a static token header, or HMAC-SHA256 with a delivery id), not with an API token.",
    request_body = SignRequest,
    responses(
        (status = 200, description = "Nothing to sign: what was ignored or unmatched, and why", body = Report),
        (status = 202, description = "Every job the delivery yields is on the bus", body = Report),
        (status = 400, description = "The body is not what the registry sends", body = crate::error::ErrorBody),
        (status = 401, description = "The sender could not be authenticated", body = crate::error::ErrorBody),
        (status = 404, description = "The receiver is not enabled", body = crate::error::ErrorBody),
        (status = 409, description = "A replayed delivery id", body = crate::error::ErrorBody),
        (status = 413, description = "The body is too large", body = crate::error::ErrorBody),
        (status = 503, description = "The bus did not take a job; the registry sends the delivery again", body = crate::error::ErrorBody),
    ),
)]
pub async fn generic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(&state, ReceiverKind::Generic, &headers, None, body).await
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/stats",
    tag = "webhooks",
    summary = "What each receiver has seen since the process started",
    description = "Role: admin.",
    responses((status = 200, description = "Counters by receiver", body = super::bodies::WebhookCounters)),
    security(("bearer" = [])),
)]
/// `GET /v1/webhooks/stats`: what each receiver has seen since the process started.
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    serde_json::to_value(state.webhooks.stats.snapshot())
        .map(|receivers| Json(serde_json::json!({ "receivers": receivers })))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// What a delivery became, for the registry's delivery log and for people.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookReport)]
struct Report {
    receiver: &'static str,
    /// One per (signable push, matching witness).
    jobs: Vec<JobRef>,
    /// Events not signed, and why.
    ignored: Vec<IgnoredEvent>,
    /// Pushes no enabled signing rule matched.
    unmatched: Vec<String>,
    /// Jobs a rule asked for that could not be made (the witness was revoked).
    skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookJob)]
struct JobRef {
    id: Uuid,
    image: String,
    witness: String,
    /// The rules that chose the witness.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<String>,
    state: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookIgnoredEvent)]
struct IgnoredEvent {
    event: String,
    reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookSkippedJob)]
struct Skipped {
    image: String,
    witness: String,
    reason: String,
}

/// Adds `n` to one of a receiver's counters, and to the same series in `/metrics`.
fn add(kind: ReceiverKind, counter: &std::sync::atomic::AtomicU64, outcome: &str, n: u64) {
    ReceiverStats::add(counter, n);
    signet_runtime::metrics::metrics().webhook(kind.name(), outcome, n);
}

async fn receive(
    state: &AppState,
    kind: ReceiverKind,
    headers: &HeaderMap,
    url_secret: Option<&str>,
    body: Body,
) -> ApiResult<Response> {
    let Some(receiver) = state.webhooks.get(kind) else {
        return Err(ApiError::NotFound(format!(
            "the {kind} webhook receiver is not enabled; configure [webhooks.{kind}] (see docs/webhooks.md)"
        )));
    };
    let stats = state.webhooks.stats.receiver(kind);
    let body = read_body(body, state.webhooks.body_limit)
        .await
        .inspect_err(|_| {
            add(kind, &stats.malformed, "malformed", 1);
        })?;
    let passed = receiver
        .guard
        .check(headers, &body, url_secret)
        .map_err(|why| {
            add(kind, &stats.unauthenticated, "unauthenticated", 1);
            tracing::warn!(receiver = %kind, reason = %why, "webhook refused: not authenticated");
            ApiError::Unauthorized(why)
        })?;
    add(kind, &stats.deliveries, "deliveries", 1);
    if let Some(id) = &passed.delivery_id {
        if !state
            .store
            .remember_delivery(kind.name(), id, state.webhooks.replay_window)
            .await?
        {
            add(kind, &stats.replays, "replays", 1);
            tracing::warn!(receiver = %kind, delivery = %id, "webhook refused: replayed delivery id");
            return Err(ApiError::Conflict(format!(
                "delivery {id:?} was already received; a replayed webhook is refused (send each delivery with a new X-Delivery-Id)"
            )));
        }
    }
    let outcome = handle(state, receiver, &body, passed.delivery_id.as_deref()).await;
    if let Err(e) = &outcome {
        match e {
            ApiError::BadRequest(_) | ApiError::Unprocessable(_) => {
                add(kind, &stats.malformed, "malformed", 1)
            }
            ApiError::Unavailable(_) => add(kind, &stats.unavailable, "unavailable", 1),
            _ => {}
        }
        // Not accepted, so the sender's retry must not count as a replay.
        if let Some(id) = &passed.delivery_id {
            if let Err(se) = state.store.forget_delivery(kind.name(), id).await {
                tracing::warn!(receiver = %kind, error = %se, "cannot forget a delivery that failed; its retry will be refused as a replay");
            }
        }
    }
    outcome
}

async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            ApiError::TooLarge(format!(
                "the webhook body is larger than {limit} bytes (webhooks.body_limit_bytes)"
            ))
        } else {
            ApiError::BadRequest(format!("the webhook body could not be read: {inner}"))
        }
    })
}

async fn handle(
    state: &AppState,
    receiver: &Receiver,
    body: &[u8],
    delivery_id: Option<&str>,
) -> ApiResult<Response> {
    let kind = receiver.kind;
    let stats = state.webhooks.stats.receiver(kind);
    let events = match kind {
        ReceiverKind::Distribution => distribution::parse(body),
        ReceiverKind::Harbor => harbor::parse(body),
        ReceiverKind::Acr => acr::parse(body),
        ReceiverKind::Generic => return generic_request(state, body, delivery_id).await,
    }
    .map_err(|e| ApiError::BadRequest(e.0))?;
    let source = format!("webhook:{kind}");
    let mut report = Report {
        receiver: kind.name(),
        ..Report::default()
    };
    // Read only when a delivery has something to sign: most events (the registry's own
    // pulls, blob pushes, signet's signature pushes) do not.
    let mut rules: Option<Rules> = None;
    add(kind, &stats.events, "events", events.len() as u64);
    for event in events {
        let image = match filter::classify(&event, receiver.registry.as_deref())
            .map_err(ApiError::Unprocessable)?
        {
            Verdict::Ignore(why) => {
                add(kind, &stats.ignored, "ignored", 1);
                tracing::debug!(receiver = %kind, event = %event.key, reason = why.label(), "webhook event not signed: {why}");
                report.ignored.push(IgnoredEvent {
                    event: event.key,
                    reason: why.to_string(),
                });
                continue;
            }
            Verdict::Sign(image) => image,
        };
        let rules = match &rules {
            Some(r) => r,
            None => rules.insert(Rules::new(&state.store.list_signing_rules().await?)),
        };
        let witnesses = rules.witnesses_for(&image);
        if witnesses.is_empty() {
            add(kind, &stats.unmatched, "unmatched", 1);
            tracing::info!(receiver = %kind, %image, "push matched no enabled signing rule; acknowledged, not signed");
            report.unmatched.push(image.to_string());
            continue;
        }
        for (witness, rule_names) in witnesses {
            let request = SignRequest {
                image: image.to_string(),
                witness: witness.clone(),
                annotations: BTreeMap::new(),
            };
            let id = job_id(kind, &event.key, &image, &witness);
            match enqueue_as(state, id, request, &source, &source).await {
                Ok(job) => {
                    add(kind, &stats.jobs, "jobs", 1);
                    report.jobs.push(JobRef {
                        id: job.id,
                        image: image.to_string(),
                        witness,
                        rules: rule_names,
                        state: job.state.to_string(),
                    });
                }
                // A rule naming a revoked witness is ours to fix; the registry cannot fix
                // it by sending the delivery again, so it is reported, not failed.
                Err(ApiError::Conflict(reason) | ApiError::NotFound(reason)) => {
                    tracing::warn!(receiver = %kind, %image, %witness, %reason, rules = ?rule_names, "signing rule asked for a witness that cannot sign");
                    report.skipped.push(Skipped {
                        image: image.to_string(),
                        witness,
                        reason,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(answer(report))
}

/// The generic receiver: the body is a sign request, witness included; no rules apply.
async fn generic_request(
    state: &AppState,
    body: &[u8],
    delivery_id: Option<&str>,
) -> ApiResult<Response> {
    let kind = ReceiverKind::Generic;
    let stats = state.webhooks.stats.receiver(kind);
    let request = parse_sign_request(body).map_err(|e| ApiError::BadRequest(e.0))?;
    add(kind, &stats.events, "events", 1);
    let image =
        ImageRef::parse(&request.image).map_err(|e| ApiError::BadRequest(format!("image: {e}")))?;
    let mut report = Report {
        receiver: kind.name(),
        ..Report::default()
    };
    if let Some(tag) = image.tag().filter(|t| is_attachment_tag(t)) {
        add(kind, &stats.ignored, "ignored", 1);
        report.ignored.push(IgnoredEvent {
            event: request.image.clone(),
            reason: filter::Ignored::AttachmentTag(tag.to_owned()).to_string(),
        });
        return Ok(answer(report));
    }
    // A signed delivery retried after a 503 keeps its id, and so its job.
    let id = match delivery_id {
        Some(d) => job_id(kind, d, &image, &request.witness),
        None => Uuid::now_v7(),
    };
    let source = format!("webhook:{kind}");
    let job = enqueue_as(state, id, request, &source, &source).await?;
    add(kind, &stats.jobs, "jobs", 1);
    report.jobs.push(JobRef {
        id: job.id,
        image: job.request.image.clone(),
        witness: job.request.witness.clone(),
        rules: Vec::new(),
        state: job.state.to_string(),
    });
    Ok(answer(report))
}

fn job_id(kind: ReceiverKind, event: &str, image: &ImageRef, witness: &str) -> Uuid {
    let name = format!("{kind}\n{event}\n{image}\n{witness}");
    Uuid::new_v5(&JOB_ID_NAMESPACE, name.as_bytes())
}

fn answer(report: Report) -> Response {
    let status = if report.jobs.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_stable_per_event_image_and_witness() {
        let image = ImageRef::parse("r.example/a:v1").expect("image");
        let a = job_id(
            ReceiverKind::Distribution,
            "distribution:e1",
            &image,
            "prod",
        );
        assert_eq!(
            a,
            job_id(
                ReceiverKind::Distribution,
                "distribution:e1",
                &image,
                "prod"
            )
        );
        assert_ne!(
            a,
            job_id(
                ReceiverKind::Distribution,
                "distribution:e2",
                &image,
                "prod"
            )
        );
        assert_ne!(
            a,
            job_id(ReceiverKind::Distribution, "distribution:e1", &image, "qa")
        );
        assert_ne!(
            a,
            job_id(ReceiverKind::Harbor, "distribution:e1", &image, "prod")
        );
    }
}
