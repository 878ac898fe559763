//! What can go wrong talking to a registry, in words an operator can act on, and whether
//! trying again later can help ([`RegistryError::retryable`]).
//!
//! A registry's answer never reaches a message: whoever names the registry in an image
//! reference controls it, and the message travels back to them (job errors, `?wait`
//! answers, admission denials). Only the HTTP status and an OCI error code from the
//! distribution spec's list are kept; the rest of the body is logged at debug.

use std::time::Duration;

use crate::policy::{DestinationRefused, RedirectRefused};

/// The error codes of the OCI distribution spec (plus docker's `TOOMANYREQUESTS`). A code
/// outside this list is the registry's free text and is not repeated.
const OCI_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// The distribution error envelope, `{"errors":[{"code":…,"message":…}]}`; only codes are
/// read.
#[derive(serde::Deserialize)]
struct Envelope {
    errors: Vec<EnvelopeEntry>,
}

#[derive(serde::Deserialize)]
struct EnvelopeEntry {
    code: String,
}

/// A failed registry operation. Every variant names the registry host and repository.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} not found in repository {repository} on registry {registry}; check the repository name, tag or digest")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
    },
    #[error("registry {registry} refused {action} access to {repository} (HTTP 401): {hint}")]
    Unauthorized {
        registry: String,
        repository: String,
        action: &'static str,
        hint: String,
    },
    #[error("registry {registry} denied {action} access to {repository}: the credentials were accepted but lack permission; grant them {action} access to this repository")]
    Denied {
        registry: String,
        repository: String,
        action: &'static str,
    },
    #[error("registry {registry} is unreachable (accessing {repository}); check that it is running and reachable from this host; the operation can be retried")]
    Unreachable {
        registry: String,
        repository: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("registry {registry} did not finish within {timeout:?} (accessing {repository}); it may be overloaded, or raise the registry timeout; the operation can be retried")]
    Timeout {
        registry: String,
        repository: String,
        timeout: Duration,
    },
    /// `detail` is written by signet (the OCI error code, if any), never the registry's text.
    #[error("registry {registry} failed with HTTP {status} (accessing {repository}): {detail}; the operation can be retried later")]
    Server {
        registry: String,
        repository: String,
        status: u16,
        detail: String,
    },
    /// `detail` is written by signet (the OCI error code, if any), never the registry's text.
    #[error(
        "registry {registry} rejected the request for {repository} with HTTP {status}: {detail}; it will not succeed as is: check the registry's rules for this repository (immutable tags, quotas, allowed media types)"
    )]
    Rejected {
        registry: String,
        repository: String,
        status: u16,
        detail: String,
    },
    /// The destination policy or the redirect policy refused a connection.
    #[error("signet did not connect for registry {registry} (accessing {repository}): {reason}")]
    Refused {
        registry: String,
        repository: String,
        reason: String,
    },
    #[error("registry {registry} asks for credentials to be sent to the token service {realm}, which is {why}; signet did not send them. If that is the registry's genuine token service, add its host to realm_hosts of the registry.credentials entry for {registry}")]
    UntrustedTokenService {
        registry: String,
        realm: String,
        why: &'static str,
    },
    #[error("registry {registry} answered unexpectedly for {repository}: {detail}; it may not implement the OCI distribution API as expected")]
    Protocol {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("publishing a signature to {artifact} kept losing to concurrent writers after {attempts} attempts; the operation can be retried")]
    Conflict { artifact: String, attempts: u32 },
    #[error("registry client configuration is invalid: {0}")]
    Config(String),
}

