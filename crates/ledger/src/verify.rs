//! `witness verify`: reads a ledger's segments without changing them and checks everything that
//! can be checked: segment headers, frames (CRC32C), record order, every session's hash chain and
//! payload digests, the Merkle log of session heads, the global chain, checkpoint signatures, and
//! optionally that the ledger still extends a checkpoint exported earlier, and that the index says
//! what the records say.
//!
//! A running witness appends while verify reads. Verify finds out whether a process holds the
//! ledger's lock (before and after reading); if one does, records after the last checkpoint are
//! "not yet checkpointed" rather than a problem, and a record the file ends inside, at the very end
//! of the last segment, is one being written: everything before it is checked, it is left for the
//! next verify ([`VerifyReport::unfinished_tail`]). Without a writer the same tail is damage.
//!
//! Verify trusts nothing it reads: not the index, not the key file next to the segments (the caller
//! may pin a key), not the writer's own checks. The index is read only to be compared with the
//! records (`VerifyOptions::check_index`); nothing else in the report depends on it.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use witness_core::{kind, SessionId};

use crate::error::LedgerError;
use crate::format::{
    chain_hash, checkpoint_message, decode_record, decode_segment_header, entry_hash, global_link, leaf_hash, CheckpointBody,
    CheckpointRecord, FormatError, Hash, PayloadHash, Record, RecordType, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::index::{index_path, IndexCheck, IndexComparison};
use crate::merkle::CompactTree;
use crate::segment::{list_segments, FrameFault, FrameItem, FrameIter};

/// What to check beyond the ledger's own consistency.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The key checkpoints must be signed with. Without it, the key of the first checkpoint is
    /// used and reported, so a ledger re-signed with another key is caught only by a pinned key
    /// or an exported checkpoint.
    pub public_key: Option<VerifyingKey>,
    /// A checkpoint exported earlier that the ledger must still extend.
    pub checkpoint: Option<ExportedCheckpoint>,
    /// Accept records after the last checkpoint and an incomplete last record even when no
    /// process holds the ledger (a gateway that crashed and has not restarted yet). With a
    /// running writer they are accepted without it.
    pub allow_unsealed_tail: bool,
    /// Also compare the index (`index.sqlite`) with the records, up to the record it says it
    /// covers, and name what differs (`VerifyReport::index`).
    pub check_index: bool,
}

/// A checkpoint as `witness checkpoint export` writes it: everything needed to check it alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedCheckpoint {
    pub tree_size: u64,
    pub root: String,
    pub n_records: u64,
    pub global_head: String,
    pub time_ns: i64,
    pub public_key: String,
    pub signature: String,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    pub events: u64,
    pub sessions: u64,
    pub open_sessions: u64,
    pub leaves: u64,
    pub checkpoints: u64,
    /// The key the checkpoints were checked against.
    pub public_key: Option<[u8; 32]>,
    pub last_checkpoint: Option<ExportedCheckpoint>,
    /// Records after the last checkpoint.
    pub unsealed_records: u64,
    /// A process (a running witness) held the ledger's lock before or after the segments were
    /// read: it may have been appending meanwhile.
    pub writer_running: bool,
    /// The record the last segment ends inside, left unchecked because a writer is running (or
    /// `allow_unsealed_tail` was given): its bytes were still being written.
    pub unfinished_tail: Option<UnfinishedTail>,
    /// Problems in file order, the first bad record first; at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// Problems found beyond [`MAX_PROBLEMS`].
    pub problems_not_listed: u64,
    /// What comparing the index with the records found. Its problems are the index's, not the
    /// ledger's: they are not in `problems`.
    pub index: IndexCheck,
    pub elapsed: Duration,
}

/// The incomplete record at the end of the last segment of a ledger being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnfinishedTail {
    pub segment_idx: u64,
    pub offset: u64,
    /// How much of it was on disk when verify read the segment.
    pub bytes: u64,
}

/// A report lists this many problems at most; one damage often causes several.
pub const MAX_PROBLEMS: usize = 1000;

