//! Traces leave signet over OTLP/HTTP and arrive whole at a real trace backend: Jaeger
//! (v2, the OpenTelemetry Collector inside, built by `scripts/tools.sh`). One `signet
//! sign` is one trace from the API request through the bus, the signer, the KMS and
//! registry calls and the event, to the verifier's trust-cache update, each hop a
//! descendant of the one before. (Before the exporter used the blocking HTTP client, the
//! first export panicked and no span ever left the process.) An admission review of the
//! signed image is a trace of its own, linked to the one that signed it.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{bin, create_local_witness, ok};
use serde_json::Value;
use signet_testkit::image::TestImage;
use signet_testkit::jaeger::Jaeger;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

/// One trace as Jaeger returns it: spans by id, with their parent (CHILD_OF) ids.
struct Trace<'a> {
    spans: Vec<&'a Value>,
}

impl<'a> Trace<'a> {
    fn named(&self, name: &str) -> Vec<&'a Value> {
        self.spans
            .iter()
            .copied()
            .filter(|s| s["operationName"] == name)
            .collect()
    }

    fn tag(span: &Value, key: &str) -> Option<String> {
        span["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == key)
            .map(|t| {
                t["value"]
                    .as_str()
                    .map_or_else(|| t["value"].to_string(), str::to_owned)
            })
    }

    fn parent(span: &Value) -> Option<&str> {
        span["references"]
            .as_array()?
            .iter()
            .find(|r| r["refType"] == "CHILD_OF")
            .and_then(|r| r["spanID"].as_str())
    }

    fn descends(&self, span: &Value, ancestor: &Value) -> bool {
        let by_id: HashMap<&str, &Value> = self
            .spans
            .iter()
            .filter_map(|s| Some((s["spanID"].as_str()?, *s)))
            .collect();
        let target = ancestor["spanID"].as_str();
        let mut parent = Self::parent(span);
        for _ in 0..64 {
            if parent.is_none() {
                return false;
            }
            if parent == target {
                return true;
            }
            parent = parent
                .and_then(|p| by_id.get(p))
                .and_then(|s| Self::parent(s));
        }
        false
    }

    fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} parent={}",
                    s["spanID"].as_str().unwrap_or("?"),
                    s["operationName"].as_str().unwrap_or("?"),
                    Self::parent(s).unwrap_or("-")
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_is_one_trace_in_a_real_trace_backend() {
    let jaeger = Jaeger::start().await.expect("jaeger");
    let registry = TestRegistry::start().await.expect("docker-registry");
    let digest = TestImage::random()
        .push(&registry.host(), "traced/app", "v1")
        .await
        .expect("push");
    let image = format!("{}/traced/app:v1", registry.host());
    let endpoint = jaeger.otlp_endpoint();
    let up = SignetUp::start(bin(), &[("SIGNET_TELEMETRY__OTLP_ENDPOINT", &endpoint)])
        .await
        .expect("signet up");
    create_local_witness(&up, "prod");
    // A policy naming the witness, so the verifier learns the signature from its event.
    for args in [
        vec![
            "policy",
            "create",
            "prod-images",
            "--witness",
            "prod",
            "--cluster",
            "local",
            "--namespace",
            "prod",
            "--mode",
            "enforce",
        ],
        vec!["policy", "enable", "prod-images"],
    ] {
        ok(&up.cli(&args).expect("cli"), &args.join(" "));
    }
    ok(
        &up.cli(&["sign", &image, "--witness", "prod", "--wait"])
            .expect("cli"),
        "sign --wait",
    );

    // The batch processor exports every few seconds: wait for the whole trace, which
    // ends with the verifier's cache update of this image's signature.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (traces, found) = loop {
        let traces = jaeger.traces("signet").await.unwrap_or(Value::Null);
        let found = traces["data"].as_array().and_then(|all| {
            all.iter().position(|t| {
                let spans = t["spans"].as_array();
                let has = |name: &str| {
                    spans.is_some_and(|s| s.iter().any(|x| x["operationName"] == name))
                };
                has("sign_job") && has("event.publish") && has("trust_cache.apply_event")
            })
        });
        if let Some(i) = found {
            break (traces, i);
        }
        assert!(
            Instant::now() < deadline,
            "no whole trace reached Jaeger within 60 s; Jaeger has: {}\njaeger log:\n{}\nsignet log:\n{}",
            traces,
            jaeger.log(),
            up.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let trace = Trace {
        spans: traces["data"][found]["spans"]
            .as_array()
            .expect("spans")
            .iter()
            .collect(),
    };
    let describe = trace.describe();
    let one = |name: &str| -> &Value {
        let found = trace.named(name);
        assert_eq!(found.len(), 1, "{name} spans in:\n{describe}");
        found[0]
    };

    // The API request that enqueued the job is the root of it all.
    let request = trace
        .named("http")
        .into_iter()
        .find(|s| Trace::tag(s, "path").is_some_and(|p| p.starts_with("/v1/sign")))
        .unwrap_or_else(|| panic!("no POST /v1/sign span in:\n{describe}"));
    let job = one("sign_job");
    assert!(
        trace.descends(job, request),
        "sign_job under the request:\n{describe}"
    );
    let kms = one("kms.sign");
    assert!(
        trace.descends(kms, job),
        "kms.sign under sign_job:\n{describe}"
    );
    let publish = one("registry.publish_signature");
    assert!(
        trace.descends(publish, job),
        "registry publish under sign_job:\n{describe}"
    );
    let relayed = trace
        .named("event.publish")
        .into_iter()
        .find(|s| Trace::tag(s, "kind").as_deref() == Some("signature.published"))
        .unwrap_or_else(|| panic!("no signature.published relay in:\n{describe}"));
    assert!(
        trace.descends(relayed, job),
        "event under sign_job:\n{describe}"
    );
    let applied = trace
        .named("trust_cache.apply_event")
        .into_iter()
        .find(|s| Trace::tag(s, "kind").as_deref() == Some("signature.published"))
        .unwrap_or_else(|| panic!("no cache update in:\n{describe}"));
    assert!(
        trace.descends(applied, relayed),
        "the verifier's cache update under the event:\n{describe}"
    );
    // The trace is about this image.
    assert!(
        traces["data"][found]["spans"]
            .to_string()
            .contains(digest.as_str()),
        "the trace names the signed digest:\n{describe}"
    );

    // The admission review of that image links to the trace that signed it.
    let sign_trace = traces["data"][found]["traceID"]
        .as_str()
        .expect("traceID")
        .to_owned();
    let started = Instant::now();
    loop {
        let r = common::review(&up, "prod", &image).await;
        if r["allowed"] == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never admitted: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let traces = jaeger.traces("signet").await.unwrap_or(Value::Null);
        let reviews: Vec<&Value> = traces["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["spans"].as_array().into_iter().flatten())
            .filter(|s| s["operationName"] == "admission.validate")
            .collect();
        let linked = reviews.iter().any(|s| {
            s["references"].as_array().is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["refType"] == "FOLLOWS_FROM" && r["traceID"] == sign_trace.as_str())
            })
        });
        if linked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no admission.validate span links to the signing trace {sign_trace} within 60 s; review spans: {reviews:?}\nverifier's view of the event: {}",
            up.log()
                .lines()
                .filter(|l| l.contains("signature learned") || l.contains("signature event not used") || l.contains("bundle") || l.contains("changed"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
