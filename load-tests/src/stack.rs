//! One signet installation on loopback, started the way `docs/operate.md` runs production:
//! `signet-gateway`, `signet-signer` and one or more `signet-verifier` processes, a fresh
//! PostgreSQL database, RabbitMQ or NATS (in a namespace of their own), and a real
//! `docker-registry` whose notifications go to the gateway with the settings
//! `docs/webhooks.md` recommends. The embedded bus lives inside one process, so for it the
//! stack is `signet up` (SQLite, embedded queue, its own verifier).
//!
//! First tokens are minted straight into the new database, as operate.md's bootstrap step
//! does with a throwaway `signet up`; everything else goes through the API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use signet_core::Role;
use signet_store::Store;
use signet_testkit::brokers::{delete_namespace, SHARED_AMQP, SHARED_NATS};
use signet_testkit::postgres::TestDatabase;
use signet_testkit::registry::{NotificationEndpoint, TestRegistry};
use tempfile::TempDir;

use crate::api::Api;
use crate::procs::{binary, free_port, Service};

/// The verifiers' cluster name; policies are bound to it.
pub const CLUSTER: &str = "c1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Embedded,
    Nats,
    Amqp,
}

impl BusKind {
    pub fn name(self) -> &'static str {
        match self {
            BusKind::Embedded => "embedded",
            BusKind::Nats => "nats",
            BusKind::Amqp => "rabbitmq",
        }
    }

    pub fn url(self) -> &'static str {
        match self {
            BusKind::Embedded => "embedded",
            BusKind::Nats => SHARED_NATS,
            BusKind::Amqp => SHARED_AMQP,
        }
    }
}

/// What differs between stacks.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub bus: BusKind,
    /// KMS provider variables (`VAULT_ADDR`, ...) for the gateway and the signer.
    pub kms_env: Vec<(String, String)>,
    /// Signer processes on a broker stack (scale-out); at least one.
    pub signers: usize,
    /// Gateway processes on a broker stack; at least one. The registry notifies every
    /// one of them of every push (one notification endpoint each), so with two, each
    /// push reaches signet twice and must still be signed once.
    pub gateways: usize,
    /// A command the gateways and signers run under (`valgrind --tool=callgrind ...`).
    pub wrap: Vec<String>,
}

impl StackOptions {
    /// One gateway and one signer on `bus`, with the local KMS.
    pub fn on(bus: BusKind) -> Self {
        Self {
            bus,
            kms_env: Vec::new(),
            signers: 1,
            gateways: 1,
            wrap: Vec::new(),
        }
    }
}

/// A verifier process and an HTTPS client that trusts its certificate.
pub struct Verifier {
    pub service: Option<Service>,
    /// `https://127.0.0.1:PORT/validate`.
    pub validate: String,
    /// `https://127.0.0.1:PORT` (which serves `/metrics` too) and the admin port.
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
}

pub struct Stack {
    pub bus: BusKind,
    pub registry: TestRegistry,
    pub api: Api,
    pub namespace: String,
    /// The gateway (or `signet up`), then the signer.
    pub services: Vec<Service>,
    dir: TempDir,
    env: Vec<(String, String)>,
    verifier_token: PathBuf,
    gateway_url: String,
    db: Option<TestDatabase>,
    http: reqwest::Client,
    /// The first signer's `/metrics` (its admin port), on a broker stack.
    signer_metrics: Option<String>,
}

