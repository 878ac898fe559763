//! The control plane as the verifier sees it: fetch the cluster's trust bundle, report
//! admission decisions. Every call has a short timeout; the caller retries and keeps
//! deciding from what it already has.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use signet_core::{AdmissionDecision, TrustBundle};

use crate::error::ControlPlaneError;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for the gateway's verifier endpoints. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    base: String,
    cluster: String,
    token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("base", &self.base)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct Report<'a> {
    decisions: &'a [AdmissionDecision],
}

impl ControlPlane {
    pub fn new(base: &str, cluster: &str, token: SecretString) -> Result<Self, ControlPlaneError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| ControlPlaneError::Unreachable {
                url: base.to_owned(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            cluster: cluster.to_owned(),
            token,
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/trust-bundle?cluster=C`.
    pub async fn bundle(&self) -> Result<TrustBundle, ControlPlaneError> {
        let resp = self
            .http
            .get(format!("{}/v1/trust-bundle", self.base))
            .query(&[("cluster", self.cluster.as_str())])
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let resp = self.check(resp).await?;
        resp.json()
            .await
            .map_err(|e| ControlPlaneError::Decode(e.to_string()))
    }

    /// `POST /v1/admission-decisions`; returns how many were new.
    pub async fn report(&self, decisions: &[AdmissionDecision]) -> Result<u64, ControlPlaneError> {
        let resp = self
            .http
            .post(format!("{}/v1/admission-decisions", self.base))
            .bearer_auth(self.token.expose_secret())
            .json(&Report { decisions })
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let body: serde_json::Value = self
            .check(resp)
            .await?
            .json()
            .await
            .map_err(|e| ControlPlaneError::Decode(e.to_string()))?;
        Ok(body["recorded"].as_u64().unwrap_or_default())
    }

    fn unreachable(&self, e: reqwest::Error) -> ControlPlaneError {
        ControlPlaneError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        }
    }

    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response, ControlPlaneError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let detail = body["detail"]
            .as_str()
            .unwrap_or("no detail given")
            .to_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ControlPlaneError::Refused {
                status: status.as_u16(),
                detail,
            },
            _ => ControlPlaneError::Failed {
                status: status.as_u16(),
                detail,
            },
        })
    }
}
