//! Sigstore bundles (v0.3) attached as OCI 1.1 referrers, with the real cosign 3
//! (`cosign3`, v3.1.3 from `scripts/tools.sh`) on both kinds of registry: olareg, which
//! has the referrers API, and Debian's docker-registry 2.8, which has not (the referrers
//! tag schema's `sha256-<hex>` index stands in).
//!
//! - signet signs: a local KMS RSA key signs the DSSE encoding of cosign's image
//!   signature Statement; signet publishes the bundle; `cosign3 verify --key` accepts it.
//! - cosign signs and attests: signet finds the bundles and verifies them with cosign.pub.
//! - attacks by whoever can push to the repository: a validly signed bundle about another
//!   image, attached to this one, and a bundle by a key nobody trusts, are refused by
//!   signet's reader and by cosign 3. (A registry owner's oversized referrers lists and
//!   blobs: services/registry/tests/referrers.rs.)
//! - what cosign 3 does differently: `cosign3 verify` accepts an image whose only bundle
//!   is an attestation (an SBOM) the key signed, and lists attestations among the
//!   signatures it verified; signet's `Bundle::verify_signature` takes only image
//!   signatures (`https://sigstore.dev/cosign/sign/v1`).
//!
//! The cosign 3 commands, offline (no Sigstore service; see
//! services/testkit/tests/referrers_registry.rs for how they were found):
//! `cosign3 signing-config create --out signing-config.json`, `cosign3 trusted-root create
//! --out trusted-root.json`, then `cosign3 verify --key KEY.pub --trusted-root
//! trusted-root.json --insecure-ignore-tlog=true --allow-http-registry IMAGE@DIGEST`. An
//! RSA key (PKCS#1 v1.5 signatures) needs no other flag than an ECDSA one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use signet_core::bundle::{self, Bundle, BundleError, BUNDLE_MEDIA_TYPE, SIGN_PREDICATE_TYPE};
use signet_core::{Digest, ImageRef, PublicKey, SignatureAlgorithm};
use signet_kms::KeyProvider;
use signet_registry::{PublishOutcome, RegistryClient, RegistryConfig};
use signet_testkit::image::{TestImage, OCI_INDEX};
use signet_testkit::referrers_registry::ReferrersRegistry;
use signet_testkit::registry::TestRegistry;
use signet_testkit::tools;

const TEST_REPORT: &str = "https://signet.example/test-report/v1";

/// cosign 3 with its own home, the offline signing config and trusted root, and a key
/// pair of its own (`cosign.key`, `cosign.pub`, ECDSA P-256).
struct Cosign3 {
    home: tempfile::TempDir,
}

impl Cosign3 {
    fn new() -> Self {
        let home = tempfile::tempdir().expect("cosign3 home");
        let c = Self { home };
        c.run(&["generate-key-pair"]);
        c.run(&["signing-config", "create", "--out", "signing-config.json"]);
        c.run(&["trusted-root", "create", "--out", "trusted-root.json"]);
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = tools::cosign3(self.home.path());
        cmd.args(args)
            .env("COSIGN_PASSWORD", "")
            .current_dir(self.home.path())
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cosign3 {}: {e}", args.join(" ")))
    }

