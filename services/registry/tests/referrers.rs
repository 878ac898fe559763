//! OCI 1.1 referrers against real registries: olareg (testkit's `ReferrersRegistry`,
//! which has the referrers API) and Debian's docker-registry 2.8 (testkit's
//! `TestRegistry`, which has not, so signet keeps the referrers tag schema's index); and
//! against a hostile registry (a small server of the attacker's) whose referrers lists
//! and blobs must not cost signet more than its limits.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{respond, Server};
use signet_core::bundle::BUNDLE_MEDIA_TYPE;
use signet_core::notation::{COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, NOTARY_SIGNATURE_ARTIFACT_TYPE};
use signet_core::{Digest, ImageRef};
use signet_registry::referrers::{fallback_tag, MAX_LISTED};
use signet_registry::{
    PublishOutcome, ReferrerKind, ReferrerLimits, RegistryClient, RegistryConfig, RegistryError,
};
use signet_testkit::image::{TestImage, OCI_INDEX, OCI_MANIFEST};
use signet_testkit::referrers_registry::ReferrersRegistry;
use signet_testkit::registry::TestRegistry;

const SBOM: &str = "application/vnd.example.sbom+json";

/// A client that ignores the machine's docker config.
fn client() -> (RegistryClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{}").expect("write");
    let config = RegistryConfig {
        docker_config: Some(path),
        ..RegistryConfig::for_loopback()
    };
    (RegistryClient::new(config).expect("client"), dir)
}

