//! WebSocket upgrades: once the upstream has answered a decided and recorded upgrade request
//! with `101 Switching Protocols`, both connections carry WebSocket frames, and this relays
//! them. Each read is followed frame by frame (`websocket`), what it carries is recorded, and
//! only once that record is durable are the bytes, unchanged, written to the other side. The
//! relay ends when both sides have closed, when either breaks the protocol or fails, or when the
//! session is ended (revoked, shut down), and records how it ended.
//!
//! What this does not do: decide anything inside the WebSocket. The upgrade request was the
//! decision (for Kubernetes, `create pods/exec` with its command); the messages are recorded.

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use witness_core::{kind, Direction, Event, Interrupt, PayloadType};

use crate::recorder::Recorder;
use crate::websocket::{self, FrameReader, Piece};

/// Bytes read from either side at a time (and so the most one record of it holds).
const READ_BYTES: usize = 64 << 10;

type Io = TokioIo<Upgraded>;

/// Relays an upgraded connection until it ends; `channels` reads Kubernetes channel bytes.
pub async fn relay(
    client: OnUpgrade,
    upstream: OnUpgrade,
    recorder: Recorder,
    mut interrupt: watch::Receiver<Option<Interrupt>>,
    channels: bool,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            recorder.record_later(closed(&format!("the upgrade did not complete: {e}")));
            return;
        }
    };
    let (client_read, client_write) = tokio::io::split(TokioIo::new(client));
    let (upstream_read, upstream_write) = tokio::io::split(TokioIo::new(upstream));
    let up = carry(client_read, upstream_write, Direction::Request, &recorder, channels);
    let down = carry(upstream_read, client_write, Direction::Response, &recorder, channels);
    let interrupted = async {
        // The watch's guard is let go of before waiting on: the future must stay `Send`.
        let why = interrupt.wait_for(Option::is_some).await.ok().map(|why| why.as_ref().map(Interrupt::describe).unwrap_or_default());
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        (up, down) = async { tokio::join!(up, down) } => match (up, down) {
            (Ok(()), Ok(())) => "both sides closed the WebSocket".to_string(),
            (Err(why), _) => format!("client to upstream: {why}"),
            (_, Err(why)) => format!("upstream to client: {why}"),
        },
        why = interrupted => format!("the session ended: {why}"),
    };
    recorder.record_later(closed(&ended));
}

/// Carries one direction: read, record, then write; at the end of the reading side, closes the
/// writing side's output so that the other end sees it too.
async fn carry(
    mut from: ReadHalf<Io>,
    mut to: WriteHalf<Io>,
    direction: Direction,
    recorder: &Recorder,
    channels: bool,
) -> Result<(), String> {
    let mut frames = FrameReader::new(channels);
    let mut buffer = vec![0u8; READ_BYTES];
    let result = loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(format!("reading failed: {e}")),
        };
        let bytes = &buffer[..read];
        let pieces = match frames.feed(bytes) {
            Ok(pieces) => pieces,
            Err(e) => break Err(e.to_string()),
        };
        let mut events = merged(pieces).into_iter().map(|piece| event(direction, piece)).peekable();
        while let Some(event) = events.next() {
            if events.peek().is_some() {
                recorder.record_later(event);
            } else if recorder.record(event).await.is_err() {
                // Records are appended in order: the last one durable means all of them are.
                return Err("the ledger refused a record; nothing more is passed on".into());
            }
        }
        if let Err(e) = to.write_all(bytes).await {
            break Err(format!("writing failed: {e}"));
        }
    };
    let _ = to.shutdown().await;
    result
}

/// Adjacent pieces of the same opcode and channel, as one.
fn merged(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match out.last_mut() {
            Some(last) if last.opcode == piece.opcode && last.channel == piece.channel && !websocket::is_control_opcode(piece.opcode) => {
                last.data.extend_from_slice(&piece.data);
                last.message_ends = piece.message_ends;
            }
            _ => out.push(piece),
        }
    }
    out
}

fn event(direction: Direction, piece: Piece) -> Event {
    let what = match (piece.opcode, piece.channel) {
        (websocket::CLOSE, _) => "close".to_string(),
        (websocket::PING, _) => "ping".to_string(),
        (websocket::PONG, _) => "pong".to_string(),
        (_, Some(channel)) => format!("channel {channel}"),
        (websocket::TEXT, None) => "text".to_string(),
        _ => "binary".to_string(),
    };
    let payload_type = if piece.data.is_empty() {
        PayloadType::Empty
    } else if witness_core::is_mostly_text(&piece.data) {
        PayloadType::Text
    } else {
        PayloadType::Binary
    };
    let mut event = Event {
        kind: kind::HTTP_WEBSOCKET,
        direction,
        summary: format!("{what}, {} bytes", piece.data.len()),
        attrs: serde_json::Map::new(),
        payload_type,
        payload: piece.data,
    }
    .with_attr("opcode", websocket::opcode_name(piece.opcode));
    if let Some(channel) = piece.channel {
        event = event.with_attr("channel", channel);
    }
    if piece.message_ends {
        event = event.with_attr("message_ends", true);
    }
    event
}

fn closed(why: &str) -> Event {
    Event::note(kind::HTTP_WEBSOCKET_CLOSED, Direction::Gateway, why.to_string())
}
