//! The gateway API client: one place that knows the server, the token and how the
//! gateway reports errors (`{"error", "detail"}`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a call to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the signet gateway at {server}: {reason}. Is `signet up` (or the gateway) running? Set --server or SIGNET_SERVER.")]
    Unreachable { server: String, reason: String },
    #[error("no API token: pass --token or set SIGNET_TOKEN (signet up writes an admin token to {hint})")]
    NoToken { hint: String },
    #[error("{detail} (HTTP {status})")]
    Api {
        status: StatusCode,
        error: String,
        detail: String,
        body: serde_json::Value,
    },
    #[error("the gateway answered with something that is not the expected JSON: {0}")]
    Decode(String),
}

#[derive(Debug, Clone)]
pub struct Client {
    server: String,
    token: Option<String>,
    token_hint: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(
        server: String,
        token: Option<String>,
        token_hint: String,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let unusable = |reason: String| ClientError::Unreachable {
            server: server.clone(),
            reason,
        };
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(path) = ca_cert {
            let certs = signet_runtime::tls::pinned_roots(path).map_err(unusable)?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| unusable(e.to_string()))?;
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            token,
            token_hint,
            http,
        })
    }

    /// Sends a request and decodes a JSON answer; any 4xx/5xx becomes [`ClientError::Api`].
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<(StatusCode, T), ClientError> {
        let (status, bytes) = self.raw(method, path, body, timeout).await?;
        let value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((status, value))
    }

    /// Like [`Client::call`] but returns the body as text (for PEM keys).
    pub async fn text(&self, path: &str) -> Result<String, ClientError> {
        let (_, bytes) = self
            .raw::<()>(Method::GET, path, None, Duration::from_secs(30))
            .await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let token = self.token.as_deref().ok_or_else(|| ClientError::NoToken {
            hint: self.token_hint.clone(),
        })?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server))
            .bearer_auth(token)
            .timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                server: self.server.clone(),
                reason: e.to_string(),
            })?
            .to_vec();
        if status.is_client_error() || status.is_server_error() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(
                |_| serde_json::json!({"error": "http", "detail": String::from_utf8_lossy(&bytes)}),
            );
            return Err(ClientError::Api {
                status,
                error: body["error"].as_str().unwrap_or("error").to_owned(),
                detail: body["detail"]
                    .as_str()
                    .unwrap_or("request failed")
                    .to_owned(),
                body,
            });
        }
        Ok((status, bytes))
    }
}
