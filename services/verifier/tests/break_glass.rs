//! Break-glass admissions are always audited, and dry runs never are (H2, L9 of the
//! 2026-12 review). The attacker floods the verifier with reviews so the report queue
//! overflows while an operator breaks glass; the control plane is down and the verifier
//! restarts; a dry run carries the break-glass annotation.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use common::{
    break_glass_audits, pod_review, poll, post_review, Backend, ControlPlane, Images, Verifier,
    VerifierOptions,
};

/// Policies in the flooded namespace: every review there yields one decision per policy.
const FLOOD_POLICIES: usize = 100;
/// Reviews the flood sends: 150,000 decisions, three times the reporter's backlog.
const FLOOD_REVIEWS: usize = 1_500;

/// A control plane with witness `release`, an image it signed and one it did not, and a
/// policy on c1/ops that honours break-glass.
async fn setup() -> (ControlPlane, Images, String, String) {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let images = Images::start().await;
    cp.witness("release").await;
    cp.policy(
        "glass",
        "release",
        "ops",
        json!({"allow_break_glass": true}),
    )
    .await;
    let (signed, _) = images.push("team/app", "v1").await;
    let (unsigned, _) = images.push("team/unsigned", "v1").await;
    cp.sign(&signed, "release").await;
    (cp, images, signed, unsigned)
}

/// The attacker holds the report pipeline full (the control plane is down, so every
/// decision waits in the backlog) while an operator breaks glass. The break-glass
/// decision must reach the control plane once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_decisions_does_not_evict_a_break_glass_one() {
    let (mut cp, _images, signed, unsigned) = setup().await;
    for i in 0..FLOOD_POLICIES {
        cp.policy(&format!("busy-{i}"), "release", "busy", json!({}))
            .await;
    }
    let v = Verifier::start(&cp, VerifierOptions::default()).await;
    v.caught_up(&cp).await;
    assert!(
        v.allowed("busy", &signed).await,
        "the flood image is admitted"
    );
    cp.stop_gateway().await;

    // The flood runs on; the operator breaks glass in the middle of it.
    let answered = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn({
        let (client, url, answered) = (v.client.clone(), v.url.clone(), answered.clone());
        async move {
            futures::stream::iter(0..FLOOD_REVIEWS)
                .map(|_| post_review(&client, &url, pod_review("busy", &signed, None, false)))
                .buffer_unordered(8)
                .filter(|r| futures::future::ready(matches!(r, Ok(r) if r.status().is_success())))
                .for_each(|_| {
                    answered.fetch_add(1, Ordering::Relaxed);
                    futures::future::ready(())
                })
                .await;
        }
    });
    poll("the flood to be under way", || async {
        (answered.load(Ordering::Relaxed) >= FLOOD_REVIEWS / 4).then_some(())
    })
    .await;
    let glass = v
        .validate_body(pod_review("ops", &unsigned, Some("incident 77"), false))
        .await;
    assert_eq!(glass["allowed"], true, "{glass}");
    flood.await.expect("the flood ends");
    assert_eq!(
        answered.load(Ordering::Relaxed),
        FLOOD_REVIEWS,
        "every flood review is answered"
    );

    cp.start_gateway().await;
    poll("the break-glass decision to be audited", || async {
        (break_glass_audits(&cp, "incident 77").await == 1).then_some(())
    })
    .await;
    let recorded = cp
        .ok(
            Method::GET,
            "/v1/admission-decisions?policy=glass&outcome=break_glass",
            None,
        )
        .await;
    assert_eq!(
        recorded["decisions"].as_array().map(Vec::len),
        Some(1),
        "{recorded}"
    );
}

/// The control plane is down when an operator breaks glass, and the verifier is then
/// restarted (a rollout, an eviction) before the control plane comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_break_glass_decision_survives_a_restart_while_the_gateway_is_down() {
    let (mut cp, _images, _signed, unsigned) = setup().await;
    let mut v = Verifier::start(&cp, VerifierOptions::default()).await;
    v.caught_up(&cp).await;
    cp.stop_gateway().await;
    let glass = v
        .validate_body(pod_review("ops", &unsigned, Some("incident 78"), false))
        .await;
    assert_eq!(glass["allowed"], true, "{glass}");
    let kept = std::fs::read_dir(v.state_dir.join("break-glass"))
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(kept, 1, "the decision is on disk before the answer");
    v.stop().await;

    let dir: Arc<tempfile::TempDir> = v.dir();
    drop(v);
    let again = Verifier::start_in(&cp, VerifierOptions::default(), dir).await;
    cp.start_gateway().await;
    poll("the kept break-glass decision to be audited", || async {
        (break_glass_audits(&cp, "incident 78").await == 1).then_some(())
    })
    .await;
    poll("the acknowledged decision to leave the disk", || async {
        let left = std::fs::read_dir(again.state_dir.join("break-glass"))
            .map(|d| d.count())
            .unwrap_or(1);
        (left == 0).then_some(())
    })
    .await;
}

/// Server-side dry run (`kubectl apply --dry-run=server`) with the break-glass
/// annotation: answered as the real thing would be, recorded nowhere, announced to no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dry_run_is_answered_but_not_recorded() {
    let (cp, _images, _signed, unsigned) = setup().await;
    let v = Verifier::start(&cp, VerifierOptions::default()).await;
    v.caught_up(&cp).await;
    let dry = v
        .validate_body(pod_review("ops", &unsigned, Some("dry 1"), true))
        .await;
    assert_eq!(dry["allowed"], true, "{dry}");
    let denied = v
        .validate_body(pod_review("ops", &unsigned, None, true))
        .await;
    assert_eq!(denied["allowed"], false, "{denied}");
    // Real reviews after them, down both paths (break-glass and the batched reports):
    // once they are recorded, dry runs sent before them would have been too.
    let real = v
        .validate_body(pod_review("ops", &unsigned, Some("real 1"), false))
        .await;
    assert_eq!(real["allowed"], true, "{real}");
    let real_denial = v
        .validate_body(pod_review("ops", &unsigned, None, false))
        .await;
    assert_eq!(real_denial["allowed"], false, "{real_denial}");
    poll("the real decisions to be recorded", || async {
        let v = cp
            .ok(
                Method::GET,
                "/v1/admission-decisions?policy=glass&outcome=denied",
                None,
            )
            .await;
        let denied = v["decisions"]
            .as_array()?
            .iter()
            .any(|d| d["dry_run"] != true);
        (denied && break_glass_audits(&cp, "real 1").await == 1).then_some(())
    })
    .await;
    let all = cp
        .ok(Method::GET, "/v1/admission-decisions?policy=glass", None)
        .await;
    let decisions = all["decisions"].as_array().cloned().unwrap_or_default();
    assert!(
        decisions.iter().all(|d| d["dry_run"] != true),
        "a dry run was recorded: {all}"
    );
    assert_eq!(break_glass_audits(&cp, "dry 1").await, 0);
    let events = cp
        .ok(Method::GET, "/v1/audit?action=admission.break_glass", None)
        .await;
    assert_eq!(
        events["entries"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
}
