//! Security policies and the trust bundle built from them. Every change is written with
//! its audit entry and a `policy.updated` event in one transaction, so a verifier that
//! follows the events (or re-syncs from the bundle's revision) never misses one.

use chrono::Utc;
use signet_core::{
    EventKind, NewAudit, PolicyAction, PolicyMode, PolicyUpdate, SecurityPolicy, TrustBundle,
    TrustedKey, Witness,
};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use crate::audit::insert_audit;
use crate::codec::{self, col, Bind, Filter};
use crate::error::{db, StoreError};
use crate::outbox::{insert_outbox, OutboxEvent};
use crate::{Backend, Store};

const COLUMNS: &str = "name, cluster, namespace, witnesses, require_count, mode, enabled, \
                       exemptions, require_digest, allow_break_glass, note, created_at, updated_at, \
                       pin_digests, namespace_selector, labels, attestations";

impl Store {
    /// Stores a new policy with its audit entry and a `policy.updated` (`created`) event;
    /// returns the revision of that event. `Conflict` if the name is taken, `NotFound` if
    /// a named witness does not exist.
    #[tracing::instrument(name = "store.create_policy", level = "debug", skip_all, fields(policy = %p.name))]
    pub async fn create_policy(
        &self,
        p: &SecurityPolicy,
        audit: &NewAudit,
    ) -> Result<i64, StoreError> {
        const OP: &str = "creating a policy";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        check_witnesses(&mut tx, &p.witnesses, OP).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO policies ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(p.name.as_str())
        .bind(p.cluster.as_str())
        .bind(p.namespace.as_str())
        .bind(codec::json_text("policy witnesses", &p.witnesses)?)
        .bind(i64::from(p.require))
        .bind(p.mode.as_str())
        .bind(codec::flag(p.enabled))
        .bind(codec::json_text("policy exemptions", &p.exemptions)?)
        .bind(codec::flag(p.require_digest))
        .bind(codec::flag(p.allow_break_glass))
        .bind(p.note.as_str())
        .bind(codec::millis(p.created_at))
        .bind(codec::millis(p.updated_at))
        .bind(codec::flag(p.pin_digests))
        .bind(selector_text(p)?)
        .bind(codec::json_text("policy labels", &p.labels)?)
        .bind(codec::json_text("policy attestations", &p.attestations)?)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("policy {:?}", p.name)));
        }
        insert_audit(&mut tx, audit, now).await?;
        let revision =
            insert_outbox(&mut tx, &policy_event(PolicyAction::Created, p)?, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(revision)
    }

    /// Replaces `previous` with `next` (same name), with its audit entry and a
    /// `policy.updated` event carrying `action`. The write only happens if the stored
    /// policy is still `previous` (compared by `updated_at`): a concurrent change makes
    /// this fail with `Conflict`, so a read-modify-write never loses another writer's
    /// change. Returns the stored policy, whose `updated_at` is later than `previous`'s.
    #[tracing::instrument(name = "store.update_policy", level = "debug", skip_all, fields(policy = %previous.name))]
    pub async fn update_policy(
        &self,
        previous: &SecurityPolicy,
        next: &SecurityPolicy,
        action: PolicyAction,
        audit: &NewAudit,
    ) -> Result<SecurityPolicy, StoreError> {
        const OP: &str = "updating a policy";
        let now = codec::now_millis();
        let before = codec::millis(previous.updated_at);
        // Strictly later than the version replaced, even within the same millisecond, so
        // the optimistic check above can always tell two versions apart.
        let updated_at = now.max(before + 1);
        let mut stored = next.clone();
        stored.name = previous.name.clone();
        stored.created_at = previous.created_at;
        stored.updated_at = codec::time("policy", updated_at)?;
        let mut tx = self.begin_write(OP).await?;
        check_witnesses(&mut tx, &stored.witnesses, OP).await?;
        let changed = sqlx::query(
            "UPDATE policies SET cluster = $2, namespace = $3, witnesses = $4, \
             require_count = $5, mode = $6, enabled = $7, exemptions = $8, \
             require_digest = $9, allow_break_glass = $10, note = $11, updated_at = $12, \
             pin_digests = $14, namespace_selector = $15, labels = $16, attestations = $17 \
             WHERE name = $1 AND updated_at = $13",
        )
        .bind(stored.name.as_str())
        .bind(stored.cluster.as_str())
        .bind(stored.namespace.as_str())
        .bind(codec::json_text("policy witnesses", &stored.witnesses)?)
        .bind(i64::from(stored.require))
        .bind(stored.mode.as_str())
        .bind(codec::flag(stored.enabled))
        .bind(codec::json_text("policy exemptions", &stored.exemptions)?)
        .bind(codec::flag(stored.require_digest))
        .bind(codec::flag(stored.allow_break_glass))
        .bind(stored.note.as_str())
        .bind(updated_at)
        .bind(before)
        .bind(codec::flag(stored.pin_digests))
        .bind(selector_text(&stored)?)
        .bind(codec::json_text("policy labels", &stored.labels)?)
        .bind(codec::json_text(
            "policy attestations",
            &stored.attestations,
        )?)
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?
        .rows_affected();
        if changed == 0 {
            let exists = select_one(&mut tx, &stored.name).await?.is_some();
            return Err(if exists {
                StoreError::Conflict(format!(
                    "a newer version of policy {:?} (changed concurrently; read it again and retry)",
                    stored.name
                ))
            } else {
                StoreError::NotFound(format!("policy {:?}", stored.name))
            });
        }
        insert_audit(&mut tx, audit, now).await?;
        insert_outbox(&mut tx, &policy_event(action, &stored)?, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(stored)
    }

    /// Deletes a policy with its audit entry and a `policy.updated` (`deleted`) event;
    /// returns the policy as it was. `NotFound` if there is no such policy.
    #[tracing::instrument(name = "store.delete_policy", level = "debug", skip_all, fields(policy = %name))]
    pub async fn delete_policy(
        &self,
        name: &str,
        audit: &NewAudit,
    ) -> Result<SecurityPolicy, StoreError> {
        const OP: &str = "deleting a policy";
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let policy = select_one(&mut tx, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("policy {name:?}")))?;
        sqlx::query("DELETE FROM policies WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
        insert_audit(&mut tx, audit, now).await?;
        insert_outbox(&mut tx, &policy_event(PolicyAction::Deleted, &policy)?, now).await?;
        tx.commit().await.map_err(db(OP))?;
        Ok(policy)
    }

    #[tracing::instrument(name = "store.get_policy", level = "debug", skip_all, fields(policy = %name))]
    pub async fn get_policy(&self, name: &str) -> Result<Option<SecurityPolicy>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db("reading a policy"))?;
        select_one(&mut conn, name).await
    }

    /// Policies by name, all of them or one cluster's.
    #[tracing::instrument(name = "store.list_policies", level = "debug", skip_all)]
    pub async fn list_policies(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<SecurityPolicy>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db("listing policies"))?;
        select_many(&mut conn, cluster).await
    }

    /// The trust bundle for `cluster`: its policies (enabled or not, so a verifier learns
    /// about a disable too), every live key of their witnesses, the keys that were
    /// revoked, and the outbox revision, all read from one snapshot, so the bundle is
    /// exactly the state after event `revision`.
    #[tracing::instrument(name = "store.trust_bundle", level = "debug", skip_all, fields(cluster = %cluster))]
    pub async fn trust_bundle(&self, cluster: &str) -> Result<TrustBundle, StoreError> {
        self.trust_bundle_since(cluster, None).await
    }

    /// [`Store::trust_bundle`] for a verifier that holds the bundle of revision `since`:
    /// the same policies and keys (they are small), but only the signatures revoked after
    /// `since` (the bundle says `since`). The whole bundle when `since` is `None`, or
    /// ahead of the store (a restored store: the verifier's state is not this one's).
    /// Either way, a signature whose key version is revoked is left out: the key's
    /// revocation covers it, so the list shrinks when a key is revoked.
    #[tracing::instrument(name = "store.trust_bundle", level = "debug", skip_all, fields(cluster = %cluster, since))]
    pub async fn trust_bundle_since(
        &self,
        cluster: &str,
        since: Option<i64>,
    ) -> Result<TrustBundle, StoreError> {
        const OP: &str = "building a trust bundle";
        let mut tx = self.read.begin().await.map_err(db(OP))?;
        if self.backend == Backend::Postgres {
            // READ COMMITTED would give every statement its own snapshot, and a change
            // committed between two of them would be in the bundle without its revision.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?;
        }
        // On SQLite (WAL), a read transaction's snapshot starts with its first read.
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'outbox'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?
            .ok_or_else(|| StoreError::corrupt("counters", "counter \"outbox\" is missing"))?;
        let revision: i64 = col(&row, "counters", "value")?;
        let since = since.filter(|s| (0..=revision).contains(s));
        let policies = select_many(&mut tx, Some(cluster)).await?;
        let mut names: Vec<&str> = policies
            .iter()
            .flat_map(|p| p.witnesses.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut witnesses = Vec::with_capacity(names.len());
        let mut revoked_signatures = Vec::new();
        for name in names {
            if let Some(w) = crate::witnesses::select_witness(&mut tx, name).await? {
                witnesses.push(w);
            }
            revoked_signatures
                .extend(crate::signatures::select_revoked(&mut tx, name, since).await?);
        }
        tx.commit().await.map_err(db(OP))?;
        let (keys, revoked_keys) = bundle_keys(&witnesses);
        let revoked_signatures = TrustBundle::compact(revoked_signatures, &revoked_keys);
        Ok(TrustBundle {
            cluster: cluster.to_owned(),
            revision,
            generated_at: Utc::now(),
            policies,
            keys,
            revoked_keys,
            revoked_signatures,
            since,
        })
    }
}

