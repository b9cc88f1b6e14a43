//! The writer: takes appends from every session, group-commits them to the current segment,
//! rotates segments, and seals the ledger with session heads and signed checkpoints.
//!
//! Callers build and hash their records themselves (see `session`); the writer only gives each
//! record its place (ledger_seq, global chain, file offset), so the part that must be sequential
//! does as little as possible. How appends reach it depends on the durability mode (see [`Sink`]):
//! in `fsync` mode a dedicated thread writes, so that no async worker ever waits on an fsync; in
//! `write` mode the appender that finds the writer free writes everything queued so far itself
//! (leader/follower group commit), which saves two thread switches per append.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, TryLockError};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use tokio::sync::{mpsc, oneshot};

use crate::error::LedgerError;
use crate::format::{
    checkpoint_entry_hash, checkpoint_message, encode_checkpoint, encode_head, encode_segment_header, global_link, leaf_hash, seal_frame,
    CheckpointBody, CheckpointRecord, Hash, Leaf, RecordType, SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN,
};
use crate::health::LedgerHealth;
use crate::index::{IndexBatch, IndexEvent, IndexedEvent, ResumePoint};
use crate::merkle::CompactTree;
use crate::segment::segment_file_name;
use crate::{Durability, Receipt};

/// How commands reach the writer.
#[derive(Clone)]
pub(crate) enum Sink {
    /// `fsync` mode: a bounded queue to the writer thread.
    Thread(mpsc::Sender<Command>),
    /// `write` mode: a queue that whoever holds the writer drains.
    Inline(Arc<Inline>),
}

/// The writer shared by the appenders of `write` mode.
pub(crate) struct Inline {
    /// Commands queued, in order; pushed under each session's chain lock, so a session's records
    /// are queued in chain order.
    pending: Mutex<Vec<Command>>,
    writer: Mutex<Writer>,
    /// Set once the writer shut down: later commands are refused at once.
    stopped: AtomicBool,
}

/// What the writer is asked to do, in the order callers asked.
// Appends dominate and are moved a few times at most; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Append(AppendCommand),
    /// Write heads of changed sessions and a signed checkpoint if anything is unsealed. Sent by
    /// the ticker (no reply wanted) and by recovery and tests (reply wanted).
    Seal(Option<oneshot::Sender<Result<SealSummary, LedgerError>>>),
    /// Seal, make everything durable, stop.
    Shutdown(oneshot::Sender<Result<SealSummary, LedgerError>>),
}

/// One event record, already laid out and hashed by its session.
pub(crate) struct AppendCommand {
    pub frame: Vec<u8>,
    pub session_id: [u8; 16],
    pub seq: u64,
    pub chain_hash: Hash,
    /// The record ends its session: its head goes into the Merkle log at once.
    pub closes: bool,
    pub index: IndexEvent,
    /// None when nobody waits (a session dropped without being closed).
    pub ack: Option<oneshot::Sender<Result<Receipt, LedgerError>>>,
}

/// Where the ledger stands after a seal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealSummary {
    /// Records in the ledger, the checkpoint included.
    pub n_records: u64,
    pub tree_size: u64,
    pub root: Hash,
    /// Whether this seal wrote a checkpoint (false when nothing had changed since the last one).
    pub wrote_checkpoint: bool,
}

/// The state the writer continues from, as recovery found it.
pub(crate) struct WriterStart {
    pub segments_dir: PathBuf,
    /// The last segment, or None for a new ledger.
    pub last_segment: Option<LastSegment>,
    pub next_ledger_seq: u64,
    pub global_head: Hash,
    pub tree: CompactTree,
    pub open_sessions: BTreeMap<[u8; 16], OpenHead>,
    pub unsealed_records: u64,
}

/// The segment recovery found last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LastSegment {
    pub idx: u64,
    /// Its length after any torn tail was cut.
    pub len: u64,
    /// Its format version: the writer appends only to a segment of [`FORMAT_VERSION`].
    pub version: u32,
}

/// The head of a session that is still open, and the seq its last Merkle leaf covered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenHead {
    pub seq: u64,
    pub hash: Hash,
    pub leafed_seq: Option<u64>,
    /// The session ended but a crash cut its closing leaf off: the next seal writes it.
    pub closed: bool,
}

