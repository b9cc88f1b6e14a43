//! How PostgreSQL cuts a query's text into code and the stretches that are not code (string
//! constants, quoted identifiers, comments), and the check that sqlparser cut it the same way.
//!
//! A classifier that reads text differently from the server can be shown one statement while
//! the server runs another: if sqlparser takes a stretch for a string that PostgreSQL reads as
//! code, whatever is in it (`; DROP TABLE t`) is hidden from the rules. So before a statement is
//! classified, this module scans the text as PostgreSQL's lexer does (`scan.l`, with
//! `standard_conforming_strings` on, the default since PostgreSQL 9.1) and compares where every
//! string, quoted identifier, comment and code `;` begins and ends with sqlparser's tokens. Any
//! difference makes the text `unparsed`.
//!
//! What sqlparser 0.63's PostgreSQL dialect reads as PostgreSQL does: `'…'` without backslash
//! escapes and with `''`, `E'…'` with them, `$$…$$` and `$tag$…$tag$` (a `$$` inside `$a$…$a$`
//! does not end it), block comments that nest, `--` comments ending at a line feed or carriage
//! return, `""` inside quoted identifiers, `$` inside identifiers. What it reads differently:
//! - `$1a$…$1a$`: sqlparser reads a dollar-quoted string tagged `1a`; PostgreSQL reads the
//!   parameter `$1` followed by an identifier (up to version 14; from 15 on it refuses the text).
//!   `PREPARE p(int) AS SELECT $1a$; DROP TABLE t; --$1a$` drops the table on PostgreSQL 14.
//! - A string continued after a line break (`E'a'` newline `'…'`): PostgreSQL continues the
//!   first part's rules into the next, so backslashes still escape; sqlparser starts a new
//!   standard string there. `SELECT E'a'` newline `'\'' ; DROP TABLE t; --'` drops the table.
//! - A number followed by a string prefix (`1e'…'`, `0x'…'`): up to version 14 (hexadecimal
//!   integers: 15) PostgreSQL reads a number and then an `E'…'` (or `X'…'`) string.
//! - `B'…'` and `X'…'` end at their first quote in PostgreSQL (`''` is not an escape there).
//! - `U&'…' UESCAPE '!'` and any `U&'…'` whose escapes sqlparser does not accept: sqlparser
//!   refuses the text, which makes it `unparsed` anyway.
//! - Dollar-quote tags with characters beyond letters and digits (`$€$`): PostgreSQL takes any
//!   byte above 127 in a tag, sqlparser only alphanumeric characters.
//!
//! Deliberately not here: anything beyond lexing (a statement the parser reads in another way
//! than PostgreSQL's grammar is the classifier's business), and session settings that change how
//! text is read: with `standard_conforming_strings = off` backslashes escape in `'…'` too, which
//! only the gateway, following the session's settings, can know.

use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Whitespace};

/// Whether sqlparser's `tokens` of `sql` put every string constant, quoted identifier, comment
/// and statement-ending `;` where PostgreSQL does. Text PostgreSQL refuses to read (an
/// unterminated string or comment) counts as read differently.
pub(super) fn read_alike(sql: &str, tokens: &[TokenWithSpan]) -> bool {
    let mut postgres = Scanner::new(sql.as_bytes());
    let mut cursor = Cursor::new(sql.as_bytes());
    let mut semicolons = 0usize;
    for token in tokens {
        if token.token == Token::SemiColon {
            semicolons += 1;
            continue;
        }
        let Some(kind) = stretch_kind(&token.token) else { continue };
        let start = cursor.seek(token.span.start);
        if matches!(token.token, Token::HexStringLiteral(_)) && sql.as_bytes().get(start) == Some(&b'0') {
            // `0x1F`, a number since PostgreSQL 16 (an identifier after a 0 before): no quotes.
            continue;
        }
        let sqlparser = Stretch { start, end: cursor.seek(token.span.end), kind };
        match postgres.next_stretch() {
            Ok(Some(stretch)) if stretch == sqlparser => {}
            _ => return false,
        }
    }
    matches!(postgres.next_stretch(), Ok(None)) && postgres.semicolons == semicolons
}

/// A stretch of text that is not code, as byte offsets `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stretch {
    start: usize,
    end: usize,
    kind: StretchKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StretchKind {
    /// A string constant of any kind: `'…'`, `E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`, `$$…$$`.
    Constant,
    /// `"…"` or `U&"…"`.
    QuotedIdentifier,
    /// `-- …` or `/* … */`.
    Comment,
}

/// The kind of stretch an sqlparser token is, or `None` for code. A token kind added in a later
/// sqlparser counts as code, and then disagrees with PostgreSQL's reading if it is not.
fn stretch_kind(token: &Token) -> Option<StretchKind> {
    match token {
        Token::Word(word) if word.quote_style.is_some() => Some(StretchKind::QuotedIdentifier),
        Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)) => Some(StretchKind::Comment),
        Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => Some(StretchKind::Constant),
        _ => None,
    }
}

