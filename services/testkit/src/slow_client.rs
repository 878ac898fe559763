//! Slow clients, as a slowloris attacker runs them: connections that send half a request
//! line and hold, and the checks that a listener cuts them off. Deadlines are generous
//! upper bounds for an event (the server closing the connection), never a measurement.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a test waits for the server to act. Well past the short timeouts the tests
/// configure, well under the "forever" a server without timeouts takes.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Half a request line: what a slowloris client sends before it stalls.
pub const HALF_REQUEST_LINE: &[u8] = b"GET /healthz HT";

/// Connects to `addr` over plain TCP and sends half a request line.
pub async fn half_request(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    send_half_request(&mut conn).await;
    conn
}

/// Sends half a request line on an open connection (plain or TLS).
pub async fn send_half_request<S: AsyncWrite + Unpin>(conn: &mut S) {
    conn.write_all(HALF_REQUEST_LINE)
        .await
        .unwrap_or_else(|e| panic!("send half a request line: {e}"));
    conn.flush().await.unwrap_or_else(|e| panic!("flush: {e}"));
}

/// Waits until the server closes `conn` (end of stream or reset), reading past whatever
/// it says first (a 408); returns how long that took. Panics naming `what` when the
/// connection is still open after [`DEADLINE`].
pub async fn closed_by_server<S: AsyncRead + Unpin>(conn: &mut S, what: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => panic!("{what}: the server still held the connection after {DEADLINE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Whether `GET /healthz` on a fresh plain connection gets an HTTP answer.
pub async fn answers(addr: SocketAddr) -> bool {
    let Ok(mut conn) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    if conn.write_all(request).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    matches!(
        tokio::time::timeout(DEADLINE, conn.read_to_end(&mut answer)).await,
        Ok(Ok(_))
    ) && answer.starts_with(b"HTTP/1.1 200")
}
