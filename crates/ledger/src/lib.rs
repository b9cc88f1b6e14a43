//! The ledger: witness's tamper-evident recording store.
//!
//! Sessions append events; one writer thread group-commits them into append-only segment files,
//! each record framed with its length and CRC32C. Every session is a hash chain; session heads are
//! leaves of an RFC 6962 Merkle log; signed checkpoints commit to the log's root and to a chain
//! through every record. A SQLite index, derived from the segments, answers queries; it is compared
//! with the records, not trusted.
//!
//! This crate records and verifies. It does not decide what may be recorded (policy), speak any
//! wire protocol, or serialize for API clients. docs/RECORDING_FORMAT.md specifies its bytes.

#![forbid(unsafe_code)]

pub mod bundle;
pub mod export;
pub mod format;
pub mod merkle;
pub mod migrate;
pub mod seal;
pub mod segment;
pub mod verify;

mod error;
mod health;
mod index;
mod keyring;
mod keys;
mod read;
mod recovery;
mod session;
mod stats;
mod writer;

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use witness_core::{Protocol, SessionId, SessionInfo};

use crate::health::LedgerHealth;
use crate::stats::LedgerStats;

pub use error::LedgerError;
pub use health::Health;
pub use index::{
    check_indexed_event, unpack_event_block, EventSummary, Index, IndexCheck, IndexProblem, IndexProblemKind, IndexReport, RecordedSession,
    SessionFilter, SessionSummary, MAX_INDEX_PROBLEMS, MAX_TEXT_SEARCH_SESSIONS,
};
pub use keyring::{Keyring, KeyringError, MasterKey, MasterKeySource, Opener, PURGED_SUMMARY, SHREDDED_SUMMARY};
pub use keys::{parse_public_key, KeyError};
pub use read::{read_event_at, SealState, StoredEvent, StoredHeader};
pub use segment::FrameFault;
pub use session::{PendingReceipt, SessionWriter};
pub use stats::{StatsSnapshot, APPEND_LATENCY_BOUNDS};
pub use writer::SealSummary;

/// When an append counts as done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written to the operating system before the append returns: survives a crash of witness,
    /// not a power loss. Segments are fsynced in the background at every checkpoint.
    #[default]
    Write,
    /// Fsynced to disk before the append returns: survives a power loss.
    Fsync,
}

/// How to open a ledger.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// The ledger lives in `data_dir/ledger`.
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// A segment is closed and a new one started once it would grow past this size.
    pub segment_bytes: u64,
    /// How often session heads and a signed checkpoint are written while anything changed.
    pub checkpoint_interval: Duration,
    /// In `fsync` mode, appends waiting for the writer thread; a full queue makes appenders wait
    /// (back-pressure). In `write` mode appenders write themselves and nothing queues for long.
    pub queue_capacity: usize,
    /// The master key: when set, every session but the audit trail gets a data key and its
    /// events are sealed (seal.rs, keyring.rs).
    pub master_key: Option<MasterKey>,
}

/// Proof that an event is in the ledger, durable as the ledger's mode asks. Only the ledger makes
/// these; forwarding a request to a target requires one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    ledger_seq: u64,
    seq: u64,
}

/// Where a ledger's files are, given its data dir.
#[derive(Clone, Debug)]
pub struct LedgerPaths {
    pub root: PathBuf,
    pub segments: PathBuf,
    pub index: PathBuf,
    pub signing_key: PathBuf,
    pub public_key: PathBuf,
    pub lock: PathBuf,
    /// Sealed sessions' wrapped data keys (keyring.rs).
    pub keys: PathBuf,
}

/// An open ledger: the only writer of its data dir while it lives.
pub struct Ledger {
    sink: writer::Sink,
    /// The writer thread, in `fsync` mode.
    writer: Option<JoinHandle<()>>,
    shut_down: bool,
    indexer: Option<JoinHandle<()>>,
    /// Rebuild requests for the indexer thread.
    rebuild_index: std_mpsc::Sender<index::RebuildRequest>,
    public_key: VerifyingKey,
    paths: LedgerPaths,
    /// Seals new sessions when it holds a master key; opens sealed ones for readers.
    keyring: Keyring,
    stats: Arc<LedgerStats>,
    health: Arc<LedgerHealth>,
    /// Holds the lock on `ledger/LOCK` for as long as the ledger is open.
    _lock: File,
}

