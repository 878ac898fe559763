//! Notation signature envelopes from OCI referrers (whoever can push to the repository
//! attaches them to an image): the same bytes parsed strictly as a JWS envelope and as a
//! COSE_Sign1 one, as a reader does with the layer's media type; an envelope that parses
//! is then verified under its own leaf certificate's key, which may refuse it for any
//! reason but that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::notation::{NotationError, NotationSignature, COSE_MEDIA_TYPE, JWS_MEDIA_TYPE};

fuzz_target!(|data: &[u8]| {
    for media_type in [JWS_MEDIA_TYPE, COSE_MEDIA_TYPE] {
        let Ok(signature) = NotationSignature::parse(media_type, data) else {
            continue;
        };
        assert_eq!(
            signature.chain_thumbprints().len(),
            signature.certificates().len()
        );
        let (not_before, not_after) = signature.leaf_validity();
        let _ = (not_before, not_after, signature.expiry());
        if let Ok(key) = signature.leaf_key() {
            let verdict = signature.verify(&key);
            assert!(
                !matches!(verdict, Err(NotationError::KeyMismatch { .. })),
                "the leaf key is its own witness: {verdict:?}"
            );
        }
    }
});
