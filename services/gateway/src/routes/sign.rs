//! `POST /v1/sign`: a pipeline asks for a signature. The request is checked, written as
//! a job, and put on the bus; the answer comes only after the bus has it durably.
//! With `?wait=SECONDS` the answer waits for the signature itself.
//!
//! A waiter does not poll the store at a fixed rate. It listens to the store's job
//! changes, which carry every change made in this process (the signer of `signet up`,
//! or one embedded beside the gateway), and reads the job when its id goes by. For a
//! signer in another process it also reads the job after pauses that start at 50 ms
//! and double up to `gateway.wait_poll_max` (2 s): about 65 reads over a 120 s wait
//! instead of 6,000. That works the same on SQLite and PostgreSQL; PostgreSQL's
//! LISTEN/NOTIFY would wake a cross-process waiter sooner but has no SQLite
//! counterpart, and `sqlx`'s `Any` driver (one SQL text for both) does not expose it.
//! Each token may have `gateway.max_waiters_per_token` waits open at once; more are
//! answered 429 before anything is enqueued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use signet_bus::{Message, JOB_ID_HEADER};
use signet_core::{ImageRef, Job, JobState, Role, SignRequest, WitnessState};
use signet_store::StoreError;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult};
use crate::routes::jobs::JobView;
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignQuery {
    /// Seconds to wait for the signature; absent means answer as soon as enqueued.
    pub wait: Option<u64>,
}

/// The first pause between two reads of a waited-for job (then doubled each time).
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// The `?wait=` requests waiting now, per API token.
#[derive(Debug, Default)]
pub struct Waiters {
    by_token: Mutex<HashMap<Uuid, usize>>,
}

impl Waiters {
    /// A place for one more waiter of `token`, or `None` when it has `cap` already.
    fn enter(self: &Arc<Self>, token: Uuid, cap: usize) -> Option<WaitSlot> {
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(token).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(WaitSlot {
            waiters: Arc::clone(self),
            token,
        })
    }

    /// How many `?wait=` requests of `token` are waiting now.
    pub fn waiting(&self, token: Uuid) -> usize {
        let map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&token).copied().unwrap_or_default()
    }
}

