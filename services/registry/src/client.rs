//! [`RegistryClient`]: resolve tags, read manifests, publish and fetch cosign signatures.
//! (Its operations on OCI 1.1 referrers are in [`crate::referrers`]'s `client` module.)
//!
//! The wire protocol is the OCI distribution API, spoken over [`crate::transport`], which
//! applies the destination and redirect policies ([`crate::policy`]) and authenticates.
//! Each registry host is probed once (`GET /v2/`): a registry that answers 200 without a
//! challenge is read with one request per manifest or blob and no credentials; one that
//! challenges gets HTTP basic credentials or tokens from its token service, cached per
//! repository scope. Also here: a one-request NotFound for HEAD, the manifest's
//! Content-Type, and size caps on what a registry may send back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::Url;
use signet_core::{Digest, ImageRef};

use crate::config::{
    api_host, normalize_host, uses_plain_http, Credential, DockerConfig, RegistryConfig,
};
use crate::cosign::{
    Attached, AttestationLayer, PublishOutcome, Published, SigManifest, SignatureLayer,
    SignatureLimits, Signatures,
};
use crate::error::{Ctx, RegistryError};
use crate::locks::KeyedLocks;
use crate::manifest::{Manifest, MANIFEST_ACCEPT, OCI_MANIFEST};
use crate::policy::DestinationPolicy;
use crate::transport::{parse_challenge, Access, Challenge, Host, Transport};

/// Registries cap manifests at 4 MiB (distribution's default); refuse larger answers.
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// A simple-signing payload is a few hundred bytes; this leaves room for annotations
/// while keeping a hostile registry from filling memory on the admission path.
const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Read-modify-write rounds before giving up on a contended `.sig` tag.
pub(crate) const PUBLISH_ATTEMPTS: u32 = 5;
const USER_AGENT: &str = concat!("signet-registry/", env!("CARGO_PKG_VERSION"));

