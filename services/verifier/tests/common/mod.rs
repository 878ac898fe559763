//! The verifier's end-to-end harness: a real control plane (gateway, signer, outbox relay
//! on a SQLite store, the local development KMS) on a free port, a real docker-registry,
//! a bus (embedded, RabbitMQ or NATS, each test in a namespace of its own), and the
//! verifier itself over real HTTPS with a self-signed certificate.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use signet_bus::{Bus, BusOptions};
use signet_core::{Digest, Role};
use signet_gateway::AppState;
use signet_kms::{Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::settings::{GatewaySettings, SignerSettings};
use signet_signer::sign::SignContext;
use signet_signer::{Signer, SignerOptions};
use signet_store::Store;
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_verifier::{CacheConfig, ClientAuth, RateLimits, Running, TlsFiles, VerifierConfig};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// How long a test waits for something that should happen well within it. Generous: the
/// test machines are small and shared; the figures that matter are measured elsewhere.
pub const DEADLINE: Duration = Duration::from_secs(30);
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Amqp,
    Nats,
}

impl Backend {
    pub fn url(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Amqp => AMQP_URL,
            Backend::Nats => NATS_URL,
        }
    }

    pub fn service(self) -> &'static str {
        match self {
            Backend::Embedded => "the embedded bus",
            Backend::Amqp => "RabbitMQ on 127.0.0.1:5672",
            Backend::Nats => "NATS with JetStream on 127.0.0.1:4222",
        }
    }
}

/// Runs each listed `async fn(Backend)` once per bus backend.
#[macro_export]
macro_rules! on_every_bus {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Embedded).await
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Amqp).await
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Nats).await
                }
            )*
        }
    };
}

/// Polls `check` until it yields a value; fails naming `what` after [`DEADLINE`].
pub async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn registry_client() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        timeout: Duration::from_secs(3),
        ..RegistryConfig::for_loopback()
    })
    .expect("registry client")
}

