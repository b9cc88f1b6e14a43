//! The field encodings inside MySQL payloads: fixed-size little-endian integers,
//! length-encoded integers and strings, NUL-terminated strings. [`Fields`] reads them from a
//! peer's payload and says where a payload ends early instead of panicking; the `put_*`
//! functions write them.

use bytes::{BufMut, BytesMut};

/// A payload shorter than its fields say, or a field that cannot be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a {what} runs past the end of a {length}-byte payload, at byte {at}")]
pub struct Truncated {
    pub what: &'static str,
    pub at: usize,
    pub length: usize,
}

/// A cursor over one payload's fields.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    payload: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    pub fn new(payload: &'a [u8]) -> Fields<'a> {
        Fields { payload, at: 0 }
    }

    fn truncated(&self, what: &'static str) -> Truncated {
        Truncated { what, at: self.at, length: self.payload.len() }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.payload[self.at..]
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.payload.len()
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.payload.len()).ok_or_else(|| self.truncated(what))?;
        let bytes = &self.payload[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Truncated> {
        Ok(self.bytes(1, what)?[0])
    }

    /// A little-endian unsigned integer of `n` bytes (at most 8).
    pub fn uint(&mut self, n: usize, what: &'static str) -> Result<u64, Truncated> {
        let bytes = self.bytes(n, what)?;
        Ok(bytes.iter().rev().fold(0, |value, b| value << 8 | u64::from(*b)))
    }

    /// A length-encoded integer; None for 0xFB, which stands for NULL in a text row.
    pub fn lenenc(&mut self, what: &'static str) -> Result<Option<u64>, Truncated> {
        Ok(match self.u8(what)? {
            0xFB => None,
            0xFC => Some(self.uint(2, what)?),
            0xFD => Some(self.uint(3, what)?),
            0xFE => Some(self.uint(8, what)?),
            small => Some(u64::from(small)),
        })
    }

    /// A length-encoded string; None for NULL.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, Truncated> {
        match self.lenenc(what)? {
            None => Ok(None),
            Some(length) => {
                let length = usize::try_from(length).map_err(|_| self.truncated(what))?;
                self.bytes(length, what).map(Some)
            }
        }
    }

    /// Bytes up to a NUL, which is read past.
    pub fn nul_terminated(&mut self, what: &'static str) -> Result<&'a [u8], Truncated> {
        let end = self.rest().iter().position(|b| *b == 0).ok_or_else(|| self.truncated(what))?;
        let bytes = &self.payload[self.at..self.at + end];
        self.at += end + 1;
        Ok(bytes)
    }

    /// Bytes up to a NUL or the end of the payload (some fields may omit their NUL at the end).
    pub fn nul_or_end(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        self.at += (end + 1).min(rest.len());
        &rest[..end]
    }
}

pub fn put_lenenc(out: &mut BytesMut, value: u64) {
    match value {
        0..=0xFA => out.put_u8(value as u8),
        0xFB..=0xFFFF => {
            out.put_u8(0xFC);
            out.put_u16_le(value as u16);
        }
        0x1_0000..=0xFF_FFFF => {
            out.put_u8(0xFD);
            out.put_uint_le(value, 3);
        }
        _ => {
            out.put_u8(0xFE);
            out.put_u64_le(value);
        }
    }
}

pub fn put_lenenc_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_lenenc(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn put_nul_terminated(out: &mut BytesMut, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_encoded_integers_round_trip() {
        for value in [0, 250, 251, 0xFFFF, 0x1_0000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut out = BytesMut::new();
            put_lenenc(&mut out, value);
            assert_eq!(Fields::new(&out).lenenc("n"), Ok(Some(value)), "{value}");
        }
        assert_eq!(Fields::new(&[0xFB]).lenenc("n"), Ok(None));
    }

    #[test]
    fn short_payloads_are_errors_not_panics() {
        assert!(Fields::new(&[0xFC, 1]).lenenc("n").is_err());
        assert!(Fields::new(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).lenenc_bytes("s").is_err());
        assert!(Fields::new(b"no nul").nul_terminated("s").is_err());
        let mut fields = Fields::new(b"plugin");
        assert_eq!(fields.nul_or_end(), b"plugin");
        assert!(fields.is_empty());
    }
}
