//! Masking on the wire: DataRow values, notice and error texts, and COPY rows, rewritten so the
//! protocol stays valid (the same columns and rows; a value that cannot hold a marker becomes
//! NULL). Which values are masked, and how, is the masking rules' business (`witness_policy::mask`);
//! this module knows the messages and the types.
//!
//! Values go through two stages: what the client gets, then what only the recording gets. The
//! recording is made from the second stage's output, so no original of a masked value is kept.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use witness_policy::mask::{ColumnInfo, ColumnMask, ColumnSource, MaskCounts, Masked, SessionMasks, Stage, ValueKind};

use crate::catalog::{Catalog, TableNames};
use crate::codec::{DecodeError, Fields};
use crate::record::ToClient;

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
    /// Per column: its mask, how its values sit, and their format.
    columns: Vec<(ColumnMask, Shape, i16)>,
    /// The result's columns are not known (an execution of a statement witness saw no description
    /// of): with column rules in force, every value is masked.
    blind: bool,
}

/// The catalog entries a [`Plan`] was made from: per table, its names then (None: not known).
#[derive(Debug, Default)]
pub(crate) struct Consulted(Vec<(u32, Option<Arc<TableNames>>)>);

/// How a value of a column sits in its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Plain,
    /// Binary jsonb: a version byte, then JSON text.
    JsonbBinary,
    /// A binary bigint: looked into as its decimal text (a card number fits in one).
    Int8Binary,
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

const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const BPCHAR: u32 = 1042;
const NAME: u32 = 19;
const UNKNOWN: u32 = 705;
const XML: u32 = 142;
const JSON: u32 = 114;
const JSONB: u32 = 3802;
const INT8: u32 = 20;
const BOOL: u32 = 16;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const TEXT_ARRAY: u32 = 1009;
const VARCHAR_ARRAY: u32 = 1015;
/// OIDs from here on are types created in the database (enums, domains, citext): clients read
/// them as text.
const FIRST_USER_OID: u32 = 16384;

/// How a value of a type in a format may be rewritten.
fn kind(type_oid: u32, format: i16) -> (ValueKind, Shape) {
    let texty = matches!(type_oid, TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN | XML);
    match (format, type_oid) {
        (0, JSON | JSONB) => (ValueKind::Json, Shape::Plain),
        (0, TEXT_ARRAY | VARCHAR_ARRAY) => (ValueKind::Text, Shape::Plain),
        (0, oid) if texty || oid >= FIRST_USER_OID => (ValueKind::Text, Shape::Plain),
        // At most 10 digits and a sign, or t/f: nothing any detector finds fits (a card number
        // needs 13 digits, the other numbers separators), so detectors need not look.
        (0, BOOL | INT2 | INT4 | OID) => (ValueKind::Opaque, Shape::Plain),
        (0, _) => (ValueKind::Other, Shape::Plain),
        (_, JSON) => (ValueKind::Json, Shape::Plain),
        (_, JSONB) => (ValueKind::Json, Shape::JsonbBinary),
        (_, INT8) => (ValueKind::Other, Shape::Int8Binary),
        (_, _) if texty => (ValueKind::Text, Shape::Plain),
        _ => (ValueKind::Opaque, Shape::Plain),
    }
}

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
        for (i, (mask, shape, column_format)) in plan.columns.iter_mut().enumerate() {
            let format = match formats.len() {
                0 => 0,
                1 => formats[0],
                _ => formats.get(i).copied().unwrap_or(0),
            };
            let (kind, new_shape) = kind(columns.get(i).map_or(0, |c| c.type_oid), format);
            *mask = mask.with_kind(kind);
            *shape = new_shape;
            *column_format = format;
        }
        plan
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
            plan.columns.push((self.masks.column(&info), shape, column.format));
        }
        (plan, consulted)
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
            let (mask, shape, format) = plan.columns.get(i).copied().unwrap_or((ColumnMask::default(), Shape::Plain, 0));
            // Integers, booleans and OIDs without a column rule: two calls a value saved.
            let left_alone = mask.leaves_alone();
            // Only detectors can change the value (no column rule, read as it is sent).
            let detected_only = !blind && !left_alone && !mask.is_whole() && shape == Shape::Plain;
            let known_clean = detected_only && raw.is_some_and(|value| self.known_clean(i, value));
            let client_masked = match raw {
                None => Masked::Unchanged,
                Some(_) if blind => Masked::Null,
                Some(_) if left_alone || known_clean => Masked::Unchanged,
                Some(value) => self.cell(Stage::Client, &mask, shape, value),
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
                rewritten.put_u8(b'D');
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
                        match self.cell(Stage::RecordingOnly, &mask, shape, value) {
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
                recorded.push(crate::record::value(kept.as_deref(), format));
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

    fn cell(&mut self, stage: Stage, mask: &ColumnMask, shape: Shape, value: &[u8]) -> Masked {
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
            Shape::Int8Binary => {
                let Ok(bytes) = <[u8; 8]>::try_from(value) else { return Masked::Null };
                let text = i64::from_be_bytes(bytes).to_string();
                match self.masks.cell(stage, mask, text.as_bytes(), &mut self.counts) {
                    Masked::Unchanged => Masked::Unchanged,
                    // A number holds no marker.
                    Masked::Null | Masked::Value(_) => Masked::Null,
                }
            }
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
                b'S' | b'V' | b'C' | b'F' | b'L' | b'R' => None,
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
                started.put_u8(b'd');
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
