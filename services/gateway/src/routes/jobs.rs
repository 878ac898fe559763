//! Jobs: the outcome of each sign request, and the dead letters an operator replays.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use signet_core::{Job, JobState, NewAudit, Role, SignatureRecord};
use signet_store::SignatureFilter;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ApiResult};
use crate::AppState;

/// A job as the API shows it, with its signature once there is one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView<'a> {
    #[serde(flatten)]
    pub job: &'a Job,
    pub signature: Option<SignatureRecord>,
}

impl<'a> JobView<'a> {
    pub fn new(job: &'a Job, signature: Option<SignatureRecord>) -> Self {
        Self { job, signature }
    }
}

/// The signature record a succeeded job produced.
pub async fn signature_of(state: &AppState, job: &Job) -> ApiResult<Option<SignatureRecord>> {
    let Some(id) = job.signature_id else {
        return Ok(None);
    };
    let Some(digest) = &job.digest else {
        return Ok(None);
    };
    let found = state
        .store
        .list_signatures(&SignatureFilter {
            digest: Some(digest.clone()),
            witness: Some(job.request.witness.clone()),
            ..Default::default()
        })
        .await?;
    Ok(found.into_iter().find(|s| s.id == id))
}

fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::try_parse(id).map_err(|_| ApiError::BadRequest(format!("job id {id:?} is not a UUID")))
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "signing",
    summary = "Show a job",
    description = "With its signature record once it succeeded. Role: signer; a scoped signer \
        token sees only jobs for images inside its scope (others answer 404).",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "Not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(&[Role::Signer, Role::Viewer])?;
    let id = parse_id(&id)?;
    let job = state
        .store
        .get_job(id)
        .await?
        .filter(|job| caller.sees(&job.request.image))
        .ok_or_else(|| ApiError::NotFound(format!("job {id} does not exist")))?;
    let signature = signature_of(&state, &job).await?;
    serde_json::to_value(JobView::new(&job, signature))
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "signing",
    summary = "List jobs",
    description = "Newest first; at most `limit` (default 100, at most 1000). Role: admin.",
    params(ListQuery),
    responses(
        (status = 200, description = "The jobs", body = super::bodies::JobList),
        (status = 400, description = "Unknown state", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let filter = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state {s:?} is not a job state; use queued, running, succeeded or failed"
            ))
        })?),
    };
    let jobs = state
        .store
        .list_jobs(filter, q.limit.unwrap_or(100).min(1000))
        .await?;
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/retry",
    tag = "signing",
    summary = "Retry a failed job",
    description = "The same job id goes back on the queue with a fresh attempt count. Role: admin.",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 202, description = "Queued again", body = JobView),
        (status = 400, description = "Not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
        (status = 409, description = "The job has not failed", body = crate::error::ErrorBody),
        (status = 503, description = "The queue did not take it; try again", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// Replays a failed job: the same job id goes back on the queue with a fresh attempt
/// count.
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    caller.require_admin()?;
    let id = parse_id(&id)?;
    let mut job = state
        .store
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id} does not exist")))?;
    if job.state != JobState::Failed {
        return Err(ApiError::Conflict(format!(
            "job {id} is {}; only failed jobs can be retried",
            job.state
        )));
    }
    job.state = JobState::Queued;
    job.attempts = 0;
    job.error = None;
    job.updated_at = Utc::now();
    state.store.update_job(&job).await?;
    let message = crate::routes::sign::job_message(&job)?;
    if let Err(e) = state.bus.jobs.publish(message).await {
        job.state = JobState::Failed;
        job.error = Some(format!("retry not enqueued: {e}"));
        state.store.update_job(&job).await?;
        return Err(ApiError::Unavailable(format!(
            "the job queue did not accept the retry ({e}); try again"
        )));
    }
    state
        .store
        .append_audit(&NewAudit::new(
            caller.actor(),
            "job.retry",
            id.to_string(),
            serde_json::json!({}),
        ))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            serde_json::to_value(JobView::new(&job, None))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        ),
    ))
}
