//! Policy as code through the real `signet up`: `signet diff` and `signet apply -f` on a
//! directory of YAML documents, a second apply that changes nothing (no audit entry, so
//! no event: each write carries both in one transaction), an edit, `--prune` among the
//! objects of one owner only, and documents with problems refused before anything is sent.

mod common;

use std::path::Path;
use std::process::Output;

use common::{bin, fails, ok};
use serde_json::Value;
use signet_testkit::signet::SignetUp;

fn cli(up: &SignetUp, args: &[&str]) -> Output {
    up.cli(args).expect("run signet")
}

fn json(up: &SignetUp, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&ok(&cli(up, &a), &a.join(" "))).expect("json")
}

fn audit_entries(up: &SignetUp) -> usize {
    json(up, &["audit", "--limit", "1000"])["entries"]
        .as_array()
        .map_or(0, Vec::len)
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).expect("write a document");
}

const WITNESSES: &str = r#"
apiVersion: signet.dev/v1
kind: Witness
metadata:
  name: release
spec:
  kmsKey: local://release
  description: release pipeline
"#;

const POLICIES: &str = r#"
apiVersion: signet.dev/v1
kind: SecurityPolicy
metadata:
  name: prod
  labels:
    team: platform
spec:
  witnesses: [release]
  cluster: c1
  namespace: "*"
  namespaceSelector:
    matchLabels:
      signet.dev/enforce: "true"
  exemptions: ["registry.k8s.io/pause:*"]
---
apiVersion: signet.dev/v1
kind: SecurityPolicy
metadata:
  name: staging
spec:
  witnesses: [release]
  cluster: c1
  namespace: staging
  mode: dry-run
  enabled: true
---
"#;

const RULES: &str = r#"
apiVersion: signet.dev/v1
kind: SigningRule
metadata:
  name: team-images
