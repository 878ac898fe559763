//! The ecosystem's own programs (cosign, kubectl, kube-apiserver, etcd, ...), built from
//! their Go modules at the versions in `scripts/tools.versions` by `scripts/tools.sh`,
//! which `scripts/test.sh` runs first. Tests find them here and fail, never skip, when
//! one is missing.

use std::path::PathBuf;

/// Where `scripts/tools.sh` links the current binaries: `$SIGNET_TOOLS_BIN`, else
/// `${SIGNET_TOOLS_DIR:-${XDG_CACHE_HOME:-~/.cache}/signet-tools}/bin`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGNET_TOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("SIGNET_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("signet-tools")
        });
    base.join("bin")
}

/// The path of tool `name`; panics with what to run when it is not there.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/tools.sh (scripts/test.sh does) to build the pinned tools",
        path.display()
    );
    path
}
