//! HTTPS for the webhook. The reloading certificate, the server config and self-signed
//! certificates for `signet up` are [`signet_runtime::tls`]'s (the gateway serves HTTPS
//! the same way); what is the verifier's own is who may send AdmissionReviews: client
//! certificates checked against `verifier.client_ca` (see [`ClientAuth`]).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

pub use signet_runtime::tls::{
    ensure_self_signed, provider, write_self_signed, ReloadingCert, TlsError,
};

use crate::config::ClientAuth;
use crate::error::VerifierError;

impl From<TlsError> for VerifierError {
    fn from(e: TlsError) -> Self {
        VerifierError::Tls {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// A server config that asks `cert` for the certificate on every handshake and checks
/// client certificates as `client_auth` says.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
    client_auth: &ClientAuth,
) -> Result<ServerConfig, VerifierError> {
    let clients = match client_auth.ca() {
        None => None,
        Some(ca) => Some(client_verifier(ca, client_auth, provider.clone())?),
    };
    Ok(signet_runtime::tls::server_config(cert, provider, clients)?)
}

fn client_verifier(
    ca: &std::path::Path,
    client_auth: &ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, VerifierError> {
    let roots = Arc::new(signet_runtime::tls::read_ca(ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
    // With `optional`, a client may present no certificate; one it presents must
    // still chain to the CA, or the handshake fails.
    let verifier = if matches!(client_auth, ClientAuth::Optional { .. }) {
        verifier.allow_unauthenticated()
    } else {
        verifier
    };
    verifier.build().map_err(|e| VerifierError::Tls {
        path: ca.display().to_string(),
        reason: format!("cannot verify client certificates with this CA: {e}"),
    })
}
