//! Security policies, trust bundles, trusted images and admission decisions over the
//! wire, against a gateway on a free port with a SQLite store in a temp dir.

mod common;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use signet_core::{
    AdmissionDecision, AdmissionOutcome, DenialReason, Digest, EventKind, ImageVerdict, NewAudit,
    PolicyMode, SignatureRecord,
};
use signet_store::Store;
use tokio_util::sync::CancellationToken;

struct Gateway {
    url: String,
    store: Store,
    admin: String,
    signer: String,
    verifier: String,
    http: reqwest::Client,
    /// The control plane key's public half, as a verifier pins it.
    pinned: signet_core::PinnedKeys,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start() -> Gateway {
    start_with(|_| {}).await
}

async fn start_with(
    settings: impl FnOnce(&mut signet_runtime::settings::GatewaySettings),
) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite(dir.path()).await;
    let bus = signet_bus::connect("embedded", &store).await.expect("bus");
    let mut state = common::state(dir.path(), &store, bus).await;
    let mut s = (*state.settings).clone();
    settings(&mut s);
    state.settings = std::sync::Arc::new(s);
    let pinned = signet_core::PinnedKeys::new([state.control_key.public_key().clone()]);
    let tokens = common::tokens(&store).await;
    let shutdown = CancellationToken::new();
    let url = common::serve(state, shutdown.clone()).await;
    Gateway {
        url,
        store,
        admin: tokens.admin,
        signer: tokens.signer,
        verifier: tokens.verifier,
        http: reqwest::Client::new(),
        pinned,
        _dir: dir,
        _shutdown: shutdown.drop_guard(),
    }
}

