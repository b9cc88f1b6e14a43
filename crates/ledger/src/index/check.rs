//! Comparing the index with the records: how `witness verify` and the review API's background
//! verification find an index that was edited (a session's identity, task or connection changed,
//! a row deleted or made up, an event summary or count changed).
//!
//! Both sides fold each session into one SHA-256 digest of the same bytes: its session row's
//! facts, its events in the index's packed form in seq order (kind, summary, time, place), and its
//! count and end. The index side reads one snapshot of the index; the ledger side folds the records
//! verify walks, up to the record that snapshot says the index covers (a running gateway's index
//! lags its records by one indexer poll). Only sessions whose digests differ are compared again,
//! field by field, to name what differs; that second pass reads the segments once more.
//!
//! Nothing here repairs the index: the running gateway rebuilds one found to differ
//! (`Ledger::rebuild_index`), and a stopped ledger's index is rebuilt when its file is deleted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use witness_core::SessionId;

use super::{index_event_from_record, packed::packed_events, Decided, EventSummary, Index, IndexedEvent, SessionSummary, SCHEMA_VERSION};
use crate::format::{decode_record, decode_segment_header, EventRecord, Hash, Record};
use crate::segment::{list_segments, FrameItem, FrameIter};

/// What comparing the index with the records found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IndexCheck {
    /// Not asked for, or there was no ledger to compare with.
    #[default]
    NotChecked,
    /// There is no index file: nothing reads a wrong one; it is built at the next start.
    Missing,
    Checked(IndexReport),
}

/// The outcome of a comparison of the index with the records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// The index covers the records before this one (its resume point); later records are not
    /// indexed yet and were not compared.
    pub records_compared: u64,
    /// Sessions in the index or the compared records.
    pub sessions_compared: u64,
    /// At most [`MAX_INDEX_PROBLEMS`], index-wide ones first, then by session.
    pub problems: Vec<IndexProblem>,
    pub problems_not_listed: u64,
}

/// A report lists this many index problems at most.
pub const MAX_INDEX_PROBLEMS: usize = 1000;
/// This many differing sessions at most are compared field by field; the others are named only.
const MAX_DESCRIBED_SESSIONS: usize = 50;

/// One way the index differs from the records, and the session it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexProblem {
    pub session: Option<SessionId>,
    pub kind: IndexProblemKind,
}

/// How the index differs from the records. Values are shown as they read in each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexProblemKind {
    /// The index cannot be read at all (not SQLite, a table gone, a value of the wrong type).
    Unreadable {
        reason: String,
    },
    /// The index names another ledger's key (or none).
    OtherLedger {
        index_key: Option<String>,
        ledger_key: String,
    },
    OtherSchema {
        found: Option<String>,
    },
    /// The index claims more records than the ledger has.
    Ahead {
        index_records: u64,
        ledger_records: u64,
    },
    /// The records have the session; the index has no row for it.
    MissingSession,
    /// The index has the session; the records covered have none of it.
    UnknownSession,
    /// A fact of the session row differs from what its records say.
    SessionField {
        field: &'static str,
        index: String,
        ledger: String,
    },
    /// A field of one event differs.
    EventField {
        seq: u64,
        field: &'static str,
        index: String,
        ledger: String,
    },
    /// The records have this event; the index does not list it.
    MissingEvent {
        seq: u64,
    },
    /// The index lists an event the records do not have.
    ExtraEvent {
        seq: u64,
    },
    /// The index places an event at a record that is not it.
    Misplaced {
        seq: u64,
        found: String,
    },
    /// A block of the session's events does not hold what its columns say.
    DamagedBlocks,
    /// Differs, not compared field by field (too many sessions differ, or it changed meanwhile).
    Differs,
}

/// The comparison while verify walks the records: the index side read up front, the ledger side
/// folded record by record.
pub(crate) struct IndexComparison {
    index: Result<IndexSide, IndexProblemKind>,
    folds: HashMap<[u8; 16], LedgerFold>,
    scratch: Vec<u8>,
}

/// One snapshot of the index, folded per session.
struct IndexSide {
    /// The index's resume point: it covers the records before it.
    covered: u64,
    ledger_key: Option<String>,
    schema: Option<String>,
    sessions: HashMap<[u8; 16], IndexedSession>,
    /// Rows or blocks whose session id is not 16 bytes.
    malformed_ids: u64,
}

