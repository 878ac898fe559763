//! The events signet emits. Each is a CloudEvents 1.0 structured JSON message of type
//! `dev.signet.<noun>.<verb>.v1`, published on NATS subject `signet.events.<noun>.<verb>`
//! or on the AMQP topic exchange `signet.events` with routing key `<noun>.<verb>`.

use std::fmt;

/// Every event type signet emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A signature was published to the registry and recorded. Data: [`crate::SignatureRecord`].
    SignaturePublished,
    /// A sign job failed for good (dead letter). Data: the job.
    SignatureFailed,
    /// A recorded signature was revoked.
    SignatureRevoked,
    /// A witness was created. Data: the witness.
    WitnessCreated,
    /// A witness got a new primary key version. Data: the witness.
    WitnessRotated,
    /// One key version of a witness was revoked. Data: the witness.
    WitnessKeyRevoked,
    /// A witness was revoked as a whole. Data: the witness.
    WitnessRevoked,
    /// A security policy was created, changed, enabled, disabled or deleted.
    PolicyUpdated,
    /// A break-glass annotation let a workload through.
    AdmissionBreakGlass,
    /// An attestation was published and recorded. Data: [`crate::AttestationRecord`].
    AttestationPublished,
    /// A running container's standing got worse (its signature was revoked, a policy now
    /// covers it, ...). Data: [`crate::inventory::StandingChange`].
    WorkloadUntrusted,
}

impl EventKind {
    pub const ALL: [EventKind; 11] = [
        Self::SignaturePublished,
        Self::SignatureFailed,
        Self::SignatureRevoked,
        Self::WitnessCreated,
        Self::WitnessRotated,
        Self::WitnessKeyRevoked,
        Self::WitnessRevoked,
        Self::PolicyUpdated,
        Self::AdmissionBreakGlass,
        Self::WorkloadUntrusted,
        Self::AttestationPublished,
    ];

    /// `<noun>.<verb>`, also the AMQP routing key.
    pub fn name(self) -> &'static str {
        match self {
            Self::SignaturePublished => "signature.published",
            Self::SignatureFailed => "signature.failed",
            Self::SignatureRevoked => "signature.revoked",
            Self::WitnessCreated => "witness.created",
            Self::WitnessRotated => "witness.rotated",
            Self::WitnessKeyRevoked => "witness.key_revoked",
            Self::WitnessRevoked => "witness.revoked",
            Self::PolicyUpdated => "policy.updated",
            Self::AdmissionBreakGlass => "admission.break_glass",
            Self::WorkloadUntrusted => "workload.untrusted",
            Self::AttestationPublished => "attestation.published",
        }
    }

    /// The CloudEvents `type`: `dev.signet.<noun>.<verb>.v1`.
    pub fn cloudevent_type(self) -> String {
        format!("dev.signet.{}.v1", self.name())
    }

    /// The NATS subject: `signet.events.<noun>.<verb>`.
    pub fn nats_subject(self) -> String {
        format!("signet.events.{}", self.name())
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn from_cloudevent_type(ty: &str) -> Option<Self> {
        let name = ty.strip_prefix("dev.signet.")?.strip_suffix(".v1")?;
        Self::from_name(name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(k));
            assert_eq!(
                EventKind::from_cloudevent_type(&k.cloudevent_type()),
                Some(k)
            );
        }
        assert_eq!(
            EventKind::SignaturePublished.cloudevent_type(),
            "dev.signet.signature.published.v1"
        );
        assert_eq!(
            EventKind::PolicyUpdated.nats_subject(),
            "signet.events.policy.updated"
        );
    }
}
