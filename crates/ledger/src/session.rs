//! Appending to one session. A session lays out and hashes each record itself and hands it to the
//! writer, so the work that can run in parallel does. A `SessionWriter` can be cloned: the halves
//! of a proxied connection append through their own clones, and the chain's order is the order in
//! which records reach the writer's queue.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;
use witness_core::{kind, Direction, Event, SessionId, SessionInfo};

use crate::error::LedgerError;
use crate::format::{encode_event, EventFields, Hash, FRAME_HEADER_LEN, MAX_BODY_LEN, MAX_HEADER_LEN, MAX_PAYLOAD_LEN};
use crate::index::{clip_summary, Decided, IndexEvent};
use crate::read::HeaderRef;
use crate::seal::{clear_header, DataKey, NonceSequence, SealPlace};
use crate::stats::LedgerStats;
use crate::writer::{now_ns, AppendCommand, Command, Sink};
use crate::Receipt;

/// The write end of one open session. Close it with [`SessionWriter::close`]; when the last clone
/// of a session that is still open is dropped, a `session.end` saying so is recorded if the ledger
/// can take it without waiting (else recovery closes the session at the next start).
#[derive(Clone)]
pub struct SessionWriter {
    id: SessionId,
    sink: Sink,
    chain: Arc<Mutex<Chain>>,
    stats: Arc<LedgerStats>,
    /// The session's data key when its events are sealed (seal.rs).
    sealer: Option<Arc<Sealer>>,
}

/// Seals a session's events: its data key, and nonces that never repeat under it.
pub(crate) struct Sealer {
    key: DataKey,
    nonces: NonceSequence,
}

/// An append handed to the writer whose receipt has not been awaited yet.
pub struct PendingReceipt {
    reply: oneshot::Receiver<Result<Receipt, LedgerError>>,
    chain: Arc<Mutex<Chain>>,
    stats: Arc<LedgerStats>,
    submitted: Instant,
    bytes: u64,
}

/// Where the session's chain stands. Held only while a record is laid out and queued, never
/// across an await.
struct Chain {
    /// The seq the next event gets.
    next_seq: u64,
    /// The chain hash of the last event handed to the writer.
    head: Hash,
    /// Event times never go backwards within a session, even if the wall clock does.
    last_time_ns: i64,
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    /// An append failed; the chain's next link is unknown, so nothing more can be recorded.
    Broken,
}

/// What kind of record an append is, beyond its event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role<'a> {
    Event,
    Start(&'a SessionInfo),
    End,
}

impl SessionWriter {
    /// A new session `id`, its events sealed with `key` when there is one.
    pub(crate) fn new(sink: Sink, stats: Arc<LedgerStats>, id: SessionId, key: Option<DataKey>) -> SessionWriter {
        let mut session = SessionWriter::resume(sink, stats, id, 0, [0; 32]);
        session.sealer = key.map(|key| Arc::new(Sealer { key, nonces: NonceSequence::new() }));
        session
    }

    /// Continues a session found open by recovery, to close it (a closing event is never sealed).
    pub(crate) fn resume(sink: Sink, stats: Arc<LedgerStats>, id: SessionId, next_seq: u64, head: Hash) -> SessionWriter {
        let chain = Chain { next_seq, head, last_time_ns: 0, state: State::Open };
        SessionWriter { id, sink, chain: Arc::new(Mutex::new(chain)), stats, sealer: None }
    }

    /// Whether this session's events are sealed.
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Records an event; returns once it is durable as the ledger's mode asks. An error means the
    /// event is not recorded and the request it describes must be refused.
    pub async fn append(&self, event: &Event) -> Result<Receipt, LedgerError> {
        self.submit(event).await?.wait().await
    }

    /// Hands an event to the writer and returns without waiting for it to be durable; await the
    /// [`PendingReceipt`] before acting on what the event describes. Events of one session are
    /// recorded in the order they are submitted.
    pub async fn submit(&self, event: &Event) -> Result<PendingReceipt, LedgerError> {
        self.submit_as(event, Role::Event).await
    }

    /// Records the session's end with its reason and closes it.
    pub async fn close(self, reason: &str) -> Result<Receipt, LedgerError> {
        self.submit_as(&end_event(reason), Role::End).await?.wait().await
    }

    /// [`SessionWriter::append`] for threads that are not in an async runtime.
    pub fn append_blocking(&self, event: &Event) -> Result<Receipt, LedgerError> {
        self.submit_blocking(event, Role::Event)?.wait_blocking()
    }

    /// [`SessionWriter::close`] for threads that are not in an async runtime.
    pub fn close_blocking(self, reason: &str) -> Result<Receipt, LedgerError> {
        self.submit_blocking(&end_event(reason), Role::End)?.wait_blocking()
    }

    pub(crate) async fn append_start(&self, info: &SessionInfo) -> Result<Receipt, LedgerError> {
        self.submit_as(&start_event(info), Role::Start(info)).await?.wait().await
    }

