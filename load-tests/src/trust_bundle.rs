//! Trust bundles at scale (issue 15): what a verifier's resync costs when the control plane
//! holds many signatures and many revoked ones, whole against incremental. PostgreSQL as
//! production runs it; the figures are the store's read of the bundle and its JSON (what
//! the gateway sends) plus the control plane's seal over those bytes, measured apart from
//! HTTP, which adds the transfer of the same bytes on loopback.
//!
//! The records are written straight into the store (their layers never reach a registry:
//! a bundle lists only which signatures are revoked), `signatures` of them, `revoked` of
//! those revoked one by one as an operator would, then `fresh` more revoked after the
//! revision a verifier holds.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use futures::StreamExt;
use signet_core::{
    Digest, KeyVersion, KeyVersionState, NewAudit, PolicyMode, SecurityPolicy, SignatureAlgorithm,
    SignatureRecord, Witness, WitnessState,
};
use signet_kms::{Kms, KmsConfig};
use signet_store::Store;
use signet_testkit::postgres::TestDatabase;

use crate::report::{Figure, Report, Unit};
use crate::stats::Summary;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub signatures: usize,
    pub revoked: usize,
    /// Revoked after the revision the incremental fetch starts from.
    pub fresh: usize,
    /// Fetches timed of each kind.
    pub fetches: usize,
}

const CLUSTER: &str = "bench";
const WITNESS: &str = "release";

pub async fn run(config: Config, report: &mut Report) -> anyhow::Result<()> {
    let db = TestDatabase::create().await.context("PostgreSQL")?;
    let store = Store::connect(db.url()).await.context("the store")?;
    let dir = tempfile::tempdir()?;
    let control_key =
        signet_testkit::control_plane_key(&Kms::new(KmsConfig::new(dir.path()))).await;
    let key = control_key.public_key().clone();
    let now = Utc::now();
    let audit = |action: &str, subject: &str| {
        NewAudit::new("bench", action, subject, serde_json::json!({}))
    };
    store
        .create_witness(
            &Witness {
                name: WITNESS.into(),
                kms_key: "local://bench".into(),
                algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
                format: Default::default(),
                description: String::new(),
                state: WitnessState::Active,
                key_versions: vec![KeyVersion {
                    version: "1".into(),
                    fingerprint: key.fingerprint(),
                    public_key: key.clone(),
                    primary: true,
                    state: KeyVersionState::Active,
                    created_at: now,
                }],
                created_at: now,
            },
            &audit("witness.create", WITNESS),
        )
        .await?;
    store
        .create_policy(
            &SecurityPolicy {
                labels: Default::default(),
                name: "bench".into(),
                witnesses: vec![WITNESS.into()],
                require: 1,
                cluster: CLUSTER.into(),
                namespace: "prod".into(),
                namespace_selector: None,
                mode: PolicyMode::Enforce,
                enabled: true,
                exemptions: Vec::new(),
                require_digest: false,
                allow_break_glass: false,
                pin_digests: false,
                attestations: Vec::new(),
                note: String::new(),
                created_at: now,
                updated_at: now,
            },
            &audit("policy.create", "bench"),
        )
        .await?;

    let started = Instant::now();
    let store = Arc::new(store);
    let fingerprint = key.fingerprint();
    let ids: Vec<uuid::Uuid> = futures::stream::iter(0..config.signatures)
        .map(|i| {
            let (store, fingerprint) = (store.clone(), fingerprint.clone());
            async move {
                let digest = Digest::of(format!("bench image {i}").as_bytes());
                let repository = format!("registry.example.com/team/app-{}", i % 100);
                let rec = SignatureRecord {
                    id: uuid::Uuid::now_v7(),
                    artifact: format!("{repository}:{}", digest.signature_tag()),
                    repository,
                    digest,
                    witness: WITNESS.into(),
                    key_version: "1".into(),
                    key_fingerprint: fingerprint,
                    algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
                    payload: b"{}".to_vec(),
                    signature: vec![0; 256],
                    job_id: None,
                    created_at: Utc::now(),
                    revoked: None,
                };
                store
                    .record_signature(
                        &rec,
                        &NewAudit::new("bench", "signature.publish", "x", serde_json::json!({})),
                        None,
                    )
                    .await
                    .map(|r| r.id)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let revoke = |range: std::ops::Range<usize>| {
        let (store, ids) = (store.clone(), &ids);
        async move {
            futures::stream::iter(range)
                .map(|i| {
                    let store = store.clone();
                    let id = ids[i];
                    async move {
                        store
                            .revoke_signature(id, "bench", "compromised build")
                            .await
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        }
    };
    revoke(0..config.revoked).await?;
    println!(
        "  {} signatures, {} revoked, written in {:.1?}",
        config.signatures,
        config.revoked,
        started.elapsed()
    );
    let held = store.trust_bundle(CLUSTER).await?.revision;
    revoke(config.revoked..config.revoked + config.fresh).await?;

    // A fetch as the gateway answers it: the store's read, the JSON, the seal.
    let fetch = |since: Option<i64>| {
        let (store, control_key) = (store.clone(), control_key.clone());
        async move {
            let t = Instant::now();
            let bundle = store.trust_bundle_since(CLUSTER, since).await?;
            let bytes = serde_json::to_vec(&bundle)?;
            control_key.seal(&bytes).await?;
            anyhow::Ok((t.elapsed(), bytes.len(), bundle.revoked_signatures.len()))
        }
    };
    let mut whole = Vec::new();
    let mut delta = Vec::new();
    let (mut whole_bytes, mut delta_bytes, mut whole_listed, mut delta_listed) = (0, 0, 0, 0);
    for _ in 0..config.fetches {
        let (t, n, listed) = fetch(None).await?;
        whole.push(t);
        (whole_bytes, whole_listed) = (n, listed);
        let (t, n, listed) = fetch(Some(held)).await?;
        delta.push(t);
        (delta_bytes, delta_listed) = (n, listed);
    }
    let total = whole.iter().chain(&delta).sum();
    let (whole, delta) = (Summary::new(whole, 0, total), Summary::new(delta, 0, total));
    println!(
        "  whole bundle: {whole_listed} revoked listed, {whole_bytes} bytes, {whole}; incremental: {delta_listed} listed, {delta_bytes} bytes, {delta}"
    );
    let scenario = format!(
        "trust bundle, {} signatures, {} revoked",
        config.signatures, config.revoked
    );
    let kib = |n: usize| n as f64 / 1024.0;
    report.push(
        Figure::latency(
            &scenario,
            &format!("incremental fetch p50 ({} new)", config.fresh),
            delta.p50,
        )
        .baseline("whole bundle p50", whole.p50.as_secs_f64() * 1e3)
        .samples(config.fetches as u64)
        .note(format!(
            "store read, JSON and seal; p99 {:.1} ms against {:.1} ms whole",
            delta.p99.as_secs_f64() * 1e3,
            whole.p99.as_secs_f64() * 1e3
        )),
    );
    report.push(
        Figure::new(
            &scenario,
            "incremental bundle size",
            kib(delta_bytes),
            Unit::KiB,
        )
        .baseline("whole bundle", kib(whole_bytes))
        .note(format!(
            "{delta_listed} revoked signatures listed against {whole_listed}"
        )),
    );
    Ok(())
}
