//! Masking on the wire: DataRow values, notice and error texts, and COPY rows, rewritten so the
//! protocol stays valid (the same columns and rows; a value that cannot hold a marker becomes
//! NULL). Which values are masked, and how, is the masking rules' business (`witness_mask`);
//! this module knows the messages and the types.
//!
//! Values go through two stages: what the client gets, then what only the recording gets. The
//! recording is made from the second stage's output, so no original of a masked value is kept.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use witness_mask::{ColumnInfo, ColumnMask, ColumnSource, MaskCounts, Masked, SessionMasks, Stage, ValueKind};

use crate::catalog::{Catalog, TableNames, MAX_VIEW_DEPTH};
use crate::codec::{backend, error_field, DecodeError, Fields};
use crate::recorded;
use crate::to_client::ToClient;

/// A result column, from a RowDescription.
#[derive(Clone, Debug)]
pub(crate) struct Column {
    /// Shared: an execution of a described statement copies its columns, which must not cost
    /// an allocation per column.
    pub name: Arc<str>,
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub format: i16,
}

/// How each column of the result being received is masked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    columns: Vec<Planned>,
    /// The result's columns are not known (an execution of a statement witness saw no description
    /// of): with column rules in force, every value is masked.
    blind: bool,
}

/// One column of a [`Plan`]: its mask, how its values sit, their format and type.
#[derive(Clone, Copy, Debug, Default)]
struct Planned {
    mask: ColumnMask,
    shape: Shape,
    format: i16,
    type_oid: u32,
}

/// The catalog entries a [`Plan`] was made from: per table, its names then (None: not known).
#[derive(Debug, Default)]
pub(crate) struct Consulted(Vec<(u32, Option<Arc<TableNames>>)>);

/// How a value of a column sits in its message, and so how masking reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Shape {
    /// As it is: text, JSON, or bytes scanned as they are.
    #[default]
    Plain,
    /// Binary jsonb: a version byte, then JSON text.
    JsonbBinary,
    /// A binary number wide enough to hold a card number (int8, money, float8, numeric): looked
    /// into as its decimal digits.
    Digits,
    /// A binary array or record: looked into element by element, numbers as their digits.
    Structured,
    /// Text-format bytea (`\x` and hex): looked into as the bytes it stands for.
    ByteaText,
    /// A binary value of a type witness cannot read: NULL wherever masking looks.
    Unreadable,
}

/// A session's masking, as its relay uses it.
pub(crate) struct WireMasks {
    pub masks: Arc<SessionMasks>,
    pub catalog: Arc<Catalog>,
    /// What was masked in the result (or message) being received, for its event.
    pub counts: MaskCounts,
    /// Per result column (by position), the last value in which no stage's detectors found
    /// anything. Detectors run per session, not per column, so what they find depends on a
    /// value's bytes alone: a value equal to it is clean too and is not scanned again. Columns
    /// often repeat a few values (a status, a country, "none on file").
    clean: Vec<Vec<u8>>,
}

/// Values up to this long are remembered as clean (see `WireMasks::clean`): a repeated value is
/// almost always a short one.
const MAX_REMEMBERED_LEN: usize = 64;

/// What a DataRow became.
pub(crate) struct MaskedRow {
    /// Whether anything changed for the client: the row the client gets instead is then in the
    /// [`ToClient`] buffer.
    pub rewritten: bool,
    /// The row as recorded (when asked for).
    pub recorded: Option<Vec<Value>>,
}

