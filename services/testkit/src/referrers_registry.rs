//! A registry with the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`), for the
//! tests of artifacts attached to an image by their `subject`: cosign 3's Sigstore bundles,
//! attestations, Notation signatures. Debian's `docker-registry` (distribution 2.8.2) that
//! [`crate::registry::TestRegistry`] runs has no referrers API, so this runs `olareg`, which
//! `scripts/tools.sh` builds at the version pinned in `scripts/tools.versions` (see there
//! why olareg). Its own free loopback port, plain HTTP, no auth, storage (one OCI layout
//! per repository) in a temp dir, garbage collection off and deletes enabled.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use signet_testkit::image::TestImage;
//! use signet_testkit::referrers_registry::ReferrersRegistry;
//! let registry = ReferrersRegistry::start().await?;
//! let image = TestImage::random();
//! let digest = image.push(&registry.host(), "app", "v1").await?;
//! let sbom = registry
//!     .push_artifact("app", &image, "application/spdx+json", b"{}", &[])
//!     .await?;
//! let index = registry.referrers("app", &digest, None).await?;
//! assert_eq!(index["manifests"][0]["digest"], sbom.as_str());
//! # Ok(()) }
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use signet_core::Digest;
use tempfile::TempDir;

use crate::image::{TestImage, OCI_MANIFEST};

/// How long a freshly spawned registry may take to answer `GET /v2/`. Generous because the
/// test machines have two cores shared by parallel builds and tests.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How often to retry with a new port when another process took ours between picking it
/// and the registry binding it.
const PORT_ATTEMPTS: usize = 5;

/// The OCI empty descriptor's content: the config of an artifact manifest.
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_JSON: &[u8] = b"{}";

/// A running `olareg`; killed on drop. Storage lives in a temp dir that is removed on
/// drop, so [`ReferrersRegistry::restart`] keeps every blob, manifest and tag.
#[derive(Debug)]
pub struct ReferrersRegistry {
    binary: PathBuf,
    dir: TempDir,
    storage: PathBuf,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

enum SpawnError {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl ReferrersRegistry {
    /// Starts the registry and waits until it answers `GET /v2/`.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = crate::tools::find("olareg")?;
        let dir = registry_tempdir()?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).context("cannot create the olareg storage dir")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            // Plain HTTP only: skip loading the system's CA bundle.
            .tls_certs_only(Vec::new())
            .build()
            .context("cannot build an HTTP client")?;
        let mut registry = Self {
            binary,
            dir,
            storage,
            port: 0,
            child: None,
            http,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            registry.port = crate::process::free_port()?;
            match registry.spawn_and_wait().await {
                Ok(()) => return Ok(registry),
                Err(SpawnError::PortTaken(e)) => last_err = Some(e),
                Err(SpawnError::Other(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no free port")))
            .context("olareg could not bind a free loopback port")
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry keeps its repositories, each an OCI image layout.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The registry's combined stdout/stderr so far (its start line and any errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the registry so that it stops answering. Storage is kept;
    /// [`ReferrersRegistry::restart`] brings it back on the same port.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // kill() fails only when the process has already exited, which is what we want.
            let _ = child.kill();
            child
                .wait()
                .context("cannot reap the stopped olareg process")?;
        }
        Ok(())
    }

    /// Stops the registry if it is running, then starts it again on the same port with the
    /// same storage, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        // The port may briefly linger after the kill; retry until the deadline.
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(SpawnError::PortTaken(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(SpawnError::PortTaken(e)) | Err(SpawnError::Other(e)) => {
                    return Err(e.context(format!(
                        "olareg could not be restarted on port {}",
                        self.port
                    )))
                }
            }
        }
    }

    /// `GET /v2/<repo>/referrers/<digest>`, optionally `?artifactType=`: the OCI image index
    /// listing the manifests whose `subject` is `digest`. olareg answers `"manifests": null`
    /// for a digest that no manifest ever referred to (and `[]` when a filter leaves none).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/v2/{repo}/referrers/{digest}", self.url());
        let mut req = self.http.get(&url);
        if let Some(t) = artifact_type {
            // Encoded: media types hold '+', which a query string reads as a space.
            req = req.query(&[("artifactType", t)]);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach olareg at {url}"))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp
            .bytes()
            .await
            .context("cannot read the referrers answer")?;
        if !status.is_success() {
            bail!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        if content_type != crate::image::OCI_INDEX {
            bail!("GET {url} answered Content-Type {content_type:?}, not an OCI image index");
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url} answered no JSON"))
    }

    /// `GET /v2/<repo>/manifests/<digest>` as an OCI image manifest, parsed.
    pub async fn manifest(&self, repo: &str, digest: &Digest) -> anyhow::Result<serde_json::Value> {
        let body = self
            .get(&format!("/v2/{repo}/manifests/{digest}"), OCI_MANIFEST)
            .await?;
        serde_json::from_slice(&body).context("the manifest is not JSON")
    }

    /// `GET /v2/<repo>/tags/list`: the repository's tags (referrers pushed by digest add
    /// none; a client falling back to the referrers tag schema adds `sha256-<hex>`).
    pub async fn tags(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        let body = self
            .get(&format!("/v2/{repo}/tags/list"), "application/json")
            .await?;
        let list: serde_json::Value =
            serde_json::from_slice(&body).context("the tag list is not JSON")?;
        Ok(list["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect())
    }

    /// `GET /v2/<repo>/blobs/<digest>`.
    pub async fn blob(&self, repo: &str, digest: &Digest) -> anyhow::Result<Vec<u8>> {
        self.get(&format!("/v2/{repo}/blobs/{digest}"), "*/*").await
    }

    /// Pushes an OCI 1.1 artifact manifest into `repo` that refers to `subject` (already in
    /// `repo`): `artifactType`, the empty config, one layer of media type `artifact_type`
    /// holding `content`, and `annotations`. Pushed by digest, with no tag, as referrers
    /// are. Returns the artifact manifest's digest.
    pub async fn push_artifact(
        &self,
        repo: &str,
        subject: &TestImage,
        artifact_type: &str,
        content: &[u8],
        annotations: &[(&str, &str)],
    ) -> anyhow::Result<Digest> {
        self.push_referrer(
            repo,
            subject,
            artifact_type,
            artifact_type,
            content,
            annotations,
        )
        .await
    }

    /// [`ReferrersRegistry::push_artifact`] with a layer of its own media type (a Notation
    /// signature's layer is `application/jose+json` or `application/cose`).
    pub async fn push_referrer(
        &self,
        repo: &str,
        subject: &TestImage,
        artifact_type: &str,
        layer_media_type: &str,
        content: &[u8],
        annotations: &[(&str, &str)],
    ) -> anyhow::Result<Digest> {
        self.push_blob(repo, EMPTY_JSON).await?;
        self.push_blob(repo, content).await?;
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": descriptor(OCI_EMPTY, EMPTY_JSON),
            "layers": [descriptor(layer_media_type, content)],
            "subject": descriptor(OCI_MANIFEST, subject.manifest()),
        });
        if !annotations.is_empty() {
            manifest["annotations"] = serde_json::Value::Object(annotations);
        }
        let body = serde_json::to_vec(&manifest)?;
        let digest = Digest::of(&body);
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.url());
        let resp = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, OCI_MANIFEST)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach olareg at {url}"))?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!(
                "PUT {url} answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        // A registry with the referrers API says so by echoing the subject (OCI 1.1).
        let echoed = resp
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = Digest::of(subject.manifest());
        if echoed != expected.as_str() {
            bail!("PUT {url} answered OCI-Subject {echoed:?}, expected {expected}");
        }
        Ok(digest)
    }

