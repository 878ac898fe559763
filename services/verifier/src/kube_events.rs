//! Kubernetes Events for what signet decides, on the object it decided about: admission
//! denials, warnings, would-denies and break-glass admissions, and running containers
//! whose standing got worse. kube-runtime's recorder aggregates repeats into one Event
//! with a count (an Event series), as the Kubernetes event recorder does, so a
//! ReplicaSet retrying a denied Pod does not flood the namespace.
//!
//! Events are best effort: they are published in the background, never delay an
//! admission answer, and a failure (no RBAC for a namespace, the API server busy) is
//! logged at debug level. The decisions themselves are recorded in the control plane.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The Event reasons, for `kubectl get events --field-selector reason=...`.
pub const DENIED: &str = "SignetDenied";
pub const WARNED: &str = "SignetWarned";
pub const WOULD_DENY: &str = "SignetWouldDeny";
pub const BREAK_GLASS: &str = "SignetBreakGlass";
pub const UNTRUSTED: &str = "SignetUntrustedImage";
pub const REVOKED: &str = "SignetRevokedImage";

/// Most bytes of an Event's note (the API server's limit is 1 kB).
const MAX_NOTE: usize = 1024;

/// The object an Event is about.
#[derive(Debug, Clone, Copy)]
pub struct Regarding<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Set once the verifier has an API server client (the inventory's); until then, and
/// without one, publishing does nothing.
#[derive(Clone, Default)]
pub struct KubeEvents(Arc<tokio::sync::OnceCell<Recorder>>);

impl std::fmt::Debug for KubeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KubeEvents(ready: {})", self.0.initialized())
    }
}

impl KubeEvents {
    pub fn connect(&self, client: kube::Client, cluster: &str) {
        let reporter = Reporter {
            controller: "signet-verifier".into(),
            instance: std::env::var("HOSTNAME")
                .ok()
                .or_else(|| Some(format!("signet-verifier-{cluster}"))),
        };
        let _ = self.0.set(Recorder::new(client, reporter));
    }

    /// Publishes an Event about `regarding` in the background.
    pub fn publish(
        &self,
        regarding: Regarding<'_>,
        warning: bool,
        reason: &'static str,
        action: &'static str,
        note: &str,
    ) {
        let Regarding {
            kind,
            namespace,
            name,
        } = regarding;
        let Some(recorder) = self.0.get().cloned() else {
            return;
        };
        let (api_version, kind) = match kind {
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => ("apps/v1", kind),
            "Job" | "CronJob" => ("batch/v1", kind),
            _ => ("v1", kind),
        };
        let reference = ObjectReference {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            ..ObjectReference::default()
        };
        let mut note = note.to_owned();
        if note.len() > MAX_NOTE {
            let mut cut = MAX_NOTE - 3;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str("...");
        }
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, reason = %event.reason, "a Kubernetes Event could not be published");
            }
        });
    }
}
