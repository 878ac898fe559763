//! signet's OCI registry client: resolve tags to digests, read manifests (and tell image
//! indexes apart), and publish and fetch cosign signature artifacts
//! (`<repo>:sha256-<hex>.sig`) the way cosign, policy-controller, Kyverno and
//! containers/image expect them, and OCI 1.1 referrers (Sigstore bundles) as cosign 3
//! writes and reads them. The signer publishes with it, the verifier fetches with it
//! on a trust-cache miss, and the CLI uses both.
//!
//! Plain HTTP is used for loopback hosts and configured insecure registries, HTTPS
//! otherwise. Credentials come from signet's config or a docker `config.json`, and go only
//! to the registry's own host or its token service on that host; registries that need none
//! are read with one request per manifest or blob. Non-public destinations (loopback,
//! link-local, private networks) are refused unless allowed, checked on the address
//! connected to; redirects stay on the registry's host or its listed blob storage; and a
//! registry's answer bodies never reach an error message.
//!
//! Layout:
//! - [`client`]: [`RegistryClient`] and the wire operations.
//! - [`config`]: [`RegistryConfig`], credentials, which hosts speak plain HTTP.
//! - [`cosign`]: the signature artifact format, built and parsed without I/O.
//! - [`manifest`]: manifests as stored, media types, index platform entries.
//! - [`referrers`]: OCI 1.1 referrers (the API and the referrers tag schema): Sigstore
//!   bundles and other artifacts attached to an image by their `subject`.
//! - [`error`]: [`RegistryError`] and which failures are retryable.
//! - [`policy`]: which destinations and redirects are allowed (resolver and redirect policy).
//! - `transport`: one registry host on the wire: probe, authentication, token cache.
//! - `locks`: per-artifact async locks that keep in-process publishers from racing.

pub mod client;
pub mod config;
pub mod cosign;
pub mod error;
mod locks;
pub mod manifest;
pub mod policy;
pub mod referrers;
mod settings;
mod transport;

pub use client::RegistryClient;
pub use config::{Credential, RegistryConfig, RegistryCredential};
pub use cosign::{
    AttestationLayer, PublishOutcome, Published, SignatureLayer, SignatureLimits, Signatures,
    DSSE_MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION, SIGNATURE_ANNOTATION, SIMPLESIGNING_MEDIA_TYPE,
};
pub use error::RegistryError;
pub use manifest::Manifest;
pub use referrers::{
    Descriptor, FetchedReferrer, PublishedReferrer, ReferrerKind, ReferrerLimits, Referrers,
    OCI_EMPTY_MEDIA_TYPE,
};
