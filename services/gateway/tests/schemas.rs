//! The documents in `schemas/` against the code. Each is regenerated in memory and
//! compared with the committed file; then real payloads are validated against them with
//! the `jsonschema` crate: the events a real gateway and signer emit while an image in a
//! real docker-registry is signed, the sign request as it travels on the queue, the trust
//! bundle, the gateway's answers (against the OpenAPI document), and the webhook bodies
//! captured from real registries. Each family also has payloads that must fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signet_core::{EventKind, JobState};
use signet_gateway::schemas::{self, SchemaFile, ANY_EVENT, DIALECT, OPENAPI};
use signet_gateway::webhooks::auth::Guard;
use signet_gateway::webhooks::receivers::Receiver;
use signet_gateway::webhooks::{acr, distribution, harbor, ReceiverKind, Receivers};
use signet_gateway::AppState;
use signet_kms::{Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::secret::SecretString;
use signet_runtime::settings::GatewaySettings;
use signet_signer::sign::SignContext;
use signet_signer::{Signer, SignerOptions};
use signet_store::Store;
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use tokio_util::sync::CancellationToken;

const REGENERATE: &str =
    "SIGNET_UPDATE_SCHEMAS=1 cargo test -p signet-gateway --test schemas (or `just schemas`)";
const DEADLINE: Duration = Duration::from_secs(60);

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn generated() -> BTreeMap<String, SchemaFile> {
    schemas::files()
        .expect("the schemas generate")
        .into_iter()
        .map(|f| (f.path.clone(), f))
        .collect()
}

fn schema(path: &str) -> Value {
    generated()
        .remove(path)
        .unwrap_or_else(|| panic!("no generated schema {path}"))
        .json
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("{} does not compile: {e}", schema["$id"]))
}

/// Every problem `instance` has under `schema`, in words.
fn problems(schema: &Value, instance: &Value) -> Vec<String> {
    validator(schema)
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(path: &str, schema: &Value, instance: &Value) {
    let p = problems(schema, instance);
    assert!(
        p.is_empty(),
        "{path} refuses a real payload: {p:#?}\npayload: {instance:#}"
    );
}

#[track_caller]
fn assert_invalid(path: &str, schema: &Value, instance: &Value, why: &str) {
    assert!(
        !problems(schema, instance).is_empty(),
        "{path} accepts a payload it must refuse ({why}): {instance:#}"
    );
}

fn json_files(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            if let Ok(rel) = path.strip_prefix(base) {
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

#[test]
fn committed_schemas_are_current() {
    let dir = schemas_dir();
    let update = std::env::var("SIGNET_UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let files = generated();
    let mut stale = Vec::new();
    for f in files.values() {
        let path = dir.join(&f.path);
        let want = f.contents().expect("render");
        if std::fs::read_to_string(&path).ok().as_deref() == Some(want.as_str()) {
            continue;
        }
        if update {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("create schemas/");
            }
            std::fs::write(&path, want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            stale.push(f.path.clone());
        }
    }
    let mut committed = BTreeSet::new();
    json_files(&dir, &dir, &mut committed);
    for extra in committed.iter().filter(|p| !files.contains_key(*p)) {
        if update {
            std::fs::remove_file(dir.join(extra)).expect("remove a file no longer generated");
        } else {
            stale.push(format!("{extra} (no longer generated)"));
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is stale: {stale:?}. Regenerate with `{REGENERATE}` and commit the result"
    );
}

#[test]
fn every_schema_is_a_2020_12_schema_whose_references_resolve() {
    for (path, f) in generated() {
        if path == OPENAPI {
            continue;
        }
        assert_eq!(f.json["$schema"], DIALECT, "{path}");
        assert_eq!(
            f.json["$id"],
            format!("{}{path}", schemas::BASE_ID),
            "{path}"
        );
        if let Err(e) = jsonschema::draft202012::meta::validate(&f.json) {
            panic!("{path} is not a valid draft 2020-12 schema: {e}");
        }
        // Building compiles every reference; one that leads nowhere fails here.
        validator(&f.json);
        assert!(
            !f.contents().expect("render").contains("#/components/"),
            "{path} refers outside itself"
        );
    }
}

#[test]
fn the_openapi_document_describes_every_route() {
    let doc = schema(OPENAPI);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // The routes the router serves, read from its source.
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes/mod.rs"))
            .expect("routes/mod.rs");
    let mut routed = BTreeSet::new();
    for chunk in source.split(".route(").skip(1) {
        let path = chunk
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("a route without a path: {chunk}"));
        routed.insert(path.to_owned());
    }
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        routed, documented,
        "routes and the OpenAPI document differ; add #[utoipa::path] and list the handler in ApiDoc"
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            for status in ["default"]
                .into_iter()
                .chain(secured.then_some(["401", "403"]).into_iter().flatten())
            {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path} does not describe its {status} answer"
                );
            }
        }
    }
    // Every component compiles as a 2020-12 schema.
    let api = Api::new(doc);
    for name in api.doc["components"]["schemas"]
        .as_object()
        .expect("components")
        .keys()
    {
        validator(&api.rooted(&json!({"$ref": format!("#/components/schemas/{name}")})));
    }
}

