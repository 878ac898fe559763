//! KMS credentials as clusters hand them out, through the real `signet up` started with
//! the environment a Pod gets, and no static keys anywhere:
//! - IRSA's web identity (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`), exchanged at
//!   moto's STS;
//! - EKS Pod Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI` + the authorization token
//!   file), from a stand-in for the Pod Identity Agent that hands out 6-second
//!   credentials, with a proxy in front of moto's KMS that refuses expired ones as AWS
//!   does (moto itself never checks expiry);
//! - IMDSv2, from AWS's EC2 metadata mock (tokens required).
//!
//! Every signature made is checked with the real cosign.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{bin, cosign_verifies, create_witness, fails, ok};
use signet_testkit::emulators::moto;
use signet_testkit::image::TestImage;
use signet_testkit::imds::Imds;
use signet_testkit::proxy::{Fault, FaultProxy, Seen};
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

/// What every Pod-like environment here sets: a region, an empty home (no ~/.aws), and
/// the KMS at moto unless a test puts a proxy there.
fn pod_env<'a>(home: &'a str, kms: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HOME", home),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_KMS", kms),
    ]
}

/// Creates an AWS witness on a new moto key and signs one image with it; the witness's
/// public key, for cosign.
async fn witness_signs(up: &SignetUp, key_id: &str, registry: &TestRegistry, tag: &str) -> String {
    create_witness(up, "aws", &format!("awskms:///{key_id}"));
    let pem = ok(
        &up.cli(&["witness", "export-key", "aws"]).expect("cli"),
        "export",
    );
    sign_one(up, registry, tag).await;
    pem
}

async fn sign_one(up: &SignetUp, registry: &TestRegistry, tag: &str) -> String {
    let host = registry.host();
    TestImage::random()
        .push(&host, "cloud/app", tag)
        .await
        .expect("push");
    let image = format!("{host}/cloud/app:{tag}");
    ok(
        &up.cli(&["sign", &image, "--witness", "aws", "--wait"])
            .expect("cli"),
        "sign",
    );
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_web_identity_is_exchanged_at_sts() {
    let moto = moto();
    let registry = TestRegistry::start().await.expect("docker-registry");
    let key_id = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let home = tempfile::tempdir().expect("tempdir");
    let token = home.path().join("token");
    // The projected service account token; moto's STS takes any JWT.
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2lnbmV0OnNpZ25ldCJ9.c2ln",
    )
    .expect("token");
    let home_s = home.path().to_string_lossy().into_owned();
    let kms = format!("{}/", moto.url);

    // Without the role, nothing hands out credentials: a clear refusal that names
    // what was tried.
    let mut env = pod_env(&home_s, &kms);
    env.push(("AWS_EC2_METADATA_DISABLED", "true"));
    let up = SignetUp::start(bin(), &env).await.expect("signet up");
    let msg = fails(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "aws",
            "--kms-key",
            &format!("awskms:///{key_id}"),
        ])
        .expect("cli"),
        "no credentials at all",
    );
    assert!(
        msg.contains("no AWS credentials") && msg.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
        "{msg}"
    );
    drop(up);

    let token_s = token.to_string_lossy().into_owned();
    env.extend([
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/signet-signer",
        ),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_s.as_str()),
        ("AWS_ROLE_SESSION_NAME", "signet-test"),
        ("AWS_ENDPOINT_URL_STS", moto.url.as_str()),
    ]);
    let up = SignetUp::start(bin(), &env).await.expect("signet up");
    let pem = witness_signs(&up, &key_id, &registry, "irsa").await;
    let image = format!("{}/cloud/app:irsa", registry.host());
    assert_eq!(
        cosign_verifies(&image, pem.as_bytes()),
        Ok(1),
        "cosign verifies"
    );
    assert!(
        up.log().contains("AWS credentials obtained"),
        "{}",
        up.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imdsv2_credentials_on_an_instance() {
    let moto = moto();
    let registry = TestRegistry::start().await.expect("docker-registry");
    let key_id = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let home = tempfile::tempdir().expect("tempdir");
    let home_s = home.path().to_string_lossy().into_owned();
    let expires = chrono::Utc::now() + chrono::Duration::hours(6);
    let imds = Imds::start(
        "signet-signer",
        "ASIAINSTANCEROLE0001",
        &expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
    .await
    .expect("ec2-metadata-mock");
    // KMS calls go through a proxy that sees which credentials signed them.
    let proxy = FaultProxy::start(&moto.url).await.expect("proxy");
    let kms = format!("{}/", proxy.url());
    let imds_url = imds.url();
    let mut env = pod_env(&home_s, &kms);
    env.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url.as_str()));
    let up = SignetUp::start(bin(), &env).await.expect("signet up");
    let pem = witness_signs(&up, &key_id, &registry, "imds").await;
    let image = format!("{}/cloud/app:imds", registry.host());
    assert_eq!(
        cosign_verifies(&image, pem.as_bytes()),
        Ok(1),
        "cosign verifies"
    );
}

