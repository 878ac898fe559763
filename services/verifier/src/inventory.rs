//! What runs: the verifier watches Pods through the API server (kube-runtime's watcher),
//! judges each container under the cluster's policies from the trust cache, judges them
//! again whenever trust changes (a bundle, a revocation), and reports them to the control
//! plane: a full inventory after each (re)list of the watch and every
//! `full_sync_interval`, and the changes every `report_interval`.
//!
//! Memory: only what a report needs is kept per container (names, the image, its digest
//! and standing), not the Pod objects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use signet_core::admission::BREAK_GLASS_ANNOTATION;
use signet_core::{
    DenialReason, Digest, ImageRef, InventoryReport, InventorySync, RunningContainer, Standing,
};
use signet_runtime::settings::InventorySettings;
use tokio_util::sync::CancellationToken;

use crate::control::ControlPlane;
use crate::namespaces::Namespaces;
use crate::trust::{NamespaceLabels, Snapshot, Trust};

/// How long judging one container may take (a tag resolved, a `.sig` fetched).
const JUDGE_BUDGET: Duration = Duration::from_secs(5);
/// Containers judged at once. Judging runs beside the watch, never in it: a Pod whose tag
/// must be resolved at a slow registry delays neither the next Pod event nor the others.
const JUDGE_CONCURRENCY: usize = 16;
/// Containers per report; a full inventory is sent in pages of this size.
const PAGE: usize = 2_000;
/// The longest the verifier stays silent: with nothing changed it still reports (an
/// empty report), so the control plane can tell a quiet cluster from a verifier that is
/// down (`stale` after `gateway.inventory_stale_after`, 120 s).
const HEARTBEAT: Duration = Duration::from_secs(30);

/// A container as the watch last saw it, and its standing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    namespace: String,
    pod: String,
    container: String,
    image: String,
    /// From the kubelet's `imageID`, or the spec.
    digest: Option<Digest>,
    break_glass: bool,
}

type Key = (String, String); // (pod uid, container)

#[derive(Default)]
struct State {
    seen: BTreeMap<Key, Seen>,
    judged: HashMap<Key, RunningContainer>,
    /// Keys to report at the next flush, and pods gone.
    changed: Vec<Key>,
    removed: Vec<String>,
    full_due: bool,
}

/// The `sha256:…` of an `imageID` (`docker-pullable://repo@sha256:…`, `repo@sha256:…`,
/// `sha256:…`) or of an image reference.
fn digest_of(s: &str) -> Option<Digest> {
    let tail = s.rsplit_once('@').map_or(s, |(_, d)| d);
    let tail = tail.rsplit_once("://").map_or(tail, |(_, d)| d);
    tail.starts_with("sha256:")
        .then(|| Digest::parse(tail).ok())
        .flatten()
}

/// The containers of a Pod (init and ephemeral ones included) with the digest each runs.
fn containers_of(pod: &Pod) -> Option<(String, Vec<(String, Seen)>)> {
    let meta = &pod.metadata;
    let uid = meta.uid.clone()?;
    let namespace = meta.namespace.clone()?;
    let name = meta.name.clone()?;
    let break_glass = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BREAK_GLASS_ANNOTATION));
    let spec = pod.spec.as_ref()?;
    let status = pod.status.as_ref();
    let mut ids: HashMap<&str, &str> = HashMap::new();
    for statuses in [
        status.and_then(|s| s.container_statuses.as_ref()),
        status.and_then(|s| s.init_container_statuses.as_ref()),
        status.and_then(|s| s.ephemeral_container_statuses.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        for cs in statuses {
            ids.insert(cs.name.as_str(), cs.image_id.as_str());
        }
    }
    let mut out = Vec::new();
    let mut add = |container: &str, image: Option<&String>| {
        let Some(image) = image else { return };
        let digest = ids
            .get(container)
            .and_then(|id| digest_of(id))
            .or_else(|| digest_of(image));
        out.push((
            container.to_owned(),
            Seen {
                namespace: namespace.clone(),
                pod: name.clone(),
                container: container.to_owned(),
                image: image.clone(),
                digest,
                break_glass,
            },
        ));
    };
    for c in &spec.containers {
        add(&c.name, c.image.as_ref());
    }
    for c in spec.init_containers.iter().flatten() {
        add(&c.name, c.image.as_ref());
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        add(&c.name, c.image.as_ref());
    }
    Some((uid, out))
}

