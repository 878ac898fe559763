//! A program from `scripts/tools.sh` run for a test: its output in a log file in its own
//! directory, started and waited for until it answers, killed when dropped.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a tool may take to answer after it started.
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct ToolProcess {
    name: &'static str,
    child: Child,
    dir: tempfile::TempDir,
}

impl ToolProcess {
    /// Starts tool `name` with the arguments `args` gives for its working directory
    /// (config files go there), then polls `ready` until it says yes.
    pub async fn start<A, R, F>(name: &'static str, args: A, ready: R) -> anyhow::Result<Self>
    where
        A: FnOnce(&Path) -> anyhow::Result<Vec<std::ffi::OsString>>,
        R: Fn() -> F,
        F: Future<Output = bool>,
    {
        let bin = crate::tools::find(name)?;
        let dir = tempfile::tempdir()?;
        let args = args(dir.path())?;
        let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
        let child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut process = Self { name, child, dir };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if ready().await {
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("{name} exited with {status}; log:\n{}", process.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready within {READY_WITHIN:?}; log:\n{}",
                    process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the tool printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }
}

impl Drop for ToolProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
