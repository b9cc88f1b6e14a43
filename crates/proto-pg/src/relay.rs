//! The relay between a client and its target, both directions at once. Each direction reads what
//! is there, finds the whole messages, records what they mean and waits for the ledger's receipts,
//! then forwards those bytes unchanged: requests are in the ledger before the target sees them,
//! responses before the client sees them. Large results stream through in read-sized pieces.
//!
//! Each query, execution and function call is put to the gate first. A denied one never reaches
//! the target: witness sends in its place a request the target refuses (so the target itself
//! aborts the transaction or skips the rest of the pipeline, as it would for a failed statement)
//! and gives the client witness's own error instead of the target's. A held one waits, the client
//! reading a notice that says how to decide it, until an approver decides or the wait times out.

use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::futures::Notified;
use tokio::sync::{mpsc, watch, Notify};
use witness_core::{Event, Interrupt, Subject, Verdict};
use witness_gate::{admit, Admission, Gate, Refusal, Stream, Waiting, Wire, Withdrawal};
use witness_ledger::{LedgerError, PendingReceipt, SessionWriter};
use witness_mask::SessionMasks;

use crate::back::Backend;
use crate::cancel::KeyGuard;
use crate::catalog::Catalog;
use crate::catalog_lookup;
use crate::codec::{self, frontend, Peek, Severity, MAX_MESSAGE_LEN};
use crate::mask::WireMasks;
use crate::record::{Reply, Requests, Responses, Step, ToClient};
use crate::state::Tracker;
use crate::target::PgTarget;

/// A session past startup, as the front hands it over: authenticated, recorded, and connected to
/// its target.
pub(crate) struct ReadySession {
    pub client: Stream,
    pub backend: Backend,
    pub session: SessionWriter,
    pub interrupt: watch::Receiver<Option<Interrupt>>,
    pub subject: Subject,
    /// Kept alive for the session's life: the gate's registration and the cancel key.
    pub guards: (Box<dyn Send + Sync>, Option<KeyGuard>),
    /// Result rows recorded per statement; the total count is always recorded.
    pub max_rows: usize,
    /// How the session's values are masked; None when nothing is masked for it.
    pub masking: Option<Masking>,
}

/// A session's masking rules, settled when it started, and where the names of its result
/// columns come from: its connection's catalog cache, filled on witness's own connection to the
/// target.
pub(crate) struct Masking {
    pub masks: Arc<SessionMasks>,
    pub catalog: Arc<Catalog>,
    pub target: Arc<PgTarget>,
}

/// How a session ended.
#[derive(Debug)]
enum End {
    ClientTerminated,
    ClientClosed,
    TargetClosed,
    ClientIo(std::io::Error),
    TargetIo(std::io::Error),
    TooLarge {
        from_client: bool,
        len: usize,
    },
    Malformed {
        from_client: bool,
        what: String,
    },
    NotRecorded(LedgerError),
    Interrupted(Interrupt),
    /// The target sent something masking cannot rewrite; it must not reach the client as it is.
    Unmaskable(&'static str),
}

const READ_CHUNK: usize = 64 << 10;
/// While a request waits for approval, the client's next messages are read (to see it leave) up
/// to this many bytes; then witness stops reading until the decision.
const MAX_BUFFERED_WHILE_HELD: usize = 1 << 20;
/// The SQLSTATE of every refusal by policy (insufficient_privilege).
const REFUSED: &str = "42501";

/// What the client side of the relay needs besides its streams.
struct ClientSide<'a, G> {
    gate: &'a G,
    subject: &'a Subject,
    session: &'a SessionWriter,
    tracker: &'a Tracker,
    /// Messages witness itself sends the client mid-session (approval notices), written by the
    /// target side between whole messages.
    notices: mpsc::Sender<BytesMut>,
    /// Wakes a held request when the client sends a cancel request (Ctrl-C in psql).
    cancelled: Option<Arc<Notify>>,
}

