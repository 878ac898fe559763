//! signet's settings: one file (and `SIGNET_*` variables) for every service, with a
//! section per service. Each binary reads the shared keys and its own section, so one
//! ConfigMap or one `signet.toml` configures a whole deployment.
//!
//! Environment examples: `SIGNET_BUS=nats://127.0.0.1:4222`, `SIGNET_STORE=postgres://…`,
//! `SIGNET_SIGNER__CONCURRENCY=32`, `SIGNET_GATEWAY__LISTEN=0.0.0.0:7700`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{check_socket_addr, Validate};
use crate::logging::LogFormat;
use crate::secret::{read_secret_file, SecretError, SecretString};
use crate::telemetry::TelemetrySettings;

/// Every setting of every signet service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the embedded store, the local development KMS keys and the first admin
    /// token live.
    pub data_dir: PathBuf,
    /// Store URL: `sqlite://PATH` or `postgres://…`. Default: SQLite in `data_dir`.
    pub store: Option<String>,
    /// Bus: `embedded`, `amqp://…` or `nats://…`.
    pub bus: String,
    /// How the bus behaves: namespace, redelivery and delivery limits.
    pub bus_options: BusOptionSettings,
    pub log: LogSettings,
    pub kms: KmsSettings,
    pub registry: RegistrySettings,
    pub gateway: GatewaySettings,
    pub signer: SignerSettings,
    /// Registry webhook receivers and how each authenticates its sender.
    pub webhooks: WebhookSettings,
    /// The cluster-side verifier (admission webhook).
    pub verifier: VerifierSettings,
    /// A file holding the token `PUT /log-level` on the admin ports asks for. Unset:
    /// changing the log level at run time is refused.
    pub admin_token_file: Option<PathBuf>,
    /// Where spans go (OTLP) and how many traces are kept.
    pub telemetry: TelemetrySettings,
    /// The control plane's signing key, which seals every trust bundle and event.
    pub control_plane: ControlPlaneSettings,
    /// Timeouts and the connection cap of every HTTP listener (gateway, admin ports,
    /// verifier), so slow or idle clients cannot hold connections open.
    pub http: HttpLimits,
}

/// The control plane's own identity towards verifiers. The gateway and the signer (both
/// relay events from the outbox) seal what they send with this key; verifiers pin its
/// public half (`verifier.control_plane_keys`) and refuse anything else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlPlaneSettings {
    /// A KMS key URI, as for witnesses (`awskms://…`, `hashivault://…`, `alikms://…`).
    /// Required by the gateway and the signer; `signet up` uses
    /// `local://signet-control-plane` in its data dir when unset.
    pub signing_key: Option<String>,
}

