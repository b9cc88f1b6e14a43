//! What a PostgreSQL session's messages become in the recording: each simple query, each Parse
//! and each extended-protocol execution with its statement and parameters as a request event, and
//! per statement a result event with its columns, the first rows (up to a cap), the total row
//! count, the command tag or the error, and how long it took. COPY data is counted, not kept.
//!
//! `requests` follows the client's messages, `responses` the target's; both work on the
//! session's [`Tracker`](crate::state::Tracker), so that a statement or portal name means what the
//! target holds under it and each response is matched to the request the target answers with it.

mod requests;
mod responses;

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use witness_core::{Direction, Event, EventKind, PayloadType};

use crate::codec::{DecodeError, Fields};
use crate::copy::CopyCount;
use crate::mask::{Column, WireMasks};
use crate::recorded::value;

pub use crate::state::{Pending, Tracker};
pub use crate::to_client::ToClient;
pub use requests::{Requests, Seen, Step};
pub use responses::{ResponseError, Responses};

/// The parameters of one execution are recorded up to this many bytes in all (they go in the
/// record's header, which the ledger bounds); the rest are marked as not recorded.
const MAX_PARAMS_BYTES: usize = 64 << 10;
/// The rows of one result are recorded up to this many bytes (and the configured row count).
const MAX_ROWS_BYTES: usize = 4 << 20;
/// Statement text beyond this is cut in the record (the ledger bounds a payload at 16 MiB).
const MAX_TEXT_BYTES: usize = 8 << 20;
/// Summaries are one line of at most this many characters.
const MAX_SUMMARY_CHARS: usize = 200;

/// Text decided on for requests whose statement witness cannot see or cannot read as the target
/// does (a fast-path function call, an execution of a statement it does not know). It does not
/// parse, so rules treat it as the riskiest class.
pub const OPAQUE_REQUEST: &str = "<a request whose statement witness cannot see>";

/// What the client gets for one target message.
#[derive(Debug)]
pub enum Reply {
    /// The message as the target sent it.
    Forward,
    /// Other bytes instead: witness's error for a denied request, or the message masked.
    Replace(Bytes),
    /// The message masked, written in its place at the end of the [`ToClient`] buffer.
    Rewritten,
    /// Nothing: the message cannot be masked, and the session must end with this reason.
    Refuse(&'static str),
}

/// A result's payload, `{"columns": [{"format", "name", "type_oid"}], "rows": [[…]]}`: serialized
/// straight from the session's state (fields in the order a JSON map would sort them, as
/// RECORDING_FORMAT.md shows them), with no JSON values built for it.
#[derive(Serialize)]
struct ResultPayload<'a> {
    columns: ColumnsJson<'a>,
    rows: &'a [Value],
}

struct ColumnsJson<'a>(&'a [Column]);

#[derive(Serialize)]
struct ColumnJson<'a> {
    format: i16,
    name: &'a str,
    type_oid: u32,
}

impl Serialize for ColumnsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|c| ColumnJson { format: c.format, name: &c.name, type_oid: c.type_oid }))
    }
}

trait WithPayloadText {
    fn with_payload_text(self, text: String) -> Event;
}

impl WithPayloadText for Event {
    /// Sets the statement text as the payload, cut (and marked) past [`MAX_TEXT_BYTES`].
    fn with_payload_text(mut self, text: String) -> Event {
        self.payload_type = PayloadType::Text;
        let mut bytes = text.into_bytes();
        if bytes.len() > MAX_TEXT_BYTES {
            let total = bytes.len();
            bytes.truncate(MAX_TEXT_BYTES);
            self = self.with_attr("text_bytes", total).with_attr("text_cut", true);
        }
        self.payload = bytes;
        self
    }
}

fn request(kind: EventKind, text: &str) -> Event {
    Event::note(kind, Direction::Request, clip(text))
}

fn copy_event(kind: EventKind, direction: Direction, summary: String, count: CopyCount) -> Event {
    Event::note(kind, direction, summary)
        .with_attr("bytes", count.bytes)
        .with_attr("rows", count.rows)
        .with_attr("messages", count.messages)
}

/// The columns of a RowDescription.
fn row_description(body: &[u8]) -> Result<Vec<Column>, DecodeError> {
    let mut f = Fields::new(body);
    let n = f.count()?;
    let mut columns = Vec::with_capacity(n.min(1664));
    for _ in 0..n {
        // Straight into the shared string: one allocation per column name.
        let name: Arc<str> = Arc::from(&*String::from_utf8_lossy(f.cstr()?));
        let table_oid = f.i32()? as u32;
        let attnum = f.i16()?;
        let type_oid = f.i32()? as u32;
        let _typlen = f.i16()?;
        let _typmod = f.i32()?;
        let format = f.i16()?;
        columns.push(Column { name, table_oid, attnum, type_oid, format });
    }
    Ok(columns)
}

/// Masks what a request's recording keeps: its statement text, summary and parameters.
fn mask_request(masks: &mut WireMasks, event: &mut Event) {
    if event.payload_type == PayloadType::Text {
        let text = String::from_utf8_lossy(&event.payload);
        if let Some(masked) = masks.for_recording(&text) {
            event.summary = clip(&masked);
            event.payload = masked.into_bytes();
        }
    }
    for key in ["params", "args"] {
        if let Some(Value::Array(values)) = event.attrs.get_mut(key) {
            for v in values.iter_mut() {
                if let Some(masked) = v.as_str().and_then(|text| masks.for_recording(text)) {
                    *v = Value::String(masked);
                }
            }
        }
    }
    if let Some(counts) = masks.take_counts() {
        event.attrs.insert("masked".into(), counts);
    }
}

