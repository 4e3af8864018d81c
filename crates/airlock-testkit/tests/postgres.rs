//! Throw-away databases on the machine's PostgreSQL.

use airlock_testkit::postgres::{fresh_pg_database, pg_admin_url};
use sqlx::{Connection as _, PgConnection, Row as _};

async fn database_exists(name: &str) -> bool {
    let mut admin = PgConnection::connect(&pg_admin_url())
        .await
        .expect("admin connection");
    let row = sqlx::query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    row.get::<i64, _>("n") == 1
}

#[tokio::test]
async fn a_fresh_database_is_usable_and_gone_after_drop() {
    let db = fresh_pg_database().await.expect("fresh database");
    assert!(db.name().starts_with("airlock_test_"));
    assert!(db.url().ends_with(&format!("/{}", db.name())));

    // An open connection must not keep the drop from removing the database.
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(current, db.name());
    sqlx::query("CREATE TABLE t (id int)")
        .execute(&mut conn)
        .await
        .expect("create table");

    let name = db.name().to_owned();
    assert!(database_exists(&name).await);
    drop(db);
    assert!(!database_exists(&name).await, "{name} still exists");
    drop(conn);
}

#[tokio::test]
async fn two_fresh_databases_are_distinct() {
    let a = fresh_pg_database().await.expect("fresh database");
    let b = fresh_pg_database().await.expect("fresh database");
    assert_ne!(a.name(), b.name());
}
