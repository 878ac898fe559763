//! Console sessions: how a browser authenticates.
//!
//! A browser signs in once with an API token (`POST /v1/sessions`, the token as a bearer
//! header) and from then on sends a cookie, never the token. The cookie carries a session
//! of its own: a short-lived token record (`session_of` names the token it was opened
//! with) that only an admin or viewer token may open. So:
//! - the API token is not kept in the browser, where a script could read it;
//! - a stolen cookie dies with its session (8 h, or the token's own expiry, or its
//!   revocation: the store revokes a token's sessions with it);
//! - every gateway replica checks a session the way it checks a token, in the store.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site makes
//! the browser send it) and `Secure` unless the console is opened on loopback. Because a
//! page on another port of the same host is the same *site*, `SameSite` alone is not
//! enough: every change made with the cookie must also carry `X-CSRF-Token`, a value
//! derived from the session secret that only a page of the console learns (from
//! `POST /v1/sessions` or `GET /v1/sessions/current`, which another origin cannot read),
//! and an `Origin` header, when the browser sends one, must be the gateway's own.
//! Derived rather than stored, so that every replica computes the same one.

use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The cookie's name.
pub const COOKIE_NAME: &str = "signet_session";
/// The header a change made with the cookie carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts at most.
pub const LIFETIME: TimeDelta = TimeDelta::hours(8);

/// The session token the request's cookie carries, if any.
pub fn from_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session: bound to its secret, unguessable without it.
pub fn csrf_token(session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"signet console csrf\n");
    h.update(session.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Refuses a change made with the session cookie unless it carries the session's CSRF
/// token and, when the browser names an origin, comes from the gateway's own. Reads
/// (GET, HEAD) change nothing and pass.
pub fn check_change(method: &Method, headers: &HeaderMap, session: &str) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        let authority = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        if host.is_none() || authority != host {
            return Err(ApiError::Forbidden(
                "the request comes from another origin than the console's; changes made with a console session must come from the console"
                    .into(),
            ));
        }
    }
    let presented = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = csrf_token(session);
    if presented.is_empty() || !bool::from(presented.ct_eq(expected.as_bytes())) {
        return Err(ApiError::Forbidden(
            "a change made with a console session needs its CSRF token in X-CSRF-Token (the console sends it; another site cannot)"
                .into(),
        ));
    }
    Ok(())
}

/// Whether the request was addressed to a loopback host, where a browser sends no
/// `Secure` cookie over plain HTTP but nothing crosses a network either.
fn loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `Set-Cookie` value that hands the browser its session until `expires_at`.
pub fn set_cookie(headers: &HeaderMap, session: &str, expires_at: DateTime<Utc>) -> HeaderValue {
    let max_age = (expires_at - Utc::now()).num_seconds().max(0);
    let c = cookie::Cookie::build((COOKIE_NAME, session.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(!loopback(headers))
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    // A session token is `sgt_`, hex and URL-safe base64: always a valid header value.
    HeaderValue::from_str(&c.to_string()).expect("cookie is a header value")
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear_cookie(headers: &HeaderMap) -> HeaderValue {
    let c = cookie::Cookie::build((COOKIE_NAME, ""))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(!loopback(headers))
        .max_age(cookie::time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie is a header value")
}

/// The header name of [`set_cookie`] and [`clear_cookie`].
pub const SET: axum::http::HeaderName = SET_COOKIE;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_the_session_among_other_cookies() {
        let h = headers(&[("cookie", "a=1; signet_session=sgt_x_y; b=2")]);
        assert_eq!(from_cookie(&h).as_deref(), Some("sgt_x_y"));
        assert_eq!(from_cookie(&headers(&[("cookie", "a=1")])), None);
        assert_eq!(
            from_cookie(&headers(&[("cookie", "signet_session=")])),
            None
        );
    }

    #[test]
    fn changes_need_the_csrf_token_and_the_own_origin() {
        let s = "sgt_abc_secret";
        let good = csrf_token(s);
        let ok = headers(&[("host", "signet.example:8080"), ("x-csrf-token", &good)]);
        assert!(check_change(&Method::POST, &ok, s).is_ok());
        assert!(check_change(&Method::GET, &HeaderMap::new(), s).is_ok());
        // No token, a wrong one, another session's.
        assert!(check_change(&Method::POST, &headers(&[("host", "h")]), s).is_err());
        let wrong = headers(&[("host", "h"), ("x-csrf-token", "nope")]);
        assert!(check_change(&Method::DELETE, &wrong, s).is_err());
        let other = headers(&[
            ("host", "h"),
            ("x-csrf-token", &csrf_token("sgt_abc_other")),
        ]);
        assert!(check_change(&Method::PATCH, &other, s).is_err());
        // The right token from another origin (another port of the same host).
        let foreign = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999"),
            ("x-csrf-token", &good),
        ]);
        assert!(check_change(&Method::POST, &foreign, s).is_err());
        let own = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("x-csrf-token", &good),
        ]);
        assert!(check_change(&Method::POST, &own, s).is_ok());
    }

    #[test]
    fn cookie_is_secure_except_on_loopback() {
        let at = Utc::now() + LIFETIME;
        for (host, secure) in [
            ("127.0.0.1:8080", false),
            ("localhost:3000", false),
            ("[::1]:80", false),
            ("signet.example.com", true),
            ("10.0.0.1:8080", true),
        ] {
            let v = set_cookie(&headers(&[("host", host)]), "sgt_a_b", at);
            let v = v.to_str().unwrap();
            assert!(
                v.contains("HttpOnly") && v.contains("SameSite=Strict"),
                "{v}"
            );
            assert_eq!(v.contains("Secure"), secure, "{host}: {v}");
        }
        let v = set_cookie(&HeaderMap::new(), "sgt_a_b", at);
        assert!(v.to_str().unwrap().contains("Secure"), "no Host: secure");
    }
}
