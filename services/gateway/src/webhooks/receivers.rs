//! The configured receivers, with their secrets read at start, and the counters every
//! receiver keeps (for logs now, and for the metrics endpoint to read).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderName;
use serde::Serialize;
use signet_runtime::secret::{read_secret_file, SecretError};
use signet_runtime::settings::{ReceiverSettings, WebhookSettings};

use super::auth::Guard;
use super::ReceiverKind;

/// Why the receivers could not be set up: reported at start, so a deployment with a
/// missing secret fails at once rather than refusing every webhook.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverSetupError {
    #[error("webhooks.{receiver}: cannot read its secret")]
    Secret {
        receiver: &'static str,
        #[source]
        source: SecretError,
    },
    #[error("webhooks.{receiver}.token_header: {header:?} is not an HTTP header name")]
    Header {
        receiver: &'static str,
        header: String,
    },
    #[error("webhooks.{0}: no way to authenticate its sender is configured; set token_file, hmac_secret_file, url_secret_file (acr) or insecure_no_auth = true")]
    NoAuth(&'static str),
}

/// One enabled receiver.
#[derive(Debug)]
pub struct Receiver {
    pub kind: ReceiverKind,
    pub guard: Guard,
    /// The registry host for image references, instead of the one events name.
    pub registry: Option<String>,
}

/// Every receiver, enabled or not, and what they share.
#[derive(Debug)]
pub struct Receivers {
    receivers: [Option<Receiver>; 4],
    pub body_limit: usize,
    pub replay_window: Duration,
    pub stats: WebhookStats,
}

impl Default for Receivers {
    /// Every receiver off.
    fn default() -> Self {
        let defaults = WebhookSettings::default();
        Self {
            receivers: [None, None, None, None],
            body_limit: defaults.body_limit_bytes,
            replay_window: defaults.replay_window,
            stats: WebhookStats::default(),
        }
    }
}

impl Receivers {
    /// Reads every configured receiver's secret. Settings validation has already refused
    /// receivers without exactly one way to authenticate.
    pub fn from_settings(settings: &WebhookSettings) -> Result<Self, ReceiverSetupError> {
        let mut out = Self {
            body_limit: settings.body_limit_bytes,
            replay_window: settings.replay_window,
            ..Self::default()
        };
        for kind in ReceiverKind::ALL {
            let configured = match kind {
                ReceiverKind::Distribution => &settings.distribution,
                ReceiverKind::Harbor => &settings.harbor,
                ReceiverKind::Acr => &settings.acr,
                ReceiverKind::Generic => &settings.generic,
            };
            if let Some(r) = configured {
                out.receivers[kind.index()] = Some(receiver(kind, r)?);
            }
        }
        Ok(out)
    }

    /// With `receiver` enabled (tests, and callers that build receivers themselves).
    pub fn with(mut self, receiver: Receiver) -> Self {
        let i = receiver.kind.index();
        self.receivers[i] = Some(receiver);
        self
    }

    pub fn get(&self, kind: ReceiverKind) -> Option<&Receiver> {
        self.receivers[kind.index()].as_ref()
    }
}

fn receiver(kind: ReceiverKind, r: &ReceiverSettings) -> Result<Receiver, ReceiverSetupError> {
    let name = kind.name();
    let secret = |path| {
        read_secret_file(path).map_err(|source| ReceiverSetupError::Secret {
            receiver: name,
            source,
        })
    };
    let guard = if let Some(path) = &r.token_file {
        let header = r.token_header.as_deref().unwrap_or("authorization");
        Guard::Token {
            header: HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(
                |_| ReceiverSetupError::Header {
                    receiver: name,
                    header: header.to_owned(),
                },
            )?,
            token: secret(path)?,
        }
    } else if let Some(path) = &r.hmac_secret_file {
        Guard::Hmac { key: secret(path)? }
    } else if let Some(path) = &r.url_secret_file {
        Guard::UrlSecret {
            secret: secret(path)?,
        }
    } else if r.insecure_no_auth {
        tracing::warn!(
            receiver = name,
            "webhook receiver accepts unauthenticated requests (insecure_no_auth = true)"
        );
        Guard::Open
    } else {
        return Err(ReceiverSetupError::NoAuth(name));
    };
    tracing::info!(receiver = name, auth = ?guard, registry = ?r.registry, "webhook receiver enabled at /v1/webhooks/{name}");
    Ok(Receiver {
        kind,
        guard,
        registry: r.registry.clone(),
    })
}

/// What one receiver has seen since the process started.
#[derive(Debug, Default)]
pub struct ReceiverStats {
    /// Requests that passed authentication.
    pub deliveries: AtomicU64,
    /// Requests refused: bad credentials or signature.
    pub unauthenticated: AtomicU64,
    /// HMAC-signed requests refused because their delivery id was seen before.
    pub replays: AtomicU64,
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
    pub malformed: u64,
    pub events: u64,
    pub ignored: u64,
    pub unmatched: u64,
    pub jobs: u64,
    pub unavailable: u64,
}

/// Every receiver's counters.
#[derive(Debug, Default)]
pub struct WebhookStats {
    by_receiver: [ReceiverStats; 4],
}

impl WebhookStats {
    pub fn receiver(&self, kind: ReceiverKind) -> &ReceiverStats {
        &self.by_receiver[kind.index()]
    }

    /// Counters by receiver name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, ReceiverCounts> {
        ReceiverKind::ALL
            .into_iter()
            .map(|k| (k.name(), self.receiver(k).snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_at_start_and_named_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").expect("write");
        let settings = WebhookSettings {
            distribution: Some(ReceiverSettings {
                token_file: Some(token.clone()),
                registry: Some("registry.example.com".into()),
                ..ReceiverSettings::default()
            }),
            acr: Some(ReceiverSettings {
                url_secret_file: Some(token),
                ..ReceiverSettings::default()
            }),
            ..WebhookSettings::default()
        };
        let r = Receivers::from_settings(&settings).expect("receivers");
        let d = r.get(ReceiverKind::Distribution).expect("distribution on");
        assert!(matches!(d.guard, Guard::Token { .. }));
        assert_eq!(d.registry.as_deref(), Some("registry.example.com"));
        assert!(matches!(
            r.get(ReceiverKind::Acr).map(|a| &a.guard),
            Some(Guard::UrlSecret { .. })
        ));
        assert!(r.get(ReceiverKind::Harbor).is_none());
        assert!(!format!("{r:?}").contains("t0ken"), "secrets never print");

        let missing = WebhookSettings {
            harbor: Some(ReceiverSettings {
                hmac_secret_file: Some(dir.path().join("absent")),
                ..ReceiverSettings::default()
            }),
            ..WebhookSettings::default()
        };
        let err = Receivers::from_settings(&missing).expect_err("missing file");
        assert_eq!(err.to_string(), "webhooks.harbor: cannot read its secret");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn counters_snapshot_by_receiver() {
        let stats = WebhookStats::default();
        ReceiverStats::add(&stats.receiver(ReceiverKind::Harbor).unmatched, 2);
        let snap = stats.snapshot();
        assert_eq!(snap["harbor"].unmatched, 2);
        assert_eq!(snap["distribution"], ReceiverCounts::default());
    }
}
