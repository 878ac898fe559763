//! signet and the real `cosign` (the version `scripts/tools.sh` builds) on one image:
//! what signet writes, cosign verifies and lists; what cosign writes, signet reads; and a
//! `.sig` manifest both write to keeps every layer.

mod common;

use common::{
    bin, cosign, cosign_verifies, create_local_witness, export_key, fails, ok, sig_manifest,
    tagged_manifest,
};
use signet_testkit::image::TestImage;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;

/// Runs cosign and returns its stdout; panics with stderr when it fails.
fn run_cosign(home: &std::path::Path, args: &[&str]) -> String {
    let out = cosign(home)
        .args(args)
        .env("COSIGN_PASSWORD", "")
        .current_dir(home)
        .output()
        .expect("run cosign");
    assert!(
        out.status.success(),
        "cosign {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signet_and_cosign_share_one_image_and_read_each_other() {
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let digest = TestImage::random()
        .push(&host, "both/app", "v1")
        .await
        .expect("push");
    let by_digest = format!("{host}/both/app@{digest}");
    let up = SignetUp::start(bin(), &[]).await.expect("signet up");
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tmp.path();

    // Two witnesses sign the same image: one .sig manifest, two layers; cosign verifies
    // each witness's signature under its own key, and not under the other's alone.
    for w in ["prod", "security"] {
        create_local_witness(&up, w);
        ok(
            &up.cli(&["sign", &by_digest, "--witness", w, "--wait"])
                .expect("cli"),
            &format!("sign with {w}"),
        );
    }
    let (prod_pem, _) = export_key(&up, "prod", home);
    let (security_pem, _) = export_key(&up, "security", home);
    assert_eq!(cosign_verifies(&by_digest, prod_pem.as_bytes()), Ok(1));
    assert_eq!(cosign_verifies(&by_digest, security_pem.as_bytes()), Ok(1));
    let manifest = sig_manifest(&registry, "both/app", &digest).await;
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );

    // cosign finds signet's artifact where it looks for its own.
    let sig_tag = format!("{host}/both/app:{}.sig", digest.as_str().replace(':', "-"));
    let triangulated = run_cosign(home, &["triangulate", "--allow-http-registry", &by_digest]);
    assert_eq!(triangulated.trim(), sig_tag, "cosign triangulate");
    let tree = run_cosign(home, &["tree", "--allow-http-registry", &by_digest]);
    assert!(
        tree.contains(&format!("Signatures for an image tag: {sig_tag}")),
        "cosign tree does not list signet's .sig:\n{tree}"
    );
    // One line per layer (both layers carry the same simple-signing payload blob).
    let layers = tree.lines().filter(|l| l.contains("🍒")).count();
    assert_eq!(layers, 2, "cosign tree:\n{tree}");

    // cosign signs the same image with a key of its own (an RSA key imported into
    // cosign's format): its layer joins signet's two, none is dropped.
    let rsa = home.join("team.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&rsa)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    run_cosign(
        home,
        &[
            "import-key-pair",
            "--key",
            "team.pem",
            "--output-key-prefix",
            "team",
        ],
    );
    run_cosign(
        home,
        &[
            "sign",
            "--key",
            "team.key",
            "--tlog-upload=false",
            "--allow-http-registry",
            "--yes",
            &by_digest,
        ],
    );
    let manifest = sig_manifest(&registry, "both/app", &digest).await;
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(3),
        "{manifest}"
    );
    assert_eq!(cosign_verifies(&by_digest, prod_pem.as_bytes()), Ok(1));
    let team_pub = std::fs::read(home.join("team.pub")).expect("cosign's public key");
    assert_eq!(cosign_verifies(&by_digest, &team_pub), Ok(1));

    // signet reads cosign's signature: `signet verify --key` with cosign's public key.
    let team_pub_path = home.join("team.pub");
    ok(
        &up.cli(&[
            "verify",
            &by_digest,
            "--key",
            team_pub_path.to_str().expect("utf-8 path"),
        ])
        .expect("cli"),
        "signet verify of cosign's signature",
    );

    // signet signs again with a third witness: cosign's layer stays, and verifies.
    create_local_witness(&up, "release");
    ok(
        &up.cli(&["sign", &by_digest, "--witness", "release", "--wait"])
            .expect("cli"),
        "sign with release",
    );
    let manifest = sig_manifest(&registry, "both/app", &digest).await;
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(4),
        "{manifest}"
    );
    assert_eq!(cosign_verifies(&by_digest, &team_pub), Ok(1));
    let (release_pem, _) = export_key(&up, "release", home);
    assert_eq!(cosign_verifies(&by_digest, release_pem.as_bytes()), Ok(1));
    ok(
        &up.cli(&["verify", &by_digest, "--witness", "prod"])
            .expect("cli"),
        "signet still verifies prod among four layers",
    );
}

