//! [`RegistryClient`]: resolve tags, read manifests, publish and fetch cosign signatures.
//!
//! The protocol and authentication come from oci-client: blob and manifest uploads, blob
//! downloads, and — for registries that ask for credentials — every request, including
//! the docker token dance. Written by hand here is only what oci-client lacks:
//! - Plain HTTP chosen per host at first use (loopback and configured insecure hosts):
//!   oci-client fixes its HTTP host list when built, and test registries get fresh ports,
//!   so there is one oci-client per registry host.
//! - Reads from registries that need no credentials. Once a registry holds credentials (even
//!   "anonymous") oci-client re-probes `GET /v2/` before every request that has no cached
//!   token, and an open registry never issues one, so each read would cost two requests. We
//!   probe `/v2/` once per host; when it answers 200 with no challenge, manifests and blobs
//!   are read with a plain HTTP client (one request each) and oci-client uploads without
//!   stored credentials (which also skips its probe). A registry that challenges `/v2/` is
//!   left entirely to oci-client, which caches its tokens.
//! - A one-request NotFound for HEAD (oci-client retries a failed HEAD as a GET), the
//!   manifest's Content-Type, and size caps on what a registry may send back.

use futures::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use rand::Rng;
use signet_core::{Digest, ImageRef};
use tokio::sync::OnceCell;

use crate::config::{
    api_host, normalize_host, uses_plain_http, Credential, DockerConfig, RegistryConfig,
};
use crate::cosign::{
    PublishOutcome, Published, SigManifest, SignatureLayer, SignatureLimits, Signatures,
};
use crate::error::{Ctx, RegistryError};
use crate::locks::KeyedLocks;
use crate::manifest::{Manifest, MANIFEST_ACCEPT, OCI_MANIFEST};

/// Registries cap manifests at 4 MiB (distribution's default); refuse larger answers.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// A simple-signing payload is a few hundred bytes; this leaves room for annotations
/// while keeping a hostile registry from filling memory on the admission path.
const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Read-modify-write rounds before giving up on a contended `.sig` tag.
const PUBLISH_ATTEMPTS: u32 = 5;
/// Payload blobs fetched at once for one signature artifact.
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
    /// For `/v2/` probes and reads from open registries.
    http: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    /// In-process writers of one `.sig` tag take turns here, so they never overwrite each
    /// other's layers. Races with writers in other processes are handled by the re-read
    /// after each PUT, which retries when our layer is gone; that narrows the window but
    /// cannot close it, since the distribution API has no conditional PUT.
    publish_locks: KeyedLocks,
}

/// One registry host: its scheme, its oci-client, and what its `/v2/` probe showed.
struct Host {
    registry: String,
    api_host: String,
    scheme: &'static str,
    oci: oci_client::Client,
    access: OnceCell<Arc<Access>>,
}

struct Access {
    /// Kept in signet's secret types; oci-client's plain-string form is made per call
    /// ([`Access::auth`]) and wiped when the call is done.
    credential: Option<Credential>,
    has_credentials: bool,
    /// `/v2/` answered 200 without a challenge: no credentials are needed or sent.
    open: bool,
}

impl Access {
    fn auth(&self) -> OciAuth {
        OciAuth::of(self.credential.as_ref())
    }
}

/// oci-client's credential type holds plain `String`s; this wrapper wipes them when the
/// call that needed them is done. (oci-client keeps a copy in its own token store,
/// which signet cannot reach.) Hand-written: `RegistryAuth` implements no `Zeroize`.
struct OciAuth(RegistryAuth);

impl OciAuth {
    fn of(credential: Option<&Credential>) -> Self {
        Self(credential.map_or(RegistryAuth::Anonymous, Credential::to_oci))
    }
}

