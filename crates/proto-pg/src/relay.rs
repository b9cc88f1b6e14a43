//! The relay between a client and its target, both directions at once. Each direction reads what
//! is there, finds the whole messages, records what they mean and waits for the ledger's receipts,
//! then forwards those bytes unchanged: requests are in the ledger before the target sees them,
//! responses before the client sees them. Large results stream through in read-sized pieces.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use witness_ledger::{LedgerError, PendingReceipt, SessionWriter};

use crate::codec::{self, Peek, Severity, MAX_MESSAGE_LEN};
use crate::front::ReadySession;
use crate::record::{PendingQueue, Requests, Responses};
use crate::stream::Stream;
use crate::Interrupt;

/// How a session ended.
#[derive(Debug)]
enum End {
    ClientTerminated,
    ClientClosed,
    TargetClosed,
    ClientIo(std::io::Error),
    TargetIo(std::io::Error),
    TooLarge { from_client: bool, len: usize },
    Malformed { from_client: bool, what: String },
    NotRecorded(LedgerError),
    Interrupted(Interrupt),
}

const READ_CHUNK: usize = 64 << 10;

pub(crate) async fn run(ready: ReadySession, max_rows: usize) {
    let ReadySession { client, backend, session, interrupt, guards } = ready;
    let leftover = backend.leftover;
    // Plain TCP halves are split without a lock; TLS streams need tokio's shared split.
    match (client, backend.stream) {
        (Stream::Plain(client), Stream::Plain(target)) => {
            let (client_rd, client_wr) = client.into_split();
            let (target_rd, target_wr) = target.into_split();
            relay(client_rd, client_wr, target_rd, target_wr, leftover, session, interrupt, guards, max_rows).await
        }
        (Stream::Plain(client), target) => {
            let (client_rd, client_wr) = client.into_split();
            let (target_rd, target_wr) = tokio::io::split(target);
            relay(client_rd, client_wr, target_rd, target_wr, leftover, session, interrupt, guards, max_rows).await
        }
        (client, Stream::Plain(target)) => {
            let (client_rd, client_wr) = tokio::io::split(client);
            let (target_rd, target_wr) = target.into_split();
            relay(client_rd, client_wr, target_rd, target_wr, leftover, session, interrupt, guards, max_rows).await
        }
        (client, target) => {
            let (client_rd, client_wr) = tokio::io::split(client);
            let (target_rd, target_wr) = tokio::io::split(target);
            relay(client_rd, client_wr, target_rd, target_wr, leftover, session, interrupt, guards, max_rows).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn relay<CR, CW, TR, TW>(
    mut client_rd: CR,
    mut client_wr: CW,
    mut target_rd: TR,
    mut target_wr: TW,
    leftover: BytesMut,
    session: SessionWriter,
    mut interrupt: tokio::sync::watch::Receiver<Option<Interrupt>>,
    guards: (Box<dyn Send + Sync>, Option<crate::cancel::KeyGuard>),
    max_rows: usize,
) where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    TR: AsyncRead + Unpin,
    TW: AsyncWrite + Unpin,
{
    let queue = PendingQueue::default();
    let end = tokio::select! {
        end = client_to_target(&mut client_rd, &mut target_wr, &session, &queue) => end,
        end = target_to_client(&mut target_rd, &mut client_wr, &session, &queue, max_rows, leftover) => end,
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

async fn client_to_target<R, W>(client: &mut R, target: &mut W, session: &SessionWriter, queue: &PendingQueue) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut requests = Requests::default();
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
                    upto += len;
                    if msg.tag == b'X' {
                        terminate = true;
                        break;
                    }
                    match requests.on_message(msg, queue) {
                        Ok(None) => {}
                        Ok(Some(event)) => match session.submit(&event).await {
                            Ok(receipt) => receipts.push(receipt),
                            Err(e) => return End::NotRecorded(e),
                        },
                        Err(e) => return End::Malformed { from_client: true, what: format!("{} message: {e}", msg.tag as char) },
                    }
                }
                Peek::Partial => {
                    reserve_for_partial(&mut buf, upto);
                    break;
                }
                Peek::TooLong(len) => return End::TooLarge { from_client: true, len },
            }
        }
        match forward_recorded(target, &mut buf, upto, &mut receipts).await {
            Ok(()) => {}
            Err(Forward::NotRecorded(e)) => return End::NotRecorded(e),
            Err(Forward::Io(e)) => return End::TargetIo(e),
        }
        if terminate {
            return End::ClientTerminated;
        }
    }
}

async fn target_to_client<R, W>(
    target: &mut R,
    client: &mut W,
    session: &SessionWriter,
    queue: &PendingQueue,
    max_rows: usize,
    leftover: BytesMut,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut responses = Responses::new(max_rows);
    let mut buf = leftover;
    buf.reserve(READ_CHUNK);
    let mut events = Vec::new();
    let mut receipts: Vec<PendingReceipt> = Vec::new();
    loop {
        if buf.is_empty() || matches!(codec::peek(&buf), Peek::Partial) {
            match target.read_buf(&mut buf).await {
                Ok(0) => return End::TargetClosed,
                Ok(_) => {}
                Err(e) => return End::TargetIo(e),
            }
        }
        let mut upto = 0;
        loop {
            match codec::peek(&buf[upto..]) {
                Peek::Whole(len) => {
                    let msg = codec::message(&buf[upto..], len);
                    upto += len;
                    if let Err(e) = responses.on_message(msg, queue, &mut events) {
                        return End::Malformed { from_client: false, what: format!("{} message: {e}", msg.tag as char) };
                    }
                }
                Peek::Partial => {
                    reserve_for_partial(&mut buf, upto);
                    break;
                }
                Peek::TooLong(len) => return End::TooLarge { from_client: false, len },
            }
        }
        for event in events.drain(..) {
            match session.submit(&event).await {
                Ok(receipt) => receipts.push(receipt),
                Err(e) => return End::NotRecorded(e),
            }
        }
        match forward_recorded(client, &mut buf, upto, &mut receipts).await {
            Ok(()) => {}
            Err(Forward::NotRecorded(e)) => return End::NotRecorded(e),
            Err(Forward::Io(e)) => return End::ClientIo(e),
        }
    }
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

async fn interrupted(interrupt: &mut tokio::sync::watch::Receiver<Option<Interrupt>>) -> Interrupt {
    loop {
        if let Some(reason) = *interrupt.borrow_and_update() {
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
    }
}
