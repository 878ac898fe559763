//! The control plane's seal: a detached signature, made by the control plane's KMS key,
//! over the exact bytes of a trust bundle or an event. A verifier pins the public half
//! of that key (two during a rotation) and takes nothing from the gateway or the bus
//! that does not carry a seal by one of them.
//!
//! The seal travels beside the bytes it covers, never inside them: as the
//! `Signet-Signature` HTTP header of a trust bundle, and as the `Signet-Signature`
//! message header of an event on NATS, RabbitMQ or the embedded bus. Its value is
//!
//! ```text
//! keyid="sha256:<hex of the key's DER SubjectPublicKeyInfo>", alg="RSA_PKCS1_SHA256", sig="<base64>"
//! ```
//!
//! The format is signet's own (a few lines, parsed strictly): HTTP Message Signatures
//! (RFC 9421) would sign a canonicalised selection of HTTP components, not bytes that
//! also travel on a message bus and are kept on disk.

use std::fmt;

use base64::Engine;

use crate::crypto::{PublicKey, SignatureAlgorithm};

/// The header that carries a seal, on HTTP answers and bus messages alike.
pub const SEAL_HEADER: &str = "Signet-Signature";

/// The longest header value accepted: a 4096-bit signature in base64 plus the key id
/// comes to about 800 bytes.
const MAX_HEADER_LEN: usize = 4096;

/// A detached signature over some bytes, and which key made it.
#[derive(Clone, PartialEq, Eq)]
pub struct Seal {
    /// `sha256:<hex>`, the sealing key's fingerprint ([`PublicKey::fingerprint`]).
    pub key: String,
    pub algorithm: SignatureAlgorithm,
    pub signature: Vec<u8>,
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seal")
            .field("key", &self.key)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Seal {
    /// The header value.
    pub fn to_header(&self) -> String {
        format!(
            "keyid=\"{}\", alg=\"{}\", sig=\"{}\"",
            self.key,
            self.algorithm.as_str(),
            base64::engine::general_purpose::STANDARD.encode(&self.signature)
        )
    }

    /// Reads a header value; every one of `keyid`, `alg` and `sig` exactly once, nothing
    /// else.
    pub fn parse(header: &str) -> Result<Self, SealError> {
        if header.len() > MAX_HEADER_LEN {
            return Err(SealError::Malformed(format!(
                "the seal is {} bytes long, more than {MAX_HEADER_LEN}",
                header.len()
            )));
        }
        let (mut key, mut alg, mut sig) = (None, None, None);
        for part in header.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| SealError::Malformed(format!("{part:?} is not name=\"value\"")))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| SealError::Malformed(format!("{name} is not quoted")))?;
            let slot = match name {
                "keyid" => &mut key,
                "alg" => &mut alg,
                "sig" => &mut sig,
                other => return Err(SealError::Malformed(format!("unknown field {other:?}"))),
            };
            if slot.replace(value).is_some() {
                return Err(SealError::Malformed(format!("{name} appears twice")));
            }
        }
        let key = key.ok_or_else(|| SealError::Malformed("no keyid".into()))?;
        let alg = alg.ok_or_else(|| SealError::Malformed("no alg".into()))?;
        let sig = sig.ok_or_else(|| SealError::Malformed("no sig".into()))?;
        let algorithm = SignatureAlgorithm::parse(alg)
            .ok_or_else(|| SealError::Malformed(format!("unknown algorithm {alg:?}")))?;
        let valid_key = key
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !valid_key {
            return Err(SealError::Malformed(format!(
                "keyid {key:?} is not sha256:<64 hex digits>"
            )));
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .map_err(|e| SealError::Malformed(format!("sig is not base64: {e}")))?;
        Ok(Self {
            key: key.to_ascii_lowercase(),
            algorithm,
            signature,
        })
    }
}

/// Why sealed bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not sealed: no {SEAL_HEADER} came with it")]
    Missing,
    #[error("the seal is malformed: {0}")]
    Malformed(String),
    #[error("sealed by key {0}, which is not a pinned control plane key")]
    UnknownKey(String),
    #[error("the seal by key {0} does not verify over these bytes")]
    BadSignature(String),
}

impl SealError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "unsealed",
            Self::Malformed(_) => "malformed",
            Self::UnknownKey(_) => "unknown_key",
            Self::BadSignature(_) => "bad_signature",
        }
    }
}

/// The control plane keys a verifier trusts: one, or two while the control plane's key
/// is rotated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinnedKeys {
    keys: Vec<(String, PublicKey)>,
}

