//! OCI 1.1 referrers: artifacts that name an image as their `subject` (cosign 3's Sigstore
//! bundles, Notation signatures, SBOMs). Here the formats, without I/O: referrers indexes,
//! their descriptors, artifact manifests. The [`crate::RegistryClient`] operations that
//! list, publish and fetch referrers ([`crate::RegistryClient::referrers`],
//! [`crate::RegistryClient::publish_referrer`], [`crate::RegistryClient::fetch_referrers_within`])
//! are in `referrers/client.rs`.
//!
//! A registry with the referrers API lists them at `GET /v2/<name>/referrers/<digest>`
//! (optionally `?artifactType=`, which it says it applied with `OCI-Filters-Applied`) and
//! echoes `OCI-Subject` when a manifest with a subject is pushed. A registry without one
//! answers that GET with 404; writers then keep the list themselves, as an image index
//! tagged `sha256-<hex>` (the distribution spec's "referrers tag schema"), and readers
//! read that tag. cosign 3 and Notation do both, and so does signet.
//!
//! Whoever controls the registry (or can push to the repository) writes what is read
//! here, so every read is bounded: the index size and how many of its entries are kept,
//! pages followed, each referrer manifest's size, how many referrers are fetched and each
//! blob's size. Nothing read here is trusted: a Sigstore bundle or a Notation envelope is
//! returned raw, for `signet_core::bundle::Bundle::verify` or
//! `signet_core::notation::NotationSignature::verify` to check against a key, and the
//! caller to compare with the image digest.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};
use signet_core::bundle::{BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE_V03_PARAM};
use signet_core::notation::{COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, NOTARY_SIGNATURE_ARTIFACT_TYPE};
use signet_core::Digest;

use crate::cosign::{string_map, PublishOutcome};
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};

mod client;

/// The media type of the empty descriptor, an artifact manifest's config.
pub const OCI_EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty descriptor's content.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// Referrers kept from one listing (all pages together); more are counted and dropped.
/// An image has a handful: a signature per witness and key rotation, a few attestations.
pub const MAX_LISTED: usize = 1024;
/// Pages of the referrers API followed (`Link: <…>; rel="next"`).
const MAX_PAGES: usize = 8;
/// An artifact manifest is under a kilobyte; room for annotations.
const MAX_REFERRER_MANIFEST_BYTES: usize = 256 << 10;
/// Referrer manifests and blobs fetched at once.
const FETCH_CONCURRENCY: usize = 8;

/// One entry of a referrers index: a manifest whose `subject` is the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The artifact's type (the manifest's `artifactType`, else its config media type).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn from_value(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        let digest = Digest::parse(o.get("digest")?.as_str()?).ok()?;
        Some(Self {
            media_type: o
                .get("mediaType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            digest,
            size: o.get("size").and_then(Value::as_u64).unwrap_or(0),
            artifact_type: o
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_owned),
            annotations: string_map(o.get("annotations")),
        })
    }

    fn to_value(&self) -> Value {
        let mut o = Map::new();
        o.insert("mediaType".into(), json!(self.media_type));
        o.insert("digest".into(), json!(self.digest.as_str()));
        o.insert("size".into(), json!(self.size));
        if let Some(t) = &self.artifact_type {
            o.insert("artifactType".into(), json!(t));
        }
        if !self.annotations.is_empty() {
            o.insert("annotations".into(), json!(self.annotations));
        }
        Value::Object(o)
    }
}

/// How much a reader of referrers takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferrerLimits {
    /// Referrers fetched, in listing order; later ones are counted, not fetched.
    pub max_referrers: usize,
    /// Largest blob fetched; larger ones are counted and skipped.
    pub max_blob_bytes: u64,
}

impl ReferrerLimits {
    /// For the admission path: a signature bundle is a few kilobytes (with a certificate
    /// chain and a log entry, ten).
    pub const ADMISSION: Self = Self {
        max_referrers: 32,
        max_blob_bytes: 256 << 10,
    };
    /// What [`crate::RegistryClient::fetch_bundles`] and `signet verify` take: attestations (SBOMs, provenance) are
    /// larger than signatures.
    pub const DEFAULT: Self = Self {
        max_referrers: 128,
        max_blob_bytes: 1 << 20,
    };
}