pub(crate) async fn run<G: Gate>(ready: ReadySession, gate: &G) {
    let ReadySession { client, backend, session, interrupt, subject, guards, max_rows, masking } = ready;
    let leftover = backend.leftover;
    let parameter_status = backend.parameter_status;
    let parts = Parts { gate, subject: &subject, leftover, parameter_status, session, interrupt, guards, max_rows, masking };
    // Plain TCP halves are split without a lock; TLS streams need tokio's shared split.
    match (client, backend.stream) {
        (Stream::Plain(client), Stream::Plain(target)) => {
            let (client_rd, client_wr) = client.into_split();
            let (target_rd, target_wr) = target.into_split();
            relay(client_rd, client_wr, target_rd, target_wr, parts).await
        }
        (Stream::Plain(client), target) => {
            let (client_rd, client_wr) = client.into_split();
            let (target_rd, target_wr) = tokio::io::split(target);
            relay(client_rd, client_wr, target_rd, target_wr, parts).await
        }
        (client, Stream::Plain(target)) => {
            let (client_rd, client_wr) = tokio::io::split(client);
            let (target_rd, target_wr) = target.into_split();
            relay(client_rd, client_wr, target_rd, target_wr, parts).await
        }
        (client, target) => {
            let (client_rd, client_wr) = tokio::io::split(client);
            let (target_rd, target_wr) = tokio::io::split(target);
            relay(client_rd, client_wr, target_rd, target_wr, parts).await
        }
    }
}

/// Everything a relay needs besides the four stream halves.
struct Parts<'a, G> {
    gate: &'a G,
    subject: &'a Subject,
    leftover: BytesMut,
    /// The target's ParameterStatus messages at startup: the settings text is first read under.
    parameter_status: BytesMut,
    session: SessionWriter,
    interrupt: watch::Receiver<Option<Interrupt>>,
    guards: (Box<dyn Send + Sync>, Option<KeyGuard>),
    max_rows: usize,
    masking: Option<Masking>,
}

