//! The cosign signature artifact (`<repo>:sha256-<hex>.sig`), built and read without I/O:
//! an OCI manifest whose layers are simple-signing payloads, each annotated with its
//! signature, and an OCI config whose `rootfs.diff_ids` list the layer digests.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use signet_core::Digest;

use crate::manifest::{DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST};
pub use signet_core::attestation::{DSSE_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION};

pub const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// One signature: the exact payload bytes that were signed and the raw signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Vec<u8>,
    /// Raw signature bytes (stored base64-encoded in the layer annotation).
    pub signature: Vec<u8>,
    /// Layer annotations besides the signature one (e.g. cosign's certificate or bundle).
    pub annotations: BTreeMap<String, String>,
}

impl SignatureLayer {
    pub fn new(payload: Vec<u8>, signature: Vec<u8>) -> Self {
        Self {
            payload,
            signature,
            annotations: BTreeMap::new(),
        }
    }

    /// The layer (payload blob) digest.
    pub fn payload_digest(&self) -> Digest {
        Digest::of(&self.payload)
    }

    /// The signature as cosign stores it: standard base64 with padding.
    pub fn signature_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.signature)
    }

    /// Every annotation the layer carries, the signature one included.
    fn all_annotations(&self) -> BTreeMap<String, String> {
        let mut all = self.annotations.clone();
        all.insert(SIGNATURE_ANNOTATION.to_owned(), self.signature_base64());
        all
    }

    /// The layer as an attachment: the payload blob, annotated with the signature.
    pub(crate) fn attached(&self) -> Attached {
        Attached {
            media_type: SIMPLESIGNING_MEDIA_TYPE,
            blob: self.payload.clone(),
            annotations: self.all_annotations(),
        }
    }
}

/// One attestation as cosign attaches it (`<repo>:sha256-<hex>.att`): the DSSE envelope
/// is the layer blob, the signatures are inside it, and the layer names the predicate
/// type so a reader can pick the layers it wants before fetching them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationLayer {
    /// The DSSE envelope's exact bytes (JSON).
    pub envelope: Vec<u8>,
    pub predicate_type: String,
}

impl AttestationLayer {
    pub(crate) fn attached(&self) -> Attached {
        Attached {
            media_type: DSSE_MEDIA_TYPE,
            blob: self.envelope.clone(),
            // cosign writes an empty signature annotation on attestation layers.
            annotations: BTreeMap::from([
                (SIGNATURE_ANNOTATION.to_owned(), String::new()),
                (
                    PREDICATE_TYPE_ANNOTATION.to_owned(),
                    self.predicate_type.clone(),
                ),
            ]),
        }
    }
}

/// A layer of a cosign attachment artifact (`.sig` or `.att`) being published: its
/// media type, its blob and every annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attached {
    pub media_type: &'static str,
    pub blob: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl Attached {
    pub(crate) fn digest(&self) -> Digest {
        Digest::of(&self.blob)
    }

    fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "size": self.blob.len(),
            "digest": self.digest().as_str(),
            "annotations": self.annotations,
        })
    }
}

/// How much of a `.sig` artifact a reader takes in. The registry owner writes that
/// manifest: without limits, thousands of layers (each its own payload blob) cost a
/// verifier one blob fetch and one signature check per layer and key, on every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureLimits {
    /// Cosign signature layers considered, in manifest order; later ones are counted,
    /// not fetched.
    pub max_layers: usize,
    /// Largest payload blob fetched; larger ones are counted and skipped.
    pub max_payload_bytes: u64,
}

impl SignatureLimits {
    /// What the verifier takes in on the admission path: cosign appends one layer per
    /// signature, so 64 is several witnesses times many key rotations, and a simple-
    /// signing payload is a few hundred bytes.
    pub const ADMISSION: Self = Self {
        max_layers: 64,
        max_payload_bytes: 64 << 10,
    };
}

/// The signature layers of a `.sig` artifact read within [`SignatureLimits`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signatures {
    /// The layers considered whose payload could be read, in manifest order.
    pub layers: Vec<SignatureLayer>,
    /// Cosign signature layers in the manifest, considered or not.
    pub total: usize,
    /// Layers past `max_layers`, not looked at.
    pub beyond_limit: usize,
    /// Layers considered whose payload was larger than `max_payload_bytes`.
    pub oversized: usize,
}

