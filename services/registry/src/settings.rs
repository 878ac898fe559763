//! Building a [`RegistryConfig`] from signet's settings file: credentials name secret
//! files, which are read here (and only held as secrets afterwards).

use signet_runtime::secret::{read_secret_file, ExposeSecret, SecretError};
use signet_runtime::Settings;

use crate::config::{RegistryConfig, RegistryCredential};

impl RegistryConfig {
    /// The registry client settings of a service. Fails when a credential's secret file
    /// cannot be read; the message names the file, never its content.
    pub fn from_settings(settings: &Settings) -> Result<Self, SecretError> {
        let r = &settings.registry;
        let mut credentials = Vec::with_capacity(r.credentials.len());
        for c in &r.credentials {
            match (&c.username, &c.password_file, &c.token_file) {
                (Some(user), Some(password_file), _) => {
                    let password = read_secret_file(password_file)?;
                    credentials.push(
                        RegistryCredential::basic(
                            c.host.clone(),
                            user.clone(),
                            password.expose_secret(),
                        )
                        .with_realm_hosts(c.realm_hosts.clone()),
                    );
                }
                (_, _, Some(token_file)) => {
                    let token = read_secret_file(token_file)?;
                    credentials.push(
                        RegistryCredential::bearer(c.host.clone(), token.expose_secret())
                            .with_realm_hosts(c.realm_hosts.clone()),
                    );
                }
                // Settings validation refuses incomplete credentials before this runs.
                _ => {}
            }
        }
        Ok(Self {
            insecure_registries: r.insecure.clone(),
            allowed_hosts: r.allowed_hosts.clone(),
            redirect_hosts: r.redirect_hosts.clone(),
            credentials,
            docker_config: r.docker_config.clone(),
            timeout: r.timeout,
        })
    }
}
