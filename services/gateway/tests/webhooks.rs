//! The webhook receivers and signing rules over the wire: a gateway on a real store and
//! bus (no signer runs, so jobs stay queued), fed the captured and documented bodies
//! under tests/fixtures. What a registry sees is checked: the status, the body, and that
//! a 2xx means the jobs are on the bus.

use secrecy::ExposeSecret;
use std::sync::Arc;

use axum::http::HeaderName;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signet_core::{JobState, Role};
use signet_gateway::webhooks::auth::{signature_header, Guard};
use signet_gateway::webhooks::receivers::Receiver;
use signet_gateway::webhooks::{ReceiverKind, Receivers};
use signet_gateway::{auth, AppState};
use signet_kms::{Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::secret::SecretString;
use signet_runtime::settings::GatewaySettings;
use signet_store::{AuditFilter, Store};
use signet_testkit::brokers::PrivateNats;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DIST_TOKEN: &str = "dist-token-0123456789";
const HARBOR_HMAC: &str = "It's a Secret to Everybody";
const ACR_SECRET: &str = "acr-url-secret-42";
/// The host the captured distribution events name.
const CAPTURED_HOST: &str = "127.0.0.1:18998";
const CAPTURED_DIGEST: &str =
    "sha256:5a190ddf43a90dbfba56c7dc4f062e8f09eda0844877b8293977e87a3b031706";

struct Gateway {
    url: String,
    store: Store,
    bus: signet_bus::Bus,
    admin: String,
    signer: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

fn receivers() -> Receivers {
    Receivers::default()
        .with(
            Receiver::new(
                ReceiverKind::Distribution,
                Guard::Token {
                    header: HeaderName::from_static("authorization"),
                    token: SecretString::from(DIST_TOKEN),
                },
            )
            .registry(CAPTURED_HOST),
        )
        .with(
            Receiver::new(
                ReceiverKind::Harbor,
                Guard::Hmac {
                    key: SecretString::from(HARBOR_HMAC),
                    allow_github: true,
                },
            )
            .registry("harbor.dev"),
        )
        .with(
            Receiver::new(
                ReceiverKind::Acr,
                Guard::UrlSecret {
                    secret: SecretString::from(ACR_SECRET),
                },
            )
            .registry("registry.cn-hangzhou.aliyuncs.com"),
        )
}

async fn start_with(bus_url: &str, receivers: Receivers) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("signet.db").display()
    ))
    .await
    .expect("store");
    let options = signet_bus::BusOptions {
        namespace: Some(format!("t{}", Uuid::new_v4().simple())),
        reconnect_max_delay: std::time::Duration::from_secs(1),
        ..signet_bus::BusOptions::default()
    };
    let bus = signet_bus::connect_with(bus_url, &store, options)
        .await
        .unwrap_or_else(|e| panic!("bus at {bus_url}: {e}"));
    let kms = Arc::new(Kms::new(KmsConfig::new(dir.path())));
    let control_key = signet_testkit::control_plane_key(&kms).await;
    let state = AppState {
        store: store.clone(),
        bus: bus.clone(),
        kms,
        registry: RegistryClient::new(RegistryConfig::for_loopback()).expect("registry client"),
        settings: Arc::new(GatewaySettings::default()),
        outbox_kick: Arc::new(tokio::sync::Notify::new()),
        webhooks: Arc::new({
            let mut r = receivers;
            r.body_limit = 8 * 1024;
            r
        }),
        control_key,
        waiters: Arc::default(),
        live: Arc::default(),
    };
    let admin = auth::issue(&store, "root", Role::Admin, "test")
        .await
        .expect("token")
        .secret
        .expose_secret()
        .to_owned();
    let signer = auth::issue(&store, "ci", Role::Signer, "test")
        .await
        .expect("token")
        .secret
        .expose_secret()
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    tokio::spawn(signet_gateway::serve(
        listener,
        state,
        signet_runtime::settings::HttpLimits::default(),
        None,
        shutdown.clone(),
    ));
    Gateway {
        url,
        store,
        bus,
        admin,
        signer,
        http: reqwest::Client::new(),
        _dir: dir,
        _shutdown: shutdown.drop_guard(),
    }
}

