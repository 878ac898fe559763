//! `awskms://[ENDPOINT]/KEY`: AWS KMS over its JSON 1.1 API, requests signed with SigV4 by
//! the `aws-sigv4` crate.
//!
//! KEY is a key id, a key ARN, `alias/NAME` or an alias ARN. AWS keys have one version
//! each, so the version id is the key id; rotating means creating a new key and rotating
//! the witness to it. An ENDPOINT in the URI is reached over HTTPS; without one,
//! `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL` (full URLs, so `http://` works for local
//! emulators) or `https://kms.<region>.amazonaws.com` is used.
//!
//! Credentials: static keys from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the shared
//! credentials file; otherwise (in the process environment) the AWS SDK's default chain,
//! which is what clusters hand out: web identity (`AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, as IRSA sets them), the container endpoint
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, as EKS Pod Identity and ECS set it), profiles
//! with `role_arn` or `credential_process`, and IMDSv2 on EC2. Temporary credentials are
//! kept until shortly before they expire (see [`crate::refresh`]) and renewed; a request
//! AWS refuses with `ExpiredTokenException` renews them at once and is sent again.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use signet_core::{PublicKey, SignatureAlgorithm};

use crate::discover::{message, KeyListing};
use crate::env::{parse_ini, Environment};
use crate::error::{KmsError, KmsErrorKind};
use crate::http::{chain, snippet, status_text, transport_error};
use crate::refresh::{Expiring, Refreshing};
use crate::{KeyDescription, KeyProvider, KeyVersionInfo};

const PROVIDER: &str = "awskms";

/// Largest payload AWS KMS signs as `MessageType=RAW`; above it we send the SHA-256.
pub(crate) const MAX_RAW_MESSAGE: usize = 4096;

/// The key specs signet accepts: RSA of at least 2048 bits.
const RSA_SPECS: [&str; 3] = ["RSA_2048", "RSA_3072", "RSA_4096"];

/// A parsed `awskms://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsKeyUri {
    /// `host[:port]` from the URI, if any.
    pub endpoint: Option<String>,
    /// Key id, ARN, or alias as written.
    pub key: String,
    /// The region named by an ARN.
    pub arn_region: Option<String>,
}

pub(crate) fn parse_uri(uri: &str) -> Result<AwsKeyUri, String> {
    let rest = uri
        .strip_prefix("awskms://")
        .ok_or("AWS key URIs start with awskms://")?;
    let Some((endpoint, key)) = rest.split_once('/') else {
        return Err("expected awskms://[ENDPOINT]/KEY, e.g. awskms:///alias/signet".into());
    };
    if endpoint.contains('@') {
        return Err(
            "credentials do not belong in a key URI; use AWS_ACCESS_KEY_ID or ~/.aws/credentials"
                .into(),
        );
    }
    if !endpoint.is_empty()
        && !endpoint
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(format!("endpoint {endpoint:?} is not a host[:port]"));
    }
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b':'));
    if !key_ok {
        return Err(format!(
            "key {key:?} is not a key id, key ARN or alias (letters, digits, '-', '_', '/', ':')"
        ));
    }
    let arn_region = if key.starts_with("arn:") {
        // arn:PARTITION:kms:REGION:ACCOUNT:key/ID or :alias/NAME
        let parts: Vec<&str> = key.splitn(6, ':').collect();
        match parts.as_slice() {
            [_, _, "kms", region, _, resource]
                if !region.is_empty()
                    && (resource.starts_with("key/") || resource.starts_with("alias/")) =>
            {
                Some((*region).to_owned())
            }
            _ => return Err(format!("{key:?} is not a KMS key or alias ARN")),
        }
    } else {
        None
    };
    Ok(AwsKeyUri {
        endpoint: (!endpoint.is_empty()).then(|| endpoint.to_owned()),
        key: key.to_owned(),
        arn_region,
    })
}

/// AWS credentials, redacted in Debug.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

fn profile_name(env: &Environment) -> String {
    env.get("AWS_PROFILE")
        .unwrap_or_else(|| "default".to_owned())
}

fn aws_file(env: &Environment, var: &str, name: &str) -> Option<PathBuf> {
    env.get(var)
        .map(PathBuf::from)
        .or_else(|| env.home().map(|h| h.join(".aws").join(name)))
}

/// Credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, else
/// from the shared credentials file's `AWS_PROFILE` (or `default`) section.
pub(crate) fn load_credentials(env: &Environment) -> Result<AwsCredentials, String> {
    if let (Some(id), Some(secret)) = (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(AwsCredentials {
            access_key_id: id,
            secret_access_key: SecretString::from(secret),
            session_token: env.get("AWS_SESSION_TOKEN").map(SecretString::from),
        });
    }
    let profile = profile_name(env);
    let missing = || {
        format!(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put profile [{profile}] in the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials)"
        )
    };
    let path = aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials").ok_or_else(missing)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => SecretString::from(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let ini = parse_ini(text.expose_secret());
    let section = ini.get(&profile).ok_or_else(missing)?;
    match (
        section.get("aws_access_key_id"),
        section.get("aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) => Ok(AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: SecretString::from(secret.clone()),
            session_token: section
                .get("aws_session_token")
                .cloned()
                .map(SecretString::from),
        }),
        _ => Err(format!(
            "profile [{profile}] in {} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        )),
    }
}

