//! Attacks by whoever controls the registry an image reference names (a signer token
//! holder, a webhook payload, a pod author): the "registry" is a small HTTP server of
//! theirs, and an "internal host" on loopback stands in for a metadata endpoint or an
//! internal service. What must not happen: the internal host's answer reaching the error
//! message, signet following a redirect there or connecting there at all, and signet's
//! registry credentials going to a token service the attacker names.

mod common;

use std::sync::Arc;

use common::{respond, Seen, Server};
use signet_core::{Digest, ImageRef};
use signet_registry::{RegistryClient, RegistryConfig, RegistryCredential, RegistryError};

const SECRET: &str =
    "INTERNAL-SECRET aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// The internal host: answers anything with its secret.
async fn internal_host() -> Server {
    Server::start(Arc::new(|_, _, _| respond(418, &[], SECRET))).await
}

/// A client that ignores the machine's docker config. `loopback` lets it reach loopback
/// registries, as tests (and `signet up`) need; the attacks below still must fail.
fn client(mut config: RegistryConfig) -> (RegistryClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{}").expect("write");
    config.docker_config = Some(path);
    (RegistryClient::new(config).expect("client"), dir)
}

fn image(host: &str, rest: &str) -> ImageRef {
    ImageRef::parse(&format!("{host}/{rest}")).expect("image ref")
}

