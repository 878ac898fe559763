//! The RabbitMQ backend (lapin). Every connection declares, idempotently, what it uses:
//!
//! - `signet.jobs.sign`: a quorum queue for sign jobs; messages the broker itself rejects
//!   go to the dead-letter exchange.
//! - `signet.jobs.dead`: a fanout exchange with a quorum queue of the same name bound to
//!   it, so dead letters stay visible in the broker.
//! - `signet.jobs.sign.delay.{1s,5s,30s,2m,10m}`: quorum queues whose messages expire
//!   after their TTL and are dead-lettered (at-least-once) back into the jobs queue.
//!   RabbitMQ has no per-message delay; a retry goes to the smallest bucket at least as
//!   long as the delay, and a delay longer than the largest bucket carries a not-before
//!   time and takes more rounds.
//! - `signet.events`: a durable topic exchange; routing key `<noun>.<verb>`.
//!
//! Every publish waits for the broker's confirm. Consumers ack manually with a prefetch
//! equal to the worker concurrency. Connections that drop are reopened with backoff.
//!
//! Layout:
//! - this module: configuration, connecting, topology, header encoding, confirmed publish.
//! - `link`: the publishing connection shared by jobs and events, kept open by a task.
//! - `jobs`: the [`JobQueue`](crate::JobQueue) and its consumer.
//! - `events`: the [`EventBus`](crate::EventBus).

mod events;
mod jobs;
mod link;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};

use crate::{Bus, BusError, BusOptions, Names, DEAD_REASON_HEADER, DELIVERIES_HEADER};

pub(crate) const BACKEND: &str = "amqp";

/// Retry delay buckets: (queue label, message TTL).
const DELAY_BUCKETS: [(&str, Duration); 5] = [
    ("1s", Duration::from_secs(1)),
    ("5s", Duration::from_secs(5)),
    ("30s", Duration::from_secs(30)),
    ("2m", Duration::from_secs(120)),
    ("10m", Duration::from_secs(600)),
];

/// Header on a message parked in a delay queue for longer than one bucket: the time
/// (milliseconds since the epoch) before which it must not reach a worker.
const NOT_BEFORE_HEADER: &str = "signet-not-before";
/// Set by quorum queues on redelivery: how many times the message was returned before.
const X_DELIVERY_COUNT: &str = "x-delivery-count";
const AMQP_PERSISTENT: u8 = 2;

/// What every part of the backend needs to know.
pub(crate) struct Config {
    /// May hold a password: never logged; `redacted` is.
    url: String,
    redacted: String,
    names: Names,
    options: BusOptions,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.redacted)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Connects, declares the topology and starts the publishing connection's keeper.
pub(crate) async fn open(url: &str, names: Names, options: BusOptions) -> Result<Bus, BusError> {
    let cfg = Arc::new(Config {
        url: url.to_owned(),
        redacted: crate::redact(url),
        names,
        options,
    });
    let link = link::Link::start(cfg.clone()).await?;
    Ok(Bus {
        jobs: Arc::new(jobs::AmqpJobs::new(cfg.clone(), link.clone())),
        events: Arc::new(events::AmqpEvents::new(cfg, link)),
    })
}

pub(crate) fn unavailable(reason: impl Into<String>) -> BusError {
    BusError::Unavailable {
        backend: BACKEND,
        reason: reason.into(),
    }
}

fn not_confirmed(reason: impl Into<String>) -> BusError {
    BusError::NotConfirmed {
        backend: BACKEND,
        reason: reason.into(),
    }
}

/// Opens one connection; `role` names it in the broker's connection list.
async fn connect(cfg: &Config, role: &str) -> Result<Connection, BusError> {
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(format!("signet {role}")));
    let timeout = cfg.options.connect_timeout;
    match tokio::time::timeout(timeout, Connection::connect(&cfg.url, props)).await {
        Err(_) => Err(unavailable(format!(
            "RabbitMQ at {} did not accept a connection within {timeout:?}",
            cfg.redacted
        ))),
        Ok(Err(e)) => Err(unavailable(format!(
            "cannot connect to RabbitMQ at {}: {e}",
            cfg.redacted
        ))),
        Ok(Ok(conn)) => Ok(conn),
    }
}