/// Settings the writer needs from the ledger config.
pub(crate) struct WriterSettings {
    pub durability: Durability,
    pub segment_bytes: u64,
    pub max_batch: usize,
}

pub(crate) struct Writer {
    settings: WriterSettings,
    segments_dir: PathBuf,
    signing_key: SigningKey,
    file: File,
    segment_idx: u64,
    /// Bytes in the current segment, counting those staged in `buf` but not yet written.
    segment_len: u64,
    /// `segment_len` when the current segment's pages were last handed to be synced and released.
    released_at: u64,
    next_ledger_seq: u64,
    global_head: Hash,
    tree: CompactTree,
    sessions: BTreeMap<[u8; 16], OpenHead>,
    unsealed_records: u64,
    /// Frames staged for the next write: one write per batch is the group commit.
    buf: Vec<u8>,
    /// None once shut down, which lets the indexer finish.
    index_tx: Option<std_mpsc::SyncSender<IndexBatch>>,
    /// In `write` mode, segments are fsynced off the append path by this thread.
    syncer_tx: Option<std_mpsc::Sender<SyncJob>>,
    /// Set while a sync asked for by [`RELEASE_STEP`] is queued or running; cleared by the syncer.
    step_sync_pending: Arc<AtomicBool>,
    syncer: Option<thread::JoinHandle<()>>,
    /// Set by the first failed write; from then on every append is refused.
    failure: Option<Arc<std::io::Error>>,
    /// Set by shutdown; from then on every command is refused.
    stopped: bool,
    health: Arc<LedgerHealth>,
}

/// Replies owed for the records staged in `buf`, sent once they are written.
#[derive(Default)]
struct Staged {
    acks: Vec<(oneshot::Sender<Result<Receipt, LedgerError>>, Receipt)>,
    index: Vec<IndexedEvent>,
    seal_replies: Vec<(oneshot::Sender<Result<SealSummary, LedgerError>>, SealSummary)>,
    wrote_checkpoint: bool,
}

