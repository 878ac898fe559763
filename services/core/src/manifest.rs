//! Policy as code: the documents `signet apply -f` reads (YAML or JSON), one object each,
//! in the shape Kubernetes users know (`apiVersion`, `kind`, `metadata`, `spec`). The
//! control plane is made to match them through the public API; `schemas/manifest.schema.json`
//! lets editors validate them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::LabelSelector;
use crate::policy::PolicyMode;

/// The `apiVersion` of every document.
pub const API_VERSION: &str = "signet.dev/v1";

/// The label `signet apply` puts on the policies and signing rules it creates, with the
/// `--owner` it ran with; `--prune` deletes only objects carrying its own owner.
pub const OWNER_LABEL: &str = "signet.dev/owner";

/// One object of desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind")]
pub enum Document {
    Witness(WitnessDocument),
    SecurityPolicy(PolicyDocument),
    SigningRule(RuleDocument),
}

impl Document {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Witness(_) => "Witness",
            Self::SecurityPolicy(_) => "SecurityPolicy",
            Self::SigningRule(_) => "SigningRule",
        }
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Self::Witness(d) => &d.metadata,
            Self::SecurityPolicy(d) => &d.metadata,
            Self::SigningRule(d) => &d.metadata,
        }
    }

    fn api_version(&self) -> &str {
        match self {
            Self::Witness(d) => &d.api_version,
            Self::SecurityPolicy(d) => &d.api_version,
            Self::SigningRule(d) => &d.api_version,
        }
    }

    /// Everything wrong with the document that can be told without the control plane
    /// (which checks the rest: witnesses that exist, KMS keys it can reach).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.api_version() != API_VERSION {
            p.push(format!(
                "apiVersion {:?} is not {API_VERSION:?}",
                self.api_version()
            ));
        }
        let m = self.metadata();
        let kind = match self {
            Self::Witness(_) => "witness",
            Self::SecurityPolicy(_) => "policy",
            Self::SigningRule(_) => "signing rule",
        };
        if let Err(e) = crate::validate_name(kind, &m.name) {
            p.push(e.to_string());
        }
        p.extend(crate::labels::label_problems(&m.labels));
        match self {
            Self::Witness(w) => {
                if w.spec.kms_key.is_some() == w.spec.public_key.is_some() {
                    p.push("a Witness needs exactly one of spec.kmsKey and spec.publicKey".into());
                }
                if !m.labels.is_empty() {
                    p.push("a Witness carries no labels (witnesses are never pruned)".into());
                }
            }
            Self::SecurityPolicy(d) => {
                if let Some(s) = &d.spec.namespace_selector {
                    p.extend(
                        s.problems()
                            .into_iter()
                            .map(|e| format!("namespaceSelector: {e}")),
                    );
                }
            }
            Self::SigningRule(_) => {}
        }
        p
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    /// Labels of the object (policies and signing rules). `signet.dev/owner` is set by
    /// `signet apply --owner`, not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `kind: Witness`: a signing identity bound to a KMS key, or a verify-only witness of a
/// public key. A witness's key is its identity: apply creates witnesses and never
/// re-points, rotates, revokes or deletes one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WitnessDocument {
    #[schema(example = "signet.dev/v1")]
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: WitnessSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WitnessSpec {
    /// The KMS key reference (`awskms:///arn:…`, `hashivault://name`, `alikms://…`,
    /// `local://name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// A PEM public key, for a verify-only witness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default)]
    pub description: String,
    /// `RSA_PKCS1_SHA256` (default), `RSA_PSS_SHA256`, or `ECDSA_P256_SHA256` for an
    /// ECDSA public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

/// `kind: SecurityPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    #[schema(example = "signet.dev/v1")]
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: PolicySpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    pub witnesses: Vec<String>,
    /// N of the M witnesses; default 1.
    #[serde(default = "one")]
    #[schema(default = 1)]
    pub require: u32,
    pub cluster: String,
    /// A namespace or a glob.
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// `enforce` (default), `warn` or `dry-run`.
    #[serde(default)]
    pub mode: PolicyMode,
    /// Off unless the document says so, as policies are.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub exemptions: Vec<String>,
    #[serde(default)]
    pub require_digest: bool,
    #[serde(default)]
    pub allow_break_glass: bool,
    /// Default true, as for policies created through the API.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub pin_digests: bool,
    /// Attestations every image must also carry (`type` and `conditions`).
    #[serde(default)]
    pub attestations: Vec<crate::AttestationRequirement>,
    #[serde(default)]
    pub note: String,
}

/// `kind: SigningRule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDocument {
    #[schema(example = "signet.dev/v1")]
    pub api_version: String,
    pub metadata: Metadata,
    pub spec: RuleSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// Globs over `registry/repository`.
    pub repositories: Vec<String>,
    /// A glob over the tag; default `*`.
    #[serde(default = "every_tag")]
    #[schema(default = "*")]
    pub tag_pattern: String,
    pub witness: String,
    /// Default true.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub enabled: bool,
    /// `cosign`, `bundle` or `both`, instead of the witness's own format; absent, the
    /// witness's applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::SignatureFormat>,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn every_tag() -> String {
    "*".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_and_refuses_unknown_fields() {
        let d: Document = serde_json::from_value(serde_json::json!({
            "apiVersion": "signet.dev/v1", "kind": "SecurityPolicy",
            "metadata": {"name": "prod"},
            "spec": {"witnesses": ["release"], "cluster": "c1", "namespace": "prod",
                     "mode": "dry-run",
                     "namespaceSelector": {"matchLabels": {"signet.dev/enforce": "true"}}},
        }))
        .expect("a policy document");
        let Document::SecurityPolicy(p) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(p.spec.require, 1);
        assert!(p.spec.pin_digests && !p.spec.enabled);
        assert_eq!(p.spec.mode, PolicyMode::DryRun);
        assert!(d.problems().is_empty(), "{:?}", d.problems());

        let e = serde_json::from_value::<Document>(serde_json::json!({
            "apiVersion": "signet.dev/v1", "kind": "SigningRule", "metadata": {"name": "r"},
            "spec": {"repositories": ["reg/x/*"], "witness": "w", "tagPatern": "v*"},
        }))
        .expect_err("a misspelt field");
        assert!(e.to_string().contains("tagPatern"), "{e}");
        let e = serde_json::from_value::<Document>(serde_json::json!({
            "apiVersion": "signet.dev/v1", "kind": "Policy", "metadata": {"name": "r"}, "spec": {},
        }))
        .expect_err("an unknown kind");
        assert!(e.to_string().contains("Policy"), "{e}");
    }

    #[test]
    fn says_what_is_wrong_before_anything_is_sent() {
        let d: Document = serde_json::from_value(serde_json::json!({
            "apiVersion": "signet.dev/v2", "kind": "Witness",
            "metadata": {"name": "Release", "labels": {"team": "a"}},
            "spec": {},
        }))
        .expect("parses");
        let p = d.problems().join("; ");
        for want in [
            "apiVersion \"signet.dev/v2\"",
            "witness name \"Release\"",
            "exactly one of spec.kmsKey and spec.publicKey",
            "carries no labels",
        ] {
            assert!(p.contains(want), "{want}: {p}");
        }
    }
}