struct IndexedSession {
    digest: Hash,
    /// A block's first seq or count does not match the events it holds, or it ends inside one.
    damaged: bool,
}

/// A session's digest being folded from its records.
enum LedgerFold {
    Open(Box<Sha256>, Tally),
    /// Closed by its `session.end`; anything after that spoils it (the index would not agree).
    Closed(Hash),
}

/// What a session row counts, as the records give it.
#[derive(Clone, Copy, Default)]
struct Tally {
    has_start: bool,
    n_events: u64,
    last_event_ns: i64,
    decided: Decisions,
}

/// Requests refused and held, as a session row counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Decisions {
    pub denied: u64,
    pub held: u64,
}

impl Decisions {
    fn add(&mut self, decided: Decided) {
        match decided {
            Decided::Denied => self.denied += 1,
            Decided::Held => self.held += 1,
            Decided::Nothing => {}
        }
    }
}

// === impl IndexComparison ===

impl IndexComparison {
    /// Reads the index at `path` (None when there is none) before the records are walked, so
    /// that everything it covers is on disk by the time the walk gets there.
    pub(crate) fn start(path: &Path) -> Option<IndexComparison> {
        if !path.exists() {
            return None;
        }
        Some(IndexComparison { index: IndexSide::read(path), folds: HashMap::new(), scratch: Vec::new() })
    }

    /// Folds one event record, at `offset` of segment `segment_idx`, if the index covers it.
    pub(crate) fn fold(&mut self, e: &EventRecord<'_>, segment_idx: u64, offset: u64) {
        let Ok(index) = &self.index else { return };
        if e.ledger_seq >= index.covered {
            return;
        }
        let indexed = IndexedEvent { event: index_event_from_record(e), ledger_seq: e.ledger_seq, segment_idx, offset };
        let fold = self.folds.entry(e.session_id).or_insert_with(|| {
            let mut hasher = Box::new(Sha256::new());
            let has_start = indexed.event.start.is_some();
            // A session whose first record is not its start has no row in the index either.
            if !has_start {
                self.scratch.clear();
                start_bytes(&mut self.scratch, None);
                hasher.update(&self.scratch);
            }
            LedgerFold::Open(hasher, Tally { has_start, ..Tally::default() })
        });
        let (hasher, tally) = match fold {
            LedgerFold::Open(hasher, tally) => (hasher, tally),
            LedgerFold::Closed(_) => {
                *fold = LedgerFold::Closed([0xFF; 32]);
                return;
            }
        };
        let scratch = &mut self.scratch;
        scratch.clear();
        if let Some(info) = &indexed.event.start {
            let start = StartFacts {
                identity: &info.identity,
                connection: &info.connection,
                protocol: info.protocol.as_str(),
                task: info.task.as_deref(),
                client_addr: info.client_addr.as_deref(),
                groups: &info.groups,
                started_ns: e.time_ns,
            };
            start_bytes(scratch, Some(start));
        }
        super::packed::pack_event(scratch, &indexed);
        hasher.update(&scratch[..]);
        tally.n_events += 1;
        tally.last_event_ns = tally.last_event_ns.max(e.time_ns);
        tally.decided.add(indexed.event.decided);
        if let Some(reason) = &indexed.event.end_reason {
            scratch.clear();
            // The index records an end on the session's row, so only a session with a row has one.
            let ended = tally.has_start.then_some((e.time_ns, reason.as_str()));
            finish_bytes(scratch, ended, tally.n_events, tally.last_event_ns, tally.decided);
            hasher.update(&scratch[..]);
            let digest = hasher.clone().finalize().into();
            *fold = LedgerFold::Closed(digest);
        }
    }

