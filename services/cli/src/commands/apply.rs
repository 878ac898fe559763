//! Policy as code: `signet apply -f FILE|DIR` makes the control plane match YAML (or JSON)
//! documents of witnesses, security policies and signing rules, through the public API;
//! `signet diff -f` shows what that would change. Nothing is sent until every document
//! has been read and checked, and an apply of files that already match sends nothing at
//! all, so it writes no audit entry and emits no event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Map, Value};
use signet_core::manifest::{Document, PolicyDocument, RuleDocument, WitnessDocument, OWNER_LABEL};
use signet_core::{SecurityPolicy, SigningRule, Witness};

use super::Context;
use crate::output::{self, Format};

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A YAML or JSON file of documents (`---` between them), or a directory whose
    /// `*.yaml`, `*.yml` and `*.json` files are read in name order. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Who owns what these files create: the `signet.dev/owner` label put on their
    /// policies and signing rules. `--prune` deletes only this owner's objects.
    #[arg(long, default_value = "signet-apply")]
    owner: String,
    /// Also delete the policies and signing rules of this owner that the files no longer
    /// name. Witnesses are never deleted.
    #[arg(long)]
    prune: bool,
}

/// One document and where it came from.
struct Source {
    origin: String,
    doc: Document,
}

/// What apply does to one object.
#[derive(Debug)]
enum Action {
    Create(Value),
    /// The PATCH body, and each changed field with its value before and after.
    Update(Value, Vec<(String, Value, Value)>),
    Delete,
    /// The files and the control plane disagree in a way apply must not resolve.
    Conflict(String),
    /// Left as it is, with the reason said.
    Note(String),
}

#[derive(Debug)]
struct Change {
    kind: &'static str,
    name: String,
    action: Action,
}

impl Change {
    fn path(&self) -> String {
        let base = match self.kind {
            "Witness" => "/v1/witnesses",
            "SecurityPolicy" => "/v1/policies",
            _ => "/v1/signing-rules",
        };
        match self.action {
            Action::Create(_) => base.to_owned(),
            _ => format!("{base}/{}", super::urlencode(&self.name)),
        }
    }

    fn is_change(&self) -> bool {
        matches!(
            self.action,
            Action::Create(_) | Action::Update(..) | Action::Delete
        )
    }
}