impl RegistryError {
    /// True when the same call may succeed later: the registry was down, slow, overloaded
    /// (5xx, 429) or raced by another writer. Everything else needs a human to fix it.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Conflict { .. } => true,
            Self::Server { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// Where an error happened: filled into every variant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub registry: &'a str,
    pub repository: &'a str,
    /// `pull` or `push`.
    pub action: &'static str,
    /// What was asked for, for NotFound (`manifest v1`, `blob sha256:…`).
    pub what: &'a str,
    /// True when credentials were sent (changes the 401 advice).
    pub had_credentials: bool,
}

impl Ctx<'_> {
    pub(crate) fn not_found(&self) -> RegistryError {
        RegistryError::NotFound {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            what: self.what.to_owned(),
        }
    }

    pub(crate) fn unauthorized(&self) -> RegistryError {
        let hint = if self.had_credentials {
            format!(
                "the configured credentials for {} were rejected; check the username and password or token in signet's registry credentials or the docker config",
                self.registry
            )
        } else {
            format!(
                "no credentials are configured for {}; add them to signet's registry credentials or log in with `docker login {}`",
                self.registry, self.registry
            )
        };
        RegistryError::Unauthorized {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            action: self.action,
            hint,
        }
    }

    pub(crate) fn denied(&self) -> RegistryError {
        RegistryError::Denied {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            action: self.action,
        }
    }