    /// Compares the two sides once the walk is done, and names what differs. `ledger_key` is the
    /// key the checkpoints were checked against (if any); `ledger_records` how many the walk read.
    pub(crate) fn conclude(self, ledger_root: &Path, ledger_key: Option<[u8; 32]>, ledger_records: u64) -> IndexCheck {
        let mut report = IndexReport::default();
        let index = match self.index {
            Ok(index) => index,
            Err(kind) => {
                report.push(IndexProblem { session: None, kind });
                return IndexCheck::Checked(report);
            }
        };
        report.records_compared = index.covered;
        if index.schema.as_deref() != Some(SCHEMA_VERSION) {
            report.push(IndexProblem { session: None, kind: IndexProblemKind::OtherSchema { found: index.schema.clone() } });
        }
        if let Some(key) = ledger_key.map(hex::encode) {
            if index.ledger_key.as_deref() != Some(key.as_str()) {
                let kind = IndexProblemKind::OtherLedger { index_key: index.ledger_key.clone(), ledger_key: key };
                report.push(IndexProblem { session: None, kind });
            }
        }
        if index.covered > ledger_records {
            let kind = IndexProblemKind::Ahead { index_records: index.covered, ledger_records };
            report.push(IndexProblem { session: None, kind });
        }
        if index.malformed_ids > 0 {
            let reason = format!("{} rows have a session id that is not 16 bytes", index.malformed_ids);
            report.push(IndexProblem { session: None, kind: IndexProblemKind::Unreadable { reason } });
        }

        let ids: HashSet<&[u8; 16]> = index.sessions.keys().chain(self.folds.keys()).collect();
        report.sessions_compared = ids.len() as u64;
        let mut ids: Vec<&[u8; 16]> = ids.into_iter().collect();
        ids.sort();
        let mut differing = Vec::new();
        for id in ids {
            let session = Some(SessionId::from_bytes(*id));
            let kind = match (index.sessions.get(id), self.folds.get(id)) {
                (Some(indexed), _) if indexed.damaged => Some(IndexProblemKind::DamagedBlocks),
                (Some(_), None) => Some(IndexProblemKind::UnknownSession),
                (None, Some(_)) => Some(IndexProblemKind::MissingSession),
                (Some(indexed), Some(fold)) if indexed.digest != fold.digest() => {
                    differing.push(*id);
                    None
                }
                _ => None,
            };
            if let Some(kind) = kind {
                report.push(IndexProblem { session, kind });
            }
        }
        let described = differing.len().min(MAX_DESCRIBED_SESSIONS);
        let mut found = match describe(ledger_root, &differing[..described]) {
            Ok(found) => found,
            Err(reason) => {
                report.push(IndexProblem { session: None, kind: IndexProblemKind::Unreadable { reason } });
                HashMap::new()
            }
        };
        for id in &differing {
            let session = Some(SessionId::from_bytes(*id));
            match found.remove(id).filter(|kinds| !kinds.is_empty()) {
                Some(kinds) => kinds.into_iter().for_each(|kind| report.push(IndexProblem { session, kind })),
                None => report.push(IndexProblem { session, kind: IndexProblemKind::Differs }),
            }
        }
        IndexCheck::Checked(report)
    }
}

// === impl IndexSide ===

