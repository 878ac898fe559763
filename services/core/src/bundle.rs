//! Sigstore bundles (v0.3), as cosign 3 attaches them to an image as OCI 1.1 referrers:
//! a key-based signature or attestation with no transparency log entry.
//!
//! What `cosign sign --key` (v3.1.3) writes, and what signet writes the same way:
//!
//! ```json
//! {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
//!  "verificationMaterial": {"publicKey": {"hint": "<base64 of sha256 of the DER SPKI>"}},
//!  "dsseEnvelope": {"payloadType": "application/vnd.in-toto+json",
//!                   "payload": "<base64 of an in-toto Statement v1>",
//!                   "signatures": [{"sig": "<base64>"}]}}
//! ```
//!
//! The Statement names the image digest as its subject and has predicate type
//! [`SIGN_PREDICATE_TYPE`] and an empty predicate; `cosign attest` writes the same
//! bundle around a Statement with its own predicate. The signature covers DSSE's
//! pre-authentication encoding ([`crate::attestation::pae`]) of the payload type and
//! payload: RSA PKCS#1 v1.5 with SHA-256 for an RSA key, ECDSA P-256 with SHA-256 for an
//! EC key, as cosign 3 signs and verifies them.
//!
//! A bundle proves something about an image only once [`Bundle::verify`] has checked the
//! signature under a trusted key *and* that the Statement is about that image's digest:
//! whoever can push to a repository can attach any bundle to any image there.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::attestation::{
    AttestationError, Envelope, Statement, Subject, IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1,
};
use crate::{Digest, PublicKey, SignatureAlgorithm};

/// The bundle media type cosign 3 writes (the layer's media type and the referrer's
/// `artifactType` too).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The other spelling of the same version that Sigstore's specification allows.
pub const BUNDLE_MEDIA_TYPE_V03_PARAM: &str =
    "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// The predicate type of an image signature made by `cosign sign` (v3).
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// Referrer manifest annotation: what the bundle holds (`dsse-envelope`).
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
/// Referrer manifest annotation: the Statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// The value of [`CONTENT_ANNOTATION`] for a bundle holding a DSSE envelope.
pub const DSSE_CONTENT: &str = "dsse-envelope";

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a Sigstore bundle: the JSON does not fit (line {line}, column {column})")]
    Malformed { line: usize, column: usize },
    #[error("media type {0:?} is not a Sigstore bundle v0.3 ({BUNDLE_MEDIA_TYPE})")]
    MediaType(String),
    #[error("the bundle has no verificationMaterial")]
    NoVerificationMaterial,
    #[error("the bundle holds a message signature (cosign sign-blob), not a DSSE envelope; an image signature or attestation is a signed in-toto Statement")]
    MessageSignature,
    #[error("the bundle holds no DSSE envelope")]
    NoEnvelope,
    #[error("the bundle's DSSE envelope carries no signature")]
    Unsigned,
    #[error("the bundle's signature does not verify under key {fingerprint} with {algorithm}")]
    BadSignature {
        fingerprint: String,
        algorithm: SignatureAlgorithm,
    },
    #[error("the bundle's payload is not an in-toto Statement: {0}")]
    Statement(#[source] AttestationError),
    #[error("the bundle's Statement is about other content, not {0}")]
    WrongSubject(Digest),
    #[error("the bundle is an attestation ({0}), not an image signature ({SIGN_PREDICATE_TYPE})")]
    NotASignature(String),
}

/// The key hint cosign writes into `verificationMaterial.publicKey.hint`: standard base64
/// (with padding) of the SHA-256 of the key's DER SubjectPublicKeyInfo, the same bytes as
/// `openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64`.
pub fn key_hint(key: &PublicKey) -> String {
    STANDARD.encode(Sha256::digest(key.spki_der()))
}

/// A parsed Sigstore bundle v0.3 holding a DSSE envelope. Nothing in it is trusted until
/// [`Bundle::verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// One of the two v0.3 spellings.
    pub media_type: String,
    /// `verificationMaterial.publicKey.hint`, when the bundle names a key (not a
    /// certificate). A hint picks the key to try; the signature decides.
    pub key_hint: Option<String>,
    /// The rest of `verificationMaterial` (a certificate, tlog entries, timestamps), kept
    /// as it came so that [`Bundle::to_bytes`] loses nothing.
    pub other_material: Map<String, Value>,
    pub envelope: Envelope,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verification_material: Option<WireMaterial>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dsse_envelope: Option<Envelope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_signature: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<WireKey>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Serialize, Deserialize)]
