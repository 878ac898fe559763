//! The store's behaviour, each test body written once and run twice: on SQLite (a file in a
//! temp dir) and on PostgreSQL (a fresh database on the local server, which must be up).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use signet_core::{
    ApiToken, Digest, EventKind, Job, JobState, KeyVersion, KeyVersionState, NewAudit, PublicKey,
    Role, SignRequest, SignatureAlgorithm, SignatureRecord, Witness, WitnessState,
};
use signet_store::{AuditFilter, Backend, OutboxEvent, SignatureFilter, Store, StoreError};
use signet_testkit::postgres::TestDatabase;
use sqlx::{Connection, Executor};
use tokio::task::JoinSet;
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);
/// How long a poll waits for something that should happen within milliseconds.
const DEADLINE: Duration = Duration::from_secs(15);

/// A database for one test, removed when the test ends.
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

/// Runs each listed `async fn(TestDb)` once per backend.
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
    connects_migrates_and_pings,
    witness_crud_with_audit_in_the_same_transaction,
    witness_changes_emit_named_events,
    job_lifecycle,
    record_signature_is_idempotent_under_concurrency,
    record_signature_refuses_unknown_witness_or_job,
    list_signatures_filters,
    claims_are_exclusive_and_expire,
    one_lookup_under_the_claim_and_the_record_releases_it,
    tokens_store_only_the_hash,
    revoking_a_token_revokes_its_console_sessions,
    audit_filters_and_append_only,
    queue_delivers_each_message_once_per_lease_to_concurrent_consumers,
    queue_survives_reopening,
    queue_retry_delay_lease_expiry_and_dead_letters,
    outbox_ordering_and_mark_published,
    outbox_ids_are_gap_free_under_concurrent_writers,
    outbox_keeps_the_trace_context,
    queue_reports_its_oldest_message,
);

// ---------- helpers ----------

/// Stored times have millisecond precision.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).expect("in range")
}

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).expect("in range")
}

fn key(n: u8) -> PublicKey {
    let pem = match n {
        1 => include_str!("fixtures/witness-key-1.pub"),
        _ => include_str!("fixtures/witness-key-2.pub"),
    };
    PublicKey::parse(pem.as_bytes()).expect("fixture key parses")
}

fn key_version(n: u8, primary: bool) -> KeyVersion {
    let public_key = key(n);
    KeyVersion {
        version: n.to_string(),
        fingerprint: public_key.fingerprint(),
        public_key,
        primary,
        state: KeyVersionState::Active,
        created_at: ms(Utc::now()),
    }
}

fn witness(name: &str) -> Witness {
    Witness {
        name: name.to_owned(),
        kms_key: format!("local://{name}"),
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        format: Default::default(),
        description: format!("{name} signing identity"),
        state: WitnessState::Active,
        key_versions: vec![key_version(1, true)],
        created_at: ms(Utc::now()),
    }
}

fn audit(action: &str, subject: &str) -> NewAudit {
    NewAudit::new("token:admin", action, subject, json!({ "why": "test" }))
}

fn job(witness: &str, created: DateTime<Utc>) -> Job {
    Job {
        id: Uuid::new_v4(),
        request: SignRequest {
            image: "registry.local/team/app:v1".into(),
            witness: witness.to_owned(),
            annotations: BTreeMap::from([("ci".to_owned(), "build-7".to_owned())]),
            attestations: Vec::new(),
            sign: true,
            format: None,
        },
        source: "api".into(),
        state: JobState::Queued,
        attempts: 0,
        digest: None,
        signature_id: None,
        error: None,
        created_at: created,
        updated_at: created,
    }
}

fn digest(seed: &str) -> Digest {
    Digest::of(seed.as_bytes())
}

fn signature(
    repository: &str,
    digest: &Digest,
    witness: &str,
    job_id: Option<Uuid>,
) -> SignatureRecord {
    SignatureRecord {
        id: Uuid::new_v4(),
        repository: repository.to_owned(),
        digest: digest.clone(),
        witness: witness.to_owned(),
        key_version: "1".into(),
        key_fingerprint: key(1).fingerprint(),
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        payload: br#"{"critical":{}}"#.to_vec(),
        signature: vec![0xAB; 256],
        artifact: format!("{repository}:{}", digest.signature_tag()),
        job_id,
        created_at: ms(Utc::now()),
        revoked: None,
    }
}

fn published(rec: &SignatureRecord) -> OutboxEvent {
    OutboxEvent::new(
        EventKind::SignaturePublished,
        rec.digest.as_str(),
        serde_json::to_value(rec).expect("record serializes"),
    )
}

async fn audit_actions(store: &Store, prefix: &str) -> Vec<String> {
    let filter = AuditFilter {
        action_prefix: Some(prefix.to_owned()),
        limit: 1000,
        ..AuditFilter::default()
    };
    let entries = store.list_audit(&filter).await.expect("list audit");
    entries.into_iter().map(|e| e.action).collect()
}

/// Polls `check` until it yields a value, failing after [`DEADLINE`].
async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------- tests ----------

async fn connects_migrates_and_pings(db: TestDb) {
    let store = db.open().await;
    let expected = if db.url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(store.backend(), expected);
    store.ping().await.expect("ping");
    assert_eq!(store.outbox_revision().await.expect("revision"), 0);
    assert_eq!(store.count_tokens().await.expect("count"), 0);
    store.close().await;
    // Migrations already applied are skipped on the next start.
    let again = db.open().await;
    again.ping().await.expect("ping after reopening");
}

