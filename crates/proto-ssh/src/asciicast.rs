//! A recorded terminal as asciicast v2 (the format asciinema plays): the session's first channel
//! with a pty (else its first channel with output), its output (`o`), input (`i`) and resizes
//! (`r`), timed by when the ledger recorded them. A Kubernetes exec (`kubectl exec -it`) plays
//! the same way from its WebSocket's channels: stdout and stderr as output, stdin as input, and
//! the terminal sizes it sent as resizes. `witness replay` plays it in the terminal and
//! `witness export --format asciicast` writes it.
//!
//! Pure: it reads events already read from the ledger and writes to any `Write`.

use std::io::{self, Write};

use serde_json::json;
use witness_core::kind;
use witness_ledger::StoredEvent;

/// A terminal recording.
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    pub width: u32,
    pub height: u32,
    /// Unix seconds of the first event.
    pub timestamp: i64,
    pub term: Option<String>,
    /// The channel it was made from.
    pub channel: u64,
    pub frames: Vec<Frame>,
}

/// One asciicast event.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Seconds since the cast's start.
    pub time: f64,
    pub code: FrameCode,
    pub data: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCode {
    Output,
    Input,
    Resize,
}

/// Terminal size when the client asked for no pty.
const DEFAULT_SIZE: (u32, u32) = (80, 24);

/// Kubernetes' exec channels (`v4`/`v5.channel.k8s.io`).
const KUBE_STDIN: u64 = 0;
const KUBE_STDOUT: u64 = 1;
const KUBE_STDERR: u64 = 2;
const KUBE_RESIZE: u64 = 4;

/// The cast of a session's terminal, or None when no channel of it has a pty or output.
pub fn from_events(events: &[StoredEvent]) -> Option<Cast> {
    let channel_of = |e: &StoredEvent| e.attrs.get("channel").and_then(|c| c.as_u64());
    let Some(channel) = events
        .iter()
        .find(|e| e.kind == kind::SSH_PTY.as_str())
        .and_then(channel_of)
        .or_else(|| events.iter().find(|e| e.kind == kind::SSH_OUTPUT.as_str()).and_then(channel_of))
    else {
        return from_kube_exec(events);
    };
    let mine: Vec<&StoredEvent> = events.iter().filter(|e| channel_of(e) == Some(channel)).collect();
    let start_ns = mine.first()?.time_ns;
    let pty = mine.iter().find(|e| e.kind == kind::SSH_PTY.as_str());
    let size = |e: &StoredEvent, key: &str| e.attrs.get(key).and_then(|v| v.as_u64()).map(|v| v as u32);
    let (width, height) =
        pty.map(|e| (size(e, "cols").unwrap_or(DEFAULT_SIZE.0), size(e, "rows").unwrap_or(DEFAULT_SIZE.1))).unwrap_or(DEFAULT_SIZE);
    let term = pty.and_then(|e| e.attrs.get("term")).and_then(|t| t.as_str()).map(str::to_string);
    let frames = frames_of(&mine, start_ns, |e| match e.kind.as_str() {
        k if k == kind::SSH_OUTPUT.as_str() => Step::Text(FrameCode::Output),
        k if k == kind::SSH_INPUT.as_str() => Step::Text(FrameCode::Input),
        k if k == kind::SSH_RESIZE.as_str() => match (size(e, "cols"), size(e, "rows")) {
            (Some(cols), Some(rows)) => Step::Resize(cols, rows),
            _ => Step::Skip,
        },
        _ => Step::Skip,
    });
    Some(Cast { width, height, timestamp: start_ns / 1_000_000_000, term, channel, frames })
}

