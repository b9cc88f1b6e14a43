//! Binary-format values by type, as PostgreSQL's send functions write them: decoded into what the
//! recording keeps (an int4 as a number, a timestamp as its time, an array as an array), and the
//! numbers masking must read as digits (numeric, float8). A type witness does not know, or bytes
//! that do not fit their type, decode to nothing: the caller records them as hex and masking
//! treats them as unreadable.
//!
//! Pure and bounded: no allocation beyond the result, nesting of arrays and records limited.

use serde_json::{Number, Value};

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const CHAR: u32 = 18;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const JSON: u32 = 114;
pub const XML: u32 = 142;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const UNKNOWN: u32 = 705;
pub const MONEY: u32 = 790;
pub const BPCHAR: u32 = 1042;
pub const VARCHAR: u32 = 1043;
pub const DATE: u32 = 1082;
pub const TIME: u32 = 1083;
pub const TIMESTAMP: u32 = 1114;
pub const TIMESTAMPTZ: u32 = 1184;
pub const INTERVAL: u32 = 1186;
pub const NUMERIC: u32 = 1700;
pub const UUID: u32 = 2950;
pub const RECORD: u32 = 2249;
pub const JSONB: u32 = 3802;
pub const TID: u32 = 27;
pub const XID: u32 = 28;
pub const CID: u32 = 29;
pub const CIDR: u32 = 650;
pub const MACADDR8: u32 = 774;
pub const MACADDR: u32 = 829;
pub const INET: u32 = 869;
pub const TIMETZ: u32 = 1266;
pub const PG_LSN: u32 = 3220;
/// OIDs from here on are types created in the database (enums, domains, composites, citext).
pub const FIRST_USER_OID: u32 = 16384;

/// How deep arrays of arrays and records of records are followed.
const MAX_DEPTH: usize = 4;

/// The element type of a built-in array type, when `type_oid` is one.
pub fn array_element(type_oid: u32) -> Option<u32> {
    Some(match type_oid {
        1000 => BOOL,
        1001 => BYTEA,
        1002 => CHAR,
        1003 => NAME,
        1005 => INT2,
        1007 => INT4,
        1009 => TEXT,
        1014 => BPCHAR,
        1015 => VARCHAR,
        1016 => INT8,
        1021 => FLOAT4,
        1022 => FLOAT8,
        1028 => OID,
        199 => JSON,
        143 => XML,
        791 => MONEY,
        1115 => TIMESTAMP,
        1182 => DATE,
        1183 => TIME,
        1185 => TIMESTAMPTZ,
        1187 => INTERVAL,
        1231 => NUMERIC,
        2287 => RECORD,
        2951 => UUID,
        3807 => JSONB,
        _ => return None,
    })
}

/// Whether the type is an OID alias (regclass, regtype, ...): four bytes, an OID.
pub fn is_regtype(type_oid: u32) -> bool {
    matches!(type_oid, 24 | 2202..=2206 | 3734 | 3769 | 4089 | 4096 | 4191)
}

/// Whether the type's binary form is its text (UTF-8 bytes as they are).
pub fn is_text(type_oid: u32) -> bool {
    matches!(type_oid, TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN | XML | JSON | CHAR)
}

/// A binary value of `type_oid` as the recording keeps it; None when witness does not know the
/// type or the bytes do not fit it.
pub fn decode(type_oid: u32, bytes: &[u8]) -> Option<Value> {
    decode_at(type_oid, bytes, 0)
}

fn decode_at(type_oid: u32, bytes: &[u8], depth: usize) -> Option<Value> {
    let value = match type_oid {
        _ if is_text(type_oid) => Value::String(std::str::from_utf8(bytes).ok()?.to_string()),
        JSONB => match bytes.split_first() {
            Some((1, json)) => Value::String(std::str::from_utf8(json).ok()?.to_string()),
            _ => return None,
        },
        BOOL => match bytes {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return None,
        },
        INT2 => Value::from(i16::from_be_bytes(bytes.try_into().ok()?)),
        INT4 => Value::from(i32::from_be_bytes(bytes.try_into().ok()?)),
        INT8 => Value::from(i64::from_be_bytes(bytes.try_into().ok()?)),
        OID => Value::from(u32::from_be_bytes(bytes.try_into().ok()?)),
        FLOAT4 => float(f32::from_be_bytes(bytes.try_into().ok()?) as f64),
        FLOAT8 => float(f64::from_be_bytes(bytes.try_into().ok()?)),
        MONEY => Value::String(format!("{} (cents)", i64::from_be_bytes(bytes.try_into().ok()?))),
        NUMERIC => Value::String(numeric(bytes)?),
        BYTEA => Value::String(format!("\\x{}", hex::encode(bytes))),
        UUID => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            let h = hex::encode(b);
            Value::String(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
        }
        DATE => Value::String(date(i32::from_be_bytes(bytes.try_into().ok()?) as i64)?),
        TIME => Value::String(time_of_day(i64::from_be_bytes(bytes.try_into().ok()?))?),
        TIMESTAMP | TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(bytes.try_into().ok()?);
            let suffix = if type_oid == TIMESTAMPTZ { "+00" } else { "" };
            match micros {
                i64::MAX => Value::String("infinity".into()),
                i64::MIN => Value::String("-infinity".into()),
                _ => {
                    let days = micros.div_euclid(86_400_000_000);
                    Value::String(format!("{} {}{suffix}", date(days)?, time_of_day(micros.rem_euclid(86_400_000_000))?))
                }
            }
        }
        INTERVAL => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            let micros = i64::from_be_bytes(b[..8].try_into().ok()?);
            let days = i32::from_be_bytes(b[8..12].try_into().ok()?);
            let months = i32::from_be_bytes(b[12..].try_into().ok()?);
            Value::String(format!("{months} mons {days} days {micros} us"))
        }
        RECORD if depth < MAX_DEPTH => record(bytes, depth)?,
        _ if depth < MAX_DEPTH && array_element(type_oid).is_some() => array(bytes, depth)?,
        _ => return None,
    };
    Some(value)
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or_else(|| Value::String(x.to_string()), Value::Number)
}

