//! SCIM filters (RFC 7644 §3.4.2.2): the syntax tree, its parser and printer, and evaluation
//! against resources.
//!
//! Parsing is purely syntactic and knows no schema: [`Filter::parse`] accepts any well-formed
//! filter, and [`Filter`]'s `Display` prints one back so that `parse(print(f)) == f`.
//! [`Filter::compile`] then checks the filter against a [`ResourceType`]'s schema (unknown
//! attributes, `gt` on a boolean, a number compared with a string, filtering on `password`) and
//! yields a [`CompiledFilter`] whose evaluation cannot fail. Checking before evaluating means a
//! filter is rejected or accepted as a whole, never depending on which resources it meets.
//!
//! Limits: at most [`MAX_FILTER_LEN`] bytes and [`MAX_FILTER_DEPTH`] levels of nesting, so a
//! hostile filter cannot exhaust the stack or spend unbounded time.
//!
//! Parse errors give a 1-based character position and what was expected, and never quote the
//! input: a filter may hold a value the client should not see echoed into logs.

mod eval;
mod lexer;
mod parser;

use std::fmt;

use serde_json::{Number, Value};

use crate::error::ScimError;
use crate::path::AttrPath;
use crate::schema::ResourceType;

pub use eval::CompiledFilter;
pub(crate) use eval::{compile_element_filter, ElementFilter};
pub(crate) use parser::{parse_attr_path, parse_path};

/// The longest filter (or PATCH path) accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 8 * 1024;
/// The deepest nesting of parentheses, `not ( )` and value filters accepted.
pub const MAX_FILTER_DEPTH: usize = 64;

/// A parsed filter.
///
/// `And` and `Or` hold two or more terms, in order; the parser never produces fewer.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attr op value`
    Compare {
        /// The attribute compared.
        attr: AttrPath,
        /// The comparison.
        op: CompareOp,
        /// The literal compared with.
        value: CompValue,
    },
    /// `attr pr`: the attribute has a non-empty value.
    Present {
        /// The attribute tested.
        attr: AttrPath,
    },
    /// Every term matches.
    And(Vec<Filter>),
    /// Some term matches.
    Or(Vec<Filter>),
    /// `not ( filter )`
    Not(Box<Filter>),
    /// `attr[filter]`: some value of the complex attribute matches the inner filter, whose
    /// attribute paths name sub-attributes.
    ValuePath {
        /// The complex attribute.
        attr: AttrPath,
        /// The filter each value is tested against.
        filter: Box<Filter>,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal
    Ge,
    /// less than
    Lt,
    /// less than or equal
    Le,
}

impl CompareOp {
    /// Every operator, in RFC order.
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The lowercase keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator for a keyword, case-insensitively.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|op| op.keyword().eq_ignore_ascii_case(keyword))
    }

    pub(crate) fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A comparison literal.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A JSON number.
    Number(Number),
    /// A JSON string, escapes decoded.
    String(String),
}

impl CompValue {
    /// The literal as a JSON value.
    pub fn to_json(&self) -> Value {
        match self {
            CompValue::Null => Value::Null,
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::String(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Number(n) => write!(f, "{n}"),
            // serde_json writes exactly the JSON string literal the lexer reads back.
            CompValue::String(s) => f.write_str(&Value::String(s.clone()).to_string()),
        }
    }
}

impl Filter {
    /// Parses a filter. Errors are `400 invalidFilter` with the position.
    pub fn parse(input: &str) -> Result<Filter, ScimError> {
        parser::parse_filter(input)
            .map_err(|err| ScimError::invalid_filter(err.describe("invalid filter", input)))
    }

    /// Checks the filter against a resource type's schema.
    pub fn compile(&self, resource_type: ResourceType) -> Result<CompiledFilter, ScimError> {
        CompiledFilter::new(self, resource_type)
    }

    /// Checks the filter and tests one resource: a shortcut for `compile` then `matches`.
    pub fn matches(
        &self,
        resource_type: ResourceType,
        resource: &Value,
    ) -> Result<bool, ScimError> {
        Ok(self.compile(resource_type)?.matches(resource))
    }
}

impl fmt::Display for Filter {
    /// Prints the filter in the RFC syntax, with parentheses only where precedence needs them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { attr, op, value } => write!(f, "{attr} {op} {value}"),
            Filter::Present { attr } => write!(f, "{attr} pr"),
            Filter::And(terms) => write_terms(f, terms, " and ", |t| {
                matches!(t, Filter::And(_) | Filter::Or(_))
            }),
            Filter::Or(terms) => write_terms(f, terms, " or ", |t| matches!(t, Filter::Or(_))),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

fn write_terms(
    f: &mut fmt::Formatter<'_>,
    terms: &[Filter],
    separator: &str,
    needs_parens: impl Fn(&Filter) -> bool,
) -> fmt::Result {
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(term) {
            write!(f, "({term})")?;
        } else {
            write!(f, "{term}")?;
        }
    }
    Ok(())
}

/// A syntax error at a byte offset; turned into a [`ScimError`] by whoever knows the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) offset: usize,
    pub(crate) message: &'static str,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: &'static str) -> Self {
        ParseError { offset, message }
    }

    /// `what: message at position N`, N counted in characters from 1.
    pub(crate) fn describe(&self, what: &str, input: &str) -> String {
        let position = input
            .get(..self.offset)
            .map_or(self.offset, |prefix| prefix.chars().count())
            + 1;
        format!("{what}: {} at position {position}", self.message)
    }
}

#[cfg(test)]
mod tests;
