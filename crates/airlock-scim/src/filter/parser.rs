//! Recursive-descent parser for the RFC 7644 §3.4.2.2 filter grammar and the §3.5.2 PATCH path
//! grammar, over the tokens of `lexer.rs`.
//!
//! Precedence is `not` > `and` > `or`; chains of the same operator become one n-ary node, so a
//! long `a and b and c ...` does not deepen the tree. Grouping parentheses leave no node behind
//! unless they are needed to keep an `and`/`or` inside another one. Nesting (parentheses, `not`,
//! value filters) is limited to [`MAX_FILTER_DEPTH`](super::MAX_FILTER_DEPTH) levels so that
//! neither this parser nor the evaluator can be driven into a stack overflow.

use super::lexer::{lex, Token, TokenKind};
use super::{CompValue, CompareOp, Filter, ParseError, MAX_FILTER_DEPTH, MAX_FILTER_LEN};
use crate::path::{AttrPath, Path};

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    next: usize,
    end: usize,
}

pub(crate) fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    let mut parser = Parser::new(input)?;
    let filter = parser.or_expr(0, false)?;
    parser.expect_end()?;
    Ok(filter)
}

pub(crate) fn parse_path(input: &str) -> Result<Path, ParseError> {
    let mut parser = Parser::new(input)?;
    let (word, offset) = parser.word("expected an attribute path")?;
    let mut attr = attr_path_from_word(word, offset)?;
    let filter = if parser.peek_kind() == Some(&TokenKind::LBracket) {
        let filter = parser.value_filter(&attr, offset, 0)?;
        if let Some(TokenKind::Word(word)) = parser.peek_kind() {
            let offset = parser.offset();
            let sub = word
                .strip_prefix('.')
                .ok_or_else(|| ParseError::new(offset, "expected '.' and a sub-attribute"))?;
            check_name(sub, offset)?;
            attr.sub_attr = Some(sub.to_owned());
            parser.next += 1;
        }
        Some(filter)
    } else {
        None
    };
    parser.expect_end()?;
    Ok(Path { attr, filter })
}

