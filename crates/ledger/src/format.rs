//! The ledger's bytes: segment headers, record frames, the three record bodies and every hash the
//! ledger computes. docs/RECORDING_FORMAT.md is the prose version of this file; keep them equal.
//!
//! Everything here is pure: no files, no clocks. Decoders take bytes that may have been tampered
//! with, so they check every length before they slice and never panic (see fuzz/).

use sha2::{Digest, Sha256};

/// A 32-byte digest: SHA-256, except payload digests in version 2 segments (BLAKE3).
pub type Hash = [u8; 32];

pub const SEGMENT_MAGIC: &[u8; 8] = b"WITNSEG1";
/// The version new segments are written in. Every version from 1 up to it is read and verified.
/// Version 2 changed how payload digests are computed ([`PayloadHash`]); version 3 adds sealed
/// events (seal.rs), whose layout is an event's, with a sealed payload up to
/// [`MAX_STORED_PAYLOAD_LEN`].
pub const FORMAT_VERSION: u32 = 3;
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Body length (u32) and CRC32C (u32) in front of every record body.
pub const FRAME_HEADER_LEN: usize = 8;
/// The largest payload one event may carry; protocol crates split bigger data into several events.
pub const MAX_PAYLOAD_LEN: usize = 16 << 20;
/// The largest structured header (summary and attributes, as JSON) one event may carry.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// The largest payload a record may hold: a sealed event's payload holds its header and payload
/// (seal.rs); an event recorded in clear never has more than [`MAX_PAYLOAD_LEN`].
pub const MAX_STORED_PAYLOAD_LEN: usize = crate::seal::MAX_SEALED_LEN;
/// No valid body is longer than this; a frame that says otherwise is corrupt.
pub const MAX_BODY_LEN: usize = MAX_PAYLOAD_LEN + MAX_HEADER_LEN + 512;

const CHAIN_TAG: &[u8] = b"witness-chain-v1";
const GLOBAL_TAG: &[u8] = b"witness-global-v1";
const CHECKPOINT_TAG: &[u8] = b"witness-checkpoint-v1";
const CHECKPOINT_ENTRY_TAG: &[u8] = b"witness-checkpoint-entry-v1";

/// The first byte of every record body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    /// One event of one session.
    Event = 1,
    /// A session head: a leaf of the global Merkle log.
    Head = 2,
    /// A signed checkpoint of the Merkle log and the global chain.
    Checkpoint = 3,
}

/// What makes a record body undecodable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("record body is {len} bytes, shorter than its fields need")]
    Short { len: usize },
    #[error("unknown record type {0}")]
    UnknownType(u8),
    #[error("event kind is not 1 to 64 bytes of [a-z0-9._-]")]
    BadKind,
    #[error("event direction code {0} is not 0, 1 or 2")]
    BadDirection(u8),
    #[error("{field} length {len} is over its limit of {max}")]
    TooLong { field: &'static str, len: u64, max: u64 },
    #[error("payload state byte {0} is neither 0 (present) nor 1 (purged)")]
    BadPayloadState(u8),
    #[error("session head closed flag {0} is neither 0 nor 1")]
    BadClosedFlag(u8),
    #[error("{extra} unexpected bytes after the record's last field")]
    TrailingBytes { extra: usize },
    #[error("segment header: {0}")]
    SegmentHeader(&'static str),
    #[error("segment header: format version {found} is newer than this witness reads (1 to {FORMAT_VERSION}); verify or open it with a newer witness")]
    UnsupportedVersion { found: u32 },
}

/// An event record, borrowed from the bytes it was decoded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord<'a> {
    pub ledger_seq: u64,
    pub session_id: [u8; 16],
    pub seq: u64,
    pub time_ns: i64,
    pub direction: u8,
    pub kind: &'a str,
    /// The structured header as JSON bytes (summary, attrs, payload type).
    pub header: &'a [u8],
    pub payload_len: u64,
    pub payload_digest: Hash,
    pub chain_hash: Hash,
    /// None when the payload was purged; the digest still commits to what it was.
    pub payload: Option<&'a [u8]>,
    /// The bytes the session chain hashes: from the session id to the payload digest.
    pub committed: &'a [u8],
}

/// A session head, the leaf of the global Merkle log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadRecord {
    pub ledger_seq: u64,
    pub leaf_index: u64,
    pub leaf: Leaf,
}

