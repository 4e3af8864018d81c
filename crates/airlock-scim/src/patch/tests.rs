//! Unit tests for PATCH semantics; client-specific request shapes live in `tests/vectors/`.

use serde_json::{json, Value};

use super::*;
use crate::error::ScimType;
use crate::schema::ENTERPRISE_USER_SCHEMA;

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "u1",
        "meta": {"resourceType": "User", "lastModified": "2024-01-01T00:00:00Z"},
        "userName": "ada",
        "displayName": "Ada",
        "active": true,
        "emails": [
            {"value": "ada@work.example", "type": "work", "primary": true},
            {"value": "ada@home.example", "type": "home"}
        ],
        "groups": [{"value": "g1", "display": "Admins"}]
    })
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g1",
        "displayName": "Airflow Admins",
        "members": [{"value": "u1", "display": "Ada"}, {"value": "u2"}]
    })
}

fn request(operations: Value) -> PatchRequest {
    PatchRequest::from_json(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": operations,
    }))
    .expect("test requests are well-formed")
}

fn patch(rt: ResourceType, resource: &Value, operations: Value) -> Result<Value, ScimError> {
    apply_patch(rt, resource, &request(operations))
}

fn patch_user(operations: Value) -> Result<Value, ScimError> {
    patch(ResourceType::User, &user(), operations)
}

fn scim_type(result: Result<Value, ScimError>) -> Option<ScimType> {
    result.expect_err("the patch should fail").scim_type
}

#[test]
fn replace_with_a_path_sets_the_attribute() {
    let out = patch_user(json!([{"op": "replace", "path": "displayName", "value": "Countess"}]))
        .expect("valid");
    assert_eq!(out["displayName"], "Countess");
}

#[test]
fn add_without_a_path_merges_the_value_object() {
    let out = patch_user(
        json!([{"op": "add", "value": {"title": "Countess", "name": {"givenName": "Ada"}}}]),
    )
    .expect("valid");
    assert_eq!(out["title"], "Countess");
    assert_eq!(out["name"], json!({"givenName": "Ada"}));
    assert_eq!(out["displayName"], "Ada");
}

#[test]
fn replace_of_a_complex_attribute_keeps_unnamed_sub_attributes() {
    let base = patch_user(json!([{"op": "add", "path": "name", "value": {"givenName": "Ada", "familyName": "Byron"}}]))
        .expect("valid");
    let out = patch(
        ResourceType::User,
        &base,
        json!([{"op": "replace", "path": "name", "value": {"familyName": "Lovelace"}}]),
    )
    .expect("valid");
    assert_eq!(
        out["name"],
        json!({"givenName": "Ada", "familyName": "Lovelace"})
    );
}

#[test]
fn replace_of_a_multi_valued_attribute_replaces_every_value() {
    let out = patch_user(
        json!([{"op": "replace", "path": "emails", "value": [{"value": "new@x.example"}]}]),
    )
    .expect("valid");
    assert_eq!(out["emails"], json!([{"value": "new@x.example"}]));
}

#[test]
fn remove_without_a_path_is_no_target() {
    assert_eq!(
        scim_type(patch_user(json!([{"op": "remove"}]))),
        Some(ScimType::NoTarget)
    );
}

#[test]
fn read_only_attributes_are_refused_unless_unchanged() {
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "path": "id", "value": "u2"}])
        )),
        Some(ScimType::Mutability)
    );
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "value": {"meta": {"version": "x"}}}])
        )),
        Some(ScimType::Mutability)
    );
    assert_eq!(
        scim_type(patch_user(json!([{"op": "remove", "path": "groups"}]))),
        Some(ScimType::Mutability)
    );
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "remove", "path": "groups[value eq \"g1\"]"}])
        )),
        Some(ScimType::Mutability)
    );
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "path": "meta.lastModified", "value": "2030-01-01T00:00:00Z"}])
        )),
        Some(ScimType::Mutability)
    );
    let unchanged =
        patch_user(json!([{"op": "replace", "value": {"id": "u1", "displayName": "A"}}]))
            .expect("repeating the id is a no-op");
    assert_eq!(unchanged["id"], "u1");
}

#[test]
fn unknown_attributes_are_invalid_path() {
    for operations in [
        json!([{"op": "replace", "path": "shoeSize", "value": "9"}]),
        json!([{"op": "replace", "path": "name.middle", "value": "x"}]),
        json!([{"op": "add", "value": {"shoeSize": "9"}}]),
        json!([{"op": "add", "value": {"name.nickname": "x"}}]),
        json!([{"op": "remove", "path": "urn:example:ext:1.0:User:x"}]),
        json!([{"op": "remove", "path": "emails[type eq"}]),
    ] {
        assert_eq!(
            scim_type(patch_user(operations.clone())),
            Some(ScimType::InvalidPath),
            "{operations}"
        );
    }
}

