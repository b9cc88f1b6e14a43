//! The PostgreSQL wire format (protocol 3.0): framing with a size bound, a cheap "is a whole message
//! here" check before anything is parsed, readers for the fields witness looks at, and builders for
//! the messages witness sends itself.
//!
//! Relayed messages are never re-encoded: witness forwards the bytes it received.

use bytes::{BufMut, BytesMut};

mod tags;

pub use tags::{auth_request, backend, described, encryption, error_field, frontend, transaction};

/// The largest message witness buffers from either side. Bigger ones (rare: a huge bytea value)
/// are refused with an error to that client only.
pub const MAX_MESSAGE_LEN: usize = 64 << 20;
/// The largest startup packet accepted, as PostgreSQL itself bounds it.
pub const MAX_STARTUP_LEN: usize = 10_000;

pub const PROTOCOL_3_0: i32 = 196_608;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// A whole message at the start of a buffer: its type byte and its body (after the length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub tag: u8,
    pub body: &'a [u8],
}

/// What is at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// A whole message of this many bytes (type byte and length included).
    Whole(usize),
    /// More bytes are needed.
    Partial,
    /// The length field is impossible or over [`MAX_MESSAGE_LEN`].
    TooLong(usize),
}

/// Why a message body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message ends inside a field")]
    Short,
    #[error("string is not NUL-terminated")]
    Unterminated,
    #[error("a count or length is negative or too large")]
    BadCount,
}

/// Looks at the start of `buf` without parsing anything.
pub fn peek(buf: &[u8]) -> Peek {
    if buf.len() < 5 {
        return Peek::Partial;
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 || len as usize > MAX_MESSAGE_LEN {
        return Peek::TooLong(len.max(0) as usize);
    }
    let total = 1 + len as usize;
    if buf.len() < total {
        Peek::Partial
    } else {
        Peek::Whole(total)
    }
}

/// The message at the start of `buf`, which [`peek`] said is whole.
pub fn message(buf: &[u8], total: usize) -> Message<'_> {
    Message { tag: buf[0], body: &buf[5..total] }
}

/// A bounds-checked reader over a message body.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, pos: 0 }
    }

    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Short)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        let bytes = self.bytes(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        let bytes = self.bytes(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(DecodeError::Short)?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A NUL-terminated string, without the NUL, as bytes.
    pub fn cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        let rest = &self.buf[self.pos..];
        let nul = rest.iter().position(|&b| b == 0).ok_or(DecodeError::Unterminated)?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    /// A value preceded by an i32 length, -1 meaning NULL.
    pub fn nullable(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.i32()? {
            -1 => Ok(None),
            n if n < 0 => Err(DecodeError::BadCount),
            n => self.bytes(n as usize).map(Some),
        }
    }

    /// A 16-bit count. PostgreSQL reads these as unsigned (a Bind may carry up to 65535
    /// parameters), so witness does too.
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        Ok(self.i16()? as u16 as usize)
    }
}

// === builders for messages witness sends ===

/// Starts a message: writes the tag and a length placeholder; returns where the length goes.
fn begin(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    at
}

fn finish(out: &mut BytesMut, at: usize) {
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, text: &str) {
    // A NUL inside would end the field early; witness's own texts never have one.
    out.put_slice(text.replace('\0', " ").as_bytes());
    out.put_u8(0);
}

/// Severity of an error or notice witness sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Ends the session.
    Fatal,
    /// Fails the current request; the session goes on.
    Error,
    Notice,
}

/// An ErrorResponse ('E') or NoticeResponse ('N') with SQLSTATE, message and optional hint.
pub fn error_response(out: &mut BytesMut, severity: Severity, sqlstate: &str, message: &str, hint: Option<&str>) {
    let (tag, text) = match severity {
        Severity::Fatal => (backend::ERROR_RESPONSE, "FATAL"),
        Severity::Error => (backend::ERROR_RESPONSE, "ERROR"),
        Severity::Notice => (backend::NOTICE_RESPONSE, "NOTICE"),
    };
    let at = begin(out, tag);
    out.put_u8(error_field::SEVERITY);
    put_cstr(out, text);
    out.put_u8(error_field::SEVERITY_NONLOCALIZED);
    put_cstr(out, text);
    out.put_u8(error_field::CODE);
    put_cstr(out, sqlstate);
    out.put_u8(error_field::MESSAGE);
    put_cstr(out, message);
    if let Some(hint) = hint {
        out.put_u8(error_field::HINT);
        put_cstr(out, hint);
    }
    out.put_u8(0);
    finish(out, at);
}

