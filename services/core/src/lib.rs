//! signet's domain: what an image reference, a digest, a witness, a sign request, a job
//! and a signature record are, how a cosign simple-signing payload is built and strictly
//! parsed, and how a signature is checked against a public key. No I/O happens here.
//!
//! Layout:
//! - [`reference`]: docker-compatible image reference parsing and normalisation.
//! - [`digest`]: validated `sha256:` digests and attachment-tag detection.
//! - [`payload`]: the cosign simple-signing payload, built and parsed strictly.
//! - [`crypto`]: RSA public keys, fingerprints and signature verification.
//! - [`events`]: the event types signet emits and where they are published.
//! - [`policy`]: security policies, signing rules and the trust bundle verifiers enforce.
//! - [`seal`]: the control plane's detached signature over bundles and events, and the
//!   pinned keys verifiers check it with.
//! - [`labels`]: label selectors over namespaces, as Kubernetes writes and matches them.
//! - [`manifest`]: the documents of policy as code (`signet apply`).
//! - [`pattern`]: image patterns (policy exemptions), matched part by part.
//! - [`admission`]: what a verifier decided about a workload, as it reports it.
//! - [`attestation`]: in-toto Statements signed as DSSE envelopes (`cosign attest`).
//! - [`bundle`]: Sigstore bundles v0.3, as cosign 3 attaches signatures and attestations.
//! - [`notation`]: Notary Project (Notation) signatures, JWS and COSE envelopes, checked against a pinned witness key.
//! - [`model`]: witnesses, jobs, signature records, roles, audit entries.

pub mod admission;
pub mod attestation;
pub mod bundle;
pub mod crypto;
pub mod digest;
pub mod events;
pub mod inventory;
pub mod labels;
pub mod manifest;
pub mod model;
pub mod notation;
pub mod pattern;
pub mod payload;
pub mod policy;
pub mod reference;
pub mod seal;

pub use admission::{AdmissionDecision, AdmissionOutcome, DenialReason, ImageVerdict};
pub use crypto::{CryptoError, PublicKey, SignatureAlgorithm};
pub use digest::{Digest, DigestError};
pub use events::EventKind;
pub use inventory::{InventoryReport, InventorySync, RunningContainer, Standing, StandingChange};
pub use labels::LabelSelector;
pub use model::*;
pub use pattern::ImagePattern;
pub use payload::{CoverageError, PayloadError, ReferenceRule, SimpleSigning};
pub use policy::{
    AttestationRequirement, Condition, PolicyAction, PolicyMode, PolicyUpdate, RevokedSignature,
    SecurityPolicy, SigningRule, TrustBundle, TrustedKey,
};
pub use reference::{ImageRef, ReferenceError};
pub use seal::{PinnedKeys, Seal, SealError, SEAL_HEADER};
