//! `hashivault://KEY`: HashiCorp Vault or OpenBao transit keys.
//!
//! Settings: `VAULT_ADDR` (required), `VAULT_NAMESPACE`, `TRANSIT_SECRET_ENGINE_PATH`
//! (the transit mount, `transit` by default, as in cosign), and how signet gets a token,
//! `SIGNET_VAULT_AUTH`:
//! - `token` (the default): `VAULT_TOKEN`, or a token file (`SIGNET_VAULT_TOKEN_FILE`,
//!   else `~/.vault-token`, re-read on every call so an agent can renew it);
//! - `approle`: logs in with `SIGNET_VAULT_ROLE_ID` and the secret id in
//!   `SIGNET_VAULT_SECRET_ID_FILE` (or `SIGNET_VAULT_SECRET_ID`);
//! - `kubernetes`: logs in as role `SIGNET_VAULT_ROLE` with the Pod's service account
//!   token (`SIGNET_VAULT_KUBERNETES_TOKEN_FILE`, default the projected token), which
//!   Vault checks with the API server's TokenReview.
//!
//! A login's token is kept until a quarter of its lease before it ends, then signet logs
//! in again (re-reading the files, which kubelet rotates); a token Vault refuses earlier
//! is dropped and the call is retried once with a new login. `SIGNET_VAULT_AUTH_MOUNT`
//! names the auth mount when it is not the method's name. Signing is prehashed SHA-256, as cosign does, with
//! the version pinned; versions and public keys come from `GET transit/keys/KEY`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use signet_core::{PublicKey, SignatureAlgorithm};

use crate::discover::{algorithm_name, message, KeyListing};
use crate::env::Environment;
use crate::error::{KmsError, KmsErrorKind};
use crate::http::{snippet, status_text, transport_error};
use crate::refresh::{Expiring, Refreshing};
use crate::{KeyDescription, KeyProvider, KeyVersionInfo};

const PROVIDER: &str = "hashivault";

const RSA_TYPES: [&str; 3] = ["rsa-2048", "rsa-3072", "rsa-4096"];

fn valid_segment(s: &str, allow_slash: bool) -> bool {
    !s.is_empty()
        && !s.split('/').any(|p| p.is_empty() || p == "." || p == "..")
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.')
                || (allow_slash && b == b'/')
        })
}

/// The key name from `hashivault://KEY`.
pub(crate) fn parse_uri(uri: &str) -> Result<String, String> {
    let key = uri
        .strip_prefix("hashivault://")
        .ok_or("Vault key URIs start with hashivault://")?;
    if !valid_segment(key, false) {
        return Err(format!(
            "{key:?} is not a transit key name (letters, digits, '-', '_', '.'): expected hashivault://KEY"
        ));
    }
    Ok(key.to_owned())
}

enum Token {
    Fixed(SecretString),
    File(PathBuf),
}

/// The projected service account token kubelet mounts into every Pod.
pub const KUBERNETES_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// A Vault auth method signet logs in with.
enum Login {
    AppRole { role_id: String, secret_id: Secret },
    Kubernetes { role: String, jwt: PathBuf },
}

/// A secret given inline or as a file re-read on every login (a mounted Secret changes
/// without a restart).
enum Secret {
    Inline(SecretString),
    File(PathBuf),
}

impl Secret {
    async fn read(&self) -> Result<SecretString, String> {
        match self {
            Self::Inline(s) => Ok(s.clone()),
            Self::File(path) => read_secret_file(path).await,
        }
    }
}

async fn read_secret_file(path: &std::path::Path) -> Result<SecretString, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(text.to_owned()))
}