/// How [`crate::RegistryClient::publish_signature`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The layer was added to the signature artifact.
    Appended,
    /// An identical layer (media type, digest, annotations) was already there.
    AlreadyPresent,
}

/// The result of publishing one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub outcome: PublishOutcome,
    /// `registry/repo:sha256-<hex>.sig`.
    pub artifact: String,
    /// The `.sig` manifest's digest after publishing.
    pub manifest_digest: Digest,
}

/// A layer of a `.sig` manifest that is a cosign signature, before its payload is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignatureDescriptor {
    pub digest: Digest,
    pub size: u64,
    pub signature: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// A `.sig` manifest being read or extended. Existing layer descriptors are kept as
/// they are (unknown fields included) so that appending never alters other signatures.
#[derive(Debug, Clone)]
pub(crate) struct SigManifest {
    top: Map<String, Value>,
    layers: Vec<Value>,
}

impl SigManifest {
    pub(crate) fn empty() -> Self {
        Self {
            top: Map::new(),
            layers: Vec::new(),
        }
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut top: Map<String, Value> = serde_json::from_slice(bytes)
            // serde's message can quote the registry's text, which must not reach a caller.
            .map_err(|e| {
                format!(
                    "signature manifest is not a JSON object (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?;
        if let Some(mt) = top.get("mediaType").and_then(Value::as_str) {
            if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
                // Named only when it is a known type: the registry's text is not repeated.
                let shown = if crate::manifest::MANIFEST_ACCEPT.contains(&mt) {
                    mt
                } else {
                    "another media type"
                };
                return Err(format!(
                    "the signature tag holds {shown}, not an image manifest; delete or fix that tag"
                ));
            }
        }
        if top.contains_key("manifests") {
            return Err("the signature tag holds an image index, not an image manifest; delete or fix that tag".to_owned());
        }
        let layers = match top.remove("layers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(layers)) => layers,
            Some(_) => return Err("signature manifest's layers is not an array".to_owned()),
        };
        Ok(Self { top, layers })
    }

    /// True when a layer with the same media type, digest and annotations exists.
    pub(crate) fn contains(&self, layer: &Attached) -> bool {
        let digest = layer.digest();
        self.layers.iter().any(|l| {
            l.get("mediaType").and_then(Value::as_str) == Some(layer.media_type)
                && l.get("digest").and_then(Value::as_str) == Some(digest.as_str())
                && string_map(l.get("annotations")) == layer.annotations
        })
    }

    pub(crate) fn append(&mut self, layer: &Attached) {
        self.layers.push(layer.descriptor());
    }

    pub(crate) fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The config blob for the current layers. It is regenerated rather than edited: for
    /// cosign's uncompressed layers each diff_id equals the layer digest, so the list
    /// derived from the layers keeps every existing diff_id intact and in order, and no
    /// extra request is needed to fetch the old config. The fixed fields are those cosign
    /// (go-containerregistry's empty image) writes.
    pub(crate) fn config_blob(&self) -> Result<Vec<u8>, String> {
        let mut diff_ids = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let d = l
                .get("digest")
                .and_then(Value::as_str)
                .ok_or("a signature manifest layer has no digest")?;
            diff_ids.push(d.to_owned());
        }
        let history: Vec<Value> = diff_ids
            .iter()
            .map(|_| json!({ "created": "0001-01-01T00:00:00Z" }))
            .collect();
        let config = json!({
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": history,
            "os": "",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        serde_json::to_vec(&config).map_err(|e| e.to_string())
    }

    /// The manifest bytes to PUT, pointing at `config` (from [`SigManifest::config_blob`]).
    /// Always an OCI manifest: containers/image rejects a Docker schema2 `.sig`.
    pub(crate) fn to_bytes(&self, config: &[u8]) -> Result<Vec<u8>, String> {
        let mut top = self.top.clone();
        top.insert("schemaVersion".to_owned(), json!(2));
        top.insert("mediaType".to_owned(), json!(OCI_MANIFEST));
        top.insert(
            "config".to_owned(),
            json!({
                "mediaType": OCI_CONFIG,
                "size": config.len(),
                "digest": Digest::of(config).as_str(),
            }),
        );
        top.insert("layers".to_owned(), Value::Array(self.layers.clone()));
        serde_json::to_vec(&top).map_err(|e| e.to_string())
    }

    /// The cosign signature layers; other or malformed layers are skipped with a warning,
    /// since one bad layer must not hide the good signatures next to it.
    pub(crate) fn signatures(&self) -> Vec<SignatureDescriptor> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            if l.get("mediaType").and_then(Value::as_str) != Some(SIMPLESIGNING_MEDIA_TYPE) {
                continue;
            }
            let Some(digest) = l
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|d| Digest::parse(d).ok())
            else {
                tracing::warn!(
                    layer = i,
                    "signature layer has no valid sha256 digest; skipped"
                );
                continue;
            };
            let size = l.get("size").and_then(Value::as_u64).unwrap_or(0);
            let mut annotations = string_map(l.get("annotations"));
            let Some(sig) = annotations.remove(SIGNATURE_ANNOTATION) else {
                tracing::warn!(layer = i, %digest, "signature layer has no {SIGNATURE_ANNOTATION} annotation; skipped");
                continue;
            };
            let Some(signature) = decode_base64(&sig) else {
                tracing::warn!(layer = i, %digest, "signature annotation is not base64; skipped");
                continue;
            };
            out.push(SignatureDescriptor {
                digest,
                size,
                signature,
                annotations,
            });
        }
        out
    }
}

