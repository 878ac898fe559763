//! A real CNCF distribution registry (Debian's `docker-registry`, distribution 2.8.2) for
//! integration tests: its own free loopback port, filesystem storage in a temp dir with
//! deletes enabled, and optionally htpasswd basic auth and a notifications endpoint.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use signet_testkit::registry::{NotificationEndpoint, TestRegistry};
//! let plain = TestRegistry::start().await?;
//! let guarded = TestRegistry::builder()
//!     .basic_auth("alice", "s3cret")
//!     .notify(NotificationEndpoint::new("http://127.0.0.1:9/hook").header("Authorization", "Bearer t"))
//!     .start()
//!     .await?;
//! println!("{} {}", plain.host(), guarded.url());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use tempfile::TempDir;

/// How long a freshly spawned registry may take to answer `GET /v2/`. Generous because the
/// test machines have two cores shared by parallel builds and tests.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How often to retry with a new port when another process took ours between picking it
/// and the registry binding it.
const PORT_ATTEMPTS: usize = 5;
/// bcrypt cost for htpasswd entries. The registry checks the hash on every request, so the
/// minimum cost keeps authenticated tests fast; these passwords protect nothing.
const HTPASSWD_BCRYPT_COST: u32 = 4;

/// A registry notifications endpoint (distribution `notifications.endpoints[]`).
#[derive(Debug, Clone)]
pub struct NotificationEndpoint {
    pub name: String,
    pub url: String,
    /// Header name to values, sent with every notification.
    pub headers: BTreeMap<String, Vec<String>>,
    pub timeout: Duration,
    /// Failures before the registry backs off.
    pub threshold: u32,
    pub backoff: Duration,
    pub ignored_media_types: Vec<String>,
    /// Actions (`pull`, `push`, `mount`, `delete`) the registry does not report.
    pub ignored_actions: Vec<String>,
}

impl NotificationEndpoint {
    /// An endpoint with distribution's defaults: timeout 1s, threshold 10, backoff 1s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            name: "signet".to_owned(),
            url: url.into(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(1),
            threshold: 10,
            backoff: Duration::from_secs(1),
            ignored_media_types: Vec::new(),
            ignored_actions: Vec::new(),
        }
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a value for `name` (headers may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .entry(name.into())
            .or_default()
            .push(value.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn threshold(mut self, threshold: u32) -> Self {
        self.threshold = threshold;
        self
    }

    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn ignore_media_type(mut self, media_type: impl Into<String>) -> Self {
        self.ignored_media_types.push(media_type.into());
        self
    }

    /// Does not report `action` (e.g. `pull`, as docs/webhooks.md recommends for signet).
    pub fn ignore_action(mut self, action: impl Into<String>) -> Self {
        self.ignored_actions.push(action.into());
        self
    }

    fn to_config(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": self.name,
            "url": self.url,
            "headers": self.headers,
            "timeout": go_duration(self.timeout),
            "threshold": self.threshold,
            "backoff": go_duration(self.backoff),
        });
        if !self.ignored_media_types.is_empty() {
            v["ignoredmediatypes"] = serde_json::json!(self.ignored_media_types);
        }
        if !self.ignored_actions.is_empty() {
            v["ignore"] = serde_json::json!({ "actions": self.ignored_actions });
        }
        v
    }
}

/// Options for [`TestRegistry`]; see [`TestRegistry::builder`].
#[derive(Debug, Clone, Default)]
pub struct TestRegistryBuilder {
    notifications: Vec<NotificationEndpoint>,
    users: Vec<(String, String)>,
    access_log: bool,
}

impl TestRegistryBuilder {
    /// Sends the registry's push/pull events to `endpoint` (may be called more than once).
    pub fn notify(mut self, endpoint: NotificationEndpoint) -> Self {
        self.notifications.push(endpoint);
        self
    }

