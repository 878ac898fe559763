//! Witnesses: named signing identities bound to a KMS key. Creating one asks the KMS
//! for the key, checks it is an asymmetric RSA signing key, and pins every version's
//! public key by fingerprint.

use axum::extract::{Path, Query, State};
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
    /// The KMS key signet signs with. Give either this or `public_key`.
    pub kms_key: Option<String>,
    /// A verify-only witness: a PEM public key (RSA of 2048 bits or more, or ECDSA P-256
    /// as `cosign generate-key-pair` writes) whose signatures are made outside signet.
    /// signet verifies them, counts them toward N-of-M and never signs with it.
    pub public_key: Option<String>,
    #[serde(default)]
    pub description: String,
    /// `RSA_PKCS1_SHA256` (default, what cosign verifiers expect) or `RSA_PSS_SHA256`;
    /// `ECDSA_P256_SHA256` for (and only for) an ECDSA public key.
    pub algorithm: Option<String>,
    /// How signatures are attached: `cosign` (the `.sig` tag, default), `bundle` (a
    /// Sigstore bundle as an OCI 1.1 referrer, what cosign 3 reads by default) or `both`.
    pub format: Option<String>,
}

/// The key versions and algorithm of a verify-only witness created from `pem`.
fn verify_only_key(
    pem: &str,
    algorithm: Option<&str>,
) -> ApiResult<(signet_core::PublicKey, SignatureAlgorithm)> {
    let key = signet_core::PublicKey::parse(pem.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("public_key: {e}")))?;
    let algorithm = match algorithm {
        None => key.default_algorithm(),
        Some(a) => SignatureAlgorithm::parse(a)
            .ok_or_else(|| ApiError::BadRequest(format!("algorithm {a:?} is not supported")))?,
    };
    if key.is_ec() != (algorithm == SignatureAlgorithm::EcdsaP256Sha256) {
        return Err(ApiError::BadRequest(format!(
            "algorithm {algorithm} does not fit a {} key",
            if key.is_ec() { "ECDSA P-256" } else { "RSA" }
        )));
    }
    Ok((key, algorithm))
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
    let format = match req.format.as_deref() {
        None => signet_core::SignatureFormat::default(),
        Some(f) => signet_core::SignatureFormat::parse(f).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "format {f:?} is not a signature format; use cosign, bundle or both"
            ))
        })?,
    };
    if req.public_key.is_some() && req.format.is_some() {
        return Err(ApiError::BadRequest(
            "format applies to the signatures signet makes; a verify-only witness makes none (its signatures are read in either format)".into(),
        ));
    }
    let kms_key = match (&req.kms_key, &req.public_key) {
        (Some(k), None) => k.clone(),
        (None, Some(pem)) => return create_verify_only(state, caller, &req, pem).await,
        _ => return Err(ApiError::BadRequest(
            "give either kms_key (a key signet signs with) or public_key (a verify-only witness)"
                .into(),
        )),
    };
    // The requested algorithm is checked before the KMS is asked anything.
    let requested = match &req.algorithm {
        Some(a) => Some(SignatureAlgorithm::parse(a).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "algorithm {a:?} is not supported; use RSA_PKCS1_SHA256 or RSA_PSS_SHA256"
            ))
        })?),
        None => None,
    };
    if requested == Some(SignatureAlgorithm::EcdsaP256Sha256) {
        return Err(ApiError::BadRequest(
            "signet signs with RSA keys: ECDSA_P256_SHA256 is for verify-only witnesses (public_key)"
                .into(),
        ));
    }
    let provider = state.kms.open(&kms_key)?;
    let description = provider.describe().await?;
    let algorithm = requested.unwrap_or(description.algorithm);
    if description.versions.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "KMS key {kms_key} has no enabled versions to sign with"
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
        kms_key,
        algorithm,
        format,
        description: req.description.clone(),
        state: WitnessState::Active,
        key_versions,
        created_at: now,
    };
    store_new(state, caller, witness).await
}

