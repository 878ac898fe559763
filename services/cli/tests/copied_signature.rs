//! A signature copied to another repository, as `cosign copy` does it: the image and its
//! `.sig` artifact move, the signed payload still names the original repository.
//! Admission and `signet verify` apply one `docker-reference` rule
//! (`signet_core::ReferenceRule`): by default the repository is not required, and
//! `signet verify --require-repository` asks for it. Before, `signet verify` refused
//! what admission admitted.

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use signet_core::Digest;
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

use common::{bin, blob, fails, ok, review, sig_manifest};

const DEADLINE: Duration = Duration::from_secs(30);

/// Uploads `bytes` as a blob of `repo` (distribution API, monolithic PUT).
async fn upload(http: &reqwest::Client, registry: &TestRegistry, repo: &str, bytes: Vec<u8>) {
    let digest = Digest::of(&bytes);
    let started = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", registry.url()))
        .send()
        .await
        .expect("start a blob upload");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("upload location")
        .to_owned();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{}{location}", registry.url())
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let done = http
        .put(format!("{url}{sep}digest={digest}"))
        .body(bytes)
        .send()
        .await
        .expect("finish the blob upload");
    assert_eq!(done.status(), StatusCode::CREATED);
}

/// What `cosign copy` does to the signature: the `.sig` manifest and its blobs, payloads
/// unchanged, under the other repository.
async fn copy_signature(registry: &TestRegistry, from: &str, to: &str, digest: &Digest) {
    let http = reqwest::Client::new();
    let manifest = sig_manifest(registry, from, digest).await;
    let blobs = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain([&manifest["config"]])
        .filter_map(|d| d["digest"].as_str());
    for d in blobs {
        upload(&http, registry, to, blob(registry, from, d).await).await;
    }
    let resp = http
        .put(format!(
            "{}/v2/{to}/manifests/{}",
            registry.url(),
            digest.signature_tag()
        ))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&manifest).expect("manifest JSON"))
        .send()
        .await
        .expect("put the copied .sig");
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_and_signet_verify_agree_on_a_copied_signature() {
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let image = TestImage::random();
    let digest = image.push(&host, "team/app", "v1").await.expect("push");
    image
        .push(&host, "mirror/app", "v1")
        .await
        .expect("push the copy");
    TestImage::random()
        .push(&host, "team/unsigned", "v1")
        .await
        .expect("push");
    let up = SignetUp::start(bin(), &[("SIGNET_VERIFIER__CLUSTER", "c1")])
        .await
        .expect("signet up");
    let cli = |args: &[&str]| up.cli(args).expect("run signet");
    ok(
        &cli(&[
            "witness",
            "create",
            "--name",
            "release",
            "--kms-key",
            "local://release",
        ]),
        "witness create",
    );
    let original = format!("{host}/team/app:v1");
    ok(
        &cli(&["sign", &original, "--witness", "release", "--wait"]),
        "sign",
    );
    copy_signature(&registry, "team/app", "mirror/app", &digest).await;
    let copied = format!("{host}/mirror/app@{digest}");

    // signet verify, by default, accepts the copy as admission does...
    ok(
        &cli(&["verify", &copied, "--witness", "release"]),
        "verify the copied signature",
    );
    // ...and binds the repository only when asked.
    let m = fails(
        &cli(&[
            "verify",
            &copied,
            "--witness",
            "release",
            "--require-repository",
        ]),
        "verify --require-repository",
    );
    assert!(
        m.contains(&format!(
            "payload names repository {host}/team/app, not {host}/mirror/app"
        )),
        "{m}"
    );

    // Admission under an enforcing policy admits the copy.
    ok(
        &cli(&[
            "policy",
            "create",
            "prod-images",
            "--witness",
            "release",
            "--cluster",
            "c1",
            "--namespace",
            "prod",
            "--mode",
            "enforce",
        ]),
        "policy create",
    );
    ok(&cli(&["policy", "enable", "prod-images"]), "policy enable");
    let unsigned = format!("{host}/team/unsigned:v1");
    let started = Instant::now();
    while review(&up, "prod", &unsigned).await["allowed"] != false {
        assert!(started.elapsed() < DEADLINE, "the policy was not enforced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = review(&up, "prod", &copied).await;
    assert_eq!(r["allowed"], true, "{r}");
}
