//! Security policies: which witnesses must have signed the images that start in a cluster
//! and namespace. Policies are created disabled; every change is stored with its
//! `policy.updated` event in one transaction, so verifiers learn about it at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signet_core::{NewAudit, PolicyAction, PolicyMode, SecurityPolicy};
use signet_store::StoreError;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::AppState;

/// How often a PATCH re-reads and re-applies itself when another change won the race.
const PATCH_ATTEMPTS: usize = 3;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    pub name: String,
    pub witnesses: Vec<String>,
    /// N of the M witnesses must have signed; default 1 (any of them).
    pub require: Option<u32>,
    pub cluster: String,
    pub namespace: String,
    /// Only the namespaces `namespace` matches whose labels this selects
    /// (`{"matchLabels": {"signet.dev/enforce": "true"}}`).
    pub namespace_selector: Option<signet_core::LabelSelector>,
    /// `enforce` (default), `warn` or `dry-run`.
    pub mode: Option<String>,
    /// Policies start disabled unless this says otherwise.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub exemptions: Vec<String>,
    #[serde(default)]
    pub require_digest: bool,
    #[serde(default)]
    pub allow_break_glass: bool,
    /// Rewrite verified tags on Pods to `tag@digest` at admission (`/mutate`); default
    /// true.
    pub pin_digests: Option<bool>,
    /// Attestations every image must also carry, signed by one of the witnesses, with
    /// conditions on their predicates (`[{"type": "slsaprovenance1", "conditions":
    /// [{"path": "$.runDetails.builder.id", "equals": "https://..."}]}]`).
    #[serde(default)]
    pub attestations: Vec<signet_core::AttestationRequirement>,
    #[serde(default)]
    pub note: String,
    /// Labels of the policy (`signet.dev/owner`: what `signet apply` owns).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A partial change: only the fields present are changed.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchPolicy {
    pub witnesses: Option<Vec<String>>,
    pub require: Option<u32>,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// A new label selector; `{}` removes it (the policy then selects by `namespace`
    /// alone).
    pub namespace_selector: Option<signet_core::LabelSelector>,
    pub mode: Option<String>,
    pub enabled: Option<bool>,
    pub exemptions: Option<Vec<String>>,
    pub require_digest: Option<bool>,
    pub allow_break_glass: Option<bool>,
    pub pin_digests: Option<bool>,
    /// Replaces the required attestations; `[]` requires none.
    pub attestations: Option<Vec<signet_core::AttestationRequirement>>,
    pub note: Option<String>,
    /// Replaces the labels.
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

fn parse_mode(mode: Option<&str>) -> ApiResult<Option<PolicyMode>> {
    mode.map(|m| {
        PolicyMode::parse(m).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "mode {m:?} is not a policy mode; use enforce, warn or dry-run"
            ))
        })
    })
    .transpose()
}

fn check(p: &SecurityPolicy) -> ApiResult<()> {
    let problems = p.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(problems.join("; ")))
    }
}

/// A missing witness is a problem with the request, not a missing policy; a conflict
/// says what already exists.
fn witness_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) if what.starts_with("witness ") => ApiError::Unprocessable(
            format!("{what} does not exist; create it first with `signet witness create`"),
        ),
        e @ StoreError::Conflict(_) => ApiError::Conflict(e.to_string()),
        e => e.into(),
    }
}