#[test]
fn a_bad_filter_in_a_path_is_invalid_filter() {
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "remove", "path": "emails[shoe eq \"x\"]"}])
        )),
        Some(ScimType::InvalidFilter)
    );
}

#[test]
fn wrongly_typed_values_are_invalid_value() {
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "path": "active", "value": "maybe"}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "path": "name", "value": {"givenName": 3}}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "value": "not an object"}])
        )),
        Some(ScimType::InvalidValue)
    );
}

#[test]
fn removing_a_required_attribute_is_invalid_value() {
    assert_eq!(
        scim_type(patch_user(json!([{"op": "remove", "path": "userName"}]))),
        Some(ScimType::InvalidValue)
    );
}

#[test]
fn a_sub_attribute_of_a_multi_valued_attribute_needs_a_filter() {
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "path": "emails.value", "value": "x@y"}])
        )),
        Some(ScimType::InvalidPath)
    );
}

#[test]
fn replace_through_a_filter_merges_into_the_matched_values() {
    let out = patch_user(json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "ada@new.example"}}]))
        .expect("valid");
    assert_eq!(
        out["emails"][0],
        json!({"value": "ada@new.example", "type": "work", "primary": true})
    );
}

#[test]
fn an_unmatched_filter_that_cannot_seed_a_value_is_no_target() {
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "path": "emails[value co \"nowhere\"].display", "value": "x"}])
        )),
        Some(ScimType::NoTarget)
    );
    assert_eq!(
        scim_type(patch(
            ResourceType::Group,
            &group(),
            json!([{"op": "replace", "path": "members[value eq \"u9\"].display", "value": "x"}])
        )),
        Some(ScimType::NoTarget),
        "a member is never created by a filter"
    );
}

#[test]
fn remove_through_a_filter_that_matches_nothing_changes_nothing() {
    let before = patch(
        ResourceType::Group,
        &group(),
        json!([{"op": "add", "path": "displayName", "value": "Airflow Admins"}]),
    )
    .expect("valid");
    let out = patch(
        ResourceType::Group,
        &before,
        json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}]),
    )
    .expect("valid");
    assert_eq!(out, before);
}

#[test]
fn removing_the_value_of_a_selected_value_removes_the_value() {
    let out = patch_user(json!([{"op": "remove", "path": "emails[type eq \"home\"].value"}]))
        .expect("valid");
    assert_eq!(out["emails"].as_array().map(Vec::len), Some(1));
    let out = patch_user(json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]))
        .expect("valid");
    assert_eq!(
        out["emails"][0],
        json!({"value": "ada@work.example", "type": "work"})
    );
}

#[test]
fn a_new_primary_value_takes_primary_from_the_others() {
    let out = patch_user(json!([{"op": "add", "path": "emails", "value": [{"value": "a@new.example", "primary": true}]}]))
        .expect("valid");
    assert_eq!(out["emails"][0]["primary"], false);
    assert_eq!(out["emails"][2]["primary"], true);
    let out = patch_user(
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
    )
    .expect("valid");
    assert_eq!(out["emails"][0]["primary"], false);
    assert_eq!(out["emails"][1]["primary"], true);
    assert_eq!(
        scim_type(patch_user(
            json!([{"op": "replace", "path": "emails", "value": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}])
        )),
        Some(ScimType::InvalidValue)
    );
}

#[test]
fn adding_an_existing_member_again_changes_nothing() {
    let out = patch(
        ResourceType::Group,
        &group(),
        json!([{"op": "add", "path": "members", "value": [{"value": "u1", "display": "Ada L."}, {"value": "u3"}]}]),
    )
    .expect("valid");
    assert_eq!(
        out["members"],
        json!([{"value": "u1", "display": "Ada"}, {"value": "u2"}, {"value": "u3"}])
    );
}

#[test]
fn a_member_value_is_immutable() {
    assert_eq!(
        scim_type(patch(
            ResourceType::Group,
            &group(),
            json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u9"}])
        )),
        Some(ScimType::Mutability)
    );
    let renamed = patch(
        ResourceType::Group,
        &group(),
        json!([{"op": "replace", "path": "members[value eq \"u1\"].display", "value": "Ada Lovelace"}]),
    )
    .expect("display is writable");
    assert_eq!(renamed["members"][0]["display"], "Ada Lovelace");
}

