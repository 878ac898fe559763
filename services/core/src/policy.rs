//! Security policies, signing rules and the trust bundle: what the control plane stores
//! and what a cluster's verifier enforces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::{PublicKey, SignatureAlgorithm};

/// What an enabled policy does with an image that does not satisfy it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// If set, the policy decides only for the namespaces `namespace` matches whose
    /// labels this selects (`signet.dev/enforce=true`): teams opt in with a label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<crate::labels::LabelSelector>,
    pub mode: PolicyMode,
    /// **false** until someone enables the policy.
    pub enabled: bool,
    /// Image patterns that need no signature (`registry.k8s.io/pause:*`,
    /// `*.k8s.io/**`): registry, repository and tag matched separately, `*` within one
    /// path component, `**` across.
    pub exemptions: Vec<String>,
    /// Refuse tag references outright, as kritis does; only `@sha256:` digests pass.
    pub require_digest: bool,
    /// Whether the `signet.dev/break-glass` annotation may let a workload through.
    pub allow_break_glass: bool,
    /// Whether `/mutate` rewrites each verified tag on a Pod to `tag@digest`, so the
    /// kubelet pulls exactly what was verified (Pods only: controllers keep their tags,
    /// and GitOps tools see no drift). On for new policies.
    #[serde(default)]
    pub pin_digests: bool,
    pub note: String,
    /// Labels of the policy itself (`signet.dev/owner` marks the policies a
    /// `signet apply` owns and may prune).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which pushed repositories are signed automatically, and by which witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SigningRule {
    pub name: String,
    /// Globs over `registry/repository` (`registry.example.com/team/*`).
    pub repositories: Vec<String>,
    /// A glob over the tag; `*` for every tag.
    pub tag_pattern: String,
    pub witness: String,
    pub enabled: bool,
    /// Labels of the rule (`signet.dev/owner`, as on policies).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One key a verifier may accept, with the witness and version it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustedKey {
    pub witness: String,
    pub version: String,
    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo.
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    pub fingerprint: String,
    pub algorithm: SignatureAlgorithm,
    pub public_key: PublicKey,
}

/// What a cluster's verifier needs to decide admissions without the control plane:
/// the cluster's policies and every live key of their witnesses. `revision` is the
/// store's outbox revision when the bundle was built; events with a higher revision
/// are newer than the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustBundle {
    pub cluster: String,
    pub revision: i64,
    pub generated_at: DateTime<Utc>,
    pub policies: Vec<SecurityPolicy>,
    pub keys: Vec<TrustedKey>,
    /// Keys of the same witnesses that no longer count (a revoked witness or key
    /// version). Never trusted; they let a verifier say "signed, but by a revoked key"
    /// instead of "unsigned".
    /// (Read with a default, for bundles kept on disk by older verifiers; always written.)
    #[serde(default)]
    #[schema(required = true)]
    pub revoked_keys: Vec<TrustedKey>,
    /// Signatures by these witnesses that an operator revoked: refused although they
    /// verify (their layers stay in the registry).
    #[serde(default)]
    #[schema(required = true)]
    pub revoked_signatures: Vec<RevokedSignature>,
}

/// One revoked signature, as a verifier needs it: which image, which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokedSignature {
    /// `registry/repository`.
    pub repository: String,
    pub digest: crate::Digest,
    pub witness: String,
    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo of the key that made it.
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    pub key_fingerprint: String,
    pub revoked_at: DateTime<Utc>,
    pub reason: String,
}

impl RevokedSignature {
    /// The trust-bundle entry of `record`; `None` while it is not revoked.
    pub fn of(record: &crate::SignatureRecord) -> Option<Self> {
        let revocation = record.revoked.as_ref()?;
        Some(Self {
            repository: record.repository.clone(),
            digest: record.digest.clone(),
            witness: record.witness.clone(),
            key_fingerprint: record.key_fingerprint.clone(),
            revoked_at: revocation.at,
            reason: revocation.reason.clone(),
        })
    }
}

/// What changed about a policy; the data of a `policy.updated` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyUpdate {
    pub action: PolicyAction,
    /// The policy after the change (before it, for `deleted`).
    pub policy: SecurityPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    Created,
    Updated,
    Enabled,
    Disabled,
    Deleted,
}

impl PolicyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Deleted => "deleted",
        }
    }
}

/// Compiles a namespace glob the way policies match namespaces: `*` and `?` match any
/// characters, `[...]` a class. The same rules in the control plane, which refuses a bad
/// glob, and in the verifier, which matches with it. Image exemptions are not namespace
/// globs: they are [`crate::pattern::ImagePattern`]s.
pub fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a valid glob: {}", e.kind()))
}