/// Where an AWS provider's credentials come from.
#[derive(Clone)]
pub(crate) enum AwsCredentialSource {
    /// Keys given in full: the environment's or the shared credentials file's.
    Static(AwsCredentials),
    /// The AWS SDK's default chain, shared by every AWS key of one [`crate::Kms`].
    Chain(Arc<AwsChain>),
}

impl AwsCredentialSource {
    /// Static keys when the environment or the shared file has them; otherwise, for the
    /// process environment, the SDK's chain (web identity, Pod Identity, IMDSv2, ...),
    /// made once per `Kms` by `chain`. A fixed environment (tests, embedding programs)
    /// has static keys or nothing: the SDK reads only the process environment.
    pub(crate) fn resolve(
        env: &Environment,
        chain: impl FnOnce() -> Arc<AwsChain>,
    ) -> Result<Self, String> {
        match load_credentials(env) {
            Ok(c) => Ok(Self::Static(c)),
            Err(_) if matches!(env, Environment::Process) => Ok(Self::Chain(chain())),
            Err(e) => Err(e),
        }
    }

    async fn get(&self) -> Result<AwsCredentials, KmsErrorKind> {
        match self {
            Self::Static(c) => Ok(c.clone()),
            Self::Chain(chain) => chain.credentials().await,
        }
    }

    /// Forgets temporary credentials AWS refused as expired; `false` for static keys,
    /// which cannot be renewed.
    async fn invalidate(&self) -> bool {
        match self {
            Self::Static(_) => false,
            Self::Chain(chain) => {
                chain.cache.invalidate().await;
                true
            }
        }
    }
}

impl fmt::Debug for AwsCredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(c) => c.fmt(f),
            Self::Chain(chain) => chain.fmt(f),
        }
    }
}

/// The SDK's default credential chain and the credentials it last gave.
pub(crate) struct AwsChain {
    /// The region STS is called in (web identity, profiles assuming a role).
    region: String,
    /// Built on first use: building it is async and reads the environment and files.
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
    cache: Refreshing<AwsCredentials>,
}

impl fmt::Debug for AwsChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsChain")
            .field("region", &self.region)
            .finish()
    }
}

impl AwsChain {
    pub(crate) fn new(region: String) -> Self {
        Self {
            region,
            chain: tokio::sync::OnceCell::new(),
            cache: Refreshing::default(),
        }
    }

    async fn credentials(&self) -> Result<AwsCredentials, KmsErrorKind> {
        self.cache
            .get(|| async {
                let chain = self
                    .chain
                    .get_or_init(|| async {
                        DefaultCredentialsChain::builder()
                            .region(aws_config::Region::new(self.region.clone()))
                            .build()
                            .await
                    })
                    .await;
                let c = chain.provide_credentials().await.map_err(chain_error)?;
                tracing::info!(
                    access_key_id = c.access_key_id(),
                    expires = ?c.expiry().map(chrono::DateTime::<chrono::Utc>::from),
                    "AWS credentials obtained"
                );
                Ok(Expiring {
                    expires: c.expiry(),
                    value: AwsCredentials {
                        access_key_id: c.access_key_id().to_owned(),
                        secret_access_key: SecretString::from(c.secret_access_key().to_owned()),
                        session_token: c.session_token().map(|t| SecretString::from(t.to_owned())),
                    },
                })
            })
            .await
    }
}

/// What the SDK's chain failing means for signet.
fn chain_error(e: CredentialsError) -> KmsErrorKind {
    let detail = chain(&e);
    match e {
        CredentialsError::CredentialsNotLoaded(_) => KmsErrorKind::PermissionDenied(format!(
            "no AWS credentials: none of AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared files (~/.aws), web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), the container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI, EKS Pod Identity) or the EC2 instance metadata gave any ({detail})"
        )),
        CredentialsError::ProviderTimedOut(_) => KmsErrorKind::Unavailable(format!(
            "the AWS credential provider did not answer in time ({detail})"
        )),
        CredentialsError::ProviderError(_) => KmsErrorKind::Unavailable(format!(
            "the AWS credential provider failed: {detail}"
        )),
        CredentialsError::InvalidConfiguration(_) => {
            KmsErrorKind::Failed(format!("the AWS credential settings are invalid: {detail}"))
        }
        _ => KmsErrorKind::Failed(format!("cannot get AWS credentials: {detail}")),
    }
}

