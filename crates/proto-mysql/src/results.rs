//! A command's answer, followed packet by packet as the target sends it: what each packet is
//! (an OK, an ERR, a column definition, a row, an EOF), when the answer ends, and the events it
//! is recorded as. Each result (a command can have several: multiple statements, a procedure's
//! results) becomes one `mysql.result` with its columns and rows up to the cap, or its OK or
//! ERR; rows are masked here when the session's rules say so.
//!
//! Witness never agrees on `DEPRECATE_EOF`, so column definitions and rows always end with an
//! EOF packet, told from a row by its first byte and length.

use std::time::Instant;

use serde_json::{json, Value};
use witness_core::{kind, Direction, Event, PayloadType};
use witness_mask::{MaskCounts, SessionMasks, Stage};

use crate::answer::{self, Column, ErrPacket, OkPacket, MORE_RESULTS_EXIST};
use crate::catalog::BaseTables;
use crate::mask::{counts_json, RowMasks};
use crate::values::{text_row, write_binary_row_json, write_text_row_json, UNSIGNED_FLAG};
use crate::wire::{Fields, Truncated};

/// The status flag of the EOF after a cursor's columns: its rows come by COM_STMT_FETCH.
const CURSOR_EXISTS: u16 = 0x0040;
/// The most row bytes one result's record keeps, whatever the row cap.
const MAX_ROWS_BYTES: usize = 1 << 20;
/// The most columns a result may have (MySQL's tables have at most 4096).
const MAX_COLUMNS: u64 = 1 << 16;

/// What kind of answer a command gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// OK, ERR or result sets (text rows, or binary for an execution), perhaps several.
    Results { binary: bool },
    /// Rows of an open cursor (binary) until an EOF: COM_STMT_FETCH.
    Rows,
    /// COM_STMT_PREPARE's OK with the parameters' and columns' definitions, or an ERR.
    Prepare,
    /// Column definitions until an EOF: COM_FIELD_LIST.
    FieldList,
    /// One string: COM_STATISTICS.
    Statistics,
    /// One OK, EOF or ERR.
    Single,
}

/// Where in the answer the next packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    First,
    Columns { left: u64 },
    ColumnsEof,
    Rows,
    PrepareParams { left: u16, columns: u16 },
    PrepareParamsEof { columns: u16 },
    PrepareColumns { left: u16 },
    PrepareColumnsEof,
    FieldList,
    Done,
}

/// A packet the answer cannot have at this point, or one shorter than its fields.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnswerError {
    #[error("{0}")]
    Truncated(#[from] Truncated),
    #[error("the target asked for the client's file {0:?}, which no rule lets this statement send (LOAD DATA LOCAL)")]
    LocalFile(String),
    #[error("the target describes more than {MAX_COLUMNS} columns")]
    TooManyColumns,
}

/// What the relay does with a packet.
pub(crate) enum Step {
    Forward,
    /// The client gets this payload instead (a masked row).
    Rewrite(Vec<u8>),
}

/// A prepared statement as the target described it.
#[derive(Clone, Debug, Default)]
pub(crate) struct PrepareOk {
    pub id: u32,
    pub params: u16,
    pub columns: Vec<Column>,
}

/// One command's answer as it arrives.
pub(crate) struct Answer<'m> {
    expect: Expect,
    phase: Phase,
    binary: bool,
    capabilities: u32,
    columns: Vec<Column>,
    rows: RecordedRows,
    rows_bytes: usize,
    n_rows: u64,
    max_rows: usize,
    masks: Option<&'m SessionMasks>,
    row_masks: Option<RowMasks<'m>>,
    started: Instant,
    /// What the statement's execution answers, for the result's record: its statement id.
    statement: Option<u32>,
    /// A prepare's outcome, once it is known.
    pub prepared: Option<PrepareOk>,
    /// The columns of a cursor the execution opened (its rows come by fetches).
    pub cursor: Option<Vec<Column>>,
    /// Which of the result's tables are base tables, for column masking.
    base: BaseTables,
    /// Whether the tables of the result's columns were asked for, and the row masks made.
    looked_up: bool,
    row_masks_made: bool,
    /// The client's file the statement may send (a `LOAD DATA LOCAL` a rule allows).
    local_file: Option<String>,
    /// The file the target asked for, once it has: the client's packets come next.
    pub local_file_asked: Option<String>,
    /// The result's column types and whether each is unsigned, for its binary rows.
    row_types: Vec<u8>,
    row_unsigned: Vec<bool>,
}

