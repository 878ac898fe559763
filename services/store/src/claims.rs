//! Signing claims: a short lease on a key such as `<repository>@<digest>#<witness>` that
//! keeps two signer replicas from signing the same image with the same witness at once.
//! The lease bounds how long a crashed holder blocks others.

use std::time::Duration;

use crate::codec;
use crate::error::{db, StoreError};
use crate::Store;

impl Store {
    /// True if `holder` now holds the claim on `key` until `lease` from now: nobody held it,
    /// the previous lease ran out, or `holder` already held it (renewed).
    #[tracing::instrument(
        name = "store.claim_signing",
        level = "debug",
        skip_all,
        fields(key = %key, holder = %holder),
    )]
    pub async fn claim_signing(
        &self,
        key: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = codec::now_millis();
        let expires = now.saturating_add(codec::duration_millis(lease));
        // One statement, so the check and the take are atomic on both backends; a row
        // comes back only if the insert or the guarded update happened.
        let row = sqlx::query(
            "INSERT INTO signing_claims (claim_key, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (claim_key) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE signing_claims.holder = excluded.holder OR signing_claims.expires_at <= $4 \
             RETURNING holder",
        )
        .bind(key)
        .bind(holder)
        .bind(expires)
        .bind(now)
        .fetch_optional(&self.write)
        .await
        .map_err(db("claiming an image for signing"))?;
        Ok(row.is_some())
    }

    /// Extends `holder`'s claim on `key` to `lease` from now; false (and nothing written)
    /// when `holder` no longer holds it: released (with the record, in its transaction)
    /// or taken over after it ran out. Unlike [`Store::claim_signing`] it never takes a
    /// claim, so a renewal racing the release cannot bring a claim back.
    #[tracing::instrument(
        name = "store.renew_signing",
        level = "debug",
        skip_all,
        fields(key = %key, holder = %holder),
    )]
    pub async fn renew_signing(
        &self,
        key: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let expires = codec::now_millis().saturating_add(codec::duration_millis(lease));
        let updated = sqlx::query(
            "UPDATE signing_claims SET expires_at = $3 WHERE claim_key = $1 AND holder = $2",
        )
        .bind(key)
        .bind(holder)
        .bind(expires)
        .execute(&self.write)
        .await
        .map_err(db("renewing a signing claim"))?
        .rows_affected();
        Ok(updated > 0)
    }

    /// Gives up the claim if `holder` holds it; a claim held by someone else is left alone.
    #[tracing::instrument(
        name = "store.release_signing",
        level = "debug",
        skip_all,
        fields(key = %key, holder = %holder),
    )]
    pub async fn release_signing(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signing_claims WHERE claim_key = $1 AND holder = $2")
            .bind(key)
            .bind(holder)
            .execute(&self.write)
            .await
            .map_err(db("releasing a signing claim"))?;
        Ok(())
    }
}
