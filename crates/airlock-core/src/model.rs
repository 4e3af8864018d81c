//! Names and the objects an Airflow instance holds.
//!
//! Case rules are part of each name type, because getting them wrong is how an account ends up
//! created twice or a leaver is missed:
//! - [`Username`] keeps the spelling Airflow stores but compares case-insensitively: Flask
//!   AppBuilder looks users up case-insensitively by default (`AUTH_USERNAME_CI = True`), so
//!   `Ada` and `ada` are the same account to Airflow and must be to airlock.
//! - [`RoleName`] and [`Permission`] compare exactly, as FAB does.
//! - [`InstanceName`] is airlock's own name for an Airflow, restricted to a DNS-label-like
//!   alphabet so it can appear in env var names, metrics labels and file names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// A name that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty (or only whitespace).
    #[error("{kind} must not be empty")]
    Empty {
        /// Which kind of name.
        kind: &'static str,
    },
    /// The name was longer than allowed.
    #[error("{kind} `{value}` is longer than {max} characters")]
    TooLong {
        /// Which kind of name.
        kind: &'static str,
        /// The offending value.
        value: String,
        /// The limit.
        max: usize,
    },
    /// The name is one that cannot be used, whatever its characters.
    #[error("{kind} `{value}` cannot be used: {why}")]
    Reserved {
        /// Which kind of name.
        kind: &'static str,
        /// The offending value.
        value: String,
        /// Why, in words.
        why: &'static str,
    },
    /// The name used a character outside its alphabet.
    #[error("{kind} `{value}` may only contain {allowed}")]
    BadCharacter {
        /// Which kind of name.
        kind: &'static str,
        /// The offending value.
        value: String,
        /// The alphabet, in words.
        allowed: &'static str,
    },
}

/// airlock's name for one configured Airflow instance: `[a-z0-9][a-z0-9_-]*`, at most 63 chars.
/// Clones share the text (every planned operation carries its instance's name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(Arc<str>);

