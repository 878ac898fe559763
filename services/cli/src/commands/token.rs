//! `signet token create --name N --role R`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token; it is printed once and only its hash is kept.
    Create {
        #[arg(long)]
        name: String,
        /// admin, signer (may only sign) or verifier (cluster verifiers).
        #[arg(long)]
        role: String,
    },
}

pub async fn run(ctx: &Context, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create { name, role } => {
            let (_, v): (_, Value) = ctx
                .client
                .call(
                    Method::POST,
                    "/v1/tokens",
                    Some(&json!({"name": name, "role": role})),
                    Duration::from_secs(30),
                )
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    eprintln!(
                        "token {} ({}) created; store it now, it is not shown again:",
                        name, role
                    );
                    println!("{}", v["token"].as_str().unwrap_or_default());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
