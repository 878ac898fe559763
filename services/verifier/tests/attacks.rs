//! Attacks on admission, each written as its attacker acts, against a real control plane,
//! a real docker-registry and the verifier over HTTPS. The bus plays no part in them, so
//! they run on the embedded one. Each failed before its fix (security review 2026-12:
//! M1 exemption globs, M3 slow clients, M4 hostile `.sig` manifests, L5 the UPDATE
//! shortcut).

mod common;

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signet_core::{Digest, ImageRef, SignatureAlgorithm, SimpleSigning};
use signet_kms::{Kms, KmsConfig};
use signet_runtime::settings::HttpLimits;

use common::{message, Backend, ControlPlane, Images, Verifier, VerifierOptions};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// Uploads `bytes` as a blob of `repo` with the distribution API; returns its digest.
async fn push_blob(http: &reqwest::Client, host: &str, repo: &str, bytes: Vec<u8>) -> Digest {
    let digest = Digest::of(&bytes);
    let started = http
        .post(format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start a blob upload");
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("upload location")
        .to_owned();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{host}{location}")
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let done = http
        .put(format!("{url}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("finish the blob upload");
    assert_eq!(done.status(), StatusCode::CREATED, "blob upload");
    digest
}

/// Writes `<repo>:sha256-<hex>.sig` as the registry owner likes: one cosign layer per
/// (payload, signature), in that order.
async fn push_sig(host: &str, repo: &str, digest: &Digest, layers: &[(Vec<u8>, Vec<u8>)]) {
    let http = reqwest::Client::new();
    let mut blobs: Vec<(Vec<u8>, Digest)> = Vec::new();
    let mut descriptors = Vec::with_capacity(layers.len());
    for (payload, signature) in layers {
        let blob = match blobs.iter().find(|(p, _)| p == payload) {
            Some((_, d)) => d.clone(),
            None => {
                let d = push_blob(&http, host, repo, payload.clone()).await;
                blobs.push((payload.clone(), d.clone()));
                d
            }
        };
        descriptors.push(json!({
            "mediaType": SIMPLESIGNING,
            "size": payload.len(),
            "digest": blob.to_string(),
            "annotations": {
                "dev.cosignproject.cosign/signature":
                    base64::engine::general_purpose::STANDARD.encode(signature),
            },
        }));
    }
    let config =
        br#"{"architecture":"","config":{},"os":"","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = push_blob(&http, host, repo, config.to_vec()).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest.to_string()},
        "layers": descriptors,
    });
    let resp = http
        .put(format!(
            "http://{host}/v2/{repo}/manifests/{}",
            digest.signature_tag()
        ))
        .header("Content-Type", OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest).expect("manifest JSON"))
        .send()
        .await
        .expect("push the .sig manifest");
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{:?}",
        resp.text().await
    );
}

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

/// The witness's own signature on `image`, made with its local KMS key outside the
/// control plane (so no `signature.published` event tells the verifier about it).
async fn genuine_signature(
    cp: &ControlPlane,
    witness: &Value,
    image: &ImageRef,
    digest: &Digest,
) -> (Vec<u8>, Vec<u8>) {
    let version = witness["key_versions"][0]["version"]
        .as_str()
        .expect("key version")
        .to_owned();
    let payload = SimpleSigning::new(image.repository_ref(), digest.clone()).to_bytes();
    let kms = Kms::new(KmsConfig::new(cp.dir()));
    let key = kms
        .open("local://release")
        .expect("the witness's local key");
    let signature = key
        .sign(&version, SignatureAlgorithm::RsaPkcs1Sha256, &payload)
        .await
        .expect("sign with the witness key");
    (payload, signature)
}

