//! Alibaba Cloud KMS contract test: a local HTTP server replays the recorded response
//! shapes in tests/fixtures/alibaba/ (see its README for their sources) and checks every
//! request it receives: action, version, query and the ACS3 signature, recomputed with
//! signet_kms::acs3.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::SeenRequest;
use signet_core::{PublicKey, SignatureAlgorithm};
use signet_kms::{acs3, Environment, Kms, KmsConfig, KmsErrorKind};

const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"registry.local/app"},"image":{"docker-manifest-digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333"},"type":"cosign container image signature"},"optional":null}"#;
const KEY_ID: &str = "5c438b18-05be-40ad-b6c2-3be6752c0001";
const V1: &str = "2ab1a983-7072-4bbc-a582-584b5bd80001";
const V2: &str = "2ab1a983-7072-4bbc-a582-584b5bd80002";
const ACCESS_KEY_ID: &str = "LTAI5tTestAccessKey";
const ACCESS_KEY_SECRET: &str = "alibaba-secret-never-printed";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/alibaba/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn query(request: &SeenRequest) -> BTreeMap<String, String> {
    let q = request.target.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// Recomputes the request's ACS3 signature from what arrived on the wire.
fn signature_problem(request: &SeenRequest, secret: &str) -> Option<String> {
    let Some(auth) = request.header("authorization") else {
        return Some("no Authorization header".into());
    };
    let (path, raw_query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let params: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let canonical_query = acs3::canonical_query(&params);
    if canonical_query != raw_query {
        return Some(format!(
            "query {raw_query:?} is not in canonical form {canonical_query:?}"
        ));
    }
    let payload_hash = acs3::sha256_hex(&request.body);
    if request.header("x-acs-content-sha256") != Some(payload_hash.as_str()) {
        return Some("x-acs-content-sha256 does not match the body".into());
    }
    let (canonical, signed_headers) = acs3::canonical_request(
        &request.method,
        path,
        &canonical_query,
        &request.headers,
        &payload_hash,
    );
    let expected = acs3::authorization(
        ACCESS_KEY_ID,
        &signed_headers,
        &acs3::signature(secret, &acs3::string_to_sign(&canonical)),
    );
    (auth != expected).then(|| format!("Authorization {auth:?}, expected {expected:?}"))
}

struct FakeKms {
    keys: BTreeMap<&'static str, KeyPair>,
    describe_fixture: &'static str,
    /// The payload AsymmetricSign must be asked to sign (by its SHA-256, as the real KMS
    /// is); the double signs these bytes.
    payload: std::sync::Mutex<Vec<u8>>,
}

impl FakeKms {
    fn new(describe_fixture: &'static str) -> Self {
        let keys = [V1, V2]
            .into_iter()
            .map(|v| (v, KeyPair::generate(KeySize::Rsa2048).expect("keygen")))
            .collect();
        Self {
            keys,
            describe_fixture,
            payload: std::sync::Mutex::new(PAYLOAD.to_vec()),
        }
    }

    fn public(&self, version: &str) -> PublicKey {
        let der = self.keys[version].public_key().as_der().expect("der");
        PublicKey::parse(der.as_ref()).expect("public key")
    }

    fn respond(&self, request: &SeenRequest) -> (u16, Vec<(String, String)>, String) {
        let json = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        let bad = |m: String| {
            (
                400,
                json.clone(),
                format!(
                    r#"{{"Code":"SignatureDoesNotMatch","Message":{},"RequestId":"contract"}}"#,
                    serde_json::json!(m)
                ),
            )
        };
        if let Some(problem) = signature_problem(request, ACCESS_KEY_SECRET) {
            return bad(problem);
        }
        if request.method != "POST" || request.header("x-acs-version") != Some("2016-01-20") {
            return bad(format!(
                "unexpected {} {:?}",
                request.method,
                request.header("x-acs-version")
            ));
        }
        let q = query(request);
        let version = q.get("KeyVersionId").cloned().unwrap_or_default();
        match request.header("x-acs-action").unwrap_or_default() {
            "DescribeKey" if q.get("KeyId").map(String::as_str) == Some(KEY_ID) => {
                (200, json, fixture(self.describe_fixture))
            }
            "DescribeKey" => (404, json, fixture("error_key_not_found.json")),
            "ListKeyVersions" => (200, json, fixture("list_key_versions.json")),
            "GetPublicKey" if self.keys.contains_key(version.as_str()) => {
                let pem = self.public(&version).to_pem();
                let pem_json = serde_json::to_string(&pem).expect("json string");
                let body = fixture("get_public_key.json")
                    .replace("{{KEY_VERSION_ID}}", &version)
                    .replace("\"{{PUBLIC_KEY_PEM}}\"", &pem_json);
                (200, json, body)
            }
            "AsymmetricSign" if self.keys.contains_key(version.as_str()) => {
                let payload = self.payload.lock().expect("lock").clone();
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &payload);
                if q.get("Digest") != Some(&B64.encode(digest.as_ref())) {
                    return bad("Digest is not base64 SHA-256 of the payload".into());
                }
                let padding: &'static dyn lc::RsaEncoding =
                    match q.get("Algorithm").map(String::as_str) {
                        Some("RSA_PKCS1_SHA_256") => &lc::RSA_PKCS1_SHA256,
                        Some("RSA_PSS_SHA_256") => &lc::RSA_PSS_SHA256,
                        other => return bad(format!("algorithm {other:?}")),
                    };
                let key = &self.keys[version.as_str()];
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(padding, &SystemRandom::new(), &payload, &mut sig)
                    .expect("sign");
                let body = fixture("asymmetric_sign.json")
                    .replace("{{KEY_VERSION_ID}}", &version)
                    .replace("{{SIGNATURE}}", &B64.encode(&sig));
                (200, json, body)
            }
            "CreateKeyVersion" => (200, json, fixture("create_key_version.json")),
            _ => (404, json, fixture("error_key_not_found.json")),
        }
    }
}

fn kms(endpoint: &str, extra: &[(&str, &str)], timeout: Duration) -> Kms {
    let mut vars = vec![
        (
            "ALIBABA_CLOUD_ACCESS_KEY_ID".to_owned(),
            ACCESS_KEY_ID.to_owned(),
        ),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_owned(),
            ACCESS_KEY_SECRET.to_owned(),
        ),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut config = KmsConfig::new(std::env::temp_dir());
    config.timeout = timeout;
    config.environment = Environment::fixed(vars);
    config.alibaba_endpoint = Some(endpoint.to_owned());
    Kms::new(config)
}

async fn fake(describe_fixture: &'static str) -> (Arc<FakeKms>, common::ScriptedServer) {
    let kms = Arc::new(FakeKms::new(describe_fixture));
    let k = Arc::clone(&kms);
    let server = common::scripted_server(Arc::new(move |r: &SeenRequest| k.respond(r))).await;
    (kms, server)
}

#[tokio::test]
async fn describe_and_sign_against_recorded_shapes() {
    let (fake, server) = fake("describe_key.json").await;
    let kms = kms(&server.url, &[], Duration::from_secs(30));
    let key = kms
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open");
    assert_eq!(key.provider(), "alikms");

    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.algorithm, SignatureAlgorithm::RsaPkcs1Sha256);
    assert_eq!(desc.primary_version, V2, "DescribeKey's PrimaryKeyVersion");
    let versions: Vec<&str> = desc.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(
        versions,
        [V1, V2],
        "oldest first, whatever order ListKeyVersions used"
    );
    assert_eq!(desc.versions[0].public_key, fake.public(V1));
    assert_eq!(desc.versions[1].public_key, fake.public(V2));

    for (version, alg) in [
        (V2, SignatureAlgorithm::RsaPkcs1Sha256),
        (V1, SignatureAlgorithm::RsaPkcs1Sha256),
        (V2, SignatureAlgorithm::RsaPssSha256),
    ] {
        let sig = key.sign(version, alg, PAYLOAD).await.expect("sign");
        let public = fake.public(version);
        public
            .verify(alg, PAYLOAD, &sig)
            .expect("signet_core verifies");
        common::openssl_verifies(&public, alg, PAYLOAD, &sig);
    }

    let seen = server.seen.lock().expect("lock").clone();
    let actions: Vec<&str> = seen
        .iter()
        .filter_map(|r| r.header("x-acs-action"))
        .collect();
    assert_eq!(
        actions,
        [
            "DescribeKey",
            "ListKeyVersions",
            "GetPublicKey",
            "GetPublicKey",
            "AsymmetricSign",
            "AsymmetricSign",
            "AsymmetricSign"
        ]
    );
    let sign = query(&seen[4]);
    assert_eq!(sign["KeyId"], KEY_ID);
    assert_eq!(sign["KeyVersionId"], V2);
    assert_eq!(sign["Algorithm"], "RSA_PKCS1_SHA_256");
    assert_eq!(query(&seen[6])["Algorithm"], "RSA_PSS_SHA_256");
    for r in &seen {
        assert!(r
            .header("x-acs-signature-nonce")
            .is_some_and(|n| n.len() == 32));
        let date = r.header("x-acs-date").expect("date");
        assert!(chrono::DateTime::parse_from_rfc3339(date).is_ok(), "{date}");
        assert!(r.header("x-acs-security-token").is_none());
    }
    let nonces: std::collections::BTreeSet<_> = seen
        .iter()
        .filter_map(|r| r.header("x-acs-signature-nonce"))
        .collect();
    assert_eq!(nonces.len(), seen.len(), "a fresh nonce per request");
}