fn image(host: &str, rest: &str) -> ImageRef {
    ImageRef::parse(&format!("{host}/{rest}")).expect("image ref")
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn get(url: &str, accept: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .expect("registry answers");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

async fn tags(base_url: &str, repo: &str) -> Vec<String> {
    let (_, body) = get(
        &format!("{base_url}/v2/{repo}/tags/list"),
        "application/json",
    )
    .await;
    let list: serde_json::Value = serde_json::from_slice(&body).expect("tag list");
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    tags.sort();
    tags
}

#[tokio::test]
async fn on_a_registry_with_the_referrers_api_a_referrer_is_pushed_by_digest_and_listed() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let (c, _dir) = client();
    let subject = TestImage::random();
    let digest = subject
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let img = image(&registry.host(), "app:v1");

    // olareg answers `"manifests": null` for an image without referrers.
    assert!(c
        .referrers(&img, &digest, None)
        .await
        .expect("list")
        .is_empty());

    let sbom = br#"{"packages":[]}"#.to_vec();
    let notes = annotations(&[("org.example.kind", "sbom")]);
    let published = c
        .publish_referrer(&img, &digest, SBOM, SBOM, sbom.clone(), &notes)
        .await
        .expect("publish");
    assert_eq!(published.outcome, PublishOutcome::Appended);
    assert_eq!(published.fallback_tag, None, "olareg echoed OCI-Subject");
    // By digest, no tag: the repository still has only v1.
    assert_eq!(tags(&registry.url(), "app").await, ["v1"]);

    let listed = c.referrers(&img, &digest, None).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].digest, published.manifest_digest);
    assert_eq!(listed[0].artifact_type.as_deref(), Some(SBOM));
    assert_eq!(listed[0].annotations, notes);
    assert!(c
        .referrers(&img, &digest, Some("application/vnd.example.other"))
        .await
        .expect("filtered")
        .is_empty());

    // What olareg stored is the artifact manifest cosign 3 would write.
    let manifest = registry
        .manifest("app", &published.manifest_digest)
        .await
        .expect("manifest");
    assert_eq!(manifest["artifactType"], SBOM);
    assert_eq!(manifest["subject"]["digest"], digest.as_str());
    assert_eq!(manifest["subject"]["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["subject"]["size"], subject.manifest().len());
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let layer =
        Digest::parse(manifest["layers"][0]["digest"].as_str().expect("digest")).expect("digest");
    assert_eq!(registry.blob("app", &layer).await.expect("blob"), sbom);

    // The same artifact again adds nothing; another one is listed beside it.
    let again = c
        .publish_referrer(&img, &digest, SBOM, SBOM, sbom.clone(), &notes)
        .await
        .expect("publish again");
    assert_eq!(again.outcome, PublishOutcome::AlreadyPresent);
    assert_eq!(again.manifest_digest, published.manifest_digest);
    let other = c
        .publish_referrer(&img, &digest, SBOM, SBOM, b"{\"v\":2}".to_vec(), &notes)
        .await
        .expect("publish another");
    assert_eq!(other.outcome, PublishOutcome::Appended);
    assert_eq!(
        c.referrers(&img, &digest, Some(SBOM))
            .await
            .expect("list")
            .len(),
        2
    );
    assert_eq!(tags(&registry.url(), "app").await, ["v1"]);
}

#[tokio::test]
async fn without_the_referrers_api_signet_keeps_the_referrers_tag_index() {
    let registry = TestRegistry::start().await.expect("start docker-registry");
    let (c, _dir) = client();
    let subject = TestImage::random();
    let digest = subject
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let img = image(&registry.host(), "app:v1");
    let tag = fallback_tag(&digest);
    assert_eq!(tag, format!("sha256-{}", digest.hex()));

    // docker-registry 2.8 answers the referrers API with 404: read the tag, absent too.
    let (status, _) = get(
        &format!("{}/v2/app/referrers/{digest}", registry.url()),
        OCI_INDEX,
    )
    .await;
    assert_eq!(status, 404);
    assert!(c
        .referrers(&img, &digest, None)
        .await
        .expect("list")
        .is_empty());

    let notes = annotations(&[("dev.sigstore.bundle.content", "dsse-envelope")]);
    let first = c
        .publish_referrer(
            &img,
            &digest,
            BUNDLE_MEDIA_TYPE,
            BUNDLE_MEDIA_TYPE,
            b"{\"a\":1}".to_vec(),
            &notes,
        )
        .await
        .expect("publish");
    assert_eq!(first.outcome, PublishOutcome::Appended);
    assert_eq!(first.fallback_tag.as_deref(), Some(tag.as_str()));
    assert_eq!(
        tags(&registry.url(), "app").await,
        [tag.clone(), "v1".to_owned()]
    );

    let index_url = format!("{}/v2/app/manifests/{tag}", registry.url());
    let (status, body) = get(&index_url, OCI_INDEX).await;
    assert_eq!(status, 200);
    let index: serde_json::Value = serde_json::from_slice(&body).expect("index");
    assert_eq!(index["mediaType"], OCI_INDEX);
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 1, "{index:#}");
    assert_eq!(entries[0]["digest"], first.manifest_digest.as_str());
    assert_eq!(entries[0]["artifactType"], BUNDLE_MEDIA_TYPE);
    assert_eq!(entries[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(
        entries[0]["annotations"]["dev.sigstore.bundle.content"],
        "dsse-envelope"
    );

    // Again: nothing added. Two more (one an SBOM): each added once, the first kept.
    let again = c
        .publish_referrer(
            &img,
            &digest,
            BUNDLE_MEDIA_TYPE,
            BUNDLE_MEDIA_TYPE,
            b"{\"a\":1}".to_vec(),
            &notes,
        )
        .await
        .expect("publish again");
    assert_eq!(again.outcome, PublishOutcome::AlreadyPresent);
    c.publish_referrer(
        &img,
        &digest,
        BUNDLE_MEDIA_TYPE,
        BUNDLE_MEDIA_TYPE,
        b"{\"a\":2}".to_vec(),
        &notes,
    )
    .await
    .expect("second bundle");
    c.publish_referrer(&img, &digest, SBOM, SBOM, b"{}".to_vec(), &BTreeMap::new())
        .await
        .expect("sbom");
    let (_, body) = get(&index_url, OCI_INDEX).await;
    let index: serde_json::Value = serde_json::from_slice(&body).expect("index");
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 3, "{index:#}");
    assert_eq!(entries[0]["digest"], first.manifest_digest.as_str());
    assert_eq!(
        c.referrers(&img, &digest, Some(BUNDLE_MEDIA_TYPE))
            .await
            .expect("list")
            .len(),
        2
    );
    assert_eq!(
        c.referrers(&img, &digest, Some(SBOM))
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        c.referrers(&img, &digest, None).await.expect("list").len(),
        3
    );

    // The bundles come back as they were published.
    let mut bundles: Vec<Vec<u8>> = c
        .fetch_bundles(&img, &digest)
        .await
        .expect("fetch")
        .into_iter()
        .map(|b| b.bytes)
        .collect();
    bundles.sort();
    assert_eq!(bundles, [b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]);
}

/// Publishers in one process take turns at the fallback index, so none loses another's
/// entry. (Writers in other processes are caught by the re-read after each PUT, which
/// narrows the window but cannot close it: the distribution API has no conditional PUT.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_keep_every_entry_of_the_tag_index() {
    let registry = TestRegistry::start().await.expect("start docker-registry");
    let digest = TestImage::random()
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let img = image(&registry.host(), "app:v1");
    let (c, _dir) = client();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (c, img, digest) = (c.clone(), img.clone(), digest.clone());
        tasks.push(tokio::spawn(async move {
            c.publish_referrer(&img, &digest, SBOM, SBOM, vec![b'a' + i], &BTreeMap::new())
                .await
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.expect("task").expect("publish").outcome,
            PublishOutcome::Appended
        );
    }
    assert_eq!(
        c.referrers(&img, &digest, Some(SBOM))
            .await
            .expect("list")
            .len(),
        16
    );
}

#[tokio::test]
async fn a_subject_that_does_not_exist_is_not_found() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let (c, _dir) = client();
    TestImage::random()
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let img = image(&registry.host(), "app:v1");
    let err = c
        .publish_referrer(
            &img,
            &Digest::of(b"absent"),
            SBOM,
            SBOM,
            b"{}".to_vec(),
            &BTreeMap::new(),
        )
        .await
        .expect_err("no subject");
    assert!(err.is_not_found(), "{err}");
}

