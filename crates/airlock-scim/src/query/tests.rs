//! Unit tests for query parameters, projection, sorting and paging.

use serde_json::{json, Value};

use super::*;
use crate::error::ScimType;
use crate::schema::ENTERPRISE_USER_SCHEMA;

fn user(id: &str, user_name: &str, modified: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
        "id": id,
        "userName": user_name,
        "password": "secret",
        "name": {"givenName": "G", "familyName": "F"},
        "emails": [{"value": format!("{user_name}@example.com"), "type": "work"}],
        "meta": {"resourceType": "User", "lastModified": modified},
        "internalNote": "never leaves the server",
        ENTERPRISE_USER_SCHEMA: {"department": "R&D", "employeeNumber": "7"}
    })
}

fn users() -> Vec<Value> {
    vec![
        user("1", "carol", "2024-03-01T00:00:00Z"),
        user("2", "Alice", "2024-01-01T00:00:00Z"),
        user("3", "bob", "2024-02-01T00:00:00Z"),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "4", "userName": "dave"}),
    ]
}

fn query(params: &[(&str, &str)]) -> ListQuery {
    ListQuery::from_params(ResourceType::User, params.iter().copied()).expect("valid query")
}

fn list(params: &[(&str, &str)], max: usize) -> Value {
    list_response(ResourceType::User, &users(), &query(params), max).expect("valid")
}