/// What a Merkle leaf commits to: a session's chain hash after its record `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub session_id: [u8; 16],
    pub seq: u64,
    pub head_hash: Hash,
    pub closed: bool,
}

/// A signed statement of the Merkle log's size and root and the global chain's head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub ledger_seq: u64,
    pub body: CheckpointBody,
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

/// The signed part of a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointBody {
    /// Number of leaves in the Merkle log.
    pub tree_size: u64,
    pub root: Hash,
    /// Number of records before this one, which this checkpoint covers (its own ledger_seq).
    pub n_records: u64,
    /// The global chain value after record `n_records - 1` (all zeros when `n_records` is 0).
    pub global_head: Hash,
    pub time_ns: i64,
}

/// A decoded record body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Event(EventRecord<'a>),
    Head(HeadRecord),
    Checkpoint(CheckpointRecord),
}

/// The fixed header at the start of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The format version of the segment's records: it says how their payload digests are made.
    pub version: u32,
    pub segment_idx: u64,
    /// The ledger_seq of the segment's first record.
    pub first_ledger_seq: u64,
}

/// The outcome of looking for a frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole frame whose CRC matches: its body and the frame's length in bytes.
    Complete { body: &'a [u8], frame_len: usize },
    /// The buffer ends before the frame does (a torn write at the end of a file).
    Incomplete,
    /// The length is impossible or the CRC does not match.
    Corrupt(FrameProblem),
}

/// Why a frame is corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameProblem {
    #[error("frame length {0} is over the limit")]
    BadLength(u32),
    #[error("CRC32C mismatch")]
    CrcMismatch,
}

// === segment headers ===

impl SegmentHeader {
    /// How the payloads of the segment's events are digested.
    ///
    /// # Panics
    ///
    /// For a version [`decode_segment_header`] refuses: only a header made by hand has one.
    pub fn payload_hash(&self) -> PayloadHash {
        PayloadHash::of_version(self.version).expect("a decoded segment header has a known version")
    }
}

pub fn encode_segment_header(header: SegmentHeader) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..8].copy_from_slice(SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&header.version.to_le_bytes());
    out[16..24].copy_from_slice(&header.segment_idx.to_le_bytes());
    out[24..32].copy_from_slice(&header.first_ledger_seq.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    out
}

pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, FormatError> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(FormatError::SegmentHeader("shorter than 32 bytes"));
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Err(FormatError::SegmentHeader("magic is not WITNSEG1"));
    }
    // The CRC first: a damaged version field is damage, not a version from the future.
    let mut zeroed = [0u8; SEGMENT_HEADER_LEN];
    zeroed.copy_from_slice(&bytes[..SEGMENT_HEADER_LEN]);
    zeroed[12..16].fill(0);
    if crc32c::crc32c(&zeroed) != u32_at(bytes, 12) {
        return Err(FormatError::SegmentHeader("CRC32C mismatch"));
    }
    let version = u32_at(bytes, 8);
    if PayloadHash::of_version(version).is_none() {
        return Err(FormatError::UnsupportedVersion { found: version });
    }
    Ok(SegmentHeader { version, segment_idx: u64_at(bytes, 16), first_ledger_seq: u64_at(bytes, 24) })
}

// === frames ===

/// Looks for one frame at the start of `buf`. Cheap when the frame is incomplete: the CRC is only
/// computed once all its bytes are there.
pub fn decode_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return Frame::Incomplete;
    }
    let body_len = u32_at(buf, 0);
    if body_len as usize > MAX_BODY_LEN || body_len < 9 {
        return Frame::Corrupt(FrameProblem::BadLength(body_len));
    }
    let frame_len = FRAME_HEADER_LEN + body_len as usize;
    if buf.len() < frame_len {
        return Frame::Incomplete;
    }
    let body = &buf[FRAME_HEADER_LEN..frame_len];
    if frame_crc(&buf[..4], body) != u32_at(buf, 4) {
        return Frame::Corrupt(FrameProblem::CrcMismatch);
    }
    Frame::Complete { body, frame_len }
}

