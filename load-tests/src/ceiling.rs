//! The registry's own ceiling for signature writes: a raw loop of cosign-shaped
//! signature writes (six requests each, see [`Registry::raw_signature_write`]) from many
//! concurrent workers, with no signing, store or queue in the way. Signet cannot sign
//! faster than its registry can take signatures; the push storm is judged against this.

use std::time::Duration;

use signet_core::Digest;

use crate::oci::Registry;
use crate::pace::{closed_loop, Limits};
use crate::stats::Summary;

/// Requests one raw signature write makes.
pub const REQUESTS_PER_WRITE: f64 = 6.0;

/// Writes signatures for made-up digests into 8 repositories from `workers` loops for
/// `duration` (at most `count` writes).
pub async fn run(registry: &Registry, workers: usize, count: u64, duration: Duration) -> Summary {
    let salt = uuid::Uuid::new_v4();
    let registry = registry.clone();
    closed_loop(
        workers,
        Limits {
            count,
            duration,
            in_flight: workers,
        },
        move |i| {
            let registry = registry.clone();
            async move {
                let digest = Digest::of(format!("{salt}-{i}").as_bytes());
                registry
                    .raw_signature_write(&format!("ceiling/app{}", i % 8), &digest)
                    .await
                    .is_ok()
            }
        },
    )
    .await
}
