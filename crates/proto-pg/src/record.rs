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

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::{json, Map, Value};
use witness_core::{Direction, Event, EventKind, PayloadType};

use crate::codec::{parse_error_fields, DecodeError, Fields, Message};
use crate::mask::{Column, Consulted, Plan, WireMasks};
use witness_policy::mask::SessionMasks;

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
    /// `statement` is the id of the prepared statement it runs (0: unknown) and `formats` the
    /// result formats its Bind asked for: its rows are read by that statement's description.
    Execute { started: Instant, text: Arc<str>, denial: Option<Bytes>, statement: u64, formats: Arc<[i16]> },
    /// A Describe: answered by RowDescription or NoData (after ParameterDescription for a
    /// statement). `statement` is the described statement's id; None for a portal.
    Describe { statement: Option<u64> },
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
    /// Prepared statements by name: text and id (each Parse makes a new one).
    statements: HashMap<Vec<u8>, (Arc<str>, u64)>,
    last_statement_id: u64,
    /// Tracked statements were dropped once (past MAX_TRACKED): names may exist unseen.
    forgot_statements: bool,
    portals: HashMap<Vec<u8>, Portal>,
    copy_in: Option<CopyCount>,
    /// Masking of what the recording keeps of requests (parameters, statement texts).
    masks: Option<WireMasks>,
}

struct Portal {
    text: Arc<str>,
    statement: String,
    statement_id: u64,
    /// Result formats the Bind asked for.
    formats: Arc<[i16]>,
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

/// Where the client's bytes are put together once a message of a read is rewritten in place (a
/// masked row): the messages before it that go as they came, then the new message, so a row is
/// copied once on its way.
pub struct ToClient<'a> {
    out: &'a mut BytesMut,
    /// The read's bytes that go to the client as they came and are not in `out` yet.
    forwarded: &'a [u8],
}

impl<'a> ToClient<'a> {
    pub fn new(out: &'a mut BytesMut, forwarded: &'a [u8]) -> ToClient<'a> {
        ToClient { out, forwarded }
    }

    /// The buffer a rewritten message goes on the end of, with the forwarded bytes before it.
    pub(crate) fn rewrite(&mut self) -> &mut BytesMut {
        self.out.extend_from_slice(std::mem::take(&mut self.forwarded));
        self.out
    }
}

/// Target-side state for the result being received.
pub struct Responses {
    max_rows: usize,
    /// The current result's columns, from its RowDescription or its statement's description.
    columns: Vec<Column>,
    /// Whether the current result's columns have been settled (at its first row at the latest).
    columns_settled: bool,
    /// Statement descriptions by statement id, for executions that are not described again.
    described: HashMap<u64, (Arc<[Column]>, Plan)>,
    masks: Option<WireMasks>,
    /// How the current result's values are masked.
    plan: Plan,
    rows: Vec<Value>,
    /// Bytes of the rows recorded so far for the current result.
    rows_bytes: usize,
    n_rows: u64,
    copy_out: Option<CopyCount>,
    /// The last RowDescription and what it gave. libpq describes the portal of every prepared
    /// execution (`PQsendQueryPrepared`), so the same bytes arrive statement after statement, and
    /// reading and planning them each time cost more than masking the rows of a small result.
    last_description: Option<LastDescription>,
}

/// A RowDescription's bytes, its columns, and the masking plan made from them (with the catalog
/// entries the plan consulted, which must still be current for it to be used again).
struct LastDescription {
    body: Vec<u8>,
    columns: Vec<Column>,
    plan: Plan,
    consulted: Consulted,
}

impl Requests {
    /// Request tracking whose recording masks what `masks` finds (None: nothing is masked).
    pub(crate) fn new(masks: Option<WireMasks>) -> Requests {
        Requests { masks, ..Requests::default() }
    }

    /// Looks at one client message; returns what to record and decide before it is forwarded.
    pub fn on_message(&mut self, msg: Message<'_>, queue: &PendingQueue) -> Result<Seen, DecodeError> {
        let mut seen = self.see(msg, queue)?;
        if let (Some(masks), Some(event)) = (&mut self.masks, &mut seen.event) {
            mask_request(masks, event);
        }
        Ok(seen)
    }