/// gateway + signer + outbox relay, as `signet up` runs them, on a bus namespace of the
/// test's own.
pub struct ControlPlane {
    pub backend: Backend,
    pub namespace: String,
    pub store: Store,
    pub bus: Bus,
    pub url: String,
    pub admin: String,
    pub verifier_token: String,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    gateway: Option<(CancellationToken, JoinHandle<()>)>,
    workers: CancellationToken,
    kick: Arc<Notify>,
    kms: Arc<Kms>,
    webhooks: Arc<signet_gateway::webhooks::Receivers>,
    /// Seals the bundles and events; verifiers pin its public key.
    pub control_key: Arc<signet_kms::ControlPlaneKey>,
    http: reqwest::Client,
    /// HTTPS for the gateway, once [`ControlPlane::serve_https`] asked for it.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl ControlPlane {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Arc::default()).await
    }

    /// A control plane whose gateway has these registry webhook receivers.
    pub async fn start_with(
        backend: Backend,
        webhooks: Arc<signet_gateway::webhooks::Receivers>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("signet.db").display()
        ))
        .await
        .expect("temporary SQLite store");
        let namespace = format!("v{}", uuid::Uuid::new_v4().simple());
        let bus = connect(backend, &namespace, &store).await;
        let kms = Arc::new(Kms::new(KmsConfig::new(dir.path())));
        let kick = Arc::new(Notify::new());
        let workers = CancellationToken::new();
        let control_key = signet_testkit::control_plane_key(&kms).await;
        tokio::spawn(signet_bus::outbox::run(
            store.clone(),
            bus.events.clone(),
            control_key.clone(),
            kick.clone(),
            workers.clone(),
        ));
        let signer = Arc::new(Signer::new(
            SignContext::new(store.clone(), kms.clone(), registry_client(), 500),
            bus.clone(),
            SignerOptions::from_settings(&SignerSettings::default()),
            kick.clone(),
        ));
        tokio::spawn(signer.run(workers.clone()));
        let admin = signet_gateway::auth::issue(&store, "admin", Role::Admin, "test")
            .await
            .expect("admin token")
            .secret
            .expose_secret()
            .to_owned();
        let verifier_token = signet_gateway::auth::issue_scoped(
            &store,
            "verifier-c1",
            Role::Verifier,
            Some("c1"),
            None,
            &[],
            "test",
        )
        .await
        .expect("verifier token")
        .secret
        .expose_secret()
        .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gateway");
        let addr = listener.local_addr().expect("gateway address");
        let mut cp = Self {
            backend,
            namespace,
            store,
            bus,
            url: format!("http://{addr}"),
            admin,
            verifier_token,
            addr,
            dir,
            gateway: None,
            workers,
            kick,
            kms,
            webhooks,
            control_key,
            http: reqwest::Client::new(),
            tls: None,
        };
        cp.serve(listener);
        cp
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let state = AppState {
            store: self.store.clone(),
            bus: self.bus.clone(),
            kms: self.kms.clone(),
            registry: registry_client(),
            settings: Arc::new(GatewaySettings::default()),
            outbox_kick: self.kick.clone(),
            webhooks: self.webhooks.clone(),
            control_key: self.control_key.clone(),
            waiters: Arc::default(),
            live: Arc::default(),
        };
        let token = CancellationToken::new();
        let tls = self.tls.clone();
        let task = tokio::spawn({
            let token = token.clone();
            async move {
                let _ = signet_gateway::serve(
                    listener,
                    state,
                    signet_runtime::settings::HttpLimits::default(),
                    tls,
                    token,
                )
                .await;
            }
        });
        self.gateway = Some((token, task));
    }

    /// Takes the gateway (the control plane's API) down; signer and relay keep running.
    pub async fn stop_gateway(&mut self) {
        if let Some((token, task)) = self.gateway.take() {
            token.cancel();
            let _ = task.await;
        }
    }

    /// Serves the gateway over HTTPS from now on, with a certificate `ca` issued, as the
    /// chart does with `gateway.tls`.
    pub async fn serve_https(&mut self, ca: &TestCa) {
        let files = ca.server(self.dir.path());
        let settings = GatewaySettings {
            tls_cert: Some(files.cert),
            tls_key: Some(files.key),
            ..GatewaySettings::default()
        };
        self.tls = signet_gateway::tls_acceptor(&settings, &self.workers).expect("gateway TLS");
        self.url = format!("https://127.0.0.1:{}", self.addr.port());
        let ca_pem = std::fs::read(&ca.pem_file).expect("read the CA");
        self.http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).expect("CA PEM")])
            .build()
            .expect("HTTPS client");
        self.stop_gateway().await;
        self.start_gateway().await;
    }

    /// Brings the gateway back on the same address.
    pub async fn start_gateway(&mut self) {
        let listener = poll("the gateway port to be free again", || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.serve(listener);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("gateway request");
        let status = resp.status();
        let text = resp.text().await.expect("gateway body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!(s.is_success(), "{path}: {s} {v}");
        v
    }

    pub async fn witness(&self, name: &str) -> Value {
        self.ok(
            Method::POST,
            "/v1/witnesses",
            Some(json!({"name": name, "kms_key": format!("local://{name}")})),
        )
        .await
    }

    /// An enforce policy on c1/`namespace` for `witness`, enabled.
    pub async fn policy(&self, name: &str, witness: &str, namespace: &str, extra: Value) -> Value {
        let mut body = json!({
            "name": name, "witnesses": [witness], "cluster": "c1",
            "namespace": namespace, "enabled": true,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.ok(Method::POST, "/v1/policies", Some(body)).await
    }

    /// Signs `image` with `witness` and returns once the signature is published.
    pub async fn sign(&self, image: &str, witness: &str) -> Value {
        let (s, job) = self
            .call(
                Method::POST,
                "/v1/sign?wait=60",
                Some(json!({"image": image, "witness": witness})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "signing {image}: {job}");
        assert_eq!(job["state"], "succeeded", "{job}");
        job
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.workers.cancel();
        if let Some((token, _)) = &self.gateway {
            token.cancel();
        }
        // The shared brokers outlive the test: remove the queues, exchanges and streams
        // of its namespace (a quorum queue left behind costs RabbitMQ for good). Drop is
        // not async, so a runtime of its own on a thread of its own does it.
        if self.backend != Backend::Embedded {
            let (url, namespace) = (self.backend.url().to_owned(), self.namespace.clone());
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(signet_testkit::brokers::delete_namespace(&url, &namespace));
                }
            })
            .join();
        }
    }
}

/// A bus connection on `namespace` (its own connection for the brokers).
pub async fn connect(backend: Backend, namespace: &str, store: &Store) -> Bus {
    let options = BusOptions {
        namespace: Some(namespace.to_owned()),
        ack_wait: Duration::from_secs(5),
        reconnect_max_delay: Duration::from_secs(1),
        poll_interval: Duration::from_secs(1),
        ..BusOptions::default()
    };
    match signet_bus::connect_with(backend.url(), store, options).await {
        Ok(bus) => bus,
        Err(e) => panic!("{} is needed for this test: {e}", backend.service()),
    }
}

/// A docker-registry with one signed-to-be and one unsigned image.
pub struct Images {
    pub registry: TestRegistry,
    pub host: String,
}

impl Images {
    pub async fn start() -> Self {
        let registry = TestRegistry::start()
            .await
            .unwrap_or_else(|e| panic!("docker-registry is needed for this test: {e:#}"));
        let host = registry.host();
        Self { registry, host }
    }

    /// Pushes a fresh random image as `repo:tag`; returns `host/repo:tag` and its digest.
    pub async fn push(&self, repo: &str, tag: &str) -> (String, Digest) {
        let digest = TestImage::random()
            .push(&self.host, repo, tag)
            .await
            .expect("push a test image");
        (format!("{}/{repo}:{tag}", self.host), digest)
    }
}

/// The verifier under test, its certificate, and an HTTPS client that trusts it.
pub struct Verifier {
    pub running: Option<Running>,
    pub shutdown: CancellationToken,
    pub url: String,
    pub tls: TlsFiles,
    pub state_dir: PathBuf,
    pub client: reqwest::Client,
    dir: Arc<tempfile::TempDir>,
}

pub struct VerifierOptions {
    pub resync_interval: Duration,
    pub report_interval: Duration,
    pub budget: Duration,
    pub tls_reload_interval: Duration,
    pub client_auth: ClientAuth,
    pub rate_limits: RateLimits,
    /// The client [`Verifier::client`] presents: `None` for none.
    pub identity: Option<reqwest::Identity>,
    /// The CA the gateway's certificate must chain to (`verifier.gateway_ca`).
    pub gateway_ca: Option<PathBuf>,
    pub http: signet_runtime::settings::HttpLimits,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            resync_interval: Duration::from_secs(60),
            report_interval: Duration::from_millis(200),
            budget: Duration::from_secs(3),
            tls_reload_interval: Duration::from_millis(100),
            client_auth: ClientAuth::Off,
            rate_limits: RateLimits::default(),
            identity: None,
            gateway_ca: None,
            http: signet_runtime::settings::HttpLimits::default(),
        }
    }
}

