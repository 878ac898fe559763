//! Signing rules: which pushed repositories the webhook receivers sign, and with which
//! witness. Admin only; every change is audited.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use signet_core::{validate_name, NewAudit, SignatureFormat, SigningRule, WitnessState};
use signet_store::StoreError;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::webhooks::rules::validate;
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    pub name: String,
    /// Globs over `registry/repository`.
    pub repositories: Vec<String>,
    /// A glob over the tag; default `*`.
    #[serde(default = "every_tag")]
    #[schema(default = "*")]
    pub tag_pattern: String,
    pub witness: String,
    #[serde(default = "enabled")]
    #[schema(default = true)]
    pub enabled: bool,
    /// Labels of the rule (`signet.dev/owner`: what `signet apply` owns).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// How the rule's signatures are attached (`cosign`, `bundle`, `both`), instead of
    /// the witness's own format; absent, the witness's applies.
    #[serde(default)]
    pub format: Option<SignatureFormat>,
}

fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> ApiResult<()> {
    let problems = signet_core::labels::label_problems(labels);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(problems.join("; ")))
    }
}

fn every_tag() -> String {
    "*".to_owned()
}

fn enabled() -> bool {
    true
}

/// A change to a rule; fields left out stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRule {
    pub repositories: Option<Vec<String>>,
    pub tag_pattern: Option<String>,
    pub witness: Option<String>,
    pub enabled: Option<bool>,
    /// Replaces the labels.
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Sets the format; `null` goes back to the witness's own.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SignatureFormat>)]
    pub format: Option<Option<SignatureFormat>>,
}

/// A field that is present, `null` included: `Some(None)` for `null`, where plain serde
/// gives `None` for both absent and `null`. (serde_with's `double_option` does this; it is
/// not worth a dependency for one field.)
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The store's conflicts and misses with its whole message ("... already exists").
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(_) => ApiError::Conflict(e.to_string()),
        StoreError::NotFound(_) => ApiError::NotFound(e.to_string()),
        other => other.into(),
    }
}

fn json(rule: &SigningRule) -> ApiResult<Json<serde_json::Value>> {
    serde_json::to_value(rule)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A rule must name a witness that can sign; the store checks that it exists.
async fn require_active_witness(state: &AppState, name: &str) -> ApiResult<()> {
    match state.store.get_witness(name).await? {
        None => Err(ApiError::NotFound(format!(
            "witness {name:?} does not exist; list witnesses with `signet witness list`"
        ))),
        Some(w) if w.state == WitnessState::Revoked => Err(ApiError::Conflict(format!(
            "witness {name:?} is revoked and signs nothing"
        ))),
        Some(w) if w.is_verify_only() => Err(ApiError::Unprocessable(format!(
            "witness {name:?} is verify-only and signs nothing; a rule needs a witness bound to a KMS key"
        ))),
        Some(_) => Ok(()),
    }
}

async fn load(state: &AppState, name: &str) -> ApiResult<SigningRule> {
    state
        .store
        .get_signing_rule(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("signing rule {name:?} does not exist")))
}

