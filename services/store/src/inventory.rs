//! The inventory of running containers that each cluster's verifier reports.

use chrono::{DateTime, Utc};
use signet_core::{
    Digest, EventKind, InventoryReport, NewAudit, RunningContainer, Standing, StandingChange,
};
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::codec::{self, col, Bind, Filter};
use crate::error::{db, StoreError};
use crate::outbox::{insert_outbox, OutboxEvent};
use crate::Store;

/// What one report changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryApplied {
    /// Containers added or updated.
    pub upserted: u64,
    /// Containers removed: by `removed_pods`, or absent from a completed full sync.
    pub removed: u64,
    /// Containers whose standing got worse; each was audited and emitted as
    /// `workload.untrusted`.
    pub worsened: Vec<StandingChange>,
}

/// A cluster whose verifier reports an inventory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct InventoryCluster {
    pub cluster: String,
    /// The last report of any kind.
    pub reported_at: DateTime<Utc>,
    /// The last completed full sync; absent until the first one completes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<DateTime<Utc>>,
}

/// A running container and the cluster it runs in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Workload {
    pub cluster: String,
    /// As the cluster's verifier last reported it.
    pub running: RunningContainer,
    /// When the control plane last heard of it.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct WorkloadFilter {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub standing: Option<Standing>,
    /// The image as the Pod's spec names it.
    pub image: Option<String>,
    pub digest: Option<Digest>,
    /// Any of these digests (empty: none match).
    pub digests: Option<Vec<Digest>>,
    pub limit: u32,
}

const COLUMNS: &str = "cluster, record, updated_at";