    fn see(&mut self, msg: Message<'_>, queue: &PendingQueue) -> Result<Seen, DecodeError> {
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
                self.last_statement_id += 1;
                self.statements.insert(name, (text, self.last_statement_id));
                None
            }
            b'D' => {
                let kind = f.u8()?;
                let name = f.cstr()?;
                let statement = match kind {
                    b'S' => Some(self.statements.get(name).map_or(0, |(_, id)| *id)),
                    _ => None,
                };
                push(queue, Pending::Describe { statement });
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
                let n_results = f.count()?;
                let mut result_formats = Vec::with_capacity(n_results.min(1664));
                for _ in 0..n_results {
                    result_formats.push(f.i16()?);
                }
                let (text, statement_id) = self.statements.get(statement).cloned().unwrap_or_else(|| (Arc::from(""), 0));
                if self.portals.len() >= MAX_TRACKED {
                    self.portals.clear();
                }
                let formats = result_formats.into();
                self.portals.insert(portal, Portal { text, statement: lossy(statement), statement_id, formats, params, n_params });
                None
            }
            b'E' => {
                let portal_name = f.cstr()?;
                let max_rows = f.i32()?;
                let (text, event, statement, formats) = match self.portals.get(portal_name) {
                    Some(portal) => {
                        let mut event = request("pg.execute", &portal.text)
                            .with_attr("statement", portal.statement.clone())
                            .with_attr("portal", lossy(portal_name))
                            .with_attr("params", Value::Array(portal.params.clone()))
                            .with_payload_text(portal.text.to_string());
                        if portal.params.len() < portal.n_params {
                            event = event.with_attr("params_total", portal.n_params);
                        }
                        (portal.text.clone(), event, portal.statement_id, portal.formats.clone())
                    }
                    None => {
                        let event = request("pg.execute", "(unknown portal)").with_attr("portal", lossy(portal_name));
                        (Arc::from(""), event, 0, Arc::from([]))
                    }
                };
                let event = if max_rows > 0 { event.with_attr("max_rows", max_rows) } else { event };
                decide = Some(if text.is_empty() { Arc::from(OPAQUE_REQUEST) } else { text.clone() });
                push(queue, Pending::Execute { started: Instant::now(), text, denial: None, statement, formats });
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
        Responses::with_masks(max_rows, None)
    }

    /// Response tracking that masks values as `masks` says, with no table names known (every
    /// table pattern then matches): for fuzzing and tests; sessions get theirs from the relay.
    pub fn with_session_masks(max_rows: usize, masks: Arc<SessionMasks>) -> Responses {
        Responses::with_masks(max_rows, Some(WireMasks::new(masks, Default::default())))
    }

    /// Response tracking that masks values as `masks` says (None: nothing is masked).
    pub(crate) fn with_masks(max_rows: usize, masks: Option<WireMasks>) -> Responses {
        Responses {
            max_rows,
            columns: Vec::new(),
            columns_settled: false,
            described: HashMap::new(),
            masks,
            plan: Plan::default(),
            rows: Vec::new(),
            rows_bytes: 0,
            n_rows: 0,
            copy_out: None,
            last_description: None,
        }
    }

