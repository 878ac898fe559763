//! Image patterns: how a policy's exemptions name images. A pattern is read like an
//! image reference, `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, and each part is matched
//! against the same part of the parsed, normalised image, never against the string a
//! pod spec happens to carry:
//!
//! - the registry glob matches the registry host only (case-insensitive): `*.k8s.io`
//!   matches `registry.k8s.io` but not `attacker.example`, whatever follows it;
//! - the repository glob has `*` (and `?`, `[...]`) within one path component and `**`
//!   across components, as signing rules do: `registry.k8s.io/*` matches
//!   `registry.k8s.io/pause`, `registry.k8s.io/**` also `registry.k8s.io/a/b`;
//! - a tag glob, when given, must match the image's tag (`registry.k8s.io/pause:*`); a
//!   digest glob, when given, its digest. Without them any tag or digest matches.
//!
//! The first component is the registry when it looks like a host, as docker reads
//! references: it has a `.` or a `:`, is `localhost`, or is a glob (`*`, `**`, `?`,
//! `[`). Otherwise the pattern names Docker Hub: `nginx` is `docker.io/library/nginx`,
//! `team/*` is `docker.io/team/*`. `**` alone matches every image.

use globset::{GlobBuilder, GlobMatcher};

use crate::reference::{ImageRef, DEFAULT_REGISTRY};

const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// A compiled image pattern.
#[derive(Debug, Clone)]
pub struct ImagePattern {
    source: String,
    registry: GlobMatcher,
    repository: GlobMatcher,
    tag: Option<GlobMatcher>,
    digest: Option<GlobMatcher>,
}

fn glob(
    what: &str,
    pattern: &str,
    part: &str,
    case_insensitive: bool,
) -> Result<GlobMatcher, String> {
    GlobBuilder::new(part)
        .literal_separator(true)
        .backslash_escape(true)
        .case_insensitive(case_insensitive)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| {
            format!(
                "{pattern:?} is not a valid image pattern: its {what} {part:?}: {}",
                e.kind()
            )
        })
}

fn is_host(component: &str) -> bool {
    component == "localhost"
        || component.contains(['.', ':'])
        || component.contains(['*', '?', '['])
}

