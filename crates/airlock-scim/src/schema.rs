//! What airlock knows about SCIM resources: the User, Group and enterprise-User attributes it
//! supports, their characteristics (RFC 7643 §2, §7), and how to find an attribute from a path.
//!
//! The tables live in `schema/tables.rs` as `static` data; this module holds the types and the
//! lookups. Attribute names and schema URNs are matched case-insensitively, as RFC 7643 §2.1
//! requires; the canonical spelling from the tables is what the rest of the crate writes back.
//!
//! Deliberate choices, each with its reason:
//! - Identifiers are case-exact wherever they appear (`id`, `externalId`, `members.value`,
//!   `groups.value`, `manager.value`), even where RFC 7643's non-normative schema listing says
//!   otherwise: a member reference must compare the way the `id` it points to compares.
//! - Unqualified names resolve to the common and core attributes only; an extension attribute
//!   must be written with its URN (`urn:...:enterprise:2.0:User:department`), so that adding an
//!   extension later can never change what an existing filter means.
//! - `schemas` is modelled as a read-only common attribute: airlock recomputes it from the
//!   extensions a resource actually carries.
//! - The whole core User schema (RFC 7643 §4.1, `ims`, `photos` and `x509Certificates`
//!   included) and the whole enterprise extension (§4.3) are declared, so that an identity
//!   provider sending any of them is not refused; airlock stores them and provisions only what
//!   it uses. `binary` values are base64 strings, stored as sent.
//!
//! This module does not parse paths (see [`crate::path`]) and does not touch resource values.

mod tables;

use std::fmt;

use crate::path::AttrPath;

pub use tables::{COMMON_ATTRIBUTES, ENTERPRISE_USER, GROUP, USER};

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The PATCH request message (RFC 7644 §3.5.2).
pub const PATCH_OP_MESSAGE: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The list response message (RFC 7644 §3.4.2).
pub const LIST_RESPONSE_MESSAGE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The search request message (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST_MESSAGE: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The error response message (RFC 7644 §3.12).
pub const ERROR_MESSAGE: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// An attribute's data type (RFC 7643 §2.3), limited to the types airlock's attributes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    /// A JSON string.
    String,
    /// A JSON `true` or `false`.
    Boolean,
    /// An RFC 3339 timestamp carried as a JSON string.
    DateTime,
    /// A URI carried as a JSON string.
    Reference,
    /// A JSON object of sub-attributes.
    Complex,
    /// Base64-encoded bytes carried as a JSON string (`x509Certificates.value`).
    Binary,
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttributeType::String => "string",
            AttributeType::Boolean => "boolean",
            AttributeType::DateTime => "dateTime",
            AttributeType::Reference => "reference",
            AttributeType::Complex => "complex",
            AttributeType::Binary => "binary",
        })
    }
}

/// Whether and when a client may change an attribute (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// Set by the service provider only.
    ReadOnly,
    /// Set and changed freely.
    ReadWrite,
    /// Set once (when there is no value yet), never changed.
    Immutable,
    /// Set freely, never returned.
    WriteOnly,
}

/// When an attribute appears in responses (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// In every response, whatever `attributes`/`excludedAttributes` say.
    Always,
    /// Never.
    Never,
    /// Unless excluded.
    Default,
    /// Only when named in `attributes`.
    Request,
}

/// How unique a value must be (RFC 7643 §7); enforced by storage, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    /// No constraint.
    None,
    /// Unique within this service provider.
    Server,
    /// Globally unique.
    Global,
}

/// One attribute or sub-attribute definition.
#[derive(Debug)]
pub struct AttributeDef {
    /// The canonical name, as written in responses.
    pub name: &'static str,
    /// The data type.
    pub kind: AttributeType,
    /// Whether the value is a JSON array of values.
    pub multi_valued: bool,
    /// Whether a resource must carry a value.
    pub required: bool,
    /// Whether string comparison is case-sensitive.
    pub case_exact: bool,
    /// Who may change it, and when.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
    /// How unique it must be.
    pub uniqueness: Uniqueness,
    /// Suggested values (`work`, `home`, ...); advisory, not enforced.
    pub canonical_values: &'static [&'static str],
    /// Sub-attributes of a complex attribute; empty otherwise.
    pub sub_attributes: &'static [AttributeDef],
    /// airlock-specific, not an RFC characteristic: elements of this multi-valued attribute are
    /// identities (group members), so two elements with the same `value` are the same element.
    pub identified_by_value: bool,
}

