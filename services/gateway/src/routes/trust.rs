//! What cluster verifiers read and report: the trust bundle, trusted images, and the
//! admission decisions they made.

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signet_core::{validate_name, AdmissionDecision, AdmissionOutcome, Role, TrustBundle};
use signet_store::{DecisionFilter, SignatureFilter};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::AppState;

/// Running containers read at most to say where trusted images run.
const RUNNING_SCAN: u32 = 50_000;

/// The most decisions one report may carry; verifiers send smaller batches.
pub const MAX_DECISIONS_PER_REPORT: usize = 5_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BundleQuery {
    /// The cluster name the verifier identifies itself with.
    pub cluster: String,
    /// The revision of the bundle the verifier holds: the answer is then incremental
    /// (`since` set, only the signatures revoked after it), unless `since` is ahead of
    /// the store, when it is whole.
    pub since: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/trust-bundle",
    tag = "verifiers",
    summary = "A cluster's trust bundle",
    description = "The cluster's policies (enabled or not) and every key of their witnesses, \
        live and revoked, with the outbox revision they were read at: events with a higher \
        `signetrevision` are newer. With `since=R` (the revision the verifier holds) it is \
        incremental: `since` is set and `revoked_signatures` lists only the signatures \
        revoked after R. Role: verifier, whose token is bound to that cluster (or admin).",
    params(BundleQuery),
    responses(
        (status = 200, description = "The bundle, exactly the bytes the `Signet-Signature` \
            header seals", body = TrustBundle,
            headers(("Signet-Signature" = String, description = "The control plane's seal \
                over the body: `keyid=\"sha256:…\", alg=\"RSA_PKCS1_SHA256\", sig=\"<base64>\"`"))),
        (status = 400, description = "Bad cluster name", body = ErrorBody),
        (status = 503, description = "The control plane's key cannot seal now", body = ErrorBody),
        (status = 403, description = "The verifier token is bound to another cluster, or to none", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// The cluster's policies (enabled or not) and every live key of their witnesses, with
/// the outbox revision they were read at, sealed by the control plane's key: verifiers
/// check the seal over these exact bytes before they believe a word of it.
pub async fn bundle(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<BundleQuery>,
) -> ApiResult<Response> {
    caller.require(&[Role::Verifier])?;
    validate_name("cluster", &q.cluster).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    caller.require_cluster(&q.cluster)?;
    let bundle = state.store.trust_bundle_since(&q.cluster, q.since).await?;
    let bytes = serde_json::to_vec(&bundle)
        .map_err(|e| ApiError::Internal(format!("encoding the trust bundle: {e}")))?;
    let seal = state.control_key.seal(&bytes).await.map_err(|e| {
        tracing::error!(error = %e, "cannot seal the trust bundle");
        ApiError::Unavailable(
            "the control plane's signing key cannot seal the trust bundle now".into(),
        )
    })?;
    let header = HeaderValue::from_str(&seal.to_header())
        .map_err(|e| ApiError::Internal(format!("seal header: {e}")))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (HeaderName::from_static("signet-signature"), header),
        ],
        bytes,
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/control-plane/key",
    tag = "verifiers",
    summary = "The control plane's public key",
    description = "The public half of the key that seals trust bundles and events, to pin in \
        verifiers (`verifier.control_plane_keys`, the chart's `verifier.controlPlaneKeys`). \
        Fetching it over the network is trust on first use: compare its fingerprint with the \
        KMS's own answer. Role: verifier.",
    responses(
        (status = 200, description = "The key", body = ControlPlaneKeyInfo),
    ),
    security(("bearer" = [])),
)]
pub async fn control_plane_key(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<ControlPlaneKeyInfo>> {
    caller.require(&[Role::Verifier])?;
    Ok(Json(ControlPlaneKeyInfo {
        kms_key: state.control_key.uri().to_owned(),
        fingerprint: state.control_key.fingerprint().to_owned(),
        public_key: state.control_key.public_key().to_pem(),
    }))
}

/// The key that seals trust bundles and events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlPlaneKeyInfo {
    /// The KMS key URI.
    pub kms_key: String,
    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo; the `keyid` of every seal.
    pub fingerprint: String,
    /// PEM `PUBLIC KEY`.
    pub public_key: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImagesQuery {
    /// Only trusted images are listed; `trusted=true` says so explicitly.
    pub trusted: Option<bool>,
    pub witness: Option<String>,
    /// `registry/repository`.
    pub repository: Option<String>,
    /// Say for each image where it runs (clusters, namespaces, containers), from the
    /// inventories verifiers report.
    pub running: Option<bool>,
    pub limit: Option<u32>,
}

/// A trusted image: a digest with a valid signature from a witness whose key is live.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrustedImage {
    /// `registry/repository@sha256:…`
    pub image: String,
    pub repository: String,
    pub digest: String,
    pub witness: String,
    pub key_version: String,
    pub key_fingerprint: String,
    pub signed_at: DateTime<Utc>,
    /// Where the signature lives: `registry/repository:sha256-<hex>.sig`.
    pub artifact: String,
    /// With `running=true`: where it runs now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<Vec<RunningIn>>,
}

/// How many containers run an image in one namespace of one cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunningIn {
    pub cluster: String,
    pub namespace: String,
    pub containers: u64,
}

