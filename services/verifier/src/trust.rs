//! What the verifier trusts, and the cache that makes checking it cheap.
//!
//! The [`Snapshot`] is the cluster's trust bundle compiled for matching: policies with
//! their globs, and every key of their witnesses (live or revoked) by fingerprint. It is
//! replaced whole, through a lock-free pointer swap, when a bundle or an event changes it.
//!
//! The trust cache holds "digest D carries a valid signature by key K" for (D, K) pairs,
//! fed by `signature.published` events (verified here, on arrival) and by registry
//! fetches on a miss. An entry only grants trust while K is a live key of the snapshot,
//! so revoking a witness or a key version takes effect with the next snapshot, without
//! scanning the cache; entries of revoked keys stay only to explain a denial ("signed,
//! but by a revoked key") until they age out. What the registry answered for a digest
//! is kept briefly (the negative cache), so a burst of pods with an unsigned image costs
//! one fetch; a registry error is never kept.
//!
//! A `.sig` artifact is the registry owner's to write, so reading one is bounded: only
//! its first [`SignatureLimits::ADMISSION`] layers and small payloads are taken in, a
//! layer is checked only against the live keys of the witnesses the policy being
//! evaluated still lacks, the checks run on the blocking pool within the decision
//! budget, and "key K has no valid signature in this artifact" is kept with the artifact
//! (a negative verdict per digest and key), so repeated admissions of a hostile image
//! cost neither a fetch nor a signature check until it expires.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use globset::GlobMatcher;
use moka::future::Cache;
use prometheus_client::metrics::counter::Counter;
use signet_core::bundle::Bundle;
use signet_core::notation::NotationSignature;
use signet_core::policy::compile_glob;
use signet_core::{
    DenialReason, Digest, ImagePattern, ImageRef, PublicKey, ReferenceRule, RevokedSignature,
    SecurityPolicy, SignatureAlgorithm, SignatureRecord, SimpleSigning, TrustBundle,
};
use signet_registry::{
    ReferrerKind, ReferrerLimits, RegistryClient, RegistryError, SignatureLayer, SignatureLimits,
    Signatures,
};
use tokio::time::Instant;

use crate::config::CacheConfig;

/// A key's identity: the SHA-256 of its SubjectPublicKeyInfo (its fingerprint's bytes).
pub type KeyId = [u8; 32];
/// An image digest's bytes.
pub type DigestId = [u8; 32];

/// How many digests' signing traces are remembered for admission reviews to link to.
const TRACE_LINKS: u64 = 10_000;

/// `sha256:<hex>` → bytes.
pub fn key_id(fingerprint: &str) -> Option<KeyId> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(fingerprint.strip_prefix("sha256:")?, &mut out).ok()?;
    Some(out)
}

pub fn digest_id(digest: &Digest) -> DigestId {
    let mut out = [0u8; 32];
    // A parsed Digest is always 64 lowercase hex digits.
    let _ = hex::decode_to_slice(digest.hex(), &mut out);
    out
}

/// One key of one witness.
#[derive(Debug)]
pub struct KeyEntry {
    pub witness: Arc<str>,
    pub version: Arc<str>,
    pub algorithm: SignatureAlgorithm,
    pub public_key: PublicKey,
    /// false once the witness or this version is revoked.
    pub live: bool,
}

/// A policy's witness with its keys, split by whether they still count.
#[derive(Debug)]
pub struct PolicyWitness {
    pub name: Arc<str>,
    pub live: Vec<KeyId>,
    pub revoked: Vec<KeyId>,
}

/// A policy ready for matching.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub policy: SecurityPolicy,
    namespace: Option<GlobMatcher>,
    exemptions: Vec<ImagePattern>,
    pub witnesses: Vec<PolicyWitness>,
}

/// What the verifier knows of a namespace's labels.
#[derive(Debug, Clone, Copy)]
pub enum NamespaceLabels<'a> {
    Known(&'a std::collections::BTreeMap<String, String>),
    /// Not known (no API server access, a failed lookup): a label-selected policy
    /// applies, so not knowing never lets an image through.
    Unknown,
}

impl<'a> NamespaceLabels<'a> {
    pub fn of(labels: Option<&'a crate::namespaces::Labels>) -> Self {
        labels.map_or(Self::Unknown, |l| Self::Known(l))
    }
}

impl CompiledPolicy {
    /// Whether this policy decides for `namespace` now: enabled, its glob matches, and
    /// its label selector (if any) selects the namespace's labels.
    pub fn applies_to(&self, namespace: &str, labels: NamespaceLabels<'_>) -> bool {
        self.policy.enabled
            && self
                .namespace
                .as_ref()
                .is_some_and(|g| g.is_match(namespace))
            && self
                .policy
                .namespace_selector
                .as_ref()
                .is_none_or(|s| match labels {
                    NamespaceLabels::Known(l) => s.matches(l),
                    NamespaceLabels::Unknown => true,
                })
    }

    /// Whether the parsed, normalised `image` matches one of the policy's exemptions,
    /// registry and repository matched separately (never the string as the pod spec
    /// writes it, where a repository path could pass for a host).
    pub fn exempts(&self, image: &ImageRef) -> bool {
        self.exemptions.iter().any(|e| e.matches(image))
    }
}

/// The compiled trust bundle.
#[derive(Debug)]
pub struct Snapshot {
    pub bundle: TrustBundle,
    pub policies: Vec<CompiledPolicy>,
    pub keys: HashMap<KeyId, Arc<KeyEntry>>,
    /// Signatures an operator revoked, by digest and then witness: refused although they
    /// verify, by any key of that witness (a rotation must not undo a revocation), so a
    /// revocation binds to (digest, witness) whatever the repository and key version.
    pub revoked_signatures: HashMap<DigestId, HashMap<String, RevokedSignature>>,
}

impl Snapshot {
    pub fn compile(bundle: TrustBundle) -> Self {
        let mut keys = HashMap::new();
        for (trusted, live) in bundle
            .keys
            .iter()
            .map(|k| (k, true))
            .chain(bundle.revoked_keys.iter().map(|k| (k, false)))
        {
            let Some(id) = key_id(&trusted.fingerprint) else {
                tracing::warn!(witness = %trusted.witness, fingerprint = %trusted.fingerprint, "trust bundle key has an unreadable fingerprint; ignoring it");
                continue;
            };
            // The fingerprint is the bundle's claim; the key is what verifies. Refuse a
            // mismatch rather than trust a key under another key's name.
            if trusted.public_key.fingerprint() != trusted.fingerprint {
                tracing::warn!(witness = %trusted.witness, "trust bundle key does not match its fingerprint; ignoring it");
                continue;
            }
            // A key listed both live and revoked counts as revoked.
            if !live && keys.contains_key(&id) {
                keys.remove(&id);
            }
            keys.entry(id).or_insert_with(|| {
                Arc::new(KeyEntry {
                    witness: trusted.witness.as_str().into(),
                    version: trusted.version.as_str().into(),
                    algorithm: trusted.algorithm,
                    public_key: trusted.public_key.clone(),
                    live,
                })
            });
        }
        let policies = bundle
            .policies
            .iter()
            .filter(|p| p.cluster == bundle.cluster)
            .map(|p| compile_policy(p, &keys))
            .collect();
        let mut revoked_signatures: HashMap<DigestId, HashMap<String, RevokedSignature>> =
            HashMap::new();
        for r in &bundle.revoked_signatures {
            revoked_signatures
                .entry(digest_id(&r.digest))
                .or_default()
                .entry(r.witness.clone())
                .or_insert_with(|| r.clone());
        }
        Self {
            bundle,
            policies,
            keys,
            revoked_signatures,
        }
    }

