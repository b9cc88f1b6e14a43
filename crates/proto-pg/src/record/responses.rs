//! The target's messages: each answer is matched to the request the target gives it for, in the
//! order the target answers; confirmations change the session's names, errors make the target
//! skip to the next Sync, and results are recorded with their columns and rows (masked first where
//! masking applies) before they reach the client.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use witness_core::{kind, Direction, Event, PayloadType};
use witness_policy::mask::{SessionMasks, Stage};

use super::{clip, copy_event, lossy, row_description, value, ColumnsJson, CopyCount, Reply, ResultPayload, ToClient, MAX_ROWS_BYTES};
use crate::codec::{backend, parse_error_fields, transaction, DecodeError, Fields, Message};
use crate::mask::{Column, Consulted, Plan, WireMasks};
use crate::state::{Desync, Pending, Tracker, MAX_TRACKED};

/// Why a target message cannot be followed; the session ends.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Desync(#[from] Desync),
}

/// Target-side state for the result being received.
pub struct Responses {
    max_rows: usize,
    /// The current result's columns, from its RowDescription or its statement's description.
    columns: Vec<Column>,
    /// Whether the current result's columns have been settled (at its first row at the latest).
    columns_settled: bool,
    /// Descriptions of statements and portals by their id, for executions that are not described
    /// again: a portal's in the formats its Bind asked for, a statement's in text format.
    described: HashMap<u64, (Arc<[Column]>, Plan)>,
    masks: Option<WireMasks>,
    /// How the current result's values are masked.
    plan: Plan,
    rows: Vec<Value>,
    /// Bytes of the rows recorded so far for the current result.
    rows_bytes: usize,
    n_rows: u64,
    copy_out: Option<CopyCount>,
    /// The result formats of an execution witness saw no description of (its columns are named
    /// from them at its first row).
    undescribed: Option<Arc<[i16]>>,
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

enum Outcome<'a> {
    Complete(&'a str),
    Suspended,
    Error(&'a crate::codec::ErrorFields),
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
            undescribed: None,
            last_description: None,
        }
    }

