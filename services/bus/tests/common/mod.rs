//! Helpers shared by the bus integration tests: a bus per backend in a namespace of its
//! own, deadlines, and clean-up of what a test declared on the shared brokers.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use signet_bus::{connect_with, Bus, BusOptions, Names};
use signet_store::Store;
use tempfile::TempDir;
use tokio::sync::mpsc;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// How long a test waits for something that should happen well within it.
pub const DEADLINE: Duration = Duration::from_secs(45);
pub const DELAY_BUCKETS: [&str; 5] = ["1s", "5s", "30s", "2m", "10m"];

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
            Backend::Embedded => "the embedded bus on a temporary SQLite store",
            Backend::Amqp => "RabbitMQ",
            Backend::Nats => "NATS with JetStream",
        }
    }
}

/// Options for tests: short waits so redeliveries happen within a test's deadline.
pub fn test_options(namespace: &str) -> BusOptions {
    BusOptions {
        namespace: Some(namespace.to_owned()),
        ack_wait: Duration::from_secs(2),
        reconnect_max_delay: Duration::from_secs(1),
        poll_interval: Duration::from_secs(1),
        ..BusOptions::default()
    }
}

/// A bus in a fresh namespace, with the store it runs on.
pub struct Harness {
    pub backend: Backend,
    pub bus: Bus,
    pub store: Store,
    pub names: Names,
    pub options: BusOptions,
    _dir: TempDir,
}

impl Harness {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    pub async fn with(backend: Backend, tweak: impl FnOnce(&mut BusOptions)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("bus.db").display()))
            .await
            .expect("temporary SQLite store");
        let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
        let mut options = test_options(&namespace);
        tweak(&mut options);
        let names = Names::new(Some(&namespace)).expect("names");
        let bus = open(backend, &store, &options).await;
        Self {
            backend,
            bus,
            store,
            names,
            options,
            _dir: dir,
        }
    }

    /// Another bus on the same namespace and store, as a second process would have.
    pub async fn reopen(&self) -> Bus {
        open(self.backend, &self.store, &self.options).await
    }

    /// Deletes what the test declared on the shared broker.
    pub async fn cleanup(self) {
        match self.backend {
            Backend::Embedded => {}
            Backend::Amqp => delete_amqp(AMQP_URL, &self.names).await,
            Backend::Nats => delete_nats(NATS_URL, &self.names).await,
        }
    }
}

pub async fn open(backend: Backend, store: &Store, options: &BusOptions) -> Bus {
    connect_with(backend.url(), store, options.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot open the bus on {} at {}: {e}",
                backend.service(),
                signet_bus::redact(backend.url())
            )
        })
}

async fn delete_amqp(url: &str, names: &Names) {
    let Ok(conn) = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    let Ok(ch) = conn.create_channel().await else {
        return;
    };
    let mut queues = vec![names.jobs(), names.dead()];
    queues.extend(DELAY_BUCKETS.iter().map(|l| names.delay_queue(l)));
    for q in queues {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for x in [names.dead(), names.events_exchange()] {
        let _ = ch
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
}

async fn delete_nats(url: &str, names: &Names) {
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

/// The next item, or a failure naming what did not arrive.
pub async fn recv<T>(rx: &mut mpsc::Receiver<T>, what: &str) -> T {
    match tokio::time::timeout(DEADLINE, rx.recv()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the channel closed while waiting for {what}"),
        Err(_) => panic!("no {what} within {DEADLINE:?}"),
    }
}

/// Polls `check` until it returns `Some`, or fails naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} did not happen within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// Whether something listens on `port`.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}
