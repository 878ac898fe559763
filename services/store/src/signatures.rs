//! Signature records: one per (repository, digest, witness).

use signet_core::{
    Digest, EventKind, NewAudit, Revocation, RevokedSignature, SignatureAlgorithm, SignatureRecord,
};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::audit::insert_audit;
use crate::codec::{self, col, Bind, Filter};
use crate::error::{db, StoreError};
use crate::outbox::{insert_outbox, OutboxEvent};
use crate::Store;

/// What a new record is written with.
const INSERT_COLUMNS: &str = "id, repository, digest, witness, key_version, key_fingerprint, \
                              algorithm, payload, signature, artifact, job_id, created_at";
/// What a record is read with: the written columns and its revocation.
const COLUMNS: &str = "id, repository, digest, witness, key_version, key_fingerprint, algorithm, \
                       payload, signature, artifact, job_id, created_at, \
                       revoked_at, revoked_by, revoked_reason";

/// Which signature records to list (newest first). Unset fields match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFilter {
    pub repository: Option<String>,
    pub digest: Option<Digest>,
    pub witness: Option<String>,
    /// Only signatures by these (witness, key fingerprint) pairs: the live keys, for the
    /// trusted image list. Empty: none match.
    pub keys: Option<Vec<(String, String)>>,
    /// Leave out revoked signatures.
    pub unrevoked: bool,
    /// Applied after every other condition.
    pub limit: u32,
}

impl Default for SignatureFilter {
    fn default() -> Self {
        Self {
            repository: None,
            digest: None,
            witness: None,
            keys: None,
            unrevoked: false,
            limit: 100,
        }
    }
}

impl Store {
    /// Records a signature, marks its job succeeded (if `job_id`), and writes the audit
    /// entry and the event, all in one transaction.
    ///
    /// Idempotent: if the (repository, digest, witness) triple is already recorded, nothing
    /// new is written except that the job (if any) is marked succeeded with the existing
    /// signature, and the existing record is returned. `NotFound` if the witness or the job
    /// is not stored.
    #[tracing::instrument(name = "store.record_signature", level = "debug", skip_all, fields(repository = %rec.repository, digest = %rec.digest, witness = %rec.witness))]
    pub async fn record_signature(
        &self,
        rec: &SignatureRecord,
        audit: &NewAudit,
        event: Option<&OutboxEvent>,
    ) -> Result<SignatureRecord, StoreError> {
        self.record_signature_in(rec, audit, event, None).await
    }

    /// [`Store::record_signature`], and gives up the signing claim `claim` held by
    /// `holder` in the same transaction: a signer saves the statement a release would
    /// take, and the claim can never outlive the record it guarded.
    #[tracing::instrument(name = "store.record_signature", level = "debug", skip_all, fields(repository = %rec.repository, digest = %rec.digest, witness = %rec.witness))]
    pub async fn record_signature_releasing(
        &self,
        rec: &SignatureRecord,
        audit: &NewAudit,
        event: Option<&OutboxEvent>,
        claim: &str,
        holder: &str,
    ) -> Result<SignatureRecord, StoreError> {
        self.record_signature_in(rec, audit, event, Some((claim, holder)))
            .await
    }

