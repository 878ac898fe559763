//! Deciding an AdmissionReview: which policies apply to the namespace, which images the
//! workload runs, and whether each satisfies each policy; then what the mode makes of a
//! failure (enforce denies, warn warns, dry-run records) and what gets reported.
//!
//! Only reviews from a trusted sender (the authenticated API server) that are not dry
//! runs are reported; a break-glass decision is kept on disk before the answer goes out
//! ([`crate::break_glass`]), and an unverified sender never gets break-glass.
//!
//! Updates that start nothing new (the same pod spec, no more replicas: a scale-down, a
//! label change) are allowed without a check; every other update is checked like a
//! create, whether or not its images appear in the old object, since that object may have
//! been admitted under warn, dry-run or break-glass. The whole check runs within
//! the decision budget; what does not finish in time counts as "registry unreachable",
//! which denies in an enforced namespace (fail closed) and never gets cached.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube_core::DynamicObject;
use serde_json::{json, Value};
use signet_core::admission::{BREAK_GLASS_ANNOTATION, VERIFIED_ANNOTATION};
use signet_core::{
    AdmissionDecision, AdmissionOutcome, DenialReason, Digest, ImageRef, ImageVerdict, PolicyMode,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::break_glass::Journal;
use crate::report::Reporter;
use crate::trust::{CompiledPolicy, Failure, NamespaceLabels, Snapshot, Trust};
use crate::workload;

/// Extra time past the budget before an unfinished check is cut off; the registry calls
/// inside it have the budget as their own deadline, so this is only a backstop.
const BACKSTOP: Duration = Duration::from_millis(200);
/// The longest denial message sent back; the API server shows it to the user.
const MAX_MESSAGE: usize = 4_000;

/// Decides admissions. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Admission {
    trust: Arc<Trust>,
    reporter: Reporter,
    break_glass: Journal,
    cluster: Arc<str>,
    budget: Duration,
    events: crate::kube_events::KubeEvents,
    namespaces: crate::namespaces::Namespaces,
}

/// Who sent a review, as far as the TLS handshake can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A client certificate the client CA issued, or client authentication is off.
    Trusted,
    /// No client certificate, with `client_auth = "optional"`: answered, never reported,
    /// never given break-glass.
    Unverified,
}

/// One image of the workload, parsed once and resolved at most once per review.
struct Slot<'a> {
    raw: &'a str,
    image: Result<ImageRef, String>,
    digest: OnceCell<Result<Digest, Failure>>,
}

/// What one policy made of the workload.
struct PolicyResult<'a> {
    policy: &'a CompiledPolicy,
    verdicts: Vec<ImageVerdict>,
}

impl PolicyResult<'_> {
    fn failed(&self) -> bool {
        self.verdicts.iter().any(|v| v.reason.is_some())
    }
}

/// The parts of a request that decide whether it needs a check at all: the object and
/// the images it runs that need checking, or `None` when the request runs no new image.
/// Public so the fuzz targets (services/fuzz) read requests exactly as the webhook does.
pub fn images_to_check(
    req: &AdmissionRequest<DynamicObject>,
) -> Option<(&DynamicObject, Vec<&str>)> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return None;
    }
    // Status, scale and binding updates run no image; ephemeral containers do.
    if req
        .sub_resource
        .as_deref()
        .is_some_and(|s| s != "ephemeralcontainers")
    {
        return None;
    }
    let kind = req.kind.kind.as_str();
    let object = req.object.as_ref()?;
    let images = workload::images(workload::pod_spec(kind, &object.data)?);
    if images.is_empty() {
        return None;
    }
    if req.operation == Operation::Update {
        let old = req.old_object.as_ref().map(|o| &o.data);
        if old.is_some_and(|old| runs_nothing_new(kind, old, &object.data)) {
            return None;
        }
    }
    Some((object, images))
}

/// Whether an update leaves what runs as it was: the same pod spec, and no more replicas
/// (a scale-down, a label or annotation change, a controller scaling down an old
/// ReplicaSet, a finalizer removed). Such an update is allowed unchecked, because it
/// starts nothing and blocking it would stall rollouts away from an image that no longer
/// passes. Any other update is checked like a create, through the same caches: "its
/// images appear in the old object" is not enough, because that object may have been
/// admitted under warn, dry-run or break-glass, or before the policy existed.
///
/// A ReplicaSet or ReplicationController whose pod template is unchanged may also grow:
/// all it starts are Pods, and each is checked when the controller creates it. The
/// Deployment controller scales its ReplicaSets by UPDATE (after `kubectl scale
/// deployment` or an HPA, which use the unchecked `scale` subresource); refusing that
/// update would stall the Deployment with nothing to say why (the controller manager
/// logs it, nothing else does), while the refused Pods put the reason in the
/// ReplicaSet's `FailedCreate` events and the Deployment's `ReplicaFailure` condition.
/// Found against a real API server (services/cli/tests/kubernetes.rs).
fn runs_nothing_new(kind: &str, old: &Value, new: &Value) -> bool {
    let replicas = |o: &Value| o.pointer("/spec/replicas").and_then(Value::as_i64);
    let same_spec = match (workload::pod_spec(kind, old), workload::pod_spec(kind, new)) {
        (Some(o), Some(n)) => o == n,
        _ => false,
    };
    if matches!(kind, "ReplicaSet" | "ReplicationController") {
        return same_spec;
    }
    let no_more = match (replicas(old), replicas(new)) {
        (Some(o), Some(n)) => n <= o,
        (None, None) => true,
        // Replicas set where it was defaulted (or the reverse): not provably fewer.
        _ => false,
    };
    same_spec && no_more
}

impl Admission {
    pub fn new(
        trust: Arc<Trust>,
        reporter: Reporter,
        break_glass: Journal,
        cluster: &str,
        budget: Duration,
    ) -> Self {
        Self {
            trust,
            reporter,
            break_glass,
            cluster: cluster.into(),
            budget,
            events: Default::default(),
            namespaces: Default::default(),
        }
    }

