//! `signet images list`: trusted images, each a digest with a valid signature from a
//! witness, and where the signature lives.

use std::process::ExitCode;

use clap::Subcommand;

use super::Context;
use crate::output::{self, s, Format};

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// List trusted images, newest signature first.
    List {
        /// Only images signed by this witness.
        #[arg(long)]
        witness: Option<String>,
        /// Only this repository (`registry/repository`).
        #[arg(long)]
        repository: Option<String>,
        /// Also say where each image runs (clusters and namespaces, from the
        /// inventories verifiers report).
        #[arg(long)]
        running: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(ctx: &Context, cmd: ImagesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImagesCommand::List {
            witness,
            repository,
            running,
            limit,
        } => {
            let path = if running {
                "/v1/images?trusted=true&running=true"
            } else {
                "/v1/images?trusted=true"
            };
            let v = ctx
                .list(
                    path,
                    limit,
                    &[("witness", &witness), ("repository", &repository)],
                )
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    println!(
                        "{:<16} {:<24} {:<80} SIGNATURE",
                        "WITNESS", "SIGNED", "IMAGE"
                    );
                    for i in v["images"].as_array().into_iter().flatten() {
                        println!(
                            "{:<16} {:<24} {:<80} {}",
                            s(&i["witness"]),
                            s(&i["signed_at"]),
                            s(&i["image"]),
                            s(&i["artifact"])
                        );
                        if running {
                            let places: Vec<String> = i["running"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|r| {
                                    format!(
                                        "{}/{} ({})",
                                        s(&r["cluster"]),
                                        s(&r["namespace"]),
                                        s(&r["containers"])
                                    )
                                })
                                .collect();
                            println!(
                                "    runs in: {}",
                                if places.is_empty() {
                                    "nowhere reported".to_owned()
                                } else {
                                    places.join(", ")
                                }
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
