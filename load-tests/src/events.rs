//! Signature events put on the bus the way the signer's outbox relay puts them there: a
//! real signature record (signed with a witness's key through signet's KMS provider) in
//! a `signature.published` CloudEvent. Used to measure how fast a verifier learns a
//! signature from its event, and how much memory 100k learned verdicts take.
//!
//! The digests are made up and exist in no registry, so a verifier can only admit them
//! by having learned them from their event.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use futures::StreamExt;
use signet_bus::{BusOptions, Event, OutgoingEvent};
use signet_core::{Digest, EventKind, SignatureAlgorithm, SignatureRecord, SimpleSigning};
use signet_kms::{KeyProvider, Kms, KmsConfig};
use signet_store::Store;
use tokio::time::Instant;

use crate::admission;
use crate::stack::{Stack, Verifier};
use crate::stats::Summary;

pub struct EventSource {
    bus: signet_bus::Bus,
    /// Seals events as the relay does; verifiers refuse unsealed ones.
    control_key: signet_kms::ControlPlaneKey,
    key: Arc<dyn KeyProvider>,
    version: String,
    fingerprint: String,
    witness: String,
    /// `host/repo` the records name.
    pub repository: String,
    salt: String,
}

impl EventSource {
    /// Publishes on the stack's bus, signing with `witness`'s local key `key_uri`.
    pub async fn connect(stack: &Stack, witness: &str, key_uri: &str) -> anyhow::Result<Self> {
        // The broker backends keep nothing in this store; the API asks for one.
        let scratch = Store::connect("sqlite::memory:").await?;
        let bus = signet_bus::connect_with(
            stack.bus.url(),
            &scratch,
            BusOptions {
                namespace: Some(stack.namespace.clone()),
                ..BusOptions::default()
            },
        )
        .await
        .with_context(|| format!("connecting to {}", stack.bus.name()))?;
        let kms = Kms::new(KmsConfig::new(stack.data_dir()));
        let control_key =
            signet_kms::ControlPlaneKey::open(&kms, crate::stack::CONTROL_PLANE_KEY).await?;
        let key = kms.open(key_uri)?;
        let described = key.describe().await?;
        let primary = described
            .versions
            .iter()
            .find(|v| v.version == described.primary_version)
            .context("the witness key has no primary version")?;
        Ok(Self {
            bus,
            control_key,
            version: primary.version.clone(),
            fingerprint: primary.public_key.fingerprint(),
            key,
            witness: witness.to_owned(),
            repository: format!("{}/events/app", stack.registry.host()),
            salt: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// A record for made-up digest `i`, signed by the witness's key.
    pub async fn record(&self, i: u64) -> anyhow::Result<SignatureRecord> {
        let digest = Digest::of(format!("{}-{i}", self.salt).as_bytes());
        let payload = SimpleSigning::new(self.repository.clone(), digest.clone()).to_bytes();
        let signature = self
            .key
            .sign(&self.version, SignatureAlgorithm::RsaPkcs1Sha256, &payload)
            .await?;
        Ok(SignatureRecord {
            id: uuid::Uuid::now_v7(),
            repository: self.repository.clone(),
            artifact: format!("{}:{}", self.repository, digest.signature_tag()),
            digest,
            witness: self.witness.clone(),
            key_version: self.version.clone(),
            key_fingerprint: self.fingerprint.clone(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            signature,
            payload,
            job_id: None,
            created_at: Utc::now(),
            revoked: None,
        })
    }

    pub async fn publish(&self, record: &SignatureRecord) -> anyhow::Result<()> {
        let event = Event::new(
            EventKind::SignaturePublished,
            record.digest.to_string(),
            serde_json::to_value(record)?,
        );
        let outgoing = OutgoingEvent::encode(&event)?;
        let seal = self.control_key.seal(&outgoing.bytes).await?;
        self.bus.events.publish(&outgoing.sealed(&seal)).await?;
        Ok(())
    }

    pub fn image(&self, record: &SignatureRecord) -> String {
        format!("{}@{}", self.repository, record.digest)
    }
}

/// Polls `verifier` until it admits `image`, or `within` passes.
async fn until_admitted(verifier: &Verifier, image: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let body = admission::review(&format!("prop-{n}"), [image, image, image]);
        if admission::allowed(&verifier.client, &verifier.validate, body).await {
            return true;
        }
    }
    false
}

/// `count` events one at a time: from handing the event to the bus to the verifier
/// admitting its image.
pub async fn propagation(
    source: &EventSource,
    verifier: &Verifier,
    count: u64,
) -> anyhow::Result<Summary> {
    let mut samples = Vec::new();
    let mut failed = 0;
    let start = Instant::now();
    for i in 0..count {
        let record = source.record(i).await?;
        let image = source.image(&record);
        let t = Instant::now();
        source.publish(&record).await?;
        if until_admitted(verifier, &image, Duration::from_secs(2)).await {
            samples.push(t.elapsed());
        } else {
            failed += 1;
        }
        // Events do not overlap: each is measured on an idle verifier.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Summary::new(samples, failed, start.elapsed()))
}

/// What filling a verifier's cache cost.
pub struct Filled {
    pub entries: u64,
    pub rss_empty: f64,
    pub rss_full: f64,
    /// Of a sample of the filled digests, how many the verifier admitted from its cache.
    pub sampled_admitted: usize,
    pub sampled: usize,
    pub took: Duration,
}

/// Publishes `entries` signature events to `verifier` and reads its resident memory
/// once the last one has been learned.
pub async fn fill(
    source: &EventSource,
    verifier: &Verifier,
    entries: u64,
) -> anyhow::Result<Filled> {
    let Some(rss_empty) = verifier.service.as_ref().and_then(|s| s.rss_mib()) else {
        bail!("the verifier's memory cannot be read");
    };
    let start = Instant::now();
    // Signing dominates (about 1 ms of CPU per RSA signature): two signers, one per core.
    let mut published = futures::stream::iter(0..entries)
        .map(|i| async move {
            let r = source.record(i).await?;
            source.publish(&r).await?;
            anyhow::Ok(r.digest)
        })
        .buffer_unordered(8);
    let mut sample = Vec::new();
    let mut errors = 0;
    while let Some(r) = published.next().await {
        match r {
            Ok(d) if sample.len() < 200 && rand::random::<u8>() < 8 => sample.push(d),
            Ok(_) => {}
            Err(_) => errors += 1,
        }
    }
    drop(published);
    if errors > 0 {
        bail!("{errors} of {entries} events could not be signed or published");
    }
    // Events are handled in order: once the last is learned, so is every earlier one.
    let last = source.record(entries).await?;
    source.publish(&last).await?;
    if !until_admitted(verifier, &source.image(&last), Duration::from_secs(120)).await {
        bail!("the verifier did not learn the last event within 120 s");
    }
    let took = start.elapsed();
    // Let the cache's maintenance run and the allocator settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_full = verifier
        .service
        .as_ref()
        .and_then(|s| s.rss_mib())
        .unwrap_or(0.0);
    let mut sampled_admitted = 0;
    for d in &sample {
        let image = format!("{}@{d}", source.repository);
        let body = admission::review("sample", [&image, &image, &image]);
        if admission::allowed(&verifier.client, &verifier.validate, body).await {
            sampled_admitted += 1;
        }
    }
    Ok(Filled {
        entries: entries + 1,
        rss_empty,
        rss_full,
        sampled_admitted,
        sampled: sample.len(),
        took,
    })
}
