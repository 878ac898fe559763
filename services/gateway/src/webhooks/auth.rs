//! How a receiver knows a webhook comes from its registry. Each receiver uses one way:
//! - a static token in a header (`Authorization: Bearer TOKEN` or a bare value, or a
//!   header of its own): what distribution (`headers` in its endpoint config) and Harbor
//!   (the policy's "Auth Header") can send;
//! - an HMAC-SHA256 in the Standard Webhooks scheme (standardwebhooks.com):
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with
//!   `webhook-id` and `webhook-timestamp` (Unix seconds). The MAC covers the delivery id
//!   and the time, so a captured delivery cannot be sent again under another id, and a
//!   timestamp outside the tolerance is refused; the caller remembers ids for the replay
//!   window. The scheme is a few lines over `hmac`, and no maintained Rust crate for it
//!   is in the registry, so it is written here;
//! - only where the receiver allows it, GitHub's `X-Hub-Signature-256: sha256=<hex>`, an
//!   HMAC-SHA256 of the body alone, with an unsigned delivery id in `X-Delivery-Id` or
//!   `X-GitHub-Delivery`. It cannot stop a replay under a new delivery id; the caller
//!   treats such a delivery as body-only (the generic receiver then wants a digest);
//! - a secret in the URL, for Alibaba ACR, which can send nothing else. Weaker: URLs are
//!   written to access logs, proxies and the registry console.
//!
//! Every comparison of a secret is constant-time. No message names a secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use signet_runtime::secret::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The header GitHub-style senders put the body's HMAC in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Standard Webhooks: the delivery id, the send time (Unix seconds) and the signatures.
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// Standard Webhooks secrets are written `whsec_<base64 key>`.
const WHSEC_PREFIX: &str = "whsec_";
/// Headers a delivery id is taken from, in this order.
pub const DELIVERY_HEADERS: [&str; 2] = ["x-delivery-id", "x-github-delivery"];
/// Delivery ids longer than this are refused rather than stored.
const MAX_DELIVERY_ID: usize = 200;

/// How one receiver authenticates its sender.
pub enum Guard {
    Token {
        header: HeaderName,
        token: SecretString,
    },
    Hmac {
        key: SecretString,
        /// Also accept GitHub's body-only `X-Hub-Signature-256`.
        allow_github: bool,
    },
    UrlSecret {
        secret: SecretString,
    },
    /// `insecure_no_auth = true`.
    Open,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token { header, .. } => write!(f, "Guard::Token({header})"),
            Self::Hmac { allow_github, .. } => {
                write!(f, "Guard::Hmac(allow_github_signature={allow_github})")
            }
            Self::UrlSecret { .. } => f.write_str("Guard::UrlSecret"),
            Self::Open => f.write_str("Guard::Open"),
        }
    }
}

/// What a passed check tells about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The delivery id an HMAC-signed request names; the caller refuses repeats.
    pub delivery_id: Option<String>,
    /// Authenticated by a MAC of the body alone (`X-Hub-Signature-256`): the same body
    /// under a new delivery id passes again, so what it asks must not depend on when.
    pub body_only: bool,
}

impl Passed {
    fn plain() -> Self {
        Self {
            delivery_id: None,
            body_only: false,
        }
    }
}

