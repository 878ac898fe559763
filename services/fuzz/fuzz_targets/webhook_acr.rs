//! The acr webhook receiver's body, as a registry (or anyone who can reach the
//! gateway) sends it. Every event it yields names a repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_gateway::webhooks::acr;

fuzz_target!(|data: &[u8]| {
    let Ok(events) = acr::parse(data) else {
        return;
    };
    for event in &events {
        let _ = signet_core::ImageRef::from_parts(
            event.registry.as_deref().unwrap_or("docker.io"),
            &event.repository,
            event.tag.as_deref(),
            None,
        );
        if let Some(d) = &event.digest {
            let _ = signet_core::Digest::parse(d);
        }
    }
});
