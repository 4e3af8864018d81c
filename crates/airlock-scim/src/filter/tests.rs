//! Unit tests for filter parsing, printing and evaluation, including every example filter
//! in RFC 7644 §3.4.2.2.

use serde_json::{json, Value};

use super::*;
use crate::error::ScimType;

fn parse(input: &str) -> Filter {
    Filter::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
}

fn present(name: &str) -> Filter {
    Filter::Present {
        attr: AttrPath::new(name),
    }
}

fn user() -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "externalId": "ABC-1",
        "userName": "BJensen",
        "name": {"familyName": "O'Malley", "givenName": "Barbara"},
        "title": "",
        "userType": "Employee",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "roles": [{"value": "admin", "primary": "True"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z", "version": "W/\"3694e05e9dff591\""},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        }
    })
}

fn matches(filter: &str) -> bool {
    parse(filter)
        .matches(ResourceType::User, &user())
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
}

fn compile_error(filter: &str) -> ScimError {
    parse(filter).compile(ResourceType::User).expect_err(filter)
}

#[test]
fn every_filter_example_in_rfc_7644_parses() {
    let examples = [
        r#"userName eq "bjensen""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ];
    for example in examples {
        let filter = parse(example);
        assert_eq!(parse(&filter.to_string()), filter, "{example}");
        if !example.contains("ims[") {
            filter
                .compile(ResourceType::User)
                .unwrap_or_else(|e| panic!("{example}: {e}"));
        }
    }
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_and() {
    assert_eq!(
        parse("a pr or b pr and c pr"),
        Filter::Or(vec![
            present("a"),
            Filter::And(vec![present("b"), present("c")])
        ])
    );
    assert_eq!(
        parse("not (a pr) and b pr"),
        Filter::And(vec![Filter::Not(Box::new(present("a"))), present("b")])
    );
    assert_eq!(
        parse("(a pr or b pr) and c pr"),
        Filter::And(vec![
            Filter::Or(vec![present("a"), present("b")]),
            present("c")
        ])
    );
}

#[test]
fn chains_of_one_operator_are_flat_and_groups_are_kept() {
    assert_eq!(
        parse("a pr and b pr and c pr"),
        Filter::And(vec![present("a"), present("b"), present("c")])
    );
    let grouped = parse("(a pr and b pr) and c pr");
    assert_eq!(
        grouped,
        Filter::And(vec![
            Filter::And(vec![present("a"), present("b")]),
            present("c")
        ])
    );
    assert_eq!(grouped.to_string(), "(a pr and b pr) and c pr");
    assert_eq!(parse("((a pr))"), present("a"));
}

#[test]
fn operators_keywords_and_literals_are_case_insensitive() {
    assert_eq!(
        parse(r#"userName EQ "x" AND active Eq TRUE OR title Pr"#),
        parse(r#"userName eq "x" and active eq true or title pr"#)
    );
    assert_eq!(
        parse("NOT (x eq NULL)"),
        Filter::Not(Box::new(Filter::Compare {
            attr: AttrPath::new("x"),
            op: CompareOp::Eq,
            value: CompValue::Null
        }))
    );
}

#[test]
fn not_without_a_parenthesis_is_an_attribute_name() {
    assert_eq!(
        parse(r#"not eq "x""#),
        Filter::Compare {
            attr: AttrPath::new("not"),
            op: CompareOp::Eq,
            value: CompValue::String("x".to_owned())
        }
    );
}

#[test]
fn literals_are_json() {
    assert_eq!(
        parse(r#"a eq "tab\there \"q\" \u00e9""#),
        Filter::Compare {
            attr: AttrPath::new("a"),
            op: CompareOp::Eq,
            value: CompValue::String("tab\there \"q\" é".to_owned())
        }
    );
    assert_eq!(
        parse("a gt -12.5e1"),
        Filter::Compare {
            attr: AttrPath::new("a"),
            op: CompareOp::Gt,
            value: CompValue::Number(Number::from_f64(-125.0).expect("finite"))
        }
    );
    assert!(Filter::parse(r#"a eq "bad \q escape""#).is_err());
    assert!(Filter::parse("a eq 01").is_err());
}

#[test]
fn parse_errors_carry_the_position_and_scim_type() {
    let cases = [
        ("userName eq", 12, "comparison value"),
        (r#"userName xx "a""#, 10, "operator"),
        (r#"userName eq "a" and"#, 20, "attribute path"),
        (r#"(userName eq "a""#, 17, "')'"),
        (r#"userName eq "a" userName"#, 17, "end of the input"),
        (r#"emails[type eq "work""#, 22, "']'"),
        ("é pr", 1, "unexpected character"),
        (r#"a eq "x" and é pr"#, 14, "unexpected character"),
    ];
    for (input, position, expected) in cases {
        let err = Filter::parse(input).expect_err(input);
        assert_eq!(err.status, 400);
        assert_eq!(err.scim_type, Some(ScimType::InvalidFilter));
        assert!(
            err.detail.ends_with(&format!("at position {position}")),
            "{input}: {}",
            err.detail
        );
        assert!(err.detail.contains(expected), "{input}: {}", err.detail);
    }
}

#[test]
fn parse_errors_never_quote_the_input() {
    for input in [
        r#"password eq "hunter2"#,
        r#"password eq "hunter2" hunter3"#,
        "password eq hunter2",
        r#"emails[value eq "hunter2"][x pr]"#,
    ] {
        let err = Filter::parse(input).expect_err(input);
        assert!(!err.detail.contains("hunter"), "{}", err.detail);
    }
}

#[test]
fn nesting_is_limited_to_64_levels() {
    let nested = |depth: usize| format!("{}a pr{}", "(".repeat(depth), ")".repeat(depth));
    assert!(Filter::parse(&nested(MAX_FILTER_DEPTH)).is_ok());
    let err = Filter::parse(&nested(MAX_FILTER_DEPTH + 1)).expect_err("too deep");
    assert!(err.detail.contains("64-level"), "{}", err.detail);
    let nots = format!("{}a pr{}", "not (".repeat(65), ")".repeat(65));
    assert!(Filter::parse(&nots).is_err());
}

#[test]
fn filters_longer_than_8_kib_are_refused() {
    let long = format!(r#"userName eq "{}""#, "x".repeat(MAX_FILTER_LEN));
    let err = Filter::parse(&long).expect_err("too long");
    assert_eq!(err.scim_type, Some(ScimType::InvalidFilter));
    assert!(err.detail.contains("8192"), "{}", err.detail);
}

#[test]
fn a_long_and_chain_stays_flat() {
    let chain = vec!["a pr"; 800].join(" and ");
    match parse(&chain) {
        Filter::And(terms) => assert_eq!(terms.len(), 800),
        other => panic!("expected a flat and, got {other:?}"),
    }
}

#[test]
fn strings_compare_case_insensitively_unless_case_exact() {
    assert!(matches(r#"userName eq "bjensen""#));
    assert!(matches(r#"USERNAME eq "BJENSEN""#));
    assert!(matches(r#"emails.value eq "BJENSEN@EXAMPLE.COM""#));
    assert!(matches(r#"externalId eq "ABC-1""#));
    assert!(!matches(r#"externalId eq "abc-1""#));
    assert!(!matches(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
}

#[test]
fn substring_and_ordering_operators_work_on_strings() {
    assert!(matches(r#"name.familyName co "o'mal""#));
    assert!(matches(r#"userName sw "bj""#));
    assert!(matches(r#"userName ew "SEN""#));
    assert!(matches(r#"userName gt "a" and userName lt "c""#));
    assert!(matches(
        r#"userName ge "bjensen" and userName le "bjensen""#
    ));
}

#[test]
fn multi_valued_attributes_match_when_any_value_matches() {
    assert!(matches(r#"emails.value eq "babs@jensen.org""#));
    assert!(matches(r#"emails co "jensen.org""#));
    assert!(matches(r#"emails.type eq "home""#));
    assert!(matches(
        r#"emails[type eq "work" and value co "@example.com"]"#
    ));
    assert!(!matches(
        r#"emails[type eq "home" and value co "@example.com"]"#
    ));
}

#[test]
fn ne_matches_a_differing_value_or_no_value() {
    assert!(matches(r#"userType ne "Intern""#));
    assert!(!matches(r#"userType ne "employee""#));
    assert!(matches(r#"nickName ne "Babs""#));
    assert!(!matches(r#"nickName eq "Babs""#));
}

#[test]
fn pr_means_present_and_not_empty() {
    assert!(matches("userName pr"));
    assert!(matches("emails pr"));
    assert!(!matches("title pr"), "an empty string is not present");
    assert!(!matches("nickName pr"));
    assert!(matches("title eq null"));
    assert!(matches("userName ne null"));
    let no_emails = json!({"userName": "x", "emails": []});
    assert!(!parse("emails pr")
        .matches(ResourceType::User, &no_emails)
        .expect("valid"));
}

#[test]
fn date_times_compare_as_instants() {
    assert!(matches(
        r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#
    ));
    assert!(matches(
        r#"meta.lastModified gt "2011-05-13T04:42:33.999Z""#
    ));
    assert!(!matches(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#));
    assert!(matches(r#"meta.lastModified ge "2011-05-13T04:42:34Z""#));
    assert!(matches(r#"meta.lastModified lt "2012-01-01T00:00:00Z""#));
    assert!(matches(r#"meta.lastModified sw "2011-05""#));
    let err = compile_error(r#"meta.lastModified gt "yesterday""#);
    assert_eq!(err.scim_type, Some(ScimType::InvalidFilter));
    assert!(!err.detail.contains("yesterday"));
}

#[test]
fn booleans_accept_eq_and_ne_and_string_booleans() {
    assert!(matches("active eq true"));
    assert!(matches("active ne false"));
    assert!(matches(r#"active eq "True""#));
    assert!(matches(r#"roles[primary eq "True"]"#));
}

#[test]
fn invalid_comparisons_are_invalid_filter() {
    for filter in [
        "active gt true",
        r#"active co "t""#,
        r#"active eq "maybe""#,
        "userName eq true",
        "userName eq 42",
        "userName gt null",
        "name eq \"x\"",
        "nope eq \"x\"",
        "name.nope pr",
        "userName.value pr",
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:Group:department pr"#,
        r#"department eq "x""#,
        r#"userName[value eq "x"]"#,
        r#"emails[value.x eq "x"]"#,
        r#"emails[urn:x:y:type eq "x"]"#,
        r#"emails[nope eq "x"]"#,
    ] {
        let err = compile_error(filter);
        assert_eq!(err.status, 400, "{filter}");
        assert_eq!(
            err.scim_type,
            Some(ScimType::InvalidFilter),
            "{filter}: {}",
            err.detail
        );
    }
}

#[test]
fn filtering_on_password_is_refused_without_echoing_it() {
    let err = compile_error(r#"password eq "hunter2""#);
    assert_eq!(err.scim_type, Some(ScimType::Sensitive));
    assert!(!err.detail.contains("hunter2"));
    assert_eq!(
        compile_error("password pr").scim_type,
        Some(ScimType::Sensitive)
    );
}

#[test]
fn extension_attributes_are_filtered_by_their_full_name() {
    assert!(matches(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#
    ));
    assert!(matches(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "26118915-6090-4610-87e4-49d8ca9f808d""#
    ));
    assert!(matches(
        r#"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:manager.value pr"#
    ));
}

#[test]
fn group_members_are_matched_case_exactly() {
    let group = json!({
        "displayName": "Airflow Admins",
        "members": [{"value": "u1", "display": "Ada"}, {"value": "U2"}]
    });
    let check = |f: &str| parse(f).matches(ResourceType::Group, &group).expect(f);
    assert!(check(r#"members[value eq "u1"]"#));
    assert!(!check(r#"members[value eq "U1"]"#));
    assert!(check(r#"members.value eq "U2""#));
    assert!(check(r#"displayName eq "airflow admins""#));
}

#[test]
fn attribute_names_in_resources_are_found_case_insensitively() {
    let odd = json!({"UserName": "ada", "Emails": [{"Value": "a@x"}]});
    assert!(parse(r#"userName eq "ADA" and emails.value eq "a@x""#)
        .matches(ResourceType::User, &odd)
        .expect("valid"));
}

#[test]
fn the_printer_adds_only_needed_parentheses() {
    let cases = [
        r#"a eq "x" or b eq "y" and c pr"#,
        r#"(a eq "x" or b eq "y") and c pr"#,
        r#"not (a pr) and emails[type eq "work" or not (primary eq true)]"#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "A""#,
        "a eq null or b ne false or c gt 1.5",
    ];
    for case in cases {
        assert_eq!(parse(case).to_string(), case);
    }
}
