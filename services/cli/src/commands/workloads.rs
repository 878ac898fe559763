//! `signet workloads list`: the containers verifiers report running, with their standing.

use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::output::{self, s, Format};

#[derive(Debug, Subcommand)]
pub enum WorkloadsCommand {
    /// List running containers by cluster, namespace and pod, with each cluster's
    /// inventory age.
    List {
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        /// `trusted`, `exempt`, `untrusted`, `break_glass` or `revoked`.
        #[arg(long)]
        standing: Option<String>,
        /// The image as Pods name it, or a digest.
        #[arg(long)]
        image: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(ctx: &Context, cmd: WorkloadsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkloadsCommand::List {
            cluster,
            namespace,
            standing,
            image,
            limit,
        } => {
            let v = ctx
                .list(
                    "/v1/workloads",
                    limit,
                    &[
                        ("cluster", &cluster),
                        ("namespace", &namespace),
                        ("standing", &standing),
                        ("image", &image),
                    ],
                )
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    for c in v["clusters"].as_array().into_iter().flatten() {
                        let stale = if c["stale"] == true {
                            " (STALE: its verifier has not reported since)"
                        } else {
                            ""
                        };
                        println!(
                            "# cluster {}: reported {}s ago{stale}",
                            s(&c["cluster"]),
                            s(&c["age_seconds"])
                        );
                    }
                    println!(
                        "{:<12} {:<16} {:<32} {:<16} {:<12} IMAGE",
                        "CLUSTER", "NAMESPACE", "POD", "CONTAINER", "STANDING"
                    );
                    for entry in v["workloads"].as_array().into_iter().flatten() {
                        let w = &entry["running"];
                        let why = w["reason"]
                            .as_str()
                            .map(|r| format!("  ({r})"))
                            .unwrap_or_default();
                        println!(
                            "{:<12} {:<16} {:<32} {:<16} {:<12} {}{why}",
                            s(&entry["cluster"]),
                            s(&w["namespace"]),
                            s(&w["pod"]),
                            s(&w["container"]),
                            s(&w["standing"]),
                            s(&w["image"]),
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
