//! What only an SQLite store has: a file that may be missing, a directory that may be missing,
//! WAL mode, and a write lock another process can hold.

use std::time::Duration;

use airlock_store::{Backend, OpenOptions, Store, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Executor as _, SqlitePool};

use crate::support::TestDb;

/// A short busy timeout, so lock tests fail over quickly.
const SHORT_WAIT: Duration = Duration::from_millis(200);

fn short_wait() -> OpenOptions {
    OpenOptions {
        create_if_missing: false,
        busy_timeout: SHORT_WAIT,
        max_connections: None,
    }
}

/// A one-connection pool on `db`'s file, standing in for another airlock process.
async fn other_process(db: &TestDb) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(db.sqlite_path()))
        .await
        .expect("second connection to the sqlite file")
}

#[tokio::test]
async fn opening_a_missing_sqlite_file_without_create_reports_store_missing() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("airlock.db");
    let err = Store::open(
        &format!("sqlite://{}", path.display()),
        OpenOptions::existing(),
    )
    .await
    .expect_err("a missing file must not be opened");

    assert!(matches!(err, StoreError::StoreMissing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "state store not found at {} (run a command that writes, e.g. `airlock inventory`, to create it)",
            path.display()
        )
    );
    assert!(!path.exists(), "a read-only open must not create the file");
}

#[tokio::test]
async fn opening_with_create_makes_the_sqlite_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("airlock.db");
    let store = Store::open(
        &format!("sqlite://{}", path.display()),
        OpenOptions::create(),
    )
    .await
    .expect("create the store");
    assert_eq!(store.backend(), Backend::Sqlite);
    assert_eq!(store.location(), path.display().to_string());
    assert!(path.is_file());
}

#[tokio::test]
async fn opening_in_a_missing_directory_names_the_directory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("no-such-dir");
    let url = format!("sqlite://{}", missing.join("airlock.db").display());
    for opts in [OpenOptions::create(), OpenOptions::existing()] {
        let err = Store::open(&url, opts)
            .await
            .expect_err("a missing directory must be reported");
        assert!(matches!(err, StoreError::StoreDirMissing { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "state store directory {} does not exist",
                missing.display()
            )),
            "{message}"
        );
    }
    assert!(!missing.exists());
}

#[tokio::test]
async fn a_store_path_with_spaces_opens() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spaced = dir.path().join("state dir");
    std::fs::create_dir(&spaced).expect("create directory with a space");
    let path = spaced.join("air lock.db");
    let store = Store::open(
        &format!("sqlite://{}", path.display()),
        OpenOptions::create(),
    )
    .await
    .expect("open a path with spaces");
    store.begin_snapshot("prod", 1).await.expect("write");
    assert!(path.is_file(), "the file is created under its decoded name");
}

#[tokio::test]
async fn a_sqlite_store_is_created_in_wal_mode() {
    let db = TestDb::new(Backend::Sqlite).await;
    let _store = db.open().await;
    let other = other_process(&db).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&other)
        .await
        .expect("read journal mode");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_write_while_another_process_holds_the_write_lock_reports_store_locked() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.open().await.close().await;
    let store = Store::open(db.url(), short_wait())
        .await
        .expect("open the store");

    let other = other_process(&db).await;
    let mut holder = other.acquire().await.expect("other connection");
    holder
        .execute("BEGIN IMMEDIATE")
        .await
        .expect("take the write lock");

    let err = store
        .begin_snapshot("prod", 1_000)
        .await
        .expect_err("the write lock is held elsewhere");
    match &err {
        StoreError::StoreLocked { location, waited } => {
            assert_eq!(location, &db.sqlite_path().display().to_string());
            assert_eq!(*waited, SHORT_WAIT);
        }
        other => panic!("expected StoreLocked, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("is locked by another airlock process"),
        "{err}"
    );

    // WAL: readers are not blocked by the writer.
    store
        .latest_complete_snapshots("prod", 1)
        .await
        .expect("reads proceed while another process writes");

    holder.execute("ROLLBACK").await.expect("release the lock");
    store
        .begin_snapshot("prod", 1_000)
        .await
        .expect("writes succeed once the lock is released");
}

#[tokio::test]
async fn opening_a_store_another_process_holds_exclusively_reports_store_locked() {
    let db = TestDb::new(Backend::Sqlite).await;
    db.open().await.close().await;

    let other = other_process(&db).await;
    let mut holder = other.acquire().await.expect("other connection");
    // Exclusive locking mode keeps even readers out until this connection closes.
    holder
        .execute("PRAGMA locking_mode = EXCLUSIVE")
        .await
        .expect("exclusive locking mode");
    holder
        .execute("BEGIN EXCLUSIVE")
        .await
        .expect("take the exclusive lock");

    let err = Store::open(db.url(), short_wait())
        .await
        .expect_err("the file is held exclusively");
    assert!(matches!(err, StoreError::StoreLocked { .. }), "{err:?}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_reported_as_an_open_failure() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("airlock.db");
    std::fs::write(
        &path,
        "this is not sqlite, just some text that is long enough ".repeat(20),
    )
    .expect("write a bogus file");
    let err = Store::open(
        &format!("sqlite://{}", path.display()),
        OpenOptions::existing(),
    )
    .await
    .expect_err("a text file is not a store");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "could not open state store at {}: ",
            path.display()
        )),
        "{message}"
    );
}