    async fn record_signature_in(
        &self,
        rec: &SignatureRecord,
        audit: &NewAudit,
        event: Option<&OutboxEvent>,
        release: Option<(&str, &str)>,
    ) -> Result<SignatureRecord, StoreError> {
        const OP: &str = "recording a signature";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;

        // Checked here rather than left to the foreign keys, for a message that says which.
        let witness = sqlx::query("SELECT name FROM witnesses WHERE name = $1")
            .bind(rec.witness.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
        if witness.is_none() {
            return Err(StoreError::NotFound(format!("witness {:?}", rec.witness)));
        }

        let inserted = sqlx::query(&format!(
            "INSERT INTO signatures ({INSERT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (repository, digest, witness) DO NOTHING"
        ))
        .bind(rec.id.to_string())
        .bind(rec.repository.as_str())
        .bind(rec.digest.as_str())
        .bind(rec.witness.as_str())
        .bind(rec.key_version.as_str())
        .bind(rec.key_fingerprint.as_str())
        .bind(rec.algorithm.as_str())
        .bind(rec.payload.clone())
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

        // On PostgreSQL a concurrent insert of the same triple makes ours wait for its
        // commit and then do nothing; this read (a fresh snapshot) then sees the winner.
        let stored = select_one(&mut tx, &rec.repository, &rec.digest, &rec.witness)
            .await?
            .ok_or_else(|| {
                StoreError::corrupt(
                    format!("signature for {}@{}", rec.repository, rec.digest),
                    "the record vanished inside its own transaction",
                )
            })?;

        if let Some(job_id) = rec.job_id {
            let marked = sqlx::query(
                "UPDATE jobs SET state = 'succeeded', signature_id = $2, digest = $3, \
                 error = NULL, updated_at = $4 WHERE id = $1",
            )
            .bind(job_id.to_string())
            .bind(stored.id.to_string())
            .bind(stored.digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?
            .rows_affected();
            if marked == 0 {
                return Err(StoreError::NotFound(format!("job {job_id}")));
            }
        }

        if inserted > 0 {
            insert_audit(&mut tx, audit, now).await?;
            if let Some(event) = event {
                insert_outbox(&mut tx, event, now).await?;
            }
        }
        if let Some((claim, holder)) = release {
            sqlx::query("DELETE FROM signing_claims WHERE claim_key = $1 AND holder = $2")
                .bind(claim)
                .bind(holder)
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        tx.commit().await.map_err(db(OP))?;
        if let Some(job_id) = rec.job_id {
            self.job_changed(job_id);
        }
        Ok(stored)
    }

    /// Revokes a signature: marks the record, and writes the audit entry and the
    /// `signature.revoked` event (the record, revocation included) in the same
    /// transaction. `NotFound` for an unknown id, `Conflict` when already revoked.
    #[tracing::instrument(name = "store.revoke_signature", level = "debug", skip_all, fields(id = %id))]
    pub async fn revoke_signature(
        &self,
        id: Uuid,
        by: &str,
        reason: &str,
    ) -> Result<SignatureRecord, StoreError> {
        const OP: &str = "revoking a signature";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let marked = sqlx::query(
            "UPDATE signatures SET revoked_at = $2, revoked_by = $3, revoked_reason = $4 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id.to_string())
        .bind(now)
        .bind(by)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM signatures WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?;
        let Some(record) = row.as_ref().map(signature_from_row).transpose()? else {
            return Err(StoreError::NotFound(format!("signature {id}")));
        };
        if marked == 0 {
            return Err(StoreError::Conflict(format!(
                "a revocation of signature {id}"
            )));
        }
        let audit = NewAudit::new(
            by,
            "signature.revoke",
            format!("{}@{}", record.repository, record.digest),
            serde_json::json!({
                "signature_id": id,
                "witness": record.witness,
                "key_fingerprint": record.key_fingerprint,
                "reason": reason,
            }),
        );
        insert_audit(&mut tx, &audit, now).await?;
        let data = serde_json::to_value(&record)
            .map_err(|e| StoreError::corrupt(format!("signature {id}"), e))?;
        let event = OutboxEvent::new(EventKind::SignatureRevoked, record.digest.to_string(), data);
        let revision = insert_outbox(&mut tx, &event, now).await?;
        // What lets a verifier at an older revision be sent only what changed since.
        sqlx::query("UPDATE signatures SET revoked_revision = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(revision)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(record)
    }

    #[tracing::instrument(name = "store.find_signature", level = "debug", skip_all, fields(repository = %repository, digest = %digest, witness = %witness))]
    pub async fn find_signature(
        &self,
        repository: &str,
        digest: &Digest,
        witness: &str,
    ) -> Result<Option<SignatureRecord>, StoreError> {
        let mut conn = self
            .read
            .acquire()
            .await
            .map_err(db("reading a signature"))?;
        select_one(&mut conn, repository, digest, witness).await
    }

    /// What decides whether `witness` may sign `repository@digest`, in one statement: the
    /// record of that very signature (revoked or not), else the oldest revoked signature
    /// of `digest` by `witness` under any repository ([`Store::find_signature`], then
    /// [`Store::find_revoked_signature`]); `None` when it may be signed.
    #[tracing::instrument(name = "store.find_signature_or_revocation", level = "debug", skip_all, fields(digest = %digest, witness = %witness))]
    pub async fn find_signature_or_revocation(
        &self,
        repository: &str,
        digest: &Digest,
        witness: &str,
    ) -> Result<Option<SignatureRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signatures \
             WHERE digest = $2 AND witness = $3 AND (repository = $1 OR revoked_at IS NOT NULL) \
             ORDER BY CASE WHEN repository = $1 THEN 0 ELSE 1 END, revoked_at, id LIMIT 1"
        ))
        .bind(repository)
        .bind(digest.as_str())
        .bind(witness)
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading a signature"))?;
        row.as_ref().map(signature_from_row).transpose()
    }

    /// A revoked signature of `digest` by `witness` under any repository and with any
    /// key version (the oldest revocation): a revocation binds to the digest and the
    /// witness, so neither another repository name nor a rotated key undoes it.
    #[tracing::instrument(name = "store.find_revoked_signature", level = "debug", skip_all, fields(digest = %digest, witness = %witness))]
    pub async fn find_revoked_signature(
        &self,
        digest: &Digest,
        witness: &str,
    ) -> Result<Option<SignatureRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signatures \
             WHERE digest = $1 AND witness = $2 AND revoked_at IS NOT NULL \
             ORDER BY revoked_at, id LIMIT 1"
        ))
        .bind(digest.as_str())
        .bind(witness)
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading revoked signatures"))?;
        row.as_ref().map(signature_from_row).transpose()
    }

    #[tracing::instrument(name = "store.list_signatures", level = "debug", skip_all)]
    pub async fn list_signatures(
        &self,
        filter: &SignatureFilter,
    ) -> Result<Vec<SignatureRecord>, StoreError> {
        let mut f = Filter::default();
        if let Some(repository) = &filter.repository {
            f.and("repository = {}", Bind::Text(repository.clone()));
        }
        if let Some(digest) = &filter.digest {
            f.and("digest = {}", Bind::Text(digest.as_str().to_owned()));
        }
        if let Some(witness) = &filter.witness {
            f.and("witness = {}", Bind::Text(witness.clone()));
        }
        if let Some(keys) = &filter.keys {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let pairs = vec!["(witness = {} AND key_fingerprint = {})"; keys.len()].join(" OR ");
            f.and_each(
                &format!("({pairs})"),
                keys.iter()
                    .flat_map(|(w, k)| [Bind::Text(w.clone()), Bind::Text(k.clone())])
                    .collect(),
            );
        }
        if filter.unrevoked {
            f.and_each("revoked_at IS NULL", Vec::new());
        }
        let (sql, binds) = f.finish(
            &format!("SELECT {COLUMNS} FROM signatures"),
            "ORDER BY created_at DESC, id DESC LIMIT {}",
            Bind::Int(i64::from(filter.limit)),
        );
        let rows = codec::bind_all(sqlx::query(&sql), binds)
            .fetch_all(&self.read)
            .await
            .map_err(db("listing signatures"))?;
        rows.iter().map(signature_from_row).collect()
    }
}