    /// Whether a signature on digest `d` by key `id` is refused: a signature of `d` by
    /// the key's witness was revoked, with this key or any other version.
    pub fn is_revoked(&self, d: DigestId, id: &KeyId) -> bool {
        self.keys
            .get(id)
            .is_some_and(|k| self.revocation(d, &k.witness).is_some())
    }

    /// The revocation of `witness`'s signature on digest `d`, if any.
    pub fn revocation(&self, d: DigestId, witness: &str) -> Option<&RevokedSignature> {
        self.revoked_signatures.get(&d)?.get(witness)
    }

    pub fn revision(&self) -> i64 {
        self.bundle.revision
    }

    /// The enabled policies that decide for `namespace`, whose labels are `labels`.
    pub fn applicable<'a>(
        &'a self,
        namespace: &'a str,
        labels: NamespaceLabels<'a>,
    ) -> impl Iterator<Item = &'a CompiledPolicy> + 'a {
        self.policies
            .iter()
            .filter(move |p| p.applies_to(namespace, labels))
    }

    /// Whether an enabled policy selects namespaces by label (so a decision needs the
    /// namespace's labels).
    pub fn selects_by_label(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.policy.enabled && p.policy.namespace_selector.is_some())
    }

    /// Whether `witness` is named by any of the cluster's policies.
    pub fn names_witness(&self, witness: &str) -> bool {
        self.bundle
            .policies
            .iter()
            .any(|p| p.witnesses.iter().any(|w| w == witness))
    }
}

fn compile_policy(p: &SecurityPolicy, keys: &HashMap<KeyId, Arc<KeyEntry>>) -> CompiledPolicy {
    let namespace = match compile_glob(&p.namespace) {
        Ok(g) => Some(g),
        Err(e) => {
            // The control plane refuses bad globs; one that slipped through matches
            // nothing rather than everything.
            tracing::error!(policy = %p.name, error = %e, "policy namespace glob does not compile; the policy applies nowhere");
            None
        }
    };
    let exemptions = p
        .exemptions
        .iter()
        .filter_map(|e| match ImagePattern::compile(e) {
            Ok(g) => Some(g),
            Err(err) => {
                tracing::error!(policy = %p.name, error = %err, "policy exemption does not compile; ignoring it");
                None
            }
        })
        .collect();
    let witnesses = p
        .witnesses
        .iter()
        .map(|w| {
            let mut live = Vec::new();
            let mut revoked = Vec::new();
            for (id, k) in keys {
                if &*k.witness == w.as_str() {
                    if k.live {
                        live.push(*id);
                    } else {
                        revoked.push(*id);
                    }
                }
            }
            PolicyWitness {
                name: w.as_str().into(),
                live,
                revoked,
            }
        })
        .collect();
    CompiledPolicy {
        policy: p.clone(),
        namespace,
        exemptions,
        witnesses,
    }
}

/// Applies a `signature.revoked` event's entry to a bundle: it joins the revoked
/// signatures when a policy of the bundle names its witness.
pub fn apply_signature_revoked(bundle: &mut TrustBundle, revoked: &RevokedSignature) {
    let named = bundle
        .policies
        .iter()
        .any(|p| p.witnesses.iter().any(|n| n == &revoked.witness));
    let listed = bundle
        .revoked_signatures
        .iter()
        .any(|r| r.digest == revoked.digest && r.key_fingerprint == revoked.key_fingerprint);
    if named && !listed {
        bundle.revoked_signatures.push(revoked.clone());
    }
}

/// How an installed bundle relates to what the verifier held before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// As new as, or newer than, everything applied so far.
    Current,
    /// Older than events applied since the last bundle: a fetch that raced an event.
    Behind,
    /// Older than the previous bundle: the control plane went back. Alert.
    Rollback { previous: i64 },
}

/// Why an image could not be checked or did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: DenialReason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: DenialReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The outcome of checking one digest against one policy's witnesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Witnesses with a valid signature on the digest.
    pub witnesses: Vec<Arc<str>>,
    /// `None` when at least `require` witnesses signed.
    pub failure: Option<Failure>,
}

/// Counts entries a cache dropped to stay within its capacity (`signet_cache_events_total
/// {event="eviction"}`); expiries and invalidations are not evictions.
fn eviction_counter(cache: &'static str) -> Counter {
    signet_runtime::metrics::metrics()
        .cache
        .get_or_create(&signet_runtime::metrics::CacheLabels {
            cache: cache.to_owned(),
            event: "eviction".to_owned(),
        })
        .clone()
}

fn count_evictions<K, V>(
    cache: &'static str,
) -> impl Fn(Arc<K>, V, moka::notification::RemovalCause) + Send + Sync + 'static {
    let counter = eviction_counter(cache);
    move |_, _, cause| {
        if cause == moka::notification::RemovalCause::Size {
            counter.inc();
        }
    }
}

struct Counters {
    trust_hit: Counter,
    trust_miss: Counter,
    tag_hit: Counter,
    tag_miss: Counter,
    negative_hit: Counter,
    negative_miss: Counter,
}

impl Counters {
    fn new() -> Self {
        let m = signet_runtime::metrics::metrics();
        let c = |cache: &str, event: &str| {
            m.cache
                .get_or_create(&signet_runtime::metrics::CacheLabels {
                    cache: cache.to_owned(),
                    event: event.to_owned(),
                })
                .clone()
        };
        Self {
            trust_hit: c("trust", "hit"),
            trust_miss: c("trust", "miss"),
            tag_hit: c("tag", "hit"),
            tag_miss: c("tag", "miss"),
            negative_hit: c("negative", "hit"),
            negative_miss: c("negative", "miss"),
        }
    }
}

