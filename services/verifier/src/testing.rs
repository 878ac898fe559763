//! Test helpers: witness keys that really sign, bundles and policies built from them.

use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use chrono::{DateTime, Utc};
use signet_core::{
    Digest, KeyVersion, KeyVersionState, PolicyMode, PublicKey, SecurityPolicy, SignatureAlgorithm,
    SignatureRecord, SimpleSigning, TrustBundle, TrustedKey, Witness, WitnessState,
};
use signet_registry::{RegistryClient, RegistryConfig};

/// A witness key that signs like the KMS would.
pub struct TestKey {
    pair: KeyPair,
    pub public: PublicKey,
}

impl TestKey {
    pub fn new() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("keygen");
        let der = pair.public_key().as_der().expect("der");
        let public = PublicKey::parse(der.as_ref()).expect("parse");
        Self { pair, public }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .expect("sign");
        sig
    }

    /// A seal over `bytes` by this key, as the control plane's KMS key makes it.
    pub fn seal(&self, bytes: &[u8]) -> signet_core::Seal {
        signet_core::Seal {
            key: self.public.fingerprint(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            signature: self.sign(bytes),
        }
    }

    pub fn trusted(&self, witness: &str, version: &str) -> TrustedKey {
        TrustedKey {
            witness: witness.into(),
            version: version.into(),
            fingerprint: self.public.fingerprint(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            public_key: self.public.clone(),
        }
    }

    /// A signature record as the signer publishes it (and `signature.published` carries).
    pub fn record(&self, witness: &str, repository: &str, digest: &Digest) -> SignatureRecord {
        let payload = SimpleSigning::new(repository, digest.clone()).to_bytes();
        SignatureRecord {
            id: uuid::Uuid::now_v7(),
            repository: repository.into(),
            digest: digest.clone(),
            witness: witness.into(),
            key_version: "1".into(),
            key_fingerprint: self.public.fingerprint(),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            signature: self.sign(&payload),
            payload,
            artifact: format!("{repository}:{}", digest.signature_tag()),
            job_id: None,
            created_at: Utc::now(),
            revoked: None,
        }
    }

    pub fn witness(&self, name: &str, state: WitnessState) -> Witness {
        Witness {
            name: name.into(),
            kms_key: format!("local://{name}"),
            algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
            format: Default::default(),
            description: String::new(),
            state,
            key_versions: vec![KeyVersion {
                version: "1".into(),
                public_key: self.public.clone(),
                fingerprint: self.public.fingerprint(),
                primary: true,
                state: KeyVersionState::Active,
                created_at: Utc::now(),
            }],
            created_at: Utc::now(),
        }
    }
}

pub fn policy(name: &str, witnesses: &[&str], namespace: &str, mode: PolicyMode) -> SecurityPolicy {
    let t = DateTime::from_timestamp_millis(0).unwrap_or_default();
    SecurityPolicy {
        labels: Default::default(),
        name: name.into(),
        witnesses: witnesses.iter().map(|w| (*w).to_owned()).collect(),
        require: 1,
        cluster: "c1".into(),
        namespace: namespace.into(),
        namespace_selector: None,
        mode,
        enabled: true,
        exemptions: vec!["registry.k8s.io/pause:*".into()],
        require_digest: false,
        allow_break_glass: false,
        pin_digests: false,
        attestations: Vec::new(),
        note: String::new(),
        created_at: t,
        updated_at: t,
    }
}

pub fn bundle(revision: i64, policies: Vec<SecurityPolicy>, keys: Vec<TrustedKey>) -> TrustBundle {
    TrustBundle {
        cluster: "c1".into(),
        revision,
        generated_at: Utc::now(),
        policies,
        keys,
        revoked_keys: Vec::new(),
        revoked_signatures: Vec::new(),
        since: None,
    }
}

/// A registry client whose every call fails fast: proves a path needs no registry.
pub fn no_registry() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        timeout: Duration::from_secs(2),
        ..RegistryConfig::for_loopback()
    })
    .expect("registry client")
}

/// An image on a registry nobody listens on.
pub fn unreachable_image(repo: &str, digest: &Digest) -> String {
    format!("127.0.0.1:1/{repo}@{digest}")
}
