//! Signing rules as globs. Repository globs match `registry/repository` (what cosign
//! writes into `docker-reference`), with `*` within one path component and `**` across
//! components: `registry.example.com/team/*` matches `team/app` but not `team/app/web`,
//! `registry.example.com/team/**` matches both. The tag pattern is a glob over the tag.

use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use signet_core::{ImageRef, SignatureFormat, SigningRule};

/// A glob with `*` inside one path component and `**` across them.
pub(crate) fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Checks a rule's globs; the message names every bad one.
pub fn validate(repositories: &[String], tag_pattern: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    if repositories.is_empty() {
        problems.push(
            "repositories: give at least one glob over registry/repository (e.g. registry.example.com/team/*)"
                .to_owned(),
        );
    }
    for r in repositories {
        if r.trim().is_empty() {
            problems.push("repositories: an empty glob matches nothing".to_owned());
        } else if let Err(e) = glob(r) {
            problems.push(format!("repository glob {r:?} is invalid: {}", e.kind()));
        } else if !r.contains('/') && !r.contains("**") {
            problems.push(format!(
                "repository glob {r:?} has no '/': globs match registry/repository (e.g. {r}/* or **)",
            ));
        }
    }
    if tag_pattern.is_empty() {
        problems.push("tag_pattern: must not be empty; use * for every tag".to_owned());
    } else if let Err(e) = glob(tag_pattern) {
        problems.push(format!(
            "tag pattern {tag_pattern:?} is invalid: {}",
            e.kind()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

struct Compiled {
    name: String,
    witness: String,
    format: Option<SignatureFormat>,
    repositories: GlobSet,
    tag: GlobMatcher,
}

/// The rules that chose one witness for an image.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Their names.
    pub rules: Vec<String>,
    /// Each one's format (`None`: the witness's own).
    pub formats: Vec<Option<SignatureFormat>>,
}

impl Chosen {
    /// Whether any of the rules sets a format of its own.
    pub fn sets_format(&self) -> bool {
        self.formats.iter().any(Option::is_some)
    }

    /// The format that satisfies every rule, given the witness's own: what each asks
    /// for, together (a rule for `bundle` and one for the witness's `cosign` give
    /// `both`).
    pub fn format(&self, witness: SignatureFormat) -> SignatureFormat {
        self.formats
            .iter()
            .map(|f| f.unwrap_or(witness))
            .reduce(SignatureFormat::union)
            .unwrap_or(witness)
    }
}

/// The enabled signing rules, compiled.
pub struct Rules {
    compiled: Vec<Compiled>,
}

impl Rules {
    /// Compiles the enabled rules. A stored rule that does not compile (rules are checked
    /// when written, so only a hand-edited database has one) is logged and left out.
    pub fn new(rules: &[SigningRule]) -> Self {
        let compiled = rules
            .iter()
            .filter(|r| r.enabled)
            .filter_map(|r| match compile(r) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(rule = %r.name, error = %e, "signing rule does not compile; it is skipped");
                    None
                }
            })
            .collect();
        Self { compiled }
    }

    /// The witnesses that sign `image`, each with the rules that chose it. Several rules
    /// naming one witness give one signature, not several.
    pub fn witnesses_for(&self, image: &ImageRef) -> BTreeMap<String, Chosen> {
        let repository = image.repository_ref();
        let tag = image.tag().unwrap_or_default();
        let mut out: BTreeMap<String, Chosen> = BTreeMap::new();
        for rule in &self.compiled {
            if rule.repositories.is_match(&repository) && rule.tag.is_match(tag) {
                let chosen = out.entry(rule.witness.clone()).or_default();
                chosen.rules.push(rule.name.clone());
                chosen.formats.push(rule.format);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }
}

/// The rules last compiled, reused while the store returns the same rules. Compiling
/// builds a regex per glob, about 170,000 instructions per rule (callgrind): every push
/// paid that before, now only the first push after a rule changes does. The store is
/// still read on every push, so a rule written through another gateway applies at once.
#[derive(Default)]
pub struct RulesCache {
    last: std::sync::Mutex<Option<(Vec<SigningRule>, std::sync::Arc<Rules>)>>,
}

impl std::fmt::Debug for RulesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesCache").finish_non_exhaustive()
    }
}

impl RulesCache {
    /// `current` (the rules as the store holds them now), compiled.
    pub fn compiled(&self, current: Vec<SigningRule>) -> std::sync::Arc<Rules> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rules, compiled)) = last.as_ref() {
            if *rules == current {
                return compiled.clone();
            }
        }
        let compiled = std::sync::Arc::new(Rules::new(&current));
        *last = Some((current, compiled.clone()));
        compiled
    }
}