// === impl Durability ===

impl FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "write" => Ok(Durability::Write),
            "fsync" => Ok(Durability::Fsync),
            other => Err(format!("unknown durability {other:?}: use \"write\" or \"fsync\"")),
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Write => "write",
            Durability::Fsync => "fsync",
        })
    }
}

// === impl LedgerConfig ===

impl LedgerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> LedgerConfig {
        LedgerConfig {
            data_dir: data_dir.into(),
            durability: Durability::Write,
            segment_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(1),
            queue_capacity: 8192,
            master_key: None,
        }
    }
}

// === impl Receipt ===

impl Receipt {
    /// The record's position in the whole ledger.
    pub fn ledger_seq(&self) -> u64 {
        self.ledger_seq
    }

    /// The event's position in its session.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

// === impl LedgerPaths ===

impl LedgerPaths {
    pub fn new(data_dir: &Path) -> LedgerPaths {
        let root = data_dir.join("ledger");
        LedgerPaths {
            segments: root.join("segments"),
            index: index::index_path(&root),
            signing_key: root.join("signing.key"),
            public_key: root.join("signing.pub"),
            lock: root.join("LOCK"),
            keys: root.join("keys"),
            root,
        }
    }

    /// Whether a process (a running witness) holds this ledger open for writing now.
    pub fn writer_running(&self) -> Result<bool, LedgerError> {
        lock_held(&self.lock)
    }
}

// === impl Ledger ===

impl Ledger {
    /// Opens the ledger in `config.data_dir`, creating it on first use: takes the lock, loads or
    /// creates the signing key, recovers (cutting a torn tail), brings the index up to date, closes
    /// sessions a crash left open, and seals. Blocks; from async code call it on a blocking thread.
    pub fn open(config: &LedgerConfig) -> Result<Ledger, LedgerError> {
        let paths = LedgerPaths::new(&config.data_dir);
        // Only witness's user may read the ledger: directories 0700, files 0600, whatever the
        // umask (the index is made here, 0600, so that SQLite gives its -wal and -shm that mode).
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&paths.segments).map_err(LedgerError::io("create", &paths.segments))?;
        let lock = lock_ledger(&paths)?;
        let signing_key = keys::load_or_create(&paths.signing_key, &paths.public_key)?;
        let keyring = match &config.master_key {
            Some(master) => Keyring::for_writing(&paths, master.clone())?,
            None => Keyring::open(&paths, None)?,
        };
        let public_key = signing_key.verifying_key();

        let start = recovery::recover(&paths.segments)?;
        let orphans: Vec<_> = start.open_sessions.iter().filter(|(_, head)| !head.closed).map(|(id, head)| (*id, *head)).collect();
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&paths.index)
            .map_err(LedgerError::io("create", &paths.index))?;
        let ledger_key = hex::encode(public_key.as_bytes());
        let mut index = Index::open(&paths.index, &ledger_key)?;
        let indexed = index.catch_up(&paths.segments)?;
        if indexed > 0 {
            tracing::info!(events = indexed, "indexed events the index did not have yet");
        }
        // Generous: in `write` mode batches are small and many, and the indexer commits in bulk.
        let (index_tx, index_rx) = std_mpsc::sync_channel(1 << 16);
        let (rebuild_index, rebuild_rx) = std_mpsc::channel();
        let rebuilds = index::Rebuilds { requests: rebuild_rx, segments_dir: paths.segments.clone(), ledger_key };
        let indexer = index::spawn_indexer(index, index_rx, rebuilds)?;
        let settings =
            writer::WriterSettings { durability: config.durability, segment_bytes: config.segment_bytes.max(4096), max_batch: 4096 };
        let health = Arc::new(LedgerHealth::default());
        let (sink, writer) = writer::start(start, settings, signing_key, config.queue_capacity, index_tx, health.clone())?;
        let ledger = Ledger {
            sink: sink.clone(),
            writer,
            shut_down: false,
            indexer: Some(indexer),
            rebuild_index,
            public_key,
            paths,
            keyring,
            stats: Arc::default(),
            health,
            _lock: lock,
        };

