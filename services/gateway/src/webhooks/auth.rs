//! How a receiver knows a webhook comes from its registry. Each receiver uses one way:
//! - a static token in a header (`Authorization: Bearer TOKEN` or a bare value, or a
//!   header of its own): what distribution (`headers` in its endpoint config) and Harbor
//!   (the policy's "Auth Header") can send;
//! - an HMAC-SHA256 of the raw body in `X-Hub-Signature-256: sha256=<hex>` (GitHub's
//!   scheme), with a delivery id in `X-Delivery-Id` or `X-GitHub-Delivery` that the caller
//!   remembers for the replay window;
//! - a secret in the URL, for Alibaba ACR, which can send nothing else. Weaker: URLs are
//!   written to access logs, proxies and the registry console.
//!
//! Every comparison of a secret is constant-time. No message names a secret.

use axum::http::{HeaderMap, HeaderName};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use signet_runtime::secret::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The header GitHub-style senders put the body's HMAC in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
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
            Self::Hmac { .. } => f.write_str("Guard::Hmac"),
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
}

fn equal(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

impl Guard {
    /// Checks a request; the error says what the sender must fix, never the secret.
    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        url_secret: Option<&str>,
    ) -> Result<Passed, String> {
        match self {
            Self::Open => Ok(Passed { delivery_id: None }),
            Self::Token { header, token } => {
                let value = headers
                    .get(header)
                    .ok_or_else(|| format!("send the webhook token in the {header} header"))?;
                let value = value.as_bytes();
                // Harbor sends the configured "Auth Header" verbatim; distribution sends
                // whatever its config lists. Accept the token bare or as a bearer token.
                let presented = strip_bearer(value);
                if equal(presented, token.expose_secret().as_bytes()) {
                    Ok(Passed { delivery_id: None })
                } else {
                    Err(format!(
                        "the token in the {header} header is not this receiver's"
                    ))
                }
            }
            Self::Hmac { key } => {
                let signature = headers
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        "send X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>".to_owned()
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
                })
            }
            Self::UrlSecret { secret } => {
                let presented = url_secret.ok_or_else(|| {
                    "put the receiver's secret in the URL: /v1/webhooks/acr/SECRET or ?secret=SECRET"
                        .to_owned()
                })?;
                if equal(presented.as_bytes(), secret.expose_secret().as_bytes()) {
                    Ok(Passed { delivery_id: None })
                } else {
                    Err("the secret in the URL is not this receiver's".to_owned())
                }
            }
        }
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
        };
        let ok = headers(&[
            (
                "X-Hub-Signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        assert_eq!(
            guard.check(&ok, b"Hello, World!", None),
            Ok(Passed {
                delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into())
            })
        );
        let err = guard
            .check(&ok, b"Hello, World?", None)
            .expect_err("changed body");
        assert!(err.contains("does not match the body"), "{err}");
    }

    #[test]
    fn hmac_needs_signature_and_delivery_id() {
        let guard = Guard::Hmac {
            key: SecretString::from("k"),
        };
        let sig = signature_header(b"k", b"{}");
        let cases = [
            (headers(&[]), "send X-Hub-Signature-256"),
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
            let err = guard.check(&h, b"{}", None).expect_err("refused");
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let ok = headers(&[("X-Hub-Signature-256", &sig), ("X-Delivery-Id", "d1")]);
        assert_eq!(
            guard
                .check(&ok, b"{}", None)
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
                    .check(&headers(&[("Authorization", v)]), b"", None)
                    .is_ok(),
                "{v}"
            );
        }
        for v in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", ""] {
            let err = guard
                .check(&headers(&[("Authorization", v)]), b"", None)
                .expect_err(v);
            assert!(
                !err.contains("s3cret"),
                "the message must not name the secret: {err}"
            );
        }
        let err = guard.check(&headers(&[]), b"", None).expect_err("missing");
        assert_eq!(err, "send the webhook token in the authorization header");
        let custom = Guard::Token {
            header: HeaderName::from_static("x-signet-token"),
            token: SecretString::from("t"),
        };
        assert!(custom
            .check(&headers(&[("X-Signet-Token", "t")]), b"", None)
            .is_ok());
        assert!(custom
            .check(&headers(&[("Authorization", "t")]), b"", None)
            .is_err());
    }

    #[test]
    fn url_secrets_and_open_receivers() {
        let guard = Guard::UrlSecret {
            secret: SecretString::from("abc123"),
        };
        assert!(guard.check(&HeaderMap::new(), b"", Some("abc123")).is_ok());
        assert!(guard.check(&HeaderMap::new(), b"", Some("abc124")).is_err());
        assert!(guard
            .check(&HeaderMap::new(), b"", None)
            .expect_err("missing")
            .contains("/v1/webhooks/acr/SECRET"));
        assert!(Guard::Open.check(&HeaderMap::new(), b"", None).is_ok());
        assert_eq!(format!("{guard:?}"), "Guard::UrlSecret");
    }
}
