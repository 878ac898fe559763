//! Registry webhooks, without I/O: what each registry sends (parsed strictly enough to
//! answer a malformed body with a precise 4xx), which events signet signs, which
//! witnesses sign them, and how each receiver authenticates its sender. The HTTP side
//! is `routes::webhooks`.
//!
//! Layout:
//! - [`RegistryEvent`] (here): the shape every registry's payload is reduced to.
//! - [`distribution`], [`harbor`], [`acr`]: the payloads of CNCF distribution, Harbor
//!   (default and CloudEvents formats) and Alibaba Cloud Container Registry.
//! - [`filter`]: only manifest pushes with a tag that is not a signature, attestation,
//!   SBOM or referrers tag are signed, so signet never signs its own output.
//! - [`rules`]: signing rules compiled to globs, and the witnesses an image matches.
//! - [`auth`]: static tokens, HMAC-SHA256 signatures with delivery ids, URL secrets.
//! - [`receivers`]: the configured receivers with their secrets, and their counters.

pub mod acr;
pub mod auth;
pub mod distribution;
pub mod filter;
pub mod harbor;
pub mod receivers;
pub mod rules;

use std::fmt;

pub use receivers::{ReceiverStats, Receivers};

/// The registries signet takes webhooks from, plus the generic sign-request receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReceiverKind {
    Distribution,
    Harbor,
    Acr,
    Generic,
}

impl ReceiverKind {
    pub const ALL: [ReceiverKind; 4] = [Self::Distribution, Self::Harbor, Self::Acr, Self::Generic];

    /// The name in URLs, settings and job sources.
    pub fn name(self) -> &'static str {
        match self {
            Self::Distribution => "distribution",
            Self::Harbor => "harbor",
            Self::Acr => "acr",
            Self::Generic => "generic",
        }
    }
}

impl fmt::Display for ReceiverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing a registry reports, reduced to what deciding and signing need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent {
    /// Names the event within its delivery, and stays the same when the registry sends
    /// the delivery again: the registry's event id, or the body's digest and position.
    pub key: String,
    /// Lowercase: `push`, `pull`, `mount`, `delete`, ...
    pub action: String,
    /// The registry host the event names, when it names one.
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    /// As the registry wrote it; checked when the event is one to sign.
    pub digest: Option<String>,
    /// The pushed content's media type, when the registry reports it.
    pub media_type: Option<String>,
}

/// Why a webhook body was refused: a precise, user-facing description of what is
/// wrong with it (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// Deserialises `body` as `T`, naming the JSON path of the first problem
/// (`events[1].target: missing field "repository"`).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    body: &[u8],
) -> Result<T, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." || path == "?" {
            PayloadError(format!("{what} is not valid: {inner}"))
        } else {
            PayloadError(format!("{what} is not valid at {path}: {inner}"))
        }
    })
}

/// The generic receiver's body (`POST /v1/webhooks/generic`): a sign request, witness
/// included. Public so the fuzz targets (services/fuzz) read it exactly as the route does.
pub fn parse_sign_request(body: &[u8]) -> Result<signet_core::SignRequest, PayloadError> {
    from_json("the sign request", body)
}

/// The registry host of `host/path...` (a Harbor `resource_url`, an `http://` URL).
pub(crate) fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_urls_and_references() {
        assert_eq!(
            host_of("harbor.dev/library/busybox:v1").as_deref(),
            Some("harbor.dev")
        );
        assert_eq!(
            host_of("http://127.0.0.1:5000/v2/demo/app/manifests/sha256:ab").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(host_of("").as_deref(), None);
    }

    #[test]
    fn json_errors_name_the_path() {
        #[derive(serde::Deserialize, Debug)]
        struct Outer {
            #[allow(dead_code)]
            items: Vec<Inner>,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Inner {
            #[allow(dead_code)]
            name: String,
        }
        let err = from_json::<Outer>("the envelope", br#"{"items":[{"name":"a"},{}]}"#)
            .expect_err("missing name");
        assert_eq!(
            err.to_string(),
            "the envelope is not valid at items[1]: missing field `name` at line 1 column 25"
        );
        let err = from_json::<Outer>("the envelope", b"nope").expect_err("not JSON");
        assert!(
            err.to_string()
                .starts_with("the envelope is not valid: expected"),
            "{err}"
        );
    }
}