async fn relay<CR, CW, TR, TW, G>(mut client_rd: CR, mut client_wr: CW, mut target_rd: TR, mut target_wr: TW, parts: Parts<'_, G>)
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    TR: AsyncRead + Unpin,
    TW: AsyncWrite + Unpin,
    G: Gate,
{
    let Parts { gate, subject, leftover, parameter_status, session, mut interrupt, guards, max_rows, masking } = parts;
    let wire_masks = |masking: &Masking| WireMasks::new(masking.masks.clone(), masking.catalog.clone());
    let requests = Requests::new(masking.as_ref().map(wire_masks));
    let responses = Responses::with_masks(max_rows, masking.as_ref().map(wire_masks));
    let tracker = Tracker::new(&parameter_status);
    let (notices, mut notices_rx) = mpsc::channel(4);
    let cancelled = guards.1.as_ref().map(|key| key.cancelled.clone());
    let side = ClientSide { gate, subject, session: &session, tracker: &tracker, notices, cancelled };
    let end = tokio::select! {
        end = client_to_target(&mut client_rd, &mut target_wr, &side, requests) => end,
        end = target_to_client(&mut target_rd, &mut client_wr, TargetSide { session: &session, tracker: &tracker, responses, masking: masking.as_ref() }, leftover, &mut notices_rx) => end,
        interrupt = interrupted(&mut interrupt) => End::Interrupted(interrupt),
    };
    let (reason, fatal) = describe(&end);
    if let Some((sqlstate, message)) = fatal {
        let mut out = BytesMut::new();
        codec::error_response(&mut out, Severity::Fatal, sqlstate, &message, None);
        let _ = client_wr.write_all(&out).await;
        let _ = client_wr.flush().await;
    }
    let _ = client_wr.shutdown().await;
    let _ = target_wr.shutdown().await;
    let id = session.id();
    drop(guards);
    match session.close(&reason).await {
        Ok(_) => tracing::info!(session = %id, reason, "PostgreSQL session ended"),
        Err(e) => tracing::error!(session = %id, reason, error = %e, "PostgreSQL session ended but its end could not be recorded"),
    }
}

async fn client_to_target<R, W, G>(client: &mut R, target: &mut W, side: &ClientSide<'_, G>, mut requests: Requests) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    G: Gate,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut receipts: Vec<PendingReceipt> = Vec::new();
    loop {
        match client.read_buf(&mut buf).await {
            Ok(0) => return End::ClientClosed,
            Ok(_) => {}
            Err(e) => return End::ClientIo(e),
        }
        let mut upto = 0;
        let mut terminate = false;
        loop {
            match codec::peek(&buf[upto..]) {
                Peek::Whole(len) => {
                    let msg = codec::message(&buf[upto..], len);
                    let tag = msg.tag;
                    if tag == frontend::TERMINATE {
                        upto += len;
                        terminate = true;
                        break;
                    }
                    let mut seen = match requests.on_message(msg, side.tracker) {
                        Ok(Step::Seen(seen)) => seen,
                        Ok(Step::Wait) => {
                            // Its meaning depends on answers the target still owes: what came
                            // before goes on, and the message is looked at again once they are in.
                            if let Err(end) = forward(target, &mut buf, upto, &mut receipts).await {
                                return end;
                            }
                            upto = 0;
                            side.tracker.wait_settled().await;
                            continue;
                        }
                        Err(e) => return End::Malformed { from_client: true, what: format!("{} message: {e}", tag as char) },
                    };
                    let verdict = match seen.request() {
                        Some(request) => side.gate.decide(side.subject, request),
                        None => Verdict::Allow { rule: None },
                    };
                    let mut wire = PgWire {
                        client: &mut *client,
                        target: &mut *target,
                        buf: &mut buf,
                        upto,
                        receipts: &mut receipts,
                        side,
                        cancel: None,
                    };
                    let admission = admit(&mut wire, seen.event.take(), verdict).await;
                    // Zero once a hold let through what came before the held message.
                    let upto_before = wire.upto;
                    drop(wire);
                    let refusal = match admission {
                        Err(end) => return end,
                        Ok(Admission::Admitted) => {
                            if let Some(pending) = seen.pending.take() {
                                side.tracker.push(pending);
                            }
                            upto = upto_before + len;
                            continue;
                        }
                        Ok(Admission::Refused(Refusal::Withdrawn { why: Withdrawal::ClientLeft, .. })) => return End::ClientClosed,
                        Ok(Admission::Refused(refusal)) => refusal,
                    };
                    // Refused, and recorded so: what came before it is forwarded, then the substitute.
                    if let Err(end) = forward(target, &mut buf, upto_before, &mut receipts).await {
                        return end;
                    }
                    let (sqlstate, reason) = match &refusal {
                        Refusal::Withdrawn { why: Withdrawal::Cancelled, .. } => (
                            "57014",
                            "canceling statement due to user request (it was waiting for witness approval; it did not run)".to_string(),
                        ),
                        other => (REFUSED, other.explain("statement")),
                    };
                    let mut error = BytesMut::new();
                    codec::error_response(&mut error, Severity::Error, sqlstate, &reason, None);
                    seen.deny(error.freeze());
                    if let Some(pending) = seen.pending {
                        side.tracker.push(pending);
                    }
                    if let Err(e) = write_all(target, &substitute(tag)).await {
                        return End::TargetIo(e);
                    }
                    buf.advance(len);
                    upto = 0;
                }
                Peek::Partial => {
                    reserve_for_partial(&mut buf, upto);
                    break;
                }
                Peek::TooLong(len) => return End::TooLarge { from_client: true, len },
            }
        }
        if let Err(end) = forward(target, &mut buf, upto, &mut receipts).await {
            return end;
        }
        if terminate {
            return End::ClientTerminated;
        }
    }
}

/// [`forward_recorded`] for the client side, with its failures as session ends.
async fn forward<W: AsyncWrite + Unpin>(
    target: &mut W,
    buf: &mut BytesMut,
    upto: usize,
    receipts: &mut Vec<PendingReceipt>,
) -> Result<(), End> {
    forward_recorded(target, buf, upto, receipts).await.map_err(|failure| match failure {
        Forward::NotRecorded(e) => End::NotRecorded(e),
        Forward::Io(e) => End::TargetIo(e),
    })
}

/// A request the target refuses at once, sent in place of a denied one so that the target fails
/// it as it would a failed statement (the transaction aborts, the pipeline skips to Sync). Its
/// error never reaches the client: witness's own does.
fn substitute(tag: u8) -> BytesMut {
    let mut out = BytesMut::new();
    match tag {
        // A syntax error.
        frontend::QUERY => codec::frontend_message(&mut out, frontend::QUERY, b"WITNESS DENIED THIS STATEMENT\0"),
        // A Parse of invalid SQL (named, so the client's unnamed statement stays): it fails
        // whatever statements and portals the session holds, before any name is looked up.
        frontend::EXECUTE => codec::frontend_message(&mut out, frontend::PARSE, b"\x01witness denied\0WITNESS DENIED THIS STATEMENT\0\0\0"),
        // Function OID 0: "function does not exist".
        _ => codec::frontend_message(&mut out, frontend::FUNCTION_CALL, b"\0\0\0\0\0\0\0\0\0\0"),
    }
    out
}

/// The client side's part in admission: events are submitted and their receipts awaited before
/// anything is forwarded; while a request is held, the client's next messages are read on (up to
/// a bound) so that a client that leaves or cancels withdraws it at once.
struct PgWire<'s, 'a, R, W, G> {
    client: &'s mut R,
    target: &'s mut W,
    buf: &'s mut BytesMut,
    /// How many bytes at the front of `buf` came before the request and are not forwarded yet.
    upto: usize,
    receipts: &'s mut Vec<PendingReceipt>,
    side: &'s ClientSide<'a, G>,
    /// Registered when the hold begins, so that a cancel request sent at any moment of the wait
    /// is seen.
    cancel: Option<Pin<Box<Notified<'s>>>>,
}

impl<R, W, G> Wire for PgWire<'_, '_, R, W, G>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    type Error = End;

    async fn record(&mut self, event: &Event) -> Result<(), End> {
        submit(self.side.session, event, self.receipts).await
    }

    async fn hold_begins(&mut self, waiting: &Waiting<'_>) -> Result<(), End> {
        // What came before the held message goes on; the held one waits at the front of buf.
        forward(self.target, self.buf, self.upto, self.receipts).await?;
        self.upto = 0;
        let side = self.side;
        if let Some(cancelled) = &side.cancelled {
            let mut notified = Box::pin(cancelled.notified());
            notified.as_mut().enable();
            self.cancel = Some(notified);
        }
        let mut notice = BytesMut::new();
        codec::error_response(&mut notice, Severity::Notice, "01000", &waiting.line("statement"), Some(waiting.instructions));
        let _ = side.notices.send(notice).await;
        Ok(())
    }

    async fn approved(&mut self, line: &str) -> Result<(), End> {
        let mut notice = BytesMut::new();
        codec::error_response(&mut notice, Severity::Notice, "01000", line, None);
        let _ = self.side.notices.send(notice).await;
        Ok(())
    }

    async fn withdrawn(&mut self) -> Withdrawal {
        let cancelled = async {
            match self.cancel.as_mut() {
                Some(notified) => notified.await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancelled);
        loop {
            if self.buf.len() >= MAX_BUFFERED_WHILE_HELD {
                cancelled.await;
                return Withdrawal::Cancelled;
            }
            tokio::select! {
                () = &mut cancelled => return Withdrawal::Cancelled,
                read = self.client.read_buf(self.buf) => match read {
                    Ok(0) | Err(_) => return Withdrawal::ClientLeft,
                    Ok(_) => {}
                },
            }
        }
    }
}

/// What the target side of a relay works with.
struct TargetSide<'a> {
    session: &'a SessionWriter,
    tracker: &'a Tracker,
    responses: Responses,
    /// The session's masking, whose catalog a RowDescription may need looked up first.
    masking: Option<&'a Masking>,
}

