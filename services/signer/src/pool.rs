//! The worker pool: takes deliveries from the job queue, runs at most `concurrency` at
//! once, and settles each one only after its outcome is in the store.
//!
//! - Retryable failures (KMS throttling, registry 5xx or timeouts, a store or broker
//!   hiccup) go back on the queue after an exponential backoff with jitter; after
//!   `max_attempts` the job fails for good.
//! - Failures that no retry can fix (unknown or revoked witness, image gone, invalid
//!   request) fail the job at once. A failed job is recorded with its audit entry and a
//!   `signature.failed` event in one transaction, then the message goes to the dead
//!   letters, where `signet jobs list --failed` and `signet jobs retry` find it.
//! - Another worker holding the image's claim is not a failure: the job waits for it
//!   without using up an attempt.
//! - An image index gets a job for each platform manifest before the index is signed.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use signet_bus::{Bus, Delivery, Message, JOB_ID_HEADER};
use signet_core::{EventKind, Job, JobState, NewAudit, SignRequest};
use signet_store::{OutboxEvent, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::backoff;
use crate::sign::{Prepared, SignContext, SignError, SignOutcome};

/// The namespace of job ids the signer derives: for an external producer's message from
/// the broker's message id, for a platform manifest from its index's job.
const JOB_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2f0b_93c1_77de_4a52_8b64_1e5c_c0d3_a9f7);

/// How the pool behaves.
#[derive(Debug, Clone)]
pub struct SignerOptions {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long a claim on (repository, digest, witness) lasts without renewal.
    pub claim_lease: Duration,
    /// Sign an image index's platform manifests too.
    pub sign_platforms: bool,
}

impl Default for SignerOptions {
    fn default() -> Self {
        Self::from_settings(&signet_runtime::settings::SignerSettings::default())
    }
}

/// The signer: a pool of workers over the job queue.
#[derive(Debug)]
pub struct Signer {
    ctx: SignContext,
    bus: Bus,
    options: SignerOptions,
    /// Wakes the outbox relay after a signature or failure is recorded, so its event
    /// goes out now.
    outbox_kick: Arc<Notify>,
}

impl Signer {
    pub fn new(
        mut ctx: SignContext,
        bus: Bus,
        options: SignerOptions,
        outbox_kick: Arc<Notify>,
    ) -> Self {
        ctx.claim_lease = options.claim_lease;
        Self {
            ctx,
            bus,
            options,
            outbox_kick,
        }
    }

