//! The verifier's registry fallback, through a fault-injecting proxy in front of a real
//! docker-registry: concurrent misses for one digest share one fetch, and a registry
//! failure is never remembered as a denial.

mod common;

use std::time::Duration;

use serde_json::json;
use signet_testkit::proxy::{Fault, FaultProxy};

use common::{message, Backend, ControlPlane, Images, Verifier, VerifierOptions};

/// An image signed through the proxy host, and a verifier started after the signature
/// was published: it missed the event, so its cache is cold for this digest.
struct Cold {
    _cp: ControlPlane,
    _images: Images,
    proxy: FaultProxy,
    verifier: Verifier,
    pinned: String,
    sig_tag: String,
}

async fn cold() -> Cold {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let images = Images::start().await;
    let proxy = FaultProxy::start(&images.registry.url())
        .await
        .expect("fault proxy");
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let (_, digest) = images.push("team/app", "v1").await;
    let via_proxy = format!("{}/team/app:v1", proxy.host());
    cp.sign(&via_proxy, "release").await;
    let verifier = Verifier::start(
        &cp,
        VerifierOptions {
            budget: Duration::from_secs(5),
            ..VerifierOptions::default()
        },
    )
    .await;
    verifier.caught_up(&cp).await;
    Cold {
        pinned: format!("{}/team/app@{digest}", proxy.host()),
        sig_tag: digest.signature_tag(),
        _cp: cp,
        _images: images,
        proxy,
        verifier,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_fetch() {
    let c = cold().await;
    let sig = c.sig_tag.clone();
    let is_sig =
        move |s: &signet_testkit::proxy::Seen| s.path.ends_with(&format!("/manifests/{sig}"));
    let before = c.proxy.seen(&is_sig);
    let reviews = (0..16).map(|_| c.verifier.allowed("prod", &c.pinned));
    let results = futures::future::join_all(reviews).await;
    assert!(results.iter().all(|ok| *ok), "{results:?}");
    assert_eq!(
        c.proxy.seen(&is_sig) - before,
        1,
        "16 concurrent admissions of one digest fetched its signatures once"
    );
    // And the verdict is cached: no more fetches.
    assert!(c.verifier.allowed("prod", &c.pinned).await);
    assert_eq!(c.proxy.seen(&is_sig) - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_failures_are_not_remembered_as_denials() {
    let c = cold().await;
    c.proxy.inject(Fault::status(503));
    let r = c.verifier.validate("pod-create", "prod", &c.pinned).await;
    assert_eq!(r["allowed"], false, "an enforced namespace fails closed");
    assert!(
        message(&r).contains("registry unreachable"),
        "{}",
        message(&r)
    );
    c.proxy.heal();
    // The very next admission asks again, and passes.
    assert!(c.verifier.allowed("prod", &c.pinned).await);
}
