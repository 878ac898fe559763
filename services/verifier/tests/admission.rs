//! The verifier end to end, over real HTTPS, on every bus: AdmissionReview fixtures for
//! every workload kind; event-fed admission with the registry stopped; revocation;
//! policy toggles; a restarted verifier; the control plane down; reports and impact.

mod common;

use reqwest::Method;
use serde_json::json;
use signet_core::admission::BREAK_GLASS_ANNOTATION;
use signet_core::SimpleSigning;
use signet_registry::SignatureLayer;

use common::{message, poll, Backend, ControlPlane, Images, Verifier, VerifierOptions};

on_every_bus!(
    every_workload_kind,
    event_fed_admission_needs_no_registry,
    revocation_leads_to_denial,
    a_revoked_signature_is_refused_though_the_registry_keeps_it,
    policy_toggles_propagate,
    restarted_verifier_resyncs,
    serves_from_cache_while_the_control_plane_is_down,
    dry_run_reports_decisions_and_impact,
);

const CREATE_FIXTURES: [&str; 9] = [
    "pod-create",
    "pod-from-replicaset-create",
    "deployment-create",
    "replicaset-create",
    "statefulset-create",
    "daemonset-create",
    "job-create",
    "cronjob-create",
    "replicationcontroller-create",
];

/// A control plane with witness `release` and an enabled enforce policy on c1/prod, a
/// registry with `signed` (by tag) signed and `unsigned` not, and a verifier.
struct Setup {
    cp: ControlPlane,
    images: Images,
    verifier: Verifier,
    signed: String,
    unsigned: String,
}

async fn setup(backend: Backend, options: VerifierOptions) -> Setup {
    let cp = ControlPlane::start(backend).await;
    let images = Images::start().await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let (signed, _) = images.push("team/app", "v1").await;
    let (unsigned, _) = images.push("team/unsigned", "v1").await;
    let verifier = Verifier::start(&cp, options).await;
    cp.sign(&signed, "release").await;
    verifier.caught_up(&cp).await;
    Setup {
        cp,
        images,
        verifier,
        signed,
        unsigned,
    }
}

