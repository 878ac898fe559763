//! Attacks on the gateway's front doors, acted out over the wire against a gateway, a
//! signer and the local development KMS in this process, and real docker-registries:
//! - a webhook sender holding one receiver's secret names another registry (M5);
//! - a replayer sends a captured generic delivery again after the tag moved (M6);
//! - a signer token asks for an image outside its scope;
//! - a signer token holds `?wait=` requests open to load the store (L4).
//!
//! Each test says who the attacker is, what they send, and what must not happen; each
//! failed on the code of 2026-12-05 (see the commit that added it).

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderName;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signet_core::{Digest, Job, JobState};
use signet_gateway::webhooks::auth::{signature_header, standard_signature, Guard};
use signet_gateway::webhooks::receivers::Receiver;
use signet_gateway::webhooks::{ReceiverKind, Receivers};
use signet_gateway::AppState;
use signet_kms::{Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::secret::SecretString;
use signet_runtime::settings::GatewaySettings;
use signet_signer::sign::SignContext;
use signet_signer::{Signer, SignerOptions};
use signet_store::{SignatureFilter, Store};
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use tokio_util::sync::CancellationToken;

const PROD_TOKEN: &str = "prod-registry-webhook-token";
const STAGING_TOKEN: &str = "staging-registry-webhook-token";
/// Standard Webhooks secrets (`whsec_` + base64 of the key).
const GENERIC_KEY: &str = "whsec_c2lnbmV0LWdlbmVyaWMtcmVjZWl2ZXIta2V5";
const LEGACY_KEY: &str = "a-legacy-github-style-sender-key";
const DEADLINE: Duration = Duration::from_secs(90);

/// A gateway with an in-process signer, outbox relay and local KMS, on SQLite and the
/// embedded bus.
struct Signet {
    url: String,
    store: Store,
    state: AppState,
    admin: String,
    signer: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

fn registry_client() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        timeout: Duration::from_secs(5),
        ..RegistryConfig::for_loopback()
    })
    .expect("registry client")
}

