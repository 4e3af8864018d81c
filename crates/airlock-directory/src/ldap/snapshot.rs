//! From entries to a snapshot: ids, usernames, statuses and transitive group memberships.
//!
//! Pure: takes the entries the searches returned and the settings, does no I/O. Membership is
//! a graph of groups (an edge from a group to each group it is a member of) plus each person's
//! direct groups; a person's groups are everything reachable, found by a walk that visits each
//! group once, so cycles end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use airlock_core::directory::{DirectorySnapshot, GroupName, Person, PersonId, PersonStatus};

use super::dn::DnKey;
use super::error::ErrorKind;
use super::{Disabled, IdFormat, LdapSettings, Membership};

/// The `userAccountControl` bit Active Directory sets on disabled accounts (ACCOUNTDISABLE).
pub(crate) const UAC_ACCOUNT_DISABLE: u64 = 0x2;

/// One entry as searched: its DN and its attributes by lowercased name, values as bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub(crate) dn: String,
    attrs: HashMap<String, Vec<Vec<u8>>>,
    /// Attributes the server sent in ranges (`member;range=0-1499`): only part of the values.
    ranged: Vec<String>,
}

impl Entry {
    pub(crate) fn new(dn: impl Into<String>) -> Self {
        Self {
            dn: dn.into(),
            ..Self::default()
        }
    }

    /// Adds values of `attr` as the server named it (any case, perhaps with options).
    pub(crate) fn add(&mut self, attr: &str, values: impl IntoIterator<Item = Vec<u8>>) {
        let name = attr.to_ascii_lowercase();
        if name.contains(";range=") {
            self.ranged.push(attr.to_owned());
            return;
        }
        self.attrs.entry(name).or_default().extend(values);
    }