    /// Consumes jobs until `shutdown`, then drains: no new deliveries are taken, and
    /// in-flight jobs finish and are settled before this returns.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), signet_bus::BusError> {
        let mut deliveries = self
            .bus
            .jobs
            .consume(self.options.concurrency, shutdown.clone())
            .await?;
        tracing::info!(
            backend = self.bus.jobs.backend(),
            concurrency = self.options.concurrency,
            "signer consuming sign jobs"
        );
        let tracker = TaskTracker::new();
        tracker.spawn(sample_queue(self.bus.clone(), shutdown.clone()));
        while let Some(delivery) = deliveries.recv().await {
            let this = self.clone();
            tracker.spawn(async move { this.handle(delivery).await });
        }
        tracker.close();
        tracing::info!(in_flight = tracker.len(), "signer draining");
        tracker.wait().await;
        tracing::info!("signer drained");
        Ok(())
    }

    fn delay(&self, attempt: u32) -> Duration {
        backoff::delay(attempt, self.options.retry_base, self.options.retry_max)
    }

    /// Processes one delivery to its settlement, in a `sign_job` span that continues the
    /// trace of whoever enqueued the job (the `traceparent` header).
    pub async fn handle(&self, delivery: Delivery) {
        let span = tracing::info_span!(
            "sign_job",
            job_id = tracing::field::Empty,
            image = tracing::field::Empty,
            witness = tracing::field::Empty,
            attempt = delivery.delivery_count,
        );
        signet_runtime::telemetry::set_parent(&span, &delivery.message.headers);
        self.settle_delivery(delivery).instrument(span).await
    }

    async fn settle_delivery(&self, delivery: Delivery) {
        let metrics = signet_runtime::metrics::metrics();
        let loaded = self
            .load_job(
                &delivery.message,
                delivery.message_id.as_deref(),
                delivery.delivery_count,
            )
            .await;
        let mut job = match loaded {
            Ok(Some(job)) => job,
            Ok(None) => {
                metrics.job("duplicate", "finished");
                settle(delivery.ack().await, "ack");
                return;
            }
            Err(Loaded::Retry(e)) => {
                metrics.job("retried", "store_unavailable");
                tracing::warn!(error = %e, "cannot load job; will retry");
                let delay = self.delay(delivery.delivery_count);
                settle(delivery.retry(delay).await, "retry");
                return;
            }
            Err(Loaded::Poison(reason)) => {
                metrics.job("failed", "invalid_request");
                tracing::warn!(%reason, "poison message on the jobs queue; dead-lettering it");
                settle(delivery.dead_letter(&reason).await, "dead-letter");
                return;
            }
        };
        let span = tracing::Span::current();
        span.record("job_id", tracing::field::display(job.id));
        span.record("image", job.request.image.as_str());
        span.record("witness", job.request.witness.as_str());

        match self.sign(&mut job).await {
            Ok(done) => {
                // record_signature already marked the job succeeded in the same
                // transaction for new records; an existing record, or a job that asked
                // for attestations only, needs the job closed.
                let close = match &done.signature {
                    Some((record, outcome)) => (*outcome == SignOutcome::AlreadyRecorded
                        || record.job_id != Some(job.id))
                    .then_some(Some(record.id)),
                    None => Some(None),
                };
                if let Some(signature_id) = close {
                    job.state = JobState::Succeeded;
                    job.signature_id = signature_id;
                    job.error = None;
                    job.updated_at = Utc::now();
                    if let Err(e) = self.ctx.store.update_job(&job).await {
                        tracing::warn!(error = %e, "signature recorded but job not closed; will retry");
                        settle(delivery.retry(self.options.retry_base).await, "retry");
                        return;
                    }
                }
                self.outbox_kick.notify_one();
                let outcome = done
                    .signature
                    .as_ref()
                    .map(|(_, o)| *o)
                    .or_else(|| done.attestations.first().map(|(_, o)| *o))
                    .unwrap_or(SignOutcome::AlreadyRecorded);
                match outcome {
                    SignOutcome::Signed | SignOutcome::Adopted => {
                        let reason = if outcome == SignOutcome::Adopted {
                            "adopted"
                        } else {
                            "none"
                        };
                        metrics.job("succeeded", reason);
                        let waited = (Utc::now() - job.created_at).to_std().unwrap_or_default();
                        metrics.sign_latency.observe(waited.as_secs_f64());
                    }
                    SignOutcome::AlreadyRecorded => metrics.job("duplicate", "already_signed"),
                }
                tracing::info!(
                    digest = ?job.digest,
                    outcome = ?outcome,
                    attestations = done.attestations.len(),
                    signed = done.signature.is_some(),
                    "signed"
                );
                settle(delivery.ack().await, "ack");
            }
            Err(e) if e.reason == "claimed_elsewhere" => {
                metrics.job("retried", e.reason);
                // Another worker is signing this image right now, or crashed doing so and
                // its claim has yet to run out. Waiting is not a failed attempt.
                job.attempts -= 1;
                job.state = JobState::Queued;
                job.updated_at = Utc::now();
                if let Err(se) = self.ctx.store.update_job(&job).await {
                    tracing::warn!(error = %se, "cannot record the wait");
                }
                let delay = backoff::delay(
                    delivery.delivery_count,
                    self.options.retry_base,
                    self.options.retry_max.min(self.options.claim_lease),
                );
                tracing::info!(retry_in = ?delay, "{e}; waiting");
                settle(delivery.retry(delay).await, "retry");
            }
            Err(e) if e.is_retryable() && job.attempts < self.options.max_attempts => {
                metrics.job("retried", e.reason);
                let delay = self.delay(job.attempts);
                tracing::warn!(error = %e, reason = e.reason, retry_in = ?delay, "sign attempt failed; will retry");
                job.state = JobState::Queued;
                job.error = Some(format!("attempt {} failed: {e}", job.attempts));
                job.updated_at = Utc::now();
                if let Err(se) = self.ctx.store.update_job(&job).await {
                    tracing::warn!(error = %se, "cannot record failed attempt");
                }
                settle(delivery.retry(delay).await, "retry");
            }
            Err(e) => {
                metrics.job("failed", e.reason);
                let why = if e.is_retryable() {
                    format!("gave up after {} attempts: {e}", job.attempts)
                } else {
                    e.to_string()
                };
                tracing::error!(error = %why, reason = e.reason, "sign job failed; dead-lettering it");
                if let Err(se) = self.fail_job(&mut job, e.reason, &why).await {
                    // The failure must be on record before the message goes: retry.
                    tracing::warn!(error = %se, "cannot record job failure; will retry");
                    settle(delivery.retry(self.options.retry_base).await, "retry");
                    return;
                }
                settle(delivery.dead_letter(&why).await, "dead-letter");
            }
        }
    }

    /// Resolves and checks the job, expands an image index, signs its attestations, then
    /// the image.
    async fn sign(&self, job: &mut Job) -> Result<Done, SignError> {
        if !job.request.sign && job.request.attestations.is_empty() {
            return Err(SignError::permanent(
                "invalid_request",
                "the request asks for nothing: no signature (sign is false) and no attestations",
            ));
        }
        // With sign_platforms the index check reads the manifest (or finds the signature
        // recorded), which proves it exists; without, prepare checks it (HEAD). An
        // attestation is about the digest named: its platforms are not expanded.
        let prepared = if self.options.sign_platforms && job.request.sign {
            let prepared = self.ctx.prepare_read_later(job).await?;
            self.expand_index(job, &prepared).await?;
            prepared
        } else {
            self.ctx.prepare(job).await?
        };
        let attestations = self.ctx.attest_prepared(job, &prepared).await?;
        let signature = if job.request.sign {
            Some(self.ctx.sign_prepared(job, &prepared).await?)
        } else {
            None
        };
        Ok(Done {
            signature,
            attestations,
        })
    }

    /// For an image index, makes sure each platform manifest has a job of its own (same
    /// witness and annotations) before the index is signed: verifiers check the manifest
    /// of the platform they run, so an index signature alone admits nothing. Once the
    /// index is signed its platforms were expanded, so a signed index is not read again.
    async fn expand_index(&self, job: &Job, prepared: &Prepared) -> Result<(), SignError> {
        if self.ctx.recorded(prepared).await?.is_some() {
            return Ok(());
        }
        let pinned = prepared.image.with_digest(prepared.digest.clone());
        let manifest = self.ctx.registry.manifest(&pinned).await.map_err(|e| {
            if e.is_not_found() {
                SignError::permanent(
                    "image_not_found",
                    format!("image {pinned} does not exist in its registry: {e}"),
                )
            } else if e.retryable() {
                SignError::retryable("registry_unavailable", e.to_string())
            } else {
                SignError::permanent("registry_error", e.to_string())
            }
        })?;
        if !manifest.is_index() {
            return Ok(());
        }
        let platforms = manifest.platform_digests();
        tracing::info!(
            platforms = platforms.len(),
            "image index: a job for each platform manifest"
        );
        for digest in platforms {
            let image = format!("{}@{digest}", prepared.image.repository_ref());
            let id = Uuid::new_v5(
                &JOB_ID_NAMESPACE,
                format!("index\n{}\n{digest}", job.id).as_bytes(),
            );
            let request = SignRequest {
                image,
                witness: job.request.witness.clone(),
                annotations: job.request.annotations.clone(),
                attestations: Vec::new(),
                sign: true,
                format: job.request.format,
            };
            self.enqueue_child(id, request, job.id).await?;
        }
        Ok(())
    }

    /// Records and publishes a platform manifest's job, unless a worker has it already.
    async fn enqueue_child(
        &self,
        id: Uuid,
        request: SignRequest,
        parent: Uuid,
    ) -> Result<(), SignError> {
        let now = Utc::now();
        let child = Job {
            id,
            request,
            source: format!("index:{parent}"),
            state: JobState::Queued,
            attempts: 0,
            digest: None,
            signature_id: None,
            error: None,
            created_at: now,
            updated_at: now,
        };
        match self.ctx.store.create_job(&child).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                // Made by an earlier attempt at the index: publish again only if no worker
                // has taken it (the earlier attempt may have stopped before publishing).
                let existing = self.ctx.store.get_job(id).await.map_err(store_error)?;
                if existing.is_some_and(|j| j.attempts > 0 || j.state != JobState::Queued) {
                    return Ok(());
                }
            }
            Err(e) => return Err(store_error(e)),
        }
        let body = serde_json::to_vec(&child.request)
            .map_err(|e| SignError::permanent("internal", e.to_string()))?;
        let mut message = Message {
            body,
            ..Default::default()
        };
        message
            .headers
            .insert(JOB_ID_HEADER.into(), child.id.to_string());
        signet_runtime::telemetry::inject(&tracing::Span::current(), &mut message.headers);
        self.bus.jobs.publish(message).await.map_err(|e| {
            SignError::retryable(
                "bus_unavailable",
                format!(
                    "cannot enqueue the job of platform manifest {}: {e}",
                    child.request.image
                ),
            )
        })
    }

    /// Marks the job failed, with its audit entry and `signature.failed` event written
    /// in the same transaction (the event reaches the bus through the outbox).
    async fn fail_job(&self, job: &mut Job, reason: &str, why: &str) -> Result<(), StoreError> {
        job.state = JobState::Failed;
        job.error = Some(why.to_owned());
        job.updated_at = Utc::now();
        let audit = NewAudit::new(
            "signer",
            "job.fail",
            job.id.to_string(),
            serde_json::json!({"reason": reason, "error": why, "image": job.request.image, "witness": job.request.witness}),
        );
        let event = OutboxEvent::new(
            EventKind::SignatureFailed,
            job.request.image.clone(),
            serde_json::to_value(&*job).unwrap_or_default(),
        )
        .with_traceparent(signet_runtime::telemetry::traceparent(
            &tracing::Span::current(),
        ));
        self.ctx
            .store
            .record_job_failure(job, &audit, &event)
            .await?;
        self.outbox_kick.notify_one();
        Ok(())
    }

    /// The job a delivery is for: the gateway's record when it carries a job id, or the
    /// record of a sign request an external producer put on the queue (created on its
    /// first delivery, under an id derived from the broker's message id when there is
    /// one, so redeliveries find it). `None` means the job is already finished (a
    /// redelivery) and the message can go.
    async fn load_job(
        &self,
        message: &Message,
        message_id: Option<&str>,
        delivery_count: u32,
    ) -> Result<Option<Job>, Loaded> {
        let request: Result<SignRequest, _> = serde_json::from_slice(&message.body);
        let job_id = message
            .headers
            .get(JOB_ID_HEADER)
            .map(|s| Uuid::parse_str(s).map_err(|_| s.clone()));
        match job_id {
            Some(Err(bad)) => Err(Loaded::Poison(format!(
                "header {JOB_ID_HEADER} is not a UUID: {bad:?}"
            ))),
            // Taken (running, one attempt more) in one statement; only a job that is
            // finished or missing costs a second look.
            Some(Ok(id)) => {
                if let Some(job) = self.start(id).await? {
                    return Ok(Some(job));
                }
                match self.ctx.store.get_job(id).await {
                    Ok(Some(job)) if job.state.is_terminal() => Ok(None),
                    // Finished and retried in between: look again at the next delivery.
                    Ok(Some(_)) => Err(Loaded::Retry(format!("job {id} changed as it started"))),
                    Ok(None) => match request {
                        // The gateway always writes the job before publishing; a missing
                        // record means a producer chose its own id. Accept it.
                        Ok(request) => self.new_job(id, request).await,
                        Err(e) => Err(Loaded::Poison(format!(
                            "message body is not a sign request: {e}"
                        ))),
                    },
                    Err(e) => Err(Loaded::Retry(e.to_string())),
                }
            }
            None => {
                let id = match message_id {
                    Some(m) => Uuid::new_v5(&JOB_ID_NAMESPACE, format!("message\n{m}").as_bytes()),
                    None => Uuid::now_v7(),
                };
                match request {
                    Ok(request) => self.new_job(id, request).await,
                    Err(e) => {
                        let reason = format!("message body is not a sign request: {e}");
                        self.record_poison(id, &message.body, &reason, delivery_count)
                            .await;
                        Err(Loaded::Poison(reason))
                    }
                }
            }
        }
    }

    /// Takes job `id` (running, one attempt more); `None` when it is missing or finished.
    async fn start(&self, id: Uuid) -> Result<Option<Job>, Loaded> {
        self.ctx
            .store
            .start_job(id)
            .await
            .map_err(|e| Loaded::Retry(format!("cannot start job {id}: {e}")))
    }

    /// Creates the record of an external producer's job (on a redelivery, finds it) and
    /// takes it.
    async fn new_job(&self, id: Uuid, request: SignRequest) -> Result<Option<Job>, Loaded> {
        let now = Utc::now();
        let job = Job {
            id,
            request,
            source: "bus".into(),
            state: JobState::Queued,
            attempts: 0,
            digest: None,
            signature_id: None,
            error: None,
            created_at: now,
            updated_at: now,
        };
        match self.ctx.store.create_job(&job).await {
            // A redelivery finds the record; finished, start_job leaves it alone.
            Ok(()) | Err(StoreError::Conflict(_)) => self.start(id).await,
            Err(e) => Err(Loaded::Retry(e.to_string())),
        }
    }

    /// Keeps a failed record of a message that is not a sign request, so that
    /// `signet jobs list --failed` shows it and `signature.failed` announces it.
    async fn record_poison(&self, id: Uuid, body: &[u8], reason: &str, deliveries: u32) {
        let now = Utc::now();
        let mut job = Job {
            id,
            request: SignRequest {
                image: String::from_utf8_lossy(body).chars().take(256).collect(),
                witness: String::new(),
                annotations: Default::default(),
                attestations: Vec::new(),
                sign: true,
                format: None,
            },
            source: "bus".into(),
            state: JobState::Queued,
            attempts: deliveries,
            digest: None,
            signature_id: None,
            error: None,
            created_at: now,
            updated_at: now,
        };
        match self.ctx.store.create_job(&job).await {
            Ok(()) => {}
            // A redelivery of the same message: its record exists, failed unless the
            // process stopped between creating and failing it.
            Err(StoreError::Conflict(_)) => match self.ctx.store.get_job(id).await {
                Ok(Some(existing)) if !existing.state.is_terminal() => job = existing,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the poison message's record");
                    return;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot record poison message");
                return;
            }
        }
        if let Err(e) = self.fail_job(&mut job, "invalid_request", reason).await {
            tracing::warn!(error = %e, "cannot record poison message as failed");
        }
    }
}