/// A key in OpenBao transit that cosign signs with through its own `hashivault://`
/// provider, bound to a signet witness: signet verifies cosign's signature by the
/// witness, and cosign verifies signet's by the same KMS key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_signing_through_openbao_counts_for_the_witness_on_that_key() {
    let bao = signet_testkit::emulators::bao();
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let key = format!("cosign-shared-{}", std::process::id());
    bao.bao_create_key(&key, "rsa-2048");
    let up = SignetUp::start(
        bin(),
        &[("VAULT_ADDR", &bao.url), ("VAULT_TOKEN", &bao.token)],
    )
    .await
    .expect("signet up");
    ok(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "shared",
            "--kms-key",
            &format!("hashivault://{key}"),
        ])
        .expect("cli"),
        "witness on the transit key",
    );

    // cosign signs one image through OpenBao; signet signs another with the witness.
    let by_cosign = TestImage::random()
        .push(&host, "vault/cosigned", "v1")
        .await
        .expect("push");
    let by_cosign = format!("{host}/vault/cosigned@{by_cosign}");
    let by_signet = TestImage::random()
        .push(&host, "vault/signed", "v1")
        .await
        .expect("push");
    let by_signet = format!("{host}/vault/signed@{by_signet}");
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tmp.path();
    let kms_ref = format!("hashivault://{key}");
    let out = cosign(home)
        .env("VAULT_ADDR", &bao.url)
        .env("VAULT_TOKEN", &bao.token)
        .args([
            "sign",
            "--key",
            &kms_ref,
            "--tlog-upload=false",
            "--allow-http-registry",
            "--yes",
            &by_cosign,
        ])
        .output()
        .expect("run cosign");
    assert!(
        out.status.success(),
        "cosign sign through OpenBao:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(
        &up.cli(&["sign", &by_signet, "--witness", "shared", "--wait"])
            .expect("cli"),
        "signet signs with the witness",
    );

    // signet counts cosign's signature for the witness bound to the key.
    ok(
        &up.cli(&["verify", &by_cosign, "--witness", "shared"])
            .expect("cli"),
        "signet verify of cosign's OpenBao signature by the witness",
    );
    // cosign verifies signet's signature with the witness's exported key. (Not with
    // `--key hashivault://`: cosign then asks transit to verify without naming a
    // signature algorithm, transit assumes PSS for RSA keys, and signet's witnesses
    // sign PKCS#1 v1.5, the scheme cosign's own PEM verification expects; docs/kms.md.)
    let pem = ok(
        &up.cli(&["witness", "export-key", "shared"]).expect("cli"),
        "export-key",
    );
    assert_eq!(cosign_verifies(&by_signet, pem.as_bytes()), Ok(1));
}

