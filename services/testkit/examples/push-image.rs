//! Pushes a small random image to a registry, for trying signet without docker:
//! `cargo run -p signet-testkit --example push-image -- 127.0.0.1:5000/demo/app:v1`.
//! Add `--index` to push a two-platform image index instead.

use anyhow::Context;
use signet_core::ImageRef;
use signet_testkit::image::TestImage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let reference = args
        .next()
        .context("usage: push-image REGISTRY/REPO:TAG [--index]")?;
    let index = args.next().as_deref() == Some("--index");
    let image = ImageRef::parse(&reference)?;
    let tag = image.tag().unwrap_or("latest");
    if index {
        let pushed = TestImage::push_index(image.registry(), image.repository(), tag).await?;
        println!("pushed index {reference} {}", pushed.index);
    } else {
        let digest = TestImage::random()
            .push(image.registry(), image.repository(), tag)
            .await?;
        println!("pushed {reference} {digest}");
    }
    Ok(())
}
