//! AWS KMS through moto in server mode (real RSA keys and signatures), plus scripted
//! servers for throttling and timeouts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use signet_core::SignatureAlgorithm;
use signet_kms::{Environment, Kms, KmsConfig, KmsErrorKind};

const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"registry.local/app"},"image":{"docker-manifest-digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"},"type":"cosign container image signature"},"optional":null}"#;
const SECRET: &str = "moto-secret-never-printed";

fn env_for(endpoint: &str) -> Environment {
    Environment::fixed([
        ("AWS_ACCESS_KEY_ID", "AKIATESTING"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
    ])
}

fn kms(endpoint: &str, timeout: Duration) -> Kms {
    let dir = std::env::temp_dir();
    let mut config = KmsConfig::new(dir);
    config.timeout = timeout;
    config.environment = env_for(endpoint);
    Kms::new(config)
}

#[tokio::test]
async fn signs_with_moto_and_signatures_verify() {
    let moto = common::moto();
    let key_id = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let kms = kms(&moto.url, Duration::from_secs(30));
    let key = kms.open(&format!("awskms:///{key_id}")).expect("open");
    assert_eq!(key.provider(), "awskms");

    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.algorithm, SignatureAlgorithm::RsaPkcs1Sha256);
    assert_eq!(
        desc.primary_version, key_id,
        "an AWS key's only version is its key id"
    );
    assert_eq!(desc.versions.len(), 1);
    let public = &desc.versions[0].public_key;
    assert_eq!(public.bits(), 2048);

    for alg in [
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPssSha256,
    ] {
        let sig = key
            .sign(&desc.primary_version, alg, PAYLOAD)
            .await
            .expect("sign");
        public
            .verify(alg, PAYLOAD, &sig)
            .expect("signet_core verifies");
        common::openssl_verifies(public, alg, PAYLOAD, &sig);
    }
}

#[tokio::test]
async fn aliases_resolve_to_the_key_id() {
    let moto = common::moto();
    let key_id = moto.moto_create_key("RSA_3072", "SIGN_VERIFY");
    let alias = format!("alias/{}", common::unique("signet"));
    moto.moto_call(
        "CreateAlias",
        &format!(r#"{{"AliasName":"{alias}","TargetKeyId":"{key_id}"}}"#),
    );
    let key = kms(&moto.url, Duration::from_secs(30))
        .open(&format!("awskms:///{alias}"))
        .expect("open");
    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.primary_version, key_id);
    assert_eq!(desc.versions[0].public_key.bits(), 3072);
    let sig = key
        .sign(
            &desc.primary_version,
            SignatureAlgorithm::RsaPkcs1Sha256,
            PAYLOAD,
        )
        .await
        .expect("sign");
    common::openssl_verifies(
        &desc.versions[0].public_key,
        SignatureAlgorithm::RsaPkcs1Sha256,
        PAYLOAD,
        &sig,
    );
}

#[tokio::test]
async fn payloads_over_4096_bytes_are_signed_as_digests() {
    let moto = common::moto();
    let key_id = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let key = kms(&moto.url, Duration::from_secs(30))
        .open(&format!("awskms:///{key_id}"))
        .expect("open");
    let big = vec![b'a'; 5000];
    // moto ignores MessageType=DIGEST and hashes the digest again, so its signature over a
    // large payload cannot verify; AWS signs the digest as given. Only the call is checked.
    let sig = key
        .sign(&key_id, SignatureAlgorithm::RsaPkcs1Sha256, &big)
        .await
        .expect("sign a large payload");
    assert_eq!(sig.len(), 256);
}

#[tokio::test]
async fn symmetric_and_encrypt_only_keys_are_refused() {
    let moto = common::moto();
    let kms = kms(&moto.url, Duration::from_secs(30));
    for (spec, usage) in [
        ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"),
        ("RSA_2048", "ENCRYPT_DECRYPT"),
    ] {
        let key_id = moto.moto_create_key(spec, usage);
        let e = kms
            .open(&format!("awskms:///{key_id}"))
            .expect("open")
            .describe()
            .await
            .expect_err("not a signing key");
        assert!(
            matches!(e.kind, KmsErrorKind::WrongKeyType(_)),
            "{spec}/{usage}: {e}"
        );
        let text = e.to_string();
        assert!(
            text.contains(spec) && text.contains("SIGN_VERIFY"),
            "{text}"
        );
        assert!(!e.retryable());
    }
}

#[tokio::test]
async fn missing_keys_are_not_found_with_a_request_id() {
    let moto = common::moto();
    let e = kms(&moto.url, Duration::from_secs(30))
        .open("awskms:///alias/does-not-exist")
        .expect("open")
        .describe()
        .await
        .expect_err("no such key");
    assert!(matches!(e.kind, KmsErrorKind::NotFound(_)), "{e}");
    assert!(e.request_id.is_some(), "moto sends x-amzn-requestid: {e}");
    assert!(
        e.to_string()
            .starts_with("awskms key awskms:///alias/does-not-exist: not found"),
        "{e}"
    );
    assert!(!e.to_string().contains(SECRET));
}

