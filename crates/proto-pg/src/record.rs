//! What a PostgreSQL session's messages become in the recording: each simple query and each
//! extended-protocol execution with its statement and parameters (text form) as a request event,
//! and per statement a result event with its columns, the first rows (up to a cap), the total row
//! count, the command tag or the error, and how long it took. COPY data is counted, not kept.
//!
//! Requests are tracked on the client side and matched to responses through a queue shared with
//! the target side, in the order the target answers them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use witness_core::{Direction, Event, EventKind, PayloadType};

use crate::codec::{parse_error_fields, DecodeError, Fields, Message};

/// One value shown in a recording is cut at this many bytes.
const MAX_VALUE_BYTES: usize = 8 << 10;
/// The parameters of one execution are recorded up to this many bytes in all (they go in the
/// record's header, which the ledger bounds); the rest are marked as not recorded.
const MAX_PARAMS_BYTES: usize = 64 << 10;
/// The rows of one result are recorded up to this many bytes (and the configured row count).
const MAX_ROWS_BYTES: usize = 4 << 20;
/// Statement text beyond this is cut in the record (the ledger bounds a payload at 16 MiB).
const MAX_TEXT_BYTES: usize = 8 << 20;
/// Prepared statements and portals tracked per session; past this, the older ones are forgotten
/// (their executions are then recorded without their text), so a client cannot grow witness's
/// memory without bound.
const MAX_TRACKED: usize = 10_000;
/// Summaries are one line of at most this many characters.
const MAX_SUMMARY_CHARS: usize = 200;

/// A request waiting for its response, in the order the target will answer.
#[derive(Debug)]
pub enum Pending {
    /// A simple Query: answered by one result per statement, then ReadyForQuery.
    Query { started: Instant, statements: u32, denial: Option<Bytes> },
    /// An Execute: answered by one result (or suspended, or skipped after an earlier error).
    Execute { started: Instant, text: Arc<str>, denial: Option<Bytes> },
    /// A Sync: answered by ReadyForQuery.
    Sync,
    /// A fast-path function call: answered by FunctionCallResponse or an error, then ReadyForQuery.
    FunctionCall { started: Instant, denial: Option<Bytes> },
}

/// What the client side saw in one message: the event to record before it is forwarded, and the
/// request text the gate must decide on before it runs (a query, an execution's statement).
#[derive(Debug, Default)]
pub struct Seen {
    pub event: Option<Event>,
    pub decide: Option<Arc<str>>,
}

/// Text decided on for requests whose statement witness cannot see (a fast-path function call,
/// an execution of a portal it no longer tracks). It does not parse, so rules treat it as the
/// riskiest class.
pub const OPAQUE_REQUEST: &str = "<a request whose statement witness cannot see>";

/// The queue shared by the two directions of one session.
pub type PendingQueue = Arc<Mutex<VecDeque<Pending>>>;

/// Client-side state: prepared statements and portals, and COPY IN counts.
#[derive(Default)]
pub struct Requests {
    statements: HashMap<Vec<u8>, Arc<str>>,
    /// Tracked statements were dropped once (past MAX_TRACKED): names may exist unseen.
    forgot_statements: bool,
    portals: HashMap<Vec<u8>, Portal>,
    copy_in: Option<CopyCount>,
}

struct Portal {
    text: Arc<str>,
    statement: String,
    /// The parameters recorded (within the budget), of `n_params` in all.
    params: Vec<Value>,
    n_params: usize,
}

#[derive(Default, Clone, Copy)]
struct CopyCount {
    bytes: u64,
    rows: u64,
    messages: u64,
    /// The last bytes seen, to tell the old end-of-data marker line (`\.`) from a row.
    tail: [u8; 4],
}

impl CopyCount {
    fn add(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.rows += data.iter().filter(|&&b| b == b'\n').count() as u64;
        self.messages += 1;
        for &b in data.iter().rev().take(4).collect::<Vec<_>>().iter().rev() {
            self.tail.rotate_left(1);
            self.tail[3] = *b;
        }
    }

    /// Rows, not counting a final `\.` line (which some clients still send, and which is not data).
    fn finished(mut self) -> CopyCount {
        if self.tail[1..] == *b"\\.\n" && (self.tail[0] == b'\n' || self.bytes == 3) {
            self.rows = self.rows.saturating_sub(1);
        }
        self
    }
}

