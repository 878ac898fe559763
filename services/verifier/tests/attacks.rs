//! Attacks on admission, each written as its attacker acts, against a real control plane,
//! a real docker-registry and the verifier over HTTPS. The bus plays no part in them, so
//! they run on the embedded one. Each failed before its fix (security review 2026-12:
//! M1 exemption globs, M4 hostile `.sig` manifests, L5 the UPDATE shortcut).

mod common;

use serde_json::json;

use common::{message, Backend, ControlPlane, Images, Verifier, VerifierOptions};

/// Pod author against a policy that exempts cluster add-on registries the natural way:
/// the attacker's own registry holds repositories named after the exempt hosts. Before
/// the fix `*` crossed `/`, so `*.k8s.io/*` matched
/// `<attacker registry>/x.k8s.io/miner:latest` and the miner ran unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookalike_exemption_hosts_do_not_admit_an_attackers_image() {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let images = Images::start().await;
    cp.witness("release").await;
    cp.policy(
        "prod-images",
        "release",
        "prod",
        json!({"exemptions": [
            "*.k8s.io/*",
            "*.dkr.ecr.*.amazonaws.com/*",
            "*.gcr.io/*",
            format!("{}/vendor/**", images.host),
        ]}),
    )
    .await;
    let verifier = Verifier::start(&cp, VerifierOptions::default()).await;
    verifier.caught_up(&cp).await;
    for repo in [
        "x.k8s.io/miner",
        "registry.k8s.io/pause",
        "x.dkr.ecr.eu-west-1.amazonaws.com/miner",
        "eu.gcr.io/miner",
    ] {
        let (image, _) = images.push(repo, "latest").await;
        let r = verifier.validate("pod-create", "prod", &image).await;
        assert_eq!(
            r["allowed"],
            false,
            "{image} is not on an exempt host, so it must be checked: {}",
            message(&r)
        );
        assert!(message(&r).contains("unsigned"), "{}", message(&r));
    }
    // What the exemptions are for still works: anything under an exempt prefix.
    let (vendor, _) = images.push("vendor/tools/busybox", "1.36").await;
    let r = verifier.validate("pod-create", "prod", &vendor).await;
    assert_eq!(r["allowed"], true, "{}", message(&r));
}
