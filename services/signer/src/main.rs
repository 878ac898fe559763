//! `signet-signer`: the worker pool as its own process (production mode).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use signet_kms::{ControlPlaneKey, Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::Settings;
use signet_signer::sign::SignContext;
use signet_signer::{Signer, SignerOptions};
use signet_store::Store;
use tokio::sync::Notify;

#[derive(Parser)]
#[command(
    name = "signet-signer",
    version,
    about = "signet's signing worker pool"
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
        "signet-signer",
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
    let (_, admin) = signet_runtime::admin::spawn(
        "signer.admin_listen",
        &settings.signer.admin_listen,
        signet_bus::readiness(store.clone(), bus.clone()),
        Some(log),
        settings.admin_port_token()?,
        &settings.http,
        shutdown.clone(),
    )
    .await?;
    let kms = Arc::new(Kms::new(KmsConfig::from_settings(&settings)));
    let registry = RegistryClient::new(RegistryConfig::from_settings(&settings)?)?;
    let control_key = Arc::new(
        ControlPlaneKey::from_settings(&kms, &settings)
            .await
            .context(
                "cannot open the control plane's signing key (the signer relays events too)",
            )?,
    );
    let kick = Arc::new(Notify::new());
    let relay = tokio::spawn(signet_bus::outbox::run(
        store.clone(),
        bus.events.clone(),
        control_key,
        kick.clone(),
        shutdown.clone(),
    ));
    let signer = Arc::new(Signer::new(
        SignContext::new(
            store.clone(),
            kms,
            registry,
            settings.signer.kms_rate_per_witness,
        ),
        bus,
        SignerOptions::from_settings(&settings.signer),
        kick,
    ));
    signer.run(shutdown).await?;
    relay.await?;
    admin.await??;
    store.close().await;
    Ok(())
}