fn ids(response: &Value) -> Vec<String> {
    response["Resources"]
        .as_array()
        .map(|resources| {
            resources
                .iter()
                .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_list_response_has_the_rfc_shape() {
    let response = list(&[("filter", r#"userName eq "bob""#)], 100);
    assert_eq!(response["schemas"], json!([LIST_RESPONSE_MESSAGE]));
    assert_eq!(response["totalResults"], 1);
    assert_eq!(response["startIndex"], 1);
    assert_eq!(response["itemsPerPage"], 1);
    assert_eq!(ids(&response), vec!["3"]);
}

#[test]
fn passwords_and_unknown_keys_are_never_returned() {
    let response = list(&[("attributes", "password,userName")], 100);
    for resource in response["Resources"].as_array().into_iter().flatten() {
        assert!(resource.get("password").is_none());
        assert!(resource.get("internalNote").is_none());
    }
}

#[test]
fn attributes_keeps_only_what_was_asked_plus_id_and_schemas() {
    let projection = Projection::parse(
        ResourceType::User,
        Some("userName, name.givenName, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
        None,
    )
    .expect("valid");
    let out = projection.project(
        ResourceType::User,
        &user("1", "carol", "2024-03-01T00:00:00Z"),
    );
    assert_eq!(
        out,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
            "id": "1",
            "userName": "carol",
            "name": {"givenName": "G"},
            ENTERPRISE_USER_SCHEMA: {"department": "R&D"}
        })
    );
}

#[test]
fn excluded_attributes_removes_all_but_always_returned_ones() {
    let projection = Projection::parse(
        ResourceType::User,
        None,
        Some("id,schemas,emails,name.familyName,meta,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
    )
    .expect("valid");
    let out = projection.project(
        ResourceType::User,
        &user("1", "carol", "2024-03-01T00:00:00Z"),
    );
    assert_eq!(
        out,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
            "id": "1",
            "userName": "carol",
            "name": {"givenName": "G"}
        })
    );
}

#[test]
fn attribute_names_in_projections_are_case_insensitive_and_unknown_ones_ignored() {
    let projection =
        Projection::parse(ResourceType::User, Some("USERNAME,shoeSize"), None).expect("valid");
    let out = projection.project(
        ResourceType::User,
        &user("1", "carol", "2024-03-01T00:00:00Z"),
    );
    assert_eq!(out["userName"], "carol");
    assert!(out.get("emails").is_none());
    let err = Projection::parse(ResourceType::User, Some("emails["), None).expect_err("bad");
    assert_eq!(err.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn paging_is_one_based_and_clamped() {
    let page = list(&[("startIndex", "2"), ("count", "2")], 100);
    assert_eq!(ids(&page), vec!["2", "3"]);
    assert_eq!(page["totalResults"], 4);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 2);

    let below_one = list(&[("startIndex", "-5"), ("count", "1")], 100);
    assert_eq!(below_one["startIndex"], 1);
    assert_eq!(ids(&below_one), vec!["1"]);

    let negative_count = list(&[("count", "-1")], 100);
    assert_eq!(negative_count["itemsPerPage"], 0);
    assert_eq!(negative_count["totalResults"], 4);
    assert_eq!(negative_count["Resources"], json!([]));

    let capped = list(&[("count", "1000")], 3);
    assert_eq!(capped["itemsPerPage"], 3);
    let defaulted = list(&[], 2);
    assert_eq!(defaulted["itemsPerPage"], 2);

    let past_the_end = list(&[("startIndex", "99")], 100);
    assert_eq!(past_the_end["itemsPerPage"], 0);
    assert_eq!(past_the_end["startIndex"], 99);
}

#[test]
fn page_ranges_never_overflow() {
    let page = Page::new(usize::MAX, Some(usize::MAX), usize::MAX);
    assert_eq!(page.range(10), 10..10);
    assert_eq!(Page::new(0, None, 5).range(3), 0..3);
}

#[test]
fn sorting_follows_case_exactness_and_puts_missing_values_last() {
    let by_name = list(&[("sortBy", "userName")], 100);
    assert_eq!(
        ids(&by_name),
        vec!["2", "3", "1", "4"],
        "alice, bob, carol, dave"
    );
    let descending = list(&[("sortBy", "userName"), ("sortOrder", "DESCENDING")], 100);
    assert_eq!(ids(&descending), vec!["4", "1", "3", "2"]);
    let by_date = list(&[("sortBy", "meta.lastModified")], 100);
    assert_eq!(ids(&by_date), vec!["2", "3", "1", "4"], "dave has no meta");
    let by_date_desc = list(
        &[("sortBy", "meta.lastModified"), ("sortOrder", "descending")],
        100,
    );
    assert_eq!(ids(&by_date_desc), vec!["1", "3", "2", "4"]);
    let by_email = list(&[("sortBy", "emails")], 100);
    assert_eq!(ids(&by_email), vec!["2", "3", "1", "4"]);
}

#[test]
fn bad_parameters_are_rejected_before_anything_is_read() {
    let bad = |params: &[(&str, &str)]| {
        ListQuery::from_params(ResourceType::User, params.iter().copied())
            .expect_err("invalid")
            .scim_type
    };
    assert_eq!(
        bad(&[("filter", "userName eq")]),
        Some(ScimType::InvalidFilter)
    );
    assert_eq!(
        bad(&[("filter", "shoeSize pr")]),
        Some(ScimType::InvalidFilter)
    );
    assert_eq!(bad(&[("sortBy", "shoeSize")]), Some(ScimType::InvalidValue));
    assert_eq!(bad(&[("sortBy", "password")]), Some(ScimType::InvalidValue));
    assert_eq!(bad(&[("sortBy", "name")]), Some(ScimType::InvalidValue));
    assert_eq!(bad(&[("sortOrder", "up")]), Some(ScimType::InvalidValue));
    assert_eq!(bad(&[("startIndex", "one")]), Some(ScimType::InvalidValue));
    assert_eq!(bad(&[("count", "1.5")]), Some(ScimType::InvalidValue));
}

#[test]
fn filters_select_before_paging() {
    let response = list(
        &[
            ("filter", r#"emails[type eq "work"]"#),
            ("count", "1"),
            ("sortBy", "userName"),
        ],
        100,
    );
    assert_eq!(response["totalResults"], 3);
    assert_eq!(ids(&response), vec!["2"]);
}