/// The trust snapshot and the caches, shared by every admission.
pub struct Trust {
    snapshot: ArcSwap<Snapshot>,
    loaded: AtomicBool,
    /// The highest event revision handled so far.
    seen: AtomicI64,
    /// The revision of the last bundle installed (-1: none yet).
    bundle_revision: AtomicI64,
    verified: crate::verdicts::Verdicts,
    fetched: Cache<(String, DigestId), Arc<Artifact>>,
    tags: Cache<String, Digest>,
    /// The trace that signed a digest (the `traceparent` of its `signature.published`
    /// event), so that an admission review can link to it. Only filled when the signer
    /// exports traces; bounded apart from the verdicts so tracing never costs them room.
    traces: Cache<DigestId, Arc<str>>,
    /// Attestations verified per digest (see [`crate::attest`]).
    pub(crate) attestations: Cache<DigestId, Arc<crate::attest::AttestationSet>>,
    /// How long a registry read of attestations stands before it is read again.
    pub(crate) attestation_refetch: Duration,
    pub(crate) registry: RegistryClient,
    counters: Counters,
    /// `.sig` artifacts fetched from registries, and signature checks run on their
    /// layers: what a hostile artifact costs (tests and figures read them).
    fetches: Arc<AtomicU64>,
    signature_checks: AtomicU64,
}

/// What a registry's `.sig` artifact held for one (repository, digest), read within
/// [`SignatureLimits::ADMISSION`], and the negative verdicts judged against it.
#[derive(Debug)]
pub struct Artifact {
    /// `registry/repository` the artifact was read from.
    repository: String,
    signatures: Signatures,
    /// Signatures attached as OCI 1.1 referrers, read within [`ReferrerLimits::ADMISSION`];
    /// they count as `.sig` layers do.
    referred: Referred,
    /// Keys checked against every layer considered without finding a valid signature.
    /// Kept with the layers they were judged on, so both expire together.
    rejected: std::sync::Mutex<HashSet<KeyId>>,
}

impl Artifact {
    fn new(repository: String, signatures: Signatures, referred: Referred) -> Self {
        Self {
            repository,
            signatures,
            referred,
            rejected: std::sync::Mutex::new(HashSet::new()),
        }
    }

    fn rejects(&self, id: &KeyId) -> bool {
        self.rejected.lock().is_ok_and(|r| r.contains(id))
    }

    fn reject(&self, ids: impl IntoIterator<Item = KeyId>) {
        if let Ok(mut r) = self.rejected.lock() {
            r.extend(ids);
        }
    }
}

/// The signatures of an image attached as referrers, parsed (not yet verified).
#[derive(Debug, Default)]
struct Referred {
    /// Sigstore bundles (cosign 3's format, and signet's `bundle` witnesses).
    bundles: Vec<Bundle>,
    /// Notary Project envelopes (`notation sign`), checked under verify-only witnesses
    /// made from the signing certificate.
    notation: Vec<NotationSignature>,
}

