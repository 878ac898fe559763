//! Signing one job: resolve, deduplicate, sign, check, publish, record.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use signet_core::attestation::{self, Envelope, Statement};
use signet_core::bundle::{key_hint, Bundle};
use signet_core::{
    AttestationRecord, AttestationRequest, Digest, EventKind, ImageRef, Job, NewAudit,
    SignatureRecord, SimpleSigning, Witness, WitnessState,
};
use signet_kms::{Kms, KmsErrorKind};
use signet_registry::{
    AttestationLayer, RegistryClient, RegistryError, SignatureLayer, SignatureLimits,
};
use signet_store::{OutboxEvent, Store, StoreError};
use tracing::Instrument;
use uuid::Uuid;

/// Why a job could not be signed (this time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SignError {
    pub kind: SignErrorKind,
    /// A short, stable label for metrics and the job record (`unknown_witness`, ...).
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignErrorKind {
    /// Worth another attempt later: throttling, timeouts, 5xx, a busy claim.
    Retryable,
    /// Will never succeed as asked: straight to the dead letters.
    Permanent,
}

impl SignError {
    pub fn retryable(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: SignErrorKind::Retryable,
            reason,
            message: message.into(),
        }
    }

    pub fn permanent(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: SignErrorKind::Permanent,
            reason,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == SignErrorKind::Retryable
    }
}

fn from_store(e: StoreError) -> SignError {
    if e.retryable() {
        SignError::retryable("store_unavailable", e.to_string())
    } else {
        SignError::permanent("store_error", e.to_string())
    }
}

fn from_registry(e: RegistryError, image: &ImageRef) -> SignError {
    match &e {
        RegistryError::NotFound { .. } => SignError::permanent(
            "image_not_found",
            format!("image {image} does not exist in its registry: {e}"),
        ),
        _ if e.retryable() => SignError::retryable("registry_unavailable", e.to_string()),
        _ => SignError::permanent("registry_error", e.to_string()),
    }
}

/// Who checks that a digest reference exists in its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existence {
    /// [`SignContext::prepare`] does (HEAD).
    Check,
    /// The caller reads the manifest before signing anything new.
    ReadByCaller,
}

/// How a signature came to be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOutcome {
    /// A new signature was made and published.
    Signed,
    /// The signature was already recorded: no KMS call, no new layer.
    AlreadyRecorded,
    /// A valid signature was already in the registry (a crash between publish and
    /// record): recorded without a new KMS call.
    Adopted,
}

/// The per-witness KMS quota (`signer.kms_rate_per_witness` calls a second, with a burst
/// of one second's worth). On PostgreSQL, where several signer replicas share the store,
/// the budget is shared through it: each KMS call reserves the witness's next slot in
/// one statement, so N replicas together make the calls one would. On SQLite (`signet
/// up`, one process) a token bucket in memory does the same without a store write.
#[derive(Debug)]
pub enum KmsQuota {
    Local(DefaultKeyedRateLimiter<String>),
    Shared {
        /// One call per interval.
        interval: std::time::Duration,
        /// How far ahead a call may go without waiting (the burst).
        burst: std::time::Duration,
    },
}

impl KmsQuota {
    pub fn for_store(store: &Store, per_second: u32) -> Self {
        let rate = std::num::NonZeroU32::new(per_second).unwrap_or(std::num::NonZeroU32::MIN);
        match store.backend() {
            signet_store::Backend::Postgres => Self::Shared {
                interval: std::time::Duration::from_secs(1) / rate.get(),
                burst: std::time::Duration::from_secs(1),
            },
            signet_store::Backend::Sqlite => {
                Self::Local(RateLimiter::keyed(Quota::per_second(rate)))
            }
        }
    }

    /// Waits until `witness` may call the KMS once more.
    async fn until_ready(&self, store: &Store, witness: &str) -> Result<(), SignError> {
        match self {
            Self::Local(limiter) => {
                limiter.until_key_ready(&witness.to_owned()).await;
                Ok(())
            }
            Self::Shared { interval, burst } => {
                let slot = store
                    .reserve_rate_slot(&format!("kms:{witness}"), *interval)
                    .await
                    .map_err(from_store)?;
                let wait = slot.ahead.saturating_sub(*burst);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
        }
    }
}

/// Whether the work done under a signing claim also gave it up (in the record's
/// transaction), or left it for [`SignContext::with_claim`] to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Held,
    Released,
}