/// How long a client may take, and how many connections a listener holds. The same for
/// every listener of a process: the gateway's API and webhooks, each admin port, the
/// verifier's HTTPS port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// From a connection's start (after TLS) until its first request's headers are
    /// complete, and for each later request's headers; past it the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body; past it the request fails.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Longest a request may take until its response starts (408 past it). The gateway
    /// lets `POST /v1/sign?wait=` run for `gateway.max_wait` plus 10 s when that is longer.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest a TLS handshake may take (the verifier's HTTPS port).
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Open connections per listener; one more is closed at once (and counted in
    /// `signet_http_connections_refused_total{reason="over_limit"}`).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

impl HttpLimits {
    fn validate(&self, p: &mut Vec<String>) {
        for (name, d) in [
            ("http.header_read_timeout", self.header_read_timeout),
            ("http.body_read_timeout", self.body_read_timeout),
            ("http.request_timeout", self.request_timeout),
            ("http.tls_handshake_timeout", self.tls_handshake_timeout),
        ] {
            if d < Duration::from_millis(100) {
                p.push(format!("{name}: must be at least 100ms"));
            }
        }
        if self.max_connections == 0 {
            p.push("http.max_connections: must be at least 1".into());
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusOptionSettings {
    /// Appended (as `-<namespace>`) to every queue, exchange, stream and subject, so that
    /// several signet installations (or test runs) can share one broker. Production
    /// leaves it unset and gets the documented names (`signet.jobs.sign`, ...).
    pub namespace: Option<String>,
    /// How long a job taken by a worker that then died stays invisible before it is
    /// delivered again (NATS `ack_wait`, the embedded queue's lease). A live worker keeps
    /// its jobs however long they take.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Deliveries without a settlement (a job that crashes every worker) before the bus
    /// dead-letters the message itself.
    pub max_deliver: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `auto` (JSON unless on a terminal), `json` or `text`.
    pub format: LogFormat,
    /// A level (`info`) or a filter (`info,signet_signer=debug`).
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KmsSettings {
    /// Time limit for one KMS call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Allow `local://` development keys (plain files in the data dir) outside `signet up`.
    pub allow_local_keys: bool,
    /// `host[:port]` endpoints `awskms://HOST/KEY` URIs may name (LocalStack, a VPC
    /// endpoint). A URI without an endpoint (`awskms:///…`) uses the region's own.
    pub allowed_endpoints: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Time limit for one registry request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Registries reached over plain HTTP besides loopback ones (`host:port`).
    pub insecure: Vec<String>,
    /// Destinations allowed although they are not public internet addresses: host names,
    /// IP addresses or CIDRs. Loopback, link-local (metadata endpoints), RFC 1918, CGNAT,
    /// ULA and unspecified addresses are refused unless listed here; checked on the
    /// address connected to. `signet up` adds loopback.
    pub allowed_hosts: Vec<String>,
    /// Hosts (`host` or `host:port`) registries may redirect to besides themselves: their
    /// blob storage (S3, GCS). Redirects elsewhere, or from https to http, are refused.
    pub redirect_hosts: Vec<String>,
    /// A docker `config.json` with registry credentials. Default:
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` when present.
    pub docker_config: Option<PathBuf>,
    /// Credentials per registry host; secrets come from files.
    pub credentials: Vec<RegistryCredentialSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentialSettings {
    pub host: String,
    /// With `password_file`: basic auth (or a docker token service login).
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A registry bearer token, instead of username and password.
    pub token_file: Option<PathBuf>,
    /// Token service hosts (`host` or `host:port`) besides the registry's own that may
    /// receive these credentials (Docker Hub's `auth.docker.io` is always allowed for
    /// `docker.io`).
    #[serde(default)]
    pub realm_hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// API and webhook listener.
    pub listen: String,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// Longest `POST /v1/sign?wait=SECONDS` may wait.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Most `?wait=` requests one API token may have waiting at once; more are answered
    /// 429. A waiter costs a connection and a few store reads, never a read every 20 ms.
    pub max_waiters_per_token: usize,
    /// Longest pause between two store reads of a waited-for job whose signer runs in
    /// another process (the pause starts at 50 ms and doubles up to this). A signer in
    /// the same process (`signet up`) wakes its waiters at once.
    #[serde(with = "humantime_serde")]
    pub wait_poll_max: Duration,
    /// Admin port: `/metrics`, `/healthz`, `/readyz`, `PUT /log-level`. `signet up`
    /// serves the one admin port of the whole process here.
    pub admin_listen: String,
    /// PEM certificate (chain) and private key: with both, `listen` serves HTTPS (h2 and
    /// HTTP/1.1), and the files are re-read when either changes. Verifiers pin the CA
    /// that issued it (`verifier.gateway_ca`). Unset: plain HTTP, for loopback or behind
    /// a TLS-terminating ingress or mesh.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[serde(with = "humantime_serde")]
    pub tls_reload_interval: Duration,
    /// A cluster whose verifier has not reported its inventory for this long is listed
    /// as stale (`GET /v1/workloads`): what is shown is the last inventory known.
    /// Verifiers report at least every 30 s, so keep it well above that.
    #[serde(with = "humantime_serde")]
    pub inventory_stale_after: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerSettings {
    /// Jobs signed at once (and the broker prefetch).
    pub concurrency: usize,
    /// Attempts before a job that keeps failing goes to the dead letters.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Largest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// KMS sign calls per second per witness, to stay under the KMS quota
    /// (AWS: 1,000/s per account for RSA; Alibaba: 200-750/s), with a burst of one
    /// second's worth. On PostgreSQL the budget is shared by every signer replica
    /// (through the store); on SQLite it is the one process's.
    pub kms_rate_per_witness: u32,
    /// How long a worker's claim on (repository, digest, witness) lasts without renewal.
    /// A live worker renews it while it signs; a crashed one blocks that image for at
    /// most this long.
    #[serde(with = "humantime_serde")]
    pub claim_lease: Duration,
    /// For an image index: sign the index and each platform manifest in it.
    pub sign_platforms: bool,
    /// Admin port: `/metrics`, `/healthz`, `/readyz`, `PUT /log-level`.
    pub admin_listen: String,
}

/// The cluster-side verifier: the admission webhook, its trust cache and how it reaches
/// the control plane.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifierSettings {
    /// HTTPS listener for `POST /validate` and `POST /mutate`.
    pub listen: String,
    /// Admin port (plain HTTP): `/metrics`, `/healthz`, `/readyz`, `PUT /log-level`.
    pub admin_listen: String,
    /// The cluster name policies are bound to.
    pub cluster: String,
    /// The control plane (gateway) URL. Default under `signet up`: its own gateway.
    pub gateway: Option<String>,
    /// A file holding an API token with the verifier role. `signet up` mints one.
    pub token_file: Option<PathBuf>,
    /// PEM certificate (chain) and private key, re-read when either file changes.
    /// `signet up` generates a self-signed pair in the data dir when they are unset.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[serde(with = "humantime_serde")]
    pub tls_reload_interval: Duration,
    /// How long one admission may take; past it, enforced namespaces fail closed. Keep
    /// it well under the webhook's `timeoutSeconds` (the Helm chart's default is 5 s;
    /// the chart refuses a timeout that does not exceed this budget).
    #[serde(with = "humantime_serde")]
    pub decision_budget: Duration,
    /// Most (digest, witness key) verdicts held; the least recently used go first.
    pub cache_capacity: u64,
    /// How long a verified signature is trusted before it is checked again.
    #[serde(with = "humantime_serde")]
    pub trust_ttl: Duration,
    /// How long "no valid signature in the registry" is remembered before asking again.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How long a tag stays resolved to the digest the registry named.
    #[serde(with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// How often the trust bundle is fetched even when events say nothing changed.
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
    /// How often admission decisions are reported to the control plane.
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
    /// Most decisions in one report.
    pub report_batch: usize,
    /// Where the last trust bundle is kept, so a restarted verifier can decide while the
    /// control plane is unreachable, and where break-glass decisions wait until the
    /// control plane acknowledges them. Unset: kept in memory only.
    pub state_dir: Option<PathBuf>,
    /// PEM files with the control plane's public key (two during a rotation; a file may
    /// hold several keys). Trust bundles and events not sealed by one of them are
    /// refused. Required; `signet up` pins its own key.
    pub control_plane_keys: Vec<PathBuf>,
    /// A PEM CA bundle the gateway's certificate must chain to when `gateway` is
    /// `https://`; instead of the system roots, not in addition.
    pub gateway_ca: Option<PathBuf>,
    /// Who may send reviews: `require` (TLS refuses a client without a certificate
    /// issued by `client_ca`), `optional` (reviews from other clients are answered but
    /// never reported, audited or honoured as break-glass) or `off` (anyone; for `signet
    /// up`, which ignores this setting unless `client_ca` is set).
    pub client_auth: ClientAuthMode,
    /// PEM file of the CA(s) that issue the API server's client certificate (the
    /// `client-certificate` of its `AdmissionConfiguration` kubeconfig). Read at start.
    pub client_ca: Option<PathBuf>,
    /// Reviews per second from one verified client certificate, or from one peer IP with
    /// `client_auth = "off"` (0: no limit). Past it, with a burst of the same size,
    /// reviews are answered 429.
    pub rate_limit_verified: u32,
    /// Reviews per second from one peer IP address without a verified certificate, with
    /// `client_auth = "optional"` (0: no limit). Past it, with a burst of the same size,
    /// reviews are answered 429. With `off`, every client gets `rate_limit_verified`.
    pub rate_limit_unverified: u32,
    /// The inventory of running containers (what runs, and its standing).
    pub inventory: InventorySettings,
}

/// The verifier's inventory: it watches Pods through the API server, judges each running
/// container under the cluster's policies, re-judges them when trust changes, and
/// reports them to the control plane (`POST /v1/inventory`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySettings {
    pub enabled: bool,
    /// A kubeconfig for a verifier outside the cluster; unset: the Pod's service account
    /// (in-cluster config), else `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces watched; empty: all (the chart's RBAC decides what may be listed).
    pub namespaces: Vec<String>,
    /// How often changes are reported (and at most how long a change waits).
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
    /// How often the whole inventory is sent again, so the control plane forgets what it
    /// missed (a Pod deleted while the gateway was down).
    #[serde(with = "humantime_serde")]
    pub full_sync_interval: Duration,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            kubeconfig: None,
            namespaces: Vec::new(),
            report_interval: Duration::from_millis(500),
            full_sync_interval: Duration::from_secs(600),
        }
    }
}

/// How the verifier authenticates whoever sends it AdmissionReviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// TLS refuses clients without a certificate issued by the client CA.
    #[default]
    Require,
    /// Clients without one are answered, never reported, audited or given break-glass.
    Optional,
    /// Anyone who completes TLS is trusted (today's `signet up`).
    Off,
}

impl ClientAuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Require => "require",
            Self::Optional => "optional",
            Self::Off => "off",
        }
    }
}