impl Signet {
    async fn start(receivers: Receivers, settings: GatewaySettings, signer: bool) -> Self {
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
        if signer {
            let signer = Arc::new(Signer::new(
                SignContext::new(store.clone(), kms.clone(), registry_client(), 1000),
                bus.clone(),
                SignerOptions {
                    concurrency: 2,
                    max_attempts: 2,
                    retry_base: Duration::from_millis(50),
                    retry_max: Duration::from_millis(200),
                    ..SignerOptions::default()
                },
                kick.clone(),
            ));
            tokio::spawn(signer.run(shutdown.clone()));
        }
        let state = AppState {
            store: store.clone(),
            bus,
            kms,
            registry: registry_client(),
            settings: Arc::new(settings),
            outbox_kick: kick,
            webhooks: Arc::new(receivers),
            waiters: Arc::default(),
            live: Arc::default(),
            control_key,
        };
        let tokens = common::tokens(&store).await;
        let url = common::serve(state.clone(), shutdown.clone()).await;
        let s = Self {
            url,
            store,
            state,
            admin: tokens.admin,
            signer: tokens.signer,
            http: reqwest::Client::new(),
            _dir: dir,
            _shutdown: shutdown.drop_guard(),
        };
        let (st, body) = s
            .call(
                Method::POST,
                "/v1/witnesses",
                Some(&s.admin.clone()),
                Some(json!({"name": "prod", "kms_key": "local://prod"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        s
    }

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
        answer(req.send().await.expect("request")).await
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send().await.expect("request")).await
    }

    async fn rule_for_everything(&self) {
        let (st, body) = self
            .call(
                Method::POST,
                "/v1/signing-rules",
                Some(&self.admin),
                // As broad as the review found in use: the rule is no boundary.
                Some(json!({"name": "all", "repositories": ["**"], "witness": "prod"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }

    async fn jobs(&self) -> Vec<Job> {
        self.store.list_jobs(None, 1000).await.expect("jobs")
    }

    async fn signed_digests(&self) -> Vec<String> {
        self.store
            .list_signatures(&SignatureFilter::default())
            .await
            .expect("signatures")
            .into_iter()
            .map(|s| format!("{}@{}", s.repository, s.digest))
            .collect()
    }

    /// Waits (polling, with a deadline) until job `id` is done; it must have succeeded.
    async fn until_signed(&self, id: &str) -> Job {
        let id = uuid::Uuid::parse_str(id).expect("job id");
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let job = self.store.get_job(id).await.expect("read").expect("job");
            match job.state {
                JobState::Succeeded => return job,
                JobState::Failed => panic!("job {id} failed: {:?}", job.error),
                _ if tokio::time::Instant::now() > until => {
                    panic!("job {id} not done within {DEADLINE:?}: {job:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn stats(&self, receiver: &str) -> Value {
        let (st, body) = self
            .call(Method::GET, "/v1/webhooks/stats", Some(&self.admin), None)
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
        body["receivers"][receiver].clone()
    }
}

async fn answer(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn registry() -> TestRegistry {
    TestRegistry::start()
        .await
        .unwrap_or_else(|e| panic!("docker-registry is needed for this test: {e:#}"))
}

/// A distribution push notification (the captured one in tests/fixtures) for
/// `repository:tag@digest`, naming `host` as the registry pushed to (`request.host`)
/// and `url_host` in the target URL.
fn push_event(host: &str, url_host: &str, repository: &str, tag: &str, digest: &Digest) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/distribution/push-manifest-tag.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("json");
    let e = &mut v["events"][0];
    e["id"] = uuid::Uuid::new_v4().to_string().into();
    e["request"]["host"] = host.into();
    e["target"]["repository"] = repository.into();
    e["target"]["tag"] = tag.into();
    e["target"]["digest"] = digest.as_str().into();
    e["target"]["url"] = format!(
        "http://{url_host}/v2/{repository}/manifests/{}",
        digest.as_str()
    )
    .into();
    serde_json::to_vec(&v).expect("json")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn token_guard(token: &str) -> Guard {
    Guard::Token {
        header: HeaderName::from_static("authorization"),
        token: SecretString::from(token),
    }
}

/// M5. The attacker is a webhook sender who holds the staging registry's receiver secret
/// (a staging CI system, a leaked staging config). Signing rules are broad (`**`). They
/// send distribution notifications that name the production registry, as `request.host`
/// and as the target URL, and as the review's demonstration did (URL on staging, host on
/// production). No production image may be signed; each refusal is in the answer the
/// sender sees, logged and counted. Pushes to staging are still signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_webhook_secret_cannot_get_a_production_image_signed() {
    let staging = registry().await;
    let prod = registry().await;
    let image = TestImage::random();
    let digest = image
        .push(&staging.host(), "team/app", "v1")
        .await
        .expect("push to staging");
    image
        .push(&prod.host(), "team/app", "v1")
        .await
        .expect("push to production");
    let scope =
        signet_gateway::scope::Scope::new(&[format!("{}/team/**", staging.host())]).expect("scope");
    let receivers = Receivers::default()
        .with(
            Receiver::new(ReceiverKind::Distribution, token_guard(PROD_TOKEN))
                .registry(&prod.host()),
        )
        .with(
            Receiver::new(ReceiverKind::Distribution, token_guard(STAGING_TOKEN))
                .named("staging")
                .registry(&staging.host())
                .scope(scope),
        );
    let s = Signet::start(receivers, GatewaySettings::default(), true).await;
    s.rule_for_everything().await;
    let staging_auth = bearer(STAGING_TOKEN);
    let send = |body: Vec<u8>, path: &'static str, auth: String| {
        let s = &s;
        async move { s.post(path, &[("authorization", &auth)], &body).await }
    };

    // The legitimate staging push is signed, on staging.
    let (st, legit) = send(
        push_event(&staging.host(), &staging.host(), "team/app", "v1", &digest),
        "/v1/webhooks/distribution/staging",
        staging_auth.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{legit:#}");
    assert_eq!(legit["receiver"], "distribution/staging");
    let job = s
        .until_signed(legit["jobs"][0]["id"].as_str().expect("job id"))
        .await;
    assert!(
        job.request.image.starts_with(&staging.host()),
        "{}",
        job.request.image
    );

    // The attacks: the production host as request.host and URL; the review's mix; an
    // image outside the receiver's repositories.
    for (body, what) in [
        (
            push_event(&prod.host(), &prod.host(), "team/app", "v1", &digest),
            "names production",
        ),
        (
            push_event(&prod.host(), &staging.host(), "team/app", "v1", &digest),
            "production host, staging URL",
        ),
    ] {
        let (st, report) = send(
            body,
            "/v1/webhooks/distribution/staging",
            staging_auth.clone(),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{what}: {report:#}");
        assert_eq!(report["jobs"], json!([]), "{what}: {report:#}");
        let reason = report["ignored"][0]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("refused: the event names registry")
                && reason.contains(&prod.host()),
            "{what}: the sender is told why: {report:#}"
        );
    }
    let (st, report) = send(
        push_event(&staging.host(), &staging.host(), "infra/db", "v1", &digest),
        "/v1/webhooks/distribution/staging",
        staging_auth.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{report:#}");
    assert_eq!(report["jobs"], json!([]), "{report:#}");
    assert!(
        report["ignored"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("infra/db is outside receiver distribution/staging's scope"),
        "{report:#}"
    );

    // The staging secret is not the production receiver's.
    let (st, body) = send(
        push_event(&prod.host(), &prod.host(), "team/app", "v1", &digest),
        "/v1/webhooks/distribution",
        staging_auth.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body:#}");

    // Nothing but the staging image was ever a job or a signature.
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(
        s.signed_digests().await,
        [format!("{}/team/app@{digest}", staging.host())]
    );
    let counts = s.stats("distribution/staging").await;
    assert_eq!(counts["foreign"], 3, "{counts:#}");
    assert_eq!(counts["jobs"], 1, "{counts:#}");
    assert_eq!(s.stats("distribution").await["unauthenticated"], 1);
}

/// M6. The attacker captured a generic-webhook delivery on its way (a proxy log, a
/// compromised sender's outbox) asking to sign `team/app:latest`. Later the tag points
/// to an image of the attacker's choosing, and they send the captured delivery again:
/// verbatim, under a fresh delivery id, and a delivery captured long ago. Nothing new
/// may be enqueued or signed. A legacy sender that can only sign the body
/// (`X-Hub-Signature-256`, allowed on its own receiver) must pin a digest, and its
/// replays find the job they already made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_generic_delivery_replayed_after_the_tag_moved_signs_nothing_new() {
    let reg = registry().await;
    let host = reg.host();
    let first = TestImage::random()
        .push(&host, "team/app", "latest")
        .await
        .expect("push");
    let receivers = Receivers::default()
        .with(Receiver::new(
            ReceiverKind::Generic,
            Guard::Hmac {
                key: SecretString::from(GENERIC_KEY),
                // The settings default for generic receivers.
                allow_github: false,
            },
        ))
        .with(
            Receiver::new(
                ReceiverKind::Generic,
                Guard::Hmac {
                    key: SecretString::from(LEGACY_KEY),
                    allow_github: true,
                },
            )
            .named("legacy")
            .registry(&host),
        );
    let s = Signet::start(receivers, GatewaySettings::default(), true).await;
    let body =
        serde_json::to_vec(&json!({"image": format!("{host}/team/app:latest"), "witness": "prod"}))
            .expect("json");

    // The genuine delivery, signed over id, timestamp and body.
    let ts = now().to_string();
    let sig = standard_signature(GENERIC_KEY, "msg_1", now(), &body);
    let captured = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig.as_str()),
    ];
    let (st, report) = s.post("/v1/webhooks/generic", &captured, &body).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{report:#}");
    let job = s
        .until_signed(report["jobs"][0]["id"].as_str().expect("job id"))
        .await;
    assert_eq!(job.digest.as_ref(), Some(&first));

    // The tag moves on.
    let moved = TestImage::random()
        .push(&host, "team/app", "latest")
        .await
        .expect("push");
    assert_ne!(moved, first);

    // Replayed verbatim: a seen id.
    let (st, b) = s.post("/v1/webhooks/generic", &captured, &body).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b:#}");
    // Under a fresh id: the id is under the MAC.
    for id in ["msg_2", "replay-1"] {
        let fresh = [captured[0], captured[1], captured[2]].map(|(k, v)| {
            if k == "webhook-id" {
                (k, id)
            } else {
                (k, v)
            }
        });
        let (st, b) = s.post("/v1/webhooks/generic", &fresh, &body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{b:#}");
        assert!(
            b["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("does not match"),
            "{b:#}"
        );
    }
    // With a fresh X-Delivery-Id, the way the old scheme allowed (had the sender used
    // it): this receiver takes no body-only MAC.
    let github = signature_header(GENERIC_KEY.as_bytes(), &body);
    let (st, b) = s
        .post(
            "/v1/webhooks/generic",
            &[
                ("x-hub-signature-256", &github),
                ("x-delivery-id", "fresh-1"),
            ],
            &body,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b:#}");
    // A delivery captured 10 minutes ago, whose id the gateway may have forgotten.
    let old = now() - 600;
    let old_ts = old.to_string();
    let old_sig = standard_signature(GENERIC_KEY, "msg_0", old, &body);
    let (st, b) = s
        .post(
            "/v1/webhooks/generic",
            &[
                ("webhook-id", "msg_0"),
                ("webhook-timestamp", old_ts.as_str()),
                ("webhook-signature", old_sig.as_str()),
            ],
            &body,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b:#}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("600 s away"),
        "{b:#}"
    );

    // The legacy receiver: a body-only MAC must pin a digest...
    let legacy_sig = signature_header(LEGACY_KEY.as_bytes(), &body);
    let (st, b) = s
        .post(
            "/v1/webhooks/generic/legacy",
            &[
                ("x-hub-signature-256", &legacy_sig),
                ("x-delivery-id", "l-1"),
            ],
            &body,
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b:#}");
    // ...and its replay under a fresh delivery id finds the job it made.
    let pinned = serde_json::to_vec(
        &json!({"image": format!("{host}/team/app:latest@{first}"), "witness": "prod"}),
    )
    .expect("json");
    let pinned_sig = signature_header(LEGACY_KEY.as_bytes(), &pinned);
    let mut legacy_jobs = Vec::new();
    for delivery in ["l-2", "l-3-replayed"] {
        let (st, b) = s
            .post(
                "/v1/webhooks/generic/legacy",
                &[
                    ("x-hub-signature-256", &pinned_sig),
                    ("x-delivery-id", delivery),
                ],
                &pinned,
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b:#}");
        legacy_jobs.push(b["jobs"][0]["id"].clone());
    }
    assert_eq!(legacy_jobs[0], legacy_jobs[1], "a replay makes no new job");

    // Two jobs (the genuine one, the legacy one), both for the first image; nothing
    // ever named the image the tag moved to.
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    let signed = s.signed_digests().await;
    assert!(
        signed.iter().all(|d| !d.contains(moved.as_str())),
        "the moved tag's image was signed: {signed:?}"
    );
    let counts = s.stats("generic").await;
    assert_eq!(counts["replays"], 1, "{counts:#}");
    assert_eq!(counts["unauthenticated"], 4, "{counts:#}");
}

/// The attacker holds a pipeline's signer token that an admin scoped to one team's
/// repositories (`signet token create --scope 'HOST/team/**'`): a compromised build
/// job. They ask for images of other teams (and lookalike paths) to be signed, and read
/// other teams' jobs. Nothing outside the scope is enqueued or shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_signer_token_cannot_sign_or_read_outside_its_repositories() {
    let reg = registry().await;
    let host = reg.host();
    let image = TestImage::random();
    for repo in ["team/app", "other/app", "teamx/app", "team/app/web"] {
        image.push(&host, repo, "v1").await.expect("push");
    }
    let s = Signet::start(Receivers::default(), GatewaySettings::default(), true).await;
    let (st, created) = s
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&s.admin),
            Some(
                json!({"name": "team-ci", "role": "signer", "scope": [format!("{host}/team/**")]}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created:#}");
    assert_eq!(created["scope"], json!([format!("{host}/team/**")]));
    let team = created["token"].as_str().expect("token").to_owned();

    for outside in ["other/app", "teamx/app"] {
        let (st, body) = s
            .call(
                Method::POST,
                "/v1/sign?wait=30",
                Some(&team),
                Some(json!({"image": format!("{host}/{outside}:v1"), "witness": "prod"})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{outside}: {body:#}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!(
                    "{host}/{outside} is outside token \"team-ci\"'s scope"
                )),
            "{body:#}"
        );
    }
    assert!(
        s.jobs().await.is_empty(),
        "nothing outside the scope is enqueued"
    );

    // Inside the scope, at any depth: signed.
    for inside in ["team/app", "team/app/web"] {
        let (st, body) = s
            .call(
                Method::POST,
                "/v1/sign?wait=60",
                Some(&team),
                Some(json!({"image": format!("{host}/{inside}:v1"), "witness": "prod"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{inside}: {body:#}");
    }

    // Another pipeline's job (an unscoped token) is not the scoped token's to read.
    let (st, other_job) = s
        .call(
            Method::POST,
            "/v1/sign",
            Some(&s.signer),
            Some(json!({"image": format!("{host}/other/app:v1"), "witness": "prod"})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{other_job:#}");
    let path = format!("/v1/jobs/{}", other_job["id"].as_str().expect("id"));
    let (st, body) = s.call(Method::GET, &path, Some(&team), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body:#}");
    let (st, body) = s.call(Method::GET, &path, Some(&s.signer), None).await;
    assert_eq!(st, StatusCode::OK, "{body:#}");

    // Scopes are checked when written, and only signer tokens take one.
    for (body, want) in [
        (
            json!({"name": "bad", "role": "signer", "scope": ["nohost"]}),
            "must match registry/repository",
        ),
        (
            json!({"name": "bad", "role": "admin", "scope": [format!("{host}/**")]}),
            "only signer tokens take a scope",
        ),
    ] {
        let (st, b) = s
            .call(Method::POST, "/v1/tokens", Some(&s.admin), Some(body))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{b:#}");
        assert!(
            b["detail"].as_str().unwrap_or_default().contains(want),
            "{b:#}"
        );
    }
    let (_, listed) = s
        .call(Method::GET, "/v1/tokens", Some(&s.admin), None)
        .await;
    let team_entry = listed["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "team-ci")
        .cloned()
        .expect("listed");
    assert_eq!(team_entry["scope"], json!([format!("{host}/team/**")]));
}

/// The id of an API token (`sgt_<id>_<secret>`).
fn token_id(token: &str) -> uuid::Uuid {
    let id = token
        .strip_prefix("sgt_")
        .and_then(|rest| rest.split('_').next())
        .expect("a signet token");
    uuid::Uuid::parse_str(id).expect("token id")
}

/// L4. The attacker holds a signer token and keeps `POST /v1/sign?wait=` requests open
/// on jobs that do not finish (no signer runs: a backlog, a KMS outage). A wait must
/// cost the store a bounded number of reads, not one every 20 ms, and the token may
/// hold only `gateway.max_waiters_per_token` of them open: the next is refused with
/// 429 and enqueues nothing. Other tokens are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_token_holding_waits_open_costs_bounded_store_reads_and_is_capped() {
    let settings = GatewaySettings {
        max_waiters_per_token: 2,
        wait_poll_max: Duration::from_millis(500),
        ..GatewaySettings::default()
    };
    let s = Signet::start(Receivers::default(), settings, false).await;
    let sign = |token: String, wait: u64, n: u32| {
        let s = &s;
        async move {
            s.call(
                Method::POST,
                &format!("/v1/sign?wait={wait}"),
                Some(&token),
                Some(json!({"image": format!("registry.example.com/team/app:v{n}"), "witness": "prod"})),
            )
            .await
        }
    };

    // One wait of 3 s on a job nobody signs. Polling every 20 ms read the job 150
    // times; pauses that double up to 500 ms read it about 10 times.
    let before = s.store.job_reads();
    let (st, body) = sign(s.signer.clone(), 3, 1).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body:#}");
    assert_eq!(body["state"], "queued");
    let reads = s.store.job_reads() - before;
    eprintln!("one 3 s wait read the job {reads} times");
    assert!(reads <= 15, "one 3 s wait read the job {reads} times");

    // Two waits held open; the third is refused and enqueues nothing.
    let held: Vec<_> = (2..4)
        .map(|n| {
            let url = format!("{}/v1/sign?wait=5", s.url);
            let token = s.signer.clone();
            let http = s.http.clone();
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(token)
                    .json(&json!({"image": format!("registry.example.com/team/app:v{n}"), "witness": "prod"}))
                    .send()
                    .await
                    .expect("request")
                    .status()
            })
        })
        .collect();
    let until = tokio::time::Instant::now() + DEADLINE;
    while s.jobs().await.len() < 3 {
        assert!(
            tokio::time::Instant::now() < until,
            "the held waits never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.state.waiters.waiting(token_id(&s.signer)), 2);
    let (st, body) = sign(s.signer.clone(), 5, 4).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body:#}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("gateway.max_waiters_per_token"),
        "{body:#}"
    );
    assert_eq!(s.jobs().await.len(), 3, "a refused wait enqueues nothing");
    // Without ?wait, and for another token, nothing is capped.
    let (st, body) = sign(s.signer.clone(), 0, 5).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body:#}");
    let (st, body) = sign(s.admin.clone(), 1, 6).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body:#}");
    for h in held {
        assert_eq!(h.await.expect("held wait"), StatusCode::ACCEPTED);
    }
    // Their places are given back.
    assert_eq!(s.state.waiters.waiting(token_id(&s.signer)), 0);
    let (st, body) = sign(s.signer.clone(), 1, 7).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body:#}");
}
