//! Appending to one session. A session lays out and hashes each record itself and hands it to the
//! writer, so the work that can run in parallel does. A `SessionWriter` can be cloned: the halves
//! of a proxied connection append through their own clones, and the chain's order is the order in
//! which records reach the writer's queue.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;
use witness_core::{kind, Direction, Event, SessionId, SessionInfo};

use crate::error::LedgerError;
use crate::format::{encode_event, EventFields, Hash, MAX_HEADER_LEN, MAX_PAYLOAD_LEN};
use crate::index::{clip_summary, Decided, IndexEvent};
use crate::read::HeaderRef;
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
    pub(crate) fn new(sink: Sink, stats: Arc<LedgerStats>) -> SessionWriter {
        SessionWriter::resume(sink, stats, SessionId::new(), 0, [0; 32])
    }

    /// Continues a session found open by recovery, to close it.
    pub(crate) fn resume(sink: Sink, stats: Arc<LedgerStats>, id: SessionId, next_seq: u64, head: Hash) -> SessionWriter {
        let chain = Chain { next_seq, head, last_time_ns: 0, state: State::Open };
        SessionWriter { id, sink, chain: Arc::new(Mutex::new(chain)), stats }
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
            let (command, reply) = self.prepare(&chain, event, role, true)?;
            let (hash, time_ns, bytes) = (command.chain_hash, command.index.time_ns, command.frame.len() as u64);
            slot.send(Command::Append(command));
            advance(&mut chain, hash, time_ns, role);
            (reply, bytes)
        };
        self.sink.drive();
        Ok(self.pending(reply, submitted, bytes))
    }

    fn submit_blocking(&self, event: &Event, role: Role<'_>) -> Result<PendingReceipt, LedgerError> {
        let submitted = Instant::now();
        let (reply, bytes) = {
            let mut chain = self.lock();
            let (command, reply) = self.prepare(&chain, event, role, true)?;
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
        let time_ns = now_ns().max(chain.last_time_ns);
        let fields = EventFields {
            session_id: *self.id.as_bytes(),
            seq: chain.next_seq,
            time_ns,
            direction: event.direction.as_u8(),
            kind: event.kind.as_str(),
            header: &header,
            payload: &event.payload,
        };
        let (frame, chain_hash) = encode_event(&fields, &chain.head);
        let closes = role == Role::End;
        let index = IndexEvent {
            session_id: *self.id.as_bytes(),
            seq: chain.next_seq,
            time_ns,
            kind: event.kind.clone(),
            direction: event.direction.as_u8(),
            summary: clip_summary(&event.summary),
            payload_len: event.payload.len() as u64,
            start: match role {
                Role::Start(info) => Some(info.clone()),
                _ => None,
            },
            end_reason: closes.then(|| event.attrs.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string()),
            decided: Decided::from_decision(event.attrs.get("decision").and_then(|d| d.as_str())),
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
        if let Ok((command, _)) = self.prepare(&chain, &end, Role::End, false) {
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
    event
}

pub(crate) fn end_event(reason: &str) -> Event {
    Event::note(kind::SESSION_END, Direction::Gateway, format!("session ended: {reason}")).with_attr("reason", reason)
}
