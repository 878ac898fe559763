//! Events: a signet event is a CloudEvents 1.0 message (encoded and decoded with the
//! `cloudevents-sdk` crate, structured JSON mode) whose `type` is one of
//! [`EventKind`]'s. Two extensions travel with it: `signetrevision`, the store's outbox
//! id (monotonic, so a verifier notices a gap and re-syncs), and `traceparent`.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use signet_core::{EventKind, PinnedKeys, Seal, SealError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// The CloudEvents `source` of every signet event.
pub const EVENT_SOURCE: &str = "/signet";
const REVISION_EXTENSION: &str = "signetrevision";
const TRACEPARENT_EXTENSION: &str = "traceparent";

/// One signet event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: EventKind,
    /// What the event is about: an image digest, a witness or policy name.
    pub subject: String,
    pub time: DateTime<Utc>,
    /// The outbox id the event was published from; absent for events that never
    /// went through the store.
    pub revision: Option<i64>,
    pub data: serde_json::Value,
    pub traceparent: Option<String>,
}

impl Event {
    pub fn new(kind: EventKind, subject: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            subject: subject.into(),
            time: Utc::now(),
            revision: None,
            data,
            traceparent: None,
        }
    }

    /// CloudEvents structured-mode JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, BusError> {
        let mut b = EventBuilderV10::new()
            .id(self.id.clone())
            .source(EVENT_SOURCE)
            .ty(self.kind.cloudevent_type())
            .subject(self.subject.clone())
            .time(self.time)
            .data("application/json", self.data.clone());
        if let Some(r) = self.revision {
            b = b.extension(REVISION_EXTENSION, r);
        }
        if let Some(tp) = &self.traceparent {
            b = b.extension(TRACEPARENT_EXTENSION, tp.clone());
        }
        let ce = b.build().map_err(|e| BusError::BadEvent(e.to_string()))?;
        serde_json::to_vec(&ce).map_err(|e| BusError::BadEvent(e.to_string()))
    }

    /// Parses CloudEvents structured JSON; refuses events that are not signet's.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BusError> {
        let ce: cloudevents::Event =
            serde_json::from_slice(bytes).map_err(|e| BusError::BadEvent(e.to_string()))?;
        let kind = EventKind::from_cloudevent_type(ce.ty())
            .ok_or_else(|| BusError::BadEvent(format!("unknown event type {:?}", ce.ty())))?;
        let data = match ce.data() {
            Some(Data::Json(v)) => v.clone(),
            Some(Data::String(s)) => {
                serde_json::from_str(s).map_err(|e| BusError::BadEvent(e.to_string()))?
            }
            Some(Data::Binary(b)) => {
                serde_json::from_slice(b).map_err(|e| BusError::BadEvent(e.to_string()))?
            }
            None => serde_json::Value::Null,
        };
        let revision = match ce.extension(REVISION_EXTENSION) {
            Some(ExtensionValue::Integer(i)) => Some(*i),
            Some(ExtensionValue::String(s)) => s.parse().ok(),
            _ => None,
        };
        let traceparent = match ce.extension(TRACEPARENT_EXTENSION) {
            Some(ExtensionValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(Self {
            id: ce.id().to_owned(),
            kind,
            subject: ce.subject().unwrap_or_default().to_owned(),
            time: ce.time().copied().unwrap_or_else(Utc::now),
            revision,
            data,
            traceparent,
        })
    }
}

/// An event on its way out: the exact CloudEvent bytes, the control plane's seal over
/// them, and what a broker routes and deduplicates by.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    pub id: String,
    pub kind: EventKind,
    pub traceparent: Option<String>,
    pub bytes: Bytes,
    /// The `Signet-Signature` header value; verifiers refuse events without one.
    pub seal: Option<String>,
}

impl OutgoingEvent {
    /// `event` encoded, not sealed yet.
    pub fn encode(event: &Event) -> Result<Self, BusError> {
        Ok(Self {
            id: event.id.clone(),
            kind: event.kind,
            traceparent: event.traceparent.clone(),
            bytes: Bytes::from(event.to_json()?),
            seal: None,
        })
    }

    pub fn sealed(mut self, seal: &Seal) -> Self {
        self.seal = Some(seal.to_header());
        self
    }
}

/// An event as it arrived: bytes nobody has vouched for yet, and the seal that came
/// with them, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent {
    pub bytes: Bytes,
    pub seal: Option<String>,
}

impl ReceivedEvent {
    /// Checks the seal against the pinned control plane keys, then parses.
    pub fn open(&self, keys: &PinnedKeys) -> Result<Event, EventRefused> {
        keys.check(&self.bytes, self.seal.as_deref())
            .map_err(EventRefused::Seal)?;
        Event::from_json(&self.bytes).map_err(EventRefused::Unreadable)
    }

    /// Parses without checking the seal: for tools and tests that only look.
    pub fn unverified(&self) -> Result<Event, BusError> {
        Event::from_json(&self.bytes)
    }
}

impl From<&OutgoingEvent> for ReceivedEvent {
    fn from(e: &OutgoingEvent) -> Self {
        Self {
            bytes: e.bytes.clone(),
            seal: e.seal.clone(),
        }
    }
}

/// Why a received event was not taken.
#[derive(Debug, thiserror::Error)]
pub enum EventRefused {
    #[error(transparent)]
    Seal(SealError),
    #[error("sealed, but not a signet event: {0}")]
    Unreadable(BusError),
}

impl EventRefused {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Seal(e) => e.reason(),
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// Where events are published and how they are received.
#[async_trait]
pub trait EventBus: Send + Sync + fmt::Debug {
    fn backend(&self) -> &'static str;
    /// Returns once the broker has the event.
    async fn publish(&self, event: &OutgoingEvent) -> Result<(), BusError>;
    /// Receives every event published from now on, until `shutdown` fires, as it
    /// arrived: a subscriber checks the seal before it believes anything. After a broker
    /// outage the stream resumes by itself; a subscriber notices missed events by a gap
    /// in [`Event::revision`].
    async fn subscribe(
        &self,
        shutdown: CancellationToken,
    ) -> Result<mpsc::Receiver<ReceivedEvent>, BusError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevent_round_trip() {
        let mut e = Event::new(
            EventKind::SignaturePublished,
            "sha256:abc",
            serde_json::json!({"witness": "prod"}),
        );
        e.revision = Some(42);
        e.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let json = e.to_json().expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "dev.signet.signature.published.v1");
        assert_eq!(v["source"], EVENT_SOURCE);
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["signetrevision"], 42);
        assert_eq!(v["data"]["witness"], "prod");
        let back = Event::from_json(&json).expect("decode");
        assert_eq!(back.id, e.id);
        assert_eq!(back.kind, e.kind);
        assert_eq!(back.revision, Some(42));
        assert_eq!(back.traceparent, e.traceparent);
        assert_eq!(back.data, e.data);
    }

    #[test]
    fn refuses_foreign_events() {
        let foreign = br#"{"specversion":"1.0","id":"1","source":"/x","type":"com.example.thing"}"#;
        assert!(matches!(
            Event::from_json(foreign),
            Err(BusError::BadEvent(_))
        ));
        assert!(matches!(Event::from_json(b"{"), Err(BusError::BadEvent(_))));
    }
}
