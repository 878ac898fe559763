//! `signet policy create|list|show|update|enable|disable|delete|impact`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::Context;
use crate::commands::urlencode;
use crate::output::{self, field, s, Format};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a security policy (disabled until `signet policy enable`, or --enable).
    Create(CreateArgs),
    /// List policies.
    List {
        /// Only this cluster's policies.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Show one policy.
    Show { name: String },
    /// Change some of a policy's settings; the others stay.
    Update(UpdateArgs),
    /// Turn a policy on: verifiers start applying it at once.
    Enable { name: String },
    /// Turn a policy off.
    Disable { name: String },
    /// Delete a policy.
    Delete { name: String },
    /// Sum up what a policy did, or in dry-run would have blocked.
    Impact {
        name: String,
        /// Only decisions this recent: 30m, 24h, 7d. Default: all.
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    name: String,
    /// A witness whose signature counts (repeat for several, or separate with commas).
    #[arg(long = "witness", required = true, value_delimiter = ',')]
    witnesses: Vec<String>,
    /// How many of the witnesses must have signed (N of M). Default: 1.
    #[arg(long)]
    require: Option<u32>,
    /// The cluster name its verifier identifies itself with.
    #[arg(long)]
    cluster: String,
    /// A namespace, or a glob such as `team-*`.
    #[arg(long)]
    namespace: String,
    /// Only the namespaces whose labels this selects, in `kubectl -l` syntax
    /// (`signet.dev/enforce=true`, `tier in (web,api)`, `!legacy`).
    #[arg(long, value_parser = signet_core::LabelSelector::parse)]
    namespace_selector: Option<signet_core::LabelSelector>,
    /// enforce (deny), warn (allow with a warning) or dry-run (allow, record).
    #[arg(long, default_value = "enforce")]
    mode: String,
    /// An image glob that needs no signature (repeatable), e.g. `registry.k8s.io/pause:*`.
    #[arg(long = "exempt")]
    exemptions: Vec<String>,
    /// Refuse tag references; only `@sha256:` digests pass.
    #[arg(long)]
    require_digest: bool,
    /// Honour the `signet.dev/break-glass: "<reason>"` annotation (always audited).
    #[arg(long)]
    allow_break_glass: bool,
    /// Leave Pods' tags as they are instead of pinning each verified tag to its digest.
    #[arg(long)]
    no_pin_digests: bool,
    #[arg(long, default_value = "")]
    note: String,
    /// Enable it right away instead of creating it disabled.
    #[arg(long)]
    enable: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    name: String,
    /// Replaces the witness list (repeat, or separate with commas).
    #[arg(long = "witness", value_delimiter = ',')]
    witnesses: Vec<String>,
    #[arg(long)]
    require: Option<u32>,
    #[arg(long)]
    cluster: Option<String>,
    #[arg(long)]
    namespace: Option<String>,
    /// Replaces the label selector (`kubectl -l` syntax).
    #[arg(long, value_parser = signet_core::LabelSelector::parse)]
    namespace_selector: Option<signet_core::LabelSelector>,
    /// Removes the label selector: the policy selects by --namespace alone.
    #[arg(long, conflicts_with = "namespace_selector")]
    no_namespace_selector: bool,
    #[arg(long)]
    mode: Option<String>,
    /// Replaces the exemptions (repeatable).
    #[arg(long = "exempt")]
    exemptions: Vec<String>,
    /// Removes every exemption.
    #[arg(long, conflicts_with = "exemptions")]
    no_exemptions: bool,
    #[arg(long)]
    require_digest: Option<bool>,
    #[arg(long)]
    allow_break_glass: Option<bool>,
    /// Rewrite verified tags on Pods to `tag@digest` at admission.
    #[arg(long)]
    pin_digests: Option<bool>,
    #[arg(long)]
    note: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context, cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Create(a) => {
            let body = json!({
                "name": a.name,
                "witnesses": a.witnesses,
                "require": a.require,
                "cluster": a.cluster,
                "namespace": a.namespace,
                "namespace_selector": a.namespace_selector,
                "mode": a.mode,
                "enabled": a.enable,
                "exemptions": a.exemptions,
                "require_digest": a.require_digest,
                "allow_break_glass": a.allow_break_glass,
                "pin_digests": !a.no_pin_digests,
                "note": a.note,
            });
            let (_, p): (_, Value) = ctx
                .client
                .call(Method::POST, "/v1/policies", Some(&body), TIMEOUT)
                .await?;
            report(ctx, &p, &format!("policy {} created", s(&p["name"])));
            if p["enabled"].as_bool() != Some(true) && ctx.format == Format::Text {
                println!(
                    "it is disabled; turn it on with: signet policy enable {}",
                    s(&p["name"])
                );
            }
        }
        PolicyCommand::List { cluster } => {
            let path = match cluster {
                Some(c) => format!("/v1/policies?cluster={}", urlencode(&c)),
                None => "/v1/policies".to_owned(),
            };
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, &path, None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => {
                    println!(
                        "{:<20} {:<8} {:<8} {:<10} {:<16} {:<8} WITNESSES",
                        "NAME", "ENABLED", "MODE", "CLUSTER", "NAMESPACE", "REQUIRE"
                    );
                    for p in v["policies"].as_array().into_iter().flatten() {
                        println!(
                            "{:<20} {:<8} {:<8} {:<10} {:<16} {:<8} {}",
                            s(&p["name"]),
                            s(&p["enabled"]),
                            s(&p["mode"]),
                            s(&p["cluster"]),
                            s(&p["namespace"]),
                            format!(
                                "{}/{}",
                                s(&p["require"]),
                                p["witnesses"].as_array().map_or(0, Vec::len)
                            ),
                            list(&p["witnesses"]),
                        );
                    }
                }
            }
        }
        PolicyCommand::Show { name } => {
            let p = get(ctx, &name).await?;
            match ctx.format {
                Format::Json => output::json(&p),
                Format::Text => print_policy(&p),
            }
        }
        PolicyCommand::Update(a) => {
            let mut body = Map::new();
            if !a.witnesses.is_empty() {
                body.insert("witnesses".into(), json!(a.witnesses));
            }
            if !a.exemptions.is_empty() || a.no_exemptions {
                body.insert("exemptions".into(), json!(a.exemptions));
            }
            if a.no_namespace_selector {
                // An empty selector removes it.
                body.insert("namespace_selector".into(), json!({}));
            } else if let Some(selector) = &a.namespace_selector {
                body.insert("namespace_selector".into(), json!(selector));
            }
            for (k, v) in [
                ("require", json!(a.require)),
                ("cluster", json!(a.cluster)),
                ("namespace", json!(a.namespace)),
                ("mode", json!(a.mode)),
                ("require_digest", json!(a.require_digest)),
                ("allow_break_glass", json!(a.allow_break_glass)),
                ("pin_digests", json!(a.pin_digests)),
                ("note", json!(a.note)),
            ] {
                if !v.is_null() {
                    body.insert(k.into(), v);
                }
            }
            if body.is_empty() {
                anyhow::bail!("nothing to change: pass at least one of --witness, --require, --cluster, --namespace, --namespace-selector, --no-namespace-selector, --mode, --exempt, --no-exemptions, --require-digest, --allow-break-glass, --pin-digests, --note");
            }
            let p = patch(ctx, &a.name, Value::Object(body)).await?;
            report(ctx, &p, &format!("policy {} updated", a.name));
        }
        PolicyCommand::Enable { name } => {
            let p = patch(ctx, &name, json!({"enabled": true})).await?;
            report(ctx, &p, &format!("policy {name} enabled"));
        }
        PolicyCommand::Disable { name } => {
            let p = patch(ctx, &name, json!({"enabled": false})).await?;
            report(ctx, &p, &format!("policy {name} disabled"));
        }
        PolicyCommand::Delete { name } => {
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::DELETE, &policy_path(&name), None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => println!("policy {name} deleted"),
            }
        }
        PolicyCommand::Impact { name, since } => {
            let mut path = format!("{}/impact", policy_path(&name));
            if let Some(since) = since {
                let ago = parse_age(&since)?;
                let at = chrono::Utc::now() - ago;
                path.push_str(&format!(
                    "?since={}",
                    urlencode(&at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                ));
            }
            let (_, v): (_, Value) = ctx
                .client
                .call::<(), _>(Method::GET, &path, None, TIMEOUT)
                .await?;
            match ctx.format {
                Format::Json => output::json(&v),
                Format::Text => print_impact(&v),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn policy_path(name: &str) -> String {
    format!("/v1/policies/{}", urlencode(name))
}

async fn get(ctx: &Context, name: &str) -> anyhow::Result<Value> {
    let (_, p): (_, Value) = ctx
        .client
        .call::<(), _>(Method::GET, &policy_path(name), None, TIMEOUT)
        .await?;
    Ok(p)
}

async fn patch(ctx: &Context, name: &str, body: Value) -> anyhow::Result<Value> {
    let (_, p): (_, Value) = ctx
        .client
        .call(Method::PATCH, &policy_path(name), Some(&body), TIMEOUT)
        .await?;
    Ok(p)
}

fn report(ctx: &Context, p: &Value, headline: &str) {
    match ctx.format {
        Format::Json => output::json(p),
        Format::Text => {
            println!("{headline}");
            print_policy(p);
        }
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn print_policy(p: &Value) {
    field("name:", s(&p["name"]));
    field("enabled:", s(&p["enabled"]));
    field("mode:", s(&p["mode"]));
    field("cluster:", s(&p["cluster"]));
    field("namespace:", s(&p["namespace"]));
    if let Ok(selector) =
        serde_json::from_value::<signet_core::LabelSelector>(p["namespace_selector"].clone())
    {
        field("namespace labels:", selector.to_string());
    }
    field(
        "witnesses:",
        format!(
            "{} (require {} of {})",
            list(&p["witnesses"]),
            s(&p["require"]),
            p["witnesses"].as_array().map_or(0, Vec::len)
        ),
    );
    field("exemptions:", list(&p["exemptions"]));
    field("digest only:", s(&p["require_digest"]));
    field("break-glass:", s(&p["allow_break_glass"]));
    field("pin digests:", s(&p["pin_digests"]));
    field("note:", s(&p["note"]));
    field("updated:", s(&p["updated_at"]));
}

fn print_impact(v: &Value) {
    let p = &v["policy"];
    let i = &v["impact"];
    println!(
        "policy {} ({}, {}): {} decisions, {} would be blocked by enforcing it",
        s(&p["name"]),
        s(&p["mode"]),
        if p["enabled"].as_bool() == Some(true) {
            "enabled"
        } else {
            "disabled"
        },
        s(&i["decisions"]),
        s(&i["would_block"])
    );
    for (label, key) in [
        ("outcomes:", "outcomes"),
        ("reasons:", "reasons"),
        ("namespaces:", "namespaces"),
    ] {
        let pairs: Vec<String> = i[key]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| format!("{k}={}", s(n)))
            .collect();
        if !pairs.is_empty() {
            field(label, pairs.join(" "));
        }
    }
    for img in i["top_images"].as_array().into_iter().flatten() {
        field(
            "image:",
            format!(
                "{} {} ({})",
                s(&img["count"]),
                s(&img["image"]),
                s(&img["reason"])
            ),
        );
    }
    let r = &v["running"];
    if r["reported_at"].is_null() {
        println!(
            "running now: no inventory from cluster {} yet",
            s(&p["cluster"])
        );
        return;
    }
    println!(
        "running now: {} containers in its namespaces; enforcing it would stop {} if their Pods were recreated (inventory of {})",
        s(&r["containers"]),
        s(&r["would_stop"]),
        s(&r["reported_at"])
    );
    let standings: Vec<String> = r["standings"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{k}={}", s(n)))
        .collect();
    if !standings.is_empty() {
        field("standings:", standings.join(" "));
    }
    for img in r["images"].as_array().into_iter().flatten() {
        field(
            "would stop:",
            format!("{} {}", s(&img["containers"]), s(&img["image"])),
        );
    }
}

/// `30m`, `24h`, `7d`, `90s`.
fn parse_age(s: &str) -> anyhow::Result<chrono::Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("--since {s:?} needs a unit: s, m, h or d (e.g. 24h)"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .with_context(|| format!("--since {s:?} must start with a number (e.g. 24h)"))?;
    Ok(match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => anyhow::bail!("--since {s:?}: the unit must be s, m, h or d"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("24h").ok(), Some(chrono::Duration::hours(24)));
        assert_eq!(parse_age("7d").ok(), Some(chrono::Duration::days(7)));
        assert_eq!(parse_age("90s").ok(), Some(chrono::Duration::seconds(90)));
        assert!(parse_age("24").is_err());
        assert!(parse_age("h").is_err());
        assert!(parse_age("3w").is_err());
    }
}
