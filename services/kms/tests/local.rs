//! The local development KMS, through the public API, against the real file system and
//! an independent verifier (`/usr/bin/openssl`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use signet_core::SignatureAlgorithm;
use signet_kms::{KeyProvider, Kms, KmsConfig, KmsErrorKind};

const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"registry.local/app"},"image":{"docker-manifest-digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"type":"cosign container image signature"},"optional":null}"#;

fn open(dir: &Path, uri: &str) -> Arc<dyn KeyProvider> {
    Kms::new(KmsConfig::new(dir))
        .open(uri)
        .expect("open local key")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test]
async fn creates_v1_and_signs_verifiable_signatures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = open(dir.path(), "local://dev");
    assert_eq!(key.provider(), "local");
    assert_eq!(key.uri(), "local://dev");

    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.primary_version, "1");
    assert_eq!(desc.algorithm, SignatureAlgorithm::RsaPkcs1Sha256);
    assert_eq!(desc.versions.len(), 1);
    let public = &desc.primary().expect("primary listed").public_key;
    assert_eq!(public.bits(), 2048);

    for alg in [
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPssSha256,
    ] {
        let sig = key.sign("1", alg, PAYLOAD).await.expect("sign");
        assert_eq!(sig.len(), 256);
        public
            .verify(alg, PAYLOAD, &sig)
            .expect("signature verifies");
        assert!(public.verify(alg, b"another payload", &sig).is_err());
    }
}

#[tokio::test]
async fn first_sign_creates_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = open(dir.path(), "local://sign-first");
    let sig = key
        .sign("1", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect("sign creates v1");
    let desc = key.describe().await.expect("describe");
    desc.versions[0]
        .public_key
        .verify(SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD, &sig)
        .expect("verifies");
}

#[tokio::test]
async fn key_files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = open(dir.path(), "local://private");
    key.describe().await.expect("describe");
    let key_dir = dir.path().join("kms").join("private");
    assert_eq!(mode(&key_dir), 0o700, "key directory mode");
    assert_eq!(mode(&dir.path().join("kms")), 0o700, "kms directory mode");
    assert_eq!(mode(&key_dir.join("v1.pk8")), 0o600, "key file mode");
    let names: Vec<String> = std::fs::read_dir(&key_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["v1.pk8"], "no temporary file is left behind");
}

#[tokio::test]
async fn key_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path(), "local://durable");
    let before = first.describe().await.expect("describe");
    let sig = first
        .sign("1", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect("sign");
    drop(first);

    // A new Kms is what a restarted process has: nothing cached.
    let second = open(dir.path(), "local://durable");
    let after = second.describe().await.expect("describe after reopen");
    assert_eq!(after, before);
    let sig2 = second
        .sign("1", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect("sign after reopen");
    // PKCS#1 v1.5 is deterministic: same key, same payload, same signature.
    assert_eq!(sig, sig2);
}

#[tokio::test]
async fn rotate_adds_a_primary_and_keeps_old_versions_signable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = open(dir.path(), "local://rotating");
    let v1 = key.describe().await.expect("describe").versions[0].clone();

    assert_eq!(key.rotate().await.expect("rotate"), "2");
    let desc = key.describe().await.expect("describe");
    assert_eq!(desc.primary_version, "2");
    let versions: Vec<&str> = desc.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["1", "2"]);
    assert_eq!(desc.versions[0], v1);
    assert_ne!(desc.versions[1].public_key, v1.public_key);
    assert_eq!(mode(&dir.path().join("kms/rotating/v2.pk8")), 0o600);

    for info in &desc.versions {
        let sig = key
            .sign(&info.version, SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
            .await
            .expect("sign with each version");
        info.public_key
            .verify(SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD, &sig)
            .expect("verifies under its own version");
    }

    // Another process sees the rotation.
    let other = open(dir.path(), "local://rotating");
    assert_eq!(
        other.describe().await.expect("describe").primary_version,
        "2"
    );
    assert_eq!(other.rotate().await.expect("rotate again"), "3");
}

#[tokio::test]
async fn unknown_versions_are_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = open(dir.path(), "local://versions");
    key.describe().await.expect("describe");
    for version in ["2", "01", "v1", "", "abc", "99999999999"] {
        let e = key
            .sign(version, SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
            .await
            .expect_err("no such version");
        assert!(
            matches!(e.kind, KmsErrorKind::NotFound(_)),
            "{version:?}: {e}"
        );
        assert!(!e.retryable());
        assert!(
            e.to_string()
                .starts_with("local key local://versions: not found"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn concurrent_first_use_agrees_on_one_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Separate Kms instances share nothing in memory, like separate processes.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let key = open(dir.path(), "local://raced");
        tasks.push(tokio::spawn(async move { key.describe().await }));
    }
    let mut fingerprints = Vec::new();
    for t in tasks {
        let desc = t.await.expect("task").expect("describe");
        assert_eq!(desc.primary_version, "1");
        fingerprints.push(desc.versions[0].public_key.fingerprint());
    }
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), 1, "every opener sees the same v1");
    let files = std::fs::read_dir(dir.path().join("kms/raced"))
        .expect("list")
        .count();
    assert_eq!(files, 1, "only v1.pk8, no leftover temporary files");
}

