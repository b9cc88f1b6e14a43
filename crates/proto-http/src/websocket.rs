//! WebSocket frames (RFC 6455) read as they stream by, for the recording. Witness relays a
//! WebSocket's bytes as they come and never re-frames them; this reader follows the frames in
//! those bytes and hands out each payload piece, unmasked, with its frame's opcode, so that what
//! the two sides said is recorded before it is passed on. Nothing of a frame is held: a piece is
//! whatever part of a payload one read brought, so memory stays bounded whatever a frame's length.
//!
//! For Kubernetes' channel subprotocols (`v4.channel.k8s.io`, `v5.channel.k8s.io`) the first
//! byte of each message names its stream (0 stdin, 1 stdout, 2 stderr, 3 errors, 4 terminal
//! resizes, 255 a stream's close); the reader hands it out as the piece's channel.
//!
//! What breaks the protocol (a reserved opcode or bit, a control frame that is long or
//! fragmented, a length over 2^63, a continuation with no message to continue, a data frame
//! inside an unfinished message) is an error: witness ends the WebSocket, as a server would.

/// Opcodes (RFC 6455 section 5.2).
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Longest payload a control frame may have.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A part of one frame's payload, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    /// The opcode of the message it belongs to (a continuation frame's is its message's).
    pub opcode: u8,
    /// The Kubernetes channel of its message, when the reader reads channels and it has one.
    pub channel: Option<u8>,
    pub data: Vec<u8>,
    /// The last piece of a frame that ends its message.
    pub message_ends: bool,
}

/// Bytes that are not WebSocket frames.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a WebSocket frame: {0}")]
pub struct FrameError(pub &'static str);

/// Follows the frames of one direction of a WebSocket.
#[derive(Debug)]
pub struct FrameReader {
    /// Whether messages begin with a Kubernetes channel byte.
    channels: bool,
    /// A frame header being read: its bytes so far.
    header: Vec<u8>,
    /// The frame whose payload is being read, if any.
    frame: Option<Frame>,
    /// The unfinished data message's opcode and channel, between its fragments.
    message: Option<(u8, Option<u8>)>,
}

#[derive(Debug)]
struct Frame {
    opcode: u8,
    fin: bool,
    left: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes read so far (for the mask's position).
    offset: u64,
    /// Whether the channel byte of this frame's message is still to come.
    channel_pending: bool,
}

impl FrameReader {
    /// `channels`: read each message's first byte as a Kubernetes channel.
    pub fn new(channels: bool) -> FrameReader {
        FrameReader { channels, header: Vec::with_capacity(14), frame: None, message: None }
    }

    /// Reads `bytes`, the next ones of the stream; returns the payload pieces they complete or
    /// carry, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Vec<Piece>, FrameError> {
        let mut pieces = Vec::new();
        while !bytes.is_empty() || self.frame.as_ref().is_some_and(|f| f.left == 0) {
            let Some(frame) = self.frame.as_mut() else {
                let taken = self.read_header(bytes)?;
                bytes = &bytes[taken..];
                continue;
            };
            let take = usize::try_from(frame.left).unwrap_or(usize::MAX).min(bytes.len());
            let mut data = bytes[..take].to_vec();
            bytes = &bytes[take..];
            if let Some(mask) = frame.mask {
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte ^= mask[((frame.offset + i as u64) % 4) as usize];
                }
            }
            frame.offset += take as u64;
            frame.left -= take as u64;
            let mut channel = self.message.and_then(|(_, channel)| channel);
            if frame.channel_pending && !data.is_empty() {
                frame.channel_pending = false;
                channel = Some(data.remove(0));
                if let Some((_, kept)) = self.message.as_mut() {
                    *kept = channel;
                }
            }
            let frame_ends = frame.left == 0;
            let message_ends = frame_ends && frame.fin;
            let opcode = frame.opcode;
            if frame_ends {
                self.frame = None;
                if message_ends && !is_control(opcode) {
                    self.message = None;
                }
            }
            if !data.is_empty() || message_ends {
                let channel = if is_control(opcode) { None } else { channel };
                pieces.push(Piece { opcode, channel, data, message_ends });
            }
        }
        Ok(pieces)
    }

    /// Reads a frame header from the start of `bytes` (with what earlier reads left); returns
    /// how many bytes it took.
    fn read_header(&mut self, bytes: &[u8]) -> Result<usize, FrameError> {
        // Take only what this header needs: at most 14 bytes.
        let need = |header: &[u8]| -> usize {
            if header.len() < 2 {
                return 2;
            }
            let masked = header[1] & 0x80 != 0;
            let extended = match header[1] & 0x7F {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            2 + extended + if masked { 4 } else { 0 }
        };
        let mut taken = 0;
        while self.header.len() < need(&self.header) && taken < bytes.len() {
            self.header.push(bytes[taken]);
            taken += 1;
        }
        if self.header.len() < need(&self.header) {
            return Ok(taken);
        }
        let header = std::mem::take(&mut self.header);
        let (fin, reserved, raw_opcode) = (header[0] & 0x80 != 0, header[0] & 0x70, header[0] & 0x0F);
        if reserved != 0 {
            return Err(FrameError("a reserved bit is set (no extension was agreed)"));
        }
        let (length, rest) = match header[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([header[2], header[3]])), &header[4..]),
            127 => {
                let length = u64::from_be_bytes(header[2..10].try_into().expect("eight bytes"));
                if length >> 63 != 0 {
                    return Err(FrameError("a length over 2^63"));
                }
                (length, &header[10..])
            }
            short => (u64::from(short), &header[2..]),
        };
        let mask = (header[1] & 0x80 != 0).then(|| [rest[0], rest[1], rest[2], rest[3]]);
        let (opcode, channel_pending) = match raw_opcode {
            CLOSE | PING | PONG => {
                if !fin || length > MAX_CONTROL_PAYLOAD {
                    return Err(FrameError("a control frame that is fragmented or longer than 125 bytes"));
                }
                (raw_opcode, false)
            }
            TEXT | BINARY => {
                if self.message.is_some() {
                    return Err(FrameError("a new message inside an unfinished one"));
                }
                let channel = self.channels;
                self.message = Some((raw_opcode, None));
                (raw_opcode, channel)
            }
            CONTINUATION => match self.message {
                Some((opcode, channel)) => (opcode, self.channels && channel.is_none()),
                None => return Err(FrameError("a continuation with no message to continue")),
            },
            _ => return Err(FrameError("a reserved opcode")),
        };
        self.frame = Some(Frame { opcode, fin, left: length, mask, offset: 0, channel_pending });
        Ok(taken)
    }
}

fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// Whether `opcode` is a control frame's (close, ping, pong).
pub fn is_control_opcode(opcode: u8) -> bool {
    is_control(opcode)
}

/// The opcode's name, as records give it.
pub fn opcode_name(opcode: u8) -> &'static str {
    match opcode {
        TEXT => "text",
        BINARY => "binary",
        CLOSE => "close",
        PING => "ping",
        PONG => "pong",
        _ => "continuation",
    }
}

/// Whether a `Sec-WebSocket-Protocol` value is one of Kubernetes' channel protocols, whose
/// messages begin with a channel byte.
pub fn is_kube_channels(subprotocol: &str) -> bool {
    matches!(subprotocol.trim(), "channel.k8s.io" | "v4.channel.k8s.io" | "v5.channel.k8s.io")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it (masked) or a server (not).
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n < 65536 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn data(pieces: &[Piece]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.data.clone()).collect()
    }

    #[test]
    fn frames_are_read_whatever_the_reads_cut() {
        let mut stream = frame(true, BINARY, b"\x01hello", Some([1, 2, 3, 4]));
        stream.extend(frame(true, PING, b"", Some([9, 9, 9, 9])));
        stream.extend(frame(false, BINARY, b"\x02par", Some([5, 6, 7, 8])));
        stream.extend(frame(true, CONTINUATION, b"tial", Some([7, 7, 7, 7])));
        let large = vec![b'x'; 70_000];
        stream.extend(frame(true, TEXT, &[&[0u8][..], &large].concat(), None));
        for cut in [1, 2, 3, 7, 100, stream.len()] {
            let mut reader = FrameReader::new(true);
            let mut pieces = Vec::new();
            for chunk in stream.chunks(cut) {
                pieces.extend(reader.feed(chunk).unwrap());
            }
            let by_channel = |channel: u8| data(&pieces.iter().filter(|p| p.channel == Some(channel)).map(clone).collect::<Vec<_>>());
            assert_eq!(by_channel(1), b"hello", "cut {cut}");
            assert_eq!(by_channel(2), b"partial", "cut {cut}");
            assert_eq!(by_channel(0).len(), 70_000, "cut {cut}");
            assert_eq!(pieces.iter().filter(|p| p.message_ends).count(), 4, "cut {cut}: three messages and a ping");
            assert!(pieces.iter().any(|p| p.opcode == PING && p.channel.is_none()));
        }
    }

    fn clone(piece: &Piece) -> Piece {
        Piece { opcode: piece.opcode, channel: piece.channel, data: piece.data.clone(), message_ends: piece.message_ends }
    }

    #[test]
    fn what_breaks_the_protocol_is_an_error() {
        let cases: [(&[u8], &str); 5] = [
            (&[0x83, 0x00], "a reserved opcode"),
            (&[0xC2, 0x00], "a reserved bit"),
            (&[0x09, 0x00], "a control frame"),
            (&[0x80, 0x00], "a continuation"),
            (&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], "over 2^63"),
        ];
        for (bytes, expect) in cases {
            let error = FrameReader::new(false).feed(bytes).unwrap_err();
            assert!(error.to_string().contains(expect), "{bytes:?}: {error}");
        }
        let mut reader = FrameReader::new(false);
        reader.feed(&frame(false, TEXT, b"a", None)).unwrap();
        assert!(reader.feed(&frame(true, TEXT, b"b", None)).is_err(), "a new message inside an unfinished one");
    }

    #[test]
    fn kubernetes_channel_protocols_are_known() {
        assert!(is_kube_channels("v5.channel.k8s.io"));
        assert!(!is_kube_channels("base64.channel.k8s.io"));
    }
}
