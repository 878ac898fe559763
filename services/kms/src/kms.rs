//! Opening providers by key URI.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::alibaba::AlibabaProvider;
use crate::aws::{AwsChain, AwsProvider};
use crate::discover::Listers;
use crate::env::Environment;
use crate::error::{KmsError, KmsErrorKind};
use crate::local::LocalProvider;
use crate::vault::VaultProvider;
use crate::KeyProvider;

/// How long a KMS call may take when nobody says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings shared by every provider. Build it with [`KmsConfig::new`] and then set fields:
/// it is `non_exhaustive` so that provider settings can be added without breaking callers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KmsConfig {
    /// The service's data dir; the local KMS keeps its keys under `<data_dir>/kms/`.
    pub data_dir: PathBuf,
    /// Upper bound on every outbound KMS call (connect, send, read the answer).
    pub timeout: Duration,
    /// Where provider settings and credentials are read from (see `docs/kms.md` for the
    /// variables); the process environment unless set.
    pub environment: Environment,
    /// Alibaba Cloud KMS endpoint for every `alikms://` key (a VPC endpoint or a dedicated
    /// gateway): a host, or a URL. Wins over `SIGNET_ALIBABA_KMS_ENDPOINT`.
    pub alibaba_endpoint: Option<String>,
    /// Whether `local://` development keys (plain files in the data dir) may be opened.
    /// The service binaries refuse them unless `kms.allow_local_keys` says otherwise.
    pub allow_local: bool,
    /// The `host[:port]` endpoints an `awskms://HOST/KEY` URI may name; `None`: any. A
    /// key URI is admin input, and its endpoint is where the "KMS public key" verifiers
    /// will trust comes from.
    pub allowed_endpoints: Option<Vec<String>>,
}

impl KmsConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            timeout: DEFAULT_TIMEOUT,
            environment: Environment::Process,
            alibaba_endpoint: None,
            allow_local: true,
            allowed_endpoints: None,
        }
    }
}

/// Opens providers by URI and caches them (one per URI), so parsed keys, HTTP connection
/// pools and credentials are shared by every witness using the same key.
#[derive(Debug)]
pub struct Kms {
    config: KmsConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    providers: HashMap<String, Arc<dyn KeyProvider>>,
    /// Built on first use by an HTTP provider; a development setup never needs it.
    client: Option<reqwest::Client>,
    /// The AWS SDK credential chain per region, shared by the AWS keys of that region
    /// (a key ARN names its region; STS is called there).
    aws_chains: HashMap<String, Arc<AwsChain>>,
    /// The clients [`Kms::discover`] lists keys with, built on first use.
    listers: Listers,
}

impl Kms {
    pub fn new(config: KmsConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// The provider for `uri`, created on first use. Fails with
    /// [`KmsErrorKind::InvalidUri`] for a malformed URI and [`KmsErrorKind::Unsupported`]
    /// for a scheme signet has no provider for.
    pub fn open(&self, uri: &str) -> Result<Arc<dyn KeyProvider>, KmsError> {
        // A poisoned map only means another thread panicked while inserting; the map
        // itself is still a valid cache.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = state.providers.get(uri) {
            return Ok(Arc::clone(p));
        }
        let provider = self.create(uri, &mut state)?;
        state
            .providers
            .insert(uri.to_owned(), Arc::clone(&provider));
        Ok(provider)
    }

    fn client(
        &self,
        state: &mut State,
        provider: &'static str,
        uri: &str,
    ) -> Result<reqwest::Client, KmsError> {
        if let Some(c) = &state.client {
            return Ok(c.clone());
        }
        let client = crate::http::client(self.config.timeout)
            .map_err(|m| KmsError::new(provider, uri, KmsErrorKind::Failed(m)))?;
        state.client = Some(client.clone());
        Ok(client)
    }

