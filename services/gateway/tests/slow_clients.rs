//! Slowloris against the gateway's listener (the Internet-facing webhook endpoint) and an
//! admin port (security review M3). The attacker opens connections, sends half a request
//! line and holds them, to run the server out of connections and tasks. Before the fix
//! neither listener ever closed such a connection and neither had a connection cap; now
//! a half-sent request is cut off after `http.header_read_timeout` and a connection over
//! `http.max_connections` is closed at once. The tests set short timeouts and a small
//! cap; the deadlines they wait under are generous upper bounds.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use signet_runtime::settings::HttpLimits;
use signet_testkit::slow_client::{answers, closed_by_server, half_request, DEADLINE};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, DropGuard};

fn limits(header_read_timeout: Duration, max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_read_timeout,
        max_connections,
        ..HttpLimits::default()
    }
}

/// The gateway on a free loopback port with `limits`.
async fn gateway(limits: HttpLimits) -> (SocketAddr, DropGuard, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let bus = signet_bus::connect("embedded", &store).await.expect("bus");
    let state = common::state(dir.path(), &store, bus).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    tokio::spawn(signet_gateway::serve(
        listener,
        state,
        limits,
        None,
        shutdown.clone(),
    ));
    (addr, shutdown.drop_guard(), dir)
}

/// An admin port on a free loopback port with `limits`.
async fn admin(limits: HttpLimits) -> (SocketAddr, DropGuard) {
    let shutdown = CancellationToken::new();
    let ready: signet_runtime::admin::ReadinessCheck = Arc::new(|| Box::pin(async { Ok(()) }));
    let (addr, _) = signet_runtime::admin::spawn(
        "test.admin_listen",
        "127.0.0.1:0",
        ready,
        None,
        None,
        &limits,
        shutdown.clone(),
    )
    .await
    .expect("admin port");
    (addr, shutdown.drop_guard())
}

async fn half_sent_request_is_cut_off(addr: SocketAddr, what: &str) {
    assert!(answers(addr).await, "{what} serves a complete request");
    let mut conn = half_request(addr).await;
    let took = closed_by_server(&mut conn, what).await;
    eprintln!("{what}: half-sent request closed after {took:?} (header timeout 1s)");
}

/// `max_connections` is 2: two slow clients hold their connections, a third connection
/// is closed at once, and once a slow client leaves a request is served again.
async fn connections_over_the_cap_are_refused(addr: SocketAddr, what: &str) {
    let mut held = vec![half_request(addr).await, half_request(addr).await];
    let mut third = TcpStream::connect(addr).await.expect("connect");
    closed_by_server(&mut third, &format!("{what}: the third connection")).await;
    held.pop();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !answers(addr).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: a freed connection slot was never reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_cuts_off_a_half_sent_request() {
    let (addr, _stop, _dir) = gateway(limits(Duration::from_secs(1), 4096)).await;
    half_sent_request_is_cut_off(addr, "gateway").await;
}

/// A client that connects and sends nothing at all (hyper waits for a first byte without
/// a timer) is cut off after the header timeout too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_cuts_off_a_silent_connection() {
    let (addr, _stop, _dir) = gateway(limits(Duration::from_secs(1), 4096)).await;
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let took = closed_by_server(&mut conn, "gateway, a silent connection").await;
    eprintln!("gateway: silent connection closed after {took:?} (header timeout 1s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refuses_connections_over_the_cap() {
    let (addr, _stop, _dir) = gateway(limits(Duration::from_secs(60), 2)).await;
    connections_over_the_cap_are_refused(addr, "gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_cuts_off_a_half_sent_request() {
    let (addr, _stop) = admin(limits(Duration::from_secs(1), 4096)).await;
    half_sent_request_is_cut_off(addr, "admin port").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_refuses_connections_over_the_cap() {
    let (addr, _stop) = admin(limits(Duration::from_secs(60), 2)).await;
    connections_over_the_cap_are_refused(addr, "admin port").await;
}
