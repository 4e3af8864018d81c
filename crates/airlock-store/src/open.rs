//! Opening a store: checks that come before the driver (file and directory exist), one
//! dedicated connection that sets SQLite up, refuses a newer schema and applies pending
//! migrations, then the pool the store uses from then on.
//!
//! The first connection is made directly, not through the pool, because the pool retries a
//! refused connection until its acquire timeout and then reports only "timed out"; a direct
//! connection reports the real cause (refused, unknown database, authentication). This module
//! does not create PostgreSQL databases or roles: the operator does.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use airlock_config::pg_url::PgUrl;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, ConnectOptions as _, Connection as _, Executor as _};

use crate::error::{is_sqlite_busy, readable_cause, readable_migrate_cause};
use crate::location::{parent_dir, parse_target, redact_url, scrub, url_secrets, Target};
use crate::migrations::{supported_schema_version, MIGRATIONS_TABLE, MIGRATOR};
use crate::{Backend, OpenOptions, Store, StoreError};

/// How long the first connection may take before the open is reported as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a query waits for a pooled connection (a PostgreSQL server that went away): a
/// request fails with a clear "unavailable" within this, never hangs.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of the lease pool (renewals are one statement every few seconds).
const LEASE_CONNECTIONS: u32 = 2;
/// PostgreSQL pool size: airlock issues few, short queries.
const POSTGRES_MAX_CONNECTIONS: u32 = 5;
/// SQLite pool size: readers run in parallel under WAL, writers take turns via busy_timeout.
const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// What every error mapping needs to know about the open store.
pub(crate) struct Context {
    pub(crate) backend: Backend,
    /// The file path or the redacted URL.
    pub(crate) location: String,
    /// Secrets from the URL, scrubbed from driver messages before they are shown.
    secrets: Vec<String>,
    busy_timeout: Duration,
}

impl Context {
    /// Maps a query error of operation `op`.
    pub(crate) fn query_failed(&self, op: &'static str, source: sqlx::Error) -> StoreError {
        if let Some(locked) = self.locked(&source) {
            return locked;
        }
        StoreError::QueryFailed {
            op,
            location: self.location.clone(),
            cause: scrub(&readable_cause(&source), &self.secrets),
            source,
        }
    }

    fn connect_failed(&self, source: sqlx::Error) -> StoreError {
        if let Some(locked) = self.locked(&source) {
            return locked;
        }
        StoreError::ConnectFailed {
            location: self.location.clone(),
            cause: scrub(&readable_cause(&source), &self.secrets),
            source,
        }
    }

    fn migrate_failed(&self, source: sqlx::migrate::MigrateError) -> StoreError {
        use sqlx::migrate::MigrateError;
        let supported = supported_schema_version();
        match &source {
            // The pre-check normally catches this first; a concurrent newer airlock may still
            // migrate in between.
            MigrateError::VersionMissing(found) if *found > supported => {
                return StoreError::NewerSchema {
                    location: self.location.clone(),
                    found: *found,
                    supported,
                };
            }
            MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
                if let Some(locked) = self.locked(inner) {
                    return locked;
                }
            }
            _ => {}
        }
        StoreError::MigrateFailed {
            location: self.location.clone(),
            cause: scrub(&readable_migrate_cause(&source), &self.secrets),
            source,
        }
    }

    fn locked(&self, err: &sqlx::Error) -> Option<StoreError> {
        (self.backend == Backend::Sqlite && is_sqlite_busy(err)).then(|| StoreError::StoreLocked {
            location: self.location.clone(),
            waited: self.busy_timeout,
        })
    }
}

