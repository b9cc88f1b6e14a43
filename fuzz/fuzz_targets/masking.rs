//! Fuzzes masking: the content detectors over any bytes (spans in bounds, ascending, never
//! overlapping), and target messages (rows, notices, errors, COPY data) masked by a session with
//! column rules and every detector on. None of it may panic, and a masked message must still be
//! one well-framed message.

#![no_main]

use std::sync::Arc;

use bytes::BytesMut;

use libfuzzer_sys::fuzz_target;
use witness_mask::{scan, ApplyTo, ColumnPattern, DetectorSet, MaskRule, MaskStyle, Masking, SessionMasks};
use witness_proto_pg::codec::{message, peek, Peek};
use witness_proto_pg::record::{Tracker, Reply, Requests, Responses, ToClient};

fn masks(style: MaskStyle) -> Arc<SessionMasks> {
    let rule = MaskRule {
        name: "pii".into(),
        connections: Vec::new(),
        groups: Vec::new(),
        columns: vec![ColumnPattern::new("*.email").unwrap(), ColumnPattern::new("users.ssn").unwrap()],
        json_paths: Vec::new(),
        detectors: DetectorSet::all(),
        apply_to: ApplyTo::ClientAndRecording,
        style,
    };
    Masking::new(vec![rule], b"fuzz").unwrap().for_session("pg", &[]).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let mut end = 0;
    scan(data, DetectorSet::all(), &mut |found| {
        assert!(found.start >= end && found.start < found.end && found.end <= data.len(), "{found:?} after {end}");
        end = found.end;
    });
    let style = match data.first().map(|b| b % 3) {
        Some(0) => MaskStyle::Redact,
        Some(1) => MaskStyle::Partial,
        _ => MaskStyle::Hash,
    };
    let tracker = Tracker::default();
    let mut requests = Requests::default();
    let mut responses = Responses::with_session_masks(4, masks(style));
    let mut events = Vec::new();
    let mut at = 1.min(data.len());
    while let Peek::Whole(len) = peek(&data[at..]) {
        let msg = message(&data[at..], len);
        let _ = requests.see_and_queue(msg, &tracker);
        let mut rewritten = BytesMut::new();
        match responses.on_message(msg, &tracker, &mut events, &mut ToClient::new(&mut rewritten, &[])) {
            Ok(Reply::Replace(bytes)) => {
                assert!(matches!(peek(&bytes), Peek::Whole(n) if n == bytes.len()), "a replacement is one whole message");
            }
            Ok(Reply::Rewritten) => {
                assert!(matches!(peek(&rewritten), Peek::Whole(n) if n == rewritten.len()), "a rewritten row is one whole message");
            }
            _ => assert!(rewritten.is_empty(), "nothing is written for a message that is not rewritten"),
        }
        at += len;
    }
});
