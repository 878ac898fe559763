//! The [`RegistryClient`] operations on referrers: list them (the referrers API, else the
//! referrers tag schema's index), publish one (and keep the index on a registry without
//! the API), and fetch the Sigstore bundles among them, all within the bounds of
//! [`super`].

use std::collections::BTreeMap;

use reqwest::header::{ACCEPT, LINK};
use reqwest::Url;
use signet_core::bundle::{Bundle, BUNDLE_MEDIA_TYPE};
use signet_core::{Digest, ImageRef};

use super::{
    artifact_manifest, fallback_tag, ArtifactManifest, Descriptor, FetchedReferrer,
    PublishedReferrer, ReferrerKind, ReferrerLimits, Referrers, ReferrersIndex, EMPTY_CONFIG,
    FETCH_CONCURRENCY, MAX_LISTED, MAX_PAGES, MAX_REFERRER_MANIFEST_BYTES,
};
use crate::client::{ctx, with_access, RegistryClient, MAX_MANIFEST_BYTES, PUBLISH_ATTEMPTS};
use crate::cosign::PublishOutcome;
use crate::error::{Ctx, RegistryError};
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::transport::{Access, Host};

/// Where a listing came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Api,
    TagSchema,
}

struct Listing {
    descriptors: Vec<Descriptor>,
    source: Source,
}

impl RegistryClient {
    /// The referrers of `digest` in the image's repository (its tag and digest are
    /// ignored), of `artifact_type` only when given: from the referrers API, or from the
    /// referrers tag schema's index when the registry answers the API with 404. At most
    /// [`MAX_LISTED`] are returned; the filter is applied here when the registry did not
    /// say it applied it.
    #[tracing::instrument(name = "registry.referrers", skip_all, fields(image = %image, digest = %digest))]
    pub async fn referrers(
        &self,
        image: &ImageRef,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let what = format!("referrers of {digest}");
        let ctx = ctx(image, "pull", &what);
        self.bounded("referrers", ctx, async {
            let (host, access) = self.host_access(image, ctx).await?;
            let access = &*access;
            let listing = self
                .list_referrers(
                    &host,
                    access,
                    image.repository(),
                    digest,
                    artifact_type,
                    with_access(ctx, access),
                )
                .await?;
            Ok(listing.descriptors)
        })
        .await
    }

