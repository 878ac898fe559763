//! `signet control-plane key`: the public key verifiers pin.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::Context;
use crate::output::{self, s, Format};

#[derive(Debug, Subcommand)]
pub enum ControlPlaneCommand {
    /// Print the control plane's public key (PEM), which seals trust bundles and events:
    /// what `verifier.control_plane_keys` and the chart's `verifier.controlPlaneKeys`
    /// pin. Compare its fingerprint (on standard error) with the KMS's own answer.
    Key,
}

pub async fn run(ctx: &Context, c: ControlPlaneCommand) -> anyhow::Result<ExitCode> {
    match c {
        ControlPlaneCommand::Key => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(
                    Method::GET,
                    "/v1/control-plane/key",
                    None,
                    Duration::from_secs(30),
                )
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    eprintln!("{} ({})", s(&v["fingerprint"]), s(&v["kms_key"]));
                    print!("{}", s(&v["public_key"]));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