    async fn get(&self, path: &str, accept: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}{path}", self.url());
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .with_context(|| format!("cannot reach olareg at {url}"))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("cannot read GET {url}"))?;
        if !status.is_success() {
            bail!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body.to_vec())
    }

    /// A monolithic upload: `POST /v2/<repo>/blobs/uploads/`, then `PUT <Location>?digest=`.
    async fn push_blob(&self, repo: &str, blob: &[u8]) -> anyhow::Result<()> {
        let start = format!("{}/v2/{repo}/blobs/uploads/", self.url());
        let resp = self
            .http
            .post(&start)
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .with_context(|| format!("cannot reach olareg at {start}"))?;
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
            reqwest::Url::parse(&format!("{}{location}", self.url()))
        } else {
            reqwest::Url::parse(&location)
        }
        .with_context(|| format!("blob upload Location {location:?} is not a URL"))?;
        url.query_pairs_mut()
            .append_pair("digest", Digest::of(blob).as_str());
        let resp = self
            .http
            .put(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .with_context(|| format!("cannot reach olareg at {url}"))?;
        if resp.status() != reqwest::StatusCode::CREATED {
            bail!(
                "PUT blob to {repo} answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("olareg.log")
    }

    async fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        let other = SpawnError::Other;
        // Appended to, so the log survives restart().
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot create the olareg log file")
            .map_err(other)?;
        let log_err = log
            .try_clone()
            .context("cannot open the olareg log file twice")
            .map_err(other)?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--addr", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.storage)
            .args(["--store-type", "dir"])
            // As TestRegistry enables deletes; blobs stay, as there.
            .arg("--api-delete")
            // No garbage collection in the middle of a test: untagged referrers stay.
            .args(["--gc-frequency", "-1s"])
            .args(["--verbosity", "info"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("cannot start olareg ({})", self.binary.display()))
            .map_err(other)?;
        self.child = Some(child);

        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.stop();
                let log = self.log();
                if log.contains("address already in use") {
                    Err(SpawnError::PortTaken(e))
                } else {
                    Err(SpawnError::Other(e.context(format!("olareg log:\n{log}"))))
                }
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                // olareg exits (with status 0) when it cannot bind its port.
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("olareg exited early with {status}");
                }
            }
            if let Ok(resp) = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if resp.status() == reqwest::StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "olareg did not answer GET {url} within {}s",
                    READY_DEADLINE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ReferrersRegistry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Storage on tmpfs when there is one, as for [`crate::registry::TestRegistry`].
fn registry_tempdir() -> anyhow::Result<TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("signet-referrers-registry-");
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return Ok(dir);
        }
    }
    builder
        .tempdir()
        .context("cannot create a temp dir for olareg")
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::of(blob).as_str(),
        "size": blob.len(),
    })
}
