//! The file directory: people and groups in a YAML or CSV file, for small teams, demos and
//! tests. The whole file is validated before anything is returned; an error names the file and
//! the entry.
//!
//! YAML:
//! ```yaml
//! groups: [data-engineers, analytics, contractors]   # optional: groups with no members yet
//! people:
//!   - id: "00u1"                 # stable id (defaults to username)
//!     username: ada
//!     email: ada@example.com
//!     first_name: Ada
//!     last_name: Lovelace
//!     status: active             # active (default) | suspended | staged
//!     groups: [data-engineers]
//! ```
//! CSV: a header `id,username,email,first_name,last_name,status,groups` with groups separated
//! by `;`.

use airlock_core::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A file directory failure.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("directory file {}: cannot read: {source}", path.display())]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML/CSV of the expected shape.
    #[error("directory file {}: {message}", path.display())]
    Invalid {
        /// File.
        path: PathBuf,
        /// What and where.
        message: String,
    },
}

/// A directory kept in a file.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    people: Vec<RawPerson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    #[serde(default)]
    id: Option<String>,
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    groups: GroupsField,
}

/// `groups` as a YAML list or a `;`-separated CSV cell.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum GroupsField {
    #[default]
    None,
    List(Vec<String>),
    Joined(String),
}

impl GroupsField {
    fn names(self) -> Vec<String> {
        match self {
            GroupsField::None => Vec::new(),
            GroupsField::List(v) => v,
            GroupsField::Joined(s) => s
                .split(';')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

impl FileSource {
    /// A source reading `path` (`.csv` is read as CSV, anything else as YAML).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `file /path`.
    pub fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    /// Reads and validates the whole file.
    pub async fn read(&self) -> Result<DirectorySnapshot, FileError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| FileError::Read {
                path: self.path.clone(),
                source,
            })?;
        parse(&self.path, &text)
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> FileError {
    FileError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Parses a directory file's text; `path` decides the format and names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<DirectorySnapshot, FileError> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let raw = if is_csv {
        let mut people = Vec::new();
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        for (i, row) in reader.deserialize::<RawPerson>().enumerate() {
            // Line numbers count the header as line 1.
            people.push(row.map_err(|e| invalid(path, format!("line {}: {e}", i + 2)))?);
        }
        RawFile {
            groups: Vec::new(),
            people,
        }
    } else {
        serde_yaml_ng::from_str::<RawFile>(text).map_err(|e| invalid(path, e.to_string()))?
    };
    let mut snap = DirectorySnapshot::default();
    snap.groups.extend(raw.groups.into_iter().map(GroupName));
    for (i, p) in raw.people.into_iter().enumerate() {
        let at = |field: &str| format!("people[{i}].{field}");
        if p.username.trim().is_empty() {
            return Err(invalid(
                path,
                format!("{}: must not be empty", at("username")),
            ));
        }
        let status = match p.status.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("active") => PersonStatus::Active,
            Some("suspended") | Some("disabled") | Some("locked") => PersonStatus::Suspended,
            Some("staged") => PersonStatus::Staged,
            Some(other) => {
                return Err(invalid(
                    path,
                    format!(
                        "{}: unknown status `{other}` (active, suspended or staged)",
                        at("status")
                    ),
                ))
            }
        };
        if let Some(email) = &p.email {
            if !email.is_empty() && !email.contains('@') {
                return Err(invalid(
                    path,
                    format!("{}: `{email}` is not an email address", at("email")),
                ));
            }
        }
        let id = PersonId(
            p.id.filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| p.username.clone()),
        );
        let groups: BTreeSet<GroupName> = p.groups.names().into_iter().map(GroupName).collect();
        snap.groups.extend(groups.iter().cloned());
        let person = Person {
            id: id.clone(),
            username: p.username,
            email: p.email.filter(|e| !e.is_empty()),
            first_name: p.first_name.filter(|e| !e.is_empty()),
            last_name: p.last_name.filter(|e| !e.is_empty()),
            status,
            groups,
        };
        if snap.people.insert(id.clone(), person).is_some() {
            return Err(invalid(path, format!("{}: duplicate id `{id}`", at("id"))));
        }
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_people_with_groups_and_statuses_are_read() {
        let y = "groups: [empty]\npeople:\n  - username: ada\n    email: ada@example.com\n    groups: [eng]\n  - id: x2\n    username: bob\n    status: suspended\n";
        let s = parse(Path::new("d.yaml"), y).expect("valid");
        assert_eq!(s.people.len(), 2);
        assert_eq!(
            s.people[&PersonId("x2".into())].status,
            PersonStatus::Suspended
        );
        assert!(
            s.groups.contains(&GroupName("empty".into()))
                && s.groups.contains(&GroupName("eng".into()))
        );
    }

    #[test]
    fn csv_rows_split_groups_on_semicolons() {
        let c = "id,username,email,first_name,last_name,status,groups\n1,ada,ada@example.com,Ada,L,active,eng;ops\n";
        let s = parse(Path::new("d.csv"), c).expect("valid");
        assert_eq!(s.people[&PersonId("1".into())].groups.len(), 2);
    }

    #[test]
    fn errors_name_the_file_and_the_entry() {
        let e = parse(
            Path::new("d.yaml"),
            "people:\n  - username: a\n    status: gone\n",
        )
        .expect_err("bad");
        assert_eq!(e.to_string(), "directory file d.yaml: people[0].status: unknown status `gone` (active, suspended or staged)");
        let e = parse(
            Path::new("d.yaml"),
            "people:\n  - username: a\n  - username: a\n",
        )
        .expect_err("dup");
        assert!(e.to_string().contains("people[1].id: duplicate id `a`"));
        let e = parse(Path::new("d.yaml"), "peple: []\n").expect_err("unknown");
        assert!(e.to_string().contains("unknown field `peple`"));
    }
}
