//! Listing and querying (RFC 7644 §3.4.2, §3.9): the query parameters, `attributes` /
//! `excludedAttributes` projection, sorting, paging and the `ListResponse` body.
//!
//! [`list_response`] does everything over an in-memory slice, which is what tests and small
//! deployments need; a storage layer that filters and pages in SQL can still use
//! [`Projection`], [`Page`] and [`ListResponse`] on its own results.
//!
//! Decisions:
//! - `id` and `schemas` are always returned and `password` never, whatever the request says
//!   (the `returned` characteristic decides, not the client).
//! - Keys a resource carries that the schema does not know are never returned.
//! - Unknown names in `attributes`/`excludedAttributes` are ignored; malformed ones are
//!   `invalidValue`. An unknown `sortBy` is `invalidValue`.
//! - `startIndex` below 1 means 1; a negative `count` means 0; `count` is capped at the
//!   server's maximum, which is also the default.
//! - Sorting follows the attribute's type and `caseExact`; a multi-valued attribute sorts by its
//!   primary value, else its first; resources without a value sort last in either order.
//!
//! This module does not read URLs or HTTP bodies: it receives parameter name/value pairs.

use std::cmp::Ordering;
use std::ops::Range;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::Filter;
use crate::json::{get_ci, is_present, lenient_bool};
use crate::path::AttrPath;
use crate::resource::container;
use crate::schema::{
    AttributeDef, AttributeType, ResolvedAttr, ResourceType, Returned, LIST_RESPONSE_MESSAGE,
};

/// `sortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// `ascending` (the default)
    #[default]
    Ascending,
    /// `descending`
    Descending,
}

/// What one entry of `attributes` or `excludedAttributes` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selector {
    /// A whole schema: the core one (every core attribute) or an extension.
    Schema(&'static str),
    /// An attribute, or one sub-attribute of it.
    Attribute {
        extension: Option<&'static str>,
        name: &'static str,
        sub: Option<&'static str>,
    },
}

/// The `attributes` / `excludedAttributes` of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    attributes: Vec<Selector>,
    excluded: Vec<Selector>,
}

impl Projection {
    /// Parses the comma-separated parameter values. Errors are `400 invalidValue`.
    pub fn parse(
        resource_type: ResourceType,
        attributes: Option<&str>,
        excluded_attributes: Option<&str>,
    ) -> Result<Self, ScimError> {
        Ok(Projection {
            attributes: parse_selectors(resource_type, attributes)?,
            excluded: parse_selectors(resource_type, excluded_attributes)?,
        })
    }

    /// The resource as the client asked to see it.
    pub fn project(&self, resource_type: ResourceType, resource: &Value) -> Value {
        let Some(object) = resource.as_object() else {
            return Value::Object(Map::new());
        };
        let core = resource_type.core_schema().id;
        let mut out = Map::new();
        for (key, value) in object {
            if let Some(extension) = resource_type.extension(key) {
                let Some(fields) = value.as_object() else {
                    continue;
                };
                let mut projected = Map::new();
                for (name, value) in fields {
                    if let Some(attr) = extension.attribute(name) {
                        if let Some(value) =
                            self.project_attribute(extension.id, Some(extension.id), attr, value)
                        {
                            projected.insert(attr.name.to_owned(), value);
                        }
                    }
                }
                if !projected.is_empty() {
                    out.insert(extension.id.to_owned(), Value::Object(projected));
                }
            } else if let Some(attr) = resource_type.core_attribute(key) {
                if let Some(value) = self.project_attribute(core, None, attr, value) {
                    out.insert(attr.name.to_owned(), value);
                }
            }
        }
        Value::Object(out)
    }

    fn project_attribute(
        &self,
        schema: &'static str,
        extension: Option<&'static str>,
        attr: &'static AttributeDef,
        value: &Value,
    ) -> Option<Value> {
        let whole = |selectors: &[Selector]| {
            selectors.iter().any(|s| match *s {
                Selector::Schema(id) => id == schema,
                Selector::Attribute {
                    extension: e,
                    name,
                    sub: None,
                } => e == extension && name == attr.name,
                Selector::Attribute { .. } => false,
            })
        };
        let subs = |selectors: &[Selector]| -> Vec<&'static str> {
            selectors
                .iter()
                .filter_map(|s| match *s {
                    Selector::Attribute {
                        extension: e,
                        name,
                        sub: Some(sub),
                    } if e == extension && name == attr.name => Some(sub),
                    _ => None,
                })
                .collect()
        };
        let mut value = match attr.returned {
            Returned::Never => return None,
            Returned::Always => return Some(without_hidden_subs(attr, value, &[])),
            Returned::Default | Returned::Request => {
                if self.attributes.is_empty() {
                    if attr.returned == Returned::Request {
                        return None;
                    }
                    value.clone()
                } else if whole(&self.attributes) {
                    value.clone()
                } else {
                    let wanted = subs(&self.attributes);
                    if wanted.is_empty() {
                        return None;
                    }
                    keep_subs(value, &wanted)
                }
            }
        };
        if whole(&self.excluded) {
            return None;
        }
        value = without_hidden_subs(attr, &value, &subs(&self.excluded));
        is_present(&value).then_some(value)
    }
}

