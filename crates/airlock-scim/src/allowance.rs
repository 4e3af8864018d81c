//! Which groups a SCIM client may create or change: the pure decision behind a token issued
//! with `airlock scim token create --groups 'eng-*,data-*'`.
//!
//! An allowance is a list of patterns over a Group's `displayName`, compared as RFC 7643 says
//! `displayName` compares (case-insensitively); `*` matches any run of characters, nothing else
//! is special. A client without an allowance may write any group. A client with one may only
//! create a group whose name it allows, and may only change (replace, patch, rename, delete) a
//! group whose current name *and* new name it allows, so it can neither create `Admins` nor
//! rename `eng-tools` into `Admins`, nor add itself to a group an operator granted Admin.
//!
//! Not here: Users (an allowance limits groups only), storage of the patterns, HTTP.

use serde_json::Value;

use crate::error::ScimError;

/// Why a list of group patterns was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowanceError {
    /// No pattern at all (an empty list would allow nothing; say so explicitly instead).
    #[error("the group allowance is empty: give at least one pattern, e.g. 'eng-*'")]
    Empty,
    /// An empty pattern (e.g. `a,,b`).
    #[error("group pattern {position} is empty")]
    EmptyPattern {
        /// 1-based position in the list.
        position: usize,
    },
    /// A pattern with a control character.
    #[error("group pattern {position} contains a control character")]
    ControlCharacter {
        /// 1-based position in the list.
        position: usize,
    },
}

/// The groups a client may create or change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAllowance {
    /// Lowercased patterns, in the order given.
    patterns: Vec<String>,
}

impl GroupAllowance {
    /// An allowance from a comma-separated list (`'eng-*,data-*'`); blanks around each
    /// pattern are trimmed.
    pub fn parse(list: &str) -> Result<GroupAllowance, AllowanceError> {
        GroupAllowance::from_patterns(list.split(',').map(str::trim))
    }

    /// An allowance from patterns, each checked.
    pub fn from_patterns<I, S>(patterns: I) -> Result<GroupAllowance, AllowanceError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for (i, pattern) in patterns.into_iter().enumerate() {
            let pattern = pattern.as_ref();
            let position = i + 1;
            if pattern.is_empty() {
                return Err(AllowanceError::EmptyPattern { position });
            }
            if pattern.chars().any(char::is_control) {
                return Err(AllowanceError::ControlCharacter { position });
            }
            out.push(pattern.to_lowercase());
        }
        if out.is_empty() {
            return Err(AllowanceError::Empty);
        }
        Ok(GroupAllowance { patterns: out })
    }

    /// The patterns, lowercased, as they are stored.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a group named `display_name` is allowed.
    pub fn allows(&self, display_name: &str) -> bool {
        let name = display_name.to_lowercase();
        self.patterns.iter().any(|p| glob_matches(p, &name))
    }
}

/// `*`-only glob over chars, iterative with one backtrack point (linear in practice, never
/// exponential).
fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The refusal every disallowed group write gets: 403 with a SCIM error body. It names no
/// group (error bodies never echo a request value).
pub fn forbidden() -> ScimError {
    ScimError::new(
        403,
        None,
        "this SCIM client may not create or change this group: its name is outside the \
         client's group allowance",
    )
}

