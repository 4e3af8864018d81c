//! The one error type of the store, and the classification of driver errors into it.
//!
//! Every message is a single lowercase line that stands on its own: it names the store (a file
//! path or a redacted URL), says what failed and includes a readable cause. The driver's error
//! is kept as the `source` for callers that inspect it; a front-end that prints only
//! `to_string()` loses nothing. No message ever contains a database password.

use std::time::Duration;

/// Everything that can go wrong opening or using the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL is not one this build understands.
    #[error("invalid state store url {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password redacted.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A PostgreSQL URL airlock refuses: a TLS setting that could fall back to plaintext or
    /// would not be checked, an unknown parameter (see `airlock_config::pg_url`).
    #[error("invalid state store url {url}: {reason}")]
    RefusedPostgresUrl {
        /// The URL with any password redacted.
        url: String,
        /// Why (never a parameter value that could be a secret).
        reason: String,
    },

    /// A file a PostgreSQL URL names (`sslrootcert`, `sslcert`, `sslkey`) cannot be read.
    #[error("could not open state store at {location}: {param} {path} cannot be read: {cause}")]
    TlsFileUnreadable {
        /// The redacted URL.
        location: String,
        /// The URL parameter naming the file.
        param: &'static str,
        /// The file.
        path: String,
        /// Why it cannot be read.
        cause: String,
    },

    /// The SQLite file does not exist and the caller did not allow creating it.
    #[error(
        "state store not found at {location} (run a command that writes, e.g. `airlock inventory`, to create it)"
    )]
    StoreMissing {
        /// The SQLite file path.
        location: String,
    },

    /// The directory that should hold the SQLite file does not exist.
    #[error("state store directory {dir} does not exist (create it, or point the store at an existing directory)")]
    StoreDirMissing {
        /// The missing directory.
        dir: String,
    },

    /// Another connection (in practice another airlock process) held the SQLite write lock for
    /// longer than the busy timeout.
    #[error("state store at {location} is locked by another airlock process (waited {waited:?}); wait for it to finish and retry")]
    StoreLocked {
        /// The SQLite file path.
        location: String,
        /// How long this process waited for the lock.
        waited: Duration,
    },

    /// The database was migrated by a newer airlock than this one.
    #[error("state store at {location} has schema version {found} but this airlock supports up to {supported}; upgrade airlock")]
    NewerSchema {
        /// The file path or redacted URL.
        location: String,
        /// The newest schema version recorded in the database.
        found: i64,
        /// The newest schema version this build embeds.
        supported: i64,
    },

    /// The database could not be reached or opened (server down, database missing, auth
    /// refused, file unreadable).
    #[error("could not open state store at {location}: {cause}")]
    ConnectFailed {
        /// The file path or redacted URL.
        location: String,
        /// A readable, password-free description of the driver error.
        cause: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// Applying the embedded migrations failed for a reason other than a newer schema or a lock.
    #[error("could not migrate state store at {location}: {cause}")]
    MigrateFailed {
        /// The file path or redacted URL.
        location: String,
        /// A readable, password-free description of the failure.
        cause: String,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A query of the named operation failed.
    #[error("could not {op} in state store at {location}: {cause}")]
    QueryFailed {
        /// The operation, as a verb phrase (`"begin snapshot"`).
        op: &'static str,
        /// The file path or redacted URL.
        location: String,
        /// A readable, password-free description of the driver error.
        cause: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// `complete_snapshot` or `fail_snapshot` was given a snapshot that is not running (an
    /// unknown id, or one that already finished).
    #[error("could not {op} {id}: no running snapshot has that id (unknown, or already finished)")]
    SnapshotNotRunning {
        /// The operation, as a verb phrase (`"complete snapshot"`).
        op: &'static str,
        /// The snapshot id.
        id: String,
    },

    /// A row held a value the schema's constraints should have made impossible.
    #[error("could not {op} in state store at {location}: column {column} holds unexpected value {value:?}")]
    UnexpectedValue {
        /// The operation, as a verb phrase.
        op: &'static str,
        /// The file path or redacted URL.
        location: String,
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
    },

    /// The audit log's head record is gone, so no event can be appended after a known end.
    #[error("could not {op} in state store at {location}: the audit log's head record is missing (the log was tampered with; run `airlock audit verify`)")]
    AuditHeadMissing {
        /// The operation, as a verb phrase (`"append to the audit log"`).
        op: &'static str,
        /// The file path or redacted URL.
        location: String,
    },

    /// A stored audit event is not an event airlock can read (its JSON was damaged).
    #[error("could not read audit event {seq} in state store at {location}: {cause} (run `airlock audit verify`)")]
    AuditEventUnreadable {
        /// The event's `seq` column.
        seq: i64,
        /// The file path or redacted URL.
        location: String,
        /// Why it cannot be read.
        cause: String,
    },
    /// A SCIM resource's unique attribute (a User's `userName`, compared case-insensitively, or
    /// a Group's `displayName`) is already taken by another resource of the same type.
    #[error("a SCIM {resource_type} with that {attribute} already exists")]
    ScimConflict {
        /// `User` or `Group`.
        resource_type: String,
        /// `userName` or `displayName`.
        attribute: &'static str,
    },

    /// An idempotency key was used again for a different request.
    #[error("idempotency key {key:?} was already used for a different request; use a new key for a new request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },

    /// No SCIM resource of that type has that id.
    #[error("no SCIM {resource_type} has id {id}")]
    ScimNotFound {
        /// `User` or `Group`.
        resource_type: String,
        /// The id asked for.
        id: String,
    },

    /// A conditional SCIM write expected another version than the stored one (`If-Match`, or a
    /// concurrent writer got there first).
    #[error("SCIM {resource_type} {id} is at version {found}, not the expected {expected}")]
    ScimPreconditionFailed {
        /// `User` or `Group`.
        resource_type: String,
        /// The resource id.
        id: String,
        /// The version the caller expected.
        expected: i64,
        /// The version stored.
        found: i64,
    },

    /// A SCIM client already has an active token.
    #[error("SCIM client {client} already has an active token (rotate or revoke it instead)")]
    ScimTokenExists {
        /// The client name.
        client: String,
    },

    /// An API token with that name is active.
    #[error(
        "API token {name} exists and is not revoked (revoke it first, or choose another name)"
    )]
    ApiTokenExists {
        /// The token's name.
        name: String,
    },

    /// No active API token has that name.
    #[error("no active API token is named {name} (see `airlock api token list`)")]
    ApiTokenMissing {
        /// The token's name.
        name: String,
    },

    /// A SCIM client has no active token.
    #[error(
        "SCIM client {client} has no active token (create one with `airlock scim token create`)"
    )]
    ScimTokenMissing {
        /// The client name.
        client: String,
    },

    /// A stored SCIM token's group allowance is not a JSON list of strings.
    #[error("could not read the group allowance of SCIM client {client} in state store at {location}: it is not a JSON list of strings")]
    ScimTokenUnreadable {
        /// The client name.
        client: String,
        /// The file path or redacted URL.
        location: String,
    },

    /// A stored SCIM resource is not valid JSON.
    #[error("could not read SCIM {resource_type} {id} in state store at {location}: stored resource is not valid JSON")]
    ScimResourceUnreadable {
        /// `User` or `Group`.
        resource_type: String,
        /// The resource id.
        id: String,
        /// The file path or redacted URL.
        location: String,
    },

    /// A write-ahead intent was refused: the writer no longer holds the lease it writes under
    /// (it expired, or another process took it over).
    #[error("lease {lease} (epoch {epoch}) is no longer held by this process: another process took it over or it expired; stopping before the next write")]
    LeaseLost {
        /// Lease name.
        lease: String,
        /// The epoch the writer held.
        epoch: i64,
    },
}