/// Registry owner (or anyone who can push a `.sig` tag next to an image a pod names):
/// a signature artifact with thousands of layers, each a payload naming the image with a
/// garbage signature. Before the fix every layer was RSA-checked against every key of
/// the bundle on every admission, on an async worker the decision budget could not
/// preempt; now at most 64 layers are checked, against the live keys of the policy's
/// witnesses, once, and the denial names the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sig_with_thousands_of_layers_is_denied_at_the_cap_and_checked_once() {
    const LAYERS: usize = 3000;
    let cp = ControlPlane::start(Backend::Embedded).await;
    let images = Images::start().await;
    let witness = cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let options = VerifierOptions {
        // Generous: a loaded debug build is slow; the figure that matters is printed.
        budget: Duration::from_secs(10),
        ..VerifierOptions::default()
    };
    let verifier = Verifier::start(&cp, options).await;
    verifier.caught_up(&cp).await;
    let trust = verifier.running.as_ref().expect("running").trust().clone();

    let (hostile, digest) = images.push("team/miner", "v1").await;
    let hostile_ref = ImageRef::parse(&hostile).expect("ref");
    let payload = SimpleSigning::new(hostile_ref.repository_ref(), digest.clone()).to_bytes();
    let garbage: Vec<(Vec<u8>, Vec<u8>)> = (0..LAYERS)
        .map(|i| (payload.clone(), (i as u32).to_be_bytes().repeat(64)))
        .collect();
    push_sig(&images.host, "team/miner", &digest, &garbage).await;

    let started = std::time::Instant::now();
    let r = verifier.validate("pod-create", "prod", &hostile).await;
    eprintln!("hostile admission #1: {:?}", started.elapsed());
    assert_eq!(r["allowed"], false);
    let m = message(&r);
    assert!(
        m.contains(&format!(
            "only the first 64 of its {LAYERS} signature layers are checked"
        )),
        "the denial names the cap: {m}"
    );
    let (fetches, checks) = (trust.registry_fetches(), trust.signature_checks());
    assert_eq!(fetches, 1, "one fetch for the image");
    assert!(
        (1..=64).contains(&checks),
        "64 layers against the policy's one live key at most, not {checks}"
    );

    // The same digest again: the verdict is cached, no fetch and no signature check.
    let started = std::time::Instant::now();
    let again = verifier.validate("pod-create", "prod", &hostile).await;
    eprintln!("hostile admission #2: {:?}", started.elapsed());
    assert_eq!(again["allowed"], false);
    assert_eq!(message(&again), m);
    assert_eq!(trust.registry_fetches(), fetches, "no second fetch");
    assert_eq!(
        trust.signature_checks(),
        checks,
        "no second signature check"
    );

    // A genuine signature among the first 64 layers, with thousands of garbage ones
    // after it, still verifies.
    let (good, good_digest) = images.push("team/app", "v1").await;
    let good_ref = ImageRef::parse(&good).expect("ref");
    let genuine = genuine_signature(&cp, &witness, &good_ref, &good_digest).await;
    let mut layers: Vec<(Vec<u8>, Vec<u8>)> =
        (0..10).map(|i| (genuine.0.clone(), vec![i; 256])).collect();
    layers.push(genuine);
    layers.extend((0..LAYERS as u32).map(|i| (payload.clone(), i.to_be_bytes().repeat(64))));
    push_sig(&images.host, "team/app", &good_digest, &layers).await;
    let r = verifier.validate("pod-create", "prod", &good).await;
    assert_eq!(r["allowed"], true, "{}", message(&r));
}

