//! API tokens. Only a SHA-256 hash of each secret is stored, and never logged.

use chrono::{DateTime, Utc};
use signet_core::{ApiToken, NewAudit, Role};
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::insert_audit;
use crate::codec::{self, col};
use crate::error::{db, StoreError};
use crate::Store;

const COLUMNS: &str =
    "id, name, role, secret_hash, revoked, created_at, cluster, expires_at, last_used_at, scope, session_of";

impl Store {
    /// Stores a token with its audit entry. `Conflict` if the name (or id) is taken.
    #[tracing::instrument(name = "store.create_token", level = "debug", skip_all, fields(token = %token.name))]
    pub async fn create_token(
        &self,
        token: &ApiToken,
        secret_hash: &[u8],
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        const OP: &str = "creating an API token";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        // No conflict target: a taken name and a taken id are both a conflict.
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (id, name, role, secret_hash, revoked, created_at, cluster, expires_at, scope, session_of) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(token.id.to_string())
        .bind(token.name.as_str())
        .bind(token.role.as_str())
        .bind(secret_hash.to_vec())
        .bind(codec::flag(token.revoked))
        .bind(codec::millis(token.created_at))
        .bind(token.cluster.clone())
        .bind(token.expires_at.map(codec::millis))
        .bind(codec::json_text("token scope", &token.scope)?)
        .bind(token.session_of.map(|id| id.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("API token {:?}", token.name)));
        }
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    /// The token and the stored hash of its secret.
    #[tracing::instrument(name = "store.get_token", level = "debug", skip_all, fields(token = %id))]
    pub async fn get_token(&self, id: Uuid) -> Result<Option<(ApiToken, Vec<u8>)>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(db("reading an API token"))?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Records that the token authenticated a request at `at`. Callers do this at most
    /// about once a minute per token, so it costs no write per request.
    #[tracing::instrument(name = "store.touch_token", level = "debug", skip_all, fields(token = %id))]
    pub async fn touch_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        const OP: &str = "recording when an API token was used";
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 \
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(codec::millis(at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    /// How many tokens exist, revoked ones included (decides whether to bootstrap one).
    #[tracing::instrument(name = "store.count_tokens", level = "debug", skip_all)]
    pub async fn count_tokens(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.read)
            .await
            .map_err(db("counting API tokens"))?;
        codec::count("API token count", col(&row, "API token count", "n")?)
    }
}

impl Store {
    /// Every token, oldest first (hashes are not returned).
    #[tracing::instrument(name = "store.list_tokens", level = "debug", skip_all)]
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, name"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db("listing API tokens"))?;
        rows.iter()
            .map(|r| token_from_row(r).map(|(t, _)| t))
            .collect()
    }

    /// Revokes a token by name, with its audit entry, and every console session opened
    /// with it; `NotFound` if no such token. Revoked tokens stay in the table so their
    /// audit trail keeps a name.
    #[tracing::instrument(name = "store.revoke_token", level = "debug", skip_all, fields(token = %name))]
    pub async fn revoke_token(&self, name: &str, audit: &NewAudit) -> Result<ApiToken, StoreError> {
        const OP: &str = "revoking an API token";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let updated = sqlx::query("UPDATE api_tokens SET revoked = $1 WHERE name = $2")
            .bind(codec::flag(true))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("API token {name:?}")));
        }
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_tokens WHERE name = $1"))
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OP))?;
        let (token, _) = token_from_row(&row)?;
        sqlx::query("UPDATE api_tokens SET revoked = $1 WHERE session_of = $2")
            .bind(codec::flag(true))
            .bind(token.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(token)
    }
}

fn token_from_row(row: &AnyRow) -> Result<(ApiToken, Vec<u8>), StoreError> {
    let id: String = col(row, "API token", "id")?;
    let what = format!("API token {id}");
    let role: String = col(row, &what, "role")?;
    let revoked: i64 = col(row, &what, "revoked")?;
    let token = ApiToken {
        id: codec::uuid(&what, &id)?,
        name: col(row, &what, "name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::corrupt(&what, format!("unknown role {role:?}")))?,
        created_at: codec::time(&what, col(row, &what, "created_at")?)?,
        revoked: revoked != 0,
        cluster: col(row, &what, "cluster")?,
        expires_at: col::<Option<i64>>(row, &what, "expires_at")?
            .map(|t| codec::time(&what, t))
            .transpose()?,
        last_used_at: col::<Option<i64>>(row, &what, "last_used_at")?
            .map(|t| codec::time(&what, t))
            .transpose()?,
        scope: codec::from_json(&what, &col::<String>(row, &what, "scope")?)?,
        session_of: col::<Option<String>>(row, &what, "session_of")?
            .map(|id| codec::uuid(&what, &id))
            .transpose()?,
    };
    Ok((token, col(row, &what, "secret_hash")?))
}
