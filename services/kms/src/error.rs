//! The one error type every provider returns.

use std::fmt;

/// What went wrong talking to a KMS, and whether trying again could help.
///
/// Display reads `<provider> key <key>: <kind>[ (request id <id>)]`, so a log line or a
/// failed job says which key failed and gives the request id a cloud provider's support
/// desk asks for. Neither field ever holds a secret: `key` is the key URI as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} key {key}: {kind}{}", RequestIdSuffix(.request_id.as_deref()))]
pub struct KmsError {
    /// `local`, `awskms`, `hashivault`, `alikms` (or `kms` when the URI named no provider).
    pub provider: &'static str,
    /// The key URI as configured.
    pub key: String,
    /// The provider's request id, when its answer carried one.
    pub request_id: Option<String>,
    pub kind: KmsErrorKind,
}

/// Why a KMS call failed. The strings say what happened in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsErrorKind {
    /// The KMS refused the call because of a rate limit or quota.
    Throttled(String),
    /// No answer within the configured timeout.
    Timeout,
    /// The KMS could not be reached, or answered with a server-side error.
    Unavailable(String),
    /// The key or key version does not exist.
    NotFound(String),
    /// The key exists but cannot make RSA signatures signet accepts.
    WrongKeyType(String),
    /// The credentials were refused or lack a permission.
    PermissionDenied(String),
    /// The key URI is malformed.
    InvalidUri(String),
    /// The provider or operation is not supported.
    Unsupported(String),
    /// Anything else; not worth retrying.
    Failed(String),
}

impl fmt::Display for KmsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Throttled(m) => write!(f, "throttled by the KMS, retry later: {m}"),
            Self::Timeout => f.write_str("the KMS did not answer within the configured timeout"),
            Self::Unavailable(m) => write!(f, "the KMS is unavailable: {m}"),
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::WrongKeyType(m) => write!(f, "the key cannot be used for signing: {m}"),
            Self::PermissionDenied(m) => write!(f, "permission denied: {m}"),
            Self::InvalidUri(m) => write!(f, "invalid key URI: {m}"),
            Self::Unsupported(m) => write!(f, "not supported: {m}"),
            Self::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl KmsError {
    pub fn new(provider: &'static str, key: impl Into<String>, kind: KmsErrorKind) -> Self {
        Self {
            provider,
            key: key.into(),
            request_id: None,
            kind,
        }
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    /// Whether the same call may succeed later: the worker pool retries these with backoff
    /// and dead-letters everything else.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            KmsErrorKind::Throttled(_) | KmsErrorKind::Timeout | KmsErrorKind::Unavailable(_)
        )
    }
}

struct RequestIdSuffix<'a>(Option<&'a str>);

impl fmt::Display for RequestIdSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (request id {id})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_provider_key_kind_and_request_id() {
        let e = KmsError::new("awskms", "awskms:///alias/prod", KmsErrorKind::Timeout);
        assert_eq!(
            e.to_string(),
            "awskms key awskms:///alias/prod: the KMS did not answer within the configured timeout"
        );
        let e = KmsError::new(
            "alikms",
            "alikms://cn-hangzhou/k",
            KmsErrorKind::Throttled("Rejected.Throttling".into()),
        )
        .with_request_id(Some("4C4F-77".into()));
        assert_eq!(
            e.to_string(),
            "alikms key alikms://cn-hangzhou/k: throttled by the KMS, retry later: Rejected.Throttling (request id 4C4F-77)"
        );
    }

    #[test]
    fn retryable_kinds() {
        let k = |kind| KmsError::new("local", "local://a", kind).retryable();
        assert!(k(KmsErrorKind::Throttled(String::new())));
        assert!(k(KmsErrorKind::Timeout));
        assert!(k(KmsErrorKind::Unavailable(String::new())));
        assert!(!k(KmsErrorKind::NotFound(String::new())));
        assert!(!k(KmsErrorKind::WrongKeyType(String::new())));
        assert!(!k(KmsErrorKind::PermissionDenied(String::new())));
        assert!(!k(KmsErrorKind::InvalidUri(String::new())));
        assert!(!k(KmsErrorKind::Unsupported(String::new())));
        assert!(!k(KmsErrorKind::Failed(String::new())));
    }
}