/// The rows a result's record keeps, as the JSON text of their array's elements: written as they
/// come rather than built up as values and copied into the record at the end.
#[derive(Default)]
struct RecordedRows {
    json: Vec<u8>,
    count: usize,
    /// Where the last row began, to take it back when it could not be read whole.
    last: usize,
}

impl RecordedRows {
    /// Where the next row's JSON goes.
    fn next(&mut self) -> &mut Vec<u8> {
        self.last = self.json.len();
        if self.count > 0 {
            self.json.push(b',');
        }
        self.count += 1;
        &mut self.json
    }

    fn drop_last(&mut self) {
        self.json.truncate(self.last);
        self.count -= 1;
    }

    fn clear(&mut self) {
        self.json.clear();
        self.count = 0;
    }
}

impl<'m> Answer<'m> {
    /// `columns`: for fetched rows, the cursor's columns (known from its execution).
    pub fn new(expect: Expect, capabilities: u32, max_rows: usize, masks: Option<&'m SessionMasks>, columns: Vec<Column>) -> Answer<'m> {
        let (phase, binary) = match expect {
            Expect::Results { binary } => (Phase::First, binary),
            Expect::Rows => (Phase::Rows, true),
            Expect::FieldList => (Phase::FieldList, false),
            Expect::Prepare | Expect::Statistics | Expect::Single => (Phase::First, false),
        };
        let mut answer = Answer {
            expect,
            phase,
            binary,
            capabilities,
            columns,
            rows: RecordedRows::default(),
            rows_bytes: 0,
            n_rows: 0,
            max_rows,
            masks,
            row_masks: None,
            started: Instant::now(),
            statement: None,
            prepared: None,
            cursor: None,
            base: BaseTables::default(),
            looked_up: false,
            row_masks_made: false,
            local_file: None,
            local_file_asked: None,
            row_types: Vec::new(),
            row_unsigned: Vec::new(),
        };
        answer.row_masks_made = answer.masks.is_none();
        answer
    }

    /// The (schema, table) pairs the result's columns name that column masking must know to be
    /// base tables or not, before the rows come; empty when there is nothing to ask.
    pub fn tables_to_look_up(&self) -> Vec<(String, String)> {
        let before_rows = self.phase == Phase::ColumnsEof || (self.expect == Expect::Rows && !self.row_masks_made);
        if !self.masks.is_some_and(SessionMasks::has_column_rules) {
            return Vec::new();
        }
        if !before_rows || self.looked_up {
            return Vec::new();
        }
        let mut wanted: Vec<(String, String)> = Vec::new();
        for column in &self.columns {
            let pair = (column.schema.clone(), column.original_table.clone());
            if !column.original_table.is_empty() && !self.base.is_base(&pair.0, &pair.1) && !wanted.contains(&pair) {
                wanted.push(pair);
            }
        }
        wanted
    }

    /// What the catalog said of the tables [`Answer::tables_to_look_up`] named.
    pub fn looked_up(&mut self, base: BaseTables) {
        self.base = base;
        self.looked_up = true;
    }

    fn make_row_masks(&mut self) {
        if !self.row_masks_made {
            self.row_masks = self.masks.and_then(|m| RowMasks::new(m, &self.columns, &self.base));
            self.row_masks_made = true;
        }
    }

    /// Names the prepared statement an execution or fetch runs, for the result's record.
    pub fn for_statement(mut self, id: u32) -> Answer<'m> {
        self.statement = Some(id);
        self
    }

