//! The SQLite index (WAL) of sessions and events: metadata and summaries, never payloads.
//!
//! The index is derived data. The segments are the record; the index can be deleted at any time and
//! is rebuilt from them, and it is brought up to date from the segments whenever the ledger opens.
//!
//! Events are stored in *blocks*: one row per session per indexer commit, holding that session's
//! events of the commit packed one after the other (`packed.rs`). A gateway under load
//! indexes tens of thousands of events a second; as one SQLite row each, the index cost more CPU
//! than the rest of the recording. A session's rows are read back whole and unpacked; the sessions
//! table keeps each session's event count and last event time, so listing needs no event rows.
//!
//! Being derived data does not make the index trusted: whoever can write the data dir can edit it.
//! `check.rs` compares it with the records (verify does, and the review API's background
//! verification, which then rebuilds it), and `facts.rs` gives readers a session's facts from its
//! own records, using the index only to find them.

mod check;
mod facts;
mod packed;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use witness_core::{kind, EventKind, Protocol, SessionId, SessionIdPrefix, SessionInfo};

use crate::error::LedgerError;
use crate::format::{decode_record, decode_segment_header, Record, SEGMENT_HEADER_LEN};
use crate::read::StoredHeader;
use crate::segment::{list_segments, FrameItem, FrameIter};

pub(crate) use check::IndexComparison;
pub use check::{IndexCheck, IndexProblem, IndexProblemKind, IndexReport, MAX_INDEX_PROBLEMS};
pub use facts::{check_indexed_event, RecordedSession};
use packed::{pack_event, packed_events, unpack_events};

/// A session as the index knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: SessionId,
    pub info: SessionInfo,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    pub end_reason: Option<String>,
    pub n_events: u64,
    pub last_event_ns: i64,
    /// Requests the gate refused, and requests it held for approval.
    pub n_denied: u64,
    pub n_held: u64,
}

/// One event as the index knows it, with where its record is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSummary {
    pub seq: u64,
    pub ledger_seq: u64,
    pub time_ns: i64,
    pub kind: String,
    pub direction: u8,
    pub summary: String,
    pub payload_len: u64,
    pub segment_idx: u64,
    pub offset: u64,
}

/// Which sessions to list. Empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub identity: Option<String>,
    pub connection: Option<String>,
    /// A protocol's name (`postgres`, `ssh`, `audit`, …).
    pub protocol: Option<String>,
    /// Leave out sessions of this protocol (the review API leaves out the audit trail's own).
    pub exclude_protocol: Option<String>,
    /// Matches when the session's task contains this text.
    pub task: Option<String>,
    /// Matches when an event summary of the session (a statement, a command line) contains this
    /// text, ignoring ASCII case.
    pub text: Option<String>,
    /// Some(true): only sessions still open; Some(false): only ended ones.
    pub open: Option<bool>,
    /// Sessions that started at or after this time (Unix ns).
    pub since_ns: Option<i64>,
    /// Sessions that started before this time (Unix ns).
    pub until_ns: Option<i64>,
    pub newest_first: bool,
    /// Skip this many matching sessions (after ordering).
    pub offset: u64,
    pub limit: Option<u64>,
}

/// Read and write access to the index database.
pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// The records the index covers (its resume point): a batch's events before it are already in
    /// the index, after a rebuild read them from the segments, and are not indexed twice.
    indexed_records: u64,
}

/// What a session's record tells the index, built by the session that appends it.
#[derive(Clone, Debug)]
pub(crate) struct IndexEvent {
    pub session_id: [u8; 16],
    pub seq: u64,
    pub time_ns: i64,
    /// Witness's own kinds are static strings: cloning them allocates nothing.
    pub kind: EventKind,
    pub direction: u8,
    pub summary: String,
    pub payload_len: u64,
    /// Set on a session's first event.
    pub start: Option<SessionInfo>,
    /// Set on a session's last event.
    pub end_reason: Option<String>,
    /// What the gate decided on the request this event records, when it refused or held it.
    pub decided: Decided,
}

/// A refusal or hold the gate wrote into a request's event (its `decision` attribute), which the
/// index counts per session so that a list can show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Decided {
    /// Allowed, or not a request.
    #[default]
    Nothing,
    Denied,
    Held,
}

impl Decided {
    pub(crate) fn from_decision(decision: Option<&str>) -> Decided {
        match decision {
            Some("deny") => Decided::Denied,
            Some("hold") => Decided::Held,
            _ => Decided::Nothing,
        }
    }
}

/// An event with the place the writer gave it.
pub(crate) struct IndexedEvent {
    pub event: IndexEvent,
    pub ledger_seq: u64,
    pub segment_idx: u64,
    pub offset: u64,
}

