//! Checking a [`Filter`] against the schema and evaluating the checked form.
//!
//! Compilation resolves every attribute path once and decides, from the schema alone, whether
//! each comparison is meaningful; evaluation then cannot fail, which is what makes
//! `not (F)` exactly the negation of `F` whenever `F` compiles.
//!
//! Semantics (RFC 7644 §3.4.2.2 where it speaks, airlock's choice where it does not):
//! - strings compare case-insensitively unless the attribute is `caseExact`;
//! - a multi-valued attribute matches when any of its values matches;
//! - a complex attribute compared without a sub-attribute means its `value` sub-attribute;
//! - `ne` matches when some value differs, and when there is no value at all (a user without a
//!   `title` is "not CEO"); every other comparison needs a value;
//! - `eq null` means "not present", `ne null` means "present";
//! - `dateTime` attributes compare as instants with `eq ne gt ge lt le`, and as text with
//!   `co sw ew`; stored values that are not RFC 3339 timestamps are ignored;
//! - booleans accept only `eq`/`ne`; the strings `"true"`/`"false"` count as booleans because
//!   Entra ID writes `roles[primary eq "True"]`;
//! - comparing with a number is refused: airlock has no numeric attributes.

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use super::{CompValue, CompareOp, Filter};
use crate::error::{ScimError, ScimType};
use crate::json::{get_ci, is_present, lenient_bool};
use crate::path::AttrPath;
use crate::schema::{AttributeDef, AttributeType, ResourceType};

/// A filter checked against a resource type's schema; evaluation cannot fail.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    root: Node,
}

impl CompiledFilter {
    pub(super) fn new(filter: &Filter, resource_type: ResourceType) -> Result<Self, ScimError> {
        Ok(CompiledFilter {
            root: compile(filter, Scope::Resource(resource_type))?,
        })
    }

    /// Whether the resource matches.
    pub fn matches(&self, resource: &Value) -> bool {
        self.root.eval(resource)
    }
}

/// A value filter (`members[value eq "x"]`) checked against a complex attribute, for PATCH.
#[derive(Debug, Clone)]
pub(crate) struct ElementFilter {
    root: Node,
}

pub(crate) fn compile_element_filter(
    parent: &'static AttributeDef,
    filter: &Filter,
) -> Result<ElementFilter, ScimError> {
    Ok(ElementFilter {
        root: compile(filter, Scope::Element(parent))?,
    })
}

impl ElementFilter {
    /// Whether one value of the complex attribute matches.
    pub(crate) fn matches(&self, element: &Value) -> bool {
        self.root.eval(element)
    }

    /// The element the filter describes, when it is a conjunction of `eq` comparisons
    /// (`type eq "work"` gives `{"type": "work"}`). Used to create the value an Entra ID `add`
    /// to `emails[type eq "work"].value` expects to exist.
    pub(crate) fn seed(&self) -> Option<Map<String, Value>> {
        let mut seed = Map::new();
        self.root.seed_into(&mut seed).then_some(seed)
    }
}

#[derive(Debug, Clone, Copy)]
enum Scope {
    Resource(ResourceType),
    Element(&'static AttributeDef),
}

/// Where a compiled path reads its values from.
#[derive(Debug, Clone, Copy)]
struct Target {
    /// The extension object holding the attribute, for extension attributes.
    extension: Option<&'static str>,
    attr: &'static AttributeDef,
    sub: Option<&'static AttributeDef>,
}

impl Target {
    fn leaf(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attr)
    }

    fn describe(&self) -> String {
        match self.sub {
            Some(sub) => format!("{}.{}", self.attr.name, sub.name),
            None => self.attr.name.to_owned(),
        }
    }

    /// Every non-null value the path reaches, arrays flattened.
    fn values<'v>(&self, scope: &'v Value) -> Vec<&'v Value> {
        let Some(mut object) = scope.as_object() else {
            return Vec::new();
        };
        if let Some(urn) = self.extension {
            match get_ci(object, urn).and_then(Value::as_object) {
                Some(extension) => object = extension,
                None => return Vec::new(),
            }
        }
        let Some(value) = get_ci(object, self.attr.name) else {
            return Vec::new();
        };
        let items = flatten(value);
        let leaves = match self.sub {
            None => items,
            Some(sub) => items
                .into_iter()
                .filter_map(|item| item.as_object().and_then(|o| get_ci(o, sub.name)))
                .flat_map(flatten)
                .collect(),
        };
        leaves.into_iter().filter(|v| !v.is_null()).collect()
    }
}