/// Fills in the frame header of `frame` (length and CRC) and its body's ledger_seq. The frame was
/// laid out by one of the `encode_*` functions with room for both.
pub fn seal_frame(frame: &mut [u8], ledger_seq: u64) {
    let body_len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[0..4].copy_from_slice(&body_len.to_le_bytes());
    frame[FRAME_HEADER_LEN + 1..FRAME_HEADER_LEN + 9].copy_from_slice(&ledger_seq.to_le_bytes());
    let crc = frame_crc(&frame[0..4], &frame[FRAME_HEADER_LEN..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// CRC32C over the length field and the body, so a damaged length is caught too.
fn frame_crc(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

// === record bodies ===

/// The fields of an event that go into its record, before the ledger gives it a position.
pub struct EventFields<'a> {
    pub session_id: [u8; 16],
    pub seq: u64,
    pub time_ns: i64,
    pub direction: u8,
    pub kind: &'a str,
    pub header: &'a [u8],
    pub payload: &'a [u8],
}

/// Lays out a whole event frame (frame header and ledger_seq left zero for [`seal_frame`]) and
/// returns it with the event's chain hash, which continues the session's chain from `prev_hash`.
/// The payload digest is [`PayloadHash::CURRENT`]'s: the frame belongs in a segment of
/// [`FORMAT_VERSION`].
pub fn encode_event(fields: &EventFields<'_>, prev_hash: &Hash) -> (Vec<u8>, Hash) {
    let committed_len = 16 + 8 + 8 + 1 + 1 + fields.kind.len() + 4 + fields.header.len() + 8 + 32;
    let total = FRAME_HEADER_LEN + 1 + 8 + committed_len + 32 + 1 + fields.payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out.push(RecordType::Event as u8);
    out.extend_from_slice(&0u64.to_le_bytes());
    let committed_start = out.len();
    out.extend_from_slice(&fields.session_id);
    out.extend_from_slice(&fields.seq.to_le_bytes());
    out.extend_from_slice(&fields.time_ns.to_le_bytes());
    out.push(fields.direction);
    out.push(fields.kind.len() as u8);
    out.extend_from_slice(fields.kind.as_bytes());
    out.extend_from_slice(&(fields.header.len() as u32).to_le_bytes());
    out.extend_from_slice(fields.header);
    out.extend_from_slice(&(fields.payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&PayloadHash::CURRENT.digest(fields.payload));
    let chain = chain_hash(prev_hash, &out[committed_start..]);
    out.extend_from_slice(&chain);
    out.push(0);
    out.extend_from_slice(fields.payload);
    debug_assert_eq!(out.len(), total);
    (out, chain)
}

/// Lays out a head record's frame (sealed later by [`seal_frame`]).
pub fn encode_head(leaf_index: u64, leaf: &Leaf) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + 9 + 8 + LEAF_DATA_LEN);
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out.push(RecordType::Head as u8);
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&leaf_index.to_le_bytes());
    out.extend_from_slice(&leaf_data(leaf));
    out
}

/// Lays out a checkpoint record's frame (sealed later by [`seal_frame`]).
pub fn encode_checkpoint(body: &CheckpointBody, public_key: &[u8; 32], signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + 9 + CHECKPOINT_BODY_LEN + 96);
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    out.push(RecordType::Checkpoint as u8);
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&checkpoint_body_bytes(body));
    out.extend_from_slice(public_key);
    out.extend_from_slice(signature);
    out
}

/// Decodes a record body (the bytes after the frame header).
pub fn decode_record(body: &[u8]) -> Result<Record<'_>, FormatError> {
    let mut r = Reader { buf: body, pos: 0 };
    let record_type = r.u8()?;
    let ledger_seq = r.u64()?;
    let record = match record_type {
        1 => Record::Event(decode_event(&mut r, ledger_seq)?),
        2 => {
            let leaf_index = r.u64()?;
            let leaf = Leaf {
                session_id: r.array()?,
                seq: r.u64()?,
                head_hash: r.array()?,
                closed: match r.u8()? {
                    0 => false,
                    1 => true,
                    other => return Err(FormatError::BadClosedFlag(other)),
                },
            };
            Record::Head(HeadRecord { ledger_seq, leaf_index, leaf })
        }
        3 => {
            let body = CheckpointBody {
                tree_size: r.u64()?,
                root: r.array()?,
                n_records: r.u64()?,
                global_head: r.array()?,
                time_ns: r.u64()? as i64,
            };
            Record::Checkpoint(CheckpointRecord { ledger_seq, body, public_key: r.array()?, signature: r.array()? })
        }
        other => return Err(FormatError::UnknownType(other)),
    };
    if r.pos != body.len() {
        return Err(FormatError::TrailingBytes { extra: body.len() - r.pos });
    }
    Ok(record)
}