    pub(crate) fn append_start_blocking(&self, info: &SessionInfo) -> Result<Receipt, LedgerError> {
        self.submit_blocking(&start_event(info), Role::Start(info))?.wait_blocking()
    }

    async fn submit_as(&self, event: &Event, role: Role<'_>) -> Result<PendingReceipt, LedgerError> {
        // The queue slot comes first, so the lock below is never held while waiting for one.
        let slot = match self.sink.reserve().await {
            Ok(slot) => slot,
            Err(e) => {
                self.lock().state = State::Broken;
                return Err(e);
            }
        };
        let submitted = Instant::now();
        let (reply, bytes) = {
            let mut chain = self.lock();
            let (command, reply) = self.prepare(&chain, event, role, true, None)?;
            let (hash, time_ns, bytes) = (command.chain_hash, command.index.time_ns, command.frame.len() as u64);
            slot.send(Command::Append(command));
            advance(&mut chain, hash, time_ns, role);
            (reply, bytes)
        };
        self.sink.drive();
        Ok(self.pending(reply, submitted, bytes))
    }

    fn submit_blocking(&self, event: &Event, role: Role<'_>) -> Result<PendingReceipt, LedgerError> {
        self.submit_blocking_at(event, role, None)
    }

    /// Records `event` with the time it was first recorded at (`time_ns`), for a migration
    /// (migrate.rs); a time before the session's last one is raised to it.
    pub(crate) fn append_blocking_at(&self, event: &Event, time_ns: i64) -> Result<Receipt, LedgerError> {
        self.submit_blocking_at(event, Role::Event, Some(time_ns))?.wait_blocking()
    }

    /// [`SessionWriter::append_blocking_at`] for the session's start.
    pub(crate) fn append_start_blocking_at(&self, info: &SessionInfo, time_ns: i64) -> Result<Receipt, LedgerError> {
        self.submit_blocking_at(&start_event(info), Role::Start(info), Some(time_ns))?.wait_blocking()
    }

    /// [`SessionWriter::append_blocking_at`] for the session's end.
    pub(crate) fn close_blocking_at(self, reason: &str, time_ns: i64) -> Result<Receipt, LedgerError> {
        self.submit_blocking_at(&end_event(reason), Role::End, Some(time_ns))?.wait_blocking()
    }

    fn submit_blocking_at(&self, event: &Event, role: Role<'_>, at: Option<i64>) -> Result<PendingReceipt, LedgerError> {
        let submitted = Instant::now();
        let (reply, bytes) = {
            let mut chain = self.lock();
            let (command, reply) = self.prepare(&chain, event, role, true, at)?;
            let (hash, time_ns, bytes) = (command.chain_hash, command.index.time_ns, command.frame.len() as u64);
            if let Err(e) = self.sink.send_blocking(Command::Append(command)) {
                chain.state = State::Broken;
                return Err(e);
            }
            advance(&mut chain, hash, time_ns, role);
            (reply, bytes)
        };
        self.sink.drive();
        Ok(self.pending(reply, submitted, bytes))
    }

    fn pending(&self, reply: Option<oneshot::Receiver<Result<Receipt, LedgerError>>>, submitted: Instant, bytes: u64) -> PendingReceipt {
        PendingReceipt {
            reply: reply.expect("a reply was asked for"),
            chain: self.chain.clone(),
            stats: self.stats.clone(),
            submitted,
            bytes,
        }
    }

