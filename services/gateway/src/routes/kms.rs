//! `GET /v1/kms/keys`: the keys a new witness could use, for the console's key picker
//! and `curl`.

use axum::extract::State;
use axum::Json;
use signet_kms::discover::Discovery;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::AppState;

#[utoipa::path(
    get,
    path = "/v1/kms/keys",
    tag = "witnesses",
    summary = "List the KMS keys witnesses could use",
    description = "What each configured KMS provider can see (local keys when allowed, \
        Vault/OpenBao transit when `VAULT_ADDR` is set, AWS KMS and Alibaba KMS when their \
        credentials and region are): every key, with `usable` false and the `reason` when it \
        is not an RSA (2048 bits or more) sign/verify key that is enabled. `uri` is what \
        `POST /v1/witnesses` takes as `kms_key`. A provider that failed to list has its \
        `error`; the others still list. The control plane's own key is never offered. \
        Each call asks the providers (one describe per key). Role: admin or viewer.",
    responses((status = 200, description = "What the providers see", body = Discovery)),
    security(("bearer" = [])),
)]
pub async fn keys(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Discovery>> {
    caller.require_read()?;
    let mut found = state.kms.discover().await;
    // The key that seals trust bundles and events must never become a witness's.
    found.keys.retain(|k| k.uri != state.control_key.uri());
    Ok(Json(found))
}