async fn target_to_client<R, W>(
    target: &mut R,
    client: &mut W,
    side: TargetSide<'_>,
    leftover: BytesMut,
    notices: &mut mpsc::Receiver<BytesMut>,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let TargetSide { session, tracker, mut responses, masking } = side;
    let mut buf = leftover;
    buf.reserve(READ_CHUNK);
    let mut events = Vec::new();
    let mut receipts: Vec<PendingReceipt> = Vec::new();
    // What the client gets when some messages are replaced (a denial's error, masked rows): the
    // bytes up to `copied` of buf are in `out`, the rest still in buf.
    let mut out = BytesMut::new();
    loop {
        if buf.is_empty() || matches!(codec::peek(&buf), Peek::Partial) {
            // Between whole messages: the place for witness's own notices.
            tokio::select! {
                biased;
                Some(notice) = notices.recv() => {
                    if let Err(e) = write_all(client, &notice).await {
                        return End::ClientIo(e);
                    }
                    continue;
                }
                read = target.read_buf(&mut buf) => match read {
                    Ok(0) => return End::TargetClosed,
                    Ok(_) => {}
                    Err(e) => return End::TargetIo(e),
                },
            }
        }
        let (mut upto, mut copied) = (0, 0);
        loop {
            match codec::peek(&buf[upto..]) {
                Peek::Whole(len) => {
                    let msg = codec::message(&buf[upto..], len);
                    if let Some(masking) = masking {
                        let tables = responses.tables_to_look_up(msg);
                        if !tables.is_empty() {
                            if let Err(e) = catalog_lookup::look_up(&masking.catalog, &masking.target, &tables).await {
                                // Masking then takes the tables' columns to match every table pattern.
                                tracing::warn!(error = %e, "masking cannot learn the names of result columns");
                            }
                        }
                    }
                    match responses.on_message(msg, tracker, &mut events, &mut ToClient::new(&mut out, &buf[copied..upto])) {
                        Ok(Reply::Forward) => upto += len,
                        Ok(Reply::Rewritten) => {
                            upto += len;
                            copied = upto;
                        }
                        Ok(Reply::Replace(replacement)) => {
                            out.extend_from_slice(&buf[copied..upto]);
                            out.extend_from_slice(&replacement);
                            upto += len;
                            copied = upto;
                        }
                        Ok(Reply::Refuse(reason)) => return End::Unmaskable(reason),
                        Err(e) => return End::Malformed { from_client: false, what: format!("{} message: {e}", msg.tag as char) },
                    }
                }
                Peek::Partial => {
                    reserve_for_partial(&mut buf, upto);
                    break;
                }
                Peek::TooLong(len) => return End::TooLarge { from_client: false, len },
            }
        }
        if let Err(end) = submit_all(session, &mut events, &mut receipts).await {
            return end;
        }
        if copied > 0 {
            // Some messages were replaced: the client gets `out` and the rest of what was read.
            out.extend_from_slice(&buf[copied..upto]);
            buf.advance(upto);
            let sent = forward_to_client(client, &mut out, usize::MAX, &mut receipts).await;
            out.clear();
            if let Err(end) = sent {
                return end;
            }
        } else if let Err(end) = forward_to_client(client, &mut buf, upto, &mut receipts).await {
            return end;
        }
    }
}

