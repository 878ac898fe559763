//! `local://NAME`: the development KMS. DEVELOPMENT ONLY.
//!
//! Private keys live unencrypted on this machine's disk, readable by anyone who can read
//! the data dir as this user: fine for `signet up` on a laptop, never for production,
//! where a witness key belongs in a KMS that never lets it out.
//!
//! Keys are `<data_dir>/kms/<NAME>/v<N>.pk8`, PKCS#8 DER, mode 0600 in a 0700 directory.
//! The highest N is the primary version. A version file is written whole under a temporary
//! name and then hard-linked to its final name, which fails if the name exists, so two
//! processes creating the same version never clobber each other; the loser re-reads the
//! winner's key.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::{self as lc_rand, SystemRandom};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use secrecy::{ExposeSecret, SecretSlice};
use signet_core::{PublicKey, SignatureAlgorithm};

use crate::error::{KmsError, KmsErrorKind};
use crate::{KeyDescription, KeyProvider, KeyVersionInfo};

const PROVIDER: &str = "local";

/// How many times `rotate` tries the next version number when other processes keep
/// taking it first; more than this means something is creating versions in a loop.
const ROTATE_ATTEMPTS: u32 = 16;

pub(crate) struct LocalProvider {
    inner: Arc<Inner>,
}

struct Inner {
    uri: String,
    dir: PathBuf,
    /// Parsed key pairs by version: parsing a PKCS#8 RSA key costs more than signing with it.
    keys: Mutex<BTreeMap<u32, Arc<LocalKey>>>,
}

struct LocalKey {
    pair: KeyPair,
    public: PublicKey,
}

impl LocalProvider {
    /// `uri` is the whole `local://NAME`, `name` the part after the scheme. Touches no
    /// file: the key directory and v1 are created by the first `describe` or `sign`.
    pub(crate) fn open(uri: &str, name: &str, data_dir: &Path) -> Result<Self, KmsError> {
        if !valid_name(name) {
            return Err(KmsError::new(
                PROVIDER,
                uri,
                KmsErrorKind::InvalidUri(
                    "the local key name must be 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit (local://NAME)"
                        .to_owned(),
                ),
            ));
        }
        tracing::warn!(
            key = uri,
            "the local KMS keeps private keys unencrypted in the data dir and is for development only; use awskms://, hashivault:// or alikms:// keys in production"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                uri: uri.to_owned(),
                dir: data_dir.join("kms").join(name),
                keys: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// Runs file work, key generation and signing on the blocking pool: generating an RSA
    /// key takes tens of milliseconds and signing about a millisecond, too long for a
    /// runtime thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, KmsError> + Send + 'static,
    ) -> Result<T, KmsError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                self.inner
                    .error(KmsErrorKind::Failed(format!("key task stopped: {e}")))
            })?
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

impl Inner {
    fn error(&self, kind: KmsErrorKind) -> KmsError {
        KmsError::new(PROVIDER, self.uri.as_str(), kind)
    }

    fn io_error(&self, what: &str, path: &Path, e: &io::Error) -> KmsError {
        let kind = if e.kind() == io::ErrorKind::PermissionDenied {
            KmsErrorKind::PermissionDenied(format!("{what} {}: {e}", path.display()))
        } else {
            KmsErrorKind::Failed(format!("{what} {}: {e}", path.display()))
        };
        self.error(kind)
    }

