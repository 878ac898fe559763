//! How a bus behaves ([`BusOptions`]) and what its broker objects are called ([`Names`]).

use std::time::Duration;

use signet_core::EventKind;

use crate::{BusError, JOBS_DEAD, JOBS_QUEUE};

/// Tuning for a bus. [`Default`] is what production uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// Appended (as `-<namespace>`) to every queue, exchange, stream and subject name, so
    /// several buses can share one broker without seeing each other's messages; tests use
    /// it. Production leaves it empty and gets the exact names in [`Names`].
    pub namespace: Option<String>,
    /// A message delivered this many times without being settled (say, because it makes
    /// every worker crash) goes to the dead letters instead of to a worker once more.
    pub max_deliver: u32,
    /// How long a delivery may stay unsettled before the broker gives it to another
    /// consumer: the NATS consumer's `ack_wait` and the embedded queue's lease. RabbitMQ
    /// needs none: it redelivers when the consumer's connection closes. A NATS delivery
    /// still held by a live worker is kept alive with progress acks.
    pub ack_wait: Duration,
    /// How long publishing waits for the broker's confirm (or a settlement for the
    /// broker's answer) before it fails.
    pub publish_timeout: Duration,
    /// How long one connection attempt, with declaring queues and streams, may take.
    pub connect_timeout: Duration,
    /// The longest wait between two reconnection attempts.
    pub reconnect_max_delay: Duration,
    /// How long an idle NATS pull request waits for messages before it is renewed.
    pub poll_interval: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            max_deliver: 25,
            ack_wait: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            reconnect_max_delay: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
        }
    }
}

