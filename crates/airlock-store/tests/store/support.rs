//! Real databases for the store tests: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database on the machine's server, dropped again when the test ends (even when it
//! panics).
//!
//! PostgreSQL is required: when it is not reachable the test fails with a message saying how to
//! provide it, it is never skipped.

use std::path::PathBuf;

use airlock_store::{Backend, OpenOptions, Store};
use sqlx::{AnyPool, Connection as _, Executor as _, PgConnection};
use tempfile::TempDir;

/// Environment variable overriding the PostgreSQL maintenance URL.
pub const PG_URL_ENV: &str = "AIRLOCK_TEST_PG_URL";
/// The machine's PostgreSQL, trust auth.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of a database the tests may create and drop databases from.
pub fn pg_maintenance_url() -> String {
    std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// `maintenance` with its database (and optionally its password) replaced.
pub fn pg_url_for(maintenance: &str, database: &str, password: Option<&str>) -> String {
    let mut url = url::Url::parse(maintenance)
        .unwrap_or_else(|err| panic!("{PG_URL_ENV} is not a url ({err}): {maintenance}"));
    url.set_path(&format!("/{database}"));
    if let Some(password) = password {
        url.set_password(Some(password))
            .expect("a postgres url can carry a password");
    }
    url.to_string()
}

/// One isolated database for one test.
pub enum TestDb {
    Sqlite {
        dir: TempDir,
        url: String,
    },
    Postgres {
        name: String,
        url: String,
        maintenance: String,
    },
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
                TestDb::Sqlite { dir, url }
            }
            Backend::Postgres => {
                let maintenance = pg_maintenance_url();
                let name = format!("airlock_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = connect_maintenance(&maintenance).await;
                conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
                    .await
                    .unwrap_or_else(|err| panic!("create test database {name}: {err}"));
                conn.close().await.ok();
                let url = pg_url_for(&maintenance, &name, None);
                TestDb::Postgres {
                    name,
                    url,
                    maintenance,
                }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            TestDb::Sqlite { .. } => Backend::Sqlite,
            TestDb::Postgres { .. } => Backend::Postgres,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }

    /// The SQLite file (panics for PostgreSQL).
    pub fn sqlite_path(&self) -> PathBuf {
        match self {
            TestDb::Sqlite { dir, .. } => dir.path().join("airlock.db"),
            TestDb::Postgres { .. } => panic!("not a sqlite test database"),
        }
    }

    /// Opens (creating and migrating) the store.
    pub async fn open(&self) -> Store {
        Store::open(self.url(), OpenOptions::create())
            .await
            .unwrap_or_else(|err| panic!("open store at {}: {err}", self.url()))
    }

    /// A connection pool that bypasses the store, for looking at or tampering with the
    /// database the way another program would.
    pub async fn raw_pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(self.url())
            .await
            .unwrap_or_else(|err| panic!("raw connection to {}: {err}", self.url()))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let TestDb::Postgres {
            name, maintenance, ..
        } = self
        else {
            return;
        };
        let (name, maintenance) = (name.clone(), maintenance.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a separate thread
        // with its own runtime can. WITH (FORCE) ends the store's pooled connections.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&maintenance)
                    .await
                    .map_err(|err| err.to_string())?;
                conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                    .await
                    .map_err(|err| err.to_string())?;
                conn.close().await.ok();
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("warning: could not drop test database: {err}"),
            Err(_) => eprintln!("warning: the thread dropping the test database panicked"),
        }
    }
}

async fn connect_maintenance(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|err| {
        panic!(
            "PostgreSQL is required for these tests and is not reachable at {}: {err}. \
             Start it (trust auth for user postgres on 127.0.0.1:5432) or set {PG_URL_ENV}.",
            airlock_store::redact_url(url)
        )
    })
}