/// One thing wrong, with where it is and which session it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub segment_idx: Option<u64>,
    pub offset: Option<u64>,
    pub ledger_seq: Option<u64>,
    pub session: Option<SessionId>,
    pub seq: Option<u64>,
    pub kind: ProblemKind,
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    MissingSegment { idx: u64 },
    BadSegmentHeader { reason: String },
    SegmentStartsAt { expected: u64, found: u64 },
    BadFrame { fault: FrameFault },
    Undecodable { reason: String },
    LedgerSeq { expected: u64, found: u64 },
    PayloadDigest,
    NoSessionStart,
    SeqGap { expected: u64, found: u64 },
    SeqRepeated { expected: u64, found: u64 },
    ChainBroken,
    EventAfterEnd,
    LeafIndex { expected: u64, found: u64 },
    LeafForUnknownSession,
    LeafMismatch { leaf_seq: u64, session_seq: u64 },
    HeadNotInLog,
    CheckpointCount { expected: u64, found: u64 },
    CheckpointTreeSize { expected: u64, found: u64 },
    CheckpointRoot,
    CheckpointGlobalHead,
    CheckpointKey { expected: String, found: String },
    BadSignature,
    UnsealedTail { records: u64 },
    NotExtension { reason: String },
}

/// Verifies the ledger in `ledger_root` (a data dir's `ledger/` folder). Errors are only for a
/// folder that holds no ledger at all ([`LedgerError::NoLedger`]: no segment and no signing key)
/// and files that cannot be read; everything wrong with their contents is in the report.
///
/// Two threads share the work: a reader loads segments and checks what needs no order (frame
/// CRCs, payload digests), and the caller's thread checks, in file order, everything that does.
pub fn verify_ledger(ledger_root: &Path, options: &VerifyOptions) -> Result<VerifyReport, LedgerError> {
    let started = Instant::now();
    let segments_dir = ledger_root.join("segments");
    let lock_path = ledger_root.join("LOCK");
    let writer_before = crate::lock_held(&lock_path)?;
    let mut v = Verifier::new(options);
    // The index is read before the segments are listed: everything it covers is on disk by then.
    if options.check_index {
        v.index = IndexComparison::start(&index_path(ledger_root));
        if v.index.is_none() {
            v.report.index = IndexCheck::Missing;
        }
    }
    let segments = match list_segments(&segments_dir) {
        Ok(segments) => segments,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(LedgerError::io("list", &segments_dir)(e)),
    };
    if segments.is_empty() {
        // Witness creates its signing key before the first segment and seals at once: a key
        // without segments is a ledger whose segments were removed, not an empty place.
        let has_key = ledger_root.join("signing.key").exists() || ledger_root.join("signing.pub").exists();
        if !has_key {
            return Err(LedgerError::NoLedger { path: ledger_root.to_path_buf() });
        }
        v.problem(Problem::at_ledger(ProblemKind::MissingSegment { idx: 0 }));
    }
    let n_segments = segments.len();
    let mut expected_idx = 0;
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = std_mpsc::sync_channel::<Result<Chunk, LedgerError>>(8);
        let (spare_tx, spare_rx) = std_mpsc::channel::<Vec<u8>>();
        scope.spawn(move || read_segments(&segments, &chunk_tx, &spare_rx));
        for chunk in chunk_rx {
            let chunk = chunk?;
            if chunk.first_of_segment {
                while expected_idx < chunk.segment_idx {
                    v.problem(Problem::at_ledger(ProblemKind::MissingSegment { idx: expected_idx }));
                    expected_idx += 1;
                }
                expected_idx = chunk.segment_idx + 1;
                v.report.segments += 1;
                v.report.bytes += chunk.bytes.len() as u64;
            }
            v.verify_chunk(&chunk, chunk.segment_position + 1 == n_segments);
            // The last chunk of a segment hands its buffer back to the reader for reuse.
            if let Ok(buffer) = Arc::try_unwrap(chunk.bytes) {
                let _ = spare_tx.send(buffer);
            }
        }
        Ok::<(), LedgerError>(())
    })?;
    if let Some(index) = v.index.take() {
        v.report.index = index.conclude(ledger_root, v.key.map(|k| k.to_bytes()), v.next_ledger_seq);
    }
    // Checked again after reading: a witness that started meanwhile may have been appending.
    v.report.writer_running = writer_before || crate::lock_held(&lock_path)?;
    Ok(v.finish(started))
}

/// Records of one segment, checked by the reader thread as far as they can be out of order.
struct Chunk {
    segment_idx: u64,
    /// The segment's place in the listing (to know the last segment).
    segment_position: usize,
    bytes: Arc<Vec<u8>>,
    first_of_segment: bool,
    /// Set on a segment's first chunk.
    header: Option<Result<crate::format::SegmentHeader, FormatError>>,
    items: Vec<CheckedItem>,
}

