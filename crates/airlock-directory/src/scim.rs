//! The SCIM source: people and groups that identity providers pushed to airlock's own SCIM
//! endpoint, read back from the state store as one complete snapshot.
//!
//! A Person is a SCIM User: id = SCIM `id`, username = `userName`, email = the primary email
//! (or the first), names from `name.givenName`/`name.familyName`, Active when `active` is true
//! or absent, Suspended otherwise. A person's groups are the `displayName`s of every SCIM Group
//! that lists the user's id among its `members` (members that are not stored Users are
//! ignored). Every stored Group is a known group, even an empty one.
//!
//! Not here: the SCIM protocol (airlock-server serves it) and nested groups (SCIM members are
//! Users only).

use std::collections::{BTreeMap, BTreeSet};

use airlock_core::directory::{
    DirectorySnapshot, GroupName, Person, PersonId, PersonStatus, Touched,
};
use airlock_store::{ScimChange, Store, StoreError};
use serde_json::Value;

/// A failed read of the SCIM resources.
#[derive(Debug, thiserror::Error)]
pub enum ScimSourceError {
    /// The state store could not be read.
    #[error("could not read SCIM users and groups: {0}")]
    ReadFailed(#[source] StoreError),
}

/// The SCIM resources in a state store, as a directory.
#[derive(Debug, Clone)]
pub struct ScimSource {
    store: Store,
}

impl ScimSource {
    /// A source reading `store`'s SCIM Users and Groups.
    pub fn new(store: Store) -> Self {
        ScimSource { store }
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        format!(
            "scim (users pushed to the state store at {})",
            self.store.location()
        )
    }

    /// Reads every SCIM User and Group.
    pub async fn read(&self) -> Result<DirectorySnapshot, ScimSourceError> {
        let users = self
            .store
            .scim_list("User")
            .await
            .map_err(ScimSourceError::ReadFailed)?;
        let groups = self
            .store
            .scim_list("Group")
            .await
            .map_err(ScimSourceError::ReadFailed)?;
        Ok(snapshot(&users, &groups))
    }

    /// The people `changes` touched: a written User (and, for a replace or delete, the User
    /// as it was, whose account may now be a leaver's); for a Group, the members it gained or
    /// lost, or every member it has or had when it was created, deleted or renamed (its name
    /// is what the policy grants roles to).
    pub async fn touched(&self, changes: &[ScimChange]) -> Result<Touched, ScimSourceError> {
        let mut touched = Touched::default();
        let mut groups_now: BTreeMap<&str, Option<Value>> = BTreeMap::new();
        for change in changes {
            if change.resource_type == "Group" {
                let id = change.resource_id.as_str();
                if !groups_now.contains_key(id) {
                    let current = self
                        .store
                        .scim_get("Group", id)
                        .await
                        .map_err(ScimSourceError::ReadFailed)?;
                    groups_now.insert(id, current.map(|g| g.resource));
                }
                touched.ids.extend(group_touched(
                    change.previous.as_ref(),
                    groups_now[id].as_ref(),
                ));
            } else {
                touched.ids.insert(PersonId(change.resource_id.clone()));
                if let Some(before) = change.previous.as_ref().and_then(person) {
                    if !touched.previous.contains(&before) {
                        touched.previous.push(before);
                    }
                }
            }
        }
        Ok(touched)
    }
}

/// Whose grants a Group's change from `before` to `now` can alter. With several changes to
/// one group in a batch, each is compared with the group as it is now, which covers anyone
/// added and removed again in between.
fn group_touched(before: Option<&Value>, now: Option<&Value>) -> BTreeSet<PersonId> {
    let set =
        |g: Option<&Value>| -> BTreeSet<PersonId> { g.into_iter().flat_map(members).collect() };
    let (old, new) = (set(before), set(now));
    let renamed = match (before, now) {
        (Some(b), Some(n)) => text(b, "displayName") != text(n, "displayName"),
        _ => true,
    };
    if renamed {
        old.union(&new).cloned().collect()
    } else {
        old.symmetric_difference(&new).cloned().collect()
    }
}

/// The user ids a Group lists as members.
fn members(group: &Value) -> impl Iterator<Item = PersonId> + '_ {
    group
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("value").and_then(Value::as_str))
        .map(|id| PersonId(id.to_owned()))
}