    /// Requires HTTP basic auth; may be called more than once for several users.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((user.into(), password.into()));
        self
    }

    /// Writes one line per request to [`TestRegistry::log`], so a test can count requests.
    pub fn access_log(mut self) -> Self {
        self.access_log = true;
        self
    }

    /// Starts the registry and waits until it answers `GET /v2/`.
    pub async fn start(self) -> anyhow::Result<TestRegistry> {
        let binary = registry_binary()?;
        let dir = registry_tempdir()?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).context("cannot create the test registry's storage dir")?;
        let htpasswd = if self.users.is_empty() {
            None
        } else {
            let path = dir.path().join("htpasswd");
            write_htpasswd(&path, &self.users)?;
            Some(path)
        };
        let mut registry = TestRegistry {
            binary,
            dir,
            storage,
            htpasswd,
            notifications: self.notifications,
            users: self.users,
            access_log: self.access_log,
            secret: random_hex(16),
            port: 0,
            child: None,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            registry.port = free_port()?;
            match registry.spawn_and_wait().await {
                Ok(()) => return Ok(registry),
                Err(SpawnError::PortTaken(e)) => last_err = Some(e),
                Err(SpawnError::Other(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no free port")))
            .context("docker-registry could not bind a free loopback port")
    }
}

/// A running `docker-registry`; killed on drop. Storage lives in a temp dir that is
/// removed on drop, so [`TestRegistry::restart`] keeps every blob and tag.
#[derive(Debug)]
pub struct TestRegistry {
    binary: PathBuf,
    dir: TempDir,
    storage: PathBuf,
    htpasswd: Option<PathBuf>,
    notifications: Vec<NotificationEndpoint>,
    users: Vec<(String, String)>,
    access_log: bool,
    secret: String,
    port: u16,
    child: Option<Child>,
}

enum SpawnError {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl TestRegistry {
    /// An anonymous registry without notifications.
    pub async fn start() -> anyhow::Result<Self> {
        Self::builder().start().await
    }

    pub fn builder() -> TestRegistryBuilder {
        TestRegistryBuilder::default()
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first basic-auth user, if the registry requires auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.users.first().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Where the registry keeps its blobs and manifests.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The registry's combined stdout/stderr so far: errors, and one line per request when
    /// built with [`TestRegistryBuilder::access_log`].
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The registry process's id, while it runs (to pin it to a core in benchmarks).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the registry so that it stops answering ("the registry goes down"). Storage is
    /// kept; [`TestRegistry::restart`] brings it back on the same port.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // kill() fails only when the process has already exited, which is what we want.
            let _ = child.kill();
            child
                .wait()
                .context("cannot reap the stopped docker-registry process")?;
        }
        Ok(())
    }

    /// Stops the registry if it is running, then starts it again on the same port with the
    /// same storage, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        // The port may briefly linger after the kill; retry until the deadline.
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(SpawnError::PortTaken(e)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    drop(e);
                }
                Err(SpawnError::PortTaken(e)) | Err(SpawnError::Other(e)) => {
                    return Err(e.context(format!(
                        "docker-registry could not be restarted on port {}",
                        self.port
                    )))
                }
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn config(&self) -> serde_json::Value {
        let mut config = serde_json::json!({
            "version": "0.1",
            "log": {
                "level": "warn",
                "formatter": "text",
                "accesslog": { "disabled": !self.access_log },
            },
            "storage": {
                "filesystem": { "rootdirectory": self.storage },
                "delete": { "enabled": true },
                "cache": { "blobdescriptor": "inmemory" },
                "maintenance": { "uploadpurging": { "enabled": false } },
            },
            "http": {
                "addr": self.host(),
                // A fixed secret per registry keeps upload state valid across restart().
                "secret": self.secret,
            },
        });
        if let Some(path) = &self.htpasswd {
            config["auth"] = serde_json::json!({
                "htpasswd": { "realm": "signet-test-registry", "path": path }
            });
        }
        if !self.notifications.is_empty() {
            let endpoints: Vec<_> = self.notifications.iter().map(|e| e.to_config()).collect();
            config["notifications"] = serde_json::json!({ "endpoints": endpoints });
        }
        config
    }

    async fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        let other = SpawnError::Other;
        let config_path = self.dir.path().join("config.yml");
        // JSON is valid YAML, and serde_json escapes paths and header values correctly.
        let config = serde_json::to_vec_pretty(&self.config())
            .context("cannot render the test registry config")
            .map_err(other)?;
        fs::write(&config_path, config)
            .context("cannot write the test registry config")
            .map_err(other)?;
        // Appended to, so the log survives restart().
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot create the test registry log file")
            .map_err(other)?;
        let log_err = log
            .try_clone()
            .context("cannot open the test registry log file twice")
            .map_err(other)?;

        let mut cmd = Command::new(&self.binary);
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // distribution lets REGISTRY_* variables override the config file.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start docker-registry ({})", self.binary.display()))
            .map_err(other)?;
        self.child = Some(child);

        match self.wait_ready().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.stop();
                let log = self.log();
                if log.contains("address already in use") {
                    Err(SpawnError::PortTaken(e))
                } else {
                    Err(SpawnError::Other(e.context(format!(
                        "docker-registry did not start; its log:\n{log}"
                    ))))
                }
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            // Plain HTTP only: skip loading the system's CA bundle.
            .tls_certs_only(Vec::new())
            .build()
            .context("cannot build an HTTP client")?;
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("docker-registry exited early with {status}");
                }
            }
            // Any HTTP answer (200, or 401 when auth is on) means it is serving.
            if let Ok(resp) = client.get(&url).send().await {
                let status = resp.status().as_u16();
                if status == 200 || status == 401 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "docker-registry did not answer GET {url} within {}s",
                    READY_DEADLINE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn registry_binary() -> anyhow::Result<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("docker-registry"))
            .find(|p| p.is_file())
    });
    let fallback = PathBuf::from("/usr/bin/docker-registry");
    match from_path {
        Some(p) => Ok(p),
        None if fallback.is_file() => Ok(fallback),
        None => bail!(
            "the docker-registry binary (CNCF distribution) is not installed: \
             run `apt-get install docker-registry`; integration tests need a real OCI registry"
        ),
    }
}

