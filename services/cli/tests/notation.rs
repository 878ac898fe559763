//! Notation signatures (Notary Project, JWS and COSE envelopes) made by the real
//! `notation` CLI (v1.3.2 from `scripts/tools.sh`) on olareg, which has the OCI 1.1
//! referrers API, read back by signet and checked under a verify-only witness's key.
//!
//! - `notation cert generate-test --default NAME` makes an RSA-2048 key and a self-signed
//!   code-signing certificate valid one day, which it also puts in its trust store
//!   (`truststore/x509/ca/NAME/NAME.crt`). That certificate file is what a user moving
//!   from Ratify has; `signet witness create --public-key` takes it as the witness's key.
//! - `notation sign --insecure-registry --force-referrers-tag=false HOST/REPO@DIGEST`
//!   (`--signature-format cose` for COSE, `--expiry DURATION` for a signature that
//!   expires) pushes the signature as a referrer of the image; signet finds it with the
//!   referrers API filtered by artifact type `application/vnd.cncf.notary.signature`.
//! - What signet must refuse: another certificate's key, a payload changed to name
//!   another image, a certificate no longer valid, an expired signature, and a validly
//!   signed envelope about one image attached to another (its descriptor names the first).

mod common;

use std::path::PathBuf;
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use common::{bin, fails, ok};
use signet_core::notation::{
    EnvelopeFormat, NotationAlgorithm, NotationError, NotationSignature, COSE_MEDIA_TYPE,
    JWS_MEDIA_TYPE, NOTARY_SIGNATURE_ARTIFACT_TYPE, THUMBPRINT_ANNOTATION,
};
use signet_core::{Digest, PublicKey};
use signet_testkit::image::{TestImage, OCI_MANIFEST};
use signet_testkit::referrers_registry::ReferrersRegistry;
use signet_testkit::registry::TestRegistry;
use signet_testkit::signet::SignetUp;
use signet_testkit::tools;

/// notation with its own home and one test key, the default signing key.
struct Notation {
    home: tempfile::TempDir,
    name: &'static str,
}

impl Notation {
    fn new(name: &'static str) -> Self {
        let n = Self {
            home: tempfile::tempdir().expect("notation home"),
            name,
        };
        n.run(&["cert", "generate-test", "--default", name]);
        n
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = tools::notation(self.home.path());
        cmd.args(args).stdin(std::process::Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self
            .cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run notation {}: {e}", args.join(" ")));
        ok(&out, &format!("notation {}", args.join(" ")))
    }

    /// `notation sign` of `reference` with the test key, by the referrers API only.
    fn sign(&self, reference: &str, extra: &[&str]) {
        let mut args = vec!["sign", "--insecure-registry", "--force-referrers-tag=false"];
        args.extend_from_slice(extra);
        args.push(reference);
        self.run(&args);
    }

    /// The certificate in notation's trust store: what a Ratify user has to hand.
    fn certificate(&self) -> PathBuf {
        self.home
            .path()
            .join(".config/notation/truststore/x509/ca")
            .join(self.name)
            .join(format!("{}.crt", self.name))
    }

    /// The witness key signet takes from that certificate.
    fn key(&self) -> PublicKey {
        PublicKey::parse(&std::fs::read(self.certificate()).expect("certificate"))
            .expect("the certificate's key")
    }
}

/// A Notation signature as found through the referrers API.
struct Found {
    manifest: serde_json::Value,
    media_type: String,
    envelope: Vec<u8>,
}

/// Every Notation signature of `digest` in `repo`, with its manifest and envelope.
async fn notation_signatures(
    registry: &ReferrersRegistry,
    repo: &str,
    digest: &Digest,
) -> Vec<Found> {
    let index = registry
        .referrers(repo, digest, Some(NOTARY_SIGNATURE_ARTIFACT_TYPE))
        .await
        .expect("referrers");
    let mut found = Vec::new();
    for listed in index["manifests"].as_array().into_iter().flatten() {
        assert_eq!(
            listed["artifactType"], NOTARY_SIGNATURE_ARTIFACT_TYPE,
            "{index:#}"
        );
        let manifest = registry
            .manifest(repo, &digest_of(listed))
            .await
            .expect("signature manifest");
        let layers = manifest["layers"].as_array().expect("layers");
        assert_eq!(layers.len(), 1, "{manifest:#}");
        let envelope = registry
            .blob(repo, &digest_of(&layers[0]))
            .await
            .expect("envelope");
        found.push(Found {
            media_type: layers[0]["mediaType"]
                .as_str()
                .expect("layer media type")
                .to_owned(),
            manifest,
            envelope,
        });
    }
    found
}

fn digest_of(descriptor: &serde_json::Value) -> Digest {
    Digest::parse(descriptor["digest"].as_str().expect("descriptor digest")).expect("digest")
}

/// The envelope with every occurrence of `from`'s hex replaced by `to`'s: the payload
/// then names another image, whatever the encoding (JWS payloads are base64url, so that
/// one is decoded, changed and encoded again).
fn retarget(found: &Found, from: &Digest, to: &Digest) -> Vec<u8> {
    if found.media_type == JWS_MEDIA_TYPE {
        let mut jws: serde_json::Value = serde_json::from_slice(&found.envelope).expect("json");
        let payload = URL_SAFE_NO_PAD
            .decode(jws["payload"].as_str().expect("payload"))
            .expect("base64url");
        let payload = String::from_utf8(payload)
            .expect("utf-8")
            .replace(from.hex(), to.hex());
        jws["payload"] = URL_SAFE_NO_PAD.encode(payload).into();
        return jws.to_string().into_bytes();
    }
    let (from, to) = (from.hex().as_bytes(), to.hex().as_bytes());
    let mut bytes = found.envelope.clone();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the COSE payload names the image");
    bytes[at..at + from.len()].copy_from_slice(to);
    bytes
}

#[tokio::test]
async fn notation_jws_and_cose_signatures_verify_under_the_certificates_key() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let host = registry.host();
    let image = TestImage::random();
    let digest = image.push(&host, "app", "v1").await.expect("push");
    let other_image = TestImage::random();
    let other = other_image.push(&host, "app", "v2").await.expect("push");
    let alice = Notation::new("alice");
    let bob = Notation::new("bob");
    let reference = format!("{host}/app@{digest}");
    alice.sign(&reference, &[]);
    alice.sign(&reference, &["--signature-format", "cose"]);