#[tokio::test]
async fn concurrent_rotations_each_get_a_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path(), "local://rot-race")
        .describe()
        .await
        .expect("describe");
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let key = open(dir.path(), "local://rot-race");
        tasks.push(tokio::spawn(async move { key.rotate().await }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.push(t.await.expect("task").expect("rotate"));
    }
    made.sort();
    assert_eq!(made, ["2", "3", "4"]);
}

#[tokio::test]
async fn signatures_verify_with_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = open(dir.path(), "local://openssl");
    let desc = key.describe().await.expect("describe");
    let pem = desc.versions[0].public_key.to_pem();
    let work = tempfile::tempdir().expect("tempdir");
    let (pub_path, payload_path) = (work.path().join("pub.pem"), work.path().join("payload"));
    std::fs::write(&pub_path, pem).expect("write key");
    std::fs::write(&payload_path, PAYLOAD).expect("write payload");

    for (alg, extra) in [
        (SignatureAlgorithm::RsaPkcs1Sha256, &[][..]),
        (
            SignatureAlgorithm::RsaPssSha256,
            &[
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:auto",
            ][..],
        ),
    ] {
        let sig = key.sign("1", alg, PAYLOAD).await.expect("sign");
        let sig_path = work.path().join(format!("{alg}.sig"));
        std::fs::write(&sig_path, &sig).expect("write signature");
        let out = Command::new("/usr/bin/openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&pub_path)
            .args(extra)
            .arg("-signature")
            .arg(&sig_path)
            .arg(&payload_path)
            .output()
            .expect("/usr/bin/openssl must be installed to check signatures independently");
        assert!(
            out.status.success(),
            "openssl rejected the {alg} signature: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    }
}

#[test]
fn invalid_local_uris_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = Kms::new(KmsConfig::new(dir.path()));
    let too_long = format!("local://{}", "a".repeat(64));
    for uri in [
        "local://",
        "local://Upper",
        "local://-dash",
        "local://.hidden",
        "local://a/b",
        "local://../escape",
        "local://a b",
        "local://name?x=1",
        too_long.as_str(),
        "local:/single-slash",
    ] {
        let e = kms.open(uri).expect_err(uri);
        assert!(matches!(e.kind, KmsErrorKind::InvalidUri(_)), "{uri}: {e}");
    }
    assert!(kms.open(&format!("local://{}", "a".repeat(63))).is_ok());
    assert!(kms.open("local://a0.b_c-d").is_ok());
    assert!(
        !dir.path().join("kms").exists(),
        "opening touches no file: keys are made on first use"
    );
}

#[tokio::test]
async fn open_caches_one_provider_per_uri() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = Kms::new(KmsConfig::new(dir.path()));
    let a = kms.open("local://cached").expect("open");
    let b = kms.open("local://cached").expect("open again");
    assert!(Arc::ptr_eq(&a, &b));
    let c = kms.open("local://other").expect("open other");
    assert!(!Arc::ptr_eq(&a, &c));
}

#[tokio::test]
async fn debug_never_shows_key_material() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = Kms::new(KmsConfig::new(dir.path()));
    let key = kms.open("local://secretive").expect("open");
    let desc = key.describe().await.expect("describe");
    key.sign("1", SignatureAlgorithm::RsaPkcs1Sha256, PAYLOAD)
        .await
        .expect("sign, so the key is loaded");

    let private = std::fs::read(dir.path().join("kms/secretive/v1.pk8")).expect("read key");
    let debug = format!("{kms:?} {key:?} {desc:?} {:?}", kms.config());
    // Any 12-byte window of the private key, in hex or base64, would betray it.
    for window in private.chunks(12).skip(2).take(40) {
        let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            !debug.to_lowercase().contains(&hex),
            "hex key bytes in Debug: {debug}"
        );
    }
    assert!(debug.contains("local://secretive"), "{debug}");
    assert!(
        debug.len() < 1000,
        "Debug is a summary, not a dump: {debug}"
    );
    assert!(!debug.contains("BEGIN"), "{debug}");
}
