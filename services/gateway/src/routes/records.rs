//! Signature records (and their revocation) and the audit log.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use signet_core::{ImageRef, SignatureRecord};
use signet_store::{AuditFilter, SignatureFilter};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignaturesQuery {
    /// An image reference; a tag is resolved to its current digest.
    pub image: Option<String>,
    pub witness: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/signatures",
    tag = "records",
    summary = "List signature records",
    description = "Newest first; at most `limit` (default 100, at most 1000). Role: admin.",
    params(SignaturesQuery),
    responses(
        (status = 200, description = "The records", body = super::bodies::SignatureList),
        (status = 400, description = "The image is not a valid reference", body = ErrorBody),
        (status = 404, description = "The image's tag cannot be resolved", body = ErrorBody),
        (status = 503, description = "The registry cannot be asked now", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn signatures(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SignaturesQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let mut filter = SignatureFilter {
        witness: q.witness,
        limit: q.limit.unwrap_or(100).min(1000),
        ..Default::default()
    };
    if let Some(image) = q.image {
        let image =
            ImageRef::parse(&image).map_err(|e| ApiError::BadRequest(format!("image: {e}")))?;
        filter.repository = Some(image.repository_ref());
        filter.digest = Some(match image.digest() {
            Some(d) => d.clone(),
            None => state.registry.resolve(&image).await.map_err(|e| {
                if e.retryable() {
                    ApiError::Unavailable(format!("cannot resolve {image}: {e}"))
                } else {
                    ApiError::NotFound(format!("cannot resolve {image}: {e}"))
                }
            })?,
        });
    }
    let records = state.store.list_signatures(&filter).await?;
    Ok(Json(serde_json::json!({ "signatures": records })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttestationsQuery {
    /// Only attestations about this digest (`sha256:...`).
    pub digest: Option<String>,
    pub limit: Option<u32>,
}

/// An attestation record without its statement and signature (an SBOM may be large):
/// what was attested, about what, by whom, and where it lives.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AttestationSummary {
    pub id: Uuid,
    pub repository: String,
    pub digest: signet_core::Digest,
    pub witness: String,
    pub predicate_type: String,
    pub key_fingerprint: String,
    /// `registry/repository:sha256-<hex>.att`.
    pub artifact: String,
    pub job_id: Option<Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[utoipa::path(
    get,
    path = "/v1/attestations",
    tag = "records",
    summary = "List attestation records",
    description = "The attestations signet signed, newest first; at most `limit` (default \
        100, at most 1000). The statements themselves are in the registry (`artifact`), \
        where `cosign verify-attestation` reads them. Role: admin.",
    params(AttestationsQuery),
    responses(
        (status = 200, description = "`{\"attestations\": [AttestationSummary]}`", body = Object),
        (status = 400, description = "Not a digest", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn attestations(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AttestationsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let digest = q
        .digest
        .map(|d| {
            signet_core::Digest::parse(&d).map_err(|e| ApiError::BadRequest(format!("digest: {e}")))
        })
        .transpose()?;
    let records = state
        .store
        .list_attestations(digest.as_ref(), q.limit.unwrap_or(100).min(1000))
        .await?;
    let summaries: Vec<AttestationSummary> = records
        .into_iter()
        .map(|r| AttestationSummary {
            id: r.id,
            repository: r.repository,
            digest: r.digest,
            witness: r.witness,
            predicate_type: r.predicate_type,
            key_fingerprint: r.key_fingerprint,
            artifact: r.artifact,
            job_id: r.job_id,
            created_at: r.created_at,
        })
        .collect();
    Ok(Json(serde_json::json!({ "attestations": summaries })))
}

/// Why a signature is revoked; kept on the record, in the audit log and in trust bundles.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSignature {
    pub reason: String,
}

#[utoipa::path(
    post,
    path = "/v1/signatures/{id}/revoke",
    tag = "records",
    summary = "Revoke one signature",
    description = "Verifiers refuse the signature from then on (the event reaches them at once, \
                   the trust bundle after a restart), although its layer stays in the registry; \
                   signet does not sign the image again with that witness. To stop trusting \
                   everything a key signed, revoke the key version instead. Role: admin.",
    params(("id" = Uuid, Path, description = "The signature record's id")),
    request_body = RevokeSignature,
    responses(
        (status = 200, description = "The record, revoked", body = SignatureRecord),
        (status = 400, description = "No reason given, or the id is not a UUID", body = ErrorBody),
        (status = 404, description = "No such signature", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RevokeSignature>,
) -> ApiResult<Json<SignatureRecord>> {
    caller.require_admin()?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::BadRequest(format!("signature id {id:?} is not a UUID")))?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest(
            "reason: say why the signature is revoked; it is kept with the revocation".into(),
        ));
    }
    let record = state
        .store
        .revoke_signature(id, &caller.actor(), reason)
        .await?;
    state.outbox_kick.notify_one();
    tracing::warn!(signature = %id, image = %format!("{}@{}", record.repository, record.digest), witness = %record.witness, actor = %caller.actor(), "signature revoked");
    Ok(Json(record))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries whose action starts with this (`witness.`, `signature.publish`).
    pub action: Option<String>,
    pub subject: Option<String>,
    /// Only entries after this id, for paging forward.
    pub since_id: Option<i64>,
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "records",
    summary = "Read the audit log",
    description = "Newest first, or oldest first after `since_id` (paging forward). Role: admin.",
    params(AuditQuery),
    responses((status = 200, description = "The entries", body = super::bodies::AuditLog)),
    security(("bearer" = [])),
)]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let entries = state
        .store
        .list_audit(&AuditFilter {
            action_prefix: q.action,
            subject: q.subject,
            // Paging forward from an id reads oldest first; otherwise newest first.
            newest_first: q.since_id.is_none(),
            since_id: q.since_id,
            limit: q.limit.unwrap_or(100).min(1000),
        })
        .await?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}