/// A verify-only witness: a `cosign generate-key-pair` key (ECDSA P-256) of a team that
/// signs with cosign. signet verifies its signatures, the verifier admits by them under
/// a policy, and signet refuses to sign with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_only_witness_holds_a_cosign_key_signet_never_signs_with() {
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let signed = TestImage::random()
        .push(&host, "vendor/app", "v1")
        .await
        .expect("push");
    let signed = format!("{host}/vendor/app@{signed}");
    let unsigned = TestImage::random()
        .push(&host, "vendor/other", "v1")
        .await
        .expect("push");
    let unsigned = format!("{host}/vendor/other@{unsigned}");
    let up = SignetUp::start(bin(), &[("SIGNET_VERIFIER__CLUSTER", "c1")])
        .await
        .expect("signet up");
    let tmp = tempfile::tempdir().expect("temp dir");
    let home = tmp.path();
    run_cosign(home, &["generate-key-pair"]);
    run_cosign(
        home,
        &[
            "sign",
            "--key",
            "cosign.key",
            "--tlog-upload=false",
            "--allow-http-registry",
            "--yes",
            &signed,
        ],
    );
    let cosign_pub = home.join("cosign.pub");
    let cosign_pub = cosign_pub.to_str().expect("utf-8 path");

    let json = ok(
        &up.cli(&[
            "--output",
            "json",
            "witness",
            "create",
            "--name",
            "vendor",
            "--public-key",
            cosign_pub,
        ])
        .expect("cli"),
        "witness create --public-key",
    );
    let w: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(w["algorithm"], "ECDSA_P256_SHA256", "{w}");
    assert!(
        w["kms_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("pubkey:sha256:")),
        "{w}"
    );

    // signet verifies cosign's signature by the witness and by the key file.
    ok(
        &up.cli(&["verify", &signed, "--witness", "vendor"])
            .expect("cli"),
        "signet verify --witness of a verify-only witness",
    );
    ok(
        &up.cli(&["verify", &signed, "--key", cosign_pub])
            .expect("cli"),
        "signet verify --key cosign.pub",
    );
    common::fails(
        &up.cli(&["verify", &unsigned, "--witness", "vendor"])
            .expect("cli"),
        "an image the vendor did not sign",
    );

    // signet never signs with it, and no rule can make it.
    let msg = common::fails(
        &up.cli(&["sign", &signed, "--witness", "vendor", "--wait"])
            .expect("cli"),
        "signing with a verify-only witness",
    );
    assert!(msg.contains("verify-only"), "{msg}");

    // Under an enforcing policy, the verifier admits what the vendor signed only.
    common::enforce(&up, "vendor-images", "vendor", &unsigned).await;
    let r = common::review(&up, "prod", &signed).await;
    assert_eq!(r["allowed"], true, "{r}");

    // Rotation takes another key of the same type, and refuses an RSA one.
    run_cosign(home, &["generate-key-pair", "--output-key-prefix", "next"]);
    let next = home.join("next.pub");
    let json = ok(
        &up.cli(&[
            "--output",
            "json",
            "witness",
            "rotate",
            "vendor",
            "--public-key",
            next.to_str().expect("utf-8 path"),
        ])
        .expect("cli"),
        "rotate to the next cosign key",
    );
    assert!(
        json.contains("\"version\": \"2\"") || json.contains("\"version\":\"2\""),
        "{json}"
    );
    // The old key's signature still counts until its version is revoked.
    ok(
        &up.cli(&["verify", &signed, "--witness", "vendor"])
            .expect("cli"),
        "the first key's signature after the rotation",
    );
}

