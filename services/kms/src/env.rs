//! Where provider settings and credentials come from: the process environment, or a fixed
//! map (tests, and callers that resolve settings themselves), plus the INI files the cloud
//! CLIs write.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The environment variables providers read. `Fixed` keeps a test (or an embedding
/// program) independent of the process environment, which is shared by every thread.
#[derive(Clone, Default)]
pub enum Environment {
    #[default]
    Process,
    Fixed(BTreeMap<String, String>),
}

impl Environment {
    /// A fixed environment from `(name, value)` pairs.
    pub fn fixed<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        Self::Fixed(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The variable's value; unset and empty are the same, as in most CLIs.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match self {
            Self::Process => std::env::var(name).ok(),
            Self::Fixed(vars) => vars.get(name).cloned(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    pub(crate) fn home(&self) -> Option<PathBuf> {
        self.get("HOME").map(PathBuf::from)
    }
}

impl fmt::Debug for Environment {
    // Values may be secrets (VAULT_TOKEN, AWS_SECRET_ACCESS_KEY): only names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Process => f.write_str("Environment::Process"),
            Self::Fixed(vars) => f
                .debug_tuple("Environment::Fixed")
                .field(&vars.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// One `[section]` of an INI file, keys lowercased.
pub(crate) type IniSection = BTreeMap<String, String>;

/// Parses the INI dialect of `~/.aws/credentials`, `~/.aws/config` and
/// `~/.alibabacloud/credentials`: `[section]` headers, `key = value` lines, `#` and `;`
/// comment lines. Written here because those files use only this subset, and the
/// general INI crates differ from the CLIs on details that matter here (inline comments,
/// case of keys, duplicate sections merge).
pub(crate) fn parse_ini(text: &str) -> BTreeMap<String, IniSection> {
    let mut sections: BTreeMap<String, IniSection> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_owned();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, line.split_once('=')) else {
            continue;
        };
        if let Some(s) = sections.get_mut(section) {
            s.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_keys_and_comments() {
        let ini = parse_ini(
            "# comment\n[default]\naws_access_key_id = AKIA1\nAWS_Secret_Access_Key=s1 \n; c\n\n[profile dev]\nregion = eu-west-1\n[default]\naws_session_token = t\n",
        );
        let d = &ini["default"];
        assert_eq!(d["aws_access_key_id"], "AKIA1");
        assert_eq!(d["aws_secret_access_key"], "s1");
        assert_eq!(d["aws_session_token"], "t");
        assert_eq!(ini["profile dev"]["region"], "eu-west-1");
        assert!(parse_ini("key = outside any section").is_empty());
    }

    #[test]
    fn fixed_environment_hides_values_in_debug() {
        let env = Environment::fixed([("VAULT_TOKEN", "s.supersecret"), ("EMPTY", " ")]);
        assert_eq!(env.get("VAULT_TOKEN").as_deref(), Some("s.supersecret"));
        assert_eq!(env.get("EMPTY"), None);
        assert_eq!(env.get("UNSET"), None);
        let debug = format!("{env:?}");
        assert!(debug.contains("VAULT_TOKEN"), "{debug}");
        assert!(!debug.contains("supersecret"), "{debug}");
    }
}