    /// The tables whose names masking needs before this message can be handled (a
    /// RowDescription naming tables the catalog cache does not know); empty for other messages.
    pub(crate) fn tables_to_look_up(&self, msg: Message<'_>) -> Vec<u32> {
        match (&self.masks, msg.tag) {
            (Some(_), b'T') if self.last_description_fits(msg.body) => Vec::new(),
            (Some(masks), b'T') => row_description(msg.body).map(|columns| masks.tables_to_look_up(&columns)).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether the last description is `body`, and its plan still stands.
    fn last_description_fits(&self, body: &[u8]) -> bool {
        self.last_description
            .as_ref()
            .is_some_and(|last| last.body == body && self.masks.as_ref().is_none_or(|masks| masks.is_current(&last.consulted)))
    }

    /// The columns of a RowDescription and how their values are masked.
    fn describe(&mut self, body: &[u8]) -> Result<(Vec<Column>, Plan), DecodeError> {
        if let Some(last) = self.last_description.as_ref().filter(|_| self.last_description_fits(body)) {
            return Ok((last.columns.clone(), last.plan.clone()));
        }
        let columns = row_description(body)?;
        let (plan, consulted) = self.masks.as_ref().map(|m| m.plan(&columns)).unwrap_or_default();
        self.last_description = Some(LastDescription { body: body.to_vec(), columns: columns.clone(), plan: plan.clone(), consulted });
        Ok((columns, plan))
    }

    /// Looks at one target message; adds the events to record before it reaches the client, and
    /// says what the client gets for it (a masked row is written to `client`).
    pub fn on_message(
        &mut self,
        msg: Message<'_>,
        queue: &PendingQueue,
        events: &mut Vec<Event>,
        client: &mut ToClient<'_>,
    ) -> Result<Reply, DecodeError> {
        let mut f = Fields::new(msg.body);
        match msg.tag {
            b'T' => {
                let (columns, plan) = self.describe(msg.body)?;
                let mut queue = lock(queue);
                match queue.front() {
                    Some(Pending::Describe { statement: Some(id) }) => {
                        // A statement's description: its executions' rows are read by it.
                        let id = *id;
                        queue.pop_front();
                        if self.described.len() >= MAX_TRACKED {
                            self.described.clear();
                        }
                        if id != 0 {
                            self.described.insert(id, (columns.into(), plan));
                        }
                    }
                    front => {
                        if matches!(front, Some(Pending::Describe { statement: None })) {
                            queue.pop_front();
                        }
                        self.columns = columns;
                        self.plan = plan;
                        self.columns_settled = true;
                    }
                }
            }
            b'n' => {
                let mut queue = lock(queue);
                if let Some(Pending::Describe { statement }) = queue.front() {
                    if let Some(id) = statement.filter(|id| *id != 0) {
                        self.described.insert(id, (Arc::from([]), Plan::default()));
                    }
                    queue.pop_front();
                }
            }
            b'D' => {
                if !self.columns_settled {
                    self.settle_columns(queue);
                }
                self.n_rows += 1;
                let record = self.rows.len() < self.max_rows && self.rows_bytes < MAX_ROWS_BYTES;
                if let Some(masks) = self.masks.as_mut().filter(|_| !self.plan.is_empty()) {
                    let masked = masks.row(&self.plan, msg.body, record, client)?;
                    if let Some(row) = masked.recorded {
                        self.rows_bytes += row.iter().map(|v| v.as_str().map_or(4, str::len)).sum::<usize>();
                        self.rows.push(Value::Array(row));
                    }
                    if masked.rewritten {
                        return Ok(Reply::Rewritten);
                    }
                } else if record {
                    let n = f.count()?;
                    let mut row = Vec::with_capacity(n.min(1024));
                    for i in 0..n {
                        let format = self.columns.get(i).map_or(0, |c| c.format);
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
                    return Ok(Reply::Replace(denial));
                }
                let masked = self.mask_notice(msg);
                let error = parse_error_fields(masked.as_ref().map_or(msg.body, |m| &m[5..]));
                let mut event = self.result(queue, Outcome::Error(&error));
                self.mask_recorded_error(&mut event);
                events.push(event);
                if let Some(masked) = masked {
                    return Ok(Reply::Replace(masked));
                }
            }
            b'Z' => self.ready(queue, events),
            b'H' => {
                if self.masks.as_ref().is_some_and(|m| m.masks.masks_client()) && f.u8()? != 0 {
                    return Ok(Reply::Refuse(
                        "masking applies to this session, and a binary COPY TO cannot be masked; use text or CSV format",
                    ));
                }
                self.copy_out = Some(CopyCount::default());
            }
            b'd' => {
                if let Some(count) = &mut self.copy_out {
                    count.add(msg.body);
                }
                if let Some(masked) = self.masks.as_mut().and_then(|m| m.copy_data(msg.body)) {
                    return Ok(Reply::Replace(masked));
                }
            }
            b'c' => {
                if let Some(count) = self.copy_out.take() {
                    let summary = format!("COPY OUT: {} bytes, {} rows", count.bytes, count.rows);
                    let mut event = copy_event("pg.copy_out", Direction::Response, summary, count);
                    if let Some(counts) = self.masks.as_mut().and_then(WireMasks::take_counts) {
                        event = event.with_attr("masked", counts);
                    }
                    events.push(event);
                }
            }
            b'N' => {
                // A notice can come in the middle of a result: its counts are its own.
                let rows_so_far = self.masks.as_mut().map(|m| std::mem::take(&mut m.counts));
                let masked = self.mask_notice(msg);
                let notice = parse_error_fields(masked.as_ref().map_or(msg.body, |m| &m[5..]));
                let mut message = notice.message;
                let mut counts = None;
                if let Some(masks) = &mut self.masks {
                    message = masks.for_recording(&message).unwrap_or(message);
                    counts = masks.take_counts();
                    masks.counts = rows_so_far.unwrap_or_default();
                }
                let mut event = Event::note(kind("pg.notice"), Direction::Response, clip(&message))
                    .with_attr("severity", notice.severity)
                    .with_attr("sqlstate", notice.sqlstate);
                if let Some(counts) = counts {
                    event = event.with_attr("masked", counts);
                }
                events.push(event);
                if let Some(masked) = masked {
                    return Ok(Reply::Replace(masked));
                }
            }
            b'A' => {
                let pid = f.i32()?;
                let channel = lossy(f.cstr()?);
                let mut payload = lossy(f.cstr()?);
                if let Some(masks) = &mut self.masks {
                    let rows_so_far = std::mem::take(&mut masks.counts);
                    payload = masks.for_recording(&payload).unwrap_or(payload);
                    masks.counts = rows_so_far;
                }
                let event = Event::note(kind("pg.notification"), Direction::Response, clip(&format!("NOTIFY {channel}: {payload}")))
                    .with_attr("pid", pid)
                    .with_attr("channel", channel)
                    .with_attr("payload", payload);
                events.push(event);
            }
            _ => {}
        }
        Ok(Reply::Forward)
    }

    /// The columns of a result that had no RowDescription of its own: an execution of a
    /// statement described earlier, in the formats its Bind asked for.
    fn settle_columns(&mut self, queue: &PendingQueue) {
        self.columns_settled = true;
        let queue = lock(queue);
        let Some(Pending::Execute { statement, formats, .. }) = queue.front() else { return };
        match self.described.get(statement) {
            Some((columns, plan)) => {
                self.columns = columns.iter().cloned().collect();
                for (i, column) in self.columns.iter_mut().enumerate() {
                    column.format = match formats.len() {
                        0 => 0,
                        1 => formats[0],
                        _ => formats.get(i).copied().unwrap_or(0),
                    };
                }
                self.plan = if self.masks.is_some() { plan.with_formats(columns, formats) } else { Plan::default() };
            }
            // Rows of a statement witness saw no description of: masking cannot tell the columns.
            None if self.masks.is_some() => self.plan = Plan::blind(),
            None => {}
        }
    }

    /// The texts of a notice or error masked for the client, as a whole message, if any changed.
    fn mask_notice(&mut self, msg: Message<'_>) -> Option<Bytes> {
        self.masks.as_mut()?.notice(msg.tag, msg.body)
    }

    /// An error result's message as the recording keeps it (recording-only masks too).
    fn mask_recorded_error(&mut self, event: &mut Event) {
        let Some(masks) = &mut self.masks else { return };
        let Some(message) = event.attrs.get("error").and_then(|e| e["message"].as_str()).map(str::to_string) else { return };
        if let Some(masked) = masks.for_recording(&message) {
            event.summary = clip(&event.summary.replace(&message, &masked));
            if let Some(Value::Object(error)) = event.attrs.get_mut("error") {
                error.insert("message".into(), Value::String(masked));
            }
        }
        if let Some(counts) = masks.take_counts() {
            event.attrs.insert("masked".into(), counts);
        }
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
        if let Some(counts) = self.masks.as_mut().and_then(WireMasks::take_counts) {
            event = event.with_attr("masked", counts);
        }
        if !self.columns.is_empty() {
            event = event.with_attr("rows_recorded", self.rows.len());
            let payload = ResultPayload { columns: ColumnsJson(&self.columns), rows: &self.rows };
            event.payload_type = PayloadType::Json;
            event.payload = serde_json::to_vec(&payload).expect("JSON values serialize");
        }
        self.columns.clear();
        self.columns_settled = false;
        self.plan = Plan::default();
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
                Pending::Describe { .. } => {}
                Pending::Execute { text, .. } => {
                    let summary = clip(&format!("not executed (an earlier message of the pipeline failed): {text}"));
                    events.push(Event::note(kind("pg.result"), Direction::Response, summary).with_attr("skipped", true));
                }
            }
        }
    }
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
pub(crate) fn value(bytes: Option<&[u8]>, format: i16) -> Value {
    let Some(bytes) = bytes else { return Value::Null };
    let shown = &bytes[..bytes.len().min(MAX_VALUE_BYTES)];
    let cut = if shown.len() < bytes.len() { "…" } else { "" };
    let printable = |text: &str| text.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    // One allocation per value: this runs for every parameter and every recorded cell.
    let mut text = match (format, std::str::from_utf8(shown)) {
        (0, Ok(text)) => String::with_capacity(text.len() + cut.len()) + text,
        (_, Ok(text)) if !text.is_empty() && printable(text) => String::with_capacity(text.len() + cut.len()) + text,
        _ => format!("\\x{}", hex::encode(shown)),
    };
    text.push_str(cut);
    Value::String(text)
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
            responses.on_message(message(m), &queue, &mut events, &mut ToClient::new(&mut BytesMut::new(), &[])).unwrap();
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
    fn a_description_like_the_last_is_planned_like_it_and_any_other_afresh() {
        use witness_policy::mask::{ApplyTo, ColumnPattern, DetectorSet, MaskRule, MaskStyle, Masking};
        let rule = MaskRule {
            name: "pii".into(),
            connections: Vec::new(),
            groups: Vec::new(),
            columns: vec![ColumnPattern::new("*.email").unwrap()],
            detectors: DetectorSet::EMPTY,
            apply_to: ApplyTo::ClientAndRecording,
            style: MaskStyle::Redact,
        };
        let masks = Masking::new(vec![rule], b"test").unwrap().for_session("pg", &[]).unwrap();
        let queue = PendingQueue::default();
        let mut responses = Responses::with_session_masks(10, masks);
        // One text column of table OID 16400 (unknown to the catalog: every table pattern matches).
        let described = |name: &[u8]| msg(b'T', &[b"\0\x01", name, b"\0\0\0\x40\x10\0\x02\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"].concat());
        let row = msg(b'D', b"\0\x01\0\0\0\x05a@b.c");
        let mut replies = Vec::new();
        for name in [&b"email"[..], b"note", b"email", b"email", b"note"] {
            let mut events = Vec::new();
            let mut out = BytesMut::new();
            for m in [described(name), row.clone(), msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I")] {
                let reply = responses.on_message(message(&m), &queue, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
                if m[0] == b'D' {
                    replies.push(matches!(reply, Reply::Rewritten));
                }
            }
        }
        assert_eq!(replies, [true, false, true, true, false], "the email column is masked, the note column is not");
    }

    /// Runs one result of a single text column through masking by detectors that apply to
    /// `apply_to`: what the client got for each row, and the rows as recorded.
    fn masked_column(apply_to: witness_policy::mask::ApplyTo, values: &[&str]) -> (Vec<String>, Value) {
        use witness_policy::mask::{DetectorSet, MaskRule, MaskStyle, Masking};
        let rule = MaskRule {
            name: "pii".into(),
            connections: Vec::new(),
            groups: Vec::new(),
            columns: Vec::new(),
            detectors: DetectorSet::all(),
            apply_to,
            style: MaskStyle::Redact,
        };
        let masks = Masking::new(vec![rule], b"test").unwrap().for_session("pg", &[]).unwrap();
        let queue = PendingQueue::default();
        let mut responses = Responses::with_session_masks(100, masks);
        let mut events = Vec::new();
        let mut client_got = Vec::new();
        let described = msg(b'T', b"\0\x01note\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0");
        let rows = values.iter().map(|v| msg(b'D', &[&b"\0\x01"[..], &(v.len() as i32).to_be_bytes(), v.as_bytes()].concat()));
        for m in std::iter::once(described).chain(rows).chain([msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I")]) {
            let mut out = BytesMut::new();
            let reply = responses.on_message(message(&m), &queue, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
            if m[0] == b'D' {
                let sent = if matches!(reply, Reply::Rewritten) { &out[..] } else { &m[..] };
                // The one value, after the tag, length, column count and value length.
                client_got.push(String::from_utf8_lossy(&sent[1 + 4 + 2 + 4..]).into_owned());
            }
        }
        let payload: Value = serde_json::from_slice(&events[0].payload).unwrap();
        (client_got, payload["rows"].clone())
    }

    #[test]
    fn a_repeated_value_is_masked_each_time_and_a_repeated_clean_one_passes_each_time() {
        use witness_policy::mask::ApplyTo;
        let values = ["none on file", "none on file", "mail a@example.com", "mail a@example.com", "none on file", "none"];
        let (client, recorded) = masked_column(ApplyTo::ClientAndRecording, &values);
        let masked = ["none on file", "none on file", "mail [email]", "mail [email]", "none on file", "none"];
        assert_eq!(client, masked);
        assert_eq!(recorded, json!(masked.map(|v| [v])));
    }

    #[test]
    fn a_value_clean_for_the_client_but_not_for_the_recording_is_masked_in_every_recorded_row() {
        use witness_policy::mask::ApplyTo;
        let values = ["mail a@example.com", "mail a@example.com", "none", "mail a@example.com"];
        let (client, recorded) = masked_column(ApplyTo::Recording, &values);
        assert_eq!(client, values, "the client sees the real values");
        assert_eq!(recorded, json!([["mail [email]"], ["mail [email]"], ["none"], ["mail [email]"]]));
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
            responses.on_message(message(&m), &queue, &mut events, &mut ToClient::new(&mut BytesMut::new(), &[])).unwrap();
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
        let mut out = BytesMut::new();
        let bad_row = msg(b'D', b"\0\x01\0\0\0\x09ab");
        assert!(responses.on_message(message(&bad_row), &queue, &mut Vec::new(), &mut ToClient::new(&mut out, &[])).is_err());
    }
}
