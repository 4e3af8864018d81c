//! SCIM PATCH (RFC 7644 §3.5.2): parsing a `PatchOp` message and applying it to a resource,
//! atomically.
//!
//! [`apply_patch`] works on a copy and returns it only when every operation succeeded, so a
//! failing operation can never leave a half-patched resource behind. The result is in the
//! normal form of [`crate::resource`].
//!
//! What real clients send, and what airlock accepts for them:
//! - Microsoft Entra ID: capitalised op names (`"Replace"`); booleans as strings
//!   (`"active": "False"`); dotted and URN-qualified keys in a path-less value
//!   (`{"name.givenName": "Ada"}`); member removal as `"path": "members"` with a list of
//!   `{"value": id}`; the enterprise `manager` as a bare id; `Add` or `Replace` on
//!   `emails[type eq "work"].value` whether or not a work email exists yet (the value is
//!   created from the filter's `eq` terms); `roles[primary eq "True"]`.
//! - Okta: `{"op": "replace", "value": {"active": false}}`; `members[value eq "..."]`
//!   removal; a group rename whose value repeats the group's `id`.
//!
//! Decisions beyond the RFC, each for a reason:
//! - Writing a `readOnly` attribute with the value it already has is a no-op, not an error
//!   (Okta repeats `id`); any other write to it is `mutability`.
//! - `remove` through a filter that matches nothing succeeds: the desired state already holds,
//!   and a retried removal must not fail.
//! - `add`/`replace` through an unmatched filter creates the value when the filter is a
//!   conjunction of `eq` terms, except on `members`, where creating a value would grant
//!   access nobody asked for; otherwise it is `noTarget`.
//! - `replace` through a filter without a sub-attribute merges into the matched values rather
//!   than replacing them whole, as RFC 7644 does for complex attributes without a filter, so
//!   `emails[type eq "work"]` replaced with `{"value": ...}` keeps its `type`.
//! - Removing the `value` of a selected value removes the whole value: an email without an
//!   address means nothing.
//! - A sub-attribute of a multi-valued attribute needs a filter (`emails.value` alone is
//!   `invalidPath`): which of several emails it means is a guess airlock will not make.
//! - Setting a value's `primary` to true clears it on the others (RFC 7643 §2.4).
//!
//! This module does not bump `meta.version` or `meta.lastModified` (the HTTP layer does, with
//! its clock) and does not check uniqueness (storage does).

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{compile_element_filter, ElementFilter};
use crate::json::{get_ci, get_ci_mut, is_present, lenient_bool, remove_ci};
use crate::path::{AttrPath, Path};
use crate::resource::{container_mut, finalize, normalize_single, normalize_value, stored_object};
use crate::schema::{
    AttributeDef, AttributeType, Mutability, ResolvedAttr, ResourceType, SchemaDef,
    PATCH_OP_MESSAGE,
};

/// A PATCH operation's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

impl PatchOpKind {
    /// The verb for an `op` string, case-insensitively (Entra ID sends `"Replace"`).
    pub fn parse(op: &str) -> Option<Self> {
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(op))
    }

    /// The lowercase RFC spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// The verb.
    pub op: PatchOpKind,
    /// The target, as written; `None` when absent or empty.
    pub path: Option<String>,
    /// The value, when one was given (`null` included).
    pub value: Option<Value>,
}

/// A parsed `urn:ietf:params:scim:api:messages:2.0:PatchOp` message.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, applied in order.
    pub operations: Vec<PatchOperation>,
}

/// The most operations one PATCH may carry. Identity providers send a handful (a membership
/// change is one operation whatever the number of members); each operation is applied to the
/// whole resource, so an unbounded list is quadratic work for one request.
pub const MAX_OPERATIONS: usize = 1000;

