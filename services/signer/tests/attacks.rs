//! Attacks on the signer through the images it is asked to sign, against a real
//! docker-registry, the local KMS, a SQLite store and the embedded bus:
//! - a signer token holder names a "registry" that is really an internal service: its
//!   answer must not come back in the job's error;
//! - a signer token holder asks, with `sign_platforms = false`, for a digest no registry
//!   holds (to sign now what they publish later): nothing is signed, no KMS call is made.
//!
//! Its own test binary, so that the KMS call counter counts only these tests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use signet_core::{Digest, JobState};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_signer::{Signer, SignerOptions};
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use tokio_util::sync::CancellationToken;

use common::Harness;

const SECRET: &str = "INTERNAL-SECRET aws_secret_access_key=wJalrXUtnFEMI/K7MDENG";

fn options(sign_platforms: bool) -> SignerOptions {
    SignerOptions {
        concurrency: 2,
        max_attempts: 3,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        claim_lease: Duration::from_secs(1),
        sign_platforms,
    }
}

fn run(signer: Arc<Signer>) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            signer.run(stop).await.expect("signer runs");
        }
    });
    (stop, task)
}

/// Local KMS sign calls so far in this process.
fn kms_calls() -> f64 {
    signet_runtime::metrics::metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("signet_kms_calls_total{provider=\"local\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_services_answer_never_reaches_the_job_error() {
    // The "registry" is an internal service on loopback (allowed here, as in `signet up`):
    // it answers every request with its secret.
    let app =
        axum::Router::new().fallback(|| async { (axum::http::StatusCode::IM_A_TEAPOT, SECRET) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    let h = Harness::new().await;
    h.witness("prod").await;
    let (stop, task) = run(h.signer(options(true)));
    h.publish(&format!(
        r#"{{"image":"{host}/internal/x:latest","witness":"prod"}}"#
    ))
    .await;
    let jobs = h
        .until("the job to fail", |jobs| {
            jobs.len() == 1 && jobs[0].state == JobState::Failed
        })
        .await;
    let error = jobs[0].error.clone().unwrap_or_default();
    assert!(
        !error.contains("INTERNAL-SECRET"),
        "the answer leaked: {error}"
    );
    assert!(error.contains("HTTP 418"), "{error}");
    stop.cancel();
    task.await.expect("drained");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_no_registry_holds_is_not_signed_without_platform_signing() {
    let registry = TestRegistry::start().await.expect("docker-registry");
    TestImage::random()
        .push(&registry.host(), "team/app", "v1")
        .await
        .expect("push");
    let h = Harness::new().await;
    h.witness("prod").await;
    let (stop, task) = run(h.signer(options(false)));
    let before = kms_calls();
    let missing = Digest::of(b"a manifest the attacker will publish later");
    let image = format!("{}/team/app@{missing}", registry.host());
    h.publish(&format!(r#"{{"image":"{image}","witness":"prod"}}"#))
        .await;
    let jobs = h
        .until("the job to fail", |jobs| {
            jobs.len() == 1 && jobs[0].state == JobState::Failed
        })
        .await;
    assert_eq!(jobs[0].attempts, 1, "not retried: {:?}", jobs[0]);
    h.until_dead_letters(1).await;
    let error = jobs[0].error.clone().unwrap_or_default();
    assert!(error.contains("does not exist"), "{error}");
    assert_eq!(kms_calls(), before, "the KMS was asked to sign");
    let repo = signet_core::ImageRef::parse(&image).expect("ref");
    assert!(h
        .store
        .find_signature(&repo.repository_ref(), &missing, "prod")
        .await
        .expect("store")
        .is_none());
    let client = RegistryClient::new(RegistryConfig::for_loopback()).expect("client");
    assert!(
        client
            .fetch_signatures(&repo, &missing)
            .await
            .expect("fetch")
            .is_empty(),
        "a signature layer was published"
    );
    stop.cancel();
    task.await.expect("drained");
}
