//! Throw-away databases on the machine's PostgreSQL.
//!
//! [`fresh_pg_database`] connects to the admin URL ([`pg_admin_url`]: `$AIRLOCK_TEST_PG_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`), creates `airlock_test_<uuid>` and
//! returns a [`PgTestDb`] whose drop removes it again (`DROP DATABASE … WITH (FORCE)`, so open
//! pools do not block it). An unreachable server is an error that says how to fix it; nothing is
//! skipped.
//!
//! What it does not do: start PostgreSQL (the machine's own server is used) or run migrations.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection};

/// Environment variable with the admin connection URL for tests.
pub const PG_URL_ENV: &str = "AIRLOCK_TEST_PG_URL";

/// The admin URL used when [`PG_URL_ENV`] is not set.
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long connecting to the admin database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin connection URL: `$AIRLOCK_TEST_PG_URL`, else [`DEFAULT_PG_ADMIN_URL`].
pub fn pg_admin_url() -> String {
    std::env::var(PG_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_PG_ADMIN_URL.to_owned())
}

/// A database that exists until this value is dropped.
#[derive(Debug)]
pub struct PgTestDb {
    url: String,
    name: String,
    admin_url: String,
}

impl PgTestDb {
    /// The connection URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name (`airlock_test_<uuid>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Creates a uniquely named database and returns it; it is dropped with the returned value.
pub async fn fresh_pg_database() -> anyhow::Result<PgTestDb> {
    let admin_url = pg_admin_url();
    let name = format!("airlock_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = connect_admin(&admin_url).await?;
    // The name is ours (a fixed prefix and hex digits), so quoting it is enough.
    sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut admin)
        .await
        .with_context(|| format!("cannot create test database {name}"))?;
    let _ = admin.close().await;

    let mut url =
        url::Url::parse(&admin_url).with_context(|| format!("{PG_URL_ENV} is not a valid URL"))?;
    url.set_path(&format!("/{name}"));
    Ok(PgTestDb {
        url: url.to_string(),
        name,
        admin_url,
    })
}

async fn connect_admin(admin_url: &str) -> anyhow::Result<PgConnection> {
    let fix = format!(
        "is PostgreSQL running and reachable? set {PG_URL_ENV} to an admin URL that may create \
         databases (default {DEFAULT_PG_ADMIN_URL})"
    );
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await;
    match connected {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(anyhow::Error::new(err).context(format!(
            "cannot connect to the test PostgreSQL admin database: {fix}"
        ))),
        Err(_) => Err(anyhow::anyhow!(
            "connecting to the test PostgreSQL admin database timed out after {} s: {fix}",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a tokio runtime (a #[tokio::test]), where blocking on a nested
        // runtime panics: do the async work on a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot build a runtime to drop the test database")?;
            runtime.block_on(async {
                let mut admin = connect_admin(&admin_url).await?;
                sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                    .execute(&mut admin)
                    .await
                    .context("DROP DATABASE failed")?;
                let _ = admin.close().await;
                Ok(())
            })
        })
        .join();
        // Best effort: a leftover database is harmless and uniquely named.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!(
                "airlock-testkit: could not drop test database {}: {err:#}",
                self.name
            ),
            Err(_) => eprintln!(
                "airlock-testkit: dropping test database {} panicked",
                self.name
            ),
        }
    }
}
