//! The verifier's configuration: built from signet's settings file (the `verifier`
//! section) or directly by tests and by `signet up`.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use governor::Quota;
use secrecy::SecretString;
use signet_core::PinnedKeys;
use signet_runtime::secret::read_secret_file;
use signet_runtime::settings::ClientAuthMode;
use signet_runtime::Settings;

use crate::error::VerifierError;

pub use signet_runtime::tls::TlsFiles;

/// Everything the verifier needs besides its event bus and registry client.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// HTTPS listener (`host:port`; port 0 picks a free one).
    pub listen: String,
    pub cluster: String,
    /// The control plane's base URL (`http://127.0.0.1:7700`).
    pub gateway: String,
    /// An API token with the verifier role.
    pub token: SecretString,
    pub tls: TlsFiles,
    pub tls_reload_interval: Duration,
    /// An admission answers within this; enforced namespaces fail closed past it.
    pub decision_budget: Duration,
    pub cache: CacheConfig,
    pub resync_interval: Duration,
    pub report_interval: Duration,
    pub report_batch: usize,
    /// Where the last trust bundle is kept across restarts, and where break-glass
    /// decisions wait for the control plane's acknowledgement.
    pub state_dir: Option<PathBuf>,
    /// The control plane keys whose seal bundles and events must carry.
    pub control_plane_keys: PinnedKeys,
    /// The CA the gateway's certificate must chain to (`https://` gateways).
    pub gateway_ca: Option<PathBuf>,
    /// Who may send reviews.
    pub client_auth: ClientAuth,
    /// Reviews per source before 429.
    pub rate_limits: RateLimits,
    /// Timeouts (TLS handshake, headers, body, request) and the connection cap of the
    /// HTTPS listener (the settings' `http` section).
    pub http: signet_runtime::settings::HttpLimits,
    /// The inventory of running containers.
    pub inventory: signet_runtime::settings::InventorySettings,
}

/// How the webhook authenticates the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// Anyone who completes TLS; every review is reported (`signet up`).
    Off,
    /// Clients with a certificate issued by `ca` are trusted; others are answered, but
    /// their reviews are neither reported nor honoured as break-glass.
    Optional { ca: PathBuf },
    /// TLS refuses clients without a certificate issued by `ca`.
    Require { ca: PathBuf },
}

impl ClientAuth {
    pub fn ca(&self) -> Option<&std::path::Path> {
        match self {
            Self::Off => None,
            Self::Optional { ca } | Self::Require { ca } => Some(ca),
        }
    }
}

/// Per-source review quotas: a verified client is keyed by its certificate, any other
/// by its IP address. `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    pub verified: Option<Quota>,
    pub unverified: Option<Quota>,
}

impl RateLimits {
    /// `per_second` reviews a second with a burst of as many; 0 is no limit.
    pub fn per_second(verified: u32, unverified: u32) -> Self {
        let q = |n: u32| NonZeroU32::new(n).map(Quota::per_second);
        Self {
            verified: q(verified),
            unverified: q(unverified),
        }
    }
}

/// Sizes and lifetimes of the trust cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most (digest, witness key) verdicts held.
    pub capacity: u64,
    /// How long a verified signature stays trusted.
    pub trust_ttl: Duration,
    /// How long a registry answer without a valid signature is reused.
    pub negative_ttl: Duration,
    /// How long a tag stays resolved.
    pub tag_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            trust_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(5),
            tag_ttl: Duration::from_secs(30),
        }
    }
}

