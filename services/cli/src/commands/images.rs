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
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(ctx: &Context, cmd: ImagesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImagesCommand::List {
            witness,
            repository,
            limit,
        } => {
            let v = ctx
                .list(
                    "/v1/images?trusted=true",
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
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
