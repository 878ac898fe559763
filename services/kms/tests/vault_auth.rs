//! Vault/OpenBao logins as clusters provide them, against a real OpenBao: AppRole, and
//! Kubernetes auth, where OpenBao checks the service account token with the TokenReview
//! of a real kube-apiserver. Tokens live two seconds, so a batch of signatures outlives
//! several of them: every signature must still be made.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_core::SignatureAlgorithm;
use signet_kms::{Environment, KeyProvider, Kms, KmsConfig, KmsErrorKind};
use signet_testkit::emulators::http_json;
use signet_testkit::kube::KubeCluster;

const PAYLOAD: &[u8] = b"{\"critical\":{\"type\":\"cosign container image signature\"}}";

/// How long a login's token lives; the batches below last several times that.
const TOKEN_TTL: &str = "2s";

fn bao_call(bao: &common::Emulator, method: &str, path: &str, body: serde_json::Value) -> String {
    let (status, text) = http_json(
        method,
        &format!("{}/v1/{path}", bao.url),
        &[("X-Vault-Token", &bao.token)],
        &body.to_string(),
    );
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {text}"
    );
    text
}

/// A transit key, and a policy that may read and sign with it and nothing else.
fn key_and_policy(bao: &common::Emulator) -> (String, String) {
    let key = common::unique("login-key");
    bao.bao_create_key(&key, "rsa-2048");
    let policy = common::unique("signer");
    bao_call(
        bao,
        "PUT",
        &format!("sys/policies/acl/{policy}"),
        serde_json::json!({"policy": format!(
            "path \"transit/keys/{key}\" {{ capabilities = [\"read\"] }}\npath \"transit/sign/{key}/*\" {{ capabilities = [\"update\"] }}\n"
        )}),
    );
    (key, policy)
}

fn kms(vars: Vec<(&str, String)>) -> Kms {
    let mut config = KmsConfig::new(std::env::temp_dir());
    config.timeout = Duration::from_secs(30);
    config.environment = Environment::fixed(vars);
    Kms::new(config)
}

