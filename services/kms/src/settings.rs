//! Building a [`KmsConfig`] from signet's settings file.

use signet_runtime::Settings;

use crate::kms::KmsConfig;

impl KmsConfig {
    /// The KMS settings of a service: the data dir (for the local development KMS) and
    /// the per-call timeout. Provider credentials come from the environment.
    pub fn from_settings(settings: &Settings) -> Self {
        let mut config = Self::new(&settings.data_dir);
        config.timeout = settings.kms.timeout;
        config
    }
}
