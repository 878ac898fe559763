//! The configured receivers, with their secrets read at start, their registry binding
//! and repository scope, and the counters every receiver keeps (for logs, the stats
//! answer and the metrics endpoint).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderName;
use serde::Serialize;
use signet_runtime::secret::{read_secret_file, SecretError};
use signet_runtime::settings::{ConfiguredReceiver, WebhookSettings};

use super::auth::Guard;
use super::ReceiverKind;
use crate::scope::Scope;

/// Why the receivers could not be set up: reported at start, so a deployment with a
/// missing secret fails at once rather than refusing every webhook.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverSetupError {
    #[error("{receiver}: cannot read its secret")]
    Secret {
        receiver: String,
        #[source]
        source: SecretError,
    },
    #[error("{receiver}.token_header: {header:?} is not an HTTP header name")]
    Header { receiver: String, header: String },
    #[error("{0}: no way to authenticate its sender is configured; set token_file, hmac_secret_file, url_secret_file (acr) or insecure_no_auth = true")]
    NoAuth(String),
    #[error("{0}.registry: required for {1} receivers: name the registry host the receiver speaks for; events naming another host are refused")]
    NoRegistry(String, ReceiverKind),
    #[error("{0}.kind: {1:?} is not a receiver kind; use distribution, harbor, acr or generic")]
    Kind(String, String),
    #[error("{0}.repositories: {1}")]
    Scope(String, String),
}

/// One enabled receiver.
#[derive(Debug)]
pub struct Receiver {
    pub kind: ReceiverKind,
    /// `None`: the receiver at `/v1/webhooks/<kind>`; a name: `/v1/webhooks/<kind>/<name>`.
    pub name: Option<String>,
    pub guard: Guard,
    /// The registry host this receiver speaks for: the host of every image it signs.
    /// Only the generic receiver may go without one (its sign requests name the image).
    pub registry: Option<String>,
    /// Other names events may give the registry; signed under `registry`.
    pub event_hosts: Vec<String>,
    /// Repositories this receiver may have signed; `None`: every one.
    pub scope: Option<Scope>,
    pub stats: ReceiverStats,
}

