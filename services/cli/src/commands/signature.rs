//! `signet signature list|revoke`: the signature records signet made, and revoking one
//! (verifiers refuse it from then on; its layer stays in the registry).

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::Context;
use crate::commands::urlencode;
use crate::output::{self, s, Format};

#[derive(Debug, Subcommand)]
pub enum SignatureCommand {
    /// List signature records, newest first.
    List {
        /// Only the signatures of this image (a tag is resolved to its digest).
        #[arg(long)]
        image: Option<String>,
        /// Only signatures by this witness.
        #[arg(long)]
        witness: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Revoke one signature by its id (from `signet signature list`). To stop trusting
    /// everything a key signed, use `signet witness revoke-version` instead.
    Revoke {
        id: String,
        /// Why; kept with the revocation, in the audit log and in trust bundles.
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(ctx: &Context, cmd: SignatureCommand) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(30);
    match cmd {
        SignatureCommand::List {
            image,
            witness,
            limit,
        } => {
            let v = ctx
                .list(
                    "/v1/signatures",
                    limit,
                    &[("image", &image), ("witness", &witness)],
                )
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    println!(
                        "{:<36} {:<16} {:<24} {:<9} IMAGE",
                        "ID", "WITNESS", "SIGNED", "STATE"
                    );
                    for r in v["signatures"].as_array().into_iter().flatten() {
                        let state = if r["revoked"].is_object() {
                            "revoked"
                        } else {
                            "valid"
                        };
                        println!(
                            "{:<36} {:<16} {:<24} {:<9} {}@{}",
                            s(&r["id"]),
                            s(&r["witness"]),
                            s(&r["created_at"]),
                            state,
                            s(&r["repository"]),
                            s(&r["digest"])
                        );
                    }
                }
            }
        }
        SignatureCommand::Revoke { id, reason } => {
            let path = format!("/v1/signatures/{}/revoke", urlencode(&id));
            let (_, v): (_, Value) = ctx
                .client
                .call(
                    Method::POST,
                    &path,
                    Some(&json!({ "reason": reason })),
                    timeout,
                )
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => println!(
                    "revoked signature {} of {}@{} by witness {}; verifiers refuse it from now on",
                    s(&v["id"]),
                    s(&v["repository"]),
                    s(&v["digest"]),
                    s(&v["witness"])
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