/// Opens the store at `url`; see [`Store::open`].
pub(crate) async fn open(url: &str, opts: OpenOptions) -> Result<Store, StoreError> {
    let target = parse_target(url).map_err(|problem| StoreError::InvalidUrl {
        url: redact_url(url),
        reason: problem.0,
    })?;
    // Idempotent; the Any driver dispatches on the URL scheme to the drivers installed here.
    sqlx::any::install_default_drivers();

    let (ctx, connect_opts) = match target {
        Target::Sqlite { path } => sqlite_target(&path, opts).await?,
        Target::Postgres { url } => postgres_target(&url, opts).await?,
    };

    migrate(&ctx, &connect_opts, opts.busy_timeout).await?;

    let backend = ctx.backend;
    let busy_timeout = opts.busy_timeout;
    let pool_of = |size: u32, test_before_acquire: bool| {
        AnyPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(test_before_acquire)
            .after_connect(move |conn, _meta| configure_connection(conn, backend, busy_timeout))
            // Lazy: the first connection just proved the database is reachable and current.
            .connect_lazy_with(connect_opts.clone())
    };
    // The main pool hands out connections without a ping first: the ping is a round trip (on
    // SQLite a hand-off to the connection's thread) for every query and every batch. After a
    // PostgreSQL restart a dead connection fails the one query that finds it, and is dropped;
    // its caller answers 503 or retries, as for any store error. Leases keep the ping: a
    // renewal must not fail on a stale connection.
    let pool = pool_of(
        opts.max_connections.unwrap_or(match backend {
            Backend::Sqlite => SQLITE_MAX_CONNECTIONS,
            Backend::Postgres => POSTGRES_MAX_CONNECTIONS,
        }),
        false,
    );
    let lease_pool = pool_of(
        match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => LEASE_CONNECTIONS,
        },
        true,
    );

    let store = Store {
        pool,
        lease_pool,
        ctx: Arc::new(ctx),
        group: Arc::default(),
        tokens: Arc::default(),
    };
    // Migration 8 left Group keys to be folded here (see its comment).
    for (id, name) in store.rekey_scim_groups().await? {
        tracing::warn!(
            group_id = %id,
            display_name = %name.escape_debug(),
            "scim group has the same displayName as an older group (compared case-insensitively); \
             it is kept but its name is not unique: rename or delete it"
        );
    }
    let scrubbed = store.scrub_scim_passwords().await?;
    if scrubbed > 0 {
        tracing::info!(
            rows = scrubbed,
            "removed SCIM passwords an older airlock had stored"
        );
    }
    Ok(store)
}

/// Checks a PostgreSQL URL's TLS settings and the files it names (docs/adr/0007) and builds
/// the driver options from the checked URL, whose `sslmode` is always explicit.
async fn postgres_target(
    url: &str,
    opts: OpenOptions,
) -> Result<(Context, AnyConnectOptions), StoreError> {
    let location = redact_url(url);
    let checked = PgUrl::parse(url).map_err(|err| StoreError::RefusedPostgresUrl {
        url: location.clone(),
        reason: err.to_string(),
    })?;
    for (param, path) in checked.files() {
        if let Err(err) = tokio::fs::read(path).await {
            return Err(StoreError::TlsFileUnreadable {
                location,
                param,
                path: path.display().to_string(),
                cause: err.to_string(),
            });
        }
    }
    let mut secrets = url_secrets(url);
    // The checked URL may spell the password with other escapes; scrub those spellings too.
    secrets.extend(url_secrets(checked.driver_url()));
    secrets.sort();
    secrets.dedup();
    let ctx = Context {
        backend: Backend::Postgres,
        location,
        secrets,
        busy_timeout: opts.busy_timeout,
    };
    let connect_opts =
        AnyConnectOptions::from_str(checked.driver_url()).map_err(|err| ctx.connect_failed(err))?;
    Ok((ctx, connect_opts))
}

