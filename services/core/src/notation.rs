//! Notary Project signatures, as the `notation` CLI attaches them to an image: read
//! strictly and checked against a verify-only witness's pinned key.
//!
//! What `notation sign` (v1.3.2, `notation cert generate-test` key) pushes, by digest, as
//! an OCI 1.1 referrer of the image: an image manifest with no top-level `artifactType`,
//! config media type [`NOTARY_SIGNATURE_ARTIFACT_TYPE`] (the `{}` blob; registries report
//! it as the referrer's `artifactType`), the image as `subject`, annotations
//! [`THUMBPRINT_ANNOTATION`] (a JSON array string of the lowercase hex SHA-256 of each
//! certificate of the chain) and `org.opencontainers.image.created`, and one layer, the
//! envelope: [`JWS_MEDIA_TYPE`] by default, [`COSE_MEDIA_TYPE`] with
//! `--signature-format cose`.
//!
//! The JWS envelope is the flattened JSON serialization:
//!
//! ```json
//! {"payload": "<base64url of the payload>",
//!  "protected": "<base64url of {\"alg\":\"PS256\",\"crit\":[\"io.cncf.notary.signingScheme\"],
//!                \"cty\":\"application/vnd.cncf.notary.payload.v1+json\",
//!                \"io.cncf.notary.signingScheme\":\"notary.x509\",
//!                \"io.cncf.notary.signingTime\":\"2026-12-06T06:09:29Z\"}>",
//!  "header": {"x5c": ["<base64 of the leaf certificate's DER>", ...],
//!             "io.cncf.notary.signingAgent": "notation-go/1.3.2"},
//!  "signature": "<base64url>"}
//! ```
//!
//! signed over `protected || "." || payload` as written. The COSE envelope is a tagged
//! COSE_Sign1 (tag 18) with the same attributes: protected `{1: -37 (PS256), 2:
//! ["io.cncf.notary.signingScheme"], 3: "application/vnd.cncf.notary.payload.v1+json",
//! "io.cncf.notary.signingScheme": "notary.x509", "io.cncf.notary.signingTime": 1(<epoch
//! seconds>)}`, unprotected `{33 (x5chain): [<leaf DER>, ...],
//! "io.cncf.notary.signingAgent": "notation-go/1.3.2"}`, the payload embedded, signed over
//! the `Signature1` Sig_structure. `notation sign --expiry` adds
//! `io.cncf.notary.expiry`, listed in `crit`. The payload is
//! `{"targetArtifact": {"digest": "sha256:...", "mediaType": "...", "size": N}}`, with
//! `annotations` when the signer adds user metadata.
//!
//! What is checked, after the Notary Project signature specification and its JWS and
//! COSE envelope specifications: `alg` one of PS256/384/512 and ES256/384/512 and the one
//! the leaf certificate's key calls for (RSA-2048 PS256, RSA-3072 PS384, RSA-4096 PS512,
//! P-256 ES256); `cty` the Notary payload v1; `crit` present, naming
//! `io.cncf.notary.signingScheme` and every critical attribute present, naming only
//! attributes present and understood (so a signature that needs a verification plugin is
//! refused); signing scheme `notary.x509` (`notary.x509.signingAuthority`, whose
//! authentic signing time comes from a signing authority's timestamp, is refused: signet
//! does not implement it); a signing time; no expiry at or before now; the leaf
//! certificate's key the witness's key (SubjectPublicKeyInfo fingerprints equal), the
//! leaf fit for code signing (key usage, basic constraints, extended key usage, no SHA-1
//! signature), and valid at the signing time and now.
//!
//! The witness pins the key, so no certificate chain is walked and the rest of the chain
//! (intermediates, root) is only required to be well-formed certificates. A
//! timestamp countersignature (`io.cncf.notary.timestampSignature`) is not checked; without
//! it the specification requires the certificate to be valid now, and that is what is
//! enforced. Revocation (CRL, OCSP) is not checked.
//!
//! [`NotationSignature::verify`] proves only that the witness signed the descriptor it
//! returns: the caller checks that it names the image's digest, since whoever can push to
//! a repository can attach any signature to any image there.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use aws_lc_rs::signature::{self as lc, UnparsedPublicKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use coset::cbor::value::Value as Cbor;
use coset::iana::EnumI64 as _;
use coset::TaggedCborSerializable as _;
use coset::{iana, CoseSign1, Label, RegisteredLabel, RegisteredLabelWithPrivate};
use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

use crate::{Digest, DigestError, PublicKey};

/// The config media type of a Notation signature manifest, which registries report as
/// the referrer's `artifactType`.
pub const NOTARY_SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// The layer media type of a JWS envelope.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// The layer media type of a COSE_Sign1 envelope.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// The content type of the signed payload.
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// Signature manifest annotation: a JSON array string of the hex SHA-256 of each
/// certificate of the envelope's chain, leaf first.
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
/// The signing scheme signet verifies: an X.509 signing key, an unauthenticated signing
/// time.
pub const SCHEME_X509: &str = "notary.x509";
/// The signing scheme signet refuses: a signing authority's authentic signing time.
pub const SCHEME_SIGNING_AUTHORITY: &str = "notary.x509.signingAuthority";
/// The largest envelope read. What notation writes is 1.5 to 3 KiB with a one-certificate
/// chain; a long chain and a timestamp token add a few KiB each.
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const VERIFICATION_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
const VERIFICATION_PLUGIN_MIN_VERSION: &str = "io.cncf.notary.verificationPluginMinVersion";
const SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";
const TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";

/// The JWS registered header parameters (RFC 7515 and 7797), which `crit` must not list.
const JWS_REGISTERED: &[&str] = &[
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "b64",
];

/// Why a Notation signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotationError {
    #[error("the envelope's media type {0:?} is neither {JWS_MEDIA_TYPE} nor {COSE_MEDIA_TYPE}")]
    MediaType(String),
    #[error("the envelope is {0} bytes; signet reads at most {MAX_ENVELOPE_BYTES}")]
    TooLarge(usize),
    #[error("the {what} is malformed: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the {what} has duplicate key {key:?}")]
    DuplicateKey { what: &'static str, key: String },
    #[error("the {what} has unexpected field {key:?}")]
    UnexpectedField { what: &'static str, key: String },
    #[error("the {what} has no {key:?}")]
    MissingField { what: &'static str, key: String },
    #[error("the {what}'s {key:?} is not {expected}")]
    WrongType {
        what: &'static str,
        key: String,
        expected: &'static str,
    },
    #[error("signature algorithm {0} is not one of the Notary Project's (PS256, PS384, PS512, ES256, ES384, ES512)")]
    Algorithm(String),
    #[error("the payload's content type is {0:?}, not {PAYLOAD_CONTENT_TYPE}")]
    ContentType(String),
    #[error("signing scheme {0:?} is not a Notary Project scheme")]
    SigningScheme(String),
    #[error("signing scheme {SCHEME_SIGNING_AUTHORITY} (a signing authority's authentic signing time) is not supported; signet verifies {SCHEME_X509} signatures")]
    SigningAuthority,
    #[error("the critical headers are invalid: {0}")]
    Crit(String),
    #[error("header {0:?} is present but not listed in crit; the Notary Project requires it to be critical")]
    NotCritical(String),
    #[error("critical header {0:?} is not understood by signet")]
    UnknownCritical(String),
    #[error("the signature requires verification plugin {0:?}, which signet cannot run")]
    VerificationPlugin(String),
    #[error("header {header:?} is not a valid time: {value}")]
    Time { header: &'static str, value: String },
    #[error("the certificate chain is empty")]
    NoCertificate,
    #[error("certificate {index} of the chain is not a DER X.509 certificate: {detail}")]
    Certificate { index: usize, detail: String },
    #[error("the signing certificate is not fit for code signing: {0}")]
    LeafCertificate(String),
    #[error("the signing certificate's key cannot be a signet witness's: {0}")]
    UnsupportedKey(String),
    #[error("the signing certificate's key is {found}, not the witness's key {expected}")]
    KeyMismatch { expected: String, found: String },
    #[error("signature algorithm {alg} does not fit the signing key ({key}); the Notary Project requires {expected}")]
    AlgorithmMismatch {
        alg: NotationAlgorithm,
        key: String,
        expected: NotationAlgorithm,
    },
    #[error("the signature does not verify under key {fingerprint} with {alg}")]
    BadSignature {
        fingerprint: String,
        alg: NotationAlgorithm,
    },
    #[error("the signature was made at {signing_time}, outside the signing certificate's validity ({not_before} to {not_after})")]
    SignedOutsideValidity {
        signing_time: DateTime<Utc>,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    },
    #[error("the signing certificate is not valid now ({now}): valid from {not_before} to {not_after}, and no authentic timestamp is checked")]
    CertificateNotValidNow {
        now: DateTime<Utc>,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    },
    #[error("the signature expired at {0}")]
    Expired(DateTime<Utc>),
    #[error("the payload's targetArtifact digest is not usable: {0}")]
    Digest(#[source] DigestError),
}

/// The envelope format, from the layer's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EnvelopeFormat {
    /// JWS JSON flattened serialization, [`JWS_MEDIA_TYPE`].
    Jws,
    /// COSE_Sign1_Tagged, [`COSE_MEDIA_TYPE`].
    Cose,
}

impl EnvelopeFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Jws => JWS_MEDIA_TYPE,
            Self::Cose => COSE_MEDIA_TYPE,
        }
    }
}

