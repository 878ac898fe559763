//! `signet-load`: signet's load generator and benchmarks. It starts what it measures —
//! a real `docker-registry` with notifications, and signet's services as production runs
//! them (separate gateway, signer and verifier processes on PostgreSQL with NATS or
//! RabbitMQ; `signet up` for the embedded bus) — sends traffic to loopback only, in loops
//! bounded in count and time, and reports throughput and p50/p90/p99/max for each
//! scenario next to a baseline measured in the same run. It reports; it never fails a
//! run because a figure missed its target.
//!
//! ```text
//! signet-load run --profile quick     # `just bench`: 1 min, and 2-3 min of inventory
//! signet-load run --profile full      # `just bench-full`
//! signet-load run --profile full --only inventory   # issue 12 only
//! signet-load sign-one --data-dir D --key local://K --image HOST/REPO:TAG
//! ```
//!
//! Layout:
//! - [`run`]: the profiles and the order of scenarios; [`report`]: the figures and table.
//! - [`stack`]: the services, registry, database and broker of one installation;
//!   [`procs`]: child processes; [`api`]: the gateway's API; [`oci`]: the registry's.
//! - Scenarios: [`storm`] (push storm), [`sign_api`], [`admission`], [`events`]
//!   (propagation, verifier memory), [`slow_kms`] (a KMS that adds 20 ms), [`inventory`]
//!   (the verifier's inventory of running Pods on a real API server), [`trust_bundle`]
//!   (whole and incremental trust bundles with many revoked signatures).
//! - Baselines: [`ceiling`] (the registry's raw write rate), [`per_image`] (one signing
//!   process per image, and the `sign-one` subcommand it runs).
//! - [`pace`]: open- and closed-loop pacing; [`stats`]: percentiles.

mod admission;
mod api;
mod ceiling;
mod events;
mod instructions;
mod inventory;
mod oci;
mod pace;
mod per_image;
mod pin;
mod procs;
mod report;
mod run;
mod scale_out;
mod sign_api;
mod slow_kms;
mod stack;
mod stats;
mod storm;
mod trust_bundle;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "signet-load",
    version,
    about = "signet's load generator and benchmarks"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the benchmarks and prints the table of figures.
    Run {
        #[arg(long, value_enum, default_value_t = ProfileName::Quick)]
        profile: ProfileName,
        /// Where the Markdown table and the JSON figures are written.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Only these bus backends (default: embedded, nats, rabbitmq).
        #[arg(long = "bus", value_enum)]
        buses: Vec<BusName>,
        /// Only this scenario (and the stack it needs), not the whole profile.
        #[arg(long, value_enum)]
        only: Option<OnlyName>,
        /// Pods in the inventory scenario (default: the profile's).
        #[arg(long)]
        inventory_pods: Option<usize>,
        /// Pin processes to cores with taskset: the registry and the load generator on
        /// core 0, signet, PostgreSQL and the broker on core 1 (see `pin`).
        #[arg(long)]
        pin: bool,
    },
    /// The per-image baseline's process: signs one image with a key and pushes the cosign
    /// signature, like `cosign sign --key`.
    SignOne {
        /// Where the local KMS keeps the key.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        key: String,
        #[arg(long)]
        image: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BusName {
    Embedded,
    Nats,
    Rabbitmq,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnlyName {
    /// The verifier's inventory of running Pods (issue 12).
    Inventory,
    /// Trust bundles of many revoked signatures, whole and incremental (issue 15).
    TrustBundle,
    /// Push storms on NATS with one, two and three signers, two gateways, one signer
    /// killed mid-storm, and the shared KMS quota against a throttling KMS (issue 15).
    ScaleOut,
    /// Instructions per signed image and per admission review, counted by valgrind's
    /// callgrind (issue 15).
    Instructions,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileName {
    Quick,
    Full,
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {model}, load average {}", load_average())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::SignOne {
            data_dir,
            key,
            image,
        } => per_image::sign_one(&data_dir, &key, &image).await,
        Command::Run {
            profile,
            out,
            buses,
            only,
            inventory_pods,
            pin,
        } => {
            // Read before pinning narrows what this process may run on.
            let machine = machine();
            if pin {
                pin::enable().context("pinning with taskset")?;
            }
            let mut profile = match profile {
                ProfileName::Quick => run::Profile::quick(),
                ProfileName::Full => run::Profile::full(),
            };
            if !buses.is_empty() {
                profile.buses = buses
                    .iter()
                    .map(|b| match b {
                        BusName::Embedded => stack::BusKind::Embedded,
                        BusName::Nats => stack::BusKind::Nats,
                        BusName::Rabbitmq => stack::BusKind::Amqp,
                    })
                    .collect();
            }
            profile.only = only.map(|o| match o {
                OnlyName::Inventory => run::Only::Inventory,
                OnlyName::TrustBundle => run::Only::TrustBundle,
                OnlyName::ScaleOut => run::Only::ScaleOut,
                OnlyName::Instructions => run::Only::Instructions,
            });
            if let Some(n) = inventory_pods {
                profile.inventory.pods = n;
            }
            let started = Instant::now();
            let mut report = report::Report {
                profile: profile.label(),
                machine: format!("{machine}; {}", pin::describe()),
                started: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
                ..report::Report::default()
            };
            println!(
                "signet-load, profile {} on {}",
                report.profile, report.machine
            );
            // Ctrl-C or SIGTERM stops the run; dropping it stops every process it started.
            let outcome = tokio::select! {
                r = run::run(&profile, &mut report) => r,
                _ = interrupted() => Err(anyhow::anyhow!("interrupted")),
            };
            if let Err(e) = outcome {
                report.skip("the run", &e);
            }
            report.machine = format!(
                "{}; load average at the end {}",
                report.machine,
                load_average()
            );
            let took = started.elapsed();
            let table = report.markdown();
            println!("\n{table}\nwhole run: {:.1} s", took.as_secs_f64());
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let stem = out.join(format!(
                "{}-{}",
                profile.label().replace(", only ", "-"),
                chrono::Utc::now().format("%Y%m%dT%H%M%S")
            ));
            std::fs::write(
                stem.with_extension("md"),
                format!("{table}\nwhole run: {:.1} s\n", took.as_secs_f64()),
            )?;
            std::fs::write(
                stem.with_extension("json"),
                serde_json::to_vec_pretty(&report)?,
            )?;
            println!("written to {}.{{md,json}}", stem.display());
            Ok(())
        }
    }
}
