//! Key discovery for the console's key picker: which keys each configured provider can
//! see, and which of them a witness could sign with.
//!
//! An admin creating a witness otherwise has to know the key URI by heart and learns only
//! at creation that the key is symmetric, encrypt-only or disabled. [`Kms::discover`]
//! lists what the environment's credentials can see, marks what signet cannot use with
//! the reason, and gives each key the URI [`Kms::open`] takes, so picking a key is the
//! same as typing its URI.
//!
//! A provider is listed only when the environment configures it (see [`Kms::discover`]):
//! a development setup without cloud credentials must not show cloud errors. Each
//! provider lists with its own client, credentials and checks, so the rule that decides
//! "usable" here is the one `describe` applies when the witness is created. Listing never
//! creates or changes a key (the local KMS creates a key on first `describe`, so a local
//! key directory without a version is reported, not described).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::alibaba::AlibabaProvider;
use crate::aws::AwsProvider;
use crate::error::KmsError;
use crate::vault::VaultProvider;
use crate::Kms;

/// At most this many keys are listed per provider: the picker is a `<select>`, and an AWS
/// account's AWS-managed keys alone can run into the hundreds.
pub const MAX_KEYS: usize = 1000;

/// How many keys of one provider are described at once. Describing is one call per key
/// (there is no bulk describe in any of the KMS APIs), so doing them one by one would not
/// fit a large account into the timeout; more at once would eat into the KMS's request
/// quota that signing shares.
const CONCURRENCY: usize = 8;

/// One key a provider can see.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyListing {
    /// What `Kms::open` (and `POST /v1/witnesses` as `kms_key`) takes for this key.
    pub uri: String,
    /// `local`, `hashivault`, `awskms` or `alikms`.
    pub provider: &'static str,
    /// The provider's name for the key: the local key name, the transit key name, the
    /// AWS or Alibaba key id.
    pub name: String,
    /// The key type: `RSA_<bits>` for the local KMS, the KeySpec for AWS and Alibaba
    /// (`RSA_2048`, `ECC_NIST_P256`, `SYMMETRIC_DEFAULT`, `Aliyun_AES_256`), Vault's
    /// type upper-cased (`RSA_2048`, `AES256_GCM96`); `None` when it could not be read.
    pub algorithm: Option<String>,
    /// Whether a witness can sign with the key now.
    pub usable: bool,
    /// Why not, when it cannot: "KeyUsage ENCRYPT_DECRYPT", "KeyState Disabled", ...
    pub reason: Option<String>,
}

impl KeyListing {
    /// A listing; `problem` is the reason the key is unusable, if it is.
    pub(crate) fn new(
        provider: &'static str,
        uri: String,
        name: String,
        algorithm: Option<String>,
        problem: Option<String>,
    ) -> Self {
        Self {
            uri,
            provider,
            name,
            algorithm,
            usable: problem.is_none(),
            reason: problem,
        }
    }
}

/// How listing went for one configured provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderListing {
    /// `local`, `hashivault`, `awskms` or `alikms`.
    pub provider: &'static str,
    /// Why the provider could not list (it then contributed no keys), or why its list is
    /// incomplete (more than [`MAX_KEYS`] keys). Never holds a credential.
    pub error: Option<String>,
}

/// What the configured providers can see.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Discovery {
    /// One entry per configured provider, in the order local, hashivault, awskms,
    /// alikms; providers the environment does not configure are absent.
    pub providers: Vec<ProviderListing>,
    /// Usable keys first, then by URI.
    pub keys: Vec<KeyListing>,
}

/// What one provider listed: its keys, and a note when the list was cut at [`MAX_KEYS`].
#[derive(Debug, Default)]
pub(crate) struct Listed {
    pub keys: Vec<KeyListing>,
    pub truncated: bool,
}

/// The clients discovery lists with, kept in the [`Kms`] so that a Vault login or an
/// Alibaba STS exchange is reused by the next discovery instead of repeated.
#[derive(Debug, Default)]
pub(crate) struct Listers {
    pub vault: Option<Arc<VaultProvider>>,
    pub aws: Option<Arc<AwsProvider>>,
    pub alibaba: Option<Arc<AlibabaProvider>>,
}