/// Where indexing continues: just after the last record written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResumePoint {
    pub n_records: u64,
    pub segment_idx: u64,
    pub offset: u64,
}

pub(crate) struct IndexBatch {
    pub events: Vec<IndexedEvent>,
    pub resume: ResumePoint,
}

/// Asks the indexer to rebuild the index from the segments; it answers how many events it indexed.
pub(crate) type RebuildRequest = std_mpsc::SyncSender<Result<u64, LedgerError>>;

/// What the indexer thread needs besides the index: where the segments are for a rebuild, the
/// ledger it belongs to, and the requests.
pub(crate) struct Rebuilds {
    pub requests: std_mpsc::Receiver<RebuildRequest>,
    pub segments_dir: PathBuf,
    pub ledger_key: String,
}

/// How often the indexer takes in what the writer sent.
const INDEX_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A text search looks at this many sessions at most (the newest, when listing newest first):
/// it reads their event summaries.
pub const MAX_TEXT_SEARCH_SESSIONS: usize = 5000;

/// Index summaries are for lists; the full text is in the record.
const MAX_SUMMARY_CHARS: usize = 240;
/// Version 2: events in packed blocks, counts in the sessions table (version 1: a row per event).
/// Version 4: the caller's groups on the session row.
const SCHEMA_VERSION: &str = "4";
/// A block holds at most this many events (more go into the next block of the same commit), so
/// that reading one session back never loads an unbounded row.
const MAX_BLOCK_EVENTS: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id BLOB PRIMARY KEY,
    identity TEXT NOT NULL,
    connection TEXT NOT NULL,
    protocol TEXT NOT NULL,
    task TEXT,
    client_addr TEXT,
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER,
    end_reason TEXT,
    n_events INTEGER NOT NULL DEFAULT 0,
    last_event_ns INTEGER NOT NULL DEFAULT 0,
    n_denied INTEGER NOT NULL DEFAULT 0,
    n_held INTEGER NOT NULL DEFAULT 0,
    groups TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_identity ON sessions (identity, started_ns);