impl StoreError {
    /// Whether the store could not be reached (refused, reset, timed out, pool exhausted),
    /// as opposed to a query it answered with an error: a caller may retry later, and an
    /// HTTP surface answers 503 rather than 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::QueryFailed { source, .. } | StoreError::ConnectFailed { source, .. } => {
                matches!(
                    source,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                ) || matches!(source, sqlx::Error::Database(db) if db.code().is_some_and(|c| {
                    // PostgreSQL: connection exceptions, shutting down, too many connections.
                    c.starts_with("08") || c.starts_with("57P") || c == "53300"
                }))
            }
            StoreError::StoreLocked { .. } => true,
            _ => false,
        }
    }
}

/// True when SQLite gave up waiting for a lock (`SQLITE_BUSY`, or `SQLITE_LOCKED` for a
/// conflict inside this process), whatever the extended code.
pub(crate) fn is_sqlite_busy(err: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    let sqlx::Error::Database(db_err) = err else {
        return false;
    };
    // Downcast rather than reading `code()` alone: a PostgreSQL SQLSTATE such as "55006" is
    // also numeric and must never be mistaken for an SQLite result code.
    let Some(sqlite_err) = db_err.try_downcast_ref::<sqlx::sqlite::SqliteError>() else {
        return false;
    };
    use sqlx::error::DatabaseError as _;
    sqlite_err
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        // Extended result codes carry the primary code in their low byte.
        .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

/// A one-line, lowercase description of a driver error, without the driver's boilerplate
/// prefixes ("error returned from database: ").
pub(crate) fn readable_cause(err: &sqlx::Error) -> String {
    let text = match err {
        sqlx::Error::Database(db_err) => db_err.message().to_owned(),
        // The driver reports a failed TLS handshake as I/O carrying rustls's error.
        sqlx::Error::Io(io_err) => match io_err.get_ref().and_then(|e| e.downcast_ref()) {
            Some(tls_err) => readable_tls(tls_err),
            None => io_err.to_string(),
        },
        sqlx::Error::Tls(tls_err) => match tls_err.downcast_ref() {
            Some(rustls_err) => readable_tls(rustls_err),
            None => format!("tls: {tls_err}"),
        },
        sqlx::Error::Configuration(cfg_err) => format!("invalid configuration: {cfg_err}"),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_owned(),
        other => other.to_string(),
    };
    one_lowercase_line(&text)
}

/// A TLS handshake failure, saying which setting to look at for the common ones.
fn readable_tls(err: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    match err {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => "tls: the server's certificate \
            is not signed by a CA that sslrootcert names (unknown issuer)"
            .to_owned(),
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => "tls: the server's certificate is not valid for the host in the url (host name \
            mismatch; connect by a name or address the certificate lists)"
            .to_owned(),
        other => format!("tls: {other}"),
    }
}

/// A one-line, lowercase description of a migrator error.
pub(crate) fn readable_migrate_cause(err: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match err {
        MigrateError::Execute(inner) => readable_cause(inner),
        MigrateError::ExecuteMigration(inner, version) => {
            format!("migration {version} failed: {}", readable_cause(inner))
        }
        other => one_lowercase_line(&other.to_string()),
    }
}

/// Joins lines and lowercases a leading capital ("Connection refused" -> "connection refused")
/// but leaves acronyms ("TLS") alone.
fn one_lowercase_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut chars = joined.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(joined.chars().skip(1)).collect()
        }
        _ => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_one_lowercase_line() {
        assert_eq!(
            one_lowercase_line("Connection refused (os error 111)"),
            "connection refused (os error 111)"
        );
        assert_eq!(
            one_lowercase_line("TLS handshake\nfailed"),
            "TLS handshake failed"
        );
        assert_eq!(one_lowercase_line(""), "");
    }

    #[test]
    fn io_errors_are_not_mistaken_for_sqlite_busy() {
        let err = sqlx::Error::Io(std::io::Error::other("busy"));
        assert!(!is_sqlite_busy(&err));
        assert!(!is_sqlite_busy(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn messages_are_single_lowercase_lines() {
        let err = StoreError::NewerSchema {
            location: "/x/airlock.db".to_owned(),
            found: 7,
            supported: 3,
        };
        assert_eq!(
            err.to_string(),
            "state store at /x/airlock.db has schema version 7 but this airlock supports up to 3; upgrade airlock"
        );
        let err = StoreError::StoreMissing {
            location: "/x/airlock.db".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "state store not found at /x/airlock.db (run a command that writes, e.g. `airlock inventory`, to create it)"
        );
    }
}
