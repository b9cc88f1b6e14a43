//! The SQLite index (WAL) of sessions and events: metadata and summaries, never payloads.
//!
//! The index is derived data. The segments are the record; the index can be deleted at any time and
//! is rebuilt from them, and it is brought up to date from the segments whenever the ledger opens.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use witness_core::{Protocol, SessionId, SessionInfo};

use crate::error::LedgerError;
use crate::format::{decode_record, decode_segment_header, Record};
use crate::read::StoredHeader;
use crate::segment::{list_segments, FrameItem, FrameIter};

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
    /// Matches when the session's task contains this text.
    pub task: Option<String>,
    /// Sessions that started at or after this time (Unix ns).
    pub since_ns: Option<i64>,
    pub limit: Option<u64>,
}

/// Read and write access to the index database.
pub struct Index {
    conn: Connection,
    path: PathBuf,
}

/// What a session's record tells the index, built by the session that appends it.
#[derive(Clone, Debug)]
pub(crate) struct IndexEvent {
    pub session_id: [u8; 16],
    pub seq: u64,
    pub time_ns: i64,
    pub kind: String,
    pub direction: u8,
    pub summary: String,
    pub payload_len: u64,
    /// Set on a session's first event.
    pub start: Option<SessionInfo>,
    /// Set on a session's last event.
    pub end_reason: Option<String>,
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

/// How often the indexer takes in what the writer sent.
const INDEX_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Index summaries are for lists; the full text is in the record.
const MAX_SUMMARY_CHARS: usize = 240;
const SCHEMA_VERSION: &str = "1";

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
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_identity ON sessions (identity, started_ns);
CREATE INDEX IF NOT EXISTS sessions_by_connection ON sessions (connection, started_ns);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started_ns);
CREATE TABLE IF NOT EXISTS events (
    session_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    ledger_seq INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    direction INTEGER NOT NULL,
    summary TEXT NOT NULL,
    payload_len INTEGER NOT NULL,
    segment_idx INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
";

// === impl Index ===

impl Index {
    /// Opens (creating if needed) the index for writing. `ledger_key` names the ledger the index
    /// belongs to; an index of another ledger is emptied and rebuilt.
    pub(crate) fn open(path: &Path, ledger_key: &str) -> Result<Index, LedgerError> {
        let conn = Connection::open(path).map_err(index_err(path))?;
        let index = Index { conn, path: path.to_path_buf() };
        // The index is rebuilt from the segments after a crash, so it need not survive power loss.
        index
            .conn
            .execute_batch("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
            .map_err(index_err(path))?;
        index.conn.execute_batch(SCHEMA).map_err(index_err(path))?;
        let owner = index.meta("ledger_key")?;
        let schema = index.meta("schema")?;
        if owner.as_deref() != Some(ledger_key) || schema.as_deref() != Some(SCHEMA_VERSION) {
            if owner.is_some() {
                tracing::warn!(index = %path.display(), "the index belongs to another ledger or schema; rebuilding it from the segments");
            }
            index.clear()?;
            index.set_meta("ledger_key", ledger_key)?;
            index.set_meta("schema", SCHEMA_VERSION)?;
        }
        Ok(index)
    }

    /// Opens an existing index without writing to it (for readers while the gateway runs).
    pub fn open_read_only(path: &Path) -> Result<Index, LedgerError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(index_err(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(index_err(path))?;
        Ok(Index { conn, path: path.to_path_buf() })
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
            None
        };
        let mut added = 0;
        let mut batch = Vec::new();
        let mut last = resume;
        for segment in segments.iter().filter(|s| resume.is_none_or(|r| s.idx >= r.segment_idx)) {
            let bytes = std::fs::read(&segment.path).map_err(LedgerError::io("read", &segment.path))?;
            let header =
                decode_segment_header(&bytes).map_err(|source| LedgerError::BadSegment { segment: segment.path.clone(), source })?;
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

    /// Writes batches in one transaction.
    pub(crate) fn apply_all(&mut self, batches: &[IndexBatch]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(index_err(&path))?;
        {
            let mut insert_event = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (session_id, seq, ledger_seq, time_ns, kind, direction, summary, payload_len, segment_idx, offset)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(index_err(&path))?;
            for batch in batches {
                for indexed in &batch.events {
                    let e = &indexed.event;
                    insert_event
                        .execute(params![
                            &e.session_id[..],
                            e.seq as i64,
                            indexed.ledger_seq as i64,
                            e.time_ns,
                            e.kind,
                            e.direction,
                            e.summary,
                            e.payload_len as i64,
                            indexed.segment_idx as i64,
                            indexed.offset as i64
                        ])
                        .map_err(index_err(&path))?;
                    if let Some(info) = &e.start {
                        tx.execute(
                            "INSERT OR REPLACE INTO sessions (id, identity, connection, protocol, task, client_addr, started_ns)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![
                                &e.session_id[..],
                                info.identity,
                                info.connection,
                                info.protocol.as_str(),
                                info.task,
                                info.client_addr,
                                e.time_ns
                            ],
                        )
                        .map_err(index_err(&path))?;
                    }
                    if let Some(reason) = &e.end_reason {
                        tx.execute(
                            "UPDATE sessions SET ended_ns = ?2, end_reason = ?3 WHERE id = ?1",
                            params![&e.session_id[..], e.time_ns, reason],
                        )
                        .map_err(index_err(&path))?;
                    }
                }
            }
            if let Some(last) = batches.last() {
                let r = last.resume;
                let mut set = tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)").map_err(index_err(&path))?;
                set.execute(params!["resume_records", r.n_records.to_string()]).map_err(index_err(&path))?;
                set.execute(params!["resume_segment", r.segment_idx.to_string()]).map_err(index_err(&path))?;
                set.execute(params!["resume_offset", r.offset.to_string()]).map_err(index_err(&path))?;
            }
        }
        tx.commit().map_err(index_err(&path))
    }

    pub fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionSummary>, LedgerError> {
        let mut sql = String::from(
            "SELECT s.id, s.identity, s.connection, s.protocol, s.task, s.client_addr, s.started_ns, s.ended_ns, s.end_reason,
                    (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id),
                    (SELECT MAX(time_ns) FROM events e WHERE e.session_id = s.id)
             FROM sessions s WHERE 1 = 1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(identity) = &filter.identity {
            args.push(identity.clone().into());
            sql += &format!(" AND s.identity = ?{}", args.len());
        }
        if let Some(connection) = &filter.connection {
            args.push(connection.clone().into());
            sql += &format!(" AND s.connection = ?{}", args.len());
        }
        if let Some(task) = &filter.task {
            args.push(task.clone().into());
            sql += &format!(" AND instr(s.task, ?{}) > 0", args.len());
        }
        if let Some(since) = filter.since_ns {
            args.push(since.into());
            sql += &format!(" AND s.started_ns >= ?{}", args.len());
        }
        sql += " ORDER BY s.started_ns, s.id";
        if let Some(limit) = filter.limit {
            sql += &format!(" LIMIT {limit}");
        }
        let mut stmt = self.conn.prepare(&sql).map_err(index_err(&self.path))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), session_from_row).map_err(index_err(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(index_err(&self.path))
    }

    pub fn session(&self, id: SessionId) -> Result<Option<SessionSummary>, LedgerError> {
        self.conn
            .query_row(
                "SELECT s.id, s.identity, s.connection, s.protocol, s.task, s.client_addr, s.started_ns, s.ended_ns, s.end_reason,
                        (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id),
                        (SELECT MAX(time_ns) FROM events e WHERE e.session_id = s.id)
                 FROM sessions s WHERE s.id = ?1",
                params![&id.as_bytes()[..]],
                session_from_row,
            )
            .optional()
            .map_err(index_err(&self.path))
    }

    /// The events of a session in order.
    pub fn events(&self, id: SessionId) -> Result<Vec<EventSummary>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, ledger_seq, time_ns, kind, direction, summary, payload_len, segment_idx, offset
                 FROM events WHERE session_id = ?1 ORDER BY seq",
            )
            .map_err(index_err(&self.path))?;
        let rows = stmt
            .query_map(params![&id.as_bytes()[..]], |row| {
                Ok(EventSummary {
                    seq: row.get::<_, i64>(0)? as u64,
                    ledger_seq: row.get::<_, i64>(1)? as u64,
                    time_ns: row.get(2)?,
                    kind: row.get(3)?,
                    direction: row.get(4)?,
                    summary: row.get(5)?,
                    payload_len: row.get::<_, i64>(6)? as u64,
                    segment_idx: row.get::<_, i64>(7)? as u64,
                    offset: row.get::<_, i64>(8)? as u64,
                })
            })
            .map_err(index_err(&self.path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(index_err(&self.path))
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
            .execute_batch("DELETE FROM events; DELETE FROM sessions; DELETE FROM meta WHERE key LIKE 'resume_%';")
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
pub(crate) fn spawn_indexer(mut index: Index, rx: std_mpsc::Receiver<IndexBatch>) -> Result<thread::JoinHandle<()>, LedgerError> {
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
                if hung_up {
                    return;
                }
            }
        })
        .map_err(LedgerError::io("start the indexer thread for", path))
}

pub(crate) fn index_event_from_record(e: &crate::format::EventRecord<'_>) -> IndexEvent {
    let header = StoredHeader::parse(e.header);
    let start = (e.kind == "session.start").then(|| session_info_from_attrs(&header.attrs));
    let end_reason = (e.kind == "session.end").then(|| header.attrs.get("reason").and_then(|v| v.as_str()).unwrap_or("").to_string());
    IndexEvent {
        session_id: e.session_id,
        seq: e.seq,
        time_ns: e.time_ns,
        kind: e.kind.to_string(),
        direction: e.direction,
        summary: clip_summary(&header.summary),
        payload_len: e.payload_len,
        start,
        end_reason,
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
    }
}

pub(crate) fn clip_summary(summary: &str) -> String {
    match summary.char_indices().nth(MAX_SUMMARY_CHARS) {
        None => summary.to_string(),
        Some((cut, _)) => format!("{}…", &summary[..cut]),
    }
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
        },
        started_ns: row.get(6)?,
        ended_ns: row.get(7)?,
        end_reason: row.get(8)?,
        n_events: row.get::<_, i64>(9)? as u64,
        last_event_ns: row.get::<_, Option<i64>>(10)?.unwrap_or(0),
    })
}

fn index_err(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Index { path: path.to_path_buf(), source }
}
