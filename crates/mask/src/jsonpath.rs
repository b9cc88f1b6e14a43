//! JSON paths (`$.customers[*].email`, `$..password`) name values inside JSON bodies, as column
//! patterns name result columns; [`find`] walks a JSON document once and reports the byte span of
//! every value a path names, so that the document can be rewritten there and left byte for byte
//! alone everywhere else (no reparse that would reorder keys or reformat numbers). Each path is
//! followed as an automaton whose states fit a `u64`, so a value costs a few bit operations per
//! path however many `..` steps the paths have, and below a value no path can reach the walk
//! only checks the JSON.
//!
//! The walk is a strict JSON reader: a document it cannot read completely is reported as
//! [`NotJson`], and the caller masks it whole, since it cannot tell which value is which. Keys are
//! compared after their escapes are decoded (`"em\u0061il"` is `email`), and a key given twice is
//! masked both times.

/// A JSON path: `$` then steps. `.name` or `['name']` is a member, `[N]` an element, `.*` or
/// `[*]` any member or element, and `..` before a step looks for it at any depth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Step {
    /// `..`: the selector may match any depth below, not only the next level.
    deep: bool,
    selector: Selector,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Selector {
    Member(String),
    Element(usize),
    Any,
}

/// Where a value sits in a document: member names and element indexes from the top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Member(String),
    Element(usize),
}

/// A document that is not JSON (or is deeper than [`MAX_DEPTH`]): at which byte reading stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotJson {
    pub at: usize,
}

/// A path that cannot be read, with what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} is not a JSON path ({problem}); write e.g. \"$.customers[*].email\" or \"$..password\"")]
pub struct BadJsonPath {
    pub path: String,
    pub problem: &'static str,
}

/// Objects and arrays nested deeper than this are not read (as serde_json refuses them).
pub const MAX_DEPTH: usize = 128;

/// Steps a path may have: its automaton's states are the bits of a `u64`.
pub const MAX_STEPS: usize = 63;

// === impl JsonPath ===

impl JsonPath {
    pub fn new(text: &str) -> Result<JsonPath, BadJsonPath> {
        let bad = |problem| BadJsonPath { path: text.to_string(), problem };
        let mut rest = text.strip_prefix('$').ok_or_else(|| bad("it must start with $"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            let deep = rest.starts_with("..");
            if deep {
                rest = &rest[2..];
            } else if let Some(after) = rest.strip_prefix('.') {
                rest = after;
            } else if !rest.starts_with('[') {
                return Err(bad("a step starts with . or ["));
            }
            let selector;
            if let Some(inside) = rest.strip_prefix('[') {
                let end = inside.find(']').ok_or_else(|| bad("a [ is not closed"))?;
                let within = &inside[..end];
                rest = &inside[end + 1..];
                selector = if within == "*" {
                    Selector::Any
                } else if let Some(name) = quoted(within) {
                    Selector::Member(name.to_string())
                } else {
                    Selector::Element(within.parse().map_err(|_| bad("inside [] goes *, an index or a quoted name"))?)
                };
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let name = &rest[..end];
                rest = &rest[end..];
                selector = match name {
                    "" => return Err(bad("a step has no name")),
                    "*" => Selector::Any,
                    name => Selector::Member(name.to_string()),
                };
            }
            steps.push(Step { deep, selector });
            if steps.len() > MAX_STEPS {
                return Err(bad("it has more than 63 steps"));
            }
        }
        Ok(JsonPath { text: text.to_string(), steps })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path names the value at `place`.
    pub fn matches(&self, place: &[Place]) -> bool {
        self.names(place.iter().fold(START, |states, at| self.step(states, at)))
    }

    /// The states after the value at `place` below a value in `states`: bit `i` set when the
    /// first `i` steps can have been taken. A `..` step may also wait, for a deeper level.
    fn step(&self, states: u64, place: &Place) -> u64 {
        let mut next = 0;
        for (i, step) in self.steps.iter().enumerate() {
            if states & (1 << i) == 0 {
                continue;
            }
            if step.deep {
                next |= 1 << i;
            }
            let accepts = match (&step.selector, place) {
                (Selector::Any, _) => true,
                (Selector::Member(name), Place::Member(key)) => name == key,
                (Selector::Element(n), Place::Element(at)) => n == at,
                _ => false,
            };
            if accepts {
                next |= 1 << (i + 1);
            }
        }
        next
    }

    /// Whether a value in these states is one the path names: all its steps taken.
    fn names(&self, states: u64) -> bool {
        states & (1 << self.steps.len()) != 0
    }
}

/// The states of every path at the top of a document: no step taken.
const START: u64 = 1;

/// `'name'` or `"name"` without its quotes.
fn quoted(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\''));
    inner.or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))).filter(|name| !name.is_empty())
}