impl Store {
    /// Applies a verifier's report in one transaction (see [`InventoryReport`]). A page of
    /// a full sync other than the first must belong to the sync in progress: otherwise
    /// `Conflict`, and the verifier starts a new sync. A container whose standing got
    /// worse is audited (by `actor`) and emitted as `workload.untrusted`.
    #[tracing::instrument(name = "store.apply_inventory", level = "debug", skip_all, fields(cluster = %report.cluster, containers = report.containers.len()))]
    pub async fn apply_inventory(
        &self,
        report: &InventoryReport,
        actor: &str,
    ) -> Result<InventoryApplied, StoreError> {
        const OP: &str = "applying an inventory report";
        let now = codec::now_millis();
        let cluster = report.cluster.as_str();
        let mut tx = self.begin_write(OP).await?;
        let current: Option<Option<String>> =
            sqlx::query("SELECT sync_id FROM inventory_clusters WHERE cluster = $1")
                .bind(cluster)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(OP))?
                .map(|row| col(&row, "inventory cluster", "sync_id"))
                .transpose()?;
        let sync_id = match &report.sync {
            Some(s) if s.page == 0 => Some(s.id.clone()),
            Some(s) => {
                if current.as_ref().and_then(|c| c.as_deref()) != Some(s.id.as_str()) {
                    return Err(StoreError::Conflict(format!(
                        "inventory sync {} of cluster {cluster} is not the one in progress; start a new sync with page 0",
                        s.id
                    )));
                }
                Some(s.id.clone())
            }
            None => current.clone().flatten(),
        };
        sqlx::query(
            "INSERT INTO inventory_clusters (cluster, reported_at, sync_id) VALUES ($1, $2, $3) \
             ON CONFLICT (cluster) DO UPDATE SET reported_at = excluded.reported_at, sync_id = excluded.sync_id",
        )
        .bind(cluster)
        .bind(now)
        .bind(sync_id.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(db(OP))?;

        let mut applied = InventoryApplied::default();
        for c in &report.containers {
            let before: Option<String> = sqlx::query(
                "SELECT standing FROM running_containers WHERE cluster = $1 AND pod_uid = $2 AND container = $3",
            )
            .bind(cluster)
            .bind(c.pod_uid.as_str())
            .bind(c.container.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP))?
            .map(|row| col(&row, "running container", "standing"))
            .transpose()?;
            let record = codec::json_text("running container", c)?;
            sqlx::query(
                "INSERT INTO running_containers (cluster, pod_uid, container, namespace, pod, image, \
                 digest, standing, record, updated_at, sync_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (cluster, pod_uid, container) DO UPDATE SET namespace = excluded.namespace, \
                 pod = excluded.pod, image = excluded.image, digest = excluded.digest, \
                 standing = excluded.standing, record = excluded.record, \
                 updated_at = excluded.updated_at, sync_id = excluded.sync_id",
            )
            .bind(cluster)
            .bind(c.pod_uid.as_str())
            .bind(c.container.as_str())
            .bind(c.namespace.as_str())
            .bind(c.pod.as_str())
            .bind(c.image.as_str())
            .bind(c.digest.as_ref().map(|d| d.as_str().to_owned()))
            .bind(c.standing.as_str())
            .bind(record)
            .bind(now)
            .bind(sync_id.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?;
            applied.upserted += 1;
            let Some(previous) = before.as_deref().and_then(Standing::parse) else {
                continue;
            };
            if !c.standing.worse_than(previous) {
                continue;
            }
            let change = StandingChange {
                cluster: cluster.to_owned(),
                previous,
                container: c.clone(),
            };
            let subject = format!("{cluster}/{}/{}/{}", c.namespace, c.pod, c.container);
            let audit = NewAudit::new(
                actor,
                "workload.untrusted",
                subject.as_str(),
                serde_json::json!({
                    "previous": previous,
                    "standing": c.standing,
                    "image": c.image,
                    "digest": c.digest,
                    "policy": c.policy,
                    "reason": c.reason,
                }),
            );
            insert_audit(&mut tx, &audit, now).await?;
            let data = codec::json_value("standing change", &change)?;
            insert_outbox(
                &mut tx,
                &OutboxEvent::new(EventKind::WorkloadUntrusted, subject, data),
                now,
            )
            .await?;
            applied.worsened.push(change);
        }
        for uid in &report.removed_pods {
            applied.removed +=
                sqlx::query("DELETE FROM running_containers WHERE cluster = $1 AND pod_uid = $2")
                    .bind(cluster)
                    .bind(uid.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db(OP))?
                    .rows_affected();
        }
        if let (Some(s), Some(id)) = (&report.sync, &sync_id) {
            if s.last {
                applied.removed += sqlx::query(
                    "DELETE FROM running_containers WHERE cluster = $1 AND (sync_id IS NULL OR sync_id <> $2)",
                )
                .bind(cluster)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db(OP))?
                .rows_affected();
                sqlx::query("UPDATE inventory_clusters SET synced_at = $2 WHERE cluster = $1")
                    .bind(cluster)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(OP))?;
            }
        }
        tx.commit().await.map_err(db(OP))?;
        Ok(applied)
    }

    /// Running containers, ordered by cluster, namespace, pod and container.
    #[tracing::instrument(name = "store.list_workloads", level = "debug", skip_all)]
    pub async fn list_workloads(
        &self,
        filter: &WorkloadFilter,
    ) -> Result<Vec<Workload>, StoreError> {
        let mut f = Filter::default();
        for (column, value) in [
            ("cluster", &filter.cluster),
            ("namespace", &filter.namespace),
            ("image", &filter.image),
        ] {
            if let Some(v) = value {
                f.and(&format!("{column} = {{}}"), Bind::Text(v.clone()));
            }
        }
        if let Some(s) = filter.standing {
            f.and("standing = {}", Bind::Text(s.as_str().to_owned()));
        }
        if let Some(d) = &filter.digest {
            f.and("digest = {}", Bind::Text(d.as_str().to_owned()));
        }
        if let Some(ds) = &filter.digests {
            if ds.is_empty() {
                return Ok(Vec::new());
            }
            f.and_each(
                &format!("digest IN ({})", vec!["{}"; ds.len()].join(", ")),
                ds.iter()
                    .map(|d| Bind::Text(d.as_str().to_owned()))
                    .collect(),
            );
        }
        let (sql, binds) = f.finish(
            &format!("SELECT {COLUMNS} FROM running_containers"),
            "ORDER BY cluster, namespace, pod, container LIMIT {}",
            Bind::Int(i64::from(filter.limit)),
        );
        let rows = codec::bind_all(sqlx::query(&sql), binds)
            .fetch_all(&self.read)
            .await
            .map_err(db("listing running containers"))?;
        rows.iter().map(workload_from_row).collect()
    }

    /// Every cluster that reported an inventory.
    pub async fn inventory_clusters(&self) -> Result<Vec<InventoryCluster>, StoreError> {
        let rows = sqlx::query(
            "SELECT cluster, reported_at, synced_at FROM inventory_clusters ORDER BY cluster",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db("listing inventory clusters"))?;
        rows.iter()
            .map(|row| {
                let reported: i64 = col(row, "inventory cluster", "reported_at")?;
                let synced: Option<i64> = col(row, "inventory cluster", "synced_at")?;
                Ok(InventoryCluster {
                    cluster: col(row, "inventory cluster", "cluster")?,
                    reported_at: codec::time("inventory cluster", reported)?,
                    synced_at: synced
                        .map(|ms| codec::time("inventory cluster", ms))
                        .transpose()?,
                })
            })
            .collect()
    }
}

fn workload_from_row(row: &AnyRow) -> Result<Workload, StoreError> {
    let record: String = col(row, "running container", "record")?;
    let updated: i64 = col(row, "running container", "updated_at")?;
    Ok(Workload {
        cluster: col(row, "running container", "cluster")?,
        running: codec::from_json("running container", &record)?,
        updated_at: codec::time("running container", updated)?,
    })
}