impl AttributeDef {
    const fn base(name: &'static str, kind: AttributeType) -> Self {
        AttributeDef {
            name,
            kind,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            sub_attributes: &[],
            identified_by_value: false,
        }
    }

    pub(crate) const fn string(name: &'static str) -> Self {
        Self::base(name, AttributeType::String)
    }

    pub(crate) const fn boolean(name: &'static str) -> Self {
        Self::base(name, AttributeType::Boolean)
    }

    pub(crate) const fn date_time(name: &'static str) -> Self {
        Self::base(name, AttributeType::DateTime)
    }

    pub(crate) const fn reference(name: &'static str) -> Self {
        Self::base(name, AttributeType::Reference).case_exact()
    }

    pub(crate) const fn binary(name: &'static str) -> Self {
        Self::base(name, AttributeType::Binary).case_exact()
    }

    pub(crate) const fn complex(name: &'static str, subs: &'static [AttributeDef]) -> Self {
        let mut def = Self::base(name, AttributeType::Complex);
        def.sub_attributes = subs;
        def
    }

    pub(crate) const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }

    pub(crate) const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub(crate) const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    pub(crate) const fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }

    pub(crate) const fn immutable(mut self) -> Self {
        self.mutability = Mutability::Immutable;
        self
    }

    pub(crate) const fn write_only(mut self) -> Self {
        self.mutability = Mutability::WriteOnly;
        self
    }

    pub(crate) const fn returned(mut self, returned: Returned) -> Self {
        self.returned = returned;
        self
    }

    pub(crate) const fn unique(mut self, uniqueness: Uniqueness) -> Self {
        self.uniqueness = uniqueness;
        self
    }

    pub(crate) const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }

    pub(crate) const fn identified_by_value(mut self) -> Self {
        self.identified_by_value = true;
        self
    }

    /// A sub-attribute by name, case-insensitively.
    pub fn sub_attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.sub_attributes
            .iter()
            .find(|sub| sub.name.eq_ignore_ascii_case(name))
    }

    /// Whether values of this attribute must never be echoed, filtered on or returned
    /// (`password`).
    pub fn is_sensitive(&self) -> bool {
        self.returned == Returned::Never || self.mutability == Mutability::WriteOnly
    }
}

/// A schema: an id (URN) and its attributes.
#[derive(Debug)]
pub struct SchemaDef {
    /// The schema URN.
    pub id: &'static str,
    /// A short human-readable name.
    pub name: &'static str,
    /// The attributes defined by this schema (common attributes are separate).
    pub attributes: &'static [AttributeDef],
}

impl SchemaDef {
    /// An attribute of this schema by name, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.attributes
            .iter()
            .find(|attr| attr.name.eq_ignore_ascii_case(name))
    }
}

/// The SCIM resource types airlock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// `/Users`
    User,
    /// `/Groups`
    Group,
}