/// The region: from the key ARN, `AWS_REGION`, `AWS_DEFAULT_REGION`, or the shared config
/// file's profile.
pub(crate) fn resolve_region(
    env: &Environment,
    arn_region: Option<&str>,
) -> Result<String, String> {
    if let Some(r) = arn_region {
        return Ok(r.to_owned());
    }
    if let Some(r) = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
    {
        return Ok(r);
    }
    let profile = profile_name(env);
    let section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    aws_file(env, "AWS_CONFIG_FILE", "config")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| parse_ini(&text).get(&section)?.get("region").cloned())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            "no AWS region: set AWS_REGION, use a key ARN, or set region in the shared config file (~/.aws/config)"
                .to_owned()
        })
}

/// The KMS endpoint URL for a URI's endpoint, the environment and the region.
pub(crate) fn endpoint_url(
    uri_endpoint: Option<&str>,
    env: &Environment,
    region: &str,
) -> Result<url::Url, String> {
    let raw = match uri_endpoint {
        Some(host) => format!("https://{host}/"),
        None => env
            .get("AWS_ENDPOINT_URL_KMS")
            .or_else(|| env.get("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com/")),
    };
    let url = url::Url::parse(&raw).map_err(|e| format!("endpoint {raw:?} is not a URL: {e}"))?;
    if url.host_str().is_none() || !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "endpoint {raw:?} must be an http or https URL with a host"
        ));
    }
    Ok(url)
}

/// Builds a KMS JSON 1.1 request for `target` (`Sign`, `GetPublicKey`, ...).
pub(crate) fn build_request(
    endpoint: &url::Url,
    target: &str,
    body: Vec<u8>,
) -> Result<http::Request<Vec<u8>>, String> {
    http::Request::builder()
        .method("POST")
        .uri(endpoint.as_str())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("TrentService.{target}"))
        .body(body)
        .map_err(|e| format!("cannot build the request: {e}"))
}