impl PinnedKeys {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut pinned = Self::default();
        for k in keys {
            pinned.add(k);
        }
        pinned
    }

    /// Every `PUBLIC KEY` / `RSA PUBLIC KEY` block in `text` (one file may hold both keys
    /// of a rotation).
    pub fn from_pem(text: &str) -> Result<Self, crate::CryptoError> {
        let blocks =
            pem::parse_many(text).map_err(|e| crate::CryptoError::UnparsableKey(e.to_string()))?;
        if blocks.is_empty() {
            return Err(crate::CryptoError::UnparsableKey(
                "no PEM block found".into(),
            ));
        }
        let mut pinned = Self::default();
        for block in blocks {
            pinned.add(PublicKey::parse(block.contents())?);
        }
        Ok(pinned)
    }

    pub fn add(&mut self, key: PublicKey) {
        let fingerprint = key.fingerprint();
        if !self.keys.iter().any(|(f, _)| *f == fingerprint) {
            self.keys.push((fingerprint, key));
        }
    }

    pub fn extend(&mut self, other: PinnedKeys) {
        for (_, k) in other.keys {
            self.add(k);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The pinned keys' fingerprints.
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(f, _)| f.as_str())
    }

    /// Checks that `header` is a seal over exactly `bytes` by a pinned key; returns that
    /// key's fingerprint.
    pub fn check(&self, bytes: &[u8], header: Option<&str>) -> Result<&str, SealError> {
        let seal = Seal::parse(header.ok_or(SealError::Missing)?)?;
        self.check_seal(bytes, &seal)
    }

    /// [`PinnedKeys::check`] for a parsed seal.
    pub fn check_seal(&self, bytes: &[u8], seal: &Seal) -> Result<&str, SealError> {
        let (fingerprint, key) = self
            .keys
            .iter()
            .find(|(f, _)| *f == seal.key)
            .ok_or_else(|| SealError::UnknownKey(seal.key.clone()))?;
        key.verify(seal.algorithm, bytes, &seal.signature)
            .map_err(|_| SealError::BadSignature(seal.key.clone()))?;
        Ok(fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256};

    fn keypair() -> (RsaKeyPair, PublicKey) {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("key");
        let public = PublicKey::parse(pair.public_key().as_ref()).expect("public key");
        (pair, public)
    }

    fn seal(pair: &RsaKeyPair, public: &PublicKey, bytes: &[u8]) -> Seal {
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), bytes, &mut sig)
            .expect("sign");
        Seal {
            key: public.fingerprint(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            signature: sig,
        }
    }

    #[test]
    fn a_seal_round_trips_and_verifies_only_over_its_bytes() {
        let (pair, public) = keypair();
        let pinned = PinnedKeys::new([public.clone()]);
        let header = seal(&pair, &public, b"bundle").to_header();
        assert_eq!(
            pinned.check(b"bundle", Some(&header)),
            Ok(public.fingerprint().as_str())
        );
        assert_eq!(
            pinned.check(b"bundle ", Some(&header)),
            Err(SealError::BadSignature(public.fingerprint()))
        );
        assert_eq!(pinned.check(b"bundle", None), Err(SealError::Missing));
    }

    #[test]
    fn another_key_is_refused_even_when_it_names_a_pinned_one() {
        let (pair, public) = keypair();
        let (other_pair, other) = keypair();
        let pinned = PinnedKeys::new([public.clone()]);
        let by_other = seal(&other_pair, &other, b"x");
        assert_eq!(
            pinned.check_seal(b"x", &by_other),
            Err(SealError::UnknownKey(other.fingerprint()))
        );
        // The attacker names the pinned key but signs with their own.
        let mut lying = by_other;
        lying.key = public.fingerprint();
        assert!(matches!(
            pinned.check_seal(b"x", &lying),
            Err(SealError::BadSignature(_))
        ));
        // During a rotation both keys count.
        let mut both = pinned.clone();
        both.add(other.clone());
        assert!(both
            .check_seal(b"x", &seal(&other_pair, &other, b"x"))
            .is_ok());
        assert!(both.check_seal(b"y", &seal(&pair, &public, b"y")).is_ok());
    }

    #[test]
    fn malformed_headers_are_refused() {
        let key = format!("sha256:{}", "ab".repeat(32));
        for bad in [
            String::new(),
            "keyid=\"x\"".into(),
            format!("keyid=\"{key}\", alg=\"RSA_PKCS1_SHA256\""),
            format!("keyid=\"{key}\", alg=\"RSA_PKCS1_SHA256\", sig=\"!!\""),
            format!("keyid=\"{key}\", alg=\"HS256\", sig=\"AA==\""),
            format!("keyid=\"{key}\", keyid=\"{key}\", alg=\"RSA_PKCS1_SHA256\", sig=\"AA==\""),
            format!("keyid=\"{key}\", alg=\"RSA_PKCS1_SHA256\", sig=\"AA==\", x=\"1\""),
            format!("keyid={key}, alg=\"RSA_PKCS1_SHA256\", sig=\"AA==\""),
            format!(
                "keyid=\"{key}\", alg=\"RSA_PKCS1_SHA256\", sig=\"{}\"",
                "A".repeat(5000)
            ),
        ] {
            assert!(
                matches!(Seal::parse(&bad), Err(SealError::Malformed(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn pem_files_may_hold_both_keys_of_a_rotation() {
        let (_, a) = keypair();
        let (_, b) = keypair();
        let text = format!("{}\n{}", a.to_pem(), b.to_pem());
        let pinned = PinnedKeys::from_pem(&text).expect("two keys");
        let fps: Vec<_> = pinned.fingerprints().collect();
        assert_eq!(fps, [a.fingerprint(), b.fingerprint()]);
        assert!(PinnedKeys::from_pem("nothing here").is_err());
    }
}