/// The OpenAPI document, for checking answers against it.
struct Api {
    doc: Value,
}

impl Api {
    fn new(doc: Value) -> Self {
        Self { doc }
    }

    /// `schema` as a standalone 2020-12 schema, with the document's components as `$defs`.
    fn rooted(&self, schema: &Value) -> Value {
        let mut root = json!({
            "$schema": DIALECT,
            "$defs": self.doc["components"]["schemas"],
            "allOf": [schema],
        });
        fn to_defs(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get_mut("$ref") {
                        *r = r.replace("#/components/schemas/", "#/$defs/");
                    }
                    m.values_mut().for_each(to_defs);
                }
                Value::Array(a) => a.iter_mut().for_each(to_defs),
                _ => {}
            }
        }
        to_defs(&mut root);
        root
    }

    /// The documented path template a concrete path is served by: literal segments win
    /// over parameters (`/v1/webhooks/stats` is not `/v1/webhooks/acr/{secret}`).
    fn template(&self, path: &str) -> String {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, String)> = None;
        for t in self.doc["paths"].as_object().expect("paths").keys() {
            let ts: Vec<&str> = t.split('/').collect();
            if ts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let fits = ts.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') {
                    !s.is_empty()
                } else {
                    literal += 1;
                    t == s
                }
            });
            if fits && best.as_ref().is_none_or(|(l, _)| literal > *l) {
                best = Some((literal, t.clone()));
            }
        }
        best.map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{path} is in no path of the OpenAPI document"))
    }

    /// Fails unless the document describes this answer: its status (or `default`), its
    /// media type, and for JSON, a schema the body satisfies.
    #[track_caller]
    fn check(&self, method: &Method, path: &str, status: StatusCode, media: &str, body: &str) {
        let template = self.template(path);
        let op = &self.doc["paths"][&template][method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let responses = &op["responses"];
        let response = responses
            .get(status.as_str())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| panic!("{method} {template} does not describe {status}"));
        let content = response["content"].get(media).unwrap_or_else(|| {
            panic!("{method} {template} {status} is documented without {media}: {response:#}")
        });
        if media == "application/json" {
            let body: Value = serde_json::from_str(body).expect("a JSON answer");
            let p = problems(&self.rooted(&content["schema"]), &body);
            assert!(
                p.is_empty(),
                "{method} {path} answered {status} with a body its OpenAPI description refuses: {p:#?}\n{body:#}"
            );
        }
    }
}

