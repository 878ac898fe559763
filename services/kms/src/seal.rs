//! The control plane's signing key: seals trust bundles and events with a KMS key, the
//! way a witness signs images, so the private half never leaves the KMS.

use std::sync::Arc;

use signet_core::{PublicKey, Seal, SignatureAlgorithm};

use crate::error::{KmsError, KmsErrorKind};
use crate::{KeyProvider, Kms};

/// The control plane's key, opened once at start.
#[derive(Debug, Clone)]
pub struct ControlPlaneKey {
    provider: Arc<dyn KeyProvider>,
    version: String,
    algorithm: SignatureAlgorithm,
    public_key: PublicKey,
    fingerprint: String,
}

impl ControlPlaneKey {
    /// The key `control_plane.signing_key` names, for the gateway and the signer (both
    /// relay events). Unset is an error that says what to do: there is no unsealed mode.
    pub async fn from_settings(
        kms: &Kms,
        settings: &signet_runtime::Settings,
    ) -> Result<Self, KmsError> {
        let uri = settings.control_plane.signing_key.as_deref().ok_or_else(|| {
            KmsError::new(
                "kms",
                "control_plane.signing_key",
                KmsErrorKind::InvalidUri(
                    "control_plane.signing_key is not set: trust bundles and events are sealed \
                     with it and verifiers refuse anything unsealed (SIGNET_CONTROL_PLANE__SIGNING_KEY, \
                     see docs/configuration.md)"
                        .into(),
                ),
            )
        })?;
        Self::open(kms, uri).await
    }

    /// Opens `uri` and reads its primary version's public key.
    pub async fn open(kms: &Kms, uri: &str) -> Result<Self, KmsError> {
        let provider = kms.open(uri)?;
        let described = provider.describe().await?;
        let primary = described.primary().cloned().ok_or_else(|| {
            KmsError::new(
                provider.provider(),
                uri,
                KmsErrorKind::NotFound(format!(
                    "primary version {} is not among the key's versions",
                    described.primary_version
                )),
            )
        })?;
        let fingerprint = primary.public_key.fingerprint();
        Ok(Self {
            provider,
            version: primary.version,
            algorithm: described.algorithm,
            public_key: primary.public_key,
            fingerprint,
        })
    }

    pub fn uri(&self) -> &str {
        self.provider.uri()
    }

    /// The public half verifiers pin.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// `sha256:<hex>`, the key id every seal names.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seals `bytes`. The KMS's answer is checked against the public key before it is
    /// used, as a witness's signature is: a seal verifiers would refuse is an error here.
    pub async fn seal(&self, bytes: &[u8]) -> Result<Seal, KmsError> {
        let signature = self
            .provider
            .sign(&self.version, self.algorithm, bytes)
            .await?;
        self.public_key
            .verify(self.algorithm, bytes, &signature)
            .map_err(|e| {
                KmsError::new(
                    self.provider.provider(),
                    self.provider.uri(),
                    KmsErrorKind::Failed(format!(
                        "the KMS returned a seal that does not verify under the key's public half: {e}"
                    )),
                )
            })?;
        Ok(Seal {
            key: self.fingerprint.clone(),
            algorithm: self.algorithm,
            signature,
        })
    }
}
