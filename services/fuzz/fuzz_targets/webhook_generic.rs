//! The generic webhook receiver's body: a sign request, then its image reference, as
//! `POST /v1/webhooks/generic` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_core::digest::is_attachment_tag;
use signet_core::ImageRef;
use signet_gateway::webhooks::parse_sign_request;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_sign_request(data) else {
        return;
    };
    if let Ok(image) = ImageRef::parse(&request.image) {
        if let Some(tag) = image.tag() {
            let _ = is_attachment_tag(tag);
        }
    }
});
