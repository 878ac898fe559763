//! The bus contract, written once and run against every backend: the embedded bus on a
//! temporary SQLite store, RabbitMQ at 127.0.0.1:5672 and NATS JetStream at
//! 127.0.0.1:4222. Each test works in a namespace of its own, so tests run in parallel
//! on the shared brokers without seeing each other.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{eventually, recv, Backend, Harness, AMQP_URL, NATS_URL};
use signet_bus::{Event, Message, OutgoingEvent, JOB_ID_HEADER, TRACEPARENT_HEADER};
use signet_core::EventKind;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A bounded look for something that must not arrive. A correct backend never delivers
/// in this window, whatever the timing; only a broken one can be caught in it.
const QUIET: Duration = Duration::from_millis(700);

fn job(n: usize) -> Message {
    let mut headers = BTreeMap::new();
    headers.insert(JOB_ID_HEADER.to_owned(), uuid::Uuid::now_v7().to_string());
    headers.insert(
        TRACEPARENT_HEADER.to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    );
    let body = format!(
        r#"{{"image":"registry.example/app{n}@sha256:{}","witness":"prod"}}"#,
        "ab".repeat(32)
    );
    Message {
        body: body.into_bytes(),
        headers,
    }
}

async fn round_trip_with_headers(b: Backend) {
    let h = Harness::new(b).await;
    let stop = CancellationToken::new();
    let sent = job(1);
    h.bus.jobs.publish(sent.clone()).await.expect("publish");
    let mut rx = h.bus.jobs.consume(4, stop.clone()).await.expect("consume");
    let d = recv(&mut rx, "the published job").await;
    assert_eq!(d.message, sent, "body and headers come back as published");
    assert_eq!(d.delivery_count, 1);
    d.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}

async fn prefetch_bounds_unsettled_deliveries(b: Backend) {
    let h = Harness::new(b).await;
    let stop = CancellationToken::new();
    for n in 0..5 {
        h.bus.jobs.publish(job(n)).await.expect("publish");
    }
    let mut rx = h.bus.jobs.consume(2, stop.clone()).await.expect("consume");
    let first = recv(&mut rx, "the first job").await;
    let second = recv(&mut rx, "the second job").await;
    assert!(
        tokio::time::timeout(QUIET, rx.recv()).await.is_err(),
        "a third delivery arrived while two were unsettled (prefetch 2)"
    );
    let mut seen = BTreeSet::new();
    seen.insert(first.message.body.clone());
    seen.insert(second.message.body.clone());
    first.ack().await.expect("ack");
    let third = recv(&mut rx, "a job after settling one").await;
    assert!(
        tokio::time::timeout(QUIET, rx.recv()).await.is_err(),
        "a delivery arrived while two were unsettled (prefetch 2)"
    );
    seen.insert(third.message.body.clone());
    second.ack().await.expect("ack");
    third.ack().await.expect("ack");
    for _ in 0..2 {
        let d = recv(&mut rx, "the remaining jobs").await;
        seen.insert(d.message.body.clone());
        d.ack().await.expect("ack");
    }
    assert_eq!(seen.len(), 5, "every job delivered once");
    stop.cancel();
    h.cleanup().await;
}

async fn ack_removes_the_message(b: Backend) {
    let h = Harness::new(b).await;
    let first_stop = CancellationToken::new();
    let acked = job(1);
    h.bus.jobs.publish(acked.clone()).await.expect("publish");
    let mut rx = h
        .bus
        .jobs
        .consume(1, first_stop.clone())
        .await
        .expect("consume");
    recv(&mut rx, "the job").await.ack().await.expect("ack");
    // A consumer going away would give back whatever it had not acked.
    first_stop.cancel();
    drop(rx);
    let marker = job(2);
    let other = h.reopen().await;
    other.jobs.publish(marker.clone()).await.expect("publish");
    let stop = CancellationToken::new();
    let mut rx = other.jobs.consume(1, stop.clone()).await.expect("consume");
    let d = recv(&mut rx, "the marker job").await;
    assert_eq!(d.message, marker, "the acked job came back");
    d.ack().await.expect("ack");
    eventually("the queue to be empty", || async {
        (other.jobs.depth().await.ok()? == Some(0)).then_some(())
    })
    .await;
    stop.cancel();
    h.cleanup().await;
}