    /// Runs cosign 3, fails the test unless it succeeded, returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "cosign3 {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sign(&self, reference: &str) {
        self.run(&[
            "sign",
            "--key",
            "cosign.key",
            "--signing-config",
            "signing-config.json",
            "--trusted-root",
            "trusted-root.json",
            "--allow-http-registry",
            "--yes",
            reference,
        ]);
    }

    fn attest(&self, reference: &str, predicate_type: &str, predicate: &serde_json::Value) {
        std::fs::write(self.path("predicate.json"), predicate.to_string()).expect("predicate");
        self.run(&[
            "attest",
            "--key",
            "cosign.key",
            "--signing-config",
            "signing-config.json",
            "--trusted-root",
            "trusted-root.json",
            "--allow-http-registry",
            "--yes",
            "--type",
            predicate_type,
            "--predicate",
            "predicate.json",
            reference,
        ]);
    }

    /// `cosign3 verify --key KEY` of `reference`, offline; its output either way.
    fn verify(&self, key: &Path, reference: &str) -> Output {
        self.output(&[
            "verify",
            "--key",
            key.to_str().expect("utf-8 path"),
            "--trusted-root",
            "trusted-root.json",
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            reference,
        ])
    }

    /// Checks that `cosign3 verify` accepted `reference` under `key` and that what it
    /// printed names `digest`; returns the `critical.type` of each entry it printed.
    fn verifies(&self, key: &Path, reference: &str, digest: &Digest) -> Vec<String> {
        let out = self.verify(key, reference);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cosign3 verify --key {} {reference} refused:\nstdout: {stdout}\nstderr: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Vec<serde_json::Value> =
            serde_json::from_str(stdout.trim()).expect("cosign3 verify prints a JSON list");
        assert!(!printed.is_empty(), "{stdout}");
        let mut types = Vec::new();
        for p in &printed {
            assert_eq!(
                p["critical"]["image"]["docker-manifest-digest"],
                digest.as_str()
            );
            types.push(
                p["critical"]["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        types.sort();
        types
    }

    fn refuses(&self, key: &Path, reference: &str) -> String {
        let out = self.verify(key, reference);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "cosign3 verify --key {} {reference} should have refused:\n{said}",
            key.display()
        );
        said
    }
}

/// A witness on a local KMS key (RSA-2048, PKCS#1 v1.5), its public key written as PEM.
struct Witness {
    key: Arc<dyn KeyProvider>,
    version: String,
    public: PublicKey,
    pem: PathBuf,
}

impl Witness {
    async fn new(kms_dir: &Path, name: &str) -> Self {
        let kms = signet_kms::Kms::new(signet_kms::KmsConfig::new(kms_dir));
        let key = kms.open(&format!("local://{name}")).expect("local key");
        let described = key.describe().await.expect("describe");
        let primary = described.primary().expect("primary version").clone();
        let pem = kms_dir.join(format!("{name}.pub"));
        std::fs::write(&pem, primary.public_key.to_pem()).expect("write the public key");
        Self {
            key,
            version: primary.version,
            public: primary.public_key,
            pem,
        }
    }

    /// The image signature bundle for `repository@digest`, as cosign 3 makes one.
    async fn sign(&self, repository: &str, digest: &Digest) -> Bundle {
        let signed = self
            .key
            .sign(
                &self.version,
                SignatureAlgorithm::RsaPkcs1Sha256,
                &Bundle::signing_input(repository, digest),
            )
            .await
            .expect("the KMS signs");
        Bundle::for_signature(repository, digest, &bundle::key_hint(&self.public), signed)
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryConfig::for_loopback()).expect("registry client")
}

fn image_ref(host: &str, repo: &str, digest: &Digest) -> (ImageRef, String) {
    let reference = format!("{host}/{repo}@{digest}");
    (ImageRef::parse(&reference).expect("reference"), reference)
}

async fn tags(base_url: &str, repo: &str) -> Vec<String> {
    let list: serde_json::Value = reqwest::get(format!("{base_url}/v2/{repo}/tags/list"))
        .await
        .expect("tag list")
        .json()
        .await
        .expect("tag list JSON");
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    tags.sort();
    tags
}

/// signet signs and publishes; cosign 3 verifies with the witness's public key, and not
/// with its own; publishing again adds nothing. Returns the published bundle.
async fn signet_signs_cosign3_verifies(
    host: &str,
    base_url: &str,
    expect_fallback: bool,
) -> Bundle {
    let cosign = Cosign3::new();
    let kms = tempfile::tempdir().expect("kms dir");
    let witness = Witness::new(kms.path(), "prod").await;
    let digest = TestImage::random()
        .push(host, "team/app", "v1")
        .await
        .expect("push");
    let (image, reference) = image_ref(host, "team/app", &digest);

    let signed = witness.sign(&image.repository_ref(), &digest).await;
    let published = client()
        .publish_bundle(&image, &digest, &signed)
        .await
        .expect("publish the bundle");
    assert_eq!(published.outcome, PublishOutcome::Appended);
    assert_eq!(published.fallback_tag.is_some(), expect_fallback);
    let mut expected_tags = vec!["v1".to_owned()];
    if expect_fallback {
        expected_tags.insert(0, format!("sha256-{}", digest.hex()));
    }
    assert_eq!(tags(base_url, "team/app").await, expected_tags);

    assert_eq!(
        cosign.verifies(&witness.pem, &reference, &digest),
        [SIGN_PREDICATE_TYPE]
    );
    // By tag too: cosign resolves it and finds the referrer of the digest.
    assert_eq!(
        cosign.verifies(&witness.pem, &format!("{host}/team/app:v1"), &digest),
        [SIGN_PREDICATE_TYPE]
    );
    // cosign's own key did not sign this image.
    cosign.refuses(&cosign.path("cosign.pub"), &reference);

    // The same signature again (PKCS#1 v1.5 is deterministic): nothing is added.
    let again = witness.sign(&image.repository_ref(), &digest).await;
    assert_eq!(again, signed);
    let republished = client()
        .publish_bundle(&image, &digest, &again)
        .await
        .expect("publish again");
    assert_eq!(republished.outcome, PublishOutcome::AlreadyPresent);
    assert_eq!(republished.manifest_digest, published.manifest_digest);
    let listed = client()
        .referrers(&image, &digest, Some(BUNDLE_MEDIA_TYPE))
        .await
        .expect("referrers");
    assert_eq!(listed.len(), 1, "{listed:?}");

    // signet reads back what it wrote.
    let fetched = client()
        .fetch_bundles(&image, &digest)
        .await
        .expect("fetch");
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].bytes, signed.to_bytes());
    let st = Bundle::parse(&fetched[0].bytes)
        .expect("parse")
        .verify_signature(&witness.public, &digest)
        .expect("verifies");
    assert_eq!(st.predicate_type, SIGN_PREDICATE_TYPE);

    // An attestation in the same kind of bundle: `cosign3 verify-attestation` takes it.
    let predicate = serde_json::json!({"result": "passed", "suite": "integration"});
    let statement = signet_core::attestation::Statement::for_image(
        &image.repository_ref(),
        &digest,
        TEST_REPORT,
        predicate.clone(),
    );
    let (to_sign, _) = signet_core::attestation::Envelope::signing_input(&statement);
    let attested = witness
        .key
        .sign(
            &witness.version,
            SignatureAlgorithm::RsaPkcs1Sha256,
            &to_sign,
        )
        .await
        .expect("the KMS signs");
    let attestation =
        Bundle::for_statement(&statement, &bundle::key_hint(&witness.public), attested);
    client()
        .publish_bundle(&image, &digest, &attestation)
        .await
        .expect("publish the attestation");
    let out = cosign.run(&[
        "verify-attestation",
        "--key",
        witness.pem.to_str().expect("utf-8 path"),
        "--type",
        TEST_REPORT,
        "--trusted-root",
        "trusted-root.json",
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
        &reference,
    ]);
    assert!(out.contains("payload"), "{out}");
    // The signature still verifies beside it, and signet reads both. Note that
    // `cosign3 verify` lists the attestation among the verified signatures too: it takes
    // any bundle the key signed about the digest, whatever its predicate type.
    assert_eq!(
        cosign.verifies(&witness.pem, &reference, &digest),
        [TEST_REPORT, SIGN_PREDICATE_TYPE]
    );
    assert_eq!(
        client()
            .fetch_bundles(&image, &digest)
            .await
            .expect("fetch")
            .len(),
        2
    );
    signed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signet_bundles_on_a_registry_with_the_referrers_api_pass_cosign3_verify() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let signed = signet_signs_cosign3_verifies(&registry.host(), &registry.url(), false).await;
    println!(
        "cosign 3 ({}) verified:\n{}",
        tools::bin("cosign3").display(),
        String::from_utf8_lossy(&signed.to_bytes())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signet_bundles_on_a_registry_without_it_pass_cosign3_verify_through_the_tag_index() {
    let registry = TestRegistry::start().await.expect("start docker-registry");
    signet_signs_cosign3_verifies(&registry.host(), &registry.url(), true).await;
}

/// cosign 3 signs and attests on both registries; signet lists the bundle referrers,
/// fetches them, and verifies each with cosign.pub and the image digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign3_bundles_are_found_and_verified_by_signet_on_both_registries() {
    let olareg = ReferrersRegistry::start().await.expect("start olareg");
    let distribution = TestRegistry::start().await.expect("start docker-registry");
    let cosign = Cosign3::new();
    let cosign_pub =
        PublicKey::parse(&std::fs::read(cosign.path("cosign.pub")).expect("cosign.pub"))
            .expect("cosign's key");
    let predicate = serde_json::json!({"builder": {"id": "https://ci.example/runner"}});
    for (host, with_api) in [(olareg.host(), true), (distribution.host(), false)] {
        let digest = TestImage::random()
            .push(&host, "team/app", "v1")
            .await
            .expect("push");
        let (image, reference) = image_ref(&host, "team/app", &digest);
        cosign.sign(&reference);
        cosign.attest(&reference, "https://signet.example/test/v1", &predicate);

        let c = client();
        let listed = c
            .referrers(&image, &digest, Some(BUNDLE_MEDIA_TYPE))
            .await
            .expect("referrers");
        assert_eq!(listed.len(), 2, "{host}: {listed:?}");
        if !with_api {
            // cosign wrote the referrers tag schema's index itself.
            let url = format!(
                "http://{host}/v2/team/app/manifests/sha256-{}",
                digest.hex()
            );
            let resp = reqwest::Client::new()
                .get(url)
                .header("Accept", OCI_INDEX)
                .send()
                .await
                .expect("index");
            assert_eq!(resp.status(), 200);
        }
        let fetched = c.fetch_bundles(&image, &digest).await.expect("fetch");
        assert_eq!(fetched.len(), 2, "{host}");
        let mut predicates = Vec::new();
        for f in &fetched {
            let b = Bundle::parse(&f.bytes).expect("cosign's bundle parses");
            assert_eq!(
                b.key_hint.as_deref(),
                Some(bundle::key_hint(&cosign_pub).as_str()),
                "the hint is base64(sha256(DER SPKI))"
            );
            let st = b
                .verify(&cosign_pub, &digest)
                .expect("verifies with cosign.pub");
            assert!(st.is_about(&digest));
            assert_eq!(
                f.annotations.get(bundle::PREDICATE_TYPE_ANNOTATION),
                Some(&st.predicate_type),
                "{host}"
            );
            if st.predicate_type != SIGN_PREDICATE_TYPE {
                assert_eq!(st.predicate, predicate);
            }
            predicates.push(st.predicate_type);
        }
        predicates.sort();
        assert_eq!(
            predicates,
            ["https://signet.example/test/v1", SIGN_PREDICATE_TYPE],
            "{host}"
        );
        // Bundles read under another key do not verify.
        let kms = tempfile::tempdir().expect("kms dir");
        let other = Witness::new(kms.path(), "other").await;
        for f in &fetched {
            let e = Bundle::parse(&f.bytes)
                .expect("parse")
                .verify(&other.public, &digest)
                .expect_err("another key");
            assert!(matches!(e, BundleError::BadSignature { .. }), "{e}");
        }
    }
}

