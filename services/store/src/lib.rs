//! signet's store: the source of truth for witnesses, jobs, signature records, API tokens
//! and the audit log, plus the embedded durable queue behind `signet up`'s bus and the
//! event outbox that feeds the real bus. One set of SQL texts runs on SQLite (the embedded
//! default) and on PostgreSQL (scale-out), through sqlx's `Any` driver.
//!
//! Every write that a verifier or an auditor cares about happens in one transaction with
//! its audit entry and its outbox event, so neither can be lost or invented by a crash.
//!
//! Layout:
//! - [`Store`] (here): connecting, migrations, pools, health.
//! - [`error`]: [`StoreError`] and which failures are worth a retry.
//! - `witnesses`, `jobs`, `signatures`, `tokens`: the records, each an `impl Store` block.
//! - `policies`: security policies and the trust bundle built from them.
//! - `admissions`: admission decisions reported by verifiers ([`DecisionFilter`],
//!   [`PolicyImpact`]).
//! - `claims`: short leases that keep two signer replicas off the same image and witness.
//! - `rules`: signing rules (which pushed repositories are signed, by which witness).
//! - `deliveries`: webhook delivery ids remembered for replay protection.
//! - `rates`: rates shared by every process on the store (one KMS quota for all signers).
//! - `audit`: the append-only audit log ([`AuditFilter`]).
//! - `queue`: the embedded durable queue ([`QueuedMessage`], [`DeadLetter`]).
//! - `outbox`: events written with the change they announce ([`OutboxEvent`], [`OutboxRecord`]).
//! - `codec`: column conversions and the optional-filter query builder.

mod admissions;
mod attestations;
mod audit;
mod claims;
mod codec;
mod deliveries;
pub mod error;
mod inventory;
mod jobs;
mod outbox;
mod policies;
mod queue;
mod rates;
mod rules;
mod signatures;
mod tokens;
mod witnesses;

use std::fmt;
use std::time::Duration;

use sqlx::any::{Any, AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Transaction};

pub use admissions::{DecisionFilter, ImpactImage, PolicyImpact};
pub use audit::AuditFilter;
pub use error::StoreError;
pub use inventory::{InventoryApplied, InventoryCluster, Workload, WorkloadFilter};
pub use outbox::{OutboxEvent, OutboxRecord, OutboxTurn};
pub use queue::{DeadLetter, QueuedMessage};
pub use rates::RateSlot;
pub use signatures::SignatureFilter;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// SQLite allows one writer at a time; more reader connections let lookups proceed while
/// a write is in flight (WAL mode).
const SQLITE_READERS: u32 = 4;
const POSTGRES_CONNECTIONS: u32 = 10;
/// How long a connection waits for another writer's lock before reporting `Busy`.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a store URL names: `sqlite:` or `postgres://` / `postgresql://`.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::InvalidUrl(
                "it must start with sqlite: (e.g. sqlite:///var/lib/signet/signet.db) or postgres://"
                    .into(),
            ))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The store. Cheap to clone: the connection pools are shared.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Every write goes here. On SQLite this pool has one connection, so writers queue in
    /// the pool instead of spinning on SQLITE_BUSY.
    write: AnyPool,
    /// Plain reads. The same pool as `write` on PostgreSQL and for in-memory SQLite.
    read: AnyPool,
    /// Job changes written through this store (and its clones): what waiters in the same
    /// process listen to instead of polling.
    jobs: JobChanges,
}

/// The ids of jobs whose record this process changed, and how often job records were
/// read (so a test can bound what a waiter costs).
#[derive(Clone)]
struct JobChanges {
    changed: tokio::sync::broadcast::Sender<uuid::Uuid>,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Changes kept for a slow listener; one that falls further behind is told it lagged
/// and re-reads what it waits for.
const JOB_CHANGES_BUFFER: usize = 1024;

impl JobChanges {
    fn new() -> Self {
        Self {
            changed: tokio::sync::broadcast::channel(JOB_CHANGES_BUFFER).0,
            reads: std::sync::Arc::default(),
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately no URL: it may carry a password.
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens `sqlite://<path>` (created if missing), `sqlite::memory:` or `postgres://...`,
    /// and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let store = match backend {
            Backend::Sqlite => Self::open_sqlite(url).await?,
            Backend::Postgres => Self::open_postgres(url).await?,
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&store.write)
            .await
            .map_err(StoreError::Migration)?;
        tracing::debug!(backend = %backend, "store ready");
        Ok(store)
    }

