//! Admission: AdmissionReviews of a Deployment with three containers, over HTTPS to a
//! `signet-verifier` process, in the namespace an enforcing policy protects.
//!
//! - warm: every image's verdict is in the cache (learned from the signing events);
//!   stepped fixed rates, then as fast as a set of clients can go;
//! - cold: a fresh verifier, each review naming three images it has never seen, so each
//!   fetches three signatures from the registry and verifies them;
//! - the baseline: a verifier whose caches keep nothing (every TTL 1 ms), which fetches
//!   and verifies on every review like pull-time verifiers do;
//! - single flight: many concurrent reviews of one unseen digest, counting the requests
//!   the registry served for it.

use std::sync::Arc;
use std::time::Duration;

use crate::pace::{closed_loop, open_loop, Limits, Paced};
use crate::stack::Verifier;
use crate::stats::Summary;

const DEPLOYMENT: &str = include_str!("../fixtures/deployment-3-containers.json");

/// The namespace the load-test policy protects.
pub const NAMESPACE: &str = "prod";

/// The AdmissionReview of a Deployment CREATE whose three containers run `images`.
pub fn review(uid: &str, images: [&str; 3]) -> String {
    DEPLOYMENT
        .replace("{{UID}}", uid)
        .replace("{{NAMESPACE}}", NAMESPACE)
        .replace("{{INIT_IMAGE}}", images[0])
        .replace("{{IMAGE}}", images[1])
        .replace("{{SIDECAR_IMAGE}}", images[2])
}

/// Sends one review; whether it was answered and allowed.
pub async fn allowed(client: &reqwest::Client, url: &str, body: String) -> bool {
    let Ok(resp) = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
    else {
        return false;
    };
    if !resp.status().is_success() {
        return false;
    }
    match resp.json::<serde_json::Value>().await {
        Ok(v) => v["response"]["allowed"] == true,
        Err(_) => false,
    }
}

/// Review `i` over the signed `images`: three consecutive ones, wrapping around.
fn nth_review(images: &[String], i: u64) -> String {
    let n = images.len().max(1) as u64;
    let at = |k: u64| {
        images
            .get(((3 * i + k) % n) as usize)
            .map_or("", String::as_str)
    };
    review(&format!("load-{i}"), [at(0), at(1), at(2)])
}

fn reviewer(
    v: &Verifier,
    images: Arc<Vec<String>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
       + Send
       + Sync
       + 'static {
    let (client, url) = (v.client.clone(), v.validate.clone());
    move |i| {
        let (client, url) = (client.clone(), url.clone());
        let body = nth_review(&images, i);
        Box::pin(async move { allowed(&client, &url, body).await })
    }
}

/// Reviews every image once (connections opened, verdicts cached); how many were allowed.
pub async fn warm_up(v: &Verifier, images: &[String]) -> usize {
    let mut ok = 0;
    for (i, chunk) in images.chunks(3).enumerate() {
        let at = |k: usize| chunk.get(k).or(chunk.first()).map_or("", String::as_str);
        if allowed(
            &v.client,
            &v.validate,
            review(&format!("warm-{i}"), [at(0), at(1), at(2)]),
        )
        .await
        {
            ok += chunk.len();
        }
    }
    ok
}