/// A binary array: dimensions, element type, then each element length-prefixed (-1: NULL).
/// Elements are decoded by the element type the array names; one dimension gives a JSON array,
/// more give nested arrays.
fn array(bytes: &[u8], depth: usize) -> Option<Value> {
    let mut r = Reader(bytes);
    let n_dims = r.i32()?;
    let _has_nulls = r.i32()?;
    let element = r.i32()? as u32;
    if !(0..=6).contains(&n_dims) {
        return None;
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let size = usize::try_from(r.i32()?).ok()?;
        let _lower_bound = r.i32()?;
        dims.push(size);
    }
    let total = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|&t| t <= bytes.len() / 4 + 1)?;
    let mut elements = Vec::with_capacity(if n_dims == 0 { 0 } else { total });
    if n_dims > 0 {
        for _ in 0..total {
            elements.push(match r.nullable()? {
                None => Value::Null,
                Some(value) => decode_at(element, value, depth + 1).unwrap_or_else(|| hex_value(value)),
            });
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    // Nest from the innermost dimension out.
    for &size in dims.iter().skip(1).rev() {
        if size == 0 {
            break;
        }
        elements = elements.chunks(size).map(|chunk| Value::Array(chunk.to_vec())).collect();
    }
    Some(Value::Array(elements))
}

/// A binary record: a field count, then per field its type and its length-prefixed value.
fn record(bytes: &[u8], depth: usize) -> Option<Value> {
    let mut r = Reader(bytes);
    let n = usize::try_from(r.i32()?).ok().filter(|&n| n <= bytes.len() / 8 + 1)?;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let type_oid = r.i32()? as u32;
        fields.push(match r.nullable()? {
            None => Value::Null,
            Some(value) => decode_at(type_oid, value, depth + 1).unwrap_or_else(|| hex_value(value)),
        });
    }
    r.0.is_empty().then_some(Value::Array(fields))
}

/// Bytes witness cannot decode, as recorded: `\x` and hex.
pub fn hex_value(bytes: &[u8]) -> Value {
    Value::String(format!("\\x{}", hex::encode(bytes)))
}

/// A binary numeric as decimal text: digit count, weight, sign, display scale, then base-10000
/// digits.
pub fn numeric(bytes: &[u8]) -> Option<String> {
    let mut r = Reader(bytes);
    let n_digits = usize::try_from(r.i16()?).ok()?;
    let weight = r.i16()? as i32;
    let sign = r.i16()? as u16;
    let scale = usize::try_from(r.i16()?).ok()?;
    let mut digits = Vec::with_capacity(n_digits);
    for _ in 0..n_digits {
        let digit = r.i16()?;
        if !(0..10_000).contains(&digit) {
            return None;
        }
        digits.push(digit as u32);
    }
    if !r.0.is_empty() || scale > 1000 || weight.unsigned_abs() > 1000 {
        return None;
    }
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    // The integer part: base-10000 groups from weight down to 0.
    if weight < 0 {
        text.push('0');
    } else {
        for group in 0..=weight {
            let digit = digits.get(group as usize).copied().unwrap_or(0);
            if group == 0 {
                text.push_str(&digit.to_string());
            } else {
                text.push_str(&format!("{digit:04}"));
            }
        }
    }
    if scale > 0 {
        text.push('.');
        let mut fraction = String::new();
        let mut group = weight + 1;
        while fraction.len() < scale {
            let digit = if group < 0 { 0 } else { digits.get(group as usize).copied().unwrap_or(0) };
            fraction.push_str(&format!("{digit:04}"));
            group += 1;
        }
        fraction.truncate(scale);
        text.push_str(&fraction);
    }
    Some(text)
}

