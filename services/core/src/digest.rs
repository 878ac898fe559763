//! Content digests. signet signs manifests by digest, and only SHA-256 digests exist in
//! the registries it talks to, so anything else is rejected early with a precise message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated `sha256:` digest with 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a usable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} has no algorithm prefix; expected \"sha256:<64 lowercase hex>\"")]
    MissingAlgorithm(String),
    #[error("digest algorithm {0:?} is not supported; only sha256 is")]
    UnsupportedAlgorithm(String),
    #[error("digest {0:?} must have exactly 64 hex characters after \"sha256:\", found {1}")]
    WrongLength(String, usize),
    #[error("digest {0:?} must be lowercase hex after \"sha256:\"")]
    NotLowercaseHex(String),
}

impl Digest {
    /// Parses and validates `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(s.to_owned()));
        };
        if alg != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm(alg.to_owned()));
        }
        if hex.len() != 64 {
            return Err(DigestError::WrongLength(s.to_owned(), hex.len()));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::NotLowercaseHex(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag cosign stores signatures under: `sha256-<hex>.sig`.
    pub fn signature_tag(&self) -> String {
        format!("sha256-{}.sig", self.hex())
    }

    /// The tag cosign stores attestations under: `sha256-<hex>.att`.
    pub fn attestation_tag(&self) -> String {
        format!("sha256-{}.att", self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The pattern [`Digest::parse`] enforces, for the JSON Schemas and the API document.
pub const DIGEST_PATTERN: &str = "^sha256:[0-9a-f]{64}$";

impl utoipa::PartialSchema for Digest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(DIGEST_PATTERN))
            .description(Some(
                "An image manifest digest: sha256 and 64 lowercase hex characters.",
            ))
            .examples(["sha256:5a190ddf43a90dbfba56c7dc4f062e8f09eda0844877b8293977e87a3b031706"])
            .into()
    }
}

impl utoipa::ToSchema for Digest {}

/// True for tags that hold supply-chain attachments rather than images: cosign's
/// `sha256-<hex>.sig|.att|.sbom` and the OCI referrers fallback tag `sha256-<hex>`.
/// A signer that signed these would sign its own output forever.
pub fn is_attachment_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let (hex, suffix) = rest.split_at(rest.len().min(64));
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && matches!(suffix, "" | ".sig" | ".att" | ".sbom")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "4c0d0b7f23d7c9d6c1f5d0e5ab9d14a0f7c3e5e2b7b8d2d1f1b4f5c6a7b8c9d0";

    #[test]
    fn parses_valid_sha256() {
        let d = Digest::parse(&format!("sha256:{HEX}")).expect("valid");
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.signature_tag(), format!("sha256-{HEX}.sig"));
    }

    #[test]
    fn rejects_bad_digests_with_reason() {
        assert!(matches!(
            Digest::parse(HEX),
            Err(DigestError::MissingAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha512:{HEX}")),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::WrongLength(_, 3))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", HEX.to_uppercase())),
            Err(DigestError::NotLowercaseHex(_))
        ));
        let err = Digest::parse("sha256:abc").unwrap_err().to_string();
        assert!(err.contains("64 hex"), "{err}");
    }

    #[test]
    fn digest_of_bytes_matches_sha256sum() {
        // printf 'hello' | sha256sum
        assert_eq!(
            Digest::of(b"hello").as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn attachment_tags_are_recognised() {
        assert!(is_attachment_tag(&format!("sha256-{HEX}.sig")));
        assert!(is_attachment_tag(&format!("sha256-{HEX}.att")));
        assert!(is_attachment_tag(&format!("sha256-{HEX}.sbom")));
        assert!(is_attachment_tag(&format!("sha256-{HEX}")));
        assert!(!is_attachment_tag(&format!("sha256-{HEX}.txt")));
        assert!(!is_attachment_tag("sha256-abc.sig"));
        assert!(!is_attachment_tag("v1.2.3"));
        assert!(!is_attachment_tag(&format!(
            "sha256-{}.sig",
            HEX.to_uppercase()
        )));
    }
}