#[utoipa::path(
    get,
    path = "/v1/images",
    tag = "verifiers",
    summary = "List trusted images",
    description = "Digests with a valid signature from a witness whose key is live. Role: verifier.",
    params(ImagesQuery),
    responses(
        (status = 200, description = "The trusted images", body = super::bodies::TrustedImageList),
        (status = 400, description = "`trusted=false` was asked for", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn images(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ImagesQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(&[Role::Verifier, Role::Viewer])?;
    if q.trusted == Some(false) {
        return Err(ApiError::BadRequest(
            "only trusted images are listed: use trusted=true or leave it out; \
             `signet verify IMAGE` checks any other image"
                .into(),
        ));
    }
    // A revoked signature, or one by a revoked witness or key version, is not a trusted
    // image any more. Both are left out by the query, so `limit` counts trusted images.
    let live: Vec<(String, String)> = state
        .store
        .list_witnesses()
        .await?
        .iter()
        .flat_map(|w| {
            w.live_versions()
                .map(|v| (w.name.clone(), v.fingerprint.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let records = state
        .store
        .list_signatures(&SignatureFilter {
            repository: q.repository,
            witness: q.witness,
            keys: Some(live),
            unrevoked: true,
            limit: q.limit.unwrap_or(100).min(1000),
            ..Default::default()
        })
        .await?;
    let mut images: Vec<TrustedImage> = records
        .into_iter()
        .map(|r| TrustedImage {
            image: format!("{}@{}", r.repository, r.digest),
            digest: r.digest.to_string(),
            repository: r.repository,
            witness: r.witness,
            key_version: r.key_version,
            key_fingerprint: r.key_fingerprint,
            signed_at: r.created_at,
            artifact: r.artifact,
            running: None,
        })
        .collect();
    if q.running == Some(true) {
        // One query for every listed digest, then grouped per image.
        let digests: Vec<signet_core::Digest> = images
            .iter()
            .filter_map(|i| signet_core::Digest::parse(&i.digest).ok())
            .collect();
        let mut places: std::collections::HashMap<
            String,
            std::collections::BTreeMap<(String, String), u64>,
        > = std::collections::HashMap::new();
        for w in state
            .store
            .list_workloads(&signet_store::WorkloadFilter {
                digests: Some(digests),
                limit: RUNNING_SCAN,
                ..Default::default()
            })
            .await?
        {
            let Some(d) = &w.running.digest else { continue };
            *places
                .entry(d.to_string())
                .or_default()
                .entry((w.cluster, w.running.namespace))
                .or_default() += 1;
        }
        for image in &mut images {
            let by_place = places.get(&image.digest).cloned().unwrap_or_default();
            image.running = Some(
                by_place
                    .into_iter()
                    .map(|((cluster, namespace), containers)| RunningIn {
                        cluster,
                        namespace,
                        containers,
                    })
                    .collect(),
            );
        }
    }
    Ok(Json(serde_json::json!({ "images": images })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionReport {
    pub decisions: Vec<AdmissionDecision>,
}

#[utoipa::path(
    post,
    path = "/v1/admission-decisions",
    tag = "verifiers",
    summary = "Report admission decisions",
    description = "A verifier's batch of decisions, at most 5000. Sending the same batch twice \
        is harmless. A break-glass admission is audited and emits `admission.break_glass`. \
        Role: verifier, for decisions of the cluster its token is bound to (or admin).",
    request_body = DecisionReport,
    responses(
        (status = 200, description = "Recorded", body = super::bodies::DecisionsRecorded),
        (status = 400, description = "Too many decisions, or a malformed one", body = ErrorBody),
        (status = 403, description = "A decision names a cluster other than the token's", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// A verifier's batch of decisions. Sending the same batch twice is harmless.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<DecisionReport>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(&[Role::Verifier])?;
    if req.decisions.len() > MAX_DECISIONS_PER_REPORT {
        return Err(ApiError::BadRequest(format!(
            "a report carries at most {MAX_DECISIONS_PER_REPORT} decisions, not {}; send smaller batches",
            req.decisions.len()
        )));
    }
    let clusters: std::collections::BTreeSet<&str> =
        req.decisions.iter().map(|d| d.cluster.as_str()).collect();
    for cluster in clusters {
        caller.require_cluster(cluster)?;
    }
    let (recorded, break_glass) = state
        .store
        .record_admission_decisions(&req.decisions, &caller.actor())
        .await?;
    state.live.decisions(&req.decisions);
    if break_glass > 0 {
        state.outbox_kick.notify_one();
        tracing::warn!(count = break_glass, verifier = %caller.name, "break-glass admissions reported");
    }
    Ok(Json(serde_json::json!({
        "recorded": recorded,
        "duplicates": req.decisions.len() as u64 - recorded,
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionsQuery {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub policy: Option<String>,
    /// `allowed`, `denied`, `warned`, `would_deny` or `break_glass`.
    pub outcome: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/admission-decisions",
    tag = "verifiers",
    summary = "List admission decisions",
    description = "Newest first. Role: admin.",
    params(DecisionsQuery),
    responses(
        (status = 200, description = "The decisions", body = super::bodies::DecisionList),
        (status = 400, description = "Unknown outcome", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn decisions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DecisionsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let outcome = q
        .outcome
        .as_deref()
        .map(|o| {
            AdmissionOutcome::parse(o).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "outcome {o:?} is unknown; use allowed, denied, warned, would_deny or break_glass"
                ))
            })
        })
        .transpose()?;
    let decisions = state
        .store
        .list_admission_decisions(&DecisionFilter {
            cluster: q.cluster,
            namespace: q.namespace,
            policy: q.policy,
            outcome,
            since: q.since,
            limit: q.limit.unwrap_or(100).min(1000),
        })
        .await?;
    Ok(Json(serde_json::json!({ "decisions": decisions })))
}
