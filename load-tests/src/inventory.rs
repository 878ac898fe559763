//! The verifier's inventory of running Pods at scale (issue 12): a real Kubernetes API
//! server (etcd, kube-apiserver and kube-controller-manager from `scripts/tools.sh`), a
//! `signet-verifier` process watching its Pods, and the control plane it reports to.
//!
//! - **Memory.** The verifier's `VmRSS` once its empty inventory is listed and reported
//!   (the baseline), then again once `N` Pods (one container each, over 20 namespaces)
//!   are all listed by `GET /v1/workloads` and two seconds have passed. There is no
//!   kubelet: each Pod is created, then its status is set with its container's `imageID`
//!   (a status-subresource patch), as a kubelet would report it.
//! - **Time to list.** From the first Pod created until the control plane lists all `N`;
//!   the baseline is a plain watcher in the load generator, which sees every Pod with its
//!   status through the same API server.
//! - **Latency.** With the `N` Pods running, one Pod at a time is started (created, then
//!   its status set), timed until `GET /v1/workloads` lists it; the baseline is the
//!   API server's own watch delivering the same Pod to the plain watcher, the floor
//!   signet cannot beat.
//! - **Restart.** The verifier is replaced by a fresh one, timed until the control plane
//!   has its full inventory of the `N` Pods; the baseline is one paginated LIST of every
//!   Pod by the load generator (what the verifier's watch does first).
//!
//! The images are real and signed: 200 images (and one per latency sample) pushed to
//! the stack's registry and signed on push by a signing rule for witness `inventory`, which an enforcing policy for
//! namespaces `inv-*` asks for. The verifier learns their signatures from the events
//! before any Pod exists, so every container is judged `trusted` from its cache; the
//! fresh verifier of the restart fetches each image's signature from the registry once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};
use signet_testkit::kube::KubeCluster;
use tokio::time::Instant;

use crate::admission;
use crate::stack::{Stack, Verifier, CLUSTER};
use crate::stats::Summary;
use crate::storm::{self, Shape};

/// The witness whose signatures the Pods' images carry.
const WITNESS: &str = "inventory";
/// Namespaces `inv-00`, `inv-01`, ...; the policy covers `inv-*`.
const NAMESPACE_PREFIX: &str = "inv-";
/// How long the control plane may take to show one Pod before the sample counts as
/// failed.
const SAMPLE_WITHIN: Duration = Duration::from_secs(10);
/// How often a sample polls `GET /v1/workloads`.
const SAMPLE_POLL: Duration = Duration::from_millis(20);

/// How big the scenario is.
#[derive(Debug, Clone)]
pub struct Config {
    pub pods: usize,
    pub namespaces: usize,
    /// Distinct signed images the Pods run.
    pub images: usize,
    /// Latency samples.
    pub probes: usize,
    /// Pods created at a time.
    pub concurrency: usize,
}

/// What the verifier with a fresh start over `pods` Pods did.
pub struct Restart {
    /// 2 s after its full inventory was reported, 10 s after, and the most while it
    /// listed, judged and reported.
    pub rss: f64,
    pub rss_later: f64,
    pub peak: f64,
    /// From starting the process until the control plane has its full inventory.
    pub listed_in: Duration,
    /// One paginated LIST of every Pod by the load generator.
    pub plain_list: Duration,
    pub containers: usize,
}

/// What the scenario measured.
pub struct Measured {
    pub cluster_startup: Duration,
    pub rss_empty: f64,
    pub rss_full: f64,
    /// The highest `VmRSS` seen while the Pods were created and listed.
    pub rss_peak: f64,
    pub pods: usize,
    pub create_failed: usize,
    pub first_error: Option<String>,
    /// The API server accepted every Pod and its status.
    pub created_in: Duration,
    /// The control plane listed every Pod; `None` when it did not within the bound.
    pub listed_in: Option<Duration>,
    /// How many it listed by then.
    pub listed: usize,
    /// By standing, when all were listed.
    pub standings: BTreeMap<String, usize>,
    /// The plain watcher saw every Pod with its status.
    pub watched_in: Option<Duration>,
    /// `signet_running_containers`, summed over standings.
    pub gauge: Option<f64>,
    pub probes: Probes,
    pub restart: Option<Restart>,
}

