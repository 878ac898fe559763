//! Broker restarts mid-stream. Restarting the shared brokers would break every other
//! test, so each test starts a private one: `nats-server -js` on a free port with its
//! own store directory, and a private RabbitMQ node (its own node name, ports, Mnesia
//! and log directories, Erlang cookie and config). Both use the production names.
//!
//! While a consumer works through a batch, the broker is stopped and started again.
//! The test shows that publishing during the outage fails at once with
//! `BusError::Unavailable`, that readiness follows the connection, that publisher and
//! consumer reconnect by themselves, that every job is delivered (none lost) and that no
//! job is acknowledged twice, and that event subscriptions resume.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, free_port, listening};
use signet_bus::{connect_with, Bus, BusError, BusOptions, Event, Message, OutgoingEvent};
use signet_core::EventKind;
use signet_store::Store;
use tempfile::TempDir;
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const BEFORE: usize = 30;
const AFTER: usize = 10;
const PREFETCH: usize = 4;
const BROKER_START: Duration = Duration::from_secs(120);

fn job(n: usize) -> Message {
    let mut headers = BTreeMap::new();
    headers.insert(signet_bus::JOB_ID_HEADER.to_owned(), format!("job-{n}"));
    Message {
        body: format!(
            r#"{{"image":"registry.example/app{n}@sha256:{}","witness":"prod"}}"#,
            "ef".repeat(32)
        )
        .into_bytes(),
        headers,
    }
}

/// What the worker saw, per job id.
#[derive(Default, Debug)]
struct Ledger {
    delivered: HashMap<String, u32>,
    acked: HashMap<String, u32>,
    ack_failed: HashMap<String, u32>,
    in_flight: usize,
}

/// A broker the test may stop and start.
trait PrivateBroker {
    fn url(&self) -> String;
    async fn start(&mut self);
    async fn stop(&mut self);
}

async fn wait_listening(port: u16, what: &str, log: &Path) {
    let deadline = tokio::time::Instant::now() + BROKER_START;
    while !listening(port) {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what} did not listen on 127.0.0.1:{port} within {BROKER_START:?}; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_closed(port: u16, what: &str) {
    let deadline = tokio::time::Instant::now() + BROKER_START;
    while listening(port) {
        if tokio::time::Instant::now() > deadline {
            panic!("{what} still listens on 127.0.0.1:{port} after being stopped");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct NatsServer {
    port: u16,
    dir: TempDir,
    child: Option<tokio::process::Child>,
}

impl NatsServer {
    fn new() -> Self {
        Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        }
    }
}

impl PrivateBroker for NatsServer {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
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
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server (Debian package nats-server): {e}")
            });
        self.child = Some(child);
        wait_listening(self.port, "nats-server", &log).await;
    }

    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM: the server shuts down as in a rolling restart.
        let pid = child.id().expect("nats-server pid").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(status.success(), "could not signal nats-server");
        tokio::time::timeout(BROKER_START, child.wait())
            .await
            .expect("nats-server to exit after SIGTERM")
            .expect("nats-server exit status");
        wait_closed(self.port, "nats-server").await;
    }
}

struct RabbitNode {
    node: String,
    port: u16,
    dist_port: u16,
    dir: TempDir,
    running: bool,
}

/// Debian's `/usr/sbin` wrappers switch to the rabbitmq user, who cannot read the
/// test's directory; the scripts they wrap run as whoever calls them.
fn rabbit_bin(name: &str) -> PathBuf {
    let direct = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if direct.exists() {
        direct
    } else {
        PathBuf::from(name)
    }
}

impl RabbitNode {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .expect("write rabbitmq.conf");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").expect("write rabbitmq-env.conf");
        Self {
            node: format!(
                "signet-bus-{}@localhost",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            port,
            dist_port: free_port(),
            dir,
            running: false,
        }
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
}

impl PrivateBroker for RabbitNode {
    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    async fn start(&mut self) {
        let status = self
            .command("rabbitmq-server")
            .arg("-detached")
            .status()
            .await
            .unwrap_or_else(|e| {
                panic!("cannot start a private RabbitMQ node (Debian package rabbitmq-server): {e}")
            });
        assert!(
            status.success(),
            "rabbitmq-server -detached failed: {status}"
        );
        self.running = true;
        wait_listening(
            self.port,
            "the private RabbitMQ node",
            &self.dir.path().join("log"),
        )
        .await;
    }

    async fn stop(&mut self) {
        let status = self
            .command("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .status()
            .await
            .expect("rabbitmqctl");
        assert!(status.success(), "rabbitmqctl stop failed: {status}");
        self.running = false;
        wait_closed(self.port, "the private RabbitMQ node").await;
    }
}

impl Drop for RabbitNode {
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

fn options() -> BusOptions {
    BusOptions {
        ack_wait: Duration::from_secs(2),
        reconnect_max_delay: Duration::from_secs(1),
        poll_interval: Duration::from_secs(1),
        ..BusOptions::default()
    }
}

async fn connect(url: &str, store: &Store) -> Bus {
    eventually("the bus to connect to the private broker", || async {
        connect_with(url, store, options()).await.ok()
    })
    .await
}

/// Works through a batch while the broker restarts; see the module documentation.
async fn nothing_lost_across_a_restart(broker: &mut impl PrivateBroker) {
    broker.start().await;
    let url = broker.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("bus.db").display()))
        .await
        .expect("store");
    let bus = connect(&url, &store).await;
    for n in 0..BEFORE {
        bus.jobs
            .publish(job(n))
            .await
            .expect("publish before the restart");
    }

