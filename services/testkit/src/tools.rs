//! The ecosystem's own programs (cosign, kubectl, kube-apiserver, etcd, ...), built from
//! their Go modules at the versions in `scripts/tools.versions` by `scripts/tools.sh`,
//! which `scripts/test.sh` runs first. Tests find them here and fail, never skip, when
//! one is missing.

use std::path::PathBuf;

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
