//! Revocation binds to (digest, witness) (M8 of the 2026-12 review). The attacker holds a
//! signer token (or a registry webhook for a repository a signing rule covers). After an
//! operator revoked the signature of a digest and, later, rotated the witness's key as
//! routine, the attacker asks for the same digest to be signed again under another
//! repository name, which would give a fresh signature by the new key version that no
//! revocation names.

mod common;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use signet_core::Role;
use signet_testkit::image::TestImage;

use common::{message, poll, Backend, ControlPlane, Images, Verifier, VerifierOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn re_signing_a_revoked_digest_elsewhere_after_a_rotation_is_refused() {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let images = Images::start().await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    // One image, pushed under two repository names: the same digest.
    let image = TestImage::random();
    let digest = image
        .push(&images.host, "team/app", "v1")
        .await
        .expect("push");
    let again = image
        .push(&images.host, "attacker/copy", "v1")
        .await
        .expect("push the same image elsewhere");
    assert_eq!(digest, again);
    let original = format!("{}/team/app@{digest}", images.host);
    let copy = format!("{}/attacker/copy@{digest}", images.host);
    cp.sign(&original, "release").await;
    let sigs = cp
        .ok(
            Method::GET,
            &format!("/v1/signatures?image={original}"),
            None,
        )
        .await;
    let id = sigs["signatures"][0]["id"].as_str().expect("signature id");
    cp.ok(
        Method::POST,
        &format!("/v1/signatures/{id}/revoke"),
        Some(json!({"reason": "built from an unreviewed branch"})),
    )
    .await;
    let rotated = cp
        .ok(Method::POST, "/v1/witnesses/release/rotate", None)
        .await;
    assert_eq!(
        rotated["key_versions"].as_array().map(Vec::len),
        Some(2),
        "{rotated}"
    );

    // The attacker's signer token.
    let signer = signet_gateway::auth::issue(&cp.store, "ci", Role::Signer, "test")
        .await
        .expect("signer token")
        .secret
        .expose_secret()
        .to_owned();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/sign?wait=30", cp.url))
        .bearer_auth(&signer)
        .json(&json!({"image": copy, "witness": "release"}))
        .send()
        .await
        .expect("sign request");
    let status = resp.status();
    let job: serde_json::Value = resp.json().await.expect("job");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{job}");
    assert!(
        job["detail"]
            .as_str()
            .is_some_and(|d| d.contains("was revoked")),
        "{job}"
    );
    let listed = cp
        .ok(Method::GET, &format!("/v1/signatures?image={copy}"), None)
        .await;
    assert_eq!(
        listed["signatures"].as_array().map(Vec::len),
        Some(0),
        "no signature was made: {listed}"
    );

    // And the pod that runs the copy is denied.
    let v = Verifier::start(&cp, VerifierOptions::default()).await;
    v.caught_up(&cp).await;
    let denied = poll("the copy to be denied", || async {
        let r = v.validate("pod-create", "prod", &copy).await;
        (r["allowed"] == false).then_some(r)
    })
    .await;
    assert!(message(&denied).contains("revoked"), "{}", message(&denied));
}
