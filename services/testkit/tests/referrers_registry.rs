//! The referrers-capable registry (`olareg`, [`ReferrersRegistry`]) with the real signing
//! tools that write OCI 1.1 referrers, cosign 3 and notation, all from `scripts/tools.sh`.
//! These show what each tool writes, for the tests of the features that read it; run with
//! `--nocapture` to see the manifests, bundles and envelopes printed.
//!
//! What worked, against a plain-HTTP registry on loopback and with no other network:
//!
//! cosign 3 (v3.1.3), `cosign3` below, HOME a temp dir ([`tools::cosign3`]):
//! - `COSIGN_PASSWORD= cosign3 generate-key-pair` writes `cosign.key` and `cosign.pub`
//!   (ECDSA P-256) in the working directory.
//! - `cosign3 signing-config create --out signing-config.json` (no flags: a signing config
//!   naming no Fulcio, Rekor or TSA) and `cosign3 trusted-root create --out
//!   trusted-root.json` (no flags: an empty trusted root). `--tlog-upload=false` alone is
//!   refused in cosign 3 ("not supported with --signing-config or --use-signing-config",
//!   and --use-signing-config defaults to true); without `--trusted-root` cosign 3 first
//!   tries to fetch the Sigstore TUF root (a DNS lookup that fails here; it warns and goes
//!   on). With both files it makes no connection but to the registry.
//! - `cosign3 sign --key cosign.key --signing-config signing-config.json --trusted-root
//!   trusted-root.json --allow-http-registry --yes HOST/REPO@DIGEST` pushes, by digest and
//!   with no tag, an image manifest whose `subject` is the image: `artifactType`
//!   `application/vnd.dev.sigstore.bundle.v0.3+json`, config the empty descriptor
//!   (`application/vnd.oci.empty.v1+json`, which cosign also gives an `artifactType`), one
//!   layer of media type `application/vnd.dev.sigstore.bundle.v0.3+json` holding the
//!   bundle, and annotations `dev.sigstore.bundle.content: dsse-envelope`,
//!   `dev.sigstore.bundle.predicateType: https://sigstore.dev/cosign/sign/v1`,
//!   `org.opencontainers.image.created`. The bundle: `verificationMaterial.publicKey.hint`
//!   (no certificate, no tlog entries, no timestamps) and a `dsseEnvelope` whose payload
//!   (`payloadType` `application/vnd.in-toto+json`) is an in-toto Statement v1 with the
//!   image digest as subject, predicateType `https://sigstore.dev/cosign/sign/v1`, and an
//!   empty predicate; one ECDSA signature.
//! - `cosign3 verify --key cosign.pub --trusted-root trusted-root.json
//!   --insecure-ignore-tlog=true --allow-http-registry HOST/REPO@DIGEST` verifies it.
//! - `cosign3 attest --key cosign.key --signing-config ... --trusted-root ...
//!   --allow-http-registry --yes --type URI --predicate FILE HOST/REPO@DIGEST` pushes a
//!   second bundle referrer, the same shape with `dev.sigstore.bundle.predicateType: URI`.
//!
//! notation (v1.3.2), HOME a temp dir ([`tools::notation`]):
//! - `notation cert generate-test --default NAME` makes an RSA-2048 key and a self-signed
//!   certificate valid one day, adds the certificate to trust store `ca:NAME`, and makes
//!   the key the default signing key.
//! - `notation sign --insecure-registry --force-referrers-tag=false HOST/REPO@DIGEST`
//!   (`--insecure-registry` is the plain-HTTP flag) pushes, by digest, an image manifest
//!   with the image as `subject`, no top-level `artifactType` (the registry reports
//!   config.mediaType `application/vnd.cncf.notary.signature` as the artifactType), one
//!   layer `application/jose+json` (a JWS JSON envelope; `--signature-format cose` would
//!   give `application/cose`), and annotations `io.cncf.notary.x509chain.thumbprint#S256`
//!   and `org.opencontainers.image.created`. Its `--force-referrers-tag` defaults to true,
//!   which also pushes the referrers tag schema's index as tag `sha256-<hex>`; false uses
//!   the referrers API alone.
//! - `notation policy import --force trustpolicy.json` then `notation verify
//!   --insecure-registry HOST/REPO@DIGEST` verifies it.

use std::process::{Command, Output};

use signet_core::Digest;
use signet_testkit::image::{TestImage, OCI_MANIFEST};
use signet_testkit::referrers_registry::ReferrersRegistry;
use signet_testkit::tools;

const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const NOTARY_SIGNATURE: &str = "application/vnd.cncf.notary.signature";

