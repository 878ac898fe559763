//! Witnesses. Key versions are kept as a JSON column rather than a table of their own: a
//! witness is always read and replaced whole (rotation and revocation rewrite the set),
//! no query looks inside the versions, and one row keeps a replacement atomic without a
//! delete-and-reinsert. The public keys in it are PEM, re-validated on every read.

use signet_core::{
    EventKind, KeyVersion, KeyVersionState, NewAudit, SignatureAlgorithm, SignatureFormat, Witness,
    WitnessState,
};
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::codec::{self, col};
use crate::error::{db, StoreError};
use crate::outbox::{insert_outbox, OutboxEvent};
use crate::Store;

const COLUMNS: &str =
    "name, kms_key, algorithm, description, state, key_versions, created_at, format";

impl Store {
    /// Stores a new witness with its audit entry and a `witness.created` event.
    /// `Conflict` if the name is taken.
    #[tracing::instrument(name = "store.create_witness", level = "debug", skip_all, fields(witness = %w.name))]
    pub async fn create_witness(&self, w: &Witness, audit: &NewAudit) -> Result<(), StoreError> {
        const OP: &str = "creating a witness";
        let key_versions = codec::json_text("witness key versions", &w.key_versions)?;
        let data = codec::json_value("witness", w)?;
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let inserted = sqlx::query(
            "INSERT INTO witnesses \
             (name, kms_key, algorithm, description, state, key_versions, created_at, updated_at, format) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING",
        )
        .bind(w.name.as_str())
        .bind(w.kms_key.as_str())
        .bind(w.algorithm.as_str())
        .bind(w.description.as_str())
        .bind(state_str(w.state))
        .bind(key_versions)
        .bind(codec::millis(w.created_at))
        .bind(now)
        .bind(w.format.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("witness {:?}", w.name)));
        }
        insert_audit(&mut tx, audit, now).await?;
        let event = OutboxEvent::new(EventKind::WitnessCreated, w.name.as_str(), data);
        insert_outbox(&mut tx, &event, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }

    #[tracing::instrument(name = "store.get_witness", level = "debug", skip_all, fields(witness = %name))]
    pub async fn get_witness(&self, name: &str) -> Result<Option<Witness>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM witnesses WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db("reading a witness"))?;
        row.as_ref().map(witness_from_row).transpose()
    }

    /// All witnesses, by name.
    #[tracing::instrument(name = "store.list_witnesses", level = "debug", skip_all)]
    pub async fn list_witnesses(&self) -> Result<Vec<Witness>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM witnesses ORDER BY name"))
            .fetch_all(&self.read)
            .await
            .map_err(db("listing witnesses"))?;
        rows.iter().map(witness_from_row).collect()
    }

    /// Replaces a witness's KMS key, algorithm, description, state and key versions
    /// (rotation, revocation), with its audit entry and an event named after what changed:
    /// `witness.revoked`, `witness.key_revoked` or `witness.rotated` (any other change).
    /// The creation time is kept. `NotFound` if there is no such witness.
    #[tracing::instrument(name = "store.update_witness", level = "debug", skip_all, fields(witness = %w.name))]
    pub async fn update_witness(&self, w: &Witness, audit: &NewAudit) -> Result<(), StoreError> {
        const OP: &str = "updating a witness";
        let key_versions = codec::json_text("witness key versions", &w.key_versions)?;
        let data = codec::json_value("witness", w)?;
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        // Lock the row first (SQLite's write lock already covers it), so that the state read
        // next, which names the change, cannot be overtaken by a concurrent update.
        let locked = sqlx::query("UPDATE witnesses SET updated_at = $2 WHERE name = $1")
            .bind(w.name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?
            .rows_affected();
        if locked == 0 {
            return Err(StoreError::NotFound(format!("witness {:?}", w.name)));
        }
        let before = sqlx::query(&format!("SELECT {COLUMNS} FROM witnesses WHERE name = $1"))
            .bind(w.name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?
            .as_ref()
            .map(witness_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("witness {:?}", w.name)))?;
        sqlx::query(
            "UPDATE witnesses SET kms_key = $2, algorithm = $3, description = $4, state = $5, \
             key_versions = $6, updated_at = $7, format = $8 WHERE name = $1",
        )
        .bind(w.name.as_str())
        .bind(w.kms_key.as_str())
        .bind(w.algorithm.as_str())
        .bind(w.description.as_str())
        .bind(state_str(w.state))
        .bind(key_versions)
        .bind(now)
        .bind(w.format.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;
        insert_audit(&mut tx, audit, now).await?;
        let event = OutboxEvent::new(change_kind(&before, w), w.name.as_str(), data);
        insert_outbox(&mut tx, &event, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(())
    }
}

/// One witness, read on the caller's connection (inside its transaction).
pub(crate) async fn select_witness(
    conn: &mut sqlx::AnyConnection,
    name: &str,
) -> Result<Option<Witness>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM witnesses WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a witness"))?;
    row.as_ref().map(witness_from_row).transpose()
}

/// The event a verifier needs for a witness change, most severe first.
fn change_kind(before: &Witness, after: &Witness) -> EventKind {
    let revoked_versions = |w: &Witness| {
        w.key_versions
            .iter()
            .filter(|v| v.state == KeyVersionState::Revoked)
            .map(|v| v.version.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    if before.state == WitnessState::Active && after.state == WitnessState::Revoked {
        EventKind::WitnessRevoked
    } else if !revoked_versions(after).is_subset(&revoked_versions(before)) {
        EventKind::WitnessKeyRevoked
    } else {
        EventKind::WitnessRotated
    }
}

fn state_str(s: WitnessState) -> &'static str {
    match s {
        WitnessState::Active => "active",
        WitnessState::Revoked => "revoked",
    }
}

fn parse_state(s: &str) -> Option<WitnessState> {
    match s {
        "active" => Some(WitnessState::Active),
        "revoked" => Some(WitnessState::Revoked),
        _ => None,
    }
}

fn witness_from_row(row: &AnyRow) -> Result<Witness, StoreError> {
    let name: String = col(row, "witness", "name")?;
    let what = format!("witness {name:?}");
    let algorithm: String = col(row, &what, "algorithm")?;
    let state: String = col(row, &what, "state")?;
    let key_versions: String = col(row, &what, "key_versions")?;
    let format: String = col(row, &what, "format")?;
    Ok(Witness {
        kms_key: col(row, &what, "kms_key")?,
        algorithm: SignatureAlgorithm::parse(&algorithm).ok_or_else(|| {
            StoreError::corrupt(&what, format!("unknown algorithm {algorithm:?}"))
        })?,
        format: SignatureFormat::parse(&format)
            .ok_or_else(|| StoreError::corrupt(&what, format!("unknown format {format:?}")))?,
        description: col(row, &what, "description")?,
        state: parse_state(&state)
            .ok_or_else(|| StoreError::corrupt(&what, format!("unknown state {state:?}")))?,
        key_versions: codec::from_json::<Vec<KeyVersion>>(&what, &key_versions)?,
        created_at: codec::time(&what, col(row, &what, "created_at")?)?,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Key versions need real RSA keys; the integration tests cover key revocation.
    fn witness(state: WitnessState) -> Witness {
        Witness {
            name: "w".into(),
            kms_key: "local://w".into(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            format: Default::default(),
            description: String::new(),
            state,
            key_versions: Vec::new(),
            created_at: chrono::DateTime::from_timestamp_millis(0).unwrap_or_default(),
        }
    }

    #[test]
    fn revoking_a_witness_is_a_witness_revoked_event() {
        let before = witness(WitnessState::Active);
        let after = witness(WitnessState::Revoked);
        assert_eq!(change_kind(&before, &after), EventKind::WitnessRevoked);
        assert_eq!(change_kind(&before, &before), EventKind::WitnessRotated);
    }

    #[test]
    fn states_round_trip() {
        for s in [WitnessState::Active, WitnessState::Revoked] {
            assert_eq!(parse_state(state_str(s)), Some(s));
        }
        assert_eq!(parse_state("gone"), None);
    }
}