/// A SCIM User as a Person without groups; `None` without an `id` or a `userName`.
fn person(user: &Value) -> Option<Person> {
    let (Some(id), Some(username)) = (text(user, "id"), text(user, "userName")) else {
        return None;
    };
    let name = user.get("name").cloned().unwrap_or(Value::Null);
    let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
    Some(Person {
        id: PersonId(id),
        username,
        email: email(user),
        first_name: text(&name, "givenName"),
        last_name: text(&name, "familyName"),
        status: if active {
            PersonStatus::Active
        } else {
            PersonStatus::Suspended
        },
        groups: BTreeSet::new(),
    })
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn email(user: &Value) -> Option<String> {
    let emails = user.get("emails")?.as_array()?;
    emails
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| emails.first())
        .and_then(|e| text(e, "value"))
}

/// Builds the snapshot from stored SCIM Users and Groups.
pub fn snapshot(users: &[Value], groups: &[Value]) -> DirectorySnapshot {
    let mut people: BTreeMap<PersonId, Person> = BTreeMap::new();
    for p in users.iter().filter_map(person) {
        people.insert(p.id.clone(), p);
    }
    let mut names = BTreeSet::new();
    for group in groups {
        let Some(name) = text(group, "displayName") else {
            continue;
        };
        let name = GroupName(name);
        for id in members(group) {
            if let Some(person) = people.get_mut(&id) {
                person.groups.insert(name.clone());
            }
        }
        names.insert(name);
    }
    DirectorySnapshot {
        people,
        groups: names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_group_change_touches_who_joined_or_left_unless_the_group_was_renamed() {
        let g = |name: &str, ids: &[&str]| {
            let members: Vec<Value> = ids.iter().map(|i| json!({"value": i})).collect();
            json!({"displayName": name, "members": members})
        };
        let ids = |v: &[&str]| -> BTreeSet<PersonId> {
            v.iter().map(|i| PersonId((*i).to_owned())).collect()
        };
        let now = g("eng", &["a", "b"]);
        assert_eq!(group_touched(None, Some(&now)), ids(&["a", "b"]));
        assert_eq!(group_touched(Some(&now), None), ids(&["a", "b"]));
        assert_eq!(
            group_touched(Some(&g("eng", &["b", "c"])), Some(&now)),
            ids(&["a", "c"])
        );
        assert_eq!(
            group_touched(Some(&g("data", &["b"])), Some(&now)),
            ids(&["a", "b"])
        );
        // x was added and removed again within one batch: the second change still names x.
        let between = g("eng", &["a", "b", "x"]);
        let mut all = group_touched(Some(&g("eng", &["b"])), Some(&now));
        all.extend(group_touched(Some(&between), Some(&now)));
        assert_eq!(all, ids(&["a", "x"]));
    }

    #[test]
    fn users_become_people_with_the_groups_that_list_them() {
        let users = [
            json!({"id": "u1", "userName": "ada@example.com",
                   "name": {"givenName": "Ada", "familyName": "Lovelace"},
                   "emails": [{"value": "other@example.com"},
                              {"value": "ada@example.com", "primary": true}]}),
            json!({"id": "u2", "userName": "grace", "active": false,
                   "emails": [{"value": "grace@example.com"}]}),
        ];
        let groups = [
            json!({"id": "g1", "displayName": "eng", "members": [{"value": "u1"}, {"value": "u2"}]}),
            json!({"id": "g2", "displayName": "admins", "members": [{"value": "u1"}, {"value": "gone"}]}),
            json!({"id": "g3", "displayName": "empty"}),
        ];
        let snap = snapshot(&users, &groups);
        let ada = &snap.people[&PersonId("u1".into())];
        assert_eq!(ada.username, "ada@example.com");
        assert_eq!(ada.email.as_deref(), Some("ada@example.com"));
        assert_eq!(ada.first_name.as_deref(), Some("Ada"));
        assert_eq!(ada.last_name.as_deref(), Some("Lovelace"));
        assert_eq!(ada.status, PersonStatus::Active);
        let names = |v: &[&str]| {
            v.iter()
                .map(|s| GroupName((*s).into()))
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(ada.groups, names(&["admins", "eng"]));
        let grace = &snap.people[&PersonId("u2".into())];
        assert_eq!(grace.status, PersonStatus::Suspended);
        assert_eq!(grace.email.as_deref(), Some("grace@example.com"));
        assert_eq!(grace.groups, names(&["eng"]));
        assert_eq!(snap.groups, names(&["admins", "empty", "eng"]));
        assert_eq!(snap.people.len(), 2);
    }
}