/// Attestations, both ways, with the real cosign: an in-toto Statement signet signs (a
/// KMS key, DSSE over the pre-authentication encoding) and attaches as cosign does
/// (`sha256-<hex>.att`) passes `cosign verify-attestation --type`; one `cosign attest`
/// made is read back by signet, verified with the cosign key, and found to be about the
/// image. A payload changed after signing, and a signature over the bare payload
/// (without DSSE's encoding), are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_signet_writes_cosign_verifies_and_the_other_way_round() {
    use signet_core::attestation::{self, Envelope, Statement};
    use signet_core::{ImageRef, PublicKey, SignatureAlgorithm};
    use signet_registry::{AttestationLayer, RegistryClient, RegistryConfig, SignatureLimits};

    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let digest = TestImage::random()
        .push(&host, "att/app", "v1")
        .await
        .expect("push");
    let image = format!("{host}/att/app@{digest}");
    let reference = ImageRef::parse(&image).expect("reference");
    let client = RegistryClient::new(RegistryConfig::for_loopback()).expect("client");
    let home = tempfile::tempdir().expect("home");

    // signet writes: a local KMS key signs the DSSE encoding of a SLSA v1 statement.
    let kms = signet_kms::Kms::new(signet_kms::KmsConfig::new(home.path()));
    let key = kms.open("local://builder").expect("key");
    let described = key.describe().await.expect("describe");
    let primary = described.primary().expect("primary").clone();
    let predicate = serde_json::json!({
        "buildDefinition": {
            "buildType": "https://signet.dev/test-build/v1",
            "externalParameters": {"repository": "https://git.example.com/app"}
        },
        "runDetails": {"builder": {"id": "https://ci.example.com/runner"}}
    });
    attestation::check_predicate(attestation::SLSA_PROVENANCE_V1, &predicate).expect("valid");
    let statement = Statement::for_image(
        &format!("{host}/att/app"),
        &digest,
        attestation::SLSA_PROVENANCE_V1,
        predicate,
    );
    let (signed, payload) = Envelope::signing_input(&statement);
    let sig = key
        .sign(
            &primary.version,
            SignatureAlgorithm::RsaPkcs1Sha256,
            &signed,
        )
        .await
        .expect("sign");
    let envelope = Envelope::signed(payload, sig);
    client
        .publish_attestation(
            &reference,
            &digest,
            &AttestationLayer {
                envelope: envelope.to_bytes(),
                predicate_type: attestation::SLSA_PROVENANCE_V1.into(),
            },
        )
        .await
        .expect("publish");
    let pem = primary.public_key.to_pem();
    std::fs::write(home.path().join("builder.pub"), &pem).expect("write key");
    let out = run_cosign(
        home.path(),
        &[
            "verify-attestation",
            "--key",
            "builder.pub",
            "--type",
            "slsaprovenance1",
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            &image,
        ],
    );
    assert!(
        out.contains("payload"),
        "cosign verify-attestation printed the envelope: {out}"
    );
    // cosign checks the predicate type too: asked for an SBOM, it finds none.
    let wrong_type = cosign(home.path())
        .args([
            "verify-attestation",
            "--key",
            "builder.pub",
            "--type",
            "spdxjson",
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            &image,
        ])
        .current_dir(home.path())
        .output()
        .expect("run cosign");
    assert!(!wrong_type.status.success(), "no spdx attestation exists");

    // cosign writes: an SPDX SBOM attested with a cosign key (ECDSA P-256).
    run_cosign(home.path(), &["generate-key-pair"]);
    let sbom = serde_json::json!({
        "spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app",
        "packages": [{"name": "openssl", "versionInfo": "3.0.15"}]
    });
    std::fs::write(home.path().join("sbom.json"), sbom.to_string()).expect("write sbom");
    run_cosign(
        home.path(),
        &[
            "attest",
            "--key",
            "cosign.key",
            "--type",
            "spdxjson",
            "--predicate",
            "sbom.json",
            "--tlog-upload=false",
            "--allow-http-registry",
            "--yes",
            &image,
        ],
    );
    // cosign checks the key: signet's provenance does not verify under cosign's key.
    let other_key = cosign(home.path())
        .args([
            "verify-attestation",
            "--key",
            "cosign.pub",
            "--type",
            "slsaprovenance1",
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            &image,
        ])
        .current_dir(home.path())
        .output()
        .expect("run cosign");
    assert!(!other_key.status.success(), "another key verifies nothing");
    let layers = client
        .fetch_attestations(
            &reference,
            &digest,
            SignatureLimits {
                max_layers: 16,
                max_payload_bytes: 1 << 20,
            },
        )
        .await
        .expect("fetch");
    assert_eq!(
        layers.len(),
        2,
        "signet's and cosign's, in one .att: {layers:?}"
    );
    let cosign_key =
        PublicKey::parse(&std::fs::read(home.path().join("cosign.pub")).expect("cosign.pub"))
            .expect("ecdsa key");
    let theirs = layers
        .iter()
        .find(|l| l.predicate_type == attestation::SPDX)
        .expect("cosign's layer names its predicate type");
    let env = Envelope::parse(&theirs.envelope).expect("envelope");
    assert!(env.verify(&cosign_key, SignatureAlgorithm::EcdsaP256Sha256));
    let st = env.statement().expect("statement");
    assert_eq!(st.predicate_type, attestation::SPDX);
    assert!(st.is_about(&digest));
    assert_eq!(st.predicate["packages"][0]["name"], "openssl");
    // signet's own layer verifies under the witness key and not under cosign's.
    let ours = layers
        .iter()
        .find(|l| l.predicate_type == attestation::SLSA_PROVENANCE_V1)
        .expect("ours");
    let ours = Envelope::parse(&ours.envelope).expect("envelope");
    assert!(ours.verify(&primary.public_key, SignatureAlgorithm::RsaPkcs1Sha256));
    assert!(!ours.verify(&cosign_key, SignatureAlgorithm::EcdsaP256Sha256));

    // Attacks on the envelope: a payload swapped after signing, and a signature over the
    // bare payload (no DSSE encoding, so not bound to the payload type).
    let mut swapped = env.clone();
    swapped.payload =
        Statement::for_image("x", &digest, attestation::SPDX, sbom.clone()).to_bytes();
    assert!(!swapped.verify(&cosign_key, SignatureAlgorithm::EcdsaP256Sha256));
    let bare = key
        .sign(
            &primary.version,
            SignatureAlgorithm::RsaPkcs1Sha256,
            &ours.payload,
        )
        .await
        .expect("sign");
    let unbound = Envelope::signed(ours.payload.clone(), bare);
    assert!(!unbound.verify(&primary.public_key, SignatureAlgorithm::RsaPkcs1Sha256));
}