/// The signature algorithms the Notary Project allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum NotationAlgorithm {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl NotationAlgorithm {
    /// The JWS `alg` name.
    pub fn jws_name(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
        }
    }

    fn from_jws(name: &str) -> Option<Self> {
        [
            Self::Ps256,
            Self::Ps384,
            Self::Ps512,
            Self::Es256,
            Self::Es384,
            Self::Es512,
        ]
        .into_iter()
        .find(|a| a.jws_name() == name)
    }

    fn from_cose(alg: &coset::Algorithm) -> Option<Self> {
        match alg {
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS256) => Some(Self::Ps256),
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS384) => Some(Self::Ps384),
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS512) => Some(Self::Ps512),
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256) => Some(Self::Es256),
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384) => Some(Self::Es384),
            RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES512) => Some(Self::Es512),
            _ => None,
        }
    }

    /// The algorithm the Notary Project's algorithm selection gives a key; none for a key
    /// size it has no algorithm for.
    pub fn for_key(key: &PublicKey) -> Option<Self> {
        match (key.is_ec(), key.bits()) {
            // PublicKey holds P-256 keys only.
            (true, _) => Some(Self::Es256),
            (false, 2048) => Some(Self::Ps256),
            (false, 3072) => Some(Self::Ps384),
            (false, 4096) => Some(Self::Ps512),
            (false, _) => None,
        }
    }

    /// RSASSA-PSS with a digest-length salt (RFC 7518) or ECDSA with the fixed-length
    /// `r || s` signature that JWS and COSE both use.
    fn verification(self) -> &'static dyn lc::VerificationAlgorithm {
        match self {
            Self::Ps256 => &lc::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &lc::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &lc::RSA_PSS_2048_8192_SHA512,
            Self::Es256 => &lc::ECDSA_P256_SHA256_FIXED,
            Self::Es384 => &lc::ECDSA_P384_SHA384_FIXED,
            Self::Es512 => &lc::ECDSA_P521_SHA512_FIXED,
        }
    }
}

impl fmt::Display for NotationAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jws_name())
    }
}

/// The descriptor a Notation signature signs: the payload's `targetArtifact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetArtifact {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// User metadata (`notation sign --user-metadata`); `io.cncf.notary.*` keys are the
    /// Notary Project's own.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What the leaf certificate says that verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leaf {
    spki_der: Vec<u8>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    /// Why it is not fit for code signing, if it is not.
    unfit: Option<String>,
}

/// A parsed Notation signature envelope. Nothing in it is trusted until
/// [`NotationSignature::verify`] has checked it under a witness's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotationSignature {
    format: EnvelopeFormat,
    algorithm: NotationAlgorithm,
    signing_time: DateTime<Utc>,
    expiry: Option<DateTime<Utc>>,
    signing_agent: Option<String>,
    has_timestamp: bool,
    certificates: Vec<Vec<u8>>,
    leaf: Leaf,
    /// The bytes the signature covers: the JWS signing input or the COSE Sig_structure.
    signed: Vec<u8>,
    signature: Vec<u8>,
    target: TargetArtifact,
}

/// The protected attributes, read from either format.
#[derive(Default)]
struct Attributes {
    algorithm: Option<NotationAlgorithm>,
    content_type: Option<String>,
    crit: Option<Vec<String>>,
    scheme: Option<String>,
    signing_time: Option<DateTime<Utc>>,
    authentic_signing_time: bool,
    expiry: Option<DateTime<Utc>>,
    plugin: Option<String>,
    /// Every protected header name present (text names; a COSE integer label as its
    /// decimal form).
    present: Vec<String>,
}

/// The unprotected attributes, read from either format.
#[derive(Default)]
struct Unsigned {
    certificates: Option<Vec<Vec<u8>>>,
    signing_agent: Option<String>,
    has_timestamp: bool,
}

impl NotationSignature {
    /// Parses an envelope by the media type of the signature manifest's layer
    /// ([`JWS_MEDIA_TYPE`] or [`COSE_MEDIA_TYPE`]).
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Self, NotationError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(NotationError::TooLarge(bytes.len()));
        }
        let (format, envelope) = match media_type {
            JWS_MEDIA_TYPE => (EnvelopeFormat::Jws, parse_jws(bytes)?),
            COSE_MEDIA_TYPE => (EnvelopeFormat::Cose, parse_cose(bytes)?),
            other => return Err(NotationError::MediaType(other.to_owned())),
        };
        let Envelope {
            attributes,
            unsigned,
            payload,
            signed,
            signature,
        } = envelope;
        let Checked {
            algorithm,
            signing_time,
            expiry,
        } = check_attributes(attributes)?;
        let certificates = unsigned
            .certificates
            .ok_or_else(|| NotationError::MissingField {
                what: "unprotected header",
                key: match format {
                    EnvelopeFormat::Jws => "x5c".to_owned(),
                    EnvelopeFormat::Cose => "x5chain (33)".to_owned(),
                },
            })?;
        if certificates.is_empty() {
            return Err(NotationError::NoCertificate);
        }
        let mut leaf = None;
        for (index, der) in certificates.iter().enumerate() {
            let certificate =
                x509_cert::Certificate::from_der(der).map_err(|e| NotationError::Certificate {
                    index,
                    detail: e.to_string(),
                })?;
            if index == 0 {
                leaf = Some(read_leaf(&certificate)?);
            }
        }
        let leaf = leaf.ok_or(NotationError::NoCertificate)?;
        let target = parse_payload(&payload)?;
        Ok(Self {
            format,
            algorithm,
            signing_time,
            expiry,
            signing_agent: unsigned.signing_agent,
            has_timestamp: unsigned.has_timestamp,
            certificates,
            leaf,
            signed,
            signature,
            target,
        })
    }

    /// Checks the signature under `witness_key` now; see [`NotationSignature::verify_at`].
    pub fn verify(&self, witness_key: &PublicKey) -> Result<TargetArtifact, NotationError> {
        self.verify_at(witness_key, Utc::now())
    }

    /// Checks that the leaf certificate holds `witness_key` and is fit for code signing,
    /// that `alg` is the one that key calls for and the signature verifies, that the
    /// certificate was valid at the signing time and is at `now`, and that the signature
    /// has not expired at `now`. Returns the signed descriptor, which the caller must
    /// compare with the image it is checking.
    pub fn verify_at(
        &self,
        witness_key: &PublicKey,
        now: DateTime<Utc>,
    ) -> Result<TargetArtifact, NotationError> {
        let key = self.leaf_key()?;
        if key.fingerprint() != witness_key.fingerprint() {
            return Err(NotationError::KeyMismatch {
                expected: witness_key.fingerprint(),
                found: key.fingerprint(),
            });
        }
        let expected = NotationAlgorithm::for_key(&key).ok_or_else(|| {
            NotationError::UnsupportedKey(format!(
                "RSA-{}; the Notary Project signs with RSA-2048, 3072 or 4096",
                key.bits()
            ))
        })?;
        if self.algorithm != expected {
            return Err(NotationError::AlgorithmMismatch {
                alg: self.algorithm,
                key: describe(&key),
                expected,
            });
        }
        UnparsedPublicKey::new(self.algorithm.verification(), key.spki_der())
            .verify(&self.signed, &self.signature)
            .map_err(|_| NotationError::BadSignature {
                fingerprint: key.fingerprint(),
                alg: self.algorithm,
            })?;
        if let Some(why) = &self.leaf.unfit {
            return Err(NotationError::LeafCertificate(why.clone()));
        }
        let (not_before, not_after) = (self.leaf.not_before, self.leaf.not_after);
        if self.signing_time < not_before || self.signing_time > not_after {
            return Err(NotationError::SignedOutsideValidity {
                signing_time: self.signing_time,
                not_before,
                not_after,
            });
        }
        if now < not_before || now > not_after {
            return Err(NotationError::CertificateNotValidNow {
                now,
                not_before,
                not_after,
            });
        }
        if let Some(expiry) = self.expiry {
            if now >= expiry {
                return Err(NotationError::Expired(expiry));
            }
        }
        Ok(self.target.clone())
    }

    /// The leaf certificate's public key, to pick the witness to verify with. Refused when
    /// no signet witness can hold it (RSA under 2048 bits, EC other than P-256).
    pub fn leaf_key(&self) -> Result<PublicKey, NotationError> {
        PublicKey::parse(&self.leaf.spki_der)
            .map_err(|e| NotationError::UnsupportedKey(e.to_string()))
    }

    pub fn format(&self) -> EnvelopeFormat {
        self.format
    }

    pub fn algorithm(&self) -> NotationAlgorithm {
        self.algorithm
    }

    /// The signer's claimed signing time (not authenticated).
    pub fn signing_time(&self) -> DateTime<Utc> {
        self.signing_time
    }

    pub fn expiry(&self) -> Option<DateTime<Utc>> {
        self.expiry
    }

    /// The unsigned signing agent, for diagnostics only (`notation-go/1.3.2`).
    pub fn signing_agent(&self) -> Option<&str> {
        self.signing_agent.as_deref()
    }

    /// Whether the envelope carries a timestamp countersignature (never checked).
    pub fn has_timestamp(&self) -> bool {
        self.has_timestamp
    }

    /// The leaf certificate's validity period.
    pub fn leaf_validity(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.leaf.not_before, self.leaf.not_after)
    }

    /// The certificate chain's DER certificates, leaf first.
    pub fn certificates(&self) -> &[Vec<u8>] {
        &self.certificates
    }

    /// The lowercase hex SHA-256 of each certificate, leaf first: what
    /// [`THUMBPRINT_ANNOTATION`] lists.
    pub fn chain_thumbprints(&self) -> Vec<String> {
        self.certificates
            .iter()
            .map(|c| hex::encode(Sha256::digest(c)))
            .collect()
    }
}

fn describe(key: &PublicKey) -> String {
    if key.is_ec() {
        "ECDSA P-256".to_owned()
    } else {
        format!("RSA-{}", key.bits())
    }
}

/// The protected attributes once the specification's rules are applied.
struct Checked {
    algorithm: NotationAlgorithm,
    signing_time: DateTime<Utc>,
    expiry: Option<DateTime<Utc>>,
}

