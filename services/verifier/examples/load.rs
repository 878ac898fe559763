//! Measures the verifier against the issue-7 targets, over real HTTPS on loopback:
//! warm admission latency at a fixed rate, cold admission latency (signature fetched from
//! a real docker-registry), event propagation (event published → verdict usable), and
//! resident memory with the trust cache full.
//!
//! ```text
//! cargo run --release -p signet-verifier --example load -- [ENTRIES] [RATE] [SECONDS] [BUS]
//! ```
//! Defaults: 100000 cache entries, 1000 reviews/s, 10 s, the embedded bus (or
//! `nats://127.0.0.1:4222`, `amqp://guest:guest@127.0.0.1:5672/%2f`). The control plane
//! is a stand-in serving one trust bundle; figures print as a table. Nothing here
//! decides a pass: it reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::routing::{get, post};
use axum::Json;
use chrono::Utc;
use secrecy::SecretString;
use signet_bus::{BusOptions, Event};
use signet_core::{
    Digest, EventKind, ImageRef, PolicyMode, PublicKey, SecurityPolicy, SignatureAlgorithm,
    SignatureRecord, SimpleSigning, TrustBundle, TrustedKey,
};
use signet_registry::{RegistryClient, RegistryConfig, SignatureLayer};
use signet_store::Store;
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_verifier::{CacheConfig, TlsFiles, VerifierConfig};
use tokio_util::sync::CancellationToken;

const POD: &str = include_str!("../tests/fixtures/pod-create.json");
const COLD_IMAGES: usize = 200;

struct Signer {
    pair: KeyPair,
    public: PublicKey,
}

