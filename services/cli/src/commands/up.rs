//! `signet up`: every service in one process on embedded defaults — SQLite store and
//! durable queue in the data dir, in-process event bus, local development KMS, and the
//! admission webhook (HTTPS, self-signed unless configured). For a
//! laptop, a demo or a CI job; production runs the services apart (see docs/operate.md).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use signet_gateway::webhooks::Receivers;
use signet_gateway::AppState;
use signet_kms::{ControlPlaneKey, Kms, KmsConfig};
use signet_registry::{RegistryClient, RegistryConfig};
use signet_runtime::Settings;
use signet_signer::sign::SignContext;
use signet_signer::{Signer, SignerOptions};
use signet_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Context, SERVER_FILE};

/// The control plane's key under `signet up` when `control_plane.signing_key` is unset.
const CONTROL_PLANE_KEY: &str = "local://signet-control-plane";

/// The file in the data dir where `signet up` records its verifier's HTTPS URL.
pub const VERIFIER_FILE: &str = "verifier-url";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Gateway listen address (overrides gateway.listen).
    #[arg(long)]
    listen: Option<String>,
}

pub async fn run(ctx: &Context, args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut settings = ctx.settings.clone();
    if let Some(listen) = args.listen {
        settings.gateway.listen = listen;
    }
    let (log, _spans) = signet_runtime::logging::init_with_tracing(
        settings.log.format,
        &settings.log.level,
        "signet",
        &settings.telemetry,
    )?;
    let shutdown = signet_runtime::shutdown_on_signals();
    up(settings, Some(log), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The file in the data dir where `signet up` records its admin port's URL.
pub const ADMIN_FILE: &str = "admin-url";

/// Runs gateway, signer and verifier until `shutdown`, then drains them. The one admin
/// port of the process (`gateway.admin_listen`) serves `/metrics` for all three.
pub async fn up(
    settings: Settings,
    log: Option<signet_runtime::LogHandle>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir)?;
    let store = Store::connect(&settings.store_url())
        .await
        .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
    let bus = signet_bus::connect_with(
        &settings.bus,
        &store,
        signet_bus::BusOptions::from_settings(&settings),
    )
    .await?;
    // Secrets are read now: a receiver that cannot authenticate must stop the start.
    let webhooks = Arc::new(Receivers::from_settings(&settings.webhooks)?);
    // A laptop: local development keys and any KMS endpoint (LocalStack, moto) are fine.
    let mut kms_config = KmsConfig::from_settings(&settings);
    kms_config.allow_local = true;
    kms_config.allowed_endpoints = None;
    let kms = Arc::new(Kms::new(kms_config));
    // The control plane's own key seals trust bundles and events; the verifier below
    // pins it. On a laptop it is a local development key like the witnesses'.
    let control_uri = settings
        .control_plane
        .signing_key
        .clone()
        .unwrap_or_else(|| CONTROL_PLANE_KEY.to_owned());
    let control_key = Arc::new(
        ControlPlaneKey::open(&kms, &control_uri)
            .await
            .with_context(|| {
                format!("cannot open the control plane's signing key {control_uri}")
            })?,
    );
    // `signet up` runs on a laptop next to a registry on loopback: loopback is allowed on
    // top of registry.allowed_hosts. The service binaries never allow it by default.
    let registry = RegistryClient::new(RegistryConfig::from_settings(&settings)?.allow_loopback())?;
    let token_path = settings.admin_token_path();
    if let Some(issued) = signet_gateway::auth::bootstrap_admin(&store, &token_path).await? {
        tracing::info!(path = %token_path.display(), token = %issued.name, "first run: admin token written (mode 0600); the CLI reads it from there");
    }

    let listener = tokio::net::TcpListener::bind(&settings.gateway.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.gateway.listen))?;
    // HTTPS when gateway.tls_cert and tls_key are set (a certificate for 127.0.0.1 or
    // localhost; the CLI then needs --ca-cert), else plain HTTP on loopback.
    let scheme = if settings.gateway.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}", listener.local_addr()?);
    std::fs::write(settings.data_dir.join(SERVER_FILE), format!("{url}\n"))?;

    let verifier = start_verifier(
        &settings,
        &store,
        &bus,
        &url,
        &control_key.public_key().to_pem(),
        shutdown.clone(),
    )
    .await?;
    // On a laptop the admin port is a convenience, and its default (9090) is often
    // taken (Prometheus): run without it rather than not at all. The service binaries,
    // whose probes need it, refuse to start instead.
    let admin_file = settings.data_dir.join(ADMIN_FILE);
    let admin = match signet_runtime::admin::spawn(
        "gateway.admin_listen",
        &settings.gateway.admin_listen,
        signet_bus::readiness(store.clone(), bus.clone()),
        log,
        settings.admin_port_token()?,
        &settings.http,
        shutdown.clone(),
    )
    .await
    {
        Ok((addr, task)) => {
            std::fs::write(&admin_file, format!("http://{addr}\n"))?;
            Some(task)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&admin_file);
            tracing::warn!(error = %e, "running without the admin port (/metrics, /readyz); set gateway.admin_listen (SIGNET_GATEWAY__ADMIN_LISTEN) to a free address to have it");
            None
        }
    };

    let kick = Arc::new(Notify::new());
    let relay = tokio::spawn(signet_bus::outbox::run(
        store.clone(),
        bus.events.clone(),
        control_key.clone(),
        kick.clone(),
        shutdown.clone(),
    ));
    let signer = Arc::new(Signer::new(
        SignContext::new(
            store.clone(),
            kms.clone(),
            registry.clone(),
            settings.signer.kms_rate_per_witness,
        ),
        bus.clone(),
        SignerOptions::from_settings(&settings.signer),
        kick.clone(),
    ));
    let signer_task = tokio::spawn(signer.run(shutdown.clone()));
    let state = AppState {
        store: store.clone(),
        bus,
        kms,
        registry,
        settings: Arc::new(settings.gateway.clone()),
        outbox_kick: kick,
        webhooks,
        control_key,
        waiters: Arc::default(),
        live: Arc::default(),
    };
    tracing::info!(%url, console = %format!("{url}/console/"), data_dir = %settings.data_dir.display(), "signet is up (embedded mode; the local KMS is for development only); open the console and sign in with the admin token");
    let tls = signet_gateway::tls_acceptor(&settings.gateway, &shutdown)?;
    signet_gateway::serve(
        listener,
        state,
        settings.http.clone(),
        tls,
        shutdown.clone(),
    )
    .await?;
    signer_task.await??;
    relay.await?;
    verifier.wait().await?;
    if let Some(admin) = admin {
        admin.await??;
    }
    store.close().await;
    tracing::info!("signet stopped");
    Ok(())
}