    /// Lets the target ask for `file`, the one file of the client's the statement may send.
    pub fn with_local_file(mut self, file: Option<String>) -> Answer<'m> {
        self.local_file = file;
        self
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Takes one payload of the answer; pushes the events it ends.
    pub fn on_payload(&mut self, payload: &[u8], events: &mut Vec<Event>) -> Result<Step, AnswerError> {
        match self.phase {
            Phase::First => self.first(payload, events),
            Phase::Columns { left } => {
                self.columns.push(Column::parse(payload)?);
                self.phase = if left > 1 { Phase::Columns { left: left - 1 } } else { Phase::ColumnsEof };
                Ok(Step::Forward)
            }
            Phase::ColumnsEof => {
                let status = eof_status(payload)?;
                if self.binary && status & CURSOR_EXISTS != 0 {
                    // The rows wait on the server until fetched.
                    let n = self.columns.len();
                    events.push(self.event(format!("cursor opened ({n} columns)")).with_attr("cursor", true));
                    self.cursor = Some(std::mem::take(&mut self.columns));
                    self.phase = Phase::Done;
                } else {
                    self.make_row_masks();
                    self.phase = Phase::Rows;
                }
                Ok(Step::Forward)
            }
            Phase::Rows => self.row(payload, events),
            Phase::PrepareParams { left, columns } => {
                Column::parse(payload)?;
                self.phase = if left > 1 { Phase::PrepareParams { left: left - 1, columns } } else { Phase::PrepareParamsEof { columns } };
                Ok(Step::Forward)
            }
            Phase::PrepareParamsEof { columns } => {
                eof_status(payload)?;
                self.phase = if columns > 0 { Phase::PrepareColumns { left: columns } } else { self.prepared_event(events) };
                Ok(Step::Forward)
            }
            Phase::PrepareColumns { left } => {
                let column = Column::parse(payload)?;
                if let Some(prepared) = &mut self.prepared {
                    prepared.columns.push(column);
                }
                self.phase = if left > 1 { Phase::PrepareColumns { left: left - 1 } } else { Phase::PrepareColumnsEof };
                Ok(Step::Forward)
            }
            Phase::PrepareColumnsEof => {
                eof_status(payload)?;
                self.phase = self.prepared_event(events);
                Ok(Step::Forward)
            }
            Phase::FieldList => {
                match answer::kind(payload) {
                    answer::Kind::Eof => {
                        let n = self.columns.len();
                        let mut event = self.event(format!("{n} columns"));
                        event = with_columns(event, &self.columns, &RecordedRows::default(), self.masks);
                        events.push(event);
                        self.phase = Phase::Done;
                    }
                    answer::Kind::Err => return Ok(self.error(payload, events)?),
                    _ if self.columns.len() as u64 >= MAX_COLUMNS => return Err(AnswerError::TooManyColumns),
                    _ => self.columns.push(Column::parse(payload)?),
                }
                Ok(Step::Forward)
            }
            // A target that sends after its answer ended: the relay reads it as the next answer's.
            Phase::Done => Ok(Step::Forward),
        }
    }

    fn first(&mut self, payload: &[u8], events: &mut Vec<Event>) -> Result<Step, AnswerError> {
        match self.expect {
            Expect::Statistics => {
                events.push(self.event(String::from_utf8_lossy(payload).into_owned()));
                self.phase = Phase::Done;
                return Ok(Step::Forward);
            }
            Expect::Prepare if payload.first() == Some(&0x00) => {
                let mut fields = Fields::new(payload);
                fields.u8("prepare OK header")?;
                let id = fields.uint(4, "statement id")? as u32;
                let columns = fields.uint(2, "column count")? as u16;
                let params = fields.uint(2, "parameter count")? as u16;
                self.prepared = Some(PrepareOk { id, params, columns: Vec::new() });
                self.phase = match (params, columns) {
                    (0, 0) => self.prepared_event(events),
                    (0, columns) => Phase::PrepareColumns { left: columns },
                    (params, columns) => Phase::PrepareParams { left: params, columns },
                };
                return Ok(Step::Forward);
            }
            _ => {}
        }
        match answer::kind(payload) {
            answer::Kind::Ok => {
                let ok = OkPacket::parse(payload, self.capabilities)?;
                events.push(self.ok_event(&ok));
                self.phase = if ok.status & MORE_RESULTS_EXIST != 0 { Phase::First } else { Phase::Done };
            }
            answer::Kind::Err => return Ok(self.error(payload, events)?),
            answer::Kind::Eof if self.expect == Expect::Single => {
                events.push(self.event("EOF".into()));
                self.phase = Phase::Done;
            }
            _ if matches!(self.expect, Expect::Single | Expect::Prepare) => {
                return Err(AnswerError::Truncated(Truncated { what: "OK or ERR", at: 0, length: payload.len() }));
            }
            _ if payload.first() == Some(&0xFB) => {
                // The client's file, by the name the statement gave it; its statement's OK or
                // ERR comes after the file.
                let asked = String::from_utf8_lossy(&payload[1..]).into_owned();
                if self.local_file.as_deref() != Some(asked.as_str()) {
                    return Err(AnswerError::LocalFile(asked));
                }
                self.local_file_asked = Some(asked);
                return Ok(Step::Forward);
            }
            _ => {
                let count = Fields::new(payload).lenenc("column count")?.unwrap_or(0);
                if count > MAX_COLUMNS {
                    return Err(AnswerError::TooManyColumns);
                }
                self.columns.clear();
                self.row_types.clear();
                // A new result set: its own columns, tables and masks.
                self.looked_up = false;
                self.row_masks = None;
                self.row_masks_made = self.masks.is_none();
                self.phase = if count == 0 { Phase::ColumnsEof } else { Phase::Columns { left: count } };
            }
        }
        Ok(Step::Forward)
    }

