//! `signet token bootstrap`: the first admin token of a fresh production store, written
//! privately and never printed; refused once any token exists.

use std::process::Command;

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