async fn every_workload_kind(backend: Backend) {
    let s = setup(backend, VerifierOptions::default()).await;
    let v = &s.verifier;
    for fixture in CREATE_FIXTURES {
        let ok = v.validate(fixture, "prod", &s.signed).await;
        assert_eq!(ok["allowed"], true, "{fixture}: {}", message(&ok));
        let denied = v.validate(fixture, "prod", &s.unsigned).await;
        assert_eq!(denied["allowed"], false, "{fixture}");
        let m = message(&denied);
        assert!(m.contains(&s.unsigned), "{fixture}: names the image: {m}");
        assert!(
            m.contains("prod-images"),
            "{fixture}: names the policy: {m}"
        );
        assert!(m.contains("unsigned"), "{fixture}: says why: {m}");
        // Outside the protected namespace anything goes.
        let elsewhere = v.validate(fixture, "dev", &s.unsigned).await;
        assert_eq!(elsewhere["allowed"], true, "{fixture}");
    }
    // An init container with an unsigned image is caught too.
    let init = v
        .review(
            "/validate",
            "deployment-create",
            &[
                ("NAMESPACE", "prod"),
                ("IMAGE", &s.signed),
                ("INIT_IMAGE", &s.unsigned),
            ],
        )
        .await;
    assert_eq!(init["allowed"], false);
    // kubectl debug with an unsigned image in an ephemeral container.
    let debug = v
        .review(
            "/validate",
            "pod-ephemeral-update",
            &[
                ("NAMESPACE", "prod"),
                ("IMAGE", &s.signed),
                ("INIT_IMAGE", &s.signed),
                ("EPHEMERAL_IMAGE", &s.unsigned),
            ],
        )
        .await;
    assert_eq!(debug["allowed"], false, "{}", message(&debug));
    // Scaling down an existing (unverifiable) workload is not re-verified...
    for fixture in [
        "deployment-scale-down-update",
        "deployment-scale-subresource-update",
    ] {
        let r = v.validate(fixture, "prod", &s.unsigned).await;
        assert_eq!(r["allowed"], true, "{fixture}");
    }
    // ...but a rollout to a new unsigned image is.
    let rollout = v
        .review(
            "/validate",
            "deployment-image-update",
            &[
                ("NAMESPACE", "prod"),
                ("IMAGE", &s.unsigned),
                ("INIT_IMAGE", &s.signed),
                ("OLD_IMAGE", &s.signed),
            ],
        )
        .await;
    assert_eq!(rollout["allowed"], false);
    // A tag that does not exist, and a garbled reference.
    let missing = v
        .validate(
            "pod-create",
            "prod",
            &format!("{}/team/app:nope", s.images.host),
        )
        .await;
    assert!(
        message(&missing).contains("tag not resolvable"),
        "{}",
        message(&missing)
    );
    let garbled = v.validate("pod-create", "prod", "Not An Image").await;
    assert!(message(&garbled).contains("invalid image reference"));
    // The tagged image that passed is reported with its digest.
    let ok = v.validate("pod-create", "prod", &s.signed).await;
    let pinned = ok["auditAnnotations"]["verified-images"]
        .as_str()
        .unwrap_or_default();
    assert!(
        pinned.contains("@sha256:") || pinned.contains("=sha256:"),
        "{ok}"
    );
    // The Trusted Image annotation.
    let mutated = v
        .review(
            "/mutate",
            "pod-create",
            &[
                ("NAMESPACE", "prod"),
                ("IMAGE", &s.signed),
                ("INIT_IMAGE", &s.unsigned),
            ],
        )
        .await;
    assert_eq!(mutated["allowed"], true);
    assert_eq!(mutated["patchType"], "JSONPatch");
    let patch = base64_decode(mutated["patch"].as_str().expect("patch"));
    let patch: serde_json::Value = serde_json::from_slice(&patch).expect("JSON patch");
    let listed: serde_json::Value =
        serde_json::from_str(patch[0]["value"].as_str().expect("annotation")).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["image"], s.signed.as_str());
    assert_eq!(listed[0]["witnesses"], json!(["release"]));
    // Digest pinning (review M7, on for new policies): the Pod's verified tag now names
    // the digest that was verified; the unverified init image is left alone.
    let digest = listed[0]["digest"].as_str().expect("digest");
    let replaced: Vec<&serde_json::Value> = patch
        .as_array()
        .into_iter()
        .flatten()
        .filter(|op| op["op"] == "replace")
        .collect();
    assert_eq!(replaced.len(), 1, "{patch}");
    assert_eq!(replaced[0]["path"], "/spec/containers/0/image");
    assert_eq!(replaced[0]["value"], format!("{}@{digest}", s.signed));
    // Controllers keep their tags (GitOps tools would see drift); their Pods get pinned.
    let deployment = v
        .review(
            "/mutate",
            "deployment-create",
            &[
                ("NAMESPACE", "prod"),
                ("IMAGE", &s.signed),
                ("INIT_IMAGE", &s.signed),
            ],
        )
        .await;
    let patch = base64_decode(deployment["patch"].as_str().expect("patch"));
    let patch: serde_json::Value = serde_json::from_slice(&patch).expect("JSON patch");
    assert!(
        patch
            .as_array()
            .into_iter()
            .flatten()
            .all(|op| op["op"] != "replace"),
        "{patch}"
    );
    // A policy that opts out leaves Pods' tags alone.
    s.cp.ok(
        Method::PATCH,
        "/v1/policies/prod-images",
        Some(json!({"pin_digests": false})),
    )
    .await;
    v.caught_up(&s.cp).await;
    let unpinned = v
        .review(
            "/mutate",
            "pod-create",
            &[
                ("NAMESPACE", "prod"),
                ("IMAGE", &s.signed),
                ("INIT_IMAGE", &s.signed),
            ],
        )
        .await;
    let patch = base64_decode(unpinned["patch"].as_str().expect("patch"));
    let patch: serde_json::Value = serde_json::from_slice(&patch).expect("JSON patch");
    assert_eq!(patch.as_array().map(Vec::len), Some(1), "{patch}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

async fn event_fed_admission_needs_no_registry(backend: Backend) {
    let mut s = setup(backend, VerifierOptions::default()).await;
    let (fresh, _) = s.images.push("team/fresh", "v2").await;
    // A signature with a bad signature value on another image: signatures exist, none valid.
    let (forged, forged_digest) = s.images.push("team/forged", "v1").await;
    let forged_ref = signet_core::ImageRef::parse(&forged).expect("ref");
    let payload = SimpleSigning::new(forged_ref.repository_ref(), forged_digest.clone()).to_bytes();
    common_registry()
        .publish_signature(
            &forged_ref,
            &forged_digest,
            &SignatureLayer::new(payload, vec![7; 256]),
        )
        .await
        .expect("publish a forged signature");
    let r = s.verifier.validate("pod-create", "prod", &forged).await;
    assert!(message(&r).contains("invalid signature"), "{}", message(&r));

    // Resolve the tag while the registry is up (a Pod names it), then sign, then stop
    // the registry right after the signature is published.
    let digest_ref = {
        let first = s.verifier.validate("pod-create", "prod", &fresh).await;
        assert_eq!(first["allowed"], false, "not signed yet");
        s.cp.sign(&fresh, "release").await["digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    };
    s.images.registry.stop().expect("stop the registry");
    let pinned = format!("{}/team/fresh@{digest_ref}", s.images.host);
    let started = std::time::Instant::now();
    poll("the freshly signed image to be admitted", || async {
        s.verifier.allowed("prod", &pinned).await.then_some(())
    })
    .await;
    eprintln!(
        "{backend:?}: freshly signed image admitted {:?} after publication, registry down",
        started.elapsed()
    );
    // The tag was resolved before the registry went down: it is cached too.
    assert!(s.verifier.allowed("prod", &fresh).await);
    // Something never seen cannot be checked now, and an enforced namespace fails closed.
    let never = format!(
        "{}/team/never@{}",
        s.images.host,
        signet_core::Digest::of(b"never")
    );
    let r = s.verifier.validate("pod-create", "prod", &never).await;
    assert_eq!(r["allowed"], false);
    assert!(
        message(&r).contains("registry unreachable"),
        "{}",
        message(&r)
    );
}

fn common_registry() -> signet_registry::RegistryClient {
    signet_registry::RegistryClient::new(signet_registry::RegistryConfig::for_loopback())
        .expect("registry client")
}

async fn revocation_leads_to_denial(backend: Backend) {
    let s = setup(backend, VerifierOptions::default()).await;
    assert!(s.verifier.allowed("prod", &s.signed).await);
    s.cp.ok(Method::POST, "/v1/witnesses/release/revoke", None)
        .await;
    let started = std::time::Instant::now();
    let denied = poll("the revoked witness's image to be denied", || async {
        let r = s.verifier.validate("pod-create", "prod", &s.signed).await;
        (r["allowed"] == false).then_some(r)
    })
    .await;
    eprintln!(
        "{backend:?}: denied {:?} after revocation",
        started.elapsed()
    );
    let m = message(&denied);
    assert!(m.contains("revoked"), "{m}");
}

/// One signature revoked (not its key): the image is denied at once, by the running
/// verifier (event) and by one started afterwards that finds the layer in the registry
/// (trust bundle); the same witness's other images stay admitted, and signet will not
/// sign the image again with that witness.
async fn a_revoked_signature_is_refused_though_the_registry_keeps_it(backend: Backend) {
    let s = setup(backend, VerifierOptions::default()).await;
    let (other, _) = s.images.push("team/other", "v1").await;
    s.cp.sign(&other, "release").await;
    assert!(s.verifier.allowed("prod", &s.signed).await);
    assert!(s.verifier.allowed("prod", &other).await);
    let sigs =
        s.cp.ok(
            Method::GET,
            &format!("/v1/signatures?image={}", s.signed),
            None,
        )
        .await;
    let id = sigs["signatures"][0]["id"].as_str().expect("signature id");
    s.cp.ok(
        Method::POST,
        &format!("/v1/signatures/{id}/revoke"),
        Some(json!({"reason": "built from an unreviewed branch"})),
    )
    .await;
    let started = std::time::Instant::now();
    let denied = poll("the revoked signature's image to be denied", || async {
        let r = s.verifier.validate("pod-create", "prod", &s.signed).await;
        (r["allowed"] == false).then_some(r)
    })
    .await;
    eprintln!(
        "{backend:?}: denied {:?} after the signature was revoked",
        started.elapsed()
    );
    let m = message(&denied);
    assert!(
        m.contains("revoked") && m.contains("built from an unreviewed branch"),
        "{m}"
    );
    assert!(
        s.verifier.allowed("prod", &other).await,
        "the witness's other signatures still count"
    );
    // A verifier that never saw the event: the registry still has the layer, the
    // trust bundle says it is revoked.
    let fresh = Verifier::start(&s.cp, VerifierOptions::default()).await;
    fresh.caught_up(&s.cp).await;
    let r = fresh.validate("pod-create", "prod", &s.signed).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("revoked"), "{}", message(&r));
    assert!(fresh.allowed("prod", &other).await);
    // Signing it again does not undo the revocation.
    let (status, job) =
        s.cp.call(
            Method::POST,
            "/v1/sign?wait=30",
            Some(json!({"image": s.signed, "witness": "release"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{job}");
    assert!(
        job["detail"]
            .as_str()
            .is_some_and(|d| d.contains("was revoked")),
        "{job}"
    );
}

async fn policy_toggles_propagate(backend: Backend) {
    let s = setup(backend, VerifierOptions::default()).await;
    let v = &s.verifier;
    assert!(!v.allowed("prod", &s.unsigned).await);
    s.cp.ok(
        Method::PATCH,
        "/v1/policies/prod-images",
        Some(json!({"enabled": false})),
    )
    .await;
    poll("disabling the policy to take effect", || async {
        v.allowed("prod", &s.unsigned).await.then_some(())
    })
    .await;
    s.cp.ok(
        Method::PATCH,
        "/v1/policies/prod-images",
        Some(json!({"enabled": true, "namespace": "team-*"})),
    )
    .await;
    poll("re-enabling it for team-* to take effect", || async {
        (!v.allowed("team-a", &s.unsigned).await).then_some(())
    })
    .await;
    assert!(
        v.allowed("prod", &s.unsigned).await,
        "prod is no longer covered"
    );
    // A policy naming a witness the verifier has no keys for: the keys arrive by re-sync.
    s.cp.witness("qa").await;
    let (qa_image, _) = s.images.push("team/qa", "v1").await;
    s.cp.sign(&qa_image, "qa").await;
    s.cp.policy("qa-only", "qa", "qa", json!({})).await;
    poll("the new policy to apply to qa", || async {
        (!v.allowed("qa", &s.unsigned).await).then_some(())
    })
    .await;
    poll("the new policy's witness keys to arrive", || async {
        v.allowed("qa", &qa_image).await.then_some(())
    })
    .await;
    assert!(
        !v.allowed("qa", &s.signed).await,
        "release's signature does not count for qa"
    );
    // Deleting a policy frees its namespace.
    s.cp.ok(Method::DELETE, "/v1/policies/qa-only", None).await;
    poll("deleting the policy to take effect", || async {
        v.allowed("qa", &s.unsigned).await.then_some(())
    })
    .await;
}

async fn restarted_verifier_resyncs(backend: Backend) {
    let mut s = setup(backend, VerifierOptions::default()).await;
    assert!(s.verifier.allowed("prod", &s.signed).await);
    s.verifier.stop().await;
    // Changes while it is away.
    s.cp.ok(
        Method::PATCH,
        "/v1/policies/prod-images",
        Some(json!({"namespace": "payments"})),
    )
    .await;
    s.cp.ok(Method::POST, "/v1/witnesses/release/revoke", None)
        .await;
    let again = Verifier::start_in(&s.cp, VerifierOptions::default(), s.verifier.dir()).await;
    again.caught_up(&s.cp).await;
    assert!(
        again.allowed("prod", &s.unsigned).await,
        "prod is no longer covered"
    );
    let r = again.validate("pod-create", "payments", &s.signed).await;
    assert_eq!(
        r["allowed"], false,
        "the revocation happened while it was down"
    );
    assert!(message(&r).contains("revoked"), "{}", message(&r));
}

async fn serves_from_cache_while_the_control_plane_is_down(backend: Backend) {
    let mut s = setup(backend, VerifierOptions::default()).await;
    assert!(s.verifier.allowed("prod", &s.signed).await);
    s.cp.stop_gateway().await;
    assert!(
        s.verifier.allowed("prod", &s.signed).await,
        "decided from the cache"
    );
    assert!(
        !s.verifier.allowed("prod", &s.unsigned).await,
        "and the last bundle"
    );
    // A verifier that restarts while the control plane is down decides from the bundle it
    // kept on disk (and the registry, its cache being new).
    s.verifier.stop().await;
    let again = Verifier::start_in(&s.cp, VerifierOptions::default(), s.verifier.dir()).await;
    assert!(again.allowed("prod", &s.signed).await);
    assert!(!again.allowed("prod", &s.unsigned).await);
    // Back up: changes flow again.
    s.cp.start_gateway().await;
    s.cp.ok(
        Method::PATCH,
        "/v1/policies/prod-images",
        Some(json!({"enabled": false})),
    )
    .await;
    poll("the change made after the outage to arrive", || async {
        again.allowed("prod", &s.unsigned).await.then_some(())
    })
    .await;
}

async fn dry_run_reports_decisions_and_impact(backend: Backend) {
    let s = setup(backend, VerifierOptions::default()).await;
    s.cp.policy("trial", "release", "staging", json!({"mode": "dry-run"}))
        .await;
    s.cp.policy(
        "glass",
        "release",
        "ops",
        json!({"allow_break_glass": true}),
    )
    .await;
    s.verifier.caught_up(&s.cp).await;
    for fixture in ["deployment-create", "pod-create", "job-create"] {
        let r = s.verifier.validate(fixture, "staging", &s.unsigned).await;
        assert_eq!(r["allowed"], true, "dry-run never denies");
        assert!(r["warnings"].is_null(), "nor warns: {r}");
    }
    assert!(s.verifier.allowed("staging", &s.signed).await);
    let impact = poll("the dry-run decisions to be reported", || async {
        let v =
            s.cp.ok(Method::GET, "/v1/policies/trial/impact", None)
                .await;
        (v["impact"]["decisions"] == 4).then_some(v)
    })
    .await;
    assert_eq!(impact["impact"]["would_block"], 3, "{impact}");
    assert_eq!(impact["impact"]["reasons"]["unsigned"], 3);
    assert_eq!(impact["impact"]["namespaces"]["staging"], 3);
    let decisions =
        s.cp.ok(
            Method::GET,
            "/v1/admission-decisions?policy=trial&outcome=would_deny",
            None,
        )
        .await;
    assert_eq!(decisions["decisions"].as_array().map(Vec::len), Some(3));
    // Break-glass where the policy allows it: admitted, audited, announced.
    let glass = s
        .verifier
        .review(
            "/validate",
            "pod-from-replicaset-create",
            &[
                ("NAMESPACE", "ops"),
                ("IMAGE", &s.unsigned),
                ("INIT_IMAGE", &s.unsigned),
            ],
        )
        .await;
    assert_eq!(glass["allowed"], false, "no annotation, no break-glass");
    let body = std::fs::read_to_string(format!("{}/deployment-create.json", common::FIXTURES))
        .expect("fixture");
    let with_glass = body.replace(
        "\"kubectl.kubernetes.io/last-applied-configuration\"",
        &format!("\"{BREAK_GLASS_ANNOTATION}\": \"incident 42\", \"kubectl.kubernetes.io/last-applied-configuration\""),
    );
    let path = s.verifier.dir().path().join("glass.json");
    std::fs::write(&path, with_glass).expect("write");
    let uid = uuid::Uuid::new_v4().to_string();
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("{{UID}}", &uid)
        .replace("{{NAMESPACE}}", "ops")
        .replace("{{IMAGE}}", &s.unsigned)
        .replace("{{INIT_IMAGE}}", &s.unsigned);
    let resp: serde_json::Value = s
        .verifier
        .client
        .post(format!("{}/validate", s.verifier.url))
        .header("Content-Type", "application/json")
        .body(text)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    let warning = resp["response"]["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("break-glass (incident 42)"), "{warning}");
    poll("the break-glass admission to be audited", || async {
        let v =
            s.cp.ok(Method::GET, "/v1/audit?action=admission.break_glass", None)
                .await;
        let e = v["entries"].as_array()?.first()?.clone();
        (e["detail"]["reason"] == "incident 42").then_some(())
    })
    .await;
}