/// Credentials the Pod Identity stand-in handed out: access key id → expiry.
type Issued = Arc<Mutex<HashMap<String, SystemTime>>>;

/// The access key id of a SigV4 `authorization` header.
fn access_key(seen: &Seen) -> Option<String> {
    let auth = seen.header("authorization")?;
    let credential = auth.split("Credential=").nth(1)?;
    Some(credential.split('/').next()?.to_owned())
}

/// The EKS Pod Identity Agent's side of the container credentials protocol: `GET` with
/// the token file's contents as `Authorization`, JSON credentials back. Each answer is a
/// new key valid for `lifetime`.
async fn pod_identity_agent(token: String, issued: Issued, lifetime: Duration) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/v1/credentials",
        axum::routing::get(move |headers: HeaderMap| {
            let token = token.clone();
            let issued = Arc::clone(&issued);
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(token.as_str()) {
                    return (StatusCode::UNAUTHORIZED, "bad token".to_owned());
                }
                let mut issued = issued.lock().expect("lock");
                let id = format!("ASIAPODIDENTITY{:05}", issued.len() + 1);
                let expires = SystemTime::now() + lifetime;
                issued.insert(id.clone(), expires);
                let body = serde_json::json!({
                    "AccessKeyId": id,
                    "SecretAccessKey": "pod-identity-secret",
                    "Token": format!("session-{}", uuid::Uuid::new_v4()),
                    "AccountId": "123456789012",
                    "Expiration": chrono::DateTime::<chrono::Utc>::from(expires).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                (StatusCode::OK, body.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1/credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_credentials_expire_mid_batch_and_are_renewed() {
    let moto = moto();
    let registry = TestRegistry::start().await.expect("docker-registry");
    let key_id = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let issued: Issued = Arc::default();
    let token = format!("pod-identity-{}", uuid::Uuid::new_v4());
    let agent =
        pod_identity_agent(token.clone(), Arc::clone(&issued), Duration::from_secs(6)).await;

    // AWS refuses a request signed with a key that expired, or that nobody issued.
    let proxy = FaultProxy::start(&moto.url).await.expect("proxy");
    let check = Arc::clone(&issued);
    let expired = move |r: &Seen| {
        let Some(id) = access_key(r) else { return true };
        check
            .lock()
            .expect("lock")
            .get(&id)
            .is_none_or(|at| SystemTime::now() >= *at)
    };
    proxy.inject(
        Fault::status(400)
            .when(expired.clone())
            .header("content-type", "application/x-amz-json-1.1")
            .body(r#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#),
    );

    let home = tempfile::tempdir().expect("tempdir");
    let token_file = home.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, &token).expect("token file");
    let home_s = home.path().to_string_lossy().into_owned();
    let token_s = token_file.to_string_lossy().into_owned();
    let kms = format!("{}/", proxy.url());
    let mut env = pod_env(&home_s, &kms);
    env.extend([
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_s.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);
    let up = SignetUp::start(bin(), &env).await.expect("signet up");
    let pem = witness_signs(&up, &key_id, &registry, "pod-0").await;

    // A batch that outlives two credentials: every image is signed.
    let started = Instant::now();
    let mut images = Vec::new();
    while started.elapsed() < Duration::from_secs(14) {
        images.push(sign_one(&up, &registry, &format!("pod-{}", images.len() + 1)).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for image in &images {
        assert_eq!(cosign_verifies(image, pem.as_bytes()), Ok(1), "{image}");
    }
    let fetched = issued.lock().expect("lock").len();
    let is_kms = |r: &Seen| r.header("x-amz-target").is_some();
    let refused = proxy.faulted(is_kms);
    assert!(
        fetched >= 3,
        "14 s of signing with 6 s credentials took {fetched} fetches from the agent"
    );
    assert!(
        proxy.seen(is_kms) > images.len(),
        "the KMS was asked through the checking proxy"
    );
    // Renewal happens ahead of expiry; a refusal can only come from a request that sat
    // in a queue past the last 1.5 s of a credential's life, and it is then retried.
    assert!(
        refused <= 2,
        "{refused} KMS calls went out with expired credentials"
    );
}
