//! `signet token create|list|revoke|bootstrap`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, s, Format};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token; it is printed once and only its hash is kept.
    Create {
        #[arg(long)]
        name: String,
        /// admin, signer (may only sign), verifier (cluster verifiers) or viewer (reads what an
        /// admin reads, changes nothing).
        #[arg(long)]
        role: String,
        /// Signer tokens: a glob over registry/repository the token may sign
        /// ('reg.example/team/**'; * within one path component, ** across). Repeat for
        /// several; none: any repository.
        #[arg(long = "scope", value_name = "GLOB")]
        scope: Vec<String>,
        /// Verifier tokens: the one cluster whose trust bundle the token reads and whose
        /// admission decisions it reports (required for them).
        #[arg(long)]
        cluster: Option<String>,
        /// The token stops working after this long (e.g. 90d, 12h); default: never.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List tokens (names, roles, revoked or not; never secrets).
    List,
    /// Revoke a token by name; requests with it are refused from now on.
    Revoke { name: String },
    /// Mint the first admin token directly in the store (for a fresh production
    /// deployment, where no admin exists to call the API). Refuses when any token exists.
    Bootstrap {
        /// Where to write the token (mode 0600); it is never printed.
        #[arg(long)]
        token_file: PathBuf,
    },
}

const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            cluster,
            expires_in,
            scope,
        } => {
            let mut body = json!({"name": name, "role": role, "scope": scope});
            if let Some(c) = cluster {
                body["cluster"] = json!(c);
            }
            if let Some(d) = expires_in {
                let at = chrono::TimeDelta::from_std(d)
                    .ok()
                    .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                    .with_context(|| format!("--expires-in {d:?} is too far away"))?;
                body["expires_at"] = json!(at);
            }
            let (_, v): (_, Value) = ctx
                .client
                .call(Method::POST, "/v1/tokens", Some(&body), TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    eprintln!(
                        "token {name} ({role}) created; store it now, it is not shown again:"
                    );
                    println!("{}", v["token"].as_str().unwrap_or_default());
                }
            }
        }
        TokenCommand::List => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, "/v1/tokens", None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    println!(
                        "{:<24} {:<10} {:<14} {:<8} {:<26} {:<26} {:<26} SCOPE",
                        "NAME", "ROLE", "CLUSTER", "REVOKED", "EXPIRES", "LAST USED", "CREATED"
                    );
                    for t in v["tokens"].as_array().into_iter().flatten() {
                        let scope: Vec<&str> = t["scope"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        println!(
                            "{:<24} {:<10} {:<14} {:<8} {:<26} {:<26} {:<26} {}",
                            s(&t["name"]),
                            s(&t["role"]),
                            s(&t["cluster"]),
                            s(&t["revoked"]),
                            s(&t["expires_at"]),
                            s(&t["last_used_at"]),
                            s(&t["created_at"]),
                            if scope.is_empty() {
                                "*".to_owned()
                            } else {
                                scope.join(",")
                            }
                        );
                    }
                }
            }
        }
        TokenCommand::Revoke { name } => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::DELETE, &format!("/v1/tokens/{name}"), None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => println!("token {name} revoked"),
            }
        }
        TokenCommand::Bootstrap { token_file } => {
            let store = signet_store::Store::connect(&ctx.settings.store_url())
                .await
                .context("opening the store named by the settings (store / SIGNET_STORE)")?;
            match signet_gateway::auth::bootstrap_admin(&store, &token_file).await? {
                Some(token) => {
                    eprintln!(
                        "admin token {:?} written to {} (mode 0600)",
                        token.name,
                        token_file.display()
                    );
                }
                None => {
                    anyhow::bail!("the store already has API tokens; ask an admin for one (`signet token create`)");
                }
            }
            store.close().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
