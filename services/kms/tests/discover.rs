//! Key discovery (`Kms::discover`) against the real things: key files in a data dir, a
//! real OpenBao dev server, moto's KMS, and a Vault address nobody answers at.
//!
//! moto and OpenBao are shared by the tests of this binary, and discovery lists all they
//! hold, so the checks look for the keys each test made rather than count everything.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use signet_kms::{Discovery, Environment, KeyListing, Kms, KmsConfig};

fn kms_in(data_dir: &Path, vars: Vec<(&str, String)>, timeout: Duration) -> Kms {
    let mut config = KmsConfig::new(data_dir);
    config.timeout = timeout;
    config.environment = Environment::fixed(vars);
    Kms::new(config)
}

fn key<'a>(d: &'a Discovery, uri: &str) -> &'a KeyListing {
    d.keys
        .iter()
        .find(|k| k.uri == uri)
        .unwrap_or_else(|| panic!("{uri} is not listed: {d:#?}"))
}

fn provider_error<'a>(d: &'a Discovery, provider: &str) -> Option<&'a str> {
    d.providers
        .iter()
        .find(|p| p.provider == provider)
        .unwrap_or_else(|| panic!("provider {provider} is not listed: {d:#?}"))
        .error
        .as_deref()
}

fn providers(d: &Discovery) -> Vec<&str> {
    d.providers.iter().map(|p| p.provider).collect()
}

/// Usable keys first, then by URI.
fn assert_sorted(d: &Discovery) {
    let order: Vec<(bool, &str)> = d.keys.iter().map(|k| (!k.usable, k.uri.as_str())).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "keys are not sorted usable first, then by URI"
    );
}