#[test]
fn a_path_naming_the_extension_targets_its_attributes() {
    let out = patch_user(
        json!([{"op": "add", "path": ENTERPRISE_USER_SCHEMA, "value": {"department": "R&D"}}]),
    )
    .expect("valid");
    assert_eq!(out[ENTERPRISE_USER_SCHEMA]["department"], "R&D");
    let out = patch(
        ResourceType::User,
        &out,
        json!([{"op": "remove", "path": ENTERPRISE_USER_SCHEMA}]),
    )
    .expect("valid");
    assert!(out.get(ENTERPRISE_USER_SCHEMA).is_none());
    assert_eq!(
        out["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );
}

#[test]
fn errors_name_the_failing_operation() {
    let err = patch_user(json!([
        {"op": "replace", "path": "displayName", "value": "x"},
        {"op": "replace", "path": "id", "value": "y"}
    ]))
    .expect_err("second op fails");
    assert!(err.detail.starts_with("Operations[1]: "), "{}", err.detail);
}

#[test]
fn a_failing_operation_leaves_the_resource_untouched() {
    let mut resource = user();
    let before = resource.to_string();
    let err = apply_patch_in_place(
        ResourceType::User,
        &mut resource,
        &request(json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "remove", "path": "emails"},
            {"op": "remove"}
        ])),
    )
    .expect_err("last op fails");
    assert_eq!(err.scim_type, Some(ScimType::NoTarget));
    assert_eq!(resource.to_string(), before);
}

#[test]
fn password_values_never_appear_in_errors() {
    let err = patch_user(json!([
        {"op": "replace", "path": "password", "value": "hunter2"},
        {"op": "replace", "path": "password", "value": ["hunter2"]}
    ]))
    .expect_err("an array is not a password");
    assert!(!err.to_json().to_string().contains("hunter2"));
    let err = patch_user(json!([
        {"op": "replace", "value": {"password": "hunter2", "active": "hunter2"}}
    ]))
    .expect_err("not a boolean");
    assert!(!err.to_json().to_string().contains("hunter2"));
    let out = patch_user(json!([{"op": "replace", "path": "password", "value": "hunter2"}]))
        .expect("setting a password is accepted");
    assert!(
        !out.to_string().contains("hunter2"),
        "a password is accepted but never kept: {out}"
    );
}

#[test]
fn a_user_name_with_a_control_character_is_an_invalid_value() {
    for name in [
        "a\u{0}b",
        "a\nb",
        "\u{1b}[31mroot",
        "tab\there",
        "del\u{7f}",
    ] {
        let err = patch_user(json!([{"op": "replace", "path": "userName", "value": name}]))
            .expect_err("control characters are refused");
        assert_eq!(err.scim_type, Some(ScimType::InvalidValue), "{name:?}");
        assert!(!err.detail.contains(name), "{}", err.detail);
    }
    patch_user(json!([{"op": "replace", "path": "userName", "value": "ada.lovelace@example.com"}]))
        .expect("a plain name is fine");
}

#[test]
fn malformed_patch_messages_are_invalid_syntax() {
    for body in [
        json!([]),
        json!({"Operations": [{"op": "add", "value": {}}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "merge"}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": 3}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ["add"]}),
    ] {
        let err = PatchRequest::from_json(&body).expect_err("malformed");
        assert_eq!(err.scim_type, Some(ScimType::InvalidSyntax), "{body}");
    }
}

#[test]
fn op_names_and_message_keys_are_case_insensitive() {
    let parsed = PatchRequest::from_json(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "operations": [{"OP": "REPLACE", "Path": "", "Value": {"active": false}}]
    }))
    .expect("valid");
    assert_eq!(
        parsed.operations,
        vec![PatchOperation {
            op: PatchOpKind::Replace,
            path: None,
            value: Some(json!({"active": false}))
        }]
    );
}

#[test]
fn add_of_null_changes_nothing_and_replace_with_null_clears() {
    let out =
        patch_user(json!([{"op": "add", "path": "displayName", "value": null}])).expect("valid");
    assert_eq!(out["displayName"], "Ada");
    let out = patch_user(json!([{"op": "replace", "path": "displayName", "value": null}]))
        .expect("valid");
    assert!(out.get("displayName").is_none());
}

#[test]
fn a_patch_with_too_many_operations_is_refused_before_any_is_applied() {
    let op = json!({"op": "replace", "path": "displayName", "value": "x"});
    let body = |n: usize| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": vec![op.clone(); n],
        })
    };
    assert!(PatchRequest::from_json(&body(MAX_OPERATIONS)).is_ok());
    let err = PatchRequest::from_json(&body(MAX_OPERATIONS + 1)).expect_err("refused");
    assert_eq!(
        (err.status, err.scim_type),
        (400, Some(ScimType::InvalidValue))
    );
    assert!(err.to_string().contains("at most 1000 operations"), "{err}");
}
