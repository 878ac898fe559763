//! Trust bundles as a verifier fetches them from the gateway or reads them from disk,
//! compiled as the verifier compiles them; and the same bytes as a Signet-Signature seal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::{Seal, TrustBundle};
use signet_verifier::trust::Snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        if let Ok(seal) = Seal::parse(header) {
            let again = Seal::parse(&seal.to_header());
            assert!(again.is_ok(), "seal parsed, but its header form does not");
        }
    }
    if let Ok(bundle) = serde_json::from_slice::<TrustBundle>(data) {
        let _ = Snapshot::compile(bundle);
    }
});