impl ResourceType {
    /// The resource type name used in `meta.resourceType`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::User => "User",
            ResourceType::Group => "Group",
        }
    }

    /// The core schema of this resource type.
    pub fn core_schema(self) -> &'static SchemaDef {
        match self {
            ResourceType::User => &USER,
            ResourceType::Group => &GROUP,
        }
    }

    /// The schema extensions this resource type accepts.
    pub fn extensions(self) -> &'static [&'static SchemaDef] {
        static USER_EXTENSIONS: [&SchemaDef; 1] = [&ENTERPRISE_USER];
        match self {
            ResourceType::User => &USER_EXTENSIONS,
            ResourceType::Group => &[],
        }
    }

    /// The core schema or an extension by URN, case-insensitively.
    pub fn schema(self, urn: &str) -> Option<&'static SchemaDef> {
        let core = self.core_schema();
        if core.id.eq_ignore_ascii_case(urn) {
            return Some(core);
        }
        self.extension(urn)
    }

    /// An extension schema by URN, case-insensitively.
    pub fn extension(self, urn: &str) -> Option<&'static SchemaDef> {
        self.extensions()
            .iter()
            .copied()
            .find(|ext| ext.id.eq_ignore_ascii_case(urn))
    }

    /// A common or core attribute by name, case-insensitively.
    pub fn core_attribute(self, name: &str) -> Option<&'static AttributeDef> {
        COMMON_ATTRIBUTES
            .iter()
            .find(|attr| attr.name.eq_ignore_ascii_case(name))
            .or_else(|| self.core_schema().attribute(name))
    }

    /// Every top-level attribute this resource type has, with the schema that holds it: the
    /// common ones and the core schema's first, then each extension's.
    pub fn all_attributes(
        self,
    ) -> impl Iterator<Item = (&'static SchemaDef, &'static AttributeDef)> {
        let core = self.core_schema();
        COMMON_ATTRIBUTES
            .iter()
            .chain(core.attributes.iter())
            .map(move |attr| (core, attr))
            .chain(
                self.extensions()
                    .iter()
                    .flat_map(|ext| ext.attributes.iter().map(move |attr| (*ext, attr))),
            )
    }

    /// Finds the attribute (and sub-attribute) an [`AttrPath`] names.
    pub fn resolve(self, path: &AttrPath) -> Result<ResolvedAttr, ResolveError> {
        let (schema, attribute) = match &path.schema {
            Some(urn) => {
                let schema = self
                    .schema(urn)
                    .ok_or_else(|| ResolveError::UnknownSchema {
                        resource_type: self.name(),
                    })?;
                let attribute = if schema.id == self.core_schema().id {
                    self.core_attribute(&path.name)
                } else {
                    schema.attribute(&path.name)
                };
                (schema, attribute)
            }
            None => (self.core_schema(), self.core_attribute(&path.name)),
        };
        let attribute = attribute.ok_or_else(|| ResolveError::UnknownAttribute {
            name: path.name.clone(),
            resource_type: self.name(),
        })?;
        let sub_attribute = match &path.sub_attr {
            None => None,
            Some(sub) if attribute.kind != AttributeType::Complex => {
                return Err(ResolveError::NotComplex {
                    attribute: attribute.name,
                    sub_attr: sub.clone(),
                })
            }
            Some(sub) => Some(attribute.sub_attribute(sub).ok_or_else(|| {
                ResolveError::UnknownSubAttribute {
                    attribute: attribute.name,
                    sub_attr: sub.clone(),
                }
            })?),
        };
        Ok(ResolvedAttr {
            schema,
            attribute,
            sub_attribute,
        })
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An attribute path resolved against a resource type.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedAttr {
    /// The schema holding the attribute (the core schema for common attributes).
    pub schema: &'static SchemaDef,
    /// The top-level attribute.
    pub attribute: &'static AttributeDef,
    /// The sub-attribute, when the path names one.
    pub sub_attribute: Option<&'static AttributeDef>,
}

impl ResolvedAttr {
    /// The definition the path ends at: the sub-attribute if any, else the attribute.
    pub fn leaf(&self) -> &'static AttributeDef {
        self.sub_attribute.unwrap_or(self.attribute)
    }

    /// The URN of the extension holding the attribute, or `None` for common and core ones.
    pub fn extension(&self) -> Option<&'static str> {
        let is_core = self.schema.id == USER.id || self.schema.id == GROUP.id;
        (!is_core).then_some(self.schema.id)
    }

    /// The canonical, fully readable name: `name.givenName`, `urn:...:User:department`.
    pub fn display_name(&self) -> String {
        let mut out = String::new();
        if let Some(urn) = self.extension() {
            out.push_str(urn);
            out.push(':');
        }
        out.push_str(self.attribute.name);
        if let Some(sub) = self.sub_attribute {
            out.push('.');
            out.push_str(sub.name);
        }
        out
    }
}