pub(crate) fn parse_attr_path(input: &str) -> Result<AttrPath, ParseError> {
    let mut parser = Parser::new(input)?;
    let (word, offset) = parser.word("expected an attribute path")?;
    let attr = attr_path_from_word(word, offset)?;
    parser.expect_end()?;
    Ok(attr)
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, ParseError> {
        if input.len() > MAX_FILTER_LEN {
            return Err(ParseError::new(
                MAX_FILTER_LEN,
                "input is longer than the 8192-byte limit",
            ));
        }
        Ok(Parser {
            tokens: lex(input)?,
            next: 0,
            end: input.len(),
        })
    }

    fn peek_kind(&self) -> Option<&TokenKind<'a>> {
        self.tokens.get(self.next).map(|t| &t.kind)
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek_kind(), Some(TokenKind::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    /// Byte offset of the next token, or the end of input.
    fn offset(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |t| t.offset)
    }

    fn word(&mut self, expected: &'static str) -> Result<(&'a str, usize), ParseError> {
        match self.tokens.get(self.next) {
            Some(Token {
                kind: TokenKind::Word(word),
                offset,
            }) => {
                let found = (*word, *offset);
                self.next += 1;
                Ok(found)
            }
            _ => Err(ParseError::new(self.offset(), expected)),
        }
    }

    fn expect(&mut self, kind: &TokenKind<'_>, expected: &'static str) -> Result<(), ParseError> {
        if self.peek_kind() == Some(kind) {
            self.next += 1;
            Ok(())
        } else {
            Err(ParseError::new(self.offset(), expected))
        }
    }

    fn expect_end(&self) -> Result<(), ParseError> {
        if self.next == self.tokens.len() {
            Ok(())
        } else {
            Err(ParseError::new(
                self.offset(),
                "expected 'and', 'or' or the end of the input",
            ))
        }
    }

    fn enter(&self, depth: usize) -> Result<usize, ParseError> {
        if depth >= MAX_FILTER_DEPTH {
            Err(ParseError::new(
                self.offset(),
                "nesting is deeper than the 64-level limit",
            ))
        } else {
            Ok(depth + 1)
        }
    }

    fn or_expr(&mut self, depth: usize, in_value_filter: bool) -> Result<Filter, ParseError> {
        let mut terms = vec![self.and_expr(depth, in_value_filter)?];
        while self.peek_keyword("or") {
            self.next += 1;
            terms.push(self.and_expr(depth, in_value_filter)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::Or(terms)
        })
    }

    fn and_expr(&mut self, depth: usize, in_value_filter: bool) -> Result<Filter, ParseError> {
        let mut terms = vec![self.unary(depth, in_value_filter)?];
        while self.peek_keyword("and") {
            self.next += 1;
            terms.push(self.unary(depth, in_value_filter)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::And(terms)
        })
    }

    fn unary(&mut self, depth: usize, in_value_filter: bool) -> Result<Filter, ParseError> {
        // `not` is a keyword only when a parenthesis follows, so an attribute may still be
        // called `not`.
        let negated = self.peek_keyword("not")
            && matches!(
                self.tokens.get(self.next + 1).map(|t| &t.kind),
                Some(TokenKind::LParen)
            );
        if negated {
            self.next += 1;
        }
        match self.peek_kind() {
            Some(TokenKind::LParen) => {
                let depth = self.enter(depth)?;
                self.next += 1;
                let inner = self.or_expr(depth, in_value_filter)?;
                self.expect(&TokenKind::RParen, "expected ')'")?;
                Ok(if negated {
                    Filter::Not(Box::new(inner))
                } else {
                    inner
                })
            }
            Some(TokenKind::Word(_)) => self.attr_expr(depth, in_value_filter),
            _ => Err(ParseError::new(
                self.offset(),
                "expected an attribute path, '(' or 'not ('",
            )),
        }
    }

    fn attr_expr(&mut self, depth: usize, in_value_filter: bool) -> Result<Filter, ParseError> {
        let (word, offset) = self.word("expected an attribute path")?;
        let attr = attr_path_from_word(word, offset)?;
        if self.peek_kind() == Some(&TokenKind::LBracket) {
            if in_value_filter {
                return Err(ParseError::new(
                    self.offset(),
                    "value filters cannot be nested",
                ));
            }
            let filter = self.value_filter(&attr, offset, depth)?;
            return Ok(Filter::ValuePath {
                attr,
                filter: Box::new(filter),
            });
        }
        let op_offset = self.offset();
        let (op, _) = self.word("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)")?;
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present { attr });
        }
        let op = CompareOp::from_keyword(op).ok_or_else(|| {
            ParseError::new(
                op_offset,
                "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)",
            )
        })?;
        let value = self.comp_value()?;
        Ok(Filter::Compare { attr, op, value })
    }

    /// `[valFilter]` after `attr`, with the opening bracket next.
    fn value_filter(
        &mut self,
        attr: &AttrPath,
        attr_offset: usize,
        depth: usize,
    ) -> Result<Filter, ParseError> {
        if attr.sub_attr.is_some() {
            return Err(ParseError::new(
                attr_offset,
                "a value filter must follow an attribute, not a sub-attribute",
            ));
        }
        let depth = self.enter(depth)?;
        self.next += 1;
        let filter = self.or_expr(depth, true)?;
        self.expect(&TokenKind::RBracket, "expected ']'")?;
        Ok(filter)
    }

    fn comp_value(&mut self) -> Result<CompValue, ParseError> {
        const EXPECTED: &str = "expected a comparison value (string, number, true, false or null)";
        let offset = self.offset();
        let value = match self.peek_kind() {
            Some(TokenKind::Str(s)) => CompValue::String(s.clone()),
            Some(TokenKind::Number(n)) => CompValue::Number(n.clone()),
            Some(TokenKind::Word(w)) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Some(TokenKind::Word(w)) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Some(TokenKind::Word(w)) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            _ => return Err(ParseError::new(offset, EXPECTED)),
        };
        self.next += 1;
        Ok(value)
    }
}

/// Splits `[urn ":"] name ["." sub]` out of one word token.
fn attr_path_from_word(word: &str, offset: usize) -> Result<AttrPath, ParseError> {
    let is_urn = word
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:"));
    let (schema, rest, rest_offset) = if is_urn {
        // The attribute name is after the last colon: URNs contain colons, names never do.
        match word.rfind(':') {
            Some(colon) if colon > 4 => (
                Some(word[..colon].to_owned()),
                &word[colon + 1..],
                offset + colon + 1,
            ),
            _ => {
                return Err(ParseError::new(
                    offset,
                    "expected a schema URN followed by ':' and an attribute name",
                ))
            }
        }
    } else {
        if let Some(colon) = word.find(':') {
            return Err(ParseError::new(
                offset + colon,
                "unexpected ':' in an attribute path without a schema URN",
            ));
        }
        (None, word, offset)
    };
    let mut parts = rest.splitn(3, '.');
    let name = parts.next().unwrap_or_default();
    check_name(name, rest_offset)?;
    let sub_attr = match parts.next() {
        Some(sub) => {
            check_name(sub, rest_offset + name.len() + 1)?;
            Some(sub.to_owned())
        }
        None => None,
    };
    if parts.next().is_some() {
        return Err(ParseError::new(
            rest_offset,
            "an attribute path has at most one sub-attribute",
        ));
    }
    Ok(AttrPath {
        schema,
        name: name.to_owned(),
        sub_attr,
    })
}

/// `ATTRNAME = ALPHA *(nameChar)`, plus a leading `$` for `$ref`.
fn check_name(name: &str, offset: usize) -> Result<(), ParseError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ParseError::new(offset, "invalid attribute name"))
    }
}