impl VerifierConfig {
    /// The verifier section of `settings`. The gateway URL, the token file and the TLS
    /// files must be set (`signet up` fills them in for its own verifier); the token is
    /// read here and only held as a secret afterwards.
    pub fn from_settings(settings: &Settings) -> Result<Self, VerifierError> {
        let v = &settings.verifier;
        let mut missing = Vec::new();
        if v.gateway.is_none() {
            missing.push("verifier.gateway (the control plane URL)");
        }
        if v.token_file.is_none() {
            missing.push("verifier.token_file (a token with the verifier role)");
        }
        if v.tls_cert.is_none() || v.tls_key.is_none() {
            missing.push("verifier.tls_cert and verifier.tls_key (PEM files)");
        }
        if v.control_plane_keys.is_empty() {
            missing.push(
                "verifier.control_plane_keys (PEM files with the control plane's public key; \
                 `signet control-plane key` prints it)",
            );
        }
        let client_auth = match (v.client_auth, &v.client_ca) {
            (ClientAuthMode::Off, _) => ClientAuth::Off,
            (ClientAuthMode::Optional, Some(ca)) => ClientAuth::Optional { ca: ca.clone() },
            (ClientAuthMode::Require, Some(ca)) => ClientAuth::Require { ca: ca.clone() },
            (_, None) => {
                missing.push("verifier.client_ca (the PEM of the CA that issues the API server's client certificate; or client_auth = \"off\", which lets anyone who reaches the port send reviews)");
                ClientAuth::Off
            }
        };
        let (Some(gateway), Some(token_file), Some(cert), Some(key)) =
            (&v.gateway, &v.token_file, &v.tls_cert, &v.tls_key)
        else {
            return Err(VerifierError::Config(format!("set {}", missing.join(", "))));
        };
        if !missing.is_empty() {
            return Err(VerifierError::Config(format!("set {}", missing.join(", "))));
        }
        let token =
            read_secret_file(token_file).map_err(|e| VerifierError::Config(e.to_string()))?;
        let mut control_plane_keys = PinnedKeys::default();
        for path in &v.control_plane_keys {
            let text = std::fs::read_to_string(path).map_err(|e| {
                VerifierError::Config(format!(
                    "verifier.control_plane_keys: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let keys = PinnedKeys::from_pem(&text).map_err(|e| {
                VerifierError::Config(format!(
                    "verifier.control_plane_keys: {}: {e}",
                    path.display()
                ))
            })?;
            control_plane_keys.extend(keys);
        }
        Ok(Self {
            listen: v.listen.clone(),
            cluster: v.cluster.clone(),
            gateway: gateway.trim_end_matches('/').to_owned(),
            token,
            tls: TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            tls_reload_interval: v.tls_reload_interval,
            decision_budget: v.decision_budget,
            cache: CacheConfig {
                capacity: v.cache_capacity,
                trust_ttl: v.trust_ttl,
                negative_ttl: v.negative_ttl,
                tag_ttl: v.tag_ttl,
            },
            resync_interval: v.resync_interval,
            report_interval: v.report_interval,
            report_batch: v.report_batch,
            state_dir: v.state_dir.clone(),
            control_plane_keys,
            gateway_ca: v.gateway_ca.clone(),
            client_auth,
            rate_limits: RateLimits::per_second(v.rate_limit_verified, v.rate_limit_unverified),
            http: settings.http.clone(),
            inventory: v.inventory.clone(),
        })
    }
}

impl VerifierConfig {
    /// For `signet up`, whose verifier runs beside its own gateway: whatever the
    /// `verifier` section leaves unset is filled in — the gateway at `gateway_url`, the
    /// token in `token_file`, a self-signed certificate for localhost and 127.0.0.1 in
    /// `<data dir>/verifier/` (generated on first start), that dir for the kept bundle,
    /// and the control plane key `control_plane_pem` (its own gateway's) pinned.
    pub fn for_signet_up(
        settings: &Settings,
        gateway_url: &str,
        token_file: &std::path::Path,
        control_plane_pem: &str,
    ) -> Result<Self, VerifierError> {
        let mut s = settings.clone();
        let dir = settings.data_dir.join("verifier");
        let v = &mut s.verifier;
        if v.control_plane_keys.is_empty() {
            let pinned = dir.join("control-plane.pem");
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&pinned, control_plane_pem))
                .map_err(|e| {
                    VerifierError::Config(format!("cannot write {}: {e}", pinned.display()))
                })?;
            v.control_plane_keys.push(pinned);
        }
        if v.gateway.is_none() {
            v.gateway = Some(gateway_url.to_owned());
            // Its own gateway over HTTPS: trust the certificate it serves (self-signed on
            // a laptop), unless a CA was named.
            if gateway_url.starts_with("https://") && v.gateway_ca.is_none() {
                v.gateway_ca.clone_from(&settings.gateway.tls_cert);
            }
        }
        v.token_file.get_or_insert_with(|| token_file.to_owned());
        v.state_dir.get_or_insert_with(|| dir.clone());
        // Its verifier listens on loopback for a local API server, if any; client
        // certificates are checked only when a CA is configured.
        if v.client_ca.is_none() {
            v.client_auth = ClientAuthMode::Off;
        }
        if v.tls_cert.is_none() && v.tls_key.is_none() {
            let files = TlsFiles {
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            };
            if crate::tls::ensure_self_signed(&files, &["localhost", "127.0.0.1"])? {
                tracing::info!(cert = %files.cert.display(), "generated a self-signed verifier certificate (for local use; a cluster uses one its CA issued)");
            }
            v.tls_cert = Some(files.cert);
            v.tls_key = Some(files.key);
        }
        Self::from_settings(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn test_key_pem() -> String {
        crate::testing::TestKey::new().public.to_pem()
    }

    #[test]
    fn names_every_missing_setting() {
        let err = VerifierConfig::from_settings(&Settings::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("verifier.gateway"), "{err}");
        assert!(err.contains("verifier.token_file"), "{err}");
        assert!(err.contains("verifier.tls_cert"), "{err}");
        assert!(err.contains("verifier.control_plane_keys"), "{err}");
        assert!(err.contains("verifier.client_ca"), "{err}");
    }

    #[test]
    fn signet_up_fills_in_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("verifier.token");
        std::fs::write(&token, "sgt_a_b\n").expect("write");
        let s = Settings {
            data_dir: dir.path().to_owned(),
            ..Settings::default()
        };
        let c = VerifierConfig::for_signet_up(&s, "http://127.0.0.1:7700", &token, &test_key_pem())
            .expect("config");
        assert_eq!(c.gateway, "http://127.0.0.1:7700");
        assert_eq!(c.client_auth, ClientAuth::Off);
        assert_eq!(c.tls.cert, dir.path().join("verifier/tls.crt"));
        assert!(c.tls.cert.exists() && c.tls.key.exists());
        assert_eq!(
            c.state_dir.as_deref(),
            Some(dir.path().join("verifier").as_path())
        );
        // A second start keeps the certificate.
        let before = std::fs::read(&c.tls.cert).expect("cert");
        VerifierConfig::for_signet_up(&s, "http://127.0.0.1:7700", &token, &test_key_pem())
            .expect("config");
        assert_eq!(c.control_plane_keys.fingerprints().count(), 1);
        assert_eq!(std::fs::read(&c.tls.cert).expect("cert"), before);
    }

    #[test]
    fn reads_the_token_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "sgt_x_y\n").expect("write");
        let mut s = Settings::default();
        s.verifier.gateway = Some("http://127.0.0.1:7700/".into());
        s.verifier.token_file = Some(token);
        s.verifier.tls_cert = Some(dir.path().join("c.pem"));
        s.verifier.tls_key = Some(dir.path().join("k.pem"));
        s.verifier.cluster = "c1".into();
        s.verifier.client_ca = Some(dir.path().join("ca.pem"));
        // Without a pinned control plane key the verifier does not start.
        let err = VerifierConfig::from_settings(&s)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("verifier.control_plane_keys")),
            "{err:?}"
        );
        let pinned = dir.path().join("cp.pem");
        let (a, b) = (test_key_pem(), test_key_pem());
        std::fs::write(&pinned, format!("{a}{b}")).expect("write");
        s.verifier.control_plane_keys = vec![pinned];
        let c = VerifierConfig::from_settings(&s).expect("config");
        assert_eq!(c.control_plane_keys.fingerprints().count(), 2);
        assert_eq!(
            c.client_auth,
            ClientAuth::Require {
                ca: dir.path().join("ca.pem")
            },
            "client certificates are required by default"
        );
        assert_eq!(c.gateway, "http://127.0.0.1:7700");
        assert_eq!(c.token.expose_secret(), "sgt_x_y");
        assert_eq!(c.cluster, "c1");
        assert!(!format!("{c:?}").contains("sgt_x_y"));
    }
}