impl IndexSide {
    /// Reads every session row and event block in one read transaction.
    fn read(path: &Path) -> Result<IndexSide, IndexProblemKind> {
        let unreadable = |e: &dyn fmt::Display| IndexProblemKind::Unreadable { reason: e.to_string() };
        let index = Index::open_snapshot(path).map_err(|e| unreadable(&e))?;
        let meta = |key: &str| index.meta(key).map_err(|e| unreadable(&e));
        let covered = meta("resume_records")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let (ledger_key, schema) = (meta("ledger_key")?, meta("schema")?);
        let conn = &index.conn;
        let sql_err = |e: rusqlite::Error| unreadable(&e);
        let mut rows = conn
            .prepare(
                "SELECT id, identity, connection, protocol, task, client_addr, started_ns, ended_ns, end_reason, n_events, last_event_ns, n_denied, n_held,
                        groups
                 FROM sessions ORDER BY id",
            )
            .map_err(sql_err)?;
        let mut blocks = conn
            .prepare("SELECT session_id, first_seq, n_events, events FROM event_blocks ORDER BY session_id, first_seq")
            .map_err(sql_err)?;
        let mut rows = rows.query([]).map_err(sql_err)?;
        let mut blocks = blocks.query([]).map_err(sql_err)?;
        let mut side = IndexSide { covered, ledger_key, schema, sessions: HashMap::new(), malformed_ids: 0 };

        // Both are in id order (SQLite compares blobs as Rust compares byte slices): a merge.
        let mut row = next_row(&mut rows).map_err(sql_err)?;
        let mut block = next_block(&mut blocks).map_err(sql_err)?;
        let mut scratch = Vec::new();
        loop {
            let id = match (&row, &block) {
                (None, None) => break,
                (Some((r, _)), Some(b)) => r.min(&b.session_id).clone(),
                (Some((id, _)), None) => id.clone(),
                (None, Some(b)) => b.session_id.clone(),
            };
            let mut hasher = Sha256::new();
            let mut session_row = None;
            if row.as_ref().is_some_and(|(row_id, _)| *row_id == id) {
                session_row = row.take().map(|(_, facts)| facts);
                row = next_row(&mut rows).map_err(sql_err)?;
            }
            scratch.clear();
            start_bytes(&mut scratch, session_row.as_ref().map(row_start));
            hasher.update(&scratch);
            let (mut n_events, mut last_event_ns, mut damaged) = (0u64, 0i64, false);
            while let Some(b) = block.take_if(|b| b.session_id == id) {
                let mut in_block = 0i64;
                for event in packed_events(&b.events) {
                    let Ok(event) = event else {
                        damaged = true;
                        break;
                    };
                    damaged |= in_block == 0 && event.seq as i64 != b.first_seq;
                    in_block += 1;
                    hasher.update(event.bytes);
                    n_events += 1;
                    last_event_ns = last_event_ns.max(event.time_ns);
                }
                damaged |= in_block != b.n_events || in_block == 0;
                block = next_block(&mut blocks).map_err(sql_err)?;
            }
            let Ok(id) = <[u8; 16]>::try_from(id) else {
                side.malformed_ids += 1;
                continue;
            };
            scratch.clear();
            match &session_row {
                Some(r) => {
                    let ended = r.ended_ns.map(|ns| (ns, r.end_reason.as_deref().unwrap_or("")));
                    finish_bytes(&mut scratch, ended, r.n_events, r.last_event_ns, Decisions { denied: r.n_denied, held: r.n_held })
                }
                // No row, so nothing counted: as the records of a session without a start give.
                None => finish_bytes(&mut scratch, None, n_events, last_event_ns, Decisions::default()),
            }
            hasher.update(&scratch);
            side.sessions.insert(id, IndexedSession { digest: hasher.finalize().into(), damaged });
        }
        Ok(side)
    }
}

/// An `event_blocks` row, read whole.
struct BlockRow {
    session_id: Vec<u8>,
    first_seq: i64,
    n_events: i64,
    events: Vec<u8>,
}

fn next_row(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Option<(Vec<u8>, SessionSummary)>> {
    match rows.next()? {
        None => Ok(None),
        Some(row) => Ok(Some((row.get(0)?, super::session_from_row(row)?))),
    }
}

fn next_block(blocks: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Option<BlockRow>> {
    match blocks.next()? {
        None => Ok(None),
        Some(b) => Ok(Some(BlockRow { session_id: b.get(0)?, first_seq: b.get(1)?, n_events: b.get(2)?, events: b.get(3)? })),
    }
}

/// The digest's first part as a session row gives it.
fn row_start(row: &SessionSummary) -> StartFacts<'_> {
    StartFacts {
        identity: &row.info.identity,
        connection: &row.info.connection,
        protocol: row.info.protocol.as_str(),
        task: row.info.task.as_deref(),
        client_addr: row.info.client_addr.as_deref(),
        groups: &row.info.groups,
        started_ns: row.started_ns,
    }
}

// === impl LedgerFold ===

impl LedgerFold {
    fn digest(&self) -> Hash {
        match self {
            LedgerFold::Closed(digest) => *digest,
            LedgerFold::Open(hasher, tally) => {
                let mut end = Vec::new();
                finish_bytes(&mut end, None, tally.n_events, tally.last_event_ns, tally.decided);
                let mut hasher = hasher.clone();
                hasher.update(&end);
                hasher.finalize().into()
            }
        }
    }
}

// === impl IndexReport ===

impl IndexReport {
    fn push(&mut self, problem: IndexProblem) {
        if self.problems.len() < MAX_INDEX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.problems_not_listed += 1;
        }
    }
}

// === The digested bytes ===

/// What a session row says about the session's start.
struct StartFacts<'a> {
    identity: &'a str,
    connection: &'a str,
    protocol: &'a str,
    task: Option<&'a str>,
    client_addr: Option<&'a str>,
    groups: &'a [String],
    started_ns: i64,
}

