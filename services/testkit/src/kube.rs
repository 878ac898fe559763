//! A real Kubernetes control plane on loopback for end-to-end tests: etcd,
//! kube-apiserver and kube-controller-manager as child processes, with a PKI generated
//! for the run (cluster CA, API server serving certificate, service-account key), token
//! users from a `tokens.csv`, an admin kubeconfig, and `kubectl` commands bound to it.
//! There is no scheduler and no kubelet: Deployments get ReplicaSets and Pods, and Pods
//! stay Pending. What is tested is what the API server does: authentication,
//! authorization and admission (webhooks included).
//!
//! The binaries come from `scripts/tools.sh` (`$SIGNET_TOOLS_BIN`, default
//! `~/.cache/signet-tools/bin`); a missing one is an error naming the script, never a
//! skip. Every process is killed, and the temp dir removed, on drop.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::tools::{bin_dir as tools_bin, find as tool};

/// The Helm binary: `$SIGNET_HELM`, or the Helm 4 that `scripts/check-helm.sh` (and
/// `scripts/test.sh`) install in the tool cache.
pub fn helm() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("SIGNET_HELM").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => tools_bin()
            .parent()
            .map(|d| d.join("helm-4.1.4").join("helm"))
            .unwrap_or_default(),
    };
    if !path.is_file() {
        bail!(
            "helm not found at {}: run scripts/check-helm.sh --install (scripts/test.sh does) or set SIGNET_HELM",
            path.display()
        );
    }
    Ok(path)
}

/// `N` distinct free loopback ports (bound together, then released: another process
/// may still take one before ours binds it, so [`KubeCluster`] retries its start when a
/// process reports the address in use).
pub fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

