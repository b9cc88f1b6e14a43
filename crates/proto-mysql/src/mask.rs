//! Result rows rewritten by the session's masking rules, in the text protocol (length-encoded
//! strings) and the binary one (typed values behind a NULL bitmap). A column is what the
//! target's column definition says: its original table and name, or only the name it has in
//! the result for an expression. A value masked whole keeps its type where it can (text), and
//! becomes NULL where it cannot (numbers, dates). The recording gets the client's values, masked
//! again by the rules for the recording only.

use serde_json::{Map, Value};
use witness_mask::{ColumnInfo, ColumnMask, ColumnSource, MaskCounts, Masked, SessionMasks, Stage, ValueKind};

use crate::answer::Column;
use crate::catalog::BaseTables;
use crate::values::{binary_row, binary_value, column_type, text_or_hex, text_row, BINARY_CHARSET, UNSIGNED_FLAG};
use crate::wire::{put_lenenc_bytes, Fields, Truncated};

/// How a result's columns are masked, and what was masked so far.
pub(crate) struct RowMasks<'a> {
    masks: &'a SessionMasks,
    plan: Vec<ColumnMask>,
    counts: MaskCounts,
}

/// A row after masking: the payload the client gets instead (None: the row as it came), and the
/// values the recording keeps (when asked for).
pub(crate) struct MaskedRow {
    pub client: Option<Vec<u8>>,
    pub recorded: Option<Vec<Value>>,
}

/// What masking may do to a column's values, by its type.
fn value_kind(column: &Column) -> ValueKind {
    use column_type::*;
    match column.column_type {
        JSON => ValueKind::Json,
        VARCHAR | VAR_STRING | STRING | ENUM | SET | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | BLOB => {
            if column.charset == BINARY_CHARSET {
                ValueKind::Opaque
            } else {
                ValueKind::Text
            }
        }
        GEOMETRY | BIT => ValueKind::Opaque,
        _ => ValueKind::Other,
    }
}

