//! Property tests: the filter parser never panics and round-trips its printer, `not (F)` is
//! the negation of `F`, and a PATCH whose last operation fails changes nothing.

use airlock_scim::{
    apply_patch, apply_patch_in_place, AttrPath, CompValue, CompareOp, Filter, PatchRequest, Path,
    ResourceType,
};
use proptest::prelude::*;
use serde_json::{json, Number, Value};

// ---- syntax ---------------------------------------------------------------------------------

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
        1 => Just("$ref".to_owned()),
    ]
}

fn schema_urn() -> impl Strategy<Value = String> {
    "urn:[a-zA-Z0-9]{1,6}(:[a-zA-Z0-9.-]{1,6}){0,4}"
}

fn attr_path(with_sub: bool) -> impl Strategy<Value = AttrPath> {
    let sub = if with_sub {
        proptest::option::of(attr_name()).boxed()
    } else {
        Just(None).boxed()
    };
    (proptest::option::of(schema_urn()), attr_name(), sub).prop_map(|(schema, name, sub_attr)| {
        AttrPath {
            schema,
            name,
            sub_attr,
        }
    })
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i64>().prop_map(|n| CompValue::Number(Number::from(n))),
        any::<u64>().prop_map(|n| CompValue::Number(Number::from(n))),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(CompValue::Number),
        any::<String>().prop_map(CompValue::String),
    ]
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    proptest::sample::select(CompareOp::ALL.to_vec())
}

fn leaf() -> impl Strategy<Value = Filter> {
    prop_oneof![
        (attr_path(true), compare_op(), comp_value())
            .prop_map(|(attr, op, value)| Filter::Compare { attr, op, value }),
        attr_path(true).prop_map(|attr| Filter::Present { attr }),
    ]
}

fn combine(inner: impl Strategy<Value = Filter> + Clone + 'static) -> BoxedStrategy<Filter> {
    prop_oneof![
        proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
        proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::Or),
        inner.prop_map(|f| Filter::Not(Box::new(f))),
    ]
    .boxed()
}

/// Filters without value paths: what may appear inside `[...]`.
fn value_filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 16, 3, combine)
}

fn filter() -> impl Strategy<Value = Filter> {
    let value_path =
        (attr_path(false), value_filter()).prop_map(|(attr, filter)| Filter::ValuePath {
            attr,
            filter: Box::new(filter),
        });
    prop_oneof![3 => leaf(), 1 => value_path].prop_recursive(4, 32, 3, combine)
}

proptest! {
    #[test]
    fn parsing_arbitrary_text_never_panics(input in any::<String>()) {
        let _ = Filter::parse(&input);
        let _ = Path::parse(&input);
        let _ = AttrPath::parse(&input);
    }

    #[test]
    fn parsing_filter_like_text_never_panics(
        input in r#"[a-zA-Z0-9 .:$_\[\]()"\\-]{0,120}|(not \(|\(|\[|"|\\|é|eq |pr| and | or ){0,40}"#
    ) {
        if let Ok(filter) = Filter::parse(&input) {
            // Anything that parses also compiles or fails cleanly.
            let _ = filter.compile(ResourceType::User);
            let _ = filter.compile(ResourceType::Group);
        }
        let _ = Path::parse(&input);
    }

    #[test]
    fn parse_of_print_is_the_identity(filter in filter()) {
        let printed = filter.to_string();
        let parsed = Filter::parse(&printed);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&filter), "printed as {}", printed);
    }

    #[test]
    fn patch_paths_round_trip(attr in attr_path(true), filter in proptest::option::of(value_filter())) {
        let path = Path { attr, filter };
        let printed = path.to_string();
        prop_assert_eq!(Path::parse(&printed).ok(), Some(path), "printed as {}", printed);
    }
}

// ---- semantics ------------------------------------------------------------------------------

const STRINGS: &[&str] = &[
    "ada",
    "Ada",
    "ADA@example.com",
    "ada@example.com",
    "work",
    "home",
    "CEO",
    "ceo",
    "",
];
const DATES: &[&str] = &[
    "2024-01-01T00:00:00Z",
    "2024-01-01T01:00:00+01:00",
    "2025-06-30T12:00:00Z",
];

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_owned)
}

fn user_resource() -> impl Strategy<Value = Value> {
    let email = (
        pick(STRINGS),
        pick(&["work", "home", "Work"]),
        proptest::option::of(any::<bool>()),
    );
    (
        pick(&["ada", "Ada", "bob"]),
        proptest::option::of(pick(STRINGS)),
        proptest::option::of(any::<bool>()),
        proptest::collection::vec(email, 0..3),
        proptest::option::of(pick(DATES)),
        proptest::option::of(pick(STRINGS)),
    )
        .prop_map(|(user_name, title, active, emails, modified, external_id)| {
            let mut user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "userName": user_name});
            if let Some(title) = title { user["title"] = json!(title); }
            if let Some(active) = active { user["active"] = json!(active); }
            if let Some(modified) = modified { user["meta"] = json!({"lastModified": modified}); }
            if let Some(external_id) = external_id { user["externalId"] = json!(external_id); }
            user["emails"] = emails
                .into_iter()
                .map(|(value, kind, primary)| {
                    let mut email = json!({"value": value, "type": kind});
                    if let Some(primary) = primary { email["primary"] = json!(primary); }
                    email
                })
                .collect();
            user
        })
}

fn semantic_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        4 => pick(STRINGS).prop_map(CompValue::String),
        2 => pick(DATES).prop_map(CompValue::String),
        2 => any::<bool>().prop_map(CompValue::Bool),
        1 => Just(CompValue::String("True".to_owned())),
        1 => Just(CompValue::Null),
        1 => Just(CompValue::Number(Number::from(1))),
    ]
}

