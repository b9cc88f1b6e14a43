//! Opening an existing ledger: walk every segment once, cut a torn tail off the last one, and
//! rebuild the writer's state (positions, global chain, Merkle peaks, open sessions).
//!
//! Recovery checks framing and order only; the hashes are `verify`'s job. Damage anywhere but at
//! the very end of the last segment stops the ledger from opening: appending after damage would
//! bury it.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::Path;

use witness_core::kind;

use crate::error::LedgerError;
use crate::format::{decode_record, decode_segment_header, entry_hash, global_link, leaf_hash, Record, SEGMENT_HEADER_LEN};
use crate::merkle::CompactTree;
use crate::segment::{list_segments, FrameItem, FrameIter};
use crate::writer::{LastSegment, OpenHead, WriterStart};

/// Rebuilds the writer's starting state from the segments in `segments_dir`.
pub(crate) fn recover(segments_dir: &Path) -> Result<WriterStart, LedgerError> {
    let mut segments = list_segments(segments_dir).map_err(LedgerError::io("list", segments_dir))?;
    drop_unfinished_last_segment(&mut segments)?;
    let mut state = WriterStart {
        segments_dir: segments_dir.to_path_buf(),
        last_segment: None,
        next_ledger_seq: 0,
        global_head: [0; 32],
        tree: CompactTree::default(),
        open_sessions: BTreeMap::new(),
        unsealed_records: 0,
    };
    let n_segments = segments.len();
    for (position, segment) in segments.iter().enumerate() {
        if let Some(LastSegment { idx: prev, .. }) = state.last_segment {
            if segment.idx != prev + 1 {
                return Err(LedgerError::MissingSegment { dir: segments_dir.to_path_buf(), missing: prev + 1 });
            }
        }
        let bytes = fs::read(&segment.path).map_err(LedgerError::io("read", &segment.path))?;
        let header = decode_segment_header(&bytes).map_err(|source| LedgerError::BadSegment { segment: segment.path.clone(), source })?;
        if header.segment_idx != segment.idx {
            let source = crate::format::FormatError::SegmentHeader("segment index differs from the file name");
            return Err(LedgerError::BadSegment { segment: segment.path.clone(), source });
        }
        if header.first_ledger_seq != state.next_ledger_seq {
            return Err(LedgerError::OutOfOrder {
                segment: segment.path.clone(),
                offset: 0,
                expected: state.next_ledger_seq,
                found: header.first_ledger_seq,
            });
        }
        let mut valid_len = bytes.len() as u64;
        for item in FrameIter::new(&bytes, header.first_ledger_seq) {
            match item {
                FrameItem::Frame { offset, body } => {
                    let record =
                        decode_record(body).map_err(|source| LedgerError::Format { segment: segment.path.clone(), offset, source })?;
                    apply(&mut state, &record).map_err(|(expected, found)| LedgerError::OutOfOrder {
                        segment: segment.path.clone(),
                        offset,
                        expected,
                        found,
                    })?;
                }
                FrameItem::Fault { offset, fault, resume_at } => {
                    let is_last = position + 1 == n_segments;
                    if !is_last || resume_at.is_some() {
                        return Err(LedgerError::Damaged { segment: segment.path.clone(), offset, fault });
                    }
                    cut_torn_tail(&segment.path, offset, bytes.len() as u64)?;
                    valid_len = offset;
                    break;
                }
            }
        }
        state.last_segment = Some(LastSegment { idx: segment.idx, len: valid_len, version: header.version });
    }
    Ok(state)
}

/// Folds one record into the writer state; Err((expected, found)) when its ledger_seq is wrong.
fn apply(state: &mut WriterStart, record: &Record<'_>) -> Result<(), (u64, u64)> {
    let ledger_seq = match record {
        Record::Event(e) => e.ledger_seq,
        Record::Head(h) => h.ledger_seq,
        Record::Checkpoint(c) => c.ledger_seq,
    };
    if ledger_seq != state.next_ledger_seq {
        return Err((state.next_ledger_seq, ledger_seq));
    }
    let (record_type, entry) = entry_hash(record);
    state.global_head = global_link(&state.global_head, ledger_seq, record_type, &entry);
    state.next_ledger_seq += 1;
    match record {
        Record::Event(e) => {
            state.unsealed_records += 1;
            // A session stays in the map until its closing leaf is seen, so that a crash between
            // its session.end and that leaf is repaired by the next seal.
            let head = state.open_sessions.entry(e.session_id).or_insert(OpenHead {
                seq: e.seq,
                hash: e.chain_hash,
                leafed_seq: None,
                closed: false,
            });
            head.seq = e.seq;
            head.hash = e.chain_hash;
            head.closed |= e.kind == kind::SESSION_END.as_str();
        }
        Record::Head(h) => {
            state.unsealed_records += 1;
            state.tree.push(leaf_hash(&h.leaf));
            if h.leaf.closed {
                state.open_sessions.remove(&h.leaf.session_id);
            } else if let Some(head) = state.open_sessions.get_mut(&h.leaf.session_id) {
                head.leafed_seq = Some(h.leaf.seq);
            }
        }
        Record::Checkpoint(_) => state.unsealed_records = 0,
    }
    Ok(())
}

/// A crash while a segment was being created can leave a file shorter than its header; such a
/// file holds no records and is removed.
fn drop_unfinished_last_segment(segments: &mut Vec<crate::segment::SegmentFile>) -> Result<(), LedgerError> {
    let Some(last) = segments.last() else { return Ok(()) };
    let len = fs::metadata(&last.path).map_err(LedgerError::io("stat", &last.path))?.len();
    if len < SEGMENT_HEADER_LEN as u64 {
        tracing::warn!(segment = %last.path.display(), bytes = len, "removing a segment file left unfinished by a crash");
        fs::remove_file(&last.path).map_err(LedgerError::io("remove", &last.path))?;
        segments.pop();
    }
    Ok(())
}

fn cut_torn_tail(path: &Path, offset: u64, file_len: u64) -> Result<(), LedgerError> {
    tracing::warn!(
        segment = %path.display(),
        offset,
        bytes_cut = file_len - offset,
        "cut a torn tail: the last record of the last segment is incomplete or damaged, as a write cut short by a crash leaves it; appends are acknowledged only once written, so it held no acknowledged record unless the file was damaged afterwards"
    );
    let file = OpenOptions::new().write(true).open(path).map_err(LedgerError::io("open", path))?;
    file.set_len(offset).map_err(LedgerError::io("truncate", path))?;
    file.sync_all().map_err(LedgerError::io("fsync", path))
}