/// Starts the writer for the durability mode: a thread in `fsync` mode (returned with its handle),
/// shared inline state in `write` mode.
pub(crate) fn start(
    start: WriterStart,
    settings: WriterSettings,
    signing_key: SigningKey,
    queue_capacity: usize,
    index_tx: std_mpsc::SyncSender<IndexBatch>,
    health: Arc<LedgerHealth>,
) -> Result<(Sink, Option<thread::JoinHandle<()>>), LedgerError> {
    let durability = settings.durability;
    let writer = build(start, settings, signing_key, index_tx, health)?;
    match durability {
        Durability::Write => {
            let inline = Inline { pending: Mutex::new(Vec::new()), writer: Mutex::new(writer), stopped: AtomicBool::new(false) };
            Ok((Sink::Inline(Arc::new(inline)), None))
        }
        Durability::Fsync => {
            let (tx, rx) = mpsc::channel(queue_capacity.max(1));
            let handle = thread::Builder::new()
                .name("ledger-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(LedgerError::io("start the writer thread for", PathBuf::from("the ledger")))?;
            Ok((Sink::Thread(tx), Some(handle)))
        }
    }
}

fn build(
    start: WriterStart,
    settings: WriterSettings,
    signing_key: SigningKey,
    index_tx: std_mpsc::SyncSender<IndexBatch>,
    health: Arc<LedgerHealth>,
) -> Result<Writer, LedgerError> {
    let (file, segment_idx, segment_len) = match start.last_segment {
        // Sessions digest their payloads the current version's way, so a segment of an older
        // version is left as it is and the next one takes the appends.
        Some(LastSegment { idx, version, .. }) if version != FORMAT_VERSION => {
            // The old segment is closed for good: what a `write`-mode run left of it in the page
            // cache goes to disk before the next segment exists, and the new segment's directory
            // entry is made durable at once (a later rotation queues that for the syncer).
            let last = start.segments_dir.join(segment_file_name(idx));
            File::open(&last).and_then(|f| f.sync_all()).map_err(LedgerError::io("fsync", &last))?;
            let file = create_segment(&start.segments_dir, idx + 1, start.next_ledger_seq, settings.durability)?;
            File::open(&start.segments_dir).and_then(|d| d.sync_all()).map_err(LedgerError::io("fsync", &start.segments_dir))?;
            (file, idx + 1, SEGMENT_HEADER_LEN as u64)
        }
        Some(LastSegment { idx, len, .. }) => {
            let path = start.segments_dir.join(segment_file_name(idx));
            let file = OpenOptions::new().append(true).open(&path).map_err(LedgerError::io("open", &path))?;
            (file, idx, len)
        }
        None => {
            let file = create_segment(&start.segments_dir, 0, start.next_ledger_seq, settings.durability)?;
            (file, 0, SEGMENT_HEADER_LEN as u64)
        }
    };
    let step_sync_pending = Arc::new(AtomicBool::new(false));
    let (syncer_tx, syncer) = match settings.durability {
        Durability::Fsync => (None, None),
        Durability::Write => {
            let (tx, handle) = spawn_syncer(step_sync_pending.clone())?;
            (Some(tx), Some(handle))
        }
    };
    let writer = Writer {
        settings,
        segments_dir: start.segments_dir,
        signing_key,
        file,
        segment_idx,
        segment_len,
        released_at: 0,
        next_ledger_seq: start.next_ledger_seq,
        global_head: start.global_head,
        tree: start.tree,
        sessions: start.open_sessions,
        unsealed_records: start.unsealed_records,
        buf: Vec::with_capacity(1 << 20),
        index_tx: Some(index_tx),
        syncer_tx,
        step_sync_pending,
        syncer,
        failure: None,
        stopped: false,
        health,
    };
    Ok(writer)
}

// === impl Sink ===

impl Sink {
    /// Queues a command, waiting for room in `fsync` mode. In `write` mode the caller must call
    /// [`Sink::drive`] afterwards (outside any lock it holds) to get it written.
    pub(crate) async fn send(&self, command: Command) -> Result<(), LedgerError> {
        match self {
            Sink::Thread(tx) => tx.send(command).await.map_err(|_| LedgerError::Stopped),
            Sink::Inline(inline) => inline.push(command),
        }
    }

    /// [`Sink::send`] for threads outside an async runtime.
    pub(crate) fn send_blocking(&self, command: Command) -> Result<(), LedgerError> {
        match self {
            Sink::Thread(tx) => tx.blocking_send(command).map_err(|_| LedgerError::Stopped),
            Sink::Inline(inline) => inline.push(command),
        }
    }

    /// Queues a command only if that needs no waiting (from `Drop`).
    pub(crate) fn try_send(&self, command: Command) -> Result<(), LedgerError> {
        match self {
            Sink::Thread(tx) => tx.try_send(command).map_err(|_| LedgerError::Stopped),
            Sink::Inline(inline) => inline.push(command),
        }
    }

    /// A slot in the queue for one command, taken before a session locks its chain, so that the
    /// chain lock is never held while waiting for room.
    pub(crate) async fn reserve(&self) -> Result<Slot<'_>, LedgerError> {
        match self {
            Sink::Thread(tx) => tx.reserve().await.map(Slot::Thread).map_err(|_| LedgerError::Stopped),
            Sink::Inline(inline) if inline.stopped.load(Ordering::Acquire) => Err(LedgerError::Stopped),
            Sink::Inline(inline) => Ok(Slot::Inline(inline)),
        }
    }

    /// In `write` mode, writes what is queued unless another appender is already writing (it will
    /// write this too). Nothing to do in `fsync` mode.
    pub(crate) fn drive(&self) {
        if let Sink::Inline(inline) = self {
            Inline::drive(inline);
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        match self {
            Sink::Thread(tx) => tx.is_closed(),
            Sink::Inline(inline) => inline.stopped.load(Ordering::Acquire),
        }
    }
}

/// Room for one command, from [`Sink::reserve`].
pub(crate) enum Slot<'a> {
    Thread(mpsc::Permit<'a, Command>),
    Inline(&'a Inline),
}

impl Slot<'_> {
    pub(crate) fn send(self, command: Command) {
        match self {
            Slot::Thread(permit) => permit.send(command),
            Slot::Inline(inline) => {
                let _ = inline.push(command);
            }
        }
    }
}

// === impl Inline ===

impl Inline {
    fn push(&self, command: Command) -> Result<(), LedgerError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(LedgerError::Stopped);
        }
        lock(&self.pending).push(command);
        Ok(())
    }

    /// Leader/follower group commit: the caller that gets the writer writes everything queued,
    /// again while more arrives; a caller that finds the writer busy leaves its command to the
    /// one writing, which looks at the queue once more after letting go.
    ///
    /// A leader writes at most [`MAX_LEADER_ROUNDS`] batches: under sustained load it would
    /// otherwise keep an async worker writing for everyone indefinitely. It then hands the rest to
    /// a plain thread, which leads the same way.
    fn drive(this: &Arc<Inline>) {
        let mut rounds = 0;
        loop {
            let mut writer = match this.writer.try_lock() {
                Ok(writer) => writer,
                Err(TryLockError::WouldBlock) => return,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            };
            let mut batch = Vec::new();
            while rounds < MAX_LEADER_ROUNDS {
                std::mem::swap(&mut batch, &mut *lock(&this.pending));
                if batch.is_empty() {
                    break;
                }
                if writer.process(&mut batch) {
                    this.stopped.store(true, Ordering::Release);
                }
                rounds += 1;
            }
            drop(writer);
            if lock(&this.pending).is_empty() {
                return;
            }
            if rounds >= MAX_LEADER_ROUNDS {
                let inline = this.clone();
                let handed = thread::Builder::new().name("ledger-overflow".into()).spawn(move || Inline::drive(&inline));
                if handed.is_ok() {
                    return;
                }
                // No thread to hand to: keep writing here rather than leave anything queued.
                rounds = 0;
            }
        }
    }
}