    fn create(&self, uri: &str, state: &mut State) -> Result<Arc<dyn KeyProvider>, KmsError> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(KmsError::new(
                "kms",
                redact_uri(uri),
                KmsErrorKind::InvalidUri(format!(
                    "expected <provider>://<key>, one of {SUPPORTED}"
                )),
            ));
        };
        match scheme {
            "local" if !self.config.allow_local => Err(KmsError::new(
                "local",
                redact_uri(uri),
                KmsErrorKind::Unsupported(
                    "local:// keys are development keys kept as files in the data dir; the \
                     service binaries refuse them unless kms.allow_local_keys = true \
                     (signet up allows them)"
                        .into(),
                ),
            )),
            "awskms" if !self.endpoint_allowed(uri) => Err(KmsError::new(
                "awskms",
                redact_uri(uri),
                KmsErrorKind::Unsupported(
                    "the key URI names its own KMS endpoint, which is not in kms.allowed_endpoints; \
                     a key's public half would come from there"
                        .into(),
                ),
            )),
            "local" => Ok(Arc::new(LocalProvider::open(
                uri,
                rest,
                &self.config.data_dir,
            )?)),
            "awskms" => {
                let client = self.client(state, "awskms", uri)?;
                let chains = &mut state.aws_chains;
                Ok(Arc::new(AwsProvider::open(
                    uri,
                    &self.config.environment,
                    client,
                    |region| {
                        Arc::clone(
                            chains
                                .entry(region.to_owned())
                                .or_insert_with(|| Arc::new(AwsChain::new(region.to_owned()))),
                        )
                    },
                )?))
            }
            "hashivault" => {
                let client = self.client(state, "hashivault", uri)?;
                Ok(Arc::new(VaultProvider::open(
                    uri,
                    &self.config.environment,
                    client,
                )?))
            }
            "alikms" => {
                let client = self.client(state, "alikms", uri)?;
                Ok(Arc::new(AlibabaProvider::open(
                    uri,
                    self.config.alibaba_endpoint.as_deref(),
                    &self.config.environment,
                    client,
                )?))
            }
            "gcpkms" | "azurekms" => Err(KmsError::new(
                "kms",
                redact_uri(uri),
                KmsErrorKind::Unsupported(format!(
                    "this build of signet has no {scheme} provider; use one of {SUPPORTED}"
                )),
            )),
            _ => Err(KmsError::new(
                "kms",
                redact_uri(uri),
                KmsErrorKind::Unsupported(format!(
                    "unknown KMS scheme {scheme:?}; use one of {SUPPORTED}"
                )),
            )),
        }
    }
}

/// For [`crate::discover`]: checks without caching, and the clients that list keys.
impl Kms {
    /// Whether [`Kms::open`] accepts `uri`, without keeping the provider: discovery checks
    /// every URI it hands out, and most of them will never be opened for signing.
    pub(crate) fn check_opens(&self, uri: &str) -> Result<(), KmsError> {
        let mut state = self.lock_state();
        if state.providers.contains_key(uri) {
            return Ok(());
        }
        self.create(uri, &mut state).map(drop)
    }

    /// The client that lists the transit mount's keys: the address, namespace and auth
    /// of `hashivault://` keys, so a login is made once and kept like theirs.
    pub(crate) fn vault_lister(&self) -> Result<Arc<VaultProvider>, KmsError> {
        let mut state = self.lock_state();
        if let Some(lister) = &state.listers.vault {
            return Ok(Arc::clone(lister));
        }
        let client = self.client(&mut state, "hashivault", "hashivault://")?;
        let lister = Arc::new(VaultProvider::for_mount(&self.config.environment, client)?);
        state.listers.vault = Some(Arc::clone(&lister));
        Ok(lister)
    }

    /// The client that lists the account's keys in `region`, with the credentials (and
    /// the SDK chain shared with keys of that region) `awskms://` keys use.
    pub(crate) fn aws_lister(&self, region: String) -> Result<Arc<AwsProvider>, KmsError> {
        let mut state = self.lock_state();
        if let Some(lister) = &state.listers.aws {
            return Ok(Arc::clone(lister));
        }
        let client = self.client(&mut state, "awskms", "awskms:///")?;
        let chains = &mut state.aws_chains;
        let lister = Arc::new(AwsProvider::for_account(
            region,
            &self.config.environment,
            client,
            |region| {
                Arc::clone(
                    chains
                        .entry(region.to_owned())
                        .or_insert_with(|| Arc::new(AwsChain::new(region.to_owned()))),
                )
            },
        )?);
        state.listers.aws = Some(Arc::clone(&lister));
        Ok(lister)
    }