/// What the load generator's own watcher saw: when each Pod (`namespace/name`) first
/// appeared, and when with its status.
#[derive(Default)]
struct WatchLog {
    listed: bool,
    first_seen: HashMap<String, Instant>,
    with_status: HashMap<String, Instant>,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn namespace(i: usize, namespaces: usize) -> String {
    format!("{NAMESPACE_PREFIX}{:02}", i % namespaces.max(1))
}

pub async fn run(stack: &Stack, config: &Config) -> anyhow::Result<Measured> {
    let mut cluster = KubeCluster::builder()
        .start()
        .await
        .context("starting the Kubernetes control plane (scripts/tools.sh builds it)")?;
    let cluster_startup = cluster.startup;
    println!(
        "  kube-apiserver ready in {:.1} s",
        cluster_startup.as_secs_f64()
    );
    let client = kube_client(&cluster).await?;
    let outcome = measure(stack, config, &mut cluster, client, cluster_startup).await;
    if outcome.is_err() {
        eprintln!("--- Kubernetes control plane logs ---\n{}", cluster.logs());
    }
    // Dropping the cluster kills etcd, the API server and the controller manager.
    drop(cluster);
    outcome
}

async fn kube_client(cluster: &KubeCluster) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn measure(
    stack: &Stack,
    config: &Config,
    cluster: &mut KubeCluster,
    client: kube::Client,
    cluster_startup: Duration,
) -> anyhow::Result<Measured> {
    let namespaces: Vec<String> = (0..config.namespaces)
        .map(|i| namespace(i, config.namespaces))
        .collect();
    create_namespaces(&client, &namespaces).await?;
    cluster.check_running()?;

    // The witness that signs the images, and the policy that asks for it.
    stack
        .api
        .create_witness(WITNESS, &format!("local://{WITNESS}"))
        .await?;
    stack
        .api
        .create_policy(
            WITNESS,
            &[WITNESS],
            CLUSTER,
            &format!("{NAMESPACE_PREFIX}*"),
        )
        .await?;
    // The same witness for the namespace admission reviews name, to tell when the
    // verifier has learned the signatures.
    stack
        .api
        .create_policy("inventory-probe", &[WITNESS], CLUSTER, admission::NAMESPACE)
        .await?;

    let host = stack.registry.host();
    stack
        .api
        .create_rule(WITNESS, &[format!("{host}/inventory/**")], WITNESS)
        .await?;

    let kubeconfig = cluster.kubeconfig().display().to_string();
    let inventory_env = [
        ("SIGNET_VERIFIER__INVENTORY__ENABLED", "true".to_owned()),
        ("SIGNET_VERIFIER__INVENTORY__KUBECONFIG", kubeconfig),
    ];
    let mut verifier = stack
        .start_verifier("verifier-inventory", &inventory_env)
        .await?;

    // The images, pushed and signed on push; the verifier learns their signatures from
    // the events.
    let storm = storm::run(
        stack,
        "inventory",
        WITNESS,
        Shape::Burst {
            count: (config.images + config.probes) as u64,
            workers: 8,
        },
    )
    .await?;
    let images: Vec<(String, String)> = storm
        .images
        .iter()
        .filter_map(|i| Some((i.clone(), i.rsplit_once('@')?.1.to_owned())))
        .collect();
    anyhow::ensure!(
        images.len() > config.probes,
        "{} of {} images were signed",
        images.len(),
        config.images + config.probes
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for (image, _) in &images {
        if !until_admitted(&verifier, image, deadline - Instant::now()).await {
            bail!("the verifier did not learn the images' signatures within 60 s");
        }
    }
    let (probe_images, pod_images) = images.split_at(config.probes);

    // The baseline: the verifier with its empty inventory listed and reported.
    until_synced(
        stack,
        chrono::DateTime::<chrono::Utc>::MIN_UTC,
        Duration::from_secs(60),
    )
    .await
    .context("the verifier's empty inventory never reached the control plane")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_empty = rss(&verifier)?;
    println!("  verifier with an empty inventory: {rss_empty:.1} MiB");

    // The load generator's own watcher, listed before the first Pod.
    let log = Arc::new(Mutex::new(WatchLog::default()));
    let watching = tokio::spawn(plain_watch(client.clone(), log.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.lock().unwrap_or_else(|e| e.into_inner()).listed {
        if Instant::now() > deadline {
            bail!("the load generator's Pod watch did not list within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // N Pods, as fast as the API server takes them.
    let started = Instant::now();
    let creating = tokio::spawn(create_pods(
        client.clone(),
        config.clone(),
        pod_images.iter().map(|(image, _)| image.clone()).collect(),
    ));
    let mut rss_peak = rss_empty;
    while !creating.is_finished() {
        rss_peak = rss_peak.max(rss(&verifier).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let created = creating.await.context("the Pod creator panicked")?;
    let created_in = started.elapsed();
    let pods: usize = created.per_namespace.values().sum();
    println!(
        "  {pods} Pods created with their status in {:.1} s ({:.0}/s), {} failed",
        created_in.as_secs_f64(),
        pods as f64 / created_in.as_secs_f64(),
        created.failed
    );

    // Until the control plane lists every one (bounded: 5 min after the last Pod, or
    // 2 s per 100 Pods if that is longer).
    let bound = Duration::from_secs(300).max(Duration::from_millis(20 * pods as u64));
    let until = Instant::now() + bound;
    let mut missing: BTreeMap<String, usize> = created.per_namespace.clone();
    let mut listed_at = None;
    let mut listed = 0;
    while Instant::now() < until {
        let mut done = Vec::new();
        listed = pods;
        for (ns, want) in &missing {
            let have = workloads(stack, &format!("namespace={ns}&limit=5000"))
                .await
                .map(|w| w.len())
                .unwrap_or(0);
            if have >= *want {
                done.push(ns.clone());
            } else {
                listed -= want - have;
            }
        }
        for ns in done {
            missing.remove(&ns);
        }
        rss_peak = rss_peak.max(rss(&verifier).unwrap_or(0.0));
        if missing.is_empty() {
            listed_at = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let watched_in = {
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        let seen: Vec<Instant> = (0..config.pods)
            .filter_map(|i| {
                log.with_status
                    .get(&key(&namespace(i, config.namespaces), &format!("app-{i}")))
                    .copied()
            })
            .collect();
        (seen.len() >= pods)
            .then(|| seen.iter().max().map(|t| *t - started))
            .flatten()
    };
    match listed_at {
        Some(t) => println!(
            "  the control plane lists all {pods} after {:.1} s",
            t.as_secs_f64()
        ),
        None => println!(
            "  the control plane lists {listed} of {pods} {:.0} s after the last was created",
            bound.as_secs_f64()
        ),
    }

    // Let the allocator settle, then read the verifier's memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_full = rss(&verifier)?;
    rss_peak = rss_peak.max(rss_full);
    let mut standings = BTreeMap::new();
    for ns in &namespaces {
        for w in workloads(stack, &format!("namespace={ns}&limit=5000")).await? {
            let s = w["running"]["standing"].as_str().unwrap_or("?").to_owned();
            *standings.entry(s).or_insert(0) += 1;
        }
    }
    let http = reqwest::Client::new();
    let gauge = verifier.metric(&http, "signet_running_containers{").await;
    println!(
        "  verifier RSS {rss_full:.1} MiB with {pods} Pods (+{:.1} MiB), peak {rss_peak:.1} MiB; standings {standings:?}; gauge {gauge:?}",
        rss_full - rss_empty
    );

    // Latency: one Pod at a time, with N running.
    let probes = probes(stack, &client, config, probe_images, &log).await;
    println!("  pod → control plane: {}", probes.signet);
    println!("  pod → plain watcher: {}", probes.plain);
    println!("  the create call alone: {}", probes.create_call);

    // A fresh verifier over the N Pods.
    let restart = restart(stack, &client, &mut verifier, &inventory_env, pods).await;
    let restart = match restart {
        Ok(r) => Some(r),
        Err(e) => {
            println!("  restart not measured: {e:#}");
            None
        }
    };
    watching.abort();
    drop(verifier);
    Ok(Measured {
        cluster_startup,
        rss_empty,
        rss_full,
        rss_peak,
        pods,
        create_failed: created.failed,
        first_error: created.first_error,
        created_in,
        listed_in: listed_at,
        listed,
        standings,
        watched_in,
        gauge,
        probes,
        restart,
    })
}

fn rss(verifier: &Verifier) -> anyhow::Result<f64> {
    verifier
        .service
        .as_ref()
        .and_then(|s| s.rss_mib())
        .context("the verifier's memory cannot be read")
}

/// Polls `verifier` until it admits `image` in the namespace admission reviews name.
async fn until_admitted(verifier: &Verifier, image: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let body = admission::review(&format!("inventory-{n}"), [image, image, image]);
        if admission::allowed(&verifier.client, &verifier.validate, body).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `GET /v1/workloads?cluster=c1&query` as admin: the workloads.
async fn workloads(stack: &Stack, query: &str) -> anyhow::Result<Vec<Value>> {
    Ok(list(stack, query).await?["workloads"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn list(stack: &Stack, query: &str) -> anyhow::Result<Value> {
    let url = format!("{}/v1/workloads?cluster={CLUSTER}&{query}", stack.api.base);
    let resp = stack
        .api
        .http()
        .get(&url)
        .bearer_auth(stack.api.token())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        bail!(
            "GET {url} answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(resp.json().await?)
}

/// Waits until the cluster's last completed full sync is later than `after`.
async fn until_synced(
    stack: &Stack,
    after: chrono::DateTime<chrono::Utc>,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(v) = list(stack, "limit=1").await {
            let synced = v["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["cluster"] == CLUSTER)
                .filter_map(|c| c["synced_at"].as_str())
                .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .any(|t| t > after);
            if synced {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("no full inventory of cluster {CLUSTER} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_namespaces(client: &kube::Client, names: &[String]) -> anyhow::Result<()> {
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    for name in names {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
    }
    // The API server refuses Pods until the controller manager made the namespace's
    // default ServiceAccount.
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        let sa: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), name);
        while sa.get_opt("default").await?.is_none() {
            if Instant::now() > deadline {
                bail!("namespace {name} has no default ServiceAccount after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A Pod of one container running `image` (`repo@sha256:…`).
fn pod(name: &str, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "inventory-load"}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }))?)
}

/// What a kubelet reports once the container runs: its `imageID`.
fn running_status(image: &str) -> Value {
    json!({"status": {
        "containerStatuses": [{
            "name": "app", "image": image,
            "imageID": format!("docker-pullable://{image}"),
            "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}},
        }],
    }})
}

/// Creates a Pod, then sets its status.
async fn start_pod(client: &kube::Client, ns: &str, name: &str, image: &str) -> anyhow::Result<()> {
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &pod(name, image)?)
        .await
        .with_context(|| format!("creating Pod {ns}/{name}"))?;
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(running_status(image)),
    )
    .await
    .with_context(|| format!("setting the status of Pod {ns}/{name}"))?;
    Ok(())
}

struct Created {
    per_namespace: BTreeMap<String, usize>,
    failed: usize,
    first_error: Option<String>,
}

/// Pods `app-0..N` over the namespaces, each running one of `images`.
async fn create_pods(client: kube::Client, config: Config, images: Vec<String>) -> Created {
    let mut done = futures::stream::iter(0..config.pods)
        .map(|i| {
            let client = client.clone();
            let ns = namespace(i, config.namespaces);
            let image = images[i % images.len().max(1)].clone();
            async move {
                let r = start_pod(&client, &ns, &format!("app-{i}"), &image).await;
                (ns, r)
            }
        })
        .buffer_unordered(config.concurrency.max(1));
    let mut created = Created {
        per_namespace: BTreeMap::new(),
        failed: 0,
        first_error: None,
    };
    while let Some((ns, r)) = done.next().await {
        match r {
            Ok(()) => *created.per_namespace.entry(ns).or_insert(0) += 1,
            Err(e) => {
                created.failed += 1;
                created.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    created
}

/// A plain kube-runtime watcher on every Pod, as the verifier's: it only notes when
/// each Pod appeared, and when with its status.
async fn plain_watch(client: kube::Client, log: Arc<Mutex<WatchLog>>) {
    let api: kube::Api<Pod> = kube::Api::all(client);
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    loop {
        let event = match stream.try_next().await {
            Ok(Some(e)) => e,
            Ok(None) => return,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let now = Instant::now();
        let pod = match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
            watcher::Event::InitDone => {
                log.lock().unwrap_or_else(|e| e.into_inner()).listed = true;
                continue;
            }
            watcher::Event::Init | watcher::Event::Delete(_) => continue,
        };
        let (Some(ns), Some(name)) = (pod.metadata.namespace, pod.metadata.name) else {
            continue;
        };
        let running = pod
            .status
            .and_then(|s| s.container_statuses)
            .is_some_and(|cs| cs.iter().any(|c| !c.image_id.is_empty()));
        let k = key(&ns, &name);
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        log.first_seen.entry(k.clone()).or_insert(now);
        if running {
            log.with_status.entry(k).or_insert(now);
        }
    }
}

/// One Pod at a time with the N running: from its creation until the control plane
/// lists it (signet), and until the plain watcher sees it (the baseline).
async fn probes(
    stack: &Stack,
    client: &kube::Client,
    config: &Config,
    images: &[(String, String)],
    log: &Arc<Mutex<WatchLog>>,
) -> Probes {
    let mut signet = Vec::new();
    let mut plain = Vec::new();
    let mut create_calls = Vec::new();
    let (mut failed, mut plain_failed) = (0, 0);
    let started = Instant::now();
    for (k, (image, digest)) in images.iter().enumerate() {
        // Samples start at a random point of the verifier's 500 ms report tick.
        let jitter = {
            use rand::Rng as _;
            rand::thread_rng().gen_range(100..600)
        };
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        let ns = namespace(k, config.namespaces);
        let name = format!("probe-{k}");
        let t = Instant::now();
        let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), &ns);
        let Ok(p) = pod(&name, image) else {
            failed += 1;
            plain_failed += 1;
            continue;
        };
        if api.create(&PostParams::default(), &p).await.is_err() {
            failed += 1;
            plain_failed += 1;
            continue;
        }
        create_calls.push(t.elapsed());
        // Then its status, as the kubelet reports the running container.
        let _ = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(running_status(image)),
            )
            .await;
        let query = format!("namespace={ns}&image={digest}");
        let deadline = t + SAMPLE_WITHIN;
        let mut found = false;
        while Instant::now() < deadline {
            if workloads(stack, &query)
                .await
                .is_ok_and(|w| w.iter().any(|w| w["running"]["pod"] == name.as_str()))
            {
                signet.push(t.elapsed());
                found = true;
                break;
            }
            tokio::time::sleep(SAMPLE_POLL).await;
        }
        if !found {
            failed += 1;
        }
        // The watcher has seen it long before, or never will.
        let seen = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_seen
            .get(&key(&ns, &name))
            .copied();
        match seen {
            Some(s) => plain.push(s.saturating_duration_since(t)),
            None => plain_failed += 1,
        }
    }
    let elapsed = started.elapsed();
    Probes {
        signet: Summary::new(signet, failed, elapsed),
        plain: Summary::new(plain, plain_failed, elapsed),
        create_call: Summary::new(create_calls, 0, elapsed),
    }
}

/// The latency samples.
pub struct Probes {
    /// Created → listed by `GET /v1/workloads`.
    pub signet: Summary,
    /// Created → seen by the plain watcher.
    pub plain: Summary,
    /// How long the API server took to answer the create call.
    pub create_call: Summary,
}

/// Replaces the verifier with a fresh one, which lists the N Pods at its start.
async fn restart(
    stack: &Stack,
    client: &kube::Client,
    verifier: &mut Verifier,
    env: &[(&str, String)],
    pods: usize,
) -> anyhow::Result<Restart> {
    // The floor: one paginated LIST of every Pod, as the watch's first step.
    let api: kube::Api<Pod> = kube::Api::all(client.clone());
    let t = Instant::now();
    let mut listed = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        listed += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => break,
        }
    }
    let plain_list = t.elapsed();
    anyhow::ensure!(listed >= pods, "the LIST returned {listed} Pods of {pods}");

    if let Some(mut s) = verifier.service.take() {
        s.stop();
    }
    let before = chrono::Utc::now();
    let t = Instant::now();
    let fresh = stack
        .start_verifier("verifier-inventory-restart", env)
        .await?;
    // Its highest resident memory while it lists, judges and reports.
    let pid = fresh.service.as_ref().and_then(|s| s.pid());
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = 0.0f64;
        while let Some(pid) = pid {
            peak = peak.max(crate::procs::rss_mib(pid).unwrap_or(0.0));
            tokio::select! {
                _ = stopped.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        peak
    });
    let synced = until_synced(stack, before, Duration::from_secs(300)).await;
    let listed_in = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss(&fresh)?;
    // And once it has been idle for a while.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let rss_later = self::rss(&fresh)?;
    let _ = stop.send(true);
    let peak = sampler.await.unwrap_or(0.0).max(rss).max(rss_later);
    synced?;
    let http = reqwest::Client::new();
    let containers = fresh
        .metric(&http, "signet_running_containers{")
        .await
        .unwrap_or(0.0) as usize;
    println!(
        "  fresh verifier: full inventory in the control plane {:.1} s after its start ({containers} containers); RSS {rss:.1} MiB, {rss_later:.1} MiB 10 s after, peak {peak:.1} MiB; a plain LIST of {listed} Pods took {:.2} s",
        listed_in.as_secs_f64(),
        plain_list.as_secs_f64()
    );
    *verifier = fresh;
    Ok(Restart {
        rss,
        rss_later,
        peak,
        listed_in,
        plain_list,
        containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_spread_over_the_namespaces_and_report_their_image_id() {
        assert_eq!(namespace(0, 20), "inv-00");
        assert_eq!(namespace(45, 20), "inv-05");
        let image = "127.0.0.1:5000/inventory/app0@sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let p = pod("app-1", image).expect("a Pod");
        assert_eq!(
            p.spec.expect("spec").containers[0].image.as_deref(),
            Some(image)
        );
        let status = running_status(image);
        assert_eq!(
            status["status"]["containerStatuses"][0]["imageID"],
            format!("docker-pullable://{image}")
        );
    }
}
