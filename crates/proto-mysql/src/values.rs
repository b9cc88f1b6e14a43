//! Values as the two protocols carry them, read for the recording and for masking: a text row's
//! length-encoded strings (NULL as 0xFB), and the binary protocol's typed values, in the rows of
//! a prepared statement's result and in the parameters of its execution. Pure; a payload shorter
//! than its fields say is an error, never a panic.

use serde_json::{json, Value};

use crate::wire::{Fields, Truncated};

/// Column types, as column definitions and parameter types name them.
pub mod column_type {
    pub const DECIMAL: u8 = 0x00;
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0A;
    pub const TIME: u8 = 0x0B;
    pub const DATETIME: u8 = 0x0C;
    pub const YEAR: u8 = 0x0D;
    pub const NEWDATE: u8 = 0x0E;
    pub const VARCHAR: u8 = 0x0F;
    pub const BIT: u8 = 0x10;
    pub const JSON: u8 = 0xF5;
    pub const NEWDECIMAL: u8 = 0xF6;
    pub const ENUM: u8 = 0xF7;
    pub const SET: u8 = 0xF8;
    pub const TINY_BLOB: u8 = 0xF9;
    pub const MEDIUM_BLOB: u8 = 0xFA;
    pub const LONG_BLOB: u8 = 0xFB;
    pub const BLOB: u8 = 0xFC;
    pub const VAR_STRING: u8 = 0xFD;
    pub const STRING: u8 = 0xFE;
    pub const GEOMETRY: u8 = 0xFF;
}

/// The column flag that marks an unsigned number; a parameter's type carries it as 0x80.
pub const UNSIGNED_FLAG: u16 = 0x20;
/// The character set number of binary strings (BLOB, BINARY, VARBINARY).
pub const BINARY_CHARSET: u16 = 63;

/// How many bytes a value of this type takes in the binary protocol, when it is fixed; None for
/// the length-encoded and the date and time types.
fn fixed_width(column_type: u8) -> Option<usize> {
    use column_type::*;
    match column_type {
        TINY => Some(1),
        SHORT | YEAR => Some(2),
        LONG | INT24 | FLOAT => Some(4),
        LONGLONG | DOUBLE => Some(8),
        NULL => Some(0),
        _ => None,
    }
}

/// The bytes of one binary-protocol value of `column_type` at the front of `fields`, read past.
pub fn binary_value_bytes<'a>(fields: &mut Fields<'a>, column_type: u8) -> Result<&'a [u8], Truncated> {
    use column_type::*;
    if let Some(width) = fixed_width(column_type) {
        return fields.bytes(width, "binary value");
    }
    match column_type {
        DATE | DATETIME | TIMESTAMP | NEWDATE | TIME => {
            let length = usize::from(fields.u8("date or time length")?);
            let start = fields.rest();
            fields.bytes(length, "date or time")?;
            Ok(&start[..length])
        }
        _ => Ok(fields.lenenc_bytes("binary value")?.unwrap_or_default()),
    }
}

/// One binary-protocol value as the recording shows it: numbers as numbers, dates and times as
/// text, strings as text (or `{"hex": …}` when they are not UTF-8).
pub fn binary_value(fields: &mut Fields<'_>, column_type: u8, unsigned: bool) -> Result<Value, Truncated> {
    use column_type::*;
    let bytes = binary_value_bytes(fields, column_type)?;
    let le = |n: usize| bytes.iter().take(n).rev().fold(0u64, |v, b| v << 8 | u64::from(*b));
    let signed = |n: usize| {
        let shift = 64 - 8 * n as u32;
        ((le(n) << shift) as i64) >> shift
    };
    Ok(match column_type {
        NULL => Value::Null,
        TINY | SHORT | YEAR | LONG | INT24 | LONGLONG => {
            let width = bytes.len();
            if unsigned || column_type == YEAR {
                json!(le(width))
            } else {
                json!(signed(width))
            }
        }
        FLOAT => json!(f32::from_bits(le(4) as u32)),
        DOUBLE => json!(f64::from_bits(le(8))),
        DATE | DATETIME | TIMESTAMP | NEWDATE => Value::String(date_text(bytes)),
        TIME => Value::String(time_text(bytes)),
        _ => text_or_hex(bytes),
    })
}

