//! The README walkthrough, end to end over the wire: a real `signet up`, a real
//! docker-registry, the real CLI. The signature must then be accepted by verifiers
//! signet did not write: OpenSSL over the artifact's payload, and the `sigstore` crate's
//! cosign verification.

mod common;

use common::{
    bin, cosign_verifies, create_local_witness, export_key, fails, ok, openssl_verifies,
    sig_manifest, sigstore_verifies,
};
use signet_core::{Digest, ImageRef};
use signet_registry::{RegistryClient, RegistryConfig, SignatureLayer};
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_and_independent_verifiers() {
    let Demo {
        registry,
        pushed,
        image,
        up,
        tmp,
    } = Demo::start().await;
    let host = registry.host();

    // The admin token file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(up.data_dir().join("admin.token"))
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin token mode");
        assert!(
            !up.log().contains(&up.admin_token().expect("token")),
            "the token must never be logged"
        );
    }

    ok(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "prod",
            "--kms-key",
            "local://prod",
            "--description",
            "release key",
        ])
        .expect("cli"),
        "witness create",
    );
    let (pem, key) = export_key(&up, "prod", tmp.path());
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");

    let out = ok(
        &up.cli(&["sign", &image, "--witness", "prod", "--wait"])
            .expect("cli"),
        "sign --wait",
    );
    assert!(
        out.contains(pushed.as_str()),
        "sign output names the digest: {out}"
    );
    ok(
        &up.cli(&["verify", &image, "--witness", "prod"])
            .expect("cli"),
        "verify --witness",
    );
    ok(
        &up.cli(&["verify", &image, "--key", key.to_str().expect("utf8")])
            .expect("cli"),
        "verify --key",
    );

    // Independent verifiers.
    assert_eq!(
        openssl_verifies(&registry, "demo/app", &pushed, &key).await,
        1,
        "openssl verifies the one layer"
    );
    assert_eq!(
        sigstore_verifies(&image, pem.as_bytes()).await,
        Ok(1),
        "sigstore-rs cosign verification"
    );
    assert_eq!(
        cosign_verifies(&image, pem.as_bytes()),
        Ok(1),
        "the real cosign verify --key"
    );
    // The README's cosign command, as written there (only the registry's address is
    // this test's), run in the folder holding prod.pub.
    let readme = include_str!("../../../README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("cosign verify "))
        .expect("the README shows a cosign verify command");
    let args: Vec<String> = line
        .replace("127.0.0.1:5000", &host)
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let out = common::cosign(tmp.path())
        .args(&args)
        .current_dir(tmp.path())
        .output()
        .expect("run cosign");
    assert!(
        out.status.success(),
        "the README's `{line}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = sig_manifest(&registry, "demo/app", &pushed).await;
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );

    // Signing again adds no layer, under the same tag or a new one for the same digest.
    ok(
        &up.cli(&["sign", &image, "--witness", "prod", "--wait"])
            .expect("cli"),
        "sign again",
    );
    TestImage::random()
        .push(&host, "demo/other", "x")
        .await
        .expect("push");
    let by_digest = format!("{host}/demo/app@{pushed}");
    ok(
        &up.cli(&["sign", &by_digest, "--witness", "prod", "--wait"])
            .expect("cli"),
        "sign by digest",
    );
    assert_eq!(
        sig_manifest(&registry, "demo/app", &pushed).await["layers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // A second witness adds a second layer, and both verify independently.
    create_local_witness(&up, "qa");
    let (_, qa_key) = export_key(&up, "qa", tmp.path());
    ok(
        &up.cli(&["sign", &image, "--witness", "qa", "--wait"])
            .expect("cli"),
        "sign qa",
    );
    assert_eq!(
        sig_manifest(&registry, "demo/app", &pushed).await["layers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        openssl_verifies(&registry, "demo/app", &pushed, &qa_key).await,
        1
    );
    assert_eq!(
        openssl_verifies(&registry, "demo/app", &pushed, &key).await,
        1
    );

    // JSON output for scripts.
    let json = ok(
        &up.cli(&["--output", "json", "jobs", "list"]).expect("cli"),
        "jobs list",
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("json output");
    assert!(v["jobs"].as_array().is_some_and(|j| j.len() >= 4), "{v}");
    // Every signature is audited.
    let audit = ok(
        &up.cli(&["--output", "json", "audit", "--action", "signature.publish"])
            .expect("cli"),
        "audit",
    );
    let v: serde_json::Value = serde_json::from_str(&audit).expect("json");
    assert_eq!(
        v["entries"].as_array().map(Vec::len),
        Some(2),
        "two signatures made: {v}"
    );

    // The admin port shows the work of every service in the process.
    let admin = up.admin().expect("admin URL");
    let ready = reqwest::get(format!("{admin}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    for series in [
        r#"signet_jobs_total{outcome="succeeded",reason="none"} 2"#,
        r#"signet_kms_calls_total{provider="local",outcome="ok"} 2"#,
        r#"signet_registry_requests_total{operation="publish",outcome="ok"} 2"#,
        "signet_sign_latency_seconds_count 2",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_tampering_and_bad_input_get_precise_errors() {
    let mut registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let digest = TestImage::random()
        .push(&host, "neg/app", "v1")
        .await
        .expect("push");
    let image = format!("{host}/neg/app:v1");
    let up = SignetUp::start(
        bin(),
        &[
            ("SIGNET_SIGNER__MAX_ATTEMPTS", "2"),
            ("SIGNET_SIGNER__RETRY_BASE", "50ms"),
            ("SIGNET_SIGNER__RETRY_MAX", "100ms"),
            ("SIGNET_REGISTRY__TIMEOUT", "2s"),
        ],
    )
    .await
    .expect("signet up");
    let tmp = tempfile::tempdir().expect("tempdir");
    create_local_witness(&up, "prod");
    create_local_witness(&up, "other");
    let (_, other_key) = export_key(&up, "other", tmp.path());

    // Unknown witness, malformed references, unknown image.
    let msg = fails(
        &up.cli(&["sign", &image, "--witness", "nobody"])
            .expect("cli"),
        "unknown witness",
    );
    assert!(msg.contains("witness \"nobody\" does not exist"), "{msg}");
    let msg = fails(
        &up.cli(&["sign", "Bad/Repo:x", "--witness", "prod"])
            .expect("cli"),
        "bad reference",
    );
    assert!(msg.contains("must be lowercase"), "{msg}");
    let msg = fails(
        &up.cli(&[
            "sign",
            &format!("{host}/neg/app@sha256:abc"),
            "--witness",
            "prod",
        ])
        .expect("cli"),
        "bad digest",
    );
    assert!(msg.contains("64 hex"), "{msg}");
    let msg = fails(
        &up.cli(&[
            "sign",
            &format!("{host}/neg/missing:v1"),
            "--witness",
            "prod",
            "--wait",
        ])
        .expect("cli"),
        "missing image",
    );
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = fails(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "x",
            "--kms-key",
            "gcpkms://nope",
        ])
        .expect("cli"),
        "unsupported kms",
    );
    assert!(msg.contains("gcpkms"), "{msg}");

    // A signature by prod does not verify under other's key.
    ok(
        &up.cli(&["sign", &image, "--witness", "prod", "--wait"])
            .expect("cli"),
        "sign",
    );
    let msg = fails(
        &up.cli(&["verify", &image, "--key", other_key.to_str().expect("utf8")])
            .expect("cli"),
        "wrong key",
    );
    assert!(msg.contains("does not verify under any given key"), "{msg}");
    // The real cosign agrees: not under other's key.
    let other_pem = std::fs::read(&other_key).expect("other key");
    let refused = cosign_verifies(&image, &other_pem).expect_err("cosign with the wrong key");
    assert!(refused.contains("no matching signatures"), "{refused}");

    // Tampered payloads and digests in the registry are rejected by `signet verify`.
    let client = RegistryClient::new(RegistryConfig::for_loopback()).expect("client");
    let img = ImageRef::parse(&image).expect("ref");
    let good = client
        .fetch_signatures(&img, &digest)
        .await
        .expect("fetch")
        .remove(0);
    let mut tampered = good.payload.clone();
    let pos = tampered
        .iter()
        .position(|&b| b == b'n')
        .expect("a byte to flip");
    tampered[pos] = b'm';
    client
        .publish_signature(
            &img,
            &digest,
            &SignatureLayer::new(tampered, good.signature.clone()),
        )
        .await
        .expect("publish tampered payload");
    let other_digest = Digest::of(b"another image");
    let wrong_digest = String::from_utf8(good.payload.clone())
        .expect("utf8")
        .replace(digest.as_str(), other_digest.as_str());
    client
        .publish_signature(
            &img,
            &digest,
            &SignatureLayer::new(wrong_digest.into_bytes(), good.signature.clone()),
        )
        .await
        .expect("publish payload for another digest");
    let json = ok(
        &up.cli(&["--output", "json", "verify", &image, "--witness", "prod"])
            .expect("cli"),
        "verify still passes on the good layer",
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let reasons: Vec<String> = v["signatures"]
        .as_array()
        .expect("signatures")
        .iter()
        .filter_map(|s| s["reason"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reasons.len(), 2, "{v}");
    assert!(
        reasons.iter().any(|r| r.contains("does not verify")
            || r.contains("not valid JSON")
            || r.contains("unexpected key")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&format!("payload is for {other_digest}"))),
        "{reasons:?}"
    );

    // Registry down: the job retries, then fails with a reason naming the registry.
    let second = TestImage::random()
        .push(&host, "neg/app", "v2")
        .await
        .expect("push");
    registry.stop().expect("stop registry");
    let msg = fails(
        &up.cli(&[
            "sign",
            &format!("{host}/neg/app@{second}"),
            "--witness",
            "prod",
            "--wait",
            "--timeout",
            "60s",
        ])
        .expect("cli"),
        "registry down",
    );
    assert!(
        msg.contains(&host) && msg.contains("gave up after 2 attempts"),
        "{msg}"
    );
    let failed = ok(
        &up.cli(&["jobs", "list", "--failed"]).expect("cli"),
        "jobs list --failed",
    );
    assert!(failed.contains(&format!("neg/app@{second}")), "{failed}");
}

/// `signet up` on a laptop where the admin port's address is taken (Prometheus holds
/// 9090 on many): it starts anyway, says why it has no admin port, and signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signet_up_starts_when_its_admin_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let up = SignetUp::start(bin(), &[("SIGNET_GATEWAY__ADMIN_LISTEN", addr.as_str())])
        .await
        .expect("signet up starts without its admin port");
    assert!(up.admin().is_err(), "no admin URL is recorded");
    let log = up.log();
    assert!(
        log.contains("running without the admin port") && log.contains(&addr),
        "{log}"
    );
    create_local_witness(&up, "prod");
    drop(taken);
}

/// Revoking one signature from the CLI: `signet verify --witness` then refuses it and
/// says why, signing the image again does not undo it, and the revocation is audited.
/// A verifier that does not ask signet (`--key`, cosign) still sees a valid signature:
/// the layer stays in the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_signature_is_refused_by_verify_and_not_made_again() {
    // The registry must outlive the test: bind it, do not leave it to `..`.
    let Demo {
        registry: _registry,
        image,
        up,
        tmp,
        ..
    } = Demo::start().await;
    create_local_witness(&up, "prod");
    let (_, key) = export_key(&up, "prod", tmp.path());
    ok(
        &up.cli(&["sign", &image, "--witness", "prod", "--wait"])
            .expect("cli"),
        "sign",
    );
    let listed: serde_json::Value = serde_json::from_str(&ok(
        &up.cli(&["-o", "json", "signature", "list", "--image", &image])
            .expect("cli"),
        "signature list",
    ))
    .expect("json");
    let id = listed["signatures"][0]["id"]
        .as_str()
        .expect("a signature id")
        .to_owned();
    let out = ok(
        &up.cli(&["signature", "revoke", &id, "--reason", "leaked build cache"])
            .expect("cli"),
        "signature revoke",
    );
    assert!(out.contains("revoked signature"), "{out}");
    let again = fails(
        &up.cli(&["signature", "revoke", &id, "--reason", "twice"])
            .expect("cli"),
        "signature revoke again",
    );
    assert!(again.contains("already exists"), "{again}");

    let out = up
        .cli(&["verify", &image, "--witness", "prod"])
        .expect("cli");
    assert!(!out.status.success(), "verify --witness refuses it");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("revoked") && text.contains("leaked build cache"),
        "{text}"
    );
    ok(
        &up.cli(&["verify", &image, "--key", key.to_str().expect("utf8")])
            .expect("cli"),
        "verify --key (asks no one but the registry)",
    );
    let signed_again = fails(
        &up.cli(&["sign", &image, "--witness", "prod", "--wait"])
            .expect("cli"),
        "sign again",
    );
    assert!(signed_again.contains("was revoked"), "{signed_again}");
    let audit = ok(
        &up.cli(&["audit", "--action", "signature.revoke"])
            .expect("cli"),
        "audit",
    );
    assert!(audit.contains("signature.revoke"), "{audit}");
}

/// A pipeline's token made with `signet token create --scope`: the pipeline (or whoever
/// steals its token) signs inside the scope and nowhere else; `token list` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_signer_token_signs_only_inside_its_scope() {
    let Demo {
        registry,
        image,
        up,
        ..
    } = Demo::start().await;
    create_local_witness(&up, "prod");
    let host = registry.host();
    let scope = format!("{host}/team/**");
    let token = ok(
        &up.cli(&[
            "token", "create", "--name", "team-ci", "--role", "signer", "--scope", &scope,
        ])
        .expect("cli"),
        "token create --scope",
    );
    let token = token.trim();
    let refused = fails(
        &up.cli(&[
            "--token",
            token,
            "sign",
            &image,
            "--witness",
            "prod",
            "--wait",
        ])
        .expect("cli"),
        "sign outside the scope",
    );
    assert!(
        refused.contains(&format!(
            "{host}/demo/app is outside token \"team-ci\"'s scope"
        )),
        "{refused}"
    );
    TestImage::random()
        .push(&host, "team/app", "v1")
        .await
        .expect("push");
    ok(
        &up.cli(&[
            "--token",
            token,
            "sign",
            &format!("{host}/team/app:v1"),
            "--witness",
            "prod",
            "--wait",
        ])
        .expect("cli"),
        "sign inside the scope",
    );
    let listed = ok(&up.cli(&["token", "list"]).expect("cli"), "token list");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("team-ci") && l.contains(&scope)),
        "{listed}"
    );
}

/// `signet witness create --name NAME --kms-key local://NAME`, which must succeed.
/// The README's starting point: a registry holding `demo/app:v1`, a running `signet up`
/// and a folder for exported keys.
struct Demo {
    registry: TestRegistry,
    pushed: Digest,
    /// `HOST/demo/app:v1`.
    image: String,
    up: SignetUp,
    tmp: tempfile::TempDir,
}

impl Demo {
    async fn start() -> Self {
        let registry = TestRegistry::start().await.expect("docker-registry");
        let pushed = TestImage::random()
            .push(&registry.host(), "demo/app", "v1")
            .await
            .expect("push image");
        let image = format!("{}/demo/app:v1", registry.host());
        let up = SignetUp::start(bin(), &[]).await.expect("signet up");
        let tmp = tempfile::tempdir().expect("tempdir");
        Self {
            registry,
            pushed,
            image,
            up,
            tmp,
        }
    }
}
