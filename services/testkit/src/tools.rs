//! The ecosystem's own programs (cosign, cosign3, notation, kubectl, kube-apiserver, etcd,
//! olareg, ...), built from
//! their Go modules at the versions in `scripts/tools.versions` by `scripts/tools.sh`,
//! which `scripts/test.sh` runs first. Tests find them here and fail, never skip, when
//! one is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `scripts/tools.sh` links the current binaries: `$SIGNET_TOOLS_BIN`, else
/// `${SIGNET_TOOLS_DIR:-${XDG_CACHE_HOME:-~/.cache}/signet-tools}/bin`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGNET_TOOLS_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    std::env::var_os("SIGNET_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("signet-tools"))
        .join("bin")
}

/// The path of tool `name` in [`bin_dir`], or an error saying how to get it.
pub fn find(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.is_file() {
        anyhow::bail!(
            "{name} not found at {}: run scripts/tools.sh (it builds and caches the pinned tools the end-to-end tests need; scripts/test.sh runs it) or set SIGNET_TOOLS_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// [`find`], for tests: panics with the same message when the tool is missing.
pub fn bin(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The real cosign 3 (`cosign3`, the version `scripts/tools.sh` builds beside cosign 2),
/// as [`bin`]`("cosign3")` with its own home: no cache, config or registry credentials of
/// the user's, and no network beyond what the command names. Without network it signs and
/// verifies with a signing config and a trusted root that name no Sigstore service (from
/// `cosign3 signing-config create` and `cosign3 trusted-root create` with no flags), passed
/// as `--signing-config` and `--trusted-root`; `--tlog-upload=false` is refused in cosign 3
/// unless `--use-signing-config=false`. See tests/referrers_registry.rs for the commands.
pub fn cosign3(home: &Path) -> Command {
    let mut cmd = Command::new(bin("cosign3"));
    cmd.env("HOME", home)
        .env("TUF_ROOT", home.join("tuf"))
        .env("SIGSTORE_NO_CACHE", "true")
        .env_remove("COSIGN_EXPERIMENTAL")
        .env_remove("DOCKER_CONFIG");
    cmd
}

/// The real Notary Project CLI (`notation`), as [`bin`]`("notation")` with its own home:
/// its config (keys, certificates, trust stores, trust policy) under `HOME/.config/notation`,
/// and no registry credentials of the user's. See tests/referrers_registry.rs for the
/// commands that sign and verify against a plain-HTTP loopback registry.
pub fn notation(home: &Path) -> Command {
    let mut cmd = Command::new(bin("notation"));
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env_remove("NOTATION_USERNAME")
        .env_remove("NOTATION_PASSWORD")
        .env_remove("NOTATION_EXPERIMENTAL")
        .env_remove("DOCKER_CONFIG");
    cmd
}
