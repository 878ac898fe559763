//! `signet jobs show|list|retry`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::Context;
use crate::output::{self, field, s, Format};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Show one job and its signature.
    Show { id: String },
    /// List recent jobs, newest first.
    List {
        /// Only failed jobs (the dead letters).
        #[arg(long)]
        failed: bool,
        /// Only jobs in this state: queued, running, succeeded, failed.
        #[arg(long, conflicts_with = "failed")]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Put a failed job back on the queue.
    Retry { id: String },
}

const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context, cmd: JobsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobsCommand::Show { id } => {
            let (_, job): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, &format!("/v1/jobs/{id}"), None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&job),
                Format::Text => print_job(&job),
            }
        }
        JobsCommand::List {
            failed,
            state,
            limit,
        } => {
            let state = if failed {
                Some("failed".to_owned())
            } else {
                state
            };
            let v = ctx.list("/v1/jobs", limit, &[("state", &state)]).await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    println!(
                        "{:<36} {:<10} {:<4} {:<44} ERROR",
                        "ID", "STATE", "TRY", "IMAGE"
                    );
                    for j in v["jobs"].as_array().into_iter().flatten() {
                        println!(
                            "{:<36} {:<10} {:<4} {:<44} {}",
                            s(&j["id"]),
                            s(&j["state"]),
                            s(&j["attempts"]),
                            s(&j["request"]["image"]),
                            s(&j["error"])
                        );
                    }
                }
            }
        }
        JobsCommand::Retry { id } => {
            let (_, job): (_, Value) = ctx
                .client
                .call::<(), _>(Method::POST, &format!("/v1/jobs/{id}/retry"), None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&job),
                Format::Text => println!("job {} is queued again", s(&job["id"])),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_job(j: &Value) {
    field("job:", s(&j["id"]));
    field("state:", s(&j["state"]));
    field("image:", s(&j["request"]["image"]));
    field("witness:", s(&j["request"]["witness"]));
    field("source:", s(&j["source"]));
    field("attempts:", s(&j["attempts"]));
    field("digest:", s(&j["digest"]));
    field("error:", s(&j["error"]));
    field("signature:", s(&j["signature"]["artifact"]));
    field("updated:", s(&j["updated_at"]));
}
