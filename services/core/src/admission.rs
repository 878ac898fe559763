//! Admission decisions: what a cluster's verifier decided about one workload under one
//! policy, as it reports them to the control plane (in every mode, so a dry-run policy's
//! impact can be measured before it is enforced).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::policy::PolicyMode;

/// The annotation that lets a workload through a denial where the policy allows it.
/// Its value is the reason, which is audited.
pub const BREAK_GLASS_ANNOTATION: &str = "signet.dev/break-glass";
/// The annotation `POST /mutate` adds: the verified digests and their witnesses.
pub const VERIFIED_ANNOTATION: &str = "signet.dev/verified-images";

/// What happened to a workload under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionOutcome {
    /// Every image satisfied the policy.
    Allowed,
    /// An enforce policy refused the workload.
    Denied,
    /// A warn policy let a failing workload through with a warning.
    Warned,
    /// A dry-run policy would have denied it; it was allowed.
    WouldDeny,
    /// An enforce policy would have denied it; a break-glass annotation let it through.
    BreakGlass,
}

impl AdmissionOutcome {
    pub const ALL: [AdmissionOutcome; 5] = [
        Self::Allowed,
        Self::Denied,
        Self::Warned,
        Self::WouldDeny,
        Self::BreakGlass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::WouldDeny => "would_deny",
            Self::BreakGlass => "break_glass",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Whether the policy was not satisfied (whatever the mode made of it).
    pub fn failed(self) -> bool {
        !matches!(self, Self::Allowed)
    }
}

impl fmt::Display for AdmissionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an image did not satisfy a policy.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DenialReason {
    /// No signature from the policy's witnesses (or too few of them).
    Unsigned,
    /// Signatures exist, but none verifies under the witnesses' keys for this digest.
    InvalidSignature,
    /// Signed by a witness, or a key version, that has been revoked.
    Revoked,
    /// The tag could not be resolved to a digest: it does not exist.
    TagNotResolvable,
    /// The registry could not be asked in time (down, slow, or refusing us).
    RegistryUnreachable,
    /// The policy requires `@sha256:` digests and the image names a tag.
    DigestRequired,
    /// The image reference cannot be parsed.
    InvalidReference,
    /// Signed, but an attestation the policy requires (SLSA provenance, an SBOM, ...) is
    /// missing: none of that type about the digest, by the policy's witnesses.
    AttestationMissing,
    /// The required attestation exists, but its predicate does not meet a condition of
    /// the policy (the detail says which).
    AttestationUnmet,
}

impl DenialReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::InvalidSignature => "invalid-signature",
            Self::Revoked => "revoked",
            Self::TagNotResolvable => "tag-not-resolvable",
            Self::RegistryUnreachable => "registry-unreachable",
            Self::DigestRequired => "digest-required",
            Self::InvalidReference => "invalid-reference",
            Self::AttestationMissing => "attestation-missing",
            Self::AttestationUnmet => "attestation-unmet",
        }
    }

    /// Failures that say nothing about the image itself, only that it could not be
    /// checked now: never cached as a denial.
    pub fn transient(self) -> bool {
        matches!(self, Self::RegistryUnreachable)
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image of a workload under one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageVerdict {
    /// As written in the pod spec.
    pub image: String,
    /// The digest that was checked (a tag resolved through the registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Witnesses whose valid signatures were found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<String>,
    /// Matched one of the policy's exemptions; not checked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exempt: bool,
    /// Why it failed; `None` when it satisfied the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DenialReason>,
    /// The reason in words, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What a verifier decided about one workload under one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdmissionDecision {
    pub at: DateTime<Utc>,
    pub cluster: String,
    /// The AdmissionRequest uid, to match the API server's audit log.
    pub uid: String,
    pub namespace: String,
    /// `Pod`, `Deployment`, `CronJob`, ...
    pub kind: String,
    pub name: String,
    /// `CREATE` or `UPDATE`.
    pub operation: String,
    pub policy: String,
    pub mode: PolicyMode,
    pub outcome: AdmissionOutcome,
    pub images: Vec<ImageVerdict>,
    /// What the API server was told (the denial message or warning).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The break-glass annotation's reason, when one was present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    /// The API server's `dryRun`: nothing was persisted in the cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Who asked the API server for the change (`userInfo.username` of the review): a
    /// person for `kubectl apply`, a controller's service account for the Pods it makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The requester's groups (`userInfo.groups`), as the API server authenticated them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for o in AdmissionOutcome::ALL {
            assert_eq!(AdmissionOutcome::parse(o.as_str()), Some(o));
            assert_eq!(
                serde_json::to_value(o).expect("json"),
                serde_json::Value::String(o.as_str().to_owned())
            );
        }
        assert!(!AdmissionOutcome::Allowed.failed());
        assert!(AdmissionOutcome::WouldDeny.failed());
        for r in [
            DenialReason::Unsigned,
            DenialReason::InvalidSignature,
            DenialReason::Revoked,
            DenialReason::TagNotResolvable,
            DenialReason::RegistryUnreachable,
            DenialReason::DigestRequired,
            DenialReason::InvalidReference,
        ] {
            assert_eq!(
                serde_json::to_value(r).expect("json"),
                serde_json::Value::String(r.as_str().to_owned())
            );
        }
        assert!(DenialReason::RegistryUnreachable.transient());
        assert!(!DenialReason::Unsigned.transient());
    }

    #[test]
    fn decision_json_is_compact() {
        let d = AdmissionDecision {
            at: DateTime::from_timestamp_millis(0).unwrap_or_default(),
            cluster: "c1".into(),
            uid: "u".into(),
            namespace: "prod".into(),
            kind: "Pod".into(),
            name: "web".into(),
            operation: "CREATE".into(),
            policy: "p".into(),
            mode: PolicyMode::DryRun,
            outcome: AdmissionOutcome::WouldDeny,
            images: vec![ImageVerdict {
                image: "nginx".into(),
                digest: None,
                witnesses: vec![],
                exempt: false,
                reason: Some(DenialReason::Unsigned),
                detail: "no signature".into(),
            }],
            message: String::new(),
            break_glass: None,
            dry_run: false,
            user: None,
            groups: Vec::new(),
        };
        let v = serde_json::to_value(&d).expect("json");
        assert_eq!(v["outcome"], "would_deny");
        assert_eq!(v["images"][0]["reason"], "unsigned");
        assert!(v["images"][0].get("exempt").is_none());
        assert!(v.get("break_glass").is_none());
        let back: AdmissionDecision = serde_json::from_value(v).expect("parse");
        assert_eq!(back, d);
    }
}