    /// Reads namespace labels (for label-selected policies) from `namespaces`.
    pub fn with_namespaces(mut self, namespaces: crate::namespaces::Namespaces) -> Self {
        self.namespaces = namespaces;
        self
    }

    /// The labels of `namespace` when an enabled policy selects by label; `None` when
    /// none does or they cannot be known.
    async fn namespace_labels(
        &self,
        snapshot: &Snapshot,
        namespace: &str,
    ) -> Option<crate::namespaces::Labels> {
        if !snapshot.selects_by_label() {
            return None;
        }
        let labels = self.namespaces.labels(namespace).await;
        if labels.is_none() && !self.namespaces.connected() {
            tracing::warn!(%namespace, "a policy selects namespaces by label, but this verifier cannot read namespaces (verifier.inventory is off); the policy applies wherever its glob matches");
        }
        labels
    }

    /// Publishes Kubernetes Events for denials, warnings, would-denies and break-glass
    /// admissions through `events` (once it is connected to the API server).
    pub fn with_kube_events(mut self, events: crate::kube_events::KubeEvents) -> Self {
        self.events = events;
        self
    }

    /// `POST /validate`.
    pub async fn validate(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        sender: Sender,
    ) -> AdmissionResponse {
        let started = Instant::now();
        let response = self.decide(req, sender, started + self.budget).await;
        signet_runtime::metrics::metrics()
            .admission_latency
            .observe(started.elapsed().as_secs_f64());
        response
    }

    async fn decide(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        sender: Sender,
        deadline: Instant,
    ) -> AdmissionResponse {
        let allow = AdmissionResponse::from(req);
        let Some((object, raw_images)) = images_to_check(req) else {
            return allow;
        };
        if !self.trust.is_loaded() {
            return forbid(
                allow,
                "signet: the verifier has no trust bundle yet (the control plane has not answered since it started); it cannot tell which images are trusted",
            );
        }
        let namespace = req
            .namespace
            .as_deref()
            .or(object.metadata.namespace.as_deref())
            .unwrap_or_default();
        let snapshot = self.trust.snapshot();
        let labels = self.namespace_labels(&snapshot, namespace).await;
        let policies: Vec<&CompiledPolicy> = snapshot
            .applicable(namespace, NamespaceLabels::of(labels.as_ref()))
            .collect();
        if policies.is_empty() {
            return allow;
        }
        let slots: Vec<Slot<'_>> = raw_images
            .iter()
            .map(|raw| Slot {
                raw,
                image: ImageRef::parse(raw).map_err(|e| e.to_string()),
                digest: OnceCell::new(),
            })
            .collect();
        let evaluation = async {
            let mut results = Vec::with_capacity(policies.len());
            for policy in &policies {
                results.push(self.evaluate(&snapshot, policy, &slots, deadline).await);
            }
            results
        };
        let results = match tokio::time::timeout_at(deadline + BACKSTOP, evaluation).await {
            Ok(r) => r,
            Err(_) => policies
                .iter()
                .map(|policy| PolicyResult {
                    policy,
                    verdicts: slots
                        .iter()
                        .map(|s| ImageVerdict {
                            image: s.raw.to_owned(),
                            digest: None,
                            witnesses: Vec::new(),
                            exempt: false,
                            reason: Some(DenialReason::RegistryUnreachable),
                            detail: format!(
                                "the check did not finish within the {:?} budget",
                                self.budget
                            ),
                        })
                        .collect(),
                })
                .collect(),
        };
        self.conclude(req, sender, object, namespace, &results)
            .await
    }