/// The digest's first part: the row's start facts, or a marker that there is no row. Every text
/// is length-prefixed, so no two rows give the same bytes.
fn start_bytes(out: &mut Vec<u8>, start: Option<StartFacts<'_>>) {
    let Some(s) = start else {
        out.push(0);
        return;
    };
    out.push(1);
    for text in [Some(s.identity), Some(s.connection), Some(s.protocol), s.task, s.client_addr] {
        push_text(out, text);
    }
    // The groups' count before them, so that no list of groups reads as another.
    out.extend_from_slice(&(s.groups.len() as u64).to_le_bytes());
    for group in s.groups {
        push_text(out, Some(group));
    }
    out.extend_from_slice(&s.started_ns.to_le_bytes());
}

fn push_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            out.extend_from_slice(&(text.len() as u64).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// The digest's last part, after the events: the end on the row, the count, the last time and
/// the requests refused and held.
fn finish_bytes(out: &mut Vec<u8>, ended: Option<(i64, &str)>, n_events: u64, last_event_ns: i64, decided: Decisions) {
    match ended {
        None => out.push(0),
        Some((ns, reason)) => {
            out.push(1);
            out.extend_from_slice(&ns.to_le_bytes());
            out.extend_from_slice(&(reason.len() as u64).to_le_bytes());
            out.extend_from_slice(reason.as_bytes());
        }
    }
    out.extend_from_slice(&n_events.to_le_bytes());
    out.extend_from_slice(&last_event_ns.to_le_bytes());
    out.extend_from_slice(&decided.denied.to_le_bytes());
    out.extend_from_slice(&decided.held.to_le_bytes());
}

// === Naming what differs ===

/// Compares `sessions` field by field: one more walk of the segments against a new snapshot of the
/// index, up to what that snapshot covers. Returns what differs per session (empty when nothing
/// does any more), or why the index or segments could not be read.
fn describe(ledger_root: &Path, sessions: &[[u8; 16]]) -> Result<HashMap<[u8; 16], Vec<IndexProblemKind>>, String> {
    if sessions.is_empty() {
        return Ok(HashMap::new());
    }
    let index = Index::open_snapshot(&super::index_path(ledger_root)).map_err(|e| e.to_string())?;
    let covered = index.resume_point().map_err(|e| e.to_string())?.map_or(0, |r| r.n_records);
    let mut details: HashMap<[u8; 16], Detail> = sessions.iter().map(|id| (*id, Detail::default())).collect();
    let segments_dir = ledger_root.join("segments");
    let segments = list_segments(&segments_dir).map_err(|e| format!("cannot list {}: {e}", segments_dir.display()))?;
    'walk: for segment in segments {
        let bytes = std::fs::read(&segment.path).map_err(|e| format!("cannot read {}: {e}", segment.path.display()))?;
        let Ok(header) = decode_segment_header(&bytes) else { continue };
        for item in FrameIter::new(&bytes, header.first_ledger_seq) {
            let FrameItem::Frame { offset, body } = item else { continue };
            let Ok(Record::Event(e)) = decode_record(body) else { continue };
            if e.ledger_seq >= covered {
                break 'walk;
            }
            let Some(detail) = details.get_mut(&e.session_id) else { continue };
            let indexed = IndexedEvent { event: index_event_from_record(&e), ledger_seq: e.ledger_seq, segment_idx: segment.idx, offset };
            detail.follow(&index, SessionId::from_bytes(e.session_id), &indexed).map_err(|e| e.to_string())?;
        }
    }
    let mut found = HashMap::new();
    for (id, mut detail) in details {
        let session = SessionId::from_bytes(id);
        let row = index.session(session).map_err(|e| e.to_string())?;
        if detail.event_problem.is_none() {
            if let Some(extra) = detail.cursor.next(&index, session).map_err(|e| e.to_string())? {
                detail.event_problem = Some(IndexProblemKind::ExtraEvent { seq: extra.seq });
            }
        }
        found.insert(id, detail.problems(row.as_ref()));
    }
    Ok(found)
}

/// One differing session's records, followed against the index's events.
#[derive(Default)]
struct Detail {
    ledger: LedgerFacts,
    cursor: Cursor,
    /// The first event that differs; later ones are not looked at.
    event_problem: Option<IndexProblemKind>,
}

