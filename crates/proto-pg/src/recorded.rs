//! A value as a recording shows it: a parameter of an execution or a cell of a result row, by
//! its format and type. Text stays text, binary values are decoded by their type, and anything
//! long is cut. This is the recording's view only; what the client gets is never changed here.

use serde_json::Value;

use crate::binary;

/// One value shown in a recording is cut at this many bytes.
const MAX_VALUE_BYTES: usize = 8 << 10;

/// A parameter or column value as recorded: text format as text (as `\x` hex when it is not
/// UTF-8); binary format decoded by its type (`binary::decode`: a number as a number, a time as
/// its text, an array as an array), as hex when witness does not know the type; NULL as null.
/// Text is cut at [`MAX_VALUE_BYTES`] (marked `…`); a binary value over it is shown as hex, cut.
pub(crate) fn value(bytes: Option<&[u8]>, format: i16, type_oid: u32) -> Value {
    let Some(bytes) = bytes else { return Value::Null };
    let text_like = format == 0 || binary::is_text(type_oid) || type_oid == binary::JSONB;
    let bytes = match (format, type_oid, bytes) {
        // Binary jsonb: a version byte, then the JSON text.
        (1, binary::JSONB, [1, json @ ..]) => json,
        _ => bytes,
    };
    let shown = &bytes[..bytes.len().min(MAX_VALUE_BYTES)];
    let cut = if shown.len() < bytes.len() { "…" } else { "" };
    if !text_like && cut.is_empty() {
        if let Some(decoded) = binary::decode(type_oid, bytes) {
            return decoded;
        }
    }
    // One allocation per value: this runs for every parameter and every recorded cell.
    let mut text = match std::str::from_utf8(shown) {
        Ok(text) if text_like => String::with_capacity(text.len() + cut.len()) + text,
        _ => format!("\\x{}", hex::encode(shown)),
    };
    text.push_str(cut);
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn binary_values_are_decoded_by_their_type() {
        assert_eq!(value(Some(b"name 7"), 1, binary::TEXT), json!("name 7"));
        assert_eq!(value(Some(b"\0\0\0\x07"), 1, binary::INT4), json!(7));
        assert_eq!(value(Some(b"dcba"), 1, binary::INT4), json!(1684234849), "a number, not the text its bytes spell");
        assert_eq!(value(Some(b"dcba"), 1, 0), json!("\\x64636261"), "a binary value of a type witness does not know");
        assert_eq!(value(Some(b"\x01{}"), 1, binary::JSONB), json!("{}"));
        assert_eq!(value(Some(b"plain"), 0, 0), json!("plain"));
        assert_eq!(value(None, 0, 0), Value::Null);
    }
}
