//! A real signet process for end-to-end tests: `signet up` (or a single service binary)
//! started as a child with its own data dir and free ports, so tests talk to it over the
//! wire exactly as users do, and can SIGKILL it to test crash recovery.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running `signet up`.
pub struct SignetUp {
    child: Option<Child>,
    bin: PathBuf,
    data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    server: String,
    log: PathBuf,
}

impl SignetUp {
    /// Starts `bin up` on a free loopback port with a fresh data dir; `env` adds
    /// `SIGNET_*` settings. Returns once `/healthz` answers.
    pub async fn start(bin: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir().context("creating a data dir")?;
        let mut up = Self {
            child: None,
            bin: bin.to_owned(),
            log: data_dir.path().join("signet.log"),
            data_dir,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            server: String::new(),
        };
        up.spawn().await?;
        Ok(up)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let server_file = self.data_dir.path().join("server");
        let _ = std::fs::remove_file(&server_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the signet log")?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("up")
            .env("SIGNET_DATA_DIR", self.data_dir.path())
            .env("SIGNET_GATEWAY__LISTEN", "127.0.0.1:0")
            .env("SIGNET_VERIFIER__LISTEN", "127.0.0.1:0")
            .env("SIGNET_GATEWAY__ADMIN_LISTEN", "127.0.0.1:0")
            .env("SIGNET_LOG__FORMAT", "text")
            .env("SIGNET_LOG__LEVEL", "info,signet=debug")
            .env_remove("SIGNET_SERVER")
            .env_remove("SIGNET_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} up", self.bin.display()))?;
        self.child = Some(child);
        // A gateway serving HTTPS (SIGNET_GATEWAY__TLS_CERT) is asked with that
        // certificate as the only root.
        let mut http = reqwest::Client::builder();
        if let Some((_, cert)) = self
            .env
            .iter()
            .find(|(k, _)| k == "SIGNET_GATEWAY__TLS_CERT")
        {
            let pem = std::fs::read(cert).context("reading the gateway certificate")?;
            http = http.tls_certs_only([reqwest::Certificate::from_pem(&pem)?]);
        }
        let http = http.build()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = std::fs::read_to_string(&server_file) {
                let server = s.trim().to_owned();
                if http
                    .get(format!("{server}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    self.server = server;
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "signet up exited with {status} before it was ready; log:\n{}",
                        self.log()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("signet up was not ready within 30s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The gateway URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The admission webhook's HTTPS URL (`https://127.0.0.1:PORT`).
    pub fn verifier(&self) -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(self.data_dir.path().join("verifier-url"))
                .context("reading the verifier URL signet up recorded")?
                .trim()
                .to_owned(),
        )
    }

    /// The admin port's URL (`http://127.0.0.1:PORT`: `/metrics`, `/readyz`).
    pub fn admin(&self) -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(self.data_dir.path().join("admin-url"))
                .context("reading the admin URL signet up recorded")?
                .trim()
                .to_owned(),
        )
    }

    /// The verifier's self-signed certificate (PEM), for an HTTPS client to trust.
    pub fn verifier_cert(&self) -> PathBuf {
        self.data_dir.path().join("verifier").join("tls.crt")
    }

    /// The admin token `signet up` wrote on first start.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(self.data_dir.path().join("admin.token"))
                .context("reading the admin token")?
                .trim()
                .to_owned(),
        )
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this instance (server and token come from the data dir).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.bin)
            .args(args)
            .env("SIGNET_DATA_DIR", self.data_dir.path())
            .env_remove("SIGNET_SERVER")
            .env_remove("SIGNET_TOKEN")
            .output()
            .with_context(|| format!("running signet {}", args.join(" ")))
    }

    /// The process id, while it runs (to SIGSTOP it: a verifier that hangs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no drain, no cleanup, like a crash or an OOM kill.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the process to drain and exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("signet is not running")?;
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                child.kill()?;
                bail!("signet did not exit within 60s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same data dir (after [`SignetUp::kill`] or a terminate).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn().await
    }
}

impl Drop for SignetUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