async fn retry_redelivers_after_the_delay_with_a_higher_count(b: Backend) {
    let h = Harness::new(b).await;
    let stop = CancellationToken::new();
    let sent = job(1);
    h.bus.jobs.publish(sent.clone()).await.expect("publish");
    let mut rx = h.bus.jobs.consume(2, stop.clone()).await.expect("consume");
    let first = recv(&mut rx, "the job").await;
    assert_eq!(first.delivery_count, 1);
    let delay = Duration::from_millis(1500);
    let retried_at = Instant::now();
    first.retry(delay).await.expect("retry");
    let second = recv(&mut rx, "the retried job").await;
    assert!(
        retried_at.elapsed() >= delay,
        "redelivered after {:?}, sooner than the {delay:?} asked for",
        retried_at.elapsed()
    );
    assert_eq!(second.message, sent, "a retry keeps body and headers");
    assert_eq!(second.delivery_count, 2);
    second.retry(Duration::ZERO).await.expect("retry at once");
    let third = recv(&mut rx, "the job retried at once").await;
    assert_eq!(third.delivery_count, 3);
    assert_eq!(third.message, sent);
    third.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}

async fn dead_letter_leaves_the_queue_for_the_dead_letters(b: Backend) {
    let h = Harness::new(b).await;
    let stop = CancellationToken::new();
    let poison = job(1);
    h.bus.jobs.publish(poison.clone()).await.expect("publish");
    let mut rx = h.bus.jobs.consume(1, stop.clone()).await.expect("consume");
    let d = recv(&mut rx, "the job").await;
    d.dead_letter("witness \"prod\" is revoked")
        .await
        .expect("dead-letter");
    let dead = eventually("the dead letter to be listed", || async {
        let listed = h.bus.jobs.dead_letters(10).await.ok()?;
        listed.into_iter().find(|l| l.message.body == poison.body)
    })
    .await;
    assert_eq!(dead.reason, "witness \"prod\" is revoked");
    assert_eq!(dead.message.headers, poison.headers);
    assert_eq!(dead.delivery_count, 1);
    // Reading the dead letters leaves them there.
    let again = h.bus.jobs.dead_letters(10).await.expect("dead letters");
    assert_eq!(again.len(), 1, "{again:?}");

    let marker = job(2);
    h.bus.jobs.publish(marker.clone()).await.expect("publish");
    let next = recv(&mut rx, "the marker job").await;
    assert_eq!(
        next.message, marker,
        "the dead-lettered job was delivered again"
    );
    next.ack().await.expect("ack");
    eventually("the queue to be empty", || async {
        (h.bus.jobs.depth().await.ok()? == Some(0)).then_some(())
    })
    .await;
    stop.cancel();
    h.cleanup().await;
}

async fn unsettled_delivery_of_a_dropped_consumer_comes_back(b: Backend) {
    let h = Harness::new(b).await;
    let sent = job(1);
    h.bus.jobs.publish(sent.clone()).await.expect("publish");
    {
        // A process that takes the job and dies: its bus, consumer and delivery all go.
        let crashing = h.reopen().await;
        let stop = CancellationToken::new();
        let mut rx = crashing
            .jobs
            .consume(1, stop.clone())
            .await
            .expect("consume");
        let d = recv(&mut rx, "the job").await;
        assert_eq!(d.delivery_count, 1);
        stop.cancel();
        drop(d);
        drop(rx);
        drop(crashing);
    }
    let stop = CancellationToken::new();
    let mut rx = h.bus.jobs.consume(1, stop.clone()).await.expect("consume");
    let d = recv(&mut rx, "the job a dead consumer held").await;
    assert_eq!(d.message, sent);
    assert!(d.delivery_count >= 2, "count {}", d.delivery_count);
    d.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}