#[utoipa::path(
    post,
    path = "/v1/signing-rules",
    tag = "signing-rules",
    summary = "Create a signing rule",
    description = "Pushes the webhook receivers report to a matching repository and tag are \
        signed by the rule's witness. Role: admin.",
    request_body = CreateRule,
    responses(
        (status = 201, description = "Created", body = SigningRule),
        (status = 400, description = "Bad name or glob", body = ErrorBody),
        (status = 404, description = "No such witness", body = ErrorBody),
        (status = 409, description = "A rule of that name exists, or the witness is revoked", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateRule>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    caller.require_admin()?;
    validate_name("signing rule", &req.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    validate(&req.repositories, &req.tag_pattern).map_err(ApiError::BadRequest)?;
    check_labels(&req.labels)?;
    require_active_witness(&state, &req.witness).await?;
    let now = Utc::now();
    let rule = SigningRule {
        name: req.name,
        repositories: req.repositories,
        tag_pattern: req.tag_pattern,
        witness: req.witness,
        enabled: req.enabled,
        labels: req.labels,
        created_at: now,
        updated_at: now,
        format: req.format,
    };
    let audit = NewAudit::new(
        caller.actor(),
        "rule.create",
        &rule.name,
        serde_json::json!({
            "repositories": rule.repositories,
            "tag_pattern": rule.tag_pattern,
            "witness": rule.witness,
            "enabled": rule.enabled,
            "format": rule.format,
        }),
    );
    state
        .store
        .create_signing_rule(&rule, &audit)
        .await
        .map_err(store_error)?;
    tracing::info!(rule = %rule.name, witness = %rule.witness, "signing rule created");
    Ok((StatusCode::CREATED, json(&rule)?))
}

#[utoipa::path(
    get,
    path = "/v1/signing-rules",
    tag = "signing-rules",
    summary = "List signing rules",
    description = "Role: admin.",
    responses((status = 200, description = "The rules", body = super::bodies::RuleList)),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    let rules = state.store.list_signing_rules().await?;
    Ok(Json(serde_json::json!({ "rules": rules })))
}

#[utoipa::path(
    get,
    path = "/v1/signing-rules/{name}",
    tag = "signing-rules",
    summary = "Show a signing rule",
    description = "Role: admin.",
    params(("name" = String, Path, description = "Signing rule name")),
    responses(
        (status = 200, description = "The rule", body = SigningRule),
        (status = 404, description = "No such rule", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_read()?;
    json(&load(&state, &name).await?)
}

#[utoipa::path(
    patch,
    path = "/v1/signing-rules/{name}",
    tag = "signing-rules",
    summary = "Change a signing rule",
    description = "Fields left out stay as they are. Role: admin.",
    params(("name" = String, Path, description = "Signing rule name")),
    request_body = UpdateRule,
    responses(
        (status = 200, description = "The rule after the change", body = SigningRule),
        (status = 400, description = "Bad glob", body = ErrorBody),
        (status = 404, description = "No such rule or witness", body = ErrorBody),
        (status = 409, description = "The witness is revoked", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateRule>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let before = load(&state, &name).await?;
    let mut rule = before.clone();
    if let Some(r) = req.repositories {
        rule.repositories = r;
    }
    if let Some(t) = req.tag_pattern {
        rule.tag_pattern = t;
    }
    if let Some(w) = req.witness {
        rule.witness = w;
    }
    if let Some(e) = req.enabled {
        rule.enabled = e;
    }
    if let Some(l) = req.labels {
        check_labels(&l)?;
        rule.labels = l;
    }
    if let Some(f) = req.format {
        rule.format = f;
    }
    validate(&rule.repositories, &rule.tag_pattern).map_err(ApiError::BadRequest)?;
    if rule.witness != before.witness || (rule.enabled && !before.enabled) {
        require_active_witness(&state, &rule.witness).await?;
    }
    if rule == before {
        return json(&rule);
    }
    rule.updated_at = Utc::now();
    // Switching a rule on or off is what operators look for in the log; name it so.
    let only_enabled_changed = SigningRule {
        enabled: before.enabled,
        updated_at: before.updated_at,
        ..rule.clone()
    } == before;
    let action = match (only_enabled_changed, rule.enabled) {
        (true, true) => "rule.enable",
        (true, false) => "rule.disable",
        (false, _) => "rule.update",
    };
    let audit = NewAudit::new(
        caller.actor(),
        action,
        &rule.name,
        serde_json::json!({
            "before": {
                "repositories": before.repositories,
                "tag_pattern": before.tag_pattern,
                "witness": before.witness,
                "enabled": before.enabled,
                "format": before.format,
            },
            "after": {
                "repositories": rule.repositories,
                "tag_pattern": rule.tag_pattern,
                "witness": rule.witness,
                "enabled": rule.enabled,
                "format": rule.format,
            },
        }),
    );
    state
        .store
        .update_signing_rule(&rule, &audit)
        .await
        .map_err(store_error)?;
    tracing::info!(rule = %rule.name, %action, "signing rule changed");
    json(&rule)
}

#[utoipa::path(
    delete,
    path = "/v1/signing-rules/{name}",
    tag = "signing-rules",
    summary = "Delete a signing rule",
    description = "Role: admin.",
    params(("name" = String, Path, description = "Signing rule name")),
    responses(
        (status = 200, description = "The rule as it was", body = super::bodies::RuleDeleted),
        (status = 404, description = "No such rule", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let rule = load(&state, &name).await?;
    let audit = NewAudit::new(
        caller.actor(),
        "rule.delete",
        &rule.name,
        serde_json::json!({
            "repositories": rule.repositories,
            "tag_pattern": rule.tag_pattern,
            "witness": rule.witness,
            "enabled": rule.enabled,
        }),
    );
    state
        .store
        .delete_signing_rule(&name, &audit)
        .await
        .map_err(store_error)?;
    tracing::info!(rule = %name, "signing rule deleted");
    Ok(Json(serde_json::json!({ "deleted": true, "rule": rule })))
}