    fn values(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn texts(&self, attr: &str) -> impl Iterator<Item = String> + '_ {
        self.values(attr)
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The first non-empty value of `attr` as text.
    fn text(&self, attr: &str) -> Option<String> {
        self.texts(attr).find(|v| !v.trim().is_empty())
    }
}

impl From<ldap3::SearchEntry> for Entry {
    fn from(entry: ldap3::SearchEntry) -> Self {
        let mut out = Entry::new(entry.dn);
        for (attr, values) in entry.attrs {
            out.add(&attr, values.into_iter().map(String::into_bytes));
        }
        for (attr, values) in entry.bin_attrs {
            out.add(&attr, values);
        }
        out
    }
}

struct GroupNode {
    name: GroupName,
    /// Groups this group is a member of.
    parents: Vec<usize>,
}

/// Builds the snapshot from the people and group entries read.
pub(crate) fn build(
    settings: &LdapSettings,
    people: &[Entry],
    groups: &[Entry],
) -> Result<DirectorySnapshot, ErrorKind> {
    if let Some(entry) = people.iter().chain(groups).find(|e| !e.ranged.is_empty()) {
        return Err(ErrorKind::Incomplete(format!(
            "`{}` came back in ranges for `{}` (Active Directory sends large attributes in \
             parts, which airlock does not fetch); use memberOf membership",
            entry.ranged.join("`, `"),
            entry.dn
        )));
    }

    // Groups, by DN.
    let mut nodes: Vec<GroupNode> = Vec::with_capacity(groups.len());
    let mut group_index: HashMap<DnKey, usize> = HashMap::with_capacity(groups.len());
    let mut group_entries: Vec<&Entry> = Vec::with_capacity(groups.len());
    for entry in groups {
        let Some(name) = entry.text(&settings.group_name_attr) else {
            tracing::warn!(
                dn = %entry.dn,
                attr = %settings.group_name_attr,
                "ldap group has no name; its members get nothing from it"
            );
            continue;
        };
        group_index.insert(DnKey::new(&entry.dn), nodes.len());
        nodes.push(GroupNode {
            name: GroupName(name),
            parents: Vec::new(),
        });
        group_entries.push(entry);
    }

    // People, by DN; ids checked.
    let mut snapshot = DirectorySnapshot {
        people: BTreeMap::new(),
        groups: nodes.iter().map(|n| n.name.clone()).collect(),
    };
    let mut person_index: HashMap<DnKey, PersonId> = HashMap::with_capacity(people.len());
    let mut direct: HashMap<PersonId, Vec<usize>> = HashMap::new();
    let mut dn_of: HashMap<PersonId, &str> = HashMap::new();
    let mut skipped = 0_usize;
    for entry in people {
        // Username first: a person without one is skipped even when it is also the id.
        let Some(username) = entry.text(&settings.username_attr) else {
            tracing::warn!(
                dn = %entry.dn,
                attr = %settings.username_attr,
                "ldap person has no username; skipped"
            );
            skipped += 1;
            continue;
        };
        let id = person_id(settings, entry)?;
        if let Some(first) = dn_of.insert(id.clone(), &entry.dn) {
            return Err(ErrorKind::InvalidData(format!(
                "`{first}` and `{}` have the same id `{id}` (attribute `{}`)",
                entry.dn, settings.id_attr
            )));
        }
        if let Membership::MemberOf { attr } = &settings.membership {
            let groups = entry
                .texts(attr)
                .filter_map(|dn| group_index.get(&DnKey::new(&dn)).copied())
                .collect();
            direct.insert(id.clone(), groups);
        }
        person_index.insert(DnKey::new(&entry.dn), id.clone());
        snapshot.people.insert(
            id.clone(),
            Person {
                id,
                username,
                email: entry.text(&settings.email_attr),
                first_name: entry.text(&settings.first_name_attr),
                last_name: entry.text(&settings.last_name_attr),
                status: status(&settings.disabled, entry),
                groups: BTreeSet::new(),
            },
        );
    }
    if skipped > 0 && skipped == people.len() {
        return Err(ErrorKind::InvalidData(format!(
            "none of the {skipped} people has a username (attribute `{}`); check \
             username_attr and the bind user's read access",
            settings.username_attr
        )));
    }

    // Edges: group -> parent groups, person -> direct groups.
    for (index, entry) in group_entries.iter().enumerate() {
        match &settings.membership {
            Membership::GroupMember { member_attr } => {
                for member in entry.texts(member_attr) {
                    let key = DnKey::new(&member);
                    if let Some(&child) = group_index.get(&key) {
                        if child != index {
                            nodes[child].parents.push(index);
                        }
                    } else if let Some(id) = person_index.get(&key) {
                        direct.entry(id.clone()).or_default().push(index);
                    }
                }
            }
            Membership::MemberOf { attr } => {
                let parents: Vec<usize> = entry
                    .texts(attr)
                    .filter_map(|dn| group_index.get(&DnKey::new(&dn)).copied())
                    .filter(|&parent| parent != index)
                    .collect();
                nodes[index].parents.extend(parents);
            }
        }
    }

    // Transitive closure per person.
    let mut seen = vec![false; nodes.len()];
    let mut stack = Vec::new();
    for (id, groups) in &direct {
        let Some(person) = snapshot.people.get_mut(id) else {
            continue;
        };
        seen.iter_mut().for_each(|s| *s = false);
        stack.clear();
        stack.extend(groups.iter().copied());
        while let Some(group) = stack.pop() {
            if std::mem::replace(&mut seen[group], true) {
                continue;
            }
            person.groups.insert(nodes[group].name.clone());
            stack.extend(nodes[group].parents.iter().copied());
        }
    }
    Ok(snapshot)
}

fn person_id(settings: &LdapSettings, entry: &Entry) -> Result<PersonId, ErrorKind> {
    let values = entry.values(&settings.id_attr);
    let value = match values {
        [one] if !one.is_empty() => one,
        [] | [_] => {
            return Err(ErrorKind::InvalidData(format!(
                "`{}` has no id (attribute `{}`); check id_attr and the bind user's read access",
                entry.dn, settings.id_attr
            )))
        }
        many => {
            return Err(ErrorKind::InvalidData(format!(
                "`{}` has {} values of the id attribute `{}`; an id must be single-valued",
                entry.dn,
                many.len(),
                settings.id_attr
            )))
        }
    };
    let text = match settings.id_format {
        IdFormat::Text => String::from_utf8_lossy(value).into_owned(),
        IdFormat::Hex => hex(value),
        IdFormat::Guid => guid(value).ok_or_else(|| {
            ErrorKind::InvalidData(format!(
                "`{}` has a {}-byte `{}`; a GUID has 16 bytes",
                entry.dn,
                value.len(),
                settings.id_attr
            ))
        })?,
    };
    Ok(PersonId(text))
}

fn status(rule: &Disabled, entry: &Entry) -> PersonStatus {
    let disabled = match rule {
        Disabled::Never => false,
        Disabled::UserAccountControl => entry.text("userAccountControl").is_some_and(|v| {
            // A value that is not a number: fail closed (no access) rather than open.
            v.trim()
                .parse::<i64>()
                .map_or(true, |flags| flags as u64 & UAC_ACCOUNT_DISABLE != 0)
        }),
        Disabled::Present { attr } => entry.text(attr).is_some(),
        Disabled::ValueIn { attr, values } => entry.texts(attr).any(|v| {
            values
                .iter()
                .any(|s| s.trim().eq_ignore_ascii_case(v.trim()))
        }),
    };
    if disabled {
        PersonStatus::Suspended
    } else {
        PersonStatus::Active
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A 16-byte Microsoft GUID in its usual text form (the first three fields little-endian), as
/// `Get-ADUser` shows `ObjectGUID`.
fn guid(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        hex(&b[8..10]),
        hex(&b[10..16])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn settings(membership: Membership) -> LdapSettings {
        let mut s = LdapSettings::new(
            "ldap://127.0.0.1:389".parse().expect("url"),
            "cn=r,dc=x",
            SecretString::from("pw"),
            "ou=people,dc=x",
            "ou=groups,dc=x",
        );
        s.id_attr = "uid".into();
        s.membership = membership;
        s
    }

    fn entry(dn: &str, attrs: &[(&str, &str)]) -> Entry {
        let mut e = Entry::new(dn);
        for (attr, value) in attrs {
            e.add(attr, [value.as_bytes().to_vec()]);
        }
        e
    }

    fn groups_of(snapshot: &DirectorySnapshot, id: &str) -> Vec<String> {
        snapshot.people[&PersonId(id.into())]
            .groups
            .iter()
            .map(|g| g.0.clone())
            .collect()
    }

    fn member() -> Membership {
        Membership::GroupMember {
            member_attr: "member".into(),
        }
    }

    #[test]
    fn nested_groups_count_transitively_and_cycles_end() {
        let people = [
            entry("uid=a,ou=people,dc=x", &[("uid", "a")]),
            entry("uid=b,ou=people,dc=x", &[("UID", "b")]),
        ];
        let groups = [
            entry(
                "cn=inner,ou=groups,dc=x",
                &[("cn", "inner"), ("member", "UID=A, OU=People, DC=X")],
            ),
            entry(
                "cn=outer,ou=groups,dc=x",
                &[("cn", "outer"), ("member", "cn=inner,ou=groups,dc=x")],
            ),
            entry(
                "cn=c1,ou=groups,dc=x",
                &[
                    ("cn", "c1"),
                    ("member", "cn=c2,ou=groups,dc=x"),
                    ("member", "uid=b,ou=people,dc=x"),
                ],
            ),
            entry(
                "cn=c2,ou=groups,dc=x",
                &[("cn", "c2"), ("member", "cn=c1,ou=groups,dc=x")],
            ),
            entry(
                "cn=empty,ou=groups,dc=x",
                &[("cn", "empty"), ("member", "")],
            ),
        ];
        let snapshot = build(&settings(member()), &people, &groups).expect("builds");
        assert_eq!(groups_of(&snapshot, "a"), ["inner", "outer"]);
        assert_eq!(groups_of(&snapshot, "b"), ["c1", "c2"]);
        assert_eq!(snapshot.groups.len(), 5);
        assert!(snapshot.groups.contains(&GroupName("empty".into())));
    }

    #[test]
    fn member_of_membership_follows_groups_member_of_too() {
        let people = [entry(
            "uid=a,ou=people,dc=x",
            &[("uid", "a"), ("memberOf", "cn=inner,ou=groups,dc=x")],
        )];
        let groups = [
            entry(
                "cn=inner,ou=groups,dc=x",
                &[("cn", "inner"), ("memberof", "cn=outer,ou=groups,dc=x")],
            ),
            entry("cn=outer,ou=groups,dc=x", &[("cn", "outer")]),
            entry("cn=other,ou=groups,dc=x", &[("cn", "other")]),
        ];
        let membership = Membership::MemberOf {
            attr: "memberOf".into(),
        };
        let snapshot = build(&settings(membership), &people, &groups).expect("builds");
        assert_eq!(groups_of(&snapshot, "a"), ["inner", "outer"]);
    }

    #[test]
    fn duplicate_ids_are_an_error_not_a_merge() {
        let people = [
            entry("uid=a,ou=people,dc=x", &[("uid", "a")]),
            entry("uid=a,ou=other,dc=x", &[("uid", "a")]),
        ];
        let err = build(&settings(member()), &people, &[]).expect_err("duplicate");
        assert!(err.to_string().contains("same id `a`"), "{err}");
    }

    #[test]
    fn a_person_without_username_is_skipped_but_not_everyone() {
        let mut s = settings(member());
        s.id_attr = "entryUUID".into();
        let people = [
            entry("uid=a,ou=people,dc=x", &[("uid", "a"), ("entryUUID", "1")]),
            entry("cn=nobody,ou=people,dc=x", &[("entryUUID", "2")]),
        ];
        let snapshot = build(&s, &people, &[]).expect("builds");
        assert_eq!(snapshot.people.len(), 1);
        let err = build(&s, &people[1..], &[]).expect_err("nobody has a username");
        assert!(matches!(err, ErrorKind::InvalidData(_)), "{err}");
    }

    #[test]
    fn a_missing_or_multi_valued_id_is_an_error() {
        let mut s = settings(member());
        s.id_attr = "entryUUID".into();
        let missing = [entry("uid=a,ou=people,dc=x", &[("uid", "a")])];
        assert!(build(&s, &missing, &[]).is_err());
        let mut twice = entry("uid=a,ou=people,dc=x", &[("uid", "a")]);
        twice.add("entryUUID", [b"1".to_vec(), b"2".to_vec()]);
        assert!(build(&s, &[twice], &[]).is_err());
    }

    #[test]
    fn ranged_attributes_make_the_read_incomplete() {
        let mut group = entry("cn=big,ou=groups,dc=x", &[("cn", "big")]);
        group.add("member;range=0-1499", [b"uid=a".to_vec()]);
        let err = build(&settings(member()), &[], &[group]).expect_err("ranged");
        assert!(matches!(err, ErrorKind::Incomplete(_)), "{err}");
    }

    #[test]
    fn disabled_rules_decide_the_status() {
        let uac = |v: &str| entry("cn=x", &[("userAccountControl", v)]);
        let rule = Disabled::UserAccountControl;
        assert_eq!(status(&rule, &uac("512")), PersonStatus::Active);
        assert_eq!(status(&rule, &uac("514")), PersonStatus::Suspended);
        assert_eq!(status(&rule, &uac("66050")), PersonStatus::Suspended);
        assert_eq!(status(&rule, &uac("garbage")), PersonStatus::Suspended);
        assert_eq!(status(&rule, &entry("cn=x", &[])), PersonStatus::Active);

        let present = Disabled::Present {
            attr: "pwdAccountLockedTime".into(),
        };
        let locked = entry("cn=x", &[("pwdaccountlockedtime", "000001010000Z")]);
        assert_eq!(status(&present, &locked), PersonStatus::Suspended);
        assert_eq!(status(&present, &entry("cn=x", &[])), PersonStatus::Active);

        let value_in = Disabled::ValueIn {
            attr: "employeeType".into(),
            values: vec!["Suspended".into(), "terminated".into()],
        };
        let suspended = entry("cn=x", &[("employeeType", "suspended")]);
        let contractor = entry("cn=x", &[("employeeType", "contractor")]);
        assert_eq!(status(&value_in, &suspended), PersonStatus::Suspended);
        assert_eq!(status(&value_in, &contractor), PersonStatus::Active);
    }

    #[test]
    fn binary_ids_are_formatted_as_guids_or_hex() {
        let bytes: Vec<u8> = (0x01..=0x10).collect();
        assert_eq!(
            guid(&bytes).as_deref(),
            Some("04030201-0605-0807-090a-0b0c0d0e0f10")
        );
        assert_eq!(guid(&bytes[..4]), None);
        assert_eq!(hex(&[0xde, 0xad, 0x01]), "dead01");
    }
}
