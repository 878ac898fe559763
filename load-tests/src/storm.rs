//! The push storm: distinct images pushed to a registry whose notifications reach signet,
//! signed by a signing rule. Measures the time until every signature is published,
//! the throughput, and each image's latency from the start of its push to its signature
//! being published (the signature record's `created_at`, set by the signer right after
//! the registry accepted the signature).
//!
//! Two shapes: a burst (pushes as fast as `workers` clients can make them) for throughput,
//! and a fixed rate for latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::oci::{ImageSet, Registry};
use crate::pace::{closed_loop, open_loop, Limits};
use crate::procs::rss_mib;
use crate::stack::Stack;
use crate::stats::{per_second, Summary};

/// Each pushed digest: the repository it went to and when its push started.
type Pushed = HashMap<String, (String, DateTime<Utc>)>;

/// Repositories a storm spreads its images over.
const REPOS: u64 = 8;

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Burst { count: u64, workers: usize },
    Paced { rate: f64, duration: Duration },
}

pub struct Storm {
    pub pushed: usize,
    pub signed: usize,
    /// From the first push to the last signature published.
    pub all_signed_in: Duration,
    /// Push start to signature published, per image.
    pub latency: Summary,
    /// The most the signing process held while the storm ran.
    pub signer_rss_max: Option<f64>,
    /// Registry requests per signed image (the push, signet's reads and writes).
    pub registry_requests_per_image: f64,
    /// `repository@digest` of every signed image, for the admission scenarios.
    pub images: Vec<String>,
}

impl Storm {
    pub fn throughput(&self) -> f64 {
        per_second(self.signed, self.all_signed_in)
    }
}

/// Pushes images to `prefix/app0..7` (which a rule for `witness` covers) in `shape`.
pub async fn run(
    stack: &Stack,
    prefix: &str,
    witness: &str,
    shape: Shape,
) -> anyhow::Result<Storm> {
    let registry = Registry::new(&stack.registry.host())?;
    let images = Arc::new(ImageSet::new());
    for r in 0..REPOS {
        images
            .prepare(&registry, &format!("{prefix}/app{r}"))
            .await?;
    }
    let log_before = stack.registry.log().lines().count();
    let pushed: Arc<Mutex<Pushed>> = Arc::default();

    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler = stack.signer().and_then(|s| s.pid()).map(|pid| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut max = rss_mib(pid).unwrap_or(0.0);
            loop {
                tokio::select! {
                    _ = stop.changed() => return max,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                max = max.max(rss_mib(pid).unwrap_or(0.0));
            }
        })
    });

    let push = {
        let (registry, images, pushed, prefix) = (
            registry.clone(),
            images.clone(),
            pushed.clone(),
            prefix.to_owned(),
        );
        move |i: u64| {
            let (registry, images, pushed) = (registry.clone(), images.clone(), pushed.clone());
            let repo = format!("{prefix}/app{}", i % REPOS);
            async move {
                let (body, digest) = images.manifest(i);
                let started = Utc::now();
                if registry
                    .put_manifest(&repo, &format!("v{i}"), body)
                    .await
                    .is_err()
                {
                    return false;
                }
                if let Ok(mut p) = pushed.lock() {
                    p.insert(
                        digest.to_string(),
                        (format!("{}/{repo}", registry.host), started),
                    );
                }
                true
            }
        }
    };
    let pushes = match shape {
        Shape::Burst { count, workers } => {
            closed_loop(
                workers,
                Limits {
                    count,
                    duration: Duration::from_secs(120),
                    in_flight: workers,
                },
                push,
            )
            .await
        }
        Shape::Paced { rate, duration } => {
            open_loop(
                rate,
                Limits {
                    count: (rate * duration.as_secs_f64()).ceil() as u64,
                    duration,
                    in_flight: 256,
                },
                push,
            )
            .await
            .summary
        }
    };
    let pushed = pushed.lock().map(|p| p.clone()).unwrap_or_default();
    if pushed.is_empty() {
        bail!("no push succeeded ({} failed)", pushes.failed);
    }
    let within = Duration::from_secs(60) + Duration::from_millis(50 * pushed.len() as u64);
    let recorded = stack
        .api
        .until_signed(witness, pushed.len(), within)
        .await?;
    let _ = stop_tx.send(true);
    let signer_rss_max = match sampler {
        Some(s) => s.await.ok(),
        None => None,
    };

    let first = pushed
        .values()
        .map(|(_, t)| *t)
        .min()
        .unwrap_or_else(Utc::now);
    let mut latencies = Vec::new();
    let mut last = first;
    let mut signed_images = Vec::new();
    for r in &recorded {
        if let Some((repo, at)) = pushed.get(&r.digest) {
            latencies.push((r.created_at - *at).to_std().unwrap_or_default());
            last = last.max(r.created_at);
            signed_images.push(format!("{repo}@{}", r.digest));
        }
    }
    let all_signed_in = (last - first).to_std().unwrap_or_default();
    let requests = stack
        .registry
        .log()
        .lines()
        .count()
        .saturating_sub(log_before);
    Ok(Storm {
        pushed: pushed.len(),
        signed: latencies.len(),
        latency: Summary::new(
            latencies,
            pushed.len().saturating_sub(recorded.len()),
            all_signed_in,
        ),
        all_signed_in,
        signer_rss_max,
        registry_requests_per_image: requests as f64 / recorded.len().max(1) as f64,
        images: signed_images,
    })
}
