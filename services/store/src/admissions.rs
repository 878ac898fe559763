//! Admission decisions reported by cluster verifiers, and what they add up to for one
//! policy (`signet policy impact`). A break-glass decision is also an audit entry and an
//! `admission.break_glass` event, written in the same transaction as the decision.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use signet_core::{AdmissionDecision, AdmissionOutcome, EventKind, NewAudit};
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::codec::{self, col, Bind, Filter};
use crate::error::{db, StoreError};
use crate::outbox::{insert_outbox, OutboxEvent};
use crate::Store;

/// Which decisions to list, newest first. Unset fields match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionFilter {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub policy: Option<String>,
    pub outcome: Option<AdmissionOutcome>,
    /// Only decisions made at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}

impl Default for DecisionFilter {
    fn default() -> Self {
        Self {
            cluster: None,
            namespace: None,
            policy: None,
            outcome: None,
            since: None,
            limit: 100,
        }
    }
}

/// What one policy did (or, in dry-run, would have done) over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyImpact {
    pub policy: String,
    pub since: Option<DateTime<Utc>>,
    /// Workload decisions under the policy.
    pub decisions: u64,
    /// Decisions by outcome (`allowed`, `would_deny`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Decisions that failed the policy, whatever the mode made of them: what enforcing
    /// it would have blocked.
    pub would_block: u64,
    /// Failing images by reason (`unsigned`, `revoked`, ...).
    pub reasons: BTreeMap<String, u64>,
    /// Failing decisions by namespace.
    pub namespaces: BTreeMap<String, u64>,
    /// The images that failed most often, most frequent first.
    pub top_images: Vec<ImpactImage>,
    /// How many failing decisions the breakdowns above were computed from (the newest
    /// ones, when there are more than the store reads for a summary).
    pub sampled: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImpactImage {
    pub image: String,
    pub reason: String,
    pub count: u64,
}

/// Failing decisions read to break an impact summary down; counts above it are exact.
const IMPACT_SAMPLE: i64 = 10_000;
const TOP_IMAGES: usize = 20;

impl Store {
    /// Stores a batch of decisions from a verifier in one transaction; returns how many
    /// were new (a decision already stored, same cluster, uid and policy, is skipped, so
    /// a verifier may safely send a batch again). Each new break-glass decision that was
    /// not a dry run also gets an audit entry by `actor` and an `admission.break_glass`
    /// event. Returns (new decisions, break-glass events written).
    #[tracing::instrument(name = "store.record_admission_decisions", level = "debug", skip_all, fields(count = decisions.len()))]
    pub async fn record_admission_decisions(
        &self,
        decisions: &[AdmissionDecision],
        actor: &str,
    ) -> Result<(u64, u64), StoreError> {
        const OP: &str = "recording admission decisions";
        if decisions.is_empty() {
            return Ok((0, 0));
        }
        let now = codec::now_millis();
        let mut tx = self.begin_write(OP).await?;
        let (mut inserted, mut events) = (0, 0);
        for d in decisions {
            let json = codec::json_text("admission decision", d)?;
            let n = sqlx::query(
                "INSERT INTO admission_decisions (at, received_at, cluster, uid, namespace, kind, \
                 name, operation, policy, mode, outcome, break_glass, decision) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (cluster, uid, policy) DO NOTHING",
            )
            .bind(codec::millis(d.at))
            .bind(now)
            .bind(d.cluster.as_str())
            .bind(d.uid.as_str())
            .bind(d.namespace.as_str())
            .bind(d.kind.as_str())
            .bind(d.name.as_str())
            .bind(d.operation.as_str())
            .bind(d.policy.as_str())
            .bind(d.mode.as_str())
            .bind(d.outcome.as_str())
            .bind(d.break_glass.clone())
            .bind(json)
            .execute(&mut *tx)
            .await
            .map_err(db(OP))?
            .rows_affected();
            inserted += n;
            if n == 0 || d.outcome != AdmissionOutcome::BreakGlass || d.dry_run {
                continue;
            }
            let subject = format!("{}/{}/{}/{}", d.cluster, d.namespace, d.kind, d.name);
            let data = codec::json_value("admission decision", d)?;
            let audit = NewAudit::new(
                actor,
                "admission.break_glass",
                subject.as_str(),
                serde_json::json!({
                    "policy": d.policy,
                    "reason": d.break_glass,
                    "user": d.user,
                    "groups": d.groups,
                    "uid": d.uid,
                    "images": d.images,
                }),
            );
            insert_audit(&mut tx, &audit, now).await?;
            insert_outbox(
                &mut tx,
                &OutboxEvent::new(EventKind::AdmissionBreakGlass, subject, data),
                now,
            )
            .await?;
            events += 1;
        }
        tx.commit().await.map_err(db(OP))?;
        Ok((inserted, events))
    }

