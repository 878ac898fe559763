//! How the client reaches registries: which hosts speak plain HTTP, which credentials go to
//! which host, and how long one operation may take.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::error::RegistryError;

/// The longest one registry operation may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The loopback networks, for [`RegistryConfig::allow_loopback`].
pub const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// Settings for [`crate::RegistryClient`].
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Hosts (`host` or `host:port`) reached over plain HTTP. Loopback hosts
    /// (127.0.0.0/8, ::1, localhost) always are, as docker does.
    pub insecure_registries: Vec<String>,
    /// Destinations allowed although not public: host names, IP addresses or CIDRs.
    /// Loopback, link-local, RFC 1918, CGNAT and ULA addresses are refused unless listed
    /// (see [`crate::policy`]).
    pub allowed_hosts: Vec<String>,
    /// Hosts (`host` or `host:port`) registries may redirect to besides themselves: their
    /// blob storage (S3, GCS). Redirects to any other host are not followed.
    pub redirect_hosts: Vec<String>,
    /// Credentials from signet's own config; they win over a docker config.json.
    pub credentials: Vec<RegistryCredential>,
    /// A docker `config.json`. `None` means `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`, if present.
    pub docker_config: Option<PathBuf>,
    /// The longest one operation (resolve, manifest, publish or fetch, retries included)
    /// may take; also bounds connecting and each read.
    pub timeout: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            allowed_hosts: Vec::new(),
            redirect_hosts: Vec::new(),
            credentials: Vec::new(),
            docker_config: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl RegistryConfig {
    /// Loopback destinations allowed besides what `allowed_hosts` lists: for programs that
    /// run on the machine of the person using them (`signet up`, `signet verify`) and for
    /// tests against registries on loopback. Services never call this.
    pub fn allow_loopback(mut self) -> Self {
        for net in LOOPBACK {
            if !self.allowed_hosts.iter().any(|h| h == net) {
                self.allowed_hosts.push(net.to_owned());
            }
        }
        self
    }

    /// The defaults, with loopback registries allowed (tests, load tests).
    pub fn for_loopback() -> Self {
        Self::default().allow_loopback()
    }
}

/// Credentials for one registry host.
#[derive(Debug, Clone)]
pub struct RegistryCredential {
    /// `host` or `host:port`; `https://` prefixes and `docker.io` aliases are accepted.
    pub host: String,
    pub auth: Credential,
    /// Token services (`host` or `host:port`) besides the registry's own host that may
    /// receive these credentials when the registry asks for a bearer token. Docker Hub's
    /// `auth.docker.io` is always allowed for `docker.io`.
    pub realm_hosts: Vec<String>,
}

/// A secret for a registry. `Debug` never shows the secret.
#[derive(Clone)]
pub enum Credential {
    /// Username and password (or access token used as a password). Sent as HTTP basic
    /// auth, or to the registry's token service when it asks for bearer tokens.
    Basic(String, SecretString),
    /// A ready-made bearer token, sent as is.
    Bearer(SecretString),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic(user, _) => f
                .debug_tuple("Basic")
                .field(user)
                .field(&"<redacted>")
                .finish(),
            Self::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
        }
    }
}

impl RegistryCredential {
    pub fn basic(
        host: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            auth: Credential::Basic(user.into(), SecretString::from(password.into())),
            realm_hosts: Vec::new(),
        }
    }

    pub fn bearer(host: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            auth: Credential::Bearer(SecretString::from(token.into())),
            realm_hosts: Vec::new(),
        }
    }

    /// Token services on other hosts that may receive this credential.
    pub fn with_realm_hosts(mut self, hosts: Vec<String>) -> Self {
        self.realm_hosts = hosts;
        self
    }
}

/// A docker `config.json`, read once when the client is built; credentials are looked up
/// per host on first use.
#[derive(Clone)]
pub(crate) struct DockerConfig {
    pub(crate) path: PathBuf,
    /// It holds credentials: wiped when the last client using it is dropped.
    bytes: std::sync::Arc<zeroize::Zeroizing<Vec<u8>>>,
    /// Registries the file has an entry for (`auths` or `credHelpers`), normalized. Only
    /// these are looked up, so an image naming a new host never runs the `credsStore`
    /// helper for it.
    hosts: std::sync::Arc<[String]>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DockerConfig {
    /// Loads the configured file (which must exist), or the default one if present.
    pub(crate) fn load(explicit: Option<&PathBuf>) -> Result<Option<Self>, RegistryError> {
        let path = match explicit {
            Some(p) => p.clone(),
            None => match default_docker_config() {
                Some(p) if p.is_file() => p,
                _ => return Ok(None),
            },
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            RegistryError::Config(format!(
                "cannot read docker config {}: {e}; fix the path or remove the setting",
                path.display()
            ))
        })?;
        // Validate now so that a broken file is reported at start, not on first push.
        let json = serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
            RegistryError::Config(format!(
                "docker config {} is not valid JSON: {e}",
                path.display()
            ))
        })?;
        let hosts: Vec<String> = ["auths", "credHelpers"]
            .iter()
            .filter_map(|k| json.get(k).and_then(|v| v.as_object()))
            .flat_map(|entries| entries.keys().map(|h| normalize_host(h)))
            .collect();
        Ok(Some(Self {
            path,
            bytes: std::sync::Arc::new(zeroize::Zeroizing::new(bytes)),
            hosts: hosts.into(),
        }))
    }

    /// The credential for `registry`, running a credential helper if the file names one.
    /// Blocking (helpers are processes): call from `spawn_blocking`.
    pub(crate) fn lookup(&self, registry: &str) -> Option<Credential> {
        use docker_credential::{CredentialRetrievalError as E, DockerCredential};
        if !self.hosts.contains(&normalize_host(registry)) {
            return None;
        }
        // docker keys Docker Hub, and asks helpers about it, by its v1 index URL.
        let server = if registry == signet_core::reference::DEFAULT_REGISTRY {
            "https://index.docker.io/v1/"
        } else {
            registry
        };
        match docker_credential::get_credential_from_reader(&self.bytes[..], server) {
            Ok(DockerCredential::UsernamePassword(user, password)) => {
                Some(Credential::Basic(user, SecretString::from(password)))
            }
            Ok(DockerCredential::IdentityToken(_)) => {
                tracing::warn!(
                    registry,
                    config = %self.path.display(),
                    "docker config holds an identity token (OAuth refresh token) for this registry, \
                     which signet cannot exchange; using anonymous access. Configure a username and \
                     password or token in signet's registry credentials instead"
                );
                None
            }
            Err(E::NoCredentialConfigured) => None,
            Err(E::HelperFailure { helper, .. }) => {
                // The helper's output is not logged: it may contain secrets.
                tracing::warn!(
                    registry,
                    helper,
                    "docker credential helper failed; using anonymous access"
                );
                None
            }
            Err(e) => {
                tracing::warn!(registry, config = %self.path.display(), error = %e,
                    "cannot read a credential from the docker config; using anonymous access");
                None
            }
        }
    }
}

fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// Reduces `https://host:port/v1/`, `index.docker.io` and friends to the registry name an
/// [`signet_core::ImageRef`] carries (`host:port`, `docker.io`).
pub(crate) fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix("https://")
        .or_else(|| h.strip_prefix("http://"))
        .unwrap_or(h);
    let h = h.split('/').next().unwrap_or(h).to_ascii_lowercase();
    match h.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            signet_core::reference::DEFAULT_REGISTRY.to_owned()
        }
        _ => h,
    }
}

/// The host of `host[:port]`, without brackets.
pub(crate) fn host_part(registry: &str) -> &str {
    split_port(registry).0
}

/// Splits `host[:port]` (`[::1]:5000` → (`::1`, Some(`5000`))).
fn split_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match registry.rsplit_once(':') {
        // More than one ':' without brackets is a bare IPv6 address, not host:port.
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            (h, Some(port))
        }
        _ => (registry, None),
    }
}

/// Plain HTTP for loopback hosts, as docker does, and for configured insecure registries
/// (an entry without a port covers every port of that host).
pub(crate) fn uses_plain_http(registry: &str, insecure: &[String]) -> bool {
    let (host, port) = split_port(registry);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || insecure.iter().any(|entry| {
            let entry = normalize_host(entry);
            let (eh, ep) = split_port(&entry);
            eh.eq_ignore_ascii_case(host) && (ep.is_none() || ep == port)
        })
}

/// The host that API URLs use: Docker Hub serves the v2 API under `index.docker.io`
/// (the same mapping oci-client applies).
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == signet_core::reference::DEFAULT_REGISTRY {
        "index.docker.io"
    } else {
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn loopback_and_insecure_hosts_use_plain_http() {
        let none: Vec<String> = Vec::new();
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "::1",
        ] {
            assert!(uses_plain_http(h, &none), "{h}");
        }
        for h in [
            "ghcr.io",
            "registry.example.com:5000",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
        ] {
            assert!(!uses_plain_http(h, &none), "{h}");
        }
        let insecure = vec![
            "registry.lan:5000".to_owned(),
            "https://mirror.lan".to_owned(),
        ];
        assert!(uses_plain_http("registry.lan:5000", &insecure));
        assert!(
            !uses_plain_http("registry.lan:6000", &insecure),
            "port must match when given"
        );
        assert!(uses_plain_http("mirror.lan", &insecure));
        assert!(
            uses_plain_http("mirror.lan:8080", &insecure),
            "a bare host covers every port"
        );
    }

    #[test]
    fn hosts_normalize_like_image_references() {
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_host("Ghcr.io"), "ghcr.io");
        assert_eq!(normalize_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(api_host("docker.io"), "index.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = RegistryCredential::basic("ghcr.io", "bot", "hunter2");
        let t = RegistryCredential::bearer("ghcr.io", "tok-123");
        let s = format!("{c:?} {t:?}");
        assert!(!s.contains("hunter2") && !s.contains("tok-123"), "{s}");
        assert!(s.contains("bot"));
    }

    #[test]
    fn docker_config_auth_and_username_password() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw1");
        let json = serde_json::json!({
            "auths": {
                "127.0.0.1:5000": { "auth": auth },
                "https://index.docker.io/v1/": { "username": "bob", "password": "pw2" },
            }
        });
        std::fs::write(&path, json.to_string()).expect("write");
        let cfg = DockerConfig::load(Some(&path))
            .expect("load")
            .expect("present");
        match cfg.lookup("127.0.0.1:5000") {
            Some(Credential::Basic(u, p)) => {
                assert_eq!(u, "alice");
                assert_eq!(p.expose_secret(), "pw1");
            }
            other => panic!("unexpected {other:?}"),
        }
        match cfg.lookup("docker.io") {
            Some(Credential::Basic(u, p)) => {
                assert_eq!(u, "bob");
                assert_eq!(p.expose_secret(), "pw2");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(cfg.lookup("ghcr.io").is_none());
    }

    #[test]
    fn broken_or_missing_docker_config_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let err = DockerConfig::load(Some(&path)).expect_err("missing file");
        assert!(matches!(err, RegistryError::Config(_)), "{err}");
        std::fs::write(&path, "{not json").expect("write");
        let err = DockerConfig::load(Some(&path)).expect_err("bad json");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }
}