/// A PKCS#8 DER private key written by openssl (`genpkey` writes PKCS#8), an
/// implementation independent of signet's.
fn openssl_key(path: &Path, args: &[&str]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let out = Command::new("/usr/bin/openssl")
        .arg("genpkey")
        .args(args)
        .args(["-outform", "DER", "-out"])
        .arg(path)
        .output()
        .expect("/usr/bin/openssl must be installed to write test keys");
    assert!(
        out.status.success(),
        "openssl genpkey failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn local_keys_are_listed_and_checked_by_the_local_provider() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kms = kms_in(dir.path(), Vec::new(), Duration::from_secs(30));
    // A key the local provider made itself.
    let good = kms.open("local://good").expect("open");
    let described = good.describe().await.expect("describe creates v1");

    let keys = dir.path().join("kms");
    openssl_key(
        &keys.join("ec/v1.pk8"),
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    openssl_key(
        &keys.join("small/v1.pk8"),
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    );
    std::fs::create_dir_all(keys.join("empty")).expect("mkdir");
    std::fs::create_dir_all(keys.join("Not-A-Name")).expect("mkdir");
    std::fs::write(keys.join("notes.txt"), "not a key").expect("write");

    let d = kms.discover().await;
    assert_eq!(providers(&d), ["local"], "nothing else is configured");
    assert_eq!(provider_error(&d, "local"), None);
    assert_eq!(d.keys.len(), 5, "{d:#?}");
    assert_sorted(&d);

    let g = key(&d, "local://good");
    assert!(g.usable, "{g:?}");
    assert_eq!(
        (
            g.provider,
            g.name.as_str(),
            g.algorithm.as_deref(),
            g.reason.as_deref()
        ),
        ("local", "good", Some("RSA_2048"), None)
    );
    assert_eq!(
        d.keys[0].uri, "local://good",
        "the only usable key comes first"
    );
    // The listed URI is the key the provider made.
    let reopened = kms
        .open(&g.uri)
        .expect("open listed")
        .describe()
        .await
        .expect("describe");
    assert_eq!(reopened, described);

    for (uri, words) in [
        ("local://ec", "cannot be used for signing"),
        ("local://small", "cannot be used for signing"),
        ("local://empty", "no key version"),
        ("local://Not-A-Name", "invalid key URI"),
    ] {
        let k = key(&d, uri);
        assert!(!k.usable, "{k:?}");
        assert_eq!(k.algorithm, None, "{k:?}");
        let reason = k.reason.as_deref().unwrap_or_default();
        assert!(reason.contains(words), "{uri}: {reason}");
    }
    assert!(
        !keys.join("empty/v1.pk8").exists(),
        "listing must not create a key"
    );

    // Production settings refuse local keys, so there is nothing to list.
    let mut config = KmsConfig::new(dir.path());
    config.environment = Environment::fixed::<&str, &str>([]);
    config.allow_local = false;
    let d = Kms::new(config).discover().await;
    assert!(d.providers.is_empty() && d.keys.is_empty(), "{d:#?}");
}

#[tokio::test]
async fn openbao_transit_keys_are_listed_with_their_types() {
    let bao = common::bao();
    let rsa = common::unique("picker-rsa");
    let ec = common::unique("picker-ec");
    let aes = common::unique("picker-aes");
    bao.bao_create_key(&rsa, "rsa-2048");
    bao.bao_create_key(&ec, "ecdsa-p256");
    bao.bao_create_key(&aes, "aes256-gcm96");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = |mount: &str| {
        vec![
            ("VAULT_ADDR", bao.url.clone()),
            ("VAULT_TOKEN", bao.token.clone()),
            ("TRANSIT_SECRET_ENGINE_PATH", mount.to_owned()),
        ]
    };
    let kms = kms_in(dir.path(), env("transit"), Duration::from_secs(30));

    let d = kms.discover().await;
    assert_eq!(providers(&d), ["local", "hashivault"]);
    assert_eq!(provider_error(&d, "hashivault"), None);
    assert_sorted(&d);

    let r = key(&d, &format!("hashivault://{rsa}"));
    assert!(r.usable, "{r:?}");
    assert_eq!(
        (r.provider, r.name.as_str(), r.algorithm.as_deref()),
        ("hashivault", rsa.as_str(), Some("RSA_2048"))
    );
    let described = kms
        .open(&r.uri)
        .expect("the listed URI opens")
        .describe()
        .await
        .expect("and describes");
    assert_eq!(described.versions[0].public_key.bits(), 2048);

    let e = key(&d, &format!("hashivault://{ec}"));
    assert!(!e.usable);
    assert_eq!(e.algorithm.as_deref(), Some("ECDSA_P256"));
    assert_eq!(e.reason.as_deref(), Some("type ecdsa-p256 is not RSA"));
    let a = key(&d, &format!("hashivault://{aes}"));
    assert!(!a.usable);
    assert_eq!(a.algorithm.as_deref(), Some("AES256_GCM96"));
    assert_eq!(a.reason.as_deref(), Some("symmetric key (aes256-gcm96)"));
    // describe refuses what the listing calls unusable.
    let refused = kms
        .open(&e.uri)
        .expect("open")
        .describe()
        .await
        .expect_err("ECDSA refused");
    assert!(
        refused.to_string().contains("cannot be used for signing"),
        "{refused}"
    );

    // A transit mount without keys: Vault answers the LIST with 404 and no errors.
    let empty = common::unique("empty-transit");
    let (status, body) = common::http_json(
        "POST",
        &format!("{}/v1/sys/mounts/{empty}", bao.url),
        &[("X-Vault-Token", &bao.token)],
        r#"{"type":"transit"}"#,
    );
    assert!(status == 204 || status == 200, "mount: {status} {body}");
    let d = kms_in(dir.path(), env(&empty), Duration::from_secs(30))
        .discover()
        .await;
    assert_eq!(provider_error(&d, "hashivault"), None, "{d:#?}");
    assert!(d.keys.iter().all(|k| k.provider != "hashivault"), "{d:#?}");

    // A mount that does not exist is an error, not an empty list.
    let d = kms_in(dir.path(), env("no-such-mount"), Duration::from_secs(30))
        .discover()
        .await;
    let error = provider_error(&d, "hashivault").expect("missing mount is an error");
    assert!(error.contains("no handler for route"), "{error}");

    // A refused token: the error says so and never shows the token.
    let mut vars = env("transit");
    vars[1].1 = "s.not-a-valid-token-4711".into();
    let d = kms_in(dir.path(), vars, Duration::from_secs(30))
        .discover()
        .await;
    let error = provider_error(&d, "hashivault").expect("bad token is an error");
    assert!(error.contains("permission denied"), "{error}");
    assert!(!error.contains("4711"), "{error}");
    assert!(d.keys.iter().all(|k| k.provider != "hashivault"), "{d:#?}");
}

#[tokio::test]
async fn aws_keys_are_listed_with_usage_spec_and_state() {
    let moto = common::moto();
    let sign = moto.moto_create_key("RSA_2048", "SIGN_VERIFY");
    let encrypt = moto.moto_create_key("RSA_2048", "ENCRYPT_DECRYPT");
    let ec = moto.moto_create_key("ECC_NIST_P256", "SIGN_VERIFY");
    let disabled = moto.moto_create_key("RSA_3072", "SIGN_VERIFY");
    moto.moto_call("DisableKey", &format!(r#"{{"KeyId":"{disabled}"}}"#));
    let symmetric = moto.moto_create_key("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");

    let dir = tempfile::tempdir().expect("tempdir");
    let kms = kms_in(
        dir.path(),
        vec![
            ("AWS_ACCESS_KEY_ID", "AKIATESTING".to_owned()),
            (
                "AWS_SECRET_ACCESS_KEY",
                "moto-secret-never-printed".to_owned(),
            ),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", moto.url.clone()),
        ],
        Duration::from_secs(30),
    );
    let d = kms.discover().await;
    assert_eq!(providers(&d), ["local", "awskms"]);
    assert_eq!(provider_error(&d, "awskms"), None, "{d:#?}");
    assert_sorted(&d);

    let s = key(&d, &format!("awskms:///{sign}"));
    assert!(s.usable, "{s:?}");
    assert_eq!(
        (
            s.provider,
            s.name.as_str(),
            s.algorithm.as_deref(),
            s.reason.as_deref()
        ),
        ("awskms", sign.as_str(), Some("RSA_2048"), None)
    );
    let described = kms
        .open(&s.uri)
        .expect("the listed URI opens")
        .describe()
        .await
        .expect("and describes");
    assert_eq!(described.primary_version, sign);

    for (id, algorithm, reason) in [
        (&encrypt, "RSA_2048", "KeyUsage ENCRYPT_DECRYPT"),
        (&ec, "ECC_NIST_P256", "KeySpec ECC_NIST_P256 is not RSA"),
        (&disabled, "RSA_3072", "KeyState Disabled"),
        (&symmetric, "SYMMETRIC_DEFAULT", "symmetric key"),
    ] {
        let k = key(&d, &format!("awskms:///{id}"));
        assert!(!k.usable, "{k:?}");
        assert_eq!(k.algorithm.as_deref(), Some(algorithm), "{k:?}");
        assert_eq!(k.reason.as_deref(), Some(reason), "{k:?}");
    }
    let text = format!("{d:?}");
    assert!(!text.contains("moto-secret-never-printed"), "{text}");
}

/// A Vault nobody answers at: its error is reported, the local keys still list, and the
/// whole discovery takes no longer than the configured timeout.
#[tokio::test]
async fn an_unreachable_vault_is_reported_and_local_keys_still_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = signet_testkit::emulators::free_port();
    let kms = kms_in(
        dir.path(),
        vec![
            ("VAULT_ADDR", format!("http://127.0.0.1:{closed}")),
            ("VAULT_TOKEN", "s.secret-token-never-shown".to_owned()),
        ],
        Duration::from_secs(5),
    );
    kms.open("local://dev")
        .expect("open")
        .describe()
        .await
        .expect("create");

    let d = kms.discover().await;
    assert_eq!(providers(&d), ["local", "hashivault"]);
    let error = provider_error(&d, "hashivault").expect("vault error");
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!error.contains("secret-token"), "{error}");
    assert_eq!(provider_error(&d, "local"), None);
    assert_eq!(d.keys.len(), 1, "{d:#?}");
    assert!(key(&d, "local://dev").usable);

    // A Vault that accepts connections and never answers is cut off at the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let kms = kms_in(
        dir.path(),
        vec![
            ("VAULT_ADDR", format!("http://{addr}")),
            ("VAULT_TOKEN", "t".to_owned()),
        ],
        Duration::from_secs(1),
    );
    let started = Instant::now();
    let d = kms.discover().await;
    let took = started.elapsed();
    let error = provider_error(&d, "hashivault").expect("timeout error");
    assert!(error.contains("timeout"), "{error}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(key(&d, "local://dev").usable);
    drop(silent);
}

/// Alibaba credentials without a region: configured, but listing needs the region.
#[tokio::test]
async fn alibaba_without_a_region_says_which_setting_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = KmsConfig::new(dir.path());
    config.allow_local = false;
    config.environment = Environment::fixed([
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIexample"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ali-secret-never-shown"),
    ]);
    let d = Kms::new(config).discover().await;
    assert_eq!(providers(&d), ["alikms"]);
    let error = provider_error(&d, "alikms").expect("error");
    assert!(error.contains("ALIBABA_CLOUD_REGION_ID"), "{error}");
    assert!(d.keys.is_empty());
}