fn equal(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

impl Guard {
    /// Checks a request; the error says what the sender must fix, never the secret.
    /// `tolerance`: how far a Standard Webhooks timestamp may be from now.
    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        url_secret: Option<&str>,
        tolerance: Duration,
    ) -> Result<Passed, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        self.check_at(headers, body, url_secret, tolerance, now)
    }

    /// [`Guard::check`] at `now` (Unix seconds).
    pub fn check_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        url_secret: Option<&str>,
        tolerance: Duration,
        now: i64,
    ) -> Result<Passed, String> {
        match self {
            Self::Open => Ok(Passed::plain()),
            Self::Token { header, token } => {
                let value = headers
                    .get(header)
                    .ok_or_else(|| format!("send the webhook token in the {header} header"))?;
                let value = value.as_bytes();
                // Harbor sends the configured "Auth Header" verbatim; distribution sends
                // whatever its config lists. Accept the token bare or as a bearer token.
                let presented = strip_bearer(value);
                if equal(presented, token.expose_secret().as_bytes()) {
                    Ok(Passed::plain())
                } else {
                    Err(format!(
                        "the token in the {header} header is not this receiver's"
                    ))
                }
            }
            Self::Hmac { key, allow_github } => {
                if headers.contains_key(WEBHOOK_SIGNATURE) || headers.contains_key(WEBHOOK_ID) {
                    return standard_webhook(key, headers, body, tolerance, now);
                }
                let standard = "send webhook-id, webhook-timestamp and webhook-signature: v1,<base64 HMAC-SHA256 of \"id.timestamp.body\"> (Standard Webhooks)";
                if !allow_github {
                    return Err(if headers.contains_key(SIGNATURE_HEADER) {
                        format!("this receiver does not accept X-Hub-Signature-256: it covers the body alone and cannot stop a replay; {standard}")
                    } else {
                        standard.to_owned()
                    });
                }
                let signature = headers
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        format!("{standard}, or X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>")
                    })?;
                let hex_part = signature.strip_prefix("sha256=").ok_or_else(|| {
                    "X-Hub-Signature-256 must read sha256=<hex HMAC-SHA256 of the body>".to_owned()
                })?;
                let presented = hex::decode(hex_part.trim()).map_err(|_| {
                    "X-Hub-Signature-256 must read sha256=<64 hex characters>".to_owned()
                })?;
                let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                    .map_err(|_| "the receiver's HMAC key is unusable".to_owned())?;
                mac.update(body);
                // verify_slice compares in constant time.
                mac.verify_slice(&presented).map_err(|_| {
                    "X-Hub-Signature-256 does not match the body (wrong secret, or the body was changed on the way)"
                        .to_owned()
                })?;
                let id = DELIVERY_HEADERS
                    .iter()
                    .find_map(|h| headers.get(*h))
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        "send a unique delivery id in X-Delivery-Id (or X-GitHub-Delivery) with every signed request"
                            .to_owned()
                    })?;
                if id.len() > MAX_DELIVERY_ID || id.chars().any(char::is_control) {
                    return Err(format!(
                        "the delivery id must be at most {MAX_DELIVERY_ID} printable characters"
                    ));
                }
                Ok(Passed {
                    delivery_id: Some(id.to_owned()),
                    body_only: true,
                })
            }
            Self::UrlSecret { secret } => {
                let presented = url_secret.ok_or_else(|| {
                    "put the receiver's secret in the URL: /v1/webhooks/acr/SECRET or ?secret=SECRET"
                        .to_owned()
                })?;
                if equal(presented.as_bytes(), secret.expose_secret().as_bytes()) {
                    Ok(Passed::plain())
                } else {
                    Err("the secret in the URL is not this receiver's".to_owned())
                }
            }
        }
    }
}

/// The Standard Webhooks check: the id and timestamp are under the MAC, the timestamp
/// is within `tolerance` of `now`, and one of the listed `v1` signatures matches.
fn standard_webhook(
    key: &SecretString,
    headers: &HeaderMap,
    body: &[u8],
    tolerance: Duration,
    now: i64,
) -> Result<Passed, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let id = header(WEBHOOK_ID).ok_or("send the delivery id in webhook-id")?;
    if id.len() > MAX_DELIVERY_ID || id.chars().any(char::is_control) {
        return Err(format!(
            "webhook-id must be at most {MAX_DELIVERY_ID} printable characters"
        ));
    }
    let timestamp = header(WEBHOOK_TIMESTAMP)
        .ok_or("send the send time in webhook-timestamp (Unix seconds)")?;
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| "webhook-timestamp must be Unix seconds (an integer)".to_owned())?;
    let skew = now.saturating_sub(sent).unsigned_abs();
    if skew > tolerance.as_secs() {
        return Err(format!(
            "webhook-timestamp is {skew} s away from the gateway's clock, more than the {} s allowed: a delivery is accepted only when it is fresh (resend it signed with the current time)",
            tolerance.as_secs()
        ));
    }
    let signatures = header(WEBHOOK_SIGNATURE)
        .ok_or("send webhook-signature: v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">")?;
    let mac = standard_mac(key.expose_secret(), id, sent, body)
        .ok_or("the receiver's HMAC key is unusable")?;
    let mut any_v1 = false;
    // Senders rotating keys list several signatures, space-separated; one must match.
    for candidate in signatures.split(' ').filter(|c| !c.is_empty()) {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        any_v1 = true;
        let Ok(presented) = STANDARD.decode(b64) else {
            continue;
        };
        // verify_slice compares in constant time.
        if mac.clone().verify_slice(&presented).is_ok() {
            return Ok(Passed {
                delivery_id: Some(id.to_owned()),
                body_only: false,
            });
        }
    }
    Err(if any_v1 {
        "webhook-signature does not match (wrong secret, or the id, timestamp or body was changed on the way)".to_owned()
    } else {
        "webhook-signature must list v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">".to_owned()
    })
}

