//! The labels of the cluster's namespaces, for policies that select namespaces by label.
//! The verifier watches Namespaces through the API server (kube-runtime's watcher, with
//! the same client as the inventory) and keeps only their labels.
//!
//! The labels come from the API server with the verifier's own credentials, never from
//! the object under review. A namespace whose labels the verifier does not know (no API
//! server access, not listed yet, a lookup that failed) is treated as selected: a
//! label-selected policy then applies wherever its glob matches, so an outage of the
//! watch never lets an image through that the policy would have refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

pub type Labels = Arc<BTreeMap<String, String>>;

/// How long an admission waits for a namespace the watch has not delivered yet.
const LOOKUP_BUDGET: Duration = Duration::from_secs(2);

/// The next event of a kube-runtime watch, retrying (after 1 s) when the watch fails;
/// `None` once `shutdown` fires or the stream ends. The Pod and Namespace watches share it.
pub(crate) async fn next_event<K>(
    stream: &mut (impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin),
    shutdown: &CancellationToken,
    what: &str,
) -> Option<watcher::Event<K>> {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return None,
            e = stream.try_next() => e,
        };
        match event {
            Ok(e) => return e,
            Err(e) => {
                tracing::warn!(error = %e, watch = what, "the watch failed; it retries");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Cheap to clone; empty (every lookup unknown) until [`Namespaces::watch`] runs.
#[derive(Clone, Default)]
pub struct Namespaces(Arc<Inner>);

#[derive(Default)]
struct Inner {
    labels: RwLock<HashMap<String, Labels>>,
    client: OnceLock<kube::Client>,
    /// Bumped whenever a namespace's labels change, so the inventory judges again.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Namespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Namespaces(connected: {}, known: {})",
            self.0.client.get().is_some(),
            self.read().len()
        )
    }
}

impl Namespaces {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Labels>> {
        self.0.labels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Labels>> {
        self.0.labels.write().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.0
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Changes whenever some namespace's labels changed.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the verifier can read namespaces at all.
    pub fn connected(&self) -> bool {
        self.0.client.get().is_some()
    }

    /// The labels the watch delivered for `namespace`, if it did.
    pub fn cached(&self, namespace: &str) -> Option<Labels> {
        self.read().get(namespace).cloned()
    }

    /// The labels of `namespace`: from the watch, else read from the API server (a
    /// namespace created a moment ago); `None` when they cannot be known.
    pub async fn labels(&self, namespace: &str) -> Option<Labels> {
        if let Some(l) = self.cached(namespace) {
            return Some(l);
        }
        let client = self.0.client.get()?.clone();
        let api: kube::Api<Namespace> = kube::Api::all(client);
        match tokio::time::timeout(LOOKUP_BUDGET, api.get_opt(namespace)).await {
            Ok(Ok(Some(ns))) => {
                let labels: Labels = Arc::new(ns.metadata.labels.unwrap_or_default());
                self.write()
                    .entry(namespace.to_owned())
                    .or_insert_with(|| labels.clone());
                Some(labels)
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(%namespace, error = %e, "reading the namespace's labels failed; label-selected policies apply to it");
                None
            }
            Err(_) => {
                tracing::warn!(%namespace, "reading the namespace's labels timed out; label-selected policies apply to it");
                None
            }
        }
    }

    /// Records one namespace's labels; true when they changed.
    fn put(&self, ns: &Namespace) -> bool {
        let Some(name) = ns.metadata.name.clone() else {
            return false;
        };
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let mut map = self.write();
        if map.get(&name).is_some_and(|l| **l == labels) {
            return false;
        }
        map.insert(name, Arc::new(labels));
        true
    }

    /// Follows the Namespaces until `shutdown`: every one, or only those of `scope`
    /// (one watch each, by name, which RBAC can grant with `resourceNames`).
    pub async fn watch(
        self,
        client: kube::Client,
        scope: Vec<String>,
        shutdown: CancellationToken,
    ) {
        let _ = self.0.client.set(client.clone());
        let scopes: Vec<Option<String>> = if scope.is_empty() {
            vec![None]
        } else {
            scope.into_iter().map(Some).collect()
        };
        let tasks: Vec<_> = scopes
            .into_iter()
            .map(|name| tokio::spawn(self.clone().follow(client.clone(), name, shutdown.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn follow(self, client: kube::Client, name: Option<String>, shutdown: CancellationToken) {
        let api: kube::Api<Namespace> = kube::Api::all(client);
        let mut config = watcher::Config::default();
        if let Some(n) = &name {
            config = config.fields(&format!("metadata.name={n}"));
        }
        let mut stream = watcher(api, config).boxed();
        let mut listing: Option<HashMap<String, Labels>> = None;
        loop {
            let Some(event) = next_event(&mut stream, &shutdown, "Namespace").await else {
                return;
            };
            match event {
                watcher::Event::Init => listing = Some(HashMap::new()),
                watcher::Event::InitApply(ns) => {
                    if let (Some(l), Some(n)) = (listing.as_mut(), ns.metadata.name.clone()) {
                        l.insert(n, Arc::new(ns.metadata.labels.unwrap_or_default()));
                    }
                }
                watcher::Event::InitDone => {
                    let listed = listing.take().unwrap_or_default();
                    let n = listed.len();
                    // What this watch listed replaces what it knew: everything, or its
                    // one namespace.
                    let changed = {
                        let mut map = self.write();
                        let before = map.clone();
                        match &name {
                            None => *map = listed,
                            Some(one) => {
                                map.remove(one);
                                map.extend(listed);
                            }
                        }
                        *map != before
                    };
                    if changed {
                        self.bump();
                    }
                    tracing::info!(namespaces = n, scope = ?name, "namespace labels listed");
                }
                watcher::Event::Apply(ns) => {
                    if self.put(&ns) {
                        tracing::info!(namespace = ?ns.metadata.name, labels = ?ns.metadata.labels, "namespace labels changed");
                        self.bump();
                    }
                }
                watcher::Event::Delete(ns) => {
                    if let Some(name) = ns.metadata.name {
                        if self.write().remove(&name).is_some() {
                            self.bump();
                        }
                    }
                }
            }
        }
    }
}