        for (id, head) in &orphans {
            let session = SessionWriter::resume(sink.clone(), ledger.stats.clone(), SessionId::from_bytes(*id), head.seq + 1, head.hash);
            session.close_blocking("witness stopped before the session ended")?;
        }
        if !orphans.is_empty() {
            tracing::warn!(sessions = orphans.len(), "closed sessions that the previous run left open");
        }
        ledger.seal_blocking()?;
        writer::spawn_ticker(sink, config.checkpoint_interval);
        Ok(ledger)
    }

    /// Opens a session: records its `session.start` event and returns its writer.
    /// With a master key configured, the session's data key is made and stored first, and its
    /// events after the start are sealed; the audit trail is never sealed.
    pub async fn open_session(&self, info: &SessionInfo) -> Result<SessionWriter, LedgerError> {
        let session = self.new_session(info)?;
        session.append_start(info).await?;
        Ok(session)
    }

    /// [`Ledger::open_session`] for threads outside an async runtime.
    pub fn open_session_blocking(&self, info: &SessionInfo) -> Result<SessionWriter, LedgerError> {
        let session = self.new_session(info)?;
        session.append_start_blocking(info)?;
        Ok(session)
    }

    fn new_session(&self, info: &SessionInfo) -> Result<SessionWriter, LedgerError> {
        let id = SessionId::new();
        let key = if self.keyring.can_seal() && info.protocol != Protocol::Audit { Some(self.keyring.create(id)?) } else { None };
        Ok(SessionWriter::new(self.sink.clone(), self.stats.clone(), id, key))
    }

    /// A session moved from another ledger (migrate.rs): its id and start time kept.
    pub(crate) fn migrated_session(
        &self,
        id: SessionId,
        info: &SessionInfo,
        started_ns: i64,
        seal: bool,
    ) -> Result<SessionWriter, LedgerError> {
        let key = if seal && self.keyring.can_seal() { Some(self.keyring.create(id)?) } else { None };
        let session = SessionWriter::new(self.sink.clone(), self.stats.clone(), id, key);
        session.append_start_blocking_at(info, started_ns)?;
        Ok(session)
    }

    /// Puts everything appended so far on disk (fsync of the newest segments and their
    /// directory), whatever the durability mode: for a record that must survive a power loss
    /// before something irreversible follows (a key destroyed after its `retention.shredded`).
    /// Blocks; from async code call it on a blocking thread.
    pub fn sync_to_disk(&self) -> Result<(), LedgerError> {
        let segments = segment::list_segments(&self.paths.segments).map_err(LedgerError::io("list", &self.paths.segments))?;
        // A rotation may have just started a new segment: the record can be in the one before.
        for segment in segments.iter().rev().take(2) {
            File::open(&segment.path).and_then(|f| f.sync_all()).map_err(LedgerError::io("fsync", &segment.path))?;
        }
        File::open(&self.paths.segments).and_then(|d| d.sync_all()).map_err(LedgerError::io("fsync", &self.paths.segments))
    }

    /// Takes the ledger's lock for a command that must not run beside a gateway (key rotation,
    /// migration): held for as long as the returned file lives.
    pub fn lock_stopped(paths: &LedgerPaths) -> Result<File, LedgerError> {
        lock_ledger(paths)
    }

    /// The keys of sealed sessions, to open their events or destroy their contents.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Writes heads of changed sessions and a signed checkpoint now, if anything changed.
    pub async fn seal(&self) -> Result<SealSummary, LedgerError> {
        let (reply_tx, reply) = oneshot::channel();
        self.sink.send(writer::Command::Seal(Some(reply_tx))).await?;
        self.sink.drive();
        reply.await.unwrap_or(Err(LedgerError::Stopped))
    }

    /// [`Ledger::seal`] for threads outside an async runtime.
    pub fn seal_blocking(&self) -> Result<SealSummary, LedgerError> {
        let (reply_tx, reply) = oneshot::channel();
        self.sink.send_blocking(writer::Command::Seal(Some(reply_tx)))?;
        self.sink.drive();
        reply.blocking_recv().unwrap_or(Err(LedgerError::Stopped))
    }

    /// Seals with a final checkpoint, makes everything durable, and waits for the writer and the
    /// indexer to finish. Blocks; from async code call it on a blocking thread.
    pub fn shutdown(mut self) -> Result<SealSummary, LedgerError> {
        let (reply_tx, reply) = oneshot::channel();
        self.shut_down = true;
        self.sink.send_blocking(writer::Command::Shutdown(reply_tx))?;
        self.sink.drive();
        let summary = reply.blocking_recv().unwrap_or(Err(LedgerError::Stopped));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(indexer) = self.indexer.take() {
            let _ = indexer.join();
        }
        summary
    }

    /// Empties the index and indexes the segments again, while sessions go on recording: for an
    /// index found to disagree with the records. Returns how many events it indexed, once the new
    /// index is committed (readers see the old one until then). Blocks for as long as reading the
    /// segments takes; from async code call it on a blocking thread.
    pub fn rebuild_index(&self) -> Result<u64, LedgerError> {
        let (reply_tx, reply) = std_mpsc::sync_channel(1);
        self.rebuild_index.send(reply_tx).map_err(|_| LedgerError::IndexerStopped)?;
        reply.recv().unwrap_or(Err(LedgerError::IndexerStopped))
    }

    /// What this ledger recorded since it opened, for metrics.
    /// Whether the ledger still records, and how long records have waited for a checkpoint.
    pub fn health(&self) -> Health {
        self.health.snapshot()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.public_key
    }

    pub fn paths(&self) -> &LedgerPaths {
        &self.paths
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if !self.shut_down {
            // Dropped without shutdown (a panic, an early return): ask the writer to seal and stop
            // without waiting for a queue slot, since drop may run inside an async runtime.
            let (reply_tx, _reply) = oneshot::channel();
            if self.sink.try_send(writer::Command::Shutdown(reply_tx)).is_ok() {
                self.sink.drive();
            }
        }
    }
}

