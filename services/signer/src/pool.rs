//! The worker pool: takes deliveries from the job queue, runs at most `concurrency` at
//! once, and settles each one only after its outcome is in the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use signet_bus::{Bus, Delivery, Event, JOB_ID_HEADER};
use signet_core::{EventKind, Job, JobState, NewAudit, SignRequest};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::backoff;
use crate::sign::{SignContext, SignError, SignOutcome};

/// How the pool behaves.
#[derive(Debug, Clone)]
pub struct SignerOptions {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// The signer: a pool of workers over the job queue.
#[derive(Debug)]
pub struct Signer {
    ctx: SignContext,
    bus: Bus,
    options: SignerOptions,
    /// Wakes the outbox relay after a signature is recorded, so its event goes out now.
    outbox_kick: Arc<Notify>,
}

impl Signer {
    pub fn new(
        ctx: SignContext,
        bus: Bus,
        options: SignerOptions,
        outbox_kick: Arc<Notify>,
    ) -> Self {
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
        while let Some(delivery) = deliveries.recv().await {
            let this = self.clone();
            tracker.spawn(async move { this.handle(delivery).await });
        }
        tracker.close();
        tracker.wait().await;
        tracing::info!("signer drained");
        Ok(())
    }

    /// Processes one delivery to its settlement.
    #[tracing::instrument(name = "sign_job", skip_all, fields(job_id, image, witness, attempt = delivery.delivery_count))]
    pub async fn handle(&self, delivery: Delivery) {
        let mut job = match self
            .load_job(&delivery.message, delivery.delivery_count)
            .await
        {
            Ok(Some(job)) => job,
            Ok(None) => {
                settle(delivery.ack().await, "ack");
                return;
            }
            Err(Loaded::Retry(e)) => {
                tracing::warn!(error = %e, "cannot load job; will retry");
                let delay = backoff::delay(
                    delivery.delivery_count,
                    self.options.retry_base,
                    self.options.retry_max,
                );
                settle(delivery.retry(delay).await, "retry");
                return;
            }
            Err(Loaded::Poison(reason)) => {
                tracing::warn!(%reason, "poison message on the jobs queue; dead-lettering it");
                settle(delivery.dead_letter(&reason).await, "dead-letter");
                return;
            }
        };
        let span = tracing::Span::current();
        span.record("job_id", tracing::field::display(job.id));
        span.record("image", job.request.image.as_str());
        span.record("witness", job.request.witness.as_str());

        job.attempts += 1;
        job.state = JobState::Running;
        job.updated_at = Utc::now();
        if let Err(e) = self.ctx.store.update_job(&job).await {
            tracing::warn!(error = %e, "cannot mark job running; will retry");
            let delay = backoff::delay(
                job.attempts,
                self.options.retry_base,
                self.options.retry_max,
            );
            settle(delivery.retry(delay).await, "retry");
            return;
        }

        match self.ctx.sign(&mut job).await {
            Ok((record, outcome)) => {
                // record_signature already marked the job succeeded in the same
                // transaction for new records; an existing record needs the job closed.
                if outcome == SignOutcome::AlreadyRecorded || record.job_id != Some(job.id) {
                    job.state = JobState::Succeeded;
                    job.signature_id = Some(record.id);
                    job.error = None;
                    job.updated_at = Utc::now();
                    if let Err(e) = self.ctx.store.update_job(&job).await {
                        tracing::warn!(error = %e, "signature recorded but job not closed; will retry");
                        settle(delivery.retry(self.options.retry_base).await, "retry");
                        return;
                    }
                }
                self.outbox_kick.notify_one();
                tracing::info!(digest = %record.digest, outcome = ?outcome, "signed");
                settle(delivery.ack().await, "ack");
            }
            Err(e) if e.is_retryable() && job.attempts < self.options.max_attempts => {
                let delay = backoff::delay(
                    job.attempts,
                    self.options.retry_base,
                    self.options.retry_max,
                );
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
                let why = if e.is_retryable() {
                    format!("gave up after {} attempts: {e}", job.attempts)
                } else {
                    e.to_string()
                };
                tracing::error!(error = %why, reason = e.reason, "sign job failed; dead-lettering it");
                if let Err(se) = self.fail_job(&mut job, &e, &why).await {
                    // The failure must be on record before the message goes: retry.
                    tracing::warn!(error = %se, "cannot record job failure; will retry");
                    settle(delivery.retry(self.options.retry_base).await, "retry");
                    return;
                }
                settle(delivery.dead_letter(&why).await, "dead-letter");
            }
        }
    }

