//! `signet audit`: who did what, and when; with `--admissions`, what cluster verifiers
//! decided.

use std::process::ExitCode;

use clap::Args;

use super::Context;
use crate::output::{self, s, Format};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only actions starting with this, e.g. `witness.` or `signature.publish`.
    #[arg(long)]
    action: Option<String>,
    /// Only entries about this subject (a witness name, `repo@digest`, a job id).
    #[arg(long)]
    subject: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Show the admission decisions cluster verifiers reported instead.
    #[arg(long)]
    admissions: bool,
    /// With --admissions: only this policy's decisions.
    #[arg(long, requires = "admissions")]
    policy: Option<String>,
    /// With --admissions: only this cluster's.
    #[arg(long, requires = "admissions")]
    cluster: Option<String>,
    /// With --admissions: only this namespace's.
    #[arg(long, requires = "admissions")]
    namespace: Option<String>,
    /// With --admissions: allowed, denied, warned, would_deny or break_glass.
    #[arg(long, requires = "admissions")]
    outcome: Option<String>,
}

pub async fn run(ctx: &Context, a: AuditArgs) -> anyhow::Result<ExitCode> {
    if a.admissions {
        return admissions(ctx, a).await;
    }
    let v = ctx
        .list(
            "/v1/audit",
            a.limit,
            &[("action", &a.action), ("subject", &a.subject)],
        )
        .await?;
    match ctx.format {
        Format::Json => output::json(&v),
        Format::Text => {
            for e in v["entries"].as_array().into_iter().flatten() {
                println!(
                    "{} {:<8} {:<20} {:<22} {}",
                    s(&e["at"]),
                    s(&e["id"]),
                    s(&e["actor"]),
                    s(&e["action"]),
                    s(&e["subject"])
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Admission decisions, newest first: one line per workload and policy.
async fn admissions(ctx: &Context, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let v = ctx
        .list(
            "/v1/admission-decisions",
            a.limit,
            &[
                ("policy", &a.policy),
                ("cluster", &a.cluster),
                ("namespace", &a.namespace),
                ("outcome", &a.outcome),
            ],
        )
        .await?;
    match ctx.format {
        Format::Json => output::json(&v),
        Format::Text => {
            for d in v["decisions"].as_array().into_iter().flatten() {
                let failing: Vec<String> = d["images"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| !i["reason"].is_null())
                    .map(|i| format!("{} ({})", s(&i["image"]), s(&i["reason"])))
                    .collect();
                // Who asked the API server (userInfo), when the verifier reported it.
                let by = d["user"]
                    .as_str()
                    .map(|u| format!(" by {u}"))
                    .unwrap_or_default();
                println!(
                    "{} {:<11} {:<16} {}/{}/{}/{}{by} {}",
                    s(&d["at"]),
                    s(&d["outcome"]),
                    s(&d["policy"]),
                    s(&d["cluster"]),
                    s(&d["namespace"]),
                    s(&d["kind"]),
                    s(&d["name"]),
                    failing.join(", ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
