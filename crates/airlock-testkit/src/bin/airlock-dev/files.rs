//! The files `airlock-dev` writes: the airlock config, the admin password beside it, and the
//! ready file. Each is written to a temporary file in the same directory (mode 0600) and renamed
//! into place, so a reader never sees half a file and a re-run simply replaces them.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use airlock_testkit::AirflowServer;
use anyhow::Context as _;

/// The admin password's file name, next to the config (the config refers to it relatively).
pub const PASSWORD_FILE: &str = "airflow-admin.password";

/// The airlock instance name the config gives the server.
pub const INSTANCE_NAME: &str = "local";

/// Writes the config at `path` and the admin password next to it; returns the config's path.
pub fn write_config(path: &Path, server: &AirflowServer) -> anyhow::Result<PathBuf> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    write_atomically(
        &dir.join(PASSWORD_FILE),
        format!("{}\n", server.admin_password).as_bytes(),
    )?;
    write_atomically(path, config_text(server).as_bytes())?;
    Ok(path.to_owned())
}

/// Writes the ready file (the server's URL and a newline).
pub fn write_ready(path: &Path, base_url: &str) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    write_atomically(path, format!("{base_url}\n").as_bytes())
}

/// Removes `path`; a file that is not there is fine.
pub fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn config_text(server: &AirflowServer) -> String {
    format!(
        "# written by airlock-dev for a local {version}; it stops when airlock-dev does\n\
         [store]\n\
         url = \"sqlite://airlock.db\"\n\
         \n\
         [instances.{INSTANCE_NAME}]\n\
         url = \"{url}\"\n\
         labels = {{ env = \"dev\" }}\n\
         username = \"{user}\"\n\
         password = {{ file = \"{PASSWORD_FILE}\" }}\n",
        version = server.version,
        url = server.base_url,
        user = server.admin_user,
    )
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    // tempfile creates its files with mode 0600, which the rename keeps.
    let mut file = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    file.write_all(contents)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write {}", file.path().display()))?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