async fn select_one(
    conn: &mut AnyConnection,
    repository: &str,
    digest: &Digest,
    witness: &str,
) -> Result<Option<SignatureRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM signatures WHERE repository = $1 AND digest = $2 AND witness = $3"
    ))
    .bind(repository)
    .bind(digest.as_str())
    .bind(witness)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("reading a signature"))?;
    row.as_ref().map(signature_from_row).transpose()
}

fn signature_from_row(row: &AnyRow) -> Result<SignatureRecord, StoreError> {
    let id: String = col(row, "signature", "id")?;
    let what = format!("signature {id}");
    let c = Signed::read(row, &what, &id)?;
    Ok(SignatureRecord {
        id: c.id,
        repository: c.repository,
        digest: c.digest,
        witness: c.witness,
        key_version: c.key_version,
        key_fingerprint: c.key_fingerprint,
        algorithm: c.algorithm,
        payload: col(row, &what, "payload")?,
        signature: c.signature,
        artifact: c.artifact,
        job_id: c.job_id,
        created_at: c.created_at,
        revoked: revocation(row, &what)?,
    })
}

/// The columns a signature and an attestation record share, read and checked.
pub(crate) struct Signed {
    pub id: uuid::Uuid,
    pub repository: String,
    pub digest: Digest,
    pub witness: String,
    pub key_version: String,
    pub key_fingerprint: String,
    pub algorithm: SignatureAlgorithm,
    pub signature: Vec<u8>,
    pub artifact: String,
    pub job_id: Option<uuid::Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Signed {
    pub(crate) fn read(row: &AnyRow, what: &str, id: &str) -> Result<Self, StoreError> {
        let digest: String = col(row, what, "digest")?;
        let algorithm: String = col(row, what, "algorithm")?;
        let job_id: Option<String> = col(row, what, "job_id")?;
        Ok(Self {
            id: codec::uuid(what, id)?,
            repository: col(row, what, "repository")?,
            digest: Digest::parse(&digest).map_err(|e| StoreError::corrupt(what, e))?,
            witness: col(row, what, "witness")?,
            key_version: col(row, what, "key_version")?,
            key_fingerprint: col(row, what, "key_fingerprint")?,
            algorithm: SignatureAlgorithm::parse(&algorithm).ok_or_else(|| {
                StoreError::corrupt(what, format!("unknown algorithm {algorithm:?}"))
            })?,
            signature: col(row, what, "signature")?,
            artifact: col(row, what, "artifact")?,
            job_id: job_id.map(|j| codec::uuid(what, &j)).transpose()?,
            created_at: codec::time(what, col(row, what, "created_at")?)?,
        })
    }
}

fn revocation(row: &AnyRow, what: &str) -> Result<Option<Revocation>, StoreError> {
    let at: Option<i64> = col(row, what, "revoked_at")?;
    let Some(at) = at else {
        return Ok(None);
    };
    let by: Option<String> = col(row, what, "revoked_by")?;
    let reason: Option<String> = col(row, what, "revoked_reason")?;
    Ok(Some(Revocation {
        at: codec::time(what, at)?,
        by: by.unwrap_or_default(),
        reason: reason.unwrap_or_default(),
    }))
}

/// The revoked signatures by `witness`, for a trust bundle.
pub(crate) async fn select_revoked(
    conn: &mut AnyConnection,
    witness: &str,
    since: Option<i64>,
) -> Result<Vec<RevokedSignature>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM signatures \
         WHERE witness = $1 AND revoked_at IS NOT NULL AND revoked_revision > $2 \
         ORDER BY revoked_at, id"
    ))
    .bind(witness)
    .bind(since.unwrap_or(i64::MIN))
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading revoked signatures"))?;
    let mut revoked = Vec::with_capacity(rows.len());
    for row in &rows {
        revoked.extend(RevokedSignature::of(&signature_from_row(row)?));
    }
    Ok(revoked)
}