impl Receiver {
    /// An unnamed receiver with no registry binding and no scope; see the builders.
    pub fn new(kind: ReceiverKind, guard: Guard) -> Self {
        Self {
            kind,
            name: None,
            guard,
            registry: None,
            event_hosts: Vec::new(),
            scope: None,
            stats: ReceiverStats::default(),
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn registry(mut self, host: &str) -> Self {
        self.registry = Some(host.to_owned());
        self
    }

    pub fn event_hosts(mut self, hosts: &[&str]) -> Self {
        self.event_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    pub fn scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope;
        self
    }

    /// `distribution` or `distribution/staging`: the name in logs, metrics, job sources
    /// and the stats answer.
    pub fn id(&self) -> String {
        match &self.name {
            None => self.kind.name().to_owned(),
            Some(n) => format!("{}/{n}", self.kind),
        }
    }

    /// Whether an event naming `host` may come from this receiver's registry.
    pub fn speaks_for(&self, host: &str) -> bool {
        let same = |h: &String| h.eq_ignore_ascii_case(host);
        self.registry.iter().any(same) || self.event_hosts.iter().any(same)
    }
}

/// Every enabled receiver, and what they share.
#[derive(Debug)]
pub struct Receivers {
    receivers: Vec<Receiver>,
    pub body_limit: usize,
    pub replay_window: Duration,
    /// How far a signed `webhook-timestamp` may be from now, either way.
    pub timestamp_tolerance: Duration,
    /// The signing rules, compiled once per change.
    pub rules: super::rules::RulesCache,
}

impl Default for Receivers {
    /// Every receiver off.
    fn default() -> Self {
        let defaults = WebhookSettings::default();
        Self {
            receivers: Vec::new(),
            body_limit: defaults.body_limit_bytes,
            replay_window: defaults.replay_window,
            timestamp_tolerance: defaults.timestamp_tolerance,
            rules: Default::default(),
        }
    }
}

impl Receivers {
    /// Reads every configured receiver's secret. Settings validation has already refused
    /// bad receivers; what the gateway depends on is checked again here, for callers that
    /// build settings themselves.
    pub fn from_settings(settings: &WebhookSettings) -> Result<Self, ReceiverSetupError> {
        let mut out = Self {
            body_limit: settings.body_limit_bytes,
            replay_window: settings.replay_window,
            timestamp_tolerance: settings.timestamp_tolerance,
            ..Self::default()
        };
        for configured in settings.receivers() {
            out.receivers.push(receiver(&configured)?);
        }
        Ok(out)
    }

    /// With `receiver` enabled (tests, and callers that build receivers themselves); it
    /// replaces one of the same kind and name.
    pub fn with(mut self, receiver: Receiver) -> Self {
        self.receivers
            .retain(|r| !(r.kind == receiver.kind && r.name == receiver.name));
        self.receivers.push(receiver);
        self
    }

    /// The receiver of `kind` named `name` (`None`: the unnamed one).
    pub fn get(&self, kind: ReceiverKind, name: Option<&str>) -> Option<&Receiver> {
        self.receivers
            .iter()
            .find(|r| r.kind == kind && r.name.as_deref() == name)
    }

    /// Counters by receiver: every kind's unnamed receiver (zero when it is off), and
    /// each named one as `kind/name`.
    pub fn snapshot(&self) -> BTreeMap<String, ReceiverCounts> {
        let mut out: BTreeMap<String, ReceiverCounts> = ReceiverKind::ALL
            .into_iter()
            .map(|k| (k.name().to_owned(), ReceiverCounts::default()))
            .collect();
        for r in &self.receivers {
            out.insert(r.id(), r.stats.snapshot());
        }
        out
    }
}

fn receiver(c: &ConfiguredReceiver<'_>) -> Result<Receiver, ReceiverSetupError> {
    let key = c.key();
    let r = c.settings;
    let kind = ReceiverKind::ALL
        .into_iter()
        .find(|k| k.name() == c.kind)
        .ok_or_else(|| ReceiverSetupError::Kind(key.clone(), c.kind.to_owned()))?;
    let secret = |path| {
        read_secret_file(path).map_err(|source| ReceiverSetupError::Secret {
            receiver: key.clone(),
            source,
        })
    };
    let guard = if let Some(path) = &r.token_file {
        let header = r.token_header.as_deref().unwrap_or("authorization");
        Guard::Token {
            header: HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(
                |_| ReceiverSetupError::Header {
                    receiver: key.clone(),
                    header: header.to_owned(),
                },
            )?,
            token: secret(path)?,
        }
    } else if let Some(path) = &r.hmac_secret_file {
        Guard::Hmac {
            key: secret(path)?,
            allow_github: WebhookSettings::allows_github_signature(c.kind, r),
        }
    } else if let Some(path) = &r.url_secret_file {
        Guard::UrlSecret {
            secret: secret(path)?,
        }
    } else if r.insecure_no_auth {
        tracing::warn!(
            receiver = %key,
            "webhook receiver accepts unauthenticated requests (insecure_no_auth = true)"
        );
        Guard::Open
    } else {
        return Err(ReceiverSetupError::NoAuth(key));
    };
    if r.registry.is_none() && kind != ReceiverKind::Generic {
        return Err(ReceiverSetupError::NoRegistry(key, kind));
    }
    let scope =
        Scope::new(&r.repositories).map_err(|e| ReceiverSetupError::Scope(key.clone(), e))?;
    let mut out = Receiver::new(kind, guard).scope(scope);
    out.name = c.name.map(str::to_owned);
    out.registry = r.registry.clone();
    out.event_hosts = r.event_hosts.clone();
    let path = match &out.name {
        None => format!("/v1/webhooks/{kind}"),
        Some(n) => format!("/v1/webhooks/{kind}/{n}"),
    };
    tracing::info!(receiver = %out.id(), auth = ?out.guard, registry = ?out.registry, event_hosts = ?out.event_hosts, repositories = ?r.repositories, "webhook receiver enabled at {path}");
    Ok(out)
}

/// What one receiver has seen since the process started.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Requests that passed authentication.
    pub deliveries: AtomicU64,
    /// Requests refused: bad credentials or signature, or a stale timestamp.
    pub unauthenticated: AtomicU64,
    /// HMAC-signed requests refused because their delivery id was seen before.
    pub replays: AtomicU64,
    /// Events or requests refused because they name a registry or repository outside
    /// the receiver's binding (another host, outside `repositories`): never signed.
    pub foreign: AtomicU64,
    /// Bodies refused as malformed.
    pub malformed: AtomicU64,
    /// Events in accepted deliveries.
    pub events: AtomicU64,
    /// Events not signed: pulls, blobs, untagged manifests, attachment tags.
    pub ignored: AtomicU64,
    /// Pushes that no enabled signing rule matched: acknowledged, not signed.
    pub unmatched: AtomicU64,
    /// Sign jobs enqueued.
    pub jobs: AtomicU64,
    /// Deliveries answered 503 because the job queue did not take a job.
    pub unavailable: AtomicU64,
}

impl ReceiverStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ReceiverCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReceiverCounts {
            deliveries: get(&self.deliveries),
            unauthenticated: get(&self.unauthenticated),
            replays: get(&self.replays),
            foreign: get(&self.foreign),
            malformed: get(&self.malformed),
            events: get(&self.events),
            ignored: get(&self.ignored),
            unmatched: get(&self.unmatched),
            jobs: get(&self.jobs),
            unavailable: get(&self.unavailable),
        }
    }
}