fn compile(r: &SigningRule) -> Result<Compiled, String> {
    let mut set = GlobSetBuilder::new();
    for pattern in &r.repositories {
        set.add(glob(pattern).map_err(|e| e.to_string())?);
    }
    Ok(Compiled {
        name: r.name.clone(),
        witness: r.witness.clone(),
        format: r.format,
        repositories: set.build().map_err(|e| e.to_string())?,
        tag: glob(&r.tag_pattern)
            .map_err(|e| e.to_string())?
            .compile_matcher(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn rule(name: &str, repos: &[&str], tag: &str, witness: &str, enabled: bool) -> SigningRule {
        SigningRule {
            labels: Default::default(),
            name: name.into(),
            repositories: repos.iter().map(|s| (*s).to_owned()).collect(),
            tag_pattern: tag.into(),
            witness: witness.into(),
            enabled,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            format: None,
        }
    }

    #[test]
    fn the_cache_compiles_again_only_when_the_rules_change() {
        let cache = RulesCache::default();
        let one = vec![rule("r", &["reg.io/team/*"], "*", "prod", true)];
        let a = cache.compiled(one.clone());
        let b = cache.compiled(one.clone());
        assert!(
            std::sync::Arc::ptr_eq(&a, &b),
            "the same rules were compiled twice"
        );
        assert_eq!(witnesses(&b, "reg.io/team/app:1"), vec!["prod"]);
        // A changed rule (here: disabled) is compiled anew and applies at once.
        let mut changed = one;
        changed[0].enabled = false;
        let c = cache.compiled(changed);
        assert!(!std::sync::Arc::ptr_eq(&a, &c));
        assert!(witnesses(&c, "reg.io/team/app:1").is_empty());
    }

    fn witnesses(rules: &Rules, image: &str) -> Vec<String> {
        rules
            .witnesses_for(&ImageRef::parse(image).expect("image"))
            .into_keys()
            .collect()
    }

    #[test]
    fn globs_match_registry_repository_and_tag() {
        let rules = Rules::new(&[
            rule("team", &["registry.example.com/team/*"], "*", "prod", true),
            rule(
                "deep",
                &["registry.example.com/platform/**"],
                "v*",
                "prod",
                true,
            ),
            rule("qa", &["registry.example.com/**"], "*-rc*", "qa", true),
            rule("off", &["**"], "*", "nobody", false),
            rule("hub", &["docker.io/library/*"], "*", "hub", true),
        ]);
        assert_eq!(
            witnesses(&rules, "registry.example.com/team/app:v1"),
            ["prod"]
        );
        assert!(
            witnesses(&rules, "registry.example.com/team/app/web:v1").is_empty(),
            "* stays within one path component"
        );
        assert_eq!(
            witnesses(&rules, "registry.example.com/platform/a/b:v2"),
            ["prod"]
        );
        assert!(witnesses(&rules, "registry.example.com/platform/a:latest").is_empty());
        assert_eq!(
            witnesses(&rules, "registry.example.com/team/app:v2-rc1"),
            ["prod", "qa"]
        );
        assert!(witnesses(&rules, "other.example.com/team/app:v1").is_empty());
        assert_eq!(
            witnesses(&rules, "nginx:1.27"),
            ["hub"],
            "docker.io is normalised"
        );
    }

    #[test]
    fn several_rules_naming_one_witness_give_one_signature() {
        let rules = Rules::new(&[
            rule("a", &["r.example/**"], "*", "prod", true),
            rule("b", &["r.example/x/*"], "v*", "prod", true),
        ]);
        let got = rules.witnesses_for(&ImageRef::parse("r.example/x/y:v1").expect("image"));
        assert_eq!(got.len(), 1);
        assert_eq!(got["prod"].rules, ["a", "b"]);
        assert!(!got["prod"].sets_format());
        assert_eq!(
            got["prod"].format(SignatureFormat::Bundle),
            SignatureFormat::Bundle
        );
    }

    #[test]
    fn the_formats_of_several_rules_are_all_written() {
        let with = |format| SigningRule {
            format,
            ..rule("a", &["r.example/**"], "*", "prod", true)
        };
        let chosen = |rules: &[SigningRule]| {
            Rules::new(rules)
                .witnesses_for(&ImageRef::parse("r.example/x/y:v1").expect("image"))
                .remove("prod")
                .expect("prod")
        };
        let one = chosen(&[with(Some(SignatureFormat::Bundle))]);
        assert!(one.sets_format());
        assert_eq!(one.format(SignatureFormat::Cosign), SignatureFormat::Bundle);
        // One rule asks for bundles, another leaves the witness's cosign: both.
        let two = chosen(&[with(Some(SignatureFormat::Bundle)), with(None)]);
        assert_eq!(two.format(SignatureFormat::Cosign), SignatureFormat::Both);
        assert_eq!(two.format(SignatureFormat::Bundle), SignatureFormat::Bundle);
    }

    #[test]
    fn validation_names_every_bad_glob() {
        assert!(validate(&["r.example/team/*".into()], "v*").is_ok());
        assert!(validate(&["**".into()], "*").is_ok());
        let err = validate(&["r.example/[".into(), "nohost".into()], "{a").expect_err("bad");
        assert!(err.contains("\"r.example/[\" is invalid"), "{err}");
        assert!(err.contains("\"nohost\" has no '/'"), "{err}");
        assert!(err.contains("tag pattern \"{a\" is invalid"), "{err}");
        let err = validate(&[], "").expect_err("empty");
        assert!(
            err.contains("at least one glob") && err.contains("use * for every tag"),
            "{err}"
        );
    }
}
