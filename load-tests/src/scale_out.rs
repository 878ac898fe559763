//! Scale-out (issue 15): the same burst of pushes on a NATS and PostgreSQL stack with one,
//! two and three `signet-signer` processes, and with three where one is killed (SIGKILL)
//! a second into the storm. Each run must sign every pushed image exactly once: one
//! record each (the store's key) and one layer in each `.sig` manifest, read back from
//! the registry. The registry's raw write ceiling is measured first, in the same run.

use std::time::Duration;

use anyhow::Context;

use crate::oci::Registry;
use crate::report::{Figure, Report, Target, Unit};
use crate::run::Profile;
use crate::stack::{BusKind, Stack, StackOptions};
use crate::storm::{self, Shape};

pub async fn run(profile: &Profile, report: &mut Report) -> anyhow::Result<()> {
    let plain = signet_testkit::registry::TestRegistry::builder()
        .access_log()
        .start()
        .await
        .context("starting docker-registry")?;
    crate::pin::stack(plain.pid(), []);
    let ceiling = crate::ceiling::run(
        &Registry::new(&plain.host())?,
        profile.ceiling_workers,
        1_000_000,
        profile.ceiling_for,
    )
    .await;
    drop(plain);
    println!("  registry ceiling: {ceiling}");
    let mut one = None;
    for (signers, kill) in [(1, false), (2, false), (3, false), (3, true)] {
        let label = if kill {
            format!("{signers} signers, one killed after 1 s")
        } else {
            format!("{signers} signer{}", if signers == 1 { "" } else { "s" })
        };
        println!("== scale-out: {label}");
        let stack = Stack::start(StackOptions {
            bus: BusKind::Nats,
            kms_env: Vec::new(),
            signers,
        })
        .await?;
        let outcome = storm_on(profile, &stack, kill).await;
        stack.shutdown().await;
        let (storm, layers) = outcome?;
        let throughput = storm.throughput();
        let once = storm.signed == storm.pushed && layers.iter().all(|&n| n == 1);
        println!(
            "  {label}: {:.1}/s, {} of {} signed, layers per .sig {:?}..",
            throughput,
            storm.signed,
            storm.pushed,
            &layers[..layers.len().min(5)]
        );
        let mut fig = Figure::new(
            &format!("scale-out storm (nats), {label}"),
            "throughput",
            throughput,
            Unit::PerSecond,
        );
        fig = match one {
            None => fig.baseline("registry raw signature writes", ceiling.throughput()),
            Some(base) => fig.baseline("one signer", base),
        };
        report.push(fig.note(format!(
            "{} of {} images signed; {} with exactly one .sig layer{}",
            storm.signed,
            storm.pushed,
            layers.iter().filter(|&&n| n == 1).count(),
            if once { "" } else { " (NOT exactly once)" }
        )));
        report.push(
            Figure::new(
                &format!("scale-out storm (nats), {label}"),
                "images not signed exactly once",
                (storm.pushed - storm.signed.min(storm.pushed)
                    + layers.iter().filter(|&&n| n != 1).count()) as f64,
                Unit::Count,
            )
            .target(Target::AtMost(0.0), "0"),
        );
        one.get_or_insert(throughput);
    }
    Ok(())
}

/// A burst on `stack`, killing its last signer a second in when `kill`; then the layer
/// count of every signed image's `.sig` manifest.
async fn storm_on(
    profile: &Profile,
    stack: &Stack,
    kill: bool,
) -> anyhow::Result<(storm::Storm, Vec<usize>)> {
    crate::run::setup(stack, false).await?;
    let killer = match (kill, stack.signer().and_then(|s| s.pid())) {
        (true, Some(pid)) => Some(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            println!("  killed signer {pid}");
        })),
        _ => None,
    };
    let storm = storm::run(
        stack,
        "burst",
        "burst",
        Shape::Burst {
            count: profile.storm_burst,
            workers: profile.storm_workers,
        },
    )
    .await?;
    if let Some(k) = killer {
        let _ = k.await;
    }
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut layers = Vec::new();
    for image in &storm.images {
        let (repo, digest) = image.split_once('@').context("image@digest")?;
        let (host, path) = repo.split_once('/').context("host/repo")?;
        let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
        let manifest: serde_json::Value = http
            .get(format!("http://{host}/v2/{path}/manifests/{tag}"))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await?
            .json()
            .await?;
        layers.push(manifest["layers"].as_array().map_or(0, Vec::len));
    }
    Ok((storm, layers))
}