/// Target-side state for the result being received.
pub struct Responses {
    max_rows: usize,
    columns: Vec<Value>,
    rows: Vec<Value>,
    /// Bytes of the rows recorded so far for the current result.
    rows_bytes: usize,
    n_rows: u64,
    copy_out: Option<CopyCount>,
}

impl Requests {
    /// Looks at one client message; returns what to record and decide before it is forwarded.
    pub fn on_message(&mut self, msg: Message<'_>, queue: &PendingQueue) -> Result<Seen, DecodeError> {
        let mut f = Fields::new(msg.body);
        let mut decide = None;
        let event = match msg.tag {
            b'Q' => {
                let text: Arc<str> = lossy(f.cstr()?).into();
                push(queue, Pending::Query { started: Instant::now(), statements: 0, denial: None });
                decide = Some(text.clone());
                Some(request("pg.query", &text).with_payload_text(text.to_string()))
            }
            b'P' => {
                let name = f.cstr()?.to_vec();
                let mut text: Arc<str> = lossy(f.cstr()?).into();
                if self.statements.len() >= MAX_TRACKED {
                    self.statements.clear();
                    self.forgot_statements = true;
                }
                // PostgreSQL refuses to redefine a named statement and keeps the old one. A name
                // witness already tracks (or may have forgotten) is therefore mapped to an unknown
                // text, decided as opaque: witness never decides on a text the target is not running.
                if !name.is_empty() && (self.forgot_statements || self.statements.contains_key(&name)) {
                    text = Arc::from("");
                }
                self.statements.insert(name, text);
                None
            }
            b'B' => {
                let portal = f.cstr()?.to_vec();
                let statement = f.cstr()?;
                let n_formats = f.count()?;
                let mut formats = Vec::with_capacity(n_formats);
                for _ in 0..n_formats {
                    formats.push(f.i16()?);
                }
                let n_params = f.count()?;
                let params = values_within_budget(&mut f, &formats, n_params)?;
                let text = self.statements.get(statement).cloned().unwrap_or_else(|| Arc::from(""));
                if self.portals.len() >= MAX_TRACKED {
                    self.portals.clear();
                }
                self.portals.insert(portal, Portal { text, statement: lossy(statement), params, n_params });
                None
            }
            b'E' => {
                let portal_name = f.cstr()?;
                let max_rows = f.i32()?;
                let (text, event) = match self.portals.get(portal_name) {
                    Some(portal) => {
                        let mut event = request("pg.execute", &portal.text)
                            .with_attr("statement", portal.statement.clone())
                            .with_attr("portal", lossy(portal_name))
                            .with_attr("params", Value::Array(portal.params.clone()))
                            .with_payload_text(portal.text.to_string());
                        if portal.params.len() < portal.n_params {
                            event = event.with_attr("params_total", portal.n_params);
                        }
                        (portal.text.clone(), event)
                    }
                    None => (Arc::from(""), request("pg.execute", "(unknown portal)").with_attr("portal", lossy(portal_name))),
                };
                let event = if max_rows > 0 { event.with_attr("max_rows", max_rows) } else { event };
                decide = Some(if text.is_empty() { Arc::from(OPAQUE_REQUEST) } else { text.clone() });
                push(queue, Pending::Execute { started: Instant::now(), text, denial: None });
                Some(event)
            }
            b'S' => {
                push(queue, Pending::Sync);
                None
            }
            b'C' => {
                let kind = f.u8()?;
                let name = f.cstr()?;
                match kind {
                    b'S' => self.statements.remove(name).map(|_| ()),
                    _ => self.portals.remove(name).map(|_| ()),
                };
                None
            }
            b'd' => {
                self.copy_in.get_or_insert_with(CopyCount::default).add(msg.body);
                None
            }
            b'c' | b'f' => {
                let count = self.copy_in.take().unwrap_or_default().finished();
                let outcome = if msg.tag == b'c' { "done" } else { "failed by the client" };
                let summary = format!("COPY IN {outcome}: {} bytes, {} rows", count.bytes, count.rows);
                Some(copy_event("pg.copy_in", Direction::Request, summary, count).with_attr("outcome", outcome))
            }
            b'F' => {
                let oid = f.i32()?;
                let n_formats = f.count()?;
                let mut formats = Vec::with_capacity(n_formats.min(1024));
                for _ in 0..n_formats {
                    formats.push(f.i16()?);
                }
                let n_args = f.count()?;
                let args = values_within_budget(&mut f, &formats, n_args)?;
                push(queue, Pending::FunctionCall { started: Instant::now(), denial: None });
                decide = Some(Arc::from(OPAQUE_REQUEST));
                Some(
                    request("pg.function_call", &format!("function call (oid {oid})"))
                        .with_attr("oid", oid)
                        .with_attr("args", Value::Array(args)),
                )
            }
            _ => None,
        };
        Ok(Seen { event, decide })
    }
}