/// Writes a binary row as the JSON array the recording keeps (as [`binary_row_json`] makes it),
/// straight into `out`: the columns' `types` and whether each is `unsigned`, worked out once per
/// result rather than per row.
pub fn write_binary_row_json(payload: &[u8], types: &[u8], unsigned: &[bool], out: &mut Vec<u8>) -> Result<(), Truncated> {
    let values = binary_row(payload, types)?;
    out.push(b'[');
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match value {
            None => out.extend_from_slice(b"null"),
            Some((start, _)) => {
                let value = binary_value(&mut Fields::new(&payload[start..]), types[i], unsigned.get(i).copied().unwrap_or(false))?;
                serde_json::to_writer(&mut *out, &value).expect("a JSON value serializes");
            }
        }
    }
    out.push(b']');
    Ok(())
}

/// Writes a text row's values as the JSON array the recording keeps: text, `{"hex": …}` for
/// bytes that are not UTF-8, null.
pub fn write_text_row_json(values: &[Option<&[u8]>], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match value.map(|bytes| (bytes, std::str::from_utf8(bytes))) {
            None => out.extend_from_slice(b"null"),
            Some((_, Ok(text))) => serde_json::to_writer(&mut *out, text).expect("a string serializes"),
            Some((bytes, Err(_))) => serde_json::to_writer(&mut *out, &text_or_hex(bytes)).expect("a JSON value serializes"),
        }
    }
    out.push(b']');
}

