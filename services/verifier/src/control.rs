//! The control plane as the verifier sees it: fetch the cluster's trust bundle, report
//! admission decisions. Every call has a short timeout; the caller retries and keeps
//! deciding from what it already has. A bundle is believed only when the control
//! plane's seal over its exact bytes verifies under a pinned key; the transport (plain
//! HTTP in a laptop setup, a pod network, a proxy) is not trusted.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use signet_core::{AdmissionDecision, PinnedKeys, TrustBundle, SEAL_HEADER};

use crate::error::ControlPlaneError;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest trust bundle read: 100k revoked signatures come to about 40 MiB.
const MAX_BUNDLE_BYTES: usize = 128 * 1024 * 1024;

/// A trust bundle as the gateway sealed it: the exact bytes, their seal, and what they
/// say. Kept on disk in this form, so a restarted verifier checks the seal again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SealedBundle {
    /// The bundle's JSON, base64 on disk.
    #[serde(with = "b64")]
    pub bytes: Vec<u8>,
    /// The `Signet-Signature` value that came with it.
    pub seal: String,
}

impl SealedBundle {
    /// Checks the seal, then parses.
    pub fn open(&self, keys: &PinnedKeys) -> Result<TrustBundle, signet_core::SealError> {
        keys.check(&self.bytes, Some(&self.seal))?;
        serde_json::from_slice(&self.bytes).map_err(|e| {
            signet_core::SealError::Malformed(format!("sealed, but not a trust bundle: {e}"))
        })
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// A client for the gateway's verifier endpoints. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    base: String,
    cluster: String,
    token: SecretString,
    keys: PinnedKeys,
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
    /// A client that believes bundles sealed by `keys`; with `gateway_ca`, an `https://`
    /// gateway must present a certificate that CA issued (and no other root counts).
    pub fn new(
        base: &str,
        cluster: &str,
        token: SecretString,
        keys: PinnedKeys,
        gateway_ca: Option<&std::path::Path>,
    ) -> Result<Self, ControlPlaneError> {
        let unusable = |reason: String| ControlPlaneError::Unreachable {
            url: base.to_owned(),
            reason,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            // A bundle comes from the gateway itself, never from where it points.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = gateway_ca {
            let certs = signet_runtime::tls::pinned_roots(path).map_err(unusable)?;
            builder = builder.tls_certs_only(certs).https_only(true);
        }
        let http = builder
            .build()
            .map_err(|e| unusable(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            cluster: cluster.to_owned(),
            token,
            keys,
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/trust-bundle?cluster=C`, checked against the pinned keys. A bundle for
    /// another cluster is refused too: the seal says who wrote it, not for whom.
    pub async fn bundle(&self) -> Result<(TrustBundle, SealedBundle), ControlPlaneError> {
        self.bundle_since(None).await
    }

    /// [`ControlPlane::bundle`], incremental from revision `since` when given (the answer
    /// may still be whole: `since` is `None` in it then). An incremental answer to a
    /// request that did not ask for one, or from another revision, is refused.
    pub async fn bundle_since(
        &self,
        since: Option<i64>,
    ) -> Result<(TrustBundle, SealedBundle), ControlPlaneError> {
        let mut query = vec![("cluster", self.cluster.clone())];
        if let Some(r) = since {
            query.push(("since", r.to_string()));
        }
        let resp = self
            .http
            .get(format!("{}/v1/trust-bundle", self.base))
            .query(&query)
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let mut resp = self.check(resp).await?;
        let seal = resp
            .headers()
            .get(SEAL_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(e))? {
            if bytes.len() + chunk.len() > MAX_BUNDLE_BYTES {
                return Err(ControlPlaneError::Decode(format!(
                    "the trust bundle is larger than {} MiB",
                    MAX_BUNDLE_BYTES >> 20
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let sealed = SealedBundle {
            bytes,
            seal: seal.unwrap_or_default(),
        };
        let refused = |reason| ControlPlaneError::Unsealed {
            url: self.base.clone(),
            reason,
        };
        if sealed.seal.is_empty() {
            return Err(refused(signet_core::SealError::Missing));
        }
        let bundle = sealed.open(&self.keys).map_err(refused)?;
        if bundle.cluster != self.cluster {
            return Err(ControlPlaneError::Decode(format!(
                "asked for cluster {}'s trust bundle, got cluster {}'s",
                self.cluster, bundle.cluster
            )));
        }
        if bundle.since.is_some() && bundle.since != since {
            return Err(ControlPlaneError::Decode(format!(
                "asked for the trust bundle from revision {since:?}, got one from {:?}",
                bundle.since
            )));
        }
        Ok((bundle, sealed))
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

    /// `POST /v1/inventory`.
    pub async fn inventory(
        &self,
        report: &signet_core::InventoryReport,
    ) -> Result<(), ControlPlaneError> {
        let resp = self
            .http
            .post(format!("{}/v1/inventory", self.base))
            .bearer_auth(self.token.expose_secret())
            .json(report)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.check(resp).await?;
        Ok(())
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
