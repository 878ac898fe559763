//! Label selectors over namespaces: a policy can opt namespaces in by label
//! (`signet.dev/enforce=true`), as policy-controller and Kyverno users do, in addition to
//! its name or glob.
//!
//! The JSON shape is Kubernetes's `LabelSelector` (`matchLabels`, `matchExpressions`), so
//! a selector copied from a manifest works as it is; the text form is `kubectl -l`'s
//! (`env=prod,tier in (web,api),!legacy`).
//!
//! Matching is written here rather than taken from kube-core's `Selector`: that type
//! lives on k8s-openapi, which only the verifier builds, and the control plane (the
//! dry-run impact) matches too. The verifier's tests check both agree.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Selects namespaces by their labels. Every `matchLabels` pair and every expression
/// must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels the namespace must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    /// One or more for `In` and `NotIn`; none for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum LabelOperator {
    /// The label is present with one of `values`.
    In,
    /// The label is absent, or present with none of `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            LabelOperator::In => value.is_some_and(|v| self.values.contains(v)),
            LabelOperator::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl LabelSelector {
    /// Whether a namespace with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Everything wrong with the selector, in the words Kubernetes uses.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.is_empty() {
            p.push(
                "a namespace selector needs at least one label or expression (it would select \
                 every namespace; leave it out instead)"
                    .to_owned(),
            );
        }
        for (k, v) in &self.match_labels {
            check_key(k, &mut p);
            check_value(k, v, &mut p);
        }
        for r in &self.match_expressions {
            check_key(&r.key, &mut p);
            match r.operator {
                LabelOperator::In | LabelOperator::NotIn => {
                    if r.values.is_empty() {
                        p.push(format!(
                            "label {:?}: {:?} needs at least one value",
                            r.key, r.operator
                        ));
                    }
                    for v in &r.values {
                        check_value(&r.key, v, &mut p);
                    }
                }
                LabelOperator::Exists | LabelOperator::DoesNotExist => {
                    if !r.values.is_empty() {
                        p.push(format!(
                            "label {:?}: {:?} takes no values",
                            r.key, r.operator
                        ));
                    }
                }
            }
        }
        p
    }

    /// Parses `kubectl -l` syntax: comma-separated requirements, each `key`, `!key`,
    /// `key=value` (or `==`), `key!=value`, `key in (a,b)` or `key notin (a,b)`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut s = Self::default();
        for term in split_top_level(text)? {
            let term = term.trim();
            if term.is_empty() {
                return Err(format!(
                    "{text:?}: an empty requirement (two commas in a row?)"
                ));
            }
            if let Some(open) = term.find('(') {
                let Some(inner) = term[open + 1..].strip_suffix(')') else {
                    return Err(format!("{term:?}: a value set must end with ')'"));
                };
                let mut head = term[..open].split_whitespace();
                let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
                    return Err(format!(
                        "{term:?}: write `key in (a,b)` or `key notin (a,b)`"
                    ));
                };
                let operator = match op {
                    "in" => LabelOperator::In,
                    "notin" => LabelOperator::NotIn,
                    _ => return Err(format!("{term:?}: {op:?} is not `in` or `notin`")),
                };
                let values = if inner.trim().is_empty() {
                    Vec::new()
                } else {
                    inner.split(',').map(|v| v.trim().to_owned()).collect()
                };
                s.match_expressions.push(LabelRequirement {
                    key: key.to_owned(),
                    operator,
                    values,
                });
            } else if let Some((k, v)) = term.split_once("!=") {
                s.match_expressions.push(LabelRequirement {
                    key: k.trim().to_owned(),
                    operator: LabelOperator::NotIn,
                    values: vec![v.trim().to_owned()],
                });
            } else if let Some((k, v)) = term.split_once('=') {
                let v = v.strip_prefix('=').unwrap_or(v);
                s.match_labels
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            } else if let Some(k) = term.strip_prefix('!') {
                s.match_expressions.push(LabelRequirement {
                    key: k.trim().to_owned(),
                    operator: LabelOperator::DoesNotExist,
                    values: Vec::new(),
                });
            } else if term.split_whitespace().count() == 1 {
                s.match_expressions.push(LabelRequirement {
                    key: term.to_owned(),
                    operator: LabelOperator::Exists,
                    values: Vec::new(),
                });
            } else {
                return Err(format!("{term:?} is not a label requirement"));
            }
        }
        let problems = s.problems();
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Everything wrong with a set of object labels (`signet.dev/owner: team-a`), in the words
/// Kubernetes uses for its own.
pub fn label_problems(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut p = Vec::new();
    for (k, v) in labels {
        check_key(k, &mut p);
        check_value(k, v, &mut p);
    }
    p
}

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("{text:?}: a ')' without its '('"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("{text:?}: a '(' without its ')'"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// `[prefix/]name`: the prefix a DNS subdomain (at most 253), the name at most 63
/// alphanumerics, `-`, `_` or `.`, beginning and ending alphanumeric.
fn check_key(key: &str, p: &mut Vec<String>) {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            p.push(format!(
                "label key {key:?}: its prefix must be a DNS subdomain (lowercase, digits, '-' and '.')"
            ));
        }
    }
    if name.is_empty() || !is_label_word(name) {
        p.push(format!(
            "label key {key:?}: the name must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
}

fn check_value(key: &str, value: &str, p: &mut Vec<String>) {
    if !value.is_empty() && !is_label_word(value) {
        p.push(format!(
            "label {key:?}: value {value:?} must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
}

fn is_label_word(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The `kubectl -l` form, which [`LabelSelector::parse`] reads back.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            if std::mem::take(&mut first) {
                Ok(())
            } else {
                f.write_str(",")
            }
        };
        for (k, v) in &self.match_labels {
            sep(f)?;
            write!(f, "{k}={v}")?;
        }
        for r in &self.match_expressions {
            sep(f)?;
            match r.operator {
                LabelOperator::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                LabelOperator::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
                LabelOperator::Exists => write!(f, "{}", r.key)?,
                LabelOperator::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_kubectl_syntax_and_prints_it_back() {
        let s = LabelSelector::parse(
            "signet.dev/enforce=true, tier in (web, api),env notin (dev),!legacy,team,zone!=eu",
        )
        .unwrap();
        assert_eq!(s.match_labels, labels(&[("signet.dev/enforce", "true")]));
        assert_eq!(s.match_expressions.len(), 5);
        assert_eq!(s.match_expressions[0].values, ["web", "api"]);
        assert_eq!(s.match_expressions[2].operator, LabelOperator::DoesNotExist);
        assert_eq!(s.match_expressions[3].operator, LabelOperator::Exists);
        assert_eq!(s.match_expressions[4].operator, LabelOperator::NotIn);
        let printed = s.to_string();
        assert_eq!(
            printed,
            "signet.dev/enforce=true,tier in (web,api),env notin (dev),!legacy,team,zone notin (eu)"
        );
        assert_eq!(LabelSelector::parse(&printed).unwrap(), s);
        assert_eq!(
            LabelSelector::parse("a==b").unwrap().match_labels,
            labels(&[("a", "b")])
        );
    }

    #[test]
    fn matches_as_kubernetes_does() {
        let s =
            LabelSelector::parse("enforce=true,tier in (web,api),env notin (dev),!legacy").unwrap();
        assert!(s.matches(&labels(&[("enforce", "true"), ("tier", "web")])));
        assert!(s.matches(&labels(&[
            ("enforce", "true"),
            ("tier", "api"),
            ("env", "prod")
        ])));
        // Each requirement can fail on its own.
        assert!(!s.matches(&labels(&[("tier", "web")])));
        assert!(!s.matches(&labels(&[("enforce", "false"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("enforce", "true"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("enforce", "true")])));
        assert!(!s.matches(&labels(&[
            ("enforce", "true"),
            ("tier", "web"),
            ("env", "dev")
        ])));
        assert!(!s.matches(&labels(&[
            ("enforce", "true"),
            ("tier", "web"),
            ("legacy", "")
        ])));
        // Label keys and values are case-sensitive.
        assert!(!s.matches(&labels(&[("Enforce", "true"), ("tier", "web")])));
    }

    #[test]
    fn refuses_what_kubernetes_refuses() {
        for (text, expect) in [
            ("", "empty requirement"),
            ("a=b,,c", "empty requirement"),
            ("tier in (web", "without its ')'"),
            ("tier in web)", "without its '('"),
            ("tier within (a)", "is not `in` or `notin`"),
            ("tier in ()", "needs at least one value"),
            ("-bad=x", "label key \"-bad\""),
            ("UPPER.example.com/x=y", "prefix must be a DNS subdomain"),
            ("a=b c", "value \"b c\""),
            ("two words", "is not a label requirement"),
        ] {
            let e = LabelSelector::parse(text).unwrap_err();
            assert!(e.contains(expect), "{text:?}: {e}");
        }
        let in_without_values = LabelSelector {
            match_expressions: vec![LabelRequirement {
                key: "a".into(),
                operator: LabelOperator::In,
                values: vec![],
            }],
            ..Default::default()
        };
        assert!(in_without_values.problems()[0].contains("needs at least one value"));
        assert!(LabelSelector::default().problems()[0].contains("at least one label"));
    }

    #[test]
    fn reads_the_kubernetes_json_shape() {
        let s: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{"signet.dev/enforce":"true"},
                "matchExpressions":[{"key":"tier","operator":"In","values":["web"]},
                                    {"key":"legacy","operator":"DoesNotExist"}]}"#,
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "signet.dev/enforce=true,tier in (web),!legacy"
        );
        assert!(serde_json::from_str::<LabelSelector>(r#"{"matchLabel":{}}"#).is_err());
        assert!(serde_json::from_str::<LabelSelector>(
            r#"{"matchExpressions":[{"key":"a","operator":"Has"}]}"#
        )
        .is_err());
    }
}
