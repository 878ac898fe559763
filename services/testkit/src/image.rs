//! Small random OCI images, built in memory and pushed straight over the distribution API
//! (monolithic blob uploads: `POST` then `PUT ?digest=`), or written as an OCI layout and
//! copied with skopeo. There is no network beyond this machine, so every test image is
//! generated here.
//!
//! Each image is one gzip-compressed tar layer holding random bytes, an OCI config whose
//! `rootfs.diff_ids` is the uncompressed tar's digest, and an OCI image manifest. The layer
//! is real gzip so that skopeo copies it unchanged (it would otherwise recompress it and
//! change the digest). Digests are known before pushing: see [`TestImage::digest`].

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use flate2::{write::GzEncoder, Compression};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use signet_core::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Bytes of random content in each test layer: small, so hundreds of pushes stay fast.
const LAYER_CONTENT_BYTES: usize = 1024;

/// A small single-platform OCI image held in memory.
#[derive(Debug, Clone)]
pub struct TestImage {
    os: String,
    architecture: String,
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

/// One platform image inside a pushed index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    pub os: String,
    pub architecture: String,
    pub digest: Digest,
}

/// What [`TestIndex::push`] pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedIndex {
    /// The image index's digest (what the tag points at).
    pub index: Digest,
    /// linux/amd64 then linux/arm64.
    pub platforms: Vec<PlatformImage>,
}

impl TestImage {
    /// A fresh linux/amd64 image with random content (a digest no other test shares).
    pub fn random() -> Self {
        Self::for_platform("linux", "amd64")
    }

    /// A fresh random image for `os`/`architecture`.
    pub fn for_platform(os: &str, architecture: &str) -> Self {
        Self::build(os, architecture, &mut StdRng::from_entropy())
    }

    /// The same image (and digest) every time for the same seed and platform.
    pub fn from_seed(seed: u64) -> Self {
        Self::build("linux", "amd64", &mut StdRng::seed_from_u64(seed))
    }

    fn build(os: &str, architecture: &str, rng: &mut StdRng) -> Self {
        let mut content = vec![0u8; LAYER_CONTENT_BYTES];
        rng.fill_bytes(&mut content);
        let tar = tar_with_file("random.bin", &content);
        let layer = gzip(&tar);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": architecture,
            "os": os,
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [Digest::of(&tar).as_str()] },
        }))
        .unwrap_or_default();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER_GZIP, &layer)],
        }))
        .unwrap_or_default();
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            layer,
            config,
            manifest,
        }
    }

    /// The manifest digest: what a tag push resolves to.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    pub fn manifest(&self) -> &[u8] {
        &self.manifest
    }

    pub fn config_digest(&self) -> Digest {
        Digest::of(&self.config)
    }

    pub fn layer_digest(&self) -> Digest {
        Digest::of(&self.layer)
    }

    pub fn os(&self) -> &str {
        &self.os
    }

    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Pushes blobs and manifest to `host` (e.g. `127.0.0.1:5000`, plain HTTP) as
    /// `repo:tag`; returns the manifest digest.
    pub async fn push(&self, host: &str, repo: &str, tag: &str) -> anyhow::Result<Digest> {
        Pusher::new(host, None)?.push_image(self, repo, tag).await
    }

    /// Like [`TestImage::push`], against a registry that requires basic auth.
    pub async fn push_with_auth(
        &self,
        host: &str,
        repo: &str,
        tag: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Digest> {
        Pusher::new(host, Some((user, password)))?
            .push_image(self, repo, tag)
            .await
    }

    /// Pushes a fresh random 2-platform index (linux/amd64 + linux/arm64) as `repo:tag`.
    pub async fn push_index(host: &str, repo: &str, tag: &str) -> anyhow::Result<PushedIndex> {
        TestIndex::random().push(host, repo, tag).await
    }

    /// Writes this image as an OCI image layout in `dir` with the ref name `tag`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> anyhow::Result<()> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .with_context(|| format!("cannot create {}", blobs.display()))?;
        for blob in [&self.layer, &self.config, &self.manifest] {
            let path = blobs.join(Digest::of(blob).hex());
            std::fs::write(&path, blob)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let mut desc = descriptor(OCI_MANIFEST, &self.manifest);
        desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [desc],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)
            .context("cannot write index.json of the OCI layout")?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .context("cannot write oci-layout")?;
        Ok(())
    }
}

