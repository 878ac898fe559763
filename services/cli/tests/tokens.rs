//! `signet token bootstrap`: the first admin token of a fresh production store, written
//! privately and never printed; refused once any token exists. `signet token create`
//! with a cluster and an expiry, and `signet up`'s own verifier token, bound to its
//! cluster (L1, L7 of the 2026-12 review).

mod common;

use std::process::Command;

use common::{bin, fails, ok};
use signet_testkit::signet::SignetUp;

#[test]
fn bootstrap_mints_the_first_admin_token_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite://{}", dir.path().join("prod.db").display());
    let out_file = dir.path().join("admin.token");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_signet"))
            .args(["token", "bootstrap", "--token-file"])
            .arg(&out_file)
            .env("SIGNET_STORE", &store)
            .env("SIGNET_DATA_DIR", dir.path())
            .output()
            .expect("run signet")
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let token = std::fs::read_to_string(&out_file).expect("token file");
    assert!(token.starts_with("sgt_"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        !printed.contains(token.trim()),
        "the token must not be printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = run();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already has API tokens"));
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("kept"),
        token,
        "the first token is not overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_tokens_name_their_cluster_and_signet_up_replaces_an_unbound_one() {
    let mut up = SignetUp::start(bin(), &[]).await.expect("signet up");
    let out = up
        .cli(&["token", "create", "--name", "edge", "--role", "verifier"])
        .expect("cli");
    let err = fails(&out, "a verifier token without a cluster");
    assert!(err.contains("needs its cluster"), "{err}");
    let out = up
        .cli(&[
            "token",
            "create",
            "--name",
            "edge",
            "--role",
            "verifier",
            "--cluster",
            "edge-ap-2",
            "--expires-in",
            "90d",
        ])
        .expect("cli");
    assert!(ok(&out, "token create --cluster --expires-in").starts_with("sgt_"));
    let list = |up: &SignetUp| -> Vec<serde_json::Value> {
        let out = up.cli(&["--output", "json", "token", "list"]).expect("cli");
        let v: serde_json::Value = serde_json::from_str(&ok(&out, "token list")).expect("json");
        v["tokens"].as_array().cloned().unwrap_or_default()
    };
    let tokens = list(&up);
    let edge = tokens.iter().find(|t| t["name"] == "edge").expect("edge");
    assert_eq!(edge["cluster"], "edge-ap-2");
    let expires = edge["expires_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .expect("expires_at");
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{edge}");
    // signet up's own verifier token is bound to its cluster.
    let own: Vec<_> = tokens
        .iter()
        .filter(|t| t["role"] == "verifier" && t["name"] != "edge")
        .collect();
    assert_eq!(own.len(), 1, "{tokens:?}");
    assert_eq!(own[0]["cluster"], "local");

    // A data dir from before tokens carried a cluster: its kept verifier token has none.
    up.kill().expect("stop signet up");
    let store = signet_store::Store::connect(&format!(
        "sqlite://{}",
        up.data_dir().join("signet.db").display()
    ))
    .await
    .expect("the data dir's store");
    let legacy = signet_core::ApiToken {
        id: uuid::Uuid::new_v4(),
        name: "verifier-up-legacy".into(),
        role: signet_core::Role::Verifier,
        created_at: chrono::Utc::now(),
        revoked: false,
        cluster: None,
        expires_at: None,
        last_used_at: None,
        session_of: None,
        scope: Vec::new(),
    };
    let audit = signet_core::NewAudit::new("test", "token.create", "legacy", serde_json::json!({}));
    store
        .create_token(&legacy, &[0u8; 32], &audit)
        .await
        .expect("a legacy token");
    store.close().await;
    std::fs::write(
        up.data_dir().join("verifier.token"),
        format!("sgt_{}_old\n", legacy.id.simple()),
    )
    .expect("keep the legacy token");
    up.restart().await.expect("signet up again");
    let tokens = list(&up);
    let fresh: Vec<_> = tokens
        .iter()
        .filter(|t| t["role"] == "verifier" && t["cluster"] == "local")
        .collect();
    assert_eq!(
        fresh.len(),
        2,
        "a new token was minted for cluster local: {tokens:?}"
    );
    let kept = std::fs::read_to_string(up.data_dir().join("verifier.token")).expect("token");
    assert!(!kept.contains(&legacy.id.simple().to_string()), "replaced");
}
