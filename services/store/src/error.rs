//! What can go wrong in the store, in words an operator can act on.

use sqlx::error::{DatabaseError, ErrorKind};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend the store knows, or is malformed. Never echoes the URL,
    /// which may carry a password.
    #[error("store URL is not usable: {0}")]
    InvalidUrl(String),

    /// A record with the same name or id is already stored.
    #[error("{0} already exists")]
    Conflict(String),

    /// The record to change, or one it refers to, is not stored.
    #[error("{0} does not exist")]
    NotFound(String),

    /// The database could not be reached, or the pool ran out of connections. Retryable.
    #[error("database unavailable while {operation}; retry once it is reachable")]
    Unavailable {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// Another writer held a lock the operation needed (SQLite busy, PostgreSQL deadlock or
    /// serialization failure). Retryable.
    #[error("database busy with a conflicting change while {operation}; retry")]
    Busy {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// A stored value does not decode: the database holds data this version of signet does
    /// not understand, or was edited by hand.
    #[error("stored {what} is unreadable: {reason}")]
    Corrupt { what: String, reason: String },

    /// A value could not be encoded for storage.
    #[error("could not encode {what} for storage")]
    Encoding {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The schema could not be brought up to date (e.g. the database was migrated by a
    /// newer signet, or a migration was edited after it was applied).
    #[error("could not bring the database schema up to date")]
    Migration(#[source] sqlx::migrate::MigrateError),

    /// Any other database failure.
    #[error("database query failed while {operation}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Whether the same call may succeed later: decides retry versus dead-letter.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Busy { .. })
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl ToString) -> Self {
        Self::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Classifies a driver error by what the caller can do about it.
    pub(crate) fn from_sqlx(operation: &'static str, source: sqlx::Error) -> Self {
        match classify(&source) {
            Class::Unavailable => Self::Unavailable { operation, source },
            Class::Busy => Self::Busy { operation, source },
            Class::Other => Self::Query { operation, source },
        }
    }
}

/// `map_err(db("doing X"))`: the operation names what the store was doing, for the message.
pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(operation, e)
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Unavailable,
    Busy,
    Other,
}

fn classify(e: &sqlx::Error) -> Class {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Class::Unavailable,
        sqlx::Error::Database(d) => classify_database(d.as_ref()),
        _ => Class::Other,
    }
}

fn classify_database(d: &dyn DatabaseError) -> Class {
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended result codes keep the primary code in the low byte.
        let primary = d
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .map(|c| c & 0xff);
        return match primary {
            // SQLITE_BUSY, SQLITE_LOCKED
            Some(5 | 6) => Class::Busy,
            // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
            Some(10 | 13 | 14) => Class::Unavailable,
            _ => Class::Other,
        };
    }
    if matches!(
        d.kind(),
        ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation
    ) {
        return Class::Other;
    }
    match d.code().as_deref() {
        // serialization_failure, deadlock_detected, lock_not_available
        Some("40001" | "40P01" | "55P03") => Class::Busy,
        // connection exceptions, insufficient resources, operator intervention (shutdown)
        Some(c) if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
            Class::Unavailable
        }
        _ => Class::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_retryable() {
        let e = StoreError::from_sqlx("pinging", sqlx::Error::PoolTimedOut);
        assert!(e.retryable());
        assert_eq!(
            e.to_string(),
            "database unavailable while pinging; retry once it is reachable"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(StoreError::from_sqlx("x", sqlx::Error::Io(io)).retryable());
    }

    #[test]
    fn input_errors_are_not_retryable() {
        assert!(!StoreError::Conflict("witness \"prod\"".into()).retryable());
        assert!(!StoreError::NotFound("job 1".into()).retryable());
        assert!(!StoreError::corrupt("job 1", "bad state").retryable());
        let e = StoreError::from_sqlx("listing jobs", sqlx::Error::RowNotFound);
        assert!(matches!(e, StoreError::Query { .. }));
        assert!(!e.retryable());
    }

    #[test]
    fn messages_name_what_failed() {
        assert_eq!(
            StoreError::Conflict("witness \"prod\"".into()).to_string(),
            "witness \"prod\" already exists"
        );
        assert_eq!(
            StoreError::corrupt("job 42", "unknown state \"x\"").to_string(),
            "stored job 42 is unreadable: unknown state \"x\""
        );
    }
}
