//! `signet workloads list` and `signet images list --running` through the real `signet
//! up`: a verifier token reports an inventory, and the CLI shows what runs where, with
//! each cluster's inventory age.

mod common;

use common::{bin, create_local_witness, ok};
use serde_json::json;
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_what_runs_and_where_trusted_images_run() {
    let registry = TestRegistry::start().await.expect("docker-registry");
    let digest = TestImage::random()
        .push(&registry.host(), "shop/web", "v1")
        .await
        .expect("push");
    let image = format!("{}/shop/web:v1", registry.host());
    let up = SignetUp::start(bin(), &[]).await.expect("signet up");
    create_local_witness(&up, "release");
    ok(
        &up.cli(&["sign", &image, "--witness", "release", "--wait"])
            .expect("cli"),
        "sign",
    );
    let token = ok(
        &up.cli(&[
            "token",
            "create",
            "--name",
            "edge-verifier",
            "--role",
            "verifier",
            "--cluster",
            "edge",
        ])
        .expect("cli"),
        "verifier token",
    );
    let container = |pod: &str, standing: &str, reason: Option<&str>| {
        json!({
            "namespace": "shop", "pod": pod, "pod_uid": format!("uid-{pod}"), "container": "web",
            "image": image, "digest": digest.to_string(), "standing": standing,
            "policy": "shop", "reason": reason, "evaluated_at": chrono::Utc::now(),
        })
    };
    let report = json!({
        "cluster": "edge",
        "sync": {"id": "s1", "page": 0, "last": true},
        "containers": [
            container("web-1", "trusted", None),
            container("web-2", "revoked", Some("witness or key version revoked")),
        ],
    });
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/inventory", up.server()))
        .bearer_auth(token.trim())
        .json(&report)
        .send()
        .await
        .expect("report");
    assert!(answer.status().is_success(), "{:?}", answer.text().await);

    let listed = ok(
        &up.cli(&["workloads", "list"]).expect("cli"),
        "workloads list",
    );
    assert!(listed.contains("# cluster edge: reported"), "{listed}");
    assert!(!listed.contains("STALE"), "{listed}");
    let web2 = listed
        .lines()
        .find(|l| l.contains("web-2"))
        .unwrap_or_else(|| panic!("web-2 in:\n{listed}"));
    assert!(
        web2.contains("revoked") && web2.contains("(witness or key version revoked)"),
        "{web2}"
    );
    let revoked = ok(
        &up.cli(&["workloads", "list", "--standing", "revoked"])
            .expect("cli"),
        "workloads list --standing revoked",
    );
    assert!(
        revoked.contains("web-2") && !revoked.contains("web-1"),
        "{revoked}"
    );

    let images = ok(
        &up.cli(&["images", "list", "--running"]).expect("cli"),
        "images list --running",
    );
    assert!(images.contains("runs in: edge/shop (2)"), "{images}");
}