/// The cast of a Kubernetes exec's WebSocket, or None when it printed nothing.
fn from_kube_exec(events: &[StoredEvent]) -> Option<Cast> {
    let channel_of = |e: &StoredEvent| e.attrs.get("channel").and_then(|c| c.as_u64());
    let mine: Vec<&StoredEvent> = events.iter().filter(|e| e.kind == kind::HTTP_WEBSOCKET.as_str() && channel_of(e).is_some()).collect();
    if !mine.iter().any(|e| matches!(channel_of(e), Some(KUBE_STDOUT | KUBE_STDERR))) {
        return None;
    }
    let start_ns = mine.first()?.time_ns;
    let resize = |e: &StoredEvent| {
        let size: serde_json::Value = serde_json::from_slice(e.payload.as_deref()?).ok()?;
        Some((size.get("Width")?.as_u64()? as u32, size.get("Height")?.as_u64()? as u32))
    };
    let (width, height) = mine.iter().filter(|e| channel_of(e) == Some(KUBE_RESIZE)).find_map(|e| resize(e)).unwrap_or(DEFAULT_SIZE);
    let frames = frames_of(&mine, start_ns, |e| match channel_of(e) {
        Some(KUBE_STDOUT | KUBE_STDERR) => Step::Text(FrameCode::Output),
        Some(KUBE_STDIN) => Step::Text(FrameCode::Input),
        Some(KUBE_RESIZE) => resize(e).map_or(Step::Skip, |(cols, rows)| Step::Resize(cols, rows)),
        _ => Step::Skip,
    });
    Some(Cast { width, height, timestamp: start_ns / 1_000_000_000, term: None, channel: KUBE_STDOUT, frames })
}

/// What an event is to a cast.
enum Step {
    /// Its payload is terminal text of this kind.
    Text(FrameCode),
    /// The terminal's new size: columns, rows.
    Resize(u32, u32),
    Skip,
}

/// The frames of `events`, timed from `start_ns`, each read as `step` says.
fn frames_of(events: &[&StoredEvent], start_ns: i64, step: impl Fn(&StoredEvent) -> Step) -> Vec<Frame> {
    let mut frames = Vec::new();
    // Chunks may end inside a UTF-8 character; the rest comes with the next chunk.
    let (mut carry_output, mut carry_input) = (Vec::new(), Vec::new());
    for e in events {
        let time = (e.time_ns - start_ns).max(0) as f64 / 1e9;
        let (code, carry) = match step(e) {
            Step::Text(FrameCode::Input) => (FrameCode::Input, &mut carry_input),
            Step::Text(code) => (code, &mut carry_output),
            Step::Resize(cols, rows) => {
                frames.push(Frame { time, code: FrameCode::Resize, data: format!("{cols}x{rows}") });
                continue;
            }
            Step::Skip => continue,
        };
        let Some(payload) = &e.payload else { continue };
        carry.extend_from_slice(payload);
        let text = take_utf8(carry);
        if !text.is_empty() {
            frames.push(Frame { time, code, data: text });
        }
    }
    frames
}

/// Takes the longest prefix of `bytes` that does not end inside a UTF-8 character, as text
/// (invalid bytes become U+FFFD); at most three bytes stay behind.
fn take_utf8(bytes: &mut Vec<u8>) -> String {
    let cut = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4 => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    let text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    bytes.drain(..cut);
    text
}

// === impl Cast ===

impl Cast {
    /// Writes the cast as asciicast v2: a header line, then one JSON array per frame.
    pub fn write_asciicast(&self, out: &mut impl Write) -> io::Result<()> {
        let mut header = json!({"version": 2, "width": self.width, "height": self.height, "timestamp": self.timestamp});
        if let Some(term) = &self.term {
            header["env"] = json!({"TERM": term});
        }
        writeln!(out, "{header}")?;
        for frame in &self.frames {
            writeln!(out, "{}", json!([round_time(frame.time), frame.code.as_str(), frame.data]))?;
        }
        Ok(())
    }

    /// How long the cast plays at normal speed, in seconds.
    pub fn duration(&self) -> f64 {
        self.frames.last().map(|f| f.time).unwrap_or(0.0)
    }
}

fn round_time(time: f64) -> f64 {
    (time * 1e6).round() / 1e6
}