fn fixture(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn webhook_bodies_match_the_receivers_schemas() {
    let dist = schema("webhooks/distribution.schema.json");
    let harbor_default = schema("webhooks/harbor-default.schema.json");
    let harbor_ce = schema("webhooks/harbor-cloudevents.schema.json");
    let acr = schema("webhooks/acr.schema.json");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = BTreeSet::new();
    json_files(&fixtures, &fixtures, &mut seen);
    assert!(seen.len() >= 15, "fixtures: {seen:?}");
    for name in &seen {
        let body = fixture(name);
        let bytes = serde_json::to_vec(&body).expect("json");
        // Each body goes to the schema of the parser that reads it, and both accept it.
        let (path, schema) = match name.split('/').next() {
            Some("distribution") => {
                distribution::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                ("webhooks/distribution.schema.json", &dist)
            }
            Some("harbor") => {
                harbor::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                if body.get("specversion").is_some() {
                    ("webhooks/harbor-cloudevents.schema.json", &harbor_ce)
                } else {
                    ("webhooks/harbor-default.schema.json", &harbor_default)
                }
            }
            Some("acr") => {
                acr::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                ("webhooks/acr.schema.json", &acr)
            }
            _ => panic!("fixture {name} belongs to no receiver"),
        };
        assert_valid(path, schema, &body);
    }

    // Bodies the parsers refuse, which the schemas must refuse too.
    let mut no_target = fixture("distribution/push-manifest-tag.json");
    no_target["events"][0]
        .as_object_mut()
        .expect("event")
        .remove("target");
    let refused = [
        (&dist, no_target),
        (&dist, json!({"event": []})),
        (
            &dist,
            json!({"events": [{"id": 1, "action": "push", "target": {}}]}),
        ),
        (&harbor_default, json!({"occur_at": 1})),
        (
            &harbor_default,
            json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"tag": 1}]}}),
        ),
        (
            &harbor_ce,
            json!({"specversion": "1.0", "type": "harbor.artifact.pushed"}),
        ),
        (
            &acr,
            json!({"push_data": {"tag": 1}, "repository": {"namespace": "a", "name": "b"}}),
        ),
        (
            &acr,
            json!({"push_data": {"tag": "v1"}, "repository": {"name": "b"}}),
        ),
    ];
    for (schema, body) in refused {
        let path = schema["$id"].as_str().expect("$id");
        let bytes = serde_json::to_vec(&body).expect("json");
        let parsed = if path.ends_with("distribution.schema.json") {
            distribution::parse(&bytes).is_ok()
        } else if path.ends_with("acr.schema.json") {
            acr::parse(&bytes).is_ok()
        } else {
            harbor::parse(&bytes).is_ok()
        };
        assert!(!parsed, "the parser accepts {body}");
        assert_invalid(path, schema, &body, "its parser refuses it");
    }
}

#[test]
fn sign_requests_match_the_schema_as_the_parser_does() {
    let path = "sign-request.schema.json";
    let s = schema(path);
    for good in [
        json!({"image": "ghcr.io/a/b:v1", "witness": "prod"}),
        json!({"image": "r.example/a@sha256:5a190ddf43a90dbfba56c7dc4f062e8f09eda0844877b8293977e87a3b031706",
               "witness": "prod", "annotations": {"pipeline": "build-42"}}),
    ] {
        serde_json::from_value::<signet_core::SignRequest>(good.clone())
            .expect("the parser accepts it");
        assert_valid(path, &s, &good);
    }
    for (bad, why) in [
        (json!({"image": "x"}), "no witness"),
        (
            json!({"image": "x", "witness": "p", "extra": 1}),
            "an unknown field",
        ),
        (
            json!({"image": "x", "witness": "p", "annotations": {"a": 1}}),
            "a number as annotation",
        ),
        (
            json!({"image": ["x"], "witness": "p"}),
            "an image that is not a string",
        ),
    ] {
        assert!(
            serde_json::from_value::<signet_core::SignRequest>(bad.clone()).is_err(),
            "the parser accepts {bad}"
        );
        assert_invalid(path, &s, &bad, why);
    }
}

/// A gateway, the outbox relay and (once started) a signer, in this process, on a SQLite
/// store, the embedded bus and the local development KMS.
struct Signet {
    url: String,
    store: Store,
    bus: signet_bus::Bus,
    kms: Arc<Kms>,
    kick: Arc<tokio::sync::Notify>,
    control_key: Arc<signet_kms::ControlPlaneKey>,
    admin: String,
    signer: String,
    verifier: String,
    http: reqwest::Client,
    api: Api,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

const DIST_TOKEN: &str = "dist-token-0123456789";

impl Signet {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .expect("store");
        let bus = signet_bus::connect("embedded", &store)
            .await
            .expect("embedded bus");
        let kms = Arc::new(Kms::new(KmsConfig::new(dir.path())));
        let kick = Arc::new(tokio::sync::Notify::new());
        let shutdown = CancellationToken::new();
        let control_key = signet_testkit::control_plane_key(&kms).await;
        tokio::spawn(signet_bus::outbox::run(
            store.clone(),
            bus.events.clone(),
            control_key.clone(),
            kick.clone(),
            shutdown.clone(),
        ));
        // Bound, as every configured registry receiver is, to the host the captured
        // notification names.
        let receivers = Receivers::default().with(
            Receiver::new(
                ReceiverKind::Distribution,
                Guard::Token {
                    header: HeaderName::from_static("authorization"),
                    token: SecretString::from(DIST_TOKEN),
                },
            )
            .registry("127.0.0.1:18998"),
        );
        let state = AppState {
            store: store.clone(),
            bus: bus.clone(),
            kms: kms.clone(),
            registry: registry_client(),
            settings: Arc::new(GatewaySettings::default()),
            outbox_kick: kick.clone(),
            webhooks: Arc::new(receivers),
            control_key: control_key.clone(),
            waiters: Arc::default(),
            live: Arc::default(),
        };
        let tokens = common::tokens(&store).await;
        let url = common::serve(state, shutdown.clone()).await;
        Self {
            url,
            store,
            bus,
            kms,
            kick,
            control_key,
            admin: tokens.admin,
            signer: tokens.signer,
            verifier: tokens.verifier,
            http: reqwest::Client::new(),
            api: Api::new(schema(OPENAPI)),
            shutdown,
            _dir: dir,
        }
    }

