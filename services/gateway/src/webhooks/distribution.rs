//! CNCF distribution (docker-registry) notifications: `POST` of an envelope
//! `{"events": [...]}` with media type `application/vnd.docker.distribution.events.v1+json`
//! (distribution `notifications/event.go`). The registry sends one event per request in
//! practice, retries a delivery until it gets a 2xx or 3xx, and keeps undelivered events
//! only in memory.

use serde::Deserialize;

use super::{from_json, host_of, PayloadError, RegistryEvent};

/// A distribution notification envelope, as far as signet reads it (its JSON Schema is
/// derived from this type: `schemas/webhooks/distribution.schema.json`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DistributionNotification)]
pub struct Envelope {
    events: Vec<Event>,
}

/// One registry event; fields signet does not read are allowed and ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DistributionEvent)]
struct Event {
    /// Unique per event; a retried delivery repeats it.
    id: String,
    /// `push`, `pull`, `mount` or `delete`; only manifest pushes are signed.
    action: String,
    target: Target,
    request: Option<Request>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DistributionTarget)]
struct Target {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: Option<String>,
    // Delete events of a tag carry no repository in some versions; they are dropped.
    repository: Option<String>,
    url: Option<String>,
    tag: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = DistributionRequest)]
struct Request {
    /// The registry host the client pushed to.
    host: Option<String>,
}

/// The events of one notification envelope.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, PayloadError> {
    let envelope: Envelope = from_json("the distribution notification envelope", body)?;
    Ok(envelope
        .events
        .into_iter()
        .map(|e| {
            // The host the client pushed to is what others pull from; the URL's host is
            // the registry's own idea of its address, used when the request has none.
            let registry = e
                .request
                .and_then(|r| r.host)
                .filter(|h| !h.is_empty())
                .or_else(|| e.target.url.as_deref().and_then(host_of));
            RegistryEvent {
                key: format!("distribution:{}", e.id),
                action: e.action.to_ascii_lowercase(),
                registry,
                repository: e.target.repository.unwrap_or_default(),
                tag: e.target.tag.filter(|t| !t.is_empty()),
                digest: e.target.digest.filter(|d| !d.is_empty()),
                media_type: e.target.media_type.filter(|m| !m.is_empty()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/distribution/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn tagged_manifest_push() {
        let events = parse(&fixture("push-manifest-tag.json")).expect("parse");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, "push");
        assert_eq!(e.registry.as_deref(), Some("127.0.0.1:18998"));
        assert_eq!(e.repository, "demo/copy");
        assert_eq!(e.tag.as_deref(), Some("v2"));
        assert_eq!(
            e.media_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(
            e.digest.as_deref(),
            Some("sha256:5a190ddf43a90dbfba56c7dc4f062e8f09eda0844877b8293977e87a3b031706")
        );
        assert!(e.key.starts_with("distribution:"), "{}", e.key);
    }

    #[test]
    fn every_fixture_parses() {
        for (name, action) in [
            ("push-blob.json", "push"),
            ("push-manifest-untagged.json", "push"),
            ("push-index-tag.json", "push"),
            ("push-signature-tag.json", "push"),
            ("pull-manifest.json", "pull"),
            ("mount-blob.json", "mount"),
            ("delete-manifest.json", "delete"),
            ("delete-tag.json", "delete"),
        ] {
            let events = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(events.len(), 1, "{name}");
            assert_eq!(events[0].action, action, "{name}");
        }
    }

    #[test]
    fn several_events_in_one_envelope() {
        let one: serde_json::Value =
            serde_json::from_slice(&fixture("push-manifest-tag.json")).expect("json");
        let mut two = one["events"][0].clone();
        two["id"] = "second".into();
        let body = serde_json::json!({"events": [one["events"][0], two]});
        let events = parse(&serde_json::to_vec(&body).expect("json")).expect("parse");
        assert_eq!(events.len(), 2);
        assert_ne!(events[0].key, events[1].key);
    }

    #[test]
    fn malformed_envelopes_name_the_problem() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"{",
                "the distribution notification envelope is not valid: EOF while parsing",
            ),
            (br#"{"event":[]}"#, "missing field `events`"),
            (
                br#"{"events":{}}"#,
                "invalid type: map, expected a sequence",
            ),
            (
                br#"{"events":[{"id":"1","action":"push"}]}"#,
                "at events[0]: missing field `target`",
            ),
        ];
        for (body, want) in cases {
            let err = parse(body).expect_err("malformed").to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