pub async fn run(ctx: &Context, args: ApplyArgs, only_diff: bool) -> anyhow::Result<ExitCode> {
    if let Err(e) = check_owner(&args.owner) {
        bail!("--owner: {e}");
    }
    let sources = read_all(&args.files)?;
    let (witnesses, policies, rules) = current(ctx).await?;
    let plan = plan(&sources, &args, &witnesses, &policies, &rules);
    let conflicts: Vec<String> = plan
        .iter()
        .filter_map(|c| match &c.action {
            Action::Conflict(m) => Some(format!("{} {}: {m}", c.kind, c.name)),
            _ => None,
        })
        .collect();
    print_plan(ctx, &plan, only_diff);
    if !conflicts.is_empty() {
        bail!(
            "nothing was changed; resolve these first:\n  {}",
            conflicts.join("\n  ")
        );
    }
    let changes = plan.iter().filter(|c| c.is_change()).count();
    if only_diff {
        // As `terraform plan -detailed-exitcode`: 0 in sync, 2 changes, 1 an error.
        return Ok(if changes == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    for (done, c) in plan.iter().filter(|c| c.is_change()).enumerate() {
        let (method, body) = match &c.action {
            Action::Create(b) => (Method::POST, Some(b)),
            Action::Update(b, _) => (Method::PATCH, Some(b)),
            _ => (Method::DELETE, None),
        };
        let sent: Result<(_, Value), _> = ctx.client.call(method, &c.path(), body, TIMEOUT).await;
        if let Err(e) = sent {
            bail!(
                "{} {}: {e}\n{done} of {changes} changes were made before this one; run apply again once it is fixed",
                c.kind,
                c.name
            );
        }
    }
    if ctx.format == Format::Text {
        println!(
            "applied: {}",
            summary(&plan).unwrap_or_else(|| "no changes".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check_owner(owner: &str) -> Result<(), String> {
    let labels = BTreeMap::from([(OWNER_LABEL.to_owned(), owner.to_owned())]);
    let p = signet_core::labels::label_problems(&labels);
    if owner.is_empty() || !p.is_empty() {
        return Err(format!(
            "{owner:?} is not a label value (at most 63 letters, digits, '-', '_' or '.')"
        ));
    }
    Ok(())
}

/// Every document of every file, checked; all problems at once, naming file and document.
fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
                })
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(p.clone());
        }
    }
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let docs: Vec<Value> = match parse_documents(file, &text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        for (i, value) in docs.into_iter().enumerate() {
            if value.is_null() {
                continue; // an empty document (a trailing `---`)
            }
            let origin = format!("{} (document {})", file.display(), i + 1);
            match serde_json::from_value::<Document>(value) {
                Ok(doc) => {
                    let p = doc.problems();
                    if p.is_empty() {
                        sources.push(Source { origin, doc });
                    } else {
                        problems.push(format!(
                            "{origin}, {} {}: {}",
                            doc.kind(),
                            doc.metadata().name,
                            p.join("; ")
                        ));
                    }
                }
                Err(e) => problems.push(format!("{origin}: {e}")),
            }
        }
    }
    let mut seen: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for s in &sources {
        let key = (s.doc.kind(), s.doc.metadata().name.as_str());
        if let Some(first) = seen.insert(key, &s.origin) {
            problems.push(format!(
                "{}: {} {} is also in {first}",
                s.origin, key.0, key.1
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "nothing was sent; the documents have problems:\n  {}",
            problems.join("\n  ")
        );
    }
    if sources.is_empty() && files.is_empty() {
        bail!("no *.yaml, *.yml or *.json files found");
    }
    Ok(sources)
}

fn parse_documents(file: &Path, text: &str) -> Result<Vec<Value>, String> {
    if file.extension().and_then(|e| e.to_str()) == Some("json") {
        return serde_json::from_str::<Value>(text)
            .map(|v| match v {
                Value::Array(items) => items,
                one => vec![one],
            })
            .map_err(|e| e.to_string());
    }
    serde_saphyr::from_multiple::<Value>(text).map_err(|e| e.to_string())
}

type Current = (Vec<Witness>, Vec<SecurityPolicy>, Vec<SigningRule>);

async fn current(ctx: &Context) -> anyhow::Result<Current> {
    async fn list<T: serde::de::DeserializeOwned>(
        ctx: &Context,
        path: &str,
        field: &str,
    ) -> anyhow::Result<Vec<T>> {
        let (_, v): (_, Value) = ctx
            .client
            .call::<(), _>(Method::GET, path, None, TIMEOUT)
            .await?;
        serde_json::from_value(v[field].clone())
            .with_context(|| format!("reading the answer of GET {path}"))
    }
    Ok((
        list(ctx, "/v1/witnesses", "witnesses").await?,
        list(ctx, "/v1/policies", "policies").await?,
        list(ctx, "/v1/signing-rules", "rules").await?,
    ))
}

fn owner_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(OWNER_LABEL).map(String::as_str)
}

/// The labels an object of `owner` should carry.
fn owned_labels(doc_labels: &BTreeMap<String, String>, owner: &str) -> BTreeMap<String, String> {
    let mut l = doc_labels.clone();
    l.insert(OWNER_LABEL.to_owned(), owner.to_owned());
    l
}

fn plan(
    sources: &[Source],
    args: &ApplyArgs,
    witnesses: &[Witness],
    policies: &[SecurityPolicy],
    rules: &[SigningRule],
) -> Vec<Change> {
    let mut plan = Vec::new();
    // Witnesses first: the policies and rules that name them are sent after.
    let order = |d: &Document| match d {
        Document::Witness(_) => 0,
        Document::SecurityPolicy(_) => 1,
        Document::SigningRule(_) => 2,
    };
    let mut ordered: Vec<&Source> = sources.iter().collect();
    ordered.sort_by_key(|s| order(&s.doc));
    for s in ordered {
        plan.push(match &s.doc {
            Document::Witness(d) => witness_change(d, witnesses),
            Document::SecurityPolicy(d) => policy_change(d, &args.owner, policies),
            Document::SigningRule(d) => rule_change(d, &args.owner, rules),
        });
    }
    if args.prune {
        let named = |kind: &str, name: &str| {
            sources
                .iter()
                .any(|s| s.doc.kind() == kind && s.doc.metadata().name == name)
        };
        for p in policies {
            if owner_of(&p.labels) == Some(&args.owner) && !named("SecurityPolicy", &p.name) {
                plan.push(Change {
                    kind: "SecurityPolicy",
                    name: p.name.clone(),
                    action: Action::Delete,
                });
            }
        }
        for r in rules {
            if owner_of(&r.labels) == Some(&args.owner) && !named("SigningRule", &r.name) {
                plan.push(Change {
                    kind: "SigningRule",
                    name: r.name.clone(),
                    action: Action::Delete,
                });
            }
        }
    }
    plan
}

fn witness_change(d: &WitnessDocument, witnesses: &[Witness]) -> Change {
    let name = d.metadata.name.clone();
    let change = |action| Change {
        kind: "Witness",
        name: name.clone(),
        action,
    };
    let Some(w) = witnesses.iter().find(|w| w.name == name) else {
        let mut body = json!({"name": name, "description": d.spec.description});
        for (k, v) in [
            ("kms_key", &d.spec.kms_key),
            ("public_key", &d.spec.public_key),
            ("algorithm", &d.spec.algorithm),
        ] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        return change(Action::Create(body));
    };
    // A witness's key is its identity: never re-pointed.
    if let Some(k) = &d.spec.kms_key {
        if &w.kms_key != k {
            return change(Action::Conflict(format!(
                "it exists with KMS key {:?}, the files say {k:?}; a witness is never re-pointed (create another one and change the policies)",
                w.kms_key
            )));
        }
    }
    if let Some(pem) = &d.spec.public_key {
        let fingerprint = signet_core::PublicKey::parse(pem.as_bytes())
            .map(|k| k.fingerprint())
            .unwrap_or_default();
        let first = w.key_versions.first().map(|v| v.fingerprint.as_str());
        if !w.is_verify_only() || first != Some(fingerprint.as_str()) {
            return change(Action::Conflict(
                "it exists with another key than the files' publicKey; a witness is never re-pointed".into(),
            ));
        }
    }
    if w.state == signet_core::WitnessState::Revoked {
        return change(Action::Note(
            "revoked; apply never brings a witness back (create another one)".into(),
        ));
    }
    if w.description != d.spec.description {
        return change(Action::Note(format!(
            "its description is {:?}, the files say {:?}; a witness's description is kept as it was created",
            w.description, d.spec.description
        )));
    }
    change(Action::Note(String::new()))
}

/// Compares `(field, current, desired)` triples and builds the PATCH body of those that
/// differ.
fn differences(fields: Vec<(&str, Value, Value)>) -> (Value, Vec<(String, Value, Value)>) {
    let mut body = Map::new();
    let mut changed = Vec::new();
    for (field, before, after) in fields {
        if before != after {
            body.insert(field.to_owned(), after.clone());
            changed.push((field.to_owned(), before, after));
        }
    }
    (Value::Object(body), changed)
}

/// Another owner's object is not taken over; a hand-made one (no owner) is.
fn foreign_owner(labels: &BTreeMap<String, String>, owner: &str) -> Option<String> {
    owner_of(labels)
        .filter(|o| *o != owner)
        .map(|o| {
            format!(
                "it belongs to owner {o:?} (label {OWNER_LABEL}); apply it with --owner {o}, or change that label first"
            )
        })
}

fn policy_change(d: &PolicyDocument, owner: &str, policies: &[SecurityPolicy]) -> Change {
    let s = &d.spec;
    let name = d.metadata.name.clone();
    let labels = owned_labels(&d.metadata.labels, owner);
    let desired = json!({
        "witnesses": s.witnesses, "require": s.require, "cluster": s.cluster,
        "namespace": s.namespace, "namespace_selector": s.namespace_selector,
        "mode": s.mode.as_str(), "enabled": s.enabled, "exemptions": s.exemptions,
        "require_digest": s.require_digest, "allow_break_glass": s.allow_break_glass,
        "pin_digests": s.pin_digests, "attestations": s.attestations, "note": s.note, "labels": labels,
    });
    let Some(p) = policies.iter().find(|p| p.name == name) else {
        let mut body = desired;
        body["name"] = json!(name);
        return Change {
            kind: "SecurityPolicy",
            name,
            action: Action::Create(body),
        };
    };
    if let Some(m) = foreign_owner(&p.labels, owner) {
        return Change {
            kind: "SecurityPolicy",
            name,
            action: Action::Conflict(m),
        };
    }
    let current = json!({
        "witnesses": p.witnesses, "require": p.require, "cluster": p.cluster,
        "namespace": p.namespace, "namespace_selector": p.namespace_selector,
        "mode": p.mode.as_str(), "enabled": p.enabled, "exemptions": p.exemptions,
        "require_digest": p.require_digest, "allow_break_glass": p.allow_break_glass,
        "pin_digests": p.pin_digests, "attestations": p.attestations, "note": p.note, "labels": p.labels,
    });
    let fields = [
        "witnesses",
        "require",
        "cluster",
        "namespace",
        "namespace_selector",
        "mode",
        "enabled",
        "exemptions",
        "require_digest",
        "allow_break_glass",
        "pin_digests",
        "attestations",
        "note",
        "labels",
    ]
    .into_iter()
    .map(|f| (f, current[f].clone(), desired[f].clone()))
    .collect();
    let (mut body, changed) = differences(fields);
    // The API removes a selector with an empty one.
    if body.get("namespace_selector").is_some_and(Value::is_null) {
        body["namespace_selector"] = json!({});
    }
    Change {
        kind: "SecurityPolicy",
        name,
        action: if changed.is_empty() {
            Action::Note(String::new())
        } else {
            Action::Update(body, changed)
        },
    }
}

fn rule_change(d: &RuleDocument, owner: &str, rules: &[SigningRule]) -> Change {
    let s = &d.spec;
    let name = d.metadata.name.clone();
    let labels = owned_labels(&d.metadata.labels, owner);
    let desired = json!({
        "repositories": s.repositories, "tag_pattern": s.tag_pattern,
        "witness": s.witness, "enabled": s.enabled, "labels": labels, "format": s.format,
    });
    let Some(r) = rules.iter().find(|r| r.name == name) else {
        let mut body = desired;
        body["name"] = json!(name);
        return Change {
            kind: "SigningRule",
            name,
            action: Action::Create(body),
        };
    };
    if let Some(m) = foreign_owner(&r.labels, owner) {
        return Change {
            kind: "SigningRule",
            name,
            action: Action::Conflict(m),
        };
    }
    let current = json!({
        "repositories": r.repositories, "tag_pattern": r.tag_pattern,
        "witness": r.witness, "enabled": r.enabled, "labels": r.labels, "format": r.format,
    });
    let fields = [
        "repositories",
        "tag_pattern",
        "witness",
        "enabled",
        "labels",
        "format",
    ]
    .into_iter()
    .map(|f| (f, current[f].clone(), desired[f].clone()))
    .collect();
    let (body, changed) = differences(fields);
    Change {
        kind: "SigningRule",
        name,
        action: if changed.is_empty() {
            Action::Note(String::new())
        } else {
            Action::Update(body, changed)
        },
    }
}

fn summary(plan: &[Change]) -> Option<String> {
    let count = |f: fn(&Action) -> bool| plan.iter().filter(|c| f(&c.action)).count();
    let created = count(|a| matches!(a, Action::Create(_)));
    let updated = count(|a| matches!(a, Action::Update(..)));
    let deleted = count(|a| matches!(a, Action::Delete));
    let unchanged = count(|a| matches!(a, Action::Note(_)));
    if created + updated + deleted == 0 {
        return None;
    }
    Some(format!(
        "{created} created, {updated} updated, {deleted} deleted, {unchanged} unchanged"
    ))
}

fn print_plan(ctx: &Context, plan: &[Change], only_diff: bool) {
    if ctx.format == Format::Json {
        let items: Vec<Value> = plan
            .iter()
            .map(|c| {
                let (action, detail) = match &c.action {
                    Action::Create(b) => ("create", b.clone()),
                    Action::Update(_, changed) => (
                        "update",
                        changed
                            .iter()
                            .map(|(f, before, after)| {
                                (f.clone(), json!({"from": before, "to": after}))
                            })
                            .collect::<Map<String, Value>>()
                            .into(),
                    ),
                    Action::Delete => ("delete", Value::Null),
                    Action::Conflict(m) => ("conflict", json!(m)),
                    Action::Note(m) if m.is_empty() => ("unchanged", Value::Null),
                    Action::Note(m) => ("unchanged", json!(m)),
                };
                json!({"kind": c.kind, "name": c.name, "action": action, "detail": detail})
            })
            .collect();
        output::json(&json!({"dry_run": only_diff, "changes": items}));
        return;
    }
    for c in plan {
        let head = format!("{} {}", c.kind, c.name);
        match &c.action {
            Action::Create(_) => println!("+ {head}: create"),
            Action::Update(_, changed) => {
                println!("~ {head}: update");
                for (f, before, after) in changed {
                    println!("    {f}: {before} -> {after}");
                }
            }
            Action::Delete => println!("- {head}: delete (its owner's files no longer name it)"),
            Action::Conflict(m) => println!("! {head}: {m}"),
            Action::Note(m) if m.is_empty() => {}
            Action::Note(m) => println!("= {head}: unchanged; {m}"),
        }
    }
    if only_diff {
        println!(
            "{}",
            summary(plan)
                .map(|s| format!("would be: {s}"))
                .unwrap_or_else(|| "no changes: the control plane matches the files".into())
        );
    }
}
