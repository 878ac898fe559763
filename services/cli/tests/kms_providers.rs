//! Witnesses on real KMS emulators, through the real `signet up` and CLI: AWS KMS (moto)
//! and Vault/OpenBao transit. Signatures made through each are accepted by OpenSSL and
//! the `sigstore` crate; rotation keeps old signatures valid until their version is
//! revoked.

mod common;

use common::{bin, cosign_verifies, fails, ok, openssl_verifies, sigstore_verifies};
use signet_testkit::emulators::{bao, moto};
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

fn write_key(dir: &std::path::Path, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.pub"));
    std::fs::write(&path, pem).expect("write key");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_witness_signs_and_rotates_to_a_new_key() {
    let moto = moto();
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let first = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let up = SignetUp::start(
        bin(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIATESTING"),
            ("AWS_SECRET_ACCESS_KEY", "moto-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", &moto.url),
        ],
    )
    .await
    .expect("signet up");
    let tmp = tempfile::tempdir().expect("tempdir");

    // Keys that cannot sign are refused with a reason.
    let symmetric = moto.moto_create_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    let msg = fails(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "sym",
            "--kms-key",
            &format!("awskms:///{symmetric}"),
        ])
        .expect("cli"),
        "symmetric key",
    );
    assert!(
        msg.contains("SYMMETRIC_DEFAULT") || msg.to_lowercase().contains("symmetric"),
        "{msg}"
    );
    let encrypt = moto.moto_create_key("RSA_2048", "ENCRYPT_DECRYPT");
    let msg = fails(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "enc",
            "--kms-key",
            &format!("awskms:///{encrypt}"),
        ])
        .expect("cli"),
        "encrypt-only key",
    );
    assert!(
        msg.contains("ENCRYPT_DECRYPT") || msg.contains("SIGN_VERIFY"),
        "{msg}"
    );

    // The key picker (`signet witness keys`, the console's `GET /v1/kms/keys`) offers
    // the signing key and greys out the one that only encrypts, with the reason.
    let keys = ok(&up.cli(&["witness", "keys"]).expect("cli"), "witness keys");
    let line = |id: &str| {
        keys.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} is not listed:\n{keys}"))
            .to_owned()
    };
    assert!(line(&first).contains(" yes "), "{keys}");
    let enc = line(&encrypt);
    assert!(
        enc.contains(" no ") && enc.contains("ENCRYPT_DECRYPT"),
        "{keys}"
    );
    ok(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "aws",
            "--kms-key",
            &format!("awskms:///{first}"),
        ])
        .expect("cli"),
        "witness create awskms",
    );
    let old_pem = ok(
        &up.cli(&["witness", "export-key", "aws"]).expect("cli"),
        "export",
    );
    let old_key = write_key(tmp.path(), "aws-old", &old_pem);
    let a = TestImage::random()
        .push(&host, "aws/app", "a")
        .await
        .expect("push");
    let image_a = format!("{host}/aws/app:a");
    ok(
        &up.cli(&["sign", &image_a, "--witness", "aws", "--wait"])
            .expect("cli"),
        "sign through AWS KMS",
    );
    assert_eq!(
        openssl_verifies(&registry, "aws/app", &a, &old_key).await,
        1
    );
    assert_eq!(sigstore_verifies(&image_a, old_pem.as_bytes()).await, Ok(1));
    assert_eq!(
        cosign_verifies(&image_a, old_pem.as_bytes()),
        Ok(1),
        "the real cosign, AWS KMS key"
    );

    // AWS keys get no new versions: rotate to a new key; the old key stays valid.
    let second = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    ok(
        &up.cli(&[
            "witness",
            "rotate",
            "aws",
            "--kms-key",
            &format!("awskms:///{second}"),
        ])
        .expect("cli"),
        "rotate to a new key",
    );
    let new_pem = ok(
        &up.cli(&["witness", "export-key", "aws"]).expect("cli"),
        "export new",
    );
    assert_ne!(new_pem, old_pem);
    let b = TestImage::random()
        .push(&host, "aws/app", "b")
        .await
        .expect("push");
    let image_b = format!("{host}/aws/app:b");
    ok(
        &up.cli(&["sign", &image_b, "--witness", "aws", "--wait"])
            .expect("cli"),
        "sign with the new key",
    );
    let new_key = write_key(tmp.path(), "aws-new", &new_pem);
    assert_eq!(
        openssl_verifies(&registry, "aws/app", &b, &new_key).await,
        1
    );
    // After the rotation: cosign takes the new signature under the new key, and the old
    // one under the old key still.
    assert_eq!(cosign_verifies(&image_b, new_pem.as_bytes()), Ok(1));
    assert_eq!(cosign_verifies(&image_a, old_pem.as_bytes()), Ok(1));
    ok(
        &up.cli(&["verify", &image_a, "--witness", "aws"])
            .expect("cli"),
        "old signature still valid",
    );
    ok(
        &up.cli(&["verify", &image_b, "--witness", "aws"])
            .expect("cli"),
        "new signature valid",
    );

    // Revoking the old key's version invalidates the old signature only.
    ok(
        &up.cli(&["witness", "revoke-version", "aws", &first])
            .expect("cli"),
        "revoke old version",
    );
    fails(
        &up.cli(&["verify", &image_a, "--witness", "aws"])
            .expect("cli"),
        "old signature after revocation",
    );
    ok(
        &up.cli(&["verify", &image_b, "--witness", "aws"])
            .expect("cli"),
        "new signature still valid",
    );
    let msg = fails(
        &up.cli(&["witness", "revoke-version", "aws", &second])
            .expect("cli"),
        "revoking the primary",
    );
    assert!(msg.contains("rotate first"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_transit_witness_signs_rotates_and_revokes() {
    let bao = bao();
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let key = format!("signet-e2e-{}", std::process::id());
    bao.bao_create_key(&key, "rsa-2048");
    bao.bao_create_key(&format!("{key}-aes"), "aes256-gcm96");
    let up = SignetUp::start(
        bin(),
        &[("VAULT_ADDR", &bao.url), ("VAULT_TOKEN", &bao.token)],
    )
    .await
    .expect("signet up");
    let tmp = tempfile::tempdir().expect("tempdir");

    let msg = fails(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "aes",
            "--kms-key",
            &format!("hashivault://{key}-aes"),
        ])
        .expect("cli"),
        "symmetric transit key",
    );
    assert!(msg.contains("aes256-gcm96"), "{msg}");

    ok(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "vault",
            "--kms-key",
            &format!("hashivault://{key}"),
        ])
        .expect("cli"),
        "witness create hashivault",
    );
    let v1_pem = ok(
        &up.cli(&["witness", "export-key", "vault"]).expect("cli"),
        "export",
    );
    let a = TestImage::random()
        .push(&host, "vault/app", "a")
        .await
        .expect("push");
    let image_a = format!("{host}/vault/app:a");
    ok(
        &up.cli(&["sign", &image_a, "--witness", "vault", "--wait"])
            .expect("cli"),
        "sign through transit",
    );
    assert_eq!(
        openssl_verifies(
            &registry,
            "vault/app",
            &a,
            &write_key(tmp.path(), "v1", &v1_pem)
        )
        .await,
        1
    );
    assert_eq!(sigstore_verifies(&image_a, v1_pem.as_bytes()).await, Ok(1));
    assert_eq!(
        cosign_verifies(&image_a, v1_pem.as_bytes()),
        Ok(1),
        "the real cosign, OpenBao transit key"
    );

    // Transit rotates in place: version 2 becomes primary, version 1 stays valid.
    let json = ok(
        &up.cli(&["--output", "json", "witness", "rotate", "vault"])
            .expect("cli"),
        "rotate",
    );
    let w: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(w["key_versions"].as_array().map(Vec::len), Some(2), "{w}");
    let v2_pem = ok(
        &up.cli(&["witness", "export-key", "vault"]).expect("cli"),
        "export v2",
    );
    assert_ne!(v1_pem, v2_pem);
    let b = TestImage::random()
        .push(&host, "vault/app", "b")
        .await
        .expect("push");
    let image_b = format!("{host}/vault/app:b");
    ok(
        &up.cli(&["sign", &image_b, "--witness", "vault", "--wait"])
            .expect("cli"),
        "sign with version 2",
    );
    assert_eq!(
        openssl_verifies(
            &registry,
            "vault/app",
            &b,
            &write_key(tmp.path(), "v2", &v2_pem)
        )
        .await,
        1
    );
    assert_eq!(
        cosign_verifies(&image_b, v2_pem.as_bytes()),
        Ok(1),
        "the real cosign, transit key version 2"
    );
    ok(
        &up.cli(&["verify", &image_a, "--witness", "vault"])
            .expect("cli"),
        "v1 signature valid after rotation",
    );
    ok(
        &up.cli(&["witness", "revoke-version", "vault", "1"])
            .expect("cli"),
        "revoke v1",
    );
    let msg = fails(
        &up.cli(&["verify", &image_a, "--witness", "vault"])
            .expect("cli"),
        "v1 signature after revocation",
    );
    assert!(msg.contains("verification failed"), "{msg}");
    ok(
        &up.cli(&["verify", &image_b, "--witness", "vault"])
            .expect("cli"),
        "v2 signature still valid",
    );

    // A revoked witness signs nothing.
    ok(
        &up.cli(&["witness", "revoke", "vault"]).expect("cli"),
        "revoke witness",
    );
    let msg = fails(
        &up.cli(&["sign", &image_b, "--witness", "vault", "--wait"])
            .expect("cli"),
        "sign with a revoked witness",
    );
    assert!(msg.contains("revoked"), "{msg}");
}