enum CheckedItem {
    /// A frame whose CRC matched; `payload_ok` is false when its payload does not match its digest.
    Frame {
        offset: u64,
        body: std::ops::Range<usize>,
        payload_ok: bool,
    },
    Fault {
        offset: u64,
        fault: FrameFault,
        resume_at: Option<u64>,
    },
}

const CHUNK_RECORDS: usize = 4096;

fn read_segments(
    segments: &[crate::segment::SegmentFile],
    out: &std_mpsc::SyncSender<Result<Chunk, LedgerError>>,
    spare: &std_mpsc::Receiver<Vec<u8>>,
) {
    for (position, segment) in segments.iter().enumerate() {
        // A spare buffer keeps its length: read_segment overwrites it without clearing it first.
        let mut buffer = spare.try_recv().unwrap_or_default();
        let read = read_segment(&segment.path, &mut buffer);
        if let Err(e) = read {
            let _ = out.send(Err(LedgerError::io("read", &segment.path)(e)));
            return;
        }
        let bytes = Arc::new(buffer);
        let header = decode_segment_header(&bytes);
        let mut chunk = Chunk {
            segment_idx: segment.idx,
            segment_position: position,
            bytes: bytes.clone(),
            first_of_segment: true,
            header: Some(header.clone()),
            items: Vec::with_capacity(CHUNK_RECORDS),
        };
        if let Ok(header) = header {
            let hash = header.payload_hash();
            for item in FrameIter::new(&bytes, header.first_ledger_seq) {
                chunk.items.push(check_unordered(&bytes, item, hash));
                if chunk.items.len() == CHUNK_RECORDS {
                    let next = Chunk {
                        first_of_segment: false,
                        header: None,
                        items: Vec::with_capacity(CHUNK_RECORDS),
                        bytes: bytes.clone(),
                        ..chunk
                    };
                    if out.send(Ok(std::mem::replace(&mut chunk, next))).is_err() {
                        return;
                    }
                }
            }
        }
        drop(bytes);
        if out.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// Reads a whole segment into `buffer`, straight from the disk (`O_DIRECT`) where the file system
/// allows it. Verify reads each segment once: through the page cache every byte would be copied
/// once more, into pages nobody reads again that push out what the host does read. Where direct
/// reads are refused (tmpfs), a plain read, after which the segment's pages are released. What
/// `buffer` held before is overwritten.
fn read_segment(path: &Path, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    if read_direct(path, buffer).is_ok() {
        return Ok(());
    }
    buffer.clear();
    let mut file = fs::File::open(path)?;
    file.read_to_end(buffer)?;
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    Ok(())
}

/// Direct reads go to and from addresses, offsets and lengths in whole blocks of this size.
const DIRECT_BLOCK: usize = 4096;
/// One direct read asks for at most this much.
const DIRECT_READ: usize = 8 << 20;

fn read_direct(path: &Path, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32).open(path)?;
    // The file in whole blocks, one block more in case it grows meanwhile (a live ledger), and
    // room to start at an aligned address. The buffer is reused, so it is rarely grown.
    let blocks = (file.metadata()?.len() as usize / DIRECT_BLOCK + 1) * DIRECT_BLOCK;
    if buffer.len() < blocks + DIRECT_BLOCK {
        buffer.resize(blocks + DIRECT_BLOCK, 0);
    }
    let start = buffer.as_ptr().align_offset(DIRECT_BLOCK);
    let mut filled = 0;
    while filled < blocks {
        let want = (blocks - filled).min(DIRECT_READ);
        let n = file.read(&mut buffer[start + filled..start + filled + want])?;
        filled += n;
        // A short read is the end of the file.
        if n < want {
            break;
        }
    }
    buffer.copy_within(start..start + filled, 0);
    buffer.truncate(filled);
    Ok(())
}

/// The checks that need no other record: the CRC (done by the walk) and the payload digest (made
/// the way the segment's version says).
fn check_unordered(bytes: &[u8], item: FrameItem<'_>, hash: PayloadHash) -> CheckedItem {
    match item {
        FrameItem::Frame { offset, body } => {
            let start = offset as usize + FRAME_HEADER_LEN;
            let payload_ok = match decode_record(body) {
                Ok(Record::Event(e)) => e.payload.is_none_or(|p| hash.digest(p) == e.payload_digest),
                _ => true,
            };
            debug_assert_eq!(&bytes[start..start + body.len()], body);
            CheckedItem::Frame { offset, body: start..start + body.len(), payload_ok }
        }
        FrameItem::Fault { offset, fault, resume_at } => CheckedItem::Fault { offset, fault, resume_at },
    }
}

/// Per-session state while walking the ledger.
struct SessionState {
    last_seq: u64,
    last_hash: Hash,
    closed: bool,
    /// The head moved since its last Merkle leaf; a checkpoint must not pass with this set.
    head_unlogged: bool,
}

struct Verifier<'o> {
    options: &'o VerifyOptions,
    report: VerifyReport,
    next_ledger_seq: u64,
    global_head: Hash,
    tree: CompactTree,
    sessions: HashMap<[u8; 16], SessionState>,
    key: Option<VerifyingKey>,
    /// For the exported checkpoint: the global head after its last covered record, and the root
    /// when the tree had its size.
    external_global_head: Option<Hash>,
    external_root: Option<Hash>,
    /// The comparison with the index, when asked for and there is one.
    index: Option<IndexComparison>,
    /// A record the last segment ends inside: a problem unless a writer is running (known only
    /// once everything is read).
    torn_tail: Option<(Problem, UnfinishedTail)>,
}

