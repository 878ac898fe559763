//! Security policies, signing rules and the trust bundle: what the control plane stores
//! and what a cluster's verifier enforces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{PublicKey, SignatureAlgorithm};

/// What an enabled policy does with an image that does not satisfy it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    /// Deny the workload.
    #[default]
    Enforce,
    /// Allow it, with an admission warning.
    Warn,
    /// Allow it silently, and record what would have been denied.
    DryRun,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Warn => "warn",
            Self::DryRun => "dry-run",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(Self::Enforce),
            "warn" => Some(Self::Warn),
            "dry-run" | "dryrun" | "dry_run" => Some(Self::DryRun),
            _ => None,
        }
    }
}

/// Binds witnesses to a cluster and namespace: only images with valid signatures from
/// `require` of `witnesses` may start there. Off until enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityPolicy {
    pub name: String,
    /// Witness names.
    pub witnesses: Vec<String>,
    /// How many of `witnesses` must have signed (N of M); at least 1.
    pub require: u32,
    /// The cluster name verifiers identify themselves with.
    pub cluster: String,
    /// An exact namespace or a glob (`team-*`).
    pub namespace: String,
    pub mode: PolicyMode,
    /// **false** until someone enables the policy.
    pub enabled: bool,
    /// Image reference globs that need no signature (`registry.k8s.io/pause:*`).
    pub exemptions: Vec<String>,
    /// Refuse tag references outright, as kritis does; only `@sha256:` digests pass.
    pub require_digest: bool,
    /// Whether the `signet.dev/break-glass` annotation may let a workload through.
    pub allow_break_glass: bool,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which pushed repositories are signed automatically, and by which witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningRule {
    pub name: String,
    /// Globs over `registry/repository` (`registry.example.com/team/*`).
    pub repositories: Vec<String>,
    /// A glob over the tag; `*` for every tag.
    pub tag_pattern: String,
    pub witness: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One key a verifier may accept, with the witness and version it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    pub witness: String,
    pub version: String,
    pub fingerprint: String,
    pub algorithm: SignatureAlgorithm,
    pub public_key: PublicKey,
}

/// What a cluster's verifier needs to decide admissions without the control plane:
/// the cluster's policies and every live key of their witnesses. `revision` is the
/// store's outbox revision when the bundle was built; events with a higher revision
/// are newer than the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustBundle {
    pub cluster: String,
    pub revision: i64,
    pub generated_at: DateTime<Utc>,
    pub policies: Vec<SecurityPolicy>,
    pub keys: Vec<TrustedKey>,
}
