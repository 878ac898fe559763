//! Test helpers shared by signet's integration tests: a real `docker-registry` on a free
//! loopback port, fresh PostgreSQL databases, and small test images pushed over the wire.
//! A helper that cannot reach or start the service it needs fails with a message naming
//! that service; it never skips.
//!
//! Layout:
//! - [`registry`]: start and stop a real CNCF distribution registry (Debian `docker-registry`).
//! - [`referrers_registry`]: a registry with the OCI 1.1 referrers API (`olareg`, from
//!   `scripts/tools.sh`), for cosign 3 bundles, attestations and Notation signatures.
//! - [`emulators`]: moto (AWS KMS) and OpenBao (transit) on free loopback ports.
//! - [`image`]: build random OCI images and push them (directly, or with skopeo).
//! - [`signet`]: a real `signet up` process, driven over the wire and through the CLI.
//! - [`tools`]: the ecosystem's programs (cosign, cosign3, notation, kubectl,
//!   kube-apiserver, etcd, ...) that `scripts/tools.sh` builds at pinned versions.
//! - [`kube`]: a real Kubernetes control plane (etcd, kube-apiserver,
//!   kube-controller-manager) on loopback, with its PKI and `kubectl`.
//! - [`jaeger`]: a real trace backend (Jaeger v2) that signet exports OTLP to.
//! - [`postgres`]: create a throwaway PostgreSQL database on the local server.
//! - [`brokers`]: private nats-server and RabbitMQ nodes a test may stop and start.
//! - [`proxy`]: an HTTP proxy that injects faults (500s, throttling) in front of a service.
//! - [`control_plane_key`]: the key an in-process control plane seals bundles and events with.
//! - [`slow_client`]: slowloris clients, and the checks that a listener cuts them off.

pub mod brokers;
pub mod emulators;
pub mod image;
pub mod imds;
pub mod jaeger;
pub mod kube;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod referrers_registry;
pub mod registry;
pub mod signet;
pub mod tools;

/// The control plane's sealing key as `signet up` makes it: a local development key in
/// `kms`'s data dir (created on first use).
pub async fn control_plane_key(
    kms: &signet_kms::Kms,
) -> std::sync::Arc<signet_kms::ControlPlaneKey> {
    match signet_kms::ControlPlaneKey::open(kms, "local://signet-control-plane").await {
        Ok(k) => std::sync::Arc::new(k),
        Err(e) => panic!("the local control plane key: {e}"),
    }
}
pub mod slow_client;
