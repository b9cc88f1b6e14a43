//! What an SSH session's events look like in the ledger: their kinds, attributes and payloads.
//! Kinds start with `ssh.` (channel life, requests, bytes each way, exit), `sftp.` (operations
//! inside an SFTP channel) and `git.` (ref updates of a push and the target's report).
//! docs/RECORDING_FORMAT.md lists them; `witness replay` and the asciicast export read them.

use serde_json::Value;
use witness_core::{Direction, Event, EventKind, PayloadType, Verdict};

/// Longest summary line kept for a data event.
const SUMMARY_CHARS: usize = 120;
/// Longest summary line kept for a command line (its payload keeps all of it).
pub(crate) const COMMAND_SUMMARY_CHARS: usize = 200;

pub(crate) fn kind(name: &'static str) -> EventKind {
    EventKind::new(name).expect("kinds in this crate are valid")
}

/// A note about a channel (no payload), with its channel number.
pub(crate) fn channel_note(name: &'static str, direction: Direction, channel: u32, summary: impl Into<String>) -> Event {
    Event::note(kind(name), direction, summary).with_attr("channel", channel)
}

/// Bytes that crossed a channel (`ssh.input` or `ssh.output`), recorded as they are: text when
/// they are UTF-8 (terminal output usually is), binary otherwise.
pub(crate) fn data(name: &'static str, direction: Direction, channel: u32, stream: Option<&'static str>, bytes: &[u8]) -> Event {
    let (payload_type, summary) = match std::str::from_utf8(bytes) {
        Ok(text) => (PayloadType::Text, clip(text, SUMMARY_CHARS)),
        Err(_) => (PayloadType::Binary, format!("{} bytes", bytes.len())),
    };
    let mut event = Event { kind: kind(name), direction, summary, attrs: serde_json::Map::new(), payload_type, payload: bytes.to_vec() }
        .with_attr("channel", channel)
        .with_attr("bytes", bytes.len());
    if let Some(stream) = stream {
        event = event.with_attr("stream", stream);
    }
    event
}

/// The request an operation's verdict was given on, with the decision in its attributes (as
/// PostgreSQL statements carry theirs).
pub(crate) fn with_verdict(event: Event, verdict: &Verdict) -> Event {
    match verdict {
        Verdict::Allow { rule: None } => event,
        Verdict::Allow { rule: Some(rule) } => event.with_attr("decision", "allow").with_attr("rule", rule.clone()),
        Verdict::Deny { rule, .. } => event.with_attr("decision", "deny").with_attr("rule", rule.clone()),
        Verdict::Hold(held) => event
            .with_attr("decision", "hold")
            .with_attr("rule", held.rule.clone())
            .with_attr("approval_id", held.approval_id.clone())
            .with_attr("approvers", held.approvers.clone()),
    }
}

/// An event with a JSON list of what a chunk of an SFTP or git stream held.
pub(crate) fn stream_ops(name: &'static str, direction: Direction, channel: u32, n_bytes: usize, summary: String, ops: Value) -> Event {
    Event::note(kind(name), direction, summary).with_attr("channel", channel).with_attr("bytes", n_bytes).with_attr("ops", ops)
}

/// The outcome of a held operation, as `approval.decided` (the same event PostgreSQL writes).
pub(crate) fn approval_decided(approval_id: &str, rule: &str, outcome: &str, by: Option<&str>, waited_ms: u64) -> Event {
    let summary = match by {
        Some(by) => format!("approval {approval_id} {outcome} by {by}"),
        None => format!("approval {approval_id} {outcome}"),
    };
    let mut event = Event::note(kind("approval.decided"), Direction::Gateway, summary)
        .with_attr("approval_id", approval_id)
        .with_attr("rule", rule)
        .with_attr("outcome", outcome)
        .with_attr("waited_ms", waited_ms);
    if let Some(by) = by {
        event = event.with_attr("by", by);
    }
    event
}

/// Attributes of a pty request, for replay: the terminal and its first size.
pub(crate) fn pty(channel: u32, term: &str, cols: u32, rows: u32) -> Event {
    channel_note("ssh.pty", Direction::Request, channel, format!("pty {term} {cols}x{rows}"))
        .with_attr("term", term)
        .with_attr("cols", cols)
        .with_attr("rows", rows)
}

pub(crate) fn resize(channel: u32, cols: u32, rows: u32) -> Event {
    channel_note("ssh.resize", Direction::Request, channel, format!("resize {cols}x{rows}")).with_attr("cols", cols).with_attr("rows", rows)
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
    let event = Event::note(kind("ssh.forward"), direction, summary)
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
        let text = data("ssh.output", Direction::Response, 0, Some("stdout"), b"\r\nhello \x1b[1mworld\x1b[0m\r\n");
        assert_eq!(text.payload_type, PayloadType::Text);
        assert_eq!(text.summary, "hello [1mworld[0m");
        assert_eq!(text.attrs["bytes"], 23);
        let binary = data("ssh.input", Direction::Request, 3, None, &[0xff, 0, 1]);
        assert_eq!((binary.payload_type, binary.summary.as_str(), binary.payload.len()), (PayloadType::Binary, "3 bytes", 3));
        assert_eq!(clip(&"x".repeat(200), SUMMARY_CHARS).chars().count(), SUMMARY_CHARS + 1);
    }
}