// === Cursor ===

/// Turns sqlparser's locations (lines from 1, counted at line feeds; columns from 1, counted in
/// characters) into byte offsets, walking forward only: tokens come in order, so all of them
/// together cost one pass over the text.
struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
    line: u64,
    column: u64,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a [u8]) -> Cursor<'a> {
        Cursor { text, at: 0, line: 1, column: 1 }
    }

    /// The byte offset of `location`, or the end of the text if it lies beyond (or behind) it.
    fn seek(&mut self, location: Location) -> usize {
        while (self.line, self.column) < (location.line, location.column) && self.at < self.text.len() {
            let b = self.text[self.at];
            // A character's continuation bytes belong to its column.
            self.at += 1 + run(&self.text[self.at + 1..], |b| b & 0xc0 == 0x80);
            if b == b'\n' {
                (self.line, self.column) = (self.line + 1, 1);
            } else {
                self.column += 1;
            }
        }
        self.at
    }
}

// === Scanner ===

/// PostgreSQL's reading of a text, one stretch that is not code at a time; code is skipped, its
/// `;` counted.
struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    /// Statement-ending semicolons in code so far.
    semicolons: usize,
    /// Where a string goes on after a line break, and under which rules (those of its first
    /// part): the next quote there continues it rather than starting a standard string.
    continuation: Option<(usize, Quoting)>,
}

/// How a string constant is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    /// `'…'`, `N'…'` and `U&'…'`: `''` is a quote.
    Standard,
    /// `E'…'`: `''` and a backslash before any character escape it.
    Escaped,
    /// `B'…'` and `X'…'`: the first quote ends it.
    Bits,
}

/// The text ends inside a string, quoted identifier or comment: PostgreSQL refuses it whole.
struct Unterminated;