/// The referrers a reader fetches: signatures in a format signet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferrerKind {
    /// A Sigstore bundle (cosign 3's signatures and attestations): artifact and layer
    /// type [`BUNDLE_MEDIA_TYPE`].
    Bundle,
    /// A Notary Project signature (`notation sign`): artifact type
    /// [`NOTARY_SIGNATURE_ARTIFACT_TYPE`], one JWS or COSE envelope layer.
    Notation,
}

impl ReferrerKind {
    /// The artifact type the registry is asked to filter by.
    fn artifact_type(self) -> &'static str {
        match self {
            Self::Bundle => BUNDLE_MEDIA_TYPE,
            Self::Notation => NOTARY_SIGNATURE_ARTIFACT_TYPE,
        }
    }

    /// The kind of a referrer with this artifact type, if it is one signet reads.
    fn of_artifact(t: &str) -> Option<Self> {
        if is_bundle_type(t) {
            Some(Self::Bundle)
        } else if t == NOTARY_SIGNATURE_ARTIFACT_TYPE {
            Some(Self::Notation)
        } else {
            None
        }
    }

    /// Whether a layer of this media type holds the signature.
    fn holds(self, layer_media_type: &str) -> bool {
        match self {
            Self::Bundle => is_bundle_type(layer_media_type),
            Self::Notation => {
                layer_media_type == JWS_MEDIA_TYPE || layer_media_type == COSE_MEDIA_TYPE
            }
        }
    }
}

/// One signature referrer of an image (a Sigstore bundle or a Notation envelope), as the
/// registry served it: its digest checked, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedReferrer {
    pub kind: ReferrerKind,
    /// The referrer manifest holding it.
    pub manifest_digest: Digest,
    /// The media type of the layer read (for Notation, it names the envelope format).
    pub media_type: String,
    /// That manifest's annotations (`dev.sigstore.bundle.predicateType`, ...): unverified.
    pub annotations: BTreeMap<String, String>,
    /// The layer: a bundle's JSON for `signet_core::bundle::Bundle::parse`, or an
    /// envelope for `signet_core::notation::NotationSignature::parse`.
    pub bytes: Vec<u8>,
}

/// The signature referrers of an image read within [`ReferrerLimits`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referrers {
    pub fetched: Vec<FetchedReferrer>,
    /// Referrers of the kinds asked for, listed (up to [`MAX_LISTED`]).
    pub total: usize,
    /// Listed past `max_referrers`, not fetched.
    pub beyond_limit: usize,
    /// Whose signature layer was larger than `max_blob_bytes`.
    pub oversized: usize,
    /// Whose manifest was missing, too large, not an artifact manifest of the kind
    /// listed, about another image, or whose blob was missing.
    pub skipped: usize,
}

impl Referrers {
    /// The fetched referrers of one kind.
    pub fn of(&self, kind: ReferrerKind) -> impl Iterator<Item = &FetchedReferrer> {
        self.fetched.iter().filter(move |f| f.kind == kind)
    }
}

/// How [`crate::RegistryClient::publish_referrer`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedReferrer {
    pub outcome: PublishOutcome,
    /// The artifact manifest's digest (it is pushed by digest, with no tag).
    pub manifest_digest: Digest,
    /// `sha256-<hex>` when the registry has no referrers API and signet listed the
    /// artifact in the referrers tag schema's index instead.
    pub fallback_tag: Option<String>,
}

/// The tag of the referrers tag schema for `digest`: `sha256-<hex>`.
pub fn fallback_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

/// A referrers index (the API's answer or the fallback tag's content) being read or
/// extended. Entries are kept as they came so that adding one never alters another.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReferrersIndex {
    top: Map<String, Value>,
    manifests: Vec<Value>,
    /// Entries in the index, kept or not.
    total: usize,
}