// === impl Verifier ===

impl<'o> Verifier<'o> {
    fn new(options: &'o VerifyOptions) -> Verifier<'o> {
        let mut v = Verifier {
            options,
            report: VerifyReport::default(),
            next_ledger_seq: 0,
            global_head: [0; 32],
            tree: CompactTree::default(),
            sessions: HashMap::new(),
            key: options.public_key,
            external_global_head: None,
            external_root: None,
            index: None,
            torn_tail: None,
        };
        if let Some(cp) = &options.checkpoint {
            if cp.n_records == 0 {
                v.external_global_head = Some([0; 32]);
            }
            if cp.tree_size == 0 {
                v.external_root = Some(v.tree.root());
            }
        }
        v
    }

    fn problem(&mut self, problem: Problem) {
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(problem);
        } else {
            self.report.problems_not_listed += 1;
        }
    }

    fn verify_chunk(&mut self, chunk: &Chunk, is_last: bool) {
        let segment_idx = chunk.segment_idx;
        let bytes = &chunk.bytes[..];
        let at = |offset: u64, kind| Problem {
            segment_idx: Some(segment_idx),
            offset: Some(offset),
            ledger_seq: None,
            session: None,
            seq: None,
            kind,
        };
        match &chunk.header {
            None => {}
            Some(Err(e)) => {
                let problem = at(0, ProblemKind::BadSegmentHeader { reason: e.to_string() });
                // A segment being created is empty or shorter than its header for a moment.
                if is_last && bytes.len() < SEGMENT_HEADER_LEN {
                    self.torn_tail = Some((problem, UnfinishedTail { segment_idx, offset: 0, bytes: bytes.len() as u64 }));
                    return;
                }
                return self.problem(problem);
            }
            Some(Ok(header)) => {
                if header.segment_idx != segment_idx {
                    let reason = format!("header says segment {} but the file name says {segment_idx}", header.segment_idx);
                    self.problem(at(0, ProblemKind::BadSegmentHeader { reason }));
                }
                if header.first_ledger_seq != self.next_ledger_seq {
                    self.problem(at(0, ProblemKind::SegmentStartsAt { expected: self.next_ledger_seq, found: header.first_ledger_seq }));
                }
            }
        }
        for item in &chunk.items {
            match *item {
                CheckedItem::Frame { offset, ref body, payload_ok } => {
                    self.report.records += 1;
                    match decode_record(&bytes[body.clone()]) {
                        Ok(record) => self.verify_record(segment_idx, offset, &record, payload_ok),
                        Err(e) => self.problem(at(offset, ProblemKind::Undecodable { reason: e.to_string() })),
                    }
                }
                CheckedItem::Fault { offset, fault, resume_at } => {
                    let mut problem = at(offset, ProblemKind::BadFrame { fault });
                    problem.session = claimed_session(&bytes[offset as usize..]);
                    // The file ends inside a record at the end of the last segment: a record being
                    // written, if a writer is running (decided once everything is read). A damaged
                    // frame (a bad length or CRC) is never one, since a reader sees a prefix of
                    // what the writer wrote; with the flag it is accepted too, as the rule recovery
                    // uses to cut a tail (nothing valid after it) would cut it.
                    let at_the_end = is_last && resume_at.is_none();
                    if at_the_end && (fault == FrameFault::Incomplete || self.options.allow_unsealed_tail) {
                        let tail = UnfinishedTail { segment_idx, offset, bytes: bytes.len() as u64 - offset };
                        self.torn_tail = Some((problem, tail));
                        continue;
                    }
                    self.problem(problem);
                }
            }
        }
    }