struct WireKey {
    #[serde(default)]
    hint: String,
}

impl Bundle {
    /// The Statement `cosign sign` (v3) signs for `repository@digest`: in-toto Statement
    /// v1, the image digest as subject, [`SIGN_PREDICATE_TYPE`], an empty predicate.
    /// The subject also names the repository, which cosign leaves out and in-toto allows.
    pub fn signature_statement(repository: &str, digest: &Digest) -> Statement {
        Statement {
            statement_type: STATEMENT_V1.to_owned(),
            predicate_type: SIGN_PREDICATE_TYPE.to_owned(),
            subject: vec![Subject {
                name: repository.to_owned(),
                digest: BTreeMap::from([("sha256".to_owned(), digest.hex().to_owned())]),
            }],
            predicate: Value::Object(Map::new()),
        }
    }

    /// The bytes a witness signs for an image signature bundle about `repository@digest`
    /// (the DSSE pre-authentication encoding of [`Bundle::signature_statement`]).
    pub fn signing_input(repository: &str, digest: &Digest) -> Vec<u8> {
        Envelope::signing_input(&Self::signature_statement(repository, digest)).0
    }

    /// The image signature bundle for `repository@digest`, around `signature` (made over
    /// [`Bundle::signing_input`]) by the key whose [`key_hint`] is `key_hint`.
    pub fn for_signature(
        repository: &str,
        digest: &Digest,
        key_hint: &str,
        signature: Vec<u8>,
    ) -> Self {
        Self::for_statement(
            &Self::signature_statement(repository, digest),
            key_hint,
            signature,
        )
    }

    /// A bundle around any Statement (an attestation: SLSA provenance, an SBOM, ...);
    /// `signature` is over `Envelope::signing_input(statement).0`.
    pub fn for_statement(statement: &Statement, key_hint: &str, signature: Vec<u8>) -> Self {
        Self {
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            key_hint: Some(key_hint.to_owned()),
            other_material: Map::new(),
            envelope: Envelope::signed(statement.to_bytes(), signature),
        }
    }

