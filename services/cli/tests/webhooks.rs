//! Event-driven signing end to end: a real docker-registry whose notifications point at a
//! real `signet up`, images pushed with skopeo, signing rules created with the CLI, and
//! every signature checked by verifiers signet did not write (OpenSSL over each layer,
//! and the `sigstore` crate's cosign verification on a sample).
//!
//! Each scenario proves "signed exactly once": one `.sig` layer per image, one signature
//! record per image, and every job record succeeded, with no job for signet's own
//! `.sig` pushes; through a SIGKILL of signet mid-batch (on the embedded bus, RabbitMQ and
//! NATS), a restart of the broker, a registry answering 500 and a throttling KMS.
//!
//! Batches are small for CI (`SIGNET_E2E_IMAGES`, default 24); the 200-image run of the
//! issue's "done means" is the same tests with `SIGNET_E2E_IMAGES=200`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{bin, blob, cosign_verifies, ok, sig_manifest, sigstore_verifies};
use serde_json::Value;
use signet_core::Digest;
use signet_testkit::brokers::{
    delete_namespace, PrivateNats, PrivateRabbit, SHARED_AMQP, SHARED_NATS,
};
use signet_testkit::image::{skopeo_copy, TestImage};
use signet_testkit::proxy::{Fault, FaultProxy};
use signet_testkit::registry::{NotificationEndpoint, TestRegistry};
use signet_testkit::signet::SignetUp;
use tokio::task::JoinSet;

/// Images per batch; `SIGNET_E2E_IMAGES=200` for the load run.
fn batch() -> usize {
    std::env::var("SIGNET_E2E_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// How long a batch may take to be signed: generous, since two cores run many tests.
fn deadline(images: usize) -> Duration {
    Duration::from_secs(120 + 3 * images as u64)
}

/// 16 hex characters no other test of this run shares.
fn unique() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = format!(
        "{:?}-{}-{n}",
        std::time::SystemTime::now(),
        std::process::id()
    );
    Digest::of(seed.as_bytes()).hex()[..16].to_owned()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("addr").port()
}

/// A registry notifying a signet that is (re)started on a fixed port.
struct Env {
    registry: TestRegistry,
    up: SignetUp,
    admin: String,
    http: reqwest::Client,
    /// The witness's public key (PEM file).
    key: PathBuf,
    tmp: tempfile::TempDir,
    bus: String,
    namespace: String,
    proxy: Option<FaultProxy>,
}

struct Setup<'a> {
    bus: &'a str,
    /// Extra `SIGNET_*` (and provider) variables.
    env: Vec<(String, String)>,
    /// signet reaches the registry only through a fault-injecting proxy, and image
    /// references name the proxy (the receiver's `registry` setting).
    behind_proxy: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            bus: "embedded",
            env: Vec::new(),
            behind_proxy: false,
        }
    }
}

