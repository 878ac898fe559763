//! Policies, trust bundles and admission decisions, each test body run on SQLite (a file
//! in a temp dir) and on PostgreSQL (a fresh database on the local server, which must be up).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use signet_core::{
    AdmissionDecision, AdmissionOutcome, DenialReason, EventKind, ImageVerdict, KeyVersion,
    KeyVersionState, NewAudit, PolicyAction, PolicyMode, PolicyUpdate, PublicKey, SecurityPolicy,
    SignatureAlgorithm, SignatureRecord, Witness, WitnessState,
};
use signet_core::{InventoryReport, InventorySync, RunningContainer, Standing};
use signet_store::{DecisionFilter, Store, StoreError, WorkloadFilter};
use signet_testkit::postgres::TestDatabase;
use tokio::task::JoinSet;

struct TestDb {
    url: String,
    _keep: Keep,
}

enum Keep {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir for the SQLite store");
        let url = format!("sqlite://{}", dir.path().join("signet.db").display());
        TestDb {
            url,
            _keep: Keep::Sqlite(dir),
        }
    }

    async fn postgres() -> TestDb {
        match TestDatabase::create().await {
            Ok(db) => TestDb {
                url: db.url().to_owned(),
                _keep: Keep::Postgres(db),
            },
            Err(e) => panic!("PostgreSQL test database: {e:#}"),
        }
    }

    async fn open(&self) -> Store {
        match Store::connect(&self.url).await {
            Ok(store) => store,
            Err(e) => panic!(
                "opening the store: {e} ({:?})",
                std::error::Error::source(&e)
            ),
        }
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::TestDb::postgres().await).await
                }
            )*
        }
    };
}

on_both_backends!(
    policy_crud_writes_events_in_the_same_transaction,
    policy_updates_are_optimistic,
    policies_name_existing_witnesses_only,
    trust_bundle_is_one_snapshot_with_its_revision,
    decisions_are_stored_once_and_break_glass_is_audited,
    impact_sums_up_a_policy,
    revoked_signatures_are_audited_announced_and_in_trust_bundles,
    legacy_exemptions_keep_their_meaning_as_image_patterns,
    inventory_syncs_changes_and_worsened_standings,
    namespace_selectors_are_stored_changed_and_removed,
);

fn running(pod: &str, uid: &str, standing: Standing) -> RunningContainer {
    RunningContainer {
        namespace: "shop".into(),
        namespace_labels: None,
        pod: pod.into(),
        pod_uid: uid.into(),
        container: "app".into(),
        image: "reg.local/shop/app:v1".into(),
        digest: Some(signet_core::Digest::of(pod.as_bytes())),
        standing,
        policy: Some("shop".into()),
        witnesses: if standing == Standing::Trusted {
            vec!["release".into()]
        } else {
            Vec::new()
        },
        reason: None,
        evaluated_at: ms(Utc::now()),
    }
}

fn page(id: &str, page: u32, last: bool, containers: Vec<RunningContainer>) -> InventoryReport {
    InventoryReport {
        cluster: "c1".into(),
        sync: Some(InventorySync {
            id: id.into(),
            page,
            last,
        }),
        containers,
        removed_pods: Vec::new(),
    }
}

