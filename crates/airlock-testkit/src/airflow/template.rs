//! A cached, migrated and admin-seeded `airflow.db` per Airflow version.
//!
//! `airflow db migrate` and `airflow users create` take about 3.5 s each; copying a prepared
//! SQLite file takes milliseconds. The template lives in
//! `${AIRLOCK_CACHE}/templates/<venv>-<key>/` next to a file holding the admin password it was
//! seeded with (a throw-away test credential, generated once per template). The key hashes the
//! venv's install marker and [`TEMPLATE_REVISION`], so reinstalling a venv or changing how the
//! template is made produces a new template.
//!
//! A template is built in a temporary directory beside its final place and renamed into it, so
//! a reader never sees a half-built one; when two processes race, the loser's copy is discarded.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;

use super::{random_secret, run_airflow, server_env, AirflowVersion, ADMIN_USER};

/// Bump when the way a template is built changes, so old templates are not reused.
const TEMPLATE_REVISION: &str = "1";

const DB_FILE: &str = "airflow.db";
const PASSWORD_FILE: &str = "admin-password";

/// Serialises building within this process (a shared and a private server starting together).
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A prepared database and the admin password it contains.
pub(crate) struct Template {
    pub(crate) db: PathBuf,
    pub(crate) admin_password: String,
}

/// Returns the template for `version`, building it first if needed.
pub(crate) fn ensure(
    version: AirflowVersion,
    venv: &Path,
    cache: &Path,
) -> anyhow::Result<Template> {
    let templates = cache.join("templates");
    let marker = fs::read_to_string(venv.join(".airlock-installed")).unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    (TEMPLATE_REVISION, marker.trim()).hash(&mut hasher);
    let dir = templates.join(format!("{}-{:016x}", version.venv_name(), hasher.finish()));

    if let Some(template) = read(&dir) {
        return Ok(template);
    }
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(template) = read(&dir) {
        return Ok(template);
    }
    build(version, venv, &templates, &dir).with_context(|| {
        format!(
            "cannot build the airflow {} database template",
            version.airflow_version()
        )
    })?;
    read(&dir)
        .with_context(|| format!("template {} is incomplete after building it", dir.display()))
}

fn read(dir: &Path) -> Option<Template> {
    let db = dir.join(DB_FILE);
    let admin_password = fs::read_to_string(dir.join(PASSWORD_FILE)).ok()?;
    let admin_password = admin_password.trim().to_owned();
    (db.is_file() && !admin_password.is_empty()).then_some(Template { db, admin_password })
}

fn build(version: AirflowVersion, venv: &Path, templates: &Path, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(templates)
        .with_context(|| format!("cannot create {}", templates.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(templates)
        .with_context(|| {
            format!(
                "cannot create a staging directory in {}",
                templates.display()
            )
        })?;
    // The CLI writes airflow.cfg, logs and so on into AIRFLOW_HOME: keep those out of the
    // template by giving it a home of its own.
    let home = tempfile::Builder::new()
        .prefix("airlock-airflow-template-")
        .tempdir()
        .context("cannot create a temporary AIRFLOW_HOME")?;
    let db = staging.path().join(DB_FILE);
    let env = server_env(version, home.path(), &db);
    let password = random_secret(24);
    seed_database(venv, &env, &password)?;
    fs::write(staging.path().join(PASSWORD_FILE), &password)
        .context("cannot write the template admin password")?;

    let staged = staging.keep();
    if let Err(err) = fs::rename(&staged, dir) {
        let _ = fs::remove_dir_all(&staged);
        // Another process finished first: its template is as good as ours.
        if read(dir).is_none() {
            return Err(err)
                .with_context(|| format!("cannot move the template into {}", dir.display()));
        }
    }
    Ok(())
}

/// Migrates the database named in `env` and creates the admin user with `password`.
pub(crate) fn seed_database(
    venv: &Path,
    env: &[(String, String)],
    password: &str,
) -> anyhow::Result<()> {
    run_airflow(venv, env, &["db", "migrate"])?;
    run_airflow(
        venv,
        env,
        &[
            "users",
            "create",
            "--username",
            ADMIN_USER,
            "--password",
            password,
            "--firstname",
            "Air",
            "--lastname",
            "Lock",
            "--email",
            "admin@example.com",
            "--role",
            "Admin",
        ],
    )?;
    Ok(())
}
