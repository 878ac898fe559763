//! The per-image baseline: signing as pipelines do it today, one fresh process per image
//! that signs with a key and pushes a cosign signature, like `cosign sign --key`.
//!
//! `signet-load sign-one` is that process. It uses signet's own libraries (registry
//! client, KMS provider, payload format), so the comparison measures the architecture —
//! a process and its registry round trips per image versus a resident worker pool — and
//! not two implementations of RSA. It does what `cosign sign --key --tlog-upload=false`
//! does against a registry: resolve the tag, read the existing `.sig` artifact, sign the
//! simple-signing payload, upload it and write the manifest. It skips what cosign adds
//! (decrypting an scrypt-protected key file, a transparency-log upload), so it is a
//! *faster* baseline than the real thing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use signet_core::{ImageRef, SignatureAlgorithm, SimpleSigning};
use signet_kms::{Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig, SignatureLayer};
use tokio::time::Instant;

use crate::oci::{ImageSet, Registry};
use crate::pace::{closed_loop, Limits};
use crate::stats::Summary;

/// `signet-load sign-one`: signs one image and exits.
pub async fn sign_one(data_dir: &Path, key: &str, image: &str) -> anyhow::Result<()> {
    let image = ImageRef::parse(image)?;
    let registry = RegistryClient::new(RegistryConfig::for_loopback())?;
    let digest = match image.digest() {
        Some(d) => d.clone(),
        None => registry.resolve(&image).await?,
    };
    let existing = registry.fetch_signatures(&image, &digest).await?;
    let payload = SimpleSigning::new(image.repository_ref(), digest.clone()).to_bytes();
    if existing.iter().any(|l| l.payload == payload) {
        // cosign would add another layer; one is enough for the comparison.
        return Ok(());
    }
    let kms = Kms::new(KmsConfig::new(data_dir));
    let provider = kms.open(key)?;
    let described = provider.describe().await?;
    let signature = provider
        .sign(
            &described.primary_version,
            SignatureAlgorithm::RsaPkcs1Sha256,
            &payload,
        )
        .await?;
    registry
        .publish_signature(&image, &digest, &SignatureLayer::new(payload, signature))
        .await?;
    Ok(())
}

/// What the baseline measured.
pub struct PerImage {
    /// One process at a time.
    pub sequential: Summary,
    /// `parallel` processes at a time (pipelines run side by side).
    pub parallel: Summary,
    pub parallelism: usize,
}

impl PerImage {
    /// The better of the two throughputs: the baseline signet is compared with.
    pub fn best_throughput(&self) -> f64 {
        self.sequential.throughput().max(self.parallel.throughput())
    }
}

/// The pipeline's KMS key (in the data dir [`pipeline`] makes) and repository.
pub const PIPELINE_KEY: &str = "local://pipeline";
pub const PIPELINE_REPO: &str = "pipeline/app";

/// A data dir holding the pipeline's key, made before the pipeline runs, and `n` images
/// pushed to [`PIPELINE_REPO`] as `build-0` .. `build-{n-1}`.
pub async fn pipeline(registry: &Registry, n: u64) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    Kms::new(KmsConfig::new(dir.path()))
        .open(PIPELINE_KEY)?
        .describe()
        .await?;
    let images = ImageSet::new();
    images.prepare(registry, PIPELINE_REPO).await?;
    for i in 0..n {
        let (body, _) = images.manifest(i);
        registry
            .put_manifest(PIPELINE_REPO, &format!("build-{i}"), body)
            .await?;
    }
    Ok(dir)
}

/// Pushes `n` images to `registry` and signs each with a fresh `sign-one` process, first
/// one at a time, then `parallelism` at a time (over `n` more images).
pub async fn run(
    registry: &Registry,
    n: u64,
    parallelism: usize,
    within: Duration,
) -> anyhow::Result<PerImage> {
    let exe = std::env::current_exe().context("cannot find the load generator's own path")?;
    let dir = pipeline(registry, 2 * n).await?;
    let (key, repo) = (PIPELINE_KEY, PIPELINE_REPO);
    let job = |offset: u64| {
        let exe = exe.clone();
        let data = dir.path().to_path_buf();
        let host = registry.host.clone();
        move |i: u64| {
            let exe = exe.clone();
            let data = data.clone();
            let image = format!("{host}/{repo}:build-{}", offset + i);
            async move { spawn_one(&exe, &data, key, &image).await.is_ok() }
        }
    };
    let limits = |workers| Limits {
        count: n,
        duration: within,
        in_flight: workers,
    };
    let sequential = closed_loop(1, limits(1), job(0)).await;
    let parallel = closed_loop(parallelism, limits(parallelism), job(n)).await;
    if sequential.count == 0 {
        // Say why, from one more attempt.
        spawn_one(
            &exe,
            dir.path(),
            key,
            &format!("{}/{repo}:build-0", registry.host),
        )
        .await?;
    }
    Ok(PerImage {
        sequential,
        parallel,
        parallelism,
    })
}

async fn spawn_one(exe: &Path, data: &Path, key: &str, image: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let out = tokio::process::Command::new(exe)
        .args(["sign-one", "--key", key, "--image", image, "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .context("sign-one did not finish within 60 s")??;
    if !out.status.success() {
        bail!(
            "sign-one {image} failed after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
