//! Segment files on disk: their names, listing them in order, and walking the frames of one.
//!
//! This module reads and names files; it does not decide what a damaged frame means (recovery
//! cuts a torn tail, verify reports it).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::format::{decode_frame, decode_record, Frame, FrameProblem, Record, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// One segment file found in the segments directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    pub idx: u64,
    pub path: PathBuf,
}

/// One step of walking a segment's frames.
#[derive(Debug)]
pub enum FrameItem<'a> {
    /// A frame whose CRC matched, at `offset` from the start of the file.
    Frame { offset: u64, body: &'a [u8] },
    /// Bytes at `offset` that are not a valid frame; the walk resumes at `resume_at`, the next
    /// offset where a valid record starts, or stops when there is none.
    Fault { offset: u64, fault: FrameFault, resume_at: Option<u64> },
}

/// What is wrong with the bytes at a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameFault {
    #[error("the file ends inside a record (torn write or truncation)")]
    Incomplete,
    #[error("{0}")]
    Corrupt(FrameProblem),
}

/// Walks the frames of one segment's bytes (header included), resynchronising after damage.
pub struct FrameIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The ledger_seq expected next; resynchronisation only accepts records at or after it,
    /// which keeps it from mistaking payload bytes for a frame.
    next_ledger_seq: u64,
}

pub fn segment_file_name(idx: u64) -> String {
    format!("{idx:012}.seg")
}

/// The segment files in `dir`, in index order. Files with other names are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else { continue };
        if stem.len() != 12 || !stem.bytes().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let idx = stem.parse().expect("twelve digits");
        out.push(SegmentFile { idx, path: entry.path() });
    }
    out.sort_by_key(|s| s.idx);
    Ok(out)
}

impl<'a> FrameIter<'a> {
    /// Walks `bytes`, a whole segment file whose header has already been checked.
    pub fn new(bytes: &'a [u8], first_ledger_seq: u64) -> FrameIter<'a> {
        FrameIter { bytes, pos: SEGMENT_HEADER_LEN.min(bytes.len()), next_ledger_seq: first_ledger_seq }
    }

    /// Continues from `offset` (used by the index to resume where it stopped).
    pub fn starting_at(bytes: &'a [u8], offset: u64, next_ledger_seq: u64) -> FrameIter<'a> {
        FrameIter { bytes, pos: (offset as usize).min(bytes.len()), next_ledger_seq }
    }

    /// Finds the next offset after `from` where a record with a plausible ledger_seq starts.
    fn resync(&self, from: usize) -> Option<usize> {
        let max_seq_gap = (self.bytes.len() / FRAME_HEADER_LEN) as u64 + 1;
        (from + 1..self.bytes.len().saturating_sub(FRAME_HEADER_LEN + 9)).find(|&at| {
            let rest = &self.bytes[at..];
            let record_type = rest[FRAME_HEADER_LEN];
            if !(1..=3).contains(&record_type) {
                return false;
            }
            let seq_bytes: [u8; 8] = rest[FRAME_HEADER_LEN + 1..FRAME_HEADER_LEN + 9].try_into().expect("8 bytes");
            let ledger_seq = u64::from_le_bytes(seq_bytes);
            if ledger_seq < self.next_ledger_seq || ledger_seq > self.next_ledger_seq + max_seq_gap {
                return false;
            }
            matches!(decode_frame(rest), Frame::Complete { body, .. } if decode_record(body).is_ok())
        })
    }
}

impl<'a> Iterator for FrameIter<'a> {
    type Item = FrameItem<'a>;

    fn next(&mut self) -> Option<FrameItem<'a>> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let offset = self.pos as u64;
        let fault = match decode_frame(&self.bytes[self.pos..]) {
            Frame::Complete { body, frame_len } => {
                self.pos += frame_len;
                if let Ok(Record::Event(_) | Record::Head(_) | Record::Checkpoint(_)) = decode_record(body) {
                    let seq_bytes: [u8; 8] = body[1..9].try_into().expect("a decoded body has a ledger_seq");
                    self.next_ledger_seq = u64::from_le_bytes(seq_bytes) + 1;
                }
                return Some(FrameItem::Frame { offset, body });
            }
            Frame::Incomplete => FrameFault::Incomplete,
            Frame::Corrupt(problem) => FrameFault::Corrupt(problem),
        };
        let resume_at = self.resync(self.pos);
        self.pos = resume_at.unwrap_or(self.bytes.len());
        Some(FrameItem::Fault { offset, fault, resume_at: resume_at.map(|r| r as u64) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{encode_head, encode_segment_header, seal_frame, Leaf, SegmentHeader, FORMAT_VERSION};

    fn segment_with_heads(n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = encode_segment_header(SegmentHeader { version: FORMAT_VERSION, segment_idx: 0, first_ledger_seq: 0 }).to_vec();
        let mut offsets = Vec::new();
        for i in 0..n {
            let leaf = Leaf { session_id: [i as u8; 16], seq: i, head_hash: [i as u8; 32], closed: false };
            let mut frame = encode_head(i, &leaf);
            seal_frame(&mut frame, i);
            offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(&frame);
        }
        (bytes, offsets)
    }

    #[test]
    fn walks_every_frame_of_an_intact_segment() {
        let (bytes, offsets) = segment_with_heads(5);
        let seen: Vec<u64> = FrameIter::new(&bytes, 0)
            .map(|item| match item {
                FrameItem::Frame { offset, .. } => offset,
                FrameItem::Fault { .. } => panic!("no faults expected"),
            })
            .collect();
        assert_eq!(seen, offsets);
    }

    #[test]
    fn resumes_after_a_damaged_frame_and_reports_a_torn_tail() {
        let (mut bytes, offsets) = segment_with_heads(5);
        bytes[offsets[2] as usize + 20] ^= 0xff;
        bytes.truncate(bytes.len() - 3);
        let items: Vec<String> = FrameIter::new(&bytes, 0)
            .map(|item| match item {
                FrameItem::Frame { offset, .. } => format!("ok@{offset}"),
                FrameItem::Fault { offset, fault, resume_at } => format!("{fault}@{offset}->{resume_at:?}"),
            })
            .collect();
        assert_eq!(items.len(), 5, "{items:?}");
        assert_eq!(items[2], format!("CRC32C mismatch@{}->Some({})", offsets[2], offsets[3]));
        assert_eq!(items[4], format!("the file ends inside a record (torn write or truncation)@{}->None", offsets[4]));
    }

    #[test]
    fn segment_names_sort_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        for idx in [10u64, 2, 0] {
            fs::write(dir.path().join(segment_file_name(idx)), b"").unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"").unwrap();
        fs::write(dir.path().join("12.seg"), b"").unwrap();
        let found: Vec<u64> = list_segments(dir.path()).unwrap().into_iter().map(|s| s.idx).collect();
        assert_eq!(found, vec![0, 2, 10]);
    }
}