/// Adds SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` with a
/// session token) for `service` in `region` at `time`.
pub(crate) fn sign_request(
    request: &mut http::Request<Vec<u8>>,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), String> {
    let identity = Credentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose_secret().to_owned(),
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        None,
        "signet",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| {
            Ok((
                k.as_str(),
                v.to_str().map_err(|e| format!("header {k}: {e}"))?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

/// Whether AWS refused the call because the session token expired ([`classify`] puts
/// the error's name first).
fn is_expired(e: &KmsError) -> bool {
    matches!(&e.kind, KmsErrorKind::PermissionDenied(m)
        if m.starts_with("ExpiredTokenException") || m.starts_with("ExpiredToken:"))
}

/// How AWS names an error (`__type`, sometimes with a namespace before `#`) mapped to
/// what signet does about it.
pub(crate) fn classify(status: u16, error_type: &str, message: &str) -> KmsErrorKind {
    let name = error_type.rsplit('#').next().unwrap_or(error_type);
    let m = if message.is_empty() {
        name.to_owned()
    } else {
        format!("{name}: {message}")
    };
    match name {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "LimitExceededException"
        | "RequestLimitExceeded" => KmsErrorKind::Throttled(m),
        "NotFoundException" => KmsErrorKind::NotFound(m),
        "InvalidKeyUsageException" | "UnsupportedOperationException" => {
            KmsErrorKind::WrongKeyType(m)
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "IncompleteSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException"
        | "InvalidClientTokenId" => KmsErrorKind::PermissionDenied(m),
        "KMSInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "ServiceUnavailableException"
        | "ServiceUnavailable"
        | "InternalFailure" => KmsErrorKind::Unavailable(m),
        "DisabledException" | "KMSInvalidStateException" => KmsErrorKind::Failed(format!(
            "{m} (the key is disabled or pending deletion; enable it in AWS KMS)"
        )),
        _ if status == 429 => KmsErrorKind::Throttled(m),
        _ if status >= 500 => KmsErrorKind::Unavailable(m),
        _ => KmsErrorKind::Failed(m),
    }
}

pub(crate) struct AwsProvider {
    uri: String,
    key: String,
    region: String,
    endpoint: url::Url,
    credentials: AwsCredentialSource,
    client: reqwest::Client,
}

impl AwsProvider {
    pub(crate) fn open(
        uri: &str,
        env: &Environment,
        client: reqwest::Client,
        chain: impl FnOnce(&str) -> Arc<AwsChain>,
    ) -> Result<Self, KmsError> {
        let invalid = |m: String| {
            KmsError::new(
                PROVIDER,
                crate::kms::redact_uri(uri),
                KmsErrorKind::InvalidUri(m),
            )
        };
        let failed = |m: String| KmsError::new(PROVIDER, uri, KmsErrorKind::Failed(m));
        let parsed = parse_uri(uri).map_err(invalid)?;
        let region = resolve_region(env, parsed.arn_region.as_deref()).map_err(failed)?;
        Self::connect(
            uri,
            parsed.key,
            region,
            parsed.endpoint.as_deref(),
            env,
            client,
            chain,
        )
    }

    /// A provider for the account as a whole in `region`, which lists its keys
    /// ([`crate::Kms::discover`]) at the endpoint and with the credentials that
    /// `awskms:///KEY` keys of that region use.
    pub(crate) fn for_account(
        region: String,
        env: &Environment,
        client: reqwest::Client,
        chain: impl FnOnce(&str) -> Arc<AwsChain>,
    ) -> Result<Self, KmsError> {
        Self::connect(
            "awskms:///",
            String::new(),
            region,
            None,
            env,
            client,
            chain,
        )
    }

    fn connect(
        uri: &str,
        key: String,
        region: String,
        uri_endpoint: Option<&str>,
        env: &Environment,
        client: reqwest::Client,
        chain: impl FnOnce(&str) -> Arc<AwsChain>,
    ) -> Result<Self, KmsError> {
        let endpoint = endpoint_url(uri_endpoint, env, &region)
            .map_err(|m| KmsError::new(PROVIDER, uri, KmsErrorKind::Failed(m)))?;
        let credentials = AwsCredentialSource::resolve(env, || chain(&region))
            .map_err(|m| KmsError::new(PROVIDER, uri, KmsErrorKind::PermissionDenied(m)))?;
        Ok(Self {
            uri: uri.to_owned(),
            key,
            region,
            endpoint,
            credentials,
            client,
        })
    }

    /// The ids of the account's keys in this region (`ListKeys`, every page), at most
    /// `cap`; true when there were more.
    pub(crate) async fn list_key_ids(&self, cap: usize) -> Result<(Vec<String>, bool), KmsError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct ListKeysResponse {
            #[serde(default)]
            keys: Vec<ListedKey>,
            #[serde(default)]
            next_marker: Option<String>,
            #[serde(default)]
            truncated: bool,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct ListedKey {
            key_id: String,
        }
        let mut ids = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            // AWS takes 1 to 1000 per page.
            let mut body = json!({ "Limit": 1000 });
            if let Some(m) = &marker {
                body["Marker"] = json!(m);
            }
            let page: ListKeysResponse = self.call("ListKeys", body).await?;
            ids.extend(page.keys.into_iter().map(|k| k.key_id));
            if ids.len() > cap {
                ids.truncate(cap);
                return Ok((ids, true));
            }
            match page.next_marker.filter(|m| page.truncated && !m.is_empty()) {
                // A server repeating its marker would otherwise page forever.
                Some(m) if marker.as_deref() != Some(m.as_str()) => marker = Some(m),
                _ => return Ok((ids, false)),
            }
        }
    }

    /// One key of the account for the key picker (`DescribeKey`): usable when
    /// `describe` would accept it.
    pub(crate) async fn list_entry(&self, key_id: &str) -> KeyListing {
        let uri = format!("awskms:///{key_id}");
        match self
            .call::<DescribeKeyResponse>("DescribeKey", json!({ "KeyId": key_id }))
            .await
        {
            Ok(described) => {
                let meta = described.key_metadata;
                let problem = key_problem(&meta).err().map(|p| p.short());
                KeyListing::new(
                    PROVIDER,
                    uri,
                    key_id.to_owned(),
                    spec(&meta).map(str::to_owned),
                    problem,
                )
            }
            Err(e) => KeyListing::new(
                PROVIDER,
                uri,
                key_id.to_owned(),
                None,
                Some(format!("cannot describe the key: {}", message(&e))),
            ),
        }
    }

    fn error(&self, kind: KmsErrorKind) -> KmsError {
        KmsError::new(PROVIDER, self.uri.as_str(), kind)
    }

    /// One KMS API call; the answer's JSON on success. Temporary credentials AWS calls
    /// expired are renewed and the call sent once more.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        target: &str,
        body: serde_json::Value,
    ) -> Result<T, KmsError> {
        let body = serde_json::to_vec(&body)
            .map_err(|e| self.error(KmsErrorKind::Failed(e.to_string())))?;
        match self.call_once(target, body.clone()).await {
            Err(e) if is_expired(&e) && self.credentials.invalidate().await => {
                tracing::warn!(error = %e, "AWS refused the credentials as expired; renewing them");
                self.call_once(target, body).await
            }
            other => other,
        }
    }

    /// One attempt.
    async fn call_once<T: for<'de> Deserialize<'de>>(
        &self,
        target: &str,
        body: Vec<u8>,
    ) -> Result<T, KmsError> {
        let credentials = self.credentials.get().await.map_err(|k| self.error(k))?;
        let mut request = build_request(&self.endpoint, target, body)
            .map_err(|m| self.error(KmsErrorKind::Failed(m)))?;
        sign_request(
            &mut request,
            &credentials,
            &self.region,
            "kms",
            SystemTime::now(),
        )
        .map_err(|m| self.error(KmsErrorKind::Failed(m)))?;
        let request = reqwest::Request::try_from(request).map_err(|e| {
            self.error(KmsErrorKind::Failed(format!(
                "cannot build the request: {}",
                chain(&e)
            )))
        })?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| transport_error(PROVIDER, &self.uri, &e))?;
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| {
            transport_error(PROVIDER, &self.uri, &e).with_request_id(request_id.clone())
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                self.error(KmsErrorKind::Failed(format!(
                    "unexpected {target} answer ({e}): {}",
                    snippet(&bytes)
                )))
                .with_request_id(request_id.clone())
            });
        }
        #[derive(Deserialize, Default)]
        struct AwsErrorBody {
            #[serde(rename = "__type", default)]
            error_type: String,
            #[serde(alias = "Message", default)]
            message: String,
        }
        let parsed: AwsErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let kind = if parsed.error_type.is_empty() {
            classify(
                status.as_u16(),
                "",
                &format!("HTTP {}: {}", status_text(status), snippet(&bytes)),
            )
        } else {
            classify(status.as_u16(), &parsed.error_type, &parsed.message)
        };
        Err(self.error(kind).with_request_id(request_id))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeKeyResponse {
    key_metadata: KeyMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadata {
    key_id: String,
    #[serde(default)]
    key_usage: Option<String>,
    #[serde(default)]
    key_spec: Option<String>,
    #[serde(default)]
    customer_master_key_spec: Option<String>,
    #[serde(default)]
    key_state: Option<String>,
    /// moto sends `null` for keys that cannot sign.
    #[serde(default)]
    signing_algorithms: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetPublicKeyResponse {
    public_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignResponse {
    signature: String,
}

fn aws_algorithm(algorithm: SignatureAlgorithm) -> Option<&'static str> {
    match algorithm {
        SignatureAlgorithm::RsaPkcs1Sha256 => Some("RSASSA_PKCS1_V1_5_SHA_256"),
        SignatureAlgorithm::RsaPssSha256 => Some("RSASSA_PSS_SHA_256"),
        SignatureAlgorithm::EcdsaP256Sha256 => None,
    }
}

/// The key spec DescribeKey reported (`KeySpec`, or the older `CustomerMasterKeySpec`).
fn spec(meta: &KeyMetadata) -> Option<&str> {
    meta.key_spec
        .as_deref()
        .or(meta.customer_master_key_spec.as_deref())
}

/// Why signet cannot sign with a key: one rule, worded for `describe`'s error
/// ([`KeyProblem::kind`]) and for the key picker ([`KeyProblem::short`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyProblem {
    /// Not an RSA sign/verify key.
    Type { spec: String, usage: String },
    /// Not `Enabled` (disabled, pending deletion or import, unavailable).
    State(String),
    /// Offers neither PKCS#1 v1.5 nor PSS with SHA-256.
    Algorithms(Vec<String>),
}

impl KeyProblem {
    fn kind(&self) -> KmsErrorKind {
        match self {
            Self::Type { spec, usage } => KmsErrorKind::WrongKeyType(format!(
                "key spec {spec} with usage {usage}; signet needs an asymmetric RSA key (RSA_2048, RSA_3072 or RSA_4096) with key usage SIGN_VERIFY"
            )),
            Self::State(state) => KmsErrorKind::Failed(format!(
                "key state is {state}; enable the key in AWS KMS"
            )),
            Self::Algorithms(algorithms) => KmsErrorKind::WrongKeyType(format!(
                "the key signs only with {}; signet needs RSASSA_PKCS1_V1_5_SHA_256 or RSASSA_PSS_SHA_256",
                algorithms.join(", ")
            )),
        }
    }

    fn short(&self) -> String {
        match self {
            Self::Type { spec, .. } if spec.starts_with("SYMMETRIC") => "symmetric key".into(),
            Self::Type { spec, .. } if !RSA_SPECS.contains(&spec.as_str()) => {
                format!("KeySpec {spec} is not RSA")
            }
            Self::Type { usage, .. } => format!("KeyUsage {usage}"),
            Self::State(state) => format!("KeyState {state}"),
            Self::Algorithms(algorithms) => format!(
                "signs only with {}, not RSASSA_PKCS1_V1_5_SHA_256 or RSASSA_PSS_SHA_256",
                algorithms.join(", ")
            ),
        }
    }
}

/// Checks DescribeKey's answer describes a key signet can sign with, and picks the
/// algorithm: PKCS#1 v1.5 when the key offers it (what cosign verifiers expect).
fn check_key(meta: &KeyMetadata) -> Result<SignatureAlgorithm, KmsErrorKind> {
    key_problem(meta).map_err(|p| p.kind())
}

fn key_problem(meta: &KeyMetadata) -> Result<SignatureAlgorithm, KeyProblem> {
    let spec = spec(meta).unwrap_or("unknown");
    let usage = meta.key_usage.as_deref().unwrap_or("unknown");
    if !RSA_SPECS.contains(&spec) || usage != "SIGN_VERIFY" {
        return Err(KeyProblem::Type {
            spec: spec.to_owned(),
            usage: usage.to_owned(),
        });
    }
    if let Some(state) = meta.key_state.as_deref().filter(|s| *s != "Enabled") {
        return Err(KeyProblem::State(state.to_owned()));
    }
    let algorithms = meta.signing_algorithms.as_deref().unwrap_or_default();
    let offers = |a: SignatureAlgorithm| {
        algorithms
            .iter()
            .any(|s| Some(s.as_str()) == aws_algorithm(a))
    };
    if algorithms.is_empty() || offers(SignatureAlgorithm::RsaPkcs1Sha256) {
        Ok(SignatureAlgorithm::RsaPkcs1Sha256)
    } else if offers(SignatureAlgorithm::RsaPssSha256) {
        Ok(SignatureAlgorithm::RsaPssSha256)
    } else {
        Err(KeyProblem::Algorithms(algorithms.to_vec()))
    }
}

/// `Message` and `MessageType` for a payload: AWS signs at most 4096 raw bytes, so a
/// larger payload is sent as its SHA-256 digest, which yields the same signature.
pub(crate) fn sign_message(payload: &[u8]) -> (String, &'static str) {
    if payload.len() <= MAX_RAW_MESSAGE {
        (B64.encode(payload), "RAW")
    } else {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload);
        (B64.encode(digest.as_ref()), "DIGEST")
    }
}

#[async_trait::async_trait]
impl KeyProvider for AwsProvider {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn describe(&self) -> Result<KeyDescription, KmsError> {
        let described: DescribeKeyResponse = self
            .call("DescribeKey", json!({ "KeyId": self.key }))
            .await?;
        let meta = described.key_metadata;
        let algorithm = check_key(&meta).map_err(|k| self.error(k))?;
        let public: GetPublicKeyResponse = self
            .call("GetPublicKey", json!({ "KeyId": meta.key_id }))
            .await?;
        let der = B64.decode(public.public_key.as_bytes()).map_err(|e| {
            self.error(KmsErrorKind::Failed(format!(
                "GetPublicKey returned invalid base64: {e}"
            )))
        })?;
        let public_key = PublicKey::parse(&der)
            .map_err(|e| self.error(KmsErrorKind::WrongKeyType(e.to_string())))?;
        Ok(KeyDescription {
            algorithm,
            versions: vec![KeyVersionInfo {
                version: meta.key_id.clone(),
                public_key,
            }],
            primary_version: meta.key_id,
        })
    }

    async fn sign(
        &self,
        key_version: &str,
        algorithm: SignatureAlgorithm,
        payload: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        if key_version.is_empty() {
            return Err(self.error(KmsErrorKind::NotFound(
                "empty key version; for AWS KMS the version is the key id that describe returned"
                    .into(),
            )));
        }
        let aws = aws_algorithm(algorithm).ok_or_else(|| {
            self.error(KmsErrorKind::Unsupported(
                "signet signs with RSA keys only; an ECDSA key belongs to a verify-only witness"
                    .into(),
            ))
        })?;
        let (message, message_type) = sign_message(payload);
        let signed: SignResponse = self
            .call(
                "Sign",
                json!({
                    "KeyId": key_version,
                    "Message": message,
                    "MessageType": message_type,
                    "SigningAlgorithm": aws,
                }),
            )
            .await?;
        B64.decode(signed.signature.as_bytes()).map_err(|e| {
            self.error(KmsErrorKind::Failed(format!(
                "Sign returned invalid base64: {e}"
            )))
        })
    }

    async fn rotate(&self) -> Result<String, KmsError> {
        Err(self.error(KmsErrorKind::Unsupported(
            "AWS KMS cannot rotate asymmetric keys; create a new asymmetric key (RSA_2048, SIGN_VERIFY) and rotate the witness to it".into(),
        )))
    }
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsProvider")
            .field("uri", &self.uri)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_str())
            .field("credentials", &self.credentials)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(id: &str, secret: &str) -> AwsCredentials {
        AwsCredentials {
            access_key_id: id.into(),
            secret_access_key: SecretString::from(secret.to_owned()),
            session_token: None,
        }
    }

    /// The SigV4 test suite's `get-vanilla` case, signed through the same function KMS
    /// requests use.
    #[test]
    fn sigv4_get_vanilla_vector() {
        let mut request = http::Request::builder()
            .method("GET")
            .uri("https://example.amazonaws.com/")
            .body(Vec::new())
            .expect("request");
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160); // 20150830T123600Z
        sign_request(
            &mut request,
            &creds("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            "us-east-1",
            "service",
            time,
        )
        .expect("sign");
        let auth = request.headers()["authorization"].to_str().expect("ascii");
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(request.headers()["x-amz-date"], "20150830T123600Z");
    }

    #[test]
    fn kms_requests_carry_target_and_scope() {
        let endpoint = url::Url::parse("http://127.0.0.1:5000/").expect("url");
        let mut request = build_request(&endpoint, "Sign", b"{}".to_vec()).expect("build");
        let mut with_token = creds("AKIA", "secret");
        with_token.session_token = Some(SecretString::from("token".to_owned()));
        sign_request(
            &mut request,
            &with_token,
            "eu-west-1",
            "kms",
            SystemTime::now(),
        )
        .expect("sign");
        let h = request.headers();
        assert_eq!(h["x-amz-target"], "TrentService.Sign");
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        assert_eq!(h["x-amz-security-token"], "token");
        let auth = h["authorization"].to_str().expect("ascii");
        assert!(auth.contains("/eu-west-1/kms/aws4_request"), "{auth}");
        assert!(
            auth.contains("x-amz-target"),
            "the target header is signed: {auth}"
        );
    }

    #[test]
    fn uris() {
        let u = parse_uri("awskms:///alias/signet-prod").expect("alias");
        assert_eq!(
            (u.endpoint, u.key.as_str(), u.arn_region),
            (None, "alias/signet-prod", None)
        );
        let u = parse_uri("awskms://localhost:4566/1234abcd-12ab-34cd-56ef-1234567890ab")
            .expect("endpoint");
        assert_eq!(u.endpoint.as_deref(), Some("localhost:4566"));
        let u =
            parse_uri("awskms:///arn:aws:kms:eu-central-1:111122223333:key/1234abcd").expect("arn");
        assert_eq!(u.arn_region.as_deref(), Some("eu-central-1"));
        for bad in [
            "awskms://",
            "awskms://noslash",
            "awskms:///",
            "awskms://h/key with space",
            "awskms://user:pw@host/key",
            "awskms:///arn:aws:s3:::bucket",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn region_and_endpoint_resolution() {
        let env = Environment::fixed([("AWS_REGION", "eu-west-1")]);
        assert_eq!(resolve_region(&env, None).expect("env"), "eu-west-1");
        assert_eq!(
            resolve_region(&env, Some("us-east-2")).expect("arn wins"),
            "us-east-2"
        );
        assert!(resolve_region(&Environment::fixed::<&str, &str>([]), None).is_err());

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("config"),
            "[profile dev]\nregion = ap-south-1\n",
        )
        .expect("write");
        let env = Environment::fixed([
            (
                "AWS_CONFIG_FILE",
                dir.path().join("config").to_string_lossy().into_owned(),
            ),
            ("AWS_PROFILE", "dev".into()),
        ]);
        assert_eq!(
            resolve_region(&env, None).expect("config file"),
            "ap-south-1"
        );

        let none = Environment::fixed::<&str, &str>([]);
        assert_eq!(
            endpoint_url(None, &none, "eu-west-1")
                .expect("default")
                .as_str(),
            "https://kms.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            endpoint_url(Some("kms.internal:8443"), &none, "x")
                .expect("uri")
                .as_str(),
            "https://kms.internal:8443/"
        );
        let local = Environment::fixed([("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]);
        assert_eq!(
            endpoint_url(None, &local, "x").expect("env").as_str(),
            "http://127.0.0.1:5000/"
        );
    }

    #[test]
    fn credentials_from_env_then_shared_file() {
        let env = Environment::fixed([
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
        ]);
        let c = load_credentials(&env).expect("env");
        assert_eq!(c.access_key_id, "AKIAENV");
        assert!(!format!("{c:?}").contains("envsecret"));

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = defsecret\n[ci]\naws_access_key_id=AKIACI\naws_secret_access_key=cisecret\naws_session_token=citoken\n",
        )
        .expect("write");
        let path = file.to_string_lossy().into_owned();
        let c = load_credentials(&Environment::fixed([(
            "AWS_SHARED_CREDENTIALS_FILE",
            path.clone(),
        )]))
        .expect("file");
        assert_eq!(c.access_key_id, "AKIADEF");
        let c = load_credentials(&Environment::fixed([
            ("AWS_SHARED_CREDENTIALS_FILE", path.clone()),
            ("AWS_PROFILE", "ci".into()),
        ]))
        .expect("profile");
        assert_eq!(c.access_key_id, "AKIACI");
        assert!(c.session_token.is_some());
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("cisecret") && !debug.contains("citoken"),
            "{debug}"
        );

        let e = load_credentials(&Environment::fixed([
            ("AWS_SHARED_CREDENTIALS_FILE", path),
            ("AWS_PROFILE", "nope".into()),
        ]))
        .expect_err("missing profile");
        assert!(e.contains("[nope]"), "{e}");
        assert!(load_credentials(&Environment::fixed::<&str, &str>([])).is_err());
    }

    #[test]
    fn error_classification() {
        assert!(matches!(
            classify(400, "ThrottlingException", "Rate exceeded"),
            KmsErrorKind::Throttled(_)
        ));
        assert!(matches!(
            classify(400, "com.amazonaws.kms#NotFoundException", "x"),
            KmsErrorKind::NotFound(_)
        ));
        assert!(matches!(
            classify(400, "AccessDeniedException", ""),
            KmsErrorKind::PermissionDenied(_)
        ));
        assert!(matches!(
            classify(500, "KMSInternalException", ""),
            KmsErrorKind::Unavailable(_)
        ));
        assert!(matches!(
            classify(503, "", "HTTP 503"),
            KmsErrorKind::Unavailable(_)
        ));
        assert!(matches!(
            classify(429, "", "HTTP 429"),
            KmsErrorKind::Throttled(_)
        ));
        assert!(matches!(
            classify(400, "ValidationException", ""),
            KmsErrorKind::Failed(_)
        ));
        assert!(matches!(
            classify(400, "InvalidKeyUsageException", ""),
            KmsErrorKind::WrongKeyType(_)
        ));
    }

    #[test]
    fn raw_up_to_4096_bytes_then_digest() {
        assert_eq!(sign_message(&[1; 4096]).1, "RAW");
        let (message, kind) = sign_message(&[1; 4097]);
        assert_eq!(kind, "DIGEST");
        assert_eq!(B64.decode(message).expect("b64").len(), 32);
    }

    #[test]
    fn key_checks() {
        let meta = |spec: &str, usage: &str, algs: &[&str]| KeyMetadata {
            key_id: "k".into(),
            key_usage: Some(usage.into()),
            key_spec: Some(spec.into()),
            customer_master_key_spec: None,
            key_state: Some("Enabled".into()),
            signing_algorithms: Some(algs.iter().map(|s| (*s).to_owned()).collect()),
        };
        assert_eq!(
            check_key(&meta(
                "RSA_2048",
                "SIGN_VERIFY",
                &["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"]
            )),
            Ok(SignatureAlgorithm::RsaPkcs1Sha256)
        );
        assert!(matches!(
            check_key(&meta("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", &[])),
            Err(KmsErrorKind::WrongKeyType(_))
        ));
        assert!(matches!(
            check_key(&meta("RSA_2048", "ENCRYPT_DECRYPT", &[])),
            Err(KmsErrorKind::WrongKeyType(_))
        ));
        assert!(matches!(
            check_key(&meta("ECC_NIST_P256", "SIGN_VERIFY", &["ECDSA_SHA_256"])),
            Err(KmsErrorKind::WrongKeyType(_))
        ));
        let mut disabled = meta("RSA_3072", "SIGN_VERIFY", &[]);
        disabled.key_state = Some("Disabled".into());
        assert!(matches!(check_key(&disabled), Err(KmsErrorKind::Failed(_))));
    }

    #[test]
    fn key_picker_reasons() {
        let meta = |spec: Option<&str>, usage: &str, state: &str| KeyMetadata {
            key_id: "k".into(),
            key_usage: Some(usage.into()),
            key_spec: spec.map(str::to_owned),
            customer_master_key_spec: Some("SYMMETRIC_DEFAULT".into()),
            key_state: Some(state.into()),
            signing_algorithms: None,
        };
        let reason = |m: KeyMetadata| key_problem(&m).err().map(|p| p.short());
        assert_eq!(
            reason(meta(Some("RSA_4096"), "SIGN_VERIFY", "Enabled")),
            None
        );
        assert_eq!(
            reason(meta(Some("RSA_2048"), "ENCRYPT_DECRYPT", "Enabled")).as_deref(),
            Some("KeyUsage ENCRYPT_DECRYPT")
        );
        assert_eq!(
            reason(meta(Some("ECC_NIST_P256"), "SIGN_VERIFY", "Enabled")).as_deref(),
            Some("KeySpec ECC_NIST_P256 is not RSA")
        );
        assert_eq!(
            reason(meta(Some("RSA_2048"), "SIGN_VERIFY", "Disabled")).as_deref(),
            Some("KeyState Disabled")
        );
        // An older answer names the spec only as CustomerMasterKeySpec.
        assert_eq!(
            reason(meta(None, "ENCRYPT_DECRYPT", "Enabled")).as_deref(),
            Some("symmetric key")
        );
        let mut ecdsa_only = meta(Some("RSA_2048"), "SIGN_VERIFY", "Enabled");
        ecdsa_only.signing_algorithms = Some(vec!["RSASSA_PKCS1_V1_5_SHA_512".into()]);
        assert!(reason(ecdsa_only).is_some_and(|r| r.contains("RSASSA_PKCS1_V1_5_SHA_512")));
    }
}
