//! Talking to the registry directly, over the OCI distribution API: uploading the blobs
//! of the test images ahead of a storm, pushing their manifests (the push a registry
//! notifies signet of), and the raw signature-write loop that measures the registry's own
//! ceiling.
//!
//! Storm images share one layer and one config blob, uploaded to each repository before
//! the clock starts; each image differs by an annotation in its manifest, so every push
//! is a distinct digest. A push in the storm is therefore the manifest `PUT` that ends
//! every real `docker push`, the request the registry sends its notification for.

use std::time::Duration;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use serde_json::json;
use signet_core::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const COSIGN_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// A plain-HTTP client of one loopback registry.
#[derive(Clone)]
pub struct Registry {
    pub host: String,
    http: reqwest::Client,
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": Digest::of(blob).as_str(), "size": blob.len()})
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

/// The images of one storm: shared blobs, a distinct manifest each.
pub struct ImageSet {
    layer: Vec<u8>,
    config: Vec<u8>,
    /// Makes this run's digests differ from every earlier run's.
    salt: String,
}

impl ImageSet {
    pub fn new() -> Self {
        let layer = random_bytes(2048);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).as_str()]},
        }))
        .unwrap_or_default();
        Self {
            layer,
            config,
            salt: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// The manifest of image `i` and its digest.
    pub fn manifest(&self, i: u64) -> (Vec<u8>, Digest) {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &self.config),
            "layers": [descriptor(OCI_LAYER, &self.layer)],
            "annotations": {"dev.signet.load/image": format!("{}-{i}", self.salt)},
        }))
        .unwrap_or_default();
        let digest = Digest::of(&body);
        (body, digest)
    }

    /// Uploads the shared blobs to `repo`, so that a manifest push is all that is left.
    pub async fn prepare(&self, registry: &Registry, repo: &str) -> anyhow::Result<()> {
        registry.upload_blob(repo, &self.layer).await?;
        registry.upload_blob(repo, &self.config).await
    }
}

impl Default for ImageSet {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new(host: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            host: host.to_owned(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    /// `POST` an upload session, then `PUT` the whole blob into it: the two requests
    /// docker, skopeo and cosign use for a small blob.
    pub async fn upload_blob(&self, repo: &str, blob: &[u8]) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .header("Content-Length", "0")
            .send()
            .await
            .context("starting a blob upload")?;
        if resp.status().as_u16() != 202 {
            bail!("starting a blob upload answered {}", resp.status());
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("the registry gave no upload location")?
            .to_owned();
        let location = if location.starts_with("http") {
            location
        } else {
            self.url(&location)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .http
            .put(format!(
                "{location}{sep}digest={}",
                Digest::of(blob).as_str()
            ))
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .context("uploading a blob")?;
        if resp.status().as_u16() != 201 {
            bail!("uploading a blob answered {}", resp.status());
        }
        Ok(())
    }

    /// `PUT /v2/REPO/manifests/TAG`.
    pub async fn put_manifest(&self, repo: &str, tag: &str, body: Vec<u8>) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(body)
            .send()
            .await
            .context("pushing a manifest")?;
        if resp.status().as_u16() != 201 {
            let status = resp.status();
            bail!(
                "pushing a manifest answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// One cosign-shaped signature write with as few requests as the protocol allows:
    /// read the `.sig` tag (absent: this is the first signature), upload the payload and
    /// the config blob, `PUT` the manifest. Six requests; no signing, no store, no queue.
    pub async fn raw_signature_write(&self, repo: &str, signed: &Digest) -> anyhow::Result<()> {
        self.signature_write(repo, signed, false).await
    }

    /// The same write with the requests signet's signer makes today (see
    /// docs/benchmarks.md): it also reads the image's manifest, reads the `.sig` tag a
    /// second time, and confirms the tag with a `HEAD` after the `PUT`. `signed` must
    /// be a manifest in `repo`. Nine requests.
    pub async fn signet_shaped_signature_write(
        &self,
        repo: &str,
        signed: &Digest,
    ) -> anyhow::Result<()> {
        let image = self
            .http
            .get(self.url(&format!("/v2/{repo}/manifests/{signed}")))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .context("reading the image manifest")?;
        if !image.status().is_success() {
            bail!("reading the image manifest answered {}", image.status());
        }
        self.signature_write(repo, signed, true).await
    }

    async fn signature_write(
        &self,
        repo: &str,
        signed: &Digest,
        like_signet: bool,
    ) -> anyhow::Result<()> {
        let tag = signed.signature_tag();
        if like_signet {
            let again = self
                .http
                .get(self.url(&format!("/v2/{repo}/manifests/{tag}")))
                .header("Accept", OCI_MANIFEST)
                .send()
                .await
                .context("reading the signature tag")?;
            if again.status().as_u16() != 404 {
                bail!("the signature tag {tag} should not exist yet");
            }
        }
        let existing = self
            .http
            .get(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .context("reading the signature tag")?;
        if existing.status().as_u16() != 404 {
            bail!(
                "the signature tag {tag} should not exist yet (answer {})",
                existing.status()
            );
        }
        let payload = serde_json::to_vec(&json!({
            "critical": {
                "identity": {"docker-reference": format!("{}/{repo}", self.host)},
                "image": {"docker-manifest-digest": signed.as_str()},
                "type": "cosign container image signature",
            },
            "optional": null,
        }))
        .unwrap_or_default();
        let config = serde_json::to_vec(&json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&payload).as_str()]},
        }))
        .unwrap_or_default();
        let signature = random_bytes(256);
        let (a, b) = tokio::join!(
            self.upload_blob(repo, &payload),
            self.upload_blob(repo, &config)
        );
        a?;
        b?;
        let mut layer = descriptor(COSIGN_LAYER, &payload);
        layer["annotations"] = json!({
            "dev.cosignproject.cosign/signature": STANDARD.encode(&signature),
        });
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [layer],
        }))
        .unwrap_or_default();
        self.put_manifest(repo, &tag, manifest).await?;
        if like_signet {
            let confirm = self
                .http
                .head(self.url(&format!("/v2/{repo}/manifests/{tag}")))
                .header("Accept", OCI_MANIFEST)
                .send()
                .await
                .context("confirming the signature tag")?;
            if !confirm.status().is_success() {
                bail!("confirming the signature tag answered {}", confirm.status());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_image_of_a_set_is_a_distinct_manifest_over_the_same_blobs() {
        let set = ImageSet::new();
        let (a, da) = set.manifest(1);
        let (b, db) = set.manifest(2);
        assert_ne!(da, db);
        assert_eq!(Digest::of(&a), da);
        let a: serde_json::Value = serde_json::from_slice(&a).unwrap_or_default();
        let b: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        assert_eq!(a["layers"], b["layers"]);
        assert_eq!(a["config"], b["config"]);
        assert_eq!(a["mediaType"], OCI_MANIFEST);
        // Another set (another run) never repeats a digest.
        assert_ne!(ImageSet::new().manifest(1).1, da);
    }
}