    fn row(&mut self, payload: &[u8], events: &mut Vec<Event>) -> Result<Step, AnswerError> {
        match answer::kind(payload) {
            answer::Kind::Eof => {
                let mut fields = Fields::new(payload);
                fields.u8("EOF header")?;
                let warnings = fields.uint(2, "warnings")? as u16;
                let status = fields.uint(2, "status")? as u16;
                let n = self.n_rows;
                let mut event = self.event(format!("{n} rows")).with_attr("rows", n).with_attr("rows_recorded", self.rows.count);
                if self.rows_bytes > MAX_ROWS_BYTES {
                    event = event.with_attr("rows_cut", "the rows recorded stop where the next would pass 1 MiB");
                }
                if warnings > 0 {
                    event = event.with_attr("warnings", warnings);
                }
                if let Some(counts) = self.row_masks.as_mut().and_then(RowMasks::take_counts) {
                    event = event.with_attr("masked", counts);
                }
                event = with_columns(event, &self.columns, &self.rows, self.masks);
                events.push(event);
                self.rows.clear();
                self.row_types.clear();
                self.rows_bytes = 0;
                self.n_rows = 0;
                self.started = Instant::now();
                // Fetched rows end with their EOF; a statement's results go on while more exist.
                self.phase = if self.expect != Expect::Rows && status & MORE_RESULTS_EXIST != 0 { Phase::First } else { Phase::Done };
                return Ok(Step::Forward);
            }
            answer::Kind::Err => return Ok(self.error(payload, events)?),
            _ => {}
        }
        self.n_rows += 1;
        self.make_row_masks();
        // A row that would take the record past its bytes is counted, not kept (nor any after it).
        let record = self.rows.count < self.max_rows && self.rows_bytes + payload.len() <= MAX_ROWS_BYTES;
        if !record && self.rows.count < self.max_rows {
            self.rows_bytes = MAX_ROWS_BYTES + 1;
        }
        if let Some(masks) = &mut self.row_masks {
            let masked = if self.binary { masks.binary_row(payload, &self.columns, record)? } else { masks.text_row(payload, record)? };
            if let Some(row) = masked.recorded {
                self.rows_bytes += payload.len();
                serde_json::to_writer(self.rows.next(), &row).expect("JSON values serialize");
            }
            return Ok(match masked.client {
                Some(rewritten) => Step::Rewrite(rewritten),
                None => Step::Forward,
            });
        }
        if record {
            self.rows_bytes += payload.len();
            if self.binary {
                if self.row_types.len() != self.columns.len() {
                    self.row_types = self.columns.iter().map(|c| c.column_type).collect();
                    self.row_unsigned = self.columns.iter().map(|c| c.flags & UNSIGNED_FLAG != 0).collect();
                }
                let json = self.rows.next();
                if let Err(e) = write_binary_row_json(payload, &self.row_types, &self.row_unsigned, json) {
                    self.rows.drop_last();
                    return Err(e.into());
                }
            } else {
                let values = text_row(payload, self.columns.len())?;
                write_text_row_json(&values, self.rows.next());
            }
        }
        Ok(Step::Forward)
    }

    fn prepared_event(&mut self, events: &mut Vec<Event>) -> Phase {
        if let Some((id, params, columns)) = self.prepared.as_ref().map(|p| (p.id, p.params, p.columns.len())) {
            let summary = format!("prepared as statement {id}: {params} parameters, {columns} columns");
            let event = self.event(summary).with_attr("statement", id).with_attr("params", params).with_attr("columns", columns);
            events.push(event);
        }
        Phase::Done
    }