/// Workload author: a Deployment admitted while the policy only recorded (dry-run) runs
/// an unsigned image. Once the policy enforces, the author keeps the image string and
/// changes what it runs (privileged, another command), then scales it up. Before the fix
/// any update whose image strings all appeared in the old object was allowed unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_of_a_grandfathered_workload_are_checked() {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let images = Images::start().await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({"mode": "dry-run"}))
        .await;
    let (unsigned, _) = images.push("team/unsigned", "v1").await;
    let (signed, _) = images.push("team/app", "v1").await;
    let verifier = Verifier::start(&cp, VerifierOptions::default()).await;
    cp.sign(&signed, "release").await;
    verifier.caught_up(&cp).await;
    let r = verifier
        .validate("deployment-create", "prod", &unsigned)
        .await;
    assert_eq!(r["allowed"], true, "dry-run admits: {}", message(&r));

    cp.ok(
        Method::PATCH,
        "/v1/policies/prod-images",
        Some(json!({"mode": "enforce"})),
    )
    .await;
    verifier.caught_up(&cp).await;
    for fixture in ["deployment-spec-update", "deployment-scale-up-update"] {
        let r = verifier.validate(fixture, "prod", &unsigned).await;
        assert_eq!(
            r["allowed"],
            false,
            "{fixture}: the grandfathered image is checked again: {}",
            message(&r)
        );
        assert!(message(&r).contains("unsigned"), "{}", message(&r));
    }
    // A scale-down starts nothing (it is also how the Deployment controller retires an
    // old ReplicaSet during a rollout away from this image), so it stays allowed.
    let r = verifier
        .validate("deployment-scale-down-update", "prod", &unsigned)
        .await;
    assert_eq!(r["allowed"], true, "{}", message(&r));

    // Re-checking a signed workload's update costs no registry round trip.
    let trust = verifier.running.as_ref().expect("running").trust().clone();
    let fetches = trust.registry_fetches();
    for fixture in ["deployment-spec-update", "deployment-scale-up-update"] {
        let r = verifier.validate(fixture, "prod", &signed).await;
        assert_eq!(r["allowed"], true, "{fixture}: {}", message(&r));
    }
    assert_eq!(
        trust.registry_fetches(),
        fetches,
        "served from the trust cache"
    );
}

/// A TLS connection to the verifier that trusts its self-signed certificate, speaking
/// HTTP/1.1 (where a request line and headers exist to be sent slowly).
async fn tls_connect(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    try_tls_connect(addr, cert).await.expect("TLS handshake")
}

async fn try_tls_connect(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(cert).expect("the verifier certificate");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.expect("certificate PEM")).expect("a root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
}

/// Slowloris against the admission webhook's HTTPS port (security review M3): a client
/// that connects and never starts TLS, and one that completes TLS and sends half a
/// request line. Before the fix the verifier (axum-server) held both forever; now the
/// first is cut off after `http.tls_handshake_timeout`, the second after
/// `http.header_read_timeout` (both 1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_port_cuts_off_slow_clients() {
    use signet_testkit::slow_client::{closed_by_server, send_half_request};
    let cp = ControlPlane::start(Backend::Embedded).await;
    let options = VerifierOptions {
        http: HttpLimits {
            header_read_timeout: Duration::from_secs(1),
            tls_handshake_timeout: Duration::from_secs(1),
            ..HttpLimits::default()
        },
        ..VerifierOptions::default()
    };
    let verifier = Verifier::start(&cp, options).await;
    let addr = verifier.running.as_ref().expect("running").addr();

    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let took = closed_by_server(&mut silent, "a connection that never starts TLS").await;
    eprintln!("no TLS handshake: closed after {took:?}");

    let mut quiet = tls_connect(addr, &verifier.tls.cert).await;
    let took = closed_by_server(&mut quiet, "TLS done, then nothing sent").await;
    eprintln!("TLS done, nothing sent: closed after {took:?}");

    let mut slow = tls_connect(addr, &verifier.tls.cert).await;
    send_half_request(&mut slow).await;
    let took = closed_by_server(&mut slow, "half a request line over TLS").await;
    eprintln!("half a request line over TLS: closed after {took:?}");
}

/// The webhook port's connection cap (M3): with `http.max_connections` = 2, a client
/// opening connections and never finishing them gets its third closed at once (the
/// harness's own HTTPS client may hold one of the two), and a freed slot serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhook_port_refuses_connections_over_the_cap() {
    let cp = ControlPlane::start(Backend::Embedded).await;
    let options = VerifierOptions {
        http: HttpLimits {
            tls_handshake_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(60),
            max_connections: 2,
            ..HttpLimits::default()
        },
        ..VerifierOptions::default()
    };
    let verifier = Verifier::start(&cp, options).await;
    let addr = verifier.running.as_ref().expect("running").addr();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    // The third connection is closed before TLS starts; before the fix it was served.
    let third = try_tls_connect(addr, &verifier.tls.cert).await;
    assert!(
        third.is_err(),
        "the third connection to a port capped at 2 completed TLS"
    );
    drop(held);
    verifier.ready().await;
}