impl FrameCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameCode::Output => "o",
            FrameCode::Input => "i",
            FrameCode::Resize => "r",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use witness_core::{Direction, PayloadType, SessionId};

    fn event(kind: &str, ms: i64, channel: u64, attrs: serde_json::Value, payload: &[u8]) -> StoredEvent {
        StoredEvent {
            session_id: SessionId::from_bytes([1; 16]),
            seq: 0,
            ledger_seq: 0,
            time_ns: 1_700_000_000_000_000_000 + ms * 1_000_000,
            kind: kind.into(),
            direction: Direction::Response,
            summary: String::new(),
            attrs: {
                let mut attrs = attrs.as_object().cloned().unwrap_or_default();
                attrs.insert("channel".into(), channel.into());
                attrs
            },
            payload_type: PayloadType::Text,
            payload: Some(payload.to_vec()),
            payload_len: payload.len() as u64,
            sealed: None,
        }
    }

    #[test]
    fn a_shell_channel_becomes_an_asciicast() {
        let euro = "€".as_bytes();
        let events = vec![
            event("ssh.channel", 0, 0, json!({}), b""),
            event("ssh.output", 5, 0, json!({}), b"exec output of another channel"),
            event("ssh.channel", 10, 1, json!({}), b""),
            event("ssh.pty", 10, 1, json!({"term": "xterm-256color", "cols": 120, "rows": 40}), b""),
            event("ssh.output", 500, 1, json!({}), b"$ "),
            event("ssh.input", 1500, 1, json!({}), b"l"),
            event("ssh.resize", 1700, 1, json!({"cols": 100, "rows": 30}), b""),
            event("ssh.output", 2000, 1, json!({}), &[b'a', euro[0]]),
            event("ssh.output", 2250, 1, json!({}), &euro[1..]),
        ];
        let cast = from_events(&events).unwrap();
        assert_eq!((cast.width, cast.height, cast.channel, cast.term.as_deref()), (120, 40, 1, Some("xterm-256color")));
        let mut out = Vec::new();
        cast.write_asciicast(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"env":{"TERM":"xterm-256color"},"height":40,"timestamp":1700000000,"version":2,"width":120}"#);
        assert_eq!(
            &lines[1..],
            [r#"[0.49,"o","$ "]"#, r#"[1.49,"i","l"]"#, r#"[1.69,"r","100x30"]"#, r#"[1.99,"o","a"]"#, r#"[2.24,"o","€"]"#]
        );
        assert!((cast.duration() - 2.24).abs() < 1e-9);
    }

    #[test]
    fn without_a_pty_the_first_channel_with_output_is_cast() {
        let events = vec![event("ssh.output", 0, 3, json!({}), b"hello\n")];
        let cast = from_events(&events).unwrap();
        assert_eq!((cast.width, cast.height, cast.channel), (80, 24, 3));
        assert!(from_events(&[event("ssh.exec", 0, 0, json!({}), b"ls")]).is_none());
    }

    #[test]
    fn a_kubernetes_exec_becomes_an_asciicast() {
        let events = vec![
            event("http.request", 0, 9, json!({}), b""),
            event("http.websocket", 10, 4, json!({}), br#"{"Width":132,"Height":43}"#),
            event("http.websocket", 20, 1, json!({}), b"$ "),
            event("http.websocket", 30, 0, json!({}), b"ls\r"),
            event("http.websocket", 40, 2, json!({}), b"oops"),
            event("http.websocket", 50, 3, json!({}), br#"{"status":"Success"}"#),
        ];
        let cast = from_events(&events).unwrap();
        assert_eq!((cast.width, cast.height), (132, 43));
        let frames: Vec<(FrameCode, &str)> = cast.frames.iter().map(|f| (f.code, f.data.as_str())).collect();
        assert_eq!(
            frames,
            [(FrameCode::Resize, "132x43"), (FrameCode::Output, "$ "), (FrameCode::Input, "ls\r"), (FrameCode::Output, "oops")]
        );
        assert!(from_events(&[event("http.websocket", 0, 0, json!({}), b"stdin only")]).is_none());
    }
}
