//! Read-only views: signature records and the audit log.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use signet_core::ImageRef;
use signet_store::{AuditFilter, SignatureFilter};

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery, ApiResult, ErrorBody};
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
    caller.require_admin()?;
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
    caller.require_admin()?;
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
