//! Image references, parsed and normalised the way docker does
//! (distribution/reference `ParseNormalizedNamed`): `nginx` means
//! `docker.io/library/nginx:latest`, a first component with a `.` or `:` or equal to
//! `localhost` is a registry host, repositories are lowercase.
//!
//! Written by hand: the OCI crates parse references leniently (oci-client accepts
//! uppercase and does not say which rule failed), and signet must tell a user exactly
//! why `signet sign Foo/Bar` is refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError};

pub const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalised image reference. At least one of `tag` and `digest` is set after
/// parsing: a bare name gets the tag `latest`, as docker does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} contains whitespace")]
    Whitespace(String),
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    #[error("repository name {0:?} is longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    #[error("repository path component {component:?} in {reference:?} is invalid: components are lowercase letters and digits, separated by '.', '_', '__' or dashes, and must start and end with a letter or digit")]
    BadComponent {
        reference: String,
        component: String,
    },
    #[error("registry host {0:?} is invalid")]
    BadRegistry(String),
    #[error("tag {tag:?} in {reference:?} is invalid: tags are at most {MAX_TAG_LEN} characters of letters, digits, '_', '.' and '-', and cannot start with '.' or '-'")]
    BadTag { reference: String, tag: String },
    #[error("digest in {reference:?} is invalid: {source}")]
    BadDigest {
        reference: String,
        #[source]
        source: DigestError,
    },
    #[error(
        "repository name {0:?} is a 64-character hex string, which docker reserves for image ids"
    )]
    HexName(String),
}