    /// Every image of the workload against one policy, images checked concurrently.
    async fn evaluate<'p>(
        &self,
        snapshot: &Snapshot,
        policy: &'p CompiledPolicy,
        slots: &[Slot<'_>],
        deadline: Instant,
    ) -> PolicyResult<'p> {
        let checks = slots.iter().map(|slot| async move {
            let mut verdict = ImageVerdict {
                image: slot.raw.to_owned(),
                digest: None,
                witnesses: Vec::new(),
                exempt: false,
                reason: None,
                detail: String::new(),
            };
            let image = match &slot.image {
                Ok(i) => i,
                Err(e) => {
                    // An image that does not parse names no registry or repository, so no
                    // exemption can cover it.
                    verdict.reason = Some(DenialReason::InvalidReference);
                    verdict.detail = e.clone();
                    return verdict;
                }
            };
            if policy.exempts(image) {
                verdict.exempt = true;
                return verdict;
            }
            if image.digest().is_none() && policy.policy.require_digest {
                verdict.reason = Some(DenialReason::DigestRequired);
                verdict.detail =
                    "the policy requires images by digest (@sha256:...), not by tag".to_owned();
                return verdict;
            }
            let resolved = slot
                .digest
                .get_or_init(|| self.trust.resolve(image, deadline))
                .await;
            let digest = match resolved {
                Ok(d) => d,
                Err(f) => {
                    verdict.reason = Some(f.reason);
                    verdict.detail = f.detail.clone();
                    return verdict;
                }
            };
            verdict.digest = Some(digest.clone());
            // The review joins the story of the signature it relies on: a link to the
            // trace that signed this digest, when the signer exported one.
            if let Some(tp) = self.trust.trace_of(digest).await {
                signet_runtime::telemetry::link_traceparent(&tracing::Span::current(), &tp);
            }
            let check = self
                .trust
                .check(snapshot, policy, image, digest, deadline)
                .await;
            verdict.witnesses = check.witnesses.iter().map(|w| w.to_string()).collect();
            if let Some(f) = check.failure {
                verdict.reason = Some(f.reason);
                verdict.detail = f.detail;
                return verdict;
            }
            // Signed as the policy asks: now what the policy requires it to attest.
            if let Some(f) = self
                .trust
                .check_attestations(snapshot, policy, image, digest, deadline)
                .await
            {
                verdict.reason = Some(f.reason);
                verdict.detail = f.detail;
            }
            verdict
        });
        PolicyResult {
            policy,
            verdicts: join_all(checks).await,
        }
    }

    /// Turns policy results into the answer and the decisions to report.
    async fn conclude(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        sender: Sender,
        object: &DynamicObject,
        namespace: &str,
        results: &[PolicyResult<'_>],
    ) -> AdmissionResponse {
        let kind = req.kind.kind.as_str();
        let break_glass = workload::annotation(
            kind,
            object.metadata.annotations.as_ref(),
            &object.data,
            BREAK_GLASS_ANNOTATION,
        )
        .map(str::trim)
        .filter(|r| !r.is_empty());
        let name = object
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                object
                    .metadata
                    .generate_name
                    .as_ref()
                    .map(|g| format!("{g}*"))
            })
            .unwrap_or_else(|| req.name.clone());
        // A dry run creates nothing, and `sideEffects: None` promises it records nothing.
        let recorded = sender == Sender::Trusted && !req.dry_run;
        let mut denials: Vec<String> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        // The same warnings in short lines, for when the full ones do not fit in what the
        // API server passes on (see `fit_warnings`).
        let mut short_warnings: Vec<String> = Vec::new();
        let mut kept_break_glass = Vec::new();
        for r in results {
            let policy = &r.policy.policy;
            let failed = r.failed();
            let problems = if failed {
                describe(&r.verdicts, &policy.name, namespace)
            } else {
                String::new()
            };
            let (outcome, message) = match (failed, policy.mode) {
                (false, _) => (AdmissionOutcome::Allowed, String::new()),
                (true, PolicyMode::Enforce) => match break_glass {
                    // Break-glass is allowed on the promise of an audit record; an
                    // unauthenticated sender's review is never recorded.
                    Some(_) if sender == Sender::Unverified => {
                        let m = format!(
                            "{problems} (break-glass is honoured only for reviews from the authenticated API server)"
                        );
                        denials.push(m.clone());
                        (AdmissionOutcome::Denied, m)
                    }
                    Some(reason) if policy.allow_break_glass => {
                        let m = format!(
                            "signet: break-glass ({reason}) let this through policy {:?}, which would have denied it: {problems}; this admission is audited",
                            policy.name
                        );
                        warnings.push(m.clone());
                        short_warnings.push(format!(
                            "signet: break-glass ({reason}) let this through policy {:?}, which would have denied {}; this admission is audited",
                            policy.name,
                            count_images(&r.verdicts)
                        ));
                        (AdmissionOutcome::BreakGlass, m)
                    }
                    Some(_) => {
                        let m = format!(
                            "{problems} (policy {:?} does not honour the {BREAK_GLASS_ANNOTATION} annotation)",
                            policy.name
                        );
                        denials.push(m.clone());
                        (AdmissionOutcome::Denied, m)
                    }
                    None => {
                        denials.push(problems.clone());
                        (AdmissionOutcome::Denied, problems)
                    }
                },
                (true, PolicyMode::Warn) => {
                    let m = format!("signet (warn): {problems}");
                    warnings.push(m.clone());
                    short_warnings.extend(r.verdicts.iter().filter_map(|v| {
                        Some(format!(
                            "signet (warn): image {:?} is not allowed in namespace {namespace:?} by policy {:?}: {}",
                            v.image,
                            policy.name,
                            reason_words(v.reason?)
                        ))
                    }));
                    (AdmissionOutcome::Warned, m)
                }
                (true, PolicyMode::DryRun) => (AdmissionOutcome::WouldDeny, problems),
            };
            if !recorded {
                continue;
            }
            signet_runtime::metrics::metrics().admission(
                outcome.as_str(),
                &policy.name,
                policy.mode.as_str(),
            );
            let decision = AdmissionDecision {
                at: Utc::now(),
                cluster: self.cluster.to_string(),
                uid: req.uid.clone(),
                namespace: namespace.to_owned(),
                kind: kind.to_owned(),
                name: name.clone(),
                operation: operation_name(&req.operation).to_owned(),
                policy: policy.name.clone(),
                mode: policy.mode,
                outcome,
                images: r.verdicts.clone(),
                message,
                break_glass: break_glass.map(str::to_owned),
                dry_run: req.dry_run,
                user: req.user_info.username.clone().filter(|u| !u.is_empty()),
                groups: req.user_info.groups.clone().unwrap_or_default(),
            };
            let event = match outcome {
                AdmissionOutcome::Allowed => None,
                AdmissionOutcome::Denied => Some((true, crate::kube_events::DENIED)),
                AdmissionOutcome::Warned => Some((true, crate::kube_events::WARNED)),
                AdmissionOutcome::WouldDeny => Some((false, crate::kube_events::WOULD_DENY)),
                AdmissionOutcome::BreakGlass => Some((true, crate::kube_events::BREAK_GLASS)),
            };
            if let Some((warning, reason)) = event {
                let by = decision.user.as_deref().unwrap_or("unknown user");
                self.events.publish(
                    crate::kube_events::Regarding {
                        kind,
                        namespace,
                        name: &name,
                    },
                    warning,
                    reason,
                    "Admit",
                    &format!("{} (requested by {by})", decision.message),
                );
            }
            if outcome == AdmissionOutcome::BreakGlass {
                tracing::warn!(namespace, name = %name, policy = %policy.name, reason = ?break_glass, "break-glass admission");
                kept_break_glass.push(decision);
            } else {
                self.reporter.record(decision, false);
            }
        }
        // Kept before the answer leaves: a break-glass admission that could not be
        // recorded is not let through.
        for decision in kept_break_glass {
            if let Err(e) = self.break_glass.keep(decision).await {
                tracing::error!(error = %e, "break-glass admission refused: its decision cannot be kept for the audit");
                return forbid(
                    AdmissionResponse::from(req),
                    "signet: break-glass refused: the verifier cannot record the decision durably, and break-glass admissions must be audited",
                );
            }
        }
        let mut response = AdmissionResponse::from(req);
        if !warnings.is_empty() {
            response.warnings = Some(fit_warnings(warnings, short_warnings));
        }
        if !denials.is_empty() {
            let mut message = denials.join("; ");
            if message.len() > MAX_MESSAGE {
                let mut cut = MAX_MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push_str(" …");
            }
            return forbid(response, message);
        }
        let pinned = pinned_images(results);
        if !pinned.is_empty() {
            response
                .audit_annotations
                .insert("verified-images".to_owned(), pinned);
        }
        response
    }

    /// `POST /mutate`: adds the Trusted Image annotation listing each image's verified
    /// digest and witnesses, and, on Pods in namespaces whose policies pin digests,
    /// rewrites each verified tag to `tag@digest` so the kubelet pulls exactly what was
    /// verified (review M7; controllers keep their tags, so GitOps tools see no drift).
    /// Never denies; `/validate` decides.
    pub async fn mutate(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let response = AdmissionResponse::from(req);
        let Some((object, raw_images)) = images_to_check(req) else {
            return response;
        };
        let deadline = Instant::now() + self.budget;
        let snapshot = self.trust.snapshot();
        let checks = raw_images.iter().map(|raw| {
            let snapshot = &snapshot;
            async move {
                let image = ImageRef::parse(raw).ok()?;
                let digest = self.trust.resolve(&image, deadline).await.ok()?;
                let witnesses = self
                    .trust
                    .witnesses_of(snapshot, &image, &digest, deadline)
                    .await;
                (!witnesses.is_empty()).then_some((*raw, image, digest, witnesses))
            }
        });
        let trusted: Vec<_> = join_all(checks).await.into_iter().flatten().collect();
        if trusted.is_empty() {
            return response;
        }
        let listed: Vec<Value> = trusted
            .iter()
            .map(|(raw, _, digest, witnesses)| {
                json!({
                    "image": raw,
                    "digest": digest,
                    "witnesses": witnesses.iter().map(|w| &**w).collect::<Vec<_>>(),
                })
            })
            .collect();
        let value = Value::String(Value::Array(listed).to_string());
        let mut ops = if object.metadata.annotations.is_some() {
            vec![json!({
                "op": "add",
                "path": format!("/metadata/annotations/{}", VERIFIED_ANNOTATION.replace('~', "~0").replace('/', "~1")),
                "value": value,
            })]
        } else {
            vec![json!({
                "op": "add",
                "path": "/metadata/annotations",
                "value": { VERIFIED_ANNOTATION: value },
            })]
        };
        if req.kind.kind == "Pod" {
            let namespace = req
                .namespace
                .as_deref()
                .or(object.metadata.namespace.as_deref())
                .unwrap_or_default();
            // The witnesses of the policies here that pin digests: an image they
            // verified runs by digest.
            let labels = self.namespace_labels(&snapshot, namespace).await;
            let pinning: Vec<&str> = snapshot
                .applicable(namespace, NamespaceLabels::of(labels.as_ref()))
                .filter(|p| p.policy.pin_digests)
                .flat_map(|p| p.witnesses.iter().map(|w| &*w.name))
                .collect();
            for (pointer, raw) in workload::pod_container_images(&object.data) {
                let pinned = trusted.iter().find(|(r, image, _, witnesses)| {
                    *r == raw
                        && image.digest().is_none()
                        && witnesses.iter().any(|w| pinning.contains(&&**w))
                });
                if let Some((_, _, digest, _)) = pinned {
                    ops.push(json!({
                        "op": "replace",
                        "path": pointer,
                        "value": format!("{raw}@{digest}"),
                    }));
                }
            }
        }
        match serde_json::from_value::<json_patch::Patch>(Value::Array(ops))
            .map_err(|e| e.to_string())
            .and_then(|p| response.clone().with_patch(p).map_err(|e| e.to_string()))
        {
            Ok(patched) => patched,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the Trusted Image patch; admitting without it");
                response
            }
        }
    }
}

