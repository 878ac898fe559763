//! Witnesses: named signing identities bound to a KMS key. Creating one asks the KMS
//! for the key, checks it is an asymmetric RSA signing key, and pins every version's
//! public key by fingerprint.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use signet_core::{
    validate_name, KeyVersion, KeyVersionState, NewAudit, SignatureAlgorithm, Witness, WitnessState,
};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWitness {
    pub name: String,
    pub kms_key: String,
    #[serde(default)]
    pub description: String,
    /// `RSA_PKCS1_SHA256` (default, what cosign verifiers expect) or `RSA_PSS_SHA256`.
    pub algorithm: Option<String>,
}

/// A witness as the API shows it: the record plus its primary key, for convenience.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WitnessView<'a> {
    #[serde(flatten)]
    pub witness: &'a Witness,
    /// The primary key version's fingerprint; none once no version is active.
    pub fingerprint: Option<&'a str>,
    /// The primary key version's public key (PEM); none once no version is active.
    pub public_key: Option<String>,
}

impl<'a> WitnessView<'a> {
    pub fn new(witness: &'a Witness) -> Self {
        let primary = witness.primary();
        Self {
            witness,
            fingerprint: primary.map(|v| v.fingerprint.as_str()),
            public_key: primary.map(|v| v.public_key.to_pem()),
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/witnesses",
    tag = "witnesses",
    summary = "Create a witness",
    description = "Asks the KMS for the key, checks it is an asymmetric RSA signing key, and \
        pins every version's public key. Role: admin.",
    request_body = CreateWitness,
    responses(
        (status = 201, description = "Created", body = WitnessView),
        (status = 400, description = "Bad name, KMS key URI or algorithm", body = ErrorBody),
        (status = 404, description = "The KMS has no such key", body = ErrorBody),
        (status = 409, description = "A witness of that name exists", body = ErrorBody),
        (status = 422, description = "Not an asymmetric signing key, or no enabled version", body = ErrorBody),
        (status = 502, description = "The KMS refused or failed", body = ErrorBody),
        (status = 503, description = "The KMS or the store is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateWitness>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    validate_name("witness", &req.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let provider = state.kms.open(&req.kms_key)?;
    let description = provider.describe().await?;
    let algorithm = match &req.algorithm {
        Some(a) => SignatureAlgorithm::parse(a).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "algorithm {a:?} is not supported; use RSA_PKCS1_SHA256 or RSA_PSS_SHA256"
            ))
        })?,
        None => description.algorithm,
    };
    if description.versions.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "KMS key {} has no enabled versions to sign with",
            req.kms_key
        )));
    }
    let now = Utc::now();
    let key_versions = description
        .versions
        .iter()
        .map(|v| KeyVersion {
            version: v.version.clone(),
            fingerprint: v.public_key.fingerprint(),
            public_key: v.public_key.clone(),
            primary: v.version == description.primary_version,
            state: KeyVersionState::Active,
            created_at: now,
        })
        .collect();
    let witness = Witness {
        name: req.name.clone(),
        kms_key: req.kms_key.clone(),
        algorithm,
        description: req.description.clone(),
        state: WitnessState::Active,
        key_versions,
        created_at: now,
    };
    let audit = NewAudit::new(
        caller.actor(),
        "witness.create",
        &witness.name,
        serde_json::json!({
            "kms_key": witness.kms_key,
            "algorithm": witness.algorithm,
            "fingerprint": witness.primary().map(|v| v.fingerprint.clone()),
        }),
    );
    // The store writes the witness.created event in the same transaction.
    state.store.create_witness(&witness, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::info!(witness = %witness.name, kms_key = %witness.kms_key, "witness created");
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::to_value(WitnessView::new(&witness))
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        ),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/witnesses",
    tag = "witnesses",
    summary = "List witnesses",
    description = "Role: admin.",
    responses((status = 200, description = "Every witness, by name", body = super::bodies::WitnessList)),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let witnesses = state.store.list_witnesses().await?;
    let views: Vec<_> = witnesses.iter().map(WitnessView::new).collect();
    Ok(Json(serde_json::json!({ "witnesses": views })))
}