impl<'a> Scanner<'a> {
    fn new(text: &'a [u8]) -> Scanner<'a> {
        Scanner { text, at: 0, semicolons: 0, continuation: None }
    }

    fn byte(&self, i: usize) -> u8 {
        self.text.get(i).copied().unwrap_or(0)
    }

    /// The next stretch that is not code, or `None` at the end of the text.
    fn next_stretch(&mut self) -> Result<Option<Stretch>, Unterminated> {
        while self.at < self.text.len() {
            let i = self.at;
            let (b, next) = (self.text[i], self.byte(i + 1));
            let stretch = match b {
                b'-' if next == b'-' => Some(self.line_comment(i)),
                b'/' if next == b'*' => Some(self.block_comment(i)?),
                b'\'' => {
                    let quoting = match self.continuation {
                        Some((at, quoting)) if at == i => quoting,
                        _ => Quoting::Standard,
                    };
                    Some(self.string(i, i + 1, quoting)?)
                }
                b'"' => Some(self.quoted_identifier(i, i + 1)?),
                b'$' => self.dollar(i)?,
                b';' => {
                    self.semicolons += 1;
                    self.at += 1;
                    None
                }
                b'e' | b'E' if next == b'\'' => Some(self.string(i, i + 2, Quoting::Escaped)?),
                b'b' | b'B' | b'x' | b'X' if next == b'\'' => Some(self.string(i, i + 2, Quoting::Bits)?),
                b'n' | b'N' if next == b'\'' => Some(self.string(i, i + 2, Quoting::Standard)?),
                b'u' | b'U' if next == b'&' && self.byte(i + 2) == b'\'' => Some(self.string(i, i + 3, Quoting::Standard)?),
                b'u' | b'U' if next == b'&' && self.byte(i + 2) == b'"' => Some(self.quoted_identifier(i, i + 3)?),
                _ if is_identifier_start(b) => {
                    self.at = i + 1 + run(&self.text[i + 1..], is_identifier_part);
                    None
                }
                b'0'..=b'9' => {
                    self.number(i);
                    None
                }
                _ => {
                    self.at += 1;
                    None
                }
            };
            if stretch.is_some() {
                return Ok(stretch);
            }
        }
        Ok(None)
    }

    /// `--` to the end of the line: up to a line feed or a carriage return, which stay code.
    fn line_comment(&mut self, start: usize) -> Stretch {
        let end = start + run(&self.text[start..], |b| b != b'\n' && b != b'\r');
        self.at = end;
        Stretch { start, end, kind: StretchKind::Comment }
    }

    /// `/* … */`, nested: each `/*` inside opens one more level.
    fn block_comment(&mut self, start: usize) -> Result<Stretch, Unterminated> {
        let (mut depth, mut j) = (1usize, start + 2);
        while depth > 0 {
            match (self.text.get(j), self.byte(j + 1)) {
                (None, _) => return Err(Unterminated),
                (Some(b'/'), b'*') => (depth, j) = (depth + 1, j + 2),
                (Some(b'*'), b'/') => (depth, j) = (depth - 1, j + 2),
                _ => j += 1,
            }
        }
        self.at = j;
        Ok(Stretch { start, end: j, kind: StretchKind::Comment })
    }

    /// A string constant opened at `start` whose contents begin at `body`.
    fn string(&mut self, start: usize, body: usize, quoting: Quoting) -> Result<Stretch, Unterminated> {
        let mut j = body;
        let end = loop {
            match (self.text.get(j), self.byte(j + 1)) {
                (None, _) => return Err(Unterminated),
                (Some(b'\\'), _) if quoting == Quoting::Escaped => j += 2,
                (Some(b'\''), b'\'') if quoting != Quoting::Bits => j += 2,
                (Some(b'\''), _) => break j + 1,
                _ => j += 1,
            }
        };
        self.at = end;
        self.continuation = self.continued_at(end).map(|quote| (quote, quoting));
        Ok(Stretch { start, end, kind: StretchKind::Constant })
    }

    /// Where the string that ended at `end` goes on: PostgreSQL joins two strings separated by
    /// white space holding a line break (and `--` comments), `'a'` newline `'b'` being `'ab'`.
    fn continued_at(&self, end: usize) -> Option<usize> {
        let (mut j, mut line_break) = (end, false);
        loop {
            match self.text.get(j)? {
                b' ' | b'\t' | b'\x0c' => j += 1,
                // A vertical tab is white space only after the line break.
                b'\x0b' if line_break => j += 1,
                b'\n' | b'\r' => (j, line_break) = (j + 1, true),
                b'-' if self.byte(j + 1) == b'-' => j += run(&self.text[j..], |b| b != b'\n' && b != b'\r'),
                b'\'' if line_break => return Some(j),
                _ => return None,
            }
        }
    }

    /// `"…"` with `""` for a quote; `U&"…"` is delimited the same way.
    fn quoted_identifier(&mut self, start: usize, body: usize) -> Result<Stretch, Unterminated> {
        let mut j = body;
        let end = loop {
            match (self.text.get(j), self.byte(j + 1)) {
                (None, _) => return Err(Unterminated),
                (Some(b'"'), b'"') => j += 2,
                (Some(b'"'), _) => break j + 1,
                _ => j += 1,
            }
        };
        self.at = end;
        Ok(Stretch { start, end, kind: StretchKind::QuotedIdentifier })
    }

    /// At a `$`: a parameter (`$1`), a dollar-quoted string (`$$…$$`, `$tag$…$tag$`, the tag
    /// made of letters, digits after the first, `_` and bytes above 127), or a lone `$`.
    fn dollar(&mut self, start: usize) -> Result<Option<Stretch>, Unterminated> {
        if self.byte(start + 1).is_ascii_digit() {
            self.at = start + 1 + run(&self.text[start + 1..], |b| b.is_ascii_digit());
            return Ok(None);
        }
        let tag_len = match self.byte(start + 1) {
            b if is_tag_start(b) => 1 + run(&self.text[start + 2..], is_tag_part),
            _ => 0,
        };
        let close = start + 1 + tag_len;
        if self.byte(close) != b'$' {
            self.at = start + 1;
            return Ok(None);
        }
        let tag = &self.text[start..=close];
        let body = close + 1;
        let Some(found) = self.text[body..].windows(tag.len()).position(|w| w == tag) else {
            return Err(Unterminated);
        };
        let end = body + found + tag.len();
        self.at = end;
        Ok(Some(Stretch { start, end, kind: StretchKind::Constant }))
    }

    /// A number: digits, a fraction, an exponent with digits. Letters right after it start a new
    /// token, as in PostgreSQL up to version 14 (later versions refuse them): `1e'…'` is the
    /// number 1 and an `E'…'` string.
    fn number(&mut self, start: usize) {
        let digits = |from: usize| run(&self.text[from.min(self.text.len())..], |b| b.is_ascii_digit());
        let mut j = start + digits(start);
        if self.byte(j) == b'.' && self.byte(j + 1) != b'.' {
            j += 1 + digits(j + 1);
        }
        if matches!(self.byte(j), b'e' | b'E') {
            let sign = usize::from(matches!(self.byte(j + 1), b'+' | b'-'));
            let exponent = digits(j + 1 + sign);
            if exponent > 0 {
                j += 1 + sign + exponent;
            }
        }
        self.at = j;
    }
}

/// How many bytes at the start of `bytes` satisfy `class`.
fn run(bytes: &[u8], class: impl Fn(u8) -> bool) -> usize {
    bytes.iter().take_while(|&&b| class(b)).count()
}

fn is_identifier_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_identifier_part(b: u8) -> bool {
    is_identifier_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_tag_start(b: u8) -> bool {
    is_identifier_start(b)
}

fn is_tag_part(b: u8) -> bool {
    is_identifier_start(b) || b.is_ascii_digit()
}

#[cfg(test)]
mod tests;