/// How the provider authenticates.
enum Auth {
    Token(Token),
    Login {
        method: Login,
        /// `<VAULT_ADDR>/v1/auth/<mount>/login`.
        url: url::Url,
        token: Box<Refreshing<SecretString>>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(t) => t.fmt(f),
            Self::Login { method, url, .. } => {
                let name = match method {
                    Login::AppRole { .. } => "approle",
                    Login::Kubernetes { .. } => "kubernetes",
                };
                write!(f, "Login({name} at {url})")
            }
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(_) => f.write_str("Token(<redacted>)"),
            Self::File(p) => write!(f, "TokenFile({})", p.display()),
        }
    }
}

/// The auth method `SIGNET_VAULT_AUTH` names, with its settings; `addr` is `VAULT_ADDR`.
fn auth_from_env(env: &Environment, addr: &str) -> Result<Auth, String> {
    let method = env
        .get("SIGNET_VAULT_AUTH")
        .unwrap_or_else(|| "token".to_owned())
        .to_ascii_lowercase();
    let login = match method.as_str() {
        "token" => {
            return match env.get("VAULT_TOKEN") {
                Some(t) => Ok(Auth::Token(Token::Fixed(SecretString::from(
                    t.trim().to_owned(),
                )))),
                None => env
                    .get("SIGNET_VAULT_TOKEN_FILE")
                    .map(PathBuf::from)
                    .or_else(|| env.home().map(|h| h.join(".vault-token")))
                    .filter(|p| p.is_file())
                    .map(|p| Auth::Token(Token::File(p)))
                    .ok_or_else(|| {
                        "no Vault token: set VAULT_TOKEN, or SIGNET_VAULT_TOKEN_FILE to a token file, or log in so ~/.vault-token exists; or log in with SIGNET_VAULT_AUTH=approle or kubernetes".to_owned()
                    }),
            };
        }
        "approle" => {
            let role_id = env.get("SIGNET_VAULT_ROLE_ID").ok_or(
                "SIGNET_VAULT_AUTH=approle needs SIGNET_VAULT_ROLE_ID (the AppRole's role id)",
            )?;
            let secret_id = match (
                env.get("SIGNET_VAULT_SECRET_ID_FILE"),
                env.get("SIGNET_VAULT_SECRET_ID"),
            ) {
                (Some(file), _) => Secret::File(PathBuf::from(file)),
                (None, Some(inline)) => Secret::Inline(SecretString::from(inline)),
                (None, None) => return Err("SIGNET_VAULT_AUTH=approle needs SIGNET_VAULT_SECRET_ID_FILE (a file holding the secret id) or SIGNET_VAULT_SECRET_ID".into()),
            };
            Login::AppRole {
                role_id: role_id.trim().to_owned(),
                secret_id,
            }
        }
        "kubernetes" => Login::Kubernetes {
            role: env.get("SIGNET_VAULT_ROLE").ok_or(
                "SIGNET_VAULT_AUTH=kubernetes needs SIGNET_VAULT_ROLE (the Vault role bound to this service account)",
            )?,
            jwt: env
                .get("SIGNET_VAULT_KUBERNETES_TOKEN_FILE")
                .unwrap_or_else(|| KUBERNETES_TOKEN_FILE.to_owned())
                .into(),
        },
        other => {
            return Err(format!(
                "SIGNET_VAULT_AUTH={other:?} is not an auth method signet knows: token, approle or kubernetes"
            ))
        }
    };
    let mount = env.get("SIGNET_VAULT_AUTH_MOUNT").unwrap_or(method);
    let mount = mount.trim_matches('/');
    if !valid_segment(mount, true) {
        return Err(format!(
            "SIGNET_VAULT_AUTH_MOUNT {mount:?} is not a mount path"
        ));
    }
    let url = url::Url::parse(&format!(
        "{}/v1/auth/{mount}/login",
        addr.trim_end_matches('/')
    ))
    .map_err(|e| format!("VAULT_ADDR {addr:?} is not a URL: {e}"))?;
    Ok(Auth::Login {
        method: login,
        url,
        token: Box::default(),
    })
}