async fn load(state: &AppState, name: &str) -> ApiResult<Witness> {
    state
        .store
        .get_witness(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("witness {name:?} does not exist")))
}

#[utoipa::path(
    get,
    path = "/v1/witnesses/{name}",
    tag = "witnesses",
    summary = "Show a witness",
    description = "Role: verifier.",
    params(("name" = String, Path, description = "Witness name")),
    responses(
        (status = 200, description = "The witness", body = WitnessView),
        (status = 404, description = "No such witness", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(&[signet_core::Role::Verifier])?;
    let witness = load(&state, &name).await?;
    serde_json::to_value(WitnessView::new(&witness))
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[utoipa::path(
    get,
    path = "/v1/witnesses/{name}/public-key",
    tag = "witnesses",
    summary = "The witness's primary public key as PEM",
    description = "What `cosign verify --key` reads. Role: verifier or signer.",
    params(("name" = String, Path, description = "Witness name")),
    responses(
        (status = 200, description = "SubjectPublicKeyInfo PEM", body = String, content_type = "application/x-pem-file"),
        (status = 404, description = "No such witness, or no active primary key version", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// The primary public key as PEM: what `cosign verify --key` reads.
pub async fn public_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&[signet_core::Role::Verifier, signet_core::Role::Signer])?;
    let witness = load(&state, &name).await?;
    let primary = witness.primary().ok_or_else(|| {
        ApiError::NotFound(format!(
            "witness {name:?} has no active primary key version"
        ))
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        primary.public_key.to_pem(),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWitness {
    /// Rotate to another KMS key (for KMSs that cannot add versions to a key, such as
    /// AWS KMS asymmetric keys). Without it, the KMS creates a new version of the key.
    pub kms_key: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/witnesses/{name}/rotate",
    tag = "witnesses",
    summary = "Rotate a witness's key",
    description = "Gives the witness a new primary key version: a new version of its KMS key, \
        or another KMS key when the body names one. Older versions stay valid for \
        verification until revoked. The body is optional. Role: admin.",
    params(("name" = String, Path, description = "Witness name")),
    request_body(content = Option<RotateWitness>, description = "Optional: rotate to another KMS key"),
    responses(
        (status = 200, description = "The witness after rotation", body = WitnessView),
        (status = 400, description = "The body is not valid", body = ErrorBody),
        (status = 404, description = "No such witness", body = ErrorBody),
        (status = 409, description = "The witness is revoked, or the KMS made no new version", body = ErrorBody),
        (status = 422, description = "The KMS reports no primary version", body = ErrorBody),
        (status = 502, description = "The KMS refused or failed", body = ErrorBody),
        (status = 503, description = "The KMS or the store is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// Gives the witness a new primary key version. Older versions stay valid for
/// verification until revoked.
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    // The body is optional: an empty POST asks the KMS for a new version.
    let req: RotateWitness = if body.iter().all(u8::is_ascii_whitespace) {
        RotateWitness::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("request body is not valid: {e}")))?
    };
    let mut witness = load(&state, &name).await?;
    if witness.state == WitnessState::Revoked {
        return Err(ApiError::Conflict(format!(
            "witness {name:?} is revoked; create a new witness instead"
        )));
    }
    let (uri, new_version) = match &req.kms_key {
        Some(uri) => {
            let description = state.kms.open(uri)?.describe().await?;
            (uri.clone(), description)
        }
        None => {
            let provider = state.kms.open(&witness.kms_key)?;
            provider.rotate().await?;
            (witness.kms_key.clone(), provider.describe().await?)
        }
    };
    let primary = new_version.primary().ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "KMS key {uri} reports no primary version after rotation"
        ))
    })?;
    if witness
        .key_versions
        .iter()
        .any(|v| v.version == primary.version)
    {
        return Err(ApiError::Conflict(format!(
            "witness {name:?} already has key version {}; the KMS did not create a new one",
            primary.version
        )));
    }
    for v in &mut witness.key_versions {
        v.primary = false;
    }
    let fingerprint = primary.public_key.fingerprint();
    witness.key_versions.push(KeyVersion {
        version: primary.version.clone(),
        fingerprint: fingerprint.clone(),
        public_key: primary.public_key.clone(),
        primary: true,
        state: KeyVersionState::Active,
        created_at: Utc::now(),
    });
    witness.kms_key = uri;
    let audit = NewAudit::new(
        caller.actor(),
        "witness.rotate",
        &name,
        serde_json::json!({"version": primary.version, "fingerprint": fingerprint, "kms_key": witness.kms_key}),
    );
    // The store emits witness.rotated in the same transaction.
    state.store.update_witness(&witness, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::info!(witness = %name, version = %primary.version, "witness rotated");
    view(&witness)
}

#[utoipa::path(
    post,
    path = "/v1/witnesses/{name}/versions/{version}/revoke",
    tag = "witnesses",
    summary = "Revoke one key version",
    description = "Signatures made with it stop being accepted. The primary version cannot be \
        revoked; rotate first. Role: admin.",
    params(("name" = String, Path, description = "Witness name"), ("version" = String, Path, description = "The KMS's key version id")),
    responses(
        (status = 200, description = "The witness after revocation", body = WitnessView),
        (status = 404, description = "No such witness or key version", body = ErrorBody),
        (status = 409, description = "Already revoked, or the primary version", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// Revokes one key version: signatures made with it stop being accepted.
pub async fn revoke_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let mut witness = load(&state, &name).await?;
    let target = witness
        .key_versions
        .iter_mut()
        .find(|v| v.version == version)
        .ok_or_else(|| {
            ApiError::NotFound(format!("witness {name:?} has no key version {version:?}"))
        })?;
    if target.state == KeyVersionState::Revoked {
        return Err(ApiError::Conflict(format!(
            "key version {version:?} of witness {name:?} is already revoked"
        )));
    }
    if target.primary {
        return Err(ApiError::Conflict(format!(
            "key version {version:?} is witness {name:?}'s primary; rotate first (`signet witness rotate {name}`), or revoke the whole witness"
        )));
    }
    target.state = KeyVersionState::Revoked;
    let fingerprint = target.fingerprint.clone();
    let audit = NewAudit::new(
        caller.actor(),
        "witness.revoke_version",
        &name,
        serde_json::json!({"version": version, "fingerprint": fingerprint}),
    );
    state.store.update_witness(&witness, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::warn!(witness = %name, %version, "witness key version revoked");
    view(&witness)
}

#[utoipa::path(
    post,
    path = "/v1/witnesses/{name}/revoke",
    tag = "witnesses",
    summary = "Revoke a witness",
    description = "It signs nothing more, and none of its signatures is accepted. Role: admin.",
    params(("name" = String, Path, description = "Witness name")),
    responses(
        (status = 200, description = "The revoked witness", body = WitnessView),
        (status = 404, description = "No such witness", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// Revokes the witness: it signs nothing more, and none of its signatures is accepted.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let mut witness = load(&state, &name).await?;
    if witness.state == WitnessState::Revoked {
        return Err(ApiError::Conflict(format!(
            "witness {name:?} is already revoked"
        )));
    }
    witness.state = WitnessState::Revoked;
    let audit = NewAudit::new(
        caller.actor(),
        "witness.revoke",
        &name,
        serde_json::json!({}),
    );
    state.store.update_witness(&witness, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::warn!(witness = %name, "witness revoked");
    view(&witness)
}

fn view(witness: &Witness) -> ApiResult<Json<serde_json::Value>> {
    serde_json::to_value(WitnessView::new(witness))
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