/// Live keys, then revoked ones, of the given witnesses.
fn bundle_keys(witnesses: &[Witness]) -> (Vec<TrustedKey>, Vec<TrustedKey>) {
    let mut live = Vec::new();
    let mut revoked = Vec::new();
    for w in witnesses {
        for v in &w.key_versions {
            let key = TrustedKey {
                witness: w.name.clone(),
                version: v.version.clone(),
                fingerprint: v.fingerprint.clone(),
                algorithm: w.algorithm,
                public_key: v.public_key.clone(),
            };
            if w.live_versions().any(|l| l.version == v.version) {
                live.push(key);
            } else {
                revoked.push(key);
            }
        }
    }
    (live, revoked)
}

fn policy_event(action: PolicyAction, p: &SecurityPolicy) -> Result<OutboxEvent, StoreError> {
    let data = codec::json_value(
        "policy event",
        &PolicyUpdate {
            action,
            policy: p.clone(),
        },
    )?;
    Ok(OutboxEvent::new(
        EventKind::PolicyUpdated,
        p.name.as_str(),
        data,
    ))
}

/// Fails with `NotFound` naming the first witness that does not exist.
async fn check_witnesses(
    conn: &mut AnyConnection,
    names: &[String],
    operation: &'static str,
) -> Result<(), StoreError> {
    for name in names {
        let found = sqlx::query("SELECT name FROM witnesses WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db(operation))?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("witness {name:?}")));
        }
    }
    Ok(())
}

