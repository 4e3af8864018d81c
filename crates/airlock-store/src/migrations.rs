//! The versioned schema: one `migrations/` directory, embedded at compile time, applied
//! unchanged to SQLite and PostgreSQL.
//!
//! Migrations are forward-only (no `.down.sql`): a store is upgraded by a newer airlock and
//! refused by an older one (see [`crate::StoreError::NewerSchema`]). They use a portable
//! subset of SQL (TEXT and BIGINT columns, no booleans, blobs, auto-increment or
//! database-specific time types); the unit test below keeps it that way, and the shared
//! integration suite proves the result on both databases.

use sqlx::migrate::Migrator;

/// The embedded migrations, in version order.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!();

/// The table sqlx records applied migrations in.
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The newest schema version this build can create and read.
pub fn supported_schema_version() -> i64 {
    MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words that either database rejects or reads differently from the other. Column types
    /// are TEXT or BIGINT only; booleans are BIGINT 0/1; ids come from the application.
    const NOT_PORTABLE: &[&str] = &[
        "AUTOINCREMENT",
        "BIGSERIAL",
        "BLOB",
        "BOOL",
        "BOOLEAN",
        "BYTEA",
        "CHAR",
        "DATE",
        "DATETIME",
        "DECIMAL",
        "DOUBLE",
        "FLOAT",
        "INT",
        "INTEGER",
        "JSON",
        "JSONB",
        "NUMERIC",
        "REAL",
        "ROWID",
        "SERIAL",
        "SMALLINT",
        "TIMESTAMP",
        "TIMESTAMPTZ",
        "UUID",
        "VARCHAR",
        // Time and identity functions differ between the two.
        "NOW",
        "CURRENT_TIMESTAMP",
        "STRFTIME",
        "GEN_RANDOM_UUID",
        // Syntax only one of them has.
        "PRAGMA",
        "RETURNING",
        "ILIKE",
        "SEQUENCE",
        "TRUE",
        "FALSE",
        "EXTENSION",
    ];

    /// Uppercased identifier-like words of the SQL, with `--` comments removed.
    fn words(sql: &str) -> Vec<String> {
        sql.lines()
            .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
            .flat_map(|code| code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_uppercase)
            .collect()
    }

    #[test]
    fn migrations_use_only_sql_that_both_databases_read_alike() {
        assert!(MIGRATOR.iter().next().is_some(), "no migrations embedded");
        for migration in MIGRATOR.iter() {
            for word in words(&migration.sql) {
                assert!(
                    !NOT_PORTABLE.contains(&word.as_str()),
                    "migration {} ({}) uses non-portable `{word}`",
                    migration.version,
                    migration.description
                );
            }
            // Portable string literals are single-quoted; double quotes and `?` placeholders
            // mean different things to the two databases.
            let code: String = migration
                .sql
                .lines()
                .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
                .collect();
            assert!(
                !code.contains('"') && !code.contains('?') && !code.contains('`'),
                "migration {} quotes identifiers or uses placeholders",
                migration.version
            );
        }
    }

    #[test]
    fn migrations_are_forward_only_and_numbered_without_gaps() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, expected);
        assert!(MIGRATOR
            .iter()
            .all(|m| m.migration_type == sqlx::migrate::MigrationType::Simple));
        assert_eq!(supported_schema_version(), versions.len() as i64);
    }

    #[test]
    fn the_portability_check_catches_a_sqlite_only_column() {
        let words = words("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT) -- BOOLEAN");
        assert!(words.contains(&"AUTOINCREMENT".to_owned()));
        assert!(
            !words.contains(&"BOOLEAN".to_owned()),
            "comments are ignored"
        );
    }
}