async fn witness_crud_with_audit_in_the_same_transaction(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.get_witness("prod").await.expect("get"), None);

    let prod = witness("prod");
    store
        .create_witness(&prod, &audit("witness.create", "prod"))
        .await
        .expect("create");
    assert_eq!(
        store.get_witness("prod").await.expect("get"),
        Some(prod.clone())
    );

    // A second create with the same name changes nothing, and its audit entry is rolled
    // back with it.
    let mut other = witness("prod");
    other.kms_key = "awskms:///alias/other".into();
    let err = store
        .create_witness(&other, &audit("witness.create", "prod"))
        .await
        .expect_err("duplicate name");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(err.to_string(), "witness \"prod\" already exists");
    assert!(!err.retryable());
    assert_eq!(
        store.get_witness("prod").await.expect("get"),
        Some(prod.clone())
    );
    assert_eq!(
        audit_actions(&store, "witness.").await,
        vec!["witness.create"]
    );

    let dev = witness("dev");
    store
        .create_witness(&dev, &audit("witness.create", "dev"))
        .await
        .expect("create dev");
    let names: Vec<String> = store
        .list_witnesses()
        .await
        .expect("list")
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, vec!["dev", "prod"]);

    // Rotation replaces the key versions and keeps the creation time.
    let mut rotated = prod.clone();
    rotated.key_versions = vec![key_version(1, false), key_version(2, true)];
    rotated.description = "rotated".into();
    rotated.created_at = at(0);
    store
        .update_witness(&rotated, &audit("witness.rotate", "prod"))
        .await
        .expect("rotate");
    let stored = store
        .get_witness("prod")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.key_versions, rotated.key_versions);
    assert_eq!(stored.description, "rotated");
    assert_eq!(stored.created_at, prod.created_at);
    assert_eq!(stored.primary().map(|v| v.version.as_str()), Some("2"));

    let err = store
        .update_witness(&witness("nope"), &audit("witness.rotate", "nope"))
        .await
        .expect_err("unknown witness");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(
        audit_actions(&store, "witness.").await,
        vec!["witness.create", "witness.create", "witness.rotate"]
    );
}

async fn witness_changes_emit_named_events(db: TestDb) {
    let store = db.open().await;
    let mut w = witness("prod");
    store
        .create_witness(&w, &audit("witness.create", "prod"))
        .await
        .expect("create");
    w.key_versions = vec![key_version(1, false), key_version(2, true)];
    store
        .update_witness(&w, &audit("witness.rotate", "prod"))
        .await
        .expect("rotate");
    w.key_versions[0].state = KeyVersionState::Revoked;
    store
        .update_witness(&w, &audit("witness.revoke_key", "prod"))
        .await
        .expect("revoke key");
    w.state = WitnessState::Revoked;
    store
        .update_witness(&w, &audit("witness.revoke", "prod"))
        .await
        .expect("revoke");

    let events = store.outbox_pending(100).await.expect("pending");
    let kinds: Vec<Option<EventKind>> = events
        .iter()
        .map(|e| EventKind::from_cloudevent_type(&e.event.event_type))
        .collect();
    assert_eq!(
        kinds,
        vec![
            Some(EventKind::WitnessCreated),
            Some(EventKind::WitnessRotated),
            Some(EventKind::WitnessKeyRevoked),
            Some(EventKind::WitnessRevoked),
        ]
    );
    for e in &events {
        assert_eq!(e.event.subject, "prod");
        assert_eq!(e.event.data["name"], "prod");
    }
    // The last event carries the witness as it now is.
    let last: Witness =
        serde_json::from_value(events[3].event.data.clone()).expect("event data is a witness");
    assert_eq!(last, w);
    assert_eq!(last.live_versions().count(), 0);
}