    /// A result event, with the time since the command (or the previous result) and the statement.
    fn event(&mut self, summary: String) -> Event {
        let mut event = Event::note(kind::MYSQL_RESULT, Direction::Response, clip(&summary))
            .with_attr("duration_us", self.started.elapsed().as_micros() as u64);
        if let Some(id) = self.statement {
            event = event.with_attr("statement", id);
        }
        self.started = Instant::now();
        event
    }

    fn ok_event(&mut self, ok: &OkPacket) -> Event {
        let mut summary = format!("OK, {} rows affected", ok.affected_rows);
        if ok.last_insert_id != 0 {
            summary.push_str(&format!(", last insert id {}", ok.last_insert_id));
        }
        if ok.warnings > 0 {
            summary.push_str(&format!(", {} warnings", ok.warnings));
        }
        let mut event = self.event(summary).with_attr("affected_rows", ok.affected_rows).with_attr("warnings", ok.warnings);
        if ok.last_insert_id != 0 {
            event = event.with_attr("last_insert_id", ok.last_insert_id);
        }
        if !ok.info.is_empty() {
            event = event.with_attr("info", ok.info.clone());
        }
        event
    }

    /// An ERR: its event, and the payload the client gets instead when masking changed its
    /// message (a duplicate key's value, quoted).
    fn error(&mut self, payload: &[u8], events: &mut Vec<Event>) -> Result<Step, Truncated> {
        let mut err = ErrPacket::parse(payload)?;
        let mut step = Step::Forward;
        let mut counts = None;
        if let Some(masks) = self.masks {
            let mut found = MaskCounts::default();
            if let Some(masked) = masks.text(Stage::Client, err.message.as_bytes(), &mut found) {
                err.message = String::from_utf8_lossy(&masked).into_owned();
                step = Step::Rewrite(err.to_payload());
            }
            if let Some(masked) = masks.text(Stage::RecordingOnly, err.message.as_bytes(), &mut found) {
                err.message = String::from_utf8_lossy(&masked).into_owned();
            }
            counts = counts_json(masks, &mut found);
        }
        let summary = format!("ERROR {} ({}): {}", err.code, err.sql_state, err.message);
        let mut event =
            self.event(summary).with_attr("error", json!({ "code": err.code, "sql_state": err.sql_state, "message": err.message }));
        if let Some(counts) = counts {
            event = event.with_attr("masked", counts);
        }
        if self.n_rows > 0 {
            event = event.with_attr("rows", self.n_rows);
        }
        events.push(event);
        self.phase = Phase::Done;
        Ok(step)
    }
}

/// The status of an EOF packet.
fn eof_status(payload: &[u8]) -> Result<u16, Truncated> {
    let mut fields = Fields::new(payload);
    if fields.u8("EOF header")? != 0xFE {
        return Err(Truncated { what: "EOF packet", at: 0, length: payload.len() });
    }
    fields.uint(2, "warnings")?;
    Ok(fields.uint(2, "status")? as u16)
}