/// A job's request, checked: the image, its digest and the witness that signs it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub image: ImageRef,
    pub digest: Digest,
    pub witness: Witness,
}

/// What signing needs, shared by every worker.
#[derive(Debug)]
pub struct SignContext {
    pub store: Store,
    pub kms: Arc<Kms>,
    pub registry: RegistryClient,
    /// Keeps each witness's KMS calls under its quota.
    pub quota: KmsQuota,
    /// Names this process's claims, so a crashed replica's claims are told apart.
    pub holder: String,
    /// How long a claim on (repository, digest, witness) lasts if never released.
    pub claim_lease: std::time::Duration,
}

impl SignContext {
    pub fn new(
        store: Store,
        kms: Arc<Kms>,
        registry: RegistryClient,
        kms_rate_per_witness: u32,
    ) -> Self {
        let quota = KmsQuota::for_store(&store, kms_rate_per_witness);
        Self {
            store,
            kms,
            registry,
            quota,
            holder: format!("signer-{}", Uuid::now_v7()),
            claim_lease: std::time::Duration::from_secs(120),
        }
    }

    /// Signs one image for `job` (or finds it already signed) and records it. The digest
    /// is resolved first when the request names a tag.
    pub async fn sign(&self, job: &mut Job) -> Result<(SignatureRecord, SignOutcome), SignError> {
        let prepared = self.prepare(job).await?;
        self.sign_prepared(job, &prepared).await
    }

    /// Checks `job`'s request and witness, and resolves its digest (recorded in the job);
    /// a digest reference is checked to exist (HEAD), so nothing is signed that no registry
    /// holds.
    pub async fn prepare(&self, job: &mut Job) -> Result<Prepared, SignError> {
        self.prepare_with(job, Existence::Check).await
    }

    /// [`SignContext::prepare`] for a caller that reads the manifest itself before anything
    /// new is signed (index expansion), which checks existence at no extra request.
    pub async fn prepare_read_later(&self, job: &mut Job) -> Result<Prepared, SignError> {
        self.prepare_with(job, Existence::ReadByCaller).await
    }

    async fn prepare_with(
        &self,
        job: &mut Job,
        existence: Existence,
    ) -> Result<Prepared, SignError> {
        let image = ImageRef::parse(&job.request.image)
            .map_err(|e| SignError::permanent("invalid_request", e.to_string()))?;
        let witness = self
            .store
            .get_witness(&job.request.witness)
            .await
            .map_err(from_store)?
            .ok_or_else(|| {
                SignError::permanent(
                    "unknown_witness",
                    format!(
                        "witness {:?} does not exist; create it with `signet witness create`",
                        job.request.witness
                    ),
                )
            })?;
        if witness.state == WitnessState::Revoked {
            return Err(SignError::permanent(
                "witness_revoked",
                format!("witness {:?} is revoked and signs nothing", witness.name),
            ));
        }
        let digest = match (image.digest(), existence) {
            (Some(d), Existence::ReadByCaller) => d.clone(),
            // For a digest reference, resolve is a HEAD that checks the digest exists.
            _ => self
                .registry
                .resolve(&image)
                .await
                .map_err(|e| from_registry(e, &image))?,
        };
        job.digest = Some(digest.clone());
        Ok(Prepared {
            image,
            digest,
            witness,
        })
    }

    /// Signs what [`SignContext::prepare`] resolved.
    pub async fn sign_prepared(
        &self,
        job: &Job,
        prepared: &Prepared,
    ) -> Result<(SignatureRecord, SignOutcome), SignError> {
        self.sign_digest(job, &prepared.image, &prepared.digest, &prepared.witness)
            .await
    }

    /// Signs, publishes and records each attestation `job` asks for about what `prepared`
    /// resolved, or finds it recorded. Done before the signature, whose record closes the
    /// job: a job succeeds only once everything it asked for is recorded.
    pub async fn attest_prepared(
        &self,
        job: &Job,
        prepared: &Prepared,
    ) -> Result<Vec<(AttestationRecord, SignOutcome)>, SignError> {
        let mut done = Vec::with_capacity(job.request.attestations.len());
        for request in &job.request.attestations {
            done.push(self.attest_one(job, prepared, request).await?);
        }
        Ok(done)
    }

