//! Attribute paths as written by clients: `userName`, `name.givenName`,
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`, and PATCH paths with
//! a value filter, `emails[type eq "work"].value`.
//!
//! These types are syntax only and keep the client's spelling; [`ResourceType::resolve`] and
//! [`Path::resolve`] map them onto the schema, case-insensitively. The grammar is shared with
//! filters (RFC 7644 §3.10 and §3.5.2), so parsing lives in `filter/parser.rs`.

use std::fmt;

use crate::error::ScimError;
use crate::filter::Filter;
use crate::schema::{ResolvedAttr, ResourceType};

/// `[schema-urn ":"] name ["." sub-attribute]`
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN prefix, as written.
    pub schema: Option<String>,
    /// The attribute name, as written.
    pub name: String,
    /// The sub-attribute name, as written.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path to a top-level attribute with no schema prefix.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            schema: None,
            name: name.into(),
            sub_attr: None,
        }
    }

    /// The same path with a schema URN prefix.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The same path with a sub-attribute.
    pub fn with_sub_attr(mut self, sub_attr: impl Into<String>) -> Self {
        self.sub_attr = Some(sub_attr.into());
        self
    }

    /// Parses a path without a value filter. Errors are `400 invalidPath`.
    pub fn parse(input: &str) -> Result<AttrPath, ScimError> {
        crate::filter::parse_attr_path(input)
            .map_err(|err| ScimError::invalid_path(err.describe("invalid attribute path", input)))
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A PATCH path (RFC 7644 §3.5.2): an attribute path, optionally with a value filter between
/// the attribute and its sub-attribute (`emails[type eq "work"].value` has `attr` =
/// `emails.value` and `filter` = `type eq "work"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The attribute, and the sub-attribute that follows the filter if any.
    pub attr: AttrPath,
    /// The value filter selecting values of a multi-valued attribute.
    pub filter: Option<Filter>,
}

impl Path {
    /// Parses a PATCH path. Errors are `400 invalidPath`.
    pub fn parse(input: &str) -> Result<Path, ScimError> {
        crate::filter::parse_path(input)
            .map_err(|err| ScimError::invalid_path(err.describe("invalid path", input)))
    }

    /// Parses and resolves a path against a resource type in one go. Unknown attributes are
    /// `400 invalidPath`.
    pub fn resolve_str(
        resource_type: ResourceType,
        input: &str,
    ) -> Result<(Path, ResolvedAttr), ScimError> {
        let path = Path::parse(input)?;
        let resolved = path.resolve(resource_type)?;
        Ok((path, resolved))
    }

    /// Resolves the attribute part of the path. The value filter is checked where it is used.
    pub fn resolve(&self, resource_type: ResourceType) -> Result<ResolvedAttr, ScimError> {
        resource_type
            .resolve(&self.attr)
            .map_err(|err| ScimError::invalid_path(err.to_string()))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filter {
            None => write!(f, "{}", self.attr),
            Some(filter) => {
                if let Some(schema) = &self.attr.schema {
                    write!(f, "{schema}:")?;
                }
                write!(f, "{}[{filter}]", self.attr.name)?;
                if let Some(sub) = &self.attr.sub_attr {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use crate::filter::{CompValue, CompareOp};

    #[test]
    fn a_filtered_path_keeps_the_sub_attribute_on_the_attribute() {
        let path = Path::parse(r#"emails[type eq "work"].value"#).expect("parses");
        assert_eq!(path.attr, AttrPath::new("emails").with_sub_attr("value"));
        assert_eq!(
            path.filter,
            Some(Filter::Compare {
                attr: AttrPath::new("type"),
                op: CompareOp::Eq,
                value: CompValue::String("work".to_owned()),
            })
        );
        assert_eq!(path.to_string(), r#"emails[type eq "work"].value"#);
    }

    #[test]
    fn urn_qualified_paths_split_at_the_last_colon() {
        let path = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .expect("parses");
        assert_eq!(
            path,
            AttrPath::new("manager")
                .with_schema("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
                .with_sub_attr("value")
        );
    }

    #[test]
    fn paths_resolve_case_insensitively() {
        let (_, resolved) =
            Path::resolve_str(ResourceType::User, r#"EMAILS[TYPE eq "work"].VALUE"#)
                .expect("resolves");
        assert_eq!(resolved.display_name(), "emails.value");
    }

    #[test]
    fn malformed_and_unknown_paths_are_invalid_path() {
        for input in [
            "",
            "emails[",
            "a.b.c",
            "emails.value[type eq \"x\"]",
            "x y",
            "urn:x",
        ] {
            let err = Path::parse(input).expect_err(input);
            assert_eq!(err.scim_type, Some(ScimType::InvalidPath), "{input}");
        }
        let err = Path::resolve_str(ResourceType::Group, "nickName").expect_err("unknown");
        assert_eq!(err.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn a_bracket_after_a_sub_attribute_is_reported_at_the_attribute() {
        let err = Path::parse(r#"name.givenName[x eq 1]"#).expect_err("invalid");
        assert!(err.detail.contains("position 1"), "{}", err.detail);
    }
}
