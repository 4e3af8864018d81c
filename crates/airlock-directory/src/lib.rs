//! Directory sources: each reads a *complete* snapshot of people and their group memberships
//! ([`airlock_core::directory::DirectorySnapshot`]) from one kind of directory.
//!
//! - [`file`]: a YAML or CSV file, for small teams, demos and tests.
//! - [`jumpcloud`]: JumpCloud's REST API (v1 system users, v2 user groups and members).
//! - [`ldap`]: LDAP / LDAPS / StartTLS: OpenLDAP, JumpCloud LDAP-as-a-Service, Active Directory.
//! - [`scim`]: the Users and Groups identity providers pushed to airlock's SCIM endpoint.
//!
//! A source either returns everything or fails: paging, timeouts and retries are handled
//! inside, and any incomplete read is an error, because the engine treats a person missing from
//! a snapshot as a leaver. This crate does not decide what a person should get in Airflow.

pub mod file;
pub mod jumpcloud;
pub mod ldap;
pub mod scim;

use airlock_core::directory::DirectorySnapshot;

/// A failed directory read. Every variant names the source and what failed; none carries a
/// credential.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The file source failed.
    #[error(transparent)]
    File(#[from] file::FileError),
    /// The JumpCloud source failed.
    #[error(transparent)]
    JumpCloud(#[from] jumpcloud::JumpCloudError),
    /// The LDAP source failed.
    #[error(transparent)]
    Ldap(#[from] ldap::LdapError),
    /// The SCIM source failed.
    #[error(transparent)]
    Scim(#[from] scim::ScimSourceError),
}

/// A configured directory, ready to read.
#[derive(Debug)]
pub enum Source {
    /// A YAML or CSV file.
    File(file::FileSource),
    /// JumpCloud's REST API.
    JumpCloud(jumpcloud::JumpCloudSource),
    /// An LDAP directory (OpenLDAP, JumpCloud LDAP, Active Directory).
    Ldap(ldap::LdapSource),
    /// The SCIM Users and Groups in the state store.
    Scim(scim::ScimSource),
}

impl Source {
    /// A short description for messages (`file /etc/airlock/people.yaml`).
    pub fn describe(&self) -> String {
        match self {
            Source::File(f) => f.describe(),
            Source::JumpCloud(j) => j.describe(),
            Source::Ldap(l) => l.describe(),
            Source::Scim(s) => s.describe(),
        }
    }

    /// Reads a complete snapshot.
    pub async fn read(&self) -> Result<DirectorySnapshot, DirectoryError> {
        match self {
            Source::File(f) => Ok(f.read().await?),
            Source::JumpCloud(j) => Ok(j.read().await?),
            Source::Ldap(l) => Ok(l.read().await?),
            Source::Scim(s) => Ok(s.read().await?),
        }
    }
}
