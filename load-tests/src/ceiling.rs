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
/// Requests one write shaped like signet's makes.
pub const SIGNET_SHAPED_REQUESTS: f64 = 9.0;
/// Requests of an image push (its manifest `PUT`, the blobs being there) followed by
/// the minimal signature write: the ceiling the issue judges the push storm against.
pub const PUSH_AND_SIGN_REQUESTS: f64 = 7.0;

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

/// The ceiling with the image push included: each write first pushes an image (the
/// manifest `PUT` a storm's push is, over blobs uploaded before the clock starts), then
/// writes the minimal signature for it. What a push storm could reach if signing took
/// nothing but the fewest registry requests the protocol allows.
pub async fn with_push(
    registry: &Registry,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<Summary> {
    let images = std::sync::Arc::new(crate::oci::ImageSet::new());
    for r in 0..8 {
        images.prepare(registry, &format!("pushed/app{r}")).await?;
    }
    let registry = registry.clone();
    Ok(closed_loop(
        workers,
        Limits {
            count: 1_000_000,
            duration,
            in_flight: workers,
        },
        move |i| {
            let (registry, images) = (registry.clone(), images.clone());
            async move {
                let repo = format!("pushed/app{}", i % 8);
                let (body, digest) = images.manifest(i);
                registry
                    .put_manifest(&repo, &format!("v{i}"), body)
                    .await
                    .is_ok()
                    && registry.raw_signature_write(&repo, &digest).await.is_ok()
            }
        },
    )
    .await)
}

/// The ceiling again with the requests signet's signer makes per signature today
/// ([`Registry::signet_shaped_signature_write`]): what signet could reach if nothing
/// but its registry traffic counted. Images are pushed first (not timed).
pub async fn signet_shaped(
    registry: &Registry,
    workers: usize,
    count: u64,
    duration: Duration,
) -> anyhow::Result<Summary> {
    let images = crate::oci::ImageSet::new();
    for r in 0..8 {
        images.prepare(registry, &format!("shaped/app{r}")).await?;
    }
    let mut digests = Vec::with_capacity(count as usize);
    for i in 0..count {
        let (body, digest) = images.manifest(i);
        registry
            .put_manifest(&format!("shaped/app{}", i % 8), &format!("v{i}"), body)
            .await?;
        digests.push(digest);
    }
    let digests = std::sync::Arc::new(digests);
    let registry = registry.clone();
    Ok(closed_loop(
        workers,
        Limits {
            count,
            duration,
            in_flight: workers,
        },
        move |i| {
            let (registry, digests) = (registry.clone(), digests.clone());
            async move {
                let Some(digest) = digests.get(i as usize) else {
                    return false;
                };
                registry
                    .signet_shaped_signature_write(&format!("shaped/app{}", i % 8), digest)
                    .await
                    .is_ok()
            }
        },
    )
    .await)
}