/// `signet attest` and `signet sign --attest` through the real `signet up`: the jobs sign
/// DSSE envelopes with the witness's KMS key, the real cosign's `verify-attestation`
/// accepts them, asking again adds no layer, and a SLSA predicate missing what its schema
/// requires is refused before anything is enqueued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signet_attest_jobs_are_verified_by_cosign_and_deduplicated() {
    let registry = TestRegistry::start().await.expect("docker-registry");
    let host = registry.host();
    let up = SignetUp::start(bin(), &[]).await.expect("signet up");
    let home = tempfile::tempdir().expect("home");
    create_local_witness(&up, "builder");
    let (_, key) = export_key(&up, "builder", home.path());
    let digest = TestImage::random()
        .push(&host, "attest/app", "v1")
        .await
        .expect("push");
    let image = format!("{host}/attest/app@{digest}");
    let provenance = home.path().join("provenance.json");
    std::fs::write(
        &provenance,
        serde_json::json!({
            "buildDefinition": {
                "buildType": "https://signet.dev/test-build/v1",
                "externalParameters": {"source": "git+https://git.example.com/app@refs/heads/main"}
            },
            "runDetails": {"builder": {"id": "https://ci.example.com/runner/v2"}}
        })
        .to_string(),
    )
    .expect("write");
    let attest = |file: &std::path::Path| {
        up.cli(&[
            "attest",
            &image,
            "--witness",
            "builder",
            "--type",
            "slsaprovenance1",
            "--predicate",
            file.to_str().expect("utf-8"),
            "--wait",
        ])
        .expect("cli")
    };
    let out = ok(&attest(&provenance), "signet attest");
    assert!(out.contains("attested"), "{out}");
    let verify = |ty: &str| {
        cosign(home.path())
            .args(["verify-attestation", "--key"])
            .arg(&key)
            .args([
                "--type",
                ty,
                "--insecure-ignore-tlog=true",
                "--allow-http-registry",
                &image,
            ])
            .output()
            .expect("run cosign")
    };
    let v = verify("slsaprovenance1");
    assert!(
        v.status.success(),
        "cosign verify-attestation: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    // No signature was asked for: cosign finds none.
    assert!(cosign_verifies(&image, std::fs::read(&key).expect("key").as_slice()).is_err());

    // The same attestation again: recorded already, no KMS call, no second layer.
    ok(&attest(&provenance), "signet attest again");
    let att = tagged_manifest(&registry, "attest/app", &digest.attestation_tag()).await;
    assert_eq!(
        att["layers"].as_array().map(Vec::len),
        Some(1),
        "one layer after two identical requests: {att}"
    );

    // Provenance without its builder is refused at the door, with what is missing.
    let broken = home.path().join("broken.json");
    std::fs::write(&broken, r#"{"buildDefinition": {"buildType": "x"}}"#).expect("write");
    let msg = fails(&attest(&broken), "attest broken provenance");
    assert!(
        msg.contains("runDetails is missing") && msg.contains("externalParameters"),
        "{msg}"
    );

    // A signature and an SBOM in one request.
    let sbom = home.path().join("sbom.json");
    std::fs::write(
        &sbom,
        r#"{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "packages": []}"#,
    )
    .expect("write");
    let out = ok(
        &up.cli(&[
            "sign",
            &image,
            "--witness",
            "builder",
            "--attest",
            &format!("spdxjson={}", sbom.display()),
            "--wait",
        ])
        .expect("cli"),
        "sign with an attestation",
    );
    assert!(
        out.contains("signed") && out.contains("attestations:"),
        "{out}"
    );
    assert!(verify("spdxjson").status.success(), "the SBOM verifies");
    assert_eq!(
        cosign_verifies(&image, std::fs::read(&key).expect("key").as_slice()),
        Ok(1),
        "and so does the signature"
    );
    let att = tagged_manifest(&registry, "attest/app", &digest.attestation_tag()).await;
    assert_eq!(att["layers"].as_array().map(Vec::len), Some(2), "{att}");
    let audit = ok(
        &up.cli(&["audit", "--action", "attestation.publish"])
            .expect("cli"),
        "audit",
    );
    assert_eq!(
        audit.matches("attestation.publish").count(),
        2,
        "one audit entry per attestation: {audit}"
    );
}