impl SecurityPolicy {
    /// Everything wrong with the policy, so the caller can report it all at once.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = crate::validate_name("policy", &self.name) {
            p.push(e.to_string());
        }
        if let Err(e) = crate::validate_name("cluster", &self.cluster) {
            p.push(e.to_string());
        }
        if self.witnesses.is_empty() {
            p.push("a policy needs at least one witness".to_owned());
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            if self.witnesses[..i].contains(w) {
                p.push(format!("witness {w:?} is listed twice"));
            }
        }
        let m = self.witnesses.len();
        if m > 0 && (self.require < 1 || self.require as usize > m) {
            p.push(format!(
                "require must be between 1 and the number of witnesses ({m}), not {}",
                self.require
            ));
        }
        if self.namespace.trim().is_empty() {
            p.push("namespace must be a namespace name or a glob such as team-*".to_owned());
        } else if let Err(e) = compile_glob(&self.namespace) {
            p.push(format!("namespace {e}"));
        }
        if let Some(selector) = &self.namespace_selector {
            p.extend(
                selector
                    .problems()
                    .into_iter()
                    .map(|e| format!("namespace selector: {e}")),
            );
        }
        p.extend(crate::labels::label_problems(&self.labels));
        for e in &self.exemptions {
            if e.trim().is_empty() {
                p.push("an image exemption must not be empty".to_owned());
            } else if let Err(e) = crate::pattern::ImagePattern::compile(e) {
                p.push(format!("image exemption {e}"));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SecurityPolicy {
        let t = DateTime::from_timestamp_millis(0).unwrap_or_default();
        SecurityPolicy {
            labels: Default::default(),
            name: "prod-images".into(),
            witnesses: vec!["release".into(), "qa".into()],
            require: 1,
            cluster: "c1".into(),
            namespace: "prod".into(),
            namespace_selector: None,
            mode: PolicyMode::Enforce,
            enabled: false,
            exemptions: vec!["registry.k8s.io/pause:*".into()],
            require_digest: false,
            allow_break_glass: false,
            pin_digests: false,
            note: String::new(),
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn a_sound_policy_has_no_problems() {
        assert!(policy().problems().is_empty(), "{:?}", policy().problems());
        let mut p = policy();
        p.require = 2;
        p.namespace = "team-*".into();
        assert!(p.problems().is_empty(), "{:?}", p.problems());
    }

    #[test]
    fn every_problem_is_reported() {
        let mut p = policy();
        p.name = "Bad Name".into();
        p.require = 4;
        p.namespace = "team-[".into();
        p.exemptions.push(String::new());
        p.witnesses.push("qa".into());
        let problems = p.problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems.iter().any(|m| m.contains("between 1 and")));
        assert!(problems.iter().any(|m| m.contains("listed twice")));
        assert!(problems
            .iter()
            .any(|m| m.starts_with("namespace \"team-[\"")));
        let mut none = policy();
        none.witnesses.clear();
        assert_eq!(none.problems(), vec!["a policy needs at least one witness"]);
        let mut zero = policy();
        zero.require = 0;
        assert_eq!(zero.problems().len(), 1);
    }

    #[test]
    fn namespace_globs() {
        assert!(compile_glob("team-*").expect("glob").is_match("team-a"));
        assert!(!compile_glob("team-*").expect("glob").is_match("prod"));
        assert!(compile_glob("a[").is_err());
    }

    #[test]
    fn exemptions_are_image_patterns() {
        let mut p = policy();
        p.exemptions = vec!["*.k8s.io/**".into(), "registry.k8s.io/[".into()];
        let problems = p.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("image exemption"), "{problems:?}");
    }

    #[test]
    fn policy_json_contract() {
        let v = serde_json::to_value(PolicyUpdate {
            action: PolicyAction::Enabled,
            policy: policy(),
        })
        .expect("json");
        assert_eq!(v["action"], "enabled");
        assert_eq!(v["policy"]["mode"], "enforce");
        assert_eq!(v["policy"]["enabled"], false);
        let mut p = policy();
        p.mode = PolicyMode::DryRun;
        assert_eq!(serde_json::to_value(&p).expect("json")["mode"], "dry-run");
    }

    #[test]
    fn bundles_without_revoked_keys_still_parse() {
        let b: TrustBundle = serde_json::from_str(
            r#"{"cluster":"c1","revision":7,"generated_at":"2024-01-01T00:00:00Z","policies":[],"keys":[]}"#,
        )
        .expect("bundle");
        assert!(b.revoked_keys.is_empty());
        assert_eq!(b.revision, 7);
    }
}
