//! Sign jobs: one request to sign one image with one witness, and what became of it.

use signet_core::{Digest, Job, JobState, NewAudit, SignRequest};
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::insert_audit;
use crate::codec::{self, col, Bind, Filter};
use crate::error::{db, StoreError};
use crate::outbox::{insert_outbox, OutboxEvent};
use crate::Store;

const COLUMNS: &str =
    "id, request, source, state, attempts, digest, signature_id, error, created_at, updated_at";

impl Store {
    /// `Conflict` if a job with this id exists.
    #[tracing::instrument(name = "store.create_job", level = "debug", skip_all, fields(job = %job.id))]
    pub async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        const OP: &str = "creating a job";
        let request = codec::json_text("sign request", &job.request)?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO jobs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO NOTHING"
        ))
        .bind(job.id.to_string())
        .bind(request)
        .bind(job.source.as_str())
        .bind(job.state.as_str())
        .bind(i64::from(job.attempts))
        .bind(job.digest.as_ref().map(|d| d.as_str().to_owned()))
        .bind(job.signature_id.map(|id| id.to_string()))
        .bind(job.error.clone())
        .bind(codec::millis(job.created_at))
        .bind(codec::millis(job.updated_at))
        .execute(&self.write)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("job {}", job.id)));
        }
        Ok(())
    }

    #[tracing::instrument(name = "store.get_job", level = "debug", skip_all, fields(job = %id))]
    pub async fn get_job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.jobs
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("reading a job"))?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// A worker takes the job: `running`, one attempt more, in one statement. `None` when
    /// there is no such job or it is finished (succeeded or failed), which
    /// [`Store::get_job`] tells apart.
    #[tracing::instrument(name = "store.start_job", level = "debug", skip_all, fields(job = %id))]
    pub async fn start_job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = $2 \
             WHERE id = $1 AND state IN ('queued', 'running') RETURNING {COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(codec::now_millis())
        .fetch_optional(&self.write)
        .await
        .map_err(db("starting a job"))?;
        let job = row.as_ref().map(job_from_row).transpose()?;
        if job.is_some() {
            self.job_changed(id);
        }
        Ok(job)
    }

    /// Replaces everything but the id and creation time. `NotFound` if there is no such job.
    #[tracing::instrument(name = "store.update_job", level = "debug", skip_all, fields(job = %job.id, state = %job.state))]
    pub async fn update_job(&self, job: &Job) -> Result<(), StoreError> {
        const OP: &str = "updating a job";
        let request = codec::json_text("sign request", &job.request)?;
        let updated = sqlx::query(
            "UPDATE jobs SET request = $2, source = $3, state = $4, attempts = $5, digest = $6, \
             signature_id = $7, error = $8, updated_at = $9 WHERE id = $1",
        )
        .bind(job.id.to_string())
        .bind(request)
        .bind(job.source.as_str())
        .bind(job.state.as_str())
        .bind(i64::from(job.attempts))
        .bind(job.digest.as_ref().map(|d| d.as_str().to_owned()))
        .bind(job.signature_id.map(|id| id.to_string()))
        .bind(job.error.clone())
        .bind(codec::millis(job.updated_at))
        .execute(&self.write)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("job {}", job.id)));
        }
        self.job_changed(job.id);
        Ok(())
    }

    /// Saves a job that failed for good together with its audit entry and its
    /// `signature.failed` event, in one transaction: the failure is never on record
    /// without the event that announces it, nor announced without being on record.
    /// `NotFound` if there is no such job.
    #[tracing::instrument(name = "store.record_job_failure", level = "debug", skip_all, fields(job = %job.id))]
    pub async fn record_job_failure(
        &self,
        job: &Job,
        audit: &NewAudit,
        event: &OutboxEvent,
    ) -> Result<(), StoreError> {
        const OP: &str = "recording a failed job";
        let request = codec::json_text("sign request", &job.request)?;
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let updated = sqlx::query(
            "UPDATE jobs SET request = $2, source = $3, state = $4, attempts = $5, digest = $6, \
             signature_id = $7, error = $8, updated_at = $9 WHERE id = $1",
        )
        .bind(job.id.to_string())
        .bind(request)
        .bind(job.source.as_str())
        .bind(job.state.as_str())
        .bind(i64::from(job.attempts))
        .bind(job.digest.as_ref().map(|d| d.as_str().to_owned()))
        .bind(job.signature_id.map(|id| id.to_string()))
        .bind(job.error.clone())
        .bind(codec::millis(job.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("job {}", job.id)));
        }
        insert_audit(&mut tx, audit, now).await?;
        insert_outbox(&mut tx, event, now).await?;
        tx.commit().await.map_err(db(OP))?;
        self.job_changed(job.id);
        Ok(())
    }

    /// Jobs, newest first, optionally only those in one state.
    #[tracing::instrument(name = "store.list_jobs", level = "debug", skip_all)]
    pub async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let mut f = Filter::default();
        if let Some(state) = state {
            f.and("state = {}", Bind::Text(state.as_str().to_owned()));
        }
        let (sql, binds) = f.finish(
            &format!("SELECT {COLUMNS} FROM jobs"),
            "ORDER BY created_at DESC, id DESC LIMIT {}",
            Bind::Int(i64::from(limit)),
        );
        let rows = codec::bind_all(sqlx::query(&sql), binds)
            .fetch_all(&self.read)
            .await
            .map_err(db("listing jobs"))?;
        rows.iter().map(job_from_row).collect()
    }
}

fn job_from_row(row: &AnyRow) -> Result<Job, StoreError> {
    let id: String = col(row, "job", "id")?;
    let what = format!("job {id}");
    let request: String = col(row, &what, "request")?;
    let state: String = col(row, &what, "state")?;
    let attempts: i64 = col(row, &what, "attempts")?;
    let digest: Option<String> = col(row, &what, "digest")?;
    let signature_id: Option<String> = col(row, &what, "signature_id")?;
    Ok(Job {
        id: codec::uuid(&what, &id)?,
        request: codec::from_json::<SignRequest>(&what, &request)?,
        source: col(row, &what, "source")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(&what, format!("unknown state {state:?}")))?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::corrupt(&what, format!("attempts {attempts} out of range")))?,
        digest: digest
            .map(|d| Digest::parse(&d).map_err(|e| StoreError::corrupt(&what, e)))
            .transpose()?,
        signature_id: signature_id.map(|s| codec::uuid(&what, &s)).transpose()?,
        error: col(row, &what, "error")?,
        created_at: codec::time(&what, col(row, &what, "created_at")?)?,
        updated_at: codec::time(&what, col(row, &what, "updated_at")?)?,
    })
}
