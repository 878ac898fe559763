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
    /// Attestations every image must also carry, signed by one of `witnesses`: SLSA
    /// provenance from a given builder, an SBOM, ... (see [`AttestationRequirement`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationRequirement>,
    pub note: String,
    /// Labels of the policy itself (`signet.dev/owner` marks the policies a
    /// `signet apply` owns and may prune).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An attestation a policy requires: an in-toto Statement of `type` about the image,
/// signed by one of the policy's witnesses, whose predicate meets every condition. With
/// no conditions, the attestation only has to exist ("an SBOM exists").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestationRequirement {
    /// cosign's `--type` name (`slsaprovenance1`, `spdxjson`, `cyclonedx`, ...) or a
    /// predicate type URI.
    #[serde(rename = "type")]
    pub predicate_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One condition on a predicate: an RFC 9535 JSONPath into it, and what the nodes it
/// selects must be. `equals` and `matches` need at least one node, and every node to
/// pass; `absent` needs none (`$.packages[?match(@.name, 'log4j.*')]`: no such package);
/// with neither, the path must select something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// `$.runDetails.builder.id`, `$.buildDefinition.externalParameters.source`, ...
    pub path: String,
    /// Every selected node equals this JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub equals: Option<serde_json::Value>,
    /// Every selected node is a string matching this glob (`*` matches any run of
    /// characters, `/` included; `?` one character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// The path selects nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
}

impl AttestationRequirement {
    /// The predicate type URI this requirement asks for.
    pub fn predicate_type_uri(&self) -> Result<String, String> {
        crate::attestation::predicate_type(&self.predicate_type).map_err(|e| e.to_string())
    }

    /// What is wrong with the requirement as written (empty: nothing).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = self.predicate_type_uri() {
            out.push(e);
        }
        if self.conditions.len() > MAX_CONDITIONS {
            out.push(format!(
                "at most {MAX_CONDITIONS} conditions per attestation, not {}",
                self.conditions.len()
            ));
        }
        for (i, c) in self.conditions.iter().enumerate() {
            out.extend(
                c.problems()
                    .into_iter()
                    .map(|p| format!("conditions[{i}]: {p}")),
            );
        }
        out
    }

    /// The first condition `predicate` does not meet, said in words; `None` when it meets
    /// them all. A condition that cannot be evaluated counts as unmet.
    pub fn first_unmet(&self, predicate: &serde_json::Value) -> Option<String> {
        self.conditions.iter().find_map(|c| c.unmet(predicate))
    }
}

/// Conditions one requirement may carry; each is a JSONPath query per admission review.
const MAX_CONDITIONS: usize = 16;

impl Condition {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = serde_json_path::JsonPath::parse(&self.path) {
            out.push(format!("path {:?} is not a JSONPath: {e}", self.path));
        }
        let ops = usize::from(self.equals.is_some())
            + usize::from(self.matches.is_some())
            + usize::from(self.absent);
        if ops > 1 {
            out.push("give at most one of equals, matches and absent".into());
        }
        if let Some(glob) = &self.matches {
            if let Err(e) = compile_glob(glob) {
                out.push(format!("matches: {e}"));
            }
        }
        out
    }

    /// Why `predicate` does not meet the condition, or `None` when it does.
    fn unmet(&self, predicate: &serde_json::Value) -> Option<String> {
        let path = match serde_json_path::JsonPath::parse(&self.path) {
            Ok(p) => p,
            Err(e) => return Some(format!("{} is not a JSONPath ({e})", self.path)),
        };
        let nodes = path.query(predicate).all();
        let shown = |v: &serde_json::Value| {
            let mut s = v.to_string();
            if s.len() > 120 {
                s.truncate(117);
                s.push_str("...");
            }
            s
        };
        if self.absent {
            return (!nodes.is_empty()).then(|| {
                format!(
                    "{} must select nothing, but selects {}",
                    self.path,
                    shown(nodes[0])
                )
            });
        }
        if nodes.is_empty() {
            return Some(format!("{} selects nothing", self.path));
        }
        if let Some(want) = &self.equals {
            return nodes
                .iter()
                .find(|n| **n != want)
                .map(|n| format!("{} is {}, not {}", self.path, shown(n), shown(want)));
        }
        if let Some(glob) = &self.matches {
            let Ok(matcher) = compile_glob(glob) else {
                return Some(format!("matches {glob:?} is not a glob"));
            };
            return nodes
                .iter()
                .find(|n| !n.as_str().is_some_and(|s| matcher.is_match(s)))
                .map(|n| {
                    format!(
                        "{} is {}, which does not match {glob:?}",
                        self.path,
                        shown(n)
                    )
                });
        }
        None
    }
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
    /// How the signatures this rule asks for are attached, instead of the witness's own
    /// `format`; absent, the witness's applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::SignatureFormat>,
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
    /// Set in an incremental bundle (`GET /v1/trust-bundle?since=R`): the revision of the
    /// bundle it continues. Policies and keys are whole; `revoked_signatures` lists only
    /// the signatures revoked after `since`, to add to those of that bundle
    /// ([`TrustBundle::apply`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

