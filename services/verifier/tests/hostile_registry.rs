//! Attack by a pod author in an enforced namespace: the pod names an image on an internal
//! service (here on loopback, which the test verifier may reach, as under `signet up`).
//! The verifier fetches `<repo>:sha256-<hex>.sig` there; whatever the service answers
//! must not come back in the admission denial the API server shows to `kubectl`.

mod common;

use serde_json::json;

use common::{message, Backend, ControlPlane, Verifier, VerifierOptions};

const SECRET: &str = "INTERNAL-SECRET aws_secret_access_key=wJalrXUtnFEMI/K7MDENG";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_naming_an_internal_service_gets_none_of_its_answer_back() {
    let app =
        axum::Router::new().fallback(|| async { (axum::http::StatusCode::IM_A_TEAPOT, SECRET) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let internal = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });

    let cp = ControlPlane::start(Backend::Embedded).await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let verifier = Verifier::start(&cp, VerifierOptions::default()).await;
    verifier.caught_up(&cp).await;

    let digest = signet_core::Digest::of(b"an image on the internal service");
    let image = format!("{internal}/team/app@{digest}");
    let review = verifier.validate("pod-create", "prod", &image).await;
    assert_eq!(review["allowed"], false, "{review}");
    let denial = message(&review);
    assert!(
        !denial.contains("INTERNAL-SECRET"),
        "the answer leaked: {denial}"
    );
    assert!(denial.contains("HTTP 418"), "{denial}");
    server.abort();
}