/// A float8's digits as masking reads them: integral values as an integer (a 16-digit card
/// number fits a float8 exactly), others as Rust prints them.
pub fn float8_text(bytes: &[u8]) -> Option<String> {
    let x = f64::from_be_bytes(bytes.try_into().ok()?);
    Some(if x.fract() == 0.0 && x.abs() < 1e17 { format!("{x:.0}") } else { x.to_string() })
}

/// Every string and number in a decoded value, one per line: what masking reads of an array or
/// record.
pub fn flatten(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(text) => {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
        Value::Number(n) => {
            out.extend_from_slice(n.to_string().as_bytes());
            out.push(b'\n');
        }
        Value::Array(values) => values.iter().for_each(|v| flatten(v, out)),
        Value::Object(map) => map.values().for_each(|v| flatten(v, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// Days since 2000-01-01 as a date (proleptic Gregorian).
fn date(days_since_2000: i64) -> Option<String> {
    // Civil from days (Howard Hinnant's algorithm), shifted from the Unix epoch.
    let z = days_since_2000.checked_add(10_957)?.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

fn time_of_day(micros: i64) -> Option<String> {
    if !(0..=86_400_000_000).contains(&micros) {
        return None;
    }
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    let text = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    Some(if frac == 0 { text } else { format!("{text}.{frac:06}") })
}

/// A bounds-checked reader of big-endian numbers.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn nullable(&mut self) -> Option<Option<&'a [u8]>> {
        match self.i32()? {
            -1 => Some(None),
            n if n < 0 => None,
            n => self.take(n as usize).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn numeric_bytes(n_digits: i16, weight: i16, sign: u16, scale: i16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [n_digits, weight, sign as i16, scale] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn values_decode_by_their_type() {
        assert_eq!(decode(INT4, b"dcba"), Some(json!(1684234849)), "an int4 is a number, whatever its bytes spell");
        assert_eq!(decode(INT8, &(-7i64).to_be_bytes()), Some(json!(-7)));
        assert_eq!(decode(BOOL, &[1]), Some(json!(true)));
        assert_eq!(decode(TEXT, b"plain"), Some(json!("plain")));
        assert_eq!(decode(JSONB, b"\x01{\"a\":1}"), Some(json!("{\"a\":1}")));
        assert_eq!(decode(BYTEA, b"\0\x07"), Some(json!("\\x0007")));
        assert_eq!(decode(FLOAT8, &1.5f64.to_be_bytes()), Some(json!(1.5)));
        assert_eq!(decode(UUID, &[0x12; 16]), Some(json!("12121212-1212-1212-1212-121212121212")));
        assert_eq!(decode(DATE, &0i32.to_be_bytes()), Some(json!("2000-01-01")));
        assert_eq!(decode(DATE, &(-1i32).to_be_bytes()), Some(json!("1999-12-31")));
        assert_eq!(decode(TIMESTAMPTZ, &(86_400_000_000i64 + 3_723_000_001).to_be_bytes()), Some(json!("2000-01-02 01:02:03.000001+00")));
        assert_eq!(decode(INT4, b"abc"), None, "bytes that do not fit the type");
        assert_eq!(decode(600, b"\0\0"), None, "a type witness does not know");
    }

    #[test]
    fn numerics_read_as_decimal_text() {
        assert_eq!(numeric(&numeric_bytes(2, 0, 0, 2, &[12, 3400])).as_deref(), Some("12.34"));
        assert_eq!(numeric(&numeric_bytes(4, 3, 0, 0, &[4111, 1111, 1111, 1111])).as_deref(), Some("4111111111111111"));
        assert_eq!(numeric(&numeric_bytes(1, -1, 0x4000, 4, &[5])).as_deref(), Some("-0.0005"));
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, 0, &[])).as_deref(), Some("0"));
        assert_eq!(numeric(&numeric_bytes(0, 0, 0xC000, 0, &[])).as_deref(), Some("NaN"));
        assert_eq!(numeric(&numeric_bytes(1, 0, 0, 0, &[10_000])), None);
        assert_eq!(float8_text(&4111111111111111f64.to_be_bytes()).as_deref(), Some("4111111111111111"));
    }

    #[test]
    fn arrays_and_records_decode_element_by_element() {
        let mut array = Vec::new();
        for v in [1i32, 0, TEXT as i32, 2, 1] {
            array.extend_from_slice(&v.to_be_bytes());
        }
        for element in [&b"a@b.c"[..], b"x"] {
            array.extend_from_slice(&(element.len() as i32).to_be_bytes());
            array.extend_from_slice(element);
        }
        assert_eq!(decode(1009, &array), Some(json!(["a@b.c", "x"])));
        let mut record = 2i32.to_be_bytes().to_vec();
        record.extend_from_slice(&(INT4 as i32).to_be_bytes());
        record.extend_from_slice(&4i32.to_be_bytes());
        record.extend_from_slice(&7i32.to_be_bytes());
        record.extend_from_slice(&(TEXT as i32).to_be_bytes());
        record.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(decode(RECORD, &record), Some(json!([7, null])));
        assert_eq!(decode(1009, &array[..array.len() - 1]), None, "a cut array");
    }
}