/// Signs in waves of four concurrent signatures, every 400 ms, for `span`; every
/// signature must verify with the key's public key.
async fn sign_batch(key: Arc<dyn KeyProvider>, span: Duration) -> usize {
    let public = key.describe().await.expect("describe after login").versions[0]
        .public_key
        .clone();
    let started = Instant::now();
    let mut made = 0;
    while started.elapsed() < span {
        let wave: Vec<_> = (0..4)
            .map(|_| {
                let key = Arc::clone(&key);
                tokio::spawn(async move {
                    key.sign("1", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
                        .await
                })
            })
            .collect();
        for task in wave {
            let sig = task.await.expect("task").unwrap_or_else(|e| {
                panic!("signing failed {:?} into the batch: {e}", started.elapsed())
            });
            public
                .verify(SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD, &sig)
                .expect("verifies");
            made += 1;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_renews_through_a_batch_and_rereads_the_secret_id() {
    let bao = common::bao();
    let (key, policy) = key_and_policy(&bao);
    let mount = common::unique("approle");
    bao_call(
        &bao,
        "POST",
        &format!("sys/auth/{mount}"),
        serde_json::json!({"type": "approle"}),
    );
    bao_call(
        &bao,
        "POST",
        &format!("auth/{mount}/role/signet"),
        serde_json::json!({"token_policies": [policy], "token_ttl": TOKEN_TTL, "token_max_ttl": TOKEN_TTL}),
    );
    let role_id: serde_json::Value = serde_json::from_str(&bao_call(
        &bao,
        "GET",
        &format!("auth/{mount}/role/signet/role-id"),
        serde_json::json!({}),
    ))
    .expect("json");
    let role_id = role_id["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    // A secret id good for 100 logins: what is left of it counts signet's logins.
    let secret: serde_json::Value = serde_json::from_str(&bao_call(
        &bao,
        "POST",
        &format!("auth/{mount}/role/signet/secret-id"),
        serde_json::json!({"num_uses": 100}),
    ))
    .expect("json");
    let secret_id = secret["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("secret-id");
    std::fs::write(&secret_file, "wrong-secret-id\n").expect("write");

    let kms = kms(vec![
        ("VAULT_ADDR", bao.url.clone()),
        ("SIGNET_VAULT_AUTH", "approle".into()),
        ("SIGNET_VAULT_AUTH_MOUNT", mount.clone()),
        ("SIGNET_VAULT_ROLE_ID", role_id),
        (
            "SIGNET_VAULT_SECRET_ID_FILE",
            secret_file.to_string_lossy().into_owned(),
        ),
    ]);
    let provider = kms.open(&format!("hashivault://{key}")).expect("open");

    // A wrong secret id: a clear refusal, not retried as if Vault were down.
    let e = provider.describe().await.expect_err("wrong secret id");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");
    assert!(e.to_string().contains("AppRole login"), "{e}");
    assert!(!e.retryable(), "{e}");
    assert!(!e.to_string().contains(&secret_id), "{e}");

    // The mounted Secret is fixed without a restart: the file is read at each login.
    std::fs::write(&secret_file, format!("{secret_id}\n")).expect("write");
    let made = sign_batch(Arc::clone(&provider), Duration::from_secs(5)).await;
    assert!(made >= 32, "{made} signatures");

    let left: serde_json::Value = serde_json::from_str(&bao_call(
        &bao,
        "POST",
        &format!("auth/{mount}/role/signet/secret-id/lookup"),
        serde_json::json!({"secret_id": secret_id}),
    ))
    .expect("json");
    let logins = 100
        - left["data"]["secret_id_num_uses"]
            .as_u64()
            .expect("uses left");
    // 5 s of signing with 2 s tokens renewed at 1.5 s: at least three logins, and not one
    // per signature (they share the token, and a wave waits for one login, not four).
    assert!(
        (3..=8).contains(&logins),
        "{logins} logins for {made} signatures"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_login_is_checked_by_the_api_servers_token_review() {
    let bao = common::bao();
    let (key, policy) = key_and_policy(&bao);
    let mut cluster = KubeCluster::builder()
        .start()
        .await
        .expect("kube control plane");
    cluster.create_namespace("signet").await.expect("namespace");
    let kubectl = |args: &[&str]| {
        let out = cluster.kubectl().args(args).output().expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // OpenBao's reviewer: a service account allowed to create TokenReviews, as the
    // OpenBao documentation sets it up.
    kubectl(&["create", "serviceaccount", "openbao-auth", "-n", "signet"]);
    kubectl(&[
        "create",
        "clusterrolebinding",
        "openbao-auth-delegator",
        "--clusterrole=system:auth-delegator",
        "--serviceaccount=signet:openbao-auth",
    ]);
    let reviewer_jwt = kubectl(&["create", "token", "openbao-auth", "-n", "signet"]);
    kubectl(&["create", "serviceaccount", "signet-signer", "-n", "signet"]);
    kubectl(&["create", "serviceaccount", "someone-else", "-n", "signet"]);

    let mount = common::unique("kubernetes");
    bao_call(
        &bao,
        "POST",
        &format!("sys/auth/{mount}"),
        serde_json::json!({"type": "kubernetes"}),
    );
    bao_call(
        &bao,
        "POST",
        &format!("auth/{mount}/config"),
        serde_json::json!({
            "kubernetes_host": cluster.server(),
            "kubernetes_ca_cert": std::fs::read_to_string(cluster.ca_file()).expect("ca"),
            "token_reviewer_jwt": reviewer_jwt,
            "disable_local_ca_jwt": true,
        }),
    );
    bao_call(
        &bao,
        "POST",
        &format!("auth/{mount}/role/signet-signer"),
        serde_json::json!({
            "bound_service_account_names": ["signet-signer"],
            "bound_service_account_namespaces": ["signet"],
            "token_policies": [policy],
            "token_ttl": TOKEN_TTL,
            "token_max_ttl": TOKEN_TTL,
        }),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    let provider_for = |token: String| {
        std::fs::write(&token_file, token).expect("write token");
        kms(vec![
            ("VAULT_ADDR", bao.url.clone()),
            ("SIGNET_VAULT_AUTH", "kubernetes".into()),
            ("SIGNET_VAULT_AUTH_MOUNT", mount.clone()),
            ("SIGNET_VAULT_ROLE", "signet-signer".into()),
            (
                "SIGNET_VAULT_KUBERNETES_TOKEN_FILE",
                token_file.to_string_lossy().into_owned(),
            ),
        ])
        .open(&format!("hashivault://{key}"))
        .expect("open")
    };

    // Another service account's token: the API server vouches for it, the role does not
    // bind it.
    let other = provider_for(kubectl(&[
        "create",
        "token",
        "someone-else",
        "-n",
        "signet",
    ]));
    let e = other.describe().await.expect_err("unbound service account");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");
    assert!(
        e.to_string()
            .contains("Kubernetes login (role signet-signer) refused"),
        "{e}"
    );

    // A token the API server did not issue (signed by nobody): TokenReview says no.
    let forged = provider_for(format!(
        "{}.{}.{}",
        "eyJhbGciOiJSUzI1NiJ9",
        "eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OnNpZ25ldDpzaWduZXQtc2lnbmVyIn0",
        "AAAA"
    ));
    let e = forged.describe().await.expect_err("forged token");
    assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");

    // The Pod's own token: logged in, and renewed through the batch.
    let signer = provider_for(kubectl(&[
        "create",
        "token",
        "signet-signer",
        "-n",
        "signet",
        "--duration=10m",
    ]));
    let made = sign_batch(signer, Duration::from_secs(5)).await;
    assert!(made >= 32, "{made} signatures");
}
