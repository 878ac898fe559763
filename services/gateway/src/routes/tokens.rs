//! API tokens: an admin mints tokens for pipelines (`signer`) and clusters (`verifier`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use signet_core::{ApiToken, Role};

use secrecy::ExposeSecret;

use crate::auth::{issue_scoped, Caller};
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// `admin`, `signer` or `verifier`.
    pub role: String,
    /// Signer tokens only: globs over `registry/repository` the token may sign, with `*`
    /// within one path component and `**` across (`registry.example.com/team/**`).
    /// Absent or empty: any repository.
    #[serde(default)]
    pub scope: Vec<String>,
    /// Verifier tokens only, and required for them: the one cluster whose trust bundle
    /// the token reads and whose admission decisions it reports.
    #[serde(default)]
    pub cluster: Option<String>,
    /// When the token stops working (RFC 3339); unset: never.
    #[serde(default)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    summary = "Create an API token",
    description = "The secret is in the answer, once; only its hash is stored. A verifier \
        token names its cluster; any token may carry an expiry. Role: admin.",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created", body = super::bodies::IssuedToken),
        (status = 400, description = "Bad name, role, cluster, expiry or scope", body = ErrorBody),
        (status = 409, description = "A token of that name exists", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    caller.require_admin()?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "role {:?} is not a role; use admin, signer, verifier or viewer",
            req.role
        ))
    })?;
    let issued = issue_scoped(
        &state.store,
        &req.name,
        role,
        req.cluster.as_deref(),
        req.expires_at,
        &req.scope,
        &caller.actor(),
    )
    .await?;
    tracing::info!(token = %req.name, %role, cluster = ?req.cluster, expires_at = ?req.expires_at, scope = ?req.scope, by = %caller.name, "token created");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": issued.token.id,
            "name": issued.token.name,
            "role": issued.token.role,
            "created_at": issued.token.created_at,
            "scope": issued.token.scope,
            "cluster": issued.token.cluster,
            "expires_at": issued.token.expires_at,
            // Shown once; only its hash is stored.
            "token": issued.secret.expose_secret(),
        })),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    summary = "List API tokens",
    description = "Names, roles and state; never secrets. Role: admin.",
    responses((status = 200, description = "The tokens", body = super::bodies::TokenList)),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let tokens = state.store.list_tokens().await?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

#[utoipa::path(
    delete,
    path = "/v1/tokens/{name}",
    tag = "tokens",
    summary = "Revoke an API token",
    description = "A caller cannot revoke the token it is using. Role: admin.",
    params(("name" = String, Path, description = "Token name")),
    responses(
        (status = 200, description = "The revoked token", body = ApiToken),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 409, description = "The token making the request", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// Revokes a token by name. A caller cannot revoke the token it is using, so an admin
/// cannot lock everyone out by accident.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    if name == caller.name {
        return Err(ApiError::Conflict(format!(
            "token {name:?} is the one making this request; revoke it with another admin token"
        )));
    }
    let audit =
        signet_core::NewAudit::new(caller.actor(), "token.revoke", &name, serde_json::json!({}));
    let token = state.store.revoke_token(&name, &audit).await?;
    tracing::warn!(token = %name, by = %caller.name, "token revoked");
    Ok(Json(
        serde_json::to_value(token).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}