impl SigManifest {
    /// The attestation layers of an `.att` manifest (DSSE envelopes), before their blobs
    /// are fetched; other or malformed layers are skipped.
    pub(crate) fn attestations(&self) -> Vec<AttestationDescriptor> {
        self.layers
            .iter()
            .filter(|l| l.get("mediaType").and_then(Value::as_str) == Some(DSSE_MEDIA_TYPE))
            .filter_map(|l| {
                let digest = l
                    .get("digest")
                    .and_then(Value::as_str)
                    .and_then(|d| Digest::parse(d).ok())?;
                Some(AttestationDescriptor {
                    digest,
                    size: l.get("size").and_then(Value::as_u64).unwrap_or(0),
                    predicate_type: string_map(l.get("annotations"))
                        .remove(PREDICATE_TYPE_ANNOTATION)
                        .unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// A layer of an `.att` manifest, before its envelope is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttestationDescriptor {
    pub digest: Digest,
    pub size: u64,
    /// What the layer's annotation says; the envelope inside is what counts.
    pub predicate_type: String,
}

/// Reads a `.sig` manifest as a registry serves it, the way the client does when it
/// lists signatures and when it appends one: parse, list the signature layers, regenerate
/// the config and the manifest. Answers how many signatures it lists. Public for the fuzz
/// targets (services/fuzz) only; signet itself goes through [`crate::RegistryClient`].
#[doc(hidden)]
pub fn read_signature_manifest(bytes: &[u8]) -> Result<usize, String> {
    let manifest = SigManifest::parse(bytes)?;
    let signatures = manifest.signatures().len();
    let config = manifest.config_blob()?;
    manifest.to_bytes(&config)?;
    Ok(signatures)
}

/// A JSON object's string members (annotations); anything else is left out.
pub(crate) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // cosign writes padded base64; accept unpadded too, as cosign's reader does.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(payload: &str, sig: &[u8]) -> SignatureLayer {
        SignatureLayer::new(payload.as_bytes().to_vec(), sig.to_vec())
    }

    fn round_trip(m: &SigManifest) -> (SigManifest, Value, Value) {
        let config = m.config_blob().expect("config");
        let bytes = m.to_bytes(&config).expect("bytes");
        let parsed = SigManifest::parse(&bytes).expect("parse");
        (
            parsed,
            serde_json::from_slice(&bytes).expect("json"),
            serde_json::from_slice(&config).expect("json"),
        )
    }

    #[test]
    fn built_manifest_is_cosign_shaped() {
        let mut m = SigManifest::empty();
        let l = layer("{\"critical\":{}}", &[1, 2, 3, 250]);
        m.append(&l.attached());
        let (_, manifest, config) = round_trip(&m);
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
        let layer0 = &manifest["layers"][0];
        assert_eq!(layer0["mediaType"], SIMPLESIGNING_MEDIA_TYPE);
        assert_eq!(layer0["digest"], l.payload_digest().as_str());
        assert_eq!(layer0["size"], l.payload.len());
        assert_eq!(layer0["annotations"][SIGNATURE_ANNOTATION], "AQID+g==");
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([l.payload_digest().as_str()])
        );
        assert_eq!(config["rootfs"]["type"], "layers");
    }

    #[test]
    fn identical_layers_are_detected_and_others_append_in_order() {
        let mut m = SigManifest::empty();
        let a = layer("payload", b"sig-a");
        m.append(&a.attached());
        assert!(m.contains(&a.attached()));
        let b = layer("payload", b"sig-b");
        assert!(
            !m.contains(&b.attached()),
            "same payload, other signature is a new layer"
        );
        let mut c = a.clone();
        c.annotations.insert("k".into(), "v".into());
        assert!(
            !m.contains(&c.attached()),
            "other annotations make a new layer"
        );
        m.append(&b.attached());
        m.append(&c.attached());
        let (parsed, _, config) = round_trip(&m);
        assert_eq!(parsed.layer_count(), 3);
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(3)
        );
        let sigs = parsed.signatures();
        assert_eq!(
            sigs.iter().map(|s| s.signature.clone()).collect::<Vec<_>>(),
            vec![b"sig-a".to_vec(), b"sig-b".to_vec(), b"sig-a".to_vec()]
        );
        assert_eq!(sigs[2].annotations.get("k").map(String::as_str), Some("v"));
        assert!(!sigs[0].annotations.contains_key(SIGNATURE_ANNOTATION));
    }

    #[test]
    fn appending_keeps_foreign_layers_and_fields_untouched() {
        let existing = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:00"},
            "annotations": {"org.example": "kept"},
            "layers": [
                {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "size": 3, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
                 "annotations": {SIGNATURE_ANNOTATION: "AQID", "dev.sigstore.cosign/bundle": "{}"}, "urls": ["x"]},
                {"mediaType": "application/vnd.example.other", "size": 1, "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222"}
            ]
        });
        let mut m =
            SigManifest::parse(&serde_json::to_vec(&existing).expect("json")).expect("parse");
        m.append(&layer("new", b"s").attached());
        let (parsed, manifest, config) = round_trip(&m);
        assert_eq!(manifest["mediaType"], OCI_MANIFEST, "rewritten as OCI");
        assert_eq!(manifest["annotations"]["org.example"], "kept");
        assert_eq!(manifest["layers"][0], existing["layers"][0]);
        assert_eq!(manifest["layers"][1], existing["layers"][1]);
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            existing["layers"][0]["digest"]
        );
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            existing["layers"][1]["digest"]
        );
        let sigs = parsed.signatures();
        assert_eq!(sigs.len(), 2, "the foreign layer is not a signature");
        assert_eq!(sigs[0].signature, vec![1, 2, 3]);
        assert_eq!(
            sigs[0]
                .annotations
                .get("dev.sigstore.cosign/bundle")
                .map(String::as_str),
            Some("{}")
        );
    }

    #[test]
    fn malformed_layers_are_skipped_and_wrong_kinds_refused() {
        let m = json!({"schemaVersion": 2, "layers": [
            {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "digest": "sha256:short", "annotations": {SIGNATURE_ANNOTATION: "AQID"}},
            {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"},
            {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "annotations": {SIGNATURE_ANNOTATION: "!!"}},
            {"mediaType": SIMPLESIGNING_MEDIA_TYPE, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "annotations": {SIGNATURE_ANNOTATION: "AQI"}},
        ]});
        let parsed = SigManifest::parse(&serde_json::to_vec(&m).expect("json")).expect("parse");
        let sigs = parsed.signatures();
        assert_eq!(sigs.len(), 1, "only the unpadded-but-valid one survives");
        assert_eq!(sigs[0].signature, vec![1, 2]);
        let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []});
        let err = SigManifest::parse(&serde_json::to_vec(&idx).expect("json")).expect_err("index");
        assert!(
            err.contains("image index") || err.contains("not an image manifest"),
            "{err}"
        );
    }
}