impl InstanceName {
    /// Validates and wraps an instance name.
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s = s.into();
        const KIND: &str = "instance name";
        if s.is_empty() {
            return Err(NameError::Empty { kind: KIND });
        }
        if s.len() > 63 {
            return Err(NameError::TooLong {
                kind: KIND,
                value: s,
                max: 63,
            });
        }
        let ok_first = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok_first || !ok_rest {
            return Err(NameError::BadCharacter {
                kind: KIND,
                value: s,
                allowed: "lowercase letters, digits, `-` and `_`, starting with a letter or digit",
            });
        }
        Ok(Self(Arc::from(s)))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<InstanceName> for String {
    fn from(n: InstanceName) -> Self {
        n.0.to_string()
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Airflow (FAB) username. Keeps its spelling; equality, ordering and hashing ignore case.
///
/// Cloning is cheap (the text is shared, and so are spelling and key when they are the same):
/// the planner hands one person's username to every instance's desired state and plan.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username {
    display: Arc<str>,
    key: Arc<str>,
}

impl Username {
    /// Validates and wraps a username. FAB stores up to 512 characters; empty and
    /// surrounding-whitespace names are refused because they cannot be typed at a login form.
    pub fn new(s: impl AsRef<str>) -> Result<Self, NameError> {
        let s = s.as_ref();
        const KIND: &str = "username";
        // Most usernames are ASCII: one pass over the bytes (no decoding, no early exit, so it
        // vectorises) tells whether it is, and has control characters or capitals.
        let (mut high, mut control, mut upper) = (0u8, false, false);
        for &b in s.as_bytes() {
            high |= b & 0x80;
            control |= b < 0x20 || b == 0x7f;
            upper |= b.is_ascii_uppercase();
        }
        let ascii = high == 0;
        let blank = |c: char| c.is_whitespace();
        let padded = if ascii {
            let bytes = s.as_bytes();
            (bytes.first().zip(bytes.last()))
                .is_some_and(|(&a, &z)| blank(char::from(a)) || blank(char::from(z)))
        } else {
            s.starts_with(blank) || s.ends_with(blank)
        };
        // Unpadded, it is blank only when empty.
        if s.is_empty() || (padded && s.trim().is_empty()) {
            return Err(NameError::Empty { kind: KIND });
        }
        if s.len() > 512 && (ascii || s.chars().count() > 512) {
            return Err(NameError::TooLong {
                kind: KIND,
                value: s.to_string(),
                max: 512,
            });
        }
        if !ascii {
            control = s.chars().any(char::is_control);
        }
        if padded || control {
            return Err(NameError::BadCharacter {
                kind: KIND,
                value: s.to_string(),
                allowed: "printable characters without leading or trailing whitespace",
            });
        }
        // `.` and `..` would become dot-segments in the API paths that name a user.
        if s == "." || s == ".." {
            return Err(NameError::Reserved {
                kind: KIND,
                value: s.to_string(),
                why: "`.` and `..` are path segments in Airflow's API",
            });
        }
        // FAB finds users by `lower(username)`, which folds ASCII letters only (SQLite's
        // `lower`): so does the key. Full Unicode folding would make `ÅSA` and `åsa` one
        // account to airlock while Airflow keeps two, and airlock would change the wrong
        // one. Most usernames are already lowercase: then spelling and key are one text.
        let display: Arc<str> = Arc::from(s);
        let key = match upper {
            true => Arc::from(s.to_ascii_lowercase()),
            false => Arc::clone(&display),
        };
        Ok(Self { display, key })
    }

    /// The spelling Airflow stores.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-folded comparison key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the spelling is its own key (no ASCII capitals): then usernames of this kind
    /// order by spelling as they order by key.
    pub(crate) fn is_folded(&self) -> bool {
        Arc::ptr_eq(&self.display, &self.key)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Username").field(&self.as_str()).finish()
    }
}

impl PartialEq for Username {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Username {}
impl PartialOrd for Username {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Username {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}
impl std::hash::Hash for Username {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl TryFrom<String> for Username {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<Username> for String {
    fn from(n: Username) -> Self {
        n.as_str().to_string()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A FAB role name. Compared exactly, as FAB does. Clones share the text (role sets are copied
/// into every desired account and planned operation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleName(Arc<str>);

impl RoleName {
    /// The role every Airflow ships with full rights.
    pub const ADMIN: &'static str = "Admin";

    /// Validates and wraps a role name (FAB allows up to 64 characters).
    pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
        let s = s.into();
        const KIND: &str = "role name";
        if s.trim().is_empty() {
            return Err(NameError::Empty { kind: KIND });
        }
        if s.chars().count() > 64 {
            return Err(NameError::TooLong {
                kind: KIND,
                value: s,
                max: 64,
            });
        }
        Ok(Self(Arc::from(s)))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is Airflow's built-in `Admin` role.
    pub fn is_admin(&self) -> bool {
        &*self.0 == Self::ADMIN
    }
}

impl TryFrom<String> for RoleName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<RoleName> for String {
    fn from(n: RoleName) -> Self {
        n.0.to_string()
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One FAB permission: an action (`can_read`, `can_edit`, ...) on a resource (`DAGs`,
/// `DAG:marketing_daily`, `Variables`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Permission {
    /// The action, e.g. `can_read`.
    pub action: String,
    /// The resource, e.g. `DAGs` or `DAG:<dag_id>`.
    pub resource: String,
}

impl Permission {
    /// Builds a permission.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
        }
    }

    /// Whether holding this permission lets someone change who can do what: editing users,
    /// roles or permissions is as good as being an administrator.
    pub fn grants_security_admin(&self) -> bool {
        const SECURITY_RESOURCES: &[&str] = &[
            "Users",
            "Roles",
            "Permissions",
            "Permission Views",
            "Resources",
            "User Stats Chart",
        ];
        matches!(
            self.action.as_str(),
            "can_create" | "can_edit" | "can_delete"
        ) && SECURITY_RESOURCES.contains(&self.resource.as_str())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)
    }
}

/// A user account as an Airflow instance reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The login name.
    pub username: Username,
    /// Email address (FAB requires one, and keeps it unique).
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Roles held.
    pub roles: BTreeSet<RoleName>,
    /// Whether FAB lets the account log in. The REST API cannot change it (see ADR 0002).
    pub active: bool,
    /// Last successful login through Airflow's UI or token endpoint.
    pub last_login: Option<DateTime<Utc>>,
    /// Successful logins counted by FAB.
    pub login_count: Option<u64>,
    /// Failed logins since the last success.
    pub fail_login_count: Option<u64>,
    /// When the account was created.
    pub created_on: Option<DateTime<Utc>>,
    /// When the account was last changed.
    pub changed_on: Option<DateTime<Utc>>,
}

/// A role and the permissions it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Role name.
    pub name: RoleName,
    /// Permissions granted.
    pub permissions: BTreeSet<Permission>,
}

impl Role {
    /// Whether holding this role amounts to administering Airflow.
    pub fn is_admin(&self) -> bool {
        self.name.is_admin()
            || self
                .permissions
                .iter()
                .any(Permission::grants_security_admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_compare_case_insensitively_but_keep_their_spelling() {
        let a = Username::new("Ada.Lovelace").expect("valid");
        let b = Username::new("ada.lovelace").expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Ada.Lovelace");
        assert_eq!(a.key(), "ada.lovelace");
    }

    #[test]
    fn case_folding_is_ascii_only_as_in_fab() {
        let a = Username::new("ÅSA.Öberg").expect("valid");
        assert_eq!(a, Username::new("Åsa.Öberg").expect("valid"));
        assert_eq!(a.key(), "Åsa.Öberg");
        assert_ne!(a, Username::new("åsa.öberg").expect("valid"));
    }

    #[test]
    fn dot_segments_are_not_usernames() {
        for s in [".", ".."] {
            let e = Username::new(s).expect_err("refused").to_string();
            assert!(e.contains("cannot be used"), "{e}");
        }
        assert!(Username::new("...").is_ok());
        assert!(Username::new("a.b").is_ok());
    }

    #[test]
    fn usernames_with_surrounding_whitespace_or_control_characters_are_refused() {
        assert!(Username::new(" ada").is_err());
        assert!(Username::new("ada\n").is_err());
        assert!(Username::new("").is_err());
    }

    /// The rules of [`Username::new`], written plainly (Unicode trim and control checks).
    fn reference_username(s: &str) -> Result<(String, String), &'static str> {
        if s.trim().is_empty() {
            return Err("empty");
        }
        if s.chars().count() > 512 {
            return Err("too long");
        }
        if s.trim() != s || s.chars().any(char::is_control) {
            return Err("bad character");
        }
        if s == "." || s == ".." {
            return Err("reserved");
        }
        Ok((s.to_string(), s.to_ascii_lowercase()))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn usernames_are_validated_and_folded_as_the_plain_rules_say(
            s in "[ \\t\\n\\x0b\\x0c\\r\\x00\\x1f\\x7f\\u{85}\\u{a0}\\u{3000}.aZ@Åö-]{0,6}"
        ) {
            let got = Username::new(&s).map(|u| (u.as_str().to_string(), u.key().to_string()));
            let want = reference_username(&s);
            let kind = |e: &NameError| match e {
                NameError::Empty { .. } => "empty",
                NameError::TooLong { .. } => "too long",
                NameError::BadCharacter { .. } => "bad character",
                NameError::Reserved { .. } => "reserved",
            };
            proptest::prop_assert_eq!(got.as_ref().map_err(kind), want.as_ref().map_err(|e| *e));
        }
    }

    #[test]
    fn long_usernames_count_characters_not_bytes() {
        assert!(Username::new("å".repeat(512)).is_ok());
        assert!(Username::new("å".repeat(513)).is_err());
        assert!(Username::new("a".repeat(513)).is_err());
        let long = Username::new("Å".repeat(300) + "B").expect("valid");
        assert_eq!(long.key(), "Å".repeat(300) + "b");
    }

    #[test]
    fn instance_names_use_a_small_alphabet() {
        assert!(InstanceName::new("prod-eu_1").is_ok());
        assert!(InstanceName::new("Prod").is_err());
        assert!(InstanceName::new("-prod").is_err());
        assert!(InstanceName::new("a".repeat(64)).is_err());
    }

    #[test]
    fn a_role_that_can_edit_users_counts_as_admin() {
        let role = Role {
            name: RoleName::new("Helpdesk").expect("valid"),
            permissions: [Permission::new("can_edit", "Users")].into(),
        };
        assert!(role.is_admin());
        let viewer = Role {
            name: RoleName::new("Viewer").expect("valid"),
            permissions: [Permission::new("can_read", "Users")].into(),
        };
        assert!(!viewer.is_admin());
    }
}