impl Signer {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        // Signing with a freshly generated key cannot fail.
        let _ = self
            .pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig);
        sig
    }

    fn record(&self, repository: &str, digest: &Digest) -> SignatureRecord {
        let payload = SimpleSigning::new(repository, digest.clone()).to_bytes();
        SignatureRecord {
            id: uuid::Uuid::now_v7(),
            repository: repository.into(),
            digest: digest.clone(),
            witness: "release".into(),
            key_version: "1".into(),
            key_fingerprint: self.public.fingerprint(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            signature: self.sign(&payload),
            payload,
            artifact: format!("{repository}:{}", digest.signature_tag()),
            job_id: None,
            created_at: Utc::now(),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(what: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{what:<34} n={:<7} p50={:>9.3?} p99={:>9.3?} max={:>9.3?}",
        d.len(),
        percentile(&d, 0.50),
        percentile(&d, 0.99),
        d.last().copied().unwrap_or_default()
    );
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn review(image: &str, n: usize) -> String {
    POD.replace("{{UID}}", &format!("load-{n}"))
        .replace("{{NAMESPACE}}", "prod")
        .replace("{{IMAGE}}", image)
        .replace("{{INIT_IMAGE}}", image)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let entries: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let bus_url = args.get(4).cloned().unwrap_or_else(|| "embedded".into());

    let pair = KeyPair::generate(KeySize::Rsa2048)?;
    let public = PublicKey::parse(pair.public_key().as_der()?.as_ref())?;
    let signer = Arc::new(Signer { pair, public });
    let t = chrono::DateTime::from_timestamp_millis(0).unwrap_or_default();
    let bundle = TrustBundle {
        cluster: "c1".into(),
        revision: 1,
        generated_at: Utc::now(),
        policies: vec![SecurityPolicy {
            name: "prod-images".into(),
            witnesses: vec!["release".into()],
            require: 1,
            cluster: "c1".into(),
            namespace: "prod".into(),
            mode: PolicyMode::Enforce,
            enabled: true,
            exemptions: vec![],
            require_digest: false,
            allow_break_glass: false,
            note: String::new(),
            created_at: t,
            updated_at: t,
        }],
        keys: vec![TrustedKey {
            witness: "release".into(),
            version: "1".into(),
            fingerprint: signer.public.fingerprint(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            public_key: signer.public.clone(),
        }],
        revoked_keys: vec![],
    };

    // A stand-in control plane: one bundle, reports accepted and dropped.
    let served = Arc::new(bundle);
    let app = axum::Router::new()
        .route(
            "/v1/trust-bundle",
            get({
                let b = served.clone();
                move || async move { Json((*b).clone()) }
            }),
        )
        .route(
            "/v1/admission-decisions",
            post(|| async { Json(serde_json::json!({"recorded": 0})) }),
        );
    let cp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cp_url = format!("http://{}", cp.local_addr()?);
    tokio::spawn(async move { axum::serve(cp, app).await });

    let scratch = Store::connect("sqlite::memory:").await?;
    let bus = signet_bus::connect_with(
        &bus_url,
        &scratch,
        BusOptions {
            namespace: Some(format!("load{}", uuid::Uuid::new_v4().simple())),
            ..BusOptions::default()
        },
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let tls = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    signet_verifier::tls::write_self_signed(&tls, &["127.0.0.1"])?;
    let shutdown = CancellationToken::new();
    let registry = RegistryClient::new(RegistryConfig {
        timeout: Duration::from_secs(3),
        ..RegistryConfig::default()
    })?;
    let running = signet_verifier::start(
        VerifierConfig {
            listen: "127.0.0.1:0".into(),
            cluster: "c1".into(),
            gateway: cp_url,
            token: SecretString::from("sgt_load_test".to_owned()),
            tls: tls.clone(),
            tls_reload_interval: Duration::from_secs(5),
            decision_budget: Duration::from_secs(3),
            cache: CacheConfig {
                capacity: entries as u64 + 10_000,
                ..CacheConfig::default()
            },
            resync_interval: Duration::from_secs(60),
            report_interval: Duration::from_secs(2),
            report_batch: 500,
            state_dir: None,
        },
        bus.events.clone(),
        registry.clone(),
        shutdown.clone(),
    )
    .await?;
    let trust = running.trust().clone();
    while !trust.is_loaded() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("verifier on https://{} (bus: {bus_url})", running.addr());
    let rss_empty = rss_mib();

    // Fill the cache through events, as the signer would: `entries` signature records.
    let t0 = Instant::now();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut handles = Vec::new();
    for w in 0..workers {
        let signer = signer.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            (0..entries)
                .filter(|i| i % workers == w)
                .map(|i| {
                    signer.record(
                        "load.local/team/app",
                        &Digest::of(format!("img-{i}").as_bytes()),
                    )
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut records = Vec::with_capacity(entries);
    for h in handles {
        records.extend(h.await?);
    }
    println!("signed {entries} records in {:?}", t0.elapsed());
    let mut revision = 1;
    let mut lags = Vec::new();
    for (i, r) in records.iter().enumerate() {
        revision += 1;
        let mut e = Event::new(
            EventKind::SignaturePublished,
            r.digest.to_string(),
            serde_json::to_value(r)?,
        );
        e.revision = Some(revision);
        let sent = Instant::now();
        bus.events.publish(&e).await?;
        // Every 100th event: how long until the verdict is usable.
        if i % 100 == 0 {
            while trust.seen_revision() < revision {
                tokio::task::yield_now().await;
            }
            lags.push(sent.elapsed());
        }
    }
    while trust.seen_revision() < revision {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    trust.run_pending_tasks().await;
    println!(
        "cache filled: {} entries in {:?}; RSS {:.1} MiB (empty: {:.1} MiB)",
        trust.entries(),
        t0.elapsed(),
        rss_mib(),
        rss_empty
    );

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&tls.cert)?)?])
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("https://{}/validate", running.addr());

    // Warm: a fixed rate of reviews of cached digests.
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for n in 0..total as usize {
        tick.tick().await;
        let image = format!(
            "load.local/team/app@{}",
            records[(n * 7919) % records.len()].digest
        );
        let body = review(&image, n);
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()?;
            (r["response"]["allowed"] == true).then(|| t.elapsed())
        }));
    }
    let mut warm = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await? {
            Some(d) => warm.push(d),
            None => failed += 1,
        }
    }
    let achieved = warm.len() as f64 / started.elapsed().as_secs_f64();
    println!("\n{total} warm reviews at {rate}/s: {failed} not allowed, {achieved:.0}/s achieved");
    row("warm admission (HTTPS round trip)", warm);

    // Cold: signatures only in a real registry; each digest reviewed once.
    let reg = TestRegistry::start().await?;
    let host = reg.host();
    let publisher = RegistryClient::new(RegistryConfig::default())?;
    let mut cold_images = Vec::new();
    for i in 0..COLD_IMAGES {
        let repo = format!("cold/app{}", i % 10);
        let digest = TestImage::random()
            .push(&host, &repo, &format!("v{i}"))
            .await?;
        let image = ImageRef::parse(&format!("{host}/{repo}@{digest}"))?;
        let payload = SimpleSigning::new(image.repository_ref(), digest.clone()).to_bytes();
        let sig = signer.sign(&payload);
        publisher
            .publish_signature(&image, &digest, &SignatureLayer::new(payload, sig))
            .await?;
        cold_images.push(image.to_string());
    }
    let mut cold = Vec::new();
    for (n, image) in cold_images.iter().enumerate() {
        let t = Instant::now();
        let r: serde_json::Value = client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(review(image, 1_000_000 + n))
            .send()
            .await?
            .json()
            .await?;
        if r["response"]["allowed"] == true {
            cold.push(t.elapsed());
        }
    }
    println!();
    row("cold admission (registry fetch)", cold);
    row("event → verdict usable", lags);
    println!("RSS at the end: {:.1} MiB", rss_mib());
    shutdown.cancel();
    let _ = running.wait().await;
    Ok(())
}
