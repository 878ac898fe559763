//! `signet verify IMAGE (--witness W | --key PEM)`: fetches the signatures from the
//! registry (cosign's `.sig` tag; Sigstore bundles attached as OCI 1.1 referrers, as
//! cosign 3 writes them; Notation signatures, as `notation sign` writes them) and checks each one here, the way a cosign verifier does: the payload is
//! parsed strictly, it must name this digest, and the signature must verify under one of
//! the keys. Whether it must also name this repository is the rule admission applies
//! ([`signet_core::ReferenceRule`]): not by default, since `cosign copy` moves signatures
//! between repositories; `--require-repository` asks for it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use signet_core::{Digest, ImageRef, PublicKey, ReferenceRule, SignatureAlgorithm, SimpleSigning};
use signet_registry::{ReferrerKind, ReferrerLimits, RegistryClient, SignatureLayer};

use super::Context;
use crate::output::{self, field, s, Format};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    image: String,
    /// Verify against this witness's live key versions (fetched from the gateway).
    #[arg(long, required_unless_present = "key", conflicts_with = "key")]
    witness: Option<String>,
    /// Verify against a PEM public key file instead.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Signature algorithm for --key: RSA_PKCS1_SHA256 (default for RSA keys),
    /// RSA_PSS_SHA256, or ECDSA_P256_SHA256 (the default for P-256 keys).
    #[arg(long, requires = "key")]
    algorithm: Option<String>,
    /// Also require the payload's docker-reference to name this image's repository.
    /// Admission does not (signatures count by digest and key, and `cosign copy` keeps
    /// the original repository in copied signatures).
    #[arg(long)]
    require_repository: bool,
}

/// A key to check against, with a name for the report.
struct TrustedKey {
    label: String,
    key: PublicKey,
    algorithm: SignatureAlgorithm,
}

/// Why signet revoked the signatures on the digest, by key fingerprint (witness mode).
type Revoked = std::collections::HashMap<String, String>;