/// The HMAC of `id.timestamp.body` under a Standard Webhooks secret (`whsec_<base64>`),
/// or under the raw bytes of any other secret.
fn standard_mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let key = match secret.strip_prefix(WHSEC_PREFIX) {
        Some(b64) => STANDARD.decode(b64).ok()?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// `v1,<base64>`: what a Standard Webhooks sender puts in `webhook-signature`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    match standard_mac(secret, id, timestamp, body) {
        Some(mac) => format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())),
        None => String::new(),
    }
}

fn strip_bearer(value: &[u8]) -> &[u8] {
    let trimmed = value.trim_ascii();
    if trimmed.len() > 7 && trimmed[..7].eq_ignore_ascii_case(b"bearer ") {
        trimmed[7..].trim_ascii()
    } else {
        trimmed
    }
}

/// `sha256=<hex>` of `body` under `key`: what a sender puts in `X-Hub-Signature-256`.
pub fn signature_header(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOLERANCE: Duration = Duration::from_secs(300);

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hmac_matches_the_github_vector() {
        // REFERENCE.md: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(
            signature_header(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let guard = Guard::Hmac {
            key: SecretString::from("It's a Secret to Everybody"),
            allow_github: true,
        };
        let ok = headers(&[
            (
                "X-Hub-Signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        assert_eq!(
            guard.check(&ok, b"Hello, World!", None, TOLERANCE),
            Ok(Passed {
                delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
                body_only: true,
            })
        );
        let err = guard
            .check(&ok, b"Hello, World?", None, TOLERANCE)
            .expect_err("changed body");
        assert!(err.contains("does not match the body"), "{err}");
    }

    #[test]
    fn hmac_needs_signature_and_delivery_id() {
        let guard = Guard::Hmac {
            key: SecretString::from("k"),
            allow_github: true,
        };
        let sig = signature_header(b"k", b"{}");
        let cases = [
            (headers(&[]), "or X-Hub-Signature-256"),
            (
                headers(&[("X-Hub-Signature-256", "sha1=ab")]),
                "must read sha256=",
            ),
            (headers(&[("X-Hub-Signature-256", "sha256=zz")]), "64 hex"),
            (headers(&[("X-Hub-Signature-256", &sig)]), "delivery id"),
            (
                headers(&[
                    ("X-Hub-Signature-256", &sig),
                    ("X-Delivery-Id", &"x".repeat(201)),
                ]),
                "at most 200",
            ),
        ];
        for (h, want) in cases {
            let err = guard
                .check(&h, b"{}", None, TOLERANCE)
                .expect_err("refused");
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let ok = headers(&[("X-Hub-Signature-256", &sig), ("X-Delivery-Id", "d1")]);
        assert_eq!(
            guard
                .check(&ok, b"{}", None, TOLERANCE)
                .expect("ok")
                .delivery_id
                .as_deref(),
            Some("d1")
        );
    }

    #[test]
    fn tokens_bare_or_bearer_in_the_configured_header() {
        let guard = Guard::Token {
            header: HeaderName::from_static("authorization"),
            token: SecretString::from("s3cret"),
        };
        for v in ["Bearer s3cret", "bearer s3cret", "s3cret", "  s3cret "] {
            assert!(
                guard
                    .check(&headers(&[("Authorization", v)]), b"", None, TOLERANCE)
                    .is_ok(),
                "{v}"
            );
        }
        for v in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", ""] {
            let err = guard
                .check(&headers(&[("Authorization", v)]), b"", None, TOLERANCE)
                .expect_err(v);
            assert!(
                !err.contains("s3cret"),
                "the message must not name the secret: {err}"
            );
        }
        let err = guard
            .check(&headers(&[]), b"", None, TOLERANCE)
            .expect_err("missing");
        assert_eq!(err, "send the webhook token in the authorization header");
        let custom = Guard::Token {
            header: HeaderName::from_static("x-signet-token"),
            token: SecretString::from("t"),
        };
        assert!(custom
            .check(&headers(&[("X-Signet-Token", "t")]), b"", None, TOLERANCE)
            .is_ok());
        assert!(custom
            .check(&headers(&[("Authorization", "t")]), b"", None, TOLERANCE)
            .is_err());
    }

    #[test]
    fn url_secrets_and_open_receivers() {
        let guard = Guard::UrlSecret {
            secret: SecretString::from("abc123"),
        };
        assert!(guard
            .check(&HeaderMap::new(), b"", Some("abc123"), TOLERANCE)
            .is_ok());
        assert!(guard
            .check(&HeaderMap::new(), b"", Some("abc124"), TOLERANCE)
            .is_err());
        assert!(guard
            .check(&HeaderMap::new(), b"", None, TOLERANCE)
            .expect_err("missing")
            .contains("/v1/webhooks/acr/SECRET"));
        assert!(Guard::Open
            .check(&HeaderMap::new(), b"", None, TOLERANCE)
            .is_ok());
        assert_eq!(format!("{guard:?}"), "Guard::UrlSecret");
    }
}

#[cfg(test)]
mod standard_webhooks {
    use super::*;
    use axum::http::HeaderValue;

    const TOLERANCE: Duration = Duration::from_secs(300);
    // The example of the Standard Webhooks specification (and svix's test suite).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            (WEBHOOK_ID, id),
            (WEBHOOK_TIMESTAMP, ts),
            (WEBHOOK_SIGNATURE, sig),
        ] {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn guard(allow_github: bool) -> Guard {
        Guard::Hmac {
            key: SecretString::from(SECRET),
            allow_github,
        }
    }

    #[test]
    fn the_specification_vector_passes() {
        assert_eq!(standard_signature(SECRET, ID, TS, BODY), SIGNATURE);
        let passed = guard(false)
            .check_at(
                &headers(ID, "1614265330", SIGNATURE),
                BODY,
                None,
                TOLERANCE,
                TS + 10,
            )
            .expect("valid");
        assert_eq!(passed.delivery_id.as_deref(), Some(ID));
        assert!(!passed.body_only);
        // A rotating sender lists the old and the new signature.
        let two = format!("v1,bm9wZQ== {SIGNATURE}");
        assert!(guard(false)
            .check_at(&headers(ID, "1614265330", &two), BODY, None, TOLERANCE, TS)
            .is_ok());
    }

    #[test]
    fn a_replayer_cannot_change_the_id_the_time_or_the_body() {
        let g = guard(true);
        let cases = [
            (
                headers("msg_other", "1614265330", SIGNATURE),
                BODY,
                TS,
                "does not match",
            ),
            (
                headers(ID, "1614265331", SIGNATURE),
                BODY,
                TS,
                "does not match",
            ),
            (
                headers(ID, "1614265330", SIGNATURE),
                &br#"{"test": 1}"#[..],
                TS,
                "does not match",
            ),
            (
                headers(ID, "1614265330", SIGNATURE),
                BODY,
                TS + 301,
                "301 s away",
            ),
            (
                headers(ID, "1614265330", SIGNATURE),
                BODY,
                TS - 301,
                "301 s away",
            ),
            (
                headers(ID, "yesterday", SIGNATURE),
                BODY,
                TS,
                "Unix seconds",
            ),
            (
                headers(ID, "1614265330", "v2,abc"),
                BODY,
                TS,
                "must list v1,",
            ),
        ];
        for (h, body, now, want) in cases {
            let err = g.check_at(&h, body, None, TOLERANCE, now).expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains("MfKQ9r8"), "never the secret: {err}");
        }
    }

    #[test]
    fn github_signatures_only_where_allowed() {
        let body = b"{}";
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static(SIGNATURE_HEADER),
            HeaderValue::from_str(&signature_header(SECRET.as_bytes(), body)).expect("value"),
        );
        h.insert(
            HeaderName::from_static("x-delivery-id"),
            HeaderValue::from_static("d1"),
        );
        let err = guard(false)
            .check_at(&h, body, None, TOLERANCE, TS)
            .expect_err("not allowed");
        assert!(err.contains("does not accept X-Hub-Signature-256"), "{err}");
        let passed = guard(true)
            .check_at(&h, body, None, TOLERANCE, TS)
            .expect("allowed");
        assert!(passed.body_only);
    }
}