#[tokio::test]
async fn pinned_version_and_pss_option() {
    let (_fake, server) = fake("describe_key.json").await;
    let kms = kms(&server.url, &[], Duration::from_secs(30));
    let key = kms
        .open(&format!(
            "alikms://cn-hangzhou/{KEY_ID}?version={V1}&algorithm=RSA_PSS_SHA_256"
        ))
        .expect("open");
    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.primary_version, V1);
    assert_eq!(desc.algorithm, SignatureAlgorithm::RsaPssSha256);
    let e = key.rotate().await.expect_err("pinned keys do not rotate");
    assert!(matches!(e.kind, KmsErrorKind::Unsupported(_)), "{e}");
}

#[tokio::test]
async fn rotation_creates_a_key_version() {
    let (_fake, server) = fake("describe_key.json").await;
    let kms = kms(&server.url, &[], Duration::from_secs(30));
    let key = kms
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open");
    assert_eq!(
        key.rotate().await.expect("rotate"),
        "2ab1a983-7072-4bbc-a582-584b5bd80003"
    );
    let seen = server.seen.lock().expect("lock").clone();
    assert_eq!(
        seen.last().and_then(|r| r.header("x-acs-action")),
        Some("CreateKeyVersion")
    );
}

#[tokio::test]
async fn sts_tokens_are_sent_and_signed() {
    let (_fake, server) = fake("describe_key.json").await;
    let kms = kms(
        &server.url,
        &[("ALIBABA_CLOUD_SECURITY_TOKEN", "sts-token-value")],
        Duration::from_secs(30),
    );
    kms.open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open")
        .describe()
        .await
        .expect("the server accepted the signature including the token");
    let seen = server.seen.lock().expect("lock")[0].clone();
    assert_eq!(seen.header("x-acs-security-token"), Some("sts-token-value"));
    assert!(seen
        .header("authorization")
        .is_some_and(|a| a.contains("x-acs-security-token")));
}

