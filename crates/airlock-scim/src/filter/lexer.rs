//! Splits filter and path text into tokens. Knows nothing of the grammar beyond what a token is.
//!
//! Attribute paths, keywords and operators are all `Word`s: the characters of a URN-qualified,
//! dotted attribute path (`urn:...:2.0:User:name.givenName`) plus a leading `.` for the
//! sub-attribute that may follow a value filter in a PATCH path. The parser tells them apart.

use serde_json::Number;

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind<'a> {
    Word(&'a str),
    Str(String),
    Number(Number),
    LParen,
    RParen,
    LBracket,
    RBracket,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token<'a> {
    pub(super) kind: TokenKind<'a>,
    /// Byte offset of the token's first character.
    pub(super) offset: usize,
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || matches!(c, b'$' | b'.' | b'_')
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'$' | b'.' | b'_' | b'-' | b':')
}

fn is_number_char(c: u8) -> bool {
    c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
}

pub(super) fn lex(input: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                TokenKind::LParen
            }
            b')' => {
                i += 1;
                TokenKind::RParen
            }
            b'[' => {
                i += 1;
                TokenKind::LBracket
            }
            b']' => {
                i += 1;
                TokenKind::RBracket
            }
            b'"' => {
                i = string_end(bytes, start)?;
                // The literal is JSON, escapes included, so serde_json is the reference parser.
                let text = serde_json::from_str::<String>(&input[start..i])
                    .map_err(|_| ParseError::new(start, "invalid string literal"))?;
                TokenKind::Str(text)
            }
            c if c == b'-' || c.is_ascii_digit() => {
                while i < bytes.len() && is_number_char(bytes[i]) {
                    i += 1;
                }
                TokenKind::Number(number(&input[start..i], start)?)
            }
            c if is_word_start(c) => {
                while i < bytes.len() && is_word_char(bytes[i]) {
                    i += 1;
                }
                TokenKind::Word(&input[start..i])
            }
            _ => return Err(ParseError::new(start, "unexpected character")),
        };
        tokens.push(Token {
            kind,
            offset: start,
        });
    }
    Ok(tokens)
}

/// A JSON number literal. serde_json checks the grammar (no `01`, no `1.`), but its default
/// float parsing may be one unit in the last place off, so floats are read by the standard
/// library's correctly rounded parser: that is what lets a printed filter parse back equal.
fn number(text: &str, offset: usize) -> Result<Number, ParseError> {
    let invalid = || ParseError::new(offset, "invalid number literal");
    let number = serde_json::from_str::<Number>(text).map_err(|_| invalid())?;
    if !number.is_f64() {
        return Ok(number);
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(invalid)
}

/// The byte offset just past the closing quote of the string literal starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Result<usize, ParseError> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            // Skipping one byte is enough: the escaped character is ASCII in valid JSON, and a
            // UTF-8 continuation byte can never be mistaken for `"` or `\`.
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(ParseError::new(start, "unterminated string literal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<TokenKind<'_>> {
        lex(input)
            .expect("lexes")
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn a_comparison_lexes_into_word_word_string() {
        assert_eq!(
            kinds(r#"userName eq "bjensen""#),
            vec![
                TokenKind::Word("userName"),
                TokenKind::Word("eq"),
                TokenKind::Str("bjensen".to_owned())
            ]
        );
    }

    #[test]
    fn urn_qualified_paths_are_one_word() {
        assert_eq!(
            kinds("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName pr"),
            vec![
                TokenKind::Word("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"),
                TokenKind::Word("pr"),
            ]
        );
    }

    #[test]
    fn string_escapes_are_decoded_as_json() {
        assert_eq!(
            kinds(r#""a\"b\\c\u00e9""#),
            vec![TokenKind::Str("a\"b\\cé".to_owned())]
        );
    }

    #[test]
    fn numbers_and_brackets_lex() {
        assert_eq!(
            kinds("x[y gt -1.5e3]"),
            vec![
                TokenKind::Word("x"),
                TokenKind::LBracket,
                TokenKind::Word("y"),
                TokenKind::Word("gt"),
                TokenKind::Number(Number::from_f64(-1500.0).expect("finite")),
                TokenKind::RBracket,
            ]
        );
    }

    #[test]
    fn floats_are_read_exactly() {
        for text in [
            "-4.941166033941759e-11",
            "-2.193636536499447e-163",
            "0.1",
            "1e300",
        ] {
            let expected = Number::from_f64(text.parse().expect("float")).expect("finite");
            assert_eq!(kinds(text), vec![TokenKind::Number(expected)], "{text}");
        }
        assert!(lex("1e400").is_err(), "out of range");
        assert!(lex("01").is_err());
    }

    #[test]
    fn unterminated_strings_report_where_they_start() {
        let err = lex(r#"a eq "abc"#).expect_err("unterminated");
        assert_eq!(err.offset, 5);
    }

    #[test]
    fn a_trailing_backslash_does_not_read_past_the_end() {
        assert!(lex("\"\\").is_err());
        assert!(lex("\"é\\").is_err());
    }
}
