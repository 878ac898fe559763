//! RegistryClient against a real `docker-registry` (testkit), with skopeo and openssl as
//! independent readers of what it publishes. Each test starts its own registry.

use std::path::Path;
use std::sync::Arc;

use signet_core::{Digest, ImageRef, PublicKey, SignatureAlgorithm, SimpleSigning};
use signet_registry::{
    PublishOutcome, RegistryClient, RegistryConfig, RegistryCredential, RegistryError,
    SignatureLayer, SIGNATURE_ANNOTATION, SIMPLESIGNING_MEDIA_TYPE,
};
use signet_testkit::image::{TestImage, OCI_INDEX, OCI_MANIFEST};
use signet_testkit::registry::TestRegistry;
use tempfile::TempDir;

/// A client that ignores the machine's own docker config, so tests see only what they set.
struct Setup {
    client: RegistryClient,
    _dir: TempDir,
}

fn client_with(mut config: RegistryConfig) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    if config.docker_config.is_none() {
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{}").expect("write empty docker config");
        config.docker_config = Some(path);
    }
    Setup {
        client: RegistryClient::new(config).expect("client"),
        _dir: dir,
    }
}

fn client() -> Setup {
    client_with(RegistryConfig::for_loopback())
}

fn image(registry: &TestRegistry, repo_and_tag: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{repo_and_tag}", registry.host())).expect("image ref")
}

fn layer(image: &ImageRef, digest: &Digest, signature: &[u8]) -> SignatureLayer {
    let payload = SimpleSigning::new(image.repository_ref(), digest.clone()).to_bytes();
    SignatureLayer::new(payload, signature.to_vec())
}

async fn start() -> TestRegistry {
    TestRegistry::start().await.expect("start docker-registry")
}

