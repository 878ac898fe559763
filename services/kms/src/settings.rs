//! Building a [`KmsConfig`] from signet's settings file.

use signet_runtime::Settings;

use crate::kms::KmsConfig;

impl KmsConfig {
    /// The KMS settings of a service: the data dir (for the local development KMS), the
    /// per-call timeout, and which keys are allowed at all (local development keys and
    /// custom AWS endpoints only when the settings say so). Provider credentials come
    /// from the environment.
    pub fn from_settings(settings: &Settings) -> Self {
        let mut config = Self::new(&settings.data_dir);
        config.timeout = settings.kms.timeout;
        config.allow_local = settings.kms.allow_local_keys;
        config.allowed_endpoints = Some(settings.kms.allowed_endpoints.clone());
        config
    }
}
