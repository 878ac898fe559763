//! Vault/OpenBao transit through a real OpenBao dev server, plus scripted servers for
//! throttling and timeouts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use signet_core::SignatureAlgorithm;
use signet_kms::{Environment, KeyProvider, Kms, KmsConfig, KmsErrorKind};

const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"registry.local/app"},"image":{"docker-manifest-digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222"},"type":"cosign container image signature"},"optional":null}"#;

fn kms_with(vars: Vec<(&str, String)>, timeout: Duration) -> Kms {
    let mut config = KmsConfig::new(std::env::temp_dir());
    config.timeout = timeout;
    config.environment = Environment::fixed(vars);
    Kms::new(config)
}

fn kms(addr: &str, token: &str) -> Kms {
    kms_with(
        vec![
            ("VAULT_ADDR", addr.to_owned()),
            ("VAULT_TOKEN", token.to_owned()),
        ],
        Duration::from_secs(30),
    )
}

fn create_key(bao: &common::Emulator, key_type: &str) -> String {
    let name = common::unique("witness");
    bao.bao_create_key(&name, key_type);
    name
}

async fn open(kms: &Kms, name: &str) -> Arc<dyn KeyProvider> {
    kms.open(&format!("hashivault://{name}")).expect("open")
}

#[tokio::test]
async fn signs_with_openbao_and_signatures_verify() {
    let bao = common::bao();
    let name = create_key(&bao, "rsa-2048");
    let kms = kms(&bao.url, &bao.token);
    let key = open(&kms, &name).await;
    assert_eq!(key.provider(), "hashivault");

    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.algorithm, SignatureAlgorithm::RsaPkcs1Sha256);
    assert_eq!(desc.primary_version, "1");
    let public = &desc.versions[0].public_key;
    assert_eq!(public.bits(), 2048);
    for alg in [
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPssSha256,
    ] {
        let sig = key.sign("1", alg, PAYLOAD).await.expect("sign");
        public
            .verify(alg, PAYLOAD, &sig)
            .expect("signet_core verifies");
        common::openssl_verifies(public, alg, PAYLOAD, &sig);
    }
}

#[tokio::test]
async fn token_from_a_file() {
    let bao = common::bao();
    let name = create_key(&bao, "rsa-3072");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", bao.token)).expect("write token");
    let kms = kms_with(
        vec![
            ("VAULT_ADDR", bao.url.clone()),
            (
                "SIGNET_VAULT_TOKEN_FILE",
                file.to_string_lossy().into_owned(),
            ),
        ],
        Duration::from_secs(30),
    );
    let desc = open(&kms, &name)
        .await
        .describe()
        .await
        .expect("describe with file token");
    assert_eq!(desc.versions[0].public_key.bits(), 3072);
}

#[tokio::test]
async fn rotation_adds_a_primary_and_old_versions_still_sign() {
    let bao = common::bao();
    let name = create_key(&bao, "rsa-2048");
    let kms = kms(&bao.url, &bao.token);
    let key = open(&kms, &name).await;
    assert_eq!(key.rotate().await.expect("rotate"), "2");

    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.primary_version, "2");
    let versions: Vec<&str> = desc.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["1", "2"]);
    assert_ne!(desc.versions[0].public_key, desc.versions[1].public_key);
    for v in &desc.versions {
        let sig = key
            .sign(&v.version, SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
            .await
            .expect("sign with each version");
        v.public_key
            .verify(SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD, &sig)
            .expect("verifies under its own version");
    }
    let e = key
        .sign("3", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect_err("no version 3");
    assert!(matches!(e.kind, KmsErrorKind::NotFound(_)), "{e}");
}

#[tokio::test]
async fn symmetric_keys_are_refused() {
    let bao = common::bao();
    let name = create_key(&bao, "aes256-gcm96");
    let kms = kms(&bao.url, &bao.token);
    let key = open(&kms, &name).await;
    let e = key.describe().await.expect_err("symmetric");
    assert!(matches!(e.kind, KmsErrorKind::WrongKeyType(_)), "{e}");
    assert!(e.to_string().contains("aes256-gcm96"), "{e}");
    let e = key.rotate().await.expect_err("not rotated either");
    assert!(matches!(e.kind, KmsErrorKind::WrongKeyType(_)), "{e}");
}

#[tokio::test]
async fn missing_keys_and_bad_tokens() {
    let bao = common::bao();
    let e = open(&kms(&bao.url, &bao.token), "no-such-key")
        .await
        .describe()
        .await
        .expect_err("missing");
    assert!(matches!(e.kind, KmsErrorKind::NotFound(_)), "{e}");

    let name = create_key(&bao, "rsa-2048");
    let e = open(&kms(&bao.url, "wrong-token-value"), &name)
        .await
        .describe()
        .await
        .expect_err("bad token");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");
    assert!(!e.to_string().contains("wrong-token-value"), "{e}");
}

#[tokio::test]
async fn throttling_is_retryable_and_requests_are_prehashed() {
    let server = common::scripted_server(Arc::new(|_req: &common::SeenRequest| {
        (
            429,
            vec![("Content-Type".into(), "application/json".into())],
            r#"{"errors":["request path \"transit/sign/k/sha2-256\": rate limit quota exceeded"]}"#
                .into(),
        )
    }))
    .await;
    let kms = kms_with(
        vec![
            ("VAULT_ADDR", server.url.clone()),
            ("VAULT_TOKEN", "s.token".into()),
            ("VAULT_NAMESPACE", "team-a".into()),
        ],
        Duration::from_secs(30),
    );
    let e = open(&kms, "k")
        .await
        .sign("1", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect_err("throttled");
    assert!(matches!(e.kind, KmsErrorKind::Throttled(_)), "{e}");
    assert!(e.retryable());
    assert!(e.to_string().contains("rate limit quota exceeded"), "{e}");

    let seen = server.seen.lock().expect("lock")[0].clone();
    assert_eq!(seen.target, "/v1/transit/sign/k/sha2-256");
    assert_eq!(seen.header("x-vault-token"), Some("s.token"));
    assert_eq!(seen.header("x-vault-namespace"), Some("team-a"));
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json");
    assert_eq!(body["prehashed"], true);
    assert_eq!(body["signature_algorithm"], "pkcs1v15");
    assert_eq!(body["key_version"], 1);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, PAYLOAD);
    use base64::Engine as _;
    assert_eq!(
        body["input"],
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    );
}

#[tokio::test]
async fn a_silent_vault_times_out() {
    let server = common::silent_server().await;
    let kms = kms_with(
        vec![
            ("VAULT_ADDR", server.url.clone()),
            ("VAULT_TOKEN", "t".into()),
        ],
        Duration::from_millis(300),
    );
    let e = open(&kms, "k")
        .await
        .describe()
        .await
        .expect_err("no answer");
    assert_eq!(e.kind, KmsErrorKind::Timeout, "{e}");
    assert!(e.retryable());
}

#[test]
fn debug_redacts_the_token() {
    let kms = kms("http://127.0.0.1:1", "s.very-secret-token");
    let key = kms.open("hashivault://k").expect("open");
    let debug = format!("{kms:?} {key:?}");
    assert!(!debug.contains("very-secret-token"), "{debug}");
}