    /// The client that lists the keys of `region`, at the endpoint and with the
    /// credentials `alikms://` keys use.
    pub(crate) fn alibaba_lister(&self, region: String) -> Result<Arc<AlibabaProvider>, KmsError> {
        let mut state = self.lock_state();
        if let Some(lister) = &state.listers.alibaba {
            return Ok(Arc::clone(lister));
        }
        let client = self.client(&mut state, "alikms", "alikms://")?;
        let lister = Arc::new(AlibabaProvider::for_region(
            region,
            self.config.alibaba_endpoint.as_deref(),
            &self.config.environment,
            client,
        )?);
        state.listers.alibaba = Some(Arc::clone(&lister));
        Ok(lister)
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // As in `open`: a poisoned lock still guards a valid cache.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Kms {
    fn endpoint_allowed(&self, uri: &str) -> bool {
        let Some(allowed) = &self.config.allowed_endpoints else {
            return true;
        };
        match crate::aws::parse_uri(uri) {
            Ok(parsed) => parsed
                .endpoint
                .as_deref()
                .is_none_or(|e| allowed.iter().any(|a| a.eq_ignore_ascii_case(e))),
            // The provider reports what is wrong with the URI.
            Err(_) => true,
        }
    }
}

const SUPPORTED: &str =
    "local://NAME, awskms://[ENDPOINT]/KEY, hashivault://KEY, alikms://REGION/KEY_ID[?version=V]";

/// A URI fit for an error message: userinfo (`user:secret@`) is cut out, because someone
/// may have pasted credentials into a key URI and errors end up in logs.
pub(crate) fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return if uri.contains('@') {
            "<redacted>".to_owned()
        } else {
            uri.to_owned()
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn production_refuses_local_keys_and_unlisted_endpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = KmsConfig::new(dir.path());
        config.allow_local = false;
        config.allowed_endpoints = Some(vec!["kms.internal:4566".into()]);
        let kms = Kms::new(config);
        let local = kms.open("local://prod").expect_err("local refused");
        assert!(
            local.to_string().contains("kms.allow_local_keys"),
            "{local}"
        );
        let evil = kms
            .open("awskms://attacker.example/alias/x")
            .expect_err("endpoint refused");
        assert!(evil.to_string().contains("kms.allowed_endpoints"), "{evil}");
        // Listed and default endpoints pass this check (opening may still want a region).
        for allowed in ["awskms://kms.internal:4566/alias/x", "awskms:///alias/x"] {
            if let Err(e) = kms.open(allowed) {
                assert!(
                    !e.to_string().contains("allowed_endpoints"),
                    "{allowed}: {e}"
                );
            }
        }
    }

    #[test]
    fn redacts_userinfo() {
        assert_eq!(redact_uri("local://a"), "local://a");
        assert_eq!(
            redact_uri("awskms://AKIA:secret@localhost:4566/alias/x"),
            "awskms://<redacted>@localhost:4566/alias/x"
        );
        assert_eq!(redact_uri("user:secret@host"), "<redacted>");
        assert_eq!(
            redact_uri("hashivault://key@v2"),
            "hashivault://<redacted>@v2"
        );
    }

    #[test]
    fn unknown_and_malformed_uris() {
        let kms = Kms::new(KmsConfig::new("/nonexistent"));
        let e = kms.open("no-scheme").expect_err("no scheme");
        assert!(matches!(e.kind, KmsErrorKind::InvalidUri(_)), "{e}");
        let e = kms.open("foo://bar").expect_err("unknown scheme");
        assert!(matches!(e.kind, KmsErrorKind::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("unknown KMS scheme \"foo\""), "{e}");
        let e = kms
            .open("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k")
            .expect_err("gcpkms is not built");
        assert!(matches!(e.kind, KmsErrorKind::Unsupported(_)), "{e}");
    }
}