/// The registry webhook receivers. A receiver that is not configured is off (its URL
/// answers 404); one that is configured must say how it authenticates its sender.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Largest webhook body accepted; registries send a few kilobytes per event.
    pub body_limit_bytes: usize,
    /// How long the delivery ids of HMAC-signed webhooks are remembered: the same
    /// delivery id within this window is refused as a replay. At least
    /// `timestamp_tolerance`, so a signed delivery cannot outlive the memory of its id.
    #[serde(with = "humantime_serde")]
    pub replay_window: Duration,
    /// How far a Standard Webhooks `webhook-timestamp` may be from the gateway's clock
    /// (either way); older or newer deliveries are refused.
    #[serde(with = "humantime_serde")]
    pub timestamp_tolerance: Duration,
    /// `POST /v1/webhooks/distribution`: CNCF distribution (docker-registry) notifications.
    pub distribution: Option<ReceiverSettings>,
    /// `POST /v1/webhooks/harbor`: Harbor `PUSH_ARTIFACT`, default or CloudEvents format.
    pub harbor: Option<ReceiverSettings>,
    /// `POST /v1/webhooks/acr[/SECRET]`: Alibaba Cloud Container Registry triggers.
    pub acr: Option<ReceiverSettings>,
    /// `POST /v1/webhooks/generic`: the sign-request JSON of `POST /v1/sign`.
    pub generic: Option<ReceiverSettings>,
    /// More receivers, by name, each with its own `kind`, secret and registry:
    /// `[webhooks.receivers.staging] kind = "distribution"` answers at
    /// `POST /v1/webhooks/distribution/staging` (`/v1/webhooks/acr/NAME[/SECRET]` for ACR).
    pub receivers: BTreeMap<String, ReceiverSettings>,
}

/// How one receiver authenticates its sender (exactly one way), and where its images live.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverSettings {
    /// Only in `webhooks.receivers.NAME`: `distribution`, `harbor`, `acr` or `generic`.
    pub kind: Option<String>,
    /// A static token the sender puts in `token_header` (as `Bearer TOKEN` or bare).
    pub token_file: Option<PathBuf>,
    /// The header carrying the token. Default: `Authorization`.
    pub token_header: Option<String>,
    /// An HMAC-SHA256 key (Standard Webhooks: `whsec_<base64>`, or raw bytes). The sender
    /// signs `id.timestamp.body` into `webhook-signature`, with `webhook-id` and
    /// `webhook-timestamp`; stale timestamps and repeated ids are refused.
    pub hmac_secret_file: Option<PathBuf>,
    /// With `hmac_secret_file`: also accept GitHub's `X-Hub-Signature-256` (a MAC of the
    /// body alone, with an unsigned `X-Delivery-Id`). It cannot stop a replay under a new
    /// delivery id. Default: true for registry receivers (their jobs derive from the
    /// event id in the body, so a replay makes no new job), false for `generic`, where it
    /// also requires digest-pinned images.
    pub allow_github_signature: Option<bool>,
    /// ACR only: a secret in the URL (`/v1/webhooks/acr/SECRET` or `?secret=SECRET`).
    /// Weaker than a header: URLs end up in logs and consoles.
    pub url_secret_file: Option<PathBuf>,
    /// Accept unauthenticated requests. Anyone who reaches the URL can then have signet
    /// sign whatever its signing rules allow; only for a network nobody else can reach.
    pub insecure_no_auth: bool,
    /// The registry this receiver speaks for (`registry.example.com`): the host in every
    /// image reference it signs. Required for distribution, harbor and acr: an event
    /// naming another host is refused, never signed. For generic: sign requests must name
    /// an image on this host (or one of `event_hosts`).
    pub registry: Option<String>,
    /// Other names the registry reports itself under in events (the host its clients
    /// push to, when it differs from `registry`; for ACR, `registry.<region>.aliyuncs.com`).
    /// Events naming these are accepted and signed under `registry`.
    pub event_hosts: Vec<String>,
    /// Globs over `registry/repository` (`*` within one path component, `**` across):
    /// only images they match are signed through this receiver. Empty: every repository.
    pub repositories: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            store: None,
            bus: "embedded".into(),
            log: LogSettings::default(),
            kms: KmsSettings::default(),
            registry: RegistrySettings::default(),
            gateway: GatewaySettings::default(),
            signer: SignerSettings::default(),
            bus_options: BusOptionSettings::default(),
            webhooks: WebhookSettings::default(),
            verifier: VerifierSettings::default(),
            admin_token_file: None,
            telemetry: TelemetrySettings::default(),
            control_plane: ControlPlaneSettings::default(),
            http: HttpLimits::default(),
        }
    }
}

impl Default for BusOptionSettings {
    fn default() -> Self {
        Self {
            namespace: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 25,
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 256 * 1024,
            replay_window: Duration::from_secs(24 * 3600),
            timestamp_tolerance: Duration::from_secs(300),
            distribution: None,
            harbor: None,
            acr: None,
            generic: None,
            receivers: BTreeMap::new(),
        }
    }
}