/// Whoever can push to the repository attaches to image A a bundle the witness really
/// signed, but about image B (say, an old vulnerable build the witness once signed); and
/// a bundle signed by a key of their own. Neither makes A verify, for signet or cosign 3.
/// And an attestation the witness signed about image C is not a signature of C for
/// signet (cosign 3 counts it as one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_about_another_image_or_by_another_key_does_not_verify() {
    for with_api in [true, false] {
        let (olareg, distribution);
        let host = if with_api {
            olareg = ReferrersRegistry::start().await.expect("start olareg");
            olareg.host()
        } else {
            distribution = TestRegistry::start().await.expect("start docker-registry");
            distribution.host()
        };
        let cosign = Cosign3::new();
        let kms = tempfile::tempdir().expect("kms dir");
        let witness = Witness::new(kms.path(), "prod").await;
        let attacker = Witness::new(kms.path(), "attacker").await;
        let a = TestImage::random()
            .push(&host, "team/app", "a")
            .await
            .expect("push A");
        let b = TestImage::random()
            .push(&host, "team/app", "b")
            .await
            .expect("push B");
        let (image_a, reference_a) = image_ref(&host, "team/app", &a);
        let c = client();

        // The witness's genuine bundle for B, attached to A.
        let about_b = witness.sign(&image_a.repository_ref(), &b).await;
        c.publish_bundle(&image_a, &a, &about_b)
            .await
            .expect("the attacker can push it");
        // A bundle for A by the attacker's key.
        let forged = attacker.sign(&image_a.repository_ref(), &a).await;
        c.publish_bundle(&image_a, &a, &forged)
            .await
            .expect("the attacker can push it");

        let fetched = c.fetch_bundles(&image_a, &a).await.expect("fetch");
        assert_eq!(fetched.len(), 2, "both are attached to A");
        let verdicts: Vec<Result<_, BundleError>> = fetched
            .iter()
            .map(|f| {
                Bundle::parse(&f.bytes)
                    .expect("parse")
                    .verify_signature(&witness.public, &a)
            })
            .collect();
        assert!(
            verdicts
                .iter()
                .any(|v| matches!(v, Err(BundleError::WrongSubject(d)) if d == &a)),
            "{verdicts:?}"
        );
        assert!(
            verdicts
                .iter()
                .any(|v| matches!(v, Err(BundleError::BadSignature { .. }))),
            "{verdicts:?}"
        );
        assert!(verdicts.iter().all(Result::is_err), "{verdicts:?}");

        // cosign 3 refuses A under the witness key too; the attacker's key "verifies"
        // their own bundle, which is why only trusted keys are ever used.
        let said = cosign.refuses(&witness.pem, &reference_a);
        println!("cosign3 verify of A (with_api: {with_api}):\n{said}");

        // Image C has no signature, only an SBOM attestation the witness signed. signet
        // does not take it for a signature; cosign 3 does (v3.1.3: `cosign verify` checks
        // the key and the subject digest of any bundle, not its predicate type).
        let c_digest = TestImage::random()
            .push(&host, "team/app", "c")
            .await
            .expect("push C");
        let (image_c, reference_c) = image_ref(&host, "team/app", &c_digest);
        let sbom = signet_core::attestation::Statement::for_image(
            &image_c.repository_ref(),
            &c_digest,
            signet_core::attestation::SPDX,
            serde_json::json!({"spdxVersion": "SPDX-2.3"}),
        );
        let (to_sign, _) = signet_core::attestation::Envelope::signing_input(&sbom);
        let signed = witness
            .key
            .sign(
                &witness.version,
                SignatureAlgorithm::RsaPkcs1Sha256,
                &to_sign,
            )
            .await
            .expect("the KMS signs");
        c.publish_bundle(
            &image_c,
            &c_digest,
            &Bundle::for_statement(&sbom, &bundle::key_hint(&witness.public), signed),
        )
        .await
        .expect("publish the SBOM");
        let fetched = c.fetch_bundles(&image_c, &c_digest).await.expect("fetch");
        assert_eq!(fetched.len(), 1);
        let only = Bundle::parse(&fetched[0].bytes).expect("parse");
        assert!(only.verify(&witness.public, &c_digest).is_ok());
        assert_eq!(
            only.verify_signature(&witness.public, &c_digest),
            Err(BundleError::NotASignature(
                signet_core::attestation::SPDX.to_owned()
            ))
        );
        assert_eq!(
            cosign.verifies(&witness.pem, &reference_c, &c_digest),
            [signet_core::attestation::SPDX]
        );
        assert_eq!(
            cosign.verifies(&attacker.pem, &reference_a, &a),
            [SIGN_PREDICATE_TYPE]
        );
    }
}

