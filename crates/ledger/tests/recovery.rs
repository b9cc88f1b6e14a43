//! Recovery and the trust anchors: torn tails are cut, damage elsewhere stops the ledger from
//! opening, a crash between a session's end and its closing head is repaired, exported
//! checkpoints catch truncation, rollback and rewriting, and session exports verify on their own.

mod common;

use std::fs;
use std::io::BufReader;
use std::path::Path;

use witness_ledger::export::{export_session, verify_session_export, ExportProblem};
use witness_ledger::verify::{verify_ledger, ExportedCheckpoint, ProblemKind, VerifyOptions};
use witness_ledger::{open_index, Ledger, LedgerError, SessionFilter};

use common::{config, event, info, record_spans, SpanKind};

fn verify(data_dir: &Path, options: &VerifyOptions) -> Vec<ProblemKind> {
    verify_ledger(&data_dir.join("ledger"), options).unwrap().problems.into_iter().map(|p| p.kind).collect()
}

fn last_checkpoint(data_dir: &Path) -> ExportedCheckpoint {
    verify_ledger(&data_dir.join("ledger"), &VerifyOptions::default()).unwrap().last_checkpoint.unwrap()
}

/// A ledger with `n` closed sessions of `events` events each.
fn ledger_with_sessions(data_dir: &Path, n: usize, events: u64) -> Vec<witness_core::SessionId> {
    let ledger = Ledger::open(&config(data_dir)).unwrap();
    let ids = (0..n)
        .map(|s| {
            let session = ledger.open_session_blocking(&info(&format!("agent-{s}"), &format!("task {s}"))).unwrap();
            for i in 0..events {
                session.append_blocking(&event(i, 100)).unwrap();
            }
            let id = session.id();
            session.close_blocking("done").unwrap();
            id
        })
        .collect();
    ledger.shutdown().unwrap();
    ids
}

fn last_segment(data_dir: &Path) -> std::path::PathBuf {
    let spans = record_spans(&data_dir.join("ledger"));
    spans.last().unwrap().segment.clone()
}

#[test]
fn a_torn_tail_is_reported_then_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    ledger_with_sessions(dir.path(), 2, 5);
    let segment = last_segment(dir.path());
    let intact_len = fs::metadata(&segment).unwrap().len();
    // Half of a copy of the first record, as a write cut short by a crash leaves it.
    let spans = record_spans(&dir.path().join("ledger"));
    let first = &spans[0];
    let bytes = fs::read(&first.segment).unwrap();
    let mut torn = fs::read(&segment).unwrap();
    torn.extend_from_slice(&bytes[first.offset..first.offset + first.len / 2]);
    fs::write(&segment, torn).unwrap();

    let problems = verify(dir.path(), &VerifyOptions::default());
    assert!(matches!(problems.as_slice(), [ProblemKind::BadFrame { .. }]), "{problems:?}");
    let lenient = VerifyOptions { allow_unsealed_tail: true, ..Default::default() };
    assert_eq!(verify(dir.path(), &lenient), vec![], "a running gateway's half-written record is tolerated on request");

    Ledger::open(&config(dir.path())).unwrap().shutdown().unwrap();
    assert_eq!(fs::metadata(&segment).unwrap().len(), intact_len, "exactly the torn bytes were cut");
    assert_eq!(verify(dir.path(), &VerifyOptions::default()), vec![]);
}

#[test]
fn damage_before_the_end_stops_the_ledger_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    ledger_with_sessions(dir.path(), 3, 10);
    let spans = record_spans(&dir.path().join("ledger"));
    let victim = &spans[spans.len() / 2];
    let mut bytes = fs::read(&victim.segment).unwrap();
    bytes[victim.offset + victim.len - 1] ^= 0xff;
    fs::write(&victim.segment, bytes).unwrap();
    match Ledger::open(&config(dir.path())) {
        Err(LedgerError::Damaged { offset, .. }) => assert_eq!(offset, victim.offset as u64),
        Err(other) => panic!("expected Damaged, got {other}"),
        Ok(_) => panic!("a damaged ledger must not open for appending"),
    }
}

