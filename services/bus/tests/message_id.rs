//! Every backend names a delivered message with an id that survives redeliveries: after
//! a retry and after a consumer dropped it unsettled (what a crash does). The signer
//! derives the job id of an external producer's message from it.

mod common;

use std::time::Duration;

use common::{recv, Backend, Harness, AMQP_URL};
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use signet_bus::Message;
use tokio_util::sync::CancellationToken;

const BODY: &str = r#"{"image":"registry.example/app:v1","witness":"prod"}"#;

/// Publishes like an external producer: no signet headers at all.
async fn publish_external(h: &Harness) {
    h.bus
        .jobs
        .publish(Message {
            body: BODY.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .expect("publish");
}

async fn id_survives_retry_and_crash(h: Harness, expect_prefix: &str) {
    let stop = CancellationToken::new();
    let mut rx = h.bus.jobs.consume(1, stop.clone()).await.expect("consume");
    let first = recv(&mut rx, "the external message").await;
    let id = first.message_id.clone().expect("a message id");
    assert!(id.starts_with(expect_prefix), "{id}");
    assert!(
        first.message.headers.is_empty(),
        "the id is not added to the producer's headers: {:?}",
        first.message.headers
    );
    first
        .retry(Duration::from_millis(100))
        .await
        .expect("retry");
    let second = recv(&mut rx, "the message after a retry").await;
    assert_eq!(second.message_id.as_deref(), Some(id.as_str()));
    drop(second);
    let third = recv(&mut rx, "the message after a dropped delivery").await;
    assert_eq!(third.message_id.as_deref(), Some(id.as_str()));
    assert!(third.delivery_count >= 3, "{}", third.delivery_count);
    third.ack().await.expect("ack");

    // Another message gets another id.
    publish_external(&h).await;
    let other = recv(&mut rx, "a second message").await;
    assert_ne!(other.message_id.as_deref(), Some(id.as_str()));
    other.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_message_ids_are_stable() {
    let h = Harness::new(Backend::Embedded).await;
    publish_external(&h).await;
    id_survives_retry_and_crash(h, "embedded:").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_message_ids_are_stable() {
    let h = Harness::new(Backend::Nats).await;
    publish_external(&h).await;
    id_survives_retry_and_crash(h, "nats:").await;
}

/// RabbitMQ gives messages no id of its own: the producer's `message_id` property is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_message_ids_come_from_the_producer() {
    let h = Harness::new(Backend::Amqp).await;
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ at 127.0.0.1:5672");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_publish(
        "".into(),
        h.names.jobs().as_str().into(),
        BasicPublishOptions::default(),
        BODY.as_bytes(),
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id("build-42".into()),
    )
    .await
    .expect("publish")
    .await
    .expect("routed");
    let _ = conn.close(200, "done".into()).await;

    let stop = CancellationToken::new();
    let mut rx = h.bus.jobs.consume(1, stop.clone()).await.expect("consume");
    let first = recv(&mut rx, "the external message").await;
    assert_eq!(first.message_id.as_deref(), Some("amqp:build-42"));
    assert!(
        first.message.headers.is_empty(),
        "{:?}",
        first.message.headers
    );
    first
        .retry(Duration::from_millis(100))
        .await
        .expect("retry");
    let second = recv(&mut rx, "the message after a retry").await;
    assert_eq!(
        second.message_id.as_deref(),
        Some("amqp:build-42"),
        "the id survives the delay queue"
    );
    second.ack().await.expect("ack");

    // Without the property there is nothing stable to go by.
    publish_external(&h).await;
    let anonymous = recv(&mut rx, "a message without message_id").await;
    assert_eq!(anonymous.message_id, None);
    anonymous.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}