    fn verify_record(&mut self, segment_idx: u64, offset: u64, record: &Record<'_>, payload_ok: bool) {
        let (ledger_seq, session, seq) = match record {
            Record::Event(e) => (e.ledger_seq, Some(e.session_id), Some(e.seq)),
            Record::Head(h) => (h.ledger_seq, Some(h.leaf.session_id), Some(h.leaf.seq)),
            Record::Checkpoint(c) => (c.ledger_seq, None, None),
        };
        let at = |kind| Problem {
            segment_idx: Some(segment_idx),
            offset: Some(offset),
            ledger_seq: Some(ledger_seq),
            session: session.map(SessionId::from_bytes),
            seq,
            kind,
        };
        if ledger_seq != self.next_ledger_seq {
            self.problem(at(ProblemKind::LedgerSeq { expected: self.next_ledger_seq, found: ledger_seq }));
        }
        match record {
            Record::Event(e) => {
                self.report.events += 1;
                if let Some(index) = &mut self.index {
                    index.fold(e, segment_idx, offset);
                }
                if !payload_ok {
                    self.problem(at(ProblemKind::PayloadDigest));
                }
                let problem = self.follow_chain(e);
                if let Some(kind) = problem {
                    self.problem(at(kind));
                }
            }
            Record::Head(h) => {
                self.report.leaves += 1;
                if h.leaf_index != self.tree.size() {
                    self.problem(at(ProblemKind::LeafIndex { expected: self.tree.size(), found: h.leaf_index }));
                }
                match self.sessions.get_mut(&h.leaf.session_id) {
                    None => self.problem(at(ProblemKind::LeafForUnknownSession)),
                    Some(state) => {
                        let matches = state.last_seq == h.leaf.seq && state.last_hash == h.leaf.head_hash && state.closed == h.leaf.closed;
                        state.head_unlogged = false;
                        if !matches {
                            let session_seq = state.last_seq;
                            self.problem(at(ProblemKind::LeafMismatch { leaf_seq: h.leaf.seq, session_seq }));
                        }
                    }
                }
                self.tree.push(leaf_hash(&h.leaf));
                if let Some(cp) = &self.options.checkpoint {
                    if self.tree.size() == cp.tree_size {
                        self.external_root = Some(self.tree.root());
                    }
                }
            }
            Record::Checkpoint(c) => self.verify_checkpoint(segment_idx, offset, c),
        }
        let (record_type, entry) = entry_hash(record);
        self.global_head = global_link(&self.global_head, ledger_seq, record_type, &entry);
        self.next_ledger_seq = ledger_seq + 1;
        if record_type == RecordType::Checkpoint {
            self.report.unsealed_records = 0;
        } else {
            self.report.unsealed_records += 1;
        }
        if let Some(cp) = &self.options.checkpoint {
            if cp.n_records == ledger_seq + 1 {
                self.external_global_head = Some(self.global_head);
            }
        }
    }

    /// Checks an event against its session's chain and moves the chain on.
    fn follow_chain(&mut self, e: &crate::format::EventRecord<'_>) -> Option<ProblemKind> {
        let Some(state) = self.sessions.get_mut(&e.session_id) else {
            let is_start = e.seq == 0 && e.kind == kind::SESSION_START.as_str();
            let expected = chain_hash(&[0; 32], e.committed);
            self.sessions.insert(
                e.session_id,
                SessionState {
                    last_seq: e.seq,
                    last_hash: e.chain_hash,
                    closed: e.kind == kind::SESSION_END.as_str(),
                    head_unlogged: true,
                },
            );
            return if !is_start {
                Some(ProblemKind::NoSessionStart)
            } else if expected != e.chain_hash {
                Some(ProblemKind::ChainBroken)
            } else {
                None
            };
        };
        let expected_seq = state.last_seq + 1;
        let problem = if state.closed {
            Some(ProblemKind::EventAfterEnd)
        } else if e.seq < expected_seq {
            Some(ProblemKind::SeqRepeated { expected: expected_seq, found: e.seq })
        } else if e.seq > expected_seq {
            Some(ProblemKind::SeqGap { expected: expected_seq, found: e.seq })
        } else if chain_hash(&state.last_hash, e.committed) != e.chain_hash {
            Some(ProblemKind::ChainBroken)
        } else {
            None
        };
        if e.seq >= expected_seq {
            state.last_seq = e.seq;
            state.last_hash = e.chain_hash;
        }
        state.closed |= e.kind == kind::SESSION_END.as_str();
        state.head_unlogged = true;
        problem
    }

