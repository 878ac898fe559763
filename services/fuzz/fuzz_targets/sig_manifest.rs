//! `.sig` manifests as a registry serves them (a registry owner, or anyone who can push
//! to the signature tag, controls them): parsed, signatures listed, config and manifest
//! regenerated as when a signature is appended.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_registry::cosign::read_signature_manifest;

fuzz_target!(|data: &[u8]| {
    let _ = read_signature_manifest(data);
});