/// A string value as the recording shows it: text, or `{"hex": …}` for bytes that are not UTF-8.
pub fn text_or_hex(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({ "hex": hex(bytes) }),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYY-MM-DD[ hh:mm:ss[.ffffff]]` from a binary date: 0, 4, 7 or 11 bytes.
fn date_text(bytes: &[u8]) -> String {
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let year = u16::from(at(0)) | u16::from(at(1)) << 8;
    let mut text = format!("{year:04}-{:02}-{:02}", at(2), at(3));
    if bytes.len() >= 7 {
        text.push_str(&format!(" {:02}:{:02}:{:02}", at(4), at(5), at(6)));
    }
    if bytes.len() >= 11 {
        let micros = u32::from_le_bytes([at(7), at(8), at(9), at(10)]);
        text.push_str(&format!(".{micros:06}"));
    }
    text
}

/// `[-][D ]hh:mm:ss[.ffffff]` from a binary time: 0, 8 or 12 bytes.
fn time_text(bytes: &[u8]) -> String {
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let negative = if at(0) == 1 { "-" } else { "" };
    let days = u32::from_le_bytes([at(1), at(2), at(3), at(4)]);
    let day_part = if days > 0 { format!("{days} ") } else { String::new() };
    let mut text = format!("{negative}{day_part}{:02}:{:02}:{:02}", at(5), at(6), at(7));
    if bytes.len() >= 12 {
        let micros = u32::from_le_bytes([at(8), at(9), at(10), at(11)]);
        text.push_str(&format!(".{micros:06}"));
    }
    text
}

/// A text row's values: each a length-encoded string, None for NULL.
pub fn text_row(payload: &[u8], columns: usize) -> Result<Vec<Option<&[u8]>>, Truncated> {
    let mut fields = Fields::new(payload);
    (0..columns).map(|_| fields.lenenc_bytes("row value")).collect()
}

/// A value's place in a binary row's payload, and its bytes; None for NULL.
pub type RowValue<'a> = Option<(usize, &'a [u8])>;

/// A binary row's values: a 0x00 header, a NULL bitmap (offset by 2 bits), then the values of the
/// columns that are not NULL, each as its type says. Returns (the value's bytes or None) per
/// column, with where each value starts in the payload, for rewriting.
pub fn binary_row<'a>(payload: &'a [u8], types: &[u8]) -> Result<Vec<RowValue<'a>>, Truncated> {
    let mut fields = Fields::new(payload);
    fields.u8("row header")?;
    let bitmap = fields.bytes((types.len() + 7 + 2) / 8, "NULL bitmap")?;
    let mut values = Vec::with_capacity(types.len());
    for (i, column_type) in types.iter().enumerate() {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            values.push(None);
            continue;
        }
        let start = payload.len() - fields.rest().len();
        binary_value_bytes(&mut fields, *column_type)?;
        let end = payload.len() - fields.rest().len();
        values.push(Some((start, &payload[start..end])));
    }
    Ok(values)
}

/// A binary row's values as the recording shows them.
pub fn binary_row_json(payload: &[u8], types: &[(u8, bool)]) -> Result<Vec<Value>, Truncated> {
    let only_types: Vec<u8> = types.iter().map(|(t, _)| *t).collect();
    let values = binary_row(payload, &only_types)?;
    values
        .into_iter()
        .zip(types)
        .map(|(value, (column_type, unsigned))| match value {
            None => Ok(Value::Null),
            Some((start, _)) => binary_value(&mut Fields::new(&payload[start..]), *column_type, *unsigned),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::column_type::*;
    use super::*;

    #[test]
    fn binary_values_read_as_their_types_say() {
        let read = |t: u8, unsigned: bool, bytes: &[u8]| binary_value(&mut Fields::new(bytes), t, unsigned).unwrap();
        assert_eq!(read(TINY, false, &[0xFF]), json!(-1));
        assert_eq!(read(TINY, true, &[0xFF]), json!(255));
        assert_eq!(read(LONGLONG, false, &(-5i64).to_le_bytes()), json!(-5));
        assert_eq!(read(LONG, true, &u32::MAX.to_le_bytes()), json!(u32::MAX));
        assert_eq!(read(DOUBLE, false, &1.5f64.to_le_bytes()), json!(1.5));
        assert_eq!(read(VAR_STRING, false, b"\x05hello"), json!("hello"));
        assert_eq!(read(BLOB, false, b"\x02\xff\x00"), json!({"hex": "ff00"}));
        assert_eq!(read(DATETIME, false, &[7, 0xE9, 0x07, 12, 7, 9, 30, 5]), json!("2025-12-07 09:30:05"));
        assert_eq!(read(DATE, false, &[0]), json!("0000-00-00"));
        assert_eq!(read(TIME, false, &[8, 1, 2, 0, 0, 0, 3, 4, 5]), json!("-2 03:04:05"));
        assert!(binary_value(&mut Fields::new(&[4, 1]), DATE, false).is_err(), "a short date is an error");
    }

    #[test]
    fn binary_rows_skip_null_columns() {
        // Three columns: an INT, a NULL string, a string. Bitmap bit 2+1 set.
        let payload = [0x00, 0b0000_1000, 7, 0, 0, 0, 2, b'h', b'i'];
        let values = binary_row(&payload, &[LONG, VAR_STRING, VAR_STRING]).unwrap();
        assert_eq!(values, vec![Some((2, &[7, 0, 0, 0][..])), None, Some((6, &b"\x02hi"[..]))]);
        let shown = binary_row_json(&payload, &[(LONG, false), (VAR_STRING, false), (VAR_STRING, false)]).unwrap();
        assert_eq!(shown, vec![json!(7), Value::Null, json!("hi")]);
        assert!(binary_row(&payload[..5], &[LONG, VAR_STRING, VAR_STRING]).is_err());
    }

    #[test]
    fn text_rows_read_nulls() {
        assert_eq!(text_row(b"\x01a\xfb\x00", 3).unwrap(), vec![Some(&b"a"[..]), None, Some(&b""[..])]);
        assert!(text_row(b"\x05ab", 1).is_err());
    }
}