/// A registry client shared by the signer, verifier and CLI. Cheap to clone; clones share
/// connection pools, token caches and per-artifact publish locks.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    docker: Option<DockerConfig>,
    transport: Transport,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// In-process writers of one `.sig` tag take turns here, so they never overwrite each
    /// other's layers. Races with writers in other processes are handled by the re-read
    /// after each PUT, which retries when our layer is gone; that narrows the window but
    /// cannot close it, since the distribution API has no conditional PUT.
    publish_locks: KeyedLocks,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config's credentials print redacted; the docker config only by path.
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .field("docker_config", &self.inner.docker)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Builds a client; reads the docker config now so a broken one is reported at start.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        if config.timeout.is_zero() {
            return Err(RegistryError::Config(
                "registry timeout must be greater than zero".to_owned(),
            ));
        }
        for c in &config.credentials {
            if normalize_host(&c.host).is_empty() {
                return Err(RegistryError::Config(
                    "a registry credential has an empty host".to_owned(),
                ));
            }
        }
        let policy =
            DestinationPolicy::new(&config.allowed_hosts).map_err(RegistryError::Config)?;
        let docker = DockerConfig::load(config.docker_config.as_ref())?;
        let transport = Transport::new(USER_AGENT, config.timeout, policy, &config.redirect_hosts)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                docker,
                transport,
                hosts: Mutex::new(HashMap::new()),
                publish_locks: KeyedLocks::default(),
            }),
        })
    }

    /// Tag → digest (HEAD manifest with every manifest Accept type). A digest reference
    /// returns its digest after checking that it exists.
    #[tracing::instrument(name = "registry.resolve", skip_all, fields(image = %image))]
    pub async fn resolve(&self, image: &ImageRef) -> Result<Digest, RegistryError> {
        let reference = manifest_reference(image);
        let what = format!("manifest {reference}");
        let ctx = ctx(image, "pull", &what);
        self.bounded("resolve", ctx, async {
            let (host, access) = self.host_access(image, ctx).await?;
            let access = &*access;
            let ctx = with_access(ctx, access);
            let digest = self
                .manifest_digest(&host, access, image.repository(), &reference, ctx)
                .await?;
            if let Some(want) = image.digest() {
                if &digest != want {
                    return Err(ctx.protocol(format!(
                        "asked for {want} but the registry answered {digest}"
                    )));
                }
            }
            Ok(digest)
        })
        .await
    }

    /// The manifest as stored: media type, raw bytes, digest.
    #[tracing::instrument(name = "registry.manifest", skip_all, fields(image = %image))]
    pub async fn manifest(&self, image: &ImageRef) -> Result<Manifest, RegistryError> {
        let reference = manifest_reference(image);
        let what = format!("manifest {reference}");
        let ctx = ctx(image, "pull", &what);
        self.bounded("manifest", ctx, async {
            let (host, access) = self.host_access(image, ctx).await?;
            let access = &*access;
            self.read_manifest(
                &host,
                access,
                image.repository(),
                &reference,
                with_access(ctx, access),
            )
            .await
        })
        .await
    }

    /// For an image index: its platform manifests' digests. For an image manifest: empty.
    pub async fn platform_digests(&self, image: &ImageRef) -> Result<Vec<Digest>, RegistryError> {
        Ok(self.manifest(image).await?.platform_digests().to_vec())
    }

    /// Publishes one cosign signature layer on `<repo>:sha256-<hex>.sig` (repository taken
    /// from `image`; its tag and digest are ignored), appending to an existing artifact.
    /// Returns [`PublishOutcome::AlreadyPresent`] when an identical layer is there.
    #[tracing::instrument(name = "registry.publish_signature", skip_all, fields(image = %image, digest = %digest))]
    pub async fn publish_signature(
        &self,
        image: &ImageRef,
        digest: &Digest,
        sig: &SignatureLayer,
    ) -> Result<Published, RegistryError> {
        self.publish_attached(image, digest.signature_tag(), &sig.attached())
            .await
    }

    /// Publishes one attestation (a DSSE envelope) on `<repo>:sha256-<hex>.att`, as
    /// `cosign attest` does, appending to an existing artifact; like
    /// [`RegistryClient::publish_signature`] otherwise.
    #[tracing::instrument(name = "registry.publish_attestation", skip_all, fields(image = %image, digest = %digest))]
    pub async fn publish_attestation(
        &self,
        image: &ImageRef,
        digest: &Digest,
        attestation: &AttestationLayer,
    ) -> Result<Published, RegistryError> {
        self.publish_attached(image, digest.attestation_tag(), &attestation.attached())
            .await
    }

    async fn publish_attached(
        &self,
        image: &ImageRef,
        tag: String,
        sig: &Attached,
    ) -> Result<Published, RegistryError> {
        let artifact = format!("{}:{tag}", image.repository_ref());
        let what = format!("attachment artifact {tag}");
        let ctx = ctx(image, "push", &what);
        self.bounded("publish", ctx, async {
            let _turn = self.inner.publish_locks.lock(artifact.clone()).await;
            let (host, access) = self.host_access(image, ctx).await?;
            let access = &*access;
            self.publish_locked(
                &host,
                access,
                image,
                &tag,
                &artifact,
                sig,
                with_access(ctx, access),
            )
            .await
        })
        .await
    }

    /// Every signature layer of the `.sig` artifact for `digest` (none when there is no
    /// artifact). For the signer and the CLI, which read their own registries; the
    /// admission path uses [`RegistryClient::fetch_signatures_within`].
    pub async fn fetch_signatures(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<SignatureLayer>, RegistryError> {
        let limits = SignatureLimits {
            max_layers: usize::MAX,
            max_payload_bytes: MAX_PAYLOAD_BYTES as u64,
        };
        Ok(self
            .fetch_signatures_within(image, digest, limits)
            .await?
            .layers)
    }

    /// The signature layers of the `.sig` artifact for `digest`, reading only the first
    /// `limits.max_layers` layers and payloads up to `limits.max_payload_bytes`; what was
    /// left out is counted so a caller can say so. Malformed layers are skipped (and
    /// logged) so they cannot hide good ones; no artifact gives no layers.
    #[tracing::instrument(name = "registry.fetch_signatures", skip_all, fields(image = %image, digest = %digest))]
    pub async fn fetch_signatures_within(
        &self,
        image: &ImageRef,
        digest: &Digest,
        limits: SignatureLimits,
    ) -> Result<Signatures, RegistryError> {
        let tag = digest.signature_tag();
        let what = format!("signature artifact {tag}");
        let ctx = ctx(image, "pull", &what);
        let max_payload = limits.max_payload_bytes.min(MAX_PAYLOAD_BYTES as u64);
        self.bounded("fetch_signatures", ctx, async {
            let (host, access) = self.host_access(image, ctx).await?;
            let access = &*access;
            let ctx = with_access(ctx, access);
            let repo = image.repository();
            let manifest = match self.read_manifest(&host, access, repo, &tag, ctx).await {
                Ok(m) => m,
                Err(e) if e.is_not_found() => return Ok(Signatures::default()),
                Err(e) => return Err(e),
            };
            let mut signatures = SigManifest::parse(&manifest.bytes)
                .map_err(|d| ctx.protocol(d))?
                .signatures();
            let total = signatures.len();
            signatures.truncate(limits.max_layers);
            let oversized = signatures.iter().filter(|s| s.size > max_payload).count();
            signatures.retain(|s| s.size <= max_payload);
            // Signatures by several witnesses share one payload blob: fetch each blob once.
            let mut wanted: Vec<(&Digest, u64)> = Vec::new();
            for s in &signatures {
                if !wanted.iter().any(|(d, _)| *d == &s.digest) {
                    wanted.push((&s.digest, s.size));
                }
            }
            let host = &host;
            // Built as a Vec of futures rather than a stream of closures: a stream whose
            // closures borrow `host` and `access` makes the whole operation non-Send
            // (rust-lang/rust#102211), and callers spawn it. `wanted` is one or two blobs
            // for an honest artifact, at most `max_layers` for a hostile one.
            let fetches: Vec<_> = wanted
                .into_iter()
                .map(|(digest, _)| self.fetch_payload(host, access, repo, digest, max_payload, ctx))
                .collect();
            let payloads: HashMap<&Digest, Vec<u8>> = futures::future::try_join_all(fetches)
                .await?
                .into_iter()
                .flatten()
                .collect();
            let layers = signatures
                .iter()
                .filter_map(|s| {
                    payloads.get(&s.digest).map(|payload| SignatureLayer {
                        payload: payload.clone(),
                        signature: s.signature.clone(),
                        annotations: s.annotations.clone(),
                    })
                })
                .collect();
            Ok(Signatures {
                layers,
                total,
                beyond_limit: total.saturating_sub(limits.max_layers),
                oversized,
            })
        })
        .await
    }

    /// The attestations of the `.att` artifact for `digest` (none when there is no
    /// artifact): the DSSE envelopes of the first `limits.max_layers` layers whose blob is
    /// at most `limits.max_payload_bytes`, with the predicate type their layer names.
    /// Nothing here is trusted: the caller verifies each envelope.
    #[tracing::instrument(name = "registry.fetch_attestations", skip_all, fields(image = %image, digest = %digest))]
    pub async fn fetch_attestations(
        &self,
        image: &ImageRef,
        digest: &Digest,
        limits: SignatureLimits,
    ) -> Result<Vec<AttestationLayer>, RegistryError> {
        let tag = digest.attestation_tag();
        let what = format!("attestation artifact {tag}");
        let ctx = ctx(image, "pull", &what);
        let max = limits.max_payload_bytes;
        self.bounded("fetch_attestations", ctx, async {
            let (host, access) = self.host_access(image, ctx).await?;
            let access = &*access;
            let ctx = with_access(ctx, access);
            let repo = image.repository();
            let manifest = match self.read_manifest(&host, access, repo, &tag, ctx).await {
                Ok(m) => m,
                Err(e) if e.is_not_found() => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut layers = SigManifest::parse(&manifest.bytes)
                .map_err(|d| ctx.protocol(d))?
                .attestations();
            layers.truncate(limits.max_layers);
            layers.retain(|l| l.size <= max);
            let host = &host;
            let fetches: Vec<_> = layers
                .iter()
                .map(|l| self.fetch_payload(host, access, repo, &l.digest, max, ctx))
                .collect();
            let blobs: HashMap<&Digest, Vec<u8>> = futures::future::try_join_all(fetches)
                .await?
                .into_iter()
                .flatten()
                .collect();
            Ok(layers
                .iter()
                .filter_map(|l| {
                    blobs.get(&l.digest).map(|envelope| AttestationLayer {
                        envelope: envelope.clone(),
                        predicate_type: l.predicate_type.clone(),
                    })
                })
                .collect())
        })
        .await
    }

    /// One signature payload blob; `None` when it is too large or missing (skipped).
    async fn fetch_payload<'d>(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        digest: &'d Digest,
        max: u64,
        ctx: Ctx<'_>,
    ) -> Result<Option<(&'d Digest, Vec<u8>)>, RegistryError> {
        let what = format!("signature payload blob {digest}");
        let blob_ctx = Ctx { what: &what, ..ctx };
        // The descriptor's size is the registry's word; the read itself is bounded too.
        let max = usize::try_from(max).unwrap_or(MAX_PAYLOAD_BYTES);
        match self
            .read_blob(host, access, repo, digest, max, blob_ctx)
            .await
        {
            Ok(payload) => Ok(Some((digest, payload))),
            Err(e) if e.is_not_found() => {
                tracing::warn!(%digest, "signature payload blob is missing; skipped");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn publish_locked(
        &self,
        host: &Host,
        access: &Access,
        image: &ImageRef,
        tag: &str,
        artifact: &str,
        sig: &Attached,
        ctx: Ctx<'_>,
    ) -> Result<Published, RegistryError> {
        let repo = image.repository();
        let payload_digest = sig.digest();
        let mut payload_uploaded = false;
        for attempt in 1..=PUBLISH_ATTEMPTS {
            let current = match self.read_manifest(host, access, repo, tag, ctx).await {
                Ok(m) => Some(m),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            let mut sig_manifest = match &current {
                Some(m) => SigManifest::parse(&m.bytes).map_err(|d| ctx.protocol(d))?,
                None => SigManifest::empty(),
            };
            if let (true, Some(m)) = (sig_manifest.contains(sig), &current) {
                return Ok(Published {
                    outcome: PublishOutcome::AlreadyPresent,
                    artifact: artifact.to_owned(),
                    manifest_digest: m.digest.clone(),
                });
            }
            sig_manifest.append(sig);
            let config = sig_manifest.config_blob().map_err(|d| ctx.protocol(d))?;
            let body = sig_manifest
                .to_bytes(&config)
                .map_err(|d| ctx.protocol(d))?;
            let written = Digest::of(&body);

            // Every blob must exist before the manifest PUT (MANIFEST_BLOB_UNKNOWN otherwise).
            let config_digest = Digest::of(&config);
            let push_config = self.push_blob(host, access, repo, config, &config_digest, ctx);
            if payload_uploaded {
                push_config.await?;
            } else {
                let push_payload =
                    self.push_blob(host, access, repo, sig.blob.clone(), &payload_digest, ctx);
                tokio::try_join!(push_config, push_payload)?;
                payload_uploaded = true;
            }
            self.push_manifest(host, access, repo, tag, body, ctx)
                .await?;

            // Another process may have written the tag between our read and our PUT, or
            // right after it: confirm that the tag now carries our layer.
            let now = self.manifest_digest(host, access, repo, tag, ctx).await?;
            if now == written {
                tracing::info!(
                    artifact,
                    layers = sig_manifest.layer_count(),
                    "signature published"
                );
                return Ok(Published {
                    outcome: PublishOutcome::Appended,
                    artifact: artifact.to_owned(),
                    manifest_digest: written,
                });
            }
            let latest = self.read_manifest(host, access, repo, tag, ctx).await?;
            if SigManifest::parse(&latest.bytes).is_ok_and(|m| m.contains(sig)) {
                return Ok(Published {
                    outcome: PublishOutcome::Appended,
                    artifact: artifact.to_owned(),
                    manifest_digest: latest.digest,
                });
            }
            tracing::warn!(
                artifact,
                attempt,
                "another writer replaced the signature artifact; retrying"
            );
            // Jitter so that racing writers do not collide again in lockstep.
            let pause = rand::thread_rng().gen_range(5..50u64) * u64::from(attempt);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(RegistryError::Conflict {
            artifact: artifact.to_owned(),
            attempts: PUBLISH_ATTEMPTS,
        })
    }

    /// Runs one registry operation under the configured timeout and counts it in the
    /// `signet_registry_requests` metrics as `operation`.
    pub(crate) async fn bounded<T>(
        &self,
        operation: &'static str,
        ctx: Ctx<'_>,
        op: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let timeout = self.inner.config.timeout;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, op)
            .await
            .unwrap_or_else(|_| Err(ctx.timeout(timeout)));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_not_found() => "not_found",
            Err(e) if e.retryable() => "unavailable",
            Err(_) => "error",
        };
        signet_runtime::metrics::metrics().registry_call(
            operation,
            outcome,
            started.elapsed().as_secs_f64(),
        );
        result
    }

    fn host(&self, registry: &str, ctx: Ctx<'_>) -> Result<Arc<Host>, RegistryError> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosts.get(registry) {
            return Ok(h.clone());
        }
        let plain = uses_plain_http(registry, &self.inner.config.insecure_registries);
        let host = Host::new(registry, api_host(registry), plain).map_err(|d| ctx.protocol(d))?;
        let host = Arc::new(host);
        hosts.insert(registry.to_owned(), host.clone());
        Ok(host)
    }

    /// The host and what its `/v2/` probe showed, probing on first use. A failed probe is
    /// not remembered, so a registry that was down is probed again next time.
    pub(crate) async fn host_access(
        &self,
        image: &ImageRef,
        ctx: Ctx<'_>,
    ) -> Result<(Arc<Host>, Arc<Access>), RegistryError> {
        let host = self.host(image.registry(), ctx)?;
        let access = host
            .access
            .get_or_try_init(|| self.probe(&host, ctx))
            .await?
            .clone();
        Ok((host, access))
    }

    async fn probe(&self, host: &Host, ctx: Ctx<'_>) -> Result<Arc<Access>, RegistryError> {
        let transport = &self.inner.transport;
        let url = Url::parse(&host.url("")).map_err(|_| ctx.protocol("bad registry URL"))?;
        transport
            .policy
            .check_url(&url)
            .map_err(|e| ctx.refused(e))?;
        let resp = transport
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| ctx.reqwest(e, transport.timeout))?;
        let status = resp.status().as_u16();
        if status >= 500 || status == 429 {
            let body = read_capped(resp, 64 << 10, ctx, transport.timeout)
                .await
                .unwrap_or_default();
            return Err(ctx.status(status, &body));
        }
        let challenge = match parse_challenge(&resp) {
            Some(c) => c,
            None if status == 200 => Challenge::Open,
            // No challenge but no access either: try the credential as HTTP basic.
            None => Challenge::Basic,
        };
        // Only a registry that asks for credentials has them looked up, so an open
        // registry never makes signet run a docker credential helper.
        let (credential, realm_hosts) = if matches!(challenge, Challenge::Open) {
            (None, Vec::new())
        } else {
            self.credential_for(&host.registry).await
        };
        tracing::debug!(
            registry = %host.registry,
            ?challenge,
            has_credentials = credential.is_some(),
            "registry probed"
        );
        Ok(Arc::new(Access {
            credential,
            realm_hosts,
            challenge,
        }))
    }

    /// signet's own credentials first, then the docker config (whose helpers are processes,
    /// hence the blocking task). Also the token service hosts the credential may go to.
    async fn credential_for(&self, registry: &str) -> (Option<Credential>, Vec<String>) {
        let wanted = normalize_host(registry);
        if let Some(c) = self
            .inner
            .config
            .credentials
            .iter()
            .find(|c| normalize_host(&c.host) == wanted)
        {
            return (Some(c.auth.clone()), c.realm_hosts.clone());
        }
        let Some(docker) = self.inner.docker.clone() else {
            return (None, Vec::new());
        };
        let registry = registry.to_owned();
        let found = tokio::task::spawn_blocking(move || docker.lookup(&registry))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "docker credential lookup panicked; using anonymous access");
                None
            });
        (found, Vec::new())
    }

    /// The digest a manifest reference points at: HEAD, falling back to GET when the
    /// registry sends no `Docker-Content-Digest`.
    pub(crate) async fn manifest_digest(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        reference: &str,
        ctx: Ctx<'_>,
    ) -> Result<Digest, RegistryError> {
        let url = host.url(&format!("{repo}/manifests/{reference}"));
        let resp = host
            .send(&self.inner.transport, access, ctx, |http| {
                http.head(&url).header(ACCEPT, MANIFEST_ACCEPT.join(", "))
            })
            .await?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ctx.status(status, b""));
        }
        match digest_header(&resp) {
            Some(d) => Digest::parse(d).map_err(|_| {
                ctx.protocol("the Docker-Content-Digest header is not a sha256 digest")
            }),
            None => Ok(self
                .read_manifest(host, access, repo, reference, ctx)
                .await?
                .digest),
        }
    }

    pub(crate) async fn read_manifest(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        reference: &str,
        ctx: Ctx<'_>,
    ) -> Result<Manifest, RegistryError> {
        self.read_manifest_within(host, access, repo, reference, MAX_MANIFEST_BYTES, ctx)
            .await
    }

    /// [`RegistryClient::read_manifest`], reading at most `cap` bytes.
    pub(crate) async fn read_manifest_within(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        reference: &str,
        cap: usize,
        ctx: Ctx<'_>,
    ) -> Result<Manifest, RegistryError> {
        let timeout = self.inner.config.timeout;
        let url = host.url(&format!("{repo}/manifests/{reference}"));
        let resp = host
            .send(&self.inner.transport, access, ctx, |http| {
                http.get(&url).header(ACCEPT, MANIFEST_ACCEPT.join(", "))
            })
            .await?;
        let status = resp.status().as_u16();
        let header_digest = digest_header(&resp).map(str::to_owned);
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(resp, cap, ctx, timeout).await?;
        if status != 200 {
            return Err(ctx.status(status, &body));
        }
        let digest = Digest::of(&body);
        if let Some(h) = header_digest {
            if h != digest.as_str() {
                return Err(ctx.protocol(format!(
                    "manifest body hashes to {digest} but the registry's Docker-Content-Digest header differs"
                )));
            }
        }
        if reference.starts_with("sha256:") && reference != digest.as_str() {
            return Err(ctx.protocol(format!("asked for manifest {reference} but got {digest}")));
        }
        Manifest::new(body, digest, content_type.as_deref()).map_err(|d| ctx.protocol(d))
    }

    /// A blob, at most `cap` bytes, checked against its digest.
    pub(crate) async fn read_blob(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        digest: &Digest,
        cap: usize,
        ctx: Ctx<'_>,
    ) -> Result<Vec<u8>, RegistryError> {
        let timeout = self.inner.config.timeout;
        let url = host.url(&format!("{repo}/blobs/{digest}"));
        let resp = host
            .send(&self.inner.transport, access, ctx, |http| http.get(&url))
            .await?;
        let status = resp.status().as_u16();
        let bytes = read_capped(resp, cap, ctx, timeout).await?;
        if status != 200 {
            return Err(ctx.status(status, &bytes));
        }
        let got = Digest::of(&bytes);
        if &got != digest {
            return Err(ctx.protocol(format!("blob {digest} downloaded as {got}")));
        }
        Ok(bytes)
    }

    /// A monolithic blob upload: `POST …/blobs/uploads/`, then `PUT <location>?digest=`.
    /// The upload location must stay on the registry's host.
    pub(crate) async fn push_blob(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        data: Vec<u8>,
        digest: &Digest,
        ctx: Ctx<'_>,
    ) -> Result<(), RegistryError> {
        let transport = &self.inner.transport;
        let start = host.url(&format!("{repo}/blobs/uploads/"));
        let resp = host
            .send(transport, access, ctx, |http| http.post(&start))
            .await?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(resp, 64 << 10, ctx, transport.timeout).await?;
        if status != 202 {
            return Err(ctx.status(status, &body));
        }
        let location =
            location.ok_or_else(|| ctx.protocol("the upload answer has no Location header"))?;
        let mut put = Url::parse(&start)
            .and_then(|base| base.join(&location))
            .map_err(|_| ctx.protocol("the upload Location header is not a URL"))?;
        if put.origin() != host.base.origin() {
            return Err(ctx.refused(
                "the registry named an upload location on another host; signet uploads only to the registry itself",
            ));
        }
        put.query_pairs_mut().append_pair("digest", digest.as_str());
        let resp = host
            .send(transport, access, ctx, |http| {
                http.put(put.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        let status = resp.status().as_u16();
        let body = read_capped(resp, 64 << 10, ctx, transport.timeout).await?;
        if !(200..300).contains(&status) {
            return Err(ctx.status(status, &body));
        }
        Ok(())
    }

    async fn push_manifest(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        tag: &str,
        body: Vec<u8>,
        ctx: Ctx<'_>,
    ) -> Result<(), RegistryError> {
        self.put_manifest(host, access, repo, tag, OCI_MANIFEST, body, ctx)
            .await
            .map(drop)
    }

    /// `PUT …/manifests/<reference>` with `media_type` as Content-Type. Returns the
    /// answer's `OCI-Subject` header: a registry with the referrers API names there the
    /// subject of a manifest that has one (distribution spec 1.1).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn put_manifest(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        reference: &str,
        media_type: &'static str,
        body: Vec<u8>,
        ctx: Ctx<'_>,
    ) -> Result<Option<String>, RegistryError> {
        let transport = &self.inner.transport;
        let url = host.url(&format!("{repo}/manifests/{reference}"));
        let resp = host
            .send(transport, access, ctx, |http| {
                http.put(&url)
                    .header(CONTENT_TYPE, HeaderValue::from_static(media_type))
                    .body(body.clone())
            })
            .await?;
        let status = resp.status().as_u16();
        let subject = resp
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = read_capped(resp, 64 << 10, ctx, transport.timeout).await?;
        if !(200..300).contains(&status) {
            return Err(ctx.status(status, &answer));
        }
        Ok(subject)
    }

    /// The HTTP client and policies every request goes through.
    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// This client's turn at read-modify-writing the tag `key` names.
    pub(crate) async fn publish_turn(&self, key: String) -> crate::locks::KeyedGuard {
        self.inner.publish_locks.lock(key).await
    }
}

pub(crate) fn ctx<'a>(image: &'a ImageRef, action: &'static str, what: &'a str) -> Ctx<'a> {
    Ctx {
        registry: image.registry(),
        repository: image.repository(),
        action,
        what,
        had_credentials: false,
    }
}