// === the walk ===

/// Walks `doc`, calling `found` with the byte range of each value one of `paths` names and the
/// index of the first path that names it; a named value is not looked into.
pub fn find(doc: &[u8], paths: &[&JsonPath], found: &mut dyn FnMut(std::ops::Range<usize>, usize)) -> Result<(), NotJson> {
    let mut walk = Walk { doc, at: 0, paths, states: vec![START; paths.len()], depth: 0, quiet: 0, found };
    walk.space();
    walk.value()?;
    walk.space();
    if walk.at != doc.len() {
        return Err(NotJson { at: walk.at });
    }
    Ok(())
}

/// The text of a JSON string value (its span, quotes included), escapes decoded.
pub fn string_text(span: &[u8]) -> Option<String> {
    let mut walk = Walk { doc: span, at: 0, paths: &[], states: Vec::new(), depth: 0, quiet: 0, found: &mut |_, _| {} };
    let text = walk.string().ok()?;
    (walk.at == span.len()).then_some(text)
}

struct Walk<'a> {
    doc: &'a [u8],
    at: usize,
    paths: &'a [&'a JsonPath],
    /// Each path's states, a run of `paths.len()` per level from the top to the current value.
    states: Vec<u64>,
    depth: usize,
    /// Inside a value no path can name anything in: read, not looked into.
    quiet: usize,
    found: &'a mut dyn FnMut(std::ops::Range<usize>, usize),
}

