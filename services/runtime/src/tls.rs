//! HTTPS for signet's listeners (the verifier's webhook, the gateway's API): rustls on
//! aws-lc-rs, with the certificate and key read from PEM files and swapped in when either
//! file changes (cert-manager and kubelet rewrite secret mounts in place). A bad rewrite
//! keeps the last good certificate and logs why.
//!
//! Changes are found by polling modification times: a mounted secret changes through a
//! symlink swap that inotify-style watchers miss unless they watch the parent, and a
//! poll every few seconds costs nothing next to the certificate's lifetime.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

/// Where the certificate and key live; both are re-read when either file changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A certificate, key or CA file that cannot be used, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS certificate or key in {path} is not usable: {reason}")]
pub struct TlsError {
    pub path: String,
    pub reason: String,
}

/// A file I/O failure on `path`, as a [`TlsError`].
fn io_error(path: &Path, e: &std::io::Error) -> TlsError {
    TlsError {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Serves whichever certificate was loaded last.
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    /// Read on every handshake: a pointer load, no lock.
    current: ArcSwap<CertifiedKey>,
    /// Modification times of (cert, key) when last loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the files now; fails if they are missing or do not form a usable pair.
    pub fn load(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamps = stamps(&files);
        let key = read_pair(&files, &provider)?;
        Ok(Self {
            files,
            provider,
            current: ArcSwap::from_pointee(key),
            loaded: Mutex::new(stamps),
        })
    }

    /// Re-reads the files if either changed since the last load. Returns whether a new
    /// certificate is now being served.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamps(&self.files);
        // Only the watcher task gets here; the lock never waits.
        let mut loaded = match self.loaded.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if now == *loaded {
            return false;
        }
        match read_pair(&self.files, &self.provider) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                *loaded = now;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Often a half-written rotation; the next poll sees the finished files.
                tracing::warn!(error = %e, "TLS certificate files changed but cannot be loaded; still serving the previous certificate");
                false
            }
        }
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Polls the files every `interval` until `shutdown`.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            // File reads are blocking; keep them off the admission workers.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamps(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert), m(&files.key))
}

fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let bad = |path: &Path, reason: String| TlsError {
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = std::fs::read(&files.cert).map_err(|e| bad(&files.cert, e.to_string()))?;
    let key_pem = std::fs::read(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.cert, format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(bad(&files.cert, "holds no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(&files.key, format!("not a PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| bad(&files.key, format!("does not go with the certificate: {e}")))
}

/// The aws-lc-rs provider, named explicitly so a second provider elsewhere in the
/// process cannot make rustls pick at run time.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server config that asks `cert` for the certificate on every handshake, offers h2
/// and HTTP/1.1, and checks client certificates with `clients` when given.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: "(protocol versions)".into(),
            reason: e.to_string(),
        })?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The trust anchors an HTTPS client pins instead of the system's roots (the gateway's
/// CA, for the verifier and the CLI): every certificate in the PEM file at `path`. The
/// error says what is wrong with the file, in words for an operator.
pub fn pinned_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM CA bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// A CA bundle: every CERTIFICATE block in the file is a trust anchor.
pub fn read_ca(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let bad = |reason: String| TlsError {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| io_error(path, &e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no CERTIFICATE block".into()));
    }
    Ok(roots)
}

/// Writes a new self-signed certificate for `names` (DNS names or IP addresses) and its
/// key, the key readable by its owner only. For `signet up` and tests; a cluster uses a
/// certificate its CA (or cert-manager) issued.
pub fn write_self_signed(files: &TlsFiles, names: &[&str]) -> Result<(), TlsError> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError {
        path: files.cert.display().to_string(),
        reason: format!("cannot generate a self-signed certificate: {e}"),
    })?;
    write_file(
        &files.key,
        generated.signing_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_file(&files.cert, generated.cert.pem().as_bytes(), false)
}

/// Writes a self-signed pair unless both files exist; returns whether it wrote one.
pub fn ensure_self_signed(files: &TlsFiles, names: &[&str]) -> Result<bool, TlsError> {
    if files.cert.exists() && files.key.exists() {
        return Ok(false);
    }
    if let Some(dir) = files.cert.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
    }
    write_self_signed(files, names)?;
    Ok(true)
}

/// Replaces `path` atomically (write a sibling, then rename), so the reloader never
/// reads half a file.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |e: std::io::Error| io_error(path, &e);
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options.open(&tmp).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    #[test]
    fn loads_and_reloads_only_on_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        write_self_signed(&f, &["localhost", "127.0.0.1"]).expect("generate");
        let cert = ReloadingCert::load(f.clone(), provider()).expect("load");
        let first = cert.current().cert[0].clone();
        assert!(!cert.reload_if_changed(), "nothing changed");
        // A broken rewrite keeps the old certificate.
        std::fs::write(&f.cert, "garbage").expect("write");
        assert!(!cert.reload_if_changed());
        assert_eq!(cert.current().cert[0], first);
        write_self_signed(&f, &["localhost"]).expect("generate");
        // Filesystems with coarse timestamps may need the stamp to move on.
        let later = SystemTime::now() + Duration::from_secs(2);
        let _ = std::fs::File::options()
            .write(true)
            .open(&f.cert)
            .and_then(|file| file.set_modified(later));
        assert!(cert.reload_if_changed());
        assert_ne!(cert.current().cert[0], first);
    }

    #[test]
    fn refuses_a_key_that_does_not_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = files(dir.path());
        write_self_signed(&a, &["localhost"]).expect("generate");
        let other = TlsFiles {
            cert: dir.path().join("b.crt"),
            key: dir.path().join("b.key"),
        };
        write_self_signed(&other, &["localhost"]).expect("generate");
        let mixed = TlsFiles {
            cert: a.cert.clone(),
            key: other.key.clone(),
        };
        let err = ReloadingCert::load(mixed, provider())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("does not go with the certificate"), "{err}");
        let missing = ReloadingCert::load(files(&dir.path().join("none")), provider());
        assert!(missing.is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_generated_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        write_self_signed(&f, &["localhost"]).expect("generate");
        let mode = std::fs::metadata(&f.key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