#[tokio::test]
async fn symmetric_keys_are_refused() {
    let (_fake, server) = fake("describe_key_symmetric.json").await;
    let e = kms(&server.url, &[], Duration::from_secs(30))
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open")
        .describe()
        .await
        .expect_err("symmetric");
    assert!(matches!(e.kind, KmsErrorKind::WrongKeyType(_)), "{e}");
    assert!(e.to_string().contains("Aliyun_AES_256"), "{e}");
}

#[tokio::test]
async fn unknown_keys_are_not_found_with_the_request_id() {
    let (_fake, server) = fake("describe_key.json").await;
    let e = kms(&server.url, &[], Duration::from_secs(30))
        .open("alikms://cn-hangzhou/alias/nope")
        .expect("open")
        .describe()
        .await
        .expect_err("missing");
    assert!(matches!(e.kind, KmsErrorKind::NotFound(_)), "{e}");
    assert_eq!(
        e.request_id.as_deref(),
        Some("8F1E2D3C-4B5A-6978-8A9B-0C1D2E3F4A5B")
    );
}

#[tokio::test]
async fn wrong_secret_is_refused_by_the_contract_server() {
    // Guards the contract test itself: a request signed with another secret must fail.
    let (_fake, server) = fake("describe_key.json").await;
    let mut config = KmsConfig::new(std::env::temp_dir());
    config.environment = Environment::fixed([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "some-other-secret"),
    ]);
    config.alibaba_endpoint = Some(server.url.clone());
    let e = Kms::new(config)
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open")
        .describe()
        .await
        .expect_err("bad signature");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");
    assert!(!e.to_string().contains("some-other-secret"), "{e}");
}