fn amqp_err(what: &str) -> impl Fn(lapin::Error) -> BusError + '_ {
    move |e| unavailable(format!("{what}: {e}"))
}

fn quorum() -> BTreeMap<ShortString, AMQPValue> {
    let mut args = BTreeMap::new();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn millis(d: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Declares everything the backend uses. Idempotent; a queue that exists with other
/// arguments makes RabbitMQ refuse, and the error says which.
async fn declare(ch: &Channel, names: &Names) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let (jobs, dead) = (names.jobs(), names.dead());
    ch.exchange_declare(
        dead.as_str().into(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(amqp_err("declaring the dead-letter exchange"))?;
    ch.queue_declare(
        dead.as_str().into(),
        QueueDeclareOptions::durable(),
        quorum().into(),
    )
    .await
    .map_err(amqp_err("declaring the dead-letter queue"))?;
    ch.queue_bind(
        dead.as_str().into(),
        dead.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(amqp_err("binding the dead-letter queue"))?;

    let mut args = quorum();
    args.insert("x-dead-letter-exchange".into(), long_string(&dead));
    ch.queue_declare(
        jobs.as_str().into(),
        QueueDeclareOptions::durable(),
        args.into(),
    )
    .await
    .map_err(amqp_err("declaring the jobs queue"))?;

    for (label, ttl) in DELAY_BUCKETS {
        let mut args = quorum();
        args.insert("x-message-ttl".into(), millis(ttl));
        args.insert("x-dead-letter-exchange".into(), long_string(""));
        args.insert("x-dead-letter-routing-key".into(), long_string(&jobs));
        // At-least-once dead-lettering: an expired message leaves the delay queue only
        // once the jobs queue has confirmed it. It requires reject-publish overflow.
        args.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        args.insert("x-overflow".into(), long_string("reject-publish"));
        ch.queue_declare(
            names.delay_queue(label).as_str().into(),
            QueueDeclareOptions::durable(),
            args.into(),
        )
        .await
        .map_err(amqp_err("declaring a retry delay queue"))?;
    }

    ch.exchange_declare(
        names.events_exchange().as_str().into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await
    .map_err(amqp_err("declaring the events exchange"))?;
    Ok(())
}

/// Publishes and waits for the broker's confirm on a channel in confirm mode. A channel
/// or connection failure comes back as [`BusError::Unavailable`]; a nack, a returned
/// (unroutable) message or no answer in time as [`BusError::NotConfirmed`].
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    mandatory: bool,
    timeout: Duration,
) -> Result<(), BusError> {
    let exchange = ShortString::try_new(exchange)
        .map_err(|e| BusError::BadMessage(format!("exchange name: {e}")))?;
    let routing_key = ShortString::try_new(routing_key)
        .map_err(|e| BusError::BadMessage(format!("routing key: {e}")))?;
    let options = BasicPublishOptions {
        mandatory,
        ..BasicPublishOptions::default()
    };
    let confirmed = tokio::time::timeout(timeout, async {
        ch.basic_publish(exchange, routing_key, options, body, properties)
            .await?
            .await
    })
    .await;
    match confirmed {
        Err(_) => Err(not_confirmed(format!("no confirm within {timeout:?}"))),
        Ok(Err(e)) => Err(unavailable(format!("publishing failed: {e}"))),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(not_confirmed(format!(
            "RabbitMQ could not route it ({}): is the queue there?",
            returned.reply_text
        ))),
        Ok(Ok(Confirmation::Nack(_))) => Err(not_confirmed("RabbitMQ refused it (nack)")),
        Ok(Ok(Confirmation::NotRequested)) => {
            Err(not_confirmed("the channel is not in confirm mode"))
        }
    }
}

/// Persistent message properties with `headers`.
fn properties(headers: FieldTable, content_type: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(AMQP_PERSISTENT)
        .with_content_type(content_type.into())
        .with_headers(headers)
}

/// Encodes a message's headers as AMQP long strings.
fn encode_headers(headers: &BTreeMap<String, String>) -> Result<FieldTable, BusError> {
    let mut table = BTreeMap::new();
    for (k, v) in headers {
        let key = ShortString::try_new(k.as_str())
            .map_err(|e| BusError::BadMessage(format!("header name {k:?}: {e}")))?;
        table.insert(key, AMQPValue::LongString(LongString::from(v.as_str())));
    }
    Ok(table.into())
}

/// Whether a header is bookkeeping (the broker's `x-…` or the bus's own) rather than
/// something the producer set.
fn is_bookkeeping(name: &str) -> bool {
    name.starts_with("x-")
        || name == DELIVERIES_HEADER
        || name == NOT_BEFORE_HEADER
        || name == DEAD_REASON_HEADER
}

/// The producer's headers, as strings; values of types a header cannot sensibly carry
/// as text (tables, arrays, bytes) are left out.
fn decode_headers(table: &FieldTable) -> BTreeMap<String, String> {
    table
        .inner()
        .iter()
        .filter(|(k, _)| !is_bookkeeping(k.as_str()))
        .filter_map(|(k, v)| value_text(v).map(|v| (k.to_string(), v)))
        .collect()
}

fn value_text(v: &AMQPValue) -> Option<String> {
    Some(match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(i) => i.to_string(),
        AMQPValue::ShortShortUInt(i) => i.to_string(),
        AMQPValue::ShortInt(i) => i.to_string(),
        AMQPValue::ShortUInt(i) => i.to_string(),
        AMQPValue::LongInt(i) => i.to_string(),
        AMQPValue::LongUInt(i) => i.to_string(),
        AMQPValue::LongLongInt(i) => i.to_string(),
        AMQPValue::Timestamp(t) => t.to_string(),
        _ => return None,
    })
}

/// A numeric header, whatever integer type (or decimal text) the sender used.
fn header_u64(table: &FieldTable, name: &str) -> Option<u64> {
    let v = table.inner().get(name)?;
    match v {
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => value_text(v)?.parse().ok(),
        AMQPValue::ShortShortInt(i) => u64::try_from(*i).ok(),
        AMQPValue::ShortShortUInt(i) => Some(u64::from(*i)),
        AMQPValue::ShortInt(i) => u64::try_from(*i).ok(),
        AMQPValue::ShortUInt(i) => Some(u64::from(*i)),
        AMQPValue::LongInt(i) => u64::try_from(*i).ok(),
        AMQPValue::LongUInt(i) => Some(u64::from(*i)),
        AMQPValue::LongLongInt(i) => u64::try_from(*i).ok(),
        AMQPValue::Timestamp(t) => Some(*t),
        _ => None,
    }
}

fn header_u32(table: &FieldTable, name: &str) -> Option<u32> {
    header_u64(table, name).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// How many times this copy of a message has been delivered, this delivery included:
/// deliveries before it was last republished, plus the quorum queue's count of returns.
fn delivery_count(table: &FieldTable, redelivered: bool) -> u32 {
    let before = header_u32(table, DELIVERIES_HEADER).unwrap_or(0);
    let returned = header_u32(table, X_DELIVERY_COUNT).unwrap_or(u32::from(redelivered));
    before.saturating_add(returned).saturating_add(1)
}

/// The headers for republishing a message (retry, dead letter): the producer's, plus
/// the deliveries so far and, optionally, a not-before time and a dead-letter reason.
fn republish_headers(
    table: &FieldTable,
    deliveries: u32,
    not_before_ms: Option<u64>,
    dead_reason: Option<&str>,
) -> FieldTable {
    let mut out: BTreeMap<ShortString, AMQPValue> = table
        .inner()
        .iter()
        .filter(|(k, _)| !is_bookkeeping(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert(
        DELIVERIES_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(deliveries)),
    );
    if let Some(at) = not_before_ms {
        out.insert(
            NOT_BEFORE_HEADER.into(),
            AMQPValue::LongLongInt(i64::try_from(at).unwrap_or(i64::MAX)),
        );
    }
    if let Some(reason) = dead_reason {
        out.insert(DEAD_REASON_HEADER.into(), long_string(reason));
    }
    out.into()
}

/// The delay queue for a retry after `delay`: the smallest bucket at least that long,
/// or the largest when none is.
fn bucket_for(delay: Duration) -> (&'static str, Duration) {
    DELAY_BUCKETS
        .iter()
        .copied()
        .find(|(_, ttl)| *ttl >= delay)
        .unwrap_or(DELAY_BUCKETS[DELAY_BUCKETS.len() - 1])
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut m = BTreeMap::new();
        for (k, v) in entries {
            m.insert(ShortString::from(*k), v.clone());
        }
        m.into()
    }

    #[test]
    fn picks_the_smallest_bucket_at_least_as_long() {
        assert_eq!(bucket_for(Duration::from_millis(200)).0, "1s");
        assert_eq!(bucket_for(Duration::from_secs(1)).0, "1s");
        assert_eq!(bucket_for(Duration::from_millis(1200)).0, "5s");
        assert_eq!(bucket_for(Duration::from_secs(31)).0, "2m");
        assert_eq!(bucket_for(Duration::from_secs(3600)).0, "10m");
    }

    #[test]
    fn counts_deliveries_across_republishes_and_returns() {
        assert_eq!(delivery_count(&FieldTable::default(), false), 1);
        assert_eq!(delivery_count(&FieldTable::default(), true), 2);
        let t = table(&[
            (DELIVERIES_HEADER, AMQPValue::LongLongInt(3)),
            (X_DELIVERY_COUNT, AMQPValue::LongLongInt(2)),
        ]);
        assert_eq!(delivery_count(&t, true), 6);
        let t = table(&[(DELIVERIES_HEADER, long_string("4"))]);
        assert_eq!(delivery_count(&t, false), 5);
    }

    #[test]
    fn headers_round_trip_without_bookkeeping() {
        let mut h = BTreeMap::new();
        h.insert("signet-job-id".to_owned(), "abc".to_owned());
        h.insert("traceparent".to_owned(), "00-1-2-01".to_owned());
        let mut t = encode_headers(&h).expect("encode").inner().clone();
        t.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        t.insert(X_DELIVERY_COUNT.into(), AMQPValue::LongInt(1));
        t.insert(DELIVERIES_HEADER.into(), AMQPValue::LongLongInt(2));
        t.insert("n".into(), AMQPValue::LongUInt(7));
        let decoded = decode_headers(&t.clone().into());
        let mut want = h.clone();
        want.insert("n".to_owned(), "7".to_owned());
        assert_eq!(decoded, want);

        let again = republish_headers(&t.into(), 5, Some(99), Some("gone"));
        assert_eq!(header_u32(&again, DELIVERIES_HEADER), Some(5));
        assert_eq!(header_u64(&again, NOT_BEFORE_HEADER), Some(99));
        assert!(!again.contains_key("x-death"));
        assert!(!again.contains_key(X_DELIVERY_COUNT));
        assert_eq!(decode_headers(&again), want);
    }

    #[test]
    fn refuses_header_names_amqp_cannot_carry() {
        let mut h = BTreeMap::new();
        h.insert("k".repeat(300), "v".to_owned());
        assert!(matches!(encode_headers(&h), Err(BusError::BadMessage(_))));
    }
}
