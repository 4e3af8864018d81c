//! Whole resources: checking a body a client sends (POST, PUT) against the schema, the PUT
//! merge rules, and the normal form every write in this crate ends with.
//!
//! The normal form is what makes stored resources easy to compare and query: attribute names
//! in their canonical spelling, values of the declared type (Entra ID's `"True"` becomes
//! `true`), unassigned attributes absent rather than `null`, `""`, `[]` or `{}` (RFC 7643 §2.5
//! treats those as the same state), and `schemas` listing exactly the core schema plus the
//! extensions the resource carries.
//!
//! Decisions:
//! - Unknown attributes and unsupported schemas are refused (`invalidValue`), not dropped: a
//!   mapping mistake in the identity provider should be visible, not silently lose data.
//! - `readOnly` attributes in a body are ignored (RFC 7644 §3.5.1), including sub-attributes
//!   such as `manager.displayName`.
//! - A complex attribute given a bare value is read as its `value` sub-attribute: Entra ID sends
//!   `manager` as a plain id string.
//! - A single value for a multi-valued attribute is read as a one-element array.
//!
//! This module does not assign `id` or `meta` (the HTTP layer does, with its clock) and does not
//! enforce uniqueness (storage does).

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::json::{get_ci, is_present, lenient_bool, remove_ci};
use crate::schema::{AttributeDef, AttributeType, Mutability, ResourceType, SchemaDef};

/// Checks and normalises a resource body for creation (POST). `readOnly` attributes (`id`,
/// `meta`, `groups`) are dropped; the caller assigns `id` and `meta`.
///
/// Errors: `invalidSyntax` when the body is not an object or lacks `schemas`, `invalidValue`
/// for unsupported schemas, unknown attributes, wrongly typed values and missing required
/// attributes.
pub fn validate_resource(resource_type: ResourceType, body: &Value) -> Result<Value, ScimError> {
    validate_body(resource_type, body).map(Value::Object)
}

/// The result of a full replace (PUT, RFC 7644 §3.5.1) of `existing` by `incoming`, as
/// JumpCloud and Okta send it.
///
/// `id`, `meta` and every other `readOnly` attribute come from `existing`, whatever `incoming`
/// says. Omitted `readWrite` attributes are cleared; `password` is dropped, as by every write (airlock
/// never stores one). An
/// `immutable` attribute that already has a value must not change (`mutability`).
pub fn replace_resource(
    resource_type: ResourceType,
    existing: &Value,
    incoming: &Value,
) -> Result<Value, ScimError> {
    let existing = stored_object(existing)?;
    let mut out = validate_body(resource_type, incoming)?;
    for (schema, attr) in resource_type.all_attributes() {
        let extension = extension_of(resource_type, schema);
        let Some(old) = container(existing, extension).and_then(|c| get_ci(c, attr.name)) else {
            continue;
        };
        let new_container = container_mut(&mut out, extension);
        let new = new_container.get(attr.name).cloned();
        match (attr.mutability, new) {
            (Mutability::ReadOnly, _) | (Mutability::WriteOnly, None) => {
                new_container.insert(attr.name.to_owned(), old.clone());
            }
            (Mutability::Immutable, Some(new)) if is_present(old) && new != *old => {
                return Err(ScimError::mutability(format!(
                    "attribute '{}' is immutable and already has a value",
                    attr.name
                )));
            }
            (Mutability::Immutable, None) => {
                new_container.insert(attr.name.to_owned(), old.clone());
            }
            (_, Some(Value::Object(mut new))) if !attr.multi_valued => {
                keep_protected_sub_attributes(attr, old, &mut new)?;
                new_container.insert(attr.name.to_owned(), Value::Object(new));
            }
            _ => {}
        }
    }
    finalize(resource_type, &mut out)?;
    Ok(Value::Object(out))
}