pub(crate) struct VaultProvider {
    uri: String,
    key: String,
    /// `<VAULT_ADDR>/v1/<mount>/`.
    base: url::Url,
    namespace: Option<String>,
    auth: Auth,
    client: reqwest::Client,
}

impl VaultProvider {
    pub(crate) fn open(
        uri: &str,
        env: &Environment,
        client: reqwest::Client,
    ) -> Result<Self, KmsError> {
        let key = parse_uri(uri).map_err(|m| {
            KmsError::new(
                PROVIDER,
                crate::kms::redact_uri(uri),
                KmsErrorKind::InvalidUri(m),
            )
        })?;
        Self::connect(uri, key, env, client)
    }

    /// A provider for the transit mount as a whole, which lists its keys
    /// ([`crate::Kms::discover`]) with the address, namespace and auth keys use.
    pub(crate) fn for_mount(env: &Environment, client: reqwest::Client) -> Result<Self, KmsError> {
        Self::connect("hashivault://", String::new(), env, client)
    }

    fn connect(
        uri: &str,
        key: String,
        env: &Environment,
        client: reqwest::Client,
    ) -> Result<Self, KmsError> {
        let failed = |m: String| KmsError::new(PROVIDER, uri, KmsErrorKind::Failed(m));
        let addr = env
            .get("VAULT_ADDR")
            .ok_or_else(|| failed("VAULT_ADDR is not set; set it to the Vault or OpenBao address, e.g. https://vault.example:8200".into()))?;
        let mount = env
            .get("TRANSIT_SECRET_ENGINE_PATH")
            .unwrap_or_else(|| "transit".to_owned());
        let mount = mount.trim_matches('/');
        if !valid_segment(mount, true) {
            return Err(failed(format!(
                "TRANSIT_SECRET_ENGINE_PATH {mount:?} is not a mount path"
            )));
        }
        let base = url::Url::parse(&format!("{}/v1/{mount}/", addr.trim_end_matches('/')))
            .map_err(|e| failed(format!("VAULT_ADDR {addr:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(failed(format!(
                "VAULT_ADDR {addr:?} must be an http or https URL"
            )));
        }
        let auth = auth_from_env(env, &addr)
            .map_err(|m| KmsError::new(PROVIDER, uri, KmsErrorKind::PermissionDenied(m)))?;
        Ok(Self {
            uri: uri.to_owned(),
            key,
            base,
            namespace: env.get("VAULT_NAMESPACE"),
            auth,
            client,
        })
    }

    fn error(&self, kind: KmsErrorKind) -> KmsError {
        KmsError::new(PROVIDER, self.uri.as_str(), kind)
    }

    async fn token(&self) -> Result<SecretString, KmsError> {
        match &self.auth {
            Auth::Token(Token::Fixed(t)) => Ok(t.clone()),
            Auth::Token(Token::File(path)) => read_secret_file(path).await.map_err(|m| {
                self.error(KmsErrorKind::PermissionDenied(format!(
                    "cannot read the Vault token: {m}"
                )))
            }),
            Auth::Login { method, url, token } => token.get(|| self.login(method, url)).await,
        }
    }

    /// Logs in with an auth method; the token and when its lease ends.
    async fn login(
        &self,
        method: &Login,
        url: &url::Url,
    ) -> Result<Expiring<SecretString>, KmsError> {
        let denied = |m: String| self.error(KmsErrorKind::PermissionDenied(m));
        let (body, what) = match method {
            Login::AppRole { role_id, secret_id } => {
                let secret_id = secret_id
                    .read()
                    .await
                    .map_err(|m| denied(format!("cannot read the AppRole secret id: {m}")))?;
                (
                    json!({"role_id": role_id, "secret_id": secret_id.expose_secret()}),
                    format!("AppRole login (role id {role_id})"),
                )
            }
            Login::Kubernetes { role, jwt } => {
                let jwt = read_secret_file(jwt)
                    .await
                    .map_err(|m| denied(format!("cannot read the service account token: {m}")))?;
                (
                    json!({"role": role, "jwt": jwt.expose_secret()}),
                    format!("Kubernetes login (role {role})"),
                )
            }
        };
        let started = std::time::SystemTime::now();
        let data = self
            .send(reqwest::Method::POST, url.clone(), None, Some(body), "auth")
            .await
            .map_err(|e| {
                // Vault answers a wrong secret id or role with 400 or 403: either way the
                // login is refused, and retrying will not help until someone fixes it.
                let kind = match e.kind {
                    KmsErrorKind::PermissionDenied(m)
                    | KmsErrorKind::Failed(m)
                    | KmsErrorKind::NotFound(m) => {
                        KmsErrorKind::PermissionDenied(format!("{what} refused: {m}"))
                    }
                    other => other,
                };
                self.error(kind).with_request_id(e.request_id)
            })?;
        #[derive(Deserialize)]
        struct LoginAuth {
            client_token: String,
            #[serde(default)]
            lease_duration: u64,
        }
        let auth: LoginAuth = data
            .and_then(|d| serde_json::from_value(d).ok())
            .ok_or_else(|| {
                self.error(KmsErrorKind::Failed(format!(
                    "{what}: Vault's answer has no auth.client_token"
                )))
            })?;
        tracing::info!(login = %what, lease_seconds = auth.lease_duration, "logged in to Vault");
        Ok(Expiring {
            value: SecretString::from(auth.client_token),
            expires: (auth.lease_duration > 0)
                .then(|| started + std::time::Duration::from_secs(auth.lease_duration)),
        })
    }

    /// One transit call; `data` of the answer (or `None` for 204 No Content). A token
    /// from a login that Vault refuses is dropped, and the call retried once after a new
    /// login: the token was revoked, or its lease ended early by Vault's clock.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, KmsError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| self.error(KmsErrorKind::Failed(format!("cannot build the URL: {e}"))))?;
        let token = self.token().await?;
        let first = self
            .send(
                method.clone(),
                url.clone(),
                Some(&token),
                body.clone(),
                "data",
            )
            .await;
        match (&self.auth, first) {
            (Auth::Login { token: cache, .. }, Err(e))
                if matches!(e.kind, KmsErrorKind::PermissionDenied(_)) =>
            {
                tracing::warn!(error = %e, "Vault refused the token from the last login; logging in again");
                cache.invalidate().await;
                let token = self.token().await?;
                self.send(method, url, Some(&token), body, "data").await
            }
            (_, result) => result,
        }
    }

    /// One request; the answer's `field` (`data`, or `auth` for a login).
    async fn send(
        &self,
        method: reqwest::Method,
        url: url::Url,
        token: Option<&SecretString>,
        body: Option<serde_json::Value>,
        field: &str,
    ) -> Result<Option<serde_json::Value>, KmsError> {
        let is_list = method.as_str() == "LIST";
        let mut request = self
            .client
            .request(method, url)
            .header("X-Vault-Request", "true");
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(PROVIDER, &self.uri, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(PROVIDER, &self.uri, &e))?;
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        #[derive(Deserialize, Default)]
        struct Envelope {
            #[serde(default)]
            request_id: Option<String>,
            #[serde(default)]
            data: Option<serde_json::Value>,
            #[serde(default)]
            auth: Option<serde_json::Value>,
            #[serde(default)]
            errors: Vec<String>,
        }
        let envelope: Envelope = serde_json::from_slice(&bytes).unwrap_or_default();
        let request_id = envelope.request_id.filter(|r| !r.is_empty());
        // Vault answers a LIST of an empty path with 404 and no errors; a missing mount
        // has an error ("no handler for route").
        if is_list && status == reqwest::StatusCode::NOT_FOUND && envelope.errors.is_empty() {
            return Ok(None);
        }
        if status.is_success() {
            return Ok(if field == "auth" {
                envelope.auth
            } else {
                envelope.data
            });
        }
        let message = if envelope.errors.is_empty() {
            format!("HTTP {}: {}", status_text(status), snippet(&bytes))
        } else {
            envelope
                .errors
                .iter()
                .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("; ")
        };
        Err(self
            .error(classify(status.as_u16(), &message))
            .with_request_id(request_id))
    }

    async fn read_key(&self) -> Result<TransitKey, KmsError> {
        self.read_named(&self.key).await
    }

    async fn read_named(&self, name: &str) -> Result<TransitKey, KmsError> {
        let data = self
            .call(reqwest::Method::GET, &format!("keys/{name}"), None)
            .await?
            .ok_or_else(|| self.error(KmsErrorKind::Failed("Vault returned no key data".into())))?;
        serde_json::from_value(data).map_err(|e| {
            self.error(KmsErrorKind::Failed(format!(
                "unexpected transit key description: {e}"
            )))
        })
    }

    /// The names of the mount's keys (`LIST <mount>/keys`); none when it has no key yet.
    pub(crate) async fn list_key_names(&self) -> Result<Vec<String>, KmsError> {
        let method = reqwest::Method::from_bytes(b"LIST").map_err(|e| {
            self.error(KmsErrorKind::Failed(format!(
                "cannot build a LIST request: {e}"
            )))
        })?;
        let Some(data) = self.call(method, "keys", None).await? else {
            return Ok(Vec::new());
        };
        #[derive(Deserialize)]
        struct Listed {
            #[serde(default)]
            keys: Vec<String>,
        }
        let listed: Listed = serde_json::from_value(data).map_err(|e| {
            self.error(KmsErrorKind::Failed(format!(
                "unexpected answer to LIST keys: {e}"
            )))
        })?;
        Ok(listed.keys)
    }

    /// One key of the mount for the key picker: usable when `describe` would accept it.
    pub(crate) async fn list_entry(&self, name: &str) -> KeyListing {
        let uri = format!("hashivault://{name}");
        let listing = |algorithm, problem| {
            KeyListing::new(PROVIDER, uri.clone(), name.to_owned(), algorithm, problem)
        };
        // A name the URI syntax cannot carry is not read at all: it could not be opened.
        if let Err(m) = parse_uri(&uri) {
            return listing(None, Some(m));
        }
        match self.read_named(name).await {
            Ok(key) => listing(
                Some(algorithm_name(&key.key_type)),
                describe_transit(&key).err().map(|kind| {
                    type_problem(&key.key_type, key.supports_signing)
                        .unwrap_or_else(|| kind.to_string())
                }),
            ),
            Err(e) => listing(None, Some(format!("cannot read the key: {}", message(&e)))),
        }
    }
}

