//! The console's sessions, CSRF defence, files and live stream, attacked over the wire
//! against a gateway on a free port (SQLite store, embedded bus). The browser itself is
//! tested in `services/cli/tests/console.rs`.

mod common;

use std::time::Duration;

use chrono::Utc;
use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signet_bus::{Event, OutgoingEvent};
use signet_core::{EventKind, Role};
use signet_gateway::AppState;
use signet_store::Store;
use tokio_util::sync::CancellationToken;

struct Gateway {
    url: String,
    store: Store,
    state: AppState,
    admin: String,
    signer: String,
    verifier: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

/// A signed-in browser, as far as the gateway can tell.
struct Browser {
    cookie: String,
    csrf: String,
    name: String,
}

async fn start() -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let bus = signet_bus::connect("embedded", &store).await.expect("bus");
    let state = common::state(dir.path(), &store, bus).await;
    let tokens = common::tokens(&store).await;
    let shutdown = CancellationToken::new();
    let url = common::serve(state.clone(), shutdown.clone()).await;
    Gateway {
        url,
        store,
        state,
        admin: tokens.admin,
        signer: tokens.signer,
        verifier: tokens.verifier,
        http: reqwest::Client::new(),
        _dir: dir,
        _shutdown: shutdown.drop_guard(),
    }
}

