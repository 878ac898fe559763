//! API tokens: an admin mints tokens for pipelines (`signer`) and clusters (`verifier`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use signet_core::Role;

use crate::auth::{issue, Caller};
use crate::error::{ApiError, ApiJson, ApiResult};
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// `admin`, `signer` or `verifier`.
    pub role: String,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    caller.require_admin()?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "role {:?} is not a role; use admin, signer or verifier",
            req.role
        ))
    })?;
    let issued = issue(&state.store, &req.name, role, &caller.actor()).await?;
    tracing::info!(token = %req.name, %role, by = %caller.name, "token created");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": issued.token.id,
            "name": issued.token.name,
            "role": issued.token.role,
            "created_at": issued.token.created_at,
            // Shown once; only its hash is stored.
            "token": issued.secret,
        })),
    ))
}