/// A CA that issues certificates: client certificates, as the cluster's admin would for
/// the API server (`AdmissionConfiguration` kubeconfig `client-certificate`), and serving
/// certificates, as cert-manager would for the gateway.
pub struct TestCa {
    pub pem_file: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem_file = dir.path().join("ca.crt");
        std::fs::write(&pem_file, cert.pem()).expect("write the CA");
        Self {
            pem_file,
            issuer: rcgen::Issuer::new(params, key),
            _dir: dir,
        }
    }

    /// A client certificate and key for `name`, as reqwest presents it.
    pub fn client(&self, name: &str) -> reqwest::Identity {
        let key = rcgen::KeyPair::generate().expect("client key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        reqwest::Identity::from_pem(pem.as_bytes()).expect("client identity")
    }

    /// A serving certificate for 127.0.0.1 and localhost, written into `dir`.
    pub fn server(&self, dir: &Path) -> TlsFiles {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("params");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let files = TlsFiles {
            cert: dir.join("gateway.crt"),
            key: dir.join("gateway.key"),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}

pub fn https_client(cert: &Path) -> reqwest::Client {
    https_client_as(cert, None)
}

/// An HTTPS client trusting the verifier's certificate, presenting `identity` if any.
pub fn https_client_as(cert: &Path, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let pem = std::fs::read(cert).expect("read the verifier certificate");
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("certificate PEM")])
        .timeout(Duration::from_secs(15));
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().expect("HTTPS client")
}

