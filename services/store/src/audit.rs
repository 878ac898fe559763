//! The append-only audit log. There is no update or delete API, and the schema's triggers
//! refuse such changes made around the store.

use signet_core::{AuditEntry, NewAudit};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::codec::{self, col, Bind, Filter};
use crate::error::{db, StoreError};
use crate::Store;

/// Which audit entries to list. Entries come oldest first (ascending id) unless
/// `newest_first` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only actions starting with this, e.g. `witness.` or `signature.publish`.
    pub action_prefix: Option<String>,
    /// Only this subject (a witness name, an image digest, a job id).
    pub subject: Option<String>,
    /// Only entries with a larger id: resume after the last entry seen.
    pub since_id: Option<i64>,
    pub newest_first: bool,
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            action_prefix: None,
            subject: None,
            since_id: None,
            newest_first: false,
            limit: 100,
        }
    }
}

impl Store {
    /// Appends one entry and returns its id. Ids grow in commit order without gaps.
    #[tracing::instrument(name = "store.append_audit", level = "debug", skip_all, fields(action = %entry.action))]
    pub async fn append_audit(&self, entry: &NewAudit) -> Result<i64, StoreError> {
        const OP: &str = "appending to the audit log";
        let mut tx = self.begin_write(OP).await?;
        let id = insert_audit(&mut tx, entry, codec::now_millis()).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(id)
    }

    #[tracing::instrument(name = "store.list_audit", level = "debug", skip_all)]
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut f = Filter::default();
        if let Some(prefix) = &filter.action_prefix {
            // substr/length instead of LIKE: no wildcard escaping, same text on both backends.
            f.and(
                "substr(action, 1, length({})) = {}",
                Bind::Text(prefix.clone()),
            );
        }
        if let Some(subject) = &filter.subject {
            f.and("subject = {}", Bind::Text(subject.clone()));
        }
        if let Some(since) = filter.since_id {
            f.and("id > {}", Bind::Int(since));
        }
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let (sql, binds) = f.finish(
            "SELECT id, at, actor, action, subject, detail FROM audit_log",
            &format!("ORDER BY id {order} LIMIT {{}}"),
            Bind::Int(i64::from(filter.limit)),
        );
        let rows = codec::bind_all(sqlx::query(&sql), binds)
            .fetch_all(&self.read)
            .await
            .map_err(db("listing the audit log"))?;
        rows.iter().map(audit_from_row).collect()
    }
}

/// Writes one audit entry inside the caller's transaction. Bumping the counter row takes a
/// lock held to commit, which is what keeps ids in commit order.
pub(crate) async fn insert_audit(
    conn: &mut AnyConnection,
    entry: &NewAudit,
    at: i64,
) -> Result<i64, StoreError> {
    const OP: &str = "appending to the audit log";
    let id = next_id(conn, "audit", OP).await?;
    let detail = codec::json_text("audit detail", &entry.detail)?;
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, subject, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(at)
    .bind(entry.actor.as_str())
    .bind(entry.action.as_str())
    .bind(entry.subject.as_str())
    .bind(detail)
    .execute(&mut *conn)
    .await
    .map_err(db(OP))?;
    Ok(id)
}

/// The next value of a named counter (`audit` or `outbox`).
pub(crate) async fn next_id(
    conn: &mut AnyConnection,
    counter: &'static str,
    operation: &'static str,
) -> Result<i64, StoreError> {
    let row = sqlx::query("UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value")
        .bind(counter)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(operation))?
        .ok_or_else(|| {
            StoreError::corrupt("counters", format!("counter {counter:?} is missing"))
        })?;
    col(&row, "counters", "value")
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let id: i64 = col(row, "audit entry", "id")?;
    let what = format!("audit entry {id}");
    let detail: String = col(row, &what, "detail")?;
    Ok(AuditEntry {
        id,
        at: codec::time(&what, col(row, &what, "at")?)?,
        actor: col(row, &what, "actor")?,
        action: col(row, &what, "action")?,
        subject: col(row, &what, "subject")?,
        detail: codec::from_json(&what, &detail)?,
    })
}