/// Queues one event for the ledger; its receipt is awaited before the bytes it describes go on.
async fn submit(session: &SessionWriter, event: &Event, receipts: &mut Vec<PendingReceipt>) -> Result<(), End> {
    receipts.push(session.submit(event).await.map_err(End::NotRecorded)?);
    Ok(())
}

async fn submit_all(session: &SessionWriter, events: &mut Vec<Event>, receipts: &mut Vec<PendingReceipt>) -> Result<(), End> {
    for event in events.drain(..) {
        submit(session, &event, receipts).await?;
    }
    Ok(())
}

/// [`forward_recorded`] for the target side, with its failures as session ends.
async fn forward_to_client<W: AsyncWrite + Unpin>(
    client: &mut W,
    buf: &mut BytesMut,
    upto: usize,
    receipts: &mut Vec<PendingReceipt>,
) -> Result<(), End> {
    forward_recorded(client, buf, upto, receipts).await.map_err(|failure| match failure {
        Forward::NotRecorded(e) => End::NotRecorded(e),
        Forward::Io(e) => End::ClientIo(e),
    })
}

/// Why [`forward_recorded`] stopped.
enum Forward {
    NotRecorded(LedgerError),
    Io(std::io::Error),
}

/// Fail closed, in one place for both directions: waits until every record the bytes carry is
/// durable, then forwards the first `upto` bytes of `buf` (whole messages) and drops them from it.
async fn forward_recorded<W: AsyncWrite + Unpin>(
    out: &mut W,
    buf: &mut BytesMut,
    upto: usize,
    receipts: &mut Vec<PendingReceipt>,
) -> Result<(), Forward> {
    for receipt in receipts.drain(..) {
        receipt.wait().await.map_err(Forward::NotRecorded)?;
    }
    let upto = upto.min(buf.len());
    if upto > 0 {
        write_all(out, &buf[..upto]).await.map_err(Forward::Io)?;
        buf.advance(upto);
    }
    Ok(())
}

