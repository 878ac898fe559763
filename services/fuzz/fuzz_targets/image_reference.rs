//! Image references as a webhook, a sign request, a pod spec or the CLI give them.
//! Invariant: a parsed reference prints as a reference that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::{Digest, ImageRef};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(digest) = Digest::parse(input) {
        assert_eq!(Digest::parse(digest.as_str()).as_ref(), Ok(&digest));
        assert_eq!(digest.hex().len(), 64);
    }
    let Ok(image) = ImageRef::parse(input) else {
        return;
    };
    let printed = image.to_string();
    match ImageRef::parse(&printed) {
        Ok(again) => assert_eq!(again, image, "{input:?} printed as {printed:?}"),
        Err(e) => panic!("{input:?} parsed, but its printed form {printed:?} does not: {e}"),
    }
    // What cosign writes into docker-reference, and what signet pins, parse too.
    if let Err(e) = ImageRef::parse(&image.pinned()) {
        panic!(
            "{input:?} parsed, but its pinned form {:?} does not: {e}",
            image.pinned()
        );
    }
    if let Some(digest) = image.digest() {
        assert_eq!(image.with_digest(digest.clone()), image);
    }
});
