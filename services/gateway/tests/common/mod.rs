//! What the gateway's integration tests share: a token per role, and a gateway served
//! on a free loopback port.

#![allow(dead_code)] // each test binary uses a different part of this module

use signet_core::Role;
use signet_gateway::{auth, AppState};
use signet_store::Store;
use tokio_util::sync::CancellationToken;

/// One API token per role.
pub struct Tokens {
    pub admin: String,
    pub signer: String,
    pub verifier: String,
}

/// Issues `root` (admin), `ci` (signer) and `c1` (verifier).
pub async fn tokens(store: &Store) -> Tokens {
    let issue = |name: &'static str, role: Role| async move {
        let cluster = (role == Role::Verifier).then_some("c1");
        let issued = auth::issue_scoped(store, name, role, cluster, None, &[], "test")
            .await
            .expect("token");
        secrecy::ExposeSecret::expose_secret(&issued.secret).to_owned()
    };
    Tokens {
        admin: issue("root", Role::Admin).await,
        signer: issue("ci", Role::Signer).await,
        verifier: issue("c1", Role::Verifier).await,
    }
}

/// A SQLite store in `dir`.
pub async fn sqlite(dir: &std::path::Path) -> Store {
    Store::connect(&format!("sqlite://{}", dir.join("signet.db").display()))
        .await
        .expect("store")
}

/// A gateway's state on `store` and `bus`: the local KMS and the control plane's key in
/// `dir`, default settings, no webhook receivers. Tests change what they need with
/// struct update syntax.
pub async fn state(dir: &std::path::Path, store: &Store, bus: signet_bus::Bus) -> AppState {
    let kms = std::sync::Arc::new(signet_kms::Kms::new(signet_kms::KmsConfig::new(dir)));
    AppState {
        store: store.clone(),
        bus,
        control_key: signet_testkit::control_plane_key(&kms).await,
        kms,
        registry: signet_registry::RegistryClient::new(
            signet_registry::RegistryConfig::for_loopback(),
        )
        .expect("registry client"),
        settings: std::sync::Arc::new(signet_runtime::settings::GatewaySettings::default()),
        outbox_kick: std::sync::Arc::new(tokio::sync::Notify::new()),
        webhooks: std::sync::Arc::default(),
        waiters: std::sync::Arc::default(),
        live: std::sync::Arc::default(),
    }
}

/// Serves `state` on a free loopback port until `shutdown`; returns its URL.
pub async fn serve(state: AppState, shutdown: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(signet_gateway::serve(
        listener,
        state,
        signet_runtime::settings::HttpLimits::default(),
        None,
        shutdown,
    ));
    url
}