// ---- a hostile registry ----------------------------------------------------------------

/// The attacker's registry: `/v2/` open; the referrers API lists `index` for any digest;
/// manifests and blobs come from `content` by digest. The server counts every request.
fn hostile(index: Vec<u8>, content: BTreeMap<String, Vec<u8>>) -> common::Answer {
    let index = Arc::new(index);
    let content = Arc::new(content);
    Arc::new(move |_, uri, _| {
        let path = uri.path();
        if path == "/v2/" {
            return respond(200, &[], "{}");
        }
        if path.contains("/referrers/") {
            return respond(
                200,
                &[("content-type", OCI_INDEX.into())],
                index.as_ref().clone(),
            );
        }
        let digest = path.rsplit('/').next().unwrap_or_default();
        match content.get(digest) {
            Some(bytes) => respond(
                200,
                &[
                    ("content-type", OCI_MANIFEST.into()),
                    ("docker-content-digest", digest.to_owned()),
                ],
                bytes.clone(),
            ),
            None => respond(404, &[], ""),
        }
    })
}

fn artifact(subject: &Digest, layer: &[u8], layer_size: usize, n: usize) -> Vec<u8> {
    typed_artifact(
        subject,
        BUNDLE_MEDIA_TYPE,
        &[(BUNDLE_MEDIA_TYPE, layer, layer_size)],
        n,
    )
}

/// An artifact manifest about `subject` of `artifact_type` with `layers` (media type,
/// content, declared size), annotated `n`.
fn typed_artifact(
    subject: &Digest,
    artifact_type: &str,
    layers: &[(&str, &[u8], usize)],
    n: usize,
) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(media_type, content, size)| {
            serde_json::json!({"mediaType": media_type, "digest": Digest::of(content).as_str(), "size": size})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::of(b"{}").as_str(), "size": 2},
        "layers": layers,
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": 1},
        "annotations": {"n": n.to_string()},
    }))
    .expect("json")
}

fn index_of(digests: &[(String, usize)]) -> Vec<u8> {
    let typed: Vec<(String, usize, &str)> = digests
        .iter()
        .map(|(d, size)| (d.clone(), *size, BUNDLE_MEDIA_TYPE))
        .collect();
    typed_index(&typed)
}

/// A referrers index listing (digest, size, artifact type).
fn typed_index(entries: &[(String, usize, &str)]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(d, size, t)| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size, "artifactType": t}))
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
    )
    .expect("json")
}