/// Why an attribute path does not name a supported attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The URN prefix is not a schema of this resource type.
    #[error("unknown schema for resource type {resource_type}")]
    UnknownSchema {
        /// The resource type searched.
        resource_type: &'static str,
    },
    /// No such attribute.
    #[error("unknown attribute '{name}' for resource type {resource_type}")]
    UnknownAttribute {
        /// The name as written.
        name: String,
        /// The resource type searched.
        resource_type: &'static str,
    },
    /// The attribute has no such sub-attribute.
    #[error("attribute '{attribute}' has no sub-attribute '{sub_attr}'")]
    UnknownSubAttribute {
        /// The attribute's canonical name.
        attribute: &'static str,
        /// The sub-attribute as written.
        sub_attr: String,
    },
    /// A sub-attribute was given for an attribute that is not complex.
    #[error("attribute '{attribute}' is not complex, so it has no sub-attribute '{sub_attr}'")]
    NotComplex {
        /// The attribute's canonical name.
        attribute: &'static str,
        /// The sub-attribute as written.
        sub_attr: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(rt: ResourceType, path: &str) -> Result<ResolvedAttr, ResolveError> {
        rt.resolve(&AttrPath::parse(path).expect("test paths parse"))
    }

    #[test]
    fn attribute_names_resolve_case_insensitively_to_the_canonical_name() {
        let resolved = resolve(ResourceType::User, "NAME.GIVENNAME").expect("resolves");
        assert_eq!(resolved.display_name(), "name.givenName");
        assert_eq!(resolved.leaf().kind, AttributeType::String);
    }

    #[test]
    fn fully_qualified_core_names_resolve_like_short_ones() {
        let resolved = resolve(
            ResourceType::User,
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        )
        .expect("resolves");
        assert_eq!(resolved.attribute.name, "userName");
        assert_eq!(resolved.extension(), None);
        let common = resolve(
            ResourceType::User,
            "URN:IETF:params:scim:schemas:core:2.0:user:id",
        )
        .expect("resolves");
        assert_eq!(common.attribute.name, "id");
    }

    #[test]
    fn extension_attributes_resolve_only_when_qualified() {
        let resolved = resolve(
            ResourceType::User,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .expect("resolves");
        assert_eq!(resolved.extension(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(
            resolved.display_name(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"
        );
        assert!(matches!(
            resolve(ResourceType::User, "department"),
            Err(ResolveError::UnknownAttribute { .. })
        ));
    }

    #[test]
    fn groups_do_not_accept_the_enterprise_extension() {
        assert!(matches!(
            resolve(
                ResourceType::Group,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
            ),
            Err(ResolveError::UnknownSchema { .. })
        ));
    }

    #[test]
    fn sub_attributes_of_simple_attributes_are_refused() {
        assert!(matches!(
            resolve(ResourceType::User, "userName.value"),
            Err(ResolveError::NotComplex { .. })
        ));
        assert!(matches!(
            resolve(ResourceType::User, "emails.nope"),
            Err(ResolveError::UnknownSubAttribute { .. })
        ));
    }

    #[test]
    fn characteristics_follow_the_rfc_where_airlock_relies_on_them() {
        let user = ResourceType::User;
        let attr = |name: &str| resolve(user, name).expect("resolves").leaf();
        assert!(!attr("userName").case_exact);
        assert_eq!(attr("userName").uniqueness, Uniqueness::Server);
        assert!(attr("userName").required);
        assert!(attr("id").case_exact);
        assert_eq!(attr("id").mutability, Mutability::ReadOnly);
        assert_eq!(attr("id").returned, Returned::Always);
        assert!(attr("externalId").case_exact);
        assert!(!attr("emails.value").case_exact);
        assert!(attr("emails").multi_valued);
        assert_eq!(attr("meta").mutability, Mutability::ReadOnly);
        assert_eq!(attr("meta.lastModified").kind, AttributeType::DateTime);
        assert_eq!(attr("active").kind, AttributeType::Boolean);
        assert!(attr("password").is_sensitive());
        assert_eq!(attr("groups").mutability, Mutability::ReadOnly);
        let members = resolve(ResourceType::Group, "members.value").expect("resolves");
        assert!(members.leaf().case_exact);
        assert_eq!(members.leaf().mutability, Mutability::Immutable);
        assert!(members.attribute.identified_by_value);
    }

    #[test]
    fn all_attributes_lists_common_core_and_extension_attributes() {
        let names: Vec<String> = ResourceType::User
            .all_attributes()
            .map(|(schema, attr)| format!("{}:{}", schema.name, attr.name))
            .collect();
        assert!(names.contains(&"User:id".to_owned()));
        assert!(names.contains(&"User:userName".to_owned()));
        assert!(names.contains(&"EnterpriseUser:department".to_owned()));
    }
}