/// What a Vault status and its `errors` mean for signet.
pub(crate) fn classify(status: u16, message: &str) -> KmsErrorKind {
    let m = message.to_owned();
    // OpenBao answers 500 when asked to sign with a version newer than the latest one.
    if m.contains("higher than the latest key version") {
        return KmsErrorKind::NotFound(m);
    }
    match status {
        401 | 403 => KmsErrorKind::PermissionDenied(m),
        404 => KmsErrorKind::NotFound(if m.is_empty() || m.starts_with("HTTP") {
            "no such transit key (or the transit engine is not mounted at this path)".into()
        } else {
            m
        }),
        429 => KmsErrorKind::Throttled(m),
        412 | 500..=599 => KmsErrorKind::Unavailable(m),
        _ if m.contains("not found") => KmsErrorKind::NotFound(m),
        _ => KmsErrorKind::Failed(m),
    }
}

#[derive(Deserialize)]
struct TransitKey {
    #[serde(rename = "type")]
    key_type: String,
    #[serde(default)]
    supports_signing: bool,
    latest_version: u64,
    #[serde(default)]
    min_decryption_version: u64,
    keys: BTreeMap<String, serde_json::Value>,
}

/// Why signet cannot sign with a transit key of this type, in a few words for the key
/// picker; `None` when it can.
fn type_problem(key_type: &str, supports_signing: bool) -> Option<String> {
    const SYMMETRIC: [&str; 4] = ["aes", "chacha20", "xchacha20", "hmac"];
    if SYMMETRIC.iter().any(|p| key_type.starts_with(p)) {
        Some(format!("symmetric key ({key_type})"))
    } else if !RSA_TYPES.contains(&key_type) {
        Some(format!("type {key_type} is not RSA"))
    } else if !supports_signing {
        Some(format!("type {key_type} does not support signing here"))
    } else {
        None
    }
}