#[tokio::test]
async fn an_artifact_pushed_with_a_subject_is_listed_by_the_referrers_api() {
    let mut registry = ReferrersRegistry::start().await.expect("start olareg");
    let image = TestImage::random();
    let digest = image
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");

    // No referrer yet: olareg v0.1.2 answers `"manifests": null` here (the spec wants an
    // empty list); a reader of the referrers API has to take both.
    let none = registry
        .referrers("app", &digest, None)
        .await
        .expect("referrers");
    assert!(
        none["manifests"].is_null() || none["manifests"] == serde_json::json!([]),
        "{none:#}"
    );

    let sbom = registry
        .push_artifact(
            "app",
            &image,
            "application/vnd.example.sbom+json",
            br#"{"packages":[]}"#,
            &[("org.example.kind", "sbom")],
        )
        .await
        .expect("push the artifact");
    let index = registry
        .referrers("app", &digest, None)
        .await
        .expect("referrers");
    println!("referrers of {digest}:\n{index:#}");
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let listed = index["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 1, "{index:#}");
    assert_eq!(listed[0]["digest"], sbom.as_str());
    assert_eq!(listed[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(
        listed[0]["artifactType"],
        "application/vnd.example.sbom+json"
    );
    assert_eq!(listed[0]["annotations"]["org.example.kind"], "sbom");

    let filtered = registry
        .referrers("app", &digest, Some("application/vnd.example.other"))
        .await
        .expect("filtered referrers");
    assert_eq!(filtered["manifests"], serde_json::json!([]), "{filtered:#}");

    // Referrers are pushed by digest: no tag appears.
    assert_eq!(registry.tags("app").await.expect("tags"), ["v1"]);

    // Storage survives a restart.
    registry.restart().await.expect("restart");
    let again = registry
        .referrers("app", &digest, None)
        .await
        .expect("referrers");
    assert_eq!(again["manifests"][0]["digest"], sbom.as_str(), "{again:#}");
    assert!(
        registry.log().contains("launching server"),
        "{}",
        registry.log()
    );
}

#[tokio::test]
async fn cosign3_signs_and_attests_into_sigstore_bundle_referrers() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let image = TestImage::random();
    let digest = image
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let reference = format!("{}/app@{digest}", registry.host());
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();

    ok(
        tools::cosign3(home)
            .arg("generate-key-pair")
            .env("COSIGN_PASSWORD", "")
            .current_dir(home),
        "cosign3 generate-key-pair",
    );
    ok(
        tools::cosign3(home)
            .args(["signing-config", "create", "--out"])
            .arg(home.join("signing-config.json")),
        "cosign3 signing-config create",
    );
    ok(
        tools::cosign3(home)
            .args(["trusted-root", "create", "--out"])
            .arg(home.join("trusted-root.json")),
        "cosign3 trusted-root create",
    );
    let offline = |cmd: &mut Command| {
        cmd.env("COSIGN_PASSWORD", "")
            .current_dir(home)
            .args(["--signing-config", "signing-config.json"])
            .args(["--trusted-root", "trusted-root.json"])
            .args(["--allow-http-registry", "--yes"]);
    };

    let mut sign = tools::cosign3(home);
    sign.args(["sign", "--key", "cosign.key"]);
    offline(&mut sign);
    ok(sign.arg(&reference), "cosign3 sign");

    let index = registry
        .referrers("app", &digest, Some(SIGSTORE_BUNDLE))
        .await
        .expect("referrers");
    println!("referrers of {digest} after cosign3 sign:\n{index:#}");
    let listed = index["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 1, "{index:#}");
    assert_eq!(listed[0]["artifactType"], SIGSTORE_BUNDLE);
    assert_eq!(listed[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(
        listed[0]["annotations"]["dev.sigstore.bundle.predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    let signature = digest_of(&listed[0]);

    let manifest = registry
        .manifest("app", &signature)
        .await
        .expect("manifest");
    println!("the bundle's manifest {signature}:\n{manifest:#}");
    assert_eq!(manifest["artifactType"], SIGSTORE_BUNDLE);
    assert_eq!(manifest["subject"]["digest"], digest.as_str());
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], SIGSTORE_BUNDLE);
    assert_eq!(
        manifest["annotations"]["dev.sigstore.bundle.content"],
        "dsse-envelope"
    );

    let bundle: serde_json::Value = serde_json::from_slice(
        &registry
            .blob("app", &digest_of(&manifest["layers"][0]))
            .await
            .expect("bundle blob"),
    )
    .expect("the bundle is JSON");
    println!("the bundle:\n{bundle:#}");
    assert_eq!(bundle["mediaType"], SIGSTORE_BUNDLE);
    assert!(
        bundle["verificationMaterial"]["publicKey"]["hint"].is_string(),
        "{bundle:#}"
    );
    let envelope = &bundle["dsseEnvelope"];
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(envelope["signatures"].as_array().map(Vec::len), Some(1));
    let statement = json_b64(envelope["payload"].as_str().expect("payload"));
    println!("its DSSE payload:\n{statement:#}");
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        statement["predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    assert_eq!(statement["subject"][0]["digest"]["sha256"], digest.hex());

    let verified = ok(
        tools::cosign3(home)
            .current_dir(home)
            .args(["verify", "--key", "cosign.pub"])
            .args(["--trusted-root", "trusted-root.json"])
            .args(["--insecure-ignore-tlog=true", "--allow-http-registry"])
            .arg(&reference),
        "cosign3 verify",
    );
    let payloads: Vec<serde_json::Value> =
        serde_json::from_str(verified.trim()).expect("cosign3 verify prints a JSON list");
    assert_eq!(payloads.len(), 1, "{verified}");

    std::fs::write(
        home.join("predicate.json"),
        br#"{"builder":{"id":"signet-test"}}"#,
    )
    .expect("write the predicate");
    let mut attest = tools::cosign3(home);
    attest.args(["attest", "--key", "cosign.key"]);
    offline(&mut attest);
    attest.args([
        "--type",
        "https://signet.example/test/v1",
        "--predicate",
        "predicate.json",
    ]);
    ok(attest.arg(&reference), "cosign3 attest");

    let index = registry
        .referrers("app", &digest, Some(SIGSTORE_BUNDLE))
        .await
        .expect("referrers");
    println!("referrers of {digest} after cosign3 attest:\n{index:#}");
    let mut predicates: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["dev.sigstore.bundle.predicateType"].as_str())
        .collect();
    predicates.sort_unstable();
    assert_eq!(
        predicates,
        [
            "https://signet.example/test/v1",
            "https://sigstore.dev/cosign/sign/v1"
        ]
    );
    // Bundles go to the referrers API only: no sha256-<hex>.sig/.att or fallback tags.
    assert_eq!(registry.tags("app").await.expect("tags"), ["v1"]);
}

#[tokio::test]
async fn notation_signs_into_a_notary_signature_referrer() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let image = TestImage::random();
    let digest = image
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let reference = format!("{}/app@{digest}", registry.host());
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();

    ok(
        tools::notation(home).args(["cert", "generate-test", "--default", "signet-test"]),
        "notation cert generate-test",
    );
    ok(
        tools::notation(home)
            .args(["sign", "--insecure-registry", "--force-referrers-tag=false"])
            .arg(&reference),
        "notation sign",
    );

    let index = registry
        .referrers("app", &digest, Some(NOTARY_SIGNATURE))
        .await
        .expect("referrers");
    println!("referrers of {digest} after notation sign:\n{index:#}");
    let listed = index["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 1, "{index:#}");
    assert_eq!(listed[0]["artifactType"], NOTARY_SIGNATURE);
    assert_eq!(listed[0]["mediaType"], OCI_MANIFEST);
    assert!(
        listed[0]["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"].is_string(),
        "{index:#}"
    );
    let signature = digest_of(&listed[0]);

    let manifest = registry
        .manifest("app", &signature)
        .await
        .expect("manifest");
    println!("the signature's manifest {signature}:\n{manifest:#}");
    assert_eq!(manifest["config"]["mediaType"], NOTARY_SIGNATURE);
    assert_eq!(manifest["subject"]["digest"], digest.as_str());
    assert_eq!(manifest["layers"][0]["mediaType"], "application/jose+json");

    let jws: serde_json::Value = serde_json::from_slice(
        &registry
            .blob("app", &digest_of(&manifest["layers"][0]))
            .await
            .expect("envelope blob"),
    )
    .expect("the JWS envelope is JSON");
    println!("the JWS envelope:\n{jws:#}");
    let protected = json_b64(jws["protected"].as_str().expect("protected header"));
    println!("its protected header:\n{protected:#}");
    assert_eq!(
        protected["cty"],
        "application/vnd.cncf.notary.payload.v1+json"
    );
    let payload = json_b64(jws["payload"].as_str().expect("payload"));
    println!("its payload:\n{payload:#}");
    assert_eq!(payload["targetArtifact"]["digest"], digest.as_str());
    assert_eq!(payload["targetArtifact"]["mediaType"], OCI_MANIFEST);
    assert!(jws["header"]["x5c"].is_array(), "{jws:#}");

    // --force-referrers-tag=false: no sha256-<hex> index tag of the referrers tag schema.
    assert_eq!(registry.tags("app").await.expect("tags"), ["v1"]);

    let policy = serde_json::json!({
        "version": "1.0",
        "trustPolicies": [{
            "name": "signet-test",
            "registryScopes": ["*"],
            "signatureVerification": { "level": "strict" },
            "trustStores": ["ca:signet-test"],
            "trustedIdentities": ["*"],
        }],
    });
    std::fs::write(home.join("trustpolicy.json"), policy.to_string()).expect("write");
    ok(
        tools::notation(home)
            .args(["policy", "import", "--force"])
            .arg(home.join("trustpolicy.json")),
        "notation policy import",
    );
    ok(
        tools::notation(home)
            .args(["verify", "--insecure-registry"])
            .arg(&reference),
        "notation verify",
    );
}

/// Runs `cmd`, fails the test with its output unless it succeeded, prints its stderr, and
/// returns its stdout.
fn ok(cmd: &mut Command, what: &str) -> String {
    let out: Output = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    println!("$ {what}\n{stderr}{stdout}");
    stdout
}

fn digest_of(descriptor: &serde_json::Value) -> Digest {
    Digest::parse(descriptor["digest"].as_str().expect("descriptor digest"))
        .expect("a sha256 digest")
}

/// Decodes base64, standard or URL-safe, padded or not (DSSE payloads are standard, JWS
/// parts URL-safe), then parses the bytes as JSON.
fn json_b64(text: &str) -> serde_json::Value {
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("{c:?} is not base64 in {text:?}"),
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON after base64: {e}"))
}