    /// Lays out and hashes the record that continues the chain as it stands.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        chain: &Chain,
        event: &Event,
        role: Role<'_>,
        wait: bool,
        at: Option<i64>,
    ) -> Result<(AppendCommand, Option<oneshot::Receiver<Result<Receipt, LedgerError>>>), LedgerError> {
        match chain.state {
            State::Open => {}
            State::Closed => return Err(LedgerError::SessionClosed { session: self.id }),
            State::Broken => return Err(LedgerError::SessionBroken { session: self.id }),
        }
        if event.payload.len() > MAX_PAYLOAD_LEN {
            return Err(LedgerError::TooLarge { what: "payload", len: event.payload.len(), max: MAX_PAYLOAD_LEN });
        }
        let header = HeaderRef { summary: &event.summary, attrs: &event.attrs, payload: event.payload_type.as_str() };
        // Room for the summary and a few attributes up front: growing from serde_json's default
        // of 128 bytes would reallocate twice for a typical statement's header.
        let mut header_json = Vec::with_capacity(256 + event.summary.len());
        serde_json::to_writer(&mut header_json, &header).expect("a JSON map and strings always serialize");
        let header = header_json;
        if header.len() > MAX_HEADER_LEN {
            return Err(LedgerError::TooLarge { what: "summary and attributes", len: header.len(), max: MAX_HEADER_LEN });
        }
        let time_ns = at.unwrap_or_else(now_ns).max(chain.last_time_ns);
        let kind = event.kind.as_str();
        let decision = event.attrs.get("decision").and_then(|d| d.as_str());
        // A session's start and end are its metadata, kept in clear: they list it after its
        // key is shredded. Everything between is sealed when the session has a key.
        let sealed = match (&self.sealer, role) {
            (Some(sealer), Role::Event) => {
                let place = SealPlace { session_id: *self.id.as_bytes(), seq: chain.next_seq, kind };
                let contents = sealer.key.seal(&place, &sealer.nonces, &header, &event.payload);
                Some((clear_header(sealer.key.id(), event.payload_type.as_str(), decision), contents))
            }
            _ => None,
        };
        let (header, payload) = match &sealed {
            Some((clear, contents)) => (clear.as_slice(), contents.as_slice()),
            None => (header.as_slice(), event.payload.as_slice()),
        };
        let fields = EventFields {
            session_id: *self.id.as_bytes(),
            seq: chain.next_seq,
            time_ns,
            direction: event.direction.as_u8(),
            kind,
            header,
            payload,
        };
        let (frame, chain_hash) = encode_event(&fields, &chain.head);
        if frame.len() - FRAME_HEADER_LEN > MAX_BODY_LEN {
            return Err(LedgerError::TooLarge { what: "sealed record", len: frame.len(), max: MAX_BODY_LEN });
        }
        let closes = role == Role::End;
        let index = IndexEvent {
            session_id: *self.id.as_bytes(),
            seq: chain.next_seq,
            time_ns,
            kind: event.kind.clone(),
            direction: event.direction.as_u8(),
            summary: if sealed.is_some() { String::new() } else { clip_summary(&event.summary) },
            payload_len: payload.len() as u64,
            start: match role {
                Role::Start(info) => Some(info.clone()),
                _ => None,
            },
            end_reason: closes.then(|| event.attrs.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string()),
            decided: Decided::from_decision(decision),
        };
        let (ack, reply) = if wait {
            let (ack, reply) = oneshot::channel();
            (Some(ack), Some(reply))
        } else {
            (None, None)
        };
        let command = AppendCommand { frame, session_id: *self.id.as_bytes(), seq: chain.next_seq, chain_hash, closes, index, ack };
        Ok((command, reply))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PendingReceipt {
    /// Waits until the event is durable. An error breaks the session: nothing more is recorded.
    pub async fn wait(self) -> Result<Receipt, LedgerError> {
        let PendingReceipt { reply, chain, stats, submitted, bytes } = self;
        settle(reply.await.unwrap_or(Err(LedgerError::Stopped)), &chain, &stats, submitted, bytes)
    }

    fn wait_blocking(self) -> Result<Receipt, LedgerError> {
        let PendingReceipt { reply, chain, stats, submitted, bytes } = self;
        settle(reply.blocking_recv().unwrap_or(Err(LedgerError::Stopped)), &chain, &stats, submitted, bytes)
    }
}

/// Counts a durable append, or breaks the chain of a failed one: nothing more can be recorded.
fn settle(
    result: Result<Receipt, LedgerError>,
    chain: &Mutex<Chain>,
    stats: &LedgerStats,
    submitted: Instant,
    bytes: u64,
) -> Result<Receipt, LedgerError> {
    match &result {
        Ok(_) => stats.record(submitted.elapsed(), bytes),
        Err(_) => lock(chain).state = State::Broken,
    }
    result
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        // Pending receipts hold the chain too; only the last writer closes the session.
        if Arc::strong_count(&self.chain) > 1 {
            return;
        }
        let chain = self.lock();
        if chain.state != State::Open {
            return;
        }
        // Best effort without blocking (drop may run inside an async runtime): if the queue is
        // full, recovery closes the session at the next start instead.
        let end = end_event("the session's recorder was dropped without closing it");
        if let Ok((command, _)) = self.prepare(&chain, &end, Role::End, false, None) {
            let _ = self.sink.try_send(Command::Append(command));
        }
        drop(chain);
        self.sink.drive();
    }
}

/// Moves the chain past the record just queued.
fn advance(chain: &mut Chain, hash: Hash, time_ns: i64, role: Role<'_>) {
    chain.head = hash;
    chain.last_time_ns = time_ns;
    chain.next_seq += 1;
    if role == Role::End {
        chain.state = State::Closed;
    }
}

fn lock(chain: &Mutex<Chain>) -> std::sync::MutexGuard<'_, Chain> {
    chain.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start_event(info: &SessionInfo) -> Event {
    let mut event =
        Event::note(kind::SESSION_START, Direction::Gateway, format!("{} opened {} ({})", info.identity, info.connection, info.protocol))
            .with_attr("identity", info.identity.clone())
            .with_attr("connection", info.connection.clone())
            .with_attr("protocol", info.protocol.as_str());
    if let Some(task) = &info.task {
        event = event.with_attr("task", task.clone());
    }
    if let Some(addr) = &info.client_addr {
        event = event.with_attr("client_addr", addr.clone());
    }
    if !info.groups.is_empty() {
        event = event.with_attr("groups", info.groups.clone());
    }
    event
}

pub(crate) fn end_event(reason: &str) -> Event {
    Event::note(kind::SESSION_END, Direction::Gateway, format!("session ended: {reason}")).with_attr("reason", reason)
}