impl Verifier {
    /// Starts a verifier for cluster c1 on a free port, fed by `cp`'s bus: the same
    /// in-process bus for the embedded backend, a connection of its own otherwise.
    pub async fn start(cp: &ControlPlane, options: VerifierOptions) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(cp, options, dir).await
    }

    /// Starts a verifier that keeps its state (certificate, kept bundle) in `dir`.
    pub async fn start_in(
        cp: &ControlPlane,
        options: VerifierOptions,
        dir: Arc<tempfile::TempDir>,
    ) -> Self {
        let tls = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        if !tls.cert.exists() {
            signet_verifier::tls::write_self_signed(&tls, &["localhost", "127.0.0.1"])
                .expect("self-signed certificate");
        }
        let state_dir = dir.path().join("state");
        let config = VerifierConfig {
            listen: "127.0.0.1:0".into(),
            cluster: "c1".into(),
            gateway: cp.url.clone(),
            token: SecretString::from(cp.verifier_token.clone()),
            tls: tls.clone(),
            tls_reload_interval: options.tls_reload_interval,
            decision_budget: options.budget,
            cache: CacheConfig::default(),
            resync_interval: options.resync_interval,
            report_interval: options.report_interval,
            report_batch: 100,
            state_dir: Some(state_dir.clone()),
            control_plane_keys: signet_core::PinnedKeys::new([cp.control_key.public_key().clone()]),
            gateway_ca: options.gateway_ca,
            client_auth: options.client_auth,
            rate_limits: options.rate_limits,
            http: options.http.clone(),
            inventory: Default::default(),
        };
        let events = match cp.backend {
            Backend::Embedded => cp.bus.events.clone(),
            other => {
                let scratch = Store::connect("sqlite::memory:")
                    .await
                    .expect("scratch store");
                connect(other, &cp.namespace, &scratch).await.events
            }
        };
        let shutdown = CancellationToken::new();
        let running = signet_verifier::start(config, events, registry_client(), shutdown.clone())
            .await
            .expect("verifier starts");
        let url = format!("https://127.0.0.1:{}", running.addr().port());
        let client = https_client_as(&tls.cert, options.identity);
        let v = Self {
            running: Some(running),
            shutdown,
            url,
            tls,
            state_dir,
            client,
            dir,
        };
        v.ready().await;
        v
    }

    pub fn dir(&self) -> Arc<tempfile::TempDir> {
        self.dir.clone()
    }

    /// Waits until it has a trust bundle.
    pub async fn ready(&self) {
        poll("the verifier to load a trust bundle", || async {
            let r = self
                .client
                .get(format!("{}/readyz", self.url))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }

    /// The last revision (bundle or event) the verifier has taken in.
    pub fn revision(&self) -> i64 {
        self.running
            .as_ref()
            .map(|r| r.trust().seen_revision())
            .unwrap_or_default()
    }

    /// Waits until the verifier's snapshot includes every event the control plane wrote.
    pub async fn caught_up(&self, cp: &ControlPlane) {
        let want = cp.store.outbox_revision().await.expect("outbox revision");
        poll(
            &format!("the verifier to reach revision {want}"),
            || async { (self.revision() >= want).then_some(()) },
        )
        .await;
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.wait().await.expect("verifier stops cleanly");
        }
    }

    /// POSTs a fixture to `path` (`/validate` or `/mutate`) with the placeholders filled.
    pub async fn review(&self, path: &str, fixture: &str, fill: &[(&str, &str)]) -> Value {
        let mut text = std::fs::read_to_string(format!("{FIXTURES}/{fixture}.json"))
            .unwrap_or_else(|e| panic!("fixture {fixture}: {e}"));
        let uid = uuid::Uuid::new_v4().to_string();
        text = text.replace("{{UID}}", &uid);
        for (k, v) in fill {
            text = text.replace(&format!("{{{{{k}}}}}"), v);
        }
        let resp = self
            .client
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .body(text)
            .send()
            .await
            .expect("HTTPS request to the verifier");
        assert_eq!(resp.status(), StatusCode::OK);
        let review: Value = resp.json().await.expect("an AdmissionReview answer");
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["uid"], uid.as_str(), "the uid is echoed");
        review["response"].clone()
    }

    /// POSTs `body` (a whole AdmissionReview) to `/validate`; returns its response.
    pub async fn validate_body(&self, body: String) -> Value {
        let resp = post_review(&self.client, &self.url, body)
            .await
            .expect("HTTPS request to the verifier");
        assert_eq!(resp.status(), StatusCode::OK);
        let review: Value = resp.json().await.expect("an AdmissionReview answer");
        review["response"].clone()
    }

    /// `/validate` of `fixture` in `namespace` with `image` as main and init image.
    pub async fn validate(&self, fixture: &str, namespace: &str, image: &str) -> Value {
        self.review(
            "/validate",
            fixture,
            &[
                ("NAMESPACE", namespace),
                ("IMAGE", image),
                ("INIT_IMAGE", image),
                ("EPHEMERAL_IMAGE", image),
                ("OLD_IMAGE", image),
            ],
        )
        .await
    }

    pub async fn allowed(&self, namespace: &str, image: &str) -> bool {
        self.validate("pod-create", namespace, image).await["allowed"] == true
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The pod-create fixture for `image` in `namespace`, with a fresh uid, the break-glass
/// annotation when `reason` is given, and `dryRun` as given.
pub fn pod_review(namespace: &str, image: &str, reason: Option<&str>, dry_run: bool) -> String {
    let mut text =
        std::fs::read_to_string(format!("{FIXTURES}/pod-create.json")).expect("fixture pod-create");
    if let Some(reason) = reason {
        text = text.replace(
            "\"kubectl.kubernetes.io/last-applied-configuration\"",
            &format!(
                "\"{}\": {}, \"kubectl.kubernetes.io/last-applied-configuration\"",
                signet_core::admission::BREAK_GLASS_ANNOTATION,
                Value::String(reason.to_owned())
            ),
        );
    }
    if dry_run {
        text = text.replace("\"dryRun\": false", "\"dryRun\": true");
    }
    text.replace("{{UID}}", &uuid::Uuid::new_v4().to_string())
        .replace("{{NAMESPACE}}", namespace)
        .replace("{{IMAGE}}", image)
        .replace("{{INIT_IMAGE}}", image)
        .replace("{{EPHEMERAL_IMAGE}}", image)
}

/// POSTs an AdmissionReview body to the verifier's `/validate` as `client`.
pub async fn post_review(
    client: &reqwest::Client,
    verifier: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{verifier}/validate"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
}

/// The break-glass audit entries the control plane holds whose reason is `reason`.
pub async fn break_glass_audits(cp: &ControlPlane, reason: &str) -> usize {
    let v = cp
        .ok(Method::GET, "/v1/audit?action=admission.break_glass", None)
        .await;
    v["entries"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["detail"]["reason"] == reason).count())
        .unwrap_or_default()
}

pub fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
