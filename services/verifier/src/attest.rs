//! Attestations at admission: a policy may require, besides its witnesses' signatures,
//! in-toto attestations about the image (SLSA provenance from a given builder, an SBOM
//! without a forbidden package, ...) signed by one of those witnesses.
//!
//! What the verifier believes of an attestation it has checked itself: the DSSE
//! envelope's signature verifies, over DSSE's pre-authentication encoding, under a live
//! key of the trust bundle, and the Statement inside names the image's digest. The layer
//! annotations of the registry's `.att` artifact are never trusted, only the envelope.
//! The envelopes come from the `.att` tag (cosign 2, signet) and from Sigstore bundles
//! attached as OCI 1.1 referrers (cosign 3's `cosign attest`); a bundle is the same DSSE
//! envelope with its verification material, checked the same way.
//! Verified attestations are cached per digest: `attestation.published` events fill the
//! cache as `signature.published` events fill the signature cache, and a review the cache
//! cannot satisfy reads the registry (at most once per `negative_ttl` per digest) before
//! it denies, so an attestation made elsewhere (by `cosign attest` with a verify-only
//! witness's key) counts too.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use signet_core::attestation::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use signet_core::bundle::{Bundle, SIGN_PREDICATE_TYPE};
use signet_core::{AttestationRecord, DenialReason, Digest, ImageRef};
use signet_registry::{ReferrerKind, ReferrerLimits, SignatureLimits};
use tokio::time::Instant;

use crate::trust::{digest_id, key_id, CompiledPolicy, Failure, KeyId, Snapshot, Trust};

/// How much of an `.att` artifact a review reads: SBOMs are large, but a review must
/// stay within its budget and a hostile artifact must not cost more.
const LIMITS: SignatureLimits = SignatureLimits {
    max_layers: 32,
    max_payload_bytes: 2 << 20,
};

/// How many attestation bundles (cosign 3) a review reads, and how large each may be:
/// as for the `.att` tag.
const BUNDLE_LIMITS: ReferrerLimits = ReferrerLimits {
    max_referrers: 32,
    max_blob_bytes: 2 << 20,
};

/// One attestation whose envelope verified under a bundle key and whose Statement names
/// the digest.
#[derive(Debug, Clone)]
pub struct VerifiedAttestation {
    pub key: KeyId,
    pub witness: Arc<str>,
    pub predicate_type: String,
    pub predicate: Arc<serde_json::Value>,
}

/// What the verifier knows of a digest's attestations.
#[derive(Debug, Default)]
pub struct AttestationSet {
    pub items: Vec<VerifiedAttestation>,
    /// When the registry was last read for them (`None`: only events so far).
    pub fetched: Option<StdInstant>,
}

impl Trust {
    /// Learns an attestation from an `attestation.published` event: kept only if its
    /// signature verifies under the bundle key the record names and its Statement is
    /// about the record's digest.
    pub async fn learn_attestation(&self, record: &AttestationRecord) -> Result<(), String> {
        let snapshot = self.snapshot();
        let id = key_id(&record.key_fingerprint).ok_or("unreadable key fingerprint")?;
        let key = snapshot
            .keys
            .get(&id)
            .ok_or("a key this cluster's bundle does not list")?;
        if !key.live || *key.witness != *record.witness {
            return Err("a revoked key, or another witness's".into());
        }
        let envelope = record.envelope();
        if !envelope.verify(&key.public_key, key.algorithm) {
            return Err("the signature does not verify".into());
        }
        let verified = verified(&envelope, &record.digest, id, &key.witness)
            .ok_or("the statement is not about the record's digest")?;
        let d = digest_id(&record.digest);
        let mut set = AttestationSet::default();
        if let Some(old) = self.attestations.get(&d).await {
            set.items.clone_from(&old.items);
            set.fetched = old.fetched;
        }
        if !set.items.iter().any(|a| same(a, &verified)) {
            set.items.push(verified);
        }
        self.attestations.insert(d, Arc::new(set)).await;
        Ok(())
    }

    /// Whether `digest` carries every attestation `policy` requires; the failure says
    /// which requirement and, for a condition, which one and what was found.
    pub async fn check_attestations(
        &self,
        snapshot: &Snapshot,
        policy: &CompiledPolicy,
        image: &ImageRef,
        digest: &Digest,
        deadline: Instant,
    ) -> Option<Failure> {
        if policy.policy.attestations.is_empty() {
            return None;
        }
        let d = digest_id(digest);
        let cached = self.attestations.get(&d).await;
        if let Some(set) = &cached {
            match evaluate(snapshot, policy, d, set) {
                Ok(()) => return None,
                // Read the registry again only once the last read is old enough.
                Err(f)
                    if set
                        .fetched
                        .is_some_and(|t| t.elapsed() < self.attestation_refetch) =>
                {
                    return Some(f)
                }
                Err(_) => {}
            }
        }
        // Boxed: the registry path makes a large future, which every check (cache hits
        // included) would otherwise carry and copy.
        Box::pin(self.read_attestations(snapshot, policy, image, digest, cached, deadline)).await
    }

