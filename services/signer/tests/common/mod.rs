//! What the signer's integration tests share: a harness on a SQLite store, the embedded
//! bus and the local KMS, with a signer that reaches loopback registries.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use signet_bus::{Bus, Message};
use signet_core::{Job, KeyVersion, KeyVersionState, NewAudit, Witness, WitnessState};
use signet_kms::{Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_signer::sign::SignContext;
use signet_signer::{Signer, SignerOptions};
use signet_store::Store;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Harness {
    pub store: Store,
    pub bus: Bus,
    pub kms: Arc<Kms>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .expect("store");
        let options = signet_bus::BusOptions {
            ack_wait: Duration::from_secs(2),
            ..signet_bus::BusOptions::default()
        };
        let bus = signet_bus::connect_with("embedded", &store, options)
            .await
            .expect("embedded bus");
        let kms = Arc::new(Kms::new(KmsConfig::new(dir.path())));
        Self {
            store,
            bus,
            kms,
            _dir: dir,
        }
    }

    pub async fn witness(&self, name: &str) {
        let described = self
            .kms
            .open(&format!("local://{name}"))
            .expect("local key")
            .describe()
            .await
            .expect("describe");
        let now = Utc::now();
        let witness = Witness {
            name: name.to_owned(),
            kms_key: format!("local://{name}"),
            algorithm: described.algorithm,
            format: Default::default(),
            description: String::new(),
            state: WitnessState::Active,
            key_versions: described
                .versions
                .iter()
                .map(|v| KeyVersion {
                    version: v.version.clone(),
                    fingerprint: v.public_key.fingerprint(),
                    public_key: v.public_key.clone(),
                    primary: v.version == described.primary_version,
                    state: KeyVersionState::Active,
                    created_at: now,
                })
                .collect(),
            created_at: now,
        };
        self.store
            .create_witness(
                &witness,
                &NewAudit::new("test", "witness.create", name, serde_json::json!({})),
            )
            .await
            .expect("witness");
    }

    pub fn signer(&self, options: SignerOptions) -> Arc<Signer> {
        let registry = RegistryClient::new(RegistryConfig {
            timeout: Duration::from_secs(2),
            ..RegistryConfig::for_loopback()
        })
        .expect("registry client");
        Arc::new(Signer::new(
            SignContext::new(self.store.clone(), self.kms.clone(), registry, 1000),
            self.bus.clone(),
            options,
            Arc::new(tokio::sync::Notify::new()),
        ))
    }

    pub async fn publish(&self, body: &str) {
        self.bus
            .jobs
            .publish(Message {
                body: body.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .expect("publish");
    }

    pub async fn jobs(&self) -> Vec<Job> {
        self.store.list_jobs(None, 1000).await.expect("jobs")
    }

    /// Polls until the bus holds exactly `count` dead letters.
    pub async fn until_dead_letters(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let dead = self.bus.jobs.dead_letters(10).await.expect("dead letters");
            if dead.len() == count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} dead letters did not appear within {DEADLINE:?}: {dead:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until `check` holds for the stored jobs.
    pub async fn until(&self, what: &str, check: impl Fn(&[Job]) -> bool) -> Vec<Job> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let jobs = self.jobs().await;
            if check(&jobs) {
                return jobs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} did not happen within {DEADLINE:?}: {jobs:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
