//! Helpers for the CLI's end-to-end tests: run the real binary, read the registry's
//! `.sig` artifacts over plain HTTP, and check signatures with verifiers signet did not
//! write (OpenSSL, and the `sigstore` crate's cosign verification).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::Path;
use std::process::Output;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signet_core::Digest;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_signet"))
}

pub fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn fails(out: &Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `.sig` manifest as the registry stores it, fetched with plain HTTP.
pub async fn sig_manifest(
    registry: &TestRegistry,
    repo: &str,
    digest: &Digest,
) -> serde_json::Value {
    tagged_manifest(registry, repo, &digest.signature_tag()).await
}

/// The OCI manifest under `repo:tag` (a `.sig` or `.att` attachment).
pub async fn tagged_manifest(registry: &TestRegistry, repo: &str, tag: &str) -> serde_json::Value {
    let url = format!("{}/v2/{repo}/manifests/{tag}", registry.url());
    let resp = reqwest::Client::new()
        .get(url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("get the manifest");
    assert!(
        resp.status().is_success(),
        "no manifest {repo}:{tag}: {}",
        resp.status()
    );
    resp.json().await.expect("manifest json")
}

pub async fn blob(registry: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("{}/v2/{repo}/blobs/{digest}", registry.url());
    reqwest::get(url)
        .await
        .expect("get blob")
        .bytes()
        .await
        .expect("blob")
        .to_vec()
}

/// Verifies every layer of the `.sig` artifact with `openssl dgst -sha256 -verify`.
pub async fn openssl_verifies(
    registry: &TestRegistry,
    repo: &str,
    digest: &Digest,
    key: &Path,
) -> usize {
    let manifest = sig_manifest(registry, repo, digest).await;
    let layers = manifest["layers"].as_array().expect("layers");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut verified = 0;
    for layer in layers {
        let payload = blob(registry, repo, layer["digest"].as_str().expect("digest")).await;
        let sig_b64 = layer["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .expect("signature annotation");
        let sig = STANDARD.decode(sig_b64).expect("padded standard base64");
        std::fs::write(dir.path().join("payload.json"), &payload).expect("write");
        std::fs::write(dir.path().join("sig.bin"), &sig).expect("write");
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(key)
            .arg("-signature")
            .arg(dir.path().join("sig.bin"))
            .arg(dir.path().join("payload.json"))
            .output()
            .expect("run openssl");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK") {
            verified += 1;
        }
    }
    verified
}

/// The real `cosign` (the version `scripts/tools.sh` builds), as users run it against a
/// registry on loopback: `cosign verify --key KEY --insecure-ignore-tlog=true
/// --allow-http-registry IMAGE`. Returns how many signatures it verified (the payloads
/// it prints), or what it said when it refused.
pub fn cosign_verifies(image: &str, key_pem: &[u8]) -> Result<usize, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let key = dir.path().join("key.pem");
    std::fs::write(&key, key_pem).map_err(|e| e.to_string())?;
    let out = cosign(dir.path())
        .args(["verify", "--key"])
        .arg(&key)
        .args([
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            "--output",
            "json",
        ])
        .arg(image)
        .output()
        .map_err(|e| format!("cannot run cosign: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let payloads: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cosign printed no JSON list: {e}"))?;
    Ok(payloads.len())
}

/// A `cosign` command with its own home (no cache or config of the user's) and no
/// network beyond what the command names.
pub fn cosign(home: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(signet_testkit::tools::bin("cosign"));
    cmd.env("HOME", home)
        .env("TUF_ROOT", home.join("tuf"))
        .env("SIGSTORE_NO_CACHE", "true")
        .env_remove("COSIGN_EXPERIMENTAL");
    cmd
}

/// The `sigstore` crate's cosign verification with a public key, as `cosign verify --key`.
pub async fn sigstore_verifies(image: &str, key_pem: &[u8]) -> Result<usize, String> {
    use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
    use sigstore::cosign::{ClientBuilder, CosignCapabilities};
    use sigstore::crypto::SigningScheme;
    use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

    let mut client = ClientBuilder::default()
        .with_oci_client_config(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        })
        .build()
        .map_err(|e| e.to_string())?;
    let reference: OciReference = image
        .parse()
        .map_err(|e: sigstore::errors::SigstoreError| e.to_string())?;
    let layers = client
        .trusted_signature_layers(&Auth::Anonymous, &reference)
        .await
        .map_err(|e| e.to_string())?;
    if layers.is_empty() {
        return Err("no signature layers found".into());
    }
    let verifier = PublicKeyVerifier::new(key_pem, &SigningScheme::RSA_PKCS1_SHA256(0))
        .map_err(|e| e.to_string())?;
    let constraints: VerificationConstraintVec = vec![Box::new(verifier)];
    sigstore::cosign::verify_constraints(&layers, constraints.iter())
        .map_err(|e| format!("{e:?}"))?;
    Ok(layers.len())
}