pub async fn run(ctx: &Context, a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let image = ImageRef::parse(&a.image)?;
    let keys = load_keys(ctx, &a).await?;
    // Run by a person on their own machine for an image they name, like `signet up`:
    // loopback registries are allowed on top of registry.allowed_hosts.
    let registry = RegistryClient::new(
        signet_registry::RegistryConfig::from_settings(&ctx.settings)?.allow_loopback(),
    )?;
    let digest = match image.digest() {
        Some(d) => d.clone(),
        None => registry.resolve(&image).await?,
    };
    let layers = registry.fetch_signatures(&image, &digest).await?;
    let referrers = registry
        .fetch_referrers_within(
            &image,
            &digest,
            &[ReferrerKind::Bundle, ReferrerKind::Notation],
            ReferrerLimits::DEFAULT,
        )
        .await?
        .fetched;
    let revoked = match &a.witness {
        Some(w) => revoked_signatures(ctx, &image, &digest, w).await?,
        None => Revoked::new(),
    };
    let rule = if a.require_repository {
        ReferenceRule::SameRepository
    } else {
        ReferenceRule::default()
    };
    let mut checks: Vec<_> = layers
        .iter()
        .enumerate()
        .map(|(i, layer)| check_layer(i, layer, &image, &digest, rule, &keys, &revoked))
        .collect();
    checks.extend(referrers.iter().enumerate().map(|(i, r)| {
        let n = layers.len() + i + 1;
        match r.kind {
            ReferrerKind::Bundle => check_bundle(n, &r.bytes, &digest, &keys, &revoked),
            ReferrerKind::Notation => {
                check_notation(n, &r.media_type, &r.bytes, &digest, &keys, &revoked)
            }
        }
    }));
    let verified: Vec<_> = checks.iter().filter_map(|c| c.as_ref().ok()).collect();
    match ctx.format {
        Format::Json => output::json(&json!({
            "image": image.to_string(),
            "digest": digest,
            "verified": !verified.is_empty(),
            "signatures": checks.iter().map(|c| match c {
                Ok(v) => v.clone(),
                Err(e) => json!({"verified": false, "reason": e}),
            }).collect::<Vec<_>>(),
        })),
        Format::Text => {
            field("image:", &image);
            field("digest:", &digest);
            if layers.is_empty() && referrers.is_empty() {
                println!(
                    "no signatures found at {}:{}, nor Sigstore bundles or Notation signatures among its referrers",
                    image.repository_ref(),
                    digest.signature_tag()
                );
            }
            for c in &checks {
                match c {
                    Ok(v) => println!("verified: signature {} by {}", s(&v["layer"]), s(&v["key"])),
                    Err(e) => println!("rejected: {e}"),
                }
            }
        }
    }
    if verified.is_empty() {
        eprintln!(
            "verification failed: no valid signature on {image} ({digest}) from the given key(s)"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn load_keys(ctx: &Context, a: &VerifyArgs) -> anyhow::Result<Vec<TrustedKey>> {
    if let Some(path) = &a.key {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        let key = PublicKey::parse(&pem).with_context(|| format!("key file {}", path.display()))?;
        let algorithm = match &a.algorithm {
            Some(name) => SignatureAlgorithm::parse(name).with_context(|| {
                format!("algorithm {name:?} is not RSA_PKCS1_SHA256, RSA_PSS_SHA256 or ECDSA_P256_SHA256")
            })?,
            // What the key can check: ECDSA for a P-256 key (cosign generate-key-pair),
            // PKCS#1 v1.5 for RSA.
            None => key.default_algorithm(),
        };
        return Ok(vec![TrustedKey {
            label: format!("{} ({})", path.display(), key.fingerprint()),
            key,
            algorithm,
        }]);
    }
    let name = a.witness.as_deref().unwrap_or_default();
    let (_, w): (_, Value) = ctx
        .client
        .call::<(), _>(
            Method::GET,
            &format!("/v1/witnesses/{name}"),
            None,
            Duration::from_secs(30),
        )
        .await?;
    let witness: signet_core::Witness =
        serde_json::from_value(w).context("the gateway sent a witness this CLI cannot read")?;
    let keys: Vec<_> = witness
        .live_versions()
        .map(|v| TrustedKey {
            label: format!(
                "witness {} key version {} ({})",
                witness.name, v.version, v.fingerprint
            ),
            key: v.public_key.clone(),
            algorithm: witness.algorithm,
        })
        .collect();
    if keys.is_empty() {
        anyhow::bail!("witness {name:?} has no live key versions (revoked?)");
    }
    Ok(keys)
}

/// The witness's signatures on `digest` that signet revoked: their layers stay in the
/// registry and still verify, so only the control plane can say.
async fn revoked_signatures(
    ctx: &Context,
    image: &ImageRef,
    digest: &Digest,
    witness: &str,
) -> anyhow::Result<Revoked> {
    let pinned = format!("{}@{digest}", image.repository_ref());
    let path = format!(
        "/v1/signatures?image={}&witness={}",
        crate::commands::urlencode(&pinned),
        crate::commands::urlencode(witness)
    );
    let (_, v): (_, Value) = ctx
        .client
        .call::<(), _>(Method::GET, &path, None, Duration::from_secs(30))
        .await?;
    Ok(v["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["revoked"].is_object())
        .map(|r| {
            (
                s(&r["key_fingerprint"]).to_owned(),
                format!(
                    "revoked by {} at {} ({})",
                    s(&r["revoked"]["by"]),
                    s(&r["revoked"]["at"]),
                    s(&r["revoked"]["reason"])
                ),
            )
        })
        .collect())
}

/// A Sigstore bundle (cosign 3): it must be an image signature (not an attestation)
/// whose Statement names this digest, signed by one of the keys. `n` numbers it in the
/// report.
fn check_bundle(
    n: usize,
    bytes: &[u8],
    digest: &Digest,
    keys: &[TrustedKey],
    revoked: &Revoked,
) -> Result<Value, String> {
    let bundle = signet_core::bundle::Bundle::parse(bytes)
        .map_err(|e| format!("signature {n} (bundle): {e}"))?;
    let mut last = String::from("does not verify under any given key");
    let key = keys
        .iter()
        .find(|k| match bundle.verify_with(&k.key, k.algorithm, digest) {
            Ok(st) if st.predicate_type == signet_core::bundle::SIGN_PREDICATE_TYPE => true,
            Ok(st) => {
                last = format!("an attestation ({}), not a signature", st.predicate_type);
                false
            }
            Err(e) => {
                if !matches!(e, signet_core::bundle::BundleError::BadSignature { .. }) {
                    last = e.to_string();
                }
                false
            }
        })
        .ok_or_else(|| format!("signature {n} (bundle): {last}"))?;
    accepted(n, "bundle", key, revoked)
}

/// A Notary Project signature (`notation sign`, JWS or COSE): the certificate must hold
/// one of the keys (a verify-only witness made from it, or `--key CERT`), the signature
/// verify, certificate and signature be valid now, and the signed descriptor name this
/// digest.
fn check_notation(
    n: usize,
    media_type: &str,
    bytes: &[u8],
    digest: &Digest,
    keys: &[TrustedKey],
    revoked: &Revoked,
) -> Result<Value, String> {
    let sig = signet_core::notation::NotationSignature::parse(media_type, bytes)
        .map_err(|e| format!("signature {n} (notation): {e}"))?;
    let mut last = String::from("its certificate holds none of the given keys");
    let key = keys
        .iter()
        .find(|k| match sig.verify(&k.key) {
            Ok(target) if target.digest == *digest => true,
            Ok(target) => {
                last = format!("signs {}, another image", target.digest);
                false
            }
            Err(signet_core::notation::NotationError::KeyMismatch { .. }) => false,
            Err(e) => {
                last = e.to_string();
                false
            }
        })
        .ok_or_else(|| format!("signature {n} (notation): {last}"))?;
    accepted(n, "notation", key, revoked)
}

/// A signature that verified under `key`, unless signet revoked it.
fn accepted(n: usize, format: &str, key: &TrustedKey, revoked: &Revoked) -> Result<Value, String> {
    if let Some(why) = revoked.get(&key.key.fingerprint()) {
        return Err(format!(
            "signature {n} ({format}): verifies under {}, but signet {why}",
            key.label
        ));
    }
    Ok(json!({
        "verified": true,
        "layer": n,
        "format": format,
        "key": key.label,
    }))
}

fn check_layer(
    index: usize,
    layer: &SignatureLayer,
    image: &ImageRef,
    digest: &Digest,
    rule: ReferenceRule,
    keys: &[TrustedKey],
    revoked: &Revoked,
) -> Result<Value, String> {
    let n = index + 1;
    let payload =
        SimpleSigning::parse_strict(&layer.payload).map_err(|e| format!("signature {n}: {e}"))?;
    payload
        .covers(&image.repository_ref(), digest, rule)
        .map_err(|e| format!("signature {n}: {e}"))?;
    let key = keys
        .iter()
        .find(|k| {
            k.key
                .verify(k.algorithm, &layer.payload, &layer.signature)
                .is_ok()
        })
        .ok_or_else(|| format!("signature {n}: does not verify under any given key"))?;
    if let Some(why) = revoked.get(&key.key.fingerprint()) {
        return Err(format!(
            "signature {n}: verifies under {}, but signet {why}",
            key.label
        ));
    }
    Ok(json!({
        "verified": true,
        "layer": n,
        "key": key.label,
        "annotations": payload.optional,
    }))
}