async fn start() -> Gateway {
    start_with("embedded", receivers()).await
}

fn fixture(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A captured distribution event with another repository and event id.
fn distribution_push(repository: &str, tag: &str, event_id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("distribution/push-manifest-tag.json"))
        .expect("fixture json");
    v["events"][0]["id"] = event_id.into();
    v["events"][0]["target"]["repository"] = repository.into();
    v["events"][0]["target"]["tag"] = tag.into();
    serde_json::to_vec(&v).expect("json")
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

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn distribution(&self, body: Vec<u8>) -> (StatusCode, Value) {
        let auth = format!("Bearer {DIST_TOKEN}");
        self.post(
            "/v1/webhooks/distribution",
            &[
                ("authorization", &auth),
                (
                    "content-type",
                    "application/vnd.docker.distribution.events.v1+json",
                ),
            ],
            body,
        )
        .await
    }

    async fn harbor(&self, body: Vec<u8>, delivery: &str) -> (StatusCode, Value) {
        let sig = signature_header(HARBOR_HMAC.as_bytes(), &body);
        self.post(
            "/v1/webhooks/harbor",
            &[("x-hub-signature-256", &sig), ("x-delivery-id", delivery)],
            body,
        )
        .await
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

    async fn rule(&self, body: Value) -> Value {
        let (s, b) = self
            .call(
                Method::POST,
                "/v1/signing-rules",
                Some(&self.admin),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    async fn stats(&self, receiver: &str) -> Value {
        let (s, b) = self
            .call(Method::GET, "/v1/webhooks/stats", Some(&self.admin), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["receivers"][receiver].clone()
    }

    async fn depth(&self) -> u64 {
        self.bus
            .jobs
            .depth()
            .await
            .expect("depth")
            .expect("the bus counts")
    }
}

fn job_ids(body: &Value) -> Vec<String> {
    body["jobs"]
        .as_array()
        .map(|j| {
            j.iter()
                .map(|j| j["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn pushes_become_one_job_per_witness_and_the_rest_is_acknowledged() {
    let gw = start().await;
    gw.witness("prod").await;
    gw.witness("qa").await;
    let glob = format!("{CAPTURED_HOST}/demo/*");
    gw.rule(json!({"name": "all", "repositories": [glob], "witness": "prod"}))
        .await;
    gw.rule(
        json!({"name": "release-qa", "repositories": [glob], "tag_pattern": "v*", "witness": "qa"}),
    )
    .await;
    // Two rules for one witness give one job.
    gw.rule(json!({"name": "dup", "repositories": ["**"], "witness": "prod"}))
        .await;
    gw.rule(json!({"name": "off", "repositories": ["**"], "witness": "qa", "enabled": false}))
        .await;

    let (s, b) = gw
        .distribution(fixture("distribution/push-manifest-tag.json"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let jobs = b["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{b}");
    let image = format!("{CAPTURED_HOST}/demo/copy:v2@{CAPTURED_DIGEST}");
    for j in jobs {
        assert_eq!(j["image"], image.as_str());
        assert_eq!(j["state"], "queued");
    }
    assert_eq!(jobs[0]["witness"], "prod");
    assert_eq!(jobs[0]["rules"], json!(["all", "dup"]));
    assert_eq!(jobs[1]["witness"], "qa");
    // 2xx means on the bus.
    assert_eq!(gw.depth().await, 2);
    for id in job_ids(&b) {
        let job = gw
            .store
            .get_job(id.parse().expect("uuid"))
            .await
            .expect("get")
            .expect("recorded");
        assert_eq!(job.source, "webhook:distribution");
        assert_eq!(job.state, JobState::Queued);
    }

    // The registry sends the delivery again (it got no answer in time): same jobs.
    let (s, again) = gw
        .distribution(fixture("distribution/push-manifest-tag.json"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(job_ids(&again), job_ids(&b));
    assert_eq!(gw.store.list_jobs(None, 100).await.expect("jobs").len(), 2);

    // What is not signed is acknowledged with a reason.
    for name in [
        "push-blob.json",
        "push-manifest-untagged.json",
        "push-signature-tag.json",
        "pull-manifest.json",
        "mount-blob.json",
        "delete-manifest.json",
        "delete-tag.json",
    ] {
        let (s, b) = gw
            .distribution(fixture(&format!("distribution/{name}")))
            .await;
        assert_eq!(s, StatusCode::OK, "{name}: {b}");
        assert_eq!(b["jobs"], json!([]), "{name}");
        assert_eq!(
            b["ignored"].as_array().map(Vec::len),
            Some(1),
            "{name}: {b}"
        );
    }
    let sig = gw
        .distribution(fixture("distribution/push-signature-tag.json"))
        .await
        .1;
    let reason = sig["ignored"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("signature"), "{reason}");

    // A push no rule matches is acknowledged and counted, not an error.
    gw.call(
        Method::DELETE,
        "/v1/signing-rules/dup",
        Some(&gw.admin),
        None,
    )
    .await;
    let (s, b) = gw
        .distribution(distribution_push("elsewhere/app", "v1", "e-unmatched"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["unmatched"],
        json!([format!(
            "{CAPTURED_HOST}/elsewhere/app:v1@{CAPTURED_DIGEST}"
        )])
    );
    assert_eq!(gw.store.list_jobs(None, 100).await.expect("jobs").len(), 2);

    let stats = gw.stats("distribution").await;
    assert_eq!(stats["deliveries"], 11, "{stats}");
    assert_eq!(stats["ignored"], 8, "{stats}");
    assert_eq!(stats["unmatched"], 1, "{stats}");
    assert_eq!(stats["jobs"], 4, "{stats}");
}

#[tokio::test]
async fn index_pushes_are_one_job_for_the_index() {
    let gw = start().await;
    gw.witness("prod").await;
    gw.rule(json!({"name": "all", "repositories": ["**"], "witness": "prod"}))
        .await;
    let (s, b) = gw
        .distribution(fixture("distribution/push-index-tag.json"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["jobs"].as_array().map(Vec::len), Some(1), "{b}");
    // The platform manifests were pushed by digest and are signed through the index
    // (the signer expands it), not from their own pushes.
    let (s, b) = gw
        .distribution(fixture("distribution/push-manifest-untagged.json"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn harbor_and_acr_pushes_in_every_format() {
    let gw = start().await;
    gw.witness("prod").await;
    gw.rule(json!({"name": "harbor", "repositories": ["harbor.dev/library/*"], "witness": "prod"}))
        .await;
    gw.rule(json!({"name": "acr", "repositories": ["registry.cn-hangzhou.aliyuncs.com/namespace/*"], "witness": "prod"}))
        .await;

    let (s, b) = gw
        .harbor(fixture("harbor/push-artifact-default.json"), "d-1")
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        b["jobs"][0]["image"],
        "harbor.dev/library/busybox:v1.0@sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c"
    );
    let (s, b) = gw
        .harbor(fixture("harbor/push-artifact-cloudevents.json"), "d-2")
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    for (name, delivery) in [
        ("push-artifact-untagged.json", "d-3"),
        ("push-signature-accessory.json", "d-4"),
        ("pull-artifact-cloudevents.json", "d-5"),
    ] {
        let (s, b) = gw
            .harbor(fixture(&format!("harbor/{name}")), delivery)
            .await;
        assert_eq!(s, StatusCode::OK, "{name}: {b}");
        assert_eq!(b["jobs"], json!([]), "{name}");
    }

    let acr = fixture("acr/push.json");
    let (s, b) = gw
        .post(&format!("/v1/webhooks/acr/{ACR_SECRET}"), &[], acr.clone())
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(
        b["jobs"][0]["image"],
        "registry.cn-hangzhou.aliyuncs.com/namespace/repotest:latest@sha256:457f4aa83fc9a6663ab9d1b0a6e2dce25a12a943ed5bf2c1747c58d48bbb4917"
    );
    let (s, again) = gw
        .post(
            &format!("/v1/webhooks/acr?secret={ACR_SECRET}"),
            &[],
            acr.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        job_ids(&again),
        job_ids(&b),
        "the same notification is the same job"
    );
    for path in [
        "/v1/webhooks/acr/wrong",
        "/v1/webhooks/acr?secret=wrong",
        "/v1/webhooks/acr",
    ] {
        let (s, b) = gw.post(path, &[], acr.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {b}");
        assert!(!b.to_string().contains(ACR_SECRET), "{b}");
    }
}

#[tokio::test]
async fn senders_are_authenticated_and_replays_refused() {
    let gw = start().await;
    gw.witness("prod").await;
    gw.rule(json!({"name": "all", "repositories": ["**"], "witness": "prod"}))
        .await;
    let body = fixture("distribution/push-manifest-tag.json");

    let (s, b) = gw
        .post("/v1/webhooks/distribution", &[], body.clone())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["error"], "unauthenticated");
    assert_eq!(
        b["detail"],
        "send the webhook token in the authorization header"
    );
    let (s, b) = gw
        .post(
            "/v1/webhooks/distribution",
            &[("authorization", "Bearer nope")],
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // The API's own tokens are not webhook tokens.
    let admin = format!("Bearer {}", gw.admin);
    let (s, _) = gw
        .post(
            "/v1/webhooks/distribution",
            &[("authorization", &admin)],
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Harbor sends its "Auth Header" value as it is; distribution whatever its config says.
    let (s, b) = gw
        .post(
            "/v1/webhooks/distribution",
            &[("authorization", DIST_TOKEN)],
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");

    // HMAC: a changed body, a missing delivery id, a replay.
    let harbor = fixture("harbor/push-artifact-default.json");
    let sig = signature_header(HARBOR_HMAC.as_bytes(), &harbor);
    let mut changed = harbor.clone();
    changed.push(b' ');
    let (s, b) = gw
        .post(
            "/v1/webhooks/harbor",
            &[("x-hub-signature-256", &sig), ("x-delivery-id", "r-1")],
            changed,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(b["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("does not match the body"));
    let (s, b) = gw
        .post(
            "/v1/webhooks/harbor",
            &[("x-hub-signature-256", &sig)],
            harbor.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(b["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("X-Delivery-Id"));
    let (s, first) = gw.harbor(harbor.clone(), "r-1").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    let (s, b) = gw.harbor(harbor.clone(), "r-1").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already received"),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/v1/webhooks/harbor",
            &[("x-hub-signature-256", &sig), ("x-github-delivery", "r-1")],
            harbor.clone(),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "GitHub's header names the same delivery: {b}"
    );
    // GitHub's scheme does not sign the delivery id: a replay under a fresh one passes,
    // but the jobs derive from the event id in the body, so it makes none.
    let (s, again) = gw.harbor(harbor.clone(), "r-2-replayed").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        job_ids(&again),
        job_ids(&first),
        "a replay makes no new job"
    );

    // Disabled receivers say how to turn them on.
    let (s, b) = gw.post("/v1/webhooks/generic", &[], b"{}".to_vec()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("[webhooks.generic]"),
        "{b}"
    );

    let stats = gw.stats("harbor").await;
    assert_eq!(stats["unauthenticated"], 2, "{stats}");
    assert_eq!(stats["replays"], 2, "{stats}");
}

#[tokio::test]
async fn malformed_bodies_get_a_precise_4xx_never_a_5xx() {
    let gw = start().await;
    gw.witness("prod").await;
    gw.rule(json!({"name": "all", "repositories": ["**"], "witness": "prod"}))
        .await;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "the distribution notification envelope is not valid",
        ),
        (
            br#"{"events":[{"id":"1"}]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "missing field `action`",
        ),
        (
            distribution_push("Demo/App", "v1", "e-upper"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be lowercase",
        ),
        (
            vec![b' '; 9 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 8192 bytes",
        ),
    ];
    for (body, status, detail) in cases {
        let (s, b) = gw.distribution(body).await;
        assert_eq!(s, status, "{b}");
        let got = b["detail"].as_str().unwrap_or_default();
        assert!(got.contains(detail), "{got:?} should mention {detail:?}");
    }
    // The HMAC receiver checks the signature before it reads the JSON, and a body it
    // refused as malformed is not remembered: the fixed retry is accepted.
    let (s, b) = gw.harbor(b"{".to_vec(), "m-1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = gw
        .harbor(fixture("harbor/push-artifact-default.json"), "m-1")
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(gw.stats("distribution").await["malformed"], 4);
}

#[tokio::test]
async fn the_generic_receiver_takes_sign_requests() {
    let gw = start_with(
        "embedded",
        Receivers::default().with(Receiver::new(ReceiverKind::Generic, Guard::Open)),
    )
    .await;
    gw.witness("prod").await;
    let request = json!({"image": format!("registry.example.com/team/app@{CAPTURED_DIGEST}"), "witness": "prod"});
    let (s, b) = gw
        .post(
            "/v1/webhooks/generic",
            &[],
            serde_json::to_vec(&request).expect("json"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(gw.depth().await, 1);
    let (s, b) = gw
        .post(
            "/v1/webhooks/generic",
            &[],
            serde_json::to_vec(
                &json!({"image": "registry.example.com/team/app:v1", "witness": "nobody"}),
            )
            .expect("json"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = gw
        .post(
            "/v1/webhooks/generic",
            &[],
            serde_json::to_vec(&json!({"image": "x:v1", "witness": "prod", "color": "red"}))
                .expect("json"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field `color`"),
        "{b}"
    );
    let sig_tag = format!(
        "registry.example.com/team/app:sha256-{}.sig",
        CAPTURED_DIGEST.trim_start_matches("sha256:")
    );
    let (s, b) = gw
        .post(
            "/v1/webhooks/generic",
            &[],
            serde_json::to_vec(&json!({"image": sig_tag, "witness": "prod"})).expect("json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["jobs"], json!([]));
    assert_eq!(gw.depth().await, 1);
}

#[tokio::test]
async fn bus_down_answers_503_and_the_registry_retry_is_accepted() {
    let mut nats = PrivateNats::start().await.expect("a private nats-server");
    let gw = start_with(&nats.url(), receivers()).await;
    gw.witness("prod").await;
    gw.rule(json!({"name": "all", "repositories": ["**"], "witness": "prod"}))
        .await;

    nats.stop().await.expect("stop nats-server");
    let body = fixture("distribution/push-manifest-tag.json");
    let (s, b) = gw.distribution(body.clone()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("try again"),
        "{b}"
    );
    // The HMAC receiver forgets a delivery it could not take: its retry is no replay.
    let harbor = fixture("harbor/push-artifact-default.json");
    let (s, b) = gw.harbor(harbor.clone(), "h-1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");

    nats.start_again().await.expect("start nats-server");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let accepted = loop {
        let (s, b) = gw.distribution(body.clone()).await;
        if s == StatusCode::ACCEPTED {
            break b;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bus did not come back: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let jobs = gw.store.list_jobs(None, 100).await.expect("jobs");
    assert_eq!(
        jobs.len(),
        2,
        "one job per delivery, the retry included: {jobs:?}"
    );
    let revived = jobs
        .iter()
        .find(|j| j.id.to_string() == job_ids(&accepted)[0])
        .expect("the retried job");
    assert_eq!(
        revived.state,
        JobState::Queued,
        "a job the bus refused is queued again"
    );
    let (s, b) = gw.harbor(harbor, "h-1").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(gw.depth().await, 2);
    assert_eq!(
        gw.stats("distribution").await["unavailable"]
            .as_u64()
            .map(|n| n >= 1),
        Some(true)
    );
}

#[tokio::test]
async fn signing_rules_are_managed_by_admins_and_audited() {
    let gw = start().await;
    gw.witness("prod").await;
    gw.witness("qa").await;
    let created = gw
        .rule(json!({"name": "team", "repositories": ["registry.example.com/team/*"], "witness": "prod"}))
        .await;
    assert_eq!(created["tag_pattern"], "*");
    assert_eq!(created["enabled"], true);

    let cases = [
        (
            json!({"name": "Bad", "repositories": ["a/*"], "witness": "prod"}),
            StatusCode::BAD_REQUEST,
            "signing rule name \"Bad\" is invalid",
        ),
        (
            json!({"name": "g", "repositories": ["a/["], "witness": "prod"}),
            StatusCode::BAD_REQUEST,
            "repository glob \"a/[\" is invalid",
        ),
        (
            json!({"name": "g", "repositories": [], "witness": "prod"}),
            StatusCode::BAD_REQUEST,
            "at least one glob",
        ),
        (
            json!({"name": "g", "repositories": ["a/*"], "witness": "nobody"}),
            StatusCode::NOT_FOUND,
            "witness \"nobody\" does not exist",
        ),
        (
            json!({"name": "team", "repositories": ["a/*"], "witness": "prod"}),
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            json!({"name": "g", "repositories": ["a/*"], "witness": "prod", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
    ];
    for (body, status, detail) in cases {
        let (s, b) = gw
            .call(
                Method::POST,
                "/v1/signing-rules",
                Some(&gw.admin),
                Some(body),
            )
            .await;
        assert_eq!(s, status, "{b}");
        let got = b["detail"].as_str().unwrap_or_default();
        assert!(got.contains(detail), "{got:?} should mention {detail:?}");
    }
    let (s, b) = gw
        .call(Method::GET, "/v1/signing-rules", Some(&gw.signer), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    let (s, b) = gw
        .call(
            Method::PATCH,
            "/v1/signing-rules/team",
            Some(&gw.admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["enabled"], false);
    let (s, b) = gw
        .call(
            Method::PATCH,
            "/v1/signing-rules/team",
            Some(&gw.admin),
            Some(json!({"witness": "qa", "tag_pattern": "v*"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["witness"], "qa");
    let (s, b) = gw
        .call(
            Method::PATCH,
            "/v1/signing-rules/team",
            Some(&gw.admin),
            Some(json!({"tag_pattern": "{"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = gw
        .call(Method::GET, "/v1/signing-rules/team", Some(&gw.admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["tag_pattern"], "v*", "a refused change changes nothing");
    let (s, b) = gw
        .call(Method::GET, "/v1/signing-rules", Some(&gw.admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["rules"].as_array().map(Vec::len), Some(1));
    let (s, b) = gw
        .call(
            Method::DELETE,
            "/v1/signing-rules/team",
            Some(&gw.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["deleted"], true);
    assert_eq!(b["rule"]["witness"], "qa");
    let (s, b) = gw
        .call(Method::GET, "/v1/signing-rules/team", Some(&gw.admin), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    let actions: Vec<String> = gw
        .store
        .list_audit(&AuditFilter {
            action_prefix: Some("rule.".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit")
        .into_iter()
        .map(|e| {
            assert_eq!(e.actor, "token:root");
            e.action
        })
        .collect();
    assert_eq!(
        actions,
        ["rule.create", "rule.disable", "rule.update", "rule.delete"]
    );
}
