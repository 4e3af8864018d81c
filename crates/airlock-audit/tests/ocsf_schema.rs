//! The OCSF 1.8.0 validator of `tests/ocsf/schema.rs` on hand-written events: a minimal valid
//! Account Change (3001), Group Management (3006) and API Activity (6003) event passes, and each
//! kind of fault gives exactly the expected problem line. Also: the vendored schema is a
//! verbatim copy of the team's `../shared/specs/ocsf-1.8.0` (when that exists beside the
//! repository).

#[path = "ocsf/schema.rs"]
mod schema;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use schema::Schema;
use serde_json::{json, Value};

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(Schema::load)
}

/// 2026-01-01T00:00:00Z in milliseconds.
const TIME: i64 = 1_767_225_600_000;

fn metadata() -> Value {
    json!({"version": "1.8.0", "product": {"name": "airlock", "vendor_name": "airlock"}})
}

/// Account Change, activity 1 Create: the required attributes, and an actor.
fn account_change() -> Value {
    json!({
        "activity_id": 1,
        "category_uid": 3,
        "class_uid": 3001,
        "type_uid": 300101,
        "severity_id": 1,
        "time": TIME,
        "metadata": metadata(),
        "actor": {"user": {"name": "admin@example.com", "type_id": 1}},
        "user": {"name": "alice", "uid": "alice@example.com"}
    })
}

/// Group Management, activity 3 Add User.
fn group_management() -> Value {
    json!({
        "activity_id": 3,
        "category_uid": 3,
        "class_uid": 3006,
        "type_uid": 300603,
        "severity_id": 1,
        "time": TIME,
        "metadata": metadata(),
        "group": {"name": "airflow-admins"},
        "user": {"name": "alice"}
    })
}

/// API Activity, activity 1 Create.
fn api_activity() -> Value {
    json!({
        "activity_id": 1,
        "category_uid": 6,
        "class_uid": 6003,
        "type_uid": 600301,
        "severity_id": 1,
        "time": TIME,
        "metadata": metadata(),
        "actor": {"user": {"name": "scim-client"}},
        "api": {"operation": "POST /scim/v2/Users"},
        "src_endpoint": {"ip": "192.0.2.10"}
    })
}