#[test]
fn a_crash_between_session_end_and_its_head_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ledger_with_sessions(dir.path(), 1, 3);
    // Cut everything after the session.end record: its closing head and the final checkpoint.
    let spans = record_spans(&dir.path().join("ledger"));
    let end = spans.iter().rfind(|s| matches!(s.kind, SpanKind::Event { .. })).unwrap();
    let file = fs::OpenOptions::new().write(true).open(&end.segment).unwrap();
    file.set_len((end.offset + end.len) as u64).unwrap();
    drop(file);
    let problems = verify(dir.path(), &VerifyOptions::default());
    assert!(problems.iter().any(|p| matches!(p, ProblemKind::UnsealedTail { .. })), "{problems:?}");

    Ledger::open(&config(dir.path())).unwrap().shutdown().unwrap();
    assert_eq!(verify(dir.path(), &VerifyOptions::default()), vec![]);
    let mut out = Vec::new();
    let summary = export_session(&dir.path().join("ledger"), ids[0], &mut out).unwrap();
    assert!(summary.closed, "the repaired head says the session is closed");
    assert_eq!(summary.events, 5, "start, three events, end");
}

#[test]
fn sessions_left_open_are_closed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&config(dir.path())).unwrap();
    let session = ledger.open_session_blocking(&info("agent", "left open")).unwrap();
    session.append_blocking(&event(0, 10)).unwrap();
    let id = session.id();
    std::mem::forget(session); // as if the process died with the session open
    ledger.shutdown().unwrap();
    assert_eq!(verify_ledger(&dir.path().join("ledger"), &VerifyOptions::default()).unwrap().open_sessions, 1);

    Ledger::open(&config(dir.path())).unwrap().shutdown().unwrap();
    let index = open_index(dir.path()).unwrap();
    let summary = index.session(id).unwrap().unwrap();
    assert_eq!(summary.end_reason.as_deref(), Some("witness stopped before the session ended"));
    assert_eq!(verify(dir.path(), &VerifyOptions::default()), vec![]);
}

#[test]
fn a_session_dropped_without_close_records_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&config(dir.path())).unwrap();
    let session = ledger.open_session_blocking(&info("agent", "dropped")).unwrap();
    let id = session.id();
    drop(session);
    ledger.shutdown().unwrap();
    let summary = open_index(dir.path()).unwrap().session(id).unwrap().unwrap();
    assert_eq!(summary.end_reason.as_deref(), Some("the session's recorder was dropped without closing it"));
}

#[test]
fn an_exported_checkpoint_catches_truncation_rollback_and_rewriting() {
    let dir = tempfile::tempdir().unwrap();
    ledger_with_sessions(dir.path(), 2, 5);
    let ledger_dir = dir.path().join("ledger");
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&ledger_dir.join("segments"), backup.path());
    // The ledger grows after the checkpoint is exported: still an extension.
    let checkpoint = last_checkpoint(dir.path());
    let with_cp = |cp: &ExportedCheckpoint| VerifyOptions { checkpoint: Some(cp.clone()), ..Default::default() };
    ledger_with_sessions(dir.path(), 2, 5);
    assert_eq!(verify(dir.path(), &with_cp(&checkpoint)), vec![]);

    // Rolled back to the backup: the newer checkpoint covers records that are gone.
    let newer = last_checkpoint(dir.path());
    fs::remove_dir_all(ledger_dir.join("segments")).unwrap();
    copy_dir(backup.path(), &ledger_dir.join("segments"));
    assert_eq!(verify(dir.path(), &VerifyOptions::default()), vec![], "the rolled-back ledger is consistent in itself");
    assert!(matches!(verify(dir.path(), &with_cp(&newer)).as_slice(), [ProblemKind::NotExtension { .. }]));

    // Rewritten by someone holding the signing key: a different history, validly signed.
    fs::remove_dir_all(ledger_dir.join("segments")).unwrap();
    fs::remove_file(ledger_dir.join("index.sqlite")).unwrap();
    ledger_with_sessions(dir.path(), 2, 5);
    assert_eq!(verify(dir.path(), &VerifyOptions::default()), vec![], "the forgery is consistent in itself");
    let problems = verify(dir.path(), &with_cp(&checkpoint));
    assert!(!problems.is_empty() && problems.iter().all(|p| matches!(p, ProblemKind::NotExtension { .. })), "{problems:?}");

    // A checkpoint whose fields were edited is refused on its own.
    let mut edited = checkpoint.clone();
    edited.tree_size += 1;
    assert!(matches!(verify(dir.path(), &with_cp(&edited)).as_slice(), [ProblemKind::NotExtension { .. }]));
}