impl PatchRequest {
    /// Parses a PATCH body. Structural problems are `400 invalidSyntax`; more than
    /// [`MAX_OPERATIONS`] operations are `400 invalidValue`.
    pub fn from_json(body: &Value) -> Result<Self, ScimError> {
        let body = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a PATCH request must be a JSON object"))?;
        let declares_patch_op = get_ci(body, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| {
                schemas.iter().any(|s| {
                    s.as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_MESSAGE))
                })
            });
        if !declares_patch_op {
            return Err(ScimError::invalid_syntax(format!(
                "'schemas' must list {PATCH_OP_MESSAGE}"
            )));
        }
        let operations = get_ci(body, "Operations")
            .and_then(Value::as_array)
            .filter(|ops| !ops.is_empty())
            .ok_or_else(|| {
                ScimError::invalid_syntax("'Operations' must be an array of one or more operations")
            })?;
        if operations.len() > MAX_OPERATIONS {
            return Err(ScimError::invalid_value(format!(
                "a PATCH request may hold at most {MAX_OPERATIONS} operations, this one has {}",
                operations.len()
            )));
        }
        let operations = operations
            .iter()
            .enumerate()
            .map(|(i, op)| {
                parse_operation(op).map_err(|e| e.context(format_args!("Operations[{i}]")))
            })
            .collect::<Result<_, _>>()?;
        Ok(PatchRequest { operations })
    }
}

fn parse_operation(op: &Value) -> Result<PatchOperation, ScimError> {
    let op = op
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("an operation must be a JSON object"))?;
    let kind = get_ci(op, "op")
        .and_then(Value::as_str)
        .and_then(PatchOpKind::parse)
        .ok_or_else(|| ScimError::invalid_syntax("'op' must be add, remove or replace"))?;
    let path = match get_ci(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.trim().is_empty() => None,
        Some(Value::String(path)) => Some(path.clone()),
        Some(_) => return Err(ScimError::invalid_syntax("'path' must be a string")),
    };
    Ok(PatchOperation {
        op: kind,
        path,
        value: get_ci(op, "value").cloned(),
    })
}

/// Applies `request` to a copy of `resource` and returns the patched copy. On error the
/// caller's resource is, by construction, untouched. Errors name the failing operation
/// (`Operations[2]: ...`).
pub fn apply_patch(
    resource_type: ResourceType,
    resource: &Value,
    request: &PatchRequest,
) -> Result<Value, ScimError> {
    let mut working = stored_object(resource)?.clone();
    for (i, operation) in request.operations.iter().enumerate() {
        apply_operation(resource_type, &mut working, operation)
            .map_err(|e| e.context(format_args!("Operations[{i}]")))?;
    }
    finalize(resource_type, &mut working)?;
    Ok(Value::Object(working))
}

/// [`apply_patch`], replacing `resource` only if every operation succeeded.
pub fn apply_patch_in_place(
    resource_type: ResourceType,
    resource: &mut Value,
    request: &PatchRequest,
) -> Result<(), ScimError> {
    *resource = apply_patch(resource_type, resource, request)?;
    Ok(())
}

fn apply_operation(
    resource_type: ResourceType,
    root: &mut Map<String, Value>,
    operation: &PatchOperation,
) -> Result<(), ScimError> {
    let kind = operation.op;
    let value = operation.value.as_ref();
    let Some(path) = operation.path.as_deref() else {
        if kind == PatchOpKind::Remove {
            return Err(ScimError::no_target("remove needs a path"));
        }
        return apply_value_object(resource_type, root, kind, required(value)?, None);
    };
    // A path naming a whole extension (`urn:...:enterprise:2.0:User`) is not an attribute path;
    // treat it as the object of that extension's attributes.
    if let Some(extension) = resource_type.extension(path.trim()) {
        if kind == PatchOpKind::Remove {
            remove_ci(root, extension.id);
            return Ok(());
        }
        return apply_value_object(resource_type, root, kind, required(value)?, Some(extension));
    }
    let path = Path::parse(path)?;
    let resolved = path.resolve(resource_type)?;
    match (&path.filter, kind) {
        (Some(filter), _) => apply_filtered(root, kind, resolved, filter, value),
        (None, PatchOpKind::Remove) => remove_attribute(root, resolved, value),
        (None, _) => write_attribute(root, kind, resolved, required(value)?),
    }
}