/// The registry owner lists 10,000 bundle referrers, each a real manifest: signet keeps
/// at most MAX_LISTED of the list and fetches only `max_referrers` manifests and blobs.
#[tokio::test]
async fn a_referrers_list_of_ten_thousand_entries_costs_only_the_limits() {
    let subject = Digest::of(b"the image");
    let blob = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#.to_vec();
    let mut content = BTreeMap::new();
    content.insert(Digest::of(&blob).as_str().to_owned(), blob.clone());
    let mut listed = Vec::new();
    for n in 0..10_000 {
        let m = artifact(&subject, &blob, blob.len(), n);
        let d = Digest::of(&m).as_str().to_owned();
        listed.push((d.clone(), m.len()));
        content.insert(d, m);
    }
    let registry = Server::start(hostile(index_of(&listed), content)).await;
    let (c, _dir) = client();
    let img = image(&registry.host(), "x/app:v1");

    let all = c.referrers(&img, &subject, None).await.expect("list");
    assert_eq!(all.len(), MAX_LISTED);

    let got = c
        .fetch_referrers_within(
            &img,
            &subject,
            &[ReferrerKind::Bundle],
            ReferrerLimits::ADMISSION,
        )
        .await
        .expect("fetch");
    assert_eq!(got.total, MAX_LISTED);
    assert_eq!(got.fetched.len(), ReferrerLimits::ADMISSION.max_referrers);
    assert_eq!(
        got.beyond_limit,
        MAX_LISTED - ReferrerLimits::ADMISSION.max_referrers
    );
    let seen = registry.seen();
    let manifests = seen
        .iter()
        .filter(|s| s.path.contains("/manifests/"))
        .count();
    let blobs = seen.iter().filter(|s| s.path.contains("/blobs/")).count();
    assert_eq!(
        manifests,
        ReferrerLimits::ADMISSION.max_referrers,
        "manifest fetches"
    );
    assert!(
        blobs <= ReferrerLimits::ADMISSION.max_referrers,
        "{blobs} blob fetches"
    );
}

/// Blobs larger than the limit: one whose descriptor says so is not fetched; one whose
/// descriptor lies is cut off at the limit. A referrer about another image and one whose
/// manifest is missing are skipped; the honest bundle next to them is still read.
#[tokio::test]
async fn huge_blobs_and_bad_referrers_are_skipped_and_good_ones_still_read() {
    let subject = Digest::of(b"the image");
    let honest = br#"{"honest":true}"#.to_vec();
    let huge = vec![b'x'; 8 << 20];
    let mut content = BTreeMap::new();
    content.insert(Digest::of(&honest).as_str().to_owned(), honest.clone());
    content.insert(Digest::of(&huge).as_str().to_owned(), huge.clone());
    let manifests = [
        artifact(&subject, &huge, 1 << 30, 0), // says 1 GiB: not fetched
        artifact(&subject, &huge, 100, 1),     // says 100 bytes, is 8 MiB
        artifact(&Digest::of(b"other"), &honest, honest.len(), 2), // another image's
        artifact(&subject, &honest, honest.len(), 3), // the good one
    ];
    let mut listed: Vec<(String, usize)> = manifests
        .iter()
        .map(|m| (Digest::of(m).as_str().to_owned(), m.len()))
        .collect();
    for m in &manifests {
        content.insert(Digest::of(m).as_str().to_owned(), m.clone());
    }
    listed.insert(0, (Digest::of(b"missing manifest").as_str().to_owned(), 10));
    let registry = Server::start(hostile(index_of(&listed), content)).await;
    let (c, _dir) = client();
    let img = image(&registry.host(), "x/app:v1");
    let got = c
        .fetch_referrers_within(
            &img,
            &subject,
            &[ReferrerKind::Bundle],
            ReferrerLimits::ADMISSION,
        )
        .await
        .expect("fetch");
    assert_eq!(got.fetched.len(), 1, "{got:?}");
    assert_eq!(got.fetched[0].bytes, honest);
    assert_eq!(
        got.fetched[0].annotations.get("n").map(String::as_str),
        Some("3")
    );
    assert_eq!(got.oversized, 2);
    assert_eq!(got.skipped, 2);
    let huge_fetches = registry
        .seen()
        .iter()
        .filter(|s| s.path.ends_with(Digest::of(&huge).as_str()))
        .count();
    assert_eq!(
        huge_fetches, 1,
        "the blob declared as 1 GiB is never asked for"
    );
}