impl Gateway {
    async fn sign_in(&self, token: &str) -> (StatusCode, Option<Browser>, Value, Option<String>) {
        let resp = self
            .http
            .post(format!("{}/v1/sessions", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("sign in");
        let status = resp.status();
        let set_cookie = resp
            .headers()
            .get(SET_COOKIE)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body: Value = resp.json().await.expect("json");
        let browser = set_cookie.as_ref().map(|c| Browser {
            cookie: c.split(';').next().expect("pair").to_owned(),
            csrf: body["csrf_token"].as_str().unwrap_or_default().to_owned(),
            name: body["name"].as_str().unwrap_or_default().to_owned(),
        });
        (status, browser, body, set_cookie)
    }

    /// A request with the session cookie; `csrf` and `origin` as a page would send them.
    async fn with_cookie(
        &self,
        method: Method,
        path: &str,
        browser: &Browser,
        csrf: Option<&str>,
        origin: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header(COOKIE, &browser.cookie);
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn bearer(&self, method: Method, path: &str, token: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn tokens(&self) -> Vec<String> {
        let (_, b) = self.bearer(Method::GET, "/v1/tokens", &self.admin).await;
        b["tokens"]
            .as_array()
            .or(b.as_array())
            .expect("tokens")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_owned())
            .collect()
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_the_session_reads() {
    let gw = start().await;
    let (s, browser, body, set_cookie) = gw.sign_in(&gw.admin).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let set_cookie = set_cookie.expect("Set-Cookie");
    for attr in [
        "signet_session=sgt_",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set_cookie.contains(attr), "{attr} missing: {set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "on loopback over HTTP a Secure cookie would never be sent back: {set_cookie}"
    );
    assert_eq!(body["role"], "admin");
    let browser = browser.expect("cookie");
    assert!(browser.name.starts_with("root.console."), "{body}");
    let expires: chrono::DateTime<Utc> =
        serde_json::from_value(body["expires_at"].clone()).expect("expires_at");
    let hours = (expires - Utc::now()).num_minutes();
    assert!((470..=480).contains(&hours), "8 h session, got {hours} min");

    let (s, b) = gw
        .with_cookie(Method::GET, "/v1/witnesses", &browser, None, None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "reads need no CSRF token: {b}");
    let (s, b) = gw
        .with_cookie(
            Method::GET,
            "/v1/sessions/current",
            &browser,
            None,
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["csrf_token"],
        browser.csrf.as_str(),
        "a reload gets it back"
    );
    assert_eq!(b["name"], browser.name.as_str());

    // The sign-in is audited under the session's name.
    let (_, audit) = gw
        .bearer(Method::GET, "/v1/audit?limit=50", &gw.admin)
        .await;
    assert!(
        audit.to_string().contains("session.create"),
        "sign-in is audited: {audit}"
    );
}

#[tokio::test]
async fn a_forged_change_without_the_csrf_token_or_from_another_origin_is_refused() {
    let gw = start().await;
    let (_, browser, _, _) = gw.sign_in(&gw.admin).await;
    let browser = browser.expect("cookie");
    let before = gw.tokens().await;
    let body = || Some(json!({"name": "stolen", "role": "admin"}));
    // What a form on another site (or another port of this host) can send: the cookie
    // rides along, but no header can be added.
    let (s, b) = gw
        .with_cookie(Method::POST, "/v1/tokens", &browser, None, None, body())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["detail"].as_str().unwrap_or_default().contains("CSRF"),
        "{b}"
    );
    let (s, _) = gw
        .with_cookie(
            Method::POST,
            "/v1/tokens",
            &browser,
            Some("guess"),
            None,
            body(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a wrong CSRF token");
    // Another session's token does not fit this one.
    let (_, other, _, _) = gw.sign_in(&gw.admin).await;
    let other = other.expect("cookie");
    let (s, _) = gw
        .with_cookie(
            Method::POST,
            "/v1/tokens",
            &browser,
            Some(&other.csrf),
            None,
            body(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "another session's CSRF token");
    // The right token, from a page of another origin.
    let (s, b) = gw
        .with_cookie(
            Method::POST,
            "/v1/tokens",
            &browser,
            Some(&browser.csrf),
            Some("http://127.0.0.1:1"),
            body(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let mut after = gw.tokens().await;
    after.retain(|n| !n.contains(".console."));
    let mut before_plain = before.clone();
    before_plain.retain(|n| !n.contains(".console."));
    assert_eq!(after, before_plain, "nothing was created");

    // The console's own request goes through.
    let own = gw.url.replace("http://", "");
    let (s, b) = gw
        .with_cookie(
            Method::POST,
            "/v1/tokens",
            &browser,
            Some(&browser.csrf),
            Some(&format!("http://{own}")),
            body(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, audit) = gw
        .bearer(Method::GET, "/v1/audit?limit=50", &gw.admin)
        .await;
    assert!(
        audit
            .to_string()
            .contains(&format!("token:{}", browser.name)),
        "the change is audited under the session: {audit}"
    );
}

#[tokio::test]
async fn a_session_is_only_a_cookie_and_an_api_token_is_never_one() {
    let gw = start().await;
    let (_, browser, _, _) = gw.sign_in(&gw.admin).await;
    let browser = browser.expect("cookie");
    let session = browser.cookie.trim_start_matches("signet_session=");
    let (s, b) = gw.bearer(Method::GET, "/v1/witnesses", session).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a leaked cookie is no bearer token: {b}"
    );
    // An API token planted as the cookie (a cookie-injection attack) is not a session.
    let planted = Browser {
        cookie: format!("signet_session={}", gw.admin),
        csrf: signet_gateway::session::csrf_token(&gw.admin),
        name: String::new(),
    };
    let (s, b) = gw
        .with_cookie(Method::GET, "/v1/witnesses", &planted, None, None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // A session cannot open another session.
    let resp = gw
        .http
        .post(format!("{}/v1/sessions", gw.url))
        .header(COOKIE, &browser.cookie)
        .header("x-csrf-token", &browser.csrf)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Signer and verifier tokens do not open the console.
    for token in [&gw.signer, &gw.verifier] {
        let (s, _, b, cookie) = gw.sign_in(token).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert!(cookie.is_none());
    }
    // No cookie at all.
    let (s, _) = gw
        .bearer(Method::GET, "/v1/sessions/current", "sgt_nothing_here")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_and_revoking_the_token_end_the_session() {
    let gw = start().await;
    let (_, browser, _, _) = gw.sign_in(&gw.admin).await;
    let browser = browser.expect("cookie");
    // Sign-out is a change: it needs the CSRF token (no forged sign-out either).
    let (s, _) = gw
        .with_cookie(
            Method::DELETE,
            "/v1/sessions/current",
            &browser,
            None,
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let resp = gw
        .http
        .delete(format!("{}/v1/sessions/current", gw.url))
        .header(COOKIE, &browser.cookie)
        .header("x-csrf-token", &browser.csrf)
        .send()
        .await
        .expect("sign out");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let cleared = resp.headers()[SET_COOKIE].to_str().expect("ascii");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (s, _) = gw
        .with_cookie(Method::GET, "/v1/witnesses", &browser, None, None, None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a kept cookie is dead after sign-out"
    );

    // Revoking the token a session came from ends the session too.
    let issued = signet_gateway::auth::issue(&gw.store, "alice", Role::Admin, "test")
        .await
        .expect("token");
    let alice = secrecy::ExposeSecret::expose_secret(&issued.secret).to_owned();
    let (_, browser, _, _) = gw.sign_in(&alice).await;
    let browser = browser.expect("cookie");
    let (s, _) = gw
        .with_cookie(Method::GET, "/v1/witnesses", &browser, None, None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = gw
        .bearer(Method::DELETE, "/v1/tokens/alice", &gw.admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = gw
        .with_cookie(Method::GET, "/v1/witnesses", &browser, None, None, None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the session died with its token"
    );

    // A token that expires in a minute gives a session of a minute, not 8 h.
    let issued = signet_gateway::auth::issue_scoped(
        &gw.store,
        "brief",
        Role::Viewer,
        None,
        Some(Utc::now() + chrono::TimeDelta::minutes(1)),
        &[],
        "test",
    )
    .await
    .expect("token");
    let brief = secrecy::ExposeSecret::expose_secret(&issued.secret).to_owned();
    let (s, _, body, _) = gw.sign_in(&brief).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let expires: chrono::DateTime<Utc> =
        serde_json::from_value(body["expires_at"].clone()).expect("expires_at");
    assert!(expires <= Utc::now() + chrono::TimeDelta::minutes(1));
}

#[tokio::test]
async fn a_viewer_session_reads_and_changes_nothing() {
    let gw = start().await;
    let issued = signet_gateway::auth::issue(&gw.store, "auditor", Role::Viewer, "test")
        .await
        .expect("token");
    let viewer = secrecy::ExposeSecret::expose_secret(&issued.secret).to_owned();
    let (s, browser, body, _) = gw.sign_in(&viewer).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a viewer may open the console: {body}"
    );
    assert_eq!(body["role"], "viewer");
    let browser = browser.expect("cookie");
    let (s, _) = gw
        .with_cookie(Method::GET, "/v1/policies", &browser, None, None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = gw
        .with_cookie(
            Method::POST,
            "/v1/witnesses",
            &browser,
            Some(&browser.csrf),
            None,
            Some(json!({"name": "w", "kms_key": "local://w"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let resp = gw
        .http
        .delete(format!("{}/v1/sessions/current", gw.url))
        .header(COOKIE, &browser.cookie)
        .header("x-csrf-token", &browser.csrf)
        .send()
        .await
        .expect("sign out");
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "a viewer may sign out"
    );
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let gw = start().await;
    let resp = gw
        .http
        .get(format!("{}/console/", gw.url))
        .send()
        .await
        .expect("console");
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{directive}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    for file in ["app.js", "app.css"] {
        let resp = gw
            .http
            .get(format!("{}/console/{file}", gw.url))
            .send()
            .await
            .expect("file");
        assert_eq!(resp.status(), StatusCode::OK, "{file}");
        assert!(resp.headers().contains_key("content-security-policy"));
    }
    for path in [
        "/console/../Cargo.toml",
        "/console/secret",
        "/console/%2e%2e%2fCargo.toml",
    ] {
        let resp = gw
            .http
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .expect("file");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/console", gw.url))
        .send()
        .await
        .expect("console");
    assert_eq!(resp.headers()["location"], "/console/");
}

/// Reads server-sent events until one named `name` arrives (or 10 s pass).
async fn next_named(
    stream: &mut reqwest::Response,
    buffer: &mut String,
    name: &str,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let event = message.lines().find_map(|l| {
                l.strip_prefix("event: ")
                    .or_else(|| l.strip_prefix("event:"))
            });
            let data = message
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")));
            if event == Some(name) {
                return data.and_then(|d| serde_json::from_str(d).ok());
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .ok()?
            .ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_live_stream_passes_on_sealed_events_and_decisions_and_drops_forged_ones() {
    let gw = start().await;
    let (_, browser, _, _) = gw.sign_in(&gw.admin).await;
    let browser = browser.expect("cookie");
    let resp = gw
        .http
        .get(format!("{}/v1/events/stream", gw.url))
        .header(COOKIE, &browser.cookie)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut stream = resp;
    let mut buffer = String::new();
    // Give the gateway's subscription a moment to be in place.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A forged event on the bus (someone who can publish to the broker, sealed by a key
    // that is not the control plane's) must not reach the console; a sealed one must.
    let forger_dir = tempfile::tempdir().expect("dir");
    let forger_kms = signet_kms::Kms::new(signet_kms::KmsConfig::new(forger_dir.path()));
    let forger = signet_testkit::control_plane_key(&forger_kms).await;
    let forged = Event::new(
        EventKind::WitnessRevoked,
        "forged",
        json!({"name": "forged"}),
    );
    let out = OutgoingEvent::encode(&forged).expect("encode");
    let seal = forger.seal(&out.bytes).await.expect("seal");
    gw.state
        .bus
        .events
        .publish(&out.sealed(&seal))
        .await
        .expect("publish");
    let unsealed = OutgoingEvent::encode(&Event::new(
        EventKind::WitnessRevoked,
        "unsealed",
        json!({}),
    ))
    .expect("encode");
    gw.state
        .bus
        .events
        .publish(&unsealed)
        .await
        .expect("publish");
    let real = Event::new(
        EventKind::SignaturePublished,
        "sha256:abc",
        json!({"witness": "w"}),
    );
    let out = OutgoingEvent::encode(&real).expect("encode");
    let seal = gw.state.control_key.seal(&out.bytes).await.expect("seal");
    gw.state
        .bus
        .events
        .publish(&out.sealed(&seal))
        .await
        .expect("publish");
    let got = next_named(&mut stream, &mut buffer, "signature.published")
        .await
        .expect("the sealed event arrives");
    assert_eq!(got["subject"], "sha256:abc");
    assert!(
        !buffer.contains("forged") && !buffer.contains("unsealed"),
        "forged events were passed on: {buffer}"
    );

    // A decision reported by a verifier is announced.
    let decision = json!({"decisions": [{
        "at": Utc::now(), "cluster": "c1", "uid": "u1", "namespace": "prod", "kind": "Pod",
        "name": "web", "operation": "CREATE", "policy": "p", "mode": "enforce",
        "outcome": "denied", "images": [], "message": "unsigned"
    }]});
    let (s, b) = {
        let resp = gw
            .http
            .post(format!("{}/v1/admission-decisions", gw.url))
            .bearer_auth(&gw.verifier)
            .json(&decision)
            .send()
            .await
            .expect("report");
        (resp.status(), resp.text().await.unwrap_or_default())
    };
    assert_eq!(s, StatusCode::OK, "{b}");
    let got = next_named(&mut stream, &mut buffer, "admission.decision")
        .await
        .expect("the decision arrives");
    assert_eq!(got["subject"], "prod/Pod/web");
    assert_eq!(got["data"]["outcome"], "denied");

    // Signers and verifiers do not follow the console's stream.
    let (s, _) = gw
        .bearer(Method::GET, "/v1/events/stream", &gw.signer)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_key_picker_lists_local_keys_but_never_the_control_planes() {
    let gw = start().await;
    let resp = gw
        .http
        .post(format!("{}/v1/witnesses", gw.url))
        .bearer_auth(&gw.admin)
        .json(&json!({"name": "release", "kms_key": "local://release"}))
        .send()
        .await
        .expect("witness");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (s, b) = gw.bearer(Method::GET, "/v1/kms/keys", &gw.admin).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let keys = b["keys"].as_array().expect("keys");
    let release = keys
        .iter()
        .find(|k| k["uri"] == "local://release")
        .unwrap_or_else(|| panic!("the witness's key is listed: {b}"));
    assert_eq!(release["usable"], true, "{b}");
    assert!(
        keys.iter().all(|k| k["uri"] != gw.state.control_key.uri()),
        "the control plane's key is offered to witnesses: {b}"
    );
    assert!(
        b["providers"]
            .as_array()
            .expect("providers")
            .iter()
            .any(|p| p["provider"] == "local" && p["error"].is_null()),
        "{b}"
    );
    let (s, _) = gw.bearer(Method::GET, "/v1/kms/keys", &gw.signer).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_open_stream_says_hello_at_once_and_ends_when_the_gateway_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let bus = signet_bus::connect("embedded", &store).await.expect("bus");
    let state = common::state(dir.path(), &store, bus).await;
    let tokens = common::tokens(&store).await;
    let shutdown = CancellationToken::new();
    let url = common::serve(state, shutdown.clone()).await;
    let mut resp = reqwest::Client::new()
        .get(format!("{url}/v1/events/stream"))
        .bearer_auth(&tokens.admin)
        .send()
        .await
        .expect("stream");
    let first = tokio::time::timeout(Duration::from_secs(2), resp.chunk())
        .await
        .expect("the first message comes at once, not after the keep-alive interval")
        .expect("read")
        .expect("a chunk");
    assert!(
        String::from_utf8_lossy(&first).contains("retry:"),
        "{first:?}"
    );
    shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match resp.chunk().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the stream still runs after shutdown began");
}
