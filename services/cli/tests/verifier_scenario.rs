//! The scenario in docs/verifier.md, step by step, with the real `signet up` (whose
//! verifier serves HTTPS for cluster c1), the real CLI and a real docker-registry:
//!
//! 1. an enforce policy for c1/prod;
//! 2. a signed image is admitted, an unsigned one denied with a message naming it;
//! 3. a freshly signed image is admitted with the registry stopped right after the
//!    signature was published;
//! 4. revoking the witness denies its images;
//! 5. a dry-run policy produces audit entries and an impact summary, and no denials.
//!
//! The elapsed times of steps 3 and 4 are printed; they are measured, not asserted
//! (timing never decides a test here; the figures are in docs/verifier.md).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

use common::{bin, ok};

const POD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../verifier/tests/fixtures/pod-create.json"
);
const DEADLINE: Duration = Duration::from_secs(30);
static NEXT_UID: AtomicU64 = AtomicU64::new(1);

struct Webhook {
    url: String,
    http: reqwest::Client,
}

impl Webhook {
    fn new(up: &SignetUp) -> Self {
        let pem = std::fs::read(up.verifier_cert()).expect("the verifier certificate");
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("PEM")])
            .timeout(Duration::from_secs(15))
            .build()
            .expect("HTTPS client");
        Self {
            url: up.verifier().expect("verifier URL"),
            http,
        }
    }

    /// What `review NAMESPACE IMAGE` in docs/verifier.md does: POST the Pod fixture.
    async fn review(&self, namespace: &str, image: &str) -> Value {
        let body = std::fs::read_to_string(POD)
            .expect("fixture")
            .replace(
                "{{UID}}",
                &format!("scenario-{}", NEXT_UID.fetch_add(1, Ordering::Relaxed)),
            )
            .replace("{{NAMESPACE}}", namespace)
            .replace("{{IMAGE}}", image)
            .replace("{{INIT_IMAGE}}", image);
        let v: Value = self
            .http
            .post(format!("{}/validate", self.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the verifier answers over HTTPS")
            .json()
            .await
            .expect("an AdmissionReview");
        v["response"].clone()
    }

    /// Reviews until `want` says yes; returns the answer and how long it took.
    async fn until(
        &self,
        what: &str,
        namespace: &str,
        image: &str,
        want: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let r = self.review(namespace, image).await;
            if want(&r) {
                return (r, started.elapsed());
            }
            assert!(started.elapsed() < DEADLINE, "{what}: last answer {r}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn message(r: &Value) -> &str {
    r["status"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_scenario() {
    let mut registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    TestImage::random()
        .push(&host, "team/app", "v1")
        .await
        .expect("push");
    TestImage::random()
        .push(&host, "team/unsigned", "v1")
        .await
        .expect("push");
    TestImage::random()
        .push(&host, "team/fresh", "v2")
        .await
        .expect("push");
    let (app, unsigned, fresh) = (
        format!("{host}/team/app:v1"),
        format!("{host}/team/unsigned:v1"),
        format!("{host}/team/fresh:v2"),
    );
    let up = SignetUp::start(bin(), &[("SIGNET_VERIFIER__CLUSTER", "c1")])
        .await
        .expect("signet up");
    let cli = |args: &[&str]| up.cli(args).expect("run signet");
    ok(
        &cli(&[
            "witness",
            "create",
            "--name",
            "release",
            "--kms-key",
            "local://release",
        ]),
        "witness create",
    );
    let signed = ok(
        &cli(&["sign", &app, "--witness", "release", "--wait"]),
        "sign",
    );
    let app_digest = digest_of(&signed);
    let hook = Webhook::new(&up);

    // 1. An enforce policy for c1/prod, created disabled, then enabled.
    let created = ok(
        &cli(&[
            "policy",
            "create",
            "prod-images",
            "--witness",
            "release",
            "--cluster",
            "c1",
            "--namespace",
            "prod",
            "--mode",
            "enforce",
        ]),
        "policy create",
    );
    assert!(created.contains("it is disabled"), "{created}");
    ok(&cli(&["policy", "enable", "prod-images"]), "policy enable");

    // 2. Signed: admitted. Unsigned: denied, and the message names it.
    let (denied, _) = hook
        .until("the policy to be enforced", "prod", &unsigned, |r| {
            r["allowed"] == false
        })
        .await;
    let m = message(&denied);
    assert!(m.contains(&unsigned), "{m}");
    assert!(m.contains("prod-images") && m.contains("unsigned"), "{m}");
    let ok_app = hook.review("prod", &app).await;
    assert_eq!(ok_app["allowed"], true, "{}", message(&ok_app));

    // 3. Sign a new image, stop the registry right after publication: admitted.
    let out = ok(
        &cli(&["sign", &fresh, "--witness", "release", "--wait"]),
        "sign",
    );
    registry.stop().expect("stop the registry");
    let pinned = format!("{host}/team/fresh@{}", digest_of(&out));
    let (_, took) = hook
        .until("the fresh image to be admitted", "prod", &pinned, |r| {
            r["allowed"] == true
        })
        .await;
    eprintln!("step 3: admitted {took:?} after `signet sign --wait` returned, registry down");

    // 4. Revoke the witness: denied. The CLI first names the enabled policy this turns
    //    into "deny everything" and, without a terminal to ask on, revokes nothing.
    let out = cli(&["witness", "revoke", "release"]);
    assert!(!out.status.success(), "revoked without --yes: {out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("prod-images (enforce mode, cluster c1, namespace prod) DENIES EVERYTHING")
            && said.contains("pass --yes"),
        "{said}"
    );
    let (_, _) = hook
        .until("the image still admitted", "prod", &pinned, |r| {
            r["allowed"] == true
        })
        .await;
    let revoked = ok(
        &cli(&["witness", "revoke", "release", "--yes", "-o", "json"]),
        "witness revoke --yes",
    );
    let revoked: serde_json::Value = serde_json::from_str(&revoked).expect("json");
    assert_eq!(
        revoked["affected_policies"][0]["name"], "prod-images",
        "{revoked:#}"
    );
    assert_eq!(
        revoked["affected_policies"][0]["denies_everything"], true,
        "{revoked:#}"
    );
    let app_pinned = format!("{host}/team/app@{app_digest}");
    let (denied, took) = hook
        .until(
            "the revoked witness's image to be denied",
            "prod",
            &app_pinned,
            |r| r["allowed"] == false,
        )
        .await;
    assert!(message(&denied).contains("revoked"), "{}", message(&denied));
    eprintln!("step 4: denied {took:?} after `signet witness revoke` returned");

    // 5. A dry-run policy: audit entries and an impact summary, no denials.
    registry.restart().await.expect("start the registry again");
    ok(
        &cli(&[
            "policy",
            "create",
            "staging-trial",
            "--witness",
            "release",
            "--cluster",
            "c1",
            "--namespace",
            "staging",
            "--mode",
            "dry-run",
            "--enable",
        ]),
        "policy create --enable",
    );
    let would_deny = || {
        let out = ok(
            &cli(&[
                "audit",
                "--admissions",
                "--policy",
                "staging-trial",
                "--outcome",
                "would_deny",
                "-o",
                "json",
            ]),
            "audit --admissions",
        );
        serde_json::from_str::<Value>(&out).expect("json")
    };
    let recorded = |v: &Value| v["decisions"].as_array().map_or(0, Vec::len);
    // Until the policy reaches the verifier, `staging` has no policy and a review there
    // is allowed without a decision: review until one is recorded.
    let started = Instant::now();
    loop {
        let r = hook.review("staging", &unsigned).await;
        assert_eq!(r["allowed"], true, "dry-run never denies");
        assert!(r["warnings"].is_null(), "nor warns: {r}");
        if recorded(&would_deny()) >= 1 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the dry-run policy did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        let r = hook.review("staging", &unsigned).await;
        assert_eq!(r["allowed"], true, "dry-run never denies");
        assert!(r["warnings"].is_null(), "nor warns: {r}");
    }
    let started = Instant::now();
    let audit = loop {
        let v = would_deny();
        if recorded(&v) >= 3 {
            break v;
        }
        assert!(started.elapsed() < DEADLINE, "decisions not reported: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(audit["decisions"][0]["images"][0]["reason"], "unsigned");
    let text = ok(
        &cli(&["audit", "--admissions", "--policy", "staging-trial"]),
        "audit --admissions",
    );
    assert!(text.contains("would_deny"), "{text}");
    let impact = ok(
        &cli(&["policy", "impact", "staging-trial"]),
        "policy impact",
    );
    assert!(
        impact.contains("would be blocked by enforcing it"),
        "{impact}"
    );
    // Every review after the policy arrived would have been blocked: at least the three
    // counted above (more when one landed before the first report was read).
    let count = |key: &str| {
        impact
            .split(|c: char| c.is_whitespace() || c == ',')
            .find_map(|w| w.strip_prefix(key)?.parse::<usize>().ok())
            .unwrap_or(0)
    };
    assert!(count("unsigned=") >= 3, "{impact}");
    assert_eq!(count("staging="), count("unsigned="), "{impact}");
    let listed = ok(&cli(&["images", "list"]), "images list");
    assert!(
        !listed.contains("team/app@"),
        "a revoked witness's images are no longer trusted: {listed}"
    );
}

/// The `digest:` line of `signet sign --wait`.
fn digest_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("digest:").map(|d| d.trim().to_owned()))
        .unwrap_or_else(|| panic!("no digest in: {out}"))
}