impl ImageRef {
    /// Parses and normalises a reference such as `nginx`, `ghcr.io/org/app:v1` or
    /// `127.0.0.1:5000/demo/app@sha256:…`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.chars().any(char::is_whitespace) {
            return Err(ReferenceError::Whitespace(input.to_owned()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::BadDigest {
                    reference: input.to_owned(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/', so a registry port
        // (`host:5000/repo`) is not mistaken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::BadTag {
                    reference: input.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(name.to_owned()));
        }

        let (registry, path) = split_registry(name);
        let registry = match registry {
            Some(r) => {
                if !valid_registry(r) {
                    return Err(ReferenceError::BadRegistry(r.to_owned()));
                }
                if r == LEGACY_DEFAULT_REGISTRY {
                    DEFAULT_REGISTRY.to_owned()
                } else {
                    r.to_owned()
                }
            }
            None => DEFAULT_REGISTRY.to_owned(),
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(name.to_owned()));
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::BadComponent {
                    reference: input.to_owned(),
                    component: component.to_owned(),
                });
            }
        }
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            if path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ReferenceError::HexName(path.to_owned()));
            }
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_owned()
        };
        // docker measures the normalised name (`docker.io/library/nginx`), not the name as
        // written: otherwise a reference would print as one that no longer parses.
        let normalised_len = registry.len() + 1 + repository.len();
        if normalised_len > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(format!(
                "{registry}/{repository}"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Builds a reference from parts that are already known to be valid (e.g. from a
    /// registry webhook), re-validating them.
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Self, ReferenceError> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        Self::parse(&s)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`: what cosign writes into `docker-reference`.
    pub fn repository_ref(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with a different tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// `registry/repository@digest`, or `registry/repository:tag` when unresolved.
    pub fn pinned(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{d}", self.repository_ref()),
            (None, Some(t)) => format!("{}:{t}", self.repository_ref()),
            (None, None) => self.repository_ref(),
        }
    }
}

fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        // docker treats an uppercase first component as a host too (it cannot be a
        // repository component), which gives "must be lowercase" only for real paths.
        Some((first, rest)) if first.chars().any(|c| c.is_ascii_uppercase()) => (Some(first), rest),
        _ => (None, name),
    }
}

fn valid_registry(host: &str) -> bool {
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        // [IPv6]:port
        match rest.split_once(']') {
            Some((ip, tail)) => {
                if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                // Only a port may follow the brackets: `[::1]x` is no host.
                match tail {
                    "" => return true,
                    t => match t.strip_prefix(':') {
                        Some(port) => ("x", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return false;
        }
    }
    !h.is_empty()
        && h.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository_ref())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:4c0d0b7f23d7c9d6c1f5d0e5ab9d14a0f7c3e5e2b7b8d2d1f1b4f5c6a7b8c9d0";

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("library/nginx", "docker.io/library/nginx:latest"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            ("index.docker.io/org/app:v1", "docker.io/org/app:v1"),
            ("org/app", "docker.io/org/app:latest"),
            ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:v1", "localhost:5000/app:v1"),
            ("127.0.0.1:5000/demo/app:v1", "127.0.0.1:5000/demo/app:v1"),
            ("[::1]:5000/demo/app", "[::1]:5000/demo/app:latest"),
            (
                "registry.example.com/a/b/c:x.y-z_1",
                "registry.example.com/a/b/c:x.y-z_1",
            ),
            ("a__b/c--d", "docker.io/a__b/c--d:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(p(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn digest_references() {
        let r = p(&format!("127.0.0.1:5000/demo/app@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(Digest::as_str), Some(D));
        assert_eq!(r.repository_ref(), "127.0.0.1:5000/demo/app");
        let r = p(&format!("demo/app:v1@{D}"));
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.pinned(), format!("docker.io/demo/app@{D}"));
    }

    #[test]
    fn rejects_malformed_references_precisely() {
        assert_eq!(ImageRef::parse(""), Err(ReferenceError::Empty));
        // docker reads an uppercase first component as a registry host
        assert_eq!(p("Foo/bar").registry(), "Foo");
        assert!(matches!(
            ImageRef::parse("docker.io/Foo/bar"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            ImageRef::parse("foo/Bar"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            ImageRef::parse("a b"),
            Err(ReferenceError::Whitespace(_))
        ));
        assert!(matches!(
            ImageRef::parse("app:"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            ImageRef::parse("app:-x"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            ImageRef::parse(&format!("app:{}", "a".repeat(129))),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            ImageRef::parse("app@sha256:abc"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a/-b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a//b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a/b."),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a/b...c"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            ImageRef::parse("host:99999/a"),
            Err(ReferenceError::BadRegistry(_))
        ));
        assert!(matches!(
            ImageRef::parse("-host.io/a"),
            Err(ReferenceError::BadRegistry(_))
        ));
        assert!(matches!(
            ImageRef::parse(&"a".repeat(64)),
            Err(ReferenceError::HexName(_))
        ));
        assert!(matches!(
            ImageRef::parse(&format!("x.io/{}", "a".repeat(300))),
            Err(ReferenceError::NameTooLong(_))
        ));
        let msg = ImageRef::parse("foo/Bar").unwrap_err().to_string();
        assert!(msg.contains("lowercase"), "{msg}");
    }

    /// Found by the `image_reference` fuzz target. A webhook sender or pod author
    /// names an image whose name fits docker's 255-character limit as written but not
    /// once normalised (`docker.io/library/` is added): signet must refuse it as docker
    /// does, rather than accept a reference whose own printed form it then refuses.
    #[test]
    fn name_limit_applies_to_the_normalised_name() {
        for input in ["a".repeat(250), format!("{}:v1", "a".repeat(240))] {
            assert!(
                matches!(ImageRef::parse(&input), Err(ReferenceError::NameTooLong(_))),
                "{input:?} is longer than 255 characters once normalised"
            );
        }
        // The longest name docker accepts still round-trips.
        let longest = format!("docker.io/library/{}", "a".repeat(255 - 18));
        let r = p(&longest);
        assert_eq!(r.repository_ref(), longest);
        assert_eq!(ImageRef::parse(&r.to_string()), Ok(r));
    }

    /// A webhook sender or pod author names a registry as an IPv6 literal followed by
    /// something other than a port: that is no host, and must not reach the registry
    /// client as one.
    #[test]
    fn ipv6_registry_takes_only_a_port_after_the_brackets() {
        assert_eq!(p("[::1]:5000/demo/app").registry(), "[::1]:5000");
        assert_eq!(p("[::1]/demo/app").registry(), "[::1]");
        for bad in [
            "[::1]x/demo/app",
            "[::1]evil.io/demo/app",
            "[::1]:/demo/app",
        ] {
            assert!(
                matches!(ImageRef::parse(bad), Err(ReferenceError::BadRegistry(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn serde_round_trip() {
        let r = p("ghcr.io/org/app:v1");
        let j = serde_json::to_string(&r).expect("serialise");
        assert_eq!(j, "\"ghcr.io/org/app:v1\"");
        let back: ImageRef = serde_json::from_str(&j).expect("deserialise");
        assert_eq!(back, r);
        assert!(serde_json::from_str::<ImageRef>("\"Bad/Name\"").is_err());
    }
}
