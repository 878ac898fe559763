//! What runs: the inventory each cluster's verifier reports, and the list of running
//! containers with their standing.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use signet_core::{validate_name, Digest, InventoryReport, Role, Standing};
use signet_store::{InventoryCluster, Workload, WorkloadFilter};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::AppState;

/// The most containers one report may carry; a full inventory comes in pages.
pub const MAX_CONTAINERS_PER_REPORT: usize = 5_000;

/// `POST /v1/inventory`: what the report changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InventoryApplied {
    pub upserted: u64,
    pub removed: u64,
    /// Containers whose standing got worse (each audited and emitted as
    /// `workload.untrusted`).
    pub worsened: u64,
}

#[utoipa::path(
    post,
    path = "/v1/inventory",
    tag = "verifiers",
    summary = "Report running containers",
    description = "A verifier's inventory: a page of a full sync (`sync`; the last page removes \
        what the sync did not mention), or the changes since its last report. At most 5000 \
        containers. A container whose standing got worse (trusted or exempt to anything else, \
        or anything to revoked) is audited and emitted as `workload.untrusted`. Role: \
        verifier, for the cluster its token is bound to (or admin).",
    request_body = InventoryReport,
    responses(
        (status = 200, description = "Applied", body = InventoryApplied),
        (status = 400, description = "Too many containers, or a malformed report", body = ErrorBody),
        (status = 403, description = "The report names a cluster other than the token's", body = ErrorBody),
        (status = 409, description = "A later page of a sync that is no longer the one in progress", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(report): ApiJson<InventoryReport>,
) -> ApiResult<Json<InventoryApplied>> {
    caller.require(&[Role::Verifier])?;
    caller.require_cluster(&report.cluster)?;
    if report.containers.len() > MAX_CONTAINERS_PER_REPORT {
        return Err(ApiError::BadRequest(format!(
            "a report carries at most {MAX_CONTAINERS_PER_REPORT} containers, not {}; send a full inventory in pages",
            report.containers.len()
        )));
    }
    if let Some(c) = report.containers.iter().find(|c| {
        c.namespace.is_empty() || c.pod.is_empty() || c.pod_uid.is_empty() || c.container.is_empty()
    }) {
        return Err(ApiError::BadRequest(format!(
            "container {:?} of pod {:?}/{:?} lacks a namespace, pod, pod uid or name",
            c.container, c.namespace, c.pod
        )));
    }
    let applied = state
        .store
        .apply_inventory(&report, &caller.actor())
        .await?;
    if !applied.worsened.is_empty() {
        state.outbox_kick.notify_one();
        for change in &applied.worsened {
            let c = &change.container;
            tracing::warn!(cluster = %report.cluster, namespace = %c.namespace, pod = %c.pod, container = %c.container, image = %c.image, previous = %change.previous, standing = %c.standing, reason = ?c.reason, "a running container's standing got worse");
        }
    }
    Ok(Json(InventoryApplied {
        upserted: applied.upserted,
        removed: applied.removed,
        worsened: applied.worsened.len() as u64,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkloadsQuery {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// `trusted`, `exempt`, `untrusted`, `break_glass` or `revoked`.
    pub standing: Option<String>,
    /// The image as Pods name it, or a digest (`sha256:…`, or `…@sha256:…`).
    pub image: Option<String>,
    pub limit: Option<u32>,
}

/// A cluster's inventory: when it was last reported, and whether that is too long ago.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterInventory {
    #[serde(flatten)]
    pub cluster: InventoryCluster,
    /// Seconds since the last report.
    pub age_seconds: i64,
    /// No report for longer than `gateway.inventory_stale_after` (120 s): the verifier is
    /// down or cannot reach the gateway, and what is listed is the last inventory known.
    pub stale: bool,
}

/// `GET /v1/workloads`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkloadList {
    pub workloads: Vec<Workload>,
    pub clusters: Vec<ClusterInventory>,
}

#[utoipa::path(
    get,
    path = "/v1/workloads",
    tag = "verifiers",
    summary = "List running containers",
    description = "The containers verifiers report running, with their standing, ordered by \
        cluster, namespace, pod and container; and each cluster's inventory age (`stale` after \
        120 s without a report). Role: admin.",
    params(WorkloadsQuery),
    responses(
        (status = 200, description = "The running containers", body = WorkloadList),
        (status = 400, description = "Unknown standing, or a malformed filter", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<WorkloadsQuery>,
) -> ApiResult<Json<WorkloadList>> {
    caller.require_read()?;
    let standing = q
        .standing
        .as_deref()
        .map(|s| {
            Standing::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "standing {s:?} is unknown; use trusted, exempt, untrusted, break_glass or revoked"
                ))
            })
        })
        .transpose()?;
    if let Some(c) = &q.cluster {
        validate_name("cluster", c).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let (image, digest) = match q.image {
        None => (None, None),
        Some(i) => match i.rsplit_once('@').map_or(i.as_str(), |(_, d)| d) {
            d if d.starts_with("sha256:") => (
                None,
                Some(Digest::parse(d).map_err(|e| ApiError::BadRequest(format!("image: {e}")))?),
            ),
            _ => (Some(i), None),
        },
    };
    let workloads = state
        .store
        .list_workloads(&WorkloadFilter {
            cluster: q.cluster.clone(),
            namespace: q.namespace,
            standing,
            image,
            digest,
            digests: None,
            limit: q.limit.unwrap_or(100).min(5000),
        })
        .await?;
    let now = Utc::now();
    let stale_after = chrono::Duration::from_std(state.settings.inventory_stale_after)
        .unwrap_or(chrono::Duration::MAX);
    let clusters = state
        .store
        .inventory_clusters()
        .await?
        .into_iter()
        .filter(|c| q.cluster.as_ref().is_none_or(|want| *want == c.cluster))
        .map(|c| {
            let age = now - c.reported_at;
            ClusterInventory {
                age_seconds: age.num_seconds().max(0),
                stale: age > stale_after,
                cluster: c,
            }
        })
        .collect();
    Ok(Json(WorkloadList {
        workloads,
        clusters,
    }))
}
