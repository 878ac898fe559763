//! Kubernetes end to end: a real control plane (etcd, kube-apiserver,
//! kube-controller-manager on loopback, `signet_testkit::kube`), signet's webhooks
//! registered exactly as the Helm chart renders them (`helm template`, url mode: the
//! verifier of a real `signet up` runs outside the cluster), the API server presenting a
//! client certificate to the verifier (AdmissionConfiguration), and admission exercised
//! with `kubectl` as a user types it. docs/kubernetes.md is this suite, for people.
//!
//! One cluster serves every scenario (it takes seconds to start); each scenario has its
//! own namespace and policy, and runs as a named step of one test so that the order is
//! fixed (the last one stops the verifier). Tools come from scripts/tools.sh and Helm
//! from scripts/check-helm.sh; a missing one fails the test with the script to run.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{bin, ok};
use serde_json::Value;
use signet_testkit::image::TestImage;
use signet_testkit::kube::{helm, Ca, KubeCluster};
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

const CLUSTER: &str = "k8s-e2e";
/// The chart's webhook timeout (values.yaml verifier.webhook.timeoutSeconds).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Containers of the Pod whose warnings must all reach kubectl.
const MANY: usize = 16;

struct Env {
    cluster: KubeCluster,
    up: SignetUp,
    _registry: TestRegistry,
    /// The API server's client certificate for the verifier (read on every call).
    _pki: tempfile::TempDir,
    host: String,
    /// Signed by witness `release`.
    signed: String,
    unsigned: String,
    timings: Vec<(String, Duration)>,
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pod(name: &str, image: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("\n    {k}: {}", Value::String((*v).to_owned())))
        .collect();
    let annotations = if annotations.is_empty() {
        String::new()
    } else {
        format!("\n  annotations:{annotations}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}{annotations}\nspec:\n  containers:\n    - name: app\n      image: {image}\n"
    )
}

fn deployment(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: app\n          image: {image}\n"
    )
}

impl Env {
    /// `signet signature list --image IMAGE [--witness W] -o json`: the records.
    fn signatures(&self, image: &str, witness: Option<&str>) -> Vec<Value> {
        let mut args = vec!["signature", "list", "--image", image, "-o", "json"];
        if let Some(w) = witness {
            args.extend(["--witness", w]);
        }
        let listed: Value = serde_json::from_str(&self.signet(&args)).expect("json");
        listed["signatures"].as_array().cloned().unwrap_or_default()
    }

    fn signet(&self, args: &[&str]) -> String {
        ok(
            &self.up.cli(args).expect("run signet"),
            &format!("signet {}", args.join(" ")),
        )
    }

    /// `kubectl apply -f -` of `manifest` in `ns`, as `user`.
    fn apply_as(&self, user: &str, ns: &str, manifest: &str, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "-n", ns, "-f", "-"];
        args.extend_from_slice(extra);
        self.cluster
            .kubectl_stdin(user, &args, manifest)
            .expect("run kubectl")
    }

    fn apply(&self, ns: &str, manifest: &str) -> Output {
        self.apply_as("admin", ns, manifest, &[])
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.cluster
            .kubectl()
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// A namespace and an enabled policy for it (witness `release`).
    async fn scenario(&mut self, ns: &str, mode: &str, extra: &[&str]) {
        self.cluster.create_namespace(ns).await.expect("namespace");
        let mut args = vec![
            "policy",
            "create",
            ns,
            "--witness",
            "release",
            "--cluster",
            CLUSTER,
            "--namespace",
            ns,
            "--mode",
            mode,
            "--enable",
        ];
        args.extend_from_slice(extra);
        self.signet(&args);
    }

    /// Applies `manifest` once a server-side dry run of it satisfies `done` (the
    /// verifier applies policy events asynchronously, within milliseconds); returns the
    /// real apply's answer.
    async fn apply_until(
        &self,
        ns: &str,
        manifest: &str,
        done: impl Fn(&Output) -> bool,
    ) -> Output {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.apply_as("admin", ns, manifest, &["--dry-run=server"]))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.apply(ns, manifest)
    }

    /// What kubectl prints of a denial, up to the reason (digests left out: see
    /// [`without_digest`]).
    fn denial(&self, ns: &str, policy: &str, image: &str) -> String {
        format!(
            "admission webhook \"validate.signet.dev\" denied the request: image \"{image}\" \
             is not allowed in namespace \"{ns}\" by policy \"{policy}\""
        )
    }

    fn time(&mut self, step: &str, since: Instant) {
        let d = since.elapsed();
        eprintln!("timing: {step}: {d:.2?}");
        self.timings.push((step.to_owned(), d));
    }
}

/// `image "X" (sha256:…) is not allowed ...`: the digest of a tagged image sits between
/// the name and the rest; this drops it so the message can be compared.
fn without_digest(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\" (sha256:") {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        match rest.find(')') {
            Some(j) => rest = &rest[j + 1..],
            None => break,
        }
    }
    out.push_str(rest);
    out
}

fn assert_denied(out: &Output, expected: &str, what: &str) {
    let t = text(out);
    assert!(
        !out.status.success(),
        "{what}: admitted, expected a denial:\n{t}"
    );
    assert!(
        without_digest(&t).contains(expected),
        "{what}: kubectl printed\n{t}\nexpected it to contain\n{expected}"
    );
}

fn assert_admitted(out: &Output, what: &str) -> String {
    let t = text(out);
    assert!(out.status.success(), "{what}: refused:\n{t}");
    t
}