/// Decodes just the committed part of an event (as a session export carries it), with the chain
/// hash that goes with it; the result has no payload.
pub fn decode_committed(committed: &[u8], ledger_seq: u64, chain_hash: Hash) -> Result<EventRecord<'_>, FormatError> {
    let mut r = Reader { buf: committed, pos: 0 };
    let mut event = decode_committed_fields(&mut r, ledger_seq)?;
    if r.pos != committed.len() {
        return Err(FormatError::TrailingBytes { extra: committed.len() - r.pos });
    }
    event.chain_hash = chain_hash;
    Ok(event)
}

fn decode_event<'a>(r: &mut Reader<'a>, ledger_seq: u64) -> Result<EventRecord<'a>, FormatError> {
    let mut event = decode_committed_fields(r, ledger_seq)?;
    event.chain_hash = r.array()?;
    event.payload = match r.u8()? {
        0 => Some(r.bytes(event.payload_len as usize)?),
        // Only a payload that existed can be purged; the writer never marks an empty one.
        1 if event.payload_len > 0 => None,
        other => return Err(FormatError::BadPayloadState(other)),
    };
    Ok(event)
}

/// The fields from the session id to the payload digest; chain hash and payload left empty.
fn decode_committed_fields<'a>(r: &mut Reader<'a>, ledger_seq: u64) -> Result<EventRecord<'a>, FormatError> {
    let committed_start = r.pos;
    let session_id = r.array()?;
    let seq = r.u64()?;
    let time_ns = r.u64()? as i64;
    let direction = r.u8()?;
    if direction > 2 {
        return Err(FormatError::BadDirection(direction));
    }
    let kind_len = r.u8()? as usize;
    let kind = std::str::from_utf8(r.bytes(kind_len)?).map_err(|_| FormatError::BadKind)?;
    let valid_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-');
    if kind.is_empty() || kind.len() > 64 || !kind.bytes().all(valid_char) {
        return Err(FormatError::BadKind);
    }
    let header_len = r.u32()? as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(FormatError::TooLong { field: "header", len: header_len as u64, max: MAX_HEADER_LEN as u64 });
    }
    let header = r.bytes(header_len)?;
    let payload_len = r.u64()?;
    if payload_len > MAX_STORED_PAYLOAD_LEN as u64 {
        return Err(FormatError::TooLong { field: "payload", len: payload_len, max: MAX_STORED_PAYLOAD_LEN as u64 });
    }
    let payload_digest = r.array()?;
    let committed = &r.buf[committed_start..r.pos];
    Ok(EventRecord {
        ledger_seq,
        session_id,
        seq,
        time_ns,
        direction,
        kind,
        header,
        payload_len,
        payload_digest,
        chain_hash: [0; 32],
        payload: None,
        committed,
    })
}

// === hashes ===

/// How the digest of an event's payload, which its chain hash commits to, is computed: by the
/// format version of the segment the event is in. Every other hash of the ledger is SHA-256; the
/// payload digest is the only one that runs over every recorded byte (a recorded transfer hashes
/// hundreds of MB a second), and BLAKE3 does that several times faster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadHash {
    /// Format version 1.
    Sha256,
    /// Format versions 2 and 3.
    Blake3,
}

impl PayloadHash {
    /// The digest of events written now (in segments of [`FORMAT_VERSION`]).
    pub const CURRENT: PayloadHash = PayloadHash::Blake3;

    /// The digest of a format version's events; None for a version this build does not know.
    pub fn of_version(version: u32) -> Option<PayloadHash> {
        match version {
            1 => Some(PayloadHash::Sha256),
            2 | 3 => Some(PayloadHash::Blake3),
            _ => None,
        }
    }

    /// The name a session export gives it (`payload_hash`).
    pub fn name(self) -> &'static str {
        match self {
            PayloadHash::Sha256 => "sha256",
            PayloadHash::Blake3 => "blake3",
        }
    }

    /// The digest an export's `payload_hash` names; None for a name witness does not know.
    pub fn from_name(name: &str) -> Option<PayloadHash> {
        [PayloadHash::Sha256, PayloadHash::Blake3].into_iter().find(|hash| hash.name() == name)
    }

    /// The payload digest an event's chain hash commits to.
    pub fn digest(self, payload: &[u8]) -> Hash {
        match self {
            PayloadHash::Sha256 => Sha256::digest(payload).into(),
            PayloadHash::Blake3 => blake3::hash(payload).into(),
        }
    }
}