impl BusOptions {
    /// Reports every bad setting at once.
    pub fn validate(&self) -> Result<(), BusError> {
        let mut problems = Vec::new();
        if let Err(BusError::BadOptions(p)) = Names::new(self.namespace.as_deref()) {
            problems.push(p);
        }
        if self.max_deliver == 0 {
            problems.push("max_deliver must be at least 1".to_owned());
        }
        for (name, value) in [
            ("ack_wait", self.ack_wait),
            ("publish_timeout", self.publish_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_max_delay", self.reconnect_max_delay),
            ("poll_interval", self.poll_interval),
        ] {
            if value < Duration::from_millis(100) {
                problems.push(format!("{name} must be at least 100ms, not {value:?}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BusError::BadOptions(problems.join("; ")))
        }
    }
}

/// The names of every queue, exchange, stream and subject a bus uses. Without a
/// namespace (and by [`Default`]) they are the production names; with one, each
/// carries `-<namespace>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    suffix: String,
}

/// Long enough for a UUID plus a prefix, short enough for every broker's name limits.
const MAX_NAMESPACE: usize = 64;

impl Names {
    pub fn new(namespace: Option<&str>) -> Result<Self, BusError> {
        let suffix = match namespace {
            None => String::new(),
            Some(ns) => {
                // Letters, digits, '-' and '_' are valid in AMQP names, NATS subject
                // tokens and JetStream stream names alike.
                let ok = !ns.is_empty()
                    && ns.len() <= MAX_NAMESPACE
                    && ns
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !ok {
                    return Err(BusError::BadOptions(format!(
                        "namespace {ns:?} must be 1 to {MAX_NAMESPACE} letters, digits, '-' or '_'"
                    )));
                }
                format!("-{ns}")
            }
        };
        Ok(Self { suffix })
    }

    /// The jobs queue (RabbitMQ) and subject (NATS): `signet.jobs.sign`.
    pub fn jobs(&self) -> String {
        format!("{JOBS_QUEUE}{}", self.suffix)
    }

    /// The dead-letter exchange and queue (RabbitMQ) and subject (NATS): `signet.jobs.dead`.
    pub fn dead(&self) -> String {
        format!("{JOBS_DEAD}{}", self.suffix)
    }

    /// A RabbitMQ retry delay queue: `signet.jobs.sign.delay.<label>`.
    pub fn delay_queue(&self, label: &str) -> String {
        format!("{JOBS_QUEUE}.delay.{label}{}", self.suffix)
    }

    /// The RabbitMQ topic exchange for events: `signet.events`.
    pub fn events_exchange(&self) -> String {
        format!("signet.events{}", self.suffix)
    }

    /// The NATS subject of one event kind: `signet.events.<noun>.<verb>`.
    pub fn event_subject(&self, kind: EventKind) -> String {
        if self.suffix.is_empty() {
            kind.nats_subject()
        } else {
            // The namespace goes on the root token: `signet.events.>` of a production
            // stream on the same server must not capture namespaced events.
            format!("signet.events{}.{}", self.suffix, kind.name())
        }
    }

    /// Every event subject: `signet.events.>`.
    pub fn event_subjects(&self) -> String {
        format!("signet.events{}.>", self.suffix)
    }

    /// The JetStream work-queue stream holding sign jobs: `SIGNET_JOBS`.
    pub fn jobs_stream(&self) -> String {
        format!("SIGNET_JOBS{}", self.suffix)
    }

    /// The JetStream stream holding dead letters: `SIGNET_DEAD`.
    pub fn dead_stream(&self) -> String {
        format!("SIGNET_DEAD{}", self.suffix)
    }

    /// The JetStream stream holding events: `SIGNET_EVENTS`.
    pub fn events_stream(&self) -> String {
        format!("SIGNET_EVENTS{}", self.suffix)
    }

    /// The durable JetStream consumer every signer replica pulls from. Its stream is
    /// namespaced already, so the name is not.
    pub fn jobs_consumer(&self) -> &'static str {
        "signet-signer"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names_are_exact() {
        let n = Names::new(None).expect("names");
        assert_eq!(n.jobs(), "signet.jobs.sign");
        assert_eq!(n.dead(), "signet.jobs.dead");
        assert_eq!(n.delay_queue("5s"), "signet.jobs.sign.delay.5s");
        assert_eq!(n.events_exchange(), "signet.events");
        assert_eq!(
            n.event_subject(EventKind::SignaturePublished),
            "signet.events.signature.published"
        );
        assert_eq!(n.event_subjects(), "signet.events.>");
        assert_eq!(n.jobs_stream(), "SIGNET_JOBS");
        assert_eq!(n.dead_stream(), "SIGNET_DEAD");
        assert_eq!(n.events_stream(), "SIGNET_EVENTS");
    }

    #[test]
    fn namespaced_names_do_not_overlap_production_ones() {
        let n = Names::new(Some("t1")).expect("names");
        assert_eq!(n.jobs(), "signet.jobs.sign-t1");
        assert_eq!(n.delay_queue("1s"), "signet.jobs.sign.delay.1s-t1");
        assert_eq!(
            n.event_subject(EventKind::WitnessCreated),
            "signet.events-t1.witness.created"
        );
        assert_eq!(n.event_subjects(), "signet.events-t1.>");
        assert_eq!(n.jobs_stream(), "SIGNET_JOBS-t1");
    }

    #[test]
    fn refuses_namespaces_that_would_break_names() {
        for bad in ["", "a.b", "a b", "a>", "*", &"x".repeat(65)] {
            assert!(
                matches!(Names::new(Some(bad)), Err(BusError::BadOptions(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reports_every_bad_option_at_once() {
        let o = BusOptions {
            namespace: Some("a.b".into()),
            max_deliver: 0,
            ack_wait: Duration::ZERO,
            ..BusOptions::default()
        };
        let msg = o.validate().expect_err("bad").to_string();
        assert!(msg.contains("namespace"), "{msg}");
        assert!(msg.contains("max_deliver"), "{msg}");
        assert!(msg.contains("ack_wait"), "{msg}");
        assert!(BusOptions::default().validate().is_ok());
    }
}
