//! HTTP bodies masked by a session's `[[masking]]` rules: the content detectors (emails, card
//! numbers, keys, …) look inside JSON and text bodies, as they look inside a PostgreSQL text
//! value. What a client gets is masked by the rules for the client; what the recording keeps is
//! masked by those and the recording-only rules. JSON stays valid (a find outside a string
//! becomes a string) and `Content-Length` is set to the masked length.
//!
//! How a body is read depends on its `Content-Type`: server-sent events and JSON lines are masked
//! a line at a time, so that they keep streaming (a value split across two lines is not seen), as
//! are a Kubernetes watch and `logs -f` whatever their type; images, sound, video, fonts, archives
//! and PDF are binary, which detectors do not read, and pass unmasked, as a binary column does;
//! anything else (JSON, text, XML, forms, no type, and types witness does not know, which may well
//! be text) is read whole, up to [`MAX_MASKED_BYTES`], and masked at once. Witness asks upstreams
//! for bodies without compression when it masks, and refuses (502) a compressed body it would have
//! to read.
//!
//! JSON paths (`$.customers[*].email`) are the columns of a JSON body: the values they name are
//! masked whole, first, and the detectors look at the rest. Where they apply, a body (or a line of
//! one read by line, or the data of a server-sent event's `data:` line) is taken as a JSON document
//! whatever its type says, since the client may have asked for another form: what is not one is
//! masked whole, since which of its values a path names cannot be told.

use std::sync::{Arc, Mutex};

use http::header::{self, HeaderMap};
use serde_json::{Map, Value};
use witness_mask::{ColumnMask, MaskCounts, Masked, SessionMasks, Stage, ValueKind};

pub use crate::body::MAX_MASKED_BYTES;

/// How a body is read for masking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Whole, as one value of this kind.
    Whole(ValueKind),
    /// A line at a time, each a value of this kind (JSON lines, a Kubernetes watch's events,
    /// `logs -f`).
    Lines(ValueKind),
    /// Server-sent events, a line at a time: the `data:` lines carry the values.
    Events,
    /// Not at all: binary.
    Opaque,
}

impl Reading {
    /// Whether the body is masked as it streams, a line at a time.
    pub fn by_line(self) -> bool {
        matches!(self, Reading::Lines(_) | Reading::Events)
    }

    /// What detectors take a value read so for.
    fn kind(self) -> ValueKind {
        match self {
            Reading::Whole(kind) | Reading::Lines(kind) => kind,
            Reading::Events => ValueKind::Text,
            Reading::Opaque => ValueKind::Opaque,
        }
    }
}

/// How a body with these headers is read. Only media that are binary through and through
/// (images, sound, video, fonts, archives, PDF) pass unread: anything else may be text a client
/// asked for in an unusual type (CSV as `application/octet-stream`, YAML), so it is read as text.
pub fn reading(headers: &HeaderMap) -> Reading {
    let Some(kind) = headers.get(header::CONTENT_TYPE) else { return Reading::Whole(ValueKind::Text) };
    let kind = String::from_utf8_lossy(kind.as_bytes()).to_ascii_lowercase();
    let essence = kind.split(';').next().unwrap_or("").trim();
    let binary = ["image/", "audio/", "video/", "font/"].iter().any(|prefix| essence.starts_with(prefix))
        || matches!(
            essence,
            "application/pdf"
                | "application/zip"
                | "application/gzip"
                | "application/x-gzip"
                | "application/x-tar"
                | "application/x-7z-compressed"
                | "application/zstd"
                | "application/wasm"
        );
    match essence {
        "text/event-stream" => Reading::Events,
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => Reading::Lines(ValueKind::Json),
        "application/json" => Reading::Whole(ValueKind::Json),
        t if t.ends_with("+json") => Reading::Whole(ValueKind::Json),
        _ if binary => Reading::Opaque,
        _ => Reading::Whole(ValueKind::Text),
    }
}

/// A session's masks with the counts of what they masked, shared by a body and its record.
#[derive(Clone)]
pub struct BodyMasks {
    masks: Arc<SessionMasks>,
    counts: Arc<Mutex<MaskCounts>>,
}