/// Checks the SQLite file and its directory and builds the driver options.
async fn sqlite_target(
    path: &Path,
    opts: OpenOptions,
) -> Result<(Context, AnyConnectOptions), StoreError> {
    // Absolute, so messages name the file unambiguously and the driver URL has no host part.
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let ctx = Context {
        backend: Backend::Sqlite,
        location: abs.display().to_string(),
        secrets: Vec::new(),
        busy_timeout: opts.busy_timeout,
    };

    let dir = parent_dir(&abs);
    if !tokio::fs::metadata(dir)
        .await
        .is_ok_and(|meta| meta.is_dir())
    {
        return Err(StoreError::StoreDirMissing {
            dir: dir.display().to_string(),
        });
    }
    let exists = tokio::fs::try_exists(&abs)
        .await
        .map_err(|err| ctx.connect_failed(sqlx::Error::Io(err)))?;
    if !exists && !opts.create_if_missing {
        return Err(StoreError::StoreMissing {
            location: ctx.location.clone(),
        });
    }

    // Built through SqliteConnectOptions so the file name is percent-encoded the way the
    // driver decodes it (spaces, `?`, `#`).
    let url = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&abs)
        .create_if_missing(opts.create_if_missing)
        .to_url_lossy();
    let connect_opts = AnyConnectOptions::from_url(&url).map_err(|err| ctx.connect_failed(err))?;
    Ok((ctx, connect_opts))
}

/// Connects once, refuses a newer schema, applies pending migrations and disconnects.
async fn migrate(
    ctx: &Context,
    connect_opts: &AnyConnectOptions,
    busy_timeout: Duration,
) -> Result<(), StoreError> {
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect_with(connect_opts))
        .await
        .map_err(|_elapsed| {
            ctx.connect_failed(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )))
        })?
        .map_err(|err| ctx.connect_failed(err))?;

    configure_connection(&mut conn, ctx.backend, busy_timeout)
        .await
        .map_err(|err| ctx.connect_failed(err))?;
    if ctx.backend == Backend::Sqlite {
        // WAL is a property of the file, so setting it once per open is enough. It lets readers
        // (e.g. `airlock report`) run while another process writes.
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(&mut conn)
            .await
            .map_err(|err| ctx.connect_failed(err))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network mounts) cannot do WAL; the store still works, with
            // readers and writers blocking each other.
            tracing::warn!(location = %ctx.location, journal_mode = %mode, "sqlite state store is not in wal mode");
        }
    }

    let supported = supported_schema_version();
    if let Some(found) = applied_schema_version(&mut conn, ctx.backend)
        .await
        .map_err(|err| ctx.query_failed("read schema version", err))?
    {
        if found > supported {
            return Err(StoreError::NewerSchema {
                location: ctx.location.clone(),
                found,
                supported,
            });
        }
    }

    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|err| ctx.migrate_failed(err))?;

    // A failed close leaves nothing behind that matters: the migrations are committed.
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, location = %ctx.location, "closing the migration connection failed");
    }
    Ok(())
}

/// The newest migration recorded in the database, `None` for a fresh database.
async fn applied_schema_version(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Option<i64>, sqlx::Error> {
    let table_exists_sql = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        // current_schema(): sqlx creates the table unqualified, i.e. in the first schema of
        // the search path.
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let tables: i64 = sqlx::query_scalar(table_exists_sql)
        .fetch_one(&mut *conn)
        .await?;
    if tables == 0 {
        return Ok(None);
    }
    sqlx::query_scalar(&format!("SELECT MAX(version) FROM {MIGRATIONS_TABLE}"))
        .fetch_one(&mut *conn)
        .await
}

/// A boxed, sendable future borrowing for `'a` (what the pool's `after_connect` takes).
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Per-connection settings; runs on every new pooled connection and on the migration one.
///
/// Returns a boxed future with the connection's lifetime spelled out: the pool's
/// `after_connect` needs a future that works for every borrow (`for<'c>`), which an `async fn`
/// calling sqlx's executor does not satisfy.
fn configure_connection(
    conn: &mut AnyConnection,
    backend: Backend,
    busy_timeout: Duration,
) -> BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        match backend {
            Backend::Sqlite => {
                // Without a busy timeout a second airlock process would fail at once instead of
                // waiting its turn for the write lock.
                let millis = busy_timeout.as_millis().min(i32::MAX as u128);
                conn.execute(format!("PRAGMA busy_timeout = {millis}").as_str())
                    .await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
            }
            Backend::Postgres => {}
        }
        Ok(())
    })
}