/// Bundles and Notation signatures read in one listing: each referrer must be what its
/// listing says, a Notation signature has exactly one envelope layer, and other artifacts
/// (an SBOM) are neither fetched nor counted.
#[tokio::test]
async fn bundles_and_notation_signatures_are_read_from_one_listing_and_must_be_what_it_says() {
    let subject = Digest::of(b"the image");
    let bundle = br#"{"a":"bundle"}"#.to_vec();
    let jws = br#"{"a":"jws envelope"}"#.to_vec();
    let cose = b"a cose envelope".to_vec();
    let sbom = br#"{"an":"sbom"}"#.to_vec();
    let mut content = BTreeMap::new();
    for blob in [&bundle, &jws, &cose, &sbom] {
        content.insert(Digest::of(blob).as_str().to_owned(), blob.clone());
    }
    let entries = [
        // The good bundle and the good Notation signatures (JWS, COSE).
        (
            typed_artifact(
                &subject,
                BUNDLE_MEDIA_TYPE,
                &[(BUNDLE_MEDIA_TYPE, &bundle, bundle.len())],
                0,
            ),
            BUNDLE_MEDIA_TYPE,
        ),
        (
            typed_artifact(
                &subject,
                NOTARY_SIGNATURE_ARTIFACT_TYPE,
                &[(JWS_MEDIA_TYPE, &jws, jws.len())],
                1,
            ),
            NOTARY_SIGNATURE_ARTIFACT_TYPE,
        ),
        (
            typed_artifact(
                &subject,
                NOTARY_SIGNATURE_ARTIFACT_TYPE,
                &[(COSE_MEDIA_TYPE, &cose, cose.len())],
                2,
            ),
            NOTARY_SIGNATURE_ARTIFACT_TYPE,
        ),
        // Listed as a Notation signature, but the manifest says it is a bundle.
        (
            typed_artifact(
                &subject,
                BUNDLE_MEDIA_TYPE,
                &[(JWS_MEDIA_TYPE, &jws, jws.len())],
                3,
            ),
            NOTARY_SIGNATURE_ARTIFACT_TYPE,
        ),
        // A Notation signature with a second envelope beside the first.
        (
            typed_artifact(
                &subject,
                NOTARY_SIGNATURE_ARTIFACT_TYPE,
                &[
                    (JWS_MEDIA_TYPE, &jws, jws.len()),
                    (COSE_MEDIA_TYPE, &cose, cose.len()),
                ],
                4,
            ),
            NOTARY_SIGNATURE_ARTIFACT_TYPE,
        ),
        // A Notation signature whose layer is not an envelope.
        (
            typed_artifact(
                &subject,
                NOTARY_SIGNATURE_ARTIFACT_TYPE,
                &[("application/octet-stream", &jws, jws.len())],
                5,
            ),
            NOTARY_SIGNATURE_ARTIFACT_TYPE,
        ),
        // Not a signature at all.
        (
            typed_artifact(&subject, SBOM, &[(SBOM, &sbom, sbom.len())], 6),
            SBOM,
        ),
    ];
    let mut listed = Vec::new();
    for (m, t) in &entries {
        let d = Digest::of(m).as_str().to_owned();
        listed.push((d.clone(), m.len(), *t));
        content.insert(d, m.clone());
    }
    let registry = Server::start(hostile(typed_index(&listed), content)).await;
    let (c, _dir) = client();
    let img = image(&registry.host(), "x/app:v1");
    let got = c
        .fetch_referrers_within(
            &img,
            &subject,
            &[ReferrerKind::Bundle, ReferrerKind::Notation],
            ReferrerLimits::ADMISSION,
        )
        .await
        .expect("fetch");
    let read: Vec<(ReferrerKind, &str, &[u8])> = got
        .fetched
        .iter()
        .map(|f| (f.kind, f.media_type.as_str(), f.bytes.as_slice()))
        .collect();
    assert_eq!(
        read,
        vec![
            (ReferrerKind::Bundle, BUNDLE_MEDIA_TYPE, bundle.as_slice()),
            (ReferrerKind::Notation, JWS_MEDIA_TYPE, jws.as_slice()),
            (ReferrerKind::Notation, COSE_MEDIA_TYPE, cose.as_slice()),
        ]
    );
    assert_eq!(
        (got.total, got.skipped, got.oversized),
        (6, 3, 0),
        "{got:?}"
    );
    let seen = registry.seen();
    assert_eq!(
        seen.iter()
            .filter(|s| s.path.contains("/referrers/"))
            .count(),
        1,
        "one listing for both kinds"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.path.ends_with(Digest::of(&entries[6].0).as_str())),
        "the SBOM is not fetched"
    );

    // Asked for Notation signatures only, the bundle is left alone.
    let notation = c
        .fetch_referrers_within(
            &img,
            &subject,
            &[ReferrerKind::Notation],
            ReferrerLimits::ADMISSION,
        )
        .await
        .expect("fetch");
    assert_eq!(notation.of(ReferrerKind::Notation).count(), 2);
    assert_eq!(notation.of(ReferrerKind::Bundle).count(), 0);
}