    async fn fail_job(
        &self,
        job: &mut Job,
        e: &SignError,
        why: &str,
    ) -> Result<(), signet_store::StoreError> {
        job.state = JobState::Failed;
        job.error = Some(why.to_owned());
        job.updated_at = Utc::now();
        self.ctx.store.update_job(job).await?;
        self.ctx
            .store
            .append_audit(&NewAudit::new(
                "signer",
                "job.fail",
                job.id.to_string(),
                serde_json::json!({"reason": e.reason, "error": why, "image": job.request.image, "witness": job.request.witness}),
            ))
            .await?;
        let event = Event::new(
            EventKind::SignatureFailed,
            job.request.image.clone(),
            serde_json::to_value(&*job).unwrap_or_default(),
        );
        if let Err(err) = self.bus.events.publish(&event).await {
            tracing::warn!(error = %err, "could not emit signature.failed");
        }
        Ok(())
    }

    /// The job a delivery is for: the gateway's record when it carries a job id, or a
    /// new record for a sign request an external producer put on the queue. `None`
    /// means the job is already finished (a redelivery) and the message can go.
    async fn load_job(
        &self,
        message: &signet_bus::Message,
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
            Some(Ok(id)) => match self.ctx.store.get_job(id).await {
                Ok(Some(job)) if job.state.is_terminal() => Ok(None),
                Ok(Some(job)) => Ok(Some(job)),
                Ok(None) => match request {
                    // The gateway always writes the job before publishing; a missing record
                    // means a producer chose its own id. Accept it.
                    Ok(request) => self.new_job(Some(id), request).await.map(Some),
                    Err(e) => Err(Loaded::Poison(format!(
                        "message body is not a sign request: {e}"
                    ))),
                },
                Err(e) => Err(Loaded::Retry(e.to_string())),
            },
            None => match request {
                Ok(request) => self.new_job(None, request).await.map(Some),
                Err(e) => {
                    // Keep a record so `signet jobs list --failed` shows the poison message.
                    let body = String::from_utf8_lossy(&message.body);
                    let reason = format!("message body is not a sign request: {e}");
                    let now = Utc::now();
                    let job = Job {
                        id: Uuid::now_v7(),
                        request: SignRequest {
                            image: body.chars().take(256).collect(),
                            witness: String::new(),
                            annotations: Default::default(),
                        },
                        source: "bus".into(),
                        state: JobState::Failed,
                        attempts: delivery_count,
                        digest: None,
                        signature_id: None,
                        error: Some(reason.clone()),
                        created_at: now,
                        updated_at: now,
                    };
                    if let Err(se) = self.ctx.store.create_job(&job).await {
                        tracing::warn!(error = %se, "cannot record poison message");
                    }
                    Err(Loaded::Poison(reason))
                }
            },
        }
    }

    async fn new_job(&self, id: Option<Uuid>, request: SignRequest) -> Result<Job, Loaded> {
        let now = Utc::now();
        let job = Job {
            id: id.unwrap_or_else(Uuid::now_v7),
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
        self.ctx
            .store
            .create_job(&job)
            .await
            .map_err(|e| Loaded::Retry(e.to_string()))?;
        Ok(job)
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
        }
    }
}
