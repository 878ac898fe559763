//! What can stop the verifier, in words an operator can act on. Admission failures are
//! not errors: they are denials with a reason (see [`signet_core::DenialReason`]).

/// Why the verifier could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("verifier configuration is not usable: {0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS certificate or key in {path} is not usable: {reason}")]
    Tls { path: String, reason: String },
    #[error("cannot read or write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTPS server failed")]
    Serve(#[source] std::io::Error),
}

/// Why the control plane did not answer as hoped. Retried by the caller; the verifier
/// keeps deciding from its last bundle meanwhile.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("control plane at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("control plane refused the verifier token (HTTP {status}): {detail}; check verifier.token_file holds a token with the verifier role")]
    Refused { status: u16, detail: String },
    #[error("control plane answered HTTP {status}: {detail}")]
    Failed { status: u16, detail: String },
    #[error("control plane answered with something that is not the expected JSON: {0}")]
    Decode(String),
    #[error("trust bundle from {url} refused: {reason}")]
    Unsealed {
        url: String,
        #[source]
        reason: signet_core::SealError,
    },
}