/// Marks the request the client side queued last as denied: its error, when the target answers
/// the substitute witness sent in its place, is replaced by `error` (a whole ErrorResponse).
pub fn deny_last(queue: &PendingQueue, error: Bytes) {
    // If the back is something else, the denied request was already answered (an earlier message
    // of its pipeline failed, so the target skips the substitute too): nothing to replace.
    if let Some(Pending::Query { denial, .. } | Pending::Execute { denial, .. } | Pending::FunctionCall { denial, .. }) =
        lock(queue).back_mut()
    {
        *denial = Some(error)
    }
}

impl Responses {
    pub fn new(max_rows: usize) -> Responses {
        Responses { max_rows, columns: Vec::new(), rows: Vec::new(), rows_bytes: 0, n_rows: 0, copy_out: None }
    }

    /// Looks at one target message; adds the events to record before it reaches the client, and
    /// returns what the client gets instead of it, if it answers a denied request.
    pub fn on_message(&mut self, msg: Message<'_>, queue: &PendingQueue, events: &mut Vec<Event>) -> Result<Option<Bytes>, DecodeError> {
        let mut f = Fields::new(msg.body);
        match msg.tag {
            b'T' => {
                let n = f.count()?;
                self.columns.clear();
                for _ in 0..n {
                    let name = lossy(f.cstr()?);
                    let _table = f.i32()?;
                    let _attnum = f.i16()?;
                    let type_oid = f.i32()?;
                    let _typlen = f.i16()?;
                    let _typmod = f.i32()?;
                    let format = f.i16()?;
                    self.columns.push(json!({ "name": name, "type_oid": type_oid, "format": format }));
                }
            }
            b'D' => {
                self.n_rows += 1;
                if self.rows.len() < self.max_rows && self.rows_bytes < MAX_ROWS_BYTES {
                    let n = f.count()?;
                    let mut row = Vec::with_capacity(n.min(1024));
                    for i in 0..n {
                        let format = self.columns.get(i).and_then(|c| c["format"].as_i64()).unwrap_or(0) as i16;
                        let v = value(f.nullable()?, format);
                        self.rows_bytes += v.as_str().map_or(4, str::len);
                        row.push(v);
                    }
                    self.rows.push(Value::Array(row));
                }
            }
            b'V' => {
                let result = value(f.nullable()?, 1);
                let event =
                    Event::note(kind("pg.function_result"), Direction::Response, "function call result").with_attr("result", result);
                events.push(event);
            }
            b'C' => {
                let tag = lossy(f.cstr()?);
                events.push(self.result(queue, Outcome::Complete(&tag)));
            }
            b'I' => events.push(self.result(queue, Outcome::Complete("EMPTY QUERY"))),
            b's' => events.push(self.result(queue, Outcome::Suspended)),
            b'E' => {
                if let Some(denial) = denial_at_head(queue) {
                    let error = parse_error_fields(&denial[5..]);
                    events.push(self.result(queue, Outcome::Error(&error)).with_attr("denied", true));
                    return Ok(Some(denial));
                }
                let error = parse_error_fields(msg.body);
                events.push(self.result(queue, Outcome::Error(&error)));
            }
            b'Z' => self.ready(queue, events),
            b'H' => self.copy_out = Some(CopyCount::default()),
            b'd' => {
                if let Some(count) = &mut self.copy_out {
                    count.add(msg.body);
                }
            }
            b'c' => {
                if let Some(count) = self.copy_out.take() {
                    let summary = format!("COPY OUT: {} bytes, {} rows", count.bytes, count.rows);
                    events.push(copy_event("pg.copy_out", Direction::Response, summary, count));
                }
            }
            b'N' => {
                let notice = parse_error_fields(msg.body);
                let event = Event::note(kind("pg.notice"), Direction::Response, clip(&notice.message))
                    .with_attr("severity", notice.severity)
                    .with_attr("sqlstate", notice.sqlstate);
                events.push(event);
            }
            b'A' => {
                let pid = f.i32()?;
                let channel = lossy(f.cstr()?);
                let payload = lossy(f.cstr()?);
                let event = Event::note(kind("pg.notification"), Direction::Response, clip(&format!("NOTIFY {channel}: {payload}")))
                    .with_attr("pid", pid)
                    .with_attr("channel", channel)
                    .with_attr("payload", payload);
                events.push(event);
            }
            _ => {}
        }
        Ok(None)
    }