impl TrustBundle {
    /// Leaves out the revoked signatures made by a revoked key: that key no longer counts
    /// for any image, which says more.
    pub fn compact(
        revoked: Vec<RevokedSignature>,
        revoked_keys: &[TrustedKey],
    ) -> Vec<RevokedSignature> {
        revoked
            .into_iter()
            .filter(|r| {
                !revoked_keys
                    .iter()
                    .any(|k| k.witness == r.witness && k.fingerprint == r.key_fingerprint)
            })
            .collect()
    }

    /// The whole bundle an incremental one makes of what a verifier holds: the delta's
    /// policies and keys, and every revoked signature the verifier knew (from the last
    /// bundle and from events since) with the delta's added, compacted. A revocation is
    /// never taken back, so keeping what was known is always safe. Refused when the
    /// delta is for another cluster or does not continue `base_revision`, the revision
    /// of the last bundle the verifier installed.
    pub fn apply(&self, delta: TrustBundle, base_revision: i64) -> Result<TrustBundle, String> {
        if delta.cluster != self.cluster {
            return Err(format!(
                "an incremental bundle for cluster {}, not {}",
                delta.cluster, self.cluster
            ));
        }
        if delta.since != Some(base_revision) {
            return Err(format!(
                "an incremental bundle from revision {:?}, not {base_revision}",
                delta.since
            ));
        }
        let mut revoked = self.revoked_signatures.clone();
        for r in delta.revoked_signatures {
            if !revoked
                .iter()
                .any(|k| k.digest == r.digest && k.key_fingerprint == r.key_fingerprint)
            {
                revoked.push(r);
            }
        }
        Ok(TrustBundle {
            revoked_signatures: Self::compact(revoked, &delta.revoked_keys),
            since: None,
            ..delta
        })
    }
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
        for (i, a) in self.attestations.iter().enumerate() {
            p.extend(
                a.problems()
                    .into_iter()
                    .map(|e| format!("attestations[{i}]: {e}")),
            );
        }
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
            attestations: Vec::new(),
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

#[cfg(test)]
mod incremental_bundle_tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;

    fn key(witness: &str, version: &str) -> TrustedKey {
        let kp = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let der = kp.public_key().as_der().expect("der");
        let public_key = crate::PublicKey::parse(der.as_ref()).expect("parse");
        TrustedKey {
            witness: witness.into(),
            version: version.into(),
            fingerprint: public_key.fingerprint(),
            algorithm: crate::SignatureAlgorithm::RsaPkcs1Sha256,
            public_key,
        }
    }

    fn revoked(n: u8, key: &TrustedKey) -> RevokedSignature {
        RevokedSignature {
            repository: "r.example/app".into(),
            digest: crate::Digest::of(&[n]),
            witness: key.witness.clone(),
            key_fingerprint: key.fingerprint.clone(),
            revoked_at: DateTime::from_timestamp_millis(0).unwrap_or_default(),
            reason: String::new(),
        }
    }

    fn bundle(
        revision: i64,
        since: Option<i64>,
        keys: Vec<TrustedKey>,
        revoked_keys: Vec<TrustedKey>,
        revoked_signatures: Vec<RevokedSignature>,
    ) -> TrustBundle {
        TrustBundle {
            cluster: "c1".into(),
            revision,
            generated_at: DateTime::from_timestamp_millis(0).unwrap_or_default(),
            policies: Vec::new(),
            keys,
            revoked_keys,
            revoked_signatures,
            since,
        }
    }