/// A referrers answer larger than a manifest may be, and pages that link on forever or to
/// another host: refused, bounded, not followed.
#[tokio::test]
async fn oversized_answers_and_endless_pages_are_bounded() {
    let subject = Digest::of(b"the image");
    let big: Vec<(String, usize)> = (0..40_000)
        .map(|i| (format!("sha256:{i:064x}"), 1))
        .collect();
    let registry = Server::start(hostile(index_of(&big), BTreeMap::new())).await;
    let (c, _dir) = client();
    let err = c
        .referrers(&image(&registry.host(), "x/app:v1"), &subject, None)
        .await
        .expect_err("too large");
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than"), "{err}");

    // Every page links to the next one, forever.
    let page = index_of(&[(format!("sha256:{:064x}", 1), 1)]);
    let endless = Server::start(Arc::new(move |_, uri, _| {
        if uri.path() == "/v2/" {
            return respond(200, &[], "{}");
        }
        let n: u64 = uri
            .query()
            .and_then(|q| q.strip_prefix("page="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        respond(
            200,
            &[
                ("content-type", OCI_INDEX.into()),
                (
                    "link",
                    format!("<{}?page={}>; rel=\"next\"", uri.path(), n + 1),
                ),
            ],
            page.clone(),
        )
    }))
    .await;
    let listed = c
        .referrers(&image(&endless.host(), "x/app:v1"), &subject, None)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    let pages = endless
        .seen()
        .iter()
        .filter(|s| s.path.contains("/referrers/"))
        .count();
    assert!(pages <= 8, "{pages} pages read");

    // A page that links to another host (the internal service): not followed.
    let internal = Server::start(Arc::new(|_, _, _| respond(200, &[], "{}"))).await;
    let target = format!("http://{}/v2/x/app/referrers/{subject}", internal.host());
    let page = index_of(&[(format!("sha256:{:064x}", 2), 1)]);
    let elsewhere = Server::start(Arc::new(move |_, uri, _| {
        if uri.path() == "/v2/" {
            return respond(200, &[], "{}");
        }
        respond(
            200,
            &[
                ("content-type", OCI_INDEX.into()),
                ("link", format!("<{target}>; rel=\"next\"")),
            ],
            page.clone(),
        )
    }))
    .await;
    let listed = c
        .referrers(&image(&elsewhere.host(), "x/app:v1"), &subject, None)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert!(internal.seen().is_empty(), "{:?}", internal.seen());
}

/// A registry that ignores `artifactType` (no `OCI-Filters-Applied`): signet filters.
#[tokio::test]
async fn an_unapplied_filter_is_applied_by_signet() {
    let subject = Digest::of(b"the image");
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": format!("sha256:{:064x}", 1), "size": 1, "artifactType": BUNDLE_MEDIA_TYPE},
        {"mediaType": OCI_MANIFEST, "digest": format!("sha256:{:064x}", 2), "size": 1, "artifactType": "application/vnd.cncf.notary.signature"},
        {"mediaType": OCI_MANIFEST, "digest": format!("sha256:{:064x}", 3), "size": 1},
    ]}))
    .expect("json");
    for applied in [false, true] {
        let index = index.clone();
        let registry = Server::start(Arc::new(move |_, uri, _| {
            if uri.path() == "/v2/" {
                return respond(200, &[], "{}");
            }
            let mut headers = vec![("content-type", OCI_INDEX.to_owned())];
            if applied {
                headers.push(("oci-filters-applied", "artifactType".to_owned()));
            }
            respond(200, &headers, index.clone())
        }))
        .await;
        let (c, _dir) = client();
        let listed = c
            .referrers(
                &image(&registry.host(), "x/app:v1"),
                &subject,
                Some(BUNDLE_MEDIA_TYPE),
            )
            .await
            .expect("list");
        // A registry that says it filtered is believed (the bundle reader checks each
        // manifest's type anyway); one that did not say so is filtered here.
        assert_eq!(
            listed.len(),
            if applied { 3 } else { 1 },
            "applied: {applied}"
        );
        let query = registry
            .seen()
            .iter()
            .any(|s| s.path.contains("/referrers/"));
        assert!(query);
    }
}