/// Admission reads cosign 3's format: a vendor that signs with cosign 3 (Sigstore
/// bundles as referrers, no `.sig` tag at all) is a verify-only witness whose images the
/// verifier admits under an enforcing policy, on a registry with the referrers API and
/// on one without (the tag index). An image the vendor only attested (an SBOM bundle,
/// which `cosign3 verify` would accept) is denied: an attestation is not a signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_admits_images_cosign3_signed_as_bundles_and_not_attested_ones() {
    let olareg = ReferrersRegistry::start().await.expect("olareg");
    let distribution = TestRegistry::start().await.expect("docker-registry");
    let cosign = Cosign3::new();
    let mut signed = Vec::new();
    for host in [olareg.host(), distribution.host()] {
        let digest = TestImage::random()
            .push(&host, "vendor/app", "v1")
            .await
            .expect("push");
        let image = format!("{host}/vendor/app@{digest}");
        cosign.sign(&image);
        signed.push(image);
    }
    let sbom_only = {
        let digest = TestImage::random()
            .push(&olareg.host(), "vendor/sbom-only", "v1")
            .await
            .expect("push");
        let image = format!("{}/vendor/sbom-only@{digest}", olareg.host());
        cosign.attest(
            &image,
            "https://spdx.dev/Document",
            &serde_json::json!({"spdxVersion": "SPDX-2.3"}),
        );
        image
    };
    let up = signet_testkit::signet::SignetUp::start(
        common::bin(),
        &[("SIGNET_VERIFIER__CLUSTER", "c1")],
    )
    .await
    .expect("signet up");
    let key = cosign.path("cosign.pub");
    let args = [
        "witness",
        "create",
        "--name",
        "vendor",
        "--public-key",
        key.to_str().expect("utf-8"),
    ];
    common::ok(&up.cli(&args).expect("cli"), "witness create --public-key");
    common::enforce(&up, "vendor", "vendor", &sbom_only).await;
    let r = common::review(&up, "prod", &sbom_only).await;
    assert!(
        r["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unsigned")),
        "an SBOM is not a signature: {r}"
    );
    for image in &signed {
        let r = common::review(&up, "prod", image).await;
        assert_eq!(r["allowed"], true, "cosign 3's bundle admits {image}: {r}");
        // `signet verify` reads the same bundles.
        let out = common::ok(
            &up.cli(&["verify", image, "--witness", "vendor"])
                .expect("cli"),
            "signet verify of a cosign 3 bundle",
        );
        assert!(out.contains("verified: signature"), "{out}");
    }
    let out = up
        .cli(&["verify", &sbom_only, "--witness", "vendor"])
        .expect("cli");
    let msg = common::fails(&out, "signet verify of an image only attested");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("an attestation (https://spdx.dev/Document), not a signature"),
        "{stdout}\n{msg}"
    );
}