CREATE INDEX IF NOT EXISTS sessions_by_connection ON sessions (connection, started_ns);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started_ns);
CREATE TABLE IF NOT EXISTS event_blocks (
    session_id BLOB NOT NULL,
    first_seq INTEGER NOT NULL,
    n_events INTEGER NOT NULL,
    events BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS event_blocks_by_session ON event_blocks (session_id, first_seq);
";

/// Tables of earlier schema versions, dropped before the index is rebuilt.
const DROP_ALL: &str = "
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS event_blocks;
DROP TABLE IF EXISTS sessions;
DELETE FROM meta WHERE key LIKE 'resume_%';
";

// === impl Index ===

impl Index {
    /// Opens (creating if needed) the index for writing. `ledger_key` names the ledger the index
    /// belongs to; an index of another ledger is emptied and rebuilt.
    pub(crate) fn open(path: &Path, ledger_key: &str) -> Result<Index, LedgerError> {
        let conn = Connection::open(path).map_err(index_err(path))?;
        let mut index = Index { conn, path: path.to_path_buf(), indexed_records: 0 };
        // The index is rebuilt from the segments after a crash, so it need not survive power loss.
        index
            .conn
            .execute_batch("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
            .map_err(index_err(path))?;
        index
            .conn
            .execute_batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;")
            .map_err(index_err(path))?;
        let owner = index.meta("ledger_key")?;
        let schema = index.meta("schema")?;
        if owner.as_deref() != Some(ledger_key) || schema.as_deref() != Some(SCHEMA_VERSION) {
            if owner.is_some() {
                tracing::warn!(index = %path.display(), "the index belongs to another ledger or schema; rebuilding it from the segments");
            }
            // Another schema's tables may have other columns: drop them rather than empty them.
            index.conn.execute_batch(DROP_ALL).map_err(index_err(path))?;
            index.conn.execute_batch(SCHEMA).map_err(index_err(path))?;
            index.set_meta("ledger_key", ledger_key)?;
            index.set_meta("schema", SCHEMA_VERSION)?;
        } else {
            index.conn.execute_batch(SCHEMA).map_err(index_err(path))?;
        }
        index.indexed_records = index.resume_point()?.map_or(0, |r| r.n_records);
        Ok(index)
    }

    /// Opens an existing index without writing to it (for readers while the gateway runs).
    pub fn open_read_only(path: &Path) -> Result<Index, LedgerError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(index_err(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(index_err(path))?;
        Ok(Index { conn, path: path.to_path_buf(), indexed_records: 0 })
    }

    /// Opens an existing index read-only and keeps one snapshot of it: every read through it sees
    /// the index as it was at the first one, while the indexer goes on committing. A reader that
    /// compares the answers of several queries (a session's row and its events) needs that, or it
    /// would take the indexer's progress between them for a discrepancy.
    pub fn open_snapshot(path: &Path) -> Result<Index, LedgerError> {
        let index = Index::open_read_only(path)?;
        // Dropping the connection ends the read transaction.
        index.conn.execute_batch("BEGIN").map_err(index_err(path))?;
        Ok(index)
    }

    /// Empties the index and indexes every record of the segments again, in one transaction:
    /// readers see the old index until the new one is whole. Everything in the database goes,
    /// whatever an edit added (triggers, views, other tables), not only the rows witness wrote.
    pub(crate) fn rebuild(&mut self, ledger_key: &str, segments_dir: &Path) -> Result<u64, LedgerError> {
        let path = self.path.clone();
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(index_err(&path))?;
        let result = self.reset(ledger_key).and_then(|()| self.catch_up(segments_dir));
        let end = match &result {
            Ok(_) => self.conn.execute_batch("COMMIT"),
            Err(_) => self.conn.execute_batch("ROLLBACK"),
        };
        if result.is_err() || end.is_err() {
            self.indexed_records = self.resume_point().ok().flatten().map_or(0, |r| r.n_records);
        }
        end.map_err(index_err(&path))?;
        result
    }

    /// Drops every table, view and trigger (their indexes go with them) and creates the schema.
    fn reset(&mut self, ledger_key: &str) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let objects: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view', 'table') AND name NOT LIKE 'sqlite_%'
                     ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 ELSE 2 END",
                )
                .map_err(index_err(&path))?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).map_err(index_err(&path))?;
            rows.collect::<Result<_, _>>().map_err(index_err(&path))?
        };
        for (kind, name) in objects {
            let drop = format!("DROP {} IF EXISTS \"{}\"", kind.to_uppercase(), name.replace('"', "\"\""));
            self.conn.execute_batch(&drop).map_err(index_err(&path))?;
        }
        self.conn.execute_batch(SCHEMA).map_err(index_err(&path))?;
        self.set_meta("ledger_key", ledger_key)?;
        self.set_meta("schema", SCHEMA_VERSION)?;
        self.indexed_records = 0;
        Ok(())
    }

    /// Indexes every record after the last one indexed, reading the segments. Returns how many
    /// events it added. A fault (torn tail) ends the catch-up there.
    pub(crate) fn catch_up(&mut self, segments_dir: &Path) -> Result<u64, LedgerError> {
        let resume = self.resume_point()?;
        let segments = list_segments(segments_dir).map_err(LedgerError::io("list", segments_dir))?;
        let start_ok = match resume {
            None => true,
            Some(r) => {
                segments.iter().any(|s| s.idx == r.segment_idx && std::fs::metadata(&s.path).map(|m| m.len() >= r.offset).unwrap_or(false))
            }
        };
        let resume = if start_ok {
            resume
        } else {
            tracing::warn!(index = %self.path.display(), "the index is ahead of the segments; rebuilding it");
            self.clear()?;
            self.indexed_records = 0;
            None
        };
        let mut added = 0;
        let mut batch = Vec::new();
        let mut last = resume;
        let newest = segments.last().map(|s| s.idx);
        for segment in segments.iter().filter(|s| resume.is_none_or(|r| s.idx >= r.segment_idx)) {
            let bytes = std::fs::read(&segment.path).map_err(LedgerError::io("read", &segment.path))?;
            let header = match decode_segment_header(&bytes) {
                Ok(header) => header,
                // A running writer creates a segment and then writes its header: the newest one
                // may have none yet, and holds no record until it has.
                Err(_) if Some(segment.idx) == newest && bytes.len() < SEGMENT_HEADER_LEN => break,
                Err(source) => return Err(LedgerError::BadSegment { segment: segment.path.clone(), source }),
            };
            let frames = match resume {
                Some(r) if r.segment_idx == segment.idx => FrameIter::starting_at(&bytes, r.offset, r.n_records),
                _ => FrameIter::new(&bytes, header.first_ledger_seq),
            };
            for item in frames {
                let FrameItem::Frame { offset, body } = item else { break };
                let record = decode_record(body).map_err(|source| LedgerError::Format { segment: segment.path.clone(), offset, source })?;
                let frame_end = offset + 8 + body.len() as u64;
                let ledger_seq = match &record {
                    Record::Event(e) => {
                        batch.push(IndexedEvent {
                            event: index_event_from_record(e),
                            ledger_seq: e.ledger_seq,
                            segment_idx: segment.idx,
                            offset,
                        });
                        e.ledger_seq
                    }
                    Record::Head(h) => h.ledger_seq,
                    Record::Checkpoint(c) => c.ledger_seq,
                };
                last = Some(ResumePoint { n_records: ledger_seq + 1, segment_idx: segment.idx, offset: frame_end });
                if batch.len() >= 10_000 {
                    added += batch.len() as u64;
                    let resume = last.expect("set above");
                    self.apply(&IndexBatch { events: std::mem::take(&mut batch), resume })?;
                }
            }
        }
        if let Some(resume) = last {
            added += batch.len() as u64;
            self.apply(&IndexBatch { events: batch, resume })?;
        }
        Ok(added)
    }

    pub(crate) fn apply(&mut self, batch: &IndexBatch) -> Result<(), LedgerError> {
        self.apply_all(std::slice::from_ref(batch))
    }

    /// Writes batches in one transaction: each session's events of the batches as packed blocks.
    /// Events of records the index already covers are left out.
    pub(crate) fn apply_all(&mut self, batches: &[IndexBatch]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let covered = self.indexed_records;
        // A savepoint, not a transaction: a rebuild runs the catch-up inside its own transaction.
        let tx = self.conn.savepoint().map_err(index_err(&path))?;
        let mut resume = None;
        {
            // Blocks in the order their sessions first appear, and each session's open block.
            let mut blocks: Vec<Block> = Vec::new();
            let mut open_blocks: HashMap<[u8; 16], usize> = HashMap::new();
            for indexed in batches.iter().flat_map(|batch| &batch.events).filter(|indexed| indexed.ledger_seq >= covered) {
                let e = &indexed.event;
                if let Some(info) = &e.start {
                    // Not REPLACE: a session's counts survive a start indexed twice.
                    tx.prepare_cached(
                        "INSERT INTO sessions (id, identity, connection, protocol, task, client_addr, started_ns, groups)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (id) DO UPDATE SET identity = ?2, connection = ?3, protocol = ?4, task = ?5,
                             client_addr = ?6, started_ns = ?7, groups = ?8",
                    )
                    .and_then(|mut insert| {
                        insert.execute(params![
                            &e.session_id[..],
                            info.identity,
                            info.connection,
                            info.protocol.as_str(),
                            info.task,
                            info.client_addr,
                            e.time_ns,
                            groups_column(&info.groups)
                        ])
                    })
                    .map_err(index_err(&path))?;
                }
                if let Some(reason) = &e.end_reason {
                    tx.prepare_cached("UPDATE sessions SET ended_ns = ?2, end_reason = ?3 WHERE id = ?1")
                        .and_then(|mut update| update.execute(params![&e.session_id[..], e.time_ns, reason]))
                        .map_err(index_err(&path))?;
                }
                let open = open_blocks.get(&e.session_id).copied().filter(|&i| blocks[i].n_events < MAX_BLOCK_EVENTS);
                let block = match open {
                    Some(i) => &mut blocks[i],
                    None => {
                        open_blocks.insert(e.session_id, blocks.len());
                        blocks.push(Block {
                            session_id: e.session_id,
                            first_seq: e.seq,
                            n_events: 0,
                            n_denied: 0,
                            n_held: 0,
                            last_time_ns: 0,
                            bytes: Vec::new(),
                        });
                        blocks.last_mut().expect("just pushed")
                    }
                };
                pack_event(&mut block.bytes, indexed);
                block.n_events += 1;
                match e.decided {
                    Decided::Denied => block.n_denied += 1,
                    Decided::Held => block.n_held += 1,
                    Decided::Nothing => {}
                }
                block.last_time_ns = block.last_time_ns.max(e.time_ns);
            }
            let mut insert_block = tx
                .prepare_cached("INSERT OR IGNORE INTO event_blocks (session_id, first_seq, n_events, events) VALUES (?1, ?2, ?3, ?4)")
                .map_err(index_err(&path))?;
            let mut count = tx
                .prepare_cached(
                    "UPDATE sessions SET n_events = n_events + ?2, last_event_ns = max(last_event_ns, ?3), n_denied = n_denied + ?4,
                         n_held = n_held + ?5 WHERE id = ?1",
                )
                .map_err(index_err(&path))?;
            for block in &blocks {
                let id = &block.session_id[..];
                let inserted = insert_block
                    .execute(params![id, block.first_seq as i64, block.n_events as i64, block.bytes])
                    .map_err(index_err(&path))?;
                // A block indexed before (same session and first seq) is not counted twice.
                if inserted > 0 {
                    count
                        .execute(params![id, block.n_events as i64, block.last_time_ns, block.n_denied as i64, block.n_held as i64])
                        .map_err(index_err(&path))?;
                }
            }
            if let Some(last) = batches.last().filter(|last| last.resume.n_records > covered) {
                let r = last.resume;
                resume = Some(r.n_records);
                let mut set = tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)").map_err(index_err(&path))?;
                set.execute(params!["resume_records", r.n_records.to_string()]).map_err(index_err(&path))?;
                set.execute(params!["resume_segment", r.segment_idx.to_string()]).map_err(index_err(&path))?;
                set.execute(params!["resume_offset", r.offset.to_string()]).map_err(index_err(&path))?;
            }
        }
        tx.commit().map_err(index_err(&path))?;
        if let Some(n_records) = resume {
            self.indexed_records = n_records;
        }
        Ok(())
    }

    pub fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>, LedgerError> {
        Ok(self.find_sessions(filter)?.0)
    }

    /// The sessions `filter` asks for (its page: offset and limit) and how many match in all.
    pub fn find_sessions(&self, filter: &SessionFilter) -> Result<(Vec<SessionSummary>, u64), LedgerError> {
        let mut sql = String::from(
            "SELECT s.id, s.identity, s.connection, s.protocol, s.task, s.client_addr, s.started_ns, s.ended_ns, s.end_reason,
                    s.n_events, s.last_event_ns, s.n_denied, s.n_held, s.groups
             FROM sessions s WHERE 1 = 1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut condition = |sql: &mut String, clause: &str, value: rusqlite::types::Value| {
            args.push(value);
            *sql += &clause.replace('?', &format!("?{}", args.len()));
        };
        if let Some(identity) = &filter.identity {
            condition(&mut sql, " AND s.identity = ?", identity.clone().into());
        }
        if let Some(connection) = &filter.connection {
            condition(&mut sql, " AND s.connection = ?", connection.clone().into());
        }
        if let Some(protocol) = &filter.protocol {
            condition(&mut sql, " AND s.protocol = ?", protocol.clone().into());
        }
        if let Some(protocol) = &filter.exclude_protocol {
            condition(&mut sql, " AND s.protocol <> ?", protocol.clone().into());
        }
        if let Some(task) = &filter.task {
            condition(&mut sql, " AND instr(s.task, ?) > 0", task.clone().into());
        }
        if let Some(since) = filter.since_ns {
            condition(&mut sql, " AND s.started_ns >= ?", since.into());
        }
        if let Some(until) = filter.until_ns {
            condition(&mut sql, " AND s.started_ns < ?", until.into());
        }
        match filter.open {
            Some(true) => sql += " AND s.ended_ns IS NULL",
            Some(false) => sql += " AND s.ended_ns IS NOT NULL",
            None => {}
        }
        let order = if filter.newest_first { " ORDER BY s.started_ns DESC, s.id DESC" } else { " ORDER BY s.started_ns, s.id" };
        let text = filter.text.as_deref().filter(|t| !t.is_empty());
        if text.is_none() {
            let total_sql = format!("SELECT count(*) FROM ({sql})");
            let total: i64 = self
                .conn
                .query_row(&total_sql, rusqlite::params_from_iter(args.iter()), |row| row.get(0))
                .map_err(index_err(&self.path))?;
            sql += order;
            let limit = filter.limit.map(|l| l.min(i64::MAX as u64) as i64).unwrap_or(-1);
            sql += &format!(" LIMIT {limit} OFFSET {}", filter.offset.min(i64::MAX as u64));
            let mut stmt = self.conn.prepare(&sql).map_err(index_err(&self.path))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), session_from_row).map_err(index_err(&self.path))?;
            let sessions = rows.collect::<Result<Vec<_>, _>>().map_err(index_err(&self.path))?;
            return Ok((sessions, total as u64));
        }
        // Text search reads the candidates' event summaries (packed, so not searchable in SQL),
        // of the first MAX_TEXT_SEARCH_SESSIONS candidates in the filter's order.
        sql += order;
        sql += &format!(" LIMIT {MAX_TEXT_SEARCH_SESSIONS}");
        let mut stmt = self.conn.prepare(&sql).map_err(index_err(&self.path))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), session_from_row).map_err(index_err(&self.path))?;
        let candidates = rows.collect::<Result<Vec<_>, _>>().map_err(index_err(&self.path))?;
        let needle = text.unwrap_or_default().to_ascii_lowercase();
        let mut matching = Vec::new();
        for session in candidates {
            if self.events(session.id)?.iter().any(|e| contains_ignoring_ascii_case(&e.summary, &needle)) {
                matching.push(session);
            }
        }
        let total = matching.len() as u64;
        let page = matching.into_iter().skip(filter.offset as usize).take(filter.limit.map(|l| l as usize).unwrap_or(usize::MAX)).collect();
        Ok((page, total))
    }

    pub fn session(&self, id: SessionId) -> Result<Option<SessionSummary>, LedgerError> {
        self.conn
            .query_row(
                "SELECT s.id, s.identity, s.connection, s.protocol, s.task, s.client_addr, s.started_ns, s.ended_ns, s.end_reason,
                        s.n_events, s.last_event_ns, s.n_denied, s.n_held, s.groups
                 FROM sessions s WHERE s.id = ?1",
                params![&id.as_bytes()[..]],
                session_from_row,
            )
            .optional()
            .map_err(index_err(&self.path))
    }

    /// The ids of the sessions whose id starts with `prefix`, in id order, at most `max` of them:
    /// a range of the primary key, so a prefix costs no more than a lookup.
    pub fn sessions_with_prefix(&self, prefix: &SessionIdPrefix, max: usize) -> Result<Vec<SessionId>, LedgerError> {
        let (low, high) = prefix.bounds();
        let mut stmt =
            self.conn.prepare("SELECT id FROM sessions WHERE id BETWEEN ?1 AND ?2 ORDER BY id LIMIT ?3").map_err(index_err(&self.path))?;
        let max = max.min(i64::MAX as usize) as i64;
        let rows = stmt.query_map(params![&low[..], &high[..], max], |row| row.get::<_, Vec<u8>>(0)).map_err(index_err(&self.path))?;
        let mut ids = Vec::new();
        for row in rows {
            // An id of another length (an edited index) names no session.
            if let Ok(bytes) = <[u8; 16]>::try_from(row.map_err(index_err(&self.path))?) {
                ids.push(SessionId::from_bytes(bytes));
            }
        }
        Ok(ids)
    }

    /// The events of a session in order.
    pub fn events(&self, id: SessionId) -> Result<Vec<EventSummary>, LedgerError> {
        let mut stmt =
            self.conn.prepare("SELECT events FROM event_blocks WHERE session_id = ?1 ORDER BY first_seq").map_err(index_err(&self.path))?;
        let blocks = stmt.query_map(params![&id.as_bytes()[..]], |row| row.get::<_, Vec<u8>>(0)).map_err(index_err(&self.path))?;
        let mut events = Vec::new();
        for block in blocks {
            let block = block.map_err(index_err(&self.path))?;
            unpack_events(&block, &mut events).ok_or_else(|| self.damaged_block())?;
        }
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// The events of a session from seq `from` on, in order, at most `max` of them, and whether
    /// there are more. Only the blocks that hold such events are read, so paging through a long
    /// session reads each block about once.
    pub fn events_from(&self, id: SessionId, from: u64, max: usize) -> Result<(Vec<EventSummary>, bool), LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT events FROM event_blocks WHERE session_id = ?1 AND first_seq + n_events > ?2 ORDER BY first_seq")
            .map_err(index_err(&self.path))?;
        let from_sql = from.min(i64::MAX as u64) as i64;
        let blocks =
            stmt.query_map(params![&id.as_bytes()[..], from_sql], |row| row.get::<_, Vec<u8>>(0)).map_err(index_err(&self.path))?;
        let mut events = Vec::new();
        let mut block_events = Vec::new();
        for block in blocks {
            let block = block.map_err(index_err(&self.path))?;
            block_events.clear();
            unpack_events(&block, &mut block_events).ok_or_else(|| self.damaged_block())?;
            for e in block_events.drain(..).filter(|e| e.seq >= from) {
                if events.len() == max {
                    return Ok((events, true));
                }
                events.push(e);
            }
        }
        Ok((events, false))
    }

    /// The first event of a session's first block and the last of its last block: where its
    /// `session.start` and its latest record are, if the index is right.
    pub fn first_and_last_events(&self, id: SessionId) -> Result<Option<(EventSummary, EventSummary)>, LedgerError> {
        let block = |order: &str| -> Result<Option<Vec<u8>>, LedgerError> {
            self.conn
                .query_row(
                    &format!("SELECT events FROM event_blocks WHERE session_id = ?1 ORDER BY first_seq {order} LIMIT 1"),
                    params![&id.as_bytes()[..]],
                    |row| row.get(0),
                )
                .optional()
                .map_err(index_err(&self.path))
        };
        let (Some(first_block), Some(last_block)) = (block("ASC")?, block("DESC")?) else { return Ok(None) };
        let first = packed_events(&first_block).next();
        let last = packed_events(&last_block).last();
        match (first, last) {
            (Some(Ok(first)), Some(Ok(last))) => Ok(Some((first.to_summary(), last.to_summary()))),
            _ => Err(self.damaged_block()),
        }
    }

    /// The ledger position of a session's last indexed record: a checkpoint over more records
    /// than this covers the whole session as indexed.
    pub fn last_ledger_seq(&self, id: SessionId) -> Result<Option<u64>, LedgerError> {
        Ok(self.first_and_last_events(id)?.map(|(_, last)| last.ledger_seq))
    }

    fn damaged_block(&self) -> LedgerError {
        LedgerError::Index {
            path: self.path.clone(),
            source: rusqlite::Error::InvalidColumnType(0, "events".into(), rusqlite::types::Type::Blob),
        }
    }

    fn resume_point(&self) -> Result<Option<ResumePoint>, LedgerError> {
        let get = |key| -> Result<Option<u64>, LedgerError> { Ok(self.meta(key)?.and_then(|v| v.parse().ok())) };
        Ok(match (get("resume_records")?, get("resume_segment")?, get("resume_offset")?) {
            (Some(n_records), Some(segment_idx), Some(offset)) => Some(ResumePoint { n_records, segment_idx, offset }),
            _ => None,
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |row| row.get(0))
            .optional()
            .map_err(index_err(&self.path))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), LedgerError> {
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
            .map(|_| ())
            .map_err(index_err(&self.path))
    }

    fn clear(&self) -> Result<(), LedgerError> {
        self.conn
            .execute_batch("DELETE FROM event_blocks; DELETE FROM sessions; DELETE FROM meta WHERE key LIKE 'resume_%';")
            .map_err(index_err(&self.path))
    }
}

