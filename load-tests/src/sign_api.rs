//! The pipeline sign API: `POST /v1/sign?wait=30` at a fixed rate, each call for an image
//! no signing rule covers, answered once the signature is published and recorded.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::oci::{ImageSet, Registry};
use crate::pace::{open_loop, Limits, Paced};
use crate::stack::Stack;

/// Pushes `rate × duration` images to `api/app0..3`, then asks for their signatures at
/// `rate` per second with `witness`.
pub async fn run(
    stack: &Stack,
    witness: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Paced> {
    let registry = Registry::new(&stack.registry.host())?;
    let images = ImageSet::new();
    let count = (rate * duration.as_secs_f64()).ceil() as u64;
    for r in 0..4 {
        images.prepare(&registry, &format!("api/app{r}")).await?;
    }
    let mut refs = Vec::with_capacity(count as usize);
    for i in 0..count {
        let (body, digest) = images.manifest(i);
        let repo = format!("api/app{}", i % 4);
        registry
            .put_manifest(&repo, &format!("build-{i}"), body)
            .await?;
        refs.push(format!("{}/{repo}@{digest}", registry.host));
    }
    let refs = Arc::new(refs);
    let url = format!("{}/v1/sign?wait=30", stack.api.base);
    let (http, token, witness) = (
        stack.api.http().clone(),
        stack.api.token().to_owned(),
        witness.to_owned(),
    );
    Ok(open_loop(
        rate,
        Limits {
            count,
            duration,
            in_flight: 512,
        },
        move |i| {
            let (http, token, url, refs, witness) = (
                http.clone(),
                token.clone(),
                url.clone(),
                refs.clone(),
                witness.clone(),
            );
            async move {
                let Some(image) = refs.get(i as usize) else {
                    return false;
                };
                match http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"image": image, "witness": witness}))
                    .send()
                    .await
                {
                    // 200: signed; 202 would mean the wait ran out.
                    Ok(r) => r.status().as_u16() == 200,
                    Err(_) => false,
                }
            }
        },
    )
    .await)
}
