//! Manifests as the registry stores them, and which of them are image indexes.

use serde::Deserialize;
use signet_core::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Every manifest type signet handles, for `Accept`: asking for fewer would let a registry
/// convert the manifest and answer with a different digest.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// A manifest exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: Digest,
    platforms: Vec<Digest>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: Option<String>,
    architecture: Option<String>,
}

impl Manifest {
    /// Parses enough of `bytes` to know its type and, for an index, its platform manifests.
    /// `content_type` is the registry's header, used when the body does not say.
    pub(crate) fn new(
        bytes: Vec<u8>,
        digest: Digest,
        content_type: Option<&str>,
    ) -> Result<Self, String> {
        let probe: Probe = serde_json::from_slice(&bytes)
            // serde's message can quote the registry's text, which must not reach a caller.
            .map_err(|e| {
                format!(
                    "manifest is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?;
        let media_type = probe
            .media_type
            .filter(|m| !m.is_empty())
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()))
            .filter(|m| MANIFEST_ACCEPT.contains(&m.as_str()))
            // An OCI manifest may omit mediaType; its shape tells which kind it is.
            .unwrap_or_else(|| {
                if probe.manifests.is_some() {
                    OCI_INDEX
                } else {
                    OCI_MANIFEST
                }
                .to_owned()
            });
        let mut platforms = Vec::new();
        if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
            for entry in probe.manifests.unwrap_or_default() {
                let is_image = entry
                    .media_type
                    .as_deref()
                    .is_none_or(|m| m == OCI_MANIFEST || m == DOCKER_MANIFEST);
                // buildx stores provenance as "unknown/unknown" entries; they are not platforms.
                let is_attestation = entry.platform.as_ref().is_some_and(|p| {
                    p.os.as_deref() == Some("unknown")
                        && p.architecture.as_deref() == Some("unknown")
                });
                if is_image && !is_attestation {
                    let d = Digest::parse(&entry.digest)
                        .map_err(|_| "an index entry's digest is not a sha256 digest".to_owned())?;
                    platforms.push(d);
                }
            }
        }
        Ok(Self {
            media_type,
            bytes,
            digest,
            platforms,
        })
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// For an index: the platform manifests' digests (attestation entries left out).
    /// For an image manifest: empty.
    pub fn platform_digests(&self) -> &[Digest] {
        &self.platforms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    fn m(json: serde_json::Value, ct: Option<&str>) -> Manifest {
        let bytes = serde_json::to_vec(&json).expect("json");
        let d = Digest::of(&bytes);
        Manifest::new(bytes, d, ct).expect("parse")
    }

    #[test]
    fn index_lists_platforms_but_not_attestations() {
        let idx = m(
            serde_json::json!({
                "schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": A, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
                    {"mediaType": OCI_MANIFEST, "digest": B, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
                    {"mediaType": OCI_MANIFEST, "digest": C, "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
                ]
            }),
            None,
        );
        assert!(idx.is_index());
        let got: Vec<&str> = idx.platform_digests().iter().map(Digest::as_str).collect();
        assert_eq!(got, vec![A, B]);
    }

    #[test]
    fn image_manifests_have_no_platforms_and_media_type_falls_back() {
        let img = m(
            serde_json::json!({"schemaVersion": 2, "config": {}, "layers": []}),
            None,
        );
        assert_eq!(img.media_type, OCI_MANIFEST);
        assert!(!img.is_index() && img.platform_digests().is_empty());
        let list = m(
            serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": A, "size": 1}]}),
            Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
        );
        assert!(list.is_index());
        assert_eq!(list.platform_digests().len(), 1);
        let bad = Manifest::new(b"nope".to_vec(), Digest::of(b"nope"), None);
        assert!(bad.is_err());
    }
}
