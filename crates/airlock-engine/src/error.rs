//! Errors of engine runs: each wraps the failing component's typed error unchanged, so the
//! front-end can print it as one line and classify it.

/// A failed engine run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A call to Airflow failed.
    #[error(transparent)]
    Airflow(#[from] airlock_airflow::Error),
    /// The directory could not be read completely.
    #[error(transparent)]
    Directory(#[from] airlock_directory::DirectoryError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
    /// A just-in-time access action was refused or could not be stored.
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// A stored snapshot could not be read back.
    #[error("stored snapshot {id} of instance `{instance}` is unreadable: {source}")]
    CorruptSnapshot {
        /// Snapshot id.
        id: String,
        /// Instance.
        instance: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Stored observed access could not be read back.
    #[error("the access observed on instance `{instance}` from {from} is unreadable: {source}")]
    CorruptHistory {
        /// Instance.
        instance: String,
        /// When the interval begins (RFC 3339).
        from: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}