#[utoipa::path(
    post,
    path = "/v1/policies",
    tag = "policies",
    summary = "Create a security policy",
    description = "Policies are created disabled unless `enabled` says otherwise; verifiers \
        learn of the change from a `policy.updated` event. Role: admin.",
    request_body = CreatePolicy,
    responses(
        (status = 201, description = "Created", body = SecurityPolicy),
        (status = 400, description = "Every problem with the policy, at once", body = ErrorBody),
        (status = 409, description = "A policy of that name exists", body = ErrorBody),
        (status = 422, description = "A witness it names does not exist", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreatePolicy>,
) -> ApiResult<(StatusCode, Json<SecurityPolicy>)> {
    caller.require_admin()?;
    let now = Utc::now();
    let policy = SecurityPolicy {
        name: req.name,
        labels: req.labels,
        require: req.require.unwrap_or(1),
        witnesses: req.witnesses,
        cluster: req.cluster,
        namespace: req.namespace,
        namespace_selector: req.namespace_selector,
        mode: parse_mode(req.mode.as_deref())?.unwrap_or_default(),
        enabled: req.enabled,
        exemptions: req.exemptions,
        require_digest: req.require_digest,
        allow_break_glass: req.allow_break_glass,
        pin_digests: req.pin_digests.unwrap_or(true),
        attestations: req.attestations,
        note: req.note,
        // Stored with millisecond precision: answer with what a read returns.
        created_at: DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now),
        updated_at: DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now),
    };
    check(&policy)?;
    let audit = NewAudit::new(
        caller.actor(),
        "policy.create",
        &policy.name,
        serde_json::to_value(&policy).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    state
        .store
        .create_policy(&policy, &audit)
        .await
        .map_err(witness_error)?;
    state.outbox_kick.notify_one();
    tracing::info!(policy = %policy.name, cluster = %policy.cluster, namespace = %policy.namespace, mode = policy.mode.as_str(), enabled = policy.enabled, "policy created");
    Ok((StatusCode::CREATED, Json(policy)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this cluster's policies.
    pub cluster: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/policies",
    tag = "policies",
    summary = "List security policies",
    description = "Role: admin.",
    params(ListQuery),
    responses((status = 200, description = "The policies", body = super::bodies::PolicyList)),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let policies = state.store.list_policies(q.cluster.as_deref()).await?;
    Ok(Json(serde_json::json!({ "policies": policies })))
}

async fn load(state: &AppState, name: &str) -> ApiResult<SecurityPolicy> {
    state
        .store
        .get_policy(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("policy {name:?} does not exist")))
}

#[utoipa::path(
    get,
    path = "/v1/policies/{name}",
    tag = "policies",
    summary = "Show a security policy",
    description = "Role: admin.",
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "The policy", body = SecurityPolicy),
        (status = 404, description = "No such policy", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<SecurityPolicy>> {
    caller.require_read()?;
    Ok(Json(load(&state, &name).await?))
}

/// Applies `patch` to `p`; returns what kind of change it was.
fn apply(p: &mut SecurityPolicy, patch: &PatchPolicy) -> ApiResult<PolicyAction> {
    let before = p.clone();
    if let Some(w) = &patch.witnesses {
        p.witnesses = w.clone();
    }
    if let Some(r) = patch.require {
        p.require = r;
    }
    if let Some(c) = &patch.cluster {
        p.cluster = c.clone();
    }
    if let Some(n) = &patch.namespace {
        p.namespace = n.clone();
    }
    if let Some(s) = &patch.namespace_selector {
        p.namespace_selector = (!s.is_empty()).then(|| s.clone());
    }
    if let Some(m) = parse_mode(patch.mode.as_deref())? {
        p.mode = m;
    }
    if let Some(e) = patch.enabled {
        p.enabled = e;
    }
    if let Some(e) = &patch.exemptions {
        p.exemptions = e.clone();
    }
    if let Some(d) = patch.require_digest {
        p.require_digest = d;
    }
    if let Some(b) = patch.pin_digests {
        p.pin_digests = b;
    }
    if let Some(a) = &patch.attestations {
        p.attestations = a.clone();
    }
    if let Some(b) = patch.allow_break_glass {
        p.allow_break_glass = b;
    }
    if let Some(n) = &patch.note {
        p.note = n.clone();
    }
    if let Some(l) = &patch.labels {
        p.labels = l.clone();
    }
    let mut only_toggle = before.clone();
    only_toggle.enabled = p.enabled;
    Ok(if *p == only_toggle && before.enabled != p.enabled {
        if p.enabled {
            PolicyAction::Enabled
        } else {
            PolicyAction::Disabled
        }
    } else {
        PolicyAction::Updated
    })
}

#[utoipa::path(
    patch,
    path = "/v1/policies/{name}",
    tag = "policies",
    summary = "Change a security policy",
    description = "Only the fields present change; `{\"enabled\": true}` enables it. Role: admin.",
    params(("name" = String, Path, description = "Policy name")),
    request_body = PatchPolicy,
    responses(
        (status = 200, description = "The policy after the change", body = SecurityPolicy),
        (status = 400, description = "Every problem with the changed policy, at once", body = ErrorBody),
        (status = 404, description = "No such policy", body = ErrorBody),
        (status = 409, description = "Other changes kept winning the race", body = ErrorBody),
        (status = 422, description = "A witness it names does not exist", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PatchPolicy>,
) -> ApiResult<Json<SecurityPolicy>> {
    caller.require_admin()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = load(&state, &name).await?;
        let mut next = current.clone();
        let action = apply(&mut next, &req)?;
        check(&next)?;
        if next == current {
            return Ok(Json(current));
        }
        let audit = NewAudit::new(
            caller.actor(),
            format!("policy.{}", action_verb(action)),
            &name,
            serde_json::to_value(&next).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
        match state
            .store
            .update_policy(&current, &next, action, &audit)
            .await
        {
            Ok(stored) => {
                state.outbox_kick.notify_one();
                tracing::info!(policy = %name, action = action.as_str(), enabled = stored.enabled, mode = stored.mode.as_str(), "policy changed");
                return Ok(Json(stored));
            }
            Err(StoreError::Conflict(_)) if attempt < PATCH_ATTEMPTS => continue,
            Err(e) => return Err(witness_error(e)),
        }
    }
}

fn action_verb(a: PolicyAction) -> &'static str {
    match a {
        PolicyAction::Created => "create",
        PolicyAction::Updated => "update",
        PolicyAction::Enabled => "enable",
        PolicyAction::Disabled => "disable",
        PolicyAction::Deleted => "delete",
    }
}

#[utoipa::path(
    delete,
    path = "/v1/policies/{name}",
    tag = "policies",
    summary = "Delete a security policy",
    description = "Role: admin.",
    params(("name" = String, Path, description = "Policy name")),
    responses(
        (status = 200, description = "The policy as it was", body = super::bodies::PolicyDeleted),
        (status = 404, description = "No such policy", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let audit = NewAudit::new(
        caller.actor(),
        "policy.delete",
        &name,
        serde_json::json!({}),
    );
    let deleted = state.store.delete_policy(&name, &audit).await?;
    state.outbox_kick.notify_one();
    tracing::info!(policy = %name, "policy deleted");
    Ok(Json(serde_json::json!({ "deleted": deleted })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImpactQuery {
    /// Only decisions at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
}

#[utoipa::path(
    get,
    path = "/v1/policies/{name}/impact",
    tag = "policies",
    summary = "What the policy did, or in dry-run would have done",
    description = "Decisions by outcome, and the namespaces, images and reasons that enforcing \
        it would block. Role: admin.",
    params(("name" = String, Path, description = "Policy name"), ImpactQuery),
    responses(
        (status = 200, description = "The policy and its impact", body = super::bodies::PolicyImpactReport),
        (status = 404, description = "No such policy", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
/// What the policy did, or in dry-run would have done: decisions by outcome, and the
/// namespaces, images and reasons that enforcing it would block.
pub async fn impact(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ImpactQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let policy = load(&state, &name).await?;
    let impact = state.store.policy_impact(&name, q.since).await?;
    let running = running_impact(&state, &policy).await?;
    Ok(Json(
        serde_json::json!({ "policy": policy, "impact": impact, "running": running }),
    ))
}

/// The other half of the impact: the containers running now in the policy's cluster and
/// namespaces, and how many of them enforcing it would stop if their Pods were
/// recreated now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunningImpact {
    /// Running containers in the policy's namespaces, as the cluster's verifier last
    /// reported them.
    pub containers: u64,
    /// By standing (judged under the policies enabled now).
    pub standings: std::collections::BTreeMap<String, u64>,
    /// Not signed by `require` of the policy's witnesses, and not exempt.
    pub would_stop: u64,
    /// The images of those, most containers first (at most 20).
    pub images: Vec<RunningImage>,
    /// When the cluster's inventory was last reported; absent when it never was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunningImage {
    pub image: String,
    pub containers: u64,
}

/// How many running containers one impact summary reads at most.
const RUNNING_IMPACT_SCAN: u32 = 50_000;

async fn running_impact(state: &AppState, policy: &SecurityPolicy) -> ApiResult<RunningImpact> {
    let glob = signet_core::policy::compile_glob(&policy.namespace).map_err(ApiError::Internal)?;
    let workloads = state
        .store
        .list_workloads(&signet_store::WorkloadFilter {
            cluster: Some(policy.cluster.clone()),
            limit: RUNNING_IMPACT_SCAN,
            ..Default::default()
        })
        .await?;
    let mut impact = RunningImpact {
        containers: 0,
        standings: std::collections::BTreeMap::new(),
        would_stop: 0,
        images: Vec::new(),
        reported_at: state
            .store
            .inventory_clusters()
            .await?
            .into_iter()
            .find(|c| c.cluster == policy.cluster)
            .map(|c| c.reported_at),
    };
    let mut images: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    // A container reported without its namespace's labels (the verifier could not read
    // them) counts as selected: the estimate errs towards what enforcement would stop.
    let selected = |r: &signet_core::RunningContainer| {
        glob.is_match(&r.namespace)
            && policy.namespace_selector.as_ref().is_none_or(|s| {
                r.namespace_labels
                    .as_ref()
                    .is_none_or(|labels| s.matches(labels))
            })
    };
    for w in workloads.iter().filter(|w| selected(&w.running)) {
        let r = &w.running;
        impact.containers += 1;
        *impact
            .standings
            .entry(r.standing.as_str().to_owned())
            .or_default() += 1;
        let signed = r
            .witnesses
            .iter()
            .filter(|w| policy.witnesses.contains(w))
            .count();
        if r.standing != signet_core::Standing::Exempt && signed < policy.require as usize {
            impact.would_stop += 1;
            *images.entry(r.image.clone()).or_default() += 1;
        }
    }
    let mut images: Vec<RunningImage> = images
        .into_iter()
        .map(|(image, containers)| RunningImage { image, containers })
        .collect();
    images.sort_by(|a, b| b.containers.cmp(&a.containers).then(a.image.cmp(&b.image)));
    images.truncate(20);
    impact.images = images;
    Ok(impact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SecurityPolicy {
        let t = DateTime::from_timestamp_millis(0).unwrap_or_default();
        SecurityPolicy {
            labels: Default::default(),
            name: "p".into(),
            witnesses: vec!["w".into()],
            require: 1,
            cluster: "c1".into(),
            namespace: "prod".into(),
            namespace_selector: None,
            mode: PolicyMode::Enforce,
            enabled: false,
            exemptions: vec![],
            require_digest: false,
            allow_break_glass: false,
            pin_digests: false,
            attestations: Vec::new(),
            note: String::new(),
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn a_lone_toggle_is_named_as_such() {
        let mut p = policy();
        let on = PatchPolicy {
            enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(apply(&mut p, &on).ok(), Some(PolicyAction::Enabled));
        let off = PatchPolicy {
            enabled: Some(false),
            note: Some("paused".into()),
            ..Default::default()
        };
        assert_eq!(apply(&mut p, &off).ok(), Some(PolicyAction::Updated));
        assert!(!p.enabled);
        let mode = PatchPolicy {
            mode: Some("dry-run".into()),
            ..Default::default()
        };
        assert_eq!(apply(&mut p, &mode).ok(), Some(PolicyAction::Updated));
        assert_eq!(p.mode, PolicyMode::DryRun);
        let bad = PatchPolicy {
            mode: Some("audit".into()),
            ..Default::default()
        };
        assert!(matches!(apply(&mut p, &bad), Err(ApiError::BadRequest(_))));
    }
}
