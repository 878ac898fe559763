//! `signet-verifier`: the admission webhook as its own process, one or more replicas per
//! cluster. Events come from RabbitMQ or NATS; the embedded bus lives inside `signet up`,
//! which runs its own verifier.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use signet_bus::BusOptions;
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::Settings;
use signet_store::Store;
use signet_verifier::VerifierConfig;

#[derive(Parser)]
#[command(
    name = "signet-verifier",
    version,
    about = "signet's admission webhook: only signed images start in protected namespaces"
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
        "signet-verifier",
        &settings.telemetry,
    )?;
    let shutdown = signet_runtime::shutdown_on_signals();
    let config = VerifierConfig::from_settings(&settings)?;
    if settings.bus == "embedded" {
        anyhow::bail!(
            "bus: the embedded bus serves one process; a separate verifier needs nats://… or amqp://… (or run `signet up`, which includes a verifier)"
        );
    }
    // The bus keeps its embedded queue in a store; the broker backends never touch it, so
    // a throwaway in-memory one satisfies the signature without a database.
    let scratch = Store::connect("sqlite::memory:")
        .await
        .context("opening the in-memory scratch store")?;
    let bus = signet_bus::connect_with(
        &settings.bus,
        &scratch,
        BusOptions::from_settings(&settings),
    )
    .await
    .context("connecting to the event bus")?;
    let mut registry = RegistryConfig::from_settings(&settings)?;
    // No single registry call may outlive an admission.
    registry.timeout = registry.timeout.min(config.decision_budget);
    let registry = RegistryClient::new(registry)?;
    let running =
        signet_verifier::start(config, Arc::clone(&bus.events), registry, shutdown.clone()).await?;
    let (_, admin) = signet_runtime::admin::spawn(
        "verifier.admin_listen",
        &settings.verifier.admin_listen,
        signet_verifier::server::readiness(running.trust().clone()),
        Some(log),
        settings.admin_port_token()?,
        &settings.http,
        shutdown,
    )
    .await?;
    running.wait().await?;
    admin.await??;
    Ok(())
}