    fn start_signer(&self) {
        let signer = Arc::new(Signer::new(
            SignContext::new(
                self.store.clone(),
                self.kms.clone(),
                registry_client(),
                1000,
            ),
            self.bus.clone(),
            SignerOptions {
                concurrency: 2,
                max_attempts: 2,
                retry_base: Duration::from_millis(50),
                retry_max: Duration::from_millis(200),
                ..SignerOptions::default()
            },
            self.kick.clone(),
        ));
        tokio::spawn(signer.run(self.shutdown.clone()));
    }

    /// Calls the gateway and checks the answer (and, when it succeeds, the request body)
    /// against the OpenAPI document.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let media = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.expect("body");
        self.api.check(&method, path, status, &media, &text);
        if let (Some(b), true) = (&body, status.is_success()) {
            self.api.check_request(&method, path, b);
        }
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Signet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Api {
    /// Fails unless the request body satisfies the operation's documented body.
    #[track_caller]
    fn check_request(&self, method: &Method, path: &str, body: &Value) {
        let template = self.template(path);
        let op = &self.doc["paths"][&template][method.as_str().to_ascii_lowercase()];
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} took a JSON body it does not document"
        );
        let p = problems(&self.rooted(schema), body);
        assert!(
            p.is_empty(),
            "{method} {path} accepted a body its OpenAPI description refuses: {p:#?}\n{body:#}"
        );
    }
}

fn registry_client() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        timeout: Duration::from_secs(5),
        ..RegistryConfig::for_loopback()
    })
    .expect("registry client")
}