/// Replica `n` of the service binary `bin` (named `bin`, then `bin-2`, ...), under the
/// stack's wrapper.
fn replica(
    options: &StackOptions,
    bin: &str,
    n: usize,
    env: &[(String, String)],
    dir: &Path,
) -> anyhow::Result<Service> {
    let name = match n {
        0 => bin.to_owned(),
        _ => format!("{bin}-{}", n + 1),
    };
    Service::spawn_under(&options.wrap, &name, &binary(bin)?, &[], env, dir)
}

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// The control plane's key URI, shared by the gateway and signer (one data dir).
pub const CONTROL_PLANE_KEY: &str = "local://signet-control-plane";
/// Its public half, in the stack's dir.
const CONTROL_PLANE_PEM: &str = "control-plane.pem";

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let dir = tempfile::Builder::new().prefix("signet-load-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        // The control plane's sealing key, made before any process could race to create
        // it; verifiers pin its public half.
        let control_key = signet_testkit::control_plane_key(&signet_kms::Kms::new(
            signet_kms::KmsConfig::new(&data),
        ))
        .await;
        std::fs::write(
            dir.path().join(CONTROL_PLANE_PEM),
            control_key.public_key().to_pem(),
        )?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let ports = (0..options.gateways.max(1))
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let port = ports[0];
        let gateway_url = format!("http://127.0.0.1:{port}");
        let hook_token = uuid::Uuid::new_v4().simple().to_string();
        let hook_file = dir.path().join("webhook.token");
        write_private(&hook_file, &hook_token)?;
        // docs/webhooks.md's registry settings: 5 s timeout, threshold 5, backoff 1 s,
        // blob events and pulls not reported. One endpoint per gateway.
        let mut registry = TestRegistry::builder();
        for p in &ports {
            registry = registry.notify(
                NotificationEndpoint::new(format!("http://127.0.0.1:{p}/v1/webhooks/distribution"))
                    .header("Authorization", format!("Bearer {hook_token}"))
                    .timeout(Duration::from_secs(5))
                    .threshold(5)
                    .backoff(Duration::from_secs(1))
                    .ignore_media_type("application/octet-stream")
                    .ignore_action("pull"),
            );
        }
        let registry = registry
            .access_log()
            .start()
            .await
            .context("starting docker-registry")?;
        let namespace = format!("load{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut env = vec![
            kv("SIGNET_DATA_DIR", data.display().to_string()),
            kv("SIGNET_BUS", options.bus.url()),
            kv("SIGNET_BUS_OPTIONS__NAMESPACE", namespace.clone()),
            kv("SIGNET_CONTROL_PLANE__SIGNING_KEY", CONTROL_PLANE_KEY),
            // The gateway and signer binaries refuse development keys unless told.
            kv("SIGNET_KMS__ALLOW_LOCAL_KEYS", "true"),
            // The docker-registry is on loopback, which the service binaries refuse unless
            // allowed (`signet up` allows it by itself).
            kv("SIGNET_REGISTRY__ALLOWED_HOSTS", r#"["127.0.0.1"]"#),
            kv(
                "SIGNET_WEBHOOKS__DISTRIBUTION__TOKEN_FILE",
                hook_file.display().to_string(),
            ),
            kv("SIGNET_WEBHOOKS__DISTRIBUTION__REGISTRY", registry.host()),
        ];
        env.extend(options.kms_env.iter().cloned());
        let verifier_token = dir.path().join("verifier.token");
        let mut stack = if options.bus == BusKind::Embedded {
            Self::start_up(
                options.bus,
                dir,
                env,
                registry,
                namespace,
                gateway_url,
                port,
                http,
            )
            .await?
        } else {
            Self::start_apart(
                &options,
                dir,
                env,
                registry,
                namespace,
                gateway_url,
                &ports,
                http,
                verifier_token,
            )
            .await?
        };
        stack.bus = options.bus;
        Ok(stack)
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_up(
        bus: BusKind,
        dir: TempDir,
        mut env: Vec<(String, String)>,
        registry: TestRegistry,
        namespace: String,
        gateway_url: String,
        port: u16,
        http: reqwest::Client,
    ) -> anyhow::Result<Stack> {
        let data = dir.path().join("data");
        env.push(kv("SIGNET_GATEWAY__LISTEN", format!("127.0.0.1:{port}")));
        env.push(kv(
            "SIGNET_GATEWAY__ADMIN_LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        ));
        env.push(kv(
            "SIGNET_VERIFIER__LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        ));
        env.push(kv("SIGNET_VERIFIER__CLUSTER", CLUSTER));
        // The load generator sends reviews from one address far faster than the
        // per-source quota allows.
        env.push(kv("SIGNET_VERIFIER__RATE_LIMIT_VERIFIED", "0"));
        // Never the default admin ports, which another signet on this machine may hold.
        for key in [
            "SIGNET_SIGNER__ADMIN_LISTEN",
            "SIGNET_VERIFIER__ADMIN_LISTEN",
        ] {
            env.push(kv(key, format!("127.0.0.1:{}", free_port()?)));
        }
        let mut up = Service::spawn("signet-up", &binary("signet")?, &["up"], &env, dir.path())?;
        up.ready(&http, &format!("{gateway_url}/healthz")).await?;
        let token = std::fs::read_to_string(data.join("admin.token"))
            .context("reading the admin token signet up wrote")?;
        let api = Api::new(&gateway_url, token.trim())?;
        crate::pin::stack(registry.pid(), [up.pid()]);
        Ok(Stack {
            bus,
            registry,
            api,
            namespace,
            services: vec![up],
            verifier_token: data.join("verifier.token"),
            dir,
            env,
            gateway_url,
            db: None,
            http,
            signer_metrics: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_apart(
        options: &StackOptions,
        dir: TempDir,
        mut env: Vec<(String, String)>,
        registry: TestRegistry,
        namespace: String,
        gateway_url: String,
        ports: &[u16],
        http: reqwest::Client,
        verifier_token: PathBuf,
    ) -> anyhow::Result<Stack> {
        let (bus, signer_count) = (options.bus, options.signers);
        let db = TestDatabase::create().await.context("PostgreSQL")?;
        env.push(kv("SIGNET_STORE", db.url()));
        // Creates the schema, as the gateway would at its start.
        let store = Store::connect(db.url()).await?;
        let admin =
            signet_gateway::auth::issue(&store, "load-admin", Role::Admin, "bootstrap").await?;
        let verifier = signet_gateway::auth::issue_scoped(
            &store,
            "load-verifier",
            Role::Verifier,
            Some(CLUSTER),
            None,
            &[],
            "bootstrap",
        )
        .await?;
        store.close().await;
        write_private(
            &verifier_token,
            secrecy::ExposeSecret::expose_secret(&verifier.secret),
        )?;

        let mut gateways = Vec::new();
        for (n, port) in ports.iter().enumerate() {
            let mut gw_env = env.clone();
            gw_env.push(kv("SIGNET_GATEWAY__LISTEN", format!("127.0.0.1:{port}")));
            gw_env.push(kv(
                "SIGNET_GATEWAY__ADMIN_LISTEN",
                format!("127.0.0.1:{}", free_port()?),
            ));
            let mut gateway = replica(options, "signet-gateway", n, &gw_env, dir.path())?;
            gateway
                .ready(&http, &format!("http://127.0.0.1:{port}/healthz"))
                .await?;
            gateways.push(gateway);
        }

        let mut signers = Vec::new();
        let mut signer_metrics = None;
        for n in 0..signer_count.max(1) {
            let signer_admin = free_port()?;
            signer_metrics.get_or_insert(format!("http://127.0.0.1:{signer_admin}/metrics"));
            let mut signer_env = env.clone();
            signer_env.push(kv(
                "SIGNET_SIGNER__ADMIN_LISTEN",
                format!("127.0.0.1:{signer_admin}"),
            ));
            let mut signer = replica(options, "signet-signer", n, &signer_env, dir.path())?;
            // The signer serves no API; until its admin port is served, its log says when
            // it consumes jobs.
            signer
                .ready_any(
                    &[(&http, &format!("http://127.0.0.1:{signer_admin}/healthz"))],
                    Some("consuming sign jobs"),
                )
                .await?;
            signers.push(signer);
        }
        let mut services = gateways;
        services.extend(signers);
        crate::pin::stack(registry.pid(), services.iter().map(Service::pid));
        Ok(Stack {
            bus,
            registry,
            api: Api::new(
                &gateway_url,
                secrecy::ExposeSecret::expose_secret(&admin.secret),
            )?,
            namespace,
            services,
            verifier_token,
            dir,
            env,
            gateway_url,
            db: Some(db),
            http,
            signer_metrics,
        })
    }

    /// The plain HTTP client the stack reaches its admin ports with.
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The signing process: `signet-signer`, or `signet up` for the embedded bus.
    pub fn signer(&self) -> Option<&Service> {
        self.services.last()
    }

    /// The buckets of the first signer's `signet_sign_latency_seconds` (enqueue to
    /// recorded signature, as the signer measures it), on a broker stack.
    pub async fn sign_latency_buckets(&self) -> Option<Vec<(f64, f64)>> {
        let url = self.signer_metrics.as_ref()?;
        let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
        Some(buckets(&text, "signet_sign_latency_seconds"))
    }

    /// The PostgreSQL URL of a broker stack's store.
    pub fn store_url(&self) -> Option<String> {
        self.db.as_ref().map(|d| d.url().to_owned())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts a `signet-verifier` for cluster [`CLUSTER`] with `extra` settings and
    /// waits until it has its trust bundle. With the embedded bus there is only the
    /// verifier inside `signet up`.
    pub async fn start_verifier(
        &self,
        name: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Verifier> {
        self.start_verifier_under(&[], name, extra).await
    }

    /// [`Stack::start_verifier`] under `prefix` (valgrind, for instance).
    pub async fn start_verifier_under(
        &self,
        prefix: &[String],
        name: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Verifier> {
        anyhow::ensure!(
            self.bus != BusKind::Embedded,
            "a separate verifier needs a broker"
        );
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let tls = signet_verifier::TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        signet_verifier::tls::write_self_signed(&tls, &["127.0.0.1"])?;
        let port = free_port()?;
        let admin = free_port()?;
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            // The bus, and the loopback registry the verifier reads `.sig` manifests from
            // (the service binaries refuse loopback registries unless allowed).
            .filter(|(k, _)| k.starts_with("SIGNET_BUS") || k == "SIGNET_REGISTRY__ALLOWED_HOSTS")
            .cloned()
            .collect();
        env.extend([
            kv("SIGNET_VERIFIER__LISTEN", format!("127.0.0.1:{port}")),
            kv(
                "SIGNET_VERIFIER__ADMIN_LISTEN",
                format!("127.0.0.1:{admin}"),
            ),
            kv("SIGNET_VERIFIER__CLUSTER", CLUSTER),
            kv("SIGNET_VERIFIER__GATEWAY", self.gateway_url.clone()),
            kv(
                "SIGNET_VERIFIER__TOKEN_FILE",
                self.verifier_token.display().to_string(),
            ),
            kv("SIGNET_VERIFIER__TLS_CERT", tls.cert.display().to_string()),
            kv("SIGNET_VERIFIER__TLS_KEY", tls.key.display().to_string()),
            kv(
                "SIGNET_VERIFIER__CONTROL_PLANE_KEYS",
                format!(
                    "[{:?}]",
                    self.dir
                        .path()
                        .join(CONTROL_PLANE_PEM)
                        .display()
                        .to_string()
                ),
            ),
            // The load generator plays the API server without a client certificate, and
            // sends from one address far faster than the per-source quota allows.
            kv("SIGNET_VERIFIER__CLIENT_AUTH", "off"),
            kv("SIGNET_VERIFIER__RATE_LIMIT_VERIFIED", "0"),
        ]);
        env.extend(extra.iter().map(|(k, v)| kv(k, v.clone())));
        let mut service = Service::spawn_under(
            prefix,
            name,
            &binary("signet-verifier")?,
            &[],
            &env,
            self.dir.path(),
        )?;
        if let Some(p) = crate::pin::get() {
            if let Some(pid) = service.pid() {
                crate::pin::pid(pid, p.signet)?;
            }
        }
        let client = https_client(&tls.cert)?;
        let base = format!("https://127.0.0.1:{port}");
        let admin = format!("http://127.0.0.1:{admin}");
        // Ready once a trust bundle is loaded.
        service
            .ready_any(
                &[
                    (&client, &format!("{base}/readyz")),
                    (&self.http, &format!("{admin}/readyz")),
                ],
                None,
            )
            .await?;
        Ok(Verifier {
            service: Some(service),
            validate: format!("{base}/validate"),
            base,
            admin,
            client,
        })
    }

    /// Stops every process and removes what the stack left on the shared broker.
    pub async fn shutdown(mut self) {
        for s in self.services.iter_mut().rev() {
            s.stop();
        }
        delete_namespace(self.bus.url(), &self.namespace).await;
        drop(self.db.take());
    }
}

impl Verifier {
    /// The sum of a Prometheus series' samples whose line starts with `series` (a name
    /// and, optionally, the start of its labels), from the verifier's `/metrics`.
    pub async fn metric(&self, http: &reqwest::Client, series: &str) -> Option<f64> {
        Some(sum_series(&self.metrics(http).await?, series))
    }

    /// The verifier's `/metrics` text (from its HTTPS port, else its admin port).
    pub async fn metrics(&self, http: &reqwest::Client) -> Option<String> {
        for (client, base) in [(&self.client, &self.base), (http, &self.admin)] {
            let Ok(resp) = client.get(format!("{base}/metrics")).send().await else {
                continue;
            };
            if resp.status().is_success() {
                return resp.text().await.ok();
            }
        }
        None
    }
}

/// The cumulative counts of histogram `name`'s buckets (`le` → count, summed over label
/// sets), from a Prometheus text exposition; `+Inf` last.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = line
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let Some(count) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        match out.iter_mut().find(|(l, _)| *l == le) {
            Some((_, c)) => *c += count,
            None => out.push((le, count)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile of what histogram counts `after` gained over `before` (two reads of
/// [`buckets`]), interpolated within its bucket as Prometheus's `histogram_quantile`
/// does; `None` with nothing observed in between.
pub fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let gained: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, c - was)
        })
        .collect();
    let total = gained.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, count) in &gained {
        if *count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (*le, *count);
    }
    None
}

/// Adds up the samples of `series` in a Prometheus text exposition.
pub fn sum_series(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An HTTPS client that trusts only the verifier's self-signed certificate, with enough
/// pooled connections for the highest admission rate.
pub fn https_client(cert: &Path) -> anyhow::Result<reqwest::Client> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem)?])
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(10))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_samples_of_one_series() {
        let text = "# HELP signet_cache_events Verifier cache hits\n\
# TYPE signet_cache_events counter\n\
signet_cache_events_total{cache=\"trust\",event=\"miss\"} 7\n\
signet_cache_events_total{cache=\"trust\",event=\"hit\"} 900\n\
signet_cache_events_total{cache=\"tag\",event=\"miss\"} 2\n";
        assert_eq!(
            sum_series(
                text,
                "signet_cache_events_total{cache=\"trust\",event=\"miss\"}"
            ),
            7.0
        );
        assert_eq!(sum_series(text, "signet_cache_events_total{"), 909.0);
        assert_eq!(sum_series(text, "signet_nothing"), 0.0);
    }
}

#[cfg(test)]
mod quantile_tests {
    use super::*;

    #[test]
    fn server_side_quantiles_come_from_the_buckets_gained_between_two_reads() {
        let read = |counts: [u32; 4]| {
            format!(
                "# TYPE signet_admission_duration_seconds histogram\n\
                 signet_admission_duration_seconds_bucket{{le=\"0.0005\"}} {}\n\
                 signet_admission_duration_seconds_bucket{{le=\"0.001\"}} {}\n\
                 signet_admission_duration_seconds_bucket{{le=\"0.002\"}} {}\n\
                 signet_admission_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
                counts[0], counts[1], counts[2], counts[3]
            )
        };
        let name = "signet_admission_duration_seconds";
        let before = buckets(&read([10, 10, 10, 10]), name);
        // 100 more: 50 under 0.5 ms, 49 more under 1 ms, 1 under 2 ms.
        let after = buckets(&read([60, 109, 110, 110]), name);
        assert_eq!(after.len(), 4);
        let p50 = quantile_between(&before, &after, 0.5).expect("p50");
        assert!((p50 - 0.0005).abs() < 1e-9, "{p50}");
        let p99 = quantile_between(&before, &after, 0.99).expect("p99");
        assert!((p99 - 0.001).abs() < 1e-9, "{p99}");
        assert_eq!(
            quantile_between(&after, &after, 0.99),
            None,
            "nothing observed"
        );
    }
}
