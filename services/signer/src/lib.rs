//! signet's signer: a bounded worker pool that consumes sign jobs from the bus, has the
//! witness's KMS key sign each new image digest, publishes the cosign signature artifact
//! to the registry, records it (with its audit entry and `signature.published` event in
//! one transaction) and only then acknowledges the job.
//!
//! Delivery is at least once; the effect is exactly once. The same repository, digest
//! and witness is never signed twice: a recorded signature short-circuits the job, a
//! store claim keeps two replicas from signing at once, and a signature found in the
//! registry but not yet recorded (a crash between publish and record) is adopted
//! instead of signed again.
//!
//! Layout:
//! - [`pool`]: consuming, concurrency, retries, dead letters, and jobs for the platform
//!   manifests of an image index.
//! - [`sign`]: signing one job, and the error classification that drives retries.
//! - [`backoff`]: exponential backoff with full jitter.

pub mod backoff;
pub mod pool;
pub mod sign;

pub use pool::{Signer, SignerOptions};
pub use sign::{SignError, SignErrorKind};
