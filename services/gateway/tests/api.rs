//! The gateway over the wire: authentication and roles, the JSON error shape, input
//! validation, limits and readiness. Signing itself is covered end to end by the CLI's
//! tests; here no signer runs, so jobs stay queued.

mod common;

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use signet_gateway::AppState;
use signet_runtime::settings::GatewaySettings;
use signet_store::Store;
use tokio_util::sync::CancellationToken;

struct Gateway {
    url: String,
    store: Store,
    admin: String,
    signer: String,
    verifier: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start() -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let bus = signet_bus::connect("embedded", &store).await.expect("bus");
    let settings = GatewaySettings {
        body_limit_bytes: 4096,
        ..GatewaySettings::default()
    };
    let state = AppState {
        settings: Arc::new(settings),
        ..common::state(dir.path(), &store, bus).await
    };
    let tokens = common::tokens(&store).await;
    let shutdown = CancellationToken::new();
    let url = common::serve(state, shutdown.clone()).await;
    Gateway {
        url,
        store,
        admin: tokens.admin,
        signer: tokens.signer,
        verifier: tokens.verifier,
        http: reqwest::Client::new(),
        _dir: dir,
        _shutdown: shutdown.drop_guard(),
    }
}

impl Gateway {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
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

    async fn witness(&self, name: &str) {
        let (s, body) = self
            .call(
                Method::POST,
                "/v1/witnesses",
                Some(&self.admin),
                Some(json!({"name": name, "kms_key": format!("local://{name}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str, detail_has: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"], code, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "detail {detail:?} should mention {detail_has:?}"
    );
}

#[tokio::test]
async fn every_api_call_is_authenticated() {
    let gw = start().await;
    let (s, b) = gw.call(Method::GET, "/v1/witnesses", None, None).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated", "Bearer");
    let (s, b) = gw
        .call(Method::GET, "/v1/witnesses", Some("not-a-token"), None)
        .await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthenticated", "sgt_");
    // A well-formed token with a wrong secret.
    let forged = format!("{}x", &gw.admin[..gw.admin.len() - 1]);
    let (s, b) = gw
        .call(Method::GET, "/v1/witnesses", Some(&forged), None)
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "unknown or revoked",
    );
    for path in ["/v1/jobs", "/v1/audit", "/v1/signatures", "/v1/sign"] {
        let method = if path == "/v1/sign" {
            Method::POST
        } else {
            Method::GET
        };
        let (s, _) = gw.call(method, path, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Health needs no token.
    let (s, _) = gw.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn roles_limit_what_a_token_may_do() {
    let gw = start().await;
    gw.witness("prod").await;
    // signer: may sign and read its jobs, nothing else.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/witnesses",
            Some(&gw.signer),
            Some(json!({"name": "x", "kms_key": "local://x"})),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden", "role signer");
    let (s, _) = gw
        .call(Method::GET, "/v1/audit", Some(&gw.signer), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, job) = gw
        .call(
            Method::POST,
            "/v1/sign",
            Some(&gw.signer),
            Some(json!({"image": "127.0.0.1:1/a/b:v1", "witness": "prod"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "queued");
    let id = job["id"].as_str().expect("job id");
    let (s, shown) = gw
        .call(
            Method::GET,
            &format!("/v1/jobs/{id}"),
            Some(&gw.signer),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown["request"]["witness"], "prod");
    // verifier: reads witnesses, cannot sign.
    let (s, _) = gw
        .call(Method::GET, "/v1/witnesses/prod", Some(&gw.verifier), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/sign",
            Some(&gw.verifier),
            Some(json!({"image": "a/b:v1", "witness": "prod"})),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden", "role verifier");
    // Creating tokens is for admins, and the secret is returned once.
    let (s, t) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&gw.admin),
            Some(json!({"name": "pipeline", "role": "signer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert!(t["token"].as_str().is_some_and(|t| t.starts_with("sgt_")));
    let (s, _) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&gw.signer),
            Some(json!({"name": "p2", "role": "admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Every change is audited with who made it.
    let (_, audit) = gw
        .call(
            Method::GET,
            "/v1/audit?action=token.",
            Some(&gw.admin),
            None,
        )
        .await;
    let actors: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert!(actors.contains(&"token:root"), "{audit}");
}

#[tokio::test]
async fn bad_input_gets_a_precise_4xx() {
    let gw = start().await;
    gw.witness("prod").await;
    let sign = |body: Value| gw.call(Method::POST, "/v1/sign", Some(&gw.admin), Some(body));
    let (s, b) = sign(json!({"image": "Bad/Name:x", "witness": "prod"})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "bad_request", "lowercase");
    let (s, b) = sign(json!({"image": "a/b:v1", "witness": "nobody"})).await;
    assert_error(
        s,
        &b,
        StatusCode::NOT_FOUND,
        "not_found",
        "witness \"nobody\" does not exist",
    );
    let (s, b) = sign(json!({"image": "a/b:v1", "witness": "prod", "color": "red"})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "bad_request", "color");
    let (s, b) = sign(json!({"witness": "prod"})).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "bad_request", "image");

    let resp = gw
        .http
        .post(format!("{}/v1/sign", gw.url))
        .bearer_auth(&gw.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = gw
        .http
        .post(format!("{}/v1/sign", gw.url))
        .bearer_auth(&gw.admin)
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let b: Value = resp.json().await.expect("json");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Content-Type: application/json"),
        "{b}"
    );

    let big = "x".repeat(10_000);
    let (s, _) = sign(json!({"image": big, "witness": "prod"})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    let (s, b) = gw
        .call(Method::GET, "/v1/jobs/not-a-uuid", Some(&gw.admin), None)
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "bad_request", "not a UUID");
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/jobs/0192a7c4-0000-7000-8000-000000000000",
            Some(&gw.admin),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "does not exist");
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/jobs?state=exploded",
            Some(&gw.admin),
            None,
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "not a job state",
    );

    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/witnesses",
            Some(&gw.admin),
            Some(json!({"name": "Prod!", "kms_key": "local://p"})),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "witness name",
    );
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/witnesses",
            Some(&gw.admin),
            Some(json!({"name": "prod", "kms_key": "local://prod"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/witnesses",
            Some(&gw.admin),
            Some(json!({"name": "g", "kms_key": "gcpkms://projects/p"})),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "bad_request", "gcpkms");
}

#[tokio::test]
async fn wait_returns_202_while_the_job_is_pending() {
    let gw = start().await;
    gw.witness("prod").await;
    let (s, job) = gw
        .call(
            Method::POST,
            "/v1/sign?wait=1",
            Some(&gw.admin),
            Some(json!({"image": "127.0.0.1:1/a/b:v1", "witness": "prod"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "no signer runs, so the job is still queued: {job}"
    );
    assert_eq!(job["state"], "queued");
}

#[tokio::test]
async fn readiness_follows_the_store() {
    let gw = start().await;
    let (s, b) = gw.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    gw.store.close().await;
    let (s, b) = gw.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["ready"], false);
}

#[tokio::test]
async fn revoked_tokens_are_refused() {
    let gw = start().await;
    let (s, b) = gw
        .call(Method::DELETE, "/v1/tokens/root", Some(&gw.admin), None)
        .await;
    assert_error(
        s,
        &b,
        StatusCode::CONFLICT,
        "conflict",
        "another admin token",
    );
    let (s, b) = gw
        .call(Method::DELETE, "/v1/tokens/ci", Some(&gw.admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["revoked"], true);
    let (s, b) = gw
        .call(Method::GET, "/v1/jobs", Some(&gw.signer), None)
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "revoked",
    );
    let (s, b) = gw
        .call(Method::DELETE, "/v1/tokens/ghost", Some(&gw.admin), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (_, list) = gw
        .call(Method::GET, "/v1/tokens", Some(&gw.admin), None)
        .await;
    let text = list.to_string();
    assert!(
        text.contains("\"ci\"") && !text.contains("secret"),
        "{list}"
    );
}