/// `signet witness create NAME --kms-key local://NAME`.
pub fn create_local_witness(up: &SignetUp, name: &str) {
    create_witness(up, name, &format!("local://{name}"));
}

/// `signet witness create NAME --kms-key KEY`.
pub fn create_witness(up: &SignetUp, name: &str, key: &str) {
    ok(
        &up.cli(&["witness", "create", "--name", name, "--kms-key", key])
            .expect("cli"),
        &format!("witness create {name} on {key}"),
    );
}

/// `signet witness export-key NAME`, written to `DIR/NAME.pub`: the PEM and its path.
pub fn export_key(
    up: &SignetUp,
    name: &str,
    dir: &std::path::Path,
) -> (String, std::path::PathBuf) {
    let pem = ok(
        &up.cli(&["witness", "export-key", name]).expect("cli"),
        &format!("witness export-key {name}"),
    );
    let path = dir.join(format!("{name}.pub"));
    std::fs::write(&path, &pem).expect("write the public key");
    (pem, path)
}

/// The Pod AdmissionReview fixture the verifier's tests use.
pub const POD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../verifier/tests/fixtures/pod-create.json"
);

/// Creates and enables an enforcing policy `name` for `witness` on cluster c1, namespace
/// prod, then waits until `unsigned` (which the witness did not sign) is denied there:
/// the verifier has the policy.
pub async fn enforce(up: &SignetUp, name: &str, witness: &str, unsigned: &str) {
    for args in [
        vec![
            "policy",
            "create",
            name,
            "--witness",
            witness,
            "--cluster",
            "c1",
            "--namespace",
            "prod",
            "--mode",
            "enforce",
        ],
        vec!["policy", "enable", name],
    ] {
        ok(&up.cli(&args).expect("cli"), &args.join(" "));
    }
    until_denied(up, "prod", unsigned).await;
}

/// Waits (30 s at most) until `image` is denied in `namespace`.
pub async fn until_denied(up: &SignetUp, namespace: &str, image: &str) {
    let started = std::time::Instant::now();
    while review(up, namespace, image).await["allowed"] != false {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the policy was not enforced"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Sends `signet up`'s verifier a Pod AdmissionReview for `image` (as container and init
/// container) in `namespace`, over HTTPS, and returns the review's `response`.
pub async fn review(up: &SignetUp, namespace: &str, image: &str) -> serde_json::Value {
    let pem = std::fs::read(up.verifier_cert()).expect("the verifier certificate");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("PEM")])
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .expect("HTTPS client");
    let uid = format!(
        "review-{}",
        Digest::of(format!("{namespace}/{image}").as_bytes()).hex()
    );
    let body = std::fs::read_to_string(POD)
        .expect("fixture")
        .replace("{{UID}}", &uid)
        .replace("{{NAMESPACE}}", namespace)
        .replace("{{IMAGE}}", image)
        .replace("{{INIT_IMAGE}}", image);
    let v: serde_json::Value = http
        .post(format!("{}/validate", up.verifier().expect("verifier URL")))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the verifier answers over HTTPS")
        .json()
        .await
        .expect("an AdmissionReview");
    v["response"].clone()
}
