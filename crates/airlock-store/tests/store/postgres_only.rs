//! What only a PostgreSQL store has: a server that may be down, a database that may not exist,
//! and a URL with a password that must never appear in a message.

use airlock_store::{OpenOptions, Store, StoreError};

use crate::support::{pg_maintenance_url, pg_url_for};

const PASSWORD: &str = "s3cr3t";

/// The error as every surface could print it: message, chain and debug form.
fn every_rendering(err: &StoreError) -> String {
    let mut text = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!("\n{cause}\n{cause:?}"));
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn a_missing_postgres_database_is_reported_without_the_password() {
    let url = pg_url_for(&pg_maintenance_url(), "nosuchdb_xyz", Some(PASSWORD));
    let err = Store::open(&url, OpenOptions::existing())
        .await
        .expect_err("the database does not exist");

    assert!(matches!(err, StoreError::ConnectFailed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("could not open state store at postgres://"),
        "{message}"
    );
    assert!(message.contains(":***@"), "{message}");
    assert!(
        message.contains(r#"database "nosuchdb_xyz" does not exist"#),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(!every_rendering(&err).contains(PASSWORD), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_postgres_server_is_reported_with_its_cause() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/airlock");
    let err = Store::open(&url, OpenOptions::existing())
        .await
        .expect_err("nothing listens on port 1");

    assert!(matches!(err, StoreError::ConnectFailed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "could not open state store at postgres://postgres:***@127.0.0.1:1/airlock: connection refused"
        ),
        "{message}"
    );
    assert!(!every_rendering(&err).contains(PASSWORD), "{err:?}");
}

#[tokio::test]
async fn a_postgres_url_that_does_not_parse_is_reported_without_the_password() {
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:notaport/airlock");
    let err = Store::open(&url, OpenOptions::existing())
        .await
        .expect_err("the port is not a number");
    let message = err.to_string();
    assert!(message.contains("postgres://postgres:***@"), "{message}");
    assert!(!every_rendering(&err).contains(PASSWORD), "{err:?}");
}

#[tokio::test]
async fn an_unsupported_url_scheme_is_rejected_without_the_password() {
    let err = Store::open(
        &format!("mysql://root:{PASSWORD}@127.0.0.1/airlock"),
        OpenOptions::existing(),
    )
    .await
    .expect_err("mysql is not a store backend");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid state store url mysql://root:***@127.0.0.1/airlock: expected a url starting with sqlite:// or postgres://"
    );
}