#[test]
fn a_session_export_verifies_alone_and_any_change_to_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ledger_with_sessions(dir.path(), 5, 6);
    let ledger_dir = dir.path().join("ledger");
    let key = witness_ledger::parse_public_key(ledger_dir.join("signing.pub").to_str().unwrap()).unwrap();
    let mut out = Vec::new();
    let summary = export_session(&ledger_dir, ids[2], &mut out).unwrap();
    assert_eq!((summary.events, summary.events_left_out, summary.closed), (8, 0, true));
    let text = String::from_utf8(out).unwrap();
    let checked = verify_session_export(BufReader::new(text.as_bytes()), &key).unwrap();
    assert_eq!(checked.session, ids[2]);

    let lines: Vec<&str> = text.lines().collect();
    let check = |edited: String, expect: fn(&ExportProblem) -> bool| {
        let err = verify_session_export(BufReader::new(edited.as_bytes()), &key).expect_err("an edited export must not verify");
        assert!(expect(&err.problem), "unexpected problem: {err}");
    };
    check(text.replace("\"summary\":\"event 3\"", "\"summary\":\"event 33\""), |p| matches!(p, ExportProblem::FieldMismatch("summary")));
    let without_line: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, l)| *l).collect();
    check(without_line.join("\n"), |p| matches!(p, ExportProblem::Seq { .. }));
    check(lines[..lines.len() - 1].join("\n"), |p| matches!(p, ExportProblem::NoProof));
    let mut event: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    event["payload"] = serde_json::json!("AAAA");
    let mut edited = lines.clone();
    let replaced = event.to_string();
    edited[2] = &replaced;
    check(edited.join("\n"), |p| matches!(p, ExportProblem::PayloadDigest));
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let err = verify_session_export(BufReader::new(text.as_bytes()), &other_key).unwrap_err();
    assert!(matches!(err.problem, ExportProblem::WrongKey { .. }), "{err}");
}

#[test]
fn the_index_is_rebuilt_when_lost_and_answers_filters() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ledger_with_sessions(dir.path(), 4, 3);
    fs::remove_file(dir.path().join("ledger/index.sqlite")).unwrap();
    let index = open_index(dir.path()).unwrap();
    let all = index.list_sessions(&SessionFilter::default()).unwrap();
    assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), ids);
    assert!(all.iter().all(|s| s.n_events == 5 && s.ended_ns.is_some()));
    let by_identity = index.list_sessions(&SessionFilter { identity: Some("agent-2".into()), ..Default::default() }).unwrap();
    assert_eq!(by_identity.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[2]]);
    let by_task = index.list_sessions(&SessionFilter { task: Some("task 3".into()), ..Default::default() }).unwrap();
    assert_eq!(by_task.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[3]]);
    let future = index.list_sessions(&SessionFilter { since_ns: Some(i64::MAX), ..Default::default() }).unwrap();
    assert!(future.is_empty());
    let events = index.events(ids[1]).unwrap();
    let stored = witness_ledger::read_event_at(&dir.path().join("ledger/segments"), events[2].segment_idx, events[2].offset).unwrap();
    assert_eq!(stored.summary, "event 1");
    assert_eq!(stored.payload.unwrap(), event(1, 100).payload);
}

#[test]
fn a_second_process_cannot_open_the_same_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ledger::open(&config(dir.path())).unwrap();
    assert!(matches!(Ledger::open(&config(dir.path())), Err(LedgerError::Locked { .. })));
    first.shutdown().unwrap();
    Ledger::open(&config(dir.path())).unwrap().shutdown().unwrap();
}

#[test]
fn rotation_keeps_segments_under_their_size() {
    let dir = tempfile::tempdir().unwrap();
    ledger_with_sessions(dir.path(), 3, 100);
    let spans = record_spans(&dir.path().join("ledger"));
    let mut segments: Vec<_> = spans.iter().map(|s| s.segment.clone()).collect();
    segments.dedup();
    assert!(segments.len() > 3, "16 KiB segments rotate: {}", segments.len());
    for segment in segments {
        assert!(fs::metadata(&segment).unwrap().len() <= 16 << 10, "{segment:?} is over its size");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn events_are_read_from_a_seq_on_across_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ledger_with_sessions(dir.path(), 1, 2500);
    let index = open_index(dir.path()).unwrap();
    let all = index.events(ids[0]).unwrap();
    let n = all.len() as u64;
    assert!(n > 2 * 1024, "the session spans several index blocks: {n} events");
    let seqs = |events: &[witness_ledger::EventSummary]| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let (page, more) = index.events_from(ids[0], 1500, 100).unwrap();
    assert_eq!((seqs(&page), more), ((1500..1600).collect::<Vec<_>>(), true));
    let (page, more) = index.events_from(ids[0], n - 10, 100).unwrap();
    assert_eq!((seqs(&page), more), ((n - 10..n).collect::<Vec<_>>(), false));
    let (page, more) = index.events_from(ids[0], 0, n as usize).unwrap();
    assert_eq!((page, more), (all, false), "from 0, everything, as events() gives it");
    assert_eq!(index.events_from(ids[0], n, 10).unwrap(), (Vec::new(), false));
}