    /// Parses a bundle strictly: a v0.3 media type, verification material, and a DSSE
    /// envelope with at least one signature. Fields outside the bundle format are ignored,
    /// as protobuf JSON readers do.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed {
            line: e.line(),
            column: e.column(),
        })?;
        if wire.media_type != BUNDLE_MEDIA_TYPE && wire.media_type != BUNDLE_MEDIA_TYPE_V03_PARAM {
            // Named only when it is short and printable: it is the bundle author's text.
            let shown = if wire.media_type.len() <= 128
                && wire
                    .media_type
                    .bytes()
                    .all(|b| b.is_ascii_graphic() || b == b' ')
            {
                wire.media_type
            } else {
                "(unprintable)".to_owned()
            };
            return Err(BundleError::MediaType(shown));
        }
        let material = wire
            .verification_material
            .ok_or(BundleError::NoVerificationMaterial)?;
        let envelope = match (wire.dsse_envelope, wire.message_signature) {
            (Some(envelope), None) => envelope,
            (None, Some(_)) => return Err(BundleError::MessageSignature),
            // Both at once is not one of the format's two shapes.
            (None, None) | (Some(_), Some(_)) => return Err(BundleError::NoEnvelope),
        };
        if envelope.signatures.is_empty() {
            return Err(BundleError::Unsigned);
        }
        Ok(Self {
            media_type: wire.media_type,
            key_hint: material
                .public_key
                .map(|k| k.hint)
                .filter(|h| !h.is_empty()),
            other_material: material.other,
            envelope,
        })
    }

    /// The bundle as JSON, the layer blob of its referrer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            media_type: self.media_type.clone(),
            verification_material: Some(WireMaterial {
                public_key: self.key_hint.clone().map(|hint| WireKey { hint }),
                other: self.other_material.clone(),
            }),
            dsse_envelope: Some(self.envelope.clone()),
            message_signature: None,
        };
        serde_json::to_vec(&wire).expect("a bundle serializes")
    }

    /// The annotations cosign puts on a bundle's referrer manifest, from the Statement
    /// inside (unverified: they only help a reader choose what to fetch). No creation
    /// time, so that publishing the same bundle twice writes the same manifest.
    pub fn manifest_annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([(CONTENT_ANNOTATION.to_owned(), DSSE_CONTENT.to_owned())]);
        if let Ok(statement) = self.statement_unverified() {
            out.insert(
                PREDICATE_TYPE_ANNOTATION.to_owned(),
                statement.predicate_type,
            );
        }
        out
    }

    /// Checks the bundle under `key` with the key's usual algorithm (ECDSA for an EC key,
    /// RSA PKCS#1 v1.5 for RSA) and that its Statement is about `digest`; returns the
    /// Statement.
    pub fn verify(&self, key: &PublicKey, digest: &Digest) -> Result<Statement, BundleError> {
        self.verify_with(key, key.default_algorithm(), digest)
    }

    /// [`Bundle::verify`], and the Statement must be an image signature
    /// ([`SIGN_PREDICATE_TYPE`]): an attestation the same key signed about the image (an
    /// SBOM, a test report) is a claim about it, not approval of it. `cosign verify`
    /// (v3.1.3) does not make this distinction and lists such attestations among the
    /// signatures it verified.
    pub fn verify_signature(
        &self,
        key: &PublicKey,
        digest: &Digest,
    ) -> Result<Statement, BundleError> {
        let statement = self.verify(key, digest)?;
        if statement.predicate_type != SIGN_PREDICATE_TYPE {
            return Err(BundleError::NotASignature(statement.predicate_type));
        }
        Ok(statement)
    }

    /// [`Bundle::verify`] with an explicit algorithm (a witness that signs RSA-PSS).
    pub fn verify_with(
        &self,
        key: &PublicKey,
        algorithm: SignatureAlgorithm,
        digest: &Digest,
    ) -> Result<Statement, BundleError> {
        if !self.envelope.verify(key, algorithm) {
            return Err(BundleError::BadSignature {
                fingerprint: key.fingerprint(),
                algorithm,
            });
        }
        let statement = self.statement_unverified()?;
        if !statement.is_about(digest) {
            return Err(BundleError::WrongSubject(digest.clone()));
        }
        Ok(statement)
    }

    /// The Statement inside, before any signature check.
    pub fn statement_unverified(&self) -> Result<Statement, BundleError> {
        if self.envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(BundleError::Statement(AttestationError::Statement(
                format!(
                    "payload type {:?}, not {IN_TOTO_PAYLOAD_TYPE}",
                    self.envelope.payload_type
                ),
            )));
        }
        // cosign 3 leaves out the subject's `name` (optional in in-toto v1); the
        // Statement reads it as empty.
        Statement::parse(&self.envelope.payload).map_err(BundleError::Statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{self as lc, KeyPair as _};
    use serde_json::json;

    // What the real cosign 3 (v3.1.3, `cosign3 sign --key ... --signing-config ...
    // --trusted-root ...`, see services/testkit/tests/referrers_registry.rs) attached to
    // two images: the layer blob of each bundle referrer, byte for byte, the public key
    // it signed with, and the image digest. One ECDSA P-256 key from `cosign3
    // generate-key-pair`, one RSA-2048 key made by `openssl genrsa` and brought in with
    // `cosign3 import-key-pair`.
    const EC_PUB: &str = r#"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmvrItIp7k+YDVAFtLlVHT04/bTro
UTn39NA7G0dxlMj4R/Ym9YfQPauYliyjFdK1ljl+YqTGP9LF1PCrK6Sm0A==
-----END PUBLIC KEY-----
"#;
    const EC_IMAGE: &str =
        "sha256:9cd9d4498303ac21db60661b0c1c1eea4df9c2bf372306cea6b737c9751d9275";
    const EC_BUNDLE: &str = r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"fi5c8JFordOLophvWJmMWeMwtAbg+lUC6uL8Mp42JU0="}},"dsseEnvelope":{"payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEiLCJzdWJqZWN0IjpbeyJkaWdlc3QiOnsic2hhMjU2IjoiOWNkOWQ0NDk4MzAzYWMyMWRiNjA2NjFiMGMxYzFlZWE0ZGY5YzJiZjM3MjMwNmNlYTZiNzM3Yzk3NTFkOTI3NSJ9LCJhbm5vdGF0aW9ucyI6e319XSwicHJlZGljYXRlVHlwZSI6Imh0dHBzOi8vc2lnc3RvcmUuZGV2L2Nvc2lnbi9zaWduL3YxIiwicHJlZGljYXRlIjp7fX0=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"MEYCIQDXnscD5PSSQqxR/HnpdKMBTV8A003hHq9kro2wkuZShAIhAJk/LMhOJzblf9zayab2lD6jEGEspmZEOjDctJJgWzrk"}]}}"#;
    const RSA_PUB: &str = r#"-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA6/iEZB20INvvJJawo6L/
O7yELAThqvwsC7JIBFTkH+folFcoYqnKYY0id9E3y4Vjm/cH2OHI3Yr0pZa1ArBT
Q1LrhhMG2phthu4ztM1parlbfHzl2BiTkXSv80VOACoTqaYplRCHPLD5EU9deltk
IbYw9h+uIt+gKdBZsyDUKokdUNDU0unDVSuGf4azpm07TCguLbyNMrvnpAn2pZxt
SKmXpA6ZHOS8t9GZlCovQS6ll7AUueYzlmS3IPJtRMC7Ikc/osWhSBcaUDFxOhb6
bgAjI8sQEO8YIuscUAuy64Y7254CEYyxiKzqM8SiCTBBd3DTMDduNSSr2EkV/0bQ
fwIDAQAB
-----END PUBLIC KEY-----
"#;
    const RSA_IMAGE: &str =
        "sha256:50cbd0c95319c9b25b9a82d411d283d6fc160048cf609be1a8a64968020a857f";
    const RSA_BUNDLE: &str = r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"JD6utRmISLBA/06D8iV1eicmUdgwhsViOZVjPL2NrcE="}},"dsseEnvelope":{"payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEiLCJzdWJqZWN0IjpbeyJkaWdlc3QiOnsic2hhMjU2IjoiNTBjYmQwYzk1MzE5YzliMjViOWE4MmQ0MTFkMjgzZDZmYzE2MDA0OGNmNjA5YmUxYThhNjQ5NjgwMjBhODU3ZiJ9LCJhbm5vdGF0aW9ucyI6e319XSwicHJlZGljYXRlVHlwZSI6Imh0dHBzOi8vc2lnc3RvcmUuZGV2L2Nvc2lnbi9zaWduL3YxIiwicHJlZGljYXRlIjp7fX0=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"aKPDeFU2G8WJJ61RcJcg0n9jaT5r9kQFZQnF3ps7cZMQb6EdqrAxsDuwPy+5mYi6SB3oGpeTgi6fq/llBShh7zuNr3HQBhcmnLoW9IjB75t9V7E+e0wcUOhpADnS5q4dlRTBHvFXoui7gFqwoRLncpSHFt3lyw2aELQqUWzJ8cFl7RLv51sQF8NlvMz3E94oLFGW1IqD/EVRlVijE0VHsy38L+lEP+uXv6O+02349+pBQF8TyITImYf+wkMeui1ujRV39QZ6vfmx6skaxh1vM2bJOS+c0BSEQI7vKT5imb8WQ+2MY2w/Qa0Rc/2gpFTU23J4EZK8/JsjsK7P+l+ruw=="}]}}"#;

    fn key(pem: &str) -> PublicKey {
        PublicKey::parse(pem.as_bytes()).expect("key")
    }

    fn digest(s: &str) -> Digest {
        Digest::parse(s).expect("digest")
    }

    fn rsa() -> (KeyPair, PublicKey) {
        let kp = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let der = kp.public_key().as_der().expect("der");
        let pk = PublicKey::parse(der.as_ref()).expect("parse");
        (kp, pk)
    }

    fn sign(kp: &KeyPair, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(
            &lc::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message,
            &mut sig,
        )
        .expect("sign");
        sig
    }

    #[test]
    fn cosign3_bundles_parse_and_verify_with_their_keys() {
        for (pem, image, bundle) in [
            (EC_PUB, EC_IMAGE, EC_BUNDLE),
            (RSA_PUB, RSA_IMAGE, RSA_BUNDLE),
        ] {
            let key = key(pem);
            let image = digest(image);
            let b = Bundle::parse(bundle.as_bytes()).expect("cosign3's bundle parses");
            assert_eq!(b.media_type, BUNDLE_MEDIA_TYPE);
            // The hint is base64 of the SHA-256 of the DER SubjectPublicKeyInfo.
            assert_eq!(b.key_hint.as_deref(), Some(key_hint(&key).as_str()));
            assert!(
                b.other_material.is_empty(),
                "no certificate, no tlog entries"
            );
            let st = b.verify(&key, &image).expect("verifies");
            assert_eq!(st.statement_type, STATEMENT_V1);
            assert_eq!(st.predicate_type, SIGN_PREDICATE_TYPE);
            assert_eq!(st.predicate, json!({}));
            assert_eq!(st.subject.len(), 1);
            assert_eq!(st.subject[0].name, "", "cosign names no subject");
            assert_eq!(
                b.manifest_annotations(),
                BTreeMap::from([
                    (CONTENT_ANNOTATION.to_owned(), DSSE_CONTENT.to_owned()),
                    (
                        PREDICATE_TYPE_ANNOTATION.to_owned(),
                        SIGN_PREDICATE_TYPE.to_owned()
                    ),
                ])
            );
            // Another image's digest: the signature is good, the subject is not.
            assert_eq!(
                b.verify(&key, &Digest::of(b"other image")),
                Err(BundleError::WrongSubject(Digest::of(b"other image")))
            );
            // Re-serialised, it still verifies (nothing was lost).
            let again = Bundle::parse(&b.to_bytes()).expect("round trip");
            assert_eq!(again, b);
            again.verify(&key, &image).expect("still verifies");
        }
        // Each under the other's key: no.
        let e = Bundle::parse(EC_BUNDLE.as_bytes())
            .expect("parse")
            .verify(&key(RSA_PUB), &digest(EC_IMAGE))
            .expect_err("wrong key");
        assert!(matches!(e, BundleError::BadSignature { .. }), "{e}");
        assert!(Bundle::parse(RSA_BUNDLE.as_bytes())
            .expect("parse")
            .verify(&key(EC_PUB), &digest(RSA_IMAGE))
            .is_err());
    }

    #[test]
    fn signet_builds_the_bundle_cosign3_writes() {
        let (kp, pk) = rsa();
        let image = Digest::of(b"image manifest");
        let to_sign = Bundle::signing_input("reg.local/team/app", &image);
        assert!(to_sign.starts_with(b"DSSEv1 28 application/vnd.in-toto+json "));
        let b = Bundle::for_signature(
            "reg.local/team/app",
            &image,
            &key_hint(&pk),
            sign(&kp, &to_sign),
        );
        let v: serde_json::Value = serde_json::from_slice(&b.to_bytes()).expect("json");
        assert_eq!(v["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(
            v["verificationMaterial"],
            json!({"publicKey": {"hint": key_hint(&pk)}})
        );
        assert_eq!(v["dsseEnvelope"]["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        assert_eq!(
            v["dsseEnvelope"]["signatures"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(v.get("messageSignature").is_none());
        let statement: serde_json::Value =
            serde_json::from_slice(&b.envelope.payload).expect("json");
        assert_eq!(statement["_type"], STATEMENT_V1);
        assert_eq!(statement["predicateType"], SIGN_PREDICATE_TYPE);
        assert_eq!(statement["predicate"], json!({}));
        assert_eq!(statement["subject"][0]["digest"]["sha256"], image.hex());
        let parsed = Bundle::parse(&b.to_bytes()).expect("parses");
        let st = parsed.verify(&pk, &image).expect("verifies");
        assert!(st.is_about(&image));
        assert_eq!(st.subject[0].name, "reg.local/team/app");
        // Another key does not verify it.
        let (_, other) = rsa();
        assert!(matches!(
            parsed.verify(&other, &image),
            Err(BundleError::BadSignature { .. })
        ));
        // A signature over the bare payload (no DSSE encoding) does not count.
        let bare = Bundle::for_signature(
            "reg.local/team/app",
            &image,
            &key_hint(&pk),
            sign(&kp, &b.envelope.payload),
        );
        assert!(bare.verify(&pk, &image).is_err());
        // The bundle as signed: PKCS#1 v1.5, deterministic, so signing again gives the
        // same bytes (publishing twice writes one referrer).
        let twice = Bundle::for_signature(
            "reg.local/team/app",
            &image,
            &key_hint(&pk),
            sign(&kp, &to_sign),
        );
        assert_eq!(twice.to_bytes(), b.to_bytes());
    }

    #[test]
    fn attestation_bundles_carry_any_predicate() {
        let (kp, pk) = rsa();
        let image = Digest::of(b"image");
        let statement = Statement::for_image(
            "reg.local/app",
            &image,
            crate::attestation::SLSA_PROVENANCE_V1,
            json!({"buildDefinition": {"buildType": "t", "externalParameters": {}}, "runDetails": {"builder": {"id": "b"}}}),
        );
        let (to_sign, _) = Envelope::signing_input(&statement);
        let b = Bundle::for_statement(&statement, &key_hint(&pk), sign(&kp, &to_sign));
        assert_eq!(
            b.manifest_annotations()
                .get(PREDICATE_TYPE_ANNOTATION)
                .map(String::as_str),
            Some(crate::attestation::SLSA_PROVENANCE_V1)
        );
        let st = Bundle::parse(&b.to_bytes())
            .expect("parse")
            .verify(&pk, &image)
            .expect("verifies");
        assert_eq!(st, statement);
    }

    #[test]
    fn an_attestation_is_not_an_image_signature() {
        let (kp, pk) = rsa();
        let image = Digest::of(b"image");
        let sbom = Statement::for_image("r", &image, crate::attestation::SPDX, json!({}));
        let (to_sign, _) = Envelope::signing_input(&sbom);
        let b = Bundle::for_statement(&sbom, &key_hint(&pk), sign(&kp, &to_sign));
        assert!(b.verify(&pk, &image).is_ok());
        assert_eq!(
            b.verify_signature(&pk, &image),
            Err(BundleError::NotASignature(
                crate::attestation::SPDX.to_owned()
            ))
        );
        let sig = Bundle::for_signature(
            "r",
            &image,
            &key_hint(&pk),
            sign(&kp, &Bundle::signing_input("r", &image)),
        );
        assert!(sig.verify_signature(&pk, &image).is_ok());
    }

    #[test]
    fn payload_swaps_are_refused() {
        // The attacker keeps cosign3's signature and swaps in a Statement about their
        // image: the signature no longer covers the payload.
        let key = key(EC_PUB);
        let mut b = Bundle::parse(EC_BUNDLE.as_bytes()).expect("parse");
        let theirs = Digest::of(b"attacker image");
        b.envelope.payload = Bundle::signature_statement("x", &theirs).to_bytes();
        assert!(matches!(
            b.verify(&key, &theirs),
            Err(BundleError::BadSignature { .. })
        ));
        // Or changes the payload type (the PAE covers it).
        let mut b = Bundle::parse(EC_BUNDLE.as_bytes()).expect("parse");
        b.envelope.payload_type = "application/json".into();
        assert!(b.verify(&key, &digest(EC_IMAGE)).is_err());
    }

    #[test]
    fn what_is_not_a_v03_dsse_bundle_is_refused() {
        let good: serde_json::Value = serde_json::from_str(EC_BUNDLE).expect("json");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            Bundle::parse(&serde_json::to_vec(&v).expect("json"))
        };
        assert!(with(&|_| {}).is_ok());
        assert!(with(&|v| v["mediaType"] = json!(BUNDLE_MEDIA_TYPE_V03_PARAM)).is_ok());
        for old in [
            "application/vnd.dev.sigstore.bundle+json;version=0.1",
            "application/vnd.dev.sigstore.bundle+json;version=0.2",
            "application/vnd.dev.sigstore.bundle.v0.4+json",
            "application/json",
        ] {
            assert_eq!(
                with(&|v| v["mediaType"] = json!(old)),
                Err(BundleError::MediaType(old.to_owned()))
            );
        }
        let long = "x".repeat(4096);
        let e = with(&|v| v["mediaType"] = json!(long)).expect_err("refused");
        assert!(!e.to_string().contains(&long), "{e}");
        assert_eq!(
            with(&|v| {
                v.as_object_mut().expect("object").remove("dsseEnvelope");
            }),
            Err(BundleError::NoEnvelope)
        );
        assert_eq!(
            with(&|v| {
                let o = v.as_object_mut().expect("object");
                o.remove("dsseEnvelope");
                o.insert(
                    "messageSignature".into(),
                    json!({"messageDigest": {}, "signature": "AA=="}),
                );
            }),
            Err(BundleError::MessageSignature)
        );
        assert_eq!(
            with(&|v| {
                v.as_object_mut()
                    .expect("object")
                    .remove("verificationMaterial");
            }),
            Err(BundleError::NoVerificationMaterial)
        );
        assert_eq!(
            with(&|v| v["dsseEnvelope"]["signatures"] = json!([])),
            Err(BundleError::Unsigned)
        );
        assert!(matches!(
            with(&|v| v["dsseEnvelope"]["payload"] = json!("not base64!")),
            Err(BundleError::Malformed { .. })
        ));
        assert!(matches!(
            Bundle::parse(b"[]"),
            Err(BundleError::Malformed { .. })
        ));
        // A Statement that is not one: refused after the signature check, never trusted.
        let mut b = Bundle::parse(EC_BUNDLE.as_bytes()).expect("parse");
        b.envelope.payload = b"{\"_type\":\"nope\"}".to_vec();
        assert!(matches!(
            b.statement_unverified(),
            Err(BundleError::Statement(_))
        ));
    }
}