/// Makes room for the rest of a partial message whose length is known, so it arrives in as few
/// reads as possible.
fn reserve_for_partial(buf: &mut BytesMut, upto: usize) {
    let rest = &buf[upto..];
    if rest.len() >= 5 {
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]).max(0) as usize + 1;
        if len <= MAX_MESSAGE_LEN + 1 {
            // Grow with what arrives, a megabyte at a time at most: a length a peer claims is not
            // memory it has sent.
            buf.reserve(len.saturating_sub(rest.len()).min(1 << 20));
        }
    } else {
        buf.reserve(READ_CHUNK);
    }
}

async fn write_all<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes).await?;
    out.flush().await
}

async fn interrupted(interrupt: &mut watch::Receiver<Option<Interrupt>>) -> Interrupt {
    loop {
        if let Some(reason) = interrupt.borrow_and_update().clone() {
            return reason;
        }
        if interrupt.changed().await.is_err() {
            // The gate went away without a reason: treat as shutdown.
            return Interrupt::Shutdown;
        }
    }
}

/// The reason recorded in session.end and the FATAL error the client gets, if any.
fn describe(end: &End) -> (String, Option<(&'static str, String)>) {
    match end {
        End::ClientTerminated => ("client terminated the session".into(), None),
        End::ClientClosed => ("client closed the connection".into(), None),
        End::TargetClosed => ("the target closed the connection".into(), None),
        End::ClientIo(e) => (format!("client connection failed: {e}"), None),
        End::TargetIo(e) => {
            let message = format!("the connection to the target failed: {e}");
            (message.clone(), Some(("08006", message)))
        }
        End::TooLarge { from_client, len } => {
            let side = if *from_client { "client" } else { "target" };
            let message = format!("a {side} message of {len} bytes is over witness's limit of {MAX_MESSAGE_LEN} bytes");
            (message.clone(), Some(("54000", message)))
        }
        End::Malformed { from_client, what } => {
            let side = if *from_client { "client" } else { "target" };
            let message = format!("malformed {side} {what}");
            (message.clone(), Some(("08P01", message)))
        }
        End::NotRecorded(e) => {
            let message = format!("witness could not record this request, so it was not sent and the session ends: {e}");
            (message.clone(), Some(("58000", message)))
        }
        End::Interrupted(Interrupt::Revoked) => {
            let message = "the witness token of this session was revoked".to_string();
            (message.clone(), Some(("28000", message)))
        }
        End::Interrupted(Interrupt::Shutdown) => {
            let message = "witness is shutting down".to_string();
            (message.clone(), Some(("57P01", message)))
        }
        // 57P01 is what PostgreSQL answers to pg_terminate_backend: an administrator's command.
        End::Interrupted(ended @ Interrupt::Ended { .. }) => {
            let message = ended.describe();
            (message.clone(), Some(("57P01", message)))
        }
        End::Unmaskable(reason) => {
            let message = format!("the session ends: {reason}");
            (message.clone(), Some(("0A000", message)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::substitute;
    use crate::codec::frontend;

    #[test]
    fn substitutes_cannot_run_anything_the_client_prepared() {
        // A denied Execute is replaced by a Parse of invalid SQL, not an Execute of some portal
        // name (a client may have bound a portal of any name).
        let execute = substitute(frontend::EXECUTE);
        assert_eq!(execute[0], frontend::PARSE);
        assert!(execute.windows(14).any(|w| w == b"WITNESS DENIED"));
        assert_eq!(substitute(frontend::QUERY)[0], frontend::QUERY);
        assert_eq!(&substitute(frontend::FUNCTION_CALL)[5..9], &[0, 0, 0, 0], "function OID 0");
    }
}