#[tokio::test]
async fn rotation_is_refused_with_advice() {
    let moto = common::moto();
    let key_id = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let e = kms(&moto.url, Duration::from_secs(30))
        .open(&format!("awskms:///{key_id}"))
        .expect("open")
        .rotate()
        .await
        .expect_err("AWS cannot rotate");
    assert!(matches!(e.kind, KmsErrorKind::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("create a new asymmetric key"), "{e}");
}

#[tokio::test]
async fn throttling_is_retryable() {
    let server = common::scripted_server(Arc::new(|_req: &common::SeenRequest| {
        (
            400,
            vec![
                ("Content-Type".into(), "application/x-amz-json-1.1".into()),
                ("x-amzn-RequestId".into(), "req-throttle-1".into()),
            ],
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
        )
    }))
    .await;
    let key = kms(&server.url, Duration::from_secs(30))
        .open("awskms:///alias/busy")
        .expect("open");
    let e = key
        .sign(
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            SignatureAlgorithm::RsaPkcs1Sha256,
            PAYLOAD,
        )
        .await
        .expect_err("throttled");
    assert!(matches!(e.kind, KmsErrorKind::Throttled(_)), "{e}");
    assert!(e.retryable());
    assert_eq!(e.request_id.as_deref(), Some("req-throttle-1"));
    assert!(
        e.to_string().ends_with("(request id req-throttle-1)"),
        "{e}"
    );

    // The request the provider sent: a signed KMS Sign call with a RAW message.
    let seen = server.seen.lock().expect("lock")[0].clone();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header("x-amz-target"), Some("TrentService.Sign"));
    let auth = seen.header("authorization").expect("signed");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIATESTING/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/kms/aws4_request"), "{auth}");
    let body: serde_json::Value = serde_json::from_slice(&seen.body).expect("json body");
    assert_eq!(body["MessageType"], "RAW");
    assert_eq!(body["SigningAlgorithm"], "RSASSA_PKCS1_V1_5_SHA_256");
}

#[tokio::test]
async fn server_errors_are_retryable_and_client_errors_are_not() {
    let server = common::scripted_server(Arc::new(|_req: &common::SeenRequest| {
        (503, vec![], "upstream unavailable".into())
    }))
    .await;
    let key = kms(&server.url, Duration::from_secs(30))
        .open("awskms:///alias/x")
        .expect("open");
    let e = key.describe().await.expect_err("503");
    assert!(
        matches!(e.kind, KmsErrorKind::Unavailable(_)) && e.retryable(),
        "{e}"
    );

    let server = common::scripted_server(Arc::new(|_req: &common::SeenRequest| {
        (
            400,
            vec![],
            r#"{"__type":"AccessDeniedException","Message":"not allowed"}"#.into(),
        )
    }))
    .await;
    let key = kms(&server.url, Duration::from_secs(30))
        .open("awskms:///alias/x")
        .expect("open");
    let e = key.describe().await.expect_err("denied");
    assert!(
        matches!(e.kind, KmsErrorKind::PermissionDenied(_)) && !e.retryable(),
        "{e}"
    );
}

#[tokio::test]
async fn a_silent_kms_times_out() {
    let server = common::silent_server().await;
    let key = kms(&server.url, Duration::from_millis(300))
        .open("awskms:///alias/slow")
        .expect("open");
    let e = key
        .sign("k", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect_err("no answer");
    assert_eq!(e.kind, KmsErrorKind::Timeout, "{e}");
    assert!(e.retryable());
}

#[tokio::test]
async fn an_unreachable_kms_is_unavailable() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let key = kms(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5))
        .open("awskms:///alias/gone")
        .expect("open");
    let e = key.describe().await.expect_err("refused");
    assert!(matches!(e.kind, KmsErrorKind::Unavailable(_)), "{e}");
    assert!(e.retryable());
}

#[test]
fn opening_needs_credentials_and_a_valid_uri() {
    let mut config = KmsConfig::new(std::env::temp_dir());
    config.environment =
        Environment::fixed([("AWS_REGION", "us-east-1"), ("HOME", "/nonexistent")]);
    let kms = Kms::new(config);
    let e = kms.open("awskms:///alias/x").expect_err("no credentials");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");
    assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");

    let kms = self::kms("http://127.0.0.1:1", Duration::from_secs(1));
    for bad in [
        "awskms://",
        "awskms://host-only",
        "awskms:///has space",
        "awskms://AKIA:secret@host/k",
    ] {
        let e = kms.open(bad).expect_err(bad);
        assert!(matches!(e.kind, KmsErrorKind::InvalidUri(_)), "{bad}: {e}");
        assert!(!e.to_string().contains("secret@"), "{e}");
    }
}

#[test]
fn debug_redacts_credentials() {
    let kms = kms("http://127.0.0.1:1", Duration::from_secs(1));
    let key = kms.open("awskms:///alias/x").expect("open");
    let debug = format!("{kms:?} {key:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(
        debug.contains("AKIATESTING"),
        "the access key id is not secret: {debug}"
    );
}