/// A witness that writes Sigstore bundles (`--format bundle`, and `both`), through the
/// real `signet up`: `cosign3 verify` accepts what the signer published as a referrer,
/// a second request adds no referrer, the verifier admits the image from the
/// `signature.published` event (the record holds the bundle's Statement), and `both`
/// is read by cosign 2 (the `.sig` tag) and cosign 3 alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_signs_as_bundles_cosign3_verifies_and_admission_follows() {
    let olareg = ReferrersRegistry::start().await.expect("olareg");
    let distribution = TestRegistry::start().await.expect("docker-registry");
    let up = signet_testkit::signet::SignetUp::start(
        common::bin(),
        &[("SIGNET_VERIFIER__CLUSTER", "c1")],
    )
    .await
    .expect("signet up");
    let cosign = Cosign3::new();
    for (name, format) in [("bundler", "bundle"), ("twice", "both")] {
        common::ok(
            &up.cli(&[
                "witness",
                "create",
                "--name",
                name,
                "--kms-key",
                &format!("local://{name}"),
                "--format",
                format,
            ])
            .expect("cli"),
            "witness create --format",
        );
    }
    let pem = |name: &str| {
        let pem = common::ok(
            &up.cli(&["witness", "export-key", name]).expect("cli"),
            "export-key",
        );
        let path = cosign.path(&format!("{name}.pub"));
        std::fs::write(&path, pem).expect("write key");
        path
    };
    let (bundler, twice) = (pem("bundler"), pem("twice"));

    // bundle only, on a registry with the referrers API
    let digest = TestImage::random()
        .push(&olareg.host(), "signet/bundled", "v1")
        .await
        .expect("push");
    let image = format!("{}/signet/bundled@{digest}", olareg.host());
    for _ in 0..2 {
        common::ok(
            &up.cli(&["sign", &image, "--witness", "bundler", "--wait"])
                .expect("cli"),
            "sign as a bundle",
        );
    }
    let out = cosign.verify(&bundler, &image);
    assert!(
        out.status.success(),
        "cosign3 verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = olareg
        .referrers("signet/bundled", &digest, Some(BUNDLE_MEDIA_TYPE))
        .await
        .expect("referrers");
    assert_eq!(
        listed["manifests"].as_array().map(Vec::len),
        Some(1),
        "two requests, one bundle: {listed}"
    );
    assert!(
        common::cosign_verifies(&image, &std::fs::read(&bundler).expect("key")).is_err(),
        "no .sig tag was written"
    );
    for args in [
        vec![
            "policy",
            "create",
            "bundled",
            "--witness",
            "bundler",
            "--cluster",
            "c1",
            "--namespace",
            "prod",
            "--mode",
            "enforce",
        ],
        vec!["policy", "enable", "bundled"],
    ] {
        common::ok(&up.cli(&args).expect("cli"), &args.join(" "));
    }
    let started = std::time::Instant::now();
    loop {
        let r = common::review(&up, "prod", &image).await;
        if r["allowed"] == true {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the bundle-signed image is not admitted: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // both, on a registry without the referrers API
    let digest = TestImage::random()
        .push(&distribution.host(), "signet/both", "v1")
        .await
        .expect("push");
    let image = format!("{}/signet/both@{digest}", distribution.host());
    common::ok(
        &up.cli(&["sign", &image, "--witness", "twice", "--wait"])
            .expect("cli"),
        "sign in both formats",
    );
    let out = cosign.verify(&twice, &image);
    assert!(
        out.status.success(),
        "cosign3 verify through the tag index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The `.sig` tag is there for what reads only that (policy-controller, Kyverno,
    // containers/image; here the `sigstore` crate's cosign verification).
    assert_eq!(
        common::sigstore_verifies(&image, &std::fs::read(&twice).expect("key")).await,
        Ok(1),
        "the .sig tag of a `both` witness"
    );
    // cosign 2.6 prefers a bundle when it finds one, even with --new-bundle-format=false,
    // and then needs a trusted root (fetched from Sigstore's TUF when online; given here).
    let out = common::cosign(cosign.home.path())
        .args(["verify", "--key"])
        .arg(&twice)
        .args([
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            "--new-bundle-format=true",
            "--trusted-root",
        ])
        .arg(cosign.path("trusted-root.json"))
        .arg(&image)
        .output()
        .expect("run cosign");
    assert!(
        out.status.success(),
        "cosign 2.6 reads the bundle: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// cosign 3 attests as Sigstore bundles (referrers), not on the `.att` tag: a policy that
/// requires SLSA provenance from one builder admits the image whose cosign 3 provenance
/// names it, denies the one whose provenance names another builder (saying which
/// condition failed), and the one only signed (missing). The vendor's key is a
/// verify-only witness; nothing of this went through signet's signer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign3_attestation_bundles_meet_a_policys_attestation_requirement() {
    const TRUSTED: &str = "https://ci.example.com/trusted-builder";
    let olareg = ReferrersRegistry::start().await.expect("olareg");
    let cosign = Cosign3::new();
    let mut images = Vec::new();
    let mut pushed = Vec::new();
    for builder in [Some(TRUSTED), Some("https://ci.example.com/laptop"), None] {
        let test_image = TestImage::random();
        let digest = test_image
            .push(&olareg.host(), "vendor/app", "v1")
            .await
            .expect("push");
        pushed.push((test_image, digest.clone()));
        let image = format!("{}/vendor/app@{digest}", olareg.host());
        cosign.sign(&image);
        if let Some(builder) = builder {
            cosign.attest(
                &image,
                "https://slsa.dev/provenance/v1",
                &serde_json::json!({
                    "buildDefinition": {"buildType": "https://ci.example.com/build/v1"},
                    "runDetails": {"builder": {"id": builder}}
                }),
            );
        }
        images.push(image);
    }
    let up = signet_testkit::signet::SignetUp::start(
        common::bin(),
        &[("SIGNET_VERIFIER__CLUSTER", "c1")],
    )
    .await
    .expect("signet up");
    let key = cosign.path("cosign.pub");
    let policy = cosign.path("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: signet.dev/v1\nkind: SecurityPolicy\nmetadata:\n  name: vendor\nspec:\n  witnesses: [vendor]\n  cluster: c1\n  namespace: prod\n  mode: enforce\n  enabled: true\n  attestations:\n    - type: slsaprovenance1\n      conditions:\n        - path: $.runDetails.builder.id\n          equals: {TRUSTED}\n"
        ),
    )
    .expect("policy file");
    for args in [
        vec![
            "witness",
            "create",
            "--name",
            "vendor",
            "--public-key",
            key.to_str().expect("utf-8"),
        ],
        vec!["apply", "-f", policy.to_str().expect("utf-8")],
    ] {
        common::ok(&up.cli(&args).expect("cli"), &args.join(" "));
    }
    common::until_denied(&up, "prod", &images[2]).await;
    let r = common::review(&up, "prod", &images[0]).await;
    assert_eq!(
        r["allowed"], true,
        "cosign 3's provenance bundle admits it: {r}"
    );
    let message = |r: &serde_json::Value| {
        r["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let r = common::review(&up, "prod", &images[1]).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("attestation does not meet the policy")
            && message(&r).contains("$.runDetails.builder.id")
            && message(&r).contains("https://ci.example.com/laptop"),
        "the denial names the condition and what it found: {r}"
    );
    let r = common::review(&up, "prod", &images[2]).await;
    assert!(
        message(&r).contains("required attestation missing")
            && message(&r).contains("https://slsa.dev/provenance/v1"),
        "only signed: {r}"
    );

    // The attack: whoever can push copies the first image's good provenance bundle onto
    // the third image as a referrer. It verifies under the vendor's key, but its
    // Statement names the first image: still missing.
    let (first, third) = (&pushed[0], &pushed[2]);
    let (first_ref, _) = image_ref(&olareg.host(), "vendor/app", &first.1);
    let provenance = client()
        .fetch_bundles(&first_ref, &first.1)
        .await
        .expect("fetch")
        .into_iter()
        .find(|f| {
            Bundle::parse(&f.bytes).is_ok_and(|b| {
                b.statement_unverified()
                    .is_ok_and(|st| st.predicate_type == "https://slsa.dev/provenance/v1")
            })
        })
        .expect("cosign 3's provenance bundle");
    olareg
        .push_artifact(
            "vendor/app",
            &third.0,
            BUNDLE_MEDIA_TYPE,
            &provenance.bytes,
            &[(
                "dev.sigstore.bundle.predicateType",
                "https://slsa.dev/provenance/v1",
            )],
        )
        .await
        .expect("attach the copy");
    // The last read of the third image's attestations is kept for negative_ttl (5 s):
    // past it, the registry is read again and the copy is found, and refused.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let r = common::review(&up, "prod", &images[2]).await;
    assert!(
        message(&r).contains("required attestation missing"),
        "a copied provenance bundle names another image: {r}"
    );
}
