//! MySQL packets: a 3-byte little-endian length and a sequence number before each payload. A
//! payload of 2^24 - 1 bytes or more is split into packets of that size and one shorter (perhaps
//! empty) one; [`PacketReader`] joins them again, up to a bound the caller sets, because the length
//! is the peer's to choose.
//!
//! The sequence number counts the packets of one exchange (a command and its answer, or the
//! login), from 0; each side checks the other's and a reader says when one is out of order.

use std::borrow::Cow;

use bytes::{Buf, BufMut, BytesMut};

/// The largest payload one packet carries; a payload this long continues in the next packet.
pub const MAX_PACKET_PAYLOAD: usize = 0xFF_FFFF;

/// A payload and the sequence number of its first packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub sequence: u8,
    pub payload: Vec<u8>,
}

/// Why bytes are not packets a reader accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("a payload of more than {limit} bytes (a peer may send at most that much at once)")]
    TooLong { limit: usize },
    #[error("packet {got} came where packet {expected} of the exchange was due")]
    OutOfOrder { expected: u8, got: u8 },
}

/// Reads packets out of bytes as they arrive, joining split payloads.
#[derive(Debug)]
pub struct PacketReader {
    buffer: BytesMut,
    /// The most bytes one (joined) payload may have.
    limit: usize,
    /// The payload being joined, from packets of the longest size so far.
    joining: Option<Packet>,
    /// The sequence number the next packet must carry, once an exchange has begun.
    expected: Option<u8>,
    /// Whether sequence numbers are checked: not inside compressed packets, where clients
    /// number their packets 0 (libmariadb) and servers do not look.
    ordered: bool,
}

impl PacketReader {
    pub fn new(limit: usize) -> PacketReader {
        PacketReader { buffer: BytesMut::new(), limit, joining: None, expected: None, ordered: true }
    }

    /// Takes bytes read from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Starts a new exchange: the next packet must carry `sequence` (a command: 0; an answer
    /// to a packet of ours numbered n: n + 1).
    pub fn expect(&mut self, sequence: u8) {
        self.expected = Some(sequence);
    }

    /// Stops checking sequence numbers (the packets come inside compressed ones).
    pub fn unordered(&mut self) {
        self.ordered = false;
    }

    /// Takes the bytes not yet read as packets (a payload being joined included), leaving the
    /// reader empty.
    pub fn take_buffered(mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        if let Some(joining) = self.joining.take() {
            // Written again as the packets they came in: full ones, as many as they fill.
            let mut out = BytesMut::new();
            let mut sequence = joining.sequence;
            for chunk in joining.payload.chunks(MAX_PACKET_PAYLOAD) {
                out.put_uint_le(chunk.len() as u64, 3);
                out.put_u8(sequence);
                out.extend_from_slice(chunk);
                sequence = sequence.wrapping_add(1);
            }
            bytes.extend_from_slice(&out);
        }
        bytes.extend_from_slice(&self.buffer);
        bytes
    }

    /// Bytes taken but not yet part of a whole payload.
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.joining.as_ref().map_or(0, |p| p.payload.len())
    }

    /// The next whole payload, if its bytes have all arrived.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, PacketError> {
        loop {
            if self.buffer.len() < 4 {
                return Ok(None);
            }
            let length = usize::from(self.buffer[0]) | usize::from(self.buffer[1]) << 8 | usize::from(self.buffer[2]) << 16;
            let sequence = self.buffer[3];
            let so_far = self.joining.as_ref().map_or(0, |p| p.payload.len());
            if so_far + length > self.limit {
                return Err(PacketError::TooLong { limit: self.limit });
            }
            if let Some(expected) = self.expected.filter(|_| self.ordered) {
                if sequence != expected {
                    return Err(PacketError::OutOfOrder { expected, got: sequence });
                }
            }
            if self.buffer.len() < 4 + length {
                return Ok(None);
            }
            self.buffer.advance(4);
            let part = self.buffer.split_to(length);
            self.expected = Some(sequence.wrapping_add(1));
            let packet = match self.joining.take() {
                Some(mut joined) => {
                    joined.payload.extend_from_slice(&part);
                    joined
                }
                None => Packet { sequence, payload: part.to_vec() },
            };
            if length == MAX_PACKET_PAYLOAD {
                self.joining = Some(packet);
                continue;
            }
            return Ok(Some(packet));
        }
    }
}

/// One whole payload at the front of bytes as they arrived, as a relay forwards it: the bytes
/// its packets take, and the payload, borrowed when it came in one packet.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The bytes of its packets, headers included.
    pub raw_len: usize,
    /// The sequence number of its first packet, and of its last (the same unless it was split).
    pub sequence: u8,
    pub last_sequence: u8,
    pub payload: Cow<'a, [u8]>,
}