/// What the API server passes on of a response's warnings: 4 KiB in all, counted as
/// HTTP `Warning` headers (`299 - "text"`, quotes and backslashes escaped); past that it
/// cuts every warning to 256 characters and drops what still does not fit
/// (k8s.io/apiserver, filters/warning.go). Leaves room for other webhooks' warnings.
const WARNINGS_BUDGET: usize = 3_000;
/// The length the API server cuts warnings to once they exceed its total.
const WARNING_LINE: usize = 256;

/// The warnings as they should be sent: the full texts when they fit the API server's
/// budget; otherwise one short line per image (each under 256 characters), as many as
/// fit, and a last line saying how many were left out. Sending the full texts regardless
/// had the API server cut a warning for 16 images after its first image, mid-sentence
/// (found against a real API server by services/cli/tests/kubernetes.rs).
fn fit_warnings(full: Vec<String>, short: Vec<String>) -> Vec<String> {
    fn header_len(w: &str) -> usize {
        "299 - \"\"".len() + w.len() + w.matches(['"', '\\']).count()
    }
    if full.iter().map(|w| header_len(w)).sum::<usize>() <= WARNINGS_BUDGET {
        return full;
    }
    let total = short.len();
    let mut out = Vec::new();
    let mut used = 0;
    // Room for the line that says how many were left out.
    let reserve = header_len(&left_out_line(total, total));
    for mut w in short {
        if w.len() > WARNING_LINE {
            let mut cut = WARNING_LINE - "…".len();
            while !w.is_char_boundary(cut) {
                cut -= 1;
            }
            w.truncate(cut);
            w.push('…');
        }
        if used + header_len(&w) + reserve > WARNINGS_BUDGET {
            break;
        }
        used += header_len(&w);
        out.push(w);
    }
    if out.len() < total {
        out.push(left_out_line(total - out.len(), total));
    }
    out
}