    pub(crate) fn unreachable(
        &self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            source: source.into(),
        }
    }

    pub(crate) fn timeout(&self, timeout: Duration) -> RegistryError {
        RegistryError::Timeout {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            timeout,
        }
    }

    pub(crate) fn protocol(&self, detail: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn refused(&self, reason: impl std::fmt::Display) -> RegistryError {
        RegistryError::Refused {
            registry: self.registry.to_owned(),
            repository: self.repository.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Classifies a non-success HTTP answer. The body is logged at debug and otherwise only
    /// searched for OCI error codes from the spec's list.
    pub(crate) fn status(&self, status: u16, body: &[u8]) -> RegistryError {
        if !body.is_empty() {
            let shown = &body[..body.len().min(2048)];
            tracing::debug!(
                registry = self.registry,
                repository = self.repository,
                status,
                body = %String::from_utf8_lossy(shown),
                "registry answered with an error"
            );
        }
        let codes: Vec<&'static str> = serde_json::from_slice::<Envelope>(body)
            .map(|env| {
                env.errors
                    .iter()
                    .filter_map(|e| OCI_ERROR_CODES.iter().copied().find(|c| *c == e.code))
                    .collect()
            })
            .unwrap_or_default();
        self.classify(status, &codes)
    }

    fn classify(&self, status: u16, codes: &[&'static str]) -> RegistryError {
        let has = |c: &str| codes.contains(&c);
        if status == 401 || has("UNAUTHORIZED") {
            return self.unauthorized();
        }
        if status == 403 || has("DENIED") {
            return self.denied();
        }
        if has("TOOMANYREQUESTS") || status == 429 {
            return RegistryError::Server {
                registry: self.registry.to_owned(),
                repository: self.repository.to_owned(),
                status: 429,
                detail: "too many requests (rate limited)".to_owned(),
            };
        }
        let not_found_code = has("MANIFEST_UNKNOWN") || has("NAME_UNKNOWN") || has("BLOB_UNKNOWN");
        if status == 404 || (not_found_code && status < 500) {
            return self.not_found();
        }
        let detail = if codes.is_empty() {
            "the answer carries no OCI error code".to_owned()
        } else {
            format!("OCI error code {}", codes.join(", "))
        };
        if status >= 500 {
            RegistryError::Server {
                registry: self.registry.to_owned(),
                repository: self.repository.to_owned(),
                status,
                detail,
            }
        } else if (400..500).contains(&status) {
            RegistryError::Rejected {
                registry: self.registry.to_owned(),
                repository: self.repository.to_owned(),
                status,
                detail,
            }
        } else {
            self.protocol(format!("unexpected HTTP {status} ({detail})"))
        }
    }

    /// A transport failure. A connection the destination or redirect policy refused is not
    /// retryable and says which setting allows it.
    pub(crate) fn reqwest(&self, e: reqwest::Error, timeout: Duration) -> RegistryError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(r) = c.downcast_ref::<DestinationRefused>() {
                return self.refused(r);
            }
            if let Some(r) = c.downcast_ref::<RedirectRefused>() {
                return self.refused(r);
            }
            cause = c.source();
        }
        if e.is_timeout() {
            self.timeout(timeout)
        } else if e.is_redirect() {
            self.refused("the registry redirected in a way signet does not follow")
        } else if e.is_connect() || e.is_request() || e.is_body() {
            self.unreachable(e.without_url())
        } else {
            self.protocol(format!(
                "the answer could not be read ({})",
                e.without_url()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx {
            registry: "reg.example:5000",
            repository: "team/app",
            action: "pull",
            what: "manifest v1",
            had_credentials: false,
        }
    }

    #[test]
    fn statuses_and_codes_map_to_actionable_variants() {
        let c = ctx();
        let e = c.status(
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert!(e.is_not_found(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("reg.example:5000")
                && msg.contains("team/app")
                && msg.contains("manifest v1"),
            "{msg}"
        );
        assert!(matches!(
            c.status(401, b""),
            RegistryError::Unauthorized { .. }
        ));
        assert!(c
            .status(401, b"")
            .to_string()
            .contains("docker login reg.example:5000"));
        assert!(matches!(c.status(403, b""), RegistryError::Denied { .. }));
        assert!(matches!(
            c.status(400, br#"{"errors":[{"code":"DENIED","message":"no"}]}"#),
            RegistryError::Denied { .. }
        ));
        let e = c.status(
            400,
            br#"{"errors":[{"code":"MANIFEST_INVALID","message":"bad"}]}"#,
        );
        assert!(
            matches!(e, RegistryError::Rejected { status: 400, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("OCI error code MANIFEST_INVALID"),
            "{e}"
        );
        assert!(
            !e.to_string().contains("bad"),
            "the registry's text is not repeated: {e}"
        );
        assert!(!e.retryable());
        let e = c.status(503, b"<html>down</html>");
        assert!(
            matches!(e, RegistryError::Server { status: 503, .. }) && e.retryable(),
            "{e}"
        );
        let e = c.status(429, b"");
        assert!(e.retryable(), "{e}");
        assert!(matches!(c.status(302, b""), RegistryError::Protocol { .. }));
    }

    #[test]
    fn with_credentials_the_401_advice_changes() {
        let c = Ctx {
            had_credentials: true,
            ..ctx()
        };
        let msg = c.status(401, b"").to_string();
        assert!(
            msg.contains("credentials for reg.example:5000 were rejected"),
            "{msg}"
        );
    }

    #[test]
    fn retryable_kinds() {
        let c = ctx();
        assert!(c.timeout(Duration::from_secs(1)).retryable());
        assert!(c.unreachable(std::io::Error::other("refused")).retryable());
        assert!(!c.not_found().retryable());
        assert!(!c.unauthorized().retryable());
        assert!(!c.protocol("x").retryable());
        assert!(RegistryError::Conflict {
            artifact: "a".into(),
            attempts: 3
        }
        .retryable());
    }

    #[test]
    fn answer_bodies_never_reach_the_message() {
        let secret = "INTERNAL-SECRET aws_secret_access_key=wJalrXUtnFEMI";
        for (status, body) in [
            (418, secret.to_owned()),
            (500, format!("<html>{secret}</html>")),
            (
                400,
                format!(r#"{{"errors":[{{"code":"MANIFEST_INVALID","message":"{secret}"}}]}}"#),
            ),
            (
                400,
                format!(r#"{{"errors":[{{"code":"{secret}","message":"x"}}]}}"#),
            ),
        ] {
            let e = ctx().status(status, body.as_bytes()).to_string();
            assert!(!e.contains("INTERNAL-SECRET"), "{e}");
            assert!(e.contains(&format!("HTTP {status}")), "{e}");
        }
    }
}
