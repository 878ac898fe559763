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

impl Shape {
    /// The profile's burst: `storm_burst` pushes from `storm_workers` clients.
    pub fn burst(profile: &crate::run::Profile) -> Self {
        Shape::Burst {
            count: profile.storm_burst,
            workers: profile.storm_workers,
        }
    }
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
    /// Those requests by kind, per signed image.
    pub registry_mix: String,
    /// `repository@digest` of every signed image, for the admission scenarios.
    pub images: Vec<String>,
}

impl Storm {
    pub fn throughput(&self) -> f64 {
        per_second(self.signed, self.all_signed_in)
    }
}

/// Whether an access-log line records a request (`... "GET /v2/... HTTP/1.1" ...`).
fn is_request(line: &str) -> bool {
    line.split('"')
        .nth(1)
        .is_some_and(|r| r.contains(" /v2/") && r.ends_with("HTTP/1.1"))
}

/// What kinds of request an access log shows (`"GET /v2/r/manifests/t HTTP/1.1"` lines),
/// as counts per `per` images, most frequent first.
pub fn request_mix(lines: &[&str], per: usize) -> String {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in lines.iter().filter(|l| is_request(l)) {
        let Some(request) = line.split('"').nth(1) else {
            continue;
        };
        let mut parts = request.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        let kind = if path.contains("/manifests/") {
            "manifest"
        } else if path.contains("/blobs/uploads/") {
            "blob upload"
        } else if path.contains("/blobs/") {
            "blob"
        } else {
            "other"
        };
        *counts.entry(format!("{method} {kind}")).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
        .iter()
        .map(|(k, n)| format!("{k} {:.1}", *n as f64 / per as f64))
        .collect::<Vec<_>>()
        .join(", ")
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
    let log = stack.registry.log();
    let during: Vec<&str> = log.lines().skip(log_before).collect();
    // Only access-log lines; the registry also logs warnings (a 404 is one).
    let requests = during.iter().filter(|l| is_request(l)).count();
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
        registry_mix: request_mix(&during, recorded.len().max(1)),
        images: signed_images,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_mix_counts_kinds_per_image() {
        let lines = [
            r#"127.0.0.1 - - [01/Dec/2026:20:25:10 +0000] "PUT /v2/burst/app0/manifests/v1 HTTP/1.1" 201 0 "" "skopeo""#,
            r#"127.0.0.1 - - [01/Dec/2026:20:25:10 +0000] "GET /v2/burst/app0/manifests/sha256-ab.sig HTTP/1.1" 404 0 "" "signet""#,
            r#"127.0.0.1 - - [01/Dec/2026:20:25:10 +0000] "POST /v2/burst/app0/blobs/uploads/ HTTP/1.1" 202 0 "" "signet""#,
            r#"127.0.0.1 - - [01/Dec/2026:20:25:10 +0000] "PUT /v2/burst/app0/blobs/uploads/u1?digest=sha256:cd HTTP/1.1" 201 0 "" "signet""#,
            r#"127.0.0.1 - - [01/Dec/2026:20:25:10 +0000] "PUT /v2/burst/app1/manifests/v2 HTTP/1.1" 201 0 "" "skopeo""#,
            "time=\"2026-12-01\" level=warning msg=noise",
            r#"time="2026-12-01" level=error msg="response completed with error" err.code="manifest unknown" http.request.method=GET"#,
        ];
        assert_eq!(lines.iter().filter(|l| is_request(l)).count(), 5);
        assert_eq!(
            request_mix(&lines, 2),
            "PUT manifest 1.0, GET manifest 0.5, POST blob upload 0.5, PUT blob upload 0.5"
        );
    }
}