/// Judges one container under the policies of its namespace: revoked if any policy finds
/// a revoked signature, trusted (or exempt) only if every policy is satisfied.
async fn judge(
    trust: &Trust,
    snapshot: &Snapshot,
    namespaces: &Namespaces,
    uid: &str,
    s: &Seen,
) -> RunningContainer {
    let deadline = tokio::time::Instant::now() + JUDGE_BUDGET;
    let labels = namespaces.cached(&s.namespace);
    let mut running = RunningContainer {
        namespace: s.namespace.clone(),
        namespace_labels: labels.as_ref().map(|l| (**l).clone()),
        pod: s.pod.clone(),
        pod_uid: uid.to_owned(),
        container: s.container.clone(),
        image: s.image.clone(),
        digest: s.digest.clone(),
        standing: Standing::Untrusted,
        policy: None,
        witnesses: Vec::new(),
        reason: None,
        evaluated_at: chrono::Utc::now(),
    };
    let policies: Vec<_> = snapshot
        .applicable(&s.namespace, NamespaceLabels::of(labels.as_ref()))
        .collect();
    if policies.is_empty() {
        running.reason = Some(format!(
            "no enabled policy covers namespace {:?}",
            s.namespace
        ));
        return running;
    }
    let image = match ImageRef::parse(&s.image) {
        Ok(i) => i,
        Err(e) => {
            running.reason = Some(format!("invalid image reference: {e}"));
            return running;
        }
    };
    let digest = match &s.digest {
        Some(d) => d.clone(),
        None => match trust.resolve(&image, deadline).await {
            Ok(d) => d,
            Err(f) => {
                running.reason = Some(f.detail);
                return running;
            }
        },
    };
    running.digest = Some(digest.clone());
    let mut standing = Standing::Exempt;
    for policy in policies {
        running
            .policy
            .get_or_insert_with(|| policy.policy.name.clone());
        if policy.exempts(&image) {
            continue;
        }
        let check = trust
            .check(snapshot, policy, &image, &digest, deadline)
            .await;
        for w in check.witnesses {
            if !running.witnesses.iter().any(|x| **x == *w) {
                running.witnesses.push(w.to_string());
            }
        }
        // As at admission: signed as the policy asks, then attested as it requires.
        let failure = match check.failure {
            Some(f) => Some(f),
            None => {
                trust
                    .check_attestations(snapshot, policy, &image, &digest, deadline)
                    .await
            }
        };
        match failure {
            None => {
                if standing == Standing::Exempt {
                    standing = Standing::Trusted;
                }
            }
            Some(f) => {
                running.policy = Some(policy.policy.name.clone());
                running.reason = Some(format!(
                    "{}: {}",
                    crate::admission::reason_words(f.reason),
                    f.detail
                ));
                if f.reason == DenialReason::Revoked {
                    standing = Standing::Revoked;
                    break;
                }
                standing = Standing::Untrusted;
            }
        }
    }
    if standing == Standing::Untrusted && s.break_glass {
        standing = Standing::BreakGlass;
    }
    running.standing = standing;
    running
}

/// Sets `signet_running_containers{standing}` from what the inventory holds.
fn count_standings(st: &State) {
    let mut counts: HashMap<Standing, i64> = Standing::ALL.iter().map(|s| (*s, 0)).collect();
    for r in st.judged.values() {
        *counts.entry(r.standing).or_default() += 1;
    }
    let family = &signet_runtime::metrics::metrics().running_containers;
    for (standing, n) in counts {
        family
            .get_or_create(&signet_runtime::metrics::StandingLabels {
                standing: standing.as_str().to_owned(),
            })
            .set(n);
    }
}

