//! The attribute tables: RFC 7643 §3.1 (common), §4.1 (User), §4.2 (Group) and §4.3
//! (enterprise User), complete. Data only; the lookups are in
//! `schema.rs`.

use super::{
    AttributeDef as A, Returned, SchemaDef, Uniqueness, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA,
    USER_SCHEMA,
};

const TYPE_WORK_HOME_OTHER: &[&str] = &["work", "home", "other"];

static META_SUBS: [A; 5] = [
    A::string("resourceType").case_exact().read_only(),
    A::date_time("created").read_only(),
    A::date_time("lastModified").read_only(),
    A::reference("location").read_only(),
    A::string("version").case_exact().read_only(),
];

/// Attributes every resource has (RFC 7643 §3.1), plus `schemas`.
pub static COMMON_ATTRIBUTES: [A; 4] = [
    A::reference("schemas")
        .multi()
        .read_only()
        .returned(Returned::Always),
    A::string("id")
        .case_exact()
        .read_only()
        .returned(Returned::Always)
        .unique(Uniqueness::Server),
    A::string("externalId").case_exact(),
    A::complex("meta", &META_SUBS).read_only(),
];

static NAME_SUBS: [A; 6] = [
    A::string("formatted"),
    A::string("familyName"),
    A::string("givenName"),
    A::string("middleName"),
    A::string("honorificPrefix"),
    A::string("honorificSuffix"),
];

static EMAIL_SUBS: [A; 4] = [
    A::string("value"),
    A::string("display"),
    A::string("type").canonical(TYPE_WORK_HOME_OTHER),
    A::boolean("primary"),
];

static PHONE_SUBS: [A; 4] = [
    A::string("value"),
    A::string("display"),
    A::string("type").canonical(&["work", "home", "mobile", "fax", "pager", "other"]),
    A::boolean("primary"),
];

static ADDRESS_SUBS: [A; 8] = [
    A::string("formatted"),
    A::string("streetAddress"),
    A::string("locality"),
    A::string("region"),
    A::string("postalCode"),
    A::string("country"),
    A::string("type").canonical(TYPE_WORK_HOME_OTHER),
    A::boolean("primary"),
];

static IM_SUBS: [A; 4] = [
    A::string("value"),
    A::string("display"),
    A::string("type").canonical(&["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
    A::boolean("primary"),
];

static PHOTO_SUBS: [A; 4] = [
    A::reference("value"),
    A::string("display"),
    A::string("type").canonical(&["photo", "thumbnail"]),
    A::boolean("primary"),
];

static X509_SUBS: [A; 4] = [
    A::binary("value"),
    A::string("display"),
    A::string("type"),
    A::boolean("primary"),
];

static USER_GROUP_SUBS: [A; 4] = [
    A::string("value").case_exact().read_only(),
    A::reference("$ref").read_only(),
    A::string("display").read_only(),
    A::string("type")
        .canonical(&["direct", "indirect"])
        .read_only(),
];

static ROLE_SUBS: [A; 4] = [
    A::string("value"),
    A::string("display"),
    A::string("type"),
    A::boolean("primary"),
];

static USER_ATTRIBUTES: [A; 21] = [
    A::string("userName").required().unique(Uniqueness::Server),
    A::complex("name", &NAME_SUBS),
    A::string("displayName"),
    A::string("nickName"),
    A::reference("profileUrl"),
    A::string("title"),
    A::string("userType"),
    A::string("preferredLanguage"),
    A::string("locale"),
    A::string("timezone"),
    A::boolean("active"),
    A::string("password")
        .case_exact()
        .write_only()
        .returned(Returned::Never),
    A::complex("emails", &EMAIL_SUBS).multi(),
    A::complex("phoneNumbers", &PHONE_SUBS).multi(),
    A::complex("ims", &IM_SUBS).multi(),
    A::complex("photos", &PHOTO_SUBS).multi(),
    A::complex("addresses", &ADDRESS_SUBS).multi(),
    A::complex("groups", &USER_GROUP_SUBS).multi().read_only(),
    A::complex("entitlements", &ROLE_SUBS).multi(),
    A::complex("roles", &ROLE_SUBS).multi(),
    A::complex("x509Certificates", &X509_SUBS).multi(),
];

/// The core User schema (RFC 7643 §4.1).
pub static USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    attributes: &USER_ATTRIBUTES,
};

static MEMBER_SUBS: [A; 4] = [
    A::string("value").case_exact().immutable(),
    A::reference("$ref").immutable(),
    // Not in RFC 7643's schema listing, but Okta and Entra send it; writable so a renamed
    // member's label can be refreshed.
    A::string("display"),
    A::string("type").canonical(&["User", "Group"]).immutable(),
];

static GROUP_ATTRIBUTES: [A; 2] = [
    A::string("displayName").required(),
    A::complex("members", &MEMBER_SUBS)
        .multi()
        .identified_by_value(),
];

/// The core Group schema (RFC 7643 §4.2).
pub static GROUP: SchemaDef = SchemaDef {
    id: GROUP_SCHEMA,
    name: "Group",
    attributes: &GROUP_ATTRIBUTES,
};

static MANAGER_SUBS: [A; 3] = [
    A::string("value").case_exact(),
    A::reference("$ref"),
    A::string("displayName").read_only(),
];

static ENTERPRISE_USER_ATTRIBUTES: [A; 6] = [
    A::string("employeeNumber"),
    A::string("costCenter"),
    A::string("organization"),
    A::string("division"),
    A::string("department"),
    A::complex("manager", &MANAGER_SUBS),
];

/// The enterprise User extension (RFC 7643 §4.3).
pub static ENTERPRISE_USER: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    attributes: &ENTERPRISE_USER_ATTRIBUTES,
};
