//! Attestation records: the in-toto Statements signet signed (DSSE) and published as
//! cosign attestations, one per image, witness and statement.

use signet_core::{AttestationRecord, Digest, NewAudit};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::audit::insert_audit;
use crate::codec::{self, col};
use crate::error::{db, StoreError};
use crate::outbox::{insert_outbox, OutboxEvent};
use crate::signatures::Signed;
use crate::Store;

const COLUMNS: &str = "id, repository, digest, witness, predicate_type, statement_digest, \
                       key_version, key_fingerprint, algorithm, statement, signature, artifact, \
                       job_id, created_at";

impl Store {
    /// Records an attestation with its audit entry and event, in one transaction.
    ///
    /// Idempotent: when the (repository, digest, witness, statement) is recorded already,
    /// nothing is written and the existing record is returned. The job is not closed here:
    /// a job may carry several attestations and a signature. `NotFound` if the witness or
    /// the job is not stored.
    #[tracing::instrument(name = "store.record_attestation", level = "debug", skip_all, fields(repository = %rec.repository, digest = %rec.digest, witness = %rec.witness))]
    pub async fn record_attestation(
        &self,
        rec: &AttestationRecord,
        audit: &NewAudit,
        event: Option<&OutboxEvent>,
    ) -> Result<AttestationRecord, StoreError> {
        const OP: &str = "recording an attestation";
        let now = codec::now_millis();
        let statement_digest = rec.statement_digest();
        let mut tx = self.begin_write(OP).await?;
        let witness = sqlx::query("SELECT name FROM witnesses WHERE name = $1")
            .bind(rec.witness.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
        if witness.is_none() {
            return Err(StoreError::NotFound(format!("witness {:?}", rec.witness)));
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO attestations ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (repository, digest, witness, statement_digest) DO NOTHING"
        ))
        .bind(rec.id.to_string())
        .bind(rec.repository.as_str())
        .bind(rec.digest.as_str())
        .bind(rec.witness.as_str())
        .bind(rec.predicate_type.as_str())
        .bind(statement_digest.as_str())
        .bind(rec.key_version.as_str())
        .bind(rec.key_fingerprint.as_str())
        .bind(rec.algorithm.as_str())
        .bind(rec.statement.clone())
        .bind(rec.signature.clone())
        .bind(rec.artifact.as_str())
        .bind(rec.job_id.map(|id| id.to_string()))
        .bind(codec::millis(rec.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound(format!(
                    "job {}",
                    rec.job_id.map(|j| j.to_string()).unwrap_or_default()
                ))
            }
            _ => StoreError::from_sqlx(OP, e),
        })?
        .rows_affected();
        let stored = select_one(
            &mut tx,
            &rec.repository,
            &rec.digest,
            &rec.witness,
            &statement_digest,
        )
        .await?
        .ok_or_else(|| {
            StoreError::corrupt(
                format!("attestation for {}@{}", rec.repository, rec.digest),
                "the record vanished inside its own transaction",
            )
        })?;
        if inserted > 0 {
            insert_audit(&mut tx, audit, now).await?;
            if let Some(event) = event {
                insert_outbox(&mut tx, event, now).await?;
            }
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(stored)
    }

    /// The attestation recorded for this image, witness and statement, if any.
    #[tracing::instrument(name = "store.find_attestation", level = "debug", skip_all)]
    pub async fn find_attestation(
        &self,
        repository: &str,
        digest: &Digest,
        witness: &str,
        statement_digest: &Digest,
    ) -> Result<Option<AttestationRecord>, StoreError> {
        let mut conn = self
            .read
            .acquire()
            .await
            .map_err(db("reading an attestation"))?;
        select_one(&mut conn, repository, digest, witness, statement_digest).await
    }

    /// Attestations, newest first: of one digest when given, at most `limit`.
    #[tracing::instrument(name = "store.list_attestations", level = "debug", skip_all)]
    pub async fn list_attestations(
        &self,
        digest: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<AttestationRecord>, StoreError> {
        let by_digest = format!(
            "SELECT {COLUMNS} FROM attestations WHERE digest = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let all = format!(
            "SELECT {COLUMNS} FROM attestations ORDER BY created_at DESC, id DESC LIMIT $1"
        );
        let rows = match digest {
            Some(d) => sqlx::query(&by_digest)
                .bind(d.as_str())
                .bind(i64::from(limit)),
            None => sqlx::query(&all).bind(i64::from(limit)),
        }
        .fetch_all(&self.read)
        .await
        .map_err(db("listing attestations"))?;
        rows.iter().map(attestation_from_row).collect()
    }
}

async fn select_one(
    conn: &mut AnyConnection,
    repository: &str,
    digest: &Digest,
    witness: &str,
    statement_digest: &Digest,
) -> Result<Option<AttestationRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM attestations WHERE repository = $1 AND digest = $2 \
         AND witness = $3 AND statement_digest = $4"
    ))
    .bind(repository)
    .bind(digest.as_str())
    .bind(witness)
    .bind(statement_digest.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading an attestation"))?;
    row.as_ref().map(attestation_from_row).transpose()
}

fn attestation_from_row(row: &AnyRow) -> Result<AttestationRecord, StoreError> {
    let id: String = col(row, "attestation", "id")?;
    let what = format!("attestation {id}");
    let c = Signed::read(row, &what, &id)?;
    Ok(AttestationRecord {
        id: c.id,
        repository: c.repository,
        digest: c.digest,
        witness: c.witness,
        key_version: c.key_version,
        key_fingerprint: c.key_fingerprint,
        algorithm: c.algorithm,
        predicate_type: col(row, &what, "predicate_type")?,
        statement: col(row, &what, "statement")?,
        signature: c.signature,
        artifact: c.artifact,
        job_id: c.job_id,
        created_at: c.created_at,
    })
}