impl BodyMasks {
    /// None when the rules mask nothing a body could hold.
    pub fn new(masks: Arc<SessionMasks>) -> Option<BodyMasks> {
        [Stage::Client, Stage::RecordingOnly]
            .iter()
            .any(|&stage| masks.detects(stage) || masks.has_json_paths(stage))
            .then(|| BodyMasks { masks, counts: Arc::new(Mutex::new(MaskCounts::default())) })
    }

    /// Whether the client gets anything masked (else only the recording does).
    pub fn masks_client(&self) -> bool {
        self.masks.detects(Stage::Client) || self.masks.has_json_paths(Stage::Client)
    }

    /// Whether the recording has masks of its own, beyond the client's.
    pub fn masks_recording(&self) -> bool {
        self.masks.detects(Stage::RecordingOnly) || self.masks.has_json_paths(Stage::RecordingOnly)
    }

    /// Whether JSON paths mask what the client gets.
    pub fn has_client_json_paths(&self) -> bool {
        self.masks.has_json_paths(Stage::Client)
    }

    /// `value` (a whole body, or one line of a body read by line) masked at `stage`: the values
    /// JSON paths name, then what the detectors find in the rest. None when nothing was masked.
    pub fn mask(&self, stage: Stage, reading: Reading, value: &[u8]) -> Option<Vec<u8>> {
        if reading == Reading::Opaque {
            return None;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let by_path = self.masks.has_json_paths(stage).then(|| self.json_paths(stage, reading, value, &mut counts)).flatten();
        let value = by_path.as_deref().unwrap_or(value);
        if !self.masks.detects(stage) {
            return by_path;
        }
        match self.masks.cell(stage, &ColumnMask::default().with_kind(reading.kind()), value, &mut counts) {
            Masked::Unchanged => by_path,
            Masked::Value(masked) => Some(masked.into_owned()),
            // Text and JSON are never nulled; should a rule ever do it, nothing is left.
            Masked::Null => Some(Vec::new()),
        }
    }

    /// The values JSON paths name masked. A body, or a line of one read by line, is taken as a
    /// JSON document whatever its type says (an upstream may send JSON as text, or answer a
    /// client's `Accept: text/csv`): what is not one is masked whole, since which of its values
    /// a path names cannot be told. Of server-sent events, the data of each `data:` line is.
    fn json_paths(&self, stage: Stage, reading: Reading, value: &[u8], counts: &mut MaskCounts) -> Option<Vec<u8>> {
        if reading == Reading::Events {
            // A lone CR ends a line too in this format; each line is read on its own.
            return each_masked(event_lines(value), |line| self.event_line(stage, line, counts));
        }
        let (body, end) = split_line_end(value);
        // JSON text sequences (RFC 7464) open each record with a record separator.
        let (separator, body) = match body.strip_prefix(b"\x1e") {
            Some(record) if matches!(reading, Reading::Lines(ValueKind::Json)) => (&b"\x1e"[..], record),
            _ => (&b""[..], body),
        };
        if body.trim_ascii().is_empty() {
            return None;
        }
        let masked = self.masks.json_paths(stage, body, counts)?;
        Some([separator, &masked[..], end].concat())
    }

    /// One line of server-sent events: a `data:` line's data masked as a JSON document.
    fn event_line(&self, stage: Stage, line: &[u8], counts: &mut MaskCounts) -> Option<Vec<u8>> {
        let (body, end) = split_line_end(line);
        let field = body.strip_prefix(UTF8_BOM).unwrap_or(body);
        let data = field.strip_prefix(b"data:")?;
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data.trim_ascii().is_empty() {
            return None;
        }
        let masked = self.masks.json_paths(stage, data, counts)?;
        Some([&body[..body.len() - data.len()], &masked, end].concat())
    }

    /// `value` as the client gets it.
    pub fn for_client(&self, reading: Reading, value: &[u8]) -> Vec<u8> {
        self.mask(Stage::Client, reading, value).unwrap_or_else(|| value.to_vec())
    }

    /// What a record keeps of the start of a body, masked at `stage`; a body read by line is
    /// masked line by line (its last line, perhaps cut off by the record's cap, as one too).
    pub fn for_record(&self, stage: Stage, reading: Reading, start: &[u8]) -> Option<Vec<u8>> {
        if !reading.by_line() {
            return self.mask(stage, reading, start);
        }
        each_masked(start.split_inclusive(|b| *b == b'\n'), |line| self.mask(stage, reading, line))
    }

    /// What was masked so far, by rule and detector (`{"pii": {"email": 2}}`), and resets the
    /// counts; None when nothing was.
    pub fn take_counts(&self) -> Option<Value> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.is_empty() {
            return None;
        }
        let mut by_rule = Map::new();
        for (rule, what, n) in counts.entries(&self.masks) {
            let entry = by_rule.entry(rule.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(per_rule) = entry {
                per_rule.insert(what.to_string(), Value::from(n));
            }
        }
        counts.clear();
        Some(Value::Object(by_rule))
    }
}

/// `lines` joined again, each as `mask` made it (or as it was, where `mask` masked nothing);
/// None when it masked none of them.
fn each_masked<'a>(lines: impl Iterator<Item = &'a [u8]>, mut mask: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    let (mut out, mut any) = (Vec::new(), false);
    for line in lines {
        match mask(line) {
            Some(masked) => {
                out.extend_from_slice(&masked);
                any = true;
            }
            None => out.extend_from_slice(line),
        }
    }
    any.then_some(out)
}