    fn cached(&self, version: u32) -> Option<Arc<LocalKey>> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&version)
            .cloned()
    }

    fn path(&self, version: u32) -> PathBuf {
        self.dir.join(format!("v{version}.pk8"))
    }

    /// Version numbers present on disk, ascending.
    fn versions_on_disk(&self) -> Result<Vec<u32>, KmsError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error("cannot list key directory", &self.dir, &e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| self.io_error("cannot list key directory", &self.dir, &e))?;
            if let Some(v) = entry.file_name().to_str().and_then(parse_file_name) {
                versions.push(v);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// The key for `version`, from the cache or from disk.
    fn load(&self, version: u32) -> Result<Arc<LocalKey>, KmsError> {
        if let Some(key) = self.cached(version) {
            return Ok(key);
        }
        let path = self.path(version);
        let mut file = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.error(KmsErrorKind::NotFound(format!(
                    "key version {version} does not exist ({} is missing)",
                    path.display()
                ))))
            }
            Err(e) => return Err(self.io_error("cannot open key file", &path, &e)),
        };
        if let Ok(meta) = file.metadata() {
            if meta.mode() & 0o077 != 0 {
                tracing::warn!(
                    key = %self.uri,
                    path = %path.display(),
                    "local key file is readable by other users; it should be mode 0600"
                );
            }
        }
        let mut der = Vec::new();
        let read = file.read_to_end(&mut der);
        // Wrapped so the private key bytes are zeroed however this function returns.
        let der = SecretSlice::from(der);
        read.map_err(|e| self.io_error("cannot read key file", &path, &e))?;
        let pair = KeyPair::from_pkcs8(der.expose_secret()).map_err(|e| {
            self.error(KmsErrorKind::WrongKeyType(format!(
                "{} is not an unencrypted PKCS#8 RSA private key: {e}",
                path.display()
            )))
        })?;
        let public = public_key(&pair).map_err(|m| {
            self.error(KmsErrorKind::WrongKeyType(format!(
                "{}: {m}",
                path.display()
            )))
        })?;
        let key = Arc::new(LocalKey { pair, public });
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        // Another task may have loaded it meanwhile; both parsed the same file, keep one.
        Ok(Arc::clone(keys.entry(version).or_insert(key)))
    }

    /// Creates `v1` when the key has no version yet.
    fn ensure_exists(&self) -> Result<(), KmsError> {
        if self.versions_on_disk()?.is_empty() {
            // Losing the race to another process is fine: its v1 is the key.
            self.create_version(1)?;
        }
        Ok(())
    }

    /// Generates a key and publishes it as `v<version>`; false when that version exists
    /// already (another task or process made it first).
    fn create_version(&self, version: u32) -> Result<bool, KmsError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.io_error("cannot create key directory", &self.dir, &e))?;
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| self.error(KmsErrorKind::Failed("RSA key generation failed".into())))?;
        // The DER buffer zeroes itself on drop.
        let der = pair.as_der().map_err(|_| {
            self.error(KmsErrorKind::Failed(
                "cannot encode the new key as PKCS#8".into(),
            ))
        })?;

        let mut nonce = [0u8; 8];
        lc_rand::fill(&mut nonce).map_err(|_| {
            self.error(KmsErrorKind::Failed(
                "no randomness for a temporary file name".into(),
            ))
        })?;
        let tmp = self.dir.join(format!(
            ".v{version}.pk8.{}.{:016x}.tmp",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ));
        let written = write_new_file(&tmp, der.as_ref());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_error("cannot write key file", &tmp, &e));
        }
        let final_path = self.path(version);
        let linked = fs::hard_link(&tmp, &final_path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&self.dir);
                tracing::info!(key = %self.uri, version, "created local key version");
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.io_error("cannot create key file", &final_path, &e)),
        }
    }

    fn describe(&self) -> Result<KeyDescription, KmsError> {
        self.ensure_exists()?;
        let versions = self.versions_on_disk()?;
        let mut infos = Vec::with_capacity(versions.len());
        for v in &versions {
            infos.push(KeyVersionInfo {
                version: v.to_string(),
                public_key: self.load(*v)?.public.clone(),
            });
        }
        let Some(primary) = versions.last() else {
            return Err(self.error(KmsErrorKind::NotFound(format!(
                "no key version in {}",
                self.dir.display()
            ))));
        };
        Ok(KeyDescription {
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            versions: infos,
            primary_version: primary.to_string(),
        })
    }

    fn rotate(&self) -> Result<String, KmsError> {
        self.ensure_exists()?;
        for _ in 0..ROTATE_ATTEMPTS {
            let next = self.versions_on_disk()?.last().map_or(1, |v| v + 1);
            if self.create_version(next)? {
                self.load(next)?;
                return Ok(next.to_string());
            }
        }
        Err(self.error(KmsErrorKind::Failed(format!(
            "other processes kept creating versions; gave up after {ROTATE_ATTEMPTS} attempts"
        ))))
    }

    fn parse_version(&self, key_version: &str) -> Result<u32, KmsError> {
        parse_version(key_version).ok_or_else(|| {
            self.error(KmsErrorKind::NotFound(format!(
                "key version {key_version:?} does not exist: local key versions are numbers such as \"1\""
            )))
        })
    }
}

/// `v12.pk8` -> 12; `v012.pk8` and temporary files are not versions.
pub(crate) fn parse_file_name(name: &str) -> Option<u32> {
    parse_version(name.strip_prefix('v')?.strip_suffix(".pk8")?)
}