/// A provider failure for [`ProviderListing::error`]: what went wrong and the request id,
/// without the `<provider> key <uri>:` prefix, which names no key here.
pub(crate) fn message(e: &KmsError) -> String {
    match &e.request_id {
        Some(id) => format!("{} (request id {id})", e.kind),
        None => e.kind.to_string(),
    }
}

impl Kms {
    /// Lists the keys every configured provider can see, each marked usable or not with
    /// the reason. Never fails: a provider that cannot list (unreachable, credentials
    /// refused) gets an error in [`Discovery::providers`] and the others still list.
    ///
    /// Which providers are configured:
    /// - `local`: when [`crate::KmsConfig::allow_local`]; its keys are the directories
    ///   of `<data_dir>/kms/`.
    /// - `hashivault`: when `VAULT_ADDR` is set; lists the transit mount
    ///   (`TRANSIT_SECRET_ENGINE_PATH`) with the auth `hashivault://` keys use.
    /// - `awskms`: when an AWS region is set (`AWS_REGION`, `AWS_DEFAULT_REGION`, the
    ///   shared config file) or credentials are named in the environment; lists at the
    ///   endpoint `awskms:///KEY` keys use (`AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`, or
    ///   AWS's), so the URIs it gives name no endpoint and pass
    ///   [`crate::KmsConfig::allowed_endpoints`].
    /// - `alikms`: when `ALIBABA_CLOUD_REGION_ID` is set (key URIs name their region, so
    ///   listing needs one) or Alibaba credentials are named in the environment.
    ///
    /// The providers list concurrently, each within [`crate::KmsConfig::timeout`] as a
    /// whole. A key is usable when the provider's own check (the one `describe` applies)
    /// accepts it and [`Kms::open`] accepts its URI.
    pub async fn discover(&self) -> Discovery {
        let timeout = self.config().timeout;
        let (local, vault, aws, alibaba) = tokio::join!(
            within(timeout, "local", self.discover_local()),
            within(timeout, "hashivault", self.discover_vault()),
            within(timeout, "awskms", self.discover_aws()),
            within(timeout, "alikms", self.discover_alibaba()),
        );

        let mut providers = Vec::new();
        let mut keys = Vec::new();
        for (provider, result) in [local, vault, aws, alibaba].into_iter().flatten() {
            let error = match result {
                Ok(listed) => {
                    keys.extend(listed.keys);
                    listed.truncated.then(|| {
                        format!("only the first {MAX_KEYS} keys are listed; give another key by its URI")
                    })
                }
                Err(e) => {
                    tracing::warn!(provider, error = %e, "KMS key discovery failed");
                    Some(e)
                }
            };
            providers.push(ProviderListing { provider, error });
        }
        for key in keys.iter_mut().filter(|k| k.usable) {
            // The provider's check passed; the URI must also be one a witness can be
            // created with (kms.allow_local_keys, kms.allowed_endpoints, URI syntax).
            if let Err(e) = self.check_opens(&key.uri) {
                key.usable = false;
                key.reason = Some(message(&e));
            }
        }
        keys.sort_by(|a, b| b.usable.cmp(&a.usable).then_with(|| a.uri.cmp(&b.uri)));
        Discovery { providers, keys }
    }

    async fn discover_local(&self) -> Option<Result<Listed, String>> {
        if !self.config().allow_local {
            return None;
        }
        Some(self.list_local(self.config().data_dir.join("kms")).await)
    }

