//! `POST .../.search` (RFC 7644 §3.4.3): the `SearchRequest` body read into a [`ListQuery`],
//! and the search across every resource type that `POST /.search` at the root asks for.
//!
//! A `SearchRequest` says in JSON what the query string of a GET list says: `filter`,
//! `attributes` and `excludedAttributes` (arrays of paths), `sortBy`, `sortOrder`,
//! `startIndex` and `count`. Other members are refused (`invalidValue`) so that a typo is
//! visible.
//!
//! Decisions for the root search: a resource type is searched when the request means
//! something for it (its filter, attributes and sort attribute resolve in that type's schema);
//! a request that means something for no type is refused with the User type's error. The
//! matches are the Users' then the Groups', each sorted by `sortBy` within its type, then
//! paged together.
//!
//! Not here: reading the resources (the caller passes every stored resource of each type).

use serde_json::Value;

use crate::error::ScimError;
use crate::json::get_ci;
use crate::query::{matching, ListQuery, ListResponse, Page};
use crate::schema::{ResourceType, SEARCH_REQUEST_MESSAGE};

/// The members a `SearchRequest` may carry besides `schemas`.
const MEMBERS: [&str; 7] = [
    "filter",
    "attributes",
    "excludedAttributes",
    "sortBy",
    "sortOrder",
    "startIndex",
    "count",
];

impl ListQuery {
    /// Reads a `SearchRequest` body for one resource type.
    ///
    /// Errors: `invalidSyntax` when the body is not an object or does not declare the
    /// `SearchRequest` schema, `invalidValue` for unknown members and wrongly typed ones, and
    /// whatever the query parameters themselves would give (`invalidFilter`, ...).
    pub fn from_search_request(
        resource_type: ResourceType,
        body: &Value,
    ) -> Result<Self, ScimError> {
        let params = search_params(body)?;
        ListQuery::from_params(
            resource_type,
            params.iter().map(|(name, value)| (*name, value.as_str())),
        )
    }
}

/// The `SearchRequest` as query parameters (name, value), in the canonical spelling.
fn search_params(body: &Value) -> Result<Vec<(&'static str, String)>, ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be a JSON object"))?;
    let declares = get_ci(object, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(SEARCH_REQUEST_MESSAGE))
            })
        });
    if !declares {
        return Err(ScimError::invalid_syntax(format!(
            "'schemas' must list {SEARCH_REQUEST_MESSAGE}"
        )));
    }
    if let Some(unknown) = object.keys().find(|key| {
        !key.eq_ignore_ascii_case("schemas") && !MEMBERS.iter().any(|m| m.eq_ignore_ascii_case(key))
    }) {
        return Err(ScimError::invalid_value(format!(
            "'{unknown}' is not a SearchRequest member"
        )));
    }
    let mut params = Vec::new();
    for name in MEMBERS {
        let Some(value) = get_ci(object, name) else {
            continue;
        };
        let text = match (name, value) {
            (_, Value::Null) => continue,
            ("attributes" | "excludedAttributes", Value::Array(items)) => {
                let paths: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                paths
                    .ok_or_else(|| {
                        ScimError::invalid_value(format!("'{name}' must be an array of strings"))
                    })?
                    .join(",")
            }
            ("attributes" | "excludedAttributes", Value::String(text)) => text.clone(),
            ("startIndex" | "count", Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| ScimError::invalid_value(format!("'{name}' must be an integer")))?
                .to_string(),
            ("filter" | "sortBy" | "sortOrder", Value::String(text)) => text.clone(),
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "'{name}' has the wrong type"
                )))
            }
        };
        params.push((name, text));
    }
    Ok(params)
}

