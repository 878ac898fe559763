//! The records signet keeps: witnesses and their key versions, sign requests, jobs,
//! signature records, API token roles and audit entries.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::{PublicKey, SignatureAlgorithm};
use crate::digest::Digest;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {name:?} is invalid: use 1 to 63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
}

/// The pattern [`validate_name`] enforces, for the JSON Schemas and the API document.
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";

/// Validates the names of witnesses, policies, rules and tokens: they appear in URLs,
/// metrics labels and event subjects, so they are kept to a safe alphabet.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            name: name.to_owned(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WitnessState {
    Active,
    Revoked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyVersionState {
    Active,
    Revoked,
}

/// One version of a witness's KMS key. New signatures use the primary version;
/// verification accepts every version that is not revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyVersion {
    /// The KMS's own version id (`1` for the local KMS, a UUID for AWS, ...).
    pub version: String,
    pub public_key: PublicKey,
    pub fingerprint: String,
    pub primary: bool,
    pub state: KeyVersionState,
    pub created_at: DateTime<Utc>,
}

/// A named signing identity bound to one asymmetric KMS key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Witness {
    pub name: String,
    pub kms_key: String,
    pub algorithm: SignatureAlgorithm,
    /// How its signatures are attached to images: `cosign` (the `.sig` tag, the default),
    /// `bundle` (a Sigstore bundle as an OCI 1.1 referrer, as cosign 3 writes) or `both`.
    #[serde(default)]
    pub format: SignatureFormat,
    pub description: String,
    pub state: WitnessState,
    pub key_versions: Vec<KeyVersion>,
    pub created_at: DateTime<Utc>,
}

/// How a witness's signatures are attached to images.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SignatureFormat {
    /// cosign's simple signing on the `sha256-<hex>.sig` tag (what cosign 2,
    /// policy-controller, Kyverno and containers/image read).
    #[default]
    Cosign,
    /// A Sigstore bundle v0.3 attached as an OCI 1.1 referrer (or in the referrers tag
    /// index), as cosign 3 writes by default.
    Bundle,
    /// Both: two KMS signatures per image, read by old and new verifiers alike.
    Both,
}

impl SignatureFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cosign => "cosign",
            Self::Bundle => "bundle",
            Self::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cosign" => Some(Self::Cosign),
            "bundle" => Some(Self::Bundle),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether the `.sig` tag is written.
    pub fn writes_cosign(self) -> bool {
        matches!(self, Self::Cosign | Self::Both)
    }

    /// Whether a bundle is written.
    pub fn writes_bundle(self) -> bool {
        matches!(self, Self::Bundle | Self::Both)
    }

    /// What writes both `self`'s and `other`'s artifacts.
    pub fn union(self, other: Self) -> Self {
        match (
            self.writes_cosign() || other.writes_cosign(),
            self.writes_bundle() || other.writes_bundle(),
        ) {
            (true, true) => Self::Both,
            (false, true) => Self::Bundle,
            _ => Self::Cosign,
        }
    }
}

/// The key reference of a verify-only witness: `pubkey:` and the fingerprint of its
/// first key. Such a witness holds public keys only (a vendor's, another team's, a
/// `cosign generate-key-pair` key): its signatures are made outside signet, which never
/// signs with it.
pub const VERIFY_ONLY_PREFIX: &str = "pubkey:";

impl Witness {
    /// Whether signet only verifies for this witness and never signs with it.
    pub fn is_verify_only(&self) -> bool {
        self.kms_key.starts_with(VERIFY_ONLY_PREFIX)
    }

    /// The version new signatures are made with.
    pub fn primary(&self) -> Option<&KeyVersion> {
        self.key_versions
            .iter()
            .find(|v| v.primary && v.state == KeyVersionState::Active)
    }

    /// Versions whose signatures are still accepted (none once the witness is revoked).
    pub fn live_versions(&self) -> impl Iterator<Item = &KeyVersion> {
        let active = self.state == WitnessState::Active;
        self.key_versions
            .iter()
            .filter(move |v| active && v.state == KeyVersionState::Active)
    }
}

/// What `POST /v1/sign`, `POST /v1/webhooks/generic` and a message on the
/// `signet.jobs.sign` queue carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Image reference; a tag is resolved to a digest before signing.
    pub image: String,
    /// Witness name.
    pub witness: String,
    /// cosign annotations, written into the payload's `optional` object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Attestations the witness signs about the same digest: in-toto Statements in DSSE
    /// envelopes, attached as `cosign attest` attaches them (`sha256-<hex>.att`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationRequest>,
    /// Whether the image itself is signed (a cosign signature). `false` asks for the
    /// attestations only, as `POST /v1/attest` does.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub sign: bool,
    /// How the signature is attached, instead of the witness's own `format` (a signing
    /// rule's `format`, or a pipeline's choice). An image the witness already signed is
    /// not signed again in another format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<SignatureFormat>,
}