fn semantic_leaf(attributes: &'static [&'static str]) -> impl Strategy<Value = Filter> {
    let attr = proptest::sample::select(attributes)
        .prop_map(|path| AttrPath::parse(path).unwrap_or_else(|_| AttrPath::new(path)));
    prop_oneof![
        4 => (attr.clone(), compare_op(), semantic_value())
            .prop_map(|(attr, op, value)| Filter::Compare { attr, op, value }),
        1 => attr.prop_map(|attr| Filter::Present { attr }),
    ]
}

fn semantic_filter() -> impl Strategy<Value = Filter> {
    const TOP: &[&str] = &[
        "userName",
        "title",
        "active",
        "emails",
        "emails.value",
        "emails.type",
        "emails.primary",
        "externalId",
        "id",
        "meta.lastModified",
        "name.givenName",
    ];
    const EMAIL: &[&str] = &["value", "type", "primary"];
    let value_path = semantic_leaf(EMAIL)
        .prop_recursive(2, 6, 2, combine)
        .prop_map(|filter| Filter::ValuePath {
            attr: AttrPath::new("emails"),
            filter: Box::new(filter),
        });
    prop_oneof![3 => semantic_leaf(TOP), 1 => value_path].prop_recursive(3, 16, 3, combine)
}

proptest! {
    #[test]
    fn not_is_the_negation_wherever_the_filter_is_valid(filter in semantic_filter(), user in user_resource()) {
        let negated = Filter::Not(Box::new(filter.clone()));
        match filter.compile(ResourceType::User) {
            Ok(compiled) => {
                let negated = negated.compile(ResourceType::User);
                prop_assert!(negated.is_ok());
                if let Ok(negated) = negated {
                    prop_assert_eq!(negated.matches(&user), !compiled.matches(&user));
                }
            }
            Err(err) => prop_assert_eq!(negated.compile(ResourceType::User).err(), Some(err)),
        }
    }

    #[test]
    fn de_morgan_holds_for_valid_filters(a in semantic_filter(), b in semantic_filter(), user in user_resource()) {
        let not = |f: Filter| Filter::Not(Box::new(f));
        let left = not(Filter::And(vec![a.clone(), b.clone()]));
        let right = Filter::Or(vec![not(a), not(b)]);
        if let (Ok(left), Ok(right)) = (left.compile(ResourceType::User), right.compile(ResourceType::User)) {
            prop_assert_eq!(left.matches(&user), right.matches(&user));
        }
    }
}

// ---- PATCH atomicity ------------------------------------------------------------------------

fn valid_operation() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-zA-Z ]{1,12}".prop_map(|v| json!({"op": "replace", "path": "displayName", "value": v})),
        "[a-zA-Z ]{1,12}".prop_map(|v| json!({"op": "Add", "path": "title", "value": v})),
        Just(json!({"op": "remove", "path": "title"})),
        prop_oneof![Just(json!(true)), Just(json!(false)), Just(json!("False")), Just(json!("True"))]
            .prop_map(|v| json!({"op": "Replace", "value": {"active": v}})),
        ("[a-z]{1,8}", pick(&["work", "home"])).prop_map(|(local, kind)| {
            json!({"op": "add", "path": "emails", "value": [{"value": format!("{local}@example.com"), "type": kind}]})
        }),
        Just(json!({"op": "remove", "path": "emails[type eq \"home\"]"})),
        "[a-zA-Z]{1,8}".prop_map(|v| json!({"op": "replace", "value": {"name.givenName": v}})),
        "[a-zA-Z]{1,8}".prop_map(|v| json!({
            "op": "add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            "value": v
        })),
        "[a-z]{1,8}".prop_map(|v| json!({"op": "Add", "path": "emails[type eq \"work\"].value", "value": format!("{v}@example.com")})),
    ]
}

fn failing_operation() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"op": "remove"})),
        Just(json!({"op": "replace", "path": "id", "value": "someone-else"})),
        Just(json!({"op": "add", "path": "shoeSize", "value": "9"})),
        Just(json!({"op": "replace", "path": "active", "value": "maybe"})),
        Just(json!({"op": "remove", "path": "userName"})),
        Just(
            json!({"op": "replace", "path": "emails[value co \"zz-nomatch\"].display", "value": "x"})
        ),
        Just(json!({"op": "add", "path": "groups", "value": [{"value": "g1"}]})),
        Just(json!({"op": "replace", "path": "emails[", "value": "x"})),
    ]
}

proptest! {
    #[test]
    fn a_patch_whose_last_operation_fails_changes_nothing(
        user in user_resource(),
        valid in proptest::collection::vec(valid_operation(), 0..6),
        failing in failing_operation(),
    ) {
        let message = |operations: Vec<Value>| {
            PatchRequest::from_json(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": operations,
            }))
        };
        if !valid.is_empty() {
            let request = message(valid.clone());
            prop_assert!(request.is_ok());
            if let Ok(request) = request {
                let applied = apply_patch(ResourceType::User, &user, &request);
                prop_assert!(applied.is_ok(), "the valid prefix must apply: {:?}", applied.err());
            }
        }
        let mut operations = valid;
        operations.push(failing);
        let request = message(operations);
        prop_assert!(request.is_ok());
        if let Ok(request) = request {
            let mut resource = user.clone();
            let before = serde_json::to_vec(&resource).unwrap_or_default();
            let result = apply_patch_in_place(ResourceType::User, &mut resource, &request);
            prop_assert!(result.is_err());
            prop_assert_eq!(serde_json::to_vec(&resource).unwrap_or_default(), before);
        }
    }
}