/// h_i = SHA-256("witness-chain-v1" ‖ h_{i-1} ‖ committed_i), with h_{-1} = 32 zero bytes.
pub fn chain_hash(prev: &Hash, committed: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(CHAIN_TAG);
    h.update(prev);
    h.update(committed);
    h.finalize().into()
}

pub const LEAF_DATA_LEN: usize = 16 + 8 + 32 + 1;

/// The bytes a Merkle leaf commits to.
pub fn leaf_data(leaf: &Leaf) -> [u8; LEAF_DATA_LEN] {
    let mut out = [0u8; LEAF_DATA_LEN];
    out[..16].copy_from_slice(&leaf.session_id);
    out[16..24].copy_from_slice(&leaf.seq.to_le_bytes());
    out[24..56].copy_from_slice(&leaf.head_hash);
    out[56] = leaf.closed as u8;
    out
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ leaf data).
pub fn leaf_hash(leaf: &Leaf) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf_data(leaf));
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// g_i = SHA-256("witness-global-v1" ‖ g_{i-1} ‖ ledger_seq_i ‖ type_i ‖ entry_i): one chain through
/// every record of the ledger in file order, so that records cannot be dropped, duplicated or
/// moved between checkpoints without changing the signed global head.
pub fn global_link(prev: &Hash, ledger_seq: u64, record_type: RecordType, entry: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(GLOBAL_TAG);
    h.update(prev);
    h.update(ledger_seq.to_le_bytes());
    h.update([record_type as u8]);
    h.update(entry);
    h.finalize().into()
}

pub const CHECKPOINT_BODY_LEN: usize = 8 + 32 + 8 + 32 + 8;

pub fn checkpoint_body_bytes(body: &CheckpointBody) -> [u8; CHECKPOINT_BODY_LEN] {
    let mut out = [0u8; CHECKPOINT_BODY_LEN];
    out[..8].copy_from_slice(&body.tree_size.to_le_bytes());
    out[8..40].copy_from_slice(&body.root);
    out[40..48].copy_from_slice(&body.n_records.to_le_bytes());
    out[48..80].copy_from_slice(&body.global_head);
    out[80..88].copy_from_slice(&body.time_ns.to_le_bytes());
    out
}

/// The message an Ed25519 checkpoint signature signs.
pub fn checkpoint_message(body: &CheckpointBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_TAG.len() + CHECKPOINT_BODY_LEN);
    out.extend_from_slice(CHECKPOINT_TAG);
    out.extend_from_slice(&checkpoint_body_bytes(body));
    out
}

/// A checkpoint's entry in the global chain.
pub fn checkpoint_entry_hash(record: &CheckpointRecord) -> Hash {
    let mut h = Sha256::new();
    h.update(CHECKPOINT_ENTRY_TAG);
    h.update(checkpoint_body_bytes(&record.body));
    h.update(record.public_key);
    h.update(record.signature);
    h.finalize().into()
}

/// The entry a record contributes to the global chain.
pub fn entry_hash(record: &Record<'_>) -> (RecordType, Hash) {
    match record {
        Record::Event(e) => (RecordType::Event, e.chain_hash),
        Record::Head(h) => (RecordType::Head, leaf_hash(&h.leaf)),
        Record::Checkpoint(c) => (RecordType::Checkpoint, checkpoint_entry_hash(c)),
    }
}

