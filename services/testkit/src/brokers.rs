//! Private brokers a test may stop and start: `nats-server -js` on a free port with its
//! own store directory, and a RabbitMQ node of its own (node name, ports, Mnesia and log
//! directories, Erlang cookie and config in a temp dir). Restarting the shared brokers
//! would break every other test running at the same time; these restart only for the
//! test that owns them. Both are stopped when dropped.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use signet_testkit::brokers::PrivateNats;
//! let mut nats = PrivateNats::start().await?;
//! let url = nats.url(); // nats://127.0.0.1:PORT
//! nats.stop().await?;
//! nats.start_again().await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long a broker may take to start or stop on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(120);

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what} within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A `nats-server -js` of the test's own.
pub struct PrivateNats {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts it on a free port and waits until it listens.
    pub async fn start() -> anyhow::Result<Self> {
        let mut nats = Self {
            port: free_port()?,
            dir: tempfile::tempdir().context("creating a temp dir for nats-server")?,
            child: None,
        };
        nats.start_again().await?;
        Ok(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and store (after [`PrivateNats::stop`]).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("nats.log");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start nats-server (Debian package nats-server)")?;
        self.child = Some(child);
        let port = self.port;
        wait_until(
            &format!(
                "nats-server did not listen on 127.0.0.1:{port} (log: {})",
                log.display()
            ),
            || listening(port),
        )
        .await
    }

    /// Stops it with SIGTERM, as in a rolling restart, and waits until it is gone.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().context("nats-server has no pid")?.to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().await?;
        if !status.success() {
            bail!("could not signal nats-server");
        }
        tokio::time::timeout(DEADLINE, child.wait())
            .await
            .context("nats-server did not exit after SIGTERM")??;
        let port = self.port;
        wait_until("nats-server still listened after it was stopped", || {
            !listening(port)
        })
        .await
    }
}

/// A RabbitMQ node of the test's own.
pub struct PrivateRabbit {
    node: String,
    port: u16,
    dist_port: u16,
    dir: TempDir,
    running: bool,
}

/// Debian's `/usr/sbin` wrappers switch to the rabbitmq user, who cannot read the test's
/// directory; the scripts they wrap run as whoever calls them.
fn rabbit_bin(name: &str) -> PathBuf {
    let direct = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if direct.exists() {
        direct
    } else {
        PathBuf::from(name)
    }
}

impl PrivateRabbit {
    /// Starts a node on free ports and waits until it takes AMQP connections.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temp dir for RabbitMQ")?;
        let port = free_port()?;
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )?;
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "")?;
        let mut node = Self {
            node: format!(
                "signet-test-{}@localhost",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            port,
            dist_port: free_port()?,
            dir,
            running: false,
        };
        node.start_again().await?;
        Ok(node)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(rabbit_bin(program));
        c.env("HOME", d)
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Starts the node again with the same data (after [`PrivateRabbit::stop`]).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let status = self
            .command("rabbitmq-server")
            .arg("-detached")
            .status()
            .await
            .context("cannot start a RabbitMQ node (Debian package rabbitmq-server)")?;
        if !status.success() {
            bail!("rabbitmq-server -detached failed: {status}");
        }
        self.running = true;
        let port = self.port;
        let log = self.dir.path().join("log");
        wait_until(
            &format!(
                "the private RabbitMQ node did not listen on 127.0.0.1:{port} (logs: {})",
                log.display()
            ),
            || listening(port),
        )
        .await
    }

    /// Stops the node (`rabbitmqctl stop`) and waits until it is gone.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let status = self
            .command("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .status()
            .await
            .context("cannot run rabbitmqctl")?;
        if !status.success() {
            bail!("rabbitmqctl stop failed: {status}");
        }
        self.running = false;
        let port = self.port;
        wait_until(
            "the private RabbitMQ node still listened after it was stopped",
            || !listening(port),
        )
        .await
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if self.running {
            // A failed test must not leave a node behind.
            let d = self.dir.path();
            let _ = std::process::Command::new(rabbit_bin("rabbitmqctl"))
                .env("HOME", d)
                .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .args(["-n", &self.node, "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The shared RabbitMQ the test command starts.
pub const SHARED_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The shared NATS with JetStream the test command starts.
pub const SHARED_NATS: &str = "nats://127.0.0.1:4222";

/// Deletes what a bus in `namespace` declared on the broker at `url` (queues and
/// exchanges, or streams), so tests on the shared brokers leave nothing behind. Does
/// nothing for the embedded bus; errors are ignored (the objects may not exist).
pub async fn delete_namespace(url: &str, namespace: &str) {
    let Ok(names) = signet_bus::Names::new(Some(namespace)) else {
        return;
    };
    if url.starts_with("amqp") {
        let Ok(conn) =
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        let Ok(ch) = conn.create_channel().await else {
            return;
        };
        let mut queues = vec![names.jobs(), names.dead()];
        queues.extend(
            ["1s", "5s", "30s", "2m", "10m"]
                .iter()
                .map(|l| names.delay_queue(l)),
        );
        for q in queues {
            let _ = ch
                .queue_delete(
                    q.as_str().into(),
                    lapin::options::QueueDeleteOptions::default(),
                )
                .await;
        }
        for x in [names.dead(), names.events_exchange()] {
            let _ = ch
                .exchange_delete(
                    x.as_str().into(),
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await;
        }
        let _ = conn.close(200, "done".into()).await;
    } else if url.starts_with("nats") {
        let Ok(client) = async_nats::connect(url).await else {
            return;
        };
        let js = async_nats::jetstream::new(client);
        for s in [
            names.jobs_stream(),
            names.dead_stream(),
            names.events_stream(),
        ] {
            let _ = js.delete_stream(s).await;
        }
    }
}