/// Runs until `shutdown`: the watch, the judging and the reports.
pub async fn run(
    settings: InventorySettings,
    cluster: String,
    trust: Arc<Trust>,
    control: ControlPlane,
    events: crate::kube_events::KubeEvents,
    namespaces: Namespaces,
    shutdown: CancellationToken,
) {
    // The API server may not be reachable yet (or the kubeconfig not written): try again
    // until it is, saying why once.
    let mut said = false;
    let client = loop {
        match client(&settings).await {
            Ok(c) => break c,
            Err(e) => {
                if !said {
                    tracing::warn!(error = %e, "the inventory cannot reach the API server yet; trying again every 2 s");
                    said = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    events.connect(client.clone(), &cluster);
    let mut tasks = vec![tokio::spawn(namespaces.clone().watch(
        client.clone(),
        settings.namespaces.clone(),
        shutdown.clone(),
    ))];
    let state = Arc::new(tokio::sync::Mutex::new(State::default()));
    // Each watch with its scope: one namespace, or all (None).
    let watches: Vec<(Option<String>, kube::Api<Pod>)> = if settings.namespaces.is_empty() {
        vec![(None, kube::Api::all(client))]
    } else {
        settings
            .namespaces
            .iter()
            .map(|ns| (Some(ns.clone()), kube::Api::namespaced(client.clone(), ns)))
            .collect()
    };
    for (scope, api) in watches {
        tasks.push(tokio::spawn(watch(
            api,
            scope,
            trust.clone(),
            namespaces.clone(),
            state.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(rejudge(
        trust.clone(),
        namespaces.clone(),
        state.clone(),
        events,
        shutdown.clone(),
    )));
    report(settings, cluster, control, state, shutdown).await;
    for t in tasks {
        let _ = t.await;
    }
}

async fn client(settings: &InventorySettings) -> Result<kube::Client, String> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("verifier.inventory.kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| format!("verifier.inventory.kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no in-cluster config or KUBECONFIG: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Follows one watch: each Pod change is judged and queued for the next report; a
/// (re)list ends with a full inventory.
async fn watch(
    api: kube::Api<Pod>,
    scope: Option<String>,
    trust: Arc<Trust>,
    namespaces: Namespaces,
    state: Arc<tokio::sync::Mutex<State>>,
    shutdown: CancellationToken,
) {
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut listing: Option<BTreeMap<Key, Seen>> = None;
    let judging = Arc::new(tokio::sync::Semaphore::new(JUDGE_CONCURRENCY));
    loop {
        let Some(event) = crate::namespaces::next_event(&mut stream, &shutdown, "Pod").await else {
            return;
        };
        match event {
            watcher::Event::Init => listing = Some(BTreeMap::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(l), Some((uid, cs))) = (listing.as_mut(), containers_of(&pod)) {
                    for (name, s) in cs {
                        l.insert((uid.clone(), name), s);
                    }
                }
            }
            watcher::Event::InitDone => {
                let listed = listing.take().unwrap_or_default();
                let snapshot = trust.snapshot();
                // The listing moves through the judging and comes back with its verdicts:
                // with 10,000 Pods, a copy of it is megabytes the allocator keeps.
                let verdicts: Vec<(Key, Seen, RunningContainer)> = futures::stream::iter(listed)
                    .map(|(key, s)| {
                        let (trust, snapshot, namespaces) =
                            (trust.clone(), snapshot.clone(), namespaces.clone());
                        async move {
                            let r = judge(&trust, &snapshot, &namespaces, &key.0, &s).await;
                            (key, s, r)
                        }
                    })
                    .buffer_unordered(JUDGE_CONCURRENCY)
                    .collect()
                    .await;
                let mut st = state.lock().await;
                // What this watch listed replaces everything it knew in its scope, so a
                // Pod deleted while the watch was down (even the last of its namespace)
                // goes too.
                st.seen
                    .retain(|_, s| scope.as_ref().is_some_and(|ns| *ns != s.namespace));
                for (key, s, r) in verdicts {
                    st.judged.insert(key.clone(), r);
                    st.seen.insert(key, s);
                }
                let State { seen, judged, .. } = &mut *st;
                judged.retain(|k, _| seen.contains_key(k));
                st.full_due = true;
                tracing::info!(containers = st.seen.len(), "inventory listed");
            }
            watcher::Event::Apply(pod) => {
                let Some((uid, cs)) = containers_of(&pod) else {
                    continue;
                };
                let snapshot = trust.snapshot();
                for (name, s) in cs {
                    let key = (uid.clone(), name);
                    {
                        let mut st = state.lock().await;
                        if st.seen.get(&key) == Some(&s) {
                            continue;
                        }
                        st.seen.insert(key.clone(), s.clone());
                    }
                    tokio::spawn(judge_change(
                        trust.clone(),
                        snapshot.clone(),
                        namespaces.clone(),
                        state.clone(),
                        judging.clone(),
                        key,
                        s,
                    ));
                }
            }
            watcher::Event::Delete(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                let mut st = state.lock().await;
                st.seen.retain(|k, _| k.0 != uid);
                st.judged.retain(|k, _| k.0 != uid);
                st.removed.push(uid);
            }
        }
    }
}

/// Judges one changed container beside the watch; the verdict is kept only if the watch
/// has not seen the container change again (or go) meanwhile.
async fn judge_change(
    trust: Arc<Trust>,
    snapshot: Arc<Snapshot>,
    namespaces: Namespaces,
    state: Arc<tokio::sync::Mutex<State>>,
    judging: Arc<tokio::sync::Semaphore>,
    key: Key,
    s: Seen,
) {
    let Ok(_permit) = judging.acquire().await else {
        return;
    };
    let r = judge(&trust, &snapshot, &namespaces, &key.0, &s).await;
    let mut st = state.lock().await;
    if st.seen.get(&key) == Some(&s) {
        st.judged.insert(key.clone(), r);
        st.changed.push(key);
    }
}

/// Judges every container again when the trust snapshot changes (a bundle, a
/// revocation) or a namespace's labels do; a changed standing is reported with the next
/// changes.
async fn rejudge(
    trust: Arc<Trust>,
    namespaces: Namespaces,
    state: Arc<tokio::sync::Mutex<State>>,
    events: crate::kube_events::KubeEvents,
    shutdown: CancellationToken,
) {
    let mut last = trust.snapshot();
    let mut last_labels = namespaces.generation();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let now = trust.snapshot();
        let labels = namespaces.generation();
        if Arc::ptr_eq(&now, &last) && labels == last_labels {
            continue;
        }
        last = now.clone();
        last_labels = labels;
        let seen: Vec<(Key, Seen)> = state
            .lock()
            .await
            .seen
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let mut verdicts = futures::stream::iter(seen)
            .map(|(key, s)| {
                let (trust, now, namespaces) = (trust.clone(), now.clone(), namespaces.clone());
                async move {
                    let r = judge(&trust, &now, &namespaces, &key.0, &s).await;
                    (key, s, r)
                }
            })
            .buffer_unordered(JUDGE_CONCURRENCY);
        while let Some((key, s, r)) = verdicts.next().await {
            let mut st = state.lock().await;
            // The watch saw it change (or go) meanwhile: its own verdict is newer.
            if st.seen.get(&key) != Some(&s) {
                continue;
            }
            let previous = st.judged.get(&key).map(|old| old.standing);
            let changed = st.judged.get(&key).is_none_or(|old| {
                old.standing != r.standing
                    || old.witnesses != r.witnesses
                    || old.namespace_labels != r.namespace_labels
            });
            if let Some(previous) = previous.filter(|p| r.standing.worse_than(*p)) {
                let reason = if r.standing == Standing::Revoked {
                    crate::kube_events::REVOKED
                } else {
                    crate::kube_events::UNTRUSTED
                };
                events.publish(
                    crate::kube_events::Regarding {
                        kind: "Pod",
                        namespace: &r.namespace,
                        name: &r.pod,
                    },
                    true,
                    reason,
                    "Verify",
                    &format!(
                        "container {} runs {} ({}), {} before, now {}: {}",
                        r.container,
                        r.image,
                        r.digest
                            .as_ref()
                            .map(|d| d.as_str())
                            .unwrap_or("digest unknown"),
                        previous,
                        r.standing,
                        r.reason.as_deref().unwrap_or("")
                    ),
                );
            }
            if changed && st.seen.contains_key(&key) {
                st.judged.insert(key.clone(), r);
                st.changed.push(key);
            }
        }
    }
}

/// Sends the changes every `report_interval`, and a full inventory when one is due.
async fn report(
    settings: InventorySettings,
    cluster: String,
    control: ControlPlane,
    state: Arc<tokio::sync::Mutex<State>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.report_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full = Instant::now();
    let mut last_sent = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let full_due = {
            let mut st = state.lock().await;
            count_standings(&st);
            if last_full.elapsed() >= settings.full_sync_interval {
                st.full_due = true;
            }
            st.full_due
        };
        if full_due {
            let (keys, removed) = {
                let mut st = state.lock().await;
                st.full_due = false;
                st.changed.clear();
                let removed = std::mem::take(&mut st.removed);
                (st.judged.keys().cloned().collect::<Vec<_>>(), removed)
            };
            if send_full(&control, &cluster, &state, keys, removed).await {
                last_full = Instant::now();
                last_sent = last_full;
            } else {
                state.lock().await.full_due = true;
            }
            continue;
        }
        let (keys, mut removed) = {
            let mut st = state.lock().await;
            if st.changed.is_empty() && st.removed.is_empty() && last_sent.elapsed() < HEARTBEAT {
                continue;
            }
            let mut keys = std::mem::take(&mut st.changed);
            keys.sort();
            keys.dedup();
            (keys, std::mem::take(&mut st.removed))
        };
        // In pages, as a full inventory is: a trust change that alters thousands of
        // standings at once must not make one report the gateway refuses as too large
        // (it takes at most 5,000 containers) and that would be sent again every tick.
        let mut rest: &[Key] = &keys;
        loop {
            let (page, more) = rest.split_at(rest.len().min(PAGE));
            let containers: Vec<RunningContainer> = {
                let st = state.lock().await;
                page.iter()
                    .filter_map(|k| st.judged.get(k).cloned())
                    .collect()
            };
            let report = InventoryReport {
                cluster: cluster.clone(),
                sync: None,
                containers,
                removed_pods: std::mem::take(&mut removed),
            };
            last_sent = Instant::now();
            if let Err(e) = control.inventory(&report).await {
                tracing::warn!(error = %e, "reporting inventory changes failed; they are sent again");
                let mut st = state.lock().await;
                st.changed.extend_from_slice(rest);
                st.removed.extend(report.removed_pods);
                break;
            }
            rest = more;
            if rest.is_empty() {
                break;
            }
        }
    }
}

/// A full inventory in pages, each read from the state as it is sent (one page of
/// containers in memory, not a copy of the inventory); false when a page failed (it is
/// sent whole again later). A container that changes or goes between two pages is also
/// in the next changes, and the last page removes what the sync did not mention.
async fn send_full(
    control: &ControlPlane,
    cluster: &str,
    state: &tokio::sync::Mutex<State>,
    keys: Vec<Key>,
    removed: Vec<String>,
) -> bool {
    let id = uuid::Uuid::now_v7().to_string();
    let pages: Vec<&[Key]> = if keys.is_empty() {
        vec![&[]]
    } else {
        keys.chunks(PAGE).collect()
    };
    let last = pages.len() - 1;
    for (i, page) in pages.into_iter().enumerate() {
        let page: Vec<RunningContainer> = {
            let st = state.lock().await;
            page.iter()
                .filter_map(|k| st.judged.get(k).cloned())
                .collect()
        };
        let report = InventoryReport {
            cluster: cluster.to_owned(),
            sync: Some(InventorySync {
                id: id.clone(),
                page: i as u32,
                last: i == last,
            }),
            containers: page,
            removed_pods: if i == 0 { removed.clone() } else { Vec::new() },
        };
        if let Err(e) = control.inventory(&report).await {
            tracing::warn!(error = %e, "sending the full inventory failed; it is sent again");
            return false;
        }
    }
    tracing::debug!(containers = keys.len(), "full inventory reported");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_from_image_ids_and_references() {
        let d = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        assert_eq!(
            digest_of(&format!("docker-pullable://reg.local/app@{d}")).map(|x| x.to_string()),
            Some(d.to_owned())
        );
        assert_eq!(
            digest_of(&format!("reg.local/app@{d}")).map(|x| x.to_string()),
            Some(d.to_owned())
        );
        assert_eq!(digest_of(d).map(|x| x.to_string()), Some(d.to_owned()));
        assert_eq!(digest_of("reg.local/app:v1"), None);
        assert_eq!(digest_of(""), None);
    }
}
