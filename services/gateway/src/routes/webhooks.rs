//! `POST /v1/webhooks/{distribution,harbor,acr,generic}[/NAME]`: registries report
//! pushes, and each push that a signing rule matches becomes one sign job per witness.
//! The path without a name is the receiver configured as `webhooks.<kind>`; a name is one
//! of `webhooks.receivers.<name>`, each with its own secret, registry and scope.
//!
//! A receiver is bound to its registry: an event naming another host, or an image
//! outside the receiver's repository scope, is refused with its reason in the answer
//! (and, for the generic receiver, with 403), logged, counted as `foreign` and never
//! signed.
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
use sha2::{Digest as _, Sha256};
use signet_core::digest::is_attachment_tag;
use signet_core::{ImageRef, SignRequest};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::routes::sign::enqueue_as;
use crate::webhooks::auth::Passed;
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
    #[response(
        status = 401,
        description = "The sender could not be authenticated (or its signed timestamp is stale)"
    )]
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
    receive(
        &state,
        ReceiverKind::Distribution,
        None,
        &headers,
        None,
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/distribution/{name}",
    tag = "webhooks",
    summary = "CNCF distribution notifications to a named receiver",
    description = "As `/v1/webhooks/distribution`, for the receiver `webhooks.receivers.<name>` \
        (kind distribution), with its own secret, registry and scope.",
    params(("name" = String, Path, description = "The receiver's name")),
    request_body(content(
        (crate::webhooks::distribution::Envelope = "application/vnd.docker.distribution.events.v1+json"),
        (crate::webhooks::distribution::Envelope = "application/json"),
    )),
    responses(RegistryWebhookAnswers),
)]
pub async fn distribution_named(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(
        &state,
        ReceiverKind::Distribution,
        Some(&name),
        &headers,
        None,
        body,
    )
    .await
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
    receive(&state, ReceiverKind::Harbor, None, &headers, None, body).await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/harbor/{name}",
    tag = "webhooks",
    summary = "Harbor webhooks to a named receiver",
    description = "As `/v1/webhooks/harbor`, for the receiver `webhooks.receivers.<name>` \
        (kind harbor), with its own secret, registry and scope.",
    params(("name" = String, Path, description = "The receiver's name")),
    request_body(content = crate::webhooks::harbor::Payload),
    responses(RegistryWebhookAnswers),
)]
pub async fn harbor_named(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(
        &state,
        ReceiverKind::Harbor,
        Some(&name),
        &headers,
        None,
        body,
    )
    .await
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
        None,
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
    summary = "Alibaba Cloud Container Registry triggers, secret in the path (or a named receiver)",
    description = "ACR sends no custom headers, so the receiver's secret is in the URL. When the \
        path segment is the name of a receiver `webhooks.receivers.<name>` of kind acr, the \
        request goes to that receiver, with its secret in `?secret=`; otherwise the segment is \
        the unnamed receiver's secret.",
    params(
        ("secret" = String, Path, description = "The receiver's URL secret, or a named receiver"),
        SecretQuery,
    ),
    request_body = crate::webhooks::acr::Notification,
    responses(RegistryWebhookAnswers),
)]
/// ACR with the secret in the path: `/v1/webhooks/acr/SECRET`, or a named receiver with
/// the secret in the query: `/v1/webhooks/acr/NAME?secret=SECRET`.
pub async fn acr_with_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(segment): Path<String>,
    ApiQuery(q): ApiQuery<SecretQuery>,
    body: Body,
) -> ApiResult<Response> {
    if state
        .webhooks
        .get(ReceiverKind::Acr, Some(&segment))
        .is_some()
    {
        return receive(
            &state,
            ReceiverKind::Acr,
            Some(&segment),
            &headers,
            q.secret.as_deref(),
            body,
        )
        .await;
    }
    receive(
        &state,
        ReceiverKind::Acr,
        None,
        &headers,
        Some(&segment),
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/acr/{name}/{secret}",
    tag = "webhooks",
    summary = "Alibaba Cloud Container Registry triggers to a named receiver, secret in the path",
    params(
        ("name" = String, Path, description = "The receiver's name"),
        ("secret" = String, Path, description = "The receiver's URL secret"),
    ),
    request_body = crate::webhooks::acr::Notification,
    responses(RegistryWebhookAnswers),
)]
/// A named ACR receiver with the secret in the path: `/v1/webhooks/acr/NAME/SECRET`.
pub async fn acr_named_with_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((name, secret)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Response> {
    receive(
        &state,
        ReceiverKind::Acr,
        Some(&name),
        &headers,
        Some(&secret),
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/generic",
    tag = "webhooks",
    summary = "A sign request from anything that can send a webhook",
    description = "The body is a sign request, witness included; no signing rules apply. Authenticated as configured for the receiver (a static token header, or a Standard Webhooks HMAC-SHA256 over id, timestamp and body), not with an API token. With a GitHub-style body-only signature, where the receiver allows one, the image must be pinned to a digest.",
    request_body = SignRequest,
    responses(
        (status = 200, description = "Nothing to sign: what was ignored or unmatched, and why", body = Report),
        (status = 202, description = "Every job the delivery yields is on the bus", body = Report),
        (status = 400, description = "The body is not what the registry sends", body = crate::error::ErrorBody),
        (status = 401, description = "The sender could not be authenticated (or its signed timestamp is stale)", body = crate::error::ErrorBody),
        (status = 403, description = "The image is outside the receiver's registry or repository scope", body = crate::error::ErrorBody),
        (status = 404, description = "The receiver is not enabled", body = crate::error::ErrorBody),
        (status = 409, description = "A replayed delivery id", body = crate::error::ErrorBody),
        (status = 413, description = "The body is too large", body = crate::error::ErrorBody),
        (status = 422, description = "A body-only signature (X-Hub-Signature-256) with an image that is not pinned to a digest", body = crate::error::ErrorBody),
        (status = 503, description = "The bus did not take a job; the registry sends the delivery again", body = crate::error::ErrorBody),
    ),
)]
pub async fn generic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(&state, ReceiverKind::Generic, None, &headers, None, body).await
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/generic/{name}",
    tag = "webhooks",
    summary = "A sign request to a named generic receiver",
    description = "As `/v1/webhooks/generic`, for the receiver `webhooks.receivers.<name>` \
        (kind generic), with its own secret, registry and scope.",
    params(("name" = String, Path, description = "The receiver's name")),
    request_body = SignRequest,
    responses(
        (status = 200, description = "Nothing to sign: what was ignored or unmatched, and why", body = Report),
        (status = 202, description = "Every job the delivery yields is on the bus", body = Report),
        (status = 400, description = "The body is not what the registry sends", body = crate::error::ErrorBody),
        (status = 401, description = "The sender could not be authenticated (or its signed timestamp is stale)", body = crate::error::ErrorBody),
        (status = 403, description = "The image is outside the receiver's registry or repository scope", body = crate::error::ErrorBody),
        (status = 404, description = "The receiver is not enabled", body = crate::error::ErrorBody),
        (status = 409, description = "A replayed delivery id", body = crate::error::ErrorBody),
        (status = 413, description = "The body is too large", body = crate::error::ErrorBody),
        (status = 422, description = "A body-only signature (X-Hub-Signature-256) with an image that is not pinned to a digest", body = crate::error::ErrorBody),
        (status = 503, description = "The bus did not take a job; the registry sends the delivery again", body = crate::error::ErrorBody),
    ),
)]
pub async fn generic_named(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(
        &state,
        ReceiverKind::Generic,
        Some(&name),
        &headers,
        None,
        body,
    )
    .await
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
    caller.require_read()?;
    serde_json::to_value(state.webhooks.snapshot())
        .map(|receivers| Json(serde_json::json!({ "receivers": receivers })))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// What a delivery became, for the registry's delivery log and for people.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookReport)]
struct Report {
    /// `distribution`, or `distribution/NAME` for a named receiver.
    receiver: String,
    /// One per (signable push, matching witness).
    jobs: Vec<JobRef>,
    /// Events not signed, and why; those outside the receiver's registry or scope say
    /// "refused: ...".
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

/// Adds `n` to one of a receiver's counters, and to the same series in `/metrics`
/// (labelled with the receiver's id: configured names only, so the labels stay bounded).
fn add(receiver: &Receiver, counter: &std::sync::atomic::AtomicU64, outcome: &str, n: u64) {
    ReceiverStats::add(counter, n);
    signet_runtime::metrics::metrics().webhook(&receiver.id(), outcome, n);
}

async fn receive(
    state: &AppState,
    kind: ReceiverKind,
    name: Option<&str>,
    headers: &HeaderMap,
    url_secret: Option<&str>,
    body: Body,
) -> ApiResult<Response> {
    let Some(receiver) = state.webhooks.get(kind, name) else {
        return Err(ApiError::NotFound(match name {
            None => format!(
                "the {kind} webhook receiver is not enabled; configure [webhooks.{kind}] (see docs/webhooks.md)"
            ),
            Some(n) => format!(
                "there is no {kind} webhook receiver named {n:?}; configure [webhooks.receivers.{n}] with kind = \"{kind}\" (see docs/webhooks.md)"
            ),
        }));
    };
    let id = receiver.id();
    let stats = &receiver.stats;
    let body = read_body(body, state.webhooks.body_limit)
        .await
        .inspect_err(|_| {
            add(receiver, &stats.malformed, "malformed", 1);
        })?;
    let passed = receiver
        .guard
        .check(
            headers,
            &body,
            url_secret,
            state.webhooks.timestamp_tolerance,
        )
        .map_err(|why| {
            add(receiver, &stats.unauthenticated, "unauthenticated", 1);
            tracing::warn!(receiver = %id, reason = %why, "webhook refused: not authenticated");
            ApiError::Unauthorized(why)
        })?;
    add(receiver, &stats.deliveries, "deliveries", 1);
    if let Some(delivery) = &passed.delivery_id {
        if !state
            .store
            .remember_delivery(&id, delivery, state.webhooks.replay_window)
            .await?
        {
            add(receiver, &stats.replays, "replays", 1);
            tracing::warn!(receiver = %id, delivery = %delivery, "webhook refused: replayed delivery id");
            return Err(ApiError::Conflict(format!(
                "delivery {delivery:?} was already received; a replayed webhook is refused (send each delivery with a new id)"
            )));
        }
    }
    let outcome = handle(state, receiver, &body, &passed).await;
    if let Err(e) = &outcome {
        match e {
            ApiError::BadRequest(_) | ApiError::Unprocessable(_) => {
                add(receiver, &stats.malformed, "malformed", 1)
            }
            ApiError::Unavailable(_) => add(receiver, &stats.unavailable, "unavailable", 1),
            _ => {}
        }
        // Not accepted, so the sender's retry must not count as a replay.
        if let Some(delivery) = &passed.delivery_id {
            if let Err(se) = state.store.forget_delivery(&id, delivery).await {
                tracing::warn!(receiver = %id, error = %se, "cannot forget a delivery that failed; its retry will be refused as a replay");
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
    passed: &Passed,
) -> ApiResult<Response> {
    let kind = receiver.kind;
    let id = receiver.id();
    let stats = &receiver.stats;
    let events = match kind {
        ReceiverKind::Distribution => distribution::parse(body),
        ReceiverKind::Harbor => harbor::parse(body),
        ReceiverKind::Acr => acr::parse(body),
        ReceiverKind::Generic => return generic_request(state, receiver, body, passed).await,
    }
    .map_err(|e| ApiError::BadRequest(e.0))?;
    let source = format!("webhook:{id}");
    let mut report = Report {
        receiver: id.clone(),
        ..Report::default()
    };
    // Read only when a delivery has something to sign: most events (the registry's own
    // pulls, blob pushes, signet's signature pushes) do not.
    let mut rules: Option<std::sync::Arc<Rules>> = None;
    add(receiver, &stats.events, "events", events.len() as u64);
    for event in events {
        let image = match filter::classify(&event, receiver).map_err(ApiError::Unprocessable)? {
            Verdict::Ignore(why) => {
                if why.is_foreign() {
                    add(receiver, &stats.foreign, "foreign", 1);
                    tracing::warn!(receiver = %id, event = %event.key, reason = why.label(), named_registry = ?event.registry, repository = %event.repository, "webhook event refused, not signed: {why}");
                } else {
                    add(receiver, &stats.ignored, "ignored", 1);
                    tracing::debug!(receiver = %id, event = %event.key, reason = why.label(), "webhook event not signed: {why}");
                }
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
            None => rules.insert(
                state
                    .webhooks
                    .rules
                    .compiled(state.store.list_signing_rules().await?),
            ),
        };
        let witnesses = rules.witnesses_for(&image);
        if witnesses.is_empty() {
            add(receiver, &stats.unmatched, "unmatched", 1);
            tracing::info!(receiver = %id, %image, "push matched no enabled signing rule; acknowledged, not signed");
            report.unmatched.push(image.to_string());
            continue;
        }
        for (witness, chosen) in witnesses {
            // A rule's own format (the witness's is read only when a rule sets one).
            let format = if chosen.sets_format() {
                match state.store.get_witness(&witness).await? {
                    Some(w) => Some(chosen.format(w.format)),
                    // Deleted since: the signer fails the job and says so.
                    None => None,
                }
            } else {
                None
            };
            let rule_names = chosen.rules;
            let request = SignRequest {
                image: image.to_string(),
                witness: witness.clone(),
                annotations: BTreeMap::new(),
                attestations: Vec::new(),
                sign: true,
                format,
            };
            let job_id = job_id(&id, &event.key, &image, &witness);
            match enqueue_as(state, job_id, request, &source, &source).await {
                Ok(job) => {
                    add(receiver, &stats.jobs, "jobs", 1);
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
                    tracing::warn!(receiver = %id, %image, %witness, %reason, rules = ?rule_names, "signing rule asked for a witness that cannot sign");
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
/// The image must be on the receiver's registry (when it has one) and inside its scope.
/// A request authenticated by a body-only MAC must name a digest: anyone who captured
/// it can send it again under a new delivery id, and a tag would then sign whatever it
/// points to by then. Its job id derives from the body, so such a replay finds the job
/// it already made instead of making another.
async fn generic_request(
    state: &AppState,
    receiver: &Receiver,
    body: &[u8],
    passed: &Passed,
) -> ApiResult<Response> {
    let id = receiver.id();
    let stats = &receiver.stats;
    let request = parse_sign_request(body).map_err(|e| ApiError::BadRequest(e.0))?;
    add(receiver, &stats.events, "events", 1);
    let image =
        ImageRef::parse(&request.image).map_err(|e| ApiError::BadRequest(format!("image: {e}")))?;
    let mut report = Report {
        receiver: id.clone(),
        ..Report::default()
    };
    if let Some(tag) = image.tag().filter(|t| is_attachment_tag(t)) {
        add(receiver, &stats.ignored, "ignored", 1);
        report.ignored.push(IgnoredEvent {
            event: request.image.clone(),
            reason: filter::Ignored::AttachmentTag(tag.to_owned()).to_string(),
        });
        return Ok(answer(report));
    }
    let refused = match (&receiver.registry, &receiver.scope) {
        (Some(bound), _) if !receiver.speaks_for(image.registry()) => Some(format!(
            "{} is on registry {}, but receiver {id} signs images on {bound} only; nothing was enqueued",
            request.image,
            image.registry()
        )),
        (_, Some(scope)) if !scope.allows(&image) => {
            Some(scope.refusal(&format!("receiver {id}"), &image))
        }
        _ => None,
    };
    if let Some(why) = refused {
        add(receiver, &stats.foreign, "foreign", 1);
        tracing::warn!(receiver = %id, image = %request.image, "webhook sign request refused: {why}");
        return Err(ApiError::Forbidden(why));
    }
    if passed.body_only && image.digest().is_none() {
        return Err(ApiError::Unprocessable(format!(
            "{} names no digest: a request signed with X-Hub-Signature-256 (a MAC of the body alone) must pin one (image@sha256:...), since a replay of it would sign whatever the tag points to then; send Standard Webhooks signatures (webhook-id, webhook-timestamp, webhook-signature) to sign by tag",
            request.image
        )));
    }
    // A signed delivery retried after a 503 keeps its id, and so its job; a body-only
    // one keeps its body.
    let job = match &passed.delivery_id {
        Some(_) if passed.body_only => {
            let key = format!("body:{}", hex::encode(Sha256::digest(body)));
            job_id(&id, &key, &image, &request.witness)
        }
        Some(d) => job_id(&id, d, &image, &request.witness),
        None => Uuid::now_v7(),
    };
    let source = format!("webhook:{id}");
    let job = enqueue_as(state, job, request, &source, &source).await?;
    add(receiver, &stats.jobs, "jobs", 1);
    report.jobs.push(JobRef {
        id: job.id,
        image: job.request.image.clone(),
        witness: job.request.witness.clone(),
        rules: Vec::new(),
        state: job.state.to_string(),
    });
    Ok(answer(report))
}

/// `receiver` is the receiver's id: its kind for the unnamed one, so job ids made before
/// named receivers existed stay the same.
fn job_id(receiver: &str, event: &str, image: &ImageRef, witness: &str) -> Uuid {
    let name = format!("{receiver}\n{event}\n{image}\n{witness}");
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
        let a = job_id("distribution", "distribution:e1", &image, "prod");
        assert_eq!(a, job_id("distribution", "distribution:e1", &image, "prod"));
        assert_ne!(a, job_id("distribution", "distribution:e2", &image, "prod"));
        assert_ne!(a, job_id("distribution", "distribution:e1", &image, "qa"));
        assert_ne!(a, job_id("harbor", "distribution:e1", &image, "prod"));
    }
}
