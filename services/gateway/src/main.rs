//! `signet-gateway`: the API and webhook receivers as their own process (production mode).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use signet_gateway::webhooks::Receivers;
use signet_gateway::AppState;
use signet_kms::{ControlPlaneKey, Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::Settings;
use signet_store::Store;
use tokio::sync::Notify;

#[derive(Parser)]
#[command(
    name = "signet-gateway",
    version,
    about = "signet's API gateway and webhook receivers"
)]
struct Args {
    /// Settings file (TOML); SIGNET_* environment variables override it.
    #[arg(long, env = "SIGNET_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings: Settings = signet_runtime::load(args.config.as_deref())?;
    let (log, _spans) = signet_runtime::logging::init_with_tracing(
        settings.log.format,
        &settings.log.level,
        "signet-gateway",
        &settings.telemetry,
    )?;
    let shutdown = signet_runtime::shutdown_on_signals();
    let store = Store::connect(&settings.store_url()).await?;
    let bus = signet_bus::connect_with(
        &settings.bus,
        &store,
        signet_bus::BusOptions::from_settings(&settings),
    )
    .await?;
    // Secrets are read now: a receiver that cannot authenticate must stop the start.
    let webhooks = Arc::new(Receivers::from_settings(&settings.webhooks)?);
    let kms = Arc::new(Kms::new(KmsConfig::from_settings(&settings)));
    let control_key = Arc::new(
        ControlPlaneKey::from_settings(&kms, &settings)
            .await
            .context("cannot open the control plane's signing key")?,
    );
    tracing::info!(
        key = control_key.uri(),
        fingerprint = control_key.fingerprint(),
        "trust bundles and events are sealed by the control plane's key"
    );
    let kick = Arc::new(Notify::new());
    let relay = tokio::spawn(signet_bus::outbox::run(
        store.clone(),
        bus.events.clone(),
        control_key.clone(),
        kick.clone(),
        shutdown.clone(),
    ));
    let (_, admin) = signet_runtime::admin::spawn(
        "gateway.admin_listen",
        &settings.gateway.admin_listen,
        signet_bus::readiness(store.clone(), bus.clone()),
        Some(log),
        settings.admin_port_token()?,
        &settings.http,
        shutdown.clone(),
    )
    .await?;
    let state = AppState {
        store: store.clone(),
        bus,
        kms,
        registry: RegistryClient::new(RegistryConfig::from_settings(&settings)?)?,
        settings: Arc::new(settings.gateway.clone()),
        outbox_kick: kick,
        webhooks,
        control_key,
        waiters: Arc::default(),
        live: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind(&settings.gateway.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.gateway.listen))?;
    let tls = signet_gateway::tls_acceptor(&settings.gateway, &shutdown)?;
    signet_gateway::serve(listener, state, settings.http.clone(), tls, shutdown).await?;
    relay.await?;
    admin.await??;
    store.close().await;
    Ok(())
}