    /// The tables whose names masking needs before this message can be handled (a
    /// RowDescription naming tables the catalog cache does not know); empty for other messages.
    pub(crate) fn tables_to_look_up(&self, msg: Message<'_>) -> Vec<u32> {
        match (&self.masks, msg.tag) {
            (Some(_), backend::ROW_DESCRIPTION) if self.last_description_fits(msg.body) => Vec::new(),
            (Some(masks), backend::ROW_DESCRIPTION) => {
                row_description(msg.body).map(|columns| masks.tables_to_look_up(&columns)).unwrap_or_default()
            }
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

    /// Keeps the description of a statement or portal for its executions.
    fn keep_description(&mut self, id: u64, columns: Arc<[Column]>, plan: Plan) {
        if self.described.len() >= MAX_TRACKED {
            self.described.clear();
        }
        self.described.insert(id, (columns, plan));
    }

    /// Looks at one target message; adds the events to record before it reaches the client, and
    /// says what the client gets for it (a masked row is written to `client`).
    pub fn on_message(
        &mut self,
        msg: Message<'_>,
        tracker: &Tracker,
        events: &mut Vec<Event>,
        client: &mut ToClient<'_>,
    ) -> Result<Reply, ResponseError> {
        let mut f = Fields::new(msg.body);
        match msg.tag {
            backend::PARSE_COMPLETE | backend::BIND_COMPLETE | backend::CLOSE_COMPLETE => tracker.confirm(msg)?,
            backend::PARAMETER_DESCRIPTION => tracker.parameter_description(msg.body),
            backend::ROW_DESCRIPTION => {
                let (columns, plan) = self.describe(msg.body)?;
                match tracker.described() {
                    // A statement's or portal's description: its executions' rows are read by it.
                    Some(Some(id)) => self.keep_description(id, columns.into(), plan),
                    Some(None) => {}
                    // A simple query's result (or a statement's that PostgreSQL describes itself).
                    None => {
                        self.columns = columns;
                        self.plan = plan;
                        self.columns_settled = true;
                    }
                }
            }
            backend::NO_DATA => {
                if let Some(Some(id)) = tracker.described() {
                    self.keep_description(id, Arc::from([]), Plan::default());
                }
            }
            backend::DATA_ROW => {
                if !self.columns_settled {
                    self.settle_columns(tracker);
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
                    if self.columns.is_empty() {
                        if let Some(formats) = self.undescribed.take() {
                            self.columns = undescribed_columns(&formats, n);
                        }
                    }
                    let mut row = Vec::with_capacity(n.min(1024));
                    for i in 0..n {
                        let (format, type_oid) = self.columns.get(i).map_or((0, 0), |c| (c.format, c.type_oid));
                        let v = value(f.nullable()?, format, type_oid);
                        self.rows_bytes += v.as_str().map_or(4, str::len);
                        row.push(v);
                    }
                    self.rows.push(Value::Array(row));
                }
            }
            backend::FUNCTION_CALL_RESPONSE => {
                let format = tracker.with_head(|head| match head {
                    Some(Pending::FunctionCall { result_format, .. }) => *result_format,
                    _ => 1,
                });
                return Ok(self.function_result(f.nullable()?, format, events));
            }
            backend::COMMAND_COMPLETE => {
                let tag = lossy(f.cstr()?);
                if let Some(count) = self.copy_out.take() {
                    events.push(self.copy_out_event(count, copy_rows(&tag)));
                }
                events.push(self.result(tracker, Outcome::Complete(&tag)));
            }
            backend::EMPTY_QUERY_RESPONSE => events.push(self.result(tracker, Outcome::Complete("EMPTY QUERY"))),
            backend::PORTAL_SUSPENDED => events.push(self.result(tracker, Outcome::Suspended)),
            backend::ERROR_RESPONSE => return Ok(self.error(msg, tracker, events)),
            backend::READY_FOR_QUERY => {
                let status = f.u8().unwrap_or(transaction::IDLE);
                let (skipped, _) = tracker.ready(status);
                for pending in skipped {
                    events.extend(skipped_event(pending));
                }
            }
            backend::COPY_OUT_RESPONSE => {
                if self.masks.as_ref().is_some_and(|m| m.masks.masks_client()) && f.u8()? != 0 {
                    return Ok(Reply::Refuse(
                        "masking applies to this session, and a binary COPY TO cannot be masked; use text or CSV format",
                    ));
                }
                self.copy_out = Some(CopyCount::default());
            }
            backend::COPY_DATA => {
                if let Some(count) = &mut self.copy_out {
                    count.bytes += msg.body.len() as u64;
                    count.messages += 1;
                }
                if let Some(masked) = self.masks.as_mut().and_then(|m| m.copy_data(msg.body)) {
                    return Ok(Reply::Replace(masked));
                }
            }

            backend::PARAMETER_STATUS => {
                // The setting as the target has it decides how text is read; what the client
                // and the recording see of its value is masked like a row's.
                let Some((name, value)) = tracker.parameter_status(msg.body) else { return Ok(Reply::Forward) };
                let (client, recorded, counts) = self.mask_side_text(value.as_bytes());
                let mut event = Event::note(kind::PG_PARAMETER, Direction::Response, clip(&format!("{name} = {recorded}")))
                    .with_attr("name", name.clone())
                    .with_attr("value", recorded);
                if let Some(counts) = counts {
                    event = event.with_attr("masked", counts);
                }
                events.push(event);
                if let Some(client) = client {
                    return Ok(Reply::Replace(backend_message(backend::PARAMETER_STATUS, &[name.as_bytes(), b"\0", &client, b"\0"])));
                }
            }
            backend::NOTICE_RESPONSE => return Ok(self.notice(msg, events)),
            backend::NOTIFICATION_RESPONSE => {
                let pid = f.i32()?;
                let channel = f.cstr()?;
                let payload = f.cstr()?;
                let (client, recorded, counts) = self.mask_side_text(payload);
                let channel_text = lossy(channel);
                let mut event =
                    Event::note(kind::PG_NOTIFICATION, Direction::Response, clip(&format!("NOTIFY {channel_text}: {recorded}")))
                        .with_attr("pid", pid)
                        .with_attr("channel", channel_text)
                        .with_attr("payload", recorded);
                if let Some(counts) = counts {
                    event = event.with_attr("masked", counts);
                }
                events.push(event);
                if let Some(client) = client {
                    return Ok(Reply::Replace(backend_message(
                        backend::NOTIFICATION_RESPONSE,
                        &[&pid.to_be_bytes(), channel, b"\0", &client, b"\0"],
                    )));
                }
            }
            _ => {}
        }
        Ok(Reply::Forward)
    }

    /// Masks a text that comes outside a result (a notification's payload, a setting's value) for
    /// the client and for the recording, as a row's text is masked, keeping the counts of a result
    /// in progress apart. Returns the client's text if it changed, the recorded text, and what
    /// was masked.
    fn mask_side_text(&mut self, text: &[u8]) -> (Option<Vec<u8>>, String, Option<Value>) {
        let Some(masks) = &mut self.masks else { return (None, lossy(text), None) };
        let rows_so_far = std::mem::take(&mut masks.counts);
        let client = masks.masks.text(Stage::Client, text, &mut masks.counts);
        let shown = client.as_deref().unwrap_or(text);
        let recorded = masks.masks.text(Stage::RecordingOnly, shown, &mut masks.counts);
        let recorded = lossy(recorded.as_deref().unwrap_or(shown));
        let counts = masks.take_counts();
        masks.counts = rows_so_far;
        (client, recorded, counts)
    }

    /// A fast-path function's result: its text masked as a row's; a binary result (of a type
    /// witness is not told) is NULL wherever masking looks.
    fn function_result(&mut self, result: Option<&[u8]>, format: i16, events: &mut Vec<Event>) -> Reply {
        let mut reply = Reply::Forward;
        let mut counts = None;
        let recorded = match (result, &mut self.masks) {
            (None, _) | (Some(_), None) => value(result, format, 0),
            (Some(bytes), Some(masks)) if format != 0 => {
                if masks.masks.detects(Stage::Client) {
                    reply = Reply::Replace(backend_message(backend::FUNCTION_CALL_RESPONSE, &[&(-1i32).to_be_bytes()]));
                }
                if masks.masks.detects(Stage::Client) || masks.masks.detects(Stage::RecordingOnly) {
                    Value::Null
                } else {
                    value(Some(bytes), format, 0)
                }
            }
            (Some(bytes), Some(_)) => {
                let (client, recorded, masked) = self.mask_side_text(bytes);
                counts = masked;
                if let Some(client) = client {
                    reply =
                        Reply::Replace(backend_message(backend::FUNCTION_CALL_RESPONSE, &[&(client.len() as i32).to_be_bytes(), &client]));
                }
                Value::String(recorded)
            }
        };
        let mut event = Event::note(kind::PG_FUNCTION_RESULT, Direction::Response, "function call result").with_attr("result", recorded);
        if let Some(counts) = counts {
            event = event.with_attr("masked", counts);
        }
        events.push(event);
        reply
    }

    /// A COPY TO's data, once it has ended: its rows as the target counted them (the command
    /// tag), None when it failed.
    fn copy_out_event(&mut self, mut count: CopyCount, rows: Option<u64>) -> Event {
        count.rows = rows.unwrap_or(0);
        let outcome = if rows.is_some() { "done" } else { "failed" };
        let summary = format!("COPY OUT {outcome}: {} bytes, {} rows", count.bytes, count.rows);
        let mut event = copy_event(kind::PG_COPY_OUT, Direction::Response, summary, count).with_attr("outcome", outcome);
        if let Some(counts) = self.masks.as_mut().and_then(WireMasks::take_counts) {
            event = event.with_attr("masked", counts);
        }
        event
    }

    /// An ErrorResponse: the result of the request it fails (witness's own error instead, if that
    /// request was denied); after a failed extended-protocol message the target skips to Sync.
    fn error(&mut self, msg: Message<'_>, tracker: &Tracker, events: &mut Vec<Event>) -> Reply {
        let denial = tracker.with_head(|head| match head {
            Some(Pending::Query { denial, .. } | Pending::Execute { denial, .. } | Pending::FunctionCall { denial, .. }) => denial.clone(),
            _ => None,
        });
        if let Some(denial) = denial {
            let error = parse_error_fields(&denial[5..]);
            events.push(self.result(tracker, Outcome::Error(&error)).with_attr("denied", true));
            return Reply::Replace(denial);
        }
        if let Some(count) = self.copy_out.take() {
            events.push(self.copy_out_event(count, None));
        }
        let masked = self.masks.as_mut().and_then(|masks| masks.notice(msg.tag, msg.body));
        let error = parse_error_fields(masked.as_ref().map_or(msg.body, |m| &m[5..]));
        let mut event = self.result(tracker, Outcome::Error(&error));
        self.mask_recorded_error(&mut event);
        events.push(event);
        match masked {
            Some(masked) => Reply::Replace(masked),
            None => Reply::Forward,
        }
    }

    /// A NoticeResponse, which can come in the middle of a result: recorded with its own counts.
    fn notice(&mut self, msg: Message<'_>, events: &mut Vec<Event>) -> Reply {
        let rows_so_far = self.masks.as_mut().map(|m| std::mem::take(&mut m.counts));
        let masked = self.masks.as_mut().and_then(|masks| masks.notice(msg.tag, msg.body));
        let notice = parse_error_fields(masked.as_ref().map_or(msg.body, |m| &m[5..]));
        let mut message = notice.message;
        let mut counts = None;
        if let Some(masks) = &mut self.masks {
            message = masks.for_recording(&message).unwrap_or(message);
            counts = masks.take_counts();
            masks.counts = rows_so_far.unwrap_or_default();
        }
        let mut event = Event::note(kind::PG_NOTICE, Direction::Response, clip(&message))
            .with_attr("severity", notice.severity)
            .with_attr("sqlstate", notice.sqlstate);
        if let Some(counts) = counts {
            event = event.with_attr("masked", counts);
        }
        events.push(event);
        match masked {
            Some(masked) => Reply::Replace(masked),
            None => Reply::Forward,
        }
    }

    /// The columns of a result that had no RowDescription of its own: an execution of a portal
    /// or statement described earlier (a statement's description in the formats its Bind asked
    /// for). Rows of an execution witness saw no description of are masked blind.
    fn settle_columns(&mut self, tracker: &Tracker) {
        self.columns_settled = true;
        let portal = tracker.with_head(|head| match head {
            Some(Pending::Execute { portal, .. }) => Some(portal.clone()),
            _ => None,
        });
        // Not an execution (a simple query's rows come after their RowDescription).
        let Some(portal) = portal else { return };
        let by_portal = portal.as_ref().and_then(|portal| self.described.get(&portal.id));
        let by_statement = || {
            let portal = portal.as_ref()?;
            let (columns, plan) = self.described.get(&portal.statement.as_ref()?.id)?;
            let mut columns: Vec<Column> = columns.iter().cloned().collect();
            for (i, column) in columns.iter_mut().enumerate() {
                column.format = format_of(&portal.formats, i);
            }
            let plan = if self.masks.is_some() { plan.with_formats(&columns, &portal.formats) } else { Plan::default() };
            Some((columns, plan))
        };
        match by_portal.map(|(columns, plan)| (columns.to_vec(), plan.clone())).or_else(by_statement) {
            Some((columns, plan)) => {
                self.columns = columns;
                self.plan = plan;
            }
            None => {
                // Rows of an execution witness saw no description of: masking cannot tell the
                // columns, and the recording knows only their formats.
                if self.masks.is_some() {
                    self.plan = Plan::blind();
                }
                self.undescribed = portal.map(|portal| portal.formats.clone());
            }
        }
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
    fn result(&mut self, tracker: &Tracker, outcome: Outcome<'_>) -> Event {
        if !self.columns_settled {
            // A result without rows still names its columns, when they are known.
            self.settle_columns(tracker);
        }
        // When it started, which statement of a simple query it is, which request it answers,
        // and which protocol message failed, for an error of one that is not a request.
        let (started, statement, answers, message) = tracker.with_head(|head| match head {
            Some(Pending::Query { request, started, statements, .. }) => {
                *statements += 1;
                (Some(*started), Some(*statements), Some(*request), None)
            }
            Some(Pending::Execute { request, started, .. } | Pending::FunctionCall { request, started, .. }) => {
                (Some(*started), None, Some(*request), None)
            }
            Some(Pending::Parse { .. }) => (None, None, None, Some("parse")),
            Some(Pending::Bind { .. }) => (None, None, None, Some("bind")),
            Some(Pending::Describe { .. }) => (None, None, None, Some("describe")),
            Some(Pending::Close { .. }) => (None, None, None, Some("close")),
            Some(Pending::Sync) => (None, None, None, Some("sync")),
            None => (None, None, None, None),
        });
        if matches!(outcome, Outcome::Error(_)) {
            // Pops a failed extended-protocol message (the target skips to Sync from here).
            tracker.failed();
        } else {
            tracker.result_ended();
        }
        let mut event = match outcome {
            Outcome::Complete(tag) => {
                let rows = if self.columns.is_empty() { String::new() } else { format!(" ({} rows)", self.n_rows) };
                Event::note(kind::PG_RESULT, Direction::Response, clip(&format!("{tag}{rows}"))).with_attr("tag", tag)
            }
            Outcome::Suspended => Event::note(kind::PG_RESULT, Direction::Response, format!("portal suspended after {} rows", self.n_rows))
                .with_attr("suspended", true),
            Outcome::Error(error) => Event::note(
                kind::PG_RESULT,
                Direction::Response,
                clip(&format!("{} {}: {}", error.severity, error.sqlstate, error.message)),
            )
            .with_attr("error", json!({ "severity": error.severity, "sqlstate": error.sqlstate, "message": error.message })),
        };
        event = event.with_attr("rows", self.n_rows);
        if let Some(answers) = answers {
            event = event.with_attr("answers", answers);
        }
        if let Some(message) = message {
            event = event.with_attr("message", message);
        }
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
        self.undescribed = None;
        self.plan = Plan::default();
        self.rows.clear();
        self.rows_bytes = 0;
        self.n_rows = 0;
        event
    }
}

/// A whole backend message of `parts`.
fn backend_message(tag: u8, parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(len + 5);
    out.extend_from_slice(&[tag]);
    out.extend_from_slice(&((len + 4) as i32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.freeze()
}

/// The rows of a `COPY n` command tag.
fn copy_rows(tag: &str) -> Option<u64> {
    tag.strip_prefix("COPY ")?.parse().ok()
}

/// Columns of a result witness saw no description of: no names, no types, the formats the Bind
/// asked for.
fn undescribed_columns(formats: &[i16], n: usize) -> Vec<Column> {
    (0..n.min(1664)).map(|i| Column { name: Arc::from(""), table_oid: 0, attnum: 0, type_oid: 0, format: format_of(formats, i) }).collect()
}

/// The format of result column `i` when a Bind asked for `formats`.
fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    }
}

/// What is recorded of a request the target skipped after an error in its pipeline.
fn skipped_event(pending: Pending) -> Option<Event> {
    let (summary, answers) = match pending {
        Pending::Execute { request, text, .. } => (format!("not executed (an earlier message of the pipeline failed): {text}"), request),
        Pending::Query { request, .. } => ("query not run (an earlier message of the pipeline failed)".to_string(), request),
        Pending::FunctionCall { request, .. } => ("function call not run (an earlier message of the pipeline failed)".to_string(), request),
        _ => return None,
    };
    Some(Event::note(kind::PG_RESULT, Direction::Response, clip(&summary)).with_attr("skipped", true).with_attr("answers", answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frontend;
    use crate::record::tests::{message, msg};
    use crate::record::Requests;

    fn respond(responses: &mut Responses, tracker: &Tracker, messages: &[Vec<u8>]) -> Vec<Event> {
        let mut events = Vec::new();
        for m in messages {
            responses.on_message(message(m), tracker, &mut events, &mut ToClient::new(&mut BytesMut::new(), &[])).unwrap();
        }
        events
    }

    #[test]
    fn an_extended_query_is_recorded_with_its_statement_parameters_and_result() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        let mut responses = Responses::new(1);
        let parse = msg(frontend::PARSE, b"s1\0select $1::int + $2\0\0\0");
        let bind = msg(frontend::BIND, b"\0s1\0\0\x01\0\0\0\x02\0\0\0\x0242\xff\xff\xff\xff\0\0");
        let execute = msg(frontend::EXECUTE, b"\0\0\0\0\0");
        let sync = msg(frontend::SYNC, b"");
        let mut recorded = Vec::new();
        for m in [&parse, &bind, &execute, &sync] {
            recorded.extend(requests.see_and_queue(message(m), &tracker).unwrap());
        }
        let kinds: Vec<&str> = recorded.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["pg.parse", "pg.execute"]);
        assert_eq!(recorded[1].attrs["params"], json!(["42", null]));
        assert_eq!(recorded[1].payload, b"select $1::int + $2");

        let row_description = msg(backend::ROW_DESCRIPTION, b"\0\x01sum\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0");
        let row = msg(backend::DATA_ROW, b"\0\x01\0\0\0\x0242");
        let events = respond(
            &mut responses,
            &tracker,
            &[
                msg(backend::PARSE_COMPLETE, b""),
                msg(backend::BIND_COMPLETE, b""),
                row_description,
                row.clone(),
                row,
                msg(backend::COMMAND_COMPLETE, b"SELECT 2\0"),
                msg(backend::READY_FOR_QUERY, &[transaction::IDLE]),
            ],
        );
        assert_eq!(events.len(), 1);
        let result = &events[0];
        assert_eq!(
            (result.attrs["tag"].as_str(), result.attrs["rows"].as_u64(), result.attrs["rows_recorded"].as_u64()),
            (Some("SELECT 2"), Some(2), Some(1))
        );
        let payload: Value = serde_json::from_slice(&result.payload).unwrap();
        assert_eq!(payload["rows"], json!([["42"]]), "rows are kept up to the cap");
        assert!(tracker.with_head(|head| head.is_none()));
    }

    #[test]
    fn executions_after_an_error_are_skipped_up_to_the_sync() {
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        let mut responses = Responses::new(10);
        for m in [
            msg(frontend::PARSE, b"\0selec nope\0\0\0"),
            msg(frontend::BIND, b"\0\0\0\0\0\0\0\0"),
            msg(frontend::EXECUTE, b"\0\0\0\0\0"),
            msg(frontend::QUERY, b"drop table t\0"),
            msg(frontend::SYNC, b""),
            msg(frontend::QUERY, b"select 1\0"),
        ] {
            requests.see_and_queue(message(&m), &tracker).unwrap();
        }
        let error = msg(backend::ERROR_RESPONSE, b"SERROR\0VERROR\0C42601\0Msyntax error\0\0");
        let events = respond(&mut responses, &tracker, &[error, msg(backend::READY_FOR_QUERY, &[transaction::IDLE])]);
        let summaries: Vec<&str> = events.iter().map(|e| e.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "ERROR 42601: syntax error",
                "not executed (an earlier message of the pipeline failed): selec nope",
                "query not run (an earlier message of the pipeline failed)"
            ]
        );
        assert_eq!(events[0].attrs["message"], "parse");
        // What is left is the last query, answered next.
        assert!(tracker.with_head(|head| matches!(head, Some(Pending::Query { .. }))));
    }

    /// A session's masks with one column rule, `*.email`, and no detectors.
    fn email_column_masks() -> Arc<SessionMasks> {
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
        Masking::new(vec![rule], b"test").unwrap().for_session("pg", &[]).unwrap()
    }

    #[test]
    fn a_description_like_the_last_is_planned_like_it_and_any_other_afresh() {
        let masks = email_column_masks();
        let tracker = Tracker::default();
        let mut responses = Responses::with_session_masks(10, masks);
        // One computed text column (no table): `*.email` matches it by its name.
        let described = |name: &[u8]| {
            msg(backend::ROW_DESCRIPTION, &[b"\0\x01", name, b"\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"].concat())
        };
        let row = msg(backend::DATA_ROW, b"\0\x01\0\0\0\x05a@b.c");
        let mut replies = Vec::new();
        for name in [&b"email"[..], b"note", b"email", b"email", b"note"] {
            let mut events = Vec::new();
            let mut out = BytesMut::new();
            tracker.push(Pending::Query {
                request: 1,
                started: std::time::Instant::now(),
                statements: 0,
                denial: None,
                changes_names: false,
            });
            for m in [
                described(name),
                row.clone(),
                msg(backend::COMMAND_COMPLETE, b"SELECT 1\0"),
                msg(backend::READY_FOR_QUERY, &[transaction::IDLE]),
            ] {
                let reply = responses.on_message(message(&m), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
                if m[0] == backend::DATA_ROW {
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
        let tracker = Tracker::default();
        tracker.push(Pending::Query { request: 1, started: std::time::Instant::now(), statements: 0, denial: None, changes_names: false });
        let mut responses = Responses::with_session_masks(100, masks);
        let mut events = Vec::new();
        let mut client_got = Vec::new();
        let described = msg(backend::ROW_DESCRIPTION, b"\0\x01note\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0");
        let rows = values.iter().map(|v| msg(backend::DATA_ROW, &[&b"\0\x01"[..], &(v.len() as i32).to_be_bytes(), v.as_bytes()].concat()));
        for m in std::iter::once(described)
            .chain(rows)
            .chain([msg(backend::COMMAND_COMPLETE, b"SELECT 1\0"), msg(backend::READY_FOR_QUERY, &[transaction::IDLE])])
        {
            let mut out = BytesMut::new();
            let reply = responses.on_message(message(&m), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
            if m[0] == backend::DATA_ROW {
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
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        let mut responses = Responses::new(10);
        let query = msg(frontend::QUERY, b"create table t(); select nope;\0");
        assert_eq!(requests.see_and_queue(message(&query), &tracker).unwrap().unwrap().kind.as_str(), "pg.query");
        let error = msg(backend::ERROR_RESPONSE, b"SERROR\0VERROR\0C42703\0Mcolumn \"nope\" does not exist\0\0");
        let events = respond(
            &mut responses,
            &tracker,
            &[msg(backend::COMMAND_COMPLETE, b"CREATE TABLE\0"), error, msg(backend::READY_FOR_QUERY, &[transaction::IDLE])],
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].attrs["statement_index"], 1);
        assert_eq!(events[1].attrs["error"]["sqlstate"], "42703");
        assert_eq!(events[1].summary, "ERROR 42703: column \"nope\" does not exist");
        assert!(tracker.with_head(|head| head.is_none()));
    }

    #[test]
    fn rows_of_a_portal_are_read_by_its_own_description() {
        let masks = email_column_masks();
        let tracker = Tracker::default();
        let mut requests = Requests::default();
        let mut responses = Responses::with_session_masks(10, masks);
        // Two portals; the harmless one is described, the other executed.
        for m in [
            msg(frontend::PARSE, b"a\0select note from t\0\0\0"),
            msg(frontend::PARSE, b"b\0select email from t\0\0\0"),
            msg(frontend::BIND, b"pa\0a\0\0\0\0\0\0\0"),
            msg(frontend::BIND, b"pb\0b\0\0\0\0\0\0\0"),
            msg(frontend::DESCRIBE, b"Ppa\0"),
            msg(frontend::EXECUTE, b"pb\0\0\0\0\0"),
            msg(frontend::SYNC, b""),
        ] {
            requests.see_and_queue(message(&m), &tracker).unwrap();
        }
        let note = msg(backend::ROW_DESCRIPTION, b"\0\x01note\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0");
        let mut out = BytesMut::new();
        let mut events = Vec::new();
        for m in [
            msg(backend::PARSE_COMPLETE, b""),
            msg(backend::PARSE_COMPLETE, b""),
            msg(backend::BIND_COMPLETE, b""),
            msg(backend::BIND_COMPLETE, b""),
            note,
        ] {
            responses.on_message(message(&m), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
        }
        let row = msg(backend::DATA_ROW, b"\0\x01\0\0\0\x05a@b.c");
        let reply = responses.on_message(message(&row), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
        assert!(matches!(reply, Reply::Rewritten), "rows of a portal witness saw no description of are masked blind");
    }

    #[test]
    fn an_answer_that_does_not_fit_the_requests_ends_the_session() {
        let tracker = Tracker::default();
        let mut responses = Responses::new(10);
        tracker.push(Pending::Sync);
        let result = responses.on_message(
            message(&msg(backend::PARSE_COMPLETE, b"")),
            &tracker,
            &mut Vec::new(),
            &mut ToClient::new(&mut BytesMut::new(), &[]),
        );
        assert!(matches!(result, Err(ResponseError::Desync(_))));
    }
}