/// How a value of a type in a format may be rewritten.
fn kind(type_oid: u32, format: i16) -> (ValueKind, Shape) {
    use crate::binary::*;
    let texty = matches!(type_oid, TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN | XML);
    match (format, type_oid) {
        (0, JSON | JSONB) => (ValueKind::Json, Shape::Plain),
        (0, TEXT_ARRAY | VARCHAR_ARRAY) => (ValueKind::Text, Shape::Plain),
        (0, oid) if texty || oid >= FIRST_USER_OID => (ValueKind::Text, Shape::Plain),
        // At most 10 digits and a sign, or t/f: nothing any detector finds fits (a card number
        // needs 13 digits, the other numbers separators), so detectors need not look.
        (0, BOOL | INT2 | INT4 | OID) => (ValueKind::Opaque, Shape::Plain),
        (0, BYTEA) => (ValueKind::Other, Shape::ByteaText),
        (0, _) => (ValueKind::Other, Shape::Plain),
        (_, JSON) => (ValueKind::Json, Shape::Plain),
        (_, JSONB) => (ValueKind::Json, Shape::JsonbBinary),
        (_, _) if texty => (ValueKind::Text, Shape::Plain),
        (_, INT8 | MONEY | FLOAT8 | NUMERIC) => (ValueKind::Other, Shape::Digits),
        // Fixed-size numbers, times and identifiers: too few digits for a detector, no text.
        (_, BOOL | INT2 | INT4 | OID | FLOAT4 | DATE | TIME | TIMESTAMP | TIMESTAMPTZ | INTERVAL | UUID) => {
            (ValueKind::Opaque, Shape::Plain)
        }
        (_, INET | CIDR | MACADDR | MACADDR8 | TIMETZ | TID | XID | CID | PG_LSN) => (ValueKind::Opaque, Shape::Plain),
        (_, oid) if is_regtype(oid) => (ValueKind::Opaque, Shape::Plain),
        (_, BYTEA) => (ValueKind::Other, Shape::Plain),
        (_, oid) if oid == RECORD || array_element(oid).is_some() => (ValueKind::Other, Shape::Structured),
        // Types made in the database: enums, citext and domains over text send their text;
        // composites are records. Read as records where they are, else as the bytes they are.
        (_, oid) if oid >= FIRST_USER_OID => (ValueKind::Other, Shape::Structured),
        _ => (ValueKind::Other, Shape::Unreadable),
    }
}

const TEXT_ARRAY: u32 = 1009;
const VARCHAR_ARRAY: u32 = 1015;

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && !self.blind
    }

    /// A plan for rows whose columns witness does not know.
    pub fn blind() -> Plan {
        Plan { columns: Vec::new(), blind: true }
    }

    /// The same columns in other formats (an execution's Bind asks for its own).
    pub fn with_formats(&self, columns: &[Column], formats: &[i16]) -> Plan {
        let mut plan = self.clone();
        for (i, planned) in plan.columns.iter_mut().enumerate() {
            let format = match formats.len() {
                0 => 0,
                1 => formats[0],
                _ => formats.get(i).copied().unwrap_or(0),
            };
            let (kind, shape) = kind(columns.get(i).map_or(0, |c| c.type_oid), format);
            planned.mask = planned.mask.with_kind(kind);
            planned.shape = shape;
            planned.format = format;
        }
        plan
    }
}

/// What a value of `shape` stands for, as text masking can read: a binary number's digits, an
/// array's or record's elements one per line, a text-format bytea's bytes. None when the bytes do
/// not fit the type.
fn readable_text(shape: Shape, type_oid: u32, value: &[u8]) -> Option<Vec<u8>> {
    use crate::binary::{self, FIRST_USER_OID, FLOAT8, NUMERIC, RECORD};
    match shape {
        Shape::Digits => match type_oid {
            FLOAT8 => binary::float8_text(value).map(String::into_bytes),
            NUMERIC => binary::numeric(value).map(String::into_bytes),
            _ => Some(i64::from_be_bytes(value.try_into().ok()?).to_string().into_bytes()),
        },
        Shape::ByteaText => match value.strip_prefix(b"\\x") {
            Some(hex) => hex::decode(hex).ok(),
            // The escape output format shows printable bytes as they are.
            None => Some(value.to_vec()),
        },
        Shape::Structured => {
            let decoded =
                binary::decode(type_oid, value).or_else(|| (type_oid >= FIRST_USER_OID).then(|| binary::decode(RECORD, value)).flatten());
            match decoded {
                Some(decoded) => {
                    let mut text = Vec::with_capacity(value.len());
                    binary::flatten(&decoded, &mut text);
                    Some(text)
                }
                // An enum, citext or domain over text sends its text.
                None if type_oid >= FIRST_USER_OID => Some(value.to_vec()),
                None => None,
            }
        }
        Shape::Plain | Shape::JsonbBinary | Shape::Unreadable => Some(value.to_vec()),
    }
}

