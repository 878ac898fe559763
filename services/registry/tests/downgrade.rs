//! Attack: a registry served over https redirects to plain HTTP, so that the next request
//! (and whatever it carries) crosses the network in clear text, or reaches an internal
//! service that only speaks HTTP. signet never follows a redirect from https to http,
//! even to a host `registry.redirect_hosts` lists.
//!
//! Its own test binary: it trusts a throwaway certificate through `SSL_CERT_FILE`, which
//! is process-wide. The registry is reached at this machine's non-loopback address, since
//! loopback registries are always plain HTTP.

mod common;

use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use common::{respond, Server};
use signet_core::ImageRef;
use signet_registry::{RegistryClient, RegistryConfig, RegistryError};

/// This machine's address on its default route (no packet is sent).
fn local_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    socket
        .connect("198.51.100.1:9")
        .expect("this test needs a non-loopback network interface with a default route");
    socket.local_addr().expect("local address").ip()
}

#[tokio::test]
async fn an_https_registry_cannot_redirect_to_plain_http() {
    let ip = local_address();
    // The plain-HTTP service the redirect points at, on the same address.
    let internal = Server::start_on(ip, Arc::new(|_, _, _| respond(200, &[], "internal"))).await;
    let internal_port = internal.addr.port();

    let cert = rcgen::generate_simple_self_signed(vec![ip.to_string()]).expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).expect("write certificate");
    std::env::set_var("SSL_CERT_FILE", &ca);

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    let target = format!("http://{ip}:{internal_port}/latest/meta-data/");
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let target = target.clone();
        async move {
            if uri.path() == "/v2/" {
                respond(200, &[], "{}")
            } else {
                respond(302, &[("location", target)], "")
            }
        }
    });
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = axum_server::Handle::new();
    let server = tokio::spawn({
        let handle = handle.clone();
        async move {
            axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(tls)))
                .expect("tls listener")
                .handle(handle)
                .serve(app.into_make_service())
                .await
                .expect("serve");
        }
    });

    let docker = dir.path().join("config.json");
    std::fs::write(&docker, "{}").expect("write");
    let client = RegistryClient::new(RegistryConfig {
        allowed_hosts: vec![ip.to_string()],
        // Even a listed redirect host does not get a downgraded request.
        redirect_hosts: vec![format!("{ip}:{internal_port}")],
        docker_config: Some(docker),
        ..RegistryConfig::default()
    })
    .expect("client");
    let image = ImageRef::parse(&format!("{ip}:{port}/team/app:v1")).expect("ref");
    let err = client.resolve(&image).await.expect_err("downgrade refused");
    assert!(
        matches!(err, RegistryError::Refused { .. }) && !err.retryable(),
        "{err:?}"
    );
    assert!(err.to_string().contains("from https to http"), "{err}");
    assert!(
        internal.seen().is_empty(),
        "the plain-HTTP service was reached: {:?}",
        internal.seen()
    );
    handle.shutdown();
    server.abort();
}