/// Within a single-valued complex attribute present in both versions: `readOnly`
/// sub-attributes stay as they were, `immutable` ones must not change.
fn keep_protected_sub_attributes(
    attr: &AttributeDef,
    old: &Value,
    new: &mut Map<String, Value>,
) -> Result<(), ScimError> {
    let Some(old) = old.as_object() else {
        return Ok(());
    };
    for sub in attr.sub_attributes {
        let Some(old_value) = get_ci(old, sub.name) else {
            continue;
        };
        match sub.mutability {
            Mutability::ReadOnly => {
                new.insert(sub.name.to_owned(), old_value.clone());
            }
            Mutability::Immutable => match new.get(sub.name) {
                Some(new_value) if is_present(old_value) && new_value != old_value => {
                    return Err(ScimError::mutability(format!(
                        "attribute '{}.{}' is immutable and already has a value",
                        attr.name, sub.name
                    )));
                }
                None => {
                    new.insert(sub.name.to_owned(), old_value.clone());
                }
                Some(_) => {}
            },
            Mutability::ReadWrite | Mutability::WriteOnly => {}
        }
    }
    Ok(())
}

fn validate_body(
    resource_type: ResourceType,
    body: &Value,
) -> Result<Map<String, Value>, ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a resource must be a JSON object"))?;
    check_declared_schemas(resource_type, body)?;
    let mut out = Map::new();
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(extension) = resource_type.extension(key) {
            let mut ext_out = Map::new();
            match value {
                Value::Null => {}
                Value::Object(attributes) => {
                    for (name, value) in attributes {
                        if name.eq_ignore_ascii_case("schemas") {
                            // An inner `schemas` (as Entra ID sends) says nothing new.
                            continue;
                        }
                        let attr = extension.attribute(name).ok_or_else(|| {
                            ScimError::invalid_value(format!(
                                "unknown attribute '{name}' in extension {}",
                                extension.id
                            ))
                        })?;
                        put_body_attribute(&mut ext_out, attr, value)?;
                    }
                }
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "extension {} must be a JSON object",
                        extension.id
                    )))
                }
            }
            out.insert(extension.id.to_owned(), Value::Object(ext_out));
            continue;
        }
        let attr = resource_type.core_attribute(key).ok_or_else(|| {
            ScimError::invalid_value(format!(
                "unknown attribute '{key}' for resource type {resource_type}"
            ))
        })?;
        put_body_attribute(&mut out, attr, value)?;
    }
    finalize(resource_type, &mut out)?;
    Ok(out)
}

fn put_body_attribute(
    out: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    value: &Value,
) -> Result<(), ScimError> {
    if attr.mutability == Mutability::ReadOnly {
        // RFC 7644 §3.5.1: values of readOnly attributes in a body are ignored.
        return Ok(());
    }
    let value = normalize_value(attr, value, attr.name)?;
    remove_ci(out, attr.name);
    out.insert(attr.name.to_owned(), value);
    Ok(())
}

fn check_declared_schemas(
    resource_type: ResourceType,
    body: &Map<String, Value>,
) -> Result<(), ScimError> {
    let core = resource_type.core_schema().id;
    let declared = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ScimError::invalid_syntax(format!("'schemas' must be an array listing {core}"))
        })?;
    let mut has_core = false;
    for urn in declared {
        let urn = urn
            .as_str()
            .ok_or_else(|| ScimError::invalid_syntax("'schemas' must hold strings"))?;
        match resource_type.schema(urn) {
            Some(schema) => has_core |= schema.id == core,
            None => {
                return Err(ScimError::invalid_value(format!(
                    "schema '{urn}' is not supported for resource type {resource_type}"
                )))
            }
        }
    }
    if has_core {
        Ok(())
    } else {
        Err(ScimError::invalid_value(format!(
            "'schemas' must list {core}"
        )))
    }
}

/// A value for `attr`, converted to its declared type. `name` is how errors call it.
pub(crate) fn normalize_value(
    attr: &'static AttributeDef,
    value: &Value,
    name: &str,
) -> Result<Value, ScimError> {
    if !attr.multi_valued {
        return normalize_single(attr, value, name);
    }
    let items: &[Value] = match value {
        Value::Null => return Ok(Value::Null),
        Value::Array(items) => items,
        single => std::slice::from_ref(single),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let item = normalize_single(attr, item, name)?;
        if !item.is_null() {
            out.push(item);
        }
    }
    Ok(Value::Array(out))
}