/// A text-format COPY line with every field NULL.
fn null_fields(content: &[u8]) -> Vec<u8> {
    let n_fields = content.iter().filter(|&&b| b == b'\t').count() + 1;
    vec![b"\\N".as_slice(); n_fields].join(&b'\t')
}

impl WireMasks {
    pub fn new(masks: Arc<SessionMasks>, catalog: Arc<Catalog>) -> WireMasks {
        WireMasks { masks, catalog, counts: MaskCounts::default(), clean: Vec::new() }
    }

    /// Whether `value`, in column `i`, equals the last value found clean there.
    fn known_clean(&self, i: usize, value: &[u8]) -> bool {
        self.clean.get(i).is_some_and(|clean| clean.as_slice() == value)
    }

    fn remember_clean(&mut self, i: usize, value: &[u8]) {
        if value.len() > MAX_REMEMBERED_LEN {
            return;
        }
        if self.clean.len() <= i {
            self.clean.resize_with(i + 1, Vec::new);
        }
        let clean = &mut self.clean[i];
        clean.clear();
        clean.extend_from_slice(value);
    }

    /// Tables of a RowDescription whose names are needed and not known yet.
    pub fn tables_to_look_up(&self, columns: &[Column]) -> Vec<u32> {
        if !self.masks.has_column_rules() {
            return Vec::new();
        }
        self.catalog.missing(columns.iter().map(|c| c.table_oid))
    }

    /// The plan for a result's columns, and the catalog entries it was made from. Names come from
    /// the catalog cache (looked up beforehand); a table it does not know counts as matching every
    /// table pattern.
    pub fn plan(&self, columns: &[Column]) -> (Plan, Consulted) {
        let mut plan = Plan { columns: Vec::with_capacity(columns.len()), blind: false };
        let mut consulted = Consulted::default();
        for column in columns {
            let names = (column.table_oid != 0 && self.masks.has_column_rules()).then(|| self.catalog.table(column.table_oid));
            if let Some(names) = &names {
                if !consulted.0.iter().any(|(oid, _)| *oid == column.table_oid) {
                    consulted.0.push((column.table_oid, names.clone()));
                }
            }
            let (kind, shape) = kind(column.type_oid, column.format);
            let source = names
                .as_ref()
                .and_then(|n| n.as_ref())
                .and_then(|table| Some(ColumnSource { schema: &table.schema, table: &table.table, column: table.column(column.attnum)? }));
            let source_unknown = names.is_some() && source.is_none();
            let info = ColumnInfo { output_name: &column.name, source, source_unknown, kind };
            let mut mask = self.masks.column(&info);
            if source_unknown {
                // A table (or column) witness could not name: any column rule may be about it.
                mask = mask.or(self.masks.any_column(kind));
            }
            if let Some(Some(view)) = &names {
                if !view.reads.is_empty() {
                    mask = mask.or(self.view_mask(view, kind, &mut consulted));
                }
            }
            plan.columns.push(Planned { mask, shape, format: column.format, type_oid: column.type_oid });
        }
        (plan, consulted)
    }