/// The receiver kinds, as named in settings and URLs.
pub const RECEIVER_KINDS: [&str; 4] = ["distribution", "harbor", "acr", "generic"];

/// One configured receiver as settings name it.
#[derive(Debug, Clone, Copy)]
pub struct ConfiguredReceiver<'a> {
    /// `distribution`, `harbor`, `acr` or `generic` (as written; validation checks it).
    pub kind: &'a str,
    /// `None` for `webhooks.<kind>`, the name for `webhooks.receivers.<name>`.
    pub name: Option<&'a str>,
    pub settings: &'a ReceiverSettings,
}

impl ConfiguredReceiver<'_> {
    /// Where its settings are, for messages: `webhooks.harbor`, `webhooks.receivers.staging`.
    pub fn key(&self) -> String {
        match self.name {
            None => format!("webhooks.{}", self.kind),
            Some(name) => format!("webhooks.receivers.{name}"),
        }
    }
}

impl WebhookSettings {
    /// Every configured receiver: the unnamed one of each kind, then the named ones.
    pub fn receivers(&self) -> Vec<ConfiguredReceiver<'_>> {
        let unnamed = [
            ("distribution", &self.distribution),
            ("harbor", &self.harbor),
            ("acr", &self.acr),
            ("generic", &self.generic),
        ]
        .into_iter()
        .filter_map(|(kind, r)| {
            r.as_ref().map(|settings| ConfiguredReceiver {
                kind,
                name: None,
                settings,
            })
        });
        let named = self
            .receivers
            .iter()
            .map(|(name, settings)| ConfiguredReceiver {
                kind: settings.kind.as_deref().unwrap_or_default(),
                name: Some(name.as_str()),
                settings,
            });
        unnamed.chain(named).collect()
    }

    /// Whether a receiver of `kind` accepts GitHub's body-only `X-Hub-Signature-256`.
    pub fn allows_github_signature(kind: &str, r: &ReceiverSettings) -> bool {
        r.allow_github_signature.unwrap_or(kind != "generic")
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

impl Default for KmsSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            allow_local_keys: false,
            allowed_endpoints: Vec::new(),
        }
    }
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            insecure: Vec::new(),
            allowed_hosts: Vec::new(),
            redirect_hosts: Vec::new(),
            docker_config: None,
            credentials: Vec::new(),
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7700".into(),
            body_limit_bytes: 1024 * 1024,
            max_wait: Duration::from_secs(120),
            max_waiters_per_token: 8,
            wait_poll_max: Duration::from_secs(2),
            admin_listen: "127.0.0.1:9090".into(),
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: Duration::from_secs(5),
            inventory_stale_after: Duration::from_secs(120),
        }
    }
}

impl Default for VerifierSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7443".into(),
            admin_listen: "127.0.0.1:9092".into(),
            cluster: "local".into(),
            gateway: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: Duration::from_secs(5),
            decision_budget: Duration::from_secs(3),
            cache_capacity: 100_000,
            trust_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(5),
            tag_ttl: Duration::from_secs(30),
            resync_interval: Duration::from_secs(60),
            report_interval: Duration::from_secs(2),
            report_batch: 500,
            state_dir: None,
            control_plane_keys: Vec::new(),
            gateway_ca: None,
            client_auth: ClientAuthMode::Require,
            client_ca: None,
            rate_limit_verified: 1000,
            rate_limit_unverified: 10,
            inventory: InventorySettings::default(),
        }
    }
}

impl Default for SignerSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_attempts: 10,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(300),
            kms_rate_per_witness: 500,
            claim_lease: Duration::from_secs(30),
            sign_platforms: true,
            admin_listen: "127.0.0.1:9091".into(),
        }
    }
}

/// `$XDG_DATA_HOME/signet`, else `~/.local/share/signet`, else `/var/lib/signet`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("signet");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Path::new(&home).join(".local/share/signet"),
        None => PathBuf::from("/var/lib/signet"),
    }
}

impl Settings {
    /// The store URL, defaulting to SQLite in the data dir.
    pub fn store_url(&self) -> String {
        self.store
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("signet.db").display()))
    }

    /// The file the first admin token is written to by `signet up`.
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// The token `PUT /log-level` asks for, read from `admin_token_file`; `None` when
    /// the setting is unset (changing the level is then refused).
    pub fn admin_port_token(&self) -> Result<Option<SecretString>, SecretError> {
        self.admin_token_file
            .as_deref()
            .map(read_secret_file)
            .transpose()
    }
}