fn required(value: Option<&Value>) -> Result<&Value, ScimError> {
    value.ok_or_else(|| ScimError::invalid_value("add and replace need a value"))
}

/// A path-less `add`/`replace`: every key of the object is a path of its own.
fn apply_value_object(
    resource_type: ResourceType,
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    value: &Value,
    within: Option<&'static SchemaDef>,
) -> Result<(), ScimError> {
    let fields = value.as_object().ok_or_else(|| {
        ScimError::invalid_value("without a path, the value must be an object of attributes")
    })?;
    for (key, field) in fields {
        // Entra ID writes the extension's object with its own `schemas` member; the resource's
        // `schemas` is recomputed from the extensions it carries, so that member says nothing.
        if within.is_some() && key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if within.is_none() {
            if let Some(extension) = resource_type.extension(key) {
                apply_value_object(resource_type, root, kind, field, Some(extension))?;
                continue;
            }
        }
        let mut attr_path = AttrPath::parse(key)?;
        if let (Some(extension), None) = (within, &attr_path.schema) {
            attr_path.schema = Some(extension.id.to_owned());
        }
        let resolved = resource_type
            .resolve(&attr_path)
            .map_err(|err| ScimError::invalid_path(err.to_string()))?;
        write_attribute(root, kind, resolved, field)?;
    }
    Ok(())
}

fn read_only(name: &str) -> ScimError {
    ScimError::mutability(format!("attribute '{name}' is readOnly"))
}

fn immutable(name: &str) -> ScimError {
    ScimError::mutability(format!(
        "attribute '{name}' is immutable and already has a value"
    ))
}

/// `add`/`replace` without a filter.
fn write_attribute(
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    resolved: ResolvedAttr,
    value: &Value,
) -> Result<(), ScimError> {
    if kind == PatchOpKind::Add && value.is_null() {
        // Adding nothing changes nothing; only replace (or remove) clears.
        return Ok(());
    }
    let attr = resolved.attribute;
    let name = resolved.display_name();
    let container = container_mut(root, resolved.extension());
    match resolved.sub_attribute {
        None => {
            let new = normalize_value(attr, value, &name)?;
            let current = get_ci(container, attr.name);
            if attr.mutability == Mutability::ReadOnly {
                return if current == Some(&new) || (current.is_none() && new.is_null()) {
                    Ok(())
                } else {
                    Err(read_only(&name))
                };
            }
            if attr.multi_valued {
                let Value::Array(items) = new else {
                    return put(container, attr.name, Value::Null);
                };
                match kind {
                    PatchOpKind::Add => append_values(container, attr, items, &name),
                    _ => {
                        let written: Vec<usize> = (0..items.len()).collect();
                        let mut items = items;
                        settle_primary(&mut items, &written, &name)?;
                        put(container, attr.name, Value::Array(items))
                    }
                }
            } else if attr.kind == AttributeType::Complex {
                // RFC 7644 §3.5.2.1 and §3.5.2.3: both add and replace merge the given
                // sub-attributes into a complex attribute and leave the others alone.
                match new {
                    Value::Object(fields) => merge_into(container, attr, fields, &name),
                    _ => put(container, attr.name, Value::Null),
                }
            } else {
                if attr.mutability == Mutability::Immutable {
                    if let Some(current) = current.filter(|c| is_present(c)) {
                        if *current != new {
                            return Err(immutable(&name));
                        }
                    }
                }
                put(container, attr.name, new)
            }
        }
        Some(sub) => {
            if attr.multi_valued {
                return Err(needs_filter(attr));
            }
            let new = normalize_single(sub, value, &name)?;
            let current = get_ci(container, attr.name)
                .and_then(Value::as_object)
                .and_then(|object| get_ci(object, sub.name));
            if attr.mutability == Mutability::ReadOnly || sub.mutability == Mutability::ReadOnly {
                return if current == Some(&new) {
                    Ok(())
                } else {
                    Err(read_only(&name))
                };
            }
            let mut fields = Map::new();
            fields.insert(sub.name.to_owned(), new);
            merge_into(container, attr, fields, &attr_name(&resolved))
        }
    }
}

