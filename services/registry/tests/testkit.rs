//! Checks the testkit's registry and image helpers against the real `docker-registry` and
//! skopeo, since every other crate's integration tests build on them.

use std::time::Instant;

use signet_testkit::image::{skopeo_copy, TestImage, OCI_INDEX, OCI_MANIFEST};
use signet_testkit::registry::TestRegistry;

async fn get_manifest(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
) -> reqwest::Response {
    http.get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .expect("docker-registry answers")
}

#[tokio::test]
async fn push_resolves_to_the_precomputed_digest() {
    let registry = TestRegistry::start().await.expect("start docker-registry");
    let img = TestImage::random();
    let digest = img
        .push(&registry.host(), "kit/app", "v1")
        .await
        .expect("push");
    assert_eq!(digest, img.digest());
    let resp = get_manifest(&reqwest::Client::new(), &registry.url(), "kit/app", "v1").await;
    assert_eq!(resp.status(), 200);
    let header = resp.headers()["docker-content-digest"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(header, digest.as_str());
    assert_eq!(resp.bytes().await.expect("body").as_ref(), img.manifest());
}

#[tokio::test]
async fn index_push_returns_index_and_platform_digests() {
    let registry = TestRegistry::start().await.expect("start docker-registry");
    let pushed = TestImage::push_index(&registry.host(), "kit/multi", "v1")
        .await
        .expect("push index");
    assert_eq!(pushed.platforms.len(), 2);
    assert_eq!(pushed.platforms[0].architecture, "amd64");
    assert_eq!(pushed.platforms[1].architecture, "arm64");
    let http = reqwest::Client::new();
    let resp = get_manifest(&http, &registry.url(), "kit/multi", "v1").await;
    assert_eq!(resp.headers()["content-type"], OCI_INDEX);
    assert_eq!(
        resp.headers()["docker-content-digest"],
        pushed.index.as_str()
    );
    for p in &pushed.platforms {
        let resp = get_manifest(&http, &registry.url(), "kit/multi", p.digest.as_str()).await;
        assert_eq!(resp.status(), 200, "{}", p.digest);
    }
}

#[tokio::test]
async fn skopeo_copies_an_oci_layout_unchanged() {
    let registry = TestRegistry::start().await.expect("start docker-registry");
    let img = TestImage::random();
    let dir = tempfile::tempdir().expect("tempdir");
    img.write_oci_layout(dir.path(), "v2").expect("layout");
    let digest = skopeo_copy(dir.path(), &registry.host(), "kit/skopeo", "v2")
        .await
        .expect("skopeo copy");
    assert_eq!(digest, img.digest(), "skopeo must not rewrite the image");
    let resp = get_manifest(&reqwest::Client::new(), &registry.url(), "kit/skopeo", "v2").await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn stop_and_restart_keep_port_and_storage() {
    let mut registry = TestRegistry::start().await.expect("start docker-registry");
    let img = TestImage::random();
    img.push(&registry.host(), "kit/restart", "v1")
        .await
        .expect("push");
    let host = registry.host();
    registry.stop().expect("stop");
    let http = reqwest::Client::new();
    assert!(
        http.get(format!("{}/v2/", registry.url()))
            .send()
            .await
            .is_err(),
        "stopped registry must not answer"
    );
    registry.restart().await.expect("restart");
    assert_eq!(registry.host(), host);
    let resp = get_manifest(&http, &registry.url(), "kit/restart", "v1").await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn basic_auth_registry_accepts_only_its_users() {
    let registry = TestRegistry::builder()
        .basic_auth("alice", "wonderland")
        .start()
        .await
        .expect("start docker-registry with htpasswd");
    let img = TestImage::random();
    assert!(
        img.push(&registry.host(), "kit/auth", "v1").await.is_err(),
        "anonymous push must fail"
    );
    let digest = img
        .push_with_auth(&registry.host(), "kit/auth", "v1", "alice", "wonderland")
        .await
        .expect("authenticated push");
    assert_eq!(digest, img.digest());
}

#[tokio::test]
async fn pushes_are_fast_enough_for_load_tests() {
    let registry = TestRegistry::start().await.expect("start docker-registry");
    let started = Instant::now();
    for i in 0..20 {
        TestImage::random()
            .push(&registry.host(), "kit/many", &format!("t{i}"))
            .await
            .expect("push");
    }
    // Reported, not asserted: timing never decides whether a test passes.
    eprintln!("20 pushes took {:?}", started.elapsed());
}
