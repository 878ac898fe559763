//! Attestations: an in-toto Statement about an image digest, signed as a DSSE envelope,
//! as `cosign attest` makes them and `cosign verify-attestation` checks them.
//!
//! - [`predicate_type`] turns cosign's `--type` names (`slsaprovenance1`, `spdxjson`,
//!   `cyclonedx`, ...) or a URI into the predicate type URI.
//! - [`Statement`] is the in-toto Statement; [`Statement::for_image`] builds one about one
//!   digest, as cosign does (subject name: the repository, digest: the sha256 hex).
//! - [`Envelope`] is the DSSE envelope: the signature covers [`pae`] of the payload type
//!   and the payload, never the JSON around them.
//! - [`check_predicate`] refuses SLSA provenance that lacks what the SLSA schema requires,
//!   before anyone signs it.
//!
//! Written here rather than taken from a crate: DSSE's pre-authentication encoding and
//! the Statement are a few lines each, and the crates that carry them (in-toto-rs,
//! sigstore's) bring their own crypto stacks and key types, which signet's KMS-held keys
//! do not fit.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Digest, PublicKey, SignatureAlgorithm};

/// The DSSE payload type of an in-toto Statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The Statement type cosign writes (and reads, with v1).
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// The current Statement type.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The OCI layer media type of a DSSE envelope in a cosign `.att` artifact.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation naming the predicate type in a cosign `.att` artifact.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const SPDX: &str = "https://spdx.dev/Document";
pub const CYCLONEDX: &str = "https://cyclonedx.org/bom";

/// cosign's `--type` names and the predicate types they stand for (cosign's
/// `options.PredicateTypeMap`), so `signet attest --type` means what `cosign attest
/// --type` means.
const NAMES: &[(&str, &str)] = &[
    ("custom", "https://cosign.sigstore.dev/attestation/v1"),
    ("slsaprovenance", SLSA_PROVENANCE_V02),
    ("slsaprovenance02", SLSA_PROVENANCE_V02),
    ("slsaprovenance1", SLSA_PROVENANCE_V1),
    ("link", "https://in-toto.io/Link/v1"),
    ("spdx", SPDX),
    ("spdxjson", SPDX),
    ("cyclonedx", CYCLONEDX),
    ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
    ("openvex", "https://openvex.dev/ns"),
];

/// Why an attestation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("predicate type {0:?} is neither one of {names} nor a URI", names = known_names())]
    UnknownType(String),
    #[error("the predicate must be a JSON object")]
    PredicateNotObject,
    #[error("{kind} predicate: {problems}", problems = .problems.join("; "))]
    InvalidPredicate {
        kind: &'static str,
        problems: Vec<String>,
    },
    #[error("not a DSSE envelope: {0}")]
    Envelope(String),
    #[error("the envelope's payload is not an in-toto Statement: {0}")]
    Statement(String),
}

fn known_names() -> String {
    NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// The predicate type URI for a cosign `--type` name or a URI given as is.
pub fn predicate_type(name_or_uri: &str) -> Result<String, AttestationError> {
    let s = name_or_uri.trim();
    if let Some((_, uri)) = NAMES.iter().find(|(n, _)| *n == s) {
        return Ok((*uri).to_owned());
    }
    // A URI: a scheme, then something; no spaces (it becomes an annotation value).
    let uri_like = s.split_once(':').is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && !rest.is_empty()
    }) && !s
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        && s.len() <= 512;
    if uri_like {
        Ok(s.to_owned())
    } else {
        Err(AttestationError::UnknownType(s.to_owned()))
    }
}

/// One subject of a Statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// cosign 3 writes Statement v1 subjects without a name: absent reads as empty.
    #[serde(default)]
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub subject: Vec<Subject>,
    #[serde(default)]
    pub predicate: serde_json::Value,
}

impl Statement {
    /// A Statement about `repository@digest`, shaped as `cosign attest` shapes it.
    pub fn for_image(
        repository: &str,
        digest: &Digest,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Self {
        Self {
            statement_type: STATEMENT_V01.to_owned(),
            predicate_type: predicate_type.to_owned(),
            subject: vec![Subject {
                name: repository.to_owned(),
                digest: BTreeMap::from([("sha256".to_owned(), digest.hex().to_owned())]),
            }],
            predicate,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement serializes")
    }

    /// Parses a Statement of either type version.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestationError> {
        let s: Self = serde_json::from_slice(bytes).map_err(|e| {
            AttestationError::Statement(format!("line {}, column {}", e.line(), e.column()))
        })?;
        if s.statement_type != STATEMENT_V01 && s.statement_type != STATEMENT_V1 {
            return Err(AttestationError::Statement(format!(
                "_type {:?} is not an in-toto Statement type",
                s.statement_type
            )));
        }
        Ok(s)
    }

    /// Whether one subject is `digest`: what makes an attestation be about an image.
    pub fn is_about(&self, digest: &Digest) -> bool {
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(digest.hex()))
    }
}