impl SignRequest {
    /// A request to sign `image` with `witness`, nothing more.
    pub fn new(image: impl Into<String>, witness: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            witness: witness.into(),
            annotations: BTreeMap::new(),
            attestations: Vec::new(),
            sign: true,
            format: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// One attestation to sign: what kind of statement, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestationRequest {
    /// cosign's `--type` name (`slsaprovenance1`, `slsaprovenance`, `spdxjson`,
    /// `cyclonedx`, `vuln`, `openvex`, `link`, `custom`) or a predicate type URI.
    #[serde(rename = "type")]
    pub predicate_type: String,
    /// The predicate: a JSON object (SLSA provenance is checked against the fields its
    /// schema requires before anything is signed).
    #[schema(value_type = Object)]
    pub predicate: serde_json::Value,
}

/// An attestation signet signed and published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttestationRecord {
    pub id: Uuid,
    /// `registry/repository`.
    pub repository: String,
    pub digest: Digest,
    pub witness: String,
    pub key_version: String,
    pub key_fingerprint: String,
    pub algorithm: SignatureAlgorithm,
    /// The predicate type URI.
    pub predicate_type: String,
    /// The exact in-toto Statement that was signed (the DSSE payload).
    #[serde(with = "b64")]
    #[schema(value_type = String, content_encoding = "base64")]
    pub statement: Vec<u8>,
    /// The raw signature over DSSE's pre-authentication encoding of the statement.
    #[serde(with = "b64")]
    #[schema(value_type = String, content_encoding = "base64")]
    pub signature: Vec<u8>,
    /// Where it lives: `registry/repository:sha256-<hex>.att`.
    pub artifact: String,
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl AttestationRecord {
    /// The DSSE envelope as published.
    pub fn envelope(&self) -> crate::attestation::Envelope {
        crate::attestation::Envelope::signed(self.statement.clone(), self.signature.clone())
    }

    /// The statement's digest: what tells two attestations of one type apart.
    pub fn statement_digest(&self) -> Digest {
        Digest::of(&self.statement)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting on the queue (or for a retry).
    Queued,
    /// A worker holds it.
    Running,
    /// The signature is published and recorded.
    Succeeded,
    /// Given up: a non-retryable error, or too many attempts. Visible as a dead letter.
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request to sign one image with one witness, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub request: SignRequest,
    /// Where the request came from: `api`, `webhook:distribution`, `bus`, ...
    pub source: String,
    pub state: JobState,
    pub attempts: u32,
    /// The digest that was signed, once resolved.
    pub digest: Option<Digest>,
    /// The signature record, once succeeded.
    pub signature_id: Option<Uuid>,
    /// Why the job failed, or why the last attempt failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A signature signet made and published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignatureRecord {
    pub id: Uuid,
    /// `registry/repository`.
    pub repository: String,
    pub digest: Digest,
    pub witness: String,
    pub key_version: String,
    pub key_fingerprint: String,
    pub algorithm: SignatureAlgorithm,
    /// The exact payload bytes that were signed.
    #[serde(with = "b64")]
    #[schema(value_type = String, content_encoding = "base64")]
    pub payload: Vec<u8>,
    /// The raw signature over `payload`.
    #[serde(with = "b64")]
    #[schema(value_type = String, content_encoding = "base64")]
    pub signature: Vec<u8>,
    /// Where the signature lives: `registry/repository:sha256-<hex>.sig`.
    pub artifact: String,
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// Set once an operator revoked the signature: verifiers refuse it, although its
    /// layer stays in the registry, and signet does not sign the image again with the
    /// same witness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// Who revoked a signature, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revocation {
    pub at: DateTime<Utc>,
    /// The API token's name.
    pub by: String,
    pub reason: String,
}

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Request signatures and read their outcome; nothing else.
    Signer,
    /// Fetch trust bundles and report admission decisions (cluster verifiers).
    Verifier,
    /// Read everything an admin reads (witnesses, policies and their impact, signing
    /// rules, jobs, signatures, audit, images, workloads, tokens); change nothing.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Signer => "signer",
            Self::Verifier => "verifier",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "signer" => Some(Self::Signer),
            "verifier" => Some(Self::Verifier),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API token as stored: only a hash of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
    /// Signer tokens: globs over `registry/repository` (`*` within one path component,
    /// `**` across) the token may sign and read jobs of. Empty: any repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    /// Verifier tokens: the one cluster whose trust bundle they read and whose admission
    /// decisions they report. A verifier token without one is refused by those routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Refused from this time on; unset: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When a request last authenticated with it (to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// A console session: the id of the token it was opened with. A session is sent only
    /// as the browser's cookie, never as a bearer token, and ends when that token is
    /// revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_of: Option<Uuid>,
}

impl ApiToken {
    /// Whether the token has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who: `token:<name>`, `webhook:<receiver>`, `signer`, `system`.
    pub actor: String,
    /// What: `witness.create`, `signature.publish`, `job.retry`, ...
    pub action: String,
    /// On what: a witness name, an image digest, a job id.
    pub subject: String,
    pub detail: serde_json::Value,
}

/// An audit entry before the store numbers and timestamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: serde_json::Value,
}

impl NewAudit {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        subject: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            detail,
        }
    }
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("witness", "prod").is_ok());
        assert!(validate_name("witness", "prod-2.eu_west").is_ok());
        assert!(validate_name("witness", "").is_err());
        assert!(validate_name("witness", "Prod").is_err());
        assert!(validate_name("witness", "-prod").is_err());
        assert!(validate_name("witness", "a/b").is_err());
        assert!(validate_name("witness", &"a".repeat(64)).is_err());
        let msg = validate_name("witness", "A").unwrap_err().to_string();
        assert!(msg.starts_with("witness name \"A\" is invalid"), "{msg}");
    }

    #[test]
    fn sign_request_json_contract() {
        let r: SignRequest =
            serde_json::from_str(r#"{"image":"ghcr.io/a/b:v1","witness":"prod"}"#).expect("parse");
        assert!(r.annotations.is_empty());
        assert!(
            serde_json::from_str::<SignRequest>(r#"{"image":"x","witness":"p","extra":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<SignRequest>(r#"{"image":"x"}"#).is_err());
    }
}
