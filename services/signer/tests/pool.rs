//! The worker pool against a real registry (docker-registry), the local development KMS,
//! a SQLite store and the embedded bus: what happens to a job on each path.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use signet_bus::{Message, JOB_ID_HEADER};
use signet_core::{EventKind, Job, JobState};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_signer::{Signer, SignerOptions};
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use tokio_util::sync::CancellationToken;

use common::{Harness, DEADLINE};

fn fast() -> SignerOptions {
    SignerOptions {
        concurrency: 4,
        max_attempts: 3,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        claim_lease: Duration::from_secs(1),
        sign_platforms: true,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_message_keeps_one_job_across_redeliveries() {
    let h = Harness::new().await;
    h.witness("prod").await;
    let mut registry = TestRegistry::start().await.expect("docker-registry");
    let digest = TestImage::random()
        .push(&registry.host(), "ext/app", "v1")
        .await
        .expect("push");
    // The registry is down: every attempt fails and the message is delivered again.
    registry.stop().expect("stop registry");
    h.publish(&format!(
        r#"{{"image":"{}/ext/app@{digest}","witness":"prod"}}"#,
        registry.host()
    ))
    .await;
    let (stop, task) = run(h.signer(fast()));
    let jobs = h
        .until("the job to fail after its attempts", |jobs| {
            jobs.iter().any(|j| j.state == JobState::Failed)
        })
        .await;
    assert_eq!(
        jobs.len(),
        1,
        "every redelivery found the same job: {jobs:#?}"
    );
    assert_eq!(jobs[0].attempts, 3);
    assert_eq!(jobs[0].source, "bus");
    let error = jobs[0].error.as_deref().unwrap_or_default();
    assert!(error.starts_with("gave up after 3 attempts"), "{error}");
    // The failure is recorded before the message moves to the dead letters.
    h.until_dead_letters(1).await;
    stop.cancel();
    task.await.expect("drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_signed_with_each_platform() {
    let h = Harness::new().await;
    h.witness("prod").await;
    let registry = TestRegistry::start().await.expect("docker-registry");
    let pushed = TestImage::push_index(&registry.host(), "multi/app", "v1")
        .await
        .expect("push index");
    let (stop, task) = run(h.signer(fast()));
    h.publish(&format!(
        r#"{{"image":"{}/multi/app:v1","witness":"prod"}}"#,
        registry.host()
    ))
    .await;
    let jobs = h
        .until("the index and both platforms to be signed", |jobs| {
            jobs.len() == 3 && jobs.iter().all(|j| j.state == JobState::Succeeded)
        })
        .await;
    let parent = jobs
        .iter()
        .find(|j| j.source == "bus")
        .expect("the index's job");
    assert_eq!(parent.digest.as_ref(), Some(&pushed.index));
    for p in &pushed.platforms {
        let child = jobs
            .iter()
            .find(|j| j.digest.as_ref() == Some(&p.digest))
            .expect("a job per platform");
        assert_eq!(child.source, format!("index:{}", parent.id));
    }
    let client = RegistryClient::new(RegistryConfig::for_loopback()).expect("client");
    for d in std::iter::once(&pushed.index).chain(pushed.platforms.iter().map(|p| &p.digest)) {
        let image = signet_core::ImageRef::parse(&format!("{}/multi/app@{d}", registry.host()))
            .expect("ref");
        let layers = client.fetch_signatures(&image, d).await.expect("fetch");
        assert_eq!(layers.len(), 1, "one signature layer on {d}");
    }
    // Signing the index again (a new tag) adds nothing and expands nothing.
    h.publish(&format!(
        r#"{{"image":"{}/multi/app@{}","witness":"prod"}}"#,
        registry.host(),
        pushed.index
    ))
    .await;
    let jobs = h
        .until("the second request to finish", |jobs| {
            jobs.len() == 4 && jobs.iter().all(|j| j.state == JobState::Succeeded)
        })
        .await;
    assert_eq!(jobs.len(), 4);
    stop.cancel();
    task.await.expect("drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_with_a_signature_failed_event() {
    let h = Harness::new().await;
    h.witness("prod").await;
    let (stop, task) = run(h.signer(fast()));
    let before = h.store.outbox_revision().await.expect("revision");
    h.publish("this is not a sign request").await;
    h.publish(r#"{"image":"registry.example.com/a/b:v1","witness":"nobody"}"#)
        .await;
    let jobs = h
        .until("both to fail", |jobs| {
            jobs.len() == 2 && jobs.iter().all(|j| j.state == JobState::Failed)
        })
        .await;
    let unknown = jobs
        .iter()
        .find(|j| j.request.witness == "nobody")
        .expect("the unknown witness's job");
    assert_eq!(unknown.attempts, 1, "a permanent failure is not retried");
    assert!(unknown
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("does not exist"));
    let poison = jobs
        .iter()
        .find(|j| j.request.witness.is_empty())
        .expect("the poison message's record");
    assert!(poison
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("not a sign request"));
    h.until_dead_letters(2).await;
    let events: Vec<_> = h
        .store
        .outbox_pending(100)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|r| r.id > before)
        .collect();
    let failed = events
        .iter()
        .filter(|r| r.event.event_type == EventKind::SignatureFailed.cloudevent_type())
        .count();
    assert_eq!(failed, 2, "{events:#?}");
    stop.cancel();
    task.await.expect("drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_another_workers_claim_costs_no_attempt() {
    let h = Harness::new().await;
    h.witness("prod").await;
    let registry = TestRegistry::start().await.expect("docker-registry");
    let digest = TestImage::random()
        .push(&registry.host(), "claimed/app", "v1")
        .await
        .expect("push");
    // A worker that crashed while signing left its claim behind.
    let claim = format!("{}/claimed/app@{digest}#prod", registry.host());
    assert!(h
        .store
        .claim_signing(&claim, "signer-that-crashed", Duration::from_secs(2))
        .await
        .expect("claim"));
    let now = Utc::now();
    let job = Job {
        id: uuid::Uuid::now_v7(),
        request: signet_core::SignRequest {
            image: format!("{}/claimed/app@{digest}", registry.host()),
            witness: "prod".into(),
            annotations: Default::default(),
            attestations: Vec::new(),
            sign: true,
            format: None,
        },
        source: "api".into(),
        state: JobState::Queued,
        attempts: 0,
        digest: None,
        signature_id: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    h.store.create_job(&job).await.expect("job");
    let mut message = Message {
        body: serde_json::to_vec(&job.request).expect("json"),
        ..Default::default()
    };
    message
        .headers
        .insert(JOB_ID_HEADER.into(), job.id.to_string());
    h.bus.jobs.publish(message).await.expect("publish");
    let options = SignerOptions {
        max_attempts: 1,
        ..fast()
    };
    let (stop, task) = run(h.signer(options));
    let jobs = h
        .until("the job to succeed once the claim ran out", |jobs| {
            jobs.iter().all(|j| j.state == JobState::Succeeded)
        })
        .await;
    assert_eq!(jobs[0].attempts, 1, "the waits did not count: {jobs:#?}");
    stop.cancel();
    task.await.expect("drained");
}

/// The series `/metrics` shows for the signer's work: jobs by outcome and reason, KMS
/// calls by provider, registry operations, sign latency, and the sampled queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_and_failing_show_in_the_metrics() {
    let h = Harness::new().await;
    h.witness("prod").await;
    let registry = TestRegistry::start().await.expect("docker-registry");
    let digest = TestImage::random()
        .push(&registry.host(), "metrics/app", "v1")
        .await
        .expect("push");
    let (stop, task) = run(h.signer(fast()));
    let image = format!("{}/metrics/app@{digest}", registry.host());
    h.publish(&format!(r#"{{"image":"{image}","witness":"prod"}}"#))
        .await;
    h.publish(&format!(r#"{{"image":"{image}","witness":"nobody"}}"#))
        .await;
    h.until("one success and one failure", |jobs| {
        jobs.len() == 2 && jobs.iter().all(|j| j.state.is_terminal())
    })
    .await;
    let m = signet_runtime::metrics::metrics();
    // The queue is sampled every few seconds; wait for a sample of the empty queue.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let text = loop {
        let text = m.encode();
        if text.contains("signet_queue_depth 0") && text.contains("signet_queue_lag_seconds 0.0") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no queue sample: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Other tests of this binary may share the process (plain `cargo test`): counts
    // are at least one, not exactly one.
    for series in [
        r#"signet_jobs_total{outcome="succeeded",reason="none"} "#,
        r#"signet_jobs_total{outcome="failed",reason="unknown_witness"} "#,
        r#"signet_kms_calls_total{provider="local",outcome="ok"} "#,
        r#"signet_kms_call_duration_seconds_count{provider="local"} "#,
        r#"signet_registry_requests_total{operation="publish",outcome="ok"} "#,
        r#"signet_registry_requests_total{operation="fetch_signatures",outcome="ok"} "#,
        "signet_sign_latency_seconds_count ",
    ] {
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|n| n.parse::<f64>().ok());
        assert!(
            count.is_some_and(|n| n >= 1.0),
            "missing {series} in\n{text}"
        );
    }
    stop.cancel();
    task.await.expect("drained");
}