impl Validate for Settings {
    fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(store) = &self.store {
            if !(store.starts_with("sqlite:")
                || store.starts_with("postgres://")
                || store.starts_with("postgresql://"))
            {
                p.push(format!(
                    "store: {:?} is not a store URL; use sqlite://PATH or postgres://USER@HOST/DB",
                    redact_url(store)
                ));
            }
        }
        if !(self.bus == "embedded"
            || self.bus.starts_with("amqp://")
            || self.bus.starts_with("amqps://")
            || self.bus.starts_with("nats://"))
        {
            p.push(format!(
                "bus: {:?} is not a bus; use embedded, amqp://HOST:5672 or nats://HOST:4222",
                redact_url(&self.bus)
            ));
        }
        if self.log.level.trim().is_empty() {
            p.push("log.level: must not be empty (e.g. info)".into());
        }
        if self.kms.timeout.is_zero() {
            p.push("kms.timeout: must be more than 0s".into());
        }
        if let Some(k) = &self.control_plane.signing_key {
            if !k.contains("://") {
                p.push(format!(
                    "control_plane.signing_key: {k:?} is not a KMS key URI (awskms://…, hashivault://…, alikms://…)"
                ));
            }
        }
        if self.registry.timeout.is_zero() {
            p.push("registry.timeout: must be more than 0s".into());
        }
        for (i, h) in self.registry.allowed_hosts.iter().enumerate() {
            if !is_destination(h) {
                p.push(format!(
                    "registry.allowed_hosts[{i}]: {h:?} is neither a host name, an IP address nor a CIDR (10.0.0.0/8)"
                ));
            }
        }
        for (i, h) in self.registry.redirect_hosts.iter().enumerate() {
            if h.contains('/') || !is_destination(h) {
                p.push(format!(
                    "registry.redirect_hosts[{i}]: {h:?} must be a host or host:port"
                ));
            }
        }
        for (i, c) in self.registry.credentials.iter().enumerate() {
            for (j, h) in c.realm_hosts.iter().enumerate() {
                if h.contains('/') || !is_destination(h) {
                    p.push(format!(
                        "registry.credentials[{i}].realm_hosts[{j}]: {h:?} must be a host or host:port"
                    ));
                }
            }
        }
        for (i, c) in self.registry.credentials.iter().enumerate() {
            let basic = c.username.is_some() || c.password_file.is_some();
            if c.host.is_empty() {
                p.push(format!("registry.credentials[{i}].host: must be set"));
            }
            if basic && c.token_file.is_some() {
                p.push(format!(
                    "registry.credentials[{i}]: set either username+password_file or token_file, not both"
                ));
            }
            if basic && (c.username.is_none() || c.password_file.is_none()) {
                p.push(format!(
                    "registry.credentials[{i}]: username and password_file go together"
                ));
            }
            if !basic && c.token_file.is_none() {
                p.push(format!(
                    "registry.credentials[{i}]: set username+password_file or token_file"
                ));
            }
        }
        check_socket_addr(&mut p, "gateway.listen", &self.gateway.listen);
        check_socket_addr(&mut p, "gateway.admin_listen", &self.gateway.admin_listen);
        check_distinct(
            &mut p,
            ("gateway.listen", &self.gateway.listen),
            ("gateway.admin_listen", &self.gateway.admin_listen),
        );
        check_socket_addr(&mut p, "signer.admin_listen", &self.signer.admin_listen);
        if let Some(f) = &self.admin_token_file {
            if f.as_os_str().is_empty() {
                p.push("admin_token_file: must be a file path (or unset)".into());
            }
        }
        self.telemetry.validate(&mut p);
        self.http.validate(&mut p);
        if self.gateway.body_limit_bytes < 1024 {
            p.push("gateway.body_limit_bytes: must be at least 1024".into());
        }
        if self.gateway.max_waiters_per_token == 0 {
            p.push("gateway.max_waiters_per_token: must be at least 1".into());
        }
        if self.gateway.wait_poll_max < Duration::from_millis(50) {
            p.push("gateway.wait_poll_max: must be at least 50ms".into());
        }
        if self.gateway.tls_cert.is_some() != self.gateway.tls_key.is_some() {
            p.push("gateway.tls_cert and gateway.tls_key go together".into());
        }
        if self.gateway.tls_reload_interval < Duration::from_millis(100) {
            p.push("gateway.tls_reload_interval: must be at least 100ms".into());
        }
        if self.gateway.inventory_stale_after < Duration::from_secs(1) {
            p.push("gateway.inventory_stale_after: must be at least 1s".into());
        }
        if self.signer.concurrency == 0 {
            p.push("signer.concurrency: must be at least 1".into());
        }
        if self.signer.max_attempts == 0 {
            p.push("signer.max_attempts: must be at least 1".into());
        }
        if self.signer.retry_base.is_zero() || self.signer.retry_base > self.signer.retry_max {
            p.push("signer.retry_base: must be more than 0s and at most signer.retry_max".into());
        }
        if self.signer.kms_rate_per_witness == 0 {
            p.push("signer.kms_rate_per_witness: must be at least 1".into());
        }
        if self.signer.claim_lease < Duration::from_secs(1) {
            p.push("signer.claim_lease: must be at least 1s".into());
        }
        if let Some(ns) = &self.bus_options.namespace {
            let ok = !ns.is_empty()
                && ns.len() <= 64
                && ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                p.push(format!(
                    "bus_options.namespace: {ns:?} must be 1 to 64 letters, digits, '-' or '_'"
                ));
            }
        }
        if self.bus_options.ack_wait < Duration::from_millis(100) {
            p.push("bus_options.ack_wait: must be at least 100ms".into());
        }
        if self.bus_options.max_deliver == 0 {
            p.push("bus_options.max_deliver: must be at least 1".into());
        }
        validate_webhooks(&self.webhooks, &mut p);
        validate_verifier(&self.verifier, &mut p);
        p
    }
}

fn validate_verifier(v: &VerifierSettings, p: &mut Vec<String>) {
    check_socket_addr(p, "verifier.listen", &v.listen);
    check_socket_addr(p, "verifier.admin_listen", &v.admin_listen);
    check_distinct(
        p,
        ("verifier.listen", &v.listen),
        ("verifier.admin_listen", &v.admin_listen),
    );
    let cluster_ok = !v.cluster.is_empty()
        && v.cluster.len() <= 63
        && v.cluster
            .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && v.cluster
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !cluster_ok {
        p.push(format!(
            "verifier.cluster: {:?} must be 1 to 63 lowercase letters, digits, '-', '_' or '.'",
            v.cluster
        ));
    }
    if let Some(g) = &v.gateway {
        if !(g.starts_with("http://") || g.starts_with("https://")) {
            p.push(format!(
                "verifier.gateway: {:?} must be an http:// or https:// URL",
                redact_url(g)
            ));
        }
    }
    if v.tls_cert.is_some() != v.tls_key.is_some() {
        p.push("verifier.tls_cert and verifier.tls_key go together".into());
    }
    if v.control_plane_keys.len() > 4 {
        p.push(
            "verifier.control_plane_keys: at most 4 files (the current key and the next during a rotation)"
                .into(),
        );
    }
    if v.gateway_ca.is_some()
        && !v
            .gateway
            .as_deref()
            .is_some_and(|g| g.starts_with("https://"))
    {
        p.push("verifier.gateway_ca: set only with an https:// verifier.gateway".into());
    }
    if v.tls_reload_interval < Duration::from_millis(100) {
        p.push("verifier.tls_reload_interval: must be at least 100ms".into());
    }
    if v.decision_budget < Duration::from_millis(100) || v.decision_budget > Duration::from_secs(25)
    {
        p.push(
            "verifier.decision_budget: must be between 100ms and 25s (the API server waits 30s at most)"
                .into(),
        );
    }
    if v.cache_capacity == 0 {
        p.push("verifier.cache_capacity: must be at least 1".into());
    }
    for (key, d) in [
        ("trust_ttl", v.trust_ttl),
        ("negative_ttl", v.negative_ttl),
        ("tag_ttl", v.tag_ttl),
        ("resync_interval", v.resync_interval),
        ("report_interval", v.report_interval),
    ] {
        if d.is_zero() {
            p.push(format!("verifier.{key}: must be more than 0s"));
        }
    }
    if v.report_batch == 0 || v.report_batch > 5_000 {
        p.push("verifier.report_batch: must be between 1 and 5000".into());
    }
}