    async fn attest_one(
        &self,
        job: &Job,
        prepared: &Prepared,
        request: &AttestationRequest,
    ) -> Result<(AttestationRecord, SignOutcome), SignError> {
        let invalid = |e: attestation::AttestationError| {
            SignError::permanent("invalid_attestation", format!("attestation: {e}"))
        };
        let predicate_type =
            attestation::predicate_type(&request.predicate_type).map_err(invalid)?;
        attestation::check_predicate(&predicate_type, &request.predicate).map_err(invalid)?;
        let (image, digest, witness) = (&prepared.image, &prepared.digest, &prepared.witness);
        let repository = image.repository_ref();
        let statement = Statement::for_image(
            &repository,
            digest,
            &predicate_type,
            request.predicate.clone(),
        );
        let (signed, payload) = Envelope::signing_input(&statement);
        let statement_digest = Digest::of(&payload);
        let find = || {
            self.store
                .find_attestation(&repository, digest, &witness.name, &statement_digest)
        };
        if let Some(existing) = find().await.map_err(from_store)? {
            return Ok((existing, SignOutcome::AlreadyRecorded));
        }
        // A witness whose signature of this digest was revoked vouches for nothing more
        // about it.
        self.refuse_revoked(digest, &witness.name).await?;
        let claim = format!("{repository}@{digest}#{}#{statement_digest}", witness.name);
        let busy = || {
            format!(
                "an attestation of {repository}@{digest} by {} is being signed in another signer",
                witness.name
            )
        };
        self.with_claim(&claim, busy, async {
            if let Some(existing) = find().await.map_err(from_store)? {
                return Ok(((existing, SignOutcome::AlreadyRecorded), Claim::Held));
            }
            self.attest_claimed(
                job,
                image,
                digest,
                witness,
                &repository,
                &predicate_type,
                signed,
                payload,
            )
            .await
            .map(|done| (done, Claim::Held))
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn attest_claimed(
        &self,
        job: &Job,
        image: &ImageRef,
        digest: &Digest,
        witness: &Witness,
        repository: &str,
        predicate_type: &str,
        signed: Vec<u8>,
        payload: Vec<u8>,
    ) -> Result<(AttestationRecord, SignOutcome), SignError> {
        let primary = witness.primary().ok_or_else(|| {
            SignError::permanent(
                "no_primary_key",
                format!(
                    "witness {:?} has no active primary key version",
                    witness.name
                ),
            )
        })?;
        // A crash after publishing but before recording left a valid envelope of this
        // very statement in the registry: adopt it, with no KMS call and no new layer.
        let existing = self
            .registry
            .fetch_attestations(
                image,
                digest,
                SignatureLimits {
                    max_layers: 256,
                    max_payload_bytes: 4 << 20,
                },
            )
            .await
            .map_err(|e| from_registry(e, image))?;
        let adopted = existing.iter().find_map(|layer| {
            let envelope = Envelope::parse(&layer.envelope).ok()?;
            adopt_envelope(&envelope, witness, &payload, &signed)
        });
        let artifact = format!("{repository}:{}", digest.attestation_tag());
        let (signature, version, outcome) = match adopted {
            Some((sig, version)) => (sig, version, SignOutcome::Adopted),
            None => {
                let signature = self.sign_checked(witness, primary, &signed).await?;
                let envelope = Envelope::signed(payload.clone(), signature.clone());
                self.registry
                    .publish_attestation(
                        image,
                        digest,
                        &AttestationLayer {
                            envelope: envelope.to_bytes(),
                            predicate_type: predicate_type.to_owned(),
                        },
                    )
                    .await
                    .map_err(|e| from_registry(e, image))?;
                (signature, primary.clone(), SignOutcome::Signed)
            }
        };
        let record = AttestationRecord {
            id: Uuid::now_v7(),
            repository: repository.to_owned(),
            digest: digest.clone(),
            witness: witness.name.clone(),
            key_version: version.version.clone(),
            key_fingerprint: version.fingerprint.clone(),
            algorithm: witness.algorithm,
            predicate_type: predicate_type.to_owned(),
            statement: payload,
            signature,
            artifact,
            job_id: Some(job.id),
            created_at: Utc::now(),
        };
        let mut detail = publish_detail(job, witness, &version, &record.artifact, outcome);
        detail["predicate_type"] = predicate_type.into();
        let audit = NewAudit::new(
            "signer",
            "attestation.publish",
            format!("{repository}@{digest}"),
            detail,
        );
        let event = published_event(EventKind::AttestationPublished, digest, &record)?;
        let stored = self
            .store
            .record_attestation(&record, &audit, Some(&event))
            .await
            .map_err(from_store)?;
        Ok((stored, outcome))
    }

    /// The signature already recorded for what `prepared` names, if any.
    pub async fn recorded(
        &self,
        prepared: &Prepared,
    ) -> Result<Option<SignatureRecord>, SignError> {
        self.store
            .find_signature(
                &prepared.image.repository_ref(),
                &prepared.digest,
                &prepared.witness.name,
            )
            .await
            .map_err(from_store)
    }

    async fn sign_digest(
        &self,
        job: &Job,
        image: &ImageRef,
        digest: &Digest,
        witness: &Witness,
    ) -> Result<(SignatureRecord, SignOutcome), SignError> {
        let repository = image.repository_ref();
        // No lookup before the claim: the one after it decides, and a new image (the
        // common case, a push) costs one statement less. An image already signed costs
        // the claim and its release instead of one read.
        let claim = format!("{repository}@{digest}#{}", witness.name);
        let busy = || {
            format!(
                "{repository}@{digest} is being signed by {} in another signer",
                witness.name
            )
        };
        self.with_claim(
            &claim,
            busy,
            self.sign_claimed(job, image, digest, witness, &repository, &claim),
        )
        .await
    }

    /// Takes the store claim `claim` (or fails, retryably, with `busy`), runs `work`
    /// holding it, and releases it: no two signers make the same signature or attestation
    /// at once.
    async fn with_claim<T>(
        &self,
        claim: &str,
        busy: impl FnOnce() -> String,
        work: impl std::future::Future<Output = Result<(T, Claim), SignError>>,
    ) -> Result<T, SignError> {
        let claimed = self
            .store
            .claim_signing(claim, &self.holder, self.claim_lease)
            .await
            .map_err(from_store)?;
        if !claimed {
            return Err(SignError::retryable("claimed_elsewhere", busy()));
        }
        let result = self.holding_claim(claim, work).await;
        if !matches!(result, Ok((_, Claim::Released))) {
            if let Err(e) = self.store.release_signing(claim, &self.holder).await {
                // The claim expires on its own; what was signed is already safe.
                tracing::warn!(error = %e, claim, "could not release signing claim");
            }
        }
        result.map(|(done, _)| done)
    }

    /// Runs `work` while renewing the claim every third of its lease, so that a lease
    /// short enough to free a crashed worker's images quickly never runs out under a
    /// live worker whose KMS or registry is slow. The renewals run in a task of their
    /// own: awaited beside `work` in one task, a renewal waiting for the store's write
    /// connection would stop `work` from finishing the transaction that holds it.
    async fn holding_claim<T>(&self, claim: &str, work: impl std::future::Future<Output = T>) -> T {
        let (store, holder, lease, key) = (
            self.store.clone(),
            self.holder.clone(),
            self.claim_lease,
            claim.to_owned(),
        );
        let every = (lease / 3).max(std::time::Duration::from_millis(100));
        let renewer = tokio::spawn(async move {
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                renew.tick().await;
                match store.renew_signing(&key, &holder, lease).await {
                    Ok(true) => {}
                    // Someone took over an expired claim; the registry's identical-layer
                    // check still keeps the artifact to one layer per signature.
                    Ok(false) => {
                        tracing::warn!(claim = %key, "lost the signing claim while signing")
                    }
                    Err(e) => {
                        tracing::warn!(claim = %key, error = %e, "could not renew the signing claim")
                    }
                }
            }
        });
        let done = work.await;
        renewer.abort();
        // Wait for the cancellation, so no renewal lands after the claim is released.
        let _ = renewer.await;
        done
    }

    /// Refuses to sign `digest` with `witness` when a signature of that digest by that
    /// witness was revoked, under any repository and with any key version: re-signing
    /// it elsewhere, or after a key rotation, must not undo the revocation.
    async fn refuse_revoked(&self, digest: &Digest, witness: &str) -> Result<(), SignError> {
        match self
            .store
            .find_revoked_signature(digest, witness)
            .await
            .map_err(from_store)?
        {
            None => Ok(()),
            Some(revoked) => already_recorded(revoked).map(|_| ()),
        }
    }

    async fn sign_claimed(
        &self,
        job: &Job,
        image: &ImageRef,
        digest: &Digest,
        witness: &Witness,
        repository: &str,
        claim: &str,
    ) -> Result<((SignatureRecord, SignOutcome), Claim), SignError> {
        // Signed already (by another replica, or before), or revoked under any
        // repository: one statement says which, under the claim.
        if let Some(existing) = self
            .store
            .find_signature_or_revocation(repository, digest, &witness.name)
            .await
            .map_err(from_store)?
        {
            return already_recorded(existing).map(|done| (done, Claim::Held));
        }
        let primary = witness.primary().ok_or_else(|| {
            SignError::permanent(
                "no_primary_key",
                format!(
                    "witness {:?} has no active primary key version",
                    witness.name
                ),
            )
        })?;

        // One signature per format asked for (the request's, from a signing rule or a
        // pipeline, else the witness's own); the record keeps the `.sig` one when there
        // is one (what every verifier reads), else the bundle's.
        let format = job.request.format.unwrap_or(witness.format);
        let mut made = None;
        if format.writes_cosign() {
            made = Some(
                self.cosign_signature(job, image, digest, witness, primary, repository)
                    .await?,
            );
        }
        if format.writes_bundle() {
            let bundle = self
                .bundle_signature(image, digest, witness, primary, repository)
                .await?;
            made.get_or_insert(bundle);
        }
        let Made {
            payload,
            signature,
            version,
            outcome,
            artifact,
        } = made.ok_or_else(|| SignError::permanent("internal", "no signature format"))?;

        let record = SignatureRecord {
            id: Uuid::now_v7(),
            repository: repository.to_owned(),
            digest: digest.clone(),
            witness: witness.name.clone(),
            key_version: version.version.clone(),
            key_fingerprint: version.fingerprint.clone(),
            algorithm: witness.algorithm,
            payload,
            signature,
            artifact,
            job_id: Some(job.id),
            created_at: Utc::now(),
            revoked: None,
        };
        let audit = NewAudit::new(
            "signer",
            "signature.publish",
            format!("{repository}@{digest}"),
            publish_detail(job, witness, &version, &record.artifact, outcome),
        );
        let event = published_event(EventKind::SignaturePublished, digest, &record)?;
        let stored = self
            .store
            .record_signature_releasing(&record, &audit, Some(&event), claim, &self.holder)
            .await
            .map_err(from_store)?;
        Ok(((stored, outcome), Claim::Released))
    }

    /// The cosign signature (`.sig` tag): the simple-signing payload with the request's
    /// annotations, adopted from the registry after a crash, else signed and published.
    async fn cosign_signature(
        &self,
        job: &Job,
        image: &ImageRef,
        digest: &Digest,
        witness: &Witness,
        primary: &signet_core::KeyVersion,
        repository: &str,
    ) -> Result<Made, SignError> {
        let mut payload = SimpleSigning::new(repository, digest.clone());
        if !job.request.annotations.is_empty() {
            payload.optional = Some(
                job.request
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect::<BTreeMap<_, _>>(),
            );
        }
        let payload = payload.to_bytes();

        // A crash after publishing but before recording leaves a valid layer in the
        // registry; adopting it costs no KMS call and adds no layer.
        let existing = self
            .registry
            .fetch_signatures(image, digest)
            .await
            .map_err(|e| from_registry(e, image))?;
        let adopted = existing.into_iter().find_map(|layer| {
            (layer.payload == payload)
                .then(|| {
                    witness.live_versions().find(|v| {
                        v.public_key
                            .verify(witness.algorithm, &layer.payload, &layer.signature)
                            .is_ok()
                    })
                })
                .flatten()
                .map(|v| (layer, v.clone()))
        });
        Ok(match adopted {
            Some((layer, version)) => Made {
                artifact: format!("{repository}:{}", digest.signature_tag()),
                payload,
                signature: layer.signature,
                version,
                outcome: SignOutcome::Adopted,
            },
            None => {
                let signature = self.sign_checked(witness, primary, &payload).await?;
                let layer = SignatureLayer {
                    payload: payload.clone(),
                    signature: signature.clone(),
                    annotations: BTreeMap::new(),
                };
                let published = self
                    .registry
                    .publish_signature(image, digest, &layer)
                    .await
                    .map_err(|e| from_registry(e, image))?;
                Made {
                    payload,
                    signature,
                    version: primary.clone(),
                    outcome: SignOutcome::Signed,
                    artifact: published.artifact,
                }
            }
        })
    }

    /// The Sigstore bundle (cosign 3's format): the DSSE signature of cosign's image
    /// signature Statement, attached as an OCI 1.1 referrer (or listed in the referrers
    /// tag index). A bundle of this Statement already there under a live key of the
    /// witness (a crash after publishing) is adopted.
    async fn bundle_signature(
        &self,
        image: &ImageRef,
        digest: &Digest,
        witness: &Witness,
        primary: &signet_core::KeyVersion,
        repository: &str,
    ) -> Result<Made, SignError> {
        let statement = Bundle::signature_statement(repository, digest);
        let (signed, payload) = Envelope::signing_input(&statement);
        let existing = self
            .registry
            .fetch_bundles(image, digest)
            .await
            .map_err(|e| from_registry(e, image))?;
        let adopted = existing.iter().find_map(|fetched| {
            let bundle = Bundle::parse(&fetched.bytes).ok()?;
            adopt_envelope(&bundle.envelope, witness, &payload, &signed)
                .map(|(sig, version)| (sig, version, fetched.manifest_digest.clone()))
        });
        if let Some((signature, version, manifest)) = adopted {
            return Ok(Made {
                payload,
                signature,
                version,
                outcome: SignOutcome::Adopted,
                artifact: format!("{repository}@{manifest}"),
            });
        }
        let signature = self.sign_checked(witness, primary, &signed).await?;
        let bundle = Bundle::for_statement(
            &statement,
            &key_hint(&primary.public_key),
            signature.clone(),
        );
        let published = self
            .registry
            .publish_bundle(image, digest, &bundle)
            .await
            .map_err(|e| from_registry(e, image))?;
        Ok(Made {
            payload,
            signature,
            version: primary.clone(),
            outcome: SignOutcome::Signed,
            artifact: format!("{repository}@{}", published.manifest_digest),
        })
    }

    /// Has the KMS sign `bytes` with the primary version, and checks the answer under the
    /// pinned key: never publish what the pinned key does not verify, or a KMS that
    /// answered with another key's signature would poison the registry.
    async fn sign_checked(
        &self,
        witness: &Witness,
        primary: &signet_core::KeyVersion,
        bytes: &[u8],
    ) -> Result<Vec<u8>, SignError> {
        let signature = self.kms_sign(witness, &primary.version, bytes).await?;
        primary
            .public_key
            .verify(witness.algorithm, bytes, &signature)
            .map_err(|_| {
                SignError::permanent(
                    "signature_mismatch",
                    format!(
                        "KMS key {} returned a signature that does not verify under witness {:?}'s pinned key {} (version {}); nothing was published",
                        witness.kms_key, witness.name, primary.fingerprint, primary.version
                    ),
                )
            })?;
        Ok(signature)
    }

    async fn kms_sign(
        &self,
        witness: &Witness,
        version: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, SignError> {
        if witness.is_verify_only() {
            return Err(SignError::permanent(
                "witness_verify_only",
                format!(
                    "witness {:?} is verify-only: signet holds only its public key and never signs with it",
                    witness.name
                ),
            ));
        }
        let provider = self
            .kms
            .open(&witness.kms_key)
            .map_err(|e| SignError::permanent("kms_error", e.to_string()))?;
        self.quota.until_ready(&self.store, &witness.name).await?;
        let kind = provider_kind(&witness.kms_key);
        let span = tracing::info_span!("kms.sign", provider = kind, key_version = version);
        let started = std::time::Instant::now();
        let signed = provider
            .sign(version, witness.algorithm, payload)
            .instrument(span)
            .await;
        let seconds = started.elapsed().as_secs_f64();
        let metrics = signet_runtime::metrics::metrics();
        signed
            .map_err(|e| {
                if matches!(e.kind, KmsErrorKind::Throttled(_)) {
                    metrics.kms_call(kind, "throttled", seconds);
                    SignError::retryable("kms_throttled", e.to_string())
                } else if e.retryable() {
                    metrics.kms_call(kind, "unavailable", seconds);
                    SignError::retryable("kms_unavailable", e.to_string())
                } else {
                    metrics.kms_call(kind, "error", seconds);
                    SignError::permanent("kms_error", e.to_string())
                }
            })
            .inspect(|_| metrics.kms_call(kind, "ok", seconds))
    }
}

/// The signature and key version of a DSSE envelope already in the registry that
/// carries exactly `payload`, signed over `signed` (its pre-authentication encoding) by a
/// live key of `witness`: what a crash between publishing and recording left behind,
/// adopted instead of signed again.
fn adopt_envelope(
    envelope: &Envelope,
    witness: &Witness,
    payload: &[u8],
    signed: &[u8],
) -> Option<(Vec<u8>, signet_core::KeyVersion)> {
    if envelope.payload != payload {
        return None;
    }
    witness.live_versions().find_map(|v| {
        envelope.signatures.iter().find_map(|s| {
            v.public_key
                .verify(witness.algorithm, signed, &s.sig)
                .is_ok()
                .then(|| (s.sig.clone(), v.clone()))
        })
    })
}

/// One signature made (or adopted) in one format.
struct Made {
    /// What the record keeps as signed: the simple-signing payload, or the bundle's
    /// in-toto Statement (signed through DSSE's pre-authentication encoding).
    payload: Vec<u8>,
    signature: Vec<u8>,
    version: signet_core::KeyVersion,
    outcome: SignOutcome,
    /// `registry/repository:sha256-<hex>.sig`, or `registry/repository@<referrer digest>`.
    artifact: String,
}

/// The event announcing a new record; it continues this job's trace through the relay
/// to the verifiers.
fn published_event(
    kind: EventKind,
    digest: &Digest,
    record: &impl serde::Serialize,
) -> Result<OutboxEvent, SignError> {
    let data = serde_json::to_value(record)
        .map_err(|e| SignError::permanent("internal", e.to_string()))?;
    Ok(
        OutboxEvent::new(kind, digest.to_string(), data).with_traceparent(
            signet_runtime::telemetry::traceparent(&tracing::Span::current()),
        ),
    )
}

/// The recorded signature stands for the job, unless it was revoked: then signet does
/// not sign that digest again with that witness, under any repository or key version
/// (a new push of the same digest, elsewhere or after a rotation, must not undo a
/// revocation).
/// The audit detail of a signature or attestation the signer published (or adopted).
fn publish_detail(
    job: &Job,
    witness: &Witness,
    version: &signet_core::KeyVersion,
    artifact: &str,
    outcome: SignOutcome,
) -> serde_json::Value {
    serde_json::json!({
        "witness": witness.name,
        "key_version": version.version,
        "key_fingerprint": version.fingerprint,
        "artifact": artifact,
        "job_id": job.id,
        "adopted": outcome == SignOutcome::Adopted,
    })
}

fn already_recorded(
    existing: SignatureRecord,
) -> Result<(SignatureRecord, SignOutcome), SignError> {
    match &existing.revoked {
        None => Ok((existing, SignOutcome::AlreadyRecorded)),
        Some(r) => Err(SignError::permanent(
            "signature_revoked",
            format!(
                "the signature of {}@{} by witness {:?} was revoked by {} at {} ({}); signet does not sign that digest with that witness again, under any repository or key version",
                existing.repository, existing.digest, existing.witness, r.by, r.at, r.reason
            ),
        )),
    }
}

/// The provider label of a KMS key URI: its scheme (`local`, `awskms`, `hashivault`,
/// `alikms`), a bounded set, so metrics never carry key names.
fn provider_kind(kms_key: &str) -> &'static str {
    match kms_key.split_once("://").map(|(scheme, _)| scheme) {
        Some("local") => "local",
        Some("awskms") => "awskms",
        Some("hashivault") => "hashivault",
        Some("alikms") => "alikms",
        Some("gcpkms") => "gcpkms",
        _ => "other",
    }
}