    /// [`Trust::check_attestations`] when the cache cannot decide: the registry's word.
    async fn read_attestations(
        &self,
        snapshot: &Snapshot,
        policy: &CompiledPolicy,
        image: &ImageRef,
        digest: &Digest,
        cached: Option<Arc<AttestationSet>>,
        deadline: Instant,
    ) -> Option<Failure> {
        let d = digest_id(digest);
        // cosign 2 (and signet) attach attestations to the `.att` tag; cosign 3 attaches
        // each as a Sigstore bundle referrer. Both are read, side by side.
        let read = tokio::time::timeout_at(deadline, async {
            tokio::join!(
                self.registry.fetch_attestations(image, digest, LIMITS),
                self.registry.fetch_referrers_within(
                    image,
                    digest,
                    &[ReferrerKind::Bundle],
                    BUNDLE_LIMITS
                ),
            )
        })
        .await;
        let (layers, bundles) = match read {
            Ok((Ok(layers), bundles)) => (layers, bundles),
            Ok((Err(e), _)) => {
                return Some(Failure::new(
                    DenialReason::RegistryUnreachable,
                    format!("cannot read the image's attestations: {e}"),
                ))
            }
            Err(_) => {
                return Some(Failure::new(
                    DenialReason::RegistryUnreachable,
                    "reading the image's attestations did not finish in time",
                ))
            }
        };
        // Only live keys of the witnesses of applicable policies can make an attestation
        // count; each envelope is checked against them.
        let keys: Vec<(KeyId, &Arc<str>, &crate::trust::KeyEntry)> = snapshot
            .keys
            .iter()
            .filter(|(_, k)| k.live && snapshot.names_witness(&k.witness))
            .map(|(id, k)| (*id, &k.witness, k.as_ref()))
            .collect();
        let mut set = AttestationSet {
            items: cached.map(|c| c.items.clone()).unwrap_or_default(),
            fetched: Some(StdInstant::now()),
        };
        // A referrers listing that cannot be read leaves the `.att` tag to decide; a
        // denial says so, since the attestation may be among those bundles.
        let (bundles, unread) = match bundles {
            Ok(b) => (b.fetched, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let envelopes = layers
            .iter()
            .filter_map(|layer| Envelope::parse(&layer.envelope).ok())
            .chain(bundles.iter().filter_map(|f| {
                let bundle = Bundle::parse(&f.bytes).ok()?;
                // An image signature is not an attestation; it is judged elsewhere.
                bundle
                    .statement_unverified()
                    .is_ok_and(|st| st.predicate_type != SIGN_PREDICATE_TYPE)
                    .then_some(bundle.envelope)
            }));
        for envelope in envelopes {
            for (id, witness, key) in &keys {
                if !envelope.verify(&key.public_key, key.algorithm) {
                    continue;
                }
                if let Some(v) = verified(&envelope, digest, *id, witness) {
                    if !set.items.iter().any(|a| same(a, &v)) {
                        set.items.push(v);
                    }
                }
            }
        }
        let result = evaluate(snapshot, policy, d, &set).err();
        self.attestations.insert(d, Arc::new(set)).await;
        match (result, unread) {
            (Some(f), Some(e)) => Some(Failure::new(
                f.reason,
                format!(
                    "{} (the image's Sigstore bundle referrers could not be read: {e})",
                    f.detail
                ),
            )),
            (result, _) => result,
        }
    }
}

/// The attestation, if the envelope holds an in-toto Statement about `digest`.
fn verified(
    envelope: &Envelope,
    digest: &Digest,
    key: KeyId,
    witness: &Arc<str>,
) -> Option<VerifiedAttestation> {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return None;
    }
    let statement = envelope.statement().ok()?;
    statement.is_about(digest).then(|| VerifiedAttestation {
        key,
        witness: witness.clone(),
        predicate_type: statement.predicate_type,
        predicate: Arc::new(statement.predicate),
    })
}

fn same(a: &VerifiedAttestation, b: &VerifiedAttestation) -> bool {
    a.key == b.key && a.predicate_type == b.predicate_type && a.predicate == b.predicate
}

/// Every requirement of `policy` against what `set` holds: attestations by a live,
/// unrevoked key of one of the policy's witnesses.
fn evaluate(
    snapshot: &Snapshot,
    policy: &CompiledPolicy,
    d: crate::trust::DigestId,
    set: &AttestationSet,
) -> Result<(), Failure> {
    for requirement in &policy.policy.attestations {
        let Ok(uri) = requirement.predicate_type_uri() else {
            return Err(Failure::new(
                DenialReason::AttestationMissing,
                format!(
                    "the policy requires an attestation of an unknown type {:?}",
                    requirement.predicate_type
                ),
            ));
        };
        let by_policy_witness = |a: &&VerifiedAttestation| {
            policy.witnesses.iter().any(|w| w.live.contains(&a.key))
                && !snapshot.is_revoked(d, &a.key)
        };
        let candidates: Vec<&VerifiedAttestation> = set
            .items
            .iter()
            .filter(by_policy_witness)
            .filter(|a| a.predicate_type == uri)
            .collect();
        if candidates.is_empty() {
            let witnesses: Vec<&str> = policy.witnesses.iter().map(|w| &*w.name).collect();
            return Err(Failure::new(
                DenialReason::AttestationMissing,
                format!(
                    "no {uri} attestation about this digest signed by {}",
                    witnesses.join(" or ")
                ),
            ));
        }
        let mut first_reason = None;
        let met = candidates
            .iter()
            .any(|a| match requirement.first_unmet(&a.predicate) {
                None => true,
                Some(why) => {
                    first_reason.get_or_insert_with(|| {
                        format!("{uri} attestation by {}: {why}", a.witness)
                    });
                    false
                }
            });
        if !met {
            return Err(Failure::new(
                DenialReason::AttestationUnmet,
                first_reason.unwrap_or_default(),
            ));
        }
    }
    Ok(())
}