/// What `describe` returns for a transit key, or why signet cannot use it.
fn describe_transit(key: &TransitKey) -> Result<KeyDescription, KmsErrorKind> {
    let versions = versions(key)?;
    let primary = key.latest_version.to_string();
    if !versions.iter().any(|v| v.version == primary) {
        return Err(KmsErrorKind::Failed(format!(
            "the latest version {primary} is not among the key's versions"
        )));
    }
    Ok(KeyDescription {
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        versions,
        primary_version: primary,
    })
}

/// The versions and public keys of a transit key signet may use, oldest first.
fn versions(key: &TransitKey) -> Result<Vec<KeyVersionInfo>, KmsErrorKind> {
    if type_problem(&key.key_type, key.supports_signing).is_some() {
        return Err(KmsErrorKind::WrongKeyType(format!(
            "transit key type is {}; signet needs an RSA signing key (rsa-2048, rsa-3072 or rsa-4096)",
            key.key_type
        )));
    }
    let mut out: Vec<(u64, KeyVersionInfo)> = Vec::new();
    for (version, entry) in &key.keys {
        let Ok(n) = version.parse::<u64>() else {
            continue;
        };
        if n < key.min_decryption_version {
            continue;
        }
        let pem = entry
            .get("public_key")
            .and_then(|p| p.as_str())
            .ok_or_else(|| KmsErrorKind::Failed(format!("version {version} has no public key")))?;
        let public_key = PublicKey::parse(pem.as_bytes())
            .map_err(|e| KmsErrorKind::WrongKeyType(format!("version {version}: {e}")))?;
        out.push((
            n,
            KeyVersionInfo {
                version: n.to_string(),
                public_key,
            },
        ));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// The raw signature from `vault:v<N>:<base64>`, checking it was made by `version`.
pub(crate) fn parse_signature(text: &str, version: u64) -> Result<Vec<u8>, String> {
    let rest = text
        .strip_prefix("vault:v")
        .ok_or_else(|| format!("signature {text:?} does not start with vault:v"))?;
    let (made_by, b64) = rest
        .split_once(':')
        .ok_or_else(|| "signature lacks its version prefix".to_owned())?;
    if made_by != version.to_string() {
        return Err(format!(
            "asked for version {version} but Vault signed with version {made_by}"
        ));
    }
    B64.decode(b64)
        .map_err(|e| format!("signature is not base64: {e}"))
}

#[async_trait::async_trait]
impl KeyProvider for VaultProvider {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn describe(&self) -> Result<KeyDescription, KmsError> {
        let key = self.read_key().await?;
        describe_transit(&key).map_err(|k| self.error(k))
    }

    async fn sign(
        &self,
        key_version: &str,
        algorithm: SignatureAlgorithm,
        payload: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let version: u64 = key_version.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
            self.error(KmsErrorKind::NotFound(format!(
                "key version {key_version:?} does not exist: transit versions are numbers such as \"1\""
            )))
        })?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, payload);
        let signature_algorithm = match algorithm {
            SignatureAlgorithm::RsaPkcs1Sha256 => "pkcs1v15",
            SignatureAlgorithm::RsaPssSha256 => "pss",
            SignatureAlgorithm::EcdsaP256Sha256 => return Err(self
                .error(KmsErrorKind::Unsupported(
                "signet signs with RSA keys only; an ECDSA key belongs to a verify-only witness"
                    .into(),
            ))),
        };
        let data = self
            .call(
                reqwest::Method::POST,
                &format!("sign/{}/sha2-256", self.key),
                Some(json!({
                    "input": B64.encode(digest.as_ref()),
                    "prehashed": true,
                    "signature_algorithm": signature_algorithm,
                    "key_version": version,
                })),
            )
            .await?
            .ok_or_else(|| {
                self.error(KmsErrorKind::Failed("Vault returned no signature".into()))
            })?;
        let text = data
            .get("signature")
            .and_then(|s| s.as_str())
            .ok_or_else(|| {
                self.error(KmsErrorKind::Failed(
                    "Vault's answer has no signature".into(),
                ))
            })?;
        parse_signature(text, version).map_err(|m| self.error(KmsErrorKind::Failed(m)))
    }

    async fn rotate(&self) -> Result<String, KmsError> {
        // Check first: rotating a key signet cannot use would still change it.
        let before = self.read_key().await?;
        versions(&before).map_err(|k| self.error(k))?;
        self.call(
            reqwest::Method::POST,
            &format!("keys/{}/rotate", self.key),
            Some(json!({})),
        )
        .await?;
        let after = self.read_key().await?;
        if after.latest_version <= before.latest_version {
            return Err(self.error(KmsErrorKind::Failed(format!(
                "rotation left the latest version at {}",
                after.latest_version
            ))));
        }
        Ok(after.latest_version.to_string())
    }
}

