//! The index's packed form of events: one `event_blocks` row holds a session's events of one
//! commit one after the other in this form. The layout is the index's own (derived data, rebuilt
//! when the schema version changes), not part of the recording format.
//!
//! Reading never trusts a block: a block whose bytes are not a whole number of events is refused,
//! never read past its end.

use super::{EventSummary, IndexedEvent};

/// Fixed part of a packed event: seq, ledger_seq, time_ns, payload_len, segment_idx, offset (8
/// bytes each, little-endian), direction (1), kind length (1), summary length (4).
pub(crate) const PACKED_FIXED_LEN: usize = 6 * 8 + 1 + 1 + 4;

/// One event of a block, borrowing its text from the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedEvent<'a> {
    pub seq: u64,
    pub ledger_seq: u64,
    pub time_ns: i64,
    pub payload_len: u64,
    pub segment_idx: u64,
    pub offset: u64,
    pub direction: u8,
    pub kind: &'a [u8],
    pub summary: &'a [u8],
    /// The whole packed event, as [`pack_event`] wrote it.
    pub bytes: &'a [u8],
}

/// A block's bytes end inside an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DamagedBlock;

/// The events of one block, in the order they were packed; stops after a [`DamagedBlock`].
pub(crate) struct PackedEvents<'a> {
    rest: &'a [u8],
}

/// Appends one event to a block: the fixed fields, then the kind and the summary (UTF-8).
pub(crate) fn pack_event(out: &mut Vec<u8>, indexed: &IndexedEvent) {
    let e = &indexed.event;
    let kind = e.kind.as_str().as_bytes();
    out.reserve(PACKED_FIXED_LEN + kind.len() + e.summary.len());
    for n in [e.seq, indexed.ledger_seq, e.time_ns as u64, e.payload_len, indexed.segment_idx, indexed.offset] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.push(e.direction);
    // Kinds are at most 64 bytes (EventKind) and summaries are clipped to 240 characters.
    out.push(kind.len() as u8);
    out.extend_from_slice(&(e.summary.len() as u32).to_le_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(e.summary.as_bytes());
}

pub(crate) fn packed_events(block: &[u8]) -> PackedEvents<'_> {
    PackedEvents { rest: block }
}

/// Unpacks a block's events onto `out`; None if the bytes are not a whole number of events.
pub(crate) fn unpack_events(bytes: &[u8], out: &mut Vec<EventSummary>) -> Option<()> {
    for event in packed_events(bytes) {
        out.push(event.ok()?.to_summary());
    }
    Some(())
}

// === impl PackedEvent ===

impl PackedEvent<'_> {
    pub(crate) fn to_summary(self) -> EventSummary {
        EventSummary {
            seq: self.seq,
            ledger_seq: self.ledger_seq,
            time_ns: self.time_ns,
            kind: String::from_utf8_lossy(self.kind).into_owned(),
            direction: self.direction,
            summary: String::from_utf8_lossy(self.summary).into_owned(),
            payload_len: self.payload_len,
            segment_idx: self.segment_idx,
            offset: self.offset,
        }
    }
}

// === impl PackedEvents ===

impl<'a> Iterator for PackedEvents<'a> {
    type Item = Result<PackedEvent<'a>, DamagedBlock>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest;
        // A damaged block ends the walk: nothing after the damage can be framed.
        self.rest = &[];
        let fixed = bytes.get(..PACKED_FIXED_LEN);
        let Some(fixed) = fixed else { return Some(Err(DamagedBlock)) };
        let u64_at = |i: usize| u64::from_le_bytes(fixed[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let kind_len = fixed[49] as usize;
        let summary_len = u32::from_le_bytes(fixed[50..54].try_into().expect("4 bytes")) as usize;
        let kind_end = PACKED_FIXED_LEN + kind_len;
        let Some(end) = kind_end.checked_add(summary_len).filter(|&end| end <= bytes.len()) else {
            return Some(Err(DamagedBlock));
        };
        self.rest = &bytes[end..];
        Some(Ok(PackedEvent {
            seq: u64_at(0),
            ledger_seq: u64_at(1),
            time_ns: u64_at(2) as i64,
            payload_len: u64_at(3),
            segment_idx: u64_at(4),
            offset: u64_at(5),
            direction: fixed[48],
            kind: &bytes[PACKED_FIXED_LEN..kind_end],
            summary: &bytes[kind_end..end],
            bytes: &bytes[..end],
        }))
    }
}

#[cfg(test)]
mod tests {
    use witness_core::EventKind;

    use super::*;
    use crate::index::IndexEvent;

    fn indexed(seq: u64, kind: &'static str, summary: &str) -> IndexedEvent {
        let event = IndexEvent {
            session_id: [7; 16],
            seq,
            time_ns: 1_700_000_000_000_000_000 + seq as i64,
            kind: EventKind::new(kind).unwrap(),
            direction: (seq % 3) as u8,
            summary: summary.to_string(),
            payload_len: seq * 100,
            start: None,
            end_reason: None,
            decided: Default::default(),
        };
        IndexedEvent { event, ledger_seq: seq + 1000, segment_idx: seq / 2, offset: 32 + seq * 400 }
    }

    #[test]
    fn packed_events_unpack_as_they_were() {
        let events = [
            indexed(0, "session.start", "bench opened bench (postgres)"),
            indexed(1, "pg.execute", ""),
            indexed(2, "pg.result", "SELECT 1 (1 rows) — ünïcödé"),
        ];
        let mut block = Vec::new();
        let mut ends = Vec::new();
        for e in &events {
            pack_event(&mut block, e);
            ends.push(block.len());
        }
        let mut out = Vec::new();
        unpack_events(&block, &mut out).unwrap();
        let expect: Vec<EventSummary> = events
            .iter()
            .map(|i| EventSummary {
                seq: i.event.seq,
                ledger_seq: i.ledger_seq,
                time_ns: i.event.time_ns,
                kind: i.event.kind.to_string(),
                direction: i.event.direction,
                summary: i.event.summary.clone(),
                payload_len: i.event.payload_len,
                segment_idx: i.segment_idx,
                offset: i.offset,
            })
            .collect();
        assert_eq!(out, expect);
        // Each event's bytes are what packing it wrote, so a block's events can be hashed alone.
        let starts = std::iter::once(0).chain(ends.iter().copied());
        for ((event, start), end) in packed_events(&block).zip(starts).zip(&ends) {
            assert_eq!(event.unwrap().bytes, &block[start..*end]);
        }
        // A damaged block is refused, never read past its end.
        for cut in [1, PACKED_FIXED_LEN, block.len() - 1] {
            assert_eq!(unpack_events(&block[..cut], &mut Vec::new()), None, "cut at {cut}");
            assert_eq!(packed_events(&block[..cut]).last(), Some(Err(DamagedBlock)), "cut at {cut}");
        }
    }
}