impl Referred {
    /// Parses what was fetched; what does not parse cannot verify and is dropped, and so
    /// is a bundle that does not even claim to be an image signature (an attestation:
    /// [`verify_layers`] would not count it).
    fn parse(fetched: &signet_registry::Referrers) -> Self {
        let mut out = Self::default();
        for f in &fetched.fetched {
            match f.kind {
                ReferrerKind::Bundle => {
                    out.bundles.extend(Bundle::parse(&f.bytes).ok().filter(|b| {
                        b.statement_unverified().is_ok_and(|st| {
                            st.predicate_type == signet_core::bundle::SIGN_PREDICATE_TYPE
                        })
                    }))
                }
                ReferrerKind::Notation => out
                    .notation
                    .extend(NotationSignature::parse(&f.media_type, &f.bytes).ok()),
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        self.bundles.len() + self.notation.len()
    }
}

/// The `docker-reference` rule admission applies: the same function and default as
/// `signet verify`. Signatures are trusted by digest and key (the trust cache and
/// `signature.published` know no repository), and `cosign copy` moves a signature to
/// another repository without re-signing, so the repository is not required.
pub const REFERENCE_RULE: ReferenceRule = ReferenceRule::AnyRepository;

/// Checks each layer whose payload covers `digest` in `repository` against `keys`;
/// returns the keys with a valid signature and how many signature checks ran. CPU only:
/// run it on the blocking pool.
fn verify_layers(
    layers: &[SignatureLayer],
    referred: &Referred,
    repository: &str,
    digest: &Digest,
    keys: &[(KeyId, Arc<KeyEntry>)],
) -> (Vec<KeyId>, u64) {
    let mut found: Vec<KeyId> = Vec::new();
    let mut checks = 0;
    // A bundle counts as a signature only when its Statement is an image signature about
    // this digest (an attestation by the same key is a claim about the image, not an
    // approval of it).
    for bundle in &referred.bundles {
        for (id, key) in keys {
            if found.contains(id) {
                continue;
            }
            checks += 1;
            let signed = bundle
                .verify_with(&key.public_key, key.algorithm, digest)
                .is_ok_and(|st| st.predicate_type == signet_core::bundle::SIGN_PREDICATE_TYPE);
            if signed {
                found.push(*id);
            }
        }
    }
    // A Notation signature counts when its certificate holds the key, it verifies, the
    // certificate and the signature are valid now, and its descriptor names this digest
    // (an envelope copied from another image's referrers names that image).
    for sig in &referred.notation {
        for (id, key) in keys {
            if found.contains(id) {
                continue;
            }
            checks += 1;
            if sig
                .verify(&key.public_key)
                .is_ok_and(|target| target.digest == *digest)
            {
                found.push(*id);
            }
        }
    }
    for layer in layers {
        if found.len() == keys.len() {
            break;
        }
        let Ok(payload) = SimpleSigning::parse_strict(&layer.payload) else {
            continue;
        };
        if payload.covers(repository, digest, REFERENCE_RULE).is_err() {
            continue;
        }
        for (id, key) in keys {
            if found.contains(id) {
                continue;
            }
            checks += 1;
            if key
                .public_key
                .verify(key.algorithm, &layer.payload, &layer.signature)
                .is_ok()
            {
                found.push(*id);
            }
        }
    }
    (found, checks)
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("revision", &self.snapshot.load().revision())
            .field("entries", &self.verified.entry_count())
            .finish_non_exhaustive()
    }
}

impl Trust {
    pub fn new(cluster: &str, registry: RegistryClient, cache: CacheConfig) -> Self {
        let empty = TrustBundle {
            cluster: cluster.to_owned(),
            revision: 0,
            generated_at: chrono::Utc::now(),
            policies: Vec::new(),
            keys: Vec::new(),
            revoked_keys: Vec::new(),
            revoked_signatures: Vec::new(),
            since: None,
        };
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::compile(empty)),
            loaded: AtomicBool::new(false),
            seen: AtomicI64::new(0),
            bundle_revision: AtomicI64::new(-1),
            verified: crate::verdicts::Verdicts::new(
                cache.capacity,
                cache.trust_ttl,
                eviction_counter("trust"),
            ),
            // Small: one entry per recently checked digest without a valid signature.
            fetched: Cache::builder()
                .max_capacity(cache.capacity.clamp(1, 10_000))
                .time_to_live(cache.negative_ttl)
                .eviction_listener(count_evictions("negative"))
                .build(),
            tags: Cache::builder()
                .max_capacity(cache.capacity.clamp(1, 10_000))
                .time_to_live(cache.tag_ttl)
                .eviction_listener(count_evictions("tag"))
                .build(),
            traces: Cache::builder()
                .max_capacity(TRACE_LINKS.min(cache.capacity.max(1)))
                .time_to_live(cache.trust_ttl)
                .build(),
            attestations: Cache::builder()
                .max_capacity(cache.capacity.clamp(1, 10_000))
                .time_to_live(cache.trust_ttl)
                .build(),
            attestation_refetch: cache.negative_ttl,
            registry,
            counters: Counters::new(),
            fetches: Arc::new(AtomicU64::new(0)),
            signature_checks: AtomicU64::new(0),
        }
    }

    /// `.sig` artifacts fetched from registries since start.
    pub fn registry_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Signature checks run on registry layers since start.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Whether a bundle (fetched or kept from a previous run) has been installed.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Records that the event with `revision` has been handled.
    pub fn note_event(&self, revision: i64) {
        self.seen.fetch_max(revision, Ordering::AcqRel);
    }

    /// Everything up to this revision is reflected: the bundle's, or the last event's
    /// handled after it.
    pub fn seen_revision(&self) -> i64 {
        self.seen
            .load(Ordering::Acquire)
            .max(self.snapshot.load().revision())
    }

    /// How many (digest, key) verdicts are cached, after pending maintenance.
    pub async fn entries_now(&self) -> u64 {
        self.verified.purge_expired();
        self.verified.entry_count()
    }

    /// How many (digest, key) verdicts are cached (approximate).
    pub fn entries(&self) -> u64 {
        self.verified.entry_count()
    }

    /// Installs a bundle the control plane sealed. It is authoritative: installed even
    /// when its revision is lower than what the verifier holds, and the answer says so.
    pub fn install(&self, bundle: TrustBundle) -> Installed {
        let revision = bundle.revision;
        let next = Arc::new(Snapshot::compile(bundle));
        let held = self.snapshot.swap(next).revision();
        let previous = self.bundle_revision.swap(revision, Ordering::AcqRel);
        self.loaded.store(true, Ordering::Release);
        // What the registry answered was judged against the old keys.
        self.fetched.invalidate_all();
        if previous > revision {
            // Whatever came after the bundle now in force is not believed any more.
            self.seen.store(revision, Ordering::Release);
            Installed::Rollback { previous }
        } else if held > revision {
            Installed::Behind
        } else {
            Installed::Current
        }
    }

    /// The revision of the last bundle installed; -1 before the first.
    pub fn bundle_revision(&self) -> i64 {
        self.bundle_revision.load(Ordering::Acquire)
    }

    /// A `signature.revoked` event (sealed by the control plane): the revocation joins the
    /// snapshot at once, whatever its revision. A revocation only narrows trust, so one
    /// that arrives late, behind a newer event, still counts rather than waiting for the
    /// next bundle. Returns whether the snapshot changed.
    pub fn revoke(&self, revision: i64, revoked: &RevokedSignature) -> bool {
        let mut changed = false;
        self.snapshot.rcu(|current| {
            let mut bundle = current.bundle.clone();
            let before = bundle.revoked_signatures.len();
            apply_signature_revoked(&mut bundle, revoked);
            changed = bundle.revoked_signatures.len() != before || revision > bundle.revision;
            if !changed {
                return current.clone();
            }
            bundle.revision = bundle.revision.max(revision);
            Arc::new(Snapshot::compile(bundle))
        });
        if changed {
            self.fetched.invalidate_all();
        }
        changed
    }

    /// A `signature.published` event: verifies the signature against the snapshot's key
    /// and caches the verdict. No registry round trip. Returns what was learned.
    pub async fn learn(&self, record: &SignatureRecord) -> Result<(), String> {
        let snapshot = self.snapshot();
        let id = key_id(&record.key_fingerprint)
            .ok_or_else(|| format!("unreadable key fingerprint {:?}", record.key_fingerprint))?;
        let Some(key) = snapshot.keys.get(&id) else {
            return Err(format!(
                "key {} of witness {} is not in this cluster's trust bundle",
                record.key_fingerprint, record.witness
            ));
        };
        if &*key.witness != record.witness.as_str() {
            return Err(format!(
                "key {} belongs to witness {}, not {}",
                record.key_fingerprint, key.witness, record.witness
            ));
        }
        match SimpleSigning::parse_strict(&record.payload) {
            Ok(payload) => {
                payload
                    .covers(&record.repository, &record.digest, REFERENCE_RULE)
                    .map_err(|e| e.to_string())?;
                key.public_key
                    .verify(key.algorithm, &record.payload, &record.signature)
                    .map_err(|e| e.to_string())?;
            }
            // A witness that writes Sigstore bundles only records the bundle's in-toto
            // Statement, signed through DSSE's pre-authentication encoding.
            Err(simple) => {
                let statement = signet_core::attestation::Statement::parse(&record.payload)
                    .map_err(|_| format!("payload refused: {simple}"))?;
                if statement.predicate_type != signet_core::bundle::SIGN_PREDICATE_TYPE
                    || !statement.is_about(&record.digest)
                {
                    return Err("the statement is not an image signature of this digest".into());
                }
                let signed = signet_core::attestation::pae(
                    signet_core::attestation::IN_TOTO_PAYLOAD_TYPE,
                    &record.payload,
                );
                key.public_key
                    .verify(key.algorithm, &signed, &record.signature)
                    .map_err(|e| e.to_string())?;
            }
        }
        let d = digest_id(&record.digest);
        if snapshot.is_revoked(d, &id) {
            return Err("the signature was revoked".to_owned());
        }
        self.verified.insert((d, id));
        // A "no valid signature" answer for this digest is now out of date.
        self.fetched
            .invalidate(&(record.repository.clone(), d))
            .await;
        Ok(())
    }

    /// Remembers the trace that signed `digest` (from its event's `traceparent`).
    pub async fn note_trace(&self, digest: &Digest, traceparent: &str) {
        self.traces
            .insert(digest_id(digest), Arc::from(traceparent))
            .await;
    }

    /// The `traceparent` of the trace that signed `digest`, when an event said so.
    pub async fn trace_of(&self, digest: &Digest) -> Option<Arc<str>> {
        self.traces.get(&digest_id(digest)).await
    }

    /// A `signature.revoked` event: the verdict goes.
    pub async fn forget(&self, record: &SignatureRecord) {
        if let Some(id) = key_id(&record.key_fingerprint) {
            let d = digest_id(&record.digest);
            self.verified.invalidate(&(d, id));
            self.fetched
                .invalidate(&(record.repository.clone(), d))
                .await;
        }
    }

    /// Resolves a tag to a digest through the registry, with a short-lived cache;
    /// concurrent resolutions of one tag share one request. Errors are not cached.
    pub async fn resolve(&self, image: &ImageRef, deadline: Instant) -> Result<Digest, Failure> {
        if let Some(d) = image.digest() {
            return Ok(d.clone());
        }
        let key = image.to_string();
        if let Some(d) = self.tags.get(&key).await {
            self.counters.tag_hit.inc();
            return Ok(d);
        }
        self.counters.tag_miss.inc();
        // Boxed for the same reason as the miss path of `check`.
        Box::pin(self.resolve_miss(image, key, deadline)).await
    }

    async fn resolve_miss(
        &self,
        image: &ImageRef,
        key: String,
        deadline: Instant,
    ) -> Result<Digest, Failure> {
        let registry = self.registry.clone();
        let owned = image.clone();
        let lookup = self
            .tags
            .try_get_with(key, async move { registry.resolve(&owned).await });
        match tokio::time::timeout_at(deadline, lookup).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) if e.is_not_found() => Err(Failure::new(
                DenialReason::TagNotResolvable,
                format!("tag {image} does not exist in its registry"),
            )),
            Ok(Err(e)) => Err(unreachable(&e)),
            Err(_) => Err(Failure::new(
                DenialReason::RegistryUnreachable,
                format!(
                    "registry {} did not resolve {image} within the time budget",
                    image.registry()
                ),
            )),
        }
    }

    /// Checks `digest` (of `image`) against a policy's witnesses: the cache first; on a
    /// shortfall, the registry's `.sig` artifact (one fetch per repository and digest
    /// however many admissions wait for it, reused for the negative TTL).
    pub async fn check(
        &self,
        snapshot: &Snapshot,
        policy: &CompiledPolicy,
        image: &ImageRef,
        digest: &Digest,
        deadline: Instant,
    ) -> Check {
        let d = digest_id(digest);
        let require = policy.policy.require as usize;
        let signed = self.signed_witnesses(snapshot, policy, d).await;
        if signed.len() >= require {
            self.counters.trust_hit.inc();
            return Check {
                witnesses: signed,
                failure: None,
            };
        }
        self.counters.trust_miss.inc();
        // Boxed: the registry path makes a future of tens of kilobytes, which every
        // check (hits included, three per Deployment) would otherwise carry and copy.
        Box::pin(self.check_miss(snapshot, policy, image, digest, signed, deadline)).await
    }

    /// [`Trust::check`] once the cache fell short: the registry's word.
    async fn check_miss(
        &self,
        snapshot: &Snapshot,
        policy: &CompiledPolicy,
        image: &ImageRef,
        digest: &Digest,
        signed: Vec<Arc<str>>,
        deadline: Instant,
    ) -> Check {
        let d = digest_id(digest);
        let require = policy.policy.require as usize;
        let artifact = self.artifact(image, digest, d, deadline).await;
        let mut unfinished = None;
        if let Ok(a) = &artifact {
            // Only the live keys of the witnesses still missing can change the verdict.
            let keys = policy
                .witnesses
                .iter()
                .filter(|w| !signed.contains(&w.name))
                .flat_map(|w| w.live.iter());
            let keys = self.pending(snapshot, keys, d, a).await;
            unfinished = self.verify(a, keys, digest, d, deadline).await.err();
        }
        let signed = self.signed_witnesses(snapshot, policy, d).await;
        if signed.len() >= require {
            return Check {
                witnesses: signed,
                failure: None,
            };
        }
        let failure = match unfinished {
            Some(f) => f,
            None => {
                self.explain(
                    snapshot,
                    policy,
                    &signed,
                    image,
                    digest,
                    d,
                    artifact.as_ref(),
                    deadline,
                )
                .await
            }
        };
        Check {
            witnesses: signed,
            failure: Some(failure),
        }
    }

    /// Every witness of the snapshot with a valid signature on the digest (for the
    /// Trusted Image annotation), fetching from the registry when the cache has none.
    pub async fn witnesses_of(
        &self,
        snapshot: &Snapshot,
        image: &ImageRef,
        digest: &Digest,
        deadline: Instant,
    ) -> Vec<Arc<str>> {
        let d = digest_id(digest);
        let mut found = self.cached_witnesses(snapshot, d).await;
        if found.is_empty() {
            if let Ok(a) = self.artifact(image, digest, d, deadline).await {
                let live = snapshot
                    .keys
                    .iter()
                    .filter(|(_, k)| k.live)
                    .map(|(id, _)| id);
                let keys = self.pending(snapshot, live, d, &a).await;
                if self.verify(&a, keys, digest, d, deadline).await.is_ok() {
                    found = self.cached_witnesses(snapshot, d).await;
                }
            }
        }
        found
    }

    async fn cached_witnesses(&self, snapshot: &Snapshot, d: DigestId) -> Vec<Arc<str>> {
        let mut found: Vec<Arc<str>> = Vec::new();
        for (id, key) in &snapshot.keys {
            if key.live
                && !found.contains(&key.witness)
                && !snapshot.is_revoked(d, id)
                && self.verified.contains(&(d, *id))
            {
                found.push(key.witness.clone());
            }
        }
        found.sort();
        found
    }

    async fn signed_witnesses(
        &self,
        snapshot: &Snapshot,
        policy: &CompiledPolicy,
        d: DigestId,
    ) -> Vec<Arc<str>> {
        let mut signed = Vec::new();
        for w in &policy.witnesses {
            for id in &w.live {
                if !snapshot.is_revoked(d, id) && self.verified.contains(&(d, *id)) {
                    signed.push(w.name.clone());
                    break;
                }
            }
        }
        signed
    }

    /// The `.sig` artifact for a digest, within the admission limits: from the negative
    /// cache, or one shared fetch.
    async fn artifact(
        &self,
        image: &ImageRef,
        digest: &Digest,
        d: DigestId,
        deadline: Instant,
    ) -> Result<Arc<Artifact>, Failure> {
        let key = (image.repository_ref(), d);
        if let Some(a) = self.fetched.get(&key).await {
            self.counters.negative_hit.inc();
            return Ok(a);
        }
        self.counters.negative_miss.inc();
        let registry = self.registry.clone();
        let fetches = self.fetches.clone();
        let (owned, digest_owned) = (image.clone(), digest.clone());
        let fetch = self.fetched.try_get_with(key, async move {
            fetches.fetch_add(1, Ordering::Relaxed);
            // The `.sig` tag and the referrers (Sigstore bundles and Notation signatures,
            // one listing) are read side by side.
            let (signatures, referrers) = tokio::join!(
                registry.fetch_signatures_within(&owned, &digest_owned, SignatureLimits::ADMISSION),
                registry.fetch_referrers_within(
                    &owned,
                    &digest_owned,
                    &[ReferrerKind::Bundle, ReferrerKind::Notation],
                    ReferrerLimits::ADMISSION
                ),
            );
            // Referrers that cannot be read leave the `.sig` signatures to decide: an
            // image is never admitted for a failed read, only denied for want of a
            // signature.
            let referred = match referrers {
                Ok(r) => Referred::parse(&r),
                Err(e) => {
                    tracing::debug!(error = %e, image = %owned, "cannot read the signature referrers; judging by the .sig tag alone");
                    Referred::default()
                }
            };
            signatures.map(|s| Arc::new(Artifact::new(owned.repository_ref(), s, referred)))
        });
        match tokio::time::timeout_at(deadline, fetch).await {
            Ok(Ok(layers)) => Ok(layers),
            Ok(Err(e)) => Err(unreachable(&e)),
            Err(_) => Err(Failure::new(
                DenialReason::RegistryUnreachable,
                format!(
                    "registry {} did not return the signatures of {digest} within the time budget",
                    image.registry()
                ),
            )),
        }
    }

    /// The keys among `ids` whose verdict on `d` is still open: not verified, not
    /// rejected by this artifact, and not revoked for this digest.
    async fn pending<'k>(
        &self,
        snapshot: &Snapshot,
        ids: impl Iterator<Item = &'k KeyId>,
        d: DigestId,
        artifact: &Artifact,
    ) -> Vec<(KeyId, Arc<KeyEntry>)> {
        let mut out: Vec<(KeyId, Arc<KeyEntry>)> = Vec::new();
        for id in ids {
            if out.iter().any(|(o, _)| o == id)
                || snapshot.is_revoked(d, id)
                || artifact.rejects(id)
                || self.verified.contains(&(d, *id))
            {
                continue;
            }
            if let Some(k) = snapshot.keys.get(id) {
                out.push((*id, k.clone()));
            }
        }
        out
    }

    /// Checks the artifact's layers against `keys` on the blocking pool, within the
    /// decision budget: what verifies joins the trust cache, the rest is rejected for
    /// this artifact. `Err` when the budget ran out first (nothing is cached then).
    async fn verify(
        &self,
        artifact: &Arc<Artifact>,
        keys: Vec<(KeyId, Arc<KeyEntry>)>,
        digest: &Digest,
        d: DigestId,
        deadline: Instant,
    ) -> Result<(), Failure> {
        if keys.is_empty() {
            return Ok(());
        }
        if artifact.signatures.layers.is_empty() && artifact.referred.is_empty() {
            artifact.reject(keys.iter().map(|(id, _)| *id));
            return Ok(());
        }
        let ids: Vec<KeyId> = keys.iter().map(|(id, _)| *id).collect();
        let work = {
            let (artifact, digest) = (artifact.clone(), digest.clone());
            tokio::task::spawn_blocking(move || {
                verify_layers(
                    &artifact.signatures.layers,
                    &artifact.referred,
                    &artifact.repository,
                    &digest,
                    &keys,
                )
            })
        };
        let (found, checks) = match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "signature check task failed");
                return Err(Failure::new(
                    DenialReason::RegistryUnreachable,
                    format!("the signature check of {digest} failed"),
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    DenialReason::RegistryUnreachable,
                    format!(
                        "the signatures of {digest} could not be checked within the time budget"
                    ),
                ))
            }
        };
        self.signature_checks.fetch_add(checks, Ordering::Relaxed);
        for id in &found {
            self.verified.insert((d, *id));
        }
        artifact.reject(ids.into_iter().filter(|id| !found.contains(id)));
        Ok(())
    }

    /// Why the policy's witnesses fall short, for the denial message.
    #[allow(clippy::too_many_arguments)]
    async fn explain(
        &self,
        snapshot: &Snapshot,
        policy: &CompiledPolicy,
        signed: &[Arc<str>],
        image: &ImageRef,
        digest: &Digest,
        d: DigestId,
        artifact: Result<&Arc<Artifact>, &Failure>,
        deadline: Instant,
    ) -> Failure {
        let missing: Vec<&PolicyWitness> = policy
            .witnesses
            .iter()
            .filter(|w| !signed.contains(&w.name))
            .collect();
        let missing_names = missing
            .iter()
            .map(|w| &*w.name)
            .collect::<Vec<_>>()
            .join(", ");
        let shortfall = if signed.is_empty() {
            String::new()
        } else {
            format!(
                "signed by {} of the {} required witnesses ({}); ",
                signed.len(),
                policy.policy.require,
                signed.iter().map(|s| &**s).collect::<Vec<_>>().join(", ")
            )
        };
        // A revoked signature or key outranks everything: it is the most useful thing to
        // say and needs no registry.
        for w in &missing {
            if let Some(r) = snapshot.revocation(d, &w.name) {
                let why = if r.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.reason)
                };
                return Failure::new(
                    DenialReason::Revoked,
                    format!(
                        "{shortfall}signed by witness {}, but its signature of this digest was revoked at {}{why}",
                        w.name, r.revoked_at
                    ),
                );
            }
        }
        // "Signed, but by a revoked key" needs the revoked keys of the missing witnesses
        // checked too: bounded like the live ones, and only once a denial is certain.
        if let Ok(a) = artifact {
            let revoked = missing.iter().flat_map(|w| w.revoked.iter());
            let keys = self.pending(snapshot, revoked, d, a).await;
            if let Err(f) = self.verify(a, keys, digest, d, deadline).await {
                return Failure::new(f.reason, format!("{shortfall}{}", f.detail));
            }
        }
        for w in &missing {
            for id in &w.revoked {
                if self.verified.contains(&(d, *id)) {
                    let what = if w.live.is_empty() {
                        format!("witness {} is revoked", w.name)
                    } else {
                        "the key version it was signed with is revoked".to_owned()
                    };
                    return Failure::new(
                        DenialReason::Revoked,
                        format!("{shortfall}signed by witness {}, but {what}", w.name),
                    );
                }
            }
        }
        let (found, referred) = match artifact {
            Ok(a) => (&a.signatures, &a.referred),
            Err(f) => {
                return Failure::new(f.reason, format!("{shortfall}{}", f.detail));
            }
        };
        let artifact = format!("{}:{}", image.repository_ref(), digest.signature_tag());
        if found.total == 0 && referred.is_empty() {
            return Failure::new(
                DenialReason::Unsigned,
                format!(
                    "{shortfall}no signature artifact {artifact} and no signature among its referrers; not signed by {missing_names}"
                ),
            );
        }
        let limits = SignatureLimits::ADMISSION;
        let mut skipped = String::new();
        if found.beyond_limit > 0 {
            skipped.push_str(&format!(
                "; only the first {} of its {} signature layers are checked (the verifier's cap), the other {} were not",
                limits.max_layers, found.total, found.beyond_limit
            ));
        }
        if found.oversized > 0 {
            skipped.push_str(&format!(
                "; {} payload(s) larger than the {}-byte cap were skipped",
                found.oversized, limits.max_payload_bytes
            ));
        }
        // Every signature is a valid one of a witness that signed (N-of-M with too few
        // witnesses): nothing is invalid, the missing witnesses simply did not sign.
        if !signed.is_empty() && found.total + referred.len() <= signed.len() && skipped.is_empty()
        {
            return Failure::new(
                DenialReason::Unsigned,
                format!("{shortfall}not signed by {missing_names} (checked {artifact} and its referrers)"),
            );
        }
        let mut seen = Vec::new();
        if found.total > 0 {
            seen.push(format!("{} signature(s) in {artifact}", found.total));
        }
        if !referred.bundles.is_empty() {
            seen.push(format!(
                "{} Sigstore bundle(s) among its referrers",
                referred.bundles.len()
            ));
        }
        if !referred.notation.is_empty() {
            seen.push(format!(
                "{} Notation signature(s) among its referrers",
                referred.notation.len()
            ));
        }
        Failure::new(
            DenialReason::InvalidSignature,
            format!(
                "{shortfall}{}, none valid for witness {missing_names}{skipped}",
                seen.join(" and ")
            ),
        )
    }

    /// Lets queued cache maintenance (evictions, expirations) run now; for tests and
    /// for memory figures.
    pub async fn run_pending_tasks(&self) {
        self.verified.purge_expired();
        self.fetched.run_pending_tasks().await;
        self.tags.run_pending_tasks().await;
    }

    /// Drops the cached registry answer for a digest (tests: "the registry changed").
    pub async fn forget_fetched(&self, repository: &str, digest: &Digest) {
        self.fetched
            .invalidate(&(repository.to_owned(), digest_id(digest)))
            .await;
    }
}

