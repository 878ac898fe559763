//! AdmissionReview bodies, as the API server (or anyone who can reach the webhook)
//! posts them: the body is read, the images that need checking are listed, and each
//! is parsed as a reference, as `POST /validate` and `POST /mutate` do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::ImageRef;
use signet_verifier::admission::images_to_check;
use signet_verifier::server::review;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = review(data) else {
        return;
    };
    let Some((_object, images)) = images_to_check(&request) else {
        return;
    };
    assert!(!images.is_empty());
    for image in images {
        let _ = ImageRef::parse(image);
    }
});