fn attr_name(resolved: &ResolvedAttr) -> String {
    ResolvedAttr {
        sub_attribute: None,
        ..*resolved
    }
    .display_name()
}

fn needs_filter(attr: &AttributeDef) -> ScimError {
    ScimError::invalid_path(format!(
        "'{}' is multi-valued: select the values with a filter, as in {}[type eq \"work\"].value",
        attr.name, attr.name
    ))
}

/// Sets (or, for null, removes) an attribute under its canonical name.
fn put(
    container: &mut Map<String, Value>,
    name: &'static str,
    value: Value,
) -> Result<(), ScimError> {
    remove_ci(container, name);
    if !value.is_null() {
        container.insert(name.to_owned(), value);
    }
    Ok(())
}

/// Merges normalised sub-attribute values into the single-valued complex attribute `attr`.
fn merge_into(
    container: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    fields: Map<String, Value>,
    name: &str,
) -> Result<(), ScimError> {
    let mut object = match remove_ci(container, attr.name) {
        Some(Value::Object(object)) => object,
        _ => Map::new(),
    };
    let result = merge_fields(attr, &mut object, fields, name);
    container.insert(attr.name.to_owned(), Value::Object(object));
    result
}

/// Merges normalised sub-attribute values into one complex value, honouring `immutable`.
fn merge_fields(
    attr: &'static AttributeDef,
    object: &mut Map<String, Value>,
    fields: Map<String, Value>,
    name: &str,
) -> Result<(), ScimError> {
    for (key, value) in fields {
        let Some(sub) = attr.sub_attribute(&key) else {
            continue;
        };
        if sub.mutability == Mutability::Immutable {
            if let Some(current) = get_ci(object, sub.name).filter(|c| is_present(c)) {
                if *current != value {
                    return Err(immutable(&format!("{name}.{}", sub.name)));
                }
            }
        }
        remove_ci(object, sub.name);
        if !value.is_null() {
            object.insert(sub.name.to_owned(), value);
        }
    }
    Ok(())
}

/// Appends values to a multi-valued attribute, skipping ones already there.
fn append_values(
    container: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    items: Vec<Value>,
    name: &str,
) -> Result<(), ScimError> {
    let mut values = take_values(container, attr);
    let mut written = Vec::new();
    for item in items {
        if !is_present(&item) || values.iter().any(|v| same_value(attr, v, &item)) {
            continue;
        }
        values.push(item);
        written.push(values.len() - 1);
    }
    let result = settle_primary(&mut values, &written, name);
    container.insert(attr.name.to_owned(), Value::Array(values));
    result
}

/// The current values of a multi-valued attribute, removed from the container.
fn take_values(container: &mut Map<String, Value>, attr: &AttributeDef) -> Vec<Value> {
    match remove_ci(container, attr.name) {
        Some(Value::Array(values)) => values,
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    }
}

/// Whether two values of a multi-valued attribute are the same value: equal, or for
/// attributes whose values are identities (group members), equal `value`s.
fn same_value(attr: &AttributeDef, a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    if !attr.identified_by_value {
        return false;
    }
    let case_exact = attr.sub_attribute("value").is_none_or(|sub| sub.case_exact);
    match (value_text(a), value_text(b)) {
        (Some(a), Some(b)) => same_text(a, b, case_exact),
        _ => false,
    }
}

fn value_text(element: &Value) -> Option<&str> {
    match element {
        Value::Object(object) => get_ci(object, "value").and_then(Value::as_str),
        Value::String(text) => Some(text),
        _ => None,
    }
}

