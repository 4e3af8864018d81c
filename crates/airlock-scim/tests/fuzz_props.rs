//! Fuzzing with arbitrary input, bounded so that it runs with the rest of the test suite
//! (`docs/fuzzing.md`; the longer, coverage-guided run is `scripts/fuzz.sh`).
//!
//! Three surfaces, each fed raw arbitrary input and grammar-aware input:
//! - the filter parser: never panics, is bounded in depth, prints what it parses so that it
//!   parses back equal, and what parses compiles and evaluates or fails cleanly;
//! - PATCH: any body and any path applied to a valid User and Group either fails with a 4xx
//!   [`ScimError`] and changes nothing, or yields a resource that still validates and is in
//!   the normal form (validating it again changes nothing but dropping `id`, `meta`, `groups`);
//! - the request body reader: any bytes are a JSON value or `400 invalidSyntax`, and whatever
//!   the endpoint then does with the value ends in a value or a 4xx error.
//!
//! No error detail may quote a value from the request: values carry [`MARKER`], and every
//! error is checked for it.
//!
//! Cases per property: `PROPTEST_CASES` when set, else the counts below (a few seconds each in
//! a debug build on two cores).

use airlock_scim::body::parse_json;
use airlock_scim::{
    apply_patch, apply_patch_in_place, replace_resource, validate_resource, Filter, ListQuery,
    PatchRequest, Path, ResourceType, ScimError, ScimType, MAX_FILTER_DEPTH,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// A value no error detail may contain.
const MARKER: &str = "Zq7marker";

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        // A failure is shrunk to something readable, not for minutes.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

fn user() -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "id": "u1",
        "meta": {"resourceType": "User", "lastModified": "2024-01-01T00:00:00Z", "version": "3"},
        "userName": "ada",
        "externalId": "ext-1",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "displayName": "Ada",
        "active": true,
        "emails": [
            {"value": "ada@work.example", "type": "work", "primary": true},
            {"value": "ada@home.example", "type": "home"}
        ],
        "phoneNumbers": [{"value": "+1 555", "type": "mobile"}],
        "roles": [{"value": "Viewer", "primary": true}],
        "groups": [{"value": "g1", "display": "Admins"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "Research",
            "manager": {"value": "u0"}
        }
    })
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g1",
        "meta": {"resourceType": "Group", "version": "1"},
        "displayName": "Airflow Admins",
        "members": [{"value": "u1", "display": "Ada"}, {"value": "u2"}]
    })
}

/// A stored resource is the normal form of a valid body plus `id` and `meta`.
fn stored(rt: ResourceType, body: &Value) -> Value {
    let mut resource = validate_resource(rt, body).expect("fixtures are valid");
    resource["id"] = body["id"].clone();
    resource["meta"] = body["meta"].clone();
    resource
}

/// A failure a client caused: 4xx, with a `scimType` where the status is 400, and no request
/// value in its detail.
fn check_client_error(err: &ScimError) -> Result<(), TestCaseError> {
    prop_assert!(
        (400..500).contains(&err.status),
        "not a client error: {err:?}"
    );
    if err.status == 400 {
        prop_assert!(err.scim_type.is_some(), "400 without scimType: {err:?}");
    }
    prop_assert!(
        !err.detail.contains(MARKER),
        "the detail quotes a request value: {err:?}"
    );
    Ok(())
}

// ---- grammar pieces ---------------------------------------------------------------------------

/// Attribute paths, real and not, in the spellings clients use.
fn attr_word() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(vec![
            "userName", "username", "USERNAME", "displayName", "active", "title", "externalId",
            "id", "password", "emails", "emails.value", "emails.type", "emails.primary",
            "emails.display", "name", "name.givenName", "name.familyName", "meta",
            "meta.lastModified", "meta.created", "meta.version", "members", "members.value",
            "members.display", "members.$ref", "groups", "groups.value", "roles", "roles.primary",
            "phoneNumbers", "phoneNumbers.value", "addresses", "addresses.country", "x509Certificates",
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName",
            "urn:ietf:params:scim:schemas:core:2.0:Group:displayName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName",
            "urn:x:y", "urn:", "a.b.c", "$ref", "value", "type", "primary", "display", "not",
        ])
        .prop_map(str::to_owned),
        1 => "[a-zA-Z$][a-zA-Z0-9_.:-]{0,12}",
    ]
}