#[track_caller]
fn expect(status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_payloads_match_their_schemas() {
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let s = Signet::start().await;
    let mut events = s
        .bus
        .events
        .subscribe(s.shutdown.clone())
        .await
        .expect("subscribe to events");
    let (admin, signer, verifier) = (
        Some(s.admin.as_str()),
        Some(s.signer.as_str()),
        Some(s.verifier.as_str()),
    );

    // Control plane: a witness on the local KMS, an enabled policy, a signing rule.
    let (st, witness) = s
        .call(Method::POST, "/v1/witnesses", admin,
              Some(json!({"name": "release", "kms_key": "local://release", "description": "release builds"})))
        .await;
    expect(st, &witness, StatusCode::CREATED);
    let first_version = witness["key_versions"][0]["version"]
        .as_str()
        .expect("version")
        .to_owned();
    expect_ok(s.call(Method::GET, "/v1/witnesses", admin, None).await);
    expect_ok(
        s.call(Method::GET, "/v1/witnesses/release", verifier, None)
            .await,
    );
    let (st, pem) = s
        .call(
            Method::GET,
            "/v1/witnesses/release/public-key",
            signer,
            None,
        )
        .await;
    expect(st, &pem, StatusCode::OK);
    assert!(
        pem.as_str()
            .is_some_and(|p| p.starts_with("-----BEGIN PUBLIC KEY-----")),
        "{pem}"
    );
    let (st, body) = s
        .call(
            Method::POST,
            "/v1/policies",
            admin,
            Some(json!({
                "name": "prod-images", "witnesses": ["release"], "cluster": "c1",
                "namespace": "prod", "allow_break_glass": true,
                "exemptions": ["registry.k8s.io/pause:*"],
            })),
        )
        .await;
    expect(st, &body, StatusCode::CREATED);
    expect_ok(
        s.call(
            Method::PATCH,
            "/v1/policies/prod-images",
            admin,
            Some(json!({"enabled": true})),
        )
        .await,
    );
    expect_ok(
        s.call(Method::GET, "/v1/policies/prod-images", admin, None)
            .await,
    );
    expect_ok(
        s.call(Method::GET, "/v1/policies?cluster=c1", admin, None)
            .await,
    );
    let (st, body) = s
        .call(
            Method::POST,
            "/v1/signing-rules",
            admin,
            Some(json!({
                "name": "demo", "repositories": [format!("{host}/demo/*")], "witness": "release",
            })),
        )
        .await;
    expect(st, &body, StatusCode::CREATED);
    expect_ok(
        s.call(
            Method::PATCH,
            "/v1/signing-rules/demo",
            admin,
            Some(json!({"tag_pattern": "v*"})),
        )
        .await,
    );
    expect_ok(s.call(Method::GET, "/v1/signing-rules", admin, None).await);
    expect_ok(
        s.call(Method::GET, "/v1/signing-rules/demo", admin, None)
            .await,
    );

    // A sign request, checked as the pipeline sends it and as it travels on the queue.
    let digest = TestImage::random()
        .push(&host, "demo/app", "v1")
        .await
        .expect("push");
    let request = json!({
        "image": format!("{host}/demo/app:v1"),
        "witness": "release",
        "annotations": {"pipeline": "schemas-test"},
        "attestations": [{
            "type": "slsaprovenance1",
            "predicate": {
                "buildDefinition": {"buildType": "https://signet.dev/test/v1", "externalParameters": {}},
                "runDetails": {"builder": {"id": "https://ci.example.com/runner"}}
            }
        }],
    });
    let sign_request = schema("sign-request.schema.json");
    assert_valid("sign-request.schema.json", &sign_request, &request);
    let (st, job) = s
        .call(Method::POST, "/v1/sign", signer, Some(request))
        .await;
    expect(st, &job, StatusCode::ACCEPTED);
    let job_id = job["id"].as_str().expect("job id").to_owned();
    {
        let stop = CancellationToken::new();
        let mut deliveries = s.bus.jobs.consume(1, stop.clone()).await.expect("consume");
        let delivery = tokio::time::timeout(DEADLINE, deliveries.recv())
            .await
            .expect("the job reaches the queue")
            .expect("a delivery");
        stop.cancel();
        let on_queue: Value =
            serde_json::from_slice(&delivery.message.body).expect("JSON on the queue");
        assert_valid("sign-request.schema.json", &sign_request, &on_queue);
        delivery
            .retry(Duration::ZERO)
            .await
            .expect("back on the queue");
    }
    // What the gateway refuses, the schema refuses.
    let extra =
        json!({"image": format!("{host}/demo/app:v1"), "witness": "release", "priority": 1});
    assert_invalid(
        "sign-request.schema.json",
        &sign_request,
        &extra,
        "an unknown field",
    );
    let (st, body) = s.call(Method::POST, "/v1/sign", signer, Some(extra)).await;
    expect(st, &body, StatusCode::BAD_REQUEST);

    s.start_signer();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (st, job) = s
            .call(Method::GET, &format!("/v1/jobs/{job_id}"), signer, None)
            .await;
        expect(st, &job, StatusCode::OK);
        if job["state"] == "succeeded" {
            assert_eq!(job["digest"], digest.to_string());
            assert!(job["signature"].is_object(), "{job:#}");
            break;
        }
        assert!(
            job["state"] != "failed",
            "the image was not signed: {job:#}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "not signed within {DEADLINE:?}: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A tag that does not exist: the job fails for good (signature.failed).
    let (st, failed) = s
        .call(
            Method::POST,
            "/v1/sign?wait=30",
            signer,
            Some(json!({"image": format!("{host}/demo/app:missing"), "witness": "release"})),
        )
        .await;
    expect(st, &failed, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(failed["error"], "sign_failed");
    assert_eq!(failed["job"]["state"], JobState::Failed.as_str());

    // A captured docker-registry notification; no rule matches its registry.
    let (st, report) = s
        .call_with(
            Method::POST,
            "/v1/webhooks/distribution",
            None,
            Some(fixture("distribution/push-manifest-tag.json")),
            &[("authorization", DIST_TOKEN)],
        )
        .await;
    expect(st, &report, StatusCode::OK);
    assert_eq!(
        report["unmatched"].as_array().map(Vec::len),
        Some(1),
        "{report:#}"
    );
    expect_ok(s.call(Method::GET, "/v1/webhooks/stats", admin, None).await);

    // Records, tokens, trusted images.
    let (_, sigs) = expect_ok(
        s.call(
            Method::GET,
            &format!("/v1/signatures?image={host}/demo/app@{digest}"),
            admin,
            None,
        )
        .await,
    );
    assert_eq!(
        sigs["signatures"].as_array().map(Vec::len),
        Some(1),
        "{sigs:#}"
    );
    let (_, images) = expect_ok(s.call(Method::GET, "/v1/images", verifier, None).await);
    assert_eq!(
        images["images"][0]["digest"],
        digest.to_string(),
        "{images:#}"
    );
    let signature_id = sigs["signatures"][0]["id"].as_str().expect("id").to_owned();
    let revoke = format!("/v1/signatures/{signature_id}/revoke");
    let (st, body) = s
        .call(Method::POST, &revoke, admin, Some(json!({"reason": " "})))
        .await;
    expect(st, &body, StatusCode::BAD_REQUEST);
    let (_, revoked) = expect_ok(
        s.call(
            Method::POST,
            &revoke,
            admin,
            Some(json!({"reason": "built from a compromised branch"})),
        )
        .await,
    );
    assert_eq!(
        revoked["revoked"]["reason"],
        "built from a compromised branch"
    );
    let (st, body) = s
        .call(
            Method::POST,
            &revoke,
            admin,
            Some(json!({"reason": "again"})),
        )
        .await;
    expect(st, &body, StatusCode::CONFLICT);
    expect_ok(s.call(Method::GET, "/v1/audit?limit=50", admin, None).await);
    expect_ok(
        s.call(Method::GET, "/v1/jobs?state=failed", admin, None)
            .await,
    );
    let (_, images) = expect_ok(s.call(Method::GET, "/v1/images", verifier, None).await);
    assert_eq!(
        images["images"].as_array().map(Vec::len),
        Some(0),
        "a revoked signature is not a trusted image: {images:#}"
    );
    let (st, body) = s
        .call(
            Method::POST,
            "/v1/tokens",
            admin,
            Some(json!({"name": "ci-2", "role": "signer"})),
        )
        .await;
    expect(st, &body, StatusCode::CREATED);
    expect_ok(s.call(Method::GET, "/v1/tokens", admin, None).await);
    expect_ok(s.call(Method::DELETE, "/v1/tokens/ci-2", admin, None).await);

    // The trust bundle, against its own schema too.
    let (_, bundle) = expect_ok(
        s.call(Method::GET, "/v1/trust-bundle?cluster=c1", verifier, None)
            .await,
    );
    let bundle_schema = schema("trust-bundle.schema.json");
    assert_valid("trust-bundle.schema.json", &bundle_schema, &bundle);
    assert_eq!(
        bundle["keys"].as_array().map(Vec::len),
        Some(1),
        "{bundle:#}"
    );
    for (bad, why) in [
        (
            with(&bundle, |b| b["keys"][0]["public_key"] = "not a key".into()),
            "a key that is not PEM",
        ),
        (
            with(&bundle, |b| b["revision"] = "7".into()),
            "a revision that is not a number",
        ),
        (
            with(&bundle, |b| b["policies"][0]["mode"] = "audit".into()),
            "an unknown policy mode",
        ),
        (
            with(&bundle, |b| {
                b.as_object_mut().expect("bundle").remove("cluster");
            }),
            "no cluster",
        ),
    ] {
        assert_invalid("trust-bundle.schema.json", &bundle_schema, &bad, why);
    }

    // A verifier reports a break-glass admission (admission.break_glass).
    let decision = json!({
        "at": chrono::Utc::now(), "cluster": "c1", "uid": "6a7c1f0e-uid", "namespace": "prod",
        "kind": "Deployment", "name": "web", "operation": "CREATE", "policy": "prod-images",
        "mode": "enforce", "outcome": "break_glass", "break_glass": "INC-1234: rollback",
        "images": [{"image": "nginx:1.27", "reason": "unsigned", "detail": "no signature by release"}],
        "message": "allowed by break-glass",
    });
    let (_, recorded) = expect_ok(
        s.call(
            Method::POST,
            "/v1/admission-decisions",
            verifier,
            Some(json!({"decisions": [decision]})),
        )
        .await,
    );
    assert_eq!(recorded["recorded"], 1, "{recorded:#}");
    expect_ok(
        s.call(
            Method::GET,
            "/v1/admission-decisions?cluster=c1",
            admin,
            None,
        )
        .await,
    );
    expect_ok(
        s.call(Method::GET, "/v1/policies/prod-images/impact", admin, None)
            .await,
    );

    // The verifier reports what runs; a container then turns revoked (workload.untrusted).
    let running = |standing: &str| {
        json!({
            "namespace": "prod", "pod": "web-7d9f-x2x", "pod_uid": "0b6e9a4c-uid",
            "container": "web", "image": "nginx:1.27", "digest": digest.to_string(),
            "standing": standing, "policy": "prod-images", "witnesses": ["release"],
            "evaluated_at": chrono::Utc::now(),
        })
    };
    expect_ok(
        s.call(
            Method::POST,
            "/v1/inventory",
            verifier,
            Some(
                json!({"cluster": "c1", "sync": {"id": "sync-1", "page": 0, "last": true},
                        "containers": [running("trusted")]}),
            ),
        )
        .await,
    );
    let (_, applied) = expect_ok(
        s.call(
            Method::POST,
            "/v1/inventory",
            verifier,
            Some(json!({"cluster": "c1", "containers": [running("revoked")], "removed_pods": []})),
        )
        .await,
    );
    assert_eq!(applied["worsened"], 1, "{applied:#}");
    expect_ok(
        s.call(Method::GET, "/v1/workloads?cluster=c1", admin, None)
            .await,
    );
    expect_ok(
        s.call(Method::GET, "/v1/images?running=true", admin, None)
            .await,
    );

    // Witness changes: rotation, a revoked version, the witness revoked.
    expect_ok(
        s.call(Method::POST, "/v1/witnesses/release/rotate", admin, None)
            .await,
    );
    expect_ok(
        s.call(
            Method::POST,
            &format!("/v1/witnesses/release/versions/{first_version}/revoke"),
            admin,
            None,
        )
        .await,
    );
    expect_ok(
        s.call(Method::DELETE, "/v1/policies/prod-images", admin, None)
            .await,
    );
    expect_ok(
        s.call(Method::DELETE, "/v1/signing-rules/demo", admin, None)
            .await,
    );
    expect_ok(
        s.call(Method::POST, "/v1/witnesses/release/revoke", admin, None)
            .await,
    );

    // Error answers have the documented shape.
    let (st, body) = s.call(Method::GET, "/v1/witnesses/nope", admin, None).await;
    expect(st, &body, StatusCode::NOT_FOUND);
    let (st, body) = s.call(Method::GET, "/v1/jobs", None, None).await;
    expect(st, &body, StatusCode::UNAUTHORIZED);
    let (st, body) = s.call(Method::GET, "/v1/witnesses", signer, None).await;
    expect(st, &body, StatusCode::FORBIDDEN);
    let (st, body) = s
        .call(Method::POST, "/v1/witnesses/release/revoke", admin, None)
        .await;
    expect(st, &body, StatusCode::CONFLICT);
    expect_ok(s.call(Method::GET, "/healthz", None, None).await);
    expect_ok(s.call(Method::GET, "/readyz", None, None).await);

    // Every event the work above emitted, against its type's schema and the any-event one.
    let any_event = schema(ANY_EVENT);
    let expected: BTreeSet<&str> = EventKind::ALL.into_iter().map(EventKind::name).collect();
    let mut seen: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !expected.iter().all(|k| seen.contains_key(k)) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "events seen by then: {:?}; expected {expected:?}",
                    seen.keys()
                )
            })
            .expect("the event stream stays open");
        // Every event leaves sealed by the control plane's key.
        let pinned = signet_core::PinnedKeys::new([s.control_key.public_key().clone()]);
        let event = event.open(&pinned).expect("sealed by the control plane");
        // The bytes every broker backend puts on the wire.
        let wire: Value = serde_json::from_slice(&event.to_json().expect("encode")).expect("JSON");
        let path = schemas::event_path(event.kind);
        assert_valid(&path, &schema(&path), &wire);
        assert_valid(ANY_EVENT, &any_event, &wire);
        assert!(
            wire["signetrevision"].as_i64().is_some_and(|r| r > 0),
            "{wire:#}"
        );
        seen.entry(event.kind.name()).or_default().push(wire);
    }
    let actions: Vec<&Value> = seen["policy.updated"]
        .iter()
        .map(|e| &e["data"]["action"])
        .collect();
    for action in ["created", "enabled", "deleted"] {
        assert!(
            actions.iter().any(|a| *a == action),
            "policy.updated actions: {actions:?}"
        );
    }

    // What the schemas must refuse, made from real events.
    let published = seen["signature.published"][0].clone();
    let witness_created = seen["witness.created"][0].clone();
    let published_path = schemas::event_path(EventKind::SignaturePublished);
    let published_schema = schema(&published_path);
    let refused: [(&str, Value, &str); 6] = [
        (
            "data.digest",
            with(&published, |e| e["data"]["digest"] = "sha256:beef".into()),
            "a digest that is not one",
        ),
        (
            "data.payload",
            with(&published, |e| {
                e["data"].as_object_mut().expect("data").remove("payload");
            }),
            "a record without its payload",
        ),
        (
            "specversion",
            with(&published, |e| e["specversion"] = "0.3".into()),
            "another CloudEvents version",
        ),
        (
            "type",
            with(&published, |e| {
                e["type"] = EventKind::WitnessCreated.cloudevent_type().into()
            }),
            "a signature record as a witness",
        ),
        (
            "subject",
            with(&witness_created, |e| {
                e["subject"] = "Release Witness".into()
            }),
            "a witness name signet refuses",
        ),
        (
            "source",
            with(&published, |e| e["source"] = "/elsewhere".into()),
            "another source",
        ),
    ];
    for (field, bad, why) in &refused {
        assert_invalid(ANY_EVENT, &any_event, bad, why);
        if bad["type"] == published["type"] {
            assert_invalid(&published_path, &published_schema, bad, field);
        }
    }
    // A signature.revoked event's data is the record with its revocation.
    let revoked = &seen["signature.revoked"][0];
    assert_eq!(
        revoked["data"]["id"], published["data"]["id"],
        "{revoked:#}"
    );
    assert_eq!(
        revoked["data"]["revoked"]["reason"],
        "built from a compromised branch"
    );
    drop(registry);
}