    /// A result for the request at the head of the queue.
    fn result(&mut self, queue: &PendingQueue, outcome: Outcome<'_>) -> Event {
        let mut queue = lock(queue);
        let (started, statement, finishes) = match queue.front_mut() {
            Some(Pending::Query { started, statements, .. }) => {
                *statements += 1;
                (Some(*started), Some(*statements), false)
            }
            Some(Pending::Execute { started, .. }) => (Some(*started), None, true),
            Some(Pending::FunctionCall { started, .. }) => (Some(*started), None, false),
            _ => (None, None, false),
        };
        if finishes {
            queue.pop_front();
        }
        drop(queue);
        let mut event = match outcome {
            Outcome::Complete(tag) => {
                let rows = if self.columns.is_empty() { String::new() } else { format!(" ({} rows)", self.n_rows) };
                Event::note(kind("pg.result"), Direction::Response, clip(&format!("{tag}{rows}"))).with_attr("tag", tag)
            }
            Outcome::Suspended => {
                Event::note(kind("pg.result"), Direction::Response, format!("portal suspended after {} rows", self.n_rows))
                    .with_attr("suspended", true)
            }
            Outcome::Error(error) => Event::note(
                kind("pg.result"),
                Direction::Response,
                clip(&format!("{} {}: {}", error.severity, error.sqlstate, error.message)),
            )
            .with_attr("error", json!({ "severity": error.severity, "sqlstate": error.sqlstate, "message": error.message })),
        };
        event = event.with_attr("rows", self.n_rows);
        if let Some(started) = started {
            event = event.with_attr("duration_us", started.elapsed().as_micros() as u64);
        }
        if let Some(statement) = statement {
            event = event.with_attr("statement_index", statement);
        }
        if !self.columns.is_empty() {
            event = event.with_attr("rows_recorded", self.rows.len());
            let payload = json!({ "columns": std::mem::take(&mut self.columns), "rows": std::mem::take(&mut self.rows) });
            event.payload_type = PayloadType::Json;
            event.payload = serde_json::to_vec(&payload).expect("JSON values serialize");
        }
        self.columns.clear();
        self.rows.clear();
        self.rows_bytes = 0;
        self.n_rows = 0;
        event
    }

    /// ReadyForQuery ends a simple query, or a pipeline up to its Sync; executions the target
    /// skipped after an error in the pipeline are recorded as skipped.
    fn ready(&mut self, queue: &PendingQueue, events: &mut Vec<Event>) {
        let mut queue = lock(queue);
        while let Some(pending) = queue.pop_front() {
            match pending {
                Pending::Query { .. } | Pending::Sync | Pending::FunctionCall { .. } => break,
                Pending::Execute { text, .. } => {
                    let summary = clip(&format!("not executed (an earlier message of the pipeline failed): {text}"));
                    events.push(Event::note(kind("pg.result"), Direction::Response, summary).with_attr("skipped", true));
                }
            }
        }
    }
}

enum Outcome<'a> {
    Complete(&'a str),
    Suspended,
    Error(&'a crate::codec::ErrorFields),
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

fn request(kind_name: &'static str, text: &str) -> Event {
    Event::note(kind(kind_name), Direction::Request, clip(text))
}

fn copy_event(kind_name: &'static str, direction: Direction, summary: String, count: CopyCount) -> Event {
    Event::note(kind(kind_name), direction, summary)
        .with_attr("bytes", count.bytes)
        .with_attr("rows", count.rows)
        .with_attr("messages", count.messages)
}

fn kind(name: &'static str) -> EventKind {
    EventKind::new(name).expect("witness's own kinds are valid")
}

/// The replacement error of the request at the head of the queue, if it was denied.
fn denial_at_head(queue: &PendingQueue) -> Option<Bytes> {
    match lock(queue).front() {
        Some(Pending::Query { denial, .. } | Pending::Execute { denial, .. } | Pending::FunctionCall { denial, .. }) => denial.clone(),
        _ => None,
    }
}

fn push(queue: &PendingQueue, pending: Pending) {
    lock(queue).push_back(pending);
}

fn lock(queue: &PendingQueue) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
    queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `n` parameter values (all of them, to get past them) and returns those that fit in
/// [`MAX_PARAMS_BYTES`] when recorded; the event says how many there were in all.
fn values_within_budget(f: &mut Fields<'_>, formats: &[i16], n: usize) -> Result<Vec<Value>, DecodeError> {
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
            let v = value(bytes, format);
            budget = budget.saturating_sub(v.as_str().map_or(4, str::len));
            values.push(v);
        }
    }
    Ok(values)
}