fn flatten(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

#[derive(Debug, Clone)]
enum Literal {
    /// Already case-folded when the attribute is not case-exact.
    Text {
        text: String,
        case_exact: bool,
    },
    Bool(bool),
    Instant(DateTime<FixedOffset>),
}

/// A stored value read the way a literal compares.
enum Operand {
    Text(String),
    Bool(bool),
    Instant(DateTime<FixedOffset>),
}

impl Literal {
    fn read(&self, value: &Value) -> Option<Operand> {
        match self {
            Literal::Text { case_exact, .. } => value.as_str().map(|s| {
                Operand::Text(if *case_exact {
                    s.to_owned()
                } else {
                    s.to_lowercase()
                })
            }),
            Literal::Bool(_) => lenient_bool(value).map(Operand::Bool),
            Literal::Instant(_) => value
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(Operand::Instant),
        }
    }

    fn test(&self, op: CompareOp, operand: &Operand) -> bool {
        use std::cmp::Ordering;
        let ordering: Ordering = match (self, operand) {
            (Literal::Text { text, .. }, Operand::Text(value)) => match op {
                CompareOp::Co => return value.contains(text.as_str()),
                CompareOp::Sw => return value.starts_with(text.as_str()),
                CompareOp::Ew => return value.ends_with(text.as_str()),
                _ => value.as_str().cmp(text.as_str()),
            },
            (Literal::Bool(b), Operand::Bool(value)) => value.cmp(b),
            (Literal::Instant(t), Operand::Instant(value)) => value.cmp(t),
            _ => return false,
        };
        match op {
            CompareOp::Eq => ordering.is_eq(),
            CompareOp::Ne => ordering.is_ne(),
            CompareOp::Gt => ordering.is_gt(),
            CompareOp::Ge => ordering.is_ge(),
            CompareOp::Lt => ordering.is_lt(),
            CompareOp::Le => ordering.is_le(),
            // Substring operators on non-text literals are refused at compile time.
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Compare {
        target: Target,
        op: CompareOp,
        literal: Literal,
        /// The literal as written (after boolean coercion), for [`ElementFilter::seed`].
        written: Value,
    },
    Present(Target),
    Absent(Target),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Any {
        target: Target,
        inner: Box<Node>,
    },
}

impl Node {
    fn eval(&self, scope: &Value) -> bool {
        match self {
            Node::And(terms) => terms.iter().all(|t| t.eval(scope)),
            Node::Or(terms) => terms.iter().any(|t| t.eval(scope)),
            Node::Not(inner) => !inner.eval(scope),
            Node::Present(target) => target.values(scope).into_iter().any(is_present),
            Node::Absent(target) => !target.values(scope).into_iter().any(is_present),
            Node::Any { target, inner } => target
                .values(scope)
                .into_iter()
                .any(|element| inner.eval(element)),
            Node::Compare {
                target,
                op,
                literal,
                ..
            } => {
                let operands: Vec<Operand> = target
                    .values(scope)
                    .into_iter()
                    .filter_map(|v| literal.read(v))
                    .collect();
                if *op == CompareOp::Ne && operands.is_empty() {
                    return true;
                }
                operands.iter().any(|operand| literal.test(*op, operand))
            }
        }
    }

    fn seed_into(&self, seed: &mut Map<String, Value>) -> bool {
        match self {
            Node::Compare {
                target,
                op: CompareOp::Eq,
                written,
                ..
            } if target.sub.is_none() && target.extension.is_none() => {
                seed.insert(target.attr.name.to_owned(), written.clone());
                true
            }
            Node::And(terms) => terms.iter().all(|t| t.seed_into(seed)),
            _ => false,
        }
    }
}

fn compile(filter: &Filter, scope: Scope) -> Result<Node, ScimError> {
    let compile_all = |terms: &[Filter]| {
        terms
            .iter()
            .map(|t| compile(t, scope))
            .collect::<Result<Vec<_>, _>>()
    };
    match filter {
        Filter::And(terms) => Ok(Node::And(compile_all(terms)?)),
        Filter::Or(terms) => Ok(Node::Or(compile_all(terms)?)),
        Filter::Not(inner) => Ok(Node::Not(Box::new(compile(inner, scope)?))),
        Filter::Present { attr } => Ok(Node::Present(target(scope, attr)?)),
        Filter::Compare { attr, op, value } => compile_compare(target(scope, attr)?, *op, value),
        Filter::ValuePath { attr, filter } => {
            if let Scope::Element(_) = scope {
                return Err(ScimError::invalid_filter("value filters cannot be nested"));
            }
            let target = target(scope, attr)?;
            if target.sub.is_some() || target.attr.kind != AttributeType::Complex {
                return Err(ScimError::invalid_filter(format!(
                    "a value filter needs a complex attribute, and '{}' is not one",
                    target.describe()
                )));
            }
            let inner = compile(filter, Scope::Element(target.attr))?;
            Ok(Node::Any {
                target,
                inner: Box::new(inner),
            })
        }
    }
}

fn target(scope: Scope, attr: &AttrPath) -> Result<Target, ScimError> {
    let target = match scope {
        Scope::Resource(resource_type) => {
            let resolved = resource_type
                .resolve(attr)
                .map_err(|err| ScimError::invalid_filter(err.to_string()))?;
            Target {
                extension: resolved.extension(),
                attr: resolved.attribute,
                sub: resolved.sub_attribute,
            }
        }
        Scope::Element(parent) => {
            if attr.schema.is_some() || attr.sub_attr.is_some() {
                return Err(ScimError::invalid_filter(format!(
                    "inside a value filter on '{}', name one of its sub-attributes",
                    parent.name
                )));
            }
            let sub = parent.sub_attribute(&attr.name).ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "attribute '{}' has no sub-attribute '{}'",
                    parent.name, attr.name
                ))
            })?;
            Target {
                extension: None,
                attr: sub,
                sub: None,
            }
        }
    };
    if target.attr.is_sensitive() || target.leaf().is_sensitive() {
        // A filter is part of the request URI; comparing a password there would both leak it
        // into logs and offer a guessing oracle.
        return Err(ScimError::bad_request(
            ScimType::Sensitive,
            format!("filtering on '{}' is not allowed", target.describe()),
        ));
    }
    Ok(target)
}