/// A copy of one receiver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReceiverCounts {
    pub deliveries: u64,
    pub unauthenticated: u64,
    pub replays: u64,
    /// Refused for naming a registry or repository outside the receiver's binding.
    pub foreign: u64,
    pub malformed: u64,
    pub events: u64,
    pub ignored: u64,
    pub unmatched: u64,
    pub jobs: u64,
    pub unavailable: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_runtime::settings::ReceiverSettings;

    #[test]
    fn secrets_are_read_at_start_and_named_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").expect("write");
        let mut settings = WebhookSettings {
            distribution: Some(ReceiverSettings {
                token_file: Some(token.clone()),
                registry: Some("registry.example.com".into()),
                ..ReceiverSettings::default()
            }),
            acr: Some(ReceiverSettings {
                url_secret_file: Some(token.clone()),
                registry: Some("registry.cn-hangzhou.aliyuncs.com".into()),
                ..ReceiverSettings::default()
            }),
            ..WebhookSettings::default()
        };
        settings.receivers.insert(
            "staging".into(),
            ReceiverSettings {
                kind: Some("distribution".into()),
                hmac_secret_file: Some(token.clone()),
                registry: Some("staging.example.com".into()),
                repositories: vec!["staging.example.com/team/**".into()],
                ..ReceiverSettings::default()
            },
        );
        let r = Receivers::from_settings(&settings).expect("receivers");
        let d = r
            .get(ReceiverKind::Distribution, None)
            .expect("distribution on");
        assert!(matches!(d.guard, Guard::Token { .. }));
        assert_eq!(d.registry.as_deref(), Some("registry.example.com"));
        assert!(d.speaks_for("Registry.Example.com") && !d.speaks_for("staging.example.com"));
        let s = r
            .get(ReceiverKind::Distribution, Some("staging"))
            .expect("named receiver");
        assert!(matches!(
            s.guard,
            Guard::Hmac {
                allow_github: true,
                ..
            }
        ));
        assert_eq!(s.id(), "distribution/staging");
        assert!(s.scope.is_some());
        assert!(matches!(
            r.get(ReceiverKind::Acr, None).map(|a| &a.guard),
            Some(Guard::UrlSecret { .. })
        ));
        assert!(r.get(ReceiverKind::Harbor, None).is_none());
        assert!(r.get(ReceiverKind::Distribution, Some("prod")).is_none());
        assert!(!format!("{r:?}").contains("t0ken"), "secrets never print");

        let missing = WebhookSettings {
            harbor: Some(ReceiverSettings {
                hmac_secret_file: Some(dir.path().join("absent")),
                registry: Some("h.example".into()),
                ..ReceiverSettings::default()
            }),
            ..WebhookSettings::default()
        };
        let err = Receivers::from_settings(&missing).expect_err("missing file");
        assert_eq!(err.to_string(), "webhooks.harbor: cannot read its secret");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn registry_receivers_without_a_registry_do_not_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").expect("write");
        for kind in ["distribution", "harbor", "acr"] {
            let mut settings = WebhookSettings::default();
            settings.receivers.insert(
                "x".into(),
                ReceiverSettings {
                    kind: Some(kind.into()),
                    token_file: Some(token.clone()),
                    ..ReceiverSettings::default()
                },
            );
            let err = Receivers::from_settings(&settings).expect_err("no registry");
            assert!(
                err.to_string()
                    .starts_with("webhooks.receivers.x.registry: required"),
                "{err}"
            );
        }
        let generic = WebhookSettings {
            generic: Some(ReceiverSettings {
                hmac_secret_file: Some(token),
                ..ReceiverSettings::default()
            }),
            ..WebhookSettings::default()
        };
        let r = Receivers::from_settings(&generic).expect("generic needs no registry");
        assert!(matches!(
            r.get(ReceiverKind::Generic, None).map(|g| &g.guard),
            Some(Guard::Hmac {
                allow_github: false,
                ..
            })
        ));
    }

    #[test]
    fn counters_snapshot_by_receiver() {
        let r = Receivers::default()
            .with(Receiver::new(ReceiverKind::Harbor, Guard::Open))
            .with(Receiver::new(ReceiverKind::Harbor, Guard::Open).named("b"));
        let harbor = r.get(ReceiverKind::Harbor, None).expect("on");
        ReceiverStats::add(&harbor.stats.unmatched, 2);
        let snap = r.snapshot();
        assert_eq!(snap["harbor"].unmatched, 2);
        assert_eq!(snap["harbor/b"], ReceiverCounts::default());
        assert_eq!(snap["distribution"], ReceiverCounts::default());
    }
}
