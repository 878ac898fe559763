//! Alibaba Cloud KMS contract test: a local HTTP server replays the recorded response
//! shapes in tests/fixtures/alibaba/ (see its README for their sources) and checks every
//! request it receives: action, version, query and the ACS3 signature, recomputed with
//! signet_kms::acs3.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
fn signature_problem(request: &SeenRequest, id: &str, secret: &str) -> Option<String> {
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
        id,
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
    /// Temporary credentials the STS and metadata doubles handed out: access key id →
    /// (secret, security token, expiry). The KMS refuses them once expired, as the real
    /// one does.
    issued: std::sync::Mutex<BTreeMap<String, (String, String, SystemTime)>>,
    /// Requests refused for an expired token.
    expired_refusals: std::sync::atomic::AtomicUsize,
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
            issued: std::sync::Mutex::default(),
            expired_refusals: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Mints temporary credentials valid for `lifetime`; their JSON fields.
    fn issue(&self, lifetime: Duration) -> (String, String, String, String) {
        let mut issued = self.issued.lock().expect("lock");
        let id = format!("STS.NUf{:05}", issued.len() + 1);
        let secret = format!("sts-secret-{}", uuid_like());
        let token = format!("CAIS-{}", uuid_like());
        let expires = SystemTime::now() + lifetime;
        issued.insert(id.clone(), (secret.clone(), token.clone(), expires));
        let expiration = chrono::DateTime::<chrono::Utc>::from(expires)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        (id, secret, token, expiration)
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
        let id = request
            .header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split(',').next())
            .unwrap_or_default()
            .to_owned();
        let secret = if id == ACCESS_KEY_ID {
            ACCESS_KEY_SECRET.to_owned()
        } else {
            let issued = self.issued.lock().expect("lock").get(&id).cloned();
            let Some((secret, token, expires)) = issued else {
                return (
                    404,
                    json,
                    r#"{"Code":"InvalidAccessKeyId.NotFound","Message":"Specified access key is not found.","RequestId":"contract"}"#.into(),
                );
            };
            if request.header("x-acs-security-token") != Some(token.as_str()) {
                return (
                    400,
                    json,
                    r#"{"Code":"InvalidSecurityToken.Mismatch","Message":"Specified SecurityToken mismatch with the AccessKey.","RequestId":"contract"}"#.into(),
                );
            }
            if SystemTime::now() >= expires {
                self.expired_refusals
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return (
                    400,
                    json,
                    r#"{"Code":"InvalidSecurityToken.Expired","Message":"Specified SecurityToken is expired.","RequestId":"contract"}"#.into(),
                );
            }
            secret
        };
        if let Some(problem) = signature_problem(request, &id, &secret) {
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

/// A random hex string for ids and tokens.
fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    hex::encode(bytes)
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

/// Alibaba STS for RRSA: `AssumeRoleWithOIDC` (unsigned, the OIDC token is the proof)
/// answers with credentials from the KMS double, valid for `lifetime`, when the token is
/// the one `expected` holds at that moment.
async fn sts_double(
    kms: Arc<FakeKms>,
    expected: Arc<std::sync::Mutex<String>>,
    lifetime: Duration,
) -> common::ScriptedServer {
    let respond = move |r: &SeenRequest| {
        let json = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        let q = query(r);
        let form: BTreeMap<String, String> =
            url::form_urlencoded::parse(&r.body).into_owned().collect();
        let wanted = [
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", "2015-04-01"),
            ("Format", "JSON"),
        ];
        if r.method != "POST"
            || wanted
                .iter()
                .any(|(k, v)| q.get(*k).map(String::as_str) != Some(v))
            || !q.contains_key("Timestamp")
            || form.get("RoleArn").map(String::as_str) != Some(ROLE_ARN)
            || form.get("OIDCProviderArn").map(String::as_str) != Some(OIDC_PROVIDER_ARN)
            || !form.contains_key("RoleSessionName")
        {
            return (
                400,
                json,
                format!(
                    r#"{{"Code":"MissingParameter","Message":"unexpected request {} {:?} {:?}","RequestId":"contract"}}"#,
                    r.method,
                    q,
                    form.keys().collect::<Vec<_>>()
                ),
            );
        }
        if form.get("OIDCToken") != Some(&*expected.lock().expect("lock")) {
            return (400, json, fixture("error_oidc_token_invalid.json"));
        }
        let (id, secret, token, expiration) = kms.issue(lifetime);
        let body = fixture("assume_role_with_oidc.json")
            .replace("{{ACCESS_KEY_ID}}", &id)
            .replace("{{ACCESS_KEY_SECRET}}", &secret)
            .replace("{{SECURITY_TOKEN}}", &token)
            .replace("{{EXPIRATION}}", &expiration);
        (200, json, body)
    };
    common::scripted_server(Arc::new(respond)).await
}

const ROLE_ARN: &str = "acs:ram::1138105496123456:role/signet-signer";
const OIDC_PROVIDER_ARN: &str = "acs:ram::1138105496123456:oidc-provider/ack-rrsa-c2f3";

/// Signs every 300 ms for `span`; every signature must verify.
async fn sign_for(key: &Arc<dyn signet_kms::KeyProvider>, fake: &FakeKms, span: Duration) -> usize {
    let started = std::time::Instant::now();
    let mut made = 0;
    while started.elapsed() < span {
        let sig = key
            .sign(V2, SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
            .await
            .unwrap_or_else(|e| {
                panic!("signing failed {:?} into the batch: {e}", started.elapsed())
            });
        fake.public(V2)
            .verify(SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD, &sig)
            .expect("verifies");
        made += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rrsa_tokens_are_exchanged_at_sts_and_renewed_mid_batch() {
    let (fake, server) = fake("describe_key.json").await;
    let expected = Arc::new(std::sync::Mutex::new(
        "eyJhbGciOiJSUzI1NiJ9.first-projected-token".to_owned(),
    ));
    let sts = sts_double(
        Arc::clone(&fake),
        Arc::clone(&expected),
        Duration::from_secs(4),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "a-token-the-idp-never-issued").expect("write");
    let mut config = KmsConfig::new(std::env::temp_dir());
    config.environment = Environment::fixed([
        ("ALIBABA_CLOUD_ROLE_ARN", ROLE_ARN.to_owned()),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            OIDC_PROVIDER_ARN.to_owned(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.to_string_lossy().into_owned(),
        ),
        ("SIGNET_ALIBABA_STS_ENDPOINT", sts.url.clone()),
        ("HOME", "/nonexistent".to_owned()),
    ]);
    config.alibaba_endpoint = Some(server.url.clone());
    let kms = Kms::new(config);
    let key = kms
        .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
        .expect("open");

    // STS refuses a token it cannot verify: a clear refusal, not a retry loop.
    let e = key.describe().await.expect_err("bad OIDC token");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");
    assert!(
        e.to_string()
            .contains("AuthenticationFail.OIDCToken.Invalid"),
        "{e}"
    );

    // The projected token kubelet writes; then rotated halfway through the batch.
    std::fs::write(&token_file, &*expected.lock().expect("lock")).expect("write");
    let first = sign_for(&key, &fake, Duration::from_secs(5)).await;
    let rotated = "eyJhbGciOiJSUzI1NiJ9.rotated-projected-token".to_owned();
    std::fs::write(&token_file, &rotated).expect("write");
    *expected.lock().expect("lock") = rotated;
    let second = sign_for(&key, &fake, Duration::from_secs(5)).await;
    assert!(first + second >= 20, "{first} + {second} signatures");

    let exchanges = sts.seen.lock().expect("lock").len() - 1;
    assert!(
        (3..=8).contains(&exchanges),
        "10 s of signing with 4 s STS tokens: {exchanges} exchanges"
    );
    let kms_requests = server.seen.lock().expect("lock");
    assert!(kms_requests.iter().all(|r| r
        .header("x-acs-security-token")
        .is_some_and(|t| t.starts_with("CAIS-"))));
    let refused = fake
        .expired_refusals
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        refused <= 2,
        "{refused} calls went out with an expired token"
    );
}

/// The ECS instance metadata service in hardened mode: a session token first
/// (`PUT /latest/api/token`), then the role's credentials with that token.
async fn metadata_double(
    kms: Arc<FakeKms>,
    role: &'static str,
    lifetime: Duration,
) -> common::ScriptedServer {
    let session = format!("AQAEAA-{}", uuid_like());
    let respond = move |r: &SeenRequest| {
        let text = Vec::new();
        match (r.method.as_str(), r.target.as_str()) {
            ("PUT", "/latest/api/token") => {
                if r.header("x-aliyun-ecs-metadata-token-ttl-seconds")
                    .is_none()
                {
                    return (400, text, "missing TTL".into());
                }
                (200, text, session.clone())
            }
            (_, _) if r.header("x-aliyun-ecs-metadata-token") != Some(session.as_str()) => (
                401,
                text,
                "hardened mode: a session token is required".into(),
            ),
            ("GET", "/latest/meta-data/ram/security-credentials/") => (200, text, role.to_owned()),
            ("GET", path)
                if path == format!("/latest/meta-data/ram/security-credentials/{role}") =>
            {
                let (id, secret, token, expiration) = kms.issue(lifetime);
                let body = fixture("ecs_ram_role_credentials.json")
                    .replace("{{ACCESS_KEY_ID}}", &id)
                    .replace("{{ACCESS_KEY_SECRET}}", &secret)
                    .replace("{{SECURITY_TOKEN}}", &token)
                    .replace("{{EXPIRATION}}", &expiration)
                    .replace(
                        "{{LAST_UPDATED}}",
                        &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    );
                (200, text, body)
            }
            _ => (404, text, "not found".into()),
        }
    };
    common::scripted_server(Arc::new(respond)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_ram_role_credentials_from_the_hardened_metadata_service() {
    let (fake, server) = fake("describe_key.json").await;
    let metadata =
        metadata_double(Arc::clone(&fake), "signet-signer", Duration::from_secs(4)).await;
    let open = |role: &str| {
        let mut config = KmsConfig::new(std::env::temp_dir());
        config.environment = Environment::fixed([
            ("ALIBABA_CLOUD_ECS_METADATA", role.to_owned()),
            ("SIGNET_ALIBABA_METADATA_ENDPOINT", metadata.url.clone()),
            ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true".to_owned()),
            ("HOME", "/nonexistent".to_owned()),
        ]);
        config.alibaba_endpoint = Some(server.url.clone());
        Kms::new(config)
            .open(&format!("alikms://cn-hangzhou/{KEY_ID}"))
            .expect("open")
    };
    let e = open("a-role-the-instance-lacks")
        .describe()
        .await
        .expect_err("no such role");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");

    let key = open("signet-signer");
    let made = sign_for(&key, &fake, Duration::from_secs(7)).await;
    assert!(made >= 14, "{made} signatures");
    let fetched = metadata
        .seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.target.ends_with("/signet-signer"))
        .count();
    assert!(
        (2..=6).contains(&fetched),
        "7 s with 4 s credentials: {fetched} fetches"
    );
}