/// Batches one appender writes for everyone before handing the rest to a thread.
const MAX_LEADER_ROUNDS: usize = 64;

/// Bytes appended to a segment after which its pages are synced and released from the page cache
/// even before the next checkpoint (see [`release_synced_pages`]).
const RELEASE_STEP: u64 = 8 << 20;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `Seal` every `interval` until the writer stops.
pub(crate) fn spawn_ticker(sink: Sink, interval: Duration) {
    let spawned = thread::Builder::new().name("ledger-ticker".into()).spawn(move || loop {
        thread::sleep(interval);
        if sink.is_stopped() || sink.send_blocking(Command::Seal(None)).is_err() {
            return;
        }
        sink.drive();
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the checkpoint timer; checkpoints are written only at shutdown");
    }
}

/// A file for the syncer to fsync and release.
struct SyncJob {
    file: File,
    /// Asked for by [`RELEASE_STEP`] rather than a checkpoint or a rotation.
    step: bool,
}

fn spawn_syncer(step_sync_pending: Arc<AtomicBool>) -> Result<(std_mpsc::Sender<SyncJob>, thread::JoinHandle<()>), LedgerError> {
    let (tx, rx) = std_mpsc::channel::<SyncJob>();
    let handle = thread::Builder::new()
        .name("ledger-syncer".into())
        .spawn(move || {
            for SyncJob { file, step } in rx {
                // The length before the sync: everything up to it is on disk once it returns.
                let synced_len = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
                // sync_all, not sync_data: the directory of a new segment is sent here too, and
                // its entry is what makes the new file findable after a power loss.
                match file.sync_all() {
                    Ok(()) => {
                        if let Some(len) = synced_len {
                            release_synced_pages(&file, len);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "background fsync of a ledger segment or its directory failed"),
                }
                if step {
                    step_sync_pending.store(false, Ordering::Release);
                }
            }
        })
        .map_err(LedgerError::io("start the fsync thread for", PathBuf::from("the ledger")))?;
    Ok((tx, handle))
}

/// Gives the page cache back the pages of a segment's first `synced_len` bytes, which are on
/// disk. A segment is written once and read rarely (verify, replay, export), so once synced its
/// pages are worth little in memory; left there, a busy gateway's recordings would fill the cache
/// and push out what the rest of the host reads, and every append would take memory the kernel
/// had to find and clear. Released, they are what the next appends reuse. The kernel keeps the
/// partial last page (the next append writes into it) and any page written since the sync.
/// Best effort: a failure only leaves the pages cached.
fn release_synced_pages(file: &File, synced_len: u64) {
    if let Some(len) = std::num::NonZeroU64::new(synced_len) {
        if let Err(e) = rustix::fs::fadvise(file, 0, Some(len), rustix::fs::Advice::DontNeed) {
            tracing::debug!(error = %e, "cannot release a ledger segment's cached pages");
        }
    }
}

fn create_segment(dir: &std::path::Path, idx: u64, first_ledger_seq: u64, durability: Durability) -> Result<File, LedgerError> {
    let path = dir.join(segment_file_name(idx));
    let mut file = OpenOptions::new().append(true).create_new(true).mode(0o600).open(&path).map_err(LedgerError::io("create", &path))?;
    file.write_all(&encode_segment_header(SegmentHeader { version: FORMAT_VERSION, segment_idx: idx, first_ledger_seq }))
        .map_err(LedgerError::io("write", &path))?;
    if durability == Durability::Fsync {
        file.sync_data().map_err(LedgerError::io("fsync", &path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(LedgerError::io("fsync", dir))?;
    }
    Ok(file)
}

/// Answers a command that arrived after shutdown: nothing of it was written.
fn refuse(command: Command) {
    match command {
        Command::Append(append) => {
            if let Some(ack) = append.ack {
                let _ = ack.send(Err(LedgerError::Stopped));
            }
        }
        Command::Seal(Some(reply)) | Command::Shutdown(reply) => {
            let _ = reply.send(Err(LedgerError::Stopped));
        }
        Command::Seal(None) => {}
    }
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

// === impl Writer ===

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch = Vec::with_capacity(self.settings.max_batch);
        loop {
            let Some(first) = rx.blocking_recv() else {
                // Every sender is gone without a shutdown: seal what we have so nothing is left
                // unsigned, and stop.
                let _ = self.seal_and_sync();
                return;
            };
            batch.push(first);
            while batch.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            if self.process(&mut batch) {
                // Commands still queued are dropped with the receiver, which tells their senders
                // the ledger stopped; nothing of theirs was written.
                return;
            }
        }
    }

    /// Writes one batch of commands in order; returns whether the writer has shut down.
    pub(crate) fn process(&mut self, batch: &mut Vec<Command>) -> bool {
        let mut staged = Staged::default();
        let mut shutdown = None;
        for cmd in batch.drain(..) {
            if self.stopped || shutdown.is_some() {
                refuse(cmd);
                continue;
            }
            match cmd {
                Command::Append(append) => self.stage_append(append, &mut staged),
                Command::Seal(reply) => {
                    let summary = self.stage_seal(&mut staged);
                    if let Some(reply) = reply {
                        staged.seal_replies.push((reply, summary));
                    }
                }
                Command::Shutdown(reply) => shutdown = Some(reply),
            }
        }
        self.flush(staged);
        if let Some(reply) = shutdown {
            let _ = reply.send(self.seal_and_sync());
            self.stopped = true;
            // The indexer finishes once it has what was sent so far.
            self.index_tx = None;
        }
        self.stopped
    }

    fn stage_append(&mut self, mut cmd: AppendCommand, staged: &mut Staged) {
        if let Some(failure) = &self.failure {
            if let Some(ack) = cmd.ack {
                let _ = ack.send(Err(LedgerError::WriteFailed { source: failure.clone() }));
            }
            return;
        }
        let (segment_idx, offset, ledger_seq) = match self.stage_frame(&mut cmd.frame, RecordType::Event, cmd.chain_hash) {
            Ok(position) => position,
            Err(failure) => {
                if let Some(ack) = cmd.ack {
                    let _ = ack.send(Err(LedgerError::WriteFailed { source: failure }));
                }
                return;
            }
        };
        let head =
            self.sessions.entry(cmd.session_id).or_insert(OpenHead { seq: cmd.seq, hash: cmd.chain_hash, leafed_seq: None, closed: false });
        head.seq = cmd.seq;
        head.hash = cmd.chain_hash;
        if cmd.closes {
            self.sessions.remove(&cmd.session_id);
            let leaf = Leaf { session_id: cmd.session_id, seq: cmd.seq, head_hash: cmd.chain_hash, closed: true };
            if let Err(failure) = self.stage_leaf(&leaf) {
                if let Some(ack) = cmd.ack {
                    let _ = ack.send(Err(LedgerError::WriteFailed { source: failure }));
                }
                return;
            }
        }
        staged.index.push(IndexedEvent { event: cmd.index, ledger_seq, segment_idx, offset });
        if let Some(ack) = cmd.ack {
            staged.acks.push((ack, Receipt { ledger_seq, seq: cmd.seq }));
        }
    }

    /// Stages leaves for every session whose head moved since its last leaf, then a checkpoint.
    fn stage_seal(&mut self, staged: &mut Staged) -> SealSummary {
        let unchanged =
            SealSummary { n_records: self.next_ledger_seq, tree_size: self.tree.size(), root: self.tree.root(), wrote_checkpoint: false };
        if self.failure.is_some() || self.unsealed_records == 0 {
            return unchanged;
        }
        let moved: Vec<Leaf> = self
            .sessions
            .iter()
            .filter(|(_, head)| head.leafed_seq != Some(head.seq))
            .map(|(id, head)| Leaf { session_id: *id, seq: head.seq, head_hash: head.hash, closed: head.closed })
            .collect();
        for leaf in &moved {
            if self.stage_leaf(leaf).is_err() {
                return unchanged;
            }
            if leaf.closed {
                self.sessions.remove(&leaf.session_id);
            } else if let Some(head) = self.sessions.get_mut(&leaf.session_id) {
                head.leafed_seq = Some(leaf.seq);
            }
        }
        let body = CheckpointBody {
            tree_size: self.tree.size(),
            root: self.tree.root(),
            n_records: self.next_ledger_seq,
            global_head: self.global_head,
            time_ns: now_ns(),
        };
        let signature = self.signing_key.sign(&checkpoint_message(&body)).to_bytes();
        let public_key = self.signing_key.verifying_key().to_bytes();
        let record = CheckpointRecord { ledger_seq: body.n_records, body, public_key, signature };
        let mut frame = encode_checkpoint(&body, &public_key, &signature);
        if self.stage_frame(&mut frame, RecordType::Checkpoint, checkpoint_entry_hash(&record)).is_err() {
            return unchanged;
        }
        self.unsealed_records = 0;
        staged.wrote_checkpoint = true;
        SealSummary { n_records: self.next_ledger_seq, tree_size: body.tree_size, root: body.root, wrote_checkpoint: true }
    }

    fn stage_leaf(&mut self, leaf: &Leaf) -> Result<(), Arc<std::io::Error>> {
        let hash = leaf_hash(leaf);
        let mut frame = encode_head(self.tree.size(), leaf);
        self.stage_frame(&mut frame, RecordType::Head, hash)?;
        self.tree.push(hash);
        Ok(())
    }

    /// Gives a frame its ledger_seq and place, links it into the global chain and stages it.
    fn stage_frame(&mut self, frame: &mut [u8], record_type: RecordType, entry: Hash) -> Result<(u64, u64, u64), Arc<std::io::Error>> {
        let has_records = self.segment_len > SEGMENT_HEADER_LEN as u64;
        if has_records && self.segment_len + frame.len() as u64 > self.settings.segment_bytes {
            self.rotate()?;
        }
        let ledger_seq = self.next_ledger_seq;
        seal_frame(frame, ledger_seq);
        self.global_head = global_link(&self.global_head, ledger_seq, record_type, &entry);
        let offset = self.segment_len;
        self.buf.extend_from_slice(frame);
        self.segment_len += frame.len() as u64;
        self.next_ledger_seq += 1;
        if record_type != RecordType::Checkpoint {
            self.unsealed_records += 1;
            // The first record since the last checkpoint starts the wait; later ones need no clock.
            if self.unsealed_records == 1 {
                self.health.unsealed(now_ns());
            }
        }
        Ok((self.segment_idx, offset, ledger_seq))
    }

    /// Writes what is staged to the current segment and starts the next one.
    fn rotate(&mut self) -> Result<(), Arc<std::io::Error>> {
        self.write_buf()?;
        let next_idx = self.segment_idx + 1;
        let file = create_segment(&self.segments_dir, next_idx, self.next_ledger_seq, self.settings.durability)
            .map_err(|e| self.fail(std::io::Error::other(e.to_string())))?;
        let old = std::mem::replace(&mut self.file, file);
        match &self.syncer_tx {
            Some(syncer) => {
                let _ = syncer.send(SyncJob { file: old, step: false });
                // The new segment's directory entry, in the background too (`fsync` mode syncs
                // it when the segment is created).
                if let Ok(dir) = File::open(&self.segments_dir) {
                    let _ = syncer.send(SyncJob { file: dir, step: false });
                }
            }
            None => {
                old.sync_data().map_err(|e| self.fail(e))?;
                release_synced_pages(&old, self.segment_len);
            }
        }
        self.segment_idx = next_idx;
        self.segment_len = SEGMENT_HEADER_LEN as u64;
        self.released_at = 0;
        Ok(())
    }

    fn write_buf(&mut self) -> Result<(), Arc<std::io::Error>> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buf);
        self.buf.clear();
        result.map_err(|e| self.fail(e))
    }

    fn fail(&mut self, error: std::io::Error) -> Arc<std::io::Error> {
        let path = self.segments_dir.join(segment_file_name(self.segment_idx));
        tracing::error!(segment = %path.display(), error = %error, "ledger write failed; refusing every further append until restart");
        let error = Arc::new(error);
        self.failure = Some(error.clone());
        self.health.write_failed();
        error
    }

    /// Makes the staged records durable as the mode asks, then answers their callers.
    fn flush(&mut self, staged: Staged) {
        let wrote_anything = !self.buf.is_empty();
        let mut result = self.write_buf();
        if result.is_ok() && self.settings.durability == Durability::Fsync && wrote_anything {
            result = self.file.sync_data().map_err(|e| self.fail(e));
        }
        match result {
            Ok(()) => {
                for (ack, receipt) in staged.acks {
                    let _ = ack.send(Ok(receipt));
                }
                for (reply, summary) in staged.seal_replies {
                    let _ = reply.send(Ok(summary));
                }
                if staged.wrote_checkpoint && self.unsealed_records == 0 {
                    self.health.sealed();
                }
                if let (false, Some(index_tx)) = (staged.index.is_empty(), &self.index_tx) {
                    let resume = ResumePoint { n_records: self.next_ledger_seq, segment_idx: self.segment_idx, offset: self.segment_len };
                    let _ = index_tx.send(IndexBatch { events: staged.index, resume });
                }
                // Just sealed: in `write` mode the checkpoint interval is the fsync interval. A
                // bulk stream (an SSH transfer) also has its pages synced and released every
                // RELEASE_STEP, so that the ledger's share of the page cache stays small between
                // checkpoints and later appends reuse those pages.
                if staged.wrote_checkpoint || self.segment_len - self.released_at >= RELEASE_STEP {
                    self.released_at = self.segment_len;
                    let step = !staged.wrote_checkpoint;
                    match &self.syncer_tx {
                        // A step waits while the last step's sync is queued or running: that one
                        // covers what is written by the time it runs, and the queue stays short
                        // however fast a client streams.
                        Some(_) if step && self.step_sync_pending.swap(true, Ordering::AcqRel) => {}
                        Some(syncer) => match self.file.try_clone() {
                            Ok(clone) => {
                                let _ = syncer.send(SyncJob { file: clone, step });
                            }
                            Err(_) if step => self.step_sync_pending.store(false, Ordering::Release),
                            Err(_) => {}
                        },
                        // In `fsync` mode everything written is on disk already.
                        None => release_synced_pages(&self.file, self.segment_len),
                    }
                }
            }
            Err(failure) => {
                for (ack, _) in staged.acks {
                    let _ = ack.send(Err(LedgerError::WriteFailed { source: failure.clone() }));
                }
                for (reply, _) in staged.seal_replies {
                    let _ = reply.send(Err(LedgerError::WriteFailed { source: failure.clone() }));
                }
            }
        }
    }

    fn seal_and_sync(&mut self) -> Result<SealSummary, LedgerError> {
        let mut staged = Staged::default();
        let summary = self.stage_seal(&mut staged);
        self.write_buf().map_err(|source| LedgerError::WriteFailed { source })?;
        self.file.sync_all().map_err(|e| LedgerError::WriteFailed { source: Arc::new(e) })?;
        release_synced_pages(&self.file, self.segment_len);
        // Rotated segments queued for a background fsync are on disk before shutdown returns.
        self.syncer_tx = None;
        if let Some(syncer) = self.syncer.take() {
            let _ = syncer.join();
        }
        if let Some(failure) = &self.failure {
            return Err(LedgerError::WriteFailed { source: failure.clone() });
        }
        Ok(summary)
    }
}
