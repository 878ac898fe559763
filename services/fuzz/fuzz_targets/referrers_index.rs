//! Referrers indexes as a registry serves them (the referrers API's answer, or the
//! `sha256-<hex>` tag of the referrers tag schema, which anyone who can push writes):
//! parsed within signet's bounds, descriptors listed, and regenerated with one entry more
//! as when publishing a referrer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_registry::referrers::read_referrers_index;

fuzz_target!(|data: &[u8]| {
    let _ = read_referrers_index(data);
});