/// The whole payload at the front of `bytes`, if all its packets have arrived; an error for one
/// longer than `limit`, said as soon as its headers claim it. Sequence numbers are not checked:
/// a relay forwards them as the peer numbered them, and the other peer checks them.
pub fn peek_frame(bytes: &[u8], limit: usize) -> Result<Option<Frame<'_>>, PacketError> {
    let (mut at, mut total, mut parts) = (0usize, 0usize, 0usize);
    loop {
        let Some(header) = bytes.get(at..at + 4) else { return Ok(None) };
        let length = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        total += length;
        if total > limit {
            return Err(PacketError::TooLong { limit });
        }
        if bytes.len() < at + 4 + length {
            return Ok(None);
        }
        at += 4 + length;
        parts += 1;
        if length < MAX_PACKET_PAYLOAD {
            break;
        }
    }
    let sequence = bytes[3];
    let last_sequence = sequence.wrapping_add((parts - 1) as u8);
    let payload = if parts == 1 {
        Cow::Borrowed(&bytes[4..at])
    } else {
        let mut joined = Vec::with_capacity(total);
        let mut from = 0;
        while from < at {
            let length = usize::from(bytes[from]) | usize::from(bytes[from + 1]) << 8 | usize::from(bytes[from + 2]) << 16;
            joined.extend_from_slice(&bytes[from + 4..from + 4 + length]);
            from += 4 + length;
        }
        Cow::Owned(joined)
    };
    Ok(Some(Frame { raw_len: at, sequence, last_sequence, payload }))
}

/// Appends `payload` as packets numbered from `sequence`, split where it must be; returns the
/// sequence number after the last packet.
pub fn write_packets(out: &mut BytesMut, mut sequence: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let length = rest.len().min(MAX_PACKET_PAYLOAD);
        out.put_uint_le(length as u64, 3);
        out.put_u8(sequence);
        out.extend_from_slice(&rest[..length]);
        sequence = sequence.wrapping_add(1);
        rest = &rest[length..];
        // A payload that fills its last packet exactly ends with an empty one.
        if length < MAX_PACKET_PAYLOAD {
            return sequence;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_out_whole_however_the_bytes_arrive() {
        let mut out = BytesMut::new();
        let next = write_packets(&mut out, 0, b"\x03select 1");
        assert_eq!(next, 1);
        write_packets(&mut out, 1, b"");
        let mut reader = PacketReader::new(1 << 20);
        for byte in &out {
            reader.feed(&[*byte]);
        }
        assert_eq!(reader.next_packet().unwrap(), Some(Packet { sequence: 0, payload: b"\x03select 1".to_vec() }));
        assert_eq!(reader.next_packet().unwrap(), Some(Packet { sequence: 1, payload: Vec::new() }));
        assert_eq!(reader.next_packet().unwrap(), None);
    }

    #[test]
    fn long_payloads_are_split_and_joined() {
        let payload: Vec<u8> = (0..MAX_PACKET_PAYLOAD * 2).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        assert_eq!(write_packets(&mut out, 5, &payload), 8, "two full packets and an empty one");
        let mut reader = PacketReader::new(MAX_PACKET_PAYLOAD * 2);
        reader.feed(&out);
        let packet = reader.next_packet().unwrap().unwrap();
        assert_eq!((packet.sequence, packet.payload.len()), (5, payload.len()));
        assert!(packet.payload == payload);
        // One byte over the bound is refused before it is all read.
        let mut reader = PacketReader::new(MAX_PACKET_PAYLOAD * 2 - 1);
        reader.feed(&out[..1 << 20]);
        reader.feed(&out[1 << 20..]);
        assert_eq!(reader.next_packet(), Err(PacketError::TooLong { limit: MAX_PACKET_PAYLOAD * 2 - 1 }));
    }

    #[test]
    fn frames_are_found_whole_and_split_ones_joined() {
        let mut out = BytesMut::new();
        write_packets(&mut out, 1, b"\x01");
        let long: Vec<u8> = (0..MAX_PACKET_PAYLOAD + 3).map(|i| i as u8).collect();
        write_packets(&mut out, 2, &long);
        let frame = peek_frame(&out, usize::MAX).unwrap().unwrap();
        assert_eq!((frame.raw_len, frame.sequence, &frame.payload[..]), (5, 1, &b"\x01"[..]));
        let rest = &out[5..];
        assert_eq!(peek_frame(&rest[..rest.len() - 1], usize::MAX).unwrap().map(|f| f.raw_len), None, "not all there yet");
        let frame = peek_frame(rest, usize::MAX).unwrap().unwrap();
        assert_eq!((frame.raw_len, frame.sequence, frame.last_sequence), (rest.len(), 2, 3));
        assert!(frame.payload == long);
        assert_eq!(peek_frame(&rest[..8], 1 << 20).unwrap_err(), PacketError::TooLong { limit: 1 << 20 }, "refused on its header");
    }

    #[test]
    fn sequence_numbers_are_checked() {
        let mut out = BytesMut::new();
        write_packets(&mut out, 3, b"x");
        let mut reader = PacketReader::new(64);
        reader.expect(0);
        reader.feed(&out);
        assert_eq!(reader.next_packet(), Err(PacketError::OutOfOrder { expected: 0, got: 3 }));
    }
}