impl Env {
    async fn start(setup: Setup<'_>) -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let token = format!("hook-{}", unique());
        let token_file = tmp.path().join("webhook.token");
        std::fs::write(&token_file, format!("{token}\n")).expect("write token");
        let registry = TestRegistry::builder()
            .notify(
                NotificationEndpoint::new(format!(
                    "http://127.0.0.1:{port}/v1/webhooks/distribution"
                ))
                .header("Authorization", format!("Bearer {token}"))
                .timeout(Duration::from_secs(10))
                .threshold(3)
                .backoff(Duration::from_millis(500)),
            )
            .start()
            .await
            .expect("docker-registry");
        let namespace = format!("e2e{}", unique());
        let mut env: Vec<(String, String)> = vec![
            ("SIGNET_GATEWAY__LISTEN".into(), format!("127.0.0.1:{port}")),
            ("SIGNET_BUS".into(), setup.bus.to_owned()),
            ("SIGNET_BUS_OPTIONS__NAMESPACE".into(), namespace.clone()),
            ("SIGNET_BUS_OPTIONS__ACK_WAIT".into(), "2s".into()),
            (
                "SIGNET_WEBHOOKS__DISTRIBUTION__TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            ("SIGNET_SIGNER__CONCURRENCY".into(), "8".into()),
            ("SIGNET_SIGNER__CLAIM_LEASE".into(), "2s".into()),
            ("SIGNET_SIGNER__RETRY_BASE".into(), "100ms".into()),
            ("SIGNET_SIGNER__RETRY_MAX".into(), "2s".into()),
            ("SIGNET_SIGNER__MAX_ATTEMPTS".into(), "30".into()),
            ("SIGNET_REGISTRY__TIMEOUT".into(), "5s".into()),
        ];
        // The receiver speaks for one registry: the proxy's name when signet reaches the
        // registry through it (the registry still names itself in events), else its own.
        let proxy = if setup.behind_proxy {
            let proxy = FaultProxy::start(&registry.url()).await.expect("proxy");
            env.push((
                "SIGNET_WEBHOOKS__DISTRIBUTION__REGISTRY".into(),
                proxy.host(),
            ));
            env.push((
                "SIGNET_WEBHOOKS__DISTRIBUTION__EVENT_HOSTS".into(),
                format!("[\"{}\"]", registry.host()),
            ));
            Some(proxy)
        } else {
            env.push((
                "SIGNET_WEBHOOKS__DISTRIBUTION__REGISTRY".into(),
                registry.host(),
            ));
            None
        };
        env.extend(setup.env);
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let up = SignetUp::start(bin(), &pairs).await.expect("signet up");
        let admin = up.admin_token().expect("admin token");
        Env {
            registry,
            up,
            admin,
            http: reqwest::Client::new(),
            key: tmp.path().join("witness.pub"),
            tmp,
            bus: setup.bus.to_owned(),
            namespace,
            proxy,
        }
    }

    /// The registry host image references (and so signatures) name.
    fn signing_host(&self) -> String {
        match &self.proxy {
            Some(p) => p.host(),
            None => self.registry.host(),
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        ok(&self.up.cli(args).expect("run signet"), &args.join(" "))
    }

    /// A witness, its public key exported for the verifiers, and a rule that signs every
    /// push to the test registry with it.
    fn witness_and_rule(&self, name: &str, kms_key: &str) {
        self.cli(&["witness", "create", "--name", name, "--kms-key", kms_key]);
        let pem = self.cli(&["witness", "export-key", name]);
        std::fs::write(&self.key, pem).expect("write key");
        let glob = format!("{}/e2e/**", self.signing_host());
        self.cli(&[
            "rule",
            "create",
            "all",
            "--repository",
            &glob,
            "--witness",
            name,
        ]);
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.up.server()))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    async fn jobs(&self) -> Vec<Value> {
        self.get("/v1/jobs?limit=1000").await["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn signatures(&self) -> Vec<Value> {
        self.get("/v1/signatures?limit=1000").await["signatures"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn succeeded(&self) -> usize {
        self.jobs()
            .await
            .iter()
            .filter(|j| j["state"] == "succeeded")
            .count()
    }

    /// Polls until at least `n` jobs succeeded; a restart in between is fine.
    async fn until_succeeded(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(Ok(jobs)) =
                tokio::time::timeout(Duration::from_secs(10), self.try_jobs()).await
            {
                let done = jobs.iter().filter(|j| j["state"] == "succeeded").count();
                if done >= n {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{done} of {n} jobs succeeded within {within:?}; jobs: {jobs:#?}\nsignet log:\n{}",
                    tail(&self.up.log())
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "signet did not answer"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_jobs(&self) -> Result<Vec<Value>, reqwest::Error> {
        let v: Value = self
            .http
            .get(format!("{}/v1/jobs?limit=1000", self.up.server()))
            .bearer_auth(&self.admin)
            .send()
            .await?
            .json()
            .await?;
        Ok(v["jobs"].as_array().cloned().unwrap_or_default())
    }

    /// Pushes `n` fresh images with skopeo, four at a time, as `e2e/<prefix>-<i>:v1`.
    async fn push(&self, prefix: &str, n: usize) -> Vec<(String, Digest)> {
        self.push_in_background(prefix, n)
            .await
            .expect("pushing task")
    }

    /// Starts pushing `n` images with skopeo (four at a time); the task yields them.
    fn push_in_background(
        &self,
        prefix: &str,
        n: usize,
    ) -> tokio::task::JoinHandle<Vec<(String, Digest)>> {
        let host = self.registry.host();
        let layouts = self.tmp.path().to_owned();
        tokio::spawn(push_all(host, layouts, prefix.to_owned(), n))
    }

    /// Waits until the registry has delivered every notification sent so far: it sends
    /// them in order, so once a push that no rule matches has been counted, so has
    /// every event before it (signet's own `.sig` pushes included).
    async fn until_notifications_delivered(&self) {
        let before = self.get("/v1/webhooks/stats").await["receivers"]["distribution"]["unmatched"]
            .as_u64()
            .unwrap_or(0);
        TestImage::random()
            .push(&self.registry.host(), "unmatched/marker", "v1")
            .await
            .expect("push marker");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let now = self.get("/v1/webhooks/stats").await["receivers"]["distribution"]
                ["unmatched"]
                .as_u64()
                .unwrap_or(0);
            if now > before {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the registry's notifications did not arrive"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Exactly once: every image has one signature layer, which OpenSSL verifies over a
    /// payload naming that image; one signature record each; every job succeeded, and
    /// there are no others (no job for a `.sig` push).
    async fn assert_signed_exactly_once(&self, images: &[(String, Digest)], extra_jobs: usize) {
        self.until_notifications_delivered().await;
        let host = self.signing_host();
        let mut verify = JoinSet::new();
        for (repo, digest) in images {
            if verify.len() >= 8 {
                if let Some(r) = verify.join_next().await {
                    r.expect("verification task");
                }
            }
            let (repo, digest) = (repo.clone(), digest.clone());
            let registry_url = self.registry.url();
            let key = self.key.clone();
            let host = host.clone();
            verify
                .spawn(async move { verify_one(&registry_url, &host, &repo, &digest, &key).await });
        }
        while let Some(r) = verify.join_next().await {
            r.expect("verification task");
        }
        let signatures = self.signatures().await;
        let mut per_image: BTreeMap<(String, String), usize> = BTreeMap::new();
        for s in &signatures {
            *per_image
                .entry((
                    s["repository"].as_str().unwrap_or_default().to_owned(),
                    s["digest"].as_str().unwrap_or_default().to_owned(),
                ))
                .or_default() += 1;
        }
        for (repo, digest) in images {
            let key = (format!("{host}/{repo}"), digest.to_string());
            assert_eq!(
                per_image.get(&key),
                Some(&1),
                "signature records of {repo}@{digest}"
            );
        }
        assert_eq!(signatures.len(), images.len(), "no other signature records");
        let jobs = self.jobs().await;
        let not_done: Vec<_> = jobs.iter().filter(|j| j["state"] != "succeeded").collect();
        assert!(not_done.is_empty(), "every job succeeded: {not_done:#?}");
        assert_eq!(
            jobs.len(),
            images.len() + extra_jobs,
            "one job per pushed image and none for signet's own .sig pushes: {jobs:#?}"
        );
        for j in &jobs {
            assert_eq!(j["source"], "webhook:distribution", "{j}");
        }
    }

    async fn cleanup(self) {
        let Env {
            up, bus, namespace, ..
        } = self;
        drop(up);
        delete_namespace(&bus, &namespace).await;
    }
}

/// Pushes `n` random images as `e2e/PREFIX-I:v1` with skopeo, four at a time.
async fn push_all(
    host: String,
    layouts: PathBuf,
    prefix: String,
    n: usize,
) -> Vec<(String, Digest)> {
    let mut pushes = JoinSet::new();
    let mut pushed = Vec::new();
    for i in 0..n {
        if pushes.len() >= 4 {
            pushed.push(join(pushes.join_next().await));
        }
        let repo = format!("e2e/{prefix}-{i}");
        let layout = layouts.join(format!("layout-{prefix}-{i}"));
        let host = host.clone();
        pushes.spawn(async move {
            let image = TestImage::random();
            image.write_oci_layout(&layout, "v1").expect("OCI layout");
            let digest = skopeo_copy(&layout, &host, &repo, "v1")
                .await
                .expect("skopeo copy");
            assert_eq!(digest, image.digest());
            (repo, digest)
        });
    }
    while let Some(r) = pushes.join_next().await {
        pushed.push(join(Some(r)));
    }
    pushed
}

fn join(r: Option<Result<(String, Digest), tokio::task::JoinError>>) -> (String, Digest) {
    r.expect("a push").expect("push task")
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// One layer; OpenSSL verifies its signature over the payload; the payload names the
/// image's repository and digest.
async fn verify_one(registry_url: &str, host: &str, repo: &str, digest: &Digest, key: &Path) {
    let url = format!(
        "{registry_url}/v2/{repo}/manifests/{}",
        digest.signature_tag()
    );
    let manifest: Value = reqwest::Client::new()
        .get(&url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("get .sig")
        .json()
        .await
        .expect(".sig manifest json");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(
        layers.len(),
        1,
        "{repo}@{digest} has one signature layer: {manifest}"
    );
    let layer = &layers[0];
    let payload_url = format!(
        "{registry_url}/v2/{repo}/blobs/{}",
        layer["digest"].as_str().expect("layer digest")
    );
    let payload = reqwest::get(payload_url)
        .await
        .expect("payload")
        .bytes()
        .await
        .expect("payload bytes")
        .to_vec();
    let claims: Value = serde_json::from_slice(&payload).expect("payload json");
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        format!("{host}/{repo}")
    );
    let sig = STANDARD
        .decode(
            layer["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .expect("signature annotation"),
        )
        .expect("base64");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("payload"), &payload).expect("write");
    std::fs::write(dir.path().join("sig"), &sig).expect("write");
    let out = tokio::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(key)
        .arg("-signature")
        .arg(dir.path().join("sig"))
        .arg(dir.path().join("payload"))
        .output()
        .await
        .expect("run openssl");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "openssl rejects the signature of {repo}@{digest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_pushes_are_signed_once_each_and_signatures_are_not_signed() {
    let env = Env::start(Setup::default()).await;
    env.witness_and_rule("prod", "local://prod");
    let n = batch().min(24);
    let images = env.push("app", n).await;
    env.until_succeeded(n, deadline(n)).await;

    // The same digest under a new tag: a job, but no new layer or record.
    let (repo, digest) = images[0].clone();
    let host = env.registry.host();
    let out = tokio::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{host}/{repo}:v1"))
        .arg(format!("docker://{host}/{repo}:v2"))
        .output()
        .await
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.until_succeeded(n + 1, deadline(1)).await;
    env.assert_signed_exactly_once(&images, 1).await;
    let retag = env
        .jobs()
        .await
        .into_iter()
        .find(|j| {
            j["request"]["image"]
                .as_str()
                .is_some_and(|i| i.contains(":v2@"))
        })
        .expect("the retag's job");
    assert_eq!(retag["digest"], digest.as_str());

    // A cosign verifier accepts them too (a sample: it is slow).
    let pem = std::fs::read(&env.key).expect("key");
    for (repo, _) in images.iter().take(3) {
        assert_eq!(
            sigstore_verifies(&format!("{host}/{repo}:v1"), &pem).await,
            Ok(1),
            "sigstore-rs verifies {repo}"
        );
    }
    // Signet's own .sig pushes were reported and ignored, not signed.
    let stats = env.get("/v1/webhooks/stats").await["receivers"]["distribution"].clone();
    assert!(
        stats["ignored"].as_u64().unwrap_or(0) >= n as u64,
        "{stats}"
    );
    assert_eq!(stats["jobs"].as_u64(), Some(n as u64 + 1), "{stats}");

    // An index: the index and each platform manifest are signed.
    let pushed = TestImage::push_index(&host, "e2e/multi", "v1")
        .await
        .expect("push index");
    env.until_succeeded(n + 4, deadline(3)).await;
    for d in std::iter::once(&pushed.index).chain(pushed.platforms.iter().map(|p| &p.digest)) {
        let manifest = sig_manifest(&env.registry, "e2e/multi", d).await;
        assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1), "{d}");
        let payload = blob(
            &env.registry,
            "e2e/multi",
            manifest["layers"][0]["digest"].as_str().expect("d"),
        )
        .await;
        assert!(String::from_utf8_lossy(&payload).contains(d.as_str()));
        // The real cosign verifies the index and each platform by digest.
        let pem = std::fs::read(&env.key).expect("key");
        assert_eq!(
            cosign_verifies(&format!("{host}/e2e/multi@{d}"), &pem),
            Ok(1),
            "cosign verify of {d}"
        );
    }
    env.cleanup().await;
}

/// SIGKILL signet while it works through a batch, start it again, and check that every
/// image ends up signed exactly once.
async fn killed_mid_batch(bus: &str) {
    let env = Env::start(Setup {
        bus,
        ..Setup::default()
    })
    .await;
    let mut env = env;
    env.witness_and_rule("prod", "local://prod");
    let n = batch();
    // Killed while images are still being pushed: some signed, some in flight, some
    // not even notified yet (the registry retries those until signet is back).
    let pushing = env.push_in_background("kill", n);
    env.until_succeeded(n / 3, deadline(n)).await;
    let at_kill = env.succeeded().await;
    env.up.kill().expect("SIGKILL signet");
    env.up.restart().await.expect("restart signet");
    let images = pushing.await.expect("pushing task");
    env.until_succeeded(n, deadline(n)).await;
    eprintln!("{bus}: {n} images, {at_kill} signed when signet was killed");
    env.assert_signed_exactly_once(&images, 0).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_on_the_embedded_bus() {
    killed_mid_batch("embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_on_rabbitmq() {
    killed_mid_batch(SHARED_AMQP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_on_nats() {
    killed_mid_batch(SHARED_NATS).await;
}

/// A broker of the test's own, restarted mid-batch.
enum Broker {
    Nats(PrivateNats),
    Rabbit(PrivateRabbit),
}

impl Broker {
    fn url(&self) -> String {
        match self {
            Broker::Nats(b) => b.url(),
            Broker::Rabbit(b) => b.url(),
        }
    }

    async fn stop(&mut self) {
        match self {
            Broker::Nats(b) => b.stop().await.expect("stop nats-server"),
            Broker::Rabbit(b) => b.stop().await.expect("stop RabbitMQ"),
        }
    }

    async fn start_again(&mut self) {
        match self {
            Broker::Nats(b) => b.start_again().await.expect("start nats-server"),
            Broker::Rabbit(b) => b.start_again().await.expect("start RabbitMQ"),
        }
    }
}

/// Restart the broker while a batch is worked through and more pushes arrive: webhooks
/// answered 503 during the outage are sent again by the registry, and nothing is lost.
async fn broker_restarted_mid_batch(mut broker: Broker) {
    let url = broker.url();
    let env = Env::start(Setup {
        bus: &url,
        ..Setup::default()
    })
    .await;
    env.witness_and_rule("prod", "local://prod");
    let n = batch().min(24);
    let mut images = env.push("before", n).await;
    env.until_succeeded(n / 3, deadline(n)).await;
    broker.stop().await;
    // Pushes while the broker is down: their notifications are refused (503) and retried.
    images.extend(env.push("during", 4).await);
    broker.start_again().await;
    images.extend(env.push("after", 4).await);
    env.until_succeeded(images.len(), deadline(images.len()))
        .await;
    env.assert_signed_exactly_once(&images, 0).await;
    let stats = env.get("/v1/webhooks/stats").await["receivers"]["distribution"].clone();
    eprintln!(
        "broker restart: {} images; webhook stats {stats}",
        images.len()
    );
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_batch_loses_nothing() {
    let nats = PrivateNats::start().await.expect("a private nats-server");
    broker_restarted_mid_batch(Broker::Nats(nats)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_mid_batch_loses_nothing() {
    let rabbit = PrivateRabbit::start()
        .await
        .expect("a private RabbitMQ node");
    broker_restarted_mid_batch(Broker::Rabbit(rabbit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_answering_500_for_a_while_delays_but_loses_nothing() {
    let env = Env::start(Setup {
        behind_proxy: true,
        ..Setup::default()
    })
    .await;
    env.witness_and_rule("prod", "local://prod");
    let proxy = env.proxy.as_ref().expect("proxy");
    proxy.inject(Fault::status(500).body("registry is down for maintenance"));
    let images = env.push("flaky", 6).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    // Retries are happening against the failing registry.
    loop {
        let retried = env
            .jobs()
            .await
            .iter()
            .filter(|j| j["attempts"].as_u64().unwrap_or(0) >= 2)
            .count();
        if retried >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "no retries happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        env.succeeded().await,
        0,
        "nothing is signed while the registry fails"
    );
    assert!(proxy.faulted(|_| true) > 0);
    proxy.heal();
    env.until_succeeded(images.len(), deadline(images.len()))
        .await;
    env.assert_signed_exactly_once(&images, 0).await;
    let jobs = env.jobs().await;
    assert!(
        jobs.iter()
            .any(|j| j["attempts"].as_u64().unwrap_or(0) >= 2),
        "jobs were retried: {jobs:#?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_kms_slows_signing_down_but_every_image_is_signed_once() {
    let moto = signet_testkit::emulators::moto();
    let key_id = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let proxy = FaultProxy::start(&moto.url)
        .await
        .expect("proxy in front of moto");
    let is_sign =
        |r: &signet_testkit::proxy::Seen| r.header("x-amz-target") == Some("TrentService.Sign");
    let throttled = 6;
    proxy.inject(
        Fault::status(400)
            .when(is_sign)
            .times(throttled)
            .header("content-type", "application/x-amz-json-1.1")
            .body(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
    );
    let env = Env::start(Setup {
        env: vec![
            ("AWS_ENDPOINT_URL_KMS".into(), format!("{}/", proxy.url())),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ],
        ..Setup::default()
    })
    .await;
    env.witness_and_rule("aws", &format!("awskms:///{key_id}"));
    let images = env.push("kms", 4).await;
    env.until_succeeded(images.len(), deadline(images.len()))
        .await;
    env.assert_signed_exactly_once(&images, 0).await;
    assert_eq!(proxy.faulted(is_sign), throttled, "the KMS throttled");
    assert_eq!(
        proxy.seen(is_sign),
        throttled + images.len(),
        "one successful KMS call per image, no more"
    );
    let attempts: u64 = env
        .jobs()
        .await
        .iter()
        .map(|j| j["attempts"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        attempts >= (images.len() + throttled) as u64,
        "each throttled call was an attempt that backed off: {attempts}"
    );
    assert!(
        env.up.log().contains("kms_throttled"),
        "the reason is logged"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_within_the_attempt_limit_and_listed() {
    let env = Env::start(Setup {
        bus: SHARED_NATS,
        env: vec![("SIGNET_SIGNER__MAX_ATTEMPTS".into(), "3".into())],
        ..Setup::default()
    })
    .await;
    env.witness_and_rule("prod", "local://prod");
    // An external producer on the same bus and namespace.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = signet_store::Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("producer.db").display()
    ))
    .await
    .expect("store");
    let producer = signet_bus::connect_with(
        SHARED_NATS,
        &store,
        signet_bus::BusOptions {
            namespace: Some(env.namespace.clone()),
            ..signet_bus::BusOptions::default()
        },
    )
    .await
    .expect("NATS with JetStream at 127.0.0.1:4222");
    let gone = Digest::of(b"an image nobody pushed");
    let host = env.registry.host();
    for body in [
        "{this is not a sign request".to_owned(),
        format!(r#"{{"image":"{host}/e2e/gone@{gone}","witness":"prod"}}"#),
        r#"{"image":"127.0.0.1:1/e2e/unreachable:v1","witness":"prod"}"#.to_owned(),
        // Not pushed yet (and outside every signing rule): replayed below once it is.
        format!(r#"{{"image":"{host}/late/app:v1","witness":"prod"}}"#),
    ] {
        producer
            .jobs
            .publish(signet_bus::Message {
                body: body.into_bytes(),
                ..Default::default()
            })
            .await
            .expect("publish");
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    let failed = loop {
        let out = env.cli(&["--output", "json", "jobs", "list", "--failed"]);
        let v: Value = serde_json::from_str(&out).expect("json");
        let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.len() == 4 {
            break jobs;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "failed jobs: {jobs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let error_of = |needle: &str| {
        failed
            .iter()
            .find(|j| {
                j["request"]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(needle)
            })
            .unwrap_or_else(|| panic!("no failed job for {needle}: {failed:#?}"))
            .clone()
    };
    let poison = error_of("this is not a sign request");
    assert!(poison["error"]
        .as_str()
        .unwrap_or_default()
        .contains("not a sign request"));
    let missing = error_of("e2e/gone");
    assert_eq!(
        missing["attempts"], 1,
        "a missing image is not retried: {missing}"
    );
    assert!(missing["error"]
        .as_str()
        .unwrap_or_default()
        .contains("does not exist"));
    let unreachable = error_of("unreachable");
    assert_eq!(unreachable["attempts"], 3, "{unreachable}");
    assert!(unreachable["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("gave up after 3 attempts"));
    // People read the same list.
    let text = env.cli(&["jobs", "list", "--failed"]);
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    // A dead letter is replayable once its cause is fixed.
    let late = error_of("late/app");
    assert!(late["error"]
        .as_str()
        .unwrap_or_default()
        .contains("does not exist"));
    let digest = TestImage::random()
        .push(&host, "late/app", "v1")
        .await
        .expect("push the missing image");
    let id = late["id"].as_str().expect("job id");
    env.cli(&["jobs", "retry", id]);
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job: Value = serde_json::from_str(&env.cli(&["--output", "json", "jobs", "show", id]))
            .expect("json");
        if job["state"] == "succeeded" {
            assert_eq!(job["digest"], digest.as_str());
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the retried job: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let manifest = sig_manifest(&env.registry, "late/app", &digest).await;
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
    // The bus holds them as dead letters.
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dead = producer.jobs.dead_letters(10).await.expect("dead letters");
        if dead.len() == 4 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "dead letters: {dead:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(producer);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_jobs_and_a_restart_finishes_the_batch() {
    let mut env = Env::start(Setup::default()).await;
    env.witness_and_rule("prod", "local://prod");
    let images = env.push("drain", 12).await;
    env.until_succeeded(1, deadline(12)).await;
    let status = env.up.terminate().expect("SIGTERM signet");
    assert!(
        status.success(),
        "signet exits cleanly after draining: {status}"
    );
    // The store as signet left it: no job abandoned half way.
    let store = signet_store::Store::connect(&format!(
        "sqlite://{}",
        env.up.data_dir().join("signet.db").display()
    ))
    .await
    .expect("the stopped signet's store");
    let jobs = store.list_jobs(None, 1000).await.expect("jobs");
    let running: Vec<_> = jobs
        .iter()
        .filter(|j| j.state == signet_core::JobState::Running)
        .collect();
    assert!(running.is_empty(), "jobs left running: {running:#?}");
    store.close().await;
    env.up.restart().await.expect("start signet again");
    env.until_succeeded(images.len(), deadline(images.len()))
        .await;
    env.assert_signed_exactly_once(&images, 0).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_rules_from_the_cli_decide_what_is_signed() {
    let env = Env::start(Setup::default()).await;
    let host = env.registry.host();
    env.cli(&[
        "witness",
        "create",
        "--name",
        "prod",
        "--kms-key",
        "local://prod",
    ]);
    let out = env.cli(&[
        "rule",
        "create",
        "team",
        "--repository",
        &format!("{host}/e2e/team/*"),
        "--tag",
        "v*",
        "--witness",
        "prod",
    ]);
    assert!(out.contains("signing rule team created"), "{out}");
    let listed = env.cli(&["rule", "list"]);
    assert!(
        listed.contains("team") && listed.contains("prod") && listed.contains("v*"),
        "{listed}"
    );

    let push = |repo: &'static str, tag: &'static str| {
        let host = host.clone();
        async move {
            TestImage::random()
                .push(&host, repo, tag)
                .await
                .expect("push")
        }
    };
    push("e2e/team/app", "v1").await;
    push("e2e/team/app", "dev").await; // the tag does not match
    push("e2e/other/app", "v1").await; // the repository does not match
    env.until_notifications_delivered().await;
    env.until_succeeded(1, deadline(1)).await;
    assert_eq!(env.jobs().await.len(), 1);

    let out = env.cli(&["rule", "disable", "team"]);
    assert!(out.contains("disabled"), "{out}");
    push("e2e/team/app2", "v2").await;
    env.until_notifications_delivered().await;
    assert_eq!(env.jobs().await.len(), 1, "a disabled rule signs nothing");
    env.cli(&["rule", "enable", "team"]);
    push("e2e/team/app3", "v3").await;
    env.until_succeeded(2, deadline(1)).await;

    let shown: Value =
        serde_json::from_str(&env.cli(&["--output", "json", "rule", "show", "team"]))
            .expect("json");
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["tag_pattern"], "v*");
    let stats = env.get("/v1/webhooks/stats").await["receivers"]["distribution"].clone();
    // dev, other/app, app2 and the two markers matched no rule.
    assert_eq!(stats["unmatched"], 5, "{stats}");
    let refused = env
        .up
        .cli(&[
            "rule",
            "create",
            "bad",
            "--repository",
            "x/[",
            "--witness",
            "prod",
        ])
        .expect("run");
    let msg = common::fails(&refused, "a bad glob");
    assert!(msg.contains("repository glob \"x/[\" is invalid"), "{msg}");
    env.cli(&["rule", "delete", "team"]);
    let audit: Value =
        serde_json::from_str(&env.cli(&["--output", "json", "audit", "--action", "rule."]))
            .expect("json");
    let mut actions: Vec<String> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        ["rule.create", "rule.delete", "rule.disable", "rule.enable"]
    );
    env.cleanup().await;
}

/// A signing rule's `format` decides how the pushes it matches are signed, whatever the
/// witness's own: one rule signs as Sigstore bundles (on docker-registry, which has no
/// referrers API, through the referrers tag index), the other leaves the witness's
/// `.sig` tag. `signet verify` reads each in its format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_format_decides_how_its_pushes_are_signed() {
    let env = Env::start(Setup::default()).await;
    let host = env.registry.host();
    env.cli(&[
        "witness",
        "create",
        "--name",
        "prod",
        "--kms-key",
        "local://prod",
    ]);
    env.cli(&[
        "rule",
        "create",
        "modern",
        "--repository",
        &format!("{host}/e2e/modern/*"),
        "--witness",
        "prod",
        "--format",
        "bundle",
    ]);
    env.cli(&[
        "rule",
        "create",
        "classic",
        "--repository",
        &format!("{host}/e2e/classic/*"),
        "--witness",
        "prod",
    ]);
    let shown: Value =
        serde_json::from_str(&env.cli(&["--output", "json", "rule", "show", "modern"]))
            .expect("json");
    assert_eq!(shown["format"], "bundle", "{shown}");
    assert!(
        env.cli(&["rule", "show", "classic"])
            .contains("the witness's own"),
        "a rule without a format says whose applies"
    );
    let modern = TestImage::random()
        .push(&host, "e2e/modern/app", "v1")
        .await
        .expect("push");
    let classic = TestImage::random()
        .push(&host, "e2e/classic/app", "v1")
        .await
        .expect("push");
    env.until_notifications_delivered().await;
    env.until_succeeded(2, deadline(2)).await;

    let formats = |image: String| {
        let out = env.cli(&["--output", "json", "verify", &image, "--witness", "prod"]);
        let v: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["verified"], true, "{v:#}");
        v["signatures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["verified"] == true)
            .map(|s| s["format"].as_str().unwrap_or("cosign").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        formats(format!("{host}/e2e/modern/app@{modern}")),
        ["bundle"],
        "the rule's bundle, and no .sig tag"
    );
    assert_eq!(
        formats(format!("{host}/e2e/classic/app@{classic}")),
        ["cosign"],
        "the witness's own .sig tag"
    );
    env.cleanup().await;
}

/// Two registries, each notifying its own receiver with its own token: production the
/// unnamed `[webhooks.distribution]`, staging the named `[webhooks.receivers.staging]`
/// (`/v1/webhooks/distribution/staging`). Each registry's pushes are signed on that
/// registry, under its receiver's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_registry_notifies_its_own_receiver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut env: Vec<(String, String)> =
        vec![("SIGNET_GATEWAY__LISTEN".into(), format!("127.0.0.1:{port}"))];
    let mut registries = Vec::new();
    for (name, path, key) in [
        ("prod", "/v1/webhooks/distribution", "DISTRIBUTION"),
        (
            "staging",
            "/v1/webhooks/distribution/staging",
            "RECEIVERS__STAGING",
        ),
    ] {
        let token = format!("{name}-{}", unique());
        let file = tmp.path().join(format!("{name}.token"));
        std::fs::write(&file, format!("{token}\n")).expect("write token");
        let registry = TestRegistry::builder()
            .notify(
                NotificationEndpoint::new(format!("http://127.0.0.1:{port}{path}"))
                    .header("Authorization", format!("Bearer {token}"))
                    .timeout(Duration::from_secs(10))
                    .threshold(3)
                    .backoff(Duration::from_millis(500)),
            )
            .start()
            .await
            .expect("docker-registry");
        env.push((
            format!("SIGNET_WEBHOOKS__{key}__TOKEN_FILE"),
            file.display().to_string(),
        ));
        env.push((format!("SIGNET_WEBHOOKS__{key}__REGISTRY"), registry.host()));
        registries.push(registry);
    }
    env.push((
        "SIGNET_WEBHOOKS__RECEIVERS__STAGING__KIND".into(),
        "distribution".into(),
    ));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let up = SignetUp::start(bin(), &pairs).await.expect("signet up");
    let cli = |args: &[&str]| ok(&up.cli(args).expect("run signet"), &args.join(" "));
    cli(&[
        "witness",
        "create",
        "--name",
        "prod",
        "--kms-key",
        "local://prod",
    ]);
    cli(&[
        "rule",
        "create",
        "all",
        "--repository",
        "**",
        "--witness",
        "prod",
    ]);
    for registry in &registries {
        TestImage::random()
            .push(&registry.host(), "e2e/app", "v1")
            .await
            .expect("push");
    }

    let admin = up.admin_token().expect("admin token");
    let http = reqwest::Client::new();
    let until = tokio::time::Instant::now() + deadline(2);
    let jobs = loop {
        let body: Value = http
            .get(format!("{}/v1/jobs", up.server()))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("GET /v1/jobs")
            .json()
            .await
            .expect("json");
        let jobs = body["jobs"].as_array().cloned().unwrap_or_default();
        let done = jobs.iter().filter(|j| j["state"] == "succeeded").count();
        if done >= 2 {
            break jobs;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "not signed in time: {jobs:#?}\n{}",
            tail(&up.log())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut signed: Vec<(String, String)> = jobs
        .iter()
        .map(|j| {
            (
                j["source"].as_str().unwrap_or_default().to_owned(),
                j["request"]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    signed.sort();
    assert_eq!(signed.len(), 2, "{signed:#?}");
    assert_eq!(signed[0].0, "webhook:distribution");
    assert!(
        signed[0]
            .1
            .starts_with(&format!("{}/e2e/app:v1@", registries[0].host())),
        "{signed:?}"
    );
    assert_eq!(signed[1].0, "webhook:distribution/staging");
    assert!(
        signed[1]
            .1
            .starts_with(&format!("{}/e2e/app:v1@", registries[1].host())),
        "{signed:?}"
    );
}
