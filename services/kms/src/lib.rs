//! signet-kms: the KMS keys witnesses sign with, behind one trait.
//!
//! A witness names its key by URI (cosign's conventions). [`Kms::open`] turns a URI into a
//! [`KeyProvider`], which describes the key (algorithm, versions, public keys), signs
//! payloads with one version, and rotates the key where the KMS allows it. Providers do not
//! retry: the signer's worker pool owns retries and rate limits, so errors only say whether
//! a retry could help ([`KmsError::retryable`]).
//!
//! Layout:
//! - [`error`]: [`KmsError`] and [`KmsErrorKind`], shared by every provider.
//! - [`kms`]: [`KmsConfig`] and [`Kms`], which parses URIs and caches one provider per URI.
//! - [`discover`]: [`Kms::discover`], the keys each configured provider can see, for the
//!   console's key picker.
//! - [`env`]: the environment variables and CLI credential files providers read.
//! - `local`: `local://NAME`, the development KMS that keeps PKCS#8 keys in the data dir.
//! - `http`: the HTTP client and transport-error classification the cloud providers share.
//! - `aws`: `awskms://[ENDPOINT]/KEY`, AWS KMS with SigV4 (`aws-sigv4`).
//! - `vault`: `hashivault://KEY`, HashiCorp Vault / OpenBao transit.
//! - `alibaba`: `alikms://REGION/KEY_ID[?version=V]`, Alibaba Cloud KMS.
//! - [`acs3`]: Alibaba's ACS3-HMAC-SHA256 request signing as pure functions.
//! - [`seal`]: the control plane's key, which seals trust bundles and events.

pub mod acs3;
mod alibaba;
mod alibaba_credentials;
mod aws;
pub mod discover;
pub mod env;
pub mod error;
mod http;
pub mod kms;
mod local;
mod refresh;
pub mod seal;
mod settings;
mod vault;

use signet_core::{PublicKey, SignatureAlgorithm};

pub use discover::{Discovery, KeyListing, ProviderListing};
pub use env::Environment;
pub use error::{KmsError, KmsErrorKind};
pub use kms::{Kms, KmsConfig};
pub use seal::ControlPlaneKey;

/// What a key is: how it signs, and every version that may have made a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDescription {
    /// What the witness will sign with.
    pub algorithm: SignatureAlgorithm,
    /// Every enabled version, oldest first.
    pub versions: Vec<KeyVersionInfo>,
    /// The version new signatures use.
    pub primary_version: String,
}

impl KeyDescription {
    /// The primary version's entry.
    pub fn primary(&self) -> Option<&KeyVersionInfo> {
        self.versions
            .iter()
            .find(|v| v.version == self.primary_version)
    }
}

/// One version of a key and its public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionInfo {
    /// The KMS's own id for the version (`1` for the local KMS, the key id for AWS).
    pub version: String,
    pub public_key: PublicKey,
}

/// One KMS key. Implementations are cheap to share (`Arc<dyn KeyProvider>`) and safe to
/// call from many tasks at once.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// The key URI exactly as configured (never contains a secret).
    fn uri(&self) -> &str;

    /// "local", "awskms", "hashivault", "alikms".
    fn provider(&self) -> &'static str;

    /// Checks the key is asymmetric RSA >= 2048 with sign/verify usage (else
    /// [`KmsErrorKind::WrongKeyType`] with a clear message) and returns its versions and
    /// public keys.
    async fn describe(&self) -> Result<KeyDescription, KmsError>;

    /// Signs `payload` (the exact payload bytes; SHA-256 is the provider's job) with
    /// `key_version`.
    async fn sign(
        &self,
        key_version: &str,
        algorithm: SignatureAlgorithm,
        payload: &[u8],
    ) -> Result<Vec<u8>, KmsError>;

    /// Creates a new primary version; returns its id.
    async fn rotate(&self) -> Result<String, KmsError> {
        Err(KmsError::new(
            self.provider(),
            self.uri(),
            KmsErrorKind::Unsupported(format!(
                "the {} provider cannot rotate keys from signet",
                self.provider()
            )),
        ))
    }
}