    fn verify_checkpoint(&mut self, segment_idx: u64, offset: u64, c: &CheckpointRecord) {
        self.report.checkpoints += 1;
        let at = |kind| Problem {
            segment_idx: Some(segment_idx),
            offset: Some(offset),
            ledger_seq: Some(c.ledger_seq),
            session: None,
            seq: None,
            kind,
        };
        let body = &c.body;
        if body.n_records != c.ledger_seq {
            self.problem(at(ProblemKind::CheckpointCount { expected: c.ledger_seq, found: body.n_records }));
        }
        if body.tree_size != self.tree.size() {
            self.problem(at(ProblemKind::CheckpointTreeSize { expected: self.tree.size(), found: body.tree_size }));
        } else if body.root != self.tree.root() {
            self.problem(at(ProblemKind::CheckpointRoot));
        }
        if body.global_head != self.global_head {
            self.problem(at(ProblemKind::CheckpointGlobalHead));
            // Go on from the signed value, so one damaged record is reported once, not at every
            // later checkpoint.
            self.global_head = body.global_head;
        }
        let mut unlogged: Vec<[u8; 16]> = self.sessions.iter().filter(|(_, s)| s.head_unlogged).map(|(id, _)| *id).collect();
        unlogged.sort();
        for id in unlogged {
            let mut problem = at(ProblemKind::HeadNotInLog);
            problem.session = Some(SessionId::from_bytes(id));
            self.problem(problem);
            if let Some(state) = self.sessions.get_mut(&id) {
                state.head_unlogged = false;
            }
        }
        let key = match self.key {
            Some(key) => key,
            None => match VerifyingKey::from_bytes(&c.public_key) {
                Ok(key) => {
                    self.key = Some(key);
                    key
                }
                Err(_) => return self.problem(at(ProblemKind::BadSignature)),
            },
        };
        self.report.public_key = Some(key.to_bytes());
        if c.public_key != key.to_bytes() {
            self.problem(at(ProblemKind::CheckpointKey { expected: hex::encode(key.to_bytes()), found: hex::encode(c.public_key) }));
        }
        if !signature_valid(&key, body, &c.signature) {
            self.problem(at(ProblemKind::BadSignature));
        }
        self.report.last_checkpoint = Some(ExportedCheckpoint::from_record(c));
    }

    fn finish(mut self, started: Instant) -> VerifyReport {
        let tail_expected = self.report.writer_running || self.options.allow_unsealed_tail;
        if let Some((problem, tail)) = self.torn_tail.take() {
            if tail_expected {
                self.report.unfinished_tail = Some(tail);
            } else {
                self.problem(problem);
            }
        }
        if self.report.unsealed_records > 0 && !tail_expected && self.report.records > 0 {
            let records = self.report.unsealed_records;
            self.problem(Problem::at_ledger(ProblemKind::UnsealedTail { records }));
        }
        if let Some(cp) = self.options.checkpoint.clone() {
            self.check_extension(&cp);
        }
        self.report.sessions = self.sessions.len() as u64;
        self.report.open_sessions = self.sessions.values().filter(|s| !s.closed).count() as u64;
        self.report.elapsed = started.elapsed();
        self.report
    }