async fn start() -> Env {
    let t0 = Instant::now();
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    for (repo, seed) in [
        ("demo/app", 1),
        ("demo/unsigned", 2),
        ("demo/revoked", 3),
        ("demo/pinned", 4),
        ("demo/quorum", 5),
        ("demo/running", 6),
    ] {
        TestImage::from_seed(seed + u64::from(std::process::id()))
            .push(&host, repo, "v1")
            .await
            .expect("push");
    }

    // The API server's client certificate for the verifier, from a client CA of our own.
    let pki = tempfile::tempdir().expect("tempdir");
    let client_ca = Ca::new("signet-test-apiserver-client-ca").expect("client CA");
    let client_ca_file = client_ca
        .write(&pki.path().join("client-ca.crt"))
        .expect("write CA");
    let client = client_ca
        .client("kube-apiserver", &[], pki.path(), "apiserver-client")
        .expect("client cert");

    // The verifier's inventory watches Pods with a kubeconfig written once the cluster
    // runs (it retries until then).
    let inventory_kubeconfig = pki.path().join("inventory.kubeconfig");
    let up = SignetUp::start(
        bin(),
        &[
            ("SIGNET_VERIFIER__INVENTORY__ENABLED", "true"),
            (
                "SIGNET_VERIFIER__INVENTORY__KUBECONFIG",
                inventory_kubeconfig.to_str().expect("utf8"),
            ),
            ("SIGNET_VERIFIER__INVENTORY__REPORT_INTERVAL", "200ms"),
            ("SIGNET_VERIFIER__CLUSTER", CLUSTER),
            ("SIGNET_VERIFIER__CLIENT_AUTH", "require"),
            (
                "SIGNET_VERIFIER__CLIENT_CA",
                client_ca_file.to_str().expect("utf8"),
            ),
        ],
    )
    .await
    .expect("signet up");
    let verifier = up.verifier().expect("verifier url");
    let verifier_host = verifier.trim_start_matches("https://").to_owned();

    let t_cluster = Instant::now();
    let cluster = KubeCluster::builder()
        .user("alice", &["developers"])
        .webhook_client_cert(&verifier_host, client)
        .start()
        .await
        .expect("kubernetes control plane");
    eprintln!(
        "timing: cold cluster start (etcd, kube-apiserver ready, controller manager working): {:.2?}",
        t_cluster.elapsed()
    );
    std::fs::copy(cluster.kubeconfig(), &inventory_kubeconfig).expect("inventory kubeconfig");

    let mut env = Env {
        cluster,
        up,
        _registry: registry,
        _pki: pki,
        signed: format!("{host}/demo/app:v1"),
        unsigned: format!("{host}/demo/unsigned:v1"),
        host,
        timings: Vec::new(),
    };
    env.timings
        .push(("cold cluster start".into(), t_cluster.elapsed()));

    // Register the webhooks as the chart renders them: helm template, url mode.
    let ca_bundle = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(env.up.verifier_cert()).expect("verifier cert"));
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../helm/signet");
    let rendered = std::process::Command::new(helm().expect("helm"))
        .args(["template", "signet"])
        .arg(&chart)
        .args([
            "--namespace",
            "signet",
            "--show-only",
            "templates/admission.yaml",
            "-f",
        ])
        .arg(chart.join("ci/verifier-url-values.yaml"))
        .args([
            "--set",
            &format!("verifier.cluster={CLUSTER}"),
            "--set",
            &format!("verifier.webhook.url={verifier}"),
            "--set",
            &format!("verifier.tls.caBundle={ca_bundle}"),
            "--set",
            "verifier.webhook.failurePolicy=Fail",
            "--set",
            "verifier.webhook.excludeNamespaces={kube-system,kube-node-lease}",
        ])
        .output()
        .expect("run helm");
    let manifest = ok(&rendered, "helm template");
    let applied = assert_admitted(
        &env.cluster
            .kubectl_stdin("admin", &["apply", "-f", "-"], &manifest)
            .expect("kubectl"),
        "kubectl apply of the rendered webhooks",
    );
    let mut kinds: Vec<&str> = applied.lines().collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/signet-verifier created",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/signet-verifier created",
        ],
        "the chart renders exactly the two webhook configurations"
    );
    env.cluster.create_namespace("signet").await.expect("ns");
    let registered = Instant::now();

    env.signet(&[
        "witness",
        "create",
        "--name",
        "release",
        "--kms-key",
        "local://release",
    ]);
    for repo in ["demo/app", "demo/revoked", "demo/pinned"] {
        env.signet(&[
            "sign",
            &format!("{}/{repo}:v1", env.host),
            "--witness",
            "release",
            "--wait",
        ]);
    }

    // The API server picks up new webhook configurations asynchronously: wait until an
    // enforced namespace refuses an unsigned Pod (a server-side dry run), then drop it.
    env.scenario("probe", "enforce", &[]).await;
    let probe = pod("probe", &env.unsigned, &[]);
    wait_for(&env, "the webhooks to be called", || {
        !env.apply_as("admin", "probe", &probe, &["--dry-run=server"])
            .status
            .success()
    })
    .await;
    env.signet(&["policy", "delete", "probe"]);
    eprintln!(
        "timing: webhooks registered → called: {:.2?}",
        registered.elapsed()
    );

    env.time(
        "setup (registry, signet up, cluster, webhooks, signing)",
        t0,
    );
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_end_to_end() {
    let mut env = start().await;
    let t = Instant::now();
    policy_off_then_enforced(&mut env).await;
    env.time("1 policy off, then enforce", t);
    let t = Instant::now();
    deployments_and_replica_sets(&mut env).await;
    env.time("2 deployments and replica sets", t);
    let t = Instant::now();
    debug_cronjobs_and_jobs(&mut env).await;
    env.time("3 kubectl debug, cronjobs, jobs", t);
    let t = Instant::now();
    warn_and_dry_run(&mut env).await;
    env.time("4 warn and dry-run modes", t);
    let t = Instant::now();
    server_side_dry_run(&mut env).await;
    env.time("5 kubectl apply --dry-run=server", t);
    let t = Instant::now();
    break_glass(&mut env).await;
    env.time("6 break-glass", t);
    let t = Instant::now();
    revocation(&mut env).await;
    n_of_m(&mut env).await;
    inventory(&mut env).await;
    env.time("8 revocation", t);
    let t = Instant::now();
    attestation_required(&mut env).await;
    env.time("11 SLSA provenance required", t);
    let t = Instant::now();
    label_selected(&mut env).await;
    env.time("10 namespaces selected by label", t);
    let t = Instant::now();
    digest_pinning(&mut env).await;
    env.time("9 digest pinning", t);
    let t = Instant::now();
    let before = all_workloads(&env);
    verifier_down(&mut env).await;
    env.time("7 verifier down", t);
    inventory_after_restart(&mut env, before).await;

    for (step, d) in &env.timings {
        eprintln!("timing summary: {step}: {d:.2?}");
    }
}

/// 1. A policy that is off lets an unsigned workload in; enabled (enforce), an unsigned
///    Pod is refused with signet's message, and a signed one is admitted.
async fn policy_off_then_enforced(env: &mut Env) {
    let ns = "policy-off-on";
    env.cluster.create_namespace(ns).await.expect("namespace");
    env.signet(&[
        "policy",
        "create",
        ns,
        "--witness",
        "release",
        "--cluster",
        CLUSTER,
        "--namespace",
        ns,
    ]);
    let out = env.apply(ns, &deployment("before", &env.unsigned, 1));
    assert_admitted(&out, "an unsigned Deployment under a policy that is off");

    env.signet(&["policy", "enable", ns]);
    let unsigned = pod("unsigned", &env.unsigned, &[]);
    let out = env
        .apply_until(ns, &unsigned, |o| !o.status.success())
        .await;
    let expected = env.denial(ns, ns, &env.unsigned);
    assert_denied(
        &out,
        &format!("{expected}: unsigned: "),
        "an unsigned Pod, enforced",
    );
    let t = text(&out);
    assert!(
        t.starts_with(
            "Error from server (Forbidden): error when creating \"STDIN\": admission webhook"
        ),
        "kubectl's framing of the denial: {t}"
    );
    eprintln!("kubectl printed: {}", t.trim());

    let out = env.apply(ns, &pod("signed", &env.signed, &[]));
    assert_admitted(&out, "a signed Pod, enforced");
}

