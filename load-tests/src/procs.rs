//! signet's binaries as child processes, the way production runs them: one process per
//! service, configured by `SIGNET_*` variables, logging to a file. Each is stopped with
//! SIGTERM (then SIGKILL after a grace period) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

/// How long a service may take to become healthy on a busy 2-core machine (under
/// valgrind, which the instruction counts run services under, a few times longer).
const READY_WITHIN: Duration = Duration::from_secs(120);
/// How long a service may take to drain after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// Where the release binaries are: next to this one (`target/release`), unless
/// `SIGNET_LOAD_BIN_DIR` says otherwise.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SIGNET_LOAD_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot find the load generator's own path")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the load generator's path has no parent directory")
}

/// A binary of the workspace; fails naming the build command when it is missing.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build the services first (`cargo build --release -p signet-cli -p signet-gateway -p signet-signer -p signet-verifier -p signet-load`)",
            path.display()
        );
    }
    Ok(path)
}

/// A free loopback port. Another process may take it before ours binds it; on this
/// machine only the load generator picks ports, so that does not happen in practice.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// One running service.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    /// Starts `bin args` with `env` on top of this process's environment, from which
    /// every `SIGNET_*` variable is removed so that only what the scenario sets applies.
    pub fn spawn(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_under(&[], name, bin, args, env, log_dir)
    }

    /// [`Service::spawn`] with `prefix` in front of the command (for example valgrind
    /// and its options); the process's pid is then the prefix's, which for valgrind is
    /// the program's too (valgrind runs it in its own process).
    pub fn spawn_under(
        prefix: &[String],
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = match prefix.split_first() {
            None => Command::new(bin),
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(bin);
                cmd
            }
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SIGNET_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory now, from `/proc/PID/status`.
    pub fn rss_mib(&self) -> Option<f64> {
        rss_mib(self.pid()?)
    }

    /// The last lines the service logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `url` answers 2xx, failing early when the process exits.
    pub async fn ready(&mut self, http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
        self.ready_any(&[(http, url)], None).await
    }

    /// Waits until one of `urls` answers 2xx or the log shows `marker` (for a service
    /// without an HTTP endpoint of its own), failing early when the process exits.
    pub async fn ready_any(
        &mut self,
        urls: &[(&reqwest::Client, &str)],
        marker: Option<&str>,
    ) -> anyhow::Result<()> {
        let url = urls
            .iter()
            .map(|(_, u)| *u)
            .collect::<Vec<_>>()
            .join(" or ");
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{} exited with {status} before it was ready; its log ends:\n{}",
                        self.name,
                        self.log_tail(30)
                    );
                }
            }
            for (http, url) in urls {
                if let Ok(r) = http.get(*url).timeout(Duration::from_secs(2)).send().await {
                    if r.status().is_success() {
                        return Ok(());
                    }
                }
            }
            if let Some(marker) = marker {
                if std::fs::read_to_string(&self.log).is_ok_and(|l| l.contains(marker)) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer {url} within {READY_WITHIN:?}; its log ends:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, a grace period to drain, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let until = std::time::Instant::now() + STOP_WITHIN;
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmRSS` of a process, in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_from_proc_status() {
        let status =
            "Name:\tsignet-verifier\nVmPeak:\t  900000 kB\nVmRSS:\t   51200 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(50.0));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        let own = rss_mib(std::process::id()).unwrap_or(0.0);
        assert!(own > 0.0, "this test process has resident memory");
    }
}