    async fn open_sqlite(url: &str) -> Result<Store, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = parse_options(&sqlite_url_creating_file(url, in_memory))?;
        if in_memory {
            // Every connection to `sqlite::memory:` opens a database of its own, and it
            // vanishes when its connection closes: keep exactly one, forever.
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(sqlite_pragmas(false).as_str()).await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .map_err(db_open)?;
            return Ok(Store {
                backend: Backend::Sqlite,
                write: pool.clone(),
                read: pool,
                jobs: JobChanges::new(),
            });
        }
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(sqlite_pragmas(true).as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(db_open)?;
        let read = AnyPoolOptions::new()
            .max_connections(SQLITE_READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(sqlite_pragmas(false).as_str()).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Store {
            backend: Backend::Sqlite,
            write,
            read,
            jobs: JobChanges::new(),
        })
    }

    async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let pool = AnyPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(parse_options(url)?)
            .await
            .map_err(db_open)?;
        Ok(Store {
            backend: Backend::Postgres,
            write: pool.clone(),
            read: pool,
            jobs: JobChanges::new(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The ids of jobs changed through this store or a clone of it from now on (state,
    /// attempts, result). Only this process's writes: a signer in another process is
    /// seen only by reading the job.
    pub fn job_changes(&self) -> tokio::sync::broadcast::Receiver<uuid::Uuid> {
        self.jobs.changed.subscribe()
    }

    /// How many job records were read through this store and its clones.
    pub fn job_reads(&self) -> u64 {
        self.jobs.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells this process's listeners that job `id` changed (after the write committed).
    pub(crate) fn job_changed(&self, id: uuid::Uuid) {
        // No listener is not an error.
        let _ = self.jobs.changed.send(id);
    }

    /// One round trip to the database, for `/readyz`.
    #[tracing::instrument(name = "store.ping", level = "debug", skip_all)]
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(error::db("checking the database connection"))?;
        Ok(())
    }

    /// Closes the pools, waiting for connections in use to be returned. For a clean
    /// shutdown: SQLite checkpoints its write-ahead log when the last connection closes.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// A write transaction. SQLite's default deferred transaction takes the write lock only
    /// at its first write and fails at once (no busy wait) if another connection wrote in
    /// between; `BEGIN IMMEDIATE` takes it up front, where the busy timeout applies.
    pub(crate) async fn begin_write(
        &self,
        operation: &'static str,
    ) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        };
        tx.map_err(error::db(operation))
    }
}

fn db_open(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx("opening the database", e)
}

fn parse_options(url: &str) -> Result<AnyConnectOptions, StoreError> {
    // The parser's message may quote the URL, which may carry a password: keep it out.
    url.parse::<AnyConnectOptions>()
        .map_err(|_| StoreError::InvalidUrl("it is not a valid URL".into()))
}

/// sqlx opens an existing SQLite file only unless `mode=rwc` asks it to create one.
fn sqlite_url_creating_file(url: &str, in_memory: bool) -> String {
    if in_memory || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Connection settings sqlx's Any driver cannot take from the URL. WAL lets readers run
/// beside the writer and survives in the file; only the writer sets it, because changing
/// the journal mode needs a lock the busy timeout does not wait for.
fn sqlite_pragmas(writer: bool) -> String {
    let mut pragmas =
        format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = ON;");
    if writer {
        pragmas.push_str(" PRAGMA journal_mode = WAL;");
    }
    pragmas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("sqlite::memory:").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("sqlite:///var/lib/signet/db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u:p@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        let err = Backend::from_url("mysql://root:hunter2@h/db")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("store URL is not usable"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn sqlite_files_are_created_when_missing() {
        assert_eq!(
            sqlite_url_creating_file("sqlite:///d/s.db", false),
            "sqlite:///d/s.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite:///d/s.db?cache=private", false),
            "sqlite:///d/s.db?cache=private&mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite:///d/s.db?mode=ro", false),
            "sqlite:///d/s.db?mode=ro"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite::memory:", true),
            "sqlite::memory:"
        );
    }

    #[test]
    fn only_the_writer_switches_to_wal() {
        assert!(sqlite_pragmas(true).contains("journal_mode = WAL"));
        assert!(!sqlite_pragmas(false).contains("journal_mode"));
        assert!(sqlite_pragmas(false).contains("foreign_keys = ON"));
        assert!(sqlite_pragmas(false).contains("busy_timeout = 5000"));
    }
}
