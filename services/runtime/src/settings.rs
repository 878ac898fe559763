//! signet's settings: one file (and `SIGNET_*` variables) for every service, with a
//! section per service. Each binary reads the shared keys and its own section, so one
//! ConfigMap or one `signet.toml` configures a whole deployment.
//!
//! Environment examples: `SIGNET_BUS=nats://127.0.0.1:4222`, `SIGNET_STORE=postgres://…`,
//! `SIGNET_SIGNER__CONCURRENCY=32`, `SIGNET_GATEWAY__LISTEN=0.0.0.0:7700`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{check_socket_addr, Validate};
use crate::logging::LogFormat;

/// Every setting of every signet service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the embedded store, the local development KMS keys and the first admin
    /// token live.
    pub data_dir: PathBuf,
    /// Store URL: `sqlite://PATH` or `postgres://…`. Default: SQLite in `data_dir`.
    pub store: Option<String>,
    /// Bus: `embedded`, `amqp://…` or `nats://…`.
    pub bus: String,
    pub log: LogSettings,
    pub kms: KmsSettings,
    pub registry: RegistrySettings,
    pub gateway: GatewaySettings,
    pub signer: SignerSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `auto` (JSON unless on a terminal), `json` or `text`.
    pub format: LogFormat,
    /// A level (`info`) or a filter (`info,signet_signer=debug`).
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KmsSettings {
    /// Time limit for one KMS call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Time limit for one registry request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Registries reached over plain HTTP besides loopback ones (`host:port`).
    pub insecure: Vec<String>,
    /// A docker `config.json` with registry credentials. Default:
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` when present.
    pub docker_config: Option<PathBuf>,
    /// Credentials per registry host; secrets come from files.
    pub credentials: Vec<RegistryCredentialSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentialSettings {
    pub host: String,
    /// With `password_file`: basic auth (or a docker token service login).
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A registry bearer token, instead of username and password.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// API and webhook listener.
    pub listen: String,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// Longest `POST /v1/sign?wait=SECONDS` may wait.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerSettings {
    /// Jobs signed at once (and the broker prefetch).
    pub concurrency: usize,
    /// Attempts before a job that keeps failing goes to the dead letters.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Largest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// KMS sign calls per second per witness, to stay under the KMS quota
    /// (AWS: 1,000/s per account for RSA; Alibaba: 200-750/s).
    pub kms_rate_per_witness: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            store: None,
            bus: "embedded".into(),
            log: LogSettings::default(),
            kms: KmsSettings::default(),
            registry: RegistrySettings::default(),
            gateway: GatewaySettings::default(),
            signer: SignerSettings::default(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

impl Default for KmsSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
        }
    }
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            insecure: Vec::new(),
            docker_config: None,
            credentials: Vec::new(),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7700".into(),
            body_limit_bytes: 1024 * 1024,
            max_wait: Duration::from_secs(120),
        }
    }
}

impl Default for SignerSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_attempts: 10,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(300),
            kms_rate_per_witness: 500,
        }
    }
}

/// `$XDG_DATA_HOME/signet`, else `~/.local/share/signet`, else `/var/lib/signet`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("signet");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Path::new(&home).join(".local/share/signet"),
        None => PathBuf::from("/var/lib/signet"),
    }
}

impl Settings {
    /// The store URL, defaulting to SQLite in the data dir.
    pub fn store_url(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("signet.db").display()))
    }

    /// The file the first admin token is written to by `signet up`.
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }
}

impl Validate for Settings {
    fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(store) = &self.store {
            if !(store.starts_with("sqlite:")
                || store.starts_with("postgres://")
                || store.starts_with("postgresql://"))
            {
                p.push(format!(
                    "store: {:?} is not a store URL; use sqlite://PATH or postgres://USER@HOST/DB",
                    redact_url(store)
                ));
            }
        }
        if !(self.bus == "embedded"
            || self.bus.starts_with("amqp://")
            || self.bus.starts_with("amqps://")
            || self.bus.starts_with("nats://"))
        {
            p.push(format!(
                "bus: {:?} is not a bus; use embedded, amqp://HOST:5672 or nats://HOST:4222",
                redact_url(&self.bus)
            ));
        }
        if self.log.level.trim().is_empty() {
            p.push("log.level: must not be empty (e.g. info)".into());
        }
        if self.kms.timeout.is_zero() {
            p.push("kms.timeout: must be more than 0s".into());
        }
        if self.registry.timeout.is_zero() {
            p.push("registry.timeout: must be more than 0s".into());
        }
        for (i, c) in self.registry.credentials.iter().enumerate() {
            let basic = c.username.is_some() || c.password_file.is_some();
            if c.host.is_empty() {
                p.push(format!("registry.credentials[{i}].host: must be set"));
            }
            if basic && c.token_file.is_some() {
                p.push(format!(
                    "registry.credentials[{i}]: set either username+password_file or token_file, not both"
                ));
            }
            if basic && (c.username.is_none() || c.password_file.is_none()) {
                p.push(format!(
                    "registry.credentials[{i}]: username and password_file go together"
                ));
            }
            if !basic && c.token_file.is_none() {
                p.push(format!(
                    "registry.credentials[{i}]: set username+password_file or token_file"
                ));
            }
        }
        check_socket_addr(&mut p, "gateway.listen", &self.gateway.listen);
        if self.gateway.body_limit_bytes < 1024 {
            p.push("gateway.body_limit_bytes: must be at least 1024".into());
        }
        if self.signer.concurrency == 0 {
            p.push("signer.concurrency: must be at least 1".into());
        }
        if self.signer.max_attempts == 0 {
            p.push("signer.max_attempts: must be at least 1".into());
        }
        if self.signer.retry_base.is_zero() || self.signer.retry_base > self.signer.retry_max {
            p.push("signer.retry_base: must be more than 0s and at most signer.retry_max".into());
        }
        if self.signer.kms_rate_per_witness == 0 {
            p.push("signer.kms_rate_per_witness: must be at least 1".into());
        }
        p
    }
}

/// Hides a password in a URL before it goes into a message.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::default();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        assert!(s.store_url().starts_with("sqlite://"));
        assert!(s.store_url().ends_with("signet.db"));
    }

    #[test]
    fn every_problem_is_reported() {
        let mut s = Settings::default();
        s.bus = "kafka://x".into();
        s.store = Some("mysql://u:secret@h/db".into());
        s.signer.concurrency = 0;
        s.gateway.listen = "nope".into();
        let p = s.validate();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().all(|m| !m.contains("secret")), "{p:?}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:guest@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }
}
