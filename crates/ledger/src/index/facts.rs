//! A session's facts from its own records, the index serving only to find them: what the review
//! API and `witness sessions` show, so that an edited session row changes nothing they show, and
//! what makes them say so when a row disagrees with its records.
//!
//! It reads two records per session, its `session.start` and its latest, not the events between:
//! readers of events check each one they read with [`check_indexed_event`], and verify compares
//! everything (`check.rs`). It does not search for records the index lost; a session missing from
//! the index is found by verify.

use std::path::Path;

use witness_core::{kind, SessionId};

use super::check::{event_difference, session_differences, LedgerFacts, RecordedEvent};
use super::{clip_summary, session_info_from_attrs, EventSummary, Index, IndexProblemKind, SessionSummary};
use crate::error::LedgerError;
use crate::read::{read_event_at, StoredEvent};

/// A session as its records tell it, and where the index disagrees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedSession {
    /// From the session's `session.start` (identity, connection, protocol, task, client address,
    /// start) and its latest record (event count, end). Where the index does not lead to those
    /// records, the row's values, and `differences` says so.
    pub summary: SessionSummary,
    /// The ledger position of the session's latest record, as read.
    pub last_ledger_seq: Option<u64>,
    /// How the index's row and places differ from the records; empty when they agree.
    pub differences: Vec<IndexProblemKind>,
}

// === impl Index ===

impl Index {
    /// Reads `row`'s session from its records (`segments_dir` holds the ledger's segments). Open
    /// the index with [`Index::open_snapshot`], or the row and its events may be of two moments.
    pub fn recorded_session(&self, segments_dir: &Path, row: &SessionSummary) -> Result<RecordedSession, LedgerError> {
        let unchanged = |differences| RecordedSession { summary: row.clone(), last_ledger_seq: None, differences };
        // Rows and their first events are committed together, so a row without events was made.
        let Some((first, last)) = self.first_and_last_events(row.id)? else {
            return Ok(unchanged(vec![IndexProblemKind::UnknownSession]));
        };
        let start = match read_listed(segments_dir, row.id, &first) {
            Ok(start) if first.seq == 0 && start.kind == kind::SESSION_START.as_str() => start,
            Ok(other) => return Ok(unchanged(vec![IndexProblemKind::Misplaced { seq: first.seq, found: describe(&other) }])),
            Err(misplaced) => return Ok(unchanged(vec![misplaced])),
        };
        let latest = match read_listed(segments_dir, row.id, &last) {
            Ok(latest) => latest,
            Err(misplaced) => return Ok(unchanged(vec![misplaced])),
        };
        let info = session_info_from_attrs(&start.attrs);
        let ended = (latest.kind == kind::SESSION_END.as_str())
            .then(|| (latest.time_ns, latest.attrs.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string()));
        let facts = LedgerFacts {
            start: Some((info.clone(), start.time_ns)),
            ended: ended.clone(),
            n_events: latest.seq + 1,
            // Only the latest record was read; the index keeps the latest time of all, and the
            // counts of refused and held requests.
            last_event_ns: None,
            decided: None,
        };
        let differences = session_differences(row, &facts);
        let summary = SessionSummary {
            id: row.id,
            info,
            started_ns: start.time_ns,
            ended_ns: ended.as_ref().map(|(ns, _)| *ns),
            end_reason: ended.map(|(_, reason)| reason),
            n_events: latest.seq + 1,
            last_event_ns: latest.time_ns,
            // Counted over every event: the index's, which the background check compares.
            n_denied: row.n_denied,
            n_held: row.n_held,
        };
        Ok(RecordedSession { summary, last_ledger_seq: Some(latest.ledger_seq), differences })
    }
}

/// How the index's entry for one event differs from the record read at its place (`stored`), if
/// it does: another record there, or the same event listed with another kind, summary, time,
/// direction or payload size.
pub fn check_indexed_event(session: SessionId, listed: &EventSummary, stored: &StoredEvent) -> Option<IndexProblemKind> {
    if stored.session_id != session || stored.seq != listed.seq || stored.ledger_seq != listed.ledger_seq {
        return Some(IndexProblemKind::Misplaced { seq: listed.seq, found: describe(stored) });
    }
    let summary = clip_summary(&stored.summary);
    let recorded = RecordedEvent {
        kind: &stored.kind,
        summary: &summary,
        time_ns: stored.time_ns,
        direction: stored.direction.as_u8(),
        payload_len: stored.payload_len,
        place: (listed.ledger_seq, listed.segment_idx, listed.offset),
    };
    event_difference(listed, &recorded)
}

/// The record at an event's place, if it is that event of `session`.
fn read_listed(segments_dir: &Path, session: SessionId, listed: &EventSummary) -> Result<StoredEvent, IndexProblemKind> {
    let stored = read_event_at(segments_dir, listed.segment_idx, listed.offset).map_err(|e| IndexProblemKind::Misplaced {
        seq: listed.seq,
        found: format!("segment {} offset {}, where no event can be read ({e})", listed.segment_idx, listed.offset),
    })?;
    match check_indexed_event(session, listed, &stored) {
        Some(misplaced @ IndexProblemKind::Misplaced { .. }) => Err(misplaced),
        _ => Ok(stored),
    }
}

fn describe(stored: &StoredEvent) -> String {
    format!("record {}, which is seq {} ({}) of session {}", stored.ledger_seq, stored.seq, stored.kind, stored.session_id)
}