/// The byte order mark a stream of events may open with.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A line without its end (`\r\n`, `\n` or `\r`), and the end.
fn split_line_end(line: &[u8]) -> (&[u8], &[u8]) {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    line.split_at(body.len())
}

/// The lines of a piece of an event stream, each with its end: after `\n`, `\r\n`, or a `\r`
/// that no `\n` follows.
fn event_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| matches!(b, b'\n' | b'\r')).map_or(rest.len(), |at| {
            if rest[at] == b'\r' && rest.get(at + 1) == Some(&b'\n') {
                at + 2
            } else {
                at + 1
            }
        });
        let (line, after) = rest.split_at(end);
        rest = after;
        Some(line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_by_their_type() {
        let with = |kind: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, kind.parse().unwrap());
            reading(&headers)
        };
        assert_eq!(reading(&HeaderMap::new()), Reading::Whole(ValueKind::Text));
        assert_eq!(with("application/json; charset=utf-8"), Reading::Whole(ValueKind::Json));
        assert_eq!(with("application/problem+json"), Reading::Whole(ValueKind::Json));
        assert_eq!(with("text/html"), Reading::Whole(ValueKind::Text));
        assert_eq!(with("text/event-stream"), Reading::Events);
        assert_eq!(with("application/x-ndjson"), Reading::Lines(ValueKind::Json));
        assert_eq!(with("image/png"), Reading::Opaque);
        assert_eq!(with("application/zip"), Reading::Opaque);
        // Types that may be text a client chose to ask for are read as text.
        assert_eq!(with("application/octet-stream"), Reading::Whole(ValueKind::Text));
        assert_eq!(with("application/yaml"), Reading::Whole(ValueKind::Text));
    }

    fn json_path_masks(paths: &[&str], detectors: &str) -> BodyMasks {
        let rule = witness_mask::MaskRule {
            name: "pii".into(),
            connections: Vec::new(),
            groups: Vec::new(),
            columns: Vec::new(),
            json_paths: paths.iter().map(|p| witness_mask::JsonPath::new(p).unwrap()).collect(),
            detectors: witness_mask::DetectorSet::from_name(detectors).unwrap_or(witness_mask::DetectorSet::EMPTY),
            apply_to: witness_mask::ApplyTo::ClientAndRecording,
            style: witness_mask::MaskStyle::Redact,
        };
        let masking = witness_mask::Masking::new(vec![rule], b"key").unwrap();
        BodyMasks::new(masking.for_session("api", &[]).unwrap()).expect("JSON paths alone make body masks")
    }

    #[test]
    fn json_paths_mask_whole_values_and_leave_the_rest_byte_for_byte() {
        let masks = json_path_masks(&["$.customers[*].email", "$..card"], "");
        let client = |reading, body: &str| String::from_utf8(masks.for_client(reading, body.as_bytes())).unwrap();
        let (json, text) = (Reading::Whole(ValueKind::Json), Reading::Whole(ValueKind::Text));
        let body = r#"{"customers": [{"email": "ada@example.com", "id": 1.50}, {"email": 7, "card": {"n": 4}}], "x": 1e3}"#;
        let masked = client(json, body);
        assert_eq!(
            masked,
            r#"{"customers": [{"email": "[redacted]", "id": 1.50}, {"email": "[redacted]", "card": "[redacted]"}], "x": 1e3}"#
        );
        assert_eq!(masks.take_counts().unwrap()["pii"]["column"], 3);
        // JSON sent as text and JSON lines are read as JSON too.
        assert_eq!(client(text, r#"{"card":"4111"}"#), r#"{"card":"[redacted]"}"#);
        assert_eq!(client(Reading::Lines(ValueKind::Json), "{\"card\":1}\n"), "{\"card\":\"[redacted]\"}\n");
        assert_eq!(client(Reading::Lines(ValueKind::Json), "\x1e{\"card\":1}\n"), "\x1e{\"card\":\"[redacted]\"}\n");
        // What cannot be read as JSON is masked whole, whatever its type: which value is which
        // cannot be told (CSV a client asked for, JSON cut or spread over lines, a page).
        assert_eq!(client(json, r#"{"card": 4111 "#), r#""[redacted]""#);
        assert_eq!(client(text, "email,card\nada@example.com,4111\n"), "\"[redacted]\"\n");
        assert_eq!(client(json, "data: ping\n\ndata: {\"card\": 1}"), r#""[redacted]""#);
        assert_eq!(client(Reading::Lines(ValueKind::Text), "  \"card\": 4111,\n"), "\"[redacted]\"\n");
    }

    #[test]
    fn json_paths_read_the_data_of_server_sent_events() {
        let masks = json_path_masks(&["$..card"], "");
        let line = |text: &str| String::from_utf8(masks.for_client(Reading::Events, text.as_bytes())).unwrap();
        assert_eq!(line("data: {\"card\":1}\n"), "data: {\"card\":\"[redacted]\"}\n");
        assert_eq!(line("data:{\"card\":1}\r\n"), "data:{\"card\":\"[redacted]\"}\r\n");
        assert_eq!(line("event: card\n"), "event: card\n");
        assert_eq!(line("data:\n"), "data:\n");
        // Data spread over several lines is masked line by line, each whole.
        assert_eq!(line("data:   \"card\": 4111\n"), "data: \"[redacted]\"\n");
        // A lone CR ends a line, and a byte order mark may open the stream.
        assert_eq!(line("id: 1\rdata: {\"card\":2}\n"), "id: 1\rdata: {\"card\":\"[redacted]\"}\n");
        assert_eq!(line("\u{feff}data: {\"card\":3}\n"), "\u{feff}data: {\"card\":\"[redacted]\"}\n");
    }

    #[test]
    fn records_of_bodies_read_by_line_are_masked_line_by_line() {
        let masks = json_path_masks(&["$..card"], "");
        let start = "event: update\ndata: {\"card\":1}\n\ndata: ping\ndata: {\"card\":";
        let recorded = masks.for_record(Stage::Client, Reading::Events, start.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(recorded).unwrap(),
            "event: update\ndata: {\"card\":\"[redacted]\"}\n\ndata: \"[redacted]\"\ndata: \"[redacted]\""
        );
    }

    #[test]
    fn detectors_look_at_what_json_paths_left() {
        let masks = json_path_masks(&["$.secret"], "email");
        let masked = masks.for_client(Reading::Whole(ValueKind::Json), br#"{"secret":"ada@example.com","note":"bob@example.net"}"#);
        assert_eq!(String::from_utf8(masked).unwrap(), r#"{"secret":"[redacted]","note":"[email]"}"#);
        let counts = masks.take_counts().unwrap();
        assert_eq!((counts["pii"]["column"].as_u64(), counts["pii"]["email"].as_u64()), (Some(1), Some(1)));
    }
}