/// One value (one element, for a multi-valued attribute) converted to `attr`'s type. Null
/// sub-attributes are kept as null so that a merge can clear them.
pub(crate) fn normalize_single(
    attr: &'static AttributeDef,
    value: &Value,
    name: &str,
) -> Result<Value, ScimError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let wrong_type = || {
        ScimError::invalid_value(format!(
            "attribute '{name}' must be of type {}{}",
            attr.kind,
            if attr.multi_valued {
                " (or an array of them)"
            } else {
                ""
            }
        ))
    };
    match attr.kind {
        AttributeType::String | AttributeType::Reference | AttributeType::Binary => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(wrong_type()),
        },
        AttributeType::Boolean => lenient_bool(value).map(Value::Bool).ok_or_else(wrong_type),
        AttributeType::DateTime => match value.as_str() {
            Some(text) if chrono::DateTime::parse_from_rfc3339(text).is_ok() => Ok(value.clone()),
            _ => Err(ScimError::invalid_value(format!(
                "attribute '{name}' must be an RFC 3339 timestamp"
            ))),
        },
        AttributeType::Complex => match value {
            Value::Object(fields) => {
                let mut out = Map::new();
                for (key, field) in fields {
                    let sub = attr.sub_attribute(key).ok_or_else(|| {
                        ScimError::invalid_value(format!(
                            "attribute '{name}' has no sub-attribute '{key}'"
                        ))
                    })?;
                    if sub.mutability == Mutability::ReadOnly {
                        continue;
                    }
                    let sub_name = format!("{name}.{}", sub.name);
                    let field = normalize_single(sub, field, &sub_name)?;
                    remove_ci(&mut out, sub.name);
                    out.insert(sub.name.to_owned(), field);
                }
                Ok(Value::Object(out))
            }
            Value::Array(_) => Err(wrong_type()),
            bare => match attr.sub_attribute("value") {
                // Entra ID sends the enterprise `manager` as the manager's id alone.
                Some(value_sub) => {
                    let mut out = Map::new();
                    let sub_name = format!("{name}.value");
                    out.insert(
                        value_sub.name.to_owned(),
                        normalize_single(value_sub, bare, &sub_name)?,
                    );
                    Ok(Value::Object(out))
                }
                None => Err(wrong_type()),
            },
        },
    }
}

/// Brings a resource to the normal form and checks required attributes.
pub(crate) fn finalize(
    resource_type: ResourceType,
    resource: &mut Map<String, Value>,
) -> Result<(), ScimError> {
    for extension in resource_type.extensions() {
        if let Some(Value::Object(mut attributes)) = remove_ci(resource, extension.id) {
            strip_unassigned(&mut attributes);
            if !attributes.is_empty() {
                resource.insert(extension.id.to_owned(), Value::Object(attributes));
            }
        }
    }
    strip_unassigned(resource);
    strip_sensitive(resource_type, resource);
    check_user_name(resource_type, resource)?;
    for (schema, attr) in resource_type.all_attributes() {
        if !attr.required || attr.mutability == Mutability::ReadOnly {
            continue;
        }
        let extension = extension_of(resource_type, schema);
        let present = container(resource, extension)
            .and_then(|c| get_ci(c, attr.name))
            .is_some_and(is_present);
        if !present {
            return Err(ScimError::invalid_value(format!(
                "attribute '{}' is required",
                attr.name
            )));
        }
    }
    let mut schemas = vec![Value::String(resource_type.core_schema().id.to_owned())];
    for extension in resource_type.extensions() {
        if resource.contains_key(extension.id) {
            schemas.push(Value::String(extension.id.to_owned()));
        }
    }
    remove_ci(resource, "schemas");
    resource.insert("schemas".to_owned(), Value::Array(schemas));
    Ok(())
}