    /// Every directory of `<data_dir>/kms/` is a key (`<NAME>/v<N>.pk8`); each is
    /// opened and described by the local provider, which checks it is RSA >= 2048.
    async fn list_local(&self, dir: PathBuf) -> Result<Listed, String> {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            // No local key was ever made.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listed::default()),
            Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
        };
        let mut names = Vec::new();
        let list_error = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
        while let Some(entry) = entries.next_entry().await.map_err(list_error)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Dot names are temporary files and editors' leftovers, not keys.
            if name.starts_with('.') || !entry.file_type().await.map_err(list_error)?.is_dir() {
                continue;
            }
            names.push(name);
        }
        names.sort();
        let truncated = names.len() > MAX_KEYS;
        names.truncate(MAX_KEYS);

        let mut keys = Vec::new();
        let mut to_describe = Vec::new();
        for name in names {
            let uri = format!("local://{name}");
            let unusable = |reason: String| {
                KeyListing::new("local", uri.clone(), name.clone(), None, Some(reason))
            };
            match self.open(&uri) {
                Err(e) => keys.push(unusable(message(&e))),
                // `describe` would create v1 of a key that has none: listing must not.
                Ok(_) if !has_versions(&dir.join(&name)).await => keys.push(unusable(
                    "no key version yet (the key directory holds no v<N>.pk8 file)".into(),
                )),
                Ok(provider) => to_describe.push((name, provider)),
            }
        }
        keys.extend(
            describe_all(to_describe, |(name, provider)| async move {
                let uri = provider.uri().to_owned();
                match provider.describe().await {
                    Ok(d) => {
                        let bits = d.primary().map(|v| v.public_key.bits());
                        KeyListing::new("local", uri, name, bits.map(|b| format!("RSA_{b}")), None)
                    }
                    Err(e) => KeyListing::new("local", uri, name, None, Some(message(&e))),
                }
            })
            .await,
        );
        Ok(Listed { keys, truncated })
    }

    async fn discover_vault(&self) -> Option<Result<Listed, String>> {
        self.config().environment.get("VAULT_ADDR")?;
        Some(
            async {
                let lister = self.vault_lister().map_err(|e| message(&e))?;
                let mut names = lister.list_key_names().await.map_err(|e| message(&e))?;
                names.sort();
                let truncated = names.len() > MAX_KEYS;
                names.truncate(MAX_KEYS);
                let keys = describe_all(names, move |name| {
                    let lister = Arc::clone(&lister);
                    async move { lister.list_entry(&name).await }
                })
                .await;
                Ok(Listed { keys, truncated })
            }
            .await,
        )
    }

    async fn discover_aws(&self) -> Option<Result<Listed, String>> {
        let env = &self.config().environment;
        let region = crate::aws::resolve_region(env, None);
        let named = [
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ]
        .iter()
        .any(|v| env.get(v).is_some());
        if region.is_err() && !named {
            return None;
        }
        Some(
            async {
                let lister = self.aws_lister(region?).map_err(|e| message(&e))?;
                let (ids, truncated) = lister
                    .list_key_ids(MAX_KEYS)
                    .await
                    .map_err(|e| message(&e))?;
                let keys = describe_all(ids, move |id| {
                    let lister = Arc::clone(&lister);
                    async move { lister.list_entry(&id).await }
                })
                .await;
                Ok(Listed { keys, truncated })
            }
            .await,
        )
    }

    async fn discover_alibaba(&self) -> Option<Result<Listed, String>> {
        let env = &self.config().environment;
        let region = env.get("ALIBABA_CLOUD_REGION_ID");
        let named = [
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ROLE_ARN",
            "ALIBABA_CLOUD_ECS_METADATA",
        ]
        .iter()
        .any(|v| env.get(v).is_some());
        if region.is_none() && !named {
            return None;
        }
        Some(
            async {
                let region = region.ok_or(
                    "no Alibaba Cloud region to list keys in: set ALIBABA_CLOUD_REGION_ID (e.g. cn-hangzhou); alikms:// key URIs name their region",
                )?;
                let lister = self.alibaba_lister(region).map_err(|e| message(&e))?;
                let (ids, truncated) = lister
                    .list_key_ids(MAX_KEYS)
                    .await
                    .map_err(|e| message(&e))?;
                let keys = describe_all(ids, move |id| {
                    let lister = Arc::clone(&lister);
                    async move { lister.list_entry(&id).await }
                })
                .await;
                Ok(Listed { keys, truncated })
            }
            .await,
        )
    }
}