async fn job_lifecycle(db: TestDb) {
    let store = db.open().await;
    // What `POST /v1/sign?wait=` listens to instead of polling: every job change made
    // through this store or a clone of it, after it is written.
    let mut changes = store.job_changes();
    let mut changes_of_a_clone = store.clone().job_changes();
    let base = Utc::now().timestamp_millis();
    let mut first = job("prod", at(base));
    store.create_job(&first).await.expect("create");
    assert_eq!(
        store.get_job(first.id).await.expect("get"),
        Some(first.clone())
    );
    let err = store.create_job(&first).await.expect_err("same id");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    first.state = JobState::Running;
    first.attempts = 1;
    first.digest = Some(digest("app"));
    first.error = Some("registry timed out".into());
    first.updated_at = at(base + 5);
    let reads = store.job_reads();
    store.update_job(&first).await.expect("update");
    assert_eq!(changes.try_recv(), Ok(first.id));
    assert_eq!(changes_of_a_clone.try_recv(), Ok(first.id));
    assert_eq!(
        store.get_job(first.id).await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(store.job_reads(), reads + 1, "job reads are counted");

    let second = job("prod", at(base + 1));
    let third = job("dev", at(base + 2));
    store.create_job(&second).await.expect("create second");
    store.create_job(&third).await.expect("create third");

    let all: Vec<Uuid> = store
        .list_jobs(None, 10)
        .await
        .expect("list")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(all, vec![third.id, second.id, first.id], "newest first");
    let newest: Vec<Uuid> = store
        .list_jobs(None, 2)
        .await
        .expect("list")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(newest, vec![third.id, second.id]);
    let running = store
        .list_jobs(Some(JobState::Running), 10)
        .await
        .expect("list");
    assert_eq!(running, vec![first.clone()]);
    let queued: Vec<Uuid> = store
        .list_jobs(Some(JobState::Queued), 10)
        .await
        .expect("list")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(queued, vec![third.id, second.id]);

    first.state = JobState::Failed;
    first.attempts = 5;
    store.update_job(&first).await.expect("fail");
    assert_eq!(
        store
            .list_jobs(Some(JobState::Failed), 10)
            .await
            .expect("list"),
        vec![first.clone()]
    );
    assert!(store
        .list_jobs(Some(JobState::Running), 10)
        .await
        .expect("list")
        .is_empty());

    let err = store
        .update_job(&job("prod", at(base)))
        .await
        .expect_err("unknown job");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(store.get_job(Uuid::new_v4()).await.expect("get"), None);
    assert_eq!(changes.try_recv(), Ok(first.id), "the failure");
    assert!(
        changes.try_recv().is_err(),
        "nothing changed for an unknown job"
    );
}

async fn record_signature_is_idempotent_under_concurrency(db: TestDb) {
    let store = db.open().await;
    store
        .create_witness(&witness("prod"), &audit("witness.create", "prod"))
        .await
        .expect("witness");
    let created = ms(Utc::now());
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let j = job("prod", created);
        store.create_job(&j).await.expect("job");
        jobs.push(j);
    }
    let revision_before = store.outbox_revision().await.expect("revision");
    let d = digest("app-v1");

    let mut changes = store.job_changes();
    let mut callers = JoinSet::new();
    for j in &jobs {
        let store = store.clone();
        let rec = signature("registry.local/team/app", &d, "prod", Some(j.id));
        callers.spawn(async move {
            let event = published(&rec);
            let stored = store
                .record_signature(
                    &rec,
                    &audit("signature.publish", rec.digest.as_str()),
                    Some(&event),
                )
                .await;
            (rec, stored)
        });
    }
    let mut winners = BTreeSet::new();
    let mut stored_records = Vec::new();
    while let Some(joined) = callers.join_next().await {
        let (rec, stored) = joined.expect("caller task");
        let stored = stored.expect("record_signature");
        assert_eq!(stored.digest, rec.digest);
        winners.insert(stored.id);
        stored_records.push(stored);
    }
    assert_eq!(
        winners.len(),
        1,
        "every caller gets the same record: {winners:?}"
    );
    let winner = stored_records[0].clone();

    assert_eq!(
        store
            .find_signature("registry.local/team/app", &d, "prod")
            .await
            .expect("find"),
        Some(winner.clone())
    );
    assert_eq!(
        audit_actions(&store, "signature.").await,
        vec!["signature.publish"]
    );
    let events = store.outbox_pending(100).await.expect("pending");
    let new_events: Vec<_> = events.iter().filter(|e| e.id > revision_before).collect();
    assert_eq!(new_events.len(), 1, "one event for one signature");
    assert_eq!(
        new_events[0].event.event_type,
        EventKind::SignaturePublished.cloudevent_type()
    );
    assert_eq!(new_events[0].event.data["id"], winner.id.to_string());

    // Every job's effect happened: each is marked succeeded with the one signature, and
    // its waiters were told.
    let mut told = BTreeSet::new();
    while let Ok(id) = changes.try_recv() {
        told.insert(id);
    }
    assert_eq!(told, jobs.iter().map(|j| j.id).collect::<BTreeSet<_>>());
    for j in &jobs {
        let stored = store.get_job(j.id).await.expect("get").expect("exists");
        assert_eq!(stored.state, JobState::Succeeded);
        assert_eq!(stored.signature_id, Some(winner.id));
        assert_eq!(stored.digest.as_ref(), Some(&d));
    }

    // A later duplicate without a job is a no-op returning the existing record.
    let again = signature("registry.local/team/app", &d, "prod", None);
    let stored = store
        .record_signature(
            &again,
            &audit("signature.publish", d.as_str()),
            Some(&published(&again)),
        )
        .await
        .expect("duplicate");
    assert_eq!(stored, winner);
    assert_eq!(
        store.outbox_pending(100).await.expect("pending").len(),
        events.len()
    );
}

async fn record_signature_refuses_unknown_witness_or_job(db: TestDb) {
    let store = db.open().await;
    let d = digest("x");
    let err = store
        .record_signature(
            &signature("r.local/a", &d, "ghost", None),
            &audit("signature.publish", d.as_str()),
            None,
        )
        .await
        .expect_err("unknown witness");
    assert_eq!(err.to_string(), "witness \"ghost\" does not exist");

    store
        .create_witness(&witness("prod"), &audit("witness.create", "prod"))
        .await
        .expect("witness");
    let missing_job = Uuid::new_v4();
    let err = store
        .record_signature(
            &signature("r.local/a", &d, "prod", Some(missing_job)),
            &audit("signature.publish", d.as_str()),
            None,
        )
        .await
        .expect_err("unknown job");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), format!("job {missing_job} does not exist"));
    // Nothing of the failed transaction remains.
    assert_eq!(
        store
            .find_signature("r.local/a", &d, "prod")
            .await
            .expect("find"),
        None
    );
    assert!(audit_actions(&store, "signature.").await.is_empty());

    // Without an event, the record and audit entry are written but no event is.
    let revision = store.outbox_revision().await.expect("revision");
    store
        .record_signature(
            &signature("r.local/a", &d, "prod", None),
            &audit("signature.publish", d.as_str()),
            None,
        )
        .await
        .expect("record");
    assert_eq!(store.outbox_revision().await.expect("revision"), revision);
    assert_eq!(
        audit_actions(&store, "signature.").await,
        vec!["signature.publish"]
    );
}

