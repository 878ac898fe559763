//! signet's cluster-side verifier: the Kubernetes admission webhook that lets only images
//! with valid signatures from a policy's witnesses start in a protected namespace.
//!
//! Unlike verifiers that pull signatures from the registry on every admission, this one
//! is fed by events: each `signature.published` event carries the payload and signature,
//! verified here on arrival, so a freshly signed image is trusted before its Pod
//! arrives. A miss falls back to the registry's `.sig` artifact. The cluster's policies
//! and witness keys come from the control plane's trust bundle, kept current by events
//! and re-synced on reconnect, on a revision gap and periodically; with the control
//! plane down the verifier keeps deciding from its cache and last bundle.
//!
//! Layout:
//! - [`config`]: [`VerifierConfig`], from the settings file's `verifier` section.
//! - [`admission`]: deciding an AdmissionReview (modes, break-glass, updates, reports).
//! - [`workload`]: where each workload kind keeps its images.
//! - [`trust`]: the compiled trust snapshot and the trust cache.
//! - [`sync`]: events and trust bundle re-syncs.
//! - [`report`]: admission decisions, batched to the control plane.
//! - [`break_glass`]: break-glass decisions, kept on disk and sent until acknowledged.
//! - [`control`]: the control plane client.
//! - [`server`]: the HTTP routes; [`tls`]: HTTPS with certificate reload.
//! - [`error`]: what stops the verifier ([`VerifierError`]) or its control plane calls.

pub mod admission;
pub mod attest;
pub mod break_glass;
pub mod config;
pub mod control;
pub mod error;
pub mod inventory;
pub mod kube_events;
pub mod namespaces;
pub mod report;
pub mod server;
pub mod sync;
pub mod tls;
pub mod trust;
mod verdicts;
pub mod workload;

#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use signet_bus::EventBus;
use signet_registry::RegistryClient;
use signet_runtime::serve::Listener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use config::{CacheConfig, ClientAuth, RateLimits, TlsFiles, VerifierConfig};
pub use error::{ControlPlaneError, VerifierError};

use crate::admission::Admission;
use crate::control::ControlPlane;
use crate::sync::Resync;
use crate::trust::Trust;

/// A verifier that is serving.
pub struct Running {
    addr: SocketAddr,
    trust: Arc<Trust>,
    task: JoinHandle<Result<(), VerifierError>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Where the HTTPS listener is bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The trust snapshot and cache, for inspection.
    pub fn trust(&self) -> &Arc<Trust> {
        &self.trust
    }

    /// Waits until the verifier has stopped (after `shutdown`) and drained.
    pub async fn wait(self) -> Result<(), VerifierError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(VerifierError::Serve(std::io::Error::other(e))),
        }
    }
}

/// Starts the verifier: binds the HTTPS listener, loads the certificate, and starts
/// following events and the control plane. Returns once it is listening; admissions
/// are decided as soon as a trust bundle arrives (or was kept from a previous run).
pub async fn start(
    config: VerifierConfig,
    events: Arc<dyn EventBus>,
    registry: RegistryClient,
    shutdown: CancellationToken,
) -> Result<Running, VerifierError> {
    let trust = Arc::new(Trust::new(&config.cluster, registry, config.cache));
    let kept = config
        .state_dir
        .as_ref()
        .map(|d| sync::bundle_file(d, &config.cluster));
    if config.control_plane_keys.is_empty() {
        return Err(VerifierError::Config(
            "no control plane key is pinned (verifier.control_plane_keys): nothing could be trusted"
                .into(),
        ));
    }
    let mut chained = 0;
    if let Some((bundle, deltas)) = kept
        .as_deref()
        .and_then(|p| sync::load_kept(p, &config.cluster, &config.control_plane_keys))
    {
        tracing::info!(
            revision = bundle.revision,
            deltas,
            "deciding from the kept trust bundle until the control plane answers"
        );
        trust.install(bundle);
        chained = deltas;
    }
    let control = ControlPlane::new(
        &config.gateway,
        &config.cluster,
        config.token.clone(),
        config.control_plane_keys.clone(),
        config.gateway_ca.as_deref(),
    )
    .map_err(|e| VerifierError::Config(e.to_string()))?;
    tracing::info!(
        pinned = ?config.control_plane_keys.fingerprints().collect::<Vec<_>>(),
        "trust bundles and events are believed only when sealed by these control plane keys"
    );

    let provider = tls::provider();
    let cert = Arc::new(tls::ReloadingCert::load(
        config.tls.clone(),
        provider.clone(),
    )?);
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(
        cert.clone(),
        provider,
        &config.client_auth,
    )?));
    let break_glass = break_glass::Journal::open(config.state_dir.as_deref())
        .map_err(|e| VerifierError::Config(e.to_string()))?;
    if config.state_dir.is_none() {
        tracing::warn!("verifier.state_dir is not set: break-glass decisions wait for the control plane in memory only, and a restart loses the unsent ones");
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| VerifierError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| VerifierError::Listen {
            addr: config.listen.clone(),
            source,
        })?;

    let (reporter, report_task) = report::start(
        control.clone(),
        config.report_interval,
        config.report_batch,
        shutdown.clone(),
    );
    let kube_events = kube_events::KubeEvents::default();
    let namespaces = namespaces::Namespaces::default();
    let admission = Admission::new(
        trust.clone(),
        reporter,
        break_glass.clone(),
        &config.cluster,
        config.decision_budget,
    )
    .with_kube_events(kube_events.clone())
    .with_namespaces(namespaces.clone());
    let resync = Resync::default();
    let control_for_inventory = control.clone();
    let mut background = vec![
        tokio::spawn(cert.watch(config.tls_reload_interval, shutdown.clone())),
        tokio::spawn(break_glass::send(
            break_glass,
            control.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(sync::resync_loop(
            trust.clone(),
            control.clone(),
            resync.clone(),
            config.resync_interval,
            kept,
            chained,
            shutdown.clone(),
        )),
        tokio::spawn(sync::event_loop(
            trust.clone(),
            events,
            config.control_plane_keys.clone(),
            resync,
            shutdown.clone(),
        )),
    ];
    if config.inventory.enabled {
        background.push(tokio::spawn(inventory::run(
            config.inventory.clone(),
            config.cluster.clone(),
            trust.clone(),
            control_for_inventory,
            kube_events,
            namespaces,
            shutdown.clone(),
        )));
    }

    let app = server::router(
        admission,
        trust.clone(),
        &config.client_auth,
        config.rate_limits,
    );
    let listener = Listener {
        name: "verifier",
        tcp: listener,
        tls: Some(acceptor),
        limits: config.http.clone(),
    };
    if config.client_auth == ClientAuth::Off {
        tracing::warn!("verifier.client_auth is off: anyone who reaches the port can send reviews, and they are reported as decisions");
    }
    tracing::info!(%addr, cluster = %config.cluster, gateway = %config.gateway, client_auth = ?config.client_auth, "verifier listening (HTTPS: /validate, /mutate)");
    let task = tokio::spawn(async move {
        let served = signet_runtime::serve::serve(listener, app, shutdown).await;
        for t in background {
            let _ = t.await;
        }
        let _ = report_task.await;
        served.map_err(VerifierError::Serve)
    });
    Ok(Running { addr, trust, task })
}

/// [`start`], then serve until `shutdown` and drain.
pub async fn run(
    config: VerifierConfig,
    events: Arc<dyn EventBus>,
    registry: RegistryClient,
    shutdown: CancellationToken,
) -> Result<(), VerifierError> {
    start(config, events, registry, shutdown)
        .await?
        .wait()
        .await
}
