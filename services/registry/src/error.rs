//! What can go wrong talking to a registry, in words an operator can act on, and whether
//! trying again later can help ([`RegistryError::retryable`]).

use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciEnvelope, OciErrorCode};

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
    #[error("registry {registry} failed with HTTP {status} (accessing {repository}): {message}; the operation can be retried later")]
    Server {
        registry: String,
        repository: String,
        status: u16,
        message: String,
    },
    #[error(
        "registry {registry} rejected the request for {repository} with HTTP {status}: {message}; it will not succeed as is: check the registry's rules for this repository (immutable tags, quotas, allowed media types)"
    )]
    Rejected {
        registry: String,
        repository: String,
        status: u16,
        message: String,
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

    /// Classifies a non-success HTTP answer, using the distribution error envelope in the
    /// body when there is one.
    pub(crate) fn status(&self, status: u16, body: &[u8]) -> RegistryError {
        let envelope = serde_json::from_slice::<OciEnvelope>(body).ok();
        self.classify(status, envelope.as_ref(), &String::from_utf8_lossy(body))
    }

    fn classify(&self, status: u16, envelope: Option<&OciEnvelope>, raw: &str) -> RegistryError {
        let codes: Vec<&OciErrorCode> = envelope
            .map(|e| e.errors.iter().map(|e| &e.code).collect())
            .unwrap_or_default();
        let has = |c: OciErrorCode| codes.iter().any(|x| **x == c);
        if status == 401 || has(OciErrorCode::Unauthorized) {
            return self.unauthorized();
        }
        if status == 403 || has(OciErrorCode::Denied) {
            return self.denied();
        }
        if has(OciErrorCode::Toomanyrequests) || status == 429 {
            return RegistryError::Server {
                registry: self.registry.to_owned(),
                repository: self.repository.to_owned(),
                status: 429,
                message: "too many requests (rate limited)".to_owned(),
            };
        }
        let not_found_code = has(OciErrorCode::ManifestUnknown)
            || has(OciErrorCode::NameUnknown)
            || has(OciErrorCode::BlobUnknown)
            || has(OciErrorCode::NotFound);
        if status == 404 || (not_found_code && status < 500) {
            return self.not_found();
        }
        let message = match envelope {
            Some(env) if !env.errors.is_empty() => env
                .errors
                .iter()
                .map(|e| format!("{}: {}", code_name(&e.code), e.message))
                .collect::<Vec<_>>()
                .join("; "),
            _ => short(raw),
        };
        if status >= 500 {
            RegistryError::Server {
                registry: self.registry.to_owned(),
                repository: self.repository.to_owned(),
                status,
                message,
            }
        } else if (400..500).contains(&status) {
            RegistryError::Rejected {
                registry: self.registry.to_owned(),
                repository: self.repository.to_owned(),
                status,
                message,
            }
        } else {
            self.protocol(format!("unexpected HTTP {status}: {message}"))
        }
    }

    pub(crate) fn reqwest(&self, e: reqwest::Error, timeout: Duration) -> RegistryError {
        if e.is_timeout() {
            self.timeout(timeout)
        } else if e.is_connect() || e.is_request() || e.is_body() {
            self.unreachable(e)
        } else {
            self.protocol(e.to_string())
        }
    }

    /// Maps oci-client's error to ours.
    pub(crate) fn oci(&self, e: OciDistributionError, timeout: Duration) -> RegistryError {
        use OciDistributionError as O;
        match e {
            O::RequestError(e) => self.reqwest(e, timeout),
            O::IoError(e) => self.unreachable(e),
            O::UnauthorizedError { .. } => self.unauthorized(),
            // The token service refused the credentials.
            O::AuthenticationFailure(_) => self.unauthorized(),
            O::RegistryError { envelope, .. } => {
                let status = if envelope
                    .errors
                    .iter()
                    .any(|e| e.code == OciErrorCode::Toomanyrequests)
                {
                    429
                } else {
                    400
                };
                self.classify(status, Some(&envelope), "")
            }
            O::ServerError { code, message, .. } => {
                let envelope = serde_json::from_str::<OciEnvelope>(&message).ok();
                self.classify(code, envelope.as_ref(), &message)
            }
            other => self.protocol(other.to_string()),
        }
    }
}

fn code_name(code: &OciErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{code:?}"),
    }
}

/// Error bodies can be whole HTML pages; keep messages readable.
fn short(raw: &str) -> String {
    let t = raw.trim();
    if t.is_empty() {
        return "no details given".to_owned();
    }
    let mut s: String = t.chars().take(300).collect();
    if s.len() < t.len() {
        s.push('…');
    }
    s
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
        assert!(e.to_string().contains("MANIFEST_INVALID: bad"), "{e}");
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
    fn long_bodies_are_shortened() {
        let body = "x".repeat(1000);
        let e = ctx().status(500, body.as_bytes()).to_string();
        assert!(e.len() < 600, "{e}");
    }
}