fn compile_compare(
    mut target: Target,
    op: CompareOp,
    value: &CompValue,
) -> Result<Node, ScimError> {
    if *value == CompValue::Null {
        return match op {
            CompareOp::Eq => Ok(Node::Absent(target)),
            CompareOp::Ne => Ok(Node::Present(target)),
            _ => Err(ScimError::invalid_filter(format!(
                "'{}' can be compared with null only by eq or ne",
                target.describe()
            ))),
        };
    }
    if target.leaf().kind == AttributeType::Complex {
        match target.attr.sub_attribute("value") {
            Some(value_sub) if target.sub.is_none() => target.sub = Some(value_sub),
            _ => {
                return Err(ScimError::invalid_filter(format!(
                    "'{}' is complex: compare one of its sub-attributes",
                    target.describe()
                )))
            }
        }
    }
    let leaf = target.leaf();
    let name = target.describe();
    let refuse = |what: String| Err(ScimError::invalid_filter(what));
    let (literal, written) = match value {
        CompValue::Null => return refuse(format!("'{name}' cannot be compared with null")),
        CompValue::Number(_) => {
            return refuse(format!(
                "'{name}' is of type {} and cannot be compared with a number",
                leaf.kind
            ))
        }
        CompValue::Bool(b) => {
            if leaf.kind != AttributeType::Boolean {
                return refuse(format!(
                    "'{name}' is of type {} and cannot be compared with true or false",
                    leaf.kind
                ));
            }
            (Literal::Bool(*b), Value::Bool(*b))
        }
        CompValue::String(text) => match leaf.kind {
            AttributeType::Boolean => match lenient_bool(&Value::String(text.clone())) {
                Some(b) => (Literal::Bool(b), Value::Bool(b)),
                None => {
                    return refuse(format!(
                        "'{name}' is boolean and can only be compared with true or false"
                    ))
                }
            },
            AttributeType::String | AttributeType::Reference | AttributeType::Binary => (
                Literal::Text {
                    text: if leaf.case_exact {
                        text.clone()
                    } else {
                        text.to_lowercase()
                    },
                    case_exact: leaf.case_exact,
                },
                Value::String(text.clone()),
            ),
            AttributeType::DateTime if op.is_substring() => (
                Literal::Text {
                    text: text.clone(),
                    case_exact: true,
                },
                Value::String(text.clone()),
            ),
            AttributeType::DateTime => match DateTime::parse_from_rfc3339(text) {
                Ok(instant) => (Literal::Instant(instant), Value::String(text.clone())),
                Err(_) => {
                    return refuse(format!(
                        "'{name}' is a dateTime and the value is not an RFC 3339 timestamp"
                    ))
                }
            },
            AttributeType::Complex => {
                return refuse(format!("'{name}' is complex and cannot be compared"))
            }
        },
    };
    if leaf.kind == AttributeType::Boolean && op != CompareOp::Eq && op != CompareOp::Ne {
        return refuse(format!(
            "operator {op} is not defined for boolean attribute '{name}'"
        ));
    }
    Ok(Node::Compare {
        target,
        op,
        literal,
        written,
    })
}