fn validate_webhooks(w: &WebhookSettings, p: &mut Vec<String>) {
    if w.body_limit_bytes < 1024 {
        p.push("webhooks.body_limit_bytes: must be at least 1024".into());
    }
    if w.replay_window.is_zero() {
        p.push("webhooks.replay_window: must be more than 0s".into());
    }
    if w.timestamp_tolerance < Duration::from_secs(1) {
        p.push("webhooks.timestamp_tolerance: must be at least 1s".into());
    } else if w.replay_window < w.timestamp_tolerance {
        p.push(
            "webhooks.replay_window: must be at least webhooks.timestamp_tolerance, or a signed delivery outlives the memory of its id"
                .into(),
        );
    }
    for c in w.receivers() {
        let key = c.key();
        let r = c.settings;
        let name = c.kind;
        match c.name {
            None if r.kind.is_some() => p.push(format!(
                "{key}.kind: only receivers under webhooks.receivers.NAME take a kind"
            )),
            None => {}
            Some(n) => {
                if !valid_receiver_name(n) {
                    p.push(format!(
                        "{key}: the name {n:?} must be 1 to 63 lowercase letters, digits or '-', starting with a letter or digit (it is part of the URL)"
                    ));
                }
                if !RECEIVER_KINDS.contains(&name) {
                    p.push(format!(
                        "{key}.kind: {name:?} is not a receiver kind; use distribution, harbor, acr or generic"
                    ));
                    continue;
                }
            }
        }
        let modes = [
            r.token_file.is_some(),
            r.hmac_secret_file.is_some(),
            r.url_secret_file.is_some(),
            r.insecure_no_auth,
        ]
        .into_iter()
        .filter(|&m| m)
        .count();
        match modes {
            0 => p.push(format!(
                "{key}: the receiver has no authentication; set token_file, hmac_secret_file{} (or insecure_no_auth = true on a network nobody else can reach)",
                if name == "acr" { " or url_secret_file" } else { "" }
            )),
            1 => {}
            _ => p.push(format!(
                "{key}: set exactly one of token_file, hmac_secret_file, url_secret_file and insecure_no_auth"
            )),
        }
        if r.url_secret_file.is_some() && name != "acr" {
            p.push(format!(
                "{key}.url_secret_file: only the acr receiver takes a secret in the URL; use token_file or hmac_secret_file"
            ));
        }
        if r.token_header.is_some() && r.token_file.is_none() {
            p.push(format!("{key}.token_header: only applies with token_file"));
        }
        if r.allow_github_signature.is_some() && r.hmac_secret_file.is_none() {
            p.push(format!(
                "{key}.allow_github_signature: only applies with hmac_secret_file"
            ));
        }
        if let Some(h) = &r.token_header {
            let ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                p.push(format!(
                    "{key}.token_header: {h:?} is not an HTTP header name (letters, digits, '-')"
                ));
            }
        }
        match &r.registry {
            None if name != "generic" => p.push(format!(
                "{key}.registry: required: name the registry host this receiver speaks for (e.g. registry.example.com); events naming another host are refused"
            )),
            None => {}
            Some(host) => check_registry_host(p, &format!("{key}.registry"), host),
        }
        for host in &r.event_hosts {
            check_registry_host(p, &format!("{key}.event_hosts"), host);
        }
        if !r.event_hosts.is_empty() && r.registry.is_none() {
            p.push(format!("{key}.event_hosts: only applies with registry"));
        }
        for glob in &r.repositories {
            if glob.trim().is_empty() || (!glob.contains('/') && !glob.contains("**")) {
                p.push(format!(
                    "{key}.repositories: {glob:?} must be a glob over registry/repository (e.g. registry.example.com/team/**)"
                ));
            }
        }
    }
}

fn check_registry_host(p: &mut Vec<String>, key: &str, host: &str) {
    let ok = !host.is_empty()
        && !host.contains('/')
        && !host.contains("://")
        && !host.chars().any(char::is_whitespace);
    if !ok {
        p.push(format!(
            "{key}: {host:?} must be a registry host such as registry.example.com or 127.0.0.1:5000"
        ));
    }
}

fn valid_receiver_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Two listeners of one process cannot share an address; port 0 (any free port) is
/// never a clash.
fn check_distinct(p: &mut Vec<String>, a: (&str, &str), b: (&str, &str)) {
    let (Ok(x), Ok(y)) = (
        a.1.parse::<std::net::SocketAddr>(),
        b.1.parse::<std::net::SocketAddr>(),
    ) else {
        return;
    };
    if x == y && x.port() != 0 {
        p.push(format!(
            "{}: {} is also {}; give the admin port an address of its own",
            b.0, b.1, a.0
        ));
    }
}

