//! HTTP bodies masked by a session's `[[masking]]` rules: the content detectors (emails, card
//! numbers, keys, …) look inside JSON and text bodies, as they look inside a PostgreSQL text
//! value. What a client gets is masked by the rules for the client; what the recording keeps is
//! masked by those and the recording-only rules. JSON stays valid (a find outside a string
//! becomes a string) and `Content-Length` is set to the masked length.
//!
//! How a body is read depends on its `Content-Type`: server-sent events and JSON lines are masked
//! a line at a time, so that they keep streaming (a value split across two lines is not seen);
//! images, sound, video, fonts, archives and PDF are binary, which detectors do not read, and pass
//! unmasked, as a binary column does; anything else (JSON, text, XML, forms, no type, and types
//! witness does not know, which may well be text) is read whole, up to [`MAX_MASKED_BYTES`], and
//! masked at once. On a Kubernetes connection witness asks for JSON. Witness asks upstreams for
//! bodies without compression when it masks, and refuses (502) a compressed body it would have to
//! read.
//!
//! JSON paths (`$.customers[*].email`) are the columns of a JSON body: the values they name are
//! masked whole, first, and the detectors look at the rest. They apply to JSON bodies, JSON lines,
//! the data of server-sent events and text bodies that open as JSON does (an upstream may send
//! JSON under another type); a body declared JSON, or opening as JSON, that cannot be read as
//! JSON is masked whole, since which of its values a path names cannot be told.

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
    /// A line at a time, each a value of this kind.
    Lines(ValueKind),
    /// Not at all: binary.
    Opaque,
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
        "text/event-stream" => Reading::Lines(ValueKind::Text),
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

    /// `value` masked at `stage`: the values JSON paths name, then what the detectors find in
    /// the rest. None when nothing in it was masked.
    pub fn mask(&self, stage: Stage, kind: ValueKind, value: &[u8]) -> Option<Vec<u8>> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let by_path = self.masks.has_json_paths(stage).then(|| self.json_paths(stage, kind, value, &mut counts)).flatten();
        let value = by_path.as_deref().unwrap_or(value);
        if !self.masks.detects(stage) {
            return by_path;
        }
        match self.masks.cell(stage, &ColumnMask::default().with_kind(kind), value, &mut counts) {
            Masked::Unchanged => by_path,
            Masked::Value(masked) => Some(masked.into_owned()),
            // Text and JSON are never nulled; should a rule ever do it, nothing is left.
            Masked::Null => Some(Vec::new()),
        }
    }

    /// The values JSON paths name masked, in a JSON body, or in a text one that opens as JSON
    /// does (whatever its type says, an upstream may send JSON as text), or in the data of a
    /// server-sent event. None when nothing was masked or the body is no JSON.
    fn json_paths(&self, stage: Stage, kind: ValueKind, value: &[u8], counts: &mut MaskCounts) -> Option<Vec<u8>> {
        if let Some(data) = value.strip_prefix(b"data:") {
            let (space, data) = match data.strip_prefix(b" ") {
                Some(rest) => (&b" "[..], rest),
                None => (&b""[..], data),
            };
            let masked = self.json_paths(stage, ValueKind::Text, data.trim_ascii_end(), counts)?;
            let line_end = &data[data.trim_ascii_end().len()..];
            return Some([&b"data:"[..], space, &masked, line_end].concat());
        }
        let opens_as_json = matches!(value.trim_ascii_start().first(), Some(b'{' | b'['));
        if value.trim_ascii().is_empty() || (kind != ValueKind::Json && !opens_as_json) {
            return None;
        }
        self.masks.json_paths(stage, value, counts)
    }
    /// `value` as the client gets it.
    pub fn for_client(&self, kind: ValueKind, value: &[u8]) -> Vec<u8> {
        self.mask(Stage::Client, kind, value).unwrap_or_else(|| value.to_vec())
    }

    /// What the recording keeps of `value`, which the client stage has already been through.
    pub fn for_recording(&self, kind: ValueKind, value: &[u8]) -> Option<Vec<u8>> {
        self.mask(Stage::RecordingOnly, kind, value)
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
        assert_eq!(with("text/event-stream"), Reading::Lines(ValueKind::Text));
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
        let client = |kind, body: &str| String::from_utf8(masks.for_client(kind, body.as_bytes())).unwrap();
        let body = r#"{"customers": [{"email": "ada@example.com", "id": 1.50}, {"email": 7, "card": {"n": 4}}], "x": 1e3}"#;
        let masked = client(ValueKind::Json, body);
        assert_eq!(
            masked,
            r#"{"customers": [{"email": "[redacted]", "id": 1.50}, {"email": "[redacted]", "card": "[redacted]"}], "x": 1e3}"#
        );
        assert_eq!(masks.take_counts().unwrap()["pii"]["column"], 3);
        // JSON sent as text, JSON lines and server-sent events are read as JSON too.
        assert_eq!(client(ValueKind::Text, r#"{"card":"4111"}"#), r#"{"card":"[redacted]"}"#);
        assert_eq!(client(ValueKind::Json, "{\"card\":1}\n"), "{\"card\":\"[redacted]\"}\n");
        assert_eq!(client(ValueKind::Text, "data: {\"card\":1}\n"), "data: {\"card\":\"[redacted]\"}\n");
        assert_eq!(client(ValueKind::Text, "event: card\n"), "event: card\n");
        assert_eq!(client(ValueKind::Text, "plain words"), "plain words");
        // What cannot be read as JSON is masked whole: which value is which cannot be told.
        assert_eq!(client(ValueKind::Json, r#"{"card": 4111 "#), r#""[redacted]""#);
        assert_eq!(client(ValueKind::Text, r#"[{"card": 4111}, oops]"#), r#""[redacted]""#);
    }

    #[test]
    fn detectors_look_at_what_json_paths_left() {
        let masks = json_path_masks(&["$.secret"], "email");
        let masked = masks.for_client(ValueKind::Json, br#"{"secret":"ada@example.com","note":"bob@example.net"}"#);
        assert_eq!(String::from_utf8(masked).unwrap(), r#"{"secret":"[redacted]","note":"[email]"}"#);
        let counts = masks.take_counts().unwrap();
        assert_eq!((counts["pii"]["column"].as_u64(), counts["pii"]["email"].as_u64()), (Some(1), Some(1)));
    }
}