/// DSSE's pre-authentication encoding: what is actually signed.
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    #[serde(with = "b64")]
    pub sig: Vec<u8>,
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// The bytes a witness signs for `statement` (see [`pae`]), and the payload itself.
    pub fn signing_input(statement: &Statement) -> (Vec<u8>, Vec<u8>) {
        let payload = statement.to_bytes();
        (pae(IN_TOTO_PAYLOAD_TYPE, &payload), payload)
    }

    /// An envelope around `payload` with one signature.
    pub fn signed(payload: Vec<u8>, signature: Vec<u8>) -> Self {
        Self {
            payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
            payload,
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: signature,
            }],
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope serializes")
    }

    /// Parses an envelope; the payload is not trusted until [`Envelope::verify`] says so.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestationError> {
        let e: Self = serde_json::from_slice(bytes).map_err(|e| {
            AttestationError::Envelope(format!("line {}, column {}", e.line(), e.column()))
        })?;
        if e.signatures.is_empty() {
            return Err(AttestationError::Envelope("it carries no signature".into()));
        }
        Ok(e)
    }

    /// Whether one of the envelope's signatures verifies under `key`, over the PAE of
    /// the payload type and payload (a signature over the payload alone does not count).
    pub fn verify(&self, key: &PublicKey, algorithm: SignatureAlgorithm) -> bool {
        let signed = pae(&self.payload_type, &self.payload);
        self.signatures
            .iter()
            .any(|s| key.verify(algorithm, &signed, &s.sig).is_ok())
    }

    /// The Statement inside, once the payload type says it is one.
    pub fn statement(&self) -> Result<Statement, AttestationError> {
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(AttestationError::Statement(format!(
                "payload type {:?}, not {IN_TOTO_PAYLOAD_TYPE}",
                self.payload_type
            )));
        }
        Statement::parse(&self.payload)
    }
}

/// Refuses a predicate that cannot be what its type says, before it is signed: any
/// predicate must be a JSON object, and SLSA provenance must have the fields the SLSA
/// schema requires (v1: `buildDefinition.buildType`, `buildDefinition.externalParameters`,
/// `runDetails.builder.id`; v0.2: `builder.id`, `buildType`). Every problem at once.
pub fn check_predicate(
    predicate_type: &str,
    predicate: &serde_json::Value,
) -> Result<(), AttestationError> {
    let Some(obj) = predicate.as_object() else {
        return Err(AttestationError::PredicateNotObject);
    };
    let (kind, required): (&'static str, &[(&str, Kind)]) = match predicate_type {
        SLSA_PROVENANCE_V1 => (
            "SLSA provenance v1",
            &[
                ("/buildDefinition", Kind::Object),
                ("/buildDefinition/buildType", Kind::String),
                ("/buildDefinition/externalParameters", Kind::Object),
                ("/runDetails", Kind::Object),
                ("/runDetails/builder", Kind::Object),
                ("/runDetails/builder/id", Kind::String),
            ],
        ),
        SLSA_PROVENANCE_V02 => (
            "SLSA provenance v0.2",
            &[
                ("/builder", Kind::Object),
                ("/builder/id", Kind::String),
                ("/buildType", Kind::String),
            ],
        ),
        _ => return Ok(()),
    };
    let root = serde_json::Value::Object(obj.clone());
    let mut problems = Vec::new();
    for (pointer, want) in required {
        match root.pointer(pointer) {
            None => problems.push(format!("{} is missing", dotted(pointer))),
            Some(v) if !want.matches(v) => {
                problems.push(format!("{} must be {}", dotted(pointer), want.name()))
            }
            Some(_) => {}
        }
    }
    // A missing parent reports its children too; keep the first, clearest line.
    problems.dedup_by(|later, earlier| later.starts_with(earlier.trim_end_matches(" is missing")));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AttestationError::InvalidPredicate { kind, problems })
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Object,
    String,
}