async fn inventory_syncs_changes_and_worsened_standings(db: TestDb) {
    let store = db.open().await;
    let all = WorkloadFilter {
        limit: 100,
        ..WorkloadFilter::default()
    };
    let pods = |store: Store| async move {
        store
            .list_workloads(&WorkloadFilter {
                limit: 100,
                ..WorkloadFilter::default()
            })
            .await
            .expect("list")
            .into_iter()
            .map(|w| (w.running.pod, w.running.standing))
            .collect::<Vec<_>>()
    };
    // A full sync in two pages.
    store
        .apply_inventory(
            &page("s1", 0, false, vec![running("a", "u-a", Standing::Trusted)]),
            "token:c1",
        )
        .await
        .expect("page 0");
    let applied = store
        .apply_inventory(
            &page(
                "s1",
                1,
                true,
                vec![running("b", "u-b", Standing::Untrusted)],
            ),
            "token:c1",
        )
        .await
        .expect("page 1");
    assert_eq!((applied.upserted, applied.removed), (1, 0));
    assert_eq!(
        pods(store.clone()).await,
        vec![
            ("a".into(), Standing::Trusted),
            ("b".into(), Standing::Untrusted)
        ]
    );
    let clusters = store.inventory_clusters().await.expect("clusters");
    assert_eq!(clusters.len(), 1);
    assert!(clusters[0].synced_at.is_some());

    // A change: pod a's signature was revoked. Audited and announced once.
    let mut change = InventoryReport {
        cluster: "c1".into(),
        sync: None,
        containers: vec![running("a", "u-a", Standing::Revoked)],
        removed_pods: vec!["u-b".into()],
    };
    let applied = store
        .apply_inventory(&change, "token:c1")
        .await
        .expect("change");
    assert_eq!(applied.worsened.len(), 1);
    assert_eq!(applied.worsened[0].previous, Standing::Trusted);
    assert_eq!(applied.removed, 1);
    change.removed_pods.clear();
    let again = store
        .apply_inventory(&change, "token:c1")
        .await
        .expect("again");
    assert!(
        again.worsened.is_empty(),
        "the same report twice is not news twice"
    );
    let events = store.outbox_pending(1000).await.expect("outbox");
    let untrusted: Vec<_> = events
        .iter()
        .filter(|r| r.event.event_type == EventKind::WorkloadUntrusted.cloudevent_type())
        .collect();
    assert_eq!(untrusted.len(), 1);
    assert_eq!(untrusted[0].event.subject, "c1/shop/a/app");
    assert_eq!(untrusted[0].event.data["previous"], "trusted");
    assert_eq!(untrusted[0].event.data["container"]["standing"], "revoked");
    let audit = store
        .list_audit(&signet_store::AuditFilter {
            action_prefix: Some("workload.untrusted".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "token:c1");

    // The verifier restarts: a new full sync without pod a (gone meanwhile) and with c.
    // Nothing is duplicated, and what the sync did not mention is gone.
    store
        .apply_inventory(
            &page("s2", 0, false, vec![running("c", "u-c", Standing::Exempt)]),
            "token:c1",
        )
        .await
        .expect("s2 page 0");
    // A change during the sync stays.
    store
        .apply_inventory(
            &InventoryReport {
                cluster: "c1".into(),
                sync: None,
                containers: vec![running("d", "u-d", Standing::Trusted)],
                removed_pods: Vec::new(),
            },
            "token:c1",
        )
        .await
        .expect("change during the sync");
    // A late page of the old sync is refused.
    let e = store
        .apply_inventory(&page("s1", 2, true, vec![]), "token:c1")
        .await
        .expect_err("superseded sync");
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    let done = store
        .apply_inventory(&page("s2", 1, true, vec![]), "token:c1")
        .await
        .expect("s2 last page");
    assert_eq!(done.removed, 1, "pod a");
    assert_eq!(
        pods(store.clone()).await,
        vec![
            ("c".into(), Standing::Exempt),
            ("d".into(), Standing::Trusted)
        ]
    );
    let exempt = store
        .list_workloads(&WorkloadFilter {
            standing: Some(Standing::Exempt),
            ..all.clone()
        })
        .await
        .expect("by standing");
    assert_eq!(exempt.len(), 1);
    let by_digest = store
        .list_workloads(&WorkloadFilter {
            digest: Some(signet_core::Digest::of(b"d")),
            ..all
        })
        .await
        .expect("by digest");
    assert_eq!(by_digest[0].running.pod, "d");
    assert_eq!(by_digest[0].cluster, "c1");
    let by_digests = store
        .list_workloads(&WorkloadFilter {
            digests: Some(vec![
                signet_core::Digest::of(b"c"),
                signet_core::Digest::of(b"d"),
            ]),
            limit: 100,
            ..WorkloadFilter::default()
        })
        .await
        .expect("by digests");
    assert_eq!(by_digests.len(), 2);
    assert!(store
        .list_workloads(&WorkloadFilter {
            digests: Some(Vec::new()),
            limit: 100,
            ..WorkloadFilter::default()
        })
        .await
        .expect("no digests")
        .is_empty());
}

// ---------- helpers ----------

fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).expect("in range")
}

fn key(n: u8) -> PublicKey {
    let pem = match n {
        1 => include_str!("fixtures/witness-key-1.pub"),
        _ => include_str!("fixtures/witness-key-2.pub"),
    };
    PublicKey::parse(pem.as_bytes()).expect("fixture key parses")
}