    let found = notation_signatures(&registry, "app", &digest).await;
    let mut formats: Vec<&str> = found.iter().map(|f| f.media_type.as_str()).collect();
    formats.sort_unstable();
    assert_eq!(formats, [COSE_MEDIA_TYPE, JWS_MEDIA_TYPE]);

    for f in &found {
        println!("{} signature manifest:\n{:#}", f.media_type, f.manifest);
        assert_eq!(f.manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(
            f.manifest["config"]["mediaType"],
            NOTARY_SIGNATURE_ARTIFACT_TYPE
        );
        assert_eq!(f.manifest["subject"]["digest"], digest.as_str());

        let sig = NotationSignature::parse(&f.media_type, &f.envelope).expect("parse");
        assert_eq!(
            sig.format(),
            if f.media_type == JWS_MEDIA_TYPE {
                EnvelopeFormat::Jws
            } else {
                EnvelopeFormat::Cose
            }
        );
        // generate-test makes RSA-2048 keys, which sign with PS256.
        assert_eq!(sig.algorithm(), NotationAlgorithm::Ps256);
        assert!(
            sig.signing_agent()
                .is_some_and(|a| a.starts_with("notation-go/")),
            "{:?}",
            sig.signing_agent()
        );
        assert_eq!(sig.expiry(), None);
        assert_eq!(sig.certificates().len(), 1);
        // The manifest annotation lists the chain's thumbprints, as the envelope has it.
        let thumbprints: Vec<String> = serde_json::from_str(
            f.manifest["annotations"][THUMBPRINT_ANNOTATION]
                .as_str()
                .expect("thumbprint annotation"),
        )
        .expect("a JSON list");
        assert_eq!(thumbprints, sig.chain_thumbprints());
        let (not_before, not_after) = sig.leaf_validity();
        assert!(not_before <= sig.signing_time() && sig.signing_time() <= not_after);
        assert!((Utc::now() - sig.signing_time()).num_minutes().abs() < 10);

        // Under the key of the certificate notation put in its trust store.
        let target = sig
            .verify(&alice.key())
            .expect("verifies under alice's key");
        assert_eq!(target.digest, digest);
        assert_eq!(target.media_type, OCI_MANIFEST);
        assert_eq!(target.size, image.manifest().len() as u64);

        // Another certificate's key.
        let e = sig.verify(&bob.key());
        assert!(matches!(e, Err(NotationError::KeyMismatch { .. })), "{e:?}");

        // The payload changed to name another image.
        let tampered = NotationSignature::parse(&f.media_type, &retarget(f, &digest, &other))
            .expect("still well-formed");
        let e = tampered.verify(&alice.key());
        assert!(
            matches!(e, Err(NotationError::BadSignature { .. })),
            "{e:?}"
        );

        // generate-test certificates are valid for a day; with no authentic timestamp,
        // the signature is refused once the certificate has expired, and before it began.
        let e = sig.verify_at(&alice.key(), not_after + Duration::seconds(1));
        assert!(
            matches!(e, Err(NotationError::CertificateNotValidNow { .. })),
            "{e:?}"
        );
        let e = sig.verify_at(&alice.key(), not_before - Duration::seconds(1));
        assert!(
            matches!(e, Err(NotationError::CertificateNotValidNow { .. })),
            "{e:?}"
        );
    }

    // What notation wrote, for the record.
    let jws = found
        .iter()
        .find(|f| f.media_type == JWS_MEDIA_TYPE)
        .expect("the JWS signature");
    let envelope: serde_json::Value = serde_json::from_slice(&jws.envelope).expect("json");
    let protected = URL_SAFE_NO_PAD
        .decode(envelope["protected"].as_str().expect("protected"))
        .expect("base64url");
    println!(
        "JWS protected header: {}\nJWS unprotected header keys: {:?}",
        String::from_utf8_lossy(&protected),
        envelope["header"]
            .as_object()
            .map(|h| h.keys().collect::<Vec<_>>())
    );

    // Whoever can push to the repository can attach alice's envelope to another image;
    // it still verifies, and what it names is the first image, which the reader compares.
    registry
        .push_artifact(
            "app",
            &other_image,
            NOTARY_SIGNATURE_ARTIFACT_TYPE,
            &jws.envelope,
            &[],
        )
        .await
        .expect("attach the copy");
    let copied = notation_signatures(&registry, "app", &other).await;
    assert_eq!(copied.len(), 1);
    let target = NotationSignature::parse(JWS_MEDIA_TYPE, &copied[0].envelope)
        .expect("parse")
        .verify(&alice.key())
        .expect("alice did sign it");
    assert_eq!(target.digest, digest);
    assert_ne!(target.digest, other);
}

#[tokio::test]
async fn a_notation_signature_with_an_expiry_is_refused_once_expired() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let digest = TestImage::random()
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let alice = Notation::new("alice");
    let reference = format!("{}/app@{digest}", registry.host());
    alice.sign(&reference, &["--expiry", "2h"]);
    alice.sign(
        &reference,
        &["--expiry", "2h", "--signature-format", "cose"],
    );

