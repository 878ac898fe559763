//! What the HTTP providers share: one client with the configured timeout, and turning
//! transport failures into [`KmsError`]s.

use std::time::Duration;

use crate::error::{KmsError, KmsErrorKind};

/// One client per [`crate::Kms`]: its connection pool is shared by every key. The
/// timeout bounds the whole exchange (connect, send, read the body).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("signet-kms/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
}

/// Classifies a failure to get an answer at all. Never includes credentials: they travel
/// in headers, which reqwest's errors do not show.
pub(crate) fn transport_error(provider: &'static str, key: &str, e: &reqwest::Error) -> KmsError {
    let kind = if e.is_timeout() {
        KmsErrorKind::Timeout
    } else if e.is_connect() {
        KmsErrorKind::Unavailable(format!("cannot connect: {}", chain(e)))
    } else if e.is_builder() {
        KmsErrorKind::Failed(format!("cannot build the request: {}", chain(e)))
    } else {
        KmsErrorKind::Unavailable(chain(e))
    };
    KmsError::new(provider, key, kind)
}

/// An error and its causes on one line; reqwest's own message hides the root cause
/// ("connection refused", "dns error") in its sources.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// Shortens an error body for a message: a proxy's HTML error page is not worth a
/// screenful in a log line.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// The status, for messages: `429 Too Many Requests`.
pub(crate) fn status_text(status: reqwest::StatusCode) -> String {
    status.to_string()
}