    /// How every column of a view is masked: whole where a rule masks any column it reads,
    /// through views of views (a table witness cannot name, or views deeper than it follows,
    /// count as matching every column rule).
    fn view_mask(&self, view: &TableNames, kind: ValueKind, consulted: &mut Consulted) -> ColumnMask {
        let mut mask = ColumnMask::default().with_kind(kind);
        let mut level = view.reads.clone();
        for _ in 0..MAX_VIEW_DEPTH {
            let mut next = Vec::new();
            for (oid, attnum) in level {
                let names = self.catalog.table(oid);
                if !consulted.0.iter().any(|(known, _)| *known == oid) {
                    consulted.0.push((oid, names.clone()));
                }
                match names {
                    None => return mask.or(self.masks.any_column(kind)),
                    Some(table) if !table.reads.is_empty() => next.extend(table.reads.iter().copied()),
                    Some(table) => {
                        let Some(column) = table.column(attnum) else { return mask.or(self.masks.any_column(kind)) };
                        let source = ColumnSource { schema: &table.schema, table: &table.table, column };
                        let info = ColumnInfo { output_name: column, source: Some(source), source_unknown: false, kind };
                        mask = mask.or(self.masks.column(&info));
                    }
                }
            }
            if next.is_empty() {
                return mask;
            }
            next.sort_unstable();
            next.dedup();
            level = next;
        }
        mask.or(self.masks.any_column(kind))
    }

    /// Whether the catalog still says what a plan was made from (an entry is asked again once
    /// it is a minute old, and a table witness did not know may be known now).
    pub fn is_current(&self, consulted: &Consulted) -> bool {
        consulted.0.iter().all(|(oid, names)| match (self.catalog.table(*oid), names) {
            (Some(now), Some(then)) => Arc::ptr_eq(&now, then),
            (None, None) => true,
            _ => false,
        })
    }