/// Reads `n` parameter values (all of them, to get past them) and returns those that fit in
/// [`MAX_PARAMS_BYTES`] when recorded; the event says how many there were in all.
fn values_within_budget(f: &mut Fields<'_>, formats: &[i16], types: &[u32], n: usize) -> Result<Vec<Value>, DecodeError> {
    let mut values = Vec::with_capacity(n.min(1024));
    let mut budget = MAX_PARAMS_BYTES;
    for i in 0..n {
        let format = match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => *formats.get(i).ok_or(DecodeError::BadCount)?,
        };
        let bytes = f.nullable()?;
        if budget > 0 {
            let v = value(bytes, format, types.get(i).copied().unwrap_or(0));
            budget = budget.saturating_sub(v.as_str().map_or(4, str::len));
            values.push(v);
        }
    }
    Ok(values)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line, at most [`MAX_SUMMARY_CHARS`] characters.
/// One pass, no intermediate word list: it runs for every recorded statement.
fn clip(text: &str) -> String {
    if is_one_clean_line(text) {
        return text.to_string();
    }
    clip_chars(text)
}

/// [`clip`] character by character.
fn clip_chars(text: &str) -> String {
    let mut line = String::with_capacity(text.len().min(MAX_SUMMARY_CHARS + 4));
    let (mut n_chars, mut space_due) = (0, false);
    for c in text.chars() {
        if c.is_whitespace() {
            space_due = !line.is_empty();
            continue;
        }
        for c in [' ', c].into_iter().skip(if space_due { 0 } else { 1 }) {
            if n_chars == MAX_SUMMARY_CHARS {
                line.push('…');
                return line;
            }
            line.push(c);
            n_chars += 1;
        }
        space_due = false;
    }
    line
}

/// Whether [`clip`] would return `text` as it is: ASCII, at most [`MAX_SUMMARY_CHARS`] long, no
/// whitespace but single spaces between words. Most statements are; checking is a fraction of
/// clipping them character by character.
fn is_one_clean_line(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() > MAX_SUMMARY_CHARS || bytes.first() == Some(&b' ') || bytes.last() == Some(&b' ') {
        return false;
    }
    let mut last = 0u8;
    for &b in bytes {
        // Non-ASCII text may hold Unicode whitespace: the slow path decides.
        if b >= 0x80 || (b'\t'..=b'\r').contains(&b) || (b == b' ' && last == b' ') {
            return false;
        }
        last = b;
    }
    true
}

/// Attributes for a session's startup event.
pub(crate) fn startup_attrs(tls: bool, params: &[(String, String)], credential: &str, client_task: Option<&str>) -> Map<String, Value> {
    let mut attrs = Map::new();
    attrs.insert("client_tls".into(), Value::Bool(tls));
    attrs.insert("credential".into(), Value::String(credential.to_string()));
    if let Some(client_task) = client_task {
        attrs.insert("client_task".into(), Value::String(client_task.to_string()));
    }
    let client_params: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    attrs.insert("client_params".into(), Value::Object(client_params));
    attrs
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::Message;
    use bytes::{BufMut, BytesMut};
    use serde_json::json;

    pub(crate) fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(tag);
        out.put_i32(body.len() as i32 + 4);
        out.put_slice(body);
        out.to_vec()
    }

    pub(crate) fn message(bytes: &[u8]) -> Message<'_> {
        Message { tag: bytes[0], body: &bytes[5..] }
    }

    #[test]
    fn summaries_are_one_clipped_line() {
        assert_eq!(clip("  select\n  *\tfrom t  "), "select * from t");
        assert_eq!(clip(""), "");
        let long = "x".repeat(MAX_SUMMARY_CHARS);
        assert_eq!(clip(&long), long, "exactly the limit is not cut");
        assert_eq!(clip(&format!("{long}y")), format!("{long}…"));
        assert_eq!(clip(&format!("{} b", "a".repeat(MAX_SUMMARY_CHARS))), format!("{}…", "a".repeat(MAX_SUMMARY_CHARS)));
        assert_eq!(clip("é  ü"), "é ü");
    }

    #[test]
    fn result_payloads_are_the_json_documents_they_always_were() {
        let columns = [
            Column { name: "aid".into(), table_oid: 16400, attnum: 1, type_oid: 23, format: 1 },
            Column { name: "näme \"q\"".into(), table_oid: 0, attnum: 0, type_oid: 25, format: 0 },
        ];
        let rows = vec![json!(["\\x00000007", "a"]), json!([null, "b\n"])];
        let payload = ResultPayload { columns: ColumnsJson(&columns), rows: &rows };
        let as_values: Vec<Value> =
            columns.iter().map(|c| json!({ "name": &*c.name, "type_oid": c.type_oid, "format": c.format })).collect();
        let expect = serde_json::to_vec(&json!({ "columns": as_values, "rows": rows })).unwrap();
        assert_eq!(String::from_utf8(serde_json::to_vec(&payload).unwrap()).unwrap(), String::from_utf8(expect).unwrap());
    }

    #[test]
    fn the_quick_path_of_clip_agrees_with_the_slow_one() {
        let long = "x".repeat(MAX_SUMMARY_CHARS);
        let cases = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
            "",
            " leading",
            "trailing ",
            "two  spaces",
            "tab\there",
            "new\nline",
            "cr\rlf",
            "vt\x0bff\x0c",
            "non\u{a0}breaking",
            "ümlaut and spaces",
            "\u{2028}",
            &long,
            &format!("{long}y"),
            &format!("{} b", "a".repeat(MAX_SUMMARY_CHARS - 2)),
        ];
        for text in cases {
            assert_eq!(clip(text), clip_chars(text), "{text:?}");
            if is_one_clean_line(text) {
                assert_eq!(clip(text), text, "{text:?}");
            }
        }
    }
}
