//! Sigstore bundles from OCI referrers (whoever can push to the repository attaches them
//! to an image): parsed strictly, their Statement read, and re-serialised, as a reader
//! does before and after the signature check; a parsed bundle serialises to one that
//! parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::bundle::Bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data) {
        let _ = bundle.statement_unverified();
        let _ = bundle.manifest_annotations();
        let again = Bundle::parse(&bundle.to_bytes()).expect("a parsed bundle re-serialises");
        assert_eq!(again, bundle);
    }
});
