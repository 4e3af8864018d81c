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
        )
        .await
        .expect("create ada");
    let grace = store
        .scim_create("User", json!({"userName": "grace", "active": false}), 2)
        .await
        .expect("create grace");
    store
        .scim_create(
            "Group",
            json!({"displayName": "data-eng", "members": [{"value": ada.id}, {"value": grace.id}]}),
            3,
        )
        .await
        .expect("create group");
    store
        .scim_create("Group", json!({"displayName": "nobody"}), 4)
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
