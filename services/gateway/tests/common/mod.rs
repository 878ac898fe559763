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
        auth::issue(store, name, role, "test")
            .await
            .expect("token")
            .secret
    };
    Tokens {
        admin: issue("root", Role::Admin).await,
        signer: issue("ci", Role::Signer).await,
        verifier: issue("c1", Role::Verifier).await,
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
        shutdown,
    ));
    url
}