fn parse_version(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn write_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the new directory entry durable; a failure only weakens crash safety, so it is
/// not an error.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn public_key(pair: &KeyPair) -> Result<PublicKey, String> {
    let der = pair
        .public_key()
        .as_der()
        .map_err(|_| "cannot encode the public key".to_owned())?;
    PublicKey::parse(der.as_ref()).map_err(|e| e.to_string())
}

fn sign_with(
    key: &LocalKey,
    algorithm: SignatureAlgorithm,
    payload: &[u8],
) -> Result<Vec<u8>, String> {
    let encoding: &'static dyn lc::RsaEncoding =
        match algorithm {
            SignatureAlgorithm::RsaPkcs1Sha256 => &lc::RSA_PKCS1_SHA256,
            SignatureAlgorithm::RsaPssSha256 => &lc::RSA_PSS_SHA256,
            SignatureAlgorithm::EcdsaP256Sha256 => return Err(
                "signet signs with RSA keys only; an ECDSA key belongs to a verify-only witness"
                    .into(),
            ),
        };
    let mut sig = vec![0; key.pair.public_modulus_len()];
    key.pair
        .sign(encoding, &SystemRandom::new(), payload, &mut sig)
        .map_err(|_| format!("{algorithm} signing failed"))?;
    Ok(sig)
}

#[async_trait::async_trait]
impl KeyProvider for LocalProvider {
    fn uri(&self) -> &str {
        &self.inner.uri
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn describe(&self) -> Result<KeyDescription, KmsError> {
        self.blocking(Inner::describe).await
    }

    async fn sign(
        &self,
        key_version: &str,
        algorithm: SignatureAlgorithm,
        payload: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let version = self.inner.parse_version(key_version)?;
        let payload = payload.to_vec();
        // Signing runs on the blocking pool too: an RSA-2048 signature measured 0.8-0.95 ms
        // here (release build; `openssl speed rsa2048` gives 0.82 ms on the same machine),
        // ten times what a runtime thread should spend between awaits, while the hop to the
        // blocking pool and back measured 17-27 µs.
        self.blocking(move |inner| {
            let key = match inner.cached(version) {
                Some(key) => key,
                None => {
                    if version == 1 {
                        inner.ensure_exists()?;
                    }
                    inner.load(version)?
                }
            };
            sign_with(&key, algorithm, &payload).map_err(|m| inner.error(KmsErrorKind::Failed(m)))
        })
        .await
    }

    async fn rotate(&self) -> Result<String, KmsError> {
        self.blocking(Inner::rotate).await
    }
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: Vec<u32> = self
            .inner
            .keys
            .lock()
            .map(|k| k.keys().copied().collect())
            .unwrap_or_default();
        f.debug_struct("LocalProvider")
            .field("uri", &self.inner.uri)
            .field("dir", &self.inner.dir)
            .field("loaded_versions", &versions)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_file_names() {
        assert_eq!(parse_file_name("v1.pk8"), Some(1));
        assert_eq!(parse_file_name("v12.pk8"), Some(12));
        assert_eq!(parse_file_name("v0.pk8"), None);
        assert_eq!(parse_file_name("v01.pk8"), None);
        assert_eq!(parse_file_name(".v1.pk8.12.00ff.tmp"), None);
        assert_eq!(parse_file_name("v1.pk8~"), None);
        assert_eq!(parse_file_name("v.pk8"), None);
        assert_eq!(parse_file_name("v99999999999.pk8"), None);
    }

    #[test]
    fn key_names() {
        assert!(valid_name("dev"));
        assert!(valid_name("0.a_b-c"));
        assert!(valid_name(&"a".repeat(63)));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(!valid_name(""));
        assert!(!valid_name("Dev"));
        assert!(!valid_name("_dev"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn racing_creators_publish_exactly_one_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = Arc::new(Inner {
            uri: "local://race".into(),
            dir: dir.path().join("kms/race"),
            keys: Mutex::new(BTreeMap::new()),
        });
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let inner = Arc::clone(&inner);
                std::thread::spawn(move || inner.create_version(1))
            })
            .collect();
        let created = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("create"))
            .filter(|&created| created)
            .count();
        assert_eq!(created, 1);
        assert_eq!(inner.versions_on_disk().expect("list"), [1]);
    }
}