/// 2. A Deployment with an unsigned image is refused itself; when only the Pods of an
///    admitted Deployment's ReplicaSet are refused, the ReplicaSet's events say why.
async fn deployments_and_replica_sets(env: &mut Env) {
    let ns = "rollout";
    env.cluster.create_namespace(ns).await.expect("namespace");
    // Admitted before the policy exists; its ReplicaSet makes its Pod.
    assert_admitted(
        &env.apply(ns, &deployment("web", &env.unsigned, 1)),
        "an unsigned Deployment before any policy",
    );
    wait_for(env, "the ReplicaSet's Pod", || {
        let out = env.kubectl(&["get", "pods", "-n", ns, "-l", "app=web", "-o", "name"]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    })
    .await;
    env.signet(&[
        "policy",
        "create",
        ns,
        "--witness",
        "release",
        "--cluster",
        CLUSTER,
        "--namespace",
        ns,
        "--enable",
    ]);
    let out = env
        .apply_until(ns, &deployment("new", &env.unsigned, 1), |o| {
            !o.status.success()
        })
        .await;
    assert_denied(
        &out,
        &format!("{}: unsigned", env.denial(ns, ns, &env.unsigned)),
        "an unsigned Deployment, enforced",
    );
    assert!(
        text(&out).contains("error when creating \"STDIN\""),
        "{}",
        text(&out)
    );

    // `kubectl scale` (the scale subresource, not checked) makes the Deployment
    // controller grow the ReplicaSet (an UPDATE with the same template, admitted: its
    // Pods are checked one by one), whose new Pod is refused: the ReplicaSet's events
    // and the Deployment's ReplicaFailure condition say why.
    assert_admitted(
        &env.kubectl(&["scale", "deployment", "web", "-n", ns, "--replicas=2"]),
        "kubectl scale",
    );
    let expected = format!("{}: unsigned", env.denial(ns, ns, &env.unsigned));
    let mut events = String::new();
    wait_for(env, "a FailedCreate event on the ReplicaSet", || {
        let out = env.kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.kind=ReplicaSet,reason=FailedCreate",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        events = String::from_utf8_lossy(&out.stdout).into_owned();
        events.contains("denied the request")
    })
    .await;
    assert!(
        without_digest(&events).contains(&format!("Error creating: {expected}")),
        "the ReplicaSet's event: {events}"
    );
    let replicas = env.kubectl(&[
        "get",
        "rs",
        "-n",
        ns,
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].spec.replicas}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&replicas.stdout),
        "2",
        "the Deployment controller grew the ReplicaSet"
    );
    let describe = text(&env.kubectl(&["describe", "rs", "-n", ns, "-l", "app=web"]));
    assert!(
        describe.contains("FailedCreate") && describe.contains("validate.signet.dev"),
        "kubectl describe rs shows the refusal:\n{describe}"
    );
    eprintln!(
        "kubectl describe rs, events: {}",
        describe
            .lines()
            .filter(|l| l.contains("FailedCreate"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut condition = String::new();
    wait_for(env, "the Deployment's ReplicaFailure condition", || {
        let out = env.kubectl(&[
            "get",
            "deployment",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ReplicaFailure\")].message}",
        ]);
        condition = String::from_utf8_lossy(&out.stdout).into_owned();
        condition.contains("denied the request")
    })
    .await;
    assert!(
        without_digest(&condition).contains(&expected),
        "{condition}"
    );

    // The running Pod goes away: its replacement is refused the same way.
    assert_admitted(
        &env.kubectl(&["delete", "pods", "-n", ns, "-l", "app=web", "--wait=false"]),
        "deleting the Pod",
    );
    wait_for(env, "the Pod to be gone and not replaced", || {
        let out = env.kubectl(&["get", "pods", "-n", ns, "-l", "app=web", "-o", "name"]);
        String::from_utf8_lossy(&out.stdout).trim().is_empty()
    })
    .await;

    // `kubectl rollout restart` changes only the template's annotations: the Deployment
    // update is admitted (nothing new runs yet), and the new ReplicaSet the controller
    // creates is refused; the Deployment's events say why.
    assert_admitted(
        &env.kubectl(&["rollout", "restart", "deployment/web", "-n", ns]),
        "kubectl rollout restart",
    );
    let mut events = String::new();
    wait_for(
        env,
        "the Deployment's event about its new ReplicaSet",
        || {
            let out = env.kubectl(&[
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                "involvedObject.kind=Deployment,type=Warning",
                "-o",
                "jsonpath={.items[*].message}",
            ]);
            events = String::from_utf8_lossy(&out.stdout).into_owned();
            events.contains("denied the request")
        },
    )
    .await;
    assert!(without_digest(&events).contains(&expected), "{events}");
    eprintln!("after kubectl rollout restart, the Deployment's warning events: {events}");

    // A rollout to an unsigned image of a signed Deployment is refused at once.
    assert_admitted(
        &env.apply(ns, &deployment("signed", &env.signed, 1)),
        "a signed Deployment",
    );
    let out = env.kubectl(&[
        "set",
        "image",
        "deployment/signed",
        "-n",
        ns,
        &format!("app={}", env.unsigned),
    ]);
    assert_denied(&out, &expected, "kubectl set image to an unsigned image");
    // Server-side apply goes through the same webhook.
    let out = env.apply_as(
        "admin",
        ns,
        &deployment("ssa", &env.unsigned, 1),
        &["--server-side"],
    );
    assert_denied(&out, &expected, "kubectl apply --server-side");
}

/// 3. `kubectl debug` (an ephemeral container) with an unsigned image is refused; CronJob
///    and Job templates are checked.
async fn debug_cronjobs_and_jobs(env: &mut Env) {
    let ns = "debugging";
    env.scenario(ns, "enforce", &[]).await;
    let out = env
        .apply_until(ns, &pod("target", &env.signed, &[]), |o| o.status.success())
        .await;
    assert_admitted(&out, "the signed Pod to debug");

    let out = env.kubectl(&[
        "debug",
        "-n",
        ns,
        "target",
        "--image",
        &env.unsigned,
        "--container",
        "dbg",
    ]);
    assert_denied(
        &out,
        &format!("{}: unsigned", env.denial(ns, ns, &env.unsigned)),
        "kubectl debug with an unsigned image",
    );
    eprintln!("kubectl debug printed: {}", text(&out).trim());
    let out = env.kubectl(&[
        "debug",
        "-n",
        ns,
        "target",
        "--image",
        &env.signed,
        "--container",
        "dbg-signed",
    ]);
    assert_admitted(&out, "kubectl debug with a signed image");
    let ephemeral = env.kubectl(&[
        "get",
        "pod",
        "target",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.ephemeralContainers[*].name}",
    ]);
    assert_eq!(String::from_utf8_lossy(&ephemeral.stdout), "dbg-signed");

    let out = env.kubectl(&[
        "create",
        "cronjob",
        "nightly",
        "-n",
        ns,
        "--image",
        &env.unsigned,
        "--schedule",
        "0 3 * * *",
    ]);
    assert_denied(
        &out,
        &format!("{}: unsigned", env.denial(ns, ns, &env.unsigned)),
        "an unsigned CronJob",
    );
    let out = env.kubectl(&["create", "job", "once", "-n", ns, "--image", &env.unsigned]);
    assert_denied(
        &out,
        &format!("{}: unsigned", env.denial(ns, ns, &env.unsigned)),
        "an unsigned Job",
    );
    assert_admitted(
        &env.kubectl(&[
            "create",
            "job",
            "signed-once",
            "-n",
            ns,
            "--image",
            &env.signed,
        ]),
        "a signed Job",
    );
    assert_admitted(
        &env.kubectl(&[
            "create",
            "cronjob",
            "signed-nightly",
            "-n",
            ns,
            "--image",
            &env.signed,
            "--schedule",
            "0 3 * * *",
        ]),
        "a signed CronJob",
    );
}

/// 4. warn: admitted, and kubectl prints the warning. dry-run: admitted silently, and the
///    would-deny is recorded (`signet audit --admissions`, `signet policy impact`).
async fn warn_and_dry_run(env: &mut Env) {
    let ns = "warned";
    env.scenario(ns, "warn", &[]).await;
    let out = env
        .apply_until(ns, &pod("unsigned", &env.unsigned, &[]), |o| {
            text(o).contains("Warning:")
        })
        .await;
    let t = assert_admitted(&out, "an unsigned Pod under warn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("Warning: signet (warn): image \"{}\"", env.unsigned);
    assert!(
        stderr.contains(&expected)
            && without_digest(&stderr).contains(&format!(
                "is not allowed in namespace \"{ns}\" by policy \"{ns}\": unsigned: "
            )),
        "kubectl's stderr under warn:\n{stderr}"
    );
    assert!(t.contains("pod/unsigned created"), "{t}");
    eprintln!("kubectl printed under warn: {}", t.trim());

    // Many failing images: the API server keeps at most 4 KiB of warnings per response
    // (past that it cuts each to 256 characters); kubectl must still name every image.
    let host = env.host.clone();
    for i in 0..MANY {
        TestImage::from_seed(2 + u64::from(std::process::id()))
            .push(&host, "demo/unsigned", &format!("t{i}"))
            .await
            .expect("push");
    }
    let containers: String = (0..MANY)
        .map(|i| format!("    - name: c{i}\n      image: {host}/demo/unsigned:t{i}\n"))
        .collect();
    let many = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: many\nspec:\n  containers:\n{containers}"
    );
    let out = env.apply(ns, &many);
    let t = assert_admitted(&out, "an unsigned Pod with many images under warn");
    eprintln!(
        "kubectl printed under warn, {MANY} images ({} bytes): {}",
        t.len(),
        t.trim()
    );
    for i in 0..MANY {
        let image = format!("{host}/demo/unsigned:t{i}");
        assert!(
            t.contains(&format!("Warning: signet (warn): image \"{image}\" is not allowed in namespace \"{ns}\" by policy \"{ns}\": unsigned\n")),
            "kubectl does not name {image}:\n{t}"
        );
    }

    let ns = "trial";
    env.scenario(ns, "dry-run", &[]).await;
    // Give the policy event time to land so the Pod is decided under it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = env.apply(ns, &pod("unsigned", &env.unsigned, &[]));
    let t = assert_admitted(&out, "an unsigned Pod under dry-run");
    assert!(!t.contains("Warning"), "dry-run is silent: {t}");
    let mut listed = String::new();
    wait_for(env, "the would-deny decision", || {
        listed = text(
            &env.up
                .cli(&["audit", "--admissions", "--policy", ns])
                .expect("cli"),
        );
        listed.contains("would_deny")
    })
    .await;
    assert!(
        listed.contains(&format!("{CLUSTER}/{ns}/Pod/unsigned")) && listed.contains("(unsigned)"),
        "{listed}"
    );
    let impact = env.signet(&["policy", "impact", ns]);
    assert!(
        impact.contains("1 would be blocked by enforcing it"),
        "{impact}"
    );

    // Controllers' objects are reviewed too: a Deployment of 2 replicas is decided as the
    // Deployment (kubectl's user), its ReplicaSet and each Pod (controllers' service
    // accounts).
    assert_admitted(
        &env.apply(ns, &deployment("trial", &env.unsigned, 2)),
        "an unsigned Deployment under dry-run",
    );
    let mut listed = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while listed.matches("would_deny").count() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        listed = text(
            &env.up
                .cli(&["audit", "--admissions", "--policy", ns])
                .expect("cli"),
        );
    }
    eprintln!("signet audit --admissions --policy {ns}:\n{listed}");
    for who in [
        "Deployment/trial by admin",
        "by system:serviceaccount:kube-system:deployment-controller",
        "by system:serviceaccount:kube-system:replicaset-controller",
    ] {
        assert!(listed.contains(who), "{who}:\n{listed}");
    }
    let impact = env.signet(&["policy", "impact", ns]);
    eprintln!("signet policy impact {ns}:\n{impact}");
    // The Pod before, then the Deployment, its ReplicaSet and its 2 Pods.
    assert!(
        impact.contains("5 would be blocked by enforcing it"),
        "{impact}"
    );
}

