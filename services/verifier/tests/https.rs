//! The webhook's HTTPS side: a rotated certificate is served without a restart, and an
//! enforced namespace fails closed within the decision budget when the registry hangs.

mod common;

use std::time::Duration;

use serde_json::json;
use signet_verifier::TlsFiles;

use common::{https_client, message, poll, Backend, ControlPlane, Verifier, VerifierOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_certificate_is_served() {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let v = Verifier::start(&cp, VerifierOptions::default()).await;
    // cert-manager writes the new pair in place; here, into a side dir first so the old
    // certificate can still be trusted by the old client.
    let side = tempfile::tempdir().expect("tempdir");
    let new = TlsFiles {
        cert: side.path().join("tls.crt"),
        key: side.path().join("tls.key"),
    };
    signet_verifier::tls::write_self_signed(&new, &["localhost", "127.0.0.1"])
        .expect("new certificate");
    let old_cert = side.path().join("old.crt");
    std::fs::copy(&v.tls.cert, &old_cert).expect("keep the old certificate");
    let new_client = https_client(&new.cert);
    assert!(
        new_client
            .get(format!("{}/healthz", v.url))
            .send()
            .await
            .is_err(),
        "the new certificate is not served yet"
    );
    std::fs::copy(&new.key, &v.tls.key).expect("rotate key");
    std::fs::copy(&new.cert, &v.tls.cert).expect("rotate certificate");
    poll("the rotated certificate to be served", || async {
        let r = new_client
            .get(format!("{}/healthz", v.url))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // A new connection (a pooled one would keep its old session).
    assert!(
        https_client(&old_cert)
            .get(format!("{}/healthz", v.url))
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    // Garbage in the files keeps the current certificate.
    std::fs::write(&v.tls.cert, "not a certificate").expect("write garbage");
    let r = new_client
        .get(format!("{}/readyz", v.url))
        .send()
        .await
        .expect("still served");
    assert!(r.status().is_success());
}

/// A "registry" that accepts connections and never answers.
async fn hanging_registry() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (host, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enforced_namespaces_fail_closed_within_the_budget() {
    let cp = ControlPlane::start(Backend::Embedded).await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    cp.policy("soft", "release", "soft", json!({"mode": "warn"}))
        .await;
    let v = Verifier::start(
        &cp,
        VerifierOptions {
            budget: Duration::from_millis(500),
            ..VerifierOptions::default()
        },
    )
    .await;
    v.caught_up(&cp).await;
    let (host, _registry) = hanging_registry().await;
    let image = format!("{host}/team/app:v1");
    let started = std::time::Instant::now();
    let r = v.validate("pod-create", "prod", &image).await;
    let took = started.elapsed();
    assert_eq!(r["allowed"], false, "fail closed");
    let m = message(&r);
    assert!(m.contains("registry unreachable"), "{m}");
    assert!(m.contains("time budget"), "{m}");
    eprintln!("answered a hanging registry in {took:?} with a 500ms budget");
    // Warn mode lets it through, with the warning.
    let r = v.validate("pod-create", "soft", &image).await;
    assert_eq!(r["allowed"], true);
    assert!(r["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .contains("registry unreachable"));
}