/// How often the queue's depth and age are sampled for `/metrics`.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Samples the job queue's depth and the age of its oldest message into the metrics
/// until `shutdown`. Every signer replica samples the same queue; the series agree.
async fn sample_queue(bus: Bus, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(QUEUE_SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let depth = match bus.jobs.depth().await {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "cannot sample the queue depth");
                continue;
            }
        };
        let lag = match bus.jobs.oldest().await {
            Ok(Some(t)) => Some((Utc::now() - t).to_std().unwrap_or_default()),
            Ok(None) if depth == 0 => Some(Duration::ZERO),
            _ => None,
        };
        signet_runtime::metrics::metrics().queue(depth, lag);
    }
}

/// What one job produced.
struct Done {
    /// The image's signature, when the job asked for one.
    signature: Option<(signet_core::SignatureRecord, SignOutcome)>,
    attestations: Vec<(signet_core::AttestationRecord, SignOutcome)>,
}

fn store_error(e: StoreError) -> SignError {
    if e.retryable() {
        SignError::retryable("store_unavailable", e.to_string())
    } else {
        SignError::permanent("store_error", e.to_string())
    }
}

enum Loaded {
    Retry(String),
    Poison(String),
}

fn settle(result: Result<(), signet_bus::BusError>, what: &str) {
    if let Err(e) = result {
        // The message comes back after its lease or channel closes; the store already
        // knows the outcome, so the redelivery settles at once.
        tracing::warn!(error = %e, "could not {what} the delivery; it will be redelivered");
    }
}

impl SignerOptions {
    pub fn from_settings(s: &signet_runtime::settings::SignerSettings) -> Self {
        Self {
            concurrency: s.concurrency,
            max_attempts: s.max_attempts,
            retry_base: s.retry_base,
            retry_max: s.retry_max,
            claim_lease: s.claim_lease,
            sign_platforms: s.sign_platforms,
        }
    }
}
