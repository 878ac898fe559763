//! The JSON answers that handlers build with `json!`, described as types for the API
//! document (`schemas/openapi.json`). They are never built: `tests/schemas.rs` checks the
//! gateway's real answers against the document, so a handler and its description cannot
//! part without a test failing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use signet_core::{
    AdmissionDecision, ApiToken, AuditEntry, Job, Role, SecurityPolicy, SignatureRecord,
    SigningRule,
};
use signet_store::PolicyImpact;
use utoipa::ToSchema;
use uuid::Uuid;

use super::jobs::JobView;
use super::trust::TrustedImage;
use super::witnesses::WitnessView;
use crate::webhooks::receivers::ReceiverCounts;

/// `GET /readyz`: whether the store and the bus answer, and what failed if not.
#[derive(ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `ok`, or why the store did not answer.
    pub store: String,
    /// `ok`, or why the bus did not answer.
    pub bus: String,
}

/// `GET /v1/witnesses`.
#[derive(ToSchema)]
pub struct WitnessList {
    pub witnesses: Vec<WitnessView<'static>>,
}

/// `POST /v1/sign?wait=` when the job failed for good.
#[derive(ToSchema)]
pub struct SignFailed {
    /// `sign_failed`.
    #[schema(example = "sign_failed")]
    pub error: String,
    /// Why the job failed.
    pub detail: String,
    pub job: JobView<'static>,
}

/// `GET /v1/jobs`.
#[derive(ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// `GET /v1/signatures`.
#[derive(ToSchema)]
pub struct SignatureList {
    pub signatures: Vec<SignatureRecord>,
}

/// `GET /v1/audit`.
#[derive(ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// `POST /v1/tokens`: the new token, with its secret shown this once.
#[derive(ToSchema)]
pub struct IssuedToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The repositories a signer token may sign (globs); empty: any.
    pub scope: Vec<String>,
    /// The bearer token. Only its hash is stored; it cannot be shown again.
    pub token: String,
}

/// `GET /v1/tokens`.
#[derive(ToSchema)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// `GET /v1/policies`.
#[derive(ToSchema)]
pub struct PolicyList {
    pub policies: Vec<SecurityPolicy>,
}

/// `DELETE /v1/policies/{name}`: the policy as it was.
#[derive(ToSchema)]
pub struct PolicyDeleted {
    pub deleted: SecurityPolicy,
}

/// `GET /v1/policies/{name}/impact`.
#[derive(ToSchema)]
pub struct PolicyImpactReport {
    pub policy: SecurityPolicy,
    pub impact: PolicyImpact,
    /// The containers running now that enforcing the policy would stop if recreated.
    pub running: super::policies::RunningImpact,
}

/// `GET /v1/signing-rules`.
#[derive(ToSchema)]
pub struct RuleList {
    pub rules: Vec<SigningRule>,
}

/// `DELETE /v1/signing-rules/{name}`: the rule as it was.
#[derive(ToSchema)]
pub struct RuleDeleted {
    /// Always `true`.
    pub deleted: bool,
    pub rule: SigningRule,
}

/// `GET /v1/images`.
#[derive(ToSchema)]
pub struct TrustedImageList {
    pub images: Vec<TrustedImage>,
}

/// `POST /v1/admission-decisions`: how many decisions were new.
#[derive(ToSchema)]
pub struct DecisionsRecorded {
    pub recorded: u64,
    /// Decisions already reported before (the same batch sent again).
    pub duplicates: u64,
}

/// `GET /v1/admission-decisions`.
#[derive(ToSchema)]
pub struct DecisionList {
    pub decisions: Vec<AdmissionDecision>,
}

/// `GET /v1/webhooks/stats`: each receiver's counters since the process started.
#[derive(ToSchema)]
pub struct WebhookCounters {
    /// By receiver: `distribution`, `harbor`, `acr`, `generic`, and `KIND/NAME` for
    /// each named receiver.
    pub receivers: BTreeMap<String, ReceiverCounts>,
}