#[tokio::test]
async fn a_hostile_registrys_error_bodies_never_reach_the_error_message() {
    // A registry whose /v2/ is open and whose every other answer is an error page
    // carrying what an internal service would return: HTTP 418, 500, and a 400 with an
    // OCI envelope whose message (and a made-up code) carry the secret.
    for (status, body) in [
        (418, SECRET.to_owned()),
        (500, format!("<html><body>{SECRET}</body></html>")),
        (
            400,
            format!(
                r#"{{"errors":[{{"code":"MANIFEST_INVALID","message":"{SECRET}"}},{{"code":"{SECRET}"}}]}}"#
            ),
        ),
    ] {
        let registry = Server::start(Arc::new(move |_, uri, _| {
            if uri.path() == "/v2/" {
                respond(200, &[], "{}")
            } else {
                respond(
                    status,
                    &[("content-type", "text/plain".into())],
                    body.clone(),
                )
            }
        }))
        .await;
        let (c, _dir) = client(RegistryConfig::for_loopback());
        let repo = image(&registry.host(), "internal/x:latest");
        let errors = [
            c.resolve(&repo).await.expect_err("error answer"),
            c.manifest(&repo).await.expect_err("error answer"),
            c.fetch_signatures(&repo, &Digest::of(b"x"))
                .await
                .expect_err("error answer"),
        ];
        for err in &errors {
            let msg = err.to_string();
            assert!(!msg.contains("INTERNAL-SECRET"), "the answer leaked: {msg}");
            assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
        }
        if status == 400 {
            // A GET has a body to read the spec's error code from (a HEAD has none).
            let msg = errors[1].to_string();
            assert!(msg.contains("OCI error code MANIFEST_INVALID"), "{msg}");
        }
    }
    // The same when the registry challenges, so that every request is authenticated.
    let registry = Server::start(Arc::new(|_, uri, _| {
        if uri.path() == "/v2/" {
            respond(
                401,
                &[("www-authenticate", r#"Basic realm="x""#.into())],
                "",
            )
        } else {
            respond(418, &[], SECRET)
        }
    }))
    .await;
    let (c, _dir) = client(RegistryConfig {
        credentials: vec![RegistryCredential::basic(registry.host(), "u", "p")],
        ..RegistryConfig::for_loopback()
    });
    let err = c
        .resolve(&image(&registry.host(), "internal/x:latest"))
        .await
        .expect_err("418");
    assert!(!err.to_string().contains("INTERNAL-SECRET"), "{err}");
    assert!(err.to_string().contains("HTTP 418"), "{err}");
}

#[tokio::test]
async fn a_registry_redirecting_to_an_internal_host_reaches_nothing() {
    let internal = internal_host().await;
    let target = format!(
        "http://{}/latest/meta-data/iam/security-credentials/role",
        internal.host()
    );
    // Open and challenging registries both: every path but /v2/ redirects inside.
    for challenge in [false, true] {
        let target = target.clone();
        let registry = Server::start(Arc::new(move |_, uri, _| {
            if uri.path() == "/v2/" && challenge {
                respond(
                    401,
                    &[("www-authenticate", r#"Basic realm="x""#.into())],
                    "",
                )
            } else if uri.path() == "/v2/" {
                respond(200, &[], "{}")
            } else {
                respond(302, &[("location", target.clone())], "")
            }
        }))
        .await;
        let (c, _dir) = client(RegistryConfig {
            credentials: vec![RegistryCredential::basic(registry.host(), "u", "p")],
            ..RegistryConfig::for_loopback()
        });
        let repo = image(&registry.host(), "internal/x:latest");
        let err = c.resolve(&repo).await.expect_err("redirect refused");
        assert!(
            matches!(err, RegistryError::Refused { .. }) && !err.retryable(),
            "{err:?}"
        );
        assert!(err.to_string().contains("redirect"), "{err}");
        let err = c
            .fetch_signatures(&repo, &Digest::of(b"x"))
            .await
            .expect_err("redirect refused");
        assert!(matches!(err, RegistryError::Refused { .. }), "{err:?}");
    }
    assert!(
        internal.seen().is_empty(),
        "the internal host was reached: {:?}",
        internal.seen()
    );
}

#[tokio::test]
async fn redirects_go_only_to_listed_blob_storage() {
    // A registry that serves blobs from separate storage, as S3 or GCS-backed ones do: the
    // blob request redirects to another host. Followed only when that host is listed.
    let payload = b"signed payload".to_vec();
    let payload_digest = Digest::of(&payload);
    let body = payload.clone();
    let storage = Server::start(Arc::new(move |_, _, _| respond(200, &[], body.clone()))).await;
    let storage_host = storage.host();
    let sig_manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                   "digest": Digest::of(b"{}").as_str()},
        "layers": [{
            "mediaType": signet_registry::SIMPLESIGNING_MEDIA_TYPE,
            "digest": payload_digest.as_str(),
            "size": payload.len(),
            "annotations": {signet_registry::SIGNATURE_ANNOTATION: "c2ln"},
        }],
    })
    .to_string();
    let registry = Server::start(Arc::new(move |_, uri, _| {
        if uri.path() == "/v2/" {
            respond(200, &[], "{}")
        } else if uri.path().contains("/manifests/") {
            let ct = (
                "content-type",
                "application/vnd.oci.image.manifest.v1+json".to_owned(),
            );
            respond(200, &[ct], sig_manifest.clone())
        } else {
            let to = format!("http://{storage_host}/bucket{}", uri.path());
            respond(307, &[("location", to)], "")
        }
    }))
    .await;
    let repo = image(&registry.host(), "demo/app:v1");
    let signed = Digest::of(b"image");

    let (unlisted, _dir) = client(RegistryConfig::for_loopback());
    let err = unlisted
        .fetch_signatures(&repo, &signed)
        .await
        .expect_err("redirect to an unlisted host");
    assert!(matches!(err, RegistryError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("registry.redirect_hosts"), "{err}");
    assert!(storage.seen().is_empty(), "{:?}", storage.seen());

    let (listed, _dir) = client(RegistryConfig {
        redirect_hosts: vec![storage.host()],
        ..RegistryConfig::for_loopback()
    });
    let layers = listed
        .fetch_signatures(&repo, &signed)
        .await
        .expect("redirect to listed blob storage");
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].payload, payload);
    assert_eq!(storage.seen().len(), 1);
}

#[tokio::test]
async fn non_public_destinations_are_refused_unless_allowed() {
    // An image naming an internal host directly: by IP literal (no resolver involved) and
    // by a name that resolves to it (the resolver's check).
    let internal = internal_host().await;
    let port = internal.addr.port();
    // The service binaries' configuration with no settings at all.
    let defaults = RegistryConfig::from_settings(&signet_runtime::Settings::default())
        .expect("default settings");
    let (strict, _dir) = client(defaults);
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let repo = image(&host, "team/app:v1");
        let err = strict.resolve(&repo).await.expect_err("refused");
        assert!(
            matches!(err, RegistryError::Refused { .. }) && !err.retryable(),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("a loopback address") && msg.contains("registry.allowed_hosts"),
            "{msg}"
        );
        let err = strict
            .fetch_signatures(&repo, &Digest::of(b"x"))
            .await
            .expect_err("refused");
        assert!(matches!(err, RegistryError::Refused { .. }), "{err:?}");
    }
    assert!(
        internal.seen().is_empty(),
        "the internal host was reached: {:?}",
        internal.seen()
    );

    // Listed, the same host is reached.
    let (allowed, _dir) = client(RegistryConfig {
        allowed_hosts: vec!["127.0.0.0/8".into()],
        ..RegistryConfig::default()
    });
    let err = allowed
        .resolve(&image(&format!("127.0.0.1:{port}"), "team/app:v1"))
        .await
        .expect_err("418");
    assert!(
        matches!(err, RegistryError::Rejected { status: 418, .. }),
        "{err:?}"
    );
    assert!(!internal.seen().is_empty());
}

