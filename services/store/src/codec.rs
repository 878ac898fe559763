//! Conversions between domain values and the column types sqlx's Any driver carries on
//! both backends (BIGINT, TEXT, BLOB/BYTEA), and a small builder for optional filters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Decode, Row, Type};

use crate::error::StoreError;

pub(crate) fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(what: &str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::corrupt(what, format!("timestamp {ms} is out of range")))
}

/// Saturates: a lease or delay too long for an i64 of milliseconds is "forever".
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Reads one column, reporting a missing or mistyped column as corrupt data.
pub(crate) fn col<'r, T>(row: &'r AnyRow, what: &str, name: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Any> + Type<Any>,
{
    row.try_get::<T, _>(name)
        .map_err(|e| StoreError::corrupt(what, format!("column {name}: {e}")))
}

pub(crate) fn uuid(what: &str, s: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(s).map_err(|e| StoreError::corrupt(what, format!("id {s:?}: {e}")))
}

pub(crate) fn count(what: &str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::corrupt(what, format!("negative count {n}")))
}

pub(crate) fn json_text<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encoding { what, source })
}

pub(crate) fn json_value<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|source| StoreError::Encoding { what, source })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

/// A value bound to a dynamically built query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// Builds `WHERE a = $1 AND b = $2 ...` from the filters that are set, numbering the
/// placeholders in one dialect-neutral syntax; values are always bound, never spliced.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Filter {
    /// Adds a condition; `{}` in `clause` stands for the value's placeholder (repeatable).
    pub(crate) fn and(&mut self, clause: &str, value: Bind) -> &mut Self {
        self.binds.push(value);
        let placeholder = format!("${}", self.binds.len());
        self.clauses.push(clause.replace("{}", &placeholder));
        self
    }

    /// Adds a condition with any number of values: each `{}` in `clause`, in order,
    /// stands for the next value's placeholder.
    pub(crate) fn and_each(&mut self, clause: &str, values: Vec<Bind>) -> &mut Self {
        let mut out = String::with_capacity(clause.len() + values.len() * 3);
        let mut parts = clause.split("{}");
        out.push_str(parts.next().unwrap_or_default());
        for (part, value) in parts.zip(values) {
            self.binds.push(value);
            out.push_str(&format!("${}", self.binds.len()));
            out.push_str(part);
        }
        self.clauses.push(out);
        self
    }

    /// ` WHERE ...` (or nothing), then `tail` with `{}` replaced by the next placeholder,
    /// bound to `tail_value` (the LIMIT).
    pub(crate) fn finish(
        mut self,
        head: &str,
        tail: &str,
        tail_value: Bind,
    ) -> (String, Vec<Bind>) {
        let mut sql = head.to_owned();
        if !self.clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.clauses.join(" AND "));
        }
        self.binds.push(tail_value);
        sql.push(' ');
        sql.push_str(&tail.replace("{}", &format!("${}", self.binds.len())));
        (sql, self.binds)
    }
}

pub(crate) fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> Query<'q, Any, AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s),
            Bind::Int(i) => q.bind(i),
        };
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_numbers_placeholders_in_order() {
        let mut f = Filter::default();
        f.and("repository = {}", Bind::Text("r".into())).and(
            "substr(action, 1, length({})) = {}",
            Bind::Text("a.".into()),
        );
        let (sql, binds) = f.finish("SELECT x FROM t", "ORDER BY id LIMIT {}", Bind::Int(5));
        assert_eq!(
            sql,
            "SELECT x FROM t WHERE repository = $1 AND substr(action, 1, length($2)) = $2 ORDER BY id LIMIT $3"
        );
        assert_eq!(
            binds,
            vec![
                Bind::Text("r".into()),
                Bind::Text("a.".into()),
                Bind::Int(5)
            ]
        );
    }

    #[test]
    fn filter_without_conditions_has_no_where() {
        let (sql, binds) = Filter::default().finish("SELECT x FROM t", "LIMIT {}", Bind::Int(1));
        assert_eq!(sql, "SELECT x FROM t LIMIT $1");
        assert_eq!(binds, vec![Bind::Int(1)]);
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(duration_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_millis(Duration::MAX), i64::MAX);
    }

    #[test]
    fn times_round_trip_at_millisecond_precision() {
        let t = DateTime::from_timestamp_millis(1_700_000_000_123).expect("valid");
        assert_eq!(time("x", millis(t)).expect("in range"), t);
        assert!(time("x", i64::MAX).is_err());
    }
}