fn left_out_line(left: usize, total: usize) -> String {
    format!(
        "signet: {left} of {total} warnings left out (the API server passes on 4 KiB of warnings); signet audit --admissions lists them all"
    )
}

/// "1 image" or "N images": the failing images of a verdict list.
fn count_images(verdicts: &[ImageVerdict]) -> String {
    match verdicts.iter().filter(|v| v.reason.is_some()).count() {
        1 => "1 image".to_owned(),
        n => format!("{n} images"),
    }
}

/// A denial, as `403 Forbidden`. The API server passes a webhook's status on to the
/// client, but without a code it answers `400 Bad Request` with no reason, which kubectl
/// prints as `Error from server: ...` and which clients (CI tools, GitOps controllers)
/// read as a malformed object rather than a refusal. Found against a real API server by
/// services/cli/tests/kubernetes.rs; kubectl now prints `Error from server (Forbidden)`.
fn forbid(response: AdmissionResponse, message: impl ToString) -> AdmissionResponse {
    let mut r = response.deny(message);
    r.result.code = 403;
    r.result.reason = kube_core::response::reason::FORBIDDEN.to_owned();
    r.result.status = Some(kube_core::response::StatusSummary::Failure);
    r
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// `image "X" (sha256:…) is not allowed in namespace "N" by policy "P": reason: detail`
/// for each failing image.
fn describe(verdicts: &[ImageVerdict], policy: &str, namespace: &str) -> String {
    verdicts
        .iter()
        .filter_map(|v| {
            let reason = v.reason?;
            let digest = v
                .digest
                .as_ref()
                .filter(|d| !v.image.contains(d.as_str()))
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            Some(format!(
                "image {:?}{digest} is not allowed in namespace {namespace:?} by policy {policy:?}: {}: {}",
                v.image,
                reason_words(reason),
                v.detail
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn reason_words(r: DenialReason) -> &'static str {
    match r {
        DenialReason::Unsigned => "unsigned",
        DenialReason::InvalidSignature => "invalid signature",
        DenialReason::Revoked => "witness or key version revoked",
        DenialReason::TagNotResolvable => "tag not resolvable",
        DenialReason::RegistryUnreachable => "registry unreachable",
        DenialReason::DigestRequired => "digest required",
        DenialReason::InvalidReference => "invalid image reference",
        DenialReason::AttestationMissing => "required attestation missing",
        DenialReason::AttestationUnmet => "attestation does not meet the policy",
    }
}

/// `image=digest` for each tagged image that passed, for the API server's audit log.
fn pinned_images(results: &[PolicyResult<'_>]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for r in results {
        for v in &r.verdicts {
            if let (None, Some(d)) = (v.reason, &v.digest) {
                let entry = format!("{}={d}", v.image);
                if !seen.contains(&entry) {
                    seen.push(entry);
                }
            }
        }
    }
    seen.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheConfig;
    use crate::testing::{bundle, no_registry, policy, TestKey};
    use tokio::sync::mpsc;

    const FIXTURES: [(&str, &str); 16] = [
        (
            "pod-create",
            include_str!("../tests/fixtures/pod-create.json"),
        ),
        (
            "pod-from-replicaset-create",
            include_str!("../tests/fixtures/pod-from-replicaset-create.json"),
        ),
        (
            "pod-ephemeral-update",
            include_str!("../tests/fixtures/pod-ephemeral-update.json"),
        ),
        (
            "deployment-create",
            include_str!("../tests/fixtures/deployment-create.json"),
        ),
        (
            "deployment-image-update",
            include_str!("../tests/fixtures/deployment-image-update.json"),
        ),
        (
            "deployment-scale-down-update",
            include_str!("../tests/fixtures/deployment-scale-down-update.json"),
        ),
        (
            "deployment-scale-subresource-update",
            include_str!("../tests/fixtures/deployment-scale-subresource-update.json"),
        ),
        (
            "deployment-scale-up-update",
            include_str!("../tests/fixtures/deployment-scale-up-update.json"),
        ),
        (
            "deployment-spec-update",
            include_str!("../tests/fixtures/deployment-spec-update.json"),
        ),
        (
            "replicaset-create",
            include_str!("../tests/fixtures/replicaset-create.json"),
        ),
        (
            "replicaset-scale-up-update",
            include_str!("../tests/fixtures/replicaset-scale-up-update.json"),
        ),
        (
            "statefulset-create",
            include_str!("../tests/fixtures/statefulset-create.json"),
        ),
        (
            "daemonset-create",
            include_str!("../tests/fixtures/daemonset-create.json"),
        ),
        (
            "job-create",
            include_str!("../tests/fixtures/job-create.json"),
        ),
        (
            "cronjob-create",
            include_str!("../tests/fixtures/cronjob-create.json"),
        ),
        (
            "replicationcontroller-create",
            include_str!("../tests/fixtures/replicationcontroller-create.json"),
        ),
    ];

    struct Images<'a> {
        image: &'a str,
        init: &'a str,
        ephemeral: &'a str,
        old: &'a str,
    }

    fn request(name: &str, ns: &str, i: &Images<'_>) -> AdmissionRequest<DynamicObject> {
        let (_, text) = FIXTURES
            .iter()
            .find(|(n, _)| *n == name)
            .expect("fixture exists");
        let text = text
            .replace("{{UID}}", &uuid::Uuid::new_v4().to_string())
            .replace("{{NAMESPACE}}", ns)
            .replace("{{IMAGE}}", i.image)
            .replace("{{INIT_IMAGE}}", i.init)
            .replace("{{EPHEMERAL_IMAGE}}", i.ephemeral)
            .replace("{{OLD_IMAGE}}", i.old);
        let review: kube_core::admission::AdmissionReview<DynamicObject> =
            serde_json::from_str(&text).expect("fixture parses");
        review.try_into().expect("fixture has a request")
    }

    struct Fixture {
        admission: Admission,
        trust: Arc<Trust>,
        decisions: mpsc::Receiver<AdmissionDecision>,
        glass: Journal,
        key: TestKey,
        signed: String,
        unsigned: String,
    }

    /// A verifier whose one witness `w` signed `signed`; `unsigned` has no signature and
    /// its registry does not answer.
    async fn fixture(policies: Vec<signet_core::SecurityPolicy>) -> Fixture {
        let key = TestKey::new();
        let trust = Arc::new(Trust::new("c1", no_registry(), CacheConfig::default()));
        trust.install(bundle(1, policies, vec![key.trusted("w", "1")]));
        let digest = Digest::of(b"signed");
        let signed = format!("127.0.0.1:1/team/app@{digest}");
        trust
            .learn(&key.record("w", "127.0.0.1:1/team/app", &digest))
            .await
            .expect("learn");
        let (reporter, decisions) = Reporter::for_tests();
        let glass = Journal::open(None).expect("in-memory journal");
        Fixture {
            admission: Admission::new(
                trust.clone(),
                reporter,
                glass.clone(),
                "c1",
                Duration::from_secs(2),
            ),
            glass,
            trust,
            decisions,
            key,
            signed,
            unsigned: format!("127.0.0.1:1/team/other@{}", Digest::of(b"unsigned")),
        }
    }

    fn images<'a>(f: &'a Fixture, image: &'a str) -> Images<'a> {
        Images {
            image,
            init: &f.signed,
            ephemeral: &f.signed,
            old: &f.signed,
        }
    }

    fn drain(rx: &mut mpsc::Receiver<AdmissionDecision>) -> Vec<AdmissionDecision> {
        let mut out = Vec::new();
        while let Ok(d) = rx.try_recv() {
            out.push(d);
        }
        out
    }

    #[test]
    fn every_fixture_yields_its_images() {
        let i = Images {
            image: "reg/app:v1",
            init: "reg/init:v1",
            ephemeral: "reg/debug:v1",
            old: "reg/app:v0",
        };
        for (name, _) in FIXTURES {
            let req = request(name, "prod", &i);
            let got = images_to_check(&req).map(|(_, imgs)| imgs);
            let want: Option<Vec<&str>> = match name {
                "deployment-scale-down-update"
                | "deployment-scale-subresource-update"
                | "replicaset-scale-up-update" => None,
                "pod-ephemeral-update" => Some(vec!["reg/app:v1", "reg/init:v1", "reg/debug:v1"]),
                _ => Some(vec!["reg/app:v1", "reg/init:v1"]),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[tokio::test]
    async fn namespaces_without_an_enabled_policy_are_not_checked() {
        let mut f = fixture(vec![policy("p", &["w"], "prod", PolicyMode::Enforce)]).await;
        let unsigned = f.unsigned.clone();
        let r = f
            .admission
            .validate(
                &request("pod-create", "dev", &images(&f, &unsigned)),
                Sender::Trusted,
            )
            .await;
        assert!(r.allowed);
        assert!(drain(&mut f.decisions).is_empty());
    }

    #[tokio::test]
    async fn enforce_denies_naming_image_policy_and_reason() {
        let mut f = fixture(vec![policy(
            "prod-images",
            &["w"],
            "prod",
            PolicyMode::Enforce,
        )])
        .await;
        let signed = f.signed.clone();
        let ok = f
            .admission
            .validate(
                &request("deployment-create", "prod", &images(&f, &signed)),
                Sender::Trusted,
            )
            .await;
        assert!(ok.allowed, "{}", ok.result.message);
        let unsigned = f.unsigned.clone();
        let denied = f
            .admission
            .validate(
                &request("deployment-create", "prod", &images(&f, &unsigned)),
                Sender::Trusted,
            )
            .await;
        assert!(!denied.allowed);
        let m = &denied.result.message;
        assert!(m.contains(&unsigned), "{m}");
        assert!(m.contains("policy \"prod-images\""), "{m}");
        assert!(m.contains("registry unreachable"), "{m}");
        // A refusal reaches kubectl as 403 Forbidden, not the API server's default 400.
        let status = serde_json::to_value(&denied.result).expect("status json");
        assert_eq!(status["code"], 403, "{status}");
        assert_eq!(status["reason"], "Forbidden", "{status}");
        assert_eq!(status["status"], "Failure", "{status}");
        let d = drain(&mut f.decisions);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].outcome, AdmissionOutcome::Allowed);
        assert_eq!(d[1].outcome, AdmissionOutcome::Denied);
        assert_eq!(d[1].kind, "Deployment");
        assert_eq!(
            d[1].images[0].reason,
            Some(DenialReason::RegistryUnreachable)
        );
        assert_eq!(d[1].images[1].reason, None, "the signed init image passed");
        assert_eq!(d[1].images[1].witnesses, ["w"]);
    }

    #[tokio::test]
    async fn warn_and_dry_run_allow() {
        let mut f = fixture(vec![
            policy("warned", &["w"], "prod", PolicyMode::Warn),
            policy("trial", &["w"], "prod", PolicyMode::DryRun),
        ])
        .await;
        let unsigned = f.unsigned.clone();
        let r = f
            .admission
            .validate(
                &request("pod-create", "prod", &images(&f, &unsigned)),
                Sender::Trusted,
            )
            .await;
        assert!(r.allowed);
        let warnings = r.warnings.unwrap_or_default();
        assert_eq!(warnings.len(), 1, "only warn warns: {warnings:?}");
        assert!(warnings[0].contains("warned"), "{warnings:?}");
        let outcomes: Vec<_> = drain(&mut f.decisions).iter().map(|d| d.outcome).collect();
        assert_eq!(
            outcomes,
            [AdmissionOutcome::Warned, AdmissionOutcome::WouldDeny]
        );
    }

    #[test]
    fn warnings_fit_what_the_api_server_passes_on() {
        let long = |i: usize| {
            format!(
                "signet (warn): image \"reg.example/team/app:t{i}\" (sha256:{}) is not allowed in namespace \"prod\" by policy \"p\": unsigned: no signature artifact reg.example/team/app:sha256-{}.sig; not signed by release",
                "a".repeat(64),
                "a".repeat(64)
            )
        };
        let short = |i: usize| {
            format!("signet (warn): image \"reg.example/team/app:t{i}\" is not allowed in namespace \"prod\" by policy \"p\": unsigned")
        };
        // A few: sent in full.
        let full: Vec<String> = (0..3).map(long).collect();
        assert_eq!(
            fit_warnings(full.clone(), (0..3).map(short).collect()),
            full
        );
        // Sixteen images (the API server cut the full warning to its first 256
        // characters): one short line each.
        let fitted = fit_warnings(
            vec![(0..16).map(long).collect::<Vec<_>>().join("; ")],
            (0..16).map(short).collect(),
        );
        assert_eq!(fitted, (0..16).map(short).collect::<Vec<_>>());
        // More than fit: as many as fit, each under 256 characters, and a count.
        let huge = |i: usize| format!("{}{}", short(i), "x".repeat(300));
        let fitted = fit_warnings(vec![long(0).repeat(100)], (0..100).map(huge).collect());
        let total: usize = fitted.iter().map(|w| w.len() + 10).sum();
        assert!(total <= WARNINGS_BUDGET, "{total}");
        assert!(fitted.iter().all(|w| w.len() <= WARNING_LINE), "{fitted:?}");
        let last = fitted.last().expect("lines");
        assert!(
            last.starts_with(&format!(
                "signet: {} of 100 warnings left out",
                100 - (fitted.len() - 1)
            )),
            "{last}"
        );
    }

    #[tokio::test]
    async fn break_glass_only_where_the_policy_allows_it() {
        let mut allows = policy("glass", &["w"], "prod", PolicyMode::Enforce);
        allows.allow_break_glass = true;
        let strict = policy("strict", &["w"], "secure", PolicyMode::Enforce);
        let mut f = fixture(vec![allows, strict]).await;
        let unsigned = f.unsigned.clone();
        let with_glass = |ns: &str| {
            let mut req = request("deployment-create", ns, &images(&f, &unsigned));
            if let Some(o) = req.object.as_mut() {
                o.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(BREAK_GLASS_ANNOTATION.into(), "incident 42".into());
            }
            req
        };
        let r = f
            .admission
            .validate(&with_glass("prod"), Sender::Trusted)
            .await;
        assert!(r.allowed);
        assert!(r.warnings.unwrap_or_default()[0].contains("break-glass (incident 42)"));
        let r = f
            .admission
            .validate(&with_glass("secure"), Sender::Trusted)
            .await;
        assert!(!r.allowed);
        assert!(
            r.result.message.contains("does not honour"),
            "{}",
            r.result.message
        );
        // The break-glass decision waits in the journal, not in the droppable queue.
        let kept = f.glass.pending();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].outcome, AdmissionOutcome::BreakGlass);
        assert_eq!(kept[0].break_glass.as_deref(), Some("incident 42"));
        // Who asked: the review's userInfo, for the audit (kubectl's user, found missing
        // by services/cli/tests/kubernetes.rs against a real API server).
        assert_eq!(kept[0].user.as_deref(), Some("kubernetes-admin"));
        let d = drain(&mut f.decisions);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].outcome, AdmissionOutcome::Denied);
    }

    #[tokio::test]
    async fn unverified_senders_and_dry_runs_are_answered_not_recorded() {
        let mut allows = policy("glass", &["w"], "prod", PolicyMode::Enforce);
        allows.allow_break_glass = true;
        let mut f = fixture(vec![allows]).await;
        let unsigned = f.unsigned.clone();
        let mut req = request("deployment-create", "prod", &images(&f, &unsigned));
        if let Some(o) = req.object.as_mut() {
            o.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(BREAK_GLASS_ANNOTATION.into(), "incident 7".into());
        }
        // A client without a verified certificate: answered, no break-glass, no record.
        let r = f.admission.validate(&req, Sender::Unverified).await;
        assert!(!r.allowed);
        assert!(
            r.result.message.contains("authenticated API server"),
            "{}",
            r.result.message
        );
        let plain = request("pod-create", "prod", &images(&f, &unsigned));
        assert!(
            !f.admission
                .validate(&plain, Sender::Unverified)
                .await
                .allowed
        );
        // A dry run from the API server: break-glass answered, nothing recorded.
        req.dry_run = true;
        let r = f.admission.validate(&req, Sender::Trusted).await;
        assert!(r.allowed, "{}", r.result.message);
        let mut dry = plain.clone();
        dry.dry_run = true;
        assert!(!f.admission.validate(&dry, Sender::Trusted).await.allowed);
        assert!(drain(&mut f.decisions).is_empty());
        assert!(f.glass.pending().is_empty());
        // The same review for real is recorded.
        assert!(!f.admission.validate(&plain, Sender::Trusted).await.allowed);
        assert_eq!(drain(&mut f.decisions).len(), 1);
    }

    #[tokio::test]
    async fn exemptions_digests_and_updates() {
        let mut digest_only = policy("pinned", &["w"], "prod", PolicyMode::Enforce);
        digest_only.require_digest = true;
        let mut f = fixture(vec![digest_only]).await;
        let signed = f.signed.clone();
        // The exempt pause image needs nothing; a tag is refused outright.
        let r = f
            .admission
            .validate(
                &request(
                    "pod-create",
                    "prod",
                    &images(&f, "registry.k8s.io/pause:3.9"),
                ),
                Sender::Trusted,
            )
            .await;
        assert!(r.allowed, "{}", r.result.message);
        let r = f
            .admission
            .validate(
                &request("pod-create", "prod", &images(&f, "127.0.0.1:1/team/app:v1")),
                Sender::Trusted,
            )
            .await;
        assert!(!r.allowed);
        assert!(
            r.result.message.contains("digest required"),
            "{}",
            r.result.message
        );
        drain(&mut f.decisions);
        // Scale-downs and the scale subresource are not checked at all, nor is the
        // Deployment controller growing a ReplicaSet whose template is unchanged (its
        // Pods are checked one by one as it creates them).
        for name in [
            "deployment-scale-down-update",
            "deployment-scale-subresource-update",
            "replicaset-scale-up-update",
        ] {
            let unsigned = f.unsigned.clone();
            let r = f
                .admission
                .validate(
                    &request(name, "prod", &images(&f, &unsigned)),
                    Sender::Trusted,
                )
                .await;
            assert!(r.allowed, "{name}");
        }
        assert!(drain(&mut f.decisions).is_empty());
        // A rollout to an unsigned image is.
        let unsigned = f.unsigned.clone();
        let mut i = images(&f, &unsigned);
        i.old = &signed;
        let r = f
            .admission
            .validate(
                &request("deployment-image-update", "prod", &i),
                Sender::Trusted,
            )
            .await;
        assert!(!r.allowed);
    }

    #[tokio::test]
    async fn revocation_denies_from_the_cache() {
        let mut f = fixture(vec![policy("p", &["w"], "prod", PolicyMode::Enforce)]).await;
        let signed = f.signed.clone();
        let mut revoked = bundle(
            2,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![],
        );
        revoked.revoked_keys = vec![f.key.trusted("w", "1")];
        f.trust.install(revoked);
        let r = f
            .admission
            .validate(
                &request("pod-create", "prod", &images(&f, &signed)),
                Sender::Trusted,
            )
            .await;
        assert!(!r.allowed);
        assert!(
            r.result.message.contains("witness or key version revoked"),
            "{}",
            r.result.message
        );
        drain(&mut f.decisions);
    }

    /// M8: the bundle revokes witness `w`'s signature of a digest, made with key version
    /// 1. After a rotation, a valid signature of the same digest by version 2, published
    /// under another repository, must not admit it.
    #[tokio::test]
    async fn a_revocation_holds_for_every_key_and_repository_of_the_witness() {
        let old = TestKey::new();
        let new = TestKey::new();
        let digest = Digest::of(b"revoked image");
        let revoked = old.record("w", "127.0.0.1:1/team/app", &digest);
        let mut b = bundle(
            1,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![old.trusted("w", "1"), new.trusted("w", "2")],
        );
        b.revoked_signatures.push(
            signet_core::RevokedSignature::of(&signet_core::SignatureRecord {
                revoked: Some(signet_core::Revocation {
                    at: Utc::now(),
                    by: "token:admin".into(),
                    reason: "built from an unreviewed branch".into(),
                }),
                ..revoked
            })
            .expect("revoked entry"),
        );
        let trust = Arc::new(Trust::new("c1", no_registry(), CacheConfig::default()));
        trust.install(b);
        let mut resigned = new.record("w", "127.0.0.1:1/attacker/copy", &digest);
        resigned.key_version = "2".into();
        let learned = trust.learn(&resigned).await;
        assert!(learned.is_err(), "the new key's signature is refused");
        let (reporter, _rx) = Reporter::for_tests();
        let a = Admission::new(
            trust,
            reporter,
            Journal::open(None).expect("journal"),
            "c1",
            Duration::from_secs(1),
        );
        let copy = format!("127.0.0.1:1/attacker/copy@{digest}");
        let i = Images {
            image: &copy,
            init: &copy,
            ephemeral: &copy,
            old: &copy,
        };
        let r = a
            .validate(&request("pod-create", "prod", &i), Sender::Trusted)
            .await;
        assert!(!r.allowed);
        assert!(r.result.message.contains("revoked"), "{}", r.result.message);
    }

    #[tokio::test]
    async fn no_bundle_no_admission() {
        let trust = Arc::new(Trust::new("c1", no_registry(), CacheConfig::default()));
        let (reporter, _rx) = Reporter::for_tests();
        let glass = Journal::open(None).expect("in-memory journal");
        let a = Admission::new(trust, reporter, glass, "c1", Duration::from_secs(1));
        let i = Images {
            image: "reg/app:v1",
            init: "reg/init:v1",
            ephemeral: "x",
            old: "x",
        };
        let r = a
            .validate(&request("pod-create", "prod", &i), Sender::Trusted)
            .await;
        assert!(!r.allowed);
        assert!(r.result.message.contains("no trust bundle"));
    }

    #[tokio::test]
    async fn mutate_annotates_verified_images_only() {
        let f = fixture(vec![policy("p", &["w"], "prod", PolicyMode::Enforce)]).await;
        let unsigned = f.unsigned.clone();
        let r = f
            .admission
            .mutate(&request("pod-create", "prod", &images(&f, &unsigned)))
            .await;
        assert!(r.allowed);
        let patch: Value = serde_json::from_slice(&r.patch.expect("a patch")).expect("json");
        assert_eq!(patch[0]["op"], "add");
        assert_eq!(
            patch[0]["path"],
            "/metadata/annotations/signet.dev~1verified-images"
        );
        let listed: Value =
            serde_json::from_str(patch[0]["value"].as_str().expect("string")).expect("json");
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(listed[0]["image"], f.signed.as_str());
        assert_eq!(listed[0]["witnesses"], json!(["w"]));
    }
}