/// 5. `kubectl apply --dry-run=server` reaches the webhook (the same answer) and records
///    nothing.
async fn server_side_dry_run(env: &mut Env) {
    let ns = "server-dry-run";
    env.scenario(ns, "enforce", &[]).await;
    let manifest = pod("unsigned", &env.unsigned, &[]);
    let out = env
        .apply_until(ns, &manifest, |o| !o.status.success())
        .await;
    assert_denied(&out, &env.denial(ns, ns, &env.unsigned), "the real request");
    let out = env.apply_as("admin", ns, &manifest, &["--dry-run=server"]);
    assert_denied(
        &out,
        &format!("{}: unsigned", env.denial(ns, ns, &env.unsigned)),
        "--dry-run=server",
    );
    let out = env.apply_as(
        "admin",
        ns,
        &pod("signed", &env.signed, &[]),
        &["--dry-run=server"],
    );
    let t = assert_admitted(&out, "a signed Pod, --dry-run=server");
    assert!(t.contains("pod/signed created (server dry run)"), "{t}");
    let exists = env.kubectl(&["get", "pod", "signed", "-n", ns]);
    assert!(!exists.status.success(), "a server dry run creates nothing");

    // The real denial is recorded once (reports go out every 2 s); the dry runs never.
    let mut listed = String::new();
    wait_for(env, "the real denial's record", || {
        listed = text(
            &env.up
                .cli(&["audit", "--admissions", "--namespace", ns, "-o", "json"])
                .expect("cli"),
        );
        listed.contains("\"denied\"")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v: Value = serde_json::from_str(&ok(
        &env.up
            .cli(&["audit", "--admissions", "--namespace", ns, "-o", "json"])
            .expect("cli"),
        "audit",
    ))
    .expect("json");
    let decisions = v["decisions"].as_array().expect("decisions");
    assert!(
        decisions.iter().all(|d| d["dry_run"] != Value::Bool(true)),
        "no dry-run decision recorded: {v:#}"
    );
    assert!(
        decisions.iter().all(|d| d["name"] != "signed"),
        "the dry-run admission recorded nothing: {v:#}"
    );
}

/// 6. The break-glass annotation admits the workload, with a warning, and the audit names
///    the user who asked (the API server's `userInfo`).
async fn break_glass(env: &mut Env) {
    let ns = "incident";
    env.scenario(ns, "enforce", &["--allow-break-glass"]).await;
    assert_admitted(
        &env.kubectl(&[
            "create",
            "rolebinding",
            "alice-edit",
            "-n",
            ns,
            "--clusterrole=edit",
            "--user=alice",
        ]),
        "rolebinding",
    );
    let out = env
        .apply_until(ns, &pod("plain", &env.unsigned, &[]), |o| {
            !o.status.success()
        })
        .await;
    assert_denied(
        &out,
        &env.denial(ns, ns, &env.unsigned),
        "without break-glass",
    );
    let out = env.apply_as(
        "alice",
        ns,
        &pod(
            "hotfix",
            &env.unsigned,
            &[("signet.dev/break-glass", "INC-42 rollback")],
        ),
        &[],
    );
    let t = assert_admitted(&out, "break-glass as alice");
    assert!(
        t.contains(
            "Warning: signet: break-glass (INC-42 rollback) let this through policy \"incident\""
        ),
        "kubectl shows the break-glass warning: {t}"
    );
    let mut audit = Value::Null;
    wait_for(env, "the break-glass audit entry", || {
        let out = env
            .up
            .cli(&["audit", "--action", "admission.break_glass", "-o", "json"])
            .expect("cli");
        audit = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        audit["entries"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    let entry = &audit["entries"][0];
    assert_eq!(
        entry["subject"],
        format!("{CLUSTER}/{ns}/Pod/hotfix"),
        "{audit:#}"
    );
    assert_eq!(
        entry["detail"]["user"], "alice",
        "the requesting user: {audit:#}"
    );
    let groups = entry["detail"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        groups.contains(&Value::from("developers"))
            && groups.contains(&Value::from("system:authenticated")),
        "the requesting user's groups, as the API server authenticated them: {audit:#}"
    );
    assert_eq!(entry["detail"]["reason"], "INC-42 rollback", "{audit:#}");
    let listed = env.signet(&["audit", "--admissions", "--outcome", "break_glass"]);
    assert!(listed.contains("by alice"), "{listed}");
    eprintln!(
        "signet audit --admissions --outcome break_glass: {}",
        listed.trim()
    );
}

/// The workloads `signet workloads list` shows for namespace `ns`, as JSON.
fn workloads(env: &Env, ns: &str) -> Vec<Value> {
    let listed: Value = serde_json::from_str(&env.signet(&[
        "workloads",
        "list",
        "--cluster",
        CLUSTER,
        "--namespace",
        ns,
        "-o",
        "json",
    ]))
    .expect("json");
    listed["workloads"].as_array().cloned().unwrap_or_default()
}

/// What runs: the verifier watches Pods, reports each container with its standing, and
/// judges them again when a signature is revoked. There is no kubelet: the test sets
/// the Pod's status (its containers' imageIDs) as a kubelet would.
async fn inventory(env: &mut Env) {
    let ns = "running";
    env.scenario(ns, "enforce", &[]).await;
    let image = format!("{}/demo/running:v1", env.host);
    env.signet(&["sign", &image, "--witness", "release", "--wait"]);
    let out = env
        .apply_until(ns, &pod("web", &image, &[]), |o| o.status.success())
        .await;
    assert_admitted(&out, "the signed Pod");
    let listed = env.signatures(&image, None);
    let digest = listed[0]["digest"].as_str().expect("digest").to_owned();
    let status = serde_json::json!({"status": {"containerStatuses": [{
        "name": "app", "image": image, "imageID": format!("docker-pullable://{}/demo/running@{digest}", env.host),
        "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-12-05T00:00:00Z"}},
    }]}});
    assert_admitted(
        &env.cluster
            .kubectl()
            .args([
                "patch",
                "pod",
                "web",
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
            ])
            .arg(status.to_string())
            .output()
            .expect("kubectl"),
        "kubectl patch --subresource=status",
    );
    let mut running = Vec::new();
    wait_for(env, "the running Pod in the inventory", || {
        running = workloads(env, ns);
        running
            .iter()
            .any(|w| w["running"]["standing"] == "trusted")
    })
    .await;
    let web = &running[0]["running"];
    assert_eq!(web["pod"], "web", "{running:#?}");
    assert_eq!(
        web["digest"],
        digest.as_str(),
        "the digest the kubelet reported"
    );
    assert_eq!(web["witnesses"], serde_json::json!(["release"]));
    eprintln!(
        "signet workloads list: {}",
        env.signet(&["workloads", "list", "--namespace", ns]).trim()
    );

    // The metric counts it (the gauge is set at the inventory's next report tick),
    // beside the Pods earlier scenarios left running.
    let admin = env.up.admin().expect("admin URL");
    let gauge = |metrics: &str, standing: &str| -> u64 {
        let prefix = format!("signet_running_containers{{standing=\"{standing}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let listed_trusted = serde_json::from_str::<Value>(&env.signet(&[
        "workloads",
        "list",
        "--cluster",
        CLUSTER,
        "--standing",
        "trusted",
        "--limit",
        "5000",
        "-o",
        "json",
    ]))
    .expect("json")["workloads"]
        .as_array()
        .map_or(0, Vec::len) as u64;
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = reqwest::get(format!("{admin}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if gauge(&metrics, "trusted") == listed_trusted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed_trusted >= 1);
    assert_eq!(
        gauge(&metrics, "trusted"),
        listed_trusted,
        "the gauge agrees with the inventory: {}",
        metrics
            .lines()
            .filter(|l| l.contains("running_containers"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A revocation turns the running Pod's standing within 2 s.
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    env.signet(&[
        "signature",
        "revoke",
        &id,
        "--reason",
        "pulled from a compromised mirror",
    ]);
    let revoked = Instant::now();
    wait_for(env, "the running Pod's standing to turn revoked", || {
        workloads(env, ns)
            .iter()
            .any(|w| w["running"]["standing"] == "revoked")
    })
    .await;
    let latency = revoked.elapsed();
    eprintln!("timing: revocation to a running Pod marked revoked: {latency:.2?}");
    env.timings
        .push(("revocation → running Pod revoked".into(), latency));
    assert!(latency < Duration::from_secs(2), "took {latency:?}");
    let audit = env.signet(&["audit", "--action", "workload.untrusted", "-o", "json"]);
    assert!(
        audit.contains(&format!("{CLUSTER}/{ns}/web/app")),
        "{audit}"
    );

    // The running Pod's Event says so, where `kubectl get events` shows it.
    let mut events = String::new();
    wait_for(env, "the SignetRevokedImage Event on the Pod", || {
        events = String::from_utf8_lossy(
            &env.cluster
                .kubectl()
                .args([
                    "get",
                    "events",
                    "-n",
                    ns,
                    "--field-selector",
                    "reason=SignetRevokedImage",
                ])
                .output()
                .expect("kubectl")
                .stdout,
        )
        .into_owned();
        events.contains("pod/web")
    })
    .await;
    eprintln!("kubectl get events (revoked):\n{}", events.trim());

    // Admission denials are Events on the object too, repeats counted in one series.
    let intruder = pod("intruder", &env.unsigned, &[]);
    for _ in 0..3 {
        assert!(
            !env.apply(ns, &intruder).status.success(),
            "the unsigned Pod is denied"
        );
    }
    let mut denied = Value::Null;
    wait_for(
        env,
        "one SignetDenied Event with a count for the repeated denial",
        || {
            denied = serde_json::from_slice(
                &env.cluster
                    .kubectl()
                    .args([
                        "get",
                        "events.events.k8s.io",
                        "-n",
                        ns,
                        "--field-selector",
                        "reason=SignetDenied",
                        "-o",
                        "json",
                    ])
                    .output()
                    .expect("kubectl")
                    .stdout,
            )
            .unwrap_or(Value::Null);
            denied["items"].as_array().is_some_and(|items| {
                items.iter().any(|e| {
                    e["regarding"]["name"] == "intruder"
                        && e["series"]["count"].as_u64().unwrap_or(1) >= 2
                })
            })
        },
    )
    .await;
    let item = denied["items"]
        .as_array()
        .and_then(|i| i.iter().find(|e| e["regarding"]["name"] == "intruder"))
        .expect("the intruder's Event");
    assert_eq!(item["type"], "Warning");
    assert!(
        item["note"]
            .as_str()
            .is_some_and(|n| n.contains("unsigned") && n.contains("requested by admin")),
        "{item:#}"
    );
    let printed = String::from_utf8_lossy(
        &env.cluster
            .kubectl()
            .args([
                "get",
                "events",
                "-n",
                ns,
                "--field-selector",
                "reason=SignetDenied",
            ])
            .output()
            .expect("kubectl")
            .stdout,
    )
    .into_owned();
    eprintln!("kubectl get events (denied):\n{}", printed.trim());

    // The Pod goes, and so does its entry.
    env.cluster
        .kubectl()
        .args(["delete", "pod", "web", "-n", ns, "--wait=false"])
        .output()
        .expect("kubectl delete");
    wait_for(env, "the deleted Pod to leave the inventory", || {
        workloads(env, ns).is_empty()
    })
    .await;
}

/// Every workload of the cluster as `(pod uid, container)`, from `signet workloads list`.
fn all_workloads(env: &Env) -> Vec<(String, String, String)> {
    let listed: Value = serde_json::from_str(&env.signet(&[
        "workloads",
        "list",
        "--cluster",
        CLUSTER,
        "--limit",
        "5000",
        "-o",
        "json",
    ]))
    .expect("json");
    listed["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let r = &w["running"];
            (
                r["pod_uid"].as_str().unwrap_or_default().to_owned(),
                r["container"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap_or_default(),
                    r["pod"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect()
}

/// The verifier comes back after Pods were created while it was down: its new full
/// inventory has them, keeps what still runs, and duplicates nothing.
async fn inventory_after_restart(env: &mut Env, before: Vec<(String, String, String)>) {
    let restarted = chrono::Utc::now();
    env.up.restart().await.expect("signet up again");
    let synced_since = |env: &Env| -> bool {
        let listed: Value = serde_json::from_str(&env.signet(&[
            "workloads",
            "list",
            "--cluster",
            CLUSTER,
            "--limit",
            "1",
            "-o",
            "json",
        ]))
        .expect("json");
        listed["clusters"][0]["synced_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > restarted)
    };
    wait_for(env, "a full inventory after the restart", || {
        synced_since(env)
    })
    .await;
    let after = all_workloads(env);
    let mut keys: Vec<(&str, &str)> = after
        .iter()
        .map(|(u, c, _)| (u.as_str(), c.as_str()))
        .collect();
    keys.sort_unstable();
    let unique = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), unique, "no container twice: {after:?}");
    for (uid, container, pod) in &before {
        assert!(
            after.iter().any(|(u, c, _)| u == uid && c == container),
            "{pod} ran before the restart and still does: {after:?}"
        );
    }
    for pod in ["signet/unchecked", "kube-system/unchecked"] {
        assert!(
            after.iter().any(|(_, _, p)| p == pod),
            "{pod}, created while the verifier was down, is in the rebuilt inventory: {after:?}"
        );
    }
    eprintln!(
        "inventory after the restart: {} containers ({} before it)",
        after.len(),
        before.len()
    );
}

/// N-of-M: a policy that requires two of two witnesses. One signature is not enough, two
/// are, and revoking one of the two makes it not enough again.
async fn n_of_m(env: &mut Env) {
    let ns = "quorum";
    env.signet(&[
        "witness",
        "create",
        "--name",
        "audit",
        "--kms-key",
        "local://audit",
    ]);
    env.cluster.create_namespace(ns).await.expect("namespace");
    env.signet(&[
        "policy",
        "create",
        ns,
        "--witness",
        "release,audit",
        "--require",
        "2",
        "--cluster",
        CLUSTER,
        "--namespace",
        ns,
        "--mode",
        "enforce",
        "--enable",
    ]);
    let image = format!("{}/demo/quorum:v1", env.host);
    env.signet(&["sign", &image, "--witness", "release", "--wait"]);
    let out = env
        .apply_until(ns, &pod("one-of-two", &image, &[]), |o| !o.status.success())
        .await;
    assert!(
        text(&out).contains(&format!(
            "is not allowed in namespace \"{ns}\" by policy \"{ns}\": unsigned: signed by 1 of the 2 required witnesses (release); not signed by audit"
        )),
        "one signature of the two required: {}",
        text(&out)
    );
    env.signet(&["sign", &image, "--witness", "audit", "--wait"]);
    let out = env
        .apply_until(ns, &pod("two-of-two", &image, &[]), |o| o.status.success())
        .await;
    assert_admitted(&out, "two signatures of two");
    let id = env.signatures(&image, Some("audit"))[0]["id"]
        .as_str()
        .expect("signature id")
        .to_owned();
    env.signet(&[
        "signature",
        "revoke",
        &id,
        "--reason",
        "audit key rotated out",
    ]);
    let out = env
        .apply_until(ns, &pod("one-revoked", &image, &[]), |o| {
            !o.status.success()
        })
        .await;
    assert!(
        !out.status.success(),
        "two signatures, one revoked, is one of two: {}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!(
            "by policy \"{ns}\": witness or key version revoked: signed by 1 of the 2 required witnesses (release); signed by witness audit, but its signature of this digest was revoked"
        )),
        "denied by the quorum policy, naming the revocation: {}",
        text(&out)
    );
}

/// 11. A policy (applied as a file, `signet apply -f`) that requires SLSA provenance from
///     one builder besides the signature: an image signed with that provenance attested
///     is admitted; one only signed is denied for the missing attestation; one whose
///     provenance names another builder is denied naming the condition and what it found.
async fn attestation_required(env: &mut Env) {
    let ns = "provenance";
    env.cluster.create_namespace(ns).await.expect("namespace");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: signet.dev/v1\nkind: SecurityPolicy\nmetadata:\n  name: {ns}\nspec:\n  witnesses: [release]\n  cluster: {CLUSTER}\n  namespace: {ns}\n  mode: enforce\n  enabled: true\n  attestations:\n    - type: slsaprovenance1\n      conditions:\n        - path: $.runDetails.builder.id\n          equals: https://ci.example.com/trusted-builder\n        - path: $.buildDefinition.externalParameters.source\n          matches: \"git+https://git.example.com/*\"\n"
        ),
    )
    .expect("write policy");
    env.signet(&["apply", "-f", policy.to_str().expect("utf-8")]);
    let provenance = |builder: &str| {
        let file = dir
            .path()
            .join(format!("{}.json", builder.replace(['/', ':', '.'], "_")));
        std::fs::write(
            &file,
            serde_json::json!({
                "buildDefinition": {
                    "buildType": "https://ci.example.com/build/v1",
                    "externalParameters": {"source": "git+https://git.example.com/shop@refs/heads/main"}
                },
                "runDetails": {"builder": {"id": builder}}
            })
            .to_string(),
        )
        .expect("write provenance");
        file
    };
    let mut images = Vec::new();
    for (tag, seed) in [
        ("built", 1101u64),
        ("unattested", 1102),
        ("elsewhere", 1103),
    ] {
        let digest = TestImage::from_seed(seed)
            .push(&env.host, "demo/provenance", tag)
            .await
            .expect("push");
        images.push(format!("{}/demo/provenance@{digest}", env.host));
    }
    let trusted = provenance("https://ci.example.com/trusted-builder");
    let other = provenance("https://laptop.example.com/someone");
    env.signet(&[
        "sign",
        &images[0],
        "--witness",
        "release",
        "--attest",
        &format!("slsaprovenance1={}", trusted.display()),
        "--wait",
    ]);
    env.signet(&["sign", &images[1], "--witness", "release", "--wait"]);
    env.signet(&[
        "sign",
        &images[2],
        "--witness",
        "release",
        "--attest",
        &format!("slsaprovenance1={}", other.display()),
        "--wait",
    ]);
    let out = env
        .apply_until(ns, &pod("built", &images[0], &[]), |o| o.status.success())
        .await;
    assert_admitted(&out, "signed, with provenance from the trusted builder");
    let out = env
        .apply_until(ns, &pod("unattested", &images[1], &[]), |o| {
            !o.status.success()
        })
        .await;
    assert!(
        text(&out).contains(&format!(
            "by policy \"{ns}\": required attestation missing: no https://slsa.dev/provenance/v1 attestation about this digest signed by release"
        )),
        "signed but without provenance: {}",
        text(&out)
    );
    let out = env
        .apply_until(ns, &pod("elsewhere", &images[2], &[]), |o| {
            !o.status.success()
        })
        .await;
    assert!(
        text(&out).contains(
            "attestation does not meet the policy: https://slsa.dev/provenance/v1 attestation by release: $.runDetails.builder.id is \"https://laptop.example.com/someone\", not \"https://ci.example.com/trusted-builder\""
        ),
        "provenance from another builder, naming the condition: {}",
        text(&out)
    );

    // What runs is judged by the same requirements: the admitted Pod is trusted; once
    // the policy asks for another builder, the inventory says it no longer meets it.
    let standing_of = |env: &Env, pod: &str| -> Option<Value> {
        workloads(env, ns)
            .into_iter()
            .find(|w| w["running"]["pod"] == pod)
            .map(|w| w["running"].clone())
    };
    wait_for(env, "the provenance Pod trusted in the inventory", || {
        standing_of(env, "built").is_some_and(|r| r["standing"] == "trusted")
    })
    .await;
    std::fs::write(
        &policy,
        std::fs::read_to_string(&policy)
            .expect("policy")
            .replace("trusted-builder", "new-builder"),
    )
    .expect("rewrite policy");
    env.signet(&["apply", "-f", policy.to_str().expect("utf-8")]);
    let mut running = None;
    wait_for(env, "the provenance Pod to stop meeting the policy", || {
        running = standing_of(env, "built");
        running
            .as_ref()
            .is_some_and(|r| r["standing"] == "untrusted")
    })
    .await;
    let reason = running
        .as_ref()
        .map(|r| r["reason"].to_string())
        .unwrap_or_default();
    assert!(
        reason.contains("attestation does not meet the policy")
            && reason.contains("https://ci.example.com/new-builder"),
        "the inventory says which requirement the running image misses: {running:?}"
    );
    env.signet(&["policy", "disable", ns]);
}

/// 10. A policy that selects namespaces by label (`--namespace-selector`): enforced in a
///     namespace labelled `signet.dev/enforce=true`, not in one without. Taking the label
///     off lifts it and labelling another namespace brings it in, at the next apply; the
///     inventory judges the running containers again under the new labels.
async fn label_selected(env: &mut Env) {
    for ns in ["opted-in", "opted-out"] {
        env.cluster.create_namespace(ns).await.expect("namespace");
    }
    let label = |ns: &str, change: &str| {
        assert_admitted(
            &env.kubectl(&["label", "namespace", ns, change, "--overwrite"]),
            "kubectl label namespace",
        );
    };
    label("opted-in", "signet.dev/enforce=true");
    env.signet(&[
        "policy",
        "create",
        "opt-in",
        "--witness",
        "release",
        "--cluster",
        CLUSTER,
        "--namespace",
        "opted-*",
        "--namespace-selector",
        "signet.dev/enforce=true",
        "--enable",
    ]);
    let shown = env.signet(&["policy", "show", "opt-in"]);
    assert!(
        shown.contains("namespace labels:") && shown.contains("signet.dev/enforce=true"),
        "{shown}"
    );
    let out = env
        .apply_until("opted-in", &pod("unsigned", &env.unsigned, &[]), |o| {
            !o.status.success()
        })
        .await;
    let expected = env.denial("opted-in", "opt-in", &env.unsigned);
    assert_denied(&out, &expected, "an unsigned Pod in the labelled namespace");
    let out = env.apply("opted-out", &pod("free", &env.unsigned, &[]));
    assert_admitted(&out, "an unsigned Pod in a namespace without the label");

    // The label comes off: the policy no longer applies there.
    label("opted-in", "signet.dev/enforce-");
    let out = env
        .apply_until("opted-in", &pod("unsigned", &env.unsigned, &[]), |o| {
            o.status.success()
        })
        .await;
    assert_admitted(&out, "an unsigned Pod once the label is gone");
    // Another namespace opts in: its next unsigned Pod is refused...
    label("opted-out", "signet.dev/enforce=true");
    let out = env
        .apply_until("opted-out", &pod("late", &env.unsigned, &[]), |o| {
            !o.status.success()
        })
        .await;
    let expected = env.denial("opted-out", "opt-in", &env.unsigned);
    assert_denied(
        &out,
        &expected,
        "an unsigned Pod after the namespace opted in",
    );
    // ... and the Pod already running there is judged again under the policy.
    wait_for(env, "the running Pod judged under the new label", || {
        workloads(env, "opted-out").iter().any(|w| {
            w["running"]["pod"] == "free"
                && w["running"]["policy"] == "opt-in"
                && w["running"]["namespace_labels"]["signet.dev/enforce"] == "true"
        })
    })
    .await;
    env.signet(&["policy", "disable", "opt-in"]);
}

/// 8. A signature revoked with `signet signature revoke` is refused at the next
///    `kubectl apply` (the verifier applies the event at once).
async fn revocation(env: &mut Env) {
    let ns = "revocation";
    env.scenario(ns, "enforce", &[]).await;
    let image = format!("{}/demo/revoked:v1", env.host);
    let out = env
        .apply_until(ns, &pod("before", &image, &[]), |o| o.status.success())
        .await;
    assert_admitted(&out, "the signed image before revocation");
    let id = env.signatures(&image, None)[0]["id"]
        .as_str()
        .expect("signature id")
        .to_owned();
    env.signet(&[
        "signature",
        "revoke",
        &id,
        "--reason",
        "key leaked in CI logs",
    ]);
    let revoked = Instant::now();
    let mut attempt = 0;
    let out = loop {
        attempt += 1;
        let out = env.apply(ns, &pod(&format!("after-{attempt}"), &image, &[]));
        if !out.status.success() || revoked.elapsed() > Duration::from_secs(5) {
            break out;
        }
    };
    let latency = revoked.elapsed();
    eprintln!("timing: revocation to denial: {latency:.2?} ({attempt} kubectl apply)");
    env.timings
        .push(("revocation → kubectl denied".into(), latency));
    assert_denied(
        &out,
        &format!(
            "{}: witness or key version revoked",
            env.denial(ns, ns, &image)
        ),
        "the revoked signature",
    );
    assert!(
        text(&out).contains("key leaked in CI logs"),
        "the denial gives the revocation's reason: {}",
        text(&out)
    );
    assert!(
        latency < Duration::from_millis(1500),
        "revocation took {latency:?} to be enforced"
    );
}

/// 9. Digest pinning: the Pod stored in etcd names `repo:tag@digest`.
async fn digest_pinning(env: &mut Env) {
    let ns = "pinning";
    env.scenario(ns, "enforce", &[]).await;
    let image = format!("{}/demo/pinned:v1", env.host);
    let digest = TestImage::from_seed(4 + u64::from(std::process::id())).digest();
    let out = env
        .apply_until(ns, &pod("pinned", &image, &[]), |o| o.status.success())
        .await;
    assert_admitted(&out, "a signed Pod by tag");
    let stored = env.kubectl(&[
        "get",
        "pod",
        "pinned",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.containers[0].image}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&stored.stdout),
        format!("{image}@{digest}"),
        "the Pod in etcd runs the verified digest"
    );
    let verified = env.kubectl(&[
        "get",
        "pod",
        "pinned",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.annotations.signet\\.dev/verified-images}",
    ]);
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains(digest.as_str()),
        "{}",
        text(&verified)
    );
    // The Deployment keeps its tag; its Pods are pinned.
    assert_admitted(
        &env.apply(ns, &deployment("pinned", &image, 1)),
        "Deployment",
    );
    wait_for(env, "the Deployment's pinned Pod", || {
        let out = env.kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "app=pinned",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ]);
        String::from_utf8_lossy(&out.stdout) == format!("{image}@{digest}")
    })
    .await;
    let kept = env.kubectl(&[
        "get",
        "deployment",
        "pinned",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(String::from_utf8_lossy(&kept.stdout), image);
}

/// 7. Verifier down: enforced namespaces are refused within the webhook timeout; the
///    release's namespace and kube-system stay writable.
async fn verifier_down(env: &mut Env) {
    let ns = "verifier-down";
    env.scenario(ns, "enforce", &[]).await;
    let out = env
        .apply_until(ns, &pod("up", &env.signed, &[]), |o| o.status.success())
        .await;
    assert_admitted(&out, "a signed Pod while the verifier runs");

    // A verifier that hangs (SIGSTOP: connections are accepted by the kernel, never
    // answered): the API server waits for each webhook's timeoutSeconds, the mutating
    // one (failurePolicy Ignore) and then the validating one (Fail), and refuses.
    let pid = env.up.pid().expect("signet up runs").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill")
        .success());
    let t = Instant::now();
    let out = env.apply(ns, &pod("hung", &env.signed, &[]));
    let hung = t.elapsed();
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill")
        .success());
    eprintln!(
        "timing: refusal with the verifier hung: {hung:.2?}: {}",
        text(&out).trim()
    );
    env.timings.push(("verifier hung → refusal".into(), hung));
    let t = text(&out);
    assert!(
        !out.status.success(),
        "admitted with the verifier hung: {t}"
    );
    assert!(
        t.contains("failed calling webhook \"validate.signet.dev\"")
            && t.contains("context deadline exceeded"),
        "the API server says the webhook timed out: {t}"
    );
    assert!(
        hung >= WEBHOOK_TIMEOUT && hung < 2 * WEBHOOK_TIMEOUT + Duration::from_secs(2),
        "refused after {hung:?}: expected the two webhooks' timeouts, 2 × {WEBHOOK_TIMEOUT:?}"
    );

    env.up.kill().expect("kill signet up");

    let t = Instant::now();
    let out = env.apply(ns, &pod("down", &env.signed, &[]));
    let took = t.elapsed();
    eprintln!(
        "timing: refusal with the verifier down: {took:.2?}: {}",
        text(&out).trim()
    );
    env.timings.push(("verifier down → refusal".into(), took));
    let t = text(&out);
    assert!(
        !out.status.success(),
        "admitted with the verifier down: {t}"
    );
    assert!(
        t.contains("failed calling webhook \"validate.signet.dev\""),
        "the API server says the webhook failed: {t}"
    );
    assert!(
        took < WEBHOOK_TIMEOUT + Duration::from_secs(2),
        "refused after {took:?}, over the webhook's {WEBHOOK_TIMEOUT:?} timeout"
    );

    for ns in ["signet", "kube-system"] {
        let t = Instant::now();
        let out = env.apply(ns, &pod("unchecked", &env.unsigned, &[]));
        assert_admitted(&out, &format!("a Pod in {ns} with the verifier down"));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{ns}: {:?}",
            t.elapsed()
        );
    }
}

async fn wait_for(env: &Env, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; cluster logs:\n{}",
            env.cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
