//! Incremental trust bundles (issue 15): a verifier that holds the bundle of revision R
//! asks for what changed since R and is sent only the signatures revoked after it; it
//! keeps the chain of sealed deltas beside the whole bundle on disk, and a restart with
//! the control plane down decides from both. Real gateway, real store, real registry.

mod common;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use signet_core::TrustBundle;
use signet_verifier::control::SealedBundle;

use common::{poll, Backend, ControlPlane, Images, Verifier, VerifierOptions};

async fn revoke(cp: &ControlPlane, image: &str) {
    let sigs = cp
        .ok(Method::GET, &format!("/v1/signatures?image={image}"), None)
        .await;
    let id = sigs["signatures"][0]["id"].as_str().expect("signature id");
    cp.ok(
        Method::POST,
        &format!("/v1/signatures/{id}/revoke"),
        Some(json!({"reason": "test"})),
    )
    .await;
}

fn revoked_digests(bundle: &Value) -> Vec<String> {
    bundle["revoked_signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["digest"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verifier_is_sent_only_the_revocations_since_its_bundle_and_keeps_the_chain() {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let images = Images::start().await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let mut signed = Vec::new();
    for repo in ["team/a", "team/b", "team/c"] {
        let (_, digest) = images.push(repo, "v1").await;
        let image = format!("{}/{repo}@{digest}", images.host);
        cp.sign(&image, "release").await;
        signed.push((image, digest));
    }
    revoke(&cp, &signed[0].0).await;

    // The gateway: whole, then incremental from the revision after the first revocation.
    let whole = cp
        .ok(Method::GET, "/v1/trust-bundle?cluster=c1", None)
        .await;
    let r1 = whole["revision"].as_i64().expect("revision");
    assert!(whole.get("since").is_none(), "{whole}");
    assert_eq!(revoked_digests(&whole), [signed[0].1.to_string()]);
    revoke(&cp, &signed[1].0).await;
    let delta = cp
        .ok(
            Method::GET,
            &format!("/v1/trust-bundle?cluster=c1&since={r1}"),
            None,
        )
        .await;
    assert_eq!(delta["since"], r1, "{delta}");
    assert_eq!(
        revoked_digests(&delta),
        [signed[1].1.to_string()],
        "only what is new"
    );
    assert_eq!(delta["keys"], whole["keys"], "keys are whole");
    // A revision the store never reached (a restored store): the whole bundle.
    let ahead = cp
        .ok(
            Method::GET,
            "/v1/trust-bundle?cluster=c1&since=999999",
            None,
        )
        .await;
    assert!(ahead.get("since").is_none(), "{ahead}");
    assert_eq!(revoked_digests(&ahead).len(), 2);

    // A verifier that resyncs every 200 ms: one whole bundle, then deltas, kept on disk.
    let mut v = Verifier::start(
        &cp,
        VerifierOptions {
            resync_interval: Duration::from_millis(200),
            ..VerifierOptions::default()
        },
    )
    .await;
    v.caught_up(&cp).await;
    revoke(&cp, &signed[2].0).await;
    let kept = v.state_dir.join("trust-bundle-c1.json");
    let deltas = v.state_dir.join("trust-bundle-c1.deltas.json");
    let chain: Vec<TrustBundle> = poll("a kept delta with the third revocation", || async {
        let bytes = std::fs::read(&deltas).ok()?;
        let chain: Vec<SealedBundle> = serde_json::from_slice(&bytes).ok()?;
        let opened: Vec<TrustBundle> = chain
            .iter()
            .map(|s| serde_json::from_slice(&s.bytes).expect("a bundle"))
            .collect();
        opened
            .iter()
            .any(|b| b.revoked_signatures.iter().any(|r| r.digest == signed[2].1))
            .then_some(opened)
    })
    .await;
    for d in &chain {
        assert!(d.since.is_some(), "only deltas in the chain");
        assert!(
            d.revoked_signatures.len() <= 1,
            "a delta carries only what is new: {:?}",
            d.revoked_signatures
        );
    }
    let full: SealedBundle =
        serde_json::from_slice(&std::fs::read(&kept).expect("kept bundle")).expect("sealed");
    let full: TrustBundle = serde_json::from_slice(&full.bytes).expect("bundle");
    assert_eq!(full.since, None);
    assert_eq!(
        full.revoked_signatures.len(),
        2,
        "the whole one, from before"
    );

    // What a restart loads: the whole bundle, then each sealed delta, checked again.
    let keys = signet_core::PinnedKeys::new([cp.control_key.public_key().clone()]);
    let (loaded, applied) =
        signet_verifier::sync::load_kept(&kept, "c1", &keys).expect("the kept state");
    assert!(
        applied >= chain.len(),
        "{applied} of {} deltas",
        chain.len()
    );
    let mut digests: Vec<_> = loaded
        .revoked_signatures
        .iter()
        .map(|r| r.digest.clone())
        .collect();
    digests.sort();
    let mut want: Vec<_> = signed.iter().map(|(_, d)| d.clone()).collect();
    want.sort();
    assert_eq!(digests, want, "all three revocations, from the chain");
    // A chain whose link was altered is cut there.
    let mut tampered: Vec<SealedBundle> =
        serde_json::from_slice(&std::fs::read(&deltas).expect("chain")).expect("sealed");
    let last = tampered.len() - 1;
    // Still valid JSON with the same meaning, but not the bytes that were sealed.
    tampered[last].bytes.insert(1, b' ');
    let elsewhere = tempfile::tempdir().expect("dir");
    let copy = elsewhere.path().join("trust-bundle-c1.json");
    std::fs::copy(&kept, &copy).expect("copy");
    std::fs::write(
        elsewhere.path().join("trust-bundle-c1.deltas.json"),
        serde_json::to_vec(&tampered).expect("json"),
    )
    .expect("write");
    let (_, cut) = signet_verifier::sync::load_kept(&copy, "c1", &keys).expect("the kept state");
    assert_eq!(
        cut, last,
        "the altered delta and what follows are not applied"
    );

    // Restarted while the control plane is down: the kept bundle and its deltas decide.
    let dir = v.dir();
    v.stop().await;
    let mut cp = cp;
    cp.stop_gateway().await;
    let v = Verifier::start_in(&cp, VerifierOptions::default(), dir).await;
    for (image, _) in &signed {
        let denied = poll("the revoked image denied from the kept state", || async {
            let r = v.validate("pod-create", "prod", image).await;
            (r["allowed"] == false).then_some(r)
        })
        .await;
        assert!(
            common::message(&denied).contains("revoked"),
            "{}",
            common::message(&denied)
        );
    }
}