pub(crate) fn with_access<'a>(ctx: Ctx<'a>, access: &Access) -> Ctx<'a> {
    Ctx {
        had_credentials: access.sends_credentials(),
        ..ctx
    }
}

/// The digest when the reference has one (it pins the content), else the tag.
fn manifest_reference(image: &ImageRef) -> String {
    match (image.digest(), image.tag()) {
        (Some(d), _) => d.as_str().to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    }
}

fn digest_header(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
}

pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
    ctx: Ctx<'_>,
    timeout: Duration,
) -> Result<Vec<u8>, RegistryError> {
    if resp.content_length().is_some_and(|l| l > cap as u64) {
        return Err(ctx.protocol(format!("answer is larger than {cap} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ctx.reqwest(e, timeout))? {
        if body.len() + chunk.len() > cap {
            return Err(ctx.protocol(format!("answer is larger than {cap} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Callers spawn these operations on tokio's multi-threaded runtime, so their futures
/// must be `Send`; this fails to compile if one stops being so.
#[allow(dead_code)]
fn operations_are_send(
    c: &'static RegistryClient,
    i: &'static ImageRef,
    d: &'static Digest,
    l: &'static SignatureLayer,
) {
    fn is_send<T: Send>(_: T) {}
    is_send(c.resolve(i));
    is_send(c.manifest(i));
    is_send(c.fetch_signatures(i, d));
    is_send(c.publish_signature(i, d, l));
}