/// A certificate authority that issues the run's certificates.
pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<PathBuf> {
        std::fs::write(path, &self.pem).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.to_owned())
    }

    /// A serving certificate for `names` (DNS names or IP addresses), written to
    /// `dir/<stem>.crt` and `dir/<stem>.key`.
    pub fn server(&self, names: &[&str], dir: &Path, stem: &str) -> anyhow::Result<CertFiles> {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or(stem),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, dir, stem)
    }

    /// A client certificate for `common_name` (and `organizations`, which Kubernetes
    /// reads as groups).
    pub fn client(
        &self,
        common_name: &str,
        organizations: &[&str],
        dir: &Path,
        stem: &str,
    ) -> anyhow::Result<CertFiles> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        for o in organizations {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, dir, stem)
    }

    fn issue(
        &self,
        mut params: rcgen::CertificateParams,
        dir: &Path,
        stem: &str,
    ) -> anyhow::Result<CertFiles> {
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        write_private(&files.key, key.serialize_pem().as_bytes())?;
        Ok(files)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new();
    f.create(true).write(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        f.mode(0o600);
    }
    f.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// A user the API server knows by a bearer token (`--token-auth-file`).
#[derive(Debug, Clone)]
pub struct TokenUser {
    pub name: String,
    pub token: String,
    pub groups: Vec<String>,
}

/// How to start the cluster.
#[derive(Debug, Default, Clone)]
pub struct KubeClusterBuilder {
    users: Vec<TokenUser>,
    webhook_identities: Vec<(String, CertFiles)>,
}

impl KubeClusterBuilder {
    /// A token user besides `admin` (group `system:masters`); give it rights with RBAC.
    pub fn user(mut self, name: &str, groups: &[&str]) -> Self {
        self.users.push(TokenUser {
            name: name.to_owned(),
            token: format!(
                "{}-{}",
                name.replace(':', "-"),
                uuid::Uuid::new_v4().simple()
            ),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        });
        self
    }

    /// The client certificate the API server presents to admission webhooks at `host`
    /// (`HOST:PORT` of a `clientConfig.url`, `<service>.<namespace>.svc:443`, or `*`):
    /// written into the kubeconfig an `AdmissionConfiguration` names for the
    /// ValidatingAdmissionWebhook and MutatingAdmissionWebhook plugins.
    pub fn webhook_client_cert(mut self, host: &str, cert: CertFiles) -> Self {
        self.webhook_identities.push((host.to_owned(), cert));
        self
    }

    pub async fn start(self) -> anyhow::Result<KubeCluster> {
        KubeCluster::start(self).await
    }
}

/// A running control plane. Killed on drop.
pub struct KubeCluster {
    dir: tempfile::TempDir,
    processes: Vec<(&'static str, Child)>,
    server: String,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    users: Vec<TokenUser>,
    ca: PathBuf,
    /// How long the cluster took from the first process to a ready API server and a
    /// working controller manager.
    pub startup: Duration,
}

impl KubeCluster {
    pub fn builder() -> KubeClusterBuilder {
        KubeClusterBuilder::default()
    }

    async fn start(b: KubeClusterBuilder) -> anyhow::Result<Self> {
        // A free port can be taken by another process between our pick and the bind
        // (other tests run beside this one): start again on new ports.
        let mut attempt = 1;
        loop {
            match Self::try_start(b.clone()).await {
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn try_start(b: KubeClusterBuilder) -> anyhow::Result<Self> {
        let started = Instant::now();
        let etcd = tool("etcd")?;
        let apiserver = tool("kube-apiserver")?;
        let kcm = tool("kube-controller-manager")?;
        let kubectl = tool("kubectl")?;
        let dir = tempfile::Builder::new().prefix("signet-kube-").tempdir()?;
        let d = dir.path().to_owned();

        // PKI: one cluster CA, the API server's serving certificate, the service-account
        // signing key.
        let ca = Ca::new("signet-test-cluster-ca")?;
        let ca_file = ca.write(&d.join("ca.crt"))?;
        let serving = ca.server(
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "10.96.0.1",
            ],
            &d,
            "apiserver",
        )?;
        let sa = rcgen::KeyPair::generate()?;
        write_private(&d.join("sa.key"), sa.serialize_pem().as_bytes())?;
        std::fs::write(d.join("sa.pub"), sa.public_key_pem())?;

        // Users: admin and the controller manager are cluster admins.
        let mut users = vec![
            TokenUser {
                name: "admin".into(),
                token: format!("admin-{}", uuid::Uuid::new_v4().simple()),
                groups: vec!["system:masters".into()],
            },
            TokenUser {
                name: "system:kube-controller-manager".into(),
                token: format!("kcm-{}", uuid::Uuid::new_v4().simple()),
                groups: vec!["system:masters".into()],
            },
        ];
        users.extend(b.users);
        let tokens: String = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                format!(
                    "{},{},uid-{i},\"{}\"\n",
                    u.token,
                    u.name,
                    u.groups.join(",")
                )
            })
            .collect();
        write_private(&d.join("tokens.csv"), tokens.as_bytes())?;

        let [etcd_client, etcd_peer, api_port, kcm_port] = free_ports::<4>()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = d.join("admin.kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&server, &ca_file, &users, "admin"),
        )?;
        let kcm_kubeconfig = d.join("kcm.kubeconfig");
        std::fs::write(
            &kcm_kubeconfig,
            kubeconfig_yaml(&server, &ca_file, &users, "system:kube-controller-manager"),
        )?;

        let mut cluster = Self {
            dir,
            processes: Vec::new(),
            server,
            kubeconfig,
            kubectl,
            users,
            ca: ca_file,
            startup: Duration::ZERO,
        };

        let etcd_client_url = format!("http://127.0.0.1:{etcd_client}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer}");
        cluster.spawn(
            "etcd",
            Command::new(etcd).args([
                "--name",
                "signet-test",
                "--data-dir",
                &path_str(&d.join("etcd")),
                "--listen-client-urls",
                &etcd_client_url,
                "--advertise-client-urls",
                &etcd_client_url,
                "--listen-peer-urls",
                &etcd_peer_url,
                "--initial-advertise-peer-urls",
                &etcd_peer_url,
                "--initial-cluster",
                &format!("signet-test={etcd_peer_url}"),
                "--listen-metrics-urls",
                "",
                "--log-level",
                "warn",
            ]),
        )?;

        let mut api_args = vec![
            format!("--etcd-servers={etcd_client_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            // The kubernetes Service's endpoints cannot be 127.0.0.1.
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", path_str(&d.join("apiserver-pki"))),
            format!("--tls-cert-file={}", path_str(&serving.cert)),
            format!("--tls-private-key-file={}", path_str(&serving.key)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", path_str(&d.join("sa.pub"))),
            format!(
                "--service-account-signing-key-file={}",
                path_str(&d.join("sa.key"))
            ),
            "--service-cluster-ip-range=10.96.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            format!("--token-auth-file={}", path_str(&d.join("tokens.csv"))),
            "--profiling=false".into(),
        ];
        if !b.webhook_identities.is_empty() {
            let webhook_kubeconfig = d.join("webhook.kubeconfig");
            let mut users = String::from("apiVersion: v1\nkind: Config\nusers:\n");
            for (host, cert) in &b.webhook_identities {
                users.push_str(&format!(
                    "  - name: {}\n    user:\n      client-certificate: {}\n      client-key: {}\n",
                    yaml_str(host),
                    yaml_str(&path_str(&cert.cert)),
                    yaml_str(&path_str(&cert.key)),
                ));
            }
            std::fs::write(&webhook_kubeconfig, users)?;
            let plugin = |name: &str| {
                format!(
                    "  - name: {name}\n    configuration:\n      apiVersion: apiserver.config.k8s.io/v1\n      kind: WebhookAdmissionConfiguration\n      kubeConfigFile: {}\n",
                    yaml_str(&path_str(&webhook_kubeconfig))
                )
            };
            let admission = format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
                plugin("ValidatingAdmissionWebhook"),
                plugin("MutatingAdmissionWebhook")
            );
            let file = d.join("admission-config.yaml");
            std::fs::write(&file, admission)?;
            api_args.push(format!(
                "--admission-control-config-file={}",
                path_str(&file)
            ));
        }
        cluster.spawn("kube-apiserver", Command::new(apiserver).args(&api_args))?;
        cluster.wait_ready().await?;

        cluster.spawn(
            "kube-controller-manager",
            Command::new(kcm).args([
                &format!("--kubeconfig={}", path_str(&kcm_kubeconfig)),
                &format!("--authentication-kubeconfig={}", path_str(&kcm_kubeconfig)),
                &format!("--authorization-kubeconfig={}", path_str(&kcm_kubeconfig)),
                "--authentication-skip-lookup",
                "--bind-address=127.0.0.1",
                &format!("--secure-port={kcm_port}"),
                &format!("--cert-dir={}", path_str(&d.join("kcm-pki"))),
                "--leader-elect=false",
                "--use-service-account-credentials",
                &format!(
                    "--service-account-private-key-file={}",
                    path_str(&d.join("sa.key"))
                ),
                &format!("--root-ca-file={}", path_str(&cluster.ca)),
                "--service-cluster-ip-range=10.96.0.0/24",
                "--profiling=false",
            ]),
        )?;
        // The controller manager works once the service-account controller has given the
        // default namespace its ServiceAccount (Pods need one to be admitted).
        cluster
            .wait_for_default_service_account("default", Duration::from_secs(60))
            .await?;
        cluster.startup = started.elapsed();
        Ok(cluster)
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Webhook calls to 127.0.0.1 go direct, whatever the machine's proxy is.
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.processes.push((name, child));
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&self.ca)?)?])
            .timeout(Duration::from_secs(5))
            .build()?;
        let token = self.token("admin")?.to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last;
        loop {
            match http
                .get(format!("{}/readyz", self.server))
                .bearer_auth(&token)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            self.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver was not ready within 60s ({last}); logs:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails with the logs when a process of the cluster has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.processes {
            if let Some(status) = child.try_wait()? {
                let name = *name;
                bail!("{name} exited with {status}; logs:\n{}", self.logs());
            }
        }
        Ok(())
    }

    /// Waits until namespace `ns` has its `default` ServiceAccount (made by the
    /// controller manager; the API server refuses Pods without it).
    pub async fn wait_for_default_service_account(
        &mut self,
        ns: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self
                .kubectl()
                .args(["get", "serviceaccount", "default", "-n", ns, "-o", "name"])
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "namespace {ns} has no default ServiceAccount after {timeout:?} ({}); logs:\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates namespace `ns` and waits for its default ServiceAccount.
    pub async fn create_namespace(&mut self, ns: &str) -> anyhow::Result<()> {
        let out = self.kubectl().args(["create", "namespace", ns]).output()?;
        if !out.status.success() {
            bail!(
                "kubectl create namespace {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.wait_for_default_service_account(ns, Duration::from_secs(30))
            .await
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The cluster CA (PEM file) the API server's certificate chains to.
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// The admin kubeconfig (every token user is in it; `kubectl --user NAME`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster's working directory (logs, PKI, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bearer token of a token user.
    pub fn token(&self, user: &str) -> anyhow::Result<&str> {
        self.users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.token.as_str())
            .with_context(|| format!("no token user {user}"))
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`, as the admin.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// `kubectl` as the token user `user`.
    pub fn kubectl_as(&self, user: &str) -> Command {
        let mut c = self.kubectl();
        c.args(["--user", user]);
        c
    }

    /// Runs `kubectl args...` with `stdin` as its input (a manifest for `-f -`).
    pub fn kubectl_stdin(&self, user: &str, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
        let mut c = self.kubectl_as(user);
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().context("running kubectl")?;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(stdin.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// The last lines of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!(
                "--- {name} (last {} lines)\n{}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        // The controller manager and the API server first, etcd last.
        for (_, child) in self.processes.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A YAML double-quoted string (JSON's escaping is valid YAML).
fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn kubeconfig_yaml(server: &str, ca: &Path, users: &[TokenUser], current: &str) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: signet-test\n    cluster:\n      server: {}\n      certificate-authority: {}\nusers:\n",
        yaml_str(server),
        yaml_str(&path_str(ca))
    );
    for u in users {
        y.push_str(&format!(
            "  - name: {}\n    user:\n      token: {}\n",
            yaml_str(&u.name),
            yaml_str(&u.token)
        ));
    }
    y.push_str(&format!(
        "contexts:\n  - name: signet-test\n    context:\n      cluster: signet-test\n      user: {}\n      namespace: default\ncurrent-context: signet-test\n",
        yaml_str(current)
    ));
    y
}