/// An Authentication message ('R') with its code and extra bytes.
pub fn authentication(out: &mut BytesMut, code: i32, extra: &[u8]) {
    let at = begin(out, backend::AUTHENTICATION);
    out.put_i32(code);
    out.put_slice(extra);
    finish(out, at);
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    let at = begin(out, backend::BACKEND_KEY_DATA);
    out.put_i32(pid);
    out.put_i32(secret);
    finish(out, at);
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    let at = begin(out, backend::READY_FOR_QUERY);
    out.put_u8(status);
    finish(out, at);
}

/// A frontend message of type `tag` (password and SASL messages to the target, witness's own
/// queries, a denied request's substitute).
pub fn frontend_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    let at = begin(out, tag);
    out.put_slice(body);
    finish(out, at);
}

/// A StartupMessage (no tag) with the given parameters.
pub fn startup(out: &mut BytesMut, params: &[(&str, &str)]) {
    let at = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_3_0);
    for (key, value) in params {
        put_cstr(out, key);
        put_cstr(out, value);
    }
    out.put_u8(0);
    finish(out, at);
}

/// An untagged request with one code: SSLRequest, or CancelRequest with its key.
pub fn untagged(out: &mut BytesMut, code: i32, key: Option<(i32, i32)>) {
    let at = out.len();
    out.put_i32(0);
    out.put_i32(code);
    if let Some((pid, secret)) = key {
        out.put_i32(pid);
        out.put_i32(secret);
    }
    finish(out, at);
}

/// The key/value parameters of a StartupMessage (after its protocol version), as text.
pub fn parse_startup_params(body: &[u8]) -> Vec<(String, String)> {
    let mut f = Fields::new(body);
    let mut params = Vec::new();
    while let Ok(key) = f.cstr() {
        if key.is_empty() {
            break;
        }
        let Ok(value) = f.cstr() else { break };
        params.push((String::from_utf8_lossy(key).into_owned(), String::from_utf8_lossy(value).into_owned()));
    }
    params
}

/// The fields of an ErrorResponse or NoticeResponse body that witness records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
}

pub fn parse_error_fields(body: &[u8]) -> ErrorFields {
    let mut out = ErrorFields::default();
    let mut fields = Fields::new(body);
    while let Ok(code) = fields.u8() {
        if code == 0 {
            break;
        }
        let Ok(value) = fields.cstr() else { break };
        let value = String::from_utf8_lossy(value).into_owned();
        match code {
            error_field::SEVERITY_NONLOCALIZED => out.severity = value,
            error_field::SEVERITY if out.severity.is_empty() => out.severity = value,
            error_field::CODE => out.sqlstate = value,
            error_field::MESSAGE => out.message = value,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_finds_whole_messages_and_refuses_impossible_lengths() {
        let check = |bytes: &[u8], expect: Peek| assert_eq!(peek(bytes), expect, "{bytes:?}");
        check(b"Q\0\0\0", Peek::Partial);
        check(b"Q\0\0\0\x05", Peek::Partial);
        check(b"Q\0\0\0\x05x", Peek::Whole(6));
        check(b"Q\0\0\0\x05xyz", Peek::Whole(6));
        check(b"Q\0\0\0\x03", Peek::TooLong(3));
        check(b"Q\xff\xff\xff\xff", Peek::TooLong(0));
        check(b"Q\x7f\xff\xff\xff", Peek::TooLong(0x7fff_ffff));
    }

    #[test]
    fn error_responses_round_trip_through_the_field_parser() {
        let mut out = BytesMut::new();
        error_response(&mut out, Severity::Error, "42501", "denied", Some("ask a DBA"));
        let Peek::Whole(total) = peek(&out) else { panic!() };
        assert_eq!(total, out.len());
        let msg = message(&out, total);
        assert_eq!(msg.tag, backend::ERROR_RESPONSE);
        let fields = parse_error_fields(msg.body);
        assert_eq!((fields.severity.as_str(), fields.sqlstate.as_str(), fields.message.as_str()), ("ERROR", "42501", "denied"));
    }

    #[test]
    fn field_reader_checks_every_length() {
        let mut f = Fields::new(b"ab\0\xff\xff\xff\xff\0\0\0\x09xyz");
        assert_eq!(f.cstr().unwrap(), b"ab");
        assert_eq!(f.nullable().unwrap(), None);
        assert_eq!(f.nullable(), Err(DecodeError::Short));
        assert_eq!(Fields::new(b"abc").cstr(), Err(DecodeError::Unterminated));
        assert_eq!(Fields::new(b"\xff\xff").count(), Ok(65535));
    }
}