    /// The ledger extends `cp` when cp is validly signed by the ledger's key, and the records and
    /// leaves it covers are still there, unchanged.
    fn check_extension(&mut self, cp: &ExportedCheckpoint) {
        let fail = |reason: String| Problem::at_ledger(ProblemKind::NotExtension { reason });
        let body = match cp.body() {
            Ok(body) => body,
            Err(reason) => return self.problem(fail(reason)),
        };
        let Some(key) = cp.verifying_key() else {
            return self.problem(fail("its public key is not a valid Ed25519 key".into()));
        };
        let signature = cp.signature_bytes().unwrap_or([0; 64]);
        if !signature_valid(&key, &body, &signature) {
            return self.problem(fail("its signature does not verify with its own public key".into()));
        }
        if let Some(ledger_key) = self.key {
            if ledger_key != key {
                return self.problem(fail(format!(
                    "it was signed by key {} but the ledger's checkpoints are signed by {}: the ledger was re-signed or replaced",
                    hex::encode(key.as_bytes()),
                    hex::encode(ledger_key.as_bytes())
                )));
            }
        }
        if self.next_ledger_seq < cp.n_records || self.tree.size() < cp.tree_size {
            return self.problem(fail(format!(
                "the checkpoint covers {} records and {} session heads but the ledger has only {} and {}: it was truncated or rolled back",
                cp.n_records,
                cp.tree_size,
                self.next_ledger_seq,
                self.tree.size()
            )));
        }
        if self.external_global_head != Some(body.global_head) {
            self.problem(fail(format!(
                "records among the first {} differ from those the checkpoint signed: history was rewritten",
                cp.n_records
            )));
        }
        if self.external_root != Some(body.root) {
            self.problem(fail(format!(
                "the first {} session heads differ from those the checkpoint signed: history was rewritten",
                cp.tree_size
            )));
        }
    }
}

fn signature_valid(key: &VerifyingKey, body: &CheckpointBody, signature: &[u8; 64]) -> bool {
    key.verify_strict(&checkpoint_message(body), &Signature::from_bytes(signature)).is_ok()
}

/// The session id a damaged event frame claims, when enough of it is left to read one. It may be
/// wrong (the damage may be in the id); the session's chain checks name the right one too.
fn claimed_session(frame: &[u8]) -> Option<SessionId> {
    let body = frame.get(FRAME_HEADER_LEN..)?;
    let id_at = match body.first().copied()? {
        t if t == RecordType::Event as u8 => 9,
        t if t == RecordType::Head as u8 => 17,
        _ => return None,
    };
    let id: [u8; 16] = body.get(id_at..id_at + 16)?.try_into().ok()?;
    Some(SessionId::from_bytes(id))
}

// === impl Problem ===

impl Problem {
    fn at_ledger(kind: ProblemKind) -> Problem {
        Problem { segment_idx: None, offset: None, ledger_seq: None, session: None, seq: None, kind }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(segment), Some(offset)) = (self.segment_idx, self.offset) {
            write!(f, "segment {segment} offset {offset}")?;
            if let Some(ledger_seq) = self.ledger_seq {
                write!(f, " (record {ledger_seq})")?;
            }
            f.write_str(": ")?;
        }
        if let Some(session) = self.session {
            write!(f, "session {session}")?;
            if let Some(seq) = self.seq {
                write!(f, " seq {seq}")?;
            }
            f.write_str(": ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::MissingSegment { idx } => write!(f, "segment {idx} is missing"),
            ProblemKind::BadSegmentHeader { reason } => write!(f, "bad segment header: {reason}"),
            ProblemKind::SegmentStartsAt { expected, found } => write!(f, "segment starts at record {found} but the previous segment ended before record {expected}"),
            ProblemKind::BadFrame { fault } => write!(f, "damaged record: {fault}"),
            ProblemKind::Undecodable { reason } => write!(f, "record cannot be decoded: {reason}"),
            ProblemKind::LedgerSeq { expected, found } => write!(f, "record says it is record {found} but it is in the place of record {expected}: records were removed, duplicated or moved"),
            ProblemKind::PayloadDigest => f.write_str("payload does not match its digest: the payload was altered"),
            ProblemKind::NoSessionStart => f.write_str("first record of the session is not its session.start at seq 0: earlier records were removed, or this record was altered"),
            ProblemKind::SeqGap { expected, found } => write!(f, "seq {expected} expected but {found} found: records of the session were removed"),
            ProblemKind::SeqRepeated { expected, found } => write!(f, "seq {expected} expected but {found} found again: records of the session were duplicated or reordered"),
            ProblemKind::ChainBroken => f.write_str("hash chain broken: this record, or the session's previous record, was altered"),
            ProblemKind::EventAfterEnd => f.write_str("event after the session's session.end"),
            ProblemKind::LeafIndex { expected, found } => write!(f, "Merkle leaf {found} is where leaf {expected} belongs: session heads were removed or moved"),
            ProblemKind::LeafForUnknownSession => f.write_str("session head for a session with no records"),
            ProblemKind::LeafMismatch { leaf_seq, session_seq } => write!(f, "session head says the session is at seq {leaf_seq} but its records end at seq {session_seq} or hash differently: the session's last records were removed or altered"),
            ProblemKind::HeadNotInLog => f.write_str("the session's latest records are not covered by a session head before this checkpoint: its head record was removed"),
            ProblemKind::CheckpointCount { expected, found } => write!(f, "checkpoint says it covers {found} records but it is record {expected}"),
            ProblemKind::CheckpointTreeSize { expected, found } => write!(f, "checkpoint says the Merkle log has {found} session heads but there are {expected}"),
            ProblemKind::CheckpointRoot => f.write_str("checkpoint's Merkle root does not match the session heads before it"),
            ProblemKind::CheckpointGlobalHead => f.write_str("checkpoint's global chain value does not match the records before it: records were altered, removed or reordered"),
            ProblemKind::CheckpointKey { expected, found } => write!(f, "checkpoint signed by key {found}, expected {expected}"),
            ProblemKind::BadSignature => f.write_str("checkpoint signature does not verify"),
            ProblemKind::UnsealedTail { records } => write!(f, "the last {records} records are not covered by a signed checkpoint and no witness holds the ledger: witness crashed and has not restarted yet (--allow-unsealed-tail accepts that), or the ledger was truncated"),
            ProblemKind::NotExtension { reason } => write!(f, "the ledger does not extend the given checkpoint: {reason}"),
        }
    }
}