fn with(v: &Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut v = v.clone();
    change(&mut v);
    v
}

#[track_caller]
fn expect_ok((status, body): (StatusCode, Value)) -> (StatusCode, Value) {
    assert_eq!(status, StatusCode::OK, "{body:#}");
    (status, body)
}

/// The policy-as-code schema accepts what `signet apply` reads and refuses what it
/// refuses: a misspelt field, another apiVersion, an unknown kind.
#[test]
fn policy_as_code_documents_match_the_schema_as_apply_reads_them() {
    const PATH: &str = "manifest.schema.json";
    let schema = schema(PATH);
    let good = [
        json!({"apiVersion": "signet.dev/v1", "kind": "Witness", "metadata": {"name": "release"},
               "spec": {"kmsKey": "awskms:///alias/release", "description": "CI"}}),
        json!({"apiVersion": "signet.dev/v1", "kind": "SecurityPolicy",
               "metadata": {"name": "prod", "labels": {"team": "platform"}},
               "spec": {"witnesses": ["release", "audit"], "require": 2, "cluster": "c1",
                        "namespace": "*", "mode": "dry-run", "enabled": true,
                        "namespaceSelector": {"matchExpressions": [
                            {"key": "signet.dev/enforce", "operator": "In", "values": ["true"]}]},
                        "exemptions": ["registry.k8s.io/pause:*"]}}),
        json!({"apiVersion": "signet.dev/v1", "kind": "SigningRule", "metadata": {"name": "r"},
               "spec": {"repositories": ["reg.example/team/*"], "witness": "release"}}),
    ];
    for doc in &good {
        assert_valid(PATH, &schema, doc);
        serde_json::from_value::<signet_core::manifest::Document>(doc.clone())
            .unwrap_or_else(|e| panic!("apply refuses {doc}: {e}"));
    }
    let mut misspelt = good[2].clone();
    misspelt["spec"]["tagPatern"] = json!("v*");
    let mut version = good[0].clone();
    version["apiVersion"] = json!("signet.dev/v2");
    let mut kind = good[2].clone();
    kind["kind"] = json!("Rule");
    let mut mode = good[1].clone();
    mode["spec"]["mode"] = json!("audit");
    for (doc, why) in [
        (&misspelt, "a misspelt field"),
        (&version, "another apiVersion"),
        (&kind, "an unknown kind"),
        (&mode, "an unknown mode"),
    ] {
        assert_invalid(PATH, &schema, doc, why);
        let parsed = serde_json::from_value::<signet_core::manifest::Document>(doc.clone());
        assert!(
            parsed.is_err() || parsed.is_ok_and(|d| !d.problems().is_empty()),
            "apply accepts {why}"
        );
    }
}
