//! The response tracker's tests: results matched to their requests, skipped pipelines, and
//! masking by descriptions.

use serde_json::json;

use super::*;
use crate::codec::frontend;
use crate::record::tests::{message, msg};
use crate::record::Requests;

fn respond(responses: &mut Responses, tracker: &Tracker, messages: &[Vec<u8>]) -> Vec<Event> {
    let mut events = Vec::new();
    for m in messages {
        responses.on_message(message(m), tracker, &mut events, &mut ToClient::new(&mut BytesMut::new(), &[])).unwrap();
    }
    events
}

#[test]
fn an_extended_query_is_recorded_with_its_statement_parameters_and_result() {
    let tracker = Tracker::default();
    let mut requests = Requests::default();
    let mut responses = Responses::new(1);
    let parse = msg(frontend::PARSE, b"s1\0select $1::int + $2\0\0\0");
    let bind = msg(frontend::BIND, b"\0s1\0\0\x01\0\0\0\x02\0\0\0\x0242\xff\xff\xff\xff\0\0");
    let execute = msg(frontend::EXECUTE, b"\0\0\0\0\0");
    let sync = msg(frontend::SYNC, b"");
    let mut recorded = Vec::new();
    for m in [&parse, &bind, &execute, &sync] {
        recorded.extend(requests.see_and_queue(message(m), &tracker).unwrap());
    }
    let kinds: Vec<&str> = recorded.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["pg.parse", "pg.execute"]);
    assert_eq!(recorded[1].attrs["params"], json!(["42", null]));
    assert_eq!(recorded[1].payload, b"select $1::int + $2");

    let row_description = msg(backend::ROW_DESCRIPTION, b"\0\x01sum\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0");
    let row = msg(backend::DATA_ROW, b"\0\x01\0\0\0\x0242");
    let events = respond(
        &mut responses,
        &tracker,
        &[
            msg(backend::PARSE_COMPLETE, b""),
            msg(backend::BIND_COMPLETE, b""),
            row_description,
            row.clone(),
            row,
            msg(backend::COMMAND_COMPLETE, b"SELECT 2\0"),
            msg(backend::READY_FOR_QUERY, &[transaction::IDLE]),
        ],
    );
    assert_eq!(events.len(), 1);
    let result = &events[0];
    assert_eq!(
        (result.attrs["tag"].as_str(), result.attrs["rows"].as_u64(), result.attrs["rows_recorded"].as_u64()),
        (Some("SELECT 2"), Some(2), Some(1))
    );
    let payload: Value = serde_json::from_slice(&result.payload).unwrap();
    assert_eq!(payload["rows"], json!([["42"]]), "rows are kept up to the cap");
    assert!(tracker.with_head(|head| head.is_none()));
}

#[test]
fn executions_after_an_error_are_skipped_up_to_the_sync() {
    let tracker = Tracker::default();
    let mut requests = Requests::default();
    let mut responses = Responses::new(10);
    for m in [
        msg(frontend::PARSE, b"\0selec nope\0\0\0"),
        msg(frontend::BIND, b"\0\0\0\0\0\0\0\0"),
        msg(frontend::EXECUTE, b"\0\0\0\0\0"),
        msg(frontend::QUERY, b"drop table t\0"),
        msg(frontend::SYNC, b""),
        msg(frontend::QUERY, b"select 1\0"),
    ] {
        requests.see_and_queue(message(&m), &tracker).unwrap();
    }
    let error = msg(backend::ERROR_RESPONSE, b"SERROR\0VERROR\0C42601\0Msyntax error\0\0");
    let events = respond(&mut responses, &tracker, &[error, msg(backend::READY_FOR_QUERY, &[transaction::IDLE])]);
    let summaries: Vec<&str> = events.iter().map(|e| e.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "ERROR 42601: syntax error",
            "not executed (an earlier message of the pipeline failed): selec nope",
            "query not run (an earlier message of the pipeline failed)"
        ]
    );
    assert_eq!(events[0].attrs["message"], "parse");
    // What is left is the last query, answered next.
    assert!(tracker.with_head(|head| matches!(head, Some(Pending::Query { .. }))));
}