impl ReferrersIndex {
    /// Parses an index, keeping its first `keep` entries (the rest are counted, not
    /// stored). `"manifests": null` and a missing list are an empty index (olareg v0.1.2
    /// answers null for an image without referrers).
    pub(crate) fn parse(bytes: &[u8], keep: usize) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let index = IndexSeed { keep }
            .deserialize(&mut de)
            .and_then(|i| de.end().map(|()| i))
            // serde's message can quote the registry's text, which must not reach a caller.
            .map_err(|e| {
                format!(
                    "the referrers index is not a JSON object with a manifests list (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?;
        if let Some(mt) = index.top.get("mediaType") {
            if mt.as_str() != Some(OCI_INDEX) {
                let shown = match mt.as_str() {
                    Some(m) if crate::manifest::MANIFEST_ACCEPT.contains(&m) => m,
                    _ => "another media type",
                };
                return Err(format!(
                    "the referrers index is {shown}, not an OCI image index"
                ));
            }
        }
        Ok(index)
    }

    /// The entries that are descriptors with a sha256 digest, each digest once.
    pub(crate) fn descriptors(&self) -> Vec<Descriptor> {
        let mut out: Vec<Descriptor> = Vec::new();
        for v in &self.manifests {
            match Descriptor::from_value(v) {
                Some(d) if !out.iter().any(|o| o.digest == d.digest) => out.push(d),
                Some(_) => {}
                None => tracing::warn!("a referrers index entry is not a descriptor; skipped"),
            }
        }
        out
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.manifests
            .iter()
            .any(|v| v.get("digest").and_then(Value::as_str) == Some(digest.as_str()))
    }

    pub(crate) fn push(&mut self, d: &Descriptor) {
        self.manifests.push(d.to_value());
        self.total += 1;
    }

    /// The index to PUT as the fallback tag.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut top = self.top.clone();
        top.insert("schemaVersion".into(), json!(2));
        top.insert("mediaType".into(), json!(OCI_INDEX));
        top.insert("manifests".into(), Value::Array(self.manifests.clone()));
        serde_json::to_vec(&top).expect("an index serializes")
    }
}

/// Reads an index object, keeping the first `keep` entries of `manifests` and only
/// counting the rest, so that a huge list costs time but not memory.
struct IndexSeed {
    keep: usize,
}

impl<'de> DeserializeSeed<'de> for IndexSeed {
    type Value = ReferrersIndex;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IndexSeed {
    type Value = ReferrersIndex;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OCI image index")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut index = ReferrersIndex::default();
        let mut seen_manifests = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "manifests" {
                if seen_manifests {
                    return Err(serde::de::Error::duplicate_field("manifests"));
                }
                seen_manifests = true;
                let (kept, total) = map.next_value_seed(EntriesSeed { keep: self.keep })?;
                index.manifests = kept;
                index.total = total;
            } else {
                let v: Value = map.next_value()?;
                index.top.insert(key, v);
            }
        }
        Ok(index)
    }
}