/// Comparison literals: strings (some carrying [`MARKER`]), numbers, keywords, bad literals.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "\"ada\"", "\"ADA@work.example\"", "\"work\"", "\"\"", "\"True\"", "true", "false",
            "null", "1", "-0", "1.5e3", "1e400", "01", "\"\\u00e9\"", "\"\\ud800\"", "\"\\",
            "\"2024-01-01T00:00:00Z\"", "\"2024-13-45T99:00:00Z\"", "\"Zq7marker\"",
            "\"a\\\"Zq7marker\"", "TRUE", "nul",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>().prop_map(|s| Value::String(format!("{MARKER}{s}")).to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f}")),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

/// One token of filter text.
fn filter_token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => attr_word(),
        3 => proptest::sample::select(vec![
            "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "Pr", "and", "or",
            "AND", "not", "not (", "(", ")", "[", "]", "].", ".value", " ", "\t", "\"",
        ])
        .prop_map(str::to_owned),
        2 => literal(),
    ]
}

/// Filter-shaped text: mostly well-formed pieces in any order, joined by spaces.
fn filter_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::collection::vec(filter_token(), 0..40).prop_map(|t| t.join(" ")),
        1 => proptest::collection::vec(filter_token(), 0..40).prop_map(|t| t.concat()),
        4 => well_formed_filter(),
    ]
}