impl<'a> RowMasks<'a> {
    /// The masks of a result with these columns; None when no rule or detector can change a value.
    /// A column whose table is not one of `base` (a view's, a temporary table's) may carry any
    /// table's values: it is masked as any column; one of no table (an expression) by its name.
    pub fn new(masks: &'a SessionMasks, columns: &[Column], base: &BaseTables) -> Option<RowMasks<'a>> {
        let plan: Vec<ColumnMask> = columns
            .iter()
            .map(|c| {
                let kind = value_kind(c);
                if c.original_table.is_empty() {
                    return masks.column(&ColumnInfo { output_name: &c.name, source: None, source_unknown: false, kind });
                }
                if !base.is_base(&c.schema, &c.original_table) {
                    return masks.any_column(kind);
                }
                let source = ColumnSource { schema: &c.schema, table: &c.original_table, column: &c.original_name };
                masks.column(&ColumnInfo { output_name: &c.name, source: Some(source), source_unknown: false, kind })
            })
            .collect();
        let detects = masks.detects(Stage::Client) || masks.detects(Stage::RecordingOnly);
        if plan.iter().all(|m| !m.is_whole()) && (!detects || plan.iter().all(ColumnMask::leaves_alone)) {
            return None;
        }
        Some(RowMasks { masks, plan, counts: MaskCounts::default() })
    }

    /// One value through both stages: what the client gets, and what the recording shows.
    fn value(&mut self, column: usize, value: &[u8]) -> (Masked, Option<Masked>) {
        let mask = &self.plan[column];
        if mask.leaves_alone() {
            return (Masked::Unchanged, None);
        }
        let client = self.masks.cell(Stage::Client, mask, value, &mut self.counts);
        let shown: &[u8] = match &client {
            Masked::Unchanged => value,
            Masked::Value(masked) => masked,
            Masked::Null => return (Masked::Null, None),
        };
        let recorded = self.masks.cell(Stage::RecordingOnly, mask, shown, &mut self.counts);
        (client, Some(recorded))
    }

    /// A text row: each value masked, the row rewritten when one changed.
    pub fn text_row(&mut self, payload: &[u8], record: bool) -> Result<MaskedRow, Truncated> {
        let values = text_row(payload, self.plan.len())?;
        let mut out = Vec::with_capacity(payload.len());
        let (mut changed, mut recorded) = (false, Vec::new());
        for (i, value) in values.into_iter().enumerate() {
            let Some(value) = value else {
                out.push(0xFB);
                recorded.push(Value::Null);
                continue;
            };
            let (client, again) = self.value(i, value);
            let sent: Option<Vec<u8>> = match client {
                Masked::Unchanged => Some(value.to_vec()),
                Masked::Value(masked) => {
                    changed = true;
                    Some(masked.into_owned())
                }
                Masked::Null => {
                    changed = true;
                    None
                }
            };
            match &sent {
                Some(bytes) => {
                    let mut field = bytes::BytesMut::new();
                    put_lenenc_bytes(&mut field, bytes);
                    out.extend_from_slice(&field);
                }
                None => out.push(0xFB),
            }
            if record {
                recorded.push(shown(sent.as_deref(), again, text_or_hex));
            }
        }
        Ok(MaskedRow { client: changed.then_some(out), recorded: record.then_some(recorded) })
    }

    /// A binary row: values of string types rewritten in place, others made NULL (their bit set in
    /// the bitmap).
    pub fn binary_row(&mut self, payload: &[u8], columns: &[Column], record: bool) -> Result<MaskedRow, Truncated> {
        let types: Vec<u8> = columns.iter().map(|c| c.column_type).collect();
        let values = binary_row(payload, &types)?;
        let bitmap_len = (types.len() + 7 + 2) / 8;
        let mut bitmap = payload[1..1 + bitmap_len].to_vec();
        let mut body = Vec::with_capacity(payload.len());
        let (mut changed, mut recorded) = (false, Vec::new());
        for (i, value) in values.into_iter().enumerate() {
            let Some((start, bytes)) = value else {
                recorded.push(Value::Null);
                continue;
            };
            let column = &columns[i];
            let unsigned = column.flags & UNSIGNED_FLAG != 0;
            // Strings go to masking as their bytes; other types as their text (what detectors read).
            let text_kind = matches!(value_kind(column), ValueKind::Text | ValueKind::Json | ValueKind::Opaque);
            let as_text = if text_kind {
                Fields::new(bytes).lenenc_bytes("value")?.unwrap_or_default().to_vec()
            } else {
                match binary_value(&mut Fields::new(&payload[start..]), column.column_type, unsigned)? {
                    Value::String(text) => text.into_bytes(),
                    other => other.to_string().into_bytes(),
                }
            };
            let (client, again) = self.value(i, &as_text);
            let mut this_changed = true;
            let sent: Option<Vec<u8>> = match client {
                Masked::Unchanged => {
                    this_changed = false;
                    body.extend_from_slice(bytes);
                    Some(as_text)
                }
                Masked::Value(masked) if text_kind => {
                    let mut field = bytes::BytesMut::new();
                    put_lenenc_bytes(&mut field, &masked);
                    body.extend_from_slice(&field);
                    Some(masked.into_owned())
                }
                Masked::Value(_) | Masked::Null => {
                    let bit = i + 2;
                    bitmap[bit / 8] |= 1 << (bit % 8);
                    None
                }
            };
            changed |= this_changed;
            if record {
                let untouched = !this_changed && matches!(again, None | Some(Masked::Unchanged));
                recorded.push(if untouched {
                    binary_value(&mut Fields::new(&payload[start..]), column.column_type, unsigned)?
                } else {
                    shown(sent.as_deref(), again, text_or_hex)
                });
            }
        }
        let client = changed.then(|| {
            let mut out = Vec::with_capacity(1 + bitmap.len() + body.len());
            out.push(0x00);
            out.extend_from_slice(&bitmap);
            out.extend_from_slice(&body);
            out
        });
        Ok(MaskedRow { client, recorded: record.then_some(recorded) })
    }

    /// The counts as an event attribute (`{"rule": {"email": 2}}`), and resets them.
    pub fn take_counts(&mut self) -> Option<Value> {
        counts_json(self.masks, &mut self.counts)
    }
}

/// What the recording shows of a value the client got as `sent` (None: NULL), masked again for
/// the recording as `again` says.
fn shown(sent: Option<&[u8]>, again: Option<Masked>, text: impl Fn(&[u8]) -> Value) -> Value {
    match (sent, again) {
        (None, _) | (_, Some(Masked::Null)) => Value::Null,
        (Some(_), Some(Masked::Value(masked))) => text(&masked),
        (Some(sent), _) => text(sent),
    }
}

/// A text as the recording keeps it (a statement, a parameter, an error message): masked by the
/// detectors of both stages. None when nothing was found.
pub(crate) fn text_for_recording(masks: &SessionMasks, text: &[u8], counts: &mut MaskCounts) -> Option<Vec<u8>> {
    let client = masks.text(Stage::Client, text, counts);
    let source = client.as_deref().unwrap_or(text);
    masks.text(Stage::RecordingOnly, source, counts).or(client)
}

/// A request's event as the recording keeps it where masking rules apply: its text payload,
/// summary and string parameters masked by the detectors, with what was masked counted.
pub(crate) fn request_event(masks: &SessionMasks, mut event: witness_core::Event) -> witness_core::Event {
    let mut counts = MaskCounts::default();
    if event.payload_type == witness_core::PayloadType::Text {
        if let Some(masked) = text_for_recording(masks, &event.payload, &mut counts) {
            event.payload = masked;
            event.summary = crate::results::clip(&String::from_utf8_lossy(&event.payload));
        }
    } else if event.payload_type == witness_core::PayloadType::Binary {
        // Bytes the detectors cannot read are not kept where masking applies.
        event.payload = Vec::new();
        event.payload_type = witness_core::PayloadType::Empty;
        event = event.with_attr("payload_withheld", true);
    }
    if event.attrs.contains_key("params_unread") {
        event = event.with_attr("params_unread", "witness could not read the parameters (their bytes are not kept where masking applies)");
    }
    if let Some(Value::Array(params)) = event.attrs.get_mut("params") {
        for param in params.iter_mut() {
            if let Value::String(text) = param {
                if let Some(masked) = text_for_recording(masks, text.as_bytes(), &mut counts) {
                    *text = String::from_utf8_lossy(&masked).into_owned();
                }
            }
        }
    }
    if let Some(counts) = counts_json(masks, &mut counts) {
        event = event.with_attr("masked", counts);
    }
    event
}

/// Counts as an event attribute (`{"rule": {"email": 2}}`), and resets them; None for none.
pub(crate) fn counts_json(masks: &SessionMasks, counts: &mut MaskCounts) -> Option<Value> {
    if counts.is_empty() {
        return None;
    }
    let mut by_rule = Map::new();
    for (rule, what, n) in counts.entries(masks) {
        let entry = by_rule.entry(rule.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(counts) = entry {
            counts.insert(what.to_string(), Value::from(n));
        }
    }
    counts.clear();
    Some(Value::Object(by_rule))
}
