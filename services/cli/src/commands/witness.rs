//! `signet witness create|list|show|export-key`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::Context;
use crate::output::{self, field, s, Format};

#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Create a witness bound to a KMS key (the key must be asymmetric RSA >= 2048,
    /// sign/verify), or a verify-only witness from a public key (`--public-key`).
    Create(CreateArgs),
    /// List witnesses.
    List,
    /// List the KMS keys a new witness could use, as the configured providers see them
    /// (the console's key picker): usable ones first, the others with the reason.
    Keys,
    /// Show one witness with its key versions.
    Show { name: String },
    /// Print a witness's primary public key as PEM (for `cosign verify --key`).
    ExportKey { name: String },
    /// Give a witness a new primary key version; older versions stay valid until revoked.
    Rotate {
        name: String,
        /// Rotate to another key (AWS KMS keys cannot get new versions); default: a new
        /// version of the current key.
        #[arg(long, conflicts_with = "public_key")]
        kms_key: Option<String>,
        /// A verify-only witness rotates to this public key (PEM file).
        #[arg(long)]
        public_key: Option<std::path::PathBuf>,
    },
    /// Revoke one key version: its signatures are no longer accepted.
    RevokeVersion {
        name: String,
        version: String,
        /// Do not ask, even when enabled policies use the witness.
        #[arg(long, short)]
        yes: bool,
    },
    /// Revoke a witness: it signs nothing more and none of its signatures is accepted.
    /// Asks first when enabled policies use it, naming them.
    Revoke {
        name: String,
        /// Do not ask, even when enabled policies would refuse everything.
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// Key URI: local://NAME (development only), awskms://[ENDPOINT]/KEY, hashivault://KEY, alikms://REGION/KEY_ID.
    #[arg(
        long,
        required_unless_present = "public_key",
        conflicts_with = "public_key"
    )]
    kms_key: Option<String>,
    /// A verify-only witness: a PEM public key file (RSA >= 2048, or ECDSA P-256 as
    /// `cosign generate-key-pair` writes cosign.pub) of someone who signs outside signet.
    /// signet verifies and counts its signatures and never signs with it.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
    #[arg(long, default_value = "")]
    description: String,
    /// RSA_PKCS1_SHA256 (default; what cosign verifiers expect) or RSA_PSS_SHA256.
    #[arg(long)]
    algorithm: Option<String>,
    /// How signatures are attached: cosign (the .sig tag, default), bundle (a Sigstore
    /// bundle as an OCI 1.1 referrer, cosign 3's default) or both.
    #[arg(long)]
    format: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(60);

/// The PEM text of `--public-key FILE`, if given.
fn read_pem(path: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read the public key {}: {e}", p.display()))
    })
    .transpose()
}