/// One waiter's place; given back when the request ends, however it ends.
struct WaitSlot {
    waiters: Arc<Waiters>,
    token: Uuid,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut map = self
            .waiters
            .by_token
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.token);
            }
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/sign",
    tag = "signing",
    summary = "Ask for a signature",
    description = "The request becomes a job on the bus; the answer comes once the bus has it \
        durably. The same JSON on the `signet.jobs.sign` queue does the same. With `wait`, the \
        answer waits (up to `gateway.max_wait`) for the signature. Role: signer.",
    params(SignQuery),
    request_body = SignRequest,
    responses(
        (status = 202, description = "Enqueued (or still running when `wait` ran out)", body = JobView),
        (status = 200, description = "Signed, within `wait`", body = JobView),
        (status = 400, description = "Not a valid sign request or image reference", body = crate::error::ErrorBody),
        (status = 403, description = "The image is outside the token's scope; nothing was enqueued", body = crate::error::ErrorBody),
        (status = 404, description = "No such witness", body = crate::error::ErrorBody),
        (status = 409, description = "The witness is revoked", body = crate::error::ErrorBody),
        (status = 429, description = "With `wait`: the token already has `gateway.max_waiters_per_token` requests waiting; nothing was enqueued", body = crate::error::ErrorBody),
        (status = 422, description = "The job failed for good, within `wait`", body = super::bodies::SignFailed),
        (status = 503, description = "The queue did not take the job; try again", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn sign(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SignQuery>,
    ApiJson(request): ApiJson<SignRequest>,
) -> ApiResult<Response> {
    submit(state, caller, query, request).await
}

/// `POST /v1/attest`: one attestation, without a signature of the image.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// Image reference; a tag is resolved to a digest before signing.
    pub image: String,
    /// Witness name.
    pub witness: String,
    /// cosign's `--type` name (`slsaprovenance1`, `slsaprovenance`, `spdxjson`,
    /// `cyclonedx`, `vuln`, `openvex`, `link`, `custom`) or a predicate type URI.
    #[serde(rename = "type")]
    pub predicate_type: String,
    /// The predicate, a JSON object.
    #[schema(value_type = Object)]
    pub predicate: serde_json::Value,
}

#[utoipa::path(
    post,
    path = "/v1/attest",
    tag = "signing",
    summary = "Ask for an attestation",
    description = "The witness signs an in-toto Statement about the image digest (the \
        predicate given, of the type given) as a DSSE envelope, attached as `cosign attest` \
        attaches it (`sha256-<hex>.att`), so `cosign verify-attestation --type` accepts it. \
        The same job, dedup, KMS rate limit, audit and event path as a signature; \
        `POST /v1/sign` takes `attestations` to ask for both in one request. SLSA \
        provenance is checked against the fields its schema requires before anything is \
        enqueued. Role: signer.",
    params(SignQuery),
    request_body = AttestRequest,
    responses(
        (status = 202, description = "Enqueued (or still running when `wait` ran out)", body = JobView),
        (status = 200, description = "Attested, within `wait`", body = JobView),
        (status = 400, description = "Not a valid request, predicate type or predicate", body = crate::error::ErrorBody),
        (status = 403, description = "The image is outside the token's scope; nothing was enqueued", body = crate::error::ErrorBody),
        (status = 404, description = "No such witness", body = crate::error::ErrorBody),
        (status = 409, description = "The witness is revoked", body = crate::error::ErrorBody),
        (status = 422, description = "The job failed for good, within `wait`", body = super::bodies::SignFailed),
        (status = 503, description = "The queue did not take the job; try again", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn attest(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SignQuery>,
    ApiJson(req): ApiJson<AttestRequest>,
) -> ApiResult<Response> {
    let mut request = SignRequest::new(req.image, req.witness);
    request.sign = false;
    request.attestations = vec![signet_core::AttestationRequest {
        predicate_type: req.predicate_type,
        predicate: req.predicate,
    }];
    submit(state, caller, query, request).await
}

/// Checks, enqueues and (with `?wait=`) waits for a sign or attest request.
async fn submit(
    state: AppState,
    caller: Caller,
    query: SignQuery,
    request: SignRequest,
) -> ApiResult<Response> {
    caller.require(&[Role::Signer])?;
    let image =
        ImageRef::parse(&request.image).map_err(|e| ApiError::BadRequest(format!("image: {e}")))?;
    if let Err(refused) = caller.require_in_scope(&image) {
        tracing::warn!(token = %caller.name, image = %request.image, "sign request refused: outside the token's scope");
        return Err(refused);
    }
    // `wait=0` asks for no wait. A place among the token's waiters is taken before
    // anything is enqueued, so a 429 leaves nothing behind.
    let wait = query.wait.filter(|w| *w > 0);
    let slot = match wait {
        Some(_) => Some(
            state
                .waiters
                .enter(caller.token_id, state.settings.max_waiters_per_token)
                .ok_or_else(|| {
                    ApiError::TooManyRequests(format!(
                        "token {:?} already has {} requests waiting (gateway.max_waiters_per_token); nothing was enqueued: wait for one to finish, or ask without ?wait and read GET /v1/jobs/ID",
                        caller.name, state.settings.max_waiters_per_token
                    ))
                })?,
        ),
        None => None,
    };
    // Subscribed before the job exists, so no change to it can be missed.
    let mut changes = state.store.job_changes();
    let job = enqueue(&state, request, "api", &caller.actor()).await?;
    let Some(wait) = wait else {
        return Ok((StatusCode::ACCEPTED, Json(JobView::new(&job, None))).into_response());
    };
    let deadline =
        tokio::time::Instant::now() + crate::clamp_wait(&state.settings, Duration::from_secs(wait));
    let mut pause = FIRST_PAUSE;
    let answer = loop {
        let current = state
            .store
            .get_job(job.id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("job {} vanished", job.id)))?;
        match current.state {
            JobState::Succeeded => {
                let signature = crate::routes::jobs::signature_of(&state, &current).await?;
                break (StatusCode::OK, Json(JobView::new(&current, signature))).into_response();
            }
            JobState::Failed => {
                let detail = current
                    .error
                    .clone()
                    .unwrap_or_else(|| "signing failed".into());
                let body = serde_json::json!({
                    "error": "sign_failed",
                    "detail": detail,
                    "job": JobView::new(&current, None),
                });
                break (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
            }
            _ if tokio::time::Instant::now() >= deadline => {
                break (StatusCode::ACCEPTED, Json(JobView::new(&current, None))).into_response();
            }
            _ => {
                let next_read = (tokio::time::Instant::now() + pause).min(deadline);
                if !changed_before(&mut changes, job.id, next_read).await {
                    pause = (pause * 2).min(state.settings.wait_poll_max);
                }
            }
        }
    };
    drop(slot);
    Ok(answer)
}

/// Waits until job `id` changes in this process (true), or until `until` (false). A
/// listener that fell behind cannot tell whether it missed `id`, so it says "changed".
async fn changed_before(
    changes: &mut tokio::sync::broadcast::Receiver<Uuid>,
    id: Uuid,
    until: tokio::time::Instant,
) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(changed) if changed == id => return true,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => {
                    tokio::time::sleep_until(until).await;
                    return false;
                }
            },
            () = tokio::time::sleep_until(until) => return false,
        }
    }
}

