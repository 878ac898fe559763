//! cosign simple-signing payloads, as a registry's `.sig` layer serves them.
//! Invariant: a strictly parsed payload serialises to bytes that parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::SimpleSigning;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = SimpleSigning::parse_strict(data) else {
        return;
    };
    let bytes = payload.to_bytes();
    match SimpleSigning::parse_strict(&bytes) {
        Ok(again) => assert_eq!(again, payload),
        Err(e) => panic!(
            "payload parsed, but its serialisation {:?} does not: {e}",
            String::from_utf8_lossy(&bytes)
        ),
    }
});