fn witness(name: &str) -> Witness {
    let version = |n: u8, primary| {
        let public_key = key(n);
        KeyVersion {
            version: n.to_string(),
            fingerprint: public_key.fingerprint(),
            public_key,
            primary,
            state: KeyVersionState::Active,
            created_at: ms(Utc::now()),
        }
    };
    Witness {
        name: name.to_owned(),
        kms_key: format!("local://{name}"),
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        format: Default::default(),
        description: String::new(),
        state: WitnessState::Active,
        key_versions: vec![version(1, false), version(2, true)],
        created_at: ms(Utc::now()),
    }
}

fn policy(name: &str, cluster: &str, witnesses: &[&str]) -> SecurityPolicy {
    let now = ms(Utc::now());
    SecurityPolicy {
        labels: Default::default(),
        name: name.to_owned(),
        witnesses: witnesses.iter().map(|w| (*w).to_owned()).collect(),
        require: 1,
        cluster: cluster.to_owned(),
        namespace: "prod".into(),
        namespace_selector: None,
        mode: PolicyMode::Enforce,
        enabled: false,
        exemptions: vec!["registry.k8s.io/pause:*".into()],
        require_digest: false,
        allow_break_glass: true,
        pin_digests: false,
        attestations: Vec::new(),
        note: "release images only".into(),
        created_at: now,
        updated_at: now,
    }
}

fn audit(action: &str, subject: &str) -> NewAudit {
    NewAudit::new("token:admin", action, subject, json!({}))
}

async fn setup_witnesses(store: &Store, names: &[&str]) {
    for n in names {
        store
            .create_witness(&witness(n), &audit("witness.create", n))
            .await
            .expect("create witness");
    }
}

/// The policy.updated events in the outbox, oldest first, as (revision, action, policy).
async fn policy_events(store: &Store) -> Vec<(i64, PolicyUpdate)> {
    store
        .outbox_pending(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|r| r.event.event_type == EventKind::PolicyUpdated.cloudevent_type())
        .map(|r| {
            (
                r.id,
                serde_json::from_value(r.event.data).expect("policy event data"),
            )
        })
        .collect()
}

fn decision(uid: &str, policy: &str, outcome: AdmissionOutcome) -> AdmissionDecision {
    let failed = outcome.failed();
    AdmissionDecision {
        at: ms(Utc::now()),
        cluster: "c1".into(),
        uid: uid.to_owned(),
        namespace: if failed { "prod".into() } else { "dev".into() },
        kind: "Deployment".into(),
        name: format!("app-{uid}"),
        operation: "CREATE".into(),
        policy: policy.to_owned(),
        mode: PolicyMode::DryRun,
        outcome,
        images: vec![ImageVerdict {
            image: if failed {
                "registry.local/team/unsigned:v1".into()
            } else {
                "registry.local/team/app:v1".into()
            },
            digest: None,
            witnesses: vec![],
            exempt: false,
            reason: failed.then_some(DenialReason::Unsigned),
            detail: String::new(),
        }],
        message: String::new(),
        break_glass: None,
        dry_run: false,
        user: None,
        groups: Vec::new(),
    }
}

// ---------- tests ----------