    #[test]
    fn a_delta_adds_its_revocations_and_a_revoked_key_compacts_them() {
        let (v1, v2) = (key("release", "1"), key("release", "2"));
        let held = bundle(
            10,
            None,
            vec![v1.clone(), v2.clone()],
            vec![],
            vec![revoked(1, &v1), revoked(2, &v2)],
        );
        // Revision 12: one more signature revoked.
        let delta = bundle(
            12,
            Some(10),
            vec![v1.clone(), v2.clone()],
            vec![],
            vec![revoked(3, &v2)],
        );
        let whole = held.apply(delta.clone(), 10).expect("continues 10");
        assert_eq!((whole.revision, whole.since), (12, None));
        assert_eq!(
            whole.revoked_signatures,
            vec![revoked(1, &v1), revoked(2, &v2), revoked(3, &v2)]
        );
        // The same delta again adds nothing twice.
        let again = whole
            .apply(
                bundle(
                    12,
                    Some(12),
                    vec![v2.clone()],
                    vec![],
                    vec![revoked(3, &v2)],
                ),
                12,
            )
            .expect("continues 12");
        assert_eq!(again.revoked_signatures.len(), 3);
        // Revision 13: key version 1 revoked; its revoked signatures go, the key says more.
        let compacted = whole
            .apply(
                bundle(13, Some(12), vec![v2.clone()], vec![v1.clone()], vec![]),
                12,
            )
            .expect("continues 12");
        assert_eq!(
            compacted.revoked_signatures,
            vec![revoked(2, &v2), revoked(3, &v2)]
        );
        assert_eq!(
            TrustBundle::compact(held.revoked_signatures.clone(), std::slice::from_ref(&v1)),
            vec![revoked(2, &v2)]
        );
    }

    #[test]
    fn a_delta_from_another_revision_or_cluster_is_refused() {
        let v1 = key("release", "1");
        let held = bundle(10, None, vec![v1.clone()], vec![], vec![revoked(1, &v1)]);
        let err = held
            .apply(bundle(12, Some(9), vec![v1.clone()], vec![], vec![]), 10)
            .expect_err("a gap");
        assert!(err.contains("from revision Some(9), not 10"), "{err}");
        let err = held
            .apply(bundle(12, None, vec![v1.clone()], vec![], vec![]), 10)
            .expect_err("not incremental");
        assert!(err.contains("not 10"), "{err}");
        let mut other = bundle(12, Some(10), vec![v1], vec![], vec![]);
        other.cluster = "c2".into();
        let err = held.apply(other, 10).expect_err("another cluster");
        assert!(err.contains("cluster c2"), "{err}");
    }
}

#[cfg(test)]
mod attestation_requirement_tests {
    use super::*;
    use serde_json::json;

    fn req(conditions: serde_json::Value) -> AttestationRequirement {
        serde_json::from_value(json!({"type": "slsaprovenance1", "conditions": conditions}))
            .expect("requirement")
    }

    #[test]
    fn conditions_say_which_one_failed() {
        let provenance = json!({
            "buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                                "externalParameters": {"source": "git+https://github.com/acme/app@refs/heads/main"}},
            "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}
        });
        let r = req(json!([
            {"path": "$.runDetails.builder.id", "equals": "https://github.com/actions/runner/github-hosted"},
            {"path": "$.buildDefinition.externalParameters.source", "matches": "git+https://github.com/acme/*"},
        ]));
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        assert_eq!(r.first_unmet(&provenance), None);
        let other = req(
            json!([{"path": "$.runDetails.builder.id", "equals": "https://ci.acme.example/trusted"}]),
        );
        let why = other.first_unmet(&provenance).expect("unmet");
        assert!(
            why.contains(
                "$.runDetails.builder.id is \"https://github.com/actions/runner/github-hosted\""
            ),
            "{why}"
        );
        let missing = req(json!([{"path": "$.runDetails.metadata.invocationId"}]));
        assert_eq!(
            missing.first_unmet(&provenance).as_deref(),
            Some("$.runDetails.metadata.invocationId selects nothing")
        );
    }

    #[test]
    fn absent_finds_forbidden_packages() {
        let sbom = json!({"packages": [{"name": "openssl"}, {"name": "log4j-core", "versionInfo": "2.14.1"}]});
        let r = req(json!([{"path": "$.packages[?match(@.name, 'log4j.*')]", "absent": true}]));
        let why = r.first_unmet(&sbom).expect("log4j is there");
        assert!(
            why.contains("must select nothing") && why.contains("log4j-core"),
            "{why}"
        );
        assert_eq!(
            r.first_unmet(&json!({"packages": [{"name": "openssl"}]})),
            None
        );
        // "An SBOM exists": no conditions at all.
        assert_eq!(req(json!([])).first_unmet(&sbom), None);
    }

    #[test]
    fn bad_requirements_are_refused_with_every_problem() {
        let r: AttestationRequirement = serde_json::from_value(json!({
            "type": "not a type",
            "conditions": [
                {"path": "$.x =="},
                {"path": "$.a", "equals": 1, "absent": true},
                {"path": "$.b", "matches": "[unclosed"}
            ]
        }))
        .expect("parses");
        let p = r.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[1].starts_with("conditions[0]: path"), "{p:?}");
        assert!(p[2].contains("at most one"), "{p:?}");
        assert!(p[3].contains("matches"), "{p:?}");
        assert!(serde_json::from_value::<Condition>(json!({"path": "$", "regex": "x"})).is_err());
    }
}