impl ImagePattern {
    /// Compiles `pattern`; the error says which part is wrong.
    pub fn compile(pattern: &str) -> Result<Self, String> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("an image pattern must not be empty".to_owned());
        }
        if p.chars().any(char::is_whitespace) {
            return Err(format!(
                "{pattern:?} is not a valid image pattern: it contains whitespace"
            ));
        }
        let (rest, digest) = match p.split_once('@') {
            Some((rest, d)) => (rest, Some(d)),
            None => (p, None),
        };
        // A tag follows the last ':' after the last '/', so `host:5000/repo` keeps its port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(format!(
                "{pattern:?} is not a valid image pattern: it names no repository"
            ));
        }
        let (registry, repository) = if name == "**" {
            ("**", "**".to_owned())
        } else {
            match name.split_once('/') {
                Some((first, path)) if is_host(first) => {
                    let host = if first.eq_ignore_ascii_case(LEGACY_DEFAULT_REGISTRY) {
                        DEFAULT_REGISTRY
                    } else {
                        first
                    };
                    (host, docker_hub_path(host, path))
                }
                _ => (DEFAULT_REGISTRY, docker_hub_path(DEFAULT_REGISTRY, name)),
            }
        };
        if repository.is_empty() {
            return Err(format!(
                "{pattern:?} is not a valid image pattern: it names no repository"
            ));
        }
        Ok(Self {
            source: pattern.to_owned(),
            registry: glob("registry", pattern, registry, true)?,
            repository: glob("repository", pattern, &repository, false)?,
            tag: tag.map(|t| glob("tag", pattern, t, false)).transpose()?,
            digest: digest
                .map(|d| glob("digest", pattern, d, false))
                .transpose()?,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `image` (parsed and normalised) matches every part of the pattern.
    pub fn matches(&self, image: &ImageRef) -> bool {
        self.registry.is_match(image.registry())
            && self.repository.is_match(image.repository())
            && self
                .tag
                .as_ref()
                .is_none_or(|t| image.tag().is_some_and(|tag| t.is_match(tag)))
            && self
                .digest
                .as_ref()
                .is_none_or(|g| image.digest().is_some_and(|d| g.is_match(d.to_string())))
    }
}

/// Docker Hub's one-component names are official images under `library/`.
fn docker_hub_path(registry: &str, path: &str) -> String {
    if registry == DEFAULT_REGISTRY && !path.contains('/') && path != "**" {
        format!("library/{path}")
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, image: &str) -> bool {
        ImagePattern::compile(pattern)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&ImageRef::parse(image).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn lookalike_hosts_do_not_match() {
        // The attacker owns attacker.example and names a repository after the exempt host.
        for (pattern, good, lookalike) in [
            (
                "*.k8s.io/*",
                "registry.k8s.io/pause:3.9",
                "attacker.example/x.k8s.io/miner",
            ),
            (
                "*.k8s.io/**",
                "registry.k8s.io/a/b:1",
                "attacker.example/registry.k8s.io/miner",
            ),
            (
                "*.dkr.ecr.*.amazonaws.com/*",
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1",
                "attacker.example/x.dkr.ecr.y.amazonaws.com/miner:latest",
            ),
            (
                "*.gcr.io/*",
                "eu.gcr.io/proj:1",
                "attacker.example/eu.gcr.io/proj:1",
            ),
            (
                "*.gcr.io/**",
                "eu.gcr.io/proj/app:1",
                "gcr.io.attacker.example/proj/app:1",
            ),
        ] {
            assert!(m(pattern, good), "{pattern} matches {good}");
            assert!(
                !m(pattern, lookalike),
                "{pattern} must not match {lookalike}"
            );
        }
    }

    #[test]
    fn star_stays_in_a_component_and_double_star_crosses() {
        assert!(m("registry.k8s.io/*", "registry.k8s.io/pause"));
        assert!(!m("registry.k8s.io/*", "registry.k8s.io/a/b"));
        assert!(m("registry.k8s.io/**", "registry.k8s.io/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000"));
        assert!(m("ghcr.io/org/*/web", "ghcr.io/org/app/web:1"));
        assert!(!m("ghcr.io/org/*/web", "ghcr.io/org/a/b/web:1"));
        assert!(m("**", "attacker.example/anything/at/all:1"));
    }

    #[test]
    fn tags_digests_and_docker_hub() {
        assert!(m("registry.k8s.io/pause:*", "registry.k8s.io/pause:3.9"));
        assert!(!m("registry.k8s.io/pause:3.*", "registry.k8s.io/pause:4.0"));
        let d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        assert!(!m(
            "registry.k8s.io/pause:*",
            &format!("registry.k8s.io/pause@{d}")
        ));
        assert!(m(
            &format!("registry.k8s.io/pause@{d}"),
            &format!("registry.k8s.io/pause@{d}")
        ));
        assert!(m("nginx", "docker.io/library/nginx:1.27"));
        assert!(m("nginx:*", "nginx:1.27"));
        assert!(m("docker.io/*", "nginx"));
        assert!(!m("nginx", "ghcr.io/library/nginx"));
        assert!(m("team/*", "team/app:v1"));
        assert!(m("index.docker.io/team/*", "docker.io/team/app"));
        assert!(m("localhost:5000/**", "localhost:5000/a/b:1"));
        assert!(m("*.K8S.io/*", "registry.k8s.io/pause"));
        assert!(!m("*/pause", "attacker.example/x/pause"));
        assert!(
            m("*/*/pause", "attacker.example/x/pause"),
            "a glob first component is a host"
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(ImagePattern::compile("").is_err());
        assert!(ImagePattern::compile("a b").is_err());
        let e = ImagePattern::compile("registry.k8s.io/[").expect_err("bad");
        assert!(e.contains("repository"), "{e}");
        assert!(ImagePattern::compile(":tag").is_err());
    }
}
