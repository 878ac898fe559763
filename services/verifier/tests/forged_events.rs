//! The bus publisher's attack (security review 2026-12, C1), against real NATS and
//! RabbitMQ. The attacker can publish on the event bus and holds no signet credential.
//! With raw broker publishes they send:
//! - `witness.rotated` naming witness `release` with the attacker's key as its only live
//!   version, and
//! - `signature.published` for the attacker's image, signed by that key,
//!
//! both with a revision of 10^15. Before the control plane sealed its events, the
//! verifier took the key, admitted the attacker's image, and then ignored every later
//! bundle and genuine event, the admin's revocation included, until it restarted.
//!
//! What must hold: the forged events are refused (and counted), the attacker's image
//! stays denied, the genuine image stays admitted, and the admin's revocation still
//! reaches the verifier.

mod common;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use chrono::Utc;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use reqwest::Method;
use serde_json::json;
use signet_bus::{Event, Names};
use signet_core::{
    EventKind, KeyVersion, KeyVersionState, PublicKey, SignatureAlgorithm, SignatureRecord,
    SimpleSigning, Witness, WitnessState,
};

use common::{poll, Backend, ControlPlane, Images, Verifier, VerifierOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_publisher_cannot_take_over_the_verifier() {
    bus_publisher_cannot_take_over_the_verifier(Backend::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn amqp_publisher_cannot_take_over_the_verifier() {
    bus_publisher_cannot_take_over_the_verifier(Backend::Amqp).await;
}

/// The attacker's own RSA key.
struct AttackerKey {
    pair: KeyPair,
    public: PublicKey,
}

impl AttackerKey {
    fn new() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let der = pair.public_key().as_der().expect("der");
        let public = PublicKey::parse(der.as_ref()).expect("parse");
        Self { pair, public }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .expect("sign");
        sig
    }
}

/// CloudEvent bytes as signet's relay would write them, with the attacker's revision.
fn forged(kind: EventKind, subject: &str, data: serde_json::Value, revision: i64) -> Vec<u8> {
    let mut e = Event::new(kind, subject, data);
    e.revision = Some(revision);
    e.to_json().expect("encode")
}

async fn publish_raw(backend: Backend, namespace: &str, kind: EventKind, body: Vec<u8>) {
    let names = Names::new(Some(namespace)).expect("names");
    match backend {
        Backend::Nats => {
            let client = async_nats::connect(common::NATS_URL)
                .await
                .expect("NATS on 127.0.0.1:4222");
            let js = async_nats::jetstream::new(client);
            js.publish(names.event_subject(kind), body.into())
                .await
                .expect("publish")
                .await
                .expect("JetStream ack");
        }
        Backend::Amqp => {
            let conn = lapin::Connection::connect(
                common::AMQP_URL,
                lapin::ConnectionProperties::default(),
            )
            .await
            .expect("RabbitMQ on 127.0.0.1:5672");
            let ch = conn.create_channel().await.expect("channel");
            ch.basic_publish(
                names.events_exchange().as_str().into(),
                kind.name().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
            let _ = conn.close(200, "done".into()).await;
        }
        Backend::Embedded => unreachable!("the embedded bus has no outside publisher"),
    }
}

fn refusals() -> u64 {
    ["unsealed", "unknown_key", "bad_signature"]
        .iter()
        .map(|reason| {
            signet_runtime::metrics::metrics()
                .trust_refusals
                .get_or_create(&signet_runtime::metrics::RefusalLabels {
                    source: "event".into(),
                    reason: (*reason).into(),
                })
                .get()
        })
        .sum()
}

async fn bus_publisher_cannot_take_over_the_verifier(backend: Backend) {
    let cp = ControlPlane::start(backend).await;
    let images = Images::start().await;
    cp.witness("release").await;
    cp.policy("prod-images", "release", "prod", json!({})).await;
    let (signed, _) = images.push("team/app", "v1").await;
    let (_, evil_digest) = images.push("team/evil", "v1").await;
    let evil = format!("{}/team/evil@{evil_digest}", images.host);
    let verifier = Verifier::start(&cp, VerifierOptions::default()).await;
    cp.sign(&signed, "release").await;
    verifier.caught_up(&cp).await;
    assert!(verifier.allowed("prod", &signed).await, "the signed image");
    assert!(
        !verifier.allowed("prod", &evil).await,
        "the attacker's image"
    );

    // The attack: the attacker's key as witness `release`, and their image signed by it.
    let attacker = AttackerKey::new();
    let huge = 1_000_000_000_000_000;
    let now = Utc::now();
    let witness = Witness {
        name: "release".into(),
        kms_key: "local://release".into(),
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        format: Default::default(),
        description: String::new(),
        state: WitnessState::Active,
        key_versions: vec![KeyVersion {
            version: "1".into(),
            public_key: attacker.public.clone(),
            fingerprint: attacker.public.fingerprint(),
            primary: true,
            state: KeyVersionState::Active,
            created_at: now,
        }],
        created_at: now,
    };
    let repository = format!("{}/team/evil", images.host);
    let payload = SimpleSigning::new(repository.clone(), evil_digest.clone()).to_bytes();
    let record = SignatureRecord {
        id: uuid::Uuid::now_v7(),
        repository: repository.clone(),
        digest: evil_digest.clone(),
        witness: "release".into(),
        key_version: "1".into(),
        key_fingerprint: attacker.public.fingerprint(),
        algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
        signature: attacker.sign(&payload),
        payload,
        artifact: format!("{repository}:{}", evil_digest.signature_tag()),
        job_id: None,
        created_at: now,
        revoked: None,
    };
    let before = refusals();
    publish_raw(
        backend,
        &cp.namespace,
        EventKind::WitnessRotated,
        forged(
            EventKind::WitnessRotated,
            "release",
            serde_json::to_value(&witness).expect("json"),
            huge,
        ),
    )
    .await;
    publish_raw(
        backend,
        &cp.namespace,
        EventKind::SignaturePublished,
        forged(
            EventKind::SignaturePublished,
            &evil_digest.to_string(),
            serde_json::to_value(&record).expect("json"),
            huge + 1,
        ),
    )
    .await;
    // Both forged events have reached the verifier and been refused. The refusal counter
    // is shared by the tests of this binary, so also wait for a genuine event published
    // after the forged ones: the subscription delivers in order, so once it is handled,
    // so are they.
    poll("the verifier to refuse both forged events", || async {
        (refusals() >= before + 2).then_some(())
    })
    .await;
    let (after, _) = images.push("team/after", "v1").await;
    cp.sign(&after, "release").await;
    verifier.caught_up(&cp).await;
    assert!(
        verifier.revision() < huge,
        "no forged revision was taken: {}",
        verifier.revision()
    );
    assert!(
        !verifier.allowed("prod", &evil).await,
        "the attacker's image must stay denied"
    );
    assert!(
        verifier.allowed("prod", &signed).await,
        "the genuine key must stay trusted"
    );

    // The admin reacts: witness `release` is revoked. The verifier is not frozen: the
    // genuine event and bundle get through, and the signed image is denied.
    cp.ok(Method::POST, "/v1/witnesses/release/revoke", None)
        .await;
    poll("the admin's revocation to reach the verifier", || async {
        (!verifier.allowed("prod", &signed).await).then_some(())
    })
    .await;
    assert!(!verifier.allowed("prod", &evil).await);
    // And it is not frozen for later changes either: the policy moves to a new witness,
    // which signs, and its image is admitted.
    cp.witness("release2").await;
    cp.ok(
        Method::PATCH,
        "/v1/policies/prod-images",
        Some(json!({"witnesses": ["release2"]})),
    )
    .await;
    let (later, _) = images.push("team/later", "v1").await;
    cp.sign(&later, "release2").await;
    poll("a later signature to be trusted", || async {
        verifier.allowed("prod", &later).await.then_some(())
    })
    .await;
}