fn parse_selectors(
    resource_type: ResourceType,
    list: Option<&str>,
) -> Result<Vec<Selector>, ScimError> {
    let mut selectors = Vec::new();
    for item in list
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if let Some(schema) = resource_type.schema(item) {
            selectors.push(Selector::Schema(schema.id));
            continue;
        }
        let path = AttrPath::parse(item).map_err(|e| ScimError::invalid_value(e.detail))?;
        // An attribute airlock does not support is simply not returned.
        if let Ok(resolved) = resource_type.resolve(&path) {
            selectors.push(Selector::Attribute {
                extension: resolved.extension(),
                name: resolved.attribute.name,
                sub: resolved.sub_attribute.map(|s| s.name),
            });
        }
    }
    Ok(selectors)
}

/// Keeps only the named sub-attributes, in a complex value or in each element of an array.
fn keep_subs(value: &Value, wanted: &[&str]) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(k, _)| wanted.iter().any(|w| w.eq_ignore_ascii_case(k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| keep_subs(i, wanted)).collect()),
        other => other.clone(),
    }
}

/// Drops sub-attributes that are never returned, and the excluded ones.
fn without_hidden_subs(attr: &AttributeDef, value: &Value, excluded: &[&str]) -> Value {
    let hidden = |key: &str| {
        excluded.iter().any(|e| e.eq_ignore_ascii_case(key))
            || attr
                .sub_attribute(key)
                .is_some_and(|sub| sub.returned == Returned::Never)
    };
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(k, _)| !hidden(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| without_hidden_subs(attr, i, excluded))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One page of a result set: a 1-based `startIndex` and a count, both already normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based index of the first result.
    pub start_index: usize,
    /// How many results at most.
    pub count: usize,
}

impl Page {
    /// A page from the request's values; `count` defaults to and is capped at `max_results`.
    pub fn new(start_index: usize, count: Option<usize>, max_results: usize) -> Self {
        Page {
            start_index: start_index.max(1),
            count: count.unwrap_or(max_results).min(max_results),
        }
    }

    /// The slice of `total` results this page covers.
    pub fn range(&self, total: usize) -> Range<usize> {
        let start = (self.start_index - 1).min(total);
        let end = start.saturating_add(self.count).min(total);
        start..end
    }
}

/// A `ListResponse` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResponse {
    /// Matches in total, across pages.
    pub total_results: usize,
    /// The 1-based index of the first resource here.
    pub start_index: usize,
    /// This page's resources, already projected.
    pub resources: Vec<Value>,
}

impl ListResponse {
    /// The RFC 7644 §3.4.2 JSON body.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "schemas".to_owned(),
            Value::Array(vec![Value::String(LIST_RESPONSE_MESSAGE.to_owned())]),
        );
        body.insert("totalResults".to_owned(), self.total_results.into());
        body.insert("startIndex".to_owned(), self.start_index.into());
        body.insert("itemsPerPage".to_owned(), self.resources.len().into());
        body.insert("Resources".to_owned(), Value::Array(self.resources.clone()));
        Value::Object(body)
    }
}

/// The query parameters of a list request, parsed and normalised.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// `filter`
    pub filter: Option<Filter>,
    /// `attributes` and `excludedAttributes`
    pub projection: Projection,
    /// `sortBy`
    pub sort_by: Option<AttrPath>,
    /// `sortOrder`
    pub sort_order: SortOrder,
    /// `startIndex`, at least 1
    pub start_index: usize,
    /// `count`, never negative; `None` for the server default
    pub count: Option<usize>,
}

impl ListQuery {
    /// Reads the query parameters (names matched case-insensitively; others ignored; the last
    /// of a repeated name wins). The filter is parsed and checked against the schema here, so
    /// a bad filter fails before any storage is touched.
    pub fn from_params<'a>(
        resource_type: ResourceType,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ScimError> {
        let mut query = ListQuery {
            start_index: 1,
            ..ListQuery::default()
        };
        let mut attributes = None;
        let mut excluded = None;
        for (name, value) in params {
            let is = |expected: &str| name.eq_ignore_ascii_case(expected);
            if is("filter") {
                let filter = Filter::parse(value)?;
                filter.compile(resource_type)?;
                query.filter = Some(filter);
            } else if is("attributes") {
                attributes = Some(value);
            } else if is("excludedAttributes") {
                excluded = Some(value);
            } else if is("sortBy") {
                let path =
                    AttrPath::parse(value).map_err(|e| ScimError::invalid_value(e.detail))?;
                sort_target(resource_type, &path)?;
                query.sort_by = Some(path);
            } else if is("sortOrder") {
                query.sort_order = if value.eq_ignore_ascii_case("ascending") {
                    SortOrder::Ascending
                } else if value.eq_ignore_ascii_case("descending") {
                    SortOrder::Descending
                } else {
                    return Err(ScimError::invalid_value(
                        "sortOrder must be ascending or descending",
                    ));
                };
            } else if is("startIndex") {
                let n = parse_integer("startIndex", value)?;
                query.start_index = usize::try_from(n).unwrap_or(1).max(1);
            } else if is("count") {
                let n = parse_integer("count", value)?;
                query.count = Some(usize::try_from(n).unwrap_or(0));
            }
        }
        query.projection = Projection::parse(resource_type, attributes, excluded)?;
        Ok(query)
    }
}

