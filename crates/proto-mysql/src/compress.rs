//! MySQL's compressed protocol on the client's side of witness, for clients that ask for it
//! (`CLIENT_COMPRESS`, from the first packet after the login's OK). Each compressed packet is a
//! 7-byte header (compressed length, its own sequence number, length before compression, 0 when
//! the payload is sent as it is) and a zlib stream of ordinary packets or pieces of them.
//!
//! [`ClientLink`] undoes and does the compression around the client's stream, so that the relay
//! reads and writes ordinary packets whatever the client agreed on. The target's side is never
//! compressed: it is witness's own connection, and what it sends is read before it is passed on.
//! A compressed packet's sequence number follows the last one received, as the server's does.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use witness_gate::Stream;

const HEADER: usize = 7;
/// The most a compressed packet holds, before compression or after.
const MAX_CHUNK: usize = 0xFF_FFFF;
/// Shorter payloads go uncompressed, as MySQL's own server sends them.
const MIN_COMPRESS: usize = 50;
/// The most compressed packets a client may send that the relay has not passed yet (of one
/// command, or read ahead while one is held): a client compresses a command or a flush's worth
/// of bytes at a time, so only one that splits its bytes into tiny packets comes near it.
const MAX_UNPASSED_PACKETS: usize = 1 << 16;

/// The client's connection: as it is, or compressed.
pub(crate) enum ClientLink {
    Plain(Stream),
    Compressed(Box<Compressed>),
}

impl ClientLink {
    pub fn is_compressed(&self) -> bool {
        matches!(self, ClientLink::Compressed(_))
    }

    /// Numbers witness's next compressed packets after the client's compressed packet that
    /// held the last byte the relay has taken, as a server (which reads no further) does. The
    /// relay calls it when it takes a command (or the end of a file), with `unread`, the bytes it
    /// read from this link and still holds: so what a client sends ahead while a command is held
    /// does not change how the answer is numbered.
    pub fn answer_after(&mut self, unread: usize) {
        if let ClientLink::Compressed(compressed) = self {
            let taken = compressed.handed.saturating_sub(unread as u64);
            let unpacked = &mut compressed.unpacker.unpacked;
            while unpacked.len() > 1 && unpacked.front().is_some_and(|(end, _)| *end < taken) {
                unpacked.pop_front();
            }
            if unpacked.capacity() > 1024 && unpacked.len() < unpacked.capacity() / 4 {
                unpacked.shrink_to(unpacked.len() * 2);
            }
            if let Some((_, sequence)) = unpacked.front() {
                compressed.sequence = sequence.wrapping_add(1);
            }
        }
    }

    pub fn new(stream: Stream, compressed: bool) -> ClientLink {
        if compressed {
            ClientLink::Compressed(Box::new(Compressed::new(stream)))
        } else {
            ClientLink::Plain(stream)
        }
    }
}

/// A stream whose bytes cross in compressed packets.
pub(crate) struct Compressed {
    inner: Stream,
    unpacker: Unpacker,
    /// Packets written and not yet compressed.
    pending: Vec<u8>,
    /// Compressed packets not yet written to the client.
    out: BytesMut,
    /// The sequence number of the next compressed packet sent.
    sequence: u8,
    /// Where the client's bytes are read into.
    scratch: Vec<u8>,
    /// The bytes of `plain` handed to the reader so far.
    handed: u64,
}

/// Compressed packets in, the bytes they hold out.
#[derive(Default)]
pub struct Unpacker {
    /// Bytes read, not yet a whole compressed packet.
    raw: BytesMut,
    /// What the packets held, not yet taken.
    pub plain: BytesMut,
    /// Bytes unpacked so far, in all.
    total: u64,
    /// Each packet unpacked and not yet passed by the reader: where its bytes end (counted as
    /// `total`) and its sequence number.
    unpacked: std::collections::VecDeque<(u64, u8)>,
}

impl Unpacker {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
    }

    /// Takes one whole compressed packet off what was fed into `plain`; false until one is whole.
    pub fn unpack(&mut self) -> io::Result<bool> {
        if self.raw.len() < HEADER {
            return Ok(false);
        }
        let compressed = usize::from(self.raw[0]) | usize::from(self.raw[1]) << 8 | usize::from(self.raw[2]) << 16;
        let sequence = self.raw[3];
        let original = usize::from(self.raw[4]) | usize::from(self.raw[5]) << 8 | usize::from(self.raw[6]) << 16;
        if self.raw.len() < HEADER + compressed {
            return Ok(false);
        }
        let holds_bytes = if original == 0 { compressed > 0 } else { original > 0 };
        if holds_bytes && self.unpacked.len() >= MAX_UNPASSED_PACKETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {MAX_UNPASSED_PACKETS} compressed packets before the command they hold ends"),
            ));
        }
        let body = &self.raw[HEADER..HEADER + compressed];
        let before = self.plain.len();
        if original == 0 {
            self.plain.extend_from_slice(body);
        } else {
            // Inflated straight into `plain`, which grows with what comes out rather than with
            // what the header claims, and at most to the header's length: a stream that inflates
            // further is refused.
            let mut into = (&mut self.plain).writer();
            let inflated = io::copy(&mut ZlibDecoder::new(body).take(original as u64 + 1), &mut into)?;
            if inflated != original as u64 {
                self.plain.truncate(before);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a compressed packet inflates to {inflated} bytes where its header says {original}"),
                ));
            }
        }
        self.raw.advance(HEADER + compressed);
        let added = (self.plain.len() - before) as u64;
        if added > 0 {
            // (An empty packet holds no byte a command could end in.)
            self.total += added;
            self.unpacked.push_back((self.total, sequence));
        }
        Ok(true)
    }
}