/// Runs `skopeo copy --dest-tls-verify=false oci:<layout>:<tag> docker://<host>/<repo>:<tag>`
/// and returns the digest skopeo pushed.
pub async fn skopeo_copy(
    layout: &Path,
    host: &str,
    repo: &str,
    tag: &str,
) -> anyhow::Result<Digest> {
    let digest_file = tempfile::NamedTempFile::new().context("cannot create a temp file")?;
    let out = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .arg("copy")
        .arg("--dest-tls-verify=false")
        .arg("--digestfile")
        .arg(digest_file.path())
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{host}/{repo}:{tag}"))
        .output()
        .await
        .context("cannot run skopeo (is it installed? apt-get install skopeo)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy to {host}/{repo}:{tag} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text =
        std::fs::read_to_string(digest_file.path()).context("cannot read skopeo's digest file")?;
    Digest::parse(text.trim()).context("skopeo wrote an invalid digest")
}

/// A 2-platform OCI image index (linux/amd64 + linux/arm64) held in memory.
#[derive(Debug, Clone)]
pub struct TestIndex {
    images: Vec<TestImage>,
    index: Vec<u8>,
}

impl TestIndex {
    pub fn random() -> Self {
        let images = vec![
            TestImage::for_platform("linux", "amd64"),
            TestImage::for_platform("linux", "arm64"),
        ];
        let manifests: Vec<_> = images
            .iter()
            .map(|img| {
                let mut d = descriptor(OCI_MANIFEST, &img.manifest);
                d["platform"] =
                    serde_json::json!({ "architecture": img.architecture, "os": img.os });
                d
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap_or_default();
        Self { images, index }
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.index)
    }

    pub fn images(&self) -> &[TestImage] {
        &self.images
    }

    /// Pushes both platform images by digest, then the index as `repo:tag`.
    pub async fn push(&self, host: &str, repo: &str, tag: &str) -> anyhow::Result<PushedIndex> {
        let pusher = Pusher::new(host, None)?;
        let mut platforms = Vec::new();
        for img in &self.images {
            let digest = img.digest();
            pusher.push_image(img, repo, digest.as_str()).await?;
            platforms.push(PlatformImage {
                os: img.os.clone(),
                architecture: img.architecture.clone(),
                digest,
            });
        }
        let index = pusher
            .put_manifest(repo, tag, OCI_INDEX, &self.index)
            .await?;
        Ok(PushedIndex { index, platforms })
    }
}

/// One HTTP client per push call: a client shared across tests would outlive the tokio
/// runtime of the test that created its pooled connections.
struct Pusher {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Pusher {
    fn new(host: &str, auth: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            // Test registries speak plain HTTP; an empty root store skips loading the
            // system's CA bundle, which costs ~50 ms per client.
            .tls_certs_only(Vec::new())
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            http,
            base: format!("http://{host}"),
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        })
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    async fn push_image(
        &self,
        img: &TestImage,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<Digest> {
        let (layer, config) = tokio::join!(
            self.push_blob(repo, &img.layer),
            self.push_blob(repo, &img.config)
        );
        layer?;
        config?;
        self.put_manifest(repo, reference, OCI_MANIFEST, &img.manifest)
            .await
    }

    async fn push_blob(&self, repo: &str, blob: &[u8]) -> anyhow::Result<()> {
        let start = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self
            .request(reqwest::Method::POST, &start)
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            bail!(
                "POST {start} answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("blob upload answer has no Location header")?
            .to_owned();
        let mut url = if location.starts_with('/') {
            reqwest::Url::parse(&format!("{}{location}", self.base))
        } else {
            reqwest::Url::parse(&location)
        }
        .with_context(|| format!("blob upload Location {location:?} is not a URL"))?;
        url.query_pairs_mut()
            .append_pair("digest", Digest::of(blob).as_str());
        let resp = self
            .request(reqwest::Method::PUT, url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!(
                "PUT blob to {repo} answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Digest> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self
            .request(reqwest::Method::PUT, &url)
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(body.to_vec())
            .send()
            .await
            .with_context(|| format!("cannot reach the registry at {}", self.base))?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!(
                "PUT {url} answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let digest = Digest::of(body);
        if let Some(header) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if header != digest.as_str() {
                bail!("registry stored manifest {repo}:{reference} as {header}, expected {digest}");
            }
        }
        Ok(digest)
    }
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::of(blob).as_str(),
        "size": blob.len(),
    })
}

fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    // Writing into a Vec cannot fail.
    let _ = builder.append_data(&mut header, name, content);
    builder.into_inner().unwrap_or_default()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_images_are_deterministic_and_random_ones_differ() {
        assert_eq!(
            TestImage::from_seed(7).digest(),
            TestImage::from_seed(7).digest()
        );
        assert_ne!(
            TestImage::from_seed(7).digest(),
            TestImage::from_seed(8).digest()
        );
        assert_ne!(TestImage::random().digest(), TestImage::random().digest());
    }

    #[test]
    fn manifest_references_config_and_layer() {
        let img = TestImage::random();
        let m: serde_json::Value = serde_json::from_slice(img.manifest()).expect("json");
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["config"]["digest"], img.config_digest().as_str());
        assert_eq!(m["layers"][0]["digest"], img.layer_digest().as_str());
        let layer_bytes = &img.layer;
        assert_eq!(&layer_bytes[..2], &[0x1f, 0x8b], "layer is gzip");
        let c: serde_json::Value = serde_json::from_slice(&img.config).expect("json");
        let mut tar = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&layer_bytes[..]),
            &mut tar,
        )
        .expect("gunzip");
        assert_eq!(c["rootfs"]["diff_ids"][0], Digest::of(&tar).as_str());
    }

    #[test]
    fn index_lists_both_platforms() {
        let idx = TestIndex::random();
        let v: serde_json::Value = serde_json::from_slice(&idx.index).expect("json");
        assert_eq!(v["manifests"][0]["platform"]["architecture"], "amd64");
        assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(
            v["manifests"][1]["digest"],
            idx.images()[1].digest().as_str()
        );
    }
}
