//! Which images a workload runs, for every kind that carries a pod spec: Pods, and the
//! controllers whose template becomes one (Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, Job, ReplicationController, and CronJob one level deeper). Containers,
//! init containers and ephemeral containers all count.

use std::collections::BTreeMap;

use serde_json::Value;

/// The kinds the webhook understands; anything else is allowed untouched.
pub const KINDS: [&str; 8] = [
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Where the pod spec sits in an object of `kind` (the object's fields besides
/// `metadata`, as the API server sends them).
pub fn pod_spec<'a>(kind: &str, object: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" => object.get("spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        k if KINDS.contains(&k) => object.pointer("/spec/template/spec"),
        _ => None,
    }
}

/// The pod template's annotations, for workloads that have a template.
pub fn template_annotations<'a>(kind: &str, object: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" => None,
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/metadata/annotations"),
        k if KINDS.contains(&k) => object.pointer("/spec/template/metadata/annotations"),
        _ => None,
    }
}

/// Every image of a pod spec, each once, in the order they appear (containers, then
/// init containers, then ephemeral containers).
pub fn images(spec: &Value) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for list in CONTAINER_LISTS {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(image) = c.get("image").and_then(Value::as_str) {
                if !out.contains(&image) {
                    out.push(image);
                }
            }
        }
    }
    out
}

/// Each container of a Pod's spec with the JSON Pointer of its `image` field
/// (`/spec/containers/0/image`), for patches that rewrite images in place.
pub fn pod_container_images(pod: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let Some(spec) = pod.get("spec") else {
        return out;
    };
    for list in CONTAINER_LISTS {
        for (i, c) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(image) = c.get("image").and_then(Value::as_str) {
                out.push((format!("/spec/{list}/{i}/image"), image));
            }
        }
    }
    out
}

/// The value of `key` in the object's annotations or, for a workload, its pod
/// template's.
pub fn annotation<'a>(
    kind: &str,
    metadata: Option<&'a BTreeMap<String, String>>,
    object: &'a Value,
    key: &str,
) -> Option<&'a str> {
    metadata
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .or_else(|| {
            template_annotations(kind, object)
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_spec_json() -> Value {
        json!({
            "containers": [{"name": "app", "image": "reg/app:v1"}, {"name": "side", "image": "reg/side@sha256:00"}],
            "initContainers": [{"name": "init", "image": "reg/init:v1"}, {"name": "again", "image": "reg/app:v1"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
        })
    }

    #[test]
    fn every_kind_finds_its_pod_spec() {
        let spec = pod_spec_json();
        let template =
            json!({"spec": {"template": {"metadata": {"annotations": {"a": "b"}}, "spec": spec}}});
        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicationController",
        ] {
            assert_eq!(pod_spec(kind, &template), Some(&spec), "{kind}");
            assert_eq!(
                template_annotations(kind, &template).and_then(|a| a.get("a")),
                Some(&json!("b"))
            );
        }
        let pod = json!({"spec": spec});
        assert_eq!(pod_spec("Pod", &pod), Some(&spec));
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}});
        assert_eq!(pod_spec("CronJob", &cron), Some(&spec));
        assert_eq!(pod_spec("ConfigMap", &pod), None);
    }

    #[test]
    fn images_cover_init_and_ephemeral_containers_once_each() {
        assert_eq!(
            images(&pod_spec_json()),
            ["reg/app:v1", "reg/side@sha256:00", "reg/init:v1", "busybox"]
        );
        assert!(images(&json!({})).is_empty());
    }

    #[test]
    fn annotations_come_from_the_object_or_its_template() {
        let object =
            json!({"spec": {"template": {"metadata": {"annotations": {"k": "from-template"}}}}});
        let meta = BTreeMap::from([("k".to_owned(), "from-object".to_owned())]);
        assert_eq!(
            annotation("Deployment", Some(&meta), &object, "k"),
            Some("from-object")
        );
        assert_eq!(
            annotation("Deployment", None, &object, "k"),
            Some("from-template")
        );
        assert_eq!(annotation("Pod", None, &object, "k"), None);
    }
}