/// Decides a Group write by a client with `allowance` (`None`: unrestricted): `before` is the
/// stored group (`None` for a create), `after` the group as it would be stored (`None` for a
/// delete). Both names must be allowed.
pub fn check_group_write(
    allowance: Option<&GroupAllowance>,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(allowance) = allowance else {
        return Ok(());
    };
    let allowed = |group: Option<&Value>| {
        group.is_none_or(|g| {
            g.get("displayName")
                .and_then(Value::as_str)
                .is_some_and(|name| allowance.allows(name))
        })
    };
    if allowed(before) && allowed(after) {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// Whether a restricted client may change or delete the User `user_id`, given every stored
/// Group: only while none of the groups the user is a member of is outside its allowance.
/// Otherwise a low-trust identity provider could rename a member of an Admin group to a person
/// of its own (who would get the Admin account), or deactivate an administrator. An
/// unrestricted client (`None`) may write any User.
pub fn check_user_write(
    allowance: Option<&GroupAllowance>,
    user_id: &str,
    groups: &[Value],
) -> Result<(), ScimError> {
    let Some(allowance) = allowance else {
        return Ok(());
    };
    let foreign = groups.iter().any(|group| {
        let member = (group.get("members").and_then(Value::as_array)).is_some_and(|members| {
            members
                .iter()
                .any(|m| m.get("value").and_then(Value::as_str) == Some(user_id))
        });
        let allowed = (group.get("displayName").and_then(Value::as_str))
            .is_some_and(|name| allowance.allows(name));
        member && !allowed
    });
    if foreign {
        Err(ScimError::new(
            403,
            None,
            "this SCIM client may not change or delete this user: the user is a member of a \
             group outside the client's group allowance",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_member_of_a_foreign_group_is_not_a_restricted_client_s_to_write() {
        let a = allowance("eng-*");
        let groups = [
            json!({"displayName": "Admins", "members": [{"value": "ada"}]}),
            json!({"displayName": "eng-tools", "members": [{"value": "bob"}, {"value": "ada"}]}),
            json!({"displayName": "no-members"}),
        ];
        assert_eq!(
            check_user_write(Some(&a), "ada", &groups).map_err(|e| e.status),
            Err(403)
        );
        assert!(check_user_write(Some(&a), "bob", &groups).is_ok());
        assert!(
            check_user_write(Some(&a), "carol", &groups).is_ok(),
            "in no group"
        );
        assert!(
            check_user_write(None, "ada", &groups).is_ok(),
            "unrestricted"
        );
        // A member id that only resembles the user's is not the user.
        let near = [json!({"displayName": "Admins", "members": [{"value": "ada2"}]})];
        assert!(check_user_write(Some(&a), "ada", &near).is_ok());
    }

    fn allowance(list: &str) -> GroupAllowance {
        GroupAllowance::parse(list).expect("valid allowance")
    }

    #[test]
    fn patterns_match_whole_names_case_insensitively_with_star_only() {
        let a = allowance("eng-*, data-*,exact");
        assert!(a.allows("eng-tools"));
        assert!(a.allows("ENG-"));
        assert!(a.allows("Data-Science"));
        assert!(a.allows("EXACT"));
        assert!(!a.allows("Admins"));
        assert!(!a.allows("xeng-tools"), "patterns are anchored");
        assert!(!a.allows("exactly"));
        assert!(!allowance("e?g").allows("eng"), "? is not special");
        assert!(allowance("*-admins-*").allows("a-admins-b"));
        assert!(allowance("a*b*c").allows("aXXbYYc"));
        assert!(!allowance("a*b*c").allows("aXXbYY"));
    }

    #[test]
    fn bad_allowances_are_refused_with_their_position() {
        assert_eq!(
            GroupAllowance::parse("a,,b"),
            Err(AllowanceError::EmptyPattern { position: 2 })
        );
        assert_eq!(
            GroupAllowance::parse("a,b\u{1b}"),
            Err(AllowanceError::ControlCharacter { position: 2 })
        );
        assert_eq!(
            GroupAllowance::from_patterns(Vec::<String>::new()),
            Err(AllowanceError::Empty)
        );
    }

    #[test]
    fn a_restricted_client_can_neither_create_rename_into_nor_change_a_foreign_group() {
        let a = allowance("eng-*");
        let eng = json!({"displayName": "eng-tools"});
        let admins = json!({"displayName": "Admins"});
        assert!(check_group_write(Some(&a), None, Some(&eng)).is_ok());
        assert!(check_group_write(Some(&a), Some(&eng), Some(&eng)).is_ok());
        assert!(check_group_write(Some(&a), Some(&eng), None).is_ok());
        for (before, after) in [
            (None, Some(&admins)),
            (Some(&eng), Some(&admins)),
            (Some(&admins), Some(&eng)),
            (Some(&admins), Some(&admins)),
            (Some(&admins), None),
        ] {
            let err = check_group_write(Some(&a), before, after).expect_err("forbidden");
            assert_eq!(err.status, 403);
            assert!(!err.detail.contains("Admins"));
        }
        assert!(check_group_write(None, Some(&admins), Some(&admins)).is_ok());
        let nameless = json!({"members": []});
        assert!(check_group_write(Some(&a), None, Some(&nameless)).is_err());
    }
}
