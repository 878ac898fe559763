//! Where the Alibaba Cloud provider's credentials come from, in the order of Alibaba's own
//! default credential chain:
//! 1. an AccessKey (and STS token) in the environment;
//! 2. RRSA, as Container Service for Kubernetes (ACK) injects it into a Pod:
//!    `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` and
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE`, exchanged at STS with `AssumeRoleWithOIDC`;
//! 3. the credentials file (`~/.alibabacloud/credentials`);
//! 4. the ECS instance RAM role named by `ALIBABA_CLOUD_ECS_METADATA`, from the instance
//!    metadata service in its hardened (token) mode.
//!
//! Written here because Alibaba publishes no Rust SDK; the requests follow Alibaba's
//! STS API reference (AssumeRoleWithOIDC, 2015-04-01, which takes no signature: the OIDC
//! token is the proof) and its ECS instance metadata documentation. Temporary
//! credentials are kept until shortly before they expire ([`crate::refresh`]); the token
//! file is re-read at every exchange, since kubelet rotates it.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use secrecy::SecretString;
use serde::Deserialize;

use crate::alibaba::{host_or_url, load_credentials, AliCredentials};
use crate::env::Environment;
use crate::error::KmsErrorKind;
use crate::http::{chain, snippet, status_text};
use crate::refresh::{Expiring, Refreshing};

const STS_API_VERSION: &str = "2015-04-01";
/// The instance metadata service on every ECS instance.
const ECS_METADATA: &str = "http://100.100.100.200";
/// How long a metadata session token is asked for, as Alibaba's SDKs do (6 hours).
const METADATA_TOKEN_TTL: &str = "21600";

pub(crate) enum AliSource {
    Static(AliCredentials),
    Oidc(Box<Oidc>),
    EcsRole(Box<EcsRole>),
}

pub(crate) struct Oidc {
    role_arn: String,
    provider_arn: String,
    token_file: PathBuf,
    session_name: String,
    duration_seconds: u32,
    sts: url::Url,
    cache: Refreshing<AliCredentials>,
}

pub(crate) struct EcsRole {
    /// The role name; asked of the metadata service when not configured.
    role: Option<String>,
    metadata: url::Url,
    imdsv1_disabled: bool,
    cache: Refreshing<AliCredentials>,
}

impl fmt::Debug for AliSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(c) => c.fmt(f),
            Self::Oidc(o) => write!(f, "Rrsa({} at {})", o.role_arn, o.sts),
            Self::EcsRole(r) => write!(f, "EcsRamRole({:?} at {})", r.role, r.metadata),
        }
    }
}

impl AliSource {
    /// The first source the environment configures; the error names every source.
    pub(crate) fn resolve(env: &Environment) -> Result<Self, String> {
        if env.get("ALIBABA_CLOUD_ACCESS_KEY_ID").is_some() {
            return load_credentials(env).map(Self::Static);
        }
        let rrsa = [
            env.get("ALIBABA_CLOUD_ROLE_ARN"),
            env.get("ALIBABA_CLOUD_OIDC_PROVIDER_ARN"),
            env.get("ALIBABA_CLOUD_OIDC_TOKEN_FILE"),
        ];
        match rrsa {
            [Some(role_arn), Some(provider_arn), Some(token_file)] => {
                let sts = match env.get("SIGNET_ALIBABA_STS_ENDPOINT") {
                    Some(raw) => raw,
                    None => {
                        let prefix = if env
                            .get("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED")
                            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                        {
                            "sts-vpc"
                        } else {
                            "sts"
                        };
                        match env.get("ALIBABA_CLOUD_STS_REGION") {
                            Some(region) => format!("{prefix}.{region}.aliyuncs.com"),
                            None => "sts.aliyuncs.com".to_owned(),
                        }
                    }
                };
                let duration_seconds = match env.get("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION") {
                    Some(s) => s.parse().ok().filter(|d| *d >= 900).ok_or_else(|| {
                        format!("ALIBABA_CLOUD_ROLE_SESSION_EXPIRATION {s:?} is not a number of seconds of at least 900")
                    })?,
                    None => 3600,
                };
                return Ok(Self::Oidc(Box::new(Oidc {
                    role_arn,
                    provider_arn,
                    token_file: PathBuf::from(token_file),
                    session_name: env
                        .get("ALIBABA_CLOUD_ROLE_SESSION_NAME")
                        .unwrap_or_else(|| "signet".to_owned()),
                    duration_seconds,
                    sts: host_or_url(&sts, "the STS endpoint")?,
                    cache: Refreshing::default(),
                })));
            }
            [None, None, None] => {}
            _ => {
                return Err("RRSA needs all three of ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE (ACK sets them when the Pod's service account has RRSA enabled)".into());
            }
        }
        let file = load_credentials(env);
        if file.is_ok() || env.get("ALIBABA_CLOUD_ECS_METADATA").is_none() {
            return file.map(Self::Static).map_err(|e| {
                format!("{e}; or use RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE) or the ECS instance RAM role (ALIBABA_CLOUD_ECS_METADATA)")
            });
        }
        if env
            .get("ALIBABA_CLOUD_ECS_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err("ALIBABA_CLOUD_ECS_METADATA names a RAM role, but ALIBABA_CLOUD_ECS_METADATA_DISABLED=true".into());
        }
        let role = env.get("ALIBABA_CLOUD_ECS_METADATA").filter(|r| r != "*");
        let metadata = env
            .get("SIGNET_ALIBABA_METADATA_ENDPOINT")
            .unwrap_or_else(|| ECS_METADATA.to_owned());
        Ok(Self::EcsRole(Box::new(EcsRole {
            role,
            metadata: host_or_url(&metadata, "the metadata endpoint")?,
            imdsv1_disabled: env
                .get("ALIBABA_CLOUD_IMDSV1_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            cache: Refreshing::default(),
        })))
    }

    pub(crate) async fn get(
        &self,
        client: &reqwest::Client,
    ) -> Result<AliCredentials, KmsErrorKind> {
        match self {
            Self::Static(c) => Ok(c.clone()),
            Self::Oidc(o) => o.cache.get(|| o.fetch(client)).await,
            Self::EcsRole(r) => r.cache.get(|| r.fetch(client)).await,
        }
    }

    /// Forgets temporary credentials the KMS refused as expired; `false` for static
    /// ones, which cannot be renewed.
    pub(crate) async fn invalidate(&self) -> bool {
        match self {
            Self::Static(_) => false,
            Self::Oidc(o) => {
                o.cache.invalidate().await;
                true
            }
            Self::EcsRole(r) => {
                r.cache.invalidate().await;
                true
            }
        }
    }
}

/// The credentials STS and the metadata service return (field names as documented).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Issued {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    /// `2006-01-02T15:04:05Z`.
    expiration: String,
    /// The metadata service's `Success`; STS has none.
    #[serde(default)]
    code: Option<String>,
}

impl Issued {
    fn into_expiring(self, what: &str) -> Result<Expiring<AliCredentials>, KmsErrorKind> {
        if self.code.as_deref().is_some_and(|c| c != "Success") {
            return Err(KmsErrorKind::Unavailable(format!(
                "{what}: Code {:?}",
                self.code.unwrap_or_default()
            )));
        }
        let expires = chrono::DateTime::parse_from_rfc3339(&self.expiration)
            .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
            .map_err(|e| {
                KmsErrorKind::Failed(format!("{what}: Expiration {:?}: {e}", self.expiration))
            })?;
        tracing::info!(access_key_id = %self.access_key_id, expires = %self.expiration, "Alibaba Cloud credentials obtained ({what})");
        Ok(Expiring {
            value: AliCredentials {
                access_key_id: self.access_key_id,
                access_key_secret: SecretString::from(self.access_key_secret),
                security_token: Some(SecretString::from(self.security_token)),
            },
            expires: Some(expires),
        })
    }
}

fn unreachable(what: &str, e: &reqwest::Error) -> KmsErrorKind {
    if e.is_timeout() {
        KmsErrorKind::Timeout
    } else {
        KmsErrorKind::Unavailable(format!("{what}: {}", chain(e)))
    }
}

impl Oidc {
    async fn fetch(
        &self,
        client: &reqwest::Client,
    ) -> Result<Expiring<AliCredentials>, KmsErrorKind> {
        let what = format!("RRSA AssumeRoleWithOIDC for {}", self.role_arn);
        let token = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                KmsErrorKind::PermissionDenied(format!(
                    "{what}: cannot read the OIDC token file {}: {e}",
                    self.token_file.display()
                ))
            })?;
        let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut url = self.sts.clone();
        url.set_path("/");
        url.query_pairs_mut()
            .append_pair("Action", "AssumeRoleWithOIDC")
            .append_pair("Format", "JSON")
            .append_pair("Version", STS_API_VERSION)
            .append_pair("Timestamp", &timestamp);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("RoleArn", &self.role_arn)
            .append_pair("OIDCProviderArn", &self.provider_arn)
            .append_pair("OIDCToken", token.trim())
            .append_pair("RoleSessionName", &self.session_name)
            .append_pair("DurationSeconds", &self.duration_seconds.to_string())
            .finish();
        let response = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(&what, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unreachable(&what, &e))?;
        if !status.is_success() {
            #[derive(Deserialize, Default)]
            #[serde(rename_all = "PascalCase")]
            struct StsError {
                #[serde(default)]
                code: String,
                #[serde(default)]
                message: String,
            }
            let e: StsError = serde_json::from_slice(&bytes).unwrap_or_default();
            let m = if e.code.is_empty() {
                format!("{what}: HTTP {}: {}", status_text(status), snippet(&bytes))
            } else {
                format!("{what}: {}: {}", e.code, e.message)
            };
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                KmsErrorKind::Unavailable(m)
            } else {
                KmsErrorKind::PermissionDenied(m)
            });
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            credentials: Issued,
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            KmsErrorKind::Failed(format!(
                "{what}: unexpected answer ({e}): {}",
                snippet(&bytes)
            ))
        })?;
        answer.credentials.into_expiring(&what)
    }
}

impl EcsRole {
    /// The hardened mode's session token; `None` when the service does not issue one
    /// and the plain mode is allowed.
    async fn session_token(
        &self,
        client: &reqwest::Client,
    ) -> Result<Option<String>, KmsErrorKind> {
        let what = "ECS metadata session token";
        let mut url = self.metadata.clone();
        url.set_path("/latest/api/token");
        let result = client
            .put(url)
            .header(
                "X-aliyun-ecs-metadata-token-ttl-seconds",
                METADATA_TOKEN_TTL,
            )
            .send()
            .await;
        let failure = match result {
            Ok(r) if r.status().is_success() => {
                return r
                    .text()
                    .await
                    .map(|t| Some(t.trim().to_owned()))
                    .map_err(|e| unreachable(what, &e))
            }
            Ok(r) => format!("HTTP {}", status_text(r.status())),
            Err(e) => chain(&e),
        };
        if self.imdsv1_disabled {
            return Err(KmsErrorKind::Unavailable(format!("{what}: {failure}")));
        }
        tracing::warn!(reason = %failure, "the ECS metadata service issued no session token; asking without one (set ALIBABA_CLOUD_IMDSV1_DISABLED=true to forbid that)");
        Ok(None)
    }

    async fn get_text(
        &self,
        client: &reqwest::Client,
        path: &str,
        token: Option<&str>,
    ) -> Result<String, KmsErrorKind> {
        let mut url = self.metadata.clone();
        url.set_path(path);
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.header("X-aliyun-ecs-metadata-token", token);
        }
        let what = format!("ECS metadata {path}");
        let response = request.send().await.map_err(|e| unreachable(&what, &e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| unreachable(&what, &e))?;
        match status.as_u16() {
            200 => Ok(text),
            404 => Err(KmsErrorKind::PermissionDenied(format!(
                "{what}: HTTP 404: the instance has no such RAM role"
            ))),
            _ => Err(KmsErrorKind::Unavailable(format!(
                "{what}: HTTP {}: {}",
                status_text(status),
                snippet(text.as_bytes())
            ))),
        }
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
    ) -> Result<Expiring<AliCredentials>, KmsErrorKind> {
        let token = self.session_token(client).await?;
        let base = "/latest/meta-data/ram/security-credentials/";
        let role = match &self.role {
            Some(r) => r.clone(),
            None => self
                .get_text(client, base, token.as_deref())
                .await?
                .trim()
                .to_owned(),
        };
        let text = self
            .get_text(client, &format!("{base}{role}"), token.as_deref())
            .await?;
        let what = format!("ECS instance RAM role {role}");
        let issued: Issued = serde_json::from_str(&text).map_err(|e| {
            KmsErrorKind::Failed(format!(
                "{what}: unexpected answer ({e}): {}",
                snippet(text.as_bytes())
            ))
        })?;
        issued.into_expiring(&what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Result<AliSource, String> {
        AliSource::resolve(&Environment::fixed(vars.iter().copied()))
    }

    #[test]
    fn sources_in_the_order_of_alibabas_chain() {
        let rrsa = [
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/signet"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/ack-rrsa-c1",
            ),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token",
            ),
        ];
        let Ok(AliSource::Oidc(o)) = resolve(&rrsa) else {
            panic!("RRSA");
        };
        assert_eq!(o.sts.as_str(), "https://sts.aliyuncs.com/");
        assert_eq!(o.duration_seconds, 3600);
        let mut vpc = rrsa.to_vec();
        vpc.extend([
            ("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
        ]);
        let Ok(AliSource::Oidc(o)) = resolve(&vpc) else {
            panic!("RRSA in a VPC");
        };
        assert_eq!(o.sts.as_str(), "https://sts-vpc.cn-hangzhou.aliyuncs.com/");

        // An AccessKey in the environment wins, as in Alibaba's chain.
        let mut both = rrsa.to_vec();
        both.extend([
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s"),
        ]);
        assert!(matches!(resolve(&both), Ok(AliSource::Static(_))));

        let e = resolve(&rrsa[..2]).expect_err("half an RRSA setup");
        assert!(e.contains("ALIBABA_CLOUD_OIDC_TOKEN_FILE"), "{e}");

        let Ok(AliSource::EcsRole(r)) = resolve(&[
            ("ALIBABA_CLOUD_ECS_METADATA", "signet-signer"),
            ("HOME", "/nonexistent"),
        ]) else {
            panic!("ECS role");
        };
        assert_eq!(r.role.as_deref(), Some("signet-signer"));
        assert_eq!(r.metadata.as_str(), "http://100.100.100.200/");

        let e = resolve(&[("HOME", "/nonexistent")]).expect_err("nothing");
        assert!(
            e.contains("RRSA") && e.contains("ALIBABA_CLOUD_ECS_METADATA"),
            "{e}"
        );
    }
}