/// A comparison that is valid for the schema most of the time: the attribute's own kind of
/// literal.
fn typed_leaf() -> impl Strategy<Value = String> {
    let string_attr = proptest::sample::select(vec![
        "userName",
        "displayName",
        "title",
        "externalId",
        "id",
        "emails.value",
        "emails.type",
        "name.givenName",
        "members.value",
        "members.display",
        "phoneNumbers.value",
        "roles.value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    ]);
    let string_op = proptest::sample::select(vec!["eq", "ne", "co", "sw", "ew", "gt", "lt", "EQ"]);
    let string_lit = prop_oneof![
        proptest::sample::select(vec!["ada", "ADA", "work", "u1", "Airflow", "", "@"])
            .prop_map(|s| Value::from(s).to_string()),
        "[a-zA-Z0-9@. ]{0,8}".prop_map(|s| Value::String(format!("{MARKER}{s}")).to_string()),
    ];
    let date_attr = proptest::sample::select(vec!["meta.lastModified", "meta.created"]);
    let date_lit = proptest::sample::select(vec![
        "\"2024-01-01T00:00:00Z\"",
        "\"2023-12-31T23:00:00-01:00\"",
        "\"2024-01-01\"",
        "\"soon\"",
    ]);
    let order_op = proptest::sample::select(vec!["eq", "ne", "gt", "ge", "lt", "le"]);
    prop_oneof![
        4 => (string_attr, string_op, string_lit).prop_map(|(a, o, v)| format!("{a} {o} {v}")),
        2 => (proptest::sample::select(vec!["active", "emails.primary", "roles.primary"]),
              proptest::sample::select(vec!["eq", "ne"]),
              proptest::sample::select(vec!["true", "false", "\"True\""]))
            .prop_map(|(a, o, v)| format!("{a} {o} {v}")),
        1 => (date_attr, order_op, date_lit).prop_map(|(a, o, v)| format!("{a} {o} {v}")),
        2 => attr_word().prop_map(|a| format!("{a} pr")),
        1 => proptest::sample::select(vec![
            "emails[type eq \"work\" and value co \"@\"]", "members[value eq \"u1\"]",
            "emails[not (primary eq true)]", "roles[primary eq \"True\"]",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Filters that are well-formed by construction (valid for the schema or not).
fn well_formed_filter() -> impl Strategy<Value = String> {
    let op = proptest::sample::select(vec!["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]);
    let leaf = prop_oneof![
        4 => typed_leaf(),
        2 => (attr_word(), op, literal()).prop_map(|(a, o, v)| format!("{a} {o} {v}")),
        1 => attr_word().prop_map(|a| format!("{a} pr")),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            3 => proptest::collection::vec(inner.clone(), 2..4).prop_map(|t| t.join(" and ")),
            3 => proptest::collection::vec(inner.clone(), 2..4).prop_map(|t| t.join(" or ")),
            2 => inner.clone().prop_map(|f| format!("not ({f})")),
            2 => inner.clone().prop_map(|f| format!("({f})")),
            1 => (attr_word(), inner).prop_map(|(a, f)| format!("{a}[{f}]")),
        ]
    })
}

/// Checks everything the endpoint does with a filter.
fn exercise_filter(input: &str, resources: &[(ResourceType, Value)]) -> Result<(), TestCaseError> {
    let filter = match Filter::parse(input) {
        Ok(filter) => filter,
        Err(err) => {
            prop_assert_eq!(err.status, 400);
            prop_assert_eq!(err.scim_type, Some(ScimType::InvalidFilter));
            return check_client_error(&err);
        }
    };
    let printed = filter.to_string();
    let reparsed = Filter::parse(&printed);
    prop_assert_eq!(
        reparsed.as_ref().ok(),
        Some(&filter),
        "{:?} printed as {:?}",
        input,
        printed
    );
    for (rt, resource) in resources {
        match filter.compile(*rt) {
            Ok(compiled) => {
                // Evaluation cannot fail; `not` is its negation.
                let matched = compiled.matches(resource);
                let negated = Filter::Not(Box::new(filter.clone())).compile(*rt);
                if let Ok(negated) = negated {
                    prop_assert_eq!(negated.matches(resource), !matched, "{}", printed);
                }
            }
            Err(err) => check_client_error(&err)?,
        }
    }
    // A filter is also a PATCH value filter: the same text after an attribute is a path.
    let _ = Path::parse(&format!("emails[{input}]"));
    Ok(())
}

fn resources() -> Vec<(ResourceType, Value)> {
    vec![
        (ResourceType::User, stored(ResourceType::User, &user())),
        (ResourceType::Group, stored(ResourceType::Group, &group())),
    ]
}

proptest! {
    #![proptest_config(config(10000))]

    #[test]
    fn any_text_is_a_filter_or_an_invalid_filter_error(input in any::<String>()) {
        exercise_filter(&input, &resources())?;
        let _ = Path::parse(&input);
    }

    #[test]
    fn filter_shaped_text_parses_prints_back_and_evaluates_or_fails_cleanly(input in filter_text()) {
        exercise_filter(&input, &resources())?;
        let _ = Path::parse(&input);
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// Parentheses, `not (` and value filters nest at most [`MAX_FILTER_DEPTH`] levels; deeper is
    /// `invalidFilter`, not a stack overflow, and what is accepted evaluates.
    #[test]
    fn nesting_is_refused_past_the_limit_at_any_depth(
        depth in 0usize..400,
        opener in proptest::sample::select(vec!["(", "not (", "NOT(", "not ( ("]),
        value_filter in any::<bool>(),
    ) {
        let levels_per_opener = opener.matches('(').count();
        let inner = if value_filter { "emails[value pr]" } else { "userName pr" };
        let text = format!("{}{inner}{}", opener.repeat(depth), ")".repeat(depth * levels_per_opener));
        let levels = depth * levels_per_opener + usize::from(value_filter);
        match Filter::parse(&text) {
            Ok(filter) => {
                prop_assert!(levels <= MAX_FILTER_DEPTH, "{levels} levels accepted");
                let compiled = filter.compile(ResourceType::User);
                prop_assert!(compiled.is_ok(), "{:?}", compiled.err());
                if let Ok(compiled) = compiled {
                    let _ = compiled.matches(&stored(ResourceType::User, &user()));
                }
                prop_assert_eq!(Filter::parse(&filter.to_string()).ok(), Some(filter));
            }
            Err(err) => {
                prop_assert!(levels > MAX_FILTER_DEPTH || text.len() > airlock_scim::MAX_FILTER_LEN, "{levels} levels refused: {err:?}");
                prop_assert_eq!(err.scim_type, Some(ScimType::InvalidFilter));
            }
        }
    }
}

// ---- PATCH ------------------------------------------------------------------------------------

/// Arbitrary JSON, biased towards what a SCIM body holds; strings may carry [`MARKER`].
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(vec![
            "True", "false", "", "work", "u1", "u2", "g1", "ada", "Ada"
        ])
        .prop_map(Value::from),
        "[a-zA-Z0-9@. ]{0,10}".prop_map(|s| Value::String(format!("{MARKER}{s}"))),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((attr_word(), inner), 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// PATCH paths: attribute paths, value filters with and without a sub-attribute, whole
/// extensions, and arbitrary text.
fn patch_path() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => attr_word().prop_map(Value::from),
        3 => (attr_word(), well_formed_filter(), proptest::option::of(attr_word()))
            .prop_map(|(a, f, sub)| Value::from(match sub {
                Some(sub) => format!("{a}[{f}].{sub}"),
                None => format!("{a}[{f}]"),
            })),
        2 => proptest::sample::select(vec![
            "emails[type eq \"work\"].value", "emails[type eq \"other\"]", "members[value eq \"u2\"]",
            "members[value eq \"zz\"]", "roles[primary eq \"True\"]", "emails[primary eq true].type",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER", "", " ", "emails[",
            "emails[value pr]]", "members[display co \"A\"].value",
        ])
        .prop_map(Value::from),
        1 => filter_text().prop_map(Value::from),
        // Paths name attributes, which errors may quote: no marker here.
        1 => json_value().prop_map(|v| match v {
            Value::String(s) => Value::String(s.replace(MARKER, "m")),
            other => other,
        }),
    ]
}

/// Any operation: any verb (or not a verb), any path, any value.
fn any_operation() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        6 => proptest::sample::select(vec!["add", "remove", "replace", "Add", "Replace", "REMOVE"])
            .prop_map(Value::from),
        1 => json_value(),
    ];
    (
        op,
        proptest::option::of(patch_path()),
        proptest::option::of(json_value()),
    )
        .prop_map(|(op, path, value)| {
            let mut operation = Map::new();
            operation.insert("op".to_owned(), op);
            if let Some(path) = path {
                operation.insert("path".to_owned(), path);
            }
            if let Some(value) = value {
                operation.insert("value".to_owned(), value);
            }
            Value::Object(operation)
        })
}

fn text_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => "[a-zA-Z0-9@. ]{1,10}".prop_map(|s| Value::String(format!("{MARKER}{s}"))),
        1 => proptest::sample::select(vec!["ada", "Ada", "", "u1", "u3", "work", "home"]).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::String),
    ]
}

fn bool_value() -> impl Strategy<Value = Value> {
    proptest::sample::select(vec![
        json!(true),
        json!(false),
        json!("True"),
        json!("false"),
        json!("maybe"),
        json!(1),
    ])
}

fn multi_value(sub: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let element = proptest::collection::vec(
        (
            proptest::sample::select(sub),
            prop_oneof![3 => text_value(), 1 => bool_value()],
        ),
        1..4,
    )
    .prop_map(|fields| {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    });
    prop_oneof![
        3 => proptest::collection::vec(element.clone(), 0..3).prop_map(Value::Array),
        1 => element,
    ]
}

/// Operations that make sense for `rt` (most of them succeed), mixed with any operation.
fn schema_operation(rt: ResourceType) -> BoxedStrategy<Value> {
    let verb = proptest::sample::select(vec!["add", "replace", "Replace", "Add"]);
    let sensible = match rt {
        ResourceType::User => {
            let text_path = proptest::sample::select(vec![
                "displayName",
                "title",
                "nickName",
                "userType",
                "externalId",
                "name.givenName",
                "name.familyName",
                "name",
                "userName",
                "locale",
                "profileUrl",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                "emails[type eq \"work\"].value",
                "emails[type eq \"other\"].display",
                "phoneNumbers[type eq \"mobile\"].value",
                "password",
                "id",
                "meta.version",
            ]);
            let multi_path = proptest::sample::select(vec![
                ("emails", &["value", "type", "primary", "display"][..]),
                ("phoneNumbers", &["value", "type", "primary"][..]),
                ("roles", &["value", "primary", "display", "type"][..]),
                ("addresses", &["country", "locality", "primary", "type"][..]),
                ("groups", &["value", "display"][..]),
            ]);
            let removable = proptest::sample::select(vec![
                "title",
                "emails",
                "emails[type eq \"home\"]",
                "emails[primary eq true].type",
                "name.givenName",
                "name",
                "roles[primary eq \"True\"]",
                "userName",
                "active",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "phoneNumbers[value pr]",
                "emails[value ew \".example\"].display",
            ]);
            let object_key = proptest::sample::select(vec![
                "displayName",
                "name.givenName",
                "title",
                "active",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            ]);
            prop_oneof![
                4 => (verb.clone(), text_path, text_value())
                    .prop_map(|(op, path, value)| json!({"op": op, "path": path, "value": value})),
                2 => (verb.clone(), bool_value())
                    .prop_map(|(op, value)| json!({"op": op, "path": "active", "value": value})),
                3 => (verb.clone(), multi_path.prop_flat_map(|(path, sub)| (Just(path), multi_value(sub))))
                    .prop_map(|(op, (path, value))| json!({"op": op, "path": path, "value": value})),
                2 => removable.prop_map(|path| json!({"op": "remove", "path": path})),
                2 => (verb, proptest::collection::vec((object_key, prop_oneof![text_value(), bool_value()]), 1..3))
                    .prop_map(|(op, fields)| {
                        let value: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                        json!({"op": op, "value": value})
                    }),
            ]
            .boxed()
        }
        ResourceType::Group => {
            let member = proptest::sample::select(vec!["u1", "u2", "u3", "", "Zq7marker"])
                .prop_map(|id| json!({"value": id}));
            let members = proptest::collection::vec(member, 0..3).prop_map(Value::Array);
            prop_oneof![
                3 => (verb.clone(), proptest::sample::select(vec!["displayName", "externalId", "id", "members.value"]), text_value())
                    .prop_map(|(op, path, value)| json!({"op": op, "path": path, "value": value})),
                3 => (verb.clone(), members.clone())
                    .prop_map(|(op, value)| json!({"op": op, "path": "members", "value": value})),
                2 => (proptest::sample::select(vec!["u1", "u2", "u9"]), any::<bool>()).prop_map(|(id, filtered)| if filtered {
                    json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")})
                } else {
                    json!({"op": "remove", "path": "members", "value": [{"value": id}]})
                }),
                1 => Just(json!({"op": "remove", "path": "members"})),
                2 => (verb, text_value(), members)
                    .prop_map(|(op, name, members)| json!({"op": op, "value": {"displayName": name, "members": members}})),
            ]
            .boxed()
        }
    };
    prop_oneof![4 => sensible, 1 => any_operation()].boxed()
}

fn patch_body(rt: ResourceType) -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => proptest::collection::vec(schema_operation(rt), 1..5).prop_map(|operations| json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations,
        })),
        1 => json_value(),
    ]
}

