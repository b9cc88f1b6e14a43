//! What an SSH session's events look like in the ledger: their attributes and payloads. Their
//! kinds (core's `kind` vocabulary) start with `ssh.` (channel life, requests, bytes each way,
//! exit), `sftp.` (operations inside an SFTP channel) and `git.` (ref updates of a push and the
//! target's report). docs/RECORDING_FORMAT.md lists them; `witness replay` and the asciicast
//! export read them.

use serde_json::Value;
use witness_core::{is_mostly_text, kind, shown_text, Direction, Event, EventKind, PayloadType};

/// Longest summary line kept for a data event.
const SUMMARY_CHARS: usize = 120;
/// Longest summary line kept for a command line (its payload keeps all of it).
pub(crate) const COMMAND_SUMMARY_CHARS: usize = 200;

/// A note about a channel (no payload), with its channel number.
pub(crate) fn channel_note(kind: EventKind, direction: Direction, channel: u32, summary: impl Into<String>) -> Event {
    Event::note(kind, direction, summary).with_attr("channel", channel)
}

/// Bytes that crossed a channel (`ssh.input` or `ssh.output`), recorded as they are: text when
/// they read as text (terminal output usually does; a stray byte that is not UTF-8 is shown
/// escaped), binary otherwise.
pub(crate) fn data(kind: EventKind, direction: Direction, channel: u32, stream: Option<&'static str>, bytes: &[u8]) -> Event {
    let (payload_type, summary) = if is_mostly_text(bytes) {
        (PayloadType::Text, clip(&shown_text(bytes), SUMMARY_CHARS))
    } else {
        (PayloadType::Binary, format!("{} bytes", bytes.len()))
    };
    let mut event = Event { kind, direction, summary, attrs: serde_json::Map::new(), payload_type, payload: bytes.to_vec() }
        .with_attr("channel", channel)
        .with_attr("bytes", bytes.len());
    if let Some(stream) = stream {
        event = event.with_attr("stream", stream);
    }
    event
}

/// An event with a JSON list of what a chunk of an SFTP or git stream held.
pub(crate) fn stream_ops(kind: EventKind, direction: Direction, channel: u32, n_bytes: usize, summary: String, ops: Value) -> Event {
    Event::note(kind, direction, summary).with_attr("channel", channel).with_attr("bytes", n_bytes).with_attr("ops", ops)
}

/// Attributes of a pty request, for replay: the terminal and its first size.
pub(crate) fn pty(channel: u32, term: &str, cols: u32, rows: u32) -> Event {
    channel_note(kind::SSH_PTY, Direction::Request, channel, format!("pty {term} {cols}x{rows}"))
        .with_attr("term", term)
        .with_attr("cols", cols)
        .with_attr("rows", rows)
}

pub(crate) fn resize(channel: u32, cols: u32, rows: u32) -> Event {
    channel_note(kind::SSH_RESIZE, Direction::Request, channel, format!("resize {cols}x{rows}"))
        .with_attr("cols", cols)
        .with_attr("rows", rows)
}

/// The first non-empty line of `text` without control characters, at most `max` characters
/// (`…` marks a cut).
pub(crate) fn clip(text: &str, max: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim_end();
    let mut clipped: String = line.chars().filter(|c| !c.is_control()).take(max).collect();
    if line.chars().count() > max {
        clipped.push('…');
    }
    clipped
}

/// A forwarding request or a channel through one (`ssh.forward`), with whether it was allowed.
/// `reverse`: a channel the target opened back toward the client.
pub(crate) fn forward(operation: &str, destination: &str, allowed: bool, summary: String, reverse: bool) -> Event {
    let direction = if reverse { Direction::Response } else { Direction::Request };
    let event = Event::note(kind::SSH_FORWARD, direction, summary)
        .with_attr("operation", operation)
        .with_attr("destination", destination)
        .with_attr("allowed", allowed);
    if reverse {
        event.with_attr("reverse", true)
    } else {
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_events_keep_bytes_and_summarise_text() {
        let text = data(kind::SSH_OUTPUT, Direction::Response, 0, Some("stdout"), b"\r\nhello \x1b[1mworld\x1b[0m\r\n");
        assert_eq!(text.payload_type, PayloadType::Text);
        assert_eq!(text.summary, "hello [1mworld[0m");
        assert_eq!(text.attrs["bytes"], 23);
        let binary = data(kind::SSH_INPUT, Direction::Request, 3, None, &[0xff, 0, 1]);
        assert_eq!((binary.payload_type, binary.summary.as_str(), binary.payload.len()), (PayloadType::Binary, "3 bytes", 3));
        assert_eq!(clip(&"x".repeat(200), SUMMARY_CHARS).chars().count(), SUMMARY_CHARS + 1);
        // A stray byte that is not UTF-8 keeps the chunk readable, escaped; the bytes stay exact.
        let stray = data(kind::SSH_OUTPUT, Direction::Response, 0, Some("stdout"), b"caf\xe9 ready\r\n$ ");
        assert_eq!((stray.payload_type, stray.summary.as_str()), (PayloadType::Text, "caf\\xe9 ready"));
        assert_eq!(stray.payload, b"caf\xe9 ready\r\n$ ");
    }
}
