//! Public keys and signature checks.
//!
//! Verification runs on aws-lc-rs, which is about ten times faster than the `rsa` crate
//! for RSA-2048 and already in the tree as rustls' provider. The `rsa` crate parses and
//! re-encodes public keys (PKCS#1 or SPKI, PEM or DER) and checks PSS signatures with a
//! maximum-length salt, which aws-lc-rs does not accept. Only public-key operations run
//! here, so the `rsa` timing advisory (RUSTSEC-2023-0071, private-key operations) does
//! not apply.

use std::fmt;

use aws_lc_rs::signature::{self as lc, UnparsedPublicKey};
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Minimum RSA modulus size signet accepts for a witness key.
pub const MIN_RSA_BITS: usize = 2048;

/// How a witness signs. PKCS#1 v1.5 is the default because every cosign verifier
/// (cosign, policy-controller, Kyverno, containers/image) loads RSA keys that way.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignatureAlgorithm {
    #[default]
    RsaPkcs1Sha256,
    RsaPssSha256,
    /// ECDSA on P-256 with SHA-256, DER-encoded signatures: what `cosign generate-key-pair`
    /// keys sign with. Only verify-only witnesses have such keys; signet signs with RSA.
    EcdsaP256Sha256,
}

impl SignatureAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaPkcs1Sha256 => "RSA_PKCS1_SHA256",
            Self::RsaPssSha256 => "RSA_PSS_SHA256",
            Self::EcdsaP256Sha256 => "ECDSA_P256_SHA256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "RSA_PKCS1_SHA256" | "RSA_PKCS1_SHA_256" | "PKCS1V15" | "PKCS1" => {
                Some(Self::RsaPkcs1Sha256)
            }
            "RSA_PSS_SHA256" | "RSA_PSS_SHA_256" | "PSS" => Some(Self::RsaPssSha256),
            "ECDSA_P256_SHA256" | "ECDSA_SHA_256" | "ECDSA" => Some(Self::EcdsaP256Sha256),
            _ => None,
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key is not PEM or DER encoded RSA (SubjectPublicKeyInfo or PKCS#1) or ECDSA P-256 (SubjectPublicKeyInfo), nor an X.509 certificate of one: {0}")]
    UnparsableKey(String),
    #[error("public key is RSA-{0}; signet requires at least RSA-{MIN_RSA_BITS}")]
    KeyTooSmall(usize),
    #[error("signature does not verify under the given key with {0}")]
    BadSignature(SignatureAlgorithm),
}

/// A public key: RSA (kept in both encodings the verifiers need) or ECDSA P-256.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki_der: Vec<u8>,
    /// PKCS#1 DER of an RSA key; empty for an EC key.
    pkcs1_der: Vec<u8>,
    /// RSA modulus bits; 256 for a P-256 key.
    bits: usize,
}

impl PublicKey {
    /// Reads a PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) or DER (SPKI or PKCS#1) RSA key,
    /// or an ECDSA P-256 key as SPKI (PEM `PUBLIC KEY`, as cosign writes `cosign.pub`).
    ///
    /// An X.509 certificate (PEM `CERTIFICATE` or DER) stands for the key it certifies:
    /// its SubjectPublicKeyInfo is read as above, and nothing else of the certificate is
    /// kept (not its validity, names or issuer), so the fingerprint is the key's. This is
    /// how a verify-only witness takes the certificate `notation cert generate-test` writes
    /// into its trust store. A PEM holding several certificates is refused: which one's
    /// key signs would be a guess.
    pub fn parse(input: &[u8]) -> Result<Self, CryptoError> {
        let der = match std::str::from_utf8(input) {
            Ok(text) if text.contains("-----BEGIN") => {
                let block = pem::parse(text.trim())
                    .map_err(|e| CryptoError::UnparsableKey(e.to_string()))?;
                if block.tag() == CERTIFICATE_PEM_TAG {
                    let certificates = pem::parse_many(text)
                        .map_err(|e| CryptoError::UnparsableKey(e.to_string()))?
                        .iter()
                        .filter(|b| b.tag() == CERTIFICATE_PEM_TAG)
                        .count();
                    if certificates > 1 {
                        return Err(CryptoError::UnparsableKey(format!(
                            "the PEM holds {certificates} certificates; give only the one whose key signs"
                        )));
                    }
                    return Self::parse_der(&certificate_spki(block.contents())?);
                }
                block.into_contents()
            }
            _ => input.to_vec(),
        };
        match Self::parse_der(&der) {
            // Not a key: maybe a DER certificate.
            Err(CryptoError::UnparsableKey(e)) => match certificate_spki(&der) {
                Ok(spki) => Self::parse_der(&spki),
                Err(_) => Err(CryptoError::UnparsableKey(e)),
            },
            other => other,
        }
    }