/// Storage on tmpfs when there is one: distribution writes several small files per upload,
/// and on disk that makes each push several times slower.
fn registry_tempdir() -> anyhow::Result<TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("signet-test-registry-");
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return Ok(dir);
        }
    }
    builder
        .tempdir()
        .context("cannot create a temp dir for the test registry")
}

fn write_htpasswd(path: &Path, users: &[(String, String)]) -> anyhow::Result<()> {
    let mut out = String::new();
    for (user, password) in users {
        if user.contains(':') {
            bail!("htpasswd user name {user:?} must not contain ':'");
        }
        let hash = bcrypt::hash(password, HTPASSWD_BCRYPT_COST)
            .context("cannot bcrypt-hash a test registry password")?;
        out.push_str(&format!("{user}:{hash}\n"));
    }
    fs::write(path, out).context("cannot write the test registry htpasswd file")
}

/// Asks the kernel for a free port. Another process may take it before the registry binds
/// it; the caller retries with a new port when the registry reports the address in use.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .context("cannot bind a loopback port to find a free one")?;
    Ok(listener
        .local_addr()
        .context("cannot read the bound port")?
        .port())
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.gen::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_config_matches_distribution_keys() {
        let e = NotificationEndpoint::new("http://127.0.0.1:1/hook")
            .header("Authorization", "Bearer x")
            .timeout(Duration::from_millis(500))
            .threshold(3)
            .backoff(Duration::from_secs(2))
            .ignore_media_type("application/octet-stream")
            .ignore_action("pull");
        let v = e.to_config();
        assert_eq!(v["url"], "http://127.0.0.1:1/hook");
        assert_eq!(v["headers"]["Authorization"][0], "Bearer x");
        assert_eq!(v["timeout"], "500ms");
        assert_eq!(v["threshold"], 3);
        assert_eq!(v["backoff"], "2000ms");
        assert_eq!(v["ignoredmediatypes"][0], "application/octet-stream");
        assert_eq!(v["ignore"]["actions"][0], "pull");
    }

    #[test]
    fn htpasswd_entries_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("htpasswd");
        write_htpasswd(&path, &[("alice".into(), "pw".into())]).expect("write");
        let text = fs::read_to_string(&path).expect("read");
        let (user, hash) = text.trim().split_once(':').expect("user:hash");
        assert_eq!(user, "alice");
        assert!(bcrypt::verify("pw", hash).expect("verify"));
        assert!(write_htpasswd(&path, &[("a:b".into(), "pw".into())]).is_err());
    }
}