/// Applies the specification's rules to the protected attributes of either format.
fn check_attributes(a: Attributes) -> Result<Checked, NotationError> {
    let algorithm = a
        .algorithm
        .ok_or_else(|| missing("protected header", "alg"))?;
    match a.content_type.as_deref() {
        Some(PAYLOAD_CONTENT_TYPE) => {}
        Some(other) => return Err(NotationError::ContentType(other.to_owned())),
        None => return Err(missing("protected header", "cty")),
    }
    let crit = a.crit.ok_or_else(|| missing("protected header", "crit"))?;
    for (i, name) in crit.iter().enumerate() {
        if crit[..i].contains(name) {
            return Err(NotationError::Crit(format!("{name:?} is listed twice")));
        }
        if !a.present.contains(name) {
            return Err(NotationError::Crit(format!(
                "{name:?} is listed but not present"
            )));
        }
    }
    if !crit.iter().any(|c| c == SIGNING_SCHEME) {
        return Err(NotationError::Crit(format!(
            "{SIGNING_SCHEME} is not listed"
        )));
    }
    for must in [
        EXPIRY,
        AUTHENTIC_SIGNING_TIME,
        VERIFICATION_PLUGIN,
        VERIFICATION_PLUGIN_MIN_VERSION,
    ] {
        if a.present.iter().any(|p| p == must) && !crit.iter().any(|c| c == must) {
            return Err(NotationError::NotCritical(must.to_owned()));
        }
    }
    if let Some(plugin) = a.plugin {
        return Err(NotationError::VerificationPlugin(plugin));
    }
    if let Some(unknown) = crit
        .iter()
        .find(|c| ![SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME].contains(&c.as_str()))
    {
        return Err(NotationError::UnknownCritical(unknown.clone()));
    }
    match a.scheme.as_deref() {
        Some(SCHEME_X509) => {}
        Some(SCHEME_SIGNING_AUTHORITY) => return Err(NotationError::SigningAuthority),
        Some(other) => return Err(NotationError::SigningScheme(other.to_owned())),
        None => return Err(missing("protected header", SIGNING_SCHEME)),
    }
    if a.authentic_signing_time {
        return Err(NotationError::UnexpectedField {
            what: "protected header",
            key: format!("{AUTHENTIC_SIGNING_TIME} (only valid with {SCHEME_SIGNING_AUTHORITY})"),
        });
    }
    let signing_time = a
        .signing_time
        .ok_or_else(|| missing("protected header", SIGNING_TIME))?;
    Ok(Checked {
        algorithm,
        signing_time,
        expiry: a.expiry,
    })
}

fn missing(what: &'static str, key: &str) -> NotationError {
    NotationError::MissingField {
        what,
        key: key.to_owned(),
    }
}

/// The payload's `targetArtifact`, strictly: known fields only, no duplicate keys.
fn parse_payload(bytes: &[u8]) -> Result<TargetArtifact, NotationError> {
    const WHAT: &str = "payload";
    const TARGET: &str = "payload's targetArtifact";
    let payload = Object::parse(bytes, WHAT)?;
    payload.only(WHAT, &["targetArtifact"])?;
    let raw = payload
        .get("targetArtifact")
        .ok_or_else(|| missing(WHAT, "targetArtifact"))?;
    let target = Object::parse(raw.get().as_bytes(), TARGET)?;
    target.only(
        TARGET,
        &["mediaType", "digest", "size", "artifactType", "annotations"],
    )?;
    let media_type: String = target.required(TARGET, "mediaType", "a string")?;
    let digest: String = target.required(TARGET, "digest", "a string")?;
    let digest = Digest::parse(&digest).map_err(NotationError::Digest)?;
    let size: u64 = target.required(TARGET, "size", "a non-negative integer")?;
    let artifact_type: Option<String> = target.optional(TARGET, "artifactType", "a string")?;
    let mut annotations = BTreeMap::new();
    if let Some(raw) = target.get("annotations") {
        const ANNOTATIONS: &str = "payload's annotations";
        for (key, value) in Object::parse(raw.get().as_bytes(), ANNOTATIONS)?.fields {
            let value: String =
                serde_json::from_str(value.get()).map_err(|_| NotationError::WrongType {
                    what: ANNOTATIONS,
                    key: key.clone(),
                    expected: "a string",
                })?;
            annotations.insert(key, value);
        }
    }
    Ok(TargetArtifact {
        media_type,
        digest,
        size,
        artifact_type,
        annotations,
    })
}

/// An envelope taken apart, before the rules common to both formats are applied.
struct Envelope {
    attributes: Attributes,
    unsigned: Unsigned,
    payload: Vec<u8>,
    /// The bytes the signature covers.
    signed: Vec<u8>,
    signature: Vec<u8>,
}

/// A JWS JSON flattened serialization: exactly `payload`, `protected`, `header` and
/// `signature`.
fn parse_jws(bytes: &[u8]) -> Result<Envelope, NotationError> {
    const WHAT: &str = "JWS envelope";
    const PROTECTED: &str = "protected header";
    const HEADER: &str = "unprotected header";
    let envelope = Object::parse(bytes, WHAT)?;
    envelope.only(WHAT, &["payload", "protected", "header", "signature"])?;
    let protected_b64: String = envelope.required(WHAT, "protected", "a string")?;
    let payload_b64: String = envelope.required(WHAT, "payload", "a string")?;
    let signature_b64: String = envelope.required(WHAT, "signature", "a string")?;
    let header_raw = envelope
        .get("header")
        .ok_or_else(|| missing(WHAT, "header"))?;
    let protected = base64url(&protected_b64, "protected")?;
    let payload = base64url(&payload_b64, "payload")?;
    let signature = base64url(&signature_b64, "signature")?;

    let header = Object::parse(&protected, PROTECTED)?;
    let mut a = Attributes {
        present: header.fields.iter().map(|(k, _)| k.clone()).collect(),
        ..Attributes::default()
    };
    let alg: String = header.required(PROTECTED, "alg", "a string")?;
    a.algorithm = Some(NotationAlgorithm::from_jws(&alg).ok_or(NotationError::Algorithm(alg))?);
    a.content_type = header.optional(PROTECTED, "cty", "a string")?;
    a.crit = header.optional(PROTECTED, "crit", "a list of strings")?;
    if let Some(crit) = &a.crit {
        if crit.is_empty() {
            return Err(NotationError::Crit("crit is empty".to_owned()));
        }
        if let Some(registered) = crit.iter().find(|c| JWS_REGISTERED.contains(&c.as_str())) {
            return Err(NotationError::Crit(format!(
                "{registered:?} is a registered JWS header and may not be listed"
            )));
        }
    }
    a.scheme = header.optional(PROTECTED, SIGNING_SCHEME, "a string")?;
    a.signing_time = header
        .optional::<String>(PROTECTED, SIGNING_TIME, "a string")?
        .map(|t| rfc3339(SIGNING_TIME, &t))
        .transpose()?;
    a.expiry = header
        .optional::<String>(PROTECTED, EXPIRY, "a string")?
        .map(|t| rfc3339(EXPIRY, &t))
        .transpose()?;
    if let Some(t) = header.optional::<String>(PROTECTED, AUTHENTIC_SIGNING_TIME, "a string")? {
        rfc3339(AUTHENTIC_SIGNING_TIME, &t)?;
        a.authentic_signing_time = true;
    }
    a.plugin = header.optional(PROTECTED, VERIFICATION_PLUGIN, "a string")?;
    if let Some(min) =
        header.optional::<String>(PROTECTED, VERIFICATION_PLUGIN_MIN_VERSION, "a string")?
    {
        a.plugin
            .get_or_insert_with(|| format!("(unnamed) {min} or later"));
    }

    let unprotected = Object::parse(header_raw.get().as_bytes(), HEADER)?;
    let mut u = Unsigned::default();
    for (key, _) in &unprotected.fields {
        // RFC 7515 section 7.2.1: the two headers are disjoint; crit is always protected.
        if a.present.contains(key) || key == "crit" {
            return Err(NotationError::UnexpectedField {
                what: HEADER,
                key: key.clone(),
            });
        }
    }
    if let Some(chain) = unprotected.optional::<Vec<String>>(HEADER, "x5c", "a list of strings")? {
        u.certificates = Some(
            chain
                .iter()
                .map(|c| {
                    STANDARD.decode(c).map_err(|e| NotationError::Malformed {
                        what: "x5c certificate",
                        detail: format!("not base64: {e}"),
                    })
                })
                .collect::<Result<_, _>>()?,
        );
    }
    u.signing_agent = unprotected.optional(HEADER, SIGNING_AGENT, "a string")?;
    u.has_timestamp = unprotected
        .optional::<String>(HEADER, TIMESTAMP_SIGNATURE, "a string")?
        .is_some();

    Ok(Envelope {
        attributes: a,
        unsigned: u,
        payload,
        signed: format!("{protected_b64}.{payload_b64}").into_bytes(),
        signature,
    })
}

fn base64url(text: &str, what: &'static str) -> Result<Vec<u8>, NotationError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| NotationError::Malformed {
            what,
            detail: format!("not unpadded base64url: {e}"),
        })
}

fn rfc3339(header: &'static str, value: &str) -> Result<DateTime<Utc>, NotationError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| NotationError::Time {
            header,
            value: format!("{value:?}: {e}"),
        })
}