/// A session's masks with one column rule, `*.email`, and no detectors.
fn email_column_masks() -> Arc<SessionMasks> {
    use witness_mask::{ApplyTo, ColumnPattern, DetectorSet, MaskRule, MaskStyle, Masking};
    let rule = MaskRule {
        name: "pii".into(),
        connections: Vec::new(),
        groups: Vec::new(),
        columns: vec![ColumnPattern::new("*.email").unwrap()],
        json_paths: Vec::new(),
        detectors: DetectorSet::EMPTY,
        apply_to: ApplyTo::ClientAndRecording,
        style: MaskStyle::Redact,
    };
    Masking::new(vec![rule], b"test").unwrap().for_session("pg", &[]).unwrap()
}

#[test]
fn a_description_like_the_last_is_planned_like_it_and_any_other_afresh() {
    let masks = email_column_masks();
    let tracker = Tracker::default();
    let mut responses = Responses::with_session_masks(10, masks);
    // One computed text column (no table): `*.email` matches it by its name.
    let described =
        |name: &[u8]| msg(backend::ROW_DESCRIPTION, &[b"\0\x01", name, b"\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0"].concat());
    let row = msg(backend::DATA_ROW, b"\0\x01\0\0\0\x05a@b.c");
    let mut replies = Vec::new();
    for name in [&b"email"[..], b"note", b"email", b"email", b"note"] {
        let mut events = Vec::new();
        let mut out = BytesMut::new();
        tracker.push(Pending::Query { request: 1, started: std::time::Instant::now(), statements: 0, denial: None, changes_names: false });
        for m in [
            described(name),
            row.clone(),
            msg(backend::COMMAND_COMPLETE, b"SELECT 1\0"),
            msg(backend::READY_FOR_QUERY, &[transaction::IDLE]),
        ] {
            let reply = responses.on_message(message(&m), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
            if m[0] == backend::DATA_ROW {
                replies.push(matches!(reply, Reply::Rewritten));
            }
        }
    }
    assert_eq!(replies, [true, false, true, true, false], "the email column is masked, the note column is not");
}

/// Runs one result of a single text column through masking by detectors that apply to
/// `apply_to`: what the client got for each row, and the rows as recorded.
fn masked_column(apply_to: witness_mask::ApplyTo, values: &[&str]) -> (Vec<String>, Value) {
    use witness_mask::{DetectorSet, MaskRule, MaskStyle, Masking};
    let rule = MaskRule {
        name: "pii".into(),
        connections: Vec::new(),
        groups: Vec::new(),
        columns: Vec::new(),
        json_paths: Vec::new(),
        detectors: DetectorSet::all(),
        apply_to,
        style: MaskStyle::Redact,
    };
    let masks = Masking::new(vec![rule], b"test").unwrap().for_session("pg", &[]).unwrap();
    let tracker = Tracker::default();
    tracker.push(Pending::Query { request: 1, started: std::time::Instant::now(), statements: 0, denial: None, changes_names: false });
    let mut responses = Responses::with_session_masks(100, masks);
    let mut events = Vec::new();
    let mut client_got = Vec::new();
    let described = msg(backend::ROW_DESCRIPTION, b"\0\x01note\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0");
    let rows = values.iter().map(|v| msg(backend::DATA_ROW, &[&b"\0\x01"[..], &(v.len() as i32).to_be_bytes(), v.as_bytes()].concat()));
    for m in std::iter::once(described)
        .chain(rows)
        .chain([msg(backend::COMMAND_COMPLETE, b"SELECT 1\0"), msg(backend::READY_FOR_QUERY, &[transaction::IDLE])])
    {
        let mut out = BytesMut::new();
        let reply = responses.on_message(message(&m), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
        if m[0] == backend::DATA_ROW {
            let sent = if matches!(reply, Reply::Rewritten) { &out[..] } else { &m[..] };
            // The one value, after the tag, length, column count and value length.
            client_got.push(String::from_utf8_lossy(&sent[1 + 4 + 2 + 4..]).into_owned());
        }
    }
    let payload: Value = serde_json::from_slice(&events[0].payload).unwrap();
    (client_got, payload["rows"].clone())
}

#[test]
fn a_repeated_value_is_masked_each_time_and_a_repeated_clean_one_passes_each_time() {
    use witness_mask::ApplyTo;
    let values = ["none on file", "none on file", "mail a@example.com", "mail a@example.com", "none on file", "none"];
    let (client, recorded) = masked_column(ApplyTo::ClientAndRecording, &values);
    let masked = ["none on file", "none on file", "mail [email]", "mail [email]", "none on file", "none"];
    assert_eq!(client, masked);
    assert_eq!(recorded, json!(masked.map(|v| [v])));
}

#[test]
fn a_value_clean_for_the_client_but_not_for_the_recording_is_masked_in_every_recorded_row() {
    use witness_mask::ApplyTo;
    let values = ["mail a@example.com", "mail a@example.com", "none", "mail a@example.com"];
    let (client, recorded) = masked_column(ApplyTo::Recording, &values);
    assert_eq!(client, values, "the client sees the real values");
    assert_eq!(recorded, json!([["mail [email]"], ["mail [email]"], ["none"], ["mail [email]"]]));
}

#[test]
fn a_multi_statement_query_gets_one_result_per_statement_and_errors_are_kept() {
    let tracker = Tracker::default();
    let mut requests = Requests::default();
    let mut responses = Responses::new(10);
    let query = msg(frontend::QUERY, b"create table t(); select nope;\0");
    assert_eq!(requests.see_and_queue(message(&query), &tracker).unwrap().unwrap().kind.as_str(), "pg.query");
    let error = msg(backend::ERROR_RESPONSE, b"SERROR\0VERROR\0C42703\0Mcolumn \"nope\" does not exist\0\0");
    let events = respond(
        &mut responses,
        &tracker,
        &[msg(backend::COMMAND_COMPLETE, b"CREATE TABLE\0"), error, msg(backend::READY_FOR_QUERY, &[transaction::IDLE])],
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].attrs["statement_index"], 1);
    assert_eq!(events[1].attrs["error"]["sqlstate"], "42703");
    assert_eq!(events[1].summary, "ERROR 42703: column \"nope\" does not exist");
    assert!(tracker.with_head(|head| head.is_none()));
}

#[test]
fn rows_of_a_portal_are_read_by_its_own_description() {
    let masks = email_column_masks();
    let tracker = Tracker::default();
    let mut requests = Requests::default();
    let mut responses = Responses::with_session_masks(10, masks);
    // Two portals; the harmless one is described, the other executed.
    for m in [
        msg(frontend::PARSE, b"a\0select note from t\0\0\0"),
        msg(frontend::PARSE, b"b\0select email from t\0\0\0"),
        msg(frontend::BIND, b"pa\0a\0\0\0\0\0\0\0"),
        msg(frontend::BIND, b"pb\0b\0\0\0\0\0\0\0"),
        msg(frontend::DESCRIBE, b"Ppa\0"),
        msg(frontend::EXECUTE, b"pb\0\0\0\0\0"),
        msg(frontend::SYNC, b""),
    ] {
        requests.see_and_queue(message(&m), &tracker).unwrap();
    }
    let note = msg(backend::ROW_DESCRIPTION, b"\0\x01note\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0");
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    for m in [
        msg(backend::PARSE_COMPLETE, b""),
        msg(backend::PARSE_COMPLETE, b""),
        msg(backend::BIND_COMPLETE, b""),
        msg(backend::BIND_COMPLETE, b""),
        note,
    ] {
        responses.on_message(message(&m), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
    }
    let row = msg(backend::DATA_ROW, b"\0\x01\0\0\0\x05a@b.c");
    let reply = responses.on_message(message(&row), &tracker, &mut events, &mut ToClient::new(&mut out, &[])).unwrap();
    assert!(matches!(reply, Reply::Rewritten), "rows of a portal witness saw no description of are masked blind");
}

#[test]
fn an_answer_that_does_not_fit_the_requests_ends_the_session() {
    let tracker = Tracker::default();
    let mut responses = Responses::new(10);
    tracker.push(Pending::Sync);
    let result = responses.on_message(
        message(&msg(backend::PARSE_COMPLETE, b"")),
        &tracker,
        &mut Vec::new(),
        &mut ToClient::new(&mut BytesMut::new(), &[]),
    );
    assert!(matches!(result, Err(ResponseError::Desync(_))));
}