async fn list_signatures_filters(db: TestDb) {
    let store = db.open().await;
    for w in ["prod", "dev"] {
        store
            .create_witness(&witness(w), &audit("witness.create", w))
            .await
            .expect("witness");
    }
    let (d1, d2) = (digest("one"), digest("two"));
    let base = Utc::now().timestamp_millis();
    let mut recorded = Vec::new();
    for (i, (repo, d, w)) in [
        ("r.local/a", &d1, "prod"),
        ("r.local/a", &d1, "dev"),
        ("r.local/a", &d2, "prod"),
        ("r.local/b", &d2, "prod"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rec = signature(repo, d, w, None);
        rec.created_at = at(base + i as i64);
        let stored = store
            .record_signature(&rec, &audit("signature.publish", d.as_str()), None)
            .await
            .expect("record");
        assert_eq!(stored, rec);
        recorded.push(rec);
    }
    let ids = |v: Vec<SignatureRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let list = |f: SignatureFilter| {
        let store = store.clone();
        async move { ids(store.list_signatures(&f).await.expect("list")) }
    };

    assert_eq!(
        list(SignatureFilter::default()).await,
        recorded.iter().rev().map(|r| r.id).collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(
        list(SignatureFilter {
            repository: Some("r.local/a".into()),
            digest: Some(d1.clone()),
            ..SignatureFilter::default()
        })
        .await,
        vec![recorded[1].id, recorded[0].id]
    );
    assert_eq!(
        list(SignatureFilter {
            digest: Some(d2.clone()),
            witness: Some("prod".into()),
            ..SignatureFilter::default()
        })
        .await,
        vec![recorded[3].id, recorded[2].id]
    );
    assert_eq!(
        list(SignatureFilter {
            witness: Some("dev".into()),
            ..SignatureFilter::default()
        })
        .await,
        vec![recorded[1].id]
    );
    assert_eq!(
        list(SignatureFilter {
            limit: 1,
            ..SignatureFilter::default()
        })
        .await,
        vec![recorded[3].id]
    );
    assert!(list(SignatureFilter {
        repository: Some("r.local/none".into()),
        ..SignatureFilter::default()
    })
    .await
    .is_empty());
    // Only the keys asked for, and the limit after that filter.
    let fp = key(1).fingerprint();
    assert_eq!(
        list(SignatureFilter {
            keys: Some(vec![("dev".into(), fp.clone())]),
            limit: 1,
            ..SignatureFilter::default()
        })
        .await,
        vec![recorded[1].id]
    );
    assert!(list(SignatureFilter {
        keys: Some(vec![("prod".into(), "sha256:00".into())]),
        ..SignatureFilter::default()
    })
    .await
    .is_empty());
    assert!(list(SignatureFilter {
        keys: Some(Vec::new()),
        ..SignatureFilter::default()
    })
    .await
    .is_empty());
    // Revoked signatures are left out when asked, before the limit.
    store
        .revoke_signature(recorded[3].id, "admin", "test")
        .await
        .expect("revoke");
    assert_eq!(
        list(SignatureFilter {
            keys: Some(vec![("prod".into(), fp.clone()), ("dev".into(), fp)]),
            unrevoked: true,
            limit: 2,
            ..SignatureFilter::default()
        })
        .await,
        vec![recorded[2].id, recorded[1].id]
    );
}

async fn claims_are_exclusive_and_expire(db: TestDb) {
    let store = db.open().await;
    let k = format!("r.local/a@{}#prod", digest("claim"));

    assert!(store
        .claim_signing(&k, "signer-a", HOUR)
        .await
        .expect("claim"));
    assert!(!store
        .claim_signing(&k, "signer-b", HOUR)
        .await
        .expect("claim"));
    // The holder may renew.
    assert!(store
        .claim_signing(&k, "signer-a", HOUR)
        .await
        .expect("renew"));
    // Only the holder can release.
    store
        .release_signing(&k, "signer-b")
        .await
        .expect("release by other");
    assert!(!store
        .claim_signing(&k, "signer-b", HOUR)
        .await
        .expect("claim"));
    store
        .release_signing(&k, "signer-a")
        .await
        .expect("release");
    assert!(store
        .claim_signing(&k, "signer-b", HOUR)
        .await
        .expect("claim after release"));
    // Other keys are independent.
    assert!(store
        .claim_signing("other", "signer-a", HOUR)
        .await
        .expect("other key"));

    // Of many concurrent claimants exactly one wins.
    let contested = format!("r.local/a@{}#prod", digest("contested"));
    let mut claimants = JoinSet::new();
    for i in 0..8 {
        let store = store.clone();
        let contested = contested.clone();
        claimants.spawn(async move {
            store
                .claim_signing(&contested, &format!("signer-{i}"), HOUR)
                .await
                .expect("claim")
        });
    }
    let mut won = 0;
    while let Some(r) = claimants.join_next().await {
        won += usize::from(r.expect("task"));
    }
    assert_eq!(won, 1);

    // A lease that runs out frees the claim for another holder.
    let short = format!("r.local/a@{}#prod", digest("short"));
    assert!(store
        .claim_signing(&short, "crashed-signer", Duration::from_millis(50))
        .await
        .expect("claim"));
    poll("the short claim to expire", || {
        let store = store.clone();
        let short = short.clone();
        async move {
            store
                .claim_signing(&short, "signer-b", HOUR)
                .await
                .expect("claim")
                .then_some(())
        }
    })
    .await;
    assert!(!store
        .claim_signing(&short, "crashed-signer", HOUR)
        .await
        .expect("claim"));
}

/// What the signer asks under its claim, in one statement: the signature itself
/// (revoked or not), else a revocation of the digest by the witness under another
/// repository, else nothing. Recording with the claim releases it in the same
/// transaction, and a renewal after that does not bring it back.
async fn one_lookup_under_the_claim_and_the_record_releases_it(db: TestDb) {
    let store = db.open().await;
    store
        .create_witness(&witness("prod"), &audit("witness.create", "prod"))
        .await
        .expect("witness");
    let d = digest("looked up");
    let free = store
        .find_signature_or_revocation("r.local/a", &d, "prod")
        .await
        .expect("lookup");
    assert_eq!(free, None);

    let claim = format!("r.local/a@{d}#prod");
    assert!(store
        .claim_signing(&claim, "signer-a", HOUR)
        .await
        .expect("claim"));
    let rec = signature("r.local/a", &d, "prod", None);
    let stored = store
        .record_signature_releasing(
            &rec,
            &audit("signature.publish", "x"),
            None,
            &claim,
            "signer-a",
        )
        .await
        .expect("record");
    assert!(
        !store
            .renew_signing(&claim, "signer-a", HOUR)
            .await
            .expect("renew"),
        "released with the record"
    );
    assert!(
        store
            .claim_signing(&claim, "signer-b", HOUR)
            .await
            .expect("claim"),
        "free for anyone after the record"
    );
    assert!(store
        .renew_signing(&claim, "signer-b", HOUR)
        .await
        .expect("renew"));

    let found = store
        .find_signature_or_revocation("r.local/a", &d, "prod")
        .await
        .expect("lookup");
    assert_eq!(found.map(|r| r.id), Some(stored.id), "the signature itself");
    assert_eq!(
        store
            .find_signature_or_revocation("r.local/b", &d, "prod")
            .await
            .expect("lookup"),
        None,
        "not revoked: another repository may be signed"
    );
    store
        .revoke_signature(stored.id, "admin", "compromised build")
        .await
        .expect("revoke");
    let elsewhere = store
        .find_signature_or_revocation("r.local/b", &d, "prod")
        .await
        .expect("lookup")
        .expect("the revocation binds the digest under any repository");
    assert_eq!(elsewhere.id, stored.id);
    assert!(elsewhere.revoked.is_some());
    assert_eq!(
        store
            .find_signature_or_revocation("r.local/b", &digest("other"), "prod")
            .await
            .expect("lookup"),
        None
    );
}

async fn tokens_store_only_the_hash(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.count_tokens().await.expect("count"), 0);
    let token = ApiToken {
        id: Uuid::new_v4(),
        name: "ci".into(),
        role: Role::Signer,
        created_at: ms(Utc::now()),
        revoked: false,
        scope: vec!["registry.example.com/team/**".into()],
        cluster: None,
        expires_at: Some(ms(Utc::now() + chrono::Duration::days(30))),
        last_used_at: None,
        session_of: None,
    };
    let hash = [7u8; 32];
    store
        .create_token(&token, &hash, &audit("token.create", "ci"))
        .await
        .expect("create");
    assert_eq!(
        store.get_token(token.id).await.expect("get"),
        Some((token.clone(), hash.to_vec()))
    );

    let mut same_name = token.clone();
    same_name.id = Uuid::new_v4();
    same_name.role = Role::Admin;
    let err = store
        .create_token(&same_name, &[1u8; 32], &audit("token.create", "ci"))
        .await
        .expect_err("name taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.get_token(same_name.id).await.expect("get"), None);
    assert_eq!(store.count_tokens().await.expect("count"), 1);
    assert_eq!(audit_actions(&store, "token.").await, vec!["token.create"]);

    let revoked = ApiToken {
        id: Uuid::new_v4(),
        name: "old-verifier".into(),
        role: Role::Verifier,
        created_at: ms(Utc::now()),
        revoked: true,
        scope: Vec::new(),
        cluster: Some("prod-eu-1".into()),
        expires_at: None,
        last_used_at: None,
        session_of: None,
    };
    store
        .create_token(&revoked, &[9u8; 32], &audit("token.create", "old-verifier"))
        .await
        .expect("create revoked");
    let (back, _) = store
        .get_token(revoked.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(back, revoked, "the cluster is kept");
    assert_eq!(store.count_tokens().await.expect("count"), 2);

    // Last use: recorded, and never moved backwards.
    let used = ms(Utc::now());
    store.touch_token(token.id, used).await.expect("touch");
    store
        .touch_token(token.id, used - chrono::Duration::minutes(5))
        .await
        .expect("touch");
    let (back, _) = store
        .get_token(token.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(back.last_used_at, Some(used));
    assert_eq!(back.expires_at, token.expires_at);

    // Revocation by name keeps the record (for the audit trail) and is audited.
    let gone = store
        .revoke_token("ci", &audit("token.revoke", "ci"))
        .await
        .expect("revoke");
    assert!(gone.revoked);
    let (after, _) = store.get_token(token.id).await.expect("get").expect("kept");
    assert!(after.revoked);
    let err = store
        .revoke_token("nobody", &audit("token.revoke", "nobody"))
        .await
        .expect_err("unknown token");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let names: Vec<String> = store
        .list_tokens()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"ci".to_owned()) && names.contains(&"old-verifier".to_owned()));
    assert_eq!(
        audit_actions(&store, "token.").await,
        vec!["token.create", "token.create", "token.revoke"]
    );
}

async fn revoking_a_token_revokes_its_console_sessions(db: TestDb) {
    let store = db.open().await;
    let token = |name: &str, session_of: Option<Uuid>| ApiToken {
        id: Uuid::new_v4(),
        name: name.into(),
        role: Role::Admin,
        created_at: ms(Utc::now()),
        revoked: false,
        scope: Vec::new(),
        cluster: None,
        expires_at: None,
        last_used_at: None,
        session_of,
    };
    let alice = token("alice", None);
    let bob = token("bob", None);
    let alice_session = token("alice.console.1", Some(alice.id));
    let bob_session = token("bob.console.1", Some(bob.id));
    for t in [&alice, &bob, &alice_session, &bob_session] {
        store
            .create_token(t, &[1u8; 32], &audit("token.create", &t.name))
            .await
            .expect("create");
    }
    let (back, _) = store
        .get_token(alice_session.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(back.session_of, Some(alice.id), "a session knows its token");
    store
        .revoke_token("alice", &audit("token.revoke", "alice"))
        .await
        .expect("revoke");
    let revoked = |id| {
        let store = store.clone();
        async move {
            store
                .get_token(id)
                .await
                .expect("get")
                .expect("kept")
                .0
                .revoked
        }
    };
    assert!(
        revoked(alice_session.id).await,
        "the session died with its token"
    );
    assert!(
        !revoked(bob.id).await && !revoked(bob_session.id).await,
        "others live on"
    );
}

async fn audit_filters_and_append_only(db: TestDb) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for (action, subject) in [
        ("witness.create", "prod"),
        ("witness.rotate", "prod"),
        ("job.retry", "job-1"),
        ("witness.create", "dev"),
        ("witnesses_export", "all"),
    ] {
        let entry = NewAudit::new("token:admin", action, subject, json!({ "n": ids.len() }));
        ids.push(store.append_audit(&entry).await.expect("append"));
    }
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "gap-free ids: {ids:?}"
    );

    let all = store
        .list_audit(&AuditFilter::default())
        .await
        .expect("list");
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(all[2].action, "job.retry");
    assert_eq!(all[2].detail, json!({ "n": 2 }));
    assert_eq!(all[2].actor, "token:admin");

    let actions = |v: &[signet_core::AuditEntry]| {
        v.iter()
            .map(|e| format!("{} {}", e.action, e.subject))
            .collect::<Vec<_>>()
    };
    let witness_only = store
        .list_audit(&AuditFilter {
            action_prefix: Some("witness.".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        actions(&witness_only),
        vec![
            "witness.create prod",
            "witness.rotate prod",
            "witness.create dev"
        ]
    );
    // A prefix is literal: '_' and '%' are no wildcards.
    let literal = store
        .list_audit(&AuditFilter {
            action_prefix: Some("witnesses_".into()),
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(actions(&literal), vec!["witnesses_export all"]);
    let about_prod = store
        .list_audit(&AuditFilter {
            subject: Some("prod".into()),
            since_id: Some(ids[0]),
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(actions(&about_prod), vec!["witness.rotate prod"]);
    let page = store
        .list_audit(&AuditFilter {
            since_id: Some(ids[1]),
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[2], ids[3]]
    );
    let newest = store
        .list_audit(&AuditFilter {
            newest_first: true,
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        newest.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );

    // The schema refuses changes made around the store's API.
    let mut raw = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    for sql in [
        "DELETE FROM audit_log",
        "UPDATE audit_log SET actor = 'mallory'",
    ] {
        let err = raw.execute(sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    raw.close().await.expect("close");
    assert_eq!(
        store
            .list_audit(&AuditFilter::default())
            .await
            .expect("list"),
        all
    );
}

async fn queue_delivers_each_message_once_per_lease_to_concurrent_consumers(db: TestDb) {
    let store = db.open().await;
    const MESSAGES: usize = 40;
    let mut pushed = Vec::new();
    for i in 0..MESSAGES {
        let headers = BTreeMap::from([("n".to_owned(), i.to_string())]);
        pushed.push(
            store
                .queue_push("jobs", format!("body-{i}").as_bytes(), &headers)
                .await
                .expect("push"),
        );
    }
    store
        .queue_push("other", b"not for us", &BTreeMap::new())
        .await
        .expect("push");
    assert_eq!(
        store.queue_depth("jobs").await.expect("depth"),
        MESSAGES as u64
    );

    let mut consumers = JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        consumers.spawn(async move {
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                match store.queue_lease("jobs", HOUR).await.expect("lease") {
                    Some(m) => {
                        assert_eq!(m.deliveries, 1, "message {} leased twice", m.id);
                        assert_eq!(m.body, format!("body-{}", m.headers["n"]).into_bytes());
                        store.queue_ack(m.id).await.expect("ack");
                        got.push(m.id);
                    }
                    None if store.queue_depth("jobs").await.expect("depth") == 0 => break,
                    // Others hold the rest.
                    None => {
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "queue did not drain"
                        );
                        tokio::task::yield_now().await;
                    }
                }
            }
            got
        });
    }
    let mut delivered = Vec::new();
    while let Some(got) = consumers.join_next().await {
        delivered.extend(got.expect("consumer"));
    }
    delivered.sort_unstable();
    assert_eq!(delivered, pushed, "each message exactly once");
    assert_eq!(store.queue_depth("jobs").await.expect("depth"), 0);
    assert_eq!(store.queue_depth("other").await.expect("depth"), 1);
}

async fn queue_survives_reopening(db: TestDb) {
    let first = db.open().await;
    let headers = BTreeMap::from([
        (
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    let a = first
        .queue_push("jobs", b"a", &headers)
        .await
        .expect("push");
    let b = first
        .queue_push("jobs", b"b", &headers)
        .await
        .expect("push");
    let c = first
        .queue_push("jobs", b"c", &BTreeMap::new())
        .await
        .expect("push");
    // Leased but never acked: the lease outlives the process.
    let leased = first
        .queue_lease("jobs", HOUR)
        .await
        .expect("lease")
        .expect("message");
    assert_eq!(leased.id, a);
    first.close().await;
    drop(first);

    let second = db.open().await;
    assert_eq!(second.queue_depth("jobs").await.expect("depth"), 3);
    let m = second
        .queue_lease("jobs", HOUR)
        .await
        .expect("lease")
        .expect("message");
    assert_eq!(
        (m.id, m.body.as_slice(), m.deliveries),
        (b, b"b".as_slice(), 1)
    );
    assert_eq!(m.headers, headers);
    assert_eq!(m.queue, "jobs");
    let m = second
        .queue_lease("jobs", HOUR)
        .await
        .expect("lease")
        .expect("message");
    assert_eq!((m.id, m.headers.len()), (c, 0));
    assert_eq!(second.queue_lease("jobs", HOUR).await.expect("lease"), None);
}

async fn queue_retry_delay_lease_expiry_and_dead_letters(db: TestDb) {
    let store = db.open().await;
    let headers = BTreeMap::from([("attempt".to_owned(), "1".to_owned())]);
    let id = store
        .queue_push("jobs", b"payload", &headers)
        .await
        .expect("push");

    let m = store
        .queue_lease("jobs", HOUR)
        .await
        .expect("lease")
        .expect("message");
    assert_eq!((m.id, m.deliveries), (id, 1));
    assert_eq!(
        store.queue_lease("jobs", HOUR).await.expect("lease"),
        None,
        "leased"
    );

    // A retry far in the future keeps it away; one with no delay brings it back.
    store.queue_retry(id, HOUR).await.expect("retry");
    assert_eq!(
        store.queue_lease("jobs", HOUR).await.expect("lease"),
        None,
        "delayed"
    );
    assert_eq!(store.queue_depth("jobs").await.expect("depth"), 1);
    store
        .queue_retry(id, Duration::ZERO)
        .await
        .expect("retry now");
    let m = store
        .queue_lease("jobs", HOUR)
        .await
        .expect("lease")
        .expect("message");
    assert_eq!(m.deliveries, 2);

    // A short retry delay passes.
    store
        .queue_retry(id, Duration::from_millis(50))
        .await
        .expect("retry soon");
    let m = poll("the retry delay to pass", || {
        let store = store.clone();
        async move { store.queue_lease("jobs", HOUR).await.expect("lease") }
    })
    .await;
    assert_eq!(m.deliveries, 3);

    // A lease that runs out (a consumer died) makes the message available again.
    store
        .queue_retry(id, Duration::ZERO)
        .await
        .expect("release");
    let m = store
        .queue_lease("jobs", Duration::from_millis(50))
        .await
        .expect("lease")
        .expect("message");
    assert_eq!(m.deliveries, 4);
    let m = poll("the lease to expire", || {
        let store = store.clone();
        async move { store.queue_lease("jobs", HOUR).await.expect("lease") }
    })
    .await;
    assert_eq!((m.id, m.deliveries), (id, 5));

    store
        .queue_dead_letter(id, "witness \"prod\" is revoked")
        .await
        .expect("dead letter");
    assert_eq!(store.queue_depth("jobs").await.expect("depth"), 0);
    assert_eq!(store.queue_lease("jobs", HOUR).await.expect("lease"), None);
    let dead = store.queue_dead("jobs", 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, id);
    assert_eq!(dead[0].queue, "jobs");
    assert_eq!(dead[0].body, b"payload");
    assert_eq!(dead[0].headers, headers);
    assert_eq!(dead[0].deliveries, 5);
    assert_eq!(dead[0].reason, "witness \"prod\" is revoked");
    assert!(dead[0].dead_at >= dead[0].enqueued_at);
    assert!(store
        .queue_dead("other", 10)
        .await
        .expect("dead letters")
        .is_empty());

    // The message is gone: retry and dead-letter say so; a late ack is harmless.
    let err = store.queue_retry(id, HOUR).await.expect_err("gone");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let err = store
        .queue_dead_letter(id, "again")
        .await
        .expect_err("gone");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    store.queue_ack(id).await.expect("late ack");

    // Newest dead letters first, limited.
    for i in 0..3 {
        let id = store
            .queue_push("jobs", &[i], &BTreeMap::new())
            .await
            .expect("push");
        store
            .queue_dead_letter(id, &format!("reason {i}"))
            .await
            .expect("dead letter");
    }
    let reasons: Vec<String> = store
        .queue_dead("jobs", 2)
        .await
        .expect("dead letters")
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(reasons, vec!["reason 2", "reason 1"]);
}

async fn outbox_ordering_and_mark_published(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.outbox_revision().await.expect("revision"), 0);
    assert!(store.outbox_pending(10).await.expect("pending").is_empty());

    store
        .create_witness(&witness("prod"), &audit("witness.create", "prod"))
        .await
        .expect("w");
    let rec = signature("r.local/a", &digest("a"), "prod", None);
    store
        .record_signature(
            &rec,
            &audit("signature.publish", rec.digest.as_str()),
            Some(&published(&rec)),
        )
        .await
        .expect("record");
    store
        .create_witness(&witness("dev"), &audit("witness.create", "dev"))
        .await
        .expect("w");

    let pending = store.outbox_pending(10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        pending
            .iter()
            .map(|e| e.event.subject.as_str())
            .collect::<Vec<_>>(),
        vec!["prod", rec.digest.as_str(), "dev"]
    );
    assert_eq!(pending[1].event, published(&rec));
    assert_eq!(store.outbox_revision().await.expect("revision"), 3);
    assert_eq!(
        store
            .outbox_pending(2)
            .await
            .expect("pending")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );

    store.outbox_mark_published(&[1, 3]).await.expect("mark");
    let left: Vec<i64> = store
        .outbox_pending(10)
        .await
        .expect("pending")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec![2]);
    // Marking again, an unknown id, or nothing at all is harmless.
    store
        .outbox_mark_published(&[1, 99])
        .await
        .expect("mark again");
    store
        .outbox_mark_published(&[])
        .await
        .expect("mark nothing");
    store.outbox_mark_published(&[2]).await.expect("mark");
    assert!(store.outbox_pending(10).await.expect("pending").is_empty());
    assert_eq!(
        store.outbox_revision().await.expect("revision"),
        3,
        "revision never goes back"
    );
}

async fn outbox_ids_are_gap_free_under_concurrent_writers(db: TestDb) {
    let store = db.open().await;
    let mut writers = JoinSet::new();
    for i in 0..8 {
        let store = store.clone();
        writers.spawn(async move {
            let name = format!("w{i}");
            store
                .create_witness(&witness(&name), &audit("witness.create", &name))
                .await
                .expect("create");
            store
                .append_audit(&audit("witness.inspect", &name))
                .await
                .expect("append")
        });
    }
    while let Some(r) = writers.join_next().await {
        r.expect("writer");
    }
    let events = store.outbox_pending(100).await.expect("pending");
    assert_eq!(
        events.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<i64>>()
    );
    assert_eq!(store.outbox_revision().await.expect("revision"), 8);
    let audit_ids: Vec<i64> = store
        .list_audit(&AuditFilter::default())
        .await
        .expect("audit")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(audit_ids, (1..=16).collect::<Vec<i64>>());
}

// ---------- SQLite only ----------

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    store
        .append_audit(&audit("system.start", "signet"))
        .await
        .expect("write");
    let mut raw = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("raw connection");
    let row = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .expect("pragma");
    let mode: String = sqlx::Row::try_get(&row, 0).expect("mode");
    assert_eq!(mode, "wal");
    raw.close().await.expect("close");
}

#[tokio::test]
async fn sqlite_in_memory_store_works() {
    let store = Store::connect("sqlite::memory:")
        .await
        .expect("in-memory store");
    let j = job("prod", ms(Utc::now()));
    store.create_job(&j).await.expect("create");
    assert_eq!(store.get_job(j.id).await.expect("get"), Some(j));
    store
        .append_audit(&audit("system.start", "signet"))
        .await
        .expect("append");
    assert_eq!(
        store
            .list_audit(&AuditFilter::default())
            .await
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test]
async fn unknown_url_scheme_is_refused_without_echoing_it() {
    let err = Store::connect("mysql://root:hunter2@127.0.0.1/signet")
        .await
        .expect_err("unsupported");
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"));
}

async fn outbox_keeps_the_trace_context(db: TestDb) {
    let store = db.open().await;
    store
        .create_witness(&witness("prod"), &audit("witness.create", "prod"))
        .await
        .expect("w");
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let rec = signature("r.local/a", &digest("a"), "prod", None);
    let event = published(&rec).with_traceparent(Some(traceparent.to_owned()));
    store
        .record_signature(
            &rec,
            &audit("signature.publish", rec.digest.as_str()),
            Some(&event),
        )
        .await
        .expect("record");
    let pending = store.outbox_pending(10).await.expect("pending");
    assert_eq!(pending.len(), 2);
    // The witness event was written outside any trace.
    assert_eq!(pending[0].event.traceparent, None);
    assert_eq!(pending[1].event.traceparent.as_deref(), Some(traceparent));
    assert_eq!(pending[1].event, event);
    // It travels in the JSON form too, and old JSON without it still reads.
    let json = serde_json::to_value(&pending[1].event).expect("json");
    assert_eq!(json["traceparent"], traceparent);
    let old: OutboxEvent =
        serde_json::from_value(json!({"event_type": "t", "subject": "s", "data": {}}))
            .expect("without traceparent");
    assert_eq!(old.traceparent, None);
}

async fn queue_reports_its_oldest_message(db: TestDb) {
    let store = db.open().await;
    assert_eq!(store.queue_oldest("jobs").await.expect("oldest"), None);
    let before = ms(Utc::now());
    store
        .queue_push("jobs", b"a", &BTreeMap::new())
        .await
        .expect("push");
    let first = store
        .queue_oldest("jobs")
        .await
        .expect("oldest")
        .expect("one message");
    assert!(first >= before && first <= Utc::now(), "{first}");
    store
        .queue_push("jobs", b"b", &BTreeMap::new())
        .await
        .expect("push");
    store
        .queue_push("other", b"c", &BTreeMap::new())
        .await
        .expect("push");
    // Leased, or retried later, the first message is still the oldest.
    let leased = store
        .queue_lease("jobs", HOUR)
        .await
        .expect("lease")
        .expect("message");
    store.queue_retry(leased.id, HOUR).await.expect("retry");
    assert_eq!(
        store.queue_oldest("jobs").await.expect("oldest"),
        Some(first)
    );
    store.queue_ack(leased.id).await.expect("ack");
    let second = store
        .queue_oldest("jobs")
        .await
        .expect("oldest")
        .expect("one left");
    assert!(second >= first, "{second} {first}");
}

// ---------- PostgreSQL only ----------

/// Every gateway and signer process runs an outbox relay on the shared store. Before
/// relays took turns, each read the same pending events and sealed (a KMS call) and
/// published every one of them: with a gateway and a signer, 154 seals for 100 events
/// in the callgrind run of docs/benchmarks.md. Three relays here, with events written
/// while they run: each event must be relayed exactly once, and a turn must exclude the
/// other relays until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outbox_relays_take_turns_and_relay_each_event_once() {
    let db = TestDb::postgres().await;
    let first = db.open().await;
    let second = db.open().await;

    // Exclusive: a held turn refuses the others until it ends.
    let held = first.outbox_turn().await.expect("turn").expect("granted");
    assert!(
        second.outbox_turn().await.expect("turn").is_none(),
        "a second relay took the turn while the first held it"
    );
    held.end().await;
    let again = second.outbox_turn().await.expect("turn");
    assert!(again.is_some(), "the turn was not given up when it ended");
    if let Some(t) = again {
        t.end().await;
    }

    const EVENTS: usize = 300;
    let relayed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let writer = {
        let store = first.clone();
        tokio::spawn(async move {
            for i in 0..EVENTS {
                let name = format!("w{i}");
                store
                    .create_witness(&witness(&name), &audit("witness.create", &name))
                    .await
                    .expect("create");
            }
        })
    };
    let mut relays = JoinSet::new();
    for _ in 0..3 {
        let store = db.open().await;
        let relayed = relayed.clone();
        relays.spawn(async move {
            let deadline = tokio::time::Instant::now() + DEADLINE * 4;
            loop {
                let done = relayed.lock().map(|r| r.len()).unwrap_or(0) >= EVENTS;
                if done || tokio::time::Instant::now() > deadline {
                    return;
                }
                let Some(turn) = store.outbox_turn().await.expect("turn") else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                };
                let pending = store.outbox_pending(16).await.expect("pending");
                let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
                // What publishing takes, so the turns overlap with the others' attempts.
                tokio::time::sleep(Duration::from_millis(3)).await;
                if let Ok(mut r) = relayed.lock() {
                    r.extend(&ids);
                }
                store.outbox_mark_published(&ids).await.expect("mark");
                turn.end().await;
            }
        });
    }
    writer.await.expect("writer");
    while let Some(r) = relays.join_next().await {
        r.expect("relay");
    }
    let mut relayed = relayed.lock().map(|r| r.clone()).unwrap_or_default();
    let total = relayed.len();
    relayed.sort_unstable();
    relayed.dedup();
    assert_eq!(
        total,
        relayed.len(),
        "{} events were relayed more than once",
        total - relayed.len()
    );
    assert_eq!(relayed, (1..=EVENTS as i64).collect::<Vec<_>>());
}