pub async fn run(ctx: &Context, cmd: WitnessCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WitnessCommand::Create(a) => {
            let public_key = read_pem(a.public_key.as_deref())?;
            let body = json!({"name": a.name, "kms_key": a.kms_key, "public_key": public_key, "description": a.description, "algorithm": a.algorithm, "format": a.format});
            let (_, w): (_, Value) = ctx
                .client
                .call(Method::POST, "/v1/witnesses", Some(&body), TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&w),
                Format::Text => {
                    println!("witness {} created", s(&w["name"]));
                    print_witness(&w);
                }
            }
        }
        WitnessCommand::List => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, "/v1/witnesses", None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    println!(
                        "{:<20} {:<8} {:<10} {:<32} FINGERPRINT",
                        "NAME", "STATE", "VERSIONS", "KMS KEY"
                    );
                    for w in v["witnesses"].as_array().into_iter().flatten() {
                        println!(
                            "{:<20} {:<8} {:<10} {:<32} {}",
                            s(&w["name"]),
                            s(&w["state"]),
                            w["key_versions"].as_array().map_or(0, Vec::len),
                            s(&w["kms_key"]),
                            s(&w["fingerprint"])
                        );
                    }
                }
            }
        }
        WitnessCommand::Keys => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, "/v1/kms/keys", None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    for p in v["providers"].as_array().into_iter().flatten() {
                        if let Some(e) = p["error"].as_str() {
                            eprintln!("{}: {e}", s(&p["provider"]));
                        }
                    }
                    println!(
                        "{:<48} {:<10} {:<8} WHY NOT",
                        "KMS KEY", "ALGORITHM", "USABLE"
                    );
                    for k in v["keys"].as_array().into_iter().flatten() {
                        let usable = k["usable"].as_bool().unwrap_or(false);
                        println!(
                            "{:<48} {:<10} {:<8} {}",
                            s(&k["uri"]),
                            k["algorithm"].as_str().unwrap_or("-"),
                            if usable { "yes" } else { "no" },
                            k["reason"].as_str().unwrap_or("")
                        );
                    }
                }
            }
        }
        WitnessCommand::Show { name } => {
            let (_, w): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, &format!("/v1/witnesses/{name}"), None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&w),
                Format::Text => print_witness(&w),
            }
        }
        WitnessCommand::Rotate {
            name,
            kms_key,
            public_key,
        } => {
            let public_key = read_pem(public_key.as_deref())?;
            let body = json!({ "kms_key": kms_key, "public_key": public_key });
            let (_, w): (_, Value) = ctx
                .client
                .call(
                    Method::POST,
                    &format!("/v1/witnesses/{name}/rotate"),
                    Some(&body),
                    TIMEOUT,
                )
                .await?;
            report(ctx, &w, &format!("witness {name} rotated"));
        }
        WitnessCommand::RevokeVersion { name, version, yes } => {
            let path = format!("/v1/witnesses/{name}/versions/{version}/revoke");
            confirm_revocation(
                ctx,
                &path,
                &format!("key version {version} of witness {name}"),
                yes,
            )
            .await?;
            let (_, w): (_, Value) = ctx
                .client
                .call::<(), _>(Method::POST, &path, None, TIMEOUT)
                .await?;
            report(
                ctx,
                &w,
                &format!("key version {version} of witness {name} revoked"),
            );
        }
        WitnessCommand::Revoke { name, yes } => {
            let path = format!("/v1/witnesses/{name}/revoke");
            confirm_revocation(ctx, &path, &format!("witness {name}"), yes).await?;
            let (_, w): (_, Value) = ctx
                .client
                .call::<(), _>(Method::POST, &path, None, TIMEOUT)
                .await?;
            report(ctx, &w, &format!("witness {name} revoked"));
        }
        WitnessCommand::ExportKey { name } => {
            let pem = ctx
                .client
                .text(&format!("/v1/witnesses/{name}/public-key"))
                .await?;
            print!("{pem}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(ctx: &Context, w: &Value, headline: &str) {
    match ctx.format {
        Format::Json => output::json(w),
        Format::Text => {
            println!("{headline}");
            print_witness(w);
        }
    }
}

fn print_witness(w: &Value) {
    field("name:", s(&w["name"]));
    field("state:", s(&w["state"]));
    field("kms key:", s(&w["kms_key"]));
    field("algorithm:", s(&w["algorithm"]));
    field("description:", s(&w["description"]));
    field("fingerprint:", s(&w["fingerprint"]));
    for v in w["key_versions"].as_array().into_iter().flatten() {
        field(
            "key version:",
            format!(
                "{} {}{} {}",
                s(&v["version"]),
                s(&v["state"]),
                if v["primary"].as_bool() == Some(true) {
                    " (primary)"
                } else {
                    ""
                },
                s(&v["fingerprint"])
            ),
        );
    }
}

/// Asks the gateway what revoking would do (`?dry_run=true`); when enabled policies use
/// the witness, names them and asks on a terminal, or refuses without `--yes` elsewhere.
async fn confirm_revocation(
    ctx: &Context,
    path: &str,
    what: &str,
    yes: bool,
) -> anyhow::Result<()> {
    let (_, preview): (_, Value) = ctx
        .client
        .call::<(), _>(Method::POST, &format!("{path}?dry_run=true"), None, TIMEOUT)
        .await?;
    let affected = preview["affected_policies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if affected.is_empty() || yes {
        return Ok(());
    }
    eprintln!(
        "revoking {what} affects {} enabled polic{}:",
        affected.len(),
        if affected.len() == 1 { "y" } else { "ies" }
    );
    for p in &affected {
        eprintln!(
            "  {} ({} mode, cluster {}, namespace {}){}: {}",
            p["name"].as_str().unwrap_or_default(),
            p["mode"].as_str().unwrap_or_default(),
            p["cluster"].as_str().unwrap_or_default(),
            p["namespace"].as_str().unwrap_or_default(),
            if p["denies_everything"] == true {
                " DENIES EVERYTHING"
            } else {
                ""
            },
            p["consequence"].as_str().unwrap_or_default(),
        );
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not revoked: enabled policies use it (above); pass --yes to revoke anyway");
    }
    eprint!("revoke {what}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("not revoked")
    }
}