impl Kind {
    fn matches(self, v: &serde_json::Value) -> bool {
        match self {
            Kind::Object => v.is_object(),
            Kind::String => v.as_str().is_some_and(|s| !s.trim().is_empty()),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::String => "a non-empty string",
        }
    }
}

fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

mod b64 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        // DSSE allows either base64 alphabet; cosign writes standard with padding.
        const STD: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        const URL: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let s = String::deserialize(d)?;
        STD.decode(s.trim())
            .or_else(|_| URL.decode(s.trim()))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pae_matches_the_dsse_specification() {
        // The example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn predicate_types_follow_cosign_names_and_take_uris() {
        assert_eq!(
            predicate_type("slsaprovenance1").unwrap(),
            SLSA_PROVENANCE_V1
        );
        assert_eq!(
            predicate_type("slsaprovenance").unwrap(),
            SLSA_PROVENANCE_V02
        );
        assert_eq!(predicate_type("spdxjson").unwrap(), SPDX);
        assert_eq!(predicate_type("cyclonedx").unwrap(), CYCLONEDX);
        assert_eq!(
            predicate_type("https://example.com/test-report/v1").unwrap(),
            "https://example.com/test-report/v1"
        );
        for bad in ["sbom", "", "has space:x", "https:", "nope\n:x"] {
            let e = predicate_type(bad).expect_err(bad);
            assert!(e.to_string().contains("slsaprovenance1"), "{e}");
        }
    }

    #[test]
    fn statements_name_the_image_digest() {
        let d = Digest::of(b"image");
        let s = Statement::for_image(
            "reg.local/app",
            &d,
            SPDX,
            json!({"spdxVersion": "SPDX-2.3"}),
        );
        let back = Statement::parse(&s.to_bytes()).unwrap();
        assert_eq!(back, s);
        assert!(back.is_about(&d));
        assert!(!back.is_about(&Digest::of(b"other")));
        let v: serde_json::Value = serde_json::from_slice(&s.to_bytes()).unwrap();
        assert_eq!(v["_type"], STATEMENT_V01);
        assert_eq!(v["subject"][0]["digest"]["sha256"], d.hex());
        assert!(Statement::parse(br#"{"_type":"x","predicateType":"p","subject":[]}"#).is_err());
    }

    #[test]
    fn envelopes_round_trip_and_refuse_what_is_not_one() {
        let e = Envelope::signed(b"{\"a\":1}".to_vec(), vec![1, 2, 3]);
        let back = Envelope::parse(&e.to_bytes()).unwrap();
        assert_eq!(back, e);
        let v: serde_json::Value = serde_json::from_slice(&e.to_bytes()).unwrap();
        assert_eq!(v["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        assert_eq!(v["payload"], "eyJhIjoxfQ==");
        assert_eq!(v["signatures"][0]["sig"], "AQID");
        assert!(Envelope::parse(br#"{"payloadType":"x","payload":"","signatures":[]}"#).is_err());
        assert!(Envelope::parse(b"[]").is_err());
        let mut other = e.clone();
        other.payload_type = "text/plain".into();
        assert!(other.statement().is_err());
    }

    #[test]
    fn slsa_provenance_is_checked_before_signing() {
        let good = json!({
            "buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1", "externalParameters": {}},
            "runDetails": {"builder": {"id": "https://github.com/actions/runner"}}
        });
        assert!(check_predicate(SLSA_PROVENANCE_V1, &good).is_ok());
        let e = check_predicate(
            SLSA_PROVENANCE_V1,
            &json!({"buildDefinition": {"buildType": ""}}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("buildDefinition.buildType must be a non-empty string"),
            "{e}"
        );
        assert!(
            e.contains("buildDefinition.externalParameters is missing"),
            "{e}"
        );
        assert!(e.contains("runDetails is missing"), "{e}");
        assert!(
            !e.contains("runDetails.builder.id"),
            "children of a missing parent: {e}"
        );
        assert!(check_predicate(
            SLSA_PROVENANCE_V02,
            &json!({"builder": {"id": "b"}, "buildType": "t"})
        )
        .is_ok());
        assert!(check_predicate(SLSA_PROVENANCE_V02, &json!({})).is_err());
        assert!(check_predicate(SPDX, &json!({"anything": 1})).is_ok());
        assert_eq!(
            check_predicate(SPDX, &json!([1])),
            Err(AttestationError::PredicateNotObject)
        );
    }
}