    #[tracing::instrument(name = "store.list_admission_decisions", level = "debug", skip_all)]
    pub async fn list_admission_decisions(
        &self,
        filter: &DecisionFilter,
    ) -> Result<Vec<AdmissionDecision>, StoreError> {
        let mut f = Filter::default();
        for (column, value) in [
            ("cluster", &filter.cluster),
            ("namespace", &filter.namespace),
            ("policy", &filter.policy),
        ] {
            if let Some(v) = value {
                f.and(&format!("{column} = {{}}"), Bind::Text(v.clone()));
            }
        }
        if let Some(o) = filter.outcome {
            f.and("outcome = {}", Bind::Text(o.as_str().to_owned()));
        }
        if let Some(since) = filter.since {
            f.and("at >= {}", Bind::Int(codec::millis(since)));
        }
        let (sql, binds) = f.finish(
            "SELECT id, decision FROM admission_decisions",
            "ORDER BY at DESC, id DESC LIMIT {}",
            Bind::Int(i64::from(filter.limit)),
        );
        let rows = codec::bind_all(sqlx::query(&sql), binds)
            .fetch_all(&self.read)
            .await
            .map_err(db("listing admission decisions"))?;
        rows.iter().map(decision_from_row).collect()
    }

    /// Sums up one policy's decisions since `since` (all of them when `None`).
    #[tracing::instrument(name = "store.policy_impact", level = "debug", skip_all, fields(policy = %policy))]
    pub async fn policy_impact(
        &self,
        policy: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<PolicyImpact, StoreError> {
        const OP: &str = "summing up a policy's impact";
        let since_ms = since.map(codec::millis).unwrap_or(i64::MIN);
        let rows = sqlx::query(
            "SELECT outcome, COUNT(*) AS n FROM admission_decisions \
             WHERE policy = $1 AND at >= $2 GROUP BY outcome",
        )
        .bind(policy)
        .bind(since_ms)
        .fetch_all(&self.read)
        .await
        .map_err(db(OP))?;
        let mut outcomes = BTreeMap::new();
        let (mut decisions, mut would_block) = (0, 0);
        for row in &rows {
            let outcome: String = col(row, "impact", "outcome")?;
            let n = codec::count("impact", col(row, "impact", "n")?)?;
            decisions += n;
            if AdmissionOutcome::parse(&outcome).is_some_and(AdmissionOutcome::failed) {
                would_block += n;
            }
            outcomes.insert(outcome, n);
        }
        let failing = sqlx::query(
            "SELECT id, decision FROM admission_decisions \
             WHERE policy = $1 AND at >= $2 AND outcome <> 'allowed' \
             ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(policy)
        .bind(since_ms)
        .bind(IMPACT_SAMPLE)
        .fetch_all(&self.read)
        .await
        .map_err(db(OP))?;
        let mut reasons = BTreeMap::new();
        let mut namespaces = BTreeMap::new();
        let mut images: BTreeMap<(String, String), u64> = BTreeMap::new();
        for row in &failing {
            let d = decision_from_row(row)?;
            *namespaces.entry(d.namespace.clone()).or_insert(0) += 1;
            for image in &d.images {
                if let Some(reason) = image.reason {
                    *reasons.entry(reason.as_str().to_owned()).or_insert(0) += 1;
                    *images
                        .entry((image.image.clone(), reason.as_str().to_owned()))
                        .or_insert(0) += 1;
                }
            }
        }
        let mut top_images: Vec<ImpactImage> = images
            .into_iter()
            .map(|((image, reason), count)| ImpactImage {
                image,
                reason,
                count,
            })
            .collect();
        top_images.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.image.cmp(&b.image)));
        top_images.truncate(TOP_IMAGES);
        Ok(PolicyImpact {
            policy: policy.to_owned(),
            since,
            decisions,
            outcomes,
            would_block,
            reasons,
            namespaces,
            top_images,
            sampled: failing.len() as u64,
        })
    }
}

fn decision_from_row(row: &AnyRow) -> Result<AdmissionDecision, StoreError> {
    let id: i64 = col(row, "admission decision", "id")?;
    let what = format!("admission decision {id}");
    let json: String = col(row, &what, "decision")?;
    codec::from_json(&what, &json)
}