/// Applies `body` to a stored resource and checks the outcome.
fn exercise_patch(rt: ResourceType, resource: &Value, body: &Value) -> Result<(), TestCaseError> {
    let request = match PatchRequest::from_json(body) {
        Ok(request) => request,
        Err(err) => return check_client_error(&err),
    };
    match apply_patch(rt, resource, &request) {
        Ok(patched) => {
            let revalidated = validate_resource(rt, &patched);
            prop_assert!(
                revalidated.is_ok(),
                "the patched resource no longer validates: {:?}\n{}",
                revalidated.err(),
                patched
            );
            if let Ok(again) = &revalidated {
                let mut expected = patched.clone();
                if let Some(map) = expected.as_object_mut() {
                    map.remove("id");
                    map.remove("meta");
                    map.remove("groups");
                }
                prop_assert_eq!(again, &expected, "not in normal form");
            }
            prop_assert_eq!(&patched["id"], &resource["id"], "id changed");
            let schemas = patched["schemas"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(
                schemas.first(),
                Some(&Value::from(rt.core_schema().id)),
                "schemas: {}",
                patched
            );
            let text = patched.to_string().to_ascii_lowercase();
            prop_assert!(
                !text.contains("\"password\""),
                "a password was stored: {}",
                patched
            );
            // The same request applied again gives the same result: PATCH is deterministic.
            prop_assert_eq!(apply_patch(rt, resource, &request).ok(), Some(patched));
        }
        Err(err) => {
            check_client_error(&err)?;
            let mut in_place = resource.clone();
            prop_assert!(apply_patch_in_place(rt, &mut in_place, &request).is_err());
            prop_assert_eq!(&in_place, resource, "a failed PATCH changed the resource");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(8000))]

    #[test]
    fn any_patch_of_a_user_fails_cleanly_or_leaves_a_valid_user(body in patch_body(ResourceType::User)) {
        exercise_patch(ResourceType::User, &stored(ResourceType::User, &user()), &body)?;
    }

    #[test]
    fn any_patch_of_a_group_fails_cleanly_or_leaves_a_valid_group(body in patch_body(ResourceType::Group)) {
        exercise_patch(ResourceType::Group, &stored(ResourceType::Group, &group()), &body)?;
    }
}

// ---- request bodies ---------------------------------------------------------------------------

/// Bytes near a valid body: one of the fixtures' texts with a few bytes replaced, inserted or
/// cut, so that the parser is driven deep into real-looking JSON.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    let seed = proptest::sample::select(vec![
        user().to_string(),
        group().to_string(),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "add", "path": "members", "value": [{"value": "u3"}]}]})
        .to_string(),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "filter": "userName eq \"ada\"", "startIndex": 1, "count": 10,
               "attributes": ["userName"], "sortBy": "userName"})
        .to_string(),
    ]);
    let edit = (
        any::<prop::sample::Index>(),
        0usize..3,
        proptest::collection::vec(any::<u8>(), 0..4),
    );
    prop_oneof![
        3 => (seed, proptest::collection::vec(edit, 0..4)).prop_map(|(seed, edits)| {
            let mut bytes = seed.into_bytes();
            for (at, kind, new) in edits {
                let at = at.index(bytes.len() + 1);
                match kind {
                    0 => { bytes.splice(at..at, new); }
                    1 => { bytes.truncate(at); }
                    _ => {
                        let end = (at + new.len()).min(bytes.len());
                        bytes.splice(at..end, new);
                    }
                }
            }
            bytes
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(config(8000))]

    /// What the endpoint does with a body, without the store: parse it, then read it as a
    /// PATCH, a POST, a PUT and a search, for both resource types.
    #[test]
    fn any_body_is_a_value_or_invalid_syntax_and_its_uses_fail_cleanly(bytes in body_bytes()) {
        let body = match parse_json(&bytes) {
            Ok(body) => body,
            Err(err) => {
                prop_assert_eq!(err.status, 400);
                prop_assert_eq!(err.scim_type, Some(ScimType::InvalidSyntax));
                return check_client_error(&err);
            }
        };
        for (rt, existing) in resources() {
            exercise_patch(rt, &existing, &body)?;
            match validate_resource(rt, &body) {
                // The normal form is a fixed point.
                Ok(valid) => prop_assert_eq!(validate_resource(rt, &valid).ok(), Some(valid)),
                Err(err) => check_client_error(&err)?,
            }
            match replace_resource(rt, &existing, &body) {
                Ok(replaced) => {
                    prop_assert_eq!(&replaced["id"], &existing["id"]);
                    prop_assert!(validate_resource(rt, &replaced).is_ok(), "{}", replaced);
                }
                Err(err) => check_client_error(&err)?,
            }
            if let Err(err) = ListQuery::from_search_request(rt, &body) {
                check_client_error(&err)?;
            }
        }
    }
}
