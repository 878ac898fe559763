//! Scale-out (issue 15): the same burst of pushes on a NATS and PostgreSQL stack with one,
//! two and three `signet-signer` processes, with two gateways (each notified of every
//! push by the registry, so every push arrives twice) and two signers, and with three
//! signers where one is killed (SIGKILL) a second into the storm. Each run must sign
//! every pushed image exactly once: one record each (the store's key) and one layer in
//! each `.sig` manifest, read back from the registry. The registry's raw write ceiling
//! is measured first, in the same run.
//!
//! Then the shared KMS quota: a smaller burst signed through a KMS that throttles
//! ([`SlowKms::throttling`]) at the rate the signers are configured with
//! (`signer.kms_rate_per_witness`), by one signer and by three. Three replicas that each
//! counted their own budget would call it three times as fast and be refused; sharing
//! the budget through the store, they together stay within it.

use std::time::Duration;

use anyhow::Context;

use crate::oci::Registry;
use crate::report::{Figure, Report, Target, Unit};
use crate::run::Profile;
use crate::slow_kms::SlowKms;
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
    for (gateways, signers, kill) in [
        (1, 1, false),
        (1, 2, false),
        (1, 3, false),
        (2, 2, false),
        (1, 3, true),
    ] {
        let mut label = format!("{signers} signer{}", if signers == 1 { "" } else { "s" });
        if gateways > 1 {
            label = format!("{gateways} gateways (every push notified to each), {label}");
        }
        if kill {
            label.push_str(", one killed after 1 s");
        }
        println!("== scale-out: {label}");
        let stack = Stack::start(StackOptions {
            signers,
            gateways,
            ..StackOptions::on(BusKind::Nats)
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
    shared_quota(profile, report).await
}

/// The KMS quota the throttling run sets, in sign calls a second.
const QUOTA: u32 = 20;

/// One signer, then three, signing a burst through a KMS that refuses calls beyond
/// [`QUOTA`] a second; the signers are told the same quota.
async fn shared_quota(profile: &Profile, report: &mut Report) -> anyhow::Result<()> {
    let kms = SlowKms::throttling(Duration::ZERO, QUOTA).await?;
    let count = (profile.storm_burst / 5).clamp(60, 200);
    let mut alone = None;
    // The last run tells three signers three times the quota: what three replicas that
    // each counted their own budget would call. The KMS must refuse calls then, which
    // shows that it would notice the quota being overrun.
    for (signers, told) in [(1u32, QUOTA), (3, QUOTA), (3, 3 * QUOTA)] {
        let mut label = format!(
            "{signers} signer{}, KMS quota {QUOTA}/s",
            if signers == 1 { "" } else { "s" }
        );
        if told != QUOTA {
            label.push_str(&format!(", signers told {told}/s"));
        }
        println!("== scale-out: {label}");
        let mut kms_env = kms.env();
        kms_env.push((
            "SIGNET_SIGNER__KMS_RATE_PER_WITNESS".to_owned(),
            told.to_string(),
        ));
        let stack = Stack::start(StackOptions {
            kms_env,
            signers: signers as usize,
            ..StackOptions::on(BusKind::Nats)
        })
        .await?;
        let outcome = async {
            crate::run::setup(&stack, true).await?;
            let _ = kms.take_tally();
            storm::run(
                &stack,
                "slow",
                "slow",
                Shape::Burst {
                    count,
                    workers: profile.storm_workers,
                },
            )
            .await
        }
        .await;
        stack.shutdown().await;
        let storm = outcome?;
        let tally = kms.take_tally();
        let throughput = storm.throughput();
        println!(
            "  {label}: {throughput:.1}/s, {} of {} signed; KMS: {} sign calls, busiest second {}, {} refused",
            storm.signed, storm.pushed, tally.calls, tally.busiest_second, tally.refused
        );
        let mut fig = Figure::new(
            &format!("shared KMS quota (nats), {label}"),
            "throughput",
            throughput,
            Unit::PerSecond,
        );
        if let Some(base) = alone {
            fig = fig.baseline("one signer, same quota", base);
        }
        report.push(fig.note(format!(
            "{} of {} images signed; the KMS saw {} sign calls, at most {} within one second (the quota allows {}: {QUOTA}/s with a burst of one second's worth; {signers} unshared budgets would allow {})",
            storm.signed,
            storm.pushed,
            tally.calls,
            tally.busiest_second,
            2 * QUOTA + 1,
            signers * (2 * QUOTA + 1),
        )));
        let refused = Figure::new(
            &format!("shared KMS quota (nats), {label}"),
            "KMS calls refused for the quota",
            tally.refused as f64,
            Unit::Count,
        );
        report.push(if told == QUOTA {
            refused.target(Target::AtMost(0.0), "0")
        } else {
            refused
                .note("the control: signers told more than the KMS allows are refused, and retry")
        });
        alone.get_or_insert(throughput);
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
    let storm = storm::run(stack, "burst", "burst", Shape::burst(profile)).await?;
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