    /// An RSA key (SPKI or PKCS#1 DER) or an ECDSA P-256 SPKI.
    fn parse_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = match decode_der(der) {
            Ok(key) => key,
            Err(rsa_error) => return Self::parse_ec_p256(der).ok_or(rsa_error),
        };
        let bits = key.n().bits();
        if bits < MIN_RSA_BITS {
            return Err(CryptoError::KeyTooSmall(bits));
        }
        let spki_der = key
            .to_public_key_der()
            .map_err(|e| CryptoError::UnparsableKey(e.to_string()))?
            .into_vec();
        let pkcs1_der = key
            .to_pkcs1_der()
            .map_err(|e| CryptoError::UnparsableKey(e.to_string()))?
            .into_vec();
        Ok(Self {
            spki_der,
            pkcs1_der,
            bits,
        })
    }

    /// An ECDSA P-256 SubjectPublicKeyInfo (a SEQUENCE; a bare point is not taken, so
    /// the fingerprint is always over SPKI).
    fn parse_ec_p256(der: &[u8]) -> Option<Self> {
        if der.first() != Some(&0x30) {
            return None;
        }
        lc::ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_ASN1, der).ok()?;
        Some(Self {
            spki_der: der.to_vec(),
            pkcs1_der: Vec::new(),
            bits: 256,
        })
    }

    /// Whether this is an ECDSA P-256 key (else RSA).
    pub fn is_ec(&self) -> bool {
        self.pkcs1_der.is_empty()
    }

    /// The algorithm this key's signatures are checked with by default: ECDSA for an EC
    /// key, PKCS#1 v1.5 for RSA.
    pub fn default_algorithm(&self) -> SignatureAlgorithm {
        if self.is_ec() {
            SignatureAlgorithm::EcdsaP256Sha256
        } else {
            SignatureAlgorithm::RsaPkcs1Sha256
        }
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), what `cosign verify --key` reads.
    pub fn to_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", self.spki_der.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo, the same value as
    /// `openssl pkey -pubin -outform DER | sha256sum`.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.spki_der)))
    }

    /// Checks `signature` over `message` (the exact payload bytes; SHA-256 is applied
    /// here). PSS accepts both a digest-length salt (AWS KMS) and a maximum-length
    /// salt (moto, Vault, OpenSSL's default).
    pub fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        // The key decides what it can verify: an RSA algorithm never runs on an EC key
        // or the other way round.
        if self.is_ec() != (algorithm == SignatureAlgorithm::EcdsaP256Sha256) {
            return Err(CryptoError::BadSignature(algorithm));
        }
        let params: &'static lc::RsaParameters = match algorithm {
            SignatureAlgorithm::RsaPkcs1Sha256 => &lc::RSA_PKCS1_2048_8192_SHA256,
            SignatureAlgorithm::RsaPssSha256 => &lc::RSA_PSS_2048_8192_SHA256,
            SignatureAlgorithm::EcdsaP256Sha256 => {
                return UnparsedPublicKey::new(&lc::ECDSA_P256_SHA256_ASN1, &self.spki_der)
                    .verify(message, signature)
                    .map_err(|_| CryptoError::BadSignature(algorithm));
            }
        };
        if UnparsedPublicKey::new(params, &self.pkcs1_der)
            .verify(message, signature)
            .is_ok()
        {
            return Ok(());
        }
        if algorithm == SignatureAlgorithm::RsaPssSha256
            && self.verify_pss_any_salt(message, signature)
        {
            return Ok(());
        }
        Err(CryptoError::BadSignature(algorithm))
    }

    fn verify_pss_any_salt(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(key) = rsa::RsaPublicKey::from_pkcs1_der(&self.pkcs1_der) else {
            return false;
        };
        let hashed = Sha256::digest(message);
        // Maximum salt for SHA-256: emLen - hLen - 2.
        let em_len = self.bits.div_ceil(8);
        let max_salt = em_len.saturating_sub(32 + 2);
        key.verify(
            rsa::Pss::new_with_salt::<Sha256>(max_salt),
            &hashed,
            signature,
        )
        .is_ok()
    }
}

