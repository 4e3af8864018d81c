//! The SCIM directory source against a real SQLite state store holding pushed Users and Groups.

use std::collections::BTreeSet;

use airlock_core::directory::{GroupName, PersonId, PersonStatus};
use airlock_directory::scim::ScimSource;
use airlock_directory::Source;
use airlock_store::{OpenOptions, Store};
use serde_json::json;

#[tokio::test]
async fn the_scim_source_turns_stored_users_and_groups_into_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
    let store = Store::open(&url, OpenOptions::create())
        .await
        .expect("open store");
    let ada = store
        .scim_create(
            "User",
            json!({"userName": "ada@example.com", "active": true,
                   "name": {"givenName": "Ada", "familyName": "Lovelace"},
                   "emails": [{"value": "ada@example.com", "primary": true}]}),
            1,
            "idp",
        )
        .await
        .expect("create ada");
    let grace = store
        .scim_create(
            "User",
            json!({"userName": "grace", "active": false}),
            2,
            "idp",
        )
        .await
        .expect("create grace");
    store
        .scim_create(
            "Group",
            json!({"displayName": "data-eng", "members": [{"value": ada.id}, {"value": grace.id}]}),
            3,
            "idp",
        )
        .await
        .expect("create group");
    store
        .scim_create("Group", json!({"displayName": "nobody"}), 4, "idp")
        .await
        .expect("create empty group");

    let source = Source::Scim(ScimSource::new(store.clone()));
    assert!(source.describe().starts_with("scim"));
    let snap = source.read().await.expect("read snapshot");

    let groups = |names: &[&str]| -> BTreeSet<GroupName> {
        names.iter().map(|n| GroupName((*n).to_owned())).collect()
    };
    assert_eq!(snap.groups, groups(&["data-eng", "nobody"]));
    assert_eq!(snap.people.len(), 2);
    let person = &snap.people[&PersonId(ada.id.clone())];
    assert_eq!(person.username, "ada@example.com");
    assert_eq!(person.email.as_deref(), Some("ada@example.com"));
    assert_eq!(person.first_name.as_deref(), Some("Ada"));
    assert_eq!(person.last_name.as_deref(), Some("Lovelace"));
    assert_eq!(person.status, PersonStatus::Active);
    assert_eq!(person.groups, groups(&["data-eng"]));
    let person = &snap.people[&PersonId(grace.id.clone())];
    assert_eq!(person.status, PersonStatus::Suspended);
    assert_eq!(person.groups, groups(&["data-eng"]));
    assert_eq!(snap.active().count(), 1);
}

/// What a targeted reconcile starts from: the people each kind of SCIM write touches.
#[tokio::test]
async fn scim_changes_touch_the_user_written_and_the_members_a_group_gained_or_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("airlock.db").display());
    let store = Store::open(&url, OpenOptions::create())
        .await
        .expect("open store");
    let user = |name: &str| json!({"userName": name, "emails": [{"value": format!("{name}@example.com")}]});
    let mut ids = Vec::new();
    for name in ["ada", "grace", "alan"] {
        let created = store
            .scim_create("User", user(name), 1, "idp")
            .await
            .expect("create user");
        ids.push(created.id);
    }
    store
        .scim_register_consumers(&["prod".to_owned()], 1)
        .await
        .expect("register");
    let source = ScimSource::new(store.clone());
    let pending = |store: Store| async move {
        let changes = store
            .scim_pending_changes("prod", 100)
            .await
            .expect("pending");
        let ids: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
        store.scim_ack_changes("prod", &ids).await.expect("ack");
        changes
    };

    // A group: its members now.
    let group = store
        .scim_create(
            "Group",
            json!({"displayName": "eng", "members": [{"value": ids[0]}, {"value": ids[1]}]}),
            2,
            "idp",
        )
        .await
        .expect("create group");
    let touched = source
        .touched(&pending(store.clone()).await)
        .await
        .expect("touched");
    let want: BTreeSet<PersonId> = ids[..2].iter().cloned().map(PersonId).collect();
    assert_eq!(touched.ids, want);
    assert!(touched.previous.is_empty());

    // A membership change: who joined or left (ada leaves, alan joins; grace stays).
    store
        .scim_replace(
            "Group",
            &group.id,
            json!({"displayName": "eng", "members": [{"value": ids[1]}, {"value": ids[2]}]}),
            None,
            3,
            "idp",
        )
        .await
        .expect("replace group");
    let touched = source
        .touched(&pending(store.clone()).await)
        .await
        .expect("touched");
    let want: BTreeSet<PersonId> = [&ids[0], &ids[2]]
        .into_iter()
        .cloned()
        .map(PersonId)
        .collect();
    assert_eq!(touched.ids, want);

    // A rename: everyone in it, since grants follow the group's name.
    store
        .scim_replace(
            "Group",
            &group.id,
            json!({"displayName": "engineering", "members": [{"value": ids[1]}, {"value": ids[2]}]}),
            None,
            3,
            "idp",
        )
        .await
        .expect("rename group");
    let touched = source
        .touched(&pending(store.clone()).await)
        .await
        .expect("touched");
    let want: BTreeSet<PersonId> = ids[1..].iter().cloned().map(PersonId).collect();
    assert_eq!(touched.ids, want);

    // A deleted group: everyone it had.
    store
        .scim_delete("Group", &group.id, None, 4, "idp")
        .await
        .expect("delete group");
    let touched = source
        .touched(&pending(store.clone()).await)
        .await
        .expect("touched");
    let want: BTreeSet<PersonId> = ids[1..].iter().cloned().map(PersonId).collect();
    assert_eq!(touched.ids, want);

    // A renamed then deleted user: the id, and each earlier entry (whose account may remain).
    store
        .scim_replace("User", &ids[0], user("ada2"), None, 5, "idp")
        .await
        .expect("rename");
    store
        .scim_delete("User", &ids[0], None, 6, "idp")
        .await
        .expect("delete user");
    let touched = source
        .touched(&pending(store.clone()).await)
        .await
        .expect("touched");
    assert_eq!(touched.ids, BTreeSet::from([PersonId(ids[0].clone())]));
    let before: Vec<&str> = touched
        .previous
        .iter()
        .map(|p| p.username.as_str())
        .collect();
    assert_eq!(before, ["ada", "ada2"]);
}
