//! Printing: short readable lines for people, the API's JSON for scripts.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Prints `value` as pretty JSON.
pub fn json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(_) => println!("{value}"),
    }
}

/// A `key: value` line, aligned for reading.
pub fn field(key: &str, value: impl std::fmt::Display) {
    println!("{key:<14} {value}");
}

/// A value from JSON as display text (strings without quotes, null as "-").
pub fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}