/// `event` changed at a `/`-separated path: `Some` sets (creating the last key), `None`
/// removes.
fn with(mut event: Value, path: &str, value: Option<Value>) -> Value {
    let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
    let pointer = if parent.is_empty() {
        String::new()
    } else {
        format!("/{parent}")
    };
    let target = event
        .pointer_mut(&pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {pointer}"));
    match value {
        Some(value) => {
            target.insert(key.to_owned(), value);
        }
        None => {
            target
                .remove(key)
                .unwrap_or_else(|| panic!("nothing to remove at {path}"));
        }
    }
    event
}

fn assert_valid(event: &Value) {
    let problems = schema().validate(event);
    assert!(problems.is_empty(), "{problems:#?}\nin {event:#}");
}

fn assert_problems(event: &Value, expected: &[&str]) {
    assert_eq!(schema().validate(event), expected, "in {event:#}");
}

#[test]
fn minimal_events_are_valid() {
    assert_valid(&account_change());
    assert_valid(&group_management());
    assert_valid(&api_activity());
}

#[test]
fn account_change_faults() {
    let event = account_change;
    for (path, expected) in [
        (
            "metadata/product",
            "metadata.product: required attribute is missing",
        ),
        (
            "metadata/version",
            "metadata.version: required attribute is missing",
        ),
        ("time", "time: required attribute is missing"),
        ("severity_id", "severity_id: required attribute is missing"),
        ("user", "user: required attribute is missing"),
        ("activity_id", "activity_id: required attribute is missing"),
        (
            "category_uid",
            "category_uid: required attribute is missing",
        ),
        ("type_uid", "type_uid: required attribute is missing"),
        ("metadata", "metadata: required attribute is missing"),
    ] {
        assert_problems(&with(event(), path, None), &[expected]);
    }
    // null is absent.
    assert_problems(
        &with(event(), "time", Some(Value::Null)),
        &["time: required attribute is missing"],
    );
    assert_problems(
        &with(event(), "severity_id", Some(json!("1"))),
        &[r#"severity_id: "1" is not of type integer_t"#],
    );
    assert_problems(
        &with(event(), "time", Some(json!("2026-01-01T00:00:00Z"))),
        &[r#"time: "2026-01-01T00:00:00Z" is not of type timestamp_t (long_t)"#],
    );
    assert_problems(
        &with(event(), "time", Some(json!(1.767e12))),
        &["time: 1767000000000.0 is not of type timestamp_t (long_t)"],
    );
    assert_problems(
        &with(event(), "actor/user/type_id", Some(json!(7))),
        &["actor.user.type_id: 7 is not one of 0, 1, 2, 3, 4, 99"],
    );
    assert_problems(
        &with(event(), "severity_id", Some(json!(7))),
        &["severity_id: 7 is not one of 0, 1, 2, 3, 4, 5, 6, 99"],
    );
    // The class's activities are added to base_event's 0 Unknown and 99 Other.
    let unknown_activity = with(event(), "activity_id", Some(json!(13)));
    assert_problems(
        &with(unknown_activity, "type_uid", Some(json!(300113))),
        &["activity_id: 13 is not one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99"],
    );
    let other_activity = with(event(), "activity_id", Some(json!(99)));
    assert_valid(&with(other_activity, "type_uid", Some(json!(300199))));
    assert_problems(
        &with(event(), "type_uid", Some(json!(300102))),
        &["type_uid: 300102 is not class_uid * 100 + activity_id = 300101"],
    );
    assert_problems(
        &with(event(), "category_uid", Some(json!(6))),
        &["category_uid: 6 is not 3, the category of class 3001 (Account Change)"],
    );
    assert_problems(
        &with(event(), "role", Some(json!("admin"))),
        &["role: not defined by class account_change"],
    );
    assert_problems(
        &with(event(), "user/role", Some(json!("admin"))),
        &["user.role: not defined by object user"],
    );
    assert_problems(
        &with(event(), "metadata/product/edition", Some(json!("oss"))),
        &["metadata.product.edition: not defined by object product"],
    );
}

#[test]
fn group_management_faults() {
    let event = group_management;
    assert_problems(
        &with(event(), "group", None),
        &["group: required attribute is missing"],
    );
    assert_problems(
        &with(event(), "metadata/product", None),
        &["metadata.product: required attribute is missing"],
    );
    assert_problems(
        &with(event(), "group/name", Some(json!(42))),
        &["group.name: 42 is not of type string_t"],
    );
    assert_problems(
        &with(event(), "time", Some(json!("soon"))),
        &[r#"time: "soon" is not of type timestamp_t (long_t)"#],
    );
    let unknown_activity = with(event(), "activity_id", Some(json!(42)));
    assert_problems(
        &with(unknown_activity, "type_uid", Some(json!(300642))),
        &["activity_id: 42 is not one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 99"],
    );
    assert_problems(
        &with(event(), "type_uid", Some(json!(300601))),
        &["type_uid: 300601 is not class_uid * 100 + activity_id = 300603"],
    );
    assert_problems(
        &with(event(), "group/members", Some(json!(["alice"]))),
        &["group.members: not defined by object group"],
    );
    assert_problems(
        &with(event(), "permission", Some(json!("can_read"))),
        &["permission: not defined by class group_management"],
    );
}

#[test]
fn api_activity_faults() {
    let event = api_activity;
    for (path, expected) in [
        (
            "api/operation",
            "api.operation: required attribute is missing",
        ),
        ("api", "api: required attribute is missing"),
        ("actor", "actor: required attribute is missing"),
        (
            "src_endpoint",
            "src_endpoint: required attribute is missing",
        ),
        (
            "metadata/product",
            "metadata.product: required attribute is missing",
        ),
    ] {
        assert_problems(&with(event(), path, None), &[expected]);
    }
    assert_problems(
        &with(event(), "status_id", Some(json!("1"))),
        &[r#"status_id: "1" is not of type integer_t"#],
    );
    assert_problems(
        &with(
            event(),
            "http_request",
            Some(json!({"http_method": "FETCH"})),
        ),
        &[
            r#"http_request.http_method: "FETCH" is not one of CONNECT, DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE"#,
        ],
    );
    assert_valid(&with(
        event(),
        "http_request",
        Some(json!({"http_method": "PATCH", "url": {"path": "/scim/v2/Users/1"}})),
    ));
    let unknown_activity = with(event(), "activity_id", Some(json!(5)));
    assert_problems(
        &with(unknown_activity, "type_uid", Some(json!(600305))),
        &["activity_id: 5 is not one of 0, 1, 2, 3, 4, 99"],
    );
    assert_problems(
        &with(event(), "type_uid", Some(json!(600302))),
        &["type_uid: 600302 is not class_uid * 100 + activity_id = 600301"],
    );
    assert_problems(
        &with(event(), "category_uid", Some(json!(3))),
        &["category_uid: 3 is not 6, the category of class 6003 (API Activity)"],
    );
    assert_problems(
        &with(event(), "scim_operation", Some(json!("create"))),
        &["scim_operation: not defined by class api_activity"],
    );
    assert_problems(
        &with(event(), "src_endpoint/port", Some(json!(70000))),
        &["src_endpoint.port: 70000 is outside port_t's range 0..=65535"],
    );
    assert_problems(
        &with(event(), "src_endpoint/ip", Some(json!("1".repeat(41)))),
        &[&format!(
            "src_endpoint.ip: \"{}\" is longer than ip_t's 40 characters",
            "1".repeat(41)
        )],
    );
}

#[test]
fn constraints_of_objects_and_classes() {
    assert_problems(
        &with(account_change(), "user", Some(json!({"type_id": 1}))),
        &["user: has none of account, name, uid, object user needs at least one"],
    );
    assert_problems(
        &with(api_activity(), "actor", Some(json!({}))),
        &["actor: has none of process, user, invoked_by, session, app_name, app_uid, object actor needs at least one"],
    );
    assert_problems(
        &with(api_activity(), "src_endpoint", Some(json!({"port": 443}))),
        &["src_endpoint: has none of ip, uid, name, hostname, svc_name, instance_uid, interface_uid, interface_name, domain, object network_endpoint needs at least one"],
    );
    // product inherits _entity's constraint.
    assert_problems(
        &with(
            group_management(),
            "metadata/product",
            Some(json!({"vendor_name": "airlock"})),
        ),
        &["metadata.product: has none of name, uid, object product needs at least one"],
    );
    // A class constraint: Authentication needs a service or a dst_endpoint.
    let logon = json!({
        "activity_id": 1, "category_uid": 3, "class_uid": 3002, "type_uid": 300201,
        "severity_id": 1, "time": TIME, "metadata": metadata(), "user": {"name": "alice"}
    });
    assert_problems(
        &logon,
        &["(event): has none of service, dst_endpoint, class authentication needs at least one"],
    );
    assert_valid(&with(logon, "service", Some(json!({"name": "airlock"}))));
}

#[test]
fn arrays_objects_and_open_objects() {
    let event = account_change;
    assert_valid(&with(
        event(),
        "user/groups",
        Some(json!([{"name": "admins"}, {"uid": "g-2"}])),
    ));
    assert_problems(
        &with(event(), "user/groups", Some(json!([{"name": "admins"}, 5]))),
        &["user.groups[1]: 5 is not an object (group)"],
    );
    assert_problems(
        &with(event(), "user/groups", Some(json!({"name": "admins"}))),
        &[r#"user.groups: {"name":"admins"} is not an array (of group)"#],
    );
    assert_problems(
        &with(
            event(),
            "user/groups",
            Some(json!([{"name": "admins", "size": 3}])),
        ),
        &["user.groups[0].size: not defined by object group"],
    );
    assert_problems(
        &with(event(), "metadata/labels", Some(json!(["audit", 1]))),
        &["metadata.labels[1]: 1 is not of type string_t"],
    );
    assert_problems(
        &with(event(), "user", Some(json!("alice"))),
        &[r#"user: "alice" is not an object (user)"#],
    );
    assert_problems(
        &with(
            event(),
            "user/email_addr",
            Some(json!(["alice@example.com"])),
        ),
        &[r#"user.email_addr: ["alice@example.com"] is not of type email_t (string_t)"#],
    );
    // unmapped holds anything.
    assert_valid(&with(
        event(),
        "unmapped",
        Some(json!({"airlock": {"seq": 7, "hash": "ab", "deep": [1, {"x": null}]}})),
    ));
    assert_problems(
        &with(event(), "unmapped", Some(json!([1]))),
        &["unmapped: [1] is not an object (object)"],
    );
    // The datetime profile's `_dt` siblings of timestamps; json_t takes anything.
    let dated = with(event(), "time_dt", Some(json!("2026-01-01T00:00:00Z")));
    assert_valid(&with(
        dated,
        "metadata/logged_time_dt",
        Some(json!("2026-01-01T00:00:01Z")),
    ));
    assert_problems(
        &with(event(), "time_dt", Some(json!(TIME))),
        &["time_dt: 1767225600000 is not of type datetime_t (string_t)"],
    );
    assert_valid(&with(event(), "raw_data", Some(json!("{\"a\":1}"))));
}

#[test]
fn profiles() {
    let event = account_change;
    // An attribute of a profile is defined, and optional while the profile is not declared...
    assert_valid(&with(
        event(),
        "device",
        Some(json!({"hostname": "airlock-1", "type_id": 1})),
    ));
    // (device's own required attributes still apply when it is present.)
    assert_problems(
        &with(event(), "device", Some(json!({"hostname": "airlock-1"}))),
        &["device.type_id: required attribute is missing"],
    );
    assert_valid(&with(event(), "cloud", Some(json!({"provider": "AWS"}))));
    // ...and required when it is.
    assert_problems(
        &with(event(), "metadata/profiles", Some(json!(["cloud"]))),
        &["cloud: required attribute is missing"],
    );
    let cloud = with(event(), "metadata/profiles", Some(json!(["cloud", "host"])));
    assert_valid(&with(cloud, "cloud", Some(json!({"provider": "AWS"}))));
    assert_problems(
        &with(event(), "metadata/profiles", Some(json!(["osint"]))),
        &["osint: required attribute is missing"],
    );
    // A class can take an attribute out of a profile: API Activity's api is required even
    // without the cloud profile, whose api is optional.
    assert_problems(
        &with(api_activity(), "api", None),
        &["api: required attribute is missing"],
    );
    assert_problems(
        &with(
            event(),
            "metadata/profiles",
            Some(json!(["host", "airlock"])),
        ),
        &[r#"metadata.profiles[1]: "airlock" is not a profile of OCSF 1.8.0"#],
    );
    assert_problems(
        &with(event(), "metadata/profiles", Some(json!("host"))),
        &[r#"metadata.profiles: "host" is not an array (of string_t)"#],
    );
}

#[test]
fn class_uid_and_version() {
    assert_problems(
        &with(account_change(), "class_uid", None),
        &["class_uid: required attribute is missing"],
    );
    assert_problems(
        &with(account_change(), "class_uid", Some(json!("3001"))),
        &[r#"class_uid: "3001" is not of type integer_t"#],
    );
    assert_problems(
        &with(account_change(), "class_uid", Some(json!(3099))),
        &["class_uid: 3099 is not a class of the vendored OCSF 1.8.0 schema (known: 0, 3001, 3002, 3005, 3006, 6003)"],
    );
    assert_problems(
        &with(account_change(), "metadata/version", Some(json!("1.7.0"))),
        &[r#"metadata.version: "1.7.0" is not 1.8.0, the version of this schema"#],
    );
    assert_problems(&json!([1]), &["(event): [1] is not a JSON object"]);
}

/// What each class needs (no profile declared): the list to check an encoder against.
#[test]
fn requirements_of_the_classes() {
    const BASE: [&str; 10] = [
        "activity_id",
        "category_uid",
        "class_uid",
        "metadata",
        "metadata.product",
        "metadata.product: at least one of name, uid",
        "metadata.version",
        "severity_id",
        "time",
        "type_uid",
    ];
    const USER: [&str; 2] = ["user", "user: at least one of account, name, uid"];
    let sorted = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = BASE.iter().chain(extra).map(|s| (*s).to_owned()).collect();
        // In path order, a constraint line right after its object's line.
        all.sort_by_key(|line| line.replace(": ", " "));
        all
    };
    assert_eq!(schema().requirements(3001), sorted(&USER));
    let mut authentication = vec!["(event): at least one of service, dst_endpoint".to_owned()];
    authentication.extend(sorted(&USER));
    assert_eq!(schema().requirements(3002), authentication);
    assert_eq!(
        schema().requirements(3005),
        sorted(&[USER[0], USER[1], "privileges[]"])
    );
    assert_eq!(
        schema().requirements(3006),
        sorted(&["group", "group: at least one of name, uid"])
    );
    assert_eq!(
        schema().requirements(6003),
        sorted(&[
            "actor",
            "actor: at least one of process, user, invoked_by, session, app_name, app_uid",
            "api",
            "api.operation",
            "src_endpoint",
            "src_endpoint: at least one of ip, uid, name, hostname, svc_name, instance_uid, \
             interface_uid, interface_name, domain",
        ])
    );
}

/// The files of `dir`, recursively, as paths relative to `root`.
fn files_under(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            files_under(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).unwrap_or_else(|e| {
                panic!("{} is outside {}: {e}", path.display(), root.display())
            });
            out.push(relative.to_owned());
        }
    }
}

#[test]
fn vendored_copy_is_the_shared_schema_verbatim() {
    let vendored = schema::vendored_dir();
    let mut files = Vec::new();
    files_under(&vendored, &vendored, &mut files);
    files.retain(|f| f != Path::new("README.md"));
    files.sort();
    for needed in [
        "LICENSE",
        "NOTICE",
        "version.json",
        "categories.json",
        "dictionary.json",
        "events/base_event.json",
        "events/iam/iam.json",
        "events/iam/account_change.json",
        "events/iam/authentication.json",
        "events/iam/user_access.json",
        "events/iam/group_management.json",
        "events/application/application.json",
        "events/application/api_activity.json",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(needed)),
            "{needed} is missing from {}",
            vendored.display()
        );
    }

    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs/ocsf-1.8.0");
    if !shared.join("dictionary.json").exists() {
        eprintln!(
            "{} does not exist: not comparing the vendored OCSF schema with it",
            shared.display()
        );
        return;
    }
    let differing: Vec<String> = files
        .iter()
        .filter(|file| {
            let ours = std::fs::read(vendored.join(file))
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            std::fs::read(shared.join(file)).map_or(true, |theirs| theirs != ours)
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        differing.is_empty(),
        "these vendored files are not byte-identical to {}: {differing:?}",
        shared.display()
    );
}