/// Compresses `bytes` into `out` as compressed packets of at most [`MAX_CHUNK`] bytes each,
/// numbered from `sequence`; returns the number after the last.
pub fn pack(bytes: &[u8], mut sequence: u8, out: &mut BytesMut) -> io::Result<u8> {
    for chunk in bytes.chunks(MAX_CHUNK) {
        let mut compressed = None;
        if chunk.len() >= MIN_COMPRESS {
            let mut encoder = ZlibEncoder::new(Vec::with_capacity(chunk.len() / 2 + 64), Compression::fast());
            encoder.write_all(chunk)?;
            // What does not shrink goes as it is.
            compressed = Some(encoder.finish()?).filter(|body| body.len() < chunk.len());
        }
        let (body, original) = match &compressed {
            Some(body) => (body.as_slice(), chunk.len()),
            None => (chunk, 0),
        };
        out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        out.extend_from_slice(&[sequence]);
        out.extend_from_slice(&(original as u32).to_le_bytes()[..3]);
        out.extend_from_slice(body);
        sequence = sequence.wrapping_add(1);
    }
    Ok(sequence)
}

impl Compressed {
    fn new(inner: Stream) -> Compressed {
        Compressed {
            inner,
            unpacker: Unpacker::default(),
            pending: Vec::new(),
            out: BytesMut::new(),
            sequence: 0,
            scratch: vec![0; 64 << 10],
            handed: 0,
        }
    }

    /// Compresses what is pending into `out`.
    fn pack(&mut self) -> io::Result<()> {
        self.sequence = pack(&self.pending, self.sequence, &mut self.out)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes `out` to the client until it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Compressed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let plain = &mut this.unpacker.plain;
            if !plain.is_empty() {
                let n = plain.len().min(buf.remaining());
                buf.put_slice(&plain[..n]);
                plain.advance(n);
                this.handed += n as u64;
                return Poll::Ready(Ok(()));
            }
            if this.unpacker.unpack()? {
                continue;
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client left; what it left half-sent is not a packet.
                return Poll::Ready(Ok(()));
            }
            this.unpacker.feed(read.filled());
        }
    }
}

impl AsyncWrite for Compressed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= MAX_CHUNK {
            this.pack()?;
        }
        ready!(this.poll_drain(cx))?;
        let n = buf.len().min(MAX_CHUNK - this.pending.len());
        this.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            this.pack()?;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsyncRead for ClientLink {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientLink::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientLink::Compressed(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientLink {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientLink::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientLink::Compressed(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientLink::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientLink::Compressed(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientLink::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientLink::Compressed(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_bytes_unpack_as_they_were_short_ones_uncompressed() {
        let text = "select email from customers where id = 1; ".repeat(1000);
        for bytes in [&b"select 1"[..], text.as_bytes()] {
            let mut out = BytesMut::new();
            assert_eq!(pack(bytes, 7, &mut out).unwrap(), 8);
            // Short payloads go as they are (0 as the length before compression).
            assert_eq!(out[4..7] == [0, 0, 0], bytes.len() < MIN_COMPRESS);
            let mut unpacker = Unpacker::default();
            unpacker.feed(&out[..5]);
            assert!(!unpacker.unpack().unwrap(), "not whole yet");
            unpacker.feed(&out[5..]);
            assert!(unpacker.unpack().unwrap());
            assert_eq!((&unpacker.plain[..], unpacker.unpacked.back()), (bytes, Some(&(bytes.len() as u64, 7))));
        }
    }

    #[test]
    fn unpacked_bytes_are_mapped_to_the_packets_they_came_in() {
        let mut unpacker = Unpacker::default();
        let mut out = BytesMut::new();
        pack(b"first", 0, &mut out).unwrap();
        out.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0]);
        pack(b"second", 9, &mut out).unwrap();
        unpacker.feed(&out);
        while unpacker.unpack().unwrap() {}
        assert_eq!(&unpacker.plain[..], b"firstsecond");
        // The empty packet maps no byte.
        assert_eq!(unpacker.unpacked, [(5, 0), (11, 9)]);
    }

    #[test]
    fn a_client_splitting_a_command_into_tiny_packets_is_stopped() {
        let mut unpacker = Unpacker::default();
        let mut out = BytesMut::new();
        for i in 0..=MAX_UNPASSED_PACKETS {
            pack(b"x", i as u8, &mut out).unwrap();
        }
        unpacker.feed(&out);
        let unpacked = std::iter::from_fn(|| unpacker.unpack().ok().filter(|more| *more)).count();
        assert_eq!(unpacked, MAX_UNPASSED_PACKETS);
        assert!(unpacker.unpack().is_err());
    }

    #[test]
    fn a_packet_that_inflates_past_its_header_is_refused() {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(&[0u8; 1 << 20]).unwrap();
        let body = encoder.finish().unwrap();
        let mut packet = BytesMut::new();
        packet.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
        packet.extend_from_slice(&[0, 100, 0, 0]);
        packet.extend_from_slice(&body);
        let mut unpacker = Unpacker::default();
        unpacker.feed(&packet);
        assert!(unpacker.unpack().is_err());
        assert!(unpacker.plain.len() <= 100);
    }
}