fn parse_integer(name: &str, value: &str) -> Result<i64, ScimError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer")))
}

/// Filters, sorts, pages and projects `resources` into a `ListResponse` body.
pub fn list_response(
    resource_type: ResourceType,
    resources: &[Value],
    query: &ListQuery,
    max_results: usize,
) -> Result<Value, ScimError> {
    let matched = matching(resource_type, resources, query)?;
    let page = Page::new(query.start_index, query.count, max_results);
    let total = matched.len();
    let resources = matched[page.range(total)]
        .iter()
        .map(|r| query.projection.project(resource_type, r))
        .collect();
    Ok(ListResponse {
        total_results: total,
        start_index: page.start_index,
        resources,
    }
    .to_json())
}

/// The resources `query`'s filter matches, sorted as it asks (not paged, not projected).
pub fn matching<'a>(
    resource_type: ResourceType,
    resources: &'a [Value],
    query: &ListQuery,
) -> Result<Vec<&'a Value>, ScimError> {
    let filter = query
        .filter
        .as_ref()
        .map(|f| f.compile(resource_type))
        .transpose()?;
    let mut matched: Vec<&Value> = resources
        .iter()
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    if let Some(sort_by) = &query.sort_by {
        sort_resources(resource_type, &mut matched, sort_by, query.sort_order)?;
    }
    Ok(matched)
}

/// Sorts resources by one attribute (stable: ties keep their order).
pub fn sort_resources(
    resource_type: ResourceType,
    resources: &mut [&Value],
    sort_by: &AttrPath,
    order: SortOrder,
) -> Result<(), ScimError> {
    let target = sort_target(resource_type, sort_by)?;
    let mut keyed: Vec<(Option<SortKey>, &Value)> = resources
        .iter()
        .map(|r| (sort_key(&target, r), *r))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => {
            let ordering = a.cmp(b);
            match order {
                SortOrder::Ascending => ordering,
                SortOrder::Descending => ordering.reverse(),
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    for (slot, (_, resource)) in resources.iter_mut().zip(keyed) {
        *slot = resource;
    }
    Ok(())
}

/// The attribute to sort by, with the implied `value` of a complex attribute filled in.
fn sort_target(resource_type: ResourceType, path: &AttrPath) -> Result<ResolvedAttr, ScimError> {
    let mut resolved = resource_type
        .resolve(path)
        .map_err(|e| ScimError::invalid_value(format!("cannot sort: {e}")))?;
    if resolved.leaf().is_sensitive() {
        return Err(ScimError::invalid_value(format!(
            "cannot sort by '{}'",
            resolved.display_name()
        )));
    }
    if resolved.leaf().kind == AttributeType::Complex {
        resolved.sub_attribute =
            Some(resolved.attribute.sub_attribute("value").ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "cannot sort by complex attribute '{}'; name a sub-attribute",
                    resolved.display_name()
                ))
            })?);
    }
    Ok(resolved)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Bool(bool),
    Instant(DateTime<FixedOffset>),
    Text(String),
}

fn sort_key(target: &ResolvedAttr, resource: &Value) -> Option<SortKey> {
    let object = container(resource.as_object()?, target.extension())?;
    let mut value = get_ci(object, target.attribute.name)?;
    if let Value::Array(items) = value {
        let primary = items.iter().find(|item| {
            item.as_object()
                .and_then(|o| get_ci(o, "primary"))
                .and_then(lenient_bool)
                .unwrap_or(false)
        });
        value = primary.or_else(|| items.first())?;
    }
    if let Some(sub) = target.sub_attribute {
        value = get_ci(value.as_object()?, sub.name)?;
    }
    let leaf = target.leaf();
    match leaf.kind {
        AttributeType::Boolean => lenient_bool(value).map(SortKey::Bool),
        AttributeType::DateTime => value
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(SortKey::Instant),
        AttributeType::String | AttributeType::Reference => value.as_str().map(|s| {
            SortKey::Text(if leaf.case_exact {
                s.to_owned()
            } else {
                s.to_lowercase()
            })
        }),
        AttributeType::Complex | AttributeType::Binary => None,
    }
}

#[cfg(test)]
mod tests;