// === helpers ===

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// A bounds-checked cursor over a record body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let end = end.ok_or(FormatError::Short { len: self.buf.len() })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.bytes(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_event(payload: &[u8]) -> (Vec<u8>, Hash) {
        let fields = EventFields {
            session_id: [7; 16],
            seq: 3,
            time_ns: 1_700_000_000_000_000_000,
            direction: 1,
            kind: "sql.query",
            header: br#"{"summary":"select 1"}"#,
            payload,
        };
        encode_event(&fields, &[9; 32])
    }

    #[test]
    fn an_event_frame_round_trips() {
        let (mut frame, chain) = sample_event(b"select 1");
        seal_frame(&mut frame, 42);
        let Frame::Complete { body, frame_len } = decode_frame(&frame) else { panic!("frame should decode") };
        assert_eq!(frame_len, frame.len());
        let Record::Event(e) = decode_record(body).unwrap() else { panic!("an event") };
        assert_eq!((e.ledger_seq, e.seq, e.kind, e.direction), (42, 3, "sql.query", 1));
        assert_eq!(e.payload, Some(&b"select 1"[..]));
        assert_eq!(e.chain_hash, chain);
        assert_eq!(chain_hash(&[9; 32], e.committed), chain);
        assert_eq!(PayloadHash::Blake3.digest(b"select 1"), e.payload_digest);
    }

    #[test]
    fn every_single_byte_flip_is_caught_by_the_crc() {
        let (mut frame, _) = sample_event(b"payload bytes");
        seal_frame(&mut frame, 1);
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x20;
            assert!(!matches!(decode_frame(&bad), Frame::Complete { .. }), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn short_buffers_are_incomplete_not_errors() {
        let (mut frame, _) = sample_event(b"abc");
        seal_frame(&mut frame, 1);
        for cut in 0..frame.len() {
            assert_eq!(decode_frame(&frame[..cut]), Frame::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn head_and_checkpoint_records_round_trip() {
        let leaf = Leaf { session_id: [1; 16], seq: 9, head_hash: [2; 32], closed: true };
        let mut frame = encode_head(5, &leaf);
        seal_frame(&mut frame, 77);
        let Frame::Complete { body, .. } = decode_frame(&frame) else { panic!() };
        assert_eq!(decode_record(body).unwrap(), Record::Head(HeadRecord { ledger_seq: 77, leaf_index: 5, leaf }));

        let cp = CheckpointBody { tree_size: 6, root: [3; 32], n_records: 78, global_head: [4; 32], time_ns: 12 };
        let mut frame = encode_checkpoint(&cp, &[5; 32], &[6; 64]);
        seal_frame(&mut frame, 78);
        let Frame::Complete { body, .. } = decode_frame(&frame) else { panic!() };
        let expected = CheckpointRecord { ledger_seq: 78, body: cp, public_key: [5; 32], signature: [6; 64] };
        assert_eq!(decode_record(body).unwrap(), Record::Checkpoint(expected));
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        let (frame, _) = sample_event(b"some payload");
        let body = &frame[FRAME_HEADER_LEN..];
        for cut in 0..body.len() {
            assert!(decode_record(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = body.to_vec();
        long.push(0);
        assert_eq!(decode_record(&long), Err(FormatError::TrailingBytes { extra: 1 }));
    }

    #[test]
    fn segment_headers_round_trip_and_reject_damage() {
        for version in [1, FORMAT_VERSION] {
            let header = SegmentHeader { version, segment_idx: 3, first_ledger_seq: 1000 };
            let bytes = encode_segment_header(header);
            assert_eq!(decode_segment_header(&bytes).unwrap(), header);
            for i in 0..bytes.len() {
                let mut bad = bytes;
                bad[i] ^= 1;
                assert!(decode_segment_header(&bad).is_err(), "flip at {i}");
            }
        }
        let unknown = encode_segment_header(SegmentHeader { version: FORMAT_VERSION + 1, segment_idx: 0, first_ledger_seq: 0 });
        assert_eq!(decode_segment_header(&unknown), Err(FormatError::UnsupportedVersion { found: FORMAT_VERSION + 1 }));
    }

    /// Known answers (the RECORDING_FORMAT document gives the same): version 1 digests payloads
    /// with SHA-256, version 2 with BLAKE3, and the name in an export says which.
    #[test]
    fn payload_digests_follow_the_segment_version() {
        let check = |version: u32, name: &str, digest_of_abc: &str| {
            let hash = PayloadHash::of_version(version).unwrap();
            assert_eq!(hex::encode(hash.digest(b"abc")), digest_of_abc);
            assert_eq!((hash.name(), PayloadHash::from_name(name)), (name, Some(hash)));
        };
        check(1, "sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        check(2, "blake3", "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
        assert_eq!(PayloadHash::of_version(FORMAT_VERSION), Some(PayloadHash::CURRENT));
        assert_eq!(PayloadHash::of_version(3), Some(PayloadHash::Blake3));
        assert_eq!((PayloadHash::of_version(0), PayloadHash::of_version(4), PayloadHash::from_name("md5")), (None, None, None));
    }
}