/// A parameter or column value as recorded: text format as text; binary format as text when it is
/// printable UTF-8 (binary text, varchar, json) and as `\x` hex otherwise (numbers, bytea,
/// timestamps); NULL as null. Cut at [`MAX_VALUE_BYTES`].
fn value(bytes: Option<&[u8]>, format: i16) -> Value {
    let Some(bytes) = bytes else { return Value::Null };
    let shown = &bytes[..bytes.len().min(MAX_VALUE_BYTES)];
    let cut = if shown.len() < bytes.len() { "…" } else { "" };
    let printable = |text: &str| text.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    let text = match (format, std::str::from_utf8(shown)) {
        (0, Ok(text)) => text.to_string(),
        (_, Ok(text)) if !text.is_empty() && printable(text) => text.to_string(),
        _ => format!("\\x{}", hex::encode(shown)),
    };
    Value::String(format!("{text}{cut}"))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line, at most [`MAX_SUMMARY_CHARS`] characters.
/// One pass, no intermediate word list: it runs for every recorded statement.
fn clip(text: &str) -> String {
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

/// Attributes for a session's startup event.
pub(crate) fn startup_attrs(tls: bool, params: &[(String, String)], credential: &str) -> Map<String, Value> {
    let mut attrs = Map::new();
    attrs.insert("client_tls".into(), Value::Bool(tls));
    attrs.insert("credential".into(), Value::String(credential.to_string()));
    let client_params: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    attrs.insert("client_params".into(), Value::Object(client_params));
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(tag);
        out.put_i32(body.len() as i32 + 4);
        out.put_slice(body);
        out.to_vec()
    }

    fn message(bytes: &[u8]) -> Message<'_> {
        Message { tag: bytes[0], body: &bytes[5..] }
    }

    #[test]
    fn an_extended_query_is_recorded_with_its_statement_parameters_and_result() {
        let queue = PendingQueue::default();
        let mut requests = Requests::default();
        let mut responses = Responses::new(1);
        let parse = msg(b'P', b"s1\0select $1::int + $2\0\0\0");
        let bind = msg(b'B', b"\0s1\0\0\x01\0\0\0\x02\0\0\0\x0242\xff\xff\xff\xff\0\0");
        let execute = msg(b'E', b"\0\0\0\0\0");
        let sync = msg(b'S', b"");
        let mut recorded = Vec::new();
        for m in [&parse, &bind, &execute, &sync] {
            recorded.extend(requests.on_message(message(m), &queue).unwrap().event);
        }
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].kind.as_str(), "pg.execute");
        assert_eq!(recorded[0].attrs["params"], json!(["42", null]));
        assert_eq!(recorded[0].payload, b"select $1::int + $2");

        let row_description = msg(b'T', b"\0\x01sum\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0");
        let row = msg(b'D', b"\0\x01\0\0\0\x0242");
        let complete = msg(b'C', b"SELECT 2\0");
        let ready = msg(b'Z', b"I");
        let mut events = Vec::new();
        for m in [&row_description, &row, &row, &complete, &ready] {
            responses.on_message(message(m), &queue, &mut events).unwrap();
        }
        assert_eq!(events.len(), 1);
        let result = &events[0];
        assert_eq!(
            (result.attrs["tag"].as_str(), result.attrs["rows"].as_u64(), result.attrs["rows_recorded"].as_u64()),
            (Some("SELECT 2"), Some(2), Some(1))
        );
        let payload: Value = serde_json::from_slice(&result.payload).unwrap();
        assert_eq!(payload["rows"], json!([["42"]]), "rows are kept up to the cap");
        assert!(queue.lock().unwrap().is_empty());
    }

    #[test]
    fn a_multi_statement_query_gets_one_result_per_statement_and_errors_are_kept() {
        let queue = PendingQueue::default();
        let mut requests = Requests::default();
        let mut responses = Responses::new(10);
        let query = msg(b'Q', b"create table t(); select nope;\0");
        assert_eq!(requests.on_message(message(&query), &queue).unwrap().event.unwrap().kind.as_str(), "pg.query");
        let mut events = Vec::new();
        let error = msg(b'E', b"SERROR\0VERROR\0C42703\0Mcolumn \"nope\" does not exist\0\0");
        for m in [msg(b'C', b"CREATE TABLE\0"), error, msg(b'Z', b"I")] {
            responses.on_message(message(&m), &queue, &mut events).unwrap();
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].attrs["statement_index"], 1);
        assert_eq!(events[1].attrs["error"]["sqlstate"], "42703");
        assert_eq!(events[1].summary, "ERROR 42703: column \"nope\" does not exist");
        assert!(queue.lock().unwrap().is_empty());
    }

    #[test]
    fn a_redefined_statement_name_is_decided_as_opaque() {
        // PostgreSQL keeps the first definition of a name (42P05 for the second): witness must not
        // decide on the second text while the target runs the first.
        let queue = PendingQueue::default();
        let mut requests = Requests::default();
        for m in [msg(b'P', b"s\0delete from accounts\0\0\0"), msg(b'P', b"s\0select 1\0\0\0"), msg(b'B', b"\0s\0\0\0\0\0\0\0")] {
            requests.on_message(message(&m), &queue).unwrap();
        }
        let seen = requests.on_message(message(&msg(b'E', b"\0\0\0\0\0")), &queue).unwrap();
        assert_eq!(seen.decide.as_deref(), Some(OPAQUE_REQUEST));
        // The unnamed statement is replaced on every Parse, as PostgreSQL does.
        for m in [msg(b'P', b"\0delete from t\0\0\0"), msg(b'P', b"\0select 2\0\0\0"), msg(b'B', b"\0\0\0\0\0\0\0\0")] {
            requests.on_message(message(&m), &queue).unwrap();
        }
        let seen = requests.on_message(message(&msg(b'E', b"\0\0\0\0\0")), &queue).unwrap();
        assert_eq!(seen.decide.as_deref(), Some("select 2"));
    }

    #[test]
    fn the_end_of_data_marker_is_not_a_row() {
        let queue = PendingQueue::default();
        let mut requests = Requests::default();
        requests.on_message(message(&msg(b'd', b"1\tx\n")), &queue).unwrap();
        requests.on_message(message(&msg(b'd', b"\\.\n")), &queue).unwrap();
        let done = requests.on_message(message(&msg(b'c', b"")), &queue).unwrap().event.unwrap();
        assert_eq!(done.attrs["rows"].as_u64(), Some(1));
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
    fn binary_values_are_text_when_printable() {
        assert_eq!(value(Some(b"name 7"), 1), json!("name 7"));
        assert_eq!(value(Some(b"\0\0\0\x07"), 1), json!("\\x00000007"));
        assert_eq!(value(Some(b"plain"), 0), json!("plain"));
        assert_eq!(value(None, 0), Value::Null);
    }

    #[test]
    fn copy_in_is_counted_not_kept() {
        let queue = PendingQueue::default();
        let mut requests = Requests::default();
        for _ in 0..3 {
            assert!(requests.on_message(message(&msg(b'd', b"1\tsecret\n2\tsecret\n")), &queue).unwrap().event.is_none());
        }
        let done = requests.on_message(message(&msg(b'c', b"")), &queue).unwrap().event.unwrap();
        assert_eq!((done.attrs["rows"].as_u64(), done.attrs["bytes"].as_u64()), (Some(6), Some(54)));
        assert!(done.payload.is_empty());
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let queue = PendingQueue::default();
        let mut requests = Requests::default();
        assert!(requests.on_message(message(&msg(b'Q', b"no terminator")), &queue).is_err());
        assert!(requests.on_message(message(&msg(b'B', b"\0s\0\xff\xff")), &queue).is_err());
        let mut responses = Responses::new(5);
        assert!(responses.on_message(message(&msg(b'D', b"\0\x01\0\0\0\x09ab")), &queue, &mut Vec::new()).is_err());
    }
}