/// The PEM label of an X.509 certificate.
const CERTIFICATE_PEM_TAG: &str = "CERTIFICATE";

/// The DER SubjectPublicKeyInfo of a DER X.509 certificate, as it is written there.
fn certificate_spki(der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use x509_cert::der::{Decode as _, Encode as _};
    let certificate = x509_cert::Certificate::from_der(der)
        .map_err(|e| CryptoError::UnparsableKey(format!("not an X.509 certificate: {e}")))?;
    certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| CryptoError::UnparsableKey(e.to_string()))
}

fn decode_der(der: &[u8]) -> Result<rsa::RsaPublicKey, CryptoError> {
    rsa::RsaPublicKey::from_public_key_der(der)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_der(der))
        .map_err(|e| CryptoError::UnparsableKey(e.to_string()))
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ec() {
            write!(f, "PublicKey(ECDSA-P256, {})", self.fingerprint())
        } else {
            write!(f, "PublicKey(RSA-{}, {})", self.bits, self.fingerprint())
        }
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_pem())
    }
}

/// The start of every key signet writes ([`PublicKey::to_pem`]) or reads from JSON.
pub const PUBLIC_KEY_PATTERN: &str = "^-----BEGIN (RSA )?PUBLIC KEY-----\n";

impl utoipa::PartialSchema for PublicKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(PUBLIC_KEY_PATTERN))
            .content_media_type("application/x-pem-file")
            .description(Some(
                "An RSA public key of at least 2048 bits, or (for a verify-only witness) an \
                 ECDSA P-256 key, as PEM. signet writes SubjectPublicKeyInfo (`PUBLIC KEY`), \
                 what `cosign verify --key` reads; it also reads PKCS#1 (`RSA PUBLIC KEY`).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PublicKey {}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;

    fn keypair() -> KeyPair {
        KeyPair::generate(KeySize::Rsa2048).expect("keygen")
    }

    fn public(kp: &KeyPair) -> PublicKey {
        let der = kp.public_key().as_der().expect("der");
        PublicKey::parse(der.as_ref()).expect("parse")
    }

    #[test]
    fn pkcs1_sign_verify_and_tamper() {
        let kp = keypair();
        let pk = public(&kp);
        assert_eq!(pk.bits(), 2048);
        let msg = b"payload";
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(&lc::RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .expect("sign");
        pk.verify(SignatureAlgorithm::RsaPkcs1Sha256, msg, &sig)
            .expect("verifies");
        assert_eq!(
            pk.verify(SignatureAlgorithm::RsaPkcs1Sha256, b"payloaX", &sig),
            Err(CryptoError::BadSignature(
                SignatureAlgorithm::RsaPkcs1Sha256
            ))
        );
        let other = public(&keypair());
        assert!(other
            .verify(SignatureAlgorithm::RsaPkcs1Sha256, msg, &sig)
            .is_err());
        // a PKCS#1 signature is not a PSS one
        assert!(pk
            .verify(SignatureAlgorithm::RsaPssSha256, msg, &sig)
            .is_err());
    }

    #[test]
    fn pss_with_digest_length_salt() {
        let kp = keypair();
        let pk = public(&kp);
        let mut sig = vec![0; kp.public_modulus_len()];
        kp.sign(&lc::RSA_PSS_SHA256, &SystemRandom::new(), b"m", &mut sig)
            .expect("sign");
        pk.verify(SignatureAlgorithm::RsaPssSha256, b"m", &sig)
            .expect("verifies");
    }

    #[test]
    fn pem_round_trip_and_fingerprint() {
        let pk = public(&keypair());
        let pem = pk.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let back = PublicKey::parse(pem.as_bytes()).expect("parse pem");
        assert_eq!(back, pk);
        assert_eq!(back.fingerprint(), pk.fingerprint());
        assert!(pk.fingerprint().starts_with("sha256:"));
        assert_eq!(pk.fingerprint().len(), 7 + 64);
    }

    #[test]
    fn rejects_garbage_and_small_keys() {
        assert!(matches!(
            PublicKey::parse(b"nope"),
            Err(CryptoError::UnparsableKey(_))
        ));
        let small = rsa::RsaPrivateKey::new(&mut rand_core_rng(), 1024).expect("keygen");
        let der = small.to_public_key().to_public_key_der().expect("der");
        assert_eq!(
            PublicKey::parse(der.as_bytes()),
            Err(CryptoError::KeyTooSmall(1024))
        );
    }

    /// A certificate holding `spki`, as far as the key goes (its signature is zeros).
    fn certificate(spki: &[u8]) -> Vec<u8> {
        use x509_cert::der::asn1::{BitString, UtcTime};
        use x509_cert::der::{Decode as _, Encode as _};
        let algorithm = x509_cert::spki::AlgorithmIdentifierOwned {
            oid: x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
            parameters: None,
        };
        let time = |secs| {
            x509_cert::time::Time::UtcTime(
                UtcTime::from_unix_duration(std::time::Duration::from_secs(secs)).expect("time"),
            )
        };
        x509_cert::Certificate {
            tbs_certificate: x509_cert::TbsCertificate {
                version: x509_cert::Version::V3,
                serial_number: x509_cert::serial_number::SerialNumber::new(&[7]).expect("serial"),
                signature: algorithm.clone(),
                issuer: Default::default(),
                validity: x509_cert::time::Validity {
                    not_before: time(1_700_000_000),
                    not_after: time(1_700_086_400),
                },
                subject: Default::default(),
                subject_public_key_info: x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki)
                    .expect("spki"),
                issuer_unique_id: None,
                subject_unique_id: None,
                extensions: None,
            },
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(&[0; 8]).expect("bits"),
        }
        .to_der()
        .expect("der")
    }

    fn certificate_pem(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
    }

    #[test]
    fn a_certificate_stands_for_its_key() {
        let pk = public(&keypair());
        let cert = certificate(pk.spki_der());
        let from_pem = PublicKey::parse(certificate_pem(&cert).as_bytes()).expect("PEM cert");
        assert_eq!(from_pem, pk);
        assert_eq!(from_pem.fingerprint(), pk.fingerprint());
        assert_eq!(PublicKey::parse(&cert).expect("DER cert"), pk);

        let ec = lc::EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen");
        let ec_spki = ec.public_key().as_der().expect("der");
        let ec_pk = PublicKey::parse(ec_spki.as_ref()).expect("ec key");
        let from_cert =
            PublicKey::parse(certificate_pem(&certificate(ec_spki.as_ref())).as_bytes())
                .expect("EC cert");
        assert!(from_cert.is_ec());
        assert_eq!(from_cert.fingerprint(), ec_pk.fingerprint());

        // A chain: which certificate's key signs is not guessed.
        let other = certificate(public(&keypair()).spki_der());
        let two = format!("{}{}", certificate_pem(&cert), certificate_pem(&other));
        assert!(matches!(
            PublicKey::parse(two.as_bytes()),
            Err(CryptoError::UnparsableKey(m)) if m.contains("2 certificates")
        ));
        // A certificate of a small key is still refused.
        let small = rsa::RsaPrivateKey::new(&mut rand_core_rng(), 1024).expect("keygen");
        let small_spki = small.to_public_key().to_public_key_der().expect("der");
        assert_eq!(
            PublicKey::parse(certificate_pem(&certificate(small_spki.as_bytes())).as_bytes()),
            Err(CryptoError::KeyTooSmall(1024))
        );
        // Garbage labelled a certificate.
        assert!(matches!(
            PublicKey::parse(certificate_pem(b"nope").as_bytes()),
            Err(CryptoError::UnparsableKey(_))
        ));
    }

    fn rand_core_rng() -> rsa::rand_core::OsRng {
        rsa::rand_core::OsRng
    }
}
