//! `signet`: the operator and pipeline command line, and `signet up`, which runs the
//! gateway and the signer in one process on embedded defaults (SQLite store, embedded
//! queue, local development KMS).
//!
//! Layout:
//! - [`client`]: the gateway API client (server, token, JSON errors).
//! - [`commands`]: one module per command group.
//! - [`output`]: human-readable or `--output json` printing.

mod client;
mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "signet",
    version,
    about = "Sign container images with KMS-held keys and enforce the signatures at admission."
)]
pub struct Cli {
    /// Gateway URL. Default: the one `signet up` recorded in the data dir, else http://127.0.0.1:7700.
    #[arg(long, global = true, env = "SIGNET_SERVER")]
    server: Option<String>,
    /// PEM CA certificate(s) the gateway's HTTPS certificate must chain to, instead of
    /// the system's roots (the Helm chart's gateway CA: the `ca.crt` of its TLS Secret).
    #[arg(long, global = true, env = "SIGNET_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// API token. Default: the admin token `signet up` wrote into the data dir.
    #[arg(long, global = true, env = "SIGNET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data dir of `signet up` (store, dev KMS keys, admin token).
    #[arg(long, global = true, env = "SIGNET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Settings file (TOML); SIGNET_* environment variables override it.
    #[arg(long, global = true, env = "SIGNET_CONFIG")]
    config: Option<PathBuf>,
    /// Output for people (`text`) or scripts (`json`).
    #[arg(long, short, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run gateway, signer and verifier in one process on embedded defaults (for a laptop or a demo).
    Up(commands::up::UpArgs),
    /// Manage witnesses: named signing identities bound to KMS keys.
    #[command(subcommand)]
    Witness(commands::witness::WitnessCommand),
    /// Ask for a signature on an image.
    Sign(commands::sign::SignArgs),
    /// Have a witness sign an attestation about an image (an in-toto Statement in a DSSE
    /// envelope, attached as `cosign attest` does): SLSA provenance, an SBOM, or any
    /// predicate type.
    Attest(commands::sign::AttestArgs),
    /// Check an image's signatures in its registry against a witness or a public key.
    Verify(commands::verify::VerifyArgs),
    /// Inspect and replay sign jobs.
    #[command(subcommand)]
    Jobs(commands::jobs::JobsCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Query the audit log.
    Audit(commands::audit::AuditArgs),
    /// Manage security policies: which witnesses must have signed what runs where.
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// List trusted images.
    #[command(subcommand)]
    Images(commands::images::ImagesCommand),
    /// List the containers running in the clusters, with their standing.
    #[command(subcommand)]
    Workloads(commands::workloads::WorkloadsCommand),
    /// List signature records, or revoke one.
    #[command(subcommand)]
    Signature(commands::signature::SignatureCommand),
    /// Manage signing rules: which pushed repositories are signed, by which witness.
    #[command(subcommand)]
    Rule(commands::rule::RuleCommand),
    /// Make the control plane match YAML documents of witnesses, policies and signing
    /// rules (policy as code).
    Apply(commands::apply::ApplyArgs),
    /// Show what `signet apply` would change. Exit status: 0 in sync, 2 changes, 1 error.
    Diff(commands::apply::ApplyArgs),
    /// The control plane's own key, which verifiers pin.
    #[command(subcommand)]
    ControlPlane(commands::control_plane::ControlPlaneCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = commands::Context::new(&cli)?;
    match cli.command {
        Command::Up(args) => commands::up::run(&ctx, args).await,
        Command::Witness(c) => commands::witness::run(&ctx, c).await,
        Command::Sign(args) => commands::sign::run(&ctx, args).await,
        Command::Attest(args) => commands::sign::run_attest(&ctx, args).await,
        Command::Verify(args) => commands::verify::run(&ctx, args).await,
        Command::Jobs(c) => commands::jobs::run(&ctx, c).await,
        Command::Token(c) => commands::token::run(&ctx, c).await,
        Command::Audit(args) => commands::audit::run(&ctx, args).await,
        Command::Policy(c) => commands::policy::run(&ctx, c).await,
        Command::Images(c) => commands::images::run(&ctx, c).await,
        Command::Workloads(c) => commands::workloads::run(&ctx, c).await,
        Command::Signature(c) => commands::signature::run(&ctx, c).await,
        Command::Rule(c) => commands::rule::run(&ctx, c).await,
        Command::ControlPlane(c) => commands::control_plane::run(&ctx, c).await,
        Command::Apply(args) => commands::apply::run(&ctx, args, false).await,
        Command::Diff(args) => commands::apply::run(&ctx, args, true).await,
    }
}
