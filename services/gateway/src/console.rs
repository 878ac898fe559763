//! The web console: static files compiled into the binary (`services/gateway/console/`,
//! plain HTML, CSS and JavaScript modules, no build step and nothing fetched from
//! elsewhere, so it works in an air-gapped cluster). Everything it shows and changes goes
//! through the public API with a session cookie (see [`crate::session`]); these routes
//! serve files only.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and connections
//! from this origin only, no inline code, no framing), `nosniff`, no referrer, and
//! `no-store` so a signed-out browser keeps no page.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// A console file compiled in: name, media type, contents.
macro_rules! console_files {
    ($($name:literal => $media:literal),* $(,)?) => {
        &[$(($name, $media, include_str!(concat!("../console/", $name)))),*]
    };
}

/// The console's files: name, media type, contents. A test fails when a file in the
/// directory is missing here.
pub const FILES: &[(&str, &str, &str)] = console_files![
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "ui.js" => "text/javascript; charset=utf-8",
    "chart.js" => "text/javascript; charset=utf-8",
    "witnesses.js" => "text/javascript; charset=utf-8",
    "policies.js" => "text/javascript; charset=utf-8",
    "images.js" => "text/javascript; charset=utf-8",
    "jobs.js" => "text/javascript; charset=utf-8",
    "audit.js" => "text/javascript; charset=utf-8",
    "rules.js" => "text/javascript; charset=utf-8",
    "webhooks.js" => "text/javascript; charset=utf-8",
];

/// What the browser may load and run.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

fn answer(media_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(media_type)),
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CSP),
        ),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (headers, body).into_response()
}

/// The console's file routes (no API: the pages call `/v1` like any client).
pub fn router() -> axum::Router<crate::AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/console", get(root))
        .route("/console/", get(index))
        .route("/console/{file}", get(file))
}

/// `GET /console/`: the page.
pub async fn index() -> Response {
    file(Path("index.html".to_owned())).await
}

/// `GET /console`: to `/console/`, so that the page's relative URLs resolve.
pub async fn root() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, media_type, body)) => answer(media_type, body),
        None => (StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to the console directory but not to [`FILES`] would be a page that
    /// works from disk and breaks when served.
    #[test]
    fn every_console_file_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        for entry in std::fs::read_dir(&dir).expect("console dir") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                FILES.iter().any(|(n, _, _)| *n == name),
                "services/gateway/console/{name} is not in console::FILES"
            );
        }
    }

    #[test]
    fn pages_load_nothing_from_elsewhere_and_run_nothing_inline() {
        for (name, _, body) in FILES {
            for needle in ["http://", "https://", "//cdn", "fonts.googleapis"] {
                assert!(
                    !body.contains(needle) || !name.ends_with(".html"),
                    "{name} names an outside URL ({needle})"
                );
            }
            if name.ends_with(".html") {
                assert!(!body.contains("<script>"), "{name} has an inline script");
                assert!(!body.contains("style="), "{name} has an inline style");
                assert!(!body.contains("<style"), "{name} has a style element");
            }
        }
    }
}
