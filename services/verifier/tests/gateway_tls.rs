//! The verifier→gateway path over HTTPS with a pinned CA (`verifier.gateway_ca`), as
//! the Helm chart sets it up by default: trust bundles come only from a gateway whose
//! certificate that CA issued. Someone who can answer for the gateway's address (a
//! spoofed Service, a poisoned DNS entry) with another certificate, or over plain HTTP,
//! gets no bundle read, whatever they would serve.

mod common;

use std::time::Duration;

use secrecy::SecretString;
use signet_core::PinnedKeys;
use signet_verifier::control::ControlPlane as Gateway;

use common::{Backend, ControlPlane, TestCa, Verifier, VerifierOptions};

fn client(cp: &ControlPlane, url: &str, ca: &TestCa) -> Gateway {
    Gateway::new(
        url,
        "c1",
        SecretString::from(cp.verifier_token.clone()),
        PinnedKeys::new([cp.control_key.public_key().clone()]),
        Some(&ca.pem_file),
    )
    .expect("control plane client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bundles_come_only_from_the_gateway_the_pinned_ca_vouches_for() {
    let mut cp = ControlPlane::start(Backend::Embedded).await;
    let plain = cp.url.clone();
    let ca = TestCa::new("signet-gateway-ca");
    cp.serve_https(&ca).await;
    assert!(cp.url.starts_with("https://"), "{}", cp.url);

    // The verifier pins the gateway's CA and reads its bundle over HTTPS (`start` waits
    // until it is ready, which it is only with a bundle).
    let _v = Verifier::start(
        &cp,
        VerifierOptions {
            gateway_ca: Some(ca.pem_file.clone()),
            ..VerifierOptions::default()
        },
    )
    .await;
    let (bundle, _) = client(&cp, &cp.url, &ca)
        .bundle()
        .await
        .expect("a bundle over HTTPS");
    assert_eq!(bundle.cluster, "c1");

    // The same gateway address, pinned to another CA: the handshake fails.
    let other = TestCa::new("attacker-ca");
    let err = client(&cp, &cp.url, &other)
        .bundle()
        .await
        .expect_err("a certificate the pinned CA did not issue");
    let msg = format!("{err:#}");
    assert!(msg.contains("127.0.0.1"), "{msg}");

    // An impostor on plain HTTP, even one that answers with a genuine sealed bundle,
    // is not asked: with a pinned CA only https:// is spoken.
    let mut http_gateway = ControlPlane::start(Backend::Embedded).await;
    let err = client(&http_gateway, &http_gateway.url.clone(), &ca)
        .bundle()
        .await
        .expect_err("plain HTTP with a pinned CA");
    assert!(format!("{err:#}").contains("http"), "{err:#}");
    assert!(plain.starts_with("http://"));

    // And the verifier that pinned the CA goes on deciding: a gateway restart over
    // HTTPS with a renewed certificate from the same CA is taken.
    cp.serve_https(&ca).await;
    let again = tokio::time::timeout(Duration::from_secs(10), client(&cp, &cp.url, &ca).bundle())
        .await
        .expect("answers in time")
        .expect("the renewed certificate chains to the pinned CA");
    assert_eq!(again.0.cluster, "c1");
    http_gateway.stop_gateway().await;
}