impl fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProvider")
            .field("uri", &self.uri)
            .field("base", &self.base.as_str())
            .field("namespace", &self.namespace)
            .field("auth", &self.auth)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("hashivault://signet-prod").expect("ok"),
            "signet-prod"
        );
        for bad in [
            "hashivault://",
            "hashivault://a/b",
            "hashivault://..",
            "hashivault://a b",
            "hashivault://a?x",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures() {
        assert_eq!(parse_signature("vault:v2:AQID", 2).expect("ok"), [1, 2, 3]);
        assert!(parse_signature("vault:v1:AQID", 2).is_err());
        assert!(parse_signature("AQID", 2).is_err());
        assert!(parse_signature("vault:v2:!!", 2).is_err());
    }

    #[test]
    fn classification() {
        assert!(matches!(
            classify(403, "permission denied"),
            KmsErrorKind::PermissionDenied(_)
        ));
        assert!(matches!(classify(404, ""), KmsErrorKind::NotFound(_)));
        assert!(matches!(
            classify(400, "signing key not found"),
            KmsErrorKind::NotFound(_)
        ));
        assert!(matches!(
            classify(429, "rate limit quota exceeded"),
            KmsErrorKind::Throttled(_)
        ));
        assert!(matches!(
            classify(503, "Vault is sealed"),
            KmsErrorKind::Unavailable(_)
        ));
        assert!(matches!(
            classify(400, "invalid input"),
            KmsErrorKind::Failed(_)
        ));
        assert!(matches!(
            classify(500, "1 error occurred: * requested version for signing is higher than the latest key version"),
            KmsErrorKind::NotFound(_)
        ));
    }

    #[test]
    fn open_needs_address_and_token() {
        let client = reqwest::Client::new();
        let e = VaultProvider::open(
            "hashivault://k",
            &Environment::fixed([("VAULT_TOKEN", "t")]),
            client.clone(),
        )
        .expect_err("no address");
        assert!(e.to_string().contains("VAULT_ADDR"), "{e}");
        let e = VaultProvider::open(
            "hashivault://k",
            &Environment::fixed([
                ("VAULT_ADDR", "http://127.0.0.1:8200"),
                ("HOME", "/nonexistent"),
            ]),
            client.clone(),
        )
        .expect_err("no token");
        assert!(matches!(e.kind, KmsErrorKind::PermissionDenied(_)), "{e}");

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".vault-token"), "s.filetoken\n").expect("write");
        let p = VaultProvider::open(
            "hashivault://k",
            &Environment::fixed([
                ("VAULT_ADDR", "http://127.0.0.1:8200/".to_owned()),
                ("HOME", dir.path().to_string_lossy().into_owned()),
                ("TRANSIT_SECRET_ENGINE_PATH", "/team/transit/".to_owned()),
            ]),
            client,
        )
        .expect("token file");
        assert_eq!(p.base.as_str(), "http://127.0.0.1:8200/v1/team/transit/");
        assert!(!format!("{p:?}").contains("filetoken"));
    }

    #[test]
    fn login_methods_say_what_they_lack() {
        let addr = "http://127.0.0.1:8200";
        let err = |vars: &[(&str, &str)]| match auth_from_env(
            &Environment::fixed(vars.iter().copied()),
            addr,
        ) {
            Ok(a) => panic!("expected an error, got {a:?}"),
            Err(m) => m,
        };
        assert!(err(&[("SIGNET_VAULT_AUTH", "approle")]).contains("SIGNET_VAULT_ROLE_ID"));
        assert!(err(&[
            ("SIGNET_VAULT_AUTH", "approle"),
            ("SIGNET_VAULT_ROLE_ID", "r")
        ])
        .contains("SIGNET_VAULT_SECRET_ID_FILE"));
        assert!(err(&[("SIGNET_VAULT_AUTH", "kubernetes")]).contains("SIGNET_VAULT_ROLE"));
        assert!(err(&[("SIGNET_VAULT_AUTH", "ldap")]).contains("approle or kubernetes"));
        assert!(err(&[
            ("SIGNET_VAULT_AUTH", "kubernetes"),
            ("SIGNET_VAULT_ROLE", "signer"),
            ("SIGNET_VAULT_AUTH_MOUNT", "../sys"),
        ])
        .contains("not a mount path"));

        let auth = auth_from_env(
            &Environment::fixed([
                ("SIGNET_VAULT_AUTH", "Kubernetes"),
                ("SIGNET_VAULT_ROLE", "signer"),
                ("SIGNET_VAULT_AUTH_MOUNT", "/k8s/prod/"),
            ]),
            addr,
        )
        .expect("kubernetes");
        let Auth::Login {
            method: Login::Kubernetes { jwt, .. },
            url,
            ..
        } = &auth
        else {
            panic!("{auth:?}");
        };
        assert_eq!(jwt.to_str(), Some(KUBERNETES_TOKEN_FILE));
        assert_eq!(url.as_str(), "http://127.0.0.1:8200/v1/auth/k8s/prod/login");

        let auth = auth_from_env(
            &Environment::fixed([
                ("SIGNET_VAULT_AUTH", "approle"),
                ("SIGNET_VAULT_ROLE_ID", "role-1"),
                ("SIGNET_VAULT_SECRET_ID", "s3cr3t-id"),
            ]),
            addr,
        )
        .expect("approle");
        let debug = format!("{auth:?}");
        assert_eq!(
            debug,
            "Login(approle at http://127.0.0.1:8200/v1/auth/approle/login)"
        );
    }

    #[test]
    fn key_picker_reasons() {
        assert_eq!(type_problem("rsa-2048", true), None);
        assert_eq!(type_problem("rsa-4096", true), None);
        assert_eq!(
            type_problem("aes256-gcm96", false).as_deref(),
            Some("symmetric key (aes256-gcm96)")
        );
        assert_eq!(
            type_problem("hmac", false).as_deref(),
            Some("symmetric key (hmac)")
        );
        assert_eq!(
            type_problem("ecdsa-p256", true).as_deref(),
            Some("type ecdsa-p256 is not RSA")
        );
        assert_eq!(
            type_problem("ed25519", true).as_deref(),
            Some("type ed25519 is not RSA")
        );
        assert!(type_problem("rsa-2048", false).is_some());
    }
}