fn same_text(a: &str, b: &str, case_exact: bool) -> bool {
    if case_exact {
        a == b
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

fn is_primary(element: &Value) -> bool {
    element
        .as_object()
        .and_then(|object| get_ci(object, "primary"))
        .and_then(lenient_bool)
        .unwrap_or(false)
}

/// RFC 7643 §2.4: at most one value is primary. Among the values just written, at most one
/// may claim it; if one does, the others lose it.
fn settle_primary(values: &mut [Value], written: &[usize], name: &str) -> Result<(), ScimError> {
    let claims: Vec<usize> = written
        .iter()
        .copied()
        .filter(|&i| values.get(i).is_some_and(is_primary))
        .collect();
    match claims.as_slice() {
        [] => Ok(()),
        [winner] => {
            for (i, value) in values.iter_mut().enumerate() {
                if i != *winner && is_primary(value) {
                    if let Some(object) = value.as_object_mut() {
                        remove_ci(object, "primary");
                        object.insert("primary".to_owned(), Value::Bool(false));
                    }
                }
            }
            Ok(())
        }
        _ => Err(ScimError::invalid_value(format!(
            "at most one value of '{name}' may be primary"
        ))),
    }
}

/// `remove` without a filter.
fn remove_attribute(
    root: &mut Map<String, Value>,
    resolved: ResolvedAttr,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let attr = resolved.attribute;
    let name = resolved.display_name();
    let leaf = resolved.leaf();
    if attr.mutability == Mutability::ReadOnly || leaf.mutability == Mutability::ReadOnly {
        return Err(read_only(&name));
    }
    let container = container_mut(root, resolved.extension());
    let current = get_ci(container, attr.name);
    if leaf.mutability == Mutability::Immutable {
        let present = match resolved.sub_attribute {
            None => current.is_some_and(is_present),
            Some(sub) => current
                .and_then(Value::as_object)
                .and_then(|object| get_ci(object, sub.name))
                .is_some_and(is_present),
        };
        if present {
            return Err(immutable(&name));
        }
    }
    match resolved.sub_attribute {
        Some(_) if attr.multi_valued => Err(needs_filter(attr)),
        Some(sub) => {
            if let Some(object) = get_ci_mut(container, attr.name).and_then(Value::as_object_mut) {
                remove_ci(object, sub.name);
            }
            Ok(())
        }
        None => match value {
            // Entra ID removes group members by listing them: {"path": "members", "value":
            // [{"value": "id1"}, ...]}. Without a value, the whole attribute goes.
            Some(listed) if attr.multi_valued && !listed.is_null() => {
                remove_listed_values(container, attr, listed, &name)
            }
            _ => {
                remove_ci(container, attr.name);
                Ok(())
            }
        },
    }
}

fn remove_listed_values(
    container: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    listed: &Value,
    name: &str,
) -> Result<(), ScimError> {
    let value_sub = attr.sub_attribute("value").ok_or_else(|| {
        ScimError::invalid_value(format!(
            "'{name}' has no 'value' sub-attribute to select values to remove by"
        ))
    })?;
    let listed = match listed {
        Value::Array(items) => items.as_slice(),
        single => std::slice::from_ref(single),
    };
    let targets = listed
        .iter()
        .map(|item| {
            value_text(item).ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "values to remove from '{name}' must be objects with a string 'value'"
                ))
            })
        })
        .collect::<Result<Vec<&str>, _>>()?;
    let mut values = take_values(container, attr);
    values.retain(|element| {
        !value_text(element).is_some_and(|text| {
            targets
                .iter()
                .any(|t| same_text(text, t, value_sub.case_exact))
        })
    });
    container.insert(attr.name.to_owned(), Value::Array(values));
    Ok(())
}

