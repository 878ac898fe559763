//! Throwaway PostgreSQL databases on the local server, one per test, so that tests running
//! in parallel never see each other's rows.
//!
//! The server is the one at `postgres://postgres@127.0.0.1:5432/postgres` (trust auth), or
//! the admin URL in `SIGNET_TEST_POSTGRES_URL`. Nothing is started here: an unreachable
//! server is an error naming PostgreSQL, never a skipped test.

use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const ADMIN_URL_VAR: &str = "SIGNET_TEST_POSTGRES_URL";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A freshly created, uniquely named database, dropped (with any open connections) when
/// this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates `signet_test_<random>` on the local PostgreSQL server.
    pub async fn create() -> anyhow::Result<TestDatabase> {
        let admin_url = std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let name = format!("signet_test_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(&admin_url, &name)?;
        let mut admin = connect(&admin_url).await?;
        // The name is generated from hex digits, so quoting it is enough.
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("PostgreSQL refused to create test database {name}"))?;
        // Closing is a courtesy to the server; the database exists either way.
        let _ = admin.close().await;
        Ok(TestDatabase {
            name,
            url,
            admin_url,
        })
    }

    /// `postgres://.../signet_test_<random>`, for `Store::connect` and friends.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a tokio runtime, which must not be blocked on from within:
        // do the async work on a thread of its own with a runtime of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || drop_database(&admin_url, &name)).join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e:#}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start a runtime to drop the test database")?;
    runtime.block_on(async {
        let mut admin = connect(admin_url).await?;
        // FORCE ends the connections a test's pool may still hold.
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await
            .context("PostgreSQL refused to drop it")?;
        let _ = admin.close().await;
        Ok(())
    })
}

async fn connect(admin_url: &str) -> anyhow::Result<PgConnection> {
    // The URL is not quoted in errors: an override may carry a password.
    let unreachable = || {
        format!(
            "PostgreSQL is not reachable at the test admin URL ({ADMIN_URL_VAR}, default \
             {DEFAULT_ADMIN_URL}); start the local PostgreSQL server"
        )
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await {
        Ok(conn) => conn.with_context(unreachable),
        Err(_) => Err(anyhow::anyhow!(
            "{} (no answer within {}s)",
            unreachable(),
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// The admin URL with its database path replaced by `name`, query string kept.
fn with_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let Some(authority_end) = base
        .strip_prefix("postgres://")
        .or_else(|| base.strip_prefix("postgresql://"))
        .map(|rest| base.len() - rest.len() + rest.find('/').unwrap_or(rest.len()))
    else {
        bail!("{ADMIN_URL_VAR} must be a postgres:// URL");
    };
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_path_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1").ok(),
            Some("postgres://postgres@127.0.0.1:5432/t1".to_owned())
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "t2").ok(),
            Some("postgresql://u:p@h/t2?sslmode=disable".to_owned())
        );
        assert_eq!(
            with_database("postgres://h", "t3").ok(),
            Some("postgres://h/t3".to_owned())
        );
        assert!(with_database("mysql://h/db", "t").is_err());
    }

    #[tokio::test]
    async fn creates_a_usable_database_and_drops_it() {
        let db = match TestDatabase::create().await {
            Ok(db) => db,
            Err(e) => panic!("{e:#}"),
        };
        let name = db.name().to_owned();
        let mut conn = PgConnection::connect(db.url())
            .await
            .expect("connect to test db");
        conn.execute("CREATE TABLE t (x BIGINT)")
            .await
            .expect("usable");
        // Left open on purpose: the drop must end it.
        drop(db);
        let admin_url = std::env::var(ADMIN_URL_VAR).unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let mut admin = connect(&admin_url).await.expect("admin");
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("query");
        assert_eq!(left, 0, "database {name} still exists");
    }
}