/// Brings the index of the ledger in `data_dir` up to date if no process holds the ledger (the
/// running gateway keeps it current itself), then opens it for reading, in one snapshot.
pub fn open_index(data_dir: &Path) -> Result<Index, LedgerError> {
    let paths = LedgerPaths::new(data_dir);
    if !paths.segments.is_dir() {
        return Err(LedgerError::Io {
            action: "find a ledger in",
            path: paths.root,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no ledger here; check --data-dir or --config"),
        });
    }
    if let Ok(_lock) = lock_ledger(&paths) {
        let public_key = keys::parse_public_key(&paths.public_key.to_string_lossy())?;
        let mut index = Index::open(&paths.index, &hex::encode(public_key.as_bytes()))?;
        index.catch_up(&paths.segments)?;
    }
    Index::open_snapshot(&paths.index)
}

/// Whether a process (a running witness) holds the lock on `lock_path` (a ledger's `LOCK`) now.
/// Read-only: the file is not created when missing (then nobody holds it). To ask, a shared lock
/// is taken and let go at once; a witness starting in that instant is told the ledger is in use.
pub(crate) fn lock_held(lock_path: &Path) -> Result<bool, LedgerError> {
    let file = match File::open(lock_path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(LedgerError::io("open", lock_path)(e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(fs::TryLockError::WouldBlock) => Ok(true),
        Err(fs::TryLockError::Error(e)) => Err(LedgerError::io("lock", lock_path)(e)),
    }
}

fn lock_ledger(paths: &LedgerPaths) -> Result<File, LedgerError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&paths.lock)
        .map_err(LedgerError::io("open", &paths.lock))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(LedgerError::Locked { path: paths.root.clone() }),
        Err(fs::TryLockError::Error(e)) => Err(LedgerError::io("lock", &paths.lock)(e)),
    }
}