/// A session's facts as its records give them.
#[derive(Default)]
pub(super) struct LedgerFacts {
    /// Its identity, connection and the like, and its start time, from its `session.start`.
    pub start: Option<(witness_core::SessionInfo, i64)>,
    /// The time and reason of its `session.end`.
    pub ended: Option<(i64, String)>,
    pub n_events: u64,
    /// The latest event time, when every event was read.
    pub last_event_ns: Option<i64>,
    /// Requests refused and held, when every event was read.
    pub decided: Option<Decisions>,
}

/// The index's events of one session, read a page at a time.
#[derive(Default)]
struct Cursor {
    page: VecDeque<EventSummary>,
    next_from: u64,
    done: bool,
}

impl Detail {
    fn follow(&mut self, index: &Index, session: SessionId, indexed: &IndexedEvent) -> Result<(), crate::LedgerError> {
        let e = &indexed.event;
        if let Some(info) = &e.start {
            self.ledger.start = Some((info.clone(), e.time_ns));
        }
        if let Some(reason) = &e.end_reason {
            self.ledger.ended = Some((e.time_ns, reason.clone()));
        }
        self.ledger.n_events += 1;
        self.ledger.last_event_ns = Some(self.ledger.last_event_ns.unwrap_or(0).max(e.time_ns));
        self.ledger.decided.get_or_insert_with(Decisions::default).add(e.decided);
        if self.event_problem.is_none() {
            let listed = self.cursor.next(index, session)?;
            self.event_problem = compare_event(listed.as_ref(), indexed);
        }
        Ok(())
    }

    fn problems(self, row: Option<&SessionSummary>) -> Vec<IndexProblemKind> {
        let mut out = match (row, &self.ledger.start) {
            (None, Some(_)) => vec![IndexProblemKind::MissingSession],
            (Some(_), None) if self.ledger.n_events == 0 => vec![IndexProblemKind::UnknownSession],
            (Some(row), _) => session_differences(row, &self.ledger),
            (None, None) => Vec::new(),
        };
        out.extend(self.event_problem);
        out
    }
}

/// How a session row differs from its records' facts, field by field.
pub(super) fn session_differences(row: &SessionSummary, ledger: &LedgerFacts) -> Vec<IndexProblemKind> {
    let text = |v: &str| format!("{v:?}");
    let opt = |v: Option<&str>| v.map_or("none".to_string(), text);
    let ended = |e: Option<(i64, &str)>| e.map_or("not ended".to_string(), |(ns, _)| ns.to_string());
    let reason = |e: Option<(i64, &str)>| e.map_or("none".to_string(), |(_, r)| text(r));
    let row_ended = row.ended_ns.map(|ns| (ns, row.end_reason.as_deref().unwrap_or("")));
    let ledger_ended = ledger.ended.as_ref().map(|(ns, r)| (*ns, r.as_str()));
    let mut fields: Vec<(&'static str, String, String)> = Vec::new();
    if let Some((info, started_ns)) = &ledger.start {
        fields.extend([
            ("identity", text(&row.info.identity), text(&info.identity)),
            ("connection", text(&row.info.connection), text(&info.connection)),
            ("protocol", text(row.info.protocol.as_str()), text(info.protocol.as_str())),
            ("task", opt(row.info.task.as_deref()), opt(info.task.as_deref())),
            ("client address", opt(row.info.client_addr.as_deref()), opt(info.client_addr.as_deref())),
            ("groups", format!("{:?}", row.info.groups), format!("{:?}", info.groups)),
            ("start time (ns)", row.started_ns.to_string(), started_ns.to_string()),
        ]);
    }
    fields.extend([
        ("end time (ns)", ended(row_ended), ended(ledger_ended)),
        ("end reason", reason(row_ended), reason(ledger_ended)),
        ("event count", row.n_events.to_string(), ledger.n_events.to_string()),
    ]);
    if let Some(last_event_ns) = ledger.last_event_ns {
        fields.push(("last event time (ns)", row.last_event_ns.to_string(), last_event_ns.to_string()));
    }
    if let Some(decided) = ledger.decided {
        fields.push(("requests denied", row.n_denied.to_string(), decided.denied.to_string()));
        fields.push(("requests held", row.n_held.to_string(), decided.held.to_string()));
    }
    fields
        .into_iter()
        .filter(|(_, index, ledger)| index != ledger)
        .map(|(field, index, ledger)| IndexProblemKind::SessionField { field, index, ledger })
        .collect()
}

impl Cursor {
    fn next(&mut self, index: &Index, session: SessionId) -> Result<Option<EventSummary>, crate::LedgerError> {
        if self.page.is_empty() && !self.done {
            let (events, more) = index.events_from(session, self.next_from, 1024)?;
            self.done = !more;
            match events.last() {
                Some(last) => self.next_from = last.seq.saturating_add(1),
                None => self.done = true,
            }
            self.page.extend(events);
        }
        Ok(self.page.pop_front())
    }
}

/// The first field in which the index's entry differs from the record's, if any.
fn compare_event(listed: Option<&EventSummary>, record: &IndexedEvent) -> Option<IndexProblemKind> {
    let seq = record.event.seq;
    let Some(listed) = listed else { return Some(IndexProblemKind::MissingEvent { seq }) };
    if listed.seq > seq {
        return Some(IndexProblemKind::MissingEvent { seq });
    }
    if listed.seq < seq {
        return Some(IndexProblemKind::ExtraEvent { seq: listed.seq });
    }
    let e = &record.event;
    let recorded = RecordedEvent {
        kind: e.kind.as_str(),
        summary: &e.summary,
        time_ns: e.time_ns,
        direction: e.direction,
        payload_len: e.payload_len,
        place: (record.ledger_seq, record.segment_idx, record.offset),
    };
    event_difference(listed, &recorded)
}

/// An event as its record gives it, in the index's terms (the summary clipped as the index clips it).
pub(super) struct RecordedEvent<'a> {
    pub kind: &'a str,
    pub summary: &'a str,
    pub time_ns: i64,
    pub direction: u8,
    pub payload_len: u64,
    /// Ledger seq, segment and offset.
    pub place: (u64, u64, u64),
}