/// Runs the indexer thread: every few milliseconds it takes every batch the writer sent and
/// commits them in one transaction, until the writer hangs up.
///
/// It polls rather than waiting on the channel on purpose: a receiver blocked on the channel is
/// woken by every send, and under load that is tens of thousands of thread switches a second on
/// the hot path; a sleeping one costs the senders nothing. The index may lag this much, as the
/// derived data it is.
pub(crate) fn spawn_indexer(
    mut index: Index,
    rx: std_mpsc::Receiver<IndexBatch>,
    rebuilds: Rebuilds,
) -> Result<thread::JoinHandle<()>, LedgerError> {
    let path = index.path.clone();
    thread::Builder::new()
        .name("ledger-indexer".into())
        .spawn(move || {
            let mut pending = Vec::new();
            let mut failing = false;
            loop {
                thread::sleep(INDEX_POLL);
                let mut hung_up = false;
                loop {
                    match rx.try_recv() {
                        Ok(batch) => pending.push(batch),
                        Err(std_mpsc::TryRecvError::Empty) => break,
                        Err(std_mpsc::TryRecvError::Disconnected) => {
                            hung_up = true;
                            break;
                        }
                    }
                }
                if !pending.is_empty() {
                    match index.apply_all(&pending) {
                        Ok(()) => {
                            pending.clear();
                            failing = false;
                        }
                        // Keep the batches and try again at the next poll: dropping them would
                        // leave a hole later batches move the resume point past. The records are
                        // safe in the segments either way.
                        Err(e) if !failing => {
                            tracing::error!(error = %e, "indexing failed; retrying (the index catches up from the segments at the latest at the next start)");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
                // After the batches taken so far: what the writer sends later is either in the
                // segments the rebuild reads (and left out when it comes) or indexed after it.
                while let Ok(reply) = rebuilds.requests.try_recv() {
                    let result = index.rebuild(&rebuilds.ledger_key, &rebuilds.segments_dir);
                    match &result {
                        Ok(events) => tracing::info!(events, "rebuilt the index from the segments"),
                        Err(e) => tracing::error!(error = %e, "rebuilding the index from the segments failed; the old index stays"),
                    }
                    let _ = reply.send(result);
                }
                if hung_up {
                    return;
                }
            }
        })
        .map_err(LedgerError::io("start the indexer thread for", path))
}

/// What the index holds of a record: the same as the session that appended it gave the indexer.
/// Only a session's start and end need the header's attributes; other records are read for their
/// summary alone, which verify's comparison with the index does for every record.
pub(crate) fn index_event_from_record(e: &crate::format::EventRecord<'_>) -> IndexEvent {
    let (is_start, is_end) = (e.kind == kind::SESSION_START.as_str(), e.kind == kind::SESSION_END.as_str());
    let (header, decided) = if is_start || is_end {
        (StoredHeader::parse(e.header), Decided::Nothing)
    } else {
        let (summary, decided) = header_summary(e.header);
        (StoredHeader { summary, ..StoredHeader::default() }, decided)
    };
    let start = is_start.then(|| session_info_from_attrs(&header.attrs));
    let end_reason = is_end.then(|| header.attrs.get("reason").and_then(|v| v.as_str()).unwrap_or("").to_string());
    IndexEvent {
        session_id: e.session_id,
        seq: e.seq,
        time_ns: e.time_ns,
        // decode_record admits the same kinds EventKind does, so the fallback is never taken.
        kind: EventKind::new(e.kind.to_string()).unwrap_or_else(|_| EventKind::new("invalid").expect("a valid kind")),
        direction: e.direction,
        summary: clip_summary(&header.summary),
        payload_len: e.payload_len,
        start,
        end_reason,
        decided,
    }
}

/// A header's summary and the gate's decision, without building its other attributes; an empty
/// summary, as [`StoredHeader::parse`] gives it, when the header is not the JSON witness writes.
fn header_summary(header: &[u8]) -> (String, Decided) {
    #[derive(serde::Deserialize)]
    struct SummaryOnly<'a> {
        #[serde(borrow)]
        summary: std::borrow::Cow<'a, str>,
        #[serde(default, borrow)]
        attrs: Option<DecisionOnly<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct DecisionOnly<'a> {
        #[serde(default, borrow)]
        decision: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_slice::<SummaryOnly<'_>>(header) {
        Ok(h) => {
            let decision = h.attrs.and_then(|a| a.decision);
            (h.summary.into_owned(), Decided::from_decision(decision.as_deref()))
        }
        Err(_) => (String::new(), Decided::Nothing),
    }
}

/// The session facts a `session.start` event carries in its attributes.
pub(crate) fn session_info_from_attrs(attrs: &serde_json::Map<String, serde_json::Value>) -> SessionInfo {
    let text = |key: &str| attrs.get(key).and_then(|v| v.as_str()).map(str::to_string);
    SessionInfo {
        identity: text("identity").unwrap_or_default(),
        connection: text("connection").unwrap_or_default(),
        protocol: text("protocol").and_then(|p| p.parse().ok()).unwrap_or(Protocol::Synthetic),
        task: text("task"),
        client_addr: text("client_addr"),
        groups: attrs
            .get("groups")
            .and_then(|v| v.as_array())
            .map(|groups| groups.iter().filter_map(|g| g.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
    }
}

/// The `groups` column: a JSON array, or NULL for none (and for sessions recorded before groups).
fn groups_column(groups: &[String]) -> Option<String> {
    (!groups.is_empty()).then(|| serde_json::Value::from(groups.to_vec()).to_string())
}

fn groups_from_column(column: Option<String>) -> Vec<String> {
    column.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default()
}

pub(crate) fn clip_summary(summary: &str) -> String {
    // No more bytes than the limit in characters: nothing to cut, no need to count characters.
    if summary.len() <= MAX_SUMMARY_CHARS {
        return summary.to_string();
    }
    match summary.char_indices().nth(MAX_SUMMARY_CHARS) {
        None => summary.to_string(),
        Some((cut, _)) => format!("{}…", &summary[..cut]),
    }
}

/// One session's events of one commit, packed, on their way into an `event_blocks` row.
struct Block {
    session_id: [u8; 16],
    first_seq: u64,
    n_events: usize,
    n_denied: u64,
    n_held: u64,
    last_time_ns: i64,
    bytes: Vec<u8>,
}

/// The events of one `event_blocks` row, or None when its bytes are not a whole number of events.
/// Public for the fuzz targets and independent tools: an index's bytes are whatever is in its file.
pub fn unpack_event_block(bytes: &[u8]) -> Option<Vec<EventSummary>> {
    let mut events = Vec::new();
    unpack_events(bytes, &mut events)?;
    Some(events)
}

/// `needle` must already be lower case.
fn contains_ignoring_ascii_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window.iter().zip(needle).all(|(h, n)| h.to_ascii_lowercase() == *n))
}

pub(crate) fn index_path(ledger_dir: &Path) -> PathBuf {
    ledger_dir.join("index.sqlite")
}

fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionSummary> {
    let id: Vec<u8> = row.get(0)?;
    let id: [u8; 16] = id.try_into().map_err(|_| rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob))?;
    let protocol: String = row.get(3)?;
    Ok(SessionSummary {
        id: SessionId::from_bytes(id),
        info: SessionInfo {
            identity: row.get(1)?,
            connection: row.get(2)?,
            protocol: protocol.parse().unwrap_or(Protocol::Synthetic),
            task: row.get(4)?,
            client_addr: row.get(5)?,
            groups: groups_from_column(row.get(13)?),
        },
        started_ns: row.get(6)?,
        ended_ns: row.get(7)?,
        end_reason: row.get(8)?,
        n_events: row.get::<_, i64>(9)? as u64,
        last_event_ns: row.get::<_, Option<i64>>(10)?.unwrap_or(0),
        n_denied: row.get::<_, i64>(11)? as u64,
        n_held: row.get::<_, i64>(12)? as u64,
    })
}

fn index_err(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Index { path: path.to_path_buf(), source }
}