/// The `ListResponse` of a root `POST /.search` over the stored resources of each type (in
/// the order given), capped at `max_results` per page.
pub fn search_all(
    stored: &[(ResourceType, &[Value])],
    body: &Value,
    max_results: usize,
) -> Result<Value, ScimError> {
    let mut first_error = None;
    let mut matched: Vec<(ResourceType, &ListQuery, &Value)> = Vec::new();
    let mut queries = Vec::new();
    for (resource_type, _) in stored {
        match ListQuery::from_search_request(*resource_type, body) {
            Ok(query) => queries.push(Some(query)),
            Err(err) if err.status == 400 && err.scim_type.is_some() => {
                first_error.get_or_insert(err);
                queries.push(None);
            }
            Err(err) => return Err(err),
        }
    }
    for ((resource_type, resources), query) in stored.iter().zip(&queries) {
        let Some(query) = query else { continue };
        for resource in matching(*resource_type, resources, query)? {
            matched.push((*resource_type, query, resource));
        }
    }
    let Some(query) = queries.iter().flatten().next() else {
        return Err(
            first_error.unwrap_or_else(|| ScimError::invalid_value("there is nothing to search"))
        );
    };
    let page = Page::new(query.start_index, query.count, max_results);
    let total = matched.len();
    let resources = matched[page.range(total)]
        .iter()
        .map(|(resource_type, query, resource)| query.projection.project(*resource_type, resource))
        .collect();
    Ok(ListResponse {
        total_results: total,
        start_index: page.start_index,
        resources,
    }
    .to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use serde_json::json;

    fn users() -> Vec<Value> {
        ["carol", "alice", "bob"]
            .iter()
            .map(|name| {
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "id": format!("u-{name}"),
                    "userName": name,
                    "displayName": name.to_uppercase(),
                    "meta": {"resourceType": "User"},
                })
            })
            .collect()
    }

    fn groups() -> Vec<Value> {
        vec![json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g-ops",
            "displayName": "Ops",
            "meta": {"resourceType": "Group"},
        })]
    }

    fn request(members: Value) -> Value {
        let mut body = json!({"schemas": [SEARCH_REQUEST_MESSAGE]});
        for (key, value) in members.as_object().expect("test members are an object") {
            body[key] = value.clone();
        }
        body
    }

    #[test]
    fn a_search_request_says_what_the_query_string_says() {
        let body = request(json!({
            "filter": "userName sw \"b\" or userName eq \"carol\"",
            "attributes": ["userName"],
            "sortBy": "userName",
            "sortOrder": "descending",
            "startIndex": 1,
            "count": 1,
        }));
        let query = ListQuery::from_search_request(ResourceType::User, &body).expect("valid");
        let users = users();
        let page = crate::list_response(ResourceType::User, &users, &query, 100).expect("lists");
        assert_eq!(page["totalResults"], 2);
        assert_eq!(
            page["Resources"],
            json!([{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u-carol", "userName": "carol"}])
        );
    }

    #[test]
    fn a_search_request_must_declare_its_schema_and_only_known_members() {
        let missing =
            ListQuery::from_search_request(ResourceType::User, &json!({"filter": "userName pr"}))
                .expect_err("no schemas");
        assert_eq!(missing.scim_type, Some(ScimType::InvalidSyntax));
        let unknown =
            ListQuery::from_search_request(ResourceType::User, &request(json!({"filtr": "x"})))
                .expect_err("unknown member");
        assert_eq!(unknown.scim_type, Some(ScimType::InvalidValue));
        let wrong =
            ListQuery::from_search_request(ResourceType::User, &request(json!({"count": "ten"})))
                .expect_err("count is a number");
        assert_eq!(wrong.scim_type, Some(ScimType::InvalidValue));
        let bad_filter = ListQuery::from_search_request(
            ResourceType::User,
            &request(json!({"filter": "userName xx 1"})),
        )
        .expect_err("bad filter");
        assert_eq!(bad_filter.scim_type, Some(ScimType::InvalidFilter));
    }

    #[test]
    fn the_root_search_covers_every_type_its_filter_means_something_for() {
        let (users, groups) = (users(), groups());
        let stored = [
            (ResourceType::User, users.as_slice()),
            (ResourceType::Group, groups.as_slice()),
        ];
        let all = search_all(&stored, &request(json!({})), 100).expect("searches");
        assert_eq!(all["totalResults"], 4);
        let by_name = search_all(
            &stored,
            &request(json!({"filter": "displayName eq \"ops\" or displayName eq \"alice\""})),
            100,
        )
        .expect("searches");
        assert_eq!(by_name["totalResults"], 2);
        let only_users = search_all(
            &stored,
            &request(json!({"filter": "userName pr", "count": 2})),
            100,
        )
        .expect("searches");
        assert_eq!(only_users["totalResults"], 3);
        assert_eq!(only_users["itemsPerPage"], 2);
        let nowhere = search_all(&stored, &request(json!({"filter": "nosuch eq 1"})), 100)
            .expect_err("means nothing anywhere");
        assert_eq!(nowhere.status, 400);
    }
}
