//! Appending to one session: the session keeps its own chain head, lays out and hashes each
//! record itself, and hands it to the writer. Appends of one session are sequential (`&mut self`),
//! which is what keeps its chain in order; many sessions append in parallel.

use tokio::sync::{mpsc, oneshot};
use witness_core::{Direction, Event, EventKind, SessionId, SessionInfo};

use crate::error::LedgerError;
use crate::format::{encode_event, EventFields, Hash, MAX_HEADER_LEN, MAX_PAYLOAD_LEN};
use crate::index::{clip_summary, IndexEvent};
use crate::read::HeaderRef;
use crate::writer::{now_ns, AppendCommand, Command};
use crate::Receipt;

/// The write end of one open session. Close it with [`SessionWriter::close`]; a writer dropped
/// while open records a `session.end` saying so, if the ledger can take it without waiting.
pub struct SessionWriter {
    id: SessionId,
    tx: mpsc::Sender<Command>,
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

/// A record laid out and ready to send, with the session state it moves to once sent.
struct Prepared {
    command: AppendCommand,
    chain_hash: Hash,
    time_ns: i64,
    reply: Option<oneshot::Receiver<Result<Receipt, LedgerError>>>,
}

impl SessionWriter {
    pub(crate) fn new(tx: mpsc::Sender<Command>) -> SessionWriter {
        SessionWriter { id: SessionId::new(), tx, next_seq: 0, head: [0; 32], last_time_ns: 0, state: State::Open }
    }