/// The first field of the same event (same seq) that the index lists differently.
pub(super) fn event_difference(listed: &EventSummary, recorded: &RecordedEvent<'_>) -> Option<IndexProblemKind> {
    let place = |(ledger_seq, segment, offset): (u64, u64, u64)| format!("record {ledger_seq} (segment {segment} offset {offset})");
    let fields = [
        ("kind", format!("{:?}", listed.kind), format!("{:?}", recorded.kind)),
        ("summary", format!("{:?}", listed.summary), format!("{:?}", recorded.summary)),
        ("time (ns)", listed.time_ns.to_string(), recorded.time_ns.to_string()),
        ("direction", listed.direction.to_string(), recorded.direction.to_string()),
        ("payload size", listed.payload_len.to_string(), recorded.payload_len.to_string()),
        ("place", place((listed.ledger_seq, listed.segment_idx, listed.offset)), place(recorded.place)),
    ];
    fields.into_iter().find(|(_, index, ledger)| index != ledger).map(|(field, index, ledger)| IndexProblemKind::EventField {
        seq: listed.seq,
        field,
        index,
        ledger,
    })
}

// === impl Display ===

impl fmt::Display for IndexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(session) = self.session {
            write!(f, "session {session}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl fmt::Display for IndexProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexProblemKind::Unreadable { reason } => write!(f, "the index cannot be read: {reason}"),
            IndexProblemKind::OtherLedger { index_key: Some(index_key), ledger_key } => {
                write!(f, "the index says it belongs to the ledger signed by {index_key}, not to this one ({ledger_key})")
            }
            IndexProblemKind::OtherLedger { index_key: None, ledger_key } => {
                write!(f, "the index does not say which ledger it belongs to (this one is signed by {ledger_key})")
            }
            IndexProblemKind::OtherSchema { found } => {
                write!(f, "the index has schema version {}, not {SCHEMA_VERSION}", found.as_deref().unwrap_or("none"))
            }
            IndexProblemKind::Ahead { index_records, ledger_records } => {
                write!(f, "the index says it covers {index_records} records but the ledger has {ledger_records}")
            }
            IndexProblemKind::MissingSession => {
                f.write_str("recorded in the ledger but missing from the index: lists and searches hide it")
            }
            IndexProblemKind::UnknownSession => f.write_str("listed in the index but the ledger has no record of it"),
            IndexProblemKind::SessionField { field, index, ledger } => {
                write!(f, "{field} is {index} in the index but {ledger} in the ledger")
            }
            IndexProblemKind::EventField { seq, field, index, ledger } => {
                write!(f, "event seq {seq}: {field} is {index} in the index but {ledger} in the ledger")
            }
            IndexProblemKind::MissingEvent { seq } => write!(f, "event seq {seq} is in the ledger but missing from the index"),
            IndexProblemKind::ExtraEvent { seq } => write!(f, "the index lists an event seq {seq} that the ledger does not have"),
            IndexProblemKind::Misplaced { seq, found } => write!(f, "the index places event seq {seq} at {found}"),
            IndexProblemKind::DamagedBlocks => f.write_str("the index's blocks of its events do not hold what their columns say"),
            IndexProblemKind::Differs => f.write_str("its index entries differ from its records (not compared field by field)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(identity: &'static str, connection: &'static str, task: Option<&'static str>) -> Vec<u8> {
        let mut out = Vec::new();
        let facts = StartFacts { identity, connection, protocol: "postgres", task, client_addr: None, groups: &[], started_ns: 7 };
        start_bytes(&mut out, Some(facts));
        out
    }

    /// Rows that differ anywhere digest differently: no text can take bytes from its neighbour,
    /// and a missing task is not an empty one.
    #[test]
    fn different_rows_give_different_bytes() {
        let rows = [
            start("ab", "c", None),
            start("a", "bc", None),
            start("a", "bc", Some("")),
            start("a", "bc", Some("x")),
            start("", "abc", None),
            {
                let mut none = Vec::new();
                start_bytes(&mut none, None);
                none
            },
        ];
        for (i, a) in rows.iter().enumerate() {
            for b in &rows[i + 1..] {
                assert!(!a.starts_with(b) && !b.starts_with(a), "{a:?} and {b:?}");
            }
        }
        let none = Decisions::default();
        let ends = [
            (None, 3, 9, none),
            (Some((5, "")), 3, 9, none),
            (Some((5, "x")), 3, 9, none),
            (None, 4, 9, none),
            (None, 3, 8, none),
            (None, 3, 9, Decisions { denied: 1, held: 0 }),
            (None, 3, 9, Decisions { denied: 0, held: 1 }),
        ];
        let encoded: Vec<Vec<u8>> = ends
            .iter()
            .map(|(ended, n, last, decided)| {
                let mut out = Vec::new();
                finish_bytes(&mut out, *ended, *n, *last, *decided);
                out
            })
            .collect();
        for (i, a) in encoded.iter().enumerate() {
            assert!(encoded[i + 1..].iter().all(|b| a != b), "{:?}", ends[i]);
        }
    }

    fn listed(seq: u64, kind: &str, summary: &str) -> EventSummary {
        EventSummary {
            seq,
            ledger_seq: 40 + seq,
            time_ns: 1000 + seq as i64,
            kind: kind.into(),
            direction: 1,
            summary: summary.into(),
            payload_len: 12,
            segment_idx: 0,
            offset: 32 + 100 * seq,
        }
    }

    /// An index entry against the record of the same place: the first field that differs is named.
    #[test]
    fn an_event_difference_names_its_first_field() {
        let record = |kind, summary, time_ns| RecordedEvent { kind, summary, time_ns, direction: 1, payload_len: 12, place: (42, 0, 232) };
        let cases: [(EventSummary, RecordedEvent<'_>, Option<&str>); 5] = [
            (listed(2, "pg.query", "select 1"), record("pg.query", "select 1", 1002), None),
            (
                listed(2, "pg.query", "select 1"),
                record("pg.result", "select 1", 1002),
                Some(r#"event seq 2: kind is "pg.query" in the index but "pg.result" in the ledger"#),
            ),
            (
                listed(2, "pg.query", "select 2"),
                record("pg.query", "select 1", 1002),
                Some(r#"event seq 2: summary is "select 2" in the index but "select 1" in the ledger"#),
            ),
            (
                listed(2, "pg.query", "select 1"),
                record("pg.query", "select 1", 9),
                Some("event seq 2: time (ns) is 1002 in the index but 9 in the ledger"),
            ),
            (listed(3, "pg.query", "select 1"), RecordedEvent { place: (43, 0, 332), ..record("pg.query", "select 1", 1003) }, None),
        ];
        for (listed, recorded, expect) in &cases {
            assert_eq!(event_difference(listed, recorded).map(|d| d.to_string()).as_deref(), *expect);
        }
    }
}
