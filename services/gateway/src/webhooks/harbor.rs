//! Harbor webhooks (goharbor/harbor `src/pkg/notifier`): a policy sends either the
//! Default format `{"type": "PUSH_ARTIFACT", "occur_at", "operator", "event_data": {...}}`
//! or the CloudEvents format `{"specversion": "1.0", "type": "harbor.artifact.pushed",
//! "data": {...}}`; both carry `resources[]` (digest, tag, resource_url) and the
//! repository. Harbor reports an artifact pushed without a tag with its digest as the
//! tag, and fires for cosign signatures pushed as accessories too.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{from_json, host_of, PayloadError, RegistryEvent};

/// The Default format, as far as signet reads it (its JSON Schema is derived from this
/// type: `schemas/webhooks/harbor-default.schema.json`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HarborNotification)]
pub struct Default {
    /// `PUSH_ARTIFACT` is a push; other types are acknowledged and not signed.
    #[serde(rename = "type")]
    event_type: String,
    event_data: Option<EventData>,
}

/// The CloudEvents format (structured JSON), as far as signet reads it (its JSON Schema
/// is derived from this type: `schemas/webhooks/harbor-cloudevents.schema.json`). The
/// receiver tells it from the Default format by its `specversion`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HarborCloudEvent)]
pub struct CloudEvent {
    /// Unique per event; a retried delivery repeats it.
    id: String,
    /// `harbor.artifact.pushed` is a push; other types are acknowledged and not signed.
    #[serde(rename = "type")]
    event_type: String,
    data: Option<EventData>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HarborEventData)]
struct EventData {
    #[serde(default)]
    resources: Vec<Resource>,
    repository: Option<Repository>,
}

/// One artifact; an untagged one has its digest in place of a tag.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HarborResource)]
struct Resource {
    digest: Option<String>,
    tag: Option<String>,
    resource_url: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HarborRepository)]
struct Repository {
    /// `project/repository`.
    repo_full_name: String,
}

/// What the Harbor receiver accepts, either format (`HarborPayload` in the API document).
/// Only a schema: [`parse`] tells the formats apart by `specversion`, which a schema
/// can say only as "any of", since a CloudEvents body also has a `type`.
pub struct Payload;

impl utoipa::PartialSchema for Payload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::ToSchema;
        utoipa::openapi::schema::AnyOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name(CloudEvent::name()))
            .item(utoipa::openapi::Ref::from_schema_name(Default::name()))
            .description(Some(
                "A Harbor notification: a body with `specversion` is the CloudEvents format, \
                 any other the Default format.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Payload {
    fn name() -> std::borrow::Cow<'static, str> {
        "HarborPayload".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((CloudEvent::name().into_owned(), CloudEvent::schema()));
        CloudEvent::schemas(schemas);
        schemas.push((Default::name().into_owned(), Default::schema()));
        Default::schemas(schemas);
    }
}

/// What Harbor names a push in each format; everything else is another action.
const PUSH_DEFAULT: &str = "PUSH_ARTIFACT";
const PUSH_CLOUDEVENTS: &str = "harbor.artifact.pushed";

/// The resources of one Harbor notification, in either format.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, PayloadError> {
    let probe: serde_json::Value =
        from_json("the Harbor notification", body).map_err(|e| PayloadError(e.0))?;
    let Some(object) = probe.as_object() else {
        return Err(PayloadError(
            "the Harbor notification is not valid: expected a JSON object".into(),
        ));
    };
    let (key_base, event_type, data) = if object.contains_key("specversion") {
        let ce: CloudEvent = from_json("the Harbor CloudEvents notification", body)?;
        (format!("harbor:ce:{}", ce.id), ce.event_type, ce.data)
    } else {
        let d: Default = from_json("the Harbor notification", body)?;
        // The Default format has no event id; a retry sends the same bytes.
        (
            format!("harbor:{}", hex::encode(Sha256::digest(body))),
            d.event_type,
            d.event_data,
        )
    };
    let action = if event_type == PUSH_DEFAULT || event_type == PUSH_CLOUDEVENTS {
        "push".to_owned()
    } else {
        event_type.to_ascii_lowercase()
    };
    let Some(data) = data else {
        return Ok(Vec::new());
    };
    let repository = data.repository.map(|r| r.repo_full_name);
    data.resources
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let repository = repository.clone().ok_or_else(|| {
                PayloadError(
                    "the Harbor notification is not valid: event data has resources but no repository"
                        .into(),
                )
            })?;
            // An untagged artifact is reported with its digest in place of a tag.
            let tag = r
                .tag
                .filter(|t| !t.is_empty() && !t.starts_with("sha256:"));
            Ok(RegistryEvent {
                key: format!("{key_base}:{i}"),
                action: action.clone(),
                registry: r.resource_url.as_deref().and_then(host_of),
                repository,
                tag,
                digest: r.digest.filter(|d| !d.is_empty()),
                media_type: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/harbor/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    const DIGEST: &str = "sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c";

    #[test]
    fn default_format_push() {
        let events = parse(&fixture("push-artifact-default.json")).expect("parse");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, "push");
        assert_eq!(e.registry.as_deref(), Some("harbor.dev"));
        assert_eq!(e.repository, "library/busybox");
        assert_eq!(e.tag.as_deref(), Some("v1.0"));
        assert_eq!(e.digest.as_deref(), Some(DIGEST));
        assert!(e.key.starts_with("harbor:"));
        // The same bytes (a retry) give the same key.
        assert_eq!(
            parse(&fixture("push-artifact-default.json")).expect("parse")[0].key,
            e.key
        );
    }

    #[test]
    fn cloudevents_format_push_is_the_same_event() {
        let ce = parse(&fixture("push-artifact-cloudevents.json")).expect("parse");
        let default = parse(&fixture("push-artifact-default.json")).expect("parse");
        assert_eq!(ce.len(), 1);
        assert_eq!(
            ce[0].key,
            "harbor:ce:4b2f89a6-548d-4c12-9993-a1f5790b97d2:0"
        );
        assert_eq!(
            RegistryEvent {
                key: String::new(),
                ..ce[0].clone()
            },
            RegistryEvent {
                key: String::new(),
                ..default[0].clone()
            }
        );
    }

    #[test]
    fn untagged_pushes_pulls_and_accessories() {
        let untagged = parse(&fixture("push-artifact-untagged.json")).expect("parse");
        assert_eq!(
            untagged[0].tag, None,
            "a digest in place of a tag is no tag"
        );
        let pull = parse(&fixture("pull-artifact-cloudevents.json")).expect("parse");
        assert_eq!(pull[0].action, "harbor.artifact.pulled");
        let sig = parse(&fixture("push-signature-accessory.json")).expect("parse");
        assert_eq!(sig[0].action, "push");
        assert!(sig[0].tag.as_deref().is_some_and(|t| t.ends_with(".sig")));
    }

    #[test]
    fn malformed_notifications_name_the_problem() {
        let cases: [(&[u8], &str); 5] = [
            (b"[]", "expected a JSON object"),
            (
                b"{\"type\":",
                "the Harbor notification is not valid at type: EOF while parsing",
            ),
            (br#"{"occur_at":1}"#, "missing field `type`"),
            (
                br#"{"specversion":"1.0","type":"harbor.artifact.pushed"}"#,
                "the Harbor CloudEvents notification is not valid: missing field `id`",
            ),
            (
                br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"v1"}]}}"#,
                "resources but no repository",
            ),
        ];
        for (body, want) in cases {
            let err = parse(body).expect_err("malformed").to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