async fn select_one(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<SecurityPolicy>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM policies WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a policy"))?;
    row.as_ref().map(policy_from_row).transpose()
}

async fn select_many(
    conn: &mut AnyConnection,
    cluster: Option<&str>,
) -> Result<Vec<SecurityPolicy>, StoreError> {
    let mut f = Filter::default();
    if let Some(c) = cluster {
        f.and("cluster = {}", Bind::Text(c.to_owned()));
    }
    // Policies are few; the limit only guards against a runaway table.
    let (sql, binds) = f.finish(
        &format!("SELECT {COLUMNS} FROM policies"),
        "ORDER BY name LIMIT {}",
        Bind::Int(100_000),
    );
    let rows = codec::bind_all(sqlx::query(&sql), binds)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("listing policies"))?;
    rows.iter().map(policy_from_row).collect()
}

/// The selector as stored: JSON, or NULL without one.
fn selector_text(p: &SecurityPolicy) -> Result<Option<String>, StoreError> {
    p.namespace_selector
        .as_ref()
        .map(|s| codec::json_text("policy namespace selector", s))
        .transpose()
}

fn policy_from_row(row: &AnyRow) -> Result<SecurityPolicy, StoreError> {
    let name: String = col(row, "policy", "name")?;
    let what = format!("policy {name:?}");
    let mode: String = col(row, &what, "mode")?;
    let require: i64 = col(row, &what, "require_count")?;
    let witnesses: String = col(row, &what, "witnesses")?;
    let exemptions: String = col(row, &what, "exemptions")?;
    let enabled: i64 = col(row, &what, "enabled")?;
    let require_digest: i64 = col(row, &what, "require_digest")?;
    let allow_break_glass: i64 = col(row, &what, "allow_break_glass")?;
    let pin_digests: i64 = col(row, &what, "pin_digests")?;
    let selector: Option<String> = col(row, &what, "namespace_selector")?;
    let labels: String = col(row, &what, "labels")?;
    let attestations: String = col(row, &what, "attestations")?;
    Ok(SecurityPolicy {
        cluster: col(row, &what, "cluster")?,
        namespace: col(row, &what, "namespace")?,
        namespace_selector: selector.map(|s| codec::from_json(&what, &s)).transpose()?,
        witnesses: codec::from_json(&what, &witnesses)?,
        require: u32::try_from(require)
            .map_err(|_| StoreError::corrupt(&what, format!("require_count {require}")))?,
        mode: PolicyMode::parse(&mode)
            .ok_or_else(|| StoreError::corrupt(&what, format!("unknown mode {mode:?}")))?,
        enabled: enabled != 0,
        exemptions: codec::from_json(&what, &exemptions)?,
        require_digest: require_digest != 0,
        allow_break_glass: allow_break_glass != 0,
        pin_digests: pin_digests != 0,
        attestations: codec::from_json(&what, &attestations)?,
        note: col(row, &what, "note")?,
        labels: codec::from_json(&what, &labels)?,
        created_at: codec::time(&what, col(row, &what, "created_at")?)?,
        updated_at: codec::time(&what, col(row, &what, "updated_at")?)?,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use signet_core::{KeyVersion, KeyVersionState, PublicKey, SignatureAlgorithm, WitnessState};

    // The integration tests' fixture key (RSA-2048), so versions need no KMS.
    const KEY: &str = include_str!("../tests/fixtures/witness-key-1.pub");

    fn version(v: &str, state: KeyVersionState) -> KeyVersion {
        let public_key = PublicKey::parse(KEY.as_bytes()).expect("test key");
        KeyVersion {
            version: v.into(),
            fingerprint: public_key.fingerprint(),
            public_key,
            primary: v == "2",
            state,
            created_at: DateTime::from_timestamp_millis(0).unwrap_or_default(),
        }
    }

    fn witness(name: &str, state: WitnessState) -> Witness {
        Witness {
            name: name.into(),
            kms_key: format!("local://{name}"),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            format: Default::default(),
            description: String::new(),
            state,
            key_versions: vec![
                version("1", KeyVersionState::Revoked),
                version("2", KeyVersionState::Active),
            ],
            created_at: DateTime::from_timestamp_millis(0).unwrap_or_default(),
        }
    }

    #[test]
    fn bundle_keys_split_live_from_revoked() {
        let (live, revoked) = bundle_keys(&[
            witness("a", WitnessState::Active),
            witness("b", WitnessState::Revoked),
        ]);
        let names = |keys: &[TrustedKey]| {
            keys.iter()
                .map(|k| format!("{}/{}", k.witness, k.version))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&live), ["a/2"]);
        assert_eq!(names(&revoked), ["a/1", "b/1", "b/2"]);
    }
}