    /// Attaches `blob` to the image `digest` as an OCI 1.1 artifact: pushes the blob and
    /// the empty config, then an artifact manifest (by digest, no tag) whose `subject` is
    /// the image, of type `artifact_type`, with one layer of `layer_media_type` and the
    /// manifest `annotations`. On a registry without the referrers API (no `OCI-Subject`
    /// in the answer, 404 from the API) it also adds the manifest to the `sha256-<hex>`
    /// index of the referrers tag schema, keeping every other entry. Publishing the same
    /// artifact again (same blob and annotations) adds nothing and answers
    /// [`PublishOutcome::AlreadyPresent`]; a creation-time annotation would defeat that.
    #[tracing::instrument(name = "registry.publish_referrer", skip_all, fields(image = %image, digest = %digest, artifact_type))]
    pub async fn publish_referrer(
        &self,
        image: &ImageRef,
        digest: &Digest,
        artifact_type: &str,
        layer_media_type: &str,
        blob: Vec<u8>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<PublishedReferrer, RegistryError> {
        let tag = fallback_tag(digest);
        let what = format!("referrer of {digest}");
        let ctx = ctx(image, "push", &what);
        self.bounded("publish_referrer", ctx, async {
            // Writers of one image's fallback index take turns, as for `.sig` tags.
            let _turn = self
                .publish_turn(format!("{}:{tag}", image.repository_ref()))
                .await;
            let (host, access) = self.host_access(image, ctx).await?;
            let (host, access) = (&*host, &*access);
            let ctx = with_access(ctx, access);
            let repo = image.repository();

            let subject_what = format!("manifest {digest}");
            let subject = self
                .read_manifest(host, access, repo, digest.as_str(), Ctx { what: &subject_what, ..ctx })
                .await?;
            let subject = Descriptor {
                media_type: subject.media_type,
                digest: digest.clone(),
                size: subject.bytes.len() as u64,
                artifact_type: None,
                annotations: BTreeMap::new(),
            };
            let manifest =
                artifact_manifest(&subject, artifact_type, layer_media_type, &blob, annotations);
            let manifest_digest = Digest::of(&manifest);
            let entry = Descriptor {
                media_type: OCI_MANIFEST.to_owned(),
                digest: manifest_digest.clone(),
                size: manifest.len() as u64,
                artifact_type: Some(artifact_type.to_owned()),
                annotations: annotations.clone(),
            };

            let listing = self
                .list_referrers(host, access, repo, digest, Some(artifact_type), ctx)
                .await?;
            if listing.descriptors.iter().any(|d| d.digest == manifest_digest) {
                return Ok(PublishedReferrer {
                    outcome: PublishOutcome::AlreadyPresent,
                    manifest_digest,
                    fallback_tag: None,
                });
            }

            // Every blob must exist before the manifest PUT.
            let blob_digest = Digest::of(&blob);
            let config_digest = Digest::of(EMPTY_CONFIG);
            tokio::try_join!(
                self.push_blob(host, access, repo, EMPTY_CONFIG.to_vec(), &config_digest, ctx),
                self.push_blob(host, access, repo, blob, &blob_digest, ctx),
            )?;
            let echoed = self
                .put_manifest(
                    host,
                    access,
                    repo,
                    manifest_digest.as_str(),
                    OCI_MANIFEST,
                    manifest,
                    ctx,
                )
                .await?;
            if echoed.as_deref() == Some(digest.as_str()) || listing.source == Source::Api {
                tracing::info!(%manifest_digest, artifact_type, "referrer published");
                return Ok(PublishedReferrer {
                    outcome: PublishOutcome::Appended,
                    manifest_digest,
                    fallback_tag: None,
                });
            }
            self.add_to_fallback_index(host, access, repo, &tag, &entry, ctx)
                .await?;
            tracing::info!(%manifest_digest, artifact_type, tag, "referrer published in the referrers tag schema");
            Ok(PublishedReferrer {
                outcome: PublishOutcome::Appended,
                manifest_digest,
                fallback_tag: Some(tag.clone()),
            })
        })
        .await
    }

    /// Publishes a Sigstore bundle as cosign 3 does: a referrer of artifact type and layer
    /// media type [`BUNDLE_MEDIA_TYPE`], annotated with what it holds and its predicate
    /// type ([`Bundle::manifest_annotations`]).
    pub async fn publish_bundle(
        &self,
        image: &ImageRef,
        digest: &Digest,
        bundle: &Bundle,
    ) -> Result<PublishedReferrer, RegistryError> {
        self.publish_referrer(
            image,
            digest,
            BUNDLE_MEDIA_TYPE,
            BUNDLE_MEDIA_TYPE,
            bundle.to_bytes(),
            &bundle.manifest_annotations(),
        )
        .await
    }

    /// The Sigstore bundles attached to `digest` (referrers of artifact type
    /// [`BUNDLE_MEDIA_TYPE`]), raw, within [`ReferrerLimits::DEFAULT`]. The caller
    /// verifies each (`Bundle::parse`, then `verify` with a key and this digest).
    pub async fn fetch_bundles(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Vec<FetchedReferrer>, RegistryError> {
        Ok(self
            .fetch_referrers_within(
                image,
                digest,
                &[ReferrerKind::Bundle],
                ReferrerLimits::DEFAULT,
            )
            .await?
            .fetched)
    }

    /// The signature referrers of `digest` of the given kinds (Sigstore bundles, Notation
    /// envelopes), raw, within `limits`, counting what was left out. One listing serves
    /// every kind: filtered by the registry when one kind is asked for, here otherwise.
    /// A referrer that is not what its listing says (missing, malformed, about another
    /// subject) is skipped and counted, so it cannot hide the good ones.
    #[tracing::instrument(name = "registry.fetch_referrers", skip_all, fields(image = %image, digest = %digest))]
    pub async fn fetch_referrers_within(
        &self,
        image: &ImageRef,
        digest: &Digest,
        kinds: &[ReferrerKind],
        limits: ReferrerLimits,
    ) -> Result<Referrers, RegistryError> {
        let what = format!("signature referrers of {digest}");
        let ctx = ctx(image, "pull", &what);
        self.bounded("fetch_referrers", ctx, async {
            let (host, access) = self.host_access(image, ctx).await?;
            let (host, access) = (&*host, &*access);
            let ctx = with_access(ctx, access);
            let repo = image.repository();
            let filter = match kinds {
                [one] => Some(one.artifact_type()),
                _ => None,
            };
            let listed: Vec<(ReferrerKind, Descriptor)> = self
                .list_referrers(host, access, repo, digest, filter, ctx)
                .await?
                .descriptors
                .into_iter()
                .filter_map(|d| {
                    let kind = ReferrerKind::of_artifact(d.artifact_type.as_deref()?)?;
                    kinds.contains(&kind).then_some((kind, d))
                })
                .collect();
            let mut out = Referrers {
                total: listed.len(),
                beyond_limit: listed.len().saturating_sub(limits.max_referrers),
                ..Referrers::default()
            };
            let wanted = &listed[..listed.len().min(limits.max_referrers)];
            for chunk in wanted.chunks(FETCH_CONCURRENCY) {
                // A Vec of futures, not a stream of closures: see fetch_signatures_within.
                let fetches: Vec<_> = chunk
                    .iter()
                    .map(|(kind, d)| {
                        self.fetch_referrer(host, access, repo, digest, *kind, d, limits, ctx)
                    })
                    .collect();
                for fetched in futures::future::try_join_all(fetches).await? {
                    match fetched {
                        Fetched::Referrer(r) => out.fetched.push(r),
                        Fetched::Oversized => out.oversized += 1,
                        Fetched::Skipped => out.skipped += 1,
                    }
                }
            }
            if out.beyond_limit + out.oversized + out.skipped > 0 {
                tracing::warn!(
                    total = out.total,
                    beyond_limit = out.beyond_limit,
                    oversized = out.oversized,
                    skipped = out.skipped,
                    "some signature referrers were not read"
                );
            }
            Ok(out)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_referrer(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        subject: &Digest,
        kind: ReferrerKind,
        d: &Descriptor,
        limits: ReferrerLimits,
        ctx: Ctx<'_>,
    ) -> Result<Fetched, RegistryError> {
        let what = format!("referrer manifest {}", d.digest);
        let manifest_ctx = Ctx { what: &what, ..ctx };
        let manifest = match self
            .read_manifest_within(
                host,
                access,
                repo,
                d.digest.as_str(),
                MAX_REFERRER_MANIFEST_BYTES,
                manifest_ctx,
            )
            .await
        {
            Ok(m) => m,
            Err(e) if skippable(&e) => {
                tracing::warn!(digest = %d.digest, error = %e, "referrer manifest unreadable; skipped");
                return Ok(Fetched::Skipped);
            }
            Err(e) => return Err(e),
        };
        let Some(m) = ArtifactManifest::parse(&manifest.bytes) else {
            tracing::warn!(digest = %d.digest, "referrer is not an OCI artifact manifest; skipped");
            return Ok(Fetched::Skipped);
        };
        if m.subject.as_ref() != Some(subject) {
            tracing::warn!(digest = %d.digest, "referrer names another subject; skipped");
            return Ok(Fetched::Skipped);
        }
        // The listing is the registry's (or the tag index writer's) word; the manifest
        // itself must say the same.
        if m.artifact_type
            .as_deref()
            .and_then(ReferrerKind::of_artifact)
            != Some(kind)
        {
            tracing::warn!(digest = %d.digest, ?kind, "referrer is not of the type its listing says; skipped");
            return Ok(Fetched::Skipped);
        }
        // A Notation signature manifest has exactly one layer, its envelope.
        let layer = match kind {
            ReferrerKind::Bundle => m.layers.iter().find(|l| kind.holds(&l.media_type)),
            ReferrerKind::Notation => match m.layers.as_slice() {
                [only] if kind.holds(&only.media_type) => Some(only),
                _ => None,
            },
        };
        let Some(layer) = layer else {
            tracing::warn!(digest = %d.digest, ?kind, "referrer has no signature layer; skipped");
            return Ok(Fetched::Skipped);
        };
        if layer.size > limits.max_blob_bytes {
            return Ok(Fetched::Oversized);
        }
        let cap = usize::try_from(limits.max_blob_bytes).unwrap_or(usize::MAX);
        let what = format!("signature blob {}", layer.digest);
        match self
            .read_blob(
                host,
                access,
                repo,
                &layer.digest,
                cap,
                Ctx { what: &what, ..ctx },
            )
            .await
        {
            Ok(bytes) => Ok(Fetched::Referrer(FetchedReferrer {
                kind,
                manifest_digest: d.digest.clone(),
                media_type: layer.media_type.clone(),
                annotations: m.annotations,
                bytes,
            })),
            // The descriptor's size was the registry's word; the read is bounded too.
            Err(RegistryError::Protocol { detail, .. }) if detail.contains("larger than") => {
                Ok(Fetched::Oversized)
            }
            Err(e) if skippable(&e) => {
                tracing::warn!(digest = %layer.digest, error = %e, "signature blob unreadable; skipped");
                Ok(Fetched::Skipped)
            }
            Err(e) => Err(e),
        }
    }

    /// Lists referrers from the API, following its pages, else from the fallback tag.
    async fn list_referrers(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
        ctx: Ctx<'_>,
    ) -> Result<Listing, RegistryError> {
        let transport = self.transport();
        let mut url = Url::parse(&host.url(&format!("{repo}/referrers/{digest}")))
            .map_err(|_| ctx.protocol("bad registry URL"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let mut out: Vec<Descriptor> = Vec::new();
        let mut total = 0usize;
        for page in 0..MAX_PAGES {
            let resp = host
                .send(transport, access, ctx, |http| {
                    http.get(url.clone()).header(ACCEPT, OCI_INDEX)
                })
                .await?;
            let status = resp.status().as_u16();
            if status == 404 && page == 0 {
                drop(resp);
                return self
                    .list_by_tag(host, access, repo, digest, artifact_type, ctx)
                    .await;
            }
            let filtered = resp
                .headers()
                .get_all("oci-filters-applied")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|f| f.trim().eq_ignore_ascii_case("artifactType"));
            let next = next_page(&resp, &url, &host.base);
            let body = crate::client::read_capped(resp, MAX_MANIFEST_BYTES, ctx, transport.timeout)
                .await?;
            if status != 200 {
                return Err(ctx.status(status, &body));
            }
            let index = ReferrersIndex::parse(&body, MAX_LISTED).map_err(|d| ctx.protocol(d))?;
            total += index.total();
            for d in index.descriptors() {
                let wanted =
                    filtered || artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t));
                if wanted && out.len() < MAX_LISTED && !out.iter().any(|o| o.digest == d.digest) {
                    out.push(d);
                }
            }
            match next {
                Some(n) if out.len() < MAX_LISTED => url = n,
                _ => break,
            }
        }
        if total > MAX_LISTED {
            tracing::warn!(
                total,
                kept = out.len(),
                "the referrers index lists more than {MAX_LISTED} entries; the rest are ignored"
            );
        }
        Ok(Listing {
            descriptors: out,
            source: Source::Api,
        })
    }

    async fn list_by_tag(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
        ctx: Ctx<'_>,
    ) -> Result<Listing, RegistryError> {
        let tag = fallback_tag(digest);
        let what = format!("referrers tag {tag}");
        let ctx = Ctx { what: &what, ..ctx };
        let index = match self.read_manifest(host, access, repo, &tag, ctx).await {
            Ok(m) => ReferrersIndex::parse(&m.bytes, MAX_LISTED).map_err(|d| ctx.protocol(d))?,
            Err(e) if e.is_not_found() => ReferrersIndex::default(),
            Err(e) => return Err(e),
        };
        if index.total() > MAX_LISTED {
            tracing::warn!(
                total = index.total(),
                "the referrers tag lists more than {MAX_LISTED} entries; the rest are ignored"
            );
        }
        let descriptors = index
            .descriptors()
            .into_iter()
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect();
        Ok(Listing {
            descriptors,
            source: Source::TagSchema,
        })
    }

    /// Adds `entry` to the referrers tag schema's index for the subject, under the
    /// caller's publish turn: read, add unless there, PUT, and check the tag now lists
    /// it (another process may have written it in between), as for `.sig` tags.
    async fn add_to_fallback_index(
        &self,
        host: &Host,
        access: &Access,
        repo: &str,
        tag: &str,
        entry: &Descriptor,
        ctx: Ctx<'_>,
    ) -> Result<(), RegistryError> {
        let what = format!("referrers tag {tag}");
        let ctx = Ctx { what: &what, ..ctx };
        let read = |ctx| async move {
            match self.read_manifest(host, access, repo, tag, ctx).await {
                Ok(m) => ReferrersIndex::parse(&m.bytes, MAX_LISTED)
                    .map(Some)
                    .map_err(|d| ctx.protocol(d)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        };
        for attempt in 1..=PUBLISH_ATTEMPTS {
            let mut index = read(ctx).await?.unwrap_or_default();
            if index.total() > MAX_LISTED {
                // Rewriting it would drop the entries past what was read.
                return Err(ctx.protocol(format!(
                    "the referrers tag lists more than {MAX_LISTED} entries; signet does not rewrite it"
                )));
            }
            if index.contains(&entry.digest) {
                return Ok(());
            }
            index.push(entry);
            let body = index.to_bytes();
            let written = Digest::of(&body);
            self.put_manifest(host, access, repo, tag, OCI_INDEX, body, ctx)
                .await?;
            if self.manifest_digest(host, access, repo, tag, ctx).await? == written {
                return Ok(());
            }
            if read(ctx).await?.is_some_and(|i| i.contains(&entry.digest)) {
                return Ok(());
            }
            tracing::warn!(
                tag,
                attempt,
                "another writer replaced the referrers tag; retrying"
            );
            let pause = {
                use rand::Rng as _;
                rand::thread_rng().gen_range(5..50u64) * u64::from(attempt)
            };
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        Err(RegistryError::Conflict {
            artifact: format!("{repo}:{tag}"),
            attempts: PUBLISH_ATTEMPTS,
        })
    }
}

enum Fetched {
    Referrer(FetchedReferrer),
    Oversized,
    Skipped,
}

/// Failures that are about one referrer's content, not about reaching the registry:
/// that referrer is skipped, the others are still read.
fn skippable(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::NotFound { .. }
            | RegistryError::Protocol { .. }
            | RegistryError::Rejected { .. }
    )
}

/// The `Link: <url>; rel="next"` of a referrers page, resolved against the page's URL,
/// only when it stays on the registry (credentials go with it).
fn next_page(resp: &reqwest::Response, current: &Url, base: &Url) -> Option<Url> {
    for value in resp.headers().get_all(LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let target = target.strip_prefix('<')?.strip_suffix('>')?;
            let url = current.join(target).ok()?;
            if url.origin() == base.origin() && url != *current {
                return Some(url);
            }
            tracing::warn!("the referrers page links to another host; not followed");
            return None;
        }
    }
    None
}

/// Callers spawn these operations on tokio's multi-threaded runtime, so their futures
/// must be `Send`; this fails to compile if one stops being so.
#[allow(dead_code)]
fn operations_are_send(
    c: &'static RegistryClient,
    i: &'static ImageRef,
    d: &'static Digest,
    b: &'static Bundle,
) {
    fn is_send<T: Send>(_: T) {}
    is_send(c.referrers(i, d, None));
    is_send(c.fetch_bundles(i, d));
    is_send(c.publish_bundle(i, d, b));
}
