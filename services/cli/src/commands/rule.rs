//! `signet rule create|list|show|enable|disable|delete`: signing rules, which pushed
//! repositories the webhook receivers sign and with which witness.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, field, s, Format};

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Create a signing rule: pushes to matching repositories and tags are signed by the witness.
    Create(CreateArgs),
    /// List signing rules.
    List,
    /// Show one signing rule.
    Show { name: String },
    /// Turn a rule on.
    Enable { name: String },
    /// Turn a rule off: pushes it matched are acknowledged but no longer signed by it.
    Disable { name: String },
    /// Delete a rule.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    name: String,
    /// A glob over registry/repository (repeatable): `*` stays within one path
    /// component, `**` crosses them, e.g. `registry.example.com/team/*`.
    #[arg(long = "repository", required = true)]
    repositories: Vec<String>,
    /// A glob over the tag, e.g. `v*`. Default: every tag.
    #[arg(long = "tag", default_value = "*")]
    tag_pattern: String,
    /// The witness that signs what the rule matches.
    #[arg(long)]
    witness: String,
    /// Create it switched off.
    #[arg(long)]
    disabled: bool,
    /// How its signatures are attached, instead of the witness's own format: cosign
    /// (the `.sig` tag), bundle (a Sigstore bundle referrer, as cosign 3 writes) or both.
    #[arg(long, value_parser = ["cosign", "bundle", "both"])]
    format: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context, cmd: RuleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RuleCommand::Create(a) => {
            let mut body = json!({
                "name": a.name,
                "repositories": a.repositories,
                "tag_pattern": a.tag_pattern,
                "witness": a.witness,
                "enabled": !a.disabled,
            });
            if let Some(f) = a.format {
                body["format"] = json!(f);
            }
            let (_, rule): (_, Value) = ctx
                .client
                .call(Method::POST, "/v1/signing-rules", Some(&body), TIMEOUT)
                .await?;
            show(ctx, &rule, "created");
        }
        RuleCommand::List => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, "/v1/signing-rules", None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    println!(
                        "{:<20} {:<8} {:<16} {:<12} REPOSITORIES",
                        "NAME", "ENABLED", "WITNESS", "TAG"
                    );
                    for r in v["rules"].as_array().into_iter().flatten() {
                        println!(
                            "{:<20} {:<8} {:<16} {:<12} {}",
                            s(&r["name"]),
                            s(&r["enabled"]),
                            s(&r["witness"]),
                            s(&r["tag_pattern"]),
                            repositories(r)
                        );
                    }
                }
            }
        }
        RuleCommand::Show { name } => {
            let (_, rule): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, &path(&name), None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&rule),
                Format::Text => print_rule(&rule),
            }
        }
        RuleCommand::Enable { name } => switch(ctx, &name, true).await?,
        RuleCommand::Disable { name } => switch(ctx, &name, false).await?,
        RuleCommand::Delete { name } => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::DELETE, &path(&name), None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => println!("signing rule {name} deleted"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn switch(ctx: &Context, name: &str, enabled: bool) -> anyhow::Result<()> {
    let (_, rule): (_, Value) = ctx
        .client
        .call(
            Method::PATCH,
            &path(name),
            Some(&json!({"enabled": enabled})),
            TIMEOUT,
        )
        .await?;
    show(ctx, &rule, if enabled { "enabled" } else { "disabled" });
    Ok(())
}

fn path(name: &str) -> String {
    format!("/v1/signing-rules/{name}")
}

fn show(ctx: &Context, rule: &Value, what: &str) {
    match ctx.format {
        Format::Json => output::json(rule),
        Format::Text => {
            println!("signing rule {} {what}", s(&rule["name"]));
            print_rule(rule);
        }
    }
}

fn repositories(rule: &Value) -> String {
    rule["repositories"]
        .as_array()
        .map(|r| r.iter().map(s).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn print_rule(r: &Value) {
    field("name:", s(&r["name"]));
    field("enabled:", s(&r["enabled"]));
    field("repositories:", repositories(r));
    field("tag pattern:", s(&r["tag_pattern"]));
    field("witness:", s(&r["witness"]));
    field(
        "format:",
        r["format"].as_str().unwrap_or("the witness's own"),
    );
    field("updated:", s(&r["updated_at"]));
}
