//! Alibaba Cloud Container Registry triggers: `{"push_data": {"digest", "pushed_at",
//! "tag"}, "repository": {"namespace", "name", "region", "repo_full_name", ...}}`. ACR
//! signs nothing and sends no custom headers, so the only secret it can carry is in the
//! trigger URL. The body names no registry host: it is the region's
//! `registry.<region>.aliyuncs.com` unless the receiver is configured with another
//! (Enterprise Edition instances have their own domains).

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{from_json, PayloadError, RegistryEvent};

/// An ACR trigger notification, as far as signet reads it (its JSON Schema is derived
/// from this type: `schemas/webhooks/acr.schema.json`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = AcrNotification)]
pub struct Notification {
    push_data: PushData,
    repository: Repository,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = AcrPushData)]
struct PushData {
    digest: Option<String>,
    tag: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = AcrRepository)]
struct Repository {
    namespace: String,
    name: String,
    region: Option<String>,
    repo_full_name: Option<String>,
}

/// The one push an ACR trigger reports.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, PayloadError> {
    let n: Notification = from_json("the ACR trigger notification", body)?;
    let repository = n
        .repository
        .repo_full_name
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| format!("{}/{}", n.repository.namespace, n.repository.name));
    Ok(vec![RegistryEvent {
        // No event id; a retry sends the same bytes (pushed_at included).
        key: format!("acr:{}", hex::encode(Sha256::digest(body))),
        action: "push".into(),
        registry: n
            .repository
            .region
            .filter(|r| !r.is_empty())
            .map(|r| format!("registry.{r}.aliyuncs.com")),
        repository,
        tag: Some(n.push_data.tag).filter(|t| !t.is_empty()),
        digest: n.push_data.digest.filter(|d| !d.is_empty()),
        media_type: None,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/acr/push.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn documented_push() {
        let events = parse(&fixture()).expect("parse");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, "push");
        assert_eq!(
            e.registry.as_deref(),
            Some("registry.cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(e.repository, "namespace/repotest");
        assert_eq!(e.tag.as_deref(), Some("latest"));
        assert_eq!(
            e.digest.as_deref(),
            Some("sha256:457f4aa83fc9a6663ab9d1b0a6e2dce25a12a943ed5bf2c1747c58d48bbb4917")
        );
    }

    #[test]
    fn repository_falls_back_to_namespace_and_name() {
        let body = br#"{"push_data":{"tag":"v1"},"repository":{"namespace":"team","name":"app"}}"#;
        let e = &parse(body).expect("parse")[0];
        assert_eq!(e.repository, "team/app");
        assert_eq!(
            e.registry, None,
            "no region: the receiver must name the registry"
        );
        assert_eq!(e.digest, None);
    }

    #[test]
    fn malformed_notifications_name_the_problem() {
        let cases: [(&[u8], &str); 3] = [
            (br#"{}"#, "missing field `push_data`"),
            (
                br#"{"push_data":{"tag":1},"repository":{"namespace":"a","name":"b"}}"#,
                "at push_data.tag: invalid type: integer `1`, expected a string",
            ),
            (
                br#"{"push_data":{"tag":"v1"},"repository":{"name":"b"}}"#,
                "at repository: missing field `namespace`",
            ),
        ];
        for (body, want) in cases {
            let err = parse(body).expect_err("malformed").to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
