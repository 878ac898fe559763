//! Which registry events become signatures. Only a manifest pushed under a tag is signed,
//! so signet never signs its own output:
//! - pulls, mounts and deletes are not pushes; blob pushes (`application/octet-stream`)
//!   and other non-manifest content are not images;
//! - the tags cosign and the OCI referrers fallback use for supply-chain attachments
//!   (`sha256-<hex>.sig|.att|.sbom`, `sha256-<hex>`) are signet's own output, or
//!   someone else's signatures, attestations and SBOMs;
//! - a manifest pushed by digest alone is how an index's platform manifests, OCI 1.1
//!   referrers (signatures, SBOMs, attestations with a `subject`) and artifacts copied by
//!   digest arrive. distribution 2.8 does not say what such a manifest holds, so none is
//!   signed from its push; platform manifests are signed through their index (see the
//!   signer's `sign_platforms`).
//!
//! A push that would be signed must also be inside the receiver's binding: the host the
//! event names is the receiver's `registry` (or one of its `event_hosts`), and the image
//! is inside its repository scope. Anything else is refused with a reason and counted;
//! the image signed is always on the receiver's `registry`, never on a host the payload
//! chose.

use std::fmt;

use signet_core::digest::is_attachment_tag;
use signet_core::{Digest, ImageRef};

use super::receivers::Receiver;
use super::RegistryEvent;

/// Manifest media types signet signs; a push event without a media type (Harbor, ACR) is
/// taken to be one of these, since those registries report artifacts only.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Why an event is not signed. Not an error: the registry is told it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// A pull, mount, delete or anything but a push.
    NotAPush(String),
    /// A blob, or content that is not an image manifest or index.
    NotAManifest(String),
    /// Pushed by digest alone.
    Untagged,
    /// A signature, attestation, SBOM or referrers tag.
    AttachmentTag(String),
    /// The event names a registry host this receiver does not speak for.
    ForeignRegistry { named: String, bound: String },
    /// The image is outside the receiver's repository scope.
    OutsideScope(String),
}

impl Ignored {
    /// A short, stable label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotAPush(_) => "not_a_push",
            Self::NotAManifest(_) => "not_a_manifest",
            Self::Untagged => "untagged",
            Self::AttachmentTag(_) => "attachment_tag",
            Self::ForeignRegistry { .. } => "foreign_registry",
            Self::OutsideScope(_) => "outside_scope",
        }
    }

    /// Whether the event was refused for naming something outside the receiver's
    /// binding (counted as `foreign`, logged as a warning), not merely not signable.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::ForeignRegistry { .. } | Self::OutsideScope(_))
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAPush(action) => write!(f, "{action} events are not signed, only pushes"),
            Self::NotAManifest(media_type) => {
                write!(f, "{media_type} content is not an image manifest or index")
            }
            Self::Untagged => f.write_str(
                "a manifest pushed by digest alone is not signed (platform manifests are signed through their index)",
            ),
            Self::AttachmentTag(tag) => write!(
                f,
                "tag {tag} holds a signature, attestation, SBOM or referrers index, not an image"
            ),
            Self::ForeignRegistry { named, bound } => write!(
                f,
                "refused: the event names registry {named}, but this receiver speaks for {bound} only; not signed"
            ),
            Self::OutsideScope(why) => write!(f, "refused: {why}"),
        }
    }
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Sign this image: `registry/repository:tag@digest` (the digest when the event
    /// names it, so that the pushed content is signed even if the tag moves on).
    Sign(ImageRef),
    Ignore(Ignored),
}