/// Fixed rates, one after the other, each for `step`.
/// Each step's client-side figures, and the verifier's own p50 and p99 for the same
/// reviews (seconds), from its `signet_admission_duration_seconds` histogram read before
/// and after the step: what signet spent, apart from the load generator's TLS and timers.
pub async fn stepped(
    v: &Verifier,
    http: &reqwest::Client,
    images: &[String],
    rates: &[f64],
    step: Duration,
) -> (Vec<Paced>, Vec<Option<(f64, f64)>>) {
    const HISTOGRAM: &str = "signet_admission_duration_seconds";
    let images = Arc::new(images.to_vec());
    let mut out = Vec::new();
    let mut server = Vec::new();
    for &rate in rates {
        let before = v
            .metrics(http)
            .await
            .map(|t| crate::stack::buckets(&t, HISTOGRAM));
        let run = open_loop(
            rate,
            Limits {
                count: (rate * step.as_secs_f64()).ceil() as u64,
                duration: step,
                in_flight: 512,
            },
            reviewer(v, images.clone()),
        )
        .await;
        let after = v
            .metrics(http)
            .await
            .map(|t| crate::stack::buckets(&t, HISTOGRAM));
        let quantiles = before.zip(after).and_then(|(b, a)| {
            Some((
                crate::stack::quantile_between(&b, &a, 0.5)?,
                crate::stack::quantile_between(&b, &a, 0.99)?,
            ))
        });
        println!(
            "    {rate:>6.0}/s offered: {:.0}/s achieved, {}; sends lagged p99 {}; server-side p50/p99 {}",
            run.achieved(),
            run.summary,
            crate::stats::ms(run.send_lag.p99),
            quantiles.map_or("unread".to_owned(), |(p50, p99)| format!(
                "{:.2}/{:.2} ms",
                p50 * 1e3,
                p99 * 1e3
            ))
        );
        out.push(run);
        server.push(quantiles);
        // Let connections and queues settle between steps.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (out, server)
}

/// The highest offered rate whose p99 stayed within `p99` with every review answered
/// and at least 95% of the rate achieved.
pub fn highest_rate_holding(steps: &[Paced], p99: Duration) -> Option<f64> {
    steps
        .iter()
        .filter(|s| {
            s.summary.failed == 0 && s.summary.p99 <= p99 && s.achieved() >= 0.95 * s.offered
        })
        .map(|s| s.offered)
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

/// As fast as `workers` clients, each waiting for its answer, can go.
pub async fn saturate(
    v: &Verifier,
    images: &[String],
    workers: usize,
    duration: Duration,
) -> Summary {
    closed_loop(
        workers,
        Limits {
            count: 10_000_000,
            duration,
            in_flight: workers,
        },
        reviewer(v, Arc::new(images.to_vec())),
    )
    .await
}

/// One review at a time over `reviews`.
pub async fn sequential(v: &Verifier, reviews: Vec<String>) -> Summary {
    let reviews = Arc::new(reviews);
    let count = reviews.len() as u64;
    let (client, url) = (v.client.clone(), v.validate.clone());
    closed_loop(
        1,
        Limits {
            count,
            duration: Duration::from_secs(120),
            in_flight: 1,
        },
        move |i| {
            let (client, url, reviews) = (client.clone(), url.clone(), reviews.clone());
            async move {
                match reviews.get(i as usize) {
                    Some(body) => allowed(&client, &url, body.clone()).await,
                    None => false,
                }
            }
        },
    )
    .await
}

/// Cold reviews: each of `images` (never reviewed by this verifier) once, three to a
/// Deployment.
pub fn cold_reviews(images: &[String], tag: &str) -> Vec<String> {
    images
        .chunks_exact(3)
        .enumerate()
        .map(|(i, c)| review(&format!("{tag}-{i}"), [&c[0], &c[1], &c[2]]))
        .collect()
}

/// What a burst of concurrent reviews of one unseen digest cost the registry.
pub struct SingleFlight {
    pub reviews: usize,
    pub allowed: usize,
    /// `GET`/`HEAD` of the digest's `.sig` manifest the registry served.
    pub manifest_requests: usize,
    /// Every registry request naming the digest's repository during the burst.
    pub repository_requests: usize,
}

/// `concurrent` reviews at once, each naming `image` (`host/repo@sha256:…`) three
/// times; `registry_log` reads the registry's access log.
pub async fn single_flight(
    v: &Verifier,
    image: &str,
    concurrent: usize,
    registry_log: impl Fn() -> String,
) -> SingleFlight {
    let (repo_path, hex) = match image.split_once('@') {
        Some((r, d)) => (
            r.split_once('/').map_or(r, |(_, p)| p).to_owned(),
            d.trim_start_matches("sha256:").to_owned(),
        ),
        None => (image.to_owned(), String::new()),
    };
    let before = registry_log().lines().count();
    let tasks: Vec<_> = (0..concurrent)
        .map(|i| {
            let (client, url) = (v.client.clone(), v.validate.clone());
            let body = review(&format!("flight-{i}"), [image, image, image]);
            tokio::spawn(async move { allowed(&client, &url, body).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if let Ok(true) = t.await {
            ok += 1;
        }
    }
    let log = registry_log();
    let during: Vec<&str> = log.lines().skip(before).collect();
    let sig = format!("/v2/{repo_path}/manifests/sha256-{hex}.sig");
    SingleFlight {
        reviews: concurrent,
        allowed: ok,
        manifest_requests: during.iter().filter(|l| l.contains(&sig)).count(),
        repository_requests: during
            .iter()
            .filter(|l| l.contains(&format!("/v2/{repo_path}/")))
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    #[test]
    fn the_review_names_three_containers_in_the_protected_namespace() {
        let body = review("u1", ["r/a@sha256:1", "r/b@sha256:2", "r/c@sha256:3"]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["request"]["uid"], "u1");
        assert_eq!(v["request"]["namespace"], NAMESPACE);
        let spec = &v["request"]["object"]["spec"]["template"]["spec"];
        assert_eq!(spec["initContainers"][0]["image"], "r/a@sha256:1");
        assert_eq!(spec["containers"][0]["image"], "r/b@sha256:2");
        assert_eq!(spec["containers"][1]["image"], "r/c@sha256:3");
        assert!(!body.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn reviews_walk_through_the_images() {
        let images: Vec<String> = (0..4).map(|i| format!("r/x@sha256:{i}")).collect();
        let second = nth_review(&images, 1);
        // Review 1 takes images 3, 0, 1.
        assert!(second.contains("r/x@sha256:3") && second.contains("r/x@sha256:0"));
        assert_eq!(
            cold_reviews(&images, "c").len(),
            1,
            "whole Deployments only"
        );
    }

    fn step(offered: f64, achieved_count: usize, p99_ms: u64, failed: usize) -> Paced {
        let samples = vec![Duration::from_millis(p99_ms); achieved_count];
        Paced {
            summary: Summary::new(samples, failed, Duration::from_secs(1)),
            offered,
            late: 0,
            send_lag: Summary::new(Vec::new(), 0, Duration::from_secs(1)),
        }
    }

    #[test]
    fn the_highest_rate_must_hold_p99_rate_and_answers() {
        let steps = vec![
            step(500.0, 500, 1, 0),
            step(1000.0, 1000, 1, 0),
            // p99 too high
            step(2000.0, 2000, 3, 0),
            // fell behind the offered rate
            step(4000.0, 3000, 1, 0),
            // lost answers
            step(3000.0, 3000, 1, 2),
        ];
        assert_eq!(
            highest_rate_holding(&steps, Duration::from_millis(2)),
            Some(1000.0)
        );
        assert_eq!(
            highest_rate_holding(&steps[2..3], Duration::from_millis(2)),
            None
        );
    }
}