/// Any operation whose path has a value filter: `members[value eq "x"]`,
/// `emails[type eq "work"].value`.
fn apply_filtered(
    root: &mut Map<String, Value>,
    kind: PatchOpKind,
    resolved: ResolvedAttr,
    filter: &crate::filter::Filter,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let attr = resolved.attribute;
    let name = resolved.display_name();
    if attr.kind != AttributeType::Complex || !attr.multi_valued {
        return Err(ScimError::invalid_path(format!(
            "a value filter needs a multi-valued complex attribute, and '{}' is not one",
            attr.name
        )));
    }
    if attr.mutability == Mutability::ReadOnly
        || resolved
            .sub_attribute
            .is_some_and(|s| s.mutability == Mutability::ReadOnly)
    {
        return Err(read_only(&name));
    }
    let selector = compile_element_filter(attr, filter)?;
    let fields = match kind {
        PatchOpKind::Remove => Map::new(),
        PatchOpKind::Add | PatchOpKind::Replace => {
            let value = required(value)?;
            match resolved.sub_attribute {
                Some(sub) => {
                    let mut fields = Map::new();
                    fields.insert(sub.name.to_owned(), normalize_single(sub, value, &name)?);
                    fields
                }
                None => match normalize_single(attr, value, &name)? {
                    Value::Object(fields) => fields,
                    _ => {
                        return Err(ScimError::invalid_value(format!(
                            "the value for '{name}' must be an object"
                        )))
                    }
                },
            }
        }
    };
    let container = container_mut(root, resolved.extension());
    let mut values = take_values(container, attr);
    let result = edit_selected(
        attr,
        resolved.sub_attribute,
        kind,
        &selector,
        fields,
        &mut values,
        &name,
    );
    // Put the values back whatever happened, so an error never leaves the attribute missing.
    container.insert(attr.name.to_owned(), Value::Array(values));
    result
}

/// The part of [`apply_filtered`] that edits the attribute's values.
fn edit_selected(
    attr: &'static AttributeDef,
    sub: Option<&'static AttributeDef>,
    kind: PatchOpKind,
    selector: &ElementFilter,
    fields: Map<String, Value>,
    values: &mut Vec<Value>,
    name: &str,
) -> Result<(), ScimError> {
    let matched: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| selector.matches(v))
        .map(|(i, _)| i)
        .collect();
    if kind == PatchOpKind::Remove {
        return remove_selected(sub, values, &matched, name);
    }
    let written = if matched.is_empty() {
        let seed = selector
            .seed()
            .filter(|_| !attr.identified_by_value)
            .ok_or_else(|| {
                ScimError::no_target(format!("the filter on '{name}' matched no value"))
            })?;
        let mut element = Map::new();
        for (key, literal) in seed {
            if let Some(sub) = attr.sub_attribute(&key) {
                element.insert(sub.name.to_owned(), normalize_single(sub, &literal, name)?);
            }
        }
        values.push(Value::Object(element));
        vec![values.len() - 1]
    } else {
        matched
    };
    for &i in &written {
        if let Some(Value::Object(element)) = values.get_mut(i) {
            merge_fields(attr, element, fields.clone(), name)?;
        }
    }
    // Only a write that sets `primary` may take it from the other values; values that were
    // primary already are not re-judged.
    if fields.get("primary") == Some(&Value::Bool(true)) {
        settle_primary(values, &written, name)?;
    }
    Ok(())
}

fn remove_selected(
    sub: Option<&'static AttributeDef>,
    values: &mut Vec<Value>,
    matched: &[usize],
    name: &str,
) -> Result<(), ScimError> {
    let Some(sub) = sub else {
        let mut index = 0;
        values.retain(|_| {
            let keep = !matched.contains(&index);
            index += 1;
            keep
        });
        return Ok(());
    };
    if sub.mutability == Mutability::Immutable {
        let touches_value = matched.iter().any(|&i| {
            values
                .get(i)
                .and_then(Value::as_object)
                .and_then(|o| get_ci(o, sub.name))
                .is_some_and(is_present)
        });
        if touches_value {
            return Err(immutable(name));
        }
    }
    let drops_whole_value = sub.name == "value";
    let mut index = 0;
    values.retain_mut(|element| {
        let selected = matched.contains(&index);
        index += 1;
        if !selected {
            return true;
        }
        if drops_whole_value {
            return false;
        }
        if let Some(object) = element.as_object_mut() {
            remove_ci(object, sub.name);
        }
        true
    });
    Ok(())
}

#[cfg(test)]
mod tests;