/// A witness that holds a public key only: version `1` is that key.
async fn create_verify_only(
    state: AppState,
    caller: Caller,
    req: &CreateWitness,
    pem: &str,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let (key, algorithm) = verify_only_key(pem, req.algorithm.as_deref())?;
    let now = Utc::now();
    let fingerprint = key.fingerprint();
    let witness = Witness {
        name: req.name.clone(),
        kms_key: format!("{}{fingerprint}", signet_core::VERIFY_ONLY_PREFIX),
        algorithm,
        format: Default::default(),
        description: req.description.clone(),
        state: WitnessState::Active,
        key_versions: vec![KeyVersion {
            version: "1".into(),
            fingerprint,
            public_key: key,
            primary: true,
            state: KeyVersionState::Active,
            created_at: now,
        }],
        created_at: now,
    };
    store_new(state, caller, witness).await
}

/// Writes a new witness with its audit entry (and, in the same transaction, its
/// witness.created event).
async fn store_new(
    state: AppState,
    caller: Caller,
    witness: Witness,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
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
    caller.require_read()?;
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
    caller.require(&[signet_core::Role::Verifier, signet_core::Role::Viewer])?;
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
    caller.require(&[
        signet_core::Role::Verifier,
        signet_core::Role::Signer,
        signet_core::Role::Viewer,
    ])?;
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
    /// A verify-only witness rotates to this PEM public key (of the same type as its
    /// current one); required for those, refused for the others.
    pub public_key: Option<String>,
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
    if witness.is_verify_only() || req.public_key.is_some() {
        return rotate_verify_only(state, caller, witness, &req).await;
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

/// A verify-only witness's next version: the public key the request gives.
async fn rotate_verify_only(
    state: AppState,
    caller: Caller,
    mut witness: Witness,
    req: &RotateWitness,
) -> ApiResult<Json<serde_json::Value>> {
    let name = witness.name.clone();
    let (Some(pem), None, true) = (&req.public_key, &req.kms_key, witness.is_verify_only()) else {
        return Err(ApiError::BadRequest(if witness.is_verify_only() {
            format!("witness {name:?} is verify-only: rotate it to a new public_key (PEM), not a KMS key")
        } else {
            format!("witness {name:?} signs with a KMS key: rotate it to a new version or another kms_key; public_key is for verify-only witnesses")
        }));
    };
    let (key, algorithm) =
        verify_only_key(pem, Some(witness.algorithm.as_str())).map_err(|e| match e {
            ApiError::BadRequest(m) => ApiError::BadRequest(format!(
                "{m}: a verify-only witness keeps its key type ({})",
                witness.algorithm
            )),
            other => other,
        })?;
    let fingerprint = key.fingerprint();
    if witness
        .key_versions
        .iter()
        .any(|v| v.fingerprint == fingerprint)
    {
        return Err(ApiError::Conflict(format!(
            "witness {name:?} already has the key {fingerprint}"
        )));
    }
    let next = witness
        .key_versions
        .iter()
        .filter_map(|v| v.version.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    for v in &mut witness.key_versions {
        v.primary = false;
    }
    witness.algorithm = algorithm;
    witness.key_versions.push(KeyVersion {
        version: next.to_string(),
        fingerprint: fingerprint.clone(),
        public_key: key,
        primary: true,
        state: KeyVersionState::Active,
        created_at: Utc::now(),
    });
    let audit = NewAudit::new(
        caller.actor(),
        "witness.rotate",
        &name,
        serde_json::json!({"version": next.to_string(), "fingerprint": fingerprint, "verify_only": true}),
    );
    state.store.update_witness(&witness, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::info!(witness = %name, version = next, "verify-only witness rotated to a new public key");
    view(&witness)
}

#[utoipa::path(
    post,
    path = "/v1/witnesses/{name}/versions/{version}/revoke",
    tag = "witnesses",
    summary = "Revoke one key version",
    description = "Signatures made with it stop being accepted. The primary version cannot be \
        revoked; rotate first. The answer names the enabled policies that use the witness \
        (`affected_policies`); `?dry_run=true` answers the same and changes nothing. Role: admin.",
    params(("name" = String, Path, description = "Witness name"), ("version" = String, Path, description = "The KMS's key version id"), RevokeQuery),
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
    Query(q): Query<RevokeQuery>,
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
    let affected = affected_policies(&state, &witness, false).await?;
    if q.dry_run {
        return with_affected(&witness, affected);
    }
    let audit = NewAudit::new(
        caller.actor(),
        "witness.revoke_version",
        &name,
        serde_json::json!({"version": version, "fingerprint": fingerprint}),
    );
    state.store.update_witness(&witness, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::warn!(witness = %name, %version, "witness key version revoked");
    with_affected(&witness, affected)
}

#[utoipa::path(
    post,
    path = "/v1/witnesses/{name}/revoke",
    tag = "witnesses",
    summary = "Revoke a witness",
    description = "It signs nothing more, and none of its signatures is accepted. The answer \
        names the enabled policies that use it (`affected_policies`), saying which of them now \
        refuse every image in their namespaces; `?dry_run=true` answers the same and changes \
        nothing, so a client can ask before it revokes. Role: admin.",
    params(("name" = String, Path, description = "Witness name"), RevokeQuery),
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
    Query(q): Query<RevokeQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let mut witness = load(&state, &name).await?;
    if witness.state == WitnessState::Revoked {
        return Err(ApiError::Conflict(format!(
            "witness {name:?} is already revoked"
        )));
    }
    witness.state = WitnessState::Revoked;
    let affected = affected_policies(&state, &witness, true).await?;
    if q.dry_run {
        return with_affected(&witness, affected);
    }
    let audit = NewAudit::new(
        caller.actor(),
        "witness.revoke",
        &name,
        serde_json::json!({"affected_policies": affected.iter().map(|a| &a.name).collect::<Vec<_>>()}),
    );
    state.store.update_witness(&witness, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::warn!(witness = %name, "witness revoked");
    with_affected(&witness, affected)
}

/// `?dry_run=true`: answer with what the revocation would do, and change nothing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevokeQuery {
    /// Change nothing; answer with the witness as it would be and the policies affected.
    #[serde(default)]
    pub dry_run: bool,
}

/// An enabled policy that names a witness being revoked, and what the revocation does
/// to it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AffectedPolicy {
    pub name: String,
    pub cluster: String,
    pub namespace: String,
    pub mode: signet_core::PolicyMode,
    /// N of its M witnesses.
    pub require: u32,
    /// After the revocation, fewer of its witnesses are active than it requires: it
    /// refuses (enforce), warns on (warn) or records as would-deny (dry-run) every image
    /// in its namespaces that is not exempt.
    pub denies_everything: bool,
    /// What happens, in words.
    pub consequence: String,
}

/// The enabled policies that name `witness` (as it will be after the revocation), and
/// what revoking it (`whole`) or one of its key versions does to each.
async fn affected_policies(
    state: &AppState,
    witness: &Witness,
    whole: bool,
) -> ApiResult<Vec<AffectedPolicy>> {
    let policies = state.store.list_policies(None).await?;
    let witnesses = state.store.list_witnesses().await?;
    let active = |name: &str| {
        if name == witness.name {
            return witness.state == WitnessState::Active;
        }
        witnesses
            .iter()
            .any(|w| w.name == name && w.state == WitnessState::Active)
    };
    Ok(policies
        .into_iter()
        .filter(|p| p.enabled && p.witnesses.contains(&witness.name))
        .map(|p| {
            let left = p.witnesses.iter().filter(|w| active(w)).count();
            let denies_everything = whole && left < p.require as usize;
            let what = match p.mode {
                signet_core::PolicyMode::Enforce => "refuses",
                signet_core::PolicyMode::Warn => "warns on",
                signet_core::PolicyMode::DryRun => "records as would-deny",
            };
            let consequence = if denies_everything {
                format!(
                    "{what} every image that is not exempt in cluster {} namespace {}: {left} of its witnesses stay active, it requires {}",
                    p.cluster, p.namespace, p.require
                )
            } else if whole {
                format!(
                    "still satisfiable: {left} of its witnesses stay active, it requires {}; images signed only by {} count for nothing",
                    p.require, witness.name
                )
            } else {
                format!(
                    "{what} images whose only {} signatures were made with the revoked key version",
                    witness.name
                )
            };
            AffectedPolicy {
                denies_everything,
                consequence,
                name: p.name,
                cluster: p.cluster,
                namespace: p.namespace,
                mode: p.mode,
                require: p.require,
            }
        })
        .collect())
}

fn with_affected(
    witness: &Witness,
    affected: Vec<AffectedPolicy>,
) -> ApiResult<Json<serde_json::Value>> {
    let Json(mut v) = view(witness)?;
    v["affected_policies"] =
        serde_json::to_value(affected).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(v))
}

fn view(witness: &Witness) -> ApiResult<Json<serde_json::Value>> {
    serde_json::to_value(WitnessView::new(witness))
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