#[tokio::test]
async fn credentials_never_go_to_a_token_service_the_registry_names_elsewhere() {
    // The token service the attacker wants the credentials sent to, on another port.
    let collector = Server::start(Arc::new(|_, _, _| {
        respond(200, &[], r#"{"token":"attacker-token"}"#)
    }))
    .await;
    let realm = format!("http://{}/token", collector.host());
    let registry = Server::start(Arc::new(move |_, _, headers| {
        if headers.get("authorization").is_some() {
            respond(200, &[], "{}")
        } else {
            let challenge = format!(r#"Bearer realm="{realm}",service="registry""#);
            respond(401, &[("www-authenticate", challenge)], "")
        }
    }))
    .await;
    let (c, _dir) = client(RegistryConfig {
        credentials: vec![RegistryCredential::basic(
            registry.host(),
            "pusher",
            "push-secret",
        )],
        ..RegistryConfig::for_loopback()
    });
    let err = c
        .resolve(&image(&registry.host(), "team/app:v1"))
        .await
        .expect_err("untrusted token service");
    assert!(
        matches!(err, RegistryError::UntrustedTokenService { .. }) && !err.retryable(),
        "{err:?}"
    );
    assert!(err.to_string().contains("realm_hosts"), "{err}");
    let leaked: Vec<Seen> = collector
        .seen()
        .into_iter()
        .filter(|s| s.authorization.is_some())
        .collect();
    assert!(leaked.is_empty(), "credentials were sent to {leaked:?}");

    // Even listed for the credential, a token service on another host gets it only over
    // https, never in clear text.
    let (c, _dir) = client(RegistryConfig {
        credentials: vec![
            RegistryCredential::basic(registry.host(), "pusher", "push-secret")
                .with_realm_hosts(vec![collector.host()]),
        ],
        ..RegistryConfig::for_loopback()
    });
    let err = c
        .resolve(&image(&registry.host(), "team/app:v1"))
        .await
        .expect_err("plain-HTTP token service");
    assert!(err.to_string().contains("not reached over https"), "{err}");
    assert!(
        collector.seen().iter().all(|s| s.authorization.is_none()),
        "{:?}",
        collector.seen()
    );
}

#[tokio::test]
async fn the_token_flow_works_with_a_token_service_on_the_registrys_host() {
    // A registry with its token service on its own host: credentials go there, the token
    // it issues is what the registry accepts, and tokens are reused per scope.
    let image_digest = Digest::of(b"manifest");
    let digest_header = image_digest.as_str().to_owned();
    let registry = Server::start(Arc::new(move |_, uri, headers| {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if uri.path() == "/token" {
            // base64("pusher:push-secret")
            return if auth == Some("Basic cHVzaGVyOnB1c2gtc2VjcmV0") {
                respond(200, &[], r#"{"token":"good-token","expires_in":300}"#)
            } else {
                respond(401, &[], "")
            };
        }
        if auth == Some("Bearer good-token") && uri.path() != "/v2/" {
            return respond(200, &[("docker-content-digest", digest_header.clone())], "");
        }
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let challenge = format!(r#"Bearer realm="http://{host}/token",service="registry""#);
        respond(401, &[("www-authenticate", challenge)], "")
    }))
    .await;
    let (c, _dir) = client(RegistryConfig {
        credentials: vec![RegistryCredential::basic(
            registry.host(),
            "pusher",
            "push-secret",
        )],
        ..RegistryConfig::for_loopback()
    });
    let repo = image(&registry.host(), "team/app:v1");
    assert_eq!(c.resolve(&repo).await.expect("resolve"), image_digest);
    assert_eq!(c.resolve(&repo).await.expect("resolve"), image_digest);
    let token_requests = registry
        .seen()
        .iter()
        .filter(|s| s.path == "/token")
        .count();
    assert_eq!(token_requests, 1, "{:?}", registry.seen());
}
