//! `signet up` with `gateway.tls_cert`/`tls_key`: the gateway serves HTTPS, the CLI
//! reaches it only when it trusts the certificate (`--ca-cert`), and the built-in
//! verifier reads its trust bundle over HTTPS with that certificate pinned.

mod common;

use std::time::Duration;

use signet_runtime::tls::{write_self_signed, TlsFiles};
use signet_testkit::signet::SignetUp;

use common::{bin, fails, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_verifier_reach_a_gateway_over_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tls = TlsFiles {
        cert: dir.path().join("gateway.crt"),
        key: dir.path().join("gateway.key"),
    };
    write_self_signed(&tls, &["127.0.0.1", "localhost"]).expect("certificate");
    let cert = tls.cert.to_str().expect("utf-8 path");
    let up = SignetUp::start(
        bin(),
        &[
            ("SIGNET_GATEWAY__TLS_CERT", cert),
            (
                "SIGNET_GATEWAY__TLS_KEY",
                tls.key.to_str().expect("utf-8 path"),
            ),
        ],
    )
    .await
    .expect("signet up");
    assert!(
        up.server().starts_with("https://127.0.0.1:"),
        "{}",
        up.server()
    );

    // The system's roots do not vouch for this certificate: the CLI refuses to talk.
    let out = up.cli(&["witness", "list"]).expect("run the CLI");
    let err = fails(&out, "signet witness list without --ca-cert");
    assert!(err.contains("cannot reach the signet gateway"), "{err}");

    // With the certificate as its CA it works, over HTTPS.
    let out = up
        .cli(&["--ca-cert", cert, "witness", "list"])
        .expect("run the CLI");
    ok(&out, "signet --ca-cert witness list");

    // A plain-HTTP request to the HTTPS port gets no API answer.
    let plain = up.server().replace("https://", "http://");
    let answer = reqwest::Client::new()
        .get(format!("{plain}/v1/witnesses"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        answer.as_ref().map_or(true, |r| !r.status().is_success()),
        "{answer:?}"
    );

    // The built-in verifier pinned the gateway's certificate and is ready: it has a
    // sealed bundle, fetched over HTTPS.
    let pem = std::fs::read(up.verifier_cert()).expect("verifier certificate");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("PEM")])
        .build()
        .expect("client");
    let verifier = up.verifier().expect("verifier URL");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client
            .get(format!("{verifier}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the verifier never became ready; log:\n{}",
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !up.log().contains("cannot fetch the trust bundle"),
        "{}",
        up.log()
    );
}