impl Drop for OciAuth {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match &mut self.0 {
            RegistryAuth::Basic(user, password) => {
                user.zeroize();
                password.zeroize();
            }
            RegistryAuth::Bearer(token) => token.zeroize(),
            RegistryAuth::Anonymous => {}
        }
    }
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
        let docker = DockerConfig::load(config.docker_config.as_ref())?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| RegistryError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                docker,
                http,
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
        let tag = digest.signature_tag();
        let artifact = format!("{}:{tag}", image.repository_ref());
        let what = format!("signature artifact {tag}");
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
        sig: &SignatureLayer,
        ctx: Ctx<'_>,
    ) -> Result<Published, RegistryError> {
        let repo = image.repository();
        let sig_ref = Reference::with_tag(host.registry.clone(), repo.to_owned(), tag.to_owned());
        let payload_digest = sig.payload_digest();
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
            let push_config = self.push_blob(host, &sig_ref, config, &config_digest, ctx);
            if payload_uploaded {
                push_config.await?;
            } else {
                let push_payload =
                    self.push_blob(host, &sig_ref, sig.payload.clone(), &payload_digest, ctx);
                tokio::try_join!(push_config, push_payload)?;
                payload_uploaded = true;
            }
            let content_type = reqwest::header::HeaderValue::from_static(OCI_MANIFEST);
            host.oci
                .push_manifest_raw(&sig_ref, body, content_type)
                .await
                .map_err(|e| ctx.oci(e, self.inner.config.timeout))?;

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
    async fn bounded<T>(
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

    fn host(&self, registry: &str) -> Result<Arc<Host>, RegistryError> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = hosts.get(registry) {
            return Ok(h.clone());
        }
        let plain = uses_plain_http(registry, &self.inner.config.insecure_registries);
        let timeout = self.inner.config.timeout;
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // Signature blobs are tiny: one POST + one PUT beats chunked PATCHes.
            use_monolithic_push: true,
            platform_resolver: None,
            read_timeout: Some(timeout),
            connect_timeout: Some(timeout),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let oci = oci_client::Client::try_from(config).map_err(|e| {
            RegistryError::Config(format!("cannot build the OCI client for {registry}: {e}"))
        })?;
        let host = Arc::new(Host {
            registry: registry.to_owned(),
            api_host: api_host(registry).to_owned(),
            scheme: if plain { "http" } else { "https" },
            oci,
            access: OnceCell::new(),
        });
        hosts.insert(registry.to_owned(), host.clone());
        Ok(host)
    }

    /// The host and what its `/v2/` probe showed, probing on first use. A failed probe is
    /// not remembered, so a registry that was down is probed again next time.
    async fn host_access(
        &self,
        image: &ImageRef,
        ctx: Ctx<'_>,
    ) -> Result<(Arc<Host>, Arc<Access>), RegistryError> {
        let host = self.host(image.registry())?;
        let access = host
            .access
            .get_or_try_init(|| self.probe(&host, ctx))
            .await?
            .clone();
        Ok((host, access))
    }

    async fn probe(&self, host: &Host, ctx: Ctx<'_>) -> Result<Arc<Access>, RegistryError> {
        let credential = self.credential_for(&host.registry).await;
        let has_credentials = credential.is_some();
        let auth = OciAuth::of(credential.as_ref());
        let url = format!("{}://{}/v2/", host.scheme, host.api_host);
        let timeout = self.inner.config.timeout;
        let resp = self
            .inner
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ctx.reqwest(e, timeout))?;
        let status = resp.status().as_u16();
        let challenged = resp
            .headers()
            .contains_key(reqwest::header::WWW_AUTHENTICATE);
        if status >= 500 || status == 429 {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(ctx.status(status, &body));
        }
        let open = status == 200 && !challenged;
        if !open {
            host.oci.store_auth_if_needed(&host.api_host, &auth.0).await;
        }
        tracing::debug!(registry = %host.registry, open, has_credentials, "registry probed");
        Ok(Arc::new(Access {
            credential,
            has_credentials,
            open,
        }))
    }

    /// signet's own credentials first, then the docker config (whose helpers are processes,
    /// hence the blocking task).
    async fn credential_for(&self, registry: &str) -> Option<Credential> {
        let wanted = normalize_host(registry);
        if let Some(c) = self
            .inner
            .config
            .credentials
            .iter()
            .find(|c| normalize_host(&c.host) == wanted)
        {
            return Some(c.auth.clone());
        }
        let docker = self.inner.docker.clone()?;
        let registry = registry.to_owned();
        tokio::task::spawn_blocking(move || docker.lookup(&registry))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "docker credential lookup panicked; using anonymous access");
                None
            })
    }

    /// The digest a manifest reference points at: HEAD, falling back to GET when the
    /// registry sends no `Docker-Content-Digest`.
    async fn manifest_digest(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        reference: &str,
        ctx: Ctx<'_>,
    ) -> Result<Digest, RegistryError> {
        let timeout = self.inner.config.timeout;
        if !access.open {
            let r = oci_reference(host, repo, reference);
            let d = host
                .oci
                .fetch_manifest_digest(&r, &access.auth().0)
                .await
                .map_err(|e| ctx.oci(e, timeout))?;
            return Digest::parse(&d).map_err(|e| ctx.protocol(format!("manifest digest: {e}")));
        }
        let url = manifest_url(host, repo, reference);
        let resp = self
            .inner
            .http
            .head(&url)
            .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT.join(", "))
            .send()
            .await
            .map_err(|e| ctx.reqwest(e, timeout))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ctx.status(status, b""));
        }
        match digest_header(&resp) {
            Some(d) => {
                Digest::parse(d).map_err(|e| ctx.protocol(format!("Docker-Content-Digest: {e}")))
            }
            None => Ok(self
                .read_manifest(host, access, repo, reference, ctx)
                .await?
                .digest),
        }
    }

    async fn read_manifest(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        reference: &str,
        ctx: Ctx<'_>,
    ) -> Result<Manifest, RegistryError> {
        let timeout = self.inner.config.timeout;
        let (bytes, digest, content_type) = if access.open {
            let url = manifest_url(host, repo, reference);
            let resp = self
                .inner
                .http
                .get(&url)
                .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT.join(", "))
                .send()
                .await
                .map_err(|e| ctx.reqwest(e, timeout))?;
            let status = resp.status().as_u16();
            let header_digest = digest_header(&resp).map(str::to_owned);
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = read_capped(resp, MAX_MANIFEST_BYTES, ctx, timeout).await?;
            if status != 200 {
                return Err(ctx.status(status, &body));
            }
            let digest = Digest::of(&body);
            if let Some(h) = header_digest {
                if h != digest.as_str() {
                    return Err(ctx.protocol(format!(
                        "manifest body hashes to {digest} but the registry says {h}"
                    )));
                }
            }
            (body, digest, content_type)
        } else {
            let r = oci_reference(host, repo, reference);
            let (bytes, digest) = host
                .oci
                .pull_manifest_raw(&r, &access.auth().0, MANIFEST_ACCEPT)
                .await
                .map_err(|e| ctx.oci(e, timeout))?;
            let digest = Digest::parse(&digest)
                .map_err(|e| ctx.protocol(format!("manifest digest: {e}")))?;
            (bytes.to_vec(), digest, None)
        };
        if reference.starts_with("sha256:") && reference != digest.as_str() {
            return Err(ctx.protocol(format!("asked for manifest {reference} but got {digest}")));
        }
        Manifest::new(bytes, digest, content_type.as_deref()).map_err(|d| ctx.protocol(d))
    }

    /// A blob, at most `cap` bytes, checked against its digest.
    async fn read_blob(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        digest: &Digest,
        cap: usize,
        ctx: Ctx<'_>,
    ) -> Result<Vec<u8>, RegistryError> {
        let timeout = self.inner.config.timeout;
        let bytes = if access.open {
            let url = format!(
                "{}://{}/v2/{repo}/blobs/{digest}",
                host.scheme, host.api_host
            );
            let resp = self
                .inner
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| ctx.reqwest(e, timeout))?;
            let status = resp.status().as_u16();
            let body = read_capped(resp, cap, ctx, timeout).await?;
            if status != 200 {
                return Err(ctx.status(status, &body));
            }
            body
        } else {
            let r = oci_reference(host, repo, digest.as_str());
            let mut stream = host
                .oci
                .pull_blob_stream(&r, digest.as_str())
                .await
                .map_err(|e| ctx.oci(e, timeout))?;
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    // oci-client wraps both transport failures and digest mismatches in io::Error.
                    if e.get_ref()
                        .is_some_and(|inner| inner.is::<reqwest::Error>())
                    {
                        ctx.unreachable(e)
                    } else {
                        ctx.protocol(format!("blob download failed: {e}"))
                    }
                })?;
                if body.len() + chunk.len() > cap {
                    return Err(ctx.protocol(format!("blob {digest} is larger than {cap} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            body
        };
        let got = Digest::of(&bytes);
        if &got != digest {
            return Err(ctx.protocol(format!("blob {digest} downloaded as {got}")));
        }
        Ok(bytes)
    }

    async fn push_blob(
        &self,
        host: &Host,
        reference: &Reference,
        data: Vec<u8>,
        digest: &Digest,
        ctx: Ctx<'_>,
    ) -> Result<(), RegistryError> {
        host.oci
            .push_blob(reference, data, digest.as_str())
            .await
            .map(drop)
            .map_err(|e| ctx.oci(e, self.inner.config.timeout))
    }
}

fn ctx<'a>(image: &'a ImageRef, action: &'static str, what: &'a str) -> Ctx<'a> {
    Ctx {
        registry: image.registry(),
        repository: image.repository(),
        action,
        what,
        had_credentials: false,
    }
}

fn with_access<'a>(ctx: Ctx<'a>, access: &Access) -> Ctx<'a> {
    Ctx {
        had_credentials: access.has_credentials,
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

fn oci_reference(host: &Host, repo: &str, reference: &str) -> Reference {
    if reference.starts_with("sha256:") {
        Reference::with_digest(host.registry.clone(), repo.to_owned(), reference.to_owned())
    } else {
        Reference::with_tag(host.registry.clone(), repo.to_owned(), reference.to_owned())
    }
}

fn manifest_url(host: &Host, repo: &str, reference: &str) -> String {
    format!(
        "{}://{}/v2/{repo}/manifests/{reference}",
        host.scheme, host.api_host
    )
}

fn digest_header(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
}

async fn read_capped(
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
