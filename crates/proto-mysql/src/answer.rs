//! The server's answers to a command: OK (affected rows, last insert id, status, warnings),
//! ERR (code, SQL state, message), EOF, and the column definitions that open a result set. Read
//! from the target's payloads, whose fields can be shorter than they claim.

use crate::handshake::capability;
use crate::wire::{Fields, Truncated};

/// An OK packet (or the OK that ends a result set when `DEPRECATE_EOF` is on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: String,
}

/// An ERR packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    /// Five characters, e.g. `42S02`; empty when the server gave none.
    pub sql_state: String,
    pub message: String,
}

/// A result set's column, as the server describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Column {
    pub schema: String,
    /// The table as the query names it (an alias), and the table it really is.
    pub table: String,
    pub original_table: String,
    /// The column as the result names it (an alias), and the column it really is.
    pub name: String,
    pub original_name: String,
    pub charset: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
}

/// The status flag a server sets while more result sets of the same command follow.
pub const MORE_RESULTS_EXIST: u16 = 0x0008;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What kind of answer a payload is, by its first byte (and length, for EOF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ok,
    Err,
    /// An EOF packet (0xFE with fewer than 9 bytes); with `DEPRECATE_EOF` an OK in its place.
    Eof,
    /// 0xFE with more: an auth switch during login, or a row starting with a long string.
    Other,
}

pub fn kind(payload: &[u8]) -> Kind {
    match payload.first() {
        Some(0x00) => Kind::Ok,
        Some(0xFF) => Kind::Err,
        Some(0xFE) if payload.len() < 9 => Kind::Eof,
        _ => Kind::Other,
    }
}

impl OkPacket {
    /// An OK packet, or an EOF-marked OK that ends a result set; `capabilities` are the agreed ones.
    pub fn parse(payload: &[u8], capabilities: u32) -> Result<OkPacket, Truncated> {
        let mut fields = Fields::new(payload);
        fields.u8("OK header")?;
        let affected_rows = fields.lenenc("affected rows")?.unwrap_or(0);
        let last_insert_id = fields.lenenc("last insert id")?.unwrap_or(0);
        let (mut status, mut warnings) = (0, 0);
        if capabilities & capability::PROTOCOL_41 != 0 {
            status = fields.uint(2, "status")? as u16;
            warnings = fields.uint(2, "warnings")? as u16;
        }
        let info = if capabilities & capability::SESSION_TRACK != 0 {
            fields.lenenc_bytes("info").ok().flatten().map(text).unwrap_or_default()
        } else {
            text(fields.rest())
        };
        Ok(OkPacket { affected_rows, last_insert_id, status, warnings, info })
    }
}

impl ErrPacket {
    pub fn parse(payload: &[u8]) -> Result<ErrPacket, Truncated> {
        let mut fields = Fields::new(payload);
        fields.u8("ERR header")?;
        let code = fields.uint(2, "error code")? as u16;
        let mut sql_state = String::new();
        if fields.rest().first() == Some(&b'#') {
            fields.u8("SQL state marker")?;
            sql_state = text(fields.bytes(5, "SQL state")?);
        }
        Ok(ErrPacket { code, sql_state, message: text(fields.rest()) })
    }

    /// The payload of this error, as witness sends its own refusals.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut payload = vec![0xFF];
        payload.extend_from_slice(&self.code.to_le_bytes());
        payload.push(b'#');
        // Exactly five bytes, as the client reads them: `HY000` (general error) where none fits.
        let mut state = *b"HY000";
        if self.sql_state.len() == 5 && self.sql_state.is_ascii() {
            state.copy_from_slice(self.sql_state.as_bytes());
        }
        payload.extend_from_slice(&state);
        payload.extend_from_slice(self.message.as_bytes());
        payload
    }
}

impl Column {
    pub fn parse(payload: &[u8]) -> Result<Column, Truncated> {
        let mut fields = Fields::new(payload);
        let mut string = |what| -> Result<String, Truncated> { Ok(text(fields.lenenc_bytes(what)?.unwrap_or_default())) };
        let _catalog = string("catalog")?;
        let schema = string("schema")?;
        let table = string("table")?;
        let original_table = string("original table")?;
        let name = string("name")?;
        let original_name = string("original name")?;
        fields.lenenc("fixed fields length")?;
        Ok(Column {
            schema,
            table,
            original_table,
            name,
            original_name,
            charset: fields.uint(2, "character set")? as u16,
            length: fields.uint(4, "column length")? as u32,
            column_type: fields.u8("column type")?,
            flags: fields.uint(2, "column flags")? as u16,
            decimals: fields.u8("decimals")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_and_answers_are_told_apart() {
        let err = ErrPacket { code: 1142, sql_state: "42000".into(), message: "DROP command denied by witness".into() };
        let payload = err.to_payload();
        assert_eq!(kind(&payload), Kind::Err);
        assert_eq!(ErrPacket::parse(&payload), Ok(err));
        assert_eq!(kind(&[0xFE, 0, 0, 2, 0]), Kind::Eof);
        assert_eq!(kind(&[0xFE, 1, 2, 3, 4, 5, 6, 7, 8, 9]), Kind::Other);
        let ok = OkPacket::parse(&[0, 3, 0, 2, 0, 1, 0], capability::PROTOCOL_41).unwrap();
        assert_eq!((ok.affected_rows, ok.status, ok.warnings), (3, 2, 1));
        assert!(OkPacket::parse(&[0, 0xFC], capability::PROTOCOL_41).is_err());
    }
}