spec:
  repositories: ["reg.example/team/*"]
  witness: release
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_makes_the_control_plane_match_the_files_and_nothing_more() {
    let up = SignetUp::start(bin(), &[]).await.expect("signet up");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "00-witnesses.yaml", WITNESSES);
    write(d, "10-policies.yaml", POLICIES);
    write(d, "20-rules.yml", RULES);
    write(d, "README.md", "not a document: skipped");
    let dir_arg = d.to_str().expect("utf-8 path");

    // What would change: everything, exit status 2; nothing is written.
    let before = audit_entries(&up);
    let out = cli(&up, &["diff", "-f", dir_arg]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "+ Witness release: create",
        "+ SecurityPolicy prod: create",
        "+ SecurityPolicy staging: create",
        "+ SigningRule team-images: create",
        "would be: 4 created, 0 updated, 0 deleted, 0 unchanged",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    assert_eq!(audit_entries(&up), before, "diff writes nothing");

    let out = ok(&cli(&up, &["apply", "-f", dir_arg]), "apply");
    assert!(out.contains("applied: 4 created"), "{out}");
    let prod = json(&up, &["policy", "show", "prod"]);
    assert_eq!(prod["enabled"], false, "off unless the document says so");
    assert_eq!(
        prod["namespace_selector"]["matchLabels"]["signet.dev/enforce"],
        "true"
    );
    assert_eq!(prod["labels"]["team"], "platform");
    assert_eq!(prod["labels"]["signet.dev/owner"], "signet-apply");
    assert_eq!(prod["pin_digests"], true);
    let staging = json(&up, &["policy", "show", "staging"]);
    assert_eq!(staging["enabled"], true);
    assert_eq!(staging["mode"], "dry-run");

    // Again: in sync. No request that writes, so no audit entry and no event.
    let after_first = audit_entries(&up);
    assert!(after_first >= before + 4, "each creation is audited");
    let out = cli(&up, &["diff", "-f", dir_arg]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no changes"));
    let out = ok(&cli(&up, &["apply", "-f", dir_arg]), "second apply");
    assert!(out.contains("applied: no changes"), "{out}");
    assert_eq!(
        audit_entries(&up),
        after_first,
        "a second apply writes nothing"
    );
    assert_eq!(
        json(&up, &["policy", "show", "prod"])["updated_at"],
        prod["updated_at"]
    );

    // An edit: only the fields that changed are sent.
    write(
        d,
        "10-policies.yaml",
        &POLICIES.replace("  mode: dry-run\n", "  mode: warn\n"),
    );
    let out = cli(&up, &["diff", "-f", dir_arg]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("~ SecurityPolicy staging: update\n    mode: \"dry-run\" -> \"warn\""),
        "{text}"
    );
    ok(&cli(&up, &["apply", "-f", dir_arg]), "apply the edit");
    assert_eq!(json(&up, &["policy", "show", "staging"])["mode"], "warn");
    let audit = json(&up, &["audit", "--limit", "1"]);
    assert_eq!(audit["entries"][0]["action"], "policy.update", "{audit:#}");

    // --prune: the rule leaves the files and goes; a rule made by hand (no owner) and
    // another owner's policy stay.
    ok(
        &cli(
            &up,
            &[
                "rule",
                "create",
                "by-hand",
                "--repository",
                "reg.example/other/*",
                "--witness",
                "release",
            ],
        ),
        "a rule made by hand",
    );
    let other = tempfile::tempdir().expect("tempdir");
    write(
        other.path(),
        "p.yaml",
        &POLICIES
            .split("---")
            .nth(1)
            .expect("staging")
            .replace("name: staging", "name: theirs"),
    );
    ok(
        &cli(
            &up,
            &[
                "apply",
                "-f",
                other.path().to_str().expect("utf-8"),
                "--owner",
                "team-b",
            ],
        ),
        "another owner's apply",
    );
    std::fs::remove_file(d.join("20-rules.yml")).expect("remove the rule's file");
    let out = ok(
        &cli(&up, &["apply", "-f", dir_arg, "--prune"]),
        "apply --prune",
    );
    assert!(out.contains("- SigningRule team-images: delete"), "{out}");
    assert!(out.contains("1 deleted"), "{out}");
    let rules = json(&up, &["rule", "list"]);
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["by-hand"], "{rules:#}");
    assert_eq!(
        json(&up, &["policy", "show", "theirs"])["labels"]["signet.dev/owner"],
        "team-b"
    );
    // Another owner's object is not taken over.
    let out = fails(
        &cli(&up, &["apply", "-f", other.path().to_str().expect("utf-8")]),
        "applying team-b's file as signet-apply",
    );
    assert!(out.contains("belongs to owner \"team-b\""), "{out}");

    // Problems are found before anything is sent, all at once, with file and document.
    let bad = tempfile::tempdir().expect("tempdir");
    write(
        bad.path(),
        "bad.yaml",
        "apiVersion: signet.dev/v1\nkind: SigningRule\nmetadata: {name: r}\nspec: {repositories: [x], witness: release, tagPatern: v1}\n---\napiVersion: signet.dev/v1\nkind: SecurityPolicy\nmetadata: {name: Bad}\nspec: {witnesses: [release], cluster: c1, namespace: prod}\n",
    );
    write(bad.path(), "good.yaml", RULES);
    let entries = audit_entries(&up);
    let out = fails(
        &cli(&up, &["apply", "-f", bad.path().to_str().expect("utf-8")]),
        "documents with problems",
    );
    assert!(out.contains("nothing was sent"), "{out}");
    assert!(
        out.contains("bad.yaml (document 1)") && out.contains("tagPatern"),
        "{out}"
    );
    assert!(
        out.contains("bad.yaml (document 2)") && out.contains("policy name \"Bad\""),
        "{out}"
    );
    assert_eq!(audit_entries(&up), entries, "nothing applied");
    // A witness is never re-pointed to another key.
    write(
        bad.path(),
        "bad.yaml",
        &WITNESSES.replace("local://release", "local://other"),
    );
    let out = fails(
        &cli(&up, &["apply", "-f", bad.path().to_str().expect("utf-8")]),
        "a witness with another key",
    );
    assert!(out.contains("never re-pointed"), "{out}");
    assert_eq!(audit_entries(&up), entries, "nothing applied");
}
