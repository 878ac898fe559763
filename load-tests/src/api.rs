//! The gateway's HTTP API, as the CLI and pipelines call it, for setting a scenario up
//! (witnesses, signing rules, policies) and reading what signet recorded.

use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// An admin client of one gateway.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    token: String,
}

/// A signature record as `GET /v1/signatures` lists it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub digest: String,
    pub created_at: DateTime<Utc>,
}

impl Api {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            token: token.to_owned(),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A witness on `kms_key`; the gateway fetches its public key from the KMS.
    pub async fn create_witness(&self, name: &str, kms_key: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "/v1/witnesses",
            Some(json!({"name": name, "kms_key": kms_key})),
        )
        .await
        .map(drop)
    }

    /// A signing rule: pushes to `repositories` (globs) are signed by `witness`.
    pub async fn create_rule(
        &self,
        name: &str,
        repositories: &[String],
        witness: &str,
    ) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "/v1/signing-rules",
            Some(json!({"name": name, "repositories": repositories, "witness": witness})),
        )
        .await
        .map(drop)
    }

    /// An enabled, enforcing policy: only images signed by one of `witnesses` start in
    /// `namespace` of `cluster`.
    pub async fn create_policy(
        &self,
        name: &str,
        witnesses: &[&str],
        cluster: &str,
        namespace: &str,
    ) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "/v1/policies",
            Some(json!({
                "name": name, "witnesses": witnesses, "cluster": cluster,
                "namespace": namespace, "mode": "enforce", "enabled": true,
            })),
        )
        .await
        .map(drop)
    }

    /// Every signature record of `witness` (at most 1000, the API's page size).
    pub async fn signatures(&self, witness: &str) -> anyhow::Result<Vec<Recorded>> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/signatures?witness={witness}&limit=1000"),
                None,
            )
            .await?;
        let mut out = Vec::new();
        for s in v["signatures"].as_array().into_iter().flatten() {
            let (Some(digest), Some(at)) = (s["digest"].as_str(), s["created_at"].as_str()) else {
                continue;
            };
            let created_at = DateTime::parse_from_rfc3339(at)
                .with_context(|| format!("signature created_at {at:?}"))?
                .with_timezone(&Utc);
            out.push(Recorded {
                digest: digest.to_owned(),
                created_at,
            });
        }
        Ok(out)
    }

    /// Polls until `witness` has at least `n` signature records or `within` passed;
    /// returns what was recorded by then.
    pub async fn until_signed(
        &self,
        witness: &str,
        n: usize,
        within: Duration,
    ) -> anyhow::Result<Vec<Recorded>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.signatures(witness).await?;
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