    /// Continues a session found open by recovery, to close it.
    pub(crate) fn resume(tx: mpsc::Sender<Command>, id: SessionId, next_seq: u64, head: Hash) -> SessionWriter {
        SessionWriter { id, tx, next_seq, head, last_time_ns: 0, state: State::Open }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Records an event; returns once it is durable as the ledger's mode asks. An error means the
    /// event is not recorded and the request it describes must be refused.
    pub async fn append(&mut self, event: &Event) -> Result<Receipt, LedgerError> {
        let prepared = self.prepare(event, None, true)?;
        let reply = self.send(prepared).await?;
        self.await_reply(reply).await
    }

    /// [`SessionWriter::append`] for threads that are not in an async runtime.
    pub fn append_blocking(&mut self, event: &Event) -> Result<Receipt, LedgerError> {
        let prepared = self.prepare(event, None, true)?;
        let reply = self.send_blocking(prepared)?;
        self.await_reply_blocking(reply)
    }

    /// Records the session's end with its reason and closes it.
    pub async fn close(mut self, reason: &str) -> Result<Receipt, LedgerError> {
        let end = end_event(reason);
        let prepared = self.prepare(&end, None, true)?;
        let reply = self.send(prepared).await?;
        self.state = State::Closed;
        self.await_reply(reply).await
    }

    /// [`SessionWriter::close`] for threads that are not in an async runtime.
    pub fn close_blocking(mut self, reason: &str) -> Result<Receipt, LedgerError> {
        let end = end_event(reason);
        let prepared = self.prepare(&end, None, true)?;
        let reply = self.send_blocking(prepared)?;
        self.state = State::Closed;
        self.await_reply_blocking(reply)
    }

    pub(crate) fn start_event(info: &SessionInfo) -> Event {
        let mut event = Event::note(EventKind::SESSION_START, Direction::Gateway, format!("{} opened {} ({})", info.identity, info.connection, info.protocol))
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

    pub(crate) async fn append_start(&mut self, info: &SessionInfo) -> Result<Receipt, LedgerError> {
        let prepared = self.prepare(&Self::start_event(info), Some(info), true)?;
        let reply = self.send(prepared).await?;
        self.await_reply(reply).await
    }

    pub(crate) fn append_start_blocking(&mut self, info: &SessionInfo) -> Result<Receipt, LedgerError> {
        let prepared = self.prepare(&Self::start_event(info), Some(info), true)?;
        let reply = self.send_blocking(prepared)?;
        self.await_reply_blocking(reply)
    }

    fn prepare(&self, event: &Event, start: Option<&SessionInfo>, wait: bool) -> Result<Prepared, LedgerError> {
        match self.state {
            State::Open => {}
            State::Closed => return Err(LedgerError::SessionClosed { session: self.id }),
            State::Broken => return Err(LedgerError::SessionBroken { session: self.id }),
        }
        if event.payload.len() > MAX_PAYLOAD_LEN {
            return Err(LedgerError::TooLarge { what: "payload", len: event.payload.len(), max: MAX_PAYLOAD_LEN });
        }
        let header = HeaderRef { summary: &event.summary, attrs: &event.attrs, payload: event.payload_type.as_str() };
        let header = serde_json::to_vec(&header).expect("a JSON map and strings always serialize");
        if header.len() > MAX_HEADER_LEN {
            return Err(LedgerError::TooLarge { what: "summary and attributes", len: header.len(), max: MAX_HEADER_LEN });
        }
        let time_ns = now_ns().max(self.last_time_ns);
        let fields = EventFields {
            session_id: *self.id.as_bytes(),
            seq: self.next_seq,
            time_ns,
            direction: event.direction.as_u8(),
            kind: event.kind.as_str(),
            header: &header,
            payload: &event.payload,
        };
        let (frame, chain_hash) = encode_event(&fields, &self.head);
        let closes = event.kind == EventKind::SESSION_END;
        let index = IndexEvent {
            session_id: *self.id.as_bytes(),
            seq: self.next_seq,
            time_ns,
            kind: event.kind.as_str().to_string(),
            direction: event.direction.as_u8(),
            summary: clip_summary(&event.summary),
            payload_len: event.payload.len() as u64,
            start: start.cloned(),
            end_reason: closes.then(|| event.attrs.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string()),
        };
        let (ack, reply) = if wait {
            let (ack, reply) = oneshot::channel();
            (Some(ack), Some(reply))
        } else {
            (None, None)
        };
        let command = AppendCommand { frame, session_id: *self.id.as_bytes(), seq: self.next_seq, chain_hash, closes, index, ack };
        Ok(Prepared { command, chain_hash, time_ns, reply })
    }

    /// Hands the record to the writer. The session's chain moves on only once the writer has it:
    /// a caller that gives up while the queue is full leaves the chain where it was.
    async fn send(&mut self, prepared: Prepared) -> Result<Option<oneshot::Receiver<Result<Receipt, LedgerError>>>, LedgerError> {
        let Prepared { command, chain_hash, time_ns, reply } = prepared;
        if self.tx.send(Command::Append(command)).await.is_err() {
            self.state = State::Broken;
            return Err(LedgerError::Stopped);
        }
        self.advance(chain_hash, time_ns);
        Ok(reply)
    }

    fn send_blocking(&mut self, prepared: Prepared) -> Result<Option<oneshot::Receiver<Result<Receipt, LedgerError>>>, LedgerError> {
        let Prepared { command, chain_hash, time_ns, reply } = prepared;
        if self.tx.blocking_send(Command::Append(command)).is_err() {
            self.state = State::Broken;
            return Err(LedgerError::Stopped);
        }
        self.advance(chain_hash, time_ns);
        Ok(reply)
    }

    fn advance(&mut self, chain_hash: Hash, time_ns: i64) {
        self.head = chain_hash;
        self.last_time_ns = time_ns;
        self.next_seq += 1;
    }

    async fn await_reply(&mut self, reply: Option<oneshot::Receiver<Result<Receipt, LedgerError>>>) -> Result<Receipt, LedgerError> {
        let reply = reply.expect("waited-for appends have a reply channel");
        let result = reply.await.unwrap_or(Err(LedgerError::Stopped));
        if result.is_err() {
            self.state = State::Broken;
        }
        result
    }

    fn await_reply_blocking(&mut self, reply: Option<oneshot::Receiver<Result<Receipt, LedgerError>>>) -> Result<Receipt, LedgerError> {
        let reply = reply.expect("waited-for appends have a reply channel");
        let result = reply.blocking_recv().unwrap_or(Err(LedgerError::Stopped));
        if result.is_err() {
            self.state = State::Broken;
        }
        result
    }
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        if self.state != State::Open {
            return;
        }
        // Best effort without blocking (drop may run inside an async runtime): if the queue is
        // full, recovery closes the session at the next start instead.
        let end = end_event("the session's recorder was dropped without closing it");
        if let Ok(prepared) = self.prepare(&end, None, false) {
            let _ = self.tx.try_send(Command::Append(prepared.command));
        }
    }
}

pub(crate) fn end_event(reason: &str) -> Event {
    Event::note(EventKind::SESSION_END, Direction::Gateway, format!("session ended: {reason}")).with_attr("reason", reason)
}
