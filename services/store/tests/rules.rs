//! Signing rules, webhook delivery ids, recorded job failures and shared rate slots (the
//! signers' one KMS quota), each test body run on
//! SQLite (a file in a temp dir) and on PostgreSQL (a fresh database on the local server,
//! which must be up).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use signet_core::{
    EventKind, Job, JobState, KeyVersion, KeyVersionState, NewAudit, PublicKey, SignRequest,
    SignatureAlgorithm, SigningRule, Witness, WitnessState,
};
use signet_store::{AuditFilter, OutboxEvent, Store, StoreError};
use signet_testkit::postgres::TestDatabase;
use uuid::Uuid;

enum Keep {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

struct TestDb {
    url: String,
    _keep: Keep,
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
        Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening the store: {e}"))
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::postgres().await).await
                }
            )*
        }
    };
}

on_both_backends!(
    signing_rules_crud_with_audit,
    signing_rules_refuse_unknown_witnesses_and_names,
    delivery_ids_are_refused_within_the_window,
    job_failure_is_recorded_with_audit_and_event,
    rate_slots_are_one_budget_for_every_replica,
);

/// Three replicas (three stores on one database) reserve 40 KMS slots each, at once:
/// every slot of the key is at least one interval after the one before, whoever took it,
/// so together they make the calls one replica would. Another key has a budget of its
/// own. (Before, each signer counted its own quota: three replicas, three times the
/// calls.)
async fn rate_slots_are_one_budget_for_every_replica(db: TestDb) {
    let interval = Duration::from_millis(10);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let store = db.open().await;
        tasks.push(tokio::spawn(async move {
            let mut tats = Vec::new();
            for _ in 0..40 {
                let slot = store
                    .reserve_rate_slot("kms:prod", interval)
                    .await
                    .expect("reserve");
                tats.push(slot.tat_us);
            }
            tats
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("replica"));
    }
    all.sort_unstable();
    assert_eq!(all.len(), 120);
    for pair in all.windows(2) {
        assert!(
            pair[1] - pair[0] >= 10_000,
            "two slots {} µs apart: {pair:?}",
            pair[1] - pair[0]
        );
    }
    let store = db.open().await;
    let qa = store
        .reserve_rate_slot("kms:qa", interval)
        .await
        .expect("reserve");
    assert_eq!(
        qa.ahead, interval,
        "a fresh key's first slot is one interval ahead"
    );
    let prod = store
        .reserve_rate_slot("kms:prod", interval)
        .await
        .expect("reserve");
    let last = all.last().copied().unwrap_or_default();
    assert!(
        prod.tat_us - last >= 10_000,
        "the next slot comes after all 120: {} then {}",
        last,
        prod.tat_us
    );
}

fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).expect("in range")
}

fn witness(name: &str) -> Witness {
    let public_key = PublicKey::parse(include_str!("fixtures/witness-key-1.pub").as_bytes())
        .expect("fixture key parses");
    Witness {
        name: name.to_owned(),
        kms_key: format!("local://{name}"),
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        format: Default::default(),
        description: String::new(),
        state: WitnessState::Active,
        key_versions: vec![KeyVersion {
            version: "1".into(),
            fingerprint: public_key.fingerprint(),
            public_key,
            primary: true,
            state: KeyVersionState::Active,
            created_at: ms(Utc::now()),
        }],
        created_at: ms(Utc::now()),
    }
}

fn audit(action: &str, subject: &str) -> NewAudit {
    NewAudit::new("token:admin", action, subject, json!({}))
}

fn rule(name: &str, witness: &str) -> SigningRule {
    SigningRule {
        labels: Default::default(),
        name: name.to_owned(),
        repositories: vec![
            "registry.example.com/team/*".into(),
            "ghcr.io/org/**".into(),
        ],
        tag_pattern: "v*".into(),
        witness: witness.to_owned(),
        enabled: true,
        created_at: ms(Utc::now()),
        updated_at: ms(Utc::now()),
        format: None,
    }
}