/// The columns and recorded rows as the event's JSON payload.
fn with_columns(mut event: Event, columns: &[Column], rows: &RecordedRows, masks: Option<&SessionMasks>) -> Event {
    // An expression's column is named after its text (`SELECT '4111…'`): names are read by the
    // detectors too.
    let mut found = MaskCounts::default();
    let mut name = |text: &str| match masks.and_then(|m| crate::mask::text_for_recording(m, text.as_bytes(), &mut found)) {
        Some(masked) => String::from_utf8_lossy(&masked).into_owned(),
        None => text.to_string(),
    };
    let columns: Vec<Value> = columns
        .iter()
        .map(|c| {
            let mut shown = json!({ "name": name(&c.name), "type": c.column_type });
            if !c.original_table.is_empty() {
                shown["table"] = json!(c.original_table);
            }
            if !c.original_name.is_empty() && c.original_name != c.name {
                shown["column"] = json!(name(&c.original_name));
            }
            shown
        })
        .collect();
    event.payload_type = PayloadType::Json;
    let mut payload = Vec::with_capacity(rows.json.len() + 64 * columns.len() + 32);
    payload.extend_from_slice(br#"{"columns":"#);
    serde_json::to_writer(&mut payload, &columns).expect("JSON values serialize");
    payload.extend_from_slice(br#","rows":["#);
    payload.extend_from_slice(&rows.json);
    payload.extend_from_slice(b"]}");
    event.payload = payload;
    event
}

/// A summary cut to a line's worth.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 200;
    let line = text.lines().next().unwrap_or("");
    if line.len() <= MAX && line.len() == text.len() {
        return text.to_string();
    }
    let mut end = MAX.min(line.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::wire::put_lenenc_bytes;

    fn column(name: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        for part in ["def", "app", "customers", "customers", name, name] {
            put_lenenc_bytes(&mut out, part.as_bytes());
        }
        out.extend_from_slice(&[0x0C, 45, 0, 0, 1, 0, 0, 0xFD, 0, 0, 0, 0, 0]);
        out.to_vec()
    }

    const EOF: [u8; 5] = [0xFE, 0, 0, 0x02, 0];

    #[test]
    fn the_target_may_ask_only_for_the_file_the_statement_may_send() {
        let ask = |allowed: Option<&str>, asked: &[u8]| {
            let mut answer =
                Answer::new(Expect::Results { binary: false }, 0, 1, None, Vec::new()).with_local_file(allowed.map(String::from));
            let mut request = vec![0xFB];
            request.extend_from_slice(asked);
            let mut events = Vec::new();
            let step = answer.on_payload(&request, &mut events).map(|_| answer.local_file_asked.clone());
            (step, answer, events)
        };
        assert!(matches!(ask(None, b"/etc/passwd").0, Err(AnswerError::LocalFile(f)) if f == "/etc/passwd"));
        assert!(matches!(ask(Some("people.csv"), b"/etc/passwd").0, Err(AnswerError::LocalFile(_))));
        let (asked, mut answer, mut events) = ask(Some("people.csv"), b"people.csv");
        assert_eq!(asked.unwrap().as_deref(), Some("people.csv"));
        // The statement's own OK comes once the file has ended.
        assert!(!answer.is_done());
        answer.on_payload(&[0x00, 3, 0, 0x02, 0, 0, 0], &mut events).unwrap();
        assert!(answer.is_done());
        assert_eq!(events[0].attrs["affected_rows"], 3);
    }

    #[test]
    fn a_text_result_ends_at_its_eof_and_records_its_rows() {
        let mut answer = Answer::new(Expect::Results { binary: false }, 0, 1, None, Vec::new());
        let mut events = Vec::new();
        for payload in [vec![2], column("id"), column("email"), EOF.to_vec(), b"\x011\x03a@b".to_vec(), b"\x012\xfb".to_vec()] {
            answer.on_payload(&payload, &mut events).unwrap();
            assert!(!answer.is_done());
        }
        answer.on_payload(&EOF, &mut events).unwrap();
        assert!(answer.is_done());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].summary, "2 rows");
        assert_eq!(events[0].attrs["rows_recorded"], 1, "the cap");
        let payload: Value = serde_json::from_slice(&events[0].payload).unwrap();
        assert_eq!(payload["rows"], json!([["1", "a@b"]]));
        assert_eq!(payload["columns"][1], json!({"name": "email", "table": "customers", "type": 0xFD}));
    }

    #[test]
    fn more_results_keep_the_answer_open() {
        let mut answer = Answer::new(Expect::Results { binary: false }, 0x200, 10, None, Vec::new());
        let mut events = Vec::new();
        answer.on_payload(&[0, 1, 0, 0x0A, 0, 0, 0], &mut events).unwrap();
        assert!(!answer.is_done(), "MORE_RESULTS_EXIST");
        answer.on_payload(&[0xFF, 0x7A, 0x04, b'#', b'4', b'2', b'S', b'0', b'2', b'n', b'o'], &mut events).unwrap();
        assert!(answer.is_done());
        assert_eq!(events[0].summary, "OK, 1 rows affected");
        assert_eq!(events[1].summary, "ERROR 1146 (42S02): no");
    }

    #[test]
    fn a_prepare_reads_its_definitions() {
        let mut answer = Answer::new(Expect::Prepare, 0, 10, None, Vec::new());
        let mut events = Vec::new();
        answer.on_payload(&[0, 7, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0], &mut events).unwrap();
        for payload in [column("?"), column("?"), EOF.to_vec(), column("email")] {
            answer.on_payload(&payload, &mut events).unwrap();
            assert!(!answer.is_done());
        }
        answer.on_payload(&EOF, &mut events).unwrap();
        assert!(answer.is_done());
        let prepared = answer.prepared.unwrap();
        assert_eq!((prepared.id, prepared.params, prepared.columns.len()), (7, 2, 1));
        assert_eq!(events[0].summary, "prepared as statement 7: 2 parameters, 1 columns");
    }
}