async fn policy_crud_writes_events_in_the_same_transaction(db: TestDb) {
    let store = db.open().await;
    setup_witnesses(&store, &["release", "qa"]).await;
    let p = policy("prod-images", "c1", &["release", "qa"]);
    let created_rev = store
        .create_policy(&p, &audit("policy.create", &p.name))
        .await
        .expect("create");
    assert_eq!(
        created_rev,
        store.outbox_revision().await.expect("revision")
    );
    assert_eq!(
        store.get_policy(&p.name).await.expect("get").as_ref(),
        Some(&p)
    );
    assert!(matches!(
        store
            .create_policy(&p, &audit("policy.create", &p.name))
            .await,
        Err(StoreError::Conflict(_))
    ));

    let mut enabled = p.clone();
    enabled.enabled = true;
    enabled.require = 2;
    let stored = store
        .update_policy(
            &p,
            &enabled,
            PolicyAction::Enabled,
            &audit("policy.enable", &p.name),
        )
        .await
        .expect("update");
    assert!(stored.enabled && stored.require == 2);
    assert!(stored.updated_at > p.updated_at);
    assert_eq!(stored.created_at, p.created_at);
    assert_eq!(
        store.get_policy(&p.name).await.expect("get"),
        Some(stored.clone())
    );

    let other = policy("staging", "c2", &["qa"]);
    store
        .create_policy(&other, &audit("policy.create", &other.name))
        .await
        .expect("create other");
    let names = |ps: Vec<SecurityPolicy>| ps.into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_policies(None).await.expect("list")),
        ["prod-images", "staging"]
    );
    assert_eq!(
        names(store.list_policies(Some("c2")).await.expect("list")),
        ["staging"]
    );

    let deleted = store
        .delete_policy(&p.name, &audit("policy.delete", &p.name))
        .await
        .expect("delete");
    assert_eq!(deleted, stored);
    assert_eq!(store.get_policy(&p.name).await.expect("get"), None);
    assert!(matches!(
        store
            .delete_policy(&p.name, &audit("policy.delete", &p.name))
            .await,
        Err(StoreError::NotFound(_))
    ));

    let events = policy_events(&store).await;
    let actions: Vec<_> = events
        .iter()
        .map(|(_, e)| (e.action, e.policy.name.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            (PolicyAction::Created, "prod-images"),
            (PolicyAction::Enabled, "prod-images"),
            (PolicyAction::Created, "staging"),
            (PolicyAction::Deleted, "prod-images"),
        ]
    );
    assert!(
        events[1].1.policy.enabled,
        "the event carries the new state"
    );
    let audits = store
        .list_audit(&signet_store::AuditFilter {
            action_prefix: Some("policy.".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(audits.len(), 4);
}

async fn policy_updates_are_optimistic(db: TestDb) {
    let store = db.open().await;
    setup_witnesses(&store, &["release"]).await;
    let p = policy("p", "c1", &["release"]);
    store
        .create_policy(&p, &audit("policy.create", "p"))
        .await
        .expect("create");
    // Many writers start from the same version: exactly one wins, the rest conflict.
    let mut set = JoinSet::new();
    for i in 0..8 {
        let (store, p) = (store.clone(), p.clone());
        set.spawn(async move {
            let mut next = p.clone();
            next.note = format!("writer {i}");
            store
                .update_policy(
                    &p,
                    &next,
                    PolicyAction::Updated,
                    &audit("policy.update", "p"),
                )
                .await
        });
    }
    let mut wins = 0;
    while let Some(r) = set.join_next().await {
        match r.expect("task") {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict(m)) => assert!(m.contains("changed concurrently"), "{m}"),
            Err(StoreError::Busy { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(wins, 1);
    // Two quick updates in a row both succeed, each from the version the other wrote.
    let current = store.get_policy("p").await.expect("get").expect("exists");
    let mut a = current.clone();
    a.mode = PolicyMode::Warn;
    let a = store
        .update_policy(
            &current,
            &a,
            PolicyAction::Updated,
            &audit("policy.update", "p"),
        )
        .await
        .expect("first");
    let mut b = a.clone();
    b.mode = PolicyMode::DryRun;
    let b = store
        .update_policy(&a, &b, PolicyAction::Updated, &audit("policy.update", "p"))
        .await
        .expect("second");
    assert!(b.updated_at > a.updated_at);
    assert!(matches!(
        store
            .update_policy(&a, &b, PolicyAction::Updated, &audit("policy.update", "p"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let mut ghost = p.clone();
    ghost.name = "ghost".into();
    assert!(matches!(
        store
            .update_policy(
                &ghost,
                &ghost,
                PolicyAction::Updated,
                &audit("policy.update", "g")
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn namespace_selectors_are_stored_changed_and_removed(db: TestDb) {
    let store = db.open().await;
    setup_witnesses(&store, &["release"]).await;
    let mut p = policy("opt-in", "c1", &["release"]);
    p.namespace = "*".into();
    p.namespace_selector = Some(
        signet_core::LabelSelector::parse("signet.dev/enforce=true,tier in (web,api)")
            .expect("selector test"),
    );
    store
        .create_policy(&p, &audit("policy.create", "opt-in"))
        .await
        .expect("create");
    let stored = store
        .get_policy("opt-in")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.namespace_selector, p.namespace_selector);
    // The bundle carries it to the verifiers.
    let bundle = store.trust_bundle("c1").await.expect("bundle");
    assert_eq!(bundle.policies[0].namespace_selector, p.namespace_selector);
    let mut next = stored.clone();
    next.namespace_selector =
        Some(signet_core::LabelSelector::parse("!legacy").expect("selector test"));
    let changed = store
        .update_policy(
            &stored,
            &next,
            PolicyAction::Updated,
            &audit("policy.update", "opt-in"),
        )
        .await
        .expect("change");
    assert_eq!(
        store
            .get_policy("opt-in")
            .await
            .expect("selector test")
            .expect("selector test")
            .namespace_selector,
        next.namespace_selector
    );
    let mut none = changed.clone();
    none.namespace_selector = None;
    store
        .update_policy(
            &changed,
            &none,
            PolicyAction::Updated,
            &audit("policy.update", "opt-in"),
        )
        .await
        .expect("remove");
    assert_eq!(
        store
            .get_policy("opt-in")
            .await
            .expect("selector test")
            .expect("selector test")
            .namespace_selector,
        None
    );
    // The event of each change carries the policy as it became.
    let events = policy_events(&store).await;
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1].1.policy.namespace_selector,
        next.namespace_selector
    );
}

async fn policies_name_existing_witnesses_only(db: TestDb) {
    let store = db.open().await;
    setup_witnesses(&store, &["release"]).await;
    let revision = store.outbox_revision().await.expect("revision");
    let p = policy("p", "c1", &["release", "nobody"]);
    match store.create_policy(&p, &audit("policy.create", "p")).await {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "witness \"nobody\""),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Nothing of the failed write remains: no policy, no event.
    assert_eq!(store.get_policy("p").await.expect("get"), None);
    assert_eq!(store.outbox_revision().await.expect("revision"), revision);
    let ok = policy("p", "c1", &["release"]);
    store
        .create_policy(&ok, &audit("policy.create", "p"))
        .await
        .expect("create");
    let mut bad = ok.clone();
    bad.witnesses.push("nobody".into());
    assert!(matches!(
        store
            .update_policy(
                &ok,
                &bad,
                PolicyAction::Updated,
                &audit("policy.update", "p")
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn trust_bundle_is_one_snapshot_with_its_revision(db: TestDb) {
    let store = db.open().await;
    setup_witnesses(&store, &["release", "qa", "unused"]).await;
    let mut enabled = policy("prod", "c1", &["release"]);
    enabled.enabled = true;
    store
        .create_policy(&enabled, &audit("policy.create", "prod"))
        .await
        .expect("create");
    store
        .create_policy(
            &policy("staging", "c1", &["qa", "release"]),
            &audit("policy.create", "staging"),
        )
        .await
        .expect("create");
    store
        .create_policy(
            &policy("elsewhere", "c2", &["unused"]),
            &audit("policy.create", "e"),
        )
        .await
        .expect("create");
    // Revoke one version of qa.
    let mut qa = store.get_witness("qa").await.expect("get").expect("qa");
    qa.key_versions[0].state = KeyVersionState::Revoked;
    store
        .update_witness(&qa, &audit("witness.revoke_version", "qa"))
        .await
        .expect("revoke version");

    let bundle = store.trust_bundle("c1").await.expect("bundle");
    assert_eq!(bundle.cluster, "c1");
    assert_eq!(bundle.revision, store.outbox_revision().await.expect("rev"));
    let names: Vec<_> = bundle.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["prod", "staging"], "disabled policies are included");
    let keys: Vec<_> = bundle
        .keys
        .iter()
        .map(|k| format!("{}/{}", k.witness, k.version))
        .collect();
    assert_eq!(keys, ["qa/2", "release/1", "release/2"]);
    let revoked: Vec<_> = bundle
        .revoked_keys
        .iter()
        .map(|k| format!("{}/{}", k.witness, k.version))
        .collect();
    assert_eq!(revoked, ["qa/1"]);
    assert_eq!(bundle.keys[0].fingerprint, key(2).fingerprint());
    assert!(store
        .trust_bundle("nowhere")
        .await
        .expect("bundle")
        .policies
        .is_empty());

    // Under concurrent policy writes, every bundle's revision names exactly the state it
    // holds: the note written by event N is in a bundle with revision >= N, never later.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut current = store.get_policy("prod").await.expect("get").expect("prod");
            let mut revisions = BTreeMap::new();
            for i in 0..30 {
                let mut next = current.clone();
                next.note = format!("v{i}");
                current = store
                    .update_policy(
                        &current,
                        &next,
                        PolicyAction::Updated,
                        &audit("policy.update", "prod"),
                    )
                    .await
                    .expect("update");
                revisions.insert(
                    format!("v{i}"),
                    store.outbox_revision().await.expect("revision"),
                );
            }
            revisions
        })
    };
    let mut seen = Vec::new();
    while !writer.is_finished() {
        let b = store.trust_bundle("c1").await.expect("bundle");
        let note = b
            .policies
            .iter()
            .find(|p| p.name == "prod")
            .map(|p| p.note.clone())
            .expect("prod");
        seen.push((b.revision, note));
    }
    let revisions = writer.await.expect("writer");
    // Each note's event revision: a bundle showing note vN has revision >= rev(vN), and a
    // bundle with revision >= rev(vN+1) shows vN+1 or later.
    let events = policy_events(&store).await;
    let rev_of = |note: &str| {
        events
            .iter()
            .find(|(_, e)| e.policy.note == note && e.policy.name == "prod")
            .map(|(r, _)| *r)
    };
    for (revision, note) in &seen {
        if let Some(r) = rev_of(note) {
            assert!(
                *revision >= r,
                "bundle {revision} shows {note} written at {r}"
            );
            let next = note
                .strip_prefix('v')
                .and_then(|n| n.parse::<u32>().ok())
                .map(|n| format!("v{}", n + 1))
                .and_then(|n| rev_of(&n));
            if let Some(next) = next {
                assert!(
                    *revision < next,
                    "bundle {revision} misses the change at {next}"
                );
            }
        }
    }
    assert_eq!(revisions.len(), 30);
    let last = store.trust_bundle("c1").await.expect("bundle");
    assert_eq!(last.revision, revisions["v29"]);
    assert!(last.policies.iter().any(|p| p.note == "v29"));
}

async fn decisions_are_stored_once_and_break_glass_is_audited(db: TestDb) {
    let store = db.open().await;
    let mut glass = decision("u3", "p", AdmissionOutcome::BreakGlass);
    glass.break_glass = Some("incident 42: hotfix".into());
    glass.user = Some("alice".into());
    glass.mode = PolicyMode::Enforce;
    let mut dry_glass = decision("u4", "p", AdmissionOutcome::BreakGlass);
    dry_glass.break_glass = Some("trying".into());
    dry_glass.dry_run = true;
    let batch = vec![
        decision("u1", "p", AdmissionOutcome::Allowed),
        decision("u2", "p", AdmissionOutcome::WouldDeny),
        glass.clone(),
        dry_glass,
    ];
    let before = store.outbox_revision().await.expect("revision");
    assert_eq!(
        store
            .record_admission_decisions(&batch, "token:verifier-c1")
            .await
            .expect("record"),
        (4, 1)
    );
    // The same batch again (a verifier that lost the answer) adds nothing.
    assert_eq!(
        store
            .record_admission_decisions(&batch, "token:verifier-c1")
            .await
            .expect("record again"),
        (0, 0)
    );
    let events = store.outbox_pending(100).await.expect("outbox");
    let glass_events: Vec<_> = events
        .iter()
        .filter(|r| r.id > before)
        .filter(|r| r.event.event_type == EventKind::AdmissionBreakGlass.cloudevent_type())
        .collect();
    assert_eq!(glass_events.len(), 1);
    assert_eq!(glass_events[0].event.subject, "c1/prod/Deployment/app-u3");
    let entries = store
        .list_audit(&signet_store::AuditFilter {
            action_prefix: Some("admission.break_glass".into()),
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "token:verifier-c1");
    assert_eq!(entries[0].detail["reason"], "incident 42: hotfix");
    // Who asked the API server, not only which verifier reported it.
    assert_eq!(entries[0].detail["user"], "alice");

    let all = store
        .list_admission_decisions(&DecisionFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 4);
    let denied = store
        .list_admission_decisions(&DecisionFilter {
            outcome: Some(AdmissionOutcome::WouldDeny),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0], batch[1]);
    let none = store
        .list_admission_decisions(&DecisionFilter {
            since: Some(Utc::now() + Duration::hours(1)),
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(none.is_empty());
}

async fn impact_sums_up_a_policy(db: TestDb) {
    let store = db.open().await;
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.push(decision(&format!("a{i}"), "dry", AdmissionOutcome::Allowed));
    }
    for i in 0..3 {
        batch.push(decision(
            &format!("d{i}"),
            "dry",
            AdmissionOutcome::WouldDeny,
        ));
    }
    batch.push(decision("other", "enforced", AdmissionOutcome::Denied));
    let mut old = decision("old", "dry", AdmissionOutcome::WouldDeny);
    old.at = ms(Utc::now() - Duration::days(3));
    batch.push(old);
    store
        .record_admission_decisions(&batch, "token:v")
        .await
        .expect("record");

    let impact = store
        .policy_impact("dry", Some(Utc::now() - Duration::days(1)))
        .await
        .expect("impact");
    assert_eq!(impact.decisions, 8);
    assert_eq!(impact.would_block, 3);
    assert_eq!(impact.outcomes.get("allowed"), Some(&5));
    assert_eq!(impact.outcomes.get("would_deny"), Some(&3));
    assert_eq!(impact.reasons.get("unsigned"), Some(&3));
    assert_eq!(impact.namespaces.get("prod"), Some(&3));
    assert_eq!(impact.top_images.len(), 1);
    assert_eq!(
        impact.top_images[0].image,
        "registry.local/team/unsigned:v1"
    );
    assert_eq!(impact.top_images[0].count, 3);
    let all_time = store.policy_impact("dry", None).await.expect("impact");
    assert_eq!(all_time.would_block, 4);
    let nothing = store.policy_impact("nobody", None).await.expect("impact");
    assert_eq!(nothing.decisions, 0);
}

async fn revoked_signatures_are_audited_announced_and_in_trust_bundles(db: TestDb) {
    let store = db.open().await;
    setup_witnesses(&store, &["release", "other"]).await;
    store
        .create_policy(
            &policy("prod", "c1", &["release"]),
            &audit("policy.create", "prod"),
        )
        .await
        .expect("create");
    let record = |witness: &str, n: u8| SignatureRecord {
        id: uuid::Uuid::now_v7(),
        repository: "registry.example.com/team/app".into(),
        digest: signet_core::Digest::of(&[n]),
        witness: witness.into(),
        key_version: "2".into(),
        key_fingerprint: key(2).fingerprint(),
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        payload: vec![n],
        signature: vec![n],
        artifact: "registry.example.com/team/app:sha256-x.sig".into(),
        job_id: None,
        created_at: ms(Utc::now()),
        revoked: None,
    };
    let (a, b, c) = (
        record("release", 1),
        record("release", 2),
        record("other", 3),
    );
    for r in [&a, &b, &c] {
        store
            .record_signature(r, &audit("signature.publish", "x"), None)
            .await
            .expect("record");
    }
    let before = store.outbox_revision().await.expect("revision");

    let revoked = store
        .revoke_signature(a.id, "token:admin", "built from the wrong branch")
        .await
        .expect("revoke");
    let r = revoked.revoked.clone().expect("revocation on the record");
    assert_eq!(
        (r.by.as_str(), r.reason.as_str()),
        ("token:admin", "built from the wrong branch")
    );
    assert_eq!(
        store
            .find_signature(&a.repository, &a.digest, "release")
            .await
            .expect("find"),
        Some(revoked.clone()),
        "kept, revoked"
    );
    assert_eq!(
        store
            .find_signature(&a.repository, &a.digest, "release")
            .await
            .expect("find")
            .and_then(|s| s.revoked),
        Some(r.clone())
    );
    assert!(matches!(
        store.revoke_signature(a.id, "token:admin", "again").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .revoke_signature(uuid::Uuid::now_v7(), "token:admin", "nothing")
            .await,
        Err(StoreError::NotFound(_))
    ));
    store
        .revoke_signature(c.id, "token:admin", "not this cluster's witness")
        .await
        .expect("revoke c");

    // One event each, carrying the record with its revocation, in the same transaction.
    let events: Vec<_> = store
        .outbox_pending(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .filter(|e| e.id > before)
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(
        events[0].event.event_type,
        EventKind::SignatureRevoked.cloudevent_type()
    );
    let data: SignatureRecord =
        serde_json::from_value(events[0].event.data.clone()).expect("a record");
    assert_eq!(data, revoked);
    let audited = store
        .list_audit(&signet_store::AuditFilter {
            action_prefix: Some("signature.revoke".into()),
            newest_first: false,
            limit: 100,
            subject: None,
            since_id: None,
        })
        .await
        .expect("audit");
    assert_eq!(audited.len(), 2, "{audited:#?}");

    // The bundle of c1 lists the revoked signature of its policy's witness only.
    let bundle = store.trust_bundle("c1").await.expect("bundle");
    assert_eq!(
        bundle.revoked_signatures.len(),
        1,
        "{:#?}",
        bundle.revoked_signatures
    );
    let listed = &bundle.revoked_signatures[0];
    assert_eq!(listed.digest, a.digest);
    assert_eq!(listed.witness, "release");
    assert_eq!(listed.key_fingerprint, a.key_fingerprint);
    assert_eq!(listed.reason, "built from the wrong branch");
    assert_eq!(listed.revoked_at, r.at);
    assert!(
        bundle
            .revoked_signatures
            .iter()
            .all(|l| l.digest != b.digest),
        "the witness's other signature is not listed"
    );
}

/// A policy written before exemptions were image patterns (migration 0005), then the
/// store upgraded: a trailing `/*` that meant "anything under" becomes `/**`, `*` alone
/// becomes `**`, the rest is kept, and the migrated exemptions no longer admit a
/// lookalike host's images.
async fn legacy_exemptions_keep_their_meaning_as_image_patterns(db: TestDb) {
    sqlx::any::install_default_drivers();
    let (url, dir) = if db.url.starts_with("sqlite:") {
        (format!("{}?mode=rwc", db.url), "sqlite")
    } else {
        (db.url.clone(), "postgres")
    };
    let pool = sqlx::AnyPool::connect(&url).await.expect("raw pool");
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new(&format!(
        "{}/migrations/{dir}",
        env!("CARGO_MANIFEST_DIR")
    )))
    .await
    .expect("migrations");
    before.migrations = std::borrow::Cow::Owned(
        before
            .migrations
            .iter()
            .filter(|m| m.version <= 5)
            .cloned()
            .collect(),
    );
    before
        .run(&pool)
        .await
        .expect("schema as of migration 0005");
    let legacy =
        r#"["*.k8s.io/*","registry.k8s.io/pause:*","ghcr.io/org/**","*","*.gcr.io/team/*/app"]"#;
    sqlx::query(&format!(
        "INSERT INTO policies (name, cluster, namespace, witnesses, require_count, mode, enabled, \
         exemptions, require_digest, allow_break_glass, note, created_at, updated_at) \
         VALUES ('old', 'c1', 'prod', '[\"w\"]', 1, 'enforce', 1, '{legacy}', 0, 0, '', 0, 0), \
                ('none', 'c1', 'prod', '[\"w\"]', 1, 'enforce', 1, '[]', 0, 0, '', 0, 0)"
    ))
    .execute(&pool)
    .await
    .expect("a policy written by the old release");
    pool.close().await;

    let store = db.open().await;
    let old = store.get_policy("old").await.expect("read").expect("kept");
    assert_eq!(
        old.exemptions,
        [
            "*.k8s.io/**",
            "registry.k8s.io/pause:*",
            "ghcr.io/org/**",
            "**",
            "*.gcr.io/team/*/app"
        ]
    );
    let none = store.get_policy("none").await.expect("read").expect("kept");
    assert!(none.exemptions.is_empty());
    let exempt = |image: &str| {
        let image = signet_core::ImageRef::parse(image).expect("image");
        old.exemptions[..3].iter().any(|e| {
            signet_core::ImagePattern::compile(e)
                .expect("migrated exemptions compile")
                .matches(&image)
        })
    };
    assert!(exempt("registry.k8s.io/pause:3.9"));
    assert!(
        exempt("registry.k8s.io/ingress-nginx/controller:v1"),
        "anything under"
    );
    assert!(!exempt("attacker.example/x.k8s.io/miner"), "lookalike host");
}
