//! Attack: an image names a registry host the operator never configured, on a machine
//! whose docker config has a `credsStore` helper. The helper must not be run for that
//! host (it would hand the attacker's registry whatever the store holds for that name);
//! it still runs for hosts the docker config has an entry for.
//!
//! Its own test binary: it puts a fake helper first on `PATH`, which is process-wide.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::{respond, Server};
use signet_core::ImageRef;
use signet_registry::{RegistryClient, RegistryConfig};

#[tokio::test]
async fn creds_store_helpers_run_only_for_hosts_the_docker_config_lists() {
    let challenge = || {
        Arc::new(|_: &_, _: &_, _: &_| {
            respond(
                401,
                &[("www-authenticate", r#"Basic realm="r""#.into())],
                "",
            )
        }) as common::Answer
    };
    let configured = Server::start(challenge()).await;
    let attacker = Server::start(challenge()).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let calls = dir.path().join("helper-calls");
    let helper = dir.path().join("docker-credential-spy");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\necho \"$host\" >> {}\necho '{{\"Username\":\"u\",\"Secret\":\"store-secret\"}}'\n",
            calls.display()
        ),
    )
    .expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", dir.path().display()));
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"credsStore": "spy", "auths": {configured.host(): {}}}).to_string(),
    )
    .expect("write docker config");
    let client = RegistryClient::new(RegistryConfig {
        docker_config: Some(config),
        ..RegistryConfig::for_loopback()
    })
    .expect("client");

    for host in [configured.host(), attacker.host()] {
        let image = ImageRef::parse(&format!("{host}/team/app:v1")).expect("ref");
        let _ = client.resolve(&image).await;
    }
    let ran_for = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        ran_for.contains(&configured.host()),
        "the helper runs for the configured host: {ran_for:?}"
    );
    assert!(
        !ran_for.contains(&attacker.host()),
        "the helper ran for the attacker's host: {ran_for:?}"
    );
    assert!(
        attacker.seen().iter().all(|s| s.authorization.is_none()),
        "{:?}",
        attacker.seen()
    );
}