/// A registry failure, as an admission reason: never a statement about the image.
fn unreachable(e: &RegistryError) -> Failure {
    Failure::new(DenialReason::RegistryUnreachable, e.to_string())
}

/// How long to wait before asking again after `attempt` failures, capped at `max`.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(200);
    base.saturating_mul(1u32 << attempt.min(10)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bundle, no_registry, policy, unreachable_image, TestKey};
    use signet_core::PolicyMode;

    fn trust() -> Trust {
        Trust::new("c1", no_registry(), CacheConfig::default())
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn ids_parse_fingerprints_and_digests() {
        let d = Digest::of(b"x");
        assert_eq!(hex::encode(digest_id(&d)), d.hex());
        let k = TestKey::new();
        let id = key_id(&k.public.fingerprint()).expect("id");
        assert_eq!(
            format!("sha256:{}", hex::encode(id)),
            k.public.fingerprint()
        );
        assert_eq!(key_id("md5:00"), None);
        assert_eq!(key_id("sha256:zz"), None);
    }

    #[test]
    fn snapshots_match_enabled_policies_of_this_cluster() {
        let k = TestKey::new();
        let mut off = policy("off", &["w"], "prod", PolicyMode::Enforce);
        off.enabled = false;
        let mut elsewhere = policy("elsewhere", &["w"], "*", PolicyMode::Enforce);
        elsewhere.cluster = "c2".into();
        let mut forged = k.trusted("w", "2");
        forged.fingerprint = TestKey::new().public.fingerprint();
        let s = Snapshot::compile(bundle(
            3,
            vec![
                policy("team", &["w"], "team-*", PolicyMode::Warn),
                off,
                elsewhere,
            ],
            vec![k.trusted("w", "1"), forged],
        ));
        assert_eq!(s.revision(), 3);
        let names = |ns: &str| {
            s.applicable(ns, NamespaceLabels::Unknown)
                .map(|p| p.policy.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("team-a"), ["team"]);
        assert!(
            names("prod").is_empty(),
            "disabled and other clusters' policies do not apply"
        );
        assert_eq!(
            s.keys.len(),
            1,
            "a key that does not match its fingerprint is dropped"
        );
        assert_eq!(s.policies[0].witnesses[0].live.len(), 1);
        let p = &s.policies[0];
        let img = |s: &str| ImageRef::parse(s).expect("ref");
        assert!(p.exempts(&img("registry.k8s.io/pause:3.10")));
        assert!(!p.exempts(&img("nginx")));
        assert!(
            !p.exempts(&img("attacker.example/registry.k8s.io/pause:3.10")),
            "a repository path is not a registry"
        );
    }

    #[test]
    fn label_selected_policies_apply_where_the_labels_say_and_where_they_are_unknown() {
        let k = TestKey::new();
        let mut opted = policy("opted", &["w"], "*", PolicyMode::Enforce);
        opted.namespace_selector =
            Some(signet_core::LabelSelector::parse("signet.dev/enforce=true").unwrap());
        let s = Snapshot::compile(bundle(
            1,
            vec![opted, policy("prod", &["w"], "prod", PolicyMode::Enforce)],
            vec![k.trusted("w", "1")],
        ));
        assert!(s.selects_by_label());
        let labels = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let names = |ns: &str, l: NamespaceLabels<'_>| {
            s.applicable(ns, l)
                .map(|p| p.policy.name.clone())
                .collect::<Vec<_>>()
        };
        let on = labels(&[("signet.dev/enforce", "true")]);
        let off = labels(&[("signet.dev/enforce", "false")]);
        assert_eq!(names("shop", NamespaceLabels::Known(&on)), ["opted"]);
        assert!(names("shop", NamespaceLabels::Known(&off)).is_empty());
        assert_eq!(names("prod", NamespaceLabels::Known(&off)), ["prod"]);
        // Labels not known: the selector cannot be checked, so the policy applies.
        assert_eq!(names("shop", NamespaceLabels::Unknown), ["opted"]);
    }

    /// signet's selector matching (in signet-core, which the control plane uses too) and
    /// kube-core's agree.
    #[test]
    fn selector_matching_agrees_with_kube_core() {
        use kube::core::SelectorExt;
        let selectors = [
            "a=1",
            "a!=1",
            "a in (1,2),b",
            "a notin (1,2),!b",
            "a,b=2",
            "x.example.com/a=1,a notin (2)",
        ];
        let label_sets: [&[(&str, &str)]; 6] = [
            &[],
            &[("a", "1")],
            &[("a", "2"), ("b", "")],
            &[("a", "3"), ("b", "2")],
            &[("x.example.com/a", "1")],
            &[("a", "1"), ("b", "2"), ("x.example.com/a", "1")],
        ];
        for text in selectors {
            let ours = signet_core::LabelSelector::parse(text).unwrap();
            let theirs: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(serde_json::to_value(&ours).unwrap()).unwrap();
            let theirs = kube::core::Selector::try_from(theirs).unwrap();
            for set in label_sets {
                let l: std::collections::BTreeMap<String, String> = set
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                assert_eq!(ours.matches(&l), theirs.matches(&l), "{text} on {l:?}");
            }
        }
    }
    #[test]
    fn a_revoked_signature_joins_the_bundle_once_when_a_policy_names_its_witness() {
        let k = TestKey::new();
        let mut b = bundle(
            1,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![k.trusted("w", "1")],
        );
        let digest = Digest::of(b"image");
        let mut record = k.record("w", "reg.local/team/app", &digest);
        record.revoked = Some(signet_core::Revocation {
            at: chrono::Utc::now(),
            by: "admin".into(),
            reason: "leaked".into(),
        });
        let revoked = RevokedSignature::of(&record).expect("revoked");
        apply_signature_revoked(&mut b, &revoked);
        apply_signature_revoked(&mut b, &revoked);
        assert_eq!(b.revoked_signatures.len(), 1);
        let mut other = revoked.clone();
        other.witness = "unrelated".into();
        apply_signature_revoked(&mut b, &other);
        assert_eq!(b.revoked_signatures.len(), 1);
    }

    #[tokio::test]
    async fn a_published_signature_is_trusted_without_the_registry() {
        let k = TestKey::new();
        let t = trust();
        let p = policy("p", &["w"], "prod", PolicyMode::Enforce);
        assert_eq!(
            t.install(bundle(5, vec![p], vec![k.trusted("w", "1")])),
            Installed::Current
        );
        let digest = Digest::of(b"image");
        let image = ImageRef::parse(&unreachable_image("team/app", &digest)).expect("ref");
        let record = k.record("w", &image.repository_ref(), &digest);
        t.learn(&record).await.expect("learn");
        let snap = t.snapshot();
        let check = t
            .check(&snap, &snap.policies[0], &image, &digest, deadline())
            .await;
        assert_eq!(check.failure, None);
        assert_eq!(check.witnesses.len(), 1);

        // Another digest is not trusted, and the unreachable registry says why.
        let other = Digest::of(b"other");
        let check = t
            .check(&snap, &snap.policies[0], &image, &other, deadline())
            .await;
        let f = check.failure.expect("fails");
        assert_eq!(f.reason, DenialReason::RegistryUnreachable);
        assert!(f.detail.contains("127.0.0.1:1"), "{}", f.detail);
    }

    #[tokio::test]
    async fn forged_or_foreign_signatures_are_not_learned() {
        let k = TestKey::new();
        let t = trust();
        t.install(bundle(
            1,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![k.trusted("w", "1")],
        ));
        let digest = Digest::of(b"image");
        let mut tampered = k.record("w", "reg/team/app", &digest);
        tampered.signature[10] ^= 1;
        assert!(t.learn(&tampered).await.is_err());
        let mut swapped = k.record("w", "reg/team/app", &digest);
        swapped.digest = Digest::of(b"another");
        let err = t.learn(&swapped).await.err().unwrap_or_default();
        assert!(err.contains("payload is for"), "{err}");
        let stranger = TestKey::new().record("w", "reg/team/app", &digest);
        let err = t.learn(&stranger).await.err().unwrap_or_default();
        assert!(err.contains("not in this cluster's trust bundle"), "{err}");
        let mut wrong_witness = k.record("w", "reg/team/app", &digest);
        wrong_witness.witness = "x".into();
        assert!(t.learn(&wrong_witness).await.is_err());
        assert_eq!(t.entries(), 0);
    }

    /// A `bundle` witness's record holds cosign's image-signature Statement, signed
    /// through DSSE's pre-authentication encoding. It is learned like a `.sig` record;
    /// a signature over the bare Statement, a Statement about another digest, and an
    /// attestation's Statement are not.
    #[tokio::test]
    async fn bundle_records_are_learned_and_their_forgeries_are_not() {
        use signet_core::attestation::{pae, IN_TOTO_PAYLOAD_TYPE};
        use signet_core::bundle::Bundle;
        let k = TestKey::new();
        let t = trust();
        t.install(bundle(
            1,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![k.trusted("w", "1")],
        ));
        let digest = Digest::of(b"image");
        let as_bundle = |statement: &[u8], signature: Vec<u8>, digest: &Digest| {
            let mut r = k.record("w", "reg/team/app", digest);
            r.payload = statement.to_vec();
            r.signature = signature;
            r
        };
        let statement = Bundle::signature_statement("reg/team/app", &digest).to_bytes();
        let good = as_bundle(
            &statement,
            k.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &statement)),
            &digest,
        );
        // Not bound to the payload type: a signature over the bare Statement.
        let bare = as_bundle(&statement, k.sign(&statement), &digest);
        assert!(t.learn(&bare).await.is_err());
        // A genuine Statement about another image, recorded for this one.
        let other = Bundle::signature_statement("reg/team/app", &Digest::of(b"other")).to_bytes();
        let moved = as_bundle(&other, k.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &other)), &digest);
        let err = t.learn(&moved).await.err().unwrap_or_default();
        assert!(
            err.contains("not an image signature of this digest"),
            "{err}"
        );
        // An attestation by the same key is not a signature.
        let sbom = signet_core::attestation::Statement::for_image(
            "reg/team/app",
            &digest,
            signet_core::attestation::SPDX,
            serde_json::json!({}),
        )
        .to_bytes();
        let claim = as_bundle(&sbom, k.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &sbom)), &digest);
        assert!(t.learn(&claim).await.is_err());
        assert_eq!(t.entries_now().await, 0);
        t.learn(&good).await.expect("a bundle record is learned");
        assert_eq!(t.entries_now().await, 1);
    }

    #[tokio::test]
    async fn revocation_takes_effect_at_once_and_says_so() {
        let k = TestKey::new();
        let t = trust();
        t.install(bundle(
            1,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![k.trusted("w", "1")],
        ));
        let digest = Digest::of(b"image");
        let image = ImageRef::parse(&unreachable_image("team/app", &digest)).expect("ref");
        t.learn(&k.record("w", &image.repository_ref(), &digest))
            .await
            .expect("learn");
        // The bundle that follows the witness's revocation.
        let mut revoked = bundle(
            2,
            vec![policy("p", &["w"], "prod", PolicyMode::Enforce)],
            vec![],
        );
        revoked.revoked_keys = vec![k.trusted("w", "1")];
        assert_eq!(t.install(revoked), Installed::Current);
        let snap = t.snapshot();
        let check = t
            .check(&snap, &snap.policies[0], &image, &digest, deadline())
            .await;
        let f = check.failure.expect("denied");
        assert_eq!(f.reason, DenialReason::Revoked, "{}", f.detail);
        assert!(f.detail.contains("witness w is revoked"), "{}", f.detail);
        // The gateway is authoritative: an older bundle is installed, and called a
        // rollback; a newer one is current.
        assert_eq!(
            t.install(bundle(1, vec![], vec![])),
            Installed::Rollback { previous: 2 }
        );
        assert!(t.snapshot().policies.is_empty());
        assert_eq!(t.seen_revision(), 1);
        assert_eq!(t.install(bundle(7, vec![], vec![])), Installed::Current);
        // An event applied past the bundle, then a bundle fetched before it: behind.
        let mut record = k.record("w", &image.repository_ref(), &digest);
        record.revoked = Some(signet_core::Revocation {
            at: chrono::Utc::now(),
            by: "admin".into(),
            reason: "leaked".into(),
        });
        let revoked = RevokedSignature::of(&record).expect("revoked");
        assert!(t.revoke(8, &revoked));
        assert_eq!(t.install(bundle(7, vec![], vec![])), Installed::Behind);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(
            backoff(0, Duration::from_secs(10)),
            Duration::from_millis(200)
        );
        assert_eq!(
            backoff(1, Duration::from_secs(10)),
            Duration::from_millis(400)
        );
        assert_eq!(
            backoff(30, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }
}
