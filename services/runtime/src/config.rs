//! Configuration: defaults, then a TOML file, then `SIGNET_*` environment variables
//! (nested keys use `__`, e.g. `SIGNET_WEBHOOKS__DISTRIBUTION__TOKEN_FILE`). After
//! loading, [`Validate`] checks every setting and all problems are reported together,
//! so an operator fixes a bad deployment in one round trip.

use std::fmt;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Environment variable prefix for every setting.
pub const ENV_PREFIX: &str = "SIGNET_";

/// Checks a loaded configuration; returns one message per bad setting.
pub trait Validate {
    fn validate(&self) -> Vec<String>;
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} cannot be read: {reason}")]
    File { path: String, reason: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

/// Loads `T` from its defaults, an optional TOML file and the environment, then validates it.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    load_from(file, Env::prefixed(ENV_PREFIX).split("__"))
}

/// Top-level keys of `T`'s defaults: environment variables are matched against these, so
/// `SIGNET_SERVER`/`SIGNET_TOKEN` (read by the CLI) are not mistaken for unknown settings
/// while a typo in the file still is.
fn known_keys<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn load_from<T>(file: Option<&Path>, env: Env) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: "no such file".into(),
            });
        }
        figment = figment.merge(Toml::file(path));
    }
    let known = known_keys::<T>();
    let env = env.filter(move |key| {
        let top = key.as_str().split('.').next().unwrap_or_default();
        known.iter().any(|k| k.eq_ignore_ascii_case(top))
    });
    let config: T = figment
        .merge(env)
        .extract()
        .map_err(|e| ConfigError::Invalid(e.into_iter().map(|e| describe(&e)).collect()))?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let source = e
        .metadata
        .as_ref()
        .map(|m| m.name.to_string())
        .unwrap_or_else(|| "defaults".into());
    if key.is_empty() {
        format!("{} (from {source})", e.kind)
    } else {
        format!("{key}: {} (from {source})", e.kind)
    }
}

/// A `host:port` listen address, checked at load time.
pub fn check_socket_addr(problems: &mut Vec<String>, key: &str, value: &str) {
    if value.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!(
            "{key}: {value:?} is not an address like 127.0.0.1:7700"
        ));
    }
}

/// Display helper for a list of problems.
pub struct Problems<'a>(pub &'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        listen: String,
        concurrency: u32,
        nested: Nested,
    }
    #[derive(Debug, Serialize, Deserialize, Default)]
    struct Nested {
        token_file: Option<String>,
    }
    impl Default for Demo {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:7700".into(),
                concurrency: 4,
                nested: Nested::default(),
            }
        }
    }
    impl Validate for Demo {
        fn validate(&self) -> Vec<String> {
            let mut p = Vec::new();
            check_socket_addr(&mut p, "listen", &self.listen);
            if self.concurrency == 0 {
                p.push("concurrency: must be at least 1".into());
            }
            p
        }
    }

    fn env(prefix: &str) -> Env {
        Env::prefixed(prefix).split("__")
    }

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signet.toml");
        std::fs::write(&path, "concurrency = 9\n[nested]\ntoken_file = \"/a\"\n").expect("write");
        // Env vars are process-global; a prefix unique to this test keeps tests independent.
        std::env::set_var("SIGTEST1_LISTEN", "0.0.0.0:1");
        std::env::set_var("SIGTEST1_NESTED__TOKEN_FILE", "/b");
        std::env::set_var("SIGTEST1_SERVER", "belongs to the CLI, not this service");
        let c: Demo = load_from(Some(&path), env("SIGTEST1_")).expect("load");
        assert_eq!(c.concurrency, 9);
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.nested.token_file.as_deref(), Some("/b"));
    }

    #[test]
    fn reports_every_problem_at_once() {
        std::env::set_var("SIGTEST2_LISTEN", "nowhere");
        std::env::set_var("SIGTEST2_CONCURRENCY", "0");
        let err = load_from::<Demo>(None, env("SIGTEST2_")).expect_err("invalid");
        let ConfigError::Invalid(problems) = &err else {
            panic!("{err}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(err.to_string().contains("listen: \"nowhere\""), "{err}");
    }

    #[test]
    fn type_errors_and_unknown_keys_name_the_key() {
        std::env::set_var("SIGTEST3_CONCURRENCY", "lots");
        let err = load_from::<Demo>(None, env("SIGTEST3_")).expect_err("invalid");
        assert!(err.to_string().contains("concurrency"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "concurency = 3\n").expect("write");
        let err = load_from::<Demo>(Some(&path), env("SIGTEST4_")).expect_err("typo");
        assert!(err.to_string().contains("concurency"), "{err}");
        let err = load_from::<Demo>(Some(&dir.path().join("missing.toml")), env("SIGTEST4_"))
            .expect_err("missing");
        assert!(matches!(err, ConfigError::File { .. }));
    }
}
