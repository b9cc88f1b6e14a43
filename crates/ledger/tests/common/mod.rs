//! Helpers shared by the ledger's integration tests: ledgers with known content, and a map of
//! where every record sits in the segment files (read with the public `format` decoders).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use witness_core::{Direction, Event, EventKind, PayloadType, Protocol, SessionId, SessionInfo};
use witness_ledger::format::{decode_frame, decode_record, decode_segment_header, Frame, Record, SEGMENT_HEADER_LEN};
use witness_ledger::LedgerConfig;

/// A ledger config for tests: small segments so that rotation happens, and checkpoints only when
/// the test asks (or at shutdown) unless it sets an interval.
pub fn config(data_dir: &Path) -> LedgerConfig {
    let mut config = LedgerConfig::new(data_dir);
    config.segment_bytes = 16 << 10;
    config.checkpoint_interval = Duration::from_secs(3600);
    config
}

pub fn info(identity: &str, task: &str) -> SessionInfo {
    SessionInfo {
        identity: identity.to_string(),
        connection: "pg-test".to_string(),
        protocol: Protocol::Postgres,
        task: Some(task.to_string()),
        client_addr: Some("127.0.0.1:50000".to_string()),
        groups: vec!["ai-agents".to_string()],
    }
}

/// Event `i` of a test session: its summary names it, its payload is `payload_len` known bytes.
pub fn event(i: u64, payload_len: usize) -> Event {
    Event {
        kind: EventKind::new("sql.query").unwrap(),
        direction: if i.is_multiple_of(2) { Direction::Request } else { Direction::Response },
        summary: format!("event {i}"),
        attrs: serde_json::Map::from_iter([("i".to_string(), serde_json::json!(i))]),
        payload_type: PayloadType::Binary,
        payload: (0..payload_len).map(|b| (b as u64 ^ i) as u8).collect(),
    }
}

/// What kind of record a span holds and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Event { session: SessionId, seq: u64 },
    Head { session: SessionId },
    Checkpoint,
}

/// Where one record's frame is.
#[derive(Clone, Debug)]
pub struct RecordSpan {
    pub segment: PathBuf,
    pub offset: usize,
    pub len: usize,
    pub ledger_seq: u64,
    pub kind: SpanKind,
}

impl RecordSpan {
    pub fn session(&self) -> Option<SessionId> {
        match self.kind {
            SpanKind::Event { session, .. } | SpanKind::Head { session } => Some(session),
            SpanKind::Checkpoint => None,
        }
    }
}

/// Every record of an intact ledger, in order.
pub fn record_spans(ledger_root: &Path) -> Vec<RecordSpan> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(ledger_root.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    let mut spans = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).unwrap();
        decode_segment_header(&bytes).unwrap();
        let mut at = SEGMENT_HEADER_LEN;
        while at < bytes.len() {
            let Frame::Complete { body, frame_len } = decode_frame(&bytes[at..]) else { panic!("damaged frame at {at} in {segment:?}") };
            let (ledger_seq, kind) = match decode_record(body).unwrap() {
                Record::Event(e) => (e.ledger_seq, SpanKind::Event { session: SessionId::from_bytes(e.session_id), seq: e.seq }),
                Record::Head(h) => (h.ledger_seq, SpanKind::Head { session: SessionId::from_bytes(h.leaf.session_id) }),
                Record::Checkpoint(c) => (c.ledger_seq, SpanKind::Checkpoint),
            };
            spans.push(RecordSpan { segment: segment.clone(), offset: at, len: frame_len, ledger_seq, kind });
            at += frame_len;
        }
    }
    spans
}