/// A COSE_Sign1_Tagged envelope with an embedded payload.
fn parse_cose(bytes: &[u8]) -> Result<Envelope, NotationError> {
    const PROTECTED: &str = "protected header";
    const HEADER: &str = "unprotected header";
    let sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|e| NotationError::Malformed {
        what: "COSE_Sign1_Tagged envelope",
        detail: e.to_string(),
    })?;
    let payload = sign1
        .payload
        .clone()
        .ok_or_else(|| NotationError::Malformed {
            what: "COSE_Sign1_Tagged envelope",
            detail: "the payload is detached".to_owned(),
        })?;
    let p = &sign1.protected.header;
    let mut a = Attributes::default();
    let mut u = Unsigned::default();
    if p.alg.is_some() {
        a.present.push("1".to_owned());
    }
    if !p.crit.is_empty() {
        a.present.push("2".to_owned());
    }
    if p.content_type.is_some() {
        a.present.push("3".to_owned());
    }
    if !p.key_id.is_empty() {
        a.present.push("4".to_owned());
    }
    if !p.iv.is_empty() || !p.partial_iv.is_empty() || !p.counter_signatures.is_empty() {
        return Err(NotationError::UnexpectedField {
            what: PROTECTED,
            key: "iv, partial iv or counter signature".to_owned(),
        });
    }
    for (label, _) in &p.rest {
        a.present.push(label_name(label));
    }
    if let Some(alg) = &p.alg {
        a.algorithm = Some(
            NotationAlgorithm::from_cose(alg)
                .ok_or_else(|| NotationError::Algorithm(format!("{alg:?}")))?,
        );
    }
    a.content_type = match &p.content_type {
        None => None,
        Some(RegisteredLabel::Text(t)) => Some(t.clone()),
        Some(RegisteredLabel::Assigned(format)) => Some(format!("CoAP content format {format:?}")),
    };
    if !p.crit.is_empty() {
        let mut crit = Vec::with_capacity(p.crit.len());
        for c in &p.crit {
            let label = match c {
                RegisteredLabelWithPrivate::Text(t) => {
                    crit.push(t.clone());
                    continue;
                }
                RegisteredLabelWithPrivate::Assigned(h) => h.to_i64(),
                RegisteredLabelWithPrivate::PrivateUse(i) => *i,
            };
            return Err(if (0..=8).contains(&label) {
                NotationError::Crit(format!(
                    "label {label} is a COSE core parameter and may not be listed"
                ))
            } else {
                NotationError::UnknownCritical(label.to_string())
            });
        }
        a.crit = Some(crit);
    }
    for (label, value) in &p.rest {
        match label {
            Label::Text(name) if name == SIGNING_SCHEME => {
                a.scheme = Some(cbor_text(value, PROTECTED, name)?);
            }
            Label::Text(name) if name == SIGNING_TIME => {
                a.signing_time = Some(cbor_time(value, SIGNING_TIME)?);
            }
            Label::Text(name) if name == EXPIRY => {
                a.expiry = Some(cbor_time(value, EXPIRY)?);
            }
            Label::Text(name) if name == AUTHENTIC_SIGNING_TIME => {
                cbor_time(value, AUTHENTIC_SIGNING_TIME)?;
                a.authentic_signing_time = true;
            }
            Label::Text(name) if name == VERIFICATION_PLUGIN => {
                a.plugin = Some(cbor_text(value, PROTECTED, name)?);
            }
            Label::Text(name) if name == VERIFICATION_PLUGIN_MIN_VERSION => {
                let min = cbor_text(value, PROTECTED, name)?;
                a.plugin
                    .get_or_insert_with(|| format!("(unnamed) {min} or later"));
            }
            Label::Int(33) => u.certificates = Some(x5chain(value)?),
            _ => {}
        }
    }

    let h = &sign1.unprotected;
    if h.alg.is_some() || !h.crit.is_empty() || h.content_type.is_some() {
        return Err(NotationError::UnexpectedField {
            what: HEADER,
            key: "alg, crit or content type (they are protected)".to_owned(),
        });
    }
    for (label, value) in &h.rest {
        if a.present.contains(&label_name(label)) {
            return Err(NotationError::UnexpectedField {
                what: HEADER,
                key: format!("{} (also in the protected header)", label_name(label)),
            });
        }
        match label {
            Label::Int(33) => u.certificates = Some(x5chain(value)?),
            Label::Text(name) if name == SIGNING_AGENT => {
                u.signing_agent = Some(cbor_text(value, HEADER, name)?);
            }
            Label::Text(name) if name == TIMESTAMP_SIGNATURE => {
                if !matches!(value, Cbor::Bytes(_)) {
                    return Err(wrong_type(HEADER, name, "a byte string"));
                }
                u.has_timestamp = true;
            }
            _ => {}
        }
    }

    Ok(Envelope {
        attributes: a,
        unsigned: u,
        payload,
        signed: sign1.tbs_data(b""),
        signature: sign1.signature,
    })
}

fn label_name(label: &Label) -> String {
    match label {
        Label::Int(i) => i.to_string(),
        Label::Text(t) => t.clone(),
    }
}

fn wrong_type(what: &'static str, key: &str, expected: &'static str) -> NotationError {
    NotationError::WrongType {
        what,
        key: key.to_owned(),
        expected,
    }
}

fn cbor_text(value: &Cbor, what: &'static str, key: &str) -> Result<String, NotationError> {
    match value {
        Cbor::Text(t) => Ok(t.clone()),
        _ => Err(wrong_type(what, key, "a text string")),
    }
}

/// An epoch-based date/time (tag 1) in whole seconds, as RFC 8949 section 3.4.2 has it.
fn cbor_time(value: &Cbor, header: &'static str) -> Result<DateTime<Utc>, NotationError> {
    let bad = |detail: &str| NotationError::Time {
        header,
        value: detail.to_owned(),
    };
    let Cbor::Tag(1, inner) = value else {
        return Err(bad("not an epoch date/time (tag 1)"));
    };
    let Cbor::Integer(seconds) = inner.as_ref() else {
        return Err(bad("not whole seconds"));
    };
    let seconds = i64::try_from(*seconds).map_err(|_| bad("out of range"))?;
    DateTime::from_timestamp(seconds, 0).ok_or_else(|| bad("out of range"))
}

/// x5chain (RFC 9360): one certificate as a byte string, or several in an array.
fn x5chain(value: &Cbor) -> Result<Vec<Vec<u8>>, NotationError> {
    match value {
        Cbor::Bytes(one) => Ok(vec![one.clone()]),
        Cbor::Array(many) => many
            .iter()
            .map(|c| match c {
                Cbor::Bytes(der) => Ok(der.clone()),
                _ => Err(wrong_type(
                    "unprotected header",
                    "x5chain (33)",
                    "byte strings",
                )),
            })
            .collect(),
        _ => Err(wrong_type(
            "unprotected header",
            "x5chain (33)",
            "a byte string or an array of them",
        )),
    }
}

const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// Extended key usages a signing certificate must not have: anyExtendedKeyUsage,
/// serverAuth, clientAuth, emailProtection, timeStamping.
const FORBIDDEN_EKU: &[(ObjectIdentifier, &str)] = &[
    (
        ObjectIdentifier::new_unwrap("2.5.29.37.0"),
        "anyExtendedKeyUsage",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1"),
        "serverAuth",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2"),
        "clientAuth",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4"),
        "emailProtection",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8"),
        "timeStamping",
    ),
];
/// sha1WithRSAEncryption and ecdsa-with-SHA1.
const SHA1_SIGNATURES: &[ObjectIdentifier] = &[
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5"),
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"),
];

/// Reads the leaf's key and validity, and whether it meets the signature specification's
/// leaf certificate requirements.
fn read_leaf(certificate: &x509_cert::Certificate) -> Result<Leaf, NotationError> {
    let tbs = &certificate.tbs_certificate;
    let leaf_error = |detail: String| NotationError::Certificate { index: 0, detail };
    let spki_der = tbs
        .subject_public_key_info
        .to_der()
        .map_err(|e| leaf_error(e.to_string()))?;
    let not_before = x509_time(tbs.validity.not_before.to_unix_duration())
        .ok_or_else(|| leaf_error("notBefore out of range".to_owned()))?;
    let not_after = x509_time(tbs.validity.not_after.to_unix_duration())
        .ok_or_else(|| leaf_error("notAfter out of range".to_owned()))?;
    Ok(Leaf {
        spki_der,
        not_before,
        not_after,
        unfit: leaf_unfit(certificate).err(),
    })
}

fn x509_time(since_epoch: Duration) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(since_epoch.as_secs()).ok()?, 0)
}

fn leaf_unfit(certificate: &x509_cert::Certificate) -> Result<(), String> {
    if SHA1_SIGNATURES.contains(&certificate.signature_algorithm.oid) {
        return Err("it is signed with SHA-1".to_owned());
    }
    let extensions = certificate
        .tbs_certificate
        .extensions
        .as_deref()
        .unwrap_or_default();
    let mut key_usage = None;
    for (i, ext) in extensions.iter().enumerate() {
        if extensions[..i].iter().any(|e| e.extn_id == ext.extn_id) {
            return Err(format!("extension {} appears twice", ext.extn_id));
        }
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == ID_CE_KEY_USAGE {
            let usage =
                KeyUsage::from_der(value).map_err(|e| format!("unreadable key usage: {e}"))?;
            key_usage = Some((ext.critical, usage));
        } else if ext.extn_id == ID_CE_BASIC_CONSTRAINTS {
            let constraints = BasicConstraints::from_der(value)
                .map_err(|e| format!("unreadable basic constraints: {e}"))?;
            if constraints.ca {
                return Err("basic constraints mark it a CA".to_owned());
            }
        } else if ext.extn_id == ID_CE_EXT_KEY_USAGE {
            let usages = ExtendedKeyUsage::from_der(value)
                .map_err(|e| format!("unreadable extended key usage: {e}"))?;
            if let Some((_, name)) = FORBIDDEN_EKU.iter().find(|(oid, _)| usages.0.contains(oid)) {
                return Err(format!("its extended key usage allows {name}"));
            }
        }
    }
    let Some((critical, usage)) = key_usage else {
        return Err("it has no key usage extension".to_owned());
    };
    if !critical {
        return Err("its key usage extension is not critical".to_owned());
    }
    if !usage.0.contains(KeyUsages::DigitalSignature) {
        return Err("its key usage lacks digitalSignature".to_owned());
    }
    for (flag, name) in [
        (KeyUsages::KeyEncipherment, "keyEncipherment"),
        (KeyUsages::DataEncipherment, "dataEncipherment"),
        (KeyUsages::KeyAgreement, "keyAgreement"),
        (KeyUsages::KeyCertSign, "keyCertSign"),
        (KeyUsages::CRLSign, "cRLSign"),
        (KeyUsages::EncipherOnly, "encipherOnly"),
        (KeyUsages::DecipherOnly, "decipherOnly"),
    ] {
        if usage.0.contains(flag) {
            return Err(format!("its key usage allows {name}"));
        }
    }
    Ok(())
}

