//! Events: the units a session is recorded in (a statement, its result, a shell's output, a
//! decision). An event has a kind, a direction, a one-line summary, structured attributes and an
//! opaque payload.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An event's kind: a short dotted lowercase name such as `session.start` or `pg.query`.
///
/// Witness's own kinds are the constants of [`crate::kind`]. The ledger stores any name from a
/// small alphabet (safe in file names, SQL and terminals), so that it reads back every kind it
/// was ever given.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventKind(pub(crate) Cow<'static, str>);

/// An event kind that is empty, longer than 64 bytes, or has characters outside `[a-z0-9._-]`.
#[derive(Debug, thiserror::Error)]
#[error("invalid event kind {given:?}: use 1 to 64 characters from a-z, 0-9, '.', '_' and '-'")]
pub struct InvalidEventKind {
    pub given: String,
}

/// Which way the recorded bytes travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Written by the gateway itself: session start and end, decisions, notes.
    Gateway,
    /// From the client towards the target (a query, a command, keystrokes).
    Request,
    /// From the target back to the client (rows, output, errors).
    Response,
}

/// How to show an event's payload to a person. The bytes are recorded as they are either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadType {
    /// No payload.
    Empty,
    /// UTF-8 text (a statement, terminal output); terminal output may hold a stray byte that is
    /// not UTF-8, shown escaped ([`shown_text`]).
    Text,
    /// A JSON document (structured results).
    Json,
    /// Anything else; shown as hex or base64.
    Binary,
}

/// `bytes` as text to show: UTF-8 as it is, each byte that is not UTF-8 escaped as `\xNN`.
pub fn shown_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut text = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            let _ = std::fmt::Write::write_fmt(&mut text, format_args!("\\x{byte:02x}"));
        }
    }
    std::borrow::Cow::Owned(text)
}

/// A reason a person gives (for reading a recording): one line of at most `max_chars` characters,
/// with control characters and the invisible ones that reorder or hide text (bidi controls,
/// zero-width marks) made spaces, so that it reads in a log or a table as it will be shown;
/// None when nothing is left.
pub fn one_line_reason(given: &str, max_chars: usize) -> Option<String> {
    let visible = |c: char| {
        !(c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'))
    };
    let line: String = given.chars().map(|c| if visible(c) { c } else { ' ' }).collect();
    let line: String = line.trim().chars().take(max_chars).collect();
    (!line.is_empty()).then_some(line)
}

/// Whether `bytes` are text with at most a stray byte that is not UTF-8 here and there (a
/// character cut by the program that wrote it, a Latin-1 letter): one in 32 bytes at most (one
/// in a short chunk), and no NUL. Such bytes are shown as text with those bytes escaped, not as
/// binary.
pub fn is_mostly_text(bytes: &[u8]) -> bool {
    if bytes.contains(&0) {
        return false;
    }
    let n_invalid: usize = bytes.utf8_chunks().map(|chunk| chunk.invalid().len()).sum();
    n_invalid <= (bytes.len() / 32).max(1)
}

/// One recorded event of a session.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub direction: Direction,
    /// One line for lists and timelines, e.g. the statement text cut to a sensible length.
    pub summary: String,
    /// Structured facts about the event (row count, decision, exit status); small.
    pub attrs: serde_json::Map<String, serde_json::Value>,
    pub payload_type: PayloadType,
    /// The recorded bytes themselves; may be large, may later be purged.
    pub payload: Vec<u8>,
}

// === impl EventKind ===

impl EventKind {
    pub fn new(name: impl Into<Cow<'static, str>>) -> Result<EventKind, InvalidEventKind> {
        let name = name.into();
        let valid_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-');
        if name.is_empty() || name.len() > 64 || !name.bytes().all(valid_char) {
            return Err(InvalidEventKind { given: name.into_owned() });
        }
        Ok(EventKind(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl TryFrom<String> for EventKind {
    type Error = InvalidEventKind;

    fn try_from(name: String) -> Result<EventKind, InvalidEventKind> {
        EventKind::new(name)
    }
}

impl From<EventKind> for String {
    fn from(kind: EventKind) -> String {
        kind.0.into_owned()
    }
}

// === impl Direction ===

impl Direction {
    pub const fn as_u8(self) -> u8 {
        match self {
            Direction::Gateway => 0,
            Direction::Request => 1,
            Direction::Response => 2,
        }
    }

    pub const fn from_u8(code: u8) -> Option<Direction> {
        match code {
            0 => Some(Direction::Gateway),
            1 => Some(Direction::Request),
            2 => Some(Direction::Response),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Gateway => "gateway",
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

// === impl PayloadType ===

impl PayloadType {
    pub const fn as_str(self) -> &'static str {
        match self {
            PayloadType::Empty => "empty",
            PayloadType::Text => "text",
            PayloadType::Json => "json",
            PayloadType::Binary => "binary",
        }
    }

    pub fn from_name(name: &str) -> Option<PayloadType> {
        Some(match name {
            "empty" => PayloadType::Empty,
            "text" => PayloadType::Text,
            "json" => PayloadType::Json,
            "binary" => PayloadType::Binary,
            _ => return None,
        })
    }
}

// === impl Event ===

impl Event {
    /// An event with a text payload (a statement, a command line, terminal output).
    pub fn text(kind: EventKind, direction: Direction, summary: impl Into<String>, text: impl Into<String>) -> Event {
        Event {
            kind,
            direction,
            summary: summary.into(),
            attrs: serde_json::Map::new(),
            payload_type: PayloadType::Text,
            payload: text.into().into_bytes(),
        }
    }

    /// An event that carries only a summary and attributes.
    pub fn note(kind: EventKind, direction: Direction, summary: impl Into<String>) -> Event {
        Event {
            kind,
            direction,
            summary: summary.into(),
            attrs: serde_json::Map::new(),
            payload_type: PayloadType::Empty,
            payload: Vec::new(),
        }
    }

    /// Adds a structured attribute; for chaining at construction.
    pub fn with_attr(mut self, key: &str, value: impl Into<serde_json::Value>) -> Event {
        self.attrs.insert(key.to_string(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_accept_only_a_small_alphabet() {
        let check = |name: &str, ok: bool| assert_eq!(EventKind::new(name.to_string()).is_ok(), ok, "{name:?}");
        check("session.start", true);
        check("sql.query", true);
        check("ssh.exec-output_2", true);
        check("", false);
        check("Session.Start", false);
        check("sql query", false);
        check("sql;drop", false);
        check(&"a".repeat(64), true);
        check(&"a".repeat(65), false);
    }

    #[test]
    fn directions_round_trip_through_their_codes() {
        for d in [Direction::Gateway, Direction::Request, Direction::Response] {
            assert_eq!(Direction::from_u8(d.as_u8()), Some(d));
        }
        assert_eq!(Direction::from_u8(3), None);
    }

    #[test]
    fn reasons_are_one_visible_line() {
        assert_eq!(one_line_reason("  INC-7 \u{2014} billing\n", 100).as_deref(), Some("INC-7 \u{2014} billing"));
        assert_eq!(one_line_reason("a\u{202e}b\u{1b}[2Jc", 100).as_deref(), Some("a b [2Jc"));
        assert_eq!(one_line_reason(" \t\u{200b} ", 100), None);
        assert_eq!(one_line_reason("abcdef", 3).as_deref(), Some("abc"));
    }
}
