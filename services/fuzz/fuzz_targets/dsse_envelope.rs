//! DSSE envelopes from `.att` artifacts (whoever can push to the attestation tag writes
//! them): parsed, their Statement read and its predicate checked, as a reader does before
//! and after the signature check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::attestation::{check_predicate, Envelope};

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::parse(data) {
        if let Ok(statement) = envelope.statement() {
            let _ = check_predicate(&statement.predicate_type, &statement.predicate);
        }
    }
});