async fn get_json(url: &str, accept: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .get(url)
        .header("Accept", accept)
        .send()
        .await
        .expect("docker-registry answers");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn resolves_tags_and_digests() {
    let registry = start().await;
    let s = client();
    let img = TestImage::random();
    let pushed = img
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let tagged = image(&registry, "demo/app:v1");
    assert_eq!(
        s.client.resolve(&tagged).await.expect("resolve tag"),
        pushed
    );
    let pinned = tagged.with_digest(pushed.clone());
    assert_eq!(
        s.client.resolve(&pinned).await.expect("resolve digest"),
        pushed
    );

    let unknown = Digest::of(b"not pushed");
    let err = s
        .client
        .resolve(&image(&registry, &format!("demo/app@{unknown}")))
        .await
        .expect_err("unknown digest");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn unknown_tag_and_repository_are_not_found() {
    let registry = start().await;
    let s = client();
    TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    for reference in ["demo/app:nope", "demo/never-pushed:v1"] {
        let err = s
            .client
            .resolve(&image(&registry, reference))
            .await
            .expect_err("must fail");
        assert!(
            matches!(err, RegistryError::NotFound { .. }),
            "{reference}: {err:?}"
        );
        assert!(!err.retryable());
        let msg = err.to_string();
        assert!(
            msg.contains(&registry.host()) && msg.contains("demo/"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn manifest_tells_indexes_from_images() {
    let registry = start().await;
    let s = client();
    let img = TestImage::random();
    img.push(&registry.host(), "demo/single", "v1")
        .await
        .expect("push");
    let m = s
        .client
        .manifest(&image(&registry, "demo/single:v1"))
        .await
        .expect("manifest");
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.bytes, img.manifest());
    assert_eq!(m.digest, img.digest());
    assert!(!m.is_index() && m.platform_digests().is_empty());

    let pushed = TestImage::push_index(&registry.host(), "demo/multi", "v1")
        .await
        .expect("push index");
    let multi = image(&registry, "demo/multi:v1");
    let m = s.client.manifest(&multi).await.expect("index manifest");
    assert_eq!(m.media_type, OCI_INDEX);
    assert!(m.is_index());
    assert_eq!(m.digest, pushed.index);
    let want: Vec<Digest> = pushed.platforms.iter().map(|p| p.digest.clone()).collect();
    assert_eq!(m.platform_digests(), want.as_slice());
    assert_eq!(
        s.client.platform_digests(&multi).await.expect("platforms"),
        want
    );
    assert_eq!(
        s.client.resolve(&multi).await.expect("resolve index"),
        pushed.index
    );
}

#[tokio::test]
async fn publish_then_fetch_round_trips() {
    let registry = start().await;
    let s = client();
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");
    assert!(s
        .client
        .fetch_signatures(&repo, &digest)
        .await
        .expect("fetch before")
        .is_empty());

    let mut sig = layer(&repo, &digest, &[7u8; 256]);
    sig.annotations
        .insert("dev.signet/witness".into(), "release".into());
    let published = s
        .client
        .publish_signature(&repo, &digest, &sig)
        .await
        .expect("publish");
    assert_eq!(published.outcome, PublishOutcome::Appended);
    assert_eq!(
        published.artifact,
        format!("{}/demo/app:sha256-{}.sig", registry.host(), digest.hex())
    );
    let fetched = s
        .client
        .fetch_signatures(&repo, &digest)
        .await
        .expect("fetch");
    assert_eq!(fetched, vec![sig]);
    let sig_tag = repo.with_tag(&digest.signature_tag());
    assert_eq!(
        s.client.resolve(&sig_tag).await.expect("resolve .sig"),
        published.manifest_digest
    );
}

#[tokio::test]
async fn signature_manifest_is_cosign_shaped_and_complete() {
    let registry = start().await;
    let s = client();
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");
    for sig in [b"first".as_slice(), b"second".as_slice()] {
        s.client
            .publish_signature(&repo, &digest, &layer(&repo, &digest, sig))
            .await
            .expect("publish");
    }
    let base = format!("{}/v2/demo/app", registry.url());
    let (status, manifest) = get_json(
        &format!("{base}/manifests/{}", digest.signature_tag()),
        OCI_MANIFEST,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2);
    let (status, config) = get_json(
        &format!(
            "{base}/blobs/{}",
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest")
        ),
        "*/*",
    )
    .await;
    assert_eq!(status, 200, "config blob exists");
    let diff_ids: Vec<&serde_json::Value> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .collect();
    let layer_digests: Vec<&serde_json::Value> = layers.iter().map(|l| &l["digest"]).collect();
    assert_eq!(diff_ids, layer_digests);
    for (l, sig) in layers
        .iter()
        .zip([b"first".as_slice(), b"second".as_slice()])
    {
        assert_eq!(l["mediaType"], SIMPLESIGNING_MEDIA_TYPE);
        assert_eq!(
            l["annotations"][SIGNATURE_ANNOTATION],
            layer(&repo, &digest, sig).signature_base64()
        );
        let resp = reqwest::Client::new()
            .head(format!(
                "{base}/blobs/{}",
                l["digest"].as_str().expect("digest")
            ))
            .send()
            .await
            .expect("head blob");
        assert_eq!(resp.status(), 200, "layer blob exists");
    }
}

#[tokio::test]
async fn identical_publish_is_already_present_and_different_one_appends() {
    let registry = start().await;
    let s = client();
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");
    let sig = layer(&repo, &digest, b"sig-one");
    let first = s
        .client
        .publish_signature(&repo, &digest, &sig)
        .await
        .expect("publish");
    let again = s
        .client
        .publish_signature(&repo, &digest, &sig)
        .await
        .expect("publish again");
    assert_eq!(again.outcome, PublishOutcome::AlreadyPresent);
    assert_eq!(again.manifest_digest, first.manifest_digest);
    assert_eq!(
        s.client
            .fetch_signatures(&repo, &digest)
            .await
            .expect("fetch")
            .len(),
        1
    );

    let other = layer(&repo, &digest, b"sig-two");
    let second = s
        .client
        .publish_signature(&repo, &digest, &other)
        .await
        .expect("publish other");
    assert_eq!(second.outcome, PublishOutcome::Appended);
    assert_ne!(second.manifest_digest, first.manifest_digest);
    let fetched = s
        .client
        .fetch_signatures(&repo, &digest)
        .await
        .expect("fetch");
    assert_eq!(
        fetched,
        vec![sig, other],
        "existing layer kept first, new one appended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_on_one_digest_keep_every_layer() {
    let registry = start().await;
    let s = client();
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");
    let client = Arc::new(s.client.clone());
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let (client, repo, digest) = (client.clone(), repo.clone(), digest.clone());
        tasks.push(tokio::spawn(async move {
            let sig = layer(&repo, &digest, &[i; 64]);
            client.publish_signature(&repo, &digest, &sig).await
        }));
    }
    for t in tasks {
        let p = t.await.expect("task").expect("publish");
        assert_eq!(p.outcome, PublishOutcome::Appended);
    }
    let fetched = s
        .client
        .fetch_signatures(&repo, &digest)
        .await
        .expect("fetch");
    assert_eq!(fetched.len(), 16);
    let mut sigs: Vec<u8> = fetched.iter().map(|l| l.signature[0]).collect();
    sigs.sort_unstable();
    assert_eq!(sigs, (0..16u8).collect::<Vec<_>>());
}

#[tokio::test]
async fn basic_auth_with_right_and_wrong_credentials() {
    let registry = TestRegistry::builder()
        .basic_auth("signer", "correct horse")
        .start()
        .await
        .expect("start docker-registry with htpasswd");
    let digest = TestImage::random()
        .push_with_auth(
            &registry.host(),
            "secure/app",
            "v1",
            "signer",
            "correct horse",
        )
        .await
        .expect("push");
    let repo = image(&registry, "secure/app:v1");

    let good = client_with(RegistryConfig {
        credentials: vec![RegistryCredential::basic(
            registry.host(),
            "signer",
            "correct horse",
        )],
        ..RegistryConfig::for_loopback()
    });
    assert_eq!(good.client.resolve(&repo).await.expect("resolve"), digest);
    let sig = layer(&repo, &digest, b"authed");
    good.client
        .publish_signature(&repo, &digest, &sig)
        .await
        .expect("publish");
    assert_eq!(
        good.client
            .fetch_signatures(&repo, &digest)
            .await
            .expect("fetch"),
        vec![sig]
    );

    let bad = client_with(RegistryConfig {
        credentials: vec![RegistryCredential::basic(
            registry.host(),
            "signer",
            "wrong",
        )],
        ..RegistryConfig::for_loopback()
    });
    let err = bad.client.resolve(&repo).await.expect_err("wrong password");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!err.retryable());
    let msg = err.to_string();
    assert!(
        msg.contains(&registry.host()) && msg.contains("secure/app") && msg.contains("rejected"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong"),
        "the secret must not leak into messages: {msg}"
    );
    assert!(
        !format!("{:?}", bad.client).contains("wrong"),
        "nor into Debug"
    );

    let anonymous = client();
    let err = anonymous
        .client
        .fetch_signatures(&repo, &digest)
        .await
        .expect_err("no credentials");
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no credentials are configured"),
        "{err}"
    );
}

#[tokio::test]
async fn docker_config_credentials_are_used() {
    use base64::Engine as _;
    let registry = TestRegistry::builder()
        .basic_auth("ci", "from-docker-config")
        .start()
        .await
        .expect("start docker-registry with htpasswd");
    let digest = TestImage::random()
        .push_with_auth(
            &registry.host(),
            "secure/app",
            "v1",
            "ci",
            "from-docker-config",
        )
        .await
        .expect("push");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:from-docker-config");
    std::fs::write(
        &path,
        serde_json::json!({"auths": {registry.host(): {"auth": auth}}}).to_string(),
    )
    .expect("write docker config");
    let s = client_with(RegistryConfig {
        docker_config: Some(path),
        ..RegistryConfig::for_loopback()
    });
    assert_eq!(
        s.client
            .resolve(&image(&registry, "secure/app:v1"))
            .await
            .expect("resolve"),
        digest
    );
}

#[tokio::test]
async fn stopped_registry_is_unreachable_and_retryable_then_recovers() {
    let mut registry = start().await;
    let s = client();
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");
    s.client.resolve(&repo).await.expect("resolve while up");

    registry.stop().expect("stop");
    let err = s
        .client
        .fetch_signatures(&repo, &digest)
        .await
        .expect_err("registry is down");
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    assert!(err.retryable());
    assert!(err.to_string().contains(&registry.host()), "{err}");
    // A client that never reached the registry fails the same way at its first probe.
    let fresh = client();
    let err = fresh
        .client
        .resolve(&repo)
        .await
        .expect_err("registry is down");
    assert!(
        matches!(err, RegistryError::Unreachable { .. }) && err.retryable(),
        "{err:?}"
    );

    registry.restart().await.expect("restart");
    assert_eq!(
        s.client
            .resolve(&repo)
            .await
            .expect("resolve after restart"),
        digest
    );
    assert_eq!(
        fresh
            .client
            .resolve(&repo)
            .await
            .expect("fresh client recovers"),
        digest
    );
}

#[tokio::test]
async fn skopeo_copies_the_signature_attachment() {
    let registry = start().await;
    let s = client();
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");
    let sig = layer(&repo, &digest, b"copied-by-skopeo");
    s.client
        .publish_signature(&repo, &digest, &sig)
        .await
        .expect("publish");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("signet-test.yaml"),
        format!(
            "docker:\n  {}:\n    use-sigstore-attachments: true\n",
            registry.host()
        ),
    )
    .expect("write registries.d");
    let out = tokio::process::Command::new("skopeo")
        .arg("--registries.d")
        .arg(dir.path())
        .arg("--insecure-policy")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}/demo/app:v1", registry.host()))
        .arg(format!("docker://{}/demo/other:v1", registry.host()))
        .output()
        .await
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let other = image(&registry, "demo/other:v1");
    assert_eq!(
        s.client.resolve(&other).await.expect("copied image"),
        digest
    );
    let copied = s
        .client
        .fetch_signatures(&other, &digest)
        .await
        .expect("fetch copied");
    assert_eq!(copied.len(), 1, "skopeo copied the .sig attachment");
    assert_eq!(copied[0].payload, sig.payload);
    assert_eq!(copied[0].signature, sig.signature);
}

fn openssl(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn published_signature_verifies_with_openssl() {
    let registry = start().await;
    let s = client();
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");

    let keys = tempfile::tempdir().expect("tempdir");
    let dir = keys.path();
    openssl(&["genrsa", "-out", "key.pem", "2048"], dir);
    openssl(
        &["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        dir,
    );
    let payload = SimpleSigning::new(repo.repository_ref(), digest.clone()).to_bytes();
    std::fs::write(dir.join("payload.json"), &payload).expect("write payload");
    openssl(
        &[
            "dgst",
            "-sha256",
            "-sign",
            "key.pem",
            "-out",
            "sig.bin",
            "payload.json",
        ],
        dir,
    );
    let signature = std::fs::read(dir.join("sig.bin")).expect("read signature");
    s.client
        .publish_signature(&repo, &digest, &SignatureLayer::new(payload, signature))
        .await
        .expect("publish");

    let fetched = s
        .client
        .fetch_signatures(&repo, &digest)
        .await
        .expect("fetch");
    assert_eq!(fetched.len(), 1);
    std::fs::write(dir.join("fetched-payload.json"), &fetched[0].payload).expect("write");
    std::fs::write(dir.join("fetched-sig.bin"), &fetched[0].signature).expect("write");
    openssl(
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "fetched-sig.bin",
            "fetched-payload.json",
        ],
        dir,
    );
    // And signet's own verifier agrees, on a payload that parses strictly.
    let key =
        PublicKey::parse(&std::fs::read(dir.join("pub.pem")).expect("read key")).expect("key");
    key.verify(
        SignatureAlgorithm::RsaPkcs1Sha256,
        &fetched[0].payload,
        &fetched[0].signature,
    )
    .expect("signet-core verifies");
    let parsed = SimpleSigning::parse_strict(&fetched[0].payload).expect("strict payload");
    assert_eq!(parsed.manifest_digest, digest);
}

/// Requests this test's clients made, as counted by the registry's access log. A sentinel
/// request marks the end, since the registry logs a request just after answering it.
async fn requests_so_far(registry: &TestRegistry, marker: &str) -> Vec<String> {
    let sentinel = format!("/v2/sentinel/{marker}/tags/list");
    let _ = reqwest::Client::new()
        .get(format!("{}{sentinel}", registry.url()))
        .send()
        .await
        .expect("sentinel request");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = registry.log();
        if log.contains(&sentinel) {
            // Access log lines: `addr - - [time] "METHOD /path HTTP/1.1" status size "" "agent"`.
            return log
                .lines()
                .filter(|l| l.contains("signet-registry/"))
                .filter_map(|l| l.split('"').nth(1))
                .filter(|req| req.ends_with(" HTTP/1.1"))
                .map(str::to_owned)
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "registry never logged the sentinel request"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn reads_from_an_open_registry_cost_one_request_each() {
    let registry = TestRegistry::builder()
        .access_log()
        .start()
        .await
        .expect("start docker-registry");
    let digest = TestImage::random()
        .push(&registry.host(), "demo/app", "v1")
        .await
        .expect("push");
    let repo = image(&registry, "demo/app:v1");
    let writer = client();
    for sig in [b"a".as_slice(), b"b".as_slice()] {
        writer
            .client
            .publish_signature(&repo, &digest, &layer(&repo, &digest, sig))
            .await
            .expect("publish");
    }
    let before = requests_so_far(&registry, "before").await.len();

    let reader = client();
    assert_eq!(
        reader
            .client
            .fetch_signatures(&repo, &digest)
            .await
            .expect("fetch")
            .len(),
        2
    );
    let unsigned = Digest::of(b"never signed");
    assert!(reader
        .client
        .fetch_signatures(&repo, &unsigned)
        .await
        .expect("fetch")
        .is_empty());
    reader.client.resolve(&repo).await.expect("resolve");
    let seen = requests_so_far(&registry, "after").await;
    let made = &seen[before..];
    let methods: Vec<&str> = made
        .iter()
        .map(|r| r.split(' ').next().unwrap_or_default())
        .collect();
    // One /v2/ probe, the .sig manifest, the payload blob both signatures share (fetched
    // once), one 404 for the unsigned digest, one HEAD to resolve.
    assert_eq!(methods, ["GET", "GET", "GET", "GET", "HEAD"], "{made:#?}");
    assert!(made[0].starts_with("GET /v2/ "), "{made:#?}");
}

#[tokio::test]
async fn authenticated_reads_reuse_credentials_without_reprobing() {
    let registry = TestRegistry::builder()
        .basic_auth("reader", "pw")
        .access_log()
        .start()
        .await
        .expect("start docker-registry with htpasswd");
    let digest = TestImage::random()
        .push_with_auth(&registry.host(), "secure/app", "v1", "reader", "pw")
        .await
        .expect("push");
    let repo = image(&registry, "secure/app:v1");
    let s = client_with(RegistryConfig {
        credentials: vec![RegistryCredential::basic(registry.host(), "reader", "pw")],
        ..RegistryConfig::for_loopback()
    });
    s.client
        .publish_signature(&repo, &digest, &layer(&repo, &digest, b"x"))
        .await
        .expect("publish");
    s.client
        .fetch_signatures(&repo, &digest)
        .await
        .expect("fetch");
    let first = requests_so_far(&registry, "first").await;
    for _ in 0..3 {
        s.client
            .fetch_signatures(&repo, &digest)
            .await
            .expect("fetch again");
    }
    let later = requests_so_far(&registry, "later").await;
    let added = &later[first.len()..];
    assert_eq!(
        added.len(),
        6,
        "one manifest and one blob per fetch: {added:#?}"
    );
    assert!(
        added.iter().all(|r| !r.starts_with("GET /v2/ ")),
        "{added:#?}"
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    // The kernel completes TCP handshakes for a listener that nobody accepts from, so the
    // request is sent and then no answer ever comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = silent.local_addr().expect("addr").to_string();
    let timeout = std::time::Duration::from_millis(300);
    let s = client_with(RegistryConfig {
        timeout,
        ..RegistryConfig::for_loopback()
    });
    let repo = ImageRef::parse(&format!("{host}/demo/app:v1")).expect("ref");
    let err = s.client.resolve(&repo).await.expect_err("no answer");
    assert!(matches!(err, RegistryError::Timeout { .. }), "{err:?}");
    assert!(err.retryable());
    assert!(err.to_string().contains(&host), "{err}");
}

#[tokio::test]
async fn server_errors_are_retryable_and_say_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = r#"{"errors":[{"code":"UNKNOWN","message":"storage backend down"}]}"#;
                let resp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    let s = client();
    let repo = ImageRef::parse(&format!("{host}/demo/app:v1")).expect("ref");
    let err = s
        .client
        .fetch_signatures(&repo, &Digest::of(b"x"))
        .await
        .expect_err("503");
    assert!(
        matches!(err, RegistryError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.retryable());
    let msg = err.to_string();
    assert!(
        msg.contains(&host) && msg.contains("demo/app") && msg.contains("retried"),
        "{msg}"
    );
    server.abort();
}
