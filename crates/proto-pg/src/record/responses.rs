//! The target's messages: each answer is matched to the request the target gives it for, in the
//! order the target answers; confirmations change the session's names, errors make the target
//! skip to the next Sync, and results are recorded with their columns and rows (masked first where
//! masking applies) before they reach the client.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use witness_core::{kind, Direction, Event};
use witness_mask::{SessionMasks, Stage};

use super::{clip, lossy, row_description, CopyCount, Reply, MAX_ROWS_BYTES};
use crate::codec::{backend, parse_error_fields, transaction, DecodeError, Fields, Message};
use crate::mask::{Column, Consulted, Plan, WireMasks};
use crate::recorded::value;
use crate::state::{Desync, Pending, Tracker, MAX_TRACKED};
use crate::to_client::ToClient;
use result::{skipped_event, Outcome};

mod result;

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

    /// Looks at one target message; adds the events to record before it reaches the client, and
    /// says what the client gets for it (a masked row is written to `client`). Messages witness
    /// does not follow go as they came.
    pub fn on_message(
        &mut self,
        msg: Message<'_>,
        tracker: &Tracker,
        events: &mut Vec<Event>,
        client: &mut ToClient<'_>,
    ) -> Result<Reply, ResponseError> {
        let body = msg.body;
        match msg.tag {
            backend::PARSE_COMPLETE | backend::BIND_COMPLETE | backend::CLOSE_COMPLETE => self.on_confirmation(msg, tracker),
            backend::PARAMETER_DESCRIPTION => self.on_parameter_description(body, tracker),
            backend::ROW_DESCRIPTION => self.on_row_description(body, tracker),
            backend::NO_DATA => self.on_no_data(tracker),
            backend::DATA_ROW => self.on_data_row(body, tracker, client),
            backend::COMMAND_COMPLETE => self.on_command_complete(body, tracker, events),
            backend::EMPTY_QUERY_RESPONSE => self.on_empty_query(tracker, events),
            backend::PORTAL_SUSPENDED => self.on_portal_suspended(tracker, events),
            backend::ERROR_RESPONSE => self.on_error(body, tracker, events),
            backend::READY_FOR_QUERY => self.on_ready_for_query(body, tracker, events),
            backend::FUNCTION_CALL_RESPONSE => self.on_function_call_response(body, tracker, events),
            backend::COPY_OUT_RESPONSE => self.on_copy_out_response(body),
            backend::COPY_DATA => self.on_copy_data(body),
            backend::PARAMETER_STATUS => self.on_parameter_status(body, tracker, events),
            backend::NOTICE_RESPONSE => self.on_notice(body, events),
            backend::NOTIFICATION_RESPONSE => self.on_notification(body, events),
            _ => Ok(Reply::Forward),
        }
    }

    /// ParseComplete, BindComplete or CloseComplete: the name changes for the target now.
    fn on_confirmation(&mut self, msg: Message<'_>, tracker: &Tracker) -> Result<Reply, ResponseError> {
        tracker.confirm(msg)?;
        Ok(Reply::Forward)
    }

    /// ParameterDescription: the types of a described statement's parameters.
    fn on_parameter_description(&mut self, body: &[u8], tracker: &Tracker) -> Result<Reply, ResponseError> {
        tracker.parameter_description(body);
        Ok(Reply::Forward)
    }

    /// RowDescription: the columns of a described statement or portal (kept for its executions),
    /// or of the simple query's result now coming.
    fn on_row_description(&mut self, body: &[u8], tracker: &Tracker) -> Result<Reply, ResponseError> {
        let (columns, plan) = self.describe(body)?;
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
        Ok(Reply::Forward)
    }

    /// NoData: a described statement or portal returns no rows.
    fn on_no_data(&mut self, tracker: &Tracker) -> Result<Reply, ResponseError> {
        if let Some(Some(id)) = tracker.described() {
            self.keep_description(id, Arc::from([]), Plan::default());
        }
        Ok(Reply::Forward)
    }

    /// DataRow: counted, recorded up to the caps, masked where the plan says.
    fn on_data_row(&mut self, body: &[u8], tracker: &Tracker, client: &mut ToClient<'_>) -> Result<Reply, ResponseError> {
        if !self.columns_settled {
            self.settle_columns(tracker);
        }
        self.n_rows += 1;
        let record = self.rows.len() < self.max_rows && self.rows_bytes < MAX_ROWS_BYTES;
        if let Some(masks) = self.masks.as_mut().filter(|_| !self.plan.is_empty()) {
            let masked = masks.row(&self.plan, body, record, client)?;
            if let Some(row) = masked.recorded {
                self.keep_row(row);
            }
            return Ok(if masked.rewritten { Reply::Rewritten } else { Reply::Forward });
        }
        if record {
            let row = self.read_row(body)?;
            self.keep_row(row);
        }
        Ok(Reply::Forward)
    }

    /// CommandComplete: the result ends (and a COPY TO's data with it).
    fn on_command_complete(&mut self, body: &[u8], tracker: &Tracker, events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        let tag = lossy(Fields::new(body).cstr()?);
        if let Some(count) = self.copy_out.take() {
            events.push(self.copy_out_event(count, copy_rows(&tag)));
        }
        events.push(self.result(tracker, Outcome::Complete(&tag)));
        Ok(Reply::Forward)
    }

    /// EmptyQueryResponse: the result of an empty statement.
    fn on_empty_query(&mut self, tracker: &Tracker, events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        events.push(self.result(tracker, Outcome::Complete("EMPTY QUERY")));
        Ok(Reply::Forward)
    }

    /// PortalSuspended: an execution reached its row limit; the portal may be executed again.
    fn on_portal_suspended(&mut self, tracker: &Tracker, events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        events.push(self.result(tracker, Outcome::Suspended));
        Ok(Reply::Forward)
    }

    /// ReadyForQuery: the pipeline ends; requests the target skipped after an error are recorded
    /// as not run.
    fn on_ready_for_query(&mut self, body: &[u8], tracker: &Tracker, events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        let status = Fields::new(body).u8().unwrap_or(transaction::IDLE);
        let (skipped, _) = tracker.ready(status);
        for pending in skipped {
            events.extend(skipped_event(pending));
        }
        Ok(Reply::Forward)
    }

    /// CopyOutResponse: COPY TO data follows, counted until the command completes. Binary data
    /// cannot be masked, so a session whose client gets masked values ends instead.
    fn on_copy_out_response(&mut self, body: &[u8]) -> Result<Reply, ResponseError> {
        if self.masks.as_ref().is_some_and(|m| m.masks.masks_client()) && Fields::new(body).u8()? != 0 {
            return Ok(Reply::Refuse("masking applies to this session, and a binary COPY TO cannot be masked; use text or CSV format"));
        }
        self.copy_out = Some(CopyCount::default());
        Ok(Reply::Forward)
    }

    /// CopyData of a COPY TO: counted, and masked for the client where masking applies.
    fn on_copy_data(&mut self, body: &[u8]) -> Result<Reply, ResponseError> {
        if let Some(count) = &mut self.copy_out {
            count.bytes += body.len() as u64;
            count.messages += 1;
        }
        Ok(match self.masks.as_mut().and_then(|m| m.copy_data(body)) {
            Some(masked) => Reply::Replace(masked),
            None => Reply::Forward,
        })
    }

    /// ParameterStatus: the setting as the target has it decides how text is read; what the
    /// client and the recording see of its value is masked like a row's.
    fn on_parameter_status(&mut self, body: &[u8], tracker: &Tracker, events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        let Some((name, value)) = tracker.parameter_status(body) else { return Ok(Reply::Forward) };
        let (client, recorded, counts) = self.mask_side_text(value.as_bytes());
        let event = Event::note(kind::PG_PARAMETER, Direction::Response, clip(&format!("{name} = {recorded}")))
            .with_attr("name", name.clone())
            .with_attr("value", recorded);
        events.push(with_counts(event, counts));
        Ok(match client {
            Some(client) => Reply::Replace(backend_message(backend::PARAMETER_STATUS, &[name.as_bytes(), b"\0", &client, b"\0"])),
            None => Reply::Forward,
        })
    }

    /// NotificationResponse (LISTEN/NOTIFY): recorded, its payload masked like a row's text.
    fn on_notification(&mut self, body: &[u8], events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        let mut f = Fields::new(body);
        let pid = f.i32()?;
        let channel = f.cstr()?;
        let payload = f.cstr()?;
        let (client, recorded, counts) = self.mask_side_text(payload);
        let channel_text = lossy(channel);
        let event = Event::note(kind::PG_NOTIFICATION, Direction::Response, clip(&format!("NOTIFY {channel_text}: {recorded}")))
            .with_attr("pid", pid)
            .with_attr("channel", channel_text)
            .with_attr("payload", recorded);
        events.push(with_counts(event, counts));
        Ok(match client {
            Some(client) => {
                Reply::Replace(backend_message(backend::NOTIFICATION_RESPONSE, &[&pid.to_be_bytes(), channel, b"\0", &client, b"\0"]))
            }
            None => Reply::Forward,
        })
    }

    /// FunctionCallResponse, a fast-path function's result: its text masked as a row's; a binary
    /// result (of a type witness is not told) is NULL wherever masking looks.
    fn on_function_call_response(&mut self, body: &[u8], tracker: &Tracker, events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        let format = tracker.with_head(|head| match head {
            Some(Pending::FunctionCall { result_format, .. }) => *result_format,
            _ => 1,
        });
        let result = Fields::new(body).nullable()?;
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
        let event = Event::note(kind::PG_FUNCTION_RESULT, Direction::Response, "function call result").with_attr("result", recorded);
        events.push(with_counts(event, counts));
        Ok(reply)
    }

    /// An ErrorResponse: the result of the request it fails (witness's own error instead, if that
    /// request was denied); after a failed extended-protocol message the target skips to Sync.
    fn on_error(&mut self, body: &[u8], tracker: &Tracker, events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        let denial = tracker.with_head(|head| match head {
            Some(Pending::Query { denial, .. } | Pending::Execute { denial, .. } | Pending::FunctionCall { denial, .. }) => denial.clone(),
            _ => None,
        });
        if let Some(denial) = denial {
            let error = parse_error_fields(&denial[5..]);
            events.push(self.result(tracker, Outcome::Error(&error)).with_attr("denied", true));
            return Ok(Reply::Replace(denial));
        }
        if let Some(count) = self.copy_out.take() {
            events.push(self.copy_out_event(count, None));
        }
        let masked = self.masks.as_mut().and_then(|masks| masks.notice(backend::ERROR_RESPONSE, body));
        let error = parse_error_fields(masked.as_ref().map_or(body, |m| &m[5..]));
        let mut event = self.result(tracker, Outcome::Error(&error));
        self.mask_recorded_error(&mut event);
        events.push(event);
        Ok(match masked {
            Some(masked) => Reply::Replace(masked),
            None => Reply::Forward,
        })
    }

    /// NoticeResponse, which can come in the middle of a result: recorded with its own counts.
    fn on_notice(&mut self, body: &[u8], events: &mut Vec<Event>) -> Result<Reply, ResponseError> {
        let rows_so_far = self.masks.as_mut().map(|m| std::mem::take(&mut m.counts));
        let masked = self.masks.as_mut().and_then(|masks| masks.notice(backend::NOTICE_RESPONSE, body));
        let notice = parse_error_fields(masked.as_ref().map_or(body, |m| &m[5..]));
        let mut message = notice.message;
        let mut counts = None;
        if let Some(masks) = &mut self.masks {
            message = masks.for_recording(&message).unwrap_or(message);
            counts = masks.take_counts();
            masks.counts = rows_so_far.unwrap_or_default();
        }
        let event = Event::note(kind::PG_NOTICE, Direction::Response, clip(&message))
            .with_attr("severity", notice.severity)
            .with_attr("sqlstate", notice.sqlstate);
        events.push(with_counts(event, counts));
        Ok(match masked {
            Some(masked) => Reply::Replace(masked),
            None => Reply::Forward,
        })
    }

    /// A row's values as recorded, by the current result's columns (or, for an execution witness
    /// saw no description of, the formats its Bind asked for).
    fn read_row(&mut self, body: &[u8]) -> Result<Vec<Value>, DecodeError> {
        let mut f = Fields::new(body);
        let n = f.count()?;
        if self.columns.is_empty() {
            if let Some(formats) = self.undescribed.take() {
                self.columns = undescribed_columns(&formats, n);
            }
        }
        let mut row = Vec::with_capacity(n.min(1024));
        for i in 0..n {
            let (format, type_oid) = self.columns.get(i).map_or((0, 0), |c| (c.format, c.type_oid));
            row.push(value(f.nullable()?, format, type_oid));
        }
        Ok(row)
    }

    /// Keeps a recorded row, counting its bytes toward the result's cap.
    fn keep_row(&mut self, row: Vec<Value>) {
        self.rows_bytes += row.iter().map(|v| v.as_str().map_or(4, str::len)).sum::<usize>();
        self.rows.push(Value::Array(row));
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

/// `event`, with what was masked in it, if anything.
fn with_counts(event: Event, counts: Option<Value>) -> Event {
    match counts {
        Some(counts) => event.with_attr("masked", counts),
        None => event,
    }
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

#[cfg(test)]
mod tests;