async fn external_producer_json_without_headers_is_consumed(b: Backend) {
    let h = Harness::new(b).await;
    let body = br#"{"image":"registry.example/ext@sha256:0000000000000000000000000000000000000000000000000000000000000000","witness":"prod"}"#.to_vec();
    match b {
        Backend::Embedded => h
            .bus
            .jobs
            .publish(Message {
                body: body.clone(),
                headers: BTreeMap::new(),
            })
            .await
            .expect("publish"),
        Backend::Amqp => {
            // What `rabbitmqadmin publish exchange=amq.default routing_key=signet.jobs.sign`
            // does: the default exchange, routed by queue name, no headers.
            let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
                .await
                .expect("RabbitMQ at 127.0.0.1:5672");
            let ch = conn.create_channel().await.expect("channel");
            ch.basic_publish(
                "".into(),
                h.names.jobs().as_str().into(),
                lapin::options::BasicPublishOptions::default(),
                &body,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("publish");
            conn.close(200, "done".into()).await.expect("close");
        }
        Backend::Nats => {
            // What `nats pub signet.jobs.sign '{…}'` does: a plain core NATS publish,
            // captured by the jobs stream.
            let client = async_nats::connect(NATS_URL)
                .await
                .expect("NATS at 127.0.0.1:4222");
            client
                .publish(h.names.jobs(), body.clone().into())
                .await
                .expect("publish");
            client.flush().await.expect("flush");
        }
    }
    let stop = CancellationToken::new();
    let mut rx = h.bus.jobs.consume(1, stop.clone()).await.expect("consume");
    let d = recv(&mut rx, "the external producer's job").await;
    assert_eq!(d.message.body, body);
    assert!(d.message.headers.is_empty(), "{:?}", d.message.headers);
    assert_eq!(d.delivery_count, 1);
    d.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}

async fn events_reach_every_subscriber(b: Backend) {
    let h = Harness::new(b).await;
    let stop = CancellationToken::new();
    let mut one = h
        .bus
        .events
        .subscribe(stop.clone())
        .await
        .expect("subscribe");
    let mut two = h
        .bus
        .events
        .subscribe(stop.clone())
        .await
        .expect("subscribe");
    let mut event = Event::new(
        EventKind::SignaturePublished,
        format!("sha256:{}", "cd".repeat(32)),
        serde_json::json!({"witness": "prod", "repository": "registry.example/app"}),
    );
    event.revision = Some(7);
    event.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    // The bus carries the seal beside the bytes, untouched (checking it is the
    // subscriber's job).
    let mut outgoing = OutgoingEvent::encode(&event).expect("encode");
    outgoing.seal = Some(format!(
        "keyid=\"sha256:{}\", alg=\"RSA_PKCS1_SHA256\", sig=\"AAAA\"",
        "ab".repeat(32)
    ));
    h.bus.events.publish(&outgoing).await.expect("publish");
    for rx in [&mut one, &mut two] {
        let got = recv(rx, "the event").await;
        assert_eq!(got.bytes, outgoing.bytes, "the exact bytes");
        assert_eq!(got.seal, outgoing.seal);
        assert_eq!(got.unverified().expect("decode"), event);
    }
    stop.cancel();
    h.cleanup().await;
}

async fn depth_and_age_of_waiting_messages(b: Backend) {
    let h = Harness::new(b).await;
    let stop = CancellationToken::new();
    assert_eq!(h.bus.jobs.depth().await.expect("depth"), Some(0));
    assert_eq!(h.bus.jobs.oldest().await.expect("oldest"), None);
    // Millisecond precision at most: the embedded queue keeps milliseconds.
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    for n in 0..3 {
        h.bus.jobs.publish(job(n)).await.expect("publish");
    }
    eventually("depth 3", || async {
        (h.bus.jobs.depth().await.ok()? == Some(3)).then_some(())
    })
    .await;
    let oldest = h.bus.jobs.oldest().await.expect("oldest");
    match b {
        // RabbitMQ does not say how old its messages are.
        Backend::Amqp => assert_eq!(oldest, None),
        _ => {
            let oldest = oldest.expect("the oldest message's time");
            assert!(
                oldest >= before && oldest <= chrono::Utc::now(),
                "{oldest} is not when the first job was published (after {before})"
            );
        }
    }
    let mut rx = h.bus.jobs.consume(3, stop.clone()).await.expect("consume");
    for _ in 0..3 {
        recv(&mut rx, "a job").await.ack().await.expect("ack");
    }
    eventually("depth 0", || async {
        (h.bus.jobs.depth().await.ok()? == Some(0)).then_some(())
    })
    .await;
    assert_eq!(h.bus.jobs.oldest().await.expect("oldest"), None);
    h.bus.jobs.check().await.expect("ready");
    stop.cancel();
    h.cleanup().await;
}

async fn too_many_deliveries_end_in_the_dead_letters(b: Backend) {
    let h = Harness::with(b, |o| o.max_deliver = 2).await;
    let stop = CancellationToken::new();
    let poison = job(1);
    h.bus.jobs.publish(poison.clone()).await.expect("publish");
    let mut rx = h.bus.jobs.consume(1, stop.clone()).await.expect("consume");
    // A job that kills its worker every time: dropped unsettled, twice.
    for n in 1..=2 {
        let d = recv(&mut rx, "the job").await;
        assert_eq!(d.delivery_count, n);
        drop(d);
    }
    let dead = eventually("the over-delivered job in the dead letters", || async {
        let listed = h.bus.jobs.dead_letters(10).await.ok()?;
        listed.into_iter().find(|l| l.message.body == poison.body)
    })
    .await;
    assert!(dead.reason.contains("delivered 3 times"), "{}", dead.reason);
    let marker = job(2);
    h.bus.jobs.publish(marker.clone()).await.expect("publish");
    let next = recv(&mut rx, "the marker job").await;
    assert_eq!(
        next.message, marker,
        "the over-delivered job reached a worker again"
    );
    next.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Embedded).await
                }
            )*
        }
        mod amqp {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Amqp).await
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Nats).await
                }
            )*
        }
    };
}