/// A JSON object read key by key, refusing duplicate keys and trailing data.
struct Object {
    fields: Vec<(String, Box<RawValue>)>,
}

impl Object {
    fn parse(bytes: &[u8], what: &'static str) -> Result<Self, NotationError> {
        let mut duplicate = None;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = de
            .deserialize_map(ObjectVisitor {
                duplicate: &mut duplicate,
            })
            .and_then(|o| de.end().map(|()| o));
        match (parsed, duplicate) {
            (_, Some(key)) => Err(NotationError::DuplicateKey { what, key }),
            (Ok(object), None) => Ok(object),
            (Err(e), None) => Err(NotationError::Malformed {
                what,
                detail: e.to_string(),
            }),
        }
    }

    fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    fn only(&self, what: &'static str, keys: &[&str]) -> Result<(), NotationError> {
        match self
            .fields
            .iter()
            .find(|(k, _)| !keys.contains(&k.as_str()))
        {
            Some((key, _)) => Err(NotationError::UnexpectedField {
                what,
                key: key.clone(),
            }),
            None => Ok(()),
        }
    }

    fn optional<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<T>, NotationError> {
        self.get(key)
            .map(|raw| serde_json::from_str(raw.get()).map_err(|_| wrong_type(what, key, expected)))
            .transpose()
    }

    fn required<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
        expected: &'static str,
    ) -> Result<T, NotationError> {
        self.optional(what, key, expected)?
            .ok_or_else(|| missing(what, key))
    }
}