struct EntriesSeed {
    keep: usize,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = (Vec<Value>, usize);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = (Vec<Value>, usize);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of descriptors or null")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), 0))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), 0))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        let mut total = 0usize;
        loop {
            if kept.len() < self.keep {
                match seq.next_element::<Value>()? {
                    Some(v) => kept.push(v),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            total += 1;
        }
        Ok((kept, total))
    }
}

/// An OCI 1.1 artifact manifest: `artifactType`, the empty config, one layer holding
/// `blob`, and `subject` the image (media type and size from its manifest). Deterministic:
/// the same inputs give the same bytes, hence the same digest.
pub(crate) fn artifact_manifest(
    subject: &Descriptor,
    artifact_type: &str,
    layer_media_type: &str,
    blob: &[u8],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("schemaVersion".into(), json!(2));
    m.insert("mediaType".into(), json!(OCI_MANIFEST));
    m.insert("artifactType".into(), json!(artifact_type));
    m.insert(
        "config".into(),
        json!({
            "mediaType": OCI_EMPTY_MEDIA_TYPE,
            "digest": Digest::of(EMPTY_CONFIG).as_str(),
            "size": EMPTY_CONFIG.len(),
        }),
    );
    m.insert(
        "layers".into(),
        json!([{
            "mediaType": layer_media_type,
            "digest": Digest::of(blob).as_str(),
            "size": blob.len(),
        }]),
    );
    m.insert(
        "subject".into(),
        json!({
            "mediaType": subject.media_type,
            "digest": subject.digest.as_str(),
            "size": subject.size,
        }),
    );
    if !annotations.is_empty() {
        m.insert("annotations".into(), json!(annotations));
    }
    serde_json::to_vec(&Value::Object(m)).expect("a manifest serializes")
}

/// What a reader needs of a referrer's manifest.
#[derive(Debug)]
struct ArtifactManifest {
    artifact_type: Option<String>,
    subject: Option<Digest>,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
}

impl ArtifactManifest {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let o = v.as_object()?;
        if o.get("mediaType").and_then(Value::as_str) != Some(OCI_MANIFEST) {
            return None;
        }
        let artifact_type = o
            .get("artifactType")
            .and_then(Value::as_str)
            .or_else(|| o.get("config")?.get("mediaType")?.as_str())
            .map(str::to_owned);
        Some(Self {
            artifact_type,
            subject: o
                .get("subject")
                .and_then(Descriptor::from_value)
                .map(|d| d.digest),
            layers: o
                .get("layers")
                .and_then(Value::as_array)
                .map(|ls| ls.iter().filter_map(Descriptor::from_value).collect())
                .unwrap_or_default(),
            annotations: string_map(o.get("annotations")),
        })
    }
}

fn is_bundle_type(t: &str) -> bool {
    t == BUNDLE_MEDIA_TYPE || t == BUNDLE_MEDIA_TYPE_V03_PARAM
}

