//! Secrets come from files (Kubernetes secret mounts) or environment variables, are
//! held in [`SecretString`] so `Debug` prints `[REDACTED]`, and are never logged.

use std::path::Path;

pub use secrecy::{ExposeSecret, SecretString};

/// Why a secret could not be read. The secret itself never appears in a message.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret file {path} cannot be read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    Empty(String),
}

/// Reads a secret from a file, trimming one trailing newline (as `kubectl create secret
/// --from-file` and `echo` leave them).
pub fn read_secret_file(path: &Path) -> Result<SecretString, SecretError> {
    let raw = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(SecretError::Empty(path.display().to_string()));
    }
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_redacts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s");
        std::fs::write(&p, "hunter2\n").expect("write");
        let s = read_secret_file(&p).expect("read");
        assert_eq!(s.expose_secret(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        std::fs::write(&p, "\n").expect("write");
        assert!(matches!(read_secret_file(&p), Err(SecretError::Empty(_))));
        assert!(matches!(
            read_secret_file(&dir.path().join("none")),
            Err(SecretError::Read { .. })
        ));
    }
}