/// Whether the verifier token kept in the data dir is still good for this verifier: it
/// exists, is not revoked or expired, and is bound to `verifier.cluster` (tokens from
/// before tokens carried a cluster, or a changed cluster name, get a new one).
async fn kept_token_fits(store: &Store, file: &std::path::Path, settings: &Settings) -> bool {
    let Some(id) = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| signet_gateway::auth::token_id(&t))
    else {
        return false;
    };
    match store.get_token(id).await {
        Ok(Some((t, _))) => {
            !t.revoked
                && !t.expired(chrono::Utc::now())
                && t.cluster.as_deref() == Some(settings.verifier.cluster.as_str())
        }
        _ => false,
    }
}

/// The admission webhook for cluster `verifier.cluster`, fed by this process's bus and
/// gateway. It gets a verifier token (kept in the data dir) and, unless configured, a
/// self-signed certificate.
async fn start_verifier(
    settings: &Settings,
    store: &Store,
    bus: &signet_bus::Bus,
    gateway_url: &str,
    control_plane_pem: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<signet_verifier::Running> {
    let token_file = settings.data_dir.join("verifier.token");
    if settings.verifier.token_file.is_none()
        && !kept_token_fits(store, &token_file, settings).await
    {
        let name = format!("verifier-up-{}", chrono::Utc::now().timestamp_millis());
        // Bound to this verifier's cluster: it reads and reports for no other.
        let issued = signet_gateway::auth::issue_scoped(
            store,
            &name,
            signet_core::Role::Verifier,
            Some(&settings.verifier.cluster),
            None,
            &[],
            "system",
        )
        .await?;
        let line = zeroize::Zeroizing::new(format!(
            "{}\n",
            secrecy::ExposeSecret::expose_secret(&issued.secret)
        ));
        signet_gateway::auth::write_private(&token_file, line.as_bytes())
            .with_context(|| format!("cannot write {}", token_file.display()))?;
    }
    let config = signet_verifier::VerifierConfig::for_signet_up(
        settings,
        gateway_url,
        &token_file,
        control_plane_pem,
    )?;
    // Loopback allowed, as for the gateway and signer above.
    let mut registry = RegistryConfig::from_settings(settings)?.allow_loopback();
    registry.timeout = registry.timeout.min(config.decision_budget);
    let running = signet_verifier::start(
        config,
        bus.events.clone(),
        RegistryClient::new(registry)?,
        shutdown,
    )
    .await?;
    std::fs::write(
        settings.data_dir.join(VERIFIER_FILE),
        format!("https://{}\n", running.addr()),
    )?;
    Ok(running)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))
}