// === impl ExportedCheckpoint ===

impl ExportedCheckpoint {
    pub fn from_record(c: &CheckpointRecord) -> ExportedCheckpoint {
        ExportedCheckpoint {
            tree_size: c.body.tree_size,
            root: hex::encode(c.body.root),
            n_records: c.body.n_records,
            global_head: hex::encode(c.body.global_head),
            time_ns: c.body.time_ns,
            public_key: hex::encode(c.public_key),
            signature: hex::encode(c.signature),
        }
    }

    /// The signed body, or why the hex fields are malformed.
    pub fn body(&self) -> Result<CheckpointBody, String> {
        let hash = |name: &str, text: &str| -> Result<Hash, String> {
            hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| format!("its {name} is not 64 hex digits"))
        };
        Ok(CheckpointBody {
            tree_size: self.tree_size,
            root: hash("root", &self.root)?,
            n_records: self.n_records,
            global_head: hash("global_head", &self.global_head)?,
            time_ns: self.time_ns,
        })
    }

    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        let bytes: [u8; 32] = hex::decode(&self.public_key).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }

    pub fn signature_bytes(&self) -> Option<[u8; 64]> {
        hex::decode(&self.signature).ok()?.try_into().ok()
    }

    /// Whether the checkpoint is validly signed by its own key.
    pub fn signature_valid(&self) -> bool {
        match (self.body(), self.verifying_key(), self.signature_bytes()) {
            (Ok(body), Some(key), Some(sig)) => signature_valid(&key, &body, &sig),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_segment;

    /// Whole blocks, partial blocks, several direct reads, an empty file: the bytes read are the
    /// file's, also into a reused buffer that holds more than the file. On a file system without
    /// direct reads (tmpfs, when /dev/shm is one) the plain read gives the same.
    #[test]
    fn a_segment_is_read_whole_directly_or_not() {
        let disk = tempfile::tempdir().unwrap();
        let shm = std::path::Path::new("/dev/shm");
        let dirs: Vec<std::path::PathBuf> = if shm.is_dir() {
            vec![disk.path().to_path_buf(), tempfile::tempdir_in(shm).unwrap().keep()]
        } else {
            vec![disk.path().to_path_buf()]
        };
        for dir in &dirs {
            let mut buffer = vec![0xAA; 20 << 20];
            for len in [0, 1, 4095, 4096, 4097, (8 << 20) + 3, 10_001] {
                let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let path = dir.join(format!("{len}.seg"));
                std::fs::write(&path, &bytes).unwrap();
                read_segment(&path, &mut buffer).unwrap();
                assert!(buffer == bytes, "{}: {len} bytes read back as {} bytes", dir.display(), buffer.len());
            }
        }
        for dir in &dirs[1..] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