#[tokio::test]
async fn throttling_is_retryable() {
    let server = common::scripted_server(Arc::new(|_r: &SeenRequest| {
        (
            429,
            vec![("Content-Type".into(), "application/json".into())],
            fixture("error_throttling.json"),
        )
    }))
    .await;
    let e = kms(&server.url, &[], Duration::from_secs(30))
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open")
        .sign(V1, SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect_err("throttled");
    assert!(matches!(e.kind, KmsErrorKind::Throttled(_)), "{e}");
    assert!(e.retryable());
    assert_eq!(
        e.request_id.as_deref(),
        Some("4C4F7F6A-3B2E-5D1A-9E0C-2F1D3C4B5A69")
    );
    assert!(e.to_string().contains("Rejected.Throttling"), "{e}");
}

#[tokio::test]
async fn a_silent_kms_times_out() {
    let server = common::silent_server().await;
    let e = kms(&server.url, &[], Duration::from_millis(300))
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open")
        .describe()
        .await
        .expect_err("no answer");
    assert_eq!(e.kind, KmsErrorKind::Timeout, "{e}");
    assert!(e.retryable());
}

#[test]
fn debug_redacts_credentials_and_bad_uris_are_refused() {
    let kms = kms(
        "http://127.0.0.1:1",
        &[("ALIBABA_CLOUD_SECURITY_TOKEN", "sts-secret")],
        Duration::from_secs(1),
    );
    let key = kms
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open");
    let debug = format!("{kms:?} {key:?}");
    assert!(
        !debug.contains(ACCESS_KEY_SECRET) && !debug.contains("sts-secret"),
        "{debug}"
    );
    for bad in [
        "alikms://cn-hangzhou",
        "alikms://cn-hangzhou/k?colour=red",
        "alikms:///k",
    ] {
        let e = kms.open(bad).expect_err(bad);
        assert!(matches!(e.kind, KmsErrorKind::InvalidUri(_)), "{bad}: {e}");
    }
}

/// A signature made through the Alibaba provider (against the contract double) over the
/// cosign payload of an image in a real registry, published as signet publishes, is
/// accepted by the real `cosign verify --key` with the key version's public key.
#[tokio::test]
async fn an_alibaba_signature_verifies_with_the_real_cosign() {
    use signet_core::{Digest, ImageRef, SimpleSigning};
    use signet_registry::{RegistryClient, RegistryConfig, SignatureLayer};
    use signet_testkit::image::TestImage;
    use signet_testkit::registry::TestRegistry;

    let (fake, server) = fake("describe_key.json").await;
    let kms = kms(&server.url, &[], Duration::from_secs(30));
    let key = kms
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open");
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let digest: Digest = TestImage::random()
        .push(&host, "ali/app", "v1")
        .await
        .expect("push");
    let image = ImageRef::parse(&format!("{host}/ali/app:v1")).expect("reference");
    let payload = SimpleSigning::new(image.repository_ref(), digest.clone()).to_bytes();
    *fake.payload.lock().expect("lock") = payload.clone();
    let signature = key
        .sign(V2, SignatureAlgorithm::RsaPkcs1Sha256, &payload)
        .await
        .expect("sign through the Alibaba provider");
    RegistryClient::new(RegistryConfig::for_loopback())
        .expect("registry client")
        .publish_signature(&image, &digest, &SignatureLayer::new(payload, signature))
        .await
        .expect("publish");

    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("alibaba.pub");
    std::fs::write(&key_file, fake.public(V2).to_pem()).expect("write the key");
    let out = std::process::Command::new(signet_testkit::tools::bin("cosign"))
        .env("HOME", dir.path())
        .args(["verify", "--key"])
        .arg(&key_file)
        .args(["--insecure-ignore-tlog=true", "--allow-http-registry"])
        .arg(format!("{host}/ali/app@{digest}"))
        .output()
        .expect("run cosign");
    assert!(
        out.status.success(),
        "cosign verify refused the Alibaba signature:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And not under the other version's key.
    std::fs::write(&key_file, fake.public(V1).to_pem()).expect("write the key");
    let out = std::process::Command::new(signet_testkit::tools::bin("cosign"))
        .env("HOME", dir.path())
        .args(["verify", "--key"])
        .arg(&key_file)
        .args(["--insecure-ignore-tlog=true", "--allow-http-registry"])
        .arg(format!("{host}/ali/app@{digest}"))
        .output()
        .expect("run cosign");
    assert!(
        !out.status.success(),
        "cosign accepted the wrong key version"
    );
}