/// Decides whether `event`, received by `receiver`, is signed. The image is on the
/// receiver's `registry`; an event naming another host (than it or its `event_hosts`)
/// is refused. Only a receiver without a registry (settings refuse that for registry
/// kinds) takes the host from the event. An event that should be signed but cannot be
/// turned into an image reference is an error describing what is wrong with it.
pub fn classify(event: &RegistryEvent, receiver: &Receiver) -> Result<Verdict, String> {
    let registry = receiver.registry.as_deref();
    if event.action != "push" {
        return Ok(Verdict::Ignore(Ignored::NotAPush(event.action.clone())));
    }
    if let Some(media_type) = &event.media_type {
        let base = media_type.split(';').next().unwrap_or(media_type).trim();
        if !MANIFEST_TYPES.contains(&base) {
            return Ok(Verdict::Ignore(Ignored::NotAManifest(base.to_owned())));
        }
    }
    let Some(tag) = &event.tag else {
        return Ok(Verdict::Ignore(Ignored::Untagged));
    };
    if is_attachment_tag(tag) {
        return Ok(Verdict::Ignore(Ignored::AttachmentTag(tag.clone())));
    }
    let Some(host) = registry.or(event.registry.as_deref()) else {
        return Err(format!(
            "the push of {}:{tag} does not say which registry it went to; configure the receiver's registry setting",
            event.repository
        ));
    };
    if event.repository.is_empty() {
        return Err(format!("the push of tag {tag} names no repository"));
    }
    let digest = event
        .digest
        .as_deref()
        .map(Digest::parse)
        .transpose()
        .map_err(|e| {
            format!(
                "the push of {}:{tag} has an invalid digest: {e}",
                event.repository
            )
        })?;
    if let (Some(bound), Some(named)) = (registry, event.registry.as_deref()) {
        if !receiver.speaks_for(named) {
            return Ok(Verdict::Ignore(Ignored::ForeignRegistry {
                named: named.to_owned(),
                bound: bound.to_owned(),
            }));
        }
    }
    let image =
        ImageRef::from_parts(host, &event.repository, Some(tag), digest.as_ref()).map_err(|e| {
            format!(
                "the push of {host}/{}:{tag} is not a valid image reference: {e}",
                event.repository
            )
        })?;
    if let Some(scope) = &receiver.scope {
        if !scope.allows(&image) {
            return Ok(Verdict::Ignore(Ignored::OutsideScope(
                scope.refusal(&format!("receiver {}", receiver.id()), &image),
            )));
        }
    }
    Ok(Verdict::Sign(image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::auth::Guard;
    use crate::webhooks::ReceiverKind;

    const HEX: &str = "5a190ddf43a90dbfba56c7dc4f062e8f09eda0844877b8293977e87a3b031706";

    fn push(tag: Option<&str>, media_type: Option<&str>) -> RegistryEvent {
        RegistryEvent {
            key: "k".into(),
            action: "push".into(),
            registry: Some("registry.example.com".into()),
            repository: "team/app".into(),
            tag: tag.map(str::to_owned),
            digest: Some(format!("sha256:{HEX}")),
            media_type: media_type.map(str::to_owned),
        }
    }

    fn open() -> Receiver {
        Receiver::new(ReceiverKind::Distribution, Guard::Open)
    }

    fn bound(host: &str) -> Receiver {
        open().registry(host)
    }

    fn ignored(e: &RegistryEvent) -> Ignored {
        match classify(e, &bound("registry.example.com")).expect("classify") {
            Verdict::Ignore(why) => why,
            Verdict::Sign(image) => panic!("{image} should not be signed"),
        }
    }

    #[test]
    fn tagged_manifest_pushes_are_signed_pinned_to_their_digest() {
        for mt in MANIFEST_TYPES.iter().copied().map(Some).chain([
            None,
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        ]) {
            let Verdict::Sign(image) =
                classify(&push(Some("v1"), mt), &bound("registry.example.com")).expect("ok")
            else {
                panic!("{mt:?} should be signed");
            };
            assert_eq!(
                image.to_string(),
                format!("registry.example.com/team/app:v1@sha256:{HEX}")
            );
        }
    }

    #[test]
    fn everything_else_is_ignored_with_a_reason() {
        let mut pull = push(Some("v1"), None);
        pull.action = "pull".into();
        assert_eq!(ignored(&pull), Ignored::NotAPush("pull".into()));
        for action in ["mount", "delete"] {
            let mut e = push(None, Some("application/octet-stream"));
            e.action = action.into();
            assert_eq!(ignored(&e).label(), "not_a_push");
        }
        assert_eq!(
            ignored(&push(None, Some("application/octet-stream"))),
            Ignored::NotAManifest("application/octet-stream".into())
        );
        for mt in [
            "application/vnd.oci.artifact.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ] {
            assert_eq!(
                ignored(&push(Some("v1"), Some(mt))).label(),
                "not_a_manifest"
            );
        }
        assert_eq!(
            ignored(&push(
                None,
                Some("application/vnd.oci.image.manifest.v1+json")
            )),
            Ignored::Untagged
        );
        for suffix in [".sig", ".att", ".sbom", ""] {
            let tag = format!("sha256-{HEX}{suffix}");
            assert_eq!(
                ignored(&push(Some(&tag), Some(MANIFEST_TYPES[0]))),
                Ignored::AttachmentTag(tag.clone())
            );
        }
        let why = Ignored::AttachmentTag(format!("sha256-{HEX}.sig")).to_string();
        assert!(why.contains("signature"), "{why}");
    }

    #[test]
    fn the_receiver_is_bound_to_its_registry() {
        // The registry reports itself as registry.example.com; images live on the mirror.
        let mirror = bound("mirror.example.com:5000").event_hosts(&["registry.example.com"]);
        let Verdict::Sign(image) = classify(&push(Some("v1"), None), &mirror).expect("ok") else {
            panic!("should be signed");
        };
        assert_eq!(image.registry(), "mirror.example.com:5000");
        // A webhook sender with this receiver's secret names another registry.
        let mut foreign = push(Some("v1"), None);
        foreign.registry = Some("prod.example.com".into());
        let Verdict::Ignore(why) = classify(&foreign, &mirror).expect("ok") else {
            panic!("a foreign host must not be signed");
        };
        assert!(why.is_foreign() && why.label() == "foreign_registry");
        assert!(
            why.to_string().contains("names registry prod.example.com"),
            "{why}"
        );
        // No host in the event: the receiver's registry.
        let mut no_host = push(Some("v1"), None);
        no_host.registry = None;
        let Verdict::Sign(image) = classify(&no_host, &mirror).expect("ok") else {
            panic!("should be signed");
        };
        assert_eq!(image.registry(), "mirror.example.com:5000");
        let err = classify(&no_host, &open()).expect_err("no host");
        assert!(
            err.contains("configure the receiver's registry setting"),
            "{err}"
        );
    }

    #[test]
    fn pushes_outside_the_receiver_scope_are_refused() {
        let scope =
            crate::scope::Scope::new(&["registry.example.com/team/*".into()]).expect("valid");
        let r = bound("registry.example.com").scope(scope);
        assert!(matches!(
            classify(&push(Some("v1"), None), &r).expect("ok"),
            Verdict::Sign(_)
        ));
        let mut other = push(Some("v1"), None);
        other.repository = "infra/db".into();
        let Verdict::Ignore(why) = classify(&other, &r).expect("ok") else {
            panic!("outside the scope must not be signed");
        };
        assert_eq!(why.label(), "outside_scope");
        assert!(
            why.to_string()
                .contains("registry.example.com/infra/db is outside receiver distribution's scope"),
            "{why}"
        );
    }

    #[test]
    fn broken_pushes_are_errors_naming_the_problem() {
        let mut upper = push(Some("v1"), None);
        upper.repository = "Team/App".into();
        let err = classify(&upper, &open()).expect_err("uppercase");
        assert!(err.contains("must be lowercase"), "{err}");
        let mut bad_digest = push(Some("v1"), None);
        bad_digest.digest = Some("sha256:abc".into());
        let err = classify(&bad_digest, &open()).expect_err("digest");
        assert!(
            err.contains("invalid digest") && err.contains("64 hex"),
            "{err}"
        );
    }

    #[test]
    fn captured_distribution_events_are_classified() {
        use super::super::distribution;
        let dir = format!("{}/tests/fixtures/distribution", env!("CARGO_MANIFEST_DIR"));
        let classify_file = |name: &str| {
            let body = std::fs::read(format!("{dir}/{name}")).expect("fixture");
            let events = distribution::parse(&body).expect("parse");
            classify(&events[0], &bound("127.0.0.1:18998")).expect("classify")
        };
        assert!(matches!(
            classify_file("push-manifest-tag.json"),
            Verdict::Sign(_)
        ));
        assert!(matches!(
            classify_file("push-index-tag.json"),
            Verdict::Sign(_)
        ));
        for (name, label) in [
            ("push-blob.json", "not_a_manifest"),
            ("push-manifest-untagged.json", "untagged"),
            ("push-signature-tag.json", "attachment_tag"),
            ("pull-manifest.json", "not_a_push"),
            ("mount-blob.json", "not_a_push"),
            ("delete-manifest.json", "not_a_push"),
            ("delete-tag.json", "not_a_push"),
        ] {
            match classify_file(name) {
                Verdict::Ignore(why) => assert_eq!(why.label(), label, "{name}"),
                Verdict::Sign(image) => panic!("{name}: {image} should not be signed"),
            }
        }
    }
}
