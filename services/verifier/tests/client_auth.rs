//! Who may send reviews (H2 of the 2026-12 review). The attacker is any pod in the
//! cluster that reaches the verifier's Service: it posts made-up AdmissionReviews to
//! `/validate` to write decisions and break-glass records into the audit trail, and
//! floods it. The API server presents the client certificate of its
//! `AdmissionConfiguration` kubeconfig, issued by the CA the verifier is given.

mod common;

use governor::Quota;
use std::num::NonZeroU32;

use reqwest::{Method, StatusCode};
use serde_json::json;
use signet_verifier::{ClientAuth, RateLimits};

use common::{
    break_glass_audits, https_client, https_client_as, pod_review, poll, post_review, Backend,
    ControlPlane, Images, TestCa, Verifier, VerifierOptions,
};

struct Setup {
    cp: ControlPlane,
    _images: Images,
    ca: TestCa,
    unsigned: String,
}

async fn setup() -> Setup {
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
    let (unsigned, _) = images.push("team/unsigned", "v1").await;
    Setup {
        cp,
        _images: images,
        ca: TestCa::new("kube-apiserver-webhook-ca"),
        unsigned,
    }
}

fn options(s: &Setup, auth: ClientAuth) -> VerifierOptions {
    VerifierOptions {
        client_auth: auth,
        identity: Some(s.ca.client("kube-apiserver")),
        ..VerifierOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn require_refuses_clients_without_the_api_servers_certificate() {
    let s = setup().await;
    let require = ClientAuth::Require {
        ca: s.ca.pem_file.clone(),
    };
    let v = Verifier::start(&s.cp, options(&s, require)).await;
    v.caught_up(&s.cp).await;

    // A pod with no certificate, and one with a certificate from a CA of its own.
    let stranger = https_client(&v.tls.cert);
    let own_ca = TestCa::new("attacker-ca");
    let forger = https_client_as(&v.tls.cert, Some(own_ca.client("kube-apiserver")));
    for (who, client) in [("no certificate", &stranger), ("another CA", &forger)] {
        let r = post_review(
            client,
            &v.url,
            pod_review("ops", &s.unsigned, Some("forged"), false),
        )
        .await;
        assert!(r.is_err(), "{who}: TLS must refuse the client, got {r:?}");
    }
    // The API server is answered, and its break-glass is audited.
    let r = v
        .validate_body(pod_review("ops", &s.unsigned, Some("real"), false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    poll("the API server's break-glass to be audited", || async {
        (break_glass_audits(&s.cp, "real").await == 1).then_some(())
    })
    .await;
    assert_eq!(break_glass_audits(&s.cp, "forged").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optional_answers_strangers_but_records_nothing_of_theirs() {
    let s = setup().await;
    let optional = ClientAuth::Optional {
        ca: s.ca.pem_file.clone(),
    };
    let v = Verifier::start(&s.cp, options(&s, optional)).await;
    v.caught_up(&s.cp).await;

    let stranger = https_client(&v.tls.cert);
    // A made-up break-glass: answered (a denial), never let through, never audited.
    let r = post_review(
        &stranger,
        &v.url,
        pod_review("ops", &s.unsigned, Some("forged"), false),
    )
    .await
    .expect("answered");
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.expect("review");
    assert_eq!(body["response"]["allowed"], false, "{body}");
    // Made-up denials, to pollute `signet policy impact`.
    for _ in 0..3 {
        let r = post_review(
            &stranger,
            &v.url,
            pod_review("ops", &s.unsigned, None, false),
        )
        .await
        .expect("answered");
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The API server's review, after them, is recorded; theirs never are.
    let r = v
        .validate_body(pod_review("ops", &s.unsigned, None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let real = v
        .validate_body(pod_review("ops", &s.unsigned, Some("real"), false))
        .await;
    assert_eq!(real["allowed"], true, "{real}");
    poll("the API server's decisions to be recorded", || async {
        let d =
            s.cp.ok(
                Method::GET,
                "/v1/admission-decisions?policy=glass&outcome=denied",
                None,
            )
            .await;
        let denied = d["decisions"].as_array()?.len();
        (denied >= 1 && break_glass_audits(&s.cp, "real").await == 1).then_some(denied)
    })
    .await;
    let d =
        s.cp.ok(
            Method::GET,
            "/v1/admission-decisions?policy=glass&outcome=denied",
            None,
        )
        .await;
    assert_eq!(
        d["decisions"].as_array().map(Vec::len),
        Some(1),
        "only the API server's denial is recorded: {d}"
    );
    assert_eq!(break_glass_audits(&s.cp, "forged").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_client_is_limited_per_source() {
    let s = setup().await;
    let two_an_hour = NonZeroU32::new(2).map(Quota::per_hour);
    let mut o = options(
        &s,
        ClientAuth::Optional {
            ca: s.ca.pem_file.clone(),
        },
    );
    o.rate_limits = RateLimits {
        verified: None,
        unverified: two_an_hour,
    };
    let v = Verifier::start(&s.cp, o).await;
    v.caught_up(&s.cp).await;
    let stranger = https_client(&v.tls.cert);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = post_review(
            &stranger,
            &v.url,
            pod_review("ops", &s.unsigned, None, false),
        )
        .await
        .expect("an answer");
        statuses.push(r.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // The API server is a source of its own and is still served.
    for _ in 0..4 {
        let r = v
            .validate_body(pod_review("ops", &s.unsigned, None, false))
            .await;
        assert_eq!(r["allowed"], false);
    }
}
