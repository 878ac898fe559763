//! Test helpers: the real KMS emulators (moto, OpenBao) from signet-testkit, tiny
//! scripted HTTP servers for error shapes, and an independent signature check with
//! `/usr/bin/openssl`.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use signet_core::{PublicKey, SignatureAlgorithm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[allow(unused_imports)] // each test binary uses a different part
pub use signet_testkit::emulators::{bao, http_json, moto, Emulator};

/// Checks a signature with `openssl dgst`, an implementation independent of signet's.
pub fn openssl_verifies(
    public: &PublicKey,
    algorithm: SignatureAlgorithm,
    payload: &[u8],
    signature: &[u8],
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, data, sig) = (
        dir.path().join("pub.pem"),
        dir.path().join("payload"),
        dir.path().join("sig.bin"),
    );
    std::fs::write(&key, public.to_pem()).expect("write key");
    std::fs::write(&data, payload).expect("write payload");
    std::fs::write(&sig, signature).expect("write signature");
    let mut cmd = Command::new("/usr/bin/openssl");
    cmd.args(["dgst", "-sha256", "-verify"]).arg(&key);
    if algorithm == SignatureAlgorithm::RsaPssSha256 {
        cmd.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:auto",
        ]);
    }
    let out = cmd
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .expect("/usr/bin/openssl must be installed to check signatures independently");
    assert!(
        out.status.success(),
        "openssl rejected the {algorithm} signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One request as a scripted server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP server that answers every request with what `respond` returns
/// (status, extra headers, body) and records the requests.
pub struct ScriptedServer {
    pub url: String,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Responder = dyn Fn(&SeenRequest) -> (u16, Vec<(String, String)>, String) + Send + Sync;

pub async fn scripted_server(respond: Arc<Responder>) -> ScriptedServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let respond = Arc::clone(&respond);
            let seen = Arc::clone(&seen2);
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(request.clone());
                let (status, headers, body) = respond(&request);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = stream.write_all(out.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    ScriptedServer {
        url: format!("http://{addr}"),
        seen,
        task,
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<SeenRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(SeenRequest {
        method,
        target,
        headers,
        body,
    })
}

/// A loopback server that accepts connections and never answers.
pub struct SilentServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn silent_server() -> SilentServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    SilentServer {
        url: format!("http://{addr}"),
        task,
    }
}

/// A unique suffix for names created in a shared emulator.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}