/// Removes every attribute that is never returned (`password`, in any spelling): airlock never
/// uses one, so it is never stored either (RFC 7643 §4.1.1: `returned: never`).
fn strip_sensitive(resource_type: ResourceType, resource: &mut Map<String, Value>) {
    for (schema, attr) in resource_type.all_attributes() {
        if !attr.is_sensitive() {
            continue;
        }
        match extension_of(resource_type, schema) {
            None => {
                remove_ci(resource, attr.name);
            }
            Some(extension) => {
                if let Some(Value::Object(attributes)) = resource.get_mut(extension) {
                    remove_ci(attributes, attr.name);
                }
            }
        }
    }
}

/// A User's `userName` must not hold control characters (NUL, newline, ESC, ...): no Airflow
/// account can have such a name, so the identity provider is told now (`invalidValue`) rather
/// than the user being stored and never provisioned. The error does not echo the value.
fn check_user_name(
    resource_type: ResourceType,
    resource: &Map<String, Value>,
) -> Result<(), ScimError> {
    if resource_type != ResourceType::User {
        return Ok(());
    }
    match get_ci(resource, "userName").and_then(Value::as_str) {
        Some(name) if name.chars().any(char::is_control) => Err(ScimError::invalid_value(
            "attribute 'userName' must not contain control characters",
        )),
        _ => Ok(()),
    }
}

/// Removes unassigned values: null, empty strings, empty arrays and objects, recursively.
fn strip_unassigned(map: &mut Map<String, Value>) {
    map.retain(|_, value| {
        match value {
            Value::Object(inner) => strip_unassigned(inner),
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::Object(inner) = item {
                        strip_unassigned(inner);
                    }
                }
                items.retain(is_present);
            }
            _ => {}
        }
        is_present(value)
    });
}

/// The extension URN for an attribute of `schema`, or `None` for core and common attributes.
pub(crate) fn extension_of(
    resource_type: ResourceType,
    schema: &'static SchemaDef,
) -> Option<&'static str> {
    (schema.id != resource_type.core_schema().id).then_some(schema.id)
}

/// The object holding attributes of `extension` (or the resource itself for core ones).
pub(crate) fn container<'m>(
    resource: &'m Map<String, Value>,
    extension: Option<&str>,
) -> Option<&'m Map<String, Value>> {
    match extension {
        None => Some(resource),
        Some(urn) => get_ci(resource, urn).and_then(Value::as_object),
    }
}

/// Mutable [`container`], creating the extension object if needed.
pub(crate) fn container_mut<'m>(
    resource: &'m mut Map<String, Value>,
    extension: Option<&'static str>,
) -> &'m mut Map<String, Value> {
    let Some(urn) = extension else {
        return resource;
    };
    let existing = match remove_ci(resource, urn) {
        Some(Value::Object(map)) => map,
        // Anything else under an extension key is not a value airlock could have written.
        _ => Map::new(),
    };
    let slot = resource
        .entry(urn.to_owned())
        .or_insert(Value::Object(existing));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .expect("invariant: the slot was just made an object")
}