impl Gateway {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn witness(&self, name: &str) -> Value {
        let (s, body) = self
            .call(
                Method::POST,
                "/v1/witnesses",
                &self.admin,
                Some(json!({"name": name, "kms_key": format!("local://{name}")})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body
    }

    async fn policy(&self, body: Value) -> Value {
        let (s, p) = self
            .call(Method::POST, "/v1/policies", &self.admin, Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        p
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, detail_has: &str) {
    assert_eq!(status, want, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "detail {detail:?} should mention {detail_has:?}"
    );
}

#[tokio::test]
async fn policies_start_disabled_and_every_change_is_an_event() {
    let gw = start().await;
    gw.witness("release").await;
    gw.witness("qa").await;
    let p = gw
        .policy(json!({
            "name": "prod-images",
            "witnesses": ["release", "qa"],
            "require": 2,
            "cluster": "c1",
            "namespace": "prod",
            "exemptions": ["registry.k8s.io/pause:*"],
        }))
        .await;
    assert_eq!(p["enabled"], false, "policies are off by default");
    assert_eq!(p["mode"], "enforce");
    assert_eq!(p["require"], 2);

    let (s, shown) = gw
        .call(Method::GET, "/v1/policies/prod-images", &gw.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown, p, "what a create answers is what a read returns");

    let (s, on) = gw
        .call(
            Method::PATCH,
            "/v1/policies/prod-images",
            &gw.admin,
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{on}");
    assert_eq!(on["enabled"], true);
    assert_eq!(on["require"], 2, "a patch keeps what it does not name");
    let (s, dry) = gw
        .call(
            Method::PATCH,
            "/v1/policies/prod-images",
            &gw.admin,
            Some(json!({"mode": "dry-run", "namespace": "team-*"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{dry}");
    assert_eq!(dry["mode"], "dry-run");

    let (_, list) = gw
        .call(Method::GET, "/v1/policies?cluster=c1", &gw.admin, None)
        .await;
    assert_eq!(list["policies"].as_array().map(Vec::len), Some(1));
    let (_, none) = gw
        .call(Method::GET, "/v1/policies?cluster=c2", &gw.admin, None)
        .await;
    assert_eq!(none["policies"].as_array().map(Vec::len), Some(0));

    let (s, gone) = gw
        .call(Method::DELETE, "/v1/policies/prod-images", &gw.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(gone["deleted"]["name"], "prod-images");
    let (s, b) = gw
        .call(Method::GET, "/v1/policies/prod-images", &gw.admin, None)
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "does not exist");

    let actions: Vec<String> = gw
        .store
        .outbox_pending(1000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|r| r.event.event_type == EventKind::PolicyUpdated.cloudevent_type())
        .map(|r| {
            r.event.data["action"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, ["created", "enabled", "updated", "deleted"]);
    let (_, audit) = gw
        .call(Method::GET, "/v1/audit?action=policy.", &gw.admin, None)
        .await;
    let audited: Vec<&str> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        audited,
        [
            "policy.delete",
            "policy.update",
            "policy.enable",
            "policy.create"
        ]
    );
}

#[tokio::test]
async fn bad_policies_are_refused_with_every_reason() {
    let gw = start().await;
    gw.witness("release").await;
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(json!({
                "name": "p", "witnesses": ["release"], "require": 2,
                "cluster": "c1", "namespace": "team-[", "exemptions": [""],
            })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "require must be between 1 and",
    );
    let detail = b["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("namespace \"team-[\""), "{detail}");
    assert!(detail.contains("exemption"), "{detail}");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(json!({
                "name": "p", "witnesses": ["release", "ghost"],
                "cluster": "c1", "namespace": "prod",
            })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNPROCESSABLE_ENTITY,
        "witness \"ghost\" does not exist",
    );
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(json!({
                "name": "p", "witnesses": ["release"], "cluster": "c1",
                "namespace": "prod", "mode": "audit",
            })),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "enforce, warn or dry-run");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(json!({
                "name": "p", "witnesses": ["release"], "cluster": "c1", "namespace": "*",
                "namespace_selector": {"matchExpressions": [
                    {"key": "-bad", "operator": "Exists"},
                    {"key": "tier", "operator": "In", "values": []}]},
            })),
        )
        .await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "namespace selector: label key \"-bad\"",
    );
    let detail = b["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("needs at least one value"), "{detail}");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(json!({
                "name": "p", "witnesses": ["release"], "cluster": "c1", "namespace": "*",
                "namespace_selector": {"matchExpressions": [{"key": "a", "operator": "Has"}]},
            })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    gw.policy(json!({"name": "p", "witnesses": ["release"], "cluster": "c1", "namespace": "prod"}))
        .await;
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(json!({"name": "p", "witnesses": ["release"], "cluster": "c1", "namespace": "prod"})),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "already exists");
    let (s, b) = gw
        .call(
            Method::PATCH,
            "/v1/policies/p",
            &gw.admin,
            Some(json!({"witnesses": []})),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "at least one witness");
    // Only admins manage policies.
    for token in [&gw.signer, &gw.verifier] {
        let (s, _) = gw.call(Method::GET, "/v1/policies", token, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn trust_bundle_carries_policies_and_live_keys_at_a_revision() {
    let gw = start().await;
    let release = gw.witness("release").await;
    gw.witness("other").await;
    gw.policy(json!({"name": "on", "witnesses": ["release"], "cluster": "c1", "namespace": "prod", "enabled": true}))
        .await;
    gw.policy(
        json!({"name": "off", "witnesses": ["release"], "cluster": "c1", "namespace": "dev"}),
    )
    .await;
    gw.policy(
        json!({"name": "elsewhere", "witnesses": ["other"], "cluster": "c2", "namespace": "prod"}),
    )
    .await;
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/trust-bundle?cluster=c1",
            &gw.verifier,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["cluster"], "c1");
    assert_eq!(
        b["revision"].as_i64(),
        Some(gw.store.outbox_revision().await.expect("revision"))
    );
    let names: Vec<&str> = b["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["off", "on"],
        "disabled policies are in the bundle too"
    );
    let keys = b["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["witness"], "release");
    assert_eq!(keys[0]["fingerprint"], release["fingerprint"]);
    assert_eq!(b["revoked_keys"].as_array().map(Vec::len), Some(0));

    // The body is sealed by the control plane's key: the seal verifies over exactly
    // these bytes, and not over anything else.
    let resp = gw
        .http
        .get(format!("{}/v1/trust-bundle?cluster=c1", gw.url))
        .bearer_auth(&gw.verifier)
        .send()
        .await
        .expect("bundle");
    let seal = resp
        .headers()
        .get("signet-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.bytes().await.expect("body");
    gw.pinned
        .check(&bytes, seal.as_deref())
        .expect("the bundle is sealed by the control plane's key");
    let mut tampered = bytes.to_vec();
    tampered.extend_from_slice(b" ");
    assert!(gw.pinned.check(&tampered, seal.as_deref()).is_err());
    let (s, key) = gw
        .call(Method::GET, "/v1/control-plane/key", &gw.verifier, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{key}");
    assert_eq!(
        key["fingerprint"].as_str(),
        gw.pinned.fingerprints().next(),
        "{key}"
    );

    // Revoking the witness moves its keys out of the trusted set.
    let (s, _) = gw
        .call(
            Method::POST,
            "/v1/witnesses/release/revoke",
            &gw.admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = gw
        .call(
            Method::GET,
            "/v1/trust-bundle?cluster=c1",
            &gw.verifier,
            None,
        )
        .await;
    assert_eq!(b["keys"].as_array().map(Vec::len), Some(0));
    assert_eq!(b["revoked_keys"].as_array().map(Vec::len), Some(1));

    let (s, _) = gw
        .call(Method::GET, "/v1/trust-bundle?cluster=c1", &gw.signer, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/trust-bundle?cluster=C%201",
            &gw.verifier,
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "cluster name");
    let (s, _) = gw
        .call(Method::GET, "/v1/trust-bundle", &gw.verifier, None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

fn record(repo: &str, seed: &str, witness: &Value) -> SignatureRecord {
    let digest = Digest::of(seed.as_bytes());
    SignatureRecord {
        id: uuid::Uuid::new_v4(),
        repository: repo.to_owned(),
        artifact: format!("{repo}:{}", digest.signature_tag()),
        digest,
        witness: witness["name"].as_str().unwrap_or_default().to_owned(),
        key_version: "1".into(),
        key_fingerprint: witness["fingerprint"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        algorithm: signet_core::SignatureAlgorithm::RsaPkcs1Sha256,
        payload: b"{}".to_vec(),
        signature: vec![1; 256],
        job_id: None,
        created_at: Utc::now(),
        revoked: None,
    }
}

#[tokio::test]
async fn trusted_images_exclude_revoked_witnesses() {
    let gw = start().await;
    let release = gw.witness("release").await;
    let old = gw.witness("old").await;
    for (rec, w) in [
        (record("reg.local/team/app", "a", &release), "release"),
        (record("reg.local/team/app", "b", &old), "old"),
    ] {
        gw.store
            .record_signature(
                &rec,
                &NewAudit::new("signer", "signature.publish", w, json!({})),
                None,
            )
            .await
            .expect("record");
    }
    let (s, b) = gw
        .call(Method::GET, "/v1/images?trusted=true", &gw.verifier, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["images"].as_array().map(Vec::len), Some(2));
    let (s, _) = gw
        .call(Method::POST, "/v1/witnesses/old/revoke", &gw.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = gw.call(Method::GET, "/v1/images", &gw.admin, None).await;
    let images = b["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{b}");
    let img = &images[0];
    assert_eq!(img["witness"], "release");
    assert_eq!(
        img["image"],
        format!("reg.local/team/app@{}", Digest::of(b"a"))
    );
    assert_eq!(
        img["artifact"],
        format!("reg.local/team/app:{}", Digest::of(b"a").signature_tag())
    );
    let (_, b) = gw
        .call(Method::GET, "/v1/images?witness=old", &gw.admin, None)
        .await;
    assert_eq!(b["images"].as_array().map(Vec::len), Some(0));
    let (s, b) = gw
        .call(Method::GET, "/v1/images?trusted=false", &gw.admin, None)
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "only trusted images");
    let (s, _) = gw.call(Method::GET, "/v1/images", &gw.signer, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A revoked signature is not a trusted image, and `limit` counts trusted images: the
    // newest signature is revoked, so limit=1 must still return the older trusted one.
    let newest = record("reg.local/team/app", "c", &release);
    gw.store
        .record_signature(
            &newest,
            &NewAudit::new("signer", "signature.publish", "release", json!({})),
            None,
        )
        .await
        .expect("record");
    gw.store
        .revoke_signature(newest.id, "admin", "built from a compromised runner")
        .await
        .expect("revoke");
    let (_, b) = gw
        .call(Method::GET, "/v1/images?limit=1", &gw.verifier, None)
        .await;
    let images = b["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{b}");
    assert_eq!(
        images[0]["digest"],
        Digest::of(b"a").to_string(),
        "the revoked newest signature is left out: {b}"
    );
}

fn decision(uid: &str, outcome: AdmissionOutcome) -> AdmissionDecision {
    AdmissionDecision {
        at: Utc::now(),
        cluster: "c1".into(),
        uid: uid.to_owned(),
        namespace: "prod".into(),
        kind: "Pod".into(),
        name: format!("web-{uid}"),
        operation: "CREATE".into(),
        policy: "dry".into(),
        mode: PolicyMode::DryRun,
        outcome,
        images: vec![ImageVerdict {
            image: "reg.local/team/unsigned:v1".into(),
            digest: None,
            witnesses: vec![],
            exempt: false,
            reason: outcome.failed().then_some(DenialReason::Unsigned),
            detail: String::new(),
        }],
        message: String::new(),
        break_glass: None,
        dry_run: false,
        user: None,
        groups: Vec::new(),
    }
}

#[tokio::test]
async fn verifiers_report_decisions_and_impact_sums_them_up() {
    let gw = start().await;
    gw.witness("release").await;
    gw.policy(json!({"name": "dry", "witnesses": ["release"], "cluster": "c1", "namespace": "prod", "mode": "dry-run", "enabled": true}))
        .await;
    let mut glass = decision("g", AdmissionOutcome::BreakGlass);
    glass.break_glass = Some("incident 7".into());
    let batch = json!({"decisions": [
        decision("a", AdmissionOutcome::Allowed),
        decision("b", AdmissionOutcome::WouldDeny),
        decision("c", AdmissionOutcome::WouldDeny),
        glass,
    ]});
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/admission-decisions",
            &gw.verifier,
            Some(batch.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["recorded"], 4);
    let (_, b) = gw
        .call(
            Method::POST,
            "/v1/admission-decisions",
            &gw.verifier,
            Some(batch),
        )
        .await;
    assert_eq!(b["recorded"], 0);
    assert_eq!(b["duplicates"], 4);
    let (s, _) = gw
        .call(
            Method::POST,
            "/v1/admission-decisions",
            &gw.signer,
            Some(json!({"decisions": []})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/admission-decisions?policy=dry&outcome=would_deny",
            &gw.admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["decisions"].as_array().map(Vec::len), Some(2));
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/admission-decisions?outcome=maybe",
            &gw.admin,
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "would_deny");

    let (s, b) = gw
        .call(Method::GET, "/v1/policies/dry/impact", &gw.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["policy"]["mode"], "dry-run");
    assert_eq!(b["impact"]["decisions"], 4);
    assert_eq!(b["impact"]["would_block"], 3);
    assert_eq!(b["impact"]["reasons"]["unsigned"], 3);
    let (_, b) = gw
        .call(
            Method::GET,
            "/v1/policies/dry/impact?since=2999-01-01T00:00:00Z",
            &gw.admin,
            None,
        )
        .await;
    assert_eq!(b["impact"]["decisions"], 0);

    // The break-glass admission is audited and announced.
    let (_, audit) = gw
        .call(
            Method::GET,
            "/v1/audit?action=admission.break_glass",
            &gw.admin,
            None,
        )
        .await;
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], "token:c1");
    assert_eq!(entries[0]["detail"]["reason"], "incident 7");
    let events = gw.store.outbox_pending(1000).await.expect("outbox");
    assert_eq!(
        events
            .iter()
            .filter(|r| r.event.event_type == EventKind::AdmissionBreakGlass.cloudevent_type())
            .count(),
        1
    );
}

fn container(pod: &str, standing: &str, digest: &Digest) -> Value {
    json!({
        "namespace": "shop",
        "pod": pod,
        "pod_uid": format!("uid-{pod}"),
        "container": "app",
        "image": "reg.local/team/app:v1",
        "digest": digest.to_string(),
        "standing": standing,
        "policy": "shop",
        "witnesses": if standing == "trusted" { json!(["release"]) } else { json!([]) },
        "evaluated_at": Utc::now(),
    })
}

/// The control plane keeps the last inventory of a cluster whose verifier went silent and
/// marks it stale with its age, after a real gap; the next report (a verifier's heartbeat
/// is an empty one) makes it current again.
#[tokio::test]
async fn a_silent_clusters_inventory_is_kept_and_marked_stale() {
    let gw = start_with(|s| s.inventory_stale_after = std::time::Duration::from_secs(2)).await;
    let digest = Digest::of(b"a");
    let full = json!({
        "cluster": "c1",
        "sync": {"id": "sync-1", "page": 0, "last": true},
        "containers": [container("web-1", "trusted", &digest), container("web-2", "untrusted", &digest)],
    });
    let (s, b) = gw
        .call(Method::POST, "/v1/inventory", &gw.verifier, Some(full))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = gw.call(Method::GET, "/v1/workloads", &gw.admin, None).await;
    assert_eq!(b["clusters"][0]["stale"], false, "{b:#}");
    assert_eq!(b["clusters"][0]["age_seconds"], 0, "{b:#}");
    // The verifier goes down: nothing is reported for longer than 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let (_, b) = gw.call(Method::GET, "/v1/workloads", &gw.admin, None).await;
    assert_eq!(b["clusters"][0]["stale"], true, "{b:#}");
    assert!(b["clusters"][0]["age_seconds"].as_i64() >= Some(3), "{b:#}");
    assert_eq!(
        b["workloads"].as_array().map(Vec::len),
        Some(2),
        "the last inventory is kept: {b:#}"
    );
    // It comes back: a heartbeat (nothing changed) makes the inventory current again.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/inventory",
            &gw.verifier,
            Some(json!({"cluster": "c1", "containers": []})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["upserted"], 0);
    let (_, b) = gw.call(Method::GET, "/v1/workloads", &gw.admin, None).await;
    assert_eq!(b["clusters"][0]["stale"], false, "{b:#}");
    assert_eq!(b["workloads"].as_array().map(Vec::len), Some(2), "{b:#}");
}

/// What runs: a verifier reports its cluster's containers; admins list them, see where
/// trusted images run, and a standing that gets worse is announced.
#[tokio::test]
async fn verifiers_report_what_runs_and_admins_list_it() {
    let gw = start().await;
    let release = gw.witness("release").await;
    let rec = record("reg.local/team/app", "a", &release);
    gw.store
        .record_signature(
            &rec,
            &NewAudit::new("signer", "signature.publish", "release", json!({})),
            None,
        )
        .await
        .expect("record");
    let digest = Digest::of(b"a");
    let full = json!({
        "cluster": "c1",
        "sync": {"id": "sync-1", "page": 0, "last": true},
        "containers": [container("web-1", "trusted", &digest), container("web-2", "trusted", &digest)],
    });
    // Only the cluster's own verifier (or an admin) reports it; signers never.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/inventory",
            &gw.signer,
            Some(full.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let mut other = full.clone();
    other["cluster"] = json!("c2");
    let (s, b) = gw
        .call(Method::POST, "/v1/inventory", &gw.verifier, Some(other))
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "bound to cluster");
    let (s, b) = gw
        .call(Method::POST, "/v1/inventory", &gw.verifier, Some(full))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["upserted"], 2);
    // A late page of a sync that is no longer in progress.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/inventory",
            &gw.verifier,
            Some(json!({"cluster": "c1", "sync": {"id": "old", "page": 3, "last": true}})),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "not the one in progress");

    let (s, b) = gw.call(Method::GET, "/v1/workloads", &gw.admin, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["workloads"].as_array().map(Vec::len), Some(2), "{b}");
    assert_eq!(b["workloads"][0]["cluster"], "c1");
    assert_eq!(b["workloads"][0]["running"]["pod"], "web-1");
    assert_eq!(b["clusters"][0]["cluster"], "c1");
    assert_eq!(b["clusters"][0]["stale"], false);
    let (s, _) = gw
        .call(Method::GET, "/v1/workloads", &gw.verifier, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins only");
    let (s, b) = gw
        .call(
            Method::GET,
            "/v1/workloads?standing=sideways",
            &gw.admin,
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "standing");

    // Where the trusted image runs.
    let (_, b) = gw
        .call(Method::GET, "/v1/images?running=true", &gw.admin, None)
        .await;
    assert_eq!(
        b["images"][0]["running"],
        json!([{"cluster": "c1", "namespace": "shop", "containers": 2}]),
        "{b}"
    );

    // The signature is revoked; the verifier re-evaluates and reports web-1 revoked.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/inventory",
            &gw.verifier,
            Some(json!({"cluster": "c1", "containers": [container("web-1", "revoked", &digest)]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["worsened"], 1);
    let (_, b) = gw
        .call(
            Method::GET,
            &format!("/v1/workloads?standing=revoked&image={digest}"),
            &gw.admin,
            None,
        )
        .await;
    assert_eq!(b["workloads"].as_array().map(Vec::len), Some(1), "{b}");
    let events = gw.store.outbox_pending(1000).await.expect("outbox");
    assert_eq!(
        events
            .iter()
            .filter(|r| r.event.event_type == EventKind::WorkloadUntrusted.cloudevent_type())
            .count(),
        1
    );

    // The policy's impact counts what runs: enforcing it would stop the revoked one.
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(
                json!({"name": "shop", "witnesses": ["release"], "cluster": "c1",
                        "namespace": "sho*", "mode": "dry-run"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = gw
        .call(Method::GET, "/v1/policies/shop/impact", &gw.admin, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let running = &b["running"];
    assert_eq!(running["containers"], 2, "{b:#}");
    assert_eq!(running["would_stop"], 1, "{b:#}");
    assert_eq!(running["standings"]["revoked"], 1, "{b:#}");
    assert_eq!(
        running["images"][0]["image"], "reg.local/team/app:v1",
        "{b:#}"
    );

    // A label-selected policy counts only the namespaces its selector picks, by the
    // labels the verifier reported with each container.
    let mut web1 = container("web-1", "revoked", &digest);
    web1["namespace_labels"] = json!({"signet.dev/enforce": "true"});
    let mut lab = container("lab-1", "untrusted", &digest);
    lab["namespace"] = json!("lab");
    lab["namespace_labels"] = json!({"team": "lab"});
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/inventory",
            &gw.verifier,
            Some(json!({"cluster": "c1", "containers": [web1, lab]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = gw
        .call(
            Method::POST,
            "/v1/policies",
            &gw.admin,
            Some(
                json!({"name": "opt-in", "witnesses": ["release"], "cluster": "c1",
                        "namespace": "*", "mode": "dry-run",
                        "namespace_selector": {"matchLabels": {"signet.dev/enforce": "true"}}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, b) = gw
        .call(Method::GET, "/v1/policies/opt-in/impact", &gw.admin, None)
        .await;
    // web-1 (selected) and web-2 (reported without labels: counted), not lab-1.
    assert_eq!(b["running"]["containers"], 2, "{b:#}");
    assert_eq!(b["running"]["would_stop"], 1, "{b:#}");
    // Without the selector, every namespace counts.
    let (s, b) = gw
        .call(
            Method::PATCH,
            "/v1/policies/opt-in",
            &gw.admin,
            Some(json!({"namespace_selector": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.get("namespace_selector").is_none(), "{b}");
    let (_, b) = gw
        .call(Method::GET, "/v1/policies/opt-in/impact", &gw.admin, None)
        .await;
    assert_eq!(b["running"]["containers"], 3, "{b:#}");
    assert_eq!(b["running"]["would_stop"], 2, "{b:#}");
}
