//! The web console in a real browser: Debian's Chromium, driven by playwright-core from
//! `services/gateway/console/tests/console.test.mjs`, against a real `signet up` that a
//! real docker-registry notifies on every push, with an OpenBao dev server whose transit
//! keys (one RSA, one ECDSA that cannot sign) show in the witness key picker.
//!
//! The script signs in, creates witnesses and a policy through the forms, watches a
//! pushed image become a "Trusted Image" and a revoked one "Revoked" without reloading,
//! checks what a viewer may do, forges cross-site requests, runs axe-core on every page
//! and fails on any console error or CSP violation (docs/console.md). It writes a
//! screenshot of every page: into docs/console with `SIGNET_UPDATE_SCREENSHOTS=1`, else
//! into a temporary dir.
//!
//! Node.js 20, /usr/bin/chromium and the script's npm packages must be there
//! (scripts/test.sh installs them); without them the test fails saying what is missing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, ok};
use signet_testkit::emulators::{bao, free_port};
use signet_testkit::registry::{NotificationEndpoint, TestRegistry};
use signet_testkit::signet::SignetUp;

const CHROMIUM: &str = "/usr/bin/chromium";
/// A local development key the key picker lists (created before the browser starts).
const LOCAL_KEY: &str = "local://console-signing";
/// How long the whole browser session may take on a busy two-core machine.
const BROWSER_DEADLINE: Duration = Duration::from_secs(20 * 60);

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn script_dir() -> PathBuf {
    repo_root().join("services/gateway/console/tests")
}

/// Node.js 20 or newer, Chromium, and the npm packages at the versions package.json pins;
/// panics naming what is missing and how to install it.
fn prerequisites() {
    let install = "scripts/test.sh installs what this test needs";
    let version = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!("node is not installed ({e}): install Node.js 20 or newer with npm; {install}")
        });
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "node {version} is too old: the console test needs Node.js 20 or newer"
    );
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: apt-get install chromium ({install})"
    );
    let dir = script_dir();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json")).expect("the script's package.json"),
    )
    .expect("package.json is JSON");
    let deps = manifest["dependencies"]
        .as_object()
        .expect("package.json has dependencies");
    for (name, pinned) in deps {
        let installed =
            std::fs::read_to_string(dir.join("node_modules").join(name).join("package.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| v["version"].as_str().map(str::to_owned));
        assert_eq!(
            installed.as_deref(),
            pinned.as_str(),
            "the npm package {name} is missing or not the pinned version: run `npm ci` in {} ({install})",
            dir.display()
        );
    }
}

/// Runs the browser script; its output is echoed as it comes and returned.
async fn run_script(env: Vec<(&'static str, String)>) -> (bool, String) {
    let mut child = Command::new("node")
        .arg("--test-reporter=spec")
        .arg("console.test.mjs")
        .current_dir(script_dir())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let output = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|stream| {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                println!("{line}");
                let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
                out.push_str(&line);
                out.push('\n');
            }
        })
    })
    .collect();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in readers {
        let _ = r.join();
    }
    let out = output.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match status {
        Some(s) => (s.success(), out),
        None => (
            false,
            format!("{out}\nthe browser script did not finish within {BROWSER_DEADLINE:?}"),
        ),
    }
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    prerequisites();

    // OpenBao: an RSA key a witness can use, and an ECDSA key it cannot.
    let bao = bao();
    let bao_key = format!("console-{}", std::process::id());
    let bao_ecdsa_key = format!("{bao_key}-ecdsa");
    bao.bao_create_key(&bao_key, "rsa-2048");
    bao.bao_create_key(&bao_ecdsa_key, "ecdsa-p256");

    // A registry whose notifications go to the distribution receiver of signet up, which
    // must therefore listen on a port chosen now.
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let hook_token = format!("hook-{}", std::process::id());
    let token_file = tmp.path().join("webhook.token");
    std::fs::write(&token_file, format!("{hook_token}\n")).expect("write the webhook token");
    let registry = TestRegistry::builder()
        .notify(
            NotificationEndpoint::new(format!("http://127.0.0.1:{port}/v1/webhooks/distribution"))
                .header("Authorization", format!("Bearer {hook_token}"))
                .ignore_action("pull")
                .timeout(Duration::from_secs(10))
                .threshold(3)
                .backoff(Duration::from_millis(500)),
        )
        .start()
        .await
        .expect("docker-registry");
    let listen = format!("127.0.0.1:{port}");
    let token_path = token_file.display().to_string();
    let host = registry.host();
    let up = SignetUp::start(
        bin(),
        &[
            ("SIGNET_GATEWAY__LISTEN", &listen),
            ("SIGNET_WEBHOOKS__DISTRIBUTION__TOKEN_FILE", &token_path),
            ("SIGNET_WEBHOOKS__DISTRIBUTION__REGISTRY", &host),
            ("VAULT_ADDR", &bao.url),
            ("VAULT_TOKEN", &bao.token),
            // The sign job of an image that does not exist dies quickly (the Jobs page's
            // Retry button).
            ("SIGNET_SIGNER__MAX_ATTEMPTS", "2"),
            ("SIGNET_SIGNER__RETRY_BASE", "100ms"),
            ("SIGNET_SIGNER__RETRY_MAX", "1s"),
        ],
    )
    .await
    .expect("signet up");

    // The local development key the picker offers: created as signet creates them, on
    // first use, in signet up's data dir.
    let kms = signet_kms::Kms::new(signet_kms::KmsConfig::new(up.data_dir()));
    kms.open(LOCAL_KEY)
        .expect("open the local key")
        .describe()
        .await
        .expect("create the local key");

    let admin = up.admin_token().expect("admin token");
    let viewer = ok(
        &up.cli(&[
            "token",
            "create",
            "--name",
            "console-viewer",
            "--role",
            "viewer",
        ])
        .expect("run signet"),
        "token create --role viewer",
    )
    .trim()
    .to_owned();
    assert!(viewer.starts_with("sgt_"), "a viewer token: {viewer}");

    let update = std::env::var("SIGNET_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1");
    let screenshots = if update {
        repo_root().join("docs/console")
    } else {
        tmp.path().join("screenshots")
    };
    let env = vec![
        ("SIGNET_URL", up.server().to_owned()),
        ("SIGNET_ADMIN_TOKEN", admin),
        ("SIGNET_VIEWER_TOKEN", viewer),
        ("SIGNET_REGISTRY", host.clone()),
        ("SIGNET_BAO_KEY", bao_key),
        ("SIGNET_BAO_ECDSA_KEY", bao_ecdsa_key),
        ("SIGNET_LOCAL_KEY", LOCAL_KEY.to_owned()),
        ("SCREENSHOTS_DIR", screenshots.display().to_string()),
        ("CHROMIUM", CHROMIUM.to_owned()),
        // Playwright's call logs, plain in a test's output.
        ("FORCE_COLOR", "0".to_owned()),
    ];
    let (passed, output) = run_script(env).await;
    // The whole output was printed as it came; the failure names the failed steps.
    let failures = output
        .split_once("✖ failing tests:")
        .map_or(output.as_str(), |(_, f)| f)
        .trim();
    assert!(
        passed,
        "the browser test failed (its whole output is above):\n{}\n--- signet up log (tail) ---\n{}",
        tail(failures, 150),
        tail(&up.log(), 60)
    );
    if update {
        println!("screenshots written to {}", screenshots.display());
    }
}
