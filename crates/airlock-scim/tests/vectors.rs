//! Runs the client request vectors in `tests/vectors/`: one test per file.
//!
//! Each file holds a resource `before`, either a PATCH body (`patch`) or a PUT body (`put`),
//! and either the resource expected `after` or the `error` expected (`status`, `scimType`).
//! Files may also name a string the error must not contain (`mustNotContain`), for values that
//! must never be echoed. A failing request must leave `before` untouched.

use airlock_scim::{apply_patch_in_place, replace_resource, PatchRequest, ResourceType, ScimError};
use serde_json::Value;

fn run(name: &str, text: &str) {
    let vector: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let resource_type = match vector["resourceType"].as_str() {
        Some("User") => ResourceType::User,
        Some("Group") => ResourceType::Group,
        other => panic!("{name}: unknown resourceType {other:?}"),
    };
    let before = vector["before"].clone();
    let mut resource = before.clone();
    let outcome: Result<(), ScimError> = if let Some(body) = vector.get("patch") {
        PatchRequest::from_json(body)
            .and_then(|request| apply_patch_in_place(resource_type, &mut resource, &request))
    } else if let Some(body) = vector.get("put") {
        replace_resource(resource_type, &before, body).map(|replaced| resource = replaced)
    } else {
        panic!("{name}: a vector needs a patch or a put");
    };
    match (outcome, vector.get("after"), vector.get("error")) {
        (Ok(()), Some(after), None) => {
            assert_eq!(&resource, after, "{name}: unexpected result");
        }
        (Err(err), None, Some(expected)) => {
            let body = err.to_json();
            assert_eq!(
                body["status"].as_str().and_then(|s| s.parse::<u64>().ok()),
                expected["status"].as_u64(),
                "{name}: {body}"
            );
            assert_eq!(body["scimType"], expected["scimType"], "{name}: {body}");
            if let Some(secret) = vector["mustNotContain"].as_str() {
                assert!(!body.to_string().contains(secret), "{name}: {body}");
            }
            assert_eq!(
                resource.to_string(),
                before.to_string(),
                "{name}: a failed request changed the resource"
            );
        }
        (Ok(()), None, Some(expected)) => {
            panic!("{name}: expected error {expected}, got {resource}")
        }
        (Err(err), Some(_), None) => panic!("{name}: unexpected error: {err}"),
        _ => panic!("{name}: a vector needs exactly one of after and error"),
    }
}

macro_rules! vectors {
    ($($test:ident => $file:literal,)*) => {
        const FILES: &[&str] = &[$($file),*];
        $(
            #[test]
            fn $test() {
                run($file, include_str!(concat!("vectors/", $file)));
            }
        )*
    };
}

vectors! {
    entra_capitalised_op_names_are_accepted => "entra/capitalised-op-names.json",
    entra_string_false_disables_a_user => "entra/string-boolean-with-path.json",
    entra_string_true_in_a_value_object_enables_a_user => "entra/string-boolean-in-value-object.json",
    entra_dotted_and_urn_keys_in_a_value_object_are_paths => "entra/dotted-keys-in-value-object.json",
    entra_removes_members_listed_in_the_value => "entra/remove-members-by-value-list.json",
    entra_adding_members_never_duplicates_one => "entra/add-members.json",
    entra_add_of_a_missing_work_email_creates_it => "entra/add-work-email-creates-the-value.json",
    entra_replaces_the_work_email_through_a_filter => "entra/replace-work-email.json",
    entra_replace_of_a_missing_mobile_number_creates_it => "entra/replace-of-a-missing-mobile-number-creates-it.json",
    entra_manager_given_as_a_bare_id_becomes_its_value => "entra/manager-as-a-bare-id.json",
    entra_app_roles_are_written_through_a_string_boolean_filter => "entra/app-role-through-a-string-boolean-filter.json",
    entra_removing_the_manager_drops_it_and_keeps_the_extension => "entra/remove-manager.json",
    entra_enterprise_extension_with_an_inner_schemas_member_is_written => "entra/enterprise-extension-with-inner-schemas.json",
    okta_deactivates_with_a_path_less_replace => "okta/deactivate-user.json",
    okta_removes_a_member_by_filter => "okta/remove-member-by-filter.json",
    okta_adds_a_member_with_its_display => "okta/add-member.json",
    okta_renames_a_group_while_repeating_its_id => "okta/rename-group-repeating-its-id.json",
    okta_removing_an_absent_member_succeeds => "okta/remove-member-already-gone.json",
    jumpcloud_put_keeps_server_owned_attributes => "jumpcloud/put-user-keeps-server-owned-attributes.json",
    jumpcloud_put_deactivates_and_clears_omitted_attributes => "jumpcloud/put-user-deactivates-and-clears-omitted-attributes.json",
    jumpcloud_put_without_a_username_is_refused => "jumpcloud/put-user-without-username.json",
    jumpcloud_put_replaces_group_members => "jumpcloud/put-group-replaces-members.json",
    replacing_the_id_is_a_mutability_error => "rfc/replace-id-is-mutability.json",
    an_unknown_attribute_is_an_invalid_path => "rfc/unknown-attribute-is-invalid-path.json",
    remove_without_a_path_has_no_target => "rfc/remove-without-path-is-no-target.json",
    a_failing_last_operation_changes_nothing => "rfc/failing-last-operation-changes-nothing.json",
    a_password_is_never_echoed_in_an_error => "rfc/password-is-never-echoed.json",
    a_put_of_the_full_core_and_enterprise_user_is_accepted => "rfc/put-full-core-and-enterprise-user.json",
}

#[test]
fn every_vector_file_has_a_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut on_disk = Vec::new();
    for dir in std::fs::read_dir(&root).expect("tests/vectors exists") {
        let dir = dir.expect("readable").path();
        for file in std::fs::read_dir(&dir).expect("readable") {
            let file = file.expect("readable").path();
            if file.extension().is_some_and(|e| e == "json") {
                let relative = file.strip_prefix(&root).expect("under root");
                on_disk.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
    listed.sort();
    assert_eq!(listed, on_disk, "each vector file needs a line in vectors!");
}