/// Reads a referrers index as a registry serves it (the API's answer or the fallback
/// tag), the way the client does: parse within [`MAX_LISTED`], list the descriptors, and
/// regenerate it with one entry more as when publishing. Answers how many descriptors it
/// lists. Public for the fuzz targets (services/fuzz) only.
#[doc(hidden)]
pub fn read_referrers_index(bytes: &[u8]) -> Result<usize, String> {
    let mut index = ReferrersIndex::parse(bytes, MAX_LISTED)?;
    let listed = index.descriptors().len();
    index.push(&Descriptor {
        media_type: OCI_MANIFEST.to_owned(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        artifact_type: Some(BUNDLE_MEDIA_TYPE.to_owned()),
        annotations: BTreeMap::new(),
    });
    let again = ReferrersIndex::parse(&index.to_bytes(), MAX_LISTED + 1)?;
    if !again.contains(&Digest::of(bytes)) {
        return Err("the regenerated index lost the new entry".to_owned());
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn entry(digest: &str, artifact_type: &str) -> Value {
        json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1, "artifactType": artifact_type})
    }

    #[test]
    fn null_and_missing_manifests_are_an_empty_index() {
        for body in [
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":null}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
            r#"{"schemaVersion":2,"manifests":[]}"#,
        ] {
            let i = ReferrersIndex::parse(body.as_bytes(), 10).expect(body);
            assert!(i.descriptors().is_empty());
            assert_eq!(i.total(), 0);
        }
    }

    #[test]
    fn what_a_registry_lists_is_read_as_descriptors() {
        // olareg's answer after `cosign3 sign` (services/testkit/tests/referrers_registry.rs).
        let body = br#"{"manifests":[{"annotations":{"dev.sigstore.bundle.content":"dsse-envelope","dev.sigstore.bundle.predicateType":"https://sigstore.dev/cosign/sign/v1","org.opencontainers.image.created":"2026-12-06T05:49:08Z"},"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"sha256:7bc5e1db987c0013afaf4c57b817ae24d28b490ae17a1b60cfed571dd1f6cabe","mediaType":"application/vnd.oci.image.manifest.v1+json","size":877}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
        let d = ReferrersIndex::parse(body, 10)
            .expect("parse")
            .descriptors();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].artifact_type.as_deref(), Some(BUNDLE_MEDIA_TYPE));
        assert_eq!(d[0].size, 877);
        assert_eq!(
            d[0].annotations
                .get("dev.sigstore.bundle.predicateType")
                .map(String::as_str),
            Some("https://sigstore.dev/cosign/sign/v1")
        );
    }

    #[test]
    fn huge_lists_are_counted_not_kept_and_bad_entries_skipped() {
        let mut manifests: Vec<Value> = (0..5000)
            .map(|i| entry(&format!("sha256:{i:064x}"), "t"))
            .collect();
        manifests.insert(0, json!("not a descriptor"));
        manifests.insert(1, json!({"digest": "md5:00"}));
        manifests.insert(2, entry(A, "t"));
        manifests.insert(3, entry(A, "t"));
        let body = serde_json::to_vec(&json!({"manifests": manifests})).expect("json");
        let i = ReferrersIndex::parse(&body, 100).expect("parse");
        assert_eq!(i.total(), 5004);
        assert_eq!(i.manifests.len(), 100);
        let d = i.descriptors();
        assert_eq!(d.len(), 97, "two malformed, one duplicate");
        assert_eq!(d[0].digest.as_str(), A);
    }

    #[test]
    fn other_kinds_of_documents_are_refused() {
        for bad in [
            &br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#[..],
            br#"{"manifests":{}}"#,
            br#"{"manifests":[],"manifests":[]}"#,
            br#"[]"#,
            br#"{"manifests":[]} trailing"#,
        ] {
            assert!(
                ReferrersIndex::parse(bad, 10).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let e =
            ReferrersIndex::parse(br#"{"mediaType":"text/html SECRET"}"#, 10).expect_err("refused");
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn adding_keeps_foreign_entries_and_fields() {
        let existing = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "annotations": {"org.example": "kept"},
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": A, "size": 3, "artifactType": "application/vnd.cncf.notary.signature", "x-unknown": [1]}],
        });
        let mut i = ReferrersIndex::parse(&serde_json::to_vec(&existing).expect("json"), 10)
            .expect("parse");
        let b = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::parse(B).expect("digest"),
            size: 9,
            artifact_type: Some(BUNDLE_MEDIA_TYPE.into()),
            annotations: BTreeMap::from([("k".into(), "v".into())]),
        };
        assert!(!i.contains(&b.digest));
        i.push(&b);
        assert!(i.contains(&b.digest));
        let v: Value = serde_json::from_slice(&i.to_bytes()).expect("json");
        assert_eq!(v["manifests"][0], existing["manifests"][0]);
        assert_eq!(v["manifests"][1]["annotations"]["k"], "v");
        assert_eq!(v["annotations"]["org.example"], "kept");
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(read_referrers_index(&i.to_bytes()), Ok(2));
    }

    #[test]
    fn artifact_manifests_are_deterministic_and_name_their_subject() {
        let subject = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::parse(A).expect("digest"),
            size: 402,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        let ann = BTreeMap::from([(
            "dev.sigstore.bundle.content".to_owned(),
            "dsse-envelope".to_owned(),
        )]);
        let one = artifact_manifest(&subject, BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE, b"{}", &ann);
        assert_eq!(
            one,
            artifact_manifest(&subject, BUNDLE_MEDIA_TYPE, BUNDLE_MEDIA_TYPE, b"{}", &ann)
        );
        let v: Value = serde_json::from_slice(&one).expect("json");
        assert_eq!(v["artifactType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(v["config"]["mediaType"], OCI_EMPTY_MEDIA_TYPE);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            v["subject"],
            json!({"mediaType": OCI_MANIFEST, "digest": A, "size": 402})
        );
        assert_eq!(v["layers"][0]["size"], 2);
        let m = ArtifactManifest::parse(&one).expect("parse");
        assert_eq!(m.subject.as_ref().map(Digest::as_str), Some(A));
        assert_eq!(m.artifact_type.as_deref(), Some(BUNDLE_MEDIA_TYPE));
        assert_eq!(m.layers.len(), 1);
        let no_annotations = artifact_manifest(&subject, "t", "t", b"{}", &BTreeMap::new());
        assert!(serde_json::from_slice::<Value>(&no_annotations)
            .expect("json")
            .get("annotations")
            .is_none());
    }
}