    /// Masks one DataRow; a row that changes for the client is written to `client`. `record`
    /// asks for the row as the recording keeps it.
    pub fn row(&mut self, plan: &Plan, body: &[u8], record: bool, client: &mut ToClient<'_>) -> Result<MaskedRow, DecodeError> {
        let mut f = Fields::new(body);
        let n = f.count()?;
        // The client's buffer, and where the rewritten row starts in it. The bytes of `body` up to
        // `copied` are in it: unchanged values go across in one piece up to the next change.
        let mut out: Option<(&mut BytesMut, usize)> = None;
        let mut copied = 0;
        let mut recorded = record.then(|| Vec::with_capacity(n.min(1024)));
        let blind = plan.blind && self.masks.has_column_rules();
        let detects_for_recording = self.masks.detects(Stage::RecordingOnly);
        for i in 0..n {
            let start = body.len() - f.remaining().len();
            let raw = f.nullable()?;
            let Planned { mask, shape, format, type_oid } = plan.columns.get(i).copied().unwrap_or_default();
            // Integers, booleans and OIDs without a column rule: two calls a value saved.
            let left_alone = mask.leaves_alone();
            // Only detectors can change the value (no column rule, read as it is sent).
            let detected_only = !blind && !left_alone && !mask.is_whole() && shape == Shape::Plain;
            let known_clean = detected_only && raw.is_some_and(|value| self.known_clean(i, value));
            let client_masked = match raw {
                None => Masked::Unchanged,
                Some(_) if blind => Masked::Null,
                Some(_) if left_alone || known_clean => Masked::Unchanged,
                Some(value) => self.cell(Stage::Client, &mask, shape, type_oid, value),
            };
            let client_value: Option<&[u8]> = match &client_masked {
                Masked::Unchanged => raw,
                Masked::Null => None,
                Masked::Value(v) => Some(v),
            };
            let changed = !matches!(client_masked, Masked::Unchanged);
            if changed && out.is_none() {
                // The first change: the row goes to the client's buffer from here on.
                let rewritten = client.rewrite();
                let row_start = rewritten.len();
                rewritten.reserve(body.len() + 64);
                rewritten.put_u8(backend::DATA_ROW);
                rewritten.put_i32(0);
                out = Some((rewritten, row_start));
            }
            if let Some((out, _)) = out.as_mut().filter(|_| changed) {
                out.put_slice(&body[copied..start]);
                match client_value {
                    None => out.put_i32(-1),
                    Some(v) => {
                        out.put_i32(v.len() as i32);
                        out.put_slice(v);
                    }
                }
                copied = body.len() - f.remaining().len();
            }
            // Whether the recording-only stage has nothing to change in the value: true when it
            // has no detectors, else only once it has looked and found nothing.
            let mut clean_for_recording = !detects_for_recording;
            if let Some(recorded) = &mut recorded {
                // Borrowed unless the recording-only stage changes the value: no copy per cell.
                let kept: Option<std::borrow::Cow<'_, [u8]>> = match client_value {
                    Some(value) if !left_alone && !known_clean && (detects_for_recording || mask.is_whole_at(Stage::RecordingOnly)) => {
                        match self.cell(Stage::RecordingOnly, &mask, shape, type_oid, value) {
                            Masked::Unchanged => {
                                clean_for_recording = true;
                                Some(value.into())
                            }
                            Masked::Null => None,
                            Masked::Value(v) => Some(v),
                        }
                    }
                    other => other.map(Into::into),
                };
                recorded.push(recorded::value(kept.as_deref(), format, type_oid));
            }
            // Remembered only once every stage has looked and found nothing.
            if let Some(value) = raw.filter(|_| detected_only && !known_clean && !changed && clean_for_recording) {
                self.remember_clean(i, value);
            }
        }
        let rewritten = out.is_some();
        if let Some((out, row_start)) = out {
            out.put_slice(&body[copied..]);
            let len = (out.len() - row_start - 1) as i32;
            out[row_start + 1..row_start + 5].copy_from_slice(&len.to_be_bytes());
        }
        Ok(MaskedRow { rewritten, recorded })
    }

    fn cell(&mut self, stage: Stage, mask: &ColumnMask, shape: Shape, type_oid: u32, value: &[u8]) -> Masked {
        match shape {
            Shape::Plain => self.masks.cell(stage, mask, value, &mut self.counts),
            Shape::JsonbBinary => match value.split_first() {
                Some((&version, json)) => match self.masks.cell(stage, mask, json, &mut self.counts) {
                    Masked::Value(v) => {
                        let mut with_version = Vec::with_capacity(v.len() + 1);
                        with_version.push(version);
                        with_version.extend_from_slice(&v);
                        Masked::Value(with_version.into())
                    }
                    other => other,
                },
                None => Masked::Unchanged,
            },
            Shape::Digits | Shape::Structured | Shape::ByteaText => {
                // What the value stands for, read as text; anything found there and the whole
                // value goes (it cannot hold a marker).
                let Some(readable) = readable_text(shape, type_oid, value) else { return self.unreadable(stage, mask) };
                match self.masks.cell(stage, &mask.with_kind(ValueKind::Other), &readable, &mut self.counts) {
                    Masked::Unchanged => Masked::Unchanged,
                    Masked::Null | Masked::Value(_) => Masked::Null,
                }
            }
            Shape::Unreadable => self.unreadable(stage, mask),
        }
    }

    /// A value witness cannot read: NULL at a stage that masks anything (it might hold what the
    /// stage masks), as it is at a stage that masks nothing.
    fn unreadable(&mut self, stage: Stage, mask: &ColumnMask) -> Masked {
        if self.masks.detects(stage) || mask.is_whole_at(stage) {
            Masked::Null
        } else {
            Masked::Unchanged
        }
    }

    /// Masks the texts of a NoticeResponse or ErrorResponse (message, detail, hint, context…)
    /// for the client; None when nothing changed.
    pub fn notice(&mut self, tag: u8, body: &[u8]) -> Option<Bytes> {
        let mut out: Option<BytesMut> = None;
        let mut at = 0;
        while at < body.len() && body[at] != 0 {
            let code = body[at];
            let text_start = at + 1;
            let text_end = body[text_start..].iter().position(|&b| b == 0).map_or(body.len(), |p| text_start + p);
            let text = &body[text_start..text_end];
            // Severity and SQLSTATE, file and line are witness's to read, never a user's data.
            let masked = match code {
                error_field::SEVERITY
                | error_field::SEVERITY_NONLOCALIZED
                | error_field::CODE
                | error_field::FILE
                | error_field::LINE
                | error_field::ROUTINE => None,
                _ => self.masks.text(Stage::Client, text, &mut self.counts),
            };
            if let Some(masked) = masked {
                let out = out.get_or_insert_with(|| {
                    let mut out = BytesMut::with_capacity(body.len() + 64);
                    out.put_u8(tag);
                    out.put_i32(0);
                    out.put_slice(&body[..at]);
                    out
                });
                out.put_u8(code);
                out.put_slice(&masked);
                out.put_u8(0);
            } else if let Some(out) = &mut out {
                out.put_slice(&body[at..(text_end + 1).min(body.len())]);
            }
            at = text_end + 1;
        }
        out.map(|mut out| {
            out.put_u8(0);
            let len = (out.len() - 1) as i32;
            out[1..5].copy_from_slice(&len.to_be_bytes());
            out.freeze()
        })
    }

    /// Masks one CopyData of a text or CSV COPY TO: each line's fields (tab-separated in text
    /// format; in CSV the line is one text, and markers hold no comma or quote). COPY rows are not
    /// recorded, so only the client's masks apply. With column rules for the client in force the
    /// columns are not known (the gate refuses COPY TO then; this is for one it could not parse),
    /// and every field of a text-format row becomes NULL.
    pub fn copy_data(&mut self, body: &[u8]) -> Option<Bytes> {
        if !self.masks.masks_client() {
            return None;
        }
        let blind = self.masks.has_client_column_rules();
        let mut out: Option<BytesMut> = None;
        let mut line_start = 0;
        for line in body.split_inclusive(|&b| b == b'\n') {
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            let rewritten = if blind { Some(null_fields(content)) } else { self.copy_fields(content) };
            if rewritten.is_some() && out.is_none() {
                let mut started = BytesMut::with_capacity(body.len() + 64);
                started.put_u8(backend::COPY_DATA);
                started.put_i32(0);
                started.put_slice(&body[..line_start]);
                out = Some(started);
            }
            if let Some(out) = &mut out {
                out.put_slice(rewritten.as_deref().unwrap_or(content));
                out.put_slice(&line[content.len()..]);
            }
            line_start += line.len();
        }
        out.map(|mut out| {
            let len = (out.len() - 1) as i32;
            out[1..5].copy_from_slice(&len.to_be_bytes());
            out.freeze()
        })
    }

    /// One COPY line with what the detectors find in its fields masked; None when nothing is.
    fn copy_fields(&mut self, content: &[u8]) -> Option<Vec<u8>> {
        let mut rewritten: Option<Vec<u8>> = None;
        for field in content.split(|&b| b == b'\t') {
            let masked = self.masks.text(Stage::Client, field, &mut self.counts);
            match (&mut rewritten, masked) {
                (None, None) => {}
                (None, Some(masked)) => {
                    // The first change: the line up to this field, unchanged, then the rest.
                    let offset = field.as_ptr() as usize - content.as_ptr() as usize;
                    let mut line = Vec::with_capacity(content.len() + 32);
                    line.extend_from_slice(&content[..offset]);
                    line.extend_from_slice(&masked);
                    rewritten = Some(line);
                }
                (Some(line), masked) => {
                    line.push(b'\t');
                    line.extend_from_slice(masked.as_deref().unwrap_or(field));
                }
            }
        }
        rewritten
    }

    /// Masks a text for the recording (both stages): parameters, statements, notice texts.
    pub fn for_recording(&mut self, text: &str) -> Option<String> {
        let client = self.masks.text(Stage::Client, text.as_bytes(), &mut self.counts);
        let source = client.as_deref().unwrap_or(text.as_bytes());
        let recording = self.masks.text(Stage::RecordingOnly, source, &mut self.counts);
        recording.or(client).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The counts as an event attribute (`{"pii": {"email": 2}}`), and resets them.
    pub fn take_counts(&mut self) -> Option<Value> {
        if self.counts.is_empty() {
            return None;
        }
        let mut by_rule = Map::new();
        for (rule, what, n) in self.counts.entries(&self.masks) {
            let entry = by_rule.entry(rule.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(counts) = entry {
                counts.insert(what.to_string(), Value::from(n));
            }
        }
        self.counts.clear();
        Some(Value::Object(by_rule))
    }
}