/// Checks a sign request, records its job and enqueues it. Shared by the sign API and
/// the webhook receivers: both answer 2xx only after this returns.
pub async fn enqueue(
    state: &AppState,
    request: SignRequest,
    source: &str,
    actor: &str,
) -> ApiResult<Job> {
    enqueue_as(state, Uuid::now_v7(), request, source, actor).await
}

/// [`enqueue`] under a job id the caller derived from what it was asked (a webhook
/// event), so that being asked again (a registry retrying a delivery it got no 2xx for)
/// does not create a second job. A job that may never have reached the bus (created, but
/// no worker has taken it) is published again; one a worker has taken or finished is
/// returned as it is.
pub async fn enqueue_as(
    state: &AppState,
    id: Uuid,
    request: SignRequest,
    source: &str,
    actor: &str,
) -> ApiResult<Job> {
    ImageRef::parse(&request.image).map_err(|e| ApiError::BadRequest(format!("image: {e}")))?;
    check_attestations(&request)?;
    let witness = state
        .store
        .get_witness(&request.witness)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "witness {:?} does not exist; list witnesses with `signet witness list`",
                request.witness
            ))
        })?;
    if witness.state == WitnessState::Revoked {
        return Err(ApiError::Conflict(format!(
            "witness {:?} is revoked and signs nothing",
            witness.name
        )));
    }
    if witness.is_verify_only() {
        return Err(ApiError::Unprocessable(format!(
            "witness {:?} is verify-only: signet holds only its public key and verifies its signatures, made elsewhere; sign with a witness bound to a KMS key",
            witness.name
        )));
    }
    let now = Utc::now();
    let job = Job {
        id,
        request,
        source: source.to_owned(),
        state: JobState::Queued,
        attempts: 0,
        digest: None,
        signature_id: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    let job = match state.store.create_job(&job).await {
        Ok(()) => job,
        Err(StoreError::Conflict(_)) => {
            let mut existing = state
                .store
                .get_job(id)
                .await?
                .ok_or_else(|| ApiError::Internal(format!("job {id} vanished")))?;
            // Queued or failed without an attempt: maybe never published (a crash, or a
            // bus that refused it). Anything else is in a worker's hands or done.
            let unpublished = existing.attempts == 0
                && matches!(existing.state, JobState::Queued | JobState::Failed);
            if !unpublished {
                tracing::debug!(job_id = %id, state = %existing.state, "sign job already enqueued");
                return Ok(existing);
            }
            if existing.state == JobState::Failed {
                existing.state = JobState::Queued;
                existing.error = None;
                existing.updated_at = Utc::now();
                state.store.update_job(&existing).await?;
            }
            existing
        }
        Err(e) => return Err(e.into()),
    };
    publish(state, job, actor).await
}