    let found = notation_signatures(&registry, "app", &digest).await;
    assert_eq!(found.len(), 2);
    for f in &found {
        let sig = NotationSignature::parse(&f.media_type, &f.envelope).expect("parse");
        let expiry: DateTime<Utc> = sig.expiry().expect("notation wrote an expiry");
        assert_eq!(
            expiry - sig.signing_time(),
            Duration::hours(2),
            "{}",
            f.media_type
        );
        assert_eq!(
            sig.verify(&alice.key()).expect("not expired yet").digest,
            digest
        );
        assert_eq!(
            sig.verify_at(&alice.key(), expiry),
            Err(NotationError::Expired(expiry))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_only_witness_is_created_from_the_notation_certificate() {
    let registry = ReferrersRegistry::start().await.expect("start olareg");
    let digest = TestImage::random()
        .push(&registry.host(), "app", "v1")
        .await
        .expect("push");
    let alice = Notation::new("alice");
    let bob = Notation::new("bob");
    alice.sign(&format!("{}/app@{digest}", registry.host()), &[]);
    let up = SignetUp::start(bin(), &[]).await.expect("signet up");

    let certificate = alice.certificate();
    let json = ok(
        &up.cli(&[
            "--output",
            "json",
            "witness",
            "create",
            "--name",
            "notary",
            "--public-key",
            certificate.to_str().expect("utf-8 path"),
        ])
        .expect("cli"),
        "witness create --public-key CERTIFICATE",
    );
    let witness: serde_json::Value = serde_json::from_str(&json).expect("json");
    println!("the witness: {witness:#}");
    // The witness holds the certificate's key: its fingerprint is the key's SPKI hash.
    assert_eq!(witness["fingerprint"], alice.key().fingerprint().as_str());
    assert!(
        witness["kms_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("pubkey:sha256:")),
        "{witness}"
    );
    let stored = PublicKey::parse(
        witness["public_key"]
            .as_str()
            .expect("the witness's public key")
            .as_bytes(),
    )
    .expect("a PEM key");
    assert_eq!(stored, alice.key());

    // The key signet stored verifies what notation signed.
    let found = notation_signatures(&registry, "app", &digest).await;
    assert_eq!(found.len(), 1);
    let sig = NotationSignature::parse(&found[0].media_type, &found[0].envelope).expect("parse");
    assert_eq!(sig.verify(&stored).expect("verifies").digest, digest);

    // A file with two certificates names no one key: refused.
    let both = alice.home.path().join("both.crt");
    let mut pem = std::fs::read(alice.certificate()).expect("alice");
    pem.extend(std::fs::read(bob.certificate()).expect("bob"));
    std::fs::write(&both, pem).expect("write");
    let msg = fails(
        &up.cli(&[
            "witness",
            "create",
            "--name",
            "both",
            "--public-key",
            both.to_str().expect("utf-8 path"),
        ])
        .expect("cli"),
        "witness create from two certificates",
    );
    assert!(msg.contains("2 certificates"), "{msg}");
}

/// A team moving from Ratify keeps its Notation signatures: the certificate becomes a
/// verify-only witness, an enforcing policy names it, and the verifier admits what
/// `notation sign` signed, JWS and COSE, through the referrers API (olareg) and through
/// the referrers tag schema (docker-registry 2.8, no API). `signet verify` reads the
/// same signatures. Denied: an image signed by another certificate, and (the attack) an
/// image to which someone with push access attached a copy of a valid envelope from
/// another image; its signature verifies, but names the other image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signatures_are_admitted_under_a_verify_only_witness_and_copies_are_not() {
    let olareg = ReferrersRegistry::start().await.expect("start olareg");
    let distribution = TestRegistry::start().await.expect("docker-registry");
    let alice = Notation::new("alice");
    let bob = Notation::new("bob");
    let push = |host: String, repo: &'static str| async move {
        let image = TestImage::random();
        let digest = image.push(&host, repo, "v1").await.expect("push");
        (image, format!("{host}/{repo}@{digest}"), digest)
    };
    let (_, jws, jws_digest) = push(olareg.host(), "team/jws").await;
    alice.sign(&jws, &[]);
    let (_, cose, _) = push(olareg.host(), "team/cose").await;
    alice.sign(&cose, &["--signature-format", "cose"]);
    let (_, by_bob, _) = push(olareg.host(), "team/bob").await;
    bob.sign(&by_bob, &[]);
    // docker-registry has no referrers API: notation keeps the sha256-<hex> index.
    let (_, tagged, _) = push(distribution.host(), "team/tagged").await;
    alice.run(&[
        "sign",
        "--insecure-registry",
        "--force-referrers-tag=true",
        &tagged,
    ]);
    // The attack: alice's valid JWS envelope, attached to another image in the same
    // repository as a well-formed Notation signature referrer.
    let (copy_image, copy, _) = push(olareg.host(), "team/jws").await;
    let envelope = notation_signatures(&olareg, "team/jws", &jws_digest)
        .await
        .into_iter()
        .next()
        .expect("alice's signature")
        .envelope;
    olareg
        .push_referrer(
            "team/jws",
            &copy_image,
            NOTARY_SIGNATURE_ARTIFACT_TYPE,
            JWS_MEDIA_TYPE,
            &envelope,
            &[],
        )
        .await
        .expect("attach the copy");

    let up = SignetUp::start(bin(), &[("SIGNET_VERIFIER__CLUSTER", "c1")])
        .await
        .expect("signet up");
    let certificate = alice.certificate();
    let args = [
        "witness",
        "create",
        "--name",
        "notary",
        "--public-key",
        certificate.to_str().expect("utf-8 path"),
    ];
    ok(&up.cli(&args).expect("cli"), "witness create --public-key");
    common::enforce(&up, "ratify-moved", "notary", &by_bob).await;
    for image in [&jws, &cose, &tagged] {
        let r = common::review(&up, "prod", image).await;
        assert_eq!(
            r["allowed"], true,
            "notation's signature admits {image}: {r}"
        );
        let out = ok(
            &up.cli(&["verify", image, "--witness", "notary"])
                .expect("cli"),
            "signet verify of a Notation signature",
        );
        assert!(out.contains("verified: signature"), "{out}");
    }
    for (image, what) in [(&by_bob, "signed by bob"), (&copy, "a copied envelope")] {
        let r = common::review(&up, "prod", image).await;
        assert_eq!(r["allowed"], false, "{what} must be denied: {r}");
        println!("{what}: {}", r["status"]["message"]);
        assert!(
            r["status"]["message"].as_str().is_some_and(|m| m.contains(
                "invalid signature: 1 Notation signature(s) among its referrers, none valid for witness notary"
            )),
            "the denial says what was found: {r}"
        );
    }
    let out = up
        .cli(&["verify", &copy, "--witness", "notary"])
        .expect("cli");
    let msg = fails(&out, "signet verify of a copied Notation envelope");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("signs {jws_digest}, another image")),
        "{stdout}\n{msg}"
    );
    let out = up
        .cli(&["verify", &by_bob, "--witness", "notary"])
        .expect("cli");
    let msg = fails(&out, "signet verify of another certificate's signature");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("its certificate holds none of the given keys"),
        "{stdout}\n{msg}"
    );
}