contract!(
    round_trip_with_headers,
    prefetch_bounds_unsettled_deliveries,
    ack_removes_the_message,
    retry_redelivers_after_the_delay_with_a_higher_count,
    dead_letter_leaves_the_queue_for_the_dead_letters,
    unsettled_delivery_of_a_dropped_consumer_comes_back,
    external_producer_json_without_headers_is_consumed,
    events_reach_every_subscriber,
    depth_and_age_of_waiting_messages,
    too_many_deliveries_end_in_the_dead_letters,
);

/// RabbitMQ has no per-message delay: a retry longer than the largest delay queue goes
/// round it with a not-before time, and the consumer parks it again until then.
#[tokio::test]
async fn amqp_not_before_holds_a_job_back_without_counting_a_delivery() {
    use lapin::types::{AMQPValue, FieldTable};
    let h = Harness::new(Backend::Amqp).await;
    let hold = Duration::from_millis(1200);
    let not_before =
        chrono::Utc::now().timestamp_millis() + i64::try_from(hold.as_millis()).expect("millis");
    let published_at = Instant::now();
    let mut headers = FieldTable::default();
    headers.insert(
        "signet-not-before".into(),
        AMQPValue::LongLongInt(not_before),
    );
    headers.insert("signet-job-id".into(), AMQPValue::LongString("j1".into()));
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ at 127.0.0.1:5672");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_publish(
        "".into(),
        h.names.jobs().as_str().into(),
        lapin::options::BasicPublishOptions::default(),
        b"{}",
        lapin::BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers),
    )
    .await
    .expect("publish")
    .await
    .expect("publish");
    conn.close(200, "done".into()).await.expect("close");

    let stop = CancellationToken::new();
    let mut rx = h.bus.jobs.consume(1, stop.clone()).await.expect("consume");
    let d = recv(&mut rx, "the held-back job").await;
    assert!(
        published_at.elapsed() >= hold,
        "delivered after {:?}",
        published_at.elapsed()
    );
    assert_eq!(d.delivery_count, 1, "parking is not a delivery");
    assert_eq!(
        d.message.headers.keys().collect::<Vec<_>>(),
        vec!["signet-job-id"],
        "bookkeeping headers stay inside the bus"
    );
    d.ack().await.expect("ack");
    stop.cancel();
    h.cleanup().await;
}