impl Walk<'_> {
    fn fail<R>(&self) -> Result<R, NotJson> {
        Err(NotJson { at: self.at })
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        if self.peek() != Some(byte) {
            return self.fail();
        }
        self.at += 1;
        Ok(())
    }

    /// The current value's states, one per path.
    fn current(&self) -> &[u64] {
        &self.states[self.states.len() - self.paths.len()..]
    }

    /// One value at the current place: reported and skipped if named, skipped if no path can
    /// name anything inside it, else read into.
    fn value(&mut self) -> Result<(), NotJson> {
        if self.depth > MAX_DEPTH {
            return self.fail();
        }
        if self.quiet == 0 {
            let start = self.at;
            let current = self.current();
            if let Some(path) = self.paths.iter().zip(current).position(|(path, states)| path.names(*states)) {
                self.skip()?;
                (self.found)(start..self.at, path);
                return Ok(());
            }
            if current.iter().all(|states| *states == 0) {
                return self.skip();
            }
        }
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            _ => self.skip(),
        }
    }

    /// Goes down to a member or element at `place`, with the states below the current ones.
    fn enter(&mut self, place: Option<Place>) {
        self.depth += 1;
        let below: Vec<u64> = match place {
            Some(place) => self.paths.iter().zip(self.current()).map(|(path, states)| path.step(*states, &place)).collect(),
            None => vec![0; self.paths.len()],
        };
        self.states.extend(below);
    }

    fn leave(&mut self) {
        self.depth -= 1;
        let keep = self.states.len() - self.paths.len();
        self.states.truncate(keep);
    }

    /// Reads past one value, reporting nothing inside it.
    fn skip(&mut self) -> Result<(), NotJson> {
        match self.peek() {
            Some(b'{' | b'[') => {
                // Read structurally with nothing named below, so that it is checked as JSON.
                self.quiet += 1;
                let result = if self.peek() == Some(b'{') { self.object() } else { self.array() };
                self.quiet -= 1;
                result
            }
            Some(b'"') => self.skip_string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.fail(),
        }
    }

    fn object(&mut self) -> Result<(), NotJson> {
        self.items(b'{', b'}', |walk, _| {
            // A key is decoded only where a path may look at it.
            let key = if walk.quiet == 0 { Some(Place::Member(walk.string()?)) } else { walk.skip_string().map(|()| None)? };
            walk.space();
            walk.expect(b':')?;
            walk.space();
            Ok(key)
        })
    }

    fn array(&mut self) -> Result<(), NotJson> {
        self.items(b'[', b']', |walk, index| Ok((walk.quiet == 0).then_some(Place::Element(index))))
    }

    /// The members or elements between `open` and `close`, separated by commas: `place` reads
    /// what comes before each value (a key and its colon) and says where the value sits.
    fn items(&mut self, open: u8, close: u8, place: impl Fn(&mut Self, usize) -> Result<Option<Place>, NotJson>) -> Result<(), NotJson> {
        self.expect(open)?;
        self.space();
        if self.peek() == Some(close) {
            self.at += 1;
            return Ok(());
        }
        for index in 0.. {
            let at = place(self, index)?;
            self.enter(at);
            let read = self.value();
            self.leave();
            read?;
            self.space();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.space();
                }
                Some(byte) if byte == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.fail(),
            }
        }
        unreachable!("a document ends or fails before an index overflows")
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), NotJson> {
        if !self.doc[self.at..].starts_with(word) {
            return self.fail();
        }
        self.at += word.len();
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), NotJson> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail(),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), NotJson> {
        let start = self.at;
        self.digits();
        if self.at == start {
            return self.fail();
        }
        Ok(())
    }

    /// Reads past a string, checking it as [`Walk::string`] does.
    fn skip_string(&mut self) -> Result<(), NotJson> {
        self.string().map(drop)
    }

    /// A string, its escapes decoded (a lone surrogate becomes U+FFFD).
    fn string(&mut self) -> Result<String, NotJson> {
        self.expect(b'"')?;
        let mut text = Vec::new();
        loop {
            let Some(byte) = self.peek() else { return self.fail() };
            self.at += 1;
            match byte {
                b'"' => break,
                0..=0x1f => {
                    self.at -= 1;
                    return self.fail();
                }
                b'\\' => {
                    let Some(escape) = self.peek() else { return self.fail() };
                    self.at += 1;
                    let decoded = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return self.fail(),
                    };
                    text.extend_from_slice(decoded.encode_utf8(&mut [0; 4]).as_bytes());
                }
                _ => text.push(byte),
            }
        }
        String::from_utf8(text).or_else(|_| self.fail())
    }

    /// The character of a `\uXXXX` escape (the `\u` read), with its low surrogate if it has one.
    fn unicode_escape(&mut self) -> Result<char, NotJson> {
        let high = self.hex4()?;
        if (0xd800..0xdc00).contains(&high) && self.doc[self.at..].starts_with(b"\\u") {
            let before = self.at;
            self.at += 2;
            let low = self.hex4()?;
            if (0xdc00..0xe000).contains(&low) {
                let code = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
                return Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            self.at = before;
        }
        Ok(char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    fn hex4(&mut self) -> Result<u32, NotJson> {
        let digits = self.doc.get(self.at..self.at + 4).ok_or(NotJson { at: self.at })?;
        let text = std::str::from_utf8(digits).map_err(|_| NotJson { at: self.at })?;
        let value = u32::from_str_radix(text, 16).map_err(|_| NotJson { at: self.at })?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return self.fail();
        }
        self.at += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(paths: &[&str], doc: &str) -> Result<Vec<String>, NotJson> {
        let paths: Vec<JsonPath> = paths.iter().map(|p| JsonPath::new(p).unwrap()).collect();
        let paths: Vec<&JsonPath> = paths.iter().collect();
        let mut found = Vec::new();
        find(doc.as_bytes(), &paths, &mut |range, _| found.push(doc[range].to_string()))?;
        Ok(found)
    }

    #[test]
    fn paths_are_read_as_written() {
        for good in ["$", "$.a", "$.a.b", "$['a b']", "$[\"x\"][0]", "$.customers[*].email", "$..password", "$.*", "$..*", "$.a-b_c"] {
            assert!(JsonPath::new(good).is_ok(), "{good}");
        }
        for bad in ["a.b", "$.", "$..", "$[", "$[x]", "$[-1]", "$.a..", "$a", "$['']", &"$.a".repeat(64)] {
            assert!(JsonPath::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_found_where_the_paths_say() {
        let doc = r#"{"customers":[{"email":"a@x.io","id":1},{"email":null,"nested":{"email":"b"}}],"email":"top"}"#;
        assert_eq!(spans(&["$.customers[*].email"], doc).unwrap(), [r#""a@x.io""#, "null"]);
        assert_eq!(spans(&["$..email"], doc).unwrap(), [r#""a@x.io""#, "null", r#""b""#, r#""top""#]);
        assert_eq!(spans(&["$.customers[1]"], doc).unwrap(), [r#"{"email":null,"nested":{"email":"b"}}"#]);
        assert_eq!(spans(&["$.customers[*].*"], doc).unwrap(), [r#""a@x.io""#, "1", "null", r#"{"email":"b"}"#]);
        assert_eq!(spans(&["$"], doc).unwrap(), [doc]);
        assert_eq!(spans(&["$.nothing"], doc).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn keys_are_compared_decoded_and_duplicates_are_all_found() {
        let doc = r#"{"em\u0061il":"one","email":"two","e\"mail":"three"}"#;
        assert_eq!(spans(&["$.email"], doc).unwrap(), [r#""one""#, r#""two""#]);
        assert_eq!(spans(&["$['e\"mail']"], doc).unwrap(), [r#""three""#]);
    }

    #[test]
    fn documents_that_are_not_json_are_refused() {
        for bad in
            ["", "{", r#"{"a":1,}"#, r#"{"a" 1}"#, "[1 2]", "01", "1.", "-", "tru", "\"\u{1}\"", r#""\x""#, r#""\u12""#, "{} {}", "{'a':1}"]
        {
            assert!(spans(&["$.a"], bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(spans(&["$.a"], &deep).is_err());
        for good in [" {\"a\" : [ 1 , -0.5e+3 , true , false , null , \"\\ud83d\\ude00\" ] } \n", "3", "\"x\""] {
            assert!(spans(&["$.a"], good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn string_values_are_decoded() {
        assert_eq!(string_text(br#""a\nb\u00e9""#).as_deref(), Some("a\nb\u{e9}"));
        assert_eq!(string_text(b"12"), None);
    }

    #[test]
    fn many_deep_steps_cost_no_more_than_a_few_per_value() {
        // Backtracking over `..` steps would take depth^steps here; the automaton takes steps.
        let path = "$..a..a..a..a..a..a..a..a..b";
        let depth = MAX_DEPTH - 1;
        let doc = "{\"a\":".repeat(depth) + "0" + &"}".repeat(depth);
        assert_eq!(spans(&[path], &doc).unwrap(), Vec::<String>::new());
        let doc = "{\"a\":".repeat(depth) + "{\"b\":1}" + &"}".repeat(depth);
        assert_eq!(spans(&[path], &doc).unwrap(), ["1"]);
        let place: Vec<Place> = ["a", "a", "a", "a", "a", "a", "a", "a", "b"].iter().map(|k| Place::Member(k.to_string())).collect();
        assert!(JsonPath::new(path).unwrap().matches(&place));
        assert!(!JsonPath::new(path).unwrap().matches(&place[1..]));
    }
}