struct ObjectVisitor<'a> {
    duplicate: &'a mut Option<String>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.iter().any(|(k, _)| *k == key) {
                *self.duplicate = Some(key);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            let value: Box<RawValue> = map.next_value()?;
            fields.push((key, value));
        }
        Ok(Object { fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::KeyPair as _;
    use coset::{CborSerializable as _, CoseSign1Builder, HeaderBuilder};
    use serde_json::{json, Value};
    use x509_cert::der::asn1::{BitString, OctetString, UtcTime};
    use x509_cert::ext::Extension;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
    use x509_cert::time::{Time, Validity};

    const DIGEST: &str = "sha256:73c803930ea3ba1e54bc25c2bdc53edd0284c62ed651fe7b00369da519a3c333";
    const OTHER: &str = "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0";
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";

    enum TestKey {
        Rsa(aws_lc_rs::rsa::KeyPair),
        Ec(lc::EcdsaKeyPair),
    }

    impl TestKey {
        fn spki(&self) -> Vec<u8> {
            match self {
                Self::Rsa(k) => k.public_key().as_der().expect("der").as_ref().to_vec(),
                Self::Ec(k) => k.public_key().as_der().expect("der").as_ref().to_vec(),
            }
        }

        fn public(&self) -> PublicKey {
            PublicKey::parse(&self.spki()).expect("public key")
        }

        fn sign(&self, message: &[u8]) -> Vec<u8> {
            match self {
                Self::Rsa(k) => {
                    let mut sig = vec![0; k.public_modulus_len()];
                    k.sign(&lc::RSA_PSS_SHA256, &SystemRandom::new(), message, &mut sig)
                        .expect("sign");
                    sig
                }
                Self::Ec(k) => k
                    .sign(&SystemRandom::new(), message)
                    .expect("sign")
                    .as_ref()
                    .to_vec(),
            }
        }

        fn alg(&self) -> &'static str {
            match self {
                Self::Rsa(_) => "PS256",
                Self::Ec(_) => "ES256",
            }
        }

        fn cose_alg(&self) -> iana::Algorithm {
            match self {
                Self::Rsa(_) => iana::Algorithm::PS256,
                Self::Ec(_) => iana::Algorithm::ES256,
            }
        }
    }

    fn rsa(n: usize) -> &'static TestKey {
        static KEYS: [OnceLock<TestKey>; 2] = [OnceLock::new(), OnceLock::new()];
        KEYS[n].get_or_init(|| {
            TestKey::Rsa(
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .expect("keygen"),
            )
        })
    }

    fn ec() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(|| {
            TestKey::Ec(
                lc::EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen"),
            )
        })
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        super::rfc3339("test", rfc3339).expect("time")
    }

    const SIGNED_AT: &str = "2026-01-01T00:00:00Z";

    fn now() -> DateTime<Utc> {
        at("2026-01-01T00:05:00Z")
    }

    fn extension(oid: &str, critical: bool, value: Vec<u8>) -> Extension {
        Extension {
            extn_id: ObjectIdentifier::new(oid).expect("oid"),
            critical,
            extn_value: OctetString::new(value).expect("octets"),
        }
    }

    fn key_usage(
        usages: impl Into<x509_cert::der::flagset::FlagSet<KeyUsages>>,
        critical: bool,
    ) -> Extension {
        let value = KeyUsage(usages.into()).to_der().expect("der");
        extension("2.5.29.15", critical, value)
    }

    fn eku(oids: &[&str]) -> Extension {
        let usages = ExtendedKeyUsage(
            oids.iter()
                .map(|o| ObjectIdentifier::new(o).expect("oid"))
                .collect(),
        );
        extension("2.5.29.37", false, usages.to_der().expect("der"))
    }

    /// What `notation cert generate-test` puts in its certificate.
    fn code_signing() -> Vec<Extension> {
        vec![
            key_usage(KeyUsages::DigitalSignature, true),
            eku(&[CODE_SIGNING]),
        ]
    }

    /// A certificate for `spki`; its own signature is never checked, so it is zeros.
    fn certificate(
        spki: &[u8],
        not_before: &str,
        not_after: &str,
        extensions: Vec<Extension>,
    ) -> Vec<u8> {
        let time = |t: &str| {
            let secs = u64::try_from(at(t).timestamp()).expect("after 1970");
            Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).expect("utc"))
        };
        let algorithm = AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
            parameters: None,
        };
        let tbs = x509_cert::TbsCertificate {
            version: x509_cert::Version::V3,
            serial_number: SerialNumber::new(&[1]).expect("serial"),
            signature: algorithm.clone(),
            issuer: x509_cert::name::Name::default(),
            validity: Validity {
                not_before: time(not_before),
                not_after: time(not_after),
            },
            subject: x509_cert::name::Name::default(),
            subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki).expect("spki"),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions).filter(|e| !e.is_empty()),
        };
        x509_cert::Certificate {
            tbs_certificate: tbs,
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(&[0; 16]).expect("bits"),
        }
        .to_der()
        .expect("der")
    }

    fn leaf(key: &TestKey) -> Vec<u8> {
        certificate(
            &key.spki(),
            "2025-12-31T00:00:00Z",
            "2026-01-02T00:00:00Z",
            code_signing(),
        )
    }

    fn payload(digest: &str) -> Vec<u8> {
        json!({"targetArtifact": {"digest": digest, "mediaType": OCI_MANIFEST, "size": 247}})
            .to_string()
            .into_bytes()
    }

    /// The protected header notation writes.
    fn protected(key: &TestKey) -> Value {
        json!({
            "alg": key.alg(),
            "crit": [SIGNING_SCHEME],
            "cty": PAYLOAD_CONTENT_TYPE,
            SIGNING_SCHEME: SCHEME_X509,
            SIGNING_TIME: SIGNED_AT,
        })
    }

    fn header(certificate: &[u8]) -> Value {
        json!({"x5c": [STANDARD.encode(certificate)], SIGNING_AGENT: "notation-go/1.3.2"})
    }

    fn jws_with(key: &TestKey, protected: &Value, payload: &[u8], header: &Value) -> Vec<u8> {
        let p = URL_SAFE_NO_PAD.encode(protected.to_string());
        let pl = URL_SAFE_NO_PAD.encode(payload);
        let signature = URL_SAFE_NO_PAD.encode(key.sign(format!("{p}.{pl}").as_bytes()));
        json!({"payload": pl, "protected": p, "header": header, "signature": signature})
            .to_string()
            .into_bytes()
    }

    fn jws(key: &TestKey) -> Vec<u8> {
        jws_with(key, &protected(key), &payload(DIGEST), &header(&leaf(key)))
    }

    /// A JWS whose protected header is notation's changed by `edit`.
    fn jws_edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
        let key = rsa(0);
        let mut p = protected(key);
        edit(p.as_object_mut().expect("object"));
        jws_with(key, &p, &payload(DIGEST), &header(&leaf(key)))
    }

    fn parse_jws(bytes: &[u8]) -> Result<NotationSignature, NotationError> {
        NotationSignature::parse(JWS_MEDIA_TYPE, bytes)
    }

    fn epoch(t: &str) -> Cbor {
        Cbor::Tag(1, Box::new(Cbor::Integer(at(t).timestamp().into())))
    }

    fn cose_protected(key: &TestKey) -> HeaderBuilder {
        HeaderBuilder::new()
            .algorithm(key.cose_alg())
            .add_critical_label(RegisteredLabelWithPrivate::Text(SIGNING_SCHEME.to_owned()))
            .content_type(PAYLOAD_CONTENT_TYPE.to_owned())
            .text_value(
                SIGNING_SCHEME.to_owned(),
                Cbor::Text(SCHEME_X509.to_owned()),
            )
            .text_value(SIGNING_TIME.to_owned(), epoch(SIGNED_AT))
    }

    fn cose_unprotected(chain: Cbor) -> HeaderBuilder {
        HeaderBuilder::new().value(33, chain).text_value(
            SIGNING_AGENT.to_owned(),
            Cbor::Text("notation-go/1.3.2".to_owned()),
        )
    }

    fn cose_with(
        key: &TestKey,
        protected: HeaderBuilder,
        unprotected: HeaderBuilder,
        payload: &[u8],
    ) -> Vec<u8> {
        CoseSign1Builder::new()
            .protected(protected.build())
            .unprotected(unprotected.build())
            .payload(payload.to_vec())
            .create_signature(b"", |tbs| key.sign(tbs))
            .build()
            .to_tagged_vec()
            .expect("cbor")
    }

    fn cose(key: &TestKey) -> Vec<u8> {
        cose_with(
            key,
            cose_protected(key),
            cose_unprotected(Cbor::Array(vec![Cbor::Bytes(leaf(key))])),
            &payload(DIGEST),
        )
    }

    fn parse_cose(bytes: &[u8]) -> Result<NotationSignature, NotationError> {
        NotationSignature::parse(COSE_MEDIA_TYPE, bytes)
    }

    fn verify(
        bytes: &[u8],
        media_type: &str,
        key: &TestKey,
    ) -> Result<TargetArtifact, NotationError> {
        NotationSignature::parse(media_type, bytes)?.verify_at(&key.public(), now())
    }

    #[test]
    fn a_jws_verifies_under_the_witness_key_and_names_its_target() {
        let key = rsa(0);
        let mut p = payload(DIGEST);
        p = String::from_utf8(p)
            .expect("utf-8")
            .replace(r#""size":247"#, r#""size":247,"annotations":{"team":"a"}"#)
            .into_bytes();
        let bytes = jws_with(key, &protected(key), &p, &header(&leaf(key)));
        let sig = parse_jws(&bytes).expect("parse");
        assert_eq!(sig.format(), EnvelopeFormat::Jws);
        assert_eq!(sig.algorithm(), NotationAlgorithm::Ps256);
        assert_eq!(sig.signing_time(), at(SIGNED_AT));
        assert_eq!(sig.expiry(), None);
        assert_eq!(sig.signing_agent(), Some("notation-go/1.3.2"));
        assert!(!sig.has_timestamp());
        assert_eq!(
            sig.chain_thumbprints(),
            [hex::encode(Sha256::digest(leaf(key)))]
        );
        assert_eq!(sig.leaf_key().expect("key"), key.public());
        assert_eq!(
            sig.leaf_validity(),
            (at("2025-12-31T00:00:00Z"), at("2026-01-02T00:00:00Z"))
        );
        let target = sig.verify_at(&key.public(), now()).expect("verifies");
        assert_eq!(target.digest.as_str(), DIGEST);
        assert_eq!(target.media_type, OCI_MANIFEST);
        assert_eq!(target.size, 247);
        assert_eq!(target.annotations["team"], "a");
        assert_eq!(target.artifact_type, None);
    }

    #[test]
    fn es256_and_cose_envelopes_verify() {
        verify(&jws(ec()), JWS_MEDIA_TYPE, ec()).expect("ES256 JWS");
        verify(&cose(ec()), COSE_MEDIA_TYPE, ec()).expect("ES256 COSE");
        let sig = parse_cose(&cose(rsa(0))).expect("parse");
        assert_eq!(sig.format(), EnvelopeFormat::Cose);
        assert_eq!(sig.signing_agent(), Some("notation-go/1.3.2"));
        assert_eq!(
            sig.verify_at(&rsa(0).public(), now())
                .expect("PS256 COSE")
                .digest
                .as_str(),
            DIGEST
        );
        // RFC 9360: a single certificate may stand alone rather than in an array.
        let single = cose_with(
            rsa(0),
            cose_protected(rsa(0)),
            cose_unprotected(Cbor::Bytes(leaf(rsa(0)))),
            &payload(DIGEST),
        );
        verify(&single, COSE_MEDIA_TYPE, rsa(0)).expect("x5chain as one bstr");
    }

    #[test]
    fn another_key_is_refused() {
        for (bytes, media_type) in [
            (jws(rsa(0)), JWS_MEDIA_TYPE),
            (cose(rsa(0)), COSE_MEDIA_TYPE),
        ] {
            let e = verify(&bytes, media_type, rsa(1));
            assert!(matches!(e, Err(NotationError::KeyMismatch { .. })), "{e:?}");
            let e = verify(&bytes, media_type, ec());
            assert!(matches!(e, Err(NotationError::KeyMismatch { .. })), "{e:?}");
        }
    }

    #[test]
    fn another_key_signing_with_the_witness_certificate_is_refused() {
        // The witness's certificate, someone else's signature.
        let bytes = jws_with(
            rsa(1),
            &protected(rsa(1)),
            &payload(DIGEST),
            &header(&leaf(rsa(0))),
        );
        let e = verify(&bytes, JWS_MEDIA_TYPE, rsa(0));
        assert!(
            matches!(e, Err(NotationError::BadSignature { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let bytes = jws(rsa(0));
        let mut envelope: Value = serde_json::from_slice(&bytes).expect("json");
        envelope["payload"] = Value::String(URL_SAFE_NO_PAD.encode(payload(OTHER)));
        let e = verify(envelope.to_string().as_bytes(), JWS_MEDIA_TYPE, rsa(0));
        assert!(
            matches!(e, Err(NotationError::BadSignature { .. })),
            "{e:?}"
        );

        let bytes = cose(rsa(0));
        let digest_hex = &DIGEST.as_bytes()[7..];
        let at_digest = bytes
            .windows(digest_hex.len())
            .position(|w| w == digest_hex)
            .expect("the digest is in the envelope");
        let mut tampered = bytes.clone();
        tampered[at_digest..at_digest + 64].copy_from_slice(&OTHER.as_bytes()[7..]);
        let e = verify(&tampered, COSE_MEDIA_TYPE, rsa(0));
        assert!(
            matches!(e, Err(NotationError::BadSignature { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn alg_must_be_the_one_the_key_calls_for() {
        let e = verify(
            &jws_edited(|p| {
                p.insert("alg".into(), json!("PS384"));
            }),
            JWS_MEDIA_TYPE,
            rsa(0),
        );
        assert!(
            matches!(
                e,
                Err(NotationError::AlgorithmMismatch {
                    alg: NotationAlgorithm::Ps384,
                    expected: NotationAlgorithm::Ps256,
                    ..
                })
            ),
            "{e:?}"
        );
        let e = verify(
            &jws_edited(|p| {
                p.insert("alg".into(), json!("ES256"));
            }),
            JWS_MEDIA_TYPE,
            rsa(0),
        );
        assert!(
            matches!(e, Err(NotationError::AlgorithmMismatch { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn algorithms_outside_the_notary_set_are_refused() {
        for alg in ["none", "RS256", "HS256", "EdDSA", "ps256"] {
            let e = parse_jws(&jws_edited(|p| {
                p.insert("alg".into(), json!(alg));
            }));
            assert_eq!(e, Err(NotationError::Algorithm(alg.to_owned())));
        }
        let p = cose_protected(rsa(0)).algorithm(iana::Algorithm::RS256);
        let bytes = cose_with(
            rsa(0),
            p,
            cose_unprotected(Cbor::Bytes(leaf(rsa(0)))),
            &payload(DIGEST),
        );
        assert!(matches!(
            parse_cose(&bytes),
            Err(NotationError::Algorithm(_))
        ));
    }

    #[test]
    fn the_content_type_must_be_the_notary_payload() {
        let e = parse_jws(&jws_edited(|p| {
            p.insert("cty".into(), json!("application/json"));
        }));
        assert_eq!(
            e,
            Err(NotationError::ContentType("application/json".into()))
        );
        let e = parse_jws(&jws_edited(|p| {
            p.remove("cty");
        }));
        assert!(
            matches!(e, Err(NotationError::MissingField { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn crit_is_enforced() {
        let crit = |value: Value| {
            parse_jws(&jws_edited(|p| {
                p.insert("crit".into(), value);
            }))
        };
        assert!(matches!(crit(json!([])), Err(NotationError::Crit(_))));
        assert!(matches!(
            crit(json!(["alg", SIGNING_SCHEME])),
            Err(NotationError::Crit(_))
        ));
        assert!(matches!(
            crit(json!([SIGNING_SCHEME, SIGNING_SCHEME])),
            Err(NotationError::Crit(_))
        ));
        assert!(matches!(
            crit(json!([SIGNING_TIME])),
            Err(NotationError::Crit(_))
        ));
        // Listing a header that is not there.
        assert!(matches!(
            crit(json!([SIGNING_SCHEME, EXPIRY])),
            Err(NotationError::Crit(_))
        ));
        assert!(matches!(
            crit(json!("x")),
            Err(NotationError::WrongType { .. })
        ));
        let e = parse_jws(&jws_edited(|p| {
            p.remove("crit");
        }));
        assert!(
            matches!(e, Err(NotationError::MissingField { .. })),
            "{e:?}"
        );

        // An unknown critical header is refused; an unknown informational one is not.
        let e = parse_jws(&jws_edited(|p| {
            p.insert("com.example.policy".into(), json!("v1"));
            p.insert("crit".into(), json!([SIGNING_SCHEME, "com.example.policy"]));
        }));
        assert_eq!(
            e,
            Err(NotationError::UnknownCritical("com.example.policy".into()))
        );
        parse_jws(&jws_edited(|p| {
            p.insert("com.example.note".into(), json!("v1"));
        }))
        .expect("a non-critical extra header is informational");

        // The expiry must be critical.
        let e = parse_jws(&jws_edited(|p| {
            p.insert(EXPIRY.into(), json!("2027-01-01T00:00:00Z"));
        }));
        assert_eq!(e, Err(NotationError::NotCritical(EXPIRY.into())));
    }

    #[test]
    fn only_the_x509_scheme_with_a_signing_time_is_taken() {
        let e = parse_jws(&jws_edited(|p| {
            p.insert(SIGNING_SCHEME.into(), json!(SCHEME_SIGNING_AUTHORITY));
            p.remove(SIGNING_TIME);
            p.insert(AUTHENTIC_SIGNING_TIME.into(), json!(SIGNED_AT));
            p.insert(
                "crit".into(),
                json!([SIGNING_SCHEME, AUTHENTIC_SIGNING_TIME]),
            );
        }));
        assert_eq!(e, Err(NotationError::SigningAuthority));
        let e = parse_jws(&jws_edited(|p| {
            p.insert(SIGNING_SCHEME.into(), json!("notary.other"));
        }));
        assert_eq!(e, Err(NotationError::SigningScheme("notary.other".into())));
        let e = parse_jws(&jws_edited(|p| {
            p.insert(AUTHENTIC_SIGNING_TIME.into(), json!(SIGNED_AT));
            p.insert(
                "crit".into(),
                json!([SIGNING_SCHEME, AUTHENTIC_SIGNING_TIME]),
            );
        }));
        assert!(
            matches!(e, Err(NotationError::UnexpectedField { .. })),
            "{e:?}"
        );
        let e = parse_jws(&jws_edited(|p| {
            p.remove(SIGNING_TIME);
        }));
        assert!(
            matches!(e, Err(NotationError::MissingField { .. })),
            "{e:?}"
        );
        let e = parse_jws(&jws_edited(|p| {
            p.insert(SIGNING_TIME.into(), json!("yesterday"));
        }));
        assert!(matches!(e, Err(NotationError::Time { .. })), "{e:?}");
    }

    #[test]
    fn a_signature_needing_a_verification_plugin_is_refused() {
        let e = parse_jws(&jws_edited(|p| {
            p.insert(VERIFICATION_PLUGIN.into(), json!("com.example.plugin"));
            p.insert("crit".into(), json!([SIGNING_SCHEME, VERIFICATION_PLUGIN]));
        }));
        assert_eq!(
            e,
            Err(NotationError::VerificationPlugin(
                "com.example.plugin".into()
            ))
        );
        let e = parse_jws(&jws_edited(|p| {
            p.insert(VERIFICATION_PLUGIN.into(), json!("com.example.plugin"));
        }));
        assert_eq!(
            e,
            Err(NotationError::NotCritical(VERIFICATION_PLUGIN.into()))
        );
    }

    #[test]
    fn an_expired_signature_is_refused() {
        let with_expiry = |expiry: &str| {
            jws_edited(|p| {
                p.insert(EXPIRY.into(), json!(expiry));
                p.insert("crit".into(), json!([SIGNING_SCHEME, EXPIRY]));
            })
        };
        let sig = parse_jws(&with_expiry("2026-01-01T01:00:00Z")).expect("parse");
        assert_eq!(sig.expiry(), Some(at("2026-01-01T01:00:00Z")));
        sig.verify_at(&rsa(0).public(), now())
            .expect("not expired yet");
        assert_eq!(
            sig.verify_at(&rsa(0).public(), at("2026-01-01T01:00:00Z")),
            Err(NotationError::Expired(at("2026-01-01T01:00:00Z")))
        );

        let p = cose_protected(rsa(0))
            .add_critical_label(RegisteredLabelWithPrivate::Text(EXPIRY.to_owned()))
            .text_value(EXPIRY.to_owned(), epoch("2026-01-01T00:01:00Z"));
        let bytes = cose_with(
            rsa(0),
            p,
            cose_unprotected(Cbor::Bytes(leaf(rsa(0)))),
            &payload(DIGEST),
        );
        assert_eq!(
            verify(&bytes, COSE_MEDIA_TYPE, rsa(0)),
            Err(NotationError::Expired(at("2026-01-01T00:01:00Z")))
        );
    }

    #[test]
    fn the_certificate_must_be_valid_at_signing_and_now() {
        let key = rsa(0);
        let sign_with = |not_before: &str, not_after: &str| {
            let certificate = certificate(&key.spki(), not_before, not_after, code_signing());
            jws_with(
                key,
                &protected(key),
                &payload(DIGEST),
                &header(&certificate),
            )
        };
        // Signed before the certificate was valid, or after it expired.
        for (nb, na) in [
            ("2026-01-01T00:00:01Z", "2026-02-01T00:00:00Z"),
            ("2025-01-01T00:00:00Z", "2025-12-31T23:59:59Z"),
        ] {
            let e = verify(&sign_with(nb, na), JWS_MEDIA_TYPE, key);
            assert!(
                matches!(e, Err(NotationError::SignedOutsideValidity { .. })),
                "{e:?}"
            );
        }
        // The bounds are inclusive.
        verify(
            &sign_with(SIGNED_AT, "2026-01-01T00:05:00Z"),
            JWS_MEDIA_TYPE,
            key,
        )
        .expect("valid from the signing time to now");
        // Valid at signing, expired now (no timestamp countersignature vouches for it).
        let sig = parse_jws(&jws(key)).expect("parse");
        let e = sig.verify_at(&key.public(), at("2026-01-02T00:00:01Z"));
        assert!(
            matches!(e, Err(NotationError::CertificateNotValidNow { .. })),
            "{e:?}"
        );
        let e = sig.verify_at(&key.public(), at("2025-12-30T00:00:00Z"));
        assert!(
            matches!(e, Err(NotationError::CertificateNotValidNow { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn the_leaf_must_be_a_code_signing_certificate() {
        let key = rsa(0);
        let basic_constraints = |ca: bool| {
            let value = BasicConstraints {
                ca,
                path_len_constraint: None,
            }
            .to_der()
            .expect("der");
            extension("2.5.29.19", true, value)
        };
        let refused = [
            vec![eku(&[CODE_SIGNING])],
            vec![key_usage(KeyUsages::DigitalSignature, false)],
            vec![key_usage(KeyUsages::KeyEncipherment, true)],
            vec![key_usage(
                KeyUsages::DigitalSignature | KeyUsages::KeyCertSign,
                true,
            )],
            vec![
                key_usage(KeyUsages::DigitalSignature, true),
                basic_constraints(true),
            ],
            vec![
                key_usage(KeyUsages::DigitalSignature, true),
                eku(&[CODE_SIGNING, "1.3.6.1.5.5.7.3.1"]),
            ],
            vec![
                key_usage(KeyUsages::DigitalSignature, true),
                key_usage(KeyUsages::DigitalSignature, true),
            ],
        ];
        for extensions in refused {
            let certificate = certificate(
                &key.spki(),
                "2025-12-31T00:00:00Z",
                "2026-01-02T00:00:00Z",
                extensions,
            );
            let bytes = jws_with(
                key,
                &protected(key),
                &payload(DIGEST),
                &header(&certificate),
            );
            let e = verify(&bytes, JWS_MEDIA_TYPE, key);
            assert!(matches!(e, Err(NotationError::LeafCertificate(_))), "{e:?}");
        }
        // Basic constraints saying "not a CA" and no extended key usage are fine.
        let certificate = certificate(
            &key.spki(),
            "2025-12-31T00:00:00Z",
            "2026-01-02T00:00:00Z",
            vec![
                key_usage(
                    KeyUsages::DigitalSignature | KeyUsages::NonRepudiation,
                    true,
                ),
                basic_constraints(false),
            ],
        );
        let bytes = jws_with(
            key,
            &protected(key),
            &payload(DIGEST),
            &header(&certificate),
        );
        verify(&bytes, JWS_MEDIA_TYPE, key).expect("a plain signing certificate");
    }

    #[test]
    fn the_jws_envelope_is_read_strictly() {
        let good: Value = serde_json::from_slice(&jws(rsa(0))).expect("json");
        let edited = |edit: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            edit(&mut v);
            parse_jws(v.to_string().as_bytes())
        };
        let e = edited(&|v| v["signatures"] = json!([]));
        assert!(
            matches!(e, Err(NotationError::UnexpectedField { .. })),
            "{e:?}"
        );
        let e = edited(&|v| {
            v.as_object_mut().expect("object").remove("header");
        });
        assert!(
            matches!(e, Err(NotationError::MissingField { .. })),
            "{e:?}"
        );
        let e = edited(&|v| {
            let padded = format!("{}=", v["protected"].as_str().expect("str"));
            v["protected"] = json!(padded);
        });
        assert!(matches!(e, Err(NotationError::Malformed { .. })), "{e:?}");
        let e = edited(&|v| {
            v["header"].as_object_mut().expect("object").remove("x5c");
        });
        assert!(
            matches!(e, Err(NotationError::MissingField { .. })),
            "{e:?}"
        );
        let e = edited(&|v| v["header"]["x5c"] = json!([]));
        assert_eq!(e, Err(NotationError::NoCertificate));
        let e = edited(&|v| v["header"]["x5c"] = json!(["bm90IGEgY2VydA=="]));
        assert!(
            matches!(e, Err(NotationError::Certificate { index: 0, .. })),
            "{e:?}"
        );
        let e = edited(&|v| v["header"]["x5c"] = json!(["not base64!"]));
        assert!(matches!(e, Err(NotationError::Malformed { .. })), "{e:?}");
        // The unprotected header cannot repeat a protected one, nor hold crit.
        let e = edited(&|v| v["header"]["alg"] = json!("PS256"));
        assert!(
            matches!(e, Err(NotationError::UnexpectedField { .. })),
            "{e:?}"
        );
        let e = edited(&|v| v["header"]["crit"] = json!([EXPIRY]));
        assert!(
            matches!(e, Err(NotationError::UnexpectedField { .. })),
            "{e:?}"
        );
        // Unsigned extras are kept out of everything, so they are let through.
        edited(&|v| v["header"]["io.cncf.notary.timestampSignature"] = json!("AAAA"))
            .map(|s| assert!(s.has_timestamp()))
            .expect("a timestamp countersignature is allowed (and not checked)");

        // Duplicate keys, trailing data, not JSON.
        let text = String::from_utf8(jws(rsa(0))).expect("utf-8");
        let dup = text.replacen("{\"header\"", "{\"signature\":\"AAAA\",\"header\"", 1);
        assert!(dup != text);
        let e = parse_jws(dup.as_bytes());
        assert_eq!(
            e,
            Err(NotationError::DuplicateKey {
                what: "JWS envelope",
                key: "signature".into()
            })
        );
        assert!(matches!(
            parse_jws(format!("{text} {{}}").as_bytes()),
            Err(NotationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_jws(b"[]"),
            Err(NotationError::Malformed { .. })
        ));

        // A duplicate key inside the signed protected header.
        let key = rsa(0);
        let p = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"PS256","alg":"PS256","crit":["{SIGNING_SCHEME}"],"cty":"{PAYLOAD_CONTENT_TYPE}","{SIGNING_SCHEME}":"{SCHEME_X509}","{SIGNING_TIME}":"{SIGNED_AT}"}}"#
        ));
        let pl = URL_SAFE_NO_PAD.encode(payload(DIGEST));
        let s = URL_SAFE_NO_PAD.encode(key.sign(format!("{p}.{pl}").as_bytes()));
        let bytes =
            json!({"payload": pl, "protected": p, "header": header(&leaf(key)), "signature": s});
        assert_eq!(
            parse_jws(bytes.to_string().as_bytes()),
            Err(NotationError::DuplicateKey {
                what: "protected header",
                key: "alg".into()
            })
        );
    }

    #[test]
    fn the_payload_is_read_strictly() {
        let key = rsa(0);
        let with = |payload: Value| {
            parse_jws(&jws_with(
                key,
                &protected(key),
                payload.to_string().as_bytes(),
                &header(&leaf(key)),
            ))
        };
        let target = json!({"digest": DIGEST, "mediaType": OCI_MANIFEST, "size": 1});
        with(json!({"targetArtifact": target})).expect("notation's payload");
        let e = with(json!({"targetArtifact": target, "extra": 1}));
        assert!(
            matches!(e, Err(NotationError::UnexpectedField { .. })),
            "{e:?}"
        );
        let e = with(json!({}));
        assert!(
            matches!(e, Err(NotationError::MissingField { .. })),
            "{e:?}"
        );
        let mut t = target.clone();
        t["urls"] = json!([]);
        assert!(matches!(
            with(json!({"targetArtifact": t})),
            Err(NotationError::UnexpectedField { .. })
        ));
        for (field, value) in [
            ("size", json!(-1)),
            ("size", json!(1.5)),
            ("size", json!("1")),
            ("mediaType", json!(1)),
            ("annotations", json!({"a": 1})),
            ("artifactType", json!(null)),
        ] {
            let mut t = target.clone();
            t[field] = value;
            let e = with(json!({"targetArtifact": t}));
            assert!(
                matches!(e, Err(NotationError::WrongType { .. })),
                "{field}: {e:?}"
            );
        }
        let mut t = target.clone();
        t["digest"] = json!("sha512:abcd");
        assert!(matches!(
            with(json!({"targetArtifact": t})),
            Err(NotationError::Digest(_))
        ));
        t.as_object_mut().expect("object").remove("digest");
        assert!(matches!(
            with(json!({"targetArtifact": t})),
            Err(NotationError::MissingField { .. })
        ));
    }

    #[test]
    fn the_cose_envelope_is_read_strictly() {
        let key = rsa(0);
        let chain = || Cbor::Bytes(leaf(key));
        // Untagged COSE_Sign1.
        let untagged = CoseSign1::from_tagged_slice(&cose(key))
            .expect("parse")
            .to_vec()
            .expect("cbor");
        assert!(matches!(
            parse_cose(&untagged),
            Err(NotationError::Malformed { .. })
        ));
        // A detached payload.
        let mut detached = CoseSign1::from_tagged_slice(&cose(key)).expect("parse");
        detached.payload = None;
        let detached = detached.to_tagged_vec().expect("cbor");
        assert!(matches!(
            parse_cose(&detached),
            Err(NotationError::Malformed { .. })
        ));
        // Trailing data.
        let mut trailing = cose(key);
        trailing.push(0);
        assert!(matches!(
            parse_cose(&trailing),
            Err(NotationError::Malformed { .. })
        ));
        // alg in the unprotected header.
        let u = cose_unprotected(chain()).algorithm(iana::Algorithm::PS256);
        let e = parse_cose(&cose_with(key, cose_protected(key), u, &payload(DIGEST)));
        assert!(
            matches!(e, Err(NotationError::UnexpectedField { .. })),
            "{e:?}"
        );
        // A protected label repeated unprotected.
        let u = cose_unprotected(chain()).text_value(SIGNING_TIME.to_owned(), epoch(SIGNED_AT));
        let e = parse_cose(&cose_with(key, cose_protected(key), u, &payload(DIGEST)));
        assert!(
            matches!(e, Err(NotationError::UnexpectedField { .. })),
            "{e:?}"
        );
        // An integer label in crit.
        let p = cose_protected(key).add_critical(iana::HeaderParameter::X5Chain);
        let e = parse_cose(&cose_with(
            key,
            p,
            cose_unprotected(chain()),
            &payload(DIGEST),
        ));
        assert_eq!(e, Err(NotationError::UnknownCritical("33".into())));
        let p = cose_protected(key).add_critical(iana::HeaderParameter::ContentType);
        let e = parse_cose(&cose_with(
            key,
            p,
            cose_unprotected(chain()),
            &payload(DIGEST),
        ));
        assert!(matches!(e, Err(NotationError::Crit(_))), "{e:?}");
        // A label twice in the signed protected header.
        let mut sign1 = CoseSign1::from_tagged_slice(&cose(key)).expect("parse");
        let original = sign1.protected.original_data.clone().expect("bytes");
        let mut map: Cbor = coset::cbor::de::from_reader(original.as_slice()).expect("cbor");
        if let Cbor::Map(entries) = &mut map {
            entries.push((Cbor::Integer(1.into()), Cbor::Integer((-37).into())));
        }
        let mut doubled = Vec::new();
        coset::cbor::ser::into_writer(&map, &mut doubled).expect("cbor");
        sign1.protected.original_data = Some(doubled);
        let e = parse_cose(&sign1.to_tagged_vec().expect("cbor"));
        assert!(matches!(e, Err(NotationError::Malformed { .. })), "{e:?}");
        // A signing time that is not an epoch date/time.
        let p = HeaderBuilder::new()
            .algorithm(iana::Algorithm::PS256)
            .add_critical_label(RegisteredLabelWithPrivate::Text(SIGNING_SCHEME.to_owned()))
            .content_type(PAYLOAD_CONTENT_TYPE.to_owned())
            .text_value(
                SIGNING_SCHEME.to_owned(),
                Cbor::Text(SCHEME_X509.to_owned()),
            )
            .text_value(SIGNING_TIME.to_owned(), Cbor::Text(SIGNED_AT.into()));
        let e = parse_cose(&cose_with(
            key,
            p,
            cose_unprotected(chain()),
            &payload(DIGEST),
        ));
        assert!(matches!(e, Err(NotationError::Time { .. })), "{e:?}");
        // No certificate chain.
        let e = parse_cose(&cose_with(
            key,
            cose_protected(key),
            HeaderBuilder::new(),
            &payload(DIGEST),
        ));
        assert!(
            matches!(e, Err(NotationError::MissingField { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn media_type_and_size_are_checked_first() {
        assert_eq!(
            NotationSignature::parse("application/json", b"{}"),
            Err(NotationError::MediaType("application/json".into()))
        );
        let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(
            parse_jws(&big),
            Err(NotationError::TooLarge(MAX_ENVELOPE_BYTES + 1))
        );
    }

    #[test]
    fn a_key_no_witness_can_hold_is_refused() {
        let p384 = TestKey::Ec(
            lc::EcdsaKeyPair::generate(&lc::ECDSA_P384_SHA384_FIXED_SIGNING).expect("keygen"),
        );
        let mut p = protected(&p384);
        p["alg"] = json!("ES384");
        let bytes = jws_with(&p384, &p, &payload(DIGEST), &header(&leaf(&p384)));
        let sig = parse_jws(&bytes).expect("a well-formed ES384 signature");
        assert_eq!(sig.algorithm(), NotationAlgorithm::Es384);
        assert!(matches!(
            sig.leaf_key(),
            Err(NotationError::UnsupportedKey(_))
        ));
        let e = sig.verify_at(&ec().public(), now());
        assert!(matches!(e, Err(NotationError::UnsupportedKey(_))), "{e:?}");
    }

    #[test]
    fn algorithm_selection_follows_the_key() {
        assert_eq!(
            NotationAlgorithm::for_key(&rsa(0).public()),
            Some(NotationAlgorithm::Ps256)
        );
        assert_eq!(
            NotationAlgorithm::for_key(&ec().public()),
            Some(NotationAlgorithm::Es256)
        );
        // Only the modulus size counts, so an odd number of the right size stands in.
        let rsa_of = |bits: usize| {
            let modulus = rsa::BigUint::from_bytes_be(&vec![0xff; bits / 8]);
            let public =
                rsa::RsaPublicKey::new(modulus, rsa::BigUint::from(65537u32)).expect("rsa key");
            let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&public).expect("der");
            NotationAlgorithm::for_key(&PublicKey::parse(der.as_bytes()).expect("parse"))
        };
        assert_eq!(rsa_of(3072), Some(NotationAlgorithm::Ps384));
        assert_eq!(rsa_of(4096), Some(NotationAlgorithm::Ps512));
        assert_eq!(rsa_of(2560), None);
    }
}
