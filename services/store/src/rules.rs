//! Signing rules: which pushed repositories are signed automatically, and by which
//! witness. Every change is written with its audit entry in one transaction. Verifiers do
//! not enforce rules, so no event is emitted.

use signet_core::{NewAudit, SignatureFormat, SigningRule};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::audit::insert_audit;
use crate::codec::{self, col};
use crate::error::{db, StoreError};
use crate::Store;

const COLUMNS: &str =
    "name, repositories, tag_pattern, witness, enabled, created_at, updated_at, labels, format";

impl Store {
    /// Stores a new rule with its audit entry. `Conflict` if the name is taken, `NotFound`
    /// if its witness is not stored.
    #[tracing::instrument(name = "store.create_signing_rule", level = "debug", skip_all, fields(rule = %rule.name))]
    pub async fn create_signing_rule(
        &self,
        rule: &SigningRule,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        const OP: &str = "creating a signing rule";
        let repositories = codec::json_text("rule repositories", &rule.repositories)?;
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        require_witness(&mut tx, &rule.witness, OP).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO signing_rules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(rule.name.as_str())
        .bind(repositories)
        .bind(rule.tag_pattern.as_str())
        .bind(rule.witness.as_str())
        .bind(codec::flag(rule.enabled))
        .bind(codec::millis(rule.created_at))
        .bind(codec::millis(rule.updated_at))
        .bind(codec::json_text("rule labels", &rule.labels)?)
        .bind(rule.format.map(|f| f.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "signing rule {:?}",
                rule.name
            )));
        }
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    #[tracing::instrument(name = "store.get_signing_rule", level = "debug", skip_all, fields(rule = %name))]
    pub async fn get_signing_rule(&self, name: &str) -> Result<Option<SigningRule>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signing_rules WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.read)
        .await
        .map_err(db("reading a signing rule"))?;
        row.as_ref().map(rule_from_row).transpose()
    }

    /// Every rule, by name; disabled ones too.
    #[tracing::instrument(name = "store.list_signing_rules", level = "debug", skip_all)]
    pub async fn list_signing_rules(&self) -> Result<Vec<SigningRule>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM signing_rules ORDER BY name"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db("listing signing rules"))?;
        rows.iter().map(rule_from_row).collect()
    }

    /// Replaces everything but the name and creation time, with its audit entry.
    /// `NotFound` if there is no such rule or its new witness is not stored.
    #[tracing::instrument(name = "store.update_signing_rule", level = "debug", skip_all, fields(rule = %rule.name))]
    pub async fn update_signing_rule(
        &self,
        rule: &SigningRule,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        const OP: &str = "updating a signing rule";
        let repositories = codec::json_text("rule repositories", &rule.repositories)?;
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        require_witness(&mut tx, &rule.witness, OP).await?;
        let updated = sqlx::query(
            "UPDATE signing_rules SET repositories = $2, tag_pattern = $3, witness = $4, \
             enabled = $5, updated_at = $6, labels = $7, format = $8 WHERE name = $1",
        )
        .bind(rule.name.as_str())
        .bind(repositories)
        .bind(rule.tag_pattern.as_str())
        .bind(rule.witness.as_str())
        .bind(codec::flag(rule.enabled))
        .bind(codec::millis(rule.updated_at))
        .bind(codec::json_text("rule labels", &rule.labels)?)
        .bind(rule.format.map(|f| f.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!(
                "signing rule {:?}",
                rule.name
            )));
        }
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    /// Deletes a rule, with its audit entry. `NotFound` if there is no such rule.
    #[tracing::instrument(name = "store.delete_signing_rule", level = "debug", skip_all, fields(rule = %name))]
    pub async fn delete_signing_rule(
        &self,
        name: &str,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        const OP: &str = "deleting a signing rule";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let deleted = sqlx::query("DELETE FROM signing_rules WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("signing rule {name:?}")));
        }
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }
}

/// Checked here rather than left to the foreign key, for a message that names the witness.
async fn require_witness(
    conn: &mut AnyConnection,
    witness: &str,
    operation: &'static str,
) -> Result<(), StoreError> {
    let found = sqlx::query("SELECT name FROM witnesses WHERE name = $1")
        .bind(witness)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db(operation))?;
    if found.is_none() {
        return Err(StoreError::NotFound(format!("witness {witness:?}")));
    }
    Ok(())
}

fn rule_from_row(row: &AnyRow) -> Result<SigningRule, StoreError> {
    let name: String = col(row, "signing rule", "name")?;
    let what = format!("signing rule {name:?}");
    let repositories: String = col(row, &what, "repositories")?;
    let enabled: i64 = col(row, &what, "enabled")?;
    let labels: String = col(row, &what, "labels")?;
    let format: Option<String> = col(row, &what, "format")?;
    let format = match format {
        None => None,
        Some(f) => Some(
            SignatureFormat::parse(&f)
                .ok_or_else(|| StoreError::corrupt(&what, format!("unknown format {f:?}")))?,
        ),
    };
    Ok(SigningRule {
        labels: codec::from_json(&what, &labels)?,
        repositories: codec::from_json(&what, &repositories)?,
        tag_pattern: col(row, &what, "tag_pattern")?,
        witness: col(row, &what, "witness")?,
        enabled: enabled != 0,
        created_at: codec::time(&what, col(row, &what, "created_at")?)?,
        updated_at: codec::time(&what, col(row, &what, "updated_at")?)?,
        name,
        format,
    })
}
