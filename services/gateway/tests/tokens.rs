//! Token scope and lifetime (L1 and L7 of the 2026-12 review), over the wire. The
//! attacker holds one cluster's verifier token (taken from that cluster's Secret) and
//! uses it for another cluster: to read its trust bundle and to write break-glass
//! decisions into its audit trail. And a token that should have stopped working.

mod common;

use chrono::{TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use signet_core::{ApiToken, NewAudit, Role};
use signet_store::Store;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Gateway {
    url: String,
    store: Store,
    admin: String,
    /// Bound to cluster c1.
    verifier: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start() -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let bus = signet_bus::connect("embedded", &store).await.expect("bus");
    let state = common::state(dir.path(), &store, bus).await;
    let tokens = common::tokens(&store).await;
    let shutdown = CancellationToken::new();
    let url = common::serve(state, shutdown.clone()).await;
    Gateway {
        url,
        store,
        admin: tokens.admin,
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
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        // An event stream never ends: its status is the answer.
        let streaming = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            return (status, Value::Null);
        }
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A token written straight into the store, as an older release (or the passing of
    /// time) left it; returns the bearer string.
    async fn stored_token(&self, token: ApiToken) -> String {
        let secret = format!("s{}", Uuid::new_v4().simple());
        let hash = Sha256::digest(secret.as_bytes());
        let audit = NewAudit::new("test", "token.create", &token.name, json!({}));
        self.store
            .create_token(&token, &hash, &audit)
            .await
            .expect("store a token");
        format!("sgt_{}_{secret}", token.id.simple())
    }
}

fn token(name: &str, role: Role) -> ApiToken {
    ApiToken {
        id: Uuid::new_v4(),
        name: name.into(),
        role,
        created_at: Utc::now(),
        revoked: false,
        cluster: None,
        expires_at: None,
        last_used_at: None,
        session_of: None,
        scope: Vec::new(),
    }
}

fn break_glass(cluster: &str, uid: &str) -> Value {
    json!({
        "at": Utc::now(), "cluster": cluster, "uid": uid, "namespace": "payments",
        "kind": "Pod", "name": "miner", "operation": "CREATE", "policy": "prod-images",
        "mode": "enforce", "outcome": "break_glass", "images": [],
        "break_glass": "forged incident",
    })
}

fn detail(b: &Value) -> String {
    b["detail"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_verifier_token_reads_and_reports_only_its_own_cluster() {
    let gw = start().await;
    // Its own cluster: allowed.
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/trust-bundle?cluster=c1",
            &gw.verifier,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Another cluster's bundle: refused, saying why.
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/trust-bundle?cluster=prod-eu-1",
            &gw.verifier,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(detail(&b).contains("bound to cluster \"c1\""), "{b}");
    // Another cluster's decisions, alone or slipped into a batch of its own: refused
    // whole, and nothing is recorded or audited.
    for batch in [
        json!({"decisions": [break_glass("prod-eu-1", "x1")]}),
        json!({"decisions": [break_glass("c1", "ok1"), break_glass("prod-eu-1", "x2")]}),
    ] {
        let (s, b) = gw
            .call(
                Method::POST,
                "/v1/admission-decisions",
                &gw.verifier,
                Some(batch),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert!(detail(&b).contains("prod-eu-1"), "{b}");
    }
    let (_, listed) = gw
        .call(Method::GET, "/v1/admission-decisions", &gw.admin, None)
        .await;
    assert_eq!(
        listed["decisions"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    let (_, audit) = gw
        .call(
            Method::GET,
            "/v1/audit?action=admission.break_glass",
            &gw.admin,
            None,
        )
        .await;
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(0),
        "{audit}"
    );
    // Its own cluster's report is recorded.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/admission-decisions",
            &gw.verifier,
            Some(json!({"decisions": [break_glass("c1", "ok2")]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["recorded"], 1);
}

#[tokio::test]
async fn verifier_tokens_name_their_cluster_and_old_ones_are_refused() {
    let gw = start().await;
    // A verifier token from before tokens carried a cluster: refused on both routes.
    let legacy = gw.stored_token(token("legacy", Role::Verifier)).await;
    let (s, b) = gw
        .call(Method::GET, "/v1/trust-bundle?cluster=c1", &legacy, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(detail(&b).contains("bound to no cluster"), "{b}");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/admission-decisions",
            &legacy,
            Some(json!({"decisions": [break_glass("c1", "l1")]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Creating one: a verifier needs its cluster, other roles take none.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            &gw.admin,
            Some(json!({"name": "edge", "role": "verifier"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(detail(&b).contains("needs its cluster"), "{b}");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            &gw.admin,
            Some(json!({"name": "ci2", "role": "signer", "cluster": "c1"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            &gw.admin,
            Some(json!({"name": "edge", "role": "verifier", "cluster": "edge-ap-2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["cluster"], "edge-ap-2");
    let edge = b["token"].as_str().expect("token").to_owned();
    let (s, _) = gw
        .call(
            Method::GET,
            "/v1/trust-bundle?cluster=edge-ap-2",
            &edge,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = gw
        .call(Method::GET, "/v1/trust-bundle?cluster=c1", &edge, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn expired_tokens_are_refused_and_use_is_recorded() {
    let gw = start().await;
    // An admin token whose time ran out an hour ago.
    let mut old = token("old-admin", Role::Admin);
    old.expires_at = Some(Utc::now() - TimeDelta::hours(1));
    let old = gw.stored_token(old).await;
    let (s, b) = gw.call(Method::GET, "/v1/tokens", &old, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(detail(&b).contains("expired"), "{b}");
    // An expiry in the past is refused; one in the future is kept and shown.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            &gw.admin,
            Some(json!({"name": "ci-late", "role": "signer", "expires_at": Utc::now() - TimeDelta::minutes(1)})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let until = Utc::now() + TimeDelta::days(90);
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            &gw.admin,
            Some(
                json!({"name": "edge-90d", "role": "verifier", "cluster": "c1", "expires_at": until}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let edge = b["token"].as_str().expect("token").to_owned();
    let (s, _) = gw
        .call(Method::GET, "/v1/trust-bundle?cluster=c1", &edge, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // When it was last used is recorded (in the background, so poll).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, list) = gw.call(Method::GET, "/v1/tokens", &gw.admin, None).await;
        let t = list["tokens"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == "edge-90d").cloned())
            .unwrap_or_default();
        assert!(t["expires_at"].is_string(), "{t}");
        if t["last_used_at"].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last_used_at was never set: {t}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A viewer token reads every route an admin reads and changes nothing: every operation
/// of the API document that takes a bearer token is tried with it, reads must answer,
/// and every change is refused with 403 before its body is even read, leaving the audit
/// log as it was.
#[tokio::test]
async fn a_viewer_reads_everything_and_changes_nothing() {
    let gw = start().await;
    let (s, issued) = gw
        .call(
            Method::POST,
            "/v1/tokens",
            &gw.admin,
            Some(json!({"name": "auditor", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let viewer = issued["token"].as_str().expect("the secret").to_owned();
    for (path, body) in [
        (
            "/v1/witnesses",
            json!({"name": "release", "kms_key": "local://release"}),
        ),
        (
            "/v1/policies",
            json!({"name": "p", "witnesses": ["release"], "cluster": "c1", "namespace": "prod"}),
        ),
        (
            "/v1/signing-rules",
            json!({"name": "r", "repositories": ["reg.local/team/*"], "witness": "release"}),
        ),
    ] {
        let (s, b) = gw.call(Method::POST, path, &gw.admin, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{path}: {b}");
    }
    let audit_before = gw
        .store
        .list_audit(&Default::default())
        .await
        .expect("audit")
        .len();

    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/openapi.json"
        ))
        .expect("the API document"),
    )
    .expect("json");
    // Verifier-only reads: what a cluster's verifier fetches, not what people read.
    let verifier_only = ["/v1/trust-bundle", "/v1/control-plane/key"];
    let fill = |path: &str| {
        path.replace("/v1/witnesses/{name}", "/v1/witnesses/release")
            .replace("/v1/policies/{name}", "/v1/policies/p")
            .replace("/v1/signing-rules/{name}", "/v1/signing-rules/r")
            .replace("{version}", "1")
            .replace("{id}", "0190f5c4-0000-7000-8000-000000000000")
            .replace("{name}", "x")
            + if path == "/v1/trust-bundle" {
                "?cluster=c1"
            } else {
                ""
            }
    };
    let (mut reads, mut writes) = (0, 0);
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let bearer = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            // A console session is the caller's own (a viewer opens and closes one;
            // tests/console.rs checks them), not something an admin manages.
            if !bearer || path.starts_with("/v1/sessions") {
                continue;
            }
            let url = fill(path);
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (s, b) = gw.call(m.clone(), &url, &viewer, Some(json!({}))).await;
            if m == Method::GET {
                reads += 1;
                if verifier_only.contains(&path.as_str()) {
                    assert_eq!(s, StatusCode::FORBIDDEN, "GET {url}: {b}");
                } else {
                    assert!(
                        s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                        "a viewer reads GET {url}: {s} {b}"
                    );
                }
            } else {
                writes += 1;
                assert_eq!(s, StatusCode::FORBIDDEN, "{m} {url}: {b}");
                assert!(
                    b["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("role viewer")),
                    "{m} {url}: {b}"
                );
            }
        }
    }
    assert!(
        reads >= 15 && writes >= 15,
        "{reads} reads, {writes} changes tried"
    );
    assert_eq!(
        gw.store
            .list_audit(&Default::default())
            .await
            .expect("audit")
            .len(),
        audit_before,
        "a viewer changed something"
    );
    // What it reads is what an admin reads.
    let (_, mine) = gw.call(Method::GET, "/v1/policies/p", &viewer, None).await;
    let (_, admins) = gw
        .call(Method::GET, "/v1/policies/p", &gw.admin, None)
        .await;
    assert_eq!(mine, admins);
}