/// Hides a password in a URL before it goes into a message.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A host name or IP address with an optional `:port`, or a CIDR. The registry client
/// parses these for use; this check only lets settings validation report every bad entry
/// at once.
fn is_destination(entry: &str) -> bool {
    use std::net::IpAddr;
    let e = entry.trim();
    if let Some((addr, prefix)) = e.split_once('/') {
        let max = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => 32,
            Ok(IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        return prefix.parse::<u8>().is_ok_and(|p| p <= max);
    }
    if e.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return true;
    }
    let (host, port) = match e.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (e, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ok = host.parse::<IpAddr>().is_ok()
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_settings_come_from_file_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("signet.toml");
        std::fs::write(
            &file,
            "[registry]\nredirect_hosts = [\"blobs.example.com\"]\n[[registry.credentials]]\nhost = \"r.example.com\"\ntoken_file = \"/t\"\nrealm_hosts = [\"auth.example.com\"]\n",
        )
        .expect("write");
        // Env vars are process-global; a prefix unique to this test keeps tests independent.
        std::env::set_var(
            "SIGTEST11_REGISTRY__ALLOWED_HOSTS",
            r#"["10.20.0.0/16", "registry.internal"]"#,
        );
        let env = figment::providers::Env::prefixed("SIGTEST11_").split("__");
        let s: Settings = crate::config::load_from(Some(&file), env).expect("load");
        assert_eq!(
            s.registry.allowed_hosts,
            ["10.20.0.0/16", "registry.internal"]
        );
        assert_eq!(s.registry.redirect_hosts, ["blobs.example.com"]);
        assert_eq!(s.registry.credentials[0].realm_hosts, ["auth.example.com"]);
        assert!(s.validate().is_empty(), "{:?}", s.validate());
    }

    #[test]
    fn destination_settings_are_checked() {
        let mut s = Settings::default();
        s.registry.allowed_hosts = vec![
            "10.0.0.0/8".into(),
            "fd00::/8".into(),
            "192.168.1.5".into(),
            "::1".into(),
            "registry.internal".into(),
            "registry.internal:5000".into(),
            "10.0.0.0/33".into(),
            "not a host".into(),
        ];
        s.registry.redirect_hosts = vec!["blobs.s3.amazonaws.com".into(), "https://x/y".into()];
        let p = s.validate();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("registry.allowed_hosts[6]"), "{p:?}");
        assert!(p[1].starts_with("registry.allowed_hosts[7]"), "{p:?}");
        assert!(p[2].starts_with("registry.redirect_hosts[1]"), "{p:?}");
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::default();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        assert!(s.store_url().starts_with("sqlite://"));
        assert!(s.store_url().ends_with("signet.db"));
    }

    #[test]
    fn every_problem_is_reported() {
        let mut s = Settings {
            bus: "kafka://x".into(),
            store: Some("mysql://u:secret@h/db".into()),
            ..Settings::default()
        };
        s.signer.concurrency = 0;
        s.gateway.listen = "nope".into();
        let p = s.validate();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().all(|m| !m.contains("secret")), "{p:?}");
    }

    #[test]
    fn verifier_settings_are_checked() {
        let mut s = Settings::default();
        s.verifier.cluster = "C 1".into();
        s.verifier.gateway = Some("ftp://x".into());
        s.verifier.tls_cert = Some("/c.pem".into());
        s.verifier.decision_budget = Duration::from_secs(60);
        s.verifier.negative_ttl = Duration::ZERO;
        let p = s.validate();
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p.iter().all(|m| m.starts_with("verifier.")), "{p:?}");
    }

    #[test]
    fn receivers_need_exactly_one_way_to_authenticate() {
        let mut s = Settings::default();
        s.webhooks.distribution = Some(ReceiverSettings::default());
        s.webhooks.harbor = Some(ReceiverSettings {
            token_file: Some("/t".into()),
            hmac_secret_file: Some("/h".into()),
            ..ReceiverSettings::default()
        });
        s.webhooks.generic = Some(ReceiverSettings {
            url_secret_file: Some("/u".into()),
            ..ReceiverSettings::default()
        });
        s.webhooks.acr = Some(ReceiverSettings {
            url_secret_file: Some("/u".into()),
            registry: Some("https://x/y".into()),
            ..ReceiverSettings::default()
        });
        let p = s.validate();
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p[0].starts_with("webhooks.distribution: the receiver has no authentication"));
        assert!(p[1].starts_with("webhooks.distribution.registry: required"));
        assert!(p[2].starts_with("webhooks.harbor: set exactly one of"));
        assert!(p[3].starts_with("webhooks.harbor.registry: required"));
        assert!(p[4].starts_with("webhooks.acr.registry"), "{p:#?}");
        assert!(
            p[5].starts_with("webhooks.generic.url_secret_file"),
            "{p:#?}"
        );

        let mut ok = Settings::default();
        ok.webhooks.distribution = Some(ReceiverSettings {
            insecure_no_auth: true,
            registry: Some("registry.example.com".into()),
            ..ReceiverSettings::default()
        });
        ok.webhooks.generic = Some(ReceiverSettings {
            hmac_secret_file: Some("/h".into()),
            ..ReceiverSettings::default()
        });
        ok.webhooks.receivers.insert(
            "staging".into(),
            ReceiverSettings {
                kind: Some("distribution".into()),
                token_file: Some("/t".into()),
                registry: Some("staging.example.com".into()),
                repositories: vec!["staging.example.com/team/**".into()],
                ..ReceiverSettings::default()
            },
        );
        assert!(ok.validate().is_empty(), "{:?}", ok.validate());
        let names: Vec<_> = ok
            .webhooks
            .receivers()
            .iter()
            .map(|c| (c.kind, c.name, c.key()))
            .collect();
        assert_eq!(
            names,
            [
                ("distribution", None, "webhooks.distribution".to_owned()),
                ("generic", None, "webhooks.generic".to_owned()),
                (
                    "distribution",
                    Some("staging"),
                    "webhooks.receivers.staging".to_owned()
                )
            ]
        );
        assert!(!WebhookSettings::allows_github_signature(
            "generic",
            &ReceiverSettings::default()
        ));
        assert!(WebhookSettings::allows_github_signature(
            "harbor",
            &ReceiverSettings::default()
        ));
    }

    #[test]
    fn named_receivers_are_checked() {
        let mut s = Settings::default();
        s.webhooks.receivers.insert(
            "Bad Name".into(),
            ReceiverSettings {
                kind: Some("distribution".into()),
                token_file: Some("/t".into()),
                registry: Some("r.example".into()),
                ..ReceiverSettings::default()
            },
        );
        s.webhooks.receivers.insert(
            "x".into(),
            ReceiverSettings {
                kind: Some("quay".into()),
                ..ReceiverSettings::default()
            },
        );
        s.webhooks.receivers.insert(
            "y".into(),
            ReceiverSettings {
                kind: Some("generic".into()),
                token_file: Some("/t".into()),
                allow_github_signature: Some(true),
                repositories: vec!["nohost".into()],
                ..ReceiverSettings::default()
            },
        );
        s.webhooks.harbor = Some(ReceiverSettings {
            kind: Some("harbor".into()),
            token_file: Some("/t".into()),
            registry: Some("h.example".into()),
            ..ReceiverSettings::default()
        });
        s.webhooks.timestamp_tolerance = Duration::from_secs(600);
        s.webhooks.replay_window = Duration::from_secs(60);
        let p = s.validate();
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p[0].starts_with("webhooks.replay_window: must be at least"));
        assert!(p[1].starts_with("webhooks.harbor.kind: only receivers under"));
        assert!(p[2].starts_with("webhooks.receivers.Bad Name: the name"));
        assert!(p[3].starts_with("webhooks.receivers.x.kind: \"quay\""));
        assert!(p[4].starts_with("webhooks.receivers.y.allow_github_signature"));
        assert!(p[5].starts_with("webhooks.receivers.y.repositories"));
    }

    #[test]
    fn receivers_and_bus_options_come_from_file_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("signet.toml");
        std::fs::write(
            &file,
            "[webhooks.harbor]\ntoken_file = \"/run/secrets/harbor\"\nregistry = \"harbor.example.com\"\n[bus_options]\nnamespace = \"t1\"\nack_wait = \"2s\"\n",
        )
        .expect("write");
        // Env vars are process-global; a prefix unique to this test keeps tests independent.
        std::env::set_var(
            "SIGTEST9_WEBHOOKS__GENERIC__HMAC_SECRET_FILE",
            "/run/secrets/hmac",
        );
        std::env::set_var("SIGTEST9_SIGNER__SIGN_PLATFORMS", "false");
        std::env::set_var(
            "SIGTEST9_WEBHOOKS__RECEIVERS__STAGING__KIND",
            "distribution",
        );
        std::env::set_var(
            "SIGTEST9_WEBHOOKS__RECEIVERS__STAGING__TOKEN_FILE",
            "/run/secrets/staging",
        );
        std::env::set_var(
            "SIGTEST9_WEBHOOKS__RECEIVERS__STAGING__REGISTRY",
            "staging.example.com",
        );
        std::env::set_var(
            "SIGTEST9_WEBHOOKS__RECEIVERS__STAGING__REPOSITORIES",
            "[\"staging.example.com/team/**\"]",
        );
        let env = figment::providers::Env::prefixed("SIGTEST9_").split("__");
        let s: Settings = crate::config::load_from(Some(&file), env).expect("load");
        assert_eq!(
            s.webhooks.harbor.and_then(|h| h.token_file),
            Some(PathBuf::from("/run/secrets/harbor"))
        );
        assert_eq!(
            s.webhooks.generic.and_then(|g| g.hmac_secret_file),
            Some(PathBuf::from("/run/secrets/hmac"))
        );
        assert!(s.webhooks.distribution.is_none());
        let staging = &s.webhooks.receivers["staging"];
        assert_eq!(staging.kind.as_deref(), Some("distribution"));
        assert_eq!(staging.registry.as_deref(), Some("staging.example.com"));
        assert_eq!(staging.repositories, ["staging.example.com/team/**"]);
        assert_eq!(s.bus_options.namespace.as_deref(), Some("t1"));
        assert_eq!(s.bus_options.ack_wait, Duration::from_secs(2));
        assert!(!s.signer.sign_platforms);
    }

    #[test]
    fn admin_ports_token_and_telemetry_are_checked() {
        let s = Settings::default();
        assert_eq!(s.gateway.admin_listen, "127.0.0.1:9090");
        assert_eq!(s.signer.admin_listen, "127.0.0.1:9091");
        assert_eq!(s.verifier.admin_listen, "127.0.0.1:9092");
        assert!(s.admin_token_file.is_none());
        assert_eq!(s.telemetry.sample_ratio, 1.0);

        let mut bad = Settings::default();
        bad.gateway.admin_listen = "127.0.0.1:7700".into();
        bad.signer.admin_listen = "ninety".into();
        bad.verifier.admin_listen = bad.verifier.listen.clone();
        bad.telemetry.sample_ratio = 2.0;
        bad.telemetry.otlp_endpoint = Some("collector:4318".into());
        let p = bad.validate();
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(p[0].starts_with("gateway.admin_listen: 127.0.0.1:7700 is also gateway.listen"));
        assert!(
            p[1].starts_with("signer.admin_listen: \"ninety\""),
            "{p:#?}"
        );
        assert!(p.iter().any(|m| m.starts_with("telemetry.sample_ratio")));
        assert!(p.iter().any(|m| m.starts_with("telemetry.otlp_endpoint")));
        assert!(p.iter().any(|m| m.starts_with("verifier.admin_listen")));

        // Port 0 (tests, `signet up --listen 127.0.0.1:0`) is never a clash.
        let mut zero = Settings::default();
        zero.gateway.listen = "127.0.0.1:0".into();
        zero.gateway.admin_listen = "127.0.0.1:0".into();
        assert!(zero.validate().is_empty(), "{:?}", zero.validate());
    }

    #[test]
    fn admin_token_and_telemetry_come_from_file_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("admin-token");
        std::fs::write(&token, "s3cret\n").expect("write");
        let file = dir.path().join("signet.toml");
        std::fs::write(
            &file,
            format!(
                "admin_token_file = {:?}\n[telemetry]\notlp_endpoint = \"http://otel:4318/v1/traces\"\n[gateway]\nadmin_listen = \"0.0.0.0:9090\"\n",
                token.display().to_string()
            ),
        )
        .expect("write");
        // Env vars are process-global; a prefix unique to this test keeps tests independent.
        std::env::set_var("SIGTEST10_TELEMETRY__SAMPLE_RATIO", "0.25");
        std::env::set_var("SIGTEST10_SIGNER__ADMIN_LISTEN", "0.0.0.0:9191");
        let env = figment::providers::Env::prefixed("SIGTEST10_").split("__");
        let s: Settings = crate::config::load_from(Some(&file), env).expect("load");
        assert_eq!(
            s.telemetry.otlp_endpoint.as_deref(),
            Some("http://otel:4318/v1/traces")
        );
        assert_eq!(s.telemetry.sample_ratio, 0.25);
        assert_eq!(s.gateway.admin_listen, "0.0.0.0:9090");
        assert_eq!(s.signer.admin_listen, "0.0.0.0:9191");
        let secret = s.admin_port_token().expect("read").expect("set");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "s3cret");
        assert!(Settings::default()
            .admin_port_token()
            .expect("unset")
            .is_none());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:guest@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }
}