/// One provider's listing (`None`: not configured), cut off after `timeout`.
async fn within(
    timeout: Duration,
    provider: &'static str,
    listing: impl Future<Output = Option<Result<Listed, String>>>,
) -> Option<(&'static str, Result<Listed, String>)> {
    match tokio::time::timeout(timeout, listing).await {
        Ok(listed) => listed.map(|result| (provider, result)),
        Err(_) => Some((
            provider,
            Err(format!(
                "listing did not finish within the configured KMS timeout ({timeout:?})"
            )),
        )),
    }
}

/// Whether a local key directory holds at least one version file.
async fn has_versions(key_dir: &Path) -> bool {
    let Ok(mut entries) = tokio::fs::read_dir(key_dir).await else {
        return false;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| crate::local::parse_file_name(n).is_some())
        {
            return true;
        }
    }
    false
}

/// Runs `describe` for every item, [`CONCURRENCY`] at a time. The tasks end with the
/// caller: dropping the returned future (the discovery timeout) aborts them.
async fn describe_all<T, F, Fut>(items: Vec<T>, describe: F) -> Vec<KeyListing>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = KeyListing> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(items.len());
    let mut collect = |joined: Result<KeyListing, tokio::task::JoinError>| match joined {
        Ok(listing) => out.push(listing),
        // Describing does not panic; if it ever did, that key is left out rather than
        // the whole provider.
        Err(e) => tracing::error!(error = %e, "describing a key for discovery failed"),
    };
    for item in items {
        if tasks.len() >= CONCURRENCY {
            if let Some(joined) = tasks.join_next().await {
                collect(joined);
            }
        }
        tasks.spawn(describe(item));
    }
    while let Some(joined) = tasks.join_next().await {
        collect(joined);
    }
    out
}

/// A provider's key type as the listing shows it: `rsa-2048` -> `RSA_2048`.
pub(crate) fn algorithm_name(key_type: &str) -> String {
    key_type.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KmsErrorKind;

    #[test]
    fn provider_errors_drop_the_key_prefix_and_keep_the_request_id() {
        let e = KmsError::new(
            "awskms",
            "awskms:///",
            KmsErrorKind::PermissionDenied("AccessDeniedException: no kms:ListKeys".into()),
        )
        .with_request_id(Some("req-1".into()));
        assert_eq!(
            message(&e),
            "permission denied: AccessDeniedException: no kms:ListKeys (request id req-1)"
        );
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(algorithm_name("rsa-2048"), "RSA_2048");
        assert_eq!(algorithm_name("aes256-gcm96"), "AES256_GCM96");
    }

    #[test]
    fn listings_serialize_as_the_api_shows_them() {
        let d = Discovery {
            providers: vec![ProviderListing {
                provider: "hashivault",
                error: None,
            }],
            keys: vec![KeyListing::new(
                "hashivault",
                "hashivault://k".into(),
                "k".into(),
                Some("ECDSA_P256".into()),
                Some("type ecdsa-p256 is not RSA".into()),
            )],
        };
        assert_eq!(
            serde_json::to_value(&d).expect("json"),
            serde_json::json!({
                "providers": [{"provider": "hashivault", "error": null}],
                "keys": [{"uri": "hashivault://k", "provider": "hashivault", "name": "k",
                          "algorithm": "ECDSA_P256", "usable": false,
                          "reason": "type ecdsa-p256 is not RSA"}]
            })
        );
    }

    #[tokio::test]
    async fn describes_with_bounded_concurrency_and_keeps_every_result() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let out = describe_all((0..30).collect(), |i: u32| {
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                running.fetch_sub(1, SeqCst);
                KeyListing::new("local", format!("local://k{i}"), i.to_string(), None, None)
            }
        })
        .await;
        assert_eq!(out.len(), 30);
        let p = peak.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=CONCURRENCY).contains(&p), "peak {p}");
    }
}