/// Refuses, before anything is enqueued, a request that asks for nothing, more
/// attestations than a job carries, or an attestation that could never be signed (an
/// unknown predicate type, a predicate that is not an object, SLSA provenance without the
/// fields its schema requires); every problem at once.
pub(crate) fn check_attestations(request: &SignRequest) -> ApiResult<()> {
    if !request.sign && request.attestations.is_empty() {
        return Err(ApiError::BadRequest(
            "the request asks for nothing: sign is false and there are no attestations".into(),
        ));
    }
    if request.attestations.len() > MAX_ATTESTATIONS {
        return Err(ApiError::BadRequest(format!(
            "attestations: at most {MAX_ATTESTATIONS} per request, not {}",
            request.attestations.len()
        )));
    }
    let problems: Vec<String> = request
        .attestations
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            signet_core::attestation::predicate_type(&a.predicate_type)
                .and_then(|t| signet_core::attestation::check_predicate(&t, &a.predicate))
                .err()
                .map(|e| format!("attestations[{i}]: {e}"))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(problems.join("; ")))
    }
}

/// Attestations one request may carry: each is a KMS call and a registry write.
const MAX_ATTESTATIONS: usize = 16;

/// The bus message of `job`: its request as the body, its id, and the trace context of
/// the request that enqueues it, so the signer's work joins the caller's trace.
pub(crate) fn job_message(job: &Job) -> ApiResult<Message> {
    let body = serde_json::to_vec(&job.request).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut message = Message {
        body,
        ..Default::default()
    };
    message
        .headers
        .insert(JOB_ID_HEADER.into(), job.id.to_string());
    signet_runtime::telemetry::inject(&tracing::Span::current(), &mut message.headers);
    Ok(message)
}

async fn publish(state: &AppState, mut job: Job, actor: &str) -> ApiResult<Job> {
    let message = job_message(&job)?;
    if let Err(e) = state.bus.jobs.publish(message).await {
        // Not enqueued means not accepted: the job is closed so nobody waits on it, and
        // the caller (a registry, a pipeline) is told to try again.
        job.state = JobState::Failed;
        job.error = Some(format!("not enqueued: {e}"));
        job.updated_at = Utc::now();
        if let Err(se) = state.store.update_job(&job).await {
            tracing::warn!(error = %se, job_id = %job.id, "cannot close a job that was not enqueued");
        }
        return Err(ApiError::Unavailable(format!(
            "the job queue did not accept the job ({e}); try again"
        )));
    }
    tracing::info!(job_id = %job.id, image = %job.request.image, witness = %job.request.witness, %actor, "sign job enqueued");
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast;

    /// Bounds a call that must return at once; it fails only if the call hangs.
    async fn promptly<F: std::future::Future<Output = bool>>(f: F) -> bool {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("returned without waiting for its deadline")
    }

    #[tokio::test]
    async fn a_waiter_wakes_for_its_job_not_for_others() {
        let (tx, mut rx) = broadcast::channel(8);
        let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
        let in_an_hour = tokio::time::Instant::now() + Duration::from_secs(3600);
        tx.send(other).expect("send");
        tx.send(mine).expect("send");
        assert!(promptly(changed_before(&mut rx, mine, in_an_hour)).await);
        // Nothing more for it: the pause ends at its deadline.
        let soon = tokio::time::Instant::now() + Duration::from_millis(10);
        tx.send(other).expect("send");
        assert!(!changed_before(&mut rx, mine, soon).await);
    }

    #[tokio::test]
    async fn a_waiter_that_fell_behind_reads_again() {
        let (tx, mut rx) = broadcast::channel(1);
        tx.send(Uuid::now_v7()).expect("send");
        tx.send(Uuid::now_v7()).expect("send");
        let in_an_hour = tokio::time::Instant::now() + Duration::from_secs(3600);
        assert!(promptly(changed_before(&mut rx, Uuid::now_v7(), in_an_hour)).await);
    }

    #[test]
    fn waiters_are_capped_per_token_and_give_their_place_back() {
        let waiters = Arc::new(Waiters::default());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = waiters.enter(a, 2).expect("first");
        let second = waiters.enter(a, 2).expect("second");
        assert!(waiters.enter(a, 2).is_none(), "the third of one token");
        let other = waiters.enter(b, 2).expect("another token");
        assert_eq!((waiters.waiting(a), waiters.waiting(b)), (2, 1));
        drop(first);
        assert_eq!(waiters.waiting(a), 1);
        let again = waiters.enter(a, 2).expect("a place was given back");
        drop((second, again, other));
        assert_eq!((waiters.waiting(a), waiters.waiting(b)), (0, 0));
    }
}