async fn rule_audit(store: &Store) -> Vec<(String, String)> {
    store
        .list_audit(&AuditFilter {
            action_prefix: Some("rule.".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit")
        .into_iter()
        .map(|e| (e.action, e.subject))
        .collect()
}

async fn signing_rules_crud_with_audit(db: TestDb) {
    let store = db.open().await;
    for w in ["prod", "qa"] {
        store
            .create_witness(&witness(w), &audit("witness.create", w))
            .await
            .expect("witness");
    }
    let mut release = rule("release", "prod");
    store
        .create_signing_rule(&release, &audit("rule.create", "release"))
        .await
        .expect("create");
    store
        .create_signing_rule(&rule("all-qa", "qa"), &audit("rule.create", "all-qa"))
        .await
        .expect("create");
    assert_eq!(
        store.get_signing_rule("release").await.expect("get"),
        Some(release.clone())
    );
    let names: Vec<String> = store
        .list_signing_rules()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["all-qa", "release"]);

    let err = store
        .create_signing_rule(&release, &audit("rule.create", "release"))
        .await
        .expect_err("same name");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(err.to_string(), "signing rule \"release\" already exists");

    release.enabled = false;
    release.witness = "qa".into();
    release.repositories = vec!["**".into()];
    release.format = Some(signet_core::SignatureFormat::Bundle);
    release.updated_at = ms(Utc::now());
    store
        .update_signing_rule(&release, &audit("rule.update", "release"))
        .await
        .expect("update");
    let stored = store
        .get_signing_rule("release")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored, release);
    assert!(!stored.enabled);

    store
        .delete_signing_rule("release", &audit("rule.delete", "release"))
        .await
        .expect("delete");
    assert_eq!(store.get_signing_rule("release").await.expect("get"), None);
    let err = store
        .delete_signing_rule("release", &audit("rule.delete", "release"))
        .await
        .expect_err("gone");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = store
        .update_signing_rule(&release, &audit("rule.update", "release"))
        .await
        .expect_err("gone");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    // Only the changes that happened are audited, in order.
    assert_eq!(
        rule_audit(&store).await,
        [
            ("rule.create".to_owned(), "release".to_owned()),
            ("rule.create".to_owned(), "all-qa".to_owned()),
            ("rule.update".to_owned(), "release".to_owned()),
            ("rule.delete".to_owned(), "release".to_owned()),
        ]
    );
}

async fn signing_rules_refuse_unknown_witnesses_and_names(db: TestDb) {
    let store = db.open().await;
    let err = store
        .create_signing_rule(&rule("r", "nobody"), &audit("rule.create", "r"))
        .await
        .expect_err("unknown witness");
    assert_eq!(err.to_string(), "witness \"nobody\" does not exist");
    store
        .create_witness(&witness("prod"), &audit("witness.create", "prod"))
        .await
        .expect("witness");
    store
        .create_signing_rule(&rule("r", "prod"), &audit("rule.create", "r"))
        .await
        .expect("create");
    let err = store
        .update_signing_rule(&rule("r", "nobody"), &audit("rule.update", "r"))
        .await
        .expect_err("unknown witness");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(
        store
            .get_signing_rule("r")
            .await
            .expect("get")
            .map(|r| r.witness),
        Some("prod".to_owned()),
        "a refused update changes nothing"
    );
    // Refused changes leave no audit entry behind.
    assert_eq!(rule_audit(&store).await.len(), 1);
}

async fn delivery_ids_are_refused_within_the_window(db: TestDb) {
    let store = db.open().await;
    let hour = Duration::from_secs(3600);
    assert!(store
        .remember_delivery("generic", "d-1", hour)
        .await
        .expect("remember"));
    assert!(
        !store
            .remember_delivery("generic", "d-1", hour)
            .await
            .expect("remember"),
        "a repeat within the window is a replay"
    );
    assert!(
        store
            .remember_delivery("harbor", "d-1", hour)
            .await
            .expect("remember"),
        "receivers keep separate ids"
    );
    store
        .forget_delivery("generic", "d-1")
        .await
        .expect("forget");
    assert!(store
        .remember_delivery("generic", "d-1", hour)
        .await
        .expect("remember"));
    // Outside the window (here: none) the id is new again.
    assert!(store
        .remember_delivery("generic", "d-1", Duration::ZERO)
        .await
        .expect("remember"));
}

async fn job_failure_is_recorded_with_audit_and_event(db: TestDb) {
    let store = db.open().await;
    let now = ms(Utc::now());
    let mut job = Job {
        id: Uuid::now_v7(),
        request: SignRequest {
            image: "registry.example.com/team/app:v1".into(),
            witness: "prod".into(),
            annotations: BTreeMap::new(),
            attestations: Vec::new(),
            sign: true,
            format: None,
        },
        source: "bus".into(),
        state: JobState::Running,
        attempts: 3,
        digest: None,
        signature_id: None,
        error: None,
        created_at: now,
        updated_at: now,
    };
    store.create_job(&job).await.expect("create job");
    let before = store.outbox_revision().await.expect("revision");
    job.state = JobState::Failed;
    job.error = Some("gave up after 3 attempts".into());
    let event = OutboxEvent::new(
        EventKind::SignatureFailed,
        job.request.image.clone(),
        serde_json::to_value(&job).expect("json"),
    );
    store
        .record_job_failure(&job, &audit("job.fail", &job.id.to_string()), &event)
        .await
        .expect("record failure");
    assert_eq!(store.get_job(job.id).await.expect("get"), Some(job.clone()));
    let pending = store.outbox_pending(100).await.expect("pending");
    let failed = pending
        .iter()
        .find(|r| r.id > before)
        .expect("the failure's event");
    assert_eq!(failed.event, event);
    let audited = store
        .list_audit(&AuditFilter {
            subject: Some(job.id.to_string()),
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].action, "job.fail");

    let mut unknown = job.clone();
    unknown.id = Uuid::now_v7();
    let err = store
        .record_job_failure(&unknown, &audit("job.fail", "x"), &event)
        .await
        .expect_err("no such job");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(
        store.outbox_revision().await.expect("revision"),
        failed.id,
        "a refused failure writes no event"
    );
}