/// The stored resource as an object. Storage only holds objects, so anything else is a bug
/// on the server side, not a client error.
pub(crate) fn stored_object(resource: &Value) -> Result<&Map<String, Value>, ScimError> {
    resource
        .as_object()
        .ok_or_else(|| ScimError::new(500, None, "stored resource is not a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use crate::schema::ENTERPRISE_USER_SCHEMA;
    use serde_json::json;

    fn user(extra: Value) -> Value {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada",
        });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    }

    #[test]
    fn a_body_is_normalised_to_canonical_names_and_types() {
        let out = validate_resource(
            ResourceType::User,
            &user(json!({
                "ACTIVE": "True",
                "Name": {"GivenName": "Ada", "familyName": ""},
                "emails": {"value": "ada@example.com"},
                "title": null,
            })),
        )
        .expect("valid");
        assert_eq!(
            out,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ada",
                "active": true,
                "name": {"givenName": "Ada"},
                "emails": [{"value": "ada@example.com"}],
            })
        );
    }

    #[test]
    fn read_only_attributes_in_a_body_are_ignored() {
        let out = validate_resource(
            ResourceType::User,
            &user(json!({"id": "x", "meta": {"version": "1"}, "groups": [{"value": "g"}]})),
        )
        .expect("valid");
        assert!(out.get("id").is_none());
        assert!(out.get("meta").is_none());
        assert!(out.get("groups").is_none());
    }

    #[test]
    fn extension_attributes_add_the_extension_to_schemas() {
        let out = validate_resource(
            ResourceType::User,
            &user(json!({ENTERPRISE_USER_SCHEMA: {"department": "R&D", "manager": "m1"}})),
        )
        .expect("valid");
        assert_eq!(
            out["schemas"],
            json!([
                "urn:ietf:params:scim:schemas:core:2.0:User",
                ENTERPRISE_USER_SCHEMA
            ])
        );
        assert_eq!(
            out[ENTERPRISE_USER_SCHEMA]["manager"],
            json!({"value": "m1"})
        );
    }

    #[test]
    fn bodies_without_required_attributes_or_with_unknown_ones_are_refused() {
        let missing = validate_resource(
            ResourceType::User,
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}),
        )
        .expect_err("no userName");
        assert_eq!(missing.scim_type, Some(ScimType::InvalidValue));
        let unknown =
            validate_resource(ResourceType::User, &user(json!({"shoeSize": "9"}))).expect_err("x");
        assert_eq!(unknown.scim_type, Some(ScimType::InvalidValue));
        let no_schemas =
            validate_resource(ResourceType::User, &json!({"userName": "a"})).expect_err("x");
        assert_eq!(no_schemas.scim_type, Some(ScimType::InvalidSyntax));
        let wrong_schema = validate_resource(
            ResourceType::Group,
            &json!({"schemas": [ENTERPRISE_USER_SCHEMA, "urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"}),
        )
        .expect_err("x");
        assert_eq!(wrong_schema.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn a_password_in_any_spelling_is_dropped_and_control_characters_in_user_name_refused() {
        for key in ["password", "Password", "PASSWORD"] {
            let out = validate_resource(ResourceType::User, &user(json!({key: "hunter2"})))
                .expect("a password is accepted");
            assert!(!out.to_string().contains("hunter2"), "{out}");
        }
        for name in ["nul\u{0}", "line\nbreak", "\u{1b}]0;x", "c1\u{85}"] {
            let err = validate_resource(ResourceType::User, &user(json!({"userName": name})))
                .expect_err("control characters are refused");
            assert_eq!(err.scim_type, Some(ScimType::InvalidValue));
            assert_eq!(err.status, 400);
        }
    }

    #[test]
    fn type_errors_never_echo_the_value() {
        let err = validate_resource(ResourceType::User, &user(json!({"password": ["hunter2"]})))
            .expect_err("password must be a string");
        assert_eq!(err.scim_type, Some(ScimType::InvalidValue));
        assert!(!err.detail.contains("hunter2"), "{}", err.detail);
        assert!(!err.to_json().to_string().contains("hunter2"));
    }

    #[test]
    fn put_keeps_read_only_attributes_from_the_existing_resource_and_drops_a_password() {
        let existing = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "u1",
            "meta": {"resourceType": "User", "version": "W/\"1\""},
            "userName": "ada",
            "title": "Countess",
            "password": "secret",
            "groups": [{"value": "g1"}],
        });
        let incoming = user(json!({"id": "other", "displayName": "Ada"}));
        let out = replace_resource(ResourceType::User, &existing, &incoming).expect("valid");
        assert_eq!(out["id"], "u1");
        assert_eq!(out["meta"], existing["meta"]);
        assert_eq!(out["groups"], existing["groups"]);
        assert!(out.get("password").is_none(), "a password is never kept");
        assert_eq!(out["displayName"], "Ada");
        assert!(
            out.get("title").is_none(),
            "omitted readWrite attributes are cleared"
        );
    }
}