    let stop = CancellationToken::new();
    let mut events = bus.events.subscribe(stop.clone()).await.expect("subscribe");
    let mut rx = bus
        .jobs
        .consume(PREFETCH, stop.clone())
        .await
        .expect("consume");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // Each delivery is worked on in a task of its own, as the signer does, and waits
    // for the gate before it is acked: the test decides how many finish before the
    // broker goes, so deliveries are in flight when it does.
    let gate = Arc::new(Semaphore::new(0));
    let worker = {
        let (ledger, gate) = (ledger.clone(), gate.clone());
        tokio::spawn(async move {
            let tasks = TaskTracker::new();
            while let Some(d) = rx.recv().await {
                let (ledger, gate) = (ledger.clone(), gate.clone());
                tasks.spawn(async move {
                    let id = d
                        .message
                        .headers
                        .get(signet_bus::JOB_ID_HEADER)
                        .cloned()
                        .unwrap_or_default();
                    {
                        let mut l = ledger.lock().expect("ledger");
                        *l.delivered.entry(id.clone()).or_default() += 1;
                        l.in_flight += 1;
                    }
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    let result = d.ack().await;
                    let mut l = ledger.lock().expect("ledger");
                    l.in_flight -= 1;
                    let counter = if result.is_ok() {
                        &mut l.acked
                    } else {
                        &mut l.ack_failed
                    };
                    *counter.entry(id).or_default() += 1;
                });
            }
            tasks.close();
            tasks.wait().await;
        })
    };
    gate.add_permits(BEFORE / 3);
    eventually(
        "a third of the batch acked and a full prefetch in flight",
        || async {
            let l = ledger.lock().expect("ledger");
            (l.acked.len() == BEFORE / 3 && l.in_flight == PREFETCH).then_some(())
        },
    )
    .await;

    broker.stop().await;
    eventually("readiness to report the outage", || async {
        bus.jobs.check().await.is_err().then_some(())
    })
    .await;
    let refused = bus
        .jobs
        .publish(job(999))
        .await
        .expect_err("publishing while the broker is down");
    assert!(
        matches!(refused, BusError::Unavailable { .. }),
        "publishing during an outage must fail at once as unavailable, not {refused:?}"
    );
    assert!(bus
        .events
        .publish(
            &OutgoingEvent::encode(&Event::new(
                EventKind::PolicyUpdated,
                "p",
                serde_json::json!({})
            ))
            .expect("encode")
        )
        .await
        .is_err());

    broker.start().await;
    eventually("readiness after the restart", || async {
        bus.jobs.check().await.ok()
    })
    .await;
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for n in BEFORE..BEFORE + AFTER {
        bus.jobs
            .publish(job(n))
            .await
            .expect("publish after the restart");
    }

    let all = BEFORE + AFTER;
    eventually("every job to be delivered and settled", || async {
        let done = {
            let l = ledger.lock().expect("ledger");
            l.delivered.len() == all && l.in_flight == 0
        };
        (done && bus.jobs.depth().await.ok()? == Some(0)).then_some(())
    })
    .await;

    // Events flow again: the subscription resumed by itself. Events published before it
    // is back are missed by design (subscribers re-sync on a revision gap), so publish
    // until one arrives.
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    let resumed = 'resumed: loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event reached the subscriber after the restart"
        );
        let e = Event::new(EventKind::WitnessCreated, "w", serde_json::json!({"n": 1}));
        if bus
            .events
            .publish(&OutgoingEvent::encode(&e).expect("encode"))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        while let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(300), events.recv()).await
        {
            let got = got.unverified().expect("decode");
            if got.id == e.id {
                break 'resumed got;
            }
        }
    };
    assert_eq!(resumed.kind, EventKind::WitnessCreated);

    stop.cancel();
    drop(bus);
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    check_ledger(&ledger.lock().expect("ledger"), all);
    broker.stop().await;
}

/// No job lost, none acknowledged twice, the refused one never delivered.
fn check_ledger(l: &Ledger, all: usize) {
    let expected: Vec<String> = (0..all).map(|n| format!("job-{n}")).collect();
    for id in &expected {
        assert!(l.delivered.contains_key(id), "{id} was lost: {l:?}");
        assert!(
            l.acked.get(id).copied().unwrap_or(0) <= 1,
            "{id} was acked twice: {l:?}"
        );
        if !l.acked.contains_key(id) {
            // Its ack reached the broker but the answer was lost in the shutdown: the
            // broker removed it (depth 0) and never delivered it again.
            assert!(
                l.ack_failed.contains_key(id),
                "{id} was never settled: {l:?}"
            );
        }
    }
    assert!(
        !l.delivered.contains_key("job-999"),
        "the refused publish was delivered"
    );
    eprintln!(
        "restart: {} jobs, {} deliveries, {} acks, {} acks failed during the outage",
        all,
        l.delivered.values().sum::<u32>(),
        l.acked.values().sum::<u32>(),
        l.ack_failed.values().sum::<u32>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_loses_nothing_and_acks_nothing_twice() {
    let mut server = NatsServer::new();
    nothing_lost_across_a_restart(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_loses_nothing_and_acks_nothing_twice() {
    let mut node = RabbitNode::new();
    nothing_lost_across_a_restart(&mut node).await;
}
